/*
 * progress.c — see progress.h. The line is rewritten in place with "\r" and
 * "erase to end of line", so it never scrolls the terminal.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 1234567 -> "1,234,567": counts of millions are unreadable without grouping. */
static void grouped(char *out, size_t cap, uint64_t v)
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < cap; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = 0;
}

static void human_bytes(char *out, size_t cap, double b)
{
    static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

static void draw(cli_progress *p, double t)
{
    char count[32], total[40], bytes[32], rate[32], eta[40] = "";
    double elapsed = t - p->start;
    double per_s = elapsed > 0 ? (double)p->count / elapsed : 0;
    grouped(count, sizeof count, p->count);
    human_bytes(bytes, sizeof bytes, (double)p->bytes);
    grouped(rate, sizeof rate, (uint64_t)per_s);
    total[0] = 0;
    if (p->total) {
        char tot[32];
        grouped(tot, sizeof tot, p->total);
        snprintf(total, sizeof total, "/%s", tot);
        if (per_s > 0 && p->count < p->total) {
            unsigned long s = (unsigned long)((double)(p->total - p->count) / per_s + 0.5);
            snprintf(eta, sizeof eta, "  ETA %lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
        }
    }
    char line[256];
    int n = snprintf(line, sizeof line, "\r%s: %s%s %s  %s  %s %s/s%s\033[K", p->label, count,
                     total, p->unit, bytes, rate, p->unit, eta);
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)w;   /* a progress line that cannot be drawn is not worth failing over */
    }
    p->drawn = 1;
    p->last_draw = t;
}

void progress_start(cli_progress *p, const char *label, const char *unit, uint64_t total,
                    int allow)
{
    memset(p, 0, sizeof *p);
    p->enabled = allow && isatty(STDERR_FILENO);
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->start = p->last_draw = now();
}

void progress_update(cli_progress *p, uint64_t count, uint64_t bytes)
{
    p->count = count;
    p->bytes = bytes;
    if (!p->enabled)
        return;
    double t = now();
    if (t - p->last_draw >= 0.1)
        draw(p, t);
}

void progress_done(cli_progress *p)
{
    if (!p->enabled)
        return;
    /* Replace the moving line with a final one: a person who watched it
     * wants to know how it ended. */
    char count[32], bytes[32], line[192];
    double elapsed = now() - p->start;
    grouped(count, sizeof count, p->count);
    human_bytes(bytes, sizeof bytes, (double)p->bytes);
    int n = snprintf(line, sizeof line, "\r%s: %s %s, %s in %.1f s\033[K\n", p->label, count,
                     p->unit, bytes, elapsed);
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)w;
    }
    p->drawn = 0;
    p->enabled = 0;
}
