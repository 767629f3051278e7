/*
 * memtable.c — open-addressing hash map from a 16-byte key to a sorted array
 * of (a, b) pairs (see memtable.h).
 *
 * Invariants:
 *  - the slot count is a power of two and at most 3/4 of the slots are used,
 *    so linear probing always finds an empty slot and stays short;
 *  - every used slot holds n >= 1 pairs sorted strictly ascending by a;
 *  - the first pair lives inline in the slot (most keys of the "ids" index
 *    have exactly one), so the common put allocates nothing;
 *  - entries == sum of n over all slots.
 * Keys are hashed with XXH3-64: event ids are UUIDv7 (time-ordered leading
 * bytes), so the raw bytes must not be used as a hash.
 */
#include <stdlib.h>
#include <xxhash.h>

#include "evs_int.h"
#include "index/memtable.h"

#define MT_INITIAL_SLOTS 256u

typedef struct mt_pair {
    uint64_t a;         /* the entry's a (position or version) */
    uint64_t b;         /* the entry's b */
} mt_pair;

typedef struct mt_slot {
    uint8_t key[16];    /* the key; meaningful when n > 0 */
    uint32_t n;         /* pairs held; 0 marks an empty slot */
    uint32_t cap;       /* pairs the storage holds; 1 means the inline pair `one` */
    mt_pair one;        /* storage of the only pair while cap == 1 */
    mt_pair *v;         /* heap storage while cap > 1 (owned) */
} mt_slot;

struct evs__memtable {
    mt_slot *slots;     /* mask + 1 slots */
    size_t mask;        /* slot count - 1 (slot count is a power of two) */
    size_t used;        /* slots with n > 0 (distinct keys) */
    size_t entries;     /* pairs over all slots */
};

static size_t mt_hash(const uint8_t key[16]) { return (size_t)XXH3_64bits(key, 16); }

static mt_pair *mt_pairs(mt_slot *s) { return s->cap == 1 ? &s->one : s->v; }
static const mt_pair *mt_cpairs(const mt_slot *s) { return s->cap == 1 ? &s->one : s->v; }

int evs__mt_new_sized(evs__memtable **out, size_t slots)
{
    size_t cap = MT_INITIAL_SLOTS;
    while (cap < slots && cap < ((size_t)1 << 30)) cap *= 2;
    evs__memtable *m = calloc(1, sizeof *m);
    if (!m)
        return EVS_ENOMEM;
    m->slots = calloc(cap, sizeof *m->slots);  /* zero pages: costs nothing until used */
    if (!m->slots) {
        free(m);
        return EVS_ENOMEM;
    }
    m->mask = cap - 1;
    *out = m;
    return 0;
}

int evs__mt_new(evs__memtable **out) { return evs__mt_new_sized(out, MT_INITIAL_SLOTS); }

size_t evs__mt_slots(const evs__memtable *m) { return m->mask + 1; }

void evs__mt_free(evs__memtable *m)
{
    if (!m)
        return;
    for (size_t i = 0; i <= m->mask; i++)
        if (m->slots[i].n > 0 && m->slots[i].cap > 1)
            free(m->slots[i].v);
    free(m->slots);
    free(m);
}

/* The slot holding key, or the empty slot where it would go. */
static mt_slot *mt_find(const evs__memtable *m, const uint8_t key[16])
{
    size_t i = mt_hash(key) & m->mask;
    for (;;) {
        mt_slot *s = &m->slots[i];
        if (s->n == 0 || memcmp(s->key, key, 16) == 0)
            return s;
        i = (i + 1) & m->mask;
    }
}

/* Double the slot array; slots move by value (their heap arrays do not). */
static int mt_grow(evs__memtable *m)
{
    size_t ncap = (m->mask + 1) * 2;
    mt_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return EVS_ENOMEM;
    for (size_t i = 0; i <= m->mask; i++) {
        const mt_slot *s = &m->slots[i];
        if (s->n == 0)
            continue;
        size_t j = mt_hash(s->key) & (ncap - 1);
        while (ns[j].n != 0)
            j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(m->slots);
    m->slots = ns;
    m->mask = ncap - 1;
    return 0;
}

/* Index of the first pair with a >= want (n when none). */
static uint32_t mt_lower_bound(const mt_pair *p, uint32_t n, uint64_t want)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (p[mid].a < want)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int evs__mt_put(evs__memtable *m, const evs_kv *e)
{
    int rc = 0;
    if ((m->used + 1) * 4 > (m->mask + 1) * 3) {
        if ((rc = mt_grow(m)) != 0)
            return rc;
    }
    mt_slot *s = mt_find(m, e->key);
    if (s->n == 0) {
        memcpy(s->key, e->key, 16);
        s->n = 1;
        s->cap = 1;
        s->one.a = e->a;
        s->one.b = e->b;
        m->used++;
        m->entries++;
        return 0;
    }
    mt_pair *p = mt_pairs(s);
    uint32_t at = s->n;
    if (p[s->n - 1].a >= e->a) {  /* not an append: replace or insert in order */
        at = mt_lower_bound(p, s->n, e->a);
        if (p[at].a == e->a) {
            p[at].b = e->b;
            return 0;
        }
    }
    if (s->n == UINT32_MAX)
        return EVS_ENOMEM;
    if (s->n == s->cap) {
        uint32_t ncap = s->cap == 1 ? 4 : (s->cap > UINT32_MAX / 2 ? UINT32_MAX : s->cap * 2);
        mt_pair *nv = malloc((size_t)ncap * sizeof *nv);
        if (!nv)
            return EVS_ENOMEM;
        memcpy(nv, p, (size_t)s->n * sizeof *nv);
        if (s->cap > 1)
            free(s->v);
        s->v = nv;
        s->cap = ncap;
        p = nv;
    }
    memmove(p + at + 1, p + at, (size_t)(s->n - at) * sizeof *p);
    p[at].a = e->a;
    p[at].b = e->b;
    s->n++;
    m->entries++;
    return 0;
}

int evs__mt_get(const evs__memtable *m, const uint8_t key[16], uint64_t a_min, evs_kv *out)
{
    const mt_slot *s = mt_find(m, key);
    if (s->n == 0)
        return 0;
    const mt_pair *p = mt_cpairs(s);
    uint32_t i = mt_lower_bound(p, s->n, a_min);
    if (i == s->n)
        return 0;
    memcpy(out->key, key, 16);
    out->a = p[i].a;
    out->b = p[i].b;
    return 1;
}

int evs__mt_get_last(const evs__memtable *m, const uint8_t key[16], uint64_t a_max, evs_kv *out)
{
    const mt_slot *s = mt_find(m, key);
    if (s->n == 0)
        return 0;
    const mt_pair *p = mt_cpairs(s);
    uint32_t i = a_max == UINT64_MAX ? s->n : mt_lower_bound(p, s->n, a_max + 1);
    if (i == 0)
        return 0;
    memcpy(out->key, key, 16);
    out->a = p[i - 1].a;
    out->b = p[i - 1].b;
    return 1;
}

size_t evs__mt_count(const evs__memtable *m, const uint8_t key[16], uint64_t lo, uint64_t hi)
{
    const mt_slot *s = mt_find(m, key);
    if (s->n == 0 || lo > hi)
        return 0;
    const mt_pair *p = mt_cpairs(s);
    uint32_t i = mt_lower_bound(p, s->n, lo);
    uint32_t j = hi == UINT64_MAX ? s->n : mt_lower_bound(p, s->n, hi + 1);
    return j > i ? j - i : 0;
}

size_t evs__mt_range(const evs__memtable *m, const uint8_t key[16], uint64_t lo, uint64_t hi,
                     evs_kv *out, size_t max)
{
    const mt_slot *s = mt_find(m, key);
    if (s->n == 0 || lo > hi)
        return 0;
    const mt_pair *p = mt_cpairs(s);
    size_t n = 0;
    for (uint32_t i = mt_lower_bound(p, s->n, lo); i < s->n && p[i].a <= hi && n < max; i++) {
        memcpy(out[n].key, key, 16);
        out[n].a = p[i].a;
        out[n].b = p[i].b;
        n++;
    }
    return n;
}

size_t evs__mt_entries(const evs__memtable *m) { return m->entries; }

static int mt_slot_cmp(const void *x, const void *y)
{
    const mt_slot *a = *(const mt_slot *const *)x;
    const mt_slot *b = *(const mt_slot *const *)y;
    return memcmp(a->key, b->key, 16);
}

int evs__mt_visit_sorted(const evs__memtable *m, int (*fn)(void *ctx, const evs_kv *e), void *ctx)
{
    int rc = 0;
    const mt_slot **order = NULL;
    if (m->used == 0)
        goto out;
    order = malloc(m->used * sizeof *order);
    if (!order) {
        rc = EVS_ENOMEM;
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i <= m->mask; i++)
        if (m->slots[i].n > 0)
            order[k++] = &m->slots[i];
    qsort(order, k, sizeof *order, mt_slot_cmp);
    for (size_t i = 0; i < k; i++) {
        const mt_pair *p = mt_cpairs(order[i]);
        evs_kv e;
        memcpy(e.key, order[i]->key, 16);
        for (uint32_t j = 0; j < order[i]->n; j++) {
            e.a = p[j].a;
            e.b = p[j].b;
            if ((rc = fn(ctx, &e)) != 0)
                goto out;
        }
    }
out:
    free(order);
    return rc;
}
