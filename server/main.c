/*
 * main.c — evstored: settings, the store, the HTTP daemon, signals.
 *
 * Shutdown on SIGTERM/SIGINT: stop accepting connections, end watch
 * answers, let in-flight appends finish (they are acknowledged only after
 * their fsync) and streamed answers finish (each bounded by 5 s), close the
 * store (final sync and index checkpoint), exit 0.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

/* Each connection is a descriptor: make room for --max-connections of them. */
static void raise_nofile(unsigned want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t need = (rlim_t)want + 256;
    if (rl.rlim_cur >= need) return;
    rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need)
        evsd_log(EVS_LOG_WARN, "open-file limit is %llu, below what --max-connections %u needs",
                 (unsigned long long)rl.rlim_cur, want);
}

extern int evsd_auth_load(evsd_server *srv);

int main(int argc, char **argv)
{
    evsd_server srv;
    memset(&srv, 0, sizeof srv);
    int rc = evsd_config_parse(&srv.cfg, argc, argv);
    if (rc == 1) return 0;
    if (rc) return rc;
    evsd_log_init(srv.cfg.log_json, srv.cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    /* every thread inherits this mask; the main thread takes the signals with sigwait */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    raise_nofile(srv.cfg.max_connections);

    evs_options opt;
    evs_options_init(&opt);
    opt.read_only = srv.cfg.read_only;
    opt.create = !srv.cfg.read_only;
    opt.sync = srv.cfg.sync;
    opt.sync_interval_ms = srv.cfg.sync_interval_ms;
    opt.segment_size = srv.cfg.segment_size;
    opt.max_event_size = (uint32_t)srv.cfg.max_event_size;
    opt.log = evsd_log_store;
    opt.log_level = srv.cfg.log_level;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    srv.started_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    rc = evs_open(srv.cfg.data, &opt, &srv.store);
    if (rc) {
        evsd_log(EVS_LOG_ERROR, "cannot open the store in %s: %s (%s)", srv.cfg.data, evs_strerror(rc), evs_errname(rc));
        evs_close(srv.store);
        return 1;
    }
    if (srv.cfg.auth_tokens && evsd_auth_load(&srv) != 0) {
        evs_close(srv.store);
        return 2;
    }
    if (evsd_hub_start(&srv) != 0 || evsd_http_start(&srv) != 0) {
        evsd_hub_stop(&srv);
        evsd_hub_free(&srv);
        evs_close(srv.store);
        return 1;
    }
    evsd_log(EVS_LOG_INFO, "evstored %s listening on %s%s:%u (data %s, fsync %s%s%s)", evs_version_string(),
             srv.cfg.tls_cert ? "https://" : "http://", srv.cfg.listen_host, srv.cfg.listen_port, srv.cfg.data,
             srv.cfg.fsync, srv.cfg.read_only ? ", read-only" : "", srv.cfg.auth_tokens ? ", auth on" : "");
    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {}
    evsd_log(EVS_LOG_INFO, "%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    atomic_store(&srv.stopping, 1);
    evsd_http_quiesce(&srv);        /* no new connections */
    evsd_hub_stop(&srv);            /* watchers end their answers */
    /* requests being handled right now get past their `stopping` check (see
     * handler() in http.c), then appends already queued finish (and are
     * answered) before the daemon stops */
    for (int i = 0; i < 1000 && atomic_load(&srv.in_handler) > 0; i++) {
        struct timespec d = {0, 1000000L};
        nanosleep(&d, NULL);
    }
    for (int i = 0; i < 6000 && atomic_load(&srv.inflight) > 0; i++) {  /* 30 s: a slow disk */
        struct timespec d = {0, 5 * 1000000L};
        nanosleep(&d, NULL);
    }
    /* streamed answers finish: watches send their last chunk, plain reads run
     * to their end (bounded: a client that does not read, or a read of
     * gigabytes, is cut by the daemon's stop, without the last chunk, so its
     * client sees an error, never a short answer that looks whole) */
    for (int i = 0; i < 1000 && atomic_load(&srv.streams_open) > 0; i++) {
        struct timespec d = {0, 5 * 1000000L};
        nanosleep(&d, NULL);
    }
    evsd_http_stop(&srv);
    evsd_hub_free(&srv);
    evsd_auth_free(&srv);
    rc = evs_close(srv.store);
    evsd_log(rc ? EVS_LOG_ERROR : EVS_LOG_INFO, "stopped%s%s", rc ? ": " : "", rc ? evs_strerror(rc) : "");
    return rc ? 1 : 0;
}
