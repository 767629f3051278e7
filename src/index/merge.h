/*
 * merge.h — the size-tiered merge policy and the streaming k-way merge of
 * runs into one.
 *
 * Invariant kept: only runs that are adjacent in recency order are merged,
 * and the result takes their place, so "a later run wins on equal (key, a)"
 * stays true across merges.
 */
#ifndef EVS_INDEX_MERGE_H
#define EVS_INDEX_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "index/run.h"

#define EVS_MERGE_WIDTH 4u      /* runs merged at once */
#define EVS_MERGE_TIER_BASE 4096u /* entries below 4 * base are tier 0; each tier is 4x larger */
#define EVS_MERGE_MAX_RUNS 12u  /* above this, merge the smallest adjacent window regardless of tiers */

/** Size tier of a run with this many entries: floor(log4(entries / base)), 0 below 4 * base. */
unsigned evs__merge_tier(uint64_t entries);

/**
 * Choose the next merge among runs with these entry counts (oldest first):
 * the newest window of EVS_MERGE_WIDTH adjacent runs of one tier, or, when
 * more than EVS_MERGE_MAX_RUNS runs exist, the adjacent window with the fewest
 * entries. @return 1 with *start set (window [start, start + WIDTH)), or 0.
 */
int evs__merge_pick(const uint64_t *entries, size_t n, size_t *start);

/**
 * Merge n runs (oldest first; on equal (key, a) the later one wins) into the
 * new run "<name>-<seq>.idx", streaming through cursors (a few blocks per
 * input in memory), and open it.
 * @return 0; EVS_ECORRUPT (an input is damaged); -errno; EVS_ENOMEM. Nothing is left behind on failure.
 */
int evs__merge_runs(const evs_vfs *vfs, const evs_logger *lg, const char *dir, const char *name,
                    uint64_t seq, evs__run *const *in, size_t n, evs__run **out);

/**
 * The same merge in bounded steps, so that a background thread can do other
 * work (flush a memtable) between them: begin, step until *done, finish;
 * abort releases everything (and removes the unfinished file) at any point,
 * also after finish. The inputs must stay referenced until finish or abort.
 */
typedef struct evs__merger {
    const evs_vfs *vfs;         /* file I/O */
    const evs_logger *lg;       /* where corruption is logged */
    const char *dir, *name;     /* borrowed: the index's directory and name */
    evs__cursor *cur;           /* one per input (ncur initialised) */
    size_t n, ncur;             /* inputs, cursors initialised */
    evs__run_writer w;          /* the output */
    int wopen;                  /* 1: w is open (abort must release it) */
    uint64_t seq;               /* the output's sequence number */
} evs__merger;

/** Open the inputs' cursors and the output file. On failure call evs__merger_abort. */
int evs__merger_begin(evs__merger *m, const evs_vfs *vfs, const evs_logger *lg, const char *dir,
                      const char *name, uint64_t seq, evs__run *const *in, size_t n);
/** Write up to max_entries more output entries; *done = 1 once every input is consumed. */
int evs__merger_step(evs__merger *m, uint64_t max_entries, int *done);
/** Complete the output file (fsync, rename, directory fsync) and open it as *out. */
int evs__merger_finish(evs__merger *m, evs__run **out);
void evs__merger_abort(evs__merger *m);

#endif
