/*
 * bench_util.c — clocks, histogram, PRNG, JSON writer, machine facts,
 * RSS, directory helpers for the benchmarks (see bench_util.h).
 */
#include "bench_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* ---- clocks ---- */

uint64_t bu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bu_sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- histogram ---- */

static unsigned hist_index(uint64_t v)
{
    if (v < 128) return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - BU_HIST_SUB_BITS;           /* >= 1 */
    unsigned sub = (unsigned)(v >> shift);              /* 64..127 */
    return 128u + (shift - 1u) * 64u + (sub - 64u);
}

/* Midpoint of bucket i. */
static uint64_t hist_value(unsigned i)
{
    if (i < 128) return i;
    unsigned shift = (i - 128u) / 64u + 1u;
    uint64_t sub = (i - 128u) % 64u + 64u;
    return (sub << shift) + ((uint64_t)1 << (shift - 1u));
}

void bu_hist_init(bu_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void bu_hist_add(bu_hist *h, uint64_t ns)
{
    h->counts[hist_index(ns)]++;
    h->n++;
    if (ns < h->min) h->min = ns;
    if (ns > h->max) h->max = ns;
    h->sum += (double)ns;
}

void bu_hist_merge(bu_hist *into, const bu_hist *from)
{
    for (unsigned i = 0; i < BU_HIST_BUCKETS; i++) into->counts[i] += from->counts[i];
    into->n += from->n;
    if (from->min < into->min) into->min = from->min;
    if (from->max > into->max) into->max = from->max;
    into->sum += from->sum;
}

uint64_t bu_hist_quantile(const bu_hist *h, double q)
{
    if (h->n == 0) return 0;
    if (q >= 1.0) return h->max;
    uint64_t rank = (uint64_t)ceil(q * (double)h->n);
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BU_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = hist_value(i);
            if (v > h->max) v = h->max;
            if (v < h->min) v = h->min;
            return v;
        }
    }
    return h->max;
}

double bu_hist_mean(const bu_hist *h) { return h->n ? h->sum / (double)h->n : 0.0; }

/* ---- PRNG ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void bu_rng_seed(bu_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t bu_rng_next(bu_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t bu_rng_below(bu_rng *r, uint64_t n)
{
    /* Lemire's multiply-shift; the tiny bias is irrelevant here */
    return (uint64_t)(((unsigned __int128)bu_rng_next(r) * n) >> 64);
}

/* ---- JSON writer ---- */

void bu_json_init(bu_json *j, FILE *f)
{
    memset(j, 0, sizeof *j);
    j->f = f;
    j->first[0] = 1;
}

static void json_escape(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\t': fputs("\\t", f); break;
        case '\r': fputs("\\r", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void json_member(bu_json *j, const char *key)
{
    if (!j->first[j->depth]) fputc(',', j->f);
    j->first[j->depth] = 0;
    if (j->depth > 0) {
        fputc('\n', j->f);
        for (int i = 0; i < j->depth; i++) fputs("  ", j->f);
    }
    if (key) {
        json_escape(j->f, key);
        fputs(": ", j->f);
    }
}

static void json_open(bu_json *j, const char *key, char c)
{
    json_member(j, key);
    fputc(c, j->f);
    if (j->depth < 31) j->depth++;
    j->first[j->depth] = 1;
    j->close[j->depth] = c == '{' ? '}' : ']';
}

void bu_json_obj(bu_json *j, const char *key) { json_open(j, key, '{'); }
void bu_json_arr(bu_json *j, const char *key) { json_open(j, key, '['); }

void bu_json_end(bu_json *j)
{
    int empty = j->first[j->depth];
    char c = j->close[j->depth];
    j->depth--;
    if (!empty) {
        fputc('\n', j->f);
        for (int i = 0; i < j->depth; i++) fputs("  ", j->f);
    }
    fputc(c, j->f);
    if (j->depth == 0) fputc('\n', j->f);
}

void bu_json_str(bu_json *j, const char *key, const char *v)
{
    json_member(j, key);
    if (v) json_escape(j->f, v);
    else fputs("null", j->f);
}

void bu_json_num(bu_json *j, const char *key, double v)
{
    json_member(j, key);
    if (!isfinite(v)) fputs("null", j->f);
    else if (v == floor(v) && fabs(v) < 9e15) fprintf(j->f, "%.0f", v);
    else fprintf(j->f, "%.6g", v);
}

void bu_json_int(bu_json *j, const char *key, int64_t v)
{
    json_member(j, key);
    fprintf(j->f, "%lld", (long long)v);
}

void bu_json_bool(bu_json *j, const char *key, int v)
{
    json_member(j, key);
    fputs(v ? "true" : "false", j->f);
}

/* ---- machine facts ---- */

static void read_first_line_with(const char *file, const char *prefix, char *out, size_t cap)
{
    FILE *f = fopen(file, "r");
    char line[512];
    if (!f) return;
    size_t pl = strlen(prefix);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, prefix, pl) != 0) continue;
        char *v = strchr(line, ':');
        if (!v) continue;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        v[strcspn(v, "\n")] = 0;
        snprintf(out, cap, "%s", v);
        break;
    }
    fclose(f);
}

/* mountinfo: "36 35 98:0 / /mnt1 rw,noatime master:1 - ext3 /dev/root rw,errors=continue" */
static void probe_mount(bu_machine *m, const char *dir)
{
    char real[PATH_MAX];
    if (!realpath(dir, real)) snprintf(real, sizeof real, "%s", dir);
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f) return;
    char line[4096];
    size_t best = 0;
    while (fgets(line, sizeof line, f)) {
        char *save = NULL, *tok[12] = {0};
        int n = 0;
        for (char *t = strtok_r(line, " \n", &save); t && n < 12; t = strtok_r(NULL, " \n", &save))
            tok[n++] = t;
        if (n < 10) continue;
        const char *mnt = tok[4];
        int sep = -1;
        for (int i = 6; i < n; i++)
            if (strcmp(tok[i], "-") == 0) { sep = i; break; }
        if (sep < 0 || sep + 3 > n) continue;
        size_t ml = strlen(mnt);
        int match = strcmp(mnt, "/") == 0 ||
                    (strncmp(real, mnt, ml) == 0 && (real[ml] == '/' || real[ml] == 0));
        if (!match || ml < best) continue;
        best = ml;
        snprintf(m->fsmount, sizeof m->fsmount, "%s", mnt);
        snprintf(m->fstype, sizeof m->fstype, "%s", tok[sep + 1]);
        snprintf(m->fsdev, sizeof m->fsdev, "%s", tok[sep + 2]);
        snprintf(m->fsopts, sizeof m->fsopts, "%s", tok[5]);
    }
    fclose(f);
}

void bu_machine_probe(bu_machine *m, const char *data_dir)
{
    memset(m, 0, sizeof *m);
    m->nproc = sysconf(_SC_NPROCESSORS_ONLN);
    char mem[64] = "";
    read_first_line_with("/proc/meminfo", "MemTotal", mem, sizeof mem);
    m->mem_total_kib = strtoull(mem, NULL, 10);
    read_first_line_with("/proc/cpuinfo", "model name", m->cpu, sizeof m->cpu);
    struct utsname u;
    if (uname(&u) == 0 &&
        snprintf(m->kernel, sizeof m->kernel, "%s %s %s", u.sysname, u.release, u.machine) >= (int)sizeof m->kernel)
        m->kernel[sizeof m->kernel - 1] = 0;
    if (gethostname(m->hostname, sizeof m->hostname) != 0) m->hostname[0] = 0;
    snprintf(m->fstype, sizeof m->fstype, "unknown");
    probe_mount(m, data_dir);
}

/* ---- memory ---- */

static uint64_t status_kib(const char *field)
{
    char v[64] = "";
    read_first_line_with("/proc/self/status", field, v, sizeof v);
    return strtoull(v, NULL, 10);
}

uint64_t bu_vm_rss_kib(void) { return status_kib("VmRSS"); }
uint64_t bu_vm_hwm_kib(void) { return status_kib("VmHWM"); }

void bu_reset_hwm(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    if (write(fd, "5", 1) != 1) {
        /* older kernels: the peak stays the process's lifetime peak */
    }
    close(fd);
}

/* ---- CPU contention ---- */

static uint64_t psi_total(const char *file, const char *which)
{
    FILE *f = fopen(file, "r");
    char line[256];
    uint64_t v = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, which, strlen(which)) != 0) continue;
        char *t = strstr(line, "total=");
        if (t) v = strtoull(t + 6, NULL, 10);
    }
    fclose(f);
    return v;
}

void bu_cpu_take(bu_cpu_snap *s)
{
    memset(s, 0, sizeof *s);
    s->wall_ns = bu_now_ns();
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        s->self_ns = ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
                     ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        unsigned long long v[10] = {0};
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7], &v[8], &v[9]) >= 8) {
            /* user nice system idle iowait irq softirq steal (guest is inside user) */
            for (int i = 0; i < 8; i++) s->total += v[i];
            s->busy = s->total - v[3] - v[4];
        }
        fclose(f);
    }
    s->psi_some_us = psi_total("/proc/pressure/cpu", "some");
    s->psi_io_full_us = psi_total("/proc/pressure/io", "full");
}

void bu_cpu_since(const bu_cpu_snap *a, bu_cpu_use *u)
{
    bu_cpu_snap b;
    bu_cpu_take(&b);
    memset(u, 0, sizeof *u);
    double wall = (double)(b.wall_ns - a->wall_ns);
    if (wall <= 0) return;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    u->self_cores = (double)(b.self_ns - a->self_ns) / wall;
    if (b.total > a->total) {
        double busy_cores = (double)(b.busy - a->busy) / (double)(b.total - a->total) * (double)ncpu;
        u->other_cores = busy_cores - u->self_cores;
        if (u->other_cores < 0) u->other_cores = 0;
    }
    u->cpu_stall_pct = 100.0 * (double)(b.psi_some_us - a->psi_some_us) * 1e3 / wall;
    u->io_full_pct = 100.0 * (double)(b.psi_io_full_us - a->psi_io_full_us) * 1e3 / wall;
    double l1 = 0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l1) != 1) l1 = 0;
        fclose(f);
    }
    u->load1 = l1;
}

/* ---- directories ---- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP) return rmdir(path) == 0 || errno == ENOENT ? 0 : -1;
    return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
}

int bu_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static uint64_t du_total;
static int du_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (flag == FTW_F && S_ISREG(st->st_mode)) du_total += (uint64_t)st->st_size;
    return 0;
}

uint64_t bu_dir_bytes(const char *path)
{
    du_total = 0;
    nftw(path, du_one, 16, FTW_PHYS);
    return du_total;
}

static int dropped;
static int drop_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag != FTW_F || !S_ISREG(st->st_mode)) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    if (posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0) dropped++;
    close(fd);
    return 0;
}

int bu_drop_cache(const char *path)
{
    dropped = 0;
    nftw(path, drop_one, 16, FTW_PHYS);
    return dropped;
}

/* ---- formatting ---- */

const char *bu_commas(char *buf, size_t cap, double v)
{
    char tmp[64];
    if (!isfinite(v)) {
        snprintf(buf, cap, "-");
        return buf;
    }
    snprintf(tmp, sizeof tmp, "%.0f", v);
    size_t len = strlen(tmp), o = 0;
    size_t start = tmp[0] == '-' ? 1 : 0;
    for (size_t i = 0; i < len && o + 2 < cap; i++) {
        buf[o++] = tmp[i];
        size_t left = len - i - 1;
        if (i >= start && left > 0 && left % 3 == 0) buf[o++] = ',';
    }
    buf[o] = 0;
    return buf;
}

const char *bu_dur(char *buf, size_t cap, uint64_t ns)
{
    double v = (double)ns;
    if (v < 1e3) snprintf(buf, cap, "%.0f ns", v);
    else if (v < 1e5) snprintf(buf, cap, "%.1f us", v / 1e3);
    else if (v < 1e6) snprintf(buf, cap, "%.0f us", v / 1e3);
    else if (v < 1e8) snprintf(buf, cap, "%.2f ms", v / 1e6);
    else if (v < 1e9) snprintf(buf, cap, "%.0f ms", v / 1e6);
    else snprintf(buf, cap, "%.2f s", v / 1e9);
    return buf;
}
