/*
 * projections.c — PUT, GET and DELETE /projections/{name}, and the event-read
 * helpers consumers.c shares (consumers.h).
 *
 *   PUT    body {"types":[...],"stream_prefix":"..."} (either or both):
 *          201 defined, 200 already defined with this filter, 409
 *          already_exists with another filter, 400 on a bad body.
 *   GET    the projection's events, with the parameters of a stream read
 *          (from = inclusive position, limit, direction, watch, heartbeat,
 *          SSE with Last-Event-ID): streamed by watch.c exactly like a
 *          stream read, so a watch on a projection is a stream watch.
 *   DELETE 204; 404 not_found.
 * The name is everything after /projections/ (percent-decoded, '/' literal).
 * Authorisation is that of the system stream $projections/<name>.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "consumers.h"
#include "watch.h"

/* ---- shared with consumers.c ---- */

int evsd_system_stream(char out[256], const char *kind, const char *name)
{
    size_t kl = strlen(kind), nl = strlen(name);
    if (nl == 0 || kl + nl > 255) return -1;
    memcpy(out, kind, kl);
    memcpy(out + kl, name, nl + 1);
    return evs_validate_stream_name(out, kl + nl) == 0 ? 0 : -1;
}

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

typedef struct args_check { const char *const *allowed; const char *unknown; } args_check;

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    args_check *c = cls;
    for (const char *const *a = c->allowed; *a; a++)
        if (!strcmp(key, *a)) return MHD_YES;
    c->unknown = key;
    return MHD_NO;
}

int evsd_cp_check_args(evsd_req *r, const char *const *allowed)
{
    static const char *const none[] = {NULL};
    args_check c = {allowed ? allowed : none, NULL};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, check_arg, &c);
    if (!c.unknown) return 0;
    char list[128] = "";
    for (const char *const *a = c.allowed; *a; a++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "", *a);
    evsd_error(r, 400, "invalid_parameter", "unknown query parameter '%s'; this route takes %s", c.unknown,
               list[0] ? list : "none");
    return -1;
}

int evsd_read_args_parse(evsd_req *r, evsd_read_args *a, int positional)
{
    static const char *const positional_args[] = {"from", "limit", "direction", "watch", "heartbeat", NULL};
    static const char *const consumer_args[] = {"limit", "watch", "heartbeat", NULL};
    memset(a, 0, sizeof *a);
    a->heartbeat_s = r->srv->cfg.heartbeat_default;
    const char *v;
    if (evsd_arg(r, "type") || evsd_arg(r, "stream_prefix")) {
        evsd_error(r, 400, "invalid_parameter", "type and stream_prefix do not apply here: the %s has its own filter",
                   positional ? "projection" : "consumer");
        return -1;
    }
    if (!positional && (evsd_arg(r, "from") || evsd_arg(r, "direction"))) {
        evsd_error(r, 400, "invalid_parameter", "a consumer's events start after its checkpoint: from and direction do not apply");
        return -1;
    }
    if (evsd_cp_check_args(r, positional ? positional_args : consumer_args) != 0) return -1;
    if ((v = evsd_arg(r, "from")) && parse_u64(v, &a->from) != 0) {
        evsd_error(r, 400, "invalid_parameter", "from must be a non-negative integer, not '%s'", v);
        return -1;
    }
    if ((v = evsd_arg(r, "limit"))) {
        if (parse_u64(v, &a->limit) != 0) {
            evsd_error(r, 400, "invalid_parameter", "limit must be a non-negative integer, not '%s'", v);
            return -1;
        }
        a->has_limit = 1;
    }
    if ((v = evsd_arg(r, "direction"))) {
        if (!strcmp(v, "backward")) a->backward = 1;
        else if (strcmp(v, "forward") != 0) {
            evsd_error(r, 400, "invalid_parameter", "direction must be forward or backward, not '%s'", v);
            return -1;
        }
    }
    if ((v = evsd_arg(r, "watch"))) {
        if (!strcmp(v, "true") || !strcmp(v, "1") || !*v) a->watch = 1;
        else if (strcmp(v, "false") != 0 && strcmp(v, "0") != 0) {
            evsd_error(r, 400, "invalid_parameter", "watch must be true or false");
            return -1;
        }
    }
    if ((v = evsd_arg(r, "heartbeat")) && (parse_u64(v, &a->heartbeat_s) != 0 || a->heartbeat_s < 1 || a->heartbeat_s > 3600)) {
        evsd_error(r, 400, "invalid_parameter", "heartbeat must be 1-3600 seconds, not '%s'", v);
        return -1;
    }
    if (a->watch && a->backward) {
        evsd_error(r, 400, "invalid_parameter", "watch=true reads forward; it cannot go with direction=backward");
        return -1;
    }
    const char *accept = evsd_header(r, MHD_HTTP_HEADER_ACCEPT);
    a->sse = accept && strstr(accept, "text/event-stream") != NULL;
    /* Server-Sent Events resume: Last-Event-ID is a global position */
    const char *last_id = a->sse && positional ? evsd_header(r, "Last-Event-ID") : NULL;
    uint64_t last;
    if (last_id && parse_u64(last_id, &last) == 0 && last < UINT64_MAX) a->from = last + 1;
    if (a->backward && a->from == 0 && evsd_arg(r, "from")) {
        /* from=0 backward names nothing before the start */
        a->has_limit = 1;
        a->limit = 0;
    }
    return 0;
}

static ssize_t events_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    return evsd_stream_fill(cls, out, max);
}

static void events_free(void *cls)
{
    evsd_stream_free(cls);
}

enum MHD_Result evsd_answer_events(evsd_req *r, evs_iter *it, const evsd_read_args *a)
{
    evsd_server *srv = r->srv;
    atomic_fetch_add_explicit(&srv->metrics.read_requests, 1, memory_order_relaxed);
    evsd_stream_state *w = evsd_stream_new(srv, r->conn, it, a->watch, a->sse, a->has_limit ? a->limit : UINT64_MAX,
                                           a->heartbeat_s * 1000000000ull);
    if (!w) { evs_iter_close(it); return MHD_NO; }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, events_reader, w, events_free);
    if (!resp) { evsd_stream_free(w); return MHD_NO; }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->sse ? "text/event-stream" : "application/x-ndjson");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    if (a->watch) MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    r->status = 200;
    return ret;
}

/* ---- the routes ---- */

/* {"name":…,"types":[…],"stream_prefix":…,"defined_at":P} as the store has it now. */
static enum MHD_Result answer_definition(evsd_req *r, const char *name, unsigned status)
{
    evs_projection_info *info = NULL;
    int rc = evs_projection_get(r->srv->store, name, &info);
    if (rc) return evsd_store_error(r, rc, "projection");
    evsd_str s = {0};
    evsd_str_add(&s, "{\"name\":", 8);
    evsd_str_add_json_string(&s, name, strlen(name));
    if (info->filter.ntypes) {
        evsd_str_add(&s, ",\"types\":[", 10);
        for (size_t i = 0; i < info->filter.ntypes; i++) {
            if (i) evsd_str_add(&s, ",", 1);
            evsd_str_add_json_string(&s, info->filter.types[i], strlen(info->filter.types[i]));
        }
        evsd_str_add(&s, "]", 1);
    }
    if (info->filter.stream_prefix) {
        evsd_str_add(&s, ",\"stream_prefix\":", 17);
        evsd_str_add_json_string(&s, info->filter.stream_prefix, strlen(info->filter.stream_prefix));
    }
    evsd_str_addf(&s, ",\"defined_at\":%" PRIu64 "}\n", info->defined_at);
    evs_free(info);
    enum MHD_Result ret = evsd_respond(r, status, "application/json", s.p, s.len);
    evsd_str_free(&s);
    return ret;
}

static int run_define(evsd_job *j)
{
    evs_filter f = {(const char *const *)j->types, j->ntypes, j->prefix};
    return evs_projection_define(j->r->srv->store, j->name, &f, &j->created);
}

static enum MHD_Result answer_define(evsd_req *r, evsd_job *j)
{
    switch (j->rc) {
    case 0: return answer_definition(r, j->name, j->created ? 201 : 200);
    case EVS_ECONFLICT:
        return evsd_error(r, 409, "already_exists", "projection '%s' exists with another filter; delete it first", j->name);
    case EVS_EINVAL: return evsd_error(r, 400, "invalid_parameter", "the projection's filter or name is not valid");
    default: return evsd_store_error(r, j->rc, "define projection");
    }
}

static int run_delete(evsd_job *j) { return evs_projection_delete(j->r->srv->store, j->name); }

static enum MHD_Result answer_delete(evsd_req *r, evsd_job *j)
{
    if (j->rc == 0) return evsd_respond(r, 204, NULL, "", 0);
    if (j->rc == EVS_ENOTFOUND) return evsd_error(r, 404, "not_found", "projection '%s' is not defined", j->name);
    return evsd_store_error(r, j->rc, "delete projection");
}

/* PUT: parse and check the body here (for precise messages), define on a job thread. */
static enum MHD_Result route_define(evsd_req *r, const char *name)
{
    json_error_t e;
    json_t *root = json_loadb(r->body.p ? r->body.p : "", r->body.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
    if (!root)
        return evsd_error(r, 400, "invalid_json", "invalid JSON at byte %d (line %d, column %d): %s", e.position,
                          e.line, e.column, e.text);
    evsd_job *j = evsd_job_new(r, name);
    enum MHD_Result ret = MHD_NO;
    const char *key;
    json_t *v;
    if (!j) goto out;
    if (!json_is_object(root)) {
        ret = evsd_error(r, 400, "invalid_parameter", "the body must be an object: {\"types\":[...],\"stream_prefix\":\"...\"}");
        goto out;
    }
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "types")) {
            size_t n = json_array_size(v);
            if (!json_is_array(v) || n == 0) {
                ret = evsd_error(r, 400, "invalid_parameter", "types must be a non-empty array of event types");
                goto out;
            }
            if (!(j->types = calloc(n, sizeof *j->types))) goto out;
            for (size_t i = 0; i < n; i++) {
                json_t *t = json_array_get(v, i);
                if (!json_is_string(t) || evs_validate_stream_name(json_string_value(t), json_string_length(t)) != 0) {
                    ret = evsd_error(r, 400, "invalid_parameter",
                                     "types[%zu] must be a string of 1-255 bytes of UTF-8 without control characters", i);
                    goto out;
                }
                if (!(j->types[j->ntypes] = strdup(json_string_value(t)))) goto out;
                j->ntypes++;
            }
        } else if (!strcmp(key, "stream_prefix")) {
            if (!json_is_string(v) ||
                (json_string_length(v) && evs_validate_stream_name(json_string_value(v), json_string_length(v)) != 0)) {
                ret = evsd_error(r, 400, "invalid_parameter",
                                 "stream_prefix must be a string of 0-255 bytes of UTF-8 without control characters");
                goto out;
            }
            if (!(j->prefix = strdup(json_string_value(v)))) goto out;
        } else {
            ret = evsd_error(r, 400, "invalid_parameter", "unknown field '%s': a projection takes types and stream_prefix", key);
            goto out;
        }
    }
    if (!j->ntypes && !j->prefix) {
        ret = evsd_error(r, 400, "invalid_parameter", "a projection needs types, stream_prefix or both");
        goto out;
    }
    j->run = run_define;
    j->answer = answer_define;
    json_decref(root);
    return evsd_job_start(r, j);
out:
    json_decref(root);
    evsd_job_discard(j);
    return ret;
}

enum MHD_Result evsd_route_projection(evsd_req *r, const char *name)
{
    char sys[256];
    int write = r->method != M_GET && r->method != M_HEAD;
    if (r->method == M_OTHER || r->method == M_POST)
        return evsd_error(r, 405, "method_not_allowed", "use GET, PUT or DELETE on /projections/{name}");
    if (evsd_system_stream(sys, "$projections/", name) != 0)
        return evsd_error(r, 400, "invalid_parameter",
                          "projection names are 1-%d bytes of UTF-8 without control characters", EVS_PROJECTION_NAME_MAX);
    if (evsd_auth_require(r, sys, write, NULL) != 0) return MHD_YES;
    if (write && r->srv->cfg.read_only)
        return evsd_error(r, 503, "unavailable", "this server is read-only (--read-only): it follows another writer");
    if (write && evsd_cp_check_args(r, NULL) != 0) return MHD_YES;
    if (r->method == M_PUT) return route_define(r, name);
    if (r->method == M_DELETE) {
        evsd_job *j = evsd_job_new(r, name);
        if (!j) return MHD_NO;
        j->run = run_delete;
        j->answer = answer_delete;
        return evsd_job_start(r, j);
    }
    evsd_read_args a;
    if (evsd_read_args_parse(r, &a, 1) != 0) return MHD_YES;
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.projection = name;
    ro.from = a.from;
    ro.backward = a.backward;
    ro.limit = a.has_limit ? a.limit : 0;
    evs_iter *it = NULL;
    int rc = evs_iter_open(r->srv->store, &ro, &it);
    if (rc == EVS_ENOTFOUND) return evsd_error(r, 404, "not_found", "projection '%s' is not defined", name);
    if (rc) return evsd_store_error(r, rc, "read projection");
    return evsd_answer_events(r, it, &a);
}
