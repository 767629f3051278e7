/*
 * vfs_fault.h — an evs_vfs that wraps another one and makes chosen calls
 * fail: the N-th call of an operation class, once or from then on, with the
 * errno the test picks (EIO, ENOSPC, ...), or as a short write.
 *
 * Every call is counted per class, failed ones included, so a test can run a
 * workload once to learn how many calls of a class it makes, then rerun it
 * failing call 1, 2, ... N in turn. An injected failure does not reach the
 * wrapped vfs (nothing happens there), except a SHORT write, which writes a
 * random-length prefix first. Calls outside the classes (close, size, lock,
 * mkdir, list_dir, exists) are forwarded untouched and not counted.
 *
 * The wrapped vfs may be any evs_vfs (posix by default, or vfs_mem to combine
 * faults with power cuts). File objects embed evs_file first and forward to
 * the wrapped file. Every function is thread-safe: counters and arms are
 * under one mutex that is never held across a call into the wrapped vfs.
 */
#ifndef EVS_VFS_FAULT_H
#define EVS_VFS_FAULT_H

#include <stdint.h>

#include "io/vfs.h"

/** Operation classes: each has its own counter and its own arm. */
typedef enum vfs_fault_class {
    VFS_FAULT_OPEN = 0,
    VFS_FAULT_PREAD,
    VFS_FAULT_PWRITE,
    VFS_FAULT_SYNC,      /**< sync and datasync */
    VFS_FAULT_TRUNCATE,
    VFS_FAULT_RENAME,
    VFS_FAULT_UNLINK,
    VFS_FAULT_SYNC_DIR,
    VFS_FAULT_NCLASSES
} vfs_fault_class;

/* Flags for vfs_fault_arm. */
#define VFS_FAULT_ONCE    0x0  /**< only the nth call fails, later ones succeed */
#define VFS_FAULT_PERSIST 0x1  /**< the nth call and every later one of the class fail */
#define VFS_FAULT_SHORT   0x2  /**< PWRITE only: write a random prefix of 0..n-1 bytes, then fail
                                    with *written set to the prefix length */

/**
 * A fault-injecting wrapper around inner (NULL: evs__vfs_posix()), with
 * nothing armed and the PRNG seeded from evs_test_seed(). inner is borrowed
 * and must outlive the wrapper. Free with vfs_fault_free().
 */
evs_vfs *vfs_fault_new(const evs_vfs *inner);

/** Free the wrapper (not inner). Files still open must not be used afterwards. NULL is fine. */
void vfs_fault_free(evs_vfs *vfs);

/**
 * Make the nth call of cls from now (nth = 1: the next one) fail with -err.
 * Replaces any earlier arm of cls.
 * @param err    EIO, ENOSPC, ... (positive or negative; the call returns the negative).
 * @param flags  VFS_FAULT_ONCE or VFS_FAULT_PERSIST, optionally | VFS_FAULT_SHORT.
 * @return 0; -EINVAL for nth = 0, err = 0, a bad class, or SHORT on a class other than PWRITE.
 */
int vfs_fault_arm(evs_vfs *vfs, vfs_fault_class cls, uint64_t nth, int err, int flags);

/** Disarm cls (VFS_FAULT_NCLASSES: every class). Counters are kept. */
void vfs_fault_disarm(evs_vfs *vfs, vfs_fault_class cls);

/**
 * Call fn(ctx, cls) at the start of every later call of cls, before it is
 * counted and before its fate is decided (fn may block, e.g. at a gate a test
 * opens, and may arm a failure for that very call with nth = 1). Runs on the
 * calling thread, without the wrapper's mutex held. fn = NULL removes it.
 */
void vfs_fault_set_hook(evs_vfs *vfs, vfs_fault_class cls, void (*fn)(void *ctx, vfs_fault_class cls), void *ctx);

/** Calls of cls so far (since vfs_fault_new), injected failures included. */
uint64_t vfs_fault_count(const evs_vfs *vfs, vfs_fault_class cls);

/** Failures injected into cls so far: lets a test check its fault really fired. */
uint64_t vfs_fault_injected(const evs_vfs *vfs, vfs_fault_class cls);

/** Seed the PRNG that picks short-write lengths. */
void vfs_fault_set_seed(evs_vfs *vfs, uint64_t seed);

#endif
