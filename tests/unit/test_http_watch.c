/*
 * test_http_watch.c — watch=true over HTTP (SPEC §4): live delivery after
 * the history, filters, heartbeats (empty lines), Server-Sent Events (id: is
 * the global position, also for a stream watch; Last-Event-ID resumes), a
 * watch on a stream that does not exist yet, SIGTERM with watchers open (their
 * answers end cleanly) and with a plain read under way (it runs to its end), and
 * a watcher that never reads: it must not slow the writer (measured against
 * the same appends without it) nor make the server buffer without bound, and
 * it catches up from the store when it starts reading.
 */
#include "../http/http_test.h"

/* Static, not allocated: a setup that fails (cmocka then skips the
 * teardown) must not leak under LeakSanitizer. */
static ht_server the_server;

static int setup(void **state)
{
    ht_server *s = &the_server;
    *state = s;
    ht_server_init(s, NULL);
    ht_server_start(s);
    return 0;
}

static int teardown(void **state)
{
    ht_server_free(*state);
    return 0;
}

#define WAIT_MS (HT_ASAN ? 15000 : 8000)

/* Sanitized servers (ASan, TSan) are slower and bigger: fewer connections. */
#if defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED HT_ASAN
#endif

/* The next non-empty line of a JSON Lines watch, parsed; counts heartbeats. */
static json_t *next_event(ht_stream *st, int *heartbeats, const char *what)
{
    for (;;) {
        char *line = NULL;
        size_t n;
        int rc = ht_stream_line(st, WAIT_MS, &line, &n);
        if (rc != 1)
            fail_msg("%s: expected an event within %d ms, got %s", what, WAIT_MS, rc == 0 ? "the end of the answer" : ht_errname(rc));
        if (n == 0) {
            if (heartbeats) (*heartbeats)++;
            continue;
        }
        return ht_json(line, n, what);
    }
}

static void expect_event(ht_stream *st, int64_t position, const char *stream, int64_t version, const char *what)
{
    json_t *j = next_event(st, NULL, what);
    if (ht_jint(j, "position", what) != position || strcmp(ht_jstr(j, "stream", what), stream) ||
        ht_jint(j, "version", what) != version)
        fail_msg("%s: expected position %" PRId64 " (%s v%" PRId64 "), got position %" PRId64 " (%s v%" PRId64 ")", what, position,
                 stream, version, ht_jint(j, "position", what), ht_jstr(j, "stream", what), ht_jint(j, "version", what));
    json_decref(j);
}

static void open_watch(ht_server *s, const char *path, const char *headers, ht_stream *st)
{
    int status = ht_stream_open(s, path, headers, st);
    if (status != 200) fail_msg("GET %s: expected 200 and an open answer, got %d (%s)", path, status, ht_errname(st->head.err));
}

static void append(ht_server *s, const char *path, const char *body)
{
    json_decref(ht_append_ok(s, path, body, path));
}

static void t_watch_live(void **state)
{
    ht_server *s = *state;
    append(s, "/streams/w%2F1", "[{\"type\":\"Keep\"},{\"type\":\"Skip\"}]"); /* 1, 2 */
    ht_stream all, one, typed, fromnow;
    open_watch(s, "/events?watch=true", NULL, &all);
    char ct[128];
    ht_header(all.head.head, "Content-Type", ct, sizeof ct);
    if (strcmp(ct, "application/x-ndjson") != 0) fail_msg("watch: expected Content-Type application/x-ndjson, got %s", ct);
    open_watch(s, "/streams/w/1?watch=true&from=2", NULL, &one);
    open_watch(s, "/events?watch=true&type=Keep&stream_prefix=w/", NULL, &typed);
    open_watch(s, "/events?watch=true&from=3", NULL, &fromnow);
    /* the history first */
    expect_event(&all, 1, "w/1", 1, "global watch, history");
    expect_event(&all, 2, "w/1", 2, "global watch, history");
    expect_event(&one, 2, "w/1", 2, "stream watch from=2, history");
    expect_event(&typed, 1, "w/1", 1, "filtered watch, history");
    /* then what commits */
    append(s, "/streams/w%2F1", "{\"type\":\"Keep\",\"data\":\"live\"}");            /* 3 */
    append(s, "/streams/other", "{\"type\":\"Keep\"}");                              /* 4 */
    append(s, "/events", "[{\"stream\":\"w/2\",\"type\":\"Skip\"},{\"stream\":\"w/1\",\"type\":\"Keep\"}]"); /* 5, 6 */
    expect_event(&all, 3, "w/1", 3, "global watch, live");
    expect_event(&all, 4, "other", 1, "global watch, live");
    expect_event(&all, 5, "w/2", 1, "global watch, live batch");
    expect_event(&all, 6, "w/1", 4, "global watch, live batch");
    expect_event(&one, 3, "w/1", 3, "stream watch, live");
    expect_event(&one, 6, "w/1", 4, "stream watch, live (skips other streams)");
    expect_event(&typed, 3, "w/1", 3, "filtered watch, live");
    expect_event(&typed, 6, "w/1", 4, "filtered watch, live (skips Skip and other prefixes)");
    expect_event(&fromnow, 3, "w/1", 3, "watch from=3");
    /* the data bytes are the same as a plain read */
    append(s, "/streams/w%2F1", "{\"type\":\"Keep\",\"data\":{\"p\":129.95,\"e\":\"\xf0\x9f\x98\x80\\u00e9\"}}"); /* 7 */
    char *line = NULL;
    size_t n;
    int rc;
    do rc = ht_stream_line(&one, WAIT_MS, &line, &n); while (rc == 1 && n == 0);
    if (rc != 1 || !strstr(line, ",\"data\":{\"p\":129.95,\"e\":\"\xf0\x9f\x98\x80\\u00e9\"}}"))
        fail_msg("stream watch: expected the event's data byte-exact, got %s", rc == 1 ? line : ht_errname(rc));
    /* a watch with a limit ends after that many events */
    ht_stream lim;
    open_watch(s, "/events?watch=true&from=6&limit=2", NULL, &lim);
    expect_event(&lim, 6, "w/1", 4, "watch with limit");
    expect_event(&lim, 7, "w/1", 5, "watch with limit");
    do rc = ht_stream_line(&lim, WAIT_MS, &line, &n); while (rc == 1 && n == 0);
    if (rc != 0) fail_msg("watch with limit=2: expected the answer to end after 2 events, got %s", rc == 1 ? line : ht_errname(rc));
    ht_stream_close(&lim);
    ht_stream_close(&all);
    ht_stream_close(&one);
    ht_stream_close(&typed);
    ht_stream_close(&fromnow);
    ht_server_stop(s);
}

static void t_watch_stream_not_yet(void **state)
{
    ht_server *s = *state;
    ht_resp r;
    ht_get(s, "/streams/later%2Fone", &r);
    ht_expect_error(&r, 404, "stream_not_found", "plain read of a stream that does not exist");
    ht_resp_free(&r);
    ht_stream w;
    open_watch(s, "/streams/later%2Fone?watch=true", NULL, &w);
    append(s, "/streams/unrelated", "{\"type\":\"X\"}");
    append(s, "/streams/later/one", "{\"type\":\"First\"}");
    expect_event(&w, 2, "later/one", 1, "watch on a stream that did not exist yet");
    ht_stream_close(&w);
    ht_server_stop(s);
}

static void t_watch_heartbeats(void **state)
{
    ht_server *s = *state;
    ht_stream w;
    open_watch(s, "/events?watch=true&heartbeat=1", NULL, &w);
    int64_t t0 = ht_now_ms();
    for (int k = 0; k < 2; k++) {
        char *line = NULL;
        size_t n;
        int rc = ht_stream_line(&w, 5000, &line, &n);
        if (rc != 1 || n != 0)
            fail_msg("watch with heartbeat=1 on a quiet store: expected an empty line (heartbeat #%d) within 5 s, got %s", k + 1,
                     rc == 1 ? line : ht_errname(rc));
    }
    int64_t took = ht_now_ms() - t0;
    if (took < 1000) fail_msg("two heartbeats with heartbeat=1 should take at least ~1 s, took %" PRId64 " ms", took);
    /* an event still arrives between heartbeats */
    append(s, "/streams/hb", "{\"type\":\"T\"}");
    int hb = 0;
    json_t *j = next_event(&w, &hb, "event after heartbeats");
    if (ht_jint(j, "position", "") != 1) fail_msg("expected position 1 after the heartbeats");
    json_decref(j);
    ht_stream_close(&w);
    /* --heartbeat sets the default */
    ht_server_stop(s);
    s->args[s->nargs++] = "--heartbeat";
    s->args[s->nargs++] = "1";
    ht_server_start(s);
    open_watch(s, "/events?watch=true&from=2", NULL, &w);
    char *line = NULL;
    size_t n;
    int rc = ht_stream_line(&w, 5000, &line, &n);
    if (rc != 1 || n != 0) fail_msg("with --heartbeat 1: expected an empty line within 5 s, got %s", rc == 1 ? line : ht_errname(rc));
    ht_stream_close(&w);
    ht_server_stop(s);
}

/* One Server-Sent Event: its fields; heartbeats (comments) are counted. */
typedef struct sse_event {
    char id[32];
    char event[300];
    char *data;                      /* owned */
} sse_event;

static void next_sse(ht_stream *st, sse_event *e, int *comments, const char *what)
{
    memset(e, 0, sizeof *e);
    int fields = 0;
    for (;;) {
        char *line = NULL;
        size_t n;
        int rc = ht_stream_line(st, WAIT_MS, &line, &n);
        if (rc != 1) fail_msg("%s: expected a server-sent event within %d ms, got %s", what, WAIT_MS, rc == 0 ? "the end" : ht_errname(rc));
        if (n == 0) {
            if (fields) return;
            continue;
        }
        if (line[0] == ':') {
            if (comments) (*comments)++;
            continue;
        }
        fields++;
        if (!strncmp(line, "id: ", 4)) snprintf(e->id, sizeof e->id, "%s", line + 4);
        else if (!strncmp(line, "event: ", 7)) snprintf(e->event, sizeof e->event, "%s", line + 7);
        else if (!strncmp(line, "data: ", 6)) e->data = strdup(line + 6);
        else fail_msg("%s: unexpected SSE line \"%s\"", what, line);
    }
}

static void expect_sse(ht_stream *st, const char *id, const char *type, const char *stream, int64_t version, const char *what)
{
    sse_event e;
    next_sse(st, &e, NULL, what);
    if (strcmp(e.id, id) || strcmp(e.event, type) || !e.data)
        fail_msg("%s: expected id: %s, event: %s and data, got id: %s, event: %s, data: %s", what, id, type, e.id, e.event,
                 e.data ? e.data : "(none)");
    json_t *j = ht_json(e.data, strlen(e.data), what);
    char pos[32];
    snprintf(pos, sizeof pos, "%" PRId64, ht_jint(j, "position", what));
    if (strcmp(pos, id) || strcmp(ht_jstr(j, "stream", what), stream) || ht_jint(j, "version", what) != version)
        fail_msg("%s: expected the data to be %s v%" PRId64 " at position %s, got %s", what, stream, version, id, e.data);
    json_decref(j);
    free(e.data);
}

static void t_watch_sse(void **state)
{
    ht_server *s = *state;
    /* positions: a 1, s/x 2 (v1), a 3, s/x 4 (v2), s/x 5 (v3) */
    append(s, "/streams/a", "{\"type\":\"A\"}");
    append(s, "/streams/s%2Fx", "{\"type\":\"X1\"}");
    append(s, "/streams/a", "{\"type\":\"A\"}");
    append(s, "/streams/s%2Fx", "[{\"type\":\"X2\"},{\"type\":\"X3\"}]");
    const char *sse = "Accept: text/event-stream\r\n";
    ht_stream g, st;
    open_watch(s, "/events?watch=true&heartbeat=1", sse, &g);
    char ct[128];
    ht_header(g.head.head, "Content-Type", ct, sizeof ct);
    if (strncmp(ct, "text/event-stream", 17) != 0) fail_msg("SSE: expected Content-Type text/event-stream, got %s", ct);
    open_watch(s, "/streams/s/x?watch=true&from=2", sse, &st);
    expect_sse(&g, "1", "A", "a", 1, "SSE global");
    expect_sse(&g, "2", "X1", "s/x", 1, "SSE global");
    expect_sse(&st, "4", "X2", "s/x", 2, "SSE stream watch: id is the global position, not the version");
    expect_sse(&st, "5", "X3", "s/x", 3, "SSE stream watch");
    for (int i = 3; i <= 5; i++) {
        sse_event e;
        next_sse(&g, &e, NULL, "SSE global history");
        free(e.data);
    }
    append(s, "/streams/s%2Fx", "{\"type\":\"X4\"}"); /* 6 */
    expect_sse(&g, "6", "X4", "s/x", 4, "SSE global live");
    expect_sse(&st, "6", "X4", "s/x", 4, "SSE stream live");
    /* heartbeats are SSE comments */
    int comments = 0;
    int64_t t0 = ht_now_ms();
    while (comments == 0 && ht_now_ms() - t0 < 5000) {
        char *line = NULL;
        size_t n;
        int rc = ht_stream_line(&g, 5000, &line, &n);
        if (rc != 1) fail_msg("SSE heartbeat: expected a comment line within 5 s, got %s", ht_errname(rc));
        if (n && line[0] == ':') comments++;
        else if (n) fail_msg("SSE heartbeat: expected only a comment on a quiet store, got \"%s\"", line);
    }
    if (!comments) fail_msg("SSE with heartbeat=1: expected a \":\" comment within 5 s");
    ht_stream_close(&g);
    ht_stream_close(&st);
    /* Last-Event-ID resumes after that position */
    open_watch(s, "/events?watch=true", "Accept: text/event-stream\r\nLast-Event-ID: 4\r\n", &g);
    expect_sse(&g, "5", "X3", "s/x", 3, "SSE resume with Last-Event-ID: 4");
    expect_sse(&g, "6", "X4", "s/x", 4, "SSE resume");
    ht_stream_close(&g);
    open_watch(s, "/streams/s%2Fx?watch=true", "Accept: text/event-stream\r\nLast-Event-ID: 4\r\n", &st);
    expect_sse(&st, "5", "X3", "s/x", 3, "SSE stream resume with Last-Event-ID: 4 (version 2 of s/x)");
    append(s, "/streams/s%2Fx", "{\"type\":\"X5\"}"); /* 7 */
    expect_sse(&st, "6", "X4", "s/x", 4, "SSE stream resume");
    expect_sse(&st, "7", "X5", "s/x", 5, "SSE stream resume, live");
    ht_stream_close(&st);
    /* a plain read can be SSE too */
    ht_resp r;
    ht_request(s, "GET", "/streams/a", sse, NULL, 0, &r);
    HT_EXPECT_STATUS(&r, 200, "SSE plain read");
    if (strncmp(r.body, "id: 1\nevent: A\ndata: {\"position\":1,", 35) != 0)
        fail_msg("SSE plain read: expected \"id: 1\\nevent: A\\ndata: {...}\", got %.200s", r.body);
    ht_resp_free(&r);
    ht_server_stop(s);
}

static void t_watchers_and_sigterm(void **state)
{
    ht_server *s = *state;
    enum { N = 40 };
    ht_stream w[N];
    for (int i = 0; i < N; i++) open_watch(s, i % 2 ? "/events?watch=true" : "/streams/fan?watch=true", i % 4 == 3 ? "Accept: text/event-stream\r\n" : NULL, &w[i]);
    append(s, "/streams/fan", "{\"type\":\"Fan\"}");
    for (int i = 0; i < N; i++) {
        if (i % 4 == 3) expect_sse(&w[i], "1", "Fan", "fan", 1, "SSE watcher of many");
        else expect_event(&w[i], 1, "fan", 1, "one of many watchers");
    }
    /* SIGTERM with the watchers still open: exit 0 (asserted), the answers
     * end cleanly, with their last chunk (the server used to stop the HTTP
     * daemon right after waking the watchers, cutting some answers short;
     * found by tests/torture/torture_server.c) */
    ht_server_stop(s);
    for (int i = 0; i < N; i++) {
        char *line = NULL;
        size_t n;
        int rc;
        do rc = ht_stream_line(&w[i], WAIT_MS, &line, &n); while (rc == 1);
        if (rc == -ETIMEDOUT) fail_msg("watcher %d: expected its answer to end when the server stopped, it stayed open", i);
        if (rc != 0) fail_msg("watcher %d: expected its answer to end cleanly (last chunk) at SIGTERM, got %s", i, ht_errname(rc));
        ht_stream_close(&w[i]);
    }
}


/* ------------------------------------------------------ shared helpers */

#include <sys/resource.h>

/* Room for n more descriptors in this process (watchers are sockets). */
static void raise_nofile(rlim_t n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) fail_msg("getrlimit: %s", strerror(errno));
    if (rl.rlim_cur >= n + 64) return;
    rl.rlim_cur = n + 64 < rl.rlim_max ? n + 64 : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < n + 64)
        skip();  /* the hard limit is too low for this many connections here */
}

/* A number from /metrics (0 if absent). */
static uint64_t metric(ht_server *s, const char *name)
{
    ht_resp r;
    int st = ht_get(s, "/metrics", &r);
    if (st != 200) fail_msg("GET /metrics: expected 200, got %d", st);
    uint64_t v = 0;
    size_t nl = strlen(name);
    for (const char *p = r.body; p && *p;) {
        if (!strncmp(p, name, nl) && p[nl] == ' ') { v = strtoull(p + nl + 1, NULL, 10); break; }
        const char *e = strchr(p, '\n');
        p = e ? e + 1 : NULL;
    }
    ht_resp_free(&r);
    return v;
}

/* Wait (bounded) until /stats counts `n` open watchers. */
static void wait_watchers(ht_server *s, uint64_t n)
{
    int64_t deadline = ht_now_ms() + HT_TIMEOUT_MS;
    uint64_t got = 0;
    for (;;) {
        ht_resp r;
        if (ht_get(s, "/stats", &r) == 200) {
            json_t *j = ht_json(r.body, r.len, "/stats");
            got = (uint64_t)ht_jint(j, "watchers", "/stats");
            json_decref(j);
        }
        ht_resp_free(&r);
        if (got == n) return;
        if (ht_now_ms() > deadline) fail_msg("expected /stats to count %" PRIu64 " watchers, it counts %" PRIu64, n, got);
        ht_sleep_ms(10);
    }
}

/* A watch request sent on a socket with a tiny receive buffer that is then
 * not read: the server's side fills at once. */
static int stuck_watch_open(ht_server *s, const char *path, const char *headers)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(s->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) fail_msg("connect: %s", strerror(errno));
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n", path, headers ? headers : "");
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) fail_msg("send: %s", strerror(errno));
    return fd;
}

/* The stuck watcher starts reading: its answer as a stream. */
static void stuck_watch_attach(int fd, ht_stream *st, const char *what)
{
    memset(st, 0, sizeof *st);
    st->fd = fd;
    st->rd.fd = fd;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int hr = ht_read_head(&st->rd, ht_now_ms() + WAIT_MS, &st->head);
    if (hr != 1 || st->head.status != 200) fail_msg("%s: expected a 200 head when it finally reads, got %s", what, ht_errname(hr));
    char te[64];
    st->chunked = ht_header(st->head.head, "Transfer-Encoding", te, sizeof te) && strstr(te, "chunked");
}

/* CPU time (user + system, all threads) of a process so far, in ms. */
static uint64_t proc_cpu_ms(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("open %s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');  /* the command name may hold spaces */
    if (!p) fail_msg("%s: unexpected format", path);
    unsigned long long utime = 0, stime = 0;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        fail_msg("%s: cannot read utime/stime", path);
    return (utime + stime) * 1000u / (uint64_t)sysconf(_SC_CLK_TCK);
}

/* A plain read in progress at SIGTERM runs to its end (or, past the drain's
 * bound, is cut without its last chunk): it never ends early and cleanly,
 * which would look like the end of the log. The server used to end it at
 * the next chunk with a clean end (found by tests/torture/torture_server.c;
 * curl then exited 0 with a quarter of the log). */
static void t_read_during_sigterm(void **state)
{
    ht_server *s = *state;
    enum { BATCHES = 40, PER = 50 }; /* 2,000 events of ~12 KiB: 24 MiB, more than the socket buffers hold */
    static char body[PER * 12400];
    ht_conn c;
    ht_conn_init(&c, s->port);
    for (int b = 0; b < BATCHES; b++) {
        size_t len = 0;
        body[len++] = '[';
        for (int i = 0; i < PER; i++)
            len += (size_t)snprintf(body + len, sizeof body - len, "%s{\"type\":\"Big\",\"data\":{\"i\":%d,\"pad\":\"%012000d\"}}",
                                    i ? "," : "", b * PER + i, 0);
        body[len++] = ']';
        ht_resp r;
        int st = ht_conn_request(&c, "POST", "/streams/big", NULL, body, len, &r);
        if (st != 201) fail_msg("bulk append %d: expected 201, got %d (%s)", b, st, ht_errname(r.err));
        ht_resp_free(&r);
    }
    ht_conn_close(&c);
    ht_stream st;
    if (ht_stream_open(s, "/events", NULL, &st) != 200) fail_msg("GET /events: expected 200, got %d", st.head.status);
    char *line = NULL;
    size_t n;
    int rc = ht_stream_line(&st, WAIT_MS, &line, &n);
    if (rc != 1) fail_msg("GET /events: expected a first line, got %s", ht_errname(rc));
    /* the read is under way (most of it not sent yet): stop the server */
    pid_t pid = s->pid;
    kill(pid, SIGTERM);
    int lines = 1;
    while ((rc = ht_stream_line(&st, WAIT_MS, &line, &n)) == 1) lines++;
    if (rc != 0 || lines != BATCHES * PER)
        fail_msg("GET /events during SIGTERM: expected all %d lines and a clean end, got %d lines and %s", BATCHES * PER, lines,
                 rc == 0 ? "a clean end (a short answer that looks whole)" : ht_errname(rc));
    ht_stream_close(&st);
    int status = 0;
    if (!ht_wait_exit(pid, HT_ASAN ? 60000 : 30000, &status) || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("after SIGTERM evstored should exit 0; log:\n%s", ht_log_tail(s, 2000));
    s->pid = 0;
}

/* ---------------------------------------- a watcher that never reads */

#define SLOW_BATCH 500
#define SLOW_EVENTS 50000

/* Append `events` events in batches; returns seconds taken. */
static double append_many(ht_server *s, int events, int tag)
{
    static char body[SLOW_BATCH * 300];
    ht_conn c;
    ht_conn_init(&c, s->port);
    double t0 = ht_now_s();
    for (int done = 0; done < events; done += SLOW_BATCH) {
        size_t len = 0;
        body[len++] = '[';
        for (int i = 0; i < SLOW_BATCH; i++)
            len += (size_t)snprintf(body + len, sizeof body - len,
                                    "%s{\"type\":\"Load\",\"data\":{\"tag\":%d,\"i\":%d,\"pad\":\"%0150d\"}}", i ? "," : "", tag, done + i, 0);
        body[len++] = ']';
        ht_resp r;
        int st = ht_conn_request(&c, "POST", "/streams/load", NULL, body, len, &r);
        if (st != 201) fail_msg("bulk append %d: expected 201, got %d (%s): %.300s", done, st, ht_errname(r.err), r.body);
        ht_resp_free(&r);
    }
    double t = ht_now_s() - t0;
    ht_conn_close(&c);
    return t;
}

static void t_never_reading_watcher(void **state)
{
    ht_server *s = *state;
    /* Baseline: the same appends with no watcher. */
    double base = append_many(s, SLOW_EVENTS, 1);
    uint64_t rss_base = ht_proc_kb(s->pid, "VmRSS:");
    /* A watcher that sends its request and never reads, with a tiny receive
     * buffer so the server's side fills at once. */
    int fd = stuck_watch_open(s, "/events?watch=true&from=1", NULL);
    /* and a watcher that reads, from the current end */
    char path[96];
    snprintf(path, sizeof path, "/events?watch=true&from=%d", SLOW_EVENTS + 1);
    ht_stream live;
    open_watch(s, path, NULL, &live);
    ht_sleep_ms(200); /* let the stuck watcher fill its socket */
    double with = append_many(s, SLOW_EVENTS, 2);
    int total = 2 * SLOW_EVENTS;
    double floor_s = 0.5; /* below this, timer noise dominates the ratio */
    double ratio = with / (base > floor_s ? base : floor_s);
    if (ratio > 3.0) {
        /* One more measurement before calling it: a burst of load from
         * elsewhere on the machine must not fail the test, a watcher that
         * really slows the writer slows both. */
        double again = append_many(s, SLOW_EVENTS, 3);
        total += SLOW_EVENTS;
        print_message("never-reading watcher: ratio %.2f on the first try (%.2fs), %.2fs on the second\n", ratio, with, again);
        if (again < with) with = again;
        ratio = with / (base > floor_s ? base : floor_s);
    }
    uint64_t hwm = ht_proc_kb(s->pid, "VmHWM:"), rss = ht_proc_kb(s->pid, "VmRSS:");
    print_message("never-reading watcher: %d events in batches of %d: %.2fs without, %.2fs with (ratio %.2f); server RSS %" PRIu64
                  " KiB before, %" PRIu64 " KiB after, peak %" PRIu64 " KiB\n",
                  SLOW_EVENTS, SLOW_BATCH, base, with, ratio, rss_base, rss, hwm);
    if (ratio > 3.0)
        fail_msg("a watcher that never reads slowed the writer: %d events took %.2fs with it vs %.2fs without (ratio %.2f, limit 3)",
                 SLOW_EVENTS, with, base, ratio);
    /* ASan keeps freed memory in quarantine (256 MB by default) */
    uint64_t limit_kb = HT_ASAN ? 1024 * 1024 : 200 * 1024;
    if (hwm > limit_kb)
        fail_msg("server peak RSS %" PRIu64 " KiB with a never-reading watcher; expected below %" PRIu64 " KiB (bounded buffering)", hwm,
                 limit_kb);
    /* the reading watcher was not held back by the stuck one */
    for (int pos = SLOW_EVENTS + 1; pos <= total;) {
        char *line = NULL;
        size_t n;
        int rc = ht_stream_line(&live, WAIT_MS, &line, &n);
        if (rc != 1) fail_msg("reading watcher: expected position %d, got %s", pos, ht_errname(rc));
        if (n == 0) continue;
        char want[64];
        snprintf(want, sizeof want, "{\"position\":%d,", pos);
        if (strncmp(line, want, strlen(want)) != 0) fail_msg("reading watcher: expected %s..., got %.120s", want, line);
        pos++;
    }
    ht_stream_close(&live);
    /* now the stuck watcher reads: it catches up from the store, in order */
    ht_stream st;
    stuck_watch_attach(fd, &st, "stuck watcher");
    int64_t expect = 1;
    while (expect <= total) {
        char *line = NULL;
        size_t n;
        int rc = ht_stream_line(&st, WAIT_MS, &line, &n);
        if (rc != 1) fail_msg("stuck watcher catching up: expected position %" PRId64 ", got %s", expect, ht_errname(rc));
        if (n == 0) continue;
        char want[64];
        snprintf(want, sizeof want, "{\"position\":%" PRId64 ",", expect);
        if (strncmp(line, want, strlen(want)) != 0)
            fail_msg("stuck watcher catching up: expected %s..., got %.120s (events lost or reordered)", want, line);
        expect++;
    }
    ht_stream_close(&st);
    ht_server_stop(s);
}


/* ------------------------------------------------------- many watchers */

/* Event k (1..) of the fan-out tests: its stream and type. */
static const char *fan_stream(int k) { return k % 2 ? "fan/a" : "fan/b"; }
static const char *fan_type(int k) { return k % 3 == 0 ? "B" : "A"; }

/* Append events first..last (positions, on a fresh store) in one request. */
static void fan_append(ht_server *s, int first, int last)
{
    static char body[1 << 16];
    size_t len = 0;
    body[len++] = '[';
    for (int k = first; k <= last; k++)
        len += (size_t)snprintf(body + len, sizeof body - len, "%s{\"stream\":\"%s\",\"type\":\"%s\",\"data\":{\"k\":%d}}",
                                k > first ? "," : "", fan_stream(k), fan_type(k), k);
    body[len++] = ']';
    body[len] = 0;
    json_t *j = ht_append_ok(s, "/events", body, "fan-out append");
    json_decref(j);
}

/* Watcher i's kind: 0 everything, 1 the stream fan/a, 2 type B under the
 * prefix fan/, 3 everything as Server-Sent Events. */
static const char *fan_path(int i)
{
    static const char *const p[] = {"/events?watch=true", "/streams/fan%2Fa?watch=true",
                                    "/events?watch=true&type=B&stream_prefix=fan/", "/events?watch=true"};
    return p[i % 4];
}

static int fan_wants(int i, int k)
{
    switch (i % 4) {
    case 1: return k % 2 == 1;
    case 2: return k % 3 == 0;
    default: return 1;
    }
}

/* Watcher i must get exactly its events among 1..upto, in order. */
static void fan_expect(ht_stream *st, int i, int from, int upto)
{
    char what[96];
    for (int k = from; k <= upto; k++) {
        if (!fan_wants(i, k)) continue;
        snprintf(what, sizeof what, "watcher %d (%s%s), event %d", i, fan_path(i), i % 4 == 3 ? ", SSE" : "", k);
        json_t *j;
        if (i % 4 == 3) {
            sse_event e;
            next_sse(st, &e, NULL, what);
            if (!e.data || atoi(e.id) != k || strcmp(e.event, fan_type(k)) != 0)
                fail_msg("%s: expected id: %d, event: %s, got id: %s, event: %s", what, k, fan_type(k), e.id, e.event);
            j = ht_json(e.data, strlen(e.data), what);
            free(e.data);
        } else {
            j = next_event(st, NULL, what);
        }
        if (ht_jint(j, "position", what) != k || strcmp(ht_jstr(j, "stream", what), fan_stream(k)) ||
            strcmp(ht_jstr(j, "type", what), fan_type(k)))
            fail_msg("%s: expected position %d (%s, %s), got position %" PRId64 " (%s, %s): lost, duplicated or reordered", what, k,
                     fan_stream(k), fan_type(k), ht_jint(j, "position", what), ht_jstr(j, "stream", what), ht_jstr(j, "type", what));
        json_decref(j);
    }
}

/* 1,000 watchers of four kinds (global, one stream, filtered, SSE): half
 * opened before anything is written (they live on the ring from the start),
 * half after 20 events (they read those from the store, then join the ring);
 * each gets exactly its events, in order. */
static void t_thousand_watchers(void **state)
{
    ht_server *s = *state;
    enum { N = 1000, HALF = 20, ALL = 40 };
    raise_nofile(N + 64);
    ht_stream *w = calloc(N, sizeof *w);
    for (int i = 0; i < N / 2; i++) open_watch(s, fan_path(i), i % 4 == 3 ? "Accept: text/event-stream\r\n" : NULL, &w[i]);
    for (int k = 1; k <= HALF; k += 5) fan_append(s, k, k + 4);
    for (int i = N / 2; i < N; i++) open_watch(s, fan_path(i), i % 4 == 3 ? "Accept: text/event-stream\r\n" : NULL, &w[i]);
    for (int k = HALF + 1; k <= ALL; k += 10) fan_append(s, k, k + 9);
    fan_append(s, ALL + 1, ALL + 1); /* single-event commits too */
    fan_append(s, ALL + 2, ALL + 2);
    for (int i = 0; i < N; i++) fan_expect(&w[i], i, 1, ALL + 2);
    /* the events were encoded once for all of them: the ring holds them */
    uint64_t ring = metric(s, "evstore_watch_ring_events");
    if (ring < 1) fail_msg("expected the watch ring to hold the recent events with %d watchers, it holds %" PRIu64, N, ring);
    print_message("1,000 watchers: every event in order; ring holds %" PRIu64 " events (%" PRIu64 " bytes), %" PRIu64 " fallbacks\n",
                  ring, metric(s, "evstore_watch_ring_bytes"), metric(s, "evstore_watch_fallbacks_total"));
    for (int i = 0; i < N; i++) ht_stream_close(&w[i]);
    free(w);
    ht_server_stop(s);
}

/* A watcher that falls behind the ring (a 256 KiB ring, 30,000 events,
 * ~15 MB, it does not read) continues from the store when it reads again, without losing,
 * repeating or reordering anything, then rejoins the ring; meanwhile a watcher
 * that reads gets each batch as it commits. Two slow ones: a stream watch
 * with a type filter (it resumes by stream version) and an SSE watch of a
 * prefix (by position). */
static void t_slow_watcher_leaves_and_rejoins_the_ring(void **state)
{
    ht_server *s = *state;
    ht_server_stop(s);
    s->args[s->nargs++] = "--watch-buffer";
    s->args[s->nargs++] = "256K";
    ht_server_start(s);
    /* Batches of 100 (~70 KB encoded) fit the ring: the reading watcher,
     * which reads each one before the next is written, never falls off. The
     * kernel takes up to 4 MB (tcp_wmem) for a client that does not read:
     * the slow stream watcher (a third of the events) must be sent more. */
    enum { BATCH = 100, TOTAL = 30000, MORE = 6 };
    ht_stream live;
    open_watch(s, "/events?watch=true", NULL, &live);
    int fd1 = stuck_watch_open(s, "/streams/fan%2Fa?watch=true&type=A", NULL);
    int fd2 = stuck_watch_open(s, "/events?watch=true&stream_prefix=fan/", "Accept: text/event-stream\r\n");
    wait_watchers(s, 3);
    static char body[BATCH * 520];
    int64_t worst_ms = 0;
    for (int first = 1; first <= TOTAL; first += BATCH) {
        size_t len = 0;
        body[len++] = '[';
        for (int k = first; k < first + BATCH; k++)
            len += (size_t)snprintf(body + len, sizeof body - len, "%s{\"stream\":\"%s\",\"type\":\"%s\",\"data\":{\"k\":%d,\"pad\":\"%0400d\"}}",
                                    k > first ? "," : "", fan_stream(k), fan_type(k), k, 0);
        body[len++] = ']';
        body[len] = 0;
        json_decref(ht_append_ok(s, "/events", body, "bulk append"));
        int64_t t0 = ht_now_ms();
        for (int k = first; k < first + BATCH; k++) {
            char what[64];
            snprintf(what, sizeof what, "live watcher, event %d", k);
            json_t *j = next_event(&live, NULL, what);
            if (ht_jint(j, "position", what) != k) fail_msg("%s: got position %" PRId64, what, ht_jint(j, "position", what));
            json_decref(j);
        }
        int64_t took = ht_now_ms() - t0;
        if (took > worst_ms) worst_ms = took;
    }
    /* now they read: from the store, then the ring again for what follows */
    ht_stream slow1, slow2;
    stuck_watch_attach(fd1, &slow1, "slow stream watcher");
    stuck_watch_attach(fd2, &slow2, "slow SSE watcher");
    /* kind 1 is fan/a; with type=A it is the odd k that are not multiples of 3 */
    for (int k = 1; k <= TOTAL; k++) {
        if (k % 2 == 0 || k % 3 == 0) continue;
        char what[64];
        snprintf(what, sizeof what, "slow stream watcher, event %d", k);
        json_t *j = next_event(&slow1, NULL, what);
        if (ht_jint(j, "position", what) != k || ht_jint(j, "version", what) != (k + 1) / 2)
            fail_msg("%s: expected position %d (version %d), got position %" PRId64 " (version %" PRId64 "): lost, repeated or reordered",
                     what, k, (k + 1) / 2, ht_jint(j, "position", what), ht_jint(j, "version", what));
        json_decref(j);
    }
    fan_expect(&slow2, 3, 1, TOTAL);
    uint64_t fallbacks = metric(s, "evstore_watch_fallbacks_total");
    if (fallbacks < 2)
        fail_msg("expected both slow watchers to have fallen behind the 256 KiB ring and read the store; fallbacks counted: %" PRIu64,
                 fallbacks);
    /* caught up: live again, all three */
    for (int k = TOTAL + 1; k <= TOTAL + MORE; k++) fan_append(s, k, k);
    fan_expect(&live, 0, TOTAL + 1, TOTAL + MORE);
    for (int k = TOTAL + 1; k <= TOTAL + MORE; k++) {
        if (k % 2 == 0 || k % 3 == 0) continue;
        json_t *j = next_event(&slow1, NULL, "slow stream watcher, live again");
        if (ht_jint(j, "position", "") != k) fail_msg("slow stream watcher, live again: expected position %d, got %" PRId64, k, ht_jint(j, "position", ""));
        json_decref(j);
    }
    fan_expect(&slow2, 3, TOTAL + 1, TOTAL + MORE);
    print_message("slow watchers: %d events, %" PRIu64 " fallbacks to the store, the reading watcher's slowest batch of %d took %" PRId64 " ms\n",
                  TOTAL, fallbacks, BATCH, worst_ms);
    ht_stream_close(&slow1);
    ht_stream_close(&slow2);
    ht_stream_close(&live);
    ht_server_stop(s);
}

/* Watchers of quiet streams while the ring turns over many times with other
 * streams' events: they are not woken for those, yet keep their place (no
 * fallback to the store), get their heartbeats, and each gets its own
 * stream's event when it comes (half of them woken by nothing else). */
static void t_quiet_stream_watchers(void **state)
{
    ht_server *s = *state;
    ht_server_stop(s);
    s->args[s->nargs++] = "--watch-buffer";
    s->args[s->nargs++] = "64K";
    ht_server_start(s);
    enum { N = 100, NOISE = 5000, BATCH = 100 };
    raise_nofile(N + 64);
    ht_stream *w = calloc(N, sizeof *w);
    char path[96];
    for (int i = 0; i < N; i++) {
        /* even ones get heartbeats (which move them to the ring's end), odd ones
         * are woken only by their stream's event */
        snprintf(path, sizeof path, "/streams/quiet%%2F%d?watch=true&heartbeat=%d", i, i % 2 ? 3600 : 1);
        open_watch(s, path, i % 5 == 4 ? "Accept: text/event-stream\r\n" : NULL, &w[i]);
    }
    wait_watchers(s, N);
    /* 5,000 events (~1 MB) of another stream: the 64 KiB ring turns over */
    static char body[BATCH * 200];
    for (int done = 0; done < NOISE; done += BATCH) {
        size_t len = 0;
        body[len++] = '[';
        for (int k = 0; k < BATCH; k++)
            len += (size_t)snprintf(body + len, sizeof body - len, "%s{\"type\":\"Noise\",\"data\":{\"pad\":\"%0150d\"}}", k ? "," : "", 0);
        body[len++] = ']';
        body[len] = 0;
        json_decref(ht_append_ok(s, "/streams/noise", body, "noise"));
    }
    /* the even ones got only heartbeats so far (one each at least, within ~1 s) */
    for (int i = 0; i < N; i += 2) {
        char *line = NULL;
        size_t n;
        int rc = ht_stream_line(&w[i], 5000, &line, &n);
        if (rc != 1 || (n != 0 && line[0] != ':'))
            fail_msg("quiet watcher %d: expected only a heartbeat, got %s", i, rc == 1 ? line : ht_errname(rc));
    }
    /* then each quiet stream gets one event, in reverse order */
    for (int i = N - 1; i >= 0; i--) {
        snprintf(path, sizeof path, "/streams/quiet%%2F%d", i);
        json_decref(ht_append_ok(s, path, "{\"type\":\"Finally\"}", "quiet stream append"));
    }
    for (int i = 0; i < N; i++) {
        char what[64], want[32];
        snprintf(what, sizeof what, "quiet watcher %d", i);
        snprintf(want, sizeof want, "quiet/%d", i);
        json_t *j;
        if (i % 5 == 4) {
            sse_event e;
            next_sse(&w[i], &e, NULL, what);
            if (!e.data) fail_msg("%s: expected an event with data", what);
            j = ht_json(e.data, strlen(e.data), what);
            free(e.data);
        } else {
            j = next_event(&w[i], NULL, what);
        }
        if (strcmp(ht_jstr(j, "stream", what), want) || ht_jint(j, "version", what) != 1 ||
            ht_jint(j, "position", what) != NOISE + N - i)
            fail_msg("%s: expected %s v1 at position %d, got %s v%" PRId64 " at %" PRId64, what, want, NOISE + N - i,
                     ht_jstr(j, "stream", what), ht_jint(j, "version", what), ht_jint(j, "position", what));
        json_decref(j);
    }
    uint64_t fallbacks = metric(s, "evstore_watch_fallbacks_total");
    if (fallbacks != 0)
        fail_msg("watchers of quiet streams should keep their place on the ring while it turns over; %" PRIu64 " fell back to the store",
                 fallbacks);
    for (int i = 0; i < N; i++) ht_stream_close(&w[i]);
    free(w);
    ht_server_stop(s);
}

/* Idle watchers cost no CPU: with many watches open on a quiet store (and
 * heartbeats an hour apart), the server's CPU time over a quiet period is
 * next to nothing. Then one event reaches every one of them. */
static void t_idle_watchers_cost_nothing(void **state)
{
    ht_server *s = *state;
    enum { N = SANITIZED ? 2000 : 10000 };
    raise_nofile(N + 64);
    ht_server_stop(s);
    s->args[s->nargs++] = "--max-connections";
    s->args[s->nargs++] = "10100";
    ht_server_start(s);
    fan_append(s, 1, 1);
    ht_stream *w = calloc(N, sizeof *w);
    for (int i = 0; i < N; i++) {
        int status = ht_stream_open(s, i % 2 ? "/events?watch=true&from=2&heartbeat=3600" : "/streams/fan%2Fb?watch=true&heartbeat=3600",
                                    NULL, &w[i]);
        if (status != 200) fail_msg("idle watcher %d: expected 200, got %d (%s)", i, status, ht_errname(w[i].head.err));
    }
    wait_watchers(s, N);
    ht_sleep_ms(300); /* let the last ones settle into suspension */
    uint64_t c0 = proc_cpu_ms(s->pid);
    int64_t t0 = ht_now_ms();
    ht_sleep_ms(3000); /* the period measured: nothing happens */
    uint64_t used = proc_cpu_ms(s->pid) - c0;
    int64_t period = ht_now_ms() - t0;
    print_message("%d idle watchers: the server used %" PRIu64 " ms of CPU in %" PRId64 " ms\n", N, used, period);
    /* a clock tick is 10 ms: allow a few, and ASan's own threads */
    uint64_t limit = SANITIZED ? 150 : 50;
    if (used > limit)
        fail_msg("%d idle watchers: the server used %" PRIu64 " ms of CPU over %" PRId64 " ms of quiet; expected at most %" PRIu64 " ms",
                 N, used, period, limit);
    /* one event (of fan/b: every watcher wants it), delivered to all */
    uint64_t c1 = proc_cpu_ms(s->pid);
    fan_append(s, 2, 2);
    for (int i = 0; i < N; i++) {
        char what[64];
        snprintf(what, sizeof what, "idle watcher %d, the event after the quiet", i);
        json_t *j = next_event(&w[i], NULL, what);
        if (ht_jint(j, "position", what) != 2) fail_msg("%s: expected position 2, got %" PRId64, what, ht_jint(j, "position", what));
        json_decref(j);
    }
    print_message("one event to %d watchers: %" PRIu64 " ms of server CPU\n", N, proc_cpu_ms(s->pid) - c1);
    for (int i = 0; i < N; i++) ht_stream_close(&w[i]);
    free(w);
    ht_server_stop(s);
}

int main(void)
{
    ht_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_watch_live, setup, teardown),
        cmocka_unit_test_setup_teardown(t_watch_stream_not_yet, setup, teardown),
        cmocka_unit_test_setup_teardown(t_watch_heartbeats, setup, teardown),
        cmocka_unit_test_setup_teardown(t_watch_sse, setup, teardown),
        cmocka_unit_test_setup_teardown(t_watchers_and_sigterm, setup, teardown),
        cmocka_unit_test_setup_teardown(t_read_during_sigterm, setup, teardown),
        cmocka_unit_test_setup_teardown(t_never_reading_watcher, setup, teardown),
        cmocka_unit_test_setup_teardown(t_thousand_watchers, setup, teardown),
        cmocka_unit_test_setup_teardown(t_slow_watcher_leaves_and_rejoins_the_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(t_quiet_stream_watchers, setup, teardown),
        cmocka_unit_test_setup_teardown(t_idle_watchers_cost_nothing, setup, teardown),
    };
    return cmocka_run_group_tests_name("http_watch", tests, NULL, NULL);
}
