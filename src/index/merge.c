/*
 * merge.c — size-tiered merge policy and the k-way merge of adjacent runs.
 *
 * Policy: a run's tier is floor(log4(entries / 4096)) (tier 0 below 16384
 * entries). When the EVS_MERGE_WIDTH (4) newest adjacent runs of one tier
 * exist, they are merged into one run, about 4x larger, i.e. one tier up; the
 * check repeats so merges cascade. Each entry is thus rewritten about
 * log4(N / checkpoint size) times, and at most 3 runs per tier exist, i.e.
 * O(log N) runs. Odd checkpoint sizes can interleave tiers so that no four
 * adjacent runs share one; once more than EVS_MERGE_MAX_RUNS runs exist, the
 * adjacent window with the fewest entries is merged instead, which bounds the
 * run count (and so the reads per lookup).
 *
 * Merging streams: one cursor per input reads EVS_MERGE_RA blocks at a time,
 * and the output goes through the run writer; memory is O(inputs * RA * 4 KiB)
 * plus the output's fence table, never the entries.
 *
 * The merge runs synchronously inside checkpoint (on the writer thread) in
 * this version; readers are not blocked by it.
 */
#include <stdlib.h>

#include "index/merge.h"

#define EVS_MERGE_RA 16u  /* blocks per read per input: 64 KiB */

unsigned evs__merge_tier(uint64_t entries)
{
    unsigned t = 0;
    uint64_t x = entries / EVS_MERGE_TIER_BASE;
    while (x >= 4) {
        x /= 4;
        t++;
    }
    return t;
}

int evs__merge_pick(const uint64_t *entries, size_t n, size_t *start)
{
    if (n < EVS_MERGE_WIDTH)
        return 0;
    for (size_t s = n - EVS_MERGE_WIDTH + 1; s-- > 0;) {  /* newest window first */
        unsigned t = evs__merge_tier(entries[s]);
        size_t k = 1;
        while (k < EVS_MERGE_WIDTH && evs__merge_tier(entries[s + k]) == t)
            k++;
        if (k == EVS_MERGE_WIDTH) {
            *start = s;
            return 1;
        }
    }
    if (n <= EVS_MERGE_MAX_RUNS)
        return 0;
    size_t best = 0;
    uint64_t best_sum = UINT64_MAX;
    for (size_t s = 0; s + EVS_MERGE_WIDTH <= n; s++) {
        uint64_t sum = 0;
        for (size_t k = 0; k < EVS_MERGE_WIDTH; k++)
            sum += entries[s + k];
        if (sum < best_sum) {
            best_sum = sum;
            best = s;
        }
    }
    *start = best;
    return 1;
}

int evs__merge_runs(const evs_vfs *vfs, const evs_logger *lg, const char *dir, const char *name,
                    uint64_t seq, evs__run *const *in, size_t n, evs__run **out)
{
    int rc = 0;
    evs__cursor *cur = NULL;
    size_t ncur = 0;
    evs__run_writer w;
    int wopen = 0;
    char fname[EVS_IDX_FNAME_MAX];
    cur = calloc(n, sizeof *cur);
    if (!cur) {
        rc = EVS_ENOMEM;
        goto out;
    }
    for (; ncur < n; ncur++)
        if ((rc = evs__cursor_init(&cur[ncur], in[ncur], EVS_MERGE_RA)) != 0 ||
            (rc = evs__cursor_first(&cur[ncur])) != 0) {
            ncur++;
            goto out;
        }
    if ((rc = evs__run_writer_open(&w, vfs, dir, name, seq)) != 0)
        goto out;
    wopen = 1;
    for (;;) {
        /* the smallest current entry; among equals the newest input (highest index) */
        size_t best = n;
        for (size_t i = n; i-- > 0;) {
            if (!cur[i].valid)
                continue;
            if (best == n || evs__kv_cmp(cur[i].cur.key, cur[i].cur.a, cur[best].cur.key,
                                         cur[best].cur.a) < 0)
                best = i;
        }
        if (best == n)
            break;
        evs_kv e = cur[best].cur;
        if ((rc = evs__run_writer_add(&w, &e)) != 0)
            goto out;
        for (size_t i = 0; i < n; i++)  /* skip e in every input (older duplicates too) */
            if (cur[i].valid && evs__kv_cmp(cur[i].cur.key, cur[i].cur.a, e.key, e.a) == 0 &&
                (rc = evs__cursor_next(&cur[i])) != 0)
                goto out;
    }
    if ((rc = evs__run_writer_finish(&w)) != 0)
        goto out;
    if ((rc = evs__idx_run_name(fname, sizeof fname, name, seq, 0)) != 0 ||
        (rc = evs__run_open(vfs, lg, dir, fname, out)) != 0) {
        w.done = 0;  /* not usable: let abort remove it */
        goto out;
    }
out:
    if (wopen)
        evs__run_writer_abort(&w);
    for (size_t i = 0; i < ncur; i++)
        evs__cursor_free(&cur[i]);
    free(cur);
    return rc;
}
