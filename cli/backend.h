/*
 * backend.h — the seam between commands and where the events live.
 *
 * Commands talk to a cli_backend and never to evs_store directly, so the
 * remote mode (--url: the same operations over evstored's HTTP API) can be
 * added as a second implementation without touching the commands. The seam
 * is cut where both sides are natural:
 *   - writes take evs_event_in arrays (what evs_parse_events produces, and
 *     what a client serialises into a POST body);
 *   - reads hand out served JSON lines (what the library formats, and what
 *     the server already sends), plus the position for progress and --to.
 * Errors are evs return codes in both implementations (the remote one maps
 * HTTP statuses onto them), so commands report them the same way. The remote
 * side also has its own sentence for what went wrong (the server's "message",
 * or why the connection failed); it is kept in cli_backend.error and printed
 * by cli_backend_error() instead of the code's generic text.
 */
#ifndef EVS_CLI_BACKEND_H
#define EVS_CLI_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include <evstore.h>

#include "cli.h"

/* One event as served (SPEC §2). Borrowed for the duration of the callback. */
typedef struct cli_line {
    const char *json;      /* the served JSON object, no newline */
    size_t len;            /* its length */
    uint64_t position;     /* its global position */
} cli_line;

/* Called per event; ev == NULL means "caught up, now waiting" (--follow), the
 * moment to flush output. A non-zero return stops the read and is returned. */
typedef int (*cli_line_fn)(void *ctx, const cli_line *ev);
/* Called per stream. A non-zero return stops the listing and is returned. */
typedef int (*cli_stream_fn)(void *ctx, const char *name, uint64_t version);

typedef struct cli_backend cli_backend;
struct cli_backend {
    const char *where;     /* the directory or URL, for messages */
    int writable;          /* opened for writing */
    char error[768];       /* the other side's account of the last failure, "" if none
                              (remote: "<server message> (<error code>)") */
    /** evs_append semantics. */
    int (*append)(cli_backend *b, const char *stream, int64_t expected,
                  const evs_event_in *events, size_t n, evs_commit *out,
                  evs_append_result *result);
    /** evs_append_multi semantics, without a condition. */
    int (*append_multi)(cli_backend *b, const evs_event_in *events, size_t n,
                        evs_commit *out, evs_append_result *result);
    /** Every event ro selects; with follow, then every new one until cli_stop
     *  (a stream that does not exist yet is waited for). @return 0, the
     *  callback's non-zero value, EVS_ENOTFOUND (stream without events, no
     *  follow) or another error. */
    int (*read)(cli_backend *b, const evs_read_options *ro, int follow, cli_line_fn fn,
                void *ctx);
    /** One event by id; fn may be NULL to only test existence. @return 0 or EVS_ENOTFOUND, ... */
    int (*get)(cli_backend *b, const uint8_t id[16], cli_line_fn fn, void *ctx);
    /** Streams with their versions, in name order. */
    int (*streams)(cli_backend *b, const char *prefix, cli_stream_fn fn, void *ctx);
    /** Counters; see evs_stat. */
    int (*stats)(cli_backend *b, evs_stats *st);
    /** NULL, or the other side's own statistics as one JSON object (GET /stats),
     *  which `evstore stats` prints as it is instead of formatting evs_stats. */
    int (*raw_stats)(cli_backend *b, cli_line_fn fn, void *ctx);
    /** The last committed position. */
    uint64_t (*position)(cli_backend *b);
    /** Finish writes and release everything. @return 0 or an error (reported by the caller). */
    int (*close)(cli_backend *b);
};

enum { CLI_OPEN_READ = 0, CLI_OPEN_WRITE = 1 };

/**
 * Open the backend g selects (--data or --url) for reading or writing.
 * Errors are reported on stderr here.
 * @return 0, or the exit code to leave with.
 */
int cli_backend_open(const cli_global *g, int mode, cli_backend **out);

/** Close b and report a failure to finish (e.g. the final fsync).
 *  @return 0, or CLI_EXIT_FAIL. NULL is fine. */
int cli_backend_close(cli_backend *b);

/** Report a failed operation as one line: "<what>: <why>", where why is the
 *  backend's own sentence (b->error) when it has one, else the code's text. */
void cli_backend_error(const cli_backend *b, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/** Report a failed append like cli_append_error (a conflict always in the
 *  CLI's words: stream, expected, actual), other failures with b->error. */
void cli_backend_append_error(const cli_backend *b, int rc, const evs_append_result *r,
                              const char *stream, const char *what);

/** Library options from the global flags (shared with verify, which works
 *  on a directory and needs no backend). */
void cli_store_options(const cli_global *g, int mode, evs_options *opt);

/* The --data implementation (backend_local.c). */
int cli_backend_local_open(const cli_global *g, int mode, cli_backend **out);
/* [backup] The open store of a --data backend (backup calls evs_backup on it). */
evs_store *cli_backend_local_store(cli_backend *b);
/* The --url implementation (backend_http.c): evstored's HTTP API via libcurl. */
int cli_backend_http_open(const cli_global *g, int mode, cli_backend **out);

#endif /* EVS_CLI_BACKEND_H */
