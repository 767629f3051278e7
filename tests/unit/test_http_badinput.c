/*
 * test_http_badinput.c — the bad-input battery of SPEC §9 over real HTTP:
 * malformed JSON, wrong types, invalid UTF-8, raw control characters,
 * unknown fields, bad query parameters, bodies over --max-body-size (with
 * and without Content-Length), events over --max-event-size, broken HTTP,
 * too many connections, and slow clients. Each must be a clear error (the
 * documented status and code, a message naming the problem), write nothing
 * (position, events, streams and bytes unchanged) and leave the server
 * serving.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "../http/http_test.h"

static const char *const limits[] = {"--max-body-size", "64K", "--max-event-size", "4K", NULL};

/* Static, not allocated: a setup that fails (cmocka then skips the
 * teardown) must not leak under LeakSanitizer. */
static ht_server the_server;

static int setup(void **state)
{
    ht_server *s = &the_server;
    *state = s;
    ht_server_init(s, limits);
    ht_server_start(s);
    return 0;
}

static int teardown(void **state)
{
    ht_server_free(*state);
    return 0;
}

typedef struct bad_case {
    const char *method, *path;
    const char *content_type;        /* NULL: none */
    const char *body;                /* NULL: no body */
    size_t len;                      /* 0: strlen(body) */
    int status;
    const char *code;
    const char *mention;             /* the message must contain this (NULL: no check) */
} bad_case;

#define EV(...) "POST", "/streams/bad", NULL, __VA_ARGS__
#define MULTI(...) "POST", "/events", NULL, __VA_ARGS__
#define WITH_NUL "{\"type\":\"A\",\"data\":\"a\0z\"}" /* a raw NUL byte */
/* a raw NUL inside an envelope's array: spun an HTTP thread forever (fuzz_http) */
#define ENVELOPE_NUL "{\"events\":[{\"stream\":\"s\",\"type\":\"A\",\"data\":[\0]}]}"

static const bad_case battery[] = {
    /* malformed JSON */
    {EV("{\"type\":\"A\"", 0, 400, "invalid_json", "byte")},
    {EV("{\"type\":\"A\",}", 0, 400, "invalid_json", NULL)},
    {EV("[{\"type\":\"A\"},]", 0, 400, "invalid_json", NULL)},
    {EV("{'type':'A'}", 0, 400, "invalid_json", NULL)},
    {EV("{\"type\":\"A\"} {\"type\":\"B\"}", 0, 400, "invalid_json", NULL)},
    {EV("{\"type\":\"A\",\"data\":tru}", 0, 400, "invalid_json", NULL)},
    {EV("{\"type\":\"A\",\"data\":01}", 0, 400, "invalid_json", NULL)},
    {EV("{\"type\":\"A\",\"data\":NaN}", 0, 400, "invalid_json", NULL)},
    {EV("{\"type\":\"A\",\"data\":\"\\x41\"}", 0, 400, "invalid_json", NULL)},
    {EV("{\"type\":\"A\",\"data\":\"\\ud800\"}", 0, 400, "invalid_json", NULL)},
    {EV("{\"type\":\"A\",\"data\":{\"k\":1,\"k\":2}}", 0, 400, "invalid_json", "duplicate")},
    {EV("{\"type\":\"A\",\"type\":\"B\"}", 0, 400, "invalid_json", "duplicate")},
    {EV("", 0, 400, "invalid_json", "empty")},
    {EV("   \n ", 0, 400, "invalid_json|invalid_event", "empty")},
    {EV("\xef\xbb\xbf{\"type\":\"A\"}", 0, 400, "invalid_json", NULL)}, /* a BOM is not JSON */
    {"POST", "/streams/bad", "application/x-ndjson", "{\"type\":\"A\"}\n{\"type\":\"B\"\n", 0, 400, "invalid_json", "line 2"},
    {"POST", "/streams/bad", "application/x-ndjson", "{\"type\":\"A\"}\n[{\"type\":\"B\"}]\n", 0, 400, "invalid_event", "line 2"},
    /* wrong shapes and types */
    {EV("42", 0, 400, "invalid_event", NULL)},
    {EV("null", 0, 400, "invalid_event", NULL)},
    {EV("\"event\"", 0, 400, "invalid_event", NULL)},
    {EV("[]", 0, 400, "invalid_event", NULL)},
    {EV("[1]", 0, 400, "invalid_event", NULL)},
    {EV("[{\"type\":\"A\"},[]]", 0, 400, "invalid_event", "event 1")},
    {EV("{\"data\":1}", 0, 400, "invalid_event", "type")},
    {EV("{\"type\":5}", 0, 400, "invalid_event", "type")},
    {EV("{\"type\":null}", 0, 400, "invalid_event", "type")},
    {EV("{\"type\":[\"A\"]}", 0, 400, "invalid_event", "type")},
    {EV("{\"type\":\"\"}", 0, 400, "invalid_event", "type")},
    {EV("{\"type\":\"A\",\"metadata\":[1]}", 0, 400, "invalid_event", "metadata")},
    {EV("{\"type\":\"A\",\"metadata\":\"m\"}", 0, 400, "invalid_event", "metadata")},
    {EV("{\"type\":\"A\",\"metadata\":7}", 0, 400, "invalid_event", "metadata")},
    {EV("{\"type\":\"A\",\"id\":7}", 0, 400, "invalid_event", "id")},
    {EV("{\"type\":\"A\",\"id\":\"not-a-uuid\"}", 0, 400, "invalid_event", "id")},
    {EV("{\"type\":\"A\",\"id\":\"0190a6e2-3c4d-7e8f-9a0b-1c2d3e4f5a6\"}", 0, 400, "invalid_event", "id")},
    {EV("{\"type\":\"A\",\"id\":\"0190a6e2-3c4d-7e8f-9a0b-1c2d3e4f5a6bb\"}", 0, 400, "invalid_event", "id")},
    {MULTI("[{\"type\":\"A\"}]", 0, 400, "invalid_event", "stream")},
    {MULTI("[{\"stream\":5,\"type\":\"A\"}]", 0, 400, "invalid_event", "stream")},
    {MULTI("[{\"stream\":\"\",\"type\":\"A\"}]", 0, 400, "invalid_event", "stream")},
    {MULTI("[{\"stream\":\"s\\u0001\",\"type\":\"A\"}]", 0, 400, "invalid_event", "stream")},
    {MULTI("[{\"stream\":\"s\",\"type\":\"A\",\"expected_version\":-1}]", 0, 400, "invalid_event", "expected_version")},
    {MULTI("[{\"stream\":\"s\",\"type\":\"A\",\"expected_version\":1.5}]", 0, 400, "invalid_event", "expected_version")},
    {MULTI("[{\"stream\":\"s\",\"type\":\"A\",\"expected_version\":\"maybe\"}]", 0, 400, "invalid_event", "expected_version")},
    {MULTI("[{\"stream\":\"s\",\"type\":\"A\",\"expected_version\":{}}]", 0, 400, "invalid_event", "expected_version")},
    {MULTI("{\"events\":[{\"stream\":\"s\",\"type\":\"A\"}],\"condition\":{\"filter\":{},\"after\":\"1\"}}", 0, 400, "invalid_event", NULL)},
    /* unknown fields (typos must surface) */
    {EV("{\"type\":\"A\",\"bogus\":1}", 0, 400, "invalid_event", "bogus")},
    {EV("{\"Type\":\"A\"}", 0, 400, "invalid_event", NULL)},
    {EV("{\"type\":\"A\",\"dat\":{}}", 0, 400, "invalid_event", "dat")},
    {EV("{\"type\":\"A\",\"stream\":\"bad\"}", 0, 400, "invalid_event", "stream")},
    {EV("{\"type\":\"A\",\"expected_version\":0}", 0, 400, "invalid_event", "expected_version")},
    {MULTI("[{\"stream\":\"s\",\"type\":\"A\",\"metdata\":{}}]", 0, 400, "invalid_event", "metdata")},
    {MULTI("{\"events\":[{\"stream\":\"s\",\"type\":\"A\"}],\"conditions\":{}}", 0, 400, "invalid_event", "conditions")},
    /* invalid UTF-8 */
    {EV("{\"type\":\"A\",\"data\":\"\xff\"}", 0, 400, "invalid_json", NULL)},
    {EV("{\"type\":\"A\",\"data\":\"\xc3\"}", 0, 400, "invalid_json", NULL)},          /* truncated sequence */
    {EV("{\"type\":\"A\",\"data\":\"\xc0\xaf\"}", 0, 400, "invalid_json", NULL)},      /* overlong */
    {EV("{\"type\":\"A\",\"data\":\"\xed\xa0\x80\"}", 0, 400, "invalid_json", NULL)},  /* an encoded surrogate */
    {EV("{\"type\":\"A\",\"data\":\"\xf4\x90\x80\x80\"}", 0, 400, "invalid_json", NULL)}, /* beyond U+10FFFF */
    {EV("{\"type\":\"A\xfe\"}", 0, 400, "invalid_json", NULL)},
    {EV("{\"type\":\"A\",\"data\":{\"\x80\":1}}", 0, 400, "invalid_json", NULL)},
    {EV("{\"type\":\"A\",\"data\":\"ok\"}\xe2\x82", 0, 400, "invalid_json", NULL)},
    /* raw control characters inside strings */
    {EV("{\"type\":\"A\",\"data\":\"a\x01z\"}", 0, 400, "invalid_json", NULL)},
    {EV("{\"type\":\"A\",\"data\":\"a\nz\"}", 0, 400, "invalid_json", NULL)},
    {EV("{\"type\":\"A\tB\"}", 0, 400, "invalid_json", NULL)},
    {EV("{\"type\":\"A\",\"data\":\"a\x1fz\"}", 0, 400, "invalid_json", NULL)},
    {"POST", "/streams/bad", NULL, WITH_NUL, sizeof WITH_NUL - 1, 400, "invalid_json", NULL},
    {"POST", "/events", NULL, ENVELOPE_NUL, sizeof ENVELOPE_NUL - 1, 400, "invalid_json", NULL},
    {EV("{\"type\":\"A\\u0007\"}", 0, 400, "invalid_event", "type")}, /* escaped control in a type */
    /* bad query parameters */
    {"POST", "/streams/bad?expected_version=-1", NULL, "{\"type\":\"A\"}", 0, 400, "invalid_parameter", "expected_version"},
    {"POST", "/streams/bad?expected_version=abc", NULL, "{\"type\":\"A\"}", 0, 400, "invalid_parameter", "expected_version"},
    {"POST", "/streams/bad?expected_version=1.5", NULL, "{\"type\":\"A\"}", 0, 400, "invalid_parameter", "expected_version"},
    {"POST", "/streams/bad?expected_version=", NULL, "{\"type\":\"A\"}", 0, 400, "invalid_parameter", "expected_version"},
    {"POST", "/streams/bad?expected_version=99999999999999999999999", NULL, "{\"type\":\"A\"}", 0, 400, "invalid_parameter", "expected_version"},
    {"POST", "/streams/bad?expected_version=%20", NULL, "{\"type\":\"A\"}", 0, 400, "invalid_parameter", "expected_version"},
    {"GET", "/events?from=abc", NULL, NULL, 0, 400, "invalid_parameter", "from"},
    {"GET", "/events?from=-1", NULL, NULL, 0, 400, "invalid_parameter", "from"},
    {"GET", "/events?from=1e3", NULL, NULL, 0, 400, "invalid_parameter", "from"},
    {"GET", "/events?from=", NULL, NULL, 0, 400, "invalid_parameter", "from"},
    {"GET", "/events?from=99999999999999999999999", NULL, NULL, 0, 400, "invalid_parameter", "from"},
    {"GET", "/events?limit=x", NULL, NULL, 0, 400, "invalid_parameter", "limit"},
    {"GET", "/events?limit=-5", NULL, NULL, 0, 400, "invalid_parameter", "limit"},
    {"GET", "/events?direction=up", NULL, NULL, 0, 400, "invalid_parameter", "direction"},
    {"GET", "/events?direction=", NULL, NULL, 0, 400, "invalid_parameter", "direction"},
    {"GET", "/events?watch=maybe", NULL, NULL, 0, 400, "invalid_parameter", "watch"},
    {"GET", "/events?watch=true&heartbeat=0", NULL, NULL, 0, 400, "invalid_parameter", "heartbeat"},
    {"GET", "/events?watch=true&heartbeat=99999", NULL, NULL, 0, 400, "invalid_parameter", "heartbeat"},
    {"GET", "/events?watch=true&heartbeat=x", NULL, NULL, 0, 400, "invalid_parameter", "heartbeat"},
    {"GET", "/events?watch=true&direction=backward", NULL, NULL, 0, 400, "invalid_parameter", "backward"},
    {"GET", "/events?type=%01", NULL, NULL, 0, 400, "invalid_parameter", "type"},
    {"GET", "/events?type=%FF", NULL, NULL, 0, 400, "invalid_parameter", "type"},
    {"GET", "/streams/s?from=x", NULL, NULL, 0, 400, "invalid_parameter", "from"},
    {"GET", "/streams/bad%FF", NULL, NULL, 0, 400, "invalid_stream_name", NULL},
    {"GET", "/streams/bad%0A", NULL, NULL, 0, 400, "invalid_stream_name", NULL},
    {"POST", "/streams/bad%C3", NULL, "{\"type\":\"A\"}", 0, 400, "invalid_stream_name", NULL},
    {"GET", "/events/not-a-uuid", NULL, NULL, 0, 400, "invalid_parameter", "UUID"},
    /* one event over --max-event-size (4K): alone, or anywhere in a batch */
    {NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};

static char *big_string(size_t n, char c)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = 0;
    return s;
}

static void run_case(ht_server *s, const bad_case *c, size_t i)
{
    char what[400];
    char shown[160];
    size_t len = c->body ? (c->len ? c->len : strlen(c->body)) : 0;
    size_t k = 0;
    for (size_t j = 0; c->body && j < len && k + 5 < sizeof shown; j++) {
        unsigned char ch = (unsigned char)c->body[j];
        if (ch >= 0x20 && ch < 0x7f) shown[k++] = (char)ch;
        else k += (size_t)snprintf(shown + k, sizeof shown - k, "\\x%02x", ch);
    }
    shown[k] = 0;
    snprintf(what, sizeof what, "case %zu: %s %s [%s]", i, c->method, c->path, shown);
    char hdr[128] = "";
    if (c->content_type) snprintf(hdr, sizeof hdr, "Content-Type: %s\r\n", c->content_type);
    ht_resp r;
    ht_request(s, c->method, c->path, hdr[0] ? hdr : NULL, c->body, len, &r);
    ht_expect_error(&r, c->status, c->code, what);
    if (c->mention && !strcasestr(r.body, c->mention))
        fail_msg("%s: expected the message to mention \"%s\", got %s", what, c->mention, r.body);
    ht_resp_free(&r);
}

static void t_battery(void **state)
{
    ht_server *s = *state;
    json_decref(ht_append_ok(s, "/streams/s", "{\"type\":\"Seed\"}", "seed"));
    ht_shape before = ht_shape_of(s);
    size_t n = 0;
    for (size_t i = 0; battery[i].method; i++, n++) run_case(s, &battery[i], i);
    ht_expect_unchanged(s, before, "the bad-input battery");
    print_message("bad-input battery: %zu requests refused with the expected codes, nothing written\n", n);
    ht_server_stop(s);
}

static void t_too_large(void **state)
{
    ht_server *s = *state;
    json_decref(ht_append_ok(s, "/streams/s", "{\"type\":\"Seed\"}", "seed"));
    ht_shape before = ht_shape_of(s);
    ht_resp r;
    /* an event just under the limit is fine (checked after: it is written) */
    /* one event over --max-event-size */
    char *big = big_string(5000, 'e');
    char *body = malloc(20000);
    snprintf(body, 20000, "{\"type\":\"Big\",\"data\":\"%s\"}", big);
    ht_post(s, "/streams/big", body, &r);
    ht_expect_error(&r, 413, "payload_too_large", "one event over --max-event-size 4K");
    ht_resp_free(&r);
    snprintf(body, 20000, "[{\"type\":\"Small\"},{\"type\":\"Big\",\"metadata\":{\"m\":\"%s\"}},{\"type\":\"Small\"}]", big);
    ht_post(s, "/streams/big", body, &r);
    ht_expect_error(&r, 413, "payload_too_large", "a batch with one event over --max-event-size");
    if (!strstr(r.body, "event 1")) fail_msg("the 413 message should name the event (event 1): %s", r.body);
    ht_resp_free(&r);
    snprintf(body, 20000, "{\"type\":\"Small\"}\n{\"type\":\"Big\",\"data\":\"%s\"}\n", big);
    ht_post_ct(s, "/streams/big", "application/x-ndjson", body, &r);
    ht_expect_error(&r, 413, "payload_too_large", "JSON Lines with one event over --max-event-size");
    ht_resp_free(&r);
    snprintf(body, 20000, "[{\"stream\":\"x\",\"type\":\"Small\"},{\"stream\":\"y\",\"type\":\"Big\",\"data\":\"%s\"}]", big);
    ht_post(s, "/events", body, &r);
    ht_expect_error(&r, 413, "payload_too_large", "POST /events with one event over --max-event-size");
    ht_resp_free(&r);
    ht_expect_unchanged(s, before, "events over --max-event-size");
    free(big);
    free(body);

    /* a body over --max-body-size (64K) with Content-Length: answered at once */
    size_t blen = 70 * 1024;
    body = malloc(blen + 1);
    size_t k = 0;
    k += (size_t)snprintf(body, blen, "[");
    while (k + 40 < blen) k += (size_t)snprintf(body + k, blen - k, "{\"type\":\"Filler\",\"data\":%zu},", k);
    body[k - 1] = ']';
    ht_request(s, "POST", "/streams/huge", NULL, body, k, &r);
    ht_expect_error(&r, 413, "payload_too_large", "a 70K body with Content-Length over --max-body-size 64K");
    ht_resp_free(&r);
    /* a Content-Length that claims a terabyte is refused before any body is sent */
    {
        int fd = ht_connect(s->port, HT_TIMEOUT_MS);
        const char *req = "POST /streams/huge HTTP/1.1\r\nHost: x\r\nContent-Length: 1099511627776\r\n\r\n";
        ht_send_all(fd, req, strlen(req), ht_now_ms() + HT_TIMEOUT_MS);
        ht_rd rd = {.fd = fd};
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        int64_t deadline = ht_now_ms() + HT_TIMEOUT_MS;
        int hr = ht_read_head(&rd, deadline, &r);
        if (hr == 1) hr = ht_read_body(&rd, deadline, &r, 0);
        if (hr != 1) fail_msg("Content-Length: 1 TiB with no body: expected an immediate 413, got no answer (%s)", ht_errname(hr));
        ht_expect_error(&r, 413, "payload_too_large", "Content-Length: 1 TiB");
        ht_resp_free(&r);
        free(rd.buf);
        close(fd);
    }
    /* the same without Content-Length (chunked): 8 MiB streamed, the server
     * must drop the bytes (bounded memory) and answer 413 */
    uint64_t rss_before = ht_proc_kb(s->pid, "VmRSS:");
    {
        int fd = ht_connect(s->port, HT_TIMEOUT_MS);
        int64_t deadline = ht_now_ms() + HT_TIMEOUT_MS * 2;
        const char *req = "POST /streams/huge HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        int rc = ht_send_all(fd, req, strlen(req), deadline);
        char chunk[16 * 1024 + 32];
        int hl = snprintf(chunk, sizeof chunk, "%x\r\n", 16 * 1024);
        memset(chunk + hl, ' ', 16 * 1024);
        chunk[hl] = '[';
        memcpy(chunk + hl + 16 * 1024, "\r\n", 2);
        for (int i = 0; i < 512 && rc == 0; i++) rc = ht_send_all(fd, chunk, (size_t)hl + 16 * 1024 + 2, deadline);
        if (rc == 0) rc = ht_send_all(fd, "0\r\n\r\n", 5, deadline);
        ht_rd rd = {.fd = fd};
        int hr = ht_read_head(&rd, deadline, &r);
        if (hr == 1) hr = ht_read_body(&rd, deadline, &r, 0);
        if (hr != 1) fail_msg("8 MiB chunked body: expected a 413 answer, got none (send: %s, read: %s)", ht_errname(rc), ht_errname(hr));
        ht_expect_error(&r, 413, "payload_too_large", "an 8 MiB chunked body over --max-body-size 64K");
        ht_resp_free(&r);
        free(rd.buf);
        close(fd);
    }
    uint64_t rss_after = ht_proc_kb(s->pid, "VmRSS:");
    if (rss_after > rss_before + 4 * 1024)
        fail_msg("an 8 MiB chunked body over the limit grew the server's RSS from %" PRIu64 " to %" PRIu64 " KiB: it should drop the bytes",
                 rss_before, rss_after);
    ht_expect_unchanged(s, before, "bodies over --max-body-size");
    free(body);

    /* limits are inclusive boundaries, not off by one: an event of exactly
     * 4096 bytes as the server counts them is not something the client
     * knows; a 3000-byte payload must pass */
    big = big_string(3000, 'o');
    body = malloc(4000);
    snprintf(body, 4000, "{\"type\":\"Fits\",\"data\":\"%s\"}", big);
    json_decref(ht_append_ok(s, "/streams/fits", body, "an event under --max-event-size"));
    free(big);
    free(body);
    ht_server_stop(s);
}

static void t_broken_http(void **state)
{
    ht_server *s = *state;
    ht_shape before = ht_shape_of(s);
    /* complete but broken requests: an error answer or a close, never a hang or a 2xx */
    static const char *const raw[] = {
        "FOO\r\n\r\n",
        "GET\r\n\r\n",
        "GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
        "POST /streams/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{\"type\":\"A\"}",
        "POST /streams/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{\"type\":\"A\"}\r\n0\r\n\r\n",
        "POST /streams/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 12\r\n\r\n{\"type\":\"A\"}",
        "GET /health HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof raw / sizeof *raw; i++) {
        int fd = ht_connect(s->port, HT_TIMEOUT_MS);
        if (fd < 0) fail_msg("broken request %zu: cannot connect: %s", i, ht_errname(fd));
        int64_t deadline = ht_now_ms() + 5000;
        ht_send_all(fd, raw[i], strlen(raw[i]), deadline);
        ht_rd rd = {.fd = fd};
        ht_resp r = {0};
        int hr = ht_read_head(&rd, deadline, &r);
        if (hr == -ETIMEDOUT) fail_msg("broken request %zu: the server neither answered nor closed within 5 s", i);
        if (hr == 1 && r.status < 400) fail_msg("broken request %zu: expected an error status, got %d", i, r.status);
        ht_resp_free(&r);
        free(rd.buf);
        close(fd);
    }
    /* bytes that are not HTTP at all (a TLS ClientHello on the plain port):
     * no answer is owed, the server must just survive it */
    {
        static const unsigned char hello[] = {0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03, 0x00, 0xff, 0x0d, 0x0a};
        int fd = ht_connect(s->port, HT_TIMEOUT_MS);
        ht_send_all(fd, hello, sizeof hello, ht_now_ms() + 2000);
        ht_sleep_ms(100);
        close(fd);
    }
    /* a 100 KB URL */
    char *url = malloc(100 * 1024 + 32);
    strcpy(url, "/streams/");
    memset(url + 9, 'u', 100 * 1024);
    url[9 + 100 * 1024] = 0;
    ht_resp r;
    int st = ht_get(s, url, &r);
    if (st != 0 && (st < 400 || st >= 500)) fail_msg("a 100 KB URL: expected a 4xx (or a closed connection), got %d", st);
    ht_resp_free(&r);
    free(url);
    /* a header section over the connection's memory limit */
    char *hdr = malloc(200 * 1024);
    size_t k = 0;
    for (int i = 0; i < 2000; i++) k += (size_t)snprintf(hdr + k, 200 * 1024 - k, "X-Filler-%d: %080d\r\n", i, 0);
    st = ht_request(s, "GET", "/health", hdr, NULL, 0, &r);
    if (st != 0 && (st < 400 || st >= 500)) fail_msg("160 KB of headers: expected a 4xx (or a closed connection), got %d", st);
    ht_resp_free(&r);
    free(hdr);
    ht_expect_unchanged(s, before, "broken HTTP");
    ht_server_stop(s);
}

/* ------------------------------------------------------- slow clients */

typedef struct bystander {
    uint16_t port;
    atomic_int *stop;
    int served, failed;
    int64_t worst_ms;
    char problem[300];
} bystander;

static void *bystander_main(void *arg)
{
    bystander *b = arg;
    ht_server fake;
    memset(&fake, 0, sizeof fake);
    fake.port = b->port;
    int n = 0;
    while (!atomic_load(b->stop)) {
        int64_t t0 = ht_now_ms();
        ht_resp r;
        int st = n++ % 2 ? ht_get(&fake, "/health", &r) : ht_post(&fake, "/streams/bystander", "{\"type\":\"B\"}", &r);
        int64_t dt = ht_now_ms() - t0;
        if (dt > b->worst_ms) b->worst_ms = dt;
        if (st == 200 || st == 201) b->served++;
        else {
            b->failed++;
            if (!b->problem[0]) snprintf(b->problem, sizeof b->problem, "got %d (%s): %.200s", st, ht_errname(r.err), r.body);
        }
        ht_resp_free(&r);
        ht_sleep_ms(10);
    }
    return NULL;
}

static void t_slow_clients(void **state)
{
    ht_server *s = *state;
    atomic_int stop;
    atomic_store(&stop, 0);
    bystander b = {.port = s->port, .stop = &stop};
    pthread_t th;
    pthread_create(&th, NULL, bystander_main, &b);
    /* three slow clients at once: headers byte by byte, then (for the POST)
     * the body byte by byte */
    const char *reqs[3] = {
        "GET /health HTTP/1.1\r\nHost: slow\r\nUser-Agent: one-byte-at-a-time\r\nConnection: close\r\n\r\n",
        ("POST /streams/slow HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\nContent-Length: 30\r\nConnection: close\r\n\r\n"
         "{\"type\":\"Slow\",\"data\":[1,2,3]}"),
        "GET /events?limit=1 HTTP/1.1\r\nHost: slow\r\nConnection: close\r\n\r\n",
    };
    int fds[3];
    size_t off[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        fds[i] = ht_connect(s->port, HT_TIMEOUT_MS);
        if (fds[i] < 0) fail_msg("slow client %d: cannot connect: %s", i, ht_errname(fds[i]));
    }
    int64_t t0 = ht_now_ms();
    for (int more = 1; more;) {
        more = 0;
        for (int i = 0; i < 3; i++) {
            if (off[i] < strlen(reqs[i])) {
                if (send(fds[i], reqs[i] + off[i], 1, MSG_NOSIGNAL) != 1) fail_msg("slow client %d: send failed: %s", i, strerror(errno));
                off[i]++;
                more = 1;
            }
        }
        ht_sleep_ms(8);
    }
    int64_t slow_ms = ht_now_ms() - t0;
    static const int want[3] = {200, 201, 200};
    for (int i = 0; i < 3; i++) {
        ht_rd rd = {.fd = fds[i]};
        ht_resp r = {0};
        int64_t deadline = ht_now_ms() + HT_TIMEOUT_MS;
        int hr = ht_read_head(&rd, deadline, &r);
        if (hr == 1) hr = ht_read_body(&rd, deadline, &r, 0);
        if (hr != 1 || r.status != want[i])
            fail_msg("slow client %d: expected %d after sending byte by byte for %" PRId64 " ms, got %d (%s)", i, want[i], slow_ms, r.status,
                     ht_errname(hr));
        ht_resp_free(&r);
        free(rd.buf);
        close(fds[i]);
    }
    atomic_store(&stop, 1);
    pthread_join(th, NULL);
    print_message("slow clients took %" PRId64 " ms; meanwhile %d other requests served, worst %" PRId64 " ms\n", slow_ms, b.served,
                  b.worst_ms);
    if (b.failed) fail_msg("while slow clients trickled, %d other requests failed: %s", b.failed, b.problem);
    if (b.served < 10) fail_msg("while slow clients trickled for %" PRId64 " ms, only %d other requests were served", slow_ms, b.served);
    if (b.worst_ms > (HT_ASAN ? 5000 : 2000))
        fail_msg("while slow clients trickled, another request took %" PRId64 " ms (expected to be served meanwhile)", b.worst_ms);
    ht_server_stop(s);
}

/* A client that stops in the middle of its headers is dropped after
 * --idle-timeout, and does not hold up the server. */
static void t_idle_timeout(void **state)
{
    ht_server *s = *state;
    ht_server_stop(s);
    s->args[s->nargs++] = "--idle-timeout";
    s->args[s->nargs++] = "1";
    ht_server_start(s);
    int fd = ht_connect(s->port, HT_TIMEOUT_MS);
    const char *half = "POST /streams/x HTTP/1.1\r\nHost: x\r\nContent-Len";
    ht_send_all(fd, half, strlen(half), ht_now_ms() + 1000);
    ht_rd rd = {.fd = fd};
    int64_t t0 = ht_now_ms();
    int rc;
    while ((rc = ht_rd_fill(&rd, ht_now_ms() + 6000)) == 1) {}
    int64_t took = ht_now_ms() - t0;
    if (rc == -ETIMEDOUT) fail_msg("a client stuck in its headers should be closed after --idle-timeout 1; still open after 6 s");
    free(rd.buf);
    close(fd);
    print_message("a half-sent request was closed after %" PRId64 " ms (--idle-timeout 1)\n", took);
    if (ht_position(s) != 0) fail_msg("a half-sent request must write nothing");
    ht_server_stop(s);
}

/* --max-connections: holding every slot must not crash or wedge the
 * server; once they are released it serves again. */
static void hold_connections(ht_server *s, int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        fds[i] = ht_connect(s->port, HT_TIMEOUT_MS);
        if (fds[i] < 0) fail_msg("connection %d of %d: cannot connect: %s", i + 1, n, ht_errname(fds[i]));
    }
    ht_sleep_ms(200); /* accepted by now */
}

static void t_too_many_connections(void **state)
{
    ht_server *s = *state;
    ht_server_stop(s);
    s->args[s->nargs++] = "--max-connections";
    s->args[s->nargs++] = "4";
    ht_server_start(s);
    int fds[4];
    hold_connections(s, fds, 4);
    /* one over the limit: whatever happens to it, nothing is written */
    int extra = ht_connect(s->port, 2000), served_extra = 0;
    if (extra >= 0) {
        const char *req = "POST /streams/over HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"type\":\"A\"}";
        ht_send_all(extra, req, strlen(req), ht_now_ms() + 2000);
    }
    for (int i = 0; i < 4; i++) close(fds[i]);
    if (extra >= 0) {
        /* once slots are free the queued request may be served (201) or
         * refused; it must not be lost in between half-written */
        ht_rd rd = {.fd = extra};
        ht_resp r = {0};
        int64_t deadline = ht_now_ms() + HT_TIMEOUT_MS;
        int hr = ht_read_head(&rd, deadline, &r);
        if (hr == 1) hr = ht_read_body(&rd, deadline, &r, 0);
        if (hr == 1 && r.status != 201 && r.status != 503)
            fail_msg("the request over --max-connections: expected 201 (served once a slot freed) or 503, got %d: %s", r.status, r.body);
        served_extra = hr == 1 && r.status == 201;
        ht_resp_free(&r);
        free(rd.buf);
        close(extra);
    }
    /* it serves normally again once it has seen the held connections close
     * (that happens on its event loop, not at our close(): poll) */
    int64_t until = ht_now_ms() + HT_TIMEOUT_MS;
    int status = 0;
    do {
        ht_resp r;
        ht_get(s, "/health", &r);
        status = r.status;
        ht_resp_free(&r);
    } while (status == 503 && ht_now_ms() < until);
    if (extra >= 0 && ht_position(s) != (uint64_t)served_extra)
        fail_msg("the request over --max-connections: position should be %d", served_extra);
    for (int i = 0; i < 8; i++) {
        /* at exactly the limit, a connection the client just closed may
         * still be counted for a moment: a 503 then, never anything else */
        ht_resp r;
        int64_t deadline = ht_now_ms() + HT_TIMEOUT_MS;
        for (;;) {
            ht_get(s, "/health", &r);
            if (r.status != 503 || ht_now_ms() >= deadline) break;
            ht_resp_free(&r);
        }
        HT_EXPECT_STATUS(&r, 200, "GET /health after the connection limit was released");
        ht_resp_free(&r);
    }
    ht_server_stop(s);
}

/* With --max-connections N and N connections open, one more client gets an
 * immediate 503 unavailable ("too many connections") and a closed
 * connection, not a silent wait in the kernel's backlog (SPEC §9). */
static void t_too_many_connections_clear_error(void **state)
{
    ht_server *s = *state;
    ht_server_stop(s);
    s->args[s->nargs++] = "--max-connections";
    s->args[s->nargs++] = "4";
    ht_server_start(s);
    int fds[4];
    hold_connections(s, fds, 4);
    int64_t t0 = ht_now_ms();
    ht_resp r;
    memset(&r, 0, sizeof r);
    int fd = ht_connect(s->port, 2000);
    int hr = fd < 0 ? fd : 0;
    if (fd >= 0) {
        const char *req = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        ht_send_all(fd, req, strlen(req), ht_now_ms() + 2000);
        ht_rd rd = {.fd = fd};
        hr = ht_read_head(&rd, ht_now_ms() + 3000, &r);
        free(rd.buf);
        close(fd);
    }
    int64_t took = ht_now_ms() - t0;
    for (int i = 0; i < 4; i++) close(fds[i]);
    if (hr == -ETIMEDOUT)
        fail_msg("one connection over --max-connections 4: expected a 503 or an immediate close, got no answer for %" PRId64 " ms", took);
    if (hr == 1 && r.status != 503) fail_msg("one connection over --max-connections 4: expected 503, got %d", r.status);
    ht_resp_free(&r);
    ht_server_stop(s);
}

int main(void)
{
    ht_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_battery, setup, teardown),
        cmocka_unit_test_setup_teardown(t_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(t_broken_http, setup, teardown),
        cmocka_unit_test_setup_teardown(t_slow_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(t_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(t_too_many_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(t_too_many_connections_clear_error, setup, teardown),
    };
    return cmocka_run_group_tests_name("http_badinput", tests, NULL, NULL) ? 1 : 0;
}
