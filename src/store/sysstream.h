/*
 * sysstream.h — what projection.c and consumer.c share: system-stream names,
 * reading a system stream's last event, filters in their canonical JSON form,
 * and small JSON-building helpers. Internal; nothing here is API.
 *
 * A filter's canonical form is the exact text stored in ProjectionDefined
 * (and in a filter consumer's ConsumerCreated): {"types":[...],"stream_prefix":"..."}
 * with the types sorted bytewise and deduplicated, and each key present only
 * when that part of the filter is. Two filters select the same events exactly
 * when their canonical texts are equal, so "same definition" is a byte compare
 * and the filter hash in a projection index is XXH3-64 of this text.
 */
#ifndef EVS_STORE_SYSSTREAM_H
#define EVS_STORE_SYSSTREAM_H

#include "store/store_int.h"

#define EVS_SYS_PROJECTIONS "$projections/"   /* + name */
#define EVS_SYS_CONSUMERS "$consumers/"       /* + name */

/* A filter that owns its strings. */
typedef struct evs_ofilter {
    char **types;                /* sorted, distinct; NULL when ntypes == 0 */
    size_t ntypes;
    char *prefix;                /* NULL = no prefix ("" is a prefix that matches every user stream) */
} evs_ofilter;

void evs__ofilter_free(evs_ofilter *f);
/* The same rule as read.c's passes() and the builder's scan: system streams
 * are hidden unless the prefix starts with '$'. */
int evs__ofilter_match(const evs_ofilter *f, const char *stream, size_t slen, const char *type, size_t tlen);
/* f as an evs_filter for evs_iter_open (borrows f's strings). */
evs_filter evs__ofilter_view(const evs_ofilter *f);

/* Validate f (types 1..255-byte names; prefix <= 255 bytes of valid name text;
 * at least one part) and write its canonical JSON into out (NUL-terminated,
 * out->len excludes the NUL). EVS_EINVAL; EVS_ENOMEM. */
int evs__filter_canon(const evs_filter *f, evs_buf *out);
/* Parse filter JSON (keys "types" and "stream_prefix" only; at least one).
 * The result is validated like evs__filter_canon's input. EVS_EINVAL; EVS_ENOMEM. */
int evs__filter_parse(const char *json, size_t len, evs_ofilter *out);
/* Canonical JSON of an already parsed filter. */
int evs__ofilter_canon(const evs_ofilter *f, evs_buf *out);

/* kind + name into out (256 bytes), validated as a stream name; the name
 * part must be non-empty. EVS_EINVAL when it is not a valid name. */
int evs__sys_name(char out[256], const char *kind, const char *name);

/* The last event of a stream (one allocation, caller frees with evs_free).
 * EVS_ENOTFOUND when the stream has no events. */
int evs__sys_last(evs_store *s, const char *stream, evs_event **out);
/* The event at version of stream, likewise. */
int evs__sys_at_version(evs_store *s, const char *stream, uint64_t version, evs_event **out);

/* Append text (with quotes, escaped) as a JSON string; p[0..n) is valid UTF-8. */
int evs__json_str(evs_buf *b, const char *p, size_t n);
/* Append a C string verbatim. */
int evs__buf_puts(evs_buf *b, const char *str);
/* NUL-terminate b (not counted in len). */
int evs__buf_nul(evs_buf *b);

/* [backup] For evs_verify: the parts of a ConsumerCheckpoint event (data and
 * metadata exactly as evs_consumer_checkpoint writes them): the position, the
 * created_version, and where the state lies in data. 0 or EVS_ECORRUPT. */
int evs__consumer_checkpoint_parse(const char *data, size_t dlen, const char *meta, size_t mlen, uint64_t *position,
                                   uint64_t *created_version, size_t *state_off, size_t *state_len);
/* [backup] 0 when def[0..len) is a consumer definition in its canonical form
 * (the data of a ConsumerCreated event); EVS_EINVAL; EVS_ENOMEM. */
int evs__consumer_def_check(const char *def, size_t len);

/* Changes to one system stream are serialised in the process by a striped
 * mutex (only the writer process can append, so this orders every change;
 * without it, threads checkpointing one consumer would keep losing the
 * expected-version race to each other). The expected version stays as the
 * check; EVS_SYS_RETRIES bounds the re-reads if it ever fails anyway. */
void evs__sys_lock(evs_store *s, const char *stream);
void evs__sys_unlock(evs_store *s, const char *stream);
#define EVS_SYS_RETRIES 64

#endif
