/*
 * torture_engine.c — randomized, long-running crash and fault torture of the
 * storage engine (SPEC §9: kill -9 under concurrent load, many rounds; power
 * cuts; I/O faults). Not part of the unit-test glob: a separate binary the
 * lead wires as `make torture`.
 *
 * Each round draws a scenario and its parameters from the round seed
 * (printed; replay one round with --seed S --rounds 1 --first-round R):
 *
 *  powercut  vfs_mem; 1-6 appender threads; 64-256 KiB segments; checkpoints
 *            every 1-80 events; a power cut at a random sync in a random mode
 *            (torn, drop-all, apply-all); restart; often a second cut while the
 *            store recovers and appends more; then the full check.
 *  faults    vfs_fault over vfs_mem; 1-4 threads; one random call of a random
 *            class fails (once or for good; EIO, ENOSPC, or a short write, and
 *            sometimes the rollback truncate too), sometimes combined with a
 *            power cut; then a reopen on the plain vfs and the full check.
 *  powercut-lazy
 *            vfs_mem under a tracking vfs; fsync interval (1-20 ms) or never,
 *            sometimes always; 1-3 phases, each: open, append with 1-6
 *            threads, a power cut at a random sync, or just before or after
 *            the n-th mutating vfs call (writes, truncates, opens, renames,
 *            syncs), or after a clean close; restart and check (a third of
 *            the time only after the next phase, whose open then recovers
 *            under its own cut what the last cut left). The tracking
 *            vfs parses the records written to each segment and learns which
 *            positions a completed sync made durable before the cut. The
 *            promise checked: the store opens; the log is a prefix of the
 *            acknowledged history (every acknowledged batch that starts at or
 *            before its end is there at its acknowledged positions) holding at
 *            least every position a completed sync covered; unsynced
 *            acknowledged batches may be lost, whole; then appends after the
 *            phases survive a clean close, a cut and a reopen.
 *  kill9     a child process appends on the posix vfs with 1-6 threads
 *            (sync mode always, interval or never: kill -9 must lose nothing in
 *            any mode) and reports each acknowledged batch through a pipe; the
 *            parent SIGKILLs it at a random moment, reopens, checks; several
 *            rounds on the same directory.
 *
 * The full check (tests/unit/test_crash_common.h, tc_check): every
 * acknowledged append present and byte-identical; no partial batch; positions
 * contiguous; per thread only the append in flight may additionally survive;
 * stream reads, stream versions, the stream list and gets by id agree with the
 * global log; a new append continues at position + 1; evs_verify clean.
 *
 * On a failure it prints the round, its seed and the store's last log lines,
 * keeps the data directory of a kill9 round, and exits 1.
 *
 * BUILD (from the project root, after the library is built in build/):
 *   cc -std=c11 -O2 -g -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
 *      -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
 *      -Iinclude -Isrc -Itests/support -Itests/unit \
 *      tests/torture/torture_engine.c tests/support/testutil.c \
 *      tests/support/vfs_mem.c tests/support/vfs_fault.c \
 *      build/libevstore.a -ljansson -lxxhash -lpthread -o build/torture_engine
 *   (add -fsanitize=address,undefined to both compile and link for an ASan run)
 * RUN:
 *   build/torture_engine [--seconds N] [--rounds N] [--seed S] [--first-round R]
 *                        [--scenario powercut|powercut-lazy|faults|kill9|all] [--verbose]
 *   defaults: 60 seconds, all scenarios, a random seed. EVS_FAST_TMP or
 *   EVS_TEST_TMP choose where kill9 stores live (default /dev/shm if writable).
 */
#include <signal.h>
#include <sys/wait.h>

#define TC_ABORT() torture_fail()
static void torture_fail(void) __attribute__((noreturn));

#include "test_crash_common.h"
#include "vfs_fault.h"
#include "vfs_mem.h"

#define DB "/db"
#define MAX_THREADS 6

static char replay_line[300];  /* how to replay the current round */

static void torture_fail(void)
{
    fprintf(stderr, "TORTURE FAILED in %s\n", replay_line);
    fflush(stderr);
    _exit(1);
}

/* ---- per-round parameters ---- */

typedef struct params {
    uint64_t seed;          /* round seed: everything below derives from it */
    unsigned threads;       /* appender threads */
    size_t batches;         /* batches appended in the first phase */
    uint64_t segment_size;
    uint64_t ckpt;          /* checkpoint interval (events) */
    unsigned max_batch;     /* events per batch 1..max_batch */
    unsigned pct_large;
    evs_sync_mode sync;     /* kill9 only */
} params;

static params draw(uint64_t seed)
{
    params p;
    uint64_t r = seed;
    p.seed = seed;
    p.threads = (unsigned)evs_test_rand_range(&r, 1, MAX_THREADS);
    p.batches = (size_t)evs_test_rand_range(&r, 10, 150);
    p.segment_size = (64u << 10) * evs_test_rand_range(&r, 1, 4);
    p.ckpt = evs_test_rand_range(&r, 1, 80);
    p.max_batch = (unsigned)evs_test_rand_range(&r, 1, 8);
    p.pct_large = (unsigned)evs_test_rand_range(&r, 0, 40);
    p.sync = (evs_sync_mode)evs_test_rand_range(&r, 0, 2);
    return p;
}

static void opts(evs_options *o, const evs_vfs *vfs, const params *p)
{
    tc_options(o, vfs, p->ckpt);
    o->segment_size = p->segment_size;
}

static void make_work(tc_work *w, const params *p)
{
    tc_work_init(w, p->seed, TC_NSTREAM_NAMES, p->max_batch, p->pct_large);
    w->use_expected = p->threads == 1;
    for (size_t i = 0; i < p->batches; i++) tc_work_add(w);
}

/* Add n batches with no version expectation (they follow an unknown outcome). */
static size_t add_batches(tc_work *w, size_t n)
{
    size_t from = w->nb;
    for (size_t i = 0; i < n; i++) {
        size_t bi = tc_work_add(w);  /* may move w->b */
        w->b[bi].expected = EVS_EXPECT_ANY;
    }
    return from;
}

/* ---- appending with threads ---- */

typedef struct appender {
    evs_store *s;
    tc_work *w;
    size_t lo, hi;          /* batch range */
    unsigned id, n;         /* this thread takes lo + id, lo + id + n, ... */
    int fd;                 /* kill9 child: report acknowledged batch indexes here (-1: none) */
    int failed, acked_after_fail;
} appender;

static void *appender_main(void *arg)
{
    appender *a = arg;
    for (size_t bi = a->lo + a->id; bi < a->hi; bi += a->n) {
        int rc = tc_append(a->s, a->w, bi, NULL);
        if (rc == 0) {
            if (a->failed) a->acked_after_fail = 1;
            if (a->fd >= 0) {
                uint32_t v = (uint32_t)bi;
                if (write(a->fd, &v, sizeof v) != (ssize_t)sizeof v) _exit(3);
            }
        } else {
            a->failed = 1;
        }
    }
    return NULL;
}

/* Append batches lo..hi-1 with n threads; checks the per-thread fail-stop rule. */
static void append_range(evs_store *s, tc_work *w, size_t lo, size_t hi, unsigned n, int fd)
{
    pthread_t th[MAX_THREADS];
    appender a[MAX_THREADS];
    for (unsigned t = 0; t < n; t++) {
        a[t] = (appender){s, w, lo, hi, t, n, fd, 0, 0};
        TC_ASSERT(pthread_create(&th[t], NULL, appender_main, &a[t]) == 0, "pthread_create");
    }
    for (unsigned t = 0; t < n; t++) pthread_join(th[t], NULL);
    int any_failed = 0;
    for (unsigned t = 0; t < n; t++) {
        TC_ASSERT(!a[t].acked_after_fail, "thread %u: an append was acknowledged after one of its appends failed", t);
        any_failed |= a[t].failed;
    }
    if (any_failed) TC_ASSERT(evs_failure(s) != NULL, "appends failed but evs_failure() is NULL");
}

/* ---- the check after a crash ---- */

typedef struct phase { size_t lo, hi; unsigned threads; } phase;

/* Half-created last segment (a crash inside segment creation): recovery
 * removes it and the store must append at once; counted for the summary. */
static int seg_cb(void *ctx, const char *name)
{
    char *last = ctx;
    size_t l = strlen(name);
    if (l == 24 && !strcmp(name + 20, ".seg") && strcmp(name, last) > 0) snprintf(last, 64, "%s", name);
    return 0;
}

static int half_created(const evs_vfs *vfs, const char *dir)
{
    char last[64] = "", path[4096];
    if (vfs->list_dir(vfs, dir, seg_cb, last) != 0 || !last[0] || !strcmp(last, "00000000000000000001.seg")) return 0;
    tc_path(path, sizeof path, dir, last);
    evs_file *f = NULL;
    uint64_t size = UINT64_MAX;
    if (vfs->open(vfs, path, EVS_O_RDONLY, &f) == 0) {
        f->vfs->size(f, &size);
        evs__fclose(f);
    }
    return size <= TC_SEG_HDR;
}

static uint64_t stat_events, stat_rounds, stat_kept, stat_bug6;

/* Reopen dir on vfs, check every phase, append one more, close, verify. */
static void check_store(const evs_vfs *vfs, const char *dir, tc_work *w, const phase *ph, size_t nph, const params *p)
{
    evs_options o;
    evs_store *s = NULL;
    opts(&o, vfs, p);
    int half = half_created(vfs ? vfs : evs__vfs_posix(), dir);
    int rc = evs_open(dir, &o, &s);
    TC_ASSERT(rc == 0, "reopen: %s", evs_errname(rc));
    tc_found f;
    tc_check(s, w, &f);
    for (size_t i = 0; i < nph; i++) tc_expect_threads(w, &f, ph[i].lo, ph[i].hi, ph[i].threads);
    for (size_t bi = 0; bi < w->nb; bi++) stat_kept += f.present[bi] && w->status[bi] == TC_UNACKED;
    stat_events += f.position;
    tc_found_free(&f);
    if (half) stat_bug6++;  /* counted: the store that removed it must append at once */
    tc_append_more(s, w);
    TC_OK(evs_close(s));
    tc_verify_clean(dir, vfs);
}

/* ---- scenarios ---- */

static const char *const mode_names[3] = {"torn", "drop-all", "apply-all"};

static void scenario_powercut(const params *p, uint64_t *r)
{
    tc_work w;
    make_work(&w, p);
    evs_vfs *mem = vfs_mem_new();
    vfs_mem_set_seed(mem, evs_test_rand(r));
    vfs_mem_crash_mode mode = (vfs_mem_crash_mode)evs_test_rand_range(r, 0, 2);
    vfs_mem_set_crash_mode(mem, mode);
    TC_OK(mem->mkdir(mem, DB));
    TC_OK(mem->sync_dir(mem, "/"));
    uint64_t k = evs_test_rand_range(r, 1, p->batches * 3 + 20);
    tc_setctx("powercut round seed %" PRIu64 ": %u threads, %zu batches, ckpt %" PRIu64 ", segment %" PRIu64
              ", cut at sync %" PRIu64 " (%s)", p->seed, p->threads, p->batches, p->ckpt, p->segment_size, k,
              mode_names[mode]);
    vfs_mem_crash_at_sync(mem, k);
    evs_options o;
    evs_store *s = NULL;
    opts(&o, mem, p);
    phase ph[2] = {{0, w.nb, p->threads}, {0, 0, 1}};
    size_t nph = 1;
    if (evs_open(DB, &o, &s) == 0) append_range(s, &w, 0, w.nb, p->threads, -1);
    evs_close(s);
    TC_ASSERT(vfs_mem_open_files(mem) == 0, "file handles leaked across the cut");
    if (!vfs_mem_crashed(mem)) vfs_mem_crash_now(mem);  /* a cut after a clean close loses nothing */
    TC_OK(vfs_mem_restart(mem));
    if (evs_test_rand_range(r, 0, 1)) {
        /* a second cut while recovering and appending more */
        uint64_t k2 = evs_test_rand_range(r, 1, 40);
        unsigned t2 = (unsigned)evs_test_rand_range(r, 1, MAX_THREADS);
        size_t from = add_batches(&w, (size_t)evs_test_rand_range(r, 4, 40));
        ph[1] = (phase){from, w.nb, t2};
        nph = 2;
        char prev[sizeof tc_ctx];
        snprintf(prev, sizeof prev, "%s", tc_ctx);
        tc_setctx("%s; second cut at sync %" PRIu64 " with %u threads", prev, k2, t2);
        vfs_mem_crash_at_sync(mem, k2);
        s = NULL;
        if (evs_open(DB, &o, &s) == 0) append_range(s, &w, from, w.nb, t2, -1);
        evs_close(s);
        if (!vfs_mem_crashed(mem)) vfs_mem_crash_now(mem);
        TC_OK(vfs_mem_restart(mem));
    }
    check_store(mem, DB, &w, ph, nph, p);
    vfs_mem_free(mem);
    tc_work_free(&w);
}

static void scenario_faults(const params *p, uint64_t *r)
{
    static const vfs_fault_class classes[] = {VFS_FAULT_OPEN, VFS_FAULT_PWRITE, VFS_FAULT_SYNC, VFS_FAULT_TRUNCATE,
                                              VFS_FAULT_RENAME, VFS_FAULT_SYNC_DIR, VFS_FAULT_UNLINK};
    static const char *const cname[] = {"open", "pwrite", "sync", "truncate", "rename", "sync_dir", "unlink"};
    tc_work w;
    make_work(&w, p);
    evs_vfs *mem = vfs_mem_new();
    vfs_mem_set_seed(mem, evs_test_rand(r));
    TC_OK(mem->mkdir(mem, DB));
    TC_OK(mem->sync_dir(mem, "/"));
    evs_vfs *fv = vfs_fault_new(mem);
    vfs_fault_set_seed(fv, evs_test_rand(r));
    size_t ci = (size_t)evs_test_rand_range(r, 0, sizeof classes / sizeof classes[0] - 1);
    uint64_t nth = evs_test_rand_range(r, 1, p->batches * 4 + 20);
    int err = evs_test_rand_range(r, 0, 1) ? EIO : ENOSPC;
    int flags = evs_test_rand_range(r, 0, 3) == 0 ? VFS_FAULT_PERSIST : VFS_FAULT_ONCE;
    if (classes[ci] == VFS_FAULT_PWRITE && evs_test_rand_range(r, 0, 1)) flags |= VFS_FAULT_SHORT;
    int trunc_too = evs_test_rand_range(r, 0, 3) == 0;
    uint64_t cut = evs_test_rand_range(r, 0, 3) == 0 ? evs_test_rand_range(r, 1, p->batches * 3 + 20) : 0;
    tc_setctx("faults round seed %" PRIu64 ": %u threads, %zu batches, ckpt %" PRIu64 ", %s call %" PRIu64
              " fails with %s%s%s%s, power cut at sync %" PRIu64 " (0 = none)",
              p->seed, p->threads, p->batches, p->ckpt, cname[ci], nth, err == EIO ? "EIO" : "ENOSPC",
              flags & VFS_FAULT_PERSIST ? " for good" : "", flags & VFS_FAULT_SHORT ? " after a short write" : "",
              trunc_too ? ", the next truncate too" : "", cut);
    TC_OK(vfs_fault_arm(fv, classes[ci], nth, err, flags));
    if (cut) vfs_mem_crash_at_sync(mem, cut);
    evs_options o;
    evs_store *s = NULL;
    opts(&o, fv, p);
    if (evs_open(DB, &o, &s) == 0) {
        if (trunc_too) TC_OK(vfs_fault_arm(fv, VFS_FAULT_TRUNCATE, 1, EIO, VFS_FAULT_ONCE));
        append_range(s, &w, 0, w.nb, p->threads, -1);
    }
    evs_close(s);
    vfs_fault_disarm(fv, VFS_FAULT_NCLASSES);
    vfs_fault_free(fv);
    TC_ASSERT(vfs_mem_open_files(mem) == 0, "file handles leaked after the fault");
    if (vfs_mem_crashed(mem)) TC_OK(vfs_mem_restart(mem));
    else vfs_mem_crash_at_sync(mem, 0);
    phase ph = {0, w.nb, p->threads};
    check_store(mem, DB, &w, &ph, 1, p);
    vfs_mem_free(mem);
    tc_work_free(&w);
}

static const char *const sync_names[3] = {"always", "interval", "never"};

static void scenario_kill9(const params *p, uint64_t *r, const char *root)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/kill9-%" PRIu64, root, p->seed);
    tc_work w;
    tc_work_init(&w, p->seed, TC_NSTREAM_NAMES, p->max_batch, p->pct_large);
    w.use_expected = 0;
    phase ph[16];
    size_t nph = 0;
    unsigned rounds = (unsigned)evs_test_rand_range(r, 2, 6);
    for (unsigned k = 0; k < rounds && nph < 16; k++) {
        unsigned threads = (unsigned)evs_test_rand_range(r, 1, MAX_THREADS);
        size_t from = add_batches(&w, (size_t)evs_test_rand_range(r, 20, 400));
        ph[nph++] = (phase){from, w.nb, threads};
        for (size_t bi = from; bi < w.nb; bi++) w.status[bi] = TC_UNACKED;  /* perhaps attempted */
        unsigned delay_us = (unsigned)evs_test_rand_range(r, 0, 60000);
        tc_setctx("kill9 round seed %" PRIu64 " step %u/%u: %u threads, batches %zu..%zu, sync %s, ckpt %" PRIu64
                  ", SIGKILL after %u us; data kept in %s",
                  p->seed, k + 1, rounds, threads, from, w.nb - 1, sync_names[p->sync], p->ckpt, delay_us, dir);
        int fds[2];
        TC_ASSERT(pipe(fds) == 0, "pipe");
        fflush(stderr);
        pid_t pid = fork();
        TC_ASSERT(pid >= 0, "fork");
        if (pid == 0) {
            close(fds[0]);
            evs_options o;
            evs_store *s = NULL;
            opts(&o, NULL, p);
            o.sync = p->sync;
            o.sync_interval_ms = 5;
            if (evs_open(dir, &o, &s) != 0) _exit(2);
            append_range(s, &w, from, w.nb, threads, fds[1]);
            evs_close(s);
            _exit(0);
        }
        close(fds[1]);
        usleep(delay_us);  /* when to kill, not synchronisation */
        kill(pid, SIGKILL);
        int st = 0;
        waitpid(pid, &st, 0);
        TC_ASSERT((WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) || (WIFEXITED(st) && WEXITSTATUS(st) == 0),
                  "the appender child failed by itself (status 0x%x)", st);
        uint32_t v;
        while (read(fds[0], &v, sizeof v) == (ssize_t)sizeof v) {
            TC_ASSERT(v >= from && v < w.nb, "child reported batch %u", v);
            w.status[v] = TC_ACKED;
        }
        close(fds[0]);
        check_store(NULL, dir, &w, ph, nph, p);
    }
    tc_work_free(&w);
    evs_test_rmtree(dir);
}

/* ---- powercut-lazy: power cuts under --fsync interval and never ---- */

/*
 * A tracking vfs over vfs_mem for this scenario. It counts the mutating calls
 * (open, pwrite, sync, datasync, truncate, rename, unlink, mkdir, sync_dir)
 * and cuts the power just before or just after the n-th; and it learns which
 * positions an fdatasync made durable: every write into a "*.seg" file is
 * parsed for its records (position, COMMIT flag, end offset), and a sync or
 * datasync of that file that returns 0 makes durable everything written to it
 * before the call began. So the test knows, independently of the engine, the
 * last position that a completed sync covered before the cut.
 */
typedef struct trk_rec { uint64_t end, pos; int commit; } trk_rec;

typedef struct trk_seg {
    char path[128];
    uint64_t written_end;   /* end of the furthest completed write */
    uint64_t durable_end;   /* bytes a completed sync made durable */
    trk_rec *r;
    size_t n, cap;
} trk_seg;

typedef struct trk_vfs {
    evs_vfs vfs;            /* first: the store sees only this */
    evs_vfs *mem;
    pthread_mutex_t mu;
    uint64_t ops;           /* mutating calls so far */
    uint64_t cut_at;        /* cut at this call (0: never) */
    int cut_after;          /* 1: after the call returned, 0: before it */
    uint64_t cut_op;        /* the call at which the power was cut (0: none) */
    uint64_t syncs_ok;      /* completed syncs of segment files */
    trk_seg **seg;
    size_t nseg;
} trk_vfs;

typedef struct trk_file {
    evs_file base;
    evs_file *inner;
    trk_seg *seg;           /* NULL: not a segment file */
} trk_file;

static evs_file *TIN(evs_file *f) { return ((trk_file *)f)->inner; }
static trk_vfs *TV(const evs_vfs *v) { return (trk_vfs *)v->ctx; }

/* Count a mutating call; cut before it if it is the chosen one. Returns 1 if
 * the power is to be cut after it instead. */
static int trk_step(trk_vfs *t)
{
    pthread_mutex_lock(&t->mu);
    uint64_t n = ++t->ops;
    int fire = t->cut_at && n == t->cut_at && !vfs_mem_crashed(t->mem);
    if (fire) t->cut_op = n;
    pthread_mutex_unlock(&t->mu);
    if (fire && !t->cut_after) vfs_mem_crash_now(t->mem);
    return fire && t->cut_after;
}

static void trk_after(trk_vfs *t, int fire)
{
    if (fire) vfs_mem_crash_now(t->mem);
}

static trk_seg *trk_seg_for(trk_vfs *t, const char *path)
{
    size_t l = strlen(path);
    if (l < 4 || strcmp(path + l - 4, ".seg") != 0) return NULL;
    pthread_mutex_lock(&t->mu);
    trk_seg *g = NULL;
    for (size_t i = 0; i < t->nseg && !g; i++)
        if (!strcmp(t->seg[i]->path, path)) g = t->seg[i];
    if (!g) {
        g = calloc(1, sizeof *g);
        t->seg = realloc(t->seg, (t->nseg + 1) * sizeof *t->seg);
        TC_ASSERT(g && t->seg, "out of memory");
        snprintf(g->path, sizeof g->path, "%s", path);
        t->seg[t->nseg++] = g;
    }
    pthread_mutex_unlock(&t->mu);
    return g;
}

/* Forget what lies at or beyond size (a truncate, or open with TRUNC). */
static void trk_cut_back(trk_seg *g, uint64_t size)
{
    size_t k = 0;
    for (size_t i = 0; i < g->n; i++)
        if (g->r[i].end <= size) g->r[k++] = g->r[i];
    g->n = k;
    if (g->written_end > size) g->written_end = size;
    if (g->durable_end > size) g->durable_end = size;
}

static int trk_open(const evs_vfs *vfs, const char *path, unsigned flags, evs_file **out)
{
    trk_vfs *t = TV(vfs);
    int fire = (flags & (EVS_O_CREATE | EVS_O_TRUNC)) ? trk_step(t) : 0;
    trk_file *tf = calloc(1, sizeof *tf);
    TC_ASSERT(tf != NULL, "out of memory");
    int rc = t->mem->open(t->mem, path, flags, &tf->inner);
    trk_after(t, fire);
    if (rc) {
        free(tf);
        return rc;
    }
    tf->base.vfs = vfs;
    tf->seg = trk_seg_for(t, path);
    if (tf->seg && (flags & EVS_O_TRUNC)) {
        pthread_mutex_lock(&t->mu);
        trk_cut_back(tf->seg, 0);
        pthread_mutex_unlock(&t->mu);
    }
    *out = &tf->base;
    return 0;
}

static int trk_close(evs_file *f)
{
    int rc = evs__fclose(TIN(f));
    free(f);
    return rc;
}

static int trk_pread(evs_file *f, void *buf, size_t n, uint64_t off, size_t *got)
{
    return TIN(f)->vfs->pread(TIN(f), buf, n, off, got);
}

static int trk_pwrite(evs_file *f, const void *buf, size_t n, uint64_t off, size_t *written)
{
    trk_vfs *t = TV(f->vfs);
    trk_seg *g = ((trk_file *)f)->seg;
    int fire = trk_step(t);
    int rc = TIN(f)->vfs->pwrite(TIN(f), buf, n, off, written);
    if (rc == 0 && g) {
        const uint8_t *p = buf;
        pthread_mutex_lock(&t->mu);
        /* whole records only (the writer writes whole groups; a segment header has none) */
        for (size_t o = 0; o + 88 <= n && memcmp(p + o, "EVR\x01", 4) == 0;) {
            uint32_t total = tc_get32(p + o + 8);
            if (total < 88 || total % 8 || o + total > n) break;
            if (g->n == g->cap) {
                g->cap = g->cap ? g->cap * 2 : 64;
                g->r = realloc(g->r, g->cap * sizeof *g->r);
                TC_ASSERT(g->r != NULL, "out of memory");
            }
            g->r[g->n++] = (trk_rec){off + o + total, tc_get64(p + o + 32), p[o + 5] & 1};
            o += total;
        }
        if (off + n > g->written_end) g->written_end = off + n;
        pthread_mutex_unlock(&t->mu);
    }
    trk_after(t, fire);
    return rc;
}

static int trk_do_sync(evs_file *f, int data)
{
    trk_vfs *t = TV(f->vfs);
    trk_seg *g = ((trk_file *)f)->seg;
    int fire = trk_step(t);
    uint64_t snap = 0;
    if (g) {
        pthread_mutex_lock(&t->mu);
        snap = g->written_end;
        pthread_mutex_unlock(&t->mu);
    }
    int rc = data ? TIN(f)->vfs->datasync(TIN(f)) : TIN(f)->vfs->sync(TIN(f));
    if (rc == 0 && g) {
        pthread_mutex_lock(&t->mu);
        if (snap > g->durable_end) g->durable_end = snap;
        t->syncs_ok++;
        pthread_mutex_unlock(&t->mu);
    }
    trk_after(t, fire);
    return rc;
}

static int trk_sync(evs_file *f) { return trk_do_sync(f, 0); }
static int trk_datasync(evs_file *f) { return trk_do_sync(f, 1); }

static int trk_truncate(evs_file *f, uint64_t size)
{
    trk_vfs *t = TV(f->vfs);
    trk_seg *g = ((trk_file *)f)->seg;
    int fire = trk_step(t);
    if (g) {  /* before the call: a truncate makes nothing durable, and may be lost */
        pthread_mutex_lock(&t->mu);
        trk_cut_back(g, size);
        pthread_mutex_unlock(&t->mu);
    }
    int rc = TIN(f)->vfs->truncate(TIN(f), size);
    trk_after(t, fire);
    return rc;
}

static int trk_size(evs_file *f, uint64_t *size) { return TIN(f)->vfs->size(TIN(f), size); }
static int trk_lock(evs_file *f) { return TIN(f)->vfs->lock(TIN(f)); }

static int trk_rename(const evs_vfs *vfs, const char *from, const char *to)
{
    trk_vfs *t = TV(vfs);
    int fire = trk_step(t);
    int rc = t->mem->rename(t->mem, from, to);
    trk_after(t, fire);
    return rc;
}

static int trk_unlink(const evs_vfs *vfs, const char *path)
{
    trk_vfs *t = TV(vfs);
    int fire = trk_step(t);
    int rc = t->mem->unlink(t->mem, path);
    trk_after(t, fire);
    return rc;
}

static int trk_mkdir(const evs_vfs *vfs, const char *path)
{
    trk_vfs *t = TV(vfs);
    int fire = trk_step(t);
    int rc = t->mem->mkdir(t->mem, path);
    trk_after(t, fire);
    return rc;
}

static int trk_sync_dir(const evs_vfs *vfs, const char *path)
{
    trk_vfs *t = TV(vfs);
    int fire = trk_step(t);
    int rc = t->mem->sync_dir(t->mem, path);
    trk_after(t, fire);
    return rc;
}

static int trk_list_dir(const evs_vfs *vfs, const char *path, int (*cb)(void *, const char *), void *cbctx)
{
    return TV(vfs)->mem->list_dir(TV(vfs)->mem, path, cb, cbctx);
}

static int trk_exists(const evs_vfs *vfs, const char *path) { return TV(vfs)->mem->exists(TV(vfs)->mem, path); }

static trk_vfs *trk_new(evs_vfs *mem)
{
    trk_vfs *t = calloc(1, sizeof *t);
    TC_ASSERT(t != NULL, "out of memory");
    t->vfs = (evs_vfs){
        .version = EVS_VFS_VERSION, .name = "track", .ctx = t,
        .open = trk_open, .close = trk_close, .pread = trk_pread, .pwrite = trk_pwrite,
        .sync = trk_sync, .datasync = trk_datasync, .truncate = trk_truncate, .size = trk_size,
        .lock = trk_lock, .rename = trk_rename, .unlink = trk_unlink, .mkdir = trk_mkdir,
        .sync_dir = trk_sync_dir, .list_dir = trk_list_dir, .exists = trk_exists, .rmdir = NULL,
    };
    t->mem = mem;
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

static void trk_free(trk_vfs *t)
{
    for (size_t i = 0; i < t->nseg; i++) {
        free(t->seg[i]->r);
        free(t->seg[i]);
    }
    free(t->seg);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/*
 * The last position a completed sync covered: the largest position Q, last of
 * a batch (COMMIT), such that every record of this phase up to Q lies within
 * the durable part of its segment file. Records of earlier phases survived a
 * restart and so are durable (vfs_mem_restart makes the image durable);
 * `floor` is where the log stood when this phase began.
 */
static uint64_t trk_covered(trk_vfs *t, uint64_t floor)
{
    uint64_t min_lost = UINT64_MAX, q = floor;
    for (size_t i = 0; i < t->nseg; i++)
        for (size_t k = 0; k < t->seg[i]->n; k++)
            if (t->seg[i]->r[k].end > t->seg[i]->durable_end && t->seg[i]->r[k].pos < min_lost)
                min_lost = t->seg[i]->r[k].pos;
    for (size_t i = 0; i < t->nseg; i++)
        for (size_t k = 0; k < t->seg[i]->n; k++) {
            const trk_rec *r = &t->seg[i]->r[k];
            if (r->end <= t->seg[i]->durable_end && r->commit && r->pos < min_lost && r->pos > q) q = r->pos;
        }
    return q;
}

static uint64_t stat_lazy_rounds[3], stat_lazy_phases, stat_lazy_unchecked, stat_lazy_cut_in_work, stat_lazy_lost, stat_lazy_covered,
    stat_lazy_acked;

/* Where batch bi starts in the log found by tc_check (0: absent). */
static void batch_positions(const tc_work *w, const tc_found *f, uint64_t *pos)
{
    for (uint64_t q = 1; q <= f->position; q++) {
        const tc_event *e = &w->ev[f->at[q - 1]];
        if (e->idx == 0) pos[e->batch] = q;
    }
}

/* One phase since the last check: its batches, threads, and the last
 * position a completed sync covered before its cut. */
typedef struct lazy_range { size_t lo, hi; unsigned threads; uint64_t covered; } lazy_range;

/*
 * Reopen after the cuts of the phases rg[0..n-1] (each appended by its
 * threads; the phases before the last were not checked in between, so the
 * later ones recovered, and were cut, on what the earlier left) and check
 * what interval/never promise: the store opens; the log is whole batches
 * with contiguous positions and versions, every event byte-identical
 * (tc_check); every acknowledged batch a completed sync covered is there and
 * the log reaches at least each phase's covered position; the log is a
 * prefix of the acknowledged history: every acknowledged batch present is at
 * the positions its acknowledgement gave; of the last phase, every one that
 * starts at or before the end of the log is there and none beyond; of an
 * earlier phase (whose lost positions a later phase may have reused), every
 * one that starts before one of that phase's batches that survived; per
 * thread, only the append in flight at the cut may survive unacknowledged.
 * Then the model learns the outcome: present batches are kept for good (at
 * the positions found), absent ones are gone.
 */
static void check_lazy(evs_vfs *mem, tc_work *w, uint64_t *apos, const lazy_range *rg, size_t n, const params *p)
{
    evs_options o;
    evs_store *s = NULL;
    opts(&o, mem, p);
    int rc = evs_open(DB, &o, &s);
    TC_ASSERT(rc == 0, "the store refused to open after a plain power cut: %s", evs_errname(rc));
    size_t lo = rg[0].lo, hi = rg[n - 1].hi;
    uint8_t *saved = malloc(hi - lo + 1);
    TC_ASSERT(saved != NULL, "out of memory");
    memcpy(saved, w->status + lo, hi - lo);
    for (size_t k = 0; k < n; k++)
        for (size_t bi = rg[k].lo; bi < rg[k].hi; bi++) {  /* acknowledged but not synced: may be lost */
            if (w->status[bi] != TC_ACKED) continue;
            if (apos[bi] + w->b[bi].n - 1 > rg[k].covered) w->status[bi] = TC_UNACKED;
            else stat_lazy_covered++;
        }
    tc_found f;
    tc_check(s, w, &f);
    memcpy(w->status + lo, saved, hi - lo);
    free(saved);
    for (size_t k = 0; k < n; k++) {
        tc_expect_threads(w, &f, rg[k].lo, rg[k].hi, rg[k].threads);
        TC_ASSERT(f.position >= rg[k].covered, "the log ends at %" PRIu64 " though a completed fdatasync of phase %zu "
                  "covered up to %" PRIu64, f.position, k + 1, rg[k].covered);
    }
    uint64_t *now = calloc(hi + 1, sizeof *now);
    TC_ASSERT(now != NULL, "out of memory");
    batch_positions(w, &f, now);
    for (size_t bi = 0; bi < hi; bi++) {  /* present: where its acknowledgement put it */
        if (apos[bi] && now[bi])
            TC_ASSERT(now[bi] == apos[bi], "batch %zu acknowledged at %" PRIu64 " is served at %" PRIu64,
                      bi, apos[bi], now[bi]);
    }
    for (size_t bi = 0; bi < lo; bi++)  /* checked before: durable */
        if (apos[bi]) TC_ASSERT(now[bi] == apos[bi], "batch %zu, found at %" PRIu64 " before, is gone", bi, apos[bi]);
    for (size_t k = 0; k < n; k++) {
        uint64_t reach = 0;  /* how far the log holds this phase's history */
        if (k == n - 1) reach = f.position;
        else
            for (size_t bi = rg[k].lo; bi < rg[k].hi; bi++)
                if (now[bi] && now[bi] > reach) reach = now[bi];
        for (size_t bi = rg[k].lo; bi < rg[k].hi; bi++) {
            if (!apos[bi]) continue;
            TC_ASSERT(apos[bi] > reach || now[bi] == apos[bi], "acknowledged batch %zu of phase %zu (positions %" PRIu64
                      "..%" PRIu64 ") is missing though the log holds that phase's history up to %" PRIu64
                      ": not a prefix of the acknowledged history", bi, k + 1, apos[bi], apos[bi] + w->b[bi].n - 1, reach);
        }
    }
    for (size_t bi = lo; bi < hi; bi++) {
        if (w->status[bi] == TC_ACKED) {
            stat_lazy_acked++;
            stat_lazy_lost += !now[bi];
        }
        if (now[bi]) {
            w->status[bi] = TC_ACKED;  /* recovered: durable from now on, at this position */
            apos[bi] = now[bi];
        } else {
            if (w->status[bi] != TC_NOT_TRIED) w->status[bi] = TC_UNACKED;  /* gone for good */
            apos[bi] = 0;
        }
    }
    stat_events += f.position;
    free(now);
    tc_found_free(&f);
    TC_OK(evs_close(s));
}

typedef struct lazy_appender {
    evs_store *s;
    tc_work *w;
    uint64_t *apos;
    size_t lo, hi;
    unsigned id, n;
    int failed, acked_after_fail;
} lazy_appender;

static void *lazy_appender_main(void *arg)
{
    lazy_appender *a = arg;
    for (size_t bi = a->lo + a->id; bi < a->hi; bi += a->n) {
        evs_append_result res;
        if (tc_append(a->s, a->w, bi, &res) == 0) {
            a->apos[bi] = res.first_position;
            if (a->failed) a->acked_after_fail = 1;
        } else {
            a->failed = 1;
        }
    }
    return NULL;
}

static const char *const lazy_cut_names[4] = {"at sync", "before call", "after call", "after a clean close"};

static void scenario_powercut_lazy(const params *p, uint64_t *r)
{
    static const evs_sync_mode modes[5] = {EVS_SYNC_INTERVAL, EVS_SYNC_INTERVAL, EVS_SYNC_NEVER, EVS_SYNC_NEVER,
                                           EVS_SYNC_ALWAYS};
    evs_sync_mode sync = modes[evs_test_rand_range(r, 0, 4)];
    uint32_t interval_ms = (uint32_t)evs_test_rand_range(r, 1, 20);
    unsigned phases = (unsigned)evs_test_rand_range(r, 1, 3);
    tc_work w;
    make_work(&w, p);
    w.use_expected = 0;  /* versions shift when acknowledged batches are lost */
    evs_vfs *mem = vfs_mem_new();
    vfs_mem_set_seed(mem, evs_test_rand(r));
    vfs_mem_crash_mode mode = (vfs_mem_crash_mode)evs_test_rand_range(r, 0, 2);
    vfs_mem_set_crash_mode(mem, mode);
    TC_OK(mem->mkdir(mem, DB));
    TC_OK(mem->sync_dir(mem, "/"));
    size_t cap = 4096;
    uint64_t *apos = calloc(cap, sizeof *apos);
    TC_ASSERT(apos != NULL, "out of memory");
    stat_lazy_rounds[sync]++;
    char head[300];
    snprintf(head, sizeof head, "powercut-lazy round seed %" PRIu64 ": fsync %s%s, %u threads, ckpt %" PRIu64
             ", segment %" PRIu64 ", %s", p->seed, sync_names[sync], sync == EVS_SYNC_INTERVAL ? " 1-20 ms" : "",
             p->threads, p->ckpt, p->segment_size, mode_names[mode]);
    uint64_t floor = 0;
    lazy_range rg[3];
    size_t nrg = 0;
    for (unsigned ph = 0; ph < phases; ph++) {
        size_t lo = ph == 0 ? 0 : add_batches(&w, (size_t)evs_test_rand_range(r, 4, 60));
        size_t hi = w.nb;
        if (hi > cap) {
            apos = realloc(apos, (hi + 1) * sizeof *apos);
            TC_ASSERT(apos != NULL, "out of memory");
            memset(apos + cap, 0, (hi + 1 - cap) * sizeof *apos);
            cap = hi + 1;
        }
        unsigned threads = ph == 0 ? p->threads : (unsigned)evs_test_rand_range(r, 1, MAX_THREADS);
        size_t nb = hi - lo;
        unsigned kind = evs_test_rand_range(r, 0, 7) == 0 ? 3 : (unsigned)evs_test_rand_range(r, 0, 2);
        uint64_t at = kind == 0 ? evs_test_rand_range(r, 1, sync == EVS_SYNC_ALWAYS ? nb * 3 + 20 : nb / 2 + 8)
                    : kind < 3 ? evs_test_rand_range(r, 1, (sync == EVS_SYNC_ALWAYS ? nb * 4 : nb * 2) + 40) : 0;
        tc_setctx("%s; phase %u/%u: batches %zu..%zu, %u threads, fsync interval %" PRIu32 " ms, cut %s %" PRIu64,
                  head, ph + 1, phases, lo, hi - 1, threads, interval_ms, lazy_cut_names[kind], at);
        trk_vfs *t = trk_new(mem);
        if (kind == 0) vfs_mem_crash_at_sync(mem, at);
        else if (kind < 3) { t->cut_at = at; t->cut_after = kind == 2; }
        evs_options o;
        evs_store *s = NULL;
        opts(&o, &t->vfs, p);
        o.sync = sync;
        o.sync_interval_ms = interval_ms;
        if (evs_open(DB, &o, &s) == 0) {
            pthread_t th[MAX_THREADS];
            lazy_appender a[MAX_THREADS];
            for (unsigned k = 0; k < threads; k++) {
                a[k] = (lazy_appender){s, &w, apos, lo, hi, k, threads, 0, 0};
                TC_ASSERT(pthread_create(&th[k], NULL, lazy_appender_main, &a[k]) == 0, "pthread_create");
            }
            for (unsigned k = 0; k < threads; k++) pthread_join(th[k], NULL);
            for (unsigned k = 0; k < threads; k++)
                TC_ASSERT(!a[k].acked_after_fail, "thread %u: an append was acknowledged after one of its appends failed", k);
        }
        evs_close(s);
        TC_ASSERT(vfs_mem_open_files(mem) == 0, "file handles leaked across the cut");
        if (vfs_mem_crashed(mem)) stat_lazy_cut_in_work++;
        else vfs_mem_crash_now(mem);  /* after a clean close: the final fdatasync covered everything */
        vfs_mem_crash_at_sync(mem, 0);
        uint64_t covered = trk_covered(t, floor);
        trk_free(t);
        TC_OK(vfs_mem_restart(mem));
        stat_lazy_phases++;
        rg[nrg++] = (lazy_range){lo, hi, threads, covered};
        /* a third of the time the next phase opens the store as the cut left
         * it: its recovery (of torn, unsynced writes) runs under its own cut */
        if (ph + 1 < phases && evs_test_rand_range(r, 0, 2) == 0) {
            floor = covered;  /* what lies beyond survived the restart too, but the test cannot tell how much */
            stat_lazy_unchecked++;
            continue;
        }
        check_lazy(mem, &w, apos, rg, nrg, p);
        nrg = 0;
        floor = 0;
        for (size_t bi = 0; bi < w.nb; bi++)
            if (apos[bi] && apos[bi] + w.b[bi].n - 1 > floor) floor = apos[bi] + w.b[bi].n - 1;
    }
    /* the store accepts appends after all this, and they survive a clean close and a cut */
    tc_setctx("%s; after %u phases: append, clean close, cut, reopen", head, phases);
    evs_options o;
    evs_store *s = NULL;
    opts(&o, mem, p);
    o.sync = sync;
    o.sync_interval_ms = interval_ms;
    int rc = evs_open(DB, &o, &s);
    TC_ASSERT(rc == 0, "reopen after the checks: %s", evs_errname(rc));
    tc_append_more(s, &w);
    tc_append_more(s, &w);
    TC_OK(evs_close(s));
    vfs_mem_crash_now(mem);
    TC_OK(vfs_mem_restart(mem));
    check_store(mem, DB, &w, NULL, 0, p);
    free(apos);
    vfs_mem_free(mem);
    tc_work_free(&w);
}

int main(int argc, char **argv)
{
    double seconds = 60;
    uint64_t max_rounds = UINT64_MAX, first = 0;
    const char *which = "all";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) max_rounds = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) setenv("EVS_SEED", argv[++i], 1);
        else if (!strcmp(argv[i], "--first-round") && i + 1 < argc) first = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--scenario") && i + 1 < argc) which = argv[++i];
        else if (!strcmp(argv[i], "--verbose")) setenv("EVS_TEST_VERBOSE", "1", 1);
        else {
            fprintf(stderr, "usage: %s [--seconds N] [--rounds N] [--seed S] [--first-round R] "
                    "[--scenario powercut|powercut-lazy|faults|kill9|all] [--verbose]\n", argv[0]);
            return 2;
        }
    }
    uint64_t seed = evs_test_seed();
    char root[512];
    TC_ASSERT(tc_tmpdir(root, sizeof root) == 0, "scratch directory");
    double t0 = tc_now();
    uint64_t counts[4] = {0, 0, 0, 0};
    static const char *const names[4] = {"powercut", "faults", "kill9", "powercut-lazy"};
    int fixed = -1;
    for (int k = 0; k < 4; k++)
        if (!strcmp(which, names[k])) fixed = k;
    if (fixed < 0 && strcmp(which, "all") != 0) {
        fprintf(stderr, "unknown scenario %s\n", which);
        return 2;
    }
    uint64_t round = first;
    for (; round - first < max_rounds && tc_now() - t0 < seconds; round++) {
        uint64_t r = seed ^ (round * 0x9e3779b97f4a7c15ull);
        evs_test_rand(&r);
        params p = draw(evs_test_rand(&r));
        int sc = fixed >= 0 ? fixed : (int)evs_test_rand_range(&r, 0, 3);
        if (getenv("EVS_TEST_VERBOSE"))
            fprintf(stderr, "round %" PRIu64 " (%s, round seed %" PRIu64 ")\n", round, names[sc], p.seed);
        snprintf(replay_line, sizeof replay_line, "round %" PRIu64 " (%s): replay with --seed %" PRIu64
                 " --first-round %" PRIu64 " --rounds 1%s", round, names[sc], seed, round,
                 strcmp(which, "all") ? "" : " (scenario drawn from the seed)");
        if (isatty(2)) fprintf(stderr, "%s\r", replay_line);
        if (sc == 0) scenario_powercut(&p, &r);
        else if (sc == 1) scenario_faults(&p, &r);
        else if (sc == 2) scenario_kill9(&p, &r, root);
        else scenario_powercut_lazy(&p, &r);
        counts[sc]++;
        stat_rounds++;
    }
    evs_test_rmtree(root);
    fprintf(stderr, "\ntorture: %" PRIu64 " rounds in %.0fs (powercut %" PRIu64 ", faults %" PRIu64 ", kill9 %" PRIu64
            ", powercut-lazy %" PRIu64 "); %" PRIu64 " events checked after crashes; %" PRIu64
            " unacknowledged appends survived whole; %" PRIu64 " half-created segments recovered; seed %" PRIu64 ": OK\n",
            stat_rounds, tc_now() - t0, counts[0], counts[1], counts[2], counts[3], stat_events, stat_kept, stat_bug6,
            seed);
    if (counts[3])
        fprintf(stderr, "powercut-lazy: rounds by fsync mode: always %" PRIu64 ", interval %" PRIu64 ", never %" PRIu64
                "; %" PRIu64 " phases (%" PRIu64 " opened as the cut left the store), %" PRIu64
                " cut while the store worked (the rest after a clean close); "
                "%" PRIu64 " acknowledged batches, %" PRIu64 " covered by a completed sync before the cut, %" PRIu64
                " lost (not synced)\n", stat_lazy_rounds[EVS_SYNC_ALWAYS], stat_lazy_rounds[EVS_SYNC_INTERVAL],
                stat_lazy_rounds[EVS_SYNC_NEVER], stat_lazy_phases, stat_lazy_unchecked, stat_lazy_cut_in_work, stat_lazy_acked,
                stat_lazy_covered, stat_lazy_lost);
    return 0;
}
