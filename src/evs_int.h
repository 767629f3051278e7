/*
 * evs_int.h — internal umbrella header: helpers every module of the library
 * shares. Non-static internal functions are named evs__*; nothing here is API.
 */
#ifndef EVS_INT_H
#define EVS_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "evstore.h"
#include "io/vfs.h"

#define EVS_UNUSED(x) ((void)(x))
#define EVS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define EVS_MAX(a, b) ((a) > (b) ? (a) : (b))
#define EVS_ALIGN8(n) (((n) + 7u) & ~(uint64_t)7u)

/* EVS_TESTCASE(cond): marks a boundary that tests should reach both ways
 * (e.g. a record ending exactly at a segment's end). Free in builds. */
#define EVS_TESTCASE(cond) ((void)(cond))

/* ---- logging (src/util/log.c) ---- */
typedef struct evs_logger {
    evs_log_fn fn;     /* NULL: stderr */
    void *ctx;
    int level;         /* messages above this level are dropped */
} evs_logger;

void evs__logf(const evs_logger *lg, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Corruption found in file at offset: logs it and yields EVS_ECORRUPT,
 * remembering where in the source it was detected (for the log line). */
#define EVS_CORRUPT_HERE(lg, file, off, what) \
    evs__corrupt((lg), (file), (off), (what), __FILE__, __LINE__)
int evs__corrupt(const evs_logger *lg, const char *file, uint64_t off, const char *what,
                 const char *src_file, int src_line);

/* ---- little-endian encoding (the on-disk byte order) ---- */
static inline void evs__put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void evs__put32(uint8_t *p, uint32_t v)
{ for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void evs__put64(uint8_t *p, uint64_t v)
{ for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline uint16_t evs__get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t evs__get32(const uint8_t *p)
{ uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static inline uint64_t evs__get64(const uint8_t *p)
{ uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }

/* ---- growable byte buffer (src/util/buf.c) ---- */
typedef struct evs_buf {
    uint8_t *p;        /* NULL until the first reserve */
    size_t len;        /* bytes in use */
    size_t cap;        /* bytes allocated */
} evs_buf;

int evs__buf_reserve(evs_buf *b, size_t extra);            /* ensure len + extra <= cap */
int evs__buf_append(evs_buf *b, const void *p, size_t n);
void evs__buf_free(evs_buf *b);

/* Zeroed memory for large arrays (util/bigmem.c): from 1 MiB on an anonymous
 * mapping (resident only where written, returned to the kernel when freed),
 * below that calloc. Free with the size it was allocated with. */
void *evs__big_zalloc(size_t size);
void evs__big_free(void *p, size_t size);

/* ---- paths ---- */
/* Join dir and name into out (cap bytes). Returns -ENAMETOOLONG when it does not fit. */
int evs__path(char *out, size_t cap, const char *dir, const char *name);

/* ---- time and randomness ---- */
int64_t evs__now_us(void);          /* CLOCK_REALTIME in microseconds */
uint64_t evs__mono_ns(void);        /* CLOCK_MONOTONIC in nanoseconds */
void evs__random(void *buf, size_t n);  /* getrandom(), falling back to a seeded PRNG */

/* ---- JSON checks for the append path (src/json/check.c) ---- */
/*
 * Validate p[0..n) as one JSON value (want_object: must be an object) with
 * jansson's strict decoder (UTF-8, no duplicate keys, no NUL). On success,
 * (*out, *out_len) is the value with insignificant whitespace removed: either p
 * itself (nothing to remove; *owned = NULL) or a malloc'd copy (*owned = it,
 * caller frees). On failure returns EVS_EINVAL with a sentence in err.
 */
int evs__json_check(const char *p, size_t n, int want_object, const char **out,
                    size_t *out_len, char **owned, char *err, size_t errlen);

/* Type names and stream names share this rule: 1..255 bytes of UTF-8, no control chars. */
int evs__validate_name(const char *name, size_t len);

#endif
