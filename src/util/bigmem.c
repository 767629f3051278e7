/*
 * bigmem.c — zeroed arrays of a megabyte and more (the index memtables, the
 * stream table's hash slots) straight from the kernel.
 *
 * Why not calloc: glibc raises its mmap threshold to the size of each large
 * block freed (up to 32 MiB), so from the second checkpoint on a memtable's
 * slot array came from a thread arena's heap. There calloc has to zero it
 * (every page resident at once, before a single put), and a freed table
 * stays resident in the arena until something reuses it. An anonymous
 * mapping costs a page only when a page is first written and goes back to
 * the kernel at once when freed: a table that is presized for a whole
 * checkpoint interval weighs what it holds, and a frozen one is gone as
 * soon as its run is durable.
 *
 * Under AddressSanitizer plain calloc is used, so that an overrun of these
 * arrays is still caught.
 */
#include <stdlib.h>
#include <sys/mman.h>

#include "evs_int.h"

#if defined(__SANITIZE_ADDRESS__)
#define EVS_BIG_VIA_CALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EVS_BIG_VIA_CALLOC 1
#endif
#endif

#define BIG_MIN ((size_t)1 << 20)  /* smaller blocks: calloc */

void *evs__big_zalloc(size_t size)
{
#ifndef EVS_BIG_VIA_CALLOC
    if (size >= BIG_MIN) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
#endif
    return calloc(1, size ? size : 1);
}

void evs__big_free(void *p, size_t size)
{
    if (!p)
        return;
#ifndef EVS_BIG_VIA_CALLOC
    if (size >= BIG_MIN) {
        munmap(p, size);
        return;
    }
#endif
    (void)size;
    free(p);
}
