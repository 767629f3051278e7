/*
 * progress.c — see progress.h. The line is rewritten in place with "\r" and
 * "erase to end of line", so it never scrolls the terminal:
 *
 *   backup (copy): 120,000/500,000 events  12.3/51.2 MiB  48,000 events/s  4.9 MiB/s  ETA 0:00:08
 *
 * The ETA comes from the bytes when their total is known (bytes flow more
 * evenly than events of mixed sizes), else from the events.
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

/* Bytes in the unit that suits `scale` (so "12.3/51.2 MiB" share one unit). */
static const char *unit_of(double scale, double *div)
{
    static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int u = 0;
    *div = 1;
    while (scale >= 1024 && u < 4) {
        scale /= 1024;
        *div *= 1024;
        u++;
    }
    return units[u];
}

static void human_bytes(char *out, size_t cap, double b)
{
    double div;
    const char *u = unit_of(b, &div);
    snprintf(out, cap, div > 1 ? "%.1f %s" : "%.0f %s", b / div, u);
}

static void write_err(const char *line, int n, size_t cap)
{
    if (n <= 0)
        return;
    ssize_t w = write(STDERR_FILENO, line, (size_t)n < cap ? (size_t)n : cap - 1);
    (void)w;   /* a progress line that cannot be drawn is not worth failing over */
}

static void draw(cli_progress *p, double t)
{
    char ev[80] = "", by[64], evrate[48] = "", byrate[32], eta[40] = "", a[32], b[32];
    double elapsed = t - p->start;
    if (p->events || p->events_total) {
        grouped(a, sizeof a, p->events);
        if (p->events_total) {
            grouped(b, sizeof b, p->events_total);
            snprintf(ev, sizeof ev, "%s/%s events  ", a, b);
        } else {
            snprintf(ev, sizeof ev, "%s events  ", a);
        }
        grouped(a, sizeof a, elapsed > 0 ? (uint64_t)((double)p->events / elapsed) : 0);
        snprintf(evrate, sizeof evrate, "%s events/s  ", a);
    }
    if (p->bytes_total) {
        double div;
        const char *u = unit_of((double)p->bytes_total, &div);
        snprintf(by, sizeof by, div > 1 ? "%.1f/%.1f %s" : "%.0f/%.0f %s", (double)p->bytes / div,
                 (double)p->bytes_total / div, u);
    } else {
        human_bytes(by, sizeof by, (double)p->bytes);
    }
    human_bytes(byrate, sizeof byrate, elapsed > 0 ? (double)p->bytes / elapsed : 0);
    double left = -1;
    if (p->bytes_total && p->bytes && p->bytes < p->bytes_total)
        left = elapsed * (double)(p->bytes_total - p->bytes) / (double)p->bytes;
    else if (!p->bytes_total && p->events_total && p->events && p->events < p->events_total)
        left = elapsed * (double)(p->events_total - p->events) / (double)p->events;
    if (left >= 0) {
        unsigned long s = (unsigned long)(left + 0.5);
        snprintf(eta, sizeof eta, "  ETA %lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
    }
    char line[320];
    int n = snprintf(line, sizeof line, "\r%s: %s%s  %s%s/s%s\033[K", p->label, ev, by, evrate, byrate, eta);
    write_err(line, n, sizeof line);
    p->last_draw = t;
    p->drawn = 1;
}

void progress_clear(cli_progress *p)
{
    if (!p->enabled || !p->drawn)
        return;
    write_err("\r\033[K", 4, 8);
    p->drawn = 0;
}

void progress_start(cli_progress *p, const char *label, uint64_t events_total, uint64_t bytes_total,
                    int allow)
{
    memset(p, 0, sizeof *p);
    p->enabled = allow && isatty(STDERR_FILENO);
    p->label = label;
    p->events_total = events_total;
    p->bytes_total = bytes_total;
    p->start = now();
    p->last_draw = p->start;
}

void progress_totals(cli_progress *p, uint64_t events_total, uint64_t bytes_total)
{
    p->events_total = events_total;
    p->bytes_total = bytes_total;
}

void progress_update(cli_progress *p, uint64_t events, uint64_t bytes)
{
    p->events = events;
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
    char ev[48] = "", bytes[32], rate[32], line[256];
    double elapsed = now() - p->start;
    if (p->events || p->events_total) {
        char a[32];
        grouped(a, sizeof a, p->events);
        snprintf(ev, sizeof ev, "%s events, ", a);
    }
    human_bytes(bytes, sizeof bytes, (double)p->bytes);
    human_bytes(rate, sizeof rate, elapsed > 0 ? (double)p->bytes / elapsed : 0);
    int n = snprintf(line, sizeof line, "\r%s: %s%s in %.1f s (%s/s)\033[K\n", p->label, ev, bytes, elapsed, rate);
    write_err(line, n, sizeof line);
    p->enabled = 0;
    p->drawn = 0;
}
