/*
 * record.c — encoding and verification of segment headers and event records.
 *
 * All integers are little-endian. Offsets are from the start of the file.
 *
 * SEGMENT FILE "<base:20 digits>.seg"
 *   0   8  magic "EVSTSEG\0"
 *   8   4  format version (1)
 *  12   4  header size (64)
 *  16   8  base position: the position of the first record in this file
 *  24   8  salt: random, seeds the checksum of every record in this file, so a
 *          record copied from (or left over in) another file never validates
 *  32   8  creation time, microseconds since the epoch
 *  40  16  reserved, zero
 *  56   8  XXH3-64 (seed 0) of bytes 0..55
 *  64 ...  records, each starting at an 8-byte aligned offset, back to back
 *
 * EVENT RECORD (total_len bytes, a multiple of 8)
 *   0   4  magic 'E' 'V' 'R' 0x01 (the last byte is the record format version)
 *   4   1  kind (1 = event)
 *   5   1  flags: bit 0 COMMIT = last record of one atomic append;
 *                 bit 1 HAS_META = metadata was sent;
 *                 bit 2 AFTER_SYNC = first record of a write issued after
 *                 every earlier byte of the segment was made durable
 *   6   1  type length T (1..255)
 *   7   1  stream length S (1..255)
 *   8   4  total_len: the whole record, header to trailer
 *  12   4  data length D (>= 1: "null" is stored when none was sent)
 *  16   4  metadata length M (0 when absent)
 *  20   4  reserved, zero
 *  24   8  checksum: h = XXH3-64(bytes 0..23, seed = segment salt), then
 *          XXH3-64(bytes 32..total_len-9, seed = h): every byte of the
 *          record except the checksum itself and the trailer
 *  32   8  position (global, from 1)
 *  40   8  version (within the stream, from 1)
 *  48   8  commit time, microseconds since the epoch (UTC)
 *  56  16  event id (UUID bytes)
 *  72   S  stream name, then T type, D data (JSON), M metadata (JSON object)
 *   .   .  zero padding to total_len - 8
 *  -8   4  total_len again (lets a reader walk the log backwards)
 *  -4   4  low 32 bits of the checksum again
 *
 * VALIDITY: magic, kind, lengths consistent (72 + S + T + D + M + 8 <=
 * total_len, total_len - that < 8, total_len % 8 == 0), padding zero,
 * checksum, and both trailer words equal to their header counterparts. The
 * caller additionally checks that positions are contiguous from the segment
 * base. Because the position is inside the checksum, a stale record at the
 * wrong place cannot validate.
 *
 * ATOMICITY: an append of n events is n records; only the last carries
 * COMMIT. Recovery keeps a prefix of the log that ends with a COMMIT record
 * and drops everything after it (see recovery.c).
 */
#include <string.h>
#include <xxhash.h>

#include "evs_int.h"
#include "log/record.h"

static const uint8_t seg_magic[8] = {'E', 'V', 'S', 'T', 'S', 'E', 'G', 0};
static const uint8_t rec_magic[4] = {'E', 'V', 'R', EVS_FORMAT_VERSION};

uint32_t evs__rec_size(size_t stream_len, size_t type_len, size_t data_len, size_t meta_len)
{
    uint64_t body = EVS_REC_HDR_SIZE + stream_len + type_len + data_len + meta_len;
    return (uint32_t)(EVS_ALIGN8(body) + EVS_REC_TRAILER_SIZE);
}

void evs__rec_encode(uint8_t *dst, const char *stream, size_t stream_len,
                     const char *type, size_t type_len, const char *data, size_t data_len,
                     const char *meta, size_t meta_len, const uint8_t id[16], int commit)
{
    uint32_t total = evs__rec_size(stream_len, type_len, data_len, meta ? meta_len : 0);
    memset(dst, 0, total);
    memcpy(dst, rec_magic, 4);
    dst[4] = EVS_REC_KIND_EVENT;
    dst[5] = (uint8_t)((commit ? EVS_REC_COMMIT : 0) | (meta ? EVS_REC_HAS_META : 0));
    dst[6] = (uint8_t)type_len;
    dst[7] = (uint8_t)stream_len;
    evs__put32(dst + 8, total);
    evs__put32(dst + 12, (uint32_t)data_len);
    evs__put32(dst + 16, meta ? (uint32_t)meta_len : 0);
    memcpy(dst + 56, id, 16);
    uint8_t *p = dst + EVS_REC_HDR_SIZE;
    memcpy(p, stream, stream_len); p += stream_len;
    memcpy(p, type, type_len); p += type_len;
    memcpy(p, data, data_len); p += data_len;
    if (meta && meta_len)
        memcpy(p, meta, meta_len);
    evs__put32(dst + total - 8, total);
}

/* Two chained XXH3-64 calls rather than one streaming state: the state
 * struct is only stable under XXH_STATIC_LINKING_ONLY, and this keeps the
 * definition simple to restate in FORMAT.md. */
static uint64_t rec_checksum(const uint8_t *rec, uint32_t total, uint64_t salt)
{
    uint64_t head = XXH3_64bits_withSeed(rec, 24, salt);
    return XXH3_64bits_withSeed(rec + 32, total - 32 - EVS_REC_TRAILER_SIZE, head);
}

void evs__rec_finish(uint8_t *rec, uint64_t salt, uint64_t position, uint64_t version,
                     int64_t time_us)
{
    uint32_t total = evs__get32(rec + 8);
    evs__put64(rec + 32, position);
    evs__put64(rec + 40, version);
    evs__put64(rec + 48, (uint64_t)time_us);
    uint64_t sum = rec_checksum(rec, total, salt);
    evs__put64(rec + 24, sum);
    evs__put32(rec + total - 4, (uint32_t)sum);
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

evs_rec_status evs__rec_decode(const uint8_t *p, size_t avail, uint64_t salt, evs_rec *out)
{
    out->size = 0;
    if (avail < 12)
        return (avail == 0 || all_zero(p, avail)) ? EVS_REC_END : EVS_REC_SHORT;
    if (memcmp(p, rec_magic, 4) != 0)
        return all_zero(p, EVS_MIN(avail, 16)) ? EVS_REC_END : EVS_REC_BAD;
    uint32_t total = evs__get32(p + 8);
    if (total < EVS_REC_MIN_SIZE || total % 8 != 0 || p[4] != EVS_REC_KIND_EVENT)
        return EVS_REC_BAD;
    out->size = total;
    if (avail < total)
        return EVS_REC_SHORT;
    uint32_t tlen = p[6], slen = p[7];
    uint32_t dlen = evs__get32(p + 12), mlen = evs__get32(p + 16);
    uint64_t body = (uint64_t)EVS_REC_HDR_SIZE + slen + tlen + dlen + mlen;
    if (slen == 0 || tlen == 0 || dlen == 0 || EVS_ALIGN8(body) + EVS_REC_TRAILER_SIZE != total)
        return EVS_REC_BAD;
    uint8_t flags = p[5];
    if ((flags & ~(EVS_REC_COMMIT | EVS_REC_HAS_META | EVS_REC_AFTER_SYNC)) || (!(flags & EVS_REC_HAS_META) && mlen))
        return EVS_REC_BAD;
    uint64_t sum = evs__get64(p + 24);
    if (evs__get32(p + total - 8) != total || evs__get32(p + total - 4) != (uint32_t)sum)
        return EVS_REC_BAD;
    if (!all_zero(p + body, total - EVS_REC_TRAILER_SIZE - body) || !all_zero(p + 20, 4))
        return EVS_REC_BAD;
    if (rec_checksum(p, total, salt) != sum)
        return EVS_REC_BAD;
    out->flags = flags;
    out->position = evs__get64(p + 32);
    out->version = evs__get64(p + 40);
    out->time_us = (int64_t)evs__get64(p + 48);
    out->id = p + 56;
    const char *q = (const char *)p + EVS_REC_HDR_SIZE;
    out->stream = q; out->stream_len = slen; q += slen;
    out->type = q; out->type_len = tlen; q += tlen;
    out->data = q; out->data_len = dlen; q += dlen;
    out->metadata = (flags & EVS_REC_HAS_META) ? q : NULL;
    out->metadata_len = mlen;
    return EVS_REC_OK;
}

uint32_t evs__rec_size_from_trailer(const uint8_t trailer[8])
{
    uint32_t total = evs__get32(trailer);
    return (total >= EVS_REC_MIN_SIZE && total % 8 == 0) ? total : 0;
}

void evs__seg_hdr_encode(uint8_t out[EVS_SEG_HDR_SIZE], const evs_seg_hdr *h)
{
    memset(out, 0, EVS_SEG_HDR_SIZE);
    memcpy(out, seg_magic, 8);
    evs__put32(out + 8, EVS_FORMAT_VERSION);
    evs__put32(out + 12, EVS_SEG_HDR_SIZE);
    evs__put64(out + 16, h->base);
    evs__put64(out + 24, h->salt);
    evs__put64(out + 32, (uint64_t)h->created_us);
    evs__put64(out + 56, XXH3_64bits(out, 56));
}

int evs__seg_hdr_decode(const uint8_t in[EVS_SEG_HDR_SIZE], evs_seg_hdr *h)
{
    if (memcmp(in, seg_magic, 8) != 0)
        return EVS_ECORRUPT;
    /* the version is checked before the checksum: a newer format may lay the
     * header out differently, and must be refused as newer, not as damaged */
    h->version = evs__get32(in + 8);
    if (h->version > EVS_FORMAT_VERSION && h->version < 0x10000)
        return EVS_EFORMAT;
    if (evs__get64(in + 56) != XXH3_64bits(in, 56))
        return EVS_ECORRUPT;
    if (h->version == 0 || evs__get32(in + 12) != EVS_SEG_HDR_SIZE)
        return EVS_ECORRUPT;
    h->base = evs__get64(in + 16);
    h->salt = evs__get64(in + 24);
    h->created_us = (int64_t)evs__get64(in + 32);
    return h->base == 0 ? EVS_ECORRUPT : 0;
}
