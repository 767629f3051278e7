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
 *                        [--scenario powercut|faults|kill9|all] [--verbose]
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
                    "[--scenario powercut|faults|kill9|all] [--verbose]\n", argv[0]);
            return 2;
        }
    }
    uint64_t seed = evs_test_seed();
    char root[512];
    TC_ASSERT(tc_tmpdir(root, sizeof root) == 0, "scratch directory");
    double t0 = tc_now();
    uint64_t counts[3] = {0, 0, 0};
    static const char *const names[3] = {"powercut", "faults", "kill9"};
    uint64_t round = first;
    for (; round - first < max_rounds && tc_now() - t0 < seconds; round++) {
        uint64_t r = seed ^ (round * 0x9e3779b97f4a7c15ull);
        evs_test_rand(&r);
        params p = draw(evs_test_rand(&r));
        int sc = strcmp(which, "all") == 0 ? (int)evs_test_rand_range(&r, 0, 2)
               : !strcmp(which, "powercut") ? 0 : !strcmp(which, "faults") ? 1 : 2;
        if (getenv("EVS_TEST_VERBOSE"))
            fprintf(stderr, "round %" PRIu64 " (%s, round seed %" PRIu64 ")\n", round, names[sc], p.seed);
        snprintf(replay_line, sizeof replay_line, "round %" PRIu64 " (%s): replay with --seed %" PRIu64
                 " --first-round %" PRIu64 " --rounds 1%s", round, names[sc], seed, round,
                 strcmp(which, "all") ? "" : " (scenario drawn from the seed)");
        if (isatty(2)) fprintf(stderr, "%s\r", replay_line);
        if (sc == 0) scenario_powercut(&p, &r);
        else if (sc == 1) scenario_faults(&p, &r);
        else scenario_kill9(&p, &r, root);
        counts[sc]++;
        stat_rounds++;
    }
    evs_test_rmtree(root);
    fprintf(stderr, "\ntorture: %" PRIu64 " rounds in %.0fs (powercut %" PRIu64 ", faults %" PRIu64 ", kill9 %" PRIu64
            "); %" PRIu64 " events checked after crashes; %" PRIu64 " unacknowledged appends survived whole; "
            "%" PRIu64 " half-created segments recovered; seed %" PRIu64 ": OK\n",
            stat_rounds, tc_now() - t0, counts[0], counts[1], counts[2], stat_events, stat_kept, stat_bug6, seed);
    return 0;
}
