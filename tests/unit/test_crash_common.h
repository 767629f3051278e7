/*
 * test_crash_common.h — shared machinery of the crash-safety tests
 * (test_recovery_damage.c, test_faults.c, test_powercut.c) and of the torture
 * driver (tests/torture/torture_engine.c). Header-only: every function is
 * static, so each executable gets its own copy and no CMake change is needed.
 *
 * WHAT IT PROVIDES
 *  - A deterministic workload model (tc_work): batches of 1..5 events, single-
 *    or multi-stream, mixed sizes (tiny to a few KiB, UTF-8 and escapes in the
 *    JSON), optional metadata, client-chosen ids that encode (batch, index) so
 *    any event read back can be traced to what was appended.
 *  - The log checker (tc_check): reads the whole store back — global log
 *    forwards and backwards, every event by id, every stream forwards and
 *    backwards, stream versions and the stream list — and proves:
 *      * every acknowledged batch is present, byte-identical, in one piece;
 *      * every batch present is whole and contiguous (no partial batch), its
 *        events in order; positions run 1..P without gaps; stream versions run
 *        1..n per stream in log order; commit times never go backwards;
 *      * an attempted batch that is absent is absent everywhere (get by id
 *        says not found);
 *      * stream reads and gets by id agree with the global log.
 *  - Helpers: fast scratch directories, directory copy, bit flips, segment
 *    walking per the format in src/log/record.c, evs_verify with a problem
 *    list, a log ring buffer (store messages are kept quiet and printed only
 *    when a check fails, together with the case being run and the seed).
 *
 * Failure reporting: TC_ASSERT prints the current case (tc_ctx), the seed and
 * the last store log lines, then calls TC_ABORT() (cmocka's fail() in unit
 * tests; the torture driver defines its own).
 */
#ifndef EVS_TEST_CRASH_COMMON_H
#define EVS_TEST_CRASH_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "evstore.h"
#include "testutil.h"

#define TC_UNUSED __attribute__((unused))

#ifndef TC_ABORT
#define TC_ABORT() fail()
#endif

/* ------------------------------------------------------------------------ */
/* context, log ring, assertions                                            */
/* ------------------------------------------------------------------------ */

#define TC_LOG_LINES 40
static pthread_mutex_t tc_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char tc_log_ring[TC_LOG_LINES][400];  /* last store messages */
static unsigned tc_log_next;                 /* next slot (mod TC_LOG_LINES) */
static char tc_ctx[600];                     /* the case being run, for failure messages */
static int tc_check_light;                   /* 1: tc_check skips the backward re-reads (big matrices) */

static TC_UNUSED void tc_log_fn(void *ctx, int level, const char *message)
{
    (void)ctx;
    static const char *lv[] = {"E", "W", "I", "D"};
    pthread_mutex_lock(&tc_log_mu);
    snprintf(tc_log_ring[tc_log_next % TC_LOG_LINES], sizeof tc_log_ring[0], "[%s] %s",
             level >= 0 && level <= 3 ? lv[level] : "?", message);
    tc_log_next++;
    pthread_mutex_unlock(&tc_log_mu);
    if (getenv("EVS_TEST_VERBOSE"))
        fprintf(stderr, "  store: %s\n", message);
}

static TC_UNUSED void tc_log_clear(void)
{
    pthread_mutex_lock(&tc_log_mu);
    tc_log_next = 0;
    pthread_mutex_unlock(&tc_log_mu);
}

static TC_UNUSED void tc_setctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static TC_UNUSED void tc_setctx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tc_ctx, sizeof tc_ctx, fmt, ap);
    va_end(ap);
    tc_log_clear();
}

static TC_UNUSED void tc_dump(void)
{
    fprintf(stderr, "---- failing case: %s (seed %" PRIu64 ", replay with EVS_SEED=%" PRIu64 ")\n",
            tc_ctx, evs_test_seed(), evs_test_seed());
    pthread_mutex_lock(&tc_log_mu);
    unsigned n = tc_log_next < TC_LOG_LINES ? tc_log_next : TC_LOG_LINES;
    if (n) fprintf(stderr, "---- last store log lines:\n");
    for (unsigned i = tc_log_next - n; i != tc_log_next; i++)
        fprintf(stderr, "  %s\n", tc_log_ring[i % TC_LOG_LINES]);
    pthread_mutex_unlock(&tc_log_mu);
}

#define TC_ASSERT(cond, ...)                                                              \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            tc_dump();                                                                    \
            fprintf(stderr, "%s:%d: check failed: %s\n    ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
            TC_ABORT();                                                                   \
        }                                                                                 \
    } while (0)

#define TC_OK(expr)                                                                       \
    do {                                                                                  \
        int tc_rc_ = (expr);                                                              \
        TC_ASSERT(tc_rc_ == 0, "%s returned %d (%s)", #expr, tc_rc_, evs_errname(tc_rc_)); \
    } while (0)

/* EVS_TEST_SCALE (default 1): multiplies iteration counts for torture runs. */
static TC_UNUSED unsigned tc_scale(void)
{
    const char *e = getenv("EVS_TEST_SCALE");
    long v = e && *e ? strtol(e, NULL, 10) : 1;
    return v < 1 ? 1u : (unsigned)v;
}

static TC_UNUSED double tc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------ */
/* scratch directories and plain file helpers (tests may use syscalls)       */
/* ------------------------------------------------------------------------ */

/*
 * A fresh empty directory for a store on the posix vfs. These tests open,
 * recover and close stores thousands of times with real fsyncs, so they
 * prefer a tmpfs: $EVS_FAST_TMP, else /dev/shm when writable, else
 * evs_test_tmpdir() ($EVS_TEST_TMP). The vfs is still the posix one: every
 * open/pwrite/fdatasync/rename is a real system call.
 */
static TC_UNUSED int tc_tmpdir(char *out, size_t cap)
{
    const char *base = getenv("EVS_FAST_TMP");
    struct stat st;
    if (!base && stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
        base = "/dev/shm";
    if (base && *base) {
        int n = snprintf(out, cap, "%s/evs-crash-XXXXXX", base);
        if (n > 0 && (size_t)n < cap && mkdtemp(out)) return 0;
    }
    return evs_test_tmpdir(out, cap);
}

static TC_UNUSED void tc_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    TC_ASSERT(n > 0 && (size_t)n < cap, "path too long: %s/%s", dir, name);
}

/* The whole file into a malloc'd buffer (+1 NUL byte); *len its size. */
static TC_UNUSED uint8_t *tc_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    TC_ASSERT(f != NULL, "open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    TC_ASSERT(p != NULL, "out of memory");
    TC_ASSERT(fread(p, 1, (size_t)n, f) == (size_t)n, "read %s", path);
    fclose(f);
    p[n] = 0;
    *len = (size_t)n;
    return p;
}

static TC_UNUSED void tc_spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    TC_ASSERT(f != NULL, "create %s: %s", path, strerror(errno));
    TC_ASSERT(fwrite(p, 1, n, f) == n, "write %s", path);
    TC_ASSERT(fclose(f) == 0, "close %s", path);
}

static TC_UNUSED uint64_t tc_fsize(const char *path)
{
    struct stat st;
    TC_ASSERT(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
    return (uint64_t)st.st_size;
}

static TC_UNUSED void tc_truncate(const char *path, uint64_t size)
{
    TC_ASSERT(truncate(path, (off_t)size) == 0, "truncate %s: %s", path, strerror(errno));
}

/* Flip bit `bit` (0..7) of the byte at off. */
static TC_UNUSED void tc_flip(const char *path, uint64_t off, unsigned bit)
{
    int fd = open(path, O_RDWR);
    TC_ASSERT(fd >= 0, "open %s: %s", path, strerror(errno));
    uint8_t b;
    TC_ASSERT(pread(fd, &b, 1, (off_t)off) == 1, "pread %s @%" PRIu64, path, off);
    b ^= (uint8_t)(1u << bit);
    TC_ASSERT(pwrite(fd, &b, 1, (off_t)off) == 1, "pwrite %s", path);
    close(fd);
}

typedef struct tc_names {
    char **v;
    size_t n;
} tc_names;

static TC_UNUSED int tc_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Regular files in dir whose names end with suffix ("" = all), sorted. */
static TC_UNUSED tc_names tc_list(const char *dir, const char *suffix)
{
    tc_names r = {0};
    DIR *d = opendir(dir);
    TC_ASSERT(d != NULL, "opendir %s: %s", dir, strerror(errno));
    struct dirent *e;
    size_t sl = strlen(suffix);
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (nl < sl || strcmp(e->d_name + nl - sl, suffix) != 0) continue;
        r.v = realloc(r.v, (r.n + 1) * sizeof *r.v);
        TC_ASSERT(r.v != NULL, "out of memory");
        r.v[r.n++] = strdup(e->d_name);
    }
    closedir(d);
    if (r.n) qsort(r.v, r.n, sizeof *r.v, tc_cmp_str);
    return r;
}

static TC_UNUSED void tc_names_free(tc_names *n)
{
    for (size_t i = 0; i < n->n; i++) free(n->v[i]);
    free(n->v);
    memset(n, 0, sizeof *n);
}

/* Replace dst (created if absent, emptied otherwise) by a copy of the files of src. */
static TC_UNUSED void tc_copy_dir(const char *src, const char *dst)
{
    char a[4096], b[4096];
    mkdir(dst, 0755);
    tc_names old = tc_list(dst, "");
    for (size_t i = 0; i < old.n; i++) {
        tc_path(b, sizeof b, dst, old.v[i]);
        unlink(b);
    }
    tc_names_free(&old);
    tc_names l = tc_list(src, "");
    for (size_t i = 0; i < l.n; i++) {
        size_t len;
        tc_path(a, sizeof a, src, l.v[i]);
        tc_path(b, sizeof b, dst, l.v[i]);
        uint8_t *p = tc_slurp(a, &len);
        tc_spit(b, p, len);
        free(p);
    }
    tc_names_free(&l);
}

/* Remove every "*.idx" file: the next open rebuilds them from the segments
 * (and so re-scans, and re-validates, every record of every segment). */
static TC_UNUSED void tc_remove_idx(const char *dir)
{
    char p[4096];
    tc_names l = tc_list(dir, ".idx");
    for (size_t i = 0; i < l.n; i++) {
        tc_path(p, sizeof p, dir, l.v[i]);
        unlink(p);
    }
    tc_names_free(&l);
}

/* ------------------------------------------------------------------------ */
/* segment files, walked per the format in src/log/record.c                 */
/* ------------------------------------------------------------------------ */

#define TC_SEG_HDR 64u

typedef struct tc_rec {
    uint64_t off;       /* file offset of the record */
    uint32_t size;      /* total_len */
    uint64_t position;  /* position field */
    int commit;         /* COMMIT flag */
    int after_sync;     /* AFTER_SYNC flag: first record of a write issued with nothing unsynced */
    uint32_t body;      /* 72 + S + T + D + M: padding runs from body to size - 8 */
} tc_rec;

typedef struct tc_seg {
    uint64_t base;      /* from the file name */
    uint64_t size;      /* file size */
    tc_rec *r;          /* records, in file order */
    size_t n;
} tc_seg;

static TC_UNUSED uint32_t tc_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static TC_UNUSED uint64_t tc_get64(const uint8_t *p)
{
    return (uint64_t)tc_get32(p) | (uint64_t)tc_get32(p + 4) << 32;
}

static TC_UNUSED void tc_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Walk the records of an undamaged segment file (framing only: magic, total_len). */
static TC_UNUSED tc_seg tc_walk(const char *dir, const char *name)
{
    char path[4096];
    size_t len;
    tc_seg g = {0};
    tc_path(path, sizeof path, dir, name);
    uint8_t *p = tc_slurp(path, &len);
    g.base = strtoull(name, NULL, 10);
    g.size = len;
    uint64_t off = TC_SEG_HDR;
    while (off + 12 <= len) {
        TC_ASSERT(memcmp(p + off, "EVR\x01", 4) == 0, "%s: no record magic at %" PRIu64, name, off);
        uint32_t total = tc_get32(p + off + 8);
        TC_ASSERT(total >= 88 && total % 8 == 0 && off + total <= len, "%s: bad total_len at %" PRIu64, name, off);
        g.r = realloc(g.r, (g.n + 1) * sizeof *g.r);
        TC_ASSERT(g.r != NULL, "out of memory");
        tc_rec *r = &g.r[g.n++];
        r->off = off;
        r->size = total;
        r->position = tc_get64(p + off + 32);
        r->commit = p[off + 5] & 1;
        r->after_sync = (p[off + 5] >> 2) & 1;
        r->body = 72u + p[off + 6] + p[off + 7] + tc_get32(p + off + 12) + tc_get32(p + off + 16);
        off += total;
    }
    TC_ASSERT(off == len, "%s: %" PRIu64 " stray bytes at the end", name, len - off);
    free(p);
    return g;
}

static TC_UNUSED void tc_seg_free(tc_seg *g)
{
    free(g->r);
    memset(g, 0, sizeof *g);
}

/* ------------------------------------------------------------------------ */
/* the workload model                                                       */
/* ------------------------------------------------------------------------ */

#define TC_MAX_BATCH 8
#define TC_NSTREAM_NAMES 8

static const char *const tc_stream_names[TC_NSTREAM_NAMES] = {
    "orders/1", "orders/2", "carts/\xc3\xa9t\xc3\xa9", "users/7", "a", "orders/1/lines", "\xf0\x9f\x9a\x80/x", "zz"};
static const char *const tc_type_names[] = {"Created", "Updated", "Deleted", "Shipped", "T"};

typedef struct tc_event {
    uint32_t batch;         /* index of its batch */
    uint16_t idx;           /* index within the batch */
    uint8_t stream;         /* index into tc_stream_names */
    uint8_t type;           /* index into tc_type_names */
    char *data;             /* JSON sent, or NULL (stored and served as "null") */
    size_t data_len;
    char *meta;             /* JSON object or NULL (absent) */
    size_t meta_len;
    uint8_t id[16];         /* encodes (tag, batch, idx) */
} tc_event;

typedef struct tc_batch {
    size_t first;           /* index of its first event in tc_work.ev */
    size_t n;               /* events */
    int multi;              /* 1: evs_append_multi, 0: evs_append to ev[first].stream */
    int64_t expected;       /* evs_append: expected version (EVS_EXPECT_ANY or exact) */
} tc_batch;

/* Status of a batch, as the appender saw it. */
enum { TC_NOT_TRIED = 0, TC_UNACKED = 1, TC_ACKED = 2 };

typedef struct tc_work {
    tc_event *ev;
    size_t nev, evcap;
    tc_batch *b;
    size_t nb, bcap;
    uint8_t *status;        /* per batch: TC_NOT_TRIED / TC_UNACKED / TC_ACKED */
    uint64_t rng;           /* generator state */
    uint32_t tag;           /* first 4 bytes of every id of this workload */
    unsigned nstreams;      /* streams used (<= TC_NSTREAM_NAMES) */
    unsigned max_batch;     /* events per batch: 1..max_batch */
    unsigned pct_large;     /* percent of events with 1-4 KiB of data */
    int use_expected;       /* single-stream batches sometimes carry an exact expected version
                               (valid only when batches are appended in order, one at a time) */
    unsigned force_n;       /* != 0: the next batches have exactly this many events */
    size_t force_max_data;  /* != 0: the next events carry at most this many bytes of data */
    int force_tiny;         /* 1: the next events carry no data (stored as null) and no metadata */
    uint64_t model_version[TC_NSTREAM_NAMES]; /* generator: versions if every batch commits */
    pthread_mutex_t mu;     /* status updates from several appender threads */
} tc_work;

static TC_UNUSED void tc_work_init(tc_work *w, uint64_t seed, unsigned nstreams, unsigned max_batch,
                                   unsigned pct_large)
{
    memset(w, 0, sizeof *w);
    w->rng = seed ^ 0x5eed5eed5eedull;
    w->tag = (uint32_t)evs_test_rand(&w->rng) | 1u;
    w->nstreams = nstreams < 1 ? 1 : nstreams > TC_NSTREAM_NAMES ? TC_NSTREAM_NAMES : nstreams;
    w->max_batch = max_batch < 1 ? 1 : max_batch > TC_MAX_BATCH ? TC_MAX_BATCH : max_batch;
    w->pct_large = pct_large;
    w->use_expected = 1;
    pthread_mutex_init(&w->mu, NULL);
}

static TC_UNUSED void tc_work_free(tc_work *w)
{
    for (size_t i = 0; i < w->nev; i++) {
        free(w->ev[i].data);
        free(w->ev[i].meta);
    }
    free(w->ev);
    free(w->b);
    free(w->status);
    pthread_mutex_destroy(&w->mu);
    memset(w, 0, sizeof *w);
}

/* A JSON string body of about n bytes: ASCII, 2- and 4-byte UTF-8, escapes. */
static TC_UNUSED size_t tc_gen_string(uint64_t *rng, char *out, size_t n)
{
    static const char *const pieces[] = {"a", "b", "c", "x", "y", "z", "0", "7", " ", "-",
                                         "\xc3\xa9", "\xf0\x9f\x98\x80", "\\n", "\\\"", "\\\\", "\\u00e9", "/"};
    size_t len = 0;
    while (len < n) {
        const char *p = pieces[evs_test_rand_range(rng, 0, sizeof pieces / sizeof *pieces - 1)];
        size_t pl = strlen(p);
        memcpy(out + len, p, pl);
        len += pl;
    }
    return len;
}

static TC_UNUSED char *tc_gen_json(uint64_t *rng, uint32_t batch, unsigned idx, size_t target, size_t *len)
{
    char *p = malloc(target + 128);
    TC_ASSERT(p != NULL, "out of memory");
    unsigned shape = (unsigned)evs_test_rand_range(rng, 0, 9);
    int n;
    if (target < 16 && shape < 3) {  /* small scalars and arrays */
        static const char *const scalars[] = {"0", "-1.5e3", "true", "\"\"", "[]", "{}", "123456789012345678901234567890"};
        const char *s = scalars[evs_test_rand_range(rng, 0, 6)];
        *len = strlen(s);
        memcpy(p, s, *len + 1);
        return p;
    }
    n = snprintf(p, 64, "{\"b\":%u,\"i\":%u,\"s\":\"", batch, idx);
    size_t l = (size_t)n + tc_gen_string(rng, p + n, target > (size_t)n ? target - (size_t)n : 1);
    memcpy(p + l, "\",\"n\":[1,2.50,-0]}", 18);
    l += 18;
    p[l] = 0;
    *len = l;
    return p;
}

/* Add one batch to the model; returns its index. */
static TC_UNUSED size_t tc_work_add(tc_work *w)
{
    uint64_t *rng = &w->rng;
    if (w->nb == w->bcap) {
        w->bcap = w->bcap ? w->bcap * 2 : 64;
        w->b = realloc(w->b, w->bcap * sizeof *w->b);
        w->status = realloc(w->status, w->bcap);
        TC_ASSERT(w->b && w->status, "out of memory");
    }
    size_t bi = w->nb++;
    tc_batch *b = &w->b[bi];
    w->status[bi] = TC_NOT_TRIED;
    b->first = w->nev;
    b->n = w->force_n ? w->force_n : (size_t)evs_test_rand_range(rng, 1, w->max_batch);
    b->multi = w->nstreams > 1 && evs_test_rand_range(rng, 0, 3) == 0;
    b->expected = EVS_EXPECT_ANY;
    uint8_t s0 = (uint8_t)evs_test_rand_range(rng, 0, w->nstreams - 1);
    if (!b->multi && w->use_expected && evs_test_rand_range(rng, 0, 2) == 0)
        b->expected = (int64_t)w->model_version[s0];
    for (size_t i = 0; i < b->n; i++) {
        if (w->nev == w->evcap) {
            w->evcap = w->evcap ? w->evcap * 2 : 256;
            w->ev = realloc(w->ev, w->evcap * sizeof *w->ev);
            TC_ASSERT(w->ev != NULL, "out of memory");
        }
        tc_event *e = &w->ev[w->nev++];
        memset(e, 0, sizeof *e);
        e->batch = (uint32_t)bi;
        e->idx = (uint16_t)i;
        e->stream = b->multi ? (uint8_t)evs_test_rand_range(rng, 0, w->nstreams - 1) : s0;
        e->type = (uint8_t)evs_test_rand_range(rng, 0, sizeof tc_type_names / sizeof *tc_type_names - 1);
        w->model_version[e->stream]++;
        unsigned pick = (unsigned)evs_test_rand_range(rng, 0, 99);
        if (pick < 8 || w->force_tiny) {
            e->data = NULL;  /* served as null */
        } else {
            size_t target = pick < 8 + w->pct_large ? (size_t)evs_test_rand_range(rng, 1000, 4000)
                          : pick < 60 ? (size_t)evs_test_rand_range(rng, 1, 60)
                                      : (size_t)evs_test_rand_range(rng, 100, 700);
            if (w->force_max_data && target > w->force_max_data)
                target = (size_t)evs_test_rand_range(rng, 1, w->force_max_data);
            e->data = tc_gen_json(rng, e->batch, e->idx, target, &e->data_len);
        }
        if (evs_test_rand_range(rng, 0, 2) == 0 && !w->force_tiny) {
            e->meta = malloc(64);
            TC_ASSERT(e->meta != NULL, "out of memory");
            e->meta_len = (size_t)snprintf(e->meta, 64, "{\"m\":%" PRIu64 ",\"k\":\"\xc3\xa9\"}",
                                           evs_test_rand_range(rng, 0, 1000000));
        }
        memcpy(e->id, &w->tag, 4);
        e->id[4] = (uint8_t)(bi >> 24); e->id[5] = (uint8_t)(bi >> 16);
        e->id[6] = (uint8_t)(bi >> 8);  e->id[7] = (uint8_t)bi;
        e->id[8] = (uint8_t)(i >> 8);   e->id[9] = (uint8_t)i;
        evs_test_rand_bytes(rng, e->id + 10, 6);
    }
    return bi;
}

/* Forget the batches from nb on (they were added for one case only). */
static TC_UNUSED void tc_work_truncate(tc_work *w, size_t nb)
{
    if (nb >= w->nb) return;
    size_t nev = w->b[nb].first;
    for (size_t i = nev; i < w->nev; i++) {
        free(w->ev[i].data);
        free(w->ev[i].meta);
        w->model_version[w->ev[i].stream]--;
    }
    w->nev = nev;
    w->nb = nb;
}

/* Which event of w has this id (or -1). */
static TC_UNUSED long tc_find_id(const tc_work *w, const uint8_t id[16])
{
    if (memcmp(id, &w->tag, 4) != 0) return -1;
    size_t bi = (size_t)id[4] << 24 | (size_t)id[5] << 16 | (size_t)id[6] << 8 | id[7];
    size_t i = (size_t)id[8] << 8 | id[9];
    if (bi >= w->nb || i >= w->b[bi].n) return -1;
    size_t k = w->b[bi].first + i;
    return memcmp(w->ev[k].id, id, 16) == 0 ? (long)k : -1;
}

static TC_UNUSED void tc_set_status(tc_work *w, size_t bi, int st)
{
    pthread_mutex_lock(&w->mu);
    w->status[bi] = (uint8_t)st;
    pthread_mutex_unlock(&w->mu);
}

/* A batch's status, read under the lock its appender thread writes it with
 * (tc_check may run while appenders still go). */
static TC_UNUSED uint8_t tc_status(const tc_work *w, size_t bi)
{
    pthread_mutex_t *mu = (pthread_mutex_t *)(uintptr_t)&w->mu;
    pthread_mutex_lock(mu);
    uint8_t st = w->status[bi];
    pthread_mutex_unlock(mu);
    return st;
}

/*
 * Append batch bi. Marks it UNACKED before the call and ACKED when it returns
 * 0 (so a crash in between leaves it UNACKED). On success checks what the
 * store reports: n contiguous positions, ids as given, versions from 1.
 * @return the append's rc.
 */
static TC_UNUSED int tc_append(evs_store *s, tc_work *w, size_t bi, evs_append_result *res_out)
{
    pthread_mutex_lock(&w->mu);
    tc_batch b = w->b[bi];
    evs_event_in in[TC_MAX_BATCH];
    evs_commit out[TC_MAX_BATCH];
    memset(in, 0, sizeof in);
    for (size_t i = 0; i < b.n; i++) {
        const tc_event *e = &w->ev[b.first + i];
        in[i].stream = tc_stream_names[e->stream];
        in[i].expected_version = EVS_EXPECT_ANY;
        in[i].type = tc_type_names[e->type];
        in[i].data = e->data;
        in[i].data_len = e->data_len;
        in[i].metadata = e->meta;
        in[i].metadata_len = e->meta_len;
        in[i].id = e->id;
    }
    w->status[bi] = TC_UNACKED;
    pthread_mutex_unlock(&w->mu);
    evs_append_result res;
    memset(&res, 0, sizeof res);
    int rc = b.multi ? evs_append_multi(s, in, b.n, NULL, out, &res)
                     : evs_append(s, in[0].stream, b.expected, in, b.n, out, &res);
    if (rc == 0) {
        TC_ASSERT(res.last_position - res.first_position + 1 == b.n && res.first_position > 0,
                  "batch %zu: acknowledged positions %" PRIu64 "..%" PRIu64 " for %zu events",
                  bi, res.first_position, res.last_position, b.n);
        for (size_t i = 0; i < b.n; i++) {
            TC_ASSERT(out[i].position == res.first_position + i, "batch %zu event %zu: position", bi, i);
            TC_ASSERT(memcmp(out[i].id, in[i].id, 16) == 0, "batch %zu event %zu: id", bi, i);
            TC_ASSERT(out[i].version >= 1, "batch %zu event %zu: version 0", bi, i);
        }
        tc_set_status(w, bi, TC_ACKED);
    } else {
        TC_ASSERT(rc != EVS_EINVAL && rc != EVS_EDUPLICATE && rc != EVS_ETOOBIG,
                  "batch %zu: the workload itself was refused: %s (%s)", bi, evs_errname(rc), res.message);
    }
    if (res_out) *res_out = res;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* checking a store against the model                                       */
/* ------------------------------------------------------------------------ */

static TC_UNUSED void tc_check_event(const tc_work *w, size_t k, const evs_event *ev, const char *how)
{
    const tc_event *e = &w->ev[k];
    const char *st = tc_stream_names[e->stream], *ty = tc_type_names[e->type];
    const char *data = e->data ? e->data : "null";
    size_t dlen = e->data ? e->data_len : 4;
    TC_ASSERT(memcmp(ev->id, e->id, 16) == 0, "%s: position %" PRIu64 ": wrong id", how, ev->position);
    TC_ASSERT(ev->stream_len == strlen(st) && memcmp(ev->stream, st, ev->stream_len) == 0 && ev->stream[ev->stream_len] == 0,
              "%s: position %" PRIu64 ": stream \"%.*s\", want \"%s\"", how, ev->position,
              (int)ev->stream_len, ev->stream, st);
    TC_ASSERT(ev->type_len == strlen(ty) && memcmp(ev->type, ty, ev->type_len) == 0,
              "%s: position %" PRIu64 ": type", how, ev->position);
    TC_ASSERT(ev->data_len == dlen && memcmp(ev->data, data, dlen) == 0,
              "%s: position %" PRIu64 ": data differs (%zu bytes, want %zu)", how, ev->position, ev->data_len, dlen);
    if (e->meta) {
        TC_ASSERT(ev->metadata && ev->metadata_len == e->meta_len && memcmp(ev->metadata, e->meta, e->meta_len) == 0,
                  "%s: position %" PRIu64 ": metadata differs", how, ev->position);
    } else {
        TC_ASSERT(ev->metadata == NULL, "%s: position %" PRIu64 ": metadata where none was sent", how, ev->position);
    }
}

/* What tc_check found. */
typedef struct tc_found {
    uint64_t position;      /* evs_position */
    size_t *at;             /* [position - 1] = event index in w (malloc'd; tc_found_free) */
    uint8_t *present;       /* per batch: 1 if in the log */
    size_t nbatches;        /* batches present */
    uint64_t stream_count[TC_NSTREAM_NAMES]; /* events per stream in the log */
} tc_found;

static TC_UNUSED void tc_found_free(tc_found *f)
{
    free(f->at);
    free(f->present);
    memset(f, 0, sizeof *f);
}

/*
 * The full check described at the top of this file. Events of the workload
 * only (a store holding foreign events fails). The caller adds its own
 * constraints on which batches may be present (see tc_expect_prefix).
 */
static TC_UNUSED void tc_check(evs_store *s, const tc_work *w, tc_found *f)
{
    memset(f, 0, sizeof *f);
    f->position = evs_position(s);
    f->at = calloc(f->position + 1, sizeof *f->at);
    f->present = calloc(w->nb + 1, 1);
    TC_ASSERT(f->at && f->present, "out of memory");

    /* 1. the global log, forwards: whole batches in order, content, versions */
    evs_read_options ro;
    evs_read_options_init(&ro);
    evs_iter *it = NULL;
    TC_OK(evs_iter_open(s, &ro, &it));
    uint64_t p = 0, ver[TC_NSTREAM_NAMES] = {0};
    int64_t last_time = INT64_MIN;
    long cur = -1;  /* batch in progress, or -1 */
    size_t cur_next = 0;
    for (;;) {
        const evs_event *ev = NULL;
        int rc = evs_iter_next(it, &ev);
        TC_ASSERT(rc == 0, "global read after position %" PRIu64 ": %s", p, evs_errname(rc));
        if (!ev) break;
        p++;
        TC_ASSERT(ev->position == p, "global read: position %" PRIu64 " where %" PRIu64 " was due", ev->position, p);
        TC_ASSERT(p <= f->position, "global read returns position %" PRIu64 " past evs_position %" PRIu64, p, f->position);
        long k = tc_find_id(w, ev->id);
        TC_ASSERT(k >= 0, "position %" PRIu64 " holds an event that was never appended", p);
        const tc_event *e = &w->ev[k];
        TC_ASSERT(tc_status(w, e->batch) != TC_NOT_TRIED, "position %" PRIu64 ": batch %u was never attempted", p, e->batch);
        if (e->idx == 0) {
            TC_ASSERT(cur < 0, "position %" PRIu64 ": batch %u starts inside batch %ld (partial batch visible)", p, e->batch, cur);
            TC_ASSERT(!f->present[e->batch], "position %" PRIu64 ": batch %u appears twice", p, e->batch);
            f->present[e->batch] = 1;
            f->nbatches++;
            cur = (long)e->batch;
            cur_next = 0;
        }
        TC_ASSERT(cur == (long)e->batch && e->idx == cur_next,
                  "position %" PRIu64 ": event %u of batch %u out of order (partial batch visible)", p, e->idx, e->batch);
        tc_check_event(w, (size_t)k, ev, "global read");
        ver[e->stream]++;
        TC_ASSERT(ev->version == ver[e->stream], "position %" PRIu64 ": version %" PRIu64 " in stream %s, want %" PRIu64,
                  p, ev->version, tc_stream_names[e->stream], ver[e->stream]);
        TC_ASSERT(ev->time_us >= last_time, "position %" PRIu64 ": commit time goes backwards", p);
        last_time = ev->time_us;
        f->at[p - 1] = (size_t)k;
        if (++cur_next == w->b[e->batch].n) cur = -1;
    }
    evs_iter_close(it);
    TC_ASSERT(cur < 0, "the log ends inside batch %ld (partial batch visible)", cur);
    TC_ASSERT(p == f->position, "global read returned %" PRIu64 " events, evs_position says %" PRIu64, p, f->position);
    memcpy(f->stream_count, ver, sizeof ver);

    /* 2. acknowledged batches are all there */
    for (size_t bi = 0; bi < w->nb; bi++)
        TC_ASSERT(tc_status(w, bi) != TC_ACKED || f->present[bi],
                  "batch %zu was acknowledged but is missing (log ends at %" PRIu64 ")", bi, f->position);

    /* 3. backwards: the same sequence reversed */
    if (!tc_check_light) {
        ro.backward = 1;
        TC_OK(evs_iter_open(s, &ro, &it));
        for (uint64_t q = f->position; q >= 1; q--) {
            const evs_event *ev = NULL;
            int rc = evs_iter_next(it, &ev);
            TC_ASSERT(rc == 0 && ev && ev->position == q, "backward read at %" PRIu64 ": %s", q, evs_errname(rc));
            TC_ASSERT(memcmp(ev->id, w->ev[f->at[q - 1]].id, 16) == 0, "backward read at %" PRIu64 ": other event", q);
        }
        const evs_event *ev = NULL;
        TC_OK(evs_iter_next(it, &ev));
        TC_ASSERT(ev == NULL, "backward read goes past position 1");
        evs_iter_close(it);
    }

    /* 4. every attempted event by id: found where the log has it, else not found */
    for (size_t k = 0; k < w->nev; k++) {
        const tc_event *e = &w->ev[k];
        if (tc_status(w, e->batch) == TC_NOT_TRIED) continue;
        evs_event *ev = NULL;
        int rc = evs_get(s, e->id, &ev);
        if (f->present[e->batch]) {
            TC_ASSERT(rc == 0, "get by id of batch %u event %u: %s", e->batch, e->idx, evs_errname(rc));
            TC_ASSERT(ev->position >= 1 && ev->position <= f->position && f->at[ev->position - 1] == k,
                      "get by id of batch %u event %u: position %" PRIu64 " disagrees with the global log",
                      e->batch, e->idx, ev->position);
            tc_check_event(w, k, ev, "get by id");
        } else {
            TC_ASSERT(rc == EVS_ENOTFOUND, "get by id of absent batch %u event %u: %s (a partial batch?)",
                      e->batch, e->idx, evs_errname(rc));
        }
        evs_free(ev);
    }

    /* 5. every stream, forwards and backwards, and its version */
    for (unsigned si = 0; si < w->nstreams; si++) {
        const char *name = tc_stream_names[si];
        uint64_t v = 99999;
        TC_OK(evs_stream_version(s, name, &v));
        TC_ASSERT(v == ver[si], "stream %s: version %" PRIu64 ", the log has %" PRIu64 " events", name, v, ver[si]);
        if (ver[si] == 0) continue;
        for (int back = 0; back < (tc_check_light ? 1 : 2); back++) {
            evs_read_options_init(&ro);
            ro.stream = name;
            ro.backward = back;
            TC_OK(evs_iter_open(s, &ro, &it));
            uint64_t seen = 0, q = back ? f->position + 1 : 0;
            for (;;) {
                const evs_event *ev = NULL;
                int rc = evs_iter_next(it, &ev);
                TC_ASSERT(rc == 0, "stream %s read: %s", name, evs_errname(rc));
                if (!ev) break;
                seen++;
                /* the next position of this stream in the global log */
                if (back) { do q--; while (q >= 1 && w->ev[f->at[q - 1]].stream != si); }
                else { do q++; while (q <= f->position && w->ev[f->at[q - 1]].stream != si); }
                TC_ASSERT(q >= 1 && q <= f->position && ev->position == q,
                          "stream %s read%s: position %" PRIu64 ", the global log says %" PRIu64,
                          name, back ? " backwards" : "", ev->position, q);
                TC_ASSERT(ev->version == (back ? ver[si] - seen + 1 : seen), "stream %s: version %" PRIu64, name, ev->version);
                tc_check_event(w, f->at[q - 1], ev, "stream read");
            }
            evs_iter_close(it);
            TC_ASSERT(seen == ver[si], "stream %s read returns %" PRIu64 " of %" PRIu64 " events", name, seen, ver[si]);
        }
    }
    /* 6. the stream list */
    evs_stream_iter *sit = NULL;
    TC_OK(evs_streams_open(s, NULL, &sit));
    unsigned listed = 0, want = 0;
    for (unsigned si = 0; si < w->nstreams; si++) want += ver[si] > 0;
    for (;;) {
        const char *name = NULL;
        uint64_t v = 0;
        TC_OK(evs_streams_next(sit, &name, &v));
        if (!name) break;
        listed++;
        unsigned si = 0;
        while (si < w->nstreams && strcmp(tc_stream_names[si], name) != 0) si++;
        TC_ASSERT(si < w->nstreams && v == ver[si], "stream list: %s at version %" PRIu64, name, v);
    }
    evs_streams_close(sit);
    TC_ASSERT(listed == want, "stream list has %u streams, the log %u", listed, want);
}

/*
 * Batches lo..hi-1 were appended one at a time, in order, and the store
 * fail-stops: of them the log must hold exactly the acknowledged ones, plus
 * possibly the whole of the first unacknowledged one. Returns how many of
 * them are present (a prefix of the range).
 */
static TC_UNUSED size_t tc_expect_prefix_range(const tc_work *w, const tc_found *f, size_t lo, size_t hi)
{
    size_t acked = lo;
    while (acked < hi && w->status[acked] == TC_ACKED) acked++;
    for (size_t bi = acked; bi < hi; bi++)
        TC_ASSERT(w->status[bi] != TC_ACKED, "batch %zu acknowledged after batch %zu failed (no fail-stop)", bi, acked);
    size_t present = lo;
    while (present < hi && f->present[present]) present++;
    for (size_t bi = present; bi < hi; bi++)
        TC_ASSERT(!f->present[bi], "batch %zu present after absent batch %zu", bi, present);
    TC_ASSERT(present == acked || present == acked + 1,
              "batches %zu..%zu: %zu present, %zu acknowledged: only the first unacknowledged one may survive",
              lo, hi - 1, present - lo, acked - lo);
    return present - lo;
}

/* The same over every batch of the workload. */
static TC_UNUSED size_t tc_expect_prefix(const tc_work *w, const tc_found *f)
{
    return tc_expect_prefix_range(w, f, 0, w->nb);
}

/*
 * Batches lo..hi-1 were appended by nthreads threads, thread t taking
 * lo + t, lo + t + nthreads, ... in order, one at a time; the store
 * fail-stops. Per thread: its acknowledged batches are a prefix of its
 * sequence, and at most the one after them (in flight) is also present.
 */
static TC_UNUSED void tc_expect_threads(const tc_work *w, const tc_found *f, size_t lo, size_t hi, unsigned nthreads)
{
    for (unsigned t = 0; t < nthreads; t++) {
        size_t bi = lo + t;
        while (bi < hi && w->status[bi] == TC_ACKED) bi += nthreads;
        for (size_t j = bi; j < hi; j += nthreads)
            TC_ASSERT(w->status[j] != TC_ACKED, "thread %u: batch %zu acknowledged after its batch %zu failed", t, j, bi);
        size_t first_absent = bi < hi && f->present[bi] ? bi + nthreads : bi;
        for (size_t j = first_absent; j < hi; j += nthreads)
            TC_ASSERT(!f->present[j], "thread %u: batch %zu present though its batch %zu is not", t, j, first_absent);
    }
}

/* Append one more batch and read it back: the store continues at position + 1. */
static TC_UNUSED void tc_append_more(evs_store *s, tc_work *w)
{
    uint64_t p = evs_position(s);
    size_t bi = tc_work_add(w);
    w->b[bi].expected = EVS_EXPECT_ANY;  /* the model's versions assumed every batch committed */
    evs_append_result res;
    int rc = tc_append(s, w, bi, &res);
    TC_ASSERT(rc == 0, "append after recovery: %s (%s)", evs_errname(rc), res.message);
    TC_ASSERT(res.first_position == p + 1, "append after recovery starts at %" PRIu64 ", want %" PRIu64,
              res.first_position, p + 1);
    for (size_t i = 0; i < w->b[bi].n; i++) {
        evs_event *ev = NULL;
        TC_OK(evs_get_at(s, p + 1 + i, &ev));
        tc_check_event(w, w->b[bi].first + i, ev, "read back after recovery");
        evs_free(ev);
    }
}

/* ------------------------------------------------------------------------ */
/* evs_verify with a problem list                                           */
/* ------------------------------------------------------------------------ */

typedef struct tc_problem {
    char file[64];
    uint64_t off;
    char text[200];
} tc_problem;

typedef struct tc_problems {
    tc_problem v[32];   /* the first 32 */
    size_t n;           /* all reported */
} tc_problems;

static TC_UNUSED void tc_verify_cb(void *ctx, const char *file, uint64_t off, const char *problem)
{
    tc_problems *p = ctx;
    if (p->n < sizeof p->v / sizeof p->v[0]) {
        snprintf(p->v[p->n].file, sizeof p->v[0].file, "%s", file);
        p->v[p->n].off = off;
        snprintf(p->v[p->n].text, sizeof p->v[0].text, "%s", problem);
    }
    p->n++;
}

static TC_UNUSED void tc_print_problems(const tc_problems *p)
{
    for (size_t i = 0; i < p->n && i < sizeof p->v / sizeof p->v[0]; i++)
        fprintf(stderr, "  verify: %s @%" PRIu64 ": %s\n", p->v[i].file, p->v[i].off, p->v[i].text);
}

/* Run evs_verify over dir (vfs NULL: posix); returns the problems. */
static TC_UNUSED tc_problems tc_verify(const char *dir, const evs_vfs *vfs)
{
    tc_problems p;
    memset(&p, 0, sizeof p);
    evs_options o;
    evs_options_init(&o);
    o.vfs = vfs;
    o.log = tc_log_fn;
    uint64_t n = 0;
    int rc = evs_verify(dir, &o, tc_verify_cb, &p, &n);
    TC_ASSERT(rc == 0, "evs_verify could not run: %s", evs_errname(rc));
    TC_ASSERT(n == p.n, "evs_verify counted %" PRIu64 " problems but reported %zu", n, p.n);
    return p;
}

static TC_UNUSED void tc_verify_clean(const char *dir, const evs_vfs *vfs)
{
    tc_problems p = tc_verify(dir, vfs);
    if (p.n) tc_print_problems(&p);
    TC_ASSERT(p.n == 0, "evs_verify found %zu problems in %s", p.n, dir);
}

/* Options every crash test uses: small segments, frequent checkpoints, quiet log. */
static TC_UNUSED void tc_options(evs_options *o, const evs_vfs *vfs, uint64_t checkpoint_interval)
{
    evs_options_init(o);
    o->vfs = vfs;
    o->segment_size = 64u << 10;  /* the minimum: segments roll every ~60 events */
    o->checkpoint_interval = checkpoint_interval;
    o->log = tc_log_fn;
    o->log_level = EVS_LOG_DEBUG;
}

#endif
