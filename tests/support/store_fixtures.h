/*
 * store_fixtures.h — helpers for the functional tests of the engine through
 * the public API (tests/unit/test_store_*.c): a store in a fresh scratch
 * directory, event builders, a captured log, whole-store snapshots for
 * "reads identically after reopen" comparisons, file listings of the data
 * directory, and an independent formatter for ids and times.
 *
 * Functions marked "asserts" use cmocka assertions: call them only from the
 * cmocka test process, never from a forked child (a child reports through
 * its exit status instead).
 */
#ifndef EVS_STORE_FIXTURES_H
#define EVS_STORE_FIXTURES_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "evstore.h"

/* Log lines the store emitted, kept for assertions (bounded, oldest dropped). */
typedef struct fx_log {
    pthread_mutex_t mu;          /* the store logs from several threads */
    char text[16384];            /* "level message\n" lines */
    size_t len;                  /* bytes used in text */
    unsigned lines;              /* lines seen in total (also the dropped ones) */
} fx_log;

/* One store under test. */
typedef struct fx {
    char dir[4096];              /* the data directory (inside a scratch dir) */
    char root[4096];             /* the scratch dir, removed at teardown */
    evs_options opt;             /* options for the next fx_open */
    evs_store *s;                /* open store or NULL */
    fx_log log;                  /* what the store logged */
} fx;

/* ---- lifecycle ---- */

/** Call first in main: prints the seed; EVS_TEST_FILTER=pattern runs only matching tests. */
void fx_main_init(void);

/** cmocka setup: a fresh directory, default options (quiet, captured log), store open. Asserts. */
int fx_setup(void **state);
/** cmocka setup: like fx_setup but the store is not opened (set f->opt, then fx_open). Asserts. */
int fx_setup_closed(void **state);
/** cmocka teardown: close the store if open, remove the scratch dir. */
int fx_teardown(void **state);

/** The log callback fx uses (ctx = fx_log*). */
void fx_log_cb(void *ctx, int level, const char *message);
/** Does the captured log contain needle? */
int fx_log_has(fx_log *lg, const char *needle);

/** Open f->dir with f->opt. Asserts it succeeds. */
void fx_open(fx *f);
/** Close the store (asserts evs_close returns 0). */
void fx_close(fx *f);
/** Close and open again with f->opt. */
void fx_reopen(fx *f);

/* ---- appending ---- */

/** An event of type with data (NULL = none); lengths from strlen. */
evs_event_in fx_ev(const char *type, const char *data);
/** An event with metadata too (NULL = absent). */
evs_event_in fx_ev_meta(const char *type, const char *data, const char *metadata);
/** One event appended to stream; returns evs_append's code. out/res may be NULL. */
int fx_append1(evs_store *s, const char *stream, int64_t expected, const char *type,
               const char *data, evs_commit *out, evs_append_result *res);

/* ---- reading ---- */

/** The formatted line of ev (malloc'd, NUL-terminated). Asserts. */
char *fx_format(const evs_event *ev);
/** Read with ro and return the formatted lines, "\n"-terminated (malloc'd). *count = events. Asserts. */
char *fx_read_lines(evs_store *s, const evs_read_options *ro, uint64_t *count);
/** Positions of the events read with ro into pos (at most max); returns how many. Asserts. */
size_t fx_read_positions(evs_store *s, const evs_read_options *ro, uint64_t *pos, size_t max);
/** Everything a reader can observe, as text: the global log forward and
 *  backward, every stream (with version) read forward and backward, every
 *  event fetched by id and by position. Two stores with the same snapshot
 *  read identically. Asserts. */
char *fx_snapshot(evs_store *s);

/* ---- the data directory ---- */

/** Names in dir matching the fnmatch pattern, sorted; returns how many (at most max). */
size_t fx_list(const char *dir, const char *pattern, char (*names)[256], size_t max);
/** Remove the files in dir matching pattern; returns how many were removed. */
size_t fx_unlink(const char *dir, const char *pattern);
/** Size of dir/name in bytes, or UINT64_MAX if it does not exist. */
uint64_t fx_file_size(const char *dir, const char *name);
/** The base positions of the *.seg files in dir, ascending; returns how many. */
size_t fx_seg_bases(const char *dir, uint64_t *bases, size_t max);

/* ---- independent formatting (not through the library) ---- */

/** "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" lower-case hex. */
void fx_uuid_text(const uint8_t id[16], char out[37]);
/** RFC 3339 UTC with microseconds, via gmtime_r. */
void fx_time_text(int64_t time_us, char out[32]);
/** Wall clock in microseconds. */
int64_t fx_now_us(void);

/** Problems evs_verify finds in dir (asserts that it ran); the first few are printed. */
uint64_t fx_verify(const char *dir);

#endif
