/*
 * manifest.h — the file names of an index and its manifest
 * "<name>.manifest.idx": which runs are live (in recency order), the log
 * position they cover and the next run sequence number.
 *
 * Invariants: the manifest on disk is only ever replaced whole (temp file,
 * fsync, rename, directory fsync), so a reader sees the old or the new one;
 * every run it lists has seq < next_seq and no seq appears twice.
 * The byte layout is in docs/FORMAT-index.md and in manifest.c.
 */
#ifndef EVS_INDEX_MANIFEST_H
#define EVS_INDEX_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "evs_int.h"

#define EVS_MAN_MAGIC "EVSIDXMF"  /* 8 bytes, no NUL on disk */
#define EVS_MAN_VERSION 1u
#define EVS_MAN_HDR 40u           /* bytes before the run table */
#define EVS_MAN_RUN 32u           /* bytes per run record */
#define EVS_MAN_MAX_RUNS 65536u   /* sanity bound when decoding */

#define EVS_IDX_PATH_MAX 4096     /* buffer size for full paths */
#define EVS_IDX_FNAME_MAX 256     /* buffer size for file names */

/** One live run as the manifest records it. */
typedef struct evs__man_run {
    uint64_t seq;       /* run file "<name>-<seq>.idx" */
    uint64_t entries;   /* entries in the run (from its header) */
    uint64_t size;      /* file size in bytes */
    uint64_t hdr_sum;   /* the run header's checksum: identifies this very file */
} evs__man_run;

typedef struct evs__manifest {
    uint64_t covered;   /* highest log position all of whose entries are in the runs */
    uint64_t next_seq;  /* sequence number for the next run file */
    uint64_t gen;       /* incremented by every manifest write */
    size_t nruns;       /* runs listed */
    evs__man_run *runs; /* oldest first: a later run wins on equal (key, a); owned */
} evs__manifest;

/** What a file name in the directory is to index name. */
enum evs__idx_kind {
    EVS_IDXF_NONE = 0,       /* not a file of this index */
    EVS_IDXF_MANIFEST,       /* <name>.manifest.idx */
    EVS_IDXF_MANIFEST_TMP,   /* <name>.manifest.tmp.idx */
    EVS_IDXF_RUN,            /* <name>-<20 digits>.idx */
    EVS_IDXF_RUN_TMP         /* <name>-<20 digits>.tmp.idx */
};

/** One file of the index found in the directory. */
typedef struct evs__idx_file {
    char fname[EVS_IDX_FNAME_MAX]; /* the entry name */
    int kind;                      /* enum evs__idx_kind, never NONE */
    uint64_t seq;                  /* for runs and temp runs */
} evs__idx_file;

/** 0 when name is usable as an index name (1..100 bytes, no '/', no NUL), else EVS_EINVAL. */
int evs__idx_check_name(const char *name);
/** Classify fname; *seq is set for (temp) runs. */
int evs__idx_classify(const char *name, const char *fname, uint64_t *seq);
/** "<name>-<seq>.idx" (tmp: ".tmp.idx") into out. @return 0 or -ENAMETOOLONG. */
int evs__idx_run_name(char *out, size_t cap, const char *name, uint64_t seq, int tmp);
/** "<name>.manifest.idx" (tmp: ".manifest.tmp.idx") into out. */
int evs__idx_man_name(char *out, size_t cap, const char *name, int tmp);
/** Every file of index name in dir. Caller frees *out with free(). -ENOENT if dir is absent. */
int evs__idx_list(const evs_vfs *vfs, const char *dir, const char *name, evs__idx_file **out,
                  size_t *n);

/**
 * Decode a manifest image. On damage returns EVS_ECORRUPT (or EVS_EFORMAT for
 * a newer version) with *what and *off describing the first problem.
 * @return 0; EVS_ECORRUPT; EVS_EFORMAT; EVS_ENOMEM.
 */
int evs__man_decode(const uint8_t *p, size_t len, evs__manifest *m, uint64_t *off,
                    const char **what);
/** Read and decode the manifest file. @return 0; EVS_ENOTFOUND (absent); EVS_ECORRUPT; EVS_EFORMAT; -errno. */
int evs__man_read(const evs_vfs *vfs, const evs_logger *lg, const char *dir, const char *name,
                  evs__manifest *m);
/**
 * Replace the manifest atomically: temp, fsync, rename, directory fsync.
 * *renamed (may be NULL) is set to 1 once the rename happened: after that a
 * failure (of the directory fsync) leaves the new manifest possibly in place,
 * so the caller must keep every file that either manifest lists.
 */
/* The manifest file's bytes for m (header, runs, checksum), malloc'd into *out. */
int evs__man_encode(const evs__manifest *m, uint8_t **out, size_t *len);
int evs__man_write(const evs_vfs *vfs, const char *dir, const char *name, const evs__manifest *m,
                   int *renamed);
void evs__man_free(evs__manifest *m);

/** Read a whole small file into a malloc'd buffer. @return 0 or -errno/EVS_ENOMEM. */
int evs__idx_slurp(const evs_vfs *vfs, const char *path, uint8_t **out, size_t *len);

#endif
