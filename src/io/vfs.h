/*
 * vfs.h — the one interface through which libevstore touches files.
 *
 * Nothing else in src/ calls file system calls (a test greps for it), so tests
 * can substitute implementations that fail, tear or lose writes
 * (tests/support/vfs_fault.c, vfs_mem.c). Modelled on SQLite's VFS and
 * LevelDB's Env: a versioned table of function pointers. A file object embeds
 * struct evs_file first, so wrappers can stack one vfs on another.
 *
 * Every function returns 0 or -errno. Paths are full paths (the store joins
 * its directory and the file name).
 */
#ifndef EVS_IO_VFS_H
#define EVS_IO_VFS_H

#include <stddef.h>
#include <stdint.h>

#include "evstore.h"

#define EVS_VFS_VERSION 1

/* open flags */
#define EVS_O_RDONLY 0x0u
#define EVS_O_RDWR   0x1u
#define EVS_O_CREATE 0x2u  /* create if absent */
#define EVS_O_EXCL   0x4u  /* with CREATE: fail with -EEXIST if present */
#define EVS_O_TRUNC  0x8u

typedef struct evs_file {
    const struct evs_vfs *vfs;   /* the vfs that made this file; its methods act on it */
} evs_file;

struct evs_vfs {
    int version;                 /* EVS_VFS_VERSION */
    const char *name;            /* "posix", "mem", "fault", ... */
    void *ctx;                   /* implementation state */

    int (*open)(const evs_vfs *vfs, const char *path, unsigned flags, evs_file **out);
    int (*close)(evs_file *f);   /* frees f; releases any lock held through it */
    /* Read up to n bytes at off; *got < n only at end of file. */
    int (*pread)(evs_file *f, void *buf, size_t n, uint64_t off, size_t *got);
    /* Write all n bytes at off. On failure *written (may be NULL) says how many
     * bytes did reach the file (a short write), and the rc is -errno. */
    int (*pwrite)(evs_file *f, const void *buf, size_t n, uint64_t off, size_t *written);
    int (*sync)(evs_file *f);       /* fsync: data and metadata */
    int (*datasync)(evs_file *f);   /* fdatasync */
    int (*truncate)(evs_file *f, uint64_t size);
    int (*size)(evs_file *f, uint64_t *size);
    /* Exclusive, non-blocking advisory lock held until close: -EWOULDBLOCK if held elsewhere. */
    int (*lock)(evs_file *f);

    int (*rename)(const evs_vfs *vfs, const char *from, const char *to);
    int (*unlink)(const evs_vfs *vfs, const char *path);
    int (*mkdir)(const evs_vfs *vfs, const char *path);      /* -EEXIST if present */
    int (*sync_dir)(const evs_vfs *vfs, const char *path);   /* fsync a directory */
    /* Call cb for every entry name (not "." or ".."); a non-zero return from cb stops and is returned. */
    int (*list_dir)(const evs_vfs *vfs, const char *path,
                    int (*cb)(void *cbctx, const char *name), void *cbctx);
    int (*exists)(const evs_vfs *vfs, const char *path);     /* 1, 0, or -errno */
    /* [backup] Remove an empty directory (restore removes its temporary
     * directory after a failure). May be NULL in other implementations; the
     * caller then leaves the empty directory behind. */
    int (*rmdir)(const evs_vfs *vfs, const char *path);
};

/** The default implementation over POSIX calls. Borrowed forever. */
const evs_vfs *evs__vfs_posix(void);

/* Convenience wrappers (inline so the call sites read naturally). */
static inline int evs__fread(evs_file *f, void *b, size_t n, uint64_t off, size_t *got)
{ return f->vfs->pread(f, b, n, off, got); }
static inline int evs__fwrite(evs_file *f, const void *b, size_t n, uint64_t off, size_t *w)
{ return f->vfs->pwrite(f, b, n, off, w); }
static inline int evs__fclose(evs_file *f) { return f ? f->vfs->close(f) : 0; }

#endif
