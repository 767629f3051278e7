/*
 * parse.c — events from client JSON: one object, an array of objects, or
 * JSON Lines; the append body rules of SPEC §4.
 *
 * How the client's bytes are kept: the whole document (or NDJSON line) is
 * first judged strictly (evs__json_valid: jansson's rules on UTF-8, duplicate
 * keys, NUL escapes; jansson itself whenever the fast validator is unsure).
 * Then the raw text is walked with the scanner of scan.c, member by member,
 * in the client's order. Keys and the strings type, stream, id are decoded
 * from the raw text (so "\u0064ata" is data); data and metadata are taken as
 * byte ranges and minified, never re-serialised.
 *
 * Memory: one evs_parsed owns an array of evs_event_in and one arena block
 * holding every string, id and data copy. The arena is sized to the input
 * length up front, which always suffices: each thing stored comes from a
 * disjoint span of the input and is never longer than that span (a decoded
 * string plus its NUL is shorter than its quoted, escaped form; 16 id bytes
 * are fewer than 38; minified JSON is no longer than the original). One
 * allocation, and pointers into it never move.
 */
#include <stdio.h>
#include <stdlib.h>

#include "json/json_int.h"

struct evs_parsed {
    evs_event_in *events;   /* n parsed events */
    size_t n;               /* events in use */
    size_t cap;             /* events allocated */
    char *arena;            /* strings, ids and data copies of all events */
    size_t arena_used;      /* bytes handed out */
    size_t arena_cap;       /* bytes allocated (>= input length) */
};

/* State of one parse call, passed to the per-event code. */
typedef struct parse_ctx {
    evs_parsed *p;          /* the result being built */
    unsigned flags;         /* EVS_PARSE_* */
    const char *text;       /* the document or NDJSON line being walked */
    size_t len;             /* its length */
    char *err;              /* caller's message buffer (may be NULL) */
    size_t errlen;
    int by_line;            /* 1: NDJSON, messages say "line N"; 0: "event N" */
    size_t where_n;         /* the event index (0-based) or line number (1-based) */
    char where[48];         /* "event 3" or "line 7", formatted only for a message */
} parse_ctx;

/* The prefix of every message about one event. Formatted on demand: the
 * success path formats nothing. */
static const char *where(parse_ctx *c)
{
    snprintf(c->where, sizeof c->where, "%s %zu", c->by_line ? "line" : "event", c->where_n);
    return c->where;
}

enum field {
    F_UNKNOWN,
    F_TYPE,
    F_DATA,
    F_METADATA,
    F_ID,
    F_STREAM,
    F_EXPECTED,
    F_IGNORED               /* position, version, time under EVS_PARSE_ALLOW_POSITION */
};

static int parse_digits(const char *s, size_t n, int64_t *out)
{
    if (n == 0)
        return EVS_EINVAL;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return EVS_EINVAL;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return EVS_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int evs_parse_expected(const char *text, int64_t *out)
{
    if (!text)
        return EVS_EINVAL;
    if (strcmp(text, "any") == 0) {
        *out = EVS_EXPECT_ANY;
        return 0;
    }
    if (strcmp(text, "no_stream") == 0) {
        *out = EVS_EXPECT_NO_STREAM;
        return 0;
    }
    if (strcmp(text, "exists") == 0) {
        *out = EVS_EXPECT_EXISTS;
        return 0;
    }
    return parse_digits(text, strlen(text), out);
}

static void *arena_alloc(evs_parsed *p, size_t n)
{
    if (n > p->arena_cap - p->arena_used)
        return NULL;    /* cannot happen (see the file comment); fail safely */
    void *r = p->arena + p->arena_used;
    p->arena_used += n;
    return r;
}

static int arena_fail(parse_ctx *c)
{
    evs__errf(c->err, c->errlen, "%s: internal error: parse arena exhausted", where(c));
    return EVS_EINVAL;
}

static int bad_scan(parse_ctx *c)
{
    evs__errf(c->err, c->errlen, "%s: internal error: could not locate a value", where(c));
    return EVS_EINVAL;
}

static enum field lookup_field(const char *k, size_t n, unsigned flags)
{
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(k, lit, n) == 0)
    if (IS("type"))
        return F_TYPE;
    if (IS("data"))
        return F_DATA;
    if (IS("metadata"))
        return F_METADATA;
    if (IS("id"))
        return F_ID;
    if (IS("stream") && (flags & (EVS_PARSE_MULTI_STREAM | EVS_PARSE_ALLOW_POSITION)))
        return F_STREAM;
    if (IS("expected_version") && (flags & EVS_PARSE_MULTI_STREAM))
        return F_EXPECTED;
    if ((IS("position") || IS("version") || IS("time")) && (flags & EVS_PARSE_ALLOW_POSITION))
        return F_IGNORED;
    return F_UNKNOWN;
#undef IS
}

/* Raw string contents of the value at text[vs..ve) (a string: quotes off). */
static const char *str_body(const parse_ctx *c, size_t vs, size_t ve, size_t *len)
{
    *len = ve - vs - 2;
    return c->text + vs + 1;
}

/* A NUL-terminated, decoded arena copy of the string value, after the name rule. */
static int take_name(parse_ctx *c, size_t vs, size_t ve, const char *field, const char **out)
{
    char first = c->text[vs];
    if (first != '"') {
        evs__errf(c->err, c->errlen, "%s: field \"%s\" must be a string, got %s",
                  where(c), field, evs__json_type_name(first));
        return EVS_EINVAL;
    }
    size_t raw_n;
    const char *raw = str_body(c, vs, ve, &raw_n);
    char *copy = arena_alloc(c->p, raw_n + 1);
    if (!copy)
        return arena_fail(c);
    size_t n = evs__jscan_unescape(raw, raw_n, copy);
    copy[n] = '\0';
    if (evs__validate_name(copy, n) != 0) {
        evs__errf(c->err, c->errlen,
                  "%s: field \"%s\" must be a string of 1-255 bytes of UTF-8 without "
                  "control characters (got %zu bytes)", where(c), field, n);
        return EVS_EINVAL;
    }
    *out = copy;
    return 0;
}

/* Minified arena copy of the raw value text[vs..ve). */
static int take_raw(parse_ctx *c, size_t vs, size_t ve, const char **out, size_t *out_len)
{
    char *copy = arena_alloc(c->p, ve - vs);
    if (!copy)
        return arena_fail(c);
    *out_len = evs__jscan_minify(c->text + vs, ve - vs, copy);
    *out = copy;
    return 0;
}

/*
 * Decode a short string value into buf (cap bytes, NUL-terminated). Values
 * that cannot fit are longer than anything valid for the field (a UUID is 36
 * characters, an expected version at most 19 digits), so they fail.
 */
static int small_string(const parse_ctx *c, size_t vs, size_t ve, char *buf, size_t cap,
                        size_t *len)
{
    size_t raw_n;
    const char *raw = str_body(c, vs, ve, &raw_n);
    if (raw_n >= cap)
        return EVS_EINVAL;
    *len = evs__jscan_unescape(raw, raw_n, buf);
    buf[*len] = '\0';
    return 0;
}

static int take_id(parse_ctx *c, size_t vs, size_t ve, const uint8_t **out)
{
    char first = c->text[vs];
    if (first == 'n')
        return 0;              /* null id: the store generates one */
    char buf[6 * 36 + 1];      /* 36 characters, each possibly \uXXXX */
    size_t n;
    uint8_t *id = arena_alloc(c->p, 16);
    if (!id)
        return arena_fail(c);
    if (first != '"' || small_string(c, vs, ve, buf, sizeof buf, &n) != 0 ||
        evs_uuid_parse(buf, n, id) != 0) {
        evs__errf(c->err, c->errlen,
                  "%s: field \"id\" must be a UUID string "
                  "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, hex digits)", where(c));
        return EVS_EINVAL;
    }
    *out = id;
    return 0;
}

static int take_expected(parse_ctx *c, size_t vs, size_t ve, int64_t *out)
{
    char first = c->text[vs];
    int rc = EVS_EINVAL;
    if (first == 'n') {
        *out = EVS_EXPECT_ANY;
        return 0;
    }
    if (first == '"') {
        char buf[64];
        size_t n;
        if (small_string(c, vs, ve, buf, sizeof buf, &n) == 0 && strlen(buf) == n)
            rc = evs_parse_expected(buf, out);
    } else if (first == '-' || (first >= '0' && first <= '9')) {
        rc = parse_digits(c->text + vs, ve - vs, out);   /* the client's digits, exactly */
    }
    if (rc)
        evs__errf(c->err, c->errlen,
                  "%s: field \"expected_version\" must be a non-negative integer or one of "
                  "\"any\", \"no_stream\", \"exists\"", where(c));
    return rc;
}

static int take_field(parse_ctx *c, evs_event_in *ev, enum field f, size_t vs, size_t ve)
{
    char first = c->text[vs];
    switch (f) {
    case F_TYPE:
        return take_name(c, vs, ve, "type", &ev->type);
    case F_STREAM:
        return take_name(c, vs, ve, "stream", &ev->stream);
    case F_DATA:
        return take_raw(c, vs, ve, &ev->data, &ev->data_len);
    case F_METADATA:
        if (first == 'n')
            return 0;          /* null metadata is the same as none */
        if (first != '{') {
            evs__errf(c->err, c->errlen, "%s: field \"metadata\" must be an object or null, got %s",
                      where(c), evs__json_type_name(first));
            return EVS_EINVAL;
        }
        return take_raw(c, vs, ve, &ev->metadata, &ev->metadata_len);
    case F_ID:
        return take_id(c, vs, ve, &ev->id);
    case F_EXPECTED:
        return take_expected(c, vs, ve, &ev->expected_version);
    case F_IGNORED:
        return 0;
    case F_UNKNOWN:
        break;
    }
    return EVS_EINVAL;
}

static int push_event(parse_ctx *c, const evs_event_in *ev)
{
    evs_parsed *p = c->p;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        evs_event_in *e = realloc(p->events, cap * sizeof *e);
        if (!e) {
            evs__errf(c->err, c->errlen, "out of memory while parsing events");
            return EVS_ENOMEM;
        }
        p->events = e;
        p->cap = cap;
    }
    p->events[p->n++] = *ev;
    return 0;
}

/*
 * One event: the object at text[start..) of a validated document; *end
 * receives the index just past it. Walks the raw members in order so errors
 * name the first offending field as the client wrote it.
 */
static int parse_event(parse_ctx *c, size_t start, size_t *end)
{
    const char *t = c->text;
    size_t n = c->len;
    int rc;
    evs_event_in ev;
    memset(&ev, 0, sizeof ev);
    ev.expected_version = EVS_EXPECT_ANY;
    int have_type = 0, have_stream = 0;

    size_t i = evs__jscan_ws(t, n, start + 1);
    if (i < n && t[i] == '}')
        goto done;      /* i stays at the '}' */
    for (;;) {
        size_t ks = i;
        size_t ke = evs__jscan_string(t, n, ks);
        if (ke == EVS__JSCAN_BAD)
            return bad_scan(c);
        i = evs__jscan_ws(t, n, ke);
        if (i >= n || t[i] != ':')
            return bad_scan(c);
        size_t vs = evs__jscan_ws(t, n, i + 1);
        size_t ve = evs__jscan_value(t, n, vs);
        if (ve == EVS__JSCAN_BAD)
            return bad_scan(c);

        const char *key = t + ks + 1;
        size_t key_n = ke - ks - 2;
        char kbuf[128];        /* every known name fits, even fully escaped */
        if (key_n < sizeof kbuf && memchr(key, '\\', key_n)) {
            /* "\u0064ata" is the key data: compare decoded keys. */
            key_n = evs__jscan_unescape(key, key_n, kbuf);
            key = kbuf;
        }
        enum field f = lookup_field(key, key_n, c->flags);
        if (f == F_UNKNOWN) {
            evs__errf(c->err, c->errlen, "%s: unknown field \"%.*s\"%s", where(c),
                      (int)EVS_MIN(key_n, 64), key, key_n > 64 ? "..." : "");
            return EVS_EINVAL;
        }
        rc = take_field(c, &ev, f, vs, ve);
        if (rc)
            return rc;
        have_type |= f == F_TYPE;
        have_stream |= f == F_STREAM;

        i = evs__jscan_ws(t, n, ve);
        if (i < n && t[i] == ',') {
            i = evs__jscan_ws(t, n, i + 1);
            continue;
        }
        if (i < n && t[i] == '}')
            break;
        return bad_scan(c);
    }
done:
    *end = i + 1;
    if (!have_type) {
        evs__errf(c->err, c->errlen, "%s: field \"type\" is required", where(c));
        return EVS_EINVAL;
    }
    if ((c->flags & EVS_PARSE_MULTI_STREAM) && !have_stream) {
        evs__errf(c->err, c->errlen, "%s: field \"stream\" is required", where(c));
        return EVS_EINVAL;
    }
    return push_event(c, &ev);
}

/* One object, or an array of objects, in c->text. */
static int parse_auto(parse_ctx *c)
{
    json_error_t e;
    int rc;
    const char *t = c->text;
    size_t n = c->len;

    size_t i = evs__jscan_ws(t, n, 0);
    if (i == n) {
        evs__errf(c->err, c->errlen,
                  "the body is empty: expected a JSON object or an array of objects");
        return EVS_EINVAL;
    }
    rc = evs__json_valid(t, n, &e);
    if (rc == EVS_EINVAL)
        evs__json_errmsg(c->err, c->errlen, "", &e);
    else if (rc)
        evs__errf(c->err, c->errlen, "out of memory while parsing events");
    if (rc)
        return rc;

    if (t[i] == '{') {
        size_t end;
        c->where_n = 0;
        return parse_event(c, i, &end);
    }
    if (t[i] != '[') {
        evs__errf(c->err, c->errlen, "expected a JSON object or an array of objects, got %s",
                  evs__json_type_name(t[i]));
        return EVS_EINVAL;
    }
    i = evs__jscan_ws(t, n, i + 1);
    if (i < n && t[i] == ']') {
        evs__errf(c->err, c->errlen, "the array holds no events");
        return EVS_EINVAL;
    }
    for (size_t k = 0;; k++) {
        c->where_n = k;
        if (i >= n)
            return bad_scan(c);
        if (t[i] != '{') {
            evs__errf(c->err, c->errlen, "%s: expected a JSON object, got %s", where(c),
                      evs__json_type_name(t[i]));
            return EVS_EINVAL;
        }
        size_t end;
        rc = parse_event(c, i, &end);
        if (rc)
            return rc;
        i = evs__jscan_ws(t, n, end);
        if (i < n && t[i] == ',') {
            i = evs__jscan_ws(t, n, i + 1);
            continue;
        }
        return 0;              /* the closing ']' (the document is valid) */
    }
}

/* One object per line; blank (whitespace-only) lines are skipped. */
static int parse_ndjson(parse_ctx *c, const char *body, size_t len)
{
    size_t line_no = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(body + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - body) : len;
        const char *line = body + pos;
        size_t line_n = end - pos;
        pos = end + 1;
        line_no++;
        size_t i = evs__jscan_ws(line, line_n, 0);
        if (i == line_n)
            continue;

        json_error_t e;
        int rc = evs__json_valid(line, line_n, &e);
        if (rc == EVS_EINVAL)
            evs__errf(c->err, c->errlen, "line %zu: invalid JSON at column %d: %s", line_no,
                      e.column, e.text);
        else if (rc)
            evs__errf(c->err, c->errlen, "out of memory while parsing events");
        if (rc)
            return rc;
        c->by_line = 1;
        c->where_n = line_no;
        if (line[i] != '{') {
            evs__errf(c->err, c->errlen, "%s: expected a JSON object, got %s", where(c),
                      evs__json_type_name(line[i]));
            return EVS_EINVAL;
        }
        c->text = line;
        c->len = line_n;
        size_t obj_end;
        rc = parse_event(c, i, &obj_end);
        if (rc)
            return rc;
    }
    if (c->p->n == 0) {
        evs__errf(c->err, c->errlen, "the body holds no events (only blank lines)");
        return EVS_EINVAL;
    }
    return 0;
}

int evs_parse_events(const char *body, size_t len, int shape, unsigned flags,
                     evs_parsed **out, char *err, size_t errlen)
{
    int rc;
    parse_ctx c;
    evs_parsed *p = NULL;

    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (!body)
        len = 0;
    if (!body)
        body = "";
    p = calloc(1, sizeof *p);
    if (!p)
        goto nomem;
    p->arena_cap = len;
    p->arena = malloc(len ? len : 1);
    if (!p->arena)
        goto nomem;

    memset(&c, 0, sizeof c);
    c.p = p;
    c.flags = flags;
    c.text = body;
    c.len = len;
    c.err = err;
    c.errlen = errlen;
    if (shape == EVS_PARSE_NDJSON) {
        rc = parse_ndjson(&c, body, len);
    } else if (shape == EVS_PARSE_AUTO) {
        rc = parse_auto(&c);
    } else {
        evs__errf(err, errlen, "unknown input shape %d", shape);
        rc = EVS_EINVAL;
    }
    if (rc)
        goto out;
    *out = p;
    p = NULL;
    goto out;
nomem:
    evs__errf(err, errlen, "out of memory while parsing events");
    rc = EVS_ENOMEM;
out:
    evs_parsed_free(p);
    return rc;
}

const evs_event_in *evs_parsed_events(const evs_parsed *p, size_t *n)
{
    if (!p) {
        if (n)
            *n = 0;
        return NULL;
    }
    if (n)
        *n = p->n;
    return p->events;
}

void evs_parsed_free(evs_parsed *p)
{
    if (!p)
        return;
    free(p->events);
    free(p->arena);
    free(p);
}
