/*
 * testutil.c — seed, PRNG and scratch directories for tests (see testutil.h).
 *
 * Invariants: the seed is chosen and printed exactly once per process
 * (pthread_once); the PRNG is a pure function of the caller's state word.
 * Test code may call the file system directly: the "no direct I/O" rule
 * covers src/ only.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static pthread_once_t seed_once = PTHREAD_ONCE_INIT;
static uint64_t seed_value; /* written once under seed_once, read-only after */

static void seed_init(void)
{
    const char *env = getenv("EVS_SEED");
    char *end = NULL;
    if (env && *env) {
        errno = 0;
        unsigned long long v = strtoull(env, &end, 0);
        if (errno == 0 && end && *end == '\0') {
            seed_value = (uint64_t)v;
            fprintf(stderr, "seed=%llu (replay with EVS_SEED=%llu)\n", v, v);
            return;
        }
        fprintf(stderr, "EVS_SEED=%s is not a number; choosing a random seed\n", env);
    }
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
        /* No entropy source: time and pid still differ between runs. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    }
    /* Keep seeds short enough to type: 48 bits are plenty for test variety. */
    seed_value = v & 0xffffffffffffull;
    fprintf(stderr, "seed=%llu (replay with EVS_SEED=%llu)\n",
            (unsigned long long)seed_value, (unsigned long long)seed_value);
}

uint64_t evs_test_seed(void)
{
    pthread_once(&seed_once, seed_init);
    return seed_value;
}

uint64_t evs_test_rand(uint64_t *state)
{
    /* splitmix64: a Weyl sequence through a bijective mixer, so every state
     * (0 included) yields a full-period, well-distributed stream. */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t evs_test_rand_range(uint64_t *state, uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = hi - lo + 1;  /* 0 means the full 64-bit range */
    if (span == 0)
        return evs_test_rand(state);
    /* Reject the top partial bucket so every value is equally likely. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % span);
    uint64_t r;
    do r = evs_test_rand(state); while (r >= limit);
    return lo + r % span;
}

void evs_test_rand_bytes(uint64_t *state, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        uint64_t r = evs_test_rand(state);
        size_t k = n < sizeof r ? n : sizeof r;
        memcpy(p, &r, k);
        p += k;
        n -= k;
    }
}

/* mkdir -p: each prefix of path, ignoring the ones that already exist. */
static int mkdir_p(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        buf[i] = saved;
    }
    return 0;
}

int evs_test_tmpdir(char *out, size_t cap)
{
    const char *base = getenv("EVS_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    int rc = mkdir_p(base);
    if (rc)
        return rc;
    int n = snprintf(out, cap, "%s/evs-XXXXXX", base);
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    if (!mkdtemp(out))
        return -errno;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;  /* keep going: remove as much as possible */
}

void evs_test_rmtree(const char *dir)
{
    if (!dir || !*dir || !strcmp(dir, "/"))
        return;
    /* FTW_DEPTH: children before their directory; FTW_PHYS: never follow links. */
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
