/*
 * manifest.c — MANIFEST.json, the first entry of every backup archive.
 *
 * One JSON object on one line, keys in this order (docs/FORMAT.md):
 *   {"format":"evstore-backup","version":1,"store_format":1,
 *    "store_id":"<16 hex>","library":"0.1.0","created":"<RFC 3339>",
 *    "created_us":N,"since":S,"first_position":F,"last_position":L,
 *    "files":[{"name":"<20 digits>.seg","size":N,"xxh3":"<16 hex>",
 *              "first_position":F,"last_position":L},...],
 *    ["indexes":{"covered":C,"files":[{"name":"<file>.idx","size":N,
 *                "xxh3":"<16 hex>"},...]},]       (version 2, full archives)
 *    "checksum":"<16 hex>"}
 * checksum is the XXH3-64 (seed 0) of the whole text with the checksum's 16
 * digits replaced by "0000000000000000": a damaged manifest is recognised as
 * damaged before anything it says is believed.
 *
 * Invariants checked by decode (a manifest that breaks one is refused):
 * files ascend and are contiguous (each starts at the position after the
 * previous one's last), every name is its first position, the first file
 * covers since + 1, the last file ends at last_position, an archive without
 * files has since == last_position, and first_position is the first file's.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <jansson.h>
#include <xxhash.h>

#include "backup/backup_int.h"
#include "log/record.h"

int evs__bk_fail(const evs_logger *lg, evs_backup_info *info, int rc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (info && !info->message[0]) snprintf(info->message, sizeof info->message, "%s", msg);
    evs__logf(lg, EVS_LOG_INFO, "%s", msg);
    return rc;
}

int evs__bk_seg_name(const char *name, uint64_t *base)
{
    if (strlen(name) != 24 || strcmp(name + 20, ".seg") != 0) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9') return 0;
        if (v > (UINT64_MAX - 9) / 10) return 0;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *base = v;
    return v > 0;
}

static int digits20(const char *s)
{
    for (int i = 0; i < 20; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

int evs__bk_idx_name(const char *name)
{
    size_t n = strlen(name);
    if (!strcmp(name, "checkpoint.idx") || !strcmp(name, "streams.idx") || !strcmp(name, "ids.manifest.idx") ||
        !strcmp(name, "streams.manifest.idx"))
        return 1;
    if (n == 32 && !strcmp(name + 20, ".offsets.idx") && digits20(name)) return 1;
    if (n == 28 && !strncmp(name, "ids-", 4) && digits20(name + 4) && !strcmp(name + 24, ".idx")) return 1;
    if (n == 32 && !strncmp(name, "streams-", 8) && digits20(name + 8) && !strcmp(name + 28, ".idx")) return 1;
    if (n == 32 && !strncmp(name, "streams.", 8) && digits20(name + 8) && !strcmp(name + 28, ".idx")) return 1;
    return 0;
}

#define CHECKSUM_KEY "\"checksum\":\""

int evs__bk_manifest_encode(const evs_bk_manifest *m, evs_buf *out)
{
    char t[28], line[512];
    int rc = 0;
    evs_time_format(m->created_us, t);
    out->len = 0;
    int n = snprintf(line, sizeof line,
                     "{\"format\":\"evstore-backup\",\"version\":%u,\"store_format\":%u,\"store_id\":\"%s\","
                     "\"library\":\"%s\",\"created\":\"%s\",\"created_us\":%" PRId64 ",\"since\":%" PRIu64
                     ",\"first_position\":%" PRIu64 ",\"last_position\":%" PRIu64 ",\"files\":[",
                     m->version, m->store_format, m->store_id, evs_version_string(), t, m->created_us, m->since,
                     m->first, m->last);
    rc = evs__buf_append(out, line, (size_t)n);
    for (size_t i = 0; i < m->nfiles && rc == 0; i++) {
        const evs_bk_file *f = &m->files[i];
        n = snprintf(line, sizeof line,
                     "%s{\"name\":\"%s\",\"size\":%" PRIu64 ",\"xxh3\":\"%016" PRIx64 "\",\"first_position\":%" PRIu64
                     ",\"last_position\":%" PRIu64 "}",
                     i ? "," : "", f->name, f->size, f->xxh3, f->first, f->last);
        rc = evs__buf_append(out, line, (size_t)n);
    }
    if (rc == 0 && m->nidx) {
        n = snprintf(line, sizeof line, "],\"indexes\":{\"covered\":%" PRIu64 ",\"files\":[", m->idx_covered);
        rc = evs__buf_append(out, line, (size_t)n);
        for (size_t i = 0; i < m->nidx && rc == 0; i++) {
            const evs_bk_file *f = &m->idx[i];
            n = snprintf(line, sizeof line, "%s{\"name\":\"%s\",\"size\":%" PRIu64 ",\"xxh3\":\"%016" PRIx64 "\"}",
                         i ? "," : "", f->name, f->size, f->xxh3);
            rc = evs__buf_append(out, line, (size_t)n);
        }
        if (rc == 0) rc = evs__buf_append(out, "]}", 2);
    } else if (rc == 0) {
        rc = evs__buf_append(out, "]", 1);
    }
    if (rc == 0) rc = evs__buf_append(out, "," CHECKSUM_KEY "0000000000000000\"}\n", strlen("," CHECKSUM_KEY) + 19);
    if (rc) return rc;
    /* the 16 zeros sit 19 bytes before the end: 16 digits, '"', '}', '\n' */
    uint64_t sum = XXH3_64bits(out->p, out->len);
    snprintf(line, sizeof line, "%016" PRIx64, sum);
    memcpy(out->p + out->len - 19, line, 16);
    return 0;
}

void evs__bk_manifest_free(evs_bk_manifest *m)
{
    free(m->files);
    m->files = NULL;
    m->nfiles = 0;
    free(m->idx);
    m->idx = NULL;
    m->nidx = 0;
}

static int hex16(const char *s, uint64_t *out)
{
    if (!s || strlen(s) != 16) return -1;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

/* A non-negative integer member. */
static int get_u64(json_t *o, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static const char *get_str(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Does the text's own checksum hold? */
static int checksum_holds(const char *text, size_t len)
{
    const char *key = NULL;
    size_t kl = strlen(CHECKSUM_KEY);
    for (size_t i = 0; i + kl + 16 <= len; i++)  /* the last occurrence: it closes the object */
        if (memcmp(text + i, CHECKSUM_KEY, kl) == 0) key = text + i;
    if (!key) return 0;
    char digits[17];
    memcpy(digits, key + kl, 16);
    digits[16] = 0;
    uint64_t want;
    if (hex16(digits, &want) != 0) return 0;
    char *copy = malloc(len ? len : 1);
    if (!copy) return 0;
    memcpy(copy, text, len);
    memset(copy + (key - text) + kl, '0', 16);
    uint64_t have = XXH3_64bits(copy, len);
    free(copy);
    return have == want;
}

int evs__bk_manifest_decode(const char *text, size_t len, evs_bk_manifest *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    int rc = EVS_ECORRUPT;
    json_error_t jerr;
    json_t *root = NULL;
    if (!checksum_holds(text, len)) {
        snprintf(err, errlen, "its manifest fails its checksum (damaged archive)");
        return EVS_ECORRUPT;
    }
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        snprintf(err, errlen, "its manifest is not a JSON object (%s)", root ? "wrong type" : jerr.text);
        goto out;
    }
    const char *fmt = get_str(root, "format"), *id = get_str(root, "store_id");
    uint64_t version = 0, sfmt = 0, created = 0;
    if (!fmt || strcmp(fmt, "evstore-backup") != 0 || get_u64(root, "version", &version) != 0) {
        snprintf(err, errlen, "it is not an evstore backup (no \"format\":\"evstore-backup\" in its manifest)");
        goto out;
    }
    if (version > EVS_BACKUP_FORMAT) {
        snprintf(err, errlen, "it was written by a newer evstore (backup format %" PRIu64 "; this build reads up to %u)",
                 version, EVS_BACKUP_FORMAT);
        rc = EVS_EFORMAT;
        goto out;
    }
    if (get_u64(root, "store_format", &sfmt) != 0) {
        snprintf(err, errlen, "its manifest has no store_format");
        goto out;
    }
    if (sfmt > EVS_FORMAT_VERSION) {
        snprintf(err, errlen, "its segments use store format %" PRIu64 "; this build reads up to %u", sfmt,
                 EVS_FORMAT_VERSION);
        rc = EVS_EFORMAT;
        goto out;
    }
    json_t *cu = json_object_get(root, "created_us");
    if (!json_is_integer(cu)) {
        snprintf(err, errlen, "its manifest has no created_us");
        goto out;
    }
    created = (uint64_t)json_integer_value(cu);
    uint64_t tmp;
    if (!id || hex16(id, &tmp) != 0 || get_u64(root, "since", &m->since) != 0 ||
        get_u64(root, "first_position", &m->first) != 0 || get_u64(root, "last_position", &m->last) != 0) {
        snprintf(err, errlen, "its manifest lacks store_id, since, first_position or last_position");
        goto out;
    }
    m->version = (uint32_t)version;
    m->store_format = (uint32_t)sfmt;
    m->created_us = (int64_t)created;
    snprintf(m->store_id, sizeof m->store_id, "%s", id);
    json_t *files = json_object_get(root, "files");
    if (!json_is_array(files)) {
        snprintf(err, errlen, "its manifest has no file list");
        goto out;
    }
    m->nfiles = json_array_size(files);
    if (m->nfiles && !(m->files = calloc(m->nfiles, sizeof *m->files))) {
        rc = EVS_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < m->nfiles; i++) {
        json_t *f = json_array_get(files, i);
        evs_bk_file *e = &m->files[i];
        const char *name = json_is_object(f) ? get_str(f, "name") : NULL;
        uint64_t base = 0;
        if (!name || !evs__bk_seg_name(name, &base) || get_u64(f, "size", &e->size) != 0 ||
            hex16(get_str(f, "xxh3"), &e->xxh3) != 0 || get_u64(f, "first_position", &e->first) != 0 ||
            get_u64(f, "last_position", &e->last) != 0) {
            snprintf(err, errlen, "entry %zu of its manifest's file list is malformed", i);
            goto out;
        }
        snprintf(e->name, sizeof e->name, "%s", name);
        if (e->first != base || e->last + 1 < e->first || e->size < EVS_SEG_HDR_SIZE ||
            (i > 0 && e->first != m->files[i - 1].last + 1)) {
            snprintf(err, errlen, "its manifest lists %s out of the position chain", name);
            goto out;
        }
    }
    if (m->nfiles) {
        /* files are contiguous, so the first position any of them holds is
         * the first file's base, unless none holds a position at all */
        const evs_bk_file *a = &m->files[0], *z = &m->files[m->nfiles - 1];
        uint64_t first = m->last >= a->first ? a->first : 0;
        if (a->first > m->since + 1 || z->last != m->last || m->first != first) {
            snprintf(err, errlen, "its manifest's position range (since %" PRIu64 ", %" PRIu64 "..%" PRIu64
                     ") does not match its files (%" PRIu64 "..%" PRIu64 ")", m->since, m->first, m->last,
                     a->first, z->last);
            goto out;
        }
    } else if (m->since != m->last || m->first != 0) {
        snprintf(err, errlen, "its manifest claims positions %" PRIu64 "..%" PRIu64 " but lists no file",
                 m->since + 1, m->last);
        goto out;
    }
    json_t *ix = json_object_get(root, "indexes");
    if (ix) {
        json_t *ifiles = json_object_get(ix, "files");
        if (!json_is_object(ix) || get_u64(ix, "covered", &m->idx_covered) != 0 || !json_is_array(ifiles) ||
            m->since != 0 || m->idx_covered == 0 || m->idx_covered > m->last) {
            snprintf(err, errlen, "its manifest's index list is malformed or does not fit its positions");
            goto out;
        }
        m->nidx = json_array_size(ifiles);
        if (m->nidx && !(m->idx = calloc(m->nidx, sizeof *m->idx))) {
            rc = EVS_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < m->nidx; i++) {
            json_t *f = json_array_get(ifiles, i);
            evs_bk_file *e = &m->idx[i];
            const char *name = json_is_object(f) ? get_str(f, "name") : NULL;
            if (!name || !evs__bk_idx_name(name) || get_u64(f, "size", &e->size) != 0 ||
                hex16(get_str(f, "xxh3"), &e->xxh3) != 0) {
                snprintf(err, errlen, "entry %zu of its manifest's index list is malformed", i);
                goto out;
            }
            for (size_t j = 0; j < i; j++)
                if (!strcmp(m->idx[j].name, name)) {
                    snprintf(err, errlen, "its manifest lists %s twice", name);
                    goto out;
                }
            snprintf(e->name, sizeof e->name, "%s", name);
        }
    }
    if (m->since > m->last) {
        snprintf(err, errlen, "its manifest's since (%" PRIu64 ") is after its last position (%" PRIu64 ")",
                 m->since, m->last);
        goto out;
    }
    rc = 0;
out:
    if (rc) evs__bk_manifest_free(m);
    json_decref(root);
    return rc;
}
