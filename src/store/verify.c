/*
 * verify.c — evs_verify: an offline, read-only check of a whole data
 * directory. Every record of every segment is decoded and its checksum
 * verified; positions must run contiguously across segments; each offsets
 * file must point at the right records; the id and stream indexes must map
 * every event they cover to its position; the stream table must hold each
 * stream's version as of its checkpoint. Each problem is reported with the
 * file and byte offset; nothing is written.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "store/store_int.h"

typedef struct vctx {
    evs_store *s;                /* a read-only shell: dir, vfs, log */
    evs_verify_fn cb;
    void *ctx;
    uint64_t problems;
    uint64_t ids_covered, streams_covered;
    uint64_t covered;            /* checkpoint.idx's position: the log must reach it */
    evs_stream_table versions;   /* stream -> version, rebuilt from the log */
} vctx;

static void problem(vctx *v, const char *file, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(vctx *v, const char *file, uint64_t off, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    v->problems++;
    if (v->cb) v->cb(v->ctx, file, off, msg);
}

static void lsm_problem(void *ctx, const char *file, uint64_t off, const char *text)
{
    problem(ctx, file, off, "%s", text);
}

/* Check one record against the offsets file and the indexes. */
static void check_record(vctx *v, evs_segment *g, uint64_t off, const evs_rec *rec)
{
    evs_store *s = v->s;
    if (g->offsets) {
        uint64_t ioff = 0;
        if (evs__offsets_read(s, g, rec->position, &ioff) == 0 && ioff != off) {
            char name[64];
            snprintf(name, sizeof name, "%020" PRIu64 ".offsets.idx", g->base);
            problem(v, name, EVS_OFFSETS_HDR_SIZE + 4 * (rec->position - g->base),
                    "offset of position %" PRIu64 " is %" PRIu64 ", the record is at %" PRIu64,
                    rec->position, ioff, off);
        }
    }
    evs_stream *st = evs__streams_find(&v->versions, rec->stream, rec->stream_len);
    if (!st && evs__streams_insert(&v->versions, rec->stream, rec->stream_len, &st) != 0) return;
    if (rec->version != st->version + 1)
        problem(v, g->name, off, "position %" PRIu64 ": stream version %" PRIu64 " follows %" PRIu64,
                rec->position, rec->version, st->version);
    st->version = rec->version;
    st->last_pos = rec->position;
    evs_kv kv;
    if (s->ids && rec->position <= v->ids_covered) {
        int rc = evs__lsm_get(s->ids, rec->id, 0, &kv);
        if (rc || kv.a != rec->position)
            problem(v, "ids index", rec->position, "id of position %" PRIu64 " %s", rec->position,
                    rc ? "is missing" : "maps to another position");
    }
    if (s->sidx && rec->position <= v->streams_covered) {
        int rc = evs__lsm_get(s->sidx, st->hash, rec->version, &kv);
        if (rc || kv.a != rec->version || kv.b != rec->position)
            problem(v, "streams index", rec->position, "stream entry of position %" PRIu64 " %s", rec->position,
                    rc || kv.a != rec->version ? "is missing" : "maps to another position");
    }
}

/* Walk every record of segment g, expecting positions from *pos. */
static void walk_segment(vctx *v, evs_segment *g, int last, uint64_t next_base, uint64_t *pos)
{
    evs_buf win = {0};
    uint64_t size = 0, off = EVS_SEG_HDR_SIZE, win_off = 0;
    uint64_t commit_end = off;
    g->file->vfs->size(g->file, &size);
    while (off < size) {
        if (off < win_off || off + EVS_REC_HDR_SIZE > win_off + win.len) {
            size_t got = 0;
            win.len = 0;
            if (evs__buf_reserve(&win, 1u << 20) || evs__fread(g->file, win.p, 1u << 20, off, &got)) break;
            win_off = off;
            win.len = got;
        }
        evs_rec rec;
        evs_rec_status st = evs__rec_decode(win.p + (off - win_off), win_off + win.len - off, g->salt, &rec);
        if (st == EVS_REC_SHORT && rec.size && off + rec.size <= size) {
            size_t got = 0;
            win.len = 0;
            if (evs__buf_reserve(&win, rec.size) || evs__fread(g->file, win.p, rec.size, off, &got)) break;
            win_off = off;
            win.len = got;
            st = evs__rec_decode(win.p, win.len, g->salt, &rec);
        }
        if (st != EVS_REC_OK) {
            /* in the last segment, a cut-short record after the checkpoint is
             * a torn tail that open truncates; one the checkpoint covers is damage */
            if (last && st != EVS_REC_BAD && *pos > v->covered) break;
            problem(v, g->name, off, "%s; the rest of this segment (%" PRIu64 " bytes) cannot be trusted",
                    st == EVS_REC_BAD ? "record fails its checksum or framing" : "record is cut short",
                    size - off);
            evs__buf_free(&win);
            *pos = next_base;
            return;
        }
        if (rec.position != *pos) {
            problem(v, g->name, off, "record holds position %" PRIu64 ", expected %" PRIu64, rec.position, *pos);
            *pos = rec.position;
        }
        check_record(v, g, off, &rec);
        off += rec.size;
        (*pos)++;
        if (rec.flags & EVS_REC_COMMIT) commit_end = off;
    }
    if (!last && *pos != next_base)
        problem(v, g->name, off, "segment ends at position %" PRIu64 " but the next segment starts at %" PRIu64,
                *pos - 1, next_base);
    if (!last && commit_end != size)
        problem(v, g->name, commit_end, "sealed segment does not end with a complete append");
    evs__buf_free(&win);
}

static void check_stream_table(vctx *v, uint64_t covered, uint64_t streams_len)
{
    evs_store *s = v->s;
    if (!covered) return;
    if (evs__streams_load(s, streams_len) != 0) {
        problem(v, EVS_STREAMS_FILE, 0, "stream table cannot be read");
        return;
    }
    /* the table describes the log as of `covered`; versions read past it are newer */
    for (size_t i = 0; i < s->streams.cap; i++) {
        evs_stream *t = s->streams.slots[i];
        if (!t) continue;
        evs_stream *l = evs__streams_find(&v->versions, t->name, t->name_len);
        if (!l || l->version < t->version)
            problem(v, EVS_STREAMS_FILE, 0, "stream \"%s\" is at version %" PRIu64 " in the table but %" PRIu64 " in the log",
                    t->name, t->version, l ? l->version : 0);
    }
}

int evs_verify(const char *dir, const evs_options *opt, evs_verify_fn cb, void *ctx, uint64_t *problems)
{
    evs_options o;
    evs_options_init(&o);
    if (opt) o = *opt;
    evs_store *s = calloc(1, sizeof *s);
    if (!s) return EVS_ENOMEM;
    s->dir = strdup(dir);
    s->vfs = o.vfs ? o.vfs : evs__vfs_posix();
    s->log = (evs_logger){o.log, o.log_ctx, o.log_level};
    s->read_only = 1;
    s->opt = o;
    pthread_rwlock_init(&s->seg_lock, NULL);
    vctx v = {.s = s, .cb = cb, .ctx = ctx};
    uint64_t *bases = NULL;
    size_t n = 0;
    int rc = s->dir ? s->vfs->exists(s->vfs, dir) : EVS_ENOMEM;
    if (rc == 0) rc = -ENOENT;
    if (rc < 0 || (rc = evs__list_segments(s, &bases, &n)) != 0) goto out;
    /* checkpoint.idx: the covered position and stream table length */
    uint64_t covered = 0, streams_len = 0;
    {
        char path[4096];
        evs_file *f = NULL;
        uint8_t b[64];
        size_t got = 0;
        if (evs__store_path(s, path, sizeof path, EVS_CHECKPOINT_FILE) == 0 &&
            s->vfs->open(s->vfs, path, EVS_O_RDONLY, &f) == 0) {
            if (evs__fread(f, b, sizeof b, 0, &got) == 0 && got == sizeof b && !memcmp(b, "EVSCKPT", 8) &&
                evs__get64(b + 56) == XXH3_64bits(b, 56)) {
                covered = evs__get64(b + 16);
                streams_len = evs__get64(b + 24);
            } else {
                problem(&v, EVS_CHECKPOINT_FILE, 0, "checkpoint file is damaged");
            }
            evs__fclose(f);
        }
    }
    if (evs__lsm_open(s->vfs, dir, "ids", 1, &v.ids_covered, &s->ids) != 0)
        problem(&v, "ids.manifest.idx", 0, "id index cannot be opened");
    if (evs__lsm_open(s->vfs, dir, "streams", 1, &v.streams_covered, &s->sidx) != 0)
        problem(&v, "streams.manifest.idx", 0, "stream index cannot be opened");
    evs__lsm_verify(s->vfs, dir, "ids", lsm_problem, &v, NULL);
    evs__lsm_verify(s->vfs, dir, "streams", lsm_problem, &v, NULL);
    v.covered = covered;
    uint64_t pos = 1;
    for (size_t i = 0; i < n; i++) {
        char name[32];
        evs_segment *g = NULL;
        snprintf(name, sizeof name, "%020" PRIu64 ".seg", bases[i]);
        int last = i + 1 == n;
        if (bases[i] != pos)
            problem(&v, name, 0, "segment starts at position %" PRIu64 ", expected %" PRIu64, bases[i], pos);
        pos = bases[i];
        int orc = evs__seg_open(s, name, bases[i], 0, &g);
        if (orc) {
            problem(&v, name, 0, "segment header: %s", evs_strerror(orc));
            if (!last) pos = bases[i + 1];
            continue;
        }
        if (evs__offsets_open(s, g, 0) != 0 && covered > 0)
            problem(&v, name, 0, "offsets index of this segment is missing or damaged");
        walk_segment(&v, g, last, last ? 0 : bases[i + 1], &pos);
        evs__seg_close(g);
    }
    check_stream_table(&v, covered, streams_len);
    if (covered > pos - 1)
        problem(&v, EVS_CHECKPOINT_FILE, 16, "checkpoint covers position %" PRIu64 " but the log ends at %" PRIu64,
                covered, pos - 1);
    rc = 0;
out:
    if (problems) *problems = v.problems;
    free(bases);
    evs__streams_free(&v.versions);
    evs__streams_free(&s->streams);
    evs__lsm_close(s->ids);
    evs__lsm_close(s->sidx);
    pthread_rwlock_destroy(&s->seg_lock);
    free(s->dir);
    free(s);
    return rc;
}
