/*
 * torture_server.c — kill -9 torture of the real evstored over HTTP
 * (SPEC §3 durable acknowledgement, atomic appends, read committed,
 * optimistic concurrency, idempotent retries; SPEC §9 kill -9 under load).
 * Black-box: it starts build/evstored on a free loopback port with a fresh
 * data directory and talks to it with the raw-socket client of
 * tests/http/http_test.h only.
 *
 * A ROUND (parameters drawn from the round seed, which is printed):
 *   fresh data directory (tmpfs or the disk), evstored with a random
 *   --fsync (always, interval:MS, never), --segment-size, --threads; then
 *   1-3 KILL CYCLES and a last cycle (in half of the rounds a CLEAN CYCLE
 *   under load; else restart, verify, retry, stop). Each cycle:
 *    - sometimes the server is SIGKILLed while it starts (recovering);
 *    - start the server on the same data (bounded polling of /health);
 *    - VERIFY everything known so far against the whole log (below);
 *    - RETRY every unacknowledged batch with the same request and event ids:
 *      200 with the original result if it had landed, else 201 (or 409 if its
 *      expectation no longer holds); replay a few acknowledged ones (200,
 *      identical result);
 *    - LOAD: 8-12 writer threads append random batches (1-50 events, data
 *      10 B-64 KiB with multi-byte UTF-8, emoji, CJK, escapes, insignificant
 *      whitespace; client-chosen ids; optional metadata) to 4-120 streams
 *      (hot ones contended), through POST /streams/{s} (object, array, JSON
 *      Lines) and POST /events (array, JSON Lines, envelope with a
 *      condition), with random expected versions (none, any, no_stream,
 *      exists, exact N — N from what the writers saw acknowledged, sometimes
 *      off by one). Watchers beside them (watch=true on the global log, plain
 *      and SSE, on a stream prefix and on single streams) check order and
 *      contiguity as they go; readers (forward and backward log reads, stream
 *      reads, gets by id, the stream list, /health) check contiguity, whole
 *      batches at the end of the log and read-your-acknowledgements;
 *    - kill cycle: SIGKILL at a random moment once some appends were
 *      acknowledged; in a quarter of them SIGTERM first and the SIGKILL
 *      0-150 ms into the shutdown (what was acknowledged while draining
 *      survives; what was refused with 503 left nothing); clean cycle: stop the writers, wait until every watcher
 *      has seen everything (deadline: a commit never delivered fails it),
 *      SIGTERM with the readers still reading (exit 0; watches end with
 *      their last chunk; a read is whole or fails, never short), restart,
 *      verify;
 *    - at the end of the round: stop (SIGTERM, exit 0), evs_verify the
 *      directory offline, remove it.
 *
 * VERIFY (after every restart): the whole log read in pages, each line
 * parsed: positions contiguous from 1; versions contiguous per stream;
 * commit times never go backwards and are equal within a batch; every event
 * belongs to a batch a writer sent (ids encode writer, batch and index), is
 * byte-identical to what was sent (data and metadata as served: whitespace
 * outside strings dropped, nothing else changed), and every batch is whole,
 * in order, at most once (no partial batch, retries land exactly once);
 * every acknowledged event is at its acknowledged position, version and
 * time; a refused (409) batch is absent; a batch that landed satisfied its
 * expected versions and its condition (no matching event between `after`
 * and it); what a 409 said (`actual`) had been durable; every line a watcher
 * or reader saw before the kill is in the log at the same position with the
 * same bytes (so what watchers saw is a prefix of the log); stream reads,
 * the stream list, gets by id and a backward read agree with the log.
 *
 * On a failure: the round, its seed and the replay command, what failed,
 * the server's log; the data directory is kept; exit 1.
 *
 * RUN:
 *   build/tests/torture_server [--seconds N] [--rounds N] [--seed S]
 *                              [--first-round R] [--verbose]
 *   defaults: 60 seconds, a random seed. Replay one round:
 *   --seed S --first-round R --rounds 1 (the parameters and the random
 *   choices are the seed's; thread timing is not reproducible).
 *   EVS_BIN: the build directory holding evstored (else found next to this
 *   binary's directory). Data directories: $EVS_FAST_TMP or /dev/shm, and
 *   $EVS_TEST_TMP (disk) for about a third of the rounds.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* http_test.h and test_crash_common.h report failures through these: here
 * they end the run with the round's replay line, the server log, the data
 * directory kept. */
static void ts_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void ts_abort(void) __attribute__((noreturn));
#undef fail_msg
#define fail_msg(...) ts_fail(__VA_ARGS__)
#define TC_ABORT() ts_abort()

#include "../http/http_test.h"
#include "test_crash_common.h"

#include <xxhash.h>

#define MAX_WRITERS 12
#define MAX_WATCHERS 6
#define MAX_READERS 4
#define MAX_STREAMS 120
#define PAGE 2000

/* expectations: X_NONE = not given; otherwise EVS_EXPECT_* or N >= 0 */
#define X_NONE (-10)
enum { B_UNSENT, B_ACKED, B_REJECTED, B_UNKNOWN };
enum { SH_OBJECT, SH_ARRAY, SH_NDJSON, SH_ENVELOPE };

/* ------------------------------------------------------------ the model */

typedef struct evrec {
    char id[37];
    uint16_t stream;
    uint8_t type;
    uint8_t meta;                    /* 0: none; 1-3: a metadata variant */
    int64_t expected;                /* POST /events: this event's expectation (X_NONE: not given) */
    uint64_t dseed;                  /* regenerates the data */
    uint32_t dtarget;                /* its approximate size */
    /* acknowledged (or, for an unacknowledged batch, found in the log) */
    uint64_t position, version;
    char time[40];
} evrec;

typedef struct batch {
    uint32_t seq, n;
    uint8_t writer, multi, shape, pretty;
    uint16_t stream;                 /* single-stream target */
    int64_t expected;                /* single-stream expectation (X_NONE: no parameter) */
    uint8_t has_cond, cond_types, cond_prefix, cond_type;
    uint16_t cond_group;
    uint64_t cond_after;
    evrec *ev;
    int status;                      /* B_* */
    int http;                        /* the last answer's status */
    int cycle;                       /* when it was first sent */
    int conflict;                    /* 409: 1 wrong_expected_version, 2 condition_failed */
    uint16_t conflict_stream;
    uint64_t conflict_durable;       /* the version the 409 reported, minus this batch's own earlier events */
    uint64_t first;                  /* acknowledged first position */
    uint64_t found;                  /* VERIFY scratch: first position in the log, 0 if absent */
    uint32_t found_n;
} batch;

typedef struct writer {
    int idx;
    uint64_t rng;
    batch **b;
    size_t nb, cap;
    pthread_t th;
} writer;

typedef struct watcher {
    int idx, kind;                   /* 0 global, 1 global SSE, 2 stream prefix, 3 one stream */
    uint16_t stream, group;
    uint64_t from;
    _Atomic uint64_t last_pos, last_ver, lines;
    int end_rc;                      /* how its answer ended (after SIGTERM: 0, a clean end) */
    int done;
    pthread_t th;
} watcher;

typedef struct reader {
    int idx;
    uint64_t rng;
    pthread_t th;
} reader;

static const char *const groups[3] = {"acct/", "\xe6\xb3\xa8\xe6\x96\x87/", "\xf0\x9f\x9a\x80-ops/"}; /* 注文/, 🚀-ops/ */
static const char *const types[] = {"Placed", "\xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9", /* Ünïcödé */
                                    "\xe6\xb3\xa8\xe6\x96\x87\xe6\xb8\x88\xe3\x81\xbf", /* 注文済み */
                                    "\xf0\x9f\x9a\x80Launched", "x", "Item.Added"};
#define NTYPES (sizeof types / sizeof types[0])

/* everything about the round in progress (one at a time) */
static struct {
    uint64_t seed, round, rseed;
    const char *argv0;
    char desc[1600];
    char root_fast[512], root_disk[512];
    ht_server srv;
    char a_fsync[32], a_seg[32], a_threads[16];
    int nwriters, nwatchers, nreaders, nstreams, kills, disk, cycle;
    uint8_t salt[2];
    char names[MAX_STREAMS][64];
    char pct[MAX_STREAMS][200];
    writer w[MAX_WRITERS];
    watcher wt[MAX_WATCHERS];
    reader rd[MAX_READERS];
    _Atomic int64_t known_version[MAX_STREAMS]; /* highest acknowledged version */
    _Atomic uint64_t known_pos;                 /* highest acknowledged position */
    atomic_int stop_writers, stop, killing;
    atomic_int terminating, stop_readers;                     /* SIGTERM sent: refusals and cut reads are fine, short clean ones not */
    atomic_ulong acks;                          /* answers 201 in this cycle */
} RS;

/* the observation table: hash and length of the line any reader or watcher saw at a position */
typedef struct obs { uint64_t hash; uint32_t len; uint32_t who; } obs;
static pthread_mutex_t obs_mu = PTHREAD_MUTEX_INITIALIZER;
static obs *obs_tab;
static size_t obs_cap;

/* run statistics */
static struct {
    uint64_t rounds, kills, term_kills, recovery_kills, clean, events_verified, verifications;
    uint64_t acked_batches, acked_events, rejected_version, rejected_cond, rejected_stopping, unknown;
    uint64_t retry_landed_before, retry_landed_now, retry_refused, replays;
    _Atomic uint64_t lost_conn;
    _Atomic uint64_t watch_lines, read_lines, reads;
    uint64_t max_log;
} ST;

static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;

static void print_server_log(void)
{
    if (!RS.srv.log[0]) return;
    int fd = open(RS.srv.log, O_RDONLY);
    if (fd < 0) { fprintf(stderr, "(no server log at %s)\n", RS.srv.log); return; }
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > 16384 ? end - 16384 : 0;
    char *buf = malloc(16385);
    ssize_t n = buf ? pread(fd, buf, 16384, from) : -1;
    close(fd);
    fprintf(stderr, "---- server log %s (%s%lld bytes):\n", RS.srv.log, from ? "last 16384 of " : "", (long long)end);
    if (n > 0) fwrite(buf, 1, (size_t)n, stderr);
    fprintf(stderr, "---- end of server log\n");
    free(buf);
}

static void ts_vfail(const char *fmt, va_list ap)
{
    pthread_mutex_lock(&fail_mu); /* the first failing thread reports; others wait for _exit */
    if (RS.srv.pid) kill(RS.srv.pid, SIGKILL);
    fprintf(stderr, "\nTORTURE_SERVER FAILED in round %" PRIu64 " (round seed %" PRIu64 "), cycle %d: %s\n    ", RS.round,
            RS.rseed, RS.cycle, RS.desc);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    print_server_log();
    fprintf(stderr, "data kept in %s\nreplay: %s --seed %" PRIu64 " --first-round %" PRIu64 " --rounds 1 --verbose\n",
            RS.srv.dir, RS.argv0, RS.seed, RS.round);
    fflush(stderr);
    _exit(1);
}

static void ts_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ts_vfail(fmt, ap);
    va_end(ap);
    _exit(1);
}

static void ts_abort(void) { ts_fail("a check of test_crash_common.h failed (above)"); }

static int verbose;
static double t_start;
static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    if (!verbose) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  [%7.3f] ", tc_now() - t_start);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Fails if the server exited while nobody was killing it. Any thread; the
 * child is not reaped (WNOWAIT), so only the main thread ever reaps it. */
static void server_alive(void)
{
    pid_t pid = RS.srv.pid;
    if (!pid || atomic_load(&RS.killing) || atomic_load(&RS.terminating)) return;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid && !atomic_load(&RS.killing) &&
        !atomic_load(&RS.terminating))
        ts_fail("evstored died by itself (%s %d) while not being killed", si.si_code == CLD_EXITED ? "exit status" : "signal",
                si.si_status);
}

static void atomic_max_u64(_Atomic uint64_t *a, uint64_t v)
{
    uint64_t cur = atomic_load(a);
    while (cur < v && !atomic_compare_exchange_weak(a, &cur, v)) {}
}

static void atomic_max_i64(_Atomic int64_t *a, int64_t v)
{
    int64_t cur = atomic_load(a);
    while (cur < v && !atomic_compare_exchange_weak(a, &cur, v)) {}
}

/* ------------------------------------------------- growing byte buffers */

typedef struct gb { char *p; size_t len, cap; } gb;

static void gb_put(gb *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->len + n + 1) c *= 2;
        char *p = realloc(b->p, c);
        if (!p) ts_fail("out of memory");
        b->p = p;
        b->cap = c;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void gb_puts(gb *b, const char *s) { gb_put(b, s, strlen(s)); }

static void gb_printf(gb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void gb_printf(gb *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    gb_put(b, tmp, (size_t)n);
}

/* -------------------------------------------------- data and metadata */

/* Pieces of string content: raw multi-byte UTF-8 and JSON escapes, all kept
 * byte for byte by the server. */
static const char *const pieces[] = {
    "plain ", "caf\xc3\xa9", "\xf0\x9f\x98\x80", "\xe4\xb8\xad\xe6\x96\x87", "\xe5\xaf\xbf\xe5\x8f\xb8",
    "\xf0\x9f\x8d\x95", "\\u00e9", "\\\"q\\\"", "\\\\", "\\ud83d\\ude80", "\\n", "\\t", "\\/", "\xc3\x9f",
    "\xce\xa9", "\xf0\x9d\x84\x9e", "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4", "abc", "0123456789", " "};
#define NPIECES (sizeof pieces / sizeof pieces[0])
static const char *const numbers[] = {"129.95", "12345678901234567890", "-0.0", "1e400", "7", "0.1", "-42", "3.5E-7"};
#define NNUMBERS (sizeof numbers / sizeof numbers[0])

/* A token in both forms; insignificant whitespace goes to the sent form only. */
typedef struct gen { gb *sent, *served; uint64_t r, ws; int pretty; } gen;

static void tok(gen *g, const char *s)
{
    gb_puts(g->sent, s);
    gb_puts(g->served, s);
}

static void ws(gen *g)
{
    if (!g->pretty) return;
    static const char *const w[] = {"", " ", "\t", "  ", " \t"};
    gb_puts(g->sent, w[evs_test_rand_range(&g->ws, 0, 4)]);
}

static void fill(gen *g, size_t n)
{
    size_t start = g->served->len;
    while (g->served->len - start < n) tok(g, pieces[evs_test_rand_range(&g->r, 0, NPIECES - 1)]);
}

static void gstring(gen *g, size_t n)
{
    tok(g, "\"");
    fill(g, n);
    tok(g, "\"");
}

/* The data of an event: about target bytes as served (10 B - 64 KiB). */
static void gen_data(uint64_t seed, uint32_t target, int pretty, gb *sent, gb *served)
{
    gen g = {sent, served, seed, seed ^ 0x5753ull, pretty};
    char num[32];
    size_t t = target;
    unsigned kind = t < 40 ? (unsigned)evs_test_rand_range(&g.r, 0, 1) : (unsigned)evs_test_rand_range(&g.r, 2, 4);
    switch (kind) {
    case 0: /* a string */
        gstring(&g, t > 2 ? t - 2 : 1);
        break;
    case 1: /* a short array */
        tok(&g, "[");
        ws(&g);
        tok(&g, numbers[evs_test_rand_range(&g.r, 0, NNUMBERS - 1)]);
        ws(&g);
        tok(&g, ",");
        ws(&g);
        gstring(&g, t > 16 ? t - 16 : 1);
        ws(&g);
        tok(&g, "]");
        break;
    case 2: /* an object */
        tok(&g, "{");
        ws(&g);
        tok(&g, "\"seq\"");
        ws(&g);
        tok(&g, ":");
        ws(&g);
        snprintf(num, sizeof num, "%" PRIu64, evs_test_rand(&g.r) >> 11);
        tok(&g, num);
        ws(&g);
        tok(&g, ",");
        ws(&g);
        tok(&g, "\"text\"");
        ws(&g);
        tok(&g, ":");
        ws(&g);
        gstring(&g, t > 91 ? t - 90 : 1);
        ws(&g);
        tok(&g, ",");
        tok(&g, "\"n\":");
        ws(&g);
        tok(&g, numbers[evs_test_rand_range(&g.r, 0, NNUMBERS - 1)]);
        tok(&g, ",");
        ws(&g);
        tok(&g, "\"tags\"");
        ws(&g);
        tok(&g, ":");
        tok(&g, "[");
        ws(&g);
        tok(&g, "true");
        ws(&g);
        tok(&g, ",");
        tok(&g, "null");
        tok(&g, ",");
        ws(&g);
        tok(&g, "\"\xc3\xbc\"");
        ws(&g);
        tok(&g, "]");
        ws(&g);
        tok(&g, "}");
        break;
    case 3: /* an array with nesting */
        tok(&g, "[");
        gstring(&g, t > 61 ? t - 60 : 1);
        tok(&g, ",");
        ws(&g);
        tok(&g, numbers[evs_test_rand_range(&g.r, 0, NNUMBERS - 1)]);
        ws(&g);
        tok(&g, ",");
        tok(&g, "{");
        ws(&g);
        tok(&g, "\"k\"");
        tok(&g, ":");
        ws(&g);
        tok(&g, "\"v\"");
        tok(&g, ",");
        tok(&g, "\"deep\":[[],{},[[false]]]");
        ws(&g);
        tok(&g, "}");
        tok(&g, "]");
        break;
    default: /* UTF-8 keys */
        tok(&g, "{");
        tok(&g, "\"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87\"");  /* ключ */
        ws(&g);
        tok(&g, ":");
        ws(&g);
        tok(&g, "{");
        tok(&g, "\"\xe5\x80\xbc\"");                      /* 值 */
        tok(&g, ":");
        gstring(&g, t > 41 ? t - 40 : 1);
        tok(&g, "}");
        ws(&g);
        tok(&g, ",");
        tok(&g, "\"e\":[]");
        ws(&g);
        tok(&g, "}");
        break;
    }
}

static void gen_meta(uint64_t seed, int variant, int pretty, gb *sent, gb *served)
{
    gen g = {sent, served, seed ^ 0x6d657461ull, seed ^ 0x7773ull, pretty};
    char hex[40];
    switch (variant) {
    case 1:
        tok(&g, "{");
        ws(&g);
        tok(&g, "\"by\":\"ann\"");
        ws(&g);
        tok(&g, "}");
        break;
    case 2:
        snprintf(hex, sizeof hex, "\"%016" PRIx64 "\"", seed);
        tok(&g, "{\"trace\":");
        ws(&g);
        tok(&g, hex);
        tok(&g, ",");
        ws(&g);
        tok(&g, "\"\xc3\xbc\":\"\xe5\xaf\xbf\xe5\x8f\xb8\"}");
        break;
    default:
        tok(&g, "{\"tags\":[");
        ws(&g);
        tok(&g, "\"a\",\"\xf0\x9f\x98\x80\"");
        ws(&g);
        tok(&g, "],\"n\":-0.0}");
        break;
    }
}

/* What the server serves after ,"data": for this event. */
static void expected_tail(const evrec *e, gb *out)
{
    gb sent = {0};
    out->len = 0;
    gen_data(e->dseed, e->dtarget, 0, &sent, out);
    if (e->meta) {
        gb_puts(out, ",\"metadata\":");
        sent.len = 0;
        gen_meta(e->dseed, e->meta, 0, &sent, out);
    }
    gb_puts(out, "}");
    free(sent.p);
}

/* ------------------------------------------------------------ event ids */

/* Ids encode where an event came from: writer, batch, index and size of the
 * batch, and the round's salt; so any line read back is traced to its batch. */
static void make_id(evrec *e, const batch *b, uint32_t i, uint64_t *r)
{
    uint8_t x[16];
    evs_test_rand_bytes(r, x, sizeof x);
    x[0] = b->writer;
    x[1] = (uint8_t)i;
    x[2] = (uint8_t)b->n;
    x[3] = (uint8_t)(b->seq >> 16);
    x[4] = (uint8_t)(b->seq >> 8);
    x[5] = (uint8_t)b->seq;
    x[6] = (uint8_t)(0x40 | (RS.salt[0] & 0x0f));
    x[7] = RS.salt[1];
    x[8] = (uint8_t)(0x80 | (x[8] & 0x3f));
    snprintf(e->id, sizeof e->id, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", x[0], x[1], x[2],
             x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10], x[11], x[12], x[13], x[14], x[15]);
}

typedef struct idinfo { uint8_t writer, idx, n; uint32_t seq; } idinfo;

static int hexv(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; }

/* 0 if id is one of this round's (by its salt), -1 otherwise. */
static int decode_id(const char *id, idinfo *out)
{
    uint8_t x[16];
    if (strlen(id) != 36) return -1;
    for (int i = 0, o = 0; i < 36 && o < 16;) {
        if (id[i] == '-') { i++; continue; }
        int h = hexv(id[i]), l = hexv(id[i + 1]);
        if (h < 0 || l < 0) return -1;
        x[o++] = (uint8_t)(h << 4 | l);
        i += 2;
    }
    if ((x[6] & 0x0f) != (RS.salt[0] & 0x0f) || x[7] != RS.salt[1]) return -1;
    out->writer = x[0];
    out->idx = x[1];
    out->n = x[2];
    out->seq = (uint32_t)x[3] << 16 | (uint32_t)x[4] << 8 | x[5];
    return out->idx < out->n ? 0 : -1;
}

/* The batch an id names, or NULL. Main thread only (writers not running). */
static batch *batch_of(const idinfo *in)
{
    if (in->writer >= RS.nwriters) return NULL;
    writer *w = &RS.w[in->writer];
    if (in->seq >= w->nb) return NULL;
    batch *b = w->b[in->seq];
    return b->n == in->n ? b : NULL;
}

/* -------------------------------------------------------- parsing lines */

typedef struct linfo {
    uint64_t position, version;
    char stream[300], id[40], type[300], time[40];
    size_t tail;                     /* offset of the data value */
} linfo;

/* An event line: the envelope up to ,"data": parsed with jansson (the first
 * unescaped ,"data": is the field: quotes inside strings are escaped). */
static int parse_line(const char *line, size_t len, linfo *li, char *why, size_t cap)
{
    const char *d = len > 10 ? memmem(line, len, ",\"data\":", 8) : NULL;
    if (line[0] != '{' || !d || line[len - 1] != '}') {
        snprintf(why, cap, "not an event line: %.300s", line);
        return -1;
    }
    size_t k = (size_t)(d - line);
    char *copy = malloc(k + 2);
    memcpy(copy, line, k);
    copy[k] = '}';
    json_error_t je;
    json_t *j = json_loadb(copy, k + 1, JSON_REJECT_DUPLICATES, &je);
    free(copy);
    json_t *p = j ? json_object_get(j, "position") : NULL, *s = j ? json_object_get(j, "stream") : NULL;
    json_t *v = j ? json_object_get(j, "version") : NULL, *i = j ? json_object_get(j, "id") : NULL;
    json_t *t = j ? json_object_get(j, "type") : NULL, *tm = j ? json_object_get(j, "time") : NULL;
    if (!j || json_object_size(j) != 6 || !json_is_integer(p) || !json_is_string(s) || !json_is_integer(v) ||
        !json_is_string(i) || !json_is_string(t) || !json_is_string(tm) || strncmp(line, "{\"position\":", 12) != 0) {
        snprintf(why, cap, "malformed event envelope (expected position, stream, version, id, type, time, data): %.300s", line);
        json_decref(j);
        return -1;
    }
    li->position = (uint64_t)json_integer_value(p);
    li->version = (uint64_t)json_integer_value(v);
    snprintf(li->stream, sizeof li->stream, "%s", json_string_value(s));
    snprintf(li->id, sizeof li->id, "%s", json_string_value(i));
    snprintf(li->type, sizeof li->type, "%s", json_string_value(t));
    snprintf(li->time, sizeof li->time, "%s", json_string_value(tm));
    li->tail = k + 8;
    json_decref(j);
    return 0;
}

static int stream_index(const char *name)
{
    for (int i = 0; i < RS.nstreams; i++)
        if (!strcmp(RS.names[i], name)) return i;
    return -1;
}

/* Record that someone saw line at position pos; two sightings must agree. */
static void observe(uint64_t pos, const char *line, size_t len, uint32_t who)
{
    uint64_t h = XXH3_64bits(line, len);
    pthread_mutex_lock(&obs_mu);
    if (pos >= obs_cap) {
        size_t c = obs_cap ? obs_cap : 4096;
        while (c <= pos) c *= 2;
        obs *o = realloc(obs_tab, c * sizeof *o);
        if (!o) ts_fail("out of memory");
        memset(o + obs_cap, 0, (c - obs_cap) * sizeof *o);
        obs_tab = o;
        obs_cap = c;
    }
    obs *o = &obs_tab[pos];
    if (o->len && (o->hash != h || o->len != len)) {
        pthread_mutex_unlock(&obs_mu);
        ts_fail("two reads saw different bytes at position %" PRIu64 " (client %u, earlier client %u); now: %.400s", pos,
                who, o->who, line);
    }
    o->hash = h;
    o->len = (uint32_t)len;
    o->who = who;
    pthread_mutex_unlock(&obs_mu);
}

/* Forward order of two events read next to each other in the global log:
 * a batch is contiguous and whole. NULL if fine. */
static const char *batch_follow(const idinfo *prev, const idinfo *cur)
{
    if (prev->idx + 1 < prev->n) {
        if (cur->writer != prev->writer || cur->seq != prev->seq || cur->idx != prev->idx + 1)
            return "an event of another batch (or a gap) in the middle of a batch";
    } else if (cur->idx != 0) {
        return "a batch that does not start with its first event";
    }
    return NULL;
}

/* ------------------------------------------------------ building requests */

static void exp_text(int64_t e, char *out, size_t cap)
{
    if (e == EVS_EXPECT_ANY) snprintf(out, cap, "any");
    else if (e == EVS_EXPECT_NO_STREAM) snprintf(out, cap, "no_stream");
    else if (e == EVS_EXPECT_EXISTS) snprintf(out, cap, "exists");
    else snprintf(out, cap, "%" PRId64, e);
}

/* The same bytes every time for the same batch: a retry is the same request. */
static void build_request(const batch *b, gb *body, char *path, size_t pcap, char *hdr, size_t hcap)
{
    uint64_t r = ((uint64_t)b->writer << 32 | b->seq) ^ RS.rseed; /* layout choices */
    gb sent = {0}, served = {0};
    body->len = 0;
    hdr[0] = 0;
    int nd = b->shape == SH_NDJSON;
    if (nd) snprintf(hdr, hcap, "Content-Type: application/x-ndjson\r\n");
    else if (evs_test_rand_range(&r, 0, 1)) snprintf(hdr, hcap, "Content-Type: application/json\r\n");
    if (b->shape == SH_ENVELOPE) gb_puts(body, "{\"events\":[");
    else if (b->shape == SH_ARRAY) gb_puts(body, evs_test_rand_range(&r, 0, 1) ? "[\n" : "[");
    unsigned order = (unsigned)evs_test_rand_range(&r, 0, 2);
    for (uint32_t i = 0; i < b->n; i++) {
        const evrec *e = &b->ev[i];
        if (i) gb_puts(body, nd ? (evs_test_rand_range(&r, 0, 5) ? "\n" : "\n\n") : (b->pretty ? ",\n " : ","));
        gb_puts(body, "{");
        char f_id[64], f_stream[120], f_type[120], f_exp[64];
        snprintf(f_id, sizeof f_id, "\"id\":\"%s\"", e->id);
        snprintf(f_stream, sizeof f_stream, "\"stream\":\"%s\"", RS.names[e->stream]);
        snprintf(f_type, sizeof f_type, "\"type\":\"%s\"", types[e->type]);
        f_exp[0] = 0;
        if (b->multi && e->expected != X_NONE) {
            if (e->expected >= 0) snprintf(f_exp, sizeof f_exp, "\"expected_version\":%" PRId64, e->expected);
            else {
                char t[16];
                exp_text(e->expected, t, sizeof t);
                snprintf(f_exp, sizeof f_exp, "\"expected_version\":\"%s\"", t);
            }
        }
        const char *head[4] = {f_id, b->multi ? f_stream : NULL, f_type, f_exp[0] ? f_exp : NULL};
        int first = 1;
        for (int k = 0; k < 4; k++) {
            const char *f = head[(k + (int)order) % 4];
            if (!f) continue;
            if (!first) gb_puts(body, ",");
            gb_puts(body, f);
            first = 0;
        }
        sent.len = served.len = 0;
        gen_data(e->dseed, e->dtarget, b->pretty, &sent, &served);
        gb_puts(body, b->pretty ? ", \"data\" : " : ",\"data\":");
        gb_put(body, sent.p, sent.len);
        if (e->meta) {
            sent.len = served.len = 0;
            gen_meta(e->dseed, e->meta, b->pretty, &sent, &served);
            gb_puts(body, ",\"metadata\":");
            gb_put(body, sent.p, sent.len);
        }
        gb_puts(body, "}");
    }
    if (b->shape == SH_ARRAY) gb_puts(body, "]");
    if (b->shape == SH_ENVELOPE) {
        gb_puts(body, "]");
        if (b->has_cond) {
            gb_puts(body, ",\"condition\":{\"filter\":{");
            if (b->cond_prefix) gb_printf(body, "\"stream_prefix\":\"%s\"", groups[b->cond_group]);
            if (b->cond_types) gb_printf(body, "%s\"types\":[\"%s\",\"x\"]", b->cond_prefix ? "," : "", types[b->cond_type]);
            gb_printf(body, "},\"after\":%" PRIu64 "}", b->cond_after);
        }
        gb_puts(body, "}");
    }
    if (nd && evs_test_rand_range(&r, 0, 1)) gb_puts(body, "\n");
    if (b->multi) {
        snprintf(path, pcap, "/events");
    } else if (b->expected == X_NONE) {
        snprintf(path, pcap, "/streams/%s", RS.pct[b->stream]);
    } else {
        char t[32];
        exp_text(b->expected, t, sizeof t);
        snprintf(path, pcap, "/streams/%s?expected_version=%s", RS.pct[b->stream], t);
    }
    free(sent.p);
    free(served.p);
}

static uint16_t pick_stream(uint64_t *r)
{
    uint64_t hot = RS.nstreams < 4 ? (uint64_t)RS.nstreams : 4;
    if (evs_test_rand_range(r, 0, 9) < 4) return (uint16_t)evs_test_rand_range(r, 0, hot - 1);
    return (uint16_t)evs_test_rand_range(r, 0, (uint64_t)RS.nstreams - 1);
}

/* An expectation for a stream believed at version `known`. */
static int64_t pick_expected(uint64_t *r, int64_t known, int allow_none)
{
    unsigned k = (unsigned)evs_test_rand_range(r, allow_none ? 0 : 30, 99);
    if (k < 30) return X_NONE;
    if (k < 40) return EVS_EXPECT_ANY;
    if (k < 50) return EVS_EXPECT_NO_STREAM;
    if (k < 55) return EVS_EXPECT_EXISTS;
    unsigned off = (unsigned)evs_test_rand_range(r, 0, 9);
    if (off == 0) return known + 1;
    if (off == 1 && known > 0) return known - 1;
    return known;
}

static uint32_t pick_size(uint64_t *r, unsigned cls)
{
    /* log-uniform inside the class: small 10 B-1 KiB, medium 1-16 KiB, large 16-64 KiB */
    unsigned lo = cls == 0 ? 3 : cls == 1 ? 10 : 14, hi = cls == 0 ? 9 : cls == 1 ? 13 : 15;
    unsigned e = (unsigned)evs_test_rand_range(r, lo, hi);
    uint32_t v = (uint32_t)evs_test_rand_range(r, 1u << e, (2u << e) - 1);
    if (v < 10) v = 10;
    if (v > 65536) v = 65536;
    return v;
}

static batch *new_batch(writer *w)
{
    uint64_t *r = &w->rng;
    batch *b = calloc(1, sizeof *b);
    if (!b) ts_fail("out of memory");
    b->seq = (uint32_t)w->nb;
    b->writer = (uint8_t)w->idx;
    b->n = evs_test_rand_range(r, 0, 3) == 0 ? (uint32_t)evs_test_rand_range(r, 1, 50) : (uint32_t)evs_test_rand_range(r, 1, 10);
    b->multi = evs_test_rand_range(r, 0, 2) == 0;
    b->pretty = evs_test_rand_range(r, 0, 3) == 0;
    unsigned cls_pick = (unsigned)evs_test_rand_range(r, 0, 99);
    unsigned cls = cls_pick < 70 ? 0 : cls_pick < 95 ? 1 : 2;
    b->ev = calloc(b->n, sizeof *b->ev);
    if (!b->ev) ts_fail("out of memory");
    b->cycle = RS.cycle;
    if (!b->multi) {
        b->stream = pick_stream(r);
        b->expected = pick_expected(r, atomic_load(&RS.known_version[b->stream]), 1);
        b->shape = b->n == 1 && evs_test_rand_range(r, 0, 1) ? SH_OBJECT : evs_test_rand_range(r, 0, 2) ? SH_ARRAY : SH_NDJSON;
    } else {
        b->expected = X_NONE;
        b->has_cond = evs_test_rand_range(r, 0, 4) == 0;
        b->shape = b->has_cond ? SH_ENVELOPE : (unsigned)evs_test_rand_range(r, 0, 3) == 0 ? SH_ENVELOPE
                                                 : evs_test_rand_range(r, 0, 1) ? SH_ARRAY : SH_NDJSON;
        if (b->has_cond) {
            unsigned ck = (unsigned)evs_test_rand_range(r, 0, 2);
            b->cond_prefix = ck != 1;
            b->cond_types = ck != 0;
            b->cond_group = (uint16_t)evs_test_rand_range(r, 0, 2);
            b->cond_type = (uint8_t)evs_test_rand_range(r, 0, NTYPES - 1);
            uint64_t kp = atomic_load(&RS.known_pos);
            uint64_t back = evs_test_rand_range(r, 0, 3);
            b->cond_after = kp > back ? kp - back : 0;
        }
    }
    for (uint32_t i = 0; i < b->n; i++) {
        evrec *e = &b->ev[i];
        make_id(e, b, i, r);
        e->stream = b->multi ? pick_stream(r) : b->stream;
        e->type = (uint8_t)evs_test_rand_range(r, 0, NTYPES - 1);
        e->meta = evs_test_rand_range(r, 0, 9) < 3 ? (uint8_t)evs_test_rand_range(r, 1, 3) : 0;
        e->dseed = evs_test_rand(r);
        e->dtarget = pick_size(r, evs_test_rand_range(r, 0, 4) == 0 ? (unsigned)evs_test_rand_range(r, 0, 2) : cls);
        e->expected = X_NONE;
        if (b->multi && evs_test_rand_range(r, 0, 9) < 3) {
            int64_t before = 0; /* earlier events of this stream in the batch */
            for (uint32_t j = 0; j < i; j++) before += b->ev[j].stream == e->stream;
            e->expected = pick_expected(r, atomic_load(&RS.known_version[e->stream]) + before, 0);
        }
    }
    if (w->nb == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 256;
        w->b = realloc(w->b, w->cap * sizeof *w->b);
        if (!w->b) ts_fail("out of memory");
    }
    w->b[w->nb++] = b;
    return b;
}

/* The expectation of event i (single-stream: the parameter applies to the
 * first event; POST /events: the event's own). */
static int64_t expectation_of(const batch *b, uint32_t i)
{
    if (!b->multi) return i == 0 ? b->expected : X_NONE;
    return b->ev[i].expected;
}

/* Does version v of event i satisfy its expectation? */
static int expectation_met(int64_t e, uint64_t v)
{
    if (e == X_NONE || e == EVS_EXPECT_ANY) return 1;
    if (e == EVS_EXPECT_NO_STREAM) return v == 1;
    if (e == EVS_EXPECT_EXISTS) return v >= 2;
    return v == (uint64_t)e + 1;
}

/* ---------------------------------------------------- append answers */

/* Check a 201/200 answer against the batch and record it. 0, or -1 with why. */
static int take_success(batch *b, const ht_resp *r, char *why, size_t cap)
{
    json_error_t je;
    json_t *j = json_loadb(r->body, r->len, 0, &je);
    json_t *evs = j ? json_object_get(j, "events") : NULL;
    json_t *fp = j ? json_object_get(j, "first_position") : NULL, *lp = j ? json_object_get(j, "last_position") : NULL;
    if (!json_is_array(evs) || json_array_size(evs) != b->n || !json_is_integer(fp) || !json_is_integer(lp)) {
        snprintf(why, cap, "%d with a malformed answer: %.400s", r->status, r->body);
        json_decref(j);
        return -1;
    }
    uint64_t first = (uint64_t)json_integer_value(fp), last = (uint64_t)json_integer_value(lp);
    if (first == 0 || last != first + b->n - 1) {
        snprintf(why, cap, "positions %" PRIu64 "..%" PRIu64 " for a batch of %u events: %.300s", first, last, b->n, r->body);
        json_decref(j);
        return -1;
    }
    for (uint32_t i = 0; i < b->n; i++) {
        json_t *e = json_array_get(evs, i);
        const char *id = json_string_value(json_object_get(e, "id")), *st = json_string_value(json_object_get(e, "stream"));
        const char *tm = json_string_value(json_object_get(e, "time"));
        json_t *pv = json_object_get(e, "position"), *vv = json_object_get(e, "version");
        evrec *x = &b->ev[i];
        if (!id || !st || !tm || !json_is_integer(pv) || !json_is_integer(vv) || strcmp(id, x->id) ||
            strcmp(st, RS.names[x->stream]) || (uint64_t)json_integer_value(pv) != first + i || json_integer_value(vv) < 1) {
            snprintf(why, cap, "%d answer does not match the request at event %u (id %s, stream %s, position %" PRIu64 "): %.400s",
                     r->status, i, x->id, RS.names[x->stream], first + i, r->body);
            json_decref(j);
            return -1;
        }
        uint64_t v = (uint64_t)json_integer_value(vv);
        if (!expectation_met(expectation_of(b, i), v)) {
            char t[32];
            exp_text(expectation_of(b, i), t, sizeof t);
            snprintf(why, cap, "%d but event %u got version %" PRIu64 " although it expected %s: %.300s", r->status, i, v, t,
                     r->body);
            json_decref(j);
            return -1;
        }
        for (uint32_t k = i; k-- > 0;) /* the previous event of the same stream in the batch is version - 1 */
            if (b->ev[k].stream == x->stream) {
                if (b->ev[k].version + 1 != v) {
                    snprintf(why, cap, "%d: event %u of stream %s has version %" PRIu64 ", its predecessor in the batch %" PRIu64,
                             r->status, i, RS.names[x->stream], v, b->ev[k].version);
                    json_decref(j);
                    return -1;
                }
                break;
            }
        if (i && strcmp(tm, b->ev[0].time)) {
            snprintf(why, cap, "%d: one batch with two commit times (%s and %s)", r->status, b->ev[0].time, tm);
            json_decref(j);
            return -1;
        }
        x->position = first + i;
        x->version = v;
        snprintf(x->time, sizeof x->time, "%s", tm);
    }
    json_decref(j);
    b->first = first;
    return 0;
}

/* A 409: which one, and is it consistent with what was sent? */
static int take_conflict(batch *b, const ht_resp *r, char *why, size_t cap)
{
    json_error_t je;
    json_t *j = json_loadb(r->body, r->len, 0, &je);
    const char *code = j ? json_string_value(json_object_get(j, "error")) : NULL;
    int rc = -1;
    if (code && !strcmp(code, "condition_failed")) {
        if (!b->has_cond) snprintf(why, cap, "409 condition_failed for a batch without a condition: %.300s", r->body);
        else { b->conflict = 2; rc = 0; }
    } else if (code && !strcmp(code, "wrong_expected_version")) {
        json_t *ix = json_object_get(j, "index"), *ac = json_object_get(j, "actual");
        const char *st = json_string_value(json_object_get(j, "stream"));
        uint32_t i = b->multi ? (json_is_integer(ix) ? (uint32_t)json_integer_value(ix) : UINT32_MAX) : 0;
        if (i >= b->n || !st || !json_is_integer(ac) || strcmp(st, RS.names[b->ev[i].stream])) {
            snprintf(why, cap, "409 wrong_expected_version naming no event of the batch (or another stream): %.300s", r->body);
        } else {
            int64_t e = expectation_of(b, i);
            uint64_t actual = (uint64_t)json_integer_value(ac);
            json_t *ex = json_object_get(j, "expected");
            char t[32];
            exp_text(e, t, sizeof t);
            int ex_ok = e >= 0 ? (json_is_integer(ex) && json_integer_value(ex) == e)
                               : (json_is_string(ex) && !strcmp(json_string_value(ex), t));
            if (e == X_NONE || e == EVS_EXPECT_ANY) {
                snprintf(why, cap, "409 wrong_expected_version for event %u, which had no expectation: %.300s", i, r->body);
            } else if (expectation_met(e, actual + 1)) {
                snprintf(why, cap, "409 wrong_expected_version although actual %" PRIu64 " satisfies %s: %.300s", actual, t, r->body);
            } else if (!ex_ok) {
                snprintf(why, cap, "409 says expected %s, the request said %s", json_dumps(ex, JSON_ENCODE_ANY), t);
            } else {
                uint64_t own = 0; /* this batch's earlier events of that stream, staged and taken back */
                for (uint32_t k = 0; k < i; k++) own += b->ev[k].stream == b->ev[i].stream;
                if (own > actual) {
                    snprintf(why, cap, "409 actual %" PRIu64 " below the batch's own %" PRIu64 " earlier events", actual, own);
                } else {
                    b->conflict = 1;
                    b->conflict_stream = b->ev[i].stream;
                    b->conflict_durable = actual - own;
                    rc = 0;
                }
            }
        }
    } else {
        snprintf(why, cap, "409 %s (expected wrong_expected_version or condition_failed): %.300s", code ? code : "?", r->body);
    }
    json_decref(j);
    return rc;
}

static void publish_ack(const batch *b)
{
    for (uint32_t i = 0; i < b->n; i++) atomic_max_i64(&RS.known_version[b->ev[i].stream], (int64_t)b->ev[i].version);
    atomic_max_u64(&RS.known_pos, b->first + b->n - 1);
}

/* ---------------------------------------------------------------- writers */

static void *writer_main(void *arg)
{
    writer *w = arg;
    ht_conn c;
    ht_conn_init(&c, RS.srv.port);
    gb body = {0};
    batch *pending = NULL; /* sent, no answer, server not being killed: resend */
    while (!atomic_load(&RS.stop) && !atomic_load(&RS.killing)) {
        if (!pending && atomic_load(&RS.stop_writers)) break;
        batch *b = pending ? pending : new_batch(w);
        int retry = pending != NULL;
        pending = NULL;
        char path[400], hdr[96], why[700];
        build_request(b, &body, path, sizeof path, hdr, sizeof hdr);
        ht_resp r;
        int st = ht_conn_request(&c, "POST", path, hdr[0] ? hdr : NULL, body.p, body.len, &r);
        b->http = st;
        if (st == 201 || (st == 200 && retry)) {
            if (take_success(b, &r, why, sizeof why) != 0) ts_fail("writer %d, POST %s: %s", w->idx, path, why);
            b->status = B_ACKED;
            publish_ack(b);
            if (st == 201) atomic_fetch_add(&RS.acks, 1);
        } else if (st == 409) {
            if (take_conflict(b, &r, why, sizeof why) != 0) ts_fail("writer %d, POST %s: %s", w->idx, path, why);
            b->status = B_REJECTED;
        } else if (st == 503 && atomic_load(&RS.terminating) && strstr(r.body, "\"unavailable\"")) {
            b->status = B_REJECTED; /* refused while shutting down: must have written nothing */
            b->conflict = 3;
        } else if (st == 0 && atomic_load(&RS.terminating)) {
            b->status = B_UNKNOWN; /* shutting down: retried after the restart */
            ht_resp_free(&r);
            break;
        } else if (st == 0) {
            b->status = B_UNKNOWN;
            if (!atomic_load(&RS.killing)) {
                /* not killed: the server must still be there; the outcome is unknown, ask again */
                server_alive();
                if (atomic_load(&RS.killing)) { ht_resp_free(&r); break; }
                note("writer %d: no answer while the server was up (%s); resending the same request", w->idx,
                     ht_errname(r.err));
                ST.lost_conn++;
                ht_conn_close(&c);
                pending = b;
            }
        } else {
            ts_fail("writer %d, POST %s (%u events, %zu bytes): expected 201 or 409, got %d%s: %.500s", w->idx, path, b->n,
                    body.len, st, st == 200 ? " (a replay answer to a first attempt with fresh ids)" : "", r.body);
        }
        ht_resp_free(&r);
    }
    ht_conn_close(&c);
    free(body.p);
    return NULL;
}

/* ---------------------------------------------------------------- watchers */

static void watcher_line(watcher *wt, const char *line, size_t len, uint64_t sse_id)
{
    linfo li;
    char why[400];
    if (parse_line(line, len, &li, why, sizeof why) != 0) ts_fail("watcher %d: %s", wt->idx, why);
    if (sse_id && sse_id != li.position)
        ts_fail("watcher %d (SSE): id %" PRIu64 " for the event at position %" PRIu64, wt->idx, sse_id, li.position);
    uint64_t lp = atomic_load(&wt->last_pos);
    switch (wt->kind) {
    case 0:
    case 1:
        if (li.position != (lp ? lp + 1 : wt->from))
            ts_fail("watcher %d (global%s, from %" PRIu64 "): position %" PRIu64 " after %" PRIu64 " (must be contiguous)",
                    wt->idx, wt->kind ? ", SSE" : "", wt->from, li.position, lp);
        break;
    case 2:
        if (li.position <= lp || strncmp(li.stream, groups[wt->group], strlen(groups[wt->group])))
            ts_fail("watcher %d (prefix %s): position %" PRIu64 " of stream %s after %" PRIu64, wt->idx, groups[wt->group],
                    li.position, li.stream, lp);
        break;
    default: {
        uint64_t lv = atomic_load(&wt->last_ver);
        if (strcmp(li.stream, RS.names[wt->stream]) || li.version != (lv ? lv + 1 : wt->from) || li.position <= lp)
            ts_fail("watcher %d (stream %s from version %" PRIu64 "): got %s version %" PRIu64 " at %" PRIu64
                    " after version %" PRIu64 " at %" PRIu64,
                    wt->idx, RS.names[wt->stream], wt->from, li.stream, li.version, li.position, lv, lp);
        atomic_store(&wt->last_ver, li.version);
    }
    }
    observe(li.position, line, len, 100 + (uint32_t)wt->idx);
    atomic_store(&wt->last_pos, li.position);
    atomic_fetch_add(&wt->lines, 1);
    atomic_fetch_add(&ST.watch_lines, 1);
}

static void *watcher_main(void *arg)
{
    watcher *wt = arg;
    char path[400], hdr[96];
    hdr[0] = 0;
    if (wt->kind == 0) snprintf(path, sizeof path, "/events?watch=true&heartbeat=1&from=%" PRIu64, wt->from);
    else if (wt->kind == 1) {
        snprintf(path, sizeof path, "/events?watch=true&heartbeat=1");
        snprintf(hdr, sizeof hdr, "Accept: text/event-stream\r\nLast-Event-ID: %" PRIu64 "\r\n", wt->from - 1);
    } else if (wt->kind == 2) {
        char p[100];
        ht_pct(groups[wt->group], p, sizeof p);
        snprintf(path, sizeof path, "/events?watch=true&heartbeat=1&stream_prefix=%s&from=%" PRIu64, p, wt->from);
    } else {
        snprintf(path, sizeof path, "/streams/%s?watch=true&heartbeat=1&from=%" PRIu64, RS.pct[wt->stream], wt->from);
    }
    ht_stream st;
    int status = ht_stream_open(&RS.srv, path, hdr[0] ? hdr : NULL, &st);
    if (status != 200) {
        /* while a SIGTERM drain runs, a watch that arrives gets a 503 (or its
         * connection is refused): a clean answer, not a failure */
        int stopping_ok = atomic_load(&RS.terminating) && (status == 0 || status == 503);
        if (!atomic_load(&RS.killing) && !stopping_ok)
            ts_fail("watcher %d: GET %s: expected 200, got %d (%s)", wt->idx, path, status, ht_errname(st.head.err));
        ht_stream_close(&st);
        wt->done = 1;
        return NULL;
    }
    uint64_t sse_id = 0;
    int have_data = 0;
    char *data = NULL;
    size_t dlen = 0;
    for (;;) {
        char *line;
        size_t len;
        int rc = ht_stream_line(&st, 500, &line, &len);
        if (rc == -ETIMEDOUT) {
            if (atomic_load(&RS.killing)) break;
            continue;
        }
        if (rc <= 0) {
            wt->end_rc = rc;
            if (!atomic_load(&RS.stop) && !atomic_load(&RS.killing) && !atomic_load(&RS.terminating))
                ts_fail("watcher %d: GET %s ended while the server was up (%s)", wt->idx, path, rc ? ht_errname(rc) : "end of body");
            break;
        }
        if (wt->kind != 1) {
            if (len) watcher_line(wt, line, len, 0); /* an empty line is a heartbeat */
            continue;
        }
        if (!strncmp(line, "id: ", 4)) sse_id = strtoull(line + 4, NULL, 10);
        else if (!strncmp(line, "data: ", 6)) {
            free(data);
            dlen = len - 6;
            data = malloc(dlen + 1);
            memcpy(data, line + 6, dlen + 1);
            have_data = 1;
        } else if (len == 0 && have_data) {
            watcher_line(wt, data, dlen, sse_id ? sse_id : UINT64_MAX);
            have_data = 0;
            sse_id = 0;
        } else if (len && line[0] != ':' && strncmp(line, "event: ", 7)) {
            ts_fail("watcher %d (SSE): unexpected line %.200s", wt->idx, line);
        }
    }
    free(data);
    ht_stream_close(&st);
    wt->done = 1;
    return NULL;
}

/* ----------------------------------------------------------------- readers */

typedef struct lines { char **p; size_t *len; size_t n, cap; } lines;

static void split_lines(char *body, size_t blen, lines *ls, const char *what)
{
    ls->n = 0;
    char *p = body, *end = body + blen;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) ts_fail("%s: a line without its LF: %.200s", what, p);
        *nl = 0;
        if (ls->n == ls->cap) {
            ls->cap = ls->cap ? ls->cap * 2 : 256;
            ls->p = realloc(ls->p, ls->cap * sizeof *ls->p);
            ls->len = realloc(ls->len, ls->cap * sizeof *ls->len);
        }
        ls->p[ls->n] = p;
        ls->len[ls->n++] = (size_t)(nl - p);
        p = nl + 1;
    }
}

/* A read's lines: contiguous positions (step +1 or -1, or per-stream
 * versions), whole batches inside, a batch end at the end of the log. */
static void check_read(reader *rd, const char *path, lines *ls, uint64_t from, int backward, int stream, uint64_t limit)
{
    idinfo prev = {0}, cur;
    linfo li;
    char why[400];
    uint64_t prev_pos = 0, prev_ver = 0;
    for (size_t i = 0; i < ls->n; i++) {
        if (parse_line(ls->p[i], ls->len[i], &li, why, sizeof why) != 0) ts_fail("reader %d, GET %s: %s", rd->idx, path, why);
        if (decode_id(li.id, &cur) != 0) ts_fail("reader %d, GET %s: an event no writer sent: %.300s", rd->idx, path, ls->p[i]);
        if (stream >= 0) {
            if (strcmp(li.stream, RS.names[stream]) || li.version != (i ? prev_ver + 1 : (from ? from : 1)) ||
                (i && li.position <= prev_pos))
                ts_fail("reader %d, GET %s: line %zu is %s version %" PRIu64 " at %" PRIu64 " (after version %" PRIu64
                        " at %" PRIu64 ")",
                        rd->idx, path, i, li.stream, li.version, li.position, prev_ver, prev_pos);
        } else if (!backward) {
            if (li.position != (i ? prev_pos + 1 : (from ? from : 1)))
                ts_fail("reader %d, GET %s: line %zu has position %" PRIu64 " (expected %" PRIu64 ")", rd->idx, path, i,
                        li.position, i ? prev_pos + 1 : from);
            const char *bad = i ? batch_follow(&prev, &cur) : NULL;
            if (bad) ts_fail("reader %d, GET %s: at position %" PRIu64 ": %s", rd->idx, path, li.position, bad);
        } else {
            if (i && li.position + 1 != prev_pos)
                ts_fail("reader %d, GET %s: backward line %zu has position %" PRIu64 " after %" PRIu64, rd->idx, path, i,
                        li.position, prev_pos);
            const char *bad = i ? batch_follow(&cur, &prev) : NULL;
            if (bad) ts_fail("reader %d, GET %s: at position %" PRIu64 ": %s", rd->idx, path, li.position, bad);
            if (i == 0 && cur.idx + 1 != cur.n)
                ts_fail("reader %d, GET %s: the newest event (position %" PRIu64 ") is event %u of a batch of %u: part of a "
                        "batch is visible", rd->idx, path, li.position, cur.idx, cur.n);
        }
        observe(li.position, ls->p[i], ls->len[i], 200 + (uint32_t)rd->idx);
        prev = cur;
        prev_pos = li.position;
        prev_ver = li.version;
    }
    if (stream < 0 && !backward && ls->n && ls->n < limit && prev.idx + 1 != prev.n)
        ts_fail("reader %d, GET %s: the read ended at position %" PRIu64 ", event %u of a batch of %u: part of a batch is "
                "visible", rd->idx, path, prev_pos, prev.idx, prev.n);
    atomic_fetch_add(&ST.read_lines, ls->n);
}

static void *reader_main(void *arg)
{
    reader *rd = arg;
    lines ls = {0};
    uint64_t *r = &rd->rng;
    while (!atomic_load(&RS.stop_readers) && !atomic_load(&RS.killing)) {
        char path[400];
        ht_resp resp;
        unsigned op = (unsigned)evs_test_rand_range(r, 0, 9);
        uint64_t kp = atomic_load(&RS.known_pos); /* acknowledged before the request: must be visible */
        uint64_t limit = evs_test_rand_range(r, 0, 3) ? evs_test_rand_range(r, 1, 300) : UINT64_MAX;
        char lim[40] = "";
        if (limit != UINT64_MAX) snprintf(lim, sizeof lim, "&limit=%" PRIu64, limit);
        int st;
        if (op <= 3) { /* forward global read */
            uint64_t from = evs_test_rand_range(r, 0, kp + 1);
            snprintf(path, sizeof path, "/events?from=%" PRIu64 "%s", from, lim);
            st = ht_get(&RS.srv, path, &resp);
            if (st == 200) {
                split_lines(resp.body, resp.len, &ls, path);
                check_read(rd, path, &ls, from, 0, -1, limit);
                uint64_t f = from ? from : 1;
                uint64_t want = kp >= f ? kp - f + 1 : 0;
                if (want > limit) want = limit;
                if (ls.n < want)
                    ts_fail("reader %d, GET %s: %zu lines, but position %" PRIu64 " was acknowledged before the read", rd->idx,
                            path, ls.n, kp);
                if (ls.n && evs_test_rand_range(r, 0, 2) == 0) { /* the same event by id */
                    size_t k = (size_t)evs_test_rand_range(r, 0, ls.n - 1);
                    linfo li;
                    char why[300], p2[100];
                    if (parse_line(ls.p[k], ls.len[k], &li, why, sizeof why) != 0) ts_fail("%s", why);
                    snprintf(p2, sizeof p2, "/events/%s", li.id);
                    ht_resp r2;
                    int s2 = ht_get(&RS.srv, p2, &r2);
                    if (s2 == 200) {
                        size_t l2 = r2.len && r2.body[r2.len - 1] == '\n' ? r2.len - 1 : r2.len;
                        if (l2 != ls.len[k] || memcmp(r2.body, ls.p[k], l2))
                            ts_fail("reader %d: GET %s differs from the log's line:\n%.300s\n%.300s", rd->idx, p2, r2.body, ls.p[k]);
                    } else if (!atomic_load(&RS.killing) && !atomic_load(&RS.terminating)) {
                        ts_fail("reader %d: GET %s: expected 200, got %d (%s): %.300s", rd->idx, p2, s2, ht_errname(r2.err), r2.body);
                    }
                    ht_resp_free(&r2);
                }
            }
        } else if (op <= 5) { /* backward from the end */
            snprintf(path, sizeof path, "/events?direction=backward%s", lim);
            st = ht_get(&RS.srv, path, &resp);
            if (st == 200) {
                split_lines(resp.body, resp.len, &ls, path);
                check_read(rd, path, &ls, 0, 1, -1, limit);
                linfo li;
                char why[300];
                if (kp && (!ls.n || (parse_line(ls.p[0], ls.len[0], &li, why, sizeof why) == 0 && li.position < kp)))
                    ts_fail("reader %d, GET %s: the log ends before position %" PRIu64 ", acknowledged before the read", rd->idx,
                            path, kp);
            }
        } else if (op <= 7) { /* a stream */
            uint16_t s = pick_stream(r);
            int64_t kv = atomic_load(&RS.known_version[s]);
            uint64_t from = evs_test_rand_range(r, 0, (uint64_t)kv + 1);
            snprintf(path, sizeof path, "/streams/%s?from=%" PRIu64 "%s", RS.pct[s], from, lim);
            st = ht_get(&RS.srv, path, &resp);
            if (st == 200) {
                split_lines(resp.body, resp.len, &ls, path);
                check_read(rd, path, &ls, from, 0, s, limit);
                uint64_t f = from ? from : 1;
                uint64_t want = (uint64_t)kv >= f ? (uint64_t)kv - f + 1 : 0;
                if (want > limit) want = limit;
                if (ls.n < want)
                    ts_fail("reader %d, GET %s: %zu lines, but version %" PRId64 " was acknowledged before the read", rd->idx,
                            path, ls.n, kv);
            } else if (st == 404 && kv == 0) {
                st = 200; /* no event acknowledged yet: not found is right */
            }
        } else if (op == 8) { /* the stream list */
            int g = (int)evs_test_rand_range(r, 0, 2);
            int64_t kv[MAX_STREAMS];
            for (int i = 0; i < RS.nstreams; i++) kv[i] = atomic_load(&RS.known_version[i]);
            char p[100];
            ht_pct(groups[g], p, sizeof p);
            snprintf(path, sizeof path, "/streams?prefix=%s", p);
            st = ht_get(&RS.srv, path, &resp);
            if (st == 200) {
                split_lines(resp.body, resp.len, &ls, path);
                char prevname[300] = "";
                int seen[MAX_STREAMS] = {0};
                for (size_t i = 0; i < ls.n; i++) {
                    json_t *j = json_loadb(ls.p[i], ls.len[i], 0, NULL);
                    const char *nm = j ? json_string_value(json_object_get(j, "stream")) : NULL;
                    json_t *v = j ? json_object_get(j, "version") : NULL;
                    int si = nm ? stream_index(nm) : -1;
                    if (si < 0 || !json_is_integer(v) || strcmp(nm, prevname) <= 0 || strncmp(nm, groups[g], strlen(groups[g])) ||
                        json_integer_value(v) < kv[si])
                        ts_fail("reader %d, GET %s: line %zu is %.200s (after %s; acknowledged version %" PRId64 ")", rd->idx, path,
                                i, ls.p[i], prevname, si >= 0 ? kv[si] : -1);
                    snprintf(prevname, sizeof prevname, "%s", nm);
                    seen[si] = 1;
                    json_decref(j);
                }
                for (int i = 0; i < RS.nstreams; i++)
                    if (kv[i] > 0 && !seen[i] && !strncmp(RS.names[i], groups[g], strlen(groups[g])))
                        ts_fail("reader %d, GET %s: stream %s (acknowledged version %" PRId64 ") is not listed", rd->idx, path,
                                RS.names[i], kv[i]);
            }
        } else { /* health */
            snprintf(path, sizeof path, "/health");
            st = ht_get(&RS.srv, path, &resp);
            if (st == 200) {
                json_t *j = json_loadb(resp.body, resp.len, 0, NULL);
                json_t *p = j ? json_object_get(j, "position") : NULL;
                if (!json_is_integer(p) || (uint64_t)json_integer_value(p) < kp || !strstr(resp.body, "\"status\":\"ok\""))
                    ts_fail("reader %d: GET /health says %.200s, position %" PRIu64 " was acknowledged before", rd->idx, resp.body, kp);
                json_decref(j);
            }
        }
        atomic_fetch_add(&ST.reads, 1);
        if (st != 200 && !atomic_load(&RS.killing) && !(atomic_load(&RS.terminating) && (st == 0 || st == 503))) {
            if (st == 0) server_alive();
            if (!atomic_load(&RS.killing))
                ts_fail("reader %d: GET %s: expected 200, got %d (%s): %.300s", rd->idx, path, st, ht_errname(resp.err), resp.body);
        }
        ht_resp_free(&resp);
    }
    free(ls.p);
    free(ls.len);
    return NULL;
}

/* ------------------------------------------------------------ verification */

typedef struct logent { uint64_t hash; uint32_t len; uint16_t stream; uint8_t type, pad; uint64_t version; batch *b; } logent;

static logent *lg;
static size_t lg_cap;

/* Does the event at pos match batch b's condition filter? */
static int cond_match(const batch *b, const logent *e)
{
    if (b->cond_prefix && strncmp(RS.names[e->stream], groups[b->cond_group], strlen(groups[b->cond_group]))) return 0;
    if (b->cond_types && e->type != b->cond_type && strcmp(types[e->type], "x")) return 0;
    return 1;
}

/* Read the whole log and check everything known. Returns the last position. */
static uint64_t verify_all(const char *when)
{
    tc_setctx("%s; %s", RS.desc, when);
    ht_resp r;
    int st = ht_get(&RS.srv, "/health", &r);
    if (st != 200 || !strstr(r.body, "\"status\":\"ok\"")) ts_fail("%s: GET /health: %d %.300s", when, st, r.body);
    ht_resp_free(&r);
    for (int wi = 0; wi < RS.nwriters; wi++)
        for (size_t k = 0; k < RS.w[wi].nb; k++) RS.w[wi].b[k]->found = 0, RS.w[wi].b[k]->found_n = 0;
    uint64_t vcount[MAX_STREAMS] = {0};
    char last_time[40] = "";
    gb tail = {0};
    lines ls = {0};
    uint64_t pos = 0;
    batch *open = NULL; /* the batch being read, until its last event */
    for (;;) {
        char path[100];
        snprintf(path, sizeof path, "/events?from=%" PRIu64 "&limit=%d", pos + 1, PAGE);
        st = ht_get(&RS.srv, path, &r);
        if (st != 200) ts_fail("%s: GET %s: expected 200, got %d (%s): %.300s", when, path, st, ht_errname(r.err), r.body);
        split_lines(r.body, r.len, &ls, path);
        for (size_t i = 0; i < ls.n; i++) {
            const char *line = ls.p[i];
            size_t len = ls.len[i];
            linfo li;
            idinfo in;
            char why[400];
            if (parse_line(line, len, &li, why, sizeof why) != 0) ts_fail("%s: %s", when, why);
            pos++;
            if (li.position != pos) ts_fail("%s: positions must be contiguous: %" PRIu64 " where %" PRIu64 " belongs", when, li.position, pos);
            batch *b = decode_id(li.id, &in) == 0 ? batch_of(&in) : NULL;
            if (!b) ts_fail("%s: position %" PRIu64 " holds an event no writer sent: %.300s", when, pos, line);
            evrec *e = &b->ev[in.idx];
            int si = stream_index(li.stream);
            if (strcmp(e->id, li.id) || si != e->stream || strcmp(li.type, types[e->type]))
                ts_fail("%s: position %" PRIu64 ": id %s stream %s type %s, the writer sent id %s to %s as %s", when, pos, li.id,
                        li.stream, li.type, e->id, RS.names[e->stream], types[e->type]);
            if (li.version != vcount[si] + 1)
                ts_fail("%s: stream %s versions must be contiguous: position %" PRIu64 " has version %" PRIu64 " after %" PRIu64,
                        when, li.stream, pos, li.version, vcount[si]);
            vcount[si] = li.version;
            if (strcmp(li.time, last_time) < 0)
                ts_fail("%s: commit time goes backwards at position %" PRIu64 ": %s after %s", when, pos, li.time, last_time);
            /* whole batches, in order, once */
            if (open) {
                if (b != open || in.idx != open->found_n)
                    ts_fail("%s: position %" PRIu64 " should be event %u of the batch started at %" PRIu64 " (writer %u batch %u), "
                            "it is event %u of writer %u batch %u: partial or interleaved batch",
                            when, pos, open->found_n, open->found, open->writer, open->seq, in.idx, in.writer, in.seq);
            } else {
                if (in.idx != 0)
                    ts_fail("%s: position %" PRIu64 " is event %u of a batch whose first event is missing (writer %u batch %u)", when,
                            pos, in.idx, in.writer, in.seq);
                if (b->found)
                    ts_fail("%s: writer %u batch %u is in the log twice (at %" PRIu64 " and %" PRIu64 "): a retry landed again", when,
                            in.writer, in.seq, b->found, pos);
                b->found = pos;
                open = b;
            }
            if (in.idx && strcmp(li.time, last_time))
                ts_fail("%s: batch at %" PRIu64 " has two commit times (%s, then %s at %" PRIu64 ")", when, b->found, last_time, li.time, pos);
            snprintf(last_time, sizeof last_time, "%s", li.time);
            b->found_n++;
            if (b->found_n == b->n) open = NULL;
            /* byte-identical */
            expected_tail(e, &tail);
            if (len - li.tail != tail.len || memcmp(line + li.tail, tail.p, tail.len))
                ts_fail("%s: position %" PRIu64 " (id %s) is not byte-identical to what was sent (%zu bytes expected after "
                        "\"data\":, %zu served):\nexpected %.600s\nserved   %.600s",
                        when, pos, e->id, tail.len, len - li.tail, tail.p, line + li.tail);
            /* acknowledged: exactly where the answer said */
            if (b->status == B_ACKED && (e->position != pos || e->version != li.version || strcmp(e->time, li.time)))
                ts_fail("%s: id %s was acknowledged at position %" PRIu64 " version %" PRIu64 " time %s; the log has it at %" PRIu64
                        " version %" PRIu64 " time %s",
                        when, e->id, e->position, e->version, e->time, pos, li.version, li.time);
            if (b->status == B_REJECTED)
                ts_fail("%s: id %s (position %" PRIu64 ") belongs to a batch that was refused (%s)", when, e->id, pos,
                        b->conflict == 3 ? "503 while stopping" : "409");
            if (b->status == B_UNSENT) ts_fail("%s: id %s was never sent", when, e->id);
            if (!expectation_met(expectation_of(b, in.idx), li.version)) {
                char t[32];
                exp_text(expectation_of(b, in.idx), t, sizeof t);
                ts_fail("%s: position %" PRIu64 " (stream %s) has version %" PRIu64 " but its append expected %s", when, pos,
                        li.stream, li.version, t);
            }
            if (b->status == B_UNKNOWN) { /* what the retry must answer */
                e->position = pos;
                e->version = li.version;
                snprintf(e->time, sizeof e->time, "%s", li.time);
            }
            if (pos >= lg_cap) {
                lg_cap = lg_cap ? lg_cap * 2 : 65536;
                while (lg_cap <= pos) lg_cap *= 2;
                lg = realloc(lg, lg_cap * sizeof *lg);
                if (!lg) ts_fail("out of memory");
            }
            lg[pos] = (logent){XXH3_64bits(line, len), (uint32_t)len, e->stream, e->type, 0, li.version, b};
        }
        ht_resp_free(&r);
        if (ls.n < PAGE) break;
    }
    uint64_t P = pos;
    if (open) ts_fail("%s: the log ends inside a batch (writer %u batch %u: %u of %u events at %" PRIu64 ")", when, open->writer,
                      open->seq, open->found_n, open->n, open->found);
    /* every batch: acknowledged ones present, conditions held, 409s were about durable versions */
    uint64_t acked_here = 0;
    for (int wi = 0; wi < RS.nwriters; wi++)
        for (size_t k = 0; k < RS.w[wi].nb; k++) {
            batch *b = RS.w[wi].b[k];
            if (b->status == B_ACKED && b->found != b->first)
                ts_fail("%s: writer %d batch %u (%u events) was acknowledged at position %" PRIu64 " and is %s", when, wi, b->seq,
                        b->n, b->first, b->found ? "elsewhere" : "missing");
            if (b->status == B_ACKED) acked_here += b->n;
            if (b->found && b->has_cond)
                for (uint64_t p = b->cond_after + 1; p < b->found; p++)
                    if (cond_match(b, &lg[p]))
                        ts_fail("%s: writer %d batch %u landed at %" PRIu64 " with condition after %" PRIu64
                                ", but position %" PRIu64 " (stream %s, type %s) matches its filter",
                                when, wi, b->seq, b->found, b->cond_after, p, RS.names[lg[p].stream], types[lg[p].type]);
            if (b->status == B_REJECTED && b->conflict == 1 && vcount[b->conflict_stream] < b->conflict_durable)
                ts_fail("%s: writer %d batch %u was refused (409) because stream %s was at version %" PRIu64
                        ", but after the restart the stream has only %" PRIu64 " events: the 409 reported a version that was "
                        "never durable (it was answered before the commit it depended on)",
                        when, wi, b->seq, RS.names[b->conflict_stream], b->conflict_durable, vcount[b->conflict_stream]);
        }
    /* what readers and watchers saw */
    pthread_mutex_lock(&obs_mu);
    for (uint64_t p = 1; p < obs_cap; p++) {
        obs *o = &obs_tab[p];
        if (!o->len) continue;
        if (p > P) {
            pthread_mutex_unlock(&obs_mu);
            ts_fail("%s: client %u saw position %" PRIu64 " before the restart, but the log now ends at %" PRIu64
                    " (an event was visible before it was durable)", when, o->who, p, P);
        }
        if (o->hash != lg[p].hash || o->len != lg[p].len) {
            pthread_mutex_unlock(&obs_mu);
            ts_fail("%s: client %u saw other bytes at position %" PRIu64 " than the log now holds", when, o->who, p);
        }
    }
    pthread_mutex_unlock(&obs_mu);
    /* stream reads, the stream list, by id, backward: all agree with the log */
    uint64_t vr = RS.rseed ^ P;
    for (int k = 0; k < 4 && RS.nstreams; k++) {
        int s = (int)evs_test_rand_range(&vr, 0, (uint64_t)RS.nstreams - 1);
        uint64_t v = 0;
        for (;;) {
            char path[300];
            snprintf(path, sizeof path, "/streams/%s?from=%" PRIu64 "&limit=%d", RS.pct[s], v + 1, PAGE);
            st = ht_get(&RS.srv, path, &r);
            if (st == 404 && vcount[s] == 0) { ht_resp_free(&r); break; }
            if (st != 200) ts_fail("%s: GET %s: %d %.300s", when, path, st, r.body);
            split_lines(r.body, r.len, &ls, path);
            for (size_t i = 0; i < ls.n; i++) {
                linfo li;
                char why[300];
                if (parse_line(ls.p[i], ls.len[i], &li, why, sizeof why) != 0) ts_fail("%s: %s", when, why);
                v++;
                if (li.version != v || li.position > P || lg[li.position].hash != XXH3_64bits(ls.p[i], ls.len[i]) ||
                    lg[li.position].stream != s)
                    ts_fail("%s: GET %s line %zu (version %" PRIu64 ", position %" PRIu64 ") disagrees with the global log", when,
                            path, i, li.version, li.position);
            }
            ht_resp_free(&r);
            if (ls.n < PAGE) break;
        }
        if (v != vcount[s]) ts_fail("%s: stream %s reads %" PRIu64 " events, the global log has %" PRIu64, when, RS.names[s], v, vcount[s]);
    }
    st = ht_get(&RS.srv, "/streams", &r);
    if (st != 200) ts_fail("%s: GET /streams: %d", when, st);
    split_lines(r.body, r.len, &ls, "/streams");
    size_t nonempty = 0;
    for (int s = 0; s < RS.nstreams; s++) nonempty += vcount[s] > 0;
    if (ls.n != nonempty) ts_fail("%s: GET /streams lists %zu streams, the log has %zu", when, ls.n, nonempty);
    for (size_t i = 0; i < ls.n; i++) {
        json_t *j = json_loadb(ls.p[i], ls.len[i], 0, NULL);
        const char *nm = j ? json_string_value(json_object_get(j, "stream")) : NULL;
        int si = nm ? stream_index(nm) : -1;
        if (si < 0 || (uint64_t)json_integer_value(json_object_get(j, "version")) != vcount[si])
            ts_fail("%s: GET /streams line %.200s disagrees with the log", when, ls.p[i]);
        json_decref(j);
    }
    ht_resp_free(&r);
    for (int k = 0; k < 6 && P; k++) {
        uint64_t p = evs_test_rand_range(&vr, 1, P);
        char path[100];
        snprintf(path, sizeof path, "/events/%s", lg[p].b->ev[0].id);
        /* the first event of the batch at p */
        uint64_t p0 = lg[p].b->found;
        st = ht_get(&RS.srv, path, &r);
        size_t l = r.len && r.body[r.len - 1] == '\n' ? r.len - 1 : r.len;
        if (st != 200 || l != lg[p0].len || XXH3_64bits(r.body, l) != lg[p0].hash)
            ts_fail("%s: GET %s (%d) differs from position %" PRIu64 " of the log: %.300s", when, path, st, p0, r.body);
        ht_resp_free(&r);
    }
    st = ht_get(&RS.srv, "/events?direction=backward&limit=300", &r);
    if (st != 200) ts_fail("%s: backward read: %d", when, st);
    split_lines(r.body, r.len, &ls, "backward");
    if (ls.n != (P < 300 ? P : 300)) ts_fail("%s: backward read of 300 gave %zu lines (log has %" PRIu64 ")", when, ls.n, P);
    for (size_t i = 0; i < ls.n; i++)
        if (XXH3_64bits(ls.p[i], ls.len[i]) != lg[P - i].hash)
            ts_fail("%s: backward read line %zu differs from position %" PRIu64, when, i, P - i);
    ht_resp_free(&r);
    free(ls.p);
    free(ls.len);
    free(tail.p);
    ST.events_verified += P;
    ST.verifications++;
    if (P > ST.max_log) ST.max_log = P;
    note("%s: %" PRIu64 " events verified (%" PRIu64 " acknowledged)", when, P, acked_here);
    return P;
}

/* After VERIFY: retry every unacknowledged batch (same request, same ids),
 * replay a few acknowledged ones. Single-threaded, no other load. */
static void retry_unknown(void)
{
    ht_conn c;
    ht_conn_init(&c, RS.srv.port);
    gb body = {0};
    uint64_t rr = RS.rseed ^ (uint64_t)RS.cycle * 77;
    for (int wi = 0; wi < RS.nwriters; wi++) {
        writer *w = &RS.w[wi];
        for (size_t k = 0; k < w->nb; k++) {
            batch *b = w->b[k];
            int replay = b->status == B_ACKED && evs_test_rand_range(&rr, 0, 199) == 0;
            if (b->status != B_UNKNOWN && !replay) continue;
            char path[400], hdr[96], why[700];
            build_request(b, &body, path, sizeof path, hdr, sizeof hdr);
            ht_resp r;
            int st = ht_conn_request(&c, "POST", path, hdr[0] ? hdr : NULL, body.p, body.len, &r);
            if (replay) {
                /* the original answer, again: 200 with the same positions, versions and times */
                evrec *saved = malloc(b->n * sizeof *saved);
                memcpy(saved, b->ev, b->n * sizeof *saved);
                uint64_t first = b->first;
                if (st != 200 || take_success(b, &r, why, sizeof why) != 0 || b->first != first ||
                    memcmp(saved, b->ev, b->n * sizeof *saved))
                    ts_fail("replay of acknowledged writer %d batch %u (POST %s): expected 200 with the original result, got %d: "
                            "%.400s", wi, b->seq, path, st, r.body);
                free(saved);
                ST.replays++;
                ht_resp_free(&r);
                continue;
            }
            ST.unknown++;
            if (b->found) {
                uint64_t first = b->found;
                evrec *logged = malloc(b->n * sizeof *logged);
                memcpy(logged, b->ev, b->n * sizeof *logged);
                if (st != 200 || take_success(b, &r, why, sizeof why) != 0 || b->first != first ||
                    memcmp(logged, b->ev, b->n * sizeof *logged))
                    ts_fail("retry of unacknowledged writer %d batch %u (POST %s), which is in the log at %" PRIu64
                            ": expected 200 with that result, got %d: %s %.400s",
                            wi, b->seq, path, first, st, st == 200 ? why : "", r.body);
                free(logged);
                b->status = B_ACKED;
                ST.retry_landed_before++;
            } else if (st == 201) {
                if (take_success(b, &r, why, sizeof why) != 0) ts_fail("retry of writer %d batch %u: %s", wi, b->seq, why);
                b->status = B_ACKED;
                ST.retry_landed_now++;
            } else if (st == 409) {
                if (take_conflict(b, &r, why, sizeof why) != 0) ts_fail("retry of writer %d batch %u: %s", wi, b->seq, why);
                b->status = B_REJECTED;
                ST.retry_refused++;
            } else {
                ts_fail("retry of unacknowledged writer %d batch %u (POST %s, not in the log): expected 201 or 409, got %d (%s): %.400s",
                        wi, b->seq, path, st, ht_errname(r.err), r.body);
            }
            if (b->status == B_ACKED) publish_ack(b);
            ht_resp_free(&r);
        }
    }
    ht_conn_close(&c);
    free(body.p);
}

/* --------------------------------------------------------- server control */

/* Start evstored and SIGKILL it a few milliseconds later: a crash during
 * recovery (or before it listens). */
static void kill_during_start(unsigned delay_us)
{
    int keep = -1;
    uint16_t port = ht_pick_port(&keep);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)port);
    const char *argv[HT_MAX_ARGS + 8];
    int k = 0;
    argv[k++] = RS.srv.bin;
    argv[k++] = "--data";
    argv[k++] = RS.srv.data;
    argv[k++] = "--listen";
    argv[k++] = listen;
    for (int i = 0; i < RS.srv.nargs; i++) argv[k++] = RS.srv.args[i];
    argv[k] = NULL;
    size_t ne = 0;
    while (environ[ne]) ne++;
    char **envp = calloc(ne + 1, sizeof *envp);
    size_t m = 0;
    for (size_t i = 0; i < ne; i++)
        if (strncmp(environ[i], "EVSTORE_", 8) != 0) envp[m++] = environ[i];
    int logfd = open(RS.srv.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) ts_fail("open %s: %s", RS.srv.log, strerror(errno));
    dprintf(logfd, "==== torture: start to be killed after %u us\n", delay_us);
    pid_t pid = fork();
    if (pid < 0) ts_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(logfd, 1);
        dup2(logfd, 2);
        execve(RS.srv.bin, (char *const *)argv, envp);
        _exit(127);
    }
    close(logfd);
    free(envp);
    usleep(delay_us); /* when to kill, not synchronisation */
    kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    close(keep);
    if (WIFEXITED(st)) ts_fail("evstored exited by itself during start (status %d)", WEXITSTATUS(st));
    ST.recovery_kills++;
}

static void start_threads(uint64_t *r, uint64_t P)
{
    atomic_store(&RS.stop, 0);
    atomic_store(&RS.stop_writers, 0);
    atomic_store(&RS.killing, 0);
    atomic_store(&RS.terminating, 0);
    atomic_store(&RS.stop_readers, 0);
    atomic_store(&RS.acks, 0);
    for (int i = 0; i < RS.nwriters; i++)
        if (pthread_create(&RS.w[i].th, NULL, writer_main, &RS.w[i]) != 0) ts_fail("pthread_create");
    for (int i = 0; i < RS.nwatchers; i++) {
        watcher *wt = &RS.wt[i];
        memset(wt, 0, sizeof *wt);
        wt->idx = i;
        wt->kind = i < 2 ? i : (int)evs_test_rand_range(r, 0, 3);
        wt->group = (uint16_t)evs_test_rand_range(r, 0, 2);
        wt->stream = pick_stream(r);
        if (wt->kind == 3) wt->from = evs_test_rand_range(r, 1, (uint64_t)atomic_load(&RS.known_version[wt->stream]) + 1);
        else wt->from = evs_test_rand_range(r, 0, 1) ? 1 : evs_test_rand_range(r, 1, P + 1);
        if (pthread_create(&wt->th, NULL, watcher_main, wt) != 0) ts_fail("pthread_create");
    }
    for (int i = 0; i < RS.nreaders; i++) {
        RS.rd[i].idx = i;
        RS.rd[i].rng = evs_test_rand(r);
        if (pthread_create(&RS.rd[i].th, NULL, reader_main, &RS.rd[i]) != 0) ts_fail("pthread_create");
    }
}

static void join_writers(void)
{
    for (int i = 0; i < RS.nwriters; i++) pthread_join(RS.w[i].th, NULL);
}

static void join_others(void)
{
    for (int i = 0; i < RS.nwatchers; i++) pthread_join(RS.wt[i].th, NULL);
    for (int i = 0; i < RS.nreaders; i++) pthread_join(RS.rd[i].th, NULL);
}

/* The last position of what watcher wt follows, as the server says now. */
static uint64_t watch_target(const watcher *wt, uint64_t P, uint64_t *version)
{
    char path[400], p[100];
    *version = 0;
    if (wt->kind <= 1) return P;
    if (wt->kind == 2) {
        ht_pct(groups[wt->group], p, sizeof p);
        snprintf(path, sizeof path, "/events?direction=backward&limit=1&stream_prefix=%s", p);
    } else {
        snprintf(path, sizeof path, "/streams/%s?direction=backward&limit=1", RS.pct[wt->stream]);
    }
    ht_resp r;
    int st = ht_get(&RS.srv, path, &r);
    uint64_t pos = 0;
    if (st == 200 && r.len) {
        linfo li;
        char why[300];
        if (parse_line(r.body, r.len - 1, &li, why, sizeof why) != 0) ts_fail("%s", why);
        pos = li.position;
        *version = li.version;
    } else if (!(st == 404 || (st == 200 && !r.len))) {
        ts_fail("GET %s: %d %.200s", path, st, r.body);
    }
    ht_resp_free(&r);
    return pos;
}

/* Writers stopped: every watcher must reach the end of what it follows. */
static void watchers_catch_up(void)
{
    ht_resp r;
    if (ht_get(&RS.srv, "/health", &r) != 200) ts_fail("GET /health: %d", r.status);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    uint64_t P = (uint64_t)json_integer_value(json_object_get(j, "position"));
    json_decref(j);
    ht_resp_free(&r);
    int64_t deadline = ht_now_ms() + (HT_ASAN ? 120000 : 60000);
    for (int i = 0; i < RS.nwatchers; i++) {
        watcher *wt = &RS.wt[i];
        uint64_t ver, target = watch_target(wt, P, &ver);
        if (wt->kind == 3 && ver < wt->from) continue; /* nothing to see from there */
        if (wt->kind != 3 && target < wt->from) continue;
        while (atomic_load(&wt->last_pos) < target) {
            if (wt->done) ts_fail("watcher %d ended before it saw position %" PRIu64, i, target);
            if (ht_now_ms() > deadline)
                ts_fail("watcher %d (kind %d, from %" PRIu64 ") is stuck at position %" PRIu64 " after the writers stopped; the "
                        "log ends at %" PRIu64 " and the watched part at %" PRIu64 " (a commit was never delivered)",
                        i, wt->kind, wt->from, atomic_load(&wt->last_pos), P, target);
            ht_sleep_ms(10);
        }
    }
}

/* ------------------------------------------------------------------ rounds */

typedef struct params {
    int fsync_kind;                  /* 0 always, 1 interval, 2 never */
    unsigned interval_ms;
    uint64_t segment;
    unsigned threads;
} params;

static void free_round(void)
{
    for (int wi = 0; wi < MAX_WRITERS; wi++) {
        writer *w = &RS.w[wi];
        for (size_t k = 0; k < w->nb; k++) {
            free(w->b[k]->ev);
            free(w->b[k]);
        }
        free(w->b);
        memset(w, 0, sizeof *w);
    }
    pthread_mutex_lock(&obs_mu);
    free(obs_tab);
    obs_tab = NULL;
    obs_cap = 0;
    pthread_mutex_unlock(&obs_mu);
}

static void run_round(uint64_t *r)
{
    params p;
    p.fsync_kind = (int)evs_test_rand_range(r, 0, 3);
    if (p.fsync_kind == 3) p.fsync_kind = 0; /* always: half of the rounds */
    p.interval_ms = (unsigned)evs_test_rand_range(r, 1, 50);
    static const uint64_t segs[] = {64u << 10, 256u << 10, 1u << 20, 4u << 20, 64u << 20};
    p.segment = segs[evs_test_rand_range(r, 0, 4)];
    p.threads = (unsigned)evs_test_rand_range(r, 1, 4);
    RS.nwriters = (int)evs_test_rand_range(r, 8, MAX_WRITERS);
    RS.nwatchers = (int)evs_test_rand_range(r, 3, MAX_WATCHERS);
    RS.nreaders = (int)evs_test_rand_range(r, 2, MAX_READERS);
    RS.nstreams = (int)evs_test_rand_range(r, 4, MAX_STREAMS);
    RS.kills = (int)evs_test_rand_range(r, 1, 3);
    RS.disk = evs_test_rand_range(r, 0, 2) == 0;
    RS.salt[0] = (uint8_t)evs_test_rand(r);
    RS.salt[1] = (uint8_t)evs_test_rand(r);
    for (int i = 0; i < RS.nstreams; i++) {
        snprintf(RS.names[i], sizeof RS.names[i], "%s%s%d%s", groups[i % 3], i % 4 == 0 ? "\xc3\xbc-" : "", i,
                 i % 5 == 0 ? "-\xe5\xaf\xbf\xe5\x8f\xb8" : "");
        ht_pct(RS.names[i], RS.pct[i], sizeof RS.pct[i]);
        atomic_store(&RS.known_version[i], 0);
    }
    atomic_store(&RS.known_pos, 0);
    for (int i = 0; i < RS.nwriters; i++) {
        RS.w[i].idx = i;
        RS.w[i].rng = evs_test_rand(r);
    }
    if (p.fsync_kind == 0) snprintf(RS.a_fsync, sizeof RS.a_fsync, "always");
    else if (p.fsync_kind == 1) snprintf(RS.a_fsync, sizeof RS.a_fsync, "interval:%u", p.interval_ms);
    else snprintf(RS.a_fsync, sizeof RS.a_fsync, "never");
    snprintf(RS.a_seg, sizeof RS.a_seg, "%" PRIu64, p.segment);
    snprintf(RS.a_threads, sizeof RS.a_threads, "%u", p.threads);
    /* the server */
    memset(&RS.srv, 0, sizeof RS.srv);
    ht_find_bin(RS.srv.bin, sizeof RS.srv.bin);
    if (access(RS.srv.bin, X_OK) != 0) ts_fail("evstored not found at %s (set EVS_BIN to the build directory)", RS.srv.bin);
    snprintf(RS.srv.dir, sizeof RS.srv.dir, "%s/round-%" PRIu64, RS.disk ? RS.root_disk : RS.root_fast, RS.round);
    evs_test_rmtree(RS.srv.dir);
    if (mkdir(RS.srv.dir, 0755) != 0) ts_fail("mkdir %s: %s", RS.srv.dir, strerror(errno));
    snprintf(RS.srv.data, sizeof RS.srv.data, "%s/data", RS.srv.dir);
    snprintf(RS.srv.log, sizeof RS.srv.log, "%s/server.log", RS.srv.dir);
    const char *args[] = {"--fsync", RS.a_fsync, "--segment-size", RS.a_seg, "--threads", RS.a_threads, "--heartbeat", "1"};
    for (size_t i = 0; i < sizeof args / sizeof *args; i++) RS.srv.args[RS.srv.nargs++] = args[i];
    snprintf(RS.desc, sizeof RS.desc,
             "--fsync %s --segment-size %s --threads %s; %d writers, %d watchers, %d readers, %d streams, %d kills, data on %s (%s)",
             RS.a_fsync, RS.a_seg, RS.a_threads, RS.nwriters, RS.nwatchers, RS.nreaders, RS.nstreams, RS.kills,
             RS.disk ? "disk" : "tmpfs", RS.srv.dir);
    fprintf(stderr, "round %" PRIu64 " (round seed %" PRIu64 "; replay: %s --seed %" PRIu64 " --first-round %" PRIu64
            " --rounds 1): --fsync %s --segment-size %s --threads %s, %d writers, %d watchers, %d readers, %d streams, %d kills, %s\n",
            RS.round, RS.rseed, RS.argv0, RS.seed, RS.round, RS.a_fsync, RS.a_seg, RS.a_threads, RS.nwriters, RS.nwatchers,
            RS.nreaders, RS.nstreams, RS.kills, RS.disk ? "disk" : "tmpfs");

    int loaded_end = (int)evs_test_rand_range(r, 0, 1); /* half the rounds end with a loaded clean cycle */
    for (RS.cycle = 0; RS.cycle <= RS.kills; RS.cycle++) {
        int final = RS.cycle == RS.kills;
        if (RS.cycle > 0 && evs_test_rand_range(r, 0, 3) == 0) kill_during_start((unsigned)evs_test_rand_range(r, 0, 40000));
        ht_server_start(&RS.srv);
        char when[120];
        snprintf(when, sizeof when, RS.cycle ? "after kill -9 #%d and restart" : "fresh start", RS.cycle);
        uint64_t P = verify_all(when);
        retry_unknown();
        if (final && !loaded_end) { /* end without a loaded clean cycle: stop, verify offline */
            ht_server_stop(&RS.srv);
            tc_verify_clean(RS.srv.data, NULL);
            note("stopped; evs_verify: clean");
            break;
        }
        start_threads(r, P);
        /* some acknowledgements first, then the kill at a random moment */
        unsigned want = (unsigned)evs_test_rand_range(r, 1, final ? 10 : 30);
        int64_t deadline = ht_now_ms() + (HT_ASAN ? 120000 : 60000);
        while (atomic_load(&RS.acks) < want) {
            if (ht_now_ms() > deadline)
                ts_fail("only %lu appends acknowledged in the deadline (wanted %u before the kill)", atomic_load(&RS.acks), want);
            server_alive();
            ht_sleep_ms(2);
        }
        unsigned delay_ms = evs_test_rand_range(r, 0, 4) == 0 ? 0 : (unsigned)evs_test_rand_range(r, 1, final ? 100 : 400);
        ht_sleep_ms((int)delay_ms); /* when to kill, not synchronisation */
        if (!final) {
            server_alive();
            unsigned term_ms = 0;
            int term_first = evs_test_rand_range(r, 0, 3) == 0;
            if (term_first) { /* SIGTERM under load, SIGKILL part-way through the shutdown */
                term_ms = (unsigned)evs_test_rand_range(r, 0, 150);
                atomic_store(&RS.terminating, 1);
                kill(RS.srv.pid, SIGTERM);
                ht_sleep_ms((int)term_ms); /* when to kill, not synchronisation */
                ST.term_kills++;
            }
            atomic_store(&RS.killing, 1);
            kill(RS.srv.pid, SIGKILL);
            int wst = 0;
            waitpid(RS.srv.pid, &wst, 0);
            RS.srv.pid = 0;
            if (!(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL) && !(term_first && WIFEXITED(wst) && WEXITSTATUS(wst) == 0)) {
                char how[64];
                ht_describe_status(wst, how, sizeof how);
                ts_fail("evstored ended with %s%s", how, term_first ? " after SIGTERM (expected exit 0 or the SIGKILL)" : "");
            }
            if (term_first) note("SIGTERM under load, then SIGKILL %u ms later (%s)", term_ms, WIFEXITED(wst) ? "it had exited 0" : "killed");
            ST.kills++;
            join_writers();
            join_others();
            unsigned long unk = 0;
            for (int wi = 0; wi < RS.nwriters; wi++)
                for (size_t k = 0; k < RS.w[wi].nb; k++) unk += RS.w[wi].b[k]->status == B_UNKNOWN;
            note("kill -9 %d of %d: %lu acknowledged in the cycle, %u ms after the %u-th, %lu batches without an answer",
                 RS.cycle + 1, RS.kills, atomic_load(&RS.acks), delay_ms, want, unk);
            continue;
        }
        /* the clean cycle: quiesce, every watcher catches up, SIGTERM with the
         * readers still reading (each read is whole or fails, never short),
         * restart, verify */
        atomic_store(&RS.stop_writers, 1);
        join_writers();
        note("clean cycle: writers stopped (%lu acknowledged)", atomic_load(&RS.acks));
        watchers_catch_up();
        note("watchers caught up");
        atomic_store(&RS.stop, 1); /* watchers: from now on their answers may end */
        atomic_store(&RS.terminating, 1);
        ht_server_stop(&RS.srv); /* SIGTERM: exit 0; watches end cleanly */
        atomic_store(&RS.stop_readers, 1);
        for (int i = 0; i < RS.nreaders; i++) pthread_join(RS.rd[i].th, NULL);
        for (int i = 0; i < RS.nwatchers; i++) {
            pthread_join(RS.wt[i].th, NULL);
            if (RS.wt[i].end_rc != 0)
                ts_fail("watcher %d: its answer did not end cleanly at SIGTERM (%s)", i, ht_errname(RS.wt[i].end_rc));
        }
        ST.clean++;
        note("SIGTERM: exit 0, watches ended cleanly");
        ht_server_start(&RS.srv);
        verify_all("after the final SIGTERM and restart");
        retry_unknown(); /* nothing should be left, but a lost connection may have left one */
        ht_server_stop(&RS.srv);
        tc_verify_clean(RS.srv.data, NULL);
        note("evs_verify: clean");
    }
    for (int wi = 0; wi < RS.nwriters; wi++)
        for (size_t k = 0; k < RS.w[wi].nb; k++) {
            batch *b = RS.w[wi].b[k];
            if (b->status == B_ACKED) ST.acked_batches++, ST.acked_events += b->n;
            if (b->status == B_REJECTED && b->conflict <= 2) b->conflict == 1 ? ST.rejected_version++ : ST.rejected_cond++;
            if (b->status == B_REJECTED && b->conflict == 3) ST.rejected_stopping++;
        }
    evs_test_rmtree(RS.srv.dir);
    free_round();
}

int main(int argc, char **argv)
{
    double seconds = 60;
    uint64_t max_rounds = UINT64_MAX, first = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) max_rounds = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) setenv("EVS_SEED", argv[++i], 1);
        else if (!strcmp(argv[i], "--first-round") && i + 1 < argc) first = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--verbose")) verbose = 1;
        else {
            fprintf(stderr, "usage: %s [--seconds N] [--rounds N] [--seed S] [--first-round R] [--verbose]\n", argv[0]);
            return 2;
        }
    }
    ht_init(); /* SIGPIPE ignored; prints the seed */
    json_object_seed(1);
    RS.argv0 = argv[0];
    RS.seed = evs_test_seed();
    if (tc_tmpdir(RS.root_fast, sizeof RS.root_fast) != 0 || evs_test_tmpdir(RS.root_disk, sizeof RS.root_disk) != 0)
        ts_fail("cannot make scratch directories");
    double t0 = tc_now();
    t_start = t0;
    uint64_t round = first;
    for (; round - first < max_rounds && tc_now() - t0 < seconds; round++) {
        uint64_t r = RS.seed ^ (round * 0x9e3779b97f4a7c15ull);
        evs_test_rand(&r);
        RS.round = round;
        RS.rseed = evs_test_rand(&r);
        r = RS.rseed;
        run_round(&r);
        ST.rounds++;
    }
    evs_test_rmtree(RS.root_fast);
    evs_test_rmtree(RS.root_disk);
    fprintf(stderr,
            "\ntorture_server: %" PRIu64 " rounds in %.0fs: %" PRIu64 " kill -9 under load (%" PRIu64 " of them during a SIGTERM), %" PRIu64
            " kills during start, %" PRIu64 " clean SIGTERM restarts; %" PRIu64 " verifications, %" PRIu64 " events verified (largest log %" PRIu64
            "); %" PRIu64 " batches (%" PRIu64 " events) acknowledged; 409: %" PRIu64 " expected-version, %" PRIu64 " condition; %" PRIu64
            " refused (503) while stopping; %" PRIu64
            " unacknowledged batches retried (%" PRIu64 " had landed, %" PRIu64 " landed on retry, %" PRIu64 " refused); %" PRIu64
            " replays; %" PRIu64 " watched lines, %" PRIu64 " reads (%" PRIu64 " lines); seed %" PRIu64 ": OK\n",
            ST.rounds, tc_now() - t0, ST.kills, ST.term_kills, ST.recovery_kills, ST.clean, ST.verifications, ST.events_verified, ST.max_log,
            ST.acked_batches, ST.acked_events, ST.rejected_version, ST.rejected_cond, ST.rejected_stopping, ST.unknown, ST.retry_landed_before,
            ST.retry_landed_now, ST.retry_refused, ST.replays, (uint64_t)atomic_load(&ST.watch_lines),
            (uint64_t)atomic_load(&ST.reads), (uint64_t)atomic_load(&ST.read_lines), RS.seed);
    return 0;
}
