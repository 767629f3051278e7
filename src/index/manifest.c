/*
 * manifest.c — names of an index's files, listing them, and the manifest file.
 *
 * Manifest "<name>.manifest.idx", little-endian, (40 + 32 n + 8) bytes:
 *
 *   off  size  field
 *     0     8  magic "EVSIDXMF"
 *     8     4  format version (1)
 *    12     4  n: number of live runs
 *    16     8  covered: highest log position fully in the runs
 *    24     8  next_seq: sequence number of the next run file (> every listed seq)
 *    32     8  generation: +1 per write (diagnostics)
 *    40  32*n  runs, oldest first: seq u64 | entries u64 | file size u64 | run header checksum u64
 *  40+32n   8  XXH3-64 of bytes [0, 40+32n)
 *
 * Valid when: the magic matches, the version is 1 (a higher one is
 * EVS_EFORMAT), the file is exactly 48 + 32 n bytes, the checksum matches,
 * every seq is < next_seq, no seq repeats and every run has entries >= 1.
 *
 * Invariant kept: the manifest is replaced only by writing
 * "<name>.manifest.tmp.idx", fsyncing it, renaming it over the manifest and
 * fsyncing the directory, so a crash leaves either the old or the new one
 * (plus perhaps a temp file that open deletes).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "index/manifest.h"

int evs__idx_check_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 100 || strchr(name, '/'))
        return EVS_EINVAL;
    return 0;
}

int evs__idx_run_name(char *out, size_t cap, const char *name, uint64_t seq, int tmp)
{
    int n = snprintf(out, cap, "%s-%020" PRIu64 "%s", name, seq, tmp ? ".tmp.idx" : ".idx");
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

int evs__idx_man_name(char *out, size_t cap, const char *name, int tmp)
{
    int n = snprintf(out, cap, "%s%s", name, tmp ? ".manifest.tmp.idx" : ".manifest.idx");
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

int evs__idx_classify(const char *name, const char *fname, uint64_t *seq)
{
    size_t nl = strlen(name);
    if (strncmp(fname, name, nl) != 0)
        return EVS_IDXF_NONE;
    const char *rest = fname + nl;
    if (!strcmp(rest, ".manifest.idx"))
        return EVS_IDXF_MANIFEST;
    if (!strcmp(rest, ".manifest.tmp.idx"))
        return EVS_IDXF_MANIFEST_TMP;
    if (rest[0] != '-')
        return EVS_IDXF_NONE;
    rest++;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (rest[i] < '0' || rest[i] > '9')
            return EVS_IDXF_NONE;
        uint64_t d = (uint64_t)(rest[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return EVS_IDXF_NONE;
        v = v * 10 + d;
    }
    rest += 20;
    int kind = EVS_IDXF_NONE;
    if (!strcmp(rest, ".idx"))
        kind = EVS_IDXF_RUN;
    else if (!strcmp(rest, ".tmp.idx"))
        kind = EVS_IDXF_RUN_TMP;
    if (kind != EVS_IDXF_NONE && seq)
        *seq = v;
    return kind;
}

typedef struct list_ctx {
    const char *name;      /* the index name */
    evs__idx_file *files;  /* growing array (owned until handed out) */
    size_t n;              /* files found */
    size_t cap;            /* capacity of files */
} list_ctx;

static int list_cb(void *cbctx, const char *fname)
{
    list_ctx *lc = cbctx;
    uint64_t seq = 0;
    int kind = evs__idx_classify(lc->name, fname, &seq);
    if (kind == EVS_IDXF_NONE || strlen(fname) >= EVS_IDX_FNAME_MAX)
        return 0;
    if (lc->n == lc->cap) {
        size_t ncap = lc->cap ? lc->cap * 2 : 16;
        evs__idx_file *nf = realloc(lc->files, ncap * sizeof *nf);
        if (!nf)
            return EVS_ENOMEM;
        lc->files = nf;
        lc->cap = ncap;
    }
    evs__idx_file *f = &lc->files[lc->n++];
    memcpy(f->fname, fname, strlen(fname) + 1);
    f->kind = kind;
    f->seq = seq;
    return 0;
}

int evs__idx_list(const evs_vfs *vfs, const char *dir, const char *name, evs__idx_file **out,
                  size_t *n)
{
    list_ctx lc = { .name = name };
    int rc = vfs->list_dir(vfs, dir, list_cb, &lc);
    if (rc) {
        free(lc.files);
        return rc;
    }
    *out = lc.files;
    *n = lc.n;
    return 0;
}

int evs__idx_slurp(const evs_vfs *vfs, const char *path, uint8_t **out, size_t *len)
{
    int rc = 0;
    evs_file *f = NULL;
    uint8_t *p = NULL;
    uint64_t size = 0;
    size_t got = 0;
    if ((rc = vfs->open(vfs, path, EVS_O_RDONLY, &f)) != 0)
        goto out;
    if ((rc = f->vfs->size(f, &size)) != 0)
        goto out;
    if (size > (uint64_t)1 << 30) {
        rc = -EFBIG;
        goto out;
    }
    p = malloc(size ? (size_t)size : 1);
    if (!p) {
        rc = EVS_ENOMEM;
        goto out;
    }
    if ((rc = evs__fread(f, p, (size_t)size, 0, &got)) != 0)
        goto out;
    *out = p;
    *len = got;
    p = NULL;
out:
    free(p);
    evs__fclose(f);
    return rc;
}

void evs__man_free(evs__manifest *m)
{
    free(m->runs);
    m->runs = NULL;
    m->nruns = 0;
}

int evs__man_decode(const uint8_t *p, size_t len, evs__manifest *m, uint64_t *off,
                    const char **what)
{
    memset(m, 0, sizeof *m);
    *off = 0;
    if (len < EVS_MAN_HDR + 8 || memcmp(p, EVS_MAN_MAGIC, 8) != 0) {
        *what = len < EVS_MAN_HDR + 8 ? "manifest shorter than its header" : "bad manifest magic";
        return EVS_ECORRUPT;
    }
    uint32_t version = evs__get32(p + 8);
    if (version != EVS_MAN_VERSION) {
        *off = 8;
        *what = version > EVS_MAN_VERSION ? "manifest written by a newer format version"
                                          : "bad manifest format version";
        return version > EVS_MAN_VERSION ? EVS_EFORMAT : EVS_ECORRUPT;
    }
    uint32_t n = evs__get32(p + 12);
    if (n > EVS_MAN_MAX_RUNS || len != EVS_MAN_HDR + (size_t)n * EVS_MAN_RUN + 8) {
        *off = 12;
        *what = "manifest size does not match its run count";
        return EVS_ECORRUPT;
    }
    size_t body = EVS_MAN_HDR + (size_t)n * EVS_MAN_RUN;
    if (XXH3_64bits(p, body) != evs__get64(p + body)) {
        *off = body;
        *what = "manifest checksum mismatch";
        return EVS_ECORRUPT;
    }
    m->covered = evs__get64(p + 16);
    m->next_seq = evs__get64(p + 24);
    m->gen = evs__get64(p + 32);
    if (n > 0) {
        m->runs = calloc(n, sizeof *m->runs);
        if (!m->runs)
            return EVS_ENOMEM;
    }
    m->nruns = n;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *r = p + EVS_MAN_HDR + (size_t)i * EVS_MAN_RUN;
        evs__man_run *mr = &m->runs[i];
        mr->seq = evs__get64(r);
        mr->entries = evs__get64(r + 8);
        mr->size = evs__get64(r + 16);
        mr->hdr_sum = evs__get64(r + 24);
        *off = EVS_MAN_HDR + (uint64_t)i * EVS_MAN_RUN;
        if (mr->seq >= m->next_seq) {
            *what = "run sequence number not below next_seq";
            goto bad;
        }
        if (mr->entries == 0) {
            *what = "run with zero entries";
            goto bad;
        }
        for (uint32_t j = 0; j < i; j++)
            if (m->runs[j].seq == mr->seq) {
                *what = "run listed twice";
                goto bad;
            }
    }
    *off = 0;
    return 0;
bad:
    evs__man_free(m);
    return EVS_ECORRUPT;
}

int evs__man_read(const evs_vfs *vfs, const evs_logger *lg, const char *dir, const char *name,
                  evs__manifest *m)
{
    int rc = 0;
    char fname[EVS_IDX_FNAME_MAX], path[EVS_IDX_PATH_MAX];
    uint8_t *p = NULL;
    size_t len = 0;
    uint64_t off = 0;
    const char *what = NULL;
    if ((rc = evs__idx_man_name(fname, sizeof fname, name, 0)) != 0 ||
        (rc = evs__path(path, sizeof path, dir, fname)) != 0)
        goto out;
    if ((rc = evs__idx_slurp(vfs, path, &p, &len)) != 0) {
        if (rc == -ENOENT)
            rc = EVS_ENOTFOUND;
        goto out;
    }
    rc = evs__man_decode(p, len, m, &off, &what);
    if (rc == EVS_ECORRUPT)
        rc = EVS_CORRUPT_HERE(lg, path, off, what);
    else if (rc == EVS_EFORMAT)
        evs__logf(lg, EVS_LOG_ERROR, "%s: %s", path, what);
out:
    free(p);
    return rc;
}

int evs__man_encode(const evs__manifest *m, uint8_t **out, size_t *len)
{
    size_t body = EVS_MAN_HDR + m->nruns * EVS_MAN_RUN;
    uint8_t *p = calloc(1, body + 8);
    if (!p)
        return EVS_ENOMEM;
    memcpy(p, EVS_MAN_MAGIC, 8);
    evs__put32(p + 8, EVS_MAN_VERSION);
    evs__put32(p + 12, (uint32_t)m->nruns);
    evs__put64(p + 16, m->covered);
    evs__put64(p + 24, m->next_seq);
    evs__put64(p + 32, m->gen);
    for (size_t i = 0; i < m->nruns; i++) {
        uint8_t *r = p + EVS_MAN_HDR + i * EVS_MAN_RUN;
        evs__put64(r, m->runs[i].seq);
        evs__put64(r + 8, m->runs[i].entries);
        evs__put64(r + 16, m->runs[i].size);
        evs__put64(r + 24, m->runs[i].hdr_sum);
    }
    evs__put64(p + body, XXH3_64bits(p, body));
    *out = p;
    *len = body + 8;
    return 0;
}

int evs__man_write(const evs_vfs *vfs, const char *dir, const char *name, const evs__manifest *m,
                   int *renamed)
{
    int rc = 0;
    char tname[EVS_IDX_FNAME_MAX], fname[EVS_IDX_FNAME_MAX];
    char tpath[EVS_IDX_PATH_MAX], fpath[EVS_IDX_PATH_MAX];
    evs_file *f = NULL;
    uint8_t *p = NULL;
    int created = 0;
    size_t len = 0;
    if (renamed)
        *renamed = 0;
    if (m->nruns > EVS_MAN_MAX_RUNS)
        return EVS_EINVAL;
    if ((rc = evs__idx_man_name(tname, sizeof tname, name, 1)) != 0 ||
        (rc = evs__idx_man_name(fname, sizeof fname, name, 0)) != 0 ||
        (rc = evs__path(tpath, sizeof tpath, dir, tname)) != 0 ||
        (rc = evs__path(fpath, sizeof fpath, dir, fname)) != 0)
        goto out;
    if ((rc = evs__man_encode(m, &p, &len)) != 0)
        goto out;
    if ((rc = vfs->open(vfs, tpath, EVS_O_RDWR | EVS_O_CREATE | EVS_O_TRUNC, &f)) != 0)
        goto out;
    created = 1;
    if ((rc = evs__fwrite(f, p, len, 0, NULL)) != 0 || (rc = f->vfs->sync(f)) != 0)
        goto out;
    rc = evs__fclose(f);
    f = NULL;
    if (rc != 0 || (rc = vfs->rename(vfs, tpath, fpath)) != 0)
        goto out;
    created = 0;
    if (renamed)
        *renamed = 1;
    rc = vfs->sync_dir(vfs, dir);
out:
    evs__fclose(f);
    if (created)
        vfs->unlink(vfs, tpath);
    free(p);
    return rc;
}
