/*
 * test_lsm.c — the persisted index (src/index) on real files in a temp dir:
 * memtable, runs, merges, reopen, a differential test against a sorted-array
 * model, concurrent readers against a writer, damage, crash leftovers and
 * read-only opens.
 *
 * Random choices come from one seed, printed at start; EVS_SEED=<n> replays.
 * Temp dirs are made under $EVS_TEST_TMP (or /tmp) and removed afterwards;
 * the power-cut test runs on the in-memory vfs (tests/support/vfs_mem.h).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <xxhash.h>

#include "evs_int.h"
#include "index/lsm.h"
#include "index/lsm_ext.h"
#include "index/manifest.h"
#include "index/memtable.h"
#include "index/merge.h"
#include "index/run.h"
#include "testutil.h"
#include "vfs_mem.h"

/* ---- seed and PRNG ---- */

static uint64_t g_seed;

typedef struct rng {
    uint64_t s;  /* splitmix64 state */
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(rng *r, uint64_t n) { return n ? rng_next(r) % n : 0; }

static rng rng_for(uint64_t salt) { rng r = { g_seed ^ (salt * 0x2545F4914F6CDD1Dull) }; return r; }

/* ---- fixture: one temp dir per test ---- */

typedef struct fixture {
    char dir[512];  /* the temp dir */
} fixture;

static const evs_vfs *posix(void) { return evs__vfs_posix(); }

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx || evs_test_tmpdir(fx->dir, sizeof fx->dir) != 0) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    evs_test_rmtree(fx->dir);
    free(fx);
    return 0;
}

/* ---- helpers ---- */

/* Key i: big-endian i in the first 8 bytes, so key order is numeric order. */
static void mkkey(uint8_t k[16], uint64_t i)
{
    for (int b = 0; b < 8; b++)
        k[b] = (uint8_t)(i >> (56 - 8 * b));
    for (int b = 8; b < 16; b++)
        k[b] = (uint8_t)(0xA0 + b);
}

static evs_kv kv(uint64_t k, uint64_t a, uint64_t b)
{
    evs_kv e;
    mkkey(e.key, k);
    e.a = a;
    e.b = b;
    return e;
}

static void put(evs__lsm *l, uint64_t k, uint64_t a, uint64_t b)
{
    evs_kv e = kv(k, a, b);
    assert_int_equal(evs__lsm_put(l, &e), 0);
}

static void expect_get(evs__lsm *l, uint64_t k, uint64_t a_min, uint64_t want_a, uint64_t want_b)
{
    uint8_t key[16];
    evs_kv out;
    mkkey(key, k);
    assert_int_equal(evs__lsm_get(l, key, a_min, &out), 0);
    assert_memory_equal(out.key, key, 16);
    assert_int_equal(out.a, want_a);
    assert_int_equal(out.b, want_b);
}

static void expect_last(evs__lsm *l, uint64_t k, uint64_t a_max, uint64_t want_a, uint64_t want_b)
{
    uint8_t key[16];
    evs_kv out;
    mkkey(key, k);
    assert_int_equal(evs__lsm_get_last(l, key, a_max, &out), 0);
    assert_memory_equal(out.key, key, 16);
    assert_int_equal(out.a, want_a);
    assert_int_equal(out.b, want_b);
}

static void expect_missing(evs__lsm *l, uint64_t k, uint64_t a_min)
{
    uint8_t key[16];
    evs_kv out;
    mkkey(key, k);
    assert_int_equal(evs__lsm_get(l, key, a_min, &out), EVS_ENOTFOUND);
}

static evs__lsm *open_idx(const char *dir, int ro, uint64_t *covered)
{
    evs__lsm *l = NULL;
    uint64_t cov = 12345;
    assert_int_equal(evs__lsm_open(posix(), dir, "streams", ro, &cov, &l), 0);
    assert_non_null(l);
    if (covered)
        *covered = cov;
    return l;
}

/* Number of entries of dir whose name ends with suffix (NULL: all). */
static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name), sl = suffix ? strlen(suffix) : 0;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (!suffix || (l >= sl && !strcmp(de->d_name + l - sl, suffix)))
            n++;
    }
    closedir(d);
    return n;
}

/* Live run files of index "streams" (not temp files). */
static int count_runs(const char *dir)
{
    return count_files(dir, ".idx") - count_files(dir, ".tmp.idx") - count_files(dir, ".manifest.idx");
}

/* Name of the n-th run file (sorted) of index "streams". */
static void nth_run(const char *dir, int n, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char names[64][256];
    int k = 0;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL && k < 64) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "streams-", 8) || l < 8 || strcmp(de->d_name + l - 4, ".idx") ||
            strstr(de->d_name, ".tmp."))
            continue;
        snprintf(names[k++], 256, "%s", de->d_name);
    }
    closedir(d);
    assert_true(n < k);
    qsort(names, (size_t)k, 256, (int (*)(const void *, const void *))strcmp);
    snprintf(out, cap, "%s", names[n]);
}

static void path_of(char *out, size_t cap, const char *dir, const char *fname)
{
    int n = snprintf(out, cap, "%s/%s", dir, fname);
    assert_true(n > 0 && (size_t)n < cap);
}

static void flip_byte(const char *path, long off)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    int c = fgetc(f);
    assert_true(c != EOF);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    fputc(c ^ 0x5A, f);
    fclose(f);
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void copy_file(const char *from, const char *to)
{
    FILE *f = fopen(from, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 22);
    size_t n = fread(buf, 1, 1 << 22, f);
    fclose(f);
    write_file(to, buf, n);
    free(buf);
}

typedef struct problem_log {
    int n;                  /* problems reported */
    char file[16][256];     /* their files */
    uint64_t off[16];       /* their offsets */
} problem_log;

static void problem_cb(void *ctx, const char *file, uint64_t off, const char *problem)
{
    problem_log *pl = ctx;
    print_message("  verify: %s @%" PRIu64 ": %s\n", file, off, problem);
    if (pl->n < 16) {
        snprintf(pl->file[pl->n], 256, "%s", file);
        pl->off[pl->n] = off;
    }
    pl->n++;
}

static void expect_verify_clean(const char *dir)
{
    problem_log pl = { 0 };
    uint64_t problems = 99;
    assert_int_equal(evs__lsm_verify(posix(), dir, "streams", problem_cb, &pl, &problems), 0);
    assert_int_equal(problems, 0);
    assert_int_equal(pl.n, 0);
}

/* ---- tests ---- */

static void test_memtable_put_get_scan(void **state)
{
    fixture *fx = *state;
    uint64_t cov = 0;
    evs__lsm *l = open_idx(fx->dir, 0, &cov);
    assert_int_equal(cov, 0);
    assert_int_equal(evs__lsm_mem_entries(l), 0);
    for (uint64_t v = 1; v <= 10; v++)
        put(l, 7, v, 700 + v);
    put(l, 3, 1, 31);
    put(l, 9, 5, 95);
    /* out of order, then a replacement */
    put(l, 9, 2, 92);
    put(l, 9, 8, 98);
    put(l, 9, 4, 94);
    put(l, 9, 5, 555);
    assert_int_equal(evs__lsm_mem_entries(l), 15);
    expect_get(l, 7, 0, 1, 701);
    expect_get(l, 7, 4, 4, 704);
    expect_get(l, 9, 3, 4, 94);
    expect_get(l, 9, 5, 5, 555);
    expect_get(l, 9, 6, 8, 98);
    expect_missing(l, 9, 9);
    expect_missing(l, 8, 0);
    expect_missing(l, 7, 11);
    expect_last(l, 7, UINT64_MAX, 10, 710);
    expect_last(l, 7, 4, 4, 704);
    expect_last(l, 9, 7, 5, 555);
    expect_last(l, 9, 2, 2, 92);
    uint8_t key[16];
    evs_kv tmp;
    mkkey(key, 9);
    assert_int_equal(evs__lsm_get_last(l, key, 1, &tmp), EVS_ENOTFOUND);
    mkkey(key, 8);
    assert_int_equal(evs__lsm_get_last(l, key, UINT64_MAX, &tmp), EVS_ENOTFOUND);

    evs_kv out[16];
    size_t n = 99;
    mkkey(key, 7);
    assert_int_equal(evs__lsm_scan(l, key, 3, 6, out, 16, &n), 0);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(out[i].a, 3 + i);
        assert_int_equal(out[i].b, 703 + i);
    }
    assert_int_equal(evs__lsm_scan(l, key, 1, UINT64_MAX, out, 3, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(out[2].a, 3);
    mkkey(key, 9);
    assert_int_equal(evs__lsm_scan(l, key, 0, UINT64_MAX, out, 16, &n), 0);
    assert_int_equal(n, 4);
    uint64_t want[] = { 2, 4, 5, 8 };
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(out[i].a, want[i]);
    assert_int_equal(out[2].b, 555);
    assert_int_equal(evs__lsm_scan(l, key, 6, 5, out, 16, &n), 0);
    assert_int_equal(n, 0);
    mkkey(key, 8);
    assert_int_equal(evs__lsm_scan(l, key, 0, UINT64_MAX, out, 16, &n), 0);
    assert_int_equal(n, 0);
    evs__lsm_close(l);
    /* nothing was checkpointed: the memtable is gone, nothing was written */
    assert_int_equal(count_files(fx->dir, NULL), 0);
    l = open_idx(fx->dir, 0, &cov);
    assert_int_equal(cov, 0);
    expect_missing(l, 7, 0);
    evs__lsm_close(l);
}

static void test_checkpoint_and_reopen(void **state)
{
    fixture *fx = *state;
    uint64_t cov = 0;
    evs__lsm *l = open_idx(fx->dir, 0, &cov);
    for (uint64_t k = 0; k < 300; k++)
        for (uint64_t v = 1; v <= 3; v++)
            put(l, k, v, k * 10 + v);
    assert_int_equal(evs__lsm_checkpoint(l, 900), 0);
    assert_int_equal(evs__lsm_mem_entries(l), 0);
    assert_int_equal(count_runs(fx->dir), 1);
    assert_int_equal(count_files(fx->dir, ".manifest.idx"), 1);
    expect_get(l, 0, 0, 1, 1);
    expect_get(l, 299, 2, 2, 2992);
    expect_missing(l, 300, 0);
    put(l, 500, 1, 5001);
    evs__lsm_close(l);

    l = open_idx(fx->dir, 0, &cov);
    assert_int_equal(cov, 900);
    assert_int_equal(evs__lsm_mem_entries(l), 0);
    expect_get(l, 150, 3, 3, 1503);
    expect_missing(l, 150, 4);
    expect_missing(l, 500, 0);  /* put after the checkpoint, not persisted */
    /* a checkpoint with only a new covered position writes no run */
    assert_int_equal(evs__lsm_checkpoint(l, 1000), 0);
    assert_int_equal(count_runs(fx->dir), 1);
    evs__lsm_close(l);
    l = open_idx(fx->dir, 1, &cov);
    assert_int_equal(cov, 1000);
    evs__lsm_close(l);
    expect_verify_clean(fx->dir);
}

static void test_memtable_wins_over_runs(void **state)
{
    fixture *fx = *state;
    uint64_t cov = 0;
    evs__lsm *l = open_idx(fx->dir, 0, &cov);
    for (uint64_t k = 0; k < 100; k++)
        put(l, k, 5, 1);
    assert_int_equal(evs__lsm_checkpoint(l, 1), 0);
    put(l, 42, 5, 2);  /* same (key, a), new b: the memtable wins */
    expect_get(l, 42, 0, 5, 2);
    uint8_t key[16];
    evs_kv out[4];
    size_t n = 0;
    mkkey(key, 42);
    assert_int_equal(evs__lsm_scan(l, key, 0, 100, out, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].b, 2);
    /* newer runs win over older ones, also through merges */
    for (uint64_t round = 3; round <= 12; round++) {
        assert_int_equal(evs__lsm_checkpoint(l, round), 0);
        expect_get(l, 42, 0, 5, round - 1);
        put(l, 42, 5, round);
        put(l, 1000 + round, 1, round);
    }
    assert_true(count_runs(fx->dir) < 10);  /* merges happened */
    expect_get(l, 42, 0, 5, 12);
    assert_int_equal(evs__lsm_checkpoint(l, 13), 0);
    evs__lsm_close(l);
    l = open_idx(fx->dir, 0, &cov);
    assert_int_equal(cov, 13);
    expect_get(l, 42, 0, 5, 12);
    expect_get(l, 41, 0, 5, 1);
    assert_int_equal(evs__lsm_scan(l, key, 0, 100, out, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].b, 12);
    evs__lsm_close(l);
    expect_verify_clean(fx->dir);
}

static void test_merge_policy(void **state)
{
    (void)state;
    size_t s = 99;
    uint64_t four[] = { 1000, 3000, 10, 16000 };
    assert_int_equal(evs__merge_pick(four, 4, &s), 1);
    assert_int_equal(s, 0);
    uint64_t three[] = { 1000, 1000, 1000 };
    assert_int_equal(evs__merge_pick(three, 3, &s), 0);
    uint64_t big_then_small[] = { 1000000, 1000, 1000, 1000 };
    assert_int_equal(evs__merge_pick(big_then_small, 4, &s), 0);
    uint64_t five[] = { 1000000, 1000, 1000, 1000, 1000 };
    assert_int_equal(evs__merge_pick(five, 5, &s), 1);
    assert_int_equal(s, 1);
    uint64_t tiers[] = { 70000, 70000, 70000, 70000, 20000, 1000 };  /* tier 2 x4 */
    assert_int_equal(evs__merge_pick(tiers, 6, &s), 1);
    assert_int_equal(s, 0);
    /* interleaved tiers never form four of a kind: past the cap, smallest window */
    uint64_t mixed[14];
    for (size_t i = 0; i < 14; i++)
        mixed[i] = (i % 2) ? 100 : 100000 + i;
    assert_int_equal(evs__merge_pick(mixed, 12, &s), 0);
    assert_int_equal(evs__merge_pick(mixed, 14, &s), 1);
    assert_int_equal(s, 0);
    assert_int_equal(evs__merge_tier(0), 0);
    assert_int_equal(evs__merge_tier(16383), 0);
    assert_int_equal(evs__merge_tier(16384), 1);
    assert_int_equal(evs__merge_tier(65536), 2);
}

/* 64 streams x ~800 versions over 16 checkpoints: scans cross runs, blocks and merges. */
static void test_scans_across_runs_and_blocks(void **state)
{
    fixture *fx = *state;
    enum { K = 64, ROUNDS = 16, PER = 50 };
    uint64_t cov = 0, ver[K] = { 0 };
    rng r = rng_for(1);
    evs__lsm *l = open_idx(fx->dir, 0, &cov);
    int max_runs = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int k = 0; k < K; k++) {
            uint64_t n = PER - 10 + rng_below(&r, 20);
            for (uint64_t i = 0; i < n; i++) {
                ver[k]++;
                put(l, (uint64_t)k, ver[k], (uint64_t)k * 1000000 + ver[k]);
            }
        }
        assert_int_equal(evs__lsm_checkpoint(l, (uint64_t)round + 1), 0);
        int runs = count_runs(fx->dir);
        max_runs = runs > max_runs ? runs : max_runs;
        assert_int_equal(count_files(fx->dir, ".tmp.idx"), 0);
    }
    print_message("  runs after %d checkpoints: %d (max %d)\n", ROUNDS, count_runs(fx->dir), max_runs);
    assert_true(count_runs(fx->dir) <= 4);
    evs_kv *out = malloc(2000 * sizeof *out);
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < K; k++) {
            uint8_t key[16];
            size_t n = 0;
            mkkey(key, (uint64_t)k);
            assert_int_equal(evs__lsm_scan(l, key, 1, UINT64_MAX, out, 2000, &n), 0);
            assert_int_equal(n, ver[k]);
            for (size_t i = 0; i < n; i++) {
                assert_memory_equal(out[i].key, key, 16);
                assert_int_equal(out[i].a, i + 1);
                assert_int_equal(out[i].b, (uint64_t)k * 1000000 + i + 1);
            }
            uint64_t lo = 1 + rng_below(&r, ver[k]), hi = lo + rng_below(&r, 300);
            size_t lim = 1 + rng_below(&r, 250);
            assert_int_equal(evs__lsm_scan(l, key, lo, hi, out, lim, &n), 0);
            uint64_t want = (hi > ver[k] ? ver[k] : hi) - lo + 1;
            assert_int_equal(n, want < lim ? want : lim);
            for (size_t i = 0; i < n; i++)
                assert_int_equal(out[i].a, lo + i);
            expect_get(l, (uint64_t)k, lo, lo, (uint64_t)k * 1000000 + lo);
            expect_missing(l, (uint64_t)k, ver[k] + 1);
            expect_last(l, (uint64_t)k, UINT64_MAX, ver[k], (uint64_t)k * 1000000 + ver[k]);
            expect_last(l, (uint64_t)k, lo, lo, (uint64_t)k * 1000000 + lo);
        }
        expect_missing(l, K, 0);
        evs__lsm_close(l);
        l = open_idx(fx->dir, pass, &cov);
        assert_int_equal(cov, ROUNDS);
    }
    evs__lsm_close(l);
    free(out);
    expect_verify_clean(fx->dir);
}

/* ---- differential test against a sorted array ---- */

typedef struct model {
    evs_kv *e;      /* sorted by (key, a), unique */
    size_t n;       /* entries */
    size_t cap;     /* capacity */
} model;

static size_t model_lb(const model *m, const uint8_t *key, uint64_t a)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (evs__kv_cmp(m->e[mid].key, m->e[mid].a, key, a) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void model_put(model *m, const evs_kv *e)
{
    size_t i = model_lb(m, e->key, e->a);
    if (i < m->n && evs__kv_cmp(m->e[i].key, m->e[i].a, e->key, e->a) == 0) {
        m->e[i].b = e->b;
        return;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 1024;
        m->e = realloc(m->e, m->cap * sizeof *m->e);
        assert_non_null(m->e);
    }
    memmove(m->e + i + 1, m->e + i, (m->n - i) * sizeof *m->e);
    m->e[i] = *e;
    m->n++;
}

/* The memtable by itself against the model: tables of odd sizes (not powers
 * of two) that grow several times (past 1 MiB, so from anonymous mappings),
 * keys with one pair (inline) and with many (a block), pairs put out of order
 * and replaced; every lookup, the counts and the sorted walk agree. */
typedef struct mt_walk {
    const model *m;
    size_t i;
} mt_walk;

static int mt_walk_fn(void *ctx, const evs_kv *e)
{
    mt_walk *w = ctx;
    assert_true(w->i < w->m->n);
    const evs_kv *x = &w->m->e[w->i++];
    assert_memory_equal(e->key, x->key, 16);
    assert_int_equal(e->a, x->a);
    assert_int_equal(e->b, x->b);
    return 0;
}

static void test_memtable_model(void **state)
{
    (void)state;
    static const size_t sizes[] = { 1, 256, 1000, 12345 };
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        rng r = rng_for(100 + t);
        model m = { 0 };
        evs__memtable *mt = NULL;
        assert_int_equal(evs__mt_new_sized(&mt, sizes[t]), 0);
        size_t slots0 = evs__mt_slots(mt), keys = 0;
        const uint64_t hot = 40, cold = 40000;  /* hot keys get many pairs, cold ones mostly one */
        for (int i = 0; i < 60000; i++) {
            int is_hot = rng_below(&r, 4) == 0;
            uint64_t k = is_hot ? rng_below(&r, hot) : hot + rng_below(&r, cold);
            evs_kv e = kv(k, is_hot ? rng_below(&r, 5000) : rng_below(&r, 3), rng_next(&r));
            uint8_t probe[16];
            memcpy(probe, e.key, 16);
            size_t lb = model_lb(&m, probe, 0);
            int new_key = lb == m.n || memcmp(m.e[lb].key, probe, 16) != 0;
            model_put(&m, &e);
            assert_int_equal(evs__mt_put(mt, &e), 0);
            keys += new_key;
            assert_int_equal(evs__mt_entries(mt), m.n);
            assert_int_equal(evs__mt_keys(mt), keys);
        }
        assert_true(evs__mt_slots(mt) > slots0);  /* it grew */
        for (int q = 0; q < 10000; q++) {
            uint64_t k = rng_below(&r, 4) == 0 ? rng_below(&r, hot) : rng_below(&r, hot + cold + 10);
            uint8_t key[16];
            mkkey(key, k);
            uint64_t lo = rng_below(&r, 5100), hi = rng_below(&r, 3) ? lo + rng_below(&r, 200) : UINT64_MAX;
            size_t i = model_lb(&m, key, lo), j = i;
            while (j < m.n && memcmp(m.e[j].key, key, 16) == 0 && m.e[j].a <= hi)
                j++;
            evs_kv got, out[256];
            int has = i < m.n && memcmp(m.e[i].key, key, 16) == 0;
            assert_int_equal(evs__mt_get(mt, key, lo, &got), has);
            if (has) {
                assert_int_equal(got.a, m.e[i].a);
                assert_int_equal(got.b, m.e[i].b);
            }
            assert_int_equal(evs__mt_count(mt, key, lo, hi), j - i);
            size_t n = evs__mt_range(mt, key, lo, hi, out, 256);
            assert_int_equal(n, EVS_MIN(j - i, (size_t)256));
            for (size_t x = 0; x < n; x++) {
                assert_memory_equal(out[x].key, key, 16);
                assert_int_equal(out[x].a, m.e[i + x].a);
                assert_int_equal(out[x].b, m.e[i + x].b);
            }
            /* the last pair with a <= hi */
            size_t end = model_lb(&m, key, hi == UINT64_MAX ? UINT64_MAX : hi + 1);
            if (hi == UINT64_MAX)
                while (end < m.n && memcmp(m.e[end].key, key, 16) == 0)
                    end++;
            int has_last = end > 0 && memcmp(m.e[end - 1].key, key, 16) == 0;
            assert_int_equal(evs__mt_get_last(mt, key, hi, &got), has_last);
            if (has_last) {
                assert_int_equal(got.a, m.e[end - 1].a);
                assert_int_equal(got.b, m.e[end - 1].b);
            }
        }
        mt_walk w = { &m, 0 };
        assert_int_equal(evs__mt_visit_sorted(mt, mt_walk_fn, &w), 0);
        assert_int_equal(w.i, m.n);
        evs__mt_free(mt);
        free(m.e);
    }
}

static void test_differential(void **state)
{
    fixture *fx = *state;
    rng r = rng_for(2);
    model m = { 0 };
    evs_kv *log = NULL;  /* every put, in order: position = index + 1 */
    size_t nlog = 0, caplog = 0;
    uint64_t cov = 0, checkpoints = 0, reopens = 0, crashes = 0;
    evs__lsm *l = open_idx(fx->dir, 0, &cov);
    evs_kv out[64], mout[64];
    const int OPS = 40000;
    for (int op = 0; op < OPS; op++) {
        uint64_t dice = rng_below(&r, 1000);
        uint8_t key[16];
        mkkey(key, rng_below(&r, 48));
        if (rng_below(&r, 8) == 0)  /* sometimes a random key far from the others */
            for (int b = 0; b < 16; b++)
                key[b] = (uint8_t)rng_next(&r);
        if (dice < 550) {
            evs_kv e;
            memcpy(e.key, key, 16);
            e.a = rng_below(&r, 400);
            e.b = rng_next(&r);
            assert_int_equal(evs__lsm_put(l, &e), 0);
            model_put(&m, &e);
            if (nlog == caplog) {
                caplog = caplog ? caplog * 2 : 1024;
                log = realloc(log, caplog * sizeof *log);
            }
            log[nlog++] = e;
        } else if (dice < 700) {
            uint64_t a_max = rng_below(&r, 8) == 0 ? UINT64_MAX : rng_below(&r, 420);
            evs_kv got;
            int rc = evs__lsm_get_last(l, key, a_max, &got);
            size_t i = a_max == UINT64_MAX ? model_lb(&m, key, 0) : model_lb(&m, key, a_max + 1);
            if (a_max == UINT64_MAX)
                while (i < m.n && !memcmp(m.e[i].key, key, 16))
                    i++;
            if (i > 0 && !memcmp(m.e[i - 1].key, key, 16)) {
                assert_int_equal(rc, 0);
                assert_int_equal(got.a, m.e[i - 1].a);
                assert_int_equal(got.b, m.e[i - 1].b);
            } else {
                assert_int_equal(rc, EVS_ENOTFOUND);
            }
        } else if (dice < 800) {
            uint64_t a_min = rng_below(&r, 420);
            evs_kv got;
            int rc = evs__lsm_get(l, key, a_min, &got);
            size_t i = model_lb(&m, key, a_min);
            if (i < m.n && !memcmp(m.e[i].key, key, 16)) {
                assert_int_equal(rc, 0);
                assert_int_equal(got.a, m.e[i].a);
                assert_int_equal(got.b, m.e[i].b);
            } else {
                assert_int_equal(rc, EVS_ENOTFOUND);
            }
        } else if (dice < 980) {
            uint64_t lo = rng_below(&r, 420), hi = lo + rng_below(&r, 200);
            size_t max = 1 + rng_below(&r, 64), n = 0, mn = 0;
            assert_int_equal(evs__lsm_scan(l, key, lo, hi, out, max, &n), 0);
            for (size_t i = model_lb(&m, key, lo); i < m.n && mn < max; i++) {
                if (memcmp(m.e[i].key, key, 16) || m.e[i].a > hi)
                    break;
                mout[mn++] = m.e[i];
            }
            assert_int_equal(n, mn);
            for (size_t i = 0; i < n; i++) {
                assert_memory_equal(out[i].key, key, 16);
                assert_int_equal(out[i].a, mout[i].a);
                assert_int_equal(out[i].b, mout[i].b);
            }
        } else if (dice < 994) {
            assert_int_equal(evs__lsm_checkpoint(l, nlog), 0);
            assert_int_equal(evs__lsm_mem_entries(l), 0);
            checkpoints++;
        } else if (dice < 997) {
            /* clean reopen: checkpoint, close, open */
            assert_int_equal(evs__lsm_checkpoint(l, nlog), 0);
            evs__lsm_close(l);
            l = open_idx(fx->dir, 0, &cov);
            assert_int_equal(cov, nlog);
            reopens++;
        } else {
            /* "crash": close without checkpoint, then replay the log after covered */
            evs__lsm_close(l);
            l = open_idx(fx->dir, 0, &cov);
            assert_true(cov <= nlog);
            for (size_t i = (size_t)cov; i < nlog; i++)
                assert_int_equal(evs__lsm_put(l, &log[i]), 0);
            crashes++;
        }
    }
    print_message("  %d ops, %zu entries, %" PRIu64 " checkpoints, %" PRIu64 " reopens, %" PRIu64
                  " crashes, %d runs\n", OPS, m.n, checkpoints, reopens, crashes, count_runs(fx->dir));
    assert_true(checkpoints > 20);
    /* every entry, one by one, after a final reopen */
    assert_int_equal(evs__lsm_checkpoint(l, nlog), 0);
    evs__lsm_close(l);
    l = open_idx(fx->dir, 1, &cov);
    for (size_t i = 0; i < m.n; i++) {
        evs_kv got;
        assert_int_equal(evs__lsm_get(l, m.e[i].key, m.e[i].a, &got), 0);
        assert_int_equal(got.a, m.e[i].a);
        assert_int_equal(got.b, m.e[i].b);
    }
    evs__lsm_close(l);
    expect_verify_clean(fx->dir);
    free(m.e);
    free(log);
}

/* ---- concurrency: one writer, four readers ---- */

enum { CK = 64, CWRITES = 60000, CREADERS = 4 };

typedef struct conc {
    evs__lsm *l;                    /* the index */
    _Atomic uint64_t published[CK]; /* versions of stream k visible so far */
    atomic_int writer_done;         /* 1 when the writer has finished */
    atomic_int errors;              /* wrong answers seen by any thread */
    atomic_long reads;              /* lookups done by readers */
    pthread_barrier_t start;        /* lines the threads up */
} conc;

typedef struct reader_arg {
    conc *c;                        /* shared state */
    int id;                         /* seed salt of this reader */
} reader_arg;

static uint64_t cval(uint64_t k, uint64_t v) { return k * 1000003 + v * 7; }

static void *writer_main(void *arg)
{
    conc *c = arg;
    rng r = rng_for(100);
    uint64_t ver[CK] = { 0 };
    pthread_barrier_wait(&c->start);
    for (uint64_t i = 1; i <= CWRITES; i++) {
        uint64_t k = rng_below(&r, CK);
        evs_kv e = kv(k, ++ver[k], 0);
        e.b = cval(k, e.a);
        if (evs__lsm_put(c->l, &e) != 0)
            atomic_fetch_add(&c->errors, 1);
        atomic_store_explicit(&c->published[k], ver[k], memory_order_release);
        if (i % 97 == 0 && ver[k] > 3) {  /* an idempotent re-put of an older version */
            e.a = ver[k] - 3;
            e.b = cval(k, e.a);
            if (evs__lsm_put(c->l, &e) != 0)
                atomic_fetch_add(&c->errors, 1);
        }
        if (i % 2500 == 0 && evs__lsm_checkpoint(c->l, i) != 0)
            atomic_fetch_add(&c->errors, 1);
    }
    atomic_store(&c->writer_done, 1);
    return NULL;
}

static void *reader_main(void *arg)
{
    conc *c = ((reader_arg *)arg)->c;
    rng r = rng_for(200 + (uint64_t)((reader_arg *)arg)->id);
    evs_kv *buf = malloc(4096 * sizeof *buf);
    pthread_barrier_wait(&c->start);
    /* bounded: at least 3000 lookups (unless 4M iterations pass first), then until the
     * writer is done, at most 400000 lookups */
    long done = 0;
    for (long it = 0; it < 4000000 && done < 400000 && (done < 3000 || !atomic_load(&c->writer_done));
         it++) {
        uint64_t k = rng_below(&r, CK);
        uint64_t pub = atomic_load_explicit(&c->published[k], memory_order_acquire);
        uint8_t key[16];
        evs_kv got;
        mkkey(key, k);
        if (pub == 0)
            continue;
        uint64_t v = 1 + rng_below(&r, pub);
        if (evs__lsm_get(c->l, key, v, &got) != 0 || got.a != v || got.b != cval(k, v))
            atomic_fetch_add(&c->errors, 1);
        if (evs__lsm_get_last(c->l, key, UINT64_MAX, &got) != 0 || got.a < pub ||
            got.b != cval(k, got.a))
            atomic_fetch_add(&c->errors, 1);
        if (it % 8 == 0) {
            size_t n = 0, want = pub - v + 1 < 4096 ? (size_t)(pub - v + 1) : 4096;
            if (evs__lsm_scan(c->l, key, v, pub, buf, 4096, &n) != 0 || n != want)
                atomic_fetch_add(&c->errors, 1);
            for (size_t i = 0; i < n; i++)
                if (buf[i].a != v + i || buf[i].b != cval(k, v + i))
                    atomic_fetch_add(&c->errors, 1);
        }
        mkkey(key, CK + k);
        if (evs__lsm_get(c->l, key, 0, &got) != EVS_ENOTFOUND)
            atomic_fetch_add(&c->errors, 1);
        atomic_fetch_add(&c->reads, 1);
        done++;
    }
    free(buf);
    return NULL;
}

static void test_concurrent_readers_and_writer(void **state)
{
    fixture *fx = *state;
    conc *c = calloc(1, sizeof *c);
    pthread_t w, rd[CREADERS];
    reader_arg args[CREADERS];
    uint64_t cov = 0;
    c->l = open_idx(fx->dir, 0, &cov);
    pthread_barrier_init(&c->start, NULL, CREADERS + 1);
    for (int i = 0; i < CREADERS; i++) {
        args[i].c = c;
        args[i].id = i;
        assert_int_equal(pthread_create(&rd[i], NULL, reader_main, &args[i]), 0);
    }
    assert_int_equal(pthread_create(&w, NULL, writer_main, c), 0);
    pthread_join(w, NULL);
    for (int i = 0; i < CREADERS; i++)
        pthread_join(rd[i], NULL);
    print_message("  %ld reader lookups, %d errors, %d runs\n", atomic_load(&c->reads),
                  atomic_load(&c->errors), count_runs(fx->dir));
    assert_int_equal(atomic_load(&c->errors), 0);
    assert_true(atomic_load(&c->reads) >= 3000 * CREADERS);
    pthread_barrier_destroy(&c->start);
    evs__lsm_close(c->l);
    free(c);
    expect_verify_clean(fx->dir);
}

/* ---- freeze on the owner, flush and merge on another thread ---- */

typedef struct bg {
    conc *c;                        /* the shared state of the concurrency test above */
    atomic_int frozen_total;        /* freezes made by the owner */
    atomic_int flusher_errors;      /* flush / merge failures */
} bg;

static void *bg_owner_main(void *arg)
{
    bg *b = arg;
    conc *c = b->c;
    rng r = rng_for(300);
    uint64_t ver[CK] = { 0 };
    pthread_barrier_wait(&c->start);
    for (uint64_t i = 1; i <= CWRITES; i++) {
        uint64_t k = rng_below(&r, CK);
        evs_kv e = kv(k, ++ver[k], 0);
        e.b = cval(k, e.a);
        if (evs__lsm_put(c->l, &e) != 0)
            atomic_fetch_add(&c->errors, 1);
        atomic_store_explicit(&c->published[k], ver[k], memory_order_release);
        if (i % 1500 == 0) {
            int rc;
            while ((rc = evs__lsm_freeze(c->l, i)) == -EBUSY)  /* the flusher is behind */
                sched_yield();
            if (rc != 0)
                atomic_fetch_add(&c->errors, 1);
            atomic_fetch_add(&b->frozen_total, 1);
        }
    }
    atomic_store(&c->writer_done, 1);
    return NULL;
}

static void *bg_flusher_main(void *arg)
{
    bg *b = arg;
    conc *c = b->c;
    pthread_barrier_wait(&c->start);
    for (;;) {
        int done = atomic_load(&c->writer_done), more = 0;
        while (evs__lsm_frozen(c->l) > 0)
            if (evs__lsm_flush(c->l) != 0)
                atomic_fetch_add(&b->flusher_errors, 1);
        if (evs__lsm_merge_step(c->l, 300, &more) != 0)  /* small steps: flushes interleave with merges */
            atomic_fetch_add(&b->flusher_errors, 1);
        if (done && !more && evs__lsm_frozen(c->l) == 0)
            break;
        if (!more)
            sched_yield();
    }
    return NULL;
}

static void test_background_flush_with_readers(void **state)
{
    fixture *fx = *state;
    conc *c = calloc(1, sizeof *c);
    bg b = { c, 0, 0 };
    pthread_t w, fl, rd[CREADERS];
    reader_arg args[CREADERS];
    uint64_t cov = 0;
    c->l = open_idx(fx->dir, 0, &cov);
    pthread_barrier_init(&c->start, NULL, CREADERS + 2);
    for (int i = 0; i < CREADERS; i++) {
        args[i].c = c;
        args[i].id = 10 + i;
        assert_int_equal(pthread_create(&rd[i], NULL, reader_main, &args[i]), 0);
    }
    assert_int_equal(pthread_create(&fl, NULL, bg_flusher_main, &b), 0);
    assert_int_equal(pthread_create(&w, NULL, bg_owner_main, &b), 0);
    pthread_join(w, NULL);
    pthread_join(fl, NULL);
    for (int i = 0; i < CREADERS; i++)
        pthread_join(rd[i], NULL);
    print_message("  %ld reader lookups, %d errors, %d freezes, %d runs\n", atomic_load(&c->reads),
                  atomic_load(&c->errors), atomic_load(&b.frozen_total), count_runs(fx->dir));
    assert_int_equal(atomic_load(&c->errors), 0);
    assert_int_equal(atomic_load(&b.flusher_errors), 0);
    assert_int_equal(evs__lsm_frozen(c->l), 0);
    /* the last freeze covered 60000 (CWRITES is a multiple of 1500): everything is in runs */
    assert_int_equal(evs__lsm_mem_entries(c->l), 0);
    evs__lsm_close(c->l);
    expect_verify_clean(fx->dir);
    evs__lsm *l = open_idx(fx->dir, 0, &cov);
    assert_int_equal(cov, CWRITES);
    rng r = rng_for(300);
    uint64_t ver[CK] = { 0 };
    for (uint64_t i = 1; i <= CWRITES; i++)
        ver[rng_below(&r, CK)]++;
    for (uint64_t k = 0; k < CK; k++) {
        if (ver[k] == 0)
            continue;
        expect_last(l, k, UINT64_MAX, ver[k], cval(k, ver[k]));
        expect_get(l, k, 1, 1, cval(k, 1));
    }
    evs__lsm_close(l);
    pthread_barrier_destroy(&c->start);
    free(c);
}

/* The merges made depend only on the sequence of flushes, not on how flushes
 * and merge steps interleave: the same puts and freezes, checkpointed at once
 * (A) or with flushes delayed and merges done in small steps between them
 * (B), end with the same runs and the same number of files made. */
static void lsm_schedule(const char *dir, int delayed, uint64_t seed)
{
    evs__lsm *l = open_idx(dir, 0, NULL);
    rng r = { seed };
    rng sched = rng_for(seed ^ 0x5c4edull);
    for (uint64_t round = 1; round <= 40; round++) {
        uint64_t n = 200 + rng_below(&r, 3000);  /* tiers mix: odd sizes */
        for (uint64_t i = 0; i < n; i++)
            put(l, rng_below(&r, 1u << 20), round, i);
        if (!delayed) {
            assert_int_equal(evs__lsm_checkpoint(l, round), 0);
            continue;
        }
        assert_int_equal(evs__lsm_freeze(l, round), 0);
        if (evs__lsm_frozen(l) == 4 || rng_below(&sched, 3) == 0)
            while (evs__lsm_frozen(l) > 0)
                assert_int_equal(evs__lsm_flush(l), 0);
        for (uint64_t k = rng_below(&sched, 4); k > 0; k--) {
            int more = 0;
            assert_int_equal(evs__lsm_merge_step(l, 1 + rng_below(&sched, 5000), &more), 0);
        }
    }
    if (delayed)
        assert_int_equal(evs__lsm_checkpoint(l, 40), 0);  /* flush the rest, finish merging */
    evs__lsm_close(l);
}

static void test_merges_independent_of_timing(void **state)
{
    fixture *fx = *state;
    char da[600], db[600];
    snprintf(da, sizeof da, "%s/a", fx->dir);
    snprintf(db, sizeof db, "%s/b", fx->dir);
    assert_int_equal(mkdir(da, 0700), 0);
    assert_int_equal(mkdir(db, 0700), 0);
    lsm_schedule(da, 0, g_seed);
    lsm_schedule(db, 1, g_seed);
    evs__manifest ma, mb;
    assert_int_equal(evs__man_read(posix(), NULL, da, "streams", &ma), 0);
    assert_int_equal(evs__man_read(posix(), NULL, db, "streams", &mb), 0);
    print_message("  %zu runs after 40 checkpoints, %" PRIu64 " files made\n", ma.nruns, ma.next_seq - 1);
    assert_int_equal(ma.covered, 40);
    assert_int_equal(mb.covered, 40);
    assert_int_equal(ma.next_seq, mb.next_seq);
    assert_int_equal(ma.nruns, mb.nruns);
    for (size_t i = 0; i < ma.nruns; i++)
        assert_int_equal(ma.runs[i].entries, mb.runs[i].entries);
    assert_int_equal(count_runs(da), (int)ma.nruns);
    assert_int_equal(count_runs(db), (int)mb.nruns);
    evs__man_free(&ma);
    evs__man_free(&mb);
    expect_verify_clean(da);
    expect_verify_clean(db);
}

/* ---- damage ---- */

/* One run of keys 0..9999 (a = 1), 79 blocks. */
static void make_one_run(const char *dir)
{
    evs__lsm *l = open_idx(dir, 0, NULL);
    for (uint64_t k = 0; k < 10000; k++)
        put(l, k, 1, k + 100);
    assert_int_equal(evs__lsm_checkpoint(l, 10000), 0);
    evs__lsm_close(l);
    assert_int_equal(count_runs(dir), 1);
}

static void test_damaged_block(void **state)
{
    fixture *fx = *state;
    char fname[256], path[1024];
    make_one_run(fx->dir);
    nth_run(fx->dir, 0, fname, sizeof fname);
    path_of(path, sizeof path, fx->dir, fname);
    /* block 5 holds keys 635..761; flip a byte of its second entry's b */
    const long blk5 = 4096L * (1 + 5);
    flip_byte(path, blk5 + 32 + 24);
    uint64_t cov = 0;
    evs__lsm *l = open_idx(fx->dir, 0, &cov);  /* open reads only header and fences */
    assert_int_equal(cov, 10000);
    evs_kv out[8];
    uint8_t key[16];
    size_t n = 0;
    mkkey(key, 700);
    assert_int_equal(evs__lsm_get(l, key, 0, &out[0]), EVS_ECORRUPT);
    assert_int_equal(evs__lsm_scan(l, key, 0, 10, out, 8, &n), EVS_ECORRUPT);
    mkkey(key, 635);
    assert_int_equal(evs__lsm_get(l, key, 0, &out[0]), EVS_ECORRUPT);
    expect_get(l, 634, 0, 1, 734);  /* block 4 */
    /* block 6 starts with (762, 1); (762, 0) could end block 5, so a_min = 0 reads it */
    expect_get(l, 762, 1, 1, 862);
    mkkey(key, 762);
    assert_int_equal(evs__lsm_get(l, key, 0, &out[0]), EVS_ECORRUPT);
    expect_get(l, 9999, 1, 1, 10099);
    evs__lsm_close(l);
    problem_log pl = { 0 };
    uint64_t problems = 0;
    assert_int_equal(evs__lsm_verify(posix(), fx->dir, "streams", problem_cb, &pl, &problems), 0);
    assert_int_equal(problems, 1);
    assert_string_equal(pl.file[0], fname);
    assert_true(pl.off[0] >= (uint64_t)blk5 && pl.off[0] < (uint64_t)blk5 + 4096);
}

static void test_verify_reports_order_and_fences(void **state)
{
    fixture *fx = *state;
    char fname[256], path[1024];
    make_one_run(fx->dir);
    nth_run(fx->dir, 0, fname, sizeof fname);
    path_of(path, sizeof path, fx->dir, fname);
    /* swap two entries of block 2 and re-seal it: checksum-valid, out of order */
    FILE *f = fopen(path, "r+b");
    uint8_t blk[4096], tmp[32];
    assert_non_null(f);
    assert_int_equal(fseek(f, 4096L * 3, SEEK_SET), 0);
    assert_int_equal(fread(blk, 1, 4096, f), 4096);
    memcpy(tmp, blk + 32 * 10, 32);
    memcpy(blk + 32 * 10, blk + 32 * 11, 32);
    memcpy(blk + 32 * 11, tmp, 32);
    evs__put64(blk + 4088, XXH3_64bits(blk, 4088));
    assert_int_equal(fseek(f, 4096L * 3, SEEK_SET), 0);
    assert_int_equal(fwrite(blk, 1, 4096, f), 4096);
    fclose(f);
    problem_log pl = { 0 };
    uint64_t problems = 0;
    assert_int_equal(evs__lsm_verify(posix(), fx->dir, "streams", problem_cb, &pl, &problems), 0);
    assert_int_equal(problems, 1);
    assert_string_equal(pl.file[0], fname);
    assert_int_equal(pl.off[0], 4096 * 3 + 32 * 11);
    /* damage the fence table too: reported at its offset, and open refuses */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    flip_byte(path, (long)st.st_size - 30);
    memset(&pl, 0, sizeof pl);
    assert_int_equal(evs__lsm_verify(posix(), fx->dir, "streams", problem_cb, &pl, &problems), 0);
    assert_int_equal(problems, 2);
    assert_int_equal(pl.off[0], 4096 * (1 + 79));
    evs__lsm *l = NULL;
    assert_int_equal(evs__lsm_open(posix(), fx->dir, "streams", 0, NULL, &l), EVS_ECORRUPT);
    assert_null(l);
}

/* Set entry idx of block blk of run file path to (key k, a) and re-seal the
 * block's checksum: the file is as valid as the writer's, but unordered. */
static void reseal_entry(const char *path, long blk, int idx, uint64_t k, uint64_t a)
{
    FILE *f = fopen(path, "r+b");
    uint8_t b[4096];
    assert_non_null(f);
    assert_int_equal(fseek(f, 4096L * (1 + blk), SEEK_SET), 0);
    assert_int_equal(fread(b, 1, 4096, f), 4096);
    mkkey(b + 32 * idx, k);
    evs__put64(b + 32 * idx + 16, a);
    evs__put64(b + 4088, XXH3_64bits(b, 4088));
    assert_int_equal(fseek(f, 4096L * (1 + blk), SEEK_SET), 0);
    assert_int_equal(fwrite(b, 1, 4096, f), 4096);
    fclose(f);
}

/* Finding 9 of docs/RELIABILITY.md (fuzz_index): run files whose checksums
 * are right but whose entries are not strictly increasing — a duplicate
 * inside a block, a block whose last entry reaches the next block's first,
 * a last entry that is not the last fence — must be refused as corrupt by
 * scans and merges, not handed on (a scan returned one version twice). */
static void test_unordered_run_is_corrupt(void **state)
{
    fixture *fx = *state;
    /* key 7 with versions a = 1..300, then (8, 1): blocks of 127, 127 and 47 entries */
    struct { long blk; int idx; uint64_t k, a; const char *what; } cases[] = {
        {0, 11, 7, 11, "duplicate inside a block"},      /* entry 11 holds a = 12; 10 holds 11 */
        {0, 20, 7, 5, "backwards inside a block"},
        {0, 126, 7, 128, "block 0's last entry = block 1's first"},
        {1, 126, 7, 300, "block 1's last entry past block 2's first"},
        {2, 46, 9, 1, "the last entry is not the last fence"},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        char dir[600], fname[256], path[1024];
        print_message("  case %zu: %s\n", ci, cases[ci].what);
        snprintf(dir, sizeof dir, "%s/c%zu", fx->dir, ci);
        assert_int_equal(mkdir(dir, 0755), 0);
        evs__lsm *l = open_idx(dir, 0, NULL);
        for (uint64_t a = 1; a <= 300; a++)
            put(l, 7, a, a + 1000);
        put(l, 8, 1, 2);  /* the last entry and fence: block 2, index 46 */
        assert_int_equal(evs__lsm_checkpoint(l, 301), 0);
        evs__lsm_close(l);
        nth_run(dir, 0, fname, sizeof fname);
        path_of(path, sizeof path, dir, fname);
        /* the last case replaces (8, 1) by (9, 1): still in order, but not the fence */
        reseal_entry(path, cases[ci].blk, cases[ci].idx, cases[ci].k, cases[ci].a);

        l = open_idx(dir, 0, NULL);  /* open reads header and fences only: they are intact */
        uint8_t key[16];
        evs_kv out[400];
        size_t n = 99;
        mkkey(key, 7);
        if (ci < 4) {
            /* the scan of key 7 meets the bad entry */
            assert_int_equal(evs__lsm_scan(l, key, 0, UINT64_MAX, out, 400, &n), EVS_ECORRUPT);
            assert_int_equal(n, 0);
        } else {
            /* a scan stops at the next key, so it never meets the run's end: all of key 7 */
            assert_int_equal(evs__lsm_scan(l, key, 0, UINT64_MAX, out, 400, &n), 0);
            assert_int_equal(n, 300);
            for (size_t j = 0; j < n; j++)
                assert_int_equal(out[j].a, j + 1);
        }
        evs__lsm_close(l);

        /* a merge of the run with itself refuses it too (was EVS_EINVAL from the writer) */
        evs__run *r = NULL, *m = NULL;
        assert_int_equal(evs__run_open(posix(), NULL, dir, fname, &r), 0);
        evs__run *in[2] = {r, r};
        assert_int_equal(evs__merge_runs(posix(), NULL, dir, "streams", 999, in, 2, &m), EVS_ECORRUPT);
        assert_null(m);
        evs__run_unref(r);

        problem_log pl = { 0 };
        uint64_t problems = 0;
        assert_int_equal(evs__lsm_verify(posix(), dir, "streams", problem_cb, &pl, &problems), 0);
        assert_true(problems >= 1);
    }
}

static void test_damaged_manifest_and_header(void **state)
{
    fixture *fx = *state;
    char fname[256], path[1024];
    evs__lsm *l = NULL;
    make_one_run(fx->dir);
    /* an unrelated file in the directory must survive destroy */
    path_of(path, sizeof path, fx->dir, "00000000000000000001.seg");
    write_file(path, "log", 3);
    path_of(path, sizeof path, fx->dir, "ids.manifest.idx");
    write_file(path, "other index", 11);

    path_of(path, sizeof path, fx->dir, "streams.manifest.idx");
    flip_byte(path, 17);  /* inside covered */
    assert_int_equal(evs__lsm_open(posix(), fx->dir, "streams", 0, NULL, &l), EVS_ECORRUPT);
    assert_int_equal(evs__lsm_open(posix(), fx->dir, "streams", 1, NULL, &l), EVS_ECORRUPT);
    assert_null(l);
    problem_log pl = { 0 };
    uint64_t problems = 0;
    assert_int_equal(evs__lsm_verify(posix(), fx->dir, "streams", problem_cb, &pl, &problems), 0);
    assert_int_equal(problems, 1);
    assert_string_equal(pl.file[0], "streams.manifest.idx");

    /* destroy removes every file of the index and nothing else; open is then empty */
    assert_int_equal(evs__lsm_destroy(posix(), fx->dir, "streams"), 0);
    assert_int_equal(count_files(fx->dir, NULL), 2);
    uint64_t cov = 9;
    l = open_idx(fx->dir, 0, &cov);
    assert_int_equal(cov, 0);
    expect_missing(l, 5, 0);
    evs__lsm_close(l);

    /* a damaged run header */
    assert_int_equal(evs__lsm_destroy(posix(), fx->dir, "streams"), 0);
    make_one_run(fx->dir);
    nth_run(fx->dir, 0, fname, sizeof fname);
    path_of(path, sizeof path, fx->dir, fname);
    flip_byte(path, 30);
    assert_int_equal(evs__lsm_open(posix(), fx->dir, "streams", 0, NULL, &l), EVS_ECORRUPT);
    memset(&pl, 0, sizeof pl);
    assert_int_equal(evs__lsm_verify(posix(), fx->dir, "streams", problem_cb, &pl, &problems), 0);
    assert_true(problems >= 1);
    assert_string_equal(pl.file[0], fname);

    /* a truncated run: open refuses, verify says where */
    assert_int_equal(evs__lsm_destroy(posix(), fx->dir, "streams"), 0);
    make_one_run(fx->dir);
    nth_run(fx->dir, 0, fname, sizeof fname);
    path_of(path, sizeof path, fx->dir, fname);
    assert_int_equal(truncate(path, 4096 * 40 + 100), 0);
    assert_int_equal(evs__lsm_open(posix(), fx->dir, "streams", 0, NULL, &l), EVS_ECORRUPT);
    memset(&pl, 0, sizeof pl);
    assert_int_equal(evs__lsm_verify(posix(), fx->dir, "streams", problem_cb, &pl, &problems), 0);
    assert_int_equal(problems, 2);  /* the size, then the first block past the end */
    assert_int_equal(pl.off[0], 4096 * 40 + 100);
    assert_int_equal(pl.off[1], 4096 * 40);

    /* a manifest from a newer format version (checksum valid): EVS_EFORMAT */
    assert_int_equal(evs__lsm_destroy(posix(), fx->dir, "streams"), 0);
    make_one_run(fx->dir);
    {
        uint8_t man[256];
        path_of(path, sizeof path, fx->dir, "streams.manifest.idx");
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        size_t len = fread(man, 1, sizeof man, f);
        fclose(f);
        assert_int_equal(len, 40 + 32 + 8);
        evs__put32(man + 8, 2);
        evs__put64(man + len - 8, XXH3_64bits(man, len - 8));
        write_file(path, man, len);
    }
    assert_int_equal(evs__lsm_open(posix(), fx->dir, "streams", 0, NULL, &l), EVS_EFORMAT);
    assert_null(l);

    /* a run the manifest lists has vanished: writer and reader both refuse */
    assert_int_equal(evs__lsm_destroy(posix(), fx->dir, "streams"), 0);
    make_one_run(fx->dir);
    nth_run(fx->dir, 0, fname, sizeof fname);
    path_of(path, sizeof path, fx->dir, fname);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(evs__lsm_open(posix(), fx->dir, "streams", 1, NULL, &l), EVS_ECORRUPT);
    assert_int_equal(evs__lsm_open(posix(), fx->dir, "streams", 0, NULL, &l), EVS_ECORRUPT);
    memset(&pl, 0, sizeof pl);
    assert_int_equal(evs__lsm_verify(posix(), fx->dir, "streams", problem_cb, &pl, &problems), 0);
    assert_int_equal(problems, 1);
    assert_int_equal(evs__lsm_destroy(posix(), fx->dir, "streams"), 0);
    assert_int_equal(count_files(fx->dir, NULL), 2);
    /* destroying an absent index is fine */
    assert_int_equal(evs__lsm_destroy(posix(), fx->dir, "streams"), 0);
}

/* ---- read-only ---- */

typedef struct listing {
    int n;                  /* files */
    char name[64][256];     /* sorted names */
    long long size[64];     /* sizes */
    long long mtime[64];    /* modification times, ns */
} listing;

static void list_dir(const char *dir, listing *ls)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char names[64][256];
    int n = 0;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        assert_true(n < 64);
        snprintf(names[n++], 256, "%s", de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, 256, (int (*)(const void *, const void *))strcmp);
    memset(ls, 0, sizeof *ls);
    ls->n = n;
    for (int i = 0; i < n; i++) {
        char path[1024];
        struct stat st;
        memcpy(ls->name[i], names[i], 256);
        path_of(path, sizeof path, dir, names[i]);
        assert_int_equal(stat(path, &st), 0);
        ls->size[i] = st.st_size;
        ls->mtime[i] = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    }
}

static void test_read_only_writes_nothing(void **state)
{
    fixture *fx = *state;
    listing before, after;
    char path[1024];
    uint64_t cov = 0;
    /* an empty directory stays empty */
    evs__lsm *l = open_idx(fx->dir, 1, &cov);
    assert_int_equal(cov, 0);
    put(l, 1, 1, 1);
    expect_get(l, 1, 0, 1, 1);
    assert_int_equal(evs__lsm_checkpoint(l, 1), EVS_EREADONLY);
    evs__lsm_close(l);
    assert_int_equal(count_files(fx->dir, NULL), 0);
    /* with runs, leftovers and strays present, a read-only open touches none of them */
    l = open_idx(fx->dir, 0, &cov);
    for (uint64_t round = 0; round < 6; round++) {
        for (uint64_t k = 0; k < 500; k++)
            put(l, k, round + 1, k);
        assert_int_equal(evs__lsm_checkpoint(l, round + 1), 0);
    }
    evs__lsm_close(l);
    path_of(path, sizeof path, fx->dir, "streams-00000000000000000099.tmp.idx");
    write_file(path, "torn", 4);
    path_of(path, sizeof path, fx->dir, "streams.manifest.tmp.idx");
    write_file(path, "stale", 5);
    list_dir(fx->dir, &before);
    l = open_idx(fx->dir, 1, &cov);
    assert_int_equal(cov, 6);
    expect_get(l, 499, 6, 6, 499);
    put(l, 499, 7, 1);
    expect_get(l, 499, 7, 7, 1);
    assert_int_equal(evs__lsm_checkpoint(l, 7), EVS_EREADONLY);
    evs__lsm_close(l);
    problem_log pl = { 0 };
    uint64_t problems = 0;
    assert_int_equal(evs__lsm_verify(posix(), fx->dir, "streams", problem_cb, &pl, &problems), 0);
    assert_int_equal(problems, 0);
    list_dir(fx->dir, &after);
    assert_int_equal(before.n, after.n);
    for (int i = 0; i < before.n; i++) {
        assert_string_equal(before.name[i], after.name[i]);
        assert_int_equal(before.size[i], after.size[i]);
        assert_int_equal(before.mtime[i], after.mtime[i]);
    }
}

/* ---- crash and fault simulation through a wrapping vfs ---- */

typedef struct fault_state {
    int fail_manifest_rename;   /* rename onto *.manifest.idx fails with EIO */
    int fail_dirsync_after_man; /* N > 0: sync_dir fails once N manifests were renamed */
    int manifest_renamed;       /* manifest renames so far */
    evs__lsm *owner;            /* for the read-only race: the writing index */
    int owner_fired;            /* 1 once the owner's checkpoint ran */
    int owner_rc;               /* its result */
} fault_state;

static fault_state g_fs;
static evs_vfs g_fault_vfs;

static int ends_with(const char *s, const char *suffix)
{
    size_t l = strlen(s), sl = strlen(suffix);
    return l >= sl && !strcmp(s + l - sl, suffix);
}

static int ft_rename(const evs_vfs *vfs, const char *from, const char *to)
{
    if (g_fs.fail_manifest_rename && ends_with(to, ".manifest.idx"))
        return -EIO;
    int rc = posix()->rename(posix(), from, to);
    if (!rc && ends_with(to, ".manifest.idx"))
        g_fs.manifest_renamed++;
    return rc;
}

static int ft_sync_dir(const evs_vfs *vfs, const char *path)
{
    if (g_fs.fail_dirsync_after_man && g_fs.manifest_renamed >= g_fs.fail_dirsync_after_man)
        return -EIO;
    return posix()->sync_dir(posix(), path);
}

/* The first open of a run file lets the owner checkpoint (merging runs away) first. */
static int ft_open(const evs_vfs *vfs, const char *path, unsigned flags, evs_file **out)
{
    if (g_fs.owner && !g_fs.owner_fired && strstr(path, "/streams-") && !strstr(path, ".tmp.")) {
        g_fs.owner_fired = 1;
        g_fs.owner_rc = evs__lsm_checkpoint(g_fs.owner, 40);
    }
    return posix()->open(vfs, path, flags, out);
}

static const evs_vfs *fault_vfs(void)
{
    g_fault_vfs = *posix();
    g_fault_vfs.name = "test-fault";
    g_fault_vfs.rename = ft_rename;
    g_fault_vfs.sync_dir = ft_sync_dir;
    g_fault_vfs.open = ft_open;
    memset(&g_fs, 0, sizeof g_fs);
    return &g_fault_vfs;
}

static void test_crash_during_checkpoint_is_atomic(void **state)
{
    fixture *fx = *state;
    const evs_vfs *fv = fault_vfs();
    evs__lsm *l = NULL;
    uint64_t cov = 0;
    char fname[256], path[1024], path2[1024];
    assert_int_equal(evs__lsm_open(fv, fx->dir, "streams", 0, &cov, &l), 0);
    for (uint64_t k = 0; k < 1000; k++)
        put(l, k, 1, k);
    assert_int_equal(evs__lsm_checkpoint(l, 10), 0);
    for (uint64_t k = 1000; k < 1500; k++)
        put(l, k, 1, k);
    /* the manifest rename fails: nothing changes, in memory or on disk */
    g_fs.fail_manifest_rename = 1;
    assert_int_equal(evs__lsm_checkpoint(l, 20), -EIO);
    assert_int_equal(evs__lsm_mem_entries(l), 500);
    expect_get(l, 1200, 0, 1, 1200);
    expect_get(l, 10, 0, 1, 10);
    assert_int_equal(count_runs(fx->dir), 1);
    assert_int_equal(count_files(fx->dir, ".tmp.idx"), 0);
    evs__lsm_close(l);  /* the process "dies" with 500 entries only in memory */

    /* leftovers of a crash at various points of a checkpoint */
    nth_run(fx->dir, 0, fname, sizeof fname);
    path_of(path, sizeof path, fx->dir, fname);
    path_of(path2, sizeof path2, fx->dir, "streams-00000000000000000007.idx");
    copy_file(path, path2);  /* a complete run renamed in, manifest never written */
    path_of(path2, sizeof path2, fx->dir, "streams-00000000000000000008.tmp.idx");
    copy_file(path, path2);  /* a run still being written */
    path_of(path2, sizeof path2, fx->dir, "streams.manifest.idx");
    path_of(path, sizeof path, fx->dir, "streams.manifest.tmp.idx");
    copy_file(path2, path);
    flip_byte(path, 17);     /* a stale, torn temp manifest */
    assert_int_equal(count_files(fx->dir, NULL), 5);

    g_fs.fail_manifest_rename = 0;
    assert_int_equal(evs__lsm_open(fv, fx->dir, "streams", 0, &cov, &l), 0);
    assert_int_equal(cov, 10);
    assert_int_equal(count_files(fx->dir, NULL), 2);  /* manifest + the one live run */
    expect_get(l, 999, 0, 1, 999);
    expect_missing(l, 1200, 0);
    for (uint64_t k = 1000; k < 1500; k++)  /* the engine replays the log after covered */
        put(l, k, 1, k);

    /* now the rename succeeds but the directory fsync fails, during a merge:
     * the flush's manifest (4 runs) is durable, the merge's (1 run) renamed */
    for (uint64_t round = 0; round < 2; round++) {
        assert_int_equal(evs__lsm_checkpoint(l, 20 + round), 0);
        put(l, 5000 + round, 1, 1);
    }
    assert_int_equal(count_runs(fx->dir), 3);
    g_fs.fail_dirsync_after_man = 2;
    g_fs.manifest_renamed = 0;
    assert_int_equal(evs__lsm_checkpoint(l, 30), -EIO);
    g_fs.fail_dirsync_after_man = 0;
    expect_get(l, 5001, 0, 1, 1);
    evs__lsm_close(l);
    /* the new manifest may be in place: its runs must have been kept */
    assert_int_equal(evs__lsm_open(fv, fx->dir, "streams", 0, &cov, &l), 0);
    assert_int_equal(cov, 30);
    assert_int_equal(count_runs(fx->dir), 1);  /* merged; the merged-away runs swept */
    expect_get(l, 5001, 0, 1, 1);
    expect_get(l, 1499, 0, 1, 1499);
    expect_get(l, 0, 0, 1, 0);
    evs__lsm_close(l);
    expect_verify_clean(fx->dir);
}

static void test_read_only_retries_when_owner_merges(void **state)
{
    fixture *fx = *state;
    uint64_t cov = 0;
    evs__lsm *owner = open_idx(fx->dir, 0, &cov), *ro = NULL;
    for (uint64_t round = 0; round < 3; round++) {
        for (uint64_t k = 0; k < 300; k++)
            put(owner, k, round + 1, round);
        assert_int_equal(evs__lsm_checkpoint(owner, 30 + round), 0);
    }
    for (uint64_t k = 0; k < 300; k++)
        put(owner, k, 4, 3);
    assert_int_equal(count_runs(fx->dir), 3);
    /* the reader reads the manifest (3 runs); as it opens the first, the owner's
     * checkpoint merges all four into one and deletes the three */
    const evs_vfs *fv = fault_vfs();
    g_fs.owner = owner;
    assert_int_equal(evs__lsm_open(fv, fx->dir, "streams", 1, &cov, &ro), 0);
    assert_int_equal(g_fs.owner_fired, 1);
    assert_int_equal(g_fs.owner_rc, 0);
    assert_int_equal(cov, 40);
    assert_int_equal(count_runs(fx->dir), 1);
    for (uint64_t k = 0; k < 300; k += 7) {
        expect_get(ro, k, 0, 1, 0);
        expect_get(ro, k, 4, 4, 3);
    }
    evs__lsm_close(ro);
    evs__lsm_close(owner);
    g_fs.owner = NULL;
}

/* ---- power cuts at every sync of a checkpointing workload (vfs_mem) ---- */

enum { PC_ROUNDS = 6, PC_KEYS = 150 };

/* Round r puts (key k + 7r, a = r, b = 1000 r + k) for k < PC_KEYS and
 * overwrites (key 0, a = 1) with b = r, then checkpoints covering 10 r.
 * @return the last round whose checkpoint succeeded. */
static int pc_workload(const evs_vfs *vfs)
{
    evs__lsm *l = NULL;
    int ok = 0;
    if (evs__lsm_open(vfs, "/db", "streams", 0, NULL, &l) != 0)
        return 0;
    for (int round = 1; round <= PC_ROUNDS; round++) {
        for (uint64_t k = 0; k < PC_KEYS; k++) {
            evs_kv e = kv(k + 7 * (uint64_t)round, (uint64_t)round, 1000 * (uint64_t)round + k);
            if (evs__lsm_put(l, &e) != 0)
                goto out;
        }
        evs_kv o = kv(0, 1, (uint64_t)round);
        if (evs__lsm_put(l, &o) != 0 || evs__lsm_checkpoint(l, 10 * (uint64_t)round) != 0)
            goto out;
        ok = round;
    }
out:
    evs__lsm_close(l);
    return ok;
}

/* The index holds exactly rounds 1..R. */
static void pc_check(evs__lsm *l, int R)
{
    for (int round = 1; round <= PC_ROUNDS; round++)
        for (uint64_t k = 0; k < PC_KEYS; k += 13) {
            if (round <= R)
                expect_get(l, k + 7 * (uint64_t)round, (uint64_t)round, (uint64_t)round,
                           1000 * (uint64_t)round + k);
            else
                expect_missing(l, k + 7 * (uint64_t)round, (uint64_t)round);
        }
    if (R > 0)
        expect_get(l, 0, 0, 1, (uint64_t)R);
    else
        expect_missing(l, 0, 0);
}

static int pc_count_tmp(void *ctx, const char *name)
{
    if (strstr(name, ".tmp."))
        (*(int *)ctx)++;
    return 0;
}

static evs_vfs *pc_vfs(void)
{
    evs_vfs *v = vfs_mem_new();
    assert_non_null(v);
    assert_int_equal(v->mkdir(v, "/db"), 0);
    assert_int_equal(v->sync_dir(v, "/"), 0);
    return v;
}

static void test_power_cut_at_every_sync(void **state)
{
    (void)state;
    evs_vfs *v = pc_vfs();
    uint64_t base = vfs_mem_sync_count(v);
    assert_int_equal(pc_workload(v), PC_ROUNDS);
    uint64_t syncs = vfs_mem_sync_count(v) - base;
    vfs_mem_free(v);
    const vfs_mem_crash_mode modes[] = { VFS_MEM_CRASH_TORN, VFS_MEM_CRASH_DROP_ALL,
                                         VFS_MEM_CRASH_APPLY_ALL };
    int outcomes[PC_ROUNDS + 2] = { 0 };
    for (size_t mi = 0; mi < 3; mi++)
        for (uint64_t i = 1; i <= syncs; i++) {
            v = pc_vfs();
            vfs_mem_set_seed(v, g_seed + 1000 * mi + i);
            vfs_mem_set_crash_mode(v, modes[mi]);
            vfs_mem_crash_at_sync(v, i);
            int ok = pc_workload(v);
            assert_true(vfs_mem_crashed(v));
            assert_int_equal(vfs_mem_restart(v), 0);
            /* never corrupt: the old or the new checkpoint, complete */
            evs__lsm *l = NULL;
            uint64_t cov = 99;
            assert_int_equal(evs__lsm_open(v, "/db", "streams", 0, &cov, &l), 0);
            assert_int_equal(cov % 10, 0);
            int R = (int)(cov / 10);
            assert_true(R == ok || R == ok + 1);
            outcomes[R - ok]++;
            pc_check(l, R);
            evs__lsm_close(l);
            int tmp = 0;
            assert_int_equal(v->list_dir(v, "/db", pc_count_tmp, &tmp), 0);
            assert_int_equal(tmp, 0);  /* open swept the leftovers */
            uint64_t problems = 99;
            assert_int_equal(evs__lsm_verify(v, "/db", "streams", problem_cb, NULL, &problems), 0);
            assert_int_equal(problems, 0);
            assert_int_equal(vfs_mem_open_files(v), 0);
            vfs_mem_free(v);
        }
    print_message("  %" PRIu64 " syncs x 3 crash modes: %d kept the old checkpoint, %d the new\n",
                  syncs, outcomes[0], outcomes[1]);
    assert_true(outcomes[0] > 0 && outcomes[1] > 0);
}

int main(void)
{
    g_seed = evs_test_seed();  /* printed once; EVS_SEED=N replays */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_memtable_put_get_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memtable_wins_over_runs, setup, teardown),
        cmocka_unit_test(test_merge_policy),
        cmocka_unit_test_setup_teardown(test_scans_across_runs_and_blocks, setup, teardown),
        cmocka_unit_test(test_memtable_model),
        cmocka_unit_test_setup_teardown(test_differential, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_readers_and_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_background_flush_with_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merges_independent_of_timing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_reports_order_and_fences, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unordered_run_is_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_manifest_and_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_during_checkpoint_is_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_retries_when_owner_merges, setup, teardown),
        cmocka_unit_test(test_power_cut_at_every_sync),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
