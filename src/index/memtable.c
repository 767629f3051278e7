/*
 * memtable.c — open-addressing hash map from a 16-byte key to a sorted array
 * of (a, b) pairs (see memtable.h).
 *
 * Layout (33 bytes per slot, in one allocation, see evs__big_zalloc):
 *  - slots[cap], 32 bytes each: the key and either its only pair inline or a
 *    pointer to a heap block (mt_many) holding n >= 2 pairs;
 *  - ctrl[cap], one byte each: 0 for an empty slot, else CTRL_USED, CTRL_MANY
 *    when the pairs are in a block, and 6 bits of the key's hash, so that a
 *    probe compares a key only when those bits agree.
 * Most keys have one pair (every key of the "ids" index; a stream written
 * once per interval in the "streams" index), so the common put allocates
 * nothing. The slot count is any number (not a power of two): a table
 * presized for an interval holds it at a load of about 2/3 instead of
 * between 3/8 and 3/4. A key's home slot is (hash >> 32) * cap >> 32.
 *
 * Invariants:
 *  - at most 3/4 of the slots are used, so linear probing always finds an
 *    empty slot and stays short;
 *  - every used slot holds n >= 1 pairs sorted strictly ascending by a; a
 *    block is only used for n >= 2;
 *  - entries == sum of n over all slots; nmany == slots with CTRL_MANY.
 * Keys are hashed with XXH3-64: event ids are UUIDv7 (time-ordered leading
 * bytes), so the raw bytes must not be used as a hash.
 */
#include <stdlib.h>
#include <xxhash.h>

#include "evs_int.h"
#include "index/memtable.h"

#define MT_INITIAL_SLOTS 256u
#define MT_MAX_SLOTS ((size_t)1 << 31)

#define CTRL_USED 0x80u
#define CTRL_MANY 0x40u
#define CTRL_TAG 0x3fu

typedef struct mt_pair {
    uint64_t a;         /* the entry's a (position or version) */
    uint64_t b;         /* the entry's b */
} mt_pair;

typedef struct mt_many {
    uint32_t n;         /* pairs held (>= 2) */
    uint32_t cap;       /* pairs p[] has room for */
    mt_pair p[];        /* sorted strictly ascending by a */
} mt_many;

typedef struct mt_slot {
    uint8_t key[16];    /* the key; meaningful when the slot's ctrl byte is not 0 */
    union {
        mt_pair one;    /* the only pair (ctrl without CTRL_MANY) */
        mt_many *many;  /* the pairs (ctrl with CTRL_MANY; owned) */
    } u;
} mt_slot;

struct evs__memtable {
    mt_slot *slots;     /* cap slots, followed in the same allocation by ... */
    uint8_t *ctrl;      /* ... cap control bytes */
    size_t cap;         /* slot count */
    size_t used;        /* used slots (distinct keys) */
    size_t entries;     /* pairs over all slots */
    size_t nmany;       /* slots whose pairs are in a block */
};

static uint64_t mt_hash(const uint8_t key[16]) { return XXH3_64bits(key, 16); }
static size_t mt_home(uint64_t h, size_t cap) { return (size_t)(((h >> 32) * (uint64_t)cap) >> 32); }
static uint8_t mt_tag(uint64_t h) { return (uint8_t)(CTRL_USED | (h & CTRL_TAG)); }
static size_t mt_bytes(size_t cap) { return cap * (sizeof(mt_slot) + 1); }

/* The pairs of the used slot i and their number. */
static const mt_pair *mt_cpairs(const evs__memtable *m, size_t i, uint32_t *n)
{
    if (m->ctrl[i] & CTRL_MANY) {
        *n = m->slots[i].u.many->n;
        return m->slots[i].u.many->p;
    }
    *n = 1;
    return &m->slots[i].u.one;
}

static int mt_alloc(evs__memtable *m, size_t cap)
{
    uint8_t *p = evs__big_zalloc(mt_bytes(cap));
    if (!p)
        return EVS_ENOMEM;
    m->slots = (mt_slot *)(void *)p;
    m->ctrl = p + cap * sizeof(mt_slot);
    m->cap = cap;
    return 0;
}

int evs__mt_new_sized(evs__memtable **out, size_t slots)
{
    size_t cap = EVS_MIN(slots, MT_MAX_SLOTS);
    if (cap < MT_INITIAL_SLOTS)
        cap = MT_INITIAL_SLOTS;
    evs__memtable *m = calloc(1, sizeof *m);
    if (!m)
        return EVS_ENOMEM;
    if (mt_alloc(m, cap) != 0) {  /* zero pages: cost nothing until used */
        free(m);
        return EVS_ENOMEM;
    }
    *out = m;
    return 0;
}

int evs__mt_new(evs__memtable **out) { return evs__mt_new_sized(out, MT_INITIAL_SLOTS); }

size_t evs__mt_slots(const evs__memtable *m) { return m->cap; }

size_t evs__mt_keys(const evs__memtable *m) { return m->used; }

void evs__mt_free(evs__memtable *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->nmany && i < m->cap; i++)
        if (m->ctrl[i] & CTRL_MANY)
            free(m->slots[i].u.many);
    evs__big_free(m->slots, mt_bytes(m->cap));
    free(m);
}

/* The slot holding key, or the empty slot where it would go. */
static size_t mt_find(const evs__memtable *m, const uint8_t key[16], uint64_t h)
{
    const uint8_t tag = mt_tag(h);
    size_t i = mt_home(h, m->cap);
    for (;;) {
        uint8_t c = m->ctrl[i];
        if (c == 0)
            return i;
        if ((uint8_t)(c & ~CTRL_MANY) == tag && memcmp(m->slots[i].key, key, 16) == 0)
            return i;
        if (++i == m->cap)
            i = 0;
    }
}

/* Double the slot count; slots move by value (their blocks do not). */
static int mt_grow(evs__memtable *m)
{
    if (m->cap >= MT_MAX_SLOTS)
        return EVS_ENOMEM;
    evs__memtable n = { 0 };
    if (mt_alloc(&n, m->cap * 2) != 0)
        return EVS_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->ctrl[i] == 0)
            continue;
        size_t j = mt_home(mt_hash(m->slots[i].key), n.cap);
        while (n.ctrl[j] != 0)
            if (++j == n.cap)
                j = 0;
        n.slots[j] = m->slots[i];
        n.ctrl[j] = m->ctrl[i];
    }
    evs__big_free(m->slots, mt_bytes(m->cap));
    m->slots = n.slots;
    m->ctrl = n.ctrl;
    m->cap = n.cap;
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
    if ((m->used + 1) * 4 > m->cap * 3) {
        if ((rc = mt_grow(m)) != 0)
            return rc;
    }
    uint64_t h = mt_hash(e->key);
    size_t i = mt_find(m, e->key, h);
    mt_slot *s = &m->slots[i];
    if (m->ctrl[i] == 0) {
        memcpy(s->key, e->key, 16);
        s->u.one.a = e->a;
        s->u.one.b = e->b;
        m->ctrl[i] = mt_tag(h);
        m->used++;
        m->entries++;
        return 0;
    }
    if (!(m->ctrl[i] & CTRL_MANY)) {
        if (s->u.one.a == e->a) {
            s->u.one.b = e->b;
            return 0;
        }
        mt_many *v = malloc(sizeof *v + 4 * sizeof v->p[0]);
        if (!v)
            return EVS_ENOMEM;
        v->n = 1;
        v->cap = 4;
        v->p[0] = s->u.one;
        s->u.many = v;
        m->ctrl[i] |= CTRL_MANY;
        m->nmany++;
    }
    mt_many *v = s->u.many;
    uint32_t at = v->n;
    if (v->p[v->n - 1].a >= e->a) {  /* not an append: replace or insert in order */
        at = mt_lower_bound(v->p, v->n, e->a);
        if (v->p[at].a == e->a) {
            v->p[at].b = e->b;
            return 0;
        }
    }
    if (v->n == UINT32_MAX)
        return EVS_ENOMEM;
    if (v->n == v->cap) {
        uint32_t ncap = v->cap > UINT32_MAX / 2 ? UINT32_MAX : v->cap * 2;
        mt_many *nv = realloc(v, sizeof *nv + (size_t)ncap * sizeof nv->p[0]);
        if (!nv)
            return EVS_ENOMEM;
        nv->cap = ncap;
        s->u.many = v = nv;
    }
    memmove(v->p + at + 1, v->p + at, (size_t)(v->n - at) * sizeof v->p[0]);
    v->p[at].a = e->a;
    v->p[at].b = e->b;
    v->n++;
    m->entries++;
    return 0;
}

/* The pairs held for key, or NULL. */
static const mt_pair *mt_lookup(const evs__memtable *m, const uint8_t key[16], uint32_t *n)
{
    size_t i = mt_find(m, key, mt_hash(key));
    if (m->ctrl[i] == 0)
        return NULL;
    return mt_cpairs(m, i, n);
}

int evs__mt_get(const evs__memtable *m, const uint8_t key[16], uint64_t a_min, evs_kv *out)
{
    uint32_t n = 0;
    const mt_pair *p = mt_lookup(m, key, &n);
    if (!p)
        return 0;
    uint32_t i = mt_lower_bound(p, n, a_min);
    if (i == n)
        return 0;
    memcpy(out->key, key, 16);
    out->a = p[i].a;
    out->b = p[i].b;
    return 1;
}

int evs__mt_get_last(const evs__memtable *m, const uint8_t key[16], uint64_t a_max, evs_kv *out)
{
    uint32_t n = 0;
    const mt_pair *p = mt_lookup(m, key, &n);
    if (!p)
        return 0;
    uint32_t i = a_max == UINT64_MAX ? n : mt_lower_bound(p, n, a_max + 1);
    if (i == 0)
        return 0;
    memcpy(out->key, key, 16);
    out->a = p[i - 1].a;
    out->b = p[i - 1].b;
    return 1;
}

size_t evs__mt_count(const evs__memtable *m, const uint8_t key[16], uint64_t lo, uint64_t hi)
{
    uint32_t n = 0;
    const mt_pair *p = lo > hi ? NULL : mt_lookup(m, key, &n);
    if (!p)
        return 0;
    uint32_t i = mt_lower_bound(p, n, lo);
    uint32_t j = hi == UINT64_MAX ? n : mt_lower_bound(p, n, hi + 1);
    return j > i ? j - i : 0;
}

size_t evs__mt_range(const evs__memtable *m, const uint8_t key[16], uint64_t lo, uint64_t hi,
                     evs_kv *out, size_t max)
{
    uint32_t np = 0;
    const mt_pair *p = lo > hi ? NULL : mt_lookup(m, key, &np);
    if (!p)
        return 0;
    size_t n = 0;
    for (uint32_t i = mt_lower_bound(p, np, lo); i < np && p[i].a <= hi && n < max; i++) {
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
    for (size_t i = 0; i < m->cap; i++)
        if (m->ctrl[i] != 0)
            order[k++] = &m->slots[i];
    qsort(order, k, sizeof *order, mt_slot_cmp);
    for (size_t i = 0; i < k; i++) {
        uint32_t n = 0;
        const mt_pair *p = mt_cpairs(m, (size_t)(order[i] - m->slots), &n);
        evs_kv e;
        memcpy(e.key, order[i]->key, 16);
        for (uint32_t j = 0; j < n; j++) {
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
