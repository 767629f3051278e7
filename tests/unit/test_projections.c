/*
 * test_projections.c — projections through the public API, on real files:
 * definition rules, reads forward/backward/live checked against a model of
 * what was appended, surviving close+reopen, a crash (no close), and the
 * deletion of every *.idx file (rebuilt byte-identical), a projection
 * defined over 10k existing events, definitions racing appends from other
 * threads, deletion, read-only followers; plus the rules for system
 * ("$...") streams: user appends refused, global reads and listings skip
 * them unless the prefix asks for them.
 */
#include <signal.h>
#include <sys/wait.h>

#include "test_cp_common.h"

static const char *const streams[] = {"orders/1", "orders/2", "orders/10", "users/1", "users/2", "ordersX/1", "a"};
#define NSTREAMS (sizeof streams / sizeof streams[0])
static const char *const types[] = {"OrderPlaced", "OrderShipped", "UserCreated", "Other"};
#define NTYPES (sizeof types / sizeof types[0])

/* What was appended: model[p - 1] describes position p. */
typedef struct mev { int stream, type; } mev;
typedef struct model { mev *ev; size_t n, cap; } model;

static void model_add(model *m, int st, int ty)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 1024;
        m->ev = realloc(m->ev, m->cap * sizeof *m->ev);
        assert_non_null(m->ev);
    }
    m->ev[m->n++] = (mev){st, ty};
}

/* Append n events in random batches (1..5, sometimes multi-stream). */
static void populate(evs_store *s, model *m, size_t n, uint64_t *rs)
{
    size_t done = 0;
    while (done < n) {
        size_t k = (size_t)evs_test_rand_range(rs, 1, 5);
        if (k > n - done) k = n - done;
        evs_event_in in[5];
        int st[5], ty[5];
        char data[5][64];
        for (size_t i = 0; i < k; i++) {
            st[i] = (int)evs_test_rand_range(rs, 0, NSTREAMS - 1);
            ty[i] = (int)evs_test_rand_range(rs, 0, NTYPES - 1);
            snprintf(data[i], sizeof data[i], "{\"i\":%zu}", m->n + i);
            in[i] = (evs_event_in){.stream = streams[st[i]], .type = types[ty[i]], .data = data[i],
                                   .data_len = strlen(data[i]), .expected_version = EVS_EXPECT_ANY};
        }
        evs_commit c[5];
        assert_int_equal(evs_append_multi(s, in, k, NULL, c, NULL), 0);
        for (size_t i = 0; i < k; i++) {
            assert_int_equal(c[i].position, m->n + 1);
            model_add(m, st[i], ty[i]);
        }
        done += k;
    }
}

/* The model's matches of (types, prefix) with positions in [lo, hi]. */
static size_t model_matches(const model *m, const char *const *tv, size_t nt, const char *prefix, uint64_t lo,
                            uint64_t hi, uint64_t *out)
{
    size_t n = 0;
    for (uint64_t p = lo; p <= hi && p <= m->n; p++) {
        const mev *e = &m->ev[p - 1];
        if (prefix && strncmp(streams[e->stream], prefix, strlen(prefix)) != 0) continue;
        int ok = nt == 0;
        for (size_t i = 0; i < nt; i++)
            if (!strcmp(types[e->type], tv[i])) ok = 1;
        if (ok) out[n++] = p;
    }
    return n;
}

static void assert_positions(const uint64_t *got, size_t ngot, const uint64_t *want, size_t nwant)
{
    assert_int_equal(ngot, nwant);
    for (size_t i = 0; i < ngot; i++)
        if (got[i] != want[i]) fail_msg("entry %zu: got position %" PRIu64 ", want %" PRIu64, i, got[i], want[i]);
}

static const char *const orders_types[] = {"OrderPlaced", "OrderShipped"};

/* Every read shape of projection "orders" (types OrderPlaced/OrderShipped, prefix "orders/") against the model. */
static void check_orders(evs_store *s, const model *m)
{
    size_t max = m->n + 1;
    uint64_t *want = calloc(max, sizeof *want), *got = calloc(max, sizeof *got);
    assert_non_null(want);
    assert_non_null(got);
    size_t nw = model_matches(m, orders_types, 2, "orders/", 1, m->n, want);
    evs_read_options ro = cp_proj_ro("orders");
    assert_positions(got, cp_read_positions(s, &ro, got, max), want, nw);
    /* backward, everything */
    ro.backward = 1;
    size_t ng = cp_read_positions(s, &ro, got, max);
    assert_int_equal(ng, nw);
    for (size_t i = 0; i < ng; i++) assert_int_equal(got[i], want[nw - 1 - i]);
    /* from and limit, both directions, at a few interesting positions */
    uint64_t froms[] = {1, 2, m->n / 3, m->n / 2, m->n, m->n + 5, nw ? want[nw / 2] : 1};
    for (size_t f = 0; f < sizeof froms / sizeof froms[0]; f++) {
        uint64_t from = froms[f] ? froms[f] : 1;
        ro = cp_proj_ro("orders");
        ro.from = from;
        ro.limit = 7;
        ng = cp_read_positions(s, &ro, got, max);
        size_t nexp = model_matches(m, orders_types, 2, "orders/", from, m->n, want);
        assert_positions(got, ng, want, nexp < 7 ? nexp : 7);
        ro.backward = 1;
        ng = cp_read_positions(s, &ro, got, max);
        nexp = model_matches(m, orders_types, 2, "orders/", 1, from, want);
        assert_int_equal(ng, nexp < 7 ? nexp : 7);
        for (size_t i = 0; i < ng; i++) assert_int_equal(got[i], want[nexp - 1 - i]);
    }
    free(want);
    free(got);
}

static void define_orders(evs_store *s)
{
    evs_filter f = {orders_types, 2, "orders/"};
    int created = -1;
    assert_int_equal(evs_projection_define(s, "orders", &f, &created), 0);
    assert_int_equal(created, 1);
}

/* ---- definitions ---- */

static void test_define_rules(void **state)
{
    cp *c = *state;
    evs_store *s = c->s;
    const char *const t2[] = {"OrderShipped", "OrderPlaced", "OrderPlaced"};
    evs_filter f = {t2, 3, "orders/"};
    int created = -1;
    assert_int_equal(evs_projection_define(s, "p1", &f, &created), 0);
    assert_int_equal(created, 1);
    /* the same filter (types as a set) again: unchanged */
    evs_filter same = {orders_types, 2, "orders/"};
    assert_int_equal(evs_projection_define(s, "p1", &same, &created), 0);
    assert_int_equal(created, 0);
    /* another filter: conflict */
    evs_filter other = {orders_types, 1, "orders/"};
    assert_int_equal(evs_projection_define(s, "p1", &other, &created), EVS_ECONFLICT);
    evs_projection_info *info = NULL;
    assert_int_equal(evs_projection_get(s, "p1", &info), 0);
    assert_int_equal(info->filter.ntypes, 2);
    assert_string_equal(info->filter.types[0], "OrderPlaced");
    assert_string_equal(info->filter.types[1], "OrderShipped");
    assert_string_equal(info->filter.stream_prefix, "orders/");
    assert_int_equal(info->defined_at, 1);
    evs_free(info);
    /* bad ones */
    evs_filter empty = {NULL, 0, NULL};
    assert_int_equal(evs_projection_define(s, "p2", &empty, NULL), EVS_EINVAL);
    const char *const badt[] = {""};
    evs_filter bad = {badt, 1, NULL};
    assert_int_equal(evs_projection_define(s, "p2", &bad, NULL), EVS_EINVAL);
    const char *const ctl[] = {"a\nb"};
    evs_filter badc = {ctl, 1, NULL};
    assert_int_equal(evs_projection_define(s, "p2", &badc, NULL), EVS_EINVAL);
    assert_int_equal(evs_projection_define(s, "", &same, NULL), EVS_EINVAL);
    char longname[260];
    memset(longname, 'x', 243);
    longname[243] = 0;
    assert_int_equal(evs_projection_define(s, longname, &same, NULL), EVS_EINVAL);
    longname[242] = 0;
    assert_int_equal(evs_projection_define(s, longname, &same, NULL), 0);
    assert_int_equal(evs_projection_get(s, "nope", &info), EVS_ENOTFOUND);
    evs_read_options ro = cp_proj_ro("nope");
    evs_iter *it = NULL;
    assert_int_equal(evs_iter_open(s, &ro, &it), EVS_ENOTFOUND);
    /* a projection read takes no stream and no extra filter */
    ro = cp_proj_ro("p1");
    ro.stream = "orders/1";
    assert_int_equal(evs_iter_open(s, &ro, &it), EVS_EINVAL);
    ro = cp_proj_ro("p1");
    ro.filter.stream_prefix = "x";
    assert_int_equal(evs_iter_open(s, &ro, &it), EVS_EINVAL);
    /* an options struct from before the projection field existed reads the global log */
    ro = cp_proj_ro("p1");
    ro.struct_size = offsetof(evs_read_options, projection);
    assert_int_equal(evs_iter_open(s, &ro, &it), 0);
    evs_iter_close(it);
}

/* ---- reads against the model, live, reopen ---- */

static void test_read_forward_backward_live(void **state)
{
    cp *c = *state;
    uint64_t rs = evs_test_seed() ^ 1;
    model m = {0};
    populate(c->s, &m, 300, &rs);
    define_orders(c->s);
    model_add(&m, NSTREAMS - 1, NTYPES - 1);  /* the ProjectionDefined event: stands for one that never matches */
    check_orders(c->s, &m);           /* while the index may still be building: reads scan */
    cp_wait_built(c->s, "orders");
    check_orders(c->s, &m);
    populate(c->s, &m, 200, &rs);     /* the writer keeps it up to date */
    check_orders(c->s, &m);

    /* a live forward iterator at the end sees new matches, and only them */
    evs_read_options ro = cp_proj_ro("orders");
    ro.from = evs_position(c->s) + 1;
    evs_iter *it = NULL;
    const evs_event *ev = NULL;
    assert_int_equal(evs_iter_open(c->s, &ro, &it), 0);
    assert_int_equal(evs_iter_next(it, &ev), 0);
    assert_null(ev);
    cp_append(c->s, "users/1", "OrderPlaced", NULL);       /* not under the prefix */
    cp_append(c->s, "orders/5", "Other", NULL);            /* not a type */
    uint64_t p = cp_append(c->s, "orders/5", "OrderShipped", "{\"x\":1}");
    assert_int_equal(evs_iter_next(it, &ev), 0);
    assert_non_null(ev);
    assert_int_equal(ev->position, p);
    assert_string_equal(ev->stream, "orders/5");
    assert_string_equal(ev->data, "{\"x\":1}");
    assert_int_equal(evs_iter_next(it, &ev), 0);
    assert_null(ev);
    evs_iter_close(it);

    evs_projection_info *info = NULL;
    assert_int_equal(evs_projection_get(c->s, "orders", &info), 0);
    assert_int_equal(info->covered, evs_position(c->s));
    uint64_t *want = calloc(m.n + 8, sizeof *want);
    model_add(&m, 3, 0);
    model_add(&m, 0, 3);
    model_add(&m, 0, 1);  /* "orders/1" stands for "orders/5": the same prefix */
    assert_int_equal(info->indexed, model_matches(&m, orders_types, 2, "orders/", 1, m.n, want));
    evs_free(info);
    free(want);

    /* close and reopen: identical */
    char *before = NULL;
    ro = cp_proj_ro("orders");
    before = cp_read_text(c->s, &ro);
    cp_reopen(c);
    char *after = cp_read_text(c->s, &ro);
    assert_string_equal(before, after);
    assert_int_equal(cp_count_prefix(c->dir, "projection-"), 1);
    free(before);
    free(after);
    free(m.ev);
}

/* Live forward iterators woken by appends from another thread. */
typedef struct appender { evs_store *s; int n; } appender;

static void *append_thread(void *arg)
{
    appender *a = arg;
    for (int i = 0; i < a->n; i++) {
        evs_event_in in = {.type = i % 2 ? "OrderPlaced" : "Other", .expected_version = EVS_EXPECT_ANY};
        if (evs_append(a->s, i % 3 ? "orders/7" : "users/7", EVS_EXPECT_ANY, &in, 1, NULL, NULL) != 0) return "append";
    }
    return NULL;
}

static void test_live_iterator_other_thread(void **state)
{
    cp *c = *state;
    define_orders(c->s);
    evs_read_options ro = cp_proj_ro("orders");
    evs_iter *it = NULL;
    assert_int_equal(evs_iter_open(c->s, &ro, &it), 0);
    appender a = {c->s, 600};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, append_thread, &a), 0);
    int expect = 0;
    for (int i = 0; i < a.n; i++) expect += (i % 2) && (i % 3);
    int seen = 0;
    uint64_t last = 0, waited = 0;
    int64_t deadline = cp_now_ms() + CP_WAIT_MS;
    while (seen < expect) {
        const evs_event *ev = NULL;
        assert_int_equal(evs_iter_next(it, &ev), 0);
        if (!ev) {
            evs_wait(c->s, evs_position(c->s) + 1, 100, &waited);
            assert_true(cp_now_ms() < deadline);
            continue;
        }
        assert_true(ev->position > last);
        last = ev->position;
        assert_string_equal(ev->type, "OrderPlaced");
        assert_string_equal(ev->stream, "orders/7");
        seen++;
    }
    void *ret;
    pthread_join(t, &ret);
    assert_null(ret);
    const evs_event *ev = NULL;
    assert_int_equal(evs_iter_next(it, &ev), 0);
    assert_null(ev);
    evs_iter_close(it);
}

/* ---- derived data: deleting every *.idx, a crash without close ---- */

static void test_survives_idx_deletion(void **state)
{
    cp *c = *state;
    uint64_t rs = evs_test_seed() ^ 2;
    model m = {0};
    populate(c->s, &m, 500, &rs);
    define_orders(c->s);
    const char *const ut[] = {"UserCreated"};
    evs_filter uf = {ut, 1, NULL};
    assert_int_equal(evs_projection_define(c->s, "users", &uf, NULL), 0);
    model_add(&m, NSTREAMS - 1, NTYPES - 1);  /* the two definitions */
    model_add(&m, NSTREAMS - 1, NTYPES - 1);
    populate(c->s, &m, 500, &rs);
    cp_wait_built(c->s, "orders");
    cp_wait_built(c->s, "users");
    evs_read_options ro = cp_proj_ro("orders"), ru = cp_proj_ro("users");
    char *o1 = cp_read_text(c->s, &ro), *u1 = cp_read_text(c->s, &ru);
    cp_close(c);
    size_t len1 = 0, len2 = 0;
    char *file1 = cp_slurp_prefix(c->dir, "projection-", &len1);
    assert_non_null(file1);
    assert_true(cp_unlink_suffix(c->dir, ".idx") >= 4);
    assert_int_equal(cp_count_prefix(c->dir, "projection-"), 0);
    cp_open(c);
    /* exact at once (reads scan what the rebuild has not reached) */
    char *o2 = cp_read_text(c->s, &ro), *u2 = cp_read_text(c->s, &ru);
    assert_string_equal(o1, o2);
    assert_string_equal(u1, u2);
    free(o2);
    free(u2);
    cp_wait_built(c->s, "orders");
    cp_wait_built(c->s, "users");
    o2 = cp_read_text(c->s, &ro);
    u2 = cp_read_text(c->s, &ru);
    assert_string_equal(o1, o2);
    assert_string_equal(u1, u2);
    cp_close(c);
    /* the rebuilt files are byte-identical to the ones deleted */
    assert_int_equal(cp_count_prefix(c->dir, "projection-"), 2);
    char *file2 = NULL;
    {
        /* compare the same file: find file1's name by content match among the two */
        DIR *d = opendir(c->dir);
        struct dirent *e;
        int matched = 0;
        while ((e = readdir(d)) != NULL) {
            if (strncmp(e->d_name, "projection-", 11) != 0) continue;
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", c->dir, e->d_name);
            FILE *f = fopen(path, "rb");
            fseek(f, 0, SEEK_END);
            len2 = (size_t)ftell(f);
            fseek(f, 0, SEEK_SET);
            file2 = malloc(len2 + 1);
            assert_int_equal(fread(file2, 1, len2, f), len2);
            fclose(f);
            if (len2 == len1 && !memcmp(file1, file2, len1)) matched = 1;
            free(file2);
        }
        closedir(d);
        assert_true(matched);
    }
    cp_open(c);
    free(o1);
    free(u1);
    free(o2);
    free(u2);
    free(file1);
    free(m.ev);
}

static void test_damaged_index_rebuilt(void **state)
{
    cp *c = *state;
    uint64_t rs = evs_test_seed() ^ 3;
    model m = {0};
    populate(c->s, &m, 400, &rs);
    define_orders(c->s);
    model_add(&m, NSTREAMS - 1, NTYPES - 1);
    cp_wait_built(c->s, "orders");
    cp_close(c);
    /* flip a byte of the header */
    DIR *d = opendir(c->dir);
    struct dirent *e;
    char path[8192] = "";
    while ((e = readdir(d)) != NULL)
        if (!strncmp(e->d_name, "projection-", 11)) snprintf(path, sizeof path, "%s/%s", c->dir, e->d_name);
    closedir(d);
    assert_true(path[0]);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    char b;
    assert_int_equal(pread(fd, &b, 1, 33), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, 33), 1);
    close(fd);
    cp_open(c);
    assert_true(cp_log_has(c, "not usable"));
    check_orders(c->s, &m);
    cp_wait_built(c->s, "orders");
    check_orders(c->s, &m);
    free(m.ev);
}

static void test_crash_without_close(void **state)
{
    cp *c = *state;
    uint64_t rs = evs_test_seed() ^ 4;
    model m = {0};
    define_orders(c->s);
    model_add(&m, NSTREAMS - 1, NTYPES - 1);
    populate(c->s, &m, 300, &rs);
    cp_close(c);  /* a checkpoint covers these */
    /* the child appends more, then dies without closing: the indexes' tail is not checkpointed */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        evs_store *s = NULL;
        if (evs_open(c->dir, &c->opt, &s) != 0) _exit(2);
        for (int i = 0; i < 250; i++) {
            evs_event_in in = {.stream = streams[i % NSTREAMS], .type = types[i % NTYPES],
                               .expected_version = EVS_EXPECT_ANY};
            if (evs_append_multi(s, &in, 1, NULL, NULL, NULL) != 0) _exit(3);
        }
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    for (int i = 0; i < 250; i++) model_add(&m, (int)(i % NSTREAMS), (int)(i % NTYPES));
    cp_open(c);
    assert_int_equal(evs_position(c->s), m.n);
    evs_projection_info *info = NULL;
    assert_int_equal(evs_projection_get(c->s, "orders", &info), 0);
    assert_int_equal(info->covered, m.n);  /* caught up at open: the tail recovery read */
    evs_free(info);
    check_orders(c->s, &m);
    free(m.ev);
}

/* ---- a projection over an existing log; definitions racing appends ---- */

static void test_defined_after_10k_events(void **state)
{
    cp *c = *state;
    evs_store *s = c->s;
    uint64_t rs = evs_test_seed() ^ 5;
    model m = {0};
    populate(s, &m, 10000, &rs);
    define_orders(s);
    model_add(&m, NSTREAMS - 1, NTYPES - 1);
    uint64_t *want = calloc(m.n, sizeof *want);
    size_t nw = model_matches(&m, orders_types, 2, "orders/", 1, m.n, want);
    assert_true(nw > 1000);
    uint64_t *got = calloc(m.n, sizeof *got);
    evs_read_options ro = cp_proj_ro("orders");
    assert_positions(got, cp_read_positions(s, &ro, got, m.n), want, nw);
    cp_wait_built(s, "orders");
    evs_projection_info *info = NULL;
    assert_int_equal(evs_projection_get(s, "orders", &info), 0);
    assert_int_equal(info->indexed, nw);
    assert_int_equal(info->covered, m.n);
    evs_free(info);
    assert_positions(got, cp_read_positions(s, &ro, got, m.n), want, nw);
    ro.backward = 1;
    ro.limit = 3;
    assert_int_equal(cp_read_positions(s, &ro, got, m.n), 3);
    assert_int_equal(got[0], want[nw - 1]);
    assert_int_equal(got[2], want[nw - 3]);
    cp_reopen(c);
    ro = cp_proj_ro("orders");
    assert_positions(got, cp_read_positions(c->s, &ro, got, m.n), want, nw);
    free(want);
    free(got);
    free(m.ev);
}

typedef struct racer { evs_store *s; uint64_t seed; int n; } racer;

static void *race_thread(void *arg)
{
    racer *r = arg;
    uint64_t rs = r->seed;
    for (int i = 0; i < r->n; i++) {
        evs_event_in in[3];
        size_t k = (size_t)evs_test_rand_range(&rs, 1, 3);
        for (size_t j = 0; j < k; j++)
            in[j] = (evs_event_in){.stream = streams[evs_test_rand_range(&rs, 0, NSTREAMS - 1)],
                                   .type = types[evs_test_rand_range(&rs, 0, NTYPES - 1)],
                                   .expected_version = EVS_EXPECT_ANY};
        if (evs_append_multi(r->s, in, k, NULL, NULL, NULL) != 0) return "append";
    }
    return NULL;
}

/* The index built while appends continue equals a scan of the log. */
static void test_define_during_appends(void **state)
{
    cp *c = *state;
    evs_store *s = c->s;
    racer r[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        r[i] = (racer){s, evs_test_seed() + (uint64_t)i * 7919, 1500};
        assert_int_equal(pthread_create(&t[i], NULL, race_thread, &r[i]), 0);
    }
    evs_wait(s, 500, CP_WAIT_MS, NULL);
    define_orders(s);
    const char *const ut[] = {"UserCreated", "Other"};
    evs_filter uf = {ut, 2, NULL};
    assert_int_equal(evs_projection_define(s, "mixed", &uf, NULL), 0);
    for (int i = 0; i < 3; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        assert_null(ret);
    }
    cp_wait_built(s, "orders");
    cp_wait_built(s, "mixed");
    const char *names[] = {"orders", "mixed"};
    evs_filter fs[] = {{orders_types, 2, "orders/"}, {ut, 2, NULL}};
    for (int k = 0; k < 2; k++) {
        /* the same filter as a global read */
        evs_read_options g;
        evs_read_options_init(&g);
        g.filter = fs[k];
        evs_read_options pr = cp_proj_ro(names[k]);
        char *a = cp_read_text(s, &g), *b = cp_read_text(s, &pr);
        assert_string_equal(a, b);
        free(a);
        free(b);
        evs_projection_info *info = NULL;
        assert_int_equal(evs_projection_get(s, names[k], &info), 0);
        uint64_t n = 0;
        evs_iter *it = NULL;
        assert_int_equal(evs_iter_open(s, &g, &it), 0);
        for (;;) {
            const evs_event *ev = NULL;
            assert_int_equal(evs_iter_next(it, &ev), 0);
            if (!ev) break;
            n++;
        }
        evs_iter_close(it);
        assert_int_equal(info->indexed, n);
        evs_free(info);
    }
}

/* ---- deletion ---- */

static void test_delete_and_redefine(void **state)
{
    cp *c = *state;
    evs_store *s = c->s;
    cp_append(s, "orders/1", "OrderPlaced", NULL);
    cp_append(s, "orders/1", "Other", NULL);
    define_orders(s);
    cp_wait_built(s, "orders");
    assert_int_equal(cp_count_prefix(c->dir, "projection-"), 1);
    evs_read_options ro = cp_proj_ro("orders");
    evs_iter *open_it = NULL;
    assert_int_equal(evs_iter_open(s, &ro, &open_it), 0);
    assert_int_equal(evs_projection_delete(s, "orders"), 0);
    assert_int_equal(evs_projection_delete(s, "orders"), EVS_ENOTFOUND);
    assert_int_equal(cp_count_prefix(c->dir, "projection-"), 0);
    const evs_event *ev = NULL;
    assert_int_equal(evs_iter_next(open_it, &ev), EVS_ENOTFOUND);  /* deleted under it */
    evs_iter_close(open_it);
    evs_projection_info *info = NULL;
    assert_int_equal(evs_projection_get(s, "orders", &info), EVS_ENOTFOUND);
    evs_iter *it = NULL;
    assert_int_equal(evs_iter_open(s, &ro, &it), EVS_ENOTFOUND);
    /* defined again with another filter: built from the whole log */
    const char *const ot[] = {"Other"};
    evs_filter f = {ot, 1, NULL};
    int created = 0;
    assert_int_equal(evs_projection_define(s, "orders", &f, &created), 0);
    assert_int_equal(created, 1);
    uint64_t pos[8];
    assert_int_equal(cp_read_positions(s, &ro, pos, 8), 1);
    assert_int_equal(pos[0], 2);
    cp_wait_built(s, "orders");
    cp_reopen(c);
    assert_int_equal(cp_read_positions(c->s, &ro, pos, 8), 1);
    assert_int_equal(pos[0], 2);
    assert_int_equal(evs_projection_delete(c->s, "orders"), 0);
    cp_reopen(c);
    assert_int_equal(evs_iter_open(c->s, &ro, &it), EVS_ENOTFOUND);
    assert_int_equal(cp_count_prefix(c->dir, "projection-"), 0);
}

/* ---- read-only followers ---- */

static void test_follower_reads_projection(void **state)
{
    cp *c = *state;
    uint64_t rs = evs_test_seed() ^ 6;
    model m = {0};
    populate(c->s, &m, 200, &rs);
    define_orders(c->s);
    model_add(&m, NSTREAMS - 1, NTYPES - 1);
    cp_wait_built(c->s, "orders");
    cp_reopen(c);  /* headers checkpointed */
    evs_options ro_opt = c->opt;
    ro_opt.read_only = 1;
    evs_store *f = NULL;
    assert_int_equal(evs_open(c->dir, &ro_opt, &f), 0);
    check_orders(f, &m);
    /* the writer goes on: the follower sees the new matches too */
    populate(c->s, &m, 100, &rs);
    evs_refresh(f);
    check_orders(f, &m);
    /* a projection the follower never saw defined */
    const char *const ut[] = {"UserCreated"};
    evs_filter uf = {ut, 1, NULL};
    assert_int_equal(evs_projection_define(c->s, "users", &uf, NULL), 0);
    evs_read_options a = cp_proj_ro("users"), g;
    evs_read_options_init(&g);
    g.filter = uf;
    char *x = cp_read_text(f, &a), *y = cp_read_text(c->s, &g);
    assert_string_equal(x, y);
    free(x);
    free(y);
    evs_close(f);
    free(m.ev);
}

/* ---- system streams ---- */

static void test_system_streams_reserved_and_hidden(void **state)
{
    cp *c = *state;
    evs_store *s = c->s;
    evs_event_in in = {.type = "X", .expected_version = EVS_EXPECT_ANY};
    evs_append_result res;
    assert_int_equal(evs_append(s, "$projections/x", EVS_EXPECT_ANY, &in, 1, NULL, &res), EVS_EINVAL);
    assert_non_null(strstr(res.message, "stream names starting with $ are reserved"));
    assert_int_equal(evs_append(s, "$x", EVS_EXPECT_ANY, &in, 1, NULL, &res), EVS_EINVAL);
    evs_event_in two[2] = {{.stream = "ok", .type = "X", .expected_version = EVS_EXPECT_ANY},
                           {.stream = "$consumers/y", .type = "X", .expected_version = EVS_EXPECT_ANY}};
    assert_int_equal(evs_append_multi(s, two, 2, NULL, NULL, &res), EVS_EINVAL);
    assert_int_equal(res.failed_index, 1);
    assert_int_equal(evs_position(s), 0);  /* nothing written */
    /* "$" inside a name is fine */
    cp_append(s, "price$1", "X", NULL);
    cp_append(s, "orders/1", "OrderPlaced", NULL);
    define_orders(s);                                      /* position 3, in $projections/orders */
    assert_int_equal(evs_consumer_create(s, "c1", "{\"stream\":\"orders/1\"}", 21, NULL), 0);  /* 4 */
    cp_append(s, "orders/1", "OrderShipped", NULL);        /* 5 */
    uint64_t pos[16];
    evs_read_options ro;
    evs_read_options_init(&ro);
    size_t n = cp_read_positions(s, &ro, pos, 16);
    assert_int_equal(n, 3);
    assert_int_equal(pos[0], 1);
    assert_int_equal(pos[1], 2);
    assert_int_equal(pos[2], 5);
    ro.backward = 1;
    assert_int_equal(cp_read_positions(s, &ro, pos, 16), 3);
    assert_int_equal(pos[0], 5);
    /* a type filter alone does not reach them either */
    const char *const pd[] = {"ProjectionDefined"};
    evs_read_options_init(&ro);
    ro.filter.types = pd;
    ro.filter.ntypes = 1;
    assert_int_equal(cp_read_positions(s, &ro, pos, 16), 0);
    /* a "$" prefix asks for them */
    ro.filter.stream_prefix = "$projections/";
    assert_int_equal(cp_read_positions(s, &ro, pos, 16), 1);
    assert_int_equal(pos[0], 3);
    evs_read_options_init(&ro);
    ro.filter.stream_prefix = "$";
    assert_int_equal(cp_read_positions(s, &ro, pos, 16), 2);
    /* a stream read names one and sees it */
    evs_read_options_init(&ro);
    ro.stream = "$consumers/c1";
    assert_int_equal(cp_read_positions(s, &ro, pos, 16), 1);
    assert_int_equal(pos[0], 4);
    /* listings hide them unless asked */
    evs_stream_iter *sit = NULL;
    const char *name;
    uint64_t v;
    assert_int_equal(evs_streams_open(s, NULL, &sit), 0);
    int count = 0;
    while (evs_streams_next(sit, &name, &v) == 0 && name) {
        assert_true(name[0] != '$');
        count++;
    }
    evs_streams_close(sit);
    assert_int_equal(count, 2);
    assert_int_equal(evs_streams_open(s, "$", &sit), 0);
    count = 0;
    while (evs_streams_next(sit, &name, &v) == 0 && name) count++;
    evs_streams_close(sit);
    assert_int_equal(count, 2);
    /* append conditions ignore them as global reads do */
    evs_condition cond = {{NULL, 0, NULL}, 5};
    evs_event_in one = {.stream = "z", .type = "X", .expected_version = EVS_EXPECT_ANY};
    assert_int_equal(evs_consumer_checkpoint(s, "c1", 5, NULL, 0), 0);  /* position 6, "$" */
    assert_int_equal(evs_append_multi(s, &one, 1, &cond, NULL, NULL), 0);
}

int main(void)
{
    evs_test_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_define_rules, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_read_forward_backward_live, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_live_iterator_other_thread, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_survives_idx_deletion, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_damaged_index_rebuilt, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_crash_without_close, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_defined_after_10k_events, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_define_during_appends, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_delete_and_redefine, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_follower_reads_projection, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_system_streams_reserved_and_hidden, cp_setup, cp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
