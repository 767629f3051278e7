/*
 * test_store_checkpoint.c — index checkpoints. With a small
 * checkpoint_interval, 10,000 events in 300 streams:
 *   - checkpoints happen while appending (not only at close), a clean
 *     close covers everything, and a reopen replays nothing;
 *   - a writer process killed with SIGKILL after 4,000 events leaves a
 *     checkpoint near the end: the next open replays only the short tail
 *     (evs_stats.index_checkpoint_position) and every read is right.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "evstore.h"
#include "store_fixtures.h"
#include "testutil.h"

enum { NSTREAM = 300, TARGET = 10000, CRASH_TARGET = 4000, INTERVAL = 100 };

/* How far the checkpoint may lag the log: the index thread may still be
 * writing EVS_CKPT_MAX_PENDING (2) frozen intervals while a third fills (and
 * the writer waits to freeze it); each interval can overshoot by one batch
 * (at most 10 events here). */
#define LAG (3 * (INTERVAL + 10))

/* The workload, a pure function of the seed: batches of 1..10 events to
 * random streams; event p of stream s at version v has data {"p":p,"v":v}. */
typedef struct workload {
    uint64_t rs;                 /* PRNG state */
    uint64_t target;             /* events in all */
    uint64_t n;                  /* events planned so far */
    uint64_t version[NSTREAM];   /* versions so far */
    size_t k;                    /* events in the current batch */
    char names[10][16];
    char data[10][48];
    evs_event_in ev[10];
} workload;

static void wl_init(workload *w, uint64_t seed, uint64_t target)
{
    memset(w, 0, sizeof *w);
    w->rs = seed;
    w->target = target;
}

/* Plan the next batch into w->ev[0..k); returns 0 when the target is reached. */
static int wl_next(workload *w)
{
    if (w->n >= w->target) return 0;
    size_t k = (size_t)evs_test_rand_range(&w->rs, 1, 10);
    if (w->n + k > w->target) k = w->target - w->n;
    for (size_t i = 0; i < k; i++) {
        unsigned sn = (unsigned)evs_test_rand_range(&w->rs, 0, NSTREAM - 1);
        snprintf(w->names[i], sizeof w->names[i], "ck/%03u", sn);
        snprintf(w->data[i], sizeof w->data[i], "{\"p\":%" PRIu64 ",\"v\":%" PRIu64 "}", w->n + 1 + i,
                 ++w->version[sn]);
        w->ev[i] = fx_ev("Ck", w->data[i]);
        w->ev[i].stream = w->names[i];
    }
    w->k = k;
    w->n += k;
    return 1;
}

/* Every read agrees with the plan: the global log, each stream's version and its ends. */
static void check_against_plan(evs_store *s, const workload *w)
{
    const uint64_t target = w->target;
    assert_int_equal(evs_position(s), target);
    evs_read_options ro;
    evs_read_options_init(&ro);
    evs_iter *it = NULL;
    assert_int_equal(evs_iter_open(s, &ro, &it), 0);
    for (uint64_t p = 1; p <= target; p++) {
        const evs_event *ev = NULL;
        assert_int_equal(evs_iter_next(it, &ev), 0);
        assert_non_null(ev);
        assert_int_equal(ev->position, p);
        char want[48];
        snprintf(want, sizeof want, "{\"p\":%" PRIu64 ",\"v\":%" PRIu64 "}", p, ev->version);
        assert_string_equal(ev->data, want);
    }
    evs_iter_close(it);
    for (unsigned sn = 0; sn < NSTREAM; sn++) {
        char name[16];
        snprintf(name, sizeof name, "ck/%03u", sn);
        uint64_t v = 0;
        assert_int_equal(evs_stream_version(s, name, &v), 0);
        assert_int_equal(v, w->version[sn]);
        if (v == 0) continue;
        for (int back = 0; back < 2; back++) {
            evs_read_options_init(&ro);
            ro.stream = name;
            ro.backward = back;
            ro.limit = 2;
            assert_int_equal(evs_iter_open(s, &ro, &it), 0);
            const evs_event *ev = NULL;
            assert_int_equal(evs_iter_next(it, &ev), 0);
            assert_non_null(ev);
            assert_int_equal(ev->version, back ? v : 1);
            evs_iter_close(it);
        }
    }
    evs_stats st;
    assert_int_equal(evs_stat(s, &st), 0);
    assert_int_equal(st.events, target);
    uint64_t live = 0;
    for (unsigned sn = 0; sn < NSTREAM; sn++) live += w->version[sn] > 0;
    assert_int_equal(st.streams, live);
}

static void test_checkpoints_clean_close(void **state)
{
    fx *f = *state;
    f->opt.sync = EVS_SYNC_NEVER;
    f->opt.checkpoint_interval = INTERVAL;
    fx_open(f);
    workload *w = malloc(sizeof *w);
    assert_non_null(w);
    wl_init(w, evs_test_seed() ^ 0xc4e7, TARGET);
    uint64_t ckpt_at_1000 = UINT64_MAX;
    while (wl_next(w)) {
        assert_int_equal(evs_append_multi(f->s, w->ev, w->k, NULL, NULL, NULL), 0);
        if (w->n > 1000 && ckpt_at_1000 == UINT64_MAX) {
            evs_stats st;
            assert_int_equal(evs_stat(f->s, &st), 0);
            ckpt_at_1000 = st.index_checkpoint_position;
        }
    }
    /* checkpoints happened while appending, every ~INTERVAL events (the
     * index thread may still be writing the latest ones) */
    if (ckpt_at_1000 < 1000 - LAG || ckpt_at_1000 > 1010)
        fail_msg("checkpoint at %" PRIu64 " after 1000 events", ckpt_at_1000);
    evs_stats st;
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_true(st.index_checkpoint_position + LAG >= TARGET);
    char *before = fx_snapshot(f->s);
    fx_reopen(f);
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_int_equal(st.index_checkpoint_position, TARGET);
    assert_false(fx_log_has(&f->log, "from the log tail"));
    check_against_plan(f->s, w);
    char *after = fx_snapshot(f->s);
    assert_string_equal(before, after);
    free(before);
    free(after);
    free(w);
    fx_close(f);
    assert_int_equal(fx_verify(f->dir), 0);
}

/* Child: append the workload, report, end without evs_close. */
static void crash_child(const char *dir, uint64_t seed, int report_fd, int hold_fd)
{
    alarm(120);  /* never outlive a broken parent */
    evs_options o;
    evs_options_init(&o);
    o.sync = EVS_SYNC_NEVER;   /* kill -9 loses nothing under any policy */
    o.checkpoint_interval = INTERVAL;
    o.log_level = EVS_LOG_WARN;
    evs_store *s = NULL;
    int rc = evs_open(dir, &o, &s);
    if (rc) { fprintf(stderr, "child: open: %s\n", evs_errname(rc)); _exit(2); }
    workload *w = malloc(sizeof *w);
    if (!w) _exit(3);
    wl_init(w, seed, CRASH_TARGET);
    while (wl_next(w)) {
        rc = evs_append_multi(s, w->ev, w->k, NULL, NULL, NULL);
        if (rc) { fprintf(stderr, "child: append: %s\n", evs_errname(rc)); _exit(4); }
    }
    char done = 'd';
    if (write(report_fd, &done, 1) != 1) _exit(5);
    /* wait for the parent's SIGKILL: the store is never closed */
    char never;
    for (;;)
        if (read(hold_fd, &never, 1) <= 0 && errno != EINTR) break;
    _exit(6);
}

static void test_checkpoint_after_crash(void **state)
{
    fx *f = *state;
    uint64_t seed = evs_test_seed() ^ 0xdead;
    int done[2], hold[2];
    assert_int_equal(pipe(done), 0);
    assert_int_equal(pipe(hold), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(done[0]);
        close(hold[1]);
        /* done[1] reports; reading hold[0] blocks until the parent kills us */
        crash_child(f->dir, seed, done[1], hold[0]);
    }
    close(done[1]);
    close(hold[0]);
    char c = 0;
    ssize_t got;
    do got = read(done[0], &c, 1); while (got < 0 && errno == EINTR);
    kill(pid, SIGKILL);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(done[0]);
    close(hold[1]);
    if (got != 1 || c != 'd')
        fail_msg("child did not finish its appends (exit status %d, signal %d)",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    workload *w = malloc(sizeof *w);
    assert_non_null(w);
    wl_init(w, seed, CRASH_TARGET);
    while (wl_next(w)) {}
    f->opt.checkpoint_interval = INTERVAL;
    fx_open(f);
    evs_stats st;
    assert_int_equal(evs_stat(f->s, &st), 0);
    /* the open replayed only the tail after the last checkpoint */
    if (st.index_checkpoint_position + LAG < CRASH_TARGET || st.index_checkpoint_position > CRASH_TARGET)
        fail_msg("after the crash the indexes cover %" PRIu64 " of %d events", st.index_checkpoint_position, CRASH_TARGET);
    assert_int_equal(st.recovered_truncated_bytes, 0);
    if (st.index_checkpoint_position < CRASH_TARGET) assert_true(fx_log_has(&f->log, "from the log tail"));
    check_against_plan(f->s, w);
    char *before = fx_snapshot(f->s);
    fx_reopen(f);
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_int_equal(st.index_checkpoint_position, CRASH_TARGET);
    char *after = fx_snapshot(f->s);
    assert_string_equal(before, after);
    free(before);
    free(after);
    free(w);
    fx_close(f);
    assert_int_equal(fx_verify(f->dir), 0);
}

int main(void)
{
    fx_main_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_checkpoints_clean_close, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_after_crash, fx_setup_closed, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
