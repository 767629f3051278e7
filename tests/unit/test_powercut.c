/*
 * test_powercut.c — power cuts at every sync (SPEC §3 durable
 * acknowledgement, atomic appends, crash recovery; §9 "power cut that drops
 * unsynced data"; EXAMPLES §5 crash loop).
 *
 * The workload (open, 24 appends of 1-5 events, 64 KiB segments that roll,
 * checkpoints every few events, close) runs on vfs_mem once to count its
 * sync-class calls (sync, datasync, sync_dir). Then for every k in 1..count it
 * runs again with the power cut at the k-th one, in each crash mode: drop-all
 * (only synced data survives), apply-all (everything written survives, like
 * kill -9) and torn (each unsynced write applied, dropped or torn at 512-byte
 * sectors; a random prefix of each directory's namespace changes), the torn
 * mode under 2 seeds per sync (times EVS_TEST_SCALE). After each cut: close the dead store, restart the
 * vfs, reopen on it, and check that
 *  - every acknowledged append is present and byte-identical;
 *  - no partial batch is visible; positions are contiguous; only the append
 *    in flight at the cut may additionally be there (whole);
 *  - the indexes match the log: stream reads, stream versions, the stream
 *    list and gets by id agree with the global log;
 *  - a new append continues the log, and evs_verify (through evs_options.vfs,
 *    on the in-memory files) is clean.
 * Also: concurrent appenders (group commit) cut at random syncs, a second cut
 * during recovery, and no file handle leaks across a cut. The store's
 * directory is created durably before each run; creating it through evs_open
 * is BUG 8 (see main).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "test_crash_common.h"
#include "vfs_mem.h"

#define NBATCHES 24
#define CKPT 8
#define DB "/db"

static const char *const mode_names[3] = {"torn", "drop-all", "apply-all"};

/* A fresh in-memory machine with the store's directory already durable
 * (see test_store_directory_creation_is_durable for creating it). */
static evs_vfs *new_machine(uint64_t seed, vfs_mem_crash_mode mode)
{
    evs_vfs *vfs = vfs_mem_new();
    vfs_mem_set_seed(vfs, seed);
    vfs_mem_set_crash_mode(vfs, mode);
    TC_OK(vfs->mkdir(vfs, DB));
    TC_OK(vfs->sync_dir(vfs, "/"));
    return vfs;
}

typedef struct run_result {
    int open_rc;          /* evs_open */
    size_t acked;         /* appends acknowledged */
    int append_failed;    /* some append failed */
    int crashed;          /* the power cut happened */
    uint64_t syncs;       /* sync-class calls made (after arming) */
} run_result;

/* Run batches [from, w->nb) on a store in DB, the power cut armed at sync
 * `cut` (0: none). Checks the fail-stop rules; closes the store. */
static run_result run(evs_vfs *vfs, tc_work *w, size_t from, uint64_t cut)
{
    run_result r;
    memset(&r, 0, sizeof r);
    uint64_t before = vfs_mem_sync_count(vfs);
    if (cut) vfs_mem_crash_at_sync(vfs, cut);
    evs_options o;
    evs_store *s = NULL;
    tc_options(&o, vfs, CKPT);
    r.open_rc = evs_open(DB, &o, &s);
    if (r.open_rc == 0) {
        for (size_t bi = from; bi < w->nb; bi++) {
            evs_append_result res;
            int rc = tc_append(s, w, bi, &res);
            if (rc == 0) {
                TC_ASSERT(!r.append_failed, "batch %zu acknowledged after an earlier append failed", bi);
                r.acked++;
                continue;
            }
            TC_ASSERT(rc == EVS_EFATAL || rc == -EIO, "batch %zu: %s (%s)", bi, evs_errname(rc), res.message);
            TC_ASSERT(evs_failure(s) != NULL, "batch %zu failed but evs_failure() is NULL", bi);
            r.append_failed = 1;
        }
    }
    int crc = evs_close(s);
    if (r.append_failed) TC_ASSERT(crc != 0, "close of a failed store returned 0");
    r.crashed = vfs_mem_crashed(vfs);
    if (!r.crashed) TC_ASSERT(r.open_rc == 0 && crc == 0 && !r.append_failed, "failure without a power cut");
    TC_ASSERT(vfs_mem_open_files(vfs) == 0, "%u file handles leaked by the store", vfs_mem_open_files(vfs));
    r.syncs = vfs_mem_sync_count(vfs) - before;
    vfs_mem_crash_at_sync(vfs, 0);
    return r;
}

static int list_seg_cb(void *ctx, const char *name)
{
    tc_names *n = ctx;
    size_t l = strlen(name);
    if (l < 4 || strcmp(name + l - 4, ".seg") != 0) return 0;
    n->v = realloc(n->v, (n->n + 1) * sizeof *n->v);
    TC_ASSERT(n->v != NULL, "out of memory");
    n->v[n->n++] = strdup(name);
    return 0;
}

/* Is the last segment in DB at most a header long? (BUG 6 in test_faults.c) */
static int half_created_segment(evs_vfs *vfs)
{
    tc_names segs = {0};
    TC_OK(vfs->list_dir(vfs, DB, list_seg_cb, &segs));
    int r = 0;
    if (segs.n > 1) {
        qsort(segs.v, segs.n, sizeof *segs.v, tc_cmp_str);
        char path[4096];
        tc_path(path, sizeof path, DB, segs.v[segs.n - 1]);
        evs_file *f = NULL;
        uint64_t size = 0;
        TC_OK(vfs->open(vfs, path, EVS_O_RDONLY, &f));
        TC_OK(f->vfs->size(f, &size));
        evs__fclose(f);
        r = size <= TC_SEG_HDR;
    }
    tc_names_free(&segs);
    return r;
}

typedef struct totals {
    uint64_t runs, cut_in_open, cut_in_append, cut_at_close, in_flight_kept, in_flight_lost, half_created;
    uint64_t cut_in_recovery;  /* second cuts that fell inside the recovering evs_open */
} totals;

/* After the cut: restart, reopen, check everything, append, verify.
 * Batches 0..split-1 and split..nb-1 were two separate runs (split = 0: one). */
static void recover_and_check(evs_vfs *vfs, tc_work *w, size_t split, totals *t)
{
    if (vfs_mem_crashed(vfs)) TC_OK(vfs_mem_restart(vfs));
    int half = half_created_segment(vfs);
    evs_options o;
    evs_store *s = NULL;
    tc_options(&o, vfs, CKPT);
    int rc = evs_open(DB, &o, &s);
    TC_ASSERT(rc == 0, "reopen after the power cut: %s", evs_errname(rc));
    tc_found f;
    tc_check(s, w, &f);
    size_t end = split ? split : w->nb;
    size_t present = tc_expect_prefix_range(w, &f, 0, end);
    if (split) tc_expect_prefix_range(w, &f, split, w->nb);
    size_t acked = 0;
    while (acked < end && w->status[acked] == TC_ACKED) acked++;
    if (acked < end && w->status[acked] == TC_UNACKED) {
        if (present > acked) t->in_flight_kept++;
        else t->in_flight_lost++;
    }
    tc_found_free(&f);
    if (half) t->half_created++;  /* the store that removed it appends at once */
    tc_append_more(s, w);
    TC_OK(evs_close(s));
    tc_verify_clean(DB, vfs);
}

static void make_work(tc_work *w, uint64_t seed)
{
    tc_work_init(w, seed, 5, 5, 55);
    for (size_t i = 0; i < NBATCHES; i++) tc_work_add(w);
}

static void reset_work(tc_work *w)
{
    tc_work_truncate(w, NBATCHES);
    memset(w->status, TC_NOT_TRIED, w->nb);
}

/* Count the workload's syncs (and check that it rolls segments). */
static uint64_t calibrate(tc_work *w)
{
    tc_setctx("power cut: calibration");
    evs_vfs *vfs = new_machine(1, VFS_MEM_CRASH_DROP_ALL);
    reset_work(w);
    run_result r = run(vfs, w, 0, 0);
    TC_ASSERT(r.acked == NBATCHES, "the clean run acknowledged %zu of %d", r.acked, NBATCHES);
    totals t;
    memset(&t, 0, sizeof t);
    vfs_mem_crash_now(vfs);  /* a power cut after a clean close loses nothing */
    recover_and_check(vfs, w, 0, &t);
    vfs_mem_free(vfs);
    return r.syncs;
}

static void cut_case(tc_work *w, uint64_t k, uint64_t total, vfs_mem_crash_mode mode, uint64_t seed, totals *t)
{
    tc_setctx("power cut at sync %" PRIu64 " of %" PRIu64 ", %s, vfs seed %" PRIu64, k, total, mode_names[mode], seed);
    evs_vfs *vfs = new_machine(seed, mode);
    reset_work(w);
    run_result r = run(vfs, w, 0, k);
    TC_ASSERT(r.crashed, "the cut at sync %" PRIu64 " never happened (%" PRIu64 " syncs)", k, r.syncs);
    t->runs++;
    if (r.open_rc) t->cut_in_open++;
    else if (r.append_failed) t->cut_in_append++;
    else t->cut_at_close++;
    recover_and_check(vfs, w, 0, t);
    vfs_mem_free(vfs);
}

static void report(const char *what, const totals *t, double secs)
{
    fprintf(stderr, "%s: %" PRIu64 " cuts (during open %" PRIu64 ", during appends %" PRIu64 ", during close %" PRIu64
            "); append in flight kept whole %" PRIu64 ", dropped whole %" PRIu64 "; half-created segment %" PRIu64
            "; second cut inside recovery %" PRIu64 "; %.1fs\n",
            what, t->runs, t->cut_in_open, t->cut_in_append, t->cut_at_close, t->in_flight_kept, t->in_flight_lost,
            t->half_created, t->cut_in_recovery, secs);
}

/* Every sync, drop-all and apply-all. */
static void test_cut_every_sync_drop_and_apply(void **state)
{
    (void)state;
    tc_work w;
    make_work(&w, evs_test_seed());
    uint64_t k_total = calibrate(&w);
    for (int m = VFS_MEM_CRASH_DROP_ALL; m <= VFS_MEM_CRASH_APPLY_ALL; m++) {
        totals t;
        memset(&t, 0, sizeof t);
        double t0 = tc_now();
        for (uint64_t k = 1; k <= k_total; k++) cut_case(&w, k, k_total, (vfs_mem_crash_mode)m, evs_test_seed() + k, &t);
        char what[80];
        snprintf(what, sizeof what, "power cut at each of %" PRIu64 " syncs, %s", k_total, mode_names[m]);
        report(what, &t, tc_now() - t0);
    }
    tc_work_free(&w);
}

/* Every sync, torn writes, several seeds each (EVS_TEST_SCALE multiplies them). */
static void test_cut_every_sync_torn(void **state)
{
    (void)state;
    tc_work w;
    make_work(&w, evs_test_seed() ^ 0x7011ull);
    uint64_t k_total = calibrate(&w);
    unsigned seeds = 2 * tc_scale();
    totals t;
    memset(&t, 0, sizeof t);
    double t0 = tc_now();
    uint64_t rng = evs_test_seed() ^ 0x7e4bull;
    for (uint64_t k = 1; k <= k_total; k++)
        for (unsigned i = 0; i < seeds; i++) cut_case(&w, k, k_total, VFS_MEM_CRASH_TORN, evs_test_rand(&rng), &t);
    char what[80];
    snprintf(what, sizeof what, "power cut at each of %" PRIu64 " syncs, torn, %u seeds each", k_total, seeds);
    report(what, &t, tc_now() - t0);
    tc_work_free(&w);
}

/*
 * A second power cut while recovering from the first: the recovery itself
 * (tail truncation, index rebuild, checkpoint) must be crash-safe.
 */
static void test_cut_during_recovery(void **state)
{
    (void)state;
    tc_work w;
    make_work(&w, evs_test_seed() ^ 0x2c07ull);
    uint64_t k_total = calibrate(&w);
    uint64_t rng = evs_test_seed() ^ 0x5ec0ull;
    totals t;
    memset(&t, 0, sizeof t);
    double t0 = tc_now();
    unsigned cases = 50 * tc_scale();
    for (unsigned i = 0; i < cases; i++) {
        uint64_t k = evs_test_rand_range(&rng, 1, k_total), seed = evs_test_rand(&rng);
        vfs_mem_crash_mode mode = (vfs_mem_crash_mode)(i % 3);
        evs_vfs *vfs = new_machine(seed, mode);
        reset_work(&w);
        tc_setctx("double cut: first at sync %" PRIu64 ", %s, seed %" PRIu64, k, mode_names[mode], seed);
        run_result r = run(vfs, &w, 0, k);
        TC_ASSERT(r.crashed, "no cut");
        if (r.open_rc) t.cut_in_open++;
        else if (r.append_failed) t.cut_in_append++;
        else t.cut_at_close++;
        TC_OK(vfs_mem_restart(vfs));
        /* the second run recovers, appends six new batches and closes; the
         * second cut falls on one of its first syncs (half the time on one of
         * its first three: mostly inside the recovering evs_open) */
        uint64_t k2 = evs_test_rand_range(&rng, 1, i % 2 ? 3 : 12);
        tc_setctx("double cut: first at sync %" PRIu64 ", %s, seed %" PRIu64 "; second at sync %" PRIu64
                  " of the recovering run", k, mode_names[mode], seed, k2);
        size_t from = w.nb;
        for (int j = 0; j < 6; j++) {
            size_t bi = tc_work_add(&w);  /* may move w.b */
            w.b[bi].expected = EVS_EXPECT_ANY;  /* the model assumed every batch committed */
        }
        run_result r2 = run(vfs, &w, from, k2);
        t.cut_in_recovery += r2.crashed && r2.open_rc != 0;
        recover_and_check(vfs, &w, from, &t);
        t.runs++;
        vfs_mem_free(vfs);
    }
    report("second power cut during recovery", &t, tc_now() - t0);
    tc_work_free(&w);
}

/* ---- concurrent appenders: group commit under power cuts ---- */

#define NTHREADS 4

typedef struct appender {
    evs_store *s;
    tc_work *w;
    int id;               /* this thread appends batches bi with bi % NTHREADS == id */
    int failed;           /* set after its first failed append */
    int acked_after_fail; /* a violation seen */
} appender;

static void *appender_main(void *arg)
{
    appender *a = arg;
    for (size_t bi = (size_t)a->id; bi < a->w->nb; bi += NTHREADS) {
        int rc = tc_append(a->s, a->w, bi, NULL);
        if (rc == 0 && a->failed) a->acked_after_fail = 1;
        if (rc != 0) a->failed = 1;
    }
    return NULL;
}

static void test_cut_concurrent_appenders(void **state)
{
    (void)state;
    uint64_t rng = evs_test_seed() ^ 0xc0c0ull;
    unsigned cases = 50 * tc_scale();
    double t0 = tc_now();
    uint64_t groups = 0, events = 0, kept = 0;
    for (unsigned i = 0; i < cases; i++) {
        tc_work w;
        tc_work_init(&w, evs_test_rand(&rng), 6, 4, 25);
        w.use_expected = 0;  /* concurrent: exact expected versions would conflict */
        for (int b = 0; b < 32; b++) tc_work_add(&w);
        uint64_t k = evs_test_rand_range(&rng, 1, 100), seed = evs_test_rand(&rng);
        vfs_mem_crash_mode mode = (vfs_mem_crash_mode)(i % 3);
        tc_setctx("concurrent appenders: cut at sync %" PRIu64 ", %s, seed %" PRIu64, k, mode_names[mode], seed);
        evs_vfs *vfs = new_machine(seed, mode);
        vfs_mem_crash_at_sync(vfs, k);
        evs_options o;
        evs_store *s = NULL;
        tc_options(&o, vfs, CKPT);
        int rc = evs_open(DB, &o, &s);
        if (rc == 0) {
            pthread_t th[NTHREADS];
            appender a[NTHREADS];
            for (int id = 0; id < NTHREADS; id++) {
                a[id] = (appender){s, &w, id, 0, 0};
                TC_ASSERT(pthread_create(&th[id], NULL, appender_main, &a[id]) == 0, "pthread_create");
            }
            for (int id = 0; id < NTHREADS; id++) pthread_join(th[id], NULL);
            for (int id = 0; id < NTHREADS; id++)
                TC_ASSERT(!a[id].acked_after_fail, "thread %d: an append was acknowledged after one failed", id);
            evs_stats st;
            TC_OK(evs_stat(s, &st));
            groups += st.group_commits;
            events += st.appended_events;
        }
        evs_close(s);
        TC_ASSERT(vfs_mem_open_files(vfs) == 0, "file handles leaked");
        if (vfs_mem_crashed(vfs)) TC_OK(vfs_mem_restart(vfs));
        else vfs_mem_crash_at_sync(vfs, 0);
        TC_OK(evs_open(DB, &o, &s));
        tc_found f;
        tc_check(s, &w, &f);
        tc_expect_threads(&w, &f, 0, w.nb, NTHREADS);
        for (size_t bi = 0; bi < w.nb; bi++) kept += f.present[bi] && w.status[bi] == TC_UNACKED;
        tc_found_free(&f);
        tc_append_more(s, &w);
        TC_OK(evs_close(s));
        tc_verify_clean(DB, vfs);
        vfs_mem_free(vfs);
        tc_work_free(&w);
    }
    fprintf(stderr, "concurrent appenders: %u cuts, %d threads; %.2f events per group commit before the cuts; "
            "%" PRIu64 " unacknowledged appends survived whole; %.1fs\n",
            cases, NTHREADS, groups ? (double)events / (double)groups : 0.0, kept, tc_now() - t0);
}

/* evs_verify goes through evs_options.vfs: it sees the in-memory files, and
 * reports damage in them. */
static void test_verify_uses_the_vfs(void **state)
{
    (void)state;
    tc_setctx("evs_verify through vfs_mem");
    tc_work w;
    make_work(&w, evs_test_seed());
    evs_vfs *vfs = new_machine(1, VFS_MEM_CRASH_DROP_ALL);
    reset_work(&w);
    run_result r = run(vfs, &w, 0, 0);
    TC_ASSERT(r.acked == NBATCHES, "workload");
    tc_verify_clean(DB, vfs);
    /* damage one byte of the first segment through the vfs */
    evs_file *f = NULL;
    TC_OK(vfs->open(vfs, DB "/00000000000000000001.seg", EVS_O_RDWR, &f));
    uint8_t b = 0;
    size_t got = 0;
    TC_OK(f->vfs->pread(f, &b, 1, 200, &got));
    b ^= 0x10;
    TC_OK(f->vfs->pwrite(f, &b, 1, 200, NULL));
    TC_OK(evs__fclose(f));
    tc_problems p = tc_verify(DB, vfs);
    int named = 0;
    for (size_t i = 0; i < p.n && i < sizeof p.v / sizeof p.v[0]; i++)
        named |= !strcmp(p.v[i].file, "00000000000000000001.seg") && p.v[i].off <= 200;
    TC_ASSERT(named, "evs_verify over vfs_mem does not report the damaged segment (%zu problems)", p.n);
    vfs_mem_free(vfs);
    tc_work_free(&w);
}

/*
 * evs_open creates the store's directory; appends acknowledged right after
 * must survive a power cut, so the directory's own entry in its parent must
 * be durable too (SPEC §3: directory fsync when files are created).
 */
static void test_store_directory_creation_is_durable(void **state)
{
    (void)state;
    tc_setctx("store directory creation, then a drop-all power cut");
    tc_work w;
    tc_work_init(&w, evs_test_seed(), 2, 2, 0);
    evs_vfs *vfs = vfs_mem_new();
    vfs_mem_set_crash_mode(vfs, VFS_MEM_CRASH_DROP_ALL);
    evs_options o;
    evs_store *s = NULL;
    tc_options(&o, vfs, CKPT);
    TC_OK(evs_open(DB, &o, &s));
    TC_OK(tc_append(s, &w, tc_work_add(&w), NULL));
    vfs_mem_crash_now(vfs);
    evs_close(s);
    TC_OK(vfs_mem_restart(vfs));
    TC_OK(evs_open(DB, &o, &s));
    tc_found f;
    tc_check(s, &w, &f);
    tc_found_free(&f);
    TC_OK(evs_close(s));
    vfs_mem_free(vfs);
    tc_work_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cut_every_sync_drop_and_apply),
        cmocka_unit_test(test_cut_every_sync_torn),
        cmocka_unit_test(test_cut_during_recovery),
        cmocka_unit_test(test_cut_concurrent_appenders),
        cmocka_unit_test(test_verify_uses_the_vfs),
        cmocka_unit_test(test_store_directory_creation_is_durable),
    };
    evs_test_seed();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
