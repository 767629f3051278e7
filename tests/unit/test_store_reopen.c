/*
 * test_store_reopen.c — the log across segments and across opens:
 *   - segment rollover exactly at the boundary (record sizes computed with
 *     evs__rec_size), appends never spanning segments, an append larger than
 *     the segment size alone in its own segment, seamless reads across many
 *     segments in both directions (also for a live iterator crossing a roll);
 *   - reopen: everything reads identically; after deleting every *.idx file,
 *     or only one kind of them, the indexes are rebuilt and reads are
 *     identical; evs_verify finds nothing.
 */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "evstore.h"
#include "log/record.h"
#include "store_fixtures.h"
#include "testutil.h"

#define SEG 65536u   /* the minimum segment size */
#define WAIT_MS 60000

/* ---- appends of an exact record size ---- */

/* A JSON string of exactly len bytes (len >= 2). Caller frees. */
static char *json_string_of(size_t len, char fill)
{
    char *d = malloc(len + 1);
    assert_non_null(d);
    d[0] = '"';
    memset(d + 1, fill, len - 2);
    d[len - 1] = '"';
    d[len] = 0;
    return d;
}

/* An event (type "t") whose record in stream is exactly rec bytes; data is malloc'd. */
static evs_event_in sized_event(const char *stream, uint32_t rec)
{
    size_t fixed = EVS_REC_HDR_SIZE + EVS_REC_TRAILER_SIZE + strlen(stream) + 1;
    assert_true(rec % 8 == 0 && rec >= fixed + 2);
    char *data = json_string_of(rec - fixed, 'a' + (char)(rec % 26));
    evs_event_in e = fx_ev("t", data);
    e.stream = stream;
    assert_int_equal(evs__rec_size(strlen(stream), 1, e.data_len, 0), rec);
    return e;
}

/* The appends made so far, to check that none spans two segments. */
typedef struct appends {
    uint64_t first[4096], last[4096];
    size_t n;
} appends;

/* Append sizes[0..n) as one append (multi-stream when multi) and remember its range. */
static void append_sizes(evs_store *s, appends *log, const char *stream, int multi, const uint32_t *sizes, size_t n)
{
    evs_event_in ev[8];
    char streams[8][24];  /* "m/" + any size_t + NUL */
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        if (multi) snprintf(streams[i], sizeof streams[i], "m/%zu", i);
        ev[i] = sized_event(multi ? streams[i] : stream, sizes[i]);
    }
    evs_append_result res;
    int rc = multi ? evs_append_multi(s, ev, n, NULL, NULL, &res)
                   : evs_append(s, stream, EVS_EXPECT_ANY, ev, n, NULL, &res);
    assert_int_equal(rc, 0);
    for (size_t i = 0; i < n; i++) free((void *)ev[i].data);
    assert_int_equal(res.last_position - res.first_position + 1, n);
    log->first[log->n] = res.first_position;
    log->last[log->n] = res.last_position;
    log->n++;
}

static void append_size(evs_store *s, appends *log, const char *stream, uint32_t rec)
{
    append_sizes(s, log, stream, 0, &rec, 1);
}

static void expect_segments(const char *dir, const uint64_t *want, size_t n)
{
    uint64_t got[64];
    size_t k = fx_seg_bases(dir, got, 64);
    if (k != n) fail_msg("%zu segment files, want %zu", k, n);
    for (size_t i = 0; i < n; i++) assert_int_equal(got[i], want[i]);
}

static char *seg_name(uint64_t base)
{
    static char name[64];
    snprintf(name, sizeof name, "%020" PRIu64 ".seg", base);
    return name;
}

/*
 * The layout invariants, from the files and a full read:
 *  - segment files are named by their first position, contiguous from 1;
 *  - each file's size is its header plus the records of its positions;
 *  - no append spans two files; a file over the segment size holds one append;
 *  - a file was sealed only when the next append did not fit in it.
 */
static void check_layout(evs_store *s, const char *dir, uint64_t seg_size, const appends *log)
{
    uint64_t bases[1024];
    size_t nseg = fx_seg_bases(dir, bases, 1024);
    assert_true(nseg >= 1 && nseg < 1024);
    assert_int_equal(bases[0], 1);
    uint64_t end = evs_position(s);
    uint64_t *rec = calloc(end + 2, sizeof *rec);
    assert_non_null(rec);
    evs_read_options ro;
    evs_read_options_init(&ro);
    evs_iter *it = NULL;
    assert_int_equal(evs_iter_open(s, &ro, &it), 0);
    uint64_t p = 0;
    for (;;) {
        const evs_event *ev = NULL;
        assert_int_equal(evs_iter_next(it, &ev), 0);
        if (!ev) break;
        assert_int_equal(ev->position, ++p);
        rec[p] = evs__rec_size(ev->stream_len, ev->type_len, ev->data_len, ev->metadata ? ev->metadata_len : 0);
    }
    evs_iter_close(it);
    assert_int_equal(p, end);
    for (size_t i = 0; i < nseg; i++) {
        uint64_t lo = bases[i], hi = i + 1 < nseg ? bases[i + 1] - 1 : end;
        assert_true(hi >= lo || (i + 1 == nseg && hi + 1 == lo));  /* only the active one may be empty */
        uint64_t bytes = EVS_SEG_HDR_SIZE;
        for (uint64_t q = lo; q <= hi; q++) bytes += rec[q];
        uint64_t fsize = fx_file_size(dir, seg_name(bases[i]));
        if (fsize != bytes)
            fail_msg("%s is %" PRIu64 " bytes, its records %" PRIu64 "..%" PRIu64 " make %" PRIu64,
                     seg_name(bases[i]), fsize, lo, hi, bytes);
        size_t inside = 0;
        for (size_t a = 0; a < log->n; a++) {
            int in_lo = log->first[a] >= lo && log->first[a] <= hi;
            int in_hi = log->last[a] >= lo && log->last[a] <= hi;
            if (in_lo != in_hi)
                fail_msg("append %" PRIu64 "..%" PRIu64 " spans %s", log->first[a], log->last[a], seg_name(bases[i]));
            inside += in_lo;
            /* the first append of the next segment did not fit in this one */
            if (i + 1 < nseg && log->first[a] == hi + 1) {
                uint64_t need = 0;
                for (uint64_t q = log->first[a]; q <= log->last[a]; q++) need += rec[q];
                if (fsize + need <= seg_size)
                    fail_msg("%s was sealed at %" PRIu64 " bytes although the next append (%" PRIu64
                             " bytes) fits", seg_name(bases[i]), fsize, need);
            }
        }
        if (fsize > seg_size && log->n) assert_int_equal(inside, 1);
    }
    free(rec);
}

static void test_rollover_exact_boundaries(void **state)
{
    fx *f = *state;
    f->opt.segment_size = SEG;
    fx_open(f);
    appends *log = calloc(1, sizeof *log);
    assert_non_null(log);
    const uint32_t room = SEG - EVS_SEG_HDR_SIZE;   /* 65472 bytes of records */

    /* fill the first segment exactly: 14000 + 8 * 6000 + 3472 = 65472 */
    const uint32_t three[3] = {4000, 8000, 2000};
    append_sizes(f->s, log, "r", 0, three, 3);               /* 1..3 */
    for (int i = 0; i < 8; i++) append_size(f->s, log, "roll/b", 6000);  /* 4..11 */
    append_size(f->s, log, "r", room - 14000 - 48000);       /* 12 */
    assert_int_equal(fx_file_size(f->dir, seg_name(1)), SEG);
    expect_segments(f->dir, (const uint64_t[]){1}, 1);
    /* the smallest record no longer fits: a new segment named by its first position */
    append_size(f->s, log, "r", EVS_REC_MIN_SIZE);           /* 13 */
    expect_segments(f->dir, (const uint64_t[]){1, 13}, 2);
    assert_int_equal(fx_file_size(f->dir, seg_name(1)), SEG);
    assert_int_equal(fx_file_size(f->dir, seg_name(13)), EVS_SEG_HDR_SIZE + EVS_REC_MIN_SIZE);

    /* leave 1000 bytes; an append of 1008 does not fit and starts segment 22 */
    for (int i = 0; i < 8; i++) append_size(f->s, log, "roll/c", 8048);  /* 14..21 */
    assert_int_equal(fx_file_size(f->dir, seg_name(13)), SEG - 1000);
    append_size(f->s, log, "roll/c", 1008);                       /* 22 */
    expect_segments(f->dir, (const uint64_t[]){1, 13, 22}, 3);
    assert_int_equal(fx_file_size(f->dir, seg_name(13)), SEG - 1000);

    /* an append larger than a segment: alone in its own (batch, then single) */
    const uint32_t big2[2] = {50000, 50000};
    append_sizes(f->s, log, "big", 0, big2, 2);                   /* 23..24 */
    append_size(f->s, log, "r", EVS_REC_MIN_SIZE);           /* 25 */
    append_size(f->s, log, "big", 70000);                         /* 26 */
    expect_segments(f->dir, (const uint64_t[]){1, 13, 22, 23, 25, 26}, 6);
    assert_int_equal(fx_file_size(f->dir, seg_name(23)), EVS_SEG_HDR_SIZE + 100000);
    assert_int_equal(fx_file_size(f->dir, seg_name(26)), EVS_SEG_HDR_SIZE + 70000);

    /* a multi-stream append that fills a segment to the byte */
    append_size(f->s, log, "r", EVS_REC_MIN_SIZE);           /* 27 */
    const uint32_t four[4] = {16000, 16000, 16000, room - EVS_REC_MIN_SIZE - 48000};
    append_sizes(f->s, log, NULL, 1, four, 4);                    /* 28..31 */
    assert_int_equal(fx_file_size(f->dir, seg_name(27)), SEG);
    append_size(f->s, log, "r", 200);                        /* 32 */
    expect_segments(f->dir, (const uint64_t[]){1, 13, 22, 23, 25, 26, 27, 32}, 8);

    evs_stats st;
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_int_equal(st.segments, 8);
    uint64_t bytes = 0;
    uint64_t bases[8] = {1, 13, 22, 23, 25, 26, 27, 32};
    for (int i = 0; i < 8; i++) bytes += fx_file_size(f->dir, seg_name(bases[i]));
    assert_int_equal(st.bytes, bytes);
    check_layout(f->s, f->dir, SEG, log);
    char *before = fx_snapshot(f->s);
    fx_reopen(f);
    check_layout(f->s, f->dir, SEG, log);
    char *after = fx_snapshot(f->s);
    assert_string_equal(before, after);
    free(before);
    free(after);
    /* the active segment after a reopen continues to fill and roll at the same rule */
    append_size(f->s, log, "r", room - 200 - EVS_REC_MIN_SIZE);   /* 33 */
    assert_int_equal(fx_file_size(f->dir, seg_name(32)), SEG - EVS_REC_MIN_SIZE);
    append_size(f->s, log, "r", EVS_REC_MIN_SIZE);                /* 34 */
    assert_int_equal(fx_file_size(f->dir, seg_name(32)), SEG);
    append_size(f->s, log, "r", EVS_REC_MIN_SIZE);                /* 35 */
    expect_segments(f->dir, (const uint64_t[]){1, 13, 22, 23, 25, 26, 27, 32, 35}, 9);
    assert_int_equal(fx_file_size(f->dir, seg_name(35)), EVS_SEG_HDR_SIZE + EVS_REC_MIN_SIZE);
    check_layout(f->s, f->dir, SEG, log);
    fx_close(f);
    assert_int_equal(fx_verify(f->dir), 0);
    free(log);
}

static void test_first_append_larger_than_segment(void **state)
{
    fx *f = *state;
    f->opt.segment_size = SEG;
    fx_open(f);
    appends *log = calloc(1, sizeof *log);
    assert_non_null(log);
    append_size(f->s, log, "big", 2 * SEG);
    append_size(f->s, log, "small", EVS_REC_MIN_SIZE);
    expect_segments(f->dir, (const uint64_t[]){1, 2}, 2);
    assert_int_equal(fx_file_size(f->dir, seg_name(1)), EVS_SEG_HDR_SIZE + 2 * SEG);
    check_layout(f->s, f->dir, SEG, log);
    fx_reopen(f);
    check_layout(f->s, f->dir, SEG, log);
    evs_event *ev = NULL;
    assert_int_equal(evs_get_at(f->s, 1, &ev), 0);
    assert_int_equal(ev->data_len, 2 * SEG - EVS_REC_HDR_SIZE - EVS_REC_TRAILER_SIZE - 4);
    evs_free(ev);
    free(log);
}

/* Many appenders at once near the boundaries: the group commit must flush
 * and roll without letting a group or an append cross a segment. */
typedef struct racer {
    evs_store *s;
    pthread_barrier_t *bar;
    uint64_t rs;
    int id;
    appends *log;
    pthread_mutex_t *mu;
    int rc;
} racer;

static void *racer_main(void *arg)
{
    racer *r = arg;
    char stream[16];
    snprintf(stream, sizeof stream, "race/%d", r->id);
    for (int round = 0; round < 40 && r->rc == 0; round++) {
        pthread_barrier_wait(r->bar);
        size_t n = (size_t)evs_test_rand_range(&r->rs, 1, 3);
        evs_event_in ev[3];
        for (size_t i = 0; i < n; i++) {
            uint32_t rec = (uint32_t)evs_test_rand_range(&r->rs, 20, 2000) * 8;
            ev[i] = sized_event(stream, rec);
        }
        evs_append_result res;
        r->rc = evs_append(r->s, stream, EVS_EXPECT_ANY, ev, n, NULL, &res);
        for (size_t i = 0; i < n; i++) free((void *)ev[i].data);
        if (r->rc == 0) {
            pthread_mutex_lock(r->mu);
            r->log->first[r->log->n] = res.first_position;
            r->log->last[r->log->n] = res.last_position;
            r->log->n++;
            pthread_mutex_unlock(r->mu);
        }
    }
    return NULL;
}

static void test_rollover_under_group_commit(void **state)
{
    fx *f = *state;
    f->opt.segment_size = SEG;
    f->opt.sync = EVS_SYNC_NEVER;
    fx_open(f);
    enum { T = 8 };
    appends *log = calloc(1, sizeof *log);
    assert_non_null(log);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, T);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    racer r[T];
    pthread_t th[T];
    uint64_t seed = evs_test_seed();
    for (int i = 0; i < T; i++) {
        r[i] = (racer){f->s, &bar, seed ^ (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull, i, log, &mu, 0};
        assert_int_equal(pthread_create(&th[i], NULL, racer_main, &r[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(r[i].rc, 0);
    }
    pthread_barrier_destroy(&bar);
    evs_stats st;
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_int_equal(st.appends, T * 40);
    assert_true(st.segments > 10);
    check_layout(f->s, f->dir, SEG, log);
    char *before = fx_snapshot(f->s);
    fx_reopen(f);
    check_layout(f->s, f->dir, SEG, log);
    char *after = fx_snapshot(f->s);
    assert_string_equal(before, after);
    free(before);
    free(after);
    fx_close(f);
    assert_int_equal(fx_verify(f->dir), 0);
    free(log);
}

/* ---- many segments: a model of every event ---- */

typedef struct big_model {
    uint64_t n;                  /* events */
    char **data;                 /* data[p] for position p */
    uint16_t *stream;            /* stream number of position p */
    uint64_t *version;           /* version of position p */
    uint64_t sver[32];           /* versions per stream */
} big_model;

static void bm_stream_name(unsigned k, char out[32]) { snprintf(out, 32, "many/%02u", k); }

static void bm_fill(evs_store *s, big_model *m, uint64_t target, unsigned nstreams, uint64_t *rs)
{
    m->data = realloc(m->data, (target + 8) * sizeof *m->data);
    m->stream = realloc(m->stream, (target + 8) * sizeof *m->stream);
    m->version = realloc(m->version, (target + 8) * sizeof *m->version);
    assert_true(m->data && m->stream && m->version);
    while (m->n < target) {
        size_t n = (size_t)evs_test_rand_range(rs, 1, 5);
        evs_event_in ev[5];
        char names[5][32];
        for (size_t i = 0; i < n; i++) {
            uint64_t p = m->n + 1 + i;
            unsigned k = (unsigned)evs_test_rand_range(rs, 0, nstreams - 1);
            bm_stream_name(k, names[i]);
            size_t len = (size_t)evs_test_rand_range(rs, 20, 3000);
            char *d = malloc(len + 64);
            assert_non_null(d);
            int h = snprintf(d, len + 64, "{\"p\":%" PRIu64 ",\"x\":\"", p);
            for (size_t j = (size_t)h; j < len; j++) d[j] = (char)('a' + (p + j) % 26);
            memcpy(d + (len > (size_t)h ? len : (size_t)h), "\"}", 3);
            m->data[p] = d;
            m->stream[p] = (uint16_t)k;
            m->version[p] = ++m->sver[k];
            ev[i] = fx_ev("Many", d);
            ev[i].stream = names[i];
        }
        evs_commit c[5];
        assert_int_equal(evs_append_multi(s, ev, n, NULL, c, NULL), 0);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(c[i].position, m->n + 1 + i);
            assert_int_equal(c[i].version, m->version[m->n + 1 + i]);
        }
        m->n += n;
    }
}

static void bm_free(big_model *m)
{
    for (uint64_t p = 1; p <= m->n; p++) free(m->data[p]);
    free(m->data);
    free(m->stream);
    free(m->version);
}

static void bm_check_event(const big_model *m, const evs_event *ev)
{
    assert_true(ev->position >= 1 && ev->position <= m->n);
    char name[32];
    bm_stream_name(m->stream[ev->position], name);
    assert_string_equal(ev->stream, name);
    assert_int_equal(ev->version, m->version[ev->position]);
    assert_string_equal(ev->data, m->data[ev->position]);
}

/* Read the global log from `from`, direction, limit; check against the model. */
static void bm_read_global(evs_store *s, const big_model *m, uint64_t from, int backward, uint64_t limit)
{
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.from = from;
    ro.backward = backward;
    ro.limit = limit;
    evs_iter *it = NULL;
    assert_int_equal(evs_iter_open(s, &ro, &it), 0);
    uint64_t want = backward ? (from && from < m->n ? from : m->n) : (from ? from : 1), k = 0;
    for (;;) {
        const evs_event *ev = NULL;
        assert_int_equal(evs_iter_next(it, &ev), 0);
        if (!ev) break;
        assert_int_equal(ev->position, want);
        bm_check_event(m, ev);
        want = backward ? want - 1 : want + 1;
        k++;
    }
    uint64_t avail = backward ? (from && from < m->n ? from : m->n) : (from <= m->n ? m->n - (from ? from : 1) + 1 : 0);
    assert_int_equal(k, limit && limit < avail ? limit : avail);
    evs_iter_close(it);
}

static void bm_read_stream(evs_store *s, const big_model *m, unsigned k, uint64_t from, int backward)
{
    char name[32];
    bm_stream_name(k, name);
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.stream = name;
    ro.from = from;
    ro.backward = backward;
    evs_iter *it = NULL;
    assert_int_equal(evs_iter_open(s, &ro, &it), 0);
    uint64_t v = m->sver[k];
    uint64_t want = backward ? (from && from < v ? from : v) : (from ? from : 1), last_pos = backward ? UINT64_MAX : 0;
    uint64_t n = 0;
    for (;;) {
        const evs_event *ev = NULL;
        assert_int_equal(evs_iter_next(it, &ev), 0);
        if (!ev) break;
        assert_int_equal(ev->version, want);
        bm_check_event(m, ev);
        if (backward) assert_true(ev->position < last_pos); else assert_true(ev->position > last_pos);
        last_pos = ev->position;
        want = backward ? want - 1 : want + 1;
        n++;
    }
    assert_int_equal(n, backward ? (from && from < v ? from : v) : (from <= v ? v - (from ? from : 1) + 1 : 0));
    evs_iter_close(it);
}

static void bm_check_all(evs_store *s, const big_model *m, unsigned nstreams, uint64_t *rs)
{
    assert_int_equal(evs_position(s), m->n);
    bm_read_global(s, m, 0, 0, 0);
    bm_read_global(s, m, 0, 1, 0);
    for (int i = 0; i < 40; i++) {
        uint64_t from = evs_test_rand_range(rs, 1, m->n);
        bm_read_global(s, m, from, i & 1, evs_test_rand_range(rs, 0, 400));
    }
    for (unsigned k = 0; k < nstreams; k++) {
        if (!m->sver[k]) continue;
        bm_read_stream(s, m, k, 0, 0);
        bm_read_stream(s, m, k, 0, 1);
        bm_read_stream(s, m, k, evs_test_rand_range(rs, 1, m->sver[k]), (int)(k & 1));
        uint64_t v = 0;
        char name[32];
        bm_stream_name(k, name);
        assert_int_equal(evs_stream_version(s, name, &v), 0);
        assert_int_equal(v, m->sver[k]);
    }
    for (int i = 0; i < 200; i++) {
        uint64_t p = evs_test_rand_range(rs, 1, m->n);
        evs_event *ev = NULL;
        assert_int_equal(evs_get_at(s, p, &ev), 0);
        bm_check_event(m, ev);
        evs_event *byid = NULL;
        assert_int_equal(evs_get(s, ev->id, &byid), 0);
        assert_int_equal(byid->position, p);
        evs_free(byid);
        evs_free(ev);
    }
}

static void test_many_segments_reads(void **state)
{
    fx *f = *state;
    f->opt.segment_size = SEG;
    f->opt.sync = EVS_SYNC_NEVER;
    fx_open(f);
    uint64_t rs = evs_test_seed() ^ 0x5e65;
    big_model m = {0};
    bm_fill(f->s, &m, 3000, 20, &rs);
    evs_stats st;
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_true(st.segments >= 40);
    bm_check_all(f->s, &m, 20, &rs);

    /* a live iterator parked at the end follows across rolls */
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.from = m.n + 1;
    evs_iter *live = NULL;
    assert_int_equal(evs_iter_open(f->s, &ro, &live), 0);
    ro.from = 0;
    ro.stream = "many/00";
    ro.allow_missing = 1;
    ro.from = m.sver[0] + 1;
    evs_iter *live_stream = NULL;
    assert_int_equal(evs_iter_open(f->s, &ro, &live_stream), 0);
    const evs_event *ev = NULL;
    assert_int_equal(evs_iter_next(live, &ev), 0);
    assert_null(ev);
    uint64_t segs0 = st.segments, from = m.n + 1, sfrom = m.sver[0] + 1;
    bm_fill(f->s, &m, m.n + 300, 20, &rs);
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_true(st.segments >= segs0 + 3);
    for (uint64_t p = from; p <= m.n; p++) {
        assert_int_equal(evs_iter_next(live, &ev), 0);
        assert_non_null(ev);
        assert_int_equal(ev->position, p);
        bm_check_event(&m, ev);
    }
    assert_int_equal(evs_iter_next(live, &ev), 0);
    assert_null(ev);
    for (uint64_t v = sfrom; v <= m.sver[0]; v++) {
        assert_int_equal(evs_iter_next(live_stream, &ev), 0);
        assert_non_null(ev);
        assert_int_equal(ev->version, v);
        bm_check_event(&m, ev);
    }
    assert_int_equal(evs_iter_next(live_stream, &ev), 0);
    assert_null(ev);
    evs_iter_close(live);
    evs_iter_close(live_stream);

    fx_reopen(f);
    bm_check_all(f->s, &m, 20, &rs);
    fx_close(f);
    assert_int_equal(fx_verify(f->dir), 0);
    bm_free(&m);
}

/* ---- reopen and rebuilt indexes ---- */

static void reopen_after_deleting(fx *f, const char *const *patterns, size_t npat, const char *expected,
                                  int full_rebuild)
{
    fx_close(f);
    size_t removed = 0;
    for (size_t i = 0; i < npat; i++) {
        size_t k = fx_unlink(f->dir, patterns[i]);
        if (k == 0) fail_msg("no file matches %s", patterns[i]);
        removed += k;
    }
    assert_true(removed > 0);
    fx_open(f);
    if (full_rebuild) {
        evs_stats st;
        assert_int_equal(evs_stat(f->s, &st), 0);
        assert_int_equal(st.index_checkpoint_position, 0);
    }
    char *now = fx_snapshot(f->s);
    if (strcmp(now, expected) != 0) {
        const char *a = now, *b = expected;
        while (*a && *a == *b) { a++; b++; }
        fail_msg("after deleting %s: reads differ at byte %zu: got \"%.120s\" want \"%.120s\"",
                 patterns[0], (size_t)(a - now), a, b);
    }
    free(now);
    fx_close(f);
    uint64_t problems = fx_verify(f->dir);
    if (problems) fail_msg("after deleting %s and reopening: verify finds %" PRIu64 " problems", patterns[0], problems);
    fx_open(f);
}

static void test_reopen_and_rebuild(void **state)
{
    fx *f = *state;
    f->opt.segment_size = SEG;
    f->opt.sync = EVS_SYNC_NEVER;
    f->opt.checkpoint_interval = 300;   /* several runs and stream-table chunks */
    fx_open(f);
    uint64_t rs = evs_test_seed() ^ 0x4e0;
    big_model m = {0};
    bm_fill(f->s, &m, 1000, 25, &rs);
    char *expected = fx_snapshot(f->s);

    /* a plain reopen */
    fx_reopen(f);
    char *now = fx_snapshot(f->s);
    assert_string_equal(now, expected);
    free(now);
    evs_stats st;
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_int_equal(st.index_checkpoint_position, m.n);
    fx_close(f);
    assert_int_equal(fx_verify(f->dir), 0);
    char names[256][256];
    assert_true(fx_list(f->dir, "ids-*.idx", names, 256) >= 1);
    assert_true(fx_list(f->dir, "streams-*.idx", names, 256) >= 1);
    size_t noffs = fx_list(f->dir, "*.offsets.idx", names, 256);
    assert_true(noffs >= 12);
    char mid_offs[256], last_offs[256];
    snprintf(mid_offs, sizeof mid_offs, "%s", names[noffs / 2]);
    snprintf(last_offs, sizeof last_offs, "%s", names[noffs - 1]);
    fx_open(f);

    static const char *const all[] = {"*.idx"};
    static const char *const ids[] = {"ids-*.idx", "ids.manifest.idx"};
    static const char *const sidx[] = {"streams-*.idx", "streams.manifest.idx"};
    static const char *const table[] = {"streams.idx"};
    static const char *const ckpt[] = {"checkpoint.idx"};
    static const char *const ids_runs[] = {"ids-*.idx"};
    const char *const offs_mid[] = {mid_offs};
    const char *const offs_last[] = {last_offs};
    reopen_after_deleting(f, all, 1, expected, 1);
    reopen_after_deleting(f, ids, 2, expected, 0);
    reopen_after_deleting(f, sidx, 2, expected, 0);
    reopen_after_deleting(f, table, 1, expected, 1);
    reopen_after_deleting(f, ckpt, 1, expected, 0);
    reopen_after_deleting(f, offs_mid, 1, expected, 1);
    reopen_after_deleting(f, offs_last, 1, expected, 1);
    reopen_after_deleting(f, ids_runs, 1, expected, 0);

    /* the rebuilt store keeps working: append more, reopen, still identical */
    bm_fill(f->s, &m, m.n + 200, 25, &rs);
    free(expected);
    expected = fx_snapshot(f->s);
    reopen_after_deleting(f, all, 1, expected, 1);
    bm_check_all(f->s, &m, 25, &rs);
    free(expected);
    bm_free(&m);
}

int main(void)
{
    fx_main_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rollover_exact_boundaries, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_first_append_larger_than_segment, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rollover_under_group_commit, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_many_segments_reads, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_and_rebuild, fx_setup_closed, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
