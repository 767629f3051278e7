/*
 * segment.c — segment files and their offsets indexes, as the store sees them.
 *
 * Invariants: s->segs is sorted by base and contiguous (segs[i+1]->base ==
 * segs[i]->base + segs[i]->count once segs[i] is sealed); only the last
 * segment is written; a segment object lives until the store closes, so a
 * reader may keep using a pointer after dropping seg_lock.
 *
 * OFFSETS FILE "<base:20>.offsets.idx" (derived data):
 *   0  8  magic "EVSOFFS\0"
 *   8  4  format version (1)
 *  12  4  reserved, zero
 *  16  8  base position (same as the segment)
 *  24  8  salt (same as the segment: an offsets file of another segment is refused)
 *  32 ..  u32 per position: the file offset of record (base + i) in the segment
 * Entries up to the checkpoint's position are fsynced; later ones are
 * rewritten by recovery. A wrong entry can never serve wrong data: every
 * record read checks that it holds the position asked for.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/store_int.h"

static const uint8_t offs_magic[8] = {'E', 'V', 'S', 'O', 'F', 'F', 'S', 0};

int evs__store_path(const evs_store *s, char *out, size_t cap, const char *name)
{
    return evs__path(out, cap, s->dir, name);
}

static void seg_names(uint64_t base, char seg[32], char offs[48])
{
    snprintf(seg, 32, "%020" PRIu64 ".seg", base);
    if (offs)
        snprintf(offs, 48, "%020" PRIu64 ".offsets.idx", base);
}

static void offsets_header(const evs_segment *g, uint8_t hdr[EVS_OFFSETS_HDR_SIZE])
{
    memset(hdr, 0, EVS_OFFSETS_HDR_SIZE);
    memcpy(hdr, offs_magic, 8);
    evs__put32(hdr + 8, EVS_FORMAT_VERSION);
    evs__put64(hdr + 16, g->base);
    evs__put64(hdr + 24, g->salt);
}

int evs__offsets_open(evs_store *s, evs_segment *g, int create)
{
    char oname[48], path[4096];
    seg_names(g->base, g->name, oname);
    int rc = evs__store_path(s, path, sizeof path, oname);
    if (rc) return rc;
    uint8_t want[EVS_OFFSETS_HDR_SIZE], have[EVS_OFFSETS_HDR_SIZE];
    offsets_header(g, want);
    if (create) {
        /* a fresh (or rebuilt) offsets file: header only; entries follow */
        rc = s->vfs->open(s->vfs, path, EVS_O_RDWR | EVS_O_CREATE | EVS_O_TRUNC, &g->offsets);
        if (rc) return rc;
        return evs__fwrite(g->offsets, want, sizeof want, 0, NULL);
    }
    rc = s->vfs->open(s->vfs, path, s->read_only ? EVS_O_RDONLY : EVS_O_RDWR, &g->offsets);
    if (rc) return rc;
    size_t got = 0;
    rc = evs__fread(g->offsets, have, sizeof have, 0, &got);
    if (rc == 0 && (got != sizeof have || memcmp(have, want, sizeof have) != 0))
        rc = EVS_ECORRUPT;
    if (rc) {
        evs__fclose(g->offsets);
        g->offsets = NULL;
    }
    return rc;
}

int evs__offsets_read(evs_store *s, evs_segment *g, uint64_t position, uint64_t *offset)
{
    uint8_t b[4];
    size_t got = 0;
    int rc = evs__fread(g->offsets, b, 4, EVS_OFFSETS_HDR_SIZE + 4 * (position - g->base), &got);
    if (rc) return rc;
    if (got != 4)
        return EVS_CORRUPT_HERE(&s->log, g->name, position, "offsets index has no entry for position");
    *offset = evs__get32(b);
    return 0;
}

int evs__offsets_write(evs_store *s, evs_segment *g, uint64_t first_position,
                       const uint32_t *offs, size_t n)
{
    if (n == 0) return 0;
    uint8_t stackbuf[4096];
    uint8_t *b = n * 4 <= sizeof stackbuf ? stackbuf : malloc(n * 4);
    if (!b) return EVS_ENOMEM;
    for (size_t i = 0; i < n; i++)
        evs__put32(b + 4 * i, offs[i]);
    int rc = evs__fwrite(g->offsets, b, n * 4, EVS_OFFSETS_HDR_SIZE + 4 * (first_position - g->base), NULL);
    if (b != stackbuf) free(b);
    return rc;
}

int evs__seg_create(evs_store *s, uint64_t base, evs_segment **out)
{
    char path[4096];
    evs_segment *g = calloc(1, sizeof *g);
    if (!g) return EVS_ENOMEM;
    g->base = base;
    evs__random(&g->salt, sizeof g->salt);
    seg_names(base, g->name, NULL);
    int rc = evs__store_path(s, path, sizeof path, g->name);
    if (rc) goto out;
    /* the offsets file first: whoever sees the segment (a follower, or
     * recovery after a crash) also finds its offsets file */
    if ((rc = evs__offsets_open(s, g, 1)) != 0) goto out;
    /* EXCL: a segment is created exactly once; a leftover of the same name
     * means recovery did not run or two writers exist */
    rc = s->vfs->open(s->vfs, path, EVS_O_RDWR | EVS_O_CREATE | EVS_O_EXCL, &g->file);
    if (rc) goto out;
    uint8_t hdr[EVS_SEG_HDR_SIZE];
    evs_seg_hdr h = {.base = base, .salt = g->salt, .created_us = evs__now_us()};
    evs__seg_hdr_encode(hdr, &h);
    if ((rc = evs__fwrite(g->file, hdr, sizeof hdr, 0, NULL)) != 0) goto out;
    if ((rc = g->file->vfs->sync(g->file)) != 0) goto out;
    if ((rc = s->vfs->sync_dir(s->vfs, s->dir)) != 0) goto out;
    atomic_store(&g->end, EVS_SEG_HDR_SIZE);
    *out = g;
    return 0;
out:
    evs__seg_close(g);
    return rc;
}

int evs__seg_open(evs_store *s, const char *name, uint64_t base, int writable, evs_segment **out)
{
    char path[4096];
    uint8_t hdr[EVS_SEG_HDR_SIZE];
    evs_seg_hdr h;
    size_t got = 0;
    evs_segment *g = calloc(1, sizeof *g);
    if (!g) return EVS_ENOMEM;
    snprintf(g->name, sizeof g->name, "%s", name);
    g->base = base;
    int rc = evs__store_path(s, path, sizeof path, name);
    if (rc) goto out;
    rc = s->vfs->open(s->vfs, path, writable ? EVS_O_RDWR : EVS_O_RDONLY, &g->file);
    if (rc) goto out;
    rc = evs__fread(g->file, hdr, sizeof hdr, 0, &got);
    if (rc) goto out;
    if (got < sizeof hdr) {
        rc = EVS_CORRUPT_HERE(&s->log, name, 0, "segment header is incomplete");
        goto out;
    }
    rc = evs__seg_hdr_decode(hdr, &h);
    if (rc == EVS_EFORMAT) {
        evs__logf(&s->log, EVS_LOG_ERROR, "%s was written by format version %u; this build reads up to %u",
                  name, h.version, EVS_FORMAT_VERSION);
        goto out;
    }
    if (rc || h.base != base) {
        rc = EVS_CORRUPT_HERE(&s->log, name, 0, "segment header is invalid or names another base position");
        goto out;
    }
    g->salt = h.salt;
    atomic_store(&g->end, EVS_SEG_HDR_SIZE);
    *out = g;
    return 0;
out:
    evs__seg_close(g);
    return rc;
}

/* Reopen g's file read-write: a segment that became the last one after the
 * segments behind it were removed (torn creation, repair) is written again. */
int evs__seg_make_writable(evs_store *s, evs_segment *g)
{
    char path[4096];
    evs_file *f = NULL;
    int rc = evs__store_path(s, path, sizeof path, g->name);
    if (rc == 0) rc = s->vfs->open(s->vfs, path, EVS_O_RDWR, &f);
    if (rc) return rc;
    evs__fclose(g->file);
    g->file = f;
    return 0;
}

void evs__seg_close(evs_segment *g)
{
    if (!g) return;
    evs__fclose(g->file);
    evs__fclose(g->offsets);
    free(g);
}

int evs__seg_add(evs_store *s, evs_segment *g)
{
    pthread_rwlock_wrlock(&s->seg_lock);
    int rc = 0;
    if (s->nsegs == s->segcap) {
        size_t cap = s->segcap ? s->segcap * 2 : 16;
        evs_segment **n = realloc(s->segs, cap * sizeof *n);
        if (!n) { rc = EVS_ENOMEM; goto out; }
        s->segs = n;
        s->segcap = cap;
    }
    s->segs[s->nsegs++] = g;
out:
    pthread_rwlock_unlock(&s->seg_lock);
    return rc;
}

evs_segment *evs__seg_find(evs_store *s, uint64_t position)
{
    evs_segment *g = NULL;
    pthread_rwlock_rdlock(&s->seg_lock);
    size_t lo = 0, hi = s->nsegs;
    while (lo < hi) {  /* last segment with base <= position */
        size_t mid = (lo + hi) / 2;
        if (s->segs[mid]->base <= position) lo = mid + 1; else hi = mid;
    }
    if (lo > 0)
        g = s->segs[lo - 1];
    pthread_rwlock_unlock(&s->seg_lock);
    return g;
}

evs_segment *evs__seg_active(evs_store *s)
{
    pthread_rwlock_rdlock(&s->seg_lock);
    evs_segment *g = s->nsegs ? s->segs[s->nsegs - 1] : NULL;
    pthread_rwlock_unlock(&s->seg_lock);
    return g;
}

int evs__read_record(evs_store *s, evs_segment *g, uint64_t offset, uint64_t position,
                     evs_buf *buf, evs_rec *rec)
{
    /* one pread that usually covers the whole record; a second when it does not */
    size_t want = 1024, got = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        buf->len = 0;
        int rc = evs__buf_reserve(buf, want);
        if (rc) return rc;
        rc = evs__fread(g->file, buf->p, want, offset, &got);
        if (rc) return rc;
        evs_rec_status st = evs__rec_decode(buf->p, got, g->salt, rec);
        if (st == EVS_REC_OK) {
            if (rec->position != position)
                return EVS_CORRUPT_HERE(&s->log, g->name, offset, "record holds another position than its index says");
            buf->len = rec->size;
            return 0;
        }
        if (st == EVS_REC_SHORT && rec->size > got && got == want) {
            want = rec->size;
            continue;
        }
        break;
    }
    return EVS_CORRUPT_HERE(&s->log, g->name, offset, "record fails its checksum or framing");
}
