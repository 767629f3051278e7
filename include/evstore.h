/*
 * evstore.h — the one public header of libevstore, an embeddable event store.
 *
 * CONVENTIONS (stated once, they hold for every function below)
 *
 *  Errors.     Every call that can fail returns int: 0 (EVS_OK) on success, a
 *              negative code otherwise. Codes in -1..-4095 are -errno from the
 *              operating system (-EIO, -ENOSPC, ...). Codes from -30000 down are
 *              the library's own (EVS_ECORRUPT, ...). evs_strerror() and
 *              evs_errname() describe both ranges.
 *  Ownership.  "borrowed until X": the memory belongs to the library and stays
 *              valid until X happens; do not free it. "caller frees with
 *              evs_free()": the caller owns it.
 *  NULL.       Pointer arguments must not be NULL unless a function says so.
 *              evs_close(), evs_iter_close(), evs_free() and the other
 *              destructors accept NULL.
 *  Threading.  An evs_store may be used from any number of threads at once:
 *              appends from many threads are queued to one internal writer
 *              thread and group-committed; reads run in the calling thread.
 *              An evs_iter belongs to one thread at a time.
 *  Strings.    Stream names and event types are NUL-terminated UTF-8 (they may
 *              not contain control characters, so never NUL). Event data and
 *              metadata are (pointer, length) byte ranges holding JSON.
 *  Ids.        Event ids are UUIDs passed as 16 raw bytes (RFC 9562 order).
 */
#ifndef EVSTORE_H
#define EVSTORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

#define EVS_VERSION_MAJOR 0
#define EVS_VERSION_MINOR 1
#define EVS_VERSION_PATCH 0
#define EVS_VERSION_NUMBER \
    (EVS_VERSION_MAJOR * 10000 + EVS_VERSION_MINOR * 100 + EVS_VERSION_PATCH)

/** The library's EVS_VERSION_NUMBER, to check that header and library match. */
int evs_version_number(void);
/** The library version as "MAJOR.MINOR.PATCH". Borrowed forever. */
const char *evs_version_string(void);

/* ------------------------------------------------------------------------ */
/* Error codes                                                              */
/* ------------------------------------------------------------------------ */

/* X(name, value, short name, message). One list generates the enum, the
 * names and the messages, so they cannot drift apart. */
#define EVS_ERROR_LIST(X)                                                       \
    X(EVS_OK,         0,      "ok",             "success")                      \
    X(EVS_ECORRUPT,   -30001, "corrupt",        "data is corrupt (checksum or framing mismatch)") \
    X(EVS_ENOTFOUND,  -30002, "not_found",      "not found")                    \
    X(EVS_ECONFLICT,  -30003, "wrong_expected_version", "stream version does not match the expected version") \
    X(EVS_EFATAL,     -30004, "failed",         "store has failed after an I/O error and accepts no more appends") \
    X(EVS_EFORMAT,    -30005, "format",         "data was written by an unsupported (newer) format version") \
    X(EVS_ECLOSED,    -30006, "closed",         "store is closing or closed")   \
    X(EVS_ELOCKED,    -30007, "locked",         "data directory is locked by another writer") \
    X(EVS_EREADONLY,  -30008, "read_only",      "store is open read-only")      \
    X(EVS_EINVAL,     -30009, "invalid",        "invalid argument")             \
    X(EVS_ETOOBIG,    -30010, "too_big",        "event or batch is larger than allowed") \
    X(EVS_EDUPLICATE, -30011, "duplicate_event_id", "event id already stored by a different write") \
    X(EVS_ECONDITION, -30012, "condition_failed", "append condition failed: a matching event exists after the given position") \
    X(EVS_ETIMEDOUT,  -30013, "timed_out",      "timed out")                    \
    X(EVS_ENOMEM,     -30014, "no_memory",      "out of memory")

enum evs_error {
#define EVS__ENUM(name, value, sname, msg) name = value,
    EVS_ERROR_LIST(EVS__ENUM)
#undef EVS__ENUM
};

/** A human sentence for any return code (library or -errno). Borrowed forever. */
const char *evs_strerror(int rc);
/** A short stable name ("corrupt", "EIO", ...) for any return code. Borrowed forever. */
const char *evs_errname(int rc);

/* ------------------------------------------------------------------------ */
/* Opening a store                                                          */
/* ------------------------------------------------------------------------ */

typedef struct evs_store evs_store;
typedef struct evs_iter evs_iter;
typedef struct evs_stream_iter evs_stream_iter;
/** The file I/O layer. Opaque here; tests substitute fault-injecting ones. */
typedef struct evs_vfs evs_vfs;

/** When an append is acknowledged, and what a crash may lose. */
typedef enum evs_sync_mode {
    EVS_SYNC_ALWAYS = 0,  /**< fdatasync before acknowledging (default); group-committed */
    EVS_SYNC_INTERVAL = 1,/**< acknowledge after write(); fdatasync every sync_interval_ms.
                               A power cut loses at most that window; kill -9 loses nothing. */
    EVS_SYNC_NEVER = 2    /**< never fdatasync except at seal and close; a power cut may lose
                               everything since the last seal; kill -9 loses nothing. */
} evs_sync_mode;

enum evs_log_level { EVS_LOG_ERROR = 0, EVS_LOG_WARN = 1, EVS_LOG_INFO = 2, EVS_LOG_DEBUG = 3 };

typedef void (*evs_log_fn)(void *ctx, int level, const char *message);

typedef struct evs_options {
    size_t struct_size;          /* set by evs_options_init: sizeof(evs_options) */
    int read_only;               /* 1: no lock, no writes; follows another process's writer */
    int create;                  /* 1 (default): create the directory and an empty store if absent */
    int repair;                  /* 1: truncate at corruption inside sealed data instead of refusing */
    evs_sync_mode sync;          /* default EVS_SYNC_ALWAYS */
    uint32_t sync_interval_ms;   /* for EVS_SYNC_INTERVAL; default 100 */
    uint64_t segment_size;       /* bytes at which a segment is sealed; default 256 MiB;
                                    64 KiB .. 4 GiB - 1 (evs_open refuses others with EVS_EINVAL) */
    uint32_t max_event_size;     /* bytes of one event (stream+type+data+metadata); default 1 MiB,
                                    at most 64 MiB */
    uint64_t checkpoint_interval;/* events between index checkpoints; default 262144 */
    evs_log_fn log;              /* NULL: log to stderr at >= log_level */
    void *log_ctx;               /* passed to log */
    int log_level;               /* default EVS_LOG_INFO */
    const evs_vfs *vfs;          /* NULL: the POSIX implementation */
} evs_options;

/** Fill *opt with defaults. Always call it before setting fields. */
void evs_options_init(evs_options *opt);

/**
 * Open (and with opt->create, create) the store in directory dir.
 * @param opt  NULL for defaults.
 * @param out  receives the handle; on failure it may still receive a handle
 *             that must be passed to evs_close() (it is set to NULL otherwise).
 * @return 0; EVS_ELOCKED (another process writes here; the log names its pid);
 *         EVS_EFORMAT; EVS_ECORRUPT (damage in sealed data, opt->repair unset);
 *         -errno.
 * Recovery runs here: a torn tail of the last segment is truncated and logged.
 */
int evs_open(const char *dir, const evs_options *opt, evs_store **out);

/** Finish queued appends, checkpoint indexes, fsync, release the lock and free. NULL is fine. */
int evs_close(evs_store *s);

/** The reason the store failed (fail-stop), or NULL if it has not. Borrowed until evs_close. */
const char *evs_failure(evs_store *s);

/* ------------------------------------------------------------------------ */
/* Appending                                                                */
/* ------------------------------------------------------------------------ */

/* Expected-version values; a value >= 0 means "the stream has exactly N events". */
#define EVS_EXPECT_ANY       (-1)  /* no check (default) */
#define EVS_EXPECT_NO_STREAM (-2)  /* the stream must not exist (same as 0) */
#define EVS_EXPECT_EXISTS    (-3)  /* the stream must have at least one event */

/** One event to append. Unused pointer fields are NULL. */
typedef struct evs_event_in {
    const char *stream;         /* for evs_append_multi; ignored by evs_append */
    int64_t expected_version;   /* for evs_append_multi: checked before this event; EVS_EXPECT_ANY by default */
    const char *type;           /* required, 1..255 bytes */
    const char *data;           /* JSON value; NULL means null */
    size_t data_len;
    const char *metadata;       /* JSON object or NULL (absent) */
    size_t metadata_len;
    const uint8_t *id;          /* 16 bytes, or NULL for a generated UUIDv7 */
} evs_event_in;

/** What the store assigned to one appended event. */
typedef struct evs_commit {
    uint64_t position;          /* global position */
    uint64_t version;           /* version within its stream */
    int64_t time_us;            /* commit time, microseconds since the Unix epoch, UTC */
    uint8_t id[16];             /* the event id (generated ones too) */
} evs_commit;

/** The outcome of one append call. */
typedef struct evs_append_result {
    uint64_t first_position;    /* the append occupies first_position..last_position */
    uint64_t last_position;
    int replayed;               /* 1: every id was already stored by this same write;
                                   nothing was written, the original result is returned */
    /* filled on EVS_ECONFLICT, EVS_EDUPLICATE and EVS_EINVAL: */
    size_t failed_index;        /* the event that failed */
    int64_t expected_version;   /* (EVS_ECONFLICT) what it expected */
    uint64_t actual_version;    /* (EVS_ECONFLICT) the stream's version at that point */
    char message[256];          /* a human sentence naming the field, empty on success */
} evs_append_result;

/** A filter over events: any of the types (none = all) and a stream-name prefix (NULL = all). */
typedef struct evs_filter {
    const char *const *types;
    size_t ntypes;
    const char *stream_prefix;
} evs_filter;

/** Dynamic consistency boundary: append only if no event matching filter has position > after. */
typedef struct evs_condition {
    evs_filter filter;
    uint64_t after;
} evs_condition;

/**
 * Append n events (1..) to one stream, atomically, after checking expected_version.
 * Returns after the events are durable under the sync policy.
 * @param out     n entries receiving what was assigned, or NULL.
 * @param result  NULL or receives first/last position and failure details.
 * @return 0; EVS_ECONFLICT; EVS_EDUPLICATE; EVS_EINVAL (bad name, type, JSON:
 *         result->message says which); EVS_ETOOBIG; EVS_EFATAL; EVS_EREADONLY;
 *         EVS_ECLOSED; -errno. Nothing is written on any error.
 */
int evs_append(evs_store *s, const char *stream, int64_t expected_version,
               const evs_event_in *events, size_t n, evs_commit *out,
               evs_append_result *result);

/**
 * Append n events to the streams they name, atomically; each event's
 * expected_version is checked in order (against the stream as earlier events
 * of the same call left it). cond may be NULL. Returns as evs_append, plus
 * EVS_ECONDITION.
 */
int evs_append_multi(evs_store *s, const evs_event_in *events, size_t n,
                     const evs_condition *cond, evs_commit *out,
                     evs_append_result *result);

/**
 * Called exactly once when an asynchronous append completes (rc as evs_append
 * would return). It runs on the store's writer thread: keep it short and do
 * not call evs_append* or evs_close from it.
 */
typedef void (*evs_append_cb)(void *ctx, int rc);

/**
 * Queue an append without waiting for it (for event loops: an HTTP server
 * suspends the request and resumes it from cb). stream == NULL makes it a
 * multi-stream append (each event names its stream; cond may be set).
 * events (and every byte they point to), out and result must stay valid
 * until cb has been called.
 * @return 0: queued, cb will be called; otherwise the append failed at once
 *         (validation, read-only, failed, closed) and cb will not be called.
 */
int evs_append_async(evs_store *s, const char *stream, int64_t expected_version,
                     const evs_event_in *events, size_t n, const evs_condition *cond,
                     evs_commit *out, evs_append_result *result,
                     evs_append_cb cb, void *ctx);

/* ------------------------------------------------------------------------ */
/* Reading                                                                  */
/* ------------------------------------------------------------------------ */

/** A stored event. Every pointer is borrowed until the next evs_iter_next or evs_iter_close
 *  (or, from evs_get, until evs_free of the event). Strings are NUL-terminated. */
typedef struct evs_event {
    uint64_t position;
    uint64_t version;
    int64_t time_us;
    uint8_t id[16];
    const char *stream;
    size_t stream_len;
    const char *type;
    size_t type_len;
    const char *data;           /* always present ("null" when none was sent) */
    size_t data_len;
    const char *metadata;       /* NULL when none was sent */
    size_t metadata_len;
} evs_event;

typedef struct evs_read_options {
    size_t struct_size;         /* set by evs_read_options_init */
    const char *stream;         /* NULL: the global log; else one stream */
    uint64_t from;              /* inclusive; position (global) or version (stream);
                                   0 = the start, or the end when backward */
    int backward;               /* 1: descending */
    uint64_t limit;             /* 0 = no limit */
    evs_filter filter;          /* applied to each event */
    int allow_missing;          /* stream reads: 1 = a stream without events opens anyway
                                   (a forward iterator then sees its events as they come) */
    /* [projections] added at the end (struct_size versioning); see "Projections" below */
    const char *projection;     /* NULL, or read this projection: from is a position,
                                   stream must be NULL and filter empty */
} evs_read_options;

void evs_read_options_init(evs_read_options *ro);

/**
 * Open an iterator. A forward iterator is live: when it reaches the committed
 * end, evs_iter_next returns EVS_OK with *ev = NULL, and a later call returns
 * events committed since (see evs_wait). Backward iterators end at the start.
 * The options' strings (stream, types, prefix) are copied.
 * Global reads skip system streams (names starting with '$') unless
 * filter.stream_prefix itself starts with '$'.
 * @return 0; EVS_ENOTFOUND (stream given, it has no events, allow_missing unset;
 *         or the projection named is not defined); EVS_EINVAL.
 */
int evs_iter_open(evs_store *s, const evs_read_options *ro, evs_iter **out);
/** Next event, or *ev = NULL at the end. @return 0; EVS_ECORRUPT; -errno. */
int evs_iter_next(evs_iter *it, const evs_event **ev);
void evs_iter_close(evs_iter *it);

/** The event with this id. Caller frees *ev with evs_free(). @return 0; EVS_ENOTFOUND; EVS_ECORRUPT; -errno. */
int evs_get(evs_store *s, const uint8_t id[16], evs_event **ev);
/** The event at this global position. Caller frees *ev with evs_free(). */
int evs_get_at(evs_store *s, uint64_t position, evs_event **ev);

/** The current version of a stream (0 = it does not exist). */
int evs_stream_version(evs_store *s, const char *stream, uint64_t *version);

/** Streams whose name starts with prefix (NULL = all), in name order. */
int evs_streams_open(evs_store *s, const char *prefix, evs_stream_iter **out);
/** Next stream; *name = NULL at the end. *name is borrowed until the next call or close. */
int evs_streams_next(evs_stream_iter *it, const char **name, uint64_t *version);
void evs_streams_close(evs_stream_iter *it);

/** The highest committed (visible) position; 0 for an empty store. Cheap (one
 *  atomic load). A read-only store advances it in evs_wait, evs_refresh and
 *  when an iterator reaches its end. */
uint64_t evs_position(evs_store *s);

/**
 * Block until the committed position is >= position, the timeout passes
 * (timeout_ms < 0: forever) or the store closes. A read-only store polls the
 * writer's files while it waits.
 * @param now  NULL or receives the committed position.
 * @return 0; EVS_ETIMEDOUT; EVS_ECLOSED.
 */
int evs_wait(evs_store *s, uint64_t position, int timeout_ms, uint64_t *now);

/** Read-only stores: pick up what the writer committed since. Writers: no-op. */
int evs_refresh(evs_store *s);

/* ------------------------------------------------------------------------ */
/* Statistics and verification                                              */
/* ------------------------------------------------------------------------ */

typedef struct evs_stats {
    uint64_t events;            /* == position (no deletes yet) */
    uint64_t streams;
    uint64_t segments;
    uint64_t bytes;             /* bytes of segment files */
    uint64_t position;          /* last committed position */
    uint64_t appends;           /* append calls committed since open */
    uint64_t appended_events;   /* events committed since open */
    uint64_t reads;             /* events served by iterators and gets since open */
    uint64_t fsyncs;            /* data syncs issued since open */
    uint64_t group_commits;     /* writer batches since open */
    uint64_t recovered_truncated_bytes; /* torn tail dropped at open */
    uint64_t index_checkpoint_position; /* last position covered by persisted indexes */
    int read_only;
    int failed;
    int failed_rc;              /* the error that failed the store (e.g. -ENOSPC), 0 if none */
    evs_sync_mode sync;
    /* histograms (counts per bucket, not cumulative); bounds in EVS_FSYNC_BUCKETS_US
       and EVS_GROUP_BUCKETS, the last bucket is everything above */
    uint64_t fsync_buckets[16];
    uint64_t fsync_sum_us;      /* total time spent in data syncs */
    uint64_t group_buckets[16]; /* events per group commit */
} evs_stats;

/* Upper bounds of the first 15 histogram buckets of evs_stats. */
#define EVS_FSYNC_BUCKETS_US {50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, \
                              100000, 250000, 500000, 1000000, 2500000}
#define EVS_GROUP_BUCKETS {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}

int evs_stat(evs_store *s, evs_stats *st);

/** Called once per problem found by evs_verify. file is relative to the directory. */
typedef void (*evs_verify_fn)(void *ctx, const char *file, uint64_t offset, const char *problem);

/**
 * Where a long operation (evs_verify_ex, evs_backup, evs_restore,
 * evs_backup_inspect) has got to. Each operation goes through one or more
 * phases, in order; the counts start again at 0 in each phase.
 *   evs_backup:         "check" (read and verify every record), "copy"
 *   evs_restore:        "extract" (bytes: of the archives), "open" (reported
 *                       once: the store opens and rebuilds its indexes),
 *                       then evs_verify's phases
 *   evs_backup_inspect: "check"
 *   evs_verify:         "log" (every record, against every index),
 *                       "projections" (the log again, only when projection
 *                       indexes exist)
 */
typedef struct evs_progress {
    const char *phase;           /* see above */
    uint64_t bytes;              /* bytes done in this phase */
    uint64_t bytes_total;        /* bytes this phase will do (0: unknown) */
    uint64_t events;             /* events (positions) passed in this phase */
    uint64_t events_total;       /* events this phase will pass (0: unknown) */
} evs_progress;

/**
 * Called about every MiB of a long operation, from the calling thread.
 * Return non-zero to cancel: the operation then stops and returns -ECANCELED.
 */
typedef int (*evs_progress_fn)(void *ctx, const evs_progress *p);

/** Options of evs_verify_ex. */
typedef struct evs_verify_options {
    size_t struct_size;          /* set by evs_verify_options_init */
    evs_verify_fn problem;       /* NULL, or called once per problem */
    void *problem_ctx;
    evs_progress_fn progress;    /* NULL, or progress (phases "log", "projections") */
    void *progress_ctx;
} evs_verify_options;

void evs_verify_options_init(evs_verify_options *vo);

/**
 * [backup] Offline check of a data directory; nothing is written. It checks:
 *  - every record of every segment: framing, checksum, positions contiguous
 *    from 1 across segments, stream versions contiguous, sealed segments
 *    ending with a complete append (a record in the last segment that looks
 *    cut short by a crash is accepted only when nothing complete follows it);
 *  - every index against the log: each segment's offsets file, the id and
 *    stream indexes (each event they cover), the stream table, checkpoint.idx;
 *  - projections: each definition in the log is a valid canonical filter,
 *    and each projection index (header, and its entries: exactly the matching
 *    positions up to the position it covers);
 *  - consumers: every event of a $consumers/ stream in the form the library
 *    writes, in a valid order (a checkpoint belongs to the live incarnation,
 *    names a position before its own).
 * Each problem names the file (relative to dir) and the byte offset in it
 * (for "ids index" and "streams index" problems: the position concerned).
 * Missing derived files (*.idx) are not problems: open rebuilds them.
 * @param problems  receives the number of problems found.
 * @return 0 when the check ran (even if it found problems); -ECANCELED;
 *         -errno/EVS_* when it could not run.
 */
int evs_verify_ex(const char *dir, const evs_options *opt, const evs_verify_options *vo, uint64_t *problems);

/** evs_verify_ex with only a problem callback. */
int evs_verify(const char *dir, const evs_options *opt, evs_verify_fn cb, void *ctx,
               uint64_t *problems);

/* ------------------------------------------------------------------------ */
/* JSON helpers shared by the server and the CLI                            */
/* ------------------------------------------------------------------------ */

/**
 * Write the served JSON line of ev (SPEC §2, no trailing newline) into buf.
 * @return the length of the line (without a NUL); when it is > cap nothing
 *         useful was written and the caller retries with a larger buffer. A
 *         NUL is added when there is room for it (return value < cap), as
 *         snprintf does. buf may be NULL with cap 0 to ask for the length.
 */
size_t evs_event_format(const evs_event *ev, char *buf, size_t cap);

/** Input shapes for evs_parse_events. */
enum evs_parse_shape {
    EVS_PARSE_AUTO = 0,   /* one object, or an array of objects */
    EVS_PARSE_NDJSON = 1  /* one object per line, blank lines skipped */
};
/* Flags for evs_parse_events. */
#define EVS_PARSE_MULTI_STREAM 0x1u /* events carry "stream" (required) and "expected_version" */
#define EVS_PARSE_ALLOW_POSITION 0x2u /* accept (and ignore) the served fields "position",
                                         "version", "time" so exported lines import */

typedef struct evs_parsed evs_parsed;

/**
 * Parse and validate events from client JSON. Unknown fields, wrong types,
 * duplicate keys, invalid UTF-8 and bad ids are rejected. data and metadata
 * keep the client's bytes (insignificant whitespace removed).
 * @param err  receives a human sentence with the byte offset or line on failure.
 * @return 0; EVS_EINVAL (bad JSON or event: *err_line/err say where); EVS_ENOMEM.
 */
int evs_parse_events(const char *body, size_t len, int shape, unsigned flags,
                     evs_parsed **out, char *err, size_t errlen);
/** The parsed events; borrowed until evs_parsed_free. */
const evs_event_in *evs_parsed_events(const evs_parsed *p, size_t *n);
void evs_parsed_free(evs_parsed *p);

/** Parse an expected-version string: "any", "no_stream", "exists" or a number. */
int evs_parse_expected(const char *text, int64_t *out);

/** Format id as 36 characters + NUL into out. */
void evs_uuid_format(const uint8_t id[16], char out[37]);
/** Parse the canonical 8-4-4-4-12 hex form (either case). @return 0 or EVS_EINVAL. */
int evs_uuid_parse(const char *text, size_t len, uint8_t id[16]);
/** A new UUIDv7 (time-ordered, random tail). */
void evs_uuid_v7(uint8_t id[16]);

/** Format time_us as RFC 3339 UTC with microseconds ("2026-11-22T11:30:00.123456Z") + NUL. */
void evs_time_format(int64_t time_us, char out[28]);

/** Validate a stream name (1..255 bytes, UTF-8, no control characters). @return 0 or EVS_EINVAL. */
int evs_validate_stream_name(const char *name, size_t len);

/** Free memory the library handed to the caller. NULL is fine. */
void evs_free(void *p);

/* ------------------------------------------------------------------------ */
/* Projections and durable consumers                                        */
/* ------------------------------------------------------------------------ */
/*
 * SYSTEM STREAMS. Stream names starting with '$' are reserved: the store keeps
 * its own durable state in them, in the log (so it is backed up, verified and
 * never lost by deleting *.idx files). evs_append, evs_append_multi and
 * evs_append_async refuse them with EVS_EINVAL ("stream names starting with $
 * are reserved"). Global reads, filters, projections and evs_streams_open
 * skip them unless the filter's stream_prefix itself starts with '$'; a
 * stream read that names one sees it.
 *
 *   $projections/<name>  ProjectionDefined {"types":[...],"stream_prefix":"..."}
 *                        ProjectionDeleted null
 *   $consumers/<name>    ConsumerCreated <the canonical definition>
 *                        ConsumerCheckpoint {"position":P,"state":<JSON>}
 *                          (metadata {"created_version":V}: the stream version
 *                          of the ConsumerCreated it belongs to)
 *                        ConsumerDeleted null
 *
 * The current state of either is its stream's last event. Every change is one
 * append with the stream's expected version, so concurrent changes serialise
 * (a loser re-reads and retries) and a checkpoint stores position and state
 * together, atomically.
 *
 * Names are 1..EVS_PROJECTION_NAME_MAX (EVS_CONSUMER_NAME_MAX) bytes of UTF-8
 * without control characters ('/' allowed).
 */
#define EVS_PROJECTION_NAME_MAX 242   /* 255 - strlen("$projections/") */
#define EVS_CONSUMER_NAME_MAX   244   /* 255 - strlen("$consumers/") */

/**
 * PROJECTIONS. A projection is a derived stream: every event of the log that
 * matches its filter (any of the types, if given, and the stream prefix, if
 * given), in global order. It is read with evs_iter_open and
 * evs_read_options.projection: from is an inclusive position, forward or
 * backward, with limit; forward iterators are live. Its index (a list of
 * positions in projection-<hash>.idx, see docs/FORMAT.md) is maintained by
 * the writer at each group commit and rebuilt from the log when missing; a
 * projection defined over an existing log is built from the whole log in the
 * background while reads stay exact (what the index does not cover yet is
 * read by scanning the log). An iterator on a projection that is deleted
 * while it is open returns EVS_ENOTFOUND from evs_iter_next.
 */
typedef struct evs_projection_info {
    evs_filter filter;          /* its filter; strings borrowed until evs_free(info) */
    uint64_t defined_at;        /* position of its ProjectionDefined event */
    uint64_t covered;           /* its index holds every match at positions 1..covered
                                   (0 while a build has not started; read-only opens:
                                   as of the writer's last checkpoint) */
    uint64_t indexed;           /* matches in the index (positions <= covered) */
} evs_projection_info;

/**
 * Define projection name with filter (types and/or stream_prefix; at least one).
 * Defining it again with the same filter (types compared as a set) is a no-op.
 * @param created  NULL, or receives 1 if this call defined it, 0 if it existed.
 * @return 0; EVS_ECONFLICT (defined with another filter: delete it first);
 *         EVS_EINVAL (bad name, type or prefix, empty filter); EVS_EREADONLY;
 *         EVS_EFATAL; EVS_ECLOSED; -errno. Returns once the definition is
 *         durable; reads see the projection from then on.
 */
int evs_projection_define(evs_store *s, const char *name, const evs_filter *filter, int *created);

/**
 * The definition and progress of projection name.
 * @param out  receives one allocation; caller frees with evs_free().
 * @return 0; EVS_ENOTFOUND (never defined, or deleted); EVS_EINVAL; EVS_ECORRUPT; -errno.
 */
int evs_projection_get(evs_store *s, const char *name, evs_projection_info **out);

/**
 * Delete projection name (its index file is removed; the definition history
 * stays in $projections/<name>). It may be defined again later, with any filter.
 * Consumers defined on it fail to read (EVS_ENOTFOUND) until it is defined again.
 * @return 0; EVS_ENOTFOUND; EVS_EINVAL; EVS_EREADONLY; EVS_EFATAL; -errno.
 */
int evs_projection_delete(evs_store *s, const char *name);

/**
 * DURABLE CONSUMERS. A consumer is a named reader whose position (and an
 * optional JSON state the application folds from the events) is stored in the
 * log. Its definition (JSON, unknown fields refused) is exactly one of:
 *     {"stream":"orders/17"}              one stream
 *     {"types":["A","B"]}                 these types in all streams
 *     {"stream_prefix":"orders/"}         streams under a prefix ("" = all)
 *     {"types":[...],"stream_prefix":"…"} both
 *     {"projection":"name"}               a projection (it must exist)
 * Positions are global positions for every kind: position P means "every
 * event at positions <= P is processed". A new consumer has position 0 and
 * state null.
 */

/**
 * Create consumer name. Creating it again with the same definition is a
 * no-op; after evs_consumer_delete it starts again at position 0, state null.
 * @param definition  JSON text, len bytes.
 * @param created     NULL, or receives 1 if this call created it, 0 if it existed.
 * @return 0; EVS_ECONFLICT (it exists with another definition); EVS_EINVAL
 *         (bad name or definition, or a projection that does not exist);
 *         EVS_EREADONLY; EVS_EFATAL; EVS_ECLOSED; -errno.
 */
int evs_consumer_create(evs_store *s, const char *name, const char *definition, size_t len,
                        int *created);

/**
 * The consumer's checkpoint: its position, state and definition, read together
 * from one event (a consistent pair, never a position with another state).
 * @param state       NULL, or receives its state as JSON text ("null" if none);
 *                    caller frees with evs_free().
 * @param definition  NULL, or receives its canonical definition as JSON text;
 *                    caller frees with evs_free().
 * @return 0; EVS_ENOTFOUND (never created, or deleted); EVS_EINVAL; EVS_ECORRUPT; -errno.
 */
int evs_consumer_get(evs_store *s, const char *name, uint64_t *position, char **state,
                     char **definition);

/**
 * Store position and state together, atomically (one append): after a crash
 * either both are the new ones or both the old ones, which is what makes state
 * updates exactly-once. A position may move backwards (to reprocess).
 * @param state  JSON text (len bytes) stored exactly (minus insignificant
 *               whitespace); NULL keeps the previous state. "null" clears it.
 * @return 0; EVS_ENOTFOUND; EVS_EINVAL (position beyond evs_position(), bad
 *         JSON, bad name); EVS_ETOOBIG (state over max_event_size);
 *         EVS_EREADONLY; EVS_EFATAL; EVS_ECLOSED; -errno.
 */
int evs_consumer_checkpoint(evs_store *s, const char *name, uint64_t position,
                            const char *state, size_t len);

/** Delete consumer name. @return 0; EVS_ENOTFOUND; EVS_EINVAL; EVS_EREADONLY; EVS_EFATAL; -errno. */
int evs_consumer_delete(evs_store *s, const char *name);

/**
 * A forward, live iterator over the consumer's events after its checkpointed
 * position (at most limit events, 0 = no limit); read it with evs_iter_next
 * and close it with evs_iter_close. It does not move the checkpoint.
 * @return 0; EVS_ENOTFOUND (no such consumer, or its projection was deleted);
 *         EVS_EINVAL; EVS_ECORRUPT; -errno.
 */
int evs_consumer_iter_open(evs_store *s, const char *name, uint64_t limit, evs_iter **out);

/* ------------------------------------------------------------------------ */
/* Backup and restore                                                       */
/* ------------------------------------------------------------------------ */
/*
 * [backup] THE ARCHIVE (bytes in docs/FORMAT.md "Backup archive"). A backup
 * is one tar archive compressed as one zstd frame with its content checksum
 * (a ".tar.zst" that tar(1) and zstd(1) also read). Its first entry is
 * MANIFEST.json: archive and store format versions, the store's id, the
 * creation time, `since`, the first and last position covered, and for every
 * file its name, size, XXH3-64 and position range; the manifest carries its
 * own checksum. The other entries are segment files ("<20 digits>.seg"), in
 * position order. Derived *.idx files are not included: restore rebuilds and
 * verifies them (the price: restoring a huge store reads its log once more).
 * Consumers and projections live in "$" system streams in the log, so they
 * are in every backup.
 *
 * CONSISTENCY WITHOUT BLOCKING. The committed position C and the committed
 * end of every segment are captured at one instant (a read lock the writer
 * otherwise takes once per group commit). Sealed segments never change and
 * the active one only grows past its committed end, so copying each segment
 * up to its captured end gives exactly positions 1..C while appends go on.
 *
 * INCREMENTS. With since = P > 0 only the segments holding positions after P
 * are copied (the first of them whole, so it may also hold positions <= P).
 * Restore applies a full backup and then increments in order: each must
 * continue the chain (its since <= the last position restored so far, and it
 * must not end before it); a segment present in both is replaced by the
 * longer copy only when the shorter one is a byte prefix of it.
 */

/** A sink for the archive: take all n bytes, or return a negative code (e.g.
 *  -EPIPE), which stops evs_backup and is returned by it. */
typedef int (*evs_write_fn)(void *ctx, const void *buf, size_t n);

typedef struct evs_backup_options {
    size_t struct_size;          /* set by evs_backup_options_init */
    int level;                   /* zstd level 1..19 (default 3) */
    evs_progress_fn progress;    /* NULL, or progress (see evs_progress) of evs_backup,
                                    evs_restore, evs_backup_inspect */
    void *progress_ctx;          /* passed to progress */
    evs_write_fn write;          /* evs_backup only: NULL = write the archive to fd;
                                    else it goes here and fd is ignored */
    void *write_ctx;             /* passed to write */
} evs_backup_options;

/** Fill *opt with defaults. Always call it before setting fields. */
void evs_backup_options_init(evs_backup_options *opt);

/** What an archive (or a chain of them) holds. */
typedef struct evs_backup_info {
    uint64_t since;              /* the archive holds every position after this (0 = full) */
    uint64_t first_position;     /* first position in its files (0 when it holds none) */
    uint64_t last_position;      /* the snapshot: the last committed position */
    uint64_t files;              /* segment files */
    uint64_t bytes;              /* their bytes, uncompressed */
    uint64_t archive_bytes;      /* bytes of the archive(s) written or read */
    int64_t created_us;          /* when the snapshot was taken (restore: of the last archive) */
    char store_id[17];           /* 16 hex digits naming the store (restore: of the chain) */
    char message[512];           /* on failure: a sentence saying what and where; else "" */
} evs_backup_info;

/**
 * Write a consistent snapshot of the store as one archive to fd (or to
 * opt->write). Appends continue meanwhile and are not blocked; on a
 * read-only store the writer's latest published position is picked up first.
 * Every record copied is verified (checksum, framing, positions) and every
 * file is read twice — once to checksum it for the manifest that leads the
 * archive, once to copy it — and must read identically both times.
 * fd is only written (never seeked, synced or closed): a pipe or socket
 * works; making a file durable is the caller's job.
 * @param since  0 for a full backup; P for an increment with what came after
 *               position P (P must not be past the store's last position).
 * @param opt    NULL for defaults.
 * @param info   NULL, or receives what the archive holds (and on failure a
 *               sentence in info->message).
 * @return 0; EVS_EINVAL (since after the last position, bad level);
 *         EVS_ECORRUPT (a segment fails its checks: nothing is claimed good
 *         that is not); -ECANCELED (progress returned non-zero); what
 *         opt->write returned; -errno (writing to fd, reading segments);
 *         EVS_ENOMEM. On failure the output is incomplete and restore refuses it.
 * Threading: any thread; several backups may run at once. The store must
 * stay open until it returns.
 */
int evs_backup(evs_store *s, int fd, uint64_t since, const evs_backup_options *opt,
               evs_backup_info *info);

/**
 * Restore archives[0..n) — a full backup followed by increments, in the order
 * they were taken — into the new data directory dir.
 * Everything is checked before dir appears: the manifests (and their
 * checksums), the chain of positions across archives, every file's size and
 * XXH3-64, the zstd frame checksum, byte-prefix agreement of segments that
 * appear in several archives. The files are written into a sibling temporary
 * directory ("<dir>.restoring"), fsynced, opened as a store (from the full
 * archive's index checkpoint, replaying the log after it, or rebuilding its
 * indexes when it has none or they fail evs_verify) which must reach the last archive's last position without
 * dropping a byte, checked with evs_verify, and only then renamed to dir
 * (and the parent directory fsynced). On any failure nothing is left behind.
 * @param opt   NULL, or options for opening the restored store (vfs, log,
 *              segment size); read_only, create and repair are ignored.
 * @param bopt  NULL, or progress (write and level are ignored).
 * @param info  NULL, or receives the chain's since (0), last position,
 *              files, bytes and archive bytes read; on failure a sentence.
 * @return 0; -ENOTEMPTY (dir exists and is not an empty directory);
 *         -EEXIST (a leftover "<dir>.restoring" holds foreign files);
 *         EVS_ECORRUPT (an archive is damaged or truncated, or the restored
 *         store fails to open or to verify); EVS_EINVAL (not a full backup
 *         first, a gap, out of order, another store's archive, n == 0);
 *         EVS_EFORMAT (written by a newer version); -ECANCELED; -errno.
 */
int evs_restore(const char *const *archives, size_t n, const char *dir, const evs_options *opt,
                const evs_backup_options *bopt, evs_backup_info *info);

/**
 * Read an archive's manifest into info and, with full = 1, also check the
 * whole archive as restore would (every file's size and XXH3-64, the zstd
 * frame checksum) without writing anything.
 * @param opt  NULL, or options (only vfs and log are used).
 * @return 0; EVS_ECORRUPT; EVS_EFORMAT; -ECANCELED; -errno.
 */
int evs_backup_inspect(const char *archive, const evs_options *opt, int full,
                       const evs_backup_options *bopt, evs_backup_info *info);

#ifdef __cplusplus
}
#endif
#endif /* EVSTORE_H */
