/*
 * test_json.c — the JSON helpers: strict checking and minification
 * (evs__json_check), event parsing (evs_parse_events), the served line
 * (evs_event_format), times, UUIDs and the name rule.
 *
 * The property that matters most is byte fidelity: what a client sends as
 * data/metadata is served back with only insignificant whitespace removed.
 * Many tests therefore compare against literal expected bytes.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "evs_int.h"
#include "json/json_int.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */
/* ------------------------------------------------------------------------ */

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* Every message must be printable UTF-8: it goes into logs and JSON errors. */
static void assert_clean_message(const char *msg)
{
    const uint8_t *s = (const uint8_t *)msg;
    size_t n = strlen(msg);
    assert_true(n > 0);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = evs__utf8_char(s + i, n - i, &cp);
        if (len == 0 || cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F))
            fail_msg("message has a bad byte at %zu: \"%s\"", i, msg);
        i += len;
    }
}

static evs_parsed *parse_ok(const char *body, size_t len, int shape, unsigned flags)
{
    evs_parsed *p = NULL;
    char err[256] = "";
    int rc = evs_parse_events(body, len, shape, flags, &p, err, sizeof err);
    if (rc != 0)
        fail_msg("parse of <%.*s> failed: %d %s", (int)len, body, rc, err);
    assert_non_null(p);
    return p;
}

static void parse_fails(const char *body, size_t len, int shape, unsigned flags,
                        const char *want)
{
    evs_parsed *p = (evs_parsed *)1;
    char err[256] = "";
    int rc = evs_parse_events(body, len, shape, flags, &p, err, sizeof err);
    if (rc != EVS_EINVAL)
        fail_msg("parse of <%.*s> gave %d, want EVS_EINVAL", (int)len, body, rc);
    assert_null(p);
    assert_clean_message(err);
    assert_contains(err, want);
}

static void check_fails(const char *in, size_t len, int want_object, const char *want)
{
    const char *out = (const char *)1;
    size_t out_len = 99;
    char *owned = (char *)1;
    char err[256] = "";
    assert_int_equal(evs__json_check(in, len, want_object, &out, &out_len, &owned, err, sizeof err),
                     EVS_EINVAL);
    assert_null(owned);
    assert_null(out);
    assert_clean_message(err);
    assert_contains(err, want);
}

/* evs__json_check must succeed and give exactly want. */
static void check_gives(const char *in, size_t len, const char *want)
{
    const char *out = NULL;
    size_t out_len = 0;
    char *owned = NULL;
    char err[256] = "";
    int rc = evs__json_check(in, len, 0, &out, &out_len, &owned, err, sizeof err);
    if (rc)
        fail_msg("check of <%.*s> failed: %s", (int)len, in, err);
    assert_int_equal(out_len, strlen(want));
    assert_memory_equal(out, want, out_len);
    if (out_len == len)
        assert_ptr_equal(out, in);     /* nothing removed: no copy */
    else
        assert_ptr_equal(out, owned);
    free(owned);
}

static void assert_span(const char *p, size_t n, const char *want)
{
    if (!p)
        fail_msg("span is NULL, want %s", want);
    if (n != strlen(want) || memcmp(p, want, n) != 0)
        fail_msg("span <%.*s> != <%s>", (int)n, p, want);
}

/* ------------------------------------------------------------------------ */
/* evs__json_check                                                          */
/* ------------------------------------------------------------------------ */

static void test_check_minifies_outside_strings_only(void **state)
{
    (void)state;
    check_gives(S("{\"a\": 1, \"b\" : [1, 2,\n 3]}"), "{\"a\":1,\"b\":[1,2,3]}");
    check_gives(S("\n\t {\"k\":\"a b  c\"}\r\n "), "{\"k\":\"a b  c\"}");
    check_gives(S("{ \"sp ace\" : \" x \\\" y \" }"), "{\"sp ace\":\" x \\\" y \"}");
    /* an escaped backslash right before the closing quote */
    check_gives(S("[\"a\\\\\" , \"b\"]"), "[\"a\\\\\",\"b\"]");
    /* nothing to remove: the input pointer itself comes back */
    check_gives(S("{\"a\":[true,false,null],\"b\":\"\"}"), "{\"a\":[true,false,null],\"b\":\"\"}");
    check_gives(S("  42  "), "42");
    check_gives(S("\"only a string\""), "\"only a string\"");
}

static void test_check_keeps_numbers_and_escapes(void **state)
{
    (void)state;
    check_gives(S("[129.95, 12345678901234567890123, 1e400, -0.0, 1E+2, -1.5e-400, 0.1]"),
                "[129.95,12345678901234567890123,1e400,-0.0,1E+2,-1.5e-400,0.1]");
    /* a 400-digit integer overflows even a double */
    char big[420];
    memset(big, '9', 400);
    big[400] = '\0';
    check_gives(big, 400, big);
    check_gives(S("{\"z\":1,\"a\":2,\"m\":3}"), "{\"z\":1,\"a\":2,\"m\":3}");
    check_gives(S("\"\\u00e9\\n\\/\\ud83d\\ude00\""), "\"\\u00e9\\n\\/\\ud83d\\ude00\"");
    check_gives(S("\"\xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87 \xc3\xbc\""),
                "\"\xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87 \xc3\xbc\"");
}

static void test_check_rejects(void **state)
{
    (void)state;
    check_fails(S("{\"a\":1,\"a\":2}"), 0, "duplicate object key");
    check_fails(S("{\"a\":{\"b\":1,\"b\":1}}"), 0, "duplicate");
    check_fails(S("\"\\u0000\""), 0, "\\u0000 is not allowed");
    check_fails(S("\"\\ud800\""), 0, "invalid Unicode");
    check_fails(S("\"\xc3\x28\""), 0, "unable to decode byte");
    check_fails(S("\"\xc0\xaf\""), 0, "unable to decode byte");        /* overlong '/' */
    check_fails(S("\"\xed\xa0\x80\""), 0, "unable to decode byte");    /* raw surrogate */
    check_fails(S("\"a\tb\""), 0, "control character");
    check_fails(S("\"a\0b\""), 0, "at byte 3 (line 1, column 3): a NUL byte");
    check_fails(S("{\"a\":1} x"), 0, "end of file expected");
    check_fails(S("[1 2]"), 0, "at byte 4 (line 1, column 4)");
    check_fails(S("01"), 0, "invalid token");
    check_fails(S("[1.]"), 0, "invalid");
    check_fails(S("{\"a\":tru}"), 0, "invalid JSON at byte");
    check_fails(S(""), 0, "expected a JSON value, got nothing");
    check_fails(S("  \n"), 0, "only whitespace");
    check_fails(NULL, 0, 0, "nothing");
    /* errors behind a huge number are still found (the fallback path) */
    check_fails(S("[1e400, 01]"), 0, "invalid token");
    check_fails(S("[1e400, {\"a\":1,\"a\":1}]"), 0, "duplicate");
    check_fails(S("[1e400, \"\\u0000\"]"), 0, "\\u0000");
    check_fails(S("[1e400 1e401]"), 0, "at byte 12");
    check_fails(S("[1e400 12]"), 0, "at byte 9");
    check_fails(S("[1e400 1]"), 0, "at byte 8");
    check_fails(S("[1e400,\n 1e401 2]"), 0, "at byte 16 (line 2, column 8)");
    /* raw NUL after a number or literal (jansson 2.14 alone would skip it) */
    check_fails(S("[1\0]"), 0, "at byte 3 (line 1, column 3): a NUL byte is not allowed");
    check_fails(S("true\0"), 0, "NUL byte");
    check_fails(S("{\"a\":null\0}"), 0, "NUL byte");
    check_fails(S("{\"p\\u006f\":1\0}"), 0, "NUL byte");     /* escaped key: jansson's path */
    /* want_object */
    check_fails(S("[1]"), 1, "expected a JSON object, got an array");
    check_fails(S("\"s\""), 1, "got a string");
    check_fails(S("null"), 1, "got null");
}

/* Where the fast validator is unsure (many keys, escaped keys, deep nesting)
 * jansson decides: results must be the same either way. */
static void test_check_beyond_the_fast_path(void **state)
{
    (void)state;
    char *buf = malloc(200000);
    assert_non_null(buf);
    /* an object with 300 keys: valid; then with a duplicate at the end */
    size_t o = 0;
    buf[o++] = '{';
    for (int i = 0; i < 300; i++)
        o += (size_t)sprintf(buf + o, "%s\"k%d\": %d", i ? ", " : "", i, i);
    buf[o++] = '}';
    buf[o] = '\0';
    const char *out;
    size_t out_len;
    char *owned;
    char err[256];
    assert_int_equal(evs__json_check(buf, o, 1, &out, &out_len, &owned, err, sizeof err), 0);
    assert_int_equal(out_len, o - 299 - 300);    /* the spaces after commas and colons */
    free(owned);
    o--;
    o += (size_t)sprintf(buf + o, ", \"k7\": 1}");
    check_fails(buf, o, 1, "duplicate object key");

    /* nesting deeper than the fast path tracks, but within jansson's limit */
    o = 0;
    for (int i = 0; i < 500; i++)
        buf[o++] = '[';
    buf[o++] = '1';
    for (int i = 0; i < 500; i++)
        buf[o++] = ']';
    check_gives(buf, o, (buf[o] = '\0', buf));
    /* beyond jansson's limit: refused, not a stack overflow */
    o = 0;
    for (int i = 0; i < 50000; i++)
        buf[o++] = '[';
    for (int i = 0; i < 50000; i++)
        buf[o++] = ']';
    check_fails(buf, o, 0, "maximum parsing depth");
    /* inner objects have their own keys: "a" twice at different levels is fine */
    check_gives(S("{\"a\":{\"a\":{\"a\":1},\"b\":2},\"b\":[{\"a\":1},{\"a\":2}]}"),
                "{\"a\":{\"a\":{\"a\":1},\"b\":2},\"b\":[{\"a\":1},{\"a\":2}]}");
    check_fails(S("{\"a\":{\"b\":1},\"c\":{\"d\":1,\"d\":2}}"), 0, "duplicate");
    free(buf);
}

static void test_check_want_object_ok(void **state)
{
    (void)state;
    const char *out;
    size_t out_len;
    char *owned;
    char err[128];
    assert_int_equal(evs__json_check(S("{ }"), 1, &out, &out_len, &owned, err, sizeof err), 0);
    assert_span(out, out_len, "{}");
    free(owned);
}

static void test_error_messages_are_sanitized(void **state)
{
    (void)state;
    char err[64];
    evs__errf(err, sizeof err, "a\x01" "b\x7f" "c\xff" "d\xc2\x85" "e\xc3\xbc");
    assert_string_equal(err, "a?b?c?d??e\xc3\xbc");
    /* truncation in the middle of a character drops the partial character */
    char small[5];
    evs__errf(small, sizeof small, "abc\xc3\xbc");
    assert_string_equal(small, "abc");
    evs__errf(NULL, 0, "nothing happens");
}

/* ------------------------------------------------------------------------ */
/* evs_parse_events                                                         */
/* ------------------------------------------------------------------------ */

static void test_parse_single_object(void **state)
{
    (void)state;
    const char body[] =
        "{ \"type\" : \"OrderPlaced\",\n"
        "  \"data\" : { \"total\" : 129.95, \"n\": 12345678901234567890123, \"big\": 1e400,\n"
        "              \"s\": \"a  b\", \"z\": 0, \"a\": [1, 2] },\n"
        "  \"metadata\": {\"by\": \"\xc3\xbc\\u00fc\"},\n"
        "  \"id\": \"0190A6E2-7C3B-7DEF-8123-456789ABCDEF\" }";
    evs_parsed *p = parse_ok(S(body), EVS_PARSE_AUTO, 0);
    size_t n = 0;
    const evs_event_in *ev = evs_parsed_events(p, &n);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].type, "OrderPlaced");
    assert_span(ev[0].data, ev[0].data_len,
                "{\"total\":129.95,\"n\":12345678901234567890123,\"big\":1e400,"
                "\"s\":\"a  b\",\"z\":0,\"a\":[1,2]}");
    assert_span(ev[0].metadata, ev[0].metadata_len, "{\"by\":\"\xc3\xbc\\u00fc\"}");
    static const uint8_t want_id[16] = {0x01, 0x90, 0xa6, 0xe2, 0x7c, 0x3b, 0x7d, 0xef,
                                        0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
    assert_non_null(ev[0].id);
    assert_memory_equal(ev[0].id, want_id, 16);
    assert_null(ev[0].stream);
    assert_int_equal(ev[0].expected_version, EVS_EXPECT_ANY);
    evs_parsed_free(p);
}

static void test_parse_defaults_and_nulls(void **state)
{
    (void)state;
    evs_parsed *p = parse_ok(S("[{\"type\":\"A\"},{\"type\":\"B\",\"data\":null,\"metadata\":null,"
                               "\"id\":null},{\"type\":\"C\",\"data\":\"x\"},{\"type\":\"D\",\"data\":-3}]"),
                             EVS_PARSE_AUTO, 0);
    size_t n;
    const evs_event_in *ev = evs_parsed_events(p, &n);
    assert_int_equal(n, 4);
    assert_null(ev[0].data);             /* absent: NULL means null */
    assert_int_equal(ev[0].data_len, 0);
    assert_null(ev[0].metadata);
    assert_null(ev[0].id);
    assert_span(ev[1].data, ev[1].data_len, "null");
    assert_null(ev[1].metadata);         /* metadata null == absent */
    assert_null(ev[1].id);
    assert_span(ev[2].data, ev[2].data_len, "\"x\"");
    assert_span(ev[3].data, ev[3].data_len, "-3");
    assert_string_equal(ev[3].type, "D");
    evs_parsed_free(p);
}

static void test_parse_escaped_keys_and_unicode(void **state)
{
    (void)state;
    /* "\u0064ata" is the key data, "\u0074ype" is type */
    evs_parsed *p = parse_ok(S("{\"\\u0074ype\":\"T\\u00e9\\\"q\",\"\\u0064ata\":{\"\\u0041\":\"\xf0\x9f\x8e\x89\"}}"),
                             EVS_PARSE_AUTO, 0);
    size_t n;
    const evs_event_in *ev = evs_parsed_events(p, &n);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].type, "T\xc3\xa9\"q");   /* decoded */
    assert_span(ev[0].data, ev[0].data_len, "{\"\\u0041\":\"\xf0\x9f\x8e\x89\"}");  /* raw */
    evs_parsed_free(p);

    parse_fails(S("{\"type\":\"A\",\"\\u0074ype\":\"B\"}"), EVS_PARSE_AUTO, 0, "duplicate");
    parse_fails(S("{\"type\":\"A\",\"d\\u0061ta2\":1}"), EVS_PARSE_AUTO, 0,
                "event 0: unknown field \"data2\"");
}

static void test_parse_rejects_bad_events(void **state)
{
    (void)state;
    const int A = EVS_PARSE_AUTO;
    parse_fails(S("{\"data\":1}"), A, 0, "event 0: field \"type\" is required");
    parse_fails(S("[{\"type\":\"A\"},{\"type\":\"B\"},{\"type\":7}]"), A, 0,
                "event 2: field \"type\" must be a string, got a number");
    parse_fails(S("{\"type\":\"\"}"), A, 0, "field \"type\" must be a string of 1-255 bytes");
    parse_fails(S("{\"type\":\"a\\nb\"}"), A, 0, "without control characters");
    parse_fails(S("{\"type\":\"a\\u0085b\"}"), A, 0, "without control characters");
    parse_fails(S("{\"type\":null}"), A, 0, "got null");
    parse_fails(S("{\"type\":\"A\",\"Type\":\"B\"}"), A, 0, "unknown field \"Type\"");
    parse_fails(S("{\"type\":\"A\",\"stream\":\"s\"}"), A, 0, "unknown field \"stream\"");
    parse_fails(S("{\"type\":\"A\",\"expected_version\":1}"), A, 0,
                "unknown field \"expected_version\"");
    parse_fails(S("{\"type\":\"A\",\"position\":1}"), A, 0, "unknown field \"position\"");
    parse_fails(S("{\"type\":\"A\",\"metadata\":[1]}"), A, 0,
                "field \"metadata\" must be an object or null, got an array");
    parse_fails(S("{\"type\":\"A\",\"metadata\":\"x\"}"), A, 0, "got a string");
    parse_fails(S("{\"type\":\"A\",\"id\":\"not-a-uuid\"}"), A, 0, "field \"id\" must be a UUID");
    parse_fails(S("{\"type\":\"A\",\"id\":42}"), A, 0, "field \"id\" must be a UUID");
    parse_fails(S("{\"type\":\"A\",\"id\":\"{0190a6e2-7c3b-7def-8123-456789abcdef}\"}"), A, 0,
                "field \"id\"");
    parse_fails(S("{\"type\":\"A\",\"id\":\"0190a6e27c3b7def8123456789abcdef\"}"), A, 0,
                "field \"id\"");
    parse_fails(S("{\"type\":\"A\",\"id\":\"0190a6e2-7c3b-7def-8123-456789abcdeg\"}"), A, 0,
                "field \"id\"");
    /* shapes */
    parse_fails(S("[]"), A, 0, "no events");
    parse_fails(S("   "), A, 0, "the body is empty");
    parse_fails(S(""), A, 0, "the body is empty");
    parse_fails(S("\"x\""), A, 0, "expected a JSON object or an array of objects, got a string");
    parse_fails(S("[{\"type\":\"A\"}, 3]"), A, 0, "event 1: expected a JSON object, got a number");
    parse_fails(S("[{\"type\":\"A\"}, [ ]]"), A, 0, "event 1: expected a JSON object, got an array");
    /* JSON-level problems carry the byte offset */
    parse_fails(S("{\"type\":\"A\",\"type\":\"B\"}"), A, 0, "duplicate object key");
    parse_fails(S("{\"type\":\"A\",\"data\":\"\xff\"}"), A, 0, "invalid JSON at byte");
    parse_fails(S("{\"type\":\"A\",\"data\":\"\\u0000\"}"), A, 0, "\\u0000 is not allowed");
    parse_fails(S("\n{\"type\":\"A\",\n\"data\":[1,]}"), A, 0, "(line 3, column");
    parse_fails(S("{\"type\":\"A\"}{\"type\":\"B\"}"), A, 0, "end of file expected");
    parse_fails(S("{\"type\":\"A\",\"data\":\"a\x01\"}"), A, 0, "control character");
    parse_fails(S("{\"type\":\"A\",\"data\":1\0}"), A, 0, "NUL byte");
    parse_fails(S("{\"type\":\"A\"}"), 7, 0, "unknown input shape");
}

static void test_parse_type_length_limit(void **state)
{
    (void)state;
    char body[600];
    char name[300];
    memset(name, 'x', sizeof name);
    snprintf(body, sizeof body, "{\"type\":\"%.*s\"}", 255, name);
    evs_parsed *p = parse_ok(body, strlen(body), EVS_PARSE_AUTO, 0);
    size_t n;
    assert_int_equal(strlen(evs_parsed_events(p, &n)[0].type), 255);
    evs_parsed_free(p);
    snprintf(body, sizeof body, "{\"type\":\"%.*s\"}", 256, name);
    parse_fails(body, strlen(body), EVS_PARSE_AUTO, 0, "(got 256 bytes)");
}

static void test_parse_multi_stream(void **state)
{
    (void)state;
    const unsigned M = EVS_PARSE_MULTI_STREAM;
    evs_parsed *p = parse_ok(S("[{\"stream\":\"orders/1\",\"type\":\"A\"},"
                               "{\"stream\":\"orders/2\",\"type\":\"B\",\"expected_version\":0},"
                               "{\"stream\":\"o\",\"type\":\"C\",\"expected_version\":\"no_stream\"},"
                               "{\"stream\":\"o\",\"type\":\"C\",\"expected_version\":\"exists\"},"
                               "{\"stream\":\"o\",\"type\":\"C\",\"expected_version\":\"any\"},"
                               "{\"stream\":\"o\",\"type\":\"C\",\"expected_version\":9223372036854775807},"
                               "{\"stream\":\"o\",\"type\":\"C\",\"expected_version\":\"17\"},"
                               "{\"stream\":\"o\",\"type\":\"C\",\"expected_version\":null}]"),
                             EVS_PARSE_AUTO, M);
    size_t n;
    const evs_event_in *ev = evs_parsed_events(p, &n);
    assert_int_equal(n, 8);
    assert_string_equal(ev[0].stream, "orders/1");
    assert_int_equal(ev[0].expected_version, EVS_EXPECT_ANY);
    assert_string_equal(ev[1].stream, "orders/2");
    assert_int_equal(ev[1].expected_version, 0);
    assert_int_equal(ev[2].expected_version, EVS_EXPECT_NO_STREAM);
    assert_int_equal(ev[3].expected_version, EVS_EXPECT_EXISTS);
    assert_int_equal(ev[4].expected_version, EVS_EXPECT_ANY);
    assert_true(ev[5].expected_version == INT64_MAX);
    assert_int_equal(ev[6].expected_version, 17);
    assert_int_equal(ev[7].expected_version, EVS_EXPECT_ANY);
    evs_parsed_free(p);

    const int A = EVS_PARSE_AUTO;
    parse_fails(S("{\"type\":\"A\"}"), A, M, "event 0: field \"stream\" is required");
    parse_fails(S("{\"type\":\"A\",\"stream\":\"\"}"), A, M, "field \"stream\" must be a string of 1-255");
    parse_fails(S("{\"type\":\"A\",\"stream\":\"a\\tb\"}"), A, M, "field \"stream\"");
    parse_fails(S("{\"type\":\"A\",\"stream\":5}"), A, M, "field \"stream\" must be a string, got a number");
    const char *bad_ev[] = {"-1", "1.0", "1e3", "9223372036854775808", "\"-1\"", "\"+1\"",
                            "\"\"", "\"ANY\"", "\" 1\"", "true", "{}", "[]"};
    for (size_t i = 0; i < sizeof bad_ev / sizeof bad_ev[0]; i++) {
        char body[200];
        snprintf(body, sizeof body, "[{\"type\":\"A\",\"stream\":\"s\"},"
                 "{\"type\":\"A\",\"stream\":\"s\",\"expected_version\":%s}]", bad_ev[i]);
        parse_fails(body, strlen(body), A, M,
                    "event 1: field \"expected_version\" must be a non-negative integer");
    }
}

static void test_parse_allow_position(void **state)
{
    (void)state;
    const char line[] =
        "{\"position\":42,\"stream\":\"orders/17\",\"version\":3,"
        "\"id\":\"0190a6e2-7c3b-7def-8123-456789abcdef\",\"type\":\"OrderPlaced\","
        "\"time\":\"2026-11-22T11:30:00.123456Z\",\"data\":{\"a\":1},\"metadata\":{\"m\":2}}";
    evs_parsed *p = parse_ok(S(line), EVS_PARSE_NDJSON, EVS_PARSE_ALLOW_POSITION);
    size_t n;
    const evs_event_in *ev = evs_parsed_events(p, &n);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0].stream, "orders/17");
    assert_string_equal(ev[0].type, "OrderPlaced");
    assert_span(ev[0].data, ev[0].data_len, "{\"a\":1}");
    assert_span(ev[0].metadata, ev[0].metadata_len, "{\"m\":2}");
    assert_non_null(ev[0].id);
    evs_parsed_free(p);
    /* without the flag the served fields are unknown */
    parse_fails(S(line), EVS_PARSE_NDJSON, 0, "line 1: unknown field \"position\"");
    /* with it, stream is still optional unless MULTI_STREAM */
    p = parse_ok(S("{\"type\":\"A\",\"time\":null}"), EVS_PARSE_AUTO, EVS_PARSE_ALLOW_POSITION);
    assert_null(evs_parsed_events(p, &n)[0].stream);
    evs_parsed_free(p);
    /* expected_version still needs MULTI_STREAM */
    parse_fails(S("{\"type\":\"A\",\"expected_version\":1}"), EVS_PARSE_AUTO,
                EVS_PARSE_ALLOW_POSITION, "unknown field \"expected_version\"");
}

static void test_parse_ndjson(void **state)
{
    (void)state;
    const char body[] =
        "{\"type\":\"A\",\"data\":{ \"x\" : 1 }}\n"
        "\n"
        "   \t\r\n"
        "{\"type\":\"B\",\"data\":\"two words\"}\r\n"
        "{\"type\":\"C\"}";          /* no final newline */
    evs_parsed *p = parse_ok(S(body), EVS_PARSE_NDJSON, 0);
    size_t n;
    const evs_event_in *ev = evs_parsed_events(p, &n);
    assert_int_equal(n, 3);
    assert_string_equal(ev[0].type, "A");
    assert_span(ev[0].data, ev[0].data_len, "{\"x\":1}");
    assert_string_equal(ev[1].type, "B");
    assert_span(ev[1].data, ev[1].data_len, "\"two words\"");
    assert_string_equal(ev[2].type, "C");
    assert_null(ev[2].data);
    evs_parsed_free(p);

    const int N = EVS_PARSE_NDJSON;
    parse_fails(S("{\"type\":\"A\"}\n\n\n{\"type\":\"B\",\"x\":1}\n"), N, 0,
                "line 4: unknown field \"x\"");
    parse_fails(S("{\"type\":\"A\"}\n\n{\"type\":\"B\",}\n"), N, 0,
                "line 3: invalid JSON at column 13");
    parse_fails(S("{\"type\":\"A\"}\n[{\"type\":\"B\"}]\n"), N, 0,
                "line 2: expected a JSON object, got an array");
    parse_fails(S("{\"type\":\"A\"}\n{\"data\":1}"), N, 0, "line 2: field \"type\" is required");
    parse_fails(S("\n \n"), N, 0, "no events");
    parse_fails(S(""), N, 0, "no events");
    /* a pretty-printed object is not one line */
    parse_fails(S("{\n\"type\":\"A\"}"), N, 0, "line 1: invalid JSON");
}

static void test_parse_thousand_events(void **state)
{
    (void)state;
    size_t cap = 1000 * 80 + 16;
    char *body = malloc(cap);
    assert_non_null(body);
    size_t o = 0;
    body[o++] = '[';
    for (int i = 0; i < 1000; i++)
        o += (size_t)snprintf(body + o, cap - o, "%s{\"type\":\"T%d\", \"data\": {\"i\": %d.50}}",
                              i ? ",\n" : "", i, i);
    body[o++] = ']';
    evs_parsed *p = parse_ok(body, o, EVS_PARSE_AUTO, 0);
    size_t n;
    const evs_event_in *ev = evs_parsed_events(p, &n);
    assert_int_equal(n, 1000);
    for (int i = 0; i < 1000; i++) {
        char want[64];
        snprintf(want, sizeof want, "T%d", i);
        assert_string_equal(ev[i].type, want);
        snprintf(want, sizeof want, "{\"i\":%d.50}", i);
        assert_span(ev[i].data, ev[i].data_len, want);
    }
    evs_parsed_free(p);

    /* and the same as NDJSON */
    o = 0;
    for (int i = 0; i < 1000; i++)
        o += (size_t)snprintf(body + o, cap - o, "{\"type\":\"T%d\",\"data\":%d}\n", i, i);
    p = parse_ok(body, o, EVS_PARSE_NDJSON, 0);
    ev = evs_parsed_events(p, &n);
    assert_int_equal(n, 1000);
    assert_string_equal(ev[999].type, "T999");
    assert_span(ev[999].data, ev[999].data_len, "999");
    evs_parsed_free(p);
    free(body);
}

static void test_parse_null_args(void **state)
{
    (void)state;
    evs_parsed *p = NULL;
    /* err may be NULL */
    assert_int_equal(evs_parse_events(S("{}"), EVS_PARSE_AUTO, 0, &p, NULL, 0), EVS_EINVAL);
    assert_null(p);
    assert_int_equal(evs_parse_events(NULL, 0, EVS_PARSE_AUTO, 0, &p, NULL, 0), EVS_EINVAL);
    size_t n = 5;
    assert_null(evs_parsed_events(NULL, &n));
    assert_int_equal(n, 0);
    evs_parsed_free(NULL);
}

static void test_parse_expected(void **state)
{
    (void)state;
    int64_t v = 123;
    assert_int_equal(evs_parse_expected("any", &v), 0);
    assert_int_equal(v, EVS_EXPECT_ANY);
    assert_int_equal(evs_parse_expected("no_stream", &v), 0);
    assert_int_equal(v, EVS_EXPECT_NO_STREAM);
    assert_int_equal(evs_parse_expected("exists", &v), 0);
    assert_int_equal(v, EVS_EXPECT_EXISTS);
    assert_int_equal(evs_parse_expected("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(evs_parse_expected("42", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(evs_parse_expected("9223372036854775807", &v), 0);
    assert_true(v == INT64_MAX);
    const char *bad[] = {"", "-1", "+1", "9223372036854775808", "99999999999999999999",
                         "1.0", "1e3", " 1", "1 ", "Any", "none", "0x10", "exists "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 7;
        if (evs_parse_expected(bad[i], &v) != EVS_EINVAL)
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_int_equal(v, 7);
    }
    assert_int_equal(evs_parse_expected(NULL, &v), EVS_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* evs_event_format and evs_time_format                                     */
/* ------------------------------------------------------------------------ */

static const uint8_t known_id[16] = {0x01, 0x90, 0xa6, 0xe2, 0x7c, 0x3b, 0x7d, 0xef,
                                     0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};

static void test_format_known_event_from_parse(void **state)
{
    (void)state;
    /* what a client sends, through the parser, to the served line */
    evs_parsed *p = parse_ok(S("{\"type\": \"OrderPlaced\", \"data\": {\"total\": 129.95, "
                               "\"n\": 12345678901234567890123, \"x\": 1e400, \"who\": \"\xf0\x9f\x98\x80 \xe4\xb8\xad\","
                               " \"esc\": \"\\u00e9\\n\"}, \"metadata\": {\"by\": \"me\"}}"),
                             EVS_PARSE_AUTO, 0);
    size_t n;
    const evs_event_in *in = evs_parsed_events(p, &n);
    evs_event ev;
    memset(&ev, 0, sizeof ev);
    ev.position = 42;
    ev.version = 3;
    ev.time_us = 1795347000123456LL;
    memcpy(ev.id, known_id, 16);
    ev.stream = "orders/17";
    ev.stream_len = strlen(ev.stream);
    ev.type = in[0].type;
    ev.type_len = strlen(in[0].type);
    ev.data = in[0].data;
    ev.data_len = in[0].data_len;
    ev.metadata = in[0].metadata;
    ev.metadata_len = in[0].metadata_len;

    const char *want =
        "{\"position\":42,\"stream\":\"orders/17\",\"version\":3,"
        "\"id\":\"0190a6e2-7c3b-7def-8123-456789abcdef\",\"type\":\"OrderPlaced\","
        "\"time\":\"2026-11-22T11:30:00.123456Z\","
        "\"data\":{\"total\":129.95,\"n\":12345678901234567890123,\"x\":1e400,"
        "\"who\":\"\xf0\x9f\x98\x80 \xe4\xb8\xad\",\"esc\":\"\\u00e9\\n\"},"
        "\"metadata\":{\"by\":\"me\"}}";
    char buf[512];
    size_t need = evs_event_format(&ev, buf, sizeof buf);
    assert_int_equal(need, strlen(want));
    assert_string_equal(buf, want);

    /* the served line is itself valid, minified JSON */
    const char *out;
    size_t out_len;
    char *owned;
    char err[128];
    assert_int_equal(evs__json_check(buf, need, 1, &out, &out_len, &owned, err, sizeof err), 0);
    assert_ptr_equal(out, buf);
    assert_null(owned);

    /* and re-imports with ALLOW_POSITION, giving the same bytes */
    evs_parsed *p2 = parse_ok(buf, need, EVS_PARSE_NDJSON, EVS_PARSE_ALLOW_POSITION);
    const evs_event_in *in2 = evs_parsed_events(p2, &n);
    assert_span(in2[0].data, in2[0].data_len, "{\"total\":129.95,\"n\":12345678901234567890123,"
                "\"x\":1e400,\"who\":\"\xf0\x9f\x98\x80 \xe4\xb8\xad\",\"esc\":\"\\u00e9\\n\"}");
    assert_memory_equal(in2[0].id, known_id, 16);
    evs_parsed_free(p2);
    evs_parsed_free(p);
}

static void test_format_null_data_no_metadata_and_escaping(void **state)
{
    (void)state;
    evs_event ev;
    memset(&ev, 0, sizeof ev);
    ev.position = 18446744073709551615ULL;
    ev.version = 1;
    ev.time_us = 0;
    ev.stream = "a\"b\\c\x01/\xc3\xbc";
    ev.stream_len = strlen(ev.stream);
    ev.type = "T\n\t";
    ev.type_len = 3;
    const char *want =
        "{\"position\":18446744073709551615,\"stream\":\"a\\\"b\\\\c\\u0001/\xc3\xbc\",\"version\":1,"
        "\"id\":\"00000000-0000-0000-0000-000000000000\",\"type\":\"T\\n\\t\","
        "\"time\":\"1970-01-01T00:00:00.000000Z\",\"data\":null}";
    char buf[400];
    assert_int_equal(evs_event_format(&ev, buf, sizeof buf), strlen(want));
    assert_string_equal(buf, want);

    /* a too-small buffer: the needed length comes back, nothing past cap is touched */
    size_t need = strlen(want);
    memset(buf, '#', sizeof buf);
    assert_int_equal(evs_event_format(&ev, buf, 10), need);
    for (size_t i = 10; i < sizeof buf; i++)
        assert_int_equal(buf[i], '#');
    assert_int_equal(evs_event_format(&ev, NULL, 0), need);
    /* exactly the needed size fits (no NUL then) */
    memset(buf, '#', sizeof buf);
    assert_int_equal(evs_event_format(&ev, buf, need), need);
    assert_memory_equal(buf, want, need);
    assert_int_equal(buf[need], '#');
    /* data_len 0 is null too */
    ev.data = "";
    ev.data_len = 0;
    assert_int_equal(evs_event_format(&ev, buf, sizeof buf), need);
    assert_string_equal(buf, want);
}

static void test_time_format(void **state)
{
    (void)state;
    struct { int64_t us; const char *want; } cases[] = {
        {0, "1970-01-01T00:00:00.000000Z"},
        {1, "1970-01-01T00:00:00.000001Z"},
        {-1, "1969-12-31T23:59:59.999999Z"},
        {1709210096789012LL, "2024-02-29T12:34:56.789012Z"},
        {951868800000001LL, "2000-03-01T00:00:00.000001Z"},
        {951868800000000LL - 1, "2000-02-29T23:59:59.999999Z"},
        {1795347000123456LL, "2026-11-22T11:30:00.123456Z"},
        {-2203891200000000LL, "1900-03-01T00:00:00.000000Z"},
        {-2203891200000000LL - 1, "1900-02-28T23:59:59.999999Z"},  /* 1900: no leap day */
        {253402300799999999LL, "9999-12-31T23:59:59.999999Z"},
        {INT64_MAX, "9999-12-31T23:59:59.999999Z"},                /* clamped */
        {INT64_MIN, "0000-01-01T00:00:00.000000Z"},
        {-62167219200000000LL, "0000-01-01T00:00:00.000000Z"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[28];
        memset(out, 'x', sizeof out);
        evs_time_format(cases[i].us, out);
        assert_string_equal(out, cases[i].want);
    }
}

/* ------------------------------------------------------------------------ */
/* UUIDs                                                                    */
/* ------------------------------------------------------------------------ */

static void test_uuid_format_parse(void **state)
{
    (void)state;
    char text[37];
    evs_uuid_format(known_id, text);
    assert_string_equal(text, "0190a6e2-7c3b-7def-8123-456789abcdef");
    uint8_t id[16];
    assert_int_equal(evs_uuid_parse(text, 36, id), 0);
    assert_memory_equal(id, known_id, 16);
    assert_int_equal(evs_uuid_parse("0190A6E2-7C3B-7DEF-8123-456789ABCDEF", 36, id), 0);
    assert_memory_equal(id, known_id, 16);

    const char *bad[] = {
        "0190a6e2-7c3b-7def-8123-456789abcde",      /* 35 */
        "0190a6e2-7c3b-7def-8123-456789abcdef0",    /* 37 */
        "0190a6e27c3b-7def-8123-456789abcdef0",     /* hyphen moved */
        "0190a6e2-7c3b-7def-8123_456789abcdef",
        "0190a6e2-7c3b-7def-8123-456789abcdeg",
        "{190a6e2-7c3b-7def-8123-456789abcdef",
        "0190a6e2 7c3b 7def 8123 456789abcdef",
        "+190a6e2-7c3b-7def-8123-456789abcdef",
        "0190a6e2-7c3b-7def-8123-456789abcd\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(id, 0xAA, sizeof id);
        if (evs_uuid_parse(bad[i], strlen(bad[i]), id) != EVS_EINVAL)
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_int_equal(id[0], 0xAA);   /* untouched on failure */
    }
    assert_int_equal(evs_uuid_parse(NULL, 36, id), EVS_EINVAL);
}

static void test_uuid_v7_layout_and_order(void **state)
{
    (void)state;
    enum { N = 100000 };
    uint8_t (*ids)[16] = malloc((size_t)N * 16);
    assert_non_null(ids);
    int64_t before_ms = evs__now_us() / 1000;
    for (int i = 0; i < N; i++)
        evs_uuid_v7(ids[i]);
    int64_t after_ms = evs__now_us() / 1000;
    for (int i = 0; i < N; i++) {
        assert_int_equal(ids[i][6] >> 4, 7);           /* version */
        assert_int_equal(ids[i][8] >> 6, 2);           /* variant 10 */
        if (i > 0 && memcmp(ids[i - 1], ids[i], 16) >= 0)
            fail_msg("id %d is not greater than id %d", i, i - 1);
    }
    int64_t first_ms = 0, last_ms = 0;
    for (int k = 0; k < 6; k++) {
        first_ms = first_ms << 8 | ids[0][k];
        last_ms = last_ms << 8 | ids[N - 1][k];
    }
    assert_true(first_ms >= before_ms);
    /* the counter may run ahead of the clock by a little under heavy use */
    assert_true(last_ms <= after_ms + 1000);
    /* the text form keeps the order (lowercase hex sorts like bytes) */
    char a[37], b[37];
    evs_uuid_format(ids[0], a);
    evs_uuid_format(ids[N - 1], b);
    assert_true(strcmp(a, b) < 0);
    free(ids);
}

enum { THREADS = 4, PER_THREAD = 20000 };

static void *v7_worker(void *arg)
{
    uint8_t (*ids)[16] = arg;
    for (int i = 0; i < PER_THREAD; i++)
        evs_uuid_v7(ids[i]);
    return NULL;
}

static int cmp_id(const void *a, const void *b) { return memcmp(a, b, 16); }

static void test_uuid_v7_threads_unique(void **state)
{
    (void)state;
    uint8_t (*ids)[16] = malloc((size_t)THREADS * PER_THREAD * 16);
    assert_non_null(ids);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, v7_worker, ids + (size_t)t * PER_THREAD), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    /* each thread's ids increase; all of them are distinct */
    for (int t = 0; t < THREADS; t++)
        for (int i = 1; i < PER_THREAD; i++)
            assert_true(memcmp(ids[t * PER_THREAD + i - 1], ids[t * PER_THREAD + i], 16) < 0);
    qsort(ids, (size_t)THREADS * PER_THREAD, 16, cmp_id);
    for (size_t i = 1; i < (size_t)THREADS * PER_THREAD; i++)
        assert_true(memcmp(ids[i - 1], ids[i], 16) != 0);
    free(ids);
}

/* ------------------------------------------------------------------------ */
/* names                                                                    */
/* ------------------------------------------------------------------------ */

static void test_names(void **state)
{
    (void)state;
    char buf[300];
    memset(buf, 'a', sizeof buf);
    assert_int_equal(evs_validate_stream_name(buf, 255), 0);
    assert_int_equal(evs_validate_stream_name(buf, 256), EVS_EINVAL);
    assert_int_equal(evs_validate_stream_name(buf, 0), EVS_EINVAL);
    assert_int_equal(evs_validate_stream_name(NULL, 3), EVS_EINVAL);
    /* 255 bytes ending in a complete 4-byte character */
    memcpy(buf + 251, "\xf0\x9f\x98\x80", 4);
    assert_int_equal(evs_validate_stream_name(buf, 255), 0);
    /* the same character cut by the length */
    assert_int_equal(evs_validate_stream_name(buf, 254), EVS_EINVAL);

    struct { const char *s; int ok; } cases[] = {
        {"orders/17", 1},
        {"a b-c_d.e:f@g", 1},
        {"\xf0\x9f\x8e\x89party", 1},          /* emoji */
        {"\xe6\x97\xa5\xe6\x9c\xac", 1},       /* CJK */
        {"\xc2\xa0nbsp", 1},                   /* U+00A0: first after C1 */
        {"\xef\xbf\xbd", 1},                   /* U+FFFD */
        {"\xf4\x8f\xbf\xbf", 1},               /* U+10FFFF */
        {"a\tb", 0},
        {"a\nb", 0},
        {"\x1f", 0},
        {"a\x7f", 0},                          /* DEL */
        {"\xc2\x80", 0},                       /* U+0080 (C1) */
        {"\xc2\x85", 0},                       /* NEL (C1) */
        {"\xc2\x9f", 0},                       /* U+009F (C1) */
        {"\xc0\xaf", 0},                       /* overlong '/' */
        {"\xc1\xbf", 0},                       /* overlong */
        {"\xe0\x80\xaf", 0},                   /* overlong, 3 bytes */
        {"\xf0\x80\x80\xaf", 0},               /* overlong, 4 bytes */
        {"\xed\xa0\x80", 0},                   /* surrogate U+D800 */
        {"\xed\xbf\xbf", 0},                   /* surrogate U+DFFF */
        {"\xf4\x90\x80\x80", 0},               /* U+110000 */
        {"\xf5\x80\x80\x80", 0},
        {"\xff", 0},
        {"\x80", 0},                           /* stray continuation */
        {"a\xe2\x82", 0},                      /* truncated */
        {"\xe2\x28\xa1", 0},                   /* bad continuation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = evs__validate_name(cases[i].s, strlen(cases[i].s));
        if ((rc == 0) != cases[i].ok)
            fail_msg("case %zu: rc %d, want %s", i, rc, cases[i].ok ? "ok" : "rejected");
    }
    /* an embedded NUL is a control character */
    assert_int_equal(evs__validate_name("a\0b", 3), EVS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_minifies_outside_strings_only),
        cmocka_unit_test(test_check_keeps_numbers_and_escapes),
        cmocka_unit_test(test_check_rejects),
        cmocka_unit_test(test_check_beyond_the_fast_path),
        cmocka_unit_test(test_check_want_object_ok),
        cmocka_unit_test(test_error_messages_are_sanitized),
        cmocka_unit_test(test_parse_single_object),
        cmocka_unit_test(test_parse_defaults_and_nulls),
        cmocka_unit_test(test_parse_escaped_keys_and_unicode),
        cmocka_unit_test(test_parse_rejects_bad_events),
        cmocka_unit_test(test_parse_type_length_limit),
        cmocka_unit_test(test_parse_multi_stream),
        cmocka_unit_test(test_parse_allow_position),
        cmocka_unit_test(test_parse_ndjson),
        cmocka_unit_test(test_parse_thousand_events),
        cmocka_unit_test(test_parse_null_args),
        cmocka_unit_test(test_parse_expected),
        cmocka_unit_test(test_format_known_event_from_parse),
        cmocka_unit_test(test_format_null_data_no_metadata_and_escaping),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_uuid_format_parse),
        cmocka_unit_test(test_uuid_v7_layout_and_order),
        cmocka_unit_test(test_uuid_v7_threads_unique),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
