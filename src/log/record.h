/*
 * record.h — the framing of one event in a segment file, and of the segment
 * header. The byte layout is specified in record.c's header comment and in
 * docs/FORMAT.md; this header only names the pieces.
 */
#ifndef EVS_LOG_RECORD_H
#define EVS_LOG_RECORD_H

#include <stddef.h>
#include <stdint.h>

#define EVS_FORMAT_VERSION 1u          /* on-disk format of segments and records */

#define EVS_SEG_HDR_SIZE 64u           /* segment header; records start right after */
#define EVS_REC_HDR_SIZE 72u           /* fixed part of a record */
#define EVS_REC_TRAILER_SIZE 8u        /* total_len repeated + check bits */
#define EVS_REC_MIN_SIZE 88u           /* header + 1-byte stream + 1-byte type + "null"... rounded up, + trailer */

#define EVS_REC_KIND_EVENT 1u

#define EVS_REC_COMMIT 0x01u           /* last record of one atomic append */
#define EVS_REC_HAS_META 0x02u         /* metadata present (else it was not sent) */
#define EVS_REC_AFTER_SYNC 0x04u       /* first record of a write issued only after every earlier
                                        * byte of its segment was fdatasync'ed (recovery uses it to
                                        * tell damage inside the log from a torn final write) */

/* The decoded view of one record. Pointers point into the bytes decoded. */
typedef struct evs_rec {
    uint32_t size;            /* total bytes of the record, header to trailer */
    uint8_t flags;            /* EVS_REC_COMMIT | EVS_REC_HAS_META | EVS_REC_AFTER_SYNC */
    uint64_t position;        /* global position */
    uint64_t version;         /* version within its stream */
    int64_t time_us;          /* commit time */
    const uint8_t *id;        /* 16 bytes */
    const char *stream;       /* not NUL-terminated in the record */
    uint32_t stream_len;
    const char *type;
    uint32_t type_len;
    const char *data;
    uint32_t data_len;
    const char *metadata;     /* NULL when absent */
    uint32_t metadata_len;
} evs_rec;

/* What evs__rec_decode found at an offset. */
typedef enum evs_rec_status {
    EVS_REC_OK = 0,      /* a valid record; rec filled */
    EVS_REC_END = 1,     /* zero bytes where a header would start: the clean end */
    EVS_REC_SHORT = 2,   /* the record extends past the bytes available (rec->size says how far, if known) */
    EVS_REC_BAD = 3      /* framing or checksum invalid */
} evs_rec_status;

/* Bytes a record with these field lengths occupies. */
uint32_t evs__rec_size(size_t stream_len, size_t type_len, size_t data_len, size_t meta_len);

/*
 * Encode the parts of a record known before commit (everything except
 * position, version, time and the checksum) into dst, which holds
 * evs__rec_size(...) bytes. meta may be NULL (absent).
 */
void evs__rec_encode(uint8_t *dst, const char *stream, size_t stream_len,
                     const char *type, size_t type_len, const char *data, size_t data_len,
                     const char *meta, size_t meta_len, const uint8_t id[16], int commit);

/* Fill in the commit fields and the checksums; after this the record is final. */
void evs__rec_finish(uint8_t *rec, uint64_t salt, uint64_t position, uint64_t version,
                     int64_t time_us);

/* Decode and verify the record at p (avail bytes readable). */
evs_rec_status evs__rec_decode(const uint8_t *p, size_t avail, uint64_t salt, evs_rec *out);

/* From the 8 trailer bytes that end a record, its total size (0 if implausible). */
uint32_t evs__rec_size_from_trailer(const uint8_t trailer[8]);

/* Segment header. */
typedef struct evs_seg_hdr {
    uint64_t base;           /* first position stored in the segment */
    uint64_t salt;           /* random per segment; seeds every record checksum */
    int64_t created_us;      /* creation time */
    uint32_t version;        /* format version */
} evs_seg_hdr;

void evs__seg_hdr_encode(uint8_t out[EVS_SEG_HDR_SIZE], const evs_seg_hdr *h);
/* 0; EVS_ECORRUPT (bad magic/checksum); EVS_EFORMAT (newer version). */
int evs__seg_hdr_decode(const uint8_t in[EVS_SEG_HDR_SIZE], evs_seg_hdr *h);

#endif
