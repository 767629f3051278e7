/*
 * consumers.c — /consumers/{name}: durable consumers over HTTP, and the job
 * machinery (consumers.h) that runs store changes off the HTTP threads.
 *
 *   PUT    /consumers/{name}             body: the definition, one of
 *          {"stream":…} | {"stream_prefix":…} and/or {"types":[…]} | {"projection":…}
 *          201 created, 200 it exists with this definition, 409
 *          already_exists with another one, 400 on a bad body.
 *   GET    /consumers/{name}             {"name":…,"position":…,"state":…,"definition":…}
 *   GET    /consumers/{name}/events      its events after the checkpoint: limit, watch,
 *                                        heartbeat, SSE (streamed like a stream read)
 *   POST   /consumers/{name}/checkpoint  {"position":P,"state":…}: stored together, atomically;
 *                                        without "state" the previous state is kept
 *   DELETE /consumers/{name}             204
 * Unknown names: 404 not_found. The name is everything after /consumers/
 * (percent-decoded, '/' literal) except a trailing /events (GET) or
 * /checkpoint (POST); so a name may not end in "/events" or "/checkpoint".
 * Authorisation is that of the system stream $consumers/<name>.
 * The state's bytes are kept exactly as the client sent them (minus
 * insignificant whitespace), like event data.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "consumers.h"

/* ---- jobs ---- */

evsd_job *evsd_job_new(evsd_req *r, const char *name)
{
    evsd_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->r = r;
    if (!(j->name = strdup(name))) {
        free(j);
        return NULL;
    }
    return j;
}

void evsd_job_discard(evsd_job *j)
{
    if (!j) return;
    for (size_t i = 0; i < j->ntypes; i++) free(j->types[i]);
    free(j->types);
    free(j->prefix);
    free(j->text);
    free(j->name);
    free(j);
}

static void *job_main(void *arg)
{
    evsd_job *j = arg;
    evsd_req *r = j->r;
    evsd_server *srv = r->srv;
    int rc = j->run(j);
    struct MHD_Connection *conn = r->conn;
    pthread_mutex_lock(&r->mu);
    j->rc = rc;
    j->done = 1;
    int resume = j->suspended;
    j->suspended = 0;
    pthread_mutex_unlock(&r->mu);
    /* r and j may be gone once unlocked (never suspended) or resumed: resume
     * last, touching neither; a suspended connection cannot be closed meanwhile */
    if (resume) evsd_resume(srv, conn);
    atomic_fetch_sub(&srv->inflight, 1);
    return NULL;
}

enum MHD_Result evsd_job_start(evsd_req *r, evsd_job *j)
{
    evsd_server *srv = r->srv;
    r->job = j;
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    atomic_fetch_add(&srv->inflight, 1);
    pthread_mutex_lock(&r->mu);
    int started = pthread_create(&t, &attr, job_main, j) == 0;
    if (started) {
        j->suspended = 1;  /* the thread cannot resume before this: it needs r->mu */
        MHD_suspend_connection(r->conn);
    }
    pthread_mutex_unlock(&r->mu);
    pthread_attr_destroy(&attr);
    if (started) return MHD_YES;
    /* no thread: do it here, blocking this HTTP thread once rather than failing */
    atomic_fetch_sub(&srv->inflight, 1);
    j->rc = j->run(j);
    j->done = 1;
    return evsd_job_finish(r);
}

enum MHD_Result evsd_job_finish(evsd_req *r)
{
    evsd_job *j = r->job;
    pthread_mutex_lock(&r->mu);
    int done = j->done;
    pthread_mutex_unlock(&r->mu);
    if (!done) return MHD_YES;  /* not reachable while suspended; harmless otherwise */
    return j->answer(r, j);
}

void evsd_job_free(evsd_req *r)
{
    evsd_job_discard(r->job);
    r->job = NULL;
}

/* ---- raw JSON text (the body is already known to be valid JSON) ---- */

static size_t skip_ws(const char *p, size_t n, size_t i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) i++;
    return i;
}

static size_t skip_string(const char *p, size_t n, size_t i)
{
    for (i++; i < n && p[i] != '"'; i++)
        if (p[i] == '\\') i++;
    return i + 1;
}

static size_t skip_value(const char *p, size_t n, size_t i)
{
    if (i >= n) return n;
    if (p[i] == '"') return skip_string(p, n, i);
    if (p[i] == '{' || p[i] == '[') {
        int depth = 0;
        while (i < n) {
            char c = p[i];
            if (c == '"') { i = skip_string(p, n, i); continue; }
            if (c == '{' || c == '[') depth++;
            else if (c == '}' || c == ']') {
                if (--depth == 0) return i + 1;
            }
            i++;
        }
        return n;
    }
    while (i < n && !strchr(",}] \t\r\n", p[i])) i++;
    return i;
}

/* The checkpoint body {"position":P,"state":…} read as raw text, so the
 * state's bytes reach the store exactly as sent (jansson would refuse, or
 * re-render, numbers beyond its range). Fills *pos and the state's span
 * (*vs == *ve when absent); the state itself is validated by the library's
 * rules in state_error. On a bad body writes a sentence into err, returns -1. */
static int parse_checkpoint(const char *p, size_t n, uint64_t *pos, size_t *vs, size_t *ve, char *err, size_t errlen)
{
    int has_pos = 0, has_state = 0;
    size_t i = skip_ws(p, n, 0);
    *vs = *ve = 0;
    if (i >= n || p[i] != '{') {
        snprintf(err, errlen, "the body must be an object: {\"position\":P,\"state\":…}");
        return -1;
    }
    i = skip_ws(p, n, i + 1);
    if (i < n && p[i] == '}') i++;
    else {
        for (;;) {
            if (i >= n || p[i] != '"') { snprintf(err, errlen, "invalid JSON at byte %zu: a member name was expected", i); return -1; }
            size_t ks = i + 1;
            i = skip_string(p, n, i);
            if (i > n) { snprintf(err, errlen, "invalid JSON at byte %zu: unterminated string", ks - 1); return -1; }
            size_t kl = i - 1 - ks;
            i = skip_ws(p, n, i);
            if (i >= n || p[i] != ':') { snprintf(err, errlen, "invalid JSON at byte %zu: ':' was expected", i); return -1; }
            i = skip_ws(p, n, i + 1);
            size_t s0 = i;
            i = skip_value(p, n, i);
            if (i > n || i == s0) { snprintf(err, errlen, "invalid JSON at byte %zu: a value was expected", s0); return -1; }
            if (kl == 8 && !memcmp(p + ks, "position", 8)) {
                uint64_t v = 0;
                size_t k = s0;
                if (has_pos) { snprintf(err, errlen, "duplicate field 'position'"); return -1; }
                if (p[k] == '0' && i - s0 > 1) k = i;  /* leading zero: not a JSON number */
                for (; k < i && p[k] >= '0' && p[k] <= '9' && v <= (UINT64_MAX - 9) / 10; k++) v = v * 10 + (uint64_t)(p[k] - '0');
                if (k != i) {
                    snprintf(err, errlen, "position must be a non-negative integer (a global position)");
                    return -1;
                }
                *pos = v;
                has_pos = 1;
            } else if (kl == 5 && !memcmp(p + ks, "state", 5)) {
                if (has_state) { snprintf(err, errlen, "duplicate field 'state'"); return -1; }
                *vs = s0;
                *ve = i;
                has_state = 1;
            } else {
                snprintf(err, errlen, "unknown field '%.*s': a checkpoint takes position and state", (int)(kl < 64 ? kl : 64), p + ks);
                return -1;
            }
            i = skip_ws(p, n, i);
            if (i < n && p[i] == ',') { i = skip_ws(p, n, i + 1); continue; }
            if (i < n && p[i] == '}') { i++; break; }
            snprintf(err, errlen, "invalid JSON at byte %zu: ',' or '}' was expected", i);
            return -1;
        }
    }
    if (skip_ws(p, n, i) != n) { snprintf(err, errlen, "invalid JSON at byte %zu: text after the object", i); return -1; }
    if (!has_pos) { snprintf(err, errlen, "position is required: a non-negative integer (a global position)"); return -1; }
    return 0;
}

/* Is p[0..n) one valid JSON value by the store's rules (strict UTF-8, no
 * duplicate keys, numbers of any size)? Checked through evs_parse_events,
 * as the data of an event. NULL, or the reason (static buffer of the caller). */
static const char *state_error(const char *p, size_t n, char *err, size_t errlen)
{
    static const char head[] = "{\"type\":\"x\",\"data\":";
    evsd_str s = {0};
    evs_parsed *ps = NULL;
    if (evsd_str_add(&s, head, sizeof head - 1) || evsd_str_add(&s, p, n) || evsd_str_add(&s, "}", 1)) {
        evsd_str_free(&s);
        snprintf(err, errlen, "out of memory");
        return err;
    }
    int rc = evs_parse_events(s.p, s.len, EVS_PARSE_AUTO, 0, &ps, err, errlen);
    evs_parsed_free(ps);
    evsd_str_free(&s);
    return rc ? err : NULL;
}

/* ---- answers ---- */

/* {"name":…,"position":…,"state":…[,"definition":…]} as stored now. */
static enum MHD_Result answer_consumer(evsd_req *r, const char *name, unsigned status)
{
    uint64_t pos = 0;
    char *state = NULL, *def = NULL;
    int rc = evs_consumer_get(r->srv->store, name, &pos, &state, &def);
    if (rc == EVS_ENOTFOUND) return evsd_error(r, 404, "not_found", "consumer '%s' does not exist", name);
    if (rc) return evsd_store_error(r, rc, "consumer");
    evsd_str s = {0};
    evsd_str_add(&s, "{\"name\":", 8);
    evsd_str_add_json_string(&s, name, strlen(name));
    evsd_str_addf(&s, ",\"position\":%" PRIu64 ",\"state\":", pos);
    evsd_str_add(&s, state, strlen(state));
    evsd_str_add(&s, ",\"definition\":", 14);
    evsd_str_add(&s, def, strlen(def));
    evsd_str_add(&s, "}\n", 2);
    evs_free(state);
    evs_free(def);
    enum MHD_Result ret = evsd_respond(r, status, "application/json", s.p, s.len);
    evsd_str_free(&s);
    return ret;
}

static int run_create(evsd_job *j)
{
    return evs_consumer_create(j->r->srv->store, j->name, j->text, j->len, &j->created);
}

static enum MHD_Result answer_create(evsd_req *r, evsd_job *j)
{
    switch (j->rc) {
    case 0: return answer_consumer(r, j->name, j->created ? 201 : 200);
    case EVS_ECONFLICT:
        return evsd_error(r, 409, "already_exists", "consumer '%s' exists with another definition; delete it first", j->name);
    case EVS_EINVAL: return evsd_error(r, 400, "invalid_parameter", "the consumer's definition or name is not valid");
    default: return evsd_store_error(r, j->rc, "create consumer");
    }
}

static int run_checkpoint(evsd_job *j)
{
    return evs_consumer_checkpoint(j->r->srv->store, j->name, j->position, j->text, j->len);
}

static enum MHD_Result answer_checkpoint(evsd_req *r, evsd_job *j)
{
    switch (j->rc) {
    case 0: return answer_consumer(r, j->name, 200);
    case EVS_ENOTFOUND: return evsd_error(r, 404, "not_found", "consumer '%s' does not exist", j->name);
    case EVS_EINVAL:
        return evsd_error(r, 400, "invalid_parameter", "position %" PRIu64 " is beyond the store's last position %" PRIu64,
                          j->position, evs_position(r->srv->store));
    case EVS_ETOOBIG:
        return evsd_error(r, 413, "payload_too_large", "the state is larger than --max-event-size allows");
    default: return evsd_store_error(r, j->rc, "checkpoint");
    }
}

static int run_delete(evsd_job *j) { return evs_consumer_delete(j->r->srv->store, j->name); }

static enum MHD_Result answer_delete(evsd_req *r, evsd_job *j)
{
    if (j->rc == 0) return evsd_respond(r, 204, NULL, "", 0);
    if (j->rc == EVS_ENOTFOUND) return evsd_error(r, 404, "not_found", "consumer '%s' does not exist", j->name);
    return evsd_store_error(r, j->rc, "delete consumer");
}

/* ---- routes ---- */

static int valid_name_field(json_t *v, size_t max)
{
    return json_is_string(v) && json_string_length(v) <= max &&
           evs_validate_stream_name(json_string_value(v), json_string_length(v)) == 0;
}

static enum MHD_Result bad_json(evsd_req *r, const json_error_t *e)
{
    return evsd_error(r, 400, "invalid_json", "invalid JSON at byte %d (line %d, column %d): %s", e->position, e->line,
                      e->column, e->text);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static enum MHD_Result route_create(evsd_req *r, const char *name)
{
    if (ends_with(name, "/events") || ends_with(name, "/checkpoint"))
        return evsd_error(r, 400, "invalid_parameter", "consumer names may not end in /events or /checkpoint (those are its routes)");
    const char *body = r->body.p ? r->body.p : "";
    json_error_t e;
    json_t *root = json_loadb(body, r->body.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
    if (!root) return bad_json(r, &e);
    enum MHD_Result ret;
    const char *key;
    json_t *v, *proj = NULL;
    int kinds = 0, filter = 0;
    if (!json_is_object(root)) {
        ret = evsd_error(r, 400, "invalid_parameter",
                         "the body must be an object: {\"stream\":…}, {\"stream_prefix\":…}, {\"types\":[…]} or {\"projection\":…}");
        goto out;
    }
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "stream")) {
            kinds++;
            if (!valid_name_field(v, 255)) {
                ret = evsd_error(r, 400, "invalid_stream_name", "stream must be 1-255 bytes of UTF-8 without control characters");
                goto out;
            }
        } else if (!strcmp(key, "projection")) {
            kinds++;
            proj = v;
            if (!valid_name_field(v, EVS_PROJECTION_NAME_MAX)) {
                ret = evsd_error(r, 400, "invalid_parameter", "projection must be a projection name");
                goto out;
            }
        } else if (!strcmp(key, "types")) {
            filter = 1;
            size_t n = json_array_size(v);
            if (!json_is_array(v) || n == 0) {
                ret = evsd_error(r, 400, "invalid_parameter", "types must be a non-empty array of event types");
                goto out;
            }
            for (size_t i = 0; i < n; i++) {
                if (!valid_name_field(json_array_get(v, i), 255)) {
                    ret = evsd_error(r, 400, "invalid_parameter",
                                     "types[%zu] must be a string of 1-255 bytes of UTF-8 without control characters", i);
                    goto out;
                }
            }
        } else if (!strcmp(key, "stream_prefix")) {
            filter = 1;
            if (!json_is_string(v) || (json_string_length(v) && !valid_name_field(v, 255))) {
                ret = evsd_error(r, 400, "invalid_parameter",
                                 "stream_prefix must be a string of 0-255 bytes of UTF-8 without control characters");
                goto out;
            }
        } else {
            ret = evsd_error(r, 400, "invalid_parameter",
                             "unknown field '%s': a consumer takes stream, stream_prefix, types or projection", key);
            goto out;
        }
    }
    if (kinds + filter != 1) {
        ret = evsd_error(r, 400, "invalid_parameter",
                         "a consumer follows exactly one of: a stream, a filter (stream_prefix and/or types), a projection");
        goto out;
    }
    if (proj) {
        evs_projection_info *info = NULL;
        int rc = evs_projection_get(r->srv->store, json_string_value(proj), &info);
        evs_free(info);
        if (rc == EVS_ENOTFOUND) {
            ret = evsd_error(r, 400, "invalid_parameter", "projection '%s' is not defined", json_string_value(proj));
            goto out;
        }
        if (rc) { ret = evsd_store_error(r, rc, "projection"); goto out; }
    }
    evsd_job *j = evsd_job_new(r, name);
    if (!j || !(j->text = malloc(r->body.len + 1))) {
        evsd_job_discard(j);
        ret = MHD_NO;
        goto out;
    }
    memcpy(j->text, body, r->body.len);
    j->len = r->body.len;
    j->run = run_create;
    j->answer = answer_create;
    json_decref(root);
    return evsd_job_start(r, j);
out:
    json_decref(root);
    return ret;
}

static enum MHD_Result route_checkpoint(evsd_req *r, const char *name)
{
    const char *body = r->body.p ? r->body.p : "";
    char err[300];
    uint64_t p = 0;
    size_t vs, ve;
    if (parse_checkpoint(body, r->body.len, &p, &vs, &ve, err, sizeof err) != 0)
        return evsd_error(r, 400, strncmp(err, "invalid JSON", 12) ? "invalid_parameter" : "invalid_json", "%s", err);
    if (ve > vs && state_error(body + vs, ve - vs, err, sizeof err)) {
        /* the library's sentence counts bytes of the event it was wrapped in: count them in the body */
        const char *at = strstr(err, "at byte "), *why = strstr(err, "): ");
        unsigned long b = at ? strtoul(at + 8, NULL, 10) : 0;
        if (at && why && b >= 19)
            return evsd_error(r, 400, "invalid_json", "state is not valid JSON at byte %zu of the body: %s",
                              (size_t)(b - 19) + vs, why + 3);
        return evsd_error(r, 400, "invalid_json", "state is not valid JSON (%s)", err);
    }
    uint64_t end = evs_position(r->srv->store);
    if (p > end)
        return evsd_error(r, 400, "invalid_parameter", "position %" PRIu64 " is beyond the store's last position %" PRIu64, p, end);
    evsd_job *j = evsd_job_new(r, name);
    if (!j) return MHD_NO;
    j->position = p;
    if (ve > vs) {
        j->len = ve - vs;
        if (!(j->text = malloc(j->len + 1))) { evsd_job_discard(j); return MHD_NO; }
        memcpy(j->text, body + vs, j->len);
    }
    j->run = run_checkpoint;
    j->answer = answer_checkpoint;
    return evsd_job_start(r, j);
}

static enum MHD_Result route_events(evsd_req *r, const char *name)
{
    evsd_read_args a;
    if (evsd_read_args_parse(r, &a, 0) != 0) return MHD_YES;
    evs_iter *it = NULL;
    int rc = evs_consumer_iter_open(r->srv->store, name, a.has_limit ? a.limit : 0, &it);
    if (rc == EVS_ENOTFOUND) {
        uint64_t pos;
        if (evs_consumer_get(r->srv->store, name, &pos, NULL, NULL) == 0)
            return evsd_error(r, 404, "not_found", "consumer '%s' reads a projection that is no longer defined", name);
        return evsd_error(r, 404, "not_found", "consumer '%s' does not exist", name);
    }
    if (rc) return evsd_store_error(r, rc, "consumer events");
    return evsd_answer_events(r, it, &a);
}

enum MHD_Result evsd_route_consumer(evsd_req *r, const char *path)
{
    char name[300], sys[256];
    size_t n = strlen(path);
    int get = r->method == M_GET || r->method == M_HEAD;
    int events = get && n > 7 && ends_with(path, "/events");
    int ckpt = r->method == M_POST && n > 11 && ends_with(path, "/checkpoint");
    size_t nl = n - (events ? 7 : ckpt ? 11 : 0);
    if (r->method == M_POST && !ckpt)
        return evsd_error(r, 405, "method_not_allowed", "POST goes to /consumers/{name}/checkpoint");
    if (r->method == M_OTHER)
        return evsd_error(r, 405, "method_not_allowed", "use GET, PUT or DELETE on /consumers/{name}");
    if (nl >= sizeof name || (memcpy(name, path, nl), name[nl] = 0, evsd_system_stream(sys, "$consumers/", name) != 0))
        return evsd_error(r, 400, "invalid_parameter",
                          "consumer names are 1-%d bytes of UTF-8 without control characters", EVS_CONSUMER_NAME_MAX);
    int write = !get;
    if (evsd_auth_require(r, sys, write, NULL) != 0) return MHD_YES;
    if (write && r->srv->cfg.read_only)
        return evsd_error(r, 503, "unavailable", "this server is read-only (--read-only): it follows another writer");
    if (!events && evsd_cp_check_args(r, NULL) != 0) return MHD_YES;
    if (events) return route_events(r, name);
    if (ckpt) return route_checkpoint(r, name);
    if (get) return answer_consumer(r, name, 200);
    if (r->method == M_PUT) return route_create(r, name);
    evsd_job *j = evsd_job_new(r, name);  /* DELETE */
    if (!j) return MHD_NO;
    j->run = run_delete;
    j->answer = answer_delete;
    return evsd_job_start(r, j);
}
