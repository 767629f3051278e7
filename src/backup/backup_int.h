/*
 * backup_int.h — what the files of src/backup/ share: the manifest that
 * leads every archive, segment-file names, and the failure-message helper.
 *
 * Files: manifest.c (MANIFEST.json: encode, checksum, decode, validate),
 * backup.c (evs_backup: snapshot, check pass, copy pass, tar + zstd out),
 * restore.c (evs_restore, evs_backup_inspect: zstd + tar in, chain checks,
 * prefix-checked replacement, open + verify, rename).
 *
 * The archive's bytes are specified in docs/FORMAT.md "Backup archive".
 */
#ifndef EVS_BACKUP_INT_H
#define EVS_BACKUP_INT_H

#include "evs_int.h"

#define EVS_BACKUP_FORMAT 2u                    /* version of the archive layout and manifest (2: indexes) */
#define EVS_BACKUP_MANIFEST "MANIFEST.json"     /* the first entry of every archive */
#define EVS_BACKUP_MANIFEST_MAX (64u << 20)     /* a manifest larger than this is refused */
#define EVS_BACKUP_CHUNK (1u << 20)             /* bytes per read while checking and copying */
/* The archive ends with a zstd skippable frame (ignored by zstd(1) and tar)
 * holding the XXH3-64 of every byte before it: any byte of the file that
 * changes, even one that would decompress to the same content, is noticed. */
#define EVS_BACKUP_TRAILER_MAGIC 0x184D2A5Eu    /* a skippable-frame magic (0x184D2A50..5F) */
#define EVS_BACKUP_TRAILER_SIZE 16u             /* magic, u32 length 8, u64 XXH3-64; little-endian */

/* One segment file listed in a manifest. */
typedef struct evs_bk_file {
    char name[64];               /* "<20 digits>.seg" (or an index file name) */
    uint64_t size;               /* bytes in the archive (the segment up to its committed end) */
    uint64_t xxh3;               /* XXH3-64 (seed 0) of those bytes */
    uint64_t first;              /* first position it holds (= its base) */
    uint64_t last;               /* last position it holds (first - 1 when it holds none) */
} evs_bk_file;

/* The manifest of one archive (MANIFEST.json). */
typedef struct evs_bk_manifest {
    uint32_t version;            /* EVS_BACKUP_FORMAT of the writer */
    uint32_t store_format;       /* EVS_FORMAT_VERSION of the segments */
    char store_id[17];           /* 16 lower-case hex digits: the salt of segment 1 */
    int64_t created_us;          /* snapshot time */
    uint64_t since;              /* holds every position after since */
    uint64_t first;              /* first position in its files, 0 when none */
    uint64_t last;               /* last committed position at the snapshot */
    evs_bk_file *files;          /* nfiles entries, ascending */
    size_t nfiles;
    /* the index checkpoint (full archives of format 2; nidx = 0: none): the
     * derived files as of position idx_covered <= last, after the segments */
    uint64_t idx_covered;
    evs_bk_file *idx;            /* name, size, xxh3 (first = last = 0) */
    size_t nidx;
} evs_bk_manifest;

/* The manifest as JSON text (one line + "\n"), with its checksum. */
int evs__bk_manifest_encode(const evs_bk_manifest *m, evs_buf *out);
/* Parse and validate text (checksum, fields, internal consistency). On
 * failure returns EVS_ECORRUPT or EVS_EFORMAT with a sentence in err. */
int evs__bk_manifest_decode(const char *text, size_t len, evs_bk_manifest *m, char *err, size_t errlen);
void evs__bk_manifest_free(evs_bk_manifest *m);

/* Is name one of the index files an archive may hold (checkpoint.idx,
 * streams.idx or streams.<20 digits>.idx, <20 digits>.offsets.idx, ids|streams.manifest.idx,
 * ids|streams-<20 digits>.idx)? */
int evs__bk_idx_name(const char *name);

/* "<20 digits>.seg" with a base > 0: 1 and *base, else 0. */
int evs__bk_seg_name(const char *name, uint64_t *base);

/* Record a failure: the sentence goes to info->message (if info) and to the
 * log at INFO (callers report it themselves); returns rc. */
int evs__bk_fail(const evs_logger *lg, evs_backup_info *info, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
