/*
 * watch.c — streamed answers, the watch hub and its ring of encoded events.
 *
 * A streamed answer (plain read or watch) starts by reading the store
 * through its own iterator, one formatted event at a time. A watch of the
 * global log or of one stream ("follows"), once it has caught up, closes its
 * iterator and reads from the ring instead:
 *
 *  - The ring holds the most recent committed events (those of system
 *    streams excepted), each encoded once by the hub thread: the JSON line
 *    and, in the same buffer, its Server-Sent Events head. It is bounded by
 *    --watch-buffer bytes and by a number of slots; the oldest entries are
 *    dropped first. Every watcher of an event copies the same bytes.
 *  - A watcher holds only a cursor: `next_pos` (every event before it was
 *    looked at) and `seq` (the ring entry to look at next). Its filter
 *    (stream, types, prefix) is checked against each entry's stream and type,
 *    kept raw beside the encoded bytes.
 *  - A watcher that reads too slowly for the ring (its cursor is older than
 *    the ring's oldest entry) reopens an iterator on the store where its
 *    cursor is and reads from there, in order and without gaps; when that
 *    iterator is dry it rejoins the ring. Nothing is dropped, and the writer
 *    and the other watchers never wait for it.
 *
 * The hub thread blocks in evs_wait. On each commit it reads the new events
 * once (its own iterator), encodes them into the ring in chunks of at most
 * half the ring, and after each chunk, under its mutex, resumes the
 * suspended watchers that have something to send. It finds them by class:
 * watchers of the whole log unfiltered (any new entry), filtered ones (a
 * bounded scan of the new entries), stream watchers through a hash table by
 * stream name (only the new entries' streams are looked up, and a woken
 * watcher's cursor jumps to its entry), and watchers still reading the store
 * (any commit). The others stay suspended; their cursors stay valid because
 * every entry they might want was dispatched to them. Heartbeats come from a
 * heap of suspended watchers by due time. Idle watchers cost nothing: their
 * connections are suspended (out of libmicrohttpd's poll set) and the hub
 * wakes only for commits and due heartbeats. With no watcher following, the
 * hub encodes nothing.
 *
 * Locks: the ring's slots and bounds change only on the hub thread, under
 * the ring's rwlock taken for writing; readers (content readers on the HTTP
 * threads) copy under it taken for reading, so an entry is never freed while
 * it is copied. `through` (the ring's committed end) is published before the
 * hub takes its mutex to resume, and a reader re-checks it under that mutex
 * before suspending, so no commit is missed and no connection is resumed
 * before it was suspended. A suspended watcher's cursor is touched only by
 * the hub (under its mutex); a running one only by its HTTP thread.
 *
 * Memory per watcher: its cursor and filter, and at most one formatted event
 * (an event larger than the room libmicrohttpd gives, or one read from the
 * store). A slow client only means its reader is called less often.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "watch.h"

#define RING_MIN_SLOTS 256u
#define RING_MAX_SLOTS (1u << 20)
#define HUB_PUBLISH_EVERY 1024u   /* most entries encoded before they are published */
#define HUB_SCAN_MAX 64u          /* new entries the hub checks against one suspended watcher */
#define HUB_TICK_MS 250           /* longest sleep of the hub (it checks for stop between) */

/* One committed event, encoded. bytes = stream | type | SSE head | JSON line "\n". */
typedef struct ring_entry {
    uint64_t position, version;
    char *bytes;
    uint32_t shash;                  /* name_hash of the stream */
    uint32_t line_len;               /* the JSON line with its "\n" */
    uint16_t stream_len, type_len;   /* names are at most 255 bytes */
    uint16_t head_len;               /* "id: P\nevent: T\ndata: " */
} ring_entry;

#define E_STREAM(e) ((e)->bytes)
#define E_TYPE(e) ((e)->bytes + (e)->stream_len)
#define E_HEAD(e) ((e)->bytes + (e)->stream_len + (e)->type_len)
#define E_LINE(e) (E_HEAD(e) + (e)->head_len)
#define E_SIZE(e) ((size_t)(e)->stream_len + (e)->type_len + (e)->head_len + (e)->line_len)

struct evsd_stream_state {
    evsd_server *srv;
    struct MHD_Connection *conn;     /* to suspend */
    evs_iter *it;                    /* reading the store (owned); NULL while on the ring */
    int watch;                       /* keep the answer open */
    int sse;                         /* Server-Sent Events framing */
    uint64_t limit, sent;            /* events allowed and sent */
    uint64_t heartbeat_ns;           /* interval */
    uint64_t skip_through;           /* events at or before this position are not sent */
    uint64_t next_heartbeat;         /* monotonic ns */
    evsd_str buf;                    /* bytes of one event being sent */
    size_t off;                      /* how much of buf is sent */
    /* following: a watch of the global log or of one stream may use the ring */
    int follows;
    int on_ring;                     /* reading from the ring (it == NULL) */
    char *stream;                    /* stream watch: the stream (owned) */
    size_t stream_len;
    char **types;                    /* type filter (owned) */
    size_t ntypes;
    char *prefix;                    /* global watch: stream prefix (owned) */
    size_t prefix_len;
    uint64_t next_pos;               /* every event before this position was looked at */
    uint64_t last_version;           /* stream watch: version of the last event looked at */
    uint64_t seq;                    /* on the ring: the next entry to look at */
    uint64_t dry_at;                 /* reading the store: the position its iterator was dry at */
    uint32_t shash;                  /* stream watch: hash of the stream's name */
    /* while suspended, under hub->mu */
    int in_hub;
    int cls;                         /* CLS_*: what can wake it */
    size_t hidx;                     /* place in the heartbeat heap */
    evsd_stream_state *cprev, *cnext;/* in its class list (or stream bucket) */
};

enum { CLS_STORE, CLS_ALL, CLS_FILTERED, CLS_STREAM };

struct evsd_hub {
    evsd_server *srv;
    pthread_t thread;
    pthread_mutex_t mu;              /* everything about suspended watchers, stop, dispatched */
    evsd_stream_state **heap;        /* suspended watchers, earliest heartbeat first */
    size_t nheap, heap_cap;
    evsd_stream_state *store_list;   /* suspended, reading the store: woken by any commit */
    evsd_stream_state *all_list;     /* on the ring, the whole log unfiltered */
    evsd_stream_state *filtered_list;/* on the ring, the whole log with a prefix or types */
    evsd_stream_state **buckets;     /* on the ring, one stream: by the name's hash */
    size_t nbuckets, nstream_waiting;
    uint64_t dispatched;             /* ring entries before this one were dispatched */
    int skipped;                     /* the ring restarted: events were never dispatched */
    uint64_t seen;                   /* last committed position the hub acted on */
    int stop;
    int started;
    atomic_uint followers;           /* answers that may use the ring */
    /* the ring: slots and bounds written by the hub thread under rw (write) */
    pthread_rwlock_t rw;
    ring_entry *slots;
    uint64_t mask;                   /* slots - 1 (a power of two) */
    uint64_t tail, end;              /* entries [tail, end) by sequence number */
    uint64_t start_pos;              /* every followed event in [start_pos, through] is in the ring */
    _Atomic uint64_t through;        /* the ring's committed end */
    size_t bytes, max_bytes;
    int failed;                      /* reading the store for the ring failed: everyone reads the store */
    evs_iter *it;                    /* the hub's reader (hub thread only) */
};

static int hub_suspend(evsd_stream_state *w);

static uint32_t name_hash(const char *p, size_t n)
{
    uint32_t x = 2166136261u;  /* FNV-1a */
    for (size_t i = 0; i < n; i++) x = (x ^ (unsigned char)p[i]) * 16777619u;
    return x;
}
static void entry_free(ring_entry *e)
{
    free(e->bytes);
    e->bytes = NULL;
}
static void hub_forget(evsd_hub *h, evsd_stream_state *w);

/* ---------------------------------------------------------------- answers */

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

int evsd_stream_follow(evsd_stream_state *w, const evs_read_options *ro)
{
    if (!w->watch || ro->backward || !w->srv->hub) return 0;
    if (ro->stream ? ro->stream[0] == '$' : (ro->filter.stream_prefix && ro->filter.stream_prefix[0] == '$'))
        return 0;  /* system streams are not in the ring */
    if (ro->stream) {
        if (!(w->stream = strdup(ro->stream))) return -ENOMEM;
        w->stream_len = strlen(ro->stream);
        w->shash = name_hash(w->stream, w->stream_len);
        w->last_version = ro->from ? ro->from - 1 : 0;
        w->next_pos = 1;
    } else {
        if (ro->filter.stream_prefix) {
            if (!(w->prefix = strdup(ro->filter.stream_prefix))) return -ENOMEM;
            w->prefix_len = strlen(w->prefix);
        }
        w->next_pos = ro->from ? ro->from : 1;
    }
    if (ro->filter.ntypes) {
        if (!(w->types = calloc(ro->filter.ntypes, sizeof *w->types))) return -ENOMEM;
        for (size_t i = 0; i < ro->filter.ntypes; i++, w->ntypes++)
            if (!(w->types[i] = strdup(ro->filter.types[i]))) return -ENOMEM;
    }
    w->follows = 1;
    atomic_fetch_add(&w->srv->hub->followers, 1);
    return 0;
}

void evsd_stream_free(evsd_stream_state *w)
{
    if (!w) return;
    hub_forget(w->srv->hub, w);
    if (w->watch) atomic_fetch_sub(&w->srv->metrics.watchers, 1);
    if (w->follows) atomic_fetch_sub(&w->srv->hub->followers, 1);
    evs_iter_close(w->it);
    evsd_str_free(&w->buf);
    free(w->stream);
    for (size_t i = 0; i < w->ntypes; i++) free(w->types[i]);
    free(w->types);
    free(w->prefix);
    atomic_fetch_sub(&w->srv->streams_open, 1);  /* last: main.c's drain waits for it */
    free(w);
}

/* "id: P\nevent: T\ndata: " into t (at least 300 bytes); its length. */
static int sse_head(char *t, size_t cap, uint64_t position, const char *type, size_t type_len)
{
    /* an event type with a newline cannot be sent as an SSE event name: leave it out */
    if (memchr(type, '\n', type_len) || memchr(type, '\r', type_len))
        return snprintf(t, cap, "id: %" PRIu64 "\ndata: ", position);
    return snprintf(t, cap, "id: %" PRIu64 "\nevent: %.*s\ndata: ", position, (int)type_len, type);
}

static int format_event(evsd_stream_state *w, const evs_event *ev)
{
    w->buf.len = 0;
    w->off = 0;
    if (w->sse) {
        char t[300];
        int n = sse_head(t, sizeof t, ev->position, ev->type, ev->type_len);
        if (evsd_str_add(&w->buf, t, (size_t)n)) return -1;
    }
    size_t need = evs_event_format(ev, NULL, 0);
    if (evsd_str_reserve(&w->buf, need + 3)) return -1;
    evs_event_format(ev, w->buf.p + w->buf.len, need + 1);
    w->buf.len += need;
    return evsd_str_add(&w->buf, w->sse ? "\n\n" : "\n", w->sse ? 2 : 1);
}

/* Does entry e pass w's filter (stream or prefix, types)? */
static int entry_matches(const evsd_stream_state *w, const ring_entry *e)
{
    if (w->stream) {
        if (e->stream_len != w->stream_len || memcmp(E_STREAM(e), w->stream, w->stream_len) != 0) return 0;
    } else if (w->prefix) {
        if (e->stream_len < w->prefix_len || memcmp(E_STREAM(e), w->prefix, w->prefix_len) != 0) return 0;
    }
    if (!w->ntypes) return 1;
    for (size_t i = 0; i < w->ntypes; i++)
        if (strlen(w->types[i]) == e->type_len && !memcmp(w->types[i], E_TYPE(e), e->type_len)) return 1;
    return 0;
}

/* Entry e has been looked at by w (sent or not). */
static inline void entry_seen(evsd_stream_state *w, const ring_entry *e)
{
    w->next_pos = e->position + 1;
    if (w->stream && e->stream_len == w->stream_len && !memcmp(E_STREAM(e), w->stream, w->stream_len))
        w->last_version = e->version;
}

/* Would w send e (it is new to w, after skip_through and passes the filter)? */
static inline int entry_wanted(const evsd_stream_state *w, const ring_entry *e)
{
    return e->position >= w->next_pos && e->position > w->skip_through && entry_matches(w, e);
}

/* The first sequence number in [tail, end) whose entry's position is >= pos. Under rw. */
static uint64_t ring_find(const evsd_hub *h, uint64_t pos)
{
    uint64_t lo = h->tail, hi = h->end;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (h->slots[mid & h->mask].position < pos) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Copy what w wants from the ring into out (n bytes used so far). An event
 * larger than the room left goes to w->buf instead (when out is empty).
 * Returns -1 when w's cursor fell off the ring (read the store), else the
 * number of events sent. */
static int ring_take(evsd_stream_state *w, char *out, size_t max, size_t *n)
{
    evsd_hub *h = w->srv->hub;
    int sent = 0;
    pthread_rwlock_rdlock(&h->rw);
    if (h->failed || w->next_pos < h->start_pos) {
        pthread_rwlock_unlock(&h->rw);
        return -1;
    }
    if (w->seq < h->tail || w->seq > h->end) w->seq = ring_find(h, w->next_pos);
    while (w->seq < h->end && w->sent < w->limit) {
        const ring_entry *e = &h->slots[w->seq & h->mask];
        if (entry_wanted(w, e)) {
            size_t len = w->sse ? e->head_len + e->line_len + 1 : e->line_len;
            const char *from = w->sse ? E_HEAD(e) : E_LINE(e);
            if (len <= max - *n) {
                memcpy(out + *n, from, w->sse ? len - 1 : len);
                if (w->sse) out[*n + len - 1] = '\n';
                *n += len;
            } else if (*n) {
                break;  /* send what is there first; this one comes next */
            } else {
                /* larger than the room given: one copy of this event */
                w->buf.len = 0;
                w->off = 0;
                if (evsd_str_add(&w->buf, from, w->sse ? len - 1 : len) != 0 ||
                    (w->sse && evsd_str_add(&w->buf, "\n", 1) != 0)) {
                    pthread_rwlock_unlock(&h->rw);
                    return -ENOMEM;
                }
            }
            w->sent++;
            sent++;
            entry_seen(w, e);
            w->seq++;
            if (w->buf.len) break;
            continue;
        }
        if (e->position >= w->next_pos) entry_seen(w, e);
        w->seq++;
    }
    if (w->seq == h->end) {
        uint64_t t = atomic_load(&h->through);
        if (t >= w->next_pos) w->next_pos = t + 1;
    }
    pthread_rwlock_unlock(&h->rw);
    if (sent) {
        atomic_fetch_add_explicit(&w->srv->metrics.events_served, (uint64_t)sent, memory_order_relaxed);
        w->next_heartbeat = evsd_now_ns() + w->heartbeat_ns;
    }
    return sent;
}

/* A follower whose store iterator is dry: onto the ring if the ring holds
 * everything from its cursor on. 1 if it moved there. */
static int ring_join(evsd_stream_state *w)
{
    evsd_hub *h = w->srv->hub;
    int joined = 0;
    pthread_rwlock_rdlock(&h->rw);
    if (!h->failed && h->start_pos <= w->next_pos) {
        w->seq = ring_find(h, w->next_pos);
        joined = 1;
    }
    pthread_rwlock_unlock(&h->rw);
    if (joined) {
        evs_iter_close(w->it);
        w->it = NULL;
        w->on_ring = 1;
    }
    return joined;
}

/* Off the ring: an iterator on the store from w's cursor. */
static int ring_leave(evsd_stream_state *w)
{
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.stream = w->stream;
    ro.from = w->stream ? w->last_version + 1 : w->next_pos;
    ro.filter.types = (const char *const *)w->types;
    ro.filter.ntypes = w->ntypes;
    ro.filter.stream_prefix = w->prefix;
    ro.allow_missing = 1;
    /* everything before next_pos was looked at already */
    if (w->next_pos - 1 > w->skip_through) w->skip_through = w->next_pos - 1;
    int rc = evs_iter_open(w->srv->store, &ro, &w->it);
    if (rc) return rc;
    w->on_ring = 0;
    atomic_fetch_add_explicit(&w->srv->metrics.watch_fallbacks, 1, memory_order_relaxed);
    return 0;
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
        w->buf.len = w->off = 0;
        /* At shutdown a watch ends (cleanly: the client resumes from its last
         * position elsewhere); a plain read does not: ending it early would
         * look like the end of the log. It runs to its end while main.c
         * drains, or is cut without its last chunk, which clients see as an
         * error. */
        if ((w->watch && atomic_load(&srv->stopping)) || w->sent >= w->limit)
            return n ? (ssize_t)n : MHD_CONTENT_READER_END_OF_STREAM;
        uint64_t seen = 0;
        if (w->on_ring) {
            size_t before = n;
            int got = ring_take(w, out, max, &n);
            if (got == -1) {
                int rc = ring_leave(w);
                if (rc) {
                    evsd_log(EVS_LOG_ERROR, "watch: cannot read the store: %s (%s)", evs_strerror(rc), evs_errname(rc));
                    return n ? (ssize_t)n : MHD_CONTENT_READER_END_WITH_ERROR;
                }
                continue;
            }
            if (got < 0) return n ? (ssize_t)n : MHD_CONTENT_READER_END_WITH_ERROR;
            if (w->buf.len) continue;            /* one large event to send */
            if (n > before) return (ssize_t)n;   /* the ring is drained or out is full */
        } else {
            seen = evs_position(srv->store);
            const evs_event *ev = NULL;
            int rc = evs_iter_next(w->it, &ev);
            if (rc) {
                evsd_log(EVS_LOG_ERROR, "read failed mid-answer: %s (%s)", evs_strerror(rc), evs_errname(rc));
                return n ? (ssize_t)n : MHD_CONTENT_READER_END_WITH_ERROR;
            }
            if (ev) {
                if (w->follows) {
                    w->next_pos = ev->position + 1;
                    if (w->stream) w->last_version = ev->version;
                }
                if (ev->position <= w->skip_through) continue;
                if (format_event(w, ev) != 0) return MHD_CONTENT_READER_END_WITH_ERROR;
                w->sent++;
                atomic_fetch_add_explicit(&srv->metrics.events_served, 1, memory_order_relaxed);
                w->next_heartbeat = evsd_now_ns() + w->heartbeat_ns;
                continue;
            }
            /* dry: everything up to `seen` was looked at */
            if (w->follows) {
                if (seen >= w->next_pos) w->next_pos = seen + 1;
                if (ring_join(w)) continue;
            }
        }
        if (n) return (ssize_t)n;  /* send what we have before waiting */
        if (!w->watch) return MHD_CONTENT_READER_END_OF_STREAM;
        uint64_t now = evsd_now_ns();
        if (now >= w->next_heartbeat) {
            if (evsd_str_add(&w->buf, w->sse ? ":\n\n" : "\n", w->sse ? 3 : 1)) return MHD_CONTENT_READER_END_WITH_ERROR;
            w->next_heartbeat = now + w->heartbeat_ns;
            continue;
        }
        w->dry_at = seen;
        if (hub_suspend(w)) return 0;
    }
}

/* ---------------------------------------------------------------- the hub */

/* Suspended watchers: a heap by next heartbeat (all of them), and a list by
 * what can wake them. Everything here is under hub->mu. */

static void heap_set(evsd_hub *h, size_t i, evsd_stream_state *w)
{
    h->heap[i] = w;
    w->hidx = i;
}

static void heap_up(evsd_hub *h, size_t i)
{
    evsd_stream_state *w = h->heap[i];
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (h->heap[up]->next_heartbeat <= w->next_heartbeat) break;
        heap_set(h, i, h->heap[up]);
        i = up;
    }
    heap_set(h, i, w);
}

static void heap_down(evsd_hub *h, size_t i)
{
    evsd_stream_state *w = h->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->nheap) break;
        if (c + 1 < h->nheap && h->heap[c + 1]->next_heartbeat < h->heap[c]->next_heartbeat) c++;
        if (w->next_heartbeat <= h->heap[c]->next_heartbeat) break;
        heap_set(h, i, h->heap[c]);
        i = c;
    }
    heap_set(h, i, w);
}

static void heap_remove(evsd_hub *h, evsd_stream_state *w)
{
    size_t i = w->hidx;
    evsd_stream_state *last = h->heap[--h->nheap];
    if (i == h->nheap) return;
    heap_set(h, i, last);
    heap_up(h, i);
    heap_down(h, last->hidx);
}

/* The list a suspended watcher waits in. */
static evsd_stream_state **class_head(evsd_hub *h, evsd_stream_state *w)
{
    switch (w->cls) {
    case CLS_STORE: return &h->store_list;
    case CLS_ALL: return &h->all_list;
    case CLS_FILTERED: return &h->filtered_list;
    default: return &h->buckets[w->shash & (h->nbuckets - 1)];
    }
}

static void class_link(evsd_hub *h, evsd_stream_state *w)
{
    evsd_stream_state **head = class_head(h, w);
    w->cprev = NULL;
    w->cnext = *head;
    if (*head) (*head)->cprev = w;
    *head = w;
}

static void class_unlink(evsd_hub *h, evsd_stream_state *w)
{
    if (w->cprev) w->cprev->cnext = w->cnext;
    else *class_head(h, w) = w->cnext;
    if (w->cnext) w->cnext->cprev = w->cprev;
    w->cprev = w->cnext = NULL;
}

/* More buckets for stream watchers when chains get long. */
static void buckets_grow(evsd_hub *h)
{
    size_t n = h->nbuckets * 4;
    evsd_stream_state **b = calloc(n, sizeof *b);
    if (!b) return;  /* longer chains, still correct */
    evsd_stream_state **old = h->buckets;
    size_t oldn = h->nbuckets;
    h->buckets = b;
    h->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        evsd_stream_state *w = old[i], *next;
        for (; w; w = next) {
            next = w->cnext;
            class_link(h, w);
        }
    }
    free(old);
}

static void hub_unlink(evsd_hub *h, evsd_stream_state *w)
{
    heap_remove(h, w);
    class_unlink(h, w);
    if (w->cls == CLS_STREAM) h->nstream_waiting--;
    w->in_hub = 0;
}

static void hub_resume(evsd_hub *h, evsd_stream_state *w)
{
    hub_unlink(h, w);
    evsd_resume(h->srv, w->conn);
}

/* Suspend w's connection unless there is something new for it (then 0: read
 * again). Called by its content reader, hub->mu not held. */
static int hub_suspend(evsd_stream_state *w)
{
    evsd_server *srv = w->srv;
    evsd_hub *h = srv->hub;
    pthread_mutex_lock(&h->mu);
    int news = w->on_ring ? atomic_load(&h->through) >= w->next_pos : evs_position(srv->store) > w->dry_at;
    if (h->stop || news) {
        pthread_mutex_unlock(&h->mu);
        return 0;
    }
    if (h->nheap == h->heap_cap) {
        size_t cap = h->heap_cap ? h->heap_cap * 2 : 1024;
        evsd_stream_state **nh = realloc(h->heap, cap * sizeof *nh);
        if (!nh) {
            pthread_mutex_unlock(&h->mu);
            return 0;  /* no room to wait: it polls instead (reads again) */
        }
        h->heap = nh;
        h->heap_cap = cap;
    }
    w->cls = !w->on_ring ? CLS_STORE : w->stream ? CLS_STREAM : (w->prefix || w->ntypes) ? CLS_FILTERED : CLS_ALL;
    if (w->cls == CLS_STREAM && ++h->nstream_waiting > 2 * h->nbuckets) buckets_grow(h);
    class_link(h, w);
    heap_set(h, h->nheap++, w);
    heap_up(h, w->hidx);
    w->in_hub = 1;
    MHD_suspend_connection(w->conn);
    pthread_mutex_unlock(&h->mu);
    return 1;
}

static void hub_forget(evsd_hub *h, evsd_stream_state *w)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    if (w->in_hub) hub_unlink(h, w);
    pthread_mutex_unlock(&h->mu);
}

/* A suspended filtered watcher: does it want one of the new entries? If not,
 * its cursor moves past them. */
static int ring_has_news(evsd_hub *h, evsd_stream_state *w)
{
    if (w->next_pos < h->start_pos || w->seq < h->tail) return 1;
    if (w->seq > h->end) w->seq = ring_find(h, w->next_pos);
    if (h->end - w->seq > HUB_SCAN_MAX) return 1;  /* cheaper for it to look itself */
    for (; w->seq < h->end; w->seq++) {
        const ring_entry *e = &h->slots[w->seq & h->mask];
        if (entry_wanted(w, e)) return 1;
        if (e->position >= w->next_pos) entry_seen(w, e);
    }
    uint64_t t = atomic_load(&h->through);
    if (t >= w->next_pos) w->next_pos = t + 1;
    return 0;
}

/* Wake every watcher of a list. */
static void wake_list(evsd_hub *h, evsd_stream_state *w)
{
    for (evsd_stream_state *next; w; w = next) {
        next = w->cnext;
        hub_resume(h, w);
    }
}

/* After a commit: resume the suspended watchers that have something to do.
 * Store readers always (the log moved); on the ring, those that want one of
 * the entries published since the last call, found by class: every watcher
 * of the whole log; filtered ones by a bounded scan; stream watchers through
 * their stream's bucket, entry by entry. */
static void hub_dispatch(evsd_hub *h)
{
    uint64_t from = h->dispatched;
    h->dispatched = h->end;
    wake_list(h, h->store_list);
    if (from < h->tail || h->failed || h->skipped) {
        h->skipped = 0;
        /* entries went before they were dispatched (a batch larger than the
         * ring), or the ring stopped: everyone looks for themselves */
        while (h->nheap) hub_resume(h, h->heap[h->nheap - 1]);
        return;
    }
    if (from == h->end) return;  /* only system events */
    uint64_t last = h->slots[(h->end - 1) & h->mask].position;
    for (evsd_stream_state *w = h->all_list, *next; w; w = next) {
        next = w->cnext;
        if (last >= w->next_pos) hub_resume(h, w);
    }
    for (evsd_stream_state *w = h->filtered_list, *next; w; w = next) {
        next = w->cnext;
        if (ring_has_news(h, w)) hub_resume(h, w);
    }
    if (!h->nstream_waiting) return;
    for (uint64_t q = from; q < h->end; q++) {
        const ring_entry *e = &h->slots[q & h->mask];
        for (evsd_stream_state *w = h->buckets[e->shash & (h->nbuckets - 1)], *next; w; w = next) {
            next = w->cnext;
            if (w->shash != e->shash || w->stream_len != e->stream_len || e->position < w->next_pos ||
                memcmp(w->stream, E_STREAM(e), w->stream_len) != 0)
                continue;
            if (entry_wanted(w, e)) {
                /* everything before e was looked at on its behalf */
                w->next_pos = e->position;
                w->seq = q;
                hub_resume(h, w);
            } else {
                entry_seen(w, e);
                w->seq = q + 1;
            }
        }
    }
}

/* Resume the watchers whose heartbeat is due. A ring watcher woken for it
 * has seen every entry so far (dispatch told it of each): its cursor moves to
 * the ring's end, so that it does not look through entries, or fall off the
 * ring, for nothing. */
static void hub_heartbeats(evsd_hub *h, uint64_t now)
{
    int current = h->dispatched == h->end && !h->failed;
    uint64_t t = atomic_load(&h->through);
    while (h->nheap && h->heap[0]->next_heartbeat <= now) {
        evsd_stream_state *w = h->heap[0];
        if (w->on_ring && current) {
            if (t >= w->next_pos) w->next_pos = t + 1;
            w->seq = h->end;
        }
        hub_resume(h, w);
    }
}

static int entry_encode(const evs_event *ev, ring_entry *e)
{
    char head[300];
    int hl = sse_head(head, sizeof head, ev->position, ev->type, ev->type_len);
    size_t jl = evs_event_format(ev, NULL, 0);
    size_t size = ev->stream_len + ev->type_len + (size_t)hl + jl + 1;
    char *p = malloc(size + 1);  /* + the NUL evs_event_format adds */
    if (!p) return -ENOMEM;
    e->position = ev->position;
    e->version = ev->version;
    e->bytes = p;
    e->stream_len = (uint16_t)ev->stream_len;
    e->type_len = (uint16_t)ev->type_len;
    e->head_len = (uint16_t)hl;
    e->line_len = (uint32_t)(jl + 1);
    e->shash = name_hash(ev->stream, ev->stream_len);
    memcpy(p, ev->stream, ev->stream_len);
    p += ev->stream_len;
    memcpy(p, ev->type, ev->type_len);
    p += ev->type_len;
    memcpy(p, head, (size_t)hl);
    p += hl;
    evs_event_format(ev, p, jl + 1);
    p[jl] = '\n';
    return 0;
}

/* Put n encoded entries into the ring (dropping the oldest as needed) and
 * move its end to through. Hub thread. Dropped entries are freed under the
 * write lock: no reader is copying then. */
static void ring_publish(evsd_hub *h, ring_entry *add, size_t n, uint64_t through)
{
    pthread_rwlock_wrlock(&h->rw);
    for (size_t i = 0; i < n; i++) {
        size_t sz = E_SIZE(&add[i]);
        while (h->tail < h->end && (h->end - h->tail > h->mask || h->bytes + sz > h->max_bytes)) {
            ring_entry *old = &h->slots[h->tail & h->mask];
            h->start_pos = old->position + 1;
            h->bytes -= E_SIZE(old);
            entry_free(old);
            h->tail++;
        }
        h->slots[h->end & h->mask] = add[i];
        h->end++;
        h->bytes += sz;
    }
    if (through > atomic_load(&h->through)) atomic_store(&h->through, through);
    pthread_rwlock_unlock(&h->rw);
    atomic_store_explicit(&h->srv->metrics.watch_ring_events, h->end - h->tail, memory_order_relaxed);
    atomic_store_explicit(&h->srv->metrics.watch_ring_bytes, h->bytes, memory_order_relaxed);
}

/* Empty the ring and start it again after position pos. Hub thread. */
static void ring_restart(evsd_hub *h, uint64_t pos)
{
    evs_iter_close(h->it);
    h->it = NULL;
    pthread_rwlock_wrlock(&h->rw);
    for (; h->tail < h->end; h->tail++) entry_free(&h->slots[h->tail & h->mask]);
    h->bytes = 0;
    h->skipped = 1;
    h->start_pos = pos + 1;
    atomic_store(&h->through, pos);
    pthread_rwlock_unlock(&h->rw);
    atomic_store_explicit(&h->srv->metrics.watch_ring_events, 0, memory_order_relaxed);
    atomic_store_explicit(&h->srv->metrics.watch_ring_bytes, 0, memory_order_relaxed);
}

/* Tell suspended watchers about what was just published. */
static void dispatch_locked(evsd_hub *h)
{
    pthread_mutex_lock(&h->mu);
    hub_dispatch(h);
    pthread_mutex_unlock(&h->mu);
}

/* Encode what committed since the ring's end, up to the position seen now
 * (at least), and dispatch it. It is published in chunks of at most half
 * the ring, each dispatched before the next is published, so that no entry
 * leaves the ring before the suspended watchers were told of it. Hub thread. */
static void ring_fill(evsd_hub *h)
{
    evs_store *store = h->srv->store;
    uint64_t pos = evs_position(store);
    uint64_t through = atomic_load(&h->through);
    if (h->failed || pos <= through) {
        dispatch_locked(h);
        return;
    }
    if (atomic_load(&h->followers) == 0) {
        /* nobody to encode for: the ring starts again where the log is */
        ring_restart(h, pos);
        dispatch_locked(h);
        return;
    }
    int rc;
    if (!h->it) {
        evs_read_options ro;
        evs_read_options_init(&ro);
        ro.from = through + 1;
        if ((rc = evs_iter_open(store, &ro, &h->it)) != 0) goto failed;
    }
    ring_entry batch[HUB_PUBLISH_EVERY];
    size_t n = 0, bytes = 0, max_n = HUB_PUBLISH_EVERY < (h->mask + 1) / 2 ? HUB_PUBLISH_EVERY : (h->mask + 1) / 2;
    uint64_t last = 0;
    while (last < pos) {
        const evs_event *ev = NULL;
        if ((rc = evs_iter_next(h->it, &ev)) == 0 && !ev) break;  /* the rest up to pos: system events */
        if (rc == 0 && (rc = entry_encode(ev, &batch[n])) == 0) {
            last = ev->position;
            bytes += E_SIZE(&batch[n]);
            n++;
        }
        if (rc) {
            for (size_t i = 0; i < n; i++) entry_free(&batch[i]);
            goto failed;
        }
        if (n == max_n || bytes >= h->max_bytes / 2) {
            ring_publish(h, batch, n, last);
            dispatch_locked(h);
            n = bytes = 0;
        }
    }
    ring_publish(h, batch, n, last > pos ? last : pos);
    dispatch_locked(h);
    return;
failed:
    evsd_log(EVS_LOG_ERROR, "watch ring: cannot read the new events: %s (%s); watchers read the store",
             evs_strerror(rc), evs_errname(rc));
    pthread_rwlock_wrlock(&h->rw);
    h->failed = 1;
    pthread_rwlock_unlock(&h->rw);
    dispatch_locked(h);
}

static void *hub_main(void *arg)
{
    evsd_hub *h = arg;
    evsd_server *srv = h->srv;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        int stop = h->stop;
        uint64_t seen = h->seen, due = h->nheap ? h->heap[0]->next_heartbeat : UINT64_MAX;
        pthread_mutex_unlock(&h->mu);
        if (stop) break;
        uint64_t now = evsd_now_ns();
        int timeout = HUB_TICK_MS;
        if (due <= now) timeout = 0;
        else if (due - now < (uint64_t)HUB_TICK_MS * 1000000u) timeout = (int)((due - now) / 1000000u) + 1;
        uint64_t now_pos = seen;
        int rc = timeout ? evs_wait(srv->store, seen + 1, timeout, &now_pos) : 0;
        if (!timeout) now_pos = evs_position(srv->store);
        if (now_pos > seen) ring_fill(h);  /* and tells the watchers */
        pthread_mutex_lock(&h->mu);
        if (now_pos > seen) h->seen = now_pos;
        hub_heartbeats(h, evsd_now_ns());
        pthread_mutex_unlock(&h->mu);
        if (rc == EVS_ECLOSED) {
            /* the store failed: no more commits; keep serving heartbeats slowly */
            struct timespec ts = {0, HUB_TICK_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    pthread_mutex_lock(&h->mu);
    while (h->nheap) hub_resume(h, h->heap[h->nheap - 1]);  /* h->stop: everyone */
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

int evsd_hub_start(evsd_server *srv)
{
    evsd_hub *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    h->srv = srv;
    pthread_mutex_init(&h->mu, NULL);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* the hub must not wait behind a steady flow of readers */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&h->rw, &ra);
    pthread_rwlockattr_destroy(&ra);
    uint64_t slots = RING_MIN_SLOTS;
    while (slots < RING_MAX_SLOTS && slots * 128 < srv->cfg.watch_buffer) slots *= 2;
    h->slots = calloc(slots, sizeof *h->slots);
    if (!h->slots) {
        free(h);
        return -ENOMEM;
    }
    h->mask = slots - 1;
    h->max_bytes = srv->cfg.watch_buffer;
    h->nbuckets = 1024;
    h->buckets = calloc(h->nbuckets, sizeof *h->buckets);
    if (!h->buckets) {
        free(h->slots);
        free(h);
        return -ENOMEM;
    }
    h->seen = evs_position(srv->store);
    atomic_init(&h->through, h->seen);
    h->start_pos = h->seen + 1;
    srv->hub = h;
    if (pthread_create(&h->thread, NULL, hub_main, h) != 0) return -EAGAIN;
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
    evsd_hub *h = srv->hub;
    if (!h) return;
    evs_iter_close(h->it);
    for (; h->tail < h->end; h->tail++) entry_free(&h->slots[h->tail & h->mask]);
    free(h->slots);
    free(h->buckets);
    free(h->heap);
    pthread_rwlock_destroy(&h->rw);
    pthread_mutex_destroy(&h->mu);
    free(h);
    srv->hub = NULL;
}
