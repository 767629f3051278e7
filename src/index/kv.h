/*
 * kv.h — the entry order and the 32-byte on-disk entry encoding shared by
 * every part of the persisted index (memtable, run files, merge, verify).
 *
 * Invariants: entries are ordered by memcmp(key) and then by a (unsigned);
 * b never takes part in the order. On disk an entry is key[16] | a u64 LE |
 * b u64 LE, and a fence is key[16] | a u64 LE.
 */
#ifndef EVS_INDEX_KV_H
#define EVS_INDEX_KV_H

#include <stdint.h>
#include <string.h>

#include "evs_int.h"
#include "index/lsm.h"

#define EVS_KV_SIZE 32u    /* bytes of one encoded entry */
#define EVS_FENCE_SIZE 24u /* bytes of one encoded fence (key, a) */

/* -1, 0 or 1 as (ka, aa) sorts before, equal to or after (kb, ab). */
static inline int evs__kv_cmp(const uint8_t *ka, uint64_t aa, const uint8_t *kb, uint64_t ab)
{
    int c = memcmp(ka, kb, 16);
    if (c != 0)
        return c < 0 ? -1 : 1;
    return aa < ab ? -1 : (aa > ab ? 1 : 0);
}

static inline void evs__kv_encode(uint8_t *p, const evs_kv *e)
{
    memcpy(p, e->key, 16);
    evs__put64(p + 16, e->a);
    evs__put64(p + 24, e->b);
}

static inline void evs__kv_decode(const uint8_t *p, evs_kv *e)
{
    memcpy(e->key, p, 16);
    e->a = evs__get64(p + 16);
    e->b = evs__get64(p + 24);
}

#endif
