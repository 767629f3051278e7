/*
 * test_vfs.c — the file I/O layer and the test VFSes built on it.
 *
 *  - conformance: the same behaviour (read-after-write, holes, truncate,
 *    rename replaces, list_dir, lock exclusivity, error codes) from posix,
 *    vfs_mem, and vfs_fault wrapping either;
 *  - vfs_mem's power-cut model: what drop-all, apply-all and torn crashes
 *    keep, namespace durability via sync_dir, crash at the n-th sync,
 *    restart rules, threads;
 *  - vfs_fault: counters, failing exactly the n-th call, short writes.
 *
 * Random choices derive from evs_test_seed() (printed; replay with EVS_SEED)
 * except where a fixed seed makes an existence claim ("some crash tears")
 * deterministic.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "evs_int.h"
#include "testutil.h"
#include "vfs_fault.h"
#include "vfs_mem.h"

#define RW_CREATE (EVS_O_RDWR | EVS_O_CREATE)

/* ---- helpers ---- */

static evs_file *xopen(const evs_vfs *vfs, const char *path, unsigned flags)
{
    evs_file *f = NULL;
    int rc = vfs->open(vfs, path, flags, &f);
    if (rc)
        fail_msg("open %s: %s", path, evs_errname(rc));
    return f;
}

static void xwrite(evs_file *f, uint64_t off, const void *p, size_t n)
{
    size_t w = 0;
    assert_int_equal(f->vfs->pwrite(f, p, n, off, &w), 0);
    assert_int_equal(w, n);
}

/* Replace path's content with p[0..n) and sync the file (not its directory). */
static void write_synced(const evs_vfs *vfs, const char *path, const void *p, size_t n)
{
    evs_file *f = xopen(vfs, path, RW_CREATE | EVS_O_TRUNC);
    xwrite(f, 0, p, n);
    assert_int_equal(f->vfs->sync(f), 0);
    assert_int_equal(evs__fclose(f), 0);
}

/* The whole content of path into a malloc'd buffer (caller frees); *len its size. */
static uint8_t *slurp(const evs_vfs *vfs, const char *path, size_t *len)
{
    evs_file *f = xopen(vfs, path, EVS_O_RDONLY);
    uint64_t size = 0;
    assert_int_equal(f->vfs->size(f, &size), 0);
    uint8_t *p = malloc(size + 1);
    assert_non_null(p);
    size_t got = 0;
    assert_int_equal(f->vfs->pread(f, p, size, 0, &got), 0);
    assert_int_equal(got, size);
    p[size] = 0;
    assert_int_equal(evs__fclose(f), 0);
    *len = (size_t)size;
    return p;
}

static void assert_content(const evs_vfs *vfs, const char *path, const char *want)
{
    size_t len;
    uint8_t *p = slurp(vfs, path, &len);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(p, want, len);
    free(p);
}

/* ---- fixtures: one per vfs kind, for the conformance tests ---- */

typedef enum fx_kind { FX_POSIX, FX_MEM, FX_FAULT_POSIX, FX_FAULT_MEM } fx_kind;

typedef struct fx {
    fx_kind kind;          /* which vfs stack */
    evs_vfs *mem;          /* vfs_mem instance or NULL */
    evs_vfs *fault;        /* vfs_fault instance or NULL */
    const evs_vfs *vfs;    /* what the test uses */
    char root[512];        /* an empty directory to work in */
} fx;

static fx_kind kind_posix = FX_POSIX, kind_mem = FX_MEM,
               kind_fault_posix = FX_FAULT_POSIX, kind_fault_mem = FX_FAULT_MEM;

static int fx_setup(void **state)
{
    fx *x = calloc(1, sizeof *x);
    assert_non_null(x);
    x->kind = *(fx_kind *)*state;
    if (x->kind == FX_POSIX || x->kind == FX_FAULT_POSIX) {
        assert_int_equal(evs_test_tmpdir(x->root, sizeof x->root), 0);
        x->vfs = evs__vfs_posix();
    } else {
        x->mem = vfs_mem_new();
        x->vfs = x->mem;
        strcpy(x->root, "/t");
        assert_int_equal(x->vfs->mkdir(x->vfs, x->root), 0);
    }
    if (x->kind == FX_FAULT_POSIX || x->kind == FX_FAULT_MEM)
        x->vfs = x->fault = vfs_fault_new(x->vfs);
    *state = x;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *x = *state;
    if (x->mem)
        assert_int_equal(vfs_mem_open_files(x->mem), 0);
    if (x->kind == FX_POSIX || x->kind == FX_FAULT_POSIX)
        evs_test_rmtree(x->root);
    vfs_fault_free(x->fault);
    vfs_mem_free(x->mem);
    free(x);
    return 0;
}

/* root/name into out. */
static char *pj(char out[600], const fx *x, const char *name)
{
    snprintf(out, 600, "%s/%s", x->root, name);
    return out;
}

/* ---- conformance ---- */

static void test_read_after_write(void **state)
{
    fx *x = *state;
    const evs_vfs *v = x->vfs;
    char p[600];
    evs_file *f = NULL;
    assert_int_equal(v->open(v, pj(p, x, "f"), EVS_O_RDWR, &f), -ENOENT);
    assert_int_equal(v->exists(v, p), 0);

    f = xopen(v, p, RW_CREATE);
    assert_int_equal(v->exists(v, p), 1);
    xwrite(f, 0, "hello", 5);
    xwrite(f, 10, "world", 5);  /* leaves a hole 5..9 that reads as zeros */
    uint64_t size = 0;
    assert_int_equal(f->vfs->size(f, &size), 0);
    assert_int_equal(size, 15);

    char buf[32];
    size_t got = 0;
    assert_int_equal(evs__fread(f, buf, 15, 0, &got), 0);
    assert_int_equal(got, 15);
    assert_memory_equal(buf, "hello\0\0\0\0\0world", 15);
    assert_int_equal(evs__fread(f, buf, 10, 12, &got), 0);
    assert_int_equal(got, 3);  /* short only at end of file */
    assert_memory_equal(buf, "rld", 3);
    assert_int_equal(evs__fread(f, buf, 10, 99, &got), 0);
    assert_int_equal(got, 0);

    assert_int_equal(f->vfs->truncate(f, 7), 0);
    assert_int_equal(f->vfs->size(f, &size), 0);
    assert_int_equal(size, 7);
    assert_int_equal(f->vfs->truncate(f, 9), 0);  /* growing exposes zeros, not old bytes */
    assert_int_equal(evs__fread(f, buf, 32, 0, &got), 0);
    assert_int_equal(got, 9);
    assert_memory_equal(buf, "hello\0\0\0\0", 9);
    assert_int_equal(f->vfs->sync(f), 0);
    assert_int_equal(f->vfs->datasync(f), 0);
    assert_int_equal(evs__fclose(f), 0);

    evs_file *g = NULL;
    assert_int_equal(v->open(v, p, RW_CREATE | EVS_O_EXCL, &g), -EEXIST);
    g = xopen(v, p, EVS_O_RDONLY);
    size_t w = 99;
    assert_true(evs__fwrite(g, "x", 1, 0, &w) < 0);  /* read-only handle */
    assert_int_equal(w, 0);
    assert_int_equal(evs__fclose(g), 0);
    g = xopen(v, p, EVS_O_RDWR | EVS_O_TRUNC);
    assert_int_equal(g->vfs->size(g, &size), 0);
    assert_int_equal(size, 0);
    assert_int_equal(evs__fclose(g), 0);
    assert_int_equal(v->sync_dir(v, x->root), 0);
}

static void test_rename_replaces(void **state)
{
    fx *x = *state;
    const evs_vfs *v = x->vfs;
    char a[600], b[600], c[600];
    write_synced(v, pj(a, x, "a"), "AAA", 3);
    write_synced(v, pj(b, x, "b"), "B", 1);
    evs_file *reader = xopen(v, b, EVS_O_RDONLY);  /* holds the old b */

    assert_int_equal(v->rename(v, a, b), 0);
    assert_int_equal(v->exists(v, a), 0);
    assert_content(v, b, "AAA");
    /* the replaced file lives on for handles that have it open */
    char buf[4];
    size_t got = 0;
    assert_int_equal(evs__fread(reader, buf, 4, 0, &got), 0);
    assert_int_equal(got, 1);
    assert_int_equal(buf[0], 'B');
    assert_int_equal(evs__fclose(reader), 0);

    assert_int_equal(v->rename(v, a, pj(c, x, "c")), -ENOENT);  /* a is gone */
    assert_int_equal(v->rename(v, b, pj(c, x, "nodir/c")), -ENOENT);
    assert_int_equal(v->rename(v, b, pj(c, x, "c")), 0);
    assert_content(v, c, "AAA");
    assert_int_equal(v->sync_dir(v, x->root), 0);
}

typedef struct names {
    char v[8][32];  /* names seen */
    int n;          /* how many */
    int stop_at;    /* return 7 from the callback at this call (1-based); 0: never */
} names;

static int collect(void *ctx, const char *name)
{
    names *s = ctx;
    if (s->n < 8)
        snprintf(s->v[s->n], sizeof s->v[0], "%s", name);
    s->n++;
    return s->n == s->stop_at ? 7 : 0;
}

static int has_name(const names *s, const char *name)
{
    for (int i = 0; i < s->n && i < 8; i++)
        if (!strcmp(s->v[i], name))
            return 1;
    return 0;
}

static void test_list_dir_mkdir_unlink(void **state)
{
    fx *x = *state;
    const evs_vfs *v = x->vfs;
    char d[600], p[700];
    assert_int_equal(v->mkdir(v, pj(d, x, "sub")), 0);
    assert_int_equal(v->mkdir(v, d), -EEXIST);
    assert_int_equal(v->mkdir(v, pj(p, x, "none/deeper")), -ENOENT);
    const char *files[] = { "x", "y", "z" };
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", d, files[i]);
        write_synced(v, p, "1", 1);
    }
    names s = { .n = 0 };
    assert_int_equal(v->list_dir(v, d, collect, &s), 0);
    assert_int_equal(s.n, 3);
    for (int i = 0; i < 3; i++)
        assert_true(has_name(&s, files[i]));

    names stop = { .stop_at = 1 };
    assert_int_equal(v->list_dir(v, d, collect, &stop), 7);  /* cb's rc comes back */
    assert_int_equal(stop.n, 1);

    snprintf(p, sizeof p, "%s/x", d);
    assert_int_equal(v->unlink(v, p), 0);
    assert_int_equal(v->unlink(v, p), -ENOENT);
    names after = { .n = 0 };
    assert_int_equal(v->list_dir(v, d, collect, &after), 0);
    assert_int_equal(after.n, 2);
    assert_false(has_name(&after, "x"));

    names root = { .n = 0 };
    assert_int_equal(v->list_dir(v, x->root, collect, &root), 0);
    assert_int_equal(root.n, 1);
    assert_string_equal(root.v[0], "sub");
    assert_true(v->list_dir(v, pj(p, x, "missing"), collect, &root) < 0);
    assert_int_equal(v->sync_dir(v, d), 0);
}

/* rmdir (restore removes its temporary directory with it): posix and mem. */
static void test_rmdir(void **state)
{
    fx *x = *state;
    const evs_vfs *v = x->vfs;
    char d[600], p[700];
    assert_non_null(v->rmdir);
    assert_int_equal(v->mkdir(v, pj(d, x, "gone")), 0);
    snprintf(p, sizeof p, "%s/f", d);
    write_synced(v, p, "1", 1);
    assert_int_equal(v->rmdir(v, d), -ENOTEMPTY);
    assert_int_equal(v->rmdir(v, p), -ENOTDIR);
    assert_int_equal(v->unlink(v, p), 0);
    assert_int_equal(v->rmdir(v, d), 0);
    assert_int_equal(v->exists(v, d), 0);
    assert_int_equal(v->rmdir(v, d), -ENOENT);
    assert_int_equal(v->mkdir(v, d), 0);  /* the name is free again */
    assert_int_equal(v->sync_dir(v, x->root), 0);
}

static void test_lock_exclusive(void **state)
{
    fx *x = *state;
    const evs_vfs *v = x->vfs;
    char p[600];
    /* Two opens in one process: separate open file descriptions conflict. */
    evs_file *a = xopen(v, pj(p, x, "LOCK"), RW_CREATE);
    evs_file *b = xopen(v, p, RW_CREATE);
    assert_int_equal(a->vfs->lock(a), 0);
    assert_int_equal(a->vfs->lock(a), 0);  /* the holder may ask again */
    assert_int_equal(b->vfs->lock(b), -EWOULDBLOCK);
    assert_int_equal(evs__fclose(a), 0);  /* closing releases */
    assert_int_equal(b->vfs->lock(b), 0);
    evs_file *c = xopen(v, p, RW_CREATE);
    assert_int_equal(c->vfs->lock(c), -EWOULDBLOCK);
    assert_int_equal(evs__fclose(c), 0);
    assert_int_equal(evs__fclose(b), 0);
}

/* ---- vfs_mem: the power-cut model ---- */

/*
 * A workload with every kind of durability: /d is durable; /d/f has "synced"
 * durable and then unsynced changes; /d/g has synced data but its name was
 * never made durable. Returns the still-open handle on /d/f.
 */
static evs_file *mixed_workload(evs_vfs *m)
{
    assert_int_equal(m->mkdir(m, "/d"), 0);
    assert_int_equal(m->sync_dir(m, "/"), 0);
    write_synced(m, "/d/f", "synced", 6);
    assert_int_equal(m->sync_dir(m, "/d"), 0);
    evs_file *f = xopen(m, "/d/f", EVS_O_RDWR);
    xwrite(f, 0, "XX", 2);
    xwrite(f, 6, "+tail", 5);
    write_synced(m, "/d/g", "gee", 3);
    assert_content(m, "/d/f", "XXnced+tail");  /* reads see unsynced writes */
    return f;
}

static void test_mem_drop_all_keeps_only_synced(void **state)
{
    (void)state;
    evs_vfs *m = vfs_mem_new();
    vfs_mem_set_crash_mode(m, VFS_MEM_CRASH_DROP_ALL);
    evs_file *f = mixed_workload(m);
    vfs_mem_crash_now(m);
    assert_true(vfs_mem_crashed(m));

    /* dead: everything fails */
    evs_file *g = NULL;
    char buf[8];
    size_t got = 0;
    assert_int_equal(m->open(m, "/d/f", EVS_O_RDONLY, &g), -EIO);
    assert_int_equal(m->exists(m, "/d/f"), -EIO);
    assert_int_equal(m->mkdir(m, "/e"), -EIO);
    assert_int_equal(evs__fread(f, buf, 1, 0, &got), -EIO);
    assert_int_equal(f->vfs->sync(f), -EIO);

    assert_int_equal(vfs_mem_restart(m), 0);
    assert_false(vfs_mem_crashed(m));
    assert_int_equal(evs__fread(f, buf, 1, 0, &got), -EIO);  /* stale handle */
    assert_content(m, "/d/f", "synced");
    assert_int_equal(m->exists(m, "/d/g"), 0);
    assert_int_equal(evs__fclose(f), -EIO);
    assert_int_equal(vfs_mem_open_files(m), 0);
    vfs_mem_free(m);
}

static void test_mem_apply_all_keeps_everything(void **state)
{
    (void)state;
    evs_vfs *m = vfs_mem_new();
    vfs_mem_set_crash_mode(m, VFS_MEM_CRASH_APPLY_ALL);
    evs_file *f = mixed_workload(m);
    vfs_mem_crash_now(m);
    assert_int_equal(vfs_mem_restart(m), 0);
    assert_content(m, "/d/f", "XXnced+tail");
    assert_content(m, "/d/g", "gee");
    assert_int_equal(evs__fclose(f), -EIO);
    vfs_mem_free(m);
}

/* Check every sector of got against old/new (both zero-extended to len). */
static void classify_sectors(const uint8_t *got, size_t len, const uint8_t *old, size_t old_len,
                             const uint8_t *nw, size_t new_len, int *saw_old, int *saw_new)
{
    for (size_t s = 0; s < len; s += VFS_MEM_SECTOR) {
        size_t e = EVS_MIN(s + VFS_MEM_SECTOR, len);
        int is_old = 1, is_new = 1;
        for (size_t i = s; i < e; i++) {
            uint8_t o = i < old_len ? old[i] : 0, n = i < new_len ? nw[i] : 0;
            is_old &= got[i] == o;
            is_new &= got[i] == n;
        }
        if (!is_old && !is_new)
            fail_msg("sector at %zu is neither old nor new", s);
        if (is_old && !is_new)
            *saw_old = 1;
        if (is_new && !is_old)
            *saw_new = 1;
    }
}

/*
 * One torn crash at seed: /f (16 sectors) gets one unaligned overwrite, /g
 * (1000 bytes) one write that extends it. Reports what the image shows.
 */
static void torn_once(uint64_t seed, int *f_mixed, int *f_all_old, int *f_all_new)
{
    enum { FLEN = 16 * VFS_MEM_SECTOR, WOFF = 300, WLEN = 6000, GLEN = 1000, GOFF = 700, GWLEN = 3000 };
    static uint8_t old[FLEN], nw[FLEN], gold[GLEN], gnew[GOFF + GWLEN], wbuf[WLEN];
    uint64_t r = seed ^ 0x5eed;
    evs_test_rand_bytes(&r, old, sizeof old);
    evs_test_rand_bytes(&r, wbuf, sizeof wbuf);
    evs_test_rand_bytes(&r, gold, sizeof gold);
    memcpy(nw, old, FLEN);
    memcpy(nw + WOFF, wbuf, WLEN);
    memcpy(gnew, gold, GLEN);
    memcpy(gnew + GOFF, wbuf, GWLEN);

    evs_vfs *m = vfs_mem_new();
    vfs_mem_set_seed(m, seed);
    write_synced(m, "/f", old, FLEN);
    write_synced(m, "/g", gold, GLEN);
    assert_int_equal(m->sync_dir(m, "/"), 0);
    evs_file *f = xopen(m, "/f", EVS_O_RDWR), *g = xopen(m, "/g", EVS_O_RDWR);
    xwrite(f, WOFF, wbuf, WLEN);
    xwrite(g, GOFF, wbuf, GWLEN);
    vfs_mem_crash_now(m);
    assert_int_equal(vfs_mem_restart(m), 0);

    size_t len;
    uint8_t *got = slurp(m, "/f", &len);
    assert_int_equal(len, FLEN);  /* an overwrite never changes the size */
    int so = 0, sn = 0;
    classify_sectors(got, len, old, FLEN, nw, FLEN, &so, &sn);
    *f_mixed |= so && sn;
    *f_all_old |= so && !sn;
    *f_all_new |= sn && !so;
    free(got);

    got = slurp(m, "/g", &len);
    assert_in_range(len, GLEN, GOFF + GWLEN);
    so = sn = 0;
    classify_sectors(got, len, gold, GLEN, gnew, GOFF + GWLEN, &so, &sn);
    free(got);
    evs__fclose(f);
    evs__fclose(g);
    vfs_mem_free(m);
}

static void test_mem_torn_is_sector_granular(void **state)
{
    (void)state;
    int mixed = 0, all_old = 0, all_new = 0;
    /* Fixed seeds: tearing, dropping and applying must each happen. */
    for (uint64_t seed = 1; seed <= 40; seed++)
        torn_once(seed, &mixed, &all_old, &all_new);
    assert_true(mixed);
    assert_true(all_old);
    assert_true(all_new);
    /* The per-sector invariant must also hold at this run's seeds. */
    uint64_t base = evs_test_seed();
    for (uint64_t i = 0; i < 40; i++)
        torn_once(base + i, &mixed, &all_old, &all_new);
}

static void test_mem_names_need_sync_dir(void **state)
{
    (void)state;
    evs_vfs *m = vfs_mem_new();
    vfs_mem_set_crash_mode(m, VFS_MEM_CRASH_DROP_ALL);
    write_synced(m, "/kept", "k", 1);
    assert_int_equal(m->sync_dir(m, "/"), 0);
    write_synced(m, "/lost", "data synced, name not", 21);
    assert_int_equal(m->rename(m, "/kept", "/moved"), 0);
    assert_int_equal(m->mkdir(m, "/p"), 0);  /* never made durable in "/" */
    write_synced(m, "/p/child", "c", 1);
    assert_int_equal(m->sync_dir(m, "/p"), 0);  /* durable in /p, but /p is not */
    vfs_mem_crash_now(m);
    assert_int_equal(vfs_mem_restart(m), 0);
    assert_int_equal(m->exists(m, "/lost"), 0);
    assert_content(m, "/kept", "k");
    assert_int_equal(m->exists(m, "/moved"), 0);
    assert_int_equal(m->exists(m, "/p"), 0);
    assert_int_equal(m->exists(m, "/p/child"), 0);

    /* the same with apply-all: everything is there */
    assert_int_equal(m->rename(m, "/kept", "/moved"), 0);
    vfs_mem_set_crash_mode(m, VFS_MEM_CRASH_APPLY_ALL);
    vfs_mem_crash_now(m);
    assert_int_equal(vfs_mem_restart(m), 0);
    assert_int_equal(m->exists(m, "/kept"), 0);
    assert_content(m, "/moved", "k");
    vfs_mem_free(m);
}

static void test_mem_torn_names_keep_a_prefix(void **state)
{
    (void)state;
    int partial = 0;
    uint64_t base = evs_test_seed();
    for (uint64_t i = 0; i < 60; i++) {
        evs_vfs *m = vfs_mem_new();
        vfs_mem_set_seed(m, i < 30 ? i : base + i);
        /* atomic replace: cur is v1, then tmp (synced) renamed over it */
        write_synced(m, "/cur", "v1", 2);
        assert_int_equal(m->sync_dir(m, "/"), 0);
        write_synced(m, "/tmp", "v2", 2);
        assert_int_equal(m->rename(m, "/tmp", "/cur"), 0);
        char p[16];
        for (int k = 0; k < 8; k++) {
            snprintf(p, sizeof p, "/n%d", k);
            write_synced(m, p, "n", 1);
        }
        vfs_mem_crash_now(m);
        assert_int_equal(vfs_mem_restart(m), 0);

        size_t len;
        uint8_t *cur = slurp(m, "/cur", &len);
        assert_int_equal(len, 2);
        int renamed = !memcmp(cur, "v2", 2);
        assert_true(renamed || !memcmp(cur, "v1", 2));  /* never a mix */
        free(cur);
        int tmp_exists = m->exists(m, "/tmp");
        /* "/tmp" survives only if its create survived and the rename did not */
        if (renamed)
            assert_int_equal(tmp_exists, 0);
        int survivors = 0, gap = 0;
        for (int k = 0; k < 8; k++) {
            snprintf(p, sizeof p, "/n%d", k);
            int e = m->exists(m, p);
            if (e && gap)
                fail_msg("seed %llu: /n%d survived after a lost earlier create",
                         (unsigned long long)i, k);
            if (e) {
                survivors++;
                assert_true(renamed);  /* the log of "/" is applied in order */
            } else {
                gap = 1;
            }
        }
        if (survivors > 0 && survivors < 8)
            partial = 1;
        vfs_mem_free(m);
    }
    assert_true(partial);
}

/* Workload for crash-at-sync: 1 sync_dir, then 5 records each datasynced. */
static int sync_workload(evs_vfs *m, int *first_fail)
{
    int syncs = 0;
    *first_fail = 0;
    evs_file *f = NULL;
    if (m->open(m, "/w", RW_CREATE, &f))
        return -1;
    int rc = m->sync_dir(m, "/");
    syncs++;
    if (rc && !*first_fail)
        *first_fail = syncs;
    for (int i = 0; i < 5; i++) {
        char rec[8];
        memset(rec, 'a' + i, sizeof rec);
        size_t w = 0;
        int wrc = evs__fwrite(f, rec, sizeof rec, (uint64_t)i * 8, &w);
        if (*first_fail)
            assert_int_equal(wrc, -EIO);  /* fail-stop: nothing works after the cut */
        rc = f->vfs->datasync(f);
        syncs++;
        if (rc && !*first_fail)
            *first_fail = syncs;
        if (*first_fail)
            assert_int_equal(rc, -EIO);
    }
    evs__fclose(f);
    return syncs;
}

static void test_mem_crash_at_each_sync(void **state)
{
    (void)state;
    evs_vfs *m = vfs_mem_new();
    int first_fail;
    int k = sync_workload(m, &first_fail);
    assert_int_equal(first_fail, 0);
    assert_int_equal(vfs_mem_sync_count(m), (uint64_t)k);
    vfs_mem_free(m);

    for (int i = 1; i <= k; i++) {
        m = vfs_mem_new();
        vfs_mem_set_crash_mode(m, VFS_MEM_CRASH_DROP_ALL);
        vfs_mem_crash_at_sync(m, (uint64_t)i);
        sync_workload(m, &first_fail);
        assert_int_equal(first_fail, i);
        assert_true(vfs_mem_crashed(m));
        assert_int_equal(vfs_mem_sync_count(m), (uint64_t)i);  /* later calls not counted */
        assert_int_equal(vfs_mem_restart(m), 0);
        if (i == 1) {
            /* the crash replaced the sync_dir: the file's name is gone */
            assert_int_equal(m->exists(m, "/w"), 0);
        } else {
            /* records synced before the crashing datasync survive, no more */
            size_t len;
            uint8_t *p = slurp(m, "/w", &len);
            assert_int_equal(len, (size_t)(i - 2) * 8);
            for (size_t j = 0; j < len; j++)
                assert_int_equal(p[j], 'a' + (int)(j / 8));
            free(p);
        }
        /* arming counts from now: after a restart, n = 1 is the next sync */
        vfs_mem_crash_at_sync(m, 1);
        assert_int_equal(m->sync_dir(m, "/"), -EIO);
        assert_true(vfs_mem_crashed(m));
        vfs_mem_free(m);
    }
}

static void test_mem_restart_rules(void **state)
{
    (void)state;
    evs_vfs *m = vfs_mem_new();
    assert_int_equal(vfs_mem_restart(m), -EINVAL);  /* not crashed */
    write_synced(m, "/LOCK", "", 0);
    assert_int_equal(m->sync_dir(m, "/"), 0);
    evs_file *old = xopen(m, "/LOCK", EVS_O_RDWR);
    assert_int_equal(old->vfs->lock(old), 0);
    vfs_mem_crash_now(m);
    vfs_mem_crash_now(m);  /* no-op */
    assert_int_equal(vfs_mem_restart(m), 0);
    assert_int_equal(vfs_mem_open_files(m), 1);

    /* the dead process's lock is gone; its handle fails forever */
    evs_file *nw = xopen(m, "/LOCK", EVS_O_RDWR);
    assert_int_equal(nw->vfs->lock(nw), 0);
    assert_int_equal(old->vfs->lock(old), -EIO);
    size_t w = 7;
    assert_int_equal(evs__fwrite(old, "x", 1, 0, &w), -EIO);
    assert_int_equal(w, 0);
    uint64_t size;
    assert_int_equal(old->vfs->size(old, &size), -EIO);
    assert_int_equal(old->vfs->truncate(old, 0), -EIO);
    assert_int_equal(old->vfs->datasync(old), -EIO);
    assert_int_equal(evs__fclose(old), -EIO);
    assert_int_equal(vfs_mem_open_files(m), 1);
    assert_int_equal(evs__fclose(nw), 0);
    assert_int_equal(vfs_mem_open_files(m), 0);
    vfs_mem_free(m);
}

/* Replace /cur many times (temp + sync + rename), directory synced now and
 * then, while holding some replaced files open: exercises inode lifetime. */
static void test_mem_churn_then_crash(void **state)
{
    (void)state;
    evs_vfs *m = vfs_mem_new();
    vfs_mem_set_seed(m, evs_test_seed());
    evs_file *held[4] = { NULL };
    int dir_synced = -1;
    for (int k = 0; k < 400; k++) {
        char body[16];
        int n = snprintf(body, sizeof body, "v%d", k);
        write_synced(m, "/tmp", body, (size_t)n);
        assert_int_equal(m->rename(m, "/tmp", "/cur"), 0);
        if (k % 7 == 3) {
            assert_int_equal(m->sync_dir(m, "/"), 0);
            dir_synced = k;
        }
        if (k % 100 == 0) {
            evs__fclose(held[k / 100]);
            held[k / 100] = xopen(m, "/cur", EVS_O_RDONLY);
        }
    }
    vfs_mem_crash_now(m);
    assert_int_equal(vfs_mem_restart(m), 0);
    size_t len;
    char *p = (char *)slurp(m, "/cur", &len);
    int k = -1;
    assert_int_equal(sscanf(p, "v%d", &k), 1);
    assert_in_range(k, dir_synced, 399);  /* never older than the last sync_dir */
    free(p);
    for (int i = 0; i < 4; i++)
        evs__fclose(held[i]);
    vfs_mem_free(m);
}

typedef struct worker {
    evs_vfs *m;     /* shared vfs */
    int id;         /* which file this thread owns */
    int failures;   /* mismatches seen */
} worker;

static void *worker_main(void *arg)
{
    worker *wk = arg;
    evs_vfs *m = wk->m;
    char path[32];
    snprintf(path, sizeof path, "/t/w%d", wk->id);
    evs_file *f = NULL;
    if (m->open(m, path, RW_CREATE, &f))
        return (void *)1;
    for (int i = 0; i < 300; i++) {
        uint8_t rec[64], back[64];
        memset(rec, (uint8_t)(wk->id * 31 + i), sizeof rec);
        size_t w = 0, got = 0;
        if (evs__fwrite(f, rec, sizeof rec, (uint64_t)i * 64, &w) || w != 64)
            wk->failures++;
        if (evs__fread(f, back, sizeof back, (uint64_t)i * 64, &got) || got != 64
            || memcmp(back, rec, 64))
            wk->failures++;
        if (i % 10 == 9 && f->vfs->datasync(f))
            wk->failures++;
        if (i % 50 == 0) {
            names s = { .n = 0 };
            if (m->list_dir(m, "/t", collect, &s) < 0)
                wk->failures++;
        }
    }
    evs__fclose(f);
    return NULL;
}

static void test_mem_threads(void **state)
{
    (void)state;
    evs_vfs *m = vfs_mem_new();
    assert_int_equal(m->mkdir(m, "/t"), 0);
    pthread_t th[4];
    worker wk[4];
    for (int i = 0; i < 4; i++) {
        wk[i] = (worker){ .m = m, .id = i };
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &wk[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *ret = NULL;
        pthread_join(th[i], &ret);
        assert_null(ret);
        assert_int_equal(wk[i].failures, 0);
    }
    assert_int_equal(vfs_mem_sync_count(m), 4 * 30);
    /* The entries of /t are durable, but /t itself never was: a drop-all
     * crash loses the whole directory. */
    assert_int_equal(m->sync_dir(m, "/t"), 0);
    vfs_mem_set_crash_mode(m, VFS_MEM_CRASH_DROP_ALL);
    vfs_mem_crash_now(m);
    assert_int_equal(vfs_mem_restart(m), 0);
    assert_int_equal(m->exists(m, "/t"), 0);
    vfs_mem_free(m);
}

/* ---- vfs_fault ---- */

static void test_fault_counts_every_class(void **state)
{
    (void)state;
    evs_vfs *m = vfs_mem_new();
    evs_vfs *v = vfs_fault_new(m);
    evs_file *f = xopen(v, "/a", RW_CREATE);
    evs_file *g = xopen(v, "/a", EVS_O_RDONLY);
    char buf[4];
    size_t got;
    for (int i = 0; i < 4; i++)
        xwrite(f, (uint64_t)i, "x", 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(evs__fread(g, buf, 1, 0, &got), 0);
    assert_int_equal(f->vfs->sync(f), 0);
    assert_int_equal(f->vfs->datasync(f), 0);
    assert_int_equal(f->vfs->truncate(f, 2), 0);
    assert_int_equal(v->rename(v, "/a", "/b"), 0);
    assert_int_equal(v->unlink(v, "/b"), 0);
    assert_int_equal(v->sync_dir(v, "/"), 0);
    uint64_t size;
    assert_int_equal(f->vfs->size(f, &size), 0);  /* not a class: forwarded */
    assert_int_equal(size, 2);
    assert_int_equal(v->mkdir(v, "/d"), 0);
    assert_int_equal(v->exists(v, "/d"), 1);
    evs__fclose(f);
    evs__fclose(g);

    const uint64_t want[VFS_FAULT_NCLASSES] = {
        [VFS_FAULT_OPEN] = 2, [VFS_FAULT_PREAD] = 3, [VFS_FAULT_PWRITE] = 4,
        [VFS_FAULT_SYNC] = 2, [VFS_FAULT_TRUNCATE] = 1, [VFS_FAULT_RENAME] = 1,
        [VFS_FAULT_UNLINK] = 1, [VFS_FAULT_SYNC_DIR] = 1,
    };
    for (int c = 0; c < VFS_FAULT_NCLASSES; c++) {
        assert_int_equal(vfs_fault_count(v, (vfs_fault_class)c), want[c]);
        assert_int_equal(vfs_fault_injected(v, (vfs_fault_class)c), 0);
    }
    vfs_fault_free(v);
    vfs_mem_free(m);
}

/* 5 writes of 4 bytes at 0, 4, ...; rc[i] receives each result. */
static void five_writes(const evs_vfs *v, const char *path, int rc[5])
{
    evs_file *f = xopen(v, path, RW_CREATE | EVS_O_TRUNC);
    for (int i = 0; i < 5; i++) {
        char rec[4];
        memset(rec, '1' + i, 4);
        size_t w = 99;
        rc[i] = evs__fwrite(f, rec, 4, (uint64_t)i * 4, &w);
        assert_int_equal(w, rc[i] ? 0 : 4);
    }
    evs__fclose(f);
}

static void test_fault_fails_exactly_the_nth(void **state)
{
    fx *x = *state;  /* posix under the fault wrapper */
    char p[600];
    pj(p, x, "w");
    evs_vfs *v = x->fault;
    int rc[5];
    uint64_t before = vfs_fault_count(v, VFS_FAULT_PWRITE);
    five_writes(v, p, rc);
    assert_int_equal(vfs_fault_count(v, VFS_FAULT_PWRITE) - before, 5);
    for (int n = 1; n <= 5; n++) {
        for (int persist = 0; persist <= 1; persist++) {
            assert_int_equal(vfs_fault_arm(v, VFS_FAULT_PWRITE, (uint64_t)n, persist ? ENOSPC : EIO,
                                           persist ? VFS_FAULT_PERSIST : VFS_FAULT_ONCE), 0);
            uint64_t inj = vfs_fault_injected(v, VFS_FAULT_PWRITE);
            five_writes(v, p, rc);
            vfs_fault_disarm(v, VFS_FAULT_NCLASSES);
            size_t len;
            uint8_t *got = slurp(v, p, &len);
            for (int i = 1; i <= 5; i++) {
                int fails = persist ? i >= n : i == n;
                assert_int_equal(rc[i - 1], fails ? (persist ? -ENOSPC : -EIO) : 0);
                /* a failed write left nothing: its bytes are a hole or past the end */
                if (fails && (size_t)i * 4 <= len)
                    assert_int_equal(got[(i - 1) * 4], 0);
                if (!fails)
                    assert_int_equal(got[(i - 1) * 4], '0' + i);
            }
            free(got);
            assert_int_equal(vfs_fault_injected(v, VFS_FAULT_PWRITE) - inj,
                             persist ? (uint64_t)(6 - n) : 1);
        }
    }
}

static void test_fault_each_class_fails_cleanly(void **state)
{
    fx *x = *state;  /* posix under the fault wrapper */
    evs_vfs *v = x->fault;
    char a[600], b[600];
    write_synced(v, pj(a, x, "a"), "abc", 3);
    pj(b, x, "b");
    evs_file *f = xopen(v, a, EVS_O_RDWR), *g = NULL;
    char buf[4];
    size_t got = 9, w = 9;

    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_OPEN, 1, EIO, 0), 0);
    assert_int_equal(v->open(v, b, RW_CREATE, &g), -EIO);
    assert_int_equal(evs__vfs_posix()->exists(evs__vfs_posix(), b), 0);  /* not created */
    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_PREAD, 1, EIO, 0), 0);
    assert_int_equal(evs__fread(f, buf, 3, 0, &got), -EIO);
    assert_int_equal(got, 0);
    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_PWRITE, 1, ENOSPC, 0), 0);
    assert_int_equal(evs__fwrite(f, "zzz", 3, 0, &w), -ENOSPC);
    assert_int_equal(w, 0);
    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_SYNC, 1, EIO, 0), 0);
    assert_int_equal(f->vfs->datasync(f), -EIO);
    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_SYNC, 1, EIO, 0), 0);
    assert_int_equal(f->vfs->sync(f), -EIO);
    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_TRUNCATE, 1, EIO, 0), 0);
    assert_int_equal(f->vfs->truncate(f, 0), -EIO);
    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_RENAME, 1, EIO, 0), 0);
    assert_int_equal(v->rename(v, a, b), -EIO);
    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_UNLINK, 1, EIO, 0), 0);
    assert_int_equal(v->unlink(v, a), -EIO);
    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_SYNC_DIR, 1, EIO, 0), 0);
    assert_int_equal(v->sync_dir(v, x->root), -EIO);
    assert_int_equal(evs__fclose(f), 0);

    /* nothing reached the file system; every arm was spent once */
    assert_content(v, a, "abc");
    assert_int_equal(v->exists(v, b), 0);
    for (int c = 0; c < VFS_FAULT_NCLASSES; c++)
        assert_int_equal(vfs_fault_injected(v, (vfs_fault_class)c), c == VFS_FAULT_SYNC ? 2 : 1);
    assert_int_equal(v->sync_dir(v, x->root), 0);

    /* arming counts from now */
    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_UNLINK, 2, EIO, 0), 0);
    assert_int_equal(v->unlink(v, b), -ENOENT);  /* call 1: forwarded */
    assert_int_equal(v->unlink(v, a), -EIO);     /* call 2: injected */
    assert_int_equal(v->unlink(v, a), 0);

    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_PWRITE, 0, EIO, 0), -EINVAL);
    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_PWRITE, 1, 0, 0), -EINVAL);
    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_SYNC, 1, EIO, VFS_FAULT_SHORT), -EINVAL);
    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_NCLASSES, 1, EIO, 0), -EINVAL);
}

static void test_fault_short_write_leaves_prefix(void **state)
{
    fx *x = *state;  /* posix under the fault wrapper */
    evs_vfs *v = x->fault;
    char p[600];
    pj(p, x, "short");
    uint8_t data[1000];
    uint64_t r = evs_test_seed();
    evs_test_rand_bytes(&r, data, sizeof data);
    size_t lens[20];
    int distinct = 0;
    for (int i = 0; i < 20; i++) {
        vfs_fault_set_seed(v, (uint64_t)i);
        evs_file *f = xopen(v, p, RW_CREATE | EVS_O_TRUNC);
        assert_int_equal(vfs_fault_arm(v, VFS_FAULT_PWRITE, 1, ENOSPC, VFS_FAULT_SHORT), 0);
        size_t w = 12345;
        assert_int_equal(evs__fwrite(f, data, sizeof data, 0, &w), -ENOSPC);
        assert_true(w < sizeof data);
        lens[i] = w;
        uint64_t size = 0;
        assert_int_equal(f->vfs->size(f, &size), 0);
        assert_int_equal(size, w);
        evs__fclose(f);
        size_t len;
        uint8_t *got = slurp(evs__vfs_posix(), p, &len);  /* check the real file */
        assert_int_equal(len, w);
        assert_memory_equal(got, data, len);
        free(got);
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= lens[j] == w;
        distinct += !seen;
    }
    assert_true(distinct >= 5);  /* lengths are random, not a constant */
}

/* Faults stack on vfs_mem: a failed datasync never reached the disk. */
static void test_fault_over_mem_crash(void **state)
{
    (void)state;
    evs_vfs *m = vfs_mem_new();
    evs_vfs *v = vfs_fault_new(m);
    vfs_mem_set_crash_mode(m, VFS_MEM_CRASH_DROP_ALL);
    write_synced(v, "/f", "one", 3);
    assert_int_equal(v->sync_dir(v, "/"), 0);
    evs_file *f = xopen(v, "/f", EVS_O_RDWR);
    xwrite(f, 3, "two", 3);
    assert_int_equal(vfs_fault_arm(v, VFS_FAULT_SYNC, 1, EIO, VFS_FAULT_PERSIST), 0);
    assert_int_equal(f->vfs->datasync(f), -EIO);
    assert_int_equal(f->vfs->datasync(f), -EIO);
    vfs_mem_crash_now(m);
    assert_int_equal(evs__fclose(f), -EIO);
    assert_int_equal(vfs_mem_restart(m), 0);
    assert_content(v, "/f", "one");
    assert_int_equal(vfs_mem_sync_count(m), 2);  /* only the two that got through */
    vfs_fault_free(v);
    vfs_mem_free(m);
}

/* ---- testutil ---- */

static void test_testutil(void **state)
{
    (void)state;
    uint64_t a = 42, b = 42;
    for (int i = 0; i < 100; i++)
        assert_int_equal(evs_test_rand(&a), evs_test_rand(&b));  /* deterministic */
    int hit[6] = { 0 };
    for (int i = 0; i < 600; i++) {
        uint64_t v = evs_test_rand_range(&a, 10, 15);
        assert_in_range(v, 10, 15);
        hit[v - 10] = 1;
    }
    for (int i = 0; i < 6; i++)
        assert_true(hit[i]);
    assert_int_equal(evs_test_rand_range(&a, 7, 7), 7);
    (void)evs_test_rand_range(&a, 0, UINT64_MAX);
    assert_int_equal(evs_test_seed(), evs_test_seed());

    char d1[512], d2[512], p[600];
    assert_int_equal(evs_test_tmpdir(d1, sizeof d1), 0);
    assert_int_equal(evs_test_tmpdir(d2, sizeof d2), 0);
    assert_string_not_equal(d1, d2);
    snprintf(p, sizeof p, "%s/sub", d1);
    assert_int_equal(evs__vfs_posix()->mkdir(evs__vfs_posix(), p), 0);
    snprintf(p, sizeof p, "%s/sub/file", d1);
    write_synced(evs__vfs_posix(), p, "x", 1);
    evs_test_rmtree(d1);
    evs_test_rmtree(d2);
    assert_int_equal(evs__vfs_posix()->exists(evs__vfs_posix(), d1), 0);
    assert_int_equal(evs__vfs_posix()->exists(evs__vfs_posix(), d2), 0);
    char tiny[8];
    assert_int_equal(evs_test_tmpdir(tiny, sizeof tiny), -ENAMETOOLONG);
}

/* A test over one vfs kind, named "test/kind" so the four runs are told apart. */
#define CONF(fn, kind) { #fn "/" #kind, fn, fx_setup, fx_teardown, &kind }
#define CONF_ALL(fn) CONF(fn, kind_posix), CONF(fn, kind_mem), CONF(fn, kind_fault_posix), \
                     CONF(fn, kind_fault_mem)

int main(void)
{
    evs_test_seed();  /* print it before anything else */
    const struct CMUnitTest tests[] = {
        CONF_ALL(test_read_after_write),
        CONF_ALL(test_rename_replaces),
        CONF_ALL(test_list_dir_mkdir_unlink),
        CONF_ALL(test_lock_exclusive),
        CONF(test_rmdir, kind_posix),
        CONF(test_rmdir, kind_mem),
        cmocka_unit_test(test_mem_drop_all_keeps_only_synced),
        cmocka_unit_test(test_mem_apply_all_keeps_everything),
        cmocka_unit_test(test_mem_torn_is_sector_granular),
        cmocka_unit_test(test_mem_names_need_sync_dir),
        cmocka_unit_test(test_mem_torn_names_keep_a_prefix),
        cmocka_unit_test(test_mem_crash_at_each_sync),
        cmocka_unit_test(test_mem_restart_rules),
        cmocka_unit_test(test_mem_churn_then_crash),
        cmocka_unit_test(test_mem_threads),
        cmocka_unit_test(test_fault_counts_every_class),
        CONF(test_fault_fails_exactly_the_nth, kind_fault_posix),
        CONF(test_fault_each_class_fails_cleanly, kind_fault_posix),
        CONF(test_fault_short_write_leaves_prefix, kind_fault_posix),
        cmocka_unit_test(test_fault_over_mem_crash),
        cmocka_unit_test(test_testutil),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
