/*
 * vfs_mem.h — an in-memory evs_vfs with a power-cut model, for fast unit
 * tests and crash tests that need no disk.
 *
 * FILE SYSTEM MODEL
 *   A tree of directories and files rooted at "/". Paths are split on '/';
 *   empty and "." components are skipped, so "db/x", "/db/x" and "/db//x"
 *   name the same file; ".." is not supported (-EINVAL). The parent of a file
 *   must exist (mkdir it first), as on a real file system. Names are at most
 *   255 bytes, paths 4095. Locks are per file (like flock): lock() succeeds
 *   for the first handle that asks and fails with -EWOULDBLOCK for every other
 *   handle until the holder is closed. rmdir removes an empty directory
 *   (-ENOTEMPTY otherwise).
 *
 * DURABILITY MODEL (what survives a power cut)
 *   Each file has a *current* content (what reads see) and a *durable* one,
 *   plus the ordered list of writes and truncates made since its last
 *   sync/datasync. sync and datasync make the file's current content durable
 *   (both also count as a sync for crash arming). They do NOT make the file's
 *   name durable: create, unlink, rename, mkdir and rmdir are logged per directory
 *   and become durable only at sync_dir of that directory. A rename between
 *   two directories is two log entries (link in the target, unlink in the
 *   source), so a crash may keep both names or neither. A file or directory
 *   whose parent did not survive does not survive either.
 *
 * POWER CUT
 *   When the machine "loses power" (vfs_mem_crash_now, or the armed n-th sync)
 *   the vfs computes the post-crash image at once and goes dead: every later
 *   call fails with -EIO, including close (which still frees the handle).
 *   In VFS_MEM_CRASH_TORN mode (the default) each pending write of each file
 *   is, in order, applied whole, dropped, or torn (each 512-byte sector it
 *   touches, aligned to file offsets, applied or not; a torn write that
 *   extends the file may also leave its size extended over zeros); each
 *   pending truncate is applied or dropped; each directory keeps a random-length
 *   prefix of its pending namespace operations. Choices come from the seed
 *   (vfs_mem_set_seed) and the order of operations, so a single-threaded
 *   workload at a fixed seed crashes identically every time.
 *
 * RESTART
 *   vfs_mem_restart makes the image the live state (everything durable,
 *   nothing pending, no locks held) so the test can reopen the store on the
 *   same vfs. Handles opened before the crash stay valid objects but every
 *   call on them fails with -EIO forever (close frees them and returns -EIO);
 *   they hold no lock. So a test may restart without closing the crashed
 *   store first, and close it later.
 *
 * Threading: every function, and every vfs method, may be called from any
 * thread; one mutex serialises them. list_dir calls its callback without the
 * mutex held, so the callback may use the vfs.
 * Memory: test code; running out of memory aborts. Files are limited to
 * 4 GiB each (-EFBIG beyond).
 */
#ifndef EVS_VFS_MEM_H
#define EVS_VFS_MEM_H

#include <stdint.h>

#include "io/vfs.h"

/** Granularity of tearing: a sector is written whole or not at all. */
#define VFS_MEM_SECTOR 512

/** What a power cut does to writes and namespace operations not yet synced. */
typedef enum vfs_mem_crash_mode {
    VFS_MEM_CRASH_TORN = 0,      /**< default: random apply/drop/tear per write, random prefix per directory */
    VFS_MEM_CRASH_DROP_ALL = 1,  /**< only what was synced survives (the worst power cut) */
    VFS_MEM_CRASH_APPLY_ALL = 2  /**< everything written survives (kill -9: the page cache lives on) */
} vfs_mem_crash_mode;

/**
 * A new, empty in-memory file system (just the root directory "/", durable).
 * Crash mode TORN, seed evs_test_seed(). Free with vfs_mem_free().
 */
evs_vfs *vfs_mem_new(void);

/** Free the vfs and every file in it. Handles still open must not be used afterwards. NULL is fine. */
void vfs_mem_free(evs_vfs *vfs);

/** Seed the PRNG that decides the post-crash image. */
void vfs_mem_set_seed(evs_vfs *vfs, uint64_t seed);

/** Choose what a power cut keeps (see vfs_mem_crash_mode). */
void vfs_mem_set_crash_mode(evs_vfs *vfs, vfs_mem_crash_mode mode);

/**
 * Arm a power cut at the n-th sync-class call (sync, datasync or sync_dir)
 * counted from now: n = 1 is the very next one. That call does not sync; it
 * crashes the machine and returns -EIO. n = 0 disarms.
 */
void vfs_mem_crash_at_sync(evs_vfs *vfs, uint64_t n);

/** Cut the power now (no-op if already crashed). */
void vfs_mem_crash_now(evs_vfs *vfs);

/** 1 if the vfs has crashed and not been restarted since. */
int vfs_mem_crashed(const evs_vfs *vfs);

/**
 * Sync-class calls (sync, datasync, sync_dir) made since vfs_mem_new, the one
 * that crashed included; calls made while crashed are not counted. To crash at
 * every sync of a workload: run it once, take the count K, then for each
 * i in 1..K run it on a fresh vfs armed with vfs_mem_crash_at_sync(vfs, i).
 */
uint64_t vfs_mem_sync_count(const evs_vfs *vfs);

/**
 * Power back on: the post-crash image becomes the current, fully durable
 * state; locks are released; old handles keep failing with -EIO.
 * @return 0; -EINVAL if the vfs has not crashed.
 */
int vfs_mem_restart(evs_vfs *vfs);

/** Handles currently open (stale ones included): lets a test check that nothing leaked. */
unsigned vfs_mem_open_files(const evs_vfs *vfs);

#endif
