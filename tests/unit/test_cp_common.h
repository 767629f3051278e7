/*
 * test_cp_common.h — what test_projections.c and test_consumers.c share: a
 * store in a fresh scratch directory (real files, the POSIX vfs), a captured
 * log, appending and reading helpers, and file helpers for the data
 * directory. Everything is static; include it once per test executable.
 *
 * Synchronisation rule: tests never sleep to let something happen; they
 * poll a condition with a bounded deadline (cp_wait_built) or join threads.
 */
#ifndef EVS_TEST_CP_COMMON_H
#define EVS_TEST_CP_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "evstore.h"
#include "testutil.h"

#define CP_FN static __attribute__((unused))
#define CP_WAIT_MS 60000   /* generous: a loaded (sanitizer) machine must not fail a wait */

typedef struct cp {
    char root[4096];             /* scratch dir, removed at teardown */
    char dir[4200];              /* data directory inside it */
    evs_options opt;             /* options for cp_open */
    evs_store *s;                /* open store or NULL */
    pthread_mutex_t mu;          /* log is written from the store's threads */
    char log[16384];             /* captured log lines (oldest dropped) */
    size_t loglen;
} cp;

CP_FN void cp_log_cb(void *ctx, int level, const char *message)
{
    cp *c = ctx;
    pthread_mutex_lock(&c->mu);
    size_t n = strlen(message);
    if (c->loglen + n + 4 >= sizeof c->log) c->loglen = 0;
    c->loglen += (size_t)snprintf(c->log + c->loglen, sizeof c->log - c->loglen, "%d %s\n", level, message);
    pthread_mutex_unlock(&c->mu);
}

CP_FN int cp_log_has(cp *c, const char *needle)
{
    pthread_mutex_lock(&c->mu);
    int has = strstr(c->log, needle) != NULL;
    pthread_mutex_unlock(&c->mu);
    return has;
}

CP_FN void cp_open(cp *c)
{
    int rc = evs_open(c->dir, &c->opt, &c->s);
    if (rc) {
        fprintf(stderr, "evs_open: %s\nlog:\n%s\n", evs_strerror(rc), c->log);
        evs_close(c->s);
        c->s = NULL;
    }
    assert_int_equal(rc, 0);
}

CP_FN void cp_close(cp *c)
{
    int rc = evs_close(c->s);
    c->s = NULL;
    assert_int_equal(rc, 0);
}

CP_FN void cp_reopen(cp *c)
{
    cp_close(c);
    cp_open(c);
}

CP_FN int cp_setup_closed(void **state)
{
    cp *c = calloc(1, sizeof *c);
    assert_non_null(c);
    pthread_mutex_init(&c->mu, NULL);
    assert_int_equal(evs_test_tmpdir(c->root, sizeof c->root), 0);
    snprintf(c->dir, sizeof c->dir, "%s/data", c->root);
    evs_options_init(&c->opt);
    c->opt.log = cp_log_cb;
    c->opt.log_ctx = c;
    c->opt.log_level = EVS_LOG_DEBUG;
    *state = c;
    return 0;
}

CP_FN int cp_setup(void **state)
{
    cp_setup_closed(state);
    cp_open(*state);
    return 0;
}

CP_FN int cp_teardown(void **state)
{
    cp *c = *state;
    if (c->s) evs_close(c->s);
    evs_test_rmtree(c->root);
    pthread_mutex_destroy(&c->mu);
    free(c);
    return 0;
}

/* Append one event; returns its position (asserts success). */
CP_FN uint64_t cp_append(evs_store *s, const char *stream, const char *type, const char *data)
{
    evs_event_in in = {.type = type, .data = data, .data_len = data ? strlen(data) : 0,
                       .expected_version = EVS_EXPECT_ANY};
    evs_commit c;
    int rc = evs_append(s, stream, EVS_EXPECT_ANY, &in, 1, &c, NULL);
    assert_int_equal(rc, 0);
    return c.position;
}

/* Positions read with ro (at most max; asserts every call succeeds). */
CP_FN size_t cp_read_positions(evs_store *s, const evs_read_options *ro, uint64_t *pos, size_t max)
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

/* The formatted lines read with ro, "\n"-terminated, malloc'd. */
CP_FN char *cp_read_text(evs_store *s, const evs_read_options *ro)
{
    evs_iter *it = NULL;
    assert_int_equal(evs_iter_open(s, ro, &it), 0);
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    out[0] = 0;
    for (;;) {
        const evs_event *ev = NULL;
        assert_int_equal(evs_iter_next(it, &ev), 0);
        if (!ev) break;
        size_t need = evs_event_format(ev, NULL, 0);
        while (len + need + 2 > cap) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        evs_event_format(ev, out + len, need + 1);
        len += need;
        out[len++] = '\n';
        out[len] = 0;
    }
    evs_iter_close(it);
    return out;
}

/* Read options for projection name (forward from the start, no limit). */
CP_FN evs_read_options cp_proj_ro(const char *name)
{
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.projection = name;
    return ro;
}

/* Remove every "*<suffix>" file in dir; returns how many. */
CP_FN size_t cp_unlink_suffix(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0, sl = strlen(suffix);
    struct dirent *e;
    char path[8192];
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < sl || strcmp(e->d_name + l - sl, suffix) != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) == 0) n++;
    }
    closedir(d);
    return n;
}

/* Count files in dir whose name starts with prefix. */
CP_FN size_t cp_count_prefix(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

/* The bytes of the first file in dir whose name starts with prefix (malloc'd; NULL if none). */
CP_FN char *cp_slurp_prefix(const char *dir, const char *prefix, size_t *len)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    char path[8192];
    char *buf = NULL;
    *len = 0;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = malloc((size_t)n + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
        fclose(f);
        *len = (size_t)n;
        break;
    }
    closedir(d);
    return buf;
}

CP_FN int64_t cp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Poll until projection name's index covers the whole log (bounded). */
CP_FN void cp_wait_built(evs_store *s, const char *name)
{
    int64_t deadline = cp_now_ms() + CP_WAIT_MS;
    for (;;) {
        evs_projection_info *info = NULL;
        assert_int_equal(evs_projection_get(s, name, &info), 0);
        int done = info->covered == evs_position(s);
        evs_free(info);
        if (done) return;
        assert_true(cp_now_ms() < deadline);
        struct timespec ts = {0, 2 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

#endif
