/*
 * fuzz_index.c — libFuzzer target for the readers of the derived index files:
 * run files and manifests (src/index/run_read.c, manifest.c, and the glue in
 * lsm.c that opens a manifest's runs, merges and verifies them) and the
 * stream table file streams.idx (src/store/streams.c). Files live in an
 * in-memory file system (vfs_mem), made anew for every input.
 *
 * Input: byte 0 chooses, the rest is the file.
 *   byte0 & 3 == 0  a run file "ids-<seq 1>.idx": evs__run_open, then a full
 *                   cursor walk, point lookups (first and last entry of a key)
 *                   and seeks at every fence and at keys from the input;
 *                1  a manifest: evs__man_decode; what decodes is written
 *                   back with evs__man_write and must read back identical;
 *                2  streams.idx, valid length = its size: evs__streams_load
 *                   into an empty table, which must then be consistent;
 *                3  an index directory: records [u8 tag][u32 length LE][bytes],
 *                   tag 0 the manifest "ids.manifest.idx", tag 2k+1 the run
 *                   "ids-<k>.idx"; evs__lsm_open (read-only if byte0 & 8),
 *                   lookups of every run's fence keys, a scan, evs__lsm_verify,
 *                   and (read-write) a put and a checkpoint, which may merge
 *                   the fuzzed runs.
 *   byte0 & 4       first fix the checksums (XXH3-64 of run headers, blocks
 *                   and fence tables, of the manifest, of every streams.idx
 *                   chunk; in mode 3 also the manifest's record of each run's
 *                   size and header checksum), so the fuzzer gets past them to
 *                   the structure behind: counts, offsets, fences, order.
 * Checks: no crash, no sanitizer report, no leak; errors are EVS_ECORRUPT,
 * EVS_EFORMAT or EVS_ENOTFOUND, never anything else (not EVS_ENOMEM either:
 * the inputs are small, so running out of memory means a size read from the
 * file was believed, as in regress-streams-huge-count); a lookup
 * that succeeds returns the key asked for within the bound asked for; a run
 * that opens yields exactly its header's entry count when walked (or an error).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "evs_int.h"
#include "index/lsm.h"
#include "index/lsm_ext.h"
#include "index/manifest.h"
#include "index/run.h"
#include "store/store_int.h"
#include "vfs_mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(void *ctx, int level, const char *msg) { (void)ctx; (void)level; (void)msg; }
static const evs_logger QUIET = {quiet, NULL, EVS_LOG_DEBUG};

static void put_file(const evs_vfs *vfs, const char *path, const uint8_t *p, size_t n)
{
    evs_file *f = NULL;
    if (vfs->open(vfs, path, EVS_O_RDWR | EVS_O_CREATE | EVS_O_TRUNC, &f) != 0) abort();
    if (n && evs__fwrite(f, p, n, 0, NULL) != 0) abort();
    if (evs__fclose(f) != 0) abort();
}

/* An error a reader may return for bad bytes. */
static void expect_refusal(int rc)
{
    if (rc != EVS_ECORRUPT && rc != EVS_EFORMAT && rc != EVS_ENOTFOUND) {
        fprintf(stderr, "fuzz_index: unexpected rc %d (%s)\n", rc, evs_errname(rc));
        abort();
    }
}

/* ---- checksum fix-ups ---- */

static void fix_run(uint8_t *p, size_t n)
{
    if (n < EVS_RUN_BLOCK) return;
    uint64_t nblocks = evs__get64(p + 32);
    for (uint64_t i = 0; i < nblocks && (uint64_t)EVS_RUN_BLOCK * (i + 2) <= n; i++) {
        uint8_t *b = p + (size_t)EVS_RUN_BLOCK * (i + 1);
        evs__put64(b + EVS_RUN_SUM_OFF, XXH3_64bits(b, EVS_RUN_SUM_OFF));
    }
    uint64_t foff = evs__get64(p + 40);
    if (nblocks < n / EVS_FENCE_SIZE && foff < n && EVS_FENCE_SIZE * (nblocks + 1) <= n - foff)
        evs__put64(p + 48, XXH3_64bits(p + foff, (size_t)(EVS_FENCE_SIZE * (nblocks + 1))));
    evs__put64(p + EVS_RUN_SUM_OFF, XXH3_64bits(p, EVS_RUN_SUM_OFF));
}

static void fix_manifest(uint8_t *p, size_t n)
{
    if (n >= EVS_MAN_HDR + 8) evs__put64(p + n - 8, XXH3_64bits(p, n - 8));
}

static void fix_streams(uint8_t *p, size_t n)
{
    for (size_t off = 0; n - off >= 40;) {
        uint64_t plen = evs__get64(p + off + 24);
        if (plen > n - off - 40) break;
        evs__put64(p + off + 32 + plen, XXH3_64bits(p + off, 32 + (size_t)plen));
        off += 40 + (size_t)plen;
    }
}

/* ---- run files ---- */

static void check_kv(int rc, const evs_kv *e, const uint8_t key[16], uint64_t a, int last)
{
    if (rc == 0) {
        if (memcmp(e->key, key, 16) != 0 || (last ? e->a > a : e->a < a)) {
            fprintf(stderr, "fuzz_index: a lookup returned another key or an entry outside its bound\n");
            abort();
        }
    } else {
        expect_refusal(rc);
    }
}

static void probe_run(const evs__run *r, const uint8_t *extra, size_t nextra)
{
    /* the walk: exactly h.entries entries, or an error */
    evs__cursor c;
    if (evs__cursor_init(&c, r, 2) != 0) abort();
    uint64_t n = 0;
    int rc = evs__cursor_first(&c);
    while (rc == 0 && c.valid) {
        n++;
        rc = evs__cursor_next(&c);
    }
    if (rc) expect_refusal(rc);
    else if (n != r->h.entries) {
        fprintf(stderr, "fuzz_index: walked %llu entries of a run whose header says %llu\n", (unsigned long long)n,
                (unsigned long long)r->h.entries);
        abort();
    }
    /* lookups at every fence, one a below and above, and at keys from the input */
    for (uint64_t i = 0; i <= r->h.nblocks; i++) {
        const evs__fence *fe = &r->fences[i];
        evs_kv e;
        for (int d = -1; d <= 1; d++) {
            uint64_t a = fe->a + (uint64_t)(int64_t)d;
            check_kv(evs__run_get(r, fe->key, a, &e), &e, fe->key, a, 0);
            check_kv(evs__run_get_last(r, fe->key, a, &e), &e, fe->key, a, 1);
        }
        if ((rc = evs__cursor_seek(&c, fe->key, fe->a)) != 0) expect_refusal(rc);
    }
    for (size_t k = 0; k + 24 <= nextra && k < 24 * 8; k += 24) {
        uint8_t key[16];
        memcpy(key, extra + k, 16);
        uint64_t a = evs__get64(extra + k + 16);
        evs_kv e;
        check_kv(evs__run_get(r, key, a, &e), &e, key, a, 0);
        check_kv(evs__run_get_last(r, key, a, &e), &e, key, a, 1);
        (void)evs__run_may_have_key(r, key);
        if ((rc = evs__cursor_seek(&c, key, a)) != 0) expect_refusal(rc);
        while (rc == 0 && c.valid) rc = evs__cursor_next(&c);
        if (rc) expect_refusal(rc);
    }
    evs__cursor_free(&c);
}

static void run_mode(evs_vfs *vfs, const uint8_t *p, size_t n)
{
    char fname[EVS_IDX_FNAME_MAX];
    if (evs__idx_run_name(fname, sizeof fname, "ids", 1, 0) != 0) abort();
    put_file(vfs, "/ix/ids-00000000000000000001.idx", p, n);
    evs__run *r = NULL;
    int rc = evs__run_open(vfs, &QUIET, "/ix", fname, &r);
    if (rc) {
        expect_refusal(rc);
        return;
    }
    /* the fuzz input's tail doubles as keys to look up */
    probe_run(r, n > 24 * 8 ? p + n - 24 * 8 : p, n > 24 * 8 ? 24 * 8 : n);
    evs__run_unref(r);
}

/* ---- manifests ---- */

static void manifest_mode(evs_vfs *vfs, const uint8_t *p, size_t n)
{
    evs__manifest m, back;
    uint64_t off = 0;
    const char *what = NULL;
    int rc = evs__man_decode(p, n, &m, &off, &what);
    if (rc) {
        expect_refusal(rc);
        if (!what || off > n) abort();  /* every refusal says what and where */
        return;
    }
    for (size_t i = 0; i < m.nruns; i++) {
        if (m.runs[i].seq >= m.next_seq || m.runs[i].entries == 0) abort();
        for (size_t j = 0; j < i; j++)
            if (m.runs[j].seq == m.runs[i].seq) abort();
    }
    /* written back and read again: the same manifest */
    if (evs__man_write(vfs, "/ix", "ids", &m, NULL) != 0) abort();
    if (evs__man_read(vfs, &QUIET, "/ix", "ids", &back) != 0) abort();
    if (back.covered != m.covered || back.next_seq != m.next_seq || back.gen != m.gen || back.nruns != m.nruns ||
        (m.nruns && memcmp(back.runs, m.runs, m.nruns * sizeof *m.runs) != 0))
        abort();
    evs__man_free(&back);
    evs__man_free(&m);
}

/* ---- streams.idx ---- */

static void streams_mode(evs_vfs *vfs, const uint8_t *p, size_t n)
{
    put_file(vfs, "/ix/" EVS_STREAMS_FILE, p, n);
    evs_store *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup("/ix"))) abort();
    s->vfs = vfs;
    s->log = QUIET;
    int rc = evs__streams_load(s, 0, n);
    if (rc) {
        expect_refusal(rc);
    } else {
        /* a consistent table: every entry found under its own name */
        size_t count = 0;
        for (size_t i = 0; i < s->streams.cap; i++) {
            evs_stream *e = s->streams.slots[i];
            if (!e) continue;
            count++;
            if (e->name_len == 0 || e->name_len > 255 || e->name[e->name_len] != '\0' ||
                evs__streams_find(&s->streams, e->name, e->name_len) != e)
                abort();
        }
        if (count != s->streams.count || atomic_load(&s->nstreams) > count) abort();
    }
    evs__streams_free(&s->streams);
    free(s->dir);
    free(s);
}

/* ---- a whole index directory ---- */

typedef struct file_rec { uint8_t tag; const uint8_t *p; size_t n; } file_rec;

static void verify_cb(void *ctx, const char *file, uint64_t off, const char *problem)
{
    (void)file;
    (void)off;
    if (!problem) abort();
    (*(uint64_t *)ctx)++;
}

static void lsm_mode(evs_vfs *vfs, const uint8_t *p, size_t n, int fix, int read_only)
{
    file_rec recs[8];
    size_t nrec = 0;
    for (size_t off = 0; nrec < 8 && n - off >= 5;) {
        uint32_t len = evs__get32(p + off + 1);
        if (len > n - off - 5) len = (uint32_t)(n - off - 5);
        recs[nrec++] = (file_rec){p[off], p + off + 5, len};
        off += 5 + len;
    }
    uint8_t *bufs[8] = {0};
    uint8_t *man = NULL;
    size_t man_len = 0;
    for (size_t i = 0; i < nrec; i++) {
        if (!(bufs[i] = malloc(recs[i].n ? recs[i].n : 1))) abort();
        memcpy(bufs[i], recs[i].p, recs[i].n);
        if (recs[i].tag == 0) {
            man = bufs[i];
            man_len = recs[i].n;
        } else if ((recs[i].tag & 1) && fix) {
            fix_run(bufs[i], recs[i].n);
        }
    }
    if (man && fix && man_len >= EVS_MAN_HDR + 8) {
        /* the manifest's record of each run it lists: that run's size and header checksum */
        for (size_t k = 0; EVS_MAN_HDR + (k + 1) * EVS_MAN_RUN + 8 <= man_len; k++) {
            uint8_t *mr = man + EVS_MAN_HDR + k * EVS_MAN_RUN;
            for (size_t i = 0; i < nrec; i++)
                if ((recs[i].tag & 1) && recs[i].tag >> 1 == evs__get64(mr) && recs[i].n >= EVS_RUN_BLOCK) {
                    evs__put64(mr + 16, recs[i].n);
                    evs__put64(mr + 24, evs__get64(bufs[i] + EVS_RUN_SUM_OFF));
                }
        }
        fix_manifest(man, man_len);
    }
    for (size_t i = 0; i < nrec; i++) {
        char fname[EVS_IDX_FNAME_MAX], path[EVS_IDX_PATH_MAX];
        if (recs[i].tag == 0) evs__idx_man_name(fname, sizeof fname, "ids", 0);
        else if (recs[i].tag & 1) evs__idx_run_name(fname, sizeof fname, "ids", recs[i].tag >> 1, 0);
        else continue;
        snprintf(path, sizeof path, "/ix/%s", fname);
        put_file(vfs, path, bufs[i], recs[i].n);
    }
    uint64_t covered = 0, problems = 0;
    evs__lsm *l = NULL;
    int rc = evs__lsm_open(vfs, "/ix", "ids", read_only, &covered, &l);
    if (rc) {
        expect_refusal(rc);
    } else {
        evs__lsm_set_logger(l, &QUIET);
        /* every fence key of every run given, as lookups and scans */
        for (size_t i = 0; i < nrec; i++) {
            if (!(recs[i].tag & 1) || recs[i].n < EVS_RUN_BLOCK) continue;
            const uint8_t *b = bufs[i];
            uint64_t foff = evs__get64(b + 40), nb = evs__get64(b + 32);
            for (uint64_t k = 0; k <= nb && k < 64 && foff < recs[i].n && (k + 1) * 24 <= recs[i].n - foff; k++) {
                const uint8_t *key = b + foff + k * 24;
                uint64_t a = evs__get64(key + 16);
                evs_kv e, out[4];
                size_t got = 0;
                check_kv(evs__lsm_get(l, key, a, &e), &e, key, a, 0);
                check_kv(evs__lsm_get_last(l, key, a, &e), &e, key, a, 1);
                rc = evs__lsm_scan(l, key, 0, UINT64_MAX, out, 4, &got);
                if (rc) expect_refusal(rc);
                for (size_t j = 0; j < got; j++)
                    if (memcmp(out[j].key, key, 16) != 0 || (j && out[j].a <= out[j - 1].a)) abort();
            }
        }
        if (!read_only) {
            /* a new entry, a checkpoint: writes a run, may merge the fuzzed ones */
            evs_kv e = {.key = {0x42}, .a = covered + 1, .b = 7};
            if (evs__lsm_put(l, &e) != 0) abort();
            rc = evs__lsm_checkpoint(l, covered + 1);
            if (rc && rc != EVS_ECORRUPT) {
                fprintf(stderr, "fuzz_index: checkpoint rc %d (%s)\n", rc, evs_errname(rc));
                abort();
            }
            if (rc == 0) {
                evs_kv got;
                if (evs__lsm_get(l, e.key, e.a, &got) != 0 || got.b != 7) abort();
            }
        }
        evs__lsm_close(l);
    }
    rc = evs__lsm_verify(vfs, "/ix", "ids", verify_cb, &problems, NULL);
    if (rc) expect_refusal(rc);
    for (size_t i = 0; i < nrec; i++) free(bufs[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int mode = data[0] & 3, fix = (data[0] & 4) != 0, read_only = (data[0] & 8) != 0;
    size_t n = size - 1;
    uint8_t *p = malloc(n ? n : 1);
    if (!p) return 0;
    memcpy(p, data + 1, n);
    evs_vfs *vfs = vfs_mem_new();
    if (vfs->mkdir(vfs, "/ix") != 0) abort();
    switch (mode) {
    case 0:
        if (fix) fix_run(p, n);
        run_mode(vfs, p, n);
        break;
    case 1:
        if (fix) fix_manifest(p, n);
        manifest_mode(vfs, p, n);
        break;
    case 2:
        if (fix) fix_streams(p, n);
        streams_mode(vfs, p, n);
        break;
    default:
        lsm_mode(vfs, p, n, fix, read_only);
        break;
    }
    if (vfs_mem_open_files(vfs) != 0) {
        fprintf(stderr, "fuzz_index: %u files left open\n", vfs_mem_open_files(vfs));
        abort();
    }
    vfs_mem_free(vfs);
    free(p);
    return 0;
}
