/*
 * append.c — evs_append and evs_append_multi: everything about an append
 * that can be done in the caller's thread (validation, JSON checks, id
 * generation, encoding the records) happens here, so the single writer
 * thread only checks versions, stamps positions and writes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/store_int.h"

static int fail_event(evs_append_result *res, size_t i, int rc, const char *fmt, const char *what)
{
    res->failed_index = i;
    snprintf(res->message, sizeof res->message, fmt, i, what);
    return rc;
}

static int cmp_id(const void *a, const void *b) { return memcmp(a, b, 16); }

/* Validate and encode every event of the request into r->rec. */
static int prepare(evs_store *s, evs_req *r)
{
    evs_append_result *res = r->res;
    char err[200];
    int rc = 0;
    r->rec_off = calloc(r->n, sizeof *r->rec_off);
    r->ids = calloc(r->n, sizeof *r->ids);
    if (!r->rec_off || !r->ids) return EVS_ENOMEM;
    for (size_t i = 0; i < r->n; i++) {
        const evs_event_in *e = &r->in[i];
        const char *stream = r->stream ? r->stream : e->stream;
        if (!stream)
            return fail_event(res, i, EVS_EINVAL, "event %zu: %s is required", "stream");
        size_t slen = strlen(stream);
        if (evs__validate_name(stream, slen) != 0)
            return fail_event(res, i, EVS_EINVAL,
                              "event %zu: %s must be 1-255 bytes of UTF-8 without control characters",
                              "stream name");
        if (stream[0] == '$' && !r->system)  /* [projections] system streams are the store's own */
            return fail_event(res, i, EVS_EINVAL, "event %zu: %s starting with $ are reserved", "stream names");
        if (!e->type || evs__validate_name(e->type, strlen(e->type)) != 0)
            return fail_event(res, i, EVS_EINVAL,
                              "event %zu: %s must be 1-255 bytes of UTF-8 without control characters", "type");
        if (!r->stream && e->expected_version < EVS_EXPECT_EXISTS)
            return fail_event(res, i, EVS_EINVAL, "event %zu: %s is not a valid expected version", "expected_version");
        const char *data = "null", *meta = NULL;
        size_t dlen = 4, mlen = 0;
        char *dfree = NULL, *mfree = NULL;
        if (e->data) {
            rc = evs__json_check(e->data, e->data_len, 0, &data, &dlen, &dfree, err, sizeof err);
            if (rc) return fail_event(res, i, EVS_EINVAL, "event %zu: data: %s", err);
        }
        if (e->metadata) {
            rc = evs__json_check(e->metadata, e->metadata_len, 1, &meta, &mlen, &mfree, err, sizeof err);
            if (rc) {
                free(dfree);
                return fail_event(res, i, EVS_EINVAL, "event %zu: metadata: %s", err);
            }
        }
        size_t tlen = strlen(e->type);
        if (slen + tlen + dlen + mlen > s->opt.max_event_size) {
            free(dfree);
            free(mfree);
            res->failed_index = i;
            snprintf(res->message, sizeof res->message, "event %zu is %zu bytes, over the limit of %" PRIu32,
                     i, slen + tlen + dlen + mlen, s->opt.max_event_size);
            return EVS_ETOOBIG;
        }
        if (e->id) {
            static const uint8_t zero[16];
            if (!memcmp(e->id, zero, 16)) {
                free(dfree);
                free(mfree);
                return fail_event(res, i, EVS_EINVAL, "event %zu: %s", "the nil UUID is not a valid event id");
            }
            memcpy(r->ids[i], e->id, 16);
            r->client_ids++;
        } else {
            evs_uuid_v7(r->ids[i]);
        }
        uint32_t sz = evs__rec_size(slen, tlen, dlen, meta ? mlen : 0);
        rc = evs__buf_reserve(&r->rec, sz);
        if (rc == 0) {
            r->rec_off[i] = (uint32_t)r->rec.len;
            evs__rec_encode(r->rec.p + r->rec.len, stream, slen, e->type, tlen, data, dlen, meta, mlen,
                            r->ids[i], i + 1 == r->n);
            r->rec.len += sz;
        }
        free(dfree);
        free(mfree);
        if (rc) return rc;
    }
    if (r->client_ids > 1) {  /* the same id twice in one append is never a retry */
        uint8_t (*sorted)[16] = malloc(r->n * 16);
        if (!sorted) return EVS_ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < r->n; i++)
            if (r->in[i].id) memcpy(sorted[k++], r->ids[i], 16);
        qsort(sorted, k, 16, cmp_id);
        for (size_t i = 1; i < k && rc == 0; i++)
            if (!memcmp(sorted[i], sorted[i - 1], 16)) rc = EVS_EINVAL;
        free(sorted);
        if (rc) {
            snprintf(res->message, sizeof res->message, "the same event id appears twice in one append");
            return rc;
        }
    }
    return 0;
}

/* Checks that need no writer, then validation and encoding. */
static int begin(evs_store *s, evs_req *r)
{
    memset(r->res, 0, sizeof *r->res);
    if (r->n == 0) {
        snprintf(r->res->message, sizeof r->res->message, "an append needs at least one event");
        return EVS_EINVAL;
    }
    if (s->read_only) return EVS_EREADONLY;
    if (atomic_load(&s->failed)) return EVS_EFATAL;
    return prepare(s, r);
}

void evs__req_free(evs_req *r)
{
    free(r->rec_off);
    free(r->ids);
    evs__buf_free(&r->rec);
    if (r->cb) {
        free(r->own_out);
        free(r->own_res);
        free(r);
    }
}

static int do_append(evs_store *s, evs_req *r)
{
    evs_append_result local;
    evs_commit *own_out = NULL;
    int rc = 0;
    if (!r->res) r->res = &local;
    if (!r->out && !(r->out = own_out = calloc(r->n ? r->n : 1, sizeof *own_out))) return EVS_ENOMEM;
    rc = begin(s, r);
    if (rc == 0) rc = evs__submit(s, r);
    free(own_out);
    evs__req_free(r);
    return rc;
}

int evs_append(evs_store *s, const char *stream, int64_t expected_version,
               const evs_event_in *events, size_t n, evs_commit *out,
               evs_append_result *result)
{
    if (!stream || expected_version < EVS_EXPECT_EXISTS) {
        if (result) {
            memset(result, 0, sizeof *result);
            snprintf(result->message, sizeof result->message, "%s",
                     !stream ? "a stream name is required" : "expected_version is not any, no_stream, exists or >= 0");
        }
        return EVS_EINVAL;
    }
    evs_req r = {.in = events, .n = n, .stream = stream, .expected = expected_version,
                 .out = out, .res = result};
    return do_append(s, &r);
}

int evs_append_multi(evs_store *s, const evs_event_in *events, size_t n,
                     const evs_condition *cond, evs_commit *out, evs_append_result *result)
{
    evs_req r = {.in = events, .n = n, .stream = NULL, .expected = EVS_EXPECT_ANY, .cond = cond,
                 .out = out, .res = result};
    return do_append(s, &r);
}

/* [projections] appends to system streams ("$..."), for consumer.c and projection.c. */
int evs__append_system(evs_store *s, const char *stream, int64_t expected, const evs_event_in *events,
                       size_t n, evs_commit *out, evs_append_result *res)
{
    evs_req r = {.in = events, .n = n, .stream = stream, .expected = expected, .out = out, .res = res,
                 .system = 1};
    return do_append(s, &r);
}

int evs_append_async(evs_store *s, const char *stream, int64_t expected_version,
                     const evs_event_in *events, size_t n, const evs_condition *cond,
                     evs_commit *out, evs_append_result *result,
                     evs_append_cb cb, void *ctx)
{
    if (!cb || expected_version < EVS_EXPECT_EXISTS) return EVS_EINVAL;
    evs_req *r = calloc(1, sizeof *r);
    if (!r) return EVS_ENOMEM;
    *r = (evs_req){.in = events, .n = n, .stream = stream,
                   .expected = stream ? expected_version : EVS_EXPECT_ANY,
                   .cond = stream ? NULL : cond, .out = out, .res = result, .cb = cb, .cb_ctx = ctx};
    if (!r->res && !(r->res = r->own_res = calloc(1, sizeof *r->res))) { free(r); return EVS_ENOMEM; }
    if (!r->out && !(r->out = r->own_out = calloc(n ? n : 1, sizeof *r->out))) {
        free(r->own_res);
        free(r);
        return EVS_ENOMEM;
    }
    int rc = begin(s, r);
    if (rc == 0) rc = evs__submit_async(s, r);
    if (rc) evs__req_free(r);  /* cb is not called: the caller learns the outcome now */
    return rc;
}
