/*
 * http.c — the libmicrohttpd side of evstored: the access handler, request
 * bodies, routing, and the helpers that send answers.
 *
 * Handler protocol (libmicrohttpd calls it several times per request):
 *  1st call   headers are in: create the request context; refuse at once a
 *             body whose Content-Length is over --max-body-size (413).
 *  body calls append the bytes (or, past the limit, drop them).
 *  last call  route the request. An append suspends the connection until the
 *             writer thread calls back; libmicrohttpd then calls the handler
 *             again and the answer is queued there.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

uint64_t evsd_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- strings ---- */

int evsd_str_reserve(evsd_str *s, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n + 1) cap *= 2;
        char *q = realloc(s->p, cap);
        if (!q) return -ENOMEM;
        s->p = q;
        s->cap = cap;
    }
    return 0;
}

int evsd_str_add(evsd_str *s, const void *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n + 1) cap *= 2;
        char *q = realloc(s->p, cap);
        if (!q) return -ENOMEM;
        s->p = q;
        s->cap = cap;
    }
    if (n) memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = 0;
    return 0;
}

int evsd_str_addf(evsd_str *s, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return -EINVAL;
    if ((size_t)n < sizeof tmp) return evsd_str_add(s, tmp, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big) return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = evsd_str_add(s, big, (size_t)n);
    free(big);
    return rc;
}

int evsd_str_add_json_string(evsd_str *s, const char *p, size_t n)
{
    int rc = evsd_str_add(s, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        rc = evsd_str_add(s, p + start, i - start);
        char esc[8];
        switch (c) {
        case '"': strcpy(esc, "\\\""); break;
        case '\\': strcpy(esc, "\\\\"); break;
        case '\n': strcpy(esc, "\\n"); break;
        case '\r': strcpy(esc, "\\r"); break;
        case '\t': strcpy(esc, "\\t"); break;
        default: snprintf(esc, sizeof esc, "\\u%04x", c); break;
        }
        if (rc == 0) rc = evsd_str_add(s, esc, strlen(esc));
        start = i + 1;
    }
    if (rc == 0) rc = evsd_str_add(s, p + start, n - start);
    if (rc == 0) rc = evsd_str_add(s, "\"", 1);
    return rc;
}

void evsd_str_free(evsd_str *s)
{
    free(s->p);
    s->p = NULL;
    s->len = s->cap = 0;
}

/* ---- answering ---- */

enum MHD_Result evsd_respond(evsd_req *r, unsigned status, const char *content_type,
                             const char *body, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    if (content_type) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (status == 405) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, POST, PUT, DELETE");
    if (status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (r->close_after) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->status = (int)status;
    return ret;
}

enum MHD_Result evsd_error(evsd_req *r, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    evsd_str s = {0};
    evsd_str_add(&s, "{\"error\":", 9);
    evsd_str_add_json_string(&s, code, strlen(code));
    evsd_str_add(&s, ",\"message\":", 11);
    evsd_str_add_json_string(&s, msg, strlen(msg));
    evsd_str_add(&s, "}\n", 2);
    enum MHD_Result ret = evsd_respond(r, status, "application/json", s.p ? s.p : "", s.len);
    evsd_str_free(&s);
    return ret;
}

enum MHD_Result evsd_store_error(evsd_req *r, int rc, const char *what)
{
    evs_stats st;
    switch (rc) {
    case EVS_ENOTFOUND: return evsd_error(r, 404, "not_found", "%s: not found", what);
    case EVS_EINVAL: return evsd_error(r, 400, "invalid_parameter", "%s: invalid argument", what);
    case EVS_ETOOBIG: return evsd_error(r, 413, "payload_too_large", "%s: too large", what);
    case EVS_EREADONLY:
        return evsd_error(r, 503, "unavailable", "this server is read-only (--read-only): it follows another writer");
    case EVS_EFATAL:
    case EVS_ECLOSED:
        evs_stat(r->srv->store, &st);
        if (st.failed_rc == -ENOSPC)
            return evsd_error(r, 507, "insufficient_storage", "the disk is full; the store stopped accepting appends: %s",
                              evs_failure(r->srv->store) ? evs_failure(r->srv->store) : "");
        return evsd_error(r, 503, "unavailable", "the store is not accepting appends: %s",
                          evs_failure(r->srv->store) ? evs_failure(r->srv->store) : "shutting down");
    case EVS_ECORRUPT:
        return evsd_error(r, 500, "corrupt", "%s: stored data failed its checksum; run `evstore verify`", what);
    default:
        return evsd_error(r, 500, "internal", "%s: %s (%s)", what, evs_strerror(rc), evs_errname(rc));
    }
}

const char *evsd_arg(evsd_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *evsd_header(evsd_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/* ---- query parameters: a typo (?limt=10) is an error, not a silent no-op ---- */

typedef struct arg_check { const char *const *allowed; const char *unknown; } arg_check;

static enum MHD_Result check_one(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    arg_check *c = cls;
    for (const char *const *a = c->allowed; *a; a++)
        if (!strcmp(key, *a)) return MHD_YES;
    c->unknown = key;
    return MHD_NO;
}

int evsd_check_args(evsd_req *r, const char *const *allowed)
{
    static const char *const none[] = {NULL};
    arg_check c = {allowed ? allowed : none, NULL};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, check_one, &c);
    if (!c.unknown) return 0;
    char list[256] = "";
    for (const char *const *a = c.allowed; *a; a++) {
        strncat(list, list[0] ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, *a, sizeof list - strlen(list) - 1);
    }
    evsd_error(r, 400, "invalid_parameter", "unknown query parameter '%s'%s%s", c.unknown,
               list[0] ? "; this route takes: " : "; this route takes none", list);
    return -1;
}

/* ---- routing ---- */

static enum evsd_method method_of(const char *m)
{
    if (!strcmp(m, "GET")) return M_GET;
    if (!strcmp(m, "HEAD")) return M_HEAD;
    if (!strcmp(m, "POST")) return M_POST;
    if (!strcmp(m, "PUT")) return M_PUT;
    if (!strcmp(m, "DELETE")) return M_DELETE;
    return M_OTHER;
}

static enum MHD_Result method_not_allowed(evsd_req *r, const char *allowed)
{
    return evsd_error(r, 405, "method_not_allowed", "%s is not allowed here; use %s",
                      r->method == M_POST ? "POST" : r->method == M_PUT ? "PUT" : r->method == M_DELETE ? "DELETE" : "this method",
                      allowed);
}

static enum MHD_Result route(evsd_req *r)
{
    static const char *const read_args[] = {"from", "limit", "direction", "type", "stream_prefix", "watch", "heartbeat", NULL};
    static const char *const stream_read_args[] = {"from", "limit", "direction", "type", "watch", "heartbeat", NULL};
    static const char *const append_args[] = {"expected_version", NULL};
    static const char *const list_args[] = {"prefix", NULL};
    static const char *const backup_args[] = {"since", NULL};  /* [backup] */
    const char *u = r->url;
    int get = r->method == M_GET || r->method == M_HEAD;
    const char *const *allowed = NULL;
    if (!strcmp(u, "/events")) allowed = get ? read_args : NULL;
    else if (!strncmp(u, "/streams/", 9) && u[9]) allowed = get ? stream_read_args : append_args;
    else if (!strcmp(u, "/streams") || !strcmp(u, "/streams/")) allowed = list_args;
    else if (!strcmp(u, "/backup")) allowed = backup_args;  /* [backup] */
    else if (strncmp(u, "/projections/", 13) && strncmp(u, "/consumers/", 11) && evsd_check_args(r, NULL) != 0)
        return MHD_YES;
    if (allowed && evsd_check_args(r, allowed) != 0) return MHD_YES;
    if (!strcmp(u, "/health")) return get ? evsd_route_health(r) : method_not_allowed(r, "GET");
    /* everything but /health needs a token when auth is on; routes check scopes */
    if (evsd_auth_require(r, NULL, 0, NULL) != 0) return MHD_YES;
    if (!strcmp(u, "/stats")) return get ? evsd_route_stats(r) : method_not_allowed(r, "GET");
    if (!strcmp(u, "/metrics")) return get ? evsd_route_metrics(r) : method_not_allowed(r, "GET");
    if (!strcmp(u, "/events")) {
        if (get) return evsd_route_read(r, NULL);
        if (r->method == M_POST) return evsd_route_append(r, NULL);
        return method_not_allowed(r, "GET, POST");
    }
    if (!strncmp(u, "/events/", 8) && u[8]) {
        return get ? evsd_route_get_event(r, u + 8) : method_not_allowed(r, "GET");
    }
    if (!strcmp(u, "/streams") || !strcmp(u, "/streams/")) {
        return get ? evsd_route_list_streams(r) : method_not_allowed(r, "GET");
    }
    if (!strncmp(u, "/streams/", 9)) {
        /* everything after /streams/ is the name (already percent-decoded): '/' is literal */
        if (get) return evsd_route_read(r, u + 9);
        if (r->method == M_POST) return evsd_route_append(r, u + 9);
        return method_not_allowed(r, "GET, POST");
    }
    /* [consumers] projections and durable consumers (projections.c, consumers.c); the name is the rest */
    if (!strncmp(u, "/projections/", 13) && u[13]) return evsd_route_projection(r, u + 13);
    if (!strncmp(u, "/consumers/", 11) && u[11]) return evsd_route_consumer(r, u + 11);
    /* [backup] GET /backup?since=P: the backup archive, streamed (backup.c) */
    if (!strcmp(u, "/backup")) return evsd_route_backup(r);
    return evsd_error(r, 404, "not_found", "no route for %s", u);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **con_cls)
{
    evsd_server *srv = cls;
    evsd_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->srv = srv;
        r->conn = conn;
        r->url = url;
        r->method = method_of(method);
        r->start_ns = evsd_now_ns();
        pthread_mutex_init(&r->mu, NULL);
        *con_cls = r;
        if (atomic_load(&srv->metrics.connections) > srv->cfg.max_connections) {
            /* over --max-connections: a clear answer and a closed connection,
             * rather than a client left waiting in the kernel's backlog */
            r->close_after = 1;
            return evsd_error(r, 503, "unavailable", "too many connections (--max-connections %u); try again later",
                              srv->cfg.max_connections);
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > srv->cfg.max_body_size) {
            r->body_too_big = 1;  /* answered now: libmicrohttpd drops the body and closes */
            return evsd_error(r, 413, "payload_too_large", "request body of %s bytes is over the limit of %llu",
                              cl, (unsigned long long)srv->cfg.max_body_size);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!r->body_too_big && r->body.len + *upload_data_size > r->srv->cfg.max_body_size) {
            r->body_too_big = 1;
            evsd_str_free(&r->body);
        }
        if (!r->body_too_big && evsd_str_add(&r->body, upload_data, *upload_data_size) != 0) return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->status) return MHD_YES;  /* already answered (413 on the first call) */
    if (r->append_queued) return evsd_append_finish(r);
    if (r->job) return evsd_job_finish(r);  /* [consumers] a change that ran off-thread */
    if (r->body_too_big)
        return evsd_error(r, 413, "payload_too_large", "request body is over the limit of %llu bytes",
                          (unsigned long long)srv->cfg.max_body_size);
    if (atomic_load(&srv->stopping))
        return evsd_error(r, 503, "unavailable", "the server is shutting down");
    return route(r);
}

/* Counts the threads inside the handler, for the shutdown drain: a request
 * that read `stopping` as 0 has already raised in_handler (both sequentially
 * consistent), so once main.c, after setting `stopping`, sees in_handler at 0,
 * every request that got past the check has queued what it suspends for
 * (raised `inflight`) and no new one can. Without it, an append could
 * suspend its connection after the drain looked, and MHD_stop_daemon aborts
 * on a suspended connection. */
static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **con_cls)
{
    evsd_server *srv = cls;
    atomic_fetch_add(&srv->in_handler, 1);
    enum MHD_Result ret = handle(cls, conn, url, method, version, upload_data, upload_data_size, con_cls);
    atomic_fetch_sub(&srv->in_handler, 1);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    evsd_server *srv = cls;
    evsd_req *r = *con_cls;
    if (!r) return;
    if (r->status) evsd_metrics_status(&srv->metrics, (unsigned)r->status);
    evsd_append_cleanup(r);
    evsd_job_free(r);  /* [consumers] */
    evsd_str_free(&r->body);
    pthread_mutex_destroy(&r->mu);
    free(r);
    *con_cls = NULL;
}

static void connection_event(void *cls, struct MHD_Connection *conn, void **socket_context,
                             enum MHD_ConnectionNotificationCode toe)
{
    evsd_server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) atomic_fetch_add(&srv->metrics.connections, 1);
    else atomic_fetch_sub(&srv->metrics.connections, 1);
}

/* Percent-decoding of paths and query values. libmicrohttpd hands them to us
 * as C strings, so a decoded %00 would silently cut a name short: it becomes
 * 0x01 instead, a control character that every name and parameter check
 * refuses with a clear 400. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
            char hex[3] = {r[1], r[2], 0};
            unsigned v = (unsigned)strtoul(hex, NULL, 16);
            *w++ = v ? (char)v : '\x01';
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
    return (size_t)(w - s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = 0;
    evsd_log(EVS_LOG_DEBUG, "http: %s", msg);
}

/* Refuses new connections once shutdown has begun (see evsd_http_quiesce). */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    evsd_server *srv = cls;
    return atomic_load(&srv->stopping) ? MHD_NO : MHD_YES;
}

/* A whole file, NUL-terminated (--auth-tokens, --tls-cert, --tls-key); NULL if unreadable. */
char *evsd_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *p = realloc(buf, cap);
            if (!p) { free(buf); fclose(f); return NULL; }
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

/* Is the address free? A plain bind (SO_REUSEADDR, so that connections of a
 * previous run in TIME_WAIT do not count, but not SO_REUSEPORT): it fails
 * when another socket listens there, which the daemons' own SO_REUSEPORT
 * would otherwise join silently. */
static int address_free(const struct sockaddr *sa, socklen_t sl)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1, rc = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (sa->sa_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, sa, sl) != 0) rc = -errno;
    close(fd);
    return rc;
}

/* ---- the daemons' threads ----
 *
 * Each daemon runs in "external" mode on a thread of ours rather than on
 * libmicrohttpd's internal thread. The reason is the resume: on a daemon
 * with its own thread, every MHD_resume_connection writes the daemon's
 * eventfd, i.e. one syscall on the resuming thread per connection (the
 * writer paid one per append request, the watch hub one per watcher per
 * commit). Without that thread libmicrohttpd has no eventfd: a resume only
 * marks the connection under a mutex, and evsd_resume wakes the loop through
 * our own eventfd, once until the loop runs again (`pending`).
 *
 * Ordering: the loop clears `pending` before MHD_run, which takes up every
 * connection marked before it looks; a resume marks first, then sets
 * `pending`: if it found it clear, it writes the eventfd and the loop's next
 * epoll_wait returns at once; if it found it set, the loop has not cleared it
 * yet, so its MHD_run to come sees the mark. */
struct evsd_loop {
    evsd_server *srv;
    struct MHD_Daemon *d;
    pthread_t thread;
    int started;
    int ep;                          /* epoll: the daemon's epoll fd and efd */
    int efd;                         /* eventfd: resumes and stop */
    atomic_int pending;              /* a wake-up is on its way */
    atomic_int stop;
    pthread_mutex_t qmu;             /* sockets handed over by evsd_http_add_connection */
    struct added_conn *added;
};

/* A connection made elsewhere, for the loop to give its daemon (tests). */
struct added_conn {
    int fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct added_conn *next;
};

static void take_added(evsd_loop *l)
{
    pthread_mutex_lock(&l->qmu);
    struct added_conn *a = l->added;
    l->added = NULL;
    pthread_mutex_unlock(&l->qmu);
    while (a) {
        struct added_conn *next = a->next;
        MHD_add_connection(l->d, a->fd, (const struct sockaddr *)&a->addr, a->addrlen);  /* closes fd on failure */
        free(a);
        a = next;
    }
}

#define LOOP_TICK_MS 500             /* longest sleep (libmicrohttpd's timeouts are in seconds) */

static void *loop_main(void *arg)
{
    evsd_loop *l = arg;
    pthread_setname_np(pthread_self(), "evsd-http");
    while (!atomic_load(&l->stop)) {
        atomic_store(&l->pending, 0);
        take_added(l);  /* sockets handed over (tests): an uncontended lock */
        MHD_run(l->d);
        int timeout = LOOP_TICK_MS;
        MHD_UNSIGNED_LONG_LONG to;
        if (MHD_get_timeout(l->d, &to) == MHD_YES && to < (MHD_UNSIGNED_LONG_LONG)timeout) timeout = (int)to;
        if (timeout == 0) continue;  /* data already pending */
        struct epoll_event ev[2];
        int n = epoll_wait(l->ep, ev, 2, timeout);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.fd == l->efd) {
                uint64_t v;
                if (read(l->efd, &v, sizeof v) < 0) { /* EAGAIN: already read */ }
            }
        }
    }
    return NULL;
}

static void loop_wake(evsd_loop *l)
{
    uint64_t one = 1;
    if (write(l->efd, &one, sizeof one) < 0) { /* EAGAIN: the counter is full, so it is awake anyway */ }
}

void evsd_resume(evsd_server *srv, struct MHD_Connection *conn)
{
    /* which loop, looked up before the resume: once resumed, the connection
     * may be answered and closed at any moment */
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_DAEMON);
    evsd_loop *l = NULL;
    for (unsigned i = 0; ci && i < srv->ndaemons; i++)
        if (srv->daemons[i] == ci->daemon) l = srv->loops[i];
    MHD_resume_connection(conn);
    if (!l) {
        for (unsigned i = 0; i < srv->ndaemons; i++) loop_wake(srv->loops[i]);  /* cannot happen; be safe */
        return;
    }
    if (!atomic_exchange(&l->pending, 1)) loop_wake(l);
}

int evsd_http_add_connection(evsd_server *srv, int fd, const struct sockaddr *addr, socklen_t addrlen)
{
    struct added_conn *a = calloc(1, sizeof *a);
    if (!srv->ndaemons || !a || addrlen > sizeof a->addr) {
        free(a);
        close(fd);
        return -1;
    }
    a->fd = fd;
    memcpy(&a->addr, addr, addrlen);
    a->addrlen = addrlen;
    evsd_loop *l = srv->loops[0];
    pthread_mutex_lock(&l->qmu);
    a->next = l->added;
    l->added = a;
    pthread_mutex_unlock(&l->qmu);
    atomic_store(&l->pending, 1);
    loop_wake(l);
    return 0;
}

static void loop_free(evsd_loop *l)
{
    if (!l) return;
    for (struct added_conn *a = l->added, *next; a; a = next) {
        next = a->next;
        close(a->fd);
        free(a);
    }
    pthread_mutex_destroy(&l->qmu);
    if (l->ep >= 0) close(l->ep);
    if (l->efd >= 0) close(l->efd);
    free(l);
}

static evsd_loop *loop_new(evsd_server *srv, struct MHD_Daemon *d)
{
    evsd_loop *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->srv = srv;
    l->d = d;
    pthread_mutex_init(&l->qmu, NULL);
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
    struct epoll_event e1 = {.events = EPOLLIN, .data.fd = di ? di->epoll_fd : -1};
    struct epoll_event e2 = {.events = EPOLLIN, .data.fd = l->efd};
    if (l->ep < 0 || l->efd < 0 || !di || epoll_ctl(l->ep, EPOLL_CTL_ADD, di->epoll_fd, &e1) != 0 ||
        epoll_ctl(l->ep, EPOLL_CTL_ADD, l->efd, &e2) != 0) {
        loop_free(l);
        return NULL;
    }
    return l;
}

/* Started only once every daemon and loop is in srv->daemons/loops: a
 * request a loop serves reaches evsd_resume (on the writer, the watch hub),
 * which reads those arrays; creating the threads after the last write orders
 * the writes before every such read. */
static int loop_start(evsd_loop *l)
{
    if (pthread_create(&l->thread, NULL, loop_main, l) != 0) return -1;
    l->started = 1;
    return 0;
}

int evsd_http_start(evsd_server *srv)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;  /* no internal thread: loop_main */
    if (inet_pton(AF_INET, srv->cfg.listen_host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(srv->cfg.listen_port);
        sl = sizeof *in4;
    } else if (inet_pton(AF_INET6, srv->cfg.listen_host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(srv->cfg.listen_port);
        sl = sizeof *in6;
        flags |= MHD_USE_IPv6;
    } else if (!strcmp(srv->cfg.listen_host, "localhost")) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(srv->cfg.listen_port);
        in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof *in4;
    } else {
        evsd_log(EVS_LOG_ERROR, "cannot listen on '%s': give a numeric IPv4 or IPv6 address", srv->cfg.listen_host);
        return -1;
    }
    int rc = address_free((struct sockaddr *)&ss, sl);
    if (rc) {
        evsd_log(EVS_LOG_ERROR, "cannot listen on %s:%u: %s", srv->cfg.listen_host, srv->cfg.listen_port,
                 rc == -EADDRINUSE ? "the address is already in use (another server is listening there)" : strerror(-rc));
        return -1;
    }
    char *cert = NULL, *key = NULL;
    size_t certlen = 0, keylen = 0;
    if (srv->cfg.tls_cert) {
        cert = evsd_read_file(srv->cfg.tls_cert, &certlen);
        key = evsd_read_file(srv->cfg.tls_key, &keylen);
        if (!cert || !key) {
            evsd_log(EVS_LOG_ERROR, "cannot read --tls-cert/--tls-key (%s, %s)", srv->cfg.tls_cert, srv->cfg.tls_key);
            free(cert);
            free(key);
            return -1;
        }
        flags |= MHD_USE_TLS;
    }
    struct MHD_OptionItem tls_opts[] = {
        {cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, cert},
        {key ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, key},
        {MHD_OPTION_END, 0, NULL},
    };
    /* One single-threaded daemon per thread, each with its own listening
     * socket on the port (SO_REUSEPORT): the kernel spreads new connections
     * over them evenly, instead of the threads of one daemon racing to
     * accept on a shared socket. Each may hold every connection (the 503
     * over --max-connections counts them all). */
    unsigned n = srv->cfg.threads ? srv->cfg.threads : 1;
    if (n > sizeof srv->daemons / sizeof srv->daemons[0]) n = sizeof srv->daemons / sizeof srv->daemons[0];
    for (srv->ndaemons = 0; srv->ndaemons < n; srv->ndaemons++) {
        struct MHD_Daemon *d = MHD_start_daemon(
            flags, srv->cfg.listen_port, accept_policy, srv, handler, srv,
            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
            MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
            MHD_OPTION_CONNECTION_LIMIT, srv->cfg.max_connections + EVSD_OVERFLOW_CONNECTIONS,
            MHD_OPTION_CONNECTION_TIMEOUT, srv->cfg.idle_timeout,
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
            MHD_OPTION_NOTIFY_COMPLETED, completed, srv,
            MHD_OPTION_NOTIFY_CONNECTION, connection_event, srv,
            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
            MHD_OPTION_UNESCAPE_CALLBACK, unescape, srv,
            MHD_OPTION_ARRAY, tls_opts,
            MHD_OPTION_END);
        if (!d) break;
        evsd_loop *l = loop_new(srv, d);
        if (!l) {
            MHD_stop_daemon(d);
            break;
        }
        srv->daemons[srv->ndaemons] = d;
        srv->loops[srv->ndaemons] = l;
    }
    free(cert);
    free(key);
    int started = srv->ndaemons == n;
    for (unsigned i = 0; started && i < n; i++)
        if (loop_start(srv->loops[i]) != 0) started = 0;  /* evsd_http_stop below stops what started */
    if (!started) {
        evsd_log(EVS_LOG_ERROR, "cannot listen on %s:%u (address in use, or not allowed?)", srv->cfg.listen_host,
                 srv->cfg.listen_port);
        evsd_http_stop(srv);
        return -1;
    }
    return 0;
}

void evsd_http_stop(evsd_server *srv)
{
    for (unsigned i = 0; i < srv->ndaemons; i++) {
        atomic_store(&srv->loops[i]->stop, 1);
        loop_wake(srv->loops[i]);
    }
    for (unsigned i = 0; i < srv->ndaemons; i++)
        if (srv->loops[i]->started) pthread_join(srv->loops[i]->thread, NULL);
    /* the loops are gone: libmicrohttpd closes the connections on this thread */
    for (unsigned i = 0; i < srv->ndaemons; i++) {
        MHD_stop_daemon(srv->daemons[i]);
        loop_free(srv->loops[i]);
        srv->daemons[i] = NULL;
        srv->loops[i] = NULL;
    }
    srv->ndaemons = 0;
}

/* Stop taking new connections while the drain runs. MHD_quiesce_daemon is
 * not used: it races with the daemon's own threads (a worker at its
 * connection limit takes the listen socket out of its epoll set, quiesce then
 * fails to remove it again and libmicrohttpd aborts). The accept policy below
 * closes new connections instead, and requests already open get a 503. */
void evsd_http_quiesce(evsd_server *srv)
{
    atomic_store(&srv->stopping, 1);
}
