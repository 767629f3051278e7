/*
 * streams.c — the stream table: every stream's name, hash and versions, in
 * memory (it grows with the number of streams, not of events), persisted in
 * the stream table file at each checkpoint.
 *
 * STREAMS FILE (derived data) "streams.idx", or "streams.<generation, 20
 * digits>.idx" once it has been rewritten: checkpoint.idx names the
 * generation. A sequence of chunks, each appended by one checkpoint and
 * holding the streams that changed since the previous one; when a name
 * appears in several chunks the last one wins. Only the first `streams_len`
 * bytes named by checkpoint.idx are valid: a chunk written by a checkpoint
 * that did not complete is ignored and cut off. When the file grows past
 * twice the size of the live table, the next checkpoint rewrites it as one
 * chunk into the next generation's file (temp file + rename); the old file
 * goes once a checkpoint.idx naming the new one is durable.
 *
 * WHO WRITES IT: the index thread, from the job the writer handed over at a
 * freeze. The writer records each stream a group commit changes
 * (evs__changes_note: one entry per stream, holding its latest version and
 * last position); a job carries those of its checkpoint interval, so a chunk
 * states every stream as of the job's covered position and never later (the
 * live fields may be ahead by then). The index thread
 * keeps what it has persisted in each stream's ck_version / ck_last, which is
 * what a rewrite (compaction) writes; first_pos is read from the stream
 * itself, as it never changes once the version is above 0.
 *   chunk header (32 bytes):
 *     0  8  magic "EVSSTRM\0"
 *     8  4  format version (1)
 *    12  4  number of entries
 *    16  8  covered position (the checkpoint that wrote it)
 *    24  8  payload bytes
 *   payload, per entry: u8 name length L, L bytes name, u64 version,
 *     u64 first position, u64 last position
 *   trailer: u64 XXH3-64 of header + payload
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "store/store_int.h"

static const uint8_t chunk_magic[8] = {'E', 'V', 'S', 'S', 'T', 'R', 'M', 0};
#define CHUNK_HDR 32u

void evs__stream_hash(const char *name, size_t len, uint8_t out[16])
{
    XXH128_hash_t h = XXH3_128bits(name, len);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(out, c.digest, 16);
}

static size_t slot_of(const evs_stream_table *t, const char *name, size_t len)
{
    return (size_t)XXH3_64bits(name, len) & (t->cap - 1);
}

evs_stream *evs__streams_find(evs_stream_table *t, const char *name, size_t len)
{
    if (!t->cap) return NULL;
    for (size_t i = slot_of(t, name, len);; i = (i + 1) & (t->cap - 1)) {
        evs_stream *e = t->slots[i];
        if (!e) return NULL;
        if (e->name_len == len && memcmp(e->name, name, len) == 0) return e;
    }
}

static int grow_to(evs_stream_table *t, size_t cap)
{
    evs_stream **slots = evs__big_zalloc(cap * sizeof *slots);
    if (!slots) return EVS_ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        evs_stream *e = t->slots[i];
        if (!e) continue;
        size_t j = (size_t)XXH3_64bits(e->name, e->name_len) & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = e;
    }
    evs__big_free(t->slots, t->cap * sizeof *t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

static int grow(evs_stream_table *t) { return grow_to(t, t->cap ? t->cap * 2 : 1024); }

#define ARENA_FIRST ((size_t)4 << 10)   /* the first block; each next one twice as big ... */
#define ARENA_MAX ((size_t)1 << 20)     /* ... up to this */

/* A zeroed stream with room for a name of len bytes and its NUL, from the arena. */
static evs_stream *arena_new(evs_stream_table *t, size_t len)
{
    size_t size = (sizeof(evs_stream) + len + 1 + 7) & ~(size_t)7;
    evs_stream_blk *b = t->arena;
    if (!b || b->cap - b->used < size) {
        size_t cap = b ? EVS_MIN(b->cap * 2, ARENA_MAX) : ARENA_FIRST;
        if (cap < size) cap = size;
        evs_stream_blk *nb = malloc(sizeof *nb + cap);
        if (!nb) return NULL;
        nb->prev = b;
        nb->used = 0;
        nb->cap = cap;
        t->arena = b = nb;
    }
    evs_stream *e = (evs_stream *)(void *)(b->mem + b->used);
    b->used += size;
    memset(e, 0, size);
    return e;
}

/* The caller holds tbl_lock for writing (readers probe the same slots). */
int evs__streams_insert(evs_stream_table *t, const char *name, size_t len, evs_stream **out)
{
    if ((t->count + 1) * 4 > t->cap * 3) {  /* keep the load under 3/4 */
        int rc = grow(t);
        if (rc) return rc;
    }
    if (t->nfresh == t->freshcap) {
        size_t cap = t->freshcap ? t->freshcap * 2 : 1024;
        evs_stream **f = realloc(t->fresh, cap * sizeof *f);
        if (!f) return EVS_ENOMEM;
        t->fresh = f;
        t->freshcap = cap;
    }
    evs_stream *e = arena_new(t, len);
    if (!e) return EVS_ENOMEM;
    t->fresh[t->nfresh++] = e;
    memcpy(e->name, name, len);
    e->name_len = (uint16_t)len;
    size_t i = slot_of(t, name, len);
    while (t->slots[i]) i = (i + 1) & (t->cap - 1);
    t->slots[i] = e;
    t->count++;
    *out = e;
    return 0;
}

void evs__streams_free(evs_stream_table *t)
{
    while (t->arena) {
        evs_stream_blk *b = t->arena;
        t->arena = b->prev;
        free(b);
    }
    evs__big_free(t->slots, t->cap * sizeof *t->slots);
    evs__names_unref(t->sorted);
    free(t->fresh);
    memset(t, 0, sizeof *t);
}

/* ---- the name order ---- */

int evs__name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c) return c;
    return alen < blen ? -1 : alen > blen;
}

static int cmp_stream_ptr(const void *x, const void *y)
{
    const evs_stream *a = *(evs_stream *const *)x, *b = *(evs_stream *const *)y;
    return evs__name_cmp(a->name, a->name_len, b->name, b->name_len);
}

void evs__names_unref(evs_name_index *ni)
{
    if (ni && atomic_fetch_sub(&ni->refs, 1) == 1) free(ni);
}

int evs__streams_sort_due(evs_store *s)
{
    pthread_rwlock_rdlock(&s->tbl_lock);
    int due = s->streams.nfresh > EVS_FRESH_SORT;
    pthread_rwlock_unlock(&s->tbl_lock);
    return due;
}

/* Names never change and streams are never freed while the store is open, so
 * the sort and the merge need no lock: only taking the fresh streams and
 * installing the result do. Streams inserted meanwhile stay fresh: only this
 * function removes from the front of `fresh`, and inserts append. */
int evs__streams_sort(evs_store *s)
{
    evs_stream_table *t = &s->streams;
    int rc = 0;
    evs_stream **add = NULL;
    evs_name_index *old = NULL, *ni = NULL;
    pthread_mutex_lock(&s->sort_mu);
    pthread_rwlock_rdlock(&s->tbl_lock);
    size_t d = t->nfresh;
    if (d && (add = malloc(d * sizeof *add)) != NULL) memcpy(add, t->fresh, d * sizeof *add);
    if ((old = t->sorted) != NULL) atomic_fetch_add(&old->refs, 1);
    pthread_rwlock_unlock(&s->tbl_lock);
    if (d == 0) goto out;
    if (!add) { rc = EVS_ENOMEM; goto out; }
    qsort(add, d, sizeof *add, cmp_stream_ptr);
    size_t n0 = old ? old->n : 0;
    ni = malloc(sizeof *ni + (n0 + d) * sizeof ni->v[0]);
    if (!ni) { rc = EVS_ENOMEM; goto out; }
    atomic_init(&ni->refs, 1);
    ni->n = n0 + d;
    for (size_t i = 0, j = 0, k = 0; k < ni->n; k++) {
        if (j == d || (i < n0 && cmp_stream_ptr(&old->v[i], &add[j]) < 0)) ni->v[k] = old->v[i++];
        else ni->v[k] = add[j++];
    }
    pthread_rwlock_wrlock(&s->tbl_lock);
    evs_name_index *prev = t->sorted;  /* == old: only this function replaces it */
    t->sorted = ni;
    memmove(t->fresh, t->fresh + d, (t->nfresh - d) * sizeof *t->fresh);
    t->nfresh -= d;
    pthread_rwlock_unlock(&s->tbl_lock);
    ni = NULL;
    evs__names_unref(prev);
out:
    evs__names_unref(old);
    free(ni);
    free(add);
    pthread_mutex_unlock(&s->sort_mu);
    return rc;
}

void evs__streams_fname(uint64_t gen, char out[EVS_STREAMS_FNAME_MAX])
{
    if (gen == 0) snprintf(out, EVS_STREAMS_FNAME_MAX, "%s", EVS_STREAMS_FILE);
    else snprintf(out, EVS_STREAMS_FNAME_MAX, "streams.%020" PRIu64 ".idx", gen);
}

int evs__streams_is_fname(const char *fname, uint64_t *gen)
{
    if (!strcmp(fname, EVS_STREAMS_FILE)) { *gen = 0; return 1; }
    if (strlen(fname) != 32 || strncmp(fname, "streams.", 8) != 0 || strcmp(fname + 28, ".idx") != 0) return 0;
    uint64_t v = 0;
    for (int i = 8; i < 28; i++) {
        if (fname[i] < '0' || fname[i] > '9') return 0;
        uint64_t d = (uint64_t)(fname[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    *gen = v;
    return v > 0;
}

int evs__streams_load(evs_store *s, uint64_t gen, uint64_t valid_len)
{
    char path[4096], fname[EVS_STREAMS_FNAME_MAX];
    evs_file *f = NULL;
    evs__streams_fname(gen, fname);
    int rc = evs__store_path(s, path, sizeof path, fname);
    if (rc) return rc;
    if (valid_len == 0) return 0;
    rc = s->vfs->open(s->vfs, path, EVS_O_RDONLY, &f);
    if (rc) return rc == -ENOENT ? EVS_ECORRUPT : rc;
    rc = evs__streams_load_from(s, f, valid_len);
    evs__fclose(f);
    return rc;
}

int evs__streams_load_from(evs_store *s, evs_file *f, uint64_t valid_len)
{
    uint8_t *buf = NULL;
    int rc = 0;
    if (valid_len == 0) return 0;
    buf = malloc(valid_len);
    if (!buf) { rc = EVS_ENOMEM; goto out; }
    size_t got = 0;
    if ((rc = evs__fread(f, buf, valid_len, 0, &got)) != 0) goto out;
    if (got != valid_len) { rc = EVS_ECORRUPT; goto out; }
    {
        /* size the table for every entry first: growing while inserting
         * names in the writer's slot order clusters badly and rehashes.
         * Checksums are not checked yet, so a count is believed only as far
         * as the chunk's payload can hold entries (26 bytes at least each):
         * a damaged count must not size the table (fuzz_index found a
         * 64 GiB allocation). */
        uint64_t total = 0;
        for (uint64_t off = 0; valid_len - off >= CHUNK_HDR + 8;) {
            uint64_t n = evs__get32(buf + off + 12), plen = evs__get64(buf + off + 24);
            if (plen > valid_len - off - CHUNK_HDR - 8) break;
            total += EVS_MIN(n, plen / 26);
            off += CHUNK_HDR + plen + 8;
        }
        size_t cap = s->streams.cap ? s->streams.cap : 1024;
        while (cap < (s->streams.count + total) * 2 && cap < ((size_t)1 << 34)) cap *= 2;
        if (cap > s->streams.cap && (rc = grow_to(&s->streams, cap)) != 0) goto out;
    }
    for (uint64_t off = 0; off < valid_len;) {
        if (valid_len - off < CHUNK_HDR + 8 || memcmp(buf + off, chunk_magic, 8) != 0) { rc = EVS_ECORRUPT; goto out; }
        uint32_t n = evs__get32(buf + off + 12);
        uint64_t plen = evs__get64(buf + off + 24);
        if (plen > valid_len - off - CHUNK_HDR - 8) { rc = EVS_ECORRUPT; goto out; }
        /* the checksum before the version: a flipped bit in the version of
         * this derived file is damage (rebuild), not a newer format */
        if (XXH3_64bits(buf + off, CHUNK_HDR + plen) != evs__get64(buf + off + CHUNK_HDR + plen)) {
            rc = EVS_ECORRUPT;
            goto out;
        }
        if (evs__get32(buf + off + 8) > EVS_FORMAT_VERSION) {
            evs__logf(&s->log, EVS_LOG_ERROR, "%s was written by format version %u; this build reads up to %u",
                      "the stream table", evs__get32(buf + off + 8), EVS_FORMAT_VERSION);
            rc = EVS_EFORMAT;
            goto out;
        }
        const uint8_t *p = buf + off + CHUNK_HDR, *end = p + plen;
        for (uint32_t i = 0; i < n; i++) {
            if (p >= end || (size_t)(end - p) < 1u + p[0] + 24u || p[0] == 0) { rc = EVS_ECORRUPT; goto out; }
            size_t len = p[0];
            const char *name = (const char *)p + 1;
            evs_stream *e = evs__streams_find(&s->streams, name, len);
            if (!e && (rc = evs__streams_insert(&s->streams, name, len, &e)) != 0) goto out;
            p += 1 + len;
            e->version = e->pending = e->ck_version = evs__get64(p);
            e->first_pos = evs__get64(p + 8);
            e->last_pos = e->pending_last_pos = e->ck_last = evs__get64(p + 16);
            p += 24;
        }
        off += CHUNK_HDR + plen + 8;
    }
    uint64_t live = 0, live_bytes = 0;
    for (size_t i = 0; i < s->streams.cap; i++) {
        evs_stream *e = s->streams.slots[i];
        if (!e || !e->version) continue;
        live_bytes += 25u + e->name_len;
        if (e->name[0] != '$') live++;
    }
    atomic_store(&s->nstreams, live);
    s->streams_live_bytes = live_bytes;
out:
    free(buf);
    if (rc == EVS_ECORRUPT)
        evs__logf(&s->log, EVS_LOG_WARN, "the stream table is damaged; indexes will be rebuilt from the log");
    return rc;
}

int evs__changes_note(evs_changes *c, evs_stream *st, uint64_t version, uint64_t last_pos)
{
    if (st->chg_idx < c->n && c->v[st->chg_idx].st == st) {  /* already listed since the last freeze */
        c->v[st->chg_idx].version = version;
        c->v[st->chg_idx].last_pos = last_pos;
        return 0;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        if (cap > UINT32_MAX) return EVS_ENOMEM;
        evs_stream_change *v = realloc(c->v, cap * sizeof *v);
        if (!v) return EVS_ENOMEM;
        c->v = v;
        c->cap = cap;
    }
    st->chg_idx = (uint32_t)c->n;
    c->v[c->n++] = (evs_stream_change){st, version, last_pos};
    return 0;
}

/* Append one entry (the stream as persisted: ck_version, ck_last) to a chunk being built. */
static int chunk_add(evs_buf *b, const evs_stream *e)
{
    uint8_t rec[1 + 255 + 24];
    rec[0] = (uint8_t)e->name_len;
    memcpy(rec + 1, e->name, e->name_len);
    evs__put64(rec + 1 + e->name_len, e->ck_version);
    evs__put64(rec + 9 + e->name_len, e->first_pos);
    evs__put64(rec + 17 + e->name_len, e->ck_last);
    return evs__buf_append(b, rec, 25u + e->name_len);
}

/* Header and trailer around the n entries in b after CHUNK_HDR bytes. */
static int chunk_seal(evs_buf *b, uint64_t covered, uint32_t n)
{
    memcpy(b->p, chunk_magic, 8);
    evs__put32(b->p + 8, EVS_FORMAT_VERSION);
    evs__put32(b->p + 12, n);
    evs__put64(b->p + 16, covered);
    evs__put64(b->p + 24, b->len - CHUNK_HDR);
    uint8_t sum[8];
    evs__put64(sum, XXH3_64bits(b->p, b->len));
    return evs__buf_append(b, sum, 8);
}

#define SWEEP_SLOTS 4096u  /* table slots visited per tbl_lock hold in a rewrite */

/* Every persisted stream, for a rewrite. The writer keeps committing: the
 * table is walked a few thousand slots per read-lock hold; a resize between
 * two holds moves streams between slots, so the walk starts over. Streams
 * inserted meanwhile without a resize can only be newer than the job (they
 * have ck_version 0) and are not wanted. */
static int encode_all(evs_store *s, evs_buf *b, uint32_t *n)
{
    int rc = 0;
    for (;;) {
        b->len = CHUNK_HDR;
        *n = 0;
        pthread_rwlock_rdlock(&s->tbl_lock);
        size_t cap = s->streams.cap;
        pthread_rwlock_unlock(&s->tbl_lock);
        int moved = 0;
        for (size_t i = 0; i < cap && !moved && rc == 0; i += SWEEP_SLOTS) {
            pthread_rwlock_rdlock(&s->tbl_lock);
            if (s->streams.cap != cap) moved = 1;
            for (size_t j = i; !moved && j < cap && j < i + SWEEP_SLOTS && rc == 0; j++) {
                const evs_stream *e = s->streams.slots[j];
                if (!e || !e->ck_version) continue;
                rc = chunk_add(b, e);
                (*n)++;
            }
            pthread_rwlock_unlock(&s->tbl_lock);
        }
        if (rc || !moved) return rc;
    }
}

/* Index thread, inside a checkpoint: persist the streams the job changed
 * (or, when the file has grown past twice the live size, every stream). On
 * success s->streams_file_len is the new valid length.
 *
 * A rewrite goes to a new file, of the next generation: the file the last
 * checkpoint.idx names stays as it is until a checkpoint.idx naming the new
 * one is durable (the index thread then removes it, indexer.c). So at every
 * moment, crash or not, the checkpoint on disk names a file that holds what
 * it says, and a follower opening meanwhile finds it (docs/DESIGN.md). */
int evs__streams_save(evs_store *s, uint64_t covered, const evs_changes *ch)
{
    char path[4096], tmp[4096], fname[EVS_STREAMS_FNAME_MAX];
    evs_buf b = {0};
    evs_file *f = NULL;
    uint32_t n = 0;
    int rc = 0;
    /* the streams' states as of `covered` (one change per stream) */
    for (size_t i = 0; i < ch->n; i++) {
        evs_stream *e = ch->v[i].st;
        if (!e->ck_version && ch->v[i].version) s->streams_live_bytes += 25u + e->name_len;
        e->ck_version = ch->v[i].version;
        e->ck_last = ch->v[i].last_pos;
    }
    int rewrite = s->streams_file_len > 2 * s->streams_live_bytes + (1u << 20);
    evs__streams_fname(rewrite ? s->streams_gen + 1 : s->streams_gen, fname);
    if ((rc = evs__store_path(s, path, sizeof path, fname)) != 0) goto out;
    if ((rc = evs__buf_reserve(&b, CHUNK_HDR)) != 0) goto out;
    b.len = CHUNK_HDR;
    if (rewrite) {
        if ((rc = encode_all(s, &b, &n)) != 0) goto out;
    } else {
        for (size_t i = 0; i < ch->n && rc == 0; i++, n++) rc = chunk_add(&b, ch->v[i].st);
        if (rc) goto out;
    }
    if ((rc = chunk_seal(&b, covered, n)) != 0) goto out;
    if (rewrite) {
        if ((rc = evs__store_path(s, tmp, sizeof tmp, EVS_STREAMS_FILE ".tmp")) != 0) goto out;
        if ((rc = s->vfs->open(s->vfs, tmp, EVS_O_RDWR | EVS_O_CREATE | EVS_O_TRUNC, &f)) != 0) goto out;
        if ((rc = evs__fwrite(f, b.p, b.len, 0, NULL)) != 0) goto out;
        if ((rc = f->vfs->datasync(f)) != 0) goto out;
        evs__fclose(f);
        f = NULL;
        if ((rc = s->vfs->rename(s->vfs, tmp, path)) != 0) goto out;
        if ((rc = s->vfs->sync_dir(s->vfs, s->dir)) != 0) goto out;
        s->streams_old_gen = s->streams_gen;
        s->streams_gen++;
        s->streams_file_len = b.len;
    } else {
        int existed = s->vfs->exists(s->vfs, path);
        if ((rc = s->vfs->open(s->vfs, path, EVS_O_RDWR | EVS_O_CREATE, &f)) != 0) goto out;
        /* cut off anything a failed checkpoint left after the valid part */
        if ((rc = f->vfs->truncate(f, s->streams_file_len)) != 0) goto out;
        if ((rc = evs__fwrite(f, b.p, b.len, s->streams_file_len, NULL)) != 0) goto out;
        if ((rc = f->vfs->datasync(f)) != 0) goto out;
        if (existed != 1 && (rc = s->vfs->sync_dir(s->vfs, s->dir)) != 0) goto out;
        s->streams_file_len += b.len;
    }
out:
    evs__fclose(f);
    evs__buf_free(&b);
    return rc;
}
