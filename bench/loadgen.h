/*
 * loadgen.h — the load generator under bench_http: clocks, an
 * HdrHistogram-style latency histogram, growable buffers, an incremental
 * HTTP/1.1 response parser, non-blocking TCP connections on loopback, and an
 * epoll engine that drives many keep-alive connections in two modes:
 *
 *  closed loop  N connections, each with exactly one request in flight; a
 *               new request is issued the moment the previous answer ends.
 *               Latency = answer end - actual send.
 *  open loop    requests are due at a fixed rate (t0 + i/R) whatever the
 *               server does; a due request waits for an idle connection if
 *               all are busy. Latency = answer end - INTENDED send time, so a
 *               slow server cannot hide its stalls by slowing the client down
 *               (no coordinated omission).
 *
 * The engine knows nothing about protocols: a driver (lg_ops) builds and sends
 * a request on a connection and says when its answer is complete. HTTP and
 * the Redis protocol use the raw-socket helpers below; libpq does its own I/O
 * on the same descriptor.
 *
 * Units: nanoseconds (CLOCK_MONOTONIC) unless a name says otherwise.
 */
#ifndef EVS_LOADGEN_H
#define EVS_LOADGEN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- clocks ---- */
uint64_t lg_now_ns(void);                  /* CLOCK_MONOTONIC */
int64_t lg_wall_us(void);                  /* CLOCK_REALTIME, microseconds since the epoch */
void lg_sleep_ns(uint64_t ns);

/* ---- latency histogram: log-linear buckets, values < 128 ns exact, then 64
 *      linear sub-buckets per power of two (relative error < 1.6 %) ---- */
#define LG_HIST_BUCKETS (128u + 57u * 64u)
typedef struct lg_hist {
    uint64_t counts[LG_HIST_BUCKETS];
    uint64_t n, min, max;                  /* samples; exact extremes (ns) */
    double sum;                            /* for the mean */
} lg_hist;

void lg_hist_init(lg_hist *h);
void lg_hist_add(lg_hist *h, uint64_t ns);
void lg_hist_merge(lg_hist *into, const lg_hist *from);
/** The value at quantile q in (0, 1]: the bucket's midpoint, clamped to [min, max]; 0 if empty. */
uint64_t lg_hist_quantile(const lg_hist *h, double q);
double lg_hist_mean(const lg_hist *h);

/* ---- PRNG (splitmix64: fast, seeded, reproducible) ---- */
uint64_t lg_rand(uint64_t *state);
uint64_t lg_rand_below(uint64_t *state, uint64_t n);

/* ---- growable buffer ---- */
typedef struct lg_buf {
    char *p;
    size_t len, cap;                       /* bytes held, allocated */
    size_t off;                            /* consumed from the front */
} lg_buf;

int lg_buf_reserve(lg_buf *b, size_t more);
int lg_buf_add(lg_buf *b, const void *p, size_t n);
int lg_buf_addf(lg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lg_buf_reset(lg_buf *b);              /* len = off = 0, memory kept */
void lg_buf_compact(lg_buf *b);            /* drop the consumed front */
void lg_buf_free(lg_buf *b);

/* ---- incremental HTTP/1.1 response parser (Content-Length or chunked) ---- */
typedef void (*lg_body_fn)(void *ud, const char *p, size_t n);
typedef struct lg_http {
    int state;                             /* internal */
    int status;                            /* of the answer being parsed / last parsed */
    int chunked;
    int close;                             /* the server said Connection: close */
    uint64_t left;                         /* bytes left in the body or the chunk */
    uint64_t body_bytes;                   /* body bytes of this answer so far */
    lg_body_fn on_body;                    /* optional: sees every body byte */
    void *body_ud;
} lg_http;

void lg_http_begin(lg_http *h, lg_body_fn on_body, void *ud);
/** Parse from p[0..n). *used = bytes consumed. Returns 1 when an answer ended
 *  (the parser is ready for the next one), 0 when more bytes are needed
 *  (bytes not consumed must be offered again with more after them), -1 if malformed. */
int lg_http_feed(lg_http *h, const char *p, size_t n, size_t *used);

/* ---- connections ---- */
enum { LG_MORE_IN = 0, LG_DONE = 1, LG_MORE_OUT = 2, LG_ERR = -1 };
#define LG_MAX_KINDS 4

typedef struct lg_conn {
    int fd;
    int id;                                /* index among the connections of a run */
    int dead;                              /* failed: the engine stops using it */
    int busy;                              /* a request is in flight */
    unsigned ev;                           /* epoll events registered */
    int kind;                              /* which histogram the request in flight goes to */
    int ok;                                /* set by the driver: the answer was a success */
    uint32_t nevents;                      /* events the request carried or the answer held */
    uint64_t t0;                           /* latency origin (ns): actual or intended send */
    uint64_t seq;                          /* requests issued on this connection */
    uint64_t rng;                          /* per-connection PRNG state */
    lg_buf out;                            /* raw protocols: bytes still to send */
    lg_buf in;                             /* raw protocols: bytes received, not parsed */
    lg_http http;                          /* HTTP connections */
    int expect;                            /* raw protocols: replies still expected */
    uint64_t counter;                      /* a driver's counter (e.g. lines of a streamed answer) */
    void *proto;                           /* a driver's own state */
    void *user;                            /* the workload's own state */
} lg_conn;

/** A blocking TCP connection to 127.0.0.1:port with TCP_NODELAY; -1 on failure (errno). */
int lg_tcp_connect(int port);
int lg_set_nonblock(int fd, int on);
/** Send c->out: 1 all sent, 0 the socket is full (wait for EPOLLOUT), -1 error. */
int lg_conn_flush(lg_conn *c);
/** Read what is available into c->in: bytes read (> 0), 0 on EOF, -1 would block, -2 error. */
ssize_t lg_conn_fill(lg_conn *c);
void lg_conn_close(lg_conn *c);            /* closes fd, frees buffers */

/** Raw-socket progress for a driver's on_io: flushes c->out on EPOLLOUT, reads
 *  on EPOLLIN and calls parse(c, ud) (LG_DONE / LG_MORE_IN / LG_ERR). */
int lg_raw_io(lg_conn *c, unsigned events, int (*parse)(lg_conn *c, void *ud), void *ud);
/** Blocking round trip on a blocking socket: send req, parse the whole answer with h
 *  (its on_body sees the body). Returns the HTTP status, or -1. */
int lg_http_roundtrip(int fd, const char *req, size_t len, lg_http *h);
/** HTTP parse callback for lg_raw_io: LG_DONE at the end of an answer; sets c->ok = 2xx. */
int lg_http_parse_conn(lg_conn *c, void *ud);

/* ---- the engine ---- */
typedef struct lg_ops {
    /** Build and start sending the next request on c (set c->kind, c->nevents).
     *  LG_MORE_IN (sent, wait for the answer), LG_MORE_OUT (output pending) or LG_ERR. */
    int (*issue)(lg_conn *c, void *ud);
    /** Progress on c after epoll reported events: LG_DONE (the answer is complete and
     *  c->ok says whether it succeeded), LG_MORE_IN, LG_MORE_OUT or LG_ERR. */
    int (*on_io)(lg_conn *c, void *ud, unsigned events);
} lg_ops;

typedef struct lg_run_cfg {
    int open_loop;                         /* 0: closed loop; 1: fixed rate */
    double rate;                           /* open loop: requests per second (all connections) */
    uint64_t warmup_ns;                    /* run, but do not record */
    uint64_t measure_ns;                   /* the measured window */
    uint64_t drain_ns;                     /* at most this long for answers still due at the end */
    volatile int *stop;                    /* optional: stop early when *stop != 0 */
    void (*mark)(void *arg, int which);    /* optional: called as the window starts (0) and ends (1) */
    void *mark_arg;
} lg_run_cfg;

typedef struct lg_result {
    lg_hist *hist[LG_MAX_KINDS];           /* latencies of the measured window, per kind */
    uint64_t reqs[LG_MAX_KINDS];           /* answers in the window, per kind */
    uint64_t events[LG_MAX_KINDS];         /* events carried by them */
    uint64_t failed;                       /* non-success answers in the window */
    uint64_t conn_errors;                  /* connections that failed */
    uint64_t window_ns;                    /* the measured window actually run */
    uint64_t max_queue;                    /* open loop: most requests waiting for a connection */
    uint64_t unfinished;                   /* open loop: due in the window, unanswered at drain end
                                              (recorded with their age then: a lower bound) */
    uint64_t t_measure0, t_measure1;       /* window bounds (monotonic ns) */
} lg_result;

int lg_result_init(lg_result *r);          /* allocates the histograms */
void lg_result_free(lg_result *r);
/** Drive conns[0..n) (already connected, fd set) until the window ends, then
 *  drain. Returns 0, or -1 if no connection is usable. */
int lg_run(const lg_run_cfg *cfg, lg_conn *conns, int n, const lg_ops *ops, void *ud, lg_result *res);

#endif
