/*
 * run.h — immutable sorted run files "<name>-<seq>.idx": the writer that
 * streams sorted entries into a new one, the reader that opens one (header
 * and fence table in memory, data blocks by pread through the vfs), point
 * lookups and cursors.
 *
 * Block size: 4 KiB. One block is one page of the page cache and one device
 * sector group, so a point lookup costs exactly one 4 KiB pread per run; the
 * fence table costs 24 bytes per 127 entries (~0.19 byte per entry: 19 MB
 * for 100 M entries), which keeps resident memory bounded without a second
 * index level. 16 KiB blocks would quarter the fence memory but read and
 * checksum 4x the bytes for every point lookup, which dominates the
 * "is this id stored?" check done for every append.
 *
 * Invariants: a run is never modified after its rename into place; its
 * entries are strictly increasing by (key, a) across the whole file; every
 * block is checked (checksum, block number, salt, count, first entry equal to
 * its fence) each time it is read, and a mismatch is EVS_ECORRUPT, logged.
 * The byte layout is in docs/FORMAT-index.md and in run_read.c.
 */
#ifndef EVS_INDEX_RUN_H
#define EVS_INDEX_RUN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "evs_int.h"
#include "index/kv.h"
#include "index/manifest.h"

#define EVS_RUN_MAGIC "EVSIDXRN" /* 8 bytes, no NUL on disk */
#define EVS_RUN_VERSION 1u
#define EVS_RUN_BLOCK 4096u      /* header and data block size */
#define EVS_RUN_PER_BLOCK 127u   /* entries per full block: (4096 - 32) / 32 */
#define EVS_RUN_TRAILER 4064u    /* offset of the block trailer */
#define EVS_RUN_SUM_OFF 4088u    /* offset of the checksum in header and blocks */

typedef struct evs__fence {
    uint8_t key[16];    /* key of the block's first entry (or of the run's last entry) */
    uint64_t a;         /* its a */
} evs__fence;

/** The fields of a run header. */
typedef struct evs__run_hdr {
    uint64_t seq;       /* the run's sequence number (also in its file name) */
    uint64_t entries;   /* entries in the file, >= 1 */
    uint64_t nblocks;   /* data blocks: ceil(entries / 127) */
    uint64_t fence_off; /* offset of the fence table: 4096 * (1 + nblocks) */
    uint64_t fence_sum; /* XXH3-64 of the fence table */
    uint64_t salt;      /* random per file; repeated in every block trailer */
    uint64_t hdr_sum;   /* XXH3-64 of header bytes [0, 4088) */
} evs__run_hdr;

/** An open run, shared by every version that lists it. */
typedef struct evs__run {
    atomic_int refs;        /* holders (index versions); the last unref frees it */
    atomic_int doomed;      /* 1: unlink the file when the last reference goes */
    const evs_vfs *vfs;     /* to read and, when doomed, to unlink */
    const evs_logger *lg;   /* where corruption is logged (owned by the index) */
    evs_file *f;            /* open read-only; pread is safe from many threads */
    char *path;             /* full path, for messages and unlink (owned) */
    evs__run_hdr h;         /* the validated header */
    uint64_t size;          /* file size in bytes */
    evs__fence *fences;     /* h.nblocks + 1: first entry of each block, then the last entry */
} evs__run;

/* ---- format helpers (pure; shared by the reader and verify) ---- */

/** Entries in block i of a run with these totals. */
static inline uint32_t evs__run_block_entries(uint64_t entries, uint64_t nblocks, uint64_t i)
{
    return i + 1 < nblocks ? EVS_RUN_PER_BLOCK
                           : (uint32_t)(entries - (nblocks - 1) * EVS_RUN_PER_BLOCK);
}

/**
 * Decode and validate a 4096-byte header image (magic, version, block size,
 * checksum, entries/nblocks/fence_off consistency).
 * @return 0; EVS_ECORRUPT or EVS_EFORMAT with *off and *what set.
 */
int evs__run_hdr_decode(const uint8_t *p, evs__run_hdr *h, uint64_t *off, const char **what);

/**
 * Check one 4096-byte data block image: checksum, block number, salt, count.
 * @return 0 or EVS_ECORRUPT with *off (within the block) and *what set.
 */
int evs__run_block_check(const uint8_t *p, uint64_t blockno, uint64_t salt, uint32_t count,
                         uint64_t *off, const char **what);

/* ---- reader ---- */

/**
 * Open run file fname in dir: read and check its header and fence table.
 * @return 0; -ENOENT; EVS_ECORRUPT (logged); EVS_EFORMAT; -errno; EVS_ENOMEM.
 */
int evs__run_open(const evs_vfs *vfs, const evs_logger *lg, const char *dir, const char *fname,
                  evs__run **out);
void evs__run_ref(evs__run *r);
/** Drop a reference; the last one closes (and, if doomed, unlinks) the file. */
void evs__run_unref(evs__run *r);

/** 1 when the run may hold entries with this key (it lies within its first..last key). */
int evs__run_may_have_key(const evs__run *r, const uint8_t key[16]);

/** The entry with this key and the smallest a >= a_min. @return 0; EVS_ENOTFOUND; EVS_ECORRUPT; -errno. */
int evs__run_get(const evs__run *r, const uint8_t key[16], uint64_t a_min, evs_kv *out);

/** The entry with this key and the largest a <= a_max. @return 0; EVS_ENOTFOUND; EVS_ECORRUPT; -errno. */
int evs__run_get_last(const evs__run *r, const uint8_t key[16], uint64_t a_max, evs_kv *out);

/** A forward cursor over one run, reading ra blocks per pread. */
typedef struct evs__cursor {
    const evs__run *run;    /* the run walked (the caller keeps it referenced) */
    uint8_t *buf;           /* ra blocks (owned) */
    uint32_t ra;            /* capacity of buf in blocks */
    uint32_t have;          /* blocks currently in buf */
    uint64_t first;         /* block number of buf's first block */
    uint64_t blk;           /* block of the current entry */
    uint32_t idx;           /* index of the current entry in its block */
    int valid;              /* 1: cur holds an entry; 0: past the end */
    evs_kv cur;             /* the current entry */
} evs__cursor;

int evs__cursor_init(evs__cursor *c, const evs__run *r, uint32_t ra);
void evs__cursor_free(evs__cursor *c);
/** Position at the first entry >= (key, a). */
int evs__cursor_seek(evs__cursor *c, const uint8_t key[16], uint64_t a);
/** Position at the first entry. */
int evs__cursor_first(evs__cursor *c);
/** Advance; valid becomes 0 past the last entry. */
int evs__cursor_next(evs__cursor *c);

/* ---- writer ---- */

/** A run being written to "<name>-<seq>.tmp.idx". Entries must arrive strictly increasing. */
typedef struct evs__run_writer {
    const evs_vfs *vfs;             /* where it is written */
    const char *dir;                /* directory (borrowed) */
    evs_file *f;                    /* the temp file, open for writing */
    char tpath[EVS_IDX_PATH_MAX];   /* temp file path */
    char fpath[EVS_IDX_PATH_MAX];   /* final file path */
    int renamed;                    /* 1: the file is at fpath */
    int done;                       /* 1: finish succeeded; abort keeps the file */
    uint64_t seq;                   /* the run's sequence number */
    uint64_t salt;                  /* random per file */
    uint64_t entries;               /* entries added */
    uint64_t nblocks;               /* blocks completed (flushed or in wbuf) */
    uint8_t *wbuf;                  /* EVS_RUN_WBLOCKS blocks waiting to be written (owned) */
    uint32_t wblocks;               /* complete blocks in wbuf */
    uint32_t in_block;              /* entries in the block being filled (at wbuf + wblocks) */
    evs_buf fences;                 /* encoded fences of every block so far */
    evs_kv last;                    /* the last entry added (order check, final fence) */
} evs__run_writer;

/** Start a run. @return 0 or -errno/EVS_ENOMEM (nothing left behind). */
int evs__run_writer_open(evs__run_writer *w, const evs_vfs *vfs, const char *dir,
                         const char *name, uint64_t seq);
/** Append e, which must sort strictly after the previous entry (else EVS_EINVAL). */
int evs__run_writer_add(evs__run_writer *w, const evs_kv *e);
/** Write fence table and header, fsync, rename into place, fsync the directory. */
int evs__run_writer_finish(evs__run_writer *w);
/** Release the writer; removes the file unless finish succeeded. Safe after finish. */
void evs__run_writer_abort(evs__run_writer *w);

#endif
