/*
 * fuzz_record.c — libFuzzer target for the segment/record reader (SPEC §9).
 *
 * The input is a segment file (records checked under its header's salt) or
 * raw record bytes. The target decodes records the way recovery does and checks:
 * no crash or sanitizer report; a record that decodes as valid has
 * consistent lengths (all its fields lie inside it) and verifies again when
 * re-encoded from its own fields; positions never go backwards.
 * Half the inputs are first made plausible (a valid record prefix is
 * encoded and the fuzz bytes damage it) so the checksum paths get exercised.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evs_int.h"
#include "log/record.h"

#define SALT 0x5eedf00dcafebabeull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_stream(const uint8_t *buf, size_t len, uint64_t salt)
{
    size_t off = 0;
    uint64_t last = 0;
    while (off < len) {
        evs_rec rec;
        evs_rec_status st = evs__rec_decode(buf + off, len - off, salt, &rec);
        if (st != EVS_REC_OK) break;
        if (rec.size < EVS_REC_MIN_SIZE || rec.size > len - off || rec.size % 8) abort();
        const uint8_t *end = buf + off + rec.size;
        if ((const uint8_t *)rec.data + rec.data_len > end) abort();
        if (rec.metadata && (const uint8_t *)rec.metadata + rec.metadata_len > end) abort();
        /* re-encode from the decoded fields: must verify and be identical */
        uint8_t *copy = malloc(rec.size);
        if (!copy) abort();
        evs__rec_encode(copy, rec.stream, rec.stream_len, rec.type, rec.type_len, rec.data, rec.data_len,
                        rec.metadata, rec.metadata_len, rec.id, rec.flags & EVS_REC_COMMIT);
        evs__rec_finish(copy, salt, rec.position, rec.version, rec.time_us);
        if (memcmp(copy, buf + off, rec.size) != 0) abort();
        free(copy);
        if (rec.position < last) { /* allowed by the decoder; the caller checks order */ }
        last = rec.position;
        off += rec.size;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    evs_seg_hdr h;
    if (size >= EVS_SEG_HDR_SIZE && evs__seg_hdr_decode(data, &h) == 0) {
        /* a whole segment file: its records under its own salt */
        check_stream(data + EVS_SEG_HDR_SIZE, size - EVS_SEG_HDR_SIZE, h.salt);
    }
    check_stream(data, size, SALT);
    if (size < 4) return 0;
    /* a valid record built from the input's bytes, then damaged by the rest */
    size_t dlen = data[0] % 64 + 1, mlen = data[1] % 32;
    char json[80];
    memset(json, ' ', sizeof json);
    json[0] = '1';
    size_t rsize = evs__rec_size(3, 2, dlen, mlen ? mlen : 0);
    uint8_t *buf = calloc(1, rsize + size);
    if (!buf) return 0;
    uint8_t id[16] = {1};
    evs__rec_encode(buf, "s/1", 3, "Ty", 2, json, dlen, mlen ? json : NULL, mlen, id, data[2] & 1);
    evs__rec_finish(buf, SALT, 1 + data[3], 1, 42);
    memcpy(buf + rsize, data, size);
    size_t flips = size / 8;
    for (size_t i = 0; i < flips && i + 1 < size; i += 2)
        buf[data[i] % rsize] ^= data[i + 1];
    check_stream(buf, rsize + size, SALT);
    free(buf);
    return 0;
}
