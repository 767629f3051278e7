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
 * The index's owner runs merges in bounded steps (evs__merger_step) on its
 * background index thread, between memtable flushes; readers are never
 * blocked by them.
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

int evs__merger_begin(evs__merger *m, const evs_vfs *vfs, const evs_logger *lg, const char *dir,
                      const char *name, uint64_t seq, evs__run *const *in, size_t n)
{
    int rc = 0;
    memset(m, 0, sizeof *m);
    m->vfs = vfs;
    m->lg = lg;
    m->dir = dir;
    m->name = name;
    m->seq = seq;
    m->n = n;
    m->cur = calloc(n ? n : 1, sizeof *m->cur);
    if (!m->cur)
        return EVS_ENOMEM;
    for (; m->ncur < n; m->ncur++)
        if ((rc = evs__cursor_init(&m->cur[m->ncur], in[m->ncur], EVS_MERGE_RA)) != 0 ||
            (rc = evs__cursor_first(&m->cur[m->ncur])) != 0) {
            m->ncur++;
            return rc;
        }
    if ((rc = evs__run_writer_open(&m->w, vfs, dir, name, seq)) != 0)
        return rc;
    m->wopen = 1;
    return 0;
}

int evs__merger_step(evs__merger *m, uint64_t max_entries, int *done)
{
    int rc = 0;
    evs__cursor *cur = m->cur;
    size_t n = m->n;
    *done = 0;
    for (uint64_t k = 0; k < max_entries; k++) {
        /* the smallest current entry; among equals the newest input (highest index) */
        size_t best = n;
        for (size_t i = n; i-- > 0;) {
            if (!cur[i].valid)
                continue;
            if (best == n || evs__kv_cmp(cur[i].cur.key, cur[i].cur.a, cur[best].cur.key,
                                         cur[best].cur.a) < 0)
                best = i;
        }
        if (best == n) {
            *done = 1;
            return 0;
        }
        evs_kv e = cur[best].cur;
        if ((rc = evs__run_writer_add(&m->w, &e)) != 0)
            return rc;
        for (size_t i = 0; i < n; i++)  /* skip e in every input (older duplicates too) */
            if (cur[i].valid && evs__kv_cmp(cur[i].cur.key, cur[i].cur.a, e.key, e.a) == 0 &&
                (rc = evs__cursor_next(&cur[i])) != 0)
                return rc;
    }
    return 0;
}

int evs__merger_finish(evs__merger *m, evs__run **out)
{
    int rc = 0;
    char fname[EVS_IDX_FNAME_MAX];
    if ((rc = evs__run_writer_finish(&m->w)) != 0)
        return rc;
    if ((rc = evs__idx_run_name(fname, sizeof fname, m->name, m->seq, 0)) != 0 ||
        (rc = evs__run_open(m->vfs, m->lg, m->dir, fname, out)) != 0)
        m->w.done = 0;  /* not usable: let abort remove it */
    return rc;
}

void evs__merger_abort(evs__merger *m)
{
    if (m->wopen)
        evs__run_writer_abort(&m->w);
    m->wopen = 0;
    for (size_t i = 0; i < m->ncur; i++)
        evs__cursor_free(&m->cur[i]);
    free(m->cur);
    m->cur = NULL;
    m->ncur = 0;
}

int evs__merge_runs(const evs_vfs *vfs, const evs_logger *lg, const char *dir, const char *name,
                    uint64_t seq, evs__run *const *in, size_t n, evs__run **out)
{
    evs__merger m;
    int done = 0;
    int rc = evs__merger_begin(&m, vfs, lg, dir, name, seq, in, n);
    if (rc == 0)
        rc = evs__merger_step(&m, UINT64_MAX, &done);
    if (rc == 0)
        rc = evs__merger_finish(&m, out);
    evs__merger_abort(&m);
    return rc;
}
