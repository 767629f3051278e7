/*
 * store_int.h — the insides of an evs_store, shared by the files of src/store/.
 *
 * LOCKS AND WHAT THEY PROTECT (see docs/DESIGN.md "Threads and locks")
 *   q_mu        the append queue (q_head/q_tail), closing
 *   seg_lock    the segments array (rwlock: readers look up, the writer appends)
 *   tbl_lock    the stream table's committed fields and the committed position
 *               (rwlock: the writer takes it once per group commit to publish)
 *   wait_mu     wait_cv, used to wake evs_wait callers after each publish
 *   fail_mu     failure reason
 *   proj->lock, each projection's mu, proj->sys_mu[]: see projection.c ([projections])
 *   ix->mu      the index thread's job queue (indexer.c)
 * Only the writer thread writes the log, assigns positions and versions, and
 * touches the pending (uncommitted) fields. Only the index thread writes the
 * checkpointed index files (runs, manifests, streams.idx, checkpoint.idx,
 * projection headers). Readers read files with pread and never see past
 * `committed`.
 */
#ifndef EVS_STORE_INT_H
#define EVS_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "evs_int.h"
#include "index/lsm.h"
#include "log/record.h"

#define EVS_OFFSETS_HDR_SIZE 32u  /* header of "<base>.offsets.idx" */
#define EVS_LOCK_FILE "evstore.lock"
#define EVS_CHECKPOINT_FILE "checkpoint.idx"
#define EVS_STREAMS_FILE "streams.idx"

/* One segment file and its offsets index. Never freed while the store is open. */
typedef struct evs_segment {
    uint64_t base;               /* first position in this segment */
    uint64_t salt;               /* from its header; seeds record checksums */
    char name[32];               /* "<base:20>.seg" */
    evs_file *file;              /* segment file (read-write if active in a writer) */
    evs_file *offsets;           /* "<base>.offsets.idx": u32 file offset per position */
    _Atomic uint64_t end;        /* file offset just past the last committed record */
    _Atomic uint64_t count;      /* committed records in it */
} evs_segment;

/* One stream. Allocated once from its table's arena (evs_stream_blk), never
 * moved or freed while the store is open: 64 bytes plus the name, rounded up
 * to 8. Its key in the streams index, the XXH3-128 of its name, is not kept:
 * it is computed where it is needed (evs__stream_hash, a few ns). */
typedef struct evs_stream {
    uint64_t version;            /* committed version (0 = not yet visible) — tbl_lock */
    uint64_t first_pos;          /* position of version 1 — tbl_lock */
    uint64_t last_pos;           /* position of the committed last version — tbl_lock */
    uint64_t pending;            /* writer only: version including staged events */
    uint64_t pending_last_pos;   /* writer only: last_pos including staged events */
    uint64_t ck_version;         /* index thread: version as persisted in streams.idx (0: not there) */
    uint64_t ck_last;            /* index thread: last_pos as persisted */
    uint8_t staged;              /* writer only: touched by the group being built */
    uint8_t pad_;
    uint16_t name_len;           /* bytes of name */
    uint32_t chg_idx;            /* writer only: its entry in s->changes, if v[chg_idx].st is this stream */
    char name[];                 /* NUL-terminated */
} evs_stream;

/* A stream's committed state since the last freeze (one entry per stream,
 * updated by every group commit or recovered record that changes it): what
 * the next streams.idx chunk records for it. first_pos is read from the
 * stream itself (it never changes once the version is > 0). */
typedef struct evs_stream_change {
    evs_stream *st;
    uint64_t version;
    uint64_t last_pos;
} evs_stream_change;

typedef struct evs_changes {
    evs_stream_change *v;
    size_t n, cap;
} evs_changes;

/* One checkpoint handed from the writer to the index thread: the indexes'
 * frozen tables (in the index objects, oldest first) and these fields. */
typedef struct evs_ckpt_job {
    struct evs_ckpt_job *next;   /* queue link */
    uint64_t covered;            /* every derived file will cover positions 1..covered */
    struct evs_segment *seg;     /* the segment holding `covered` */
    uint64_t end_off;            /* offset just past covered's record in seg */
    evs_changes changes;         /* streams changed since the previous job, their states at covered (owned) */
} evs_ckpt_job;

/* Streams in name order (bytewise): an immutable, reference-counted array.
 * Listings hold a reference and walk it with no lock. */
typedef struct evs_name_index {
    _Atomic int refs;            /* the table (while current) + one per listing using it */
    size_t n;                    /* streams */
    evs_stream *v[];             /* sorted by name */
} evs_name_index;

/* Open-addressing hash table of streams by name, plus the name order: every
 * stream is either in `sorted` or in `fresh` (inserted since sorted was
 * built). All fields under tbl_lock (insert: write; listing: read). */
/* A block of the stream arena: streams are carved from it back to back (no
 * malloc header, no rounding to malloc's size classes) and freed only with
 * the table. */
typedef struct evs_stream_blk {
    struct evs_stream_blk *prev; /* the block filled before this one */
    size_t used, cap;            /* bytes of mem handed out, and its size */
    _Alignas(8) unsigned char mem[];
} evs_stream_blk;

typedef struct evs_stream_table {
    evs_stream **slots;          /* cap entries, NULL = empty (evs__big_zalloc) */
    size_t cap;                  /* power of two */
    size_t count;                /* streams in the table (some may be version 0 while staged) */
    evs_name_index *sorted;      /* or NULL (no stream sorted yet) */
    evs_stream **fresh;          /* in insertion order */
    size_t nfresh, freshcap;
    evs_stream_blk *arena;       /* where the streams live: the block being filled */
} evs_stream_table;

#define EVS_FRESH_SORT 4096u     /* fresh streams above which they are merged into `sorted` */

/* One queued append, owned by the calling thread, completed by the writer. */
typedef struct evs_req {
    struct evs_req *next;        /* queue link */
    const evs_event_in *in;      /* the caller's events */
    size_t n;                    /* how many */
    const char *stream;          /* single-stream append: the stream; NULL for multi */
    int64_t expected;            /* single-stream append: expected version */
    const evs_condition *cond;   /* multi: optional condition */
    evs_buf rec;                 /* the encoded records, back to back */
    uint32_t *rec_off;           /* n offsets into rec */
    uint8_t (*ids)[16];          /* n ids (given or generated) */
    int client_ids;              /* how many events came with their own id */
    evs_commit *out;             /* n results (never NULL: append.c supplies one) */
    evs_append_result *res;      /* never NULL inside the writer */
    uint64_t first_pos;          /* assigned at staging */
    int rc;                      /* outcome */
    int done;                    /* set by the writer under q_mu */
    pthread_cond_t cv;           /* the caller waits on it (synchronous appends) */
    evs_append_cb cb;            /* asynchronous appends: called instead; the writer frees the request */
    void *cb_ctx;                /* passed to cb */
    evs_commit *own_out;         /* asynchronous: allocated here when the caller passed none */
    evs_append_result *own_res;  /* likewise */
    int system;                  /* [projections] 1: may write "$..." streams (consumer.c, projection.c) */
} evs_req;

struct evs_store {
    char *dir;                   /* data directory */
    evs_options opt;             /* options as given (defaults filled) */
    const evs_vfs *vfs;          /* file I/O */
    evs_logger log;              /* where messages go */
    int read_only;               /* opened read-only */

    evs_file *lock_file;         /* writer: holds the flock; stores pid + committed position */

    pthread_rwlock_t seg_lock;   /* segs, nsegs, segcap */
    evs_segment **segs;          /* ascending by base; the last is active */
    size_t nsegs;
    size_t segcap;

    pthread_rwlock_t tbl_lock;   /* streams' committed fields, committed */
    evs_stream_table streams;    /* all streams */
    _Atomic uint64_t committed;  /* highest visible position */
    _Atomic uint64_t nstreams;   /* user streams with version > 0 (not $ system streams) */

    evs__lsm *ids;               /* event id -> position */
    evs__lsm *sidx;              /* (stream hash, version) -> position */

    /* checkpoints: the writer freezes (writer.c), the index thread writes (indexer.c) */
    _Atomic uint64_t ckpt_position; /* index thread: position covered by checkpoint.idx (read by evs_stat) */
    uint64_t frozen_position;    /* writer: position covered by the last freeze */
    uint64_t since_ckpt;         /* writer: events committed since the last freeze */
    evs_changes changes;         /* writer (and recovery): stream changes since the last freeze */
    uint64_t streams_gen;        /* index thread: generation of the stream table file (evs__streams_fname) */
    uint64_t streams_old_gen;    /* index thread: the generation a rewrite replaced, removed once
                                    checkpoint.idx names the new one (streams_gen when none) */
    uint64_t streams_file_len;   /* index thread: valid bytes of the stream table file */
    uint64_t streams_live_bytes; /* index thread: bytes of one chunk listing every persisted stream */
    struct evs_indexer *ix;      /* the index thread and its job queue (indexer.c); NULL read-only */

    /* writer thread */
    pthread_t writer;
    int writer_started;
    pthread_mutex_t q_mu;
    pthread_cond_t q_cv;         /* signals the writer: work or closing */
    evs_req *q_head, *q_tail;
    int closing;                 /* q_mu: no new appends */
    int64_t last_time_us;        /* writer: commit times never go backwards */
    uint64_t last_sync_ns;       /* writer: for EVS_SYNC_INTERVAL */
    int unsynced;                /* writer: bytes written since the last data sync */

    pthread_mutex_t follow_mu;   /* read-only stores: one refresh at a time */
    pthread_mutex_t sort_mu;     /* one evs__streams_sort at a time */

    /* waiting for new events */
    pthread_mutex_t wait_mu;
    pthread_cond_t wait_cv;
    pthread_cond_t wait_gone;    /* signalled when the last evs_wait caller leaves */
    int waiters;                 /* wait_mu: threads inside evs_wait */

    /* fail-stop */
    pthread_mutex_t fail_mu;
    _Atomic int failed;
    char fail_reason[256];        /* fail_mu: why the store failed */

    /* statistics (relaxed atomics) */
    _Atomic uint64_t st_appends, st_events, st_reads, st_fsyncs, st_groups;
    uint64_t st_truncated;       /* bytes dropped by recovery */
    _Atomic uint64_t fsync_hist[16];   /* data sync latency, EVS_FSYNC_BUCKETS_US */
    _Atomic uint64_t fsync_sum_us;
    _Atomic uint64_t group_hist[16];   /* events per group commit, EVS_GROUP_BUCKETS */
    int fail_rc;                 /* the error that failed the store */
    struct evs_proj_set *proj;   /* [projections] live projections, their indexes, the builder (projection.c) */
};

/* ---- segments (segment.c) ---- */
int evs__seg_create(evs_store *s, uint64_t base, evs_segment **out);
int evs__seg_open(evs_store *s, const char *name, uint64_t base, int writable, evs_segment **out);
void evs__seg_close(evs_segment *g);
int evs__seg_make_writable(evs_store *s, evs_segment *g);
int evs__seg_add(evs_store *s, evs_segment *g);             /* append to s->segs under seg_lock */
evs_segment *evs__seg_find(evs_store *s, uint64_t position); /* segment holding position, or NULL */
evs_segment *evs__seg_active(evs_store *s);
int evs__offsets_read(evs_store *s, evs_segment *g, uint64_t position, uint64_t *offset);
int evs__offsets_write(evs_store *s, evs_segment *g, uint64_t first_position,
                       const uint32_t *offs, size_t n);
int evs__offsets_open(evs_store *s, evs_segment *g, int create);
/* Read and verify the record at offset (it must hold position). buf grows as needed. */
int evs__read_record(evs_store *s, evs_segment *g, uint64_t offset, uint64_t position,
                     evs_buf *buf, evs_rec *rec);

/* ---- stream table (streams.c) ---- */
void evs__stream_hash(const char *name, size_t len, uint8_t out[16]);
evs_stream *evs__streams_find(evs_stream_table *t, const char *name, size_t len);
int evs__streams_insert(evs_stream_table *t, const char *name, size_t len, evs_stream **out);
void evs__streams_free(evs_stream_table *t);
/* The stream table file of generation gen: "streams.idx" for 0 (the only one
 * a store had before rewrites got their own names), else
 * "streams.<gen, 20 digits>.idx". checkpoint.idx names the generation. */
#define EVS_STREAMS_FNAME_MAX 40
void evs__streams_fname(uint64_t gen, char out[EVS_STREAMS_FNAME_MAX]);
/* Is fname a stream table file (of any generation; *gen set)? */
int evs__streams_is_fname(const char *fname, uint64_t *gen);
/* Read the first valid_len bytes of the stream table of generation gen (or
 * of the open file f, borrowed) into the table (at open, before any reader). */
int evs__streams_load(evs_store *s, uint64_t gen, uint64_t valid_len);
int evs__streams_load_from(evs_store *s, evs_file *f, uint64_t valid_len);
/* Merge the fresh streams into the name order (O(streams), outside tbl_lock
 * but for two short holds; one sorter at a time). Index thread, listings. */
int evs__streams_sort(evs_store *s);
int evs__streams_sort_due(evs_store *s);       /* more than EVS_FRESH_SORT fresh streams */
void evs__names_unref(evs_name_index *ni);
int evs__name_cmp(const char *a, size_t alen, const char *b, size_t blen);  /* bytewise, like strcmp */
/* Index thread: persist the changes (a job's) as one chunk covering `covered`. */
int evs__streams_save(evs_store *s, uint64_t covered, const evs_changes *ch);
/* Record a stream's committed state for the next checkpoint (writer, recovery). */
int evs__changes_note(evs_changes *c, evs_stream *st, uint64_t version, uint64_t last_pos);

/* ---- recovery (recovery.c) ---- */
int evs__recover(evs_store *s);
int evs__refresh_follower(evs_store *s);
int evs__list_segments(evs_store *s, uint64_t **bases, size_t *n);

/* ---- writer (writer.c) ---- */
int evs__writer_start(evs_store *s);
void evs__writer_stop(evs_store *s);
int evs__submit(evs_store *s, evs_req *r);
int evs__submit_async(evs_store *s, evs_req *r);
void evs__req_free(evs_req *r);
void evs__fail(evs_store *s, int rc, const char *what);
/* Writer thread (or close, after the writer stopped): hand the indexes as of
 * `committed` to the index thread. O(1) apart from a data sync under the
 * interval/never policies; waits while the index thread's backlog is full. */
int evs__freeze(evs_store *s);
/* Close: freeze what is left, let the index thread finish and join it. */
int evs__checkpoint(evs_store *s);

/* ---- the index thread (indexer.c) ---- */
#define EVS_CKPT_MAX_PENDING 2   /* frozen checkpoints queued or being written before the writer waits */
int evs__indexer_start(evs_store *s);
int evs__indexer_wait_room(evs_store *s);       /* writer: until fewer than MAX_PENDING jobs; EVS_EFATAL if failed */
void evs__indexer_submit(evs_store *s, evs_ckpt_job *job);
int evs__indexer_stop(evs_store *s);            /* finish every job and merge, join; 0 or the failure */
void evs__ckpt_job_free(evs_ckpt_job *job);

/* Apply one committed record to the indexes (writer and recovery). */
int evs__index_record(evs_store *s, const evs_rec *rec);

/* ---- [projections] system streams, projections, consumers (projection.c, consumer.c, append.c) ---- */
/* System streams ("$..." names) are hidden from global reads, filters and
 * projections unless the filter's own stream prefix starts with '$'. */
static inline int evs__system_hidden(const char *prefix, const char *stream)
{
    return stream[0] == '$' && !(prefix && prefix[0] == '$');
}
int evs__append_system(evs_store *s, const char *stream, int64_t expected, const evs_event_in *events,
                       size_t n, evs_commit *out, evs_append_result *res);   /* may write "$..." streams */
int evs__proj_open(evs_store *s);        /* after recovery: load definitions and indexes, catch up */
void evs__proj_stop(evs_store *s);       /* first thing at close: stop the builder thread */
void evs__proj_close(evs_store *s);      /* after the final checkpoint: write headers, free */
int evs__proj_on_commit(evs_store *s, evs_req **reqs, size_t nreqs, uint64_t first, uint64_t last);
int evs__proj_checkpoint(evs_store *s, uint64_t covered);  /* index thread: sync each index and its header, claiming at most `covered` */
typedef struct evs_proj_iter evs_proj_iter;
int evs__proj_iter_open(evs_store *s, const evs_read_options *ro, evs_proj_iter **out,
                        char **prefix, char ***types, size_t *ntypes);
int evs__proj_iter_next(evs_proj_iter *pi, uint64_t *position);   /* *position = 0: none for now */
void evs__proj_iter_close(evs_proj_iter *pi);

/* ---- files ---- */
int evs__store_path(const evs_store *s, char *out, size_t cap, const char *name);
int evs__publish_position(evs_store *s, uint64_t position);

#endif
