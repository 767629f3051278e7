/*
 * backup.c — evs_backup: a consistent snapshot of a live store as one
 * .tar.zst archive, full or incremental, without blocking appends.
 *
 * SNAPSHOT. Under tbl_lock (read) — the lock the writer holds while it
 * publishes a group commit (segment end, then `committed`) — and seg_lock
 * (read) inside it, we capture the committed position C and, for every
 * segment with base <= C + 1, its committed end. Lock order tbl_lock before
 * seg_lock is safe: nobody takes tbl_lock while holding seg_lock. Sealed
 * segments are immutable and the active one is append-only past its end, so
 * the bytes [0, end) of each captured segment are stable for as long as the
 * store is open (segments are never deleted or rewritten below their
 * committed end): the archive holds exactly positions 1..C (or since+1..C,
 * via whole segments), while the writer keeps appending.
 *
 * TWO PASSES. The manifest leads the archive (so restore can check the chain
 * before it extracts gigabytes), and it lists every file's XXH3-64, so each
 * file is read twice: the check pass hashes it and verifies every record in
 * it (segment header, framing, checksum, contiguous positions ending in a
 * COMMIT record — a backup never copies damage it could have seen); the copy
 * pass streams it into the archive, hashing again, and refuses if the bytes
 * differ from the first read. The second read mostly comes from the page
 * cache for recent segments; for a store much larger than memory the backup
 * costs two sequential reads of the data.
 *
 * OUTPUT. libarchive writes the tar stream (pax restricted, regular files,
 * mode 0644, mtime = snapshot time) into a callback that compresses it with
 * libzstd as a single frame with the content checksum on (libarchive's own
 * zstd filter cannot turn it on), and hands the compressed bytes to the
 * caller's write callback, or to the caller's fd through a libarchive "raw"
 * writer (so the library itself makes no file system call: src/ does file
 * I/O only through the vfs, and the fd belongs to the caller). A 16-byte
 * zstd skippable frame ends the file with the XXH3-64 of every byte before
 * it, so restore notices any changed byte, even one in a part of the zstd
 * frame (e.g. its window size) that would decompress to the same content.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <archive.h>
#include <archive_entry.h>
#include <xxhash.h>
#include <zstd.h>

#include "backup/backup_int.h"
#include "index/lsm_ext.h"
#include "store/store_int.h"

/* One segment captured by the snapshot. */
typedef struct bk_seg {
    evs_segment *g;              /* lives until the store closes */
    uint64_t end;                /* committed end at the snapshot: the bytes copied */
    uint64_t first, last;        /* positions held: first..last (last = first - 1: none) */
    uint64_t xxh3;               /* from the check pass */
} bk_seg;

/* One index file of the checkpoint copied with a full backup: from an open
 * file (a pinned run, streams.idx, an offsets file) or from memory. */
typedef struct bk_idx {
    char name[64];
    evs_file *f;                 /* not owned (pins and segments keep it open), unless own_f */
    int own_f;
    uint8_t *mem;                /* owned, when not from a file */
    uint64_t size;
    uint64_t xxh3;
} bk_idx;

/* Where compressed bytes go. */
typedef struct bk_out {
    const evs_backup_options *opt;   /* write callback, if any */
    struct archive *raw;         /* else: libarchive raw writer on the caller's fd */
    ZSTD_CCtx *z;                /* the compressor */
    uint8_t *zbuf;               /* its output buffer */
    size_t zcap;
    uint64_t written;            /* compressed bytes handed on */
    XXH3_state_t *hs;            /* XXH3-64 of them, for the trailer */
    int rc;                      /* first failure of the sink (sticky) */
} bk_out;

/* The whole operation. */
typedef struct bk_ctx {
    evs_store *s;
    evs_backup_options opt;      /* copied, defaults filled */
    evs_backup_info *info;       /* the caller's (never NULL inside: see evs_backup) */
    bk_seg *segs;                /* the selected segments */
    size_t nsegs;
    uint64_t committed;          /* C at the snapshot */
    uint64_t total;              /* bytes of the selected segments */
    uint64_t done;               /* bytes of the current phase */
    uint64_t events_total;       /* positions the selected segments hold */
    uint64_t events;             /* positions passed in the current phase */
    const char *phase;           /* "check" or "copy" */
    uint8_t *buf;                /* read buffer */
    size_t cap;
    XXH3_state_t *xs;
    bk_out out;
    /* the index checkpoint (full backups of a writable store) */
    evs__lsm_pinned *pins[2];       /* ids, streams: their runs stay while we copy */
    uint64_t idx_covered;        /* C of checkpoint.idx; 0: no indexes in the archive */
    bk_idx *ix;
    size_t nix, ixcap;
} bk_ctx;

void evs_backup_options_init(evs_backup_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->struct_size = sizeof *opt;
    opt->level = 3;
}

static int report(bk_ctx *k, uint64_t add)
{
    k->done += add;
    evs_progress p = {k->phase, k->done, k->total, k->events, k->events_total};
    if (k->opt.progress && k->opt.progress(k->opt.progress_ctx, &p) != 0)
        return evs__bk_fail(&k->s->log, k->info, -ECANCELED, "backup cancelled");
    return 0;
}

/* ---- snapshot ---- */

static int snapshot(bk_ctx *k, uint64_t since, uint64_t *store_salt)
{
    evs_store *s = k->s;
    int rc = 0;
    pthread_rwlock_rdlock(&s->tbl_lock);
    uint64_t c = atomic_load(&s->committed);
    pthread_rwlock_rdlock(&s->seg_lock);
    size_t m = 0;
    while (m < s->nsegs && s->segs[m]->base <= c + 1) m++;
    bk_seg *v = m ? calloc(m, sizeof *v) : NULL;
    if (m && !v) rc = EVS_ENOMEM;
    for (size_t i = 0; v && i < m; i++) {
        v[i].g = s->segs[i];
        v[i].end = atomic_load(&s->segs[i]->end);
    }
    *store_salt = s->nsegs ? s->segs[0]->salt : 0;
    pthread_rwlock_unlock(&s->seg_lock);
    pthread_rwlock_unlock(&s->tbl_lock);
    if (rc) return rc;
    k->committed = c;
    /* keep the segments holding positions after since, and an empty active
     * segment that starts after it (so a restore has the segment the writer
     * continues in, with its salt) */
    size_t n = 0;
    for (size_t i = 0; i < m; i++) {
        v[i].first = v[i].g->base;
        v[i].last = i + 1 < m ? v[i + 1].g->base - 1 : c;
        if (v[i].first > since || v[i].last > since) v[n++] = v[i];
    }
    k->segs = v;
    k->nsegs = n;
    for (size_t i = 0; i < n; i++) {
        k->total += v[i].end;
        k->events_total += v[i].last + 1 - v[i].first;
    }
    return 0;
}

/* ---- the index checkpoint ---- */

static int ix_add(bk_ctx *k, const char *name, evs_file *f, uint8_t *mem, uint64_t size)
{
    size_t nlen = strlen(name);
    if (nlen >= sizeof k->ix[0].name) { free(mem); return EVS_EINVAL; }
    if (k->nix == k->ixcap) {
        size_t cap = k->ixcap ? k->ixcap * 2 : 16;
        bk_idx *v = realloc(k->ix, cap * sizeof *v);
        if (!v) { free(mem); return EVS_ENOMEM; }
        k->ix = v;
        k->ixcap = cap;
    }
    bk_idx *x = &k->ix[k->nix++];
    memset(x, 0, sizeof *x);
    memcpy(x->name, name, nlen + 1);
    x->f = f;
    x->mem = mem;
    x->size = size;
    return 0;
}

static void ix_release(bk_ctx *k)
{
    for (size_t i = 0; i < k->nix; i++) {
        free(k->ix[i].mem);
        if (k->ix[i].own_f) evs__fclose(k->ix[i].f);
    }
    free(k->ix);
    k->ix = NULL;
    k->nix = k->ixcap = 0;
    for (int i = 0; i < 2; i++) {
        evs__lsm_unpin(k->pins[i]);
        k->pins[i] = NULL;
    }
    k->idx_covered = 0;
}

/* Does the stream table (open as f) hold, in exactly its first len bytes,
 * chunks the last of which was written by the checkpoint at c? */
static int streams_prefix_is(evs_file *f, uint64_t len, uint64_t c)
{
    uint64_t off = 0, last = 0;
    while (off < len) {
        uint8_t h[32];
        size_t got = 0;
        if (len - off < 40 || evs__fread(f, h, sizeof h, off, &got) != 0 || got != sizeof h ||
            memcmp(h, "EVSSTRM", 8) != 0)
            return 0;
        uint64_t plen = evs__get64(h + 24);
        if (plen > len - off - 40) return 0;
        last = evs__get64(h + 16);
        off += 32 + plen + 8;
    }
    return off == len && last == c;
}

/*
 * Before the segment snapshot: read checkpoint.idx (C), pin both indexes
 * (their manifests cover at least C: they are written before checkpoint.idx,
 * and at most the position committed now, which the snapshot cannot be
 * below) and open the stream table file of the generation it names,
 * checking that its first streams_len bytes are the chunks checkpoint.idx
 * names (a rewrite into the next generation, a checkpoint naming it and the
 * removal of the old file may all happen in between: the open fails or the
 * check does, then try again). The open file keeps the bytes we checked even
 * if it is removed later (POSIX), and appends only go past them. No lock is taken: the index thread and the
 * writer carry on. Nothing is captured (and the archive holds no index)
 * when there is no checkpoint yet or no consistent view is found.
 */
static int capture_indexes(bk_ctx *k)
{
    evs_store *s = k->s;
    char path[4096];
    int rc;
    if (s->read_only || !s->ids || !s->sidx) return 0;
    for (int attempt = 0; attempt < 16; attempt++) {
        uint8_t *ck = malloc(64);
        evs_file *f = NULL;
        size_t got = 0;
        if (!ck) return EVS_ENOMEM;
        if ((rc = evs__store_path(s, path, sizeof path, EVS_CHECKPOINT_FILE)) != 0) { free(ck); return rc; }
        rc = s->vfs->open(s->vfs, path, EVS_O_RDONLY, &f);
        if (rc == 0) rc = evs__fread(f, ck, 64, 0, &got);
        evs__fclose(f);
        f = NULL;
        if (rc || got != 64 || memcmp(ck, "EVSCKPT", 8) != 0 || evs__get64(ck + 56) != XXH3_64bits(ck, 56) ||
            evs__get64(ck + 16) == 0) {
            free(ck);  /* no (usable) checkpoint: the archive goes without indexes */
            return 0;
        }
        uint64_t c = evs__get64(ck + 16), slen = evs__get64(ck + 24);
        char sname[EVS_STREAMS_FNAME_MAX];  /* the stream table file of the generation it names */
        evs__streams_fname(evs__get64(ck + 48), sname);
        if ((rc = evs__lsm_pin(s->ids, &k->pins[0])) != 0 || (rc = evs__lsm_pin(s->sidx, &k->pins[1])) != 0) {
            free(ck);
            ix_release(k);
            return rc;
        }
        int ok = evs__lsm_pin_covered(k->pins[0]) >= c && evs__lsm_pin_covered(k->pins[1]) >= c;
        if (ok && slen) {
            ok = evs__store_path(s, path, sizeof path, sname) == 0 &&
                 s->vfs->open(s->vfs, path, EVS_O_RDONLY, &f) == 0 && streams_prefix_is(f, slen, c);
        }
        if (!ok) {
            evs__fclose(f);
            free(ck);
            ix_release(k);
            continue;
        }
        k->idx_covered = c;
        if ((rc = ix_add(k, EVS_CHECKPOINT_FILE, NULL, ck, 64)) != 0) { evs__fclose(f); goto fail; }
        if (slen) {
            if ((rc = ix_add(k, sname, f, NULL, slen)) != 0) { evs__fclose(f); goto fail; }
            k->ix[k->nix - 1].own_f = 1;
        }
        for (int i = 0; i < 2; i++) {
            char name[256];
            uint8_t *man = NULL;
            size_t mlen = 0;
            if ((rc = evs__lsm_pin_manifest(k->pins[i], name, sizeof name, &man, &mlen)) != 0 ||
                (rc = ix_add(k, name, NULL, man, mlen)) != 0)
                goto fail;
            for (size_t j = 0; j < evs__lsm_pin_nruns(k->pins[i]); j++) {
                evs_file *rf = NULL;
                uint64_t size = 0;
                if ((rc = evs__lsm_pin_run(k->pins[i], j, name, sizeof name, &rf, &size)) != 0 ||
                    (rc = ix_add(k, name, rf, NULL, size)) != 0)
                    goto fail;
            }
        }
        return 0;
    }
    evs__logf(&s->log, EVS_LOG_INFO, "backup: no stable index checkpoint found; the archive holds no indexes");
    return 0;
fail:
    ix_release(k);
    return rc;
}

/* After the segment snapshot: the offsets files of the segments holding
 * positions up to C (entries for positions after C are rebuilt by the
 * restored store's tail scan). */
static int capture_offsets(bk_ctx *k)
{
    for (size_t i = 0; k->idx_covered && i < k->nsegs; i++) {
        bk_seg *b = &k->segs[i];
        if (b->first > k->idx_covered) break;
        if (!b->g->offsets) { ix_release(k); return 0; }
        char name[64];
        uint64_t upto = EVS_MIN(b->last, k->idx_covered);
        snprintf(name, sizeof name, "%020" PRIu64 ".offsets.idx", b->g->base);
        int rc = ix_add(k, name, b->g->offsets, NULL, EVS_OFFSETS_HDR_SIZE + 4 * (upto + 1 - b->first));
        if (rc) return rc;
    }
    return 0;
}

/* Hash index file x (both passes); a: the archive in the copy pass, else NULL. */
static int ix_pass(bk_ctx *k, struct archive *a, struct archive_entry *e, bk_idx *x);

/* ---- reading a captured segment ---- */

/* Read [off, off + n) of g into k->buf + at; a short read means the file is
 * shorter than its committed end, which only damage can do. */
static int read_exact(bk_ctx *k, bk_seg *b, size_t at, uint64_t off, size_t n)
{
    size_t got = 0;
    int rc = evs__fread(b->g->file, k->buf + at, n, off, &got);
    if (rc) return evs__bk_fail(&k->s->log, k->info, rc, "reading %s at offset %" PRIu64 ": %s", b->g->name, off,
                                evs_strerror(rc));
    if (got != n) {
        int crc = EVS_CORRUPT_HERE(&k->s->log, b->g->name, off + got, "segment is shorter than its committed end");
        return evs__bk_fail(&k->s->log, k->info, crc, "%s ends at offset %" PRIu64 ", before its committed end %" PRIu64,
                            b->g->name, off + got, b->end);
    }
    return 0;
}

static int grow(bk_ctx *k, size_t need)
{
    if (need <= k->cap) return 0;
    uint8_t *p = realloc(k->buf, need);
    if (!p) return EVS_ENOMEM;
    k->buf = p;
    k->cap = need;
    return 0;
}

static int seg_damage(bk_ctx *k, bk_seg *b, uint64_t off, const char *what)
{
    int rc = EVS_CORRUPT_HERE(&k->s->log, b->g->name, off, what);
    return evs__bk_fail(&k->s->log, k->info, rc, "refusing to back up damaged data: %s at offset %" PRIu64 ": %s "
                        "(run `evstore verify`)", b->g->name, off, what);
}

/* The check pass over one segment: hash [0, end) and verify every record. */
static int check_segment(bk_ctx *k, bk_seg *b)
{
    evs_segment *g = b->g;
    uint64_t buf_off = 0, cur = 0, pos = b->first, unreported = 0;
    size_t have = 0;
    int last_commit = 1, rc;
    XXH3_64bits_reset(k->xs);
    if (b->end < EVS_SEG_HDR_SIZE) return seg_damage(k, b, 0, "committed end lies inside the segment header");
    for (;;) {
        /* parse what the buffer holds */
        if (cur == 0 && have >= EVS_SEG_HDR_SIZE) {
            evs_seg_hdr h;
            rc = evs__seg_hdr_decode(k->buf, &h);
            if (rc || h.base != g->base || h.salt != g->salt)
                return seg_damage(k, b, 0, "segment header is invalid or names another segment");
            cur = EVS_SEG_HDR_SIZE;
        }
        while (cur >= EVS_SEG_HDR_SIZE && cur < b->end) {
            size_t avail = (size_t)(buf_off + have - cur);
            evs_rec rec;
            evs_rec_status st = evs__rec_decode(k->buf + (cur - buf_off), avail, g->salt, &rec);
            if (st == EVS_REC_SHORT && buf_off + have < b->end) {
                if (rec.size > k->cap / 2 && (rc = grow(k, (size_t)rec.size * 2)) != 0) return rc;
                break;  /* read more */
            }
            if (st != EVS_REC_OK) return seg_damage(k, b, cur, "record fails its checksum or framing");
            if (rec.position != pos) return seg_damage(k, b, cur, "record holds an unexpected position");
            if (cur + rec.size > b->end) return seg_damage(k, b, cur, "record crosses the committed end");
            cur += rec.size;
            pos++;
            k->events++;
            last_commit = (rec.flags & EVS_REC_COMMIT) != 0;
        }
        /* progress after the records of the chunk read last are counted */
        if (unreported && (rc = report(k, unreported)) != 0) return rc;
        unreported = 0;
        if (cur == b->end) break;
        /* keep the unparsed tail, read the next chunk behind it */
        uint64_t keep_from = cur ? cur : buf_off;
        size_t keep = (size_t)(buf_off + have - keep_from);
        if (keep && keep_from != buf_off) memmove(k->buf, k->buf + (keep_from - buf_off), keep);
        buf_off = keep_from;
        have = keep;
        uint64_t next = buf_off + have;
        if (next >= b->end) return seg_damage(k, b, cur, "record is cut short at the committed end");
        size_t want = (size_t)EVS_MIN((uint64_t)(k->cap - have), b->end - next);
        if ((rc = read_exact(k, b, have, next, want)) != 0) return rc;
        XXH3_64bits_update(k->xs, k->buf + have, want);
        have += want;
        unreported = want;
    }
    if (pos != b->last + 1)
        return seg_damage(k, b, cur, "segment holds fewer positions than the snapshot says");
    if (!last_commit) return seg_damage(k, b, cur, "segment does not end with a complete append");
    b->xxh3 = XXH3_64bits_digest(k->xs);
    return 0;
}

/* ---- output: tar -> zstd -> sink ---- */

static int sink(bk_out *o, const void *p, size_t n)
{
    size_t n0 = n;
    const void *p0 = p;
    if (o->rc) return o->rc;
    if (o->opt->write) {
        int rc = o->opt->write(o->opt->write_ctx, p, n);
        if (rc) o->rc = rc < 0 ? rc : -EIO;
    } else {
        while (n && !o->rc) {
            la_ssize_t w = archive_write_data(o->raw, p, n);
            if (w <= 0) {
                int e = archive_errno(o->raw);
                o->rc = e > 0 ? -e : -EIO;
                break;
            }
            p = (const uint8_t *)p + w;
            n -= (size_t)w;
        }
    }
    if (!o->rc) {
        XXH3_64bits_update(o->hs, p0, n0);
        o->written += n0;
    }
    return o->rc;
}

/* Compress in (n bytes; end: finish the frame) and pass the output on. */
static int zpush(bk_out *o, const void *in, size_t n, int end)
{
    ZSTD_inBuffer ib = {in, n, 0};
    for (;;) {
        ZSTD_outBuffer ob = {o->zbuf, o->zcap, 0};
        size_t r = ZSTD_compressStream2(o->z, &ob, &ib, end ? ZSTD_e_end : ZSTD_e_continue);
        if (ZSTD_isError(r)) return o->rc = -EIO;
        if (ob.pos && sink(o, o->zbuf, ob.pos) != 0) return o->rc;
        if (end ? r == 0 : ib.pos == ib.size) return 0;
    }
}

static la_ssize_t tar_write(struct archive *a, void *ctx, const void *buf, size_t n)
{
    bk_out *o = ctx;
    if (zpush(o, buf, n, 0) != 0) {
        archive_set_error(a, o->rc < 0 && o->rc > -4096 ? -o->rc : EIO, "%s", evs_strerror(o->rc));
        return -1;
    }
    return (la_ssize_t)n;
}

static int tar_fail(bk_ctx *k, struct archive *a, const char *what)
{
    int rc = k->out.rc ? k->out.rc : archive_errno(a) > 0 ? -archive_errno(a) : -EIO;
    return evs__bk_fail(&k->s->log, k->info, rc, "writing the archive (%s): %s", what,
                        k->out.rc ? evs_strerror(k->out.rc) : archive_error_string(a) ? archive_error_string(a)
                                                                                     : evs_strerror(rc));
}

static int tar_entry(bk_ctx *k, struct archive *a, struct archive_entry *e, const char *name, uint64_t size)
{
    archive_entry_clear(e);
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, (la_int64_t)size);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, (time_t)(k->info->created_us / 1000000), 0);
    if (archive_write_header(a, e) != ARCHIVE_OK) return tar_fail(k, a, name);
    return 0;
}

static int tar_data(bk_ctx *k, struct archive *a, const void *p, size_t n, const char *name)
{
    while (n) {
        la_ssize_t w = archive_write_data(a, p, n);
        if (w <= 0) return tar_fail(k, a, name);
        p = (const uint8_t *)p + w;
        n -= (size_t)w;
    }
    return 0;
}

/* The copy pass over one segment. */
static int copy_segment(bk_ctx *k, struct archive *a, struct archive_entry *e, bk_seg *b)
{
    int rc = tar_entry(k, a, e, b->g->name, b->end);
    uint64_t ev0 = k->events;
    if (rc) return rc;
    XXH3_64bits_reset(k->xs);
    for (uint64_t off = 0; off < b->end;) {
        size_t want = (size_t)EVS_MIN((uint64_t)k->cap, b->end - off);
        if ((rc = read_exact(k, b, 0, off, want)) != 0) return rc;
        XXH3_64bits_update(k->xs, k->buf, want);
        if ((rc = tar_data(k, a, k->buf, want, b->g->name)) != 0) return rc;
        off += want;
        /* positions are not decoded here: count them in proportion to the bytes */
        k->events = ev0 + (uint64_t)((double)(b->last + 1 - b->first) * (double)off / (double)b->end);
        if ((rc = report(k, want)) != 0) return rc;
    }
    k->events = ev0 + (b->last + 1 - b->first);
    if (XXH3_64bits_digest(k->xs) != b->xxh3) {
        int crc = EVS_CORRUPT_HERE(&k->s->log, b->g->name, 0, "segment read differently twice during a backup");
        return evs__bk_fail(&k->s->log, k->info, crc, "%s read differently in the two passes of the backup: the disk "
                            "or the file changed under a committed range (run `evstore verify`)", b->g->name);
    }
    return 0;
}

static int ix_pass(bk_ctx *k, struct archive *a, struct archive_entry *e, bk_idx *x)
{
    int rc;
    if (a && (rc = tar_entry(k, a, e, x->name, x->size)) != 0) return rc;
    XXH3_64bits_reset(k->xs);
    for (uint64_t off = 0; off < x->size;) {
        size_t want = (size_t)EVS_MIN((uint64_t)k->cap, x->size - off), got = 0;
        const uint8_t *p = x->mem ? x->mem + off : k->buf;
        if (!x->mem) {
            rc = evs__fread(x->f, k->buf, want, off, &got);
            if (rc || got != want)
                return evs__bk_fail(&k->s->log, k->info, rc ? rc : EVS_ECORRUPT, "reading %s at offset %" PRIu64
                                    ": %s", x->name, off + got, rc ? evs_strerror(rc) : "the file is shorter than "
                                    "its checkpoint says");
        }
        XXH3_64bits_update(k->xs, p, want);
        if (a && (rc = tar_data(k, a, p, want, x->name)) != 0) return rc;
        off += want;
    }
    uint64_t h = XXH3_64bits_digest(k->xs);
    if (!a) x->xxh3 = h;
    else if (h != x->xxh3)
        return evs__bk_fail(&k->s->log, k->info, EVS_ECORRUPT, "%s read differently in the two passes of the "
                            "backup: the disk or the file changed (run `evstore verify`)", x->name);
    return 0;
}

static int open_output(bk_ctx *k, int fd, struct archive_entry **raw_entry)
{
    bk_out *o = &k->out;
    o->opt = &k->opt;
    o->zcap = ZSTD_CStreamOutSize();
    if (!(o->z = ZSTD_createCCtx()) || !(o->zbuf = malloc(o->zcap)) || !(o->hs = XXH3_createState()))
        return EVS_ENOMEM;
    XXH3_64bits_reset(o->hs);
    if (ZSTD_isError(ZSTD_CCtx_setParameter(o->z, ZSTD_c_compressionLevel, k->opt.level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(o->z, ZSTD_c_checksumFlag, 1)))
        return evs__bk_fail(&k->s->log, k->info, EVS_EINVAL, "zstd refuses compression level %d", k->opt.level);
    if (k->opt.write) return 0;
    /* the caller's fd, written by libarchive's raw format (no blocking, no padding) */
    if (!(o->raw = archive_write_new()) || !(*raw_entry = archive_entry_new())) return EVS_ENOMEM;
    if (archive_write_set_format_raw(o->raw) != ARCHIVE_OK || archive_write_add_filter_none(o->raw) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(o->raw, 0) != ARCHIVE_OK || archive_write_open_fd(o->raw, fd) != ARCHIVE_OK)
        return evs__bk_fail(&k->s->log, k->info, -EIO, "cannot write to file descriptor %d: %s", fd,
                            archive_error_string(o->raw) ? archive_error_string(o->raw) : "libarchive failed");
    archive_entry_set_pathname(*raw_entry, "backup.tar.zst");
    archive_entry_set_filetype(*raw_entry, AE_IFREG);
    archive_entry_set_perm(*raw_entry, 0644);
    if (archive_write_header(o->raw, *raw_entry) != ARCHIVE_OK)
        return evs__bk_fail(&k->s->log, k->info, -EIO, "cannot write to file descriptor %d: %s", fd,
                            archive_error_string(o->raw) ? archive_error_string(o->raw) : "libarchive failed");
    return 0;
}

int evs_backup(evs_store *s, int fd, uint64_t since, const evs_backup_options *opt, evs_backup_info *info)
{
    evs_backup_info own;
    if (!info) info = &own;
    memset(info, 0, sizeof *info);
    bk_ctx k;
    memset(&k, 0, sizeof k);
    k.s = s;
    k.info = info;
    evs_backup_options_init(&k.opt);
    if (opt) {
        size_t n = opt->struct_size && opt->struct_size < sizeof k.opt ? opt->struct_size : sizeof k.opt;
        memcpy(&k.opt, opt, n);
        k.opt.struct_size = sizeof k.opt;
    }
    struct archive *tar = NULL;
    struct archive_entry *e = NULL, *raw_entry = NULL;
    evs_bk_manifest m;
    evs_buf text = {0};
    uint64_t salt = 0;
    int rc = 0;
    memset(&m, 0, sizeof m);
    if (k.opt.level < 1 || k.opt.level > 19) {
        rc = evs__bk_fail(&s->log, info, EVS_EINVAL, "backup compression level %d is outside 1..19", k.opt.level);
        goto out;
    }
    /* a follower picks up what the writer published (one refresh stops at
     * the end of a segment the writer has sealed since: repeat while it moves) */
    for (int i = 0; s->read_only && i < 100000; i++) {
        uint64_t before = atomic_load(&s->committed);
        if (evs__refresh_follower(s) != 0 || atomic_load(&s->committed) == before) break;
    }
    info->created_us = evs__now_us();
    info->since = since;
    if (since == 0 && (rc = capture_indexes(&k)) != 0) goto out;
    if ((rc = snapshot(&k, since, &salt)) != 0) goto out;
    if ((rc = capture_offsets(&k)) != 0) goto out;
    if (since > k.committed) {
        rc = evs__bk_fail(&s->log, info, EVS_EINVAL, "since %" PRIu64 " is after the store's last position %" PRIu64,
                          since, k.committed);
        goto out;
    }
    snprintf(info->store_id, sizeof info->store_id, "%016" PRIx64, salt);
    info->last_position = k.committed;
    info->files = k.nsegs;  /* segments; index files are listed in the manifest only */
    info->bytes = k.total;
    info->first_position = k.nsegs && k.committed >= k.segs[0].first ? k.segs[0].first : 0;
    k.cap = EVS_BACKUP_CHUNK;
    if (!(k.buf = malloc(k.cap)) || !(k.xs = XXH3_createState())) { rc = EVS_ENOMEM; goto out; }

    /* pass 1: check and hash */
    k.phase = "check";
    for (size_t i = 0; i < k.nsegs; i++)
        if ((rc = check_segment(&k, &k.segs[i])) != 0) goto out;
    for (size_t i = 0; i < k.nix; i++)
        if ((rc = ix_pass(&k, NULL, NULL, &k.ix[i])) != 0) goto out;

    /* the manifest */
    m.version = EVS_BACKUP_FORMAT;
    m.store_format = EVS_FORMAT_VERSION;
    memcpy(m.store_id, info->store_id, sizeof m.store_id);
    m.created_us = info->created_us;
    m.since = since;
    m.first = info->first_position;
    m.last = k.committed;
    m.nfiles = k.nsegs;
    if (k.nsegs && !(m.files = calloc(k.nsegs, sizeof *m.files))) { rc = EVS_ENOMEM; goto out; }
    for (size_t i = 0; i < k.nsegs; i++) {
        evs_bk_file *f = &m.files[i];
        snprintf(f->name, sizeof f->name, "%s", k.segs[i].g->name);
        f->size = k.segs[i].end;
        f->xxh3 = k.segs[i].xxh3;
        f->first = k.segs[i].first;
        f->last = k.segs[i].last;
    }
    m.idx_covered = k.idx_covered;
    m.nidx = k.nix;
    if (k.nix && !(m.idx = calloc(k.nix, sizeof *m.idx))) { rc = EVS_ENOMEM; goto out; }
    for (size_t i = 0; i < k.nix; i++) {
        snprintf(m.idx[i].name, sizeof m.idx[i].name, "%s", k.ix[i].name);
        m.idx[i].size = k.ix[i].size;
        m.idx[i].xxh3 = k.ix[i].xxh3;
    }
    if ((rc = evs__bk_manifest_encode(&m, &text)) != 0) goto out;

    /* pass 2: the archive */
    if ((rc = open_output(&k, fd, &raw_entry)) != 0) goto out;
    if (!(tar = archive_write_new()) || !(e = archive_entry_new())) { rc = EVS_ENOMEM; goto out; }
    if (archive_write_set_format_pax_restricted(tar) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(tar, 64 * 1024) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(tar, 1) != ARCHIVE_OK ||
        archive_write_open(tar, &k.out, NULL, tar_write, NULL) != ARCHIVE_OK) {
        rc = tar_fail(&k, tar, "opening");
        goto out;
    }
    if ((rc = tar_entry(&k, tar, e, EVS_BACKUP_MANIFEST, text.len)) != 0 ||
        (rc = tar_data(&k, tar, text.p, text.len, EVS_BACKUP_MANIFEST)) != 0)
        goto out;
    k.phase = "copy";
    k.done = 0;
    k.events = 0;
    for (size_t i = 0; i < k.nsegs; i++)
        if ((rc = copy_segment(&k, tar, e, &k.segs[i])) != 0) goto out;
    for (size_t i = 0; i < k.nix; i++)
        if ((rc = ix_pass(&k, tar, e, &k.ix[i])) != 0) goto out;
    if (archive_write_close(tar) != ARCHIVE_OK) { rc = tar_fail(&k, tar, "closing"); goto out; }
    if ((rc = zpush(&k.out, NULL, 0, 1)) != 0) {
        rc = evs__bk_fail(&s->log, info, rc, "writing the archive: %s", evs_strerror(rc));
        goto out;
    }
    {
        uint8_t tr[EVS_BACKUP_TRAILER_SIZE];
        evs__put32(tr, EVS_BACKUP_TRAILER_MAGIC);
        evs__put32(tr + 4, 8);
        evs__put64(tr + 8, XXH3_64bits_digest(k.out.hs));
        if ((rc = sink(&k.out, tr, sizeof tr)) != 0) {
            rc = evs__bk_fail(&s->log, info, rc, "writing the archive: %s", evs_strerror(rc));
            goto out;
        }
    }
    if (k.out.raw && archive_write_close(k.out.raw) != ARCHIVE_OK) {
        int er = archive_errno(k.out.raw);
        rc = evs__bk_fail(&s->log, info, er > 0 ? -er : -EIO, "writing the archive: %s",
                          archive_error_string(k.out.raw) ? archive_error_string(k.out.raw) : "failed");
        goto out;
    }
    info->archive_bytes = k.out.written;
    evs__logf(&s->log, EVS_LOG_DEBUG, "backup: positions %" PRIu64 "..%" PRIu64 " (since %" PRIu64 "), %zu files, "
              "%" PRIu64 " bytes, archive %" PRIu64 " bytes", info->first_position, info->last_position, since,
              k.nsegs, k.total, k.out.written);
out:
    if (rc && !info->message[0]) evs__bk_fail(&s->log, info, rc, "backup failed: %s", evs_strerror(rc));
    /* after a failure nothing more reaches the output: freeing the tar writer
     * would otherwise pad the open entry and end the tar, and an unfinished
     * zstd frame is what tells a reader the archive is incomplete */
    if (rc && !k.out.rc) k.out.rc = rc;
    if (tar) archive_write_free(tar);
    archive_entry_free(e);
    if (k.out.raw) archive_write_free(k.out.raw);
    archive_entry_free(raw_entry);
    ZSTD_freeCCtx(k.out.z);
    XXH3_freeState(k.out.hs);
    free(k.out.zbuf);
    evs__buf_free(&text);
    evs__bk_manifest_free(&m);
    XXH3_freeState(k.xs);
    free(k.buf);
    free(k.segs);
    ix_release(&k);  /* unpin: runs merged away meanwhile go now */
    return rc;
}
