/*
 * streams.c — the stream table: every stream's name, hash and versions, in
 * memory (it grows with the number of streams, not of events), persisted in
 * "streams.idx" at each checkpoint.
 *
 * STREAMS FILE "streams.idx" (derived data): a sequence of chunks, each
 * appended by one checkpoint and holding the streams that changed since the
 * previous one; when a name appears in several chunks the last one wins.
 * Only the first `streams_len` bytes named by checkpoint.idx are valid: a
 * chunk written by a checkpoint that did not complete is ignored and cut off.
 * When the file grows past twice the size of the live table, the next
 * checkpoint rewrites it as one chunk (temp file + rename).
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
    evs_stream **slots = calloc(cap, sizeof *slots);
    if (!slots) return EVS_ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        evs_stream *e = t->slots[i];
        if (!e) continue;
        size_t j = (size_t)XXH3_64bits(e->name, e->name_len) & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = e;
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

static int grow(evs_stream_table *t) { return grow_to(t, t->cap ? t->cap * 2 : 1024); }

/* The caller holds tbl_lock for writing (readers probe the same slots). */
int evs__streams_insert(evs_stream_table *t, const char *name, size_t len, evs_stream **out)
{
    if ((t->count + 1) * 4 > t->cap * 3) {  /* keep the load under 3/4 */
        int rc = grow(t);
        if (rc) return rc;
    }
    evs_stream *e = calloc(1, sizeof *e + len + 1);
    if (!e) return EVS_ENOMEM;
    memcpy(e->name, name, len);
    e->name_len = (uint16_t)len;
    evs__stream_hash(name, len, e->hash);
    size_t i = slot_of(t, name, len);
    while (t->slots[i]) i = (i + 1) & (t->cap - 1);
    t->slots[i] = e;
    t->count++;
    *out = e;
    return 0;
}

void evs__streams_free(evs_stream_table *t)
{
    for (size_t i = 0; i < t->cap; i++)
        free(t->slots[i]);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* Read streams.idx up to valid_len into the table (at open, before any reader). */
int evs__streams_load(evs_store *s, uint64_t valid_len)
{
    char path[4096];
    evs_file *f = NULL;
    uint8_t *buf = NULL;
    int rc = evs__store_path(s, path, sizeof path, EVS_STREAMS_FILE);
    if (rc) return rc;
    if (valid_len == 0) return 0;
    rc = s->vfs->open(s->vfs, path, EVS_O_RDONLY, &f);
    if (rc) return rc == -ENOENT ? EVS_ECORRUPT : rc;
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
                      EVS_STREAMS_FILE, evs__get32(buf + off + 8), EVS_FORMAT_VERSION);
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
            e->version = e->pending = evs__get64(p);
            e->first_pos = evs__get64(p + 8);
            e->last_pos = e->pending_last_pos = evs__get64(p + 16);
            p += 24;
        }
        off += CHUNK_HDR + plen + 8;
    }
    uint64_t live = 0;
    for (size_t i = 0; i < s->streams.cap; i++)
        if (s->streams.slots[i] && s->streams.slots[i]->version && s->streams.slots[i]->name[0] != '$') live++;
    atomic_store(&s->nstreams, live);
out:
    free(buf);
    evs__fclose(f);
    if (rc == EVS_ECORRUPT)
        evs__logf(&s->log, EVS_LOG_WARN, "%s is damaged; indexes will be rebuilt from the log", EVS_STREAMS_FILE);
    return rc;
}

static int encode_chunk(evs_store *s, uint64_t covered, int all, evs_buf *b)
{
    int rc = evs__buf_reserve(b, CHUNK_HDR);
    if (rc) return rc;
    b->len = CHUNK_HDR;
    uint32_t n = 0;
    for (size_t i = 0; i < s->streams.cap; i++) {
        evs_stream *e = s->streams.slots[i];
        if (!e || !e->version || (!all && !e->dirty)) continue;
        uint8_t rec[1 + 255 + 24];
        rec[0] = (uint8_t)e->name_len;
        memcpy(rec + 1, e->name, e->name_len);
        evs__put64(rec + 1 + e->name_len, e->version);
        evs__put64(rec + 9 + e->name_len, e->first_pos);
        evs__put64(rec + 17 + e->name_len, e->last_pos);
        if ((rc = evs__buf_append(b, rec, 25u + e->name_len)) != 0) return rc;
        n++;
    }
    memcpy(b->p, chunk_magic, 8);
    evs__put32(b->p + 8, EVS_FORMAT_VERSION);
    evs__put32(b->p + 12, n);
    evs__put64(b->p + 16, covered);
    evs__put64(b->p + 24, b->len - CHUNK_HDR);
    uint8_t sum[8];
    evs__put64(sum, XXH3_64bits(b->p, b->len));
    return evs__buf_append(b, sum, 8);
}

/* Writer thread, inside a checkpoint: persist the streams changed since the
 * last one. On success s->streams_file_len is the new valid length. */
int evs__streams_save(evs_store *s, uint64_t covered)
{
    char path[4096], tmp[4096];
    evs_buf b = {0};
    evs_file *f = NULL;
    uint64_t live_bytes = 0;
    for (size_t i = 0; i < s->streams.cap; i++)
        if (s->streams.slots[i] && s->streams.slots[i]->version)
            live_bytes += 25u + s->streams.slots[i]->name_len;
    int rewrite = s->streams_file_len > 2 * live_bytes + (1u << 20);
    int rc = evs__store_path(s, path, sizeof path, EVS_STREAMS_FILE);
    if (rc) return rc;
    if ((rc = encode_chunk(s, covered, rewrite, &b)) != 0) goto out;
    if (rewrite) {
        if ((rc = evs__store_path(s, tmp, sizeof tmp, EVS_STREAMS_FILE ".tmp")) != 0) goto out;
        if ((rc = s->vfs->open(s->vfs, tmp, EVS_O_RDWR | EVS_O_CREATE | EVS_O_TRUNC, &f)) != 0) goto out;
        if ((rc = evs__fwrite(f, b.p, b.len, 0, NULL)) != 0) goto out;
        if ((rc = f->vfs->datasync(f)) != 0) goto out;
        evs__fclose(f);
        f = NULL;
        if ((rc = s->vfs->rename(s->vfs, tmp, path)) != 0) goto out;
        if ((rc = s->vfs->sync_dir(s->vfs, s->dir)) != 0) goto out;
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
    for (size_t i = 0; i < s->streams.cap; i++)
        if (s->streams.slots[i]) s->streams.slots[i]->dirty = 0;
out:
    evs__fclose(f);
    evs__buf_free(&b);
    return rc;
}
