/*
 * test_backup.c — evs_backup, evs_restore and evs_backup_inspect on real files:
 *   - a full backup restored into a new directory: the same segment bytes
 *     over the covered range, identical reads (every event, stream, id,
 *     consumer and projection), a clean evs_verify;
 *   - full + two increments restore to exactly the files one full backup
 *     taken at the end restores to (and an empty increment is harmless);
 *   - refusals, each with a sentence and without leaving a directory behind:
 *     a flipped byte anywhere in the archive, a truncated archive, a missing
 *     increment (gap), increments out of order, an increment first, another
 *     store's increment, a non-empty target; an empty target is accepted;
 *   - a backup taken while 8 threads append: the restored store holds
 *     exactly positions 1..N, N >= the position acknowledged before the
 *     backup began, each event byte-identical to the original's;
 *   - a follower's (read-only) backup, since past the end, cancellation and
 *     sink failures, and a damaged source refused rather than copied.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
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
#include <zstd.h>

#include "evstore.h"
#include "backup/backup_int.h"
#include "index/manifest.h"
#include "io/vfs.h"
#include "store_fixtures.h"
#include "testutil.h"

#define SEG 65536u   /* the minimum segment size: many segments from few events */

/* ---- helpers ---- */

/* Append n events in batches of 1..7 over 13 streams, some with metadata. */
static void fill(evs_store *s, uint64_t n, uint64_t *rs)
{
    char data[600], meta[64], stream[32];
    uint64_t done = 0;
    while (done < n) {
        size_t k = (size_t)evs_test_rand_range(rs, 1, 7);
        if (k > n - done) k = (size_t)(n - done);
        evs_event_in ev[7];
        snprintf(stream, sizeof stream, "orders/%" PRIu64, evs_test_rand_range(rs, 1, 13));
        for (size_t i = 0; i < k; i++) {
            size_t len = (size_t)evs_test_rand_range(rs, 0, 400);
            int off = snprintf(data, sizeof data, "{\"n\":%" PRIu64 ",\"pad\":\"", done + i);
            for (size_t j = 0; j < len; j++) data[off + (int)j] = (char)('a' + (char)evs_test_rand_range(rs, 0, 25));
            snprintf(data + off + len, sizeof data - (size_t)off - len, "\",\"emoji\":\"\xf0\x9f\x8e\x89\"}");
            snprintf(meta, sizeof meta, "{\"i\":%zu}", i);
            ev[i] = (i % 3 == 1) ? fx_ev_meta("T", data, meta) : fx_ev("T", data);
            ev[i].data = strdup(data);
            if (ev[i].metadata) ev[i].metadata = strdup(meta);
        }
        evs_append_result res;
        assert_int_equal(evs_append(s, stream, EVS_EXPECT_ANY, ev, k, NULL, &res), 0);
        for (size_t i = 0; i < k; i++) {
            free((void *)ev[i].data);
            free((void *)ev[i].metadata);
        }
        done += k;
    }
}

static void path_in(const fx *f, const char *name, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", f->root, name);
    assert_true(n > 0 && (size_t)n < cap);
}

/* evs_backup into root/name. */
static int backup_file(fx *f, evs_store *s, uint64_t since, const char *name, evs_backup_info *info)
{
    char path[4096];
    path_in(f, name, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    int rc = evs_backup(s, fd, since, NULL, info);
    assert_int_equal(close(fd), 0);
    if (rc) fprintf(stderr, "# backup: %s\n", info->message);
    return rc;
}

/* evs_restore of root/names[0..n) into root/target. */
static int restore_files(fx *f, const char *const *names, size_t n, const char *target, evs_backup_info *info)
{
    char paths[8][4096], dir[4096];
    const char *pv[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        path_in(f, names[i], paths[i], sizeof paths[i]);
        pv[i] = paths[i];
    }
    path_in(f, target, dir, sizeof dir);
    evs_options o;
    evs_options_init(&o);
    o.log = fx_log_cb;
    o.log_ctx = &f->log;
    o.log_level = EVS_LOG_DEBUG;
    return evs_restore(pv, n, dir, &o, NULL, info);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Neither root/target nor root/target.restoring exists. */
static void assert_nothing_left(fx *f, const char *target)
{
    char dir[4096], tmp[4200];
    path_in(f, target, dir, sizeof dir);
    snprintf(tmp, sizeof tmp, "%s.restoring", dir);
    assert_false(exists(dir));
    assert_false(exists(tmp));
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return p;
}

static void spill(const char *path, const uint8_t *p, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* Every segment of restored is a byte prefix of (or equal to, exact = 1) the
 * same segment of original; the two hold the same segment names up to
 * restored's last. Returns the number of segments compared. */
static size_t compare_segments(const char *original, const char *restored, int exact)
{
    char a[512][256], b[512][256];
    size_t na = fx_list(original, "*.seg", a, 512), nb = fx_list(restored, "*.seg", b, 512);
    assert_true(nb >= 1 && nb <= na);
    for (size_t i = 0; i < nb; i++) {
        assert_string_equal(a[i], b[i]);
        char pa[4400], pb[4400];
        snprintf(pa, sizeof pa, "%s/%s", original, a[i]);
        snprintf(pb, sizeof pb, "%s/%s", restored, b[i]);
        size_t la = 0, lb = 0;
        uint8_t *x = slurp(pa, &la), *y = slurp(pb, &lb);
        assert_non_null(x);
        assert_non_null(y);
        if (exact || i + 1 < nb) assert_int_equal(la, lb);
        assert_true(lb <= la);
        assert_memory_equal(x, y, lb);
        free(x);
        free(y);
    }
    if (exact) assert_int_equal(na, nb);
    return nb;
}

static evs_store *open_dir(fx *f, const char *dir, int read_only)
{
    evs_options o = f->opt;
    o.read_only = read_only;
    o.create = 0;
    evs_store *s = NULL;
    int rc = evs_open(dir, &o, &s);
    if (rc) fprintf(stderr, "# open %s: %s\n", dir, evs_strerror(rc));
    assert_int_equal(rc, 0);
    return s;
}

/* Every position 1..n reads identically in both stores. */
static void compare_events(evs_store *a, evs_store *b, uint64_t n)
{
    for (uint64_t p = 1; p <= n; p++) {
        evs_event *x = NULL, *y = NULL;
        assert_int_equal(evs_get_at(a, p, &x), 0);
        assert_int_equal(evs_get_at(b, p, &y), 0);
        char *lx = fx_format(x), *ly = fx_format(y);
        if (strcmp(lx, ly) != 0) fprintf(stderr, "# position %" PRIu64 ":\n#  %s\n#  %s\n", p, lx, ly);
        assert_string_equal(lx, ly);
        free(lx);
        free(ly);
        evs_free(x);
        evs_free(y);
    }
    evs_event *none = NULL;
    assert_int_not_equal(evs_get_at(b, n + 1, &none), 0);
    evs_free(none);
}

/* Every stream (system streams too, by name) with its version and events:
 * what fx_snapshot covers, for stores that have system streams. */
static char *streams_text(evs_store *s, const char *const *extra, size_t nextra)
{
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    out[0] = 0;
    evs_stream_iter *si = NULL;
    char **names = NULL;
    size_t n = 0;
    assert_int_equal(evs_streams_open(s, NULL, &si), 0);
    for (;;) {
        const char *name = NULL;
        uint64_t v = 0;
        assert_int_equal(evs_streams_next(si, &name, &v), 0);
        if (!name) break;
        names = realloc(names, (n + 1) * sizeof *names);
        names[n++] = strdup(name);
    }
    evs_streams_close(si);
    for (size_t i = 0; i < nextra; i++) {
        names = realloc(names, (n + 1) * sizeof *names);
        names[n++] = strdup(extra[i]);
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 0, count = 0;
        assert_int_equal(evs_stream_version(s, names[i], &v), 0);
        evs_read_options ro;
        evs_read_options_init(&ro);
        ro.stream = names[i];
        char *lines = fx_read_lines(s, &ro, &count);
        assert_int_equal(count, v);
        size_t need = strlen(names[i]) + strlen(lines) + 64;
        while (len + need >= cap) out = realloc(out, cap *= 2);
        len += (size_t)snprintf(out + len, cap - len, "stream %s %" PRIu64 "\n%s", names[i], v, lines);
        free(lines);
        free(names[i]);
    }
    free(names);
    return out;
}

/* ---- full backup ---- */

static void test_full_roundtrip(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0x1111;
    f->opt.segment_size = SEG;
    fx_open(f);
    fill(f->s, 1500, &rs);
    /* durable state in system streams: a projection and a consumer with state */
    const char *types[] = {"T"};
    evs_filter pf = {types, 1, "orders/1"};
    assert_int_equal(evs_projection_define(f->s, "ones", &pf, NULL), 0);
    assert_int_equal(evs_consumer_create(f->s, "billing", "{\"stream_prefix\":\"orders/\"}", 27, NULL), 0);
    assert_int_equal(evs_consumer_checkpoint(f->s, "billing", 700, "{\"sum\":12.50}", 13), 0);
    fill(f->s, 500, &rs);
    static const char *const sys[] = {"$projections/ones", "$consumers/billing"};
    char *before = streams_text(f->s, sys, 2);
    uint64_t last = evs_position(f->s);

    evs_backup_info bi;
    assert_int_equal(backup_file(f, f->s, 0, "full.tar.zst", &bi), 0);
    assert_int_equal(bi.since, 0);
    assert_int_equal(bi.first_position, 1);
    assert_int_equal(bi.last_position, last);
    assert_true(bi.files >= 10);
    assert_true(bi.archive_bytes > 0 && bi.archive_bytes < bi.bytes);
    assert_int_equal(strlen(bi.store_id), 16);
    assert_string_equal(bi.message, "");

    /* inspect agrees, also with the full check */
    char path[4096];
    path_in(f, "full.tar.zst", path, sizeof path);
    evs_backup_info ii;
    assert_int_equal(evs_backup_inspect(path, NULL, 0, NULL, &ii), 0);
    assert_int_equal(ii.last_position, last);
    assert_int_equal(ii.files, bi.files);
    assert_int_equal(ii.bytes, bi.bytes);
    assert_string_equal(ii.store_id, bi.store_id);
    assert_int_equal(evs_backup_inspect(path, NULL, 1, NULL, &ii), 0);
    assert_int_equal(ii.archive_bytes, bi.archive_bytes);

    const char *names[] = {"full.tar.zst"};
    evs_backup_info ri;
    assert_int_equal(restore_files(f, names, 1, "restored", &ri), 0);
    assert_int_equal(ri.last_position, last);
    assert_int_equal(ri.files, bi.files);
    assert_int_equal(ri.bytes, bi.bytes);
    assert_string_equal(ri.store_id, bi.store_id);
    char dir[4096];
    path_in(f, "restored", dir, sizeof dir);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.restoring", dir);
    assert_false(exists(tmp));
    /* nothing was appended since: the segments are identical files */
    compare_segments(f->dir, dir, 1);
    char names_idx[64][256];
    assert_true(fx_list(dir, "checkpoint.idx", names_idx, 64) == 1);  /* indexes were rebuilt by restore */
    assert_int_equal(fx_verify(dir), 0);

    evs_store *r = open_dir(f, dir, 0);
    char *after = streams_text(r, sys, 2);
    assert_string_equal(before, after);
    compare_events(f->s, r, last);
    uint64_t cpos = 0;
    char *cstate = NULL;
    assert_int_equal(evs_consumer_get(r, "billing", &cpos, &cstate, NULL), 0);
    assert_int_equal(cpos, 700);
    assert_string_equal(cstate, "{\"sum\":12.50}");
    evs_free(cstate);
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.projection = "ones";
    uint64_t na = 0, nb = 0;
    char *pa = fx_read_lines(f->s, &ro, &na), *pb = fx_read_lines(r, &ro, &nb);
    assert_true(na > 0);
    assert_int_equal(na, nb);
    assert_string_equal(pa, pb);
    free(pa);
    free(pb);
    /* the restored store is a working store: it appends after the last position */
    evs_commit c;
    assert_int_equal(fx_append1(r, "after/restore", EVS_EXPECT_ANY, "T", NULL, &c, NULL), 0);
    assert_int_equal(c.position, last + 1);
    assert_int_equal(evs_close(r), 0);
    free(before);
    free(after);
}

/* ---- increments ---- */

static void test_incremental_chain(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0x2222;
    f->opt.segment_size = SEG;
    fx_open(f);
    evs_backup_info b0, b1, b2, b3, bf;
    fill(f->s, 700, &rs);
    assert_int_equal(backup_file(f, f->s, 0, "full.tar.zst", &b0), 0);
    fill(f->s, 40, &rs);   /* a few: the active segment grows, it is copied again whole */
    assert_int_equal(backup_file(f, f->s, b0.last_position, "inc1.tar.zst", &b1), 0);
    assert_int_equal(b1.since, b0.last_position);
    assert_true(b1.first_position <= b0.last_position + 1);
    assert_int_equal(b1.last_position, evs_position(f->s));
    assert_true(b1.files >= 1 && b1.files < b0.files);
    fill(f->s, 900, &rs);  /* many: several new segments */
    assert_int_equal(backup_file(f, f->s, b1.last_position, "inc2.tar.zst", &b2), 0);
    assert_true(b2.files >= 3);
    /* nothing new: an empty increment */
    assert_int_equal(backup_file(f, f->s, b2.last_position, "inc3.tar.zst", &b3), 0);
    assert_int_equal(b3.last_position, b2.last_position);
    assert_true(b3.files <= 1);
    assert_int_equal(backup_file(f, f->s, 0, "final.tar.zst", &bf), 0);
    assert_int_equal(bf.last_position, b2.last_position);
    assert_string_equal(b2.store_id, b0.store_id);

    const char *chain[] = {"full.tar.zst", "inc1.tar.zst", "inc2.tar.zst", "inc3.tar.zst"};
    const char *one[] = {"final.tar.zst"};
    evs_backup_info ra, rb;
    assert_int_equal(restore_files(f, chain, 4, "chain", &ra), 0);
    assert_int_equal(restore_files(f, one, 1, "one", &rb), 0);
    assert_int_equal(ra.last_position, b2.last_position);
    assert_int_equal(ra.files, rb.files);
    assert_int_equal(ra.bytes, rb.bytes);
    char da[4096], db[4096];
    path_in(f, "chain", da, sizeof da);
    path_in(f, "one", db, sizeof db);
    assert_int_equal(compare_segments(db, da, 1), rb.files);
    compare_segments(f->dir, da, 1);
    assert_int_equal(fx_verify(da), 0);
    evs_store *r = open_dir(f, da, 1);
    compare_events(f->s, r, b2.last_position);
    char *s1 = fx_snapshot(f->s), *s2 = fx_snapshot(r);
    assert_string_equal(s1, s2);
    free(s1);
    free(s2);
    evs_close(r);

    /* a restore that stops at an increment ends at its position */
    evs_backup_info rc1;
    assert_int_equal(restore_files(f, chain, 2, "partial", &rc1), 0);
    assert_int_equal(rc1.last_position, b1.last_position);
    char dp[4096];
    path_in(f, "partial", dp, sizeof dp);
    compare_segments(f->dir, dp, 0);
    /* a full backup followed by a later full backup is a valid chain too */
    const char *two_full[] = {"full.tar.zst", "final.tar.zst"};
    evs_backup_info r2;
    assert_int_equal(restore_files(f, two_full, 2, "twofull", &r2), 0);
    assert_int_equal(r2.last_position, bf.last_position);
}

/* ---- refusals ---- */

static void expect_refused(fx *f, const char *const *names, size_t n, const char *target, int want_rc,
                           const char *needle)
{
    evs_backup_info ri;
    int rc = restore_files(f, names, n, target, &ri);
    fprintf(stderr, "# refused (%s): %s\n", evs_errname(rc), ri.message);
    assert_int_not_equal(rc, 0);
    if (want_rc) assert_int_equal(rc, want_rc);
    assert_true(ri.message[0] != 0);
    if (needle && !strstr(ri.message, needle)) {
        fprintf(stderr, "# expected \"%s\" in the message\n", needle);
        fail();
    }
    assert_nothing_left(f, target);
}

static void test_refusals(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0x3333;
    f->opt.segment_size = SEG;
    fx_open(f);
    evs_backup_info b0, b1, b2;
    fill(f->s, 600, &rs);
    assert_int_equal(backup_file(f, f->s, 0, "full.tar.zst", &b0), 0);
    fill(f->s, 300, &rs);
    assert_int_equal(backup_file(f, f->s, b0.last_position, "inc1.tar.zst", &b1), 0);
    fill(f->s, 300, &rs);
    assert_int_equal(backup_file(f, f->s, b1.last_position, "inc2.tar.zst", &b2), 0);

    char path[4096], bad[4096];
    path_in(f, "full.tar.zst", path, sizeof path);
    size_t len = 0;
    uint8_t *orig = slurp(path, &len);
    assert_non_null(orig);
    assert_true(len > 4096);
    path_in(f, "bad.tar.zst", bad, sizeof bad);
    const char *badn[] = {"bad.tar.zst"};

    /* a flipped byte anywhere: the start, the middle, near the end, the last byte */
    size_t spots[] = {0, 5, 13, 200, len / 3, len / 2, len - 40, len - 5, len - 1};
    for (size_t i = 0; i < sizeof spots / sizeof spots[0]; i++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, orig, len);
        copy[spots[i]] ^= 0x20;
        spill(bad, copy, len);
        free(copy);
        expect_refused(f, badn, 1, "t-flip", 0, "bad.tar.zst");
        evs_backup_info ii;
        assert_int_not_equal(evs_backup_inspect(bad, NULL, 1, NULL, &ii), 0);
    }
    /* truncated: at half, just before the end, to nothing */
    size_t cuts[] = {len / 2, len - 1, 0};
    for (size_t i = 0; i < 3; i++) {
        spill(bad, orig, cuts[i]);
        expect_refused(f, badn, 1, "t-cut", EVS_ECORRUPT, "truncated");
    }
    /* extended: bytes after the archive */
    {
        uint8_t *copy = malloc(len + 100);
        memcpy(copy, orig, len);
        memset(copy + len, 'x', 100);
        spill(bad, copy, len + 100);
        free(copy);
        expect_refused(f, badn, 1, "t-extra", EVS_ECORRUPT, NULL);
    }
    /* not an archive at all */
    spill(bad, (const uint8_t *)"hello, world\n", 13);
    expect_refused(f, badn, 1, "t-junk", EVS_ECORRUPT, NULL);
    free(orig);

    /* a gap: the first increment is missing */
    const char *gap[] = {"full.tar.zst", "inc2.tar.zst"};
    expect_refused(f, gap, 2, "t-gap", EVS_EINVAL, "missing");
    /* out of order */
    const char *order[] = {"full.tar.zst", "inc2.tar.zst", "inc1.tar.zst"};
    expect_refused(f, order, 3, "t-order", EVS_EINVAL, NULL);
    const char *order2[] = {"full.tar.zst", "inc1.tar.zst", "inc2.tar.zst", "inc1.tar.zst"};
    expect_refused(f, order2, 4, "t-order2", EVS_EINVAL, "order");
    /* an increment first */
    const char *incfirst[] = {"inc1.tar.zst", "inc2.tar.zst"};
    expect_refused(f, incfirst, 2, "t-incfirst", EVS_EINVAL, "full backup");
    /* a missing file */
    const char *missing[] = {"full.tar.zst", "nope.tar.zst"};
    expect_refused(f, missing, 2, "t-missing", -ENOENT, "nope.tar.zst");

    /* another store's increment */
    {
        char other[4096];
        path_in(f, "other", other, sizeof other);
        evs_options o = f->opt;
        evs_store *s2 = NULL;
        assert_int_equal(evs_open(other, &o, &s2), 0);
        fill(s2, 1200, &rs);
        evs_backup_info bo;
        assert_int_equal(backup_file(f, s2, b0.last_position, "other-inc.tar.zst", &bo), 0);
        assert_string_not_equal(bo.store_id, b0.store_id);
        evs_close(s2);
        const char *mixed[] = {"full.tar.zst", "other-inc.tar.zst"};
        expect_refused(f, mixed, 2, "t-mixed", EVS_EINVAL, "another store");
    }

    /* an existing, non-empty target is left exactly as it was */
    char target[4096], keep[8500];
    path_in(f, "t-full", target, sizeof target);
    assert_int_equal(mkdir(target, 0755), 0);
    snprintf(keep, sizeof keep, "%s/precious.txt", target);
    spill(keep, (const uint8_t *)"mine", 4);
    const char *full[] = {"full.tar.zst"};
    evs_backup_info ri;
    int rc = restore_files(f, full, 1, "t-full", &ri);
    fprintf(stderr, "# refused: %s\n", ri.message);
    assert_int_equal(rc, -ENOTEMPTY);
    assert_non_null(strstr(ri.message, "not empty"));
    size_t kl = 0;
    uint8_t *kept = slurp(keep, &kl);
    assert_int_equal(kl, 4);
    free(kept);
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.restoring", target);
    assert_false(exists(tmp));
    /* the store itself (a non-empty directory) is refused too */
    evs_options o;
    evs_options_init(&o);
    o.log = fx_log_cb;
    o.log_ctx = &f->log;
    const char *pv[] = {path};
    assert_int_equal(evs_restore(pv, 1, f->dir, &o, NULL, &ri), -ENOTEMPTY);
    /* an empty target directory is fine */
    path_in(f, "t-empty", target, sizeof target);
    assert_int_equal(mkdir(target, 0755), 0);
    assert_int_equal(restore_files(f, full, 1, "t-empty", &ri), 0);
    assert_int_equal(ri.last_position, b0.last_position);
    /* a leftover temporary directory from an interrupted restore is cleared */
    path_in(f, "t-left", target, sizeof target);
    snprintf(tmp, sizeof tmp, "%s.restoring", target);
    assert_int_equal(mkdir(tmp, 0755), 0);
    snprintf(keep, sizeof keep, "%s/00000000000000000001.seg", tmp);
    spill(keep, (const uint8_t *)"partial", 7);
    assert_int_equal(restore_files(f, full, 1, "t-left", &ri), 0);
    assert_false(exists(tmp));
    /* ... but not one holding somebody else's files */
    path_in(f, "t-foreign", target, sizeof target);
    snprintf(tmp, sizeof tmp, "%s.restoring", target);
    assert_int_equal(mkdir(tmp, 0755), 0);
    snprintf(keep, sizeof keep, "%s/notes.txt", tmp);
    spill(keep, (const uint8_t *)"x", 1);
    assert_int_equal(restore_files(f, full, 1, "t-foreign", &ri), -EEXIST);
    assert_true(exists(keep));
    /* no archives */
    assert_int_equal(evs_restore(pv, 0, target, &o, NULL, &ri), EVS_EINVAL);
}

/* A prefix disagreement between two archives of "the same" segment. */
static void test_prefix_mismatch(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0x4444;
    f->opt.segment_size = SEG;
    fx_open(f);
    fill(f->s, 50, &rs);   /* all in segment 1 */
    evs_backup_info b0, b1;
    assert_int_equal(backup_file(f, f->s, 0, "full.tar.zst", &b0), 0);
    fx_close(f);
    /* a second store with the same segment file (copied), diverging after it */
    char twin[4096], cmd[9000];
    path_in(f, "twin", twin, sizeof twin);
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", f->dir, twin);
    assert_int_equal(system(cmd), 0);
    evs_store *s2 = open_dir(f, twin, 0);
    fill(s2, 20, &rs);
    assert_int_equal(backup_file(f, s2, b0.last_position, "twin-inc.tar.zst", &b1), 0);
    evs_close(s2);
    fx_open(f);
    fill(f->s, 20, &rs);
    evs_backup_info b2;
    assert_int_equal(backup_file(f, f->s, b0.last_position, "inc.tar.zst", &b2), 0);
    /* same store id and chain, but segment 1 differs after the common prefix:
     * full + inc is fine, full + twin-inc is fine, inc after twin-inc is not */
    assert_string_equal(b1.store_id, b0.store_id);
    const char *ok1[] = {"full.tar.zst", "inc.tar.zst"};
    const char *ok2[] = {"full.tar.zst", "twin-inc.tar.zst"};
    const char *bad[] = {"full.tar.zst", "twin-inc.tar.zst", "inc.tar.zst"};
    evs_backup_info ri;
    assert_int_equal(restore_files(f, ok1, 2, "ok1", &ri), 0);
    assert_int_equal(restore_files(f, ok2, 2, "ok2", &ri), 0);
    expect_refused(f, bad, 3, "bad", EVS_EINVAL, "differs");
}

/* ---- a backup while 8 threads append ---- */

enum { APPENDERS = 8 };

typedef struct app_arg {
    evs_store *s;
    atomic_int *stop;
    int id;
    uint64_t appended;
    int rc;
} app_arg;

static void *appender(void *p)
{
    app_arg *a = p;
    uint64_t rs = evs_test_seed() ^ (uint64_t)(a->id * 7919);
    char stream[32], data[300];
    while (!atomic_load(a->stop)) {
        snprintf(stream, sizeof stream, "load/%d/%" PRIu64, a->id, evs_test_rand_range(&rs, 0, 5));
        size_t k = (size_t)evs_test_rand_range(&rs, 1, 4);
        evs_event_in ev[4];
        for (size_t i = 0; i < k; i++) {
            snprintf(data, sizeof data, "{\"t\":%d,\"n\":%" PRIu64 ",\"r\":%" PRIu64 "}", a->id, a->appended + i,
                     evs_test_rand(&rs));
            ev[i] = fx_ev("Load", data);
            ev[i].data = strdup(data);
        }
        int rc = evs_append(a->s, stream, EVS_EXPECT_ANY, ev, k, NULL, NULL);
        for (size_t i = 0; i < k; i++) free((void *)ev[i].data);
        if (rc) { a->rc = rc; break; }
        a->appended += k;
    }
    return NULL;
}

typedef struct prog {
    uint64_t calls;
    uint64_t last_done, last_events, events_total;
    const char *phase;
    char phases[128];            /* every phase seen, in order, space-separated */
    int bad;                     /* a count went past its total, or backwards */
    int cancel_at;
} prog;

static int on_progress(void *ctx, const evs_progress *pg)
{
    prog *p = ctx;
    p->calls++;
    if (!p->phase || strcmp(p->phase, pg->phase) != 0) {
        size_t n = strlen(p->phases);
        snprintf(p->phases + n, sizeof p->phases - n, "%s%s", n ? " " : "", pg->phase);
        p->last_done = p->last_events = 0;
    }
    if ((pg->bytes_total && pg->bytes > pg->bytes_total) || (pg->events_total && pg->events > pg->events_total) ||
        pg->bytes < p->last_done || pg->events < p->last_events)
        p->bad = 1;
    p->last_done = pg->bytes;
    p->last_events = pg->events;
    p->events_total = pg->events_total;
    p->phase = pg->phase;
    if (p->bad) return 1;
    return p->cancel_at && p->calls >= (uint64_t)p->cancel_at;
}

static void test_backup_while_appending(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0x5555;
    f->opt.segment_size = SEG;
    f->opt.sync = EVS_SYNC_INTERVAL;   /* fast appends; visibility is the same */
    f->opt.sync_interval_ms = 5;
    fx_open(f);
    fill(f->s, 3000, &rs);
    atomic_int stop = 0;
    app_arg args[APPENDERS];
    pthread_t th[APPENDERS];
    for (int i = 0; i < APPENDERS; i++) {
        args[i] = (app_arg){.s = f->s, .stop = &stop, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, appender, &args[i]), 0);
    }
    /* let the appenders get going, then back up under their load */
    uint64_t start = evs_position(f->s);
    assert_int_equal(evs_wait(f->s, start + 2000, 60000, NULL), 0);
    uint64_t acked = evs_position(f->s);   /* acknowledged before the backup began */
    evs_backup_info bi;
    char path[4096];
    path_in(f, "live.tar.zst", path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    prog pr = {0};
    evs_backup_options bo;
    evs_backup_options_init(&bo);
    bo.progress = on_progress;
    bo.progress_ctx = &pr;
    bo.level = 1;
    int rc = evs_backup(f->s, fd, 0, &bo, &bi);
    close(fd);
    uint64_t after = evs_position(f->s);
    /* keep appending a little after it, then stop */
    evs_wait(f->s, after + 500, 60000, NULL);
    atomic_store(&stop, 1);
    for (int i = 0; i < APPENDERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].rc, 0);
    }
    if (rc) fprintf(stderr, "# %s\n", bi.message);
    assert_int_equal(rc, 0);
    assert_true(pr.calls > 0);
    assert_string_equal(pr.phase, "copy");
    assert_string_equal(pr.phases, "check copy");
    assert_false(pr.bad);
    assert_true(pr.events_total >= acked);   /* a full backup: every position up to the snapshot */
    assert_true(pr.last_events > 0);
    fprintf(stderr, "# acked before %" PRIu64 ", snapshot %" PRIu64 ", after %" PRIu64 ", final %" PRIu64 "\n", acked,
            bi.last_position, after, evs_position(f->s));
    assert_true(bi.last_position >= acked);
    assert_true(bi.last_position <= after);
    assert_true(evs_position(f->s) > bi.last_position);  /* appends went on */

    const char *names[] = {"live.tar.zst"};
    evs_backup_info ri;
    assert_int_equal(restore_files(f, names, 1, "live", &ri), 0);
    assert_int_equal(ri.last_position, bi.last_position);
    char dir[4096];
    path_in(f, "live", dir, sizeof dir);
    compare_segments(f->dir, dir, 0);
    evs_store *r = open_dir(f, dir, 1);
    assert_int_equal(evs_position(r), bi.last_position);
    compare_events(f->s, r, bi.last_position);
    evs_close(r);
}

/* ---- a follower's backup; since past the end; cancel; sink errors ---- */

typedef struct mem_sink { uint8_t *p; size_t len, cap; size_t fail_after; } mem_sink;

static int mem_write(void *ctx, const void *buf, size_t n)
{
    mem_sink *m = ctx;
    if (m->fail_after && m->len + n > m->fail_after) return -EPIPE;
    if (m->len + n > m->cap) {
        m->cap = (m->len + n) * 2;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->len, buf, n);
    m->len += n;
    return 0;
}

static void test_follower_and_options(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0x6666;
    f->opt.segment_size = SEG;
    fx_open(f);
    fill(f->s, 400, &rs);
    evs_store *ro = open_dir(f, f->dir, 1);
    fill(f->s, 400, &rs);   /* the follower has not looked yet: backup refreshes first */
    uint64_t last = evs_position(f->s);
    evs_backup_info bi;
    assert_int_equal(backup_file(f, ro, 0, "ro.tar.zst", &bi), 0);
    assert_int_equal(bi.last_position, last);
    const char *names[] = {"ro.tar.zst"};
    evs_backup_info ri;
    assert_int_equal(restore_files(f, names, 1, "ro", &ri), 0);
    char dir[4096];
    path_in(f, "ro", dir, sizeof dir);
    compare_segments(f->dir, dir, 1);

    /* since after the end */
    mem_sink ms = {0};
    evs_backup_options bo;
    evs_backup_options_init(&bo);
    bo.write = mem_write;
    bo.write_ctx = &ms;
    assert_int_equal(evs_backup(f->s, -1, last + 1, &bo, &bi), EVS_EINVAL);
    assert_non_null(strstr(bi.message, "after the store's last position"));
    assert_int_equal(ms.len, 0);
    /* the write callback receives the same archive a file would */
    assert_int_equal(evs_backup(f->s, -1, 0, &bo, &bi), 0);
    assert_int_equal(ms.len, bi.archive_bytes);
    uint64_t nfiles = bi.files;
    char mpath[4096];
    path_in(f, "mem.tar.zst", mpath, sizeof mpath);
    spill(mpath, ms.p, ms.len);
    evs_backup_info ii;
    assert_int_equal(evs_backup_inspect(mpath, NULL, 1, NULL, &ii), 0);
    assert_int_equal(ii.last_position, last);
    /* a failing sink stops the backup with its code */
    ms.len = 0;
    ms.fail_after = 5000;
    assert_int_equal(evs_backup(f->s, -1, 0, &bo, &bi), -EPIPE);
    assert_true(bi.message[0] != 0);
    /* cancellation from the progress callback, in each phase */
    ms.fail_after = 0;
    int cancel_points[2] = {1, (int)nfiles + 1};  /* the first call of each phase (one read per file here) */
    for (int c = 0; c < 2; c++) {
        int at = cancel_points[c];
        ms.len = 0;
        prog pr = {.cancel_at = at};
        bo.progress = on_progress;
        bo.progress_ctx = &pr;
        assert_int_equal(evs_backup(f->s, -1, 0, &bo, &bi), -ECANCELED);
        assert_string_equal(pr.phase, at == 1 ? "check" : "copy");
        /* a cancelled archive never restores */
        spill(mpath, ms.p, ms.len);
        const char *mn[] = {"mem.tar.zst"};
        expect_refused(f, mn, 1, "cancelled", 0, NULL);
    }
    bo.progress = NULL;
    bo.level = 42;
    assert_int_equal(evs_backup(f->s, -1, 0, &bo, &bi), EVS_EINVAL);
    free(ms.p);
    /* progress of a restore ends with the verify phase */
    {
        char p1[4096], dir2[4096];
        path_in(f, "ro.tar.zst", p1, sizeof p1);
        path_in(f, "ro2", dir2, sizeof dir2);
        const char *pv[] = {p1};
        prog pr = {0};
        evs_backup_options_init(&bo);
        bo.progress = on_progress;
        bo.progress_ctx = &pr;
        assert_int_equal(evs_restore(pv, 1, dir2, NULL, &bo, &ri), 0);
        /* extract the archive, open the store, verify it (events: every position restored) */
        assert_string_equal(pr.phases, "extract open log");
        assert_false(pr.bad);
        assert_int_equal(pr.last_events, ri.last_position);
        assert_true(pr.calls >= 3);
    }
    evs_close(ro);
}

/* ---- an empty store; a damaged source ---- */

static void test_empty_and_damaged_source(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0x7777;
    f->opt.segment_size = SEG;
    fx_open(f);
    evs_backup_info bi, ri;
    assert_int_equal(backup_file(f, f->s, 0, "empty.tar.zst", &bi), 0);
    assert_int_equal(bi.last_position, 0);
    assert_int_equal(bi.first_position, 0);
    assert_int_equal(bi.files, 1);   /* the header of segment 1: the store keeps its id */
    const char *en[] = {"empty.tar.zst"};
    assert_int_equal(restore_files(f, en, 1, "empty", &ri), 0);
    assert_int_equal(ri.last_position, 0);
    assert_string_equal(ri.store_id, bi.store_id);

    fill(f->s, 600, &rs);
    /* flip a byte inside a sealed segment behind the open store's back */
    char seg[4400];
    snprintf(seg, sizeof seg, "%s/00000000000000000001.seg", f->dir);
    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, 3000), 1);
    b ^= 1;
    assert_int_equal(pwrite(fd, &b, 1, 3000), 1);
    close(fd);
    int rc = backup_file(f, f->s, 0, "damaged.tar.zst", &bi);
    assert_int_equal(rc, EVS_ECORRUPT);
    assert_non_null(strstr(bi.message, "00000000000000000001.seg"));
    const char *dn[] = {"damaged.tar.zst"};
    expect_refused(f, dn, 1, "damaged", 0, NULL);
    /* an increment that does not reach the damage still works */
    assert_int_equal(backup_file(f, f->s, evs_position(f->s) - 1, "tail.tar.zst", &bi), 0);
    /* put the byte back so teardown's store closes normally */
    fd = open(seg, O_RDWR);
    b ^= 1;
    assert_int_equal(pwrite(fd, &b, 1, 3000), 1);
    close(fd);
}


/* A full backup holds the index checkpoint (listed in its manifest); the
 * restore opens from it, replaying only the log after it, and reads the same. */
static void test_index_checkpoint(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0x5151;
    f->opt.segment_size = SEG;
    f->opt.checkpoint_interval = 100;
    fx_open(f);
    fill(f->s, 1537, &rs);
    evs_backup_info bi;
    assert_int_equal(backup_file(f, f->s, 0, "ix.tar.zst", &bi), 0);
    char path[4096];
    path_in(f, "ix.tar.zst", path, sizeof path);
    size_t alen = 0;
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "zstd -dcq '%s' 2>/dev/null | tar -tf - > '%s.list'", path, path);
    if (system(cmd) == 0) {
        char lp[4200];
        snprintf(lp, sizeof lp, "%s.list", path);
        uint8_t *list = slurp(lp, &alen);
        assert_non_null(list);
        list[alen] = 0;
        assert_non_null(strstr((char *)list, "checkpoint.idx"));
        assert_non_null(strstr((char *)list, "ids.manifest.idx"));
        assert_non_null(strstr((char *)list, "streams.manifest.idx"));
        assert_non_null(strstr((char *)list, ".offsets.idx"));
        free(list);
    }
    char *before = fx_snapshot(f->s);
    const char *names[] = {"ix.tar.zst"};
    evs_backup_info ri;
    assert_int_equal(restore_files(f, names, 1, "ixr", &ri), 0);
    assert_false(fx_log_has(&f->log, "rebuilding the indexes"));
    assert_false(fx_log_has(&f->log, "recovered positions 1.."));
    assert_true(fx_log_has(&f->log, "..1537 from the log tail"));  /* only the tail after C */
    char dir[4096];
    path_in(f, "ixr", dir, sizeof dir);
    evs_options o;
    evs_options_init(&o);
    evs_store *s2 = NULL;
    assert_int_equal(evs_open(dir, &o, &s2), 0);
    char *after = fx_snapshot(s2);
    assert_string_equal(before, after);
    assert_int_equal(evs_close(s2), 0);
    free(before);
    free(after);
}

/* ---- a backup while the index thread merges runs ---- */

/* The run sequence numbers the manifest of index name in dir lists. */
static size_t manifest_runs(const char *dir, const char *name, uint64_t *seqs, size_t max, uint64_t *gen)
{
    evs__manifest m;
    memset(&m, 0, sizeof m);
    assert_int_equal(evs__man_read(evs__vfs_posix(), NULL, dir, name, &m), 0);
    assert_true(m.nruns <= max);
    for (size_t i = 0; i < m.nruns; i++) seqs[i] = m.runs[i].seq;
    size_t n = m.nruns;
    if (gen) *gen = m.gen;
    evs__man_free(&m);
    return n;
}

/* ---- damaged index files: in the archive, and in the source ---- */

/* The whole decompressed content of a zstd file (the trailer frame skipped). */
static uint8_t *unzstd(const uint8_t *p, size_t len, size_t *out_len)
{
    ZSTD_DCtx *z = ZSTD_createDCtx();
    size_t cap = 1 << 20, n = 0;
    uint8_t *out = malloc(cap);
    assert_non_null(z);
    assert_non_null(out);
    ZSTD_inBuffer ib = {p, len, 0};
    for (;;) {
        if (n == cap) out = realloc(out, cap *= 2);
        ZSTD_outBuffer ob = {out + n, cap - n, 0};
        size_t r = ZSTD_decompressStream(z, &ob, &ib);
        assert_false(ZSTD_isError(r));
        n += ob.pos;
        if (r == 0) break;   /* the frame is complete */
        assert_true(ib.pos < ib.size || ob.pos > 0);
    }
    ZSTD_freeDCtx(z);
    *out_len = n;
    return out;
}

/* Compress tar as evs_backup does: one frame with its checksum, then the
 * 16-byte trailer frame with the XXH3-64 of the compressed bytes. */
static uint8_t *rezstd(const uint8_t *tar, size_t len, size_t *out_len)
{
    size_t cap = ZSTD_compressBound(len) + EVS_BACKUP_TRAILER_SIZE;
    uint8_t *out = malloc(cap);
    ZSTD_CCtx *z = ZSTD_createCCtx();
    assert_non_null(out);
    assert_non_null(z);
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1)));
    size_t n = ZSTD_compress2(z, out, cap, tar, len);
    assert_false(ZSTD_isError(n));
    ZSTD_freeCCtx(z);
    uint64_t h = XXH3_64bits(out, n);
    evs__put32(out + n, EVS_BACKUP_TRAILER_MAGIC);
    evs__put32(out + n + 4, 8);
    evs__put64(out + n + 8, h);
    *out_len = n + EVS_BACKUP_TRAILER_SIZE;
    return out;
}

/* Offset and size of the content of member name in a ustar/pax archive
 * (whose names here fit the 100-byte field); 0 when absent. */
static size_t tar_member(const uint8_t *tar, size_t len, const char *name, size_t *size)
{
    for (size_t off = 0; off + 512 <= len;) {
        const char *h = (const char *)tar + off;
        if (!h[0]) return 0;
        char sz[13];
        memcpy(sz, h + 124, 12);
        sz[12] = 0;
        size_t n = (size_t)strtoull(sz, NULL, 8);
        if (strncmp(h, name, 100) == 0 && h[156] != 'x') {
            *size = n;
            return off + 512;
        }
        off += 512 + (n + 511) / 512 * 512;
    }
    return 0;
}

static void test_damaged_index_files(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0x5353;
    f->opt.segment_size = SEG;
    f->opt.checkpoint_interval = 100;
    fx_open(f);
    fill(f->s, 1537, &rs);
    evs_backup_info bi, ri;
    int rc;
    assert_int_equal(backup_file(f, f->s, 0, "good.tar.zst", &bi), 0);

    /* 1. a byte flipped inside an index file's content, the archive otherwise
     * well formed (frame checksum and trailer recomputed): refused */
    char path[4096], bad[4096];
    path_in(f, "good.tar.zst", path, sizeof path);
    path_in(f, "bad.tar.zst", bad, sizeof bad);
    size_t zlen = 0, tlen = 0;
    uint8_t *z = slurp(path, &zlen);
    assert_non_null(z);
    uint8_t *tar = unzstd(z, zlen, &tlen);
    char runs[64][256];
    size_t nruns = fx_list(f->dir, "ids-*.idx", runs, 64);
    assert_true(nruns >= 1);
    const char *members[] = {"checkpoint.idx", "ids.manifest.idx", runs[0], "streams.idx",
                             "00000000000000000001.offsets.idx"};
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++) {
        size_t size = 0, at = tar_member(tar, tlen, members[i], &size);
        if (!at) fprintf(stderr, "# %s is not in the archive\n", members[i]);
        assert_true(at > 0 && size > 0);
        tar[at + size / 2] ^= 0x04;
        size_t blen = 0;
        uint8_t *b = rezstd(tar, tlen, &blen);
        tar[at + size / 2] ^= 0x04;
        spill(bad, b, blen);
        free(b);
        const char *badn[] = {"bad.tar.zst"};
        fprintf(stderr, "# damaged %s at offset %zu\n", members[i], size / 2);
        expect_refused(f, badn, 1, "t-idx", EVS_ECORRUPT, members[i]);
    }
    /* the same re-compression of the undamaged tar restores (the test's
     * archive writing is faithful) */
    {
        size_t blen = 0;
        uint8_t *b = rezstd(tar, tlen, &blen);
        spill(bad, b, blen);
        free(b);
        const char *badn[] = {"bad.tar.zst"};
        assert_int_equal(restore_files(f, badn, 1, "t-same", &ri), 0);
    }
    free(tar);
    free(z);

    /* 2. a run damaged in the source before the backup: the archive carries
     * the damaged bytes faithfully (its checksums agree with them), restore's
     * verify finds the damage and rebuilds the indexes from the log */
    fx_close(f);   /* the index thread settles; a run the manifest lists now stays */
    fx_open(f);
    char *before = fx_snapshot(f->s);
    uint64_t seqs[4096];
    size_t nseq = manifest_runs(f->dir, "ids", seqs, 4096, NULL);
    assert_true(nseq >= 1);
    assert_int_equal(evs__idx_run_name(runs[0], sizeof runs[0], "ids", seqs[nseq - 1], 0), 0);
    char rp[4400];
    snprintf(rp, sizeof rp, "%s/%s", f->dir, runs[0]);
    struct stat st;
    assert_int_equal(stat(rp, &st), 0);
    off_t spot = st.st_size / 2;
    int rfd = open(rp, O_RDWR);
    assert_true(rfd >= 0);
    uint8_t byte;
    assert_int_equal(pread(rfd, &byte, 1, spot), 1);
    byte ^= 0x10;
    assert_int_equal(pwrite(rfd, &byte, 1, spot), 1);
    assert_int_equal(backup_file(f, f->s, 0, "carried.tar.zst", &bi), 0);
    byte ^= 0x10;   /* put it back: the source reads as before */
    assert_int_equal(pwrite(rfd, &byte, 1, spot), 1);
    close(rfd);
    fprintf(stderr, "# damaged %s at offset %lld before the backup\n", runs[0], (long long)spot);
    const char *cn[] = {"carried.tar.zst"};
    assert_false(fx_log_has(&f->log, "rebuilding them from the log"));
    rc = restore_files(f, cn, 1, "carried", &ri);
    if (rc) fprintf(stderr, "# restore: %s\n", ri.message);
    assert_int_equal(rc, 0);
    assert_int_equal(ri.last_position, bi.last_position);
    /* found at open (a merge of the damaged run fails the store) or by verify */
    assert_true(fx_log_has(&f->log, "rebuilding them from the log"));
    char dir[4096];
    path_in(f, "carried", dir, sizeof dir);
    assert_int_equal(fx_verify(dir), 0);
    evs_store *r = open_dir(f, dir, 0);
    char *after = fx_snapshot(r);
    assert_string_equal(before, after);
    compare_events(f->s, r, bi.last_position);
    assert_int_equal(evs_close(r), 0);
    free(before);
    free(after);
}

int main(void)
{
    fx_main_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_roundtrip, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_incremental_chain, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refusals, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_prefix_mismatch, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_backup_while_appending, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_follower_and_options, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_empty_and_damaged_source, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_index_checkpoint, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_damaged_index_files, fx_setup_closed, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
