/*
 * consumers.h — what server/consumers.c and server/projections.c share:
 * changes that run off the HTTP threads ("jobs"), and the parameters and
 * streamed answer of an event read.
 *
 * Why jobs: creating, checkpointing or deleting a consumer and defining or
 * deleting a projection are appends to system streams, so they wait for the
 * group commit's fsync. HTTP threads never block on an fsync (server.h), so
 * such a change runs on a thread of its own while the connection is
 * suspended (counted in srv->inflight, so shutdown waits for it), and the
 * handler's next call (evsd_job_finish) sends the answer.
 */
#ifndef EVSD_CONSUMERS_H
#define EVSD_CONSUMERS_H

#include "server.h"

typedef struct evsd_job evsd_job;
struct evsd_job {
    evsd_req *r;                         /* the request it answers */
    int (*run)(evsd_job *j);             /* job thread: the blocking library call; returns its code */
    enum MHD_Result (*answer)(evsd_req *r, evsd_job *j);  /* HTTP thread, once run returned */
    int rc;                              /* what run returned */
    int done;                            /* r->mu: run returned */
    int suspended;                       /* r->mu: the connection waits for run */
    char *name;                          /* the consumer or projection (owned) */
    char *text;                          /* a definition or a state (owned), or NULL */
    size_t len;                          /* bytes of text */
    uint64_t position;                   /* checkpoint position */
    int created;                         /* create/define: 1 if it did not exist */
    char **types;                        /* projection filter (owned) */
    size_t ntypes;
    char *prefix;                        /* projection filter prefix (owned) or NULL */
};

/* A zeroed job for r with its name copied, or NULL. */
evsd_job *evsd_job_new(evsd_req *r, const char *name);
/* Free a job that was never started (NULL is fine). */
void evsd_job_discard(evsd_job *j);
/* Run j->run on a new thread and suspend r's connection until it returns;
 * the answer comes from j->answer in evsd_job_finish. Takes j. */
enum MHD_Result evsd_job_start(evsd_req *r, evsd_job *j);

/* The parameters of an event read. */
typedef struct evsd_read_args {
    uint64_t from;                       /* inclusive position; 0 = the start (the end backward) */
    uint64_t limit;                      /* with has_limit */
    int has_limit;
    int backward;                        /* direction=backward */
    int watch;                           /* watch=true */
    int sse;                             /* Accept: text/event-stream */
    uint64_t heartbeat_s;                /* seconds between heartbeats while watching */
} evsd_read_args;

/* Parse from, limit, direction, watch, heartbeat, Accept and Last-Event-ID
 * (positional = 0: from, direction and Last-Event-ID are refused — a
 * consumer's events start after its checkpoint). type and stream_prefix are
 * refused (a projection or consumer has its own filter). 0, or -1 with a 400
 * queued. */
int evsd_read_args_parse(evsd_req *r, evsd_read_args *a, int positional);
/* Answer 200 with it's events as JSON Lines or SSE, streamed, watching when
 * asked. Takes it. */
enum MHD_Result evsd_answer_events(evsd_req *r, evs_iter *it, const evsd_read_args *a);

/* 0 if every query parameter is in allowed (NULL-terminated; NULL = none),
 * else -1 with a 400 naming the unknown one queued: a typo (?limt=10) is an
 * error, not a silent no-op. */
int evsd_cp_check_args(evsd_req *r, const char *const *allowed);

/* "<kind><name>" validated as a system stream name into out; 0 or -1. */
int evsd_system_stream(char out[256], const char *kind, const char *name);

#endif
