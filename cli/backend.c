/*
 * backend.c — picks the backend the global options ask for, and reports
 * backend failures.
 *
 * --data DIR opens the directory in this process (backend_local.c); --url
 * talks to evstored over HTTP (backend_http.c). A flag beats the
 * environment, and giving both flags is refused rather than guessed at.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "backend.h"
#include "output.h"

int cli_backend_open(const cli_global *g, int mode, cli_backend **out)
{
    *out = NULL;
    if (g->url_from_flag && g->data_from_flag) {
        cli_error("--data and --url cannot be used together: pick a directory or a server");
        return CLI_EXIT_USAGE;
    }
    /* A flag beats the environment: --data wins over EVSTORE_URL and --url
     * over EVSTORE_DATA; with no flag, EVSTORE_URL selects remote mode. */
    if (g->url && !g->data_from_flag)
        return cli_backend_http_open(g, mode, out);
    return cli_backend_local_open(g, mode, out);
}

int cli_backend_close(cli_backend *b)
{
    if (!b)
        return 0;
    const char *where = b->where;
    int writable = b->writable;
    int rc = b->close(b);
    if (rc == 0)
        return 0;
    /* Only a writer can lose something here (the last appends' fsync). */
    cli_error_rc(rc, "closing the store in %s%s", where,
                 writable ? " (appended events may not be durable)" : "");
    return CLI_EXIT_FAIL;
}

void cli_backend_error(const cli_backend *b, int rc, const char *fmt, ...)
{
    char what[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (b && b->error[0])
        cli_error("%s: %s", what, b->error);
    else
        cli_error_rc(rc, "%s", what);
}

void cli_backend_append_error(const cli_backend *b, int rc, const evs_append_result *r,
                              const char *stream, const char *what)
{
    /* The conflict's fields came back (from the library, or parsed from the
     * server's 409), so it reads the same in both modes. */
    if (rc == EVS_ECONFLICT || !b || !b->error[0])
        cli_append_error(rc, r, stream, what);
    else
        cli_error("%s: %s", what, b->error);
}
