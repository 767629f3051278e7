/*
 * backend_local.c — the --data backend: the store is opened in this process
 * through the public library API.
 *
 * Commands that only read open the directory read-only, which takes no lock:
 * they work beside a running evstored (or another writer) and follow it.
 * Library log messages are routed to stderr in the CLI's own one-line form;
 * those logged while opening are held back and attached to the open error,
 * because that is where the reason (e.g. the pid holding the lock) belongs.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "output.h"

/* ---- library log -------------------------------------------------------- */

/* The log callback may run on the library's writer thread. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static int log_holding;           /* during evs_open: keep messages instead of printing */
static char log_held[4][512];     /* the messages kept, oldest dropped first */
static int log_held_level[4];     /* their levels */
static int log_nheld;

static const char *level_name(int level)
{
    switch (level) {
    case EVS_LOG_ERROR: return "error";
    case EVS_LOG_WARN: return "warning";
    case EVS_LOG_INFO: return "info";
    default: return "debug";
    }
}

static void log_cb(void *ctx, int level, const char *message)
{
    (void)ctx;
    pthread_mutex_lock(&log_mu);
    if (log_holding) {
        if (log_nheld == 4) {
            memmove(log_held[0], log_held[1], sizeof log_held - sizeof log_held[0]);
            memmove(log_held_level, log_held_level + 1, 3 * sizeof log_held_level[0]);
            log_nheld--;
        }
        log_held_level[log_nheld] = level;
        snprintf(log_held[log_nheld++], sizeof log_held[0], "%s", message);
    } else {
        cli_error("%s: %s", level_name(level), message);
    }
    pthread_mutex_unlock(&log_mu);
}

static void log_hold(void)
{
    pthread_mutex_lock(&log_mu);
    log_holding = 1;
    log_nheld = 0;
    pthread_mutex_unlock(&log_mu);
}

/* Stop holding; print what was held unless the caller takes it (failed open). */
static void log_release(int print)
{
    pthread_mutex_lock(&log_mu);
    log_holding = 0;
    for (int i = 0; print && i < log_nheld; i++)
        cli_error("%s: %s", level_name(log_held_level[i]), log_held[i]);
    if (print)
        log_nheld = 0;
    pthread_mutex_unlock(&log_mu);
}

void cli_store_options(const cli_global *g, int mode, evs_options *opt)
{
    evs_options_init(opt);
    opt->read_only = mode == CLI_OPEN_READ;
    /* Reading must not conjure an empty store out of a mistyped path. */
    opt->create = mode == CLI_OPEN_WRITE;
    opt->sync = g->sync;
    opt->sync_interval_ms = g->sync_interval_ms;
    if (g->segment_size)
        opt->segment_size = g->segment_size;
    opt->log = log_cb;
    opt->log_ctx = NULL;
    /* Informational messages are noise on a command line; -v brings them back. */
    opt->log_level = g->verbose >= 2 ? EVS_LOG_DEBUG : g->verbose == 1 ? EVS_LOG_INFO
                                                                       : EVS_LOG_WARN;
}

/* ---- the backend -------------------------------------------------------- */

typedef struct local_backend {
    cli_backend base;     /* first, so a cli_backend* is a local_backend* */
    evs_store *s;         /* the open store */
    jbuf line;            /* reused to format each event */
} local_backend;

static local_backend *L(cli_backend *b) { return (local_backend *)b; }

/* The served line of ev into l->line. @return 0 or EVS_ENOMEM. */
static int format_event(local_backend *l, const evs_event *ev, cli_line *out)
{
    size_t cap = l->line.cap > 1 ? l->line.cap - 1 : 0;
    size_t need = evs_event_format(ev, l->line.p, cap);
    /* Strictly less: the contract does not say whether a terminating NUL
     * is counted, so leave room for one either way. */
    if (need >= cap) {
        jb_reset(&l->line);
        if (!jb_reserve(&l->line, need + 2))
            return EVS_ENOMEM;
        cap = l->line.cap - 1;
        need = evs_event_format(ev, l->line.p, cap);
        if (need >= cap)
            return EVS_ENOMEM;   /* the length changed between calls: cannot happen */
    }
    out->json = l->line.p;
    out->len = need;
    out->position = ev->position;
    return 0;
}

static int local_append(cli_backend *b, const char *stream, int64_t expected,
                        const evs_event_in *events, size_t n, evs_commit *out,
                        evs_append_result *result)
{
    return evs_append(L(b)->s, stream, expected, events, n, out, result);
}

static int local_append_multi(cli_backend *b, const evs_event_in *events, size_t n,
                              evs_commit *out, evs_append_result *result)
{
    return evs_append_multi(L(b)->s, events, n, NULL, out, result);
}

/* Block until something is committed after *seen, or the user stops us.
 * @return 0 (new events may be there; *seen updated), 1 (stop), or an error. */
static int wait_more(local_backend *l, uint64_t *seen)
{
    while (!cli_stop) {
        uint64_t now = 0;
        /* A bounded wait so SIGINT/SIGTERM is noticed within a quarter second
         * even if the library's wait is not interrupted by signals. */
        int rc = evs_wait(l->s, *seen + 1, 250, &now);
        if (rc == 0) {
            *seen = now > *seen ? now : *seen + 1;
            return 0;
        }
        if (rc == EVS_ECLOSED)
            return 1;
        if (rc != EVS_ETIMEDOUT)
            return rc;
    }
    return 1;
}

static int local_read(cli_backend *b, const evs_read_options *ro, int follow, cli_line_fn fn,
                      void *ctx)
{
    local_backend *l = L(b);
    evs_iter *it = NULL;
    /* Taken before the first read: whatever commits while we drain makes
     * the wait below return at once, so no event can slip between. */
    uint64_t seen = evs_position(l->s);
    evs_read_options o = *ro;
    /* Following a stream that has no events yet waits for its first one. */
    o.allow_missing = follow;
    int rc = evs_iter_open(l->s, &o, &it);
    if (rc)
        return rc;
    for (;;) {
        const evs_event *ev = NULL;
        rc = evs_iter_next(it, &ev);
        if (rc)
            break;
        if (ev) {
            cli_line line;
            if ((rc = format_event(l, ev, &line)) != 0 || (rc = fn(ctx, &line)) != 0)
                break;
            continue;
        }
        if (!follow || cli_stop)
            break;
        if ((rc = fn(ctx, NULL)) != 0)
            break;
        rc = wait_more(l, &seen);
        if (rc) {
            if (rc > 0)
                rc = 0;
            break;
        }
    }
    evs_iter_close(it);
    return rc;
}

static int local_get(cli_backend *b, const uint8_t id[16], cli_line_fn fn, void *ctx)
{
    local_backend *l = L(b);
    evs_event *ev = NULL;
    int rc = evs_get(l->s, id, &ev);
    if (rc == 0 && fn) {
        cli_line line;
        rc = format_event(l, ev, &line);
        if (rc == 0)
            rc = fn(ctx, &line);
    }
    evs_free(ev);
    return rc;
}

static int local_streams(cli_backend *b, const char *prefix, cli_stream_fn fn, void *ctx)
{
    evs_stream_iter *it = NULL;
    int rc = evs_streams_open(L(b)->s, prefix, &it);
    if (rc)
        return rc;
    for (;;) {
        const char *name = NULL;
        uint64_t version = 0;
        rc = evs_streams_next(it, &name, &version);
        if (rc || !name)
            break;
        if ((rc = fn(ctx, name, version)) != 0)
            break;
    }
    evs_streams_close(it);
    return rc;
}

static int local_stats(cli_backend *b, evs_stats *st)
{
    memset(st, 0, sizeof *st);
    return evs_stat(L(b)->s, st);
}

static uint64_t local_position(cli_backend *b) { return evs_position(L(b)->s); }

/* [backup] */
evs_store *cli_backend_local_store(cli_backend *b) { return L(b)->s; }

static int local_close(cli_backend *b)
{
    local_backend *l = L(b);
    int rc = evs_close(l->s);
    jb_free(&l->line);
    free(l);
    return rc;
}

int cli_backend_local_open(const cli_global *g, int mode, cli_backend **out)
{
    *out = NULL;
    local_backend *l = calloc(1, sizeof *l);
    if (!l) {
        cli_error("out of memory");
        return CLI_EXIT_FAIL;
    }
    evs_options opt;
    cli_store_options(g, mode, &opt);
    log_hold();
    int rc = evs_open(g->data_dir, &opt, &l->s);
    if (rc) {
        /* The library's own account of why (it names the lock holder's
         * pid, the damaged file, ...) is more useful than the code alone. */
        pthread_mutex_lock(&log_mu);
        const char *detail = log_nheld ? log_held[log_nheld - 1] : NULL;
        /* Relying on the default ./data is the usual reason for "not there". */
        const char *hint = rc == -ENOENT && !g->data_from_flag && !getenv("EVSTORE_DATA")
                               ? " (choose the directory with --data DIR)" : "";
        cli_error("cannot open the store in %s: %s (%s)%s%s%s", g->data_dir, evs_strerror(rc),
                  evs_errname(rc), detail ? ": " : "", detail ? detail : "", hint);
        pthread_mutex_unlock(&log_mu);
        log_release(0);
        evs_close(l->s);   /* a failed open may still hand back a handle */
        free(l);
        return CLI_EXIT_FAIL;
    }
    log_release(1);
    l->base.where = g->data_dir;
    l->base.writable = mode == CLI_OPEN_WRITE;
    l->base.append = local_append;
    l->base.append_multi = local_append_multi;
    l->base.read = local_read;
    l->base.get = local_get;
    l->base.streams = local_streams;
    l->base.stats = local_stats;
    l->base.position = local_position;
    l->base.close = local_close;
    jb_init(&l->line);
    /* Never hand evs_event_format a NULL buffer; most events fit in this. */
    if (!jb_reserve(&l->line, 4096)) {
        evs_close(l->s);
        free(l);
        cli_error("out of memory");
        return CLI_EXIT_FAIL;
    }
    *out = &l->base;
    return 0;
}
