/*
 * test_index_thread.c — the index thread (src/store/indexer.c): the writer
 * only freezes the indexes; runs, manifests, streams.idx and checkpoint.idx
 * are written in the background. These tests hold or fail the index
 * thread's I/O at chosen calls (tests/support/vfs_gate.c) and check:
 *  - readers racing background flushes see every committed event: gets by
 *    id and position, stream reads, stream versions, and idempotent replays
 *    of acknowledged appends (the writer's id lookups), over many seeds and
 *    checkpoint intervals;
 *  - while a flush is held, lookups find events in the frozen tables; the
 *    writer freezes once more, then waits (the backlog bound), and no
 *    checkpoint is claimed before its files are durable;
 *  - evs_close while a flush is held waits for it and checkpoints everything;
 *  - an I/O error in any step of a background flush fail-stops the store:
 *    reads keep working, appends return EVS_EFATAL, close reports it, and a
 *    reopen finds every acknowledged event;
 *  - a power cut (vfs_mem) while a flush is held at each step, in each crash
 *    mode: the reopened store has every acknowledged append, whole, and its
 *    indexes agree with the log.
 * Every store is checked with the crash tests' model checker
 * (test_crash_common.h) and evs_verify.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/stat.h>

#include "test_crash_common.h"
#include "vfs_gate.h"
#include "vfs_mem.h"

#define HOLD_MS 60000  /* generous: how long a test waits for the index thread to reach a call */

/* Where the index thread can be held or failed: one call of each step of a job. */
typedef struct gate_point {
    vfs_gate_op op;
    const char *match;
    const char *what;         /* evs_failure() names this step (NULL: the writer does such calls too) */
} gate_point;

static const gate_point points[] = {
    {VFS_GATE_SYNC, ".offsets.idx", NULL},  /* also synced by the writer when it seals a segment */
    {VFS_GATE_PWRITE, "/streams.idx", "saving the stream table"},
    {VFS_GATE_SYNC, "/streams.idx", "saving the stream table"},
    {VFS_GATE_PWRITE, "/ids-", "checkpointing the id index"},
    {VFS_GATE_SYNC, "/ids-", "checkpointing the id index"},
    {VFS_GATE_RENAME, "/ids-", "checkpointing the id index"},
    {VFS_GATE_RENAME, "/ids.manifest.idx", "checkpointing the id index"},
    {VFS_GATE_SYNC, "/streams-", "checkpointing the stream index"},
    {VFS_GATE_RENAME, "/streams.manifest.idx", "checkpointing the stream index"},
    {VFS_GATE_SYNC, "/checkpoint.idx", "writing checkpoint.idx"},
    {VFS_GATE_RENAME, "/checkpoint.idx", "writing checkpoint.idx"},
};
#define NPOINTS (sizeof points / sizeof points[0])
static const char *const op_names[] = {"open", "pwrite", "sync", "rename", "sync_dir"};

/* ------------------------------------------------------------------------ */
/* readers racing background flushes                                        */
/* ------------------------------------------------------------------------ */

#define NREADERS 3

typedef struct race {
    evs_store *s;
    tc_work *w;
    _Atomic size_t acked;         /* batches [0, acked) are acknowledged */
    atomic_int done;              /* the appender finished */
    atomic_int errors;            /* wrong answers seen */
    atomic_long lookups, replays; /* checks made */
    pthread_mutex_t mu;           /* msg */
    char msg[256];                /* the first wrong answer */
    uint64_t *pos;                /* [event index] position acknowledged (written before acked moves) */
} race;

static void race_fail(race *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void race_fail(race *r, const char *fmt, ...)
{
    pthread_mutex_lock(&r->mu);
    if (atomic_fetch_add(&r->errors, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->msg, sizeof r->msg, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&r->mu);
}

static void *race_appender(void *arg)
{
    race *r = arg;
    for (size_t bi = 0; bi < r->w->nb; bi++) {
        evs_append_result res;
        int rc = tc_append(r->s, r->w, bi, &res);
        if (rc) {
            race_fail(r, "append of batch %zu: %s (%s)", bi, evs_errname(rc), res.message);
            break;
        }
        for (size_t i = 0; i < r->w->b[bi].n; i++) r->pos[r->w->b[bi].first + i] = res.first_position + i;
        atomic_store_explicit(&r->acked, bi + 1, memory_order_release);
    }
    atomic_store(&r->done, 1);
    return NULL;
}

/* One acknowledged event, every way a reader can find it. */
static void race_check_event(race *r, size_t k, uint64_t pos)
{
    const tc_event *e = &r->w->ev[k];
    evs_event *ev = NULL;
    int rc = evs_get(r->s, e->id, &ev);
    if (rc || ev->position != pos) {
        race_fail(r, "get by id of the event at %" PRIu64 ": %s, position %" PRIu64, pos, evs_errname(rc),
                  ev ? ev->position : 0);
        evs_free(ev);
        return;
    }
    uint64_t version = ev->version;
    evs_free(ev);
    ev = NULL;
    if ((rc = evs_get_at(r->s, pos, &ev)) != 0 || memcmp(ev->id, e->id, 16) != 0)
        race_fail(r, "get at %" PRIu64 ": %s", pos, evs_errname(rc));
    evs_free(ev);
    const char *stream = tc_stream_names[e->stream];
    uint64_t cur = 0;
    if ((rc = evs_stream_version(r->s, stream, &cur)) != 0 || cur < version)
        race_fail(r, "stream %s at version %" PRIu64 ", but version %" PRIu64 " is committed", stream, cur, version);
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.stream = stream;
    ro.from = version;
    ro.limit = 2;
    ro.backward = (int)(k & 1);
    evs_iter *it = NULL;
    const evs_event *sev = NULL;
    if ((rc = evs_iter_open(r->s, &ro, &it)) != 0 || (rc = evs_iter_next(it, &sev)) != 0 || !sev ||
        sev->version != version || sev->position != pos)
        race_fail(r, "stream %s read from version %" PRIu64 ": %s, %s", stream, version, evs_errname(rc),
                  sev ? "another event" : "nothing");
    evs_iter_close(it);
    atomic_fetch_add(&r->lookups, 1);
}

/* An acknowledged batch appended again: the writer must find its ids (in a
 * memtable, a frozen table or a run) and answer with the original result. */
static void race_replay(race *r, size_t bi)
{
    const tc_batch *b = &r->w->b[bi];
    evs_event_in in[TC_MAX_BATCH];
    evs_commit out[TC_MAX_BATCH];
    evs_append_result res;
    memset(in, 0, sizeof in);
    memset(&res, 0, sizeof res);
    for (size_t i = 0; i < b->n; i++) {
        const tc_event *e = &r->w->ev[b->first + i];
        in[i].stream = tc_stream_names[e->stream];
        in[i].expected_version = EVS_EXPECT_ANY;
        in[i].type = tc_type_names[e->type];
        in[i].data = e->data;
        in[i].data_len = e->data_len;
        in[i].metadata = e->meta;
        in[i].metadata_len = e->meta_len;
        in[i].id = e->id;
    }
    int rc = b->multi ? evs_append_multi(r->s, in, b->n, NULL, out, &res)
                      : evs_append(r->s, in[0].stream, EVS_EXPECT_ANY, in, b->n, out, &res);
    if (rc || !res.replayed || res.first_position != r->pos[b->first])
        race_fail(r, "replay of batch %zu (at %" PRIu64 "): %s, replayed %d, position %" PRIu64 " (%s)", bi,
                  r->pos[b->first], evs_errname(rc), res.replayed, res.first_position, res.message);
    atomic_fetch_add(&r->replays, 1);
}

typedef struct reader_arg { race *r; uint64_t seed; int id; } reader_arg;

static void *race_reader(void *arg)
{
    reader_arg *a = arg;
    race *r = a->r;
    uint64_t rng = a->seed;
    for (long it = 0; !atomic_load(&r->done) || it < 50; it++) {
        size_t acked = atomic_load_explicit(&r->acked, memory_order_acquire);
        if (acked == 0) {
            sched_yield();
            continue;
        }
        /* mostly the newest batches: they sit in the memtables being frozen and flushed */
        size_t lo = acked > 40 && evs_test_rand(&rng) % 4 ? acked - 40 : 0;
        size_t bi = (size_t)evs_test_rand_range(&rng, lo, acked - 1);
        if (a->id == 0 && it % 8 == 0) {
            race_replay(r, bi);
        } else {
            const tc_batch *b = &r->w->b[bi];
            for (size_t i = 0; i < b->n; i++) race_check_event(r, b->first + i, r->pos[b->first + i]);
        }
        if (atomic_load(&r->errors)) break;
    }
    return NULL;
}

static void race_round(uint64_t seed, evs_sync_mode sync, uint64_t interval, size_t nbatches)
{
    char dir[512];
    TC_OK(tc_tmpdir(dir, sizeof dir));
    tc_work w;
    tc_work_init(&w, seed, 6, 5, 5);
    for (size_t i = 0; i < nbatches; i++) tc_work_add(&w);
    race *r = calloc(1, sizeof *r);
    TC_ASSERT(r != NULL, "out of memory");
    pthread_mutex_init(&r->mu, NULL);
    r->w = &w;
    r->pos = calloc(w.nev, sizeof *r->pos);
    evs_options o;
    tc_options(&o, NULL, interval);
    o.sync = sync;
    TC_OK(evs_open(dir, &o, &r->s));
    pthread_t ta, tr[NREADERS];
    reader_arg ra[NREADERS];
    TC_ASSERT(pthread_create(&ta, NULL, race_appender, r) == 0, "pthread_create");
    for (int i = 0; i < NREADERS; i++) {
        ra[i] = (reader_arg){r, seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(i + 1)), i};
        TC_ASSERT(pthread_create(&tr[i], NULL, race_reader, &ra[i]) == 0, "pthread_create");
    }
    pthread_join(ta, NULL);
    for (int i = 0; i < NREADERS; i++) pthread_join(tr[i], NULL);
    TC_ASSERT(atomic_load(&r->errors) == 0, "%d wrong answers while the index thread flushed; first: %s",
              atomic_load(&r->errors), r->msg);
    evs_stats st;
    TC_OK(evs_stat(r->s, &st));
    TC_ASSERT(st.index_checkpoint_position > 0, "no checkpoint completed in %" PRIu64 " events (interval %" PRIu64 ")",
              st.events, interval);
    TC_OK(evs_close(r->s));
    /* reopen: everything, with nothing left to replay beyond the last freeze */
    TC_OK(evs_open(dir, &o, &r->s));
    tc_found f;
    tc_check(r->s, &w, &f);
    TC_ASSERT(tc_expect_prefix(&w, &f) == w.nb, "not every acknowledged batch is there after reopen");
    tc_found_free(&f);
    TC_OK(evs_stat(r->s, &st));
    TC_ASSERT(st.index_checkpoint_position == st.events, "close left positions %" PRIu64 "..%" PRIu64 " unindexed",
              st.index_checkpoint_position + 1, st.events);
    tc_append_more(r->s, &w);
    TC_OK(evs_close(r->s));
    tc_verify_clean(dir, NULL);
    fprintf(stderr, "  seed %" PRIu64 ", %s, interval %" PRIu64 ": %zu events, %ld lookups and %ld replays "
            "during flushes\n", seed, sync == EVS_SYNC_ALWAYS ? "always" : "never", interval, w.nev,
            atomic_load(&r->lookups), atomic_load(&r->replays));
    pthread_mutex_destroy(&r->mu);
    free(r->pos);
    free(r);
    tc_work_free(&w);
    evs_test_rmtree(dir);
}

static void test_reads_race_background_flushes(void **state)
{
    (void)state;
    uint64_t rng = evs_test_seed() ^ 0x1d3aull;
    unsigned rounds = 8 * tc_scale();
    for (unsigned i = 0; i < rounds; i++) {
        uint64_t seed = evs_test_rand(&rng), interval = evs_test_rand_range(&rng, 3, 60);
        evs_sync_mode sync = i % 2 ? EVS_SYNC_ALWAYS : EVS_SYNC_NEVER;
        tc_setctx("readers racing flushes: round %u, seed %" PRIu64 ", interval %" PRIu64, i, seed, interval);
        race_round(seed, sync, interval, 400);
    }
}

/* ------------------------------------------------------------------------ */
/* a held flush: frozen tables, the backlog bound, close                     */
/* ------------------------------------------------------------------------ */

enum { HELD_INTERVAL = 20 };

typedef struct appender { evs_store *s; tc_work *w; size_t from, to; int failed; int rc; } appender;

static void *appender_main(void *arg)
{
    appender *a = arg;
    for (size_t bi = a->from; bi < a->to && !a->failed; bi++) {
        int rc = tc_append(a->s, a->w, bi, NULL);
        if (rc) {
            a->failed = 1;
            a->rc = rc;
        }
    }
    return NULL;
}

/* Single-event batches, so that freezes fall at multiples of the interval. */
static void single_event_work(tc_work *w, uint64_t seed, size_t n)
{
    tc_work_init(w, seed, 5, 1, 0);
    for (size_t i = 0; i < n; i++) tc_work_add(w);
}

static void test_lookups_and_backlog_while_flush_held(void **state)
{
    (void)state;
    const uint64_t I = HELD_INTERVAL;
    for (size_t pi = 0; pi < NPOINTS; pi++) {
        char dir[512];
        TC_OK(tc_tmpdir(dir, sizeof dir));
        tc_setctx("flush held at %s of %s", op_names[points[pi].op], points[pi].match);
        evs_vfs *gv = vfs_gate_new(NULL);
        vfs_gate_arm(gv, points[pi].op, points[pi].match, 1, 0);
        tc_work w;
        single_event_work(&w, evs_test_seed() + pi, 5 * I);
        evs_options o;
        tc_options(&o, gv, I);
        o.sync = EVS_SYNC_NEVER;
        evs_store *s = NULL;
        TC_OK(evs_open(dir, &o, &s));
        appender a = {s, &w, 0, w.nb, 0, 0};
        pthread_t t;
        TC_ASSERT(pthread_create(&t, NULL, appender_main, &a) == 0, "pthread_create");
        TC_ASSERT(vfs_gate_wait_hit(gv, HOLD_MS) == 0, "the index thread never reached the call");
        /* the first job is held: the writer freezes a second time at 2I, then
         * waits at 3I with two checkpoints pending; the appender blocks */
        uint64_t now = 0;
        TC_OK(evs_wait(s, 3 * I, HOLD_MS, &now));
        int rc = evs_wait(s, 3 * I + 1, 300, &now);
        TC_ASSERT(rc == EVS_ETIMEDOUT && now == 3 * I,
                  "with two checkpoints pending the writer went on to position %" PRIu64 " (%s)", now, evs_errname(rc));
        evs_stats st;
        TC_OK(evs_stat(s, &st));
        TC_ASSERT(st.index_checkpoint_position == 0, "checkpoint.idx claims %" PRIu64 " while its first job is held",
                  st.index_checkpoint_position);
        /* every committed event is found: in the frozen tables of both jobs and the live one */
        tc_found f;
        tc_check(s, &w, &f);
        TC_ASSERT(f.position == 3 * I, "position %" PRIu64, f.position);
        tc_found_free(&f);
        vfs_gate_release(gv);
        pthread_join(t, NULL);
        TC_ASSERT(!a.failed, "append failed after the release: %s", evs_errname(a.rc));
        TC_OK(evs_close(s));
        TC_OK(evs_open(dir, &o, &s));
        TC_OK(evs_stat(s, &st));
        TC_ASSERT(st.index_checkpoint_position == w.nev, "reopen: checkpoint at %" PRIu64 " of %zu",
                  st.index_checkpoint_position, w.nev);
        tc_check(s, &w, &f);
        TC_ASSERT(tc_expect_prefix(&w, &f) == w.nb, "batches missing after reopen");
        tc_found_free(&f);
        TC_OK(evs_close(s));
        tc_verify_clean(dir, gv);
        vfs_gate_free(gv);
        tc_work_free(&w);
        evs_test_rmtree(dir);
    }
}

typedef struct closer { evs_store *s; atomic_int entered; int rc; } closer;

static void *closer_main(void *arg)
{
    closer *c = arg;
    atomic_store(&c->entered, 1);
    c->rc = evs_close(c->s);
    return NULL;
}

static void test_close_while_flush_held(void **state)
{
    (void)state;
    const uint64_t I = HELD_INTERVAL;
    for (size_t pi = 0; pi < NPOINTS; pi++) {
        char dir[512];
        TC_OK(tc_tmpdir(dir, sizeof dir));
        tc_setctx("close while the flush is held at %s of %s", op_names[points[pi].op], points[pi].match);
        evs_vfs *gv = vfs_gate_new(NULL);
        vfs_gate_arm(gv, points[pi].op, points[pi].match, 1, 0);
        tc_work w;
        single_event_work(&w, evs_test_seed() ^ (pi * 77), 2 * I + 5);
        evs_options o;
        tc_options(&o, gv, I);
        evs_store *s = NULL;
        TC_OK(evs_open(dir, &o, &s));
        for (size_t bi = 0; bi < w.nb; bi++) TC_OK(tc_append(s, &w, bi, NULL));
        TC_ASSERT(vfs_gate_wait_hit(gv, HOLD_MS) == 0, "the index thread never reached the call");
        closer c = {s, 0, -1};
        pthread_t t;
        TC_ASSERT(pthread_create(&t, NULL, closer_main, &c) == 0, "pthread_create");
        while (!atomic_load(&c.entered)) sched_yield();
        vfs_gate_release(gv);
        pthread_join(t, NULL);
        TC_ASSERT(c.rc == 0, "close with a flush in progress: %s", evs_errname(c.rc));
        tc_log_clear();
        TC_OK(evs_open(dir, &o, &s));
        evs_stats st;
        TC_OK(evs_stat(s, &st));
        TC_ASSERT(st.index_checkpoint_position == w.nev, "close checkpointed %" PRIu64 " of %zu",
                  st.index_checkpoint_position, w.nev);
        tc_found f;
        tc_check(s, &w, &f);
        TC_ASSERT(tc_expect_prefix(&w, &f) == w.nb, "batches missing after reopen");
        tc_found_free(&f);
        TC_OK(evs_close(s));
        tc_verify_clean(dir, NULL);
        vfs_gate_free(gv);
        tc_work_free(&w);
        evs_test_rmtree(dir);
    }
}

/* ------------------------------------------------------------------------ */
/* an I/O error in the background flush                                     */
/* ------------------------------------------------------------------------ */

static void test_fault_in_background_flush(void **state)
{
    (void)state;
    uint64_t rng = evs_test_seed() ^ 0xfa17ull;
    unsigned rounds = 2 * tc_scale();
    for (size_t pi = 0; pi < NPOINTS; pi++)
        for (unsigned k = 0; k < rounds; k++) {
            char dir[512];
            TC_OK(tc_tmpdir(dir, sizeof dir));
            uint64_t nth = evs_test_rand_range(&rng, 1, 3);
            int err = k % 2 ? ENOSPC : EIO;
            tc_setctx("%s at call %" PRIu64 " of %s on %s", err == EIO ? "EIO" : "ENOSPC", nth,
                      op_names[points[pi].op], points[pi].match);
            evs_vfs *gv = vfs_gate_new(NULL);
            tc_work w;
            tc_work_init(&w, evs_test_rand(&rng), 5, 4, 5);
            evs_options o;
            tc_options(&o, gv, 10);
            evs_store *s = NULL;
            TC_OK(evs_open(dir, &o, &s));
            vfs_gate_arm(gv, points[pi].op, points[pi].match, nth, err);
            int failed = 0;
            for (size_t n = 0; n < 200 && !failed; n++) {
                size_t bi = tc_work_add(&w);
                int rc = tc_append(s, &w, bi, NULL);
                if (rc) {
                    TC_ASSERT(rc == EVS_EFATAL, "append after the fault: %s", evs_errname(rc));
                    failed = 1;
                }
            }
            TC_ASSERT(vfs_gate_hit(gv), "the fault was never reached");
            /* the failure may land after the last append: evs_wait ends when the store fails */
            uint64_t now = 0;
            int rc = evs_wait(s, UINT64_MAX, HOLD_MS, &now);
            TC_ASSERT(rc == EVS_ECLOSED, "evs_wait on a store whose index thread failed: %s", evs_errname(rc));
            const char *why = evs_failure(s);
            TC_ASSERT(why && (!points[pi].what || strstr(why, points[pi].what)), "evs_failure: %s (want %s)",
                      why ? why : "(none)", points[pi].what ? points[pi].what : "any");
            /* reads go on from the tables still in memory */
            tc_found f;
            tc_check(s, &w, &f);
            tc_expect_prefix(&w, &f);
            tc_found_free(&f);
            evs_event_in in;
            memset(&in, 0, sizeof in);
            in.type = "Late";
            TC_ASSERT(evs_append(s, "late", EVS_EXPECT_ANY, &in, 1, NULL, NULL) == EVS_EFATAL, "append to a failed store");
            rc = evs_close(s);
            TC_ASSERT(rc == EVS_EFATAL, "close of a failed store: %s", evs_errname(rc));
            vfs_gate_free(gv);
            tc_options(&o, NULL, 10);
            TC_OK(evs_open(dir, &o, &s));  /* the posix vfs */
            tc_check(s, &w, &f);
            size_t present = tc_expect_prefix(&w, &f);
            size_t acked = 0;
            while (acked < w.nb && w.status[acked] == TC_ACKED) acked++;
            TC_ASSERT(present >= acked, "acknowledged batches lost");
            tc_found_free(&f);
            tc_append_more(s, &w);
            TC_OK(evs_close(s));
            tc_verify_clean(dir, NULL);
            tc_work_free(&w);
            evs_test_rmtree(dir);
        }
}

/* ------------------------------------------------------------------------ */
/* a power cut while a background flush is held                              */
/* ------------------------------------------------------------------------ */

static const char *const mode_names[3] = {"torn", "drop-all", "apply-all"};

static void test_power_cut_during_background_flush(void **state)
{
    (void)state;
    uint64_t rng = evs_test_seed() ^ 0xc0deull;
    unsigned seeds = tc_scale();
    for (size_t pi = 0; pi < NPOINTS; pi++)
        for (int mode = 0; mode < 3; mode++)
            for (unsigned k = 0; k < seeds; k++) {
                uint64_t seed = evs_test_rand(&rng), nth = evs_test_rand_range(&rng, 1, 3);
                tc_setctx("power cut while the flush is held at call %" PRIu64 " of %s on %s, %s, seed %" PRIu64,
                          nth, op_names[points[pi].op], points[pi].match, mode_names[mode], seed);
                evs_vfs *mem = vfs_mem_new();
                vfs_mem_set_seed(mem, seed);
                vfs_mem_set_crash_mode(mem, (vfs_mem_crash_mode)mode);
                TC_OK(mem->mkdir(mem, "/db"));
                TC_OK(mem->sync_dir(mem, "/"));
                evs_vfs *gv = vfs_gate_new(mem);
                tc_work w;
                tc_work_init(&w, seed, 5, 4, 5);
                for (int i = 0; i < 120; i++) tc_work_add(&w);
                evs_options o;
                tc_options(&o, gv, 10);
                evs_store *s = NULL;
                TC_OK(evs_open("/db", &o, &s));
                vfs_gate_arm(gv, points[pi].op, points[pi].match, nth, 0);
                appender a = {s, &w, 0, w.nb, 0, 0};
                pthread_t t;
                TC_ASSERT(pthread_create(&t, NULL, appender_main, &a) == 0, "pthread_create");
                TC_ASSERT(vfs_gate_wait_hit(gv, HOLD_MS) == 0, "the index thread never reached the call");
                vfs_mem_crash_now(mem);  /* the appender may be mid-write: fine */
                vfs_gate_release(gv);
                pthread_join(t, NULL);
                TC_ASSERT(a.failed, "appends went on after the power cut");
                evs_close(s);
                TC_OK(vfs_mem_restart(mem));
                tc_options(&o, mem, 10);
                TC_OK(evs_open("/db", &o, &s));
                tc_found f;
                tc_check(s, &w, &f);
                size_t present = tc_expect_prefix(&w, &f);
                size_t acked = 0;
                while (acked < w.nb && w.status[acked] == TC_ACKED) acked++;
                TC_ASSERT(present >= acked, "%zu acknowledged batches, %zu present after the cut", acked, present);
                tc_found_free(&f);
                tc_append_more(s, &w);
                TC_OK(evs_close(s));
                tc_verify_clean("/db", mem);
                TC_ASSERT(vfs_mem_open_files(mem) == 0, "file handles leaked");
                vfs_gate_free(gv);
                vfs_mem_free(mem);
                tc_work_free(&w);
            }
}

/* ------------------------------------------------------------------------ */
/* a follower opening while the stream table is rewritten                   */
/* ------------------------------------------------------------------------ */

#define RW_STREAMS 800   /* streams per batch (each gets one event); also the interval */
#define RW_NAME 200      /* bytes of each name: the table file grows 180 KB a checkpoint */

/* Has the stream table just been rewritten? Either streams.idx got shorter
 * (a rewrite in place) or a stream table file of a new generation
 * ("streams.<20 digits>.idx") appeared. */
static int table_rewritten(const char *dir, uint64_t *last_size, char *last_gen, size_t cap)
{
    char path[1024], gen[256] = "";
    struct stat sb;
    snprintf(path, sizeof path, "%s/streams.idx", dir);
    uint64_t size = stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    DIR *d = opendir(dir);
    TC_ASSERT(d != NULL, "opendir %s", dir);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strlen(e->d_name) == 32 && !strncmp(e->d_name, "streams.", 8) && strcmp(e->d_name, gen) > 0)
            snprintf(gen, sizeof gen, "%s", e->d_name);
    closedir(d);
    int rewritten = (size && size < *last_size) || strcmp(gen, last_gen) != 0;
    *last_size = size;
    snprintf(last_gen, cap, "%s", gen);
    return rewritten;
}

/*
 * Open finding 10 of docs/RELIABILITY.md: the writer's index thread rewrites
 * the stream table once its file has grown past twice the live table; a
 * follower (read-only open, another process in real use) that opens between
 * that rewrite and the checkpoint.idx naming it must still find the table
 * the checkpoint on disk names. Each checkpoint's rename of checkpoint.idx
 * is held while a follower opens; the rounds go on until the table has been
 * rewritten twice.
 */
/* Did the store log a line containing what since the last tc_log_clear? */
static int logged(const char *what)
{
    int found = 0;
    pthread_mutex_lock(&tc_log_mu);
    for (unsigned i = 0; i < tc_log_next && i < TC_LOG_LINES; i++)
        if (strstr(tc_log_ring[i], what)) found = 1;
    pthread_mutex_unlock(&tc_log_mu);
    return found;
}

static void test_follower_open_while_stream_table_rewritten(void **state)
{
    (void)state;
    char dir[512];
    TC_OK(tc_tmpdir(dir, sizeof dir));
    evs_vfs *gv = vfs_gate_new(NULL);
    evs_options o;
    tc_options(&o, gv, RW_STREAMS);
    o.segment_size = 64u << 20;
    o.sync = EVS_SYNC_NEVER;
    evs_store *s = NULL;
    TC_OK(evs_open(dir, &o, &s));
    char (*names)[RW_NAME + 1] = calloc(RW_STREAMS, sizeof *names);
    evs_event_in *ev = calloc(RW_STREAMS, sizeof *ev);
    TC_ASSERT(names && ev, "calloc");
    for (size_t i = 0; i < RW_STREAMS; i++) {
        int n = snprintf(names[i], RW_NAME + 1, "rewrite/%04zu/", i);
        memset(names[i] + n, 'x', RW_NAME - (size_t)n);
        ev[i].stream = names[i];
        ev[i].expected_version = EVS_EXPECT_ANY;
        ev[i].type = "T";
        ev[i].data = "1";
        ev[i].data_len = 1;
    }
    uint64_t last_size = 0;
    char last_gen[256] = "", crash[600];
    int rewrites = 0, round = 0, crash_round = -1;
    snprintf(crash, sizeof crash, "%s.crash", dir);
    for (; round < 60 && rewrites < 2; round++) {
        tc_setctx("round %d (%d rewrites so far)", round, rewrites);
        vfs_gate_arm(gv, VFS_GATE_RENAME, "/checkpoint.idx", 1, 0);
        TC_OK(evs_append_multi(s, ev, RW_STREAMS, NULL, NULL, NULL));
        TC_ASSERT(vfs_gate_wait_hit(gv, HOLD_MS) == 0, "the index thread never reached the rename of checkpoint.idx");
        /* this checkpoint's stream table is written; checkpoint.idx still names the last one */
        int rewritten = table_rewritten(dir, &last_size, last_gen, sizeof last_gen);
        evs_options ro;
        evs_options_init(&ro);
        ro.read_only = 1;
        ro.log = tc_log_fn;
        ro.log_level = EVS_LOG_DEBUG;
        evs_store *f = NULL;
        int rc = evs_open(dir, &ro, &f);
        TC_ASSERT(rc == 0, "round %d: a follower opening while checkpoint.idx is held (after %s) failed: %s", round,
                  rewritten ? "a rewrite of the stream table" : "a chunk appended to the stream table", evs_errname(rc));
        uint64_t v0 = 0, vlast = 0;
        TC_OK(evs_stream_version(f, names[0], &v0));
        TC_OK(evs_stream_version(f, names[RW_STREAMS - 1], &vlast));
        TC_ASSERT(v0 == (uint64_t)round + 1 && vlast == (uint64_t)round + 1,
                  "round %d: the follower sees versions %" PRIu64 " and %" PRIu64 ", expected %d", round, v0, vlast,
                  round + 1);
        TC_ASSERT(evs_position(f) == (uint64_t)(round + 1) * RW_STREAMS, "round %d: the follower is at %" PRIu64,
                  round, evs_position(f));
        TC_OK(evs_close(f));
        if (rewritten && crash_round < 0) {
            tc_copy_dir(dir, crash);  /* what a crash of the writer at this moment leaves */
            crash_round = round;
        }
        vfs_gate_release(gv);
        rewrites += rewritten;
    }
    TC_ASSERT(rewrites == 2, "the stream table was rewritten %d times in %d checkpoints (expected 2)", rewrites, round);
    TC_OK(evs_close(s));
    /* a writer reopening finds one stream table file: the old generations are gone */
    TC_OK(evs_open(dir, &o, &s));
    uint64_t v = 0;
    TC_OK(evs_stream_version(s, names[7], &v));
    TC_ASSERT(v == (uint64_t)round, "after reopen: version %" PRIu64 " of %d", v, round);
    tc_names tables = tc_list(dir, ".idx");
    int ntables = 0;
    for (size_t i = 0; i < tables.n; i++) ntables += !strncmp(tables.v[i], "streams.", 8) && strlen(tables.v[i]) == 32;
    tc_names_free(&tables);
    TC_ASSERT(ntables == 1, "%d stream table files of a rewritten generation, expected 1", ntables);
    /* a full backup carries that generation's table; the restored store opens without a rebuild */
    char archive[600], restored[600];
    snprintf(archive, sizeof archive, "%s.evsbak", dir);
    snprintf(restored, sizeof restored, "%s.restored", dir);
    int fd = open(archive, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    TC_ASSERT(fd >= 0, "open %s", archive);
    evs_backup_info bi;
    TC_OK(evs_backup(s, fd, 0, NULL, &bi));
    close(fd);
    TC_OK(evs_close(s));
    tc_verify_clean(dir, NULL);
    const char *const chain[] = {archive};
    tc_setctx("restore of a store whose stream table was rewritten");
    o.vfs = NULL;
    TC_OK(evs_restore(chain, 1, restored, &o, NULL, &bi));
    tables = tc_list(restored, ".idx");
    ntables = 0;
    for (size_t i = 0; i < tables.n; i++) ntables += !strncmp(tables.v[i], "streams.", 8) && strlen(tables.v[i]) == 32;
    tc_names_free(&tables);
    TC_ASSERT(ntables == 1, "the restored store has %d stream table files of a rewritten generation, expected 1", ntables);
    TC_OK(evs_open(restored, &o, &s));
    TC_ASSERT(!logged("rebuilding the indexes") && !logged("damaged"), "the restored store rebuilt its indexes");
    TC_OK(evs_stream_version(s, names[RW_STREAMS - 1], &v));
    TC_ASSERT(v == (uint64_t)round, "restored: version %" PRIu64 " of %d", v, round);
    TC_OK(evs_close(s));
    unlink(archive);
    evs_test_rmtree(restored);
    /* the writer crashed between a rewrite and the checkpoint naming it: the
     * checkpoint on disk still names a stream table that holds what it says,
     * so the reopen replays one interval instead of rebuilding every index */
    tc_setctx("reopen after a crash between the rewrite of round %d and its checkpoint", crash_round);
    TC_OK(evs_open(crash, &o, &s));
    evs_stats st;
    TC_OK(evs_stat(s, &st));
    TC_ASSERT(!logged("rebuilding the indexes") && !logged("damaged"), "the reopen rebuilt the indexes");
    TC_ASSERT(st.index_checkpoint_position == (uint64_t)crash_round * RW_STREAMS,
              "the reopen found the checkpoint at %" PRIu64 ", expected %d", st.index_checkpoint_position,
              crash_round * RW_STREAMS);
    TC_OK(evs_stream_version(s, names[RW_STREAMS - 1], &v));
    TC_ASSERT(v == (uint64_t)crash_round + 1, "after the crash: version %" PRIu64 " of %d", v, crash_round + 1);
    TC_OK(evs_close(s));
    tc_verify_clean(crash, NULL);
    vfs_gate_free(gv);
    free(names);
    free(ev);
    evs_test_rmtree(dir);
    evs_test_rmtree(crash);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_race_background_flushes),
        cmocka_unit_test(test_lookups_and_backlog_while_flush_held),
        cmocka_unit_test(test_close_while_flush_held),
        cmocka_unit_test(test_fault_in_background_flush),
        cmocka_unit_test(test_power_cut_during_background_flush),
        cmocka_unit_test(test_follower_open_while_stream_table_rewritten),
    };
    evs_test_seed();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
