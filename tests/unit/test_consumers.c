/*
 * test_consumers.c — durable consumers through the public API, on real
 * files: creation rules (new = position 0, state null; idempotent; conflict;
 * bad definitions), checkpoints (position and state read back together,
 * state kept/cleared/replaced, bytes kept exactly, bounds), the events after
 * a checkpoint for every kind of definition (stream, prefix, types,
 * projection), live; deletion and re-creation; surviving reopen, deletion
 * of every *.idx, and SIGKILL in the middle of a checkpoint loop (position
 * and state always a pair); concurrent checkpoints from several threads.
 */
#include <signal.h>
#include <sys/wait.h>

#include "test_cp_common.h"

static int create(evs_store *s, const char *name, const char *def, int *created)
{
    return evs_consumer_create(s, name, def, strlen(def), created);
}

static int checkpoint(evs_store *s, const char *name, uint64_t pos, const char *state)
{
    return evs_consumer_checkpoint(s, name, pos, state, state ? strlen(state) : 0);
}

/* Assert the consumer's position and state (and definition if def != NULL). */
static void expect(evs_store *s, const char *name, uint64_t pos, const char *state, const char *def)
{
    uint64_t p = 99;
    char *st = NULL, *d = NULL;
    assert_int_equal(evs_consumer_get(s, name, &p, &st, def ? &d : NULL), 0);
    assert_int_equal(p, pos);
    assert_string_equal(st, state);
    if (def) assert_string_equal(d, def);
    evs_free(st);
    evs_free(d);
}

/* Positions of the consumer's events after its checkpoint. */
static size_t events_after(evs_store *s, const char *name, uint64_t limit, uint64_t *pos, size_t max)
{
    evs_iter *it = NULL;
    assert_int_equal(evs_consumer_iter_open(s, name, limit, &it), 0);
    size_t n = 0;
    for (;;) {
        const evs_event *ev = NULL;
        assert_int_equal(evs_iter_next(it, &ev), 0);
        if (!ev) break;
        assert_true(n < max);
        pos[n++] = ev->position;
    }
    evs_iter_close(it);
    return n;
}

static void test_create_rules(void **state)
{
    cp *c = *state;
    evs_store *s = c->s;
    int created = -1;
    assert_int_equal(create(s, "c1", "{ \"stream\" : \"orders/1\" }", &created), 0);
    assert_int_equal(created, 1);
    expect(s, "c1", 0, "null", "{\"stream\":\"orders/1\"}");  /* new: position 0, state null */
    assert_int_equal(create(s, "c1", "{\"stream\":\"orders/1\"}", &created), 0);  /* idempotent */
    assert_int_equal(created, 0);
    assert_int_equal(evs_position(s), 1);  /* nothing written the second time */
    assert_int_equal(create(s, "c1", "{\"stream\":\"orders/2\"}", &created), EVS_ECONFLICT);
    /* filters are canonical: types sorted and distinct */
    assert_int_equal(create(s, "c2", "{\"stream_prefix\":\"o/\",\"types\":[\"B\",\"A\",\"B\"]}", NULL), 0);
    expect(s, "c2", 0, "null", "{\"types\":[\"A\",\"B\"],\"stream_prefix\":\"o/\"}");
    assert_int_equal(create(s, "c2", "{\"types\":[\"A\",\"B\"],\"stream_prefix\":\"o/\"}", &created), 0);
    assert_int_equal(created, 0);
    assert_int_equal(create(s, "c3", "{\"types\":[\"A\"]}", NULL), 0);
    assert_int_equal(create(s, "c4", "{\"stream_prefix\":\"\"}", NULL), 0);
    expect(s, "c4", 0, "null", "{\"stream_prefix\":\"\"}");
    /* names: '/' is fine, "$" inside too */
    assert_int_equal(create(s, "team/a$b", "{\"types\":[\"A\"]}", NULL), 0);
    /* bad definitions and names */
    const char *bad[] = {
        "", "{", "[]", "null", "{}", "{\"stream\":\"a\",\"types\":[\"A\"]}", "{\"stream\":\"a\",\"projection\":\"p\"}",
        "{\"types\":[]}", "{\"types\":[\"\"]}", "{\"types\":\"A\"}", "{\"types\":[1]}", "{\"stream\":\"\"}",
        "{\"stream\":1}", "{\"strem\":\"a\"}", "{\"stream\":\"a\",\"stream\":\"b\"}", "{\"stream\":\"a\\u0000\"}",
        "{\"stream\":\"a\\nb\"}", "{\"projection\":\"missing\"}", "{\"stream_prefix\":null}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (create(s, "bad", bad[i], NULL) != EVS_EINVAL) fail_msg("definition %s was accepted", bad[i]);
    assert_int_equal(evs_consumer_create(s, "bad", "{\"stream\":\"a\"}", 5, NULL), EVS_EINVAL);  /* cut short */
    assert_int_equal(create(s, "", "{\"stream\":\"a\"}", NULL), EVS_EINVAL);
    char longname[300];
    memset(longname, 'n', 245);
    longname[245] = 0;
    assert_int_equal(create(s, longname, "{\"stream\":\"a\"}", NULL), EVS_EINVAL);
    longname[244] = 0;
    assert_int_equal(create(s, longname, "{\"stream\":\"a\"}", NULL), 0);
    uint64_t p;
    assert_int_equal(evs_consumer_get(s, "bad", &p, NULL, NULL), EVS_ENOTFOUND);
    assert_int_equal(checkpoint(s, "bad", 0, NULL), EVS_ENOTFOUND);
    assert_int_equal(evs_consumer_delete(s, "bad"), EVS_ENOTFOUND);
    evs_iter *it = NULL;
    assert_int_equal(evs_consumer_iter_open(s, "bad", 0, &it), EVS_ENOTFOUND);
    /* a projection consumer needs the projection */
    const char *const t[] = {"A"};
    evs_filter f = {t, 1, NULL};
    assert_int_equal(evs_projection_define(s, "pa", &f, NULL), 0);
    assert_int_equal(create(s, "c5", "{\"projection\":\"pa\"}", NULL), 0);
    /* user appends cannot touch consumer streams */
    evs_event_in in = {.type = "ConsumerCheckpoint", .data = "{\"position\":0,\"state\":1}", .data_len = 24,
                       .expected_version = EVS_EXPECT_ANY};
    assert_int_equal(evs_append(s, "$consumers/c1", EVS_EXPECT_ANY, &in, 1, NULL, NULL), EVS_EINVAL);
}

static void test_checkpoint_state(void **state)
{
    cp *c = *state;
    evs_store *s = c->s;
    for (int i = 0; i < 10; i++) cp_append(s, "orders/1", "A", NULL);
    assert_int_equal(create(s, "c", "{\"stream\":\"orders/1\"}", NULL), 0);  /* position 11 */
    const char *st = "{ \"total\" : 129.95, \"big\":123456789012345678901234567890, \"s\":\"snow ☃ 🎉 \\u00e9\" }";
    assert_int_equal(checkpoint(s, "c", 4, st), 0);
    expect(s, "c", 4, "{\"total\":129.95,\"big\":123456789012345678901234567890,\"s\":\"snow ☃ 🎉 \\u00e9\"}", NULL);
    assert_int_equal(checkpoint(s, "c", 7, NULL), 0);  /* NULL keeps the state */
    expect(s, "c", 7, "{\"total\":129.95,\"big\":123456789012345678901234567890,\"s\":\"snow ☃ 🎉 \\u00e9\"}", NULL);
    assert_int_equal(checkpoint(s, "c", 8, "[1,2]"), 0);
    expect(s, "c", 8, "[1,2]", "{\"stream\":\"orders/1\"}");
    assert_int_equal(checkpoint(s, "c", 8, "null"), 0);
    expect(s, "c", 8, "null", NULL);
    assert_int_equal(checkpoint(s, "c", 2, "7"), 0);  /* moving back is allowed (reprocess) */
    expect(s, "c", 2, "7", "{\"stream\":\"orders/1\"}");
    uint64_t end = evs_position(s);
    assert_int_equal(checkpoint(s, "c", end, NULL), 0);
    assert_int_equal(checkpoint(s, "c", evs_position(s) + 1, NULL), EVS_EINVAL);  /* beyond the store */
    assert_int_equal(checkpoint(s, "c", 1, "{bad"), EVS_EINVAL);
    assert_int_equal(checkpoint(s, "c", 1, "{\"a\":1,\"a\":2}"), EVS_EINVAL);
    assert_int_equal(evs_consumer_checkpoint(s, "c", 1, "\"\xff\"", 3), EVS_EINVAL);
    expect(s, "c", end, "7", NULL);
    /* a state over the event size limit */
    size_t big = (1u << 20) + 10;
    char *huge = malloc(big + 3);
    huge[0] = '"';
    memset(huge + 1, 'x', big);
    huge[big + 1] = '"';
    huge[big + 2] = 0;
    assert_int_equal(checkpoint(s, "c", 1, huge), EVS_ETOOBIG);
    free(huge);
    expect(s, "c", end, "7", NULL);
    /* the state only needs the caller's pointers during the call; definition and state are NULL-able */
    uint64_t p = 0;
    assert_int_equal(evs_consumer_get(s, "c", &p, NULL, NULL), 0);
    assert_int_equal(p, end);
    /* the checkpoint events are in the consumer's stream */
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.stream = "$consumers/c";
    char *txt = cp_read_text(s, &ro);
    assert_non_null(strstr(txt, "\"type\":\"ConsumerCreated\""));
    assert_non_null(strstr(txt, "\"type\":\"ConsumerCheckpoint\""));
    assert_non_null(strstr(txt, "\"metadata\":{\"created_version\":1}"));
    free(txt);
}

static void test_events_after_checkpoint(void **state)
{
    cp *c = *state;
    evs_store *s = c->s;
    /* 1..12: orders/1 A, orders/2 B, users/1 A, repeated */
    for (int i = 0; i < 4; i++) {
        cp_append(s, "orders/1", "A", NULL);
        cp_append(s, "orders/2", "B", NULL);
        cp_append(s, "users/1", "A", NULL);
    }
    const char *const ta[] = {"A"};
    evs_filter fa = {ta, 1, "orders/"};
    assert_int_equal(evs_projection_define(s, "oa", &fa, NULL), 0);            /* 13 */
    assert_int_equal(create(s, "stream", "{\"stream\":\"orders/2\"}", NULL), 0);     /* 14 */
    assert_int_equal(create(s, "prefix", "{\"stream_prefix\":\"orders/\"}", NULL), 0);
    assert_int_equal(create(s, "types", "{\"types\":[\"A\"]}", NULL), 0);
    assert_int_equal(create(s, "proj", "{\"projection\":\"oa\"}", NULL), 0);
    assert_int_equal(create(s, "all", "{\"stream_prefix\":\"\"}", NULL), 0);    /* 18 */
    uint64_t pos[64];
    size_t n = events_after(s, "stream", 0, pos, 64);
    assert_int_equal(n, 4);
    assert_int_equal(pos[0], 2);
    assert_int_equal(pos[3], 11);
    assert_int_equal(events_after(s, "prefix", 0, pos, 64), 8);
    assert_int_equal(events_after(s, "types", 0, pos, 64), 8);
    assert_int_equal(events_after(s, "proj", 0, pos, 64), 4);
    assert_int_equal(events_after(s, "all", 0, pos, 64), 12);  /* system streams are not events of "all" */
    assert_int_equal(events_after(s, "types", 3, pos, 64), 3);  /* limit */
    /* after a checkpoint: only later events; positions are global for every kind */
    for (const char *const *nm = (const char *const[]){"stream", "prefix", "types", "proj", "all", NULL}; *nm; nm++)
        assert_int_equal(checkpoint(s, *nm, 5, NULL), 0);
    n = events_after(s, "stream", 0, pos, 64);
    assert_int_equal(n, 2);
    assert_int_equal(pos[0], 8);
    n = events_after(s, "prefix", 0, pos, 64);
    assert_int_equal(n, 4);
    assert_int_equal(pos[0], 7);
    n = events_after(s, "types", 0, pos, 64);
    assert_int_equal(n, 5);
    assert_int_equal(pos[0], 6);
    n = events_after(s, "proj", 0, pos, 64);
    assert_int_equal(n, 2);
    assert_int_equal(pos[0], 7);
    assert_int_equal(pos[1], 10);
    assert_int_equal(checkpoint(s, "stream", 11, NULL), 0);
    assert_int_equal(events_after(s, "stream", 0, pos, 64), 0);
    /* a consumer on a stream that does not exist yet, live */
    assert_int_equal(create(s, "later", "{\"stream\":\"later/1\"}", NULL), 0);
    evs_iter *it = NULL, *itp = NULL;
    const evs_event *ev = NULL;
    assert_int_equal(evs_consumer_iter_open(s, "later", 0, &it), 0);
    assert_int_equal(evs_consumer_iter_open(s, "proj", 0, &itp), 0);
    for (int i = 0; i < 2; i++) { assert_int_equal(evs_iter_next(itp, &ev), 0); assert_non_null(ev); }
    assert_int_equal(evs_iter_next(it, &ev), 0);
    assert_null(ev);
    assert_int_equal(evs_iter_next(itp, &ev), 0);
    assert_null(ev);
    uint64_t p1 = cp_append(s, "later/1", "X", "{\"n\":1}");
    uint64_t p2 = cp_append(s, "orders/9", "A", NULL);
    assert_int_equal(evs_iter_next(it, &ev), 0);
    assert_non_null(ev);
    assert_int_equal(ev->position, p1);
    assert_int_equal(evs_iter_next(itp, &ev), 0);
    assert_non_null(ev);
    assert_int_equal(ev->position, p2);
    evs_iter_close(it);
    evs_iter_close(itp);
    /* the projection goes away: its consumer cannot read */
    assert_int_equal(evs_projection_delete(s, "oa"), 0);
    assert_int_equal(evs_consumer_iter_open(s, "proj", 0, &it), EVS_ENOTFOUND);
    uint64_t p = 0;
    assert_int_equal(evs_consumer_get(s, "proj", &p, NULL, NULL), 0);
    assert_int_equal(p, 5);
}

static void test_delete_and_recreate(void **state)
{
    cp *c = *state;
    evs_store *s = c->s;
    cp_append(s, "a", "A", NULL);
    assert_int_equal(create(s, "c", "{\"types\":[\"A\"]}", NULL), 0);
    assert_int_equal(checkpoint(s, "c", 1, "{\"n\":1}"), 0);
    assert_int_equal(evs_consumer_delete(s, "c"), 0);
    assert_int_equal(evs_consumer_delete(s, "c"), EVS_ENOTFOUND);
    uint64_t p;
    assert_int_equal(evs_consumer_get(s, "c", &p, NULL, NULL), EVS_ENOTFOUND);
    assert_int_equal(checkpoint(s, "c", 1, NULL), EVS_ENOTFOUND);
    evs_iter *it = NULL;
    assert_int_equal(evs_consumer_iter_open(s, "c", 0, &it), EVS_ENOTFOUND);
    /* re-created, even with another definition: back at 0, state null */
    int created = 0;
    assert_int_equal(create(s, "c", "{\"stream\":\"a\"}", &created), 0);
    assert_int_equal(created, 1);
    expect(s, "c", 0, "null", "{\"stream\":\"a\"}");
    assert_int_equal(checkpoint(s, "c", 1, "2"), 0);
    expect(s, "c", 1, "2", "{\"stream\":\"a\"}");  /* the definition of this incarnation */
    cp_reopen(c);
    expect(c->s, "c", 1, "2", "{\"stream\":\"a\"}");
}

static void test_survives_reopen_and_idx_deletion(void **state)
{
    cp *c = *state;
    for (int i = 0; i < 50; i++) cp_append(c->s, i % 2 ? "x/1" : "y/1", "A", NULL);
    assert_int_equal(create(c->s, "k1", "{\"stream_prefix\":\"x/\"}", NULL), 0);
    assert_int_equal(create(c->s, "k2", "{\"stream\":\"y/1\"}", NULL), 0);
    assert_int_equal(checkpoint(c->s, "k1", 20, "{\"sum\":10}"), 0);
    assert_int_equal(checkpoint(c->s, "k2", 31, "\"y\""), 0);
    assert_int_equal(evs_consumer_delete(c->s, "k2"), 0);
    assert_int_equal(create(c->s, "k3", "{\"types\":[\"A\"]}", NULL), 0);
    uint64_t pos[64];
    size_t n1 = events_after(c->s, "k1", 0, pos, 64);
    cp_reopen(c);
    expect(c->s, "k1", 20, "{\"sum\":10}", "{\"stream_prefix\":\"x/\"}");
    expect(c->s, "k3", 0, "null", NULL);
    uint64_t p;
    assert_int_equal(evs_consumer_get(c->s, "k2", &p, NULL, NULL), EVS_ENOTFOUND);
    cp_close(c);
    assert_true(cp_unlink_suffix(c->dir, ".idx") > 0);
    cp_open(c);
    expect(c->s, "k1", 20, "{\"sum\":10}", "{\"stream_prefix\":\"x/\"}");
    expect(c->s, "k3", 0, "null", NULL);
    assert_int_equal(evs_consumer_get(c->s, "k2", &p, NULL, NULL), EVS_ENOTFOUND);
    assert_int_equal(events_after(c->s, "k1", 0, pos, 64), n1);
    assert_int_equal(pos[0], 22);
}

/* A child checkpoints in a loop, state {"n":P} with position P, and is killed
 * at a random moment: after recovery the pair always agrees. */
static void test_checkpoint_atomic_across_kill(void **state)
{
    cp *c = *state;
    for (int i = 0; i < 300; i++) cp_append(c->s, "s", "A", NULL);
    assert_int_equal(create(c->s, "k", "{\"stream\":\"s\"}", NULL), 0);
    cp_close(c);
    uint64_t rs = evs_test_seed() ^ 11;
    uint64_t last = 0;
    for (int round = 0; round < 4; round++) {
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            evs_store *s = NULL;
            if (evs_open(c->dir, &c->opt, &s) != 0) _exit(2);
            uint64_t pos = 0;
            for (uint64_t i = 0;; i++) {
                pos = 1 + (i * 7 + (uint64_t)round) % 300;
                char st[128];
                snprintf(st, sizeof st, "{\"n\":%" PRIu64 ",\"pad\":\"%0*d\"}", pos, (int)(pos % 50), 0);
                if (evs_consumer_checkpoint(s, "k", pos, st, strlen(st)) != 0) _exit(3);
                if (i == 20 && write(pfd[1], "x", 1) != 1) _exit(4);  /* under way */
            }
        }
        close(pfd[1]);
        char b;
        assert_int_equal(read(pfd[0], &b, 1), 1);
        struct timespec ts = {0, (long)evs_test_rand_range(&rs, 0, 20) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        close(pfd[0]);
        cp_open(c);
        uint64_t p = 0;
        char *st = NULL;
        assert_int_equal(evs_consumer_get(c->s, "k", &p, &st, NULL), 0);
        char want[128];
        snprintf(want, sizeof want, "{\"n\":%" PRIu64 ",\"pad\":\"%0*d\"}", p, (int)(p % 50), 0);
        assert_string_equal(st, want);
        assert_true(p >= 1 && p <= 300);
        last = p;
        evs_free(st);
        cp_close(c);
    }
    (void)last;
    cp_open(c);
}

/* Threads checkpoint the same consumer at once: every read sees a consistent pair. */
typedef struct cker { evs_store *s; int id; int n; } cker;

static void *ck_thread(void *arg)
{
    cker *k = arg;
    for (int i = 0; i < k->n; i++) {
        uint64_t pos = (uint64_t)(k->id * 1000 + i) % 100 + 1;
        char st[64];
        snprintf(st, sizeof st, "{\"p\":%" PRIu64 ",\"by\":%d}", pos, k->id);
        int rc = evs_consumer_checkpoint(k->s, "shared", pos, st, strlen(st));
        if (rc != 0) {
            fprintf(stderr, "checkpoint: %s\n", evs_errname(rc));
            return "checkpoint";
        }
        uint64_t p = 0;
        char *got = NULL;
        if (evs_consumer_get(k->s, "shared", &p, &got, NULL) != 0) return "get";
        char want[32];
        snprintf(want, sizeof want, "{\"p\":%" PRIu64 ",", p);
        int ok = strncmp(got, want, strlen(want)) == 0;
        evs_free(got);
        if (!ok) return "a position with another position's state";
    }
    return NULL;
}

static void test_concurrent_checkpoints(void **state)
{
    cp *c = *state;
    for (int i = 0; i < 100; i++) cp_append(c->s, "s", "A", NULL);
    assert_int_equal(create(c->s, "shared", "{\"stream\":\"s\"}", NULL), 0);
    cker k[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        k[i] = (cker){c->s, i + 1, 150};
        assert_int_equal(pthread_create(&t[i], NULL, ck_thread, &k[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        if (ret) fail_msg("thread %d: %s", i, (const char *)ret);
    }
    uint64_t version = 0;
    assert_int_equal(evs_stream_version(c->s, "$consumers/shared", &version), 0);
    assert_int_equal(version, 1 + 4 * 150);  /* every checkpoint is one event, none lost */
}

/* Create and delete racing from threads: each call's outcome is one of the allowed ones. */
static void *cd_thread(void *arg)
{
    cker *k = arg;
    for (int i = 0; i < k->n; i++) {
        int rc = (i + k->id) % 2 ? create(k->s, "flip", "{\"types\":[\"A\"]}", NULL)
                                  : evs_consumer_delete(k->s, "flip");
        if (rc != 0 && rc != EVS_ENOTFOUND) return "unexpected result";
    }
    return NULL;
}

static void test_create_delete_race(void **state)
{
    cp *c = *state;
    cker k[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        k[i] = (cker){c->s, i, 100};
        assert_int_equal(pthread_create(&t[i], NULL, cd_thread, &k[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        assert_null(ret);
    }
    /* the stream alternates strictly: never two creates or two deletes in a row */
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.stream = "$consumers/flip";
    evs_iter *it = NULL;
    assert_int_equal(evs_iter_open(c->s, &ro, &it), 0);
    int created = 0;
    for (;;) {
        const evs_event *ev = NULL;
        assert_int_equal(evs_iter_next(it, &ev), 0);
        if (!ev) break;
        int is_create = !strcmp(ev->type, "ConsumerCreated");
        assert_int_equal(is_create, !created);
        created = is_create;
    }
    evs_iter_close(it);
}

static void test_read_only_store(void **state)
{
    cp *c = *state;
    cp_append(c->s, "a", "A", NULL);
    assert_int_equal(create(c->s, "c", "{\"stream\":\"a\"}", NULL), 0);
    cp_close(c);
    c->opt.read_only = 1;
    cp_open(c);
    expect(c->s, "c", 0, "null", "{\"stream\":\"a\"}");
    assert_int_equal(checkpoint(c->s, "c", 1, NULL), EVS_EREADONLY);
    assert_int_equal(create(c->s, "d", "{\"stream\":\"a\"}", NULL), EVS_EREADONLY);
    assert_int_equal(evs_consumer_delete(c->s, "c"), EVS_EREADONLY);
    uint64_t pos[4];
    assert_int_equal(events_after(c->s, "c", 0, pos, 4), 1);
}

int main(void)
{
    evs_test_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_rules, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_state, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_events_after_checkpoint, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_delete_and_recreate, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_survives_reopen_and_idx_deletion, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_atomic_across_kill, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_checkpoints, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_create_delete_race, cp_setup, cp_teardown),
        cmocka_unit_test_setup_teardown(test_read_only_store, cp_setup, cp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
