/*
 * test_http_api.c — black-box tests of evstored's HTTP API (SPEC §2, §4):
 * every route that exists, every status and error code, the precise rules
 * (name decoding, inclusive from, limits, byte-exact data and metadata, the
 * 409 body, 201 vs 200 for repeated writes), and byte-exact round trips of
 * Unicode and numbers across a server restart.
 *
 * Each test starts the real build/evstored on a kernel-chosen loopback port
 * with a fresh data directory and stops it with SIGTERM (exit 0 asserted).
 */
#include "../http/http_test.h"

/* ---------------------------------------------------------------- helpers */

/* Static, not allocated: a setup that fails (cmocka then skips the
 * teardown) must not leak under LeakSanitizer. */
static ht_server the_server;

static int setup(void **state)
{
    ht_server *s = &the_server;
    *state = s;
    ht_server_init(s, NULL);
    ht_server_start(s);
    return 0;
}

static int teardown(void **state)
{
    ht_server_free(*state);
    return 0;
}

/* GET path: 200, application/x-ndjson, every line a JSON object. */
typedef struct lines {
    char **v;                        /* the raw lines */
    json_t **j;                      /* parsed */
    size_t n;
    char *store;
} lines;

static lines get_lines(ht_server *s, const char *path)
{
    ht_resp r;
    ht_get(s, path, &r);
    HT_EXPECT_STATUS(&r, 200, path);
    char ct[128];
    ht_header(r.head, "Content-Type", ct, sizeof ct);
    if (strcmp(ct, "application/x-ndjson") != 0)
        fail_msg("GET %s: expected Content-Type application/x-ndjson, got \"%s\"", path, ct);
    lines L = {0};
    L.n = ht_lines(r.body, r.len, &L.v, &L.store, path);
    L.j = calloc(L.n + 1, sizeof *L.j);
    for (size_t i = 0; i < L.n; i++) {
        L.j[i] = ht_json(L.v[i], strlen(L.v[i]), path);
        if (!json_is_object(L.j[i])) fail_msg("GET %s: line %zu is not an object: %s", path, i, L.v[i]);
    }
    ht_resp_free(&r);
    return L;
}

static void free_lines(lines *L)
{
    for (size_t i = 0; i < L->n; i++) json_decref(L->j[i]);
    free(L->j);
    free(L->v);
    free(L->store);
    memset(L, 0, sizeof *L);
}

/* The positions of the lines, as "1,2,3". */
static void positions_of(lines *L, char *out, size_t cap)
{
    size_t k = 0;
    out[0] = 0;
    for (size_t i = 0; i < L->n && k + 24 < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%" PRId64, i ? "," : "", ht_jint(L->j[i], "position", "line"));
}

static void expect_positions(ht_server *s, const char *path, const char *want)
{
    lines L = get_lines(s, path);
    char got[2048];
    positions_of(&L, got, sizeof got);
    if (strcmp(got, want) != 0) fail_msg("GET %s: expected positions [%s], got [%s]", path, want, got);
    free_lines(&L);
}

static int is_uuid(const char *s)
{
    if (strlen(s) != 36) return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) { if (s[i] != '-') return 0; }
        else if (!strchr("0123456789abcdef", s[i])) return 0;
    }
    return 1;
}

/* RFC 3339 UTC with microseconds: 2026-11-22T11:30:00.123456Z */
static int is_time_us(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    if (strlen(s) != sizeof shape - 1) return 0;
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd') { if (s[i] < '0' || s[i] > '9') return 0; }
        else if (s[i] != shape[i]) return 0;
    }
    return 1;
}

/* Check a 201/200 append answer: contiguous range, one entry per event. */
static void check_append_answer(json_t *j, size_t nevents, const char *what)
{
    int64_t first = ht_jint(j, "first_position", what), last = ht_jint(j, "last_position", what);
    json_t *evs = json_object_get(j, "events");
    if (!json_is_array(evs) || json_array_size(evs) != nevents)
        fail_msg("%s: expected \"events\" with %zu entries, got %zu", what, nevents, json_array_size(evs));
    if (last - first + 1 != (int64_t)nevents)
        fail_msg("%s: expected a contiguous range of %zu positions, got %" PRId64 "..%" PRId64, what, nevents, first, last);
    for (size_t i = 0; i < nevents; i++) {
        json_t *e = json_array_get(evs, i);
        if (ht_jint(e, "position", what) != first + (int64_t)i)
            fail_msg("%s: event %zu expected position %" PRId64 ", got %" PRId64, what, i, first + (int64_t)i,
                     ht_jint(e, "position", what));
        if (!is_uuid(ht_jstr(e, "id", what))) fail_msg("%s: event %zu id is not a UUID: %s", what, i, ht_jstr(e, "id", what));
        if (!is_time_us(ht_jstr(e, "time", what)))
            fail_msg("%s: event %zu time is not RFC 3339 UTC with microseconds: %s", what, i, ht_jstr(e, "time", what));
        ht_jstr(e, "stream", what);
        if (ht_jint(e, "version", what) < 1) fail_msg("%s: event %zu version < 1", what, i);
    }
}

/* ------------------------------------------------------------------ tests */

static void t_health_stats_metrics(void **state)
{
    ht_server *s = *state;
    ht_resp r;
    ht_get(s, "/health", &r);
    HT_EXPECT_STATUS(&r, 200, "GET /health");
    if (strcmp(r.body, "{\"status\":\"ok\",\"position\":0}\n") != 0)
        fail_msg("GET /health on an empty store: expected {\"status\":\"ok\",\"position\":0}, got %s", r.body);
    ht_resp_free(&r);

    json_decref(ht_append_ok(s, "/streams/a", "[{\"type\":\"T\"},{\"type\":\"T\"}]", "POST two"));
    json_decref(ht_append_ok(s, "/streams/b", "{\"type\":\"T\"}", "POST one"));
    lines L = get_lines(s, "/events");
    free_lines(&L);

    ht_get(s, "/stats", &r);
    HT_EXPECT_STATUS(&r, 200, "GET /stats");
    json_t *st = ht_json(r.body, r.len, "GET /stats");
    static const char *ints[] = {"events", "streams", "segments", "bytes", "position", "uptime_seconds", "appends", "reads"};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) ht_jint(st, ints[i], "GET /stats");
    if (ht_jint(st, "events", "stats") != 3) fail_msg("/stats events: expected 3, got %" PRId64, ht_jint(st, "events", ""));
    if (ht_jint(st, "streams", "stats") != 2) fail_msg("/stats streams: expected 2, got %" PRId64, ht_jint(st, "streams", ""));
    if (ht_jint(st, "position", "stats") != 3) fail_msg("/stats position: expected 3, got %" PRId64, ht_jint(st, "position", ""));
    if (ht_jint(st, "segments", "stats") < 1) fail_msg("/stats segments: expected >= 1");
    if (ht_jint(st, "bytes", "stats") <= 0) fail_msg("/stats bytes: expected > 0");
    if (ht_jint(st, "appends", "stats") < 2) fail_msg("/stats appends: expected >= 2, got %" PRId64, ht_jint(st, "appends", ""));
    if (ht_jint(st, "reads", "stats") < 1) fail_msg("/stats reads: expected >= 1, got %" PRId64, ht_jint(st, "reads", ""));
    if (strcmp(ht_jstr(st, "fsync", "stats"), "always") != 0)
        fail_msg("/stats fsync: expected \"always\" (the default), got \"%s\"", ht_jstr(st, "fsync", ""));
    json_decref(st);
    ht_resp_free(&r);

    ht_get(s, "/metrics", &r);
    HT_EXPECT_STATUS(&r, 200, "GET /metrics");
    char ct[128];
    ht_header(r.head, "Content-Type", ct, sizeof ct);
    if (strncmp(ct, "text/plain", 10) != 0) fail_msg("/metrics: expected Content-Type text/plain, got \"%s\"", ct);
    static const char *hists[] = {"evstore_append_seconds", "evstore_fsync_seconds", "evstore_group_commit_events"};
    for (size_t i = 0; i < 3; i++) {
        char want[256];
        snprintf(want, sizeof want, "# TYPE %s histogram\n", hists[i]);
        if (!strstr(r.body, want)) fail_msg("/metrics: expected \"%s\" in:\n%.3000s", want, r.body);
        const char *parts[] = {"_bucket{le=\"+Inf\"} ", "_sum ", "_count "};
        for (int k = 0; k < 3; k++) {
            snprintf(want, sizeof want, "\n%s%s", hists[i], parts[k]);
            if (!strstr(r.body, want)) fail_msg("/metrics: expected a line starting \"%s\"", want + 1);
        }
    }
    const char *c = strstr(r.body, "\nevstore_append_seconds_count ");
    if (!c || strtoull(c + 30, NULL, 10) < 2)
        fail_msg("/metrics: expected evstore_append_seconds_count >= 2 after two appends, got %.40s", c ? c + 1 : "nothing");
    ht_resp_free(&r);

    /* HEAD works like GET without a body */
    ht_request(s, "HEAD", "/health", NULL, NULL, 0, &r);
    HT_EXPECT_STATUS(&r, 200, "HEAD /health");
    ht_resp_free(&r);
    ht_server_stop(s);
}

static void t_append_shapes(void **state)
{
    ht_server *s = *state;
    /* one object */
    json_t *j = ht_append_ok(s, "/streams/shapes", "{\"type\":\"One\",\"data\":{\"n\":1}}", "POST object");
    check_append_answer(j, 1, "POST object");
    if (ht_jint(j, "first_position", "") != 1) fail_msg("first append: expected first_position 1");
    json_t *e0 = json_array_get(json_object_get(j, "events"), 0);
    if (strcmp(ht_jstr(e0, "stream", ""), "shapes") != 0 || ht_jint(e0, "version", "") != 1)
        fail_msg("POST object: expected stream shapes version 1");
    const char *id = ht_jstr(e0, "id", "");
    if (id[14] != '7') fail_msg("a server-generated id should be a UUIDv7, got %s", id);
    json_decref(j);
    /* an array */
    j = ht_append_ok(s, "/streams/shapes", "[{\"type\":\"Two\"},{\"type\":\"Three\",\"metadata\":{\"m\":true}},{\"type\":\"Four\",\"data\":null}]",
                     "POST array");
    check_append_answer(j, 3, "POST array");
    if (ht_jint(j, "first_position", "") != 2) fail_msg("POST array: expected first_position 2, got %" PRId64, ht_jint(j, "first_position", ""));
    for (size_t i = 0; i < 3; i++)
        if (ht_jint(json_array_get(json_object_get(j, "events"), i), "version", "") != (int64_t)(2 + i))
            fail_msg("POST array: event %zu expected version %zu", i, 2 + i);
    json_decref(j);
    /* JSON Lines, with and without a final newline, a blank line tolerated */
    ht_resp r;
    ht_post_ct(s, "/streams/shapes", "application/x-ndjson", "{\"type\":\"Five\"}\n{\"type\":\"Six\",\"data\":[1]}\n", &r);
    HT_EXPECT_STATUS(&r, 201, "POST JSON Lines");
    j = ht_json(r.body, r.len, "POST JSON Lines");
    check_append_answer(j, 2, "POST JSON Lines");
    json_decref(j);
    ht_resp_free(&r);
    ht_post_ct(s, "/streams/shapes", "application/x-ndjson", "{\"type\":\"Seven\"}", &r);
    HT_EXPECT_STATUS(&r, 201, "POST JSON Lines without a final newline");
    ht_resp_free(&r);
    /* the same JSON Lines without the Content-Type is not one JSON document */
    ht_post(s, "/streams/shapes", "{\"type\":\"X\"}\n{\"type\":\"Y\"}\n", &r);
    ht_expect_error(&r, 400, "invalid_json", "JSON Lines sent without Content-Type application/x-ndjson");
    ht_resp_free(&r);

    lines L = get_lines(s, "/streams/shapes");
    static const char *types[] = {"One", "Two", "Three", "Four", "Five", "Six", "Seven"};
    if (L.n != 7) fail_msg("GET /streams/shapes: expected 7 events, got %zu", L.n);
    for (size_t i = 0; i < 7; i++) {
        if (strcmp(ht_jstr(L.j[i], "type", ""), types[i]) != 0)
            fail_msg("event %zu: expected type %s, got %s", i, types[i], ht_jstr(L.j[i], "type", ""));
        if (ht_jint(L.j[i], "version", "") != (int64_t)i + 1 || ht_jint(L.j[i], "position", "") != (int64_t)i + 1)
            fail_msg("event %zu: expected version and position %zu: %s", i, i + 1, L.v[i]);
    }
    /* data is always served (null when none was sent); metadata only when sent */
    if (!strstr(L.v[1], ",\"data\":null}")) fail_msg("an event sent without data should be served with \"data\":null: %s", L.v[1]);
    if (strstr(L.v[1], "metadata")) fail_msg("an event sent without metadata should be served without it: %s", L.v[1]);
    if (!strstr(L.v[2], "\"data\":null,\"metadata\":{\"m\":true}}")) fail_msg("expected data null then metadata: %s", L.v[2]);
    if (!strstr(L.v[0], "\"data\":{\"n\":1}}")) fail_msg("expected data {\"n\":1}: %s", L.v[0]);
    /* the served line has exactly the documented shape and field order */
    if (strncmp(L.v[0], "{\"position\":1,\"stream\":\"shapes\",\"version\":1,\"id\":\"", 50) != 0 ||
        !strstr(L.v[0], "\",\"type\":\"One\",\"time\":\""))
        fail_msg("served line should be {\"position\",\"stream\",\"version\",\"id\",\"type\",\"time\",\"data\"...}: %s", L.v[0]);
    free_lines(&L);
    ht_server_stop(s);
}

static void t_multi_stream_and_atomic(void **state)
{
    ht_server *s = *state;
    json_decref(ht_append_ok(s, "/streams/acct-1", "{\"type\":\"Opened\"}", "seed acct-1"));
    /* per-event expected versions, checked in order within the batch */
    json_t *j = ht_append_ok(s, "/events",
                             "[{\"stream\":\"acct-1\",\"type\":\"Debited\",\"expected_version\":1,\"data\":{\"v\":10}},"
                             "{\"stream\":\"acct-2\",\"type\":\"Credited\",\"expected_version\":\"no_stream\",\"data\":{\"v\":10}},"
                             "{\"stream\":\"acct-2\",\"type\":\"Noted\",\"expected_version\":1},"
                             "{\"stream\":\"audit\",\"type\":\"Transfer\",\"expected_version\":\"any\"},"
                             "{\"stream\":\"acct-1\",\"type\":\"Noted\",\"expected_version\":\"exists\"}]",
                             "POST /events multi-stream");
    check_append_answer(j, 5, "POST /events");
    static const char *streams[] = {"acct-1", "acct-2", "acct-2", "audit", "acct-1"};
    static const int versions[] = {2, 1, 2, 1, 3};
    for (size_t i = 0; i < 5; i++) {
        json_t *e = json_array_get(json_object_get(j, "events"), i);
        if (strcmp(ht_jstr(e, "stream", ""), streams[i]) || ht_jint(e, "version", "") != versions[i])
            fail_msg("POST /events event %zu: expected %s version %d, got %s version %" PRId64, i, streams[i], versions[i],
                     ht_jstr(e, "stream", ""), ht_jint(e, "version", ""));
    }
    if (ht_jint(j, "first_position", "") != 2 || ht_jint(j, "last_position", "") != 6)
        fail_msg("POST /events: expected positions 2..6");
    json_decref(j);

    /* a failing expectation in the middle: the whole batch is refused */
    ht_shape before = ht_shape_of(s);
    ht_resp r;
    ht_post(s, "/events",
            "[{\"stream\":\"acct-1\",\"type\":\"A\",\"expected_version\":3},"
            "{\"stream\":\"acct-9\",\"type\":\"B\"},"
            "{\"stream\":\"acct-2\",\"type\":\"C\",\"expected_version\":7},"
            "{\"stream\":\"acct-3\",\"type\":\"D\"}]",
            &r);
    ht_expect_error(&r, 409, "wrong_expected_version", "batch with a failing expectation in the middle");
    j = ht_json(r.body, r.len, "409");
    if (strcmp(ht_jstr(j, "stream", "409"), "acct-2") || ht_jint(j, "expected", "409") != 7 || ht_jint(j, "actual", "409") != 2)
        fail_msg("409 should name the failing event: expected stream acct-2, expected 7, actual 2; got %s", r.body);
    json_decref(j);
    ht_resp_free(&r);
    ht_expect_unchanged(s, before, "refused multi-stream batch");
    ht_get(s, "/streams/acct-9", &r);
    ht_expect_error(&r, 404, "stream_not_found", "a stream only a refused batch named");
    ht_resp_free(&r);
    /* a later event's expectation sees the earlier events of the same batch */
    ht_post(s, "/events", "[{\"stream\":\"n\",\"type\":\"A\"},{\"stream\":\"n\",\"type\":\"B\",\"expected_version\":\"no_stream\"}]", &r);
    ht_expect_error(&r, 409, "wrong_expected_version", "second event expects no_stream after the first created it");
    j = ht_json(r.body, r.len, "409");
    if (strcmp(ht_jstr(j, "expected", ""), "no_stream") || ht_jint(j, "actual", "") != 1)
        fail_msg("expected {\"expected\":\"no_stream\",\"actual\":1} (the first event of the batch counts), got %s", r.body);
    json_decref(j);
    ht_resp_free(&r);
    ht_expect_unchanged(s, before, "refused batch (in-batch expectation)");
    /* a failing single-stream batch writes nothing either */
    ht_post(s, "/streams/acct-1?expected_version=1", "[{\"type\":\"A\"},{\"type\":\"B\"}]", &r);
    ht_expect_error(&r, 409, "wrong_expected_version", "single-stream batch with a stale expected version");
    ht_resp_free(&r);
    /* an invalid event at the end of a batch refuses the whole batch */
    ht_post(s, "/events", "[{\"stream\":\"x\",\"type\":\"A\"},{\"stream\":\"y\",\"type\":\"B\",\"bogus\":1}]", &r);
    ht_expect_error(&r, 400, "invalid_event", "batch whose last event has an unknown field");
    if (!strstr(r.body, "bogus")) fail_msg("the message should name the offending field \"bogus\": %s", r.body);
    ht_resp_free(&r);
    ht_expect_unchanged(s, before, "refused batches");
    ht_server_stop(s);
}

static void t_condition(void **state)
{
    ht_server *s = *state;
    json_decref(ht_append_ok(s, "/streams/course-1", "{\"type\":\"CourseCreated\"}", "seed"));
    json_decref(ht_append_ok(s, "/streams/student-1", "{\"type\":\"StudentRegistered\"}", "seed"));
    ht_shape before = ht_shape_of(s);
    ht_resp r;
    /* a matching event (by type) exists after 0: refused */
    ht_post(s, "/events",
            "{\"events\":[{\"stream\":\"course-1\",\"type\":\"StudentSubscribed\"}],"
            "\"condition\":{\"filter\":{\"types\":[\"CourseCreated\",\"CourseFull\"]},\"after\":0}}",
            &r);
    ht_expect_error(&r, 409, "condition_failed", "condition on types with a match after 0");
    ht_resp_free(&r);
    /* by stream prefix */
    ht_post(s, "/events",
            "{\"events\":[{\"stream\":\"course-1\",\"type\":\"StudentSubscribed\"}],"
            "\"condition\":{\"filter\":{\"stream_prefix\":\"student-\"},\"after\":1}}",
            &r);
    ht_expect_error(&r, 409, "condition_failed", "condition on a stream prefix with a match after 1");
    ht_resp_free(&r);
    ht_expect_unchanged(s, before, "refused conditional appends");
    /* types AND prefix: nothing matches both */
    json_t *j = ht_append_ok(s, "/events",
                             "{\"events\":[{\"stream\":\"course-1\",\"type\":\"StudentSubscribed\"}],"
                             "\"condition\":{\"filter\":{\"types\":[\"CourseCreated\"],\"stream_prefix\":\"student-\"},\"after\":0}}",
                             "condition types+prefix with no match");
    check_append_answer(j, 1, "conditional append");
    json_decref(j);
    /* nothing after the last position: accepted */
    j = ht_append_ok(s, "/events",
                     "{\"events\":[{\"stream\":\"course-1\",\"type\":\"CourseFull\",\"expected_version\":2}],"
                     "\"condition\":{\"filter\":{\"types\":[\"CourseFull\"]},\"after\":3}}",
                     "condition satisfied");
    if (ht_jint(j, "first_position", "") != 4) fail_msg("conditional append: expected position 4");
    json_decref(j);
    /* malformed envelopes */
    before = ht_shape_of(s);
    static const char *bad[] = {
        "{\"events\":[{\"stream\":\"c\",\"type\":\"A\"}],\"condition\":{\"filter\":{\"types\":[\"A\"]}}}",
        "{\"events\":[{\"stream\":\"c\",\"type\":\"A\"}],\"condition\":{\"filter\":{\"typo\":[\"A\"]},\"after\":0}}",
        "{\"events\":[{\"stream\":\"c\",\"type\":\"A\"}],\"condition\":{\"filter\":{},\"after\":-1}}",
        "{\"events\":[{\"stream\":\"c\",\"type\":\"A\"}],\"condition\":{\"filter\":{\"types\":[1]},\"after\":0}}",
        "{\"events\":[{\"stream\":\"c\",\"type\":\"A\"}],\"extra\":1}",
        "{\"events\":[]}",
        "{\"events\":{\"stream\":\"c\",\"type\":\"A\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ht_post(s, "/events", bad[i], &r);
        HT_EXPECT_STATUS(&r, 400, bad[i]);
        ht_resp_free(&r);
    }
    ht_expect_unchanged(s, before, "malformed conditions");
    /* a condition also checks the per-event expectations */
    ht_post(s, "/events",
            "{\"events\":[{\"stream\":\"course-1\",\"type\":\"X\",\"expected_version\":0}],"
            "\"condition\":{\"filter\":{\"types\":[\"Nope\"]},\"after\":0}}",
            &r);
    ht_expect_error(&r, 409, "wrong_expected_version", "condition holds but expected_version fails");
    ht_resp_free(&r);
    ht_expect_unchanged(s, before, "refused");
    /* Event data in an envelope may hold numbers jansson cannot represent
     * (1e400, 30 digits): accepted and kept byte for byte, as in a plain
     * array. (Found by tests/torture/torture_server.c: the envelope used to
     * be read whole by jansson, which answered 400 "real number overflow".) */
    j = ht_append_ok(s, "/events",
                     "{\"events\":[{\"stream\":\"big-numbers\",\"type\":\"N\",\"data\":[1e400, -1E-400,123456789012345678901234567890]},\n"
                     "{\"stream\":\"big-numbers\",\"type\":\"N\",\"data\":{\"x\":1e400}}],"
                     "\"condition\":{\"filter\":{\"types\":[\"Nope\"]},\"after\":0}}",
                     "envelope whose data holds 1e400");
    json_decref(j);
    j = ht_append_ok(s, "/events", "{\"events\":[{\"stream\":\"big-numbers\",\"type\":\"N\",\"data\":1e400}]}",
                     "envelope without a condition, data 1e400");
    json_decref(j);
    lines L = get_lines(s, "/streams/big-numbers");
    if (L.n != 3 || !strstr(L.v[0], ",\"data\":[1e400,-1E-400,123456789012345678901234567890]}") ||
        !strstr(L.v[1], ",\"data\":{\"x\":1e400}}") || !strstr(L.v[2], ",\"data\":1e400}"))
        fail_msg("numbers in envelope data must come back as sent; got %zu lines: %s", L.n, L.n ? L.v[0] : "");
    free_lines(&L);
    /* an error inside the events of an envelope names its byte, line and
     * column in the whole body */
    before = ht_shape_of(s);
    ht_post(s, "/events", "{\"events\":[{\"stream\":\"c\",\"type\":\"A\",\"data\":[1,]}]}", &r);
    ht_expect_error(&r, 400, "invalid_json", "envelope with invalid JSON in an event");
    if (!strstr(r.body, "at byte 47 (line 1, column 47)"))
        fail_msg("the error should name byte 47 of the body (the ']' after \"1,\"), got %s", r.body);
    ht_resp_free(&r);
    ht_post(s, "/events", "{\n \"events\":[\n{\"stream\":\"c\",\"type\":\"A\",\"data\":[1,]}]}", &r);
    ht_expect_error(&r, 400, "invalid_json", "envelope over three lines with invalid JSON in an event");
    if (!strstr(r.body, "at byte 50 (line 3, column 36)"))
        fail_msg("the error should name byte 50, line 3, column 36 of the body, got %s", r.body);
    ht_resp_free(&r);
    /* the envelope itself is still checked by jansson: duplicate keys, numbers out of its range outside the events */
    ht_post(s, "/events", "{\"events\":[{\"stream\":\"c\",\"type\":\"A\"}],\"events\":[]}", &r);
    ht_expect_error(&r, 400, "invalid_json", "envelope with \"events\" twice");
    ht_resp_free(&r);
    ht_post(s, "/events", "{\"events\":[{\"stream\":\"c\",\"type\":\"A\"}],\"condition\":{\"filter\":{},\"after\":1e400}}", &r);
    HT_EXPECT_STATUS(&r, 400, "condition after 1e400");
    ht_resp_free(&r);
    ht_expect_unchanged(s, before, "refused envelopes");
    ht_server_stop(s);
}

static void t_get_event(void **state)
{
    ht_server *s = *state;
    const char *id = "0190a6e2-3c4d-7e8f-9a0b-1c2d3e4f5a6b";
    char body[512];
    snprintf(body, sizeof body, "{\"id\":\"%s\",\"type\":\"Named\",\"data\":{\"x\":[1,2,3]},\"metadata\":{\"by\":\"t\"}}", id);
    json_decref(ht_append_ok(s, "/streams/orders%2F1", body, "POST with a client id"));
    ht_resp r;
    char path[128];
    snprintf(path, sizeof path, "/events/%s", id);
    ht_get(s, path, &r);
    HT_EXPECT_STATUS(&r, 200, "GET /events/{id}");
    lines L = get_lines(s, "/streams/orders%2F1");
    char want[1024];
    snprintf(want, sizeof want, "%s\n", L.v[0]);
    if (strcmp(r.body, want) != 0)
        fail_msg("GET /events/{id} should serve the same line as the stream read:\nexpected %sgot      %s", want, r.body);
    if (!strstr(r.body, "\"data\":{\"x\":[1,2,3]},\"metadata\":{\"by\":\"t\"}}"))
        fail_msg("GET /events/{id}: data and metadata not byte-exact: %s", r.body);
    free_lines(&L);
    ht_resp_free(&r);
    /* upper-case hex is the same UUID */
    snprintf(path, sizeof path, "/events/0190A6E2-3C4D-7E8F-9A0B-1C2D3E4F5A6B");
    ht_get(s, path, &r);
    HT_EXPECT_STATUS(&r, 200, "GET /events/{ID in upper case}");
    ht_resp_free(&r);
    ht_get(s, "/events/00000000-0000-7000-8000-000000000000", &r);
    ht_expect_error(&r, 404, "event_not_found", "GET of an unknown id");
    ht_resp_free(&r);
    static const char *bad[] = {"/events/nope", "/events/0190a6e2-3c4d-7e8f-9a0b-1c2d3e4f5a6", "/events/0190a6e23c4d7e8f9a0b1c2d3e4f5a6bXX",
                                "/events/0190a6e2-3c4d-7e8f-9a0b-1c2d3e4f5a6g", "/events/0190a6e2-3c4d-7e8f-9a0b-1c2d3e4f5a6b0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ht_get(s, bad[i], &r);
        ht_expect_error(&r, 400, "invalid_parameter", bad[i]);
        ht_resp_free(&r);
    }
    ht_server_stop(s);
}

static void t_reads(void **state)
{
    ht_server *s = *state;
    /* positions 1..10: orders/1 gets 1,4,7,10; orders/2 gets 2,5,8; users/1 gets 3,6,9 */
    for (int i = 1; i <= 10; i++) {
        const char *st = i % 3 == 1 ? "orders%2F1" : i % 3 == 2 ? "orders/2" : "users/1";
        char body[128];
        snprintf(body, sizeof body, "{\"type\":\"%s\",\"data\":%d}", i % 2 ? "Odd" : "Even", i);
        char path[64];
        snprintf(path, sizeof path, "/streams/%s", st);
        json_decref(ht_append_ok(s, path, body, "seed"));
    }
    expect_positions(s, "/events", "1,2,3,4,5,6,7,8,9,10");
    expect_positions(s, "/events?from=3&limit=4", "3,4,5,6");
    expect_positions(s, "/events?from=0&limit=2", "1,2");
    expect_positions(s, "/events?from=10", "10");
    expect_positions(s, "/events?from=11", "");
    expect_positions(s, "/events?from=1000000", "");
    expect_positions(s, "/events?limit=0", "");
    expect_positions(s, "/events?direction=forward&limit=3", "1,2,3");
    expect_positions(s, "/events?direction=backward", "10,9,8,7,6,5,4,3,2,1");
    expect_positions(s, "/events?direction=backward&limit=3", "10,9,8");
    expect_positions(s, "/events?direction=backward&from=5&limit=2", "5,4");
    expect_positions(s, "/events?direction=backward&from=1000", "10,9,8,7,6,5,4,3,2,1");
    expect_positions(s, "/events?type=Even", "2,4,6,8,10");
    expect_positions(s, "/events?type=Even&type=Odd&limit=3", "1,2,3");
    expect_positions(s, "/events?type=Odd,Nope", "1,3,5,7,9");
    expect_positions(s, "/events?type=Nope", "");
    expect_positions(s, "/events?stream_prefix=orders/", "1,2,4,5,7,8,10");
    expect_positions(s, "/events?stream_prefix=orders%2F&type=Even&direction=backward", "10,8,4,2");
    expect_positions(s, "/events?stream_prefix=users/&from=4&limit=1", "6");
    expect_positions(s, "/events?stream_prefix=nobody", "");
    /* a stream: from is a version, inclusive */
    expect_positions(s, "/streams/orders/1", "1,4,7,10");
    expect_positions(s, "/streams/orders%2F1?from=2", "4,7,10");
    expect_positions(s, "/streams/orders/1?from=2&limit=2", "4,7");
    expect_positions(s, "/streams/orders/1?direction=backward", "10,7,4,1");
    expect_positions(s, "/streams/orders/1?direction=backward&from=3&limit=2", "7,4");
    expect_positions(s, "/streams/orders/1?from=5", "");
    expect_positions(s, "/streams/orders/1?type=Even", "4,10");
    lines L = get_lines(s, "/streams/orders/2?from=2&limit=1");
    if (L.n != 1 || ht_jint(L.j[0], "version", "") != 2 || ht_jint(L.j[0], "position", "") != 5 ||
        strcmp(ht_jstr(L.j[0], "stream", ""), "orders/2") != 0 || !strstr(L.v[0], ",\"data\":5}"))
        fail_msg("GET /streams/orders/2?from=2&limit=1: expected version 2 at position 5 with data 5, got %s", L.n ? L.v[0] : "nothing");
    free_lines(&L);
    ht_resp r;
    ht_get(s, "/streams/orders/3", &r);
    ht_expect_error(&r, 404, "stream_not_found", "GET of a stream with no events");
    ht_resp_free(&r);
    ht_get(s, "/streams/orders", &r); /* a prefix is not a stream */
    ht_expect_error(&r, 404, "stream_not_found", "GET /streams/orders (only orders/1 and orders/2 exist)");
    ht_resp_free(&r);
    /* answers are chunked JSON Lines (streamed, no Content-Length) */
    ht_get(s, "/events", &r);
    if (!r.chunked) fail_msg("GET /events: expected a chunked (streamed) answer; head:\n%s", r.head);
    ht_resp_free(&r);

    /* GET /streams */
    L = get_lines(s, "/streams");
    if (L.n != 3) fail_msg("GET /streams: expected 3 streams, got %zu", L.n);
    int seen = 0;
    for (size_t i = 0; i < L.n; i++) {
        const char *n = ht_jstr(L.j[i], "stream", "GET /streams");
        int64_t v = ht_jint(L.j[i], "version", "GET /streams");
        if (!strcmp(n, "orders/1") && v == 4) seen |= 1;
        if (!strcmp(n, "orders/2") && v == 3) seen |= 2;
        if (!strcmp(n, "users/1") && v == 3) seen |= 4;
    }
    if (seen != 7) fail_msg("GET /streams: expected orders/1 v4, orders/2 v3, users/1 v3; got %s / %s / %s", L.v[0], L.v[1], L.v[2]);
    free_lines(&L);
    L = get_lines(s, "/streams?prefix=orders/");
    if (L.n != 2 || strncmp(ht_jstr(L.j[0], "stream", ""), "orders/", 7) || strncmp(ht_jstr(L.j[1], "stream", ""), "orders/", 7))
        fail_msg("GET /streams?prefix=orders/: expected orders/1 and orders/2, got %zu lines", L.n);
    free_lines(&L);
    L = get_lines(s, "/streams?prefix=zzz");
    if (L.n != 0) fail_msg("GET /streams?prefix=zzz: expected no lines, got %zu", L.n);
    free_lines(&L);
    ht_server_stop(s);
}

static void t_routing(void **state)
{
    ht_server *s = *state;
    json_decref(ht_append_ok(s, "/streams/r", "{\"type\":\"T\"}", "seed"));
    struct { const char *method, *path; } not_allowed[] = {
        {"POST", "/health"}, {"PUT", "/stats"}, {"DELETE", "/metrics"}, {"PUT", "/events"}, {"DELETE", "/events"},
        {"POST", "/events/0190a6e2-3c4d-7e8f-9a0b-1c2d3e4f5a6b"}, {"DELETE", "/streams/r"}, {"PUT", "/streams/r"},
        {"PATCH", "/streams/r"}, {"POST", "/streams"},
    };
    for (size_t i = 0; i < sizeof not_allowed / sizeof *not_allowed; i++) {
        ht_resp r;
        char what[128];
        snprintf(what, sizeof what, "%s %s", not_allowed[i].method, not_allowed[i].path);
        ht_request(s, not_allowed[i].method, not_allowed[i].path, NULL, "{}", 2, &r);
        ht_expect_error(&r, 405, "method_not_allowed", what);
        char allow[128];
        if (!ht_header(r.head, "Allow", allow, sizeof allow))
            fail_msg("%s: a 405 should carry an Allow header; head:\n%s", what, r.head);
        ht_resp_free(&r);
    }
    static const char *nowhere[] = {"/", "/nope", "/healthz", "/event", "/events/", "/stream/r", "/health/x", "/metrics2"};
    for (size_t i = 0; i < sizeof nowhere / sizeof *nowhere; i++) {
        ht_resp r;
        ht_get(s, nowhere[i], &r);
        ht_expect_error(&r, 404, "not_found", nowhere[i]);
        ht_resp_free(&r);
    }
    ht_server_stop(s);
}

static void t_stream_names(void **state)
{
    ht_server *s = *state;
    /* '/' encoded or not is the same stream */
    json_decref(ht_append_ok(s, "/streams/orders%2F17", "{\"type\":\"A\"}", "POST /streams/orders%2F17"));
    json_t *j = ht_append_ok(s, "/streams/orders/17", "{\"type\":\"B\"}", "POST /streams/orders/17");
    json_t *e = json_array_get(json_object_get(j, "events"), 0);
    if (strcmp(ht_jstr(e, "stream", ""), "orders/17") || ht_jint(e, "version", "") != 2)
        fail_msg("/streams/orders%%2F17 and /streams/orders/17 should be one stream: expected orders/17 version 2, got %s v%" PRId64,
                 ht_jstr(e, "stream", ""), ht_jint(e, "version", ""));
    json_decref(j);
    expect_positions(s, "/streams/orders%2F17", "1,2");
    expect_positions(s, "/streams/orders/17", "1,2");
    expect_positions(s, "/streams/orders%2f17", "1,2");
    /* UTF-8, spaces, reserved characters, deep paths: percent-decoded as UTF-8 */
    static const char *names[] = {"caf\xc3\xa9/\xe2\x98\x95", "with space", "q?and#hash&amp=1", "a/b/c/d", "\xf0\x9f\x98\x80",
                                  "\xe4\xb8\xad\xe6\x96\x87/\xe8\xa8\x82\xe5\x8d\x95", "50%", "plus+sign", "trailing/"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char enc[1024], path[1100];
        ht_pct(names[i], enc, sizeof enc);
        snprintf(path, sizeof path, "/streams/%s", enc);
        j = ht_append_ok(s, path, "{\"type\":\"N\"}", path);
        e = json_array_get(json_object_get(j, "events"), 0);
        if (strcmp(ht_jstr(e, "stream", ""), names[i]) != 0)
            fail_msg("POST %s: expected the stream named \"%s\" (decoded), got \"%s\"", path, names[i], ht_jstr(e, "stream", ""));
        json_decref(j);
        lines L = get_lines(s, path);
        if (L.n != 1 || strcmp(ht_jstr(L.j[0], "stream", ""), names[i]) != 0)
            fail_msg("GET %s: expected one event of stream \"%s\"", path, names[i]);
        free_lines(&L);
    }
    /* 255 bytes is the longest name; 256 is refused */
    char longname[300], path[400];
    memset(longname, 'n', 255);
    longname[255] = 0;
    snprintf(path, sizeof path, "/streams/%s", longname);
    json_decref(ht_append_ok(s, path, "{\"type\":\"Long\"}", "POST a 255-byte stream name"));
    ht_shape before = ht_shape_of(s);
    strcat(path, "n");
    ht_resp r;
    ht_post(s, path, "{\"type\":\"Long\"}", &r);
    ht_expect_error(&r, 400, "invalid_stream_name", "POST a 256-byte stream name");
    ht_resp_free(&r);
    ht_get(s, path, &r);
    ht_expect_error(&r, 400, "invalid_stream_name", "GET a 256-byte stream name");
    ht_resp_free(&r);
    static const char *bad[] = {"/streams/bad%01name", "/streams/bad%0Aname", "/streams/bad%FFname", "/streams/bad%C3",
                                "/streams/%C0%AF", "/streams/%ED%A0%80", "/streams/bad%7Fname"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ht_post(s, bad[i], "{\"type\":\"A\"}", &r);
        /* DEL (0x7f) is a control character too */
        ht_expect_error(&r, 400, "invalid_stream_name", bad[i]);
        ht_resp_free(&r);
    }
    ht_expect_unchanged(s, before, "invalid stream names");
    ht_server_stop(s);
}

/* A percent-encoded NUL must not cut a name short: /streams/a%00b is refused
 * (400 invalid_stream_name), not taken as stream "a"; likewise in query
 * values (expected_version=0%00junk is invalid, not 0). */
static void t_stream_name_nul(void **state)
{
    ht_server *s = *state;
    ht_shape before = ht_shape_of(s);
    ht_resp r;
    ht_post(s, "/streams/a%00b", "{\"type\":\"A\"}", &r);
    ht_expect_error(&r, 400, "invalid_stream_name", "POST /streams/a%00b (a NUL byte in the name)");
    ht_resp_free(&r);
    ht_post(s, "/streams/c?expected_version=0%00junk", "{\"type\":\"A\"}", &r);
    ht_expect_error(&r, 400, "invalid_parameter", "expected_version=0%00junk");
    ht_resp_free(&r);
    ht_expect_unchanged(s, before, "names with NUL");
    ht_server_stop(s);
}

static void t_wrong_expected_version_body(void **state)
{
    ht_server *s = *state;
    json_decref(ht_append_ok(s, "/streams/wev?expected_version=no_stream", "{\"type\":\"A\"}", "create with no_stream"));
    json_decref(ht_append_ok(s, "/streams/wev?expected_version=1", "{\"type\":\"B\"}", "append at 1"));
    json_decref(ht_append_ok(s, "/streams/wev?expected_version=exists", "{\"type\":\"C\"}", "append with exists"));
    json_decref(ht_append_ok(s, "/streams/wev?expected_version=any", "{\"type\":\"D\"}", "append with any"));
    ht_shape before = ht_shape_of(s);
    struct { const char *path, *stream, *expected_json; int64_t actual; } cases[] = {
        {"/streams/wev?expected_version=0", "wev", "0", 4},
        {"/streams/wev?expected_version=3", "wev", "3", 4},
        {"/streams/wev?expected_version=5", "wev", "5", 4},
        {"/streams/wev?expected_version=no_stream", "wev", "\"no_stream\"", 4},
        {"/streams/missing?expected_version=exists", "missing", "\"exists\"", 0},
        {"/streams/missing?expected_version=2", "missing", "2", 0},
        {"/streams/orders%2F9?expected_version=exists", "orders/9", "\"exists\"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ht_resp r;
        ht_post(s, cases[i].path, "{\"type\":\"X\"}", &r);
        ht_expect_error(&r, 409, "wrong_expected_version", cases[i].path);
        char want[256];
        snprintf(want, sizeof want, ",\"stream\":\"%s\",\"expected\":%s,\"actual\":%" PRId64 "}", cases[i].stream,
                 cases[i].expected_json, cases[i].actual);
        if (!strstr(r.body, want)) fail_msg("POST %s: expected the 409 body to end with %s, got %s", cases[i].path, want, r.body);
        json_t *j = ht_json(r.body, r.len, cases[i].path);
        if (!json_is_integer(json_object_get(j, "actual"))) fail_msg("409 actual must be an integer: %s", r.body);
        json_decref(j);
        ht_resp_free(&r);
    }
    /* POST /events: expected as given in the event, number or name */
    ht_resp r;
    ht_post(s, "/events", "[{\"stream\":\"wev\",\"type\":\"X\",\"expected_version\":2}]", &r);
    ht_expect_error(&r, 409, "wrong_expected_version", "POST /events expected 2");
    if (!strstr(r.body, ",\"stream\":\"wev\",\"expected\":2,\"actual\":4,\"index\":0}")) fail_msg("POST /events 409: got %s", r.body);
    ht_resp_free(&r);
    ht_post(s, "/events", "[{\"stream\":\"nope\",\"type\":\"X\",\"expected_version\":\"exists\"}]", &r);
    ht_expect_error(&r, 409, "wrong_expected_version", "POST /events expected exists");
    if (!strstr(r.body, ",\"stream\":\"nope\",\"expected\":\"exists\",\"actual\":0,\"index\":0}")) fail_msg("POST /events 409: got %s", r.body);
    ht_resp_free(&r);
    ht_expect_unchanged(s, before, "409s");
    ht_server_stop(s);
}

/* Bytes the client sends and must get back exactly (whitespace-free: the
 * server drops insignificant whitespace, docs/DESIGN.md). */
static const char *const roundtrip_data[] = {
    "{\"total\":129.95,\"big\":12345678901234567890,\"neg\":-0.0,\"exp\":1.5e-300,\"huge\":1e400,\"z\":0}",
    "{\"emoji\":\"\xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd\",\"cjk\":\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xe4\xb8\xad\xe6\x96\x87\"}",
    "{\"escaped\":\"\\u00e9\\ud83d\\ude00\\u4e2d\\n\\t\\\"\\\\\\/\\u001f\\u007f\",\"mixed\":\"caf\xc3\xa9 \\u00e9\"}",
    "{\"z\":1,\"a\":2,\"m\":{\"y\":[3,2,1],\"b\":null},\"\xc3\xa9\":true}",
    "[1,\"two\",3.0,{\"four\":4e10},[],{},false,null]",
    "\"just a string \xe2\x82\xac\"",
    "12345678901234567890123456789012345678901234567890.000000000000000000001",
    "null",
    "true",
    "-9223372036854775809",
};
static const char *const roundtrip_meta[] = {
    "{\"corr\":\"\xf0\x9f\x94\x91-1\",\"n\":0.1}", NULL, "{\"k\":\"\\u2603\"}", "{}", NULL, "{\"deep\":{\"er\":{\"est\":[1.10]}}}",
    NULL, NULL, "{\"a\":1}", NULL,
};
#define NRT (sizeof roundtrip_data / sizeof *roundtrip_data)

static void expect_roundtrip(ht_server *s, const char *when)
{
    lines L = get_lines(s, "/streams/u%E2%9C%93");
    if (L.n != NRT + 1) fail_msg("%s: expected %zu events, got %zu", when, NRT + 1, L.n);
    for (size_t i = 0; i < NRT; i++) {
        char want[1024];
        if (roundtrip_meta[i]) snprintf(want, sizeof want, ",\"data\":%s,\"metadata\":%s}", roundtrip_data[i], roundtrip_meta[i]);
        else snprintf(want, sizeof want, ",\"data\":%s}", roundtrip_data[i]);
        size_t wl = strlen(want), ll = strlen(L.v[i]);
        if (ll < wl || strcmp(L.v[i] + ll - wl, want) != 0)
            fail_msg("%s: event %zu not byte-exact:\nexpected it to end with %s\ngot                     %s", when, i, want, L.v[i]);
        /* the same bytes from the global log and by id */
        char path[128], line[1200];
        snprintf(path, sizeof path, "/events/%s", ht_jstr(L.j[i], "id", ""));
        ht_resp r;
        ht_get(s, path, &r);
        HT_EXPECT_STATUS(&r, 200, path);
        snprintf(line, sizeof line, "%s\n", L.v[i]);
        if (strcmp(r.body, line) != 0) fail_msg("%s: GET %s differs from the stream read:\n%s%s", when, path, line, r.body);
        ht_resp_free(&r);
    }
    /* a Unicode type and stream name come back as sent */
    if (strcmp(ht_jstr(L.j[NRT], "type", ""), "T\xc3\xbcp\xe2\x82\xac \xf0\x9f\x9a\x80") ||
        strcmp(ht_jstr(L.j[NRT], "stream", ""), "u\xe2\x9c\x93"))
        fail_msg("%s: Unicode type/stream not preserved: %s", when, L.v[NRT]);
    lines G = get_lines(s, "/events");
    for (size_t i = 0; i < L.n; i++)
        if (strcmp(G.v[i], L.v[i]) != 0) fail_msg("%s: global read differs from stream read at %zu:\n%s\n%s", when, i, G.v[i], L.v[i]);
    free_lines(&G);
    free_lines(&L);
}

static void t_roundtrip_unicode_numbers_restart(void **state)
{
    ht_server *s = *state;
    for (size_t i = 0; i < NRT; i++) {
        char body[1400];
        if (roundtrip_meta[i]) snprintf(body, sizeof body, "{\"type\":\"RT\",\"data\":%s,\"metadata\":%s}", roundtrip_data[i], roundtrip_meta[i]);
        else snprintf(body, sizeof body, "{\"type\":\"RT\",\"data\":%s}", roundtrip_data[i]);
        json_decref(ht_append_ok(s, "/streams/u%E2%9C%93", body, body));
    }
    json_decref(ht_append_ok(s, "/streams/u%E2%9C%93", "{\"type\":\"T\xc3\xbcp\xe2\x82\xac \\ud83d\\ude80\"}", "Unicode type"));
    expect_roundtrip(s, "before restart");
    /* insignificant whitespace is dropped, nothing else changes */
    json_t *j = ht_append_ok(s, "/streams/ws", "{ \"type\" : \"W\" ,\n \"data\" : { \"a\" : [ 1 , 2.50 ] ,\t\"b\" : \"x y\" } }",
                             "POST with whitespace");
    json_decref(j);
    lines L = get_lines(s, "/streams/ws");
    if (L.n != 1 || !strstr(L.v[0], ",\"data\":{\"a\":[1,2.50],\"b\":\"x y\"}}"))
        fail_msg("whitespace outside strings should be dropped, the rest kept: got %s", L.n ? L.v[0] : "nothing");
    free_lines(&L);
    /* \u0000 is refused on purpose (src/json/check.c: names are C strings) */
    ht_shape before = ht_shape_of(s);
    ht_resp r;
    ht_post(s, "/streams/nul", "{\"type\":\"N\",\"data\":\"a\\u0000b\"}", &r);
    ht_expect_error(&r, 400, "invalid_json", "data with \\u0000");
    ht_resp_free(&r);
    ht_expect_unchanged(s, before, "data with \\u0000");
    ht_server_stop(s);
    ht_server_start(s);
    expect_roundtrip(s, "after a SIGTERM restart");
    ht_server_stop(s);
}

static void t_idempotent_retries(void **state)
{
    ht_server *s = *state;
    const char *batch = "[{\"id\":\"11111111-1111-4111-8111-111111111111\",\"type\":\"A\",\"data\":1},"
                        "{\"id\":\"22222222-2222-4222-8222-222222222222\",\"type\":\"B\",\"data\":2}]";
    json_decref(ht_append_ok(s, "/streams/other", "{\"type\":\"First\"}", "seed"));
    ht_resp first, again;
    ht_post(s, "/streams/idem", batch, &first);
    HT_EXPECT_STATUS(&first, 201, "first write");
    ht_shape before = ht_shape_of(s);
    ht_post(s, "/streams/idem", batch, &again);
    HT_EXPECT_STATUS(&again, 200, "the same write repeated");
    if (strcmp(first.body, again.body) != 0)
        fail_msg("a repeated write should return the original result:\nfirst  %s\nrepeat %s", first.body, again.body);
    ht_resp_free(&again);
    /* also with an expected version that is now stale: it is the same write */
    ht_post(s, "/streams/idem?expected_version=no_stream", batch, &again);
    HT_EXPECT_STATUS(&again, 200, "the same write repeated with its original expected_version");
    if (strcmp(first.body, again.body) != 0) fail_msg("repeat with expected_version: got %s", again.body);
    ht_resp_free(&again);
    /* the ids decide, not the content (docs/API.md, rule 7) */
    ht_post(s, "/streams/idem", "[{\"id\":\"11111111-1111-4111-8111-111111111111\",\"type\":\"Other\"},"
                                "{\"id\":\"22222222-2222-4222-8222-222222222222\",\"type\":\"B\",\"data\":99}]", &again);
    HT_EXPECT_STATUS(&again, 200, "the same ids, streams and order with other content");
    if (strcmp(first.body, again.body) != 0) fail_msg("repeat with other content: expected the original result %s, got %s", first.body, again.body);
    ht_resp_free(&again);
    ht_expect_unchanged(s, before, "repeated writes");
    /* partial overlap, other stream, other order, subset: 409 duplicate_event_id */
    const char *conflicts[][2] = {
        {"/streams/idem", "[{\"id\":\"22222222-2222-4222-8222-222222222222\",\"type\":\"B\"},{\"id\":\"33333333-3333-4333-8333-333333333333\",\"type\":\"C\"}]"},
        {"/streams/idem", "[{\"id\":\"22222222-2222-4222-8222-222222222222\",\"type\":\"B\"},{\"id\":\"11111111-1111-4111-8111-111111111111\",\"type\":\"A\"}]"},
        {"/streams/idem", "{\"id\":\"11111111-1111-4111-8111-111111111111\",\"type\":\"A\"}"},
        {"/streams/elsewhere", batch},
        {"/streams/idem", "[{\"id\":\"11111111-1111-4111-8111-111111111111\",\"type\":\"A\"},{\"id\":\"22222222-2222-4222-8222-222222222222\",\"type\":\"B\"},{\"type\":\"C\"}]"},
    };
    for (size_t i = 0; i < sizeof conflicts / sizeof *conflicts; i++) {
        ht_post(s, conflicts[i][0], conflicts[i][1], &again);
        ht_expect_error(&again, 409, "duplicate_event_id", conflicts[i][1]);
        ht_resp_free(&again);
    }
    /* the same id twice in one request is invalid */
    ht_post(s, "/streams/idem2", "[{\"id\":\"44444444-4444-4444-8444-444444444444\",\"type\":\"A\"},{\"id\":\"44444444-4444-4444-8444-444444444444\",\"type\":\"B\"}]", &again);
    HT_EXPECT_STATUS(&again, 400, "one id twice in one request");
    ht_resp_free(&again);
    ht_expect_unchanged(s, before, "duplicate ids");
    /* multi-stream retries */
    const char *multi = "[{\"id\":\"55555555-5555-4555-8555-555555555555\",\"stream\":\"m1\",\"type\":\"A\"},"
                        "{\"id\":\"66666666-6666-4666-8666-666666666666\",\"stream\":\"m2\",\"type\":\"B\"}]";
    ht_resp m1, m2;
    ht_post(s, "/events", multi, &m1);
    HT_EXPECT_STATUS(&m1, 201, "multi-stream first write");
    ht_post(s, "/events", multi, &m2);
    HT_EXPECT_STATUS(&m2, 200, "multi-stream write repeated");
    if (strcmp(m1.body, m2.body) != 0) fail_msg("multi-stream repeat: expected %s got %s", m1.body, m2.body);
    ht_resp_free(&m1);
    ht_resp_free(&m2);
    ht_post(s, "/events", "[{\"id\":\"55555555-5555-4555-8555-555555555555\",\"stream\":\"m2\",\"type\":\"A\"},"
                          "{\"id\":\"66666666-6666-4666-8666-666666666666\",\"stream\":\"m1\",\"type\":\"B\"}]", &m2);
    ht_expect_error(&m2, 409, "duplicate_event_id", "same ids in swapped streams");
    ht_resp_free(&m2);
    /* still idempotent after a restart (ids are permanent) */
    ht_server_stop(s);
    ht_server_start(s);
    ht_post(s, "/streams/idem", batch, &again);
    HT_EXPECT_STATUS(&again, 200, "the same write repeated after a restart");
    if (strcmp(first.body, again.body) != 0) fail_msg("repeat after restart: expected %s got %s", first.body, again.body);
    ht_resp_free(&again);
    ht_resp_free(&first);
    ht_server_stop(s);
}

static void t_fsync_policy_in_stats(void **state)
{
    ht_server *s = *state;
    ht_server_stop(s);
    s->args[s->nargs++] = "--fsync";
    s->args[s->nargs++] = "interval:50";
    ht_server_start(s);
    ht_resp r;
    ht_get(s, "/stats", &r);
    if (!strstr(r.body, "\"fsync\":\"interval:50\"")) fail_msg("/stats with --fsync interval:50: expected \"fsync\":\"interval:50\", got %s", r.body);
    ht_resp_free(&r);
    json_decref(ht_append_ok(s, "/streams/f", "{\"type\":\"A\"}", "append with interval fsync"));
    ht_server_stop(s);
    /* the environment variable is used, the flag wins over it (checked at start: flag given) */
    s->nargs = 0;
    s->env_extra[s->nenv_extra++] = "EVSTORE_FSYNC=never";
    ht_server_start(s);
    ht_get(s, "/stats", &r);
    if (!strstr(r.body, "\"fsync\":\"never\"")) fail_msg("/stats with EVSTORE_FSYNC=never: expected \"fsync\":\"never\", got %s", r.body);
    ht_resp_free(&r);
    ht_server_stop(s);
    s->args[s->nargs++] = "--fsync=always";
    ht_server_start(s);
    ht_get(s, "/stats", &r);
    if (!strstr(r.body, "\"fsync\":\"always\"")) fail_msg("flag --fsync=always should win over EVSTORE_FSYNC=never, got %s", r.body);
    if (ht_position(s) != 1) fail_msg("the event appended before the restarts should still be there");
    ht_resp_free(&r);
    ht_server_stop(s);
}


/* --read-only follows another process's writes; a second writer is refused. */
static void t_read_only_follower(void **state)
{
    ht_server *s = *state;
    json_decref(ht_append_ok(s, "/streams/f", "{\"type\":\"Before\"}", "writer append"));
    ht_server ro;
    static const char *const ro_args[] = {"--read-only", NULL};
    ht_server_init(&ro, ro_args);
    snprintf(ro.data, sizeof ro.data, "%s", s->data);
    ht_server_start(&ro);
    ht_resp r;
    ht_get(&ro, "/health", &r);
    if (strcmp(r.body, "{\"status\":\"read_only\",\"position\":1}\n") != 0)
        fail_msg("--read-only /health: expected {\"status\":\"read_only\",\"position\":1}, got %s", r.body);
    ht_resp_free(&r);
    ht_post(&ro, "/streams/f", "{\"type\":\"Nope\"}", &r);
    ht_expect_error(&r, 503, "unavailable", "append to a --read-only server");
    ht_resp_free(&r);
    ht_post(&ro, "/events", "[{\"stream\":\"f\",\"type\":\"Nope\"}]", &r);
    ht_expect_error(&r, 503, "unavailable", "POST /events to a --read-only server");
    ht_resp_free(&r);
    ht_stream w;
    if (ht_stream_open(&ro, "/streams/f?watch=true&from=2", NULL, &w) != 200) fail_msg("read-only watch: expected 200");
    json_decref(ht_append_ok(s, "/streams/f", "{\"type\":\"After\",\"data\":\"\\u00e9\"}", "writer append while followed"));
    char *line = NULL;
    size_t n;
    int rc;
    do rc = ht_stream_line(&w, HT_ASAN ? 15000 : 8000, &line, &n); while (rc == 1 && n == 0);
    if (rc != 1 || !strstr(line, "\"version\":2,") || !strstr(line, ",\"data\":\"\\u00e9\"}"))
        fail_msg("a --read-only watcher should see the writer's new event, got %s", rc == 1 ? line : ht_errname(rc));
    ht_stream_close(&w);
    lines L = get_lines(&ro, "/streams/f");
    if (L.n != 2) fail_msg("--read-only GET /streams/f: expected 2 events, got %zu", L.n);
    free_lines(&L);
    /* a second writer on the same directory is refused, naming the holder */
    ht_server w2;
    ht_server_init(&w2, NULL);
    snprintf(w2.data, sizeof w2.data, "%s", s->data);
    int code = ht_server_expect_refusal(&w2, NULL);
    const char *tail = ht_log_tail(&w2, 1000);
    if (code == 0 || !strstr(tail, "locked") || !strstr(tail, "pid"))
        fail_msg("a second writer should exit non-zero naming the lock holder; exit %d, log:\n%s", code, tail);
    ht_server_free(&w2);
    ht_server_stop(&ro);
    ht_server_free(&ro);
    ht_server_stop(s);
}

/* Every flag is validated at start: one clear line, non-zero exit. */
static void t_bad_flags(void **state)
{
    ht_server *s = *state;
    ht_server_stop(s);
    static const char *const bad[][3] = {
        {"--fsync", "sometimes", "fsync"},
        {"--fsync", "interval:0", "fsync"},
        {"--max-body-size", "abc", "max-body-size"},
        {"--max-event-size", "1", "max-event-size"},
        {"--heartbeat", "0", "heartbeat"},
        {"--max-connections", "0", "max-connections"},
        {"--log-format", "xml", "log-format"},
        {"--no-such-flag", "1", "no-such-flag"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *extra[] = {bad[i][0], bad[i][1], NULL};
        int code = ht_server_expect_refusal(s, extra);
        const char *tail = ht_log_tail(s, 300);
        if (code == 0 || !strstr(tail, bad[i][2]))
            fail_msg("evstored %s %s: expected a non-zero exit and a message naming %s; exit %d, log:\n%s", bad[i][0], bad[i][1], bad[i][2],
                     code, tail);
    }
    s->env_extra[s->nenv_extra++] = "EVSTORE_MAX_BODY_SIZE=lots";
    int code = ht_server_expect_refusal(s, NULL);
    if (code == 0 || !strstr(ht_log_tail(s, 300), "EVSTORE_MAX_BODY_SIZE"))
        fail_msg("EVSTORE_MAX_BODY_SIZE=lots: expected a refusal naming the variable; exit %d, log:\n%s", code, ht_log_tail(s, 300));
}

/* Start evstored (w's data directory and log) on an explicit port and
 * expect it to refuse: its exit status. */
static int start_expect_refusal_on(ht_server *w, uint16_t port)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)port);
    const char *argv[] = {w->bin, "--data", w->data, "--listen", listen, NULL};
    int logfd = open(w->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) fail_msg("open %s: %s", w->log, strerror(errno));
    pid_t pid = fork();
    if (pid < 0) fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(logfd, 1);
        dup2(logfd, 2);
        execv(w->bin, (char *const *)argv);
        _exit(127);
    }
    close(logfd);
    int status = 0;
    if (!ht_wait_exit(pid, HT_ASAN ? 30000 : 10000, &status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("evstored on port %u, which is taken, should refuse to start; it kept running; log:\n%s", (unsigned)port,
                 ht_log_tail(w, 1500));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A port already taken is refused with a clear message, also when the other
 * listener uses SO_REUSEPORT (as evstored's own listening sockets do: one per
 * thread), and the server already there keeps every connection. */
static void t_port_in_use(void **state)
{
    ht_server *s = *state;
    json_decref(ht_append_ok(s, "/streams/here", "{\"type\":\"A\"}", "append to the first server"));
    ht_server w2;
    ht_server_init(&w2, NULL);
    int code = start_expect_refusal_on(&w2, s->port);
    const char *tail = ht_log_tail(&w2, 600);
    if (code == 0 || !strstr(tail, "cannot listen") || !strstr(tail, "already in use"))
        fail_msg("a second evstored on the port of a running one: expected a non-zero exit and \"cannot listen ... already in use\"; "
                 "exit %d, log:\n%s", code, tail);
    /* every new connection still reaches the first server */
    for (int i = 0; i < 20; i++) {
        if (ht_position(s) != 1) fail_msg("after the refused second server, connection %d did not reach the first server", i);
    }
    /* another program listening with SO_REUSEPORT */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 8) != 0) fail_msg("bind/listen: %s", strerror(errno));
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    code = start_expect_refusal_on(&w2, ntohs(a.sin_port));
    tail = ht_log_tail(&w2, 600);
    close(fd);
    if (code == 0 || !strstr(tail, "already in use"))
        fail_msg("evstored on a port another program listens on (with SO_REUSEPORT): expected a refusal naming it; exit %d, log:\n%s",
                 code, tail);
    ht_server_free(&w2);
    ht_server_stop(s);
}

int main(void)
{
    ht_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_health_stats_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(t_append_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(t_multi_stream_and_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(t_condition, setup, teardown),
        cmocka_unit_test_setup_teardown(t_get_event, setup, teardown),
        cmocka_unit_test_setup_teardown(t_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(t_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(t_stream_names, setup, teardown),
        cmocka_unit_test_setup_teardown(t_wrong_expected_version_body, setup, teardown),
        cmocka_unit_test_setup_teardown(t_roundtrip_unicode_numbers_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(t_idempotent_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(t_fsync_policy_in_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(t_read_only_follower, setup, teardown),
        cmocka_unit_test_setup_teardown(t_bad_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(t_port_in_use, setup, teardown),
        cmocka_unit_test_setup_teardown(t_stream_name_nul, setup, teardown),
    };
    return cmocka_run_group_tests_name("http_api", tests, NULL, NULL) ? 1 : 0;
}
