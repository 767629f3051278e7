/*
 * check.c — strict validation of client JSON on the append path, and the
 * minified copy that is stored.
 *
 * Owns evs__json_check (evs_int.h) and the shared helpers of json_int.h:
 * evs__json_load (jansson with the strict flags), evs__json_valid (the fast
 * validator of validate.c, with jansson deciding whatever it is unsure of),
 * the error-message writers.
 *
 * Invariants: validity is jansson's (UTF-8, escapes, duplicate keys, no
 * \u0000); nothing jansson decodes is ever serialised again. The stored bytes
 * are the client's bytes with only the whitespace outside strings removed, so
 * numbers, escapes, key order and Unicode stay byte-identical.
 */
#include <stdio.h>
#include <stdlib.h>

#include "json/json_int.h"

/* JSON_DECODE_INT_AS_REAL: an integer beyond int64 is still valid JSON; as a
 * real jansson accepts it (we never use the value). No JSON_ALLOW_NUL: names
 * are C strings, and a NUL inside data would surprise most consumers. */
#define EVS__JSON_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL)

void evs__errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (w < 0) {
        err[0] = '\0';
        return;
    }
    /* Messages quote client bytes (keys, jansson's "near '...'"): keep them
     * printable UTF-8 so they can go into a log line or a JSON error. */
    size_t n = strlen(err);
    size_t i = 0;
    while (i < n) {
        uint8_t b = (uint8_t)err[i];
        if (b < 0x20 || b == 0x7F) {
            err[i++] = '?';
            continue;
        }
        uint32_t cp;
        size_t len = evs__utf8_char((const uint8_t *)err + i, n - i, &cp);
        if (len == 0) {
            /* A lead byte whose sequence vsnprintf cut off: end the string
             * there rather than show half a character. */
            if (b >= 0xC2 && b <= 0xF4 && n - i < 4 && (size_t)w >= errlen) {
                err[i] = '\0';
                break;
            }
            err[i++] = '?';
            continue;
        }
        if (cp >= 0x80 && cp <= 0x9F)
            memset(err + i, '?', len);   /* C1 controls */
        i += len;
    }
}

void evs__json_errmsg(char *err, size_t errlen, const char *prefix, const json_error_t *e)
{
    evs__errf(err, errlen, "%sinvalid JSON at byte %d (line %d, column %d): %s",
              prefix, e->position, e->line, e->column, e->text);
}

const char *evs__json_type_name(char first)
{
    switch (first) {
    case '{': return "an object";
    case '[': return "an array";
    case '"': return "a string";
    case 't':
    case 'f': return "a boolean";
    case 'n': return "null";
    default: return "a number";
    }
}

/*
 * Replace every number token that follows the JSON grammar by a zero of the
 * same length ("0", "-0", "0.0", "0.00", ...), so jansson reads a token of the
 * same extent and its error offsets still point into the client's text.
 * Tokens that break the grammar are left for jansson to reject with its own
 * message.
 */
static void neutralize_numbers(char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        if (c == '"') {
            size_t e = evs__jscan_string(p, n, i);
            if (e == EVS__JSCAN_BAD)
                return;
            i = e;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t e = evs__jscan_value(p, n, i);
            size_t len = e - i;
            if (evs__jscan_is_number(p + i, len)) {
                if (len == 1) {
                    p[i] = '0';
                } else if (len == 2) {
                    memcpy(p + i, "-0", 2);
                } else {
                    memcpy(p + i, "0.", 2);
                    memset(p + i + 2, '0', len - 2);
                }
            }
            i = e;
        } else {
            i++;
        }
    }
}

static int load_error_rc(const json_error_t *e)
{
    return json_error_code(e) == json_error_out_of_memory ? EVS_ENOMEM : EVS_EINVAL;
}

int evs__json_load(const char *p, size_t n, json_t **out, json_error_t *e)
{
    *out = NULL;
    if (!p)
        p = "";     /* jansson refuses a NULL buffer even for length 0 */
    json_t *v = json_loadb(p, n, EVS__JSON_FLAGS, e);
    if (v) {
        *out = v;
        return 0;
    }
    if (json_error_code(e) != json_error_numeric_overflow)
        return load_error_rc(e);

    /* A number out of double range (1e400) is valid JSON, and we keep its
     * bytes, not its value: let jansson judge everything else on a copy where
     * such numbers are replaced by 0. This path is rare, so the copy is fine. */
    char *copy = malloc(n);
    if (!copy)
        return EVS_ENOMEM;
    memcpy(copy, p, n);
    neutralize_numbers(copy, n);
    v = json_loadb(copy, n, EVS__JSON_FLAGS, e);
    free(copy);
    if (!v)
        return load_error_rc(e);
    *out = v;
    return 0;
}

/*
 * jansson 2.14 silently skips a raw NUL byte that directly follows a number
 * or a literal ("[1\0]" is accepted): its reader uses NUL as "buffer empty".
 * A raw NUL is never valid JSON (inside a string it is a control character),
 * so refuse it here, before jansson can see it.
 */
static int reject_nul(const char *p, size_t n, json_error_t *e)
{
    const char *z = memchr(p, '\0', n);
    if (!z)
        return 0;
    size_t off = (size_t)(z - p);
    int line = 1, column = 0;
    for (size_t i = 0; i < off; i++) {
        if (p[i] == '\n') {
            line++;
            column = 0;
        } else if (((uint8_t)p[i] & 0xC0) != 0x80) {
            column++;      /* characters, as jansson counts them */
        }
    }
    memset(e, 0, sizeof *e);
    e->line = line;
    e->column = column + 1;
    e->position = (int)EVS_MIN(off + 1, (size_t)INT32_MAX);
    snprintf(e->text, sizeof e->text, "a NUL byte is not allowed in JSON");
    return EVS_EINVAL;
}

/* evs__json_valid, also saying whether minifying may be needed (1 when unsure). */
static int json_valid_ws(const char *p, size_t n, json_error_t *e, int *has_ws)
{
    if (!p)
        p = "";
    int fast = evs__json_fast_validate_ws(p, n, has_ws);
    if (fast == EVS__JV_VALID)
        return 0;
    *has_ws = 1;
    if (reject_nul(p, n, e))
        return EVS_EINVAL;
    /* Invalid or unsure: jansson decides, and says where and why. */
    json_t *v = NULL;
    int rc = evs__json_load(p, n, &v, e);
    json_decref(v);
    return rc;
}

int evs__json_valid(const char *p, size_t n, json_error_t *e)
{
    int has_ws;
    return json_valid_ws(p, n, e, &has_ws);
}

int evs__json_check(const char *p, size_t n, int want_object, const char **out,
                    size_t *out_len, char **owned, char *err, size_t errlen)
{
    json_error_t e;
    int rc;

    *out = NULL;
    *out_len = 0;
    *owned = NULL;
    size_t first = p ? evs__jscan_ws(p, n, 0) : n;
    if (first == n) {
        evs__errf(err, errlen, "expected a JSON value, got %s",
                  n ? "only whitespace" : "nothing");
        return EVS_EINVAL;
    }
    int has_ws = 1;
    rc = json_valid_ws(p, n, &e, &has_ws);
    if (rc == EVS_EINVAL)
        evs__json_errmsg(err, errlen, "", &e);
    else if (rc)
        evs__errf(err, errlen, "out of memory while checking JSON");
    if (rc)
        return rc;
    if (want_object && p[first] != '{') {
        evs__errf(err, errlen, "expected a JSON object, got %s", evs__json_type_name(p[first]));
        return EVS_EINVAL;
    }

    size_t ws = has_ws ? evs__jscan_first_ws(p, n) : n;  /* the validator saw none: skip the scan */
    if (ws == n) {
        *out = p;        /* already minified: no copy on the common path */
        *out_len = n;
        return 0;
    }
    char *copy = malloc(n);
    if (!copy) {
        evs__errf(err, errlen, "out of memory while checking JSON");
        return EVS_ENOMEM;
    }
    memcpy(copy, p, ws);
    *out_len = ws + evs__jscan_minify(p + ws, n - ws, copy + ws);
    *out = copy;
    *owned = copy;
    return 0;
}
