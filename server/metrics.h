/*
 * metrics.h — counters and histograms evstored keeps for /metrics and
 * /stats (the engine's own fsync and group-commit histograms come from
 * evs_stat). All updates are relaxed atomics: no locks on the hot path.
 */
#ifndef EVSD_METRICS_H
#define EVSD_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#define EVSD_LAT_BUCKETS 16          /* same bounds as EVS_FSYNC_BUCKETS_US */

typedef struct evsd_metrics {
    _Atomic uint64_t append_hist[EVSD_LAT_BUCKETS];  /* append request latency */
    _Atomic uint64_t append_sum_us;
    _Atomic uint64_t append_requests;                /* answered append requests */
    _Atomic uint64_t read_requests;
    _Atomic uint64_t events_served;                  /* events written to responses */
    _Atomic uint64_t watchers;                       /* open watch responses (gauge) */
    _Atomic uint64_t watch_ring_events;              /* events in the watch ring (gauge) */
    _Atomic uint64_t watch_ring_bytes;               /* their encoded bytes (gauge) */
    _Atomic uint64_t watch_fallbacks;                /* watchers that fell behind the ring and read the store */
    _Atomic uint64_t connections;                    /* open connections (gauge) */
    _Atomic uint64_t status[6];                      /* responses by class: [1]=1xx ... [5]=5xx */
} evsd_metrics;

void evsd_metrics_append_latency(evsd_metrics *m, uint64_t ns);
void evsd_metrics_status(evsd_metrics *m, unsigned status);

#endif
