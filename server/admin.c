/*
 * admin.c — GET /health, GET /stats, GET /metrics (Prometheus text format).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *health_status(evsd_server *srv, const evs_stats *st)
{
    if (st->failed) return "failed";
    if (srv->cfg.read_only) return "read_only";
    return "ok";
}

enum MHD_Result evsd_route_health(evsd_req *r)
{
    evs_stats st;
    evs_stat(r->srv->store, &st);
    evsd_str s = {0};
    const char *status = health_status(r->srv, &st);
    evsd_str_addf(&s, "{\"status\":\"%s\",\"position\":%" PRIu64, status, st.position);
    if (st.failed && evs_failure(r->srv->store)) {
        const char *why = evs_failure(r->srv->store);
        evsd_str_add(&s, ",\"reason\":", 10);
        evsd_str_add_json_string(&s, why, strlen(why));
    }
    evsd_str_add(&s, "}\n", 2);
    enum MHD_Result ret = evsd_respond(r, st.failed ? 503 : 200, "application/json", s.p, s.len);
    evsd_str_free(&s);
    return ret;
}

enum MHD_Result evsd_route_stats(evsd_req *r)
{
    evsd_server *srv = r->srv;
    evs_stats st;
    evs_stat(srv->store, &st);
    evsd_str s = {0};
    evsd_str_addf(&s, "{\"events\":%" PRIu64 ",\"streams\":%" PRIu64 ",\"segments\":%" PRIu64 ",\"bytes\":%" PRIu64
                      ",\"position\":%" PRIu64 ",\"uptime_seconds\":%" PRId64 ",\"fsync\":",
                  st.events, st.streams, st.segments, st.bytes, st.position, (now_us() - srv->started_us) / 1000000);
    evsd_str_add_json_string(&s, srv->cfg.fsync, strlen(srv->cfg.fsync));
    evsd_str_addf(&s, ",\"appends\":%" PRIu64 ",\"appended_events\":%" PRIu64 ",\"reads\":%" PRIu64
                      ",\"append_requests\":%" PRIu64 ",\"read_requests\":%" PRIu64 ",\"fsyncs\":%" PRIu64
                      ",\"group_commits\":%" PRIu64 ",\"watchers\":%" PRIu64 ",\"connections\":%" PRIu64
                      ",\"index_checkpoint_position\":%" PRIu64 ",\"recovered_truncated_bytes\":%" PRIu64
                      ",\"status\":\"%s\",\"version\":\"%s\"}\n",
                  st.appends, st.appended_events, st.reads, atomic_load(&srv->metrics.append_requests),
                  atomic_load(&srv->metrics.read_requests), st.fsyncs, st.group_commits,
                  atomic_load(&srv->metrics.watchers), atomic_load(&srv->metrics.connections),
                  st.index_checkpoint_position, st.recovered_truncated_bytes, health_status(srv, &st),
                  evs_version_string());
    enum MHD_Result ret = evsd_respond(r, 200, "application/json", s.p, s.len);
    evsd_str_free(&s);
    return ret;
}

/* A Prometheus histogram from per-bucket counts (not cumulative) with bounds in `scale` units. */
static void histogram(evsd_str *s, const char *name, const char *help, const uint64_t *counts,
                      const uint64_t *bounds, double scale, double sum)
{
    evsd_str_addf(s, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < 15; i++) {
        cum += counts[i];
        evsd_str_addf(s, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, (double)bounds[i] * scale, cum);
    }
    cum += counts[15];
    evsd_str_addf(s, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n", name, cum, name, sum,
                  name, cum);
}

static void counter(evsd_str *s, const char *name, const char *type, const char *help, uint64_t v)
{
    evsd_str_addf(s, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, v);
}

enum MHD_Result evsd_route_metrics(evsd_req *r)
{
    evsd_server *srv = r->srv;
    evsd_metrics *m = &srv->metrics;
    evs_stats st;
    evs_stat(srv->store, &st);
    static const uint64_t lat_bounds[15] = EVS_FSYNC_BUCKETS_US;
    static const uint64_t group_bounds[15] = EVS_GROUP_BUCKETS;
    uint64_t app[16];
    for (int i = 0; i < 16; i++) app[i] = atomic_load_explicit(&m->append_hist[i], memory_order_relaxed);
    evsd_str s = {0};
    histogram(&s, "evstore_append_seconds", "Append request latency, from request to durable acknowledgement.", app,
              lat_bounds, 1e-6, (double)atomic_load(&m->append_sum_us) / 1e6);
    histogram(&s, "evstore_fsync_seconds", "Latency of each fdatasync of a segment.", st.fsync_buckets, lat_bounds, 1e-6,
              (double)st.fsync_sum_us / 1e6);
    uint64_t group_sum = st.appended_events;
    histogram(&s, "evstore_group_commit_events", "Events made durable by one group commit.", st.group_buckets,
              group_bounds, 1, (double)group_sum);
    counter(&s, "evstore_events_appended_total", "counter", "Events appended since start.", st.appended_events);
    counter(&s, "evstore_append_requests_total", "counter", "Append requests answered.", atomic_load(&m->append_requests));
    counter(&s, "evstore_read_requests_total", "counter", "Read requests served.", atomic_load(&m->read_requests));
    counter(&s, "evstore_events_served_total", "counter", "Events written to responses.", atomic_load(&m->events_served));
    counter(&s, "evstore_fsyncs_total", "counter", "Data syncs of segments.", st.fsyncs);
    counter(&s, "evstore_position", "gauge", "Last committed global position.", st.position);
    counter(&s, "evstore_streams", "gauge", "Streams with at least one event.", st.streams);
    counter(&s, "evstore_segments", "gauge", "Segment files.", st.segments);
    counter(&s, "evstore_bytes", "gauge", "Bytes of segment files.", st.bytes);
    counter(&s, "evstore_watchers", "gauge", "Open watch responses.", atomic_load(&m->watchers));
    counter(&s, "evstore_watch_ring_events", "gauge", "Committed events held encoded in the watch ring.",
            atomic_load(&m->watch_ring_events));
    counter(&s, "evstore_watch_ring_bytes", "gauge", "Bytes of the watch ring's encoded events.",
            atomic_load(&m->watch_ring_bytes));
    counter(&s, "evstore_watch_fallbacks_total", "counter",
            "Times a watcher fell behind the watch ring and continued from the store.", atomic_load(&m->watch_fallbacks));
    counter(&s, "evstore_connections", "gauge", "Open HTTP connections.", atomic_load(&m->connections));
    counter(&s, "evstore_failed", "gauge", "1 when the store has failed (fail-stop).", (uint64_t)st.failed);
    evsd_str_addf(&s, "# HELP evstore_http_responses_total HTTP responses by status class.\n"
                      "# TYPE evstore_http_responses_total counter\n");
    for (int c = 1; c <= 5; c++)
        evsd_str_addf(&s, "evstore_http_responses_total{code=\"%dxx\"} %" PRIu64 "\n", c, atomic_load(&m->status[c]));
    enum MHD_Result ret = evsd_respond(r, 200, "text/plain; version=0.0.4", s.p, s.len);
    evsd_str_free(&s);
    return ret;
}
