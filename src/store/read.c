/*
 * read.c — iterators over the global log and over one stream, get by id or
 * position, stream versions and the stream list.
 *
 * Readers run in the caller's thread and read files with pread. They never
 * return a position above `committed`, which the writer publishes only after
 * the records, their offsets and their index entries are in place; every
 * record read is verified (checksum, framing, position) before it is served.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/store_int.h"

#define READ_WINDOW (256u * 1024u)  /* bytes per pread when scanning forward */
#define STREAM_BATCH 256u            /* stream index entries fetched at a time */

struct evs_iter {
    evs_store *s;                /* the store */
    char *stream;                /* stream read: its name (owned); NULL for the global log */
    size_t stream_len;
    char *prefix;                /* filter: stream prefix (owned) or NULL */
    char **types;                /* filter: types (owned) */
    size_t ntypes;
    int backward;                /* direction */
    uint64_t limit;              /* 0 = none */
    uint64_t returned;           /* events handed out so far */
    uint64_t next;               /* next position (global) or version (stream) to look at */
    int done;                    /* backward iterators end for good */
    evs_segment *seg;            /* forward global scan: current segment */
    uint64_t off;                /* forward global scan: file offset of `next` in seg */
    evs_buf win;                 /* forward global scan: bytes of seg from win_off */
    uint64_t win_off;
    evs_buf rbuf;                /* random-access record buffer */
    evs_kv kv[STREAM_BATCH];     /* stream read: positions fetched from the index */
    size_t nkv, kvi;             /* entries in kv, next one to use */
    evs_buf scratch;             /* NUL-terminated copies for the current event */
    evs_event ev;                /* the current event */
    evs_proj_iter *proj;         /* [projections] projection read: yields positions (projection.c) */
};

void evs_read_options_init(evs_read_options *ro)
{
    memset(ro, 0, sizeof *ro);
    ro->struct_size = sizeof *ro;
}

/* Fill ev from rec, copying strings NUL-terminated into scratch. */
static int make_event(evs_buf *scratch, const evs_rec *rec, evs_event *ev)
{
    size_t need = rec->stream_len + rec->type_len + rec->data_len + rec->metadata_len + 4;
    scratch->len = 0;
    int rc = evs__buf_reserve(scratch, need);
    if (rc) return rc;
    char *p = (char *)scratch->p;
    ev->position = rec->position;
    ev->version = rec->version;
    ev->time_us = rec->time_us;
    memcpy(ev->id, rec->id, 16);
#define COPY(dst, dlen, src, n) do { memcpy(p, src, n); p[n] = 0; dst = p; dlen = n; p += (n) + 1; } while (0)
    COPY(ev->stream, ev->stream_len, rec->stream, rec->stream_len);
    COPY(ev->type, ev->type_len, rec->type, rec->type_len);
    COPY(ev->data, ev->data_len, rec->data, rec->data_len);
    if (rec->metadata) {
        COPY(ev->metadata, ev->metadata_len, rec->metadata, rec->metadata_len);
    } else {
        ev->metadata = NULL;
        ev->metadata_len = 0;
    }
#undef COPY
    return 0;
}

static int passes(const evs_iter *it, const evs_rec *rec)
{
    if (!it->stream && evs__system_hidden(it->prefix, rec->stream)) return 0;  /* [projections] */
    if (it->prefix) {
        size_t pl = strlen(it->prefix);
        if (pl > rec->stream_len || memcmp(rec->stream, it->prefix, pl) != 0) return 0;
    }
    if (!it->ntypes) return 1;
    for (size_t i = 0; i < it->ntypes; i++)
        if (strlen(it->types[i]) == rec->type_len && !memcmp(it->types[i], rec->type, rec->type_len))
            return 1;
    return 0;
}

/* The record at a global position, via the offsets index. */
static int fetch(evs_store *s, uint64_t pos, evs_buf *buf, evs_rec *rec)
{
    evs_segment *g = evs__seg_find(s, pos);
    uint64_t off;
    if (!g) return EVS_CORRUPT_HERE(&s->log, "(segments)", pos, "no segment holds this position");
    int rc = evs__offsets_read(s, g, pos, &off);
    if (rc) return rc;
    return evs__read_record(s, g, off, pos, buf, rec);
}

static uint64_t stream_version(evs_store *s, const char *name, size_t len)
{
    pthread_rwlock_rdlock(&s->tbl_lock);
    evs_stream *st = evs__streams_find(&s->streams, name, len);
    uint64_t v = st ? st->version : 0;
    pthread_rwlock_unlock(&s->tbl_lock);
    return v;
}

int evs_iter_open(evs_store *s, const evs_read_options *ro, evs_iter **out)
{
    *out = NULL;
    evs_iter *it = calloc(1, sizeof *it);
    if (!it) return EVS_ENOMEM;
    int rc = 0;
    it->s = s;
    it->backward = ro->backward;
    it->limit = ro->limit;
    if (ro->filter.stream_prefix && !(it->prefix = strdup(ro->filter.stream_prefix))) { rc = EVS_ENOMEM; goto out; }
    if (ro->filter.ntypes) {
        if (!(it->types = calloc(ro->filter.ntypes, sizeof *it->types))) { rc = EVS_ENOMEM; goto out; }
        for (size_t i = 0; i < ro->filter.ntypes; i++, it->ntypes++)
            if (!(it->types[i] = strdup(ro->filter.types[i]))) { rc = EVS_ENOMEM; goto out; }
    }
    evs__refresh_follower(s);
    /* [projections] a projection read: projection.c yields positions, filter set to the projection's */
    if (ro->struct_size >= offsetof(evs_read_options, projection) + sizeof ro->projection && ro->projection) {
        if (ro->stream || it->prefix || it->ntypes) { rc = EVS_EINVAL; goto out; }
        rc = evs__proj_iter_open(s, ro, &it->proj, &it->prefix, &it->types, &it->ntypes);
        goto out;
    }
    if (ro->stream) {
        it->stream_len = strlen(ro->stream);
        if (evs__validate_name(ro->stream, it->stream_len)) { rc = EVS_EINVAL; goto out; }
        if (!(it->stream = strdup(ro->stream))) { rc = EVS_ENOMEM; goto out; }
        uint64_t v = stream_version(s, it->stream, it->stream_len);
        if (v == 0 && !ro->allow_missing) { rc = EVS_ENOTFOUND; goto out; }
        it->next = ro->backward ? (ro->from && ro->from < v ? ro->from : v) : (ro->from ? ro->from : 1);
    } else {
        uint64_t c = atomic_load(&s->committed);
        it->next = ro->backward ? (ro->from && ro->from < c ? ro->from : c) : (ro->from ? ro->from : 1);
    }
    if (it->backward && it->next == 0) it->done = 1;
out:
    if (rc) evs_iter_close(it);
    else *out = it;
    return rc;
}

void evs_iter_close(evs_iter *it)
{
    if (!it) return;
    evs__proj_iter_close(it->proj);  /* [projections] */
    free(it->stream);
    free(it->prefix);
    for (size_t i = 0; i < it->ntypes; i++) free(it->types[i]);
    free(it->types);
    evs__buf_free(&it->win);
    evs__buf_free(&it->rbuf);
    evs__buf_free(&it->scratch);
    free(it);
}

/* Forward scan of the global log through a read window. */
static int next_global_forward(evs_iter *it, evs_rec *rec)
{
    evs_store *s = it->s;
    if (it->next > atomic_load(&s->committed)) return EVS_ENOTFOUND;
    int refilled = 0;
    for (;;) {
        if (!it->seg || it->next < it->seg->base) {
            evs_segment *g = evs__seg_find(s, it->next);
            if (!g) return EVS_CORRUPT_HERE(&s->log, "(segments)", it->next, "no segment holds this position");
            it->seg = g;
            it->win.len = 0;
            if (it->next == g->base) it->off = EVS_SEG_HDR_SIZE;
            else {
                int rc = evs__offsets_read(s, g, it->next, &it->off);
                if (rc) return rc;
            }
        }
        evs_segment *g = it->seg;
        uint64_t have = it->win_off + it->win.len;
        if (it->off >= it->win_off && it->off < have) {
            evs_rec_status st = evs__rec_decode(it->win.p + (it->off - it->win_off), have - it->off, g->salt, rec);
            if (st == EVS_REC_OK) {
                if (rec->position != it->next)
                    return EVS_CORRUPT_HERE(&s->log, g->name, it->off, "record out of position order");
                it->off += rec->size;
                it->next++;
                return 0;
            }
            if (st == EVS_REC_BAD)
                return EVS_CORRUPT_HERE(&s->log, g->name, it->off, "record fails its checksum or framing");
            if (st == EVS_REC_SHORT && rec->size > READ_WINDOW && refilled) {
                /* a record larger than the window: read exactly it */
                size_t got = 0;
                it->win.len = 0;
                int rc = evs__buf_reserve(&it->win, rec->size);
                if (rc) return rc;
                rc = evs__fread(g->file, it->win.p, rec->size, it->off, &got);
                if (rc) return rc;
                it->win_off = it->off;
                it->win.len = got;
                if (got < rec->size)
                    return EVS_CORRUPT_HERE(&s->log, g->name, it->off, "committed record is cut short");
                continue;
            }
        }
        if (refilled) {
            /* nothing more in this segment: the position must be in the next */
            evs_segment *n = evs__seg_find(s, it->next);
            if (n && n != g) { it->seg = n; it->off = EVS_SEG_HDR_SIZE; it->win.len = 0; refilled = 0; continue; }
            return EVS_CORRUPT_HERE(&s->log, g->name, it->off, "committed record is missing");
        }
        size_t got = 0;
        it->win.len = 0;
        int rc = evs__buf_reserve(&it->win, READ_WINDOW);
        if (rc) return rc;
        rc = evs__fread(g->file, it->win.p, READ_WINDOW, it->off, &got);
        if (rc) return rc;
        it->win_off = it->off;
        it->win.len = got;
        refilled = 1;
    }
}

/* The next stream event at version it->next (forward) or downwards. */
static int next_stream(evs_iter *it, evs_rec *rec)
{
    evs_store *s = it->s;
    if (it->kvi == it->nkv) {
        uint64_t v = stream_version(s, it->stream, it->stream_len);
        uint64_t lo, hi;
        if (it->backward) {
            if (it->next == 0) return EVS_ENOTFOUND;
            hi = EVS_MIN(it->next, v);
            lo = hi >= STREAM_BATCH ? hi - STREAM_BATCH + 1 : 1;
        } else {
            if (it->next > v) return EVS_ENOTFOUND;
            lo = it->next;
            hi = EVS_MIN(v, lo + STREAM_BATCH - 1);
        }
        if (hi < lo) return EVS_ENOTFOUND;
        uint8_t key[16];
        evs__stream_hash(it->stream, it->stream_len, key);
        size_t n = 0;
        int rc = evs__lsm_scan(s->sidx, key, lo, hi, it->kv, STREAM_BATCH, &n);
        if (rc) return rc;
        if (n != hi - lo + 1 || it->kv[0].a != lo)
            return EVS_CORRUPT_HERE(&s->log, "streams index", lo, "stream index is missing versions");
        it->nkv = n;
        it->kvi = 0;
    }
    size_t i = it->backward ? it->nkv - 1 - it->kvi : it->kvi;
    it->kvi++;
    const evs_kv *kv = &it->kv[i];
    int rc = fetch(s, kv->b, &it->rbuf, rec);
    if (rc) return rc;
    if (rec->version != kv->a || rec->stream_len != it->stream_len ||
        memcmp(rec->stream, it->stream, it->stream_len) != 0)
        return EVS_CORRUPT_HERE(&s->log, "streams index", kv->b, "index entry points at another stream's event");
    it->next = it->backward ? kv->a - 1 : kv->a + 1;
    return 0;
}

int evs_iter_next(evs_iter *it, const evs_event **ev)
{
    *ev = NULL;
    if (it->done || (it->limit && it->returned >= it->limit)) return 0;
    evs_store *s = it->s;
    int refreshed = 0;
    for (;;) {
        evs_rec rec;
        int rc;
        if (it->proj) {  /* [projections] the next matching position, then the record */
            uint64_t pos = 0;
            rc = evs__proj_iter_next(it->proj, &pos);
            if (rc) return rc;          /* EVS_ENOTFOUND here: the projection was deleted */
            if (pos == 0) return 0;     /* nothing more for now (live) or the end */
            rc = fetch(s, pos, &it->rbuf, &rec);
        } else if (it->stream) {
            rc = next_stream(it, &rec);
        } else if (it->backward) {
            if (it->next == 0) rc = EVS_ENOTFOUND;
            else if ((rc = fetch(s, it->next, &it->rbuf, &rec)) == 0) it->next--;
        } else {
            rc = next_global_forward(it, &rec);
        }
        if (rc == EVS_ENOTFOUND) {
            if (it->backward) it->done = 1;
            else if (s->read_only && !refreshed) {  /* a follower looks for new records once */
                refreshed = 1;
                evs__refresh_follower(s);
                continue;
            }
            return 0;
        }
        if (rc) return rc;
        if (!passes(it, &rec)) continue;
        if ((rc = make_event(&it->scratch, &rec, &it->ev)) != 0) return rc;
        it->returned++;
        atomic_fetch_add_explicit(&s->st_reads, 1, memory_order_relaxed);
        *ev = &it->ev;
        return 0;
    }
}

/* One allocation holding the event and its strings; freed with evs_free. */
static int copy_out(const evs_rec *rec, evs_event **out)
{
    size_t need = rec->stream_len + rec->type_len + rec->data_len + rec->metadata_len + 4;
    evs_event *e = malloc(sizeof *e + need);
    if (!e) return EVS_ENOMEM;
    evs_buf b = {.p = (uint8_t *)(e + 1), .len = 0, .cap = need};  /* big enough: never grows */
    make_event(&b, rec, e);
    *out = e;
    return 0;
}

int evs_get_at(evs_store *s, uint64_t position, evs_event **ev)
{
    *ev = NULL;
    evs__refresh_follower(s);
    if (position == 0 || position > atomic_load(&s->committed)) return EVS_ENOTFOUND;
    evs_buf buf = {0};
    evs_rec rec;
    int rc = fetch(s, position, &buf, &rec);
    if (rc == 0) rc = copy_out(&rec, ev);
    if (rc == 0) atomic_fetch_add_explicit(&s->st_reads, 1, memory_order_relaxed);
    evs__buf_free(&buf);
    return rc;
}

int evs_get(evs_store *s, const uint8_t id[16], evs_event **ev)
{
    *ev = NULL;
    evs__refresh_follower(s);
    if (!s->ids) return EVS_ENOTFOUND;  /* a follower of a store with nothing written yet */
    evs_kv kv;
    int rc = evs__lsm_get(s->ids, id, 0, &kv);
    if (rc) return rc;
    if (kv.a == 0 || kv.a > atomic_load(&s->committed)) return EVS_ENOTFOUND;
    evs_buf buf = {0};
    evs_rec rec;
    rc = fetch(s, kv.a, &buf, &rec);
    if (rc == 0 && memcmp(rec.id, id, 16) != 0)
        rc = EVS_CORRUPT_HERE(&s->log, "ids index", kv.a, "index entry points at another event");
    if (rc == 0) rc = copy_out(&rec, ev);
    if (rc == 0) atomic_fetch_add_explicit(&s->st_reads, 1, memory_order_relaxed);
    evs__buf_free(&buf);
    return rc;
}

int evs_stream_version(evs_store *s, const char *stream, uint64_t *version)
{
    evs__refresh_follower(s);
    size_t len = strlen(stream);
    if (evs__validate_name(stream, len)) return EVS_EINVAL;
    *version = stream_version(s, stream, len);
    return 0;
}

uint64_t evs_position(evs_store *s)
{
    /* a plain load: followers pick up new events in evs_wait, evs_refresh and
     * at the end of iterators, not on every call of this one */
    return atomic_load(&s->committed);
}

/* ---- stream listing: streamed in name order ----
 *
 * The stream table keeps its streams in name order: an immutable sorted
 * array (evs_name_index) plus the few streams inserted since it was built
 * ("fresh", merged in by the index thread every EVS_FRESH_SORT new streams).
 * A listing takes, under one short tbl_lock hold, a reference to the sorted
 * array and a sorted copy of the fresh streams that match its prefix; then it
 * walks the two like a merge, PAGE streams per tbl_lock hold (to read their
 * committed versions), returning each stream's own name buffer (streams are
 * never freed while the store is open). Memory: a pointer per matching fresh
 * stream and one page, never the names. The set of streams is that of the
 * open; versions are read as the listing reaches them. A prefix listing
 * starts with a binary search and stops at the first name past the prefix.
 */
#define PAGE 256u

struct evs_stream_iter {
    evs_store *s;
    char *prefix;                /* owned, or NULL */
    size_t pl;
    evs_name_index *snap;        /* referenced, or NULL */
    size_t si;                   /* next index in snap */
    evs_stream **fresh;          /* matching fresh streams at the open, sorted (owned) */
    size_t nfresh, fi;
    int done;                    /* past the last match */
    const evs_stream *page[PAGE];/* the next streams to return */
    uint64_t ver[PAGE];          /* and their versions */
    size_t pn, pi;
};

static int has_prefix(const evs_stream_iter *it, const evs_stream *e)
{
    return !it->pl || (e->name_len >= it->pl && memcmp(e->name, it->prefix, it->pl) == 0);
}

/* The first index of snap whose name is >= key. */
static size_t lower_bound(const evs_name_index *ni, const char *key, size_t klen)
{
    size_t lo = 0, hi = ni->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (evs__name_cmp(ni->v[mid]->name, ni->v[mid]->name_len, key, klen) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static int cmp_fresh(const void *x, const void *y)
{
    const evs_stream *a = *(evs_stream *const *)x, *b = *(evs_stream *const *)y;
    return evs__name_cmp(a->name, a->name_len, b->name, b->name_len);
}

int evs_streams_open(evs_store *s, const char *prefix, evs_stream_iter **out)
{
    *out = NULL;
    evs__refresh_follower(s);
    evs_stream_iter *it = calloc(1, sizeof *it);
    if (!it) return EVS_ENOMEM;
    int rc = 0;
    it->s = s;
    if (prefix && *prefix) {
        if (!(it->prefix = strdup(prefix))) { rc = EVS_ENOMEM; goto out; }
        it->pl = strlen(prefix);
    }
    for (int attempt = 0;; attempt++) {
        pthread_rwlock_rdlock(&s->tbl_lock);
        const evs_stream_table *t = &s->streams;
        size_t match = 0;
        for (size_t i = 0; i < t->nfresh; i++) match += has_prefix(it, t->fresh[i]);
        if (match > EVS_FRESH_SORT && attempt == 0) {
            /* many new streams not yet in the name order (just after an open
             * of a large store, or a follower): merge them in first, for all */
            pthread_rwlock_unlock(&s->tbl_lock);
            if ((rc = evs__streams_sort(s)) != 0) goto out;
            continue;
        }
        if (match && !(it->fresh = malloc(match * sizeof *it->fresh))) rc = EVS_ENOMEM;
        for (size_t i = 0; rc == 0 && i < t->nfresh; i++)
            if (has_prefix(it, t->fresh[i])) it->fresh[it->nfresh++] = t->fresh[i];
        if ((it->snap = t->sorted) != NULL) atomic_fetch_add(&it->snap->refs, 1);
        pthread_rwlock_unlock(&s->tbl_lock);
        break;
    }
    if (rc) goto out;
    if (it->nfresh > 1) qsort(it->fresh, it->nfresh, sizeof *it->fresh, cmp_fresh);
    if (it->snap && it->pl) it->si = lower_bound(it->snap, it->prefix, it->pl);
out:
    if (rc) evs_streams_close(it);
    else *out = it;
    return rc;
}

/* Fill the page with the next streams that match, are visible and are not hidden. */
static void fill_page(evs_stream_iter *it)
{
    evs_store *s = it->s;
    const evs_name_index *ni = it->snap;
    it->pn = it->pi = 0;
    pthread_rwlock_rdlock(&s->tbl_lock);  /* for the versions */
    while (it->pn < PAGE && !it->done) {
        const evs_stream *a = ni && it->si < ni->n ? ni->v[it->si] : NULL;
        const evs_stream *b = it->fi < it->nfresh ? it->fresh[it->fi] : NULL;
        if (a && !has_prefix(it, a)) a = NULL;  /* sorted: the matches are contiguous */
        if (!a && !b) { it->done = 1; break; }
        const evs_stream *e;
        if (b && (!a || evs__name_cmp(b->name, b->name_len, a->name, a->name_len) < 0)) {
            e = b;
            it->fi++;
        } else {
            e = a;
            it->si++;
        }
        if (evs__system_hidden(it->prefix, e->name)) {  /* [projections] */
            if (e == a && ni) it->si = EVS_MAX(it->si, lower_bound(ni, "%", 1));  /* past every "$..." name */
            continue;
        }
        if (!e->version) continue;  /* only ever the target of failed appends */
        it->page[it->pn] = e;
        it->ver[it->pn++] = e->version;
    }
    pthread_rwlock_unlock(&s->tbl_lock);
}

int evs_streams_next(evs_stream_iter *it, const char **name, uint64_t *version)
{
    if (it->pi == it->pn && !it->done) fill_page(it);
    if (it->pi == it->pn) { *name = NULL; *version = 0; return 0; }
    *name = it->page[it->pi]->name;
    *version = it->ver[it->pi];
    it->pi++;
    return 0;
}

void evs_streams_close(evs_stream_iter *it)
{
    if (!it) return;
    evs__names_unref(it->snap);
    free(it->fresh);
    free(it->prefix);
    free(it);
}
