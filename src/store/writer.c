/*
 * writer.c — the single writer thread: group commit, sealing, checkpoints,
 * fail-stop.
 *
 * Appending threads queue an evs_req and sleep on its condition variable.
 * The writer takes everything queued, stages each request (checks ids,
 * condition and expected versions against the committed state plus what the
 * group staged before it; assigns positions and versions; copies the
 * finished records into one buffer), writes the buffer with one pwrite,
 * issues one fdatasync (EVS_SYNC_ALWAYS), updates the indexes, publishes the
 * new committed position and wakes every request of the group: one fsync
 * acknowledges every append queued behind it.
 *
 * A refusal (wrong expected version, failed condition) is answered at once
 * when committed events decide it; when only events staged in the group do,
 * the group is flushed first and the request judged again, so no refusal
 * ever names an event that a crash or a failed sync then takes back.
 *
 * A request whose records would cross the segment size flushes the group,
 * seals the segment and continues in a new one, so no append spans two
 * segments. Any failed write or sync puts the store in a failed state
 * (fail-stop): nothing in the group is acknowledged and every later append
 * returns EVS_EFATAL.
 *
 * Checkpoints: every checkpoint_interval events the writer *freezes* (see
 * evs__freeze): it swaps each index's in-memory table for a fresh one and
 * hands the frozen state to the index thread (indexer.c), which writes every
 * index file. The writer itself never writes an index file other than the
 * offsets of the records it appends.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <xxhash.h>

#include "store/store_int.h"

/* ---- a small set of ids staged in the current group ---- */
typedef struct idset {
    uint8_t (*keys)[16];     /* cap slots; all-zero = empty (a zero UUID is refused at append) */
    size_t cap, count;
} idset;

static size_t id_slot(const uint8_t id[16], size_t cap)
{
    uint64_t h;
    memcpy(&h, id + 8, 8);  /* the random half of a UUID */
    h ^= h >> 29; h *= 0xbf58476d1ce4e5b9ull; h ^= h >> 32;
    return (size_t)h & (cap - 1);
}

static int idset_has(const idset *st, const uint8_t id[16])
{
    static const uint8_t zero[16];
    if (!st->cap) return 0;
    for (size_t i = id_slot(id, st->cap);; i = (i + 1) & (st->cap - 1)) {
        if (!memcmp(st->keys[i], zero, 16)) return 0;
        if (!memcmp(st->keys[i], id, 16)) return 1;
    }
}

static int idset_add(idset *st, const uint8_t id[16])
{
    static const uint8_t zero[16];
    if ((st->count + 1) * 2 > st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 256;
        uint8_t (*k)[16] = calloc(cap, 16);
        if (!k) return EVS_ENOMEM;
        for (size_t i = 0; i < st->cap; i++) {
            if (!memcmp(st->keys[i], zero, 16)) continue;
            size_t j = id_slot(st->keys[i], cap);
            while (memcmp(k[j], zero, 16)) j = (j + 1) & (cap - 1);
            memcpy(k[j], st->keys[i], 16);
        }
        free(st->keys);
        st->keys = k;
        st->cap = cap;
    }
    size_t i = id_slot(id, st->cap);
    while (memcmp(st->keys[i], zero, 16)) i = (i + 1) & (st->cap - 1);
    memcpy(st->keys[i], id, 16);
    st->count++;
    return 0;
}

static void idset_clear(idset *st)
{
    if (st->count) memset(st->keys, 0, st->cap * 16);
    st->count = 0;
}

/* ---- the group being built ---- */
typedef struct group {
    evs_buf buf;             /* finished records, back to back */
    evs_req **reqs;          /* staged requests that write */
    size_t nreqs, reqcap;
    evs_stream **touched;    /* streams with staged events */
    size_t ntouched, tcap;
    uint32_t *offs;          /* segment offset of each staged record */
    size_t noffs, offcap;
    idset ids;               /* ids staged in this group */
    uint64_t next_pos;       /* next position to assign */
    int64_t time_us;         /* commit time of this group */
} group;

enum { STAGE_DONE = 1, STAGE_NEED_FLUSH = 2, STAGE_NEED_ROLL = 3 };

/* The commit time of the group about to be staged: now, and always after the
 * previous group's, so every write of the log carries its own time (recovery
 * tells a torn final write from damage followed by later writes by it). */
static void group_time(evs_store *s, group *g)
{
    int64_t now = evs__now_us();
    s->last_time_us = g->time_us = now > s->last_time_us ? now : s->last_time_us + 1;
}

static void complete(evs_store *s, evs_req *r, int rc)
{
    if (r->cb) {  /* asynchronous: hand over the outcome, then the request is ours to free */
        r->cb(r->cb_ctx, rc);
        evs__req_free(r);
        return;
    }
    pthread_mutex_lock(&s->q_mu);
    r->rc = rc;
    r->done = 1;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&s->q_mu);
}

void evs__fail(evs_store *s, int rc, const char *what)
{
    pthread_mutex_lock(&s->fail_mu);
    if (!atomic_load(&s->failed)) {
        snprintf(s->fail_reason, sizeof s->fail_reason, "%s: %s (%s)", what, evs_strerror(rc), evs_errname(rc));
        s->fail_rc = rc;
        atomic_store(&s->failed, 1);
        evs__logf(&s->log, EVS_LOG_ERROR, "store failed, no more appends until reopened: %s", s->fail_reason);
    }
    pthread_mutex_unlock(&s->fail_mu);
    pthread_mutex_lock(&s->wait_mu);
    pthread_cond_broadcast(&s->wait_cv);
    pthread_mutex_unlock(&s->wait_mu);
}

static int push(void **arr, size_t *n, size_t *cap, size_t elem, const void *item)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        void *p = realloc(*arr, c * elem);
        if (!p) return EVS_ENOMEM;
        *arr = p;
        *cap = c;
    }
    memcpy((char *)*arr + *n * elem, item, elem);
    (*n)++;
    return 0;
}

static const char *req_stream(const evs_req *r, size_t i)
{
    return r->stream ? r->stream : r->in[i].stream;
}

/* Does (stream, type) pass the filter? */
static int filter_match(const evs_filter *f, const char *stream, size_t slen, const char *type, size_t tlen)
{
    if (evs__system_hidden(f->stream_prefix, stream)) return 0;  /* [projections] as global reads do */
    if (f->stream_prefix) {
        size_t pl = strlen(f->stream_prefix);
        if (pl > slen || memcmp(stream, f->stream_prefix, pl) != 0) return 0;
    }
    if (f->ntypes == 0) return 1;
    for (size_t i = 0; i < f->ntypes; i++)
        if (strlen(f->types[i]) == tlen && memcmp(f->types[i], type, tlen) == 0) return 1;
    return 0;
}

/* Does any event after cond->after match the filter? 1: a committed one;
 * 2: only one staged in this group (not durable yet); 0: none. */
static int condition_fails(evs_store *s, group *g, const evs_condition *c, int *err)
{
    if (c->after < atomic_load(&s->committed)) {
        evs_read_options ro;
        evs_read_options_init(&ro);
        ro.from = c->after + 1;
        ro.filter = c->filter;
        ro.limit = 1;
        evs_iter *it = NULL;
        const evs_event *ev = NULL;
        int rc = evs_iter_open(s, &ro, &it);
        if (rc == 0) rc = evs_iter_next(it, &ev);
        evs_iter_close(it);
        *err = rc;
        if (rc) return 0;
        if (ev) return 1;
    }
    for (size_t k = 0; k < g->nreqs; k++) {
        evs_req *r = g->reqs[k];
        for (size_t i = 0; i < r->n; i++) {
            const char *st = req_stream(r, i);
            if (r->first_pos + i > c->after &&
                filter_match(&c->filter, st, strlen(st), r->in[i].type, strlen(r->in[i].type)))
                return 2;
        }
    }
    return 0;
}

/* All ids of r are stored: is it the same write repeated? Fill the original result. */
static int check_replay(evs_store *s, evs_req *r, const uint64_t *pos)
{
    evs_buf buf = {0};
    evs_rec rec;
    int rc = 0;
    for (size_t i = 0; i < r->n && rc == 0; i++) {
        evs_segment *seg;
        uint64_t off;
        if (pos[i] != pos[0] + i) { rc = EVS_EDUPLICATE; break; }
        if (!(seg = evs__seg_find(s, pos[i]))) { rc = EVS_ECORRUPT; break; }
        if ((rc = evs__offsets_read(s, seg, pos[i], &off)) != 0) break;
        if ((rc = evs__read_record(s, seg, off, pos[i], &buf, &rec)) != 0) break;
        const char *st = req_stream(r, i);
        int last = i + 1 == r->n;
        if (strlen(st) != rec.stream_len || memcmp(st, rec.stream, rec.stream_len) != 0 ||
            !!(rec.flags & EVS_REC_COMMIT) != last) {
            rc = EVS_EDUPLICATE;
            break;
        }
        if (r->out) {
            r->out[i].position = rec.position;
            r->out[i].version = rec.version;
            r->out[i].time_us = rec.time_us;
            memcpy(r->out[i].id, rec.id, 16);
        }
    }
    if (rc == 0 && pos[0] > 1) {  /* the write must start right after another append's end */
        evs_segment *seg = evs__seg_find(s, pos[0] - 1);
        uint64_t off;
        if (!seg) rc = EVS_ECORRUPT;
        else if ((rc = evs__offsets_read(s, seg, pos[0] - 1, &off)) == 0 &&
                 (rc = evs__read_record(s, seg, off, pos[0] - 1, &buf, &rec)) == 0 &&
                 !(rec.flags & EVS_REC_COMMIT))
            rc = EVS_EDUPLICATE;
    }
    evs__buf_free(&buf);
    if (rc == EVS_EDUPLICATE) {
        r->res->failed_index = 0;
        snprintf(r->res->message, sizeof r->res->message,
                 "event ids are already stored by a different write (partial overlap, other streams or order)");
    }
    return rc;
}

static int check_ids(evs_store *s, group *g, evs_req *r)
{
    if (!r->client_ids) return 0;
    uint64_t *pos = calloc(r->n, sizeof *pos);
    if (!pos) return EVS_ENOMEM;
    size_t found = 0, first_found = 0;
    int rc = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!r->in[i].id) continue;
        if (idset_has(&g->ids, r->ids[i])) { rc = STAGE_NEED_FLUSH; goto out; }
        evs_kv kv;
        int grc = evs__lsm_get(s->ids, r->ids[i], 0, &kv);
        if (grc == EVS_ENOTFOUND) continue;
        if (grc) { rc = grc; goto out; }
        if (kv.a > atomic_load(&s->committed)) continue;  /* a leftover of a failed write */
        if (found++ == 0) first_found = i;
        pos[i] = kv.a;
    }
    if (found == 0) goto out;
    if (found == r->n) {
        rc = check_replay(s, r, pos);
        if (rc == 0) {
            r->res->replayed = 1;
            r->res->first_position = pos[0];
            r->res->last_position = pos[r->n - 1];
            rc = STAGE_DONE;
        }
        goto out;
    }
    r->res->failed_index = first_found;
    char idtxt[37];
    evs_uuid_format(r->ids[first_found], idtxt);
    snprintf(r->res->message, sizeof r->res->message,
             "event %zu: id %s is already stored at position %" PRIu64 " by another write",
             first_found, idtxt, pos[first_found]);
    rc = EVS_EDUPLICATE;
out:
    free(pos);
    return rc;
}

/* expected vs the stream's version at that point. 0 when satisfied. */
static int expect_ok(int64_t expected, uint64_t version)
{
    switch (expected) {
    case EVS_EXPECT_ANY: return 1;
    case EVS_EXPECT_NO_STREAM: return version == 0;
    case EVS_EXPECT_EXISTS: return version > 0;
    default: return expected >= 0 && (uint64_t)expected == version;
    }
}

static int stream_for(evs_store *s, group *g, const char *name, evs_stream **out)
{
    size_t len = strlen(name);
    evs_stream *st = evs__streams_find(&s->streams, name, len);
    if (!st) {
        pthread_rwlock_wrlock(&s->tbl_lock);
        int rc = evs__streams_insert(&s->streams, name, len, &st);
        pthread_rwlock_unlock(&s->tbl_lock);
        if (rc) return rc;
    }
    if (!st->staged) {
        st->staged = 1;
        int rc = push((void **)&g->touched, &g->ntouched, &g->tcap, sizeof st, &st);
        if (rc) return rc;
    }
    *out = st;
    return 0;
}

static void unstage_streams(group *g, size_t from)
{
    for (size_t i = from; i < g->ntouched; i++) {
        evs_stream *st = g->touched[i];
        st->pending = st->version;
        st->pending_last_pos = st->last_pos;
        st->staged = 0;
    }
    g->ntouched = from;
}

/* Stage one request into the group. Returns 0 (staged), STAGE_DONE
 * (completed without writing), STAGE_NEED_FLUSH/ROLL, or an error code. */
static int stage(evs_store *s, group *g, evs_req *r)
{
    if (atomic_load(&s->failed)) return EVS_EFATAL;
    int rc = check_ids(s, g, r);
    if (rc) return rc;
    if (r->cond) {
        int err = 0;
        int cf = condition_fails(s, g, r->cond, &err);
        /* A refusal rests on durable events only: when an event of this
         * group (not written yet) is what fails the condition, the group is
         * made durable first and the request judged again. Otherwise a crash
         * or a failed sync could leave a refusal that names an event that
         * never existed. */
        if (cf == 2) return STAGE_NEED_FLUSH;
        if (cf) {
            snprintf(r->res->message, sizeof r->res->message,
                     "an event matching the condition exists after position %" PRIu64, r->cond->after);
            return EVS_ECONDITION;
        }
        if (err) return err;
    }
    evs_segment *seg = evs__seg_active(s);
    uint64_t end = atomic_load(&seg->end) + g->buf.len;
    if (end + r->rec.len > s->opt.segment_size && (end > EVS_SEG_HDR_SIZE))
        return g->buf.len ? STAGE_NEED_FLUSH : STAGE_NEED_ROLL;

    /* expected versions, assigning versions as we go; undone on failure */
    size_t touched_before = g->ntouched, applied = 0;
    uint64_t *saved = calloc(r->n, sizeof *saved);  /* pending before each event, for rollback */
    evs_stream **sts = calloc(r->n, sizeof *sts);
    if (!saved || !sts) { rc = EVS_ENOMEM; goto out; }
    for (size_t i = 0; i < r->n; i++) {
        if ((rc = stream_for(s, g, req_stream(r, i), &sts[i])) != 0) goto undo;
        int64_t exp = r->stream ? (i == 0 ? r->expected : EVS_EXPECT_ANY) : r->in[i].expected_version;
        if (!expect_ok(exp, sts[i]->pending)) {
            /* As for conditions: when events of this group, staged but not
             * durable, decide the refusal (the stream's pending version minus
             * this request's own earlier events differs from its committed
             * one), make the group durable first and judge again. */
            uint64_t own = 0;
            for (size_t j = 0; j < i; j++) own += sts[j] == sts[i];
            if (sts[i]->pending - own != sts[i]->version) {
                rc = STAGE_NEED_FLUSH;
                goto undo;
            }
            r->res->failed_index = i;
            r->res->expected_version = exp;
            r->res->actual_version = sts[i]->pending;
            snprintf(r->res->message, sizeof r->res->message,
                     "stream \"%s\" is at version %" PRIu64 ", the append expected %s%" PRId64,
                     req_stream(r, i), sts[i]->pending,
                     exp == EVS_EXPECT_NO_STREAM ? "no stream " : exp == EVS_EXPECT_EXISTS ? "an existing stream " : "",
                     exp < 0 ? (int64_t)0 : exp);
            if (exp < 0) {  /* say it without a number */
                snprintf(r->res->message, sizeof r->res->message,
                         "stream \"%s\" is at version %" PRIu64 ", the append expected %s",
                         req_stream(r, i), sts[i]->pending,
                         exp == EVS_EXPECT_NO_STREAM ? "no_stream" : "exists");
            }
            rc = EVS_ECONFLICT;
            goto undo;
        }
        saved[i] = sts[i]->pending;
        sts[i]->pending++;
        applied++;
    }
    /* every check passed: assign positions and copy the finished records */
    if ((rc = evs__buf_reserve(&g->buf, r->rec.len)) != 0) goto undo;
    r->first_pos = g->next_pos;
    uint64_t base_off = atomic_load(&seg->end);
    for (size_t i = 0; i < r->n; i++) {
        uint8_t *dst = g->buf.p + g->buf.len;
        uint32_t sz = (uint32_t)((i + 1 < r->n ? r->rec_off[i + 1] : r->rec.len) - r->rec_off[i]);
        memcpy(dst, r->rec.p + r->rec_off[i], sz);
        /* The group's bytes go out in one pwrite; if nothing before them is
         * waiting for an fdatasync, the first record says so. Recovery then
         * knows that damage before such a record was durable data, not a
         * torn write (a crash can tear only writes that were not synced). */
        if (g->buf.len == 0 && !s->unsynced) dst[5] |= EVS_REC_AFTER_SYNC;
        uint64_t pos = g->next_pos++;
        evs__rec_finish(dst, seg->salt, pos, saved[i] + 1, g->time_us);
        uint32_t off32 = (uint32_t)(base_off + g->buf.len);
        if ((rc = push((void **)&g->offs, &g->noffs, &g->offcap, sizeof off32, &off32)) != 0) goto undo_all;
        g->buf.len += sz;
        sts[i]->pending_last_pos = pos;
        if (saved[i] == 0) sts[i]->first_pos = pos;  /* harmless until version > 0 */
        if ((rc = idset_add(&g->ids, r->ids[i])) != 0) goto undo_all;
        if (r->out) {
            r->out[i].position = pos;
            r->out[i].version = saved[i] + 1;
            r->out[i].time_us = g->time_us;
            memcpy(r->out[i].id, r->ids[i], 16);
        }
    }
    r->res->first_position = r->first_pos;
    r->res->last_position = g->next_pos - 1;
    rc = push((void **)&g->reqs, &g->nreqs, &g->reqcap, sizeof r, &r);
    if (rc == 0) goto out;
undo_all:
    /* only reachable on ENOMEM with the group half-built: stop rather than guess */
    evs__fail(s, rc, "staging an append");
    goto out;
undo:
    while (applied-- > 0)
        sts[applied]->pending = saved[applied];
    unstage_streams(g, touched_before);
out:
    free(saved);
    free(sts);
    return rc;
}

/* Apply one committed record to the id and stream indexes (and, outside the
 * writer's publish step, to the stream table). Used by recovery and followers. */
int evs__index_record(evs_store *s, const evs_rec *rec)
{
    evs_stream *st = evs__streams_find(&s->streams, rec->stream, rec->stream_len);
    if (!st) {
        int rc = evs__streams_insert(&s->streams, rec->stream, rec->stream_len, &st);
        if (rc) return rc;
    }
    if (st->version == 0 && rec->version > 0 && st->name[0] != '$') atomic_fetch_add(&s->nstreams, 1);
    if (rec->version == 1) st->first_pos = rec->position;
    st->version = st->pending = rec->version;
    st->last_pos = st->pending_last_pos = rec->position;
    if (!s->read_only) {  /* a follower never checkpoints */
        int rc = evs__changes_note(&s->changes, st, rec->version, rec->position);
        if (rc) return rc;
    }
    evs_kv kv;
    memcpy(kv.key, rec->id, 16);
    kv.a = rec->position;
    kv.b = 0;
    int rc = evs__lsm_put(s->ids, &kv);
    if (rc) return rc;
    evs__stream_hash(rec->stream, rec->stream_len, kv.key);
    kv.a = rec->version;
    kv.b = rec->position;
    return evs__lsm_put(s->sidx, &kv);
}

int evs__publish_position(evs_store *s, uint64_t position)
{
    if (!s->lock_file) return 0;
    /* position and its complement: a follower that reads a torn value sees
     * the two disagree and reads again */
    uint8_t b[16];
    evs__put64(b, position);
    evs__put64(b + 8, ~position);
    return evs__fwrite(s->lock_file, b, 16, 16, NULL);
}

static void finish_group(evs_store *s, group *g, int rc)
{
    if (rc) unstage_streams(g, 0);
    for (size_t i = 0; i < g->nreqs; i++)
        complete(s, g->reqs[i], rc);
    g->nreqs = 0;
    g->ntouched = 0;
    g->noffs = 0;
    g->buf.len = 0;
    idset_clear(&g->ids);
}

static int data_sync(evs_store *s, evs_segment *seg)
{
    static const uint64_t bounds[15] = EVS_FSYNC_BUCKETS_US;
    uint64_t t0 = evs__mono_ns();
    int rc = seg->file->vfs->datasync(seg->file);
    atomic_fetch_add_explicit(&s->st_fsyncs, 1, memory_order_relaxed);
    s->last_sync_ns = evs__mono_ns();
    uint64_t us = (s->last_sync_ns - t0) / 1000;
    size_t b = 0;
    while (b < 15 && us > bounds[b]) b++;
    atomic_fetch_add_explicit(&s->fsync_hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->fsync_sum_us, us, memory_order_relaxed);
    s->unsynced = 0;
    return rc;
}

/* Write, sync, index, publish, acknowledge. */
static int flush_group(evs_store *s, group *g)
{
    if (g->nreqs == 0) return 0;
    if (atomic_load(&s->failed)) {
        finish_group(s, g, EVS_EFATAL);
        return EVS_EFATAL;
    }
    evs_segment *seg = evs__seg_active(s);
    uint64_t off = atomic_load(&seg->end);
    uint64_t first = atomic_load(&s->committed) + 1;
    size_t n = g->noffs;
    size_t written = 0;
    int rc = evs__fwrite(seg->file, g->buf.p, g->buf.len, off, &written);
    if (rc) {
        /* take back a short write so the file ends at the last good record */
        seg->file->vfs->truncate(seg->file, off);
        evs__fail(s, rc, "writing the segment");
        goto out;
    }
    s->unsynced = 1;
    if (s->opt.sync == EVS_SYNC_ALWAYS && (rc = data_sync(s, seg)) != 0) {
        seg->file->vfs->truncate(seg->file, off);
        evs__fail(s, rc, "fdatasync of the segment");
        goto out;
    }
    if ((rc = evs__offsets_write(s, seg, first, g->offs, n)) != 0) {
        evs__fail(s, rc, "writing the offsets index");
        goto out;
    }
    /* index: ids and stream versions (readers ignore entries past committed) */
    for (size_t k = 0; k < g->nreqs && rc == 0; k++) {
        evs_req *r = g->reqs[k];
        for (size_t i = 0; i < r->n && rc == 0; i++) {
            evs_kv kv;
            memcpy(kv.key, r->ids[i], 16);
            kv.a = r->first_pos + i;
            kv.b = 0;
            rc = evs__lsm_put(s->ids, &kv);
        }
    }
    for (size_t k = 0; k < g->nreqs && rc == 0; k++) {
        evs_req *r = g->reqs[k];
        for (size_t i = 0; i < r->n && rc == 0; i++) {
            const char *name = req_stream(r, i);
            evs_kv kv;
            evs__stream_hash(name, strlen(name), kv.key);
            kv.a = r->out[i].version;
            kv.b = r->first_pos + i;
            rc = evs__lsm_put(s->sidx, &kv);
        }
    }
    /* [projections] match the group against every projection before it becomes visible */
    if (rc == 0) rc = evs__proj_on_commit(s, g->reqs, g->nreqs, first, first + n - 1);
    /* the streams' new states, for the next streams.idx chunk */
    for (size_t i = 0; i < g->ntouched && rc == 0; i++)
        rc = evs__changes_note(&s->changes, g->touched[i], g->touched[i]->pending, g->touched[i]->pending_last_pos);
    if (rc) {
        evs__fail(s, rc, "updating the indexes");
        goto out;
    }
    uint64_t last = first + n - 1;
    pthread_rwlock_wrlock(&s->tbl_lock);
    for (size_t i = 0; i < g->ntouched; i++) {
        evs_stream *st = g->touched[i];
        if (st->version == 0 && st->pending > 0 && st->name[0] != '$') atomic_fetch_add(&s->nstreams, 1);
        st->version = st->pending;
        st->last_pos = st->pending_last_pos;
        st->staged = 0;
    }
    atomic_store(&seg->end, off + g->buf.len);
    atomic_store(&seg->count, atomic_load(&seg->count) + n);
    atomic_store(&s->committed, last);
    pthread_rwlock_unlock(&s->tbl_lock);
    g->ntouched = 0;
    int prc = evs__publish_position(s, last);
    if (prc) /* the group is durable (acknowledged below), but followers would stop seeing appends */
        evs__fail(s, prc, "publishing the committed position in evstore.lock");
    atomic_fetch_add_explicit(&s->st_groups, 1, memory_order_relaxed);
    {
        static const uint64_t gb[15] = EVS_GROUP_BUCKETS;
        size_t b = 0;
        while (b < 15 && n > gb[b]) b++;
        atomic_fetch_add_explicit(&s->group_hist[b], 1, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&s->st_appends, g->nreqs, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->st_events, n, memory_order_relaxed);
    s->since_ckpt += n;
    pthread_mutex_lock(&s->wait_mu);
    pthread_cond_broadcast(&s->wait_cv);
    pthread_mutex_unlock(&s->wait_mu);
out:
    if (rc) rc = atomic_load(&s->failed) ? EVS_EFATAL : rc;
    finish_group(s, g, rc);
    g->next_pos = atomic_load(&s->committed) + 1;
    group_time(s, g);  /* what is staged next goes into another write */
    return rc;
}

/* Seal the active segment and start the next one. */
static int roll(evs_store *s)
{
    evs_segment *seg = evs__seg_active(s), *next = NULL;
    int rc = 0;
    if (s->unsynced && (rc = data_sync(s, seg)) != 0) {
        evs__fail(s, rc, "fdatasync before sealing a segment");
        return rc;
    }
    if ((rc = seg->offsets->vfs->datasync(seg->offsets)) != 0 ||
        (rc = evs__seg_create(s, atomic_load(&s->committed) + 1, &next)) != 0 ||
        (rc = evs__seg_add(s, next)) != 0) {
        evs__seg_close(next);
        evs__fail(s, rc, "sealing the segment and creating the next");
        return rc;
    }
    evs__logf(&s->log, EVS_LOG_DEBUG, "sealed %s, started %s", seg->name, next->name);
    return 0;
}

/*
 * Freeze: hand everything committed up to now to the index thread. O(1) on
 * this thread: the only I/O is the data sync the interval/never policies owe
 * the checkpoint (the log must be durable up to the position the index
 * files will claim; under `always` it already is). The index tables are
 * swapped for fresh ones and the frozen ones stay searchable by readers until
 * the index thread has made them durable, so no lookup ever misses an entry.
 * When EVS_CKPT_MAX_PENDING checkpoints are still queued or being written,
 * the writer waits here for the oldest to finish: the backlog, and so the
 * memory of the frozen tables, stays bounded.
 */
int evs__freeze(evs_store *s)
{
    uint64_t covered = atomic_load(&s->committed);
    if (covered == s->frozen_position || s->read_only || !s->ix || atomic_load(&s->failed)) return 0;
    int rc = 0;
    const char *what = "syncing data for a checkpoint";
    evs_ckpt_job *job = NULL;
    if (s->unsynced && (rc = data_sync(s, evs__seg_active(s))) != 0) goto out;
    what = "waiting for the index thread";
    uint64_t t0 = evs__mono_ns();
    if ((rc = evs__indexer_wait_room(s)) != 0) goto out;
    uint64_t waited = evs__mono_ns() - t0;
    if (waited > 1000000u)
        evs__logf(&s->log, EVS_LOG_DEBUG, "checkpoint at %" PRIu64 ": the writer waited %.1f ms for the index thread",
                  covered, (double)waited / 1e6);
    what = "freezing the indexes";
    rc = EVS_ENOMEM;
    if (!(job = calloc(1, sizeof *job))) goto out;
    job->covered = covered;
    job->seg = evs__seg_find(s, covered);
    if (!job->seg) { rc = EVS_ECORRUPT; goto out; }
    job->end_off = atomic_load(&job->seg->end);
    if ((rc = evs__lsm_freeze(s->ids, covered)) != 0) goto out;
    if ((rc = evs__lsm_freeze(s->sidx, covered)) != 0) goto out;
    job->changes = s->changes;  /* O(1): the array moves to the job */
    memset(&s->changes, 0, sizeof s->changes);
    evs__indexer_submit(s, job);
    job = NULL;
    s->frozen_position = covered;
    s->since_ckpt = 0;
out:
    free(job);
    if (rc) evs__fail(s, rc, what);
    return rc;
}

static void *writer_main(void *arg)
{
    evs_store *s = arg;
    group g = {0};
    for (;;) {
        pthread_mutex_lock(&s->q_mu);
        while (!s->q_head && !s->closing) {
            if (s->opt.sync == EVS_SYNC_INTERVAL && s->unsynced) {
                uint64_t due = s->last_sync_ns + (uint64_t)s->opt.sync_interval_ms * 1000000u;
                if (evs__mono_ns() >= due) break;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                uint64_t t = evs__mono_ns();
                uint64_t wait = due > t ? due - t : 0;  /* the clock may pass `due` meanwhile */
                ts.tv_sec += (time_t)(wait / 1000000000u);
                ts.tv_nsec += (long)(wait % 1000000000u);
                if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
                pthread_cond_timedwait(&s->q_cv, &s->q_mu, &ts);
            } else {
                pthread_cond_wait(&s->q_cv, &s->q_mu);
            }
        }
        evs_req *list = s->q_head;
        s->q_head = s->q_tail = NULL;
        int closing = s->closing;
        pthread_mutex_unlock(&s->q_mu);

        group_time(s, &g);
        g.next_pos = atomic_load(&s->committed) + 1;
        while (list) {
            evs_req *r = list;
            int rc = stage(s, &g, r);
            if (rc == STAGE_NEED_FLUSH) { flush_group(s, &g); continue; }
            if (rc == STAGE_NEED_ROLL) {
                if (roll(s) != 0) { list = r->next; complete(s, r, EVS_EFATAL); }
                continue;
            }
            list = r->next;
            if (rc == STAGE_DONE) complete(s, r, 0);
            else if (rc) complete(s, r, atomic_load(&s->failed) ? EVS_EFATAL : rc);
        }
        flush_group(s, &g);
        if (s->opt.sync == EVS_SYNC_INTERVAL && s->unsynced &&
            evs__mono_ns() >= s->last_sync_ns + (uint64_t)s->opt.sync_interval_ms * 1000000u) {
            int rc = data_sync(s, evs__seg_active(s));
            if (rc) evs__fail(s, rc, "interval fdatasync");
        }
        if (s->since_ckpt >= s->opt.checkpoint_interval)
            evs__freeze(s);
        if (closing) {
            pthread_mutex_lock(&s->q_mu);
            int empty = s->q_head == NULL;
            pthread_mutex_unlock(&s->q_mu);
            if (empty) break;
        }
    }
    if (s->unsynced && !atomic_load(&s->failed)) {
        int rc = data_sync(s, evs__seg_active(s));
        if (rc) evs__fail(s, rc, "final fdatasync");
    }
    evs__buf_free(&g.buf);
    free(g.reqs);
    free(g.touched);
    free(g.offs);
    free(g.ids.keys);
    return NULL;
}

int evs__writer_start(evs_store *s)
{
    int rc = pthread_create(&s->writer, NULL, writer_main, s);
    if (rc) return -rc;
    s->writer_started = 1;
    return 0;
}

void evs__writer_stop(evs_store *s)
{
    pthread_mutex_lock(&s->q_mu);
    s->closing = 1;
    pthread_cond_signal(&s->q_cv);
    pthread_mutex_unlock(&s->q_mu);
    if (s->writer_started) pthread_join(s->writer, NULL);
    s->writer_started = 0;
}

int evs__submit_async(evs_store *s, evs_req *r)
{
    pthread_mutex_lock(&s->q_mu);
    if (s->closing) {
        pthread_mutex_unlock(&s->q_mu);
        return EVS_ECLOSED;
    }
    r->next = NULL;
    if (s->q_tail) s->q_tail->next = r; else s->q_head = r;
    s->q_tail = r;
    pthread_cond_signal(&s->q_cv);
    pthread_mutex_unlock(&s->q_mu);
    return 0;
}

int evs__submit(evs_store *s, evs_req *r)
{
    pthread_cond_init(&r->cv, NULL);
    pthread_mutex_lock(&s->q_mu);
    if (s->closing) {
        pthread_mutex_unlock(&s->q_mu);
        pthread_cond_destroy(&r->cv);
        return EVS_ECLOSED;
    }
    r->next = NULL;
    if (s->q_tail) s->q_tail->next = r; else s->q_head = r;
    s->q_tail = r;
    pthread_cond_signal(&s->q_cv);
    while (!r->done)
        pthread_cond_wait(&r->cv, &s->q_mu);
    pthread_mutex_unlock(&s->q_mu);
    pthread_cond_destroy(&r->cv);
    return r->rc;
}
