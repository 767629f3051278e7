/*
 * server.h — what the parts of evstored share: the server object, the
 * per-request context, and the helpers routes use to answer.
 *
 * Threads: `threads` libmicrohttpd daemons, each run by one thread of ours
 * (an epoll loop: http.c) with its own listening socket on the same port
 * (SO_REUSEPORT); every handler
 * and content reader runs on one of them and must never block on the disk's
 * fsync. Appends suspend their connection and are resumed by the store's
 * writer thread (evs_append_async). Watch responses suspend when they have
 * nothing to send and are resumed by the watch hub thread, which also
 * encodes each committed event once into a ring they copy from (watch.c).
 */
#ifndef EVSD_SERVER_H
#define EVSD_SERVER_H

#include <microhttpd.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <evstore.h>

#include "config.h"
#include "metrics.h"

typedef struct evsd_hub evsd_hub;
typedef struct evsd_loop evsd_loop;

typedef struct evsd_server {
    evsd_config cfg;                 /* settings */
    evs_store *store;                /* the engine */
    struct MHD_Daemon *daemons[64];  /* libmicrohttpd: one daemon per --threads, each run by a loop */
    evsd_loop *loops[64];            /* the thread that runs daemons[i] (http.c) */
    unsigned ndaemons;
    evsd_hub *hub;                   /* wakes suspended watchers */
    evsd_metrics metrics;            /* counters and histograms for /metrics */
    int64_t started_us;              /* for uptime */
    atomic_int stopping;             /* set by SIGTERM/SIGINT */
    atomic_int inflight;             /* appends queued to the writer, not yet answered */
    atomic_int in_handler;           /* libmicrohttpd threads inside the request handler now */
    atomic_int streams_open;         /* streamed answers (reads, watches) not yet finished */
    atomic_int backups_open;         /* GET /backup answers whose helper thread is not joined yet */
    struct evsd_auth *auth;          /* NULL when authentication is off */
} evsd_server;

/* A growable byte string. */
typedef struct evsd_str {
    char *p;
    size_t len, cap;
} evsd_str;

int evsd_str_reserve(evsd_str *s, size_t n);  /* room for n more bytes + NUL */
int evsd_str_add(evsd_str *s, const void *p, size_t n);
int evsd_str_addf(evsd_str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int evsd_str_add_json_string(evsd_str *s, const char *p, size_t n); /* with quotes, escaped */
void evsd_str_free(evsd_str *s);

enum evsd_method { M_GET, M_HEAD, M_POST, M_PUT, M_DELETE, M_OTHER };

/* One request. Lives from the first handler call to the completion callback. */
typedef struct evsd_req {
    evsd_server *srv;
    struct MHD_Connection *conn;
    enum evsd_method method;
    const char *url;                 /* borrowed from MHD for the request's life */
    evsd_str body;                   /* the request body */
    int body_too_big;                /* over --max-body-size: answered 413 */
    uint64_t start_ns;               /* for latency metrics */
    int status;                      /* status sent, for metrics */
    int close_after;                 /* answer with Connection: close */
    /* asynchronous append */
    pthread_mutex_t mu;              /* guards the three fields below against the writer thread */
    int append_queued;               /* evs_append_async accepted it */
    int append_done;                 /* the writer called back */
    int suspended;                   /* we suspended the connection, waiting */
    int append_rc;                   /* its outcome */
    evs_parsed *parsed;              /* the events (owned) */
    evs_commit *commits;             /* per-event results */
    evs_append_result result;
    char *stream;                    /* single-stream append: the stream (owned) */
    char *expected_text;             /* the expected version as the request gave it */
    char **cond_types;               /* condition filter (owned) */
    size_t cond_ntypes;
    char *cond_prefix;
    evs_condition cond;
    struct evsd_job *job;            /* [consumers] a consumer/projection change running off-thread (consumers.c) */
} evsd_req;

/* ---- answering (http.c) ---- */
/* Queue a complete response. body is copied. */
enum MHD_Result evsd_respond(evsd_req *r, unsigned status, const char *content_type,
                             const char *body, size_t len);
/* {"error":code,"message":message} */
enum MHD_Result evsd_error(evsd_req *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An error from the library, mapped to status and code. */
enum MHD_Result evsd_store_error(evsd_req *r, int rc, const char *what);
const char *evsd_arg(evsd_req *r, const char *name);
/* 0 if every query parameter is in allowed (NULL-terminated; NULL = none);
 * else the 400 answer naming the unknown one is queued and -1 returned. */
int evsd_check_args(evsd_req *r, const char *const *allowed);
/* libmicrohttpd may accept this many connections over --max-connections, so
 * that they get a 503 instead of waiting unanswered. */
#define EVSD_OVERFLOW_CONNECTIONS 16u
const char *evsd_header(evsd_req *r, const char *name);

/* ---- authentication (auth.c) ---- */
/* 0 if the request may touch stream (NULL: no single stream) for reading or
 * writing; otherwise the 401/403 answer is queued and -1 returned. With a
 * prefix-scoped token, *prefix_out (if given) is its prefix ("" = all). */
int evsd_auth_require(evsd_req *r, const char *stream, int write, const char **prefix_out);
void evsd_auth_free(evsd_server *srv);

/* ---- routes ---- */
enum MHD_Result evsd_route_append(evsd_req *r, const char *stream);  /* POST /streams/{s}; stream NULL = POST /events */
enum MHD_Result evsd_append_finish(evsd_req *r);                     /* second call after the writer answered */
void evsd_append_cleanup(evsd_req *r);
enum MHD_Result evsd_route_read(evsd_req *r, const char *stream);    /* GET /events, GET /streams/{s} */
enum MHD_Result evsd_route_get_event(evsd_req *r, const char *id);   /* GET /events/{id} */
enum MHD_Result evsd_route_list_streams(evsd_req *r);                /* GET /streams */
enum MHD_Result evsd_route_health(evsd_req *r);
enum MHD_Result evsd_route_stats(evsd_req *r);
enum MHD_Result evsd_route_metrics(evsd_req *r);
/* [consumers] projections and durable consumers (projections.c, consumers.c) */
enum MHD_Result evsd_route_projection(evsd_req *r, const char *name);  /* /projections/{name} */
enum MHD_Result evsd_route_consumer(evsd_req *r, const char *path);    /* /consumers/{name}[/events|/checkpoint] */
enum MHD_Result evsd_job_finish(evsd_req *r);                          /* second call after r->job ran */
/* [backup] GET /backup?since=P: a backup archive streamed from a helper thread (backup.c) */
enum MHD_Result evsd_route_backup(evsd_req *r);
void evsd_job_free(evsd_req *r);                                       /* request completed */

/* ---- watch hub (watch.c) ---- */
typedef struct evsd_stream_state evsd_stream_state;
int evsd_hub_start(evsd_server *srv);
void evsd_hub_stop(evsd_server *srv);   /* resumes every watcher; they end their responses */
void evsd_hub_free(evsd_server *srv);

/* ---- the daemon (http.c) ---- */
int evsd_http_start(evsd_server *srv);
/* Resume a suspended connection from any thread (the writer, the watch hub,
 * a job) and wake its daemon's thread, once for however many resumes happen
 * before it runs: one eventfd write per wake-up, not one per connection. */
void evsd_resume(evsd_server *srv, struct MHD_Connection *conn);
/* Hand a connected socket to the first daemon (MHD_add_connection on its
 * loop's thread: libmicrohttpd's external mode wants it there). Owns fd. */
int evsd_http_add_connection(evsd_server *srv, int fd, const struct sockaddr *addr, socklen_t addrlen);
void evsd_http_quiesce(evsd_server *srv);
void evsd_http_stop(evsd_server *srv);
char *evsd_read_file(const char *path, size_t *len);

/* ---- logging (log.c) ---- */
void evsd_log_init(int json, int level);
void evsd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void evsd_log_store(void *ctx, int level, const char *message);

uint64_t evsd_now_ns(void);

#endif
