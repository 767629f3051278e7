/*
 * consumer.c — durable consumers: a named reader whose definition, position
 * and state live in the log, in the system stream $consumers/<name>.
 *
 *   ConsumerCreated     data: the canonical definition (below)
 *   ConsumerCheckpoint  data: {"position":P,"state":<JSON>}
 *                       metadata: {"created_version":V} (V: the stream version
 *                       of the ConsumerCreated this checkpoint belongs to)
 *   ConsumerDeleted     data: null
 *
 * INVARIANTS
 *  - The consumer's current state is the stream's last event: one backward
 *    read (plus one read by version for the definition of a checkpointed
 *    consumer). Nothing about consumers is kept in memory or in *.idx files.
 *  - Every change is one append with expected_version = the version just
 *    read, so changes to one consumer are serialised by the writer: a change
 *    that lost a race re-reads and retries (a checkpoint never resurrects a
 *    consumer deleted meanwhile, a create never overwrites another create).
 *  - A checkpoint event carries position and state together: they are
 *    written, made durable and read back as one record (exactly-once state).
 *  - This file writes every byte of these events itself and reads them back
 *    with exact layouts; anything else in a $consumers/ stream is corruption.
 *
 * Canonical definitions: {"stream":"S"}, {"projection":"P"}, or a filter's
 * canonical form ({"types":[sorted, distinct],"stream_prefix":"..."}, see
 * sysstream.h). Equal definitions have equal bytes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <jansson.h>

#include "store/sysstream.h"

/* What the last event of $consumers/<name> says. */
typedef struct cons_state {
    uint64_t version;            /* stream version of the last event (0 = no stream) */
    int exists;                  /* created and not deleted since */
    uint64_t created_version;    /* version of the ConsumerCreated of this incarnation */
    uint64_t position;           /* checkpointed position (0 = new) */
    char *state;                 /* malloc'd JSON text, NUL-terminated ("null" if none) */
    size_t state_len;
    char *definition;            /* malloc'd canonical definition, when asked for */
    size_t definition_len;
} cons_state;

static void cons_state_free(cons_state *st)
{
    free(st->state);
    free(st->definition);
    memset(st, 0, sizeof *st);
}

static int type_is(const evs_event *ev, const char *type)
{
    return ev->type_len == strlen(type) && memcmp(ev->type, type, ev->type_len) == 0;
}

static char *dup_bytes(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = 0;
    }
    return d;
}

/* Parse "<prefix><digits><suffix...>": the unsigned number after prefix; *end
 * points just past it. 0 or -1. */
static int parse_num_after(const char *p, size_t n, const char *prefix, uint64_t *v, size_t *end)
{
    size_t pl = strlen(prefix), i = pl;
    if (n < pl || memcmp(p, prefix, pl) != 0) return -1;
    uint64_t x = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        if (x > (UINT64_MAX - 9) / 10) return -1;
        x = x * 10 + (uint64_t)(p[i++] - '0');
    }
    if (i == pl) return -1;
    *v = x;
    *end = i;
    return 0;
}

int evs__consumer_checkpoint_parse(const char *d, size_t dlen, const char *m, size_t mlen, uint64_t *position,
                                   uint64_t *created_version, size_t *state_off, size_t *state_len)
{
    /* data {"position":P,"state":S}, metadata {"created_version":V} — exactly as
     * evs_consumer_checkpoint writes them */
    size_t end = 0, mend = 0;
    if (!d || parse_num_after(d, dlen, "{\"position\":", position, &end) != 0 || dlen < end + 11 ||
        memcmp(d + end, ",\"state\":", 9) != 0 || d[dlen - 1] != '}' || !m ||
        parse_num_after(m, mlen, "{\"created_version\":", created_version, &mend) != 0 || mend + 1 != mlen ||
        m[mend] != '}')
        return EVS_ECORRUPT;
    *state_off = end + 9;
    *state_len = dlen - end - 9 - 1;
    return 0;
}

/* Read the consumer's current state; with want_def also its definition. */
static int cons_load(evs_store *s, const char *stream, int want_def, cons_state *st)
{
    memset(st, 0, sizeof *st);
    evs_event *ev = NULL;
    int rc = evs__sys_last(s, stream, &ev);
    if (rc == EVS_ENOTFOUND) return 0;
    if (rc) return rc;
    st->version = ev->version;
    if (type_is(ev, "ConsumerDeleted")) goto out;
    if (type_is(ev, "ConsumerCreated")) {
        st->exists = 1;
        st->created_version = ev->version;
        st->state = dup_bytes("null", 4);
        st->state_len = 4;
        if (!st->state || (want_def && !(st->definition = dup_bytes(ev->data, ev->data_len)))) rc = EVS_ENOMEM;
        st->definition_len = ev->data_len;
        goto out;
    }
    if (!type_is(ev, "ConsumerCheckpoint")) {
        rc = EVS_CORRUPT_HERE(&s->log, stream, ev->position, "unknown event type in a consumer stream");
        goto out;
    }
    size_t soff = 0;
    if (evs__consumer_checkpoint_parse(ev->data, ev->data_len, ev->metadata, ev->metadata_len, &st->position,
                                       &st->created_version, &soff, &st->state_len) != 0 ||
        st->created_version >= ev->version) {
        rc = EVS_CORRUPT_HERE(&s->log, stream, ev->position, "consumer checkpoint is not in the expected form");
        goto out;
    }
    st->exists = 1;
    if (!(st->state = dup_bytes(ev->data + soff, st->state_len))) { rc = EVS_ENOMEM; goto out; }
    if (want_def) {
        evs_event *cr = NULL;
        rc = evs__sys_at_version(s, stream, st->created_version, &cr);
        if (rc == 0 && !type_is(cr, "ConsumerCreated"))
            rc = EVS_CORRUPT_HERE(&s->log, stream, cr->position, "consumer checkpoint names an event that is not ConsumerCreated");
        else if (rc == EVS_ENOTFOUND)
            rc = EVS_CORRUPT_HERE(&s->log, stream, ev->position, "consumer checkpoint names a missing ConsumerCreated");
        if (rc == 0 && !(st->definition = dup_bytes(cr->data, cr->data_len))) rc = EVS_ENOMEM;
        if (rc == 0) st->definition_len = cr->data_len;
        evs_free(cr);
    }
out:
    evs_free(ev);
    if (rc) cons_state_free(st);
    return rc;
}

/* The parsed definition. */
typedef struct cons_def {
    char *stream;                /* {"stream":...} */
    char *projection;            /* {"projection":...} */
    evs_ofilter filter;          /* {"types":...,"stream_prefix":...} */
} cons_def;

static void cons_def_free(cons_def *d)
{
    free(d->stream);
    free(d->projection);
    evs__ofilter_free(&d->filter);
    memset(d, 0, sizeof *d);
}

/* Parse and validate a definition; with canon, write its canonical form. */
static int def_parse(const char *json, size_t len, cons_def *d, evs_buf *canon)
{
    memset(d, 0, sizeof *d);
    json_error_t e;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &e);
    int rc = 0, filter_keys = 0;
    if (!root || !json_is_object(root)) { rc = EVS_EINVAL; goto out; }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "stream") || !strcmp(key, "projection")) {
            char **dst = key[0] == 's' ? &d->stream : &d->projection;
            if (!json_is_string(v) || evs__validate_name(json_string_value(v), json_string_length(v)) != 0) {
                rc = EVS_EINVAL;
                goto out;
            }
            if (!(*dst = strdup(json_string_value(v)))) { rc = EVS_ENOMEM; goto out; }
        } else if (!strcmp(key, "types") || !strcmp(key, "stream_prefix")) {
            filter_keys++;
        } else {
            rc = EVS_EINVAL;  /* unknown fields are refused */
            goto out;
        }
    }
    if (!!d->stream + !!d->projection + !!filter_keys != 1) { rc = EVS_EINVAL; goto out; }
    if (d->projection && strlen(d->projection) > EVS_PROJECTION_NAME_MAX) { rc = EVS_EINVAL; goto out; }
    if (filter_keys && (rc = evs__filter_parse(json, len, &d->filter)) != 0) goto out;
    if (!canon) goto out;
    if (d->stream || d->projection) {
        rc = evs__buf_puts(canon, d->stream ? "{\"stream\":" : "{\"projection\":");
        const char *name = d->stream ? d->stream : d->projection;
        if (rc == 0) rc = evs__json_str(canon, name, strlen(name));
        if (rc == 0) rc = evs__buf_puts(canon, "}");
        if (rc == 0) rc = evs__buf_nul(canon);
    } else {
        rc = evs__ofilter_canon(&d->filter, canon);
    }
out:
    json_decref(root);
    if (rc) cons_def_free(d);
    return rc;
}

int evs__consumer_def_check(const char *def, size_t len)
{
    cons_def d;
    evs_buf canon = {0};
    int rc = def_parse(def, len, &d, &canon);
    if (rc) return rc;   /* def_parse freed d */
    if (canon.len != len || memcmp(canon.p, def, len) != 0) rc = EVS_EINVAL;
    cons_def_free(&d);
    evs__buf_free(&canon);
    return rc;
}

int evs_consumer_create(evs_store *s, const char *name, const char *definition, size_t len, int *created)
{
    char stream[256];
    evs_buf canon = {0};
    cons_def d;
    if (created) *created = 0;
    int rc = evs__sys_name(stream, EVS_SYS_CONSUMERS, name);
    if (rc) return rc;
    if (!definition || (rc = def_parse(definition, len, &d, &canon)) != 0) {
        evs__buf_free(&canon);
        return rc ? rc : EVS_EINVAL;
    }
    if (d.projection) {  /* a consumer of a projection needs the projection */
        evs_projection_info *info = NULL;
        rc = evs_projection_get(s, d.projection, &info);
        evs_free(info);
        if (rc == EVS_ENOTFOUND) rc = EVS_EINVAL;
    }
    cons_def_free(&d);
    int locked = rc == 0;
    if (locked) evs__sys_lock(s, stream);  /* one change to this stream at a time */
    for (int tries = 0; rc == 0; tries++) {
        cons_state st;
        if ((rc = cons_load(s, stream, 1, &st)) != 0) break;
        if (st.exists) {
            int same = st.definition_len == canon.len && !memcmp(st.definition, canon.p, canon.len);
            cons_state_free(&st);
            rc = same ? 0 : EVS_ECONFLICT;
            break;
        }
        evs_event_in in = {.type = "ConsumerCreated", .data = (const char *)canon.p, .data_len = canon.len,
                           .expected_version = EVS_EXPECT_ANY};
        rc = evs__append_system(s, stream, (int64_t)st.version, &in, 1, NULL, NULL);
        cons_state_free(&st);
        if (rc == 0 && created) *created = 1;
        if (rc != EVS_ECONFLICT || tries >= EVS_SYS_RETRIES) break;
        rc = 0;  /* another change won the race: look again */
    }
    if (locked) evs__sys_unlock(s, stream);
    evs__buf_free(&canon);
    return rc;
}

int evs_consumer_get(evs_store *s, const char *name, uint64_t *position, char **state, char **definition)
{
    char stream[256];
    cons_state st;
    if (state) *state = NULL;
    if (definition) *definition = NULL;
    int rc = evs__sys_name(stream, EVS_SYS_CONSUMERS, name);
    if (rc == 0) rc = cons_load(s, stream, definition != NULL, &st);
    if (rc) return rc;
    if (!st.exists) { cons_state_free(&st); return EVS_ENOTFOUND; }
    *position = st.position;
    if (state) { *state = st.state; st.state = NULL; }
    if (definition) { *definition = st.definition; st.definition = NULL; }
    cons_state_free(&st);
    return 0;
}

int evs_consumer_checkpoint(evs_store *s, const char *name, uint64_t position, const char *state, size_t len)
{
    char stream[256], err[200];
    const char *sj = NULL;
    size_t sl = 0;
    char *owned = NULL;
    evs_buf data = {0}, meta = {0};
    int rc = evs__sys_name(stream, EVS_SYS_CONSUMERS, name);
    if (rc) return rc;
    if (position > evs_position(s)) return EVS_EINVAL;
    if (state && (rc = evs__json_check(state, len, 0, &sj, &sl, &owned, err, sizeof err)) != 0) return rc;
    int locked = rc == 0;
    if (locked) evs__sys_lock(s, stream);  /* one change to this stream at a time */
    for (int tries = 0; rc == 0; tries++) {
        cons_state st;
        if ((rc = cons_load(s, stream, 0, &st)) != 0) break;
        if (!st.exists) { cons_state_free(&st); rc = EVS_ENOTFOUND; break; }
        char num[64];
        data.len = meta.len = 0;
        snprintf(num, sizeof num, "{\"position\":%" PRIu64 ",\"state\":", position);
        rc = evs__buf_puts(&data, num);
        if (rc == 0) rc = state ? evs__buf_append(&data, sj, sl) : evs__buf_append(&data, st.state, st.state_len);
        if (rc == 0) rc = evs__buf_puts(&data, "}");
        snprintf(num, sizeof num, "{\"created_version\":%" PRIu64 "}", st.created_version);
        if (rc == 0) rc = evs__buf_puts(&meta, num);
        uint64_t version = st.version;
        cons_state_free(&st);
        if (rc) break;
        evs_event_in in = {.type = "ConsumerCheckpoint", .data = (const char *)data.p, .data_len = data.len,
                           .metadata = (const char *)meta.p, .metadata_len = meta.len,
                           .expected_version = EVS_EXPECT_ANY};
        rc = evs__append_system(s, stream, (int64_t)version, &in, 1, NULL, NULL);
        if (rc != EVS_ECONFLICT || tries >= EVS_SYS_RETRIES) break;
        rc = 0;
    }
    if (locked) evs__sys_unlock(s, stream);
    free(owned);
    evs__buf_free(&data);
    evs__buf_free(&meta);
    return rc;
}

int evs_consumer_delete(evs_store *s, const char *name)
{
    char stream[256];
    int rc = evs__sys_name(stream, EVS_SYS_CONSUMERS, name);
    int locked = rc == 0;
    if (locked) evs__sys_lock(s, stream);  /* one change to this stream at a time */
    for (int tries = 0; rc == 0; tries++) {
        cons_state st;
        if ((rc = cons_load(s, stream, 0, &st)) != 0) break;
        int exists = st.exists;
        uint64_t version = st.version;
        cons_state_free(&st);
        if (!exists) { rc = EVS_ENOTFOUND; break; }
        evs_event_in in = {.type = "ConsumerDeleted", .expected_version = EVS_EXPECT_ANY};
        rc = evs__append_system(s, stream, (int64_t)version, &in, 1, NULL, NULL);
        if (rc != EVS_ECONFLICT || tries >= EVS_SYS_RETRIES) break;
        rc = 0;
    }
    if (locked) evs__sys_unlock(s, stream);
    return rc;
}

/* The global position of stream's event at version v (0 if there is none). */
static int stream_pos(evs_store *s, const char *stream, uint64_t v, uint64_t *pos)
{
    evs_event *ev = NULL;
    int rc = evs__sys_at_version(s, stream, v, &ev);
    *pos = 0;
    if (rc == EVS_ENOTFOUND) return 0;
    if (rc == 0) *pos = ev->position;
    evs_free(ev);
    return rc;
}

int evs_consumer_iter_open(evs_store *s, const char *name, uint64_t limit, evs_iter **out)
{
    char stream[256];
    cons_state st;
    cons_def d;
    *out = NULL;
    int rc = evs__sys_name(stream, EVS_SYS_CONSUMERS, name);
    if (rc == 0) rc = cons_load(s, stream, 1, &st);
    if (rc) return rc;
    if (!st.exists) { cons_state_free(&st); return EVS_ENOTFOUND; }
    rc = def_parse(st.definition, st.definition_len, &d, NULL);
    uint64_t after = st.position;
    cons_state_free(&st);
    if (rc == EVS_EINVAL) rc = EVS_CORRUPT_HERE(&s->log, stream, 0, "consumer definition is not valid");
    if (rc) return rc;
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.limit = limit;
    ro.from = after + 1;
    if (d.stream) {
        /* a stream read goes by version: the first version whose position is past the checkpoint
         * (binary search; positions grow with versions) */
        uint64_t v = 0, lo = 1, hi;
        if ((rc = evs_stream_version(s, d.stream, &v)) != 0) goto out;
        hi = v + 1;
        while (lo < hi && rc == 0) {
            uint64_t mid = lo + (hi - lo) / 2, pos = 0;
            if ((rc = stream_pos(s, d.stream, mid, &pos)) != 0) break;
            if (pos > after) hi = mid;
            else lo = mid + 1;
        }
        if (rc) goto out;
        ro.stream = d.stream;
        ro.from = lo;
        ro.allow_missing = 1;
    } else if (d.projection) {
        ro.projection = d.projection;
    } else {
        ro.filter = evs__ofilter_view(&d.filter);
    }
    rc = evs_iter_open(s, &ro, out);
out:
    cons_def_free(&d);
    return rc;
}
