/*
 * append.c — POST /streams/{stream} and POST /events.
 *
 * The body is parsed and validated on the HTTP thread (evs_parse_events keeps
 * the client's bytes of data and metadata), the append is queued with
 * evs_append_async and the connection suspended; the store's writer thread
 * calls back after the group commit and resumes it; the handler's next call
 * sends 201 (or 200 for a repeated write, or the error).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server.h"

static void on_appended(void *ctx, int rc)
{
    evsd_req *r = ctx;
    evsd_server *srv = r->srv;
    struct MHD_Connection *conn = r->conn;
    pthread_mutex_lock(&r->mu);
    r->append_rc = rc;
    r->append_done = 1;
    int resume = r->suspended;
    r->suspended = 0;
    pthread_mutex_unlock(&r->mu);
    /* Resume last, after unlocking: once resumed (or, if it was never
     * suspended, once unlocked) the request may be answered and freed at any
     * moment, so r is not touched again. A suspended connection cannot be
     * closed, so r is alive until this call. */
    if (resume) evsd_resume(srv, conn);
    atomic_fetch_sub(&srv->inflight, 1);
}

void evsd_append_cleanup(evsd_req *r)
{
    evs_parsed_free(r->parsed);
    r->parsed = NULL;
    free(r->commits);
    r->commits = NULL;
    free(r->stream);
    r->stream = NULL;
    free(r->expected_text);
    r->expected_text = NULL;
    for (size_t i = 0; i < r->cond_ntypes; i++) free(r->cond_types[i]);
    free(r->cond_types);
    r->cond_types = NULL;
    r->cond_ntypes = 0;
    free(r->cond_prefix);
    r->cond_prefix = NULL;
}

/* Skip a JSON value starting at p. Also used on bodies not yet validated
 * (to tell an envelope from an event object), so it must end on any bytes:
 * every step advances, and the result is never past end. (It used to stop
 * advancing at a NUL byte inside an array or object, which spun an HTTP
 * thread forever: found by fuzz_http.) */
static int is_delim(char c)
{
    return c == ',' || c == ']' || c == '}' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static const char *skip_value(const char *p, const char *end)
{
    int depth = 0;
    do {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
        if (p >= end) return end;
        char c = *p;
        if (c == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\' && p + 1 < end) p++;
            if (p < end) p++;
        } else if (c == '{' || c == '[') {
            depth++;
            p++;
        } else if (c == '}' || c == ']') {
            depth--;
            p++;
        } else if (c == ',' || c == ':') {
            p++;
        } else {
            for (p++; p < end && !is_delim(*p); p++) {}
        }
    } while (depth > 0 && p < end);
    return p;
}

/* In a top-level object, the byte range of the value of key (raw match). */
static int find_member(const char *body, size_t len, const char *key, const char **vs, const char **ve)
{
    const char *p = body, *end = body + len;
    while (p < end && *p != '{') p++;
    p++;
    size_t kl = strlen(key);
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == ',')) p++;
        if (p >= end || *p == '}') return 0;
        const char *ks = p + 1;
        const char *ke = skip_value(p, end) - 1;  /* the closing quote */
        p = ke + 1;
        while (p < end && *p != ':') p++;
        if (p >= end) return 0;
        p++;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
        const char *v = p;
        p = skip_value(p, end);
        if (ke >= ks && (size_t)(ke - ks) == kl && !memcmp(ks, key, kl)) {
            *vs = v;
            *ve = p;
            return 1;
        }
    }
    return 0;
}

/* {"events":[...],"condition":{"filter":{"types":[...],"stream_prefix":"..."},"after":P}}
 *
 * jansson checks the envelope, but not the events: it refuses numbers it
 * cannot represent (1e400, 400-digit integers), which event data may hold
 * and which evs_parse_events keeps byte for byte. So jansson reads a copy in
 * which the events array is blanked to "[ ... ]" of the same length (its line
 * breaks kept, everything else a space): byte offsets and lines of its errors
 * stay those of the body. evs_parse_events checks the events text itself
 * afterwards. Valid envelope + a valid array in the value's place = a valid
 * body. */
static int parse_envelope(evsd_req *r, const char **events, size_t *events_len, char *err, size_t errlen)
{
    json_error_t je;
    const char *vs, *ve;
    char *copy = NULL;
    const char *text = r->body.p;
    if (find_member(r->body.p, r->body.len, "events", &vs, &ve) && ve - vs >= 2 && *vs == '[' && ve[-1] == ']') {
        if (!(copy = malloc(r->body.len ? r->body.len : 1))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        memcpy(copy, r->body.p, r->body.len);
        for (size_t i = (size_t)(vs - r->body.p) + 1; i + 1 < (size_t)(ve - r->body.p); i++)
            if (copy[i] != '\n') copy[i] = ' ';
        text = copy;
    }
    json_t *root = json_loadb(text, r->body.len, JSON_REJECT_DUPLICATES, &je);
    free(copy);
    int rc = -1;
    if (!root) {
        snprintf(err, errlen, "invalid JSON at byte %d (line %d, column %d): %s", je.position, je.line, je.column, je.text);
        return -1;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "events") && strcmp(key, "condition")) {
            snprintf(err, errlen, "unknown field \"%s\" (expected \"events\" and \"condition\")", key);
            goto out;
        }
    }
    json_t *cond = json_object_get(root, "condition");
    if (cond) {
        json_t *filter = json_object_get(cond, "filter"), *after = json_object_get(cond, "after");
        if (!json_is_object(cond) || !json_is_object(filter) || !json_is_integer(after) || json_integer_value(after) < 0 ||
            json_object_size(cond) != 2) {
            snprintf(err, errlen, "condition must be {\"filter\":{...},\"after\":POSITION}");
            goto out;
        }
        json_object_foreach(filter, key, val) {
            if (!strcmp(key, "types") && json_is_array(val)) {
                size_t i;
                json_t *t;
                r->cond_types = calloc(json_array_size(val) + 1, sizeof *r->cond_types);
                if (!r->cond_types) goto out;
                json_array_foreach(val, i, t) {
                    if (!json_is_string(t)) { snprintf(err, errlen, "condition.filter.types must be strings"); goto out; }
                    r->cond_types[r->cond_ntypes++] = strdup(json_string_value(t));
                }
            } else if (!strcmp(key, "stream_prefix") && json_is_string(val)) {
                r->cond_prefix = strdup(json_string_value(val));
            } else {
                snprintf(err, errlen, "condition.filter: unknown or mistyped field \"%s\" (types: array, stream_prefix: string)", key);
                goto out;
            }
        }
        r->cond.filter.types = (const char *const *)r->cond_types;
        r->cond.filter.ntypes = r->cond_ntypes;
        r->cond.filter.stream_prefix = r->cond_prefix;
        r->cond.after = (uint64_t)json_integer_value(after);
    }
    if (!json_is_array(json_object_get(root, "events")) || !find_member(r->body.p, r->body.len, "events", &vs, &ve)) {
        snprintf(err, errlen, "field \"events\" (an array of events) is required");
        goto out;
    }
    *events = vs;
    *events_len = (size_t)(ve - vs);
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* evs_parse_events judged the events array of an envelope, which starts at
 * `events` inside `body`: make the byte, line and column of its "invalid
 * JSON" message those of the whole body (as for an error in the envelope). */
static void shift_json_error(char *err, size_t errlen, const char *body, const char *events)
{
    int b, l, c, n = 0;
    if (sscanf(err, "invalid JSON at byte %d (line %d, column %d):%n", &b, &l, &c, &n) != 3 || n == 0) return;
    size_t off = (size_t)(events - body);
    int lines = 0, col = 0;
    for (size_t i = 0; i < off; i++) {
        if (body[i] == '\n') { lines++; col = 0; }
        else if (((unsigned char)body[i] & 0xC0) != 0x80) col++;  /* columns count characters, as jansson's */
    }
    char head[128];
    int k = snprintf(head, sizeof head, "invalid JSON at byte %zu (line %d, column %d):", (size_t)b + off, l + lines,
                     l == 1 ? c + col : c);
    size_t rest = strlen(err + n);
    if (k <= 0 || (size_t)k >= errlen) return;
    if ((size_t)k + rest + 1 > errlen) {
        rest = errlen - (size_t)k - 1;
        while (rest && ((unsigned char)err[n + rest] & 0xC0) == 0x80) rest--;  /* never split a UTF-8 sequence */
    }
    memmove(err + k, err + n, rest);
    memcpy(err, head, (size_t)k);
    err[(size_t)k + rest] = 0;
}

static int is_ndjson(evsd_req *r)
{
    const char *ct = evsd_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    return ct && (!strncmp(ct, "application/x-ndjson", 20) || !strncmp(ct, "application/jsonl", 17) ||
                  !strncmp(ct, "application/json-seq", 20));
}

enum MHD_Result evsd_route_append(evsd_req *r, const char *stream)
{
    evsd_server *srv = r->srv;
    char err[512];
    int64_t expected = EVS_EXPECT_ANY;
    if (srv->cfg.read_only)
        return evsd_error(r, 503, "unavailable", "this server is read-only (--read-only): it follows another writer");
    if (evsd_auth_require(r, stream, 1, NULL) != 0) return MHD_YES;
    if (stream) {
        if (evs_validate_stream_name(stream, strlen(stream)) != 0)
            return evsd_error(r, 400, "invalid_stream_name",
                              "stream name must be 1-255 bytes of UTF-8 without control characters");
        if (!(r->stream = strdup(stream))) return MHD_NO;
        const char *ev = evsd_arg(r, "expected_version");
        if (ev) {
            if (evs_parse_expected(ev, &expected) != 0)
                return evsd_error(r, 400, "invalid_parameter",
                                  "expected_version must be any, no_stream, exists or a non-negative integer, not '%s'", ev);
            r->expected_text = strdup(ev);
        }
    }
    size_t ws = 0;
    while (ws < r->body.len && strchr(" \t\r\n", r->body.p[ws])) ws++;
    if (ws == r->body.len)
        return evsd_error(r, 400, "invalid_json", "the request body is empty; send an event object, an array or JSON Lines");
    const char *events = r->body.p;
    size_t events_len = r->body.len;
    int shape = is_ndjson(r) ? EVS_PARSE_NDJSON : EVS_PARSE_AUTO;
    if (!stream && shape == EVS_PARSE_AUTO) {
        const char *p = r->body.p, *e = p + r->body.len;
        while (p < e && strchr(" \t\r\n", *p)) p++;
        const char *vs, *ve;
        if (p < e && *p == '{' && find_member(r->body.p, r->body.len, "events", &vs, &ve)) {
            if (parse_envelope(r, &events, &events_len, err, sizeof err) != 0)
                return evsd_error(r, 400, strstr(err, "invalid JSON") ? "invalid_json" : "invalid_event", "%s", err);
        }
    }
    int rc = evs_parse_events(events, events_len, shape, stream ? 0 : EVS_PARSE_MULTI_STREAM, &r->parsed, err, sizeof err);
    if (rc && events != r->body.p) shift_json_error(err, sizeof err, r->body.p, events);
    if (rc)
        return evsd_error(r, 400, strstr(err, "invalid JSON") ? "invalid_json" : "invalid_event", "%s", err);
    size_t n;
    const evs_event_in *ev = evs_parsed_events(r->parsed, &n);
    for (size_t i = 0; !stream && i < n; i++)  /* a scoped token must cover every stream of the batch */
        if (evsd_auth_require(r, ev[i].stream, 1, NULL) != 0) return MHD_YES;
    if (!(r->commits = calloc(n ? n : 1, sizeof *r->commits))) return MHD_NO;
    pthread_mutex_lock(&r->mu);
    atomic_fetch_add(&srv->inflight, 1);
    rc = evs_append_async(srv->store, r->stream, expected, ev, n, r->cond_types || r->cond_prefix || r->cond.after ? &r->cond : NULL,
                          r->commits, &r->result, on_appended, r);
    if (rc == 0) {
        r->append_queued = 1;
        if (!r->append_done) {
            r->suspended = 1;
            MHD_suspend_connection(r->conn);
        }
    }
    if (rc) atomic_fetch_sub(&srv->inflight, 1);
    pthread_mutex_unlock(&r->mu);
    if (rc == 0) return MHD_YES;
    r->append_rc = rc;
    r->append_done = 1;
    return evsd_append_finish(r);
}

/* "expected" as the request gave it: a number, or the name. */
static void add_expected(evsd_str *s, evsd_req *r)
{
    int64_t e = r->result.expected_version;
    if (r->stream && r->expected_text) {
        int64_t parsed;
        if (evs_parse_expected(r->expected_text, &parsed) == 0 && parsed >= 0) evsd_str_addf(s, "%" PRId64, parsed);
        else evsd_str_add_json_string(s, r->expected_text, strlen(r->expected_text));
        return;
    }
    if (e >= 0) evsd_str_addf(s, "%" PRId64, e);
    else evsd_str_addf(s, "\"%s\"", e == EVS_EXPECT_NO_STREAM ? "no_stream" : e == EVS_EXPECT_EXISTS ? "exists" : "any");
}

/* The decimal digits of v at o; the end. */
static char *put_u64(char *o, uint64_t v)
{
    char t[20];
    int k = 0;
    do {
        t[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k) *o++ = t[--k];
    return o;
}

#define PUT_LIT(o, lit) (memcpy((o), (lit), sizeof(lit) - 1), (o) + sizeof(lit) - 1)

/* The 201 answer: {"first_position":F,"last_position":L,"events":[{"id":..,
 * "stream":..,"version":V,"position":P,"time":".."},...]}. Written straight
 * into s (no printf: with 100 events a request it showed in the profile of
 * batched appends). */
static int format_appended(evsd_str *s, evsd_req *r, const evs_event_in *ev, size_t n)
{
    if (evsd_str_reserve(s, 64 + 2 * 20)) return -1;
    char *o = s->p + s->len;
    o = PUT_LIT(o, "{\"first_position\":");
    o = put_u64(o, r->result.first_position);
    o = PUT_LIT(o, ",\"last_position\":");
    o = put_u64(o, r->result.last_position);
    o = PUT_LIT(o, ",\"events\":[");
    s->len = (size_t)(o - s->p);
    for (size_t i = 0; i < n; i++) {
        const char *st = r->stream ? r->stream : ev[i].stream;
        size_t sl = strlen(st);
        /* room for the fixed parts, an id, two numbers, a time and the
         * stream escaped at its worst (\u00XX for every byte) */
        if (evsd_str_reserve(s, 96 + 36 + 2 * 20 + 27 + 6 * sl + 2)) return -1;
        o = s->p + s->len;
        if (i) *o++ = ',';
        o = PUT_LIT(o, "{\"id\":\"");
        evs_uuid_format(r->commits[i].id, o);  /* 36 characters and a NUL */
        o += 36;
        o = PUT_LIT(o, "\",\"stream\":");
        s->len = (size_t)(o - s->p);
        if (evsd_str_add_json_string(s, st, sl)) return -1;  /* fits: reserved above */
        o = s->p + s->len;
        o = PUT_LIT(o, ",\"version\":");
        o = put_u64(o, r->commits[i].version);
        o = PUT_LIT(o, ",\"position\":");
        o = put_u64(o, r->commits[i].position);
        o = PUT_LIT(o, ",\"time\":\"");
        evs_time_format(r->commits[i].time_us, o);  /* 27 characters and a NUL */
        o += 27;
        o = PUT_LIT(o, "\"}");
        s->len = (size_t)(o - s->p);
    }
    return evsd_str_add(s, "]}\n", 3);
}

enum MHD_Result evsd_append_finish(evsd_req *r)
{
    evsd_server *srv = r->srv;
    pthread_mutex_lock(&r->mu);
    int done = r->append_done;
    pthread_mutex_unlock(&r->mu);
    if (!done) return MHD_YES;  /* not reachable while suspended; harmless otherwise */
    r->append_queued = 0;
    evsd_metrics_append_latency(&srv->metrics, evsd_now_ns() - r->start_ns);
    atomic_fetch_add_explicit(&srv->metrics.append_requests, 1, memory_order_relaxed);
    size_t n = 0;
    const evs_event_in *ev = r->parsed ? evs_parsed_events(r->parsed, &n) : NULL;
    int rc = r->append_rc;
    evsd_str s = {0};
    enum MHD_Result ret;
    if (rc == 0) {
        if (format_appended(&s, r, ev, n) != 0) {
            evsd_str_free(&s);
            return MHD_NO;
        }
        ret = evsd_respond(r, r->result.replayed ? 200 : 201, "application/json", s.p, s.len);
        evsd_str_free(&s);
        return ret;
    }
    const char *msg = r->result.message[0] ? r->result.message : evs_strerror(rc);
    switch (rc) {
    case EVS_ECONFLICT: {
        size_t i = r->result.failed_index < n ? r->result.failed_index : 0;
        const char *st = r->stream ? r->stream : (n ? ev[i].stream : "");
        evsd_str_add(&s, "{\"error\":\"wrong_expected_version\",\"message\":", 44);
        evsd_str_add_json_string(&s, msg, strlen(msg));
        evsd_str_add(&s, ",\"stream\":", 10);
        evsd_str_add_json_string(&s, st, strlen(st));
        evsd_str_add(&s, ",\"expected\":", 12);
        add_expected(&s, r);
        evsd_str_addf(&s, ",\"actual\":%" PRIu64, r->result.actual_version);
        if (!r->stream) evsd_str_addf(&s, ",\"index\":%zu", i);  /* which event of a multi-stream batch */
        evsd_str_add(&s, "}\n", 2);
        ret = evsd_respond(r, 409, "application/json", s.p, s.len);
        evsd_str_free(&s);
        return ret;
    }
    case EVS_EDUPLICATE: return evsd_error(r, 409, "duplicate_event_id", "%s", msg);
    case EVS_ECONDITION: return evsd_error(r, 409, "condition_failed", "%s", msg);
    case EVS_EINVAL: return evsd_error(r, 400, "invalid_event", "%s", msg);
    case EVS_ETOOBIG: return evsd_error(r, 413, "payload_too_large", "%s", msg);
    default: return evsd_store_error(r, rc, "append");
    }
}
