/*
 * nats.c — the NATS JetStream peer: nats-server (2.9 in Debian 12) started
 * as our child on 127.0.0.1 with JetStream on (`-js`) and its store in a
 * temporary directory; one stream "EVS" on the subjects "ev.>", file storage,
 * one replica. An evstore stream "s" is the subject "ev.s".
 *
 *  append of 1 event     PUB ev.<stream> <inbox> <n> + the payload; the
 *                        JetStream publish acknowledgement ({"stream":"EVS",
 *                        "seq":N}) comes back on the inbox once the message
 *                        is stored
 *  append of N events    N PUBs written at once, N acks awaited: pipelined,
 *                        NOT atomic (JetStream 2.9 has no atomic batch
 *                        publish; a consumer can see part of a "batch")
 *  full read             an ephemeral pull consumer on "ev.>" (ack none),
 *                        fetched 1,000 at a time (the C client, libnats)
 *  reads of one stream   not measured: JetStream 2.9 has no request that
 *                        returns N messages of one subject; it takes a
 *                        consumer per read (create, fetch, delete) or one
 *                        direct get per message
 *
 * The measured publishes speak the NATS client protocol on raw sockets
 * driven by the load generator's epoll loop, one publish (or one pipelined
 * batch) in flight per connection, like every other system here; libnats
 * (whose connections have their own threads) serves the setup and the full
 * read, where nothing is timed per request. The payload is what evstore's
 * HTTP client sends: {"type":"OrderPlaced","data":<the 200-byte object>}.
 *
 * Durability (read in nats-server v2.9.10's source, server/stream.go and
 * server/filestore.go): every stream's file store is created with
 * AsyncFlush = false and SyncInterval = 2 minutes, hard-coded. "Flush in
 * place" means the message is written to the current block file (a write
 * into the page cache) before the store returns and the ack is sent; fsync
 * happens only in syncBlocks(), every 2 minutes, and not when a block is
 * closed. So an ack survives kill -9 of the server but not a power cut or a
 * kernel crash (up to 2 minutes lost). The `sync_interval` option (and
 * `sync: always`) appeared in 2.10.0. The evstore rows to compare with are
 * therefore `evstored --fsync interval:120000` (write() before the ack,
 * fdatasync every 120 s), not `--fsync always`.
 *
 * Not like-for-like otherwise: no expected-version check per subject in
 * these publishes (JetStream has a header for it), ids are not generated
 * by the server, a subject is not an indexed stream with versions.
 */
#include "peers.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef EVS_BENCH_HAVE_NATS
#include <nats/nats.h>

#define NATS_STREAM "EVS"
#define NATS_SUBJECTS "ev.>"

typedef struct npriv {
    int port;
    char dir[PATH_MAX];
    natsConnection *nc;                    /* libnats: setup and full read */
    jsCtx *js;
} npriv;

int bh_nats_available(void) { return 1; }

static atomic_uint g_inbox_seq;

/* The payload of event variant v: what evstore's HTTP client sends for one event. */
static int payload(char *out, size_t cap, uint64_t v)
{
    return snprintf(out, cap, "{\"type\":\"%s\",\"data\":%s}", BH_EVENT_TYPE, bh_event_data(v));
}

static int add_pub(lg_buf *b, const char *stream, const char *inbox, uint64_t v)
{
    char p[BH_DATA_LEN + 64];
    int n = payload(p, sizeof p, v);
    if (lg_buf_addf(b, "PUB ev.%s %s %d\r\n", stream, inbox, n)) return -1;
    if (lg_buf_add(b, p, (size_t)n)) return -1;
    return lg_buf_add(b, "\r\n", 2);
}

/* Parse what the server sent: acknowledgements (MSG on our inbox) count
 * down c->expect; PING is answered. LG_DONE when every ack is in. */
static int parse(lg_conn *c, void *ud)
{
    (void)ud;
    int done = 0;
    while (c->in.off < c->in.len) {
        char *p = c->in.p + c->in.off, *end = c->in.p + c->in.len;
        char *crlf = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!crlf) break;
        size_t line = (size_t)(crlf - p);
        if (line >= 4 && !memcmp(p, "MSG ", 4)) {
            /* MSG <subject> <sid> [reply] <bytes>: the size is the last token */
            char *sp = crlf;
            while (sp > p && sp[-1] != ' ') sp--;
            unsigned long n = strtoul(sp, NULL, 10);
            if ((size_t)(end - (crlf + 2)) < n + 2) break;          /* the payload is not all here */
            const char *body = crlf + 2;
            if (memmem(body, n, "\"error\"", 7)) c->ok = 0;
            c->in.off += line + 2 + n + 2;
            if (c->expect > 0 && --c->expect == 0) done = 1;
            continue;
        }
        if (line == 4 && !memcmp(p, "PING", 4)) {
            lg_buf_add(&c->out, "PONG\r\n", 6);
            if (lg_conn_flush(c) < 0) return LG_ERR;
        } else if (line >= 4 && !memcmp(p, "-ERR", 4)) {
            fprintf(stderr, "nats: %.*s\n", (int)line, p);
            return LG_ERR;
        }
        /* INFO, PONG, +OK: nothing to do */
        c->in.off += line + 2;
    }
    if (c->in.off == c->in.len) c->in.off = c->in.len = 0;
    return done ? LG_DONE : LG_MORE_IN;
}

/* Blocking: read until parse() says the request's answers are all in. */
static int wait_done(lg_conn *c)
{
    for (;;) {
        int r = parse(c, NULL);
        if (r == LG_DONE) return 0;
        if (r == LG_ERR) return -1;
        if (lg_conn_fill(c) <= 0) return -1;
    }
}

static int conn_open(bh_sys *s, lg_conn *c)
{
    npriv *p = s->priv;
    c->fd = lg_tcp_connect(p->port);
    if (c->fd < 0) return -1;
    char *inbox = malloc(48);
    if (!inbox) return -1;
    snprintf(inbox, 48, "_INBOX.evsbench.%d.%u", (int)getpid(), atomic_fetch_add(&g_inbox_seq, 1));
    c->proto = inbox;
    /* the server speaks first (INFO); then CONNECT, our inbox, and a PING whose
     * PONG says both were processed */
    lg_buf_reset(&c->out);
    lg_buf_addf(&c->out,
                "CONNECT {\"verbose\":false,\"pedantic\":false,\"lang\":\"c\",\"version\":\"evs-bench\",\"protocol\":1,"
                "\"headers\":false,\"no_responders\":false}\r\nSUB %s 1\r\nPING\r\n",
                inbox);
    if (lg_conn_flush(c) != 1) return -1;
    for (;;) {
        char *pong = c->in.len ? memmem(c->in.p, c->in.len, "PONG\r\n", 6) : NULL;
        if (pong) {
            if (memmem(c->in.p, c->in.len, "-ERR", 4)) return -1;
            break;
        }
        if (lg_conn_fill(c) <= 0) return -1;
    }
    c->in.off = c->in.len = 0;
    lg_buf_reset(&c->out);
    lg_set_nonblock(c->fd, 1);
    return 0;
}

static void conn_close(bh_sys *s, lg_conn *c)
{
    (void)s;
    free(c->proto);
    c->proto = NULL;
    lg_conn_close(c);
}

static int issue_append(bh_sys *s, lg_conn *c, const char *stream, int nev)
{
    (void)s;
    lg_buf_reset(&c->out);
    for (int i = 0; i < nev; i++)
        if (add_pub(&c->out, stream, c->proto, c->seq * 7 + (uint64_t)i)) return LG_ERR;
    c->expect = nev;
    c->ok = 1;
    c->nevents = (uint32_t)nev;
    int r = lg_conn_flush(c);
    return r < 0 ? LG_ERR : r == 0 ? LG_MORE_OUT : LG_MORE_IN;
}

static int on_io(bh_sys *s, lg_conn *c, unsigned events)
{
    (void)s;
    return lg_raw_io(c, events, parse, NULL);
}

/* Pipelined publishes, batch by batch, each to a random stream of the read set. */
static int fill(bh_sys *s, uint64_t nevents, int batch, uint32_t nstreams, const char *prefix, uint64_t seed)
{
    lg_conn c;
    memset(&c, 0, sizeof c);
    c.fd = -1;
    if (conn_open(s, &c) != 0) { conn_close(s, &c); return -1; }
    lg_set_nonblock(c.fd, 0);
    uint64_t rng = seed;
    int rc = 0;
    char stream[96];
    for (uint64_t done = 0; done < nevents && rc == 0;) {
        lg_buf_reset(&c.out);
        int n = (int)(nevents - done < (uint64_t)batch ? nevents - done : (uint64_t)batch);
        for (int i = 0; i < n; i++) {
            snprintf(stream, sizeof stream, "%s%u", prefix, (unsigned)lg_rand_below(&rng, nstreams));
            add_pub(&c.out, stream, c.proto, done + (uint64_t)i);
        }
        c.expect = n;
        c.ok = 1;
        if (lg_conn_flush(&c) != 1 || wait_done(&c) != 0 || !c.ok) rc = -1;
        done += (uint64_t)n;
    }
    conn_close(s, &c);
    return rc;
}

static int full_read(bh_sys *s, uint64_t *events, uint64_t *bytes)
{
    npriv *p = s->priv;
    *events = *bytes = 0;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, p->js, NATS_STREAM, NULL, &jerr) != NATS_OK || !si) return -1;
    uint64_t total = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Config.AckPolicy = js_AckNone;
    so.Config.DeliverPolicy = js_DeliverAll;
    natsSubscription *sub = NULL;
    if (js_PullSubscribe(&sub, p->js, NATS_SUBJECTS, NULL, NULL, &so, &jerr) != NATS_OK) {
        fprintf(stderr, "nats: pull subscribe: %s\n", nats_GetLastError(NULL));
        return -1;
    }
    int rc = 0, idle = 0;
    while (*events < total && idle < 3) {
        natsMsgList list = {0};
        natsStatus st = natsSubscription_Fetch(&list, sub, 1000, 5000, &jerr);
        if (st != NATS_OK && st != NATS_TIMEOUT) { rc = -1; break; }
        idle = list.Count ? 0 : idle + 1;
        for (int i = 0; i < list.Count; i++) {
            natsMsg *m = list.Msgs[i];
            const char *rp = natsMsg_GetReply(m);
            *bytes += (uint64_t)natsMsg_GetDataLength(m) + strlen(natsMsg_GetSubject(m)) + (rp ? strlen(rp) : 0);
        }
        *events += (uint64_t)list.Count;
        natsMsgList_Destroy(&list);
    }
    if (*events < total) rc = -1;
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return rc;
}

static void stop(bh_sys *s)
{
    npriv *p = s->priv;
    if (p) {
        if (p->js) jsCtx_Destroy(p->js);
        if (p->nc) natsConnection_Destroy(p->nc);
    }
    if (s->pid > 0) bh_stop_pid(s->pid, SIGTERM, 15000);
    s->pid = 0;
    free(p);
    s->priv = NULL;
}

/* The server binary: $EVS_BENCH_NATS_SERVER if set (another version, or a
 * path that does not exist to check the skip), else the Debian package's. */
static int find_server(char *out, size_t cap)
{
    const char *env = getenv("EVS_BENCH_NATS_SERVER");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return access(out, X_OK);
    }
    static const char *const where[] = {"/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"};
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++)
        if (access(where[i], X_OK) == 0) {
            snprintf(out, cap, "%s", where[i]);
            return 0;
        }
    return -1;
}

/* Connect libnats and create the stream; retried while JetStream starts. */
static int setup(npriv *p)
{
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", p->port);
    if (natsConnection_ConnectTo(&p->nc, url) != NATS_OK) return -1;
    if (natsConnection_JetStream(&p->js, p->nc, NULL) != NATS_OK) return -1;
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[] = {NATS_SUBJECTS};
    cfg.Name = NATS_STREAM;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Retention = js_LimitsPolicy;
    cfg.Replicas = 1;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus st = js_AddStream(&si, p->js, &cfg, NULL, &jerr);
    if (si) jsStreamInfo_Destroy(si);
    return st == NATS_OK ? 0 : -1;
}

int bh_nats_start(bh_sys *s, const char *dir, char *why, size_t whylen)
{
    char bin[PATH_MAX];
    if (find_server(bin, sizeof bin) != 0) {
        snprintf(why, whylen, "nats-server is not installed (scripts/install-bench-peers; or $EVS_BENCH_NATS_SERVER)");
        return -1;
    }
    npriv *p = calloc(1, sizeof *p);
    if (!p) return -1;
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    mkdir(dir, 0700);
    char log[PATH_MAX + 16], port[16], store[PATH_MAX + 16];
    snprintf(log, sizeof log, "%s/nats.log", dir);
    snprintf(store, sizeof store, "%s/store", dir);
    for (int attempt = 0; attempt < 5 && !s->pid; attempt++) {
        p->port = bh_free_port();
        snprintf(port, sizeof port, "%d", p->port);
        /* no monitoring port, no cluster: one server, JetStream on, its store in our directory */
        char *argv[] = {bin, "-a", "127.0.0.1", "-p", port, "-js", "-sd", store, "-n", "evs-bench", NULL};
        pid_t pid = bh_spawn(argv, log, NULL);
        if (pid < 0) break;
        for (int i = 0; i < 500; i++) {     /* up to 5 s */
            if (setup(p) == 0) { s->pid = pid; break; }
            if (p->js) { jsCtx_Destroy(p->js); p->js = NULL; }
            if (p->nc) { natsConnection_Destroy(p->nc); p->nc = NULL; }
            if (bh_child_exited(pid)) break;
            lg_sleep_ns(10000000u);
        }
        if (!s->pid) bh_stop_pid(pid, SIGKILL, 1000);
    }
    if (!s->pid) {
        snprintf(why, whylen, "nats-server did not start with JetStream, or the stream could not be created (see %.300s)", log);
        free(p);
        return -1;
    }
    s->name = "nats";
    s->priv = p;
    s->inproc = 0;
    s->tree = 0;
    s->conn_open = conn_open;
    s->conn_close = conn_close;
    s->issue_append = issue_append;
    s->issue_read = NULL;                  /* see the top of this file */
    s->on_io = on_io;
    s->fill = fill;
    s->full_read = full_read;
    s->stop = stop;
    snprintf(s->config, sizeof s->config,
             "nats-server 2.9 -js, file-storage stream R1: ack after write(), fsync every 2 min (hard-coded in 2.9)");
    return 0;
}

#else  /* no libnats */

int bh_nats_available(void) { return 0; }
int bh_nats_start(bh_sys *s, const char *dir, char *why, size_t whylen)
{
    (void)s; (void)dir;
    snprintf(why, whylen, "built without libnats (run scripts/install-bench-peers, then re-run cmake)");
    return -1;
}

#endif
