/*
 * output.h — everything the CLI prints: JSON values on stdout (one per line,
 * or indented with --pretty), one-line errors on stderr, and a small
 * growable buffer to build JSON in.
 *
 * Event data is never re-encoded: lines from the library are written as they
 * are, and --pretty only re-indents (it moves whitespace between tokens and
 * leaves every string and number byte as it was, so 129.95 stays 129.95).
 */
#ifndef EVS_CLI_OUTPUT_H
#define EVS_CLI_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer. On allocation failure it sets oom and drops
 * further writes, so building code checks once at the end. */
typedef struct jbuf {
    char *p;        /* bytes, NUL-terminated when len > 0 */
    size_t len;     /* bytes used */
    size_t cap;     /* bytes allocated */
    int oom;        /* an allocation failed; the content is incomplete */
} jbuf;

void jb_init(jbuf *b);
void jb_free(jbuf *b);
void jb_reset(jbuf *b);
/** Make room for n more bytes; NULL on allocation failure. */
char *jb_reserve(jbuf *b, size_t n);
void jb_put(jbuf *b, const void *s, size_t n);
void jb_puts(jbuf *b, const char *s);
void jb_u64(jbuf *b, uint64_t v);
void jb_i64(jbuf *b, int64_t v);
/** s[0..n) as a quoted JSON string ("\"", "\\" and control characters escaped). */
void jb_str(jbuf *b, const char *s, size_t n);

/** Set up stdout (large buffer). *pretty is read at each out_json, because
 *  --pretty may come after the command word, parsed later than this call. */
void out_init(const int *pretty);
/** Send output to path instead of stdout (export -o). @return 0 or -errno. */
int out_open_file(const char *path);
/** Is the output a terminal? (Progress on stderr would interleave with it.) */
int out_is_tty(void);
/** Print one JSON value: as one line, or re-indented with --pretty.
 *  @return 0, or -errno if the output failed (reported once, by out_close). */
int out_json(const char *json, size_t len);
/** Push buffered output out (after each batch of --follow). @return 0 or -errno. */
int out_flush(void);
/** Bytes handed to out_json so far (for progress). */
uint64_t out_bytes(void);
/** Flush and close the output, reporting a write error as one line.
 *  @return 0, or CLI_EXIT_FAIL if anything could not be written. */
int out_close(void);

/** "evstore: <message>" on stderr, one line. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/** "evstore: <what>: <evs_strerror(rc)> (<evs_errname(rc)>)" on stderr. */
void cli_error_rc(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Print one line of text as it is (verify's plain report): no --pretty. */
int out_text(const char *text, size_t len);

/** Report a failed append as one line: for EVS_ECONFLICT the stream, the
 *  expected and the actual version; for EVS_EINVAL/EVS_EDUPLICATE the
 *  library's sentence. what names the operation ("append to 'x'"). */
struct evs_append_result;
void cli_append_error(int rc, const struct evs_append_result *r, const char *stream,
                      const char *what);
/** The text of an expected version: "any", "no_stream", "exists" or N. */
void cli_expected_text(int64_t expected, char out[24]);

/** A non-error note on stderr ("evstore: warning: ..."). */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* EVS_CLI_OUTPUT_H */
