/*
 * backup.c — GET /backup?since=P: the store's backup archive (evs_backup),
 * streamed as the answer while appends go on.
 *
 * One helper thread per request runs evs_backup with a write callback that
 * puts the archive into a bounded ring (1 MiB); the content reader, on an
 * HTTP thread, takes from the ring and never blocks: when the ring is empty
 * it suspends the connection, and the helper resumes it when it adds bytes
 * (or finishes). When the ring is full the helper waits, so a slow client
 * only slows its own backup — the archive is never held in memory whole.
 * Suspension and resumption happen under the ring's mutex, with flags, so a
 * connection is never resumed before it was suspended or after it is gone.
 *
 * Errors after the 200 (a damaged segment, the server stopping) end the
 * chunked answer without its last chunk, so clients see a failed transfer;
 * the archive is incomplete and restore refuses it anyway. The response's
 * free callback (the client went away, the answer finished, the daemon
 * stopped) cancels the backup and joins the helper, so no backup outlives
 * the store.
 *
 * Access: with --auth-tokens, a token that may read every stream (a read or
 * write token without a prefix); an archive holds every stream.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

#define RING_SIZE (1u << 20)

typedef struct evsd_backup {
    evsd_server *srv;
    struct MHD_Connection *conn;     /* to suspend and resume */
    uint64_t since;                  /* ?since=P */
    pthread_t thread;                /* runs evs_backup */
    int started;                     /* thread is running or joinable */
    pthread_mutex_t mu;              /* everything below */
    pthread_cond_t room;             /* the helper waits for room in the ring */
    uint8_t *ring;                   /* RING_SIZE bytes */
    size_t head, len;                /* bytes waiting: ring[head..head+len) modulo RING_SIZE */
    int suspended;                   /* the reader suspended the connection, waiting for bytes */
    int cancel;                      /* the answer is gone: stop, resume nothing */
    int done;                        /* evs_backup returned */
    int rc;                          /* what it returned */
    uint64_t sent;                   /* bytes handed to libmicrohttpd */
    evs_backup_info info;            /* what it wrote, or why it failed */
} evsd_backup;

/* Caller holds mu. */
static void wake_reader(evsd_backup *b)
{
    if (b->suspended && !b->cancel) {
        b->suspended = 0;
        evsd_resume(b->srv, b->conn);
    }
}

/* evs_backup's sink, on the helper thread. */
static int ring_write(void *ctx, const void *buf, size_t n)
{
    evsd_backup *b = ctx;
    const uint8_t *p = buf;
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    while (n) {
        while (b->len == RING_SIZE && !b->cancel && !atomic_load(&b->srv->stopping))
            pthread_cond_wait(&b->room, &b->mu);
        if (b->cancel || atomic_load(&b->srv->stopping)) {
            rc = -EPIPE;  /* the client went away, or the server is stopping */
            break;
        }
        size_t tail = (b->head + b->len) % RING_SIZE;
        size_t k = RING_SIZE - b->len;
        if (k > RING_SIZE - tail) k = RING_SIZE - tail;
        if (k > n) k = n;
        memcpy(b->ring + tail, p, k);
        b->len += k;
        p += k;
        n -= k;
        wake_reader(b);
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

static int on_progress(void *ctx, const evs_progress *p)
{
    evsd_backup *b = ctx;
    (void)p;
    pthread_mutex_lock(&b->mu);
    int stop = b->cancel || atomic_load(&b->srv->stopping);
    pthread_mutex_unlock(&b->mu);
    return stop;
}

static void *backup_main(void *arg)
{
    evsd_backup *b = arg;
    evs_backup_options o;
    evs_backup_options_init(&o);
    o.write = ring_write;
    o.write_ctx = b;
    o.progress = on_progress;
    o.progress_ctx = b;
    int rc = evs_backup(b->srv->store, -1, b->since, &o, &b->info);
    pthread_mutex_lock(&b->mu);
    b->rc = rc;
    b->done = 1;
    wake_reader(b);
    int cancelled = b->cancel;
    pthread_mutex_unlock(&b->mu);
    if (rc == 0)
        evsd_log(EVS_LOG_INFO, "backup since %" PRIu64 ": positions %" PRIu64 "..%" PRIu64 ", %" PRIu64 " files, %" PRIu64
                 " bytes, archive %" PRIu64 " bytes", b->since, b->info.first_position, b->info.last_position,
                 b->info.files, b->info.bytes, b->info.archive_bytes);
    else if (cancelled || atomic_load(&b->srv->stopping))
        evsd_log(EVS_LOG_WARN, "backup since %" PRIu64 " abandoned: %s", b->since,
                 atomic_load(&b->srv->stopping) ? "the server is stopping" : "the client went away");
    else
        evsd_log(EVS_LOG_ERROR, "backup since %" PRIu64 " failed: %s", b->since, b->info.message);
    return NULL;
}

/* The content reader, on an HTTP thread: never blocks. */
static ssize_t backup_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    evsd_backup *b = cls;
    ssize_t ret;
    pthread_mutex_lock(&b->mu);
    if (b->len) {
        size_t k = b->len < max ? b->len : max;
        size_t first = RING_SIZE - b->head < k ? RING_SIZE - b->head : k;
        memcpy(out, b->ring + b->head, first);
        memcpy(out + first, b->ring, k - first);
        b->head = (b->head + k) % RING_SIZE;
        b->len -= k;
        b->sent += k;
        pthread_cond_signal(&b->room);
        ret = (ssize_t)k;
    } else if (b->done) {
        ret = b->rc == 0 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (atomic_load(&b->srv->stopping)) {
        pthread_cond_signal(&b->room);
        ret = MHD_CONTENT_READER_END_WITH_ERROR;
    } else {
        b->suspended = 1;  /* the helper resumes us when it adds bytes or finishes */
        MHD_suspend_connection(b->conn);
        ret = 0;
    }
    pthread_mutex_unlock(&b->mu);
    return ret;
}

static void backup_free(void *cls)
{
    evsd_backup *b = cls;
    pthread_mutex_lock(&b->mu);
    b->cancel = 1;
    b->suspended = 0;  /* the connection is gone: nothing to resume */
    pthread_cond_broadcast(&b->room);
    pthread_mutex_unlock(&b->mu);
    if (b->started) pthread_join(b->thread, NULL);  /* it stops at its next write or progress call */
    evsd_server *srv = b->srv;
    int started = b->started;
    pthread_cond_destroy(&b->room);
    pthread_mutex_destroy(&b->mu);
    free(b->ring);
    free(b);
    if (started) atomic_fetch_sub(&srv->backups_open, 1);  /* last: nothing of this backup is left */
}

static int parse_since(const char *s, uint64_t *out)
{
    if (!s || !*s) return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return 0;
}

enum MHD_Result evsd_route_backup(evsd_req *r)
{
    evsd_server *srv = r->srv;
    if (r->method != M_GET)
        return evsd_error(r, 405, "method_not_allowed", "/backup answers GET only");
    const char *scope = NULL;
    if (evsd_auth_require(r, NULL, 0, &scope) != 0) return MHD_YES;
    if (scope && *scope)
        return evsd_error(r, 403, "forbidden", "a backup holds every stream; this token covers only streams starting "
                          "with '%s'", scope);
    uint64_t since = 0;
    const char *v = evsd_arg(r, "since");
    if (v && parse_since(v, &since) != 0)
        return evsd_error(r, 400, "invalid_parameter", "since must be a non-negative integer (a position), not '%s'", v);
    uint64_t position = evs_position(srv->store);
    if (since > position)
        return evsd_error(r, 400, "invalid_parameter", "since %" PRIu64 " is after the store's last position %" PRIu64
                          " (is this the backup chain of another store?)", since, position);
    evsd_backup *b = calloc(1, sizeof *b);
    if (!b || !(b->ring = malloc(RING_SIZE))) {
        if (b) free(b);
        return evsd_error(r, 503, "unavailable", "out of memory for a backup");
    }
    b->srv = srv;
    b->conn = r->conn;
    b->since = since;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->room, NULL);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, backup_reader, b,
                                                                  backup_free);
    if (!resp) {
        backup_free(b);
        return MHD_NO;
    }
    if (pthread_create(&b->thread, NULL, backup_main, b) != 0) {
        MHD_destroy_response(resp);  /* frees b (no thread to join) */
        return evsd_error(r, 503, "unavailable", "cannot start a backup thread");
    }
    b->started = 1;
    atomic_fetch_add(&srv->backups_open, 1);
    char disposition[128];
    if (since) snprintf(disposition, sizeof disposition, "attachment; filename=\"evstore-backup-since-%" PRIu64 ".tar.zst\"", since);
    else snprintf(disposition, sizeof disposition, "attachment; filename=\"evstore-backup.tar.zst\"");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/zstd");
    MHD_add_response_header(resp, "Content-Disposition", disposition);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    r->status = 200;
    return ret;
}
