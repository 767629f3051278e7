/*
 * run_read.c — opening run files, point lookups and cursors over them.
 *
 * Run file "<name>-<seq>.idx", little-endian:
 *
 *   header, bytes [0, 4096):
 *     off  size  field
 *       0     8  magic "EVSIDXRN"
 *       8     4  format version (1)
 *      12     4  block size (4096)
 *      16     8  seq (equals the one in the file name)
 *      24     8  entries (>= 1)
 *      32     8  nblocks = ceil(entries / 127)
 *      40     8  fence_off = 4096 * (1 + nblocks)
 *      48     8  fence_sum: XXH3-64 of the fence table
 *      56     8  salt: random per file, repeated in every block
 *      64  4024  zero
 *    4088     8  XXH3-64 of bytes [0, 4088)
 *
 *   data block i, bytes [4096 (1 + i), 4096 (2 + i)):
 *       0  32*c  c entries: key[16] | a u64 | b u64, strictly increasing by (key, a)
 *              (c = 127 except in the last block); unused slots are zero
 *    4064     4  c
 *    4068     4  zero
 *    4072     8  i (the block's own number: a misplaced block cannot validate)
 *    4080     8  salt (a block of another file cannot validate)
 *    4088     8  XXH3-64 of bytes [0, 4088)
 *
 *   fence table at fence_off, 24 (nblocks + 1) bytes: key[16] | a u64 of the
 *   first entry of every block, then of the run's last entry. The file ends
 *   there: its size is exactly fence_off + 24 (nblocks + 1).
 *
 * Opening reads the header and the fence table (checked), nothing else; a
 * block is checked each time it is read. Lookups binary-search the fences
 * in memory and read one block (two when the answer is the first entry of the
 * next block).
 */
#include <errno.h>
#include <stdlib.h>
#include <xxhash.h>

#include "index/run.h"

int evs__run_hdr_decode(const uint8_t *p, evs__run_hdr *h, uint64_t *off, const char **what)
{
    *off = 0;
    if (memcmp(p, EVS_RUN_MAGIC, 8) != 0) {
        *what = "bad run magic";
        return EVS_ECORRUPT;
    }
    uint32_t version = evs__get32(p + 8);
    if (version != EVS_RUN_VERSION) {
        *off = 8;
        *what = version > EVS_RUN_VERSION ? "run written by a newer format version"
                                          : "bad run format version";
        return version > EVS_RUN_VERSION ? EVS_EFORMAT : EVS_ECORRUPT;
    }
    if (XXH3_64bits(p, EVS_RUN_SUM_OFF) != evs__get64(p + EVS_RUN_SUM_OFF)) {
        *off = EVS_RUN_SUM_OFF;
        *what = "run header checksum mismatch";
        return EVS_ECORRUPT;
    }
    if (evs__get32(p + 12) != EVS_RUN_BLOCK) {
        *off = 12;
        *what = "unsupported run block size";
        return EVS_ECORRUPT;
    }
    h->seq = evs__get64(p + 16);
    h->entries = evs__get64(p + 24);
    h->nblocks = evs__get64(p + 32);
    h->fence_off = evs__get64(p + 40);
    h->fence_sum = evs__get64(p + 48);
    h->salt = evs__get64(p + 56);
    h->hdr_sum = evs__get64(p + EVS_RUN_SUM_OFF);
    /* bounds keep every product below 2^63 */
    if (h->entries == 0 || h->entries > ((uint64_t)1 << 48) ||
        h->nblocks != (h->entries + EVS_RUN_PER_BLOCK - 1) / EVS_RUN_PER_BLOCK) {
        *off = 24;
        *what = "run entry and block counts disagree";
        return EVS_ECORRUPT;
    }
    if (h->fence_off != (uint64_t)EVS_RUN_BLOCK * (1 + h->nblocks)) {
        *off = 40;
        *what = "run fence offset disagrees with its block count";
        return EVS_ECORRUPT;
    }
    return 0;
}

int evs__run_block_check(const uint8_t *p, uint64_t blockno, uint64_t salt, uint32_t count,
                         uint64_t *off, const char **what)
{
    if (XXH3_64bits(p, EVS_RUN_SUM_OFF) != evs__get64(p + EVS_RUN_SUM_OFF)) {
        *off = EVS_RUN_SUM_OFF;
        *what = "block checksum mismatch";
        return EVS_ECORRUPT;
    }
    if (evs__get64(p + EVS_RUN_TRAILER + 8) != blockno) {
        *off = EVS_RUN_TRAILER + 8;
        *what = "block number mismatch (misplaced block)";
        return EVS_ECORRUPT;
    }
    if (evs__get64(p + EVS_RUN_TRAILER + 16) != salt) {
        *off = EVS_RUN_TRAILER + 16;
        *what = "block salt mismatch (block of another file)";
        return EVS_ECORRUPT;
    }
    if (evs__get32(p + EVS_RUN_TRAILER) != count || evs__get32(p + EVS_RUN_TRAILER + 4) != 0) {
        *off = EVS_RUN_TRAILER;
        *what = "block entry count mismatch";
        return EVS_ECORRUPT;
    }
    return 0;
}

static void run_free(evs__run *r)
{
    if (!r)
        return;
    evs__fclose(r->f);
    free(r->path);
    free(r->fences);
    free(r);
}

int evs__run_open(const evs_vfs *vfs, const evs_logger *lg, const char *dir, const char *fname,
                  evs__run **out)
{
    int rc = 0;
    evs__run *r = NULL;
    uint8_t *hdr = NULL, *ft = NULL;
    char path[EVS_IDX_PATH_MAX];
    uint64_t off = 0;
    const char *what = NULL;
    size_t got = 0;
    if ((rc = evs__path(path, sizeof path, dir, fname)) != 0)
        goto out;
    r = calloc(1, sizeof *r);
    hdr = malloc(EVS_RUN_BLOCK);
    if (!r || !hdr || !(r->path = strdup(path))) {
        rc = EVS_ENOMEM;
        goto out;
    }
    atomic_init(&r->refs, 1);
    atomic_init(&r->doomed, 0);
    r->vfs = vfs;
    r->lg = lg;
    if ((rc = vfs->open(vfs, path, EVS_O_RDONLY, &r->f)) != 0) {
        r->f = NULL;
        goto out;
    }
    if ((rc = r->f->vfs->size(r->f, &r->size)) != 0 ||
        (rc = evs__fread(r->f, hdr, EVS_RUN_BLOCK, 0, &got)) != 0)
        goto out;
    if (got < EVS_RUN_BLOCK) {
        rc = EVS_CORRUPT_HERE(lg, path, got, "run file shorter than its header");
        goto out;
    }
    if ((rc = evs__run_hdr_decode(hdr, &r->h, &off, &what)) != 0) {
        if (rc == EVS_ECORRUPT)
            rc = EVS_CORRUPT_HERE(lg, path, off, what);
        else
            evs__logf(lg, EVS_LOG_ERROR, "%s: %s", path, what);
        goto out;
    }
    uint64_t ftlen = EVS_FENCE_SIZE * (r->h.nblocks + 1);
    if (r->size != r->h.fence_off + ftlen) {
        rc = EVS_CORRUPT_HERE(lg, path, r->size, "run file size disagrees with its header");
        goto out;
    }
    ft = malloc((size_t)ftlen);
    r->fences = malloc((size_t)(r->h.nblocks + 1) * sizeof *r->fences);
    if (!ft || !r->fences) {
        rc = EVS_ENOMEM;
        goto out;
    }
    if ((rc = evs__fread(r->f, ft, (size_t)ftlen, r->h.fence_off, &got)) != 0)
        goto out;
    if (got != ftlen || XXH3_64bits(ft, (size_t)ftlen) != r->h.fence_sum) {
        rc = EVS_CORRUPT_HERE(lg, path, r->h.fence_off, "fence table checksum mismatch");
        goto out;
    }
    for (uint64_t i = 0; i <= r->h.nblocks; i++) {
        evs__fence *fe = &r->fences[i];
        memcpy(fe->key, ft + i * EVS_FENCE_SIZE, 16);
        fe->a = evs__get64(ft + i * EVS_FENCE_SIZE + 16);
        if (i == 0)
            continue;
        /* block fences strictly increase; the last-entry fence equals the last
         * block's fence only when that block holds a single entry */
        int c = evs__kv_cmp(fe->key, fe->a, r->fences[i - 1].key, r->fences[i - 1].a);
        int single = i == r->h.nblocks &&
                     evs__run_block_entries(r->h.entries, r->h.nblocks, i - 1) == 1;
        if (single ? c != 0 : c <= 0) {
            rc = EVS_CORRUPT_HERE(lg, path, r->h.fence_off + i * EVS_FENCE_SIZE,
                                  "fence table out of order");
            goto out;
        }
    }
    *out = r;
    r = NULL;
out:
    free(hdr);
    free(ft);
    run_free(r);
    return rc;
}

void evs__run_ref(evs__run *r) { atomic_fetch_add(&r->refs, 1); }

void evs__run_unref(evs__run *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    if (atomic_load(&r->doomed)) {
        evs__fclose(r->f);
        r->f = NULL;
        int rc = r->vfs->unlink(r->vfs, r->path);
        if (rc && rc != -ENOENT)
            evs__logf(r->lg, EVS_LOG_WARN, "cannot delete obsolete index run %s: %s", r->path,
                      evs_strerror(rc));
    }
    run_free(r);
}

int evs__run_may_have_key(const evs__run *r, const uint8_t key[16])
{
    return memcmp(key, r->fences[0].key, 16) >= 0 &&
           memcmp(key, r->fences[r->h.nblocks].key, 16) <= 0;
}

/* The last block whose first entry is <= (key, a); 0 when (key, a) precedes them all. */
static uint64_t run_find_block(const evs__run *r, const uint8_t key[16], uint64_t a)
{
    uint64_t lo = 0, hi = r->h.nblocks;  /* answer in [lo, hi) */
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (evs__kv_cmp(r->fences[mid].key, r->fences[mid].a, key, a) <= 0)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Read n blocks from block first into buf and check each. */
static int run_read_blocks(const evs__run *r, uint64_t first, uint32_t n, uint8_t *buf)
{
    size_t got = 0;
    uint64_t off = (uint64_t)EVS_RUN_BLOCK * (1 + first);
    int rc = evs__fread(r->f, buf, (size_t)n * EVS_RUN_BLOCK, off, &got);
    if (rc)
        return rc;
    if (got != (size_t)n * EVS_RUN_BLOCK)
        return EVS_CORRUPT_HERE(r->lg, r->path, off + got, "run file truncated inside a block");
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p = buf + (size_t)i * EVS_RUN_BLOCK;
        uint64_t blk = first + i, boff = 0;
        const char *what = NULL;
        uint32_t cnt = evs__run_block_entries(r->h.entries, r->h.nblocks, blk);
        if (evs__run_block_check(p, blk, r->h.salt, cnt, &boff, &what) != 0)
            return EVS_CORRUPT_HERE(r->lg, r->path, off + (uint64_t)i * EVS_RUN_BLOCK + boff, what);
        if (memcmp(p, r->fences[blk].key, 16) != 0 || evs__get64(p + 16) != r->fences[blk].a)
            return EVS_CORRUPT_HERE(r->lg, r->path, off + (uint64_t)i * EVS_RUN_BLOCK,
                                    "block's first entry differs from its fence");
    }
    return 0;
}

/* Index of the first entry >= (key, a) in a checked block of cnt entries (cnt when none). */
static uint32_t block_lower_bound(const uint8_t *p, uint32_t cnt, const uint8_t key[16], uint64_t a)
{
    uint32_t lo = 0, hi = cnt;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const uint8_t *e = p + (size_t)mid * EVS_KV_SIZE;
        if (evs__kv_cmp(e, evs__get64(e + 16), key, a) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Index of the first entry > (key, a) in a checked block of cnt entries (cnt when none). */
static uint32_t block_upper_bound(const uint8_t *p, uint32_t cnt, const uint8_t key[16], uint64_t a)
{
    uint32_t lo = 0, hi = cnt;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const uint8_t *e = p + (size_t)mid * EVS_KV_SIZE;
        if (evs__kv_cmp(e, evs__get64(e + 16), key, a) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int evs__run_get(const evs__run *r, const uint8_t key[16], uint64_t a_min, evs_kv *out)
{
    uint8_t buf[EVS_RUN_BLOCK];
    const evs__fence *last = &r->fences[r->h.nblocks];
    if (!evs__run_may_have_key(r, key) || evs__kv_cmp(key, a_min, last->key, last->a) > 0)
        return EVS_ENOTFOUND;
    uint64_t start = run_find_block(r, key, a_min);
    for (uint64_t blk = start; blk < r->h.nblocks; blk++) {
        /* a later block starts after (key, a_min): useful only if it starts with key */
        if (blk > start && memcmp(r->fences[blk].key, key, 16) != 0)
            return EVS_ENOTFOUND;
        int rc = run_read_blocks(r, blk, 1, buf);
        if (rc)
            return rc;
        uint32_t cnt = evs__run_block_entries(r->h.entries, r->h.nblocks, blk);
        uint32_t i = block_lower_bound(buf, cnt, key, a_min);
        if (i == cnt)
            continue;
        const uint8_t *e = buf + (size_t)i * EVS_KV_SIZE;
        if (memcmp(e, key, 16) != 0)
            return EVS_ENOTFOUND;
        evs__kv_decode(e, out);
        return 0;
    }
    return EVS_ENOTFOUND;
}

int evs__run_get_last(const evs__run *r, const uint8_t key[16], uint64_t a_max, evs_kv *out)
{
    uint8_t buf[EVS_RUN_BLOCK];
    if (!evs__run_may_have_key(r, key) ||
        evs__kv_cmp(key, a_max, r->fences[0].key, r->fences[0].a) < 0)
        return EVS_ENOTFOUND;
    /* the block whose first entry is the last one <= (key, a_max) holds the answer */
    uint64_t blk = run_find_block(r, key, a_max);
    int rc = run_read_blocks(r, blk, 1, buf);
    if (rc)
        return rc;
    uint32_t cnt = evs__run_block_entries(r->h.entries, r->h.nblocks, blk);
    uint32_t i = block_upper_bound(buf, cnt, key, a_max);
    if (i == 0)
        return EVS_ENOTFOUND;  /* cannot happen for a checked block: entry 0 == fence <= target */
    const uint8_t *e = buf + (size_t)(i - 1) * EVS_KV_SIZE;
    if (memcmp(e, key, 16) != 0)
        return EVS_ENOTFOUND;
    evs__kv_decode(e, out);
    return 0;
}

int evs__cursor_init(evs__cursor *c, const evs__run *r, uint32_t ra)
{
    memset(c, 0, sizeof *c);
    c->run = r;
    c->ra = ra ? ra : 1;
    c->buf = malloc((size_t)c->ra * EVS_RUN_BLOCK);
    return c->buf ? 0 : EVS_ENOMEM;
}

void evs__cursor_free(evs__cursor *c)
{
    free(c->buf);
    c->buf = NULL;
    c->valid = 0;
}

/* Make block blk available in buf (reading ra blocks ahead) and select entry idx. */
static int cursor_load(evs__cursor *c, uint64_t blk, uint32_t idx)
{
    const evs__run *r = c->run;
    if (blk >= r->h.nblocks) {
        c->valid = 0;
        return 0;
    }
    if (c->have == 0 || blk < c->first || blk >= c->first + c->have) {
        uint64_t left = r->h.nblocks - blk;
        uint32_t n = left < c->ra ? (uint32_t)left : c->ra;
        c->have = 0;
        int rc = run_read_blocks(r, blk, n, c->buf);
        if (rc) {
            c->valid = 0;
            return rc;
        }
        c->first = blk;
        c->have = n;
    }
    c->blk = blk;
    c->idx = idx;
    uint32_t cnt = evs__run_block_entries(r->h.entries, r->h.nblocks, blk);
    if (idx >= cnt)
        return cursor_load(c, blk + 1, 0);
    evs__kv_decode(c->buf + (size_t)(blk - c->first) * EVS_RUN_BLOCK + (size_t)idx * EVS_KV_SIZE,
                   &c->cur);
    c->valid = 1;
    return 0;
}

int evs__cursor_first(evs__cursor *c) { return cursor_load(c, 0, 0); }

int evs__cursor_seek(evs__cursor *c, const uint8_t key[16], uint64_t a)
{
    const evs__run *r = c->run;
    const evs__fence *last = &r->fences[r->h.nblocks];
    if (evs__kv_cmp(key, a, last->key, last->a) > 0) {
        c->valid = 0;
        return 0;
    }
    uint64_t blk = run_find_block(r, key, a);
    int rc = cursor_load(c, blk, 0);
    if (rc || !c->valid)
        return rc;
    uint32_t cnt = evs__run_block_entries(r->h.entries, r->h.nblocks, blk);
    uint32_t i = block_lower_bound(c->buf + (size_t)(blk - c->first) * EVS_RUN_BLOCK, cnt, key, a);
    return cursor_load(c, blk, i);
}

int evs__cursor_next(evs__cursor *c)
{
    if (!c->valid)
        return 0;
    /* Checksums prove a block is what was written, not that the writer kept
     * its order: each step compares the new entry with the one before (within
     * a block and across a block boundary), and the end of the run with its
     * last-entry fence, so no reader (scans, merges) is handed a run whose
     * entries are not strictly increasing. One comparison per entry. */
    const evs__run *r = c->run;
    evs_kv prev = c->cur;
    uint64_t pblk = c->blk;
    uint32_t pidx = c->idx;
    int rc = cursor_load(c, c->blk, c->idx + 1);
    if (rc)
        return rc;
    if (c->valid ? evs__kv_cmp(c->cur.key, c->cur.a, prev.key, prev.a) <= 0
                 : evs__kv_cmp(prev.key, prev.a, r->fences[r->h.nblocks].key,
                               r->fences[r->h.nblocks].a) != 0) {
        uint64_t off = c->valid ? (uint64_t)EVS_RUN_BLOCK * (1 + c->blk) + (uint64_t)c->idx * EVS_KV_SIZE
                                : (uint64_t)EVS_RUN_BLOCK * (1 + pblk) + (uint64_t)pidx * EVS_KV_SIZE;
        const char *what = c->valid ? "run entries out of order" : "run's last entry differs from its last fence";
        c->valid = 0;
        return EVS_CORRUPT_HERE(r->lg, r->path, off, what);
    }
    return 0;
}
