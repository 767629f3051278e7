/*
 * verify.c — evs_verify: an offline, read-only check of a whole data
 * directory. Nothing is written, and nothing is trusted that can be checked
 * against the log. Each problem is reported with the file and byte offset.
 *
 * PASS 1 ("log") walks every record of every segment, in position order:
 *  - framing and checksum (evs__rec_decode), positions contiguous from 1
 *    across segments, stream versions contiguous, sealed segments ending
 *    with a complete append;
 *  - each record against the derived files: its segment's offsets file, the
 *    id and stream indexes (for the positions they say they cover), and at
 *    the end the stream table and checkpoint.idx;
 *  - system streams: every $projections/ and $consumers/ event in the exact
 *    form projection.c and consumer.c write, in a valid order.
 * The last segment may end in a torn final write (a crash while appending):
 * a record the file ends inside is accepted as that — open cuts it off —
 * unless something complete follows it (a valid later record, or the record
 * itself complete behind a damaged length field), which a torn write cannot
 * leave: then it is damage, reported like any other.
 *
 * PASS 2 ("projections", only when projection indexes exist): the definitions
 * are known only once pass 1 has seen the whole log (an index covers every
 * matching event from position 1, whenever its projection was defined), so
 * the log is walked again and each index's entries are compared with the
 * positions its filter matches, up to the position its header covers.
 *
 * Derived files that are missing are not problems (open rebuilds them);
 * files left behind by a crash that open would replace (a projection index
 * built for an earlier definition, offsets entries past the checkpoint that
 * were never synced) are not damage either, and are not reported.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "store/sysstream.h"

#define WIN (1u << 20)          /* bytes read at a time */
#define PROJ_HDR 64u            /* docs/FORMAT.md "Projection index" */
#define PROJ_VERSION 1u
#define PCACHE 512u             /* projection entries read at a time */

/* One $projections/ or $consumers/ stream, as pass 1 walks its events. */
typedef struct sysent {
    int proj;                    /* 1: $projections/<name>, 0: $consumers/<name> */
    char *name;                  /* <name> */
    int live;                    /* defined (created) and not deleted since */
    uint64_t created_version;    /* consumer: stream version of the live ConsumerCreated */
    char *canon;                 /* projection: the live definition's filter */
    size_t canon_len;
    uint64_t *fhash;             /* projection: XXH3-64 of every filter it was ever defined with */
    size_t nfhash;
} sysent;

/* One projection index, checked against the log in pass 2. */
typedef struct pcheck {
    char fname[48];              /* "projection-<hash>.idx" */
    evs_file *f;
    evs_ofilter filter;          /* the live definition's */
    uint64_t covered, count;     /* from its header */
    uint64_t next;               /* the entry the next matching position must be */
    uint64_t cache[PCACHE];      /* entries [cache_first, cache_first + cache_n) */
    uint64_t cache_first, cache_n;
    int done;                    /* a problem was reported, or it is fully checked */
} pcheck;

typedef struct vctx {
    evs_store *s;                /* a read-only shell: dir, vfs, log */
    evs_verify_options vo;
    uint64_t problems;
    uint64_t ids_covered, streams_covered;
    uint64_t covered;            /* checkpoint.idx's position: the log must reach it */
    uint64_t end;                /* the last position pass 1 found valid */
    evs_stream_table versions;   /* stream -> version, rebuilt from the log; for system
                                    streams `pending` holds 1 + their index in sys */
    sysent *sys;
    size_t nsys, syscap;
    pcheck *pc;
    size_t npc;
    evs_progress pg;             /* of the current phase */
    uint64_t last_report;        /* pg.bytes when progress was last called */
    int cancelled;
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
    if (v->vo.problem) v->vo.problem(v->vo.problem_ctx, file, off, msg);
}

static void lsm_problem(void *ctx, const char *file, uint64_t off, const char *text)
{
    problem(ctx, file, off, "%s", text);
}

/* ---- progress ---- */

static void progress_phase(vctx *v, const char *phase, uint64_t bytes_total)
{
    memset(&v->pg, 0, sizeof v->pg);
    v->pg.phase = phase;
    v->pg.bytes_total = bytes_total;
    v->last_report = 0;
}

/* Count bytes and events; call the callback about every MiB (force: now). */
static void progress_add(vctx *v, uint64_t bytes, uint64_t events, int force)
{
    v->pg.bytes += bytes;
    v->pg.events += events;
    if (!v->vo.progress || v->cancelled) return;
    if (!force && v->pg.bytes - v->last_report < WIN) return;
    v->last_report = v->pg.bytes;
    if (v->vo.progress(v->vo.progress_ctx, &v->pg) != 0) v->cancelled = 1;
}

/* ---- reading records ---- */

/* A window of a segment file. */
typedef struct rreader {
    evs_file *f;
    uint64_t size;               /* of the file */
    uint64_t salt;
    evs_buf win;                 /* bytes [win_off, win_off + win.len) of the file */
    uint64_t win_off;
    int rc;                      /* a read failed */
} rreader;

/* Make [off, off + n) available in the window (as far as the file goes). */
static const uint8_t *rr_need(rreader *r, uint64_t off, size_t n)
{
    if (off >= r->win_off && (off + n <= r->win_off + r->win.len ||
                              (r->win_off + r->win.len == r->size && off <= r->size && r->win.len)))
        return r->win.p + (off - r->win_off);   /* in the window, or as far as the file goes */
    size_t want = n > WIN ? n : WIN, got = 0;
    r->win.len = 0;
    r->win_off = off;
    if ((r->rc = evs__buf_reserve(&r->win, want)) != 0 || (r->rc = evs__fread(r->f, r->win.p, want, off, &got)) != 0)
        return NULL;
    r->win.len = got;
    return r->win.p;
}

/* Decode the record at off. */
static evs_rec_status rr_at(rreader *r, uint64_t off, evs_rec *rec)
{
    const uint8_t *p = rr_need(r, off, EVS_REC_HDR_SIZE);
    memset(rec, 0, sizeof *rec);
    if (!p) return EVS_REC_BAD;
    evs_rec_status st = evs__rec_decode(p, (size_t)(r->win_off + r->win.len - off), r->salt, rec);
    if (st == EVS_REC_SHORT && rec->size && off + rec->size <= r->size) {
        if (!(p = rr_need(r, off, rec->size))) return EVS_REC_BAD;
        st = evs__rec_decode(p, (size_t)(r->win_off + r->win.len - off), r->salt, rec);
    }
    return st;
}

/*
 * In the last segment, the record at off (expected position pos) looks like
 * the end of a torn final write: the file ends inside it (SHORT), or zeros
 * stand where it would start (END). Is there evidence that the log goes on?
 *  - SHORT (strict): a torn write leaves nothing complete after its torn
 *    record, so any valid record of position >= pos after off, or the record
 *    at off itself complete behind a damaged length field (the trailer that
 *    ends it holds the real length and the checksum's low bits, and the
 *    record validates with that length), means damage.
 *  - END: a torn write may leave holes before later records of the same
 *    group write; as recovery does, only a valid later record flagged
 *    AFTER_SYNC (written once everything before it was durable) means the
 *    damage lies inside the log.
 */
static int log_goes_on(rreader *r, uint64_t off, uint64_t pos, int strict)
{
    uint8_t hdr[32];
    size_t got = 0;
    int have_hdr = evs__fread(r->f, hdr, sizeof hdr, off, &got) == 0 && got == sizeof hdr &&
                   hdr[0] == 'E' && hdr[1] == 'V' && hdr[2] == 'R';
    uint64_t sum = have_hdr ? evs__get64(hdr + 24) : 0;
    int found = 0;
    evs_buf one = {0};
    for (uint64_t o = off + 8; o <= r->size && !found; o += 8) {
        const uint8_t *p = rr_need(r, o - 8, 8 + EVS_REC_HDR_SIZE);
        if (!p) break;
        /* does a trailer end here, for a record starting at off? */
        uint64_t L = o - off;
        if (strict && have_hdr && L >= EVS_REC_MIN_SIZE && L <= UINT32_MAX && evs__get32(p) == L &&
            evs__get32(p + 4) == (uint32_t)sum && evs__buf_reserve(&one, (size_t)L) == 0) {
            size_t n = 0;
            if (evs__fread(r->f, one.p, (size_t)L, off, &n) == 0 && n == L) {
                evs__put32(one.p + 8, (uint32_t)L);
                evs_rec rec;
                if (evs__rec_decode(one.p, (size_t)L, r->salt, &rec) == EVS_REC_OK && rec.position == pos) found = 1;
            }
        }
        /* does a valid record start here? */
        evs_rec rec;
        if (o + EVS_REC_MIN_SIZE <= r->size && rr_at(r, o, &rec) == EVS_REC_OK && rec.position >= pos) {
            if (strict || (rec.flags & EVS_REC_AFTER_SYNC)) found = 1;
        }
    }
    evs__buf_free(&one);
    return found;
}

/* ---- system streams ---- */

static sysent *sys_get(vctx *v, evs_stream *st, const evs_rec *rec)
{
    if (st->pending) return &v->sys[st->pending - 1];
    int proj = rec->stream_len > strlen(EVS_SYS_PROJECTIONS) &&
               !memcmp(rec->stream, EVS_SYS_PROJECTIONS, strlen(EVS_SYS_PROJECTIONS));
    int cons = rec->stream_len > strlen(EVS_SYS_CONSUMERS) &&
               !memcmp(rec->stream, EVS_SYS_CONSUMERS, strlen(EVS_SYS_CONSUMERS));
    if (!proj && !cons) return NULL;
    if (v->nsys == v->syscap) {
        size_t cap = v->syscap ? v->syscap * 2 : 16;
        sysent *n = realloc(v->sys, cap * sizeof *n);
        if (!n) return NULL;
        v->sys = n;
        v->syscap = cap;
    }
    size_t skip = strlen(proj ? EVS_SYS_PROJECTIONS : EVS_SYS_CONSUMERS);
    sysent *e = &v->sys[v->nsys];
    memset(e, 0, sizeof *e);
    e->proj = proj;
    if (!(e->name = malloc(rec->stream_len - skip + 1))) return NULL;
    memcpy(e->name, rec->stream + skip, rec->stream_len - skip);
    e->name[rec->stream_len - skip] = 0;
    st->pending = ++v->nsys;
    return e;
}

static int type_is(const evs_rec *rec, const char *type)
{
    return rec->type_len == strlen(type) && !memcmp(rec->type, type, rec->type_len);
}

static int data_is_null(const evs_rec *rec)
{
    return rec->data_len == 4 && !memcmp(rec->data, "null", 4) && !rec->metadata;
}

/* 0 when data is a filter in its canonical form. */
static int filter_is_canonical(const char *data, size_t len)
{
    evs_ofilter f;
    evs_buf canon = {0};
    if (evs__filter_parse(data, len, &f) != 0) return -1;
    int rc = evs__ofilter_canon(&f, &canon);
    if (rc == 0 && (canon.len != len || memcmp(canon.p, data, len) != 0)) rc = -1;
    evs__ofilter_free(&f);
    evs__buf_free(&canon);
    return rc;
}

static void check_system(vctx *v, evs_segment *g, uint64_t off, evs_stream *st, const evs_rec *rec)
{
    sysent *e = sys_get(v, st, rec);
    if (!e) return;
    const char *bad = NULL;
    if (e->proj) {
        if (type_is(rec, "ProjectionDefined")) {
            if (rec->metadata || filter_is_canonical(rec->data, rec->data_len) != 0) {
                bad = "a projection definition that is not a filter in canonical form";
            } else {
                uint64_t *h = realloc(e->fhash, (e->nfhash + 1) * sizeof *h);
                if (!h) return;
                e->fhash = h;
                char *c = malloc(rec->data_len + 1);
                if (!c) return;
                e->fhash[e->nfhash++] = XXH3_64bits(rec->data, rec->data_len);
                memcpy(c, rec->data, rec->data_len);
                c[rec->data_len] = 0;
                free(e->canon);
                e->canon = c;
                e->canon_len = rec->data_len;
                e->live = 1;
            }
        } else if (type_is(rec, "ProjectionDeleted")) {
            if (!data_is_null(rec)) bad = "a ProjectionDeleted event with data";
            else if (!e->live) bad = "a ProjectionDeleted event for a projection that does not exist";
            e->live = 0;
        } else {
            bad = "an event of a type the store never writes in a projection's stream";
        }
    } else {
        if (type_is(rec, "ConsumerCreated")) {
            if (rec->metadata || evs__consumer_def_check(rec->data, rec->data_len) != 0)
                bad = "a consumer definition that is not in canonical form";
            else if (e->live)
                bad = "a ConsumerCreated event for a consumer that already exists";
            e->live = 1;
            e->created_version = rec->version;
        } else if (type_is(rec, "ConsumerCheckpoint")) {
            uint64_t p = 0, cv = 0;
            size_t so = 0, sl = 0;
            if (evs__consumer_checkpoint_parse(rec->data, rec->data_len, rec->metadata, rec->metadata_len, &p, &cv,
                                               &so, &sl) != 0)
                bad = "a consumer checkpoint that is not in the form the store writes";
            else if (!e->live)
                bad = "a checkpoint of a consumer that does not exist";
            else if (cv != e->created_version)
                bad = "a checkpoint that names another incarnation of the consumer (created_version)";
            else if (p >= rec->position)
                bad = "a checkpoint at a position that did not exist yet when it was written";
        } else if (type_is(rec, "ConsumerDeleted")) {
            if (!data_is_null(rec)) bad = "a ConsumerDeleted event with data";
            else if (!e->live) bad = "a ConsumerDeleted event for a consumer that does not exist";
            e->live = 0;
        } else {
            bad = "an event of a type the store never writes in a consumer's stream";
        }
    }
    if (bad)
        problem(v, g->name, off, "position %" PRIu64 " (%.*s, version %" PRIu64 "): %s", rec->position,
                (int)rec->stream_len, rec->stream, rec->version, bad);
}

/* ---- pass 1 ---- */

static void offsets_name(const evs_segment *g, char *out, size_t cap)
{
    snprintf(out, cap, "%020" PRIu64 ".offsets.idx", g->base);
}

/* Check one record against the offsets file, the stream versions, the
 * indexes and (system streams) the rules of its stream. */
static void check_record(vctx *v, evs_segment *g, uint64_t off, const evs_rec *rec)
{
    evs_store *s = v->s;
    if (g->offsets) {
        uint64_t ioff = 0;
        char name[64];
        int rc = evs__offsets_read(s, g, rec->position, &ioff);
        if (rc == 0 && ioff != off) {
            offsets_name(g, name, sizeof name);
            problem(v, name, EVS_OFFSETS_HDR_SIZE + 4 * (rec->position - g->base),
                    "offset of position %" PRIu64 " is %" PRIu64 ", the record is at %" PRIu64,
                    rec->position, ioff, off);
        } else if (rc && rec->position <= v->covered) {
            offsets_name(g, name, sizeof name);
            problem(v, name, EVS_OFFSETS_HDR_SIZE + 4 * (rec->position - g->base),
                    "no entry for position %" PRIu64 ", which the checkpoint covers", rec->position);
        }
    }
    evs_stream *st = evs__streams_find(&v->versions, rec->stream, rec->stream_len);
    if (!st && evs__streams_insert(&v->versions, rec->stream, rec->stream_len, &st) != 0) return;
    if (rec->version != st->version + 1)
        problem(v, g->name, off, "position %" PRIu64 ": stream version %" PRIu64 " follows %" PRIu64,
                rec->position, rec->version, st->version);
    st->version = rec->version;
    st->last_pos = rec->position;
    if (rec->stream[0] == '$') check_system(v, g, off, st, rec);
    evs_kv kv;
    if (s->ids && rec->position <= v->ids_covered) {
        int rc = evs__lsm_get(s->ids, rec->id, 0, &kv);
        if (rc || kv.a != rec->position)
            problem(v, "ids index", rec->position, "id of position %" PRIu64 " %s", rec->position,
                    rc ? "is missing" : "maps to another position");
    }
    if (s->sidx && rec->position <= v->streams_covered) {
        uint8_t key[16];
        evs__stream_hash(rec->stream, rec->stream_len, key);
        int rc = evs__lsm_get(s->sidx, key, rec->version, &kv);
        if (rc || kv.a != rec->version || kv.b != rec->position)
            problem(v, "streams index", rec->position, "stream entry of position %" PRIu64 " %s", rec->position,
                    rc || kv.a != rec->version ? "is missing" : "maps to another position");
    }
}

/* Walk every record of segment g, expecting positions from *pos. */
static void walk_segment(vctx *v, evs_segment *g, int last, uint64_t next_base, uint64_t *pos)
{
    rreader r = {.f = g->file, .salt = g->salt};
    uint64_t off = EVS_SEG_HDR_SIZE, commit_end = off;
    g->file->vfs->size(g->file, &r.size);
    while (off < r.size && !v->cancelled) {
        evs_rec rec;
        evs_rec_status st = rr_at(&r, off, &rec);
        if (r.rc) {
            problem(v, g->name, off, "cannot be read: %s", evs_strerror(r.rc));
            *pos = next_base;
            goto out;
        }
        if (st != EVS_REC_OK) {
            /* in the last segment, after the checkpoint: the end of a torn
             * final write, which open cuts off — unless the log goes on */
            int torn = last && st != EVS_REC_BAD && *pos > v->covered;
            if (torn && !log_goes_on(&r, off, *pos, st == EVS_REC_SHORT)) break;
            problem(v, g->name, off, "%s; the rest of this segment (%" PRIu64 " bytes) cannot be trusted",
                    st == EVS_REC_BAD ? "record fails its checksum or framing"
                    : torn ? "record looks cut short by a crash, but complete records follow it (its length field "
                             "is damaged, or data is missing inside the log)"
                           : "record is cut short",
                    r.size - off);
            *pos = next_base;
            goto out;
        }
        if (rec.position != *pos) {
            problem(v, g->name, off, "record holds position %" PRIu64 ", expected %" PRIu64, rec.position, *pos);
            *pos = rec.position;
        }
        check_record(v, g, off, &rec);
        off += rec.size;
        (*pos)++;
        if (rec.flags & EVS_REC_COMMIT) commit_end = off;
        progress_add(v, rec.size, 1, 0);
    }
    if (!last && *pos != next_base)
        problem(v, g->name, off, "segment ends at position %" PRIu64 " but the next segment starts at %" PRIu64,
                *pos - 1, next_base);
    if (!last && commit_end != r.size)
        problem(v, g->name, commit_end, "sealed segment does not end with a complete append");
out:
    evs__buf_free(&r.win);
}

static void check_stream_table(vctx *v, uint64_t covered, uint64_t gen, uint64_t streams_len)
{
    evs_store *s = v->s;
    char fname[EVS_STREAMS_FNAME_MAX];
    if (!covered) return;
    evs__streams_fname(gen, fname);
    if (evs__streams_load(s, gen, streams_len) != 0) {
        problem(v, fname, 0, "stream table cannot be read");
        return;
    }
    /* the table describes the log as of `covered`; versions read past it are newer */
    for (size_t i = 0; i < s->streams.cap; i++) {
        evs_stream *t = s->streams.slots[i];
        if (!t) continue;
        evs_stream *l = evs__streams_find(&v->versions, t->name, t->name_len);
        if (!l || l->version < t->version)
            problem(v, fname, 0, "stream \"%s\" is at version %" PRIu64 " in the table but %" PRIu64 " in the log",
                    t->name, t->version, l ? l->version : 0);
    }
}

/* ---- projection indexes ---- */

typedef struct names { char **v; size_t n; } names;

static int collect_proj(void *ctx, const char *name)
{
    names *l = ctx;
    size_t n = strlen(name);
    if (n != strlen("projection-0123456789abcdef.idx") || strncmp(name, "projection-", 11) != 0 ||
        strcmp(name + n - 4, ".idx") != 0)
        return 0;
    char **nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    if (!nv) return EVS_ENOMEM;
    l->v = nv;
    if (!(l->v[l->n] = strdup(name))) return EVS_ENOMEM;
    l->n++;
    return 0;
}

/* The live projection whose name hashes to h, or NULL. */
static sysent *proj_by_hash(vctx *v, uint64_t h)
{
    for (size_t i = 0; i < v->nsys; i++)
        if (v->sys[i].proj && XXH3_64bits(v->sys[i].name, strlen(v->sys[i].name)) == h) return &v->sys[i];
    return NULL;
}

/* Check the header of one projection index; queue it for pass 2 if it is
 * one open would use. */
static void check_proj_header(vctx *v, const char *fname)
{
    char path[4096];
    evs_file *f = NULL;
    uint8_t b[PROJ_HDR];
    size_t got = 0;
    uint64_t size = 0, name_hash = strtoull(fname + 11, NULL, 16);
    if (evs__store_path(v->s, path, sizeof path, fname) != 0 || v->s->vfs->open(v->s->vfs, path, EVS_O_RDONLY, &f) != 0) {
        problem(v, fname, 0, "cannot be opened");
        return;
    }
    if (evs__fread(f, b, sizeof b, 0, &got) != 0 || f->vfs->size(f, &size) != 0) {
        problem(v, fname, 0, "cannot be read");
        goto drop;
    }
    if (got != sizeof b || memcmp(b, "EVSPROJ", 8) != 0) {
        problem(v, fname, 0, "projection index header is damaged (magic, or shorter than %u bytes)", PROJ_HDR);
        goto drop;
    }
    if (evs__get32(b + 8) > PROJ_VERSION && evs__get32(b + 8) < 0x10000) {
        problem(v, fname, 8, "written by a newer format (version %" PRIu32 "; this library reads %u)",
                evs__get32(b + 8), PROJ_VERSION);
        goto drop;
    }
    if (evs__get64(b + 56) != XXH3_64bits(b, 56)) {
        problem(v, fname, 56, "projection index header fails its checksum");
        goto drop;
    }
    if (evs__get32(b + 8) == 0 || evs__get32(b + 12) != PROJ_HDR || evs__get64(b + 48) != 0) {
        problem(v, fname, 8, "projection index header has a bad version, header size or reserved field");
        goto drop;
    }
    if (evs__get64(b + 16) != name_hash) {
        problem(v, fname, 16, "the header names another projection (name hash %016" PRIx64 ")", evs__get64(b + 16));
        goto drop;
    }
    sysent *e = proj_by_hash(v, name_hash);
    if (!e || !e->live) goto drop;  /* a deleted projection's file: open deletes it */
    uint64_t fh = evs__get64(b + 24);
    if (fh != XXH3_64bits(e->canon, e->canon_len)) {
        int earlier = 0;
        for (size_t i = 0; i < e->nfhash; i++) earlier |= e->fhash[i] == fh;
        if (!earlier)
            problem(v, fname, 24, "projection \"%s\": built for a filter it never had (filter hash %016" PRIx64 ")",
                    e->name, fh);
        goto drop;  /* built for an earlier definition: open rebuilds it */
    }
    uint64_t covered = evs__get64(b + 32), count = evs__get64(b + 40);
    if (covered > v->end) {
        problem(v, fname, 32, "projection \"%s\": covers position %" PRIu64 ", past the end of the log (%" PRIu64 ")",
                e->name, covered, v->end);
        goto drop;
    }
    if (count > covered || size < PROJ_HDR + 8 * count) {
        problem(v, fname, 40, "projection \"%s\": %" PRIu64 " entries up to position %" PRIu64 " in a file of %" PRIu64
                " bytes", e->name, count, covered, size);
        goto drop;
    }
    pcheck *pc = realloc(v->pc, (v->npc + 1) * sizeof *pc);
    if (!pc) goto drop;
    v->pc = pc;
    pcheck *c = &v->pc[v->npc];
    memset(c, 0, sizeof *c);
    if (evs__filter_parse(e->canon, e->canon_len, &c->filter) != 0) goto drop;
    snprintf(c->fname, sizeof c->fname, "%s", fname);
    c->f = f;
    c->covered = covered;
    c->count = count;
    v->npc++;
    return;
drop:
    evs__fclose(f);
}

/* Entry i of c (i < c->count), or -1 with a problem reported. */
static int proj_entry(vctx *v, pcheck *c, uint64_t i, uint64_t *out)
{
    if (i < c->cache_first || i >= c->cache_first + c->cache_n) {
        uint8_t b[8 * PCACHE];
        uint64_t n = EVS_MIN((uint64_t)PCACHE, c->count - i);
        size_t got = 0;
        if (evs__fread(c->f, b, (size_t)(8 * n), PROJ_HDR + 8 * i, &got) != 0 || got != 8 * n) {
            problem(v, c->fname, PROJ_HDR + 8 * i, "cannot read its entries");
            c->done = 1;
            return -1;
        }
        for (uint64_t k = 0; k < n; k++) c->cache[k] = evs__get64(b + 8 * k);
        c->cache_first = i;
        c->cache_n = n;
    }
    *out = c->cache[i - c->cache_first];
    return 0;
}

/* Pass 2 at one record: every index whose filter it matches must list it next. */
static void proj_record(vctx *v, const evs_rec *rec)
{
    for (size_t k = 0; k < v->npc; k++) {
        pcheck *c = &v->pc[k];
        if (c->done || rec->position > c->covered) continue;
        if (!evs__ofilter_match(&c->filter, rec->stream, rec->stream_len, rec->type, rec->type_len)) continue;
        uint64_t e = 0;
        if (c->next >= c->count) {
            problem(v, c->fname, PROJ_HDR + 8 * c->next, "position %" PRIu64 " matches the filter but is missing "
                    "(the index ends after %" PRIu64 " entries)", rec->position, c->count);
            c->done = 1;
        } else if (proj_entry(v, c, c->next, &e) == 0) {
            if (e != rec->position) {
                problem(v, c->fname, PROJ_HDR + 8 * c->next, "entry %" PRIu64 " is position %" PRIu64 ", but the next "
                        "position the filter matches is %" PRIu64 "%s", c->next, e, rec->position,
                        e < rec->position ? " (the entry names an event the filter does not match, or is out of order)"
                                          : " (missing from the index)");
                c->done = 1;
            }
            c->next++;
        }
    }
}

static void check_projections(vctx *v, const uint64_t *bases, size_t n, uint64_t bytes_total)
{
    names l = {0};
    v->s->vfs->list_dir(v->s->vfs, v->s->dir, collect_proj, &l);
    for (size_t i = 0; i < l.n; i++) check_proj_header(v, l.v[i]);
    for (size_t i = 0; i < l.n; i++) free(l.v[i]);
    free(l.v);
    if (v->npc == 0) return;
    progress_phase(v, "projections", bytes_total);
    uint64_t pos = 1;
    for (size_t i = 0; i < n && pos <= v->end && !v->cancelled; i++) {
        char name[32];
        evs_segment *g = NULL;
        snprintf(name, sizeof name, "%020" PRIu64 ".seg", bases[i]);
        if (bases[i] != pos || evs__seg_open(v->s, name, bases[i], 0, &g) != 0) break;
        rreader r = {.f = g->file, .salt = g->salt};
        g->file->vfs->size(g->file, &r.size);
        for (uint64_t off = EVS_SEG_HDR_SIZE; off < r.size && pos <= v->end && !v->cancelled;) {
            evs_rec rec;
            if (rr_at(&r, off, &rec) != EVS_REC_OK || rec.position != pos) break;  /* pass 1 reported it */
            proj_record(v, &rec);
            off += rec.size;
            pos++;
            progress_add(v, rec.size, 1, 0);
        }
        evs__buf_free(&r.win);
        evs__seg_close(g);
    }
    /* entries left over name positions past the last match up to covered */
    for (size_t k = 0; k < v->npc && !v->cancelled; k++) {
        pcheck *c = &v->pc[k];
        uint64_t e = 0;
        if (!c->done && pos > c->covered && c->next < c->count && proj_entry(v, c, c->next, &e) == 0)
            problem(v, c->fname, PROJ_HDR + 8 * c->next, "entry %" PRIu64 " is position %" PRIu64 ", which the filter "
                    "does not match (or which is out of order)", c->next, e);
    }
    progress_add(v, 0, 0, 1);
}

/* ---- the whole check ---- */

void evs_verify_options_init(evs_verify_options *vo)
{
    memset(vo, 0, sizeof *vo);
    vo->struct_size = sizeof *vo;
}

int evs_verify(const char *dir, const evs_options *opt, evs_verify_fn cb, void *ctx, uint64_t *problems)
{
    evs_verify_options vo;
    evs_verify_options_init(&vo);
    vo.problem = cb;
    vo.problem_ctx = ctx;
    return evs_verify_ex(dir, opt, &vo, problems);
}

int evs_verify_ex(const char *dir, const evs_options *opt, const evs_verify_options *vopt, uint64_t *problems)
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
    vctx v = {.s = s};
    evs_verify_options_init(&v.vo);
    if (vopt) {
        size_t n = vopt->struct_size && vopt->struct_size < sizeof v.vo ? vopt->struct_size : sizeof v.vo;
        memcpy(&v.vo, vopt, n);
    }
    uint64_t *bases = NULL;
    size_t n = 0;
    int rc = s->dir ? s->vfs->exists(s->vfs, dir) : EVS_ENOMEM;
    if (rc == 0) rc = -ENOENT;
    if (rc < 0 || (rc = evs__list_segments(s, &bases, &n)) != 0) goto out;
    /* checkpoint.idx: the covered position and stream table length */
    uint64_t covered = 0, streams_len = 0, streams_gen = 0;
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
                streams_gen = evs__get64(b + 48);
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
    /* the bytes pass 1 reads, for progress */
    uint64_t seg_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        char name[32], path[4096];
        evs_file *f = NULL;
        uint64_t size = 0;
        snprintf(name, sizeof name, "%020" PRIu64 ".seg", bases[i]);
        if (evs__store_path(s, path, sizeof path, name) == 0 && s->vfs->open(s->vfs, path, EVS_O_RDONLY, &f) == 0 &&
            f->vfs->size(f, &size) == 0)
            seg_bytes += size > EVS_SEG_HDR_SIZE ? size - EVS_SEG_HDR_SIZE : 0;
        evs__fclose(f);
    }
    progress_phase(&v, "log", seg_bytes);
    uint64_t pos = 1;
    for (size_t i = 0; i < n && !v.cancelled; i++) {
        char name[32], oname[48];
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
        int frc = evs__offsets_open(s, g, 0);
        if (frc) {
            offsets_name(g, oname, sizeof oname);
            if (frc != -ENOENT)
                problem(&v, oname, 0, "offsets index header does not belong to %s (magic, version, base or salt)",
                        name);
            else if (covered >= g->base)
                problem(&v, oname, 0, "offsets index is missing, though checkpoint.idx covers positions of %s", name);
        }
        walk_segment(&v, g, last, last ? 0 : bases[i + 1], &pos);
        evs__seg_close(g);
    }
    v.end = pos - 1;
    progress_add(&v, 0, 0, 1);
    if (!v.cancelled) {
        check_stream_table(&v, covered, streams_gen, streams_len);
        if (covered > v.end)
            problem(&v, EVS_CHECKPOINT_FILE, 16, "checkpoint covers position %" PRIu64 " but the log ends at %" PRIu64,
                    covered, v.end);
        check_projections(&v, bases, n, seg_bytes);
    }
    rc = v.cancelled ? -ECANCELED : 0;
out:
    if (problems) *problems = v.problems;
    free(bases);
    for (size_t i = 0; i < v.nsys; i++) {
        free(v.sys[i].name);
        free(v.sys[i].canon);
        free(v.sys[i].fhash);
    }
    free(v.sys);
    for (size_t i = 0; i < v.npc; i++) {
        evs__fclose(v.pc[i].f);
        evs__ofilter_free(&v.pc[i].filter);
    }
    free(v.pc);
    evs__streams_free(&v.versions);
    evs__streams_free(&s->streams);
    evs__lsm_close(s->ids);
    evs__lsm_close(s->sidx);
    pthread_rwlock_destroy(&s->seg_lock);
    free(s->dir);
    free(s);
    return rc;
}
