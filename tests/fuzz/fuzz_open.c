/*
 * fuzz_open.c — libFuzzer target for recovery: open a store whose only
 * segment is the fuzz input (a whole segment file, or the bytes after a
 * valid header), in an in-memory file system: fast, and leaves nothing behind.
 *
 * Checks: evs_open never crashes; if it succeeds, every event it then serves
 * reads back through a full forward and backward scan without a sanitizer
 * report, positions are contiguous from 1, and a new append lands at the
 * next position; if it fails, the error is EVS_ECORRUPT or EVS_EFORMAT.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evs_int.h"
#include "log/record.h"
#include "vfs_mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(void *ctx, int level, const char *msg) { (void)ctx; (void)level; (void)msg; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    evs_vfs *vfs = vfs_mem_new();
    evs_file *f = NULL;
    if (vfs->mkdir(vfs, "/db") != 0 ||
        vfs->open(vfs, "/db/00000000000000000001.seg", EVS_O_RDWR | EVS_O_CREATE, &f) != 0) abort();
    /* an input that starts like a segment file is the whole file (header
     * included, so the fuzzer damages headers too); anything else is the
     * bytes after a valid header */
    uint8_t hdr[EVS_SEG_HDR_SIZE];
    evs_seg_hdr h = {.base = 1, .salt = 7, .created_us = 1};
    evs__seg_hdr_encode(hdr, &h);
    if (size >= 8 && memcmp(data, hdr, 8) == 0) {
        evs__fwrite(f, data, size, 0, NULL);
    } else {
        evs__fwrite(f, hdr, sizeof hdr, 0, NULL);
        if (size) evs__fwrite(f, data, size, sizeof hdr, NULL);
    }
    evs__fclose(f);

    evs_options opt;
    evs_options_init(&opt);
    opt.vfs = vfs;
    opt.log = quiet;
    opt.sync = EVS_SYNC_NEVER;
    evs_store *s = NULL;
    int rc = evs_open("/db", &opt, &s);
    if (rc == 0) {
        evs_read_options ro;
        evs_read_options_init(&ro);
        evs_iter *it = NULL;
        const evs_event *ev;
        uint64_t expect = 1;
        if (evs_iter_open(s, &ro, &it) != 0) abort();
        while (evs_iter_next(it, &ev) == 0 && ev) {
            if (ev->position != expect++) abort();
        }
        evs_iter_close(it);
        if (expect - 1 != evs_position(s)) abort();
        ro.backward = 1;
        if (evs_iter_open(s, &ro, &it) != 0) abort();
        while (evs_iter_next(it, &ev) == 0 && ev) {}
        evs_iter_close(it);
        evs_event_in e = {.type = "T", .data = "1", .data_len = 1};
        evs_commit c;
        if (evs_append(s, "x", EVS_EXPECT_ANY, &e, 1, &c, NULL) != 0 || c.position != expect) abort();
    } else if (rc != EVS_ECORRUPT && rc != EVS_EFORMAT) {
        abort();
    }
    evs_close(s);
    vfs_mem_free(vfs);
    return 0;
}
