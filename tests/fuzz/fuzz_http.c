/*
 * fuzz_http.c — libFuzzer target for evstored's request handling: the real
 * server code (server/ but main.c, linked in), in-process, behind the real
 * libmicrohttpd, on a real store in a temporary directory.
 *
 * Once per process: a store is opened in a fresh temporary directory
 * (fsync=never, 64 KiB segments, an index checkpoint every 500 events, so
 * segment rolls and checkpoints happen while fuzzing), with --auth-tokens on
 * (three tokens: "fuzz-write" writes everything, "fuzz-read" only reads,
 * "fuzz-t" writes streams starting with "t/"), and the daemon is started as
 * main.c starts it (watch hub, then libmicrohttpd; its listening socket is on
 * an ephemeral loopback port nobody connects to).
 *
 * Per input: the bytes are one or more raw HTTP/1.x requests. They are handed
 * to libmicrohttpd through a socketpair (MHD_add_connection), the answer is
 * read until the server closes the connection (we shut down our side once it
 * has taken every byte and has nothing in flight), or until it has been quiet
 * for a while after that (an incomplete request, or a watch: the connection
 * then stays open and we hang up). Then
 * we wait until nothing is in flight and every connection but watchers (which
 * only read) is closed, so no request of one input runs into the next.
 *
 * Invariants checked (abort() = a finding):
 *  - whatever comes back starts with an HTTP/1.x status line; every status
 *    line has a status in 100..599;
 *  - if the exchange ended (the server closed) without a single 2xx answer
 *    but with an append answered, the store's position did not move: a
 *    refused write wrote nothing. (Without an append answered, a move can
 *    only come from a request libmicrohttpd dropped when it saw our FIN
 *    while the request was suspended — the append then happened and nobody
 *    was told; the FIN is held back until nothing is in flight to avoid it,
 *    but a request it reads late can still meet it.)
 *  - the server keeps serving: every 64 inputs (and when an input got no
 *    answer at all) GET /health must answer 200;
 *  - and, by the sanitizers, no memory error, leak or undefined behaviour in
 *    the server, libmicrohttpd's callbacks or the engine.
 * The store is reset (daemon stopped, store closed and deleted, all started
 * again) every 20,000 events, so responses that read everything stay small,
 * and when more than 256 abandoned watchers are parked.
 * Inputs depend on the state earlier inputs left, so a crash may need the
 * inputs before it to reproduce: replay the whole corpus (`make test` does).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int evsd_auth_load(evsd_server *srv);

#define RESET_EVENTS 20000u
#define MAX_PARKED 256     /* watchers whose client is gone, before a restart */
#define SHUT_MS 2          /* silence after the last request byte before we send our FIN */
#define QUIET_MS 10        /* silence after it, after which an unfinished exchange is given up */
#define HANG_MS 20000      /* a server that neither reads, answers nor closes for this long hangs */

static struct {
    int up;
    char root[512];        /* the temporary directory */
    char data[600];        /* root/data: the store */
    char tokens[600];      /* root/tokens: --auth-tokens */
    evsd_server srv;
    uint64_t inputs;
    int verbose;           /* EVS_FUZZ_VERBOSE=1: one line per input on stderr; 2: and the answer */
} G;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_http: %s\n", what);
    abort();
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void write_tokens(const char *path)
{
    static const char *const toks[][3] = {
        {"fuzz-write", "write", ""}, {"fuzz-read", "read", ""}, {"fuzz-t", "write", "t/"}};
    FILE *f = fopen(path, "w");
    if (!f) die("cannot write the token file");
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        unsigned char d[32];
        unsigned dl = 0;
        if (EVP_Digest(toks[i][0], strlen(toks[i][0]), d, &dl, EVP_sha256(), NULL) != 1 || dl != 32)
            die("sha256");
        for (int k = 0; k < 32; k++) fprintf(f, "%02x", d[k]);
        fprintf(f, " %s %s\n", toks[i][1], toks[i][2]);
    }
    fclose(f);
}

/* Start the server on a new, empty store in G.data. */
static void server_start(void)
{
    evsd_server *srv = &G.srv;
    char *argv[] = {"fuzz_http", NULL};
    memset(srv, 0, sizeof *srv);
    if (evsd_config_parse(&srv->cfg, 1, argv) != 0) die("config");
    srv->cfg.data = G.data;
    strcpy(srv->cfg.listen_host, "127.0.0.1");
    srv->cfg.listen_port = 0;              /* ephemeral: connections come through MHD_add_connection */
    srv->cfg.fsync = "never";
    srv->cfg.sync = EVS_SYNC_NEVER;
    srv->cfg.segment_size = 64u << 10;
    srv->cfg.max_event_size = 4u << 10;    /* small limits: the fuzzer reaches the 413 paths */
    srv->cfg.max_body_size = 32u << 10;
    srv->cfg.auth_tokens = G.tokens;
    srv->cfg.heartbeat_default = 1;
    srv->cfg.idle_timeout = 1;
    srv->cfg.threads = 2;
    srv->cfg.log_level = EVS_LOG_ERROR;
    evs_options opt;
    evs_options_init(&opt);
    opt.create = 1;
    opt.sync = srv->cfg.sync;
    opt.segment_size = srv->cfg.segment_size;
    opt.max_event_size = (uint32_t)srv->cfg.max_event_size;
    opt.checkpoint_interval = 500;
    opt.log = evsd_log_store;
    opt.log_level = EVS_LOG_ERROR;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    srv->started_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    if (evs_open(G.data, &opt, &srv->store) != 0) die("cannot open the store");
    if (evsd_auth_load(srv) != 0) die("cannot load the tokens");
    if (evsd_hub_start(srv) != 0 || evsd_http_start(srv) != 0) die("cannot start the daemon");
}

/* As main.c stops it. */
static void server_stop(void)
{
    evsd_server *srv = &G.srv;
    atomic_store(&srv->stopping, 1);
    evsd_http_quiesce(srv);
    evsd_hub_stop(srv);
    for (int i = 0; i < 2000 && atomic_load(&srv->inflight) > 0; i++) sleep_ms(5);
    evsd_http_stop(srv);
    evsd_hub_free(srv);
    evsd_auth_free(srv);
    if (evs_close(srv->store) != 0) die("evs_close failed");
    srv->store = NULL;
    nftw(G.data, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void teardown(void)
{
    if (!G.up) return;
    G.up = 0;
    server_stop();
    nftw(G.root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
    const char *t = getenv("EVS_TEST_TMP");
    if (!t || !*t) t = getenv("TMPDIR");
    if (!t || !*t) t = "/tmp";
    mkdir(t, 0755);
    snprintf(G.root, sizeof G.root, "%s/fuzz_http.XXXXXX", t);
    if (!mkdtemp(G.root)) die("mkdtemp");
    snprintf(G.data, sizeof G.data, "%s/data", G.root);
    snprintf(G.tokens, sizeof G.tokens, "%s/tokens", G.root);
    write_tokens(G.tokens);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max && rl.rlim_cur < 65536) {
        rl.rlim_cur = rl.rlim_max < 65536 ? rl.rlim_max : 65536;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    G.verbose = getenv("EVS_FUZZ_VERBOSE") ? atoi(getenv("EVS_FUZZ_VERBOSE")) : 0;
    evsd_log_init(0, EVS_LOG_ERROR);
    server_start();
    G.up = 1;
    atexit(teardown);
}

/* ---- one exchange over a socketpair ---- */

typedef struct answer {
    char *p;
    size_t len, cap;
    int closed;            /* the server closed the connection: the exchange is complete */
} answer;

static void answer_add(answer *a, const char *p, size_t n)
{
    if (a->len + n + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 4096;
        while (cap < a->len + n + 1) cap *= 2;
        char *q = realloc(a->p, cap);
        if (!q) die("out of memory");
        a->p = q;
        a->cap = cap;
    }
    memcpy(a->p + a->len, p, n);
    a->len += n;
    a->p[a->len] = 0;
}

/* Bytes we wrote that the server has not read yet. */
static int unread_by_server(int fd)
{
    int n = 0;
    if (ioctl(fd, TIOCOUTQ, &n) != 0) return 1;
    return n > 0;
}

/* until_close: the request asks for Connection: close, so wait for the
 * server to close (up to HANG_MS) instead of hanging up after QUIET_MS of
 * silence — a server thread descheduled for a few milliseconds on a busy
 * machine must not look like a server that stopped answering. */
static void exchange(const uint8_t *req, size_t n, answer *a, int until_close)
{
    evsd_server *srv = &G.srv;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair");
    struct sockaddr_in peer;
    memset(&peer, 0, sizeof peer);
    peer.sin_family = AF_INET;
    peer.sin_port = htons(40000);
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (evsd_http_add_connection(srv, sv[1], (const struct sockaddr *)&peer, sizeof peer) != 0)
        die("evsd_http_add_connection failed");
    int fd = sv[0];
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    size_t sent = 0;
    int shut = 0;
    uint64_t last = now_ms();
    char buf[65536];
    for (;;) {
        struct pollfd p = {fd, POLLIN | (sent < n ? POLLOUT : 0), 0};
        int pr = poll(&p, 1, 1);
        uint64_t t = now_ms();
        if (pr > 0 && (p.revents & POLLOUT) && sent < n) {
            ssize_t w = send(fd, req + sent, n - sent, MSG_NOSIGNAL);
            if (w > 0) {
                sent += (size_t)w;
                last = t;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                sent = n;  /* the server hung up before taking everything */
            }
        }
        if (pr > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r > 0) {
                answer_add(a, buf, (size_t)r);
                last = t;
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                a->closed = 1;
                break;
            }
        }
        int idle = sent == n && !unread_by_server(fd) && atomic_load(&srv->inflight) == 0;
        /* The end of the requests, once the server has taken every byte and
         * answered what it could: libmicrohttpd takes a FIN that arrives while
         * a request is suspended (an append in the writer) as the client
         * giving up, drops the answer and closes, so the FIN waits until
         * nothing is in flight. Then it closes an idle keep-alive connection. */
        if (idle && !shut && t - last >= SHUT_MS) {
            shutdown(fd, SHUT_WR);
            shut = 1;
            last = t;
        }
        /* still open, quiet: it waits for more of a request, or a watch
         * idles — hang up */
        if (idle && shut && !until_close && t - last >= QUIET_MS) break;
        if (t - last > HANG_MS) die("the server neither reads, answers nor closes the connection");
    }
    close(fd);
}

/* Nothing in flight and no connection left but watchers: no request of this
 * input can still write. A watcher whose client hung up stays parked until a
 * commit it wants or its heartbeat (up to an hour) makes it write and notice;
 * it only reads, so we do not wait for it (the daemon is restarted when too
 * many pile up). Also every other streamed answer released (a plain read's
 * state, a backup's helper thread joined and its buffers freed): libFuzzer
 * checks for leaks when an input returns, and a backup still running then
 * holds memory it has not freed yet (finding 8 of docs/RELIABILITY.md). */
static void quiesce(void)
{
    evsd_server *srv = &G.srv;
    uint64_t start = now_ms();
    while (atomic_load(&srv->metrics.connections) > atomic_load(&srv->metrics.watchers) ||
           atomic_load(&srv->inflight) > 0 || atomic_load(&srv->backups_open) > 0 ||
           (uint64_t)atomic_load(&srv->streams_open) > atomic_load(&srv->metrics.watchers)) {
        if (now_ms() - start > HANG_MS) {
            fprintf(stderr, "fuzz_http: %llu connections, %llu watchers, %d in flight, %d backups, %d streamed answers\n",
                    (unsigned long long)atomic_load(&srv->metrics.connections),
                    (unsigned long long)atomic_load(&srv->metrics.watchers), atomic_load(&srv->inflight),
                    atomic_load(&srv->backups_open), atomic_load(&srv->streams_open));
            die("a connection stayed open after its client hung up");
        }
        sleep_ms(1);
    }
}

/* Status codes of the status lines in the answer: the first must start it;
 * later ones (pipelined requests) are "HTTP/1.x NNN " at the start of a line:
 * after the previous answer's headers (HEAD), its last chunk, or its body,
 * which is JSON ending in a newline. A body never holds one at the start of a
 * line: event lines and error bodies are JSON objects. Returns -1 if the
 * answer does not start with a valid status line. */
static int status_at(const char *s, size_t left)
{
    if (left < 13 || strncmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ' ||
        s[9] < '1' || s[9] > '5' || s[10] < '0' || s[10] > '9' || s[11] < '0' || s[11] > '9' || s[12] != ' ')
        return -1;
    return (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
}

static int statuses(const answer *a, int *n2xx, int *nfinal)
{
    *n2xx = *nfinal = 0;
    if (a->len == 0) return 0;
    if (status_at(a->p, a->len) < 0) return -1;
    for (size_t i = 0; i < a->len; i++) {
        if (i > 0 && a->p[i - 1] != '\n') continue;
        int code = status_at(a->p + i, a->len - i);
        if (code >= 200) (*nfinal)++;
        if (code >= 200 && code < 300) (*n2xx)++;
    }
    return 0;
}

static void check_health(void)
{
    static const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    answer a = {0};
    exchange((const uint8_t *)req, sizeof req - 1, &a, 1);
    quiesce();
    if (a.len < 12 || strncmp(a.p, "HTTP/1.1 200", 12) != 0) {
        fprintf(stderr, "fuzz_http: GET /health answered: %.200s\n", a.p ? a.p : "(nothing)");
        die("the server stopped serving");
    }
    free(a.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!G.up) setup();
    evsd_server *srv = &G.srv;
    if (evs_position(srv->store) > RESET_EVENTS || atomic_load(&srv->metrics.watchers) > MAX_PARKED) {
        server_stop();
        server_start();
    }
    uint64_t before = evs_position(srv->store), t0 = now_ms();
    uint64_t appends0 = atomic_load(&srv->metrics.append_requests);
    answer a = {0};
    exchange(data, size, &a, 0);
    /* nothing else writes now: the position is this input's doing */
    uint64_t after = evs_position(srv->store), t1 = now_ms();
    if (G.verbose > 1) fprintf(stderr, "fuzz_http: answer (%s): %s\n", a.closed ? "closed" : "hung up", a.p ? a.p : "");
    quiesce();
    uint64_t t2 = now_ms();
    int n2xx, nfinal;
    if (statuses(&a, &n2xx, &nfinal) != 0) {
        fprintf(stderr, "fuzz_http: not an HTTP answer: %.200s\n", a.p);
        die("bad answer");
    }
    uint64_t answered_appends = atomic_load(&srv->metrics.append_requests) - appends0;
    if (a.closed && n2xx == 0 && answered_appends > 0 && after != before) {
        fprintf(stderr, "fuzz_http: position %llu -> %llu with no 2xx answer: %.300s\n",
                (unsigned long long)before, (unsigned long long)after, a.p ? a.p : "(nothing)");
        die("a refused request wrote");
    }
    if (G.verbose)
        fprintf(stderr, "fuzz_http: %zu bytes in, %zu out, %s, %d answers (%d 2xx), position %llu -> %llu, %u+%u ms: %.*s\n",
                size, a.len, a.closed ? "closed" : "hung up", nfinal, n2xx, (unsigned long long)before,
                (unsigned long long)after, (unsigned)(t1 - t0), (unsigned)(t2 - t1), (int)(a.p ? strcspn(a.p, "\r") : 0), a.p ? a.p : "");
    free(a.p);
    if (++G.inputs % 64 == 0 || (a.closed && nfinal == 0)) check_health();
    return 0;
}
