/*
 * bench_util.h — what the benchmarks share: clocks, a log-bucket latency
 * histogram, a seeded PRNG, a small JSON writer, machine facts
 * (/proc, uname, mountinfo), resident memory, recursive removal and
 * page-cache dropping of a directory.
 *
 * Nothing here knows about evstore; bench_engine.c uses only evstore.h.
 * Units: time in nanoseconds internally, printed as µs/ms; MB = 10^6 bytes,
 * MiB = 2^20 bytes (tables say which).
 */
#ifndef EVS_BENCH_UTIL_H
#define EVS_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- clocks ---- */
uint64_t bu_now_ns(void);                 /* CLOCK_MONOTONIC */
void bu_sleep_ms(unsigned ms);

/* ---- latency histogram (HdrHistogram-style: 64 linear sub-buckets per power of two, <1.6 % error) ---- */
#define BU_HIST_SUB_BITS 6u
#define BU_HIST_BUCKETS (128u + 57u * 64u)
typedef struct bu_hist {
    uint64_t counts[BU_HIST_BUCKETS];     /* samples per bucket */
    uint64_t n;                           /* samples */
    uint64_t min, max;                    /* exact extremes (ns) */
    double sum;                           /* for the mean (ns) */
} bu_hist;

void bu_hist_init(bu_hist *h);
void bu_hist_add(bu_hist *h, uint64_t ns);
void bu_hist_merge(bu_hist *into, const bu_hist *from);
/** The value at quantile q (0..1], in ns; the bucket's midpoint (max for q = 1). 0 if empty. */
uint64_t bu_hist_quantile(const bu_hist *h, double q);
double bu_hist_mean(const bu_hist *h);

/* ---- PRNG (xoshiro256**, seeded with splitmix64; fixed seed = same run) ---- */
typedef struct bu_rng { uint64_t s[4]; } bu_rng;
void bu_rng_seed(bu_rng *r, uint64_t seed);
uint64_t bu_rng_next(bu_rng *r);
uint64_t bu_rng_below(bu_rng *r, uint64_t n);   /* uniform in [0, n) */

/* ---- JSON writer: nested objects/arrays, commas handled, strings escaped ---- */
typedef struct bu_json {
    FILE *f;                              /* where it writes */
    int depth;                            /* open containers */
    int first[32];                        /* per depth: no member written yet */
    char close[32];                       /* per depth: '}' or ']' */
} bu_json;

void bu_json_init(bu_json *j, FILE *f);
void bu_json_obj(bu_json *j, const char *key);  /* key NULL: inside an array or at top level */
void bu_json_arr(bu_json *j, const char *key);
void bu_json_end(bu_json *j);                   /* closes the innermost container */
void bu_json_str(bu_json *j, const char *key, const char *v);  /* v NULL: null */
void bu_json_num(bu_json *j, const char *key, double v);       /* non-finite: null */
void bu_json_int(bu_json *j, const char *key, int64_t v);
void bu_json_bool(bu_json *j, const char *key, int v);

/* ---- machine facts ---- */
typedef struct bu_machine {
    long nproc;                           /* online CPUs */
    uint64_t mem_total_kib;               /* MemTotal */
    char kernel[128];                     /* uname -srm */
    char cpu[128];                        /* first "model name" */
    char fstype[32];                      /* of the data directory, from mountinfo */
    char fsdev[128];                      /* mount source */
    char fsmount[256];                    /* mount point */
    char fsopts[256];                     /* mount options */
    char hostname[64];
} bu_machine;

void bu_machine_probe(bu_machine *m, const char *data_dir);

/* ---- memory of this process (KiB; 0 when unreadable) ---- */
uint64_t bu_vm_rss_kib(void);
uint64_t bu_vm_hwm_kib(void);
void bu_reset_hwm(void);                  /* /proc/self/clear_refs "5": peak RSS := current */

/* ---- CPU contention: this machine is shared, so every figure says how much
 *      CPU it got and how much others took ---- */
typedef struct bu_cpu_snap {
    uint64_t wall_ns;                     /* bu_now_ns() */
    uint64_t self_ns;                     /* user + system CPU of this process (getrusage) */
    uint64_t busy, total;                 /* /proc/stat jiffies: all CPUs, busy and total */
    uint64_t psi_some_us;                 /* /proc/pressure/cpu "some" total (0 if absent) */
    uint64_t psi_io_full_us;              /* /proc/pressure/io "full" total */
} bu_cpu_snap;

typedef struct bu_cpu_use {
    double self_cores;                    /* CPUs this process used on average */
    double other_cores;                   /* CPUs everything else used */
    double cpu_stall_pct;                 /* % of the time some runnable task waited for a CPU */
    double io_full_pct;                   /* % of the time all non-idle tasks waited for I/O */
    double load1;                         /* 1-minute load average at the end */
} bu_cpu_use;

void bu_cpu_take(bu_cpu_snap *s);
void bu_cpu_since(const bu_cpu_snap *a, bu_cpu_use *u);   /* from a to now */

/* ---- directories ---- */
int bu_rm_rf(const char *path);           /* 0 or -1 (errno) */
uint64_t bu_dir_bytes(const char *path);  /* bytes of the regular files below path */
/** posix_fadvise(DONTNEED) every regular file below path (they must be clean).
 *  @return files advised. */
int bu_drop_cache(const char *path);

/* ---- formatting ---- */
/** "1,234,567" into buf (thread-unsafe rotating buffers are avoided: caller gives buf). */
const char *bu_commas(char *buf, size_t cap, double v);
/** A latency in ns as "123 µs" / "1.23 ms" / "1.2 s". */
const char *bu_dur(char *buf, size_t cap, uint64_t ns);

#endif
