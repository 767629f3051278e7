/*
 * test_http_concurrency.c — evstored under concurrent clients (SPEC §3, §9):
 *
 *  - the optimistic-concurrency race: 20 clients append with the same
 *    expected_version, round after round; exactly one wins each round; the
 *    same race through the condition of POST /events;
 *  - kill -9 of the server under concurrent appends, several rounds: after
 *    each restart every acknowledged (201) event is there at its
 *    acknowledged position, byte-identical, positions and versions are
 *    contiguous, and no batch is partly visible;
 *  - SIGTERM during appends: exit 0, and everything acknowledged survives.
 *
 * Worker threads never assert (cmocka is not thread-safe): they record what
 * they saw, and the main thread checks after joining them. Random choices
 * (batch sizes, payloads, kill moments) derive from the printed seed.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "../http/http_test.h"

/* Static, not allocated: a setup that fails (cmocka then skips the
 * teardown) must not leak under LeakSanitizer. */
static ht_server the_server;

static int setup(void **state)
{
    ht_server *s = &the_server;
    *state = s;
    ht_server_init(s, NULL);
    ht_server_start(s);
    return 0;
}

static int teardown(void **state)
{
    ht_server_free(*state);
    return 0;
}

/* ------------------------------------------------ expected-version race */

#define RACE_CLIENTS 20

typedef struct racer {
    int idx;
    int rounds;
    uint16_t port;
    pthread_barrier_t *barrier;
    int condition;                   /* race through POST /events with a condition */
    int base;                        /* the log's position before the first round */
    int *status;                     /* [round] HTTP status (0: no answer) */
    char **body;                     /* [round] the answer (owned) */
} racer;

static void *race_main(void *arg)
{
    racer *rc = arg;
    ht_conn c;
    ht_conn_init(&c, rc->port);
    for (int r = 0; r < rc->rounds; r++) {
        pthread_barrier_wait(rc->barrier); /* everyone finished round r-1 */
        char path[64], body[256];
        if (rc->condition) {
            /* the same race through a condition: every client decided on
             * the log up to position base + r; one claim may follow it */
            snprintf(path, sizeof path, "/events");
            snprintf(body, sizeof body,
                     "{\"events\":[{\"stream\":\"seat/%d\",\"type\":\"SeatClaimed\",\"data\":{\"client\":%d,\"round\":%d}}],"
                     "\"condition\":{\"filter\":{\"types\":[\"SeatClaimed\"],\"stream_prefix\":\"seat/\"},\"after\":%d}}",
                     rc->idx, rc->idx, r, rc->base + r);
        } else {
            snprintf(path, sizeof path, "/streams/race?expected_version=%d", r);
            snprintf(body, sizeof body, "{\"type\":\"Claimed\",\"data\":{\"client\":%d,\"round\":%d}}", rc->idx, r);
        }
        ht_resp resp;
        rc->status[r] = ht_conn_request(&c, "POST", path, NULL, body, strlen(body), &resp);
        rc->body[r] = resp.body;
        resp.body = NULL;
        ht_resp_free(&resp);
    }
    ht_conn_close(&c);
    return NULL;
}

static void t_expected_version_race(void **state)
{
    ht_server *s = *state;
    const int rounds = HT_ASAN ? 15 : 30;
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, RACE_CLIENTS);
    racer rc[RACE_CLIENTS];
    pthread_t th[RACE_CLIENTS];
    for (int i = 0; i < RACE_CLIENTS; i++) {
        rc[i] = (racer){.idx = i, .rounds = rounds, .port = s->port, .barrier = &barrier};
        rc[i].status = calloc((size_t)rounds, sizeof *rc[i].status);
        rc[i].body = calloc((size_t)rounds, sizeof *rc[i].body);
        pthread_create(&th[i], NULL, race_main, &rc[i]);
    }
    for (int i = 0; i < RACE_CLIENTS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    int *winner = calloc((size_t)rounds, sizeof *winner);
    for (int r = 0; r < rounds; r++) {
        int wins = 0;
        winner[r] = -1;
        for (int i = 0; i < RACE_CLIENTS; i++) {
            int st = rc[i].status[r];
            const char *b = rc[i].body[r] ? rc[i].body[r] : "";
            if (st == 201) {
                wins++;
                winner[r] = i;
            } else if (st == 409) {
                char want[128];
                snprintf(want, sizeof want, "\"stream\":\"race\",\"expected\":%d,\"actual\":%d}", r, r + 1);
                if (!strstr(b, "\"error\":\"wrong_expected_version\"") || !strstr(b, want))
                    fail_msg("round %d client %d: expected a 409 wrong_expected_version ending %s, got %s", r, i, want, b);
            } else {
                fail_msg("round %d client %d: expected 201 or 409, got %d: %s", r, i, st, b);
            }
        }
        if (wins != 1) fail_msg("round %d (expected_version=%d): expected exactly one 201 among %d clients, got %d", r, r, RACE_CLIENTS, wins);
    }
    /* the stream holds exactly the winners, in order */
    ht_resp resp;
    ht_get(s, "/streams/race", &resp);
    HT_EXPECT_STATUS(&resp, 200, "GET /streams/race");
    char **lines, *store;
    size_t n = ht_lines(resp.body, resp.len, &lines, &store, "GET /streams/race");
    if ((int)n != rounds) fail_msg("stream race: expected %d events (one per round), got %zu", rounds, n);
    for (int r = 0; r < rounds; r++) {
        char want[160];
        snprintf(want, sizeof want, "\"version\":%d,", r + 1);
        if (!strstr(lines[r], want)) fail_msg("race event %d: expected %s in %s", r, want, lines[r]);
        snprintf(want, sizeof want, ",\"data\":{\"client\":%d,\"round\":%d}}", winner[r], r);
        if (!strstr(lines[r], want)) fail_msg("race event %d: expected the winner's data %s, got %s", r, want, lines[r]);
    }
    free(lines);
    free(store);
    ht_resp_free(&resp);
    for (int i = 0; i < RACE_CLIENTS; i++) {
        for (int r = 0; r < rounds; r++) free(rc[i].body[r]);
        free(rc[i].body);
        free(rc[i].status);
    }
    free(winner);
    ht_server_stop(s);
}

/* The condition of POST /events is checked atomically with the append:
 * 20 clients that read the same position each claim with
 * "after": that position; exactly one per round gets through. */
static void t_condition_race(void **state)
{
    ht_server *s = *state;
    json_decref(ht_append_ok(s, "/streams/other", "[{\"type\":\"X\"},{\"type\":\"Y\"}]", "seed"));
    const int base = 2, rounds = HT_ASAN ? 8 : 15;
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, RACE_CLIENTS);
    racer rc[RACE_CLIENTS];
    pthread_t th[RACE_CLIENTS];
    for (int i = 0; i < RACE_CLIENTS; i++) {
        rc[i] = (racer){.idx = i, .rounds = rounds, .port = s->port, .barrier = &barrier, .condition = 1, .base = base};
        rc[i].status = calloc((size_t)rounds, sizeof *rc[i].status);
        rc[i].body = calloc((size_t)rounds, sizeof *rc[i].body);
        pthread_create(&th[i], NULL, race_main, &rc[i]);
    }
    for (int i = 0; i < RACE_CLIENTS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    for (int r = 0; r < rounds; r++) {
        int wins = 0;
        for (int i = 0; i < RACE_CLIENTS; i++) {
            int st = rc[i].status[r];
            const char *b = rc[i].body[r] ? rc[i].body[r] : "";
            if (st == 201) {
                wins++;
                char want[64];
                snprintf(want, sizeof want, "\"first_position\":%d,", base + r + 1);
                if (!strstr(b, want)) fail_msg("condition round %d: the winner should be at position %d: %s", r, base + r + 1, b);
            } else if (st != 409 || !strstr(b, "\"error\":\"condition_failed\"")) {
                fail_msg("condition round %d client %d: expected 201 or 409 condition_failed, got %d: %s", r, i, st, b);
            }
        }
        if (wins != 1) fail_msg("condition round %d (after=%d): expected exactly one 201 among %d clients, got %d", r, base + r, RACE_CLIENTS, wins);
    }
    if (ht_position(s) != (uint64_t)(base + rounds))
        fail_msg("after %d condition rounds the log should end at %d, it ends at %" PRIu64, rounds, base + rounds, ht_position(s));
    for (int i = 0; i < RACE_CLIENTS; i++) {
        for (int r = 0; r < rounds; r++) free(rc[i].body[r]);
        free(rc[i].body);
        free(rc[i].status);
    }
    ht_server_stop(s);
}

/* ------------------------------------------------ appends under crashes */

typedef struct sent_event {
    char id[37];
    char stream[48];
    char *data;                      /* the exact data bytes sent (owned) */
    uint64_t position;               /* acknowledged position, 0 if not acknowledged */
} sent_event;

typedef struct sent_batch {
    size_t first, n;                 /* indexes into the worker's events */
    int acked;                       /* 201 came back */
} sent_batch;

typedef struct worker {
    int idx;
    uint16_t port;
    uint64_t rng;
    atomic_int *stop;
    int allow_503;                   /* during a SIGTERM, 503 unavailable is a fine answer */
    sent_event *ev;
    size_t nev, capev;
    sent_batch *b;
    size_t nb, capb;
    size_t acked_requests;
    char problem[600];               /* the first unexpected thing, for the main thread */
} worker;

static const char *const snippets[] = {
    "plain", "caf\xc3\xa9", "\xf0\x9f\x98\x80", "\xe4\xb8\xad\xe6\x96\x87", "\\u00e9", "\\\"q\\\"", "\\\\", "\\ud83d\\ude80", "tab\\t",
};
static const char *const numbers[] = {"129.95", "12345678901234567890", "-0.0", "1e400", "7", "0.1", "-42"};

static void uuid4(uint64_t *rng, char out[37])
{
    uint8_t b[16];
    evs_test_rand_bytes(rng, b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4],
             b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    ht_conn c;
    ht_conn_init(&c, w->port);
    uint64_t seq = 0;
    while (!atomic_load(w->stop)) {
        size_t n = (size_t)evs_test_rand_range(&w->rng, 1, 8);
        int multi = evs_test_rand_range(&w->rng, 0, 3) == 0; /* 1 in 4 through POST /events */
        int stream_no = (int)evs_test_rand_range(&w->rng, 0, 2);
        if (w->nev + n > w->capev) {
            w->capev = (w->capev + n) * 2;
            w->ev = realloc(w->ev, w->capev * sizeof *w->ev);
        }
        if (w->nb == w->capb) {
            w->capb = w->capb ? w->capb * 2 : 256;
            w->b = realloc(w->b, w->capb * sizeof *w->b);
        }
        size_t cap = 256 + n * 512, len = 0;
        char *body = malloc(cap);
        len += (size_t)snprintf(body + len, cap - len, "[");
        for (size_t i = 0; i < n; i++) {
            sent_event *e = &w->ev[w->nev + i];
            memset(e, 0, sizeof *e);
            uuid4(&w->rng, e->id);
            snprintf(e->stream, sizeof e->stream, "crash/w%d/s%d", w->idx, multi ? (int)((size_t)stream_no + i) % 3 : stream_no);
            char data[400];
            snprintf(data, sizeof data, "{\"w\":%d,\"seq\":%" PRIu64 ",\"s\":\"%s %s\",\"x\":%s,\"pad\":\"%0*d\"}", w->idx, seq++,
                     snippets[evs_test_rand_range(&w->rng, 0, sizeof snippets / sizeof *snippets - 1)],
                     snippets[evs_test_rand_range(&w->rng, 0, sizeof snippets / sizeof *snippets - 1)],
                     numbers[evs_test_rand_range(&w->rng, 0, sizeof numbers / sizeof *numbers - 1)],
                     (int)evs_test_rand_range(&w->rng, 1, 200), 0);
            e->data = strdup(data);
            if (multi)
                len += (size_t)snprintf(body + len, cap - len, "%s{\"id\":\"%s\",\"stream\":\"%s\",\"type\":\"Crash\",\"data\":%s}",
                                        i ? "," : "", e->id, e->stream, e->data);
            else
                len += (size_t)snprintf(body + len, cap - len, "%s{\"id\":\"%s\",\"type\":\"Crash\",\"data\":%s}", i ? "," : "",
                                        e->id, e->data);
        }
        len += (size_t)snprintf(body + len, cap - len, "]");
        char path[96];
        if (multi) snprintf(path, sizeof path, "/events");
        else snprintf(path, sizeof path, "/streams/crash%%2Fw%d%%2Fs%d", w->idx, stream_no);
        sent_batch *b = &w->b[w->nb++];
        b->first = w->nev;
        b->n = n;
        b->acked = 0;
        w->nev += n;
        ht_resp r;
        int st = ht_conn_request(&c, "POST", path, NULL, body, len, &r);
        free(body);
        if (st == 201) {
            json_error_t je;
            json_t *j = json_loadb(r.body, r.len, 0, &je);
            json_t *evs = j ? json_object_get(j, "events") : NULL;
            if (!json_is_array(evs) || json_array_size(evs) != n) {
                if (!w->problem[0]) snprintf(w->problem, sizeof w->problem, "201 with a malformed answer: %.400s", r.body);
            } else {
                uint64_t first = (uint64_t)json_integer_value(json_object_get(j, "first_position"));
                for (size_t i = 0; i < n; i++) {
                    json_t *e = json_array_get(evs, i);
                    sent_event *se = &w->ev[b->first + i];
                    se->position = (uint64_t)json_integer_value(json_object_get(e, "position"));
                    if (se->position != first + i || strcmp(json_string_value(json_object_get(e, "id")), se->id) ||
                        strcmp(json_string_value(json_object_get(e, "stream")), se->stream))
                        if (!w->problem[0])
                            snprintf(w->problem, sizeof w->problem, "201 answer does not match the request (event %zu): %.400s", i, r.body);
                }
                b->acked = 1;
                w->acked_requests++;
            }
            json_decref(j);
        } else if (st == 0 || (st == 503 && w->allow_503)) {
            /* no answer (the server died) or refused while stopping: unknown outcome */
        } else if (!w->problem[0]) {
            snprintf(w->problem, sizeof w->problem, "POST %s: expected 201, got %d: %.400s", path, st, r.body);
        }
        ht_resp_free(&r);
        if (st == 0) ht_sleep_ms(2); /* the server is gone: do not spin */
    }
    ht_conn_close(&c);
    return NULL;
}

/* An index of the served log: id -> line. */
typedef struct served {
    char id[37];
    size_t line;
} served;

static int cmp_served(const void *a, const void *b)
{
    return strcmp(((const served *)a)->id, ((const served *)b)->id);
}

/* After a restart: the whole log is contiguous, versions per stream are
 * contiguous, every acknowledged event is at its position byte-identical,
 * and every batch is all-or-nothing. Returns the number of events served. */
static size_t verify_log(ht_server *s, worker *ws, int nw, const char *when)
{
    ht_resp r;
    ht_get(s, "/events", &r);
    HT_EXPECT_STATUS(&r, 200, "GET /events after restart");
    char **lines, *store;
    size_t n = ht_lines(r.body, r.len, &lines, &store, "GET /events");
    served *idx = calloc(n + 1, sizeof *idx);
    /* per-stream version tracking: few streams, linear search is fine */
    struct { char name[48]; int64_t version; } streams[64];
    int nstreams = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *j = ht_json(lines[i], strlen(lines[i]), when);
        int64_t pos = ht_jint(j, "position", when);
        if (pos != (int64_t)i + 1)
            fail_msg("%s: positions must be contiguous from 1: line %zu has position %" PRId64 "", when, i, pos);
        const char *st = ht_jstr(j, "stream", when);
        int64_t v = ht_jint(j, "version", when);
        int k;
        for (k = 0; k < nstreams && strcmp(streams[k].name, st); k++) {}
        if (k == nstreams) {
            if (nstreams == 64) fail_msg("%s: too many streams", when);
            snprintf(streams[k].name, sizeof streams[k].name, "%s", st);
            streams[k].version = 0;
            nstreams++;
        }
        if (v != streams[k].version + 1)
            fail_msg("%s: stream %s versions must be contiguous: position %" PRId64 " has version %" PRId64 " after %" PRId64,
                     when, st, pos, v, streams[k].version);
        streams[k].version = v;
        snprintf(idx[i].id, sizeof idx[i].id, "%s", ht_jstr(j, "id", when));
        idx[i].line = i;
        json_decref(j);
    }
    qsort(idx, n, sizeof *idx, cmp_served);
    size_t acked = 0;
    for (int wi = 0; wi < nw; wi++) {
        worker *w = &ws[wi];
        for (size_t bi = 0; bi < w->nb; bi++) {
            sent_batch *b = &w->b[bi];
            size_t present = 0;
            int64_t first_line = -1;
            for (size_t i = 0; i < b->n; i++) {
                sent_event *e = &w->ev[b->first + i];
                served key;
                snprintf(key.id, sizeof key.id, "%s", e->id);
                served *hit = bsearch(&key, idx, n, sizeof *idx, cmp_served);
                if (!hit) {
                    if (e->position)
                        fail_msg("%s: acknowledged event %s (worker %d, position %" PRIu64 ") is missing after restart", when, e->id, wi,
                                 e->position);
                    continue;
                }
                present++;
                if (i == 0) first_line = (int64_t)hit->line;
                else if (first_line >= 0 && (int64_t)hit->line != first_line + (int64_t)i)
                    fail_msg("%s: batch of worker %d is not contiguous in the log (event %zu)", when, wi, i);
                const char *line = lines[hit->line];
                if (e->position && hit->line + 1 != e->position)
                    fail_msg("%s: event %s was acknowledged at position %" PRIu64 ", found at %zu", when, e->id, e->position, hit->line + 1);
                char tail[512];
                snprintf(tail, sizeof tail, ",\"data\":%s}", e->data);
                size_t ll = strlen(line), tl = strlen(tail);
                if (ll < tl || strcmp(line + ll - tl, tail) != 0)
                    fail_msg("%s: event %s not byte-identical:\nexpected it to end with %s\ngot %s", when, e->id, tail, line);
                char sfield[80];
                snprintf(sfield, sizeof sfield, "\"stream\":\"%s\",", e->stream);
                if (!strstr(line, sfield)) fail_msg("%s: event %s should be in stream %s: %s", when, e->id, e->stream, line);
            }
            if (present != 0 && present != b->n)
                fail_msg("%s: a batch of %zu events is partly visible (%zu present) — appends must be all-or-nothing", when, b->n,
                         present);
            if (b->acked) acked += b->n;
        }
    }
    if (acked > n) fail_msg("%s: more acknowledged events (%zu) than served (%zu)", when, acked, n);
    free(idx);
    free(lines);
    free(store);
    ht_resp_free(&r);
    return n;
}

static void run_workers(worker *ws, int nw, pthread_t *th, ht_server *s, atomic_int *stop, uint64_t *rng, int allow_503)
{
    atomic_store(stop, 0);
    for (int i = 0; i < nw; i++) {
        ws[i].idx = i;
        ws[i].port = s->port;
        ws[i].stop = stop;
        ws[i].allow_503 = allow_503;
        ws[i].rng = evs_test_rand(rng);
        pthread_create(&th[i], NULL, worker_main, &ws[i]);
    }
}

static void free_workers(worker *ws, int nw)
{
    for (int i = 0; i < nw; i++) {
        for (size_t k = 0; k < ws[i].nev; k++) free(ws[i].ev[k].data);
        free(ws[i].ev);
        free(ws[i].b);
    }
}

#define WORKERS 4

static void t_kill9_under_load(void **state)
{
    ht_server *s = *state;
    uint64_t rng = evs_test_seed() ^ 0x6b696c6c39ull;
    const int rounds = HT_ASAN ? 3 : 5;
    worker ws[WORKERS];
    memset(ws, 0, sizeof ws);
    pthread_t th[WORKERS];
    atomic_int stop;
    size_t total = 0;
    for (int round = 0; round < rounds; round++) {
        size_t before[WORKERS];
        for (int i = 0; i < WORKERS; i++) before[i] = ws[i].acked_requests;
        run_workers(ws, WORKERS, th, s, &stop, &rng, 0);
        /* let some appends be acknowledged, then kill at a random moment */
        int64_t deadline = ht_now_ms() + 20000;
        for (;;) {
            size_t got = 0;
            for (int i = 0; i < WORKERS; i++) got += ws[i].acked_requests - before[i];
            if (got >= 20 || ht_now_ms() > deadline) break;
            ht_sleep_ms(5);
        }
        int wait_ms = (int)evs_test_rand_range(&rng, 50, 400);
        ht_sleep_ms(wait_ms);
        ht_server_kill9(s);
        atomic_store(&stop, 1);
        for (int i = 0; i < WORKERS; i++) pthread_join(th[i], NULL);
        size_t acked_round = 0;
        for (int i = 0; i < WORKERS; i++) {
            if (ws[i].problem[0]) fail_msg("round %d worker %d: %s", round, i, ws[i].problem);
            acked_round += ws[i].acked_requests - before[i];
        }
        if (acked_round == 0) fail_msg("round %d: no append was acknowledged before the kill; the test proves nothing (log:\n%s)", round,
                                       ht_log_tail(s, 1500));
        ht_server_start(s);
        char when[96];
        snprintf(when, sizeof when, "after kill -9 #%d (%dms into the load, %zu requests acknowledged)", round + 1, wait_ms, acked_round);
        total = verify_log(s, ws, WORKERS, when);
    }
    print_message("kill -9: %d rounds, %zu events in the log, all acknowledged ones intact\n", rounds, total);
    ht_server_stop(s);
    ht_server_start(s);
    verify_log(s, ws, WORKERS, "after a final clean restart");
    ht_server_stop(s);
    free_workers(ws, WORKERS);
}

static void t_sigterm_during_appends(void **state)
{
    ht_server *s = *state;
    uint64_t rng = evs_test_seed() ^ 0x7465726dull;
    worker ws[WORKERS];
    memset(ws, 0, sizeof ws);
    pthread_t th[WORKERS];
    atomic_int stop;
    run_workers(ws, WORKERS, th, s, &stop, &rng, 1);
    int64_t deadline = ht_now_ms() + 20000;
    for (;;) {
        size_t got = 0;
        for (int i = 0; i < WORKERS; i++) got += ws[i].acked_requests;
        if (got >= 20 || ht_now_ms() > deadline) break;
        ht_sleep_ms(5);
    }
    ht_sleep_ms((int)evs_test_rand_range(&rng, 20, 200));
    ht_server_stop(s); /* SIGTERM while the workers keep appending; asserts exit 0 */
    atomic_store(&stop, 1);
    for (int i = 0; i < WORKERS; i++) pthread_join(th[i], NULL);
    size_t acked = 0;
    for (int i = 0; i < WORKERS; i++) {
        if (ws[i].problem[0]) fail_msg("worker %d: %s", i, ws[i].problem);
        acked += ws[i].acked_requests;
    }
    if (acked == 0) fail_msg("no append was acknowledged before SIGTERM; the test proves nothing");
    ht_server_start(s);
    size_t n = verify_log(s, ws, WORKERS, "after SIGTERM during appends");
    print_message("SIGTERM during appends: %zu requests acknowledged, %zu events after restart\n", acked, n);
    ht_server_stop(s);
    free_workers(ws, WORKERS);
}

int main(void)
{
    ht_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_expected_version_race, setup, teardown),
        cmocka_unit_test_setup_teardown(t_condition_race, setup, teardown),
        cmocka_unit_test_setup_teardown(t_kill9_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(t_sigterm_during_appends, setup, teardown),
    };
    return cmocka_run_group_tests_name("http_concurrency", tests, NULL, NULL);
}
