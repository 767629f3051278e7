/*
 * recovery.c — opening the log: find the segments, load the checkpointed
 * indexes, scan only what the checkpoint does not cover, cut a torn tail,
 * and (for read-only openers) follow a writer in another process.
 *
 * RECOVERY ALGORITHM (also in docs/FORMAT.md)
 *  1. List "<20 digits>.seg" files; sort by base. A last segment whose header
 *     is incomplete and that holds no record is the trace of a crash while it
 *     was being created: it is deleted (a read-only open, which may race with
 *     a writer creating it, opens without it and leaves it). Any other bad
 *     header is corruption.
 *  2. Read checkpoint.idx (C = covered position). Open the offsets files, the
 *     id and stream indexes (each reports the position it covers) and the
 *     stream table. Anything missing or damaged: rebuild everything from
 *     position 1 (indexes are derived data).
 *  3. R = the smallest covered position. Pass 1 walks the records after R:
 *     each must decode, verify and carry the next position. In a sealed
 *     segment any failure is corruption (refused unless opt.repair, which
 *     truncates there and drops the later segments). In the last segment the
 *     valid log ends at the end of the last record carrying COMMIT; what
 *     follows (a torn write, an incomplete batch) is truncated and logged.
 *  4. Pass 2 applies the records after R to the indexes and offsets files.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "index/lsm_ext.h"
#include "store/store_int.h"

typedef struct seg_list {
    uint64_t *bases;
    size_t n, cap;
} seg_list;

static int parse_seg_name(const char *name, uint64_t *base)
{
    if (strlen(name) != 24 || strcmp(name + 20, ".seg") != 0) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9') return 0;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *base = v;
    return v > 0;
}

typedef struct list_ctx { evs_store *s; seg_list *l; } list_ctx;

static int on_entry(void *arg, const char *name)
{
    list_ctx *c = arg;
    uint64_t base;
    size_t nl = strlen(name);
    if (!c->s->read_only && nl > 4 && strcmp(name + nl - 4, ".tmp") == 0) {
        char path[4096];
        if (evs__store_path(c->s, path, sizeof path, name) == 0) c->s->vfs->unlink(c->s->vfs, path);
        return 0;
    }
    if (!parse_seg_name(name, &base)) return 0;
    if (c->l->n == c->l->cap) {
        size_t cap = c->l->cap ? c->l->cap * 2 : 16;
        uint64_t *b = realloc(c->l->bases, cap * sizeof *b);
        if (!b) return EVS_ENOMEM;
        c->l->bases = b;
        c->l->cap = cap;
    }
    c->l->bases[c->l->n++] = base;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void seg_name(uint64_t base, char out[32]) { snprintf(out, 32, "%020" PRIu64 ".seg", base); }

static uint64_t published_position(evs_store *s);

typedef struct ckpt { uint64_t covered, streams_len, end_base, end_off, streams_gen; } ckpt;

static int read_checkpoint(evs_store *s, ckpt *ck)
{
    char path[4096];
    uint8_t b[64];
    evs_file *f = NULL;
    size_t got = 0;
    memset(ck, 0, sizeof *ck);
    int rc = evs__store_path(s, path, sizeof path, EVS_CHECKPOINT_FILE);
    if (rc) return rc;
    rc = s->vfs->open(s->vfs, path, EVS_O_RDONLY, &f);
    if (rc == -ENOENT) return 0;
    if (rc) return rc;
    rc = evs__fread(f, b, sizeof b, 0, &got);
    evs__fclose(f);
    if (rc) return rc;
    if (got != sizeof b || memcmp(b, "EVSCKPT", 8) != 0 || evs__get64(b + 56) != XXH3_64bits(b, 56)) {
        evs__logf(&s->log, EVS_LOG_WARN, "%s is damaged; indexes will be rebuilt from the log", EVS_CHECKPOINT_FILE);
        return EVS_ECORRUPT;
    }
    if (evs__get32(b + 8) > EVS_FORMAT_VERSION) {
        evs__logf(&s->log, EVS_LOG_ERROR, "%s was written by format version %u; this build reads up to %u",
                  EVS_CHECKPOINT_FILE, evs__get32(b + 8), EVS_FORMAT_VERSION);
        return EVS_EFORMAT;
    }
    ck->covered = evs__get64(b + 16);
    ck->streams_len = evs__get64(b + 24);
    ck->end_base = evs__get64(b + 32);
    ck->end_off = evs__get64(b + 40);
    ck->streams_gen = evs__get64(b + 48);
    return 0;
}

#define STREAMS_OPEN_ATTEMPTS 16  /* checkpoint re-reads when the stream table it names is gone (read-only) */

/*
 * A follower: read checkpoint.idx and open the stream table file it names,
 * together. Between the two, the writer's index thread may rewrite the table
 * into the next generation's file, make a checkpoint.idx naming that durable
 * and remove the old file: the open then fails with ENOENT and the checkpoint
 * is read again. Once open, the file keeps the bytes the checkpoint names:
 * chunks are only ever appended past them, a rewrite makes another file, and
 * a removed file stays readable while open. (The writer needs none of this:
 * nobody else writes its directory.)
 */
static int read_checkpoint_follower(evs_store *s, ckpt *ck, evs_file **stf)
{
    *stf = NULL;
    for (int attempt = 1;; attempt++) {
        char path[4096], fname[EVS_STREAMS_FNAME_MAX];
        int rc = read_checkpoint(s, ck);
        if (rc || !ck->covered || !ck->streams_len) return rc;
        evs__streams_fname(ck->streams_gen, fname);
        if ((rc = evs__store_path(s, path, sizeof path, fname)) != 0) return rc;
        rc = s->vfs->open(s->vfs, path, EVS_O_RDONLY, stf);
        if (rc != -ENOENT) return rc;
        if (attempt == STREAMS_OPEN_ATTEMPTS) {
            evs__logf(&s->log, EVS_LOG_WARN, "%s names %s, which is missing", EVS_CHECKPOINT_FILE, fname);
            return EVS_ECORRUPT;
        }
        evs__logf(&s->log, EVS_LOG_DEBUG, "%s: gone (the writer rewrote the stream table); reading %s again", fname,
                  EVS_CHECKPOINT_FILE);
    }
}

/* Writer: remove the stream table files of other generations than keep
 * (left by a crash between a rewrite and the checkpoint naming it, or after
 * it, before the old file was removed), or all of them when all is set. */
typedef struct sweep_ctx { evs_store *s; uint64_t keep; int all; } sweep_ctx;

static int sweep_entry(void *arg, const char *name)
{
    sweep_ctx *c = arg;
    uint64_t gen = 0;
    char path[4096];
    if (!evs__streams_is_fname(name, &gen) || (!c->all && gen == c->keep)) return 0;
    if (evs__store_path(c->s, path, sizeof path, name) == 0 && c->s->vfs->unlink(c->s->vfs, path) == 0 && !c->all)
        evs__logf(&c->s->log, EVS_LOG_INFO, "deleted the leftover stream table %s", name);
    return 0;
}

static int sweep_stream_tables(evs_store *s, uint64_t keep, int all)
{
    sweep_ctx c = {s, keep, all};
    return s->vfs->list_dir(s->vfs, s->dir, sweep_entry, &c);
}

/* Throw away every derived file's content: indexes start empty at position 0. */
static int reset_indexes(evs_store *s)
{
    int rc;
    evs__lsm_close(s->ids);
    evs__lsm_close(s->sidx);
    s->ids = s->sidx = NULL;
    evs__streams_free(&s->streams);
    atomic_store(&s->nstreams, 0);
    s->streams_file_len = 0;
    s->streams_gen = s->streams_old_gen = 0;
    s->streams_live_bytes = 0;
    s->changes.n = 0;  /* they point into the table just freed */
    if (s->read_only) {
        evs__logf(&s->log, EVS_LOG_ERROR, "indexes in %s are missing or damaged; open it once read-write to rebuild them", s->dir);
        return EVS_ECORRUPT;
    }
    char path[4096];
    if ((rc = evs__store_path(s, path, sizeof path, EVS_CHECKPOINT_FILE)) != 0) return rc;
    s->vfs->unlink(s->vfs, path);
    sweep_stream_tables(s, 0, 1);
    if ((rc = evs__lsm_destroy(s->vfs, s->dir, "ids")) != 0) return rc;
    if ((rc = evs__lsm_destroy(s->vfs, s->dir, "streams")) != 0) return rc;
    uint64_t c1, c2;
    if ((rc = evs__lsm_open(s->vfs, s->dir, "ids", 0, &c1, &s->ids)) != 0) return rc;
    if ((rc = evs__lsm_open(s->vfs, s->dir, "streams", 0, &c2, &s->sidx)) != 0) return rc;
    for (size_t i = 0; i < s->nsegs; i++) {
        evs__fclose(s->segs[i]->offsets);
        s->segs[i]->offsets = NULL;
        if ((rc = evs__offsets_open(s, s->segs[i], 1)) != 0) return rc;
    }
    s->ckpt_position = 0;
    return 0;
}

/* Size the id index's in-memory table for one checkpoint interval (one key
 * per event; at most 2^20 keys: a huge interval must not reserve gigabytes
 * of address space). Not the stream index: its keys are the streams written
 * in an interval, often far fewer, and a sparse table still touches every
 * page it spans. */
static void presize(evs_store *s)
{
    if (!s->read_only && s->ids)
        evs__lsm_presize(s->ids, (size_t)EVS_MIN(s->opt.checkpoint_interval, (uint64_t)1 << 20));
}

/* Does the log still end at least where the checkpoint says? The record of
 * the covered position must be in place, verified, and end at the
 * checkpoint's end offset; a segment cut short (or replaced) below the
 * checkpoint makes every derived file suspect. */
static int checkpoint_anchor_holds(evs_store *s, const ckpt *ck)
{
    evs_segment *g = NULL;
    for (size_t i = s->nsegs; i > 0; i--)
        if (s->segs[i - 1]->base <= ck->covered) { g = s->segs[i - 1]; break; }
    if (!g || g->base != ck->end_base || !g->offsets) return 0;
    uint64_t off = 0, size = 0;
    evs_buf buf = {0};
    evs_rec rec;
    int ok = g->file->vfs->size(g->file, &size) == 0 && ck->end_off <= size &&
             evs__offsets_read(s, g, ck->covered, &off) == 0 &&
             evs__read_record(s, g, off, ck->covered, &buf, &rec) == 0 && off + rec.size == ck->end_off;
    evs__buf_free(&buf);
    return ok;
}

/* Where the record at position pos starts, using the (trusted) offsets up to ck. */
static int locate(evs_store *s, const ckpt *ck, uint64_t pos, size_t *segi, uint64_t *off)
{
    size_t i = s->nsegs;
    while (i > 0 && s->segs[i - 1]->base > pos) i--;
    if (i == 0) return EVS_ECORRUPT;
    evs_segment *g = s->segs[i - 1];
    *segi = i - 1;
    if (pos == g->base) { *off = EVS_SEG_HDR_SIZE; return 0; }
    if (pos == ck->covered + 1 && ck->end_base == g->base) { *off = ck->end_off; return 0; }
    return evs__offsets_read(s, g, pos, off);
}

/* Damage in the last segment at offset `off` (expected position `pos`): is
 * it the torn end of the writes a crash interrupted, or corruption inside the
 * log? A crash can damage only bytes that were not yet fdatasync'ed, and those
 * may reach the disk in any order, sector by sector: one group write of many
 * appends can lose a sector in its middle and keep every later one, so
 * complete appends after the damage prove nothing by themselves. What does:
 * a valid record flagged AFTER_SYNC beyond the damage. The writer sets that
 * flag only on the first record of a write issued when every earlier byte of
 * the segment was durable — so the damaged bytes had been synced, and the
 * damage is not a torn write: refuse rather than silently cut acknowledged
 * appends (EXAMPLES §3: after a bad checksum, never trust the length). */
static int damage_is_inside_the_log(evs_store *s, evs_segment *g, uint64_t off, uint64_t fsize, uint64_t pos)
{
    evs_buf win = {0};
    uint64_t win_off = 0;
    int inside = 0;
    for (uint64_t o = off + 8; o + EVS_REC_MIN_SIZE <= fsize && !inside;) {
        if (o < win_off || o + EVS_REC_HDR_SIZE > win_off + win.len) {
            size_t got = 0;
            win.len = 0;
            if (evs__buf_reserve(&win, 1u << 20) || evs__fread(g->file, win.p, 1u << 20, o, &got)) break;
            win_off = o;
            win.len = got;
        }
        evs_rec rec;
        evs_rec_status st = evs__rec_decode(win.p + (o - win_off), win_off + win.len - o, g->salt, &rec);
        if (st == EVS_REC_SHORT && rec.size && o + rec.size <= fsize && win_off != o) {
            win.len = 0;  /* read the window again from this record */
            continue;
        }
        if (st != EVS_REC_OK || rec.position < pos) {
            o += 8;
            continue;
        }
        if (rec.flags & EVS_REC_AFTER_SYNC) inside = 1;
        o += rec.size;
    }
    evs__buf_free(&win);
    return inside;
}

/* Walk records from (segi, off) expecting position pos. mode 0 = validate
 * (find the valid end), 1 = apply to the indexes. Stops at `stop_pos`
 * in apply mode. */
typedef struct scan_state {
    size_t segi;             /* segment of the valid end */
    uint64_t end_off;        /* offset just past the last COMMIT record */
    uint64_t last_pos;       /* position of the last COMMIT record */
} scan_state;

static int scan(evs_store *s, size_t segi, uint64_t off, uint64_t pos, int apply,
                uint64_t apply_after, uint64_t ckpt_pos, uint64_t stop_pos, scan_state *st)
{
    evs_buf win = {0};
    uint32_t *offs = NULL;
    size_t noffs = 0, offcap = 0;
    uint64_t offs_first = 0;
    int rc = 0;
    st->segi = segi;
    st->end_off = off;
    st->last_pos = pos - 1;
    for (; segi < s->nsegs; segi++, off = EVS_SEG_HDR_SIZE) {
        evs_segment *g = s->segs[segi];
        int last = segi + 1 == s->nsegs;
        uint64_t limit = last ? UINT64_MAX : s->segs[segi + 1]->base;  /* first position not in g */
        uint64_t fsize = 0;
        if ((rc = g->file->vfs->size(g->file, &fsize)) != 0) goto out;
        if (pos != g->base && off == EVS_SEG_HDR_SIZE) {
            rc = EVS_CORRUPT_HERE(&s->log, g->name, 0, "segment does not start at the position after its predecessor");
            goto out;
        }
        uint64_t win_off = off;
        win.len = 0;
        while (pos < limit && pos <= stop_pos) {
            if (off + 12 > win_off + win.len || off < win_off) {
                size_t want = 1u << 20, got = 0;
                win.len = 0;
                if ((rc = evs__buf_reserve(&win, want)) != 0) goto out;
                if ((rc = evs__fread(g->file, win.p, want, off, &got)) != 0) goto out;
                win_off = off;
                win.len = got;
            }
            evs_rec rec;
            evs_rec_status rs = evs__rec_decode(win.p + (off - win_off), win_off + win.len - off, g->salt, &rec);
            if (rs == EVS_REC_SHORT && rec.size && off + rec.size <= fsize && win_off != off) {
                win.len = 0;  /* the record is in the file: read again from it */
                win_off = off;
                continue;
            }
            if (rs == EVS_REC_SHORT && rec.size && off + rec.size <= fsize) {
                size_t got = 0;
                if ((rc = evs__buf_reserve(&win, rec.size)) != 0) goto out;
                if ((rc = evs__fread(g->file, win.p, rec.size, off, &got)) != 0) goto out;
                win.len = got;
                rs = evs__rec_decode(win.p, win.len, g->salt, &rec);
            }
            if (rs != EVS_REC_OK || rec.position != pos) {
                if (apply) { rc = EVS_ECORRUPT; goto out; }  /* pass 1 saw it valid */
                if (!last) {
                    rc = EVS_CORRUPT_HERE(&s->log, g->name, off,
                                          rs == EVS_REC_OK ? "position out of order in a sealed segment"
                                                           : "damaged or missing record in a sealed segment");
                    goto out;
                }
                if (rs != EVS_REC_END && !s->read_only && damage_is_inside_the_log(s, g, off, fsize, pos)) {
                    rc = EVS_CORRUPT_HERE(&s->log, g->name, off,
                                          "damaged record followed by further complete appends (not a torn write)");
                    goto out;
                }
                goto out;  /* the tail of the last segment ends here */
            }
            if (apply && pos > apply_after) {
                if ((rc = evs__index_record(s, &rec)) != 0) goto out;
                if (pos > ckpt_pos) {
                    if (noffs == 0) offs_first = pos;
                    if (noffs == offcap) {
                        offcap = offcap ? offcap * 2 : 4096;
                        uint32_t *n = realloc(offs, offcap * sizeof *n);
                        if (!n) { rc = EVS_ENOMEM; goto out; }
                        offs = n;
                    }
                    offs[noffs++] = (uint32_t)off;
                }
            }
            off += rec.size;
            pos++;
            if (rec.flags & EVS_REC_COMMIT) {
                st->segi = segi;
                st->end_off = off;
                st->last_pos = pos - 1;
            }
        }
        if (apply && noffs) {
            if (!s->read_only && (rc = evs__offsets_write(s, g, offs_first, offs, noffs)) != 0) goto out;
            noffs = 0;
        }
        if (!last && off != fsize && !apply) {
            rc = EVS_CORRUPT_HERE(&s->log, g->name, off, "sealed segment has bytes after its last record");
            goto out;
        }
        if (pos > stop_pos) break;
    }
out:
    free(offs);
    evs__buf_free(&win);
    return rc;
}

/* Drop segments after index keep (repair, or a torn creation). */
static int drop_segments_after(evs_store *s, size_t keep)
{
    char path[4096], oname[48];
    while (s->nsegs > keep + 1) {
        evs_segment *g = s->segs[--s->nsegs];
        evs__logf(&s->log, EVS_LOG_WARN, "removing segment %s", g->name);
        int rc = evs__store_path(s, path, sizeof path, g->name);
        if (rc == 0) rc = s->vfs->unlink(s->vfs, path);
        snprintf(oname, sizeof oname, "%020" PRIu64 ".offsets.idx", g->base);
        if (evs__store_path(s, path, sizeof path, oname) == 0) s->vfs->unlink(s->vfs, path);
        evs__seg_close(g);
        if (rc) return rc;
    }
    return s->vfs->sync_dir(s->vfs, s->dir);
}

static int open_segments(evs_store *s, seg_list *l)
{
    char name[32], path[4096];
    int rc = 0;
    for (size_t i = 0; i < l->n; i++) {
        int last = i + 1 == l->n;
        evs_segment *g = NULL;
        seg_name(l->bases[i], name);
        rc = evs__seg_open(s, name, l->bases[i], last && !s->read_only, &g);
        if (rc == EVS_ECORRUPT && last && (i > 0 || (l->n == 1 && !s->read_only))) {
            /* a crash while the segment was being created leaves a short header and no records */
            uint64_t size = UINT64_MAX;
            evs_file *f = NULL;
            if (evs__store_path(s, path, sizeof path, name) == 0 &&
                s->vfs->open(s->vfs, path, EVS_O_RDONLY, &f) == 0) {
                f->vfs->size(f, &size);
                evs__fclose(f);
            }
            if (size <= EVS_SEG_HDR_SIZE && s->read_only) {
                /* a writer in another process is creating it right now (the
                 * file exists before its header is written), or crashed doing
                 * so: a reader leaves it alone and opens without it, as
                 * evs_refresh does; it is picked up once written */
                evs__logf(&s->log, EVS_LOG_DEBUG, "%s: segment being created, opened without it", name);
                l->n--;
                rc = 0;
                break;
            }
            if (size <= EVS_SEG_HDR_SIZE) {
                char opath[4096], oname[48];
                evs__logf(&s->log, EVS_LOG_WARN, "removing %s: created but never written (crash during creation)", name);
                if ((rc = s->vfs->unlink(s->vfs, path)) != 0) return rc;
                snprintf(oname, sizeof oname, "%020" PRIu64 ".offsets.idx", l->bases[i]);
                if (evs__store_path(s, opath, sizeof opath, oname) == 0) s->vfs->unlink(s->vfs, opath);
                if ((rc = s->vfs->sync_dir(s->vfs, s->dir)) != 0) return rc;
                l->n--;
                /* the previous segment is the active one again: it is written to */
                if (s->nsegs && (rc = evs__seg_make_writable(s, s->segs[s->nsegs - 1])) != 0) return rc;
                break;
            }
            rc = EVS_ECORRUPT;
        }
        if (rc) return rc;
        if ((rc = evs__seg_add(s, g)) != 0) { evs__seg_close(g); return rc; }
    }
    return 0;
}

int evs__recover(evs_store *s)
{
    seg_list l = {0};
    list_ctx lc = {s, &l};
    ckpt ck;
    scan_state st;
    int rebuild = 0, ck_rc = 0;
    /* A follower reads the checkpoint before it lists the segments: the
     * checkpoint covers a position the writer published before writing it,
     * so its segment is complete and in the listing. (Read after, it could
     * name a segment the writer created since.) */
    evs_file *stf = NULL;  /* a follower's stream table, opened with the checkpoint */
    if (s->read_only) ck_rc = read_checkpoint_follower(s, &ck, &stf);
    int rc = s->vfs->list_dir(s->vfs, s->dir, on_entry, &lc);
    if (rc) goto out;
    if (l.n) qsort(l.bases, l.n, sizeof *l.bases, cmp_u64);
    if (s->read_only) {
        /* a segment whose base is past what the writer published holds
         * nothing visible yet and may be mid-creation: the writer rolls to
         * base pub + 1 (offsets file, then the segment, then its header)
         * before it publishes anything in it, so that one is left for a
         * later refresh too. Every segment at or below pub was complete
         * before pub was published, and the listing above came first. */
        uint64_t pub = published_position(s);
        while (l.n > 0 && pub != UINT64_MAX && l.bases[l.n - 1] > pub) l.n--;
    }
    if ((rc = open_segments(s, &l)) != 0) goto out;
    if (s->nsegs == 0) {
        if (s->read_only) { atomic_store(&s->committed, 0); goto out; }  /* nothing written yet */
        evs_segment *g = NULL;
        if ((rc = evs__seg_create(s, 1, &g)) != 0) goto out;
        if ((rc = evs__seg_add(s, g)) != 0) { evs__seg_close(g); goto out; }
    }
    rc = s->read_only ? ck_rc : read_checkpoint(s, &ck);
    if (rc == EVS_EFORMAT) goto out;
    if (rc) { rebuild = 1; memset(&ck, 0, sizeof ck); }
    for (size_t i = 0; i < s->nsegs && !rebuild; i++) {
        evs_segment *g = s->segs[i];
        if (g->offsets || evs__offsets_open(s, g, 0) == 0) continue;
        /* the tail scan writes every entry of a segment that starts after
         * the checkpoint, so its offsets file can simply be made anew */
        if (!s->read_only && g->base > ck.covered && evs__offsets_open(s, g, 1) == 0) continue;
        rebuild = 1;
    }
    uint64_t c_ids = 0, c_str = 0;
    if (!rebuild) {
        if (evs__lsm_open(s->vfs, s->dir, "ids", s->read_only, &c_ids, &s->ids) != 0 ||
            evs__lsm_open(s->vfs, s->dir, "streams", s->read_only, &c_str, &s->sidx) != 0)
            rebuild = 1;
    }
    if (!rebuild && ck.covered &&
        (rc = stf ? evs__streams_load_from(s, stf, ck.streams_len) : evs__streams_load(s, ck.streams_gen, ck.streams_len)) != 0) {
        if (rc == EVS_EFORMAT) goto out;
        rebuild = 1;
    }
    s->streams_file_len = ck.streams_len;
    s->streams_gen = s->streams_old_gen = ck.streams_gen;
    uint64_t r = EVS_MIN(ck.covered, EVS_MIN(c_ids, c_str));
    size_t segi = 0;
    uint64_t off = EVS_SEG_HDR_SIZE;
    if (!rebuild && ck.covered && !checkpoint_anchor_holds(s, &ck)) {
        evs__logf(&s->log, EVS_LOG_WARN, "the log no longer holds position %" PRIu64 " where checkpoint.idx says; "
                  "rebuilding the indexes", ck.covered);
        rebuild = 1;
    }
    if (!rebuild && r > 0 && locate(s, &ck, r + 1, &segi, &off) != 0) rebuild = 1;
    if (rebuild) {
        if (ck.covered || c_ids || c_str)
            evs__logf(&s->log, EVS_LOG_WARN, "rebuilding the indexes of %s from the log", s->dir);
        if ((rc = reset_indexes(s)) != 0) goto out;
        memset(&ck, 0, sizeof ck);
        r = 0;
        segi = 0;
        off = EVS_SEG_HDR_SIZE;
    }
    s->ckpt_position = ck.covered;
    if (s->ids) evs__lsm_set_logger(s->ids, &s->log);  /* later index messages reach the application's log */
    if (s->sidx) evs__lsm_set_logger(s->sidx, &s->log);
    presize(s);
    /* pass 1: find the valid end */
    /* a follower sees only what the writer has published (durable under its policy) */
    rc = scan(s, segi, off, r + 1, 0, 0, 0, s->read_only ? published_position(s) : UINT64_MAX, &st);
    if (rc == EVS_ECORRUPT && s->opt.repair && !s->read_only) {
        evs__logf(&s->log, EVS_LOG_WARN, "repair: keeping the valid prefix up to position %" PRIu64, st.last_pos);
        if ((rc = drop_segments_after(s, st.segi)) != 0) goto out;
        if ((rc = evs__seg_make_writable(s, s->segs[s->nsegs - 1])) != 0) goto out;
        rc = 0;
    } else if (rc) {
        if (rc == EVS_ECORRUPT)
            evs__logf(&s->log, EVS_LOG_ERROR, "refusing to open %s: sealed data is damaged (run `evstore verify`; "
                      "open with repair to keep the valid prefix)", s->dir);
        goto out;
    }
    if (st.last_pos < ck.covered) {
        /* the log is shorter than the checkpoint says (repair, or lost data): start over */
        evs__logf(&s->log, EVS_LOG_WARN, "log ends at %" PRIu64 " before the checkpoint at %" PRIu64 "; rebuilding indexes",
                  st.last_pos, ck.covered);
        if ((rc = reset_indexes(s)) != 0) goto out;
        presize(s);
        memset(&ck, 0, sizeof ck);
        s->ckpt_position = 0;
        r = 0;
        segi = 0;
        off = EVS_SEG_HDR_SIZE;
    }
    evs_segment *lastg = s->segs[s->nsegs - 1];
    uint64_t last_end = st.segi == s->nsegs - 1 ? st.end_off : EVS_SEG_HDR_SIZE;
    if (!s->read_only) {
        uint64_t fsize = 0;
        if ((rc = lastg->file->vfs->size(lastg->file, &fsize)) != 0) goto out;
        if (fsize > last_end) {
            evs__logf(&s->log, EVS_LOG_WARN, "%s: dropping %" PRIu64 " bytes after position %" PRIu64
                      " (a torn or unacknowledged write at the crash)", lastg->name, fsize - last_end, st.last_pos);
            s->st_truncated = fsize - last_end;
            if ((rc = lastg->file->vfs->truncate(lastg->file, last_end)) != 0) goto out;
            if ((rc = lastg->file->vfs->sync(lastg->file)) != 0) goto out;
        }
    }
    /* pass 2: bring the indexes up to the valid end */
    if (st.last_pos > r && (rc = scan(s, segi, off, r + 1, 1, r, ck.covered, st.last_pos, &st)) != 0) goto out;
    for (size_t i = 0; i < s->nsegs; i++) {
        evs_segment *g = s->segs[i];
        int last = i + 1 == s->nsegs;
        uint64_t next_base = last ? st.last_pos + 1 : s->segs[i + 1]->base;
        atomic_store(&g->count, next_base - g->base);
        uint64_t size = 0;
        if (!last && (rc = g->file->vfs->size(g->file, &size)) != 0) goto out;
        atomic_store(&g->end, last ? last_end : size);
    }
    atomic_store(&s->committed, st.last_pos);
    s->since_ckpt = st.last_pos - ck.covered;
    s->frozen_position = ck.covered;
    if (st.last_pos > r)
        evs__logf(&s->log, EVS_LOG_INFO, "recovered positions %" PRIu64 "..%" PRIu64 " from the log tail",
                  r + 1, st.last_pos);
    if (!s->read_only) sweep_stream_tables(s, s->streams_gen, 0);  /* best effort: garbage */
out:
    evs__fclose(stf);
    free(l.bases);
    return rc;
}

/* Read the writer's published position from the lock file (UINT64_MAX if
 * there is none: then only the records' own validity limits what is seen). */
static uint64_t published_position(evs_store *s)
{
    char path[4096];
    uint8_t b[32];
    if (!s->lock_file) {  /* followers keep the writer's lock file open (never locking it) */
        if (evs__store_path(s, path, sizeof path, EVS_LOCK_FILE) != 0) return UINT64_MAX;
        if (s->vfs->open(s->vfs, path, EVS_O_RDONLY, &s->lock_file) != 0) return UINT64_MAX;
    }
    for (int tries = 0; tries < 100; tries++) {
        size_t got = 0;
        if (evs__fread(s->lock_file, b, sizeof b, 0, &got) != 0 || got < sizeof b) break;
        uint64_t p = evs__get64(b + 16), q = evs__get64(b + 24);
        if (p == ~q) return p;  /* else torn by a concurrent update: read again */
    }
    return UINT64_MAX;
}

/* Read-only stores: pick up segments and records the writer committed since. */
int evs__refresh_follower(evs_store *s)
{
    if (!s->read_only) return 0;
    pthread_mutex_lock(&s->follow_mu);
    int rc = 0;
    seg_list l = {0};
    list_ctx lc = {s, &l};
    scan_state st;
    uint64_t committed = atomic_load(&s->committed);
    uint64_t pub = published_position(s);
    if (pub <= committed) goto out;
    /* new segment files: only when the last known segment cannot hold pub */
    if (s->nsegs && pub != UINT64_MAX) {
        evs_segment *lastg = s->segs[s->nsegs - 1];
        uint64_t fsize = 0;
        if (lastg->file->vfs->size(lastg->file, &fsize) == 0 && fsize > atomic_load(&lastg->end) &&
            committed + 1 >= lastg->base) {
            /* the writer grew the last segment; a new one appears only after it seals */
            goto scan_known;
        }
    }
    if ((rc = s->vfs->list_dir(s->vfs, s->dir, on_entry, &lc)) != 0) goto out;
    if (l.n) qsort(l.bases, l.n, sizeof *l.bases, cmp_u64);
    uint64_t known = s->nsegs ? s->segs[s->nsegs - 1]->base : 0;
    for (size_t i = 0; i < l.n; i++) {
        if (l.bases[i] <= known) continue;
        /* nothing published in it yet, and it may be mid-creation (see evs__recover) */
        if (pub != UINT64_MAX && l.bases[i] > pub) break;
        char name[32];
        evs_segment *g = NULL;
        seg_name(l.bases[i], name);
        if ((rc = evs__seg_open(s, name, l.bases[i], 0, &g)) != 0 ||
            (rc = evs__offsets_open(s, g, 0)) != 0 || (rc = evs__seg_add(s, g)) != 0) {
            evs__seg_close(g);
            if (rc == -ENOENT || rc == EVS_ECORRUPT) rc = 0;  /* still being created: next time */
            break;
        }
    }
scan_known:
    if (s->nsegs == 0) goto out;
    if (!s->ids) {
        uint64_t c1, c2;
        if ((rc = evs__lsm_open(s->vfs, s->dir, "ids", 1, &c1, &s->ids)) != 0) goto out;
        if ((rc = evs__lsm_open(s->vfs, s->dir, "streams", 1, &c2, &s->sidx)) != 0) goto out;
    }
    size_t segi = s->nsegs;
    while (segi > 0 && s->segs[segi - 1]->base > committed + 1) segi--;
    if (segi == 0) { rc = EVS_ECORRUPT; goto out; }
    segi--;
    evs_segment *g = s->segs[segi];
    uint64_t off = committed + 1 == g->base ? EVS_SEG_HDR_SIZE : atomic_load(&g->end);
    if ((rc = scan(s, segi, off, committed + 1, 0, 0, 0, pub, &st)) != 0) goto out;
    if (st.last_pos <= committed) goto out;
    pthread_rwlock_wrlock(&s->tbl_lock);
    rc = scan(s, segi, off, committed + 1, 1, committed, UINT64_MAX, st.last_pos, &st);
    if (rc == 0) {
        for (size_t i = segi; i < s->nsegs; i++) {
            evs_segment *h = s->segs[i];
            int last = i + 1 == s->nsegs;
            uint64_t next_base = last ? st.last_pos + 1 : s->segs[i + 1]->base;
            atomic_store(&h->count, next_base > h->base ? next_base - h->base : 0);
            if (i == st.segi) atomic_store(&h->end, st.end_off);
            else if (i < st.segi) {
                uint64_t size = 0;
                h->file->vfs->size(h->file, &size);
                atomic_store(&h->end, size);
            }
        }
        atomic_store(&s->committed, st.last_pos);
    }
    pthread_rwlock_unlock(&s->tbl_lock);
    if (rc == 0) {
        pthread_mutex_lock(&s->wait_mu);
        pthread_cond_broadcast(&s->wait_cv);
        pthread_mutex_unlock(&s->wait_mu);
    }
out:
    free(l.bases);
    pthread_mutex_unlock(&s->follow_mu);
    return rc;
}

/* The bases of every segment file in the directory, ascending (for verify). */
int evs__list_segments(evs_store *s, uint64_t **bases, size_t *n)
{
    seg_list l = {0};
    list_ctx lc = {s, &l};
    int rc = s->vfs->list_dir(s->vfs, s->dir, on_entry, &lc);
    if (rc) { free(l.bases); return rc; }
    if (l.n) qsort(l.bases, l.n, sizeof *l.bases, cmp_u64);
    *bases = l.bases;
    *n = l.n;
    return 0;
}
