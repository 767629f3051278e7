/*
 * http_test.h — what the black-box HTTP tests of evstored share: starting
 * the real server binary on a free loopback port with a fresh data directory,
 * stopping it (SIGTERM, exit status checked) or killing it (SIGKILL), and a
 * small, strict HTTP/1.1 client over plain sockets.
 *
 * Why a hand-written client and not libcurl: the tests need raw control of
 * the socket anyway (a watcher that never reads, headers sent byte by byte,
 * idle connections held open, a body that lies about its length), and a
 * client that checks the framing itself (status line, Content-Length,
 * chunked encoding) also tests the server's framing. Every socket operation
 * has a deadline, so a hung server fails a test instead of hanging it.
 *
 * Included by tests/unit/test_http_*.c (one executable each, cmocka, linked
 * with the test-support library); everything here is static. Not thread-safe
 * in the cmocka sense: assertions (fail_msg, assert_*) may only run on the
 * test's main thread. Worker threads use the ht_* calls that return codes,
 * record what they saw, and the main thread asserts after joining them.
 *
 * Invariants kept:
 *  - the server binary is $EVS_BIN/evstored (set by ctest), else found
 *    relative to the test executable (BUILD/tests/x -> BUILD/evstored);
 *  - every start picks a new port the kernel handed out (bound with
 *    SO_REUSEPORT until the server listens, so nobody else gets it), and
 *    EVSTORE_* variables of the caller's environment never reach the server;
 *  - the server's stderr goes to DIR/server.log; failure messages quote its
 *    tail.
 */
#ifndef EVS_HTTP_TEST_H
#define EVS_HTTP_TEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "testutil.h"

#define HT_FN static __attribute__((unused))

/* Generous: the same tests run against an ASan build on a loaded machine. */
#define HT_TIMEOUT_MS 15000

#if defined(__SANITIZE_ADDRESS__)
#define HT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HT_ASAN 1
#endif
#endif
#ifndef HT_ASAN
#define HT_ASAN 0
#endif

extern char **environ;

/* ------------------------------------------------------------------ time */

HT_FN int64_t ht_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

HT_FN double ht_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

HT_FN void ht_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* --------------------------------------------------------------- server */

#define HT_MAX_ARGS 24

typedef struct ht_server {
    char bin[PATH_MAX];              /* evstored */
    char dir[1024];                  /* scratch root, removed at the end */
    char data[PATH_MAX];             /* DIR/data: the store */
    char log[PATH_MAX];              /* DIR/server.log: the server's stderr, all starts */
    const char *args[HT_MAX_ARGS];   /* extra flags, kept for restarts (borrowed) */
    int nargs;
    const char *env_extra[4];        /* extra NAME=VALUE for the server (borrowed) */
    int nenv_extra;
    pid_t pid;                       /* running server, or 0 */
    uint16_t port;                   /* where it listens */
    int starts;                      /* how many times it was started */
} ht_server;

HT_FN void ht_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    (void)evs_test_seed(); /* prints the seed once */
    const char *filter = getenv("EVS_TEST_FILTER"); /* EVS_TEST_FILTER=t_many_streams: run only those */
    if (filter && *filter) cmocka_set_test_filter(filter);
}

/* The last `max` bytes of the server log, for failure messages (static buffer). */
HT_FN const char *ht_log_tail(const ht_server *s, size_t max)
{
    static char buf[4096];
    if (max >= sizeof buf) max = sizeof buf - 1;
    buf[0] = 0;
    int fd = open(s->log, O_RDONLY);
    if (fd < 0) return "(no server log)";
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)max ? end - (off_t)max : 0;
    ssize_t n = pread(fd, buf, max, from);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    return buf;
}

HT_FN void ht_find_bin(char *out, size_t cap)
{
    const char *b = getenv("EVS_BIN");
    if (b && *b) {
        snprintf(out, cap, "%s/evstored", b);
        if (access(out, X_OK) == 0) return;
    }
    char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) *slash = 0;              /* BUILD/tests */
        snprintf(out, cap, "%s/../evstored", self);
        if (access(out, X_OK) == 0) return;
    }
    snprintf(out, cap, "build/evstored");
}

/* A fresh scratch directory and the server's settings. Does not start it. */
HT_FN void ht_server_init(ht_server *s, const char *const *args)
{
    memset(s, 0, sizeof *s);
    ht_find_bin(s->bin, sizeof s->bin);
    if (access(s->bin, X_OK) != 0) fail_msg("evstored not found: expected an executable at %s (set EVS_BIN)", s->bin);
    int rc = evs_test_tmpdir(s->dir, sizeof s->dir);
    if (rc != 0) fail_msg("cannot make a scratch directory: rc %d", rc);
    snprintf(s->data, sizeof s->data, "%s/data", s->dir);
    snprintf(s->log, sizeof s->log, "%s/server.log", s->dir);
    for (int i = 0; args && args[i]; i++) {
        if (s->nargs >= HT_MAX_ARGS - 8) fail_msg("too many server flags");
        s->args[s->nargs++] = args[i];
    }
}

/* A loopback port from the kernel; *keep is a socket bound to it with
 * SO_REUSEPORT (the server sets it too), held until the server listens. */
HT_FN uint16_t ht_pick_port(int *keep)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail_msg("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) fail_msg("bind 127.0.0.1:0: %s", strerror(errno));
    socklen_t sl = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &sl);
    *keep = fd;
    return ntohs(a.sin_port);
}

HT_FN int ht_connect(uint16_t port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (errno != EINPROGRESS) { int e = errno; close(fd); return -e; }
        struct pollfd p = {fd, POLLOUT, 0};
        int pr = poll(&p, 1, timeout_ms);
        if (pr <= 0) { close(fd); return pr == 0 ? -ETIMEDOUT : -errno; }
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) { close(fd); return -err; }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Send everything before the deadline. 0, or -errno (-ETIMEDOUT). */
HT_FN int ht_send_all(int fd, const void *p, size_t n, int64_t deadline)
{
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k > 0) { c += k; n -= (size_t)k; continue; }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno != EAGAIN) return -errno;
        int left = (int)(deadline - ht_now_ms());
        if (left <= 0) return -ETIMEDOUT;
        struct pollfd pf = {fd, POLLOUT, 0};
        poll(&pf, 1, left);
    }
    return 0;
}

/* Wait for pid to exit, at most timeout_ms. 1 and *status if it did, 0 if not. */
HT_FN int ht_wait_exit(pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = ht_now_ms() + timeout_ms;
    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid) return 1;
        if (ht_now_ms() > deadline) return 0;
        ht_sleep_ms(5);
    }
}

HT_FN void ht_describe_status(int status, char *out, size_t cap)
{
    if (WIFEXITED(status)) snprintf(out, cap, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(out, cap, "killed by signal %d", WTERMSIG(status));
    else snprintf(out, cap, "status 0x%x", status);
}

/* SIGTERM; the server must exit 0 within a few seconds (more under ASan). */
HT_FN void ht_server_stop(ht_server *s)
{
    if (!s->pid) return;
    pid_t pid = s->pid;
    kill(pid, SIGTERM);
    int status = 0;
    int limit = HT_ASAN ? 30000 : 10000;
    if (!ht_wait_exit(pid, limit, &status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        s->pid = 0;
        fail_msg("after SIGTERM evstored should exit 0 within %d ms; it was still running (killed it); log:\n%s", limit,
                 ht_log_tail(s, 2000));
    }
    s->pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char how[64];
        ht_describe_status(status, how, sizeof how);
        fail_msg("after SIGTERM evstored should exit 0; it ended with %s; log:\n%s", how, ht_log_tail(s, 3000));
    }
}

HT_FN void ht_server_kill9(ht_server *s)
{
    if (!s->pid) return;
    kill(s->pid, SIGKILL);
    int status;
    waitpid(s->pid, &status, 0);
    s->pid = 0;
}

/* Teardown: kill a server a failed test left running, remove the scratch dir. */
HT_FN void ht_server_free(ht_server *s)
{
    if (!s) return;
    ht_server_kill9(s);
    if (s->dir[0] && !getenv("EVS_KEEP_TMP")) evs_test_rmtree(s->dir);
}

/* From /proc/PID/status: VmRSS or VmHWM ("VmRSS:") in KiB, 0 if unknown. */
HT_FN uint64_t ht_proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    uint64_t v = 0;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, fl)) { v = strtoull(line + fl, NULL, 10); break; }
    fclose(f);
    return v;
}

/* ----------------------------------------------------------- the client */

/* A buffered reader over a socket. */
typedef struct ht_rd {
    int fd;
    char *buf;
    size_t len, off, cap;
    int eof;                         /* the peer closed (or reset) */
    int err;                         /* errno of a failed read */
} ht_rd;

/* Read more bytes; 1 got some, 0 EOF, -ETIMEDOUT, -errno. */
HT_FN int ht_rd_fill(ht_rd *rd, int64_t deadline)
{
    if (rd->eof) return 0;
    if (rd->off > 0 && rd->off == rd->len) rd->off = rd->len = 0;
    if (rd->off > 65536 && rd->off * 2 > rd->len) {
        memmove(rd->buf, rd->buf + rd->off, rd->len - rd->off);
        rd->len -= rd->off;
        rd->off = 0;
    }
    if (rd->cap - rd->len < 65536) {
        size_t cap = rd->cap ? rd->cap * 2 : 131072;
        while (cap - rd->len < 65536) cap *= 2;
        char *nb = realloc(rd->buf, cap + 1);
        if (!nb) return -ENOMEM;
        rd->buf = nb;
        rd->cap = cap;
    }
    for (;;) {
        ssize_t k = recv(rd->fd, rd->buf + rd->len, rd->cap - rd->len, 0);
        if (k > 0) { rd->len += (size_t)k; rd->buf[rd->len] = 0; return 1; }
        if (k == 0) { rd->eof = 1; return 0; }
        if (errno == EINTR) continue;
        if (errno != EAGAIN) { rd->err = errno; rd->eof = 1; return -errno; }
        int left = (int)(deadline - ht_now_ms());
        if (left <= 0) return -ETIMEDOUT;
        struct pollfd pf = {rd->fd, POLLIN, 0};
        poll(&pf, 1, left);
    }
}

/* One line (up to LF, CR LF stripped) as a pointer into the buffer, valid
 * until the next call. 1, 0 on EOF before a full line, or -errno. */
HT_FN int ht_rd_line(ht_rd *rd, int64_t deadline, char **line, size_t *n)
{
    for (;;) {
        char *s = rd->buf ? rd->buf + rd->off : NULL;
        char *nl = s ? memchr(s, '\n', rd->len - rd->off) : NULL;
        if (nl) {
            size_t k = (size_t)(nl - s);
            rd->off += k + 1;
            if (k && s[k - 1] == '\r') k--;
            s[k] = 0;
            *line = s;
            *n = k;
            return 1;
        }
        int rc = ht_rd_fill(rd, deadline);
        if (rc <= 0) return rc;
    }
}

/* Exactly n bytes appended to out (a growing buffer). */
HT_FN int ht_rd_bytes(ht_rd *rd, size_t n, int64_t deadline, char **out, size_t *olen)
{
    while (n) {
        if (rd->off == rd->len) {
            int rc = ht_rd_fill(rd, deadline);
            if (rc <= 0) return rc == 0 ? -EPIPE : rc;
        }
        size_t k = rd->len - rd->off;
        if (k > n) k = n;
        char *nb = realloc(*out, *olen + k + 1);
        if (!nb) return -ENOMEM;
        *out = nb;
        memcpy(*out + *olen, rd->buf + rd->off, k);
        *olen += k;
        (*out)[*olen] = 0;
        rd->off += k;
        n -= k;
    }
    return 1;
}

typedef struct ht_resp {
    int status;                      /* HTTP status, or 0 when no response came */
    int err;                         /* -errno of the failure when status is 0 */
    char *head;                      /* status line and headers, NUL-terminated */
    char *body;                      /* body (decoded from chunks), NUL-terminated */
    size_t len;                      /* body length */
    int chunked;                     /* the body came chunked */
} ht_resp;

HT_FN void ht_resp_free(ht_resp *r)
{
    if (!r) return;
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* A header's value (case-insensitive name) copied into out; 1 if present. */
HT_FN int ht_header(const char *head, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = head ? strchr(head, '\n') : NULL;
    while (p && *p) {
        p++;
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ' || *v == '\t') v++;
            size_t k = strcspn(v, "\r\n");
            if (k >= cap) k = cap - 1;
            memcpy(out, v, k);
            out[k] = 0;
            return 1;
        }
        p = strchr(p, '\n');
    }
    if (cap) out[0] = 0;
    return 0;
}

/* Status line and headers. Returns 1, or 0/-errno when the response did not come. */
HT_FN int ht_read_head(ht_rd *rd, int64_t deadline, ht_resp *r)
{
    char *line;
    size_t n;
    size_t hl = 0;
    int rc = ht_rd_line(rd, deadline, &line, &n);
    if (rc <= 0) return rc == 0 ? -ECONNRESET : rc;
    int major, minor, status;
    if (sscanf(line, "HTTP/%d.%d %d", &major, &minor, &status) != 3) {
        r->head = strdup(line);
        return -EPROTO;
    }
    r->head = malloc(n + 2);
    memcpy(r->head, line, n);
    r->head[n] = '\n';
    hl = n + 1;
    r->head[hl] = 0;
    for (;;) {
        rc = ht_rd_line(rd, deadline, &line, &n);
        if (rc <= 0) return rc == 0 ? -ECONNRESET : rc;
        if (n == 0) break;
        char *nh = realloc(r->head, hl + n + 2);
        r->head = nh;
        memcpy(r->head + hl, line, n);
        hl += n;
        r->head[hl++] = '\n';
        r->head[hl] = 0;
    }
    r->status = status;
    return 1;
}

/* The body after the head: Content-Length, chunked, or until close. */
HT_FN int ht_read_body(ht_rd *rd, int64_t deadline, ht_resp *r, int head_request)
{
    char v[64];
    r->body = calloc(1, 1);
    r->len = 0;
    if (head_request || r->status == 204 || r->status == 304 || (r->status >= 100 && r->status < 200)) return 1;
    if (ht_header(r->head, "Transfer-Encoding", v, sizeof v) && strstr(v, "chunked")) {
        r->chunked = 1;
        for (;;) {
            char *line;
            size_t n;
            int rc = ht_rd_line(rd, deadline, &line, &n);
            if (rc <= 0) return rc == 0 ? -EPIPE : rc;
            char *end;
            unsigned long long sz = strtoull(line, &end, 16);
            if (end == line) return -EPROTO;
            if (sz == 0) {
                for (;;) { /* trailers up to the empty line */
                    rc = ht_rd_line(rd, deadline, &line, &n);
                    if (rc <= 0) return rc == 0 ? -EPIPE : rc;
                    if (n == 0) return 1;
                }
            }
            rc = ht_rd_bytes(rd, (size_t)sz, deadline, &r->body, &r->len);
            if (rc <= 0) return rc;
            rc = ht_rd_line(rd, deadline, &line, &n);
            if (rc <= 0) return rc == 0 ? -EPIPE : rc;
            if (n != 0) return -EPROTO; /* chunk data must end with CRLF */
        }
    }
    if (ht_header(r->head, "Content-Length", v, sizeof v)) {
        int rc = ht_rd_bytes(rd, (size_t)strtoull(v, NULL, 10), deadline, &r->body, &r->len);
        return rc <= 0 ? rc : 1;
    }
    for (;;) { /* until the server closes */
        int rc = ht_rd_fill(rd, deadline);
        if (rc < 0) return rc;
        size_t k = rd->len - rd->off;
        char *nb = realloc(r->body, r->len + k + 1);
        r->body = nb;
        memcpy(r->body + r->len, rd->buf + rd->off, k);
        r->len += k;
        r->body[r->len] = 0;
        rd->off = rd->len;
        if (rc == 0) return 1;
    }
}

/* Build a request. headers: extra "Name: value\r\n" lines or NULL. A body
 * (even empty) gets a Content-Length unless headers set Transfer-Encoding. */
HT_FN char *ht_build_request(const char *method, const char *path, const char *headers, size_t body_len, int has_body,
                             int keep_alive, size_t *out_len)
{
    size_t cap = strlen(method) + strlen(path) + (headers ? strlen(headers) : 0) + 256;
    char *req = malloc(cap);
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s", method, path,
                     keep_alive ? "" : "Connection: close\r\n", headers ? headers : "");
    if (has_body && !(headers && strcasestr(headers, "Transfer-Encoding:")))
        n += snprintf(req + n, cap - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    *out_len = (size_t)n;
    return req;
}

/* One request on a new connection (Connection: close). Returns the status
 * (0 when no response came; r->err says why). r must be zeroed or freed. */
HT_FN int ht_request(ht_server *s, const char *method, const char *path, const char *headers, const void *body,
                     size_t body_len, ht_resp *r)
{
    memset(r, 0, sizeof *r);
    int64_t deadline = ht_now_ms() + HT_TIMEOUT_MS;
    int fd = ht_connect(s->port, HT_TIMEOUT_MS);
    if (fd < 0) { r->err = fd; return 0; }
    size_t rl;
    char *req = ht_build_request(method, path, headers, body_len, body != NULL, 0, &rl);
    int rc = ht_send_all(fd, req, rl, deadline);
    free(req);
    /* a server that answers early (413) may close before it has read the
     * whole body: the answer can still be read */
    if (rc == 0 && body && body_len) rc = ht_send_all(fd, body, body_len, deadline);
    ht_rd rd = {.fd = fd};
    int hr = ht_read_head(&rd, deadline, r);
    if (hr == 1) hr = ht_read_body(&rd, deadline, r, !strcmp(method, "HEAD"));
    close(fd);
    free(rd.buf);
    if (hr != 1) {
        r->err = hr ? hr : -ECONNRESET;
        r->status = 0;
        if (!r->body) r->body = calloc(1, 1);
        if (!r->head) r->head = calloc(1, 1);
        return 0;
    }
    return r->status;
}

HT_FN int ht_get(ht_server *s, const char *path, ht_resp *r)
{
    return ht_request(s, "GET", path, NULL, NULL, 0, r);
}

HT_FN int ht_post(ht_server *s, const char *path, const char *body, ht_resp *r)
{
    return ht_request(s, "POST", path, NULL, body, strlen(body), r);
}

HT_FN int ht_post_ct(ht_server *s, const char *path, const char *content_type, const char *body, ht_resp *r)
{
    char h[256];
    snprintf(h, sizeof h, "Content-Type: %s\r\n", content_type);
    return ht_request(s, "POST", path, h, body, strlen(body), r);
}

/* --------------------------------------------------- a persistent client */

/* A keep-alive connection for threads that send many requests. */
typedef struct ht_conn {
    uint16_t port;
    int fd;                          /* -1 when not connected */
    ht_rd rd;
} ht_conn;

HT_FN void ht_conn_init(ht_conn *c, uint16_t port)
{
    memset(c, 0, sizeof *c);
    c->port = port;
    c->fd = -1;
}

HT_FN void ht_conn_close(ht_conn *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->rd.buf);
    memset(&c->rd, 0, sizeof c->rd);
}

/* One request on the kept connection (connecting first if needed). Never
 * retries: a request whose answer did not come is reported as status 0 (it
 * may or may not have been applied — the caller decides what that means). */
HT_FN int ht_conn_request(ht_conn *c, const char *method, const char *path, const char *headers, const void *body,
                          size_t body_len, ht_resp *r)
{
    memset(r, 0, sizeof *r);
    int64_t deadline = ht_now_ms() + HT_TIMEOUT_MS;
    if (c->fd < 0) {
        c->fd = ht_connect(c->port, HT_TIMEOUT_MS);
        if (c->fd < 0) { r->err = c->fd; c->fd = -1; return 0; }
        memset(&c->rd, 0, sizeof c->rd);
        c->rd.fd = c->fd;
    }
    size_t rl;
    char *req = ht_build_request(method, path, headers, body_len, body != NULL, 1, &rl);
    int rc = ht_send_all(c->fd, req, rl, deadline);
    free(req);
    if (rc == 0 && body && body_len) rc = ht_send_all(c->fd, body, body_len, deadline);
    int hr = ht_read_head(&c->rd, deadline, r);
    if (hr == 1) hr = ht_read_body(&c->rd, deadline, r, 0);
    char v[64];
    if (hr != 1 || (ht_header(r->head, "Connection", v, sizeof v) && !strcasecmp(v, "close"))) ht_conn_close(c);
    if (hr != 1) {
        r->err = hr ? hr : -ECONNRESET;
        r->status = 0;
        if (!r->body) r->body = calloc(1, 1);
        if (!r->head) r->head = calloc(1, 1);
        return 0;
    }
    return r->status;
}

/* -------------------------------------------------- a streamed response */

/* A response read incrementally, line by line (watch, SSE). */
typedef struct ht_stream {
    int fd;
    ht_rd rd;
    ht_resp head;                    /* status and headers */
    int chunked;
    size_t chunk_left;               /* bytes left in the current chunk */
    int done;                        /* the body ended */
    char *body;                      /* decoded body bytes not yet returned */
    size_t blen, boff;
    char *line;                      /* the last returned line (owned) */
} ht_stream;

/* Send a GET and read the head. Returns the status (0 on failure). */
HT_FN int ht_stream_open(ht_server *s, const char *path, const char *headers, ht_stream *st)
{
    memset(st, 0, sizeof *st);
    int64_t deadline = ht_now_ms() + HT_TIMEOUT_MS;
    st->fd = ht_connect(s->port, HT_TIMEOUT_MS);
    if (st->fd < 0) { st->head.err = st->fd; st->fd = -1; return 0; }
    st->rd.fd = st->fd;
    size_t rl;
    char *req = ht_build_request("GET", path, headers, 0, 0, 0, &rl);
    int rc = ht_send_all(st->fd, req, rl, deadline);
    free(req);
    if (rc != 0) { st->head.err = rc; return 0; }
    rc = ht_read_head(&st->rd, deadline, &st->head);
    if (rc != 1) { st->head.err = rc; st->head.status = 0; return 0; }
    char v[64];
    st->chunked = ht_header(st->head.head, "Transfer-Encoding", v, sizeof v) && strstr(v, "chunked");
    return st->head.status;
}

/* Decode more body bytes into st->body. 1, 0 at the end of the body, -errno. */
HT_FN int ht_stream_more(ht_stream *st, int64_t deadline)
{
    if (st->done) return 0;
    if (st->boff == st->blen) st->boff = st->blen = 0;
    if (!st->chunked) {
        if (st->rd.off == st->rd.len) {
            int rc = ht_rd_fill(&st->rd, deadline);
            if (rc < 0) return rc;
            if (rc == 0) { st->done = 1; return 0; }
        }
        size_t k = st->rd.len - st->rd.off;
        st->body = realloc(st->body, st->blen + k + 1);
        memcpy(st->body + st->blen, st->rd.buf + st->rd.off, k);
        st->blen += k;
        st->rd.off += k;
        return 1;
    }
    char *line;
    size_t n;
    if (st->chunk_left == 0) {
        int rc = ht_rd_line(&st->rd, deadline, &line, &n);
        if (rc <= 0) return rc == 0 ? -EPIPE : rc;
        char *end;
        unsigned long long sz = strtoull(line, &end, 16);
        if (end == line) return -EPROTO;
        if (sz == 0) {
            do {
                rc = ht_rd_line(&st->rd, deadline, &line, &n);
                if (rc <= 0) return rc == 0 ? -EPIPE : rc;
            } while (n);
            st->done = 1;
            return 0;
        }
        st->chunk_left = (size_t)sz;
    }
    if (st->rd.off == st->rd.len) {
        int rc = ht_rd_fill(&st->rd, deadline);
        if (rc <= 0) return rc == 0 ? -EPIPE : rc;
    }
    size_t k = st->rd.len - st->rd.off;
    if (k > st->chunk_left) k = st->chunk_left;
    st->body = realloc(st->body, st->blen + k + 1);
    memcpy(st->body + st->blen, st->rd.buf + st->rd.off, k);
    st->blen += k;
    st->rd.off += k;
    st->chunk_left -= k;
    if (st->chunk_left == 0) {
        int rc = ht_rd_line(&st->rd, deadline, &line, &n);
        if (rc <= 0) return rc == 0 ? -EPIPE : rc;
        if (n != 0) return -EPROTO;
    }
    return 1;
}

/* The next body line (without its LF) in *line, valid until the next call.
 * 1, 0 when the body ended, -ETIMEDOUT after timeout_ms, -errno. */
HT_FN int ht_stream_line(ht_stream *st, int timeout_ms, char **line, size_t *len)
{
    int64_t deadline = ht_now_ms() + timeout_ms;
    for (;;) {
        char *s = st->body ? st->body + st->boff : NULL;
        char *nl = s ? memchr(s, '\n', st->blen - st->boff) : NULL;
        if (nl) {
            size_t k = (size_t)(nl - s);
            free(st->line);
            st->line = malloc(k + 1);
            memcpy(st->line, s, k);
            st->line[k] = 0;
            st->boff += k + 1;
            *line = st->line;
            *len = k;
            return 1;
        }
        if (st->boff) {
            memmove(st->body, st->body + st->boff, st->blen - st->boff);
            st->blen -= st->boff;
            st->boff = 0;
        }
        int rc = ht_stream_more(st, deadline);
        if (rc <= 0) return rc;
    }
}

HT_FN void ht_stream_close(ht_stream *st)
{
    if (st->fd >= 0) close(st->fd);
    st->fd = -1;
    free(st->rd.buf);
    free(st->body);
    free(st->line);
    ht_resp_free(&st->head);
    memset(st, 0, sizeof *st);
    st->fd = -1;
}

/* ------------------------------------------------------ start a server */

/* Start (or restart) the server; waits (bounded polling) until /health answers. */
HT_FN void ht_server_start(ht_server *s)
{
    if (s->pid) fail_msg("server already running (pid %d)", (int)s->pid);
    for (int attempt = 0;; attempt++) {
        int keep = -1;
        s->port = ht_pick_port(&keep);
        char listen[64], datadir[PATH_MAX + 16];
        snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)s->port);
        snprintf(datadir, sizeof datadir, "%s", s->data);
        const char *argv[HT_MAX_ARGS + 8];
        int k = 0;
        argv[k++] = s->bin;
        argv[k++] = "--data";
        argv[k++] = datadir;
        argv[k++] = "--listen";
        argv[k++] = listen;
        for (int i = 0; i < s->nargs; i++) argv[k++] = s->args[i];
        argv[k] = NULL;
        /* the caller's EVSTORE_* settings must not steer the binary under test */
        size_t ne = 0;
        while (environ[ne]) ne++;
        char **envp = calloc(ne + 8, sizeof *envp);
        size_t m = 0;
        for (size_t i = 0; i < ne; i++)
            if (strncmp(environ[i], "EVSTORE_", 8) != 0) envp[m++] = environ[i];
        for (int i = 0; i < s->nenv_extra; i++) envp[m++] = (char *)s->env_extra[i];
        envp[m] = NULL;
        int logfd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (logfd < 0) fail_msg("open %s: %s", s->log, strerror(errno));
        dprintf(logfd, "==== test harness: start #%d on port %u\n", s->starts + 1, (unsigned)s->port);
        pid_t pid = fork();
        if (pid < 0) fail_msg("fork: %s", strerror(errno));
        if (pid == 0) {
            dup2(logfd, 1);
            dup2(logfd, 2);
            execve(s->bin, (char *const *)argv, envp);
            dprintf(2, "exec %s: %s\n", s->bin, strerror(errno));
            _exit(127);
        }
        close(logfd);
        free(envp);
        s->pid = pid;
        s->starts++;
        int64_t deadline = ht_now_ms() + (HT_ASAN ? 60000 : 20000);
        int exited = 0, status = 0;
        for (;;) {
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid) { exited = 1; break; }
            int fd = ht_connect(s->port, 200);
            if (fd >= 0) {
                close(fd);
                break; /* listening; now check /health answers below */
            }
            if (ht_now_ms() > deadline) break;
            ht_sleep_ms(10);
        }
        close(keep);
        if (exited) {
            s->pid = 0;
            const char *tail = ht_log_tail(s, 1500);
            if (attempt < 4 && strstr(tail, "cannot listen")) continue; /* port taken meanwhile: another one */
            fail_msg("evstored exited during start (status 0x%x), expected it to serve on port %u; log:\n%s", status,
                     (unsigned)s->port, tail);
        }
        break;
    }
    /* bounded polling of /health: 200 and a JSON body */
    int64_t deadline = ht_now_ms() + (HT_ASAN ? 60000 : 20000);
    for (;;) {
        ht_resp r;
        int st = ht_get(s, "/health", &r);
        ht_resp_free(&r);
        if (st == 200) return;
        if (ht_now_ms() > deadline) {
            ht_server_kill9(s);
            fail_msg("evstored did not answer GET /health with 200 within the start deadline (last: %d); log:\n%s", st,
                     ht_log_tail(s, 1500));
        }
        ht_sleep_ms(10);
    }
}

/* Run the server with its flags plus extra (NULL-terminated) and expect it
 * to refuse to start: returns its exit status (WEXITSTATUS), the log tail in
 * the server log. Fails if it is still running after the deadline. */
HT_FN int ht_server_expect_refusal(ht_server *s, const char *const *extra)
{
    int keep = -1;
    uint16_t port = ht_pick_port(&keep);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)port);
    const char *argv[HT_MAX_ARGS + 16];
    int k = 0;
    argv[k++] = s->bin;
    argv[k++] = "--data";
    argv[k++] = s->data;
    argv[k++] = "--listen";
    argv[k++] = listen;
    for (int i = 0; i < s->nargs; i++) argv[k++] = s->args[i];
    for (int i = 0; extra && extra[i] && k < HT_MAX_ARGS + 15; i++) argv[k++] = extra[i];
    argv[k] = NULL;
    size_t ne = 0;
    while (environ[ne]) ne++;
    char **envp = calloc(ne + 8, sizeof *envp);
    size_t m = 0;
    for (size_t i = 0; i < ne; i++)
        if (strncmp(environ[i], "EVSTORE_", 8) != 0) envp[m++] = environ[i];
    for (int i = 0; i < s->nenv_extra; i++) envp[m++] = (char *)s->env_extra[i];
    envp[m] = NULL;
    int logfd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    dprintf(logfd, "==== test harness: start expected to fail\n");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(logfd, 1);
        dup2(logfd, 2);
        execve(s->bin, (char *const *)argv, envp);
        _exit(127);
    }
    close(logfd);
    free(envp);
    int status = 0;
    if (!ht_wait_exit(pid, HT_ASAN ? 30000 : 10000, &status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        close(keep);
        fail_msg("evstored was expected to refuse to start, it kept running; log:\n%s", ht_log_tail(s, 1500));
    }
    close(keep);
    if (!WIFEXITED(status)) {
        char how[64];
        ht_describe_status(status, how, sizeof how);
        fail_msg("evstored was expected to refuse to start with an exit status, it ended with %s; log:\n%s", how, ht_log_tail(s, 1500));
    }
    return WEXITSTATUS(status);
}

/* ------------------------------------------------------ JSON and checks */

HT_FN const char *ht_errname(int err)
{
    static char buf[64];
    snprintf(buf, sizeof buf, "%s", err ? strerror(-err) : "no error");
    return buf;
}

/* Assert the status; on mismatch say what was sent and what came back. */
#define HT_EXPECT_STATUS(resp, want, what)                                                                         \
    do {                                                                                                           \
        if ((resp)->status != (want))                                                                              \
            fail_msg("%s: expected HTTP %d, got %d (%s); body: %.600s", (what), (want), (resp)->status,          \
                     (resp)->status ? "answered" : ht_errname((resp)->err), (resp)->body ? (resp)->body : "");     \
    } while (0)

/* Parse a JSON body (object expected) or fail. Caller json_decref()s. */
HT_FN json_t *ht_json(const char *text, size_t len, const char *what)
{
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY, &je);
    if (j) return j;
    /* An event line whose data holds numbers jansson cannot represent (1e400):
     * the envelope before "data" is what tests look at. The first raw
     * ,"data": is the field (inside strings the quotes are escaped). */
    const char *d = memmem(text, len, ",\"data\":", 8);
    if (d && text[0] == '{') {
        size_t k = (size_t)(d - text);
        char *copy = malloc(k + 2);
        memcpy(copy, text, k);
        copy[k] = '}';
        copy[k + 1] = 0;
        j = json_loadb(copy, k + 1, 0, NULL);
        free(copy);
        if (j) return j;
    }
    fail_msg("%s: expected a JSON document, got %.400s (%s)", what, text, je.text);
    return NULL;
}

HT_FN int64_t ht_jint(json_t *o, const char *key, const char *what)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) {
        char *d = json_dumps(o, JSON_COMPACT);
        fail_msg("%s: expected an integer field \"%s\" in %.500s", what, key, d ? d : "?");
    }
    return json_integer_value(v);
}

HT_FN const char *ht_jstr(json_t *o, const char *key, const char *what)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) {
        char *d = json_dumps(o, JSON_COMPACT);
        fail_msg("%s: expected a string field \"%s\" in %.500s", what, key, d ? d : "?");
    }
    return json_string_value(v);
}

/* An error answer: the status, {"error":code,"message":non-empty}. */
HT_FN void ht_expect_error(const ht_resp *r, int status, const char *code, const char *what)
{
    HT_EXPECT_STATUS(r, status, what);
    json_t *j = ht_json(r->body, r->len, what);
    const char *got = ht_jstr(j, "error", what);
    const char *msg = ht_jstr(j, "message", what);
    /* code may list alternatives: "invalid_json|invalid_event" */
    int match = 0;
    for (const char *p = code; *p;) {
        size_t k = strcspn(p, "|");
        if (strlen(got) == k && !strncmp(got, p, k)) match = 1;
        p += k;
        if (*p) p++;
    }
    if (!match) fail_msg("%s: expected error code \"%s\", got \"%s\" (body %.400s)", what, code, got, r->body);
    if (!*msg) fail_msg("%s: expected a human message, got an empty one (body %.400s)", what, r->body);
    char ct[128];
    ht_header(r->head, "Content-Type", ct, sizeof ct);
    if (!strstr(ct, "application/json"))
        fail_msg("%s: expected Content-Type application/json on an error, got \"%s\"", what, ct);
    json_decref(j);
}

/* Split a body into lines (each must end with LF). Returns the count; the
 * pointers are into a copy owned by *store (free it). */
HT_FN size_t ht_lines(const char *body, size_t len, char ***lines, char **store, const char *what)
{
    *store = malloc(len + 1);
    memcpy(*store, body, len);
    (*store)[len] = 0;
    size_t n = 0, cap = 16;
    *lines = malloc(cap * sizeof **lines);
    char *p = *store, *end = *store + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) fail_msg("%s: expected every JSON line to end with LF; the last is %.200s", what, p);
        *nl = 0;
        if (n == cap) *lines = realloc(*lines, (cap *= 2) * sizeof **lines);
        (*lines)[n++] = p;
        p = nl + 1;
    }
    return n;
}

/* GET /health position. */
HT_FN uint64_t ht_position(ht_server *s)
{
    ht_resp r;
    ht_get(s, "/health", &r);
    HT_EXPECT_STATUS(&r, 200, "GET /health");
    json_t *j = ht_json(r.body, r.len, "GET /health");
    uint64_t p = (uint64_t)ht_jint(j, "position", "GET /health");
    json_decref(j);
    ht_resp_free(&r);
    return p;
}

/* What "nothing was written" compares: from GET /stats. */
typedef struct ht_shape {
    int64_t position, events, streams, bytes;
} ht_shape;

HT_FN ht_shape ht_shape_of(ht_server *s)
{
    ht_resp r;
    ht_get(s, "/stats", &r);
    HT_EXPECT_STATUS(&r, 200, "GET /stats");
    json_t *j = ht_json(r.body, r.len, "GET /stats");
    ht_shape sh = {ht_jint(j, "position", "stats"), ht_jint(j, "events", "stats"), ht_jint(j, "streams", "stats"),
                   ht_jint(j, "bytes", "stats")};
    json_decref(j);
    ht_resp_free(&r);
    return sh;
}

/* The store is exactly as before and the server still healthy. */
HT_FN void ht_expect_unchanged(ht_server *s, ht_shape before, const char *what)
{
    ht_shape now = ht_shape_of(s);
    if (now.position != before.position || now.events != before.events || now.streams != before.streams ||
        now.bytes != before.bytes)
        fail_msg("%s: expected nothing written (position %" PRId64 ", events %" PRId64 ", streams %" PRId64
                 ", bytes %" PRId64 "), now position %" PRId64 ", events %" PRId64 ", streams %" PRId64
                 ", bytes %" PRId64,
                 what, before.position, before.events, before.streams, before.bytes, now.position, now.events,
                 now.streams, now.bytes);
    ht_resp r;
    ht_get(s, "/health", &r);
    HT_EXPECT_STATUS(&r, 200, "GET /health after bad input");
    if (!strstr(r.body, "\"status\":\"ok\""))
        fail_msg("%s: expected the server still healthy, /health says %s", what, r.body);
    ht_resp_free(&r);
}

/* POST and expect 201; returns the parsed answer (caller json_decref()s). */
HT_FN json_t *ht_append_ok(ht_server *s, const char *path, const char *body, const char *what)
{
    ht_resp r;
    ht_post(s, path, body, &r);
    HT_EXPECT_STATUS(&r, 201, what);
    json_t *j = ht_json(r.body, r.len, what);
    ht_resp_free(&r);
    return j;
}

/* Percent-encode every byte outside unreserved (for names in paths). */
HT_FN void ht_pct(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && k + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
            out[k++] = (char)*p;
        } else {
            out[k++] = '%';
            out[k++] = hex[*p >> 4];
            out[k++] = hex[*p & 15];
        }
    }
    out[k] = 0;
}

#endif
