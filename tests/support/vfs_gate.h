/*
 * vfs_gate.h — an evs_vfs wrapper that stops one chosen call: the n-th call
 * of an operation on a path containing a given string either blocks until
 * the test releases it (so the test can act while, say, the store's index
 * thread is in the middle of writing a run file) or fails with an errno.
 *
 * Every other call is forwarded untouched. The wrapped vfs may be any evs_vfs
 * (posix by default, or vfs_mem to cut the power while a call is held).
 * Thread-safe: the arm and the counters are under one mutex, never held
 * across a call into the wrapped vfs or while a call is blocked.
 */
#ifndef EVS_VFS_GATE_H
#define EVS_VFS_GATE_H

#include <stdint.h>

#include "io/vfs.h"

typedef enum vfs_gate_op {
    VFS_GATE_OPEN = 0,
    VFS_GATE_PWRITE,
    VFS_GATE_SYNC,       /**< sync and datasync */
    VFS_GATE_RENAME,     /**< matched against the target path */
    VFS_GATE_SYNC_DIR,
    VFS_GATE_NOPS
} vfs_gate_op;

/** A gate around inner (NULL: evs__vfs_posix()), nothing armed. inner must outlive it. */
evs_vfs *vfs_gate_new(const evs_vfs *inner);

/** Free the wrapper (not inner). A call still held is released first. NULL is fine. */
void vfs_gate_free(evs_vfs *vfs);

/**
 * Stop the nth call (1: the next one) of op on a path containing match
 * (copied; "" matches every path), counted from now: with err == 0 the call
 * blocks before reaching the wrapped vfs until vfs_gate_release; otherwise it
 * fails with -err without reaching it. Replaces any earlier arm.
 */
void vfs_gate_arm(evs_vfs *vfs, vfs_gate_op op, const char *match, uint64_t nth, int err);

/** Wait until the armed call was reached (it is held, or it failed). @return 0 or -ETIMEDOUT. */
int vfs_gate_wait_hit(evs_vfs *vfs, int timeout_ms);

/** Let a held call continue (into the wrapped vfs) and disarm. */
void vfs_gate_release(evs_vfs *vfs);

/** 1 once the armed call was reached. */
int vfs_gate_hit(const evs_vfs *vfs);

#endif
