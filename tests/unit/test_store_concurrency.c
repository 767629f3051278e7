/*
 * test_store_concurrency.c — many threads on one store:
 *   - 16 threads race `expected_version = N` on one stream, round after round
 *     (a barrier starts each round): exactly one winner per version;
 *   - the same event ids appended by several threads at once: written once,
 *     every other call gets the original result (replayed);
 *   - 16 threads race an append condition: exactly one winner per round;
 *   - writers (single, batch, multi-stream) with live readers and probers at
 *     the same time: positions contiguous, batches never split or
 *     interleaved, stream versions contiguous, every visible position
 *     readable, group commits <= appends.
 * Worker threads never call cmocka assertions: they record what they saw
 * and the main thread checks it after joining them.
 */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "evstore.h"
#include "store_fixtures.h"
#include "testutil.h"

#define WAIT_MS 60000

/* A thread's first problem, reported to the main thread. */
typedef struct problem {
    char text[512];
    int set;
} problem;

static void note(problem *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(problem *p, const char *fmt, ...)
{
    if (p->set) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->text, sizeof p->text, fmt, ap);
    va_end(ap);
    p->set = 1;
}

/* ---- expected-version race ---- */

enum { RACERS = 16, ROUNDS = 200 };

typedef struct race_arg {
    evs_store *s;
    pthread_barrier_t *bar;
    int id;
    uint64_t won_version[ROUNDS];   /* 0 = lost the round */
    uint64_t won_position[ROUNDS];
    problem prob;
} race_arg;

static void *race_main(void *arg)
{
    race_arg *a = arg;
    for (int r = 0; r < ROUNDS; r++) {
        pthread_barrier_wait(a->bar);
        char data[64];
        snprintf(data, sizeof data, "{\"thread\":%d,\"round\":%d}", a->id, r);
        evs_commit c;
        evs_append_result res;
        int rc = fx_append1(a->s, "race", r, "Raced", data, &c, &res);
        if (rc == 0) {
            a->won_version[r] = c.version;
            a->won_position[r] = c.position;
        } else if (rc == EVS_ECONFLICT) {
            if (res.expected_version != r || res.actual_version != (uint64_t)r + 1)
                note(&a->prob, "round %d: conflict says expected %" PRId64 " actual %" PRIu64, r,
                     res.expected_version, res.actual_version);
        } else {
            note(&a->prob, "round %d: append returned %s", r, evs_errname(rc));
        }
    }
    return NULL;
}

static void test_expected_version_race(void **state)
{
    fx *f = *state;
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, RACERS);
    race_arg *a = calloc(RACERS, sizeof *a);
    assert_non_null(a);
    pthread_t th[RACERS];
    for (int i = 0; i < RACERS; i++) {
        a[i].s = f->s;
        a[i].bar = &bar;
        a[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, race_main, &a[i]), 0);
    }
    for (int i = 0; i < RACERS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < RACERS; i++)
        if (a[i].prob.set) fail_msg("thread %d: %s", i, a[i].prob.text);

    int winner[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        int winners = 0;
        for (int i = 0; i < RACERS; i++) {
            if (!a[i].won_version[r]) continue;
            winners++;
            winner[r] = i;
            assert_int_equal(a[i].won_version[r], (uint64_t)r + 1);
        }
        if (winners != 1) fail_msg("round %d has %d winners", r, winners);
    }
    uint64_t v = 0;
    assert_int_equal(evs_stream_version(f->s, "race", &v), 0);
    assert_int_equal(v, ROUNDS);
    assert_int_equal(evs_position(f->s), ROUNDS);
    /* each version holds the winner's own event */
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.stream = "race";
    evs_iter *it = NULL;
    assert_int_equal(evs_iter_open(f->s, &ro, &it), 0);
    for (int r = 0; r < ROUNDS; r++) {
        const evs_event *ev = NULL;
        assert_int_equal(evs_iter_next(it, &ev), 0);
        assert_non_null(ev);
        assert_int_equal(ev->version, (uint64_t)r + 1);
        assert_int_equal(ev->position, a[winner[r]].won_position[r]);
        char want[64];
        snprintf(want, sizeof want, "{\"thread\":%d,\"round\":%d}", winner[r], r);
        assert_string_equal(ev->data, want);
    }
    const evs_event *ev = NULL;
    assert_int_equal(evs_iter_next(it, &ev), 0);
    assert_null(ev);
    evs_iter_close(it);
    evs_stats st;
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_int_equal(st.appends, ROUNDS);
    assert_true(st.group_commits <= st.appends);
    free(a);
}

/* ---- the same ids from several threads ---- */

enum { DUP_THREADS = 6, DUP_ROUNDS = 60 };

typedef struct dup_arg {
    evs_store *s;
    pthread_barrier_t *bar;
    const uint8_t (*ids)[3][16];    /* per round: three ids */
    int replayed[DUP_ROUNDS];
    evs_commit c[DUP_ROUNDS][3];
    problem prob;
} dup_arg;

static void *dup_main(void *arg)
{
    dup_arg *a = arg;
    for (int r = 0; r < DUP_ROUNDS; r++) {
        pthread_barrier_wait(a->bar);
        evs_event_in ev[3];
        char stream[16];
        snprintf(stream, sizeof stream, "dup/%d", r % 7);
        for (int i = 0; i < 3; i++) {
            ev[i] = fx_ev("Dup", "{\"same\":true}");
            ev[i].id = a->ids[r][i];
        }
        evs_append_result res;
        int rc = evs_append(a->s, stream, EVS_EXPECT_ANY, ev, 3, a->c[r], &res);
        if (rc) note(&a->prob, "round %d: %s (%s)", r, evs_errname(rc), res.message);
        a->replayed[r] = res.replayed;
    }
    return NULL;
}

static void test_concurrent_retries_write_once(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0xd0b;
    uint8_t (*ids)[3][16] = calloc(DUP_ROUNDS, sizeof *ids);
    assert_non_null(ids);
    evs_test_rand_bytes(&rs, ids, DUP_ROUNDS * sizeof *ids);
    for (int r = 0; r < DUP_ROUNDS; r++)
        for (int i = 0; i < 3; i++) ids[r][i][0] |= 1;  /* never the nil UUID */
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, DUP_THREADS);
    dup_arg *a = calloc(DUP_THREADS, sizeof *a);
    assert_non_null(a);
    pthread_t th[DUP_THREADS];
    for (int i = 0; i < DUP_THREADS; i++) {
        a[i].s = f->s;
        a[i].bar = &bar;
        a[i].ids = (const uint8_t (*)[3][16])ids;
        assert_int_equal(pthread_create(&th[i], NULL, dup_main, &a[i]), 0);
    }
    for (int i = 0; i < DUP_THREADS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < DUP_THREADS; i++)
        if (a[i].prob.set) fail_msg("thread %d: %s", i, a[i].prob.text);
    for (int r = 0; r < DUP_ROUNDS; r++) {
        int writers = 0;
        for (int i = 0; i < DUP_THREADS; i++) {
            writers += !a[i].replayed[r];
            for (int k = 0; k < 3; k++) {
                assert_int_equal(a[i].c[r][k].position, a[0].c[r][k].position);
                assert_int_equal(a[i].c[r][k].version, a[0].c[r][k].version);
                assert_int_equal(a[i].c[r][k].time_us, a[0].c[r][k].time_us);
                assert_memory_equal(a[i].c[r][k].id, ids[r][k], 16);
            }
        }
        if (writers != 1) fail_msg("round %d written by %d threads", r, writers);
    }
    assert_int_equal(evs_position(f->s), DUP_ROUNDS * 3);
    evs_stats st;
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_int_equal(st.appended_events, DUP_ROUNDS * 3);
    free(a);
    free(ids);
}

/* ---- condition race ---- */

enum { COND_THREADS = 16, COND_ROUNDS = 60 };

typedef struct cond_arg {
    evs_store *s;
    pthread_barrier_t *bar;
    uint64_t *start;               /* per round: the position every thread conditions on */
    int id;
    int won[COND_ROUNDS];
    problem prob;
} cond_arg;

static void *cond_main(void *arg)
{
    cond_arg *a = arg;
    static const char *const types[] = {"SeatReserved"};
    for (int r = 0; r < COND_ROUNDS; r++) {
        pthread_barrier_wait(a->bar);
        if (a->id == 0) a->start[r] = evs_position(a->s);
        pthread_barrier_wait(a->bar);
        char seat[32], data[64], other[32];
        snprintf(seat, sizeof seat, "seat/%d/", r);
        snprintf(other, sizeof other, "noise/%d", a->id);
        snprintf(data, sizeof data, "{\"by\":%d}", a->id);
        evs_condition cond;
        memset(&cond, 0, sizeof cond);
        cond.filter.types = types;
        cond.filter.ntypes = 1;
        cond.filter.stream_prefix = seat;
        cond.after = a->start[r];
        evs_event_in ev[2];
        ev[0] = fx_ev("Noise", data);     /* matches the prefix of no seat */
        ev[0].stream = other;
        ev[1] = fx_ev("SeatReserved", data);
        ev[1].stream = seat;
        evs_append_result res;
        int rc = evs_append_multi(a->s, ev, 2, &cond, NULL, &res);
        if (rc == 0) a->won[r] = 1;
        else if (rc != EVS_ECONDITION) note(&a->prob, "round %d: %s", r, evs_errname(rc));
        /* noise that the condition must ignore: other types, other prefixes */
        if (rc == 0 && fx_append1(a->s, "seat/x", EVS_EXPECT_ANY, "SeatReserved", data, NULL, NULL) != 0)
            note(&a->prob, "round %d: noise append failed", r);
    }
    return NULL;
}

static void test_condition_race(void **state)
{
    fx *f = *state;
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, COND_THREADS);
    uint64_t start[COND_ROUNDS];
    cond_arg *a = calloc(COND_THREADS, sizeof *a);
    assert_non_null(a);
    pthread_t th[COND_THREADS];
    for (int i = 0; i < COND_THREADS; i++) {
        a[i] = (cond_arg){.s = f->s, .bar = &bar, .start = start, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, cond_main, &a[i]), 0);
    }
    for (int i = 0; i < COND_THREADS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < COND_THREADS; i++)
        if (a[i].prob.set) fail_msg("thread %d: %s", i, a[i].prob.text);
    for (int r = 0; r < COND_ROUNDS; r++) {
        int winners = 0;
        for (int i = 0; i < COND_THREADS; i++) winners += a[i].won[r];
        if (winners != 1) fail_msg("round %d has %d winners", r, winners);
        char seat[32];
        snprintf(seat, sizeof seat, "seat/%d/", r);
        uint64_t v = 0;
        assert_int_equal(evs_stream_version(f->s, seat, &v), 0);
        assert_int_equal(v, 1);
    }
    free(a);
}

/* ---- writers, live readers and probers together ---- */

enum { WRITERS = 4, APPENDS_PER_WRITER = 150, SHARED = 3 };

typedef struct plan_step {
    uint8_t kind;                /* 0 single own, 1 batch own, 2 multi (own + shared) */
    uint8_t n;                   /* events */
    uint8_t shared[6];           /* multi: shared stream of each event (SHARED = own) */
} plan_step;

typedef struct writer_arg {
    evs_store *s;
    int id;
    plan_step plan[APPENDS_PER_WRITER];
    problem prob;
} writer_arg;

static void make_plan(writer_arg *w, uint64_t *rs, uint64_t *events)
{
    for (int a = 0; a < APPENDS_PER_WRITER; a++) {
        plan_step *p = &w->plan[a];
        p->kind = (uint8_t)evs_test_rand_range(rs, 0, 2);
        p->n = p->kind == 0 ? 1 : (uint8_t)evs_test_rand_range(rs, 2, 6);
        for (int i = 0; i < p->n; i++) p->shared[i] = (uint8_t)evs_test_rand_range(rs, 0, SHARED);
        *events += p->n;
    }
}

static void *writer_main(void *arg)
{
    writer_arg *w = arg;
    char own[16];
    snprintf(own, sizeof own, "w/%d", w->id);
    uint64_t own_version = 0;
    for (int a = 0; a < APPENDS_PER_WRITER && !w->prob.set; a++) {
        const plan_step *p = &w->plan[a];
        evs_event_in ev[6];
        char data[6][96], names[6][16];
        uint64_t own_in_batch = 0;
        for (int i = 0; i < p->n; i++) {
            if (p->kind == 2 && p->shared[i] < SHARED) snprintf(names[i], sizeof names[i], "shared/%d", p->shared[i]);
            else { snprintf(names[i], sizeof names[i], "%s", own); own_in_batch++; }
            snprintf(data[i], sizeof data[i], "{\"t\":%d,\"a\":%d,\"i\":%d,\"n\":%d}", w->id, a, i, p->n);
            ev[i] = fx_ev("W", data[i]);
            ev[i].stream = names[i];
            /* the only writer of its own stream: exact versions always hold */
            ev[i].expected_version = names[i][0] == 'w' ? (int64_t)own_version : EVS_EXPECT_ANY;
            if (names[i][0] == 'w') own_version++;
        }
        evs_append_result res;
        evs_commit c[6];
        int rc = p->kind == 2 ? evs_append_multi(w->s, ev, p->n, NULL, c, &res)
                              : evs_append(w->s, own, (int64_t)(own_version - own_in_batch), ev, p->n, c, &res);
        if (rc) note(&w->prob, "append %d: %s (%s)", a, evs_errname(rc), res.message);
        else if (res.last_position - res.first_position + 1 != p->n)
            note(&w->prob, "append %d: range %" PRIu64 "..%" PRIu64 " for %d events", a, res.first_position,
                 res.last_position, p->n);
    }
    return NULL;
}

typedef struct reader_arg {
    evs_store *s;
    uint64_t total;              /* events the writers will append */
    const char *stream;          /* NULL: the global log */
    uint64_t stream_total;       /* events that stream will have */
    problem prob;
    uint64_t seen;
} reader_arg;

/* A live forward reader: checks contiguity, batch integrity, versions. */
static void *reader_main(void *arg)
{
    reader_arg *r = arg;
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.stream = r->stream;
    ro.allow_missing = 1;
    evs_iter *it = NULL;
    int rc = evs_iter_open(r->s, &ro, &it);
    if (rc) { note(&r->prob, "open: %s", evs_errname(rc)); return NULL; }
    uint64_t want = r->stream ? r->stream_total : r->total;
    int cur_t = -1, cur_a = -1, cur_i = -1, cur_n = 0;
    int last_a[WRITERS];
    uint64_t versions[WRITERS + SHARED] = {0};
    for (int i = 0; i < WRITERS; i++) last_a[i] = -1;
    uint64_t last_pos = 0;
    while (r->seen < want && !r->prob.set) {
        const evs_event *ev = NULL;
        uint64_t before = evs_position(r->s);
        rc = evs_iter_next(it, &ev);
        if (rc) { note(&r->prob, "next: %s", evs_errname(rc)); break; }
        if (!ev) {
            /* at the end: the iterator has seen everything up to `before`;
             * wait for a commit after it */
            uint64_t now = 0;
            rc = evs_wait(r->s, before + 1, WAIT_MS, &now);
            if (rc && rc != EVS_ETIMEDOUT) note(&r->prob, "wait: %s", evs_errname(rc));
            if (rc == EVS_ETIMEDOUT && evs_position(r->s) < r->total) note(&r->prob, "no progress in a minute");
            continue;
        }
        r->seen++;
        if (!r->stream && ev->position != last_pos + 1)
            note(&r->prob, "position %" PRIu64 " after %" PRIu64, ev->position, last_pos);
        if (ev->position <= last_pos) note(&r->prob, "position %" PRIu64 " not after %" PRIu64, ev->position, last_pos);
        last_pos = ev->position;
        int t, a, i, n;
        if (sscanf(ev->data, "{\"t\":%d,\"a\":%d,\"i\":%d,\"n\":%d}", &t, &a, &i, &n) != 4 || t < 0 || t >= WRITERS) {
            note(&r->prob, "position %" PRIu64 ": unexpected data %s", ev->position, ev->data);
            continue;
        }
        int si = ev->stream[0] == 'w' ? atoi(ev->stream + 2) : WRITERS + atoi(ev->stream + 7);
        if (si < 0 || si >= WRITERS + SHARED) { note(&r->prob, "stream %s", ev->stream); continue; }
        if (r->stream) {
            if (ev->version != ++versions[0]) note(&r->prob, "%s version %" PRIu64, ev->stream, ev->version);
            continue;
        }
        if (ev->version != ++versions[si])
            note(&r->prob, "%s: version %" PRIu64 ", want %" PRIu64, ev->stream, ev->version, versions[si]);
        if (i == 0) {
            if (cur_i + 1 != cur_n)
                note(&r->prob, "position %" PRIu64 ": a batch of %d ended after %d events", ev->position, cur_n, cur_i + 1);
            if (a != last_a[t] + 1) note(&r->prob, "writer %d: append %d after %d", t, a, last_a[t]);
            last_a[t] = a;
            cur_t = t; cur_a = a; cur_i = 0; cur_n = n;
        } else if (t != cur_t || a != cur_a || i != cur_i + 1 || n != cur_n) {
            note(&r->prob, "position %" PRIu64 ": batch interleaved or split (%s)", ev->position, ev->data);
        } else {
            cur_i = i;
        }
    }
    if (!r->stream && !r->prob.set && cur_i + 1 != cur_n) note(&r->prob, "the last batch is incomplete");
    evs_iter_close(it);
    return NULL;
}

typedef struct prober_arg {
    evs_store *s;
    atomic_int *stop;
    uint64_t rs;
    uint64_t probes;
    problem prob;
} prober_arg;

/* Whatever is visible is readable: the position, its event, the streams' last versions. */
static void *prober_main(void *arg)
{
    prober_arg *p = arg;
    while (!atomic_load(p->stop) && !p->prob.set) {
        uint64_t pos = evs_position(p->s);
        p->probes++;
        if (pos == 0) continue;
        uint64_t q = evs_test_rand_range(&p->rs, 1, pos);
        uint64_t probe[2] = {pos, q};
        for (int k = 0; k < 2; k++) {
            evs_event *ev = NULL;
            int rc = evs_get_at(p->s, probe[k], &ev);
            if (rc) { note(&p->prob, "get_at(%" PRIu64 ") of visible %" PRIu64 ": %s", probe[k], pos, evs_errname(rc)); break; }
            if (ev->position != probe[k]) note(&p->prob, "get_at(%" PRIu64 ") gave %" PRIu64, probe[k], ev->position);
            evs_event *byid = NULL;
            rc = evs_get(p->s, ev->id, &byid);
            if (rc || byid->position != probe[k]) note(&p->prob, "get by id of %" PRIu64 ": %s", probe[k], evs_errname(rc));
            evs_free(byid);
            evs_free(ev);
        }
        char name[16];
        snprintf(name, sizeof name, "shared/%d", (int)(q % SHARED));
        uint64_t v = 0;
        if (evs_stream_version(p->s, name, &v) != 0) note(&p->prob, "stream_version failed");
        if (v) {
            evs_read_options ro;
            evs_read_options_init(&ro);
            ro.stream = name;
            ro.backward = 1;
            ro.from = v;
            ro.limit = 1;
            evs_iter *it = NULL;
            const evs_event *ev = NULL;
            int rc = evs_iter_open(p->s, &ro, &it);
            if (rc == 0) rc = evs_iter_next(it, &ev);
            if (rc || !ev || ev->version != v)
                note(&p->prob, "%s at version %" PRIu64 ": %s", name, v, rc ? evs_errname(rc) : "not readable");
            evs_iter_close(it);
        }
    }
    return NULL;
}

static void test_writers_with_live_readers(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0x3ead;
    writer_arg *w = calloc(WRITERS, sizeof *w);
    assert_non_null(w);
    uint64_t total = 0, shared1 = 0;
    for (int i = 0; i < WRITERS; i++) {
        w[i].s = f->s;
        w[i].id = i;
        make_plan(&w[i], &rs, &total);
        for (int a = 0; a < APPENDS_PER_WRITER; a++)
            if (w[i].plan[a].kind == 2)
                for (int k = 0; k < w[i].plan[a].n; k++) shared1 += w[i].plan[a].shared[k] == 1;
    }
    reader_arg rd[3] = {{.s = f->s, .total = total}, {.s = f->s, .total = total},
                        {.s = f->s, .total = total, .stream = "shared/1", .stream_total = shared1}};
    atomic_int stop = 0;
    prober_arg pr[2] = {{.s = f->s, .stop = &stop, .rs = rs ^ 1}, {.s = f->s, .stop = &stop, .rs = rs ^ 2}};
    pthread_t wt[WRITERS], rt[3], pt[2];
    for (int i = 0; i < 3; i++) assert_int_equal(pthread_create(&rt[i], NULL, reader_main, &rd[i]), 0);
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&pt[i], NULL, prober_main, &pr[i]), 0);
    for (int i = 0; i < WRITERS; i++) assert_int_equal(pthread_create(&wt[i], NULL, writer_main, &w[i]), 0);
    for (int i = 0; i < WRITERS; i++) pthread_join(wt[i], NULL);
    for (int i = 0; i < 3; i++) pthread_join(rt[i], NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) pthread_join(pt[i], NULL);
    for (int i = 0; i < WRITERS; i++)
        if (w[i].prob.set) fail_msg("writer %d: %s", i, w[i].prob.text);
    for (int i = 0; i < 3; i++) {
        if (rd[i].prob.set) fail_msg("reader %d: %s", i, rd[i].prob.text);
        assert_int_equal(rd[i].seen, i < 2 ? total : shared1);
    }
    for (int i = 0; i < 2; i++) {
        if (pr[i].prob.set) fail_msg("prober %d: %s", i, pr[i].prob.text);
        assert_true(pr[i].probes > 0);
    }
    evs_stats st;
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_int_equal(st.events, total);
    assert_int_equal(st.appends, WRITERS * APPENDS_PER_WRITER);
    assert_int_equal(st.appended_events, total);
    assert_true(st.group_commits >= 1 && st.group_commits <= st.appends);
    assert_true(st.fsyncs >= 1);
    assert_int_equal(st.streams, WRITERS + SHARED);
    /* and the same after a reopen */
    char *before = fx_snapshot(f->s);
    fx_reopen(f);
    char *after = fx_snapshot(f->s);
    assert_string_equal(before, after);
    free(before);
    free(after);
    free(w);
}

/* ---- closing while another thread waits ---- */

typedef struct waiter {
    evs_store *s;
    atomic_int entered;
    int rc;
} waiter;

static void *waiter_main(void *arg)
{
    waiter *w = arg;
    uint64_t target = evs_position(w->s) + 1000;
    atomic_store(&w->entered, 1);
    w->rc = evs_wait(w->s, target, -1, NULL);
    return NULL;
}

/* evs_wait ends with EVS_ECLOSED when the store closes, and evs_close waits
 * for the threads inside evs_wait to leave before it frees the store (the
 * sanitizer build caught a use-after-free here before that). */
static void test_close_wakes_waiters(void **state)
{
    fx *f = *state;
    for (int round = 0; round < 100; round++) {
        waiter w = {.s = f->s, .rc = 99};
        atomic_init(&w.entered, 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, waiter_main, &w), 0);
        while (!atomic_load(&w.entered)) sched_yield();
        fx_close(f);
        pthread_join(t, NULL);
        assert_int_equal(w.rc, EVS_ECLOSED);
        fx_open(f);
    }
}

int main(void)
{
    fx_main_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_expected_version_race, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_retries_write_once, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_condition_race, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_writers_with_live_readers, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_wakes_waiters, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
