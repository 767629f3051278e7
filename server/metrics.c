/* metrics.c — lock-free updates of evstored's counters and histograms. */
#include "metrics.h"

#include <evstore.h>

void evsd_metrics_append_latency(evsd_metrics *m, uint64_t ns)
{
    static const uint64_t bounds[15] = EVS_FSYNC_BUCKETS_US;
    uint64_t us = ns / 1000;
    int b = 0;
    while (b < 15 && us > bounds[b]) b++;
    atomic_fetch_add_explicit(&m->append_hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->append_sum_us, us, memory_order_relaxed);
}

void evsd_metrics_status(evsd_metrics *m, unsigned status)
{
    unsigned c = status / 100;
    if (c >= 1 && c <= 5) atomic_fetch_add_explicit(&m->status[c], 1, memory_order_relaxed);
}
