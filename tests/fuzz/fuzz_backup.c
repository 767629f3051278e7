/*
 * fuzz_backup.c — libFuzzer target for the backup archive reader and restore
 * (src/backup/restore.c, manifest.c): evs_restore and evs_backup_inspect on
 * archives made from the fuzz input, in an in-memory file system (vfs_mem)
 * made anew for every input.
 *
 * Input: byte 0 is a set of flags, the rest the archive(s).
 *   byte0 & 2   raw: the rest is the archive file as it is (zstd frame,
 *               trailer and all);
 *   otherwise   the rest is the tar inside: we compress it as evs_backup does
 *               (one zstd frame with its content checksum) and append the
 *               16-byte trailer frame with the XXH3-64 of the bytes before it,
 *               so the fuzzer works on the tar and the manifest, not on zstd;
 *   byte0 & 1   (not raw) first fix the checksums inside the tar: the tar is
 *               read and written again with, in MANIFEST.json, every listed
 *               file's size and XXH3-64 set from the entries that follow, and
 *               the manifest's own checksum recomputed — so the fuzzer gets
 *               past them to the position chain, the segment files and the
 *               store restore opens and verifies;
 *   byte0 & 4   two archives (a full backup and an increment): the rest is
 *               split at the first "EVS-NEXT-ARCHIVE";
 *   byte0 & 8   the target directory exists (empty) before the restore.
 * Checks: no crash, no sanitizer report, no leak, no file left open; a
 * restore that fails returns EVS_ECORRUPT, EVS_EINVAL or EVS_EFORMAT (never
 * EVS_ENOMEM: inputs are small) with a message and leaves nothing behind (neither the target,
 * unless it existed — then still empty — nor "<target>.restoring"); one that
 * succeeds leaves a store that opens at the position it reported, and each
 * of its archives passes evs_backup_inspect (full check). An archive that
 * evs_backup_inspect refuses is never restored.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <archive.h>
#include <archive_entry.h>
#include <jansson.h>
#include <xxhash.h>
#include <zstd.h>

#include "backup/backup_int.h"
#include "vfs_mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SPLIT "EVS-NEXT-ARCHIVE"
#define MAX_ENTRIES 16

static void quiet(void *ctx, int level, const char *msg) { (void)ctx; (void)level; (void)msg; }

typedef struct bytes { uint8_t *p; size_t len, cap; } bytes;

static void add(bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) abort();
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* ---- the checksum fix-up: read the tar, write it again ---- */

typedef struct entry { struct archive_entry *e; bytes data; } entry;

static la_ssize_t tar_out(struct archive *a, void *ctx, const void *buf, size_t n)
{
    (void)a;
    add(ctx, buf, n);
    return (la_ssize_t)n;
}

/* The manifest with sizes and XXH3-64s from the files, then its checksum. */
static void fix_manifest(bytes *man, entry *files, size_t nfiles)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)man->p, man->len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *list = json_is_object(root) ? json_object_get(root, "files") : NULL;
    if (json_is_array(list)) {
        for (size_t i = 0; i < json_array_size(list) && i < nfiles; i++) {
            json_t *f = json_array_get(list, i);
            if (!json_is_object(f)) continue;
            char hex[17];
            snprintf(hex, sizeof hex, "%016llx", (unsigned long long)XXH3_64bits(files[i].data.p, files[i].data.len));
            json_object_set_new(f, "size", json_integer((json_int_t)files[i].data.len));
            json_object_set_new(f, "xxh3", json_string(hex));
        }
        char *text = json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT);
        if (text) {
            man->len = 0;
            add(man, text, strlen(text));
            add(man, "\n", 1);
            free(text);
        }
    }
    json_decref(root);
    /* the checksum: XXH3-64 of the text with its own 16 digits as zeros */
    static const char key[] = "\"checksum\":\"";
    size_t kl = sizeof key - 1, at = SIZE_MAX;
    for (size_t i = 0; i + kl + 16 <= man->len; i++)
        if (memcmp(man->p + i, key, kl) == 0) at = i + kl;
    if (at == SIZE_MAX) return;
    memset(man->p + at, '0', 16);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)XXH3_64bits(man->p, man->len));
    memcpy(man->p + at, hex, 16);
}

static void fix_tar(const uint8_t *p, size_t n, bytes *out)
{
    entry ents[MAX_ENTRIES];
    size_t nents = 0;
    struct archive *rd = archive_read_new();
    if (!rd) abort();
    archive_read_support_format_tar(rd);
    if (archive_read_open_memory(rd, p, n) == ARCHIVE_OK) {
        struct archive_entry *e;
        while (nents < MAX_ENTRIES && archive_read_next_header(rd, &e) == ARCHIVE_OK) {
            entry *x = &ents[nents];
            memset(x, 0, sizeof *x);
            x->e = archive_entry_clone(e);
            char buf[8192];
            la_ssize_t k;
            while ((k = archive_read_data(rd, buf, sizeof buf)) > 0) add(&x->data, buf, (size_t)k);
            nents++;
            if (k < 0) break;
        }
    }
    archive_read_free(rd);
    if (nents == 0) {  /* nothing to fix: as it came */
        add(out, p, n);
        return;
    }
    if (archive_entry_pathname(ents[0].e) && !strcmp(archive_entry_pathname(ents[0].e), EVS_BACKUP_MANIFEST))
        fix_manifest(&ents[0].data, ents + 1, nents - 1);
    struct archive *wr = archive_write_new();
    if (!wr || archive_write_set_format_pax_restricted(wr) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(wr, 64 * 1024) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(wr, 1) != ARCHIVE_OK ||
        archive_write_open(wr, out, NULL, tar_out, NULL) != ARCHIVE_OK)
        abort();
    for (size_t i = 0; i < nents; i++) {
        archive_entry_set_size(ents[i].e, (la_int64_t)ents[i].data.len);
        if (archive_write_header(wr, ents[i].e) == ARCHIVE_OK && ents[i].data.len)
            archive_write_data(wr, ents[i].data.p, ents[i].data.len);
        archive_entry_free(ents[i].e);
        free(ents[i].data.p);
    }
    archive_write_close(wr);
    archive_write_free(wr);
}

/* One zstd frame with its content checksum, then the trailer frame. */
static void wrap(const uint8_t *tar, size_t n, bytes *out)
{
    size_t cap = ZSTD_compressBound(n);
    uint8_t *z = malloc(cap);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    if (!z || !c) abort();
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 1);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    size_t zn = ZSTD_compress2(c, z, cap, tar, n);
    if (ZSTD_isError(zn)) abort();
    ZSTD_freeCCtx(c);
    add(out, z, zn);
    free(z);
    uint8_t t[EVS_BACKUP_TRAILER_SIZE];
    evs__put32(t, EVS_BACKUP_TRAILER_MAGIC);
    evs__put32(t + 4, 8);
    evs__put64(t + 8, XXH3_64bits(out->p, out->len));
    add(out, t, sizeof t);
}

static void put_file(const evs_vfs *vfs, const char *path, const uint8_t *p, size_t n)
{
    evs_file *f = NULL;
    if (vfs->open(vfs, path, EVS_O_RDWR | EVS_O_CREATE | EVS_O_TRUNC, &f) != 0) abort();
    if (n && evs__fwrite(f, p, n, 0, NULL) != 0) abort();
    if (evs__fclose(f) != 0) abort();
}

static int count_entry(void *ctx, const char *name)
{
    (void)name;
    (*(size_t *)ctx)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int fix = data[0] & 1, raw = (data[0] & 2) != 0, two = (data[0] & 4) != 0, target_exists = (data[0] & 8) != 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1, n0 = n;
    if (two) {
        const uint8_t *s = memmem(p, n, SPLIT, sizeof SPLIT - 1);
        if (s) n0 = (size_t)(s - p);
        else two = 0;
    }
    evs_vfs *vfs = vfs_mem_new();
    const char *paths[2] = {"/a0.tar.zst", "/a1.tar.zst"};
    size_t narch = two ? 2 : 1;
    for (size_t i = 0; i < narch; i++) {
        const uint8_t *a = i == 0 ? p : p + n0 + sizeof SPLIT - 1;
        size_t an = i == 0 ? n0 : n - n0 - (sizeof SPLIT - 1);
        bytes file = {0}, tar = {0};
        if (raw) {
            add(&file, a, an);
        } else {
            if (fix) fix_tar(a, an, &tar);
            else add(&tar, a, an);
            wrap(tar.p ? tar.p : (const uint8_t *)"", tar.len, &file);
        }
        put_file(vfs, paths[i], file.p, file.len);
        free(file.p);
        free(tar.p);
    }
    if (target_exists && vfs->mkdir(vfs, "/restored") != 0) abort();

    evs_options opt;
    evs_options_init(&opt);
    opt.vfs = vfs;
    opt.log = quiet;
    opt.sync = EVS_SYNC_NEVER;
    /* each archive on its own, fully checked */
    int inspect_ok[2] = {0, 0};
    for (size_t i = 0; i < narch; i++) {
        evs_backup_info info;
        int rc = evs_backup_inspect(paths[i], &opt, 1, NULL, &info);
        inspect_ok[i] = rc == 0;
        if (rc && rc != EVS_ECORRUPT && rc != EVS_EFORMAT) {
            fprintf(stderr, "fuzz_backup: inspect rc %d (%s): %s\n", rc, evs_errname(rc), info.message);
            abort();
        }
        if (rc && !info.message[0]) abort();
    }
    evs_backup_info info;
    int rc = evs_restore(paths, narch, "/restored", &opt, NULL, &info);
    int there = vfs->exists(vfs, "/restored"), tmp_there = vfs->exists(vfs, "/restored.restoring");
    if (getenv("EVS_FUZZ_VERBOSE"))  /* EVS_FUZZ_VERBOSE=1: one line per input on stderr */
        fprintf(stderr, "fuzz_backup: flags %u, %zu archive(s), inspect %d/%d, restore %s: %s\n", data[0], narch,
                inspect_ok[0], inspect_ok[1], rc ? evs_errname(rc) : "ok", rc ? info.message : "");
    if (rc) {
        if (rc != EVS_ECORRUPT && rc != EVS_EINVAL && rc != EVS_EFORMAT) {
            fprintf(stderr, "fuzz_backup: restore rc %d (%s): %s\n", rc, evs_errname(rc), info.message);
            abort();
        }
        if (!info.message[0]) abort();
        size_t entries = 0;
        if (there) vfs->list_dir(vfs, "/restored", count_entry, &entries);
        if (tmp_there || there != target_exists || entries) {
            fprintf(stderr, "fuzz_backup: a failed restore (%s) left %s behind\n", info.message,
                    tmp_there ? "/restored.restoring" : entries ? "files in /restored" : "/restored");
            abort();
        }
    } else {
        if (there != 1 || tmp_there) abort();
        for (size_t i = 0; i < narch; i++)
            if (!inspect_ok[i]) {
                fprintf(stderr, "fuzz_backup: restored archive %zu, which inspect refuses\n", i);
                abort();
            }
        evs_store *s = NULL;
        if (evs_open("/restored", &opt, &s) != 0 || evs_position(s) != info.last_position) {
            fprintf(stderr, "fuzz_backup: the restored store does not open at %llu\n",
                    (unsigned long long)info.last_position);
            abort();
        }
        if (evs_close(s) != 0) abort();
    }
    if (vfs_mem_open_files(vfs) != 0) {
        fprintf(stderr, "fuzz_backup: %u files left open\n", vfs_mem_open_files(vfs));
        abort();
    }
    vfs_mem_free(vfs);
    return 0;
}
