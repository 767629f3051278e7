/*
 * json_int.h — private helpers shared by the files of src/json/ (check.c,
 * validate.c, scan.c, parse.c) and src/util/names.c (the UTF-8 decoder).
 * Nothing here is API.
 *
 * The one idea behind these helpers: jansson's rules decide whether text is
 * valid JSON (UTF-8, escapes, duplicate keys, no NUL) — applied by a fast
 * allocation-free validator where it is sure, by jansson itself otherwise —
 * but jansson's values are never serialised back. The bytes a client sent are
 * located with a small raw-text scanner and kept as they are, minus
 * insignificant whitespace.
 */
#ifndef EVS_JSON_INT_H
#define EVS_JSON_INT_H

#include <jansson.h>

#include "evs_int.h"

/* Sentinel returned by the scanner when the text is not what it expected. */
#define EVS__JSCAN_BAD ((size_t)-1)

/* ---- check.c ---- */

/*
 * Strictly decode p[0..n) as one JSON value: JSON_REJECT_DUPLICATES |
 * JSON_DECODE_ANY, NUL escapes refused. Numbers jansson cannot represent
 * (1e400, 400-digit integers) are still accepted when they follow the JSON
 * grammar: JSON does not limit range, and the bytes are kept, not the value.
 * Do not trust json_number_value() of the result.
 * @return 0 with *out set (caller json_decref()s it); EVS_EINVAL with *e
 *         describing the problem; EVS_ENOMEM.
 */
int evs__json_load(const char *p, size_t n, json_t **out, json_error_t *e);

/*
 * Strictly validate p[0..n) as one JSON value, as evs__json_load judges it,
 * without building a tree when the fast validator (validate.c) is sure. Raw
 * NUL bytes are refused up front (jansson 2.14 skips one after a number).
 * @return 0; EVS_EINVAL with *e describing the problem; EVS_ENOMEM.
 */
int evs__json_valid(const char *p, size_t n, json_error_t *e);

/* Write "<prefix>invalid JSON at byte B (line L, column C): <reason>" into err. */
void evs__json_errmsg(char *err, size_t errlen, const char *prefix, const json_error_t *e);

/*
 * printf into err, then make the result safe to show anywhere: control
 * characters and bytes that are not valid UTF-8 become '?', and truncation
 * never splits a UTF-8 sequence. err may be NULL or errlen 0.
 */
void evs__errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "an object", "a string", ... for messages, from the first byte of a
 * valid JSON value. */
const char *evs__json_type_name(char first);

/* ---- validate.c ---- */
enum { EVS__JV_VALID = 0, EVS__JV_INVALID = 1, EVS__JV_UNSURE = 2 };

/* The allocation-free fast path: EVS__JV_VALID only for text jansson would
 * accept (numbers of any range allowed); otherwise the caller asks jansson. */
int evs__json_fast_validate(const char *p, size_t n);
/* The same, also telling whether the text holds insignificant whitespace
 * (valid text without any is stored as it is, with no second pass). */
int evs__json_fast_validate_ws(const char *p, size_t n, int *has_ws);

/*
 * Length of the valid UTF-8 sequence at s[0..n) (1..4) with its code point in
 * *cp, or 0 when s starts with no valid sequence (overlong, surrogate, above
 * U+10FFFF, stray continuation byte, truncated). n must be >= 1.
 */
static inline size_t evs__utf8_char(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;  /* allowed range of the second byte */
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        if (b == 0xE0)
            lo = 0xA0;             /* below: overlong */
        else if (b == 0xED)
            hi = 0x9F;             /* above: UTF-16 surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        if (b == 0xF0)
            lo = 0x90;             /* below: overlong */
        else if (b == 0xF4)
            hi = 0x8F;             /* above: beyond U+10FFFF */
    } else {
        return 0;                  /* continuation byte, C0/C1 overlong lead, F5..FF */
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    uint32_t c = b & (0x7Fu >> len);
    c = (c << 6) | (s[1] & 0x3Fu);
    for (size_t k = 2; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[k] & 0x3Fu);
    }
    *cp = c;
    return len;
}

/* ---- scan.c: raw-text scanner over text already validated by evs__json_load ---- */

/* First index >= i in p[0..n) that is not JSON whitespace (n if none).
 * Inline: it runs between every two tokens. */
static inline size_t evs__jscan_ws(const char *p, size_t n, size_t i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* Index just past the one value starting at p[i] (no leading whitespace), or
 * EVS__JSCAN_BAD if p[i] does not start a complete value. Iterative: no
 * recursion however deep the nesting. */
size_t evs__jscan_value(const char *p, size_t n, size_t i);

/* Index just past the string whose opening quote is p[i], or EVS__JSCAN_BAD. */
size_t evs__jscan_string(const char *p, size_t n, size_t i);

/* Index of the first whitespace outside strings in p[0..n), or n if none. */
size_t evs__jscan_first_ws(const char *p, size_t n);

/* Copy p[0..n) to dst (n bytes of room) without whitespace outside strings;
 * returns the bytes written. */
size_t evs__jscan_minify(const char *p, size_t n, char *dst);

/* Decode the contents of a valid JSON string (the bytes between the quotes)
 * into dst, which has room for n bytes (decoding never grows); returns the
 * decoded length. */
size_t evs__jscan_unescape(const char *p, size_t n, char *dst);

/* 1 if p[0..n) is exactly one number by the JSON grammar. */
int evs__jscan_is_number(const char *p, size_t n);

#endif
