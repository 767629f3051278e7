/*
 * lsm_ext.h — additions to the index interface (lsm.h) that the engine may
 * use; candidates for merging into lsm.h by its owner.
 */
#ifndef EVS_INDEX_LSM_EXT_H
#define EVS_INDEX_LSM_EXT_H

#include "evs_int.h"
#include "index/lsm.h"

/**
 * Route the index's log lines (corruption found, leftovers deleted) to lg
 * instead of stderr. The logger is copied. Call right after open, before
 * other threads use the index.
 */
void evs__lsm_set_logger(evs__lsm *l, const evs_logger *lg);

/**
 * The entry with this key and the largest a <= a_max (a_max = UINT64_MAX:
 * the key's last entry, e.g. a stream's current version). Same merging and
 * precedence as evs__lsm_get; at most one block read per run.
 * @return 0; EVS_ENOTFOUND; EVS_ECORRUPT; -errno.
 */
int evs__lsm_get_last(evs__lsm *l, const uint8_t key[16], uint64_t a_max, evs_kv *out);

/**
 * Owner, before the first put: size the in-memory table for `entries` keys,
 * so that it does not rehash while it fills (each doubling rehashes the whole
 * table under the index's write lock: tens of ms at 100,000s of keys), with
 * an eighth to spare. Later tables are sized for the keys the previous one
 * held, never smaller than this. Memory is only touched as keys arrive
 * (evs__big_zalloc). No-op on a non-empty table.
 */
void evs__lsm_presize(evs__lsm *l, size_t entries);

/*
 * Pins: a consistent, immutable view of the persisted index for a copy (a
 * backup). evs__lsm_pin takes a reference to the current version (O(1),
 * under the index's read lock): its run files are neither unlinked nor
 * changed while the pin is held, however many merges replace them
 * meanwhile (a run merged away is unlinked when its last reference, maybe
 * the pin, goes). The pin covers evs__lsm_pin_covered: the position the
 * manifest naming exactly these runs claims. Any thread; release with
 * evs__lsm_unpin, also after a failure, before the index is closed.
 */
typedef struct evs__lsm_pinned evs__lsm_pinned;

int evs__lsm_pin(evs__lsm *l, evs__lsm_pinned **out);
void evs__lsm_unpin(evs__lsm_pinned *p);
uint64_t evs__lsm_pin_covered(const evs__lsm_pinned *p);
size_t evs__lsm_pin_nruns(const evs__lsm_pinned *p);
/** Run i (oldest first): its file name, its open file (owned by the pin) and size. */
int evs__lsm_pin_run(const evs__lsm_pinned *p, size_t i, char *name, size_t cap, evs_file **f, uint64_t *size);
/** The manifest of the pinned version as "<name>.manifest.idx" would hold it (malloc'd *out). */
int evs__lsm_pin_manifest(const evs__lsm_pinned *p, char *name, size_t cap, uint8_t **out, size_t *len);

#endif
