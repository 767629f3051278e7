/*
 * config.h — evstored's settings: every flag, its environment variable
 * (EVSTORE_ + the flag in capitals, '-' as '_'), defaults and validation.
 */
#ifndef EVSD_CONFIG_H
#define EVSD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <evstore.h>

typedef struct evsd_config {
    const char *data;            /* --data DIR */
    char listen_host[256];       /* from --listen ADDR:PORT */
    uint16_t listen_port;
    const char *fsync;           /* the policy as given ("always", "interval:100", "never") */
    evs_sync_mode sync;          /* parsed */
    uint32_t sync_interval_ms;
    uint64_t segment_size;
    uint64_t max_event_size;
    uint64_t max_body_size;
    unsigned max_connections;
    const char *auth_tokens;     /* --auth-tokens FILE or NULL */
    const char *tls_cert;        /* --tls-cert FILE or NULL */
    const char *tls_key;
    int read_only;
    int log_json;                /* --log-format json */
    int log_level;               /* EVS_LOG_* */
    unsigned heartbeat_default;  /* seconds between watch heartbeats unless ?heartbeat= */
    unsigned threads;            /* HTTP worker threads */
    unsigned idle_timeout;       /* seconds before an idle connection is closed */
    uint64_t watch_buffer;       /* bytes of encoded events the watch ring keeps */
} evsd_config;

/* Parse argv and the environment into cfg. On a bad value prints one clear
 * line to stderr and returns 2; on --help/--version prints and returns 1. */
int evsd_config_parse(evsd_config *cfg, int argc, char **argv);

/* Parse "123", "64K", "256M", "1G" (powers of 1024). 0 on success. */
int evsd_parse_size(const char *text, uint64_t *out);

#endif
