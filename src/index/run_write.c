/*
 * run_write.c — streams strictly increasing entries into a new run file.
 *
 * The file is written as "<name>-<seq>.tmp.idx": data blocks from offset
 * 4096 in batches of EVS_RUN_WBLOCKS blocks, then the fence table, then the
 * header at offset 0 (it carries the fence checksum, known only at the end),
 * then fsync, rename to "<name>-<seq>.idx" and fsync of the directory. A
 * crash at any point leaves either no final file or a complete one; temp
 * files are deleted by the next (writable) open.
 *
 * Memory: one write batch (256 KiB) plus the fence table being built
 * (24 bytes per block), never the entries themselves.
 */
#include <errno.h>
#include <stdlib.h>
#include <xxhash.h>

#include "index/run.h"

#define EVS_RUN_WBLOCKS 64u  /* blocks per pwrite: 256 KiB */

int evs__run_writer_open(evs__run_writer *w, const evs_vfs *vfs, const char *dir,
                         const char *name, uint64_t seq)
{
    int rc = 0;
    char fname[EVS_IDX_FNAME_MAX];
    memset(w, 0, sizeof *w);
    w->vfs = vfs;
    w->dir = dir;
    w->seq = seq;
    evs__random(&w->salt, sizeof w->salt);
    if ((rc = evs__idx_run_name(fname, sizeof fname, name, seq, 1)) != 0 ||
        (rc = evs__path(w->tpath, sizeof w->tpath, dir, fname)) != 0 ||
        (rc = evs__idx_run_name(fname, sizeof fname, name, seq, 0)) != 0 ||
        (rc = evs__path(w->fpath, sizeof w->fpath, dir, fname)) != 0)
        return rc;
    w->wbuf = calloc(EVS_RUN_WBLOCKS, EVS_RUN_BLOCK);
    if (!w->wbuf)
        return EVS_ENOMEM;
    rc = vfs->open(vfs, w->tpath, EVS_O_RDWR | EVS_O_CREATE | EVS_O_TRUNC, &w->f);
    if (rc) {
        free(w->wbuf);
        w->wbuf = NULL;
        w->f = NULL;
    }
    return rc;
}

/* Seal the block being filled: trailer and checksum. */
static void rw_seal_block(evs__run_writer *w)
{
    uint8_t *p = w->wbuf + (size_t)w->wblocks * EVS_RUN_BLOCK;
    evs__put32(p + EVS_RUN_TRAILER, w->in_block);
    evs__put32(p + EVS_RUN_TRAILER + 4, 0);
    evs__put64(p + EVS_RUN_TRAILER + 8, w->nblocks);
    evs__put64(p + EVS_RUN_TRAILER + 16, w->salt);
    evs__put64(p + EVS_RUN_SUM_OFF, XXH3_64bits(p, EVS_RUN_SUM_OFF));
    w->wblocks++;
    w->nblocks++;
    w->in_block = 0;
}

/* Write the sealed blocks in wbuf (they are the last wblocks of nblocks). */
static int rw_flush(evs__run_writer *w)
{
    if (w->wblocks == 0)
        return 0;
    uint64_t off = (uint64_t)EVS_RUN_BLOCK * (1 + w->nblocks - w->wblocks);
    int rc = evs__fwrite(w->f, w->wbuf, (size_t)w->wblocks * EVS_RUN_BLOCK, off, NULL);
    if (rc)
        return rc;
    memset(w->wbuf, 0, (size_t)w->wblocks * EVS_RUN_BLOCK);
    w->wblocks = 0;
    return 0;
}

int evs__run_writer_add(evs__run_writer *w, const evs_kv *e)
{
    int rc = 0;
    if (w->entries > 0 && evs__kv_cmp(e->key, e->a, w->last.key, w->last.a) <= 0)
        return EVS_EINVAL;
    if (w->in_block == 0) {  /* first entry of a block: its fence */
        uint8_t fe[EVS_FENCE_SIZE];
        memcpy(fe, e->key, 16);
        evs__put64(fe + 16, e->a);
        if ((rc = evs__buf_append(&w->fences, fe, sizeof fe)) != 0)
            return rc;
    }
    uint8_t *blk = w->wbuf + (size_t)w->wblocks * EVS_RUN_BLOCK;
    evs__kv_encode(blk + (size_t)w->in_block * EVS_KV_SIZE, e);
    w->in_block++;
    w->entries++;
    w->last = *e;
    if (w->in_block == EVS_RUN_PER_BLOCK) {
        rw_seal_block(w);
        if (w->wblocks == EVS_RUN_WBLOCKS)
            rc = rw_flush(w);
    }
    return rc;
}

int evs__run_writer_finish(evs__run_writer *w)
{
    int rc = 0;
    uint8_t *hdr = NULL;
    if (w->entries == 0)
        return EVS_EINVAL;
    if (w->in_block > 0)
        rw_seal_block(w);
    if ((rc = rw_flush(w)) != 0)
        goto out;
    /* the fence table ends with the run's last entry */
    uint8_t fe[EVS_FENCE_SIZE];
    memcpy(fe, w->last.key, 16);
    evs__put64(fe + 16, w->last.a);
    if ((rc = evs__buf_append(&w->fences, fe, sizeof fe)) != 0)
        goto out;
    uint64_t fence_off = (uint64_t)EVS_RUN_BLOCK * (1 + w->nblocks);
    if ((rc = evs__fwrite(w->f, w->fences.p, w->fences.len, fence_off, NULL)) != 0)
        goto out;
    hdr = calloc(1, EVS_RUN_BLOCK);
    if (!hdr) {
        rc = EVS_ENOMEM;
        goto out;
    }
    memcpy(hdr, EVS_RUN_MAGIC, 8);
    evs__put32(hdr + 8, EVS_RUN_VERSION);
    evs__put32(hdr + 12, EVS_RUN_BLOCK);
    evs__put64(hdr + 16, w->seq);
    evs__put64(hdr + 24, w->entries);
    evs__put64(hdr + 32, w->nblocks);
    evs__put64(hdr + 40, fence_off);
    evs__put64(hdr + 48, XXH3_64bits(w->fences.p, w->fences.len));
    evs__put64(hdr + 56, w->salt);
    evs__put64(hdr + EVS_RUN_SUM_OFF, XXH3_64bits(hdr, EVS_RUN_SUM_OFF));
    if ((rc = evs__fwrite(w->f, hdr, EVS_RUN_BLOCK, 0, NULL)) != 0 ||
        (rc = w->f->vfs->sync(w->f)) != 0)
        goto out;
    rc = evs__fclose(w->f);
    w->f = NULL;
    if (rc != 0 || (rc = w->vfs->rename(w->vfs, w->tpath, w->fpath)) != 0)
        goto out;
    w->renamed = 1;
    if ((rc = w->vfs->sync_dir(w->vfs, w->dir)) != 0)
        goto out;
    w->done = 1;
out:
    free(hdr);
    return rc;
}

void evs__run_writer_abort(evs__run_writer *w)
{
    evs__fclose(w->f);
    w->f = NULL;
    if (!w->done && w->wbuf)  /* wbuf != NULL: open got as far as creating the file */
        w->vfs->unlink(w->vfs, w->renamed ? w->fpath : w->tpath);
    free(w->wbuf);
    w->wbuf = NULL;
    evs__buf_free(&w->fences);
}
