/*
 * verify.c — offline check of every file of an index (evs__lsm_verify).
 *
 * Checks the manifest (framing, checksum, seq rules) and every run it lists
 * in full: header, file size, fence table checksum, every block (checksum,
 * number, salt, count), strict (key, a) order within and across blocks,
 * fences equal to the blocks' first entries and to the last entry, and that
 * each run is the very file the manifest recorded (seq, entries, size,
 * header checksum). When the manifest itself is damaged every run file in
 * the directory is checked on its own. Each problem is reported once with
 * the file name and the byte offset it concerns; checking goes on after a
 * problem wherever the format allows (blocks are independent).
 *
 * Temp files and runs the manifest does not list are not problems: they are
 * what a crash leaves, and a writable open deletes them.
 *
 * Memory: the fence table of one run and a 256 KiB read buffer.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "index/lsm.h"
#include "index/manifest.h"
#include "index/run.h"

#define VERIFY_CHUNK 64u  /* blocks per read */

typedef struct vstate {
    void (*cb)(void *ctx, const char *file, uint64_t off, const char *problem); /* may be NULL */
    void *ctx;          /* for cb */
    uint64_t problems;  /* found so far */
} vstate;

static void vproblem(vstate *vs, const char *file, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void vproblem(vstate *vs, const char *file, uint64_t off, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vs->problems++;
    if (vs->cb)
        vs->cb(vs->ctx, file, off, msg);
}

/* Check the blocks of a run whose header h is valid. */
static int verify_blocks(vstate *vs, evs_file *f, const char *fname, const evs__run_hdr *h,
                         const uint8_t *ft, int fence_ok)
{
    int rc = 0;
    uint8_t *buf = malloc((size_t)VERIFY_CHUNK * EVS_RUN_BLOCK);
    evs_kv prev, e;
    int have_prev = 0, last_ok = 0;
    if (!buf)
        return EVS_ENOMEM;
    for (uint64_t first = 0; first < h->nblocks; first += VERIFY_CHUNK) {
        uint32_t n = (uint32_t)EVS_MIN((uint64_t)VERIFY_CHUNK, h->nblocks - first);
        uint64_t off = (uint64_t)EVS_RUN_BLOCK * (1 + first);
        size_t got = 0;
        if ((rc = evs__fread(f, buf, (size_t)n * EVS_RUN_BLOCK, off, &got)) != 0) {
            vproblem(vs, fname, off, "read failed: %s", evs_strerror(rc));
            rc = 0;
            goto out;
        }
        for (uint32_t i = 0; i < n; i++) {
            uint64_t blk = first + i, boff = off + (uint64_t)i * EVS_RUN_BLOCK, woff = 0;
            const uint8_t *p = buf + (size_t)i * EVS_RUN_BLOCK;
            const char *what = NULL;
            uint32_t cnt = evs__run_block_entries(h->entries, h->nblocks, blk);
            last_ok = 0;
            if (got < (size_t)(i + 1) * EVS_RUN_BLOCK) {
                vproblem(vs, fname, boff, "block %" PRIu64 " lies beyond the end of the file", blk);
                goto out;
            }
            if (evs__run_block_check(p, blk, h->salt, cnt, &woff, &what) != 0) {
                vproblem(vs, fname, boff + woff, "block %" PRIu64 ": %s", blk, what);
                have_prev = 0;  /* nothing in it can be trusted, not even its order */
                continue;
            }
            for (uint32_t j = 0; j < cnt; j++) {
                evs__kv_decode(p + (size_t)j * EVS_KV_SIZE, &e);
                if (have_prev && evs__kv_cmp(e.key, e.a, prev.key, prev.a) <= 0)
                    vproblem(vs, fname, boff + (uint64_t)j * EVS_KV_SIZE,
                             "entry %u of block %" PRIu64 " is not after the previous entry", j, blk);
                prev = e;
                have_prev = 1;
            }
            if (fence_ok && memcmp(p, ft + blk * EVS_FENCE_SIZE, 16) != 0)
                vproblem(vs, fname, boff, "block %" PRIu64 " first key differs from its fence", blk);
            else if (fence_ok && evs__get64(p + 16) != evs__get64(ft + blk * EVS_FENCE_SIZE + 16))
                vproblem(vs, fname, boff, "block %" PRIu64 " first a differs from its fence", blk);
            last_ok = 1;
        }
    }
    if (fence_ok && last_ok) {
        const uint8_t *lf = ft + h->nblocks * EVS_FENCE_SIZE;
        if (memcmp(lf, prev.key, 16) != 0 || evs__get64(lf + 16) != prev.a)
            vproblem(vs, fname, h->fence_off + h->nblocks * EVS_FENCE_SIZE,
                     "last fence differs from the run's last entry");
    }
out:
    free(buf);
    return rc;
}

static int verify_run(vstate *vs, const evs_vfs *vfs, const char *dir, const char *fname,
                      uint64_t seq, const evs__man_run *mr)
{
    int rc = 0;
    char path[EVS_IDX_PATH_MAX];
    evs_file *f = NULL;
    uint8_t *hdr = NULL, *ft = NULL;
    uint64_t size = 0, off = 0;
    size_t got = 0;
    const char *what = NULL;
    evs__run_hdr h;
    if ((rc = evs__path(path, sizeof path, dir, fname)) != 0)
        goto out;
    if ((rc = vfs->open(vfs, path, EVS_O_RDONLY, &f)) != 0) {
        f = NULL;
        if (rc == -ENOENT)
            vproblem(vs, fname, 0, "run listed in the manifest is missing");
        else
            vproblem(vs, fname, 0, "cannot open run: %s", evs_strerror(rc));
        rc = 0;
        goto out;
    }
    hdr = malloc(EVS_RUN_BLOCK);
    if (!hdr) {
        rc = EVS_ENOMEM;
        goto out;
    }
    if ((rc = f->vfs->size(f, &size)) != 0 || (rc = evs__fread(f, hdr, EVS_RUN_BLOCK, 0, &got)) != 0)
        goto out;
    if (got < EVS_RUN_BLOCK) {
        vproblem(vs, fname, got, "run file is shorter than its 4096-byte header");
        goto out;
    }
    if (evs__run_hdr_decode(hdr, &h, &off, &what) != 0) {
        vproblem(vs, fname, off, "%s", what);
        goto out;
    }
    if (h.seq != seq)
        vproblem(vs, fname, 16, "header seq %" PRIu64 " differs from the file name", h.seq);
    if (mr && h.entries != mr->entries)
        vproblem(vs, fname, 24, "%" PRIu64 " entries, the manifest says %" PRIu64, h.entries,
                 mr->entries);
    if (mr && h.hdr_sum != mr->hdr_sum)
        vproblem(vs, fname, EVS_RUN_SUM_OFF, "header checksum differs from the manifest's record");
    uint64_t ftlen = EVS_FENCE_SIZE * (h.nblocks + 1);
    int fence_ok = 0;
    if (size != h.fence_off + ftlen) {
        /* the fence table is not where the header says: check the blocks that exist */
        vproblem(vs, fname, EVS_MIN(size, h.fence_off + ftlen),
                 "file is %" PRIu64 " bytes, its header implies %" PRIu64, size, h.fence_off + ftlen);
    } else {
        if (mr && size != mr->size)
            vproblem(vs, fname, size, "file is %" PRIu64 " bytes, the manifest says %" PRIu64, size,
                     mr->size);
        ft = malloc((size_t)ftlen);
        if (!ft) {
            rc = EVS_ENOMEM;
            goto out;
        }
        if ((rc = evs__fread(f, ft, (size_t)ftlen, h.fence_off, &got)) != 0)
            goto out;
        if (got != ftlen)
            vproblem(vs, fname, h.fence_off + got, "fence table is cut short");
        else if (XXH3_64bits(ft, (size_t)ftlen) != h.fence_sum)
            vproblem(vs, fname, h.fence_off, "fence table checksum mismatch");
        else
            fence_ok = 1;
    }
    rc = verify_blocks(vs, f, fname, &h, ft, fence_ok);
out:
    free(hdr);
    free(ft);
    evs__fclose(f);
    return rc;
}

int evs__lsm_verify(const evs_vfs *vfs, const char *dir, const char *name,
                    void (*cb)(void *ctx, const char *file, uint64_t off, const char *problem),
                    void *ctx, uint64_t *problems)
{
    int rc = 0;
    vstate vs = { cb, ctx, 0 };
    char mname[EVS_IDX_FNAME_MAX], path[EVS_IDX_PATH_MAX], fname[EVS_IDX_FNAME_MAX];
    uint8_t *p = NULL;
    size_t len = 0;
    uint64_t off = 0;
    const char *what = NULL;
    evs__manifest m = { 0 };
    evs__idx_file *files = NULL;
    size_t nf = 0;
    if ((rc = evs__idx_check_name(name)) != 0 ||
        (rc = evs__idx_man_name(mname, sizeof mname, name, 0)) != 0 ||
        (rc = evs__path(path, sizeof path, dir, mname)) != 0)
        goto out;
    rc = evs__idx_slurp(vfs, path, &p, &len);
    if (rc == -ENOENT) {  /* no manifest: an empty index; leftovers are not damage */
        rc = 0;
        goto out;
    }
    if (rc)
        goto out;
    if (evs__man_decode(p, len, &m, &off, &what) == 0) {
        for (size_t i = 0; i < m.nruns && rc == 0; i++)
            if ((rc = evs__idx_run_name(fname, sizeof fname, name, m.runs[i].seq, 0)) == 0)
                rc = verify_run(&vs, vfs, dir, fname, m.runs[i].seq, &m.runs[i]);
        goto out;
    }
    vproblem(&vs, mname, off, "%s", what);
    if ((rc = evs__idx_list(vfs, dir, name, &files, &nf)) != 0)
        goto out;
    for (size_t i = 0; i < nf && rc == 0; i++)
        if (files[i].kind == EVS_IDXF_RUN)
            rc = verify_run(&vs, vfs, dir, files[i].fname, files[i].seq, NULL);
out:
    if (problems)
        *problems = vs.problems;
    evs__man_free(&m);
    free(files);
    free(p);
    return rc;
}
