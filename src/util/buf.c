/* buf.c — growable byte buffer, paths, clocks and randomness. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "evs_int.h"

int evs__buf_reserve(evs_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return EVS_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

int evs__buf_append(evs_buf *b, const void *p, size_t n)
{
    int rc = evs__buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

void evs__buf_free(evs_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int evs__path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

int64_t evs__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t evs__mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void evs__random(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got > 0) {
            p += got;
            n -= (size_t)got;
            continue;
        }
        if (got < 0 && errno == EINTR)
            continue;
        /* getrandom unavailable: a time-seeded xorshift is enough for ids and salts */
        uint64_t x = (uint64_t)evs__now_us() ^ (uint64_t)(uintptr_t)p ^ evs__mono_ns();
        while (n > 0) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            *p++ = (uint8_t)x;
            n--;
        }
    }
}

void evs_free(void *p) { free(p); }
