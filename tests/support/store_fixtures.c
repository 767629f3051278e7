/*
 * store_fixtures.c — see store_fixtures.h.
 *
 * Everything here goes through include/evstore.h only (plus the file system,
 * which test code may use directly), so the helpers observe the store the
 * way an application does.
 */
#include <dirent.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "store_fixtures.h"
#include "testutil.h"

/* ---- log capture ---- */

void fx_log_cb(void *ctx, int level, const char *message)
{
    fx_log *lg = ctx;
    char line[1024];
    int n = snprintf(line, sizeof line, "%d %s\n", level, message);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    pthread_mutex_lock(&lg->mu);
    if (lg->len + len >= sizeof lg->text) {  /* drop the older half */
        size_t keep = lg->len / 2;
        memmove(lg->text, lg->text + lg->len - keep, keep);
        lg->len = keep;
    }
    if (lg->len + len < sizeof lg->text) {
        memcpy(lg->text + lg->len, line, len);
        lg->len += len;
        lg->text[lg->len] = 0;
    }
    lg->lines++;
    pthread_mutex_unlock(&lg->mu);
    if (getenv("EVS_TEST_VERBOSE")) fprintf(stderr, "[store] %s", line);
}

int fx_log_has(fx_log *lg, const char *needle)
{
    pthread_mutex_lock(&lg->mu);
    int found = strstr(lg->text, needle) != NULL;
    pthread_mutex_unlock(&lg->mu);
    return found;
}

/* ---- lifecycle ---- */

void fx_main_init(void)
{
    (void)evs_test_seed();
    const char *filter = getenv("EVS_TEST_FILTER");
    if (filter && *filter) cmocka_set_test_filter(filter);
}

static fx *fx_new(void)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    pthread_mutex_init(&f->log.mu, NULL);
    assert_int_equal(evs_test_tmpdir(f->root, sizeof f->root), 0);
    int n = snprintf(f->dir, sizeof f->dir, "%s/data", f->root);
    assert_true(n > 0 && (size_t)n < sizeof f->dir);
    evs_options_init(&f->opt);
    f->opt.log = fx_log_cb;
    f->opt.log_ctx = &f->log;
    f->opt.log_level = EVS_LOG_DEBUG;
    return f;
}

int fx_setup_closed(void **state)
{
    *state = fx_new();
    return 0;
}

int fx_setup(void **state)
{
    fx *f = fx_new();
    fx_open(f);
    *state = f;
    return 0;
}

int fx_teardown(void **state)
{
    fx *f = *state;
    if (!f) return 0;
    int rc = evs_close(f->s);
    f->s = NULL;
    evs_test_rmtree(f->root);
    pthread_mutex_destroy(&f->log.mu);
    free(f);
    *state = NULL;
    return rc == 0 ? 0 : -1;
}

void fx_open(fx *f)
{
    assert_null(f->s);
    int rc = evs_open(f->dir, &f->opt, &f->s);
    if (rc) {
        fprintf(stderr, "evs_open(%s): %s\n%s", f->dir, evs_errname(rc), f->log.text);
        evs_close(f->s);
        f->s = NULL;
    }
    assert_int_equal(rc, 0);
    assert_non_null(f->s);
}

void fx_close(fx *f)
{
    int rc = evs_close(f->s);
    f->s = NULL;
    assert_int_equal(rc, 0);
}

void fx_reopen(fx *f)
{
    fx_close(f);
    fx_open(f);
}

/* ---- appending ---- */

evs_event_in fx_ev(const char *type, const char *data)
{
    return fx_ev_meta(type, data, NULL);
}

evs_event_in fx_ev_meta(const char *type, const char *data, const char *metadata)
{
    evs_event_in e;
    memset(&e, 0, sizeof e);
    e.expected_version = EVS_EXPECT_ANY;
    e.type = type;
    e.data = data;
    e.data_len = data ? strlen(data) : 0;
    e.metadata = metadata;
    e.metadata_len = metadata ? strlen(metadata) : 0;
    return e;
}

int fx_append1(evs_store *s, const char *stream, int64_t expected, const char *type,
               const char *data, evs_commit *out, evs_append_result *res)
{
    evs_event_in e = fx_ev(type, data);
    return evs_append(s, stream, expected, &e, 1, out, res);
}

/* ---- reading ---- */

char *fx_format(const evs_event *ev)
{
    size_t need = evs_event_format(ev, NULL, 0);
    char *line = malloc(need + 1);
    assert_non_null(line);
    assert_int_equal(evs_event_format(ev, line, need + 1), need);
    line[need] = 0;
    return line;
}

/* A growable string. */
typedef struct sbuf { char *p; size_t len, cap; } sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        assert_non_null(p);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof tmp);
    sb_add(b, tmp, (size_t)n);
}

static void sb_event(sbuf *b, const evs_event *ev)
{
    char *line = fx_format(ev);
    sb_add(b, line, strlen(line));
    sb_add(b, "\n", 1);
    free(line);
}

char *fx_read_lines(evs_store *s, const evs_read_options *ro, uint64_t *count)
{
    sbuf b = {0};
    sb_add(&b, "", 0);
    evs_iter *it = NULL;
    int rc = evs_iter_open(s, ro, &it);
    assert_int_equal(rc, 0);
    uint64_t n = 0;
    for (;;) {
        const evs_event *ev = NULL;
        rc = evs_iter_next(it, &ev);
        assert_int_equal(rc, 0);
        if (!ev) break;
        sb_event(&b, ev);
        n++;
    }
    evs_iter_close(it);
    if (count) *count = n;
    return b.p;
}

size_t fx_read_positions(evs_store *s, const evs_read_options *ro, uint64_t *pos, size_t max)
{
    evs_iter *it = NULL;
    assert_int_equal(evs_iter_open(s, ro, &it), 0);
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

char *fx_snapshot(evs_store *s)
{
    sbuf b = {0};
    evs_read_options ro;
    uint64_t committed = evs_position(s);
    sb_printf(&b, "position %" PRIu64 "\n", committed);

    /* the global log, both ways */
    evs_read_options_init(&ro);
    char *fwd = fx_read_lines(s, &ro, NULL);
    sb_add(&b, fwd, strlen(fwd));
    ro.backward = 1;
    char *bwd = fx_read_lines(s, &ro, NULL);
    sb_add(&b, "backward\n", 9);
    sb_add(&b, bwd, strlen(bwd));
    free(bwd);

    /* every event by id and by position: the same line as the global read */
    const char *p = fwd;
    for (uint64_t pos = 1; pos <= committed; pos++) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        evs_event *ev = NULL;
        assert_int_equal(evs_get_at(s, pos, &ev), 0);
        char *line = fx_format(ev);
        assert_int_equal(strlen(line), (size_t)(nl - p));
        assert_memory_equal(line, p, (size_t)(nl - p));
        free(line);
        evs_event *byid = NULL;
        assert_int_equal(evs_get(s, ev->id, &byid), 0);
        assert_int_equal(byid->position, pos);
        line = fx_format(byid);
        assert_memory_equal(line, p, (size_t)(nl - p));
        free(line);
        evs_free(byid);
        evs_free(ev);
        p = nl + 1;
    }
    free(fwd);

    /* every stream, with its version, both ways */
    evs_stream_iter *si = NULL;
    assert_int_equal(evs_streams_open(s, NULL, &si), 0);
    uint64_t nstreams = 0;
    for (;;) {
        const char *name = NULL;
        uint64_t version = 0;
        assert_int_equal(evs_streams_next(si, &name, &version), 0);
        if (!name) break;
        nstreams++;
        sb_printf(&b, "stream %s %" PRIu64 "\n", name, version);
        uint64_t v2 = 0;
        assert_int_equal(evs_stream_version(s, name, &v2), 0);
        assert_int_equal(v2, version);
        evs_read_options_init(&ro);
        ro.stream = name;
        uint64_t n = 0;
        char *lines = fx_read_lines(s, &ro, &n);
        assert_int_equal(n, version);
        sb_add(&b, lines, strlen(lines));
        free(lines);
        ro.backward = 1;
        lines = fx_read_lines(s, &ro, &n);
        assert_int_equal(n, version);
        sb_add(&b, lines, strlen(lines));
        free(lines);
    }
    evs_streams_close(si);
    evs_stats st;
    assert_int_equal(evs_stat(s, &st), 0);
    assert_int_equal(st.streams, nstreams);
    assert_int_equal(st.events, committed);
    return b.p;
}

/* ---- the data directory ---- */

static int cmp_name(const void *a, const void *b) { return strcmp(a, b); }

size_t fx_list(const char *dir, const char *pattern, char (*names)[256], size_t max)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (fnmatch(pattern, e->d_name, 0) != 0) continue;
        if (n < max && strlen(e->d_name) < 256) snprintf(names[n], 256, "%s", e->d_name);
        n++;
    }
    closedir(d);
    if (n > max) n = max;
    qsort(names, n, 256, cmp_name);
    return n;
}

size_t fx_unlink(const char *dir, const char *pattern)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t n = 0;
    struct dirent *e;
    char path[8192];
    while ((e = readdir(d)) != NULL) {
        if (fnmatch(pattern, e->d_name, 0) != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) n++;
    }
    closedir(d);
    return n;
}

uint64_t fx_file_size(const char *dir, const char *name)
{
    char path[8192];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (stat(path, &st) != 0) return UINT64_MAX;
    return (uint64_t)st.st_size;
}

size_t fx_seg_bases(const char *dir, uint64_t *bases, size_t max)
{
    size_t cap = max ? max : 1;
    char (*names)[256] = calloc(cap, 256);
    if (!names) return 0;
    size_t n = fx_list(dir, "*.seg", names, cap);
    for (size_t i = 0; i < n && i < max; i++)
        bases[i] = strtoull(names[i], NULL, 10);  /* 20 digits, zero padded: sorted by name = by base */
    free(names);
    return n;
}

/* ---- independent formatting ---- */

void fx_uuid_text(const uint8_t id[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hex[id[i] >> 4];
        out[o++] = hex[id[i] & 15];
    }
    out[o] = 0;
}

void fx_time_text(int64_t time_us, char out[32])
{
    time_t secs = (time_t)(time_us / 1000000);
    long us = (long)(time_us % 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.%06ldZ", day, us);
    snprintf(out, 32, "%.31s", tmp);
}

int64_t fx_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void print_problem(void *ctx, const char *file, uint64_t offset, const char *problem)
{
    unsigned *shown = ctx;
    if ((*shown)++ < 10) fprintf(stderr, "verify: %s @%" PRIu64 ": %s\n", file, offset, problem);
}

uint64_t fx_verify(const char *dir)
{
    uint64_t problems = UINT64_MAX;
    unsigned shown = 0;
    evs_options o;
    evs_options_init(&o);
    o.log_level = EVS_LOG_WARN;
    int rc = evs_verify(dir, &o, print_problem, &shown, &problems);
    assert_int_equal(rc, 0);
    return problems;
}
