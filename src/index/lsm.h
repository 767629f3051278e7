/*
 * lsm.h — a persisted, checkpointed index of fixed-size entries.
 *
 * An entry is {key[16], a, b}, ordered by (key bytes, a). The store keeps two
 * of these indexes:
 *   ids:     key = event id,               a = position, b = 0
 *   streams: key = XXH3-128(stream name),  a = version,  b = position
 *
 * Shape (LevelDB-like, simplified): new entries go to an in-memory table; a
 * checkpoint writes them as one immutable sorted run file
 * ("<name>-<seq>.idx", temp + fsync + rename + directory fsync) and records
 * the position the runs cover in "<name>.manifest.idx" (same procedure). Runs
 * are merged so that there are few of them (size-tiered), which keeps reads at
 * a handful of block reads. Files are read with pread through the vfs and a
 * small in-memory fence index (first key of each block), so resident memory
 * grows with the number of runs and blocks, not with entries.
 *
 * Every file has a header with magic, format version and checksums (XXH3-64)
 * over header, each block and the fence table; a damaged file is reported as
 * EVS_ECORRUPT and the store rebuilds the index from the log (indexes are
 * derived data: deleting every *.idx file is always safe).
 *
 * Threading: one owner thread calls put and freeze; one flusher thread
 * (the same or another) calls flush and merge_step, which do all the file
 * I/O; any number of reader threads call get/get_last/scan concurrently and
 * see mem + frozen tables + runs with no gap at any moment. The module locks
 * internally; checkpoint plays owner and flusher in the calling thread.
 */
#ifndef EVS_INDEX_LSM_H
#define EVS_INDEX_LSM_H

#include <stddef.h>
#include <stdint.h>

#include "io/vfs.h"

typedef struct evs_kv {
    uint8_t key[16];
    uint64_t a;
    uint64_t b;
} evs_kv;

typedef struct evs__lsm evs__lsm;

/**
 * Open (creating if absent) the index called name in directory dir.
 * @param read_only  1: never write a file (a missing index opens empty;
 *                   checkpoint returns EVS_EREADONLY).
 * @param covered  receives the highest log position whose entries are all in
 *                 the persisted runs (0 when new). The caller re-puts entries
 *                 for positions after it (puts are idempotent for equal entries).
 * @return 0; EVS_ECORRUPT (caller deletes with evs__lsm_destroy and rebuilds); -errno.
 */
int evs__lsm_open(const evs_vfs *vfs, const char *dir, const char *name, int read_only,
                  uint64_t *covered, evs__lsm **out);
void evs__lsm_close(evs__lsm *l);

/** Remove every file of index name in dir (before a rebuild). */
int evs__lsm_destroy(const evs_vfs *vfs, const char *dir, const char *name);

/** Add an entry to the in-memory table. Equal (key, a) replaces b. */
int evs__lsm_put(evs__lsm *l, const evs_kv *e);

/** The entry with this key and the smallest a >= a_min. @return 0; EVS_ENOTFOUND; EVS_ECORRUPT; -errno. */
int evs__lsm_get(evs__lsm *l, const uint8_t key[16], uint64_t a_min, evs_kv *out);

/**
 * Entries with this key and a_lo <= a <= a_hi, ascending by a, at most max.
 * @return 0 with *n set; EVS_ECORRUPT; -errno.
 */
int evs__lsm_scan(evs__lsm *l, const uint8_t key[16], uint64_t a_lo, uint64_t a_hi,
                  evs_kv *out, size_t max, size_t *n);

/**
 * Persist everything put so far as covering log positions up to covered
 * (the caller guarantees those log records are durable): flush what is
 * frozen, freeze, flush, merge until the policy is satisfied, all in the
 * calling thread. Atomic: after a crash, open reports either the old or the
 * new covered position (or one in between when earlier frozen tables were
 * pending). @return 0 or -errno/EVS_*; on failure every entry stays readable
 * (in memory) and the previous checkpoint stays valid.
 */
int evs__lsm_checkpoint(evs__lsm *l, uint64_t covered);

/**
 * Owner: freeze the in-memory table as covering log positions up to covered
 * (it must hold every entry of those positions and none after) and start a
 * fresh one. O(1): no I/O, one allocation. A no-op when nothing was put and
 * covered is unchanged. Lookups keep finding the frozen entries until
 * evs__lsm_flush has made them durable in a run.
 * @return 0; -EBUSY (too many frozen tables: flush first); EVS_ENOMEM; EVS_EREADONLY.
 */
int evs__lsm_freeze(evs__lsm *l, uint64_t covered);

/**
 * Flusher: write the oldest frozen table as a run (temp, fsync, rename,
 * directory fsync), then the manifest naming it with the covered position it
 * was frozen at, then drop the table (readers switch to the run atomically).
 * No merging. 0 when nothing is frozen. On failure the table stays frozen
 * (and readable) and the previous manifest stays valid; calling again retries.
 */
int evs__lsm_flush(evs__lsm *l);

/** Frozen tables not yet flushed. */
size_t evs__lsm_frozen(evs__lsm *l);

/**
 * Flusher: at most `budget` entries of merge work (size-tiered policy over
 * the runs flushed so far), ending with a manifest and an atomic switch for
 * each merge completed. *more = 1 while merge work remains.
 * @return 0 or -errno/EVS_*; a failed merge is abandoned (its file removed)
 * and picked again by the next call.
 */
int evs__lsm_merge_step(evs__lsm *l, uint64_t budget, int *more);

/** Entries held in memory (not yet in a run), for deciding when to checkpoint. */
size_t evs__lsm_mem_entries(const evs__lsm *l);

/** Check every file's checksums and ordering; cb is called per problem (file, offset, text). */
int evs__lsm_verify(const evs_vfs *vfs, const char *dir, const char *name,
                    void (*cb)(void *ctx, const char *file, uint64_t off, const char *problem),
                    void *ctx, uint64_t *problems);

#endif
