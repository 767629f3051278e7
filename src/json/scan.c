/*
 * scan.c — a raw-text JSON scanner: finds where values, strings and
 * whitespace are in the bytes a client sent, so that data and metadata can be
 * kept byte for byte instead of being re-serialised by jansson (which would
 * turn 129.95 into 129.94999999999999 and reorder nothing, but re-escape).
 *
 * Invariant: callers run the scanner only over text that evs__json_load()
 * accepted, so it does not re-judge validity. It still checks every bound and
 * returns EVS__JSCAN_BAD instead of reading past the end, so a caller bug
 * cannot become an out-of-bounds read.
 */
#include "json/json_int.h"

static inline int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static inline int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Characters that can appear in a JSON number token. */
static inline int is_number_char(char c)
{
    return is_digit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

size_t evs__jscan_string(const char *p, size_t n, size_t i)
{
    if (i >= n || p[i] != '"')
        return EVS__JSCAN_BAD;
    for (size_t j = i + 1; j < n; j++) {
        if (p[j] == '\\')
            j++;           /* skip the escaped character ('"' or '\\' included) */
        else if (p[j] == '"')
            return j + 1;
    }
    return EVS__JSCAN_BAD;
}

/* Past a nested array or object starting at p[i]: bracket depth counting is
 * enough because the text is known valid, and it needs no stack. */
static size_t scan_container(const char *p, size_t n, size_t i)
{
    size_t depth = 0;
    size_t j = i;
    while (j < n) {
        char c = p[j];
        if (c == '"') {
            j = evs__jscan_string(p, n, j);
            if (j == EVS__JSCAN_BAD)
                return EVS__JSCAN_BAD;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return EVS__JSCAN_BAD;
            if (--depth == 0)
                return j + 1;
        }
        j++;
    }
    return EVS__JSCAN_BAD;
}

static size_t scan_literal(const char *p, size_t n, size_t i, const char *lit, size_t len)
{
    if (n - i < len || memcmp(p + i, lit, len) != 0)
        return EVS__JSCAN_BAD;
    return i + len;
}

size_t evs__jscan_value(const char *p, size_t n, size_t i)
{
    if (i >= n)
        return EVS__JSCAN_BAD;
    switch (p[i]) {
    case '"':
        return evs__jscan_string(p, n, i);
    case '{':
    case '[':
        return scan_container(p, n, i);
    case 't':
        return scan_literal(p, n, i, "true", 4);
    case 'f':
        return scan_literal(p, n, i, "false", 5);
    case 'n':
        return scan_literal(p, n, i, "null", 4);
    default:
        break;
    }
    if (p[i] != '-' && !is_digit(p[i]))
        return EVS__JSCAN_BAD;
    size_t j = i;
    while (j < n && is_number_char(p[j]))
        j++;
    return j;
}

size_t evs__jscan_first_ws(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '"') {
            size_t e = evs__jscan_string(p, n, i);
            if (e == EVS__JSCAN_BAD)
                return n;   /* unterminated: nothing outside a string follows */
            i = e - 1;
        } else if (is_ws(c)) {
            return i;
        }
    }
    return n;
}

size_t evs__jscan_minify(const char *p, size_t n, char *dst)
{
    size_t o = 0;
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        if (c == '"') {
            size_t e = evs__jscan_string(p, n, i);
            if (e == EVS__JSCAN_BAD)
                e = n;      /* cannot happen on validated text; copy the rest */
            memcpy(dst + o, p + i, e - i);
            o += e - i;
            i = e;
        } else {
            if (!is_ws(c))
                dst[o++] = c;
            i++;
        }
    }
    return o;
}

int evs__jscan_is_number(const char *p, size_t n)
{
    size_t i = 0;
    if (i < n && p[i] == '-')
        i++;
    if (i >= n)
        return 0;
    if (p[i] == '0') {
        i++;
    } else if (p[i] >= '1' && p[i] <= '9') {
        while (i < n && is_digit(p[i]))
            i++;
    } else {
        return 0;
    }
    if (i < n && p[i] == '.') {
        i++;
        if (i >= n || !is_digit(p[i]))
            return 0;
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= n || !is_digit(p[i]))
            return 0;
        while (i < n && is_digit(p[i]))
            i++;
    }
    return i == n;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The \uXXXX at p[i] (p[i] == '\\'), or -1. */
static long escape_u(const char *p, size_t n, size_t i)
{
    if (n - i < 6 || p[i] != '\\' || p[i + 1] != 'u')
        return -1;
    long v = 0;
    for (size_t k = 2; k < 6; k++) {
        int d = hex_digit(p[i + k]);
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t evs__jscan_unescape(const char *p, size_t n, char *dst)
{
    const char *bs = memchr(p, '\\', n);
    if (!bs) {                 /* the usual case */
        memcpy(dst, p, n);
        return n;
    }
    size_t o = (size_t)(bs - p);
    memcpy(dst, p, o);
    size_t i = o;
    while (i < n) {
        char c = p[i];
        if (c != '\\' || i + 1 >= n) {
            dst[o++] = c;
            i++;
            continue;
        }
        char e = p[i + 1];
        char r = 0;
        switch (e) {
        case '"': r = '"'; break;
        case '\\': r = '\\'; break;
        case '/': r = '/'; break;
        case 'b': r = '\b'; break;
        case 'f': r = '\f'; break;
        case 'n': r = '\n'; break;
        case 'r': r = '\r'; break;
        case 't': r = '\t'; break;
        default: break;
        }
        if (r) {
            dst[o++] = r;
            i += 2;
            continue;
        }
        long u = escape_u(p, n, i);
        if (u < 0) {           /* not valid JSON: cannot happen; keep the bytes */
            dst[o++] = c;
            i++;
            continue;
        }
        i += 6;
        if (u >= 0xD800 && u <= 0xDBFF) {
            long lo = i < n ? escape_u(p, n, i) : -1;
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
        }
        /* 6 escaped bytes give at most 3, a 12-byte pair 4: never grows */
        o += put_utf8(dst + o, (uint32_t)u);
    }
    return o;
}
