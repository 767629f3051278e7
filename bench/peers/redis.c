/*
 * redis.c — the Redis Streams peer: redis-server started as our child on
 * loopback with its own directory (append-only file on, fsync always or
 * everysec, RDB snapshots off), driven through hiredis (commands formatted by
 * redisFormatCommandArgv, answers parsed by redisReader) on the load
 * generator's epoll loop.
 *
 *  append of 1 event     XADD <stream> * type OrderPlaced data <200 bytes>
 *  append of N events    MULTI, N x XADD, EXEC (atomic like an evstore batch;
 *                        with appendfsync always Redis writes and fsyncs the
 *                        AOF before it answers the EXEC)
 *  read of a stream      XRANGE <stream> - + COUNT n (XREVRANGE backward)
 *  full read             every stream key (SCAN), XRANGE pages of 1,000
 *
 * Automatic AOF rewrites are off: a rewrite forks and rewrites the whole
 * file in the background, and would land on whichever row runs then (it hit
 * the 256-client everysec row in a trial run: 4,342 events/s instead of
 * ~30,000). evstore never rewrites its log.
 *
 * Not like-for-like: Redis has no global order across keys (no "position"),
 * no expected-version check, no idempotent ids, and the store lives in
 * memory (the AOF is a log to replay, read back only at start).
 */
#include "peers.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef EVS_BENCH_HAVE_HIREDIS
#include <hiredis/hiredis.h>

typedef struct rpriv {
    int port;
    char dir[PATH_MAX];
} rpriv;

int bh_redis_available(void) { return 1; }

/* Append one formatted command to b. */
static int add_cmd(lg_buf *b, int argc, const char **argv, const size_t *lens)
{
    char *cmd = NULL;
    int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (n < 0) return -1;
    int rc = lg_buf_add(b, cmd, (size_t)n);
    redisFreeCommand(cmd);
    return rc;
}

static int add_xadd(lg_buf *b, const char *stream, uint64_t variant)
{
    const char *argv[] = {"XADD", stream, "*", "type", BH_EVENT_TYPE, "data", bh_event_data(variant)};
    size_t lens[] = {4, strlen(stream), 1, 4, strlen(BH_EVENT_TYPE), 4, BH_DATA_LEN};
    return add_cmd(b, 7, argv, lens);
}

/* A blocking command on a fresh connection (setup only); returns the reply or NULL. */
static redisReply *cmd_blocking(int port, const char *fmt, ...)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err) { if (c) redisFree(c); return NULL; }
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

static int conn_open(bh_sys *s, lg_conn *c)
{
    rpriv *p = s->priv;
    c->fd = lg_tcp_connect(p->port);
    if (c->fd < 0) return -1;
    lg_set_nonblock(c->fd, 1);
    c->proto = redisReaderCreate();
    return c->proto ? 0 : -1;
}

static void conn_close(bh_sys *s, lg_conn *c)
{
    (void)s;
    if (c->proto) redisReaderFree(c->proto);
    c->proto = NULL;
    lg_conn_close(c);
}

static int start_send(lg_conn *c)
{
    int r = lg_conn_flush(c);
    return r < 0 ? LG_ERR : r == 0 ? LG_MORE_OUT : LG_MORE_IN;
}

static int issue_append(bh_sys *s, lg_conn *c, const char *stream, int nev)
{
    (void)s;
    lg_buf_reset(&c->out);
    c->ok = 1;
    c->nevents = (uint32_t)nev;
    if (nev == 1) {
        if (add_xadd(&c->out, stream, c->seq)) return LG_ERR;
        c->expect = 1;
    } else {
        const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
        size_t ml[] = {5}, el[] = {4};
        if (add_cmd(&c->out, 1, multi, ml)) return LG_ERR;
        for (int i = 0; i < nev; i++)
            if (add_xadd(&c->out, stream, c->seq * 7 + (uint64_t)i)) return LG_ERR;
        if (add_cmd(&c->out, 1, exec, el)) return LG_ERR;
        c->expect = nev + 2;
    }
    c->counter = 0;
    return start_send(c);
}

static int issue_read(bh_sys *s, lg_conn *c, const char *stream, int limit, int backward)
{
    (void)s;
    lg_buf_reset(&c->out);
    char n[24];
    snprintf(n, sizeof n, "%d", limit);
    const char *argv[] = {backward ? "XREVRANGE" : "XRANGE", stream, backward ? "+" : "-", backward ? "-" : "+", "COUNT", n};
    size_t lens[] = {strlen(argv[0]), strlen(stream), 1, 1, 5, strlen(n)};
    if (add_cmd(&c->out, 6, argv, lens)) return LG_ERR;
    c->expect = 1;
    c->ok = 1;
    c->counter = 1;                        /* count the entries of the answer */
    return start_send(c);
}

static int parse(lg_conn *c, void *ud)
{
    (void)ud;
    redisReader *rd = c->proto;
    if (redisReaderFeed(rd, c->in.p + c->in.off, c->in.len - c->in.off) != REDIS_OK) return LG_ERR;
    c->in.off = c->in.len = 0;
    for (;;) {
        void *v = NULL;
        if (redisReaderGetReply(rd, &v) != REDIS_OK) return LG_ERR;
        if (!v) return LG_MORE_IN;
        redisReply *r = v;
        if (r->type == REDIS_REPLY_ERROR) c->ok = 0;
        if (r->type == REDIS_REPLY_ARRAY && c->counter) c->nevents = (uint32_t)r->elements;
        if (r->type == REDIS_REPLY_NIL) c->ok = 0;      /* EXEC aborted */
        freeReplyObject(r);
        if (--c->expect <= 0) return LG_DONE;
    }
}

static int on_io(bh_sys *s, lg_conn *c, unsigned events)
{
    (void)s;
    return lg_raw_io(c, events, parse, NULL);
}

/* Blocking pipeline on c (blocking fd): send c->out, read `expect` replies. */
static int pipeline_blocking(lg_conn *c, uint64_t *entries, uint64_t *bytes, char *last_id, size_t last_cap,
                             redisReply **keep)
{
    if (lg_conn_flush(c) != 1) return -1;
    redisReader *rd = c->proto;
    while (c->expect > 0) {
        void *v = NULL;
        if (redisReaderGetReply(rd, &v) != REDIS_OK) return -1;
        if (!v) {
            ssize_t k = lg_conn_fill(c);
            if (k <= 0) return -1;
            if (bytes) *bytes += (uint64_t)k;
            if (redisReaderFeed(rd, c->in.p, c->in.len) != REDIS_OK) return -1;
            c->in.off = c->in.len = 0;
            continue;
        }
        redisReply *r = v;
        if (r->type == REDIS_REPLY_ERROR) { freeReplyObject(r); return -1; }
        if (entries && r->type == REDIS_REPLY_ARRAY) {
            *entries += r->elements;
            if (last_id && r->elements) {
                redisReply *e = r->element[r->elements - 1];
                if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 && e->element[0]->type == REDIS_REPLY_STRING)
                    snprintf(last_id, last_cap, "%s", e->element[0]->str);
            }
        }
        c->expect--;
        if (keep && c->expect == 0) *keep = r;
        else freeReplyObject(r);
    }
    return 0;
}

static int blocking_conn(rpriv *p, lg_conn *c)
{
    memset(c, 0, sizeof *c);
    c->fd = lg_tcp_connect(p->port);
    if (c->fd < 0) return -1;
    c->proto = redisReaderCreate();
    return c->proto ? 0 : -1;
}

static int fill(bh_sys *s, uint64_t nevents, int batch, uint32_t nstreams, const char *prefix, uint64_t seed)
{
    lg_conn c;
    if (blocking_conn(s->priv, &c)) return -1;
    uint64_t rng = seed;
    int rc = 0;
    char stream[96];
    for (uint64_t done = 0; done < nevents && rc == 0;) {
        lg_buf_reset(&c.out);
        int n = (int)(nevents - done < (uint64_t)batch ? nevents - done : (uint64_t)batch);
        for (int i = 0; i < n; i++) {
            snprintf(stream, sizeof stream, "%s%u", prefix, (unsigned)lg_rand_below(&rng, nstreams));
            add_xadd(&c.out, stream, done + (uint64_t)i);
        }
        c.expect = n;
        rc = pipeline_blocking(&c, NULL, NULL, NULL, 0, NULL);
        done += (uint64_t)n;
    }
    conn_close(s, &c);
    return rc;
}

static int full_read(bh_sys *s, uint64_t *events, uint64_t *bytes)
{
    lg_conn c;
    if (blocking_conn(s->priv, &c)) return -1;
    *events = *bytes = 0;
    /* every key first (SCAN), then each stream in pages of 1,000 */
    char **keys = NULL;
    size_t nkeys = 0, capk = 0;
    char cursor[32] = "0";
    int rc = 0;
    do {
        lg_buf_reset(&c.out);
        const char *argv[] = {"SCAN", cursor, "COUNT", "1000"};
        size_t lens[] = {4, strlen(cursor), 5, 4};
        add_cmd(&c.out, 4, argv, lens);
        c.expect = 1;
        redisReply *r = NULL;
        if (pipeline_blocking(&c, NULL, NULL, NULL, 0, &r) != 0 || !r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r) freeReplyObject(r);
            rc = -1;
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *ks = r->element[1];
        for (size_t i = 0; i < ks->elements; i++) {
            if (nkeys == capk) {
                capk = capk ? capk * 2 : 1024;
                keys = realloc(keys, capk * sizeof *keys);
            }
            keys[nkeys++] = strdup(ks->element[i]->str);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    for (size_t k = 0; k < nkeys && rc == 0; k++) {
        char start[80] = "-";
        for (;;) {
            lg_buf_reset(&c.out);
            const char *argv[] = {"XRANGE", keys[k], start, "+", "COUNT", "1000"};
            size_t lens[] = {6, strlen(keys[k]), strlen(start), 1, 5, 4};
            add_cmd(&c.out, 6, argv, lens);
            c.expect = 1;
            uint64_t before = *events;
            char last[64] = "";
            if (pipeline_blocking(&c, events, bytes, last, sizeof last, NULL) != 0) { rc = -1; break; }
            if (*events - before < 1000 || !last[0]) break;
            snprintf(start, sizeof start, "(%s", last);       /* exclusive: after the last id */
        }
    }
    for (size_t k = 0; k < nkeys; k++) free(keys[k]);
    free(keys);
    conn_close(s, &c);
    return rc;
}

static void stop(bh_sys *s)
{
    if (s->pid > 0) bh_stop_pid(s->pid, SIGTERM, 15000);
    s->pid = 0;
    free(s->priv);
    s->priv = NULL;
}

int bh_redis_set_fsync(bh_sys *s, int always)
{
    rpriv *p = s->priv;
    redisReply *r = cmd_blocking(p->port, "CONFIG SET appendfsync %s", always ? "always" : "everysec");
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
    snprintf(s->config, sizeof s->config, "redis-server 7, AOF appendfsync %s, auto AOF rewrite off, no RDB", always ? "always" : "everysec");
    return ok ? 0 : -1;
}

int bh_redis_start(bh_sys *s, const char *dir, int always, char *why, size_t whylen)
{
    char bin[PATH_MAX];
    if (access("/usr/bin/redis-server", X_OK) == 0) snprintf(bin, sizeof bin, "/usr/bin/redis-server");
    else {
        snprintf(why, whylen, "redis-server is not installed (scripts/install-bench-peers)");
        return -1;
    }
    rpriv *p = calloc(1, sizeof *p);
    if (!p) return -1;
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    mkdir(dir, 0700);
    char log[PATH_MAX + 16], port[16];
    snprintf(log, sizeof log, "%s/redis.log", dir);
    for (int attempt = 0; attempt < 5; attempt++) {
        p->port = bh_free_port();
        snprintf(port, sizeof port, "%d", p->port);
        char *argv[] = {bin, "--port", port, "--bind", "127.0.0.1", "--dir", p->dir, "--appendonly", "yes",
                        "--appendfsync", always ? "always" : "everysec", "--save", "", "--daemonize", "no",
                        "--logfile", "", "--maxclients", "4096", "--auto-aof-rewrite-percentage", "0", NULL};
        pid_t pid = bh_spawn(argv, log, NULL);
        if (pid < 0) break;
        for (int i = 0; i < 500; i++) {     /* up to 5 s */
            redisReply *r = cmd_blocking(p->port, "PING");
            if (r) {
                freeReplyObject(r);
                s->pid = pid;
                break;
            }
            if (bh_child_exited(pid)) break;
            lg_sleep_ns(10000000u);
        }
        if (s->pid) break;
        bh_stop_pid(pid, SIGKILL, 1000);
    }
    if (!s->pid) {
        snprintf(why, whylen, "redis-server did not start (see %s)", log);
        free(p);
        return -1;
    }
    s->name = "redis";
    s->priv = p;
    s->inproc = 0;
    s->tree = 0;
    s->conn_open = conn_open;
    s->conn_close = conn_close;
    s->issue_append = issue_append;
    s->issue_read = issue_read;
    s->on_io = on_io;
    s->fill = fill;
    s->full_read = full_read;
    s->stop = stop;
    snprintf(s->config, sizeof s->config, "redis-server 7, AOF appendfsync %s, auto AOF rewrite off, no RDB", always ? "always" : "everysec");
    return 0;
}

#else  /* no hiredis */

int bh_redis_available(void) { return 0; }
int bh_redis_set_fsync(bh_sys *s, int always) { (void)s; (void)always; return -1; }
int bh_redis_start(bh_sys *s, const char *dir, int always, char *why, size_t whylen)
{
    (void)s; (void)dir; (void)always;
    snprintf(why, whylen, "built without hiredis (run scripts/install-bench-peers, then re-run cmake)");
    return -1;
}

#endif
