/*
 * test_store_append.c — appends through the public API on real files:
 * round trips of data bytes, the served line, expected versions (single and
 * multi-stream), idempotent retries by event id, append conditions, invalid
 * input, and the append statistics. Every failing append must leave the
 * store exactly as it was (position, bytes on disk, streams).
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "evstore.h"
#include "store_fixtures.h"
#include "testutil.h"

/* What "nothing was written" compares. */
typedef struct shape {
    uint64_t position, bytes, streams, segments;
} shape;

static shape shape_of(evs_store *s)
{
    evs_stats st;
    assert_int_equal(evs_stat(s, &st), 0);
    return (shape){st.position, st.bytes, st.streams, st.segments};
}

static void assert_same_shape(evs_store *s, shape before)
{
    shape now = shape_of(s);
    assert_int_equal(now.position, before.position);
    assert_int_equal(now.bytes, before.bytes);
    assert_int_equal(now.streams, before.streams);
    assert_int_equal(now.segments, before.segments);
    assert_int_equal(evs_position(s), before.position);
}

static uint64_t version_of(evs_store *s, const char *stream)
{
    uint64_t v = UINT64_MAX;
    assert_int_equal(evs_stream_version(s, stream, &v), 0);
    return v;
}

static void assert_uuid_v7(const uint8_t id[16], int64_t t0_us, int64_t t1_us)
{
    assert_int_equal(id[6] >> 4, 7);        /* version */
    assert_int_equal(id[8] & 0xC0, 0x80);   /* RFC 9562 variant */
    uint64_t ms = 0;
    for (int i = 0; i < 6; i++) ms = ms << 8 | id[i];
    assert_in_range(ms, (uint64_t)(t0_us / 1000) - 1000, (uint64_t)(t1_us / 1000) + 1000);
}

/* ---- round trip ---- */

static void test_round_trip_bytes(void **state)
{
    fx *f = *state;
    /* data and metadata exactly as sent (already minimal), and the whitespace case */
    static const struct { const char *stream, *type, *data, *meta, *stored; } cases[] = {
        {"orders/1", "OrderPlaced",
         "{\"price\":129.95,\"big\":12345678901234567890,\"emoji\":\"😀🚀\",\"cjk\":\"注文の確認\","
         "\"esc\":\"\\u00e9\\ud83d\\ude00\\n\\\"q\\\"\"}",
         "{\"corr\":\"c-1\",\"nested\":{\"z\":1,\"a\":2}}", NULL},
        {"orders/1", "Number", "129.95", NULL, NULL},
        {"заказ/1", "BigInt", "12345678901234567890", "{}", NULL},
        {"заказ/1", "Null", NULL, NULL, "null"},
        {"orders/1", "Str", "\"注文/テスト 🎉\"", "{\"k\":[1,2,{\"x\":null}]}", NULL},
        {"орд/😀", "Spaces", "{ \"a\" : [ 1 , 2 ] ,\n \"b\" : \"x y\" }", "{ \"m\" : true }",
         "{\"a\":[1,2],\"b\":\"x y\"}"},
        {"orders/2", "Exotic", "[1e400,-0.0,1E+2,0.1e-7,-12345678901234567890123]", NULL, NULL},
        {"orders/1", "Escapes", "\"\\/\\b\\f\\r\\t\\u0001\\uffff\"", NULL, NULL},
    };
    const size_t n = sizeof cases / sizeof cases[0];
    evs_commit commits[16];
    int64_t t0 = fx_now_us();
    /* in three appends (1, then 4 as a batch to two streams via multi, then the rest one by one) */
    size_t i = 0;
    {
        evs_event_in e = fx_ev_meta(cases[0].type, cases[0].data, cases[0].meta);
        evs_append_result res;
        assert_int_equal(evs_append(f->s, cases[0].stream, EVS_EXPECT_NO_STREAM, &e, 1, &commits[0], &res), 0);
        assert_int_equal(res.first_position, 1);
        assert_int_equal(res.last_position, 1);
        assert_int_equal(res.replayed, 0);
        assert_string_equal(res.message, "");
        i = 1;
    }
    {
        evs_event_in ev[4];
        for (size_t k = 0; k < 4; k++) {
            ev[k] = fx_ev_meta(cases[i + k].type, cases[i + k].data, cases[i + k].meta);
            ev[k].stream = cases[i + k].stream;
        }
        evs_append_result res;
        assert_int_equal(evs_append_multi(f->s, ev, 4, NULL, &commits[i], &res), 0);
        assert_int_equal(res.first_position, 2);
        assert_int_equal(res.last_position, 5);
        i += 4;
    }
    for (; i < n; i++) {
        evs_event_in e = fx_ev_meta(cases[i].type, cases[i].data, cases[i].meta);
        assert_int_equal(evs_append(f->s, cases[i].stream, EVS_EXPECT_ANY, &e, 1, &commits[i], NULL), 0);
    }
    int64_t t1 = fx_now_us();

    /* what the appends returned: contiguous positions, per-stream versions, times, ids */
    uint64_t expect_version[8] = {0};
    const char *names[8] = {0};
    size_t nnames = 0;
    for (i = 0; i < n; i++) {
        assert_int_equal(commits[i].position, i + 1);
        size_t k = 0;
        while (k < nnames && strcmp(names[k], cases[i].stream)) k++;
        if (k == nnames) names[nnames++] = cases[i].stream;
        assert_int_equal(commits[i].version, ++expect_version[k]);
        assert_in_range(commits[i].time_us, t0 - 1000000, t1 + 1000000);
        if (i) assert_true(commits[i].time_us >= commits[i - 1].time_us);
        assert_uuid_v7(commits[i].id, t0, t1);
        for (size_t j = 0; j < i; j++) assert_memory_not_equal(commits[i].id, commits[j].id, 16);
    }

    /* read back: every byte as sent (or minified), metadata present or absent */
    for (int pass = 0; pass < 2; pass++) {
        evs_read_options ro;
        evs_read_options_init(&ro);
        evs_iter *it = NULL;
        assert_int_equal(evs_iter_open(f->s, &ro, &it), 0);
        for (i = 0; i < n; i++) {
            const evs_event *ev = NULL;
            assert_int_equal(evs_iter_next(it, &ev), 0);
            assert_non_null(ev);
            assert_int_equal(ev->position, commits[i].position);
            assert_int_equal(ev->version, commits[i].version);
            assert_int_equal(ev->time_us, commits[i].time_us);
            assert_memory_equal(ev->id, commits[i].id, 16);
            assert_int_equal(ev->stream_len, strlen(cases[i].stream));
            assert_string_equal(ev->stream, cases[i].stream);
            assert_int_equal(ev->type_len, strlen(cases[i].type));
            assert_string_equal(ev->type, cases[i].type);
            const char *want = cases[i].stored ? cases[i].stored : cases[i].data;
            assert_int_equal(ev->data_len, strlen(want));
            assert_memory_equal(ev->data, want, ev->data_len);
            assert_int_equal(ev->data[ev->data_len], 0);
            if (!cases[i].meta) {
                assert_null(ev->metadata);
                assert_int_equal(ev->metadata_len, 0);
            } else {
                assert_non_null(ev->metadata);
                const char *wm = strcmp(cases[i].type, "Spaces") == 0 ? "{\"m\":true}" : cases[i].meta;
                assert_int_equal(ev->metadata_len, strlen(wm));
                assert_memory_equal(ev->metadata, wm, ev->metadata_len);
            }
        }
        const evs_event *end = NULL;
        assert_int_equal(evs_iter_next(it, &end), 0);
        assert_null(end);
        evs_iter_close(it);
        fx_reopen(f);  /* and the same after a reopen */
    }
}

static void test_event_format_exact_line(void **state)
{
    fx *f = *state;
    static const uint8_t id1[16] = {0x01, 0x90, 0xa1, 0xb2, 0xc3, 0xd4, 0x7e, 0x5f,
                                    0x8a, 0x9b, 0x0c, 0x1d, 0x2e, 0x3f, 0x4a, 0x5b};
    const char *data = "{\"total\":129.95,\"n\":12345678901234567890,\"note\":\"😀 注文 \\u00e9\"}";
    const char *meta = "{\"user\":\"ü\",\"trace\":[1,2]}";
    evs_event_in ev[2];
    ev[0] = fx_ev_meta("OrderPlaced", data, meta);
    ev[0].id = id1;
    ev[1] = fx_ev("OrderNoted", NULL);
    evs_commit c[2];
    assert_int_equal(fx_append1(f->s, "pre", EVS_EXPECT_ANY, "X", "1", NULL, NULL), 0);
    assert_int_equal(fx_append1(f->s, "orders/17", EVS_EXPECT_ANY, "X", "2", NULL, NULL), 0);
    assert_int_equal(evs_append(f->s, "orders/17", 1, ev, 2, c, NULL), 0);
    evs_event_in odd = fx_ev("Odd", "[]");
    evs_commit c3;
    assert_int_equal(evs_append(f->s, "we\"ird\\name", EVS_EXPECT_ANY, &odd, 1, &c3, NULL), 0);

    char tm[32], idtxt[37], want[1024];
    evs_event *got = NULL;

    assert_int_equal(evs_get(f->s, id1, &got), 0);
    fx_time_text(c[0].time_us, tm);
    snprintf(want, sizeof want,
             "{\"position\":3,\"stream\":\"orders/17\",\"version\":2,"
             "\"id\":\"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\",\"type\":\"OrderPlaced\","
             "\"time\":\"%s\",\"data\":%s,\"metadata\":%s}", tm, data, meta);
    char *line = fx_format(got);
    assert_string_equal(line, want);
    /* the needed length, and nothing useful written when the buffer is short */
    assert_int_equal(evs_event_format(got, NULL, 0), strlen(want));
    char small[16];
    assert_int_equal(evs_event_format(got, small, sizeof small), strlen(want));
    free(line);
    evs_free(got);

    assert_int_equal(evs_get_at(f->s, 4, &got), 0);
    fx_time_text(c[1].time_us, tm);
    fx_uuid_text(c[1].id, idtxt);
    snprintf(want, sizeof want,
             "{\"position\":4,\"stream\":\"orders/17\",\"version\":3,\"id\":\"%s\",\"type\":\"OrderNoted\","
             "\"time\":\"%s\",\"data\":null}", idtxt, tm);
    line = fx_format(got);
    assert_string_equal(line, want);
    free(line);
    evs_free(got);

    assert_int_equal(evs_get_at(f->s, 5, &got), 0);
    fx_time_text(c3.time_us, tm);
    fx_uuid_text(c3.id, idtxt);
    snprintf(want, sizeof want,
             "{\"position\":5,\"stream\":\"we\\\"ird\\\\name\",\"version\":1,\"id\":\"%s\",\"type\":\"Odd\","
             "\"time\":\"%s\",\"data\":[]}", idtxt, tm);
    line = fx_format(got);
    assert_string_equal(line, want);
    free(line);
    evs_free(got);
}

/* ---- expected versions ---- */

static void expect_conflict(fx *f, const char *stream, int64_t expected, uint64_t actual, size_t nevents)
{
    shape before = shape_of(f->s);
    evs_event_in ev[4];
    for (size_t i = 0; i < nevents; i++) ev[i] = fx_ev("T", "{\"conflict\":true}");
    evs_append_result res;
    memset(&res, 0x5a, sizeof res);
    assert_int_equal(evs_append(f->s, stream, expected, ev, nevents, NULL, &res), EVS_ECONFLICT);
    assert_int_equal(res.failed_index, 0);
    assert_int_equal(res.expected_version, expected);
    assert_int_equal(res.actual_version, actual);
    assert_int_equal(res.replayed, 0);
    assert_true(strlen(res.message) > 0 && strlen(res.message) < sizeof res.message);
    assert_non_null(strstr(res.message, stream));
    assert_same_shape(f->s, before);
    assert_int_equal(version_of(f->s, stream), actual);
}

static void expect_ok(fx *f, const char *stream, int64_t expected, uint64_t new_version, size_t nevents)
{
    uint64_t pos = evs_position(f->s);
    evs_event_in ev[4];
    evs_commit c[4];
    for (size_t i = 0; i < nevents; i++) ev[i] = fx_ev("T", "{\"ok\":true}");
    evs_append_result res;
    assert_int_equal(evs_append(f->s, stream, expected, ev, nevents, c, &res), 0);
    assert_int_equal(res.first_position, pos + 1);
    assert_int_equal(res.last_position, pos + nevents);
    assert_string_equal(res.message, "");
    for (size_t i = 0; i < nevents; i++) {
        assert_int_equal(c[i].position, pos + 1 + i);
        assert_int_equal(c[i].version, new_version - nevents + 1 + i);
    }
    assert_int_equal(version_of(f->s, stream), new_version);
    assert_int_equal(evs_position(f->s), pos + nevents);
}

static void test_expected_version_single_stream(void **state)
{
    fx *f = *state;
    /* no_stream */
    expect_ok(f, "a", EVS_EXPECT_NO_STREAM, 1, 1);
    expect_conflict(f, "a", EVS_EXPECT_NO_STREAM, 1, 1);
    expect_conflict(f, "a", EVS_EXPECT_NO_STREAM, 1, 3);
    /* exists */
    expect_conflict(f, "b", EVS_EXPECT_EXISTS, 0, 1);
    expect_conflict(f, "b", EVS_EXPECT_EXISTS, 0, 2);
    expect_ok(f, "a", EVS_EXPECT_EXISTS, 3, 2);
    /* exact N */
    expect_ok(f, "a", 3, 4, 1);
    expect_conflict(f, "a", 3, 4, 1);
    expect_conflict(f, "a", 5, 4, 2);
    expect_conflict(f, "a", 0, 4, 1);
    expect_ok(f, "a", 4, 7, 3);
    /* exact 0 is no_stream */
    expect_ok(f, "c", 0, 1, 1);
    expect_conflict(f, "c", 0, 1, 1);
    expect_conflict(f, "d", 1, 0, 1);
    /* any, on new and existing streams */
    expect_ok(f, "d", EVS_EXPECT_ANY, 2, 2);
    expect_ok(f, "a", EVS_EXPECT_ANY, 8, 1);
    /* the stream that never got an event does not exist */
    assert_int_equal(version_of(f->s, "b"), 0);
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.stream = "b";
    evs_iter *it = NULL;
    assert_int_equal(evs_iter_open(f->s, &ro, &it), EVS_ENOTFOUND);
    assert_null(it);
    /* the conflict messages use the words of the API */
    evs_append_result res;
    assert_int_equal(fx_append1(f->s, "a", EVS_EXPECT_NO_STREAM, "T", NULL, NULL, &res), EVS_ECONFLICT);
    assert_non_null(strstr(res.message, "no_stream"));
    assert_int_equal(fx_append1(f->s, "zz", EVS_EXPECT_EXISTS, "T", NULL, NULL, &res), EVS_ECONFLICT);
    assert_non_null(strstr(res.message, "exists"));
    /* everything survives a reopen */
    fx_reopen(f);
    assert_int_equal(version_of(f->s, "a"), 8);
    assert_int_equal(version_of(f->s, "c"), 1);
    assert_int_equal(version_of(f->s, "d"), 2);
    assert_int_equal(evs_position(f->s), 11);
    expect_conflict(f, "a", 7, 8, 1);
    expect_ok(f, "a", 8, 9, 1);
}

static void test_expected_version_multi_stream(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_append1(f->s, "acc/1", EVS_EXPECT_ANY, "Opened", "1", NULL, NULL), 0);
    assert_int_equal(fx_append1(f->s, "acc/2", EVS_EXPECT_ANY, "Opened", "2", NULL, NULL), 0);
    shape before = shape_of(f->s);

    /* the third event's expectation fails: nothing of the five is written */
    evs_event_in ev[5];
    const char *streams[5] = {"acc/1", "acc/2", "acc/3", "acc/1", "new/1"};
    int64_t exp[5] = {1, 1, 7, EVS_EXPECT_ANY, EVS_EXPECT_NO_STREAM};
    for (int i = 0; i < 5; i++) {
        ev[i] = fx_ev("Moved", "{\"n\":1}");
        ev[i].stream = streams[i];
        ev[i].expected_version = exp[i];
    }
    evs_append_result res;
    assert_int_equal(evs_append_multi(f->s, ev, 5, NULL, NULL, &res), EVS_ECONFLICT);
    assert_int_equal(res.failed_index, 2);
    assert_int_equal(res.expected_version, 7);
    assert_int_equal(res.actual_version, 0);
    assert_non_null(strstr(res.message, "acc/3"));
    assert_same_shape(f->s, before);
    assert_int_equal(version_of(f->s, "acc/1"), 1);
    assert_int_equal(version_of(f->s, "acc/2"), 1);
    assert_int_equal(version_of(f->s, "acc/3"), 0);
    assert_int_equal(version_of(f->s, "new/1"), 0);

    /* fix it: all five land in one contiguous range, versions per stream */
    ev[2].expected_version = EVS_EXPECT_NO_STREAM;
    evs_commit c[5];
    assert_int_equal(evs_append_multi(f->s, ev, 5, NULL, c, &res), 0);
    assert_int_equal(res.first_position, 3);
    assert_int_equal(res.last_position, 7);
    const uint64_t want_versions[5] = {2, 2, 1, 3, 1};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(c[i].position, 3 + (uint64_t)i);
        assert_int_equal(c[i].version, want_versions[i]);
        assert_int_equal(c[i].time_us, c[0].time_us);  /* one commit */
    }

    /* expectations see earlier events of the same call: 0 then 1 on one stream */
    evs_event_in two[3];
    two[0] = fx_ev("A", NULL); two[0].stream = "seq"; two[0].expected_version = 0;
    two[1] = fx_ev("B", NULL); two[1].stream = "seq"; two[1].expected_version = 1;
    two[2] = fx_ev("C", NULL); two[2].stream = "seq"; two[2].expected_version = EVS_EXPECT_EXISTS;
    assert_int_equal(evs_append_multi(f->s, two, 3, NULL, c, &res), 0);
    assert_int_equal(c[0].version, 1);
    assert_int_equal(c[1].version, 2);
    assert_int_equal(c[2].version, 3);
    /* 0 then 0 fails at the second event, nothing written */
    before = shape_of(f->s);
    two[0].stream = two[1].stream = "seq2";
    two[1].expected_version = 0;
    assert_int_equal(evs_append_multi(f->s, two, 2, NULL, c, &res), EVS_ECONFLICT);
    assert_int_equal(res.failed_index, 1);
    assert_int_equal(res.expected_version, 0);
    assert_int_equal(res.actual_version, 1);
    assert_same_shape(f->s, before);
    assert_int_equal(version_of(f->s, "seq2"), 0);
    /* no_stream then exists in one call */
    two[1].expected_version = EVS_EXPECT_EXISTS;
    two[0].expected_version = EVS_EXPECT_NO_STREAM;
    assert_int_equal(evs_append_multi(f->s, two, 2, NULL, c, &res), 0);
    assert_int_equal(version_of(f->s, "seq2"), 2);
    /* a stream missing on one event of a multi append */
    before = shape_of(f->s);
    two[1].stream = NULL;
    assert_int_equal(evs_append_multi(f->s, two, 2, NULL, c, &res), EVS_EINVAL);
    assert_int_equal(res.failed_index, 1);
    assert_non_null(strstr(res.message, "stream"));
    assert_same_shape(f->s, before);
}

/* ---- idempotency ---- */

static void make_id(uint64_t *rs, uint8_t id[16])
{
    evs_test_rand_bytes(rs, id, 16);
    id[6] = (uint8_t)((id[6] & 0x0F) | 0x40);
    id[8] = (uint8_t)((id[8] & 0x3F) | 0x80);
}

static void expect_duplicate(fx *f, const evs_event_in *ev, size_t n, int multi, const char *stream)
{
    shape before = shape_of(f->s);
    evs_append_result res;
    evs_commit c[8];
    int rc = multi ? evs_append_multi(f->s, ev, n, NULL, c, &res)
                   : evs_append(f->s, stream, EVS_EXPECT_ANY, ev, n, c, &res);
    assert_int_equal(rc, EVS_EDUPLICATE);
    assert_int_equal(res.replayed, 0);
    assert_true(res.failed_index < n);
    assert_true(strlen(res.message) > 0);
    assert_same_shape(f->s, before);
}

static void expect_replay(fx *f, const evs_event_in *ev, size_t n, int multi, const char *stream,
                          int64_t expected, const evs_commit *orig)
{
    shape before = shape_of(f->s);
    evs_append_result res;
    evs_commit c[8];
    memset(c, 0, sizeof c);
    int rc = multi ? evs_append_multi(f->s, ev, n, NULL, c, &res)
                   : evs_append(f->s, stream, expected, ev, n, c, &res);
    assert_int_equal(rc, 0);
    assert_int_equal(res.replayed, 1);
    assert_int_equal(res.first_position, orig[0].position);
    assert_int_equal(res.last_position, orig[n - 1].position);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(c[i].position, orig[i].position);
        assert_int_equal(c[i].version, orig[i].version);
        assert_int_equal(c[i].time_us, orig[i].time_us);
        assert_memory_equal(c[i].id, orig[i].id, 16);
    }
    assert_same_shape(f->s, before);
    /* without out or result too */
    rc = multi ? evs_append_multi(f->s, ev, n, NULL, NULL, NULL)
               : evs_append(f->s, stream, expected, ev, n, NULL, NULL);
    assert_int_equal(rc, 0);
    assert_same_shape(f->s, before);
}

static void test_idempotent_retries(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0x1d;
    uint8_t ids[6][16];
    for (int i = 0; i < 6; i++) make_id(&rs, ids[i]);

    assert_int_equal(fx_append1(f->s, "before", EVS_EXPECT_ANY, "T", NULL, NULL, NULL), 0);
    evs_event_in ev[4];
    for (int i = 0; i < 3; i++) {
        ev[i] = fx_ev("Paid", "{\"amount\":129.95}");
        ev[i].id = ids[i];
    }
    evs_commit orig[3];
    assert_int_equal(evs_append(f->s, "pay/1", EVS_EXPECT_NO_STREAM, ev, 3, orig, NULL), 0);
    assert_int_equal(orig[0].position, 2);
    for (int i = 0; i < 3; i++) assert_memory_equal(orig[i].id, ids[i], 16);
    /* more writes after it, so a replay must not report "the end" */
    assert_int_equal(fx_append1(f->s, "pay/1", EVS_EXPECT_ANY, "Other", NULL, NULL, NULL), 0);
    assert_int_equal(fx_append1(f->s, "after", EVS_EXPECT_ANY, "T", NULL, NULL, NULL), 0);

    /* the same write again: the original result, even though no_stream no longer holds */
    expect_replay(f, ev, 3, 0, "pay/1", EVS_EXPECT_NO_STREAM, orig);
    expect_replay(f, ev, 3, 0, "pay/1", EVS_EXPECT_ANY, orig);
    /* the same write expressed as a multi-stream append */
    evs_event_in mev[4];
    for (int i = 0; i < 3; i++) { mev[i] = ev[i]; mev[i].stream = "pay/1"; }
    expect_replay(f, mev, 3, 1, NULL, 0, orig);

    /* subset, suffix, superset, reordered, other stream, mixed with a new id */
    expect_duplicate(f, ev, 2, 0, "pay/1");
    expect_duplicate(f, ev + 1, 2, 0, "pay/1");
    expect_duplicate(f, ev + 2, 1, 0, "pay/1");
    ev[3] = fx_ev("Paid", NULL);
    ev[3].id = ids[3];
    expect_duplicate(f, ev, 4, 0, "pay/1");
    evs_event_in re[3] = {ev[1], ev[0], ev[2]};
    expect_duplicate(f, re, 3, 0, "pay/1");
    expect_duplicate(f, ev, 3, 0, "pay/2");
    for (int i = 0; i < 3; i++) mev[i].stream = i == 1 ? "pay/2" : "pay/1";
    expect_duplicate(f, mev, 3, 1, NULL);
    evs_event_in mixed[2] = {ev[3], ev[0]};
    expect_duplicate(f, mixed, 2, 0, "pay/1");
    evs_event_in noid[2] = {ev[0], fx_ev("Paid", NULL)};
    expect_duplicate(f, noid, 2, 0, "pay/1");
    assert_int_equal(version_of(f->s, "pay/2"), 0);

    /* the same id twice in one call is never a retry */
    shape before = shape_of(f->s);
    evs_event_in twice[2] = {ev[4 - 1], ev[4 - 1]};
    twice[0].id = twice[1].id = ids[4];
    evs_append_result res;
    assert_int_equal(evs_append(f->s, "pay/3", EVS_EXPECT_ANY, twice, 2, NULL, &res), EVS_EINVAL);
    assert_non_null(strstr(res.message, "twice"));
    twice[1].id = ids[0];  /* and twice with one already stored */
    twice[0].id = ids[0];
    assert_int_equal(evs_append(f->s, "pay/1", EVS_EXPECT_ANY, twice, 2, NULL, &res), EVS_EINVAL);
    /* the nil UUID is not an id */
    static const uint8_t nil[16];
    evs_event_in niled = fx_ev("T", NULL);
    niled.id = nil;
    assert_int_equal(evs_append(f->s, "pay/3", EVS_EXPECT_ANY, &niled, 1, NULL, &res), EVS_EINVAL);
    assert_true(strlen(res.message) > 0);
    assert_same_shape(f->s, before);

    /* a single-event write with an id: replay, then a different stream is a duplicate */
    evs_event_in one = fx_ev("Single", "{}");
    one.id = ids[5];
    evs_commit c1;
    assert_int_equal(evs_append(f->s, "solo", EVS_EXPECT_ANY, &one, 1, &c1, NULL), 0);
    expect_replay(f, &one, 1, 0, "solo", EVS_EXPECT_ANY, &c1);
    expect_duplicate(f, &one, 1, 0, "solo2");

    /* ids are permanent: the same after close and reopen, and after an index rebuild */
    fx_reopen(f);
    expect_replay(f, ev, 3, 0, "pay/1", EVS_EXPECT_ANY, orig);
    expect_replay(f, &one, 1, 0, "solo", EVS_EXPECT_ANY, &c1);
    expect_duplicate(f, ev, 2, 0, "pay/1");
    fx_close(f);
    assert_true(fx_unlink(f->dir, "*.idx") > 0);
    fx_open(f);
    expect_replay(f, ev, 3, 0, "pay/1", EVS_EXPECT_ANY, orig);
    expect_duplicate(f, re, 3, 0, "pay/1");
    evs_event *got = NULL;
    assert_int_equal(evs_get(f->s, ids[1], &got), 0);
    assert_int_equal(got->position, orig[1].position);
    evs_free(got);
    assert_int_equal(evs_get(f->s, ids[4], &got), EVS_ENOTFOUND);
    assert_null(got);
}

/* ---- conditions ---- */

static int cond_append(fx *f, const char *const *types, size_t ntypes, const char *prefix, uint64_t after,
                       evs_append_result *res)
{
    evs_condition cond;
    memset(&cond, 0, sizeof cond);
    cond.filter.types = types;
    cond.filter.ntypes = ntypes;
    cond.filter.stream_prefix = prefix;
    cond.after = after;
    evs_event_in ev[2];
    ev[0] = fx_ev("Reserved", "{\"seat\":\"1A\"}");
    ev[0].stream = "seat/1A";
    ev[1] = fx_ev("Charged", "{\"amount\":10}");
    ev[1].stream = "card/9";
    return evs_append_multi(f->s, ev, 2, &cond, NULL, res);
}

static void test_condition(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_append1(f->s, "x/1", EVS_EXPECT_ANY, "A", NULL, NULL, NULL), 0);  /* 1 */
    assert_int_equal(fx_append1(f->s, "y/1", EVS_EXPECT_ANY, "B", NULL, NULL, NULL), 0);  /* 2 */
    assert_int_equal(fx_append1(f->s, "x/2", EVS_EXPECT_ANY, "C", NULL, NULL, NULL), 0);  /* 3 */
    static const char *const tA[] = {"A"}, *const tAC[] = {"A", "C"}, *const tZ[] = {"Z"}, *const tB[] = {"B"};
    static const struct {
        const char *const *types; size_t ntypes; const char *prefix; uint64_t after; int fails;
    } cases[] = {
        {tA, 1, NULL, 0, 1},        /* A at 1 */
        {tA, 1, NULL, 1, 0},
        {tA, 1, "y/", 0, 0},        /* A exists, but not under y/ */
        {NULL, 0, "y/", 1, 1},      /* B at 2 */
        {NULL, 0, "y/", 2, 0},
        {tAC, 2, NULL, 2, 1},       /* C at 3 */
        {tAC, 2, "x/", 3, 0},
        {tZ, 1, NULL, 0, 0},        /* no Z anywhere */
        {NULL, 0, "zz/", 0, 0},
        {tB, 1, "x/", 0, 0},
        {NULL, 0, NULL, 2, 1},      /* anything after 2 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        shape before = shape_of(f->s);
        evs_append_result res;
        int rc = cond_append(f, cases[i].types, cases[i].ntypes, cases[i].prefix, cases[i].after, &res);
        if (cases[i].fails) {
            assert_int_equal(rc, EVS_ECONDITION);
            assert_true(strlen(res.message) > 0);
            assert_same_shape(f->s, before);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(res.first_position, before.position + 1);
            assert_int_equal(res.last_position, before.position + 2);
        }
    }
    /* the events written by a passing condition count for the next one */
    uint64_t end = evs_position(f->s);
    static const char *const tR[] = {"Reserved"};
    evs_append_result res;
    assert_int_equal(cond_append(f, tR, 1, "seat/", end, &res), 0);
    assert_int_equal(cond_append(f, tR, 1, "seat/", end, &res), EVS_ECONDITION);
    /* after at or past the end never fails */
    end = evs_position(f->s);
    assert_int_equal(cond_append(f, NULL, 0, NULL, end, &res), 0);
    assert_int_equal(cond_append(f, NULL, 0, NULL, end + 100, &res), 0);
    /* a passing condition with a failing expected version is a conflict */
    evs_event_in ev = fx_ev("A", NULL);
    ev.stream = "x/1";
    ev.expected_version = 5;
    evs_condition cond;
    memset(&cond, 0, sizeof cond);
    cond.after = evs_position(f->s);
    shape before = shape_of(f->s);
    assert_int_equal(evs_append_multi(f->s, &ev, 1, &cond, NULL, &res), EVS_ECONFLICT);
    assert_same_shape(f->s, before);
}

/* ---- invalid input ---- */

typedef struct bad_case {
    const char *what;
    const char *stream;
    const char *type;
    const char *data;
    size_t data_len;      /* 0: strlen(data) */
    const char *meta;
    int rc;
} bad_case;

static void test_invalid_input(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_append1(f->s, "ok", EVS_EXPECT_ANY, "T", "1", NULL, NULL), 0);
    char s255[256], s256[257];
    memset(s255, 'a', 255); s255[255] = 0;
    memset(s256, 'a', 256); s256[256] = 0;
    /* 255 bytes made of 2-byte characters plus one: still 255 bytes */
    char u255[256];
    for (int i = 0; i < 127; i++) memcpy(u255 + 2 * i, "é", 2);
    u255[254] = 'x'; u255[255] = 0;
    const bad_case cases[] = {
        {"empty stream", "", "T", NULL, 0, NULL, EVS_EINVAL},
        {"256-byte stream", s256, "T", NULL, 0, NULL, EVS_EINVAL},
        {"control char in stream", "a\x01" "b", "T", NULL, 0, NULL, EVS_EINVAL},
        {"newline in stream", "a\nb", "T", NULL, 0, NULL, EVS_EINVAL},
        {"DEL in stream", "a\x7f", "T", NULL, 0, NULL, EVS_EINVAL},
        {"C1 control in stream", "a\xc2\x85", "T", NULL, 0, NULL, EVS_EINVAL},
        {"invalid UTF-8 in stream", "a\xff", "T", NULL, 0, NULL, EVS_EINVAL},
        {"truncated UTF-8 in stream", "a\xc3", "T", NULL, 0, NULL, EVS_EINVAL},
        {"overlong UTF-8 in stream", "a\xc0\xaf", "T", NULL, 0, NULL, EVS_EINVAL},
        {"surrogate in stream", "a\xed\xa0\x80", "T", NULL, 0, NULL, EVS_EINVAL},
        {"missing type", "s", NULL, NULL, 0, NULL, EVS_EINVAL},
        {"empty type", "s", "", NULL, 0, NULL, EVS_EINVAL},
        {"256-byte type", "s", s256, NULL, 0, NULL, EVS_EINVAL},
        {"control char in type", "s", "T\t", NULL, 0, NULL, EVS_EINVAL},
        {"invalid UTF-8 in type", "s", "T\xfe", NULL, 0, NULL, EVS_EINVAL},
        {"unterminated object", "s", "T", "{", 0, NULL, EVS_EINVAL},
        {"duplicate keys", "s", "T", "{\"a\":1,\"a\":2}", 0, NULL, EVS_EINVAL},
        {"bare word", "s", "T", "nul", 0, NULL, EVS_EINVAL},
        {"trailing garbage", "s", "T", "{} x", 0, NULL, EVS_EINVAL},
        {"two values", "s", "T", "1 2", 0, NULL, EVS_EINVAL},
        {"only whitespace", "s", "T", "  \n", 0, NULL, EVS_EINVAL},
        {"invalid UTF-8 in data", "s", "T", "\"\xff\"", 0, NULL, EVS_EINVAL},
        {"NUL escape in data", "s", "T", "\"a\\u0000b\"", 0, NULL, EVS_EINVAL},
        {"single quotes", "s", "T", "{'a':1}", 0, NULL, EVS_EINVAL},
        {"metadata array", "s", "T", NULL, 0, "[1]", EVS_EINVAL},
        {"metadata number", "s", "T", NULL, 0, "1", EVS_EINVAL},
        {"metadata string", "s", "T", NULL, 0, "\"x\"", EVS_EINVAL},
        {"metadata null", "s", "T", NULL, 0, "null", EVS_EINVAL},
        {"metadata invalid", "s", "T", NULL, 0, "{\"a\":}", EVS_EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        for (int multi = 0; multi < 2; multi++) {
            /* alone, and as the third event of a batch of four */
            for (int pos = 0; pos < 2; pos++) {
                shape before = shape_of(f->s);
                evs_event_in ev[4];
                for (int k = 0; k < 4; k++) {
                    ev[k] = fx_ev("Good", "{\"fine\":1}");
                    ev[k].stream = "good";
                }
                size_t bad = pos ? 2 : 0, n = pos ? 4 : 1;
                ev[bad] = fx_ev_meta(c->type, c->data, c->meta);
                if (c->data && c->data_len) ev[bad].data_len = c->data_len;
                ev[bad].stream = c->stream;
                evs_append_result res;
                memset(&res, 0, sizeof res);
                int rc;
                if (multi) {
                    rc = evs_append_multi(f->s, ev, n, NULL, NULL, &res);
                } else if (pos) {
                    /* one stream for the batch: the stream is the bad one or not */
                    ev[bad].stream = NULL;
                    rc = evs_append(f->s, strcmp(c->stream, "s") ? c->stream : "good", EVS_EXPECT_ANY, ev, n, NULL, &res);
                    if (strcmp(c->stream, "s")) bad = 0;  /* the stream is every event's */
                } else {
                    rc = evs_append(f->s, c->stream, EVS_EXPECT_ANY, ev, n, NULL, &res);
                }
                if (rc != c->rc)
                    fail_msg("%s (multi=%d, batch=%d): got %s, want %s (%s)", c->what, multi, pos,
                             evs_errname(rc), evs_errname(c->rc), res.message);
                assert_int_equal(res.failed_index, bad);
                assert_true(strlen(res.message) > 0);
                assert_same_shape(f->s, before);
            }
        }
    }
    /* the limits themselves are fine */
    assert_int_equal(fx_append1(f->s, s255, EVS_EXPECT_ANY, s255, NULL, NULL, NULL), 0);
    assert_int_equal(fx_append1(f->s, u255, EVS_EXPECT_ANY, u255, NULL, NULL, NULL), 0);
    assert_int_equal(version_of(f->s, s255), 1);
    assert_int_equal(version_of(f->s, u255), 1);
    /* n = 0 */
    shape before = shape_of(f->s);
    evs_event_in one = fx_ev("T", NULL);
    evs_append_result res;
    memset(&res, 0, sizeof res);
    assert_int_equal(evs_append(f->s, "s", EVS_EXPECT_ANY, &one, 0, NULL, &res), EVS_EINVAL);
    assert_true(strlen(res.message) > 0);
    memset(&res, 0, sizeof res);
    assert_int_equal(evs_append_multi(f->s, &one, 0, NULL, NULL, &res), EVS_EINVAL);
    assert_true(strlen(res.message) > 0);
    /* an expected version that is none of the defined values */
    one.stream = "s";
    one.expected_version = -4;
    memset(&res, 0, sizeof res);
    assert_int_equal(evs_append_multi(f->s, &one, 1, NULL, NULL, &res), EVS_EINVAL);
    assert_true(strlen(res.message) > 0);
    assert_int_equal(evs_append(f->s, "s", -4, &one, 1, NULL, NULL), EVS_EINVAL);
    assert_same_shape(f->s, before);
    /* the stream name validator agrees */
    assert_int_equal(evs_validate_stream_name(s255, 255), 0);
    assert_int_equal(evs_validate_stream_name(s256, 256), EVS_EINVAL);
    assert_int_equal(evs_validate_stream_name("a\xff", 2), EVS_EINVAL);
}

/* An expected_version below EVS_EXPECT_EXISTS is EVS_EINVAL with the result
 * filled (failed_index, message), as evstore.h promises for EVS_EINVAL. */
static void test_invalid_expected_version_has_message(void **state)
{
    fx *f = *state;
    evs_event_in one = fx_ev("T", NULL);
    evs_append_result res;
    memset(&res, 0x41, sizeof res);
    res.message[sizeof res.message - 1] = 0;
    assert_int_equal(evs_append(f->s, "s", -4, &one, 1, NULL, &res), EVS_EINVAL);
    assert_int_equal(res.failed_index, 0);
    assert_true(strlen(res.message) > 0 && res.message[0] != 'A');
}

static void test_event_size_limit(void **state)
{
    fx *f = *state;
    fx_close(f);
    f->opt.max_event_size = 4096;
    fx_open(f);
    /* stream + type + data + metadata bytes; at the limit is fine, one over is not */
    size_t room = 4096 - 1 - 1;                 /* stream "s", type "t" */
    char *data = malloc(room + 2);
    assert_non_null(data);
    data[0] = '"';
    memset(data + 1, 'x', room - 2);
    data[room - 1] = '"';
    data[room] = 0;
    evs_commit c;
    assert_int_equal(fx_append1(f->s, "s", EVS_EXPECT_ANY, "t", data, &c, NULL), 0);
    evs_event *got = NULL;
    assert_int_equal(evs_get_at(f->s, c.position, &got), 0);
    assert_int_equal(got->data_len, room);
    evs_free(got);
    shape before = shape_of(f->s);
    data[room - 1] = 'x';
    data[room] = '"';
    data[room + 1] = 0;
    evs_append_result res;
    assert_int_equal(fx_append1(f->s, "s", EVS_EXPECT_ANY, "t", data, NULL, &res), EVS_ETOOBIG);
    assert_int_equal(res.failed_index, 0);
    assert_true(strlen(res.message) > 0);
    /* metadata counts too, and so does the second event of a batch */
    evs_event_in ev[2] = {fx_ev("t", "1"), fx_ev_meta("t", "\"x\"", NULL)};
    char *meta = malloc(4200);
    assert_non_null(meta);
    snprintf(meta, 4200, "{\"m\":\"%04090d\"}", 0);
    ev[1].metadata = meta;
    ev[1].metadata_len = strlen(meta);
    assert_int_equal(evs_append(f->s, "s", EVS_EXPECT_ANY, ev, 2, NULL, &res), EVS_ETOOBIG);
    assert_int_equal(res.failed_index, 1);
    assert_same_shape(f->s, before);
    /* the default limit is 1 MiB */
    fx_close(f);
    evs_options_init(&f->opt);
    f->opt.log = fx_log_cb;
    f->opt.log_ctx = &f->log;
    fx_open(f);
    char *big = malloc((1u << 20) + 8);
    assert_non_null(big);
    big[0] = '"';
    memset(big + 1, 'y', (1u << 20) + 1);
    big[(1u << 20) + 2 - 1] = '"';
    big[(1u << 20) + 2] = 0;                   /* 1 MiB + 2 bytes of data */
    before = shape_of(f->s);
    assert_int_equal(fx_append1(f->s, "s", EVS_EXPECT_ANY, "t", big, NULL, &res), EVS_ETOOBIG);
    assert_same_shape(f->s, before);
    big[(1u << 20) - 2 - 1] = '"';
    big[(1u << 20) - 2] = 0;                   /* 1 MiB - 2 bytes of data: exactly the limit */
    assert_int_equal(fx_append1(f->s, "s", EVS_EXPECT_ANY, "t", big, &c, NULL), 0);
    assert_int_equal(evs_get_at(f->s, c.position, &got), 0);
    assert_int_equal(got->data_len, (1u << 20) - 2);
    assert_memory_equal(got->data, big, got->data_len);
    evs_free(got);
    free(big);
    free(meta);
    free(data);
}

/* ---- statistics ---- */

static void test_stats(void **state)
{
    fx *f = *state;
    evs_stats st;
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_int_equal(st.events, 0);
    assert_int_equal(st.position, 0);
    assert_int_equal(st.streams, 0);
    assert_int_equal(st.segments, 1);
    assert_int_equal(st.appends, 0);
    assert_int_equal(st.sync, EVS_SYNC_ALWAYS);
    assert_int_equal(st.read_only, 0);
    assert_int_equal(st.failed, 0);
    assert_null(evs_failure(f->s));

    for (int i = 0; i < 5; i++) {
        char stream[16];
        snprintf(stream, sizeof stream, "st/%d", i % 3);
        assert_int_equal(fx_append1(f->s, stream, EVS_EXPECT_ANY, "T", "{\"i\":1}", NULL, NULL), 0);
    }
    evs_event_in ev[3] = {fx_ev("T", "1"), fx_ev("T", "2"), fx_ev("T", "3")};
    assert_int_equal(evs_append(f->s, "st/9", EVS_EXPECT_ANY, ev, 3, NULL, NULL), 0);
    /* failures are not appends */
    assert_int_equal(evs_append(f->s, "st/9", 0, ev, 3, NULL, NULL), EVS_ECONFLICT);
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_int_equal(st.events, 8);
    assert_int_equal(st.position, 8);
    assert_int_equal(st.streams, 4);
    assert_int_equal(st.segments, 1);
    assert_int_equal(st.appends, 6);
    assert_int_equal(st.appended_events, 8);
    assert_true(st.fsyncs > 0);
    assert_true(st.group_commits >= 1 && st.group_commits <= st.appends);
    char names[4][256];
    assert_int_equal(fx_list(f->dir, "*.seg", names, 4), 1);
    assert_string_equal(names[0], "00000000000000000001.seg");
    assert_int_equal(st.bytes, fx_file_size(f->dir, names[0]));

    /* reads count events served by iterators and gets */
    uint64_t reads0 = st.reads, n = 0;
    evs_read_options ro;
    evs_read_options_init(&ro);
    free(fx_read_lines(f->s, &ro, &n));
    assert_int_equal(n, 8);
    evs_event *got = NULL;
    assert_int_equal(evs_get_at(f->s, 3, &got), 0);
    evs_free(got);
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_int_equal(st.reads, reads0 + 9);

    /* counters are per open; totals survive */
    fx_reopen(f);
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_int_equal(st.events, 8);
    assert_int_equal(st.streams, 4);
    assert_int_equal(st.appends, 0);
    assert_int_equal(st.appended_events, 0);
    assert_int_equal(st.recovered_truncated_bytes, 0);
    assert_int_equal(st.index_checkpoint_position, 8);

    /* the other sync policies report themselves */
    fx_close(f);
    f->opt.sync = EVS_SYNC_NEVER;
    fx_open(f);
    assert_int_equal(fx_append1(f->s, "st/0", EVS_EXPECT_ANY, "T", NULL, NULL, NULL), 0);
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_int_equal(st.sync, EVS_SYNC_NEVER);
    assert_int_equal(st.fsyncs, 0);
    assert_int_equal(st.appends, 1);
    fx_close(f);
    f->opt.sync = EVS_SYNC_INTERVAL;
    f->opt.sync_interval_ms = 5;
    fx_open(f);
    assert_int_equal(fx_append1(f->s, "st/0", EVS_EXPECT_ANY, "T", NULL, NULL, NULL), 0);
    assert_int_equal(evs_stat(f->s, &st), 0);
    assert_int_equal(st.sync, EVS_SYNC_INTERVAL);
    assert_int_equal(st.events, 10);
}

int main(void)
{
    fx_main_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_bytes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_event_format_exact_line, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_expected_version_single_stream, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_expected_version_multi_stream, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_retries, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_condition, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_input, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_event_size_limit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stats, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_expected_version_has_message, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
