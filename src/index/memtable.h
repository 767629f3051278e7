/*
 * memtable.h — the in-memory table of an index: entries put since the last
 * checkpoint, before they are written as a run file.
 *
 * A hash map from key to its (a, b) pairs kept sorted by a with unique a:
 * the only pair inline in the slot, more in a growable array. 33 bytes per
 * slot (memtable.c). put is O(1) amortized when a arrives in ascending order per
 * key (the normal case) and O(entries of that key) otherwise; get and range
 * are one hash probe plus a binary search.
 *
 * Not thread-safe by itself: the index wraps it in a rwlock (puts under the
 * write lock, lookups under the read lock).
 */
#ifndef EVS_INDEX_MEMTABLE_H
#define EVS_INDEX_MEMTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "index/lsm.h"

typedef struct evs__memtable evs__memtable;

/** A new empty table. @return 0 or EVS_ENOMEM. */
int evs__mt_new(evs__memtable **out);
void evs__mt_free(evs__memtable *m);

/** Insert e; an equal (key, a) replaces b. @return 0 or EVS_ENOMEM (table unchanged). */
int evs__mt_put(evs__memtable *m, const evs_kv *e);

/** The entry with this key and the smallest a >= a_min. @return 1 found, 0 not. */
int evs__mt_get(const evs__memtable *m, const uint8_t key[16], uint64_t a_min, evs_kv *out);

/** The entry with this key and the largest a <= a_max. @return 1 found, 0 not. */
int evs__mt_get_last(const evs__memtable *m, const uint8_t key[16], uint64_t a_max, evs_kv *out);

/* A memtable with room for `slots` keys before it must grow (at most 3/4 of
 * them are used before it doubles): the store presizes its id index for a
 * checkpoint interval, and the next memtable after a freeze is sized for the
 * keys the last one held, so appends do not stall on rehashing cycle after
 * cycle. The slots are zero pages until written (evs__big_zalloc). */
int evs__mt_new_sized(evs__memtable **out, size_t slots);
size_t evs__mt_slots(const evs__memtable *m);

/** Distinct keys held. */
size_t evs__mt_keys(const evs__memtable *m);

/** Number of entries with this key and lo <= a <= hi. */
size_t evs__mt_count(const evs__memtable *m, const uint8_t key[16], uint64_t lo, uint64_t hi);

/** Copy up to max entries with this key and lo <= a <= hi, ascending by a. @return how many. */
size_t evs__mt_range(const evs__memtable *m, const uint8_t key[16], uint64_t lo, uint64_t hi,
                     evs_kv *out, size_t max);

/** Entries held (pairs over all keys). */
size_t evs__mt_entries(const evs__memtable *m);

/**
 * Call fn for every entry in (key, a) order; a non-zero return stops and is
 * returned. @return 0, fn's value, or EVS_ENOMEM.
 */
int evs__mt_visit_sorted(const evs__memtable *m, int (*fn)(void *ctx, const evs_kv *e), void *ctx);

#endif
