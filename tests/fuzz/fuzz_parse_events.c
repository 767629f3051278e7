/*
 * fuzz_parse_events.c — libFuzzer target for the event parser and the JSON
 * checker (SPEC §9: fuzzing of the event validator).
 *
 * Properties checked on every input, beyond "does not crash":
 *  - the fast validator agrees with jansson: what it calls valid jansson
 *    accepts, what it calls invalid jansson rejects (numbers out of double
 *    range aside, by design: evs__json_load accepts them too).
 *  - the parser's own decoding agrees with jansson: type, stream and the
 *    value of data/metadata equal what jansson decodes from the body.
 *  - evs_parse_events: on success every event has a valid type, data and
 *    metadata re-validate with jansson and are already minified (checking
 *    them again returns the same pointer), metadata is an object; the served
 *    line of each event re-imports to the same bytes.
 *  - evs__json_check: on success the output is valid and a fixed point.
 *
 * Build (not wired into CMake), from the project root:
 *   clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE
 *     -Iinclude -Isrc tests/fuzz/fuzz_parse_events.c src/json/check.c
 *     src/json/scan.c src/json/parse.c src/json/format.c src/json/validate.c
 *     src/util/names.c src/util/uuid.c src/util/buf.c src/util/errors.c
 *     -ljansson -lpthread
 * (or link the library objects instead of the list of sources).
 */
#include <stdlib.h>
#include <string.h>

#include "evs_int.h"
#include "json/json_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_fixed_point(const char *p, size_t n, int want_object)
{
    const char *out;
    size_t out_len;
    char *owned;
    char err[256];
    if (evs__json_check(p, n, want_object, &out, &out_len, &owned, err, sizeof err) != 0)
        abort();           /* what we produced or stored must be valid */
    if (out != p || owned)
        abort();           /* and already minified */
}

static void check_event(const evs_event_in *ev)
{
    if (!ev->type || evs__validate_name(ev->type, strlen(ev->type)) != 0)
        abort();
    if (ev->stream && evs__validate_name(ev->stream, strlen(ev->stream)) != 0)
        abort();
    if (ev->data)
        check_fixed_point(ev->data, ev->data_len, 0);
    if (ev->metadata)
        check_fixed_point(ev->metadata, ev->metadata_len, 1);

    /* served line -> re-import gives the same bytes */
    evs_event out;
    memset(&out, 0, sizeof out);
    out.position = 1;
    out.version = 1;
    out.stream = ev->stream ? ev->stream : "s";
    out.stream_len = strlen(out.stream);
    out.type = ev->type;
    out.type_len = strlen(ev->type);
    out.data = ev->data;
    out.data_len = ev->data_len;
    out.metadata = ev->metadata;
    out.metadata_len = ev->metadata_len;
    if (ev->id)
        memcpy(out.id, ev->id, 16);
    size_t need = evs_event_format(&out, NULL, 0);
    char *line = malloc(need + 1);
    if (!line || evs_event_format(&out, line, need + 1) != need)
        abort();
    evs_parsed *p = NULL;
    char err[256];
    if (evs_parse_events(line, need, EVS_PARSE_NDJSON, EVS_PARSE_ALLOW_POSITION, &p, err,
                         sizeof err) != 0)
        abort();
    size_t n;
    const evs_event_in *back = evs_parsed_events(p, &n);
    if (n != 1 || strcmp(back->type, ev->type) != 0 || strcmp(back->stream, out.stream) != 0)
        abort();
    const char *d = ev->data ? ev->data : "null";
    size_t dl = ev->data ? ev->data_len : 4;
    if (back->data_len != dl || memcmp(back->data, d, dl) != 0)
        abort();
    if ((back->metadata == NULL) != (ev->metadata == NULL))
        abort();
    if (ev->metadata && (back->metadata_len != ev->metadata_len ||
                         memcmp(back->metadata, ev->metadata, ev->metadata_len) != 0))
        abort();
    evs_parsed_free(p);
    free(line);
}

/* The fast validator never disagrees with jansson. (A raw NUL byte aside:
 * jansson 2.14 skips one after a number or literal; evs__json_valid refuses
 * NUL bytes before asking jansson.) */
static void check_validators_agree(const char *p, size_t n)
{
    json_error_t e;
    int fast = evs__json_fast_validate(p, n);
    if (memchr(p, '\0', n)) {
        if (fast == EVS__JV_VALID || evs__json_valid(p, n, &e) != EVS_EINVAL)
            abort();
        return;
    }
    json_t *v = NULL;
    int rc = evs__json_load(p, n, &v, &e);
    json_decref(v);
    if (fast == EVS__JV_VALID && rc != 0)
        abort();
    if (fast == EVS__JV_INVALID && rc != EVS_EINVAL)
        abort();
}

static int same_string(const json_t *v, const char *s)
{
    return json_is_string(v) && json_string_length(v) == strlen(s) &&
           memcmp(json_string_value(v), s, strlen(s)) == 0;
}

/* Compare one value we kept as bytes with what jansson decoded in place. */
static void check_same_value(const char *bytes, size_t n, const json_t *want)
{
    json_error_t e;
    json_t *got = json_loadb(bytes, n, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &e);
    if (!got || !json_equal(got, want))
        abort();
    json_decref(got);
}

/* AUTO shape: the events match jansson's decoding of the whole body (when
 * jansson can represent it all: no number out of double range). */
static void check_against_jansson(const char *body, size_t len, unsigned flags,
                                  const evs_event_in *ev, size_t n)
{
    json_error_t e;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY |
                              JSON_DECODE_INT_AS_REAL, &e);
    if (!root)
        return;
    if ((json_is_object(root) && n != 1) || (json_is_array(root) && json_array_size(root) != n))
        abort();
    for (size_t k = 0; k < n; k++) {
        const json_t *obj = json_is_object(root) ? root : json_array_get(root, k);
        if (!same_string(json_object_get(obj, "type"), ev[k].type))
            abort();
        if (ev[k].stream && !same_string(json_object_get(obj, "stream"), ev[k].stream))
            abort();
        const json_t *d = json_object_get(obj, "data");
        if ((d == NULL) != (ev[k].data == NULL))
            abort();
        if (d)
            check_same_value(ev[k].data, ev[k].data_len, d);
        const json_t *m = json_object_get(obj, "metadata");
        if (ev[k].metadata)
            check_same_value(ev[k].metadata, ev[k].metadata_len, m);
        else if (m && !json_is_null(m))
            abort();
        if (!(flags & EVS_PARSE_MULTI_STREAM))
            continue;
        const json_t *x = json_object_get(obj, "expected_version");
        if (!x && ev[k].expected_version != EVS_EXPECT_ANY)
            abort();
    }
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* first byte: shape and flags; the rest is the body */
    int shape = data[0] & 1 ? EVS_PARSE_NDJSON : EVS_PARSE_AUTO;
    unsigned flags = (data[0] >> 1) & 3u;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    evs_parsed *p = NULL;
    char err[256];
    int rc = evs_parse_events(body, len, shape, flags, &p, err, sizeof err);
    if (rc == 0) {
        size_t n;
        const evs_event_in *ev = evs_parsed_events(p, &n);
        if (n == 0)
            abort();
        for (size_t i = 0; i < n; i++)
            check_event(&ev[i]);
        if (shape == EVS_PARSE_AUTO)
            check_against_jansson(body, len, flags, ev, n);
    } else if (rc != EVS_EINVAL && rc != EVS_ENOMEM) {
        abort();
    } else if (err[0] == '\0') {
        abort();           /* every failure explains itself */
    }
    evs_parsed_free(p);

    check_validators_agree(body, len);
    const char *out;
    size_t out_len;
    char *owned;
    if (evs__json_check(body, len, 0, &out, &out_len, &owned, err, sizeof err) == 0) {
        check_fixed_point(out, out_len, 0);
        free(owned);
    }
    return 0;
}
