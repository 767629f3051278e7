/*
 * test_store_process.c — the store across processes, on real files:
 *   - a read-only follower in another process sees every event a writer
 *     appends, in order and byte-exact, across segment rolls;
 *   - a second writer (another process, or a second open in this one) gets
 *     EVS_ELOCKED naming the holder; read-only opens work beside the writer
 *     and refuse appends;
 *   - kill -9 rounds: a child appends from several threads, reporting each
 *     acknowledged append through a pipe; the parent SIGKILLs it at a
 *     random moment, reopens, and checks that every acknowledged event is
 *     present and byte-identical, that positions are contiguous, that no
 *     batch is split, that stream versions are contiguous, and that
 *     evs_verify reports nothing. Content is a pure function of the seed
 *     and the event's coordinates, so the parent recomputes it.
 *
 * The parent never holds an open store (so never has extra threads) when it
 * forks. Children never use cmocka: they report through their exit status,
 * and alarm() bounds their life if the parent goes away.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "evstore.h"
#include "io/vfs.h"
#include "store_fixtures.h"
#include "testutil.h"

#define WAIT_MS 60000
#define CHILD_ALARM_S 150

/* ---- pipes ---- */

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* 1 = read n bytes, 0 = end of file first, -1 = error. */
static int read_all(int fd, void *p, size_t n)
{
    char *c = p;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, c + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) return 0;
        got += (size_t)r;
    }
    return 1;
}

/* Wait for a child and describe how it ended. */
static int child_status(pid_t pid, char *desc, size_t cap)
{
    int status = 0;
    pid_t w;
    do w = waitpid(pid, &status, 0); while (w < 0 && errno == EINTR);
    assert_int_equal(w, pid);
    if (WIFEXITED(status)) snprintf(desc, cap, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(desc, cap, "signal %d", WTERMSIG(status));
    else snprintf(desc, cap, "status %d", status);
    return status;
}

/* ---- deterministic content ---- */

typedef struct content {
    char stream[16];
    char type[8];
    char data[400];
    char meta[64];               /* "" = absent */
    uint8_t id[16];
} content;

static uint64_t mix(uint64_t seed, uint64_t a, uint64_t b)
{
    uint64_t st = seed ^ (a * 0x9e3779b97f4a7c15ull) ^ (b * 0xc2b2ae3d27d4eb4full);
    evs_test_rand(&st);
    return evs_test_rand(&st);
}

/* The event at coordinates (key, i): key names the append, i the event in it. */
static void make_content(uint64_t seed, const char *key_json, uint64_t key, unsigned i, content *c)
{
    uint64_t st = mix(seed, key, i);
    uint64_t x = evs_test_rand(&st);
    snprintf(c->stream, sizeof c->stream, "k/%u", (unsigned)(x % 5));
    snprintf(c->type, sizeof c->type, "K%u", (unsigned)(x >> 8) % 3);
    char pad[256];
    size_t plen = (size_t)((x >> 16) % 200);
    static const char alpha[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (size_t k = 0; k < plen; k++) pad[k] = alpha[((x >> (k % 40)) ^ k) % 36];
    pad[plen] = 0;
    snprintf(c->data, sizeof c->data, "{%s,\"i\":%u,\"pad\":\"%s\",\"u\":\"注文😀\",\"f\":129.95}", key_json, i, pad);
    if (x & 1u << 30) snprintf(c->meta, sizeof c->meta, "{\"h\":\"%016" PRIx64 "\"}", evs_test_rand(&st));
    else c->meta[0] = 0;
    uint64_t a = evs_test_rand(&st), b = evs_test_rand(&st);
    memcpy(c->id, &a, 8);
    memcpy(c->id + 8, &b, 8);
    c->id[6] = (uint8_t)((c->id[6] & 0x0F) | 0x40);
    c->id[8] = (uint8_t)((c->id[8] & 0x3F) | 0x80);
}

/* Does ev hold exactly c? A sentence in why if not. */
static int content_equal(const evs_event *ev, const content *c, char *why, size_t cap)
{
    if (strcmp(ev->stream, c->stream)) return snprintf(why, cap, "stream %s, want %s", ev->stream, c->stream), 0;
    if (strcmp(ev->type, c->type)) return snprintf(why, cap, "type %s, want %s", ev->type, c->type), 0;
    if (ev->data_len != strlen(c->data) || memcmp(ev->data, c->data, ev->data_len))
        return snprintf(why, cap, "data %.80s, want %.80s", ev->data, c->data), 0;
    if (c->meta[0] ? !ev->metadata || strcmp(ev->metadata, c->meta) : ev->metadata != NULL)
        return snprintf(why, cap, "metadata %s, want %s", ev->metadata ? ev->metadata : "(absent)",
                        c->meta[0] ? c->meta : "(absent)"), 0;
    if (memcmp(ev->id, c->id, 16)) return snprintf(why, cap, "id differs"), 0;
    return 1;
}

/* ---- follower in another process ---- */

enum { FOLLOW_N = 3000 };

static void follow_content(uint64_t seed, uint64_t p, content *c)
{
    char key[48];
    snprintf(key, sizeof key, "\"p\":%" PRIu64, p);
    make_content(seed, key, p, 0, c);
}

/* Child: open read-only, report ready, then read every event as it comes. */
static int follower_child(const char *dir, uint64_t seed, int ready_fd)
{
    alarm(CHILD_ALARM_S);
    evs_options o;
    evs_options_init(&o);
    o.read_only = 1;
    o.log_level = EVS_LOG_WARN;
    evs_store *s = NULL;
    int rc = evs_open(dir, &o, &s);
    if (rc) { fprintf(stderr, "follower: open: %s\n", evs_errname(rc)); return 10; }
    if (evs_position(s) != 1) { fprintf(stderr, "follower: position %" PRIu64 " at open\n", evs_position(s)); return 11; }
    evs_event_in e = fx_ev("X", NULL);
    if ((rc = evs_append(s, "x", EVS_EXPECT_ANY, &e, 1, NULL, NULL)) != EVS_EREADONLY) {
        fprintf(stderr, "follower: append gave %s\n", evs_errname(rc));
        return 12;
    }
    char r = 'r';
    if (write_all(ready_fd, &r, 1)) return 13;

    evs_read_options ro;
    evs_read_options_init(&ro);
    evs_iter *it = NULL;
    if ((rc = evs_iter_open(s, &ro, &it)) != 0) return 14;
    uint64_t next = 1, versions[5] = {0};
    while (next <= FOLLOW_N + 1) {
        const evs_event *ev = NULL;
        if ((rc = evs_iter_next(it, &ev)) != 0) { fprintf(stderr, "follower: next: %s\n", evs_errname(rc)); return 15; }
        if (!ev) {
            uint64_t now = 0;
            rc = evs_wait(s, next, WAIT_MS, &now);
            if (rc) { fprintf(stderr, "follower: wait for %" PRIu64 ": %s (at %" PRIu64 ")\n", next, evs_errname(rc), now); return 16; }
            continue;
        }
        if (ev->position != next) { fprintf(stderr, "follower: position %" PRIu64 ", want %" PRIu64 "\n", ev->position, next); return 17; }
        if (next > 1) {
            content c;
            char why[256];
            follow_content(seed, next - 1, &c);
            if (!content_equal(ev, &c, why, sizeof why)) { fprintf(stderr, "follower: position %" PRIu64 ": %s\n", next, why); return 18; }
            unsigned k = (unsigned)(c.stream[2] - '0');
            if (ev->version != ++versions[k]) { fprintf(stderr, "follower: %s version %" PRIu64 "\n", c.stream, ev->version); return 19; }
            if (next % 97 == 0) {
                evs_event *byid = NULL;
                if (evs_get(s, c.id, &byid) != 0 || byid->position != next) { fprintf(stderr, "follower: get by id %" PRIu64 "\n", next); return 20; }
                evs_free(byid);
            }
        }
        next++;
    }
    evs_iter_close(it);
    /* the follower's indexes agree: stream versions, stream reads, the list */
    for (unsigned k = 0; k < 5; k++) {
        char name[16];
        snprintf(name, sizeof name, "k/%u", k);
        uint64_t v = 0;
        if (evs_stream_version(s, name, &v) != 0 || v != versions[k]) { fprintf(stderr, "follower: %s at %" PRIu64 "\n", name, v); return 21; }
        ro.stream = name;
        ro.backward = 1;
        if (evs_iter_open(s, &ro, &it) != 0) return 22;
        uint64_t n = 0;
        const evs_event *ev = NULL;
        while (evs_iter_next(it, &ev) == 0 && ev) {
            if (ev->version != versions[k] - n) { evs_iter_close(it); return 23; }
            n++;
        }
        evs_iter_close(it);
        if (n != versions[k]) return 24;
    }
    evs_stats st;
    if (evs_stat(s, &st) || !st.read_only || st.events != FOLLOW_N + 1 || st.streams != 6 || st.segments < 3) {
        fprintf(stderr, "follower: stats read_only=%d events=%" PRIu64 " streams=%" PRIu64 " segments=%" PRIu64 "\n",
                st.read_only, st.events, st.streams, st.segments);
        return 25;
    }
    evs_close(s);
    return 0;
}

static void test_follower_in_another_process(void **state)
{
    fx *f = *state;
    uint64_t seed = evs_test_seed() ^ 0xf011;
    f->opt.segment_size = 64u << 10;
    fx_open(f);
    assert_int_equal(fx_append1(f->s, "seed", EVS_EXPECT_ANY, "Seed", NULL, NULL, NULL), 0);
    fx_close(f);

    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        _exit(follower_child(f->dir, seed, ready[1]));
    }
    close(ready[1]);
    char r = 0;
    int got = read_all(ready[0], &r, 1);
    close(ready[0]);
    if (got != 1) {
        char desc[64];
        child_status(pid, desc, sizeof desc);
        fail_msg("follower did not start (%s)", desc);
    }
    /* the follower is open and waiting: write while it follows */
    fx_open(f);
    uint64_t rs = seed;
    uint64_t p = 0;
    while (p < FOLLOW_N) {
        size_t n = (size_t)evs_test_rand_range(&rs, 1, 8);
        if (p + n > FOLLOW_N) n = FOLLOW_N - p;
        content c[8];
        evs_event_in ev[8];
        for (size_t i = 0; i < n; i++) {
            follow_content(seed, p + 1 + i, &c[i]);
            ev[i] = fx_ev_meta(c[i].type, c[i].data, c[i].meta[0] ? c[i].meta : NULL);
            ev[i].stream = c[i].stream;
            ev[i].id = c[i].id;
        }
        evs_append_result res;
        assert_int_equal(evs_append_multi(f->s, ev, n, NULL, NULL, &res), 0);
        assert_int_equal(res.first_position, p + 2);   /* position 1 is the seed event */
        p += n;
    }
    char desc[64];
    int status = child_status(pid, desc, sizeof desc);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("follower failed: %s", desc);
    fx_close(f);
    assert_int_equal(fx_verify(f->dir), 0);
}

/* ---- a second writer ---- */

static int locked_child(const char *dir, int go_fd, pid_t holder)
{
    alarm(CHILD_ALARM_S);
    char go;
    if (read_all(go_fd, &go, 1) != 1) return 30;
    fx_log lg;
    memset(&lg, 0, sizeof lg);
    pthread_mutex_init(&lg.mu, NULL);
    evs_options o;
    evs_options_init(&o);
    o.log = fx_log_cb;
    o.log_ctx = &lg;
    evs_store *s = NULL;
    int rc = evs_open(dir, &o, &s);
    evs_close(s);
    if (rc != EVS_ELOCKED) { fprintf(stderr, "second writer: %s\n", evs_errname(rc)); return 31; }
    char want[64];
    snprintf(want, sizeof want, "pid %d", (int)holder);
    if (!fx_log_has(&lg, want)) { fprintf(stderr, "second writer: log does not name %s:\n%s", want, lg.text); return 32; }
    /* a read-only open beside the writer works and refuses appends */
    o.read_only = 1;
    s = NULL;
    if ((rc = evs_open(dir, &o, &s)) != 0) { fprintf(stderr, "read-only: %s\n", evs_errname(rc)); return 33; }
    if (evs_position(s) != 2) { evs_close(s); return 34; }
    evs_event_in e = fx_ev("X", NULL);
    rc = evs_append(s, "x", EVS_EXPECT_ANY, &e, 1, NULL, NULL);
    evs_close(s);
    if (rc != EVS_EREADONLY) return 35;
    return 0;
}

static void test_second_writer_is_locked_out(void **state)
{
    fx *f = *state;
    fx_open(f);
    assert_int_equal(fx_append1(f->s, "a", EVS_EXPECT_ANY, "T", NULL, NULL, NULL), 0);
    fx_close(f);
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(go[1]);
        _exit(locked_child(f->dir, go[0], parent));
    }
    close(go[0]);
    fx_open(f);
    assert_int_equal(fx_append1(f->s, "a", EVS_EXPECT_ANY, "T", NULL, NULL, NULL), 0);
    char c = 'g';
    assert_int_equal(write_all(go[1], &c, 1), 0);
    close(go[1]);
    char desc[64];
    int status = child_status(pid, desc, sizeof desc);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail_msg("second-writer child: %s", desc);

    /* a second open in this process is a second writer too */
    evs_store *second = NULL;
    fx_log lg;
    memset(&lg, 0, sizeof lg);
    pthread_mutex_init(&lg.mu, NULL);
    evs_options o = f->opt;
    o.log_ctx = &lg;
    assert_int_equal(evs_open(f->dir, &o, &second), EVS_ELOCKED);
    assert_int_equal(evs_close(second), 0);
    char want[64];
    snprintf(want, sizeof want, "pid %d", (int)getpid());
    assert_true(fx_log_has(&lg, want));
    /* ... and the failed open did not take the first writer's lock away */
    assert_int_equal(fx_append1(f->s, "a", EVS_EXPECT_ANY, "T", NULL, NULL, NULL), 0);
    second = NULL;
    assert_int_equal(evs_open(f->dir, &o, &second), EVS_ELOCKED);
    evs_close(second);
    /* a read-only open in this process follows the writer */
    o.read_only = 1;
    evs_store *ro = NULL;
    assert_int_equal(evs_open(f->dir, &o, &ro), 0);
    assert_int_equal(evs_position(ro), 3);
    assert_int_equal(fx_append1(f->s, "b", EVS_EXPECT_ANY, "T", "{\"x\":1}", NULL, NULL), 0);
    uint64_t now = 0;
    assert_int_equal(evs_wait(ro, 4, WAIT_MS, &now), 0);
    evs_event *ev = NULL;
    assert_int_equal(evs_get_at(ro, 4, &ev), 0);
    assert_string_equal(ev->stream, "b");
    assert_string_equal(ev->data, "{\"x\":1}");
    evs_free(ev);
    assert_int_equal(fx_append1(ro, "b", EVS_EXPECT_ANY, "T", NULL, NULL, NULL), EVS_EREADONLY);
    evs_stats st;
    assert_int_equal(evs_stat(ro, &st), 0);
    assert_int_equal(st.read_only, 1);
    assert_int_equal(evs_close(ro), 0);
    pthread_mutex_destroy(&lg.mu);
    /* once the writer closes, another may open */
    fx_close(f);
    fx_open(f);
    assert_int_equal(evs_position(f->s), 4);
}

/* ---- followers while the writer rolls segments ---- */

typedef struct roller {
    evs_store *s;
    atomic_int stop;
    int rc;
} roller;

/* Appends 4 KiB events until told to stop: with 64 KiB segments, a roll every 16. */
static void *roller_main(void *arg)
{
    roller *r = arg;
    static char data[4003];
    data[0] = '"';
    memset(data + 1, 'x', 4000);
    data[4001] = '"';
    data[4002] = 0;
    while (!atomic_load(&r->stop) && r->rc == 0)
        r->rc = fx_append1(r->s, "roll", EVS_EXPECT_ANY, "Roll", data, NULL, NULL);
    return NULL;
}

static void start_roller(fx *f, roller *r, pthread_t *t)
{
    f->opt.segment_size = 64u << 10;
    f->opt.sync = EVS_SYNC_NEVER;
    fx_open(f);
    assert_int_equal(fx_append1(f->s, "roll", EVS_EXPECT_ANY, "Roll", NULL, NULL, NULL), 0);
    r->s = f->s;
    atomic_init(&r->stop, 0);
    r->rc = 0;
    assert_int_equal(pthread_create(t, NULL, roller_main, r), 0);
}

static void stop_roller(roller *r, pthread_t t)
{
    atomic_store(&r->stop, 1);
    pthread_join(t, NULL);
    assert_int_equal(r->rc, 0);
}

/* A read-only open while the writer keeps creating segments always succeeds:
 * the offsets file is created before its segment, and a follower leaves
 * alone segments past the writer's published position. */
static void test_read_only_open_during_rolls(void **state)
{
    fx *f = *state;
    roller r;
    pthread_t t;
    start_roller(f, &r, &t);
    evs_options o;
    evs_options_init(&o);
    o.read_only = 1;
    o.log_level = EVS_LOG_ERROR;
    o.log = fx_log_cb;
    o.log_ctx = &f->log;
    unsigned opens = 0, failures = 0;
    int first_rc = 0;
    evs_stats st;
    do {
        evs_store *ro = NULL;
        int rc = evs_open(f->dir, &o, &ro);
        opens++;
        if (rc) { failures++; if (!first_rc) first_rc = rc; }
        else if (evs_position(ro) == 0) failures++;
        evs_close(ro);
        assert_int_equal(evs_stat(f->s, &st), 0);
    } while (st.segments < 40 && r.rc == 0);
    stop_roller(&r, t);
    if (failures)
        fail_msg("%u of %u read-only opens during %" PRIu64 " segment rolls failed (first: %s)", failures, opens,
                 st.segments - 1, evs_errname(first_rc));
}

/* The deterministic case behind the test above: the writer creates the next
 * segment file first and writes its 64-byte header after, so a read-only
 * open can find a last segment with no header yet (empty, or part of one).
 * It must open without it, leaving it alone; the writer's own open deletes
 * it as the trace of a crash during creation. (The read-only open used to
 * refuse the store as corrupt: "segment header is incomplete"; found when
 * the test above failed about once in ten runs on a loaded machine.) */
static void test_read_only_open_beside_segment_being_created(void **state)
{
    fx *f = *state;
    f->opt.segment_size = 64 << 10;
    fx_open(f);
    evs_event_in e;
    memset(&e, 0, sizeof e);
    e.type = "T";
    for (int i = 0; i < 5; i++) assert_int_equal(evs_append(f->s, "s", EVS_EXPECT_ANY, &e, 1, NULL, NULL), 0);
    assert_int_equal(evs_close(f->s), 0);
    f->s = NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s/%020d.seg", f->dir, 6);
    for (int len = 0; len <= 64; len += 32) {
        FILE *fp = fopen(path, "wb");
        assert_non_null(fp);
        static const char junk[64] = "EVSSEG partial header";
        if (len) assert_int_equal(fwrite(junk, 1, (size_t)(len < 64 ? len : 63), fp), (size_t)(len < 64 ? len : 63));
        fclose(fp);
        evs_options o;
        evs_options_init(&o);
        o.read_only = 1;
        o.log_level = EVS_LOG_ERROR;
        o.log = fx_log_cb;
        o.log_ctx = &f->log;
        evs_store *ro = NULL;
        int rc = evs_open(f->dir, &o, &ro);
        if (rc != 0) fail_msg("read-only open beside a segment with %d header bytes: %s", len < 64 ? len : 63, evs_errname(rc));
        if (evs_position(ro) != 5) fail_msg("read-only open: position %" PRIu64 ", expected 5", evs_position(ro));
        evs_close(ro);
        assert_int_equal(access(path, F_OK), 0); /* a reader never removes anything */
    }
    fx_open(f); /* the writer's open removes it: created but never written */
    assert_int_equal(evs_position(f->s), 5);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(evs_append(f->s, "s", EVS_EXPECT_ANY, &e, 1, NULL, NULL), 0);
}

/* evs_refresh on a follower succeeds while the writer rolls segments: a
 * segment being created is picked up at a later refresh, not reported. */
static void test_refresh_during_rolls(void **state)
{
    fx *f = *state;
    roller r;
    pthread_t t;
    start_roller(f, &r, &t);
    evs_options o;
    evs_options_init(&o);
    o.read_only = 1;
    o.log_level = EVS_LOG_ERROR;
    evs_store *ro = NULL;
    assert_int_equal(evs_open(f->dir, &o, &ro), 0);
    unsigned calls = 0, failures = 0;
    int first_rc = 0;
    evs_stats st;
    do {
        int rc = evs_refresh(ro);
        calls++;
        if (rc) { failures++; if (!first_rc) first_rc = rc; }
        assert_int_equal(evs_stat(f->s, &st), 0);
    } while (st.segments < 120 && r.rc == 0);
    stop_roller(&r, t);
    uint64_t now = 0;
    assert_int_equal(evs_wait(ro, evs_position(f->s), WAIT_MS, &now), 0);
    evs_close(ro);
    if (failures)
        fail_msg("%u of %u evs_refresh calls during %" PRIu64 " segment rolls failed (first: %s)", failures, calls,
                 st.segments - 1, evs_errname(first_rc));
}

/* Appends n 4 KiB events to the writer (a roll every 16 with 64 KiB segments). */
static void append_big(evs_store *w, unsigned n)
{
    static char data[4003];
    data[0] = '"';
    memset(data + 1, 'x', 4000);
    data[4001] = '"';
    data[4002] = 0;
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(fx_append1(w, "roll", EVS_EXPECT_ANY, "Roll", data, NULL, NULL), 0);
}

/* The state a roll passes through, built on disk: the writer published P,
 * created the offsets file of segment P + 1 and the segment file, and has
 * not written the segment's header yet. A read-only open sees position P
 * (the segment holds nothing published); it used to refuse the store as
 * corrupt ("segment header is incomplete"). Damage below P is still refused. */
static void test_read_only_open_mid_roll(void **state)
{
    fx *f = *state;
    f->opt.segment_size = 64u << 10;
    fx_open(f);
    append_big(f->s, 20);  /* two segments */
    uint64_t p = evs_position(f->s);
    fx_close(f);
    char name[64], path[4200];
    for (int k = 0; k < 2; k++) {  /* the offsets file (header only, as created), then the empty segment */
        snprintf(name, sizeof name, k ? "%020" PRIu64 ".seg" : "%020" PRIu64 ".offsets.idx", p + 1);
        snprintf(path, sizeof path, "%s/%s", f->dir, name);
        FILE *fp = fopen(path, "wb");
        assert_non_null(fp);
        if (!k) { static const char hdr[32] = "EVSOFFS"; fwrite(hdr, 1, sizeof hdr, fp); }
        fclose(fp);
    }
    evs_options o;
    evs_options_init(&o);
    o.read_only = 1;
    o.log = fx_log_cb;
    o.log_ctx = &f->log;
    evs_store *ro = NULL;
    int rc = evs_open(f->dir, &o, &ro);
    if (rc) fprintf(stderr, "%s", f->log.text);
    assert_int_equal(rc, 0);
    assert_int_equal(evs_position(ro), p);
    assert_int_equal(evs_refresh(ro), 0);  /* and a refresh leaves it alone too */
    assert_int_equal(evs_position(ro), p);
    evs_close(ro);
    /* real damage in a segment holding published records is still reported */
    snprintf(path, sizeof path, "%s/%020d.seg", f->dir, 1);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fputc('X', fp);
    fclose(fp);
    ro = NULL;
    assert_int_equal(evs_open(f->dir, &o, &ro), EVS_ECORRUPT);
    evs_close(ro);
}

/* A vfs whose list_dir, once armed, lets the writer go on right after the
 * listing: it appends past a roll and closes, which writes a checkpoint
 * naming a segment the listing did not see. */
typedef struct late_ctx { fx *f; int armed; } late_ctx;
static late_ctx g_late;

static int late_list_dir(const evs_vfs *vfs, const char *path, int (*cb)(void *, const char *), void *cbctx)
{
    (void)vfs;
    const evs_vfs *px = evs__vfs_posix();
    int rc = px->list_dir(px, path, cb, cbctx);
    if (g_late.armed) {
        g_late.armed = 0;
        append_big(g_late.f->s, 20);
        fx_close(g_late.f);  /* the final checkpoint */
    }
    return rc;
}

/* The index thread writes checkpoint.idx after the writer rolled past the
 * segments a follower listed: the follower's open must not take the
 * checkpoint it then reads for a log that "no longer holds" its position
 * (it used to refuse: indexes missing or damaged). */
static void test_read_only_open_checkpoint_after_listing(void **state)
{
    fx *f = *state;
    f->opt.segment_size = 64u << 10;
    fx_open(f);
    append_big(f->s, 4);
    fx_reopen(f);  /* a checkpoint at 4 */
    uint64_t p = evs_position(f->s);
    evs_vfs late = *evs__vfs_posix();
    late.name = "late";
    late.list_dir = late_list_dir;
    g_late.f = f;
    g_late.armed = 1;
    evs_options o;
    evs_options_init(&o);
    o.read_only = 1;
    o.vfs = &late;
    o.log = fx_log_cb;
    o.log_ctx = &f->log;
    evs_store *ro = NULL;
    int rc = evs_open(f->dir, &o, &ro);
    if (rc) fprintf(stderr, "%s", f->log.text);
    assert_int_equal(rc, 0);
    assert_false(g_late.armed);
    assert_true(evs_position(ro) >= p);
    uint64_t now = 0;
    assert_int_equal(evs_wait(ro, p + 20, WAIT_MS, &now), 0);  /* and it follows to the end */
    assert_int_equal(now, p + 20);
    evs_close(ro);
}

/* ---- kill -9 rounds ---- */

enum { KILL_ROUNDS = 24, MAX_THREADS = 3, MAX_BATCH = 6 };

/* One acknowledged append, as the child reports it. n = 0: "opened". */
typedef struct ack {
    uint64_t first;
    uint32_t round, thread, counter, n;
} ack;

static void kill_key(unsigned r, unsigned t, unsigned c, unsigned n, char *json, size_t cap, uint64_t *key)
{
    snprintf(json, cap, "\"r\":%u,\"t\":%u,\"c\":%u,\"n\":%u", r, t, c, n);
    *key = (uint64_t)r << 48 | (uint64_t)t << 40 | c;
}

static unsigned batch_size(uint64_t seed, unsigned r, unsigned t, unsigned c)
{
    return 1 + (unsigned)(mix(seed ^ 0xba7c, (uint64_t)r << 8 | t, c) % MAX_BATCH);
}

typedef struct kchild {
    evs_store *s;
    uint64_t seed;
    unsigned round, thread;
    int fd;
} kchild;

static void *kchild_main(void *arg)
{
    kchild *k = arg;
    for (unsigned c = 0;; c++) {
        unsigned n = batch_size(k->seed, k->round, k->thread, c);
        content ct[MAX_BATCH];
        evs_event_in ev[MAX_BATCH];
        char json[96];
        uint64_t key;
        kill_key(k->round, k->thread, c, n, json, sizeof json, &key);
        for (unsigned i = 0; i < n; i++) {
            make_content(k->seed, json, key, i, &ct[i]);
            ev[i] = fx_ev_meta(ct[i].type, ct[i].data, ct[i].meta[0] ? ct[i].meta : NULL);
            ev[i].stream = ct[i].stream;
            ev[i].id = ct[i].id;
        }
        evs_append_result res;
        int rc = evs_append_multi(k->s, ev, n, NULL, NULL, &res);
        if (rc) { fprintf(stderr, "kill child: append: %s (%s)\n", evs_errname(rc), res.message); _exit(41); }
        ack a = {res.first_position, k->round, k->thread, c, n};
        if (write_all(k->fd, &a, sizeof a)) _exit(42);
    }
    return NULL;
}

static void kill_child(const char *dir, uint64_t seed, unsigned round, unsigned nthreads, evs_sync_mode sync, int fd)
{
    alarm(CHILD_ALARM_S);
    evs_options o;
    evs_options_init(&o);
    o.segment_size = 64u << 10;
    o.sync = sync;
    o.sync_interval_ms = 2;
    o.checkpoint_interval = 64;
    o.log_level = EVS_LOG_ERROR;
    evs_store *s = NULL;
    int rc = evs_open(dir, &o, &s);
    if (rc) { fprintf(stderr, "kill child: open: %s\n", evs_errname(rc)); _exit(40); }
    ack opened = {evs_position(s), round, 0, 0, 0};
    if (write_all(fd, &opened, sizeof opened)) _exit(42);
    kchild k[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    for (unsigned t = 0; t < nthreads; t++) {
        k[t] = (kchild){s, seed, round, t, fd};
        if (pthread_create(&th[t], NULL, kchild_main, &k[t]) != 0) _exit(43);
    }
    for (unsigned t = 0; t < nthreads; t++) pthread_join(th[t], NULL);
    _exit(44);  /* not reached: the threads append until killed */
}

/* What the parent knows from every round so far. */
typedef struct kstate {
    uint64_t seed;
    uint64_t acked_end;          /* highest acknowledged position of all rounds */
    uint64_t versions[5];        /* (recomputed each check) */
    uint64_t truncated;          /* bytes recovery dropped, over all rounds */
} kstate;

/* Check the whole log against the content function; returns the position. */
static uint64_t check_killed_log(evs_store *s, kstate *ks, const ack *acks, size_t nacks)
{
    uint64_t end = evs_position(s);
    if (end < ks->acked_end) fail_msg("log ends at %" PRIu64 ", acknowledged up to %" PRIu64, end, ks->acked_end);
    char why[256];
    /* each acknowledged append of this round, by position */
    for (size_t a = 0; a < nacks; a++) {
        if (!acks[a].n) continue;
        char json[96];
        uint64_t key;
        kill_key(acks[a].round, acks[a].thread, acks[a].counter, acks[a].n, json, sizeof json, &key);
        for (unsigned i = 0; i < acks[a].n; i++) {
            evs_event *ev = NULL;
            int rc = evs_get_at(s, acks[a].first + i, &ev);
            if (rc) fail_msg("acknowledged position %" PRIu64 ": %s", acks[a].first + i, evs_errname(rc));
            content c;
            make_content(ks->seed, json, key, i, &c);
            if (!content_equal(ev, &c, why, sizeof why))
                fail_msg("acknowledged position %" PRIu64 ": %s", acks[a].first + i, why);
            evs_free(ev);
        }
    }
    /* the whole log: contiguous, whole batches, per-thread order, versions */
    evs_read_options ro;
    evs_read_options_init(&ro);
    evs_iter *it = NULL;
    assert_int_equal(evs_iter_open(s, &ro, &it), 0);
    memset(ks->versions, 0, sizeof ks->versions);
    uint64_t p = 0;
    unsigned cur_r = 0, cur_t = 0, cur_c = 0, cur_i = 0, cur_n = 1;  /* "a complete batch" */
    unsigned next_c[KILL_ROUNDS][MAX_THREADS];
    memset(next_c, 0, sizeof next_c);
    for (;;) {
        const evs_event *ev = NULL;
        assert_int_equal(evs_iter_next(it, &ev), 0);
        if (!ev) break;
        if (ev->position != ++p) fail_msg("position %" PRIu64 " follows %" PRIu64, ev->position, p - 1);
        unsigned r, t, c, n, i;
        if (sscanf(ev->data, "{\"r\":%u,\"t\":%u,\"c\":%u,\"n\":%u,\"i\":%u,", &r, &t, &c, &n, &i) != 5 ||
            r >= KILL_ROUNDS || t >= MAX_THREADS || n == 0 || n > MAX_BATCH || i >= n)
            fail_msg("position %" PRIu64 ": not written by this test: %.100s", p, ev->data);
        char json[96];
        uint64_t key;
        kill_key(r, t, c, n, json, sizeof json, &key);
        content ct;
        make_content(ks->seed, json, key, i, &ct);
        if (!content_equal(ev, &ct, why, sizeof why)) fail_msg("position %" PRIu64 ": %s", p, why);
        if (n != batch_size(ks->seed, r, t, c)) fail_msg("position %" PRIu64 ": batch size %u", p, n);
        if (i == 0) {
            if (cur_i + 1 != cur_n) fail_msg("position %" PRIu64 ": the previous batch has %u of %u events", p, cur_i + 1, cur_n);
            if (c != next_c[r][t]) fail_msg("position %" PRIu64 ": round %u thread %u append %u, want %u", p, r, t, c, next_c[r][t]);
            next_c[r][t] = c + 1;
            cur_r = r; cur_t = t; cur_c = c; cur_i = 0; cur_n = n;
        } else if (r != cur_r || t != cur_t || c != cur_c || i != cur_i + 1) {
            fail_msg("position %" PRIu64 ": batch split or interleaved (%.60s)", p, ev->data);
        } else {
            cur_i = i;
        }
        unsigned k = (unsigned)(ev->stream[2] - '0');
        if (ev->version != ++ks->versions[k]) fail_msg("position %" PRIu64 ": %s version %" PRIu64, p, ev->stream, ev->version);
    }
    evs_iter_close(it);
    if (p && cur_i + 1 != cur_n) fail_msg("the last batch has %u of %u events", cur_i + 1, cur_n);
    assert_int_equal(p, end);
    for (unsigned k = 0; k < 5; k++) {
        char name[16];
        snprintf(name, sizeof name, "k/%u", k);
        uint64_t v = 0;
        assert_int_equal(evs_stream_version(s, name, &v), 0);
        assert_int_equal(v, ks->versions[k]);
    }
    return end;
}

static void test_kill9_rounds(void **state)
{
    fx *f = *state;
    kstate ks = {.seed = evs_test_seed() ^ 0x4b111};
    uint64_t rs = ks.seed;
    const size_t max_acks = 4096;
    ack *acks = calloc(max_acks, sizeof *acks);
    assert_non_null(acks);
    unsigned killed_early = 0;
    for (unsigned round = 0; round < KILL_ROUNDS; round++) {
        unsigned nthreads = 1 + (unsigned)evs_test_rand_range(&rs, 0, MAX_THREADS - 1);
        evs_sync_mode sync = (evs_sync_mode)(round % 3);
        /* 0: at once (maybe inside open/recovery); else after that many reports */
        uint64_t kill_after = evs_test_rand_range(&rs, 0, 7) == 0 ? 0 : evs_test_rand_range(&rs, 1, 100);
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            kill_child(f->dir, ks.seed, round, nthreads, sync, fds[1]);
        }
        close(fds[1]);
        size_t nacks = 0;
        int eof = 0;
        while (nacks < kill_after) {
            int rc = read_all(fds[0], &acks[nacks], sizeof *acks);
            if (rc != 1) { eof = 1; break; }
            nacks++;
        }
        /* a little random extra time, so the kill lands anywhere in an append */
        volatile uint64_t spin = evs_test_rand_range(&rs, 0, 200000);
        while (spin) spin = spin - 1;
        kill(pid, SIGKILL);
        while (!eof && nacks < max_acks && read_all(fds[0], &acks[nacks], sizeof *acks) == 1) nacks++;
        close(fds[0]);
        char desc[64];
        int status = child_status(pid, desc, sizeof desc);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            fail_msg("round %u: the child ended by itself (%s) after %zu reports", round, desc, nacks);
        if (eof) fail_msg("round %u: the child closed its pipe after %zu reports", round, nacks);
        if (kill_after == 0) killed_early++;
        for (size_t a = 0; a < nacks; a++) {
            if (acks[a].round != round) fail_msg("round %u: report from round %u", round, acks[a].round);
            if (acks[a].n && acks[a].first + acks[a].n - 1 > ks.acked_end) ks.acked_end = acks[a].first + acks[a].n - 1;
        }
        fx_open(f);
        evs_stats st;
        assert_int_equal(evs_stat(f->s, &st), 0);
        ks.truncated += st.recovered_truncated_bytes;
        uint64_t end = check_killed_log(f->s, &ks, acks, nacks);
        fprintf(stderr, "round %2u: %u thread(s), sync %d, %3zu reports, log ends at %6" PRIu64
                ", acknowledged %6" PRIu64 ", torn bytes dropped %" PRIu64 "\n",
                round, nthreads, (int)sync, nacks, end, ks.acked_end, st.recovered_truncated_bytes);
        fx_close(f);
        uint64_t problems = fx_verify(f->dir);
        if (problems) fail_msg("round %u: verify finds %" PRIu64 " problems", round, problems);
    }
    /* the rounds did real work */
    assert_true(ks.acked_end > 100);
    (void)killed_early;
    free(acks);
}

int main(void)
{
    fx_main_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_follower_in_another_process, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_second_writer_is_locked_out, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_kill9_rounds, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_read_only_open_during_rolls, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_read_only_open_beside_segment_being_created, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refresh_during_rolls, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_read_only_open_mid_roll, fx_setup_closed, fx_teardown),
        cmocka_unit_test_setup_teardown(test_read_only_open_checkpoint_after_listing, fx_setup_closed, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
