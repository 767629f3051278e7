/*
 * validate.c — an allocation-free strict JSON validator: the fast path in
 * front of jansson.
 *
 * Why: building a jansson tree costs about one malloc per value; measured on
 * the development machine that is ~6.6 us per small event, which alone would
 * cap batched appends near 150k events/s (SPEC §8 asks for 500k over HTTP).
 * This validator makes one pass with no allocation.
 *
 * Contract (kept by differential fuzzing against jansson, see
 * tests/fuzz/fuzz_parse_events.c): it answers VALID only for text that
 * jansson accepts with JSON_REJECT_DUPLICATES | JSON_DECODE_ANY and without
 * JSON_ALLOW_NUL — except numbers out of double range, which JSON allows and
 * we keep as bytes (see evs__json_load). Whenever it is not sure — invalid
 * text, keys with escapes, many keys, deep nesting — it says so, and the
 * caller asks jansson, which then decides and explains (byte offset, reason).
 */
#include "json/json_int.h"

/* Beyond these the fast path gives up and jansson (hash-based duplicate
 * check, its own depth limit) decides: they bound the work per key. */
#define FAST_MAX_DEPTH 64          /* nesting of arrays and objects */
#define FAST_MAX_KEYS 256          /* keys of all open objects together */
#define FAST_MAX_OBJECT_KEYS 64    /* keys of one object (pairwise compare) */

static int hex4(const char *s)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* Past the string whose quote is p[i], checked as jansson checks it; sets
 * *esc when it holds a backslash. EVS__JSCAN_BAD when invalid. */
static size_t check_string(const char *p, size_t n, size_t i, int *esc)
{
    size_t j = i + 1;
    while (j < n) {
        uint8_t c = (uint8_t)p[j];
        if (c == '"')
            return j + 1;
        if (c >= 0x20 && c < 0x80 && c != '\\') {
            j++;
            continue;
        }
        if (c < 0x20)
            return EVS__JSCAN_BAD;        /* raw control character */
        if (c >= 0x80) {
            uint32_t cp;
            size_t len = evs__utf8_char((const uint8_t *)p + j, n - j, &cp);
            if (len == 0)
                return EVS__JSCAN_BAD;
            j += len;
            continue;
        }
        *esc = 1;
        if (++j >= n)
            return EVS__JSCAN_BAD;
        switch (p[j]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            j++;
            continue;
        case 'u':
            break;
        default:
            return EVS__JSCAN_BAD;
        }
        if (n - j < 5)
            return EVS__JSCAN_BAD;
        int u = hex4(p + j + 1);
        j += 5;
        if (u <= 0 || (u >= 0xDC00 && u <= 0xDFFF))
            return EVS__JSCAN_BAD;        /* \u0000, bad hex, lone low surrogate */
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (n - j < 6 || p[j] != '\\' || p[j + 1] != 'u')
                return EVS__JSCAN_BAD;
            int lo = hex4(p + j + 2);
            if (lo < 0xDC00 || lo > 0xDFFF)
                return EVS__JSCAN_BAD;
            j += 6;
        }
    }
    return EVS__JSCAN_BAD;
}

static inline size_t ws_skip(const char *p, size_t n, size_t at, int *has_ws)
{
    size_t e = evs__jscan_ws(p, n, at);
    if (e != at) *has_ws = 1;
    return e;
}

typedef struct key_span {
    size_t off;     /* first byte of the key, after the quote */
    size_t len;     /* raw bytes (no escapes: equal to the decoded key) */
} key_span;

int evs__json_fast_validate_ws(const char *p, size_t n, int *has_ws)
{
    /* WS(at): skip whitespace, noting whether there was any (then the value
     * needs minifying; without any, the caller can store it as it is) */
#define WS(at) ws_skip(p, n, (at), has_ws)
    *has_ws = 0;
    char stack[FAST_MAX_DEPTH];          /* '{' or '[' of each open container */
    size_t key_base[FAST_MAX_DEPTH];     /* objects: their first key in keys[] */
    key_span keys[FAST_MAX_KEYS];
    size_t nkeys = 0;
    int depth = 0;
    size_t i = WS(0);

value:
    if (i >= n)
        return EVS__JV_INVALID;
    switch (p[i]) {
    case '{':
    case '[':
        if (depth == FAST_MAX_DEPTH)
            return EVS__JV_UNSURE;
        stack[depth] = p[i];
        key_base[depth] = nkeys;
        depth++;
        i = WS(i + 1);
        if (i < n && p[i] == (stack[depth - 1] == '{' ? '}' : ']')) {
            depth--;
            i++;
            goto after_value;
        }
        if (stack[depth - 1] == '{')
            goto key;
        goto value;
    case '"': {
        int esc = 0;
        i = check_string(p, n, i, &esc);
        if (i == EVS__JSCAN_BAD)
            return EVS__JV_INVALID;
        goto after_value;
    }
    case 't':
    case 'f':
    case 'n': {
        size_t e = evs__jscan_value(p, n, i);
        if (e == EVS__JSCAN_BAD)
            return EVS__JV_INVALID;
        i = e;
        goto after_value;
    }
    default: {
        if (p[i] != '-' && (p[i] < '0' || p[i] > '9'))
            return EVS__JV_INVALID;
        size_t e = evs__jscan_value(p, n, i);   /* the run of number characters */
        if (!evs__jscan_is_number(p + i, e - i))
            return EVS__JV_INVALID;
        i = e;
        goto after_value;
    }
    }

key:
    {
        if (i >= n || p[i] != '"')
            return EVS__JV_INVALID;
        int esc = 0;
        size_t e = check_string(p, n, i, &esc);
        if (e == EVS__JSCAN_BAD)
            return EVS__JV_INVALID;
        size_t base = key_base[depth - 1];
        if (esc || nkeys == FAST_MAX_KEYS || nkeys - base == FAST_MAX_OBJECT_KEYS)
            return EVS__JV_UNSURE;   /* decoded-key compare or a hash table: jansson */
        key_span k = {i + 1, e - i - 2};
        for (size_t q = base; q < nkeys; q++)
            if (keys[q].len == k.len && memcmp(p + keys[q].off, p + k.off, k.len) == 0)
                return EVS__JV_INVALID;   /* duplicate key */
        keys[nkeys++] = k;
        i = WS(e);
        if (i >= n || p[i] != ':')
            return EVS__JV_INVALID;
        i = WS(i + 1);
        goto value;
    }

after_value:
    i = WS(i);
    if (depth == 0)
        return i == n ? EVS__JV_VALID : EVS__JV_INVALID;
    if (i >= n)
        return EVS__JV_INVALID;
    if (p[i] == ',') {
        i = WS(i + 1);
        if (stack[depth - 1] == '{')
            goto key;
        goto value;
    }
    if (p[i] == (stack[depth - 1] == '{' ? '}' : ']')) {
        depth--;
        nkeys = key_base[depth];     /* its keys leave with it */
        i++;
        goto after_value;
    }
    return EVS__JV_INVALID;
}
#undef WS

int evs__json_fast_validate(const char *p, size_t n)
{
    int has_ws;
    return evs__json_fast_validate_ws(p, n, &has_ws);
}
