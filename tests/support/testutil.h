/*
 * testutil.h — small helpers every test uses: a reproducible seed, a
 * deterministic PRNG, and scratch directories.
 *
 * Reproducibility rule: every random choice a test makes derives from
 * evs_test_seed(), which is printed once per process, so a failing run can be
 * replayed exactly with EVS_SEED=N. The PRNG has no global state: callers own
 * a uint64_t state word, so threads and subsystems never share a sequence.
 */
#ifndef EVS_TESTUTIL_H
#define EVS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/**
 * The process's test seed: EVS_SEED from the environment (decimal, or 0x hex)
 * if set, else a random one. The first call prints
 * "seed=N (replay with EVS_SEED=N)" to stderr; every call returns the same N.
 * Thread-safe.
 */
uint64_t evs_test_seed(void);

/** Next 64 random bits from *state (splitmix64: any state value is fine, 0 included). */
uint64_t evs_test_rand(uint64_t *state);

/** A uniform value in [lo, hi] (both inclusive; lo <= hi), without modulo bias. */
uint64_t evs_test_rand_range(uint64_t *state, uint64_t lo, uint64_t hi);

/** Fill buf with n random bytes from *state. */
void evs_test_rand_bytes(uint64_t *state, void *buf, size_t n);

/**
 * Make a fresh, empty directory under $EVS_TEST_TMP (created if missing;
 * default /tmp) and write its path into out.
 * @return 0; -ENAMETOOLONG if the path does not fit in cap; -errno.
 */
int evs_test_tmpdir(char *out, size_t cap);

/**
 * Remove dir and everything below it (symlinks are removed, not followed).
 * Errors are ignored: this is cleanup. Refuses "", "/" and NULL.
 */
void evs_test_rmtree(const char *dir);

#endif
