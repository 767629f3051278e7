/*
 * restore.c — evs_restore and evs_backup_inspect: reading backup archives
 * back, checking everything before anything becomes a data directory.
 *
 * READING. An archive file is read through the vfs, decompressed here with
 * libzstd (which checks the frame's content checksum at its end) and fed to
 * libarchive's tar reader; entries are never extracted by libarchive (no
 * paths from the archive reach the file system: names must be the manifest's
 * "<20 digits>.seg" names, in its order). At the end of the tar the rest of
 * the input must be zeros, the zstd frame must be complete, and the file must
 * end with the trailer frame whose XXH3-64 covers every byte before it: a
 * truncated, extended or altered archive is refused even where tar and the
 * content checksums alone would not notice.
 *
 * WHAT IS CHECKED, IN ORDER (restore):
 *  1. the target is absent or an empty directory;
 *  2. per archive: its manifest's own checksum and consistency
 *     (manifest.c); the chain — the first archive is full (since 0), every
 *     archive is of the same store, starts at or before the position after
 *     the last one restored so far (since <= that last) and does not end
 *     before it; every file's size and XXH3-64; a file already restored from
 *     an earlier archive must agree byte for byte with the new copy over
 *     their common length, and the longer copy is kept;
 *  3. the restored directory opens as a store at exactly the last archive's
 *     last position, without any tail being cut: from the full archive's
 *     index checkpoint when it has one (recovery then scans only the log
 *     after it), else rebuilding the indexes from the log;
 *  4. evs_verify finds no problem. If the archive's indexes fail to open
 *     or close cleanly (a merge of a damaged run fails the store), or open
 *     but fail verification, they are deleted and 3 and 4 run once more,
 *     rebuilding them.
 * Files go to "<dir>.restoring" (each fsynced), which is renamed to dir only
 * after 4 (then the parent directory is fsynced). Any failure removes it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <archive.h>
#include <archive_entry.h>
#include <xxhash.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "backup/backup_int.h"
#include "log/record.h"

#define RESTORE_SUFFIX ".restoring"
#define INCOMING_SUFFIX ".incoming"

/* ---- one archive being read: vfs file -> zstd -> tar ---- */

typedef struct rd {
    const evs_vfs *vfs;
    const evs_logger *log;
    const char *path;            /* the archive, for messages */
    evs_file *f;
    uint64_t fsize, off;         /* compressed bytes in the file, read so far */
    ZSTD_DCtx *z;
    uint8_t *in, *outb;          /* compressed input and decompressed output buffers */
    size_t incap, outcap;
    ZSTD_inBuffer ib;
    int frame_done;              /* the zstd frame decoded completely (its checksum verified) */
    XXH3_state_t *hs;            /* XXH3-64 of the compressed bytes of the frame */
    uint8_t trailer[EVS_BACKUP_TRAILER_SIZE];   /* the bytes after the frame */
    size_t tlen;
    int rc;                      /* sticky failure of the source */
    char err[400];               /* its sentence */
    struct archive *a;           /* libarchive's tar reader */
    /* progress across every archive of one call */
    evs_backup_options *bopt;
    const char *phase;
    uint64_t *done, total;
    uint64_t *events, events_total;  /* positions restored so far (NULL: not counted) */
    int cancelled;
} rd;

static int rd_error(rd *r, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int rd_error(rd *r, int rc, const char *fmt, ...)
{
    if (r->rc) return r->rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
    return r->rc = rc;
}

/* The next decompressed bytes: > 0 bytes at *out, 0 at a clean end, < 0 error. */
static la_ssize_t src_next(rd *r, const void **out)
{
    if (r->rc) return -1;
    for (;;) {
        if (r->ib.pos == r->ib.size) {
            if (r->off == r->fsize) {
                if (!r->frame_done) {
                    rd_error(r, EVS_ECORRUPT, "it is truncated (the compressed stream ends %s)",
                             r->fsize ? "in the middle of the archive" : "before it begins: the file is empty");
                    return -1;
                }
                if (r->tlen != EVS_BACKUP_TRAILER_SIZE || evs__get32(r->trailer) != EVS_BACKUP_TRAILER_MAGIC ||
                    evs__get32(r->trailer + 4) != 8) {
                    rd_error(r, EVS_ECORRUPT, "it is truncated or extended: it does not end with the %u-byte "
                             "checksum frame every evstore backup ends with", EVS_BACKUP_TRAILER_SIZE);
                    return -1;
                }
                if (evs__get64(r->trailer + 8) != XXH3_64bits_digest(r->hs)) {
                    rd_error(r, EVS_ECORRUPT, "it is damaged: its bytes fail the archive checksum (XXH3-64 %016"
                             PRIx64 ", stored %016" PRIx64 ")", XXH3_64bits_digest(r->hs), evs__get64(r->trailer + 8));
                    return -1;
                }
                return 0;
            }
            size_t want = (size_t)EVS_MIN((uint64_t)r->incap, r->fsize - r->off), got = 0;
            int rc = evs__fread(r->f, r->in, want, r->off, &got);
            if (rc) { rd_error(r, rc, "reading it at offset %" PRIu64 ": %s", r->off, evs_strerror(rc)); return -1; }
            if (got == 0) { rd_error(r, EVS_ECORRUPT, "it shrank while being read"); return -1; }
            r->ib = (ZSTD_inBuffer){r->in, got, 0};
            r->off += got;
            *r->done += got;
            evs_progress pg = {r->phase, *r->done, r->total, r->events ? *r->events : 0, r->events_total};
            if (r->bopt->progress && r->bopt->progress(r->bopt->progress_ctx, &pg) != 0) {
                r->cancelled = 1;
                rd_error(r, -ECANCELED, "cancelled");
                return -1;
            }
        }
        if (r->frame_done) {
            /* after the frame: the trailer, and nothing else */
            size_t k = r->ib.size - r->ib.pos;
            if (r->tlen + k > EVS_BACKUP_TRAILER_SIZE) {
                rd_error(r, EVS_ECORRUPT, "it has data after the end of the archive");
                return -1;
            }
            memcpy(r->trailer + r->tlen, (const uint8_t *)r->ib.src + r->ib.pos, k);
            r->tlen += k;
            r->ib.pos = r->ib.size;
            continue;
        }
        ZSTD_outBuffer ob = {r->outb, r->outcap, 0};
        size_t p0 = r->ib.pos;
        size_t ret = ZSTD_decompressStream(r->z, &ob, &r->ib);
        XXH3_64bits_update(r->hs, (const uint8_t *)r->ib.src + p0, r->ib.pos - p0);
        if (ZSTD_isError(ret)) {
            rd_error(r, EVS_ECORRUPT, "it is damaged: zstd says \"%s\"%s", ZSTD_getErrorName(ret),
                     r->off <= r->incap && ZSTD_getErrorCode(ret) == ZSTD_error_prefix_unknown
                         ? " at its start (is it a .tar.zst written by evstore backup?)" : "");
            return -1;
        }
        r->frame_done = ret == 0;
        if (ob.pos) {
            *out = r->outb;
            return (la_ssize_t)ob.pos;
        }
    }
}

static la_ssize_t tar_read(struct archive *a, void *ctx, const void **buf)
{
    rd *r = ctx;
    la_ssize_t n = src_next(r, buf);
    if (n < 0) archive_set_error(a, EIO, "%s", r->err);
    return n;
}

static void rd_close(rd *r)
{
    if (r->a) archive_read_free(r->a);
    r->a = NULL;
    ZSTD_freeDCtx(r->z);
    r->z = NULL;
    XXH3_freeState(r->hs);
    r->hs = NULL;
    free(r->in);
    free(r->outb);
    r->in = r->outb = NULL;
    evs__fclose(r->f);
    r->f = NULL;
}

static int rd_open(rd *r)
{
    int rc = r->vfs->open(r->vfs, r->path, EVS_O_RDONLY, &r->f);
    if (rc) return rd_error(r, rc, "cannot open it: %s", evs_strerror(rc));
    if ((rc = r->f->vfs->size(r->f, &r->fsize)) != 0) return rd_error(r, rc, "cannot stat it: %s", evs_strerror(rc));
    r->incap = ZSTD_DStreamInSize();
    r->outcap = ZSTD_DStreamOutSize();
    if (!(r->z = ZSTD_createDCtx()) || !(r->in = malloc(r->incap)) || !(r->outb = malloc(r->outcap)) ||
        !(r->hs = XXH3_createState()) || !(r->a = archive_read_new()))
        return rd_error(r, EVS_ENOMEM, "out of memory");
    XXH3_64bits_reset(r->hs);
    if (archive_read_support_format_tar(r->a) != ARCHIVE_OK ||
        archive_read_open(r->a, r, NULL, tar_read, NULL) != ARCHIVE_OK)
        return rd_error(r, EVS_ECORRUPT, "it is not a tar archive: %s",
                        archive_error_string(r->a) ? archive_error_string(r->a) : "unreadable");
    return 0;
}

/* A libarchive failure in sentence form (the source's own sentence first). */
static int rd_tar_error(rd *r, const char *what)
{
    if (r->rc) return r->rc;
    return rd_error(r, EVS_ECORRUPT, "it is damaged: %s: %s", what,
                    archive_error_string(r->a) ? archive_error_string(r->a) : "unreadable tar data");
}

/* The manifest: the first entry. */
static int rd_manifest(rd *r, evs_bk_manifest *m)
{
    struct archive_entry *e = NULL;
    int ar = archive_read_next_header(r->a, &e);
    if (ar != ARCHIVE_OK) return rd_tar_error(r, "reading its first entry");
    if (strcmp(archive_entry_pathname(e), EVS_BACKUP_MANIFEST) != 0 || archive_entry_filetype(e) != AE_IFREG)
        return rd_error(r, EVS_ECORRUPT, "it does not start with %s: not an evstore backup", EVS_BACKUP_MANIFEST);
    la_int64_t size = archive_entry_size(e);
    if (size <= 0 || size > (la_int64_t)EVS_BACKUP_MANIFEST_MAX)
        return rd_error(r, EVS_ECORRUPT, "its manifest has an implausible size (%lld bytes)", (long long)size);
    char *text = malloc((size_t)size);
    if (!text) return rd_error(r, EVS_ENOMEM, "out of memory");
    size_t have = 0;
    while (have < (size_t)size) {
        la_ssize_t n = archive_read_data(r->a, text + have, (size_t)size - have);
        if (n <= 0) {
            free(text);
            return rd_tar_error(r, "reading its manifest");
        }
        have += (size_t)n;
    }
    char err[300];
    int rc = evs__bk_manifest_decode(text, have, m, err, sizeof err);
    free(text);
    if (rc) return rd_error(r, rc, "%s", err);
    return 0;
}

/* What happens to each file's bytes: restore writes them, inspect only hashes. */
typedef struct file_sink {
    int (*begin)(void *ctx, const evs_bk_file *f);
    int (*data)(void *ctx, const uint8_t *p, size_t n);
    int (*end)(void *ctx, const evs_bk_file *f);
    void *ctx;
} file_sink;

/* Every file entry, in the manifest's order, with its size and checksum
 * checked; then the end of the tar and of the zstd frame. */
static int rd_files(rd *r, const evs_bk_manifest *m, const file_sink *fs)
{
    struct archive_entry *e = NULL;
    XXH3_state_t *xs = XXH3_createState();
    uint8_t *buf = malloc(EVS_BACKUP_CHUNK);
    int rc = 0;
    if (!xs || !buf) { rc = rd_error(r, EVS_ENOMEM, "out of memory"); goto out; }
    for (size_t i = 0;; i++) {
        int ar = archive_read_next_header(r->a, &e);
        size_t nall = m->nfiles + m->nidx;  /* segments, then index files */
        const evs_bk_file *want = i < m->nfiles ? &m->files[i] : i < nall ? &m->idx[i - m->nfiles] : NULL;
        if (ar == ARCHIVE_EOF) {
            if (want) {
                rc = rd_error(r, EVS_ECORRUPT, "it ends before %s, which its manifest lists", want->name);
                goto out;
            }
            break;
        }
        if (ar != ARCHIVE_OK) { rc = rd_tar_error(r, "reading an entry header"); goto out; }
        const char *name = archive_entry_pathname(e);
        if (!want || strcmp(name, want->name) != 0 || archive_entry_filetype(e) != AE_IFREG) {
            rc = rd_error(r, EVS_ECORRUPT, "it holds an entry \"%s\" its manifest does not list there%s%s", name,
                          want ? "; expected " : "", want ? want->name : "");
            goto out;
        }
        const evs_bk_file *f = want;
        if (archive_entry_size(e) < 0 || (uint64_t)archive_entry_size(e) != f->size) {
            rc = rd_error(r, EVS_ECORRUPT, "%s is %lld bytes in the archive but %" PRIu64 " in its manifest", f->name,
                          (long long)archive_entry_size(e), f->size);
            goto out;
        }
        XXH3_64bits_reset(xs);
        if (fs->begin && (rc = fs->begin(fs->ctx, f)) != 0) goto out;
        uint64_t got = 0;
        for (;;) {
            la_ssize_t n = archive_read_data(r->a, buf, EVS_BACKUP_CHUNK);
            if (n == 0) break;
            if (n < 0) { rc = rd_tar_error(r, f->name); goto out; }
            XXH3_64bits_update(xs, buf, (size_t)n);
            got += (uint64_t)n;
            if (fs->data && (rc = fs->data(fs->ctx, buf, (size_t)n)) != 0) goto out;
        }
        if (got != f->size) { rc = rd_error(r, EVS_ECORRUPT, "%s is cut short in the archive", f->name); goto out; }
        if (XXH3_64bits_digest(xs) != f->xxh3) {
            rc = rd_error(r, EVS_ECORRUPT, "it is damaged: %s fails its checksum (XXH3-64 %016" PRIx64
                          ", the manifest says %016" PRIx64 ")", f->name, XXH3_64bits_digest(xs), f->xxh3);
            goto out;
        }
        if (fs->end && (rc = fs->end(fs->ctx, f)) != 0) goto out;
    }
    /* past the tar's end: only zeros, then the end of the zstd frame */
    for (;;) {
        const void *p = NULL;
        la_ssize_t n = src_next(r, &p);
        if (n < 0) { rc = r->rc; goto out; }
        if (n == 0) break;
        for (la_ssize_t j = 0; j < n; j++)
            if (((const uint8_t *)p)[j]) { rc = rd_error(r, EVS_ECORRUPT, "it has data after the end of its tar archive"); goto out; }
    }
out:
    if (rc && !r->rc) r->rc = rc;
    XXH3_freeState(xs);
    free(buf);
    return rc;
}

/* ---- restore: writing files into the temporary directory ---- */

typedef struct wr {
    const evs_vfs *vfs;
    const char *tmp;             /* the temporary directory */
    const char *archive;         /* for messages */
    evs_file *f;                 /* being written */
    evs_file *old;               /* the copy restored earlier, or NULL */
    uint64_t old_size, off;
    uint8_t *cmp;                /* for comparing with old */
    uint64_t events;             /* the last position of the files written so far */
    char path[4096], final[4096];
    char err[400];
    int rc;
} wr;

static int wr_error(wr *w, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int wr_error(wr *w, int rc, const char *fmt, ...)
{
    if (w->rc) return w->rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
    return w->rc = rc;
}

static void wr_reset(wr *w)
{
    evs__fclose(w->f);
    evs__fclose(w->old);
    w->f = w->old = NULL;
}

static int wr_begin(void *ctx, const evs_bk_file *f)
{
    wr *w = ctx;
    int rc = evs__path(w->final, sizeof w->final, w->tmp, f->name);
    if (rc) return wr_error(w, rc, "path too long");
    w->off = 0;
    w->old_size = 0;
    rc = w->vfs->exists(w->vfs, w->final);
    if (rc < 0) return wr_error(w, rc, "cannot look at %s: %s", w->final, evs_strerror(rc));
    snprintf(w->path, sizeof w->path, "%s", w->final);
    if (rc == 1) {
        /* restored from an earlier archive: the new copy must agree with it */
        if ((rc = w->vfs->open(w->vfs, w->final, EVS_O_RDONLY, &w->old)) != 0 ||
            (rc = w->old->vfs->size(w->old, &w->old_size)) != 0)
            return wr_error(w, rc, "cannot read %s: %s", w->final, evs_strerror(rc));
        if (strlen(w->final) + strlen(INCOMING_SUFFIX) >= sizeof w->path) return wr_error(w, -ENAMETOOLONG, "path too long");
        size_t fl = strlen(w->final);  /* length checked above: plain copies, no format */
        memcpy(w->path, w->final, fl);
        memcpy(w->path + fl, INCOMING_SUFFIX, sizeof INCOMING_SUFFIX);
    }
    if ((rc = w->vfs->open(w->vfs, w->path, EVS_O_RDWR | EVS_O_CREATE | EVS_O_TRUNC, &w->f)) != 0)
        return wr_error(w, rc, "cannot create %s: %s", w->path, evs_strerror(rc));
    return 0;
}

static int wr_data(void *ctx, const uint8_t *p, size_t n)
{
    wr *w = ctx;
    int rc;
    if (w->old && w->off < w->old_size) {
        size_t k = (size_t)EVS_MIN((uint64_t)n, w->old_size - w->off), got = 0;
        if ((rc = evs__fread(w->old, w->cmp, k, w->off, &got)) != 0)
            return wr_error(w, rc, "reading the earlier copy: %s", evs_strerror(rc));
        if (got != k || memcmp(w->cmp, p, k) != 0) {
            size_t at = 0;
            while (at < got && w->cmp[at] == p[at]) at++;
            const char *name = strrchr(w->final, '/');
            return wr_error(w, EVS_EINVAL, "%s in %s differs from the copy restored from an earlier archive at byte "
                            "%" PRIu64 ": the archives are not one store's history", name ? name + 1 : w->final,
                            w->archive, w->off + at);
        }
    }
    if ((rc = evs__fwrite(w->f, p, n, w->off, NULL)) != 0)
        return wr_error(w, rc, "writing %s: %s", w->path, evs_strerror(rc));
    w->off += n;
    return 0;
}

static int wr_end(void *ctx, const evs_bk_file *f)
{
    wr *w = ctx;
    if (f->last > w->events) w->events = f->last;
    int rc = w->f->vfs->sync(w->f);
    if (rc) return wr_error(w, rc, "fsync of %s: %s", w->path, evs_strerror(rc));
    evs__fclose(w->f);
    w->f = NULL;
    if (!w->old) return 0;
    evs__fclose(w->old);
    w->old = NULL;
    /* every byte both copies have agrees: keep the longer one */
    if (f->size >= w->old_size) rc = w->vfs->rename(w->vfs, w->path, w->final);
    else rc = w->vfs->unlink(w->vfs, w->path);
    if (rc) return wr_error(w, rc, "replacing %s: %s", w->final, evs_strerror(rc));
    return 0;
}

/* ---- the temporary directory ---- */

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Names only restore (and the store it opens) put in the temporary directory. */
static int ours(const char *name)
{
    return ends_with(name, ".seg") || ends_with(name, ".seg" INCOMING_SUFFIX) || ends_with(name, ".idx") ||
           ends_with(name, ".tmp") || strcmp(name, "evstore.lock") == 0;
}

typedef struct names { char **v; size_t n; int foreign; } names;

static int collect(void *ctx, const char *name)
{
    names *l = ctx;
    if (!ours(name)) l->foreign = 1;
    char **v = realloc(l->v, (l->n + 1) * sizeof *v);
    if (!v) return EVS_ENOMEM;
    l->v = v;
    if (!(l->v[l->n] = strdup(name))) return EVS_ENOMEM;
    l->n++;
    return 0;
}

static void names_free(names *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Remove the temporary directory and what restore put in it; refuse (-EEXIST)
 * if it holds anything else. */
static int remove_tmp(const evs_vfs *vfs, const char *tmp)
{
    names l = {0};
    int rc = vfs->list_dir(vfs, tmp, collect, &l);
    if (rc == -ENOENT) { names_free(&l); return 0; }
    if (rc == 0 && l.foreign) rc = -EEXIST;
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        char path[4096];
        if ((rc = evs__path(path, sizeof path, tmp, l.v[i])) == 0) rc = vfs->unlink(vfs, path);
    }
    names_free(&l);
    if (rc == 0 && vfs->rmdir) rc = vfs->rmdir(vfs, tmp);
    return rc;
}

/* Remove every *.idx file of the temporary directory (the store rebuilds them). */
static int remove_idx(const evs_vfs *vfs, const char *tmp)
{
    names l = {0};
    int rc = vfs->list_dir(vfs, tmp, collect, &l);
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        char path[4096];
        if (!ends_with(l.v[i], ".idx")) continue;
        if ((rc = evs__path(path, sizeof path, tmp, l.v[i])) == 0) rc = vfs->unlink(vfs, path);
    }
    names_free(&l);
    if (rc == 0) rc = vfs->sync_dir(vfs, tmp);
    return rc;
}

/* The parent directory of path (for fsync after the rename). */
static void parent_of(const char *path, char *out, size_t cap)
{
    size_t pl = strlen(path);
    while (pl > 1 && path[pl - 1] == '/') pl--;
    while (pl > 0 && path[pl - 1] != '/') pl--;
    while (pl > 1 && path[pl - 1] == '/') pl--;
    if (pl == 0) snprintf(out, cap, ".");
    else snprintf(out, cap, "%.*s", (int)pl, path);
}

static int count_entry(void *ctx, const char *name)
{
    (*(size_t *)ctx)++;
    return 0;
}

typedef struct vproblem { uint64_t n; char first[400]; } vproblem;

/* evs_verify's progress, passed on to the caller's. */
static int on_verify_progress(void *ctx, const evs_progress *p)
{
    const evs_backup_options *bo = ctx;
    return bo->progress(bo->progress_ctx, p);
}

static void on_problem(void *ctx, const char *file, uint64_t off, const char *problem)
{
    vproblem *v = ctx;
    if (v->n++ == 0) snprintf(v->first, sizeof v->first, "%s at offset %" PRIu64 ": %s", file, off, problem);
}

/* Files and bytes of the segments in dir. */
typedef struct seg_tally { const evs_vfs *vfs; const char *dir; uint64_t files, bytes; int rc; } seg_tally;

static int tally(void *ctx, const char *name)
{
    seg_tally *t = ctx;
    uint64_t base, size = 0;
    if (!evs__bk_seg_name(name, &base)) return 0;
    char path[4096];
    evs_file *f = NULL;
    if (evs__path(path, sizeof path, t->dir, name) == 0 && t->vfs->open(t->vfs, path, EVS_O_RDONLY, &f) == 0) {
        f->vfs->size(f, &size);
        evs__fclose(f);
    }
    t->files++;
    t->bytes += size;
    return 0;
}

int evs_restore(const char *const *archives, size_t n, const char *dir, const evs_options *opt,
                const evs_backup_options *bopt, evs_backup_info *info)
{
    evs_backup_info own;
    if (!info) info = &own;
    memset(info, 0, sizeof *info);
    evs_options o;
    evs_options_init(&o);
    if (opt) {
        size_t sz = opt->struct_size && opt->struct_size < sizeof o ? opt->struct_size : sizeof o;
        memcpy(&o, opt, sz);
        o.struct_size = sizeof o;
    }
    o.read_only = 0;
    o.create = 0;
    o.repair = 0;
    evs_backup_options bo;
    evs_backup_options_init(&bo);
    if (bopt) {
        size_t sz = bopt->struct_size && bopt->struct_size < sizeof bo ? bopt->struct_size : sizeof bo;
        memcpy(&bo, bopt, sz);
    }
    const evs_vfs *vfs = o.vfs ? o.vfs : evs__vfs_posix();
    evs_logger lg = {o.log, o.log_ctx, o.log_level};
    char tmp[4096], parent[4096];
    int rc = 0, made_tmp = 0;
    evs_bk_manifest m;
    memset(&m, 0, sizeof m);
    wr w;
    memset(&w, 0, sizeof w);
    w.vfs = vfs;
    w.tmp = tmp;
    if (n == 0 || !dir || !*dir) return evs__bk_fail(&lg, info, EVS_EINVAL, "restore needs at least one archive and a directory");

    /* 1. the target */
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    if (dl + strlen(RESTORE_SUFFIX) + 1 > sizeof tmp) return evs__bk_fail(&lg, info, -ENAMETOOLONG, "%s: path too long", dir);
    snprintf(tmp, sizeof tmp, "%.*s" RESTORE_SUFFIX, (int)dl, dir);
    parent_of(dir, parent, sizeof parent);
    rc = vfs->exists(vfs, dir);
    if (rc < 0) return evs__bk_fail(&lg, info, rc, "cannot look at %s: %s", dir, evs_strerror(rc));
    if (rc == 1) {
        size_t entries = 0;
        rc = vfs->list_dir(vfs, dir, count_entry, &entries);
        if (rc == -ENOTDIR) return evs__bk_fail(&lg, info, -ENOTDIR, "%s exists and is not a directory", dir);
        if (rc) return evs__bk_fail(&lg, info, rc, "cannot list %s: %s", dir, evs_strerror(rc));
        if (entries)
            return evs__bk_fail(&lg, info, -ENOTEMPTY, "%s is not empty (%zu entr%s): restore only creates a new "
                                "store, in a new or empty directory", dir, entries, entries == 1 ? "y" : "ies");
    }
    rc = vfs->exists(vfs, tmp);
    if (rc == 1) {
        evs__logf(&lg, EVS_LOG_WARN, "removing %s, left by an interrupted restore", tmp);
        if ((rc = remove_tmp(vfs, tmp)) != 0)
            return evs__bk_fail(&lg, info, rc, "%s exists and holds files restore did not put there; move it away "
                                "(%s)", tmp, evs_strerror(rc));
    }
    rc = vfs->mkdir(vfs, tmp);
    if (rc && rc != -EEXIST) return evs__bk_fail(&lg, info, rc, "cannot create %s: %s", tmp, evs_strerror(rc));
    made_tmp = 1;
    if (!(w.cmp = malloc(EVS_BACKUP_CHUNK))) { rc = EVS_ENOMEM; goto out; }

    /* 2. the archives, in order */
    uint64_t total = 0, done = 0, prev_last = 0, events_total = 0;
    int had_idx = 0;             /* the full archive brought an index checkpoint */
    char store_id[17] = "";
    for (size_t i = 0; i < n; i++) {
        evs_file *f = NULL;
        uint64_t size = 0;
        rc = vfs->open(vfs, archives[i], EVS_O_RDONLY, &f);
        if (rc == 0) rc = f->vfs->size(f, &size);
        evs__fclose(f);
        if (rc) { rc = evs__bk_fail(&lg, info, rc, "cannot read %s: %s", archives[i], evs_strerror(rc)); goto out; }
        total += size;
        /* for progress, the chain's last position (a damaged manifest is reported below) */
        evs_backup_info ii;
        if (bo.progress && evs_backup_inspect(archives[i], &o, 0, NULL, &ii) == 0 && ii.last_position > events_total)
            events_total = ii.last_position;
    }
    for (size_t i = 0; i < n; i++) {
        rd r;
        memset(&r, 0, sizeof r);
        r.vfs = vfs;
        r.log = &lg;
        r.path = archives[i];
        r.bopt = &bo;
        r.phase = "extract";
        r.done = &done;
        r.total = total;
        r.events = &w.events;
        r.events_total = events_total;
        w.archive = archives[i];
        file_sink fs = {wr_begin, wr_data, wr_end, &w};
        if ((rc = rd_open(&r)) == 0 && (rc = rd_manifest(&r, &m)) == 0) {
            if (i == 0 && m.since != 0)
                rc = rd_error(&r, EVS_EINVAL, "it is an incremental backup (since %" PRIu64 "): a restore starts "
                              "with a full backup, followed by its increments in the order they were taken", m.since);
            else if (i > 0 && strcmp(m.store_id, store_id) != 0)
                rc = rd_error(&r, EVS_EINVAL, "it is a backup of another store (store id %s; the archives before "
                              "it: %s)", m.store_id, store_id);
            else if (m.since > prev_last)
                rc = rd_error(&r, EVS_EINVAL, "it holds the positions after %" PRIu64 ", but the archives before it "
                              "end at %" PRIu64 ": positions %" PRIu64 "..%" PRIu64 " are missing (is an increment "
                              "missing, or are the archives out of order?)", m.since, prev_last, prev_last + 1, m.since);
            else if (m.last < prev_last)
                rc = rd_error(&r, EVS_EINVAL, "it ends at position %" PRIu64 ", before the archives given ahead of "
                              "it (%" PRIu64 "): give the archives in the order they were taken", m.last, prev_last);
            if (rc == 0) rc = rd_files(&r, &m, &fs);
        }
        if (rc) {
            const char *why = w.rc ? w.err : r.err;
            rc = evs__bk_fail(&lg, info, w.rc ? w.rc : r.rc ? r.rc : rc, "%s: %s", archives[i], why[0] ? why : evs_strerror(rc));
        } else {
            prev_last = m.last;
            if (i == 0 && m.nidx) had_idx = 1;
            snprintf(store_id, sizeof store_id, "%s", m.store_id);
            info->created_us = m.created_us;
            evs_progress pg = {"extract", done, total, w.events, events_total};
            if (bo.progress && bo.progress(bo.progress_ctx, &pg) != 0)
                rc = evs__bk_fail(&lg, info, -ECANCELED, "restore cancelled");
        }
        wr_reset(&w);
        rd_close(&r);
        evs__bk_manifest_free(&m);
        if (rc) goto out;
    }
    info->archive_bytes = done;
    snprintf(info->store_id, sizeof info->store_id, "%s", store_id);
    if ((rc = vfs->sync_dir(vfs, tmp)) != 0) {
        rc = evs__bk_fail(&lg, info, rc, "fsync of %s: %s", tmp, evs_strerror(rc));
        goto out;
    }

    /* 3. it opens at exactly the chain's last position — from the archive's
     * index checkpoint, scanning only the log after it, or rebuilding the
     * indexes from the log when there is none (or it is damaged: recovery
     * rebuilds by itself) — and 4. evs_verify finds no problem. Should the
     * archive's indexes open but fail verification, they are removed and
     * the store is opened and verified again, rebuilding them from the log. */
    for (int attempt = 0;; attempt++) {
        {
            evs_progress pg = {"open", 0, 0, 0, prev_last};
            if (bo.progress && bo.progress(bo.progress_ctx, &pg) != 0) {
                rc = evs__bk_fail(&lg, info, -ECANCELED, "restore cancelled");
                goto out;
            }
        }
        {
            evs_store *s = NULL;
            evs_stats st;
            memset(&st, 0, sizeof st);
            rc = evs_open(tmp, &o, &s);
            if (rc == 0) rc = evs_stat(s, &st);
            int crc = evs_close(s);
            if ((rc || crc) && attempt == 0 && had_idx) {
                /* the archive's indexes may be what failed (a damaged run
                 * found by recovery or by a merge of the index thread, which
                 * fails the store): rebuild them from the log, once */
                evs__logf(&lg, EVS_LOG_WARN, "restore: the store did not open or close cleanly with the archive's "
                          "indexes (%s); rebuilding them from the log", evs_strerror(rc ? rc : crc));
                if ((rc = remove_idx(vfs, tmp)) != 0) {
                    rc = evs__bk_fail(&lg, info, rc, "removing the archive's indexes from %s: %s", tmp,
                                      evs_strerror(rc));
                    goto out;
                }
                continue;
            }
            if (rc) {
                rc = evs__bk_fail(&lg, info, rc == EVS_EFORMAT ? rc : EVS_ECORRUPT, "the restored files do not open "
                                  "as a store: %s (the store's log says why)", evs_strerror(rc));
                goto out;
            }
            if (crc) {
                rc = evs__bk_fail(&lg, info, crc, "closing the restored store: %s", evs_strerror(crc));
                goto out;
            }
            if (st.position != prev_last || st.recovered_truncated_bytes) {
                rc = evs__bk_fail(&lg, info, EVS_ECORRUPT, "the restored store ends at position %" PRIu64 " (%" PRIu64
                                  " bytes cut at open) instead of %" PRIu64, st.position, st.recovered_truncated_bytes,
                                  prev_last);
                goto out;
            }
        }
        vproblem vp = {0};
        uint64_t problems = 0;
        evs_verify_options vo;
        evs_verify_options_init(&vo);
        vo.problem = on_problem;
        vo.problem_ctx = &vp;
        if (bo.progress) {
            vo.progress = on_verify_progress;
            vo.progress_ctx = &bo;
        }
        rc = evs_verify_ex(tmp, &o, &vo, &problems);
        if (rc == -ECANCELED) { rc = evs__bk_fail(&lg, info, rc, "restore cancelled"); goto out; }
        if (rc) { rc = evs__bk_fail(&lg, info, rc, "verifying the restored store: %s", evs_strerror(rc)); goto out; }
        if (problems && attempt == 0 && had_idx) {
            evs__logf(&lg, EVS_LOG_WARN, "restore: the archive's indexes fail verification (%" PRIu64 " problems; the "
                      "first: %s); rebuilding them from the log", problems, vp.first);
            if ((rc = remove_idx(vfs, tmp)) != 0) {
                rc = evs__bk_fail(&lg, info, rc, "removing the archive's indexes from %s: %s", tmp, evs_strerror(rc));
                goto out;
            }
            continue;
        }
        if (problems) {
            rc = evs__bk_fail(&lg, info, EVS_ECORRUPT, "the restored store fails verification (%" PRIu64
                              " problems; the first: %s)", problems, vp.first);
            goto out;
        }
        break;
    }
    seg_tally t = {vfs, tmp, 0, 0, 0};
    vfs->list_dir(vfs, tmp, tally, &t);
    info->files = t.files;
    info->bytes = t.bytes;
    info->first_position = prev_last ? 1 : 0;
    info->last_position = prev_last;
    /* into place */
    if ((rc = vfs->sync_dir(vfs, tmp)) != 0 || (rc = vfs->rename(vfs, tmp, dir)) != 0) {
        rc = evs__bk_fail(&lg, info, rc, "moving %s to %s: %s", tmp, dir, evs_strerror(rc));
        goto out;
    }
    made_tmp = 0;
    if ((rc = vfs->sync_dir(vfs, parent)) != 0) {
        rc = evs__bk_fail(&lg, info, rc, "fsync of %s after the rename: %s", parent, evs_strerror(rc));
        goto out;
    }
    evs__logf(&lg, EVS_LOG_INFO, "restored %zu archive%s into %s: positions 1..%" PRIu64 ", %" PRIu64 " segments",
              n, n == 1 ? "" : "s", dir, prev_last, t.files);
out:
    if (rc && !info->message[0]) evs__bk_fail(&lg, info, rc, "restore failed: %s", evs_strerror(rc));
    wr_reset(&w);
    free(w.cmp);
    evs__bk_manifest_free(&m);
    if (made_tmp) remove_tmp(vfs, tmp);
    return rc;
}

/* evs_backup_inspect counts the positions of the files it has checked. */
typedef struct ins_count { uint64_t since, events; } ins_count;

static int ins_end(void *ctx, const evs_bk_file *f)
{
    ins_count *c = ctx;
    uint64_t e = f->last > c->since ? f->last - c->since : 0;
    if (e > c->events) c->events = e;
    return 0;
}

int evs_backup_inspect(const char *archive, const evs_options *opt, int full, const evs_backup_options *bopt,
                       evs_backup_info *info)
{
    evs_backup_info own;
    if (!info) info = &own;
    memset(info, 0, sizeof *info);
    evs_options o;
    evs_options_init(&o);
    if (opt) {
        size_t sz = opt->struct_size && opt->struct_size < sizeof o ? opt->struct_size : sizeof o;
        memcpy(&o, opt, sz);
    }
    evs_backup_options bo;
    evs_backup_options_init(&bo);
    if (bopt) {
        size_t sz = bopt->struct_size && bopt->struct_size < sizeof bo ? bopt->struct_size : sizeof bo;
        memcpy(&bo, bopt, sz);
    }
    evs_logger lg = {o.log, o.log_ctx, o.log_level};
    evs_bk_manifest m;
    memset(&m, 0, sizeof m);
    uint64_t done = 0;
    rd r;
    memset(&r, 0, sizeof r);
    r.vfs = o.vfs ? o.vfs : evs__vfs_posix();
    r.log = &lg;
    r.path = archive;
    r.bopt = &bo;
    r.phase = "check";
    r.done = &done;
    ins_count cnt = {0, 0};
    file_sink fs = {NULL, NULL, ins_end, &cnt};
    r.events = &cnt.events;
    int rc = rd_open(&r);
    r.total = r.fsize;
    if (rc == 0) rc = rd_manifest(&r, &m);
    if (rc == 0) {
        cnt.since = m.since;
        r.events_total = m.last - m.since;
        info->since = m.since;
        info->first_position = m.first;
        info->last_position = m.last;
        info->files = m.nfiles;
        for (size_t i = 0; i < m.nfiles; i++) info->bytes += m.files[i].size;
        info->created_us = m.created_us;
        snprintf(info->store_id, sizeof info->store_id, "%s", m.store_id);
        if (full) rc = rd_files(&r, &m, &fs);
        evs_progress pg = {r.phase, done, r.total, cnt.events, r.events_total};
        if (rc == 0 && full && bo.progress && bo.progress(bo.progress_ctx, &pg) != 0) {
            r.rc = rc = -ECANCELED;
            snprintf(r.err, sizeof r.err, "cancelled");
        }
    }
    info->archive_bytes = full && rc == 0 ? r.fsize : done;
    if (rc) evs__bk_fail(&lg, info, r.rc ? r.rc : rc, "%s: %s", archive, r.err[0] ? r.err : evs_strerror(rc));
    if (rc && r.rc) rc = r.rc;
    rd_close(&r);
    evs__bk_manifest_free(&m);
    return rc;
}
