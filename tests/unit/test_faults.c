/*
 * test_faults.c — fail-stop under I/O errors (SPEC §3 "Fail-stop on I/O
 * errors", §9 fault injection; EXAMPLES §2 sticky failure).
 *
 * A workload (open, 20 appends of 1-5 events with 64 KiB segments so they
 * roll, checkpoints every few events, close) runs once over vfs_fault (over
 * the posix vfs) to count the calls of each class. Then, for every class, for
 * every N in 1..count, and for each error (EIO, ENOSPC, and for pwrite short
 * writes), it runs again with the N-th call failing, and checks:
 *  - an append that returned 0 is acknowledged; after the first failed append
 *    every later one fails too (EVS_EFATAL or the errno) and evs_failure()
 *    says why: the store fail-stops;
 *  - after close, disarming and reopening on the plain posix vfs: every
 *    acknowledged event is present and byte-identical, positions contiguous,
 *    indexes agree with the log, evs_verify is clean; an unacknowledged
 *    append is wholly present or wholly absent (never half a batch);
 *  - a failed sync is never swallowed (EXAMPLES §2: never retry an fsync and
 *    then report success). Failures the store may legitimately absorb (an
 *    unlink of an obsolete index run; an open or read of a derived file, which
 *    makes it rebuild the indexes) are counted and reported as "swallowed";
 *    swallowed pwrites are BUG 7 (see main).
 * Also: a short write whose rollback truncate fails too (a torn record is
 * left in the file; about 60 calls sampled, all with EVS_TEST_SCALE >= 3),
 * persistent failures (a dead disk), and faults during recovery itself (open
 * of a crash image with a torn tail, with and without its indexes; EIO at
 * every call, ENOSPC too with EVS_TEST_SCALE > 1).
 *
 * Stores live on a tmpfs when one is available (see tc_tmpdir) so the
 * thousands of fsyncs are cheap; the vfs is the posix one all the same.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "test_crash_common.h"
#include "vfs_fault.h"

#define NBATCHES 20

static const char *const class_names[VFS_FAULT_NCLASSES] = {
    "open", "pread", "pwrite", "sync", "truncate", "rename", "unlink", "sync_dir"};

/* Classes the matrix fails (pread: reads may fail without a fail-stop, so it is not here). */
static const vfs_fault_class matrix_classes[] = {
    VFS_FAULT_OPEN, VFS_FAULT_PWRITE, VFS_FAULT_SYNC, VFS_FAULT_TRUNCATE,
    VFS_FAULT_RENAME, VFS_FAULT_SYNC_DIR, VFS_FAULT_UNLINK};
#define NMATRIX (sizeof matrix_classes / sizeof matrix_classes[0])

typedef struct fault_spec {
    vfs_fault_class cls;    /* class to fail */
    uint64_t nth;           /* which call (from the start of the run) */
    int err;                /* EIO, ENOSPC */
    int flags;              /* VFS_FAULT_ONCE / PERSIST / SHORT */
    int also_truncate;      /* 1: the next truncate after it fails too (EIO) */
} fault_spec;

typedef struct run_result {
    int open_rc;            /* evs_open's result */
    int close_rc;           /* evs_close's result */
    size_t acked;           /* appends acknowledged */
    int append_failed;      /* some append failed */
    uint64_t injected;      /* failures the vfs injected */
    uint64_t count[VFS_FAULT_NCLASSES]; /* calls per class */
} run_result;

typedef struct totals {
    uint64_t runs, open_failed, appends_failed, close_failed, swallowed, not_reached;
    uint64_t partial_present;   /* unacknowledged append found wholly present */
    uint64_t half_created;      /* runs that left a half-created last segment */
    uint64_t swallowed_by_class[VFS_FAULT_NCLASSES]; /* injected, yet nothing failed */
} totals;

static const char *err_name(int err) { return err == EIO ? "EIO" : err == ENOSPC ? "ENOSPC" : "E?"; }

/* Model the workload: the same batches for every run of a seed. */
static void make_work(tc_work *w, uint64_t seed)
{
    tc_work_init(w, seed, 5, 5, 65);
    for (size_t i = 0; i < NBATCHES; i++) tc_work_add(w);
}

static void reset_work(tc_work *w)
{
    tc_work_truncate(w, NBATCHES);
    memset(w->status, TC_NOT_TRIED, w->nb);
}

/*
 * Open dir through a fault vfs armed with *f (f NULL: nothing armed), run the
 * workload from batch `from` on, close. Checks the fail-stop rules on the way.
 */
static run_result run_workload(const char *dir, tc_work *w, size_t from, const fault_spec *f, uint64_t ckpt)
{
    run_result r;
    memset(&r, 0, sizeof r);
    evs_vfs *vfs = vfs_fault_new(NULL);
    vfs_fault_set_seed(vfs, evs_test_seed() ^ (f ? f->nth * 7919u : 0));
    if (f) {
        TC_OK(vfs_fault_arm(vfs, f->cls, f->nth, f->err, f->flags));
        if (f->also_truncate) TC_OK(vfs_fault_arm(vfs, VFS_FAULT_TRUNCATE, 1, EIO, VFS_FAULT_ONCE));
    }
    evs_options o;
    evs_store *s = NULL;
    tc_options(&o, vfs, ckpt);
    r.open_rc = evs_open(dir, &o, &s);
    if (r.open_rc == 0) {
        for (size_t bi = from; bi < w->nb; bi++) {
            evs_append_result res;
            int rc = tc_append(s, w, bi, &res);
            if (rc == 0) {
                TC_ASSERT(!r.append_failed, "batch %zu acknowledged after an earlier append failed: no fail-stop", bi);
                r.acked++;
                continue;
            }
            TC_ASSERT(rc == EVS_EFATAL || (f && rc == -f->err) || rc == -EIO,
                      "batch %zu failed with %s (%s)", bi, evs_errname(rc), res.message);
            const char *why = evs_failure(s);
            TC_ASSERT(why != NULL, "batch %zu failed with %s but evs_failure() is NULL", bi, evs_errname(rc));
            evs_stats st;
            TC_OK(evs_stat(s, &st));
            TC_ASSERT(st.failed, "evs_stat does not say failed");
            r.append_failed = 1;
        }
    }
    if (r.open_rc == 0 && r.append_failed) {
        /* a failed store refuses the next append at once and says so */
        evs_event_in in;
        memset(&in, 0, sizeof in);
        in.type = "Late";
        int rc = evs_append(s, "late", EVS_EXPECT_ANY, &in, 1, NULL, NULL);
        TC_ASSERT(rc == EVS_EFATAL, "append to a failed store: %s", evs_errname(rc));
    }
    r.close_rc = evs_close(s);
    if (r.append_failed) TC_ASSERT(r.close_rc != 0, "close of a failed store returned 0");
    for (int c = 0; c < VFS_FAULT_NCLASSES; c++) {
        r.count[c] = vfs_fault_count(vfs, (vfs_fault_class)c);
        r.injected += vfs_fault_injected(vfs, (vfs_fault_class)c);
    }
    vfs_fault_free(vfs);
    return r;
}

/* Is the last segment file of dir at most a header long (a segment whose
 * creation failed or was cut by a crash, which recovery deletes)? */
static int half_created_segment(const char *dir)
{
    char path[4096];
    tc_names segs = tc_list(dir, ".seg");
    int r = 0;
    if (segs.n > 1) {
        tc_path(path, sizeof path, dir, segs.v[segs.n - 1]);
        r = tc_fsize(path) <= TC_SEG_HDR;
    }
    tc_names_free(&segs);
    return r;
}

/* Reopen on the plain posix vfs and check everything; returns batches present. */
static size_t reopen_and_check(const char *dir, tc_work *w, uint64_t ckpt, totals *t)
{
    evs_options o;
    evs_store *s = NULL;
    tc_options(&o, NULL, ckpt);
    int half = half_created_segment(dir);
    int rc = evs_open(dir, &o, &s);
    TC_ASSERT(rc == 0, "reopen on the posix vfs: %s", evs_errname(rc));
    tc_found f;
    tc_check(s, w, &f);
    size_t present = tc_expect_prefix(w, &f);
    for (size_t bi = 0; bi < w->nb; bi++)
        if (f.present[bi] && w->status[bi] == TC_UNACKED) t->partial_present++;
    tc_found_free(&f);
    if (half) t->half_created++;  /* the store that removed it appends at once */
    tc_append_more(s, w);
    TC_OK(evs_close(s));
    tc_verify_clean(dir, NULL);
    return present;
}

static void one_case(tc_work *w, const fault_spec *f, uint64_t ckpt, uint64_t calls, totals *t)
{
    char dir[512];
    tc_setctx("fault matrix: %s call %" PRIu64 " of %" PRIu64 " fails with %s%s%s%s", class_names[f->cls], f->nth, calls,
              err_name(f->err), f->flags & VFS_FAULT_SHORT ? " after a short write" : "",
              f->flags & VFS_FAULT_PERSIST ? ", and every later call of the class" : "",
              f->also_truncate ? ", and the next truncate fails with EIO" : "");
    TC_OK(tc_tmpdir(dir, sizeof dir));
    reset_work(w);
    run_result r = run_workload(dir, w, 0, f, ckpt);
    t->runs++;
    tc_check_light = 1;  /* thousands of runs: forward reads and gets only (calibration checks all) */
    int surfaced = r.open_rc != 0 || r.append_failed || r.close_rc != 0;
    if (r.injected == 0) t->not_reached++;
    else if (!surfaced) {
        t->swallowed++;
        t->swallowed_by_class[f->cls]++;
        if (getenv("EVS_TEST_VERBOSE")) fprintf(stderr, "swallowed: %s\n", tc_ctx);
    }
    t->open_failed += r.open_rc != 0;
    t->appends_failed += r.append_failed;
    t->close_failed += r.open_rc == 0 && !r.append_failed && r.close_rc != 0;
    if (r.open_rc != 0)
        TC_ASSERT(r.injected > 0, "open failed (%s) with no fault injected", evs_errname(r.open_rc));
    /* fsync failures are never swallowed */
    if (f->cls == VFS_FAULT_SYNC)
        TC_ASSERT(r.injected == 0 || surfaced, "a failed sync was swallowed: every append and close succeeded");
    reopen_and_check(dir, w, ckpt, t);
    tc_check_light = 0;
    evs_test_rmtree(dir);
}

static void report(const char *what, const totals *t, double secs)
{
    fprintf(stderr, "%s: %" PRIu64 " runs; failure surfaced at open %" PRIu64 ", in an append %" PRIu64
            ", only at close %" PRIu64 "; swallowed %" PRIu64 ", not reached %" PRIu64
            "; unacknowledged appends found whole after reopen %" PRIu64 "; half-created segment left %" PRIu64
            "; %.1fs\n",
            what, t->runs, t->open_failed, t->appends_failed, t->close_failed, t->swallowed, t->not_reached,
            t->partial_present, t->half_created, secs);
}

/* Count the calls of one clean run. */
static run_result calibrate(tc_work *w, uint64_t ckpt)
{
    char dir[512];
    TC_OK(tc_tmpdir(dir, sizeof dir));
    tc_setctx("fault matrix: calibration run");
    reset_work(w);
    run_result r = run_workload(dir, w, 0, NULL, ckpt);
    TC_ASSERT(r.open_rc == 0 && r.acked == NBATCHES && r.close_rc == 0, "the clean run failed");
    totals t;
    memset(&t, 0, sizeof t);
    reopen_and_check(dir, w, ckpt, &t);
    tc_names segs = tc_list(dir, ".seg");
    TC_ASSERT(segs.n >= 2, "the workload should roll segments: %zu segment(s)", segs.n);
    tc_names_free(&segs);
    evs_test_rmtree(dir);
    return r;
}

/* Every class, every call, EIO and ENOSPC (and short writes for pwrite). */
static void test_fault_matrix(void **state)
{
    (void)state;
    uint64_t ckpt = 8;
    tc_work w;
    make_work(&w, evs_test_seed());
    run_result cal = calibrate(&w, ckpt);
    fprintf(stderr, "fault matrix calls per clean run:");
    for (int c = 0; c < VFS_FAULT_NCLASSES; c++) fprintf(stderr, " %s=%" PRIu64, class_names[c], cal.count[c]);
    fprintf(stderr, "\n");
    uint64_t stride = 1;  /* EVS_TEST_SCALE only adds seeds elsewhere: every call is always covered */
    for (size_t ci = 0; ci < NMATRIX; ci++) {
        vfs_fault_class cls = matrix_classes[ci];
        totals t;
        memset(&t, 0, sizeof t);
        double t0 = tc_now();
        uint64_t calls = cal.count[cls];
        for (uint64_t n = 1; n <= calls; n += stride) {
            static const int errs[2] = {EIO, ENOSPC};
            for (int e = 0; e < 2; e++) {
                fault_spec f = {cls, n, errs[e], VFS_FAULT_ONCE, 0};
                one_case(&w, &f, ckpt, calls, &t);
            }
            if (cls == VFS_FAULT_PWRITE) {
                fault_spec f = {cls, n, ENOSPC, VFS_FAULT_SHORT, 0};
                one_case(&w, &f, ckpt, calls, &t);
            }
        }
        char what[64];
        snprintf(what, sizeof what, "fault matrix, %s (%" PRIu64 " calls)", class_names[cls], calls);
        report(what, &t, tc_now() - t0);
        TC_ASSERT(t.not_reached == 0, "%s: %" PRIu64 " armed faults were never reached (the workload is not "
                  "deterministic?)", class_names[cls], t.not_reached);
    }
    tc_work_free(&w);
}

/* A short write whose rollback truncate also fails: a torn record stays in
 * the file, and the reopen must cut it. Then persistent failures (a disk that
 * stays broken from call N on). */
static void test_fault_double_and_persistent(void **state)
{
    (void)state;
    uint64_t ckpt = 8;
    tc_work w;
    make_work(&w, evs_test_seed() ^ 0xd0b1eull);
    run_result cal = calibrate(&w, ckpt);
    totals t;
    memset(&t, 0, sizeof t);
    double t0 = tc_now();
    /* about 60 calls spread over the run; every call once EVS_TEST_SCALE * 60 >= the count */
    uint64_t pw_calls = cal.count[VFS_FAULT_PWRITE], stride = pw_calls / (60 * tc_scale()) + 1;
    for (uint64_t n = 1 + evs_test_seed() % stride; n <= pw_calls; n += stride) {
        fault_spec f = {VFS_FAULT_PWRITE, n, ENOSPC, VFS_FAULT_SHORT, 1};
        one_case(&w, &f, ckpt, pw_calls, &t);
    }
    report("short write + failed rollback truncate", &t, tc_now() - t0);
    memset(&t, 0, sizeof t);
    t0 = tc_now();
    static const vfs_fault_class pers[] = {VFS_FAULT_PWRITE, VFS_FAULT_SYNC, VFS_FAULT_OPEN, VFS_FAULT_SYNC_DIR};
    uint64_t rng = evs_test_seed() ^ 0x9e75ull;
    for (size_t ci = 0; ci < sizeof pers / sizeof pers[0]; ci++) {
        uint64_t calls = cal.count[pers[ci]];
        unsigned picks = 6 * tc_scale();
        for (unsigned k = 0; k < picks; k++) {
            fault_spec f = {pers[ci], evs_test_rand_range(&rng, 1, calls), k % 2 ? ENOSPC : EIO, VFS_FAULT_PERSIST, 0};
            one_case(&w, &f, ckpt, calls, &t);
        }
    }
    report("persistent failures", &t, tc_now() - t0);
    tc_work_free(&w);
}

/*
 * Faults during recovery. The directory is a crash image (copied while the
 * store was open and idle: the last appends are past the last checkpoint)
 * with a torn record appended to the last segment; optionally without any
 * index file (open must rebuild them). Opening it, appending and closing
 * runs once to count calls, then once per (class, N, error) with that call
 * failing. Whatever happens, a plain reopen afterwards has every event of
 * the image and every append acknowledged after it, and verifies clean.
 */
static void recovery_faults(int remove_idx)
{
    uint64_t ckpt = 8;
    char root[512], image[600], dir[600];
    TC_OK(tc_tmpdir(root, sizeof root));
    snprintf(image, sizeof image, "%s/image", root);
    snprintf(dir, sizeof dir, "%s/run", root);
    tc_work w;
    make_work(&w, evs_test_seed() ^ 0x7ec0ull);
    size_t first_batches = NBATCHES - 8;
    /* build the image */
    {
        evs_options o;
        evs_store *s = NULL;
        tc_options(&o, NULL, ckpt);
        tc_setctx("recovery faults: building the image");
        TC_OK(evs_open(image, &o, &s));
        for (size_t bi = 0; bi < first_batches; bi++) TC_OK(tc_append(s, &w, bi, NULL));
        TC_OK(evs_close(s));
        o.checkpoint_interval = UINT64_MAX;
        TC_OK(evs_open(image, &o, &s));
        for (size_t bi = first_batches; bi < first_batches + 3; bi++) TC_OK(tc_append(s, &w, bi, NULL));
        tc_copy_dir(image, dir);  /* idle writer: a consistent kill -9 image */
        TC_OK(evs_close(s));
        tc_copy_dir(dir, image);
        if (remove_idx) tc_remove_idx(image);
        tc_names segs = tc_list(image, ".seg");
        char path[4096];
        tc_path(path, sizeof path, image, segs.v[segs.n - 1]);
        tc_names_free(&segs);
        /* a torn record: a valid-looking header start, then nothing */
        FILE *fp = fopen(path, "ab");
        TC_ASSERT(fp != NULL, "append to %s", path);
        static const uint8_t torn[40] = {'E', 'V', 'R', 1, 1, 1, 3, 3, 0x00, 0x02};
        fwrite(torn, 1, sizeof torn, fp);
        fclose(fp);
    }
    size_t image_batches = first_batches + 3;
    for (size_t bi = 0; bi < w.nb; bi++) w.status[bi] = bi < image_batches ? TC_ACKED : TC_NOT_TRIED;
    uint8_t *saved = malloc(w.nb);
    memcpy(saved, w.status, w.nb);
    /* calibrate */
    tc_setctx("recovery faults: calibration");
    tc_copy_dir(image, dir);
    run_result cal = run_workload(dir, &w, image_batches, NULL, ckpt);
    TC_ASSERT(cal.open_rc == 0 && cal.close_rc == 0 && cal.acked == w.nb - image_batches, "clean recovery run failed");
    totals t;
    memset(&t, 0, sizeof t);
    double t0 = tc_now();
    for (size_t ci = 0; ci < NMATRIX; ci++) {
        vfs_fault_class cls = matrix_classes[ci];
        for (uint64_t n = 1; n <= cal.count[cls]; n++) {
            for (int e = 0; e < (tc_scale() > 1 ? 2 : 1); e++) {  /* ENOSPC too when scaled up */
                fault_spec f = {cls, n, e ? ENOSPC : EIO, VFS_FAULT_ONCE, 0};
                tc_setctx("recovery faults (%s): %s call %" PRIu64 " of %" PRIu64 " fails with %s",
                          remove_idx ? "indexes removed" : "indexes kept", class_names[cls], n, cal.count[cls],
                          err_name(f.err));
                tc_copy_dir(image, dir);
                tc_work_truncate(&w, NBATCHES);
                memcpy(w.status, saved, w.nb);
                run_result r = run_workload(dir, &w, image_batches, &f, ckpt);
                t.runs++;
                tc_check_light = 1;
                t.open_failed += r.open_rc != 0;
                t.appends_failed += r.append_failed;
                int surfaced = r.open_rc != 0 || r.append_failed || r.close_rc != 0;
                if (r.injected == 0) t.not_reached++;
                else if (!surfaced) t.swallowed++;
                if (cls == VFS_FAULT_SYNC)
                    TC_ASSERT(r.injected == 0 || surfaced, "a failed sync was swallowed");
                reopen_and_check(dir, &w, ckpt, &t);
                tc_check_light = 0;
            }
        }
    }
    char what[80];
    snprintf(what, sizeof what, "recovery faults (%s)", remove_idx ? "indexes removed" : "indexes kept");
    report(what, &t, tc_now() - t0);
    free(saved);
    tc_work_free(&w);
    evs_test_rmtree(root);
}

static void test_recovery_faults(void **state)
{
    (void)state;
    recovery_faults(0);
}

static void test_recovery_faults_rebuild(void **state)
{
    (void)state;
    recovery_faults(1);
}

/*
 * A segment whose creation failed (or was cut by a crash) before its header
 * was written is deleted by recovery; the previous segment becomes the active
 * one again and appends must go on.
 */
static void test_append_after_half_created_segment(void **state)
{
    (void)state;
    char dir[512], path[4096];
    TC_OK(tc_tmpdir(dir, sizeof dir));
    tc_work w;
    tc_work_init(&w, evs_test_seed(), 3, 3, 0);
    evs_options o;
    evs_store *s = NULL;
    tc_options(&o, NULL, 12);
    tc_setctx("append after recovery deleted a half-created segment");
    TC_OK(evs_open(dir, &o, &s));
    for (int i = 0; i < 3; i++) TC_OK(tc_append(s, &w, tc_work_add(&w), NULL));
    uint64_t pos = evs_position(s);
    TC_OK(evs_close(s));
    /* what a failed or interrupted roll to the next segment leaves behind */
    char name[64];
    snprintf(name, sizeof name, "%020" PRIu64 ".seg", pos + 1);
    tc_path(path, sizeof path, dir, name);
    tc_spit(path, "", 0);
    TC_OK(evs_open(dir, &o, &s));
    TC_ASSERT(evs_position(s) == pos, "position %" PRIu64 ", want %" PRIu64, evs_position(s), pos);
    tc_append_more(s, &w);
    TC_OK(evs_close(s));
    tc_verify_clean(dir, NULL);
    tc_work_free(&w);
    evs_test_rmtree(dir);
}

/*
 * A read-write open that fails (here: one transient EIO while recovering)
 * must leave the store as it was for everyone else: a read-only open right
 * after it sees every event.
 */
static void test_failed_writer_open_hides_nothing(void **state)
{
    (void)state;
    char dir[512];
    TC_OK(tc_tmpdir(dir, sizeof dir));
    tc_work w;
    make_work(&w, evs_test_seed());
    evs_options o;
    evs_store *s = NULL;
    tc_options(&o, NULL, 8);
    tc_setctx("read-only open after a failed read-write open");
    TC_OK(evs_open(dir, &o, &s));
    for (size_t bi = 0; bi < w.nb; bi++) TC_OK(tc_append(s, &w, bi, NULL));
    uint64_t pos = evs_position(s);
    TC_OK(evs_close(s));
    tc_names segs = tc_list(dir, ".seg");
    TC_ASSERT(segs.n >= 2, "want several segments");
    tc_names_free(&segs);
    /* the writer's open fails on its second file open (after taking the lock) */
    evs_vfs *fv = vfs_fault_new(NULL);
    TC_OK(vfs_fault_arm(fv, VFS_FAULT_OPEN, 2, EIO, VFS_FAULT_ONCE));
    o.vfs = fv;
    int rc = evs_open(dir, &o, &s);
    evs_close(s);
    vfs_fault_free(fv);
    TC_ASSERT(rc == -EIO, "the faulty open: %s", evs_errname(rc));
    o.vfs = NULL;
    o.read_only = 1;
    rc = evs_open(dir, &o, &s);
    TC_ASSERT(rc == 0, "read-only open after a failed writer open: %s", evs_errname(rc));
    TC_ASSERT(evs_position(s) == pos, "read-only open sees position %" PRIu64 " of %" PRIu64, evs_position(s), pos);
    tc_found f;
    tc_check(s, &w, &f);
    tc_found_free(&f);
    evs_close(s);
    tc_work_free(&w);
    evs_test_rmtree(dir);
}

/* Every failed pwrite surfaces: as a failed open, append or close. */
static void test_fault_pwrite_never_swallowed(void **state)
{
    (void)state;
    uint64_t ckpt = 8;
    tc_work w;
    make_work(&w, evs_test_seed());
    run_result cal = calibrate(&w, ckpt);
    totals t;
    memset(&t, 0, sizeof t);
    for (uint64_t n = 1; n <= cal.count[VFS_FAULT_PWRITE]; n++) {
        fault_spec f = {VFS_FAULT_PWRITE, n, EIO, VFS_FAULT_ONCE, 0};
        one_case(&w, &f, ckpt, cal.count[VFS_FAULT_PWRITE], &t);
        TC_ASSERT(t.swallowed == 0, "a failed pwrite was swallowed: every append and close succeeded");
    }
    tc_work_free(&w);
}

/*
 * A refusal rests on durable events only. Three appends are queued together
 * behind a sync the test holds at a gate, so the writer stages them as one
 * group: a creates stream x; b expects x not to exist; c's condition forbids
 * events of x after the current position. Only a's staged event refuses b
 * and c. They must not be answered before a's event is durable: with the
 * sync of a's group failing (fail = 1) the store fail-stops, x never gets an
 * event, and a 409 telling b that x is at version 1 (or c that a matching
 * event exists) would be false. The writer used to refuse them at once,
 * before writing a's group (found while writing tests/torture/torture_server.c,
 * which checks after every restart that what each 409 said is durable; its
 * window there is one fsync, so this test holds the sync instead).
 */
typedef struct sync_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t arrived, allow;    /* syncs that reached the gate; how many may pass */
} sync_gate;

static void gate_hook(void *ctx, vfs_fault_class cls)
{
    (void)cls;
    sync_gate *g = ctx;
    pthread_mutex_lock(&g->mu);
    uint64_t me = ++g->arrived;
    pthread_cond_broadcast(&g->cv);
    while (g->allow < me) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_wait_arrived(sync_gate *g, uint64_t n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 60;
    pthread_mutex_lock(&g->mu);
    int rc = 0;
    while (g->arrived < n && rc == 0) rc = pthread_cond_timedwait(&g->cv, &g->mu, &dl);
    uint64_t got = g->arrived;
    pthread_mutex_unlock(&g->mu);
    TC_ASSERT(got >= n, "only %" PRIu64 " syncs reached the gate within 60 s, waited for %" PRIu64, got, n);
}

static void gate_allow(sync_gate *g, uint64_t n)
{
    pthread_mutex_lock(&g->mu);
    g->allow = n;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

typedef struct async_rec {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, rc, order;
    evs_append_result res;
    evs_commit out[1];
} async_rec;

static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
static int order_next;

static void async_done(void *ctx, int rc)
{
    async_rec *a = ctx;
    pthread_mutex_lock(&order_mu);
    int order = ++order_next;
    pthread_mutex_unlock(&order_mu);
    pthread_mutex_lock(&a->mu);
    a->rc = rc;
    a->order = order;
    a->done = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static int async_is_done(async_rec *a)
{
    pthread_mutex_lock(&a->mu);
    int d = a->done;
    pthread_mutex_unlock(&a->mu);
    return d;
}

static void async_wait(async_rec *a, const char *what)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 60;
    pthread_mutex_lock(&a->mu);
    int rc = 0;
    while (!a->done && rc == 0) rc = pthread_cond_timedwait(&a->cv, &a->mu, &dl);
    int d = a->done;
    pthread_mutex_unlock(&a->mu);
    TC_ASSERT(d, "%s: not completed within 60 s", what);
}

static void refusal_case(int fail)
{
    char dir[512];
    TC_OK(tc_tmpdir(dir, sizeof dir));
    tc_setctx("refusals wait for the durability of the events they rest on (%s)", fail ? "that group's sync fails" : "it succeeds");
    evs_vfs *fv = vfs_fault_new(NULL);
    evs_options o;
    tc_options(&o, fv, 1000000); /* no checkpoint syncs in the way */
    evs_store *s = NULL;
    TC_OK(evs_open(dir, &o, &s));
    evs_event_in e;
    memset(&e, 0, sizeof e);
    e.type = "T";
    e.expected_version = EVS_EXPECT_ANY;
    TC_OK(evs_append(s, "warm", EVS_EXPECT_ANY, &e, 1, NULL, NULL)); /* position 1 */
    sync_gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    vfs_fault_set_hook(fv, VFS_FAULT_SYNC, gate_hook, &g);
    async_rec z, a, b, c;
    async_rec *all[4] = {&z, &a, &b, &c};
    for (int i = 0; i < 4; i++) {
        memset(all[i], 0, sizeof *all[i]);
        pthread_mutex_init(&all[i]->mu, NULL);
        pthread_cond_init(&all[i]->cv, NULL);
    }
    TC_OK(evs_append_async(s, "z", EVS_EXPECT_ANY, &e, 1, NULL, z.out, &z.res, async_done, &z)); /* position 2 */
    gate_wait_arrived(&g, 1); /* the writer holds z's group in its sync */
    evs_event_in ec = e;
    ec.stream = "y";
    evs_condition cond;
    memset(&cond, 0, sizeof cond);
    cond.filter.stream_prefix = "x";
    cond.after = 2;
    TC_OK(evs_append_async(s, "x", EVS_EXPECT_ANY, &e, 1, NULL, a.out, &a.res, async_done, &a));
    TC_OK(evs_append_async(s, "x", EVS_EXPECT_NO_STREAM, &e, 1, NULL, b.out, &b.res, async_done, &b));
    TC_OK(evs_append_async(s, NULL, EVS_EXPECT_ANY, &ec, 1, &cond, c.out, &c.res, async_done, &c));
    gate_allow(&g, 1);        /* z's group completes; a, b and c are staged as one group */
    gate_wait_arrived(&g, 2); /* the writer holds a's sync: a's event is not durable */
    TC_ASSERT(!async_is_done(&b), "b was refused (rc %s, \"%s\") while the event refusing it was not durable yet",
              evs_errname(b.rc), b.res.message);
    TC_ASSERT(!async_is_done(&c), "c was refused (rc %s, \"%s\") while the event refusing it was not durable yet",
              evs_errname(c.rc), c.res.message);
    if (fail) TC_OK(vfs_fault_arm(fv, VFS_FAULT_SYNC, 1, EIO, VFS_FAULT_ONCE));
    gate_allow(&g, UINT64_MAX);
    async_wait(&z, "z");
    async_wait(&a, "a");
    async_wait(&b, "b");
    async_wait(&c, "c");
    TC_ASSERT(z.rc == 0, "z: %s", evs_errname(z.rc));
    if (fail) {
        TC_ASSERT(a.rc != 0, "a was acknowledged although its sync failed");
        TC_ASSERT(b.rc != 0 && b.rc != EVS_ECONFLICT, "b: expected a failure of the store, got %s (\"%s\")", evs_errname(b.rc),
                  b.res.message);
        TC_ASSERT(c.rc != 0 && c.rc != EVS_ECONDITION, "c: expected a failure of the store, got %s (\"%s\")", evs_errname(c.rc),
                  c.res.message);
    } else {
        TC_ASSERT(a.rc == 0, "a: %s", evs_errname(a.rc));
        TC_ASSERT(b.rc == EVS_ECONFLICT && b.res.actual_version == 1, "b: expected a conflict at version 1, got %s (actual %" PRIu64 ")",
                  evs_errname(b.rc), b.res.actual_version);
        TC_ASSERT(c.rc == EVS_ECONDITION, "c: expected a failed condition, got %s", evs_errname(c.rc));
        TC_ASSERT(a.order < b.order && a.order < c.order, "refused (order %d, %d) before the event refusing them was acknowledged (%d)",
                  b.order, c.order, a.order);
    }
    vfs_fault_set_hook(fv, VFS_FAULT_SYNC, NULL, NULL);
    evs_close(s);
    vfs_fault_free(fv);
    o.vfs = NULL;
    TC_OK(evs_open(dir, &o, &s));
    uint64_t v = 99;
    int rc = evs_stream_version(s, "x", &v);
    TC_ASSERT(rc == 0 || rc == EVS_ENOTFOUND, "stream version: %s", evs_errname(rc));
    if (rc == EVS_ENOTFOUND) v = 0;
    TC_ASSERT(v == (fail ? 0u : 1u), "stream x is at version %" PRIu64 " after reopening", v);
    TC_OK(evs_close(s));
    for (int i = 0; i < 4; i++) {
        pthread_mutex_destroy(&all[i]->mu);
        pthread_cond_destroy(&all[i]->cv);
    }
    evs_test_rmtree(dir);
}

static void test_refusal_waits_for_durability(void **state)
{
    (void)state;
    refusal_case(0);
    refusal_case(1);
}

/*
 * A power cut tears the final write sector by sector, and one group commit
 * writes several appends: the first append of the group may be lost while
 * later whole appends of the same write survive. That is a torn tail (the
 * group was never acknowledged), not corruption: the store must open and end
 * before the group. Recovery used to call it corruption ("damaged record
 * followed by further complete appends") and refuse to open (found by make
 * torture: torture_engine's powercut scenario, 1 round in about 400). The
 * same damage followed by later writes (three appends written one by one)
 * is still refused. Damage here: the bytes of the first record of the group
 * in its second 512-byte sector are zeros again (as before the write: that
 * sector of it did not reach the disk; its first sector did, so the record
 * starts well and fails its checksum); the derived files are removed so the
 * open scans the log.
 */
static void torn_group_case(int one_write)
{
    char dir[512];
    TC_OK(tc_tmpdir(dir, sizeof dir));
    tc_setctx("a torn %s", one_write ? "group write of three appends" : "first of three separate writes");
    evs_vfs *fv = vfs_fault_new(NULL);
    evs_options o;
    tc_options(&o, fv, 1000000);
    evs_store *s = NULL;
    TC_OK(evs_open(dir, &o, &s));
    static char data[700];
    memset(data, 0, sizeof data);
    snprintf(data, sizeof data, "{\"pad\":\"%0600d\"}", 0);
    evs_event_in e[2];
    memset(e, 0, sizeof e);
    for (int i = 0; i < 2; i++) {
        e[i].type = "T";
        e[i].data = data;
        e[i].data_len = strlen(data);
        e[i].expected_version = EVS_EXPECT_ANY;
    }
    TC_OK(evs_append(s, "warm", EVS_EXPECT_ANY, e, 1, NULL, NULL)); /* position 1 */
    async_rec z, a, b, c;
    async_rec *all[4] = {&z, &a, &b, &c};
    for (int i = 0; i < 4; i++) {
        memset(all[i], 0, sizeof *all[i]);
        pthread_mutex_init(&all[i]->mu, NULL);
        pthread_cond_init(&all[i]->cv, NULL);
    }
    evs_commit aout[2];
    sync_gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    if (one_write) {
        vfs_fault_set_hook(fv, VFS_FAULT_SYNC, gate_hook, &g);
        TC_OK(evs_append_async(s, "z", EVS_EXPECT_ANY, e, 1, NULL, z.out, &z.res, async_done, &z)); /* position 2 */
        gate_wait_arrived(&g, 1); /* held: a, b and c queue behind it and form one group */
        TC_OK(evs_append_async(s, "a", EVS_EXPECT_ANY, e, 2, NULL, aout, &a.res, async_done, &a));
        TC_OK(evs_append_async(s, "b", EVS_EXPECT_ANY, e, 1, NULL, b.out, &b.res, async_done, &b));
        TC_OK(evs_append_async(s, "c", EVS_EXPECT_ANY, e, 1, NULL, c.out, &c.res, async_done, &c));
        gate_allow(&g, UINT64_MAX);
        for (int i = 0; i < 4; i++) async_wait(all[i], "append");
        vfs_fault_set_hook(fv, VFS_FAULT_SYNC, NULL, NULL);
        TC_ASSERT(z.rc == 0 && a.rc == 0 && b.rc == 0 && c.rc == 0, "appends: %s %s %s %s", evs_errname(z.rc),
                  evs_errname(a.rc), evs_errname(b.rc), evs_errname(c.rc));
        TC_ASSERT(aout[0].time_us == b.out[0].time_us && b.out[0].time_us == c.out[0].time_us,
                  "a, b and c were meant to be one group commit (one write, one time)");
    } else {
        TC_OK(evs_append(s, "z", EVS_EXPECT_ANY, e, 1, NULL, NULL));
        TC_OK(evs_append(s, "a", EVS_EXPECT_ANY, e, 2, aout, NULL));
        TC_OK(evs_append(s, "b", EVS_EXPECT_ANY, e, 1, b.out, NULL));
        TC_OK(evs_append(s, "c", EVS_EXPECT_ANY, e, 1, c.out, NULL));
        TC_ASSERT(aout[0].time_us != b.out[0].time_us && b.out[0].time_us != c.out[0].time_us,
                  "three separate writes must carry three commit times");
    }
    TC_ASSERT(aout[0].position == 3 && c.out[0].position == 6, "positions %" PRIu64 "..%" PRIu64, aout[0].position,
              c.out[0].position);
    TC_OK(evs_close(s));
    vfs_fault_free(fv);
    tc_remove_idx(dir);
    tc_names segs = tc_list(dir, ".seg");
    TC_ASSERT(segs.n == 1, "one segment expected, got %zu", segs.n);
    tc_seg sg = tc_walk(dir, segs.v[0]);
    size_t k = 0;
    while (k < sg.n && sg.r[k].position != 3) k++;
    TC_ASSERT(k < sg.n, "record of position 3 not found");
    uint64_t from = (sg.r[k].off / 512 + 1) * 512, end = sg.r[k].off + sg.r[k].size;
    uint64_t to = from + 512 < end ? from + 512 : end;
    TC_ASSERT(from < end, "the first record of the group should cross a 512-byte boundary");
    char path[4096];
    tc_path(path, sizeof path, dir, segs.v[0]);
    static const char zeros[512];
    int fd = open(path, O_WRONLY);
    TC_ASSERT(fd >= 0 && pwrite(fd, zeros, (size_t)(to - from), (off_t)from) == (ssize_t)(to - from), "damaging %s",
              path);
    close(fd);
    tc_seg_free(&sg);
    tc_names_free(&segs);
    o.vfs = NULL;
    s = NULL;
    int rc = evs_open(dir, &o, &s);
    if (one_write) {
        TC_ASSERT(rc == 0, "open after a torn group write: %s (the group was never acknowledged: a torn tail)", evs_errname(rc));
        TC_ASSERT(evs_position(s) == 2, "the log should end before the torn group, at 2; it ends at %" PRIu64, evs_position(s));
        TC_OK(evs_close(s));
        tc_verify_clean(dir, NULL);
    } else {
        TC_ASSERT(rc == EVS_ECORRUPT, "open with damage followed by later writes: expected corrupt, got %s", evs_errname(rc));
        evs_close(s);
    }
    for (int i = 0; i < 4; i++) {
        pthread_mutex_destroy(&all[i]->mu);
        pthread_cond_destroy(&all[i]->cv);
    }
    evs_test_rmtree(dir);
}

static void test_torn_group_write_is_a_torn_tail(void **state)
{
    (void)state;
    torn_group_case(1);
    torn_group_case(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault_matrix),
        cmocka_unit_test(test_fault_double_and_persistent),
        cmocka_unit_test(test_recovery_faults),
        cmocka_unit_test(test_recovery_faults_rebuild),
        cmocka_unit_test(test_append_after_half_created_segment),
        cmocka_unit_test(test_fault_pwrite_never_swallowed),
        cmocka_unit_test(test_failed_writer_open_hides_nothing),
        cmocka_unit_test(test_refusal_waits_for_durability),
        cmocka_unit_test(test_torn_group_write_is_a_torn_tail),
    };
    evs_test_seed();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
