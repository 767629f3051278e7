/*
 * peers.h — the systems bench_http measures, behind one interface, and what
 * they share: child processes (started and stopped only by us), their CPU
 * time and memory from /proc, and the benchmark's events.
 *
 * A system is either a server reached over loopback TCP (evstore, Redis,
 * PostgreSQL, NATS JetStream), driven by the epoll engine of loadgen.h through its
 * issue_*()/on_io() functions, or a library running in this process
 * (SQLite), driven through its *_sync() functions by one thread.
 *
 * Streams: an append names a stream; each system stores the event in its own
 * idea of one (evstore: the stream; Redis: one stream key per name;
 * PostgreSQL/SQLite: rows of an events table with unique (stream, version);
 * NATS: the subject "ev.<stream>" of one JetStream stream).
 */
#ifndef EVS_BENCH_PEERS_H
#define EVS_BENCH_PEERS_H

#include <stdint.h>
#include <sys/types.h>

#include "../loadgen.h"

/* ---- the events: 200 bytes of JSON data each ---- */
#define BH_DATA_LEN 200u
#define BH_DATA_VARIANTS 1024u
#define BH_EVENT_TYPE "OrderPlaced"
/** Variant i (mod BH_DATA_VARIANTS) of the 200-byte data object; NUL-terminated, borrowed forever. */
const char *bh_event_data(uint64_t i);

/* ---- child processes ---- */
/** fork + exec argv[0] (a path) with stdout/stderr appended to log_path, as
 *  user `user` if given (we must be root then), in its own process group,
 *  killed if we die (PR_SET_PDEATHSIG). Registered for bh_children_kill().
 *  Returns the pid, or -1. */
pid_t bh_spawn(char *const argv[], const char *log_path, const char *user);
/** Run argv to completion like bh_spawn; returns its exit status, or -1. */
int bh_run(char *const argv[], const char *log_path, const char *user, unsigned timeout_ms);
/** Send sig, wait up to timeout_ms, then SIGKILL; reaps it. Returns the exit status or -1. */
int bh_stop_pid(pid_t pid, int sig, unsigned timeout_ms);
/** SIGKILL every child still registered (for exits on errors and signals). Async-signal-safe. */
void bh_children_kill(void);
/** 1 if pid (our child) has exited (and is reaped). */
int bh_child_exited(pid_t pid);
/** Look up a user: 0 and uid/gid, or -1. */
int bh_user_ids(const char *user, uid_t *uid, gid_t *gid);

/* ---- /proc ---- */
/** CPU time (user + system, all threads) of pid; with tree, plus its direct children's. */
uint64_t bh_cpu_ns(pid_t pid, int tree);
/** Memory of pid in KiB: VmRSS; with tree, the sum of Pss over pid and its direct
 *  children (shared memory counted once). */
uint64_t bh_mem_kib(pid_t pid, int tree);
/** The threads of pid: up to max of (tid, name, CPU ns); returns how many. */
typedef struct bh_thread { int tid; char name[20]; uint64_t cpu_ns; } bh_thread;
int bh_threads(pid_t pid, bh_thread *out, int max);
/** Busy and total jiffies of all CPUs (/proc/stat). */
void bh_machine_jiffies(uint64_t *busy, uint64_t *total);
/** A free TCP port on 127.0.0.1 (bound, read, closed: a race is possible, callers retry). */
int bh_free_port(void);
/** Remove a directory tree. 0 or -1. */
int bh_rm_rf(const char *path);
/** A glob's highest-sorting match (e.g. "/usr/lib/postgresql/ * /bin/postgres") into out; 0 or -1. */
int bh_glob_last(const char *pattern, char *out, size_t cap);

/* ---- systems ---- */
typedef struct bh_sys bh_sys;
struct bh_sys {
    const char *name;                      /* "evstore", "redis", "postgres", "sqlite", "nats" */
    char config[160];                      /* how it runs, for the tables */
    int inproc;                            /* 1: a library in this process, one thread */
    pid_t pid;                             /* the server (0: in process) */
    int tree;                              /* its children count for CPU/memory (postgres) */
    int want_batch;                        /* set before conn_open: the batch size appends will use */
    void *priv;

    /* servers */
    int (*conn_open)(bh_sys *s, lg_conn *c);                       /* c->fd set, non-blocking */
    void (*conn_close)(bh_sys *s, lg_conn *c);
    int (*issue_append)(bh_sys *s, lg_conn *c, const char *stream, int nev);
    int (*issue_read)(bh_sys *s, lg_conn *c, const char *stream, int limit, int backward);  /* NULL: no stream reads */
    int (*on_io)(bh_sys *s, lg_conn *c, unsigned events);          /* c->nevents = events read */

    /* in process */
    int (*append_sync)(bh_sys *s, const char *stream, int nev);    /* 0 or -1 */
    int (*read_sync)(bh_sys *s, const char *stream, int limit, int backward, uint32_t *nread);

    /* both: blocking */
    /** Load nevents events in batches of batch, each event to a random stream
     *  "<prefix><k>", k < nstreams. 0 or -1. */
    int (*fill)(bh_sys *s, uint64_t nevents, int batch, uint32_t nstreams, const char *prefix, uint64_t seed);
    /** Read every event in the store once, in its order; count events and bytes received. */
    int (*full_read)(bh_sys *s, uint64_t *events, uint64_t *bytes);
    uint64_t (*mem_kib)(bh_sys *s);                                /* optional (in-process) */
    void (*stop)(bh_sys *s);                                       /* stop it; frees priv */
};

/* Each returns 0 and a started system, or -1 with a sentence in why. dir is
 * a fresh directory for its data (removed by the caller). */
int bh_redis_start(bh_sys *s, const char *dir, int appendfsync_always, char *why, size_t whylen);
/** Redis only: switch appendfsync live (CONFIG SET). */
int bh_redis_set_fsync(bh_sys *s, int always);
int bh_pg_start(bh_sys *s, const char *dir, const char *user, char *why, size_t whylen);
int bh_sqlite_start(bh_sys *s, const char *dir, char *why, size_t whylen);
/** NATS JetStream (nats-server -js, one file-storage stream): appends and full reads only
 *  (issue_read is NULL: JetStream 2.9 has no "N messages of one subject" request). */
int bh_nats_start(bh_sys *s, const char *dir, char *why, size_t whylen);
/** Which peers this build can drive (compiled in). */
int bh_redis_available(void);
int bh_pg_available(void);
int bh_sqlite_available(void);
int bh_nats_available(void);

#endif
