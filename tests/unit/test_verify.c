/*
 * test_verify.c — evs_verify names the damage, wherever it is:
 *   - a flipped bit in ANY file of a data directory — every segment and every
 *     index (offsets files, id and stream index runs and manifests, the
 *     stream table, checkpoint.idx, projection indexes) — at every byte of
 *     each file's first 160 and last 64 bytes and at random bytes between:
 *     each is reported, naming that file (for segments at or before the
 *     flipped byte); with the bit flipped back the store verifies clean;
 *   - a projection index that lists one position too few (header rewritten
 *     with a valid checksum) is reported;
 *   - consumer and projection streams holding events the library never
 *     writes (written through the internal system append) are reported;
 *   - progress: phases "log" then "projections", counts never past their
 *     totals, every event counted; cancelling returns -ECANCELED.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <xxhash.h>

#include "evstore.h"
#include "store/store_int.h"
#include "store_fixtures.h"
#include "testutil.h"

/* ---- problems ---- */

typedef struct found {
    size_t n;
    char file[64][128];
    uint64_t off[64];
    char first[600];
} found;

static void on_problem(void *ctx, const char *file, uint64_t off, const char *problem)
{
    found *f = ctx;
    if (f->n < 64) {
        snprintf(f->file[f->n], sizeof f->file[f->n], "%s", file);
        f->off[f->n] = off;
    }
    if (f->n == 0) snprintf(f->first, sizeof f->first, "%s:%" PRIu64 ": %s", file, off, problem);
    f->n++;
}

static void quiet(void *ctx, int level, const char *message)
{
    (void)ctx;
    (void)level;
    (void)message;
}

static found run_verify(const char *dir)
{
    found f;
    memset(&f, 0, sizeof f);
    evs_options o;
    evs_options_init(&o);
    o.log = quiet;   /* the damage is logged too: the report is what is checked */
    uint64_t n = 0;
    assert_int_equal(evs_verify(dir, &o, on_problem, &f, &n), 0);
    assert_int_equal(n, f.n);
    return f;
}

/* Is file named (at an offset <= max_off)? */
static int names(const found *f, const char *file, uint64_t max_off)
{
    for (size_t i = 0; i < f->n && i < 64; i++)
        if (!strcmp(f->file[i], file) && f->off[i] <= max_off) return 1;
    return 0;
}

static void flip(const char *path, uint64_t off, unsigned bit)
{
    int fd = open(path, O_RDWR);
    if (fd < 0) fprintf(stderr, "# %s: %s\n", path, strerror(errno));
    assert_true(fd >= 0);
    uint8_t b = 0;
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= (uint8_t)(1u << bit);
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

/* ---- the store ---- */

/* Events over 9 streams, two projections (one on a system-stream prefix is
 * not allowed for users; both on user streams), consumers with checkpoints,
 * several segments, and a clean close: every derived file is written. */
static void build(fx *f, uint64_t *rs)
{
    f->opt.segment_size = 65536;
    f->opt.checkpoint_interval = 150;
    fx_open(f);
    const char *types[] = {"Placed"};
    evs_filter pf = {types, 1, NULL};
    assert_int_equal(evs_projection_define(f->s, "placed", &pf, NULL), 0);
    evs_filter pf2 = {NULL, 0, "orders/1"};
    assert_int_equal(evs_projection_define(f->s, "ones", &pf2, NULL), 0);
    static const char billing[] = "{\"stream_prefix\":\"orders/\"}", audit[] = "{\"projection\":\"placed\"}";
    assert_int_equal(evs_consumer_create(f->s, "billing", billing, strlen(billing), NULL), 0);
    assert_int_equal(evs_consumer_create(f->s, "audit", audit, strlen(audit), NULL), 0);
    char data[400], stream[32];
    for (int i = 0; i < 700; i++) {
        snprintf(stream, sizeof stream, "orders/%d", (int)evs_test_rand_range(rs, 1, 9));
        size_t pad = (size_t)evs_test_rand_range(rs, 0, 300);
        int n = snprintf(data, sizeof data, "{\"i\":%d,\"p\":\"", i);
        memset(data + n, 'a' + (char)(i % 26), pad);
        snprintf(data + n + pad, sizeof data - (size_t)n - pad, "\"}");
        assert_int_equal(fx_append1(f->s, stream, EVS_EXPECT_ANY, i % 3 ? "Placed" : "Paid", data, NULL, NULL), 0);
        if (i % 97 == 0) assert_int_equal(evs_consumer_checkpoint(f->s, "billing", (uint64_t)i, "{\"n\":1}", 7), 0);
    }
    assert_int_equal(evs_consumer_checkpoint(f->s, "audit", 10, NULL, 0), 0);
    /* wait for the projection builder: the indexes cover everything at close */
    fx_close(f);
    fx_open(f);
    fx_close(f);
}

/* ---- a flipped bit anywhere ---- */

static void test_flip_anywhere_is_named(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0x7e51;
    build(f, &rs);
    found clean = run_verify(f->dir);
    if (clean.n) fprintf(stderr, "# %s\n", clean.first);
    assert_int_equal(clean.n, 0);

    char files[256][256];
    size_t nf = fx_list(f->dir, "*", files, 256);
    unsigned cases = 0, kinds_seg = 0, kinds_off = 0, kinds_lsm = 0, kinds_proj = 0, kinds_other = 0;
    for (size_t i = 0; i < nf; i++) {
        const char *name = files[i];
        if (name[0] == '.' || !strcmp(name, "evstore.lock")) continue;   /* not data: the writer's lock and published position */
        uint64_t size = fx_file_size(f->dir, name);
        if (size == 0 || size == UINT64_MAX) continue;
        int seg = strstr(name, ".seg") != NULL;
        if (seg) kinds_seg++;
        else if (strstr(name, ".offsets.idx")) kinds_off++;
        else if (!strncmp(name, "ids", 3) || !strncmp(name, "streams-", 8) || !strncmp(name, "streams.manifest", 16)) kinds_lsm++;
        else if (!strncmp(name, "projection-", 11)) kinds_proj++;
        else kinds_other++;
        char path[8400];
        snprintf(path, sizeof path, "%s/%.255s", f->dir, name);
        uint64_t offs[260];
        size_t no = 0;
        for (uint64_t o = 0; o < size && o < 160; o++) offs[no++] = o;
        for (uint64_t o = size > 64 ? size - 64 : 0; o < size; o++)
            if (o >= 160) offs[no++] = o;
        for (int k = 0; k < 16 && size > 224; k++) offs[no++] = evs_test_rand_range(&rs, 160, size - 65);
        for (size_t k = 0; k < no; k++) {
            unsigned bit = (unsigned)evs_test_rand_range(&rs, 0, 7);
            flip(path, offs[k], bit);
            found p = run_verify(f->dir);
            if (!names(&p, name, seg ? offs[k] : UINT64_MAX)) {
                fprintf(stderr, "# %s (%" PRIu64 " bytes): bit %u of byte %" PRIu64 " flipped: %zu problems%s%s\n",
                        name, size, bit, offs[k], p.n, p.n ? ", the first: " : "", p.first);
                fail();
            }
            flip(path, offs[k], bit);
            cases++;
        }
    }
    fprintf(stderr, "# %u flips over %zu files (%u segments, %u offsets files, %u id/stream index files, %u "
            "projection indexes, %u others): every one named\n", cases, nf, kinds_seg, kinds_off, kinds_lsm, kinds_proj,
            kinds_other);
    assert_true(kinds_seg >= 3 && kinds_off >= 3 && kinds_lsm >= 4 && kinds_proj == 2 && kinds_other >= 2);
    found again = run_verify(f->dir);
    assert_int_equal(again.n, 0);
}

/* ---- projection indexes that disagree with the log ---- */

static void rewrite_proj_count(const char *path, int64_t delta)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t h[64];
    assert_int_equal(pread(fd, h, 64, 0), 64);
    uint64_t count = 0;
    for (int i = 7; i >= 0; i--) count = (count << 8) | h[40 + i];
    count = (uint64_t)((int64_t)count + delta);
    for (int i = 0; i < 8; i++) h[40 + i] = (uint8_t)(count >> (8 * i));
    uint64_t sum = XXH3_64bits(h, 56);
    for (int i = 0; i < 8; i++) h[56 + i] = (uint8_t)(sum >> (8 * i));
    assert_int_equal(pwrite(fd, h, 64, 0), 64);
    close(fd);
}

static void test_projection_index_against_log(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0x9a0;
    build(f, &rs);
    char proj[8][256];
    size_t np = fx_list(f->dir, "projection-*.idx", proj, 8);
    assert_int_equal(np, 2);
    for (size_t i = 0; i < np; i++) {
        char path[8400];
        snprintf(path, sizeof path, "%s/%s", f->dir, proj[i]);
        /* one entry too few: the last matching position is "missing" */
        rewrite_proj_count(path, -1);
        found p = run_verify(f->dir);
        fprintf(stderr, "# count - 1: %s\n", p.first);
        assert_true(names(&p, proj[i], UINT64_MAX));
        assert_non_null(strstr(p.first, "missing"));
        rewrite_proj_count(path, 1);
        assert_int_equal(run_verify(f->dir).n, 0);
        /* an entry naming an event the filter does not match: position 1 is
         * the first projection's ProjectionDefined (a system stream) */
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        uint8_t e[8], one[8] = {1, 0, 0, 0, 0, 0, 0, 0};
        assert_int_equal(pread(fd, e, 8, 64), 8);
        assert_int_equal(pwrite(fd, one, 8, 64), 8);
        p = run_verify(f->dir);
        fprintf(stderr, "# entry 0 = 1: %s\n", p.first);
        assert_true(names(&p, proj[i], 64));
        assert_int_equal(pwrite(fd, e, 8, 64), 8);
        close(fd);
        assert_int_equal(run_verify(f->dir).n, 0);
    }
    /* an index removed is not a problem: open rebuilds it */
    assert_int_equal(fx_unlink(f->dir, "projection-*.idx"), 2);
    assert_int_equal(run_verify(f->dir).n, 0);
    /* every derived file removed: still clean */
    fx_unlink(f->dir, "*.idx");
    assert_int_equal(run_verify(f->dir).n, 0);
}

/* ---- system streams with events the library never writes ---- */

static void sys_append(fx *f, const char *stream, const char *type, const char *data, const char *meta)
{
    evs_event_in ev = fx_ev_meta(type, data, meta);
    assert_int_equal(evs__append_system(f->s, stream, EVS_EXPECT_ANY, &ev, 1, NULL, NULL), 0);
}

static void expect_named(fx *f, const char *needle)
{
    fx_close(f);
    found p = run_verify(f->dir);
    fprintf(stderr, "# %s: %zu problem(s), the first: %s\n", needle, p.n, p.first);
    assert_int_equal(p.n, 1);
    assert_non_null(strstr(p.first, ".seg:"));
    assert_non_null(strstr(p.first, needle));
}

static void test_system_streams_checked(void **state)
{
    fx *f = *state;
    fx_open(f);
    assert_int_equal(evs_consumer_create(f->s, "c", "{\"stream\":\"a\"}", 14, NULL), 0);
    assert_int_equal(fx_append1(f->s, "a", EVS_EXPECT_ANY, "T", NULL, NULL, NULL), 0);
    assert_int_equal(evs_consumer_checkpoint(f->s, "c", 2, "{\"x\":1}", 7), 0);
    fx_close(f);
    assert_int_equal(run_verify(f->dir).n, 0);
    struct { const char *stream, *type, *data, *meta, *needle; } cases[] = {
        {"$consumers/c", "ConsumerCheckpoint", "{\"position\":3,\"state\":null}", "{\"created_version\":2}",
         "another incarnation"},
        {"$consumers/c", "ConsumerCheckpoint", "{\"position\":99,\"state\":null}", "{\"created_version\":1}",
         "did not exist yet"},
        {"$consumers/c", "ConsumerCheckpoint", "{\"state\":null,\"position\":3}", "{\"created_version\":1}",
         "not in the form"},
        {"$consumers/d", "ConsumerCheckpoint", "{\"position\":1,\"state\":null}", "{\"created_version\":1}",
         "does not exist"},
        {"$consumers/c", "ConsumerCreated", "{\"stream\":\"b\"}", NULL, "already exists"},
        {"$consumers/e", "ConsumerCreated", "{\"stream_prefix\":\"x\",\"types\":[\"A\"]}", NULL, "canonical"},
        {"$consumers/c", "ConsumerRenamed", "null", NULL, "never writes"},
        {"$projections/p", "ProjectionDeleted", "null", NULL, "does not exist"},
        {"$projections/p", "ProjectionRenamed", "null", NULL, "never writes"},
    };
    char copy[4200];
    snprintf(copy, sizeof copy, "%s.clean", f->dir);
    char cmd[13000];
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", f->dir, copy);
    assert_int_equal(system(cmd), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", f->dir, copy, f->dir);
        assert_int_equal(system(cmd), 0);
        fx_open(f);
        sys_append(f, cases[i].stream, cases[i].type, cases[i].data, cases[i].meta);
        expect_named(f, cases[i].needle);
    }
}

/* ---- progress and cancellation ---- */

typedef struct prog {
    char phases[64];
    const char *phase;
    uint64_t events, bytes, calls;
    int bad, cancel_at;
} prog;

static int on_progress(void *ctx, const evs_progress *pg)
{
    prog *p = ctx;
    p->calls++;
    if (!p->phase || strcmp(p->phase, pg->phase) != 0) {
        size_t n = strlen(p->phases);
        snprintf(p->phases + n, sizeof p->phases - n, "%s%s", n ? " " : "", pg->phase);
        p->events = p->bytes = 0;
    }
    if (pg->events < p->events || pg->bytes < p->bytes || (pg->bytes_total && pg->bytes > pg->bytes_total) ||
        (pg->events_total && pg->events > pg->events_total))
        p->bad = 1;
    p->phase = pg->phase;
    p->events = pg->events;
    p->bytes = pg->bytes;
    return p->cancel_at && p->calls >= (uint64_t)p->cancel_at;
}

static void test_progress_and_cancel(void **state)
{
    fx *f = *state;
    uint64_t rs = evs_test_seed() ^ 0x51;
    build(f, &rs);
    fx_open(f);
    uint64_t last = evs_position(f->s);
    fx_close(f);
    prog p;
    memset(&p, 0, sizeof p);
    evs_verify_options vo;
    evs_verify_options_init(&vo);
    vo.progress = on_progress;
    vo.progress_ctx = &p;
    uint64_t n = 1;
    assert_int_equal(evs_verify_ex(f->dir, NULL, &vo, &n), 0);
    assert_int_equal(n, 0);
    assert_string_equal(p.phases, "log projections");
    assert_false(p.bad);
    assert_int_equal(p.events, last);
    memset(&p, 0, sizeof p);
    p.cancel_at = 1;
    assert_int_equal(evs_verify_ex(f->dir, NULL, &vo, &n), -ECANCELED);
}

int main(void)
{
    fx_main_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flip_anywhere_is_named, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_projection_index_against_log, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_system_streams_checked, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_progress_and_cancel, fx_setup_closed, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
