/*
 * bench_http — evstored over HTTP, measured against the machine's own limits
 * and against peers run on the same machine in the same run (SPEC §8).
 *
 * It starts build/evstored itself (a child on a free 127.0.0.1 port, a fresh
 * data directory, --fsync always), then, per system:
 *
 *   single    durable single-event appends, closed loop, 1/16/64/256 clients
 *   open      the same at a fixed rate (open loop: latency from the intended
 *             send time, no coordinated omission)
 *   batch     durable appends of 10/100/1000 events per request
 *   fill      a read set: multi-stream batches of 1,000 into N/200 streams
 *   fullread  the whole global log, one client, twice
 *   streams   100 events of a random stream (events of a stream are scattered)
 *   watch     (evstore) 1,000 watchers of GET /events?watch=true, appends at a
 *             steady rate, latency from each event's commit `time`
 *   mixed     80 % reads of the last 10 events of a stream, 20 % appends
 *
 * Peers (scripts/install-bench-peers installs them; each is optional at
 * build time and at run time): Redis Streams (appendfsync always, then
 * everysec), PostgreSQL (synchronous_commit=on), SQLite (WAL,
 * synchronous=FULL, in process), NATS JetStream (file storage; its 2.9
 * server acks after write() and fsyncs every 2 minutes, so its append rows
 * are set against a second evstored run with the same durability,
 * `--fsync interval:120000`, labelled evstore-interval; appends and the full
 * read only, see peers/nats.c). They run on loopback from temporary
 * directories as our children; nothing of the system's own services is
 * touched. Every figure carries the server's CPU time per event, its memory,
 * and the CPU the client and everything else used meanwhile (the machine is
 * shared).
 *
 * Usage: bench_http [--quick] [--json FILE] [--peers redis,postgres,sqlite,nats|none]
 *        [--only single,open,batch,fill,fullread,streams,watch,mixed] ... (--help)
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "loadgen.h"
#include "peers/peers.h"

#ifndef EVS_BENCH_EVSTORED
#define EVS_BENCH_EVSTORED "build/evstored"
#endif
#ifndef EVS_BENCH_SOURCE_DIR
#define EVS_BENCH_SOURCE_DIR "."
#endif

/* ------------------------------------------------------------------------ */
/* options                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct opts {
    int quick;
    double warmup_s, seconds;              /* per row */
    const char *json;
    const char *dir;                       /* parent of the temporary directory */
    const char *evstored;
    char peers[128];
    char only[256];
    int clients[8], nclients;
    int batches[8], nbatches;
    int batch_clients;
    uint64_t fill;
    int watchers;
    double watch_rates[4];
    int nwatch_rates;
    double watch_seconds;
    double open_rate;                      /* 0: half of evstore's 64-client closed-loop rate */
    int server_threads;
    int keep;
    int skip_limits;
    unsigned max_seconds;
    const char *user;
    uint64_t seed;
} opts;

static opts O;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_http [options]\n"
            "  --quick               a one-minute smoke run (1 s rows, fewer rows, smaller read set)\n"
            "  --json FILE           machine-readable results (default results-http.json next to the binary)\n"
            "  --dir DIR             where the temporary data directories go (default $TMPDIR or /tmp);\n"
            "                        the machine limits are measured there too\n"
            "  --evstored PATH       the server to measure (default %s)\n"
            "  --peers LIST          redis,postgres,sqlite,nats (default: those built in) or none;\n"
            "                        nats also starts a second evstored with --fsync interval:120000\n"
            "                        (JetStream 2.9's durability) for its rows to be compared with\n"
            "  --only LIST           single,open,batch,fill,fullread,streams,watch,mixed\n"
            "  --clients LIST        single-append client counts (default 1,16,64,256)\n"
            "  --batches LIST        events per request (default 10,100,1000)\n"
            "  --batch-clients N     clients for batched appends (default 16)\n"
            "  --fill N              events in the read set (default 300000, quick 100000)\n"
            "  --watchers N          concurrent watchers (default 1000)\n"
            "  --watch-rates LIST    appends/s during the watch test (default 10,50; quick 50)\n"
            "  --watch-seconds S     appending time of each watch row (default 4, quick 2)\n"
            "  --open-rate R         open-loop rate (default: half of evstore's 64-client closed-loop rate)\n"
            "  --seconds S           measured seconds per row (default 2, quick 1), after a warm-up of 0.5 s (quick 0.3)\n"
            "  --server-threads N    evstored --threads (default 2)\n"
            "  --user NAME           unprivileged user for PostgreSQL (default evsbench)\n"
            "  --max-seconds N       hard bound on the whole run (default 900)\n"
            "  --keep                keep the temporary directories\n"
            "  --skip-limits         do not measure the machine's limits (for quick experiments only)\n",
            EVS_BENCH_EVSTORED);
}

/* Copy a string, cut to fit. */
static void scopy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static int parse_list_int(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static int wants(const char *what)
{
    if (!O.only[0]) return strcmp(what, "none") != 0;
    char buf[300];
    snprintf(buf, sizeof buf, ",%s,", O.only);
    char key[64];
    snprintf(key, sizeof key, ",%s,", what);
    return strstr(buf, key) != NULL;
}

static int peer_wanted(const char *name)
{
    char buf[160], key[64];
    snprintf(buf, sizeof buf, ",%s,", O.peers);
    snprintf(key, sizeof key, ",%s,", name);
    return strstr(buf, key) != NULL;
}

/* ------------------------------------------------------------------------ */
/* stopping, cleanup                                                        */
/* ------------------------------------------------------------------------ */

static volatile int g_stop;
static char g_base[PATH_MAX];

static void on_signal(int sig)
{
    if (g_stop || sig == SIGQUIT) {
        bh_children_kill();
        _exit(130);
    }
    g_stop = 1;
    if (sig == SIGALRM) {
        static const char m[] = "\nbench_http: --max-seconds reached, stopping\n";
        ssize_t w = write(2, m, sizeof m - 1);
        (void)w;
        alarm(60);                         /* and if stopping hangs, the next one is final */
    }
}

/* ------------------------------------------------------------------------ */
/* formatting                                                               */
/* ------------------------------------------------------------------------ */

static const char *fmt_dur(char *b, size_t cap, uint64_t ns)
{
    if (!ns) snprintf(b, cap, "—");
    else if (ns < 1000) snprintf(b, cap, "%llu ns", (unsigned long long)ns);
    else if (ns < 1000000) snprintf(b, cap, "%.0f µs", (double)ns / 1e3);
    else if (ns < 10000000) snprintf(b, cap, "%.2f ms", (double)ns / 1e6);
    else if (ns < 1000000000) snprintf(b, cap, "%.1f ms", (double)ns / 1e6);
    else snprintf(b, cap, "%.2f s", (double)ns / 1e9);
    return b;
}

static const char *fmt_num(char *b, size_t cap, double v)
{
    if (!isfinite(v)) { snprintf(b, cap, "—"); return b; }
    char t[64];
    snprintf(t, sizeof t, "%.0f", v);
    size_t n = strlen(t), o = 0, lead = (t[0] == '-');
    for (size_t i = 0; i < n && o + 2 < cap; i++) {
        if (i > lead && (n - i) % 3 == 0) b[o++] = ',';
        b[o++] = t[i];
    }
    b[o] = 0;
    return b;
}

static const char *fmt_ratio(char *b, size_t cap, double v)
{
    if (!isfinite(v) || v <= 0) snprintf(b, cap, "—");
    else if (v >= 100) snprintf(b, cap, "%.0f ×", v);
    else if (v >= 10) snprintf(b, cap, "%.1f ×", v);
    else snprintf(b, cap, "%.2f ×", v);
    return b;
}

/* ------------------------------------------------------------------------ */
/* the machine and its limits                                               */
/* ------------------------------------------------------------------------ */

typedef struct machine {
    long nproc;
    char cpu[128], kernel[256], fstype[64], mount[256], device[256];
    uint64_t mem_kib;
    char source[128];
    /* limits, measured now on the filesystem of the data */
    uint64_t fsync_p50, fsync_p99, fsync_p999, fsync_max;
    double fsync_mean;
    double seq_mb_s, seq_write_mb_s, seq_sync_s, cache_read_mb_s;
    double others_cores_at_start;
} machine;

static machine M;

static void probe_machine(const char *dir)
{
    M.nproc = sysconf(_SC_NPROCESSORS_ONLN);
    FILE *f = fopen("/proc/cpuinfo", "re");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) scopy(M.cpu, sizeof M.cpu, c + 2);
            M.cpu[strcspn(M.cpu, "\n")] = 0;
            break;
        }
    if (f) fclose(f);
    f = fopen("/proc/meminfo", "re");
    if (f) {
        unsigned long long kb = 0;
        if (fscanf(f, "MemTotal: %llu", &kb) == 1) M.mem_kib = kb;
        fclose(f);
    }
    struct utsname u;
    if (uname(&u) == 0) snprintf(M.kernel, sizeof M.kernel, "%s %s %s", u.sysname, u.release, u.machine);
    /* the mount holding dir: the longest mount point that prefixes its real path */
    char real[PATH_MAX];
    if (!realpath(dir, real)) scopy(real, sizeof real, dir);
    f = fopen("/proc/self/mounts", "re");
    size_t best = 0;
    while (f && fgets(line, sizeof line, f)) {
        char dev[256], mnt[256], type[64];
        if (sscanf(line, "%255s %255s %63s", dev, mnt, type) != 3) continue;
        size_t l = strlen(mnt);
        if (!strncmp(real, mnt, l) && (real[l] == '/' || real[l] == 0 || l == 1) && l >= best) {
            best = l;
            scopy(M.mount, sizeof M.mount, mnt);
            scopy(M.fstype, sizeof M.fstype, type);
            scopy(M.device, sizeof M.device, dev);
        }
    }
    if (f) fclose(f);
    char cmd[PATH_MAX + 128];
    snprintf(cmd, sizeof cmd, "git -C '%s' rev-parse --short=12 HEAD 2>/dev/null", EVS_BENCH_SOURCE_DIR);
    f = popen(cmd, "r");
    if (f) {
        if (fgets(M.source, sizeof M.source, f)) M.source[strcspn(M.source, "\n")] = 0;
        pclose(f);
    }
    snprintf(cmd, sizeof cmd, "git -C '%s' status --porcelain -- src include server 2>/dev/null | wc -l", EVS_BENCH_SOURCE_DIR);
    f = popen(cmd, "r");
    if (f && M.source[0]) {
        int n = 0;
        if (fscanf(f, "%d", &n) == 1 && n > 0) {
            size_t l = strlen(M.source);
            snprintf(M.source + l, sizeof M.source - l, " + %d uncommitted files under src/ include/ server/", n);
        }
    }
    if (f) pclose(f);
    if (!M.source[0]) snprintf(M.source, sizeof M.source, "unknown");
}

static void measure_limits(const char *dir)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/limits.bin", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) { perror("limits"); return; }
    /* fsync latency: append 4 KiB at the end of a file + fdatasync, like a log commit */
    char block[4096];
    uint64_t rng = 7;
    for (size_t i = 0; i < sizeof block; i += 8) {
        uint64_t v = lg_rand(&rng);
        memcpy(block + i, &v, 8);
    }
    int rounds = O.quick ? 200 : 500;
    lg_hist *h = malloc(sizeof *h);
    lg_hist_init(h);
    off_t off = 0;
    for (int i = -20; i < rounds && !g_stop; i++) {
        uint64_t t = lg_now_ns();
        if (pwrite(fd, block, sizeof block, off) != (ssize_t)sizeof block || fdatasync(fd) != 0) { perror("fsync probe"); break; }
        off += (off_t)sizeof block;
        if (i >= 0) lg_hist_add(h, lg_now_ns() - t);
    }
    M.fsync_p50 = lg_hist_quantile(h, 0.5);
    M.fsync_p99 = lg_hist_quantile(h, 0.99);
    M.fsync_p999 = lg_hist_quantile(h, 0.999);
    M.fsync_max = h->max;
    M.fsync_mean = lg_hist_mean(h);
    free(h);
    /* sequential write bandwidth: 1 MiB blocks of incompressible data with an
     * fdatasync every 32 MiB (so the page cache cannot absorb the test: this
     * is the disk's sustained rate, as a log writer sees it) */
    if (ftruncate(fd, 0) != 0) {}
    size_t mib = O.quick ? 256 : 1024;
    char *big = malloc(1u << 20);
    for (size_t i = 0; i < (1u << 20); i += 8) {
        uint64_t v = lg_rand(&rng);
        memcpy(big + i, &v, 8);
    }
    uint64_t t0 = lg_now_ns(), sync_ns = 0;
    for (size_t i = 0; i < mib && !g_stop; i++) {
        big[0] = (char)i;
        if (write(fd, big, 1u << 20) != (ssize_t)(1u << 20)) { perror("write probe"); break; }
        if (i % 32 == 31 && i + 1 < mib) {
            uint64_t s0 = lg_now_ns();
            if (fdatasync(fd) != 0) perror("fdatasync");
            sync_ns += lg_now_ns() - s0;
        }
    }
    uint64_t t1 = lg_now_ns();
    if (fdatasync(fd) != 0) perror("fdatasync");
    uint64_t t2 = lg_now_ns();
    M.seq_mb_s = (double)mib * 1048576.0 / ((double)(t2 - t0) / 1e9) / 1e6;
    M.seq_write_mb_s = (double)mib * 1048576.0 / ((double)(t1 - t0 - sync_ns) / 1e9) / 1e6;
    M.seq_sync_s = (double)(t2 - t1 + sync_ns) / 1e9;
    /* page-cache read of the same file: best of two passes */
    for (int pass = 0; pass < 2; pass++) {
        uint64_t r0 = lg_now_ns();
        size_t got = 0;
        for (off_t o = 0;; o += 1 << 20) {
            ssize_t k = pread(fd, big, 1u << 20, o);
            if (k <= 0) break;
            got += (size_t)k;
        }
        double mbs = (double)got / ((double)(lg_now_ns() - r0) / 1e9) / 1e6;
        if (mbs > M.cache_read_mb_s) M.cache_read_mb_s = mbs;
    }
    free(big);
    close(fd);
    unlink(path);
}

/* ------------------------------------------------------------------------ */
/* evstore over HTTP                                                        */
/* ------------------------------------------------------------------------ */

typedef struct epriv {
    int port;
    char dir[PATH_MAX];
    lg_buf bodies[8][8];                   /* [slot of nev][variant] */
    int nevs[8];
} epriv;

static const lg_buf *ev_body(epriv *p, int nev, uint64_t variant)
{
    int slot = -1;
    for (int i = 0; i < 8; i++)
        if (p->nevs[i] == nev) { slot = i; break; }
    if (slot < 0) {
        for (int i = 0; i < 8; i++)
            if (!p->nevs[i]) { slot = i; break; }
        if (slot < 0) slot = 7;
        p->nevs[slot] = nev;
        for (int v = 0; v < 8; v++) {
            lg_buf *b = &p->bodies[slot][v];
            lg_buf_reset(b);
            if (nev > 1) lg_buf_add(b, "[", 1);
            for (int i = 0; i < nev; i++)
                lg_buf_addf(b, "%s{\"type\":\"%s\",\"data\":%s}", i ? "," : "", BH_EVENT_TYPE,
                            bh_event_data((uint64_t)v * 131u + (uint64_t)i));
            if (nev > 1) lg_buf_add(b, "]", 1);
        }
    }
    return &p->bodies[slot][variant % 8];
}

static void count_lines(void *ud, const char *p, size_t n)
{
    lg_conn *c = ud;
    if (!c->expect) return;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))); p++) c->counter++;
}

static int e_conn_open(bh_sys *s, lg_conn *c)
{
    epriv *p = s->priv;
    c->fd = lg_tcp_connect(p->port);
    if (c->fd < 0) return -1;
    lg_set_nonblock(c->fd, 1);
    lg_http_begin(&c->http, count_lines, c);
    return 0;
}

static void e_conn_close(bh_sys *s, lg_conn *c)
{
    (void)s;
    lg_conn_close(c);
}

static int e_send(lg_conn *c)
{
    int r = lg_conn_flush(c);
    return r < 0 ? LG_ERR : r == 0 ? LG_MORE_OUT : LG_MORE_IN;
}

static int e_issue_append(bh_sys *s, lg_conn *c, const char *stream, int nev)
{
    const lg_buf *b = ev_body(s->priv, nev, c->seq);
    lg_buf_reset(&c->out);
    lg_buf_addf(&c->out,
                "POST /streams/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "Content-Length: %zu\r\n\r\n",
                stream, b->len);
    lg_buf_add(&c->out, b->p, b->len);
    c->nevents = (uint32_t)nev;
    c->expect = 0;
    return e_send(c);
}

static int e_issue_read(bh_sys *s, lg_conn *c, const char *stream, int limit, int backward)
{
    (void)s;
    lg_buf_reset(&c->out);
    lg_buf_addf(&c->out, "GET /streams/%s?limit=%d%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", stream, limit,
                backward ? "&direction=backward" : "");
    c->expect = 1;
    c->counter = 0;
    return e_send(c);
}

static int e_on_io(bh_sys *s, lg_conn *c, unsigned events)
{
    (void)s;
    int r = lg_raw_io(c, events, lg_http_parse_conn, NULL);
    if (r == LG_DONE && c->expect) c->nevents = (uint32_t)c->counter;
    return r;
}

/* One blocking request on a fresh connection; the body goes to on_body. */
static int e_request(int port, const char *req, size_t len, lg_body_fn on_body, void *ud)
{
    int fd = lg_tcp_connect(port);
    if (fd < 0) return -1;
    lg_http h;
    lg_http_begin(&h, on_body, ud);
    int st = lg_http_roundtrip(fd, req, len, &h);
    close(fd);
    return st;
}

static void to_buf(void *ud, const char *p, size_t n) { lg_buf_add(ud, p, n); }

static int e_get_json_u64(int port, const char *path, const char *key, uint64_t *out)
{
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    lg_buf b = {0};
    int st = e_request(port, req, (size_t)n, to_buf, &b);
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *v = b.p ? strstr(b.p, k) : NULL;
    int rc = st == 200 && v ? 0 : -1;
    if (v) *out = strtoull(v + strlen(k), NULL, 10);
    lg_buf_free(&b);
    return rc;
}

static int e_stats2(int port, uint64_t *fsyncs, uint64_t *appended)
{
    static const char req[] = "GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    lg_buf b = {0};
    int st = e_request(port, req, sizeof req - 1, to_buf, &b);
    const char *f = b.p ? strstr(b.p, "\"fsyncs\":") : NULL, *a = b.p ? strstr(b.p, "\"appended_events\":") : NULL;
    if (f) *fsyncs = strtoull(f + 9, NULL, 10);
    if (a) *appended = strtoull(a + 18, NULL, 10);
    lg_buf_free(&b);
    return st == 200 && f && a ? 0 : -1;
}

static int e_fill(bh_sys *s, uint64_t nevents, int batch, uint32_t nstreams, const char *prefix, uint64_t seed)
{
    epriv *p = s->priv;
    int fd = lg_tcp_connect(p->port);
    if (fd < 0) return -1;
    uint64_t rng = seed;
    lg_buf body = {0}, req = {0};
    int rc = 0;
    for (uint64_t done = 0; done < nevents && rc == 0 && !g_stop;) {
        int n = (int)(nevents - done < (uint64_t)batch ? nevents - done : (uint64_t)batch);
        lg_buf_reset(&body);
        lg_buf_add(&body, "[", 1);
        for (int i = 0; i < n; i++)
            lg_buf_addf(&body, "%s{\"stream\":\"%s%u\",\"type\":\"%s\",\"data\":%s}", i ? "," : "", prefix,
                        (unsigned)lg_rand_below(&rng, nstreams), BH_EVENT_TYPE, bh_event_data(done + (uint64_t)i));
        lg_buf_add(&body, "]", 1);
        lg_buf_reset(&req);
        lg_buf_addf(&req, "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                    body.len);
        lg_buf_add(&req, body.p, body.len);
        lg_http h;
        lg_http_begin(&h, NULL, NULL);
        int st = lg_http_roundtrip(fd, req.p, req.len, &h);
        if (st != 201) {
            fprintf(stderr, "evstore fill: HTTP %d\n", st);
            rc = -1;
        }
        done += (uint64_t)n;
    }
    lg_buf_free(&body);
    lg_buf_free(&req);
    close(fd);
    return rc;
}

typedef struct read_count { uint64_t lines, bytes; } read_count;

static void count_read(void *ud, const char *p, size_t n)
{
    read_count *rc = ud;
    rc->bytes += n;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))); p++) rc->lines++;
}

static int e_full_read(bh_sys *s, uint64_t *events, uint64_t *bytes)
{
    epriv *p = s->priv;
    static const char req[] = "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    read_count rc = {0, 0};
    int st = e_request(p->port, req, sizeof req - 1, count_read, &rc);
    *events = rc.lines;
    *bytes = rc.bytes;
    return st == 200 ? 0 : -1;
}

static void e_stop(bh_sys *s)
{
    if (s->pid > 0) bh_stop_pid(s->pid, SIGTERM, 20000);
    s->pid = 0;
    epriv *p = s->priv;
    if (p)
        for (int i = 0; i < 8; i++)
            for (int v = 0; v < 8; v++) lg_buf_free(&p->bodies[i][v]);
    free(p);
    s->priv = NULL;
}

/* fsync: evstored's --fsync value ("always" for the main system; the one
 * matching a peer's durability for a second instance). */
static int evstore_start(bh_sys *s, const char *dir, const char *fsync, char *why, size_t whylen)
{
    if (access(O.evstored, X_OK) != 0) {
        snprintf(why, whylen, "%s is not built (cmake --build build --target evstored)", O.evstored);
        return -1;
    }
    epriv *p = calloc(1, sizeof *p);
    if (!p) return -1;
    scopy(p->dir, sizeof p->dir, dir);
    char log[PATH_MAX + 64], listen[64], threads[16];
    snprintf(log, sizeof log, "%s.log", dir);
    snprintf(threads, sizeof threads, "%d", O.server_threads);
    for (int attempt = 0; attempt < 5 && !s->pid; attempt++) {
        p->port = bh_free_port();
        snprintf(listen, sizeof listen, "127.0.0.1:%d", p->port);
        char *argv[] = {(char *)O.evstored, "--data", p->dir, "--listen", listen, "--fsync", (char *)fsync, "--threads",
                        threads, "--max-connections", "4096", "--log-level", "warn", NULL};
        pid_t pid = bh_spawn(argv, log, NULL);
        if (pid < 0) break;
        for (int i = 0; i < 1000; i++) {      /* up to 10 s */
            uint64_t pos;
            if (e_get_json_u64(p->port, "/health", "position", &pos) == 0) { s->pid = pid; break; }
            if (bh_child_exited(pid)) break;
            lg_sleep_ns(10000000u);
        }
        if (!s->pid) bh_stop_pid(pid, SIGKILL, 1000);
    }
    if (!s->pid) {
        snprintf(why, whylen, "evstored did not start (see %.300s)", log);
        free(p);
        return -1;
    }
    s->name = "evstore";
    s->priv = p;
    s->inproc = 0;
    s->tree = 0;
    s->conn_open = e_conn_open;
    s->conn_close = e_conn_close;
    s->issue_append = e_issue_append;
    s->issue_read = e_issue_read;
    s->on_io = e_on_io;
    s->fill = e_fill;
    s->full_read = e_full_read;
    s->stop = e_stop;
    snprintf(s->config, sizeof s->config, "evstored --fsync %s --threads %d (libmicrohttpd, epoll)", fsync, O.server_threads);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* rows                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct row {
    char wl[16];                           /* workload */
    char sys[24];                          /* system label */
    char cfg[64];                          /* the row's parameters, for people */
    int clients, batch;
    double rate;                           /* open loop / watch: offered events/s */
    double secs;                           /* measured window */
    uint64_t reqs, events, failed, conn_errors, unfinished;
    double ev_s, req_s, mb_s;
    uint64_t p50, p90, p99, p999, max;     /* ns; of kind 0 (appends, or the only kind) */
    double mean;
    uint64_t r_reqs, r_p50, r_p99, r_p999, r_max;   /* mixed: the reads */
    double cpu_us_ev;                      /* server CPU per event (per delivery for watch) */
    double srv_cores, cli_cores, oth_cores;
    double mem_mib;
    double extra;                          /* watch: events missed; fullread: pass */
    double ev_per_fsync, fsync_s;          /* evstore appends: group commit, from /stats */
    char threads[160];                     /* the server's busiest threads, cores each */
    uint64_t fs_p50;                       /* fsync probe right before the row's group (ns) */
    double fs_mean;
    char note[400];
} row;

static row *g_rows;
static size_t g_nrows, g_caprows;

static row *new_row(const char *wl, const char *sys)
{
    if (g_nrows == g_caprows) {
        g_caprows = g_caprows ? g_caprows * 2 : 64;
        g_rows = realloc(g_rows, g_caprows * sizeof *g_rows);
    }
    row *r = &g_rows[g_nrows++];
    memset(r, 0, sizeof *r);
    scopy(r->wl, sizeof r->wl, wl);
    scopy(r->sys, sizeof r->sys, sys);
    return r;
}

typedef struct snap {
    uint64_t wall, srv, self, busy, total;
    uint64_t fsyncs, appended;             /* evstore: from /stats */
    bh_thread th[32];                      /* the server's threads */
    int nth;
} snap;

static int e_stats2(int port, uint64_t *fsyncs, uint64_t *appended);

static uint64_t self_cpu_ns(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (uint64_t)ru.ru_utime.tv_sec * 1000000000u + (uint64_t)ru.ru_utime.tv_usec * 1000u +
           (uint64_t)ru.ru_stime.tv_sec * 1000000000u + (uint64_t)ru.ru_stime.tv_usec * 1000u;
}

static void snap_take(snap *s, bh_sys *sys)
{
    s->wall = lg_now_ns();
    s->srv = sys && !sys->inproc ? bh_cpu_ns(sys->pid, sys->tree) : sys ? self_cpu_ns(RUSAGE_THREAD) : 0;
    s->self = self_cpu_ns(RUSAGE_SELF);
    bh_machine_jiffies(&s->busy, &s->total);
    s->fsyncs = s->appended = 0;
    s->nth = sys && !sys->inproc && !sys->tree ? bh_threads(sys->pid, s->th, 32) : 0;
    if (sys && !strcmp(sys->name, "evstore")) e_stats2(((epriv *)sys->priv)->port, &s->fsyncs, &s->appended);
}

/* Fill a row's CPU columns from two snapshots; per = events (or deliveries). */
static void snap_cpu(row *r, const snap *a, const snap *b, bh_sys *sys, uint64_t per)
{
    double wall = (double)(b->wall - a->wall);
    if (wall <= 0) return;
    double srv = b->srv > a->srv ? (double)(b->srv - a->srv) : 0, self = (double)(b->self - a->self);
    r->srv_cores = srv / wall;
    r->cli_cores = sys && sys->inproc ? 0 : self / wall;
    double busy = b->total > a->total ? (double)(b->busy - a->busy) / (double)(b->total - a->total) * (double)M.nproc : 0;
    r->oth_cores = busy - r->srv_cores - (sys && sys->inproc ? self / wall - r->srv_cores : r->cli_cores);
    if (sys && sys->inproc) r->oth_cores = busy - self / wall;
    if (r->oth_cores < 0) r->oth_cores = 0;
    r->cpu_us_ev = per ? srv / 1e3 / (double)per : 0;
    /* per thread: which one is saturated */
    typedef struct { const char *name; double cores; } tcores;
    tcores t[32];
    int nt = 0;
    for (int i = 0; i < b->nth; i++)
        for (int j = 0; j < a->nth; j++)
            if (a->th[j].tid == b->th[i].tid && b->th[i].cpu_ns >= a->th[j].cpu_ns) {
                t[nt].name = b->th[i].name;
                t[nt].cores = (double)(b->th[i].cpu_ns - a->th[j].cpu_ns) / wall;
                nt++;
            }
    for (int i = 1; i < nt; i++)               /* busiest first */
        for (int j = i; j > 0 && t[j].cores > t[j - 1].cores; j--) {
            tcores x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    r->threads[0] = 0;
    for (int i = 0; i < nt && i < 5; i++) {
        size_t l = strlen(r->threads);
        snprintf(r->threads + l, sizeof r->threads - l, "%s%s %.2f", i ? ", " : "", t[i].name, t[i].cores);
    }
    if (b->fsyncs > a->fsyncs) {
        r->ev_per_fsync = (double)(b->appended - a->appended) / (double)(b->fsyncs - a->fsyncs);
        r->fsync_s = (double)(b->fsyncs - a->fsyncs) / (wall / 1e9);
    }
}

static double sys_mem_mib(bh_sys *s)
{
    if (s->mem_kib) return (double)s->mem_kib(s) / 1024.0;
    return (double)bh_mem_kib(s->pid, s->tree) / 1024.0;
}

static void fill_latency(row *r, const lg_hist *h)
{
    r->p50 = lg_hist_quantile(h, 0.5);
    r->p90 = lg_hist_quantile(h, 0.9);
    r->p99 = lg_hist_quantile(h, 0.99);
    r->p999 = lg_hist_quantile(h, 0.999);
    r->max = h->n ? h->max : 0;
    r->mean = lg_hist_mean(h);
}

static void print_row_line(const row *r)
{
    char a[32], b[32], c[32], d[32];
    printf("  %-8s %-16s %-28s %12s ev/s  p50 %-9s p99 %-9s max %-9s  %.1f µs CPU/ev  srv %.2f cli %.2f oth %.2f cores  %.0f MiB%s%s\n",
           r->wl, r->sys, r->cfg, fmt_num(a, sizeof a, r->ev_s), fmt_dur(b, sizeof b, r->p50), fmt_dur(c, sizeof c, r->p99),
           fmt_dur(d, sizeof d, r->max), r->cpu_us_ev, r->srv_cores, r->cli_cores, r->oth_cores, r->mem_mib,
           r->failed || r->conn_errors ? "  FAILURES" : "", r->note[0] ? "" : "");
    if (r->fs_p50) printf("           fsync just before: p50 %s, mean %s\n", fmt_dur(a, sizeof a, r->fs_p50), fmt_dur(b, sizeof b, (uint64_t)r->fs_mean));
    if (r->ev_per_fsync > 0) printf("           group commit: %.1f events per fsync, %.0f fsyncs/s\n", r->ev_per_fsync, r->fsync_s);
    if (r->threads[0]) printf("           server threads (cores): %s\n", r->threads);
    if (r->note[0]) printf("           note: %s\n", r->note);
    fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* generic workloads                                                        */
/* ------------------------------------------------------------------------ */

enum { OP_APPEND, OP_READ, OP_MIXED };

typedef struct workload {
    bh_sys *sys;
    int op;
    int batch;
    int limit, backward;
    int read_pct;
    char tag[24];                          /* appends: stream names "<tag>-<conn>-<k>" */
    const char *rprefix;                   /* reads: "<rprefix><k>", k < rstreams */
    uint32_t rstreams;
} workload;

static int wl_issue(lg_conn *c, void *ud)
{
    workload *w = ud;
    char st[96];
    int op = w->op;
    if (op == OP_MIXED) op = (int)lg_rand_below(&c->rng, 100) < w->read_pct ? OP_READ : OP_APPEND;
    if (op == OP_APPEND) {
        snprintf(st, sizeof st, "%s-%d-%u", w->tag, c->id, (unsigned)(c->seq % 100));
        c->kind = 0;
        return w->sys->issue_append(w->sys, c, st, w->batch);
    }
    snprintf(st, sizeof st, "%s%u", w->rprefix, (unsigned)lg_rand_below(&c->rng, w->rstreams));
    c->kind = w->op == OP_MIXED ? 1 : 0;
    return w->sys->issue_read(w->sys, c, st, w->limit, w->backward);
}

static int wl_on_io(lg_conn *c, void *ud, unsigned events)
{
    workload *w = ud;
    return w->sys->on_io(w->sys, c, events);
}

typedef struct mark_ctx { bh_sys *sys; snap s[2]; } mark_ctx;

static void mark(void *arg, int which)
{
    mark_ctx *m = arg;
    snap_take(&m->s[which], m->sys);
}

static lg_run_cfg base_cfg(void)
{
    lg_run_cfg c;
    memset(&c, 0, sizeof c);
    c.warmup_ns = (uint64_t)(O.warmup_s * 1e9);
    c.measure_ns = (uint64_t)(O.seconds * 1e9);
    c.drain_ns = 10000000000ull;
    c.stop = &g_stop;
    return c;
}

/* Run one row on a server system. */
static void run_net(row *r, workload *w, int clients, int open_loop, double rate)
{
    bh_sys *s = w->sys;
    s->want_batch = w->batch;
    lg_conn *cs = calloc((size_t)clients, sizeof *cs);
    int failed_open = 0;
    for (int i = 0; i < clients; i++) {
        cs[i].fd = -1;
        cs[i].id = i;
        cs[i].rng = O.seed * 7919u + (uint64_t)i + 1;
        if (s->conn_open(s, &cs[i]) != 0) { cs[i].dead = 1; failed_open++; }
    }
    lg_run_cfg cfg = base_cfg();
    cfg.open_loop = open_loop;
    cfg.rate = rate;
    mark_ctx mc = {s, {{0}, {0}}};
    cfg.mark = mark;
    cfg.mark_arg = &mc;
    lg_result res;
    lg_result_init(&res);
    if (failed_open < clients) lg_run(&cfg, cs, clients, &(lg_ops){wl_issue, wl_on_io}, w, &res);
    r->mem_mib = sys_mem_mib(s);
    for (int i = 0; i < clients; i++) s->conn_close(s, &cs[i]);
    free(cs);
    r->clients = clients;
    r->batch = w->batch;
    r->rate = rate;
    r->secs = (double)res.window_ns / 1e9;
    r->reqs = res.reqs[0] + res.reqs[1];
    r->events = res.events[0] + res.events[1];
    r->failed = res.failed;
    r->conn_errors = res.conn_errors + (uint64_t)failed_open;
    r->unfinished = res.unfinished;
    if (r->secs > 0) {
        r->ev_s = (double)r->events / r->secs;
        r->req_s = (double)r->reqs / r->secs;
    }
    fill_latency(r, res.hist[0]);
    if (w->op == OP_MIXED) {
        r->r_reqs = res.reqs[1];
        r->r_p50 = lg_hist_quantile(res.hist[1], 0.5);
        r->r_p99 = lg_hist_quantile(res.hist[1], 0.99);
        r->r_p999 = lg_hist_quantile(res.hist[1], 0.999);
        r->r_max = res.hist[1]->n ? res.hist[1]->max : 0;
    }
    if (mc.s[1].wall > mc.s[0].wall) snap_cpu(r, &mc.s[0], &mc.s[1], s, r->events);
    if (failed_open) snprintf(r->note, sizeof r->note, "%d of %d connections failed to open", failed_open, clients);
    if (res.unfinished)
        snprintf(r->note, sizeof r->note, "%llu requests due in the window were unanswered at the end (counted with their age)",
                 (unsigned long long)res.unfinished);
    lg_result_free(&res);
}

/* Run one row in process (SQLite): one thread, closed loop. */
static void run_inproc(row *r, workload *w)
{
    bh_sys *s = w->sys;
    lg_hist *h[2] = {malloc(sizeof(lg_hist)), malloc(sizeof(lg_hist))};
    lg_hist_init(h[0]);
    lg_hist_init(h[1]);
    uint64_t t_start = lg_now_ns(), t0 = t_start + (uint64_t)(O.warmup_s * 1e9), t1 = t0 + (uint64_t)(O.seconds * 1e9);
    snap a = {0}, b = {0};
    int started = 0;
    uint64_t rng = O.seed, seq = 0, events = 0, reqs[2] = {0, 0}, failed = 0;
    char st[96];
    for (;;) {
        uint64_t now = lg_now_ns();
        if (!started && now >= t0) { snap_take(&a, s); started = 1; }
        if (now >= t1 || g_stop) break;
        int op = w->op;
        if (op == OP_MIXED) op = (int)lg_rand_below(&rng, 100) < w->read_pct ? OP_READ : OP_APPEND;
        int kind = w->op == OP_MIXED && op == OP_READ ? 1 : 0;
        uint32_t n = 0;
        int rc;
        seq++;
        if (op == OP_APPEND) {
            snprintf(st, sizeof st, "%s-0-%u", w->tag, (unsigned)(seq % 100));
            rc = s->append_sync(s, st, w->batch);
            n = (uint32_t)w->batch;
        } else {
            snprintf(st, sizeof st, "%s%u", w->rprefix, (unsigned)lg_rand_below(&rng, w->rstreams));
            rc = s->read_sync(s, st, w->limit, w->backward, &n);
        }
        uint64_t done = lg_now_ns();
        if (done >= t0 && done < t1) {
            lg_hist_add(h[kind], done - now);
            reqs[kind]++;
            events += n;
            if (rc) failed++;
        }
    }
    snap_take(&b, s);
    if (!started) a = b;
    r->clients = 1;
    r->batch = w->batch;
    r->secs = (double)(b.wall - a.wall) / 1e9;
    r->reqs = reqs[0] + reqs[1];
    r->events = events;
    r->failed = failed;
    if (r->secs > 0) {
        r->ev_s = (double)events / r->secs;
        r->req_s = (double)r->reqs / r->secs;
    }
    fill_latency(r, h[0]);
    if (w->op == OP_MIXED) {
        r->r_reqs = reqs[1];
        r->r_p50 = lg_hist_quantile(h[1], 0.5);
        r->r_p99 = lg_hist_quantile(h[1], 0.99);
        r->r_p999 = lg_hist_quantile(h[1], 0.999);
        r->r_max = h[1]->n ? h[1]->max : 0;
    }
    snap_cpu(r, &a, &b, s, events);
    r->mem_mib = sys_mem_mib(s);
    free(h[0]);
    free(h[1]);
}

static void run_row(row *r, workload *w, int clients, int open_loop, double rate)
{
    if (w->sys->inproc) run_inproc(r, w);
    else run_net(r, w, clients, open_loop, rate);
    /* MB/s: appends count the 200 data bytes of each event; reads the same (comparable across systems) */
    r->mb_s = r->ev_s * BH_DATA_LEN / 1e6;
    print_row_line(r);
}

/* ------------------------------------------------------------------------ */
/* watch fan-out (evstore)                                                  */
/* ------------------------------------------------------------------------ */

typedef struct watcher {
    lg_conn c;
    char line[192];
    size_t ll;
    uint64_t got;                          /* events received */
    uint64_t last_pos;                     /* the last position received */
    int ended;
} watcher;

static lg_hist *g_watch_hist;
static int64_t g_recv_us;
static uint64_t g_watch_from;
/* every delivery (position, receive time), to measure it also from the
 * append's acknowledgement: the event's `time` is stamped by the writer
 * before its fsync, so latency from it includes the fsync */
typedef struct delivery { uint64_t pos; int64_t recv_us; } delivery;
static delivery *g_deliv;
static size_t g_ndeliv, g_deliv_cap;

/* "2026-11-23T08:43:18.229028Z" -> microseconds since the epoch; -1 if not that shape. */
static int64_t parse_rfc3339_us(const char *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    unsigned us = 0;
    if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%6uZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec, &us) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000000 + us;
}

static void parse_time_line(watcher *w)
{
    w->line[w->ll < sizeof w->line ? w->ll : sizeof w->line - 1] = 0;
    const char *pp = strstr(w->line, "\"position\":");
    if (!pp) return;
    uint64_t pos = strtoull(pp + 11, NULL, 10);
    if (pos < g_watch_from) return;
    const char *t = strstr(w->line, "\"time\":\"");
    int64_t commit_us = t ? parse_rfc3339_us(t + 8) : -1;
    if (commit_us < 0) return;
    int64_t lat = g_recv_us - commit_us;
    lg_hist_add(g_watch_hist, lat > 0 ? (uint64_t)lat * 1000u : 0);
    if (g_ndeliv < g_deliv_cap) g_deliv[g_ndeliv++] = (delivery){pos, g_recv_us};
    w->got++;
    w->last_pos = pos;
}

static void watch_body(void *ud, const char *p, size_t n)
{
    watcher *w = ud;
    const char *e = p + n;
    while (p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        const char *seg_end = nl ? nl : e;
        size_t k = (size_t)(seg_end - p);
        if (w->ll < sizeof w->line - 1) {
            size_t room = sizeof w->line - 1 - w->ll;
            memcpy(w->line + w->ll, p, k < room ? k : room);
        }
        w->ll += k;
        if (!nl) break;
        if (w->ll) parse_time_line(w);
        w->ll = 0;
        p = nl + 1;
    }
}

typedef struct appended_ev { uint64_t pos; int64_t commit_us, ack_us; } appended_ev;

typedef struct appender {
    int port;
    double rate;
    uint64_t t0, t1;                       /* monotonic window */
    uint64_t appended, failed;             /* read by the main thread only after done */
    appended_ev *evs;                      /* what was appended: position and commit time */
    size_t cap;
    lg_hist *ack;                          /* from intended send time */
    atomic_int done;
} appender;

static void *appender_main(void *arg)
{
    appender *a = arg;
    int fd = lg_tcp_connect(a->port);
    if (fd < 0) { atomic_store(&a->done, 1); return NULL; }
    char req[512];
    char body[300];
    int bl = snprintf(body, sizeof body, "{\"type\":\"%s\",\"data\":%s}", BH_EVENT_TYPE, bh_event_data(3));
    int n = snprintf(req, sizeof req,
                     "POST /streams/watch-1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n%s",
                     bl, body);
    lg_buf resp = {0};
    for (uint64_t i = 0; !g_stop; i++) {
        uint64_t due = a->t0 + (uint64_t)((double)i * 1e9 / a->rate);
        if (due >= a->t1) break;
        uint64_t now = lg_now_ns();
        if (due > now) lg_sleep_ns(due - now);
        lg_http h;
        lg_http_begin(&h, to_buf, &resp);
        lg_buf_reset(&resp);
        int st = lg_http_roundtrip(fd, req, (size_t)n, &h);
        lg_hist_add(a->ack, lg_now_ns() - due);
        const char *pp = resp.p ? strstr(resp.p, "\"position\":") : NULL, *tt = resp.p ? strstr(resp.p, "\"time\":\"") : NULL;
        if (st == 201 && pp && tt && a->appended < a->cap) {
            a->evs[a->appended].pos = strtoull(pp + 11, NULL, 10);
            a->evs[a->appended].commit_us = parse_rfc3339_us(tt + 8);
            a->evs[a->appended].ack_us = lg_wall_us();
            a->appended++;
        } else {
            a->failed++;
            if (st < 0) break;
        }
    }
    lg_buf_free(&resp);
    close(fd);
    atomic_store(&a->done, 1);
    return NULL;
}

/* Wait (bounded) until the server holds no watchers: a closed watch is only
 * noticed when it is resumed, so one append wakes them all first. */
static void watch_settle(int port)
{
    static const char body[] = "{\"type\":\"WatchSettle\"}";
    char req[256];
    int n = snprintf(req, sizeof req, "POST /streams/watch-settle HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n\r\n%s",
                     sizeof body - 1, body);
    e_request(port, req, (size_t)n, NULL, NULL);
    uint64_t nw = 0;
    for (int i = 0; i < 200 && !g_stop; i++) {
        if (e_get_json_u64(port, "/stats", "watchers", &nw) == 0 && nw == 0) return;
        lg_sleep_ns(50000000u);
    }
}

static void stamp_fsync(row *r);

static void run_watch(bh_sys *s, double rate)
{
    epriv *p = s->priv;
    row *r = new_row("watch", s->name);
    snprintf(r->cfg, sizeof r->cfg, "%d watchers, %.0f appends/s", O.watchers, rate);
    r->clients = O.watchers;
    r->rate = rate;
    watch_settle(p->port);
    stamp_fsync(r);
    uint64_t pos = 0;
    e_get_json_u64(p->port, "/health", "position", &pos);
    g_watch_from = pos + 1;
    watcher *ws = calloc((size_t)O.watchers, sizeof *ws);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    char req[160];
    int rl = snprintf(req, sizeof req, "GET /events?watch=true&from=%llu&heartbeat=10 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                      (unsigned long long)g_watch_from);
    int opened = 0;
    for (int i = 0; i < O.watchers && !g_stop; i++) {
        watcher *w = &ws[i];
        w->c.fd = lg_tcp_connect(p->port);
        if (w->c.fd < 0) { w->ended = 1; continue; }
        if (send(w->c.fd, req, (size_t)rl, MSG_NOSIGNAL) != rl) { close(w->c.fd); w->c.fd = -1; w->ended = 1; continue; }
        lg_set_nonblock(w->c.fd, 1);
        lg_http_begin(&w->c.http, watch_body, w);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};
        epoll_ctl(ep, EPOLL_CTL_ADD, w->c.fd, &ev);
        w->last_pos = g_watch_from - 1;
        opened++;
    }
    /* wait until the server holds them all */
    uint64_t nw = 0;
    for (int i = 0; i < 300 && !g_stop; i++) {
        if (e_get_json_u64(p->port, "/stats", "watchers", &nw) == 0 && nw >= (uint64_t)opened) break;
        lg_sleep_ns(50000000u);
    }
    lg_hist *lat = malloc(sizeof *lat);
    lg_hist_init(lat);
    g_watch_hist = lat;
    appender ap;
    memset(&ap, 0, sizeof ap);
    ap.port = p->port;
    ap.rate = rate;
    ap.cap = (size_t)(rate * O.watch_seconds) + 16;
    ap.evs = calloc(ap.cap, sizeof *ap.evs);
    g_deliv_cap = ap.cap * (size_t)O.watchers;
    g_deliv = calloc(g_deliv_cap, sizeof *g_deliv);
    g_ndeliv = 0;
    if (!g_deliv) g_deliv_cap = 0;
    ap.ack = malloc(sizeof(lg_hist));
    lg_hist_init(ap.ack);
    atomic_init(&ap.done, 0);
    ap.t0 = lg_now_ns() + 100000000u;
    ap.t1 = ap.t0 + (uint64_t)(O.watch_seconds * 1e9);
    snap a, b;
    snap_take(&a, s);
    pthread_t th;
    pthread_create(&th, NULL, appender_main, &ap);
    struct epoll_event evs[256];
    /* deliveries still missing 3 s after the last append are counted as missed */
    uint64_t deadline = ap.t1 + 3000000000ull, total = 0;
    for (;;) {
        uint64_t now = lg_now_ns();
        if (now >= deadline || g_stop) break;
        if (atomic_load(&ap.done) && total >= ap.appended * (uint64_t)opened) break;   /* everyone has everything */
        int k = epoll_wait(ep, evs, 256, 20);
        for (int i = 0; i < k; i++) {
            watcher *w = evs[i].data.ptr;
            ssize_t got = lg_conn_fill(&w->c);
            if (got == -1) continue;
            if (got <= 0) {
                w->ended = 1;
                epoll_ctl(ep, EPOLL_CTL_DEL, w->c.fd, NULL);
                continue;
            }
            g_recv_us = lg_wall_us();
            uint64_t before = w->got;
            size_t used = 0;
            int rr = lg_http_feed(&w->c.http, w->c.in.p + w->c.in.off, w->c.in.len - w->c.in.off, &used);
            w->c.in.off += used;
            if (rr != 0) {                 /* the answer ended (or broke): a watch must not */
                w->ended = 1;
                epoll_ctl(ep, EPOLL_CTL_DEL, w->c.fd, NULL);
            }
            if (w->c.in.off == w->c.in.len) w->c.in.off = w->c.in.len = 0;
            total += w->got - before;
        }
    }
    pthread_join(th, NULL);
    snap_take(&b, s);
    r->mem_mib = sys_mem_mib(s);
    /* what never arrived counts too, with its age at the end (a lower bound):
     * leaving it out would hide exactly the stalls this test is about */
    int64_t end_us = lg_wall_us();
    uint64_t missed = 0;
    int ended = 0;
    for (int i = 0; i < O.watchers; i++) {
        watcher *w = &ws[i];
        ended += w->ended && w->c.fd >= 0;
        if (w->c.fd < 0) continue;
        for (size_t k = 0; k < ap.appended; k++) {
            if (ap.evs[k].pos <= w->last_pos || ap.evs[k].commit_us < 0) continue;
            int64_t age = end_us - ap.evs[k].commit_us;
            lg_hist_add(lat, age > 0 ? (uint64_t)age * 1000u : 0);
            missed++;
        }
        lg_conn_close(&w->c);
    }
    close(ep);
    uint64_t expected = ap.appended * (uint64_t)opened;
    r->secs = (double)(ap.t1 - ap.t0) / 1e9;
    r->reqs = ap.appended;
    r->events = total;                     /* deliveries */
    r->failed = ap.failed;
    r->unfinished = missed;
    r->extra = (double)missed;
    r->ev_s = r->secs > 0 ? (double)total / r->secs : 0;
    r->req_s = r->secs > 0 ? (double)ap.appended / r->secs : 0;
    r->mb_s = 0;
    fill_latency(r, lat);
    /* the appends' own latency (from their intended send time) goes into the read columns */
    r->r_reqs = ap.ack->n;
    r->r_p50 = lg_hist_quantile(ap.ack, 0.5);
    r->r_p99 = lg_hist_quantile(ap.ack, 0.99);
    r->r_p999 = lg_hist_quantile(ap.ack, 0.999);
    r->r_max = ap.ack->max;
    snap_cpu(r, &a, &b, s, total);
    /* the same deliveries measured from the append's acknowledgement (after
     * the fsync; 0 when a watcher had it before the appender had its answer) */
    lg_hist *after_ack = malloc(sizeof *after_ack);
    lg_hist_init(after_ack);
    for (size_t i = 0; i < g_ndeliv; i++) {
        size_t lo = 0, hi = ap.appended;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (ap.evs[mid].pos < g_deliv[i].pos) lo = mid + 1;
            else hi = mid;
        }
        if (lo == ap.appended || ap.evs[lo].pos != g_deliv[i].pos) continue;
        int64_t d = g_deliv[i].recv_us - ap.evs[lo].ack_us;
        lg_hist_add(after_ack, d > 0 ? (uint64_t)d * 1000u : 0);
    }
    snprintf(r->note, sizeof r->note,
             "%d/%d watchers connected, %llu appended, %llu of %llu deliveries missing 3 s after the last append "
             "(in the percentiles with their age then), %d answers ended early; append ack p99 %.2f ms; "
             "delivery after the append's ack (excludes fsync) p50 %.2f ms, p99 %.2f ms",
             opened, O.watchers, (unsigned long long)ap.appended, (unsigned long long)missed,
             (unsigned long long)expected, ended, (double)r->r_p99 / 1e6,
             (double)lg_hist_quantile(after_ack, 0.5) / 1e6, (double)lg_hist_quantile(after_ack, 0.99) / 1e6);
    free(after_ack);
    free(g_deliv);
    g_deliv = NULL;
    g_ndeliv = g_deliv_cap = 0;
    print_row_line(r);
    free(lat);
    free(ap.ack);
    free(ap.evs);
    free(ws);
    g_watch_hist = NULL;
    watch_settle(p->port);
}

/* ------------------------------------------------------------------------ */
/* one system, every workload                                               */
/* ------------------------------------------------------------------------ */

#define READ_PREFIX "r-"

static double g_open_rate;                  /* the same offered rate for every system */
static uint32_t g_rstreams;

/* The systems of this run, all started before the first row and stopped after
 * the last, so that each workload runs on every system back to back: the
 * disk's fsync latency on this (shared, virtual) machine drifts by several
 * times within minutes, and comparisons are only fair between rows measured
 * close together. */
typedef struct sysent {
    bh_sys s;
    char label[24];
    int appends_only;                      /* only the append workloads (single, open, batch) */
} sysent;

static sysent g_sys[8];
static int g_nsys;

/* JetStream 2.9 acknowledges after write() and fsyncs every 2 minutes: its
 * append rows are compared with a second evstored of the same durability. */
#define EVS_INTERVAL_LABEL "evstore-interval"
#define EVS_INTERVAL_FSYNC "interval:120000"

/* Systems or workloads not run, and why (for the JSON). */
static char g_skipped[2048] = "";

static void add_skipped(const char *sys, const char *workloads, const char *why)
{
    size_t l = strlen(g_skipped);
    char w[600];
    size_t o = 0;
    for (const char *c = why; *c && o + 2 < sizeof w; c++) {   /* the reasons are plain text; keep JSON valid */
        if (*c == '"' || *c == '\\') w[o++] = '\\';
        w[o++] = *c;
    }
    w[o] = 0;
    snprintf(g_skipped + l, sizeof g_skipped - l, "%s{\"system\":\"%s\",\"workloads\":\"%s\",\"why\":\"%s\"}",
             l ? "," : "", sys, workloads, w);
}

/* Skip a workload that reads streams on a system that has no such request. */
static int no_stream_reads(int k)
{
    return g_sys[k].appends_only || (!g_sys[k].s.inproc && !g_sys[k].s.issue_read);
}

/* A short fsync probe (30 x 4 KiB append + fdatasync) right before each append
 * row: the disk as that row saw it. */
static int g_probe_fd = -1;
static off_t g_probe_off;
static struct { uint64_t p50, p99; double mean; } g_fs_now;

static void probe_fsync_now(void)
{
    if (g_probe_fd < 0) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/probe.bin", g_base);
        g_probe_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (g_probe_fd < 0) return;
    }
    char block[4096];
    memset(block, 0x5a, sizeof block);
    lg_hist *h = malloc(sizeof *h);
    lg_hist_init(h);
    if (g_probe_off > (64 << 20)) {
        if (ftruncate(g_probe_fd, 0) != 0) {}
        g_probe_off = 0;
    }
    for (int i = 0; i < 35 && !g_stop; i++) {
        uint64_t t = lg_now_ns();
        if (pwrite(g_probe_fd, block, sizeof block, g_probe_off) != (ssize_t)sizeof block || fdatasync(g_probe_fd) != 0) break;
        g_probe_off += (off_t)sizeof block;
        if (i >= 5) lg_hist_add(h, lg_now_ns() - t);
    }
    g_fs_now.p50 = lg_hist_quantile(h, 0.5);
    g_fs_now.p99 = lg_hist_quantile(h, 0.99);
    g_fs_now.mean = lg_hist_mean(h);
    free(h);
}

/* Probe again right before this row: the disk drifts even within a group. */
static void stamp_fsync(row *r)
{
    probe_fsync_now();
    r->fs_p50 = g_fs_now.p50;
    r->fs_mean = g_fs_now.mean;
}

static void single_group(int clients, int first)
{
    for (int k = 0; k < g_nsys && !g_stop; k++) {
        bh_sys *s = &g_sys[k].s;
        if (s->inproc && !first) continue;             /* SQLite: one writer, one row */
        int cl = s->inproc ? 1 : clients;
        workload w = {.sys = s, .op = OP_APPEND, .batch = 1};
        snprintf(w.tag, sizeof w.tag, "a%d", cl);
        int modes = !strcmp(s->name, "redis") ? 2 : 1;
        for (int m = 0; m < modes && !g_stop; m++) {
            if (modes == 2) bh_redis_set_fsync(s, m == 0);
            row *r = new_row("single", modes == 2 ? (m == 0 ? "redis-always" : "redis-everysec") : g_sys[k].label);
            stamp_fsync(r);
            snprintf(r->cfg, sizeof r->cfg, s->inproc ? "1 writer (in process)" : "%d client%s", cl, cl == 1 ? "" : "s");
            run_row(r, &w, cl, 0, 0);
            if (!strcmp(g_sys[k].label, "evstore") && cl == 64 && !O.open_rate) g_open_rate = r->ev_s / 2;
        }
        if (modes == 2) bh_redis_set_fsync(s, 1);
    }
}

static void open_group(void)
{
    double rate = O.open_rate ? O.open_rate : g_open_rate ? g_open_rate : 2000;
    for (int k = 0; k < g_nsys && !g_stop; k++) {
        bh_sys *s = &g_sys[k].s;
        if (s->inproc) continue;
        workload w = {.sys = s, .op = OP_APPEND, .batch = 1};
        snprintf(w.tag, sizeof w.tag, "o64");
        row *r = new_row("open", !strcmp(s->name, "redis") ? "redis-always" : g_sys[k].label);
        stamp_fsync(r);
        snprintf(r->cfg, sizeof r->cfg, "%.0f req/s offered, 64 connections", rate);
        run_row(r, &w, 64, 1, rate);
    }
}

static void batch_group(int batch)
{
    for (int k = 0; k < g_nsys && !g_stop; k++) {
        bh_sys *s = &g_sys[k].s;
        workload w = {.sys = s, .op = OP_APPEND, .batch = batch};
        snprintf(w.tag, sizeof w.tag, "b%d", batch);
        int cl = s->inproc ? 1 : O.batch_clients;
        int modes = !strcmp(s->name, "redis") && (batch == 100 || O.nbatches == 1) ? 2 : 1;
        for (int m = 0; m < modes && !g_stop; m++) {
            if (modes == 2) bh_redis_set_fsync(s, m == 0);
            row *r = new_row("batch", !strcmp(s->name, "redis") ? (m == 0 ? "redis-always" : "redis-everysec") : g_sys[k].label);
            stamp_fsync(r);
            if (!strcmp(s->name, "nats")) snprintf(r->cfg, sizeof r->cfg, "%d pipelined (not atomic), %d clients", batch, cl);
            else snprintf(r->cfg, sizeof r->cfg, s->inproc ? "%d/request, 1 writer" : "%d/request, %d clients", batch, cl);
            run_row(r, &w, cl, 0, 0);
        }
        if (modes == 2) bh_redis_set_fsync(s, 1);
    }
}

static void fill_group(void)
{
    for (int k = 0; k < g_nsys && !g_stop; k++) {
        bh_sys *s = &g_sys[k].s;
        if (g_sys[k].appends_only) continue;
        row *r = new_row("fill", !strcmp(s->name, "redis") ? "redis-always" : g_sys[k].label);
        stamp_fsync(r);
        snprintf(r->cfg, sizeof r->cfg, "%llu events, 1,000/request, %u streams", (unsigned long long)O.fill, g_rstreams);
        snap a, b;
        snap_take(&a, s);
        int rc = s->fill(s, O.fill, 1000, g_rstreams, READ_PREFIX, O.seed);
        snap_take(&b, s);
        r->clients = 1;
        r->batch = 1000;
        r->secs = (double)(b.wall - a.wall) / 1e9;
        r->events = rc == 0 ? O.fill : 0;
        r->failed = rc != 0;
        r->ev_s = r->secs > 0 ? (double)r->events / r->secs : 0;
        r->mb_s = r->ev_s * BH_DATA_LEN / 1e6;
        snap_cpu(r, &a, &b, s, r->events);
        r->mem_mib = sys_mem_mib(s);
        scopy(r->note, sizeof r->note, !strcmp(s->name, "evstore") ? "POST /events (multi-stream, atomic), durable" :
              !strcmp(s->name, "redis") ? "pipelined XADD (not atomic), 1,000 per round trip" :
              !strcmp(s->name, "postgres") ? "multi-row INSERT, versions assigned by the loader" :
              !strcmp(s->name, "nats") ? "1,000 pipelined publishes per round trip (not atomic), acked after write(), no fsync" :
              "1,000 INSERTs per transaction");
        print_row_line(r);
    }
}

static void fullread_group(int pass)
{
    for (int k = 0; k < g_nsys && !g_stop; k++) {
        bh_sys *s = &g_sys[k].s;
        if (g_sys[k].appends_only) continue;
        row *r = new_row("fullread", !strcmp(s->name, "redis") ? "redis-always" : g_sys[k].label);
        snprintf(r->cfg, sizeof r->cfg, "whole log, pass %d", pass);
        snap a, b;
        snap_take(&a, s);
        uint64_t ev = 0, bytes = 0;
        int rc = s->full_read(s, &ev, &bytes);
        snap_take(&b, s);
        r->clients = 1;
        r->extra = pass;
        r->secs = (double)(b.wall - a.wall) / 1e9;
        r->events = ev;
        r->failed = rc != 0;
        r->ev_s = r->secs > 0 ? (double)ev / r->secs : 0;
        r->mb_s = r->secs > 0 ? (double)bytes / r->secs / 1e6 : 0;   /* bytes received */
        snap_cpu(r, &a, &b, s, ev);
        r->mem_mib = sys_mem_mib(s);
        snprintf(r->note, sizeof r->note, "%llu events, %.1f MB received in %.2f s", (unsigned long long)ev,
                 (double)bytes / 1e6, r->secs);
        print_row_line(r);
    }
}

static void streams_group(void)
{
    for (int k = 0; k < g_nsys && !g_stop; k++) {
        bh_sys *s = &g_sys[k].s;
        if (no_stream_reads(k)) continue;
        workload w = {.sys = s, .op = OP_READ, .limit = 100, .rprefix = READ_PREFIX, .rstreams = g_rstreams};
        row *r = new_row("streams", !strcmp(s->name, "redis") ? "redis-always" : g_sys[k].label);
        int cl = s->inproc ? 1 : 16;
        snprintf(r->cfg, sizeof r->cfg, s->inproc ? "100 from v1, 1 reader" : "100 from v1, %d clients", cl);
        run_row(r, &w, cl, 0, 0);
    }
}

static void mixed_group(void)
{
    for (int k = 0; k < g_nsys && !g_stop; k++) {
        bh_sys *s = &g_sys[k].s;
        if (no_stream_reads(k)) continue;
        workload w = {.sys = s, .op = OP_MIXED, .batch = 1, .limit = 10, .backward = 1, .read_pct = 80,
                      .rprefix = READ_PREFIX, .rstreams = g_rstreams};
        snprintf(w.tag, sizeof w.tag, "m");
        row *r = new_row("mixed", !strcmp(s->name, "redis") ? "redis-always" : g_sys[k].label);
        stamp_fsync(r);
        int cl = s->inproc ? 1 : 64;
        snprintf(r->cfg, sizeof r->cfg, s->inproc ? "80%% reads/20%% appends, 1 thread" : "80%% reads/20%% appends, %d clients", cl);
        run_row(r, &w, cl, 0, 0);
    }
}

/* ------------------------------------------------------------------------ */
/* report                                                                   */
/* ------------------------------------------------------------------------ */

static const row *find_row(const char *wl, const char *sys, int clients, int batch, double extra)
{
    for (size_t i = 0; i < g_nrows; i++) {
        const row *r = &g_rows[i];
        if (!strcmp(r->wl, wl) && !strcmp(r->sys, sys) && (clients < 0 || r->clients == clients) &&
            (batch < 0 || r->batch == batch) && (extra < 0 || r->extra == extra))
            return r;
    }
    return NULL;
}

/* The evstore system a peer row is compared with: evstore (--fsync always),
 * except NATS's append rows, which are set against evstore-interval (the
 * same durability: acknowledged after write(), fsync on a timer). NULL for
 * evstore's own rows. */
static const char *evstore_label_for(const row *r)
{
    if (!strncmp(r->sys, "evstore", 7)) return NULL;
    if (!strcmp(r->sys, "nats") && (!strcmp(r->wl, "single") || !strcmp(r->wl, "open") || !strcmp(r->wl, "batch")))
        return EVS_INTERVAL_LABEL;
    return "evstore";
}

/* The evstore row a peer row compares with: same workload and parameters
 * (SQLite's single writer is set against evstore's 1 client). */
static const row *evstore_peer_of(const row *r)
{
    const char *ev = evstore_label_for(r);
    if (!ev) return NULL;
    if (!strcmp(r->wl, "fullread")) return find_row("fullread", ev, -1, -1, r->extra);
    if (!strcmp(r->wl, "single")) return find_row(r->wl, ev, r->clients, -1, -1);
    /* batch, fill, open, streams, mixed: one client count per workload (SQLite's single thread included) */
    return find_row(r->wl, ev, -1, !strcmp(r->wl, "batch") ? r->batch : -1, -1);
}

static const char *wl_title(const char *wl)
{
    if (!strcmp(wl, "single")) return "Durable single-event appends (closed loop, 200-byte events, one request in flight per client)";
    if (!strcmp(wl, "open")) return "Durable single-event appends at a fixed rate (open loop; latency from the intended send time)";
    if (!strcmp(wl, "batch")) return "Durable batched appends (one atomic request of N events to one stream)";
    if (!strcmp(wl, "fill")) return "Loading the read set (multi-stream batches of 1,000; events/s is the load rate)";
    if (!strcmp(wl, "fullread")) return "Full read of the whole log (one client; MB/s = bytes received)";
    if (!strcmp(wl, "streams")) return "Stream reads: 100 events from version 1 of a random stream (its events scattered over the log)";
    if (!strcmp(wl, "mixed")) return "Mixed: 80 % reads (last 10 events of a random stream), 20 % single-event appends";
    if (!strcmp(wl, "watch")) return "Watch fan-out: every append delivered to every watcher (latency = receive time - the event's commit `time`)";
    return wl;
}

static void print_tables(void)
{
    static const char *const order[] = {"single", "open", "batch", "fill", "fullread", "streams", "mixed", "watch"};
    char b[12][48];
    printf("\n==== Results (latency p50/p99/p99.9/max; CPU = server CPU time per event; cores: server / client / everything else) ====\n");
    for (size_t o = 0; o < sizeof order / sizeof order[0]; o++) {
        const char *wl = order[o];
        int any = 0;
        for (size_t i = 0; i < g_nrows; i++) any |= !strcmp(g_rows[i].wl, wl);
        if (!any) continue;
        printf("\n### %s\n\n", wl_title(wl));
        int is_append = !strcmp(wl, "single") || !strcmp(wl, "open") || !strcmp(wl, "batch") || !strcmp(wl, "fill");
        if (!strcmp(wl, "watch")) {
            printf("| system | config | deliveries/s | p50 | p99 | p99.9 | max | missed | append ack p50 / p99 | CPU µs/delivery | cores srv/cli/oth | RSS MiB |\n");
            printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        } else if (!strcmp(wl, "mixed")) {
            printf("| system | config | ops/s | events/s | append p50 / p99 / p99.9 | read p50 / p99 / p99.9 | CPU µs/event | cores srv/cli/oth | RSS MiB | evstore ÷ this (ops/s) | failed |\n");
            printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
        } else {
            printf("| system | config | events/s | MB/s | p50 | p99 | p99.9 | max | CPU µs/event | cores srv/cli/oth | RSS MiB | evstore ÷ this | %s | failed |\n",
                   is_append ? "fsync p50 / mean now · p99 ÷ fsync p99 · ev/s ÷ (in flight ÷ fsync mean now) · MB/s ÷ seq write" : "MB/s ÷ page-cache read");
            printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        }
        for (size_t i = 0; i < g_nrows; i++) {
            const row *r = &g_rows[i];
            if (strcmp(r->wl, wl)) continue;
            const row *ev = evstore_peer_of(r);
            char ratio[48] = "—", cores[48], fails[48];
            snprintf(cores, sizeof cores, "%.2f / %.2f / %.2f", r->srv_cores, r->cli_cores, r->oth_cores);
            snprintf(fails, sizeof fails, "%llu%s", (unsigned long long)(r->failed + r->conn_errors),
                     r->unfinished ? " (unanswered)" : "");
            if (!strcmp(wl, "watch")) {
                printf("| %s | %s | %s | %s | %s | %s | %s | %.0f | %s / %s | %.1f | %s | %.0f |\n", r->sys, r->cfg,
                       fmt_num(b[0], 48, r->ev_s), fmt_dur(b[1], 48, r->p50), fmt_dur(b[2], 48, r->p99),
                       fmt_dur(b[3], 48, r->p999), fmt_dur(b[4], 48, r->max), r->extra, fmt_dur(b[5], 48, r->r_p50),
                       fmt_dur(b[6], 48, r->r_p99), r->cpu_us_ev, cores, r->mem_mib);
                continue;
            }
            if (ev && ev->req_s > 0 && r->req_s > 0 && !strcmp(wl, "mixed")) fmt_ratio(ratio, sizeof ratio, ev->req_s / r->req_s);
            else if (ev && ev->ev_s > 0 && r->ev_s > 0) fmt_ratio(ratio, sizeof ratio, ev->ev_s / r->ev_s);
            if (!strcmp(wl, "mixed")) {
                printf("| %s | %s | %s | %s | %s / %s / %s | %s / %s / %s | %.1f | %s | %.0f | %s | %s |\n", r->sys, r->cfg,
                       fmt_num(b[0], 48, r->req_s), fmt_num(b[1], 48, r->ev_s), fmt_dur(b[2], 48, r->p50),
                       fmt_dur(b[3], 48, r->p99), fmt_dur(b[4], 48, r->p999), fmt_dur(b[5], 48, r->r_p50),
                       fmt_dur(b[6], 48, r->r_p99), fmt_dur(b[7], 48, r->r_p999), r->cpu_us_ev, cores, r->mem_mib, ratio,
                       fails);
                continue;
            }
            char lim[160];
            if (is_append) {
                /* closed loop: at most clients x batch events are in flight and each waits at least
                 * one fsync, so events/s <= clients x batch / mean fsync (Little's law) */
                double fm = r->fs_mean > 0 ? r->fs_mean : M.fsync_mean;   /* the disk as this row's group saw it */
                double bound = fm > 0 ? (double)r->clients * (r->batch ? r->batch : 1) / (fm / 1e9) : 0;
                char pct[32] = "—";
                if (bound > 0 && strcmp(wl, "open")) snprintf(pct, sizeof pct, "%.0f %%", 100.0 * r->ev_s / bound);
                snprintf(lim, sizeof lim, "%s / %s · %s · %s · %.1f %%", fmt_dur(b[9], 48, r->fs_p50), fmt_dur(b[10], 48, (uint64_t)r->fs_mean),
                         r->p99 ? fmt_ratio(b[8], 48, (double)r->p99 / (double)M.fsync_p99) : "—",
                         pct, M.seq_mb_s > 0 ? 100.0 * r->mb_s / M.seq_mb_s : 0);
            }
            else
                snprintf(lim, sizeof lim, "%.1f %%", M.cache_read_mb_s > 0 ? 100.0 * r->mb_s / M.cache_read_mb_s : 0);
            printf("| %s | %s | %s | %.1f | %s | %s | %s | %s | %.1f | %s | %.0f | %s | %s | %s |\n", r->sys, r->cfg,
                   fmt_num(b[0], 48, r->ev_s), r->mb_s, fmt_dur(b[1], 48, r->p50), fmt_dur(b[2], 48, r->p99),
                   fmt_dur(b[3], 48, r->p999), fmt_dur(b[4], 48, r->max), r->cpu_us_ev, cores, r->mem_mib, ratio, lim,
                   fails);
        }
        for (size_t i = 0; i < g_nrows; i++) {
            const row *r = &g_rows[i];
            if (strcmp(r->wl, wl)) continue;
            if (!strcmp(r->sys, "evstore") && (r->ev_per_fsync > 0 || r->threads[0])) {
                printf("\n- %s, %s:", r->sys, r->cfg);
                if (r->ev_per_fsync > 0) printf(" group commit %.1f events per fsync, %.0f fsyncs/s;", r->ev_per_fsync, r->fsync_s);
                if (r->threads[0]) printf(" server threads (cores): %s", r->threads);
            }
            if (r->note[0]) printf("\n- %s, %s: %s", r->sys, r->cfg, r->note);
        }
        if (find_row(wl, "nats", -1, -1, -1) && (!strcmp(wl, "single") || !strcmp(wl, "open") || !strcmp(wl, "batch")))
            printf("\n- nats: \"evstore ÷ this\" is %s ÷ nats: both acknowledge after write() and fsync on a timer "
                   "(JetStream 2.9: every 2 min, hard-coded; evstored --fsync %s), unlike the --fsync always rows",
                   EVS_INTERVAL_LABEL, EVS_INTERVAL_FSYNC);
        printf("\n");
    }
}

typedef struct verdict {
    const char *what, *target;
    char measured[200];
    int state;                             /* 1 met, 0 not met, -1 not measured */
} verdict;

static verdict g_verdicts[8];
static int g_nverdicts;

static void add_verdict(const char *what, const char *target, int state, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_verdict(const char *what, const char *target, int state, const char *fmt, ...)
{
    verdict *v = &g_verdicts[g_nverdicts++];
    v->what = what;
    v->target = target;
    v->state = state;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->measured, sizeof v->measured, fmt, ap);
    va_end(ap);
}

static void judge(void)
{
    char b[4][48];
    const row *r = find_row("single", "evstore", 64, -1, -1);
    if (r) {
        add_verdict("durable single-event appends over HTTP, 64 clients", "≥ 70,000 events/s", r->ev_s >= 70000,
                    "%s events/s", fmt_num(b[0], 48, r->ev_s));
        if (M.fsync_p99 && M.fsync_p50)
            add_verdict("  same row: p99 latency", "≤ 3 × the disk's fsync latency", r->p99 <= 3 * M.fsync_p99,
                        "p99 %s = %.2f × fsync p99 (%s), %.1f × fsync p50 (%s)", fmt_dur(b[0], 48, r->p99),
                        (double)r->p99 / (double)M.fsync_p99, fmt_dur(b[1], 48, M.fsync_p99),
                        (double)r->p99 / (double)M.fsync_p50, fmt_dur(b[2], 48, M.fsync_p50));
        else  /* --skip-limits: no fsync latency to compare with */
            add_verdict("  same row: p99 latency", "≤ 3 × the disk's fsync latency", -1,
                        "p99 %s; the machine's limits were not measured", fmt_dur(b[0], 48, r->p99));
        const row *rd = find_row("single", "redis-always", 64, -1, -1);
        if (rd && rd->ev_s > 0)
            add_verdict("  same row vs Redis Streams (appendfsync always, 64 clients)", "≥ 2 × Redis", r->ev_s >= 2 * rd->ev_s,
                        "%.2f × (Redis %s events/s)", r->ev_s / rd->ev_s, fmt_num(b[0], 48, rd->ev_s));
        else add_verdict("  same row vs Redis Streams (appendfsync always, 64 clients)", "≥ 2 × Redis", -1, "Redis not run");
    } else {
        add_verdict("durable single-event appends over HTTP, 64 clients", "≥ 70,000 events/s", -1, "not run");
    }
    r = find_row("batch", "evstore", -1, 100, -1);
    if (r)
        add_verdict("durable batched appends over HTTP, 100 per request", "≥ 500,000 events/s", r->ev_s >= 500000,
                    "%s events/s (%d clients)", fmt_num(b[0], 48, r->ev_s), r->clients);
    else add_verdict("durable batched appends over HTTP, 100 per request", "≥ 500,000 events/s", -1, "not run");
    const row *f1 = find_row("fullread", "evstore", -1, -1, 1), *f2 = find_row("fullread", "evstore", -1, -1, 2);
    if (f1 || f2) {
        double best = f1 ? f1->ev_s : 0;
        if (f2 && f2->ev_s > best) best = f2->ev_s;
        add_verdict("full read of the global log over HTTP", "≥ 1,000,000 events/s", best >= 1e6,
                    "%s events/s (best pass, %llu events)", fmt_num(b[0], 48, best),
                    (unsigned long long)(f2 ? f2->events : f1->events));
    } else add_verdict("full read of the global log over HTTP", "≥ 1,000,000 events/s", -1, "not run");
    const row *w = NULL;
    for (size_t i = 0; i < g_nrows; i++)
        if (!strcmp(g_rows[i].wl, "watch")) {
            w = &g_rows[i];
            int met = w->p99 <= 10000000u && w->extra == 0;
            char what[64];
            snprintf(what, sizeof what, "%d watchers at %.0f appends/s", w->clients, w->rate);
            add_verdict(i == 0 ? "1,000 concurrent watchers" : "1,000 concurrent watchers", "p99 ≤ 10 ms after commit", met,
                        "%s: p99 %s, max %s, %.0f deliveries missed", what, fmt_dur(b[0], 48, w->p99),
                        fmt_dur(b[1], 48, w->max), w->extra);
            if (g_nverdicts >= 8) break;
        }
    if (!w) add_verdict("1,000 concurrent watchers", "p99 ≤ 10 ms after commit", -1, "not run");
}

static void print_verdicts(void)
{
    printf("\n### SPEC §8 targets over HTTP (this run)\n\n| workload | target | measured | verdict |\n|---|---|---|---|\n");
    for (int i = 0; i < g_nverdicts; i++) {
        verdict *v = &g_verdicts[i];
        printf("| %s | %s | %s | %s |\n", v->what, v->target, v->measured,
               v->state < 0 ? "—" : v->state ? "MET" : "**NOT MET**");
    }
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void write_json(const char *path, const char *configs)
{
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); return; }
    fprintf(f, "{\n  \"benchmark\": \"bench_http\",\n  \"quick\": %s,\n  \"source\": ", O.quick ? "true" : "false");
    json_str(f, M.source);
    fprintf(f, ",\n  \"machine\": {\"nproc\": %ld, \"cpu\": ", M.nproc);
    json_str(f, M.cpu);
    fprintf(f, ", \"kernel\": ");
    json_str(f, M.kernel);
    fprintf(f, ", \"mem_kib\": %llu, \"fstype\": ", (unsigned long long)M.mem_kib);
    json_str(f, M.fstype);
    fprintf(f, ", \"device\": ");
    json_str(f, M.device);
    fprintf(f, ", \"mount\": ");
    json_str(f, M.mount);
    fprintf(f, "},\n  \"limits\": {\"fsync_4k_p50_ns\": %llu, \"fsync_4k_p99_ns\": %llu, \"fsync_4k_p999_ns\": %llu, "
               "\"fsync_4k_max_ns\": %llu, \"fsync_4k_mean_ns\": %.0f, \"seq_write_mb_s\": %.1f, "
               "\"seq_write_no_sync_mb_s\": %.1f, \"seq_final_sync_s\": %.3f, \"page_cache_read_mb_s\": %.1f},\n",
            (unsigned long long)M.fsync_p50, (unsigned long long)M.fsync_p99, (unsigned long long)M.fsync_p999,
            (unsigned long long)M.fsync_max, M.fsync_mean, M.seq_mb_s, M.seq_write_mb_s, M.seq_sync_s, M.cache_read_mb_s);
    fprintf(f, "  \"systems\": %s,\n  \"skipped\": [%s],\n  \"rows\": [\n", configs, g_skipped);
    for (size_t i = 0; i < g_nrows; i++) {
        const row *r = &g_rows[i];
        const row *ev = evstore_peer_of(r);
        fprintf(f, "    {\"workload\": ");
        json_str(f, r->wl);
        fprintf(f, ", \"system\": ");
        json_str(f, r->sys);
        fprintf(f, ", \"config\": ");
        json_str(f, r->cfg);
        fprintf(f,
                ", \"clients\": %d, \"batch\": %d, \"rate\": %.1f, \"seconds\": %.3f, \"requests\": %llu, \"events\": %llu, "
                "\"failed\": %llu, \"connection_errors\": %llu, \"unanswered\": %llu, \"events_per_s\": %.1f, "
                "\"requests_per_s\": %.1f, \"mb_per_s\": %.2f, \"latency_ns\": {\"p50\": %llu, \"p90\": %llu, \"p99\": %llu, "
                "\"p999\": %llu, \"max\": %llu, \"mean\": %.0f}",
                r->clients, r->batch, r->rate, r->secs, (unsigned long long)r->reqs, (unsigned long long)r->events,
                (unsigned long long)r->failed, (unsigned long long)r->conn_errors, (unsigned long long)r->unfinished,
                r->ev_s, r->req_s, r->mb_s, (unsigned long long)r->p50, (unsigned long long)r->p90,
                (unsigned long long)r->p99, (unsigned long long)r->p999, (unsigned long long)r->max, r->mean);
        if (r->r_reqs)
            fprintf(f, ", \"%s\": {\"n\": %llu, \"p50\": %llu, \"p99\": %llu, \"p999\": %llu, \"max\": %llu}",
                    !strcmp(r->wl, "watch") ? "append_ack_latency_ns" : "read_latency_ns", (unsigned long long)r->r_reqs,
                    (unsigned long long)r->r_p50, (unsigned long long)r->r_p99, (unsigned long long)r->r_p999,
                    (unsigned long long)r->r_max);
        fprintf(f, ", \"server_cpu_us_per_event\": %.3f, \"cores\": {\"server\": %.3f, \"client\": %.3f, \"others\": %.3f}, "
                   "\"server_mem_mib\": %.1f",
                r->cpu_us_ev, r->srv_cores, r->cli_cores, r->oth_cores, r->mem_mib);
        if (!strcmp(r->wl, "watch")) fprintf(f, ", \"deliveries_missed\": %.0f", r->extra);
        if (r->fs_p50) fprintf(f, ", \"fsync_now_p50_ns\": %llu, \"fsync_now_mean_ns\": %.0f", (unsigned long long)r->fs_p50, r->fs_mean);
        if (r->ev_per_fsync > 0)
            fprintf(f, ", \"events_per_fsync\": %.2f, \"fsyncs_per_s\": %.1f", r->ev_per_fsync, r->fsync_s);
        if (ev && ev->ev_s > 0 && r->ev_s > 0)
            fprintf(f, ", \"evstore_ratio\": %.3f, \"evstore_ratio_against\": \"%s\"", ev->ev_s / r->ev_s, ev->sys);
        if (r->p99 && M.fsync_p99 && strcmp(r->wl, "fullread") && strcmp(r->wl, "streams"))
            fprintf(f, ", \"p99_over_fsync_p99\": %.3f", (double)r->p99 / (double)M.fsync_p99);
        if (r->threads[0]) {
            fprintf(f, ", \"server_threads_cores\": ");
            json_str(f, r->threads);
        }
        if (r->note[0]) {
            fprintf(f, ", \"note\": ");
            json_str(f, r->note);
        }
        fprintf(f, "}%s\n", i + 1 < g_nrows ? "," : "");
    }
    fprintf(f, "  ],\n  \"targets\": [\n");
    for (int i = 0; i < g_nverdicts; i++) {
        verdict *v = &g_verdicts[i];
        fprintf(f, "    {\"workload\": ");
        json_str(f, v->what);
        fprintf(f, ", \"target\": ");
        json_str(f, v->target);
        fprintf(f, ", \"measured\": ");
        json_str(f, v->measured);
        fprintf(f, ", \"met\": %s}%s\n", v->state < 0 ? "null" : v->state ? "true" : "false", i + 1 < g_nverdicts ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
}

/* ------------------------------------------------------------------------ */
/* main                                                                     */
/* ------------------------------------------------------------------------ */

static void default_json_path(char *out, size_t cap, const char *argv0)
{
    char self[PATH_MAX - 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            snprintf(out, cap, "%s/results-http.json", self);
            return;
        }
    }
    (void)argv0;
    snprintf(out, cap, "results-http.json");
}

static int parse_args(int argc, char **argv)
{
    O.warmup_s = -1;
    O.seconds = -1;
    O.evstored = EVS_BENCH_EVSTORED;
    O.batch_clients = 16;
    O.watchers = 1000;
    O.watch_seconds = -1;
    O.server_threads = 2;
    O.max_seconds = 900;
    O.user = "evsbench";
    O.seed = 42;
    snprintf(O.peers, sizeof O.peers, "%s%s%s%s", bh_redis_available() ? "redis," : "", bh_pg_available() ? "postgres," : "",
             bh_sqlite_available() ? "sqlite," : "", bh_nats_available() ? "nats," : "");
    int fill_set = 0, clients_set = 0, batches_set = 0, rates_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV() do { if (!v) { fprintf(stderr, "bench_http: %s needs a value\n", a); return 2; } i++; } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 1; }
        else if (!strcmp(a, "--quick")) O.quick = 1;
        else if (!strcmp(a, "--keep")) O.keep = 1;
        else if (!strcmp(a, "--skip-limits")) O.skip_limits = 1;
        else if (!strcmp(a, "--json")) { NEEDV(); O.json = v; }
        else if (!strcmp(a, "--dir")) { NEEDV(); O.dir = v; }
        else if (!strcmp(a, "--evstored")) { NEEDV(); O.evstored = v; }
        else if (!strcmp(a, "--peers")) { NEEDV(); scopy(O.peers, sizeof O.peers, v); }
        else if (!strcmp(a, "--only")) { NEEDV(); scopy(O.only, sizeof O.only, v); }
        else if (!strcmp(a, "--clients")) { NEEDV(); clients_set = 1; if ((O.nclients = parse_list_int(v, O.clients, 8)) <= 0) return 2; }
        else if (!strcmp(a, "--batches")) { NEEDV(); batches_set = 1; if ((O.nbatches = parse_list_int(v, O.batches, 8)) <= 0) return 2; }
        else if (!strcmp(a, "--batch-clients")) { NEEDV(); O.batch_clients = atoi(v); }
        else if (!strcmp(a, "--fill")) { NEEDV(); O.fill = strtoull(v, NULL, 10); fill_set = 1; }
        else if (!strcmp(a, "--watchers")) { NEEDV(); O.watchers = atoi(v); }
        else if (!strcmp(a, "--watch-rates")) {
            NEEDV();
            rates_set = 1;
            int t[4];
            O.nwatch_rates = parse_list_int(v, t, 4);
            if (O.nwatch_rates <= 0) return 2;
            for (int k = 0; k < O.nwatch_rates; k++) O.watch_rates[k] = t[k];
        }
        else if (!strcmp(a, "--watch-seconds")) { NEEDV(); O.watch_seconds = atof(v); }
        else if (!strcmp(a, "--open-rate")) { NEEDV(); O.open_rate = atof(v); }
        else if (!strcmp(a, "--seconds")) { NEEDV(); O.seconds = atof(v); }
        else if (!strcmp(a, "--warmup")) { NEEDV(); O.warmup_s = atof(v); }
        else if (!strcmp(a, "--server-threads")) { NEEDV(); O.server_threads = atoi(v); }
        else if (!strcmp(a, "--user")) { NEEDV(); O.user = v; }
        else if (!strcmp(a, "--max-seconds")) { NEEDV(); O.max_seconds = (unsigned)atoi(v); }
        else if (!strcmp(a, "--seed")) { NEEDV(); O.seed = strtoull(v, NULL, 10); }
        else { fprintf(stderr, "bench_http: unknown option %s (see --help)\n", a); return 2; }
#undef NEEDV
    }
    if (!strcmp(O.peers, "none")) O.peers[0] = 0;
    if (O.seconds < 0) O.seconds = O.quick ? 1.0 : 2.0;
    if (O.warmup_s < 0) O.warmup_s = O.quick ? 0.3 : 0.5;
    if (O.watch_seconds < 0) O.watch_seconds = O.quick ? 2.0 : 4.0;
    if (!clients_set) {
        static const int full[] = {1, 16, 64, 256}, quick[] = {1, 64};
        O.nclients = O.quick ? 2 : 4;
        memcpy(O.clients, O.quick ? quick : full, (size_t)O.nclients * sizeof(int));
    }
    if (!batches_set) {
        static const int full[] = {10, 100, 1000}, quick[] = {100};
        O.nbatches = O.quick ? 1 : 3;
        memcpy(O.batches, O.quick ? quick : full, (size_t)O.nbatches * sizeof(int));
    }
    if (!rates_set) {
        O.nwatch_rates = O.quick ? 1 : 2;
        O.watch_rates[0] = O.quick ? 50 : 10;
        O.watch_rates[1] = 50;
    }
    if (!fill_set) O.fill = O.quick ? 100000 : 300000;
    if (O.watchers < 1 || O.batch_clients < 1 || O.server_threads < 1) return 2;
    return 0;
}

static void print_header(void)
{
    char b[5][48];
    printf("bench_http — evstored over HTTP and its peers, on this machine, now\n\n");
    printf("machine: %ld CPUs (%s), %.1f GiB, %s\n", M.nproc, M.cpu, (double)M.mem_kib / 1048576.0, M.kernel);
    printf("data:    %s on %s (%s, mounted at %s)\n", g_base, M.fstype, M.device, M.mount);
    printf("source:  %s; server %s\n", M.source, O.evstored);
    printf("\nmachine limits (measured now, same filesystem):\n");
    printf("  fsync (4 KiB append + fdatasync): p50 %s, p99 %s, p99.9 %s, max %s, mean %s (= %.0f serial commits/s)\n",
           fmt_dur(b[0], 48, M.fsync_p50), fmt_dur(b[1], 48, M.fsync_p99), fmt_dur(b[2], 48, M.fsync_p999),
           fmt_dur(b[3], 48, M.fsync_max), fmt_dur(b[4], 48, (uint64_t)M.fsync_mean), M.fsync_mean > 0 ? 1e9 / M.fsync_mean : 0);
    printf("  sequential write, 1 MiB writes + fdatasync every 32 MiB: %.0f MB/s (write() alone %.0f MB/s, %.2f s in fdatasync)"
           " = %.0f events/s of 200-byte data\n",
           M.seq_mb_s, M.seq_write_mb_s, M.seq_sync_s, M.seq_mb_s * 1e6 / BH_DATA_LEN);
    printf("  page-cache read: %.0f MB/s\n", M.cache_read_mb_s);
    printf("  others' CPU at the start: %.2f of %ld cores\n\n", M.others_cores_at_start, M.nproc);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int rc = parse_args(argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    alarm(O.max_seconds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    char json_path[PATH_MAX];
    if (O.json) scopy(json_path, sizeof json_path, O.json);
    else default_json_path(json_path, sizeof json_path, argv[0]);

    const char *parent = O.dir ? O.dir : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(g_base, sizeof g_base, "%s/evs-bench-http-XXXXXX", parent);
    if (!mkdtemp(g_base)) { perror("mkdtemp"); return 1; }
    chmod(g_base, 0711);                   /* PostgreSQL's user must reach its own directory inside */
    uint64_t busy0, total0, busy1, total1;
    bh_machine_jiffies(&busy0, &total0);
    lg_sleep_ns(500000000u);
    bh_machine_jiffies(&busy1, &total1);
    probe_machine(g_base);
    M.others_cores_at_start = total1 > total0 ? (double)(busy1 - busy0) / (double)(total1 - total0) * (double)M.nproc : 0;
    if (!O.skip_limits) measure_limits(g_base);
    print_header();
    g_rstreams = (uint32_t)(O.fill / 200 ? O.fill / 200 : 1);

    char configs[2048] = "[";
    char why[512];
    char dir[PATH_MAX + 32];
    /* ---- start every system ---- */
    sysent *e = &g_sys[g_nsys];
    snprintf(dir, sizeof dir, "%s/evstore", g_base);
    if (evstore_start(&e->s, dir, "always", why, sizeof why) != 0) {
        fprintf(stderr, "bench_http: %s\n", why);
        bh_children_kill();
        if (!O.keep) bh_rm_rf(g_base);
        return 1;
    }
    scopy(e->label, sizeof e->label, "evstore");
    printf("== evstore: %s, pid %d, data %s\n", e->s.config, (int)e->s.pid, dir);
    g_nsys++;
    if (peer_wanted("redis")) {
        e = &g_sys[g_nsys];
        snprintf(dir, sizeof dir, "%s/redis", g_base);
        if (bh_redis_start(&e->s, dir, 1, why, sizeof why) != 0) {
            printf("== redis: skipped: %s\n", why);
            add_skipped("redis", "all", why);
        }
        else {
            scopy(e->label, sizeof e->label, "redis");
            printf("== redis: %s, pid %d (rows: redis-always, and redis-everysec by CONFIG SET)\n", e->s.config, (int)e->s.pid);
            g_nsys++;
        }
    }
    if (peer_wanted("postgres") && !g_stop) {
        e = &g_sys[g_nsys];
        snprintf(dir, sizeof dir, "%s/postgres", g_base);
        printf("== postgres: initdb ...\n");
        if (bh_pg_start(&e->s, dir, O.user, why, sizeof why) != 0) {
            printf("== postgres: skipped: %s\n", why);
            add_skipped("postgres", "all", why);
        }
        else {
            scopy(e->label, sizeof e->label, "postgres");
            printf("== postgres: %s, pid %d\n", e->s.config, (int)e->s.pid);
            g_nsys++;
        }
    }
    if (peer_wanted("sqlite")) {
        e = &g_sys[g_nsys];
        snprintf(dir, sizeof dir, "%s/sqlite", g_base);
        if (bh_sqlite_start(&e->s, dir, why, sizeof why) != 0) {
            printf("== sqlite: skipped: %s\n", why);
            add_skipped("sqlite", "all", why);
        } else {
            scopy(e->label, sizeof e->label, "sqlite");
            printf("== sqlite: %s\n", e->s.config);
            g_nsys++;
        }
    }
    if (peer_wanted("nats") && !g_stop) {
        /* evstore with JetStream 2.9's durability first (its rows run right before NATS's) */
        sysent *ei = &g_sys[g_nsys];
        snprintf(dir, sizeof dir, "%s/%s", g_base, EVS_INTERVAL_LABEL);
        int have_ei = evstore_start(&ei->s, dir, EVS_INTERVAL_FSYNC, why, sizeof why) == 0;
        if (!have_ei) printf("== %s: not started (%s): NATS rows will have no evstore ratio\n", EVS_INTERVAL_LABEL, why);
        else {
            scopy(ei->label, sizeof ei->label, EVS_INTERVAL_LABEL);
            ei->appends_only = 1;
            g_nsys++;
        }
        e = &g_sys[g_nsys];
        snprintf(dir, sizeof dir, "%s/nats", g_base);
        if (bh_nats_start(&e->s, dir, why, sizeof why) != 0) {
            printf("== nats: skipped: %s\n", why);
            add_skipped("nats", "all", why);
            if (have_ei) {                 /* it was only there to be compared with NATS */
                g_nsys--;
                ei->s.stop(&ei->s);
            }
        } else {
            scopy(e->label, sizeof e->label, "nats");
            if (have_ei)
                printf("== %s: %s, pid %d (append rows only, compared with NATS)\n", EVS_INTERVAL_LABEL, ei->s.config,
                       (int)ei->s.pid);
            printf("== nats: %s, pid %d (appends and the full read; no stream reads)\n", e->s.config, (int)e->s.pid);
            add_skipped("nats", "streams,mixed", "JetStream 2.9 has no request returning N messages of one subject "
                                                 "(it takes a consumer per read, or one direct get per message)");
            g_nsys++;
        }
    }
    for (int k = 0; k < g_nsys; k++) {
        size_t cl = strlen(configs);
        const char *cfg = g_sys[k].s.config;
        if (!strcmp(g_sys[k].s.name, "redis")) cfg = "redis-server 7, AOF on (appendfsync always; everysec rows by CONFIG SET), auto AOF rewrite off, no RDB";
        snprintf(configs + cl, sizeof configs - cl, "%s{\"system\":\"%s\",\"config\":\"%s\"}", k ? "," : "", g_sys[k].label, cfg);
    }
    printf("\n");
    /* ---- each workload on every system, back to back ---- */
    if (wants("single"))
        for (int i = 0; i < O.nclients && !g_stop; i++) single_group(O.clients[i], i == 0);
    if (wants("open") && !g_stop) open_group();
    if (wants("batch"))
        for (int i = 0; i < O.nbatches && !g_stop; i++) batch_group(O.batches[i]);
    if (wants("fill") && !g_stop) fill_group();
    if (wants("fullread"))
        for (int pass = 1; pass <= 2 && !g_stop; pass++) fullread_group(pass);
    if (wants("streams") && !g_stop) streams_group();
    if (wants("mixed") && !g_stop) mixed_group();
    if (wants("watch"))
        for (int i = 0; i < O.nwatch_rates && !g_stop; i++) run_watch(&g_sys[0].s, O.watch_rates[i]);
    for (int k = g_nsys - 1; k >= 0; k--) g_sys[k].s.stop(&g_sys[k].s);
    size_t cl = strlen(configs);
    snprintf(configs + cl, sizeof configs - cl, "]");
    if (g_probe_fd >= 0) close(g_probe_fd);

    print_header();
    print_tables();
    judge();
    print_verdicts();
    write_json(json_path, configs);
    printf("\nJSON: %s\n", json_path);
    bh_children_kill();
    if (!O.keep) bh_rm_rf(g_base);
    else printf("kept: %s\n", g_base);
    return g_stop ? 130 : 0;
}
