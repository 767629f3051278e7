/*
 * loadgen.c — see loadgen.h.
 */
#include "loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- clocks ---- */

uint64_t lg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t lg_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void lg_sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* ---- histogram ---- */

static unsigned bucket_of(uint64_t v)
{
    if (v < 128) return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);       /* >= 7 */
    unsigned sub = (unsigned)(v >> (e - 6)) & 63u;
    return 128u + (e - 7u) * 64u + sub;
}

static uint64_t bucket_mid(unsigned i)
{
    if (i < 128) return i;
    unsigned e = (i - 128u) / 64u + 7u, sub = (i - 128u) % 64u;
    uint64_t lo = (uint64_t)(64u + sub) << (e - 6), width = 1ull << (e - 6);
    return lo + width / 2;
}

void lg_hist_init(lg_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void lg_hist_add(lg_hist *h, uint64_t ns)
{
    h->counts[bucket_of(ns)]++;
    h->n++;
    if (ns < h->min) h->min = ns;
    if (ns > h->max) h->max = ns;
    h->sum += (double)ns;
}

void lg_hist_merge(lg_hist *into, const lg_hist *from)
{
    for (unsigned i = 0; i < LG_HIST_BUCKETS; i++) into->counts[i] += from->counts[i];
    into->n += from->n;
    into->sum += from->sum;
    if (from->min < into->min) into->min = from->min;
    if (from->max > into->max) into->max = from->max;
}

uint64_t lg_hist_quantile(const lg_hist *h, double q)
{
    if (!h->n) return 0;
    if (q >= 1.0) return h->max;
    uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = bucket_mid(i);
            if (v < h->min) v = h->min;
            if (v > h->max) v = h->max;
            return v;
        }
    }
    return h->max;
}

double lg_hist_mean(const lg_hist *h) { return h->n ? h->sum / (double)h->n : 0.0; }

/* ---- PRNG ---- */

uint64_t lg_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t lg_rand_below(uint64_t *s, uint64_t n) { return n ? lg_rand(s) % n : 0; }

/* ---- buffers ---- */

int lg_buf_reserve(lg_buf *b, size_t more)
{
    if (b->len + more + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + more + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int lg_buf_add(lg_buf *b, const void *p, size_t n)
{
    if (lg_buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int lg_buf_addf(lg_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || lg_buf_reserve(b, (size_t)n)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void lg_buf_reset(lg_buf *b) { b->len = b->off = 0; }

void lg_buf_compact(lg_buf *b)
{
    if (!b->off) return;
    if (b->off < b->len) memmove(b->p, b->p + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
}

void lg_buf_free(lg_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- HTTP/1.1 response parser ---- */

enum { H_HEAD, H_BODY, H_CHUNK_SIZE, H_CHUNK_DATA, H_CHUNK_CRLF, H_TRAILER };

void lg_http_begin(lg_http *h, lg_body_fn on_body, void *ud)
{
    memset(h, 0, sizeof *h);
    h->state = H_HEAD;
    h->on_body = on_body;
    h->body_ud = ud;
}

/* The first CRLF in p[0..n), or NULL. */
static const char *crlf_in(const char *p, size_t n)
{
    const char *end = p + n;
    for (const char *q = p; q + 1 < end;) {
        const char *r = memchr(q, '\r', (size_t)(end - q - 1));
        if (!r) return NULL;
        if (r[1] == '\n') return r;
        q = r + 1;
    }
    return NULL;
}

static const char *head_end(const char *p, size_t n)
{
    const char *end = p + n;
    for (const char *q = p; q + 3 < end;) {
        const char *r = crlf_in(q, (size_t)(end - q));
        if (!r) return NULL;
        if (r + 3 < end && r[2] == '\r' && r[3] == '\n') return r + 4;
        q = r + 2;
    }
    return NULL;
}

/* The value of header name in [p, e), or NULL. */
static const char *header_value(const char *p, const char *e, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *line = crlf_in(p, (size_t)(e - p));          /* skip the status line */
    if (!line) return NULL;
    line += 2;
    while (line < e) {
        const char *le = crlf_in(line, (size_t)(e - line));
        if (!le || le == line) return NULL;
        if ((size_t)(le - line) > nl && line[nl] == ':' && !strncasecmp(line, name, nl)) {
            const char *v = line + nl + 1;
            while (v < le && (*v == ' ' || *v == '\t')) v++;
            *vlen = (size_t)(le - v);
            return v;
        }
        line = le + 2;
    }
    return NULL;
}

static int contains_ci(const char *v, size_t n, const char *word)
{
    size_t wl = strlen(word);
    for (size_t i = 0; i + wl <= n; i++)
        if (!strncasecmp(v + i, word, wl)) return 1;
    return 0;
}

int lg_http_feed(lg_http *h, const char *p, size_t n, size_t *used)
{
    size_t i = 0;
    *used = 0;
    for (;;) {
        const char *q = p + i;
        size_t avail = n - i;
        switch (h->state) {
        case H_HEAD: {
            const char *he = head_end(q, avail);
            if (!he) {
                *used = i;
                return avail > (1u << 16) ? -1 : 0;
            }
            if (avail < 12 || memcmp(q, "HTTP/1.", 7) != 0) return -1;
            h->status = atoi(q + 9);
            size_t vl = 0;
            const char *v;
            h->chunked = 0;
            h->close = 0;
            h->left = 0;
            h->body_bytes = 0;
            if ((v = header_value(q, he, "Transfer-Encoding", &vl)) && contains_ci(v, vl, "chunked")) h->chunked = 1;
            if ((v = header_value(q, he, "Connection", &vl)) && contains_ci(v, vl, "close")) h->close = 1;
            uint64_t cl = 0;
            int has_cl = 0;
            if ((v = header_value(q, he, "Content-Length", &vl))) {
                cl = strtoull(v, NULL, 10);
                has_cl = 1;
            }
            i += (size_t)(he - q);
            if (h->status >= 100 && h->status < 200) continue;           /* 100 Continue: the real answer follows */
            if (h->status == 204 || h->status == 304) goto complete;
            if (h->chunked) { h->state = H_CHUNK_SIZE; continue; }
            if (has_cl && cl > 0) { h->left = cl; h->state = H_BODY; continue; }
            goto complete;
        }
        case H_BODY:
        case H_CHUNK_DATA: {
            if (!avail) { *used = i; return 0; }
            size_t k = avail < h->left ? avail : (size_t)h->left;
            if (h->on_body) h->on_body(h->body_ud, q, k);
            h->body_bytes += k;
            h->left -= k;
            i += k;
            if (h->left) { *used = i; return 0; }
            if (h->state == H_BODY) goto complete;
            h->state = H_CHUNK_CRLF;
            continue;
        }
        case H_CHUNK_CRLF:
            if (avail < 2) { *used = i; return 0; }
            if (q[0] != '\r' || q[1] != '\n') return -1;
            i += 2;
            h->state = H_CHUNK_SIZE;
            continue;
        case H_CHUNK_SIZE: {
            const char *le = crlf_in(q, avail);
            if (!le) { *used = i; return avail > 1024 ? -1 : 0; }
            char *end;
            unsigned long long sz = strtoull(q, &end, 16);
            if (end == q) return -1;
            i += (size_t)(le - q) + 2;
            if (sz == 0) { h->state = H_TRAILER; continue; }
            h->left = sz;
            h->state = H_CHUNK_DATA;
            continue;
        }
        case H_TRAILER: {
            if (avail < 2) { *used = i; return 0; }
            if (q[0] == '\r' && q[1] == '\n') { i += 2; goto complete; }
            const char *le = crlf_in(q, avail);
            if (!le) { *used = i; return avail > 4096 ? -1 : 0; }
            i += (size_t)(le - q) + 2;
            continue;
        }
        default:
            return -1;
        }
    complete:
        h->state = H_HEAD;
        *used = i;
        return 1;
    }
}

/* ---- connections ---- */

int lg_set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -1;
    return fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

int lg_tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int lg_conn_flush(lg_conn *c)
{
    while (c->out.off < c->out.len) {
        ssize_t k = send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            return -1;
        }
        c->out.off += (size_t)k;
    }
    c->out.off = c->out.len = 0;
    return 1;
}

ssize_t lg_conn_fill(lg_conn *c)
{
    if (c->in.off == c->in.len) c->in.off = c->in.len = 0;
    else if (c->in.off > (1u << 16)) lg_buf_compact(&c->in);
    if (lg_buf_reserve(&c->in, 1u << 16)) return -2;
    for (;;) {
        ssize_t k = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len - 1);
        if (k > 0) {
            c->in.len += (size_t)k;
            return k;
        }
        if (k == 0) return 0;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
        return -2;
    }
}

void lg_conn_close(lg_conn *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    lg_buf_free(&c->out);
    lg_buf_free(&c->in);
}

int lg_raw_io(lg_conn *c, unsigned events, int (*parse)(lg_conn *c, void *ud), void *ud)
{
    if (c->out.off < c->out.len) {
        int r = lg_conn_flush(c);
        if (r < 0) return LG_ERR;
        if (r == 0) return LG_MORE_OUT;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t k = lg_conn_fill(c);
        if (k == 0 || k == -2) return LG_ERR;
        if (k > 0) return parse(c, ud);
    }
    return LG_MORE_IN;
}

int lg_http_parse_conn(lg_conn *c, void *ud)
{
    (void)ud;
    size_t used = 0;
    int r = lg_http_feed(&c->http, c->in.p + c->in.off, c->in.len - c->in.off, &used);
    c->in.off += used;
    if (c->in.off == c->in.len) c->in.off = c->in.len = 0;
    if (r < 0) return LG_ERR;
    if (r == 0) return LG_MORE_IN;
    c->ok = c->http.status >= 200 && c->http.status < 300;
    return LG_DONE;
}

int lg_http_roundtrip(int fd, const char *req, size_t len, lg_http *h)
{
    for (size_t off = 0; off < len;) {
        ssize_t k = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        off += (size_t)k;
    }
    char *buf = malloc(1u << 17);
    if (!buf) return -1;
    size_t have = 0;
    int rc = -1;
    for (;;) {
        ssize_t k = read(fd, buf + have, (1u << 17) - have);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        have += (size_t)k;
        size_t used = 0;
        int r = lg_http_feed(h, buf, have, &used);
        memmove(buf, buf + used, have - used);
        have -= used;
        if (r < 0) break;
        if (r == 1) { rc = h->status; break; }
    }
    free(buf);
    return rc;
}

/* ---- the engine ---- */

int lg_result_init(lg_result *r)
{
    memset(r, 0, sizeof *r);
    for (int k = 0; k < LG_MAX_KINDS; k++) {
        r->hist[k] = malloc(sizeof(lg_hist));
        if (!r->hist[k]) return -1;
        lg_hist_init(r->hist[k]);
    }
    return 0;
}

void lg_result_free(lg_result *r)
{
    for (int k = 0; k < LG_MAX_KINDS; k++) free(r->hist[k]);
    memset(r, 0, sizeof *r);
}

typedef struct engine {
    int ep;
    const lg_run_cfg *cfg;
    const lg_ops *ops;
    void *ud;
    lg_result *res;
    lg_conn *conns;
    int n;
    int busy;                              /* connections with a request in flight */
    int generating;                        /* still issuing new requests */
    /* open loop */
    uint64_t *q;                           /* ring of intended send times */
    size_t qcap, qhead, qlen;
    lg_conn **idle;                        /* stack of idle connections */
    int nidle;
} engine;

static void set_ev(engine *e, lg_conn *c, unsigned want)
{
    if (c->ev == want || c->fd < 0) return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    epoll_ctl(e->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->ev = want;
}

static void kill_conn(engine *e, lg_conn *c)
{
    if (c->busy) e->busy--;
    c->busy = 0;
    c->dead = 1;
    e->res->conn_errors++;
    if (c->fd >= 0) epoll_ctl(e->ep, EPOLL_CTL_DEL, c->fd, NULL);
}

static void after(engine *e, lg_conn *c, int r);

static void issue(engine *e, lg_conn *c, uint64_t t0)
{
    c->t0 = t0;
    c->kind = 0;
    c->ok = 0;
    c->nevents = 0;
    c->busy = 1;
    c->seq++;
    e->busy++;
    int r = e->ops->issue(c, e->ud);
    if (r == LG_DONE) r = LG_MORE_IN;      /* an answer cannot be complete before it is read */
    after(e, c, r);
}

static int in_window(engine *e, uint64_t t) { return t >= e->res->t_measure0 && t < e->res->t_measure1; }

static void record(engine *e, lg_conn *c, uint64_t now)
{
    lg_result *res = e->res;
    int k = c->kind >= 0 && c->kind < LG_MAX_KINDS ? c->kind : 0;
    int counted = e->cfg->open_loop ? in_window(e, c->t0) : in_window(e, now);
    if (!counted) return;
    lg_hist_add(res->hist[k], now > c->t0 ? now - c->t0 : 0);
    res->reqs[k]++;
    res->events[k] += c->nevents;
    if (!c->ok) res->failed++;
}

static void dispatch(engine *e)
{
    while (e->qlen && e->nidle) {
        uint64_t t = e->q[e->qhead];
        e->qhead = (e->qhead + 1) % e->qcap;
        e->qlen--;
        if (!e->generating && !in_window(e, t)) continue;   /* draining: only what the window owes */
        lg_conn *c = e->idle[--e->nidle];
        issue(e, c, t);
    }
}

static void after(engine *e, lg_conn *c, int r)
{
    switch (r) {
    case LG_DONE: {
        uint64_t now = lg_now_ns();
        c->busy = 0;
        e->busy--;
        record(e, c, now);
        set_ev(e, c, EPOLLIN);
        if (e->cfg->open_loop) {
            e->idle[e->nidle++] = c;
            dispatch(e);
        } else if (e->generating) {
            issue(e, c, lg_now_ns());
        }
        break;
    }
    case LG_MORE_IN: set_ev(e, c, EPOLLIN); break;
    case LG_MORE_OUT: set_ev(e, c, EPOLLIN | EPOLLOUT); break;
    default: kill_conn(e, c); break;
    }
}

static int wait_events(engine *e, struct epoll_event *evs, int max, uint64_t timeout_ns)
{
    struct timespec ts = {(time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u)};
    static int no_pwait2;
    if (!no_pwait2) {
        int n = epoll_pwait2(e->ep, evs, max, &ts, NULL);
        if (n >= 0 || errno != ENOSYS) return n;
        no_pwait2 = 1;
    }
    return epoll_wait(e->ep, evs, max, (int)((timeout_ns + 999999u) / 1000000u));
}

int lg_run(const lg_run_cfg *cfg, lg_conn *conns, int n, const lg_ops *ops, void *ud, lg_result *res)
{
    engine e;
    memset(&e, 0, sizeof e);
    e.cfg = cfg;
    e.ops = ops;
    e.ud = ud;
    e.res = res;
    e.conns = conns;
    e.n = n;
    e.ep = epoll_create1(EPOLL_CLOEXEC);
    if (e.ep < 0) return -1;
    int usable = 0;
    for (int i = 0; i < n; i++) {
        lg_conn *c = &conns[i];
        c->id = i;
        c->busy = 0;
        if (c->dead || c->fd < 0) continue;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(e.ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) { c->dead = 1; continue; }
        c->ev = EPOLLIN;
        usable++;
    }
    if (!usable) { close(e.ep); return -1; }
    if (cfg->open_loop) {
        e.qcap = 1u << 20;
        e.q = malloc(e.qcap * sizeof *e.q);
        e.idle = malloc((size_t)n * sizeof *e.idle);
        if (!e.q || !e.idle) { free(e.q); free(e.idle); close(e.ep); return -1; }
        for (int i = n - 1; i >= 0; i--)
            if (!conns[i].dead && conns[i].fd >= 0) e.idle[e.nidle++] = &conns[i];
    }
    uint64_t t_start = lg_now_ns();
    res->t_measure0 = t_start + cfg->warmup_ns;
    res->t_measure1 = res->t_measure0 + cfg->measure_ns;
    e.generating = 1;
    int marked = 0;
    double interval = cfg->open_loop && cfg->rate > 0 ? 1e9 / cfg->rate : 0;
    uint64_t i_next = 0;                   /* open loop: index of the next due request */
    if (!cfg->open_loop)
        for (int i = 0; i < n; i++)
            if (!conns[i].dead && conns[i].fd >= 0) issue(&e, &conns[i], lg_now_ns());
    struct epoll_event evs[256];
    uint64_t drain_end = 0;
    for (;;) {
        uint64_t now = lg_now_ns();
        if (!marked && now >= res->t_measure0) {
            marked = 1;
            if (cfg->mark) cfg->mark(cfg->mark_arg, 0);
        }
        if (e.generating && (now >= res->t_measure1 || (cfg->stop && *cfg->stop))) {
            e.generating = 0;
            if (now < res->t_measure1) res->t_measure1 = now;   /* stopped early: shorter window */
            drain_end = now + cfg->drain_ns;
            if (!marked) {
                marked = 1;
                if (cfg->mark) cfg->mark(cfg->mark_arg, 0);
            }
            if (cfg->mark) cfg->mark(cfg->mark_arg, 1);
        }
        uint64_t timeout = 50000000u;
        if (e.generating && cfg->open_loop) {
            for (;;) {
                uint64_t due = t_start + (uint64_t)((double)i_next * interval);
                if (due > now || due >= res->t_measure1) {
                    if (due > now && due - now < timeout) timeout = due - now;
                    break;
                }
                if (e.qlen < e.qcap) {
                    e.q[(e.qhead + e.qlen) % e.qcap] = due;
                    e.qlen++;
                    if (e.qlen > res->max_queue) res->max_queue = e.qlen;
                }
                i_next++;
            }
            dispatch(&e);
        }
        if (e.generating && res->t_measure1 - now < timeout) timeout = res->t_measure1 - now;
        if (!e.generating) {
            if (cfg->open_loop) dispatch(&e);
            size_t owed = 0;
            if (cfg->open_loop)
                for (size_t k = 0; k < e.qlen; k++)
                    if (in_window(&e, e.q[(e.qhead + k) % e.qcap])) owed++;
            if ((e.busy == 0 && owed == 0) || now >= drain_end) {
                if (cfg->open_loop) {      /* what the window still owes counts, with its age now */
                    for (size_t k = 0; k < e.qlen; k++) {
                        uint64_t t = e.q[(e.qhead + k) % e.qcap];
                        if (!in_window(&e, t)) continue;
                        lg_hist_add(res->hist[0], now - t);
                        res->reqs[0]++;
                        res->failed++;
                        res->unfinished++;
                    }
                    for (int i = 0; i < n; i++)
                        if (conns[i].busy && in_window(&e, conns[i].t0)) {
                            lg_hist_add(res->hist[conns[i].kind], now - conns[i].t0);
                            res->reqs[conns[i].kind]++;
                            res->failed++;
                            res->unfinished++;
                        }
                }
                break;
            }
            timeout = drain_end - now < timeout ? drain_end - now : timeout;
        }
        int k = wait_events(&e, evs, 256, timeout);
        if (k < 0 && errno != EINTR) break;
        for (int i = 0; i < k; i++) {
            lg_conn *c = evs[i].data.ptr;
            if (c->dead) continue;
            if (!c->busy) {
                /* an idle connection became readable: the server closed it (idle timeout) */
                if (evs[i].events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP | EPOLLIN)) {
                    char b[256];
                    ssize_t r = recv(c->fd, b, sizeof b, MSG_DONTWAIT | MSG_PEEK);
                    if (r == 0 || (r < 0 && errno != EAGAIN)) {
                        kill_conn(&e, c);
                        if (cfg->open_loop) {
                            for (int j = 0; j < e.nidle; j++)
                                if (e.idle[j] == c) { e.idle[j] = e.idle[--e.nidle]; break; }
                        }
                    }
                }
                continue;
            }
            after(&e, c, ops->on_io(c, ud, evs[i].events));
        }
        if (e.busy == 0 && e.generating && !cfg->open_loop) {
            int alive = 0;
            for (int i = 0; i < n; i++) alive += !conns[i].dead;
            if (!alive) break;
        }
    }
    res->window_ns = res->t_measure1 > res->t_measure0 ? res->t_measure1 - res->t_measure0 : 0;
    for (int i = 0; i < n; i++)
        if (!conns[i].dead && conns[i].fd >= 0) epoll_ctl(e.ep, EPOLL_CTL_DEL, conns[i].fd, NULL);
    free(e.q);
    free(e.idle);
    close(e.ep);
    return 0;
}
