/*
 * watch.c — streamed answers and the watch hub.
 *
 * A watcher's content reader runs on an HTTP thread. When its iterator is
 * dry it asks the hub to suspend the connection; the hub thread blocks in
 * evs_wait and, when the committed position moves (or a heartbeat falls
 * due), resumes the connections it holds. Suspension and resumption both
 * happen under the hub's mutex, and the reader re-checks the position under
 * it before suspending, so no commit is ever missed and a connection is
 * never resumed before it was suspended. Idle watchers cost nothing: they
 * are suspended, and the hub wakes once per second only for heartbeats.
 *
 * Memory per watcher is one formatted event; a slow client only means the
 * reader is called less often, and reading catches up from the store.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "watch.h"

struct evsd_stream_state {
    evsd_server *srv;
    struct MHD_Connection *conn;     /* to suspend */
    evs_iter *it;                    /* the read (owned) */
    int watch;                       /* keep the answer open */
    int sse;                         /* Server-Sent Events framing */
    uint64_t limit, sent;            /* events allowed and sent */
    uint64_t heartbeat_ns;           /* interval */
    uint64_t skip_through;           /* events at or before this position are not sent */
    uint64_t next_heartbeat;         /* monotonic ns */
    evsd_str buf;                    /* the bytes being sent */
    size_t off;                      /* how much of buf is sent */
    /* hub links, under hub->mu */
    evsd_stream_state *prev, *next;
    int in_hub;
};

struct evsd_hub {
    pthread_t thread;
    pthread_mutex_t mu;              /* the list and each watcher's in_hub */
    evsd_stream_state *head;         /* suspended watchers */
    uint64_t seen;                   /* last committed position the hub acted on */
    int stop;
    int started;
};

evsd_stream_state *evsd_stream_new(evsd_server *srv, struct MHD_Connection *conn, evs_iter *it, int watch,
                                   int sse, uint64_t limit, uint64_t heartbeat_ns)
{
    evsd_stream_state *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->srv = srv;
    w->conn = conn;
    w->it = it;
    w->watch = watch;
    w->sse = sse;
    w->limit = limit;
    w->heartbeat_ns = heartbeat_ns;
    w->next_heartbeat = evsd_now_ns() + heartbeat_ns;
    if (watch) atomic_fetch_add(&srv->metrics.watchers, 1);
    atomic_fetch_add(&srv->streams_open, 1);
    return w;
}

void evsd_stream_skip_through(evsd_stream_state *w, uint64_t position) { w->skip_through = position; }

void evsd_stream_free(evsd_stream_state *w)
{
    if (!w) return;
    evsd_hub_forget(w->srv, w);
    if (w->watch) atomic_fetch_sub(&w->srv->metrics.watchers, 1);
    evs_iter_close(w->it);
    evsd_str_free(&w->buf);
    atomic_fetch_sub(&w->srv->streams_open, 1);  /* last: main.c's drain waits for it */
    free(w);
}

static int format_event(evsd_stream_state *w, const evs_event *ev)
{
    w->buf.len = 0;
    w->off = 0;
    if (w->sse) {
        char t[300];
        int n = snprintf(t, sizeof t, "id: %" PRIu64 "\nevent: %.*s\ndata: ", ev->position, (int)ev->type_len, ev->type);
        /* an event type with a newline cannot be sent as an SSE event name: leave it out */
        if (memchr(ev->type, '\n', ev->type_len) || memchr(ev->type, '\r', ev->type_len))
            n = snprintf(t, sizeof t, "id: %" PRIu64 "\ndata: ", ev->position);
        if (evsd_str_add(&w->buf, t, (size_t)n)) return -1;
    }
    size_t need = evs_event_format(ev, NULL, 0);
    if (evsd_str_reserve(&w->buf, need + 3)) return -1;
    evs_event_format(ev, w->buf.p + w->buf.len, need + 1);
    w->buf.len += need;
    return evsd_str_add(&w->buf, w->sse ? "\n\n" : "\n", w->sse ? 2 : 1);
}

ssize_t evsd_stream_fill(evsd_stream_state *w, char *out, size_t max)
{
    evsd_server *srv = w->srv;
    size_t n = 0;
    for (;;) {
        if (w->off < w->buf.len) {
            size_t k = w->buf.len - w->off;
            if (k > max - n) k = max - n;
            memcpy(out + n, w->buf.p + w->off, k);
            w->off += k;
            n += k;
            if (n == max) return (ssize_t)n;
        }
        /* At shutdown a watch ends (cleanly: the client resumes from its last
         * position elsewhere); a plain read does not: ending it early would
         * look like the end of the log. It runs to its end while main.c
         * drains, or is cut without its last chunk, which clients see as an
         * error. */
        if ((w->watch && atomic_load(&srv->stopping)) || w->sent >= w->limit)
            return n ? (ssize_t)n : MHD_CONTENT_READER_END_OF_STREAM;
        uint64_t seen = evs_position(srv->store);
        const evs_event *ev = NULL;
        int rc = evs_iter_next(w->it, &ev);
        if (rc) {
            evsd_log(EVS_LOG_ERROR, "read failed mid-answer: %s (%s)", evs_strerror(rc), evs_errname(rc));
            return n ? (ssize_t)n : MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (ev && ev->position <= w->skip_through) continue;
        if (ev) {
            if (format_event(w, ev) != 0) return MHD_CONTENT_READER_END_WITH_ERROR;
            w->sent++;
            atomic_fetch_add_explicit(&srv->metrics.events_served, 1, memory_order_relaxed);
            w->next_heartbeat = evsd_now_ns() + w->heartbeat_ns;
            continue;
        }
        if (n) return (ssize_t)n;  /* send what we have before waiting */
        if (!w->watch) return MHD_CONTENT_READER_END_OF_STREAM;
        uint64_t now = evsd_now_ns();
        if (now >= w->next_heartbeat) {
            w->buf.len = 0;
            w->off = 0;
            if (evsd_str_add(&w->buf, w->sse ? ":\n\n" : "\n", w->sse ? 3 : 1)) return MHD_CONTENT_READER_END_WITH_ERROR;
            w->next_heartbeat = now + w->heartbeat_ns;
            continue;
        }
        if (evsd_hub_suspend(srv, w, w->conn, seen, w->next_heartbeat)) return 0;
    }
}

/* ---- the hub ---- */

static void hub_unlink(evsd_hub *h, evsd_stream_state *w)
{
    if (w->prev) w->prev->next = w->next; else h->head = w->next;
    if (w->next) w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->in_hub = 0;
}

/* Resume every watcher (all = 1) or those whose heartbeat is due. Caller holds mu. */
static void hub_wake(evsd_hub *h, int all, uint64_t now)
{
    evsd_stream_state *w = h->head, *next;
    for (; w; w = next) {
        next = w->next;
        if (!all && w->next_heartbeat > now) continue;
        hub_unlink(h, w);
        MHD_resume_connection(w->conn);
    }
}

static void *hub_main(void *arg)
{
    evsd_server *srv = arg;
    evsd_hub *h = srv->hub;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        int stop = h->stop;
        uint64_t seen = h->seen;
        pthread_mutex_unlock(&h->mu);
        if (stop) break;
        uint64_t now_pos = seen;
        int rc = evs_wait(srv->store, seen + 1, 250, &now_pos);
        pthread_mutex_lock(&h->mu);
        if (now_pos > h->seen) {
            h->seen = now_pos;
            hub_wake(h, 1, 0);
        } else {
            hub_wake(h, 0, evsd_now_ns());
        }
        pthread_mutex_unlock(&h->mu);
        if (rc == EVS_ECLOSED) {
            /* the store failed: no more commits; keep serving heartbeats slowly */
            struct timespec ts = {0, 250 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    pthread_mutex_lock(&h->mu);
    hub_wake(h, 1, 0);
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

int evsd_hub_start(evsd_server *srv)
{
    evsd_hub *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    pthread_mutex_init(&h->mu, NULL);
    h->seen = evs_position(srv->store);
    srv->hub = h;
    if (pthread_create(&h->thread, NULL, hub_main, srv) != 0) return -EAGAIN;
    h->started = 1;
    return 0;
}

void evsd_hub_stop(evsd_server *srv)
{
    evsd_hub *h = srv->hub;
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_mutex_unlock(&h->mu);
    if (h->started) pthread_join(h->thread, NULL);
    h->started = 0;
}

void evsd_hub_free(evsd_server *srv)
{
    if (!srv->hub) return;
    pthread_mutex_destroy(&srv->hub->mu);
    free(srv->hub);
    srv->hub = NULL;
}

int evsd_hub_suspend(evsd_server *srv, evsd_stream_state *w, struct MHD_Connection *conn,
                     uint64_t seen_position, uint64_t heartbeat_due_ns)
{
    evsd_hub *h = srv->hub;
    pthread_mutex_lock(&h->mu);
    if (h->stop || evs_position(srv->store) > seen_position) {
        pthread_mutex_unlock(&h->mu);
        return 0;  /* something new (or stopping): read again */
    }
    w->next_heartbeat = heartbeat_due_ns;
    w->prev = NULL;
    w->next = h->head;
    if (h->head) h->head->prev = w;
    h->head = w;
    w->in_hub = 1;
    MHD_suspend_connection(conn);
    pthread_mutex_unlock(&h->mu);
    return 1;
}

void evsd_hub_forget(evsd_server *srv, evsd_stream_state *w)
{
    evsd_hub *h = srv->hub;
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    if (w->in_hub) hub_unlink(h, w);
    pthread_mutex_unlock(&h->mu);
}
