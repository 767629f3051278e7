/*
 * read.c — GET /events, GET /streams/{stream}, GET /events/{id}, GET /streams.
 *
 * Answers stream out of the store through a content-reader callback: one
 * event is formatted at a time into a small buffer, so an answer of any size
 * never sits in memory. With watch=true the response stays open: when the
 * iterator is dry the answer follows the hub's ring of encoded events, and
 * suspends when there is nothing new (watch.c resumes it on a commit it
 * wants or when a heartbeat is due). A slow client only makes libmicrohttpd
 * call the callback less often; one that falls behind the ring reads the
 * store again.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "watch.h"

static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s) return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    if (!s) return 0;
    if (!strcmp(s, "true") || !strcmp(s, "1") || !*s) { *out = 1; return 0; }
    if (!strcmp(s, "false") || !strcmp(s, "0")) { *out = 0; return 0; }
    return -1;
}

/* Collect every type=T (repeated or comma-separated). */
typedef struct type_list { char **v; size_t n; int bad; } type_list;

static enum MHD_Result collect_types(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    type_list *tl = cls;
    if (strcmp(key, "type") != 0 || !value) return MHD_YES;
    const char *p = value;
    while (1) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len) {
            char **nv = realloc(tl->v, (tl->n + 1) * sizeof *nv);
            if (!nv) { tl->bad = 1; return MHD_NO; }
            tl->v = nv;
            tl->v[tl->n] = strndup(p, len);
            if (!tl->v[tl->n]) { tl->bad = 1; return MHD_NO; }
            tl->n++;
        }
        if (!c) break;
        p = c + 1;
    }
    return MHD_YES;
}

static void free_types(type_list *tl)
{
    for (size_t i = 0; i < tl->n; i++) free(tl->v[i]);
    free(tl->v);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    return evsd_stream_fill(cls, out, max);
}

static void stream_free(void *cls)
{
    evsd_stream_free(cls);
}

enum MHD_Result evsd_route_read(evsd_req *r, const char *stream)
{
    evsd_server *srv = r->srv;
    evs_read_options ro;
    evs_read_options_init(&ro);
    uint64_t from = 0, limit = 0, heartbeat = srv->cfg.heartbeat_default;
    int backward = 0, watch = 0, has_limit = 0;
    const char *v;
    if ((v = evsd_arg(r, "from")) && parse_u64(v, &from) != 0)
        return evsd_error(r, 400, "invalid_parameter", "from must be a non-negative integer, not '%s'", v);
    if ((v = evsd_arg(r, "limit"))) {
        if (parse_u64(v, &limit) != 0)
            return evsd_error(r, 400, "invalid_parameter", "limit must be a non-negative integer, not '%s'", v);
        has_limit = 1;
    }
    if ((v = evsd_arg(r, "direction"))) {
        if (!strcmp(v, "backward")) backward = 1;
        else if (strcmp(v, "forward") != 0)
            return evsd_error(r, 400, "invalid_parameter", "direction must be forward or backward, not '%s'", v);
    }
    if (parse_bool(evsd_arg(r, "watch"), &watch) != 0)
        return evsd_error(r, 400, "invalid_parameter", "watch must be true or false");
    if ((v = evsd_arg(r, "heartbeat")) && (parse_u64(v, &heartbeat) != 0 || heartbeat < 1 || heartbeat > 3600))
        return evsd_error(r, 400, "invalid_parameter", "heartbeat must be 1-3600 seconds, not '%s'", v);
    if (watch && backward)
        return evsd_error(r, 400, "invalid_parameter", "watch=true reads forward; it cannot go with direction=backward");
    const char *accept = evsd_header(r, MHD_HTTP_HEADER_ACCEPT);
    int sse = accept && strstr(accept, "text/event-stream") != NULL;
    type_list tl = {0};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_types, &tl);
    if (tl.bad) { free_types(&tl); return MHD_NO; }
    for (size_t i = 0; i < tl.n; i++) {
        if (evs_validate_stream_name(tl.v[i], strlen(tl.v[i])) != 0) {
            free_types(&tl);
            return evsd_error(r, 400, "invalid_parameter", "type must be 1-255 bytes of UTF-8 without control characters");
        }
    }
    const char *prefix = stream ? NULL : evsd_arg(r, "stream_prefix");  /* a stream read has one stream */
    const char *scope = NULL;
    if (evsd_auth_require(r, stream, 0, &scope) != 0) { free_types(&tl); return MHD_YES; }
    if (!stream && scope && *scope) {
        /* a token scoped to a prefix reads the global log through that prefix */
        if (!prefix) prefix = scope;
        else if (strncmp(prefix, scope, strlen(scope)) != 0) {
            free_types(&tl);
            return evsd_error(r, 403, "forbidden", "this token covers only streams starting with '%s'", scope);
        }
    }
    if (stream && evs_validate_stream_name(stream, strlen(stream)) != 0) {
        free_types(&tl);
        return evsd_error(r, 400, "invalid_stream_name", "stream name must be 1-255 bytes of UTF-8 without control characters");
    }
    /* Server-Sent Events resume: Last-Event-ID is a global position */
    const char *last_id = sse ? evsd_header(r, "Last-Event-ID") : NULL;
    uint64_t last_pos = 0, skip_through = 0;
    if (last_id && parse_u64(last_id, &last_pos) == 0) {
        if (!stream) from = last_pos + 1;
        else {
            /* ids are global positions: resume after the event with that
             * position; if it is not this stream's, skip what is not after it */
            evs_event *e = NULL;
            if (evs_get_at(srv->store, last_pos, &e) == 0 && !strcmp(e->stream, stream)) from = e->version + 1;
            else skip_through = last_pos;
            evs_free(e);
        }
    }
    ro.stream = stream;
    ro.from = from;
    ro.backward = backward;
    ro.limit = limit;
    ro.filter.types = (const char *const *)tl.v;
    ro.filter.ntypes = tl.n;
    ro.filter.stream_prefix = prefix;
    ro.allow_missing = watch;
    if (backward && from == 0 && evsd_arg(r, "from")) {
        /* from=0 backward names nothing before the start */
        has_limit = 1;
        limit = 0;
    }
    evs_iter *it = NULL;
    int rc = evs_iter_open(srv->store, &ro, &it);
    if (rc) free_types(&tl);
    if (rc == EVS_ENOTFOUND) return evsd_error(r, 404, "stream_not_found", "stream '%s' has no events", stream);
    if (rc) return evsd_store_error(r, rc, "read");
    atomic_fetch_add_explicit(&srv->metrics.read_requests, 1, memory_order_relaxed);
    evsd_stream_state *w = evsd_stream_new(srv, r->conn, it, watch, sse, has_limit ? limit : UINT64_MAX,
                                           heartbeat * 1000000000ull);
    if (!w) { evs_iter_close(it); free_types(&tl); return MHD_NO; }
    evsd_stream_skip_through(w, skip_through);
    rc = evsd_stream_follow(w, &ro);  /* a watch: onto the ring once caught up */
    free_types(&tl);
    if (rc != 0) { evsd_stream_free(w); return MHD_NO; }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_reader, w, stream_free);
    if (!resp) { evsd_stream_free(w); return MHD_NO; }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, sse ? "text/event-stream" : "application/x-ndjson");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    if (watch) MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    r->status = 200;
    return ret;
}

enum MHD_Result evsd_route_get_event(evsd_req *r, const char *idtext)
{
    uint8_t id[16];
    if (evs_uuid_parse(idtext, strlen(idtext), id) != 0)
        return evsd_error(r, 400, "invalid_parameter", "'%s' is not a UUID (8-4-4-4-12 hex digits)", idtext);
    evs_event *e = NULL;
    int rc = evs_get(r->srv->store, id, &e);
    if (rc == EVS_ENOTFOUND) return evsd_error(r, 404, "event_not_found", "no event has id %s", idtext);
    if (rc) return evsd_store_error(r, rc, "get");
    if (evsd_auth_require(r, e->stream, 0, NULL) != 0) { evs_free(e); return MHD_YES; }
    size_t need = evs_event_format(e, NULL, 0);
    char *buf = malloc(need + 2);
    if (!buf) { evs_free(e); return MHD_NO; }
    evs_event_format(e, buf, need + 1);
    buf[need] = '\n';
    evs_free(e);
    atomic_fetch_add_explicit(&r->srv->metrics.events_served, 1, memory_order_relaxed);
    enum MHD_Result ret = evsd_respond(r, 200, "application/json", buf, need + 1);
    free(buf);
    return ret;
}

/* GET /streams?prefix=S: JSON Lines {"stream":…,"version":N}, streamed. */
typedef struct list_state {
    evs_stream_iter *it;
    evsd_str pending;
    size_t off;
} list_state;

static ssize_t list_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    list_state *ls = cls;
    size_t n = 0;
    while (n < max) {
        if (ls->off < ls->pending.len) {
            size_t k = ls->pending.len - ls->off;
            if (k > max - n) k = max - n;
            memcpy(out + n, ls->pending.p + ls->off, k);
            ls->off += k;
            n += k;
            continue;
        }
        const char *name;
        uint64_t version;
        if (evs_streams_next(ls->it, &name, &version) != 0 || !name) break;
        ls->pending.len = 0;
        ls->off = 0;
        evsd_str_add(&ls->pending, "{\"stream\":", 10);
        evsd_str_add_json_string(&ls->pending, name, strlen(name));
        evsd_str_addf(&ls->pending, ",\"version\":%" PRIu64 "}\n", version);
    }
    return n ? (ssize_t)n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void list_free(void *cls)
{
    list_state *ls = cls;
    evs_streams_close(ls->it);
    evsd_str_free(&ls->pending);
    free(ls);
}

enum MHD_Result evsd_route_list_streams(evsd_req *r)
{
    const char *prefix = evsd_arg(r, "prefix"), *scope = NULL;
    if (evsd_auth_require(r, NULL, 0, &scope) != 0) return MHD_YES;
    if (scope && *scope) {
        if (!prefix) prefix = scope;
        else if (strncmp(prefix, scope, strlen(scope)) != 0)
            return evsd_error(r, 403, "forbidden", "this token covers only streams starting with '%s'", scope);
    }
    list_state *ls = calloc(1, sizeof *ls);
    if (!ls) return MHD_NO;
    int rc = evs_streams_open(r->srv->store, prefix, &ls->it);
    if (rc) { free(ls); return evsd_store_error(r, rc, "list streams"); }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, list_reader, ls, list_free);
    if (!resp) { list_free(ls); return MHD_NO; }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
    enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    r->status = 200;
    return ret;
}
