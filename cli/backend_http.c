/*
 * backend_http.c — the --url backend: the operations of backend.h over
 * evstored's HTTP API (SPEC §4), with libcurl.
 *
 * What it keeps true:
 *  - Nothing is buffered whole. Reads (read, export, streams) hand every
 *    JSON line to the command as soon as its newline arrives; only single
 *    answers (an append result, one event, /stats, an error) are collected.
 *  - Lines are passed on as the server sent them: they are already the
 *    served form, so the output equals the local mode's byte for byte.
 *  - Every wait is interruptible: transfers run through a multi handle that
 *    is polled in short steps, so SIGINT/SIGTERM (cli_stop) ends a --follow
 *    within a fraction of a second. Appends are the exception: once a POST
 *    is sent, it is seen through, because abandoning it would leave the user
 *    not knowing whether the events were stored.
 *  - Failures carry the server's own sentence ({"error","message"}) or
 *    libcurl's account of the connection into cli_backend.error, and map the
 *    HTTP status onto the evs code the local backend would return, so the
 *    commands' handling (not found, conflict, ...) is the same in both modes.
 *  - --follow survives a dropped connection: it reconnects from the event
 *    after the last one printed (a position on /events, a version on a
 *    stream), so nothing is skipped and nothing repeated.
 *
 * One easy handle is reused for every request of a command, so a series of
 * requests (import's id checks and batches) shares one keep-alive connection.
 * The small JSON reader at the top only has to pick fields out of the
 * server's own answers; it never re-encodes event data.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "backend.h"
#include "output.h"

/* Largest single answer collected in memory (one event can be 64 MiB). */
#define BODY_MAX ((size_t)160 << 20)
/* Seconds between the server's heartbeat lines while following, and how
 * long a following connection may stay silent before it counts as dead. */
#define FOLLOW_HEARTBEAT 5
#define FOLLOW_SILENCE (4 * FOLLOW_HEARTBEAT)
/* The longest pause between reconnection attempts, in milliseconds. */
#define RECONNECT_MAX_MS 2000

/* ---- a minimal reader for the server's JSON answers ---------------------- */

static const char *jws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* The end of the JSON value starting at p, or NULL if it is malformed. */
static const char *jskip(const char *p, const char *e)
{
    p = jws(p, e);
    if (p >= e)
        return NULL;
    if (*p == '"') {
        for (p++; p < e; p++) {
            if (*p == '\\')
                p++;
            else if (*p == '"')
                return p + 1;
        }
        return NULL;
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        for (; p < e; p++) {
            if (*p == '"') {
                const char *q = jskip(p, e);
                if (!q)
                    return NULL;
                p = q - 1;
            } else if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
        }
        return NULL;
    }
    const char *s = p;
    while (p < e && !strchr(",]} \t\r\n", *p))
        p++;
    return p > s ? p : NULL;
}

/* The value of member key in the object [p, e): *vs..*ve. Keys are
 * compared as written (the server never escapes its own field names).
 * @return 1 found, 0 not there or not an object. */
static int jget(const char *p, const char *e, const char *key, const char **vs, const char **ve)
{
    size_t kl = strlen(key);
    p = jws(p, e);
    if (p >= e || *p != '{')
        return 0;
    p++;
    for (;;) {
        p = jws(p, e);
        if (p >= e || *p != '"')
            return 0;
        const char *ks = p + 1, *ke = jskip(p, e);
        if (!ke)
            return 0;
        p = jws(ke, e);
        if (p >= e || *p != ':')
            return 0;
        const char *v = jws(p + 1, e), *vend = jskip(v, e);
        if (!vend)
            return 0;
        if ((size_t)(ke - 1 - ks) == kl && memcmp(ks, key, kl) == 0) {
            *vs = v;
            *ve = vend;
            return 1;
        }
        p = jws(vend, e);
        if (p >= e || *p != ',')
            return 0;
        p++;
    }
}

static int ju64(const char *s, const char *e, uint64_t *out)
{
    uint64_t v = 0;
    if (s >= e)
        return -1;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

static int jget_u64(const char *p, const char *e, const char *key, uint64_t *out)
{
    const char *vs, *ve;
    return jget(p, e, key, &vs, &ve) ? ju64(vs, ve, out) : -1;
}

static int hexdig(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int hex4(const char *p, const char *e, unsigned *out)
{
    unsigned v = 0;
    if (e - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        int d = hexdig(p[i]);
        if (d < 0)
            return -1;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return 0;
}

static void put_utf8(jbuf *b, unsigned cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    jb_put(b, u, n);
}

/* The JSON string at [s, e) decoded into out (reset first). @return 0 or -1. */
static int jstr(const char *s, const char *e, jbuf *out)
{
    jb_reset(out);
    jb_put(out, "", 0);   /* out->p is a valid (empty) string even for "" */
    if (s >= e || *s != '"' || e - s < 2 || e[-1] != '"')
        return -1;
    for (const char *p = s + 1; p < e - 1; p++) {
        if (*p != '\\') {
            jb_put(out, p, 1);
            continue;
        }
        if (++p >= e - 1)
            return -1;
        char c = *p;
        switch (c) {
        case 'b': jb_put(out, "\b", 1); break;
        case 'f': jb_put(out, "\f", 1); break;
        case 'n': jb_put(out, "\n", 1); break;
        case 'r': jb_put(out, "\r", 1); break;
        case 't': jb_put(out, "\t", 1); break;
        case 'u': {
            unsigned cp, lo;
            if (hex4(p + 1, e - 1, &cp) != 0)
                return -1;
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && e - 1 - p >= 7 && p[1] == '\\' && p[2] == 'u' &&
                hex4(p + 3, e - 1, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            put_utf8(out, cp);
            break;
        }
        default: jb_put(out, &c, 1); break;   /* \" \\ \/ */
        }
    }
    return out->oom ? -1 : 0;
}

static int jget_str(const char *p, const char *e, const char *key, jbuf *out)
{
    const char *vs, *ve;
    return jget(p, e, key, &vs, &ve) ? jstr(vs, ve, out) : -1;
}

/* "2026-11-22T11:30:00.123456Z" into microseconds since the epoch. */
static int parse_time(const char *s, size_t n, int64_t *out)
{
    int y, mo, d, h, mi, sec, used = 0;
    char tail[16] = "";
    char buf[40];
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    if (sscanf(buf, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &used) != 6)
        return -1;
    int64_t us = 0, scale = 100000;
    const char *p = buf + used;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            if (scale > 0)
                us += (*p - '0') * scale;
    snprintf(tail, sizeof tail, "%s", p);
    if (strcmp(tail, "Z") != 0 || mo < 1 || mo > 12 || d < 1 || d > 31)
        return -1;
    /* Days from the civil date (proleptic Gregorian), without timegm(). */
    int64_t yy = y - (mo <= 2);
    int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
    int64_t yoe = yy - era * 400;
    int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;
    *out = ((days * 86400 + h * 3600 + mi * 60 + sec) * 1000000) + us;
    return 0;
}

/* ---- the backend ---------------------------------------------------------- */

typedef struct http_backend {
    cli_backend base;          /* first, so a cli_backend* is an http_backend* */
    CURL *easy;                /* reused for every request: one keep-alive connection */
    CURLM *multi;              /* drives easy in short, interruptible steps */
    char *base_url;            /* scheme://host[:port][/path], no trailing '/' */
    struct curl_slist *headers;/* the current request's headers (live until the next one) */
    const char *token;         /* bearer token or NULL (borrowed from argv/env) */
    jbuf url;                  /* the request URL being built */
    jbuf body;                 /* the request body being built */
    jbuf scratch;              /* decoded strings */
    uint64_t position;         /* the last position the server reported */
    char curl_err[CURL_ERROR_SIZE]; /* libcurl's detail of a failed transfer */
} http_backend;

static http_backend *H(cli_backend *b) { return (http_backend *)b; }

static void set_error(http_backend *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(http_backend *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->base.error, sizeof h->base.error, fmt, ap);
    va_end(ap);
}

/* One response being received. */
typedef struct resp {
    http_backend *h;
    long status;               /* 0 until the headers are in */
    int lines;                 /* a 2xx body is JSON Lines: hand each line to fn */
    int drop;                  /* lines are received but not handed on (a filter no event passes) */
    cli_line_fn fn;            /* per line; NULL with lines = 0 */
    void *ctx;
    int fn_rc;                 /* fn's non-zero answer: the transfer was stopped for it */
    int too_big;               /* a collected body went over BODY_MAX */
    int want_version;          /* also track each line's "version" (stream follow) */
    jbuf body;                 /* a collected body (single answers and errors) */
    jbuf partial;              /* the start of a line whose newline has not come yet */
    uint64_t delivered;        /* lines handed to fn */
    uint64_t last_position;    /* of the last line handed on */
    uint64_t last_version;     /* of the last line handed on (want_version) */
    int unflushed;             /* lines handed on since fn(NULL) was last called */
} resp;

static void resp_init(resp *r, http_backend *h)
{
    memset(r, 0, sizeof *r);
    r->h = h;
    jb_init(&r->body);
    jb_init(&r->partial);
}

static void resp_free(resp *r)
{
    jb_free(&r->body);
    jb_free(&r->partial);
}

/* One complete line of a JSON Lines answer. Empty lines are heartbeats. */
static int deliver(resp *r, const char *s, size_t n)
{
    if (n && s[n - 1] == '\r')
        n--;
    if (n == 0 || r->drop)
        return 0;
    cli_line line = { .json = s, .len = n, .position = 0 };
    static const char lead[] = "{\"position\":";
    const char *e = s + n;
    if (n > sizeof lead - 1 && memcmp(s, lead, sizeof lead - 1) == 0) {
        const char *d = s + sizeof lead - 1, *q = d;
        while (q < e && *q >= '0' && *q <= '9')
            q++;
        if (ju64(d, q, &line.position) != 0)
            line.position = 0;
    } else {
        jget_u64(s, e, "position", &line.position);   /* not the usual layout: look it up */
    }
    if (r->want_version)
        jget_u64(s, e, "version", &r->last_version);
    r->last_position = line.position;
    r->delivered++;
    r->unflushed = 1;
    return r->fn(r->ctx, &line);
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    resp *r = arg;
    size_t n = size * nmemb;
    if (!r->status)
        curl_easy_getinfo(r->h->easy, CURLINFO_RESPONSE_CODE, &r->status);
    if (!r->lines || r->status < 200 || r->status > 299) {
        if (r->body.len + n > BODY_MAX) {
            r->too_big = 1;
            return 0;
        }
        jb_put(&r->body, p, n);
        return r->body.oom ? 0 : n;
    }
    size_t i = 0;
    while (i < n) {
        char *nl = memchr(p + i, '\n', n - i);
        if (!nl) {
            jb_put(&r->partial, p + i, n - i);
            if (r->partial.oom || r->partial.len > BODY_MAX) {
                r->too_big = 1;
                return 0;
            }
            break;
        }
        size_t len = (size_t)(nl - (p + i));
        int rc;
        if (r->partial.len) {
            jb_put(&r->partial, p + i, len);
            if (r->partial.oom) {
                r->too_big = 1;
                return 0;
            }
            rc = deliver(r, r->partial.p, r->partial.len);
            jb_reset(&r->partial);
        } else {
            rc = deliver(r, p + i, len);
        }
        i += len + 1;
        if (rc) {
            r->fn_rc = rc;
            return 0;   /* makes libcurl abort the transfer */
        }
    }
    return n;
}

/* The evs code the local backend would have returned for this answer. */
static int status_rc(long status, const char *code, const char *message)
{
    static const struct { const char *code; int rc; } codes[] = {
        { "wrong_expected_version", EVS_ECONFLICT },
        { "duplicate_event_id", EVS_EDUPLICATE },
        { "condition_failed", EVS_ECONDITION },
        { "stream_not_found", EVS_ENOTFOUND },
        { "event_not_found", EVS_ENOTFOUND },
        { "payload_too_large", EVS_ETOOBIG },
        { "invalid_json", EVS_EINVAL },
        { "invalid_event", EVS_EINVAL },
        { "invalid_stream_name", EVS_EINVAL },
        { "invalid_parameter", EVS_EINVAL },
        { "unauthorized", -EACCES },
        { "forbidden", -EPERM },
        { "insufficient_storage", -ENOSPC },
        { "corrupt", EVS_ECORRUPT },
    };
    for (size_t i = 0; code && i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(code, codes[i].code) == 0)
            return codes[i].rc;
    if (code && strcmp(code, "unavailable") == 0)
        return message && strstr(message, "read-only") ? EVS_EREADONLY : EVS_EFATAL;
    switch (status) {
    case 400: return EVS_EINVAL;
    case 401: return -EACCES;
    case 403: return -EPERM;
    case 409: return EVS_ECONFLICT;
    case 413: return EVS_ETOOBIG;
    case 503: return EVS_EFATAL;
    case 507: return -ENOSPC;
    default: return status >= 500 ? -EIO : -EPROTO;
    }
}

/* Turn a non-2xx answer into an evs code and b->error. */
static int http_failure(http_backend *h, resp *r)
{
    const char *s = r->body.p ? r->body.p : "", *e = s + r->body.len;
    jbuf code;
    jb_init(&code);
    int rc;
    if (jget_str(s, e, "error", &code) == 0 && jget_str(s, e, "message", &h->scratch) == 0) {
        rc = status_rc(r->status, code.p, h->scratch.p);
        /* One line on stderr, whatever the message holds. */
        for (size_t i = 0; i < h->scratch.len; i++)
            if ((unsigned char)h->scratch.p[i] < 0x20)
                h->scratch.p[i] = ' ';
        set_error(h, "%s (%s)", h->scratch.p, code.p);
    } else {
        jb_reset(&h->scratch);   /* no server sentence: callers must not see an old one */
        /* Not evstored's error shape: a proxy's page, or not evstored at all. */
        rc = status_rc(r->status, NULL, NULL);
        set_error(h, "%s answered HTTP %ld%s", h->base_url, r->status,
                  r->status == 404 ? " (not found: is this the address of evstored?)" : "");
    }
    jb_free(&code);
    return rc;
}

/* A failed transfer (no complete answer) into an evs code and b->error. */
static int transfer_failure(http_backend *h, CURLcode cc, resp *r)
{
    const char *detail = h->curl_err[0] ? h->curl_err : curl_easy_strerror(cc);
    long os_errno = 0;
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
        curl_easy_getinfo(h->easy, CURLINFO_OS_ERRNO, &os_errno);
        if (os_errno == ECONNREFUSED) {
            set_error(h, "cannot connect to %s: connection refused (is evstored running and "
                         "listening there?)", h->base_url);
            return -ECONNREFUSED;
        }
        set_error(h, "cannot connect to %s: %s", h->base_url, detail);
        return os_errno ? -(int)os_errno : -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        set_error(h, "cannot connect to %s: %s", h->base_url, detail);
        return -EHOSTUNREACH;
    case CURLE_OPERATION_TIMEDOUT:
        set_error(h, "%s did not answer in time: %s", h->base_url, detail);
        return EVS_ETIMEDOUT;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        set_error(h, "TLS with %s failed: %s (for a self-signed certificate, give it "
                     "with --cacert FILE)", h->base_url, detail);
        return -EPROTO;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        set_error(h, "cannot use %s: %s", h->base_url, detail);
        return EVS_EINVAL;
    default:
        break;
    }
    if (r->too_big) {
        set_error(h, "the answer from %s is larger than %zu MiB", h->base_url, BODY_MAX >> 20);
        return EVS_ETOOBIG;
    }
    if (r->delivered)
        set_error(h, "the connection to %s broke after %llu events: %s", h->base_url,
                  (unsigned long long)r->delivered, detail);
    else
        set_error(h, "the connection to %s broke: %s", h->base_url, detail);
    return -ECONNRESET;
}

enum { PERFORM_INTERRUPTIBLE = 1, PERFORM_FLUSH = 2 };
/* How long a sent append is still waited for after SIGINT/SIGTERM. */
#define APPEND_GRACE_NS (10ull * 1000000000ull)
/* perform()'s result when cli_stop ended the transfer (callbacks stop with 1
 * or a negative code, so it cannot be mistaken for theirs). */
#define PERFORM_STOPPED 0x7e57

/*
 * Run the prepared request to its end. With PERFORM_INTERRUPTIBLE, cli_stop
 * abandons it (returns PERFORM_STOPPED); without, the answer is still waited
 * for APPEND_GRACE_NS after cli_stop (an append's outcome matters, but a
 * hung server must not make the CLI deaf to SIGTERM); with PERFORM_FLUSH, fn(NULL) is
 * called whenever the lines received so far are handed on and nothing more
 * is waiting (the "caught up" moment of --follow).
 * @return 0 (a complete answer: r->status, r->body), PERFORM_STOPPED, fn's
 *         non-zero answer, or a negative code for a failed transfer.
 */
static int perform(http_backend *h, resp *r, int flags)
{
    h->curl_err[0] = 0;
    curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h->easy, CURLOPT_WRITEDATA, r);
    if (curl_multi_add_handle(h->multi, h->easy) != CURLM_OK) {
        set_error(h, "cannot start a request to %s", h->base_url);
        return EVS_ENOMEM;
    }
    int running = 1, stopped = 0;
    uint64_t grace_end = 0;
    CURLcode cc = CURLE_OK;
    for (;;) {
        CURLMcode mc = curl_multi_perform(h->multi, &running);
        if (mc != CURLM_OK) {
            cc = CURLE_RECV_ERROR;
            snprintf(h->curl_err, sizeof h->curl_err, "%s", curl_multi_strerror(mc));
            break;
        }
        if ((flags & PERFORM_FLUSH) && r->unflushed && !r->fn_rc) {
            r->unflushed = 0;
            r->fn_rc = r->fn(r->ctx, NULL);
            if (r->fn_rc)
                break;
        }
        if (!running)
            break;
        if (cli_stop) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
            if (!grace_end)
                grace_end = now + APPEND_GRACE_NS;
            if ((flags & PERFORM_INTERRUPTIBLE) || now >= grace_end) {
                stopped = 1;
                break;
            }
        }
        /* A signal interrupts the poll (no SA_RESTART); 200 ms bounds it otherwise. */
        curl_multi_poll(h->multi, NULL, 0, 200, NULL);
    }
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left)) != NULL)
        if (m->msg == CURLMSG_DONE && m->easy_handle == h->easy)
            cc = m->data.result;
    curl_multi_remove_handle(h->multi, h->easy);
    if (!r->status)   /* also after a failure: were the headers in? */
        curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->fn_rc)
        return r->fn_rc;
    if (stopped || (cli_stop && cc != CURLE_OK))
        return PERFORM_STOPPED;
    if (cc != CURLE_OK)
        return transfer_failure(h, cc, r);
    /* Lines end with a newline; anything left over is a last line without one. */
    if (r->partial.len && r->lines && r->status >= 200 && r->status <= 299) {
        int rc = deliver(r, r->partial.p, r->partial.len);
        jb_reset(&r->partial);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- requests ------------------------------------------------------------- */

/* Append s percent-encoded: everything but the unreserved characters of
 * RFC 3986 (so '/' in a stream name travels as %2F, which the server decodes
 * to a literal '/', and no proxy or client can take it for a path step). */
static void put_enc(jbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            jb_put(b, s, 1);
        } else {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };
            jb_put(b, e, 3);
        }
    }
}

/* Start the URL: base + path (already encoded where needed). */
static void url_begin(http_backend *h, const char *path)
{
    jb_reset(&h->url);
    jb_puts(&h->url, h->base_url);
    jb_puts(&h->url, path);
}

/* Add "?name=value" or "&name=value", value encoded. */
static void url_arg(http_backend *h, const char *name, const char *value)
{
    jb_puts(&h->url, strchr(h->url.p, '?') ? "&" : "?");
    jb_puts(&h->url, name);
    jb_puts(&h->url, "=");
    put_enc(&h->url, value);
}

static void url_arg_u64(http_backend *h, const char *name, uint64_t v)
{
    char t[24];
    snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    url_arg(h, name, t);
}

/*
 * Prepare the next request: GET (body NULL) or POST of body as JSON Lines.
 * @return 0, or EVS_ENOMEM.
 */
static int prepare(http_backend *h, const char *body, size_t len, int follow)
{
    h->base.error[0] = 0;
    if (h->url.oom || !h->url.p)
        return EVS_ENOMEM;
    struct curl_slist *headers = NULL, *l;
    char auth[1100];
    if (h->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", h->token);
        if (!(l = curl_slist_append(headers, auth)))
            goto oom;
        headers = l;
    }
    if (body) {
        if (!(l = curl_slist_append(headers, "Content-Type: application/x-ndjson")))
            goto oom;
        headers = l;
    }
    /* The list must outlive the transfer: it is replaced by the next request. */
    curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, headers);
    curl_slist_free_all(h->headers);
    h->headers = headers;
    curl_easy_setopt(h->easy, CURLOPT_URL, h->url.p);
    if (body) {
        curl_easy_setopt(h->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(h->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(h->easy, CURLOPT_POSTFIELDS, len ? body : "");
    } else {
        curl_easy_setopt(h->easy, CURLOPT_HTTPGET, 1L);
    }
    /* A followed answer carries a heartbeat line every few seconds: silence
     * much longer than that means the connection is dead (reconnect). */
    curl_easy_setopt(h->easy, CURLOPT_LOW_SPEED_LIMIT, follow ? 1L : 0L);
    curl_easy_setopt(h->easy, CURLOPT_LOW_SPEED_TIME, follow ? (long)FOLLOW_SILENCE : 0L);
    return 0;
oom:
    curl_slist_free_all(headers);
    return EVS_ENOMEM;
}

/* GET the prepared URL and collect the answer (2xx body in r->body).
 * @return 0 or an error (b->error set). */
static int get_one(http_backend *h, resp *r, int flags)
{
    int rc = prepare(h, NULL, 0, 0);
    if (rc)
        return rc;
    rc = perform(h, r, flags);
    if (rc == PERFORM_STOPPED) {
        set_error(h, "interrupted");
        return -EINTR;
    }
    if (rc)
        return rc;
    if (r->status < 200 || r->status > 299)
        return http_failure(h, r);
    return 0;
}

/* ---- operations ----------------------------------------------------------- */

static void put_expected(jbuf *b, int64_t expected)
{
    char t[24];
    cli_expected_text(expected, t);
    if (expected >= 0)
        jb_puts(b, t);
    else
        jb_str(b, t, strlen(t));
}

/* The events as JSON Lines for a POST body (multi: with stream and
 * expected_version). data and metadata are the client's bytes. */
static int events_body(http_backend *h, const evs_event_in *ev, size_t n, int multi)
{
    jbuf *b = &h->body;
    jb_reset(b);
    for (size_t i = 0; i < n; i++) {
        jb_puts(b, "{");
        if (multi) {
            jb_puts(b, "\"stream\":");
            jb_str(b, ev[i].stream, strlen(ev[i].stream));
            if (ev[i].expected_version != EVS_EXPECT_ANY) {
                jb_puts(b, ",\"expected_version\":");
                put_expected(b, ev[i].expected_version);
            }
            jb_puts(b, ",");
        }
        if (ev[i].id) {
            char id[37];
            evs_uuid_format(ev[i].id, id);
            jb_puts(b, "\"id\":\"");
            jb_puts(b, id);
            jb_puts(b, "\",");
        }
        jb_puts(b, "\"type\":");
        jb_str(b, ev[i].type, strlen(ev[i].type));
        if (ev[i].data) {
            jb_puts(b, ",\"data\":");
            jb_put(b, ev[i].data, ev[i].data_len);
        }
        if (ev[i].metadata) {
            jb_puts(b, ",\"metadata\":");
            jb_put(b, ev[i].metadata, ev[i].metadata_len);
        }
        jb_puts(b, "}\n");
    }
    return b->oom ? EVS_ENOMEM : 0;
}

/* The append response of SPEC §4 into out[] and result. */
static int parse_append(http_backend *h, resp *r, size_t n, evs_commit *out,
                        evs_append_result *result)
{
    const char *s = r->body.p ? r->body.p : "", *e = s + r->body.len, *vs, *ve;
    if (jget_u64(s, e, "first_position", &result->first_position) != 0 ||
        jget_u64(s, e, "last_position", &result->last_position) != 0 ||
        !jget(s, e, "events", &vs, &ve) || *vs != '[')
        goto bad;
    result->replayed = r->status == 200;
    const char *p = jws(vs + 1, ve);
    for (size_t i = 0; i < n; i++) {
        const char *oe = jskip(p, ve);
        if (!oe || *p != '{')
            goto bad;
        if (out) {
            int64_t t = 0;
            if (jget_str(p, oe, "id", &h->scratch) != 0 ||
                evs_uuid_parse(h->scratch.p, h->scratch.len, out[i].id) != 0 ||
                jget_u64(p, oe, "version", &out[i].version) != 0 ||
                jget_u64(p, oe, "position", &out[i].position) != 0 ||
                jget_str(p, oe, "time", &h->scratch) != 0 ||
                parse_time(h->scratch.p, h->scratch.len, &t) != 0)
                goto bad;
            out[i].time_us = t;
        }
        p = jws(oe, ve);
        if (i + 1 < n) {
            if (*p != ',')
                goto bad;
            p = jws(p + 1, ve);
        }
    }
    if (result->last_position > h->position)
        h->position = result->last_position;
    return 0;
bad:
    set_error(h, "%s answered the append with something unexpected: %.200s", h->base_url, s);
    return -EPROTO;
}

/* POST the prepared URL with the events; fill out/result like evs_append. */
static int post_events(http_backend *h, const evs_event_in *ev, size_t n, int multi,
                       evs_commit *out, evs_append_result *result)
{
    int rc = events_body(h, ev, n, multi);
    if (rc)
        return rc;
    resp r;
    resp_init(&r, h);
    /* Not interruptible: once sent, the user must learn whether it landed. */
    if ((rc = prepare(h, h->body.p, h->body.len, 0)) != 0)
        goto out;
    if ((rc = perform(h, &r, 0)) != 0) {
        if (rc == PERFORM_STOPPED) {
            set_error(h, "interrupted while waiting for the answer of %s: the events may or "
                         "may not have been stored (look them up with read or get)", h->base_url);
            rc = -EINTR;
        }
        goto out;
    }
    if (r.status == 200 || r.status == 201) {
        rc = parse_append(h, &r, n, out, result);
        goto out;
    }
    rc = http_failure(h, &r);
    snprintf(result->message, sizeof result->message, "%s", h->scratch.p ? h->scratch.p : "");
    if (rc == EVS_ECONFLICT) {
        /* {"stream","expected","actual"}: the conflict in the CLI's words. */
        const char *s = r.body.p ? r.body.p : "", *e = s + r.body.len, *vs, *ve;
        int64_t expected = EVS_EXPECT_ANY;
        uint64_t number;
        if (jget(s, e, "expected", &vs, &ve)) {
            if (*vs == '"') {   /* "no_stream", "exists", "any" */
                if (jstr(vs, ve, &h->scratch) == 0)
                    evs_parse_expected(h->scratch.p, &expected);
            } else if (ju64(vs, ve, &number) == 0 && number <= INT64_MAX) {
                expected = (int64_t)number;
            }
        }
        result->expected_version = expected;
        jget_u64(s, e, "actual", &result->actual_version);
        result->failed_index = 0;
        if (multi && jget_str(s, e, "stream", &h->scratch) == 0) {
            /* The server names the stream, not the event: the first event of
             * that stream carrying this expectation is the one that failed. */
            for (size_t i = 0; i < n; i++)
                if (strcmp(ev[i].stream, h->scratch.p) == 0 &&
                    ev[i].expected_version == expected) {
                    result->failed_index = i;
                    break;
                }
        }
    }
out:
    resp_free(&r);
    return rc;
}

static int http_append(cli_backend *b, const char *stream, int64_t expected,
                       const evs_event_in *events, size_t n, evs_commit *out,
                       evs_append_result *result)
{
    http_backend *h = H(b);
    url_begin(h, "/streams/");
    put_enc(&h->url, stream);
    if (expected != EVS_EXPECT_ANY) {
        char t[24];
        cli_expected_text(expected, t);
        url_arg(h, "expected_version", t);
    }
    return post_events(h, events, n, 0, out, result);
}

static int http_append_multi(cli_backend *b, const evs_event_in *events, size_t n,
                             evs_commit *out, evs_append_result *result)
{
    http_backend *h = H(b);
    url_begin(h, "/events");
    return post_events(h, events, n, 1, out, result);
}

/* Sleep ms milliseconds unless cli_stop is set first. */
static void pause_ms(int ms)
{
    for (int waited = 0; waited < ms && !cli_stop; waited += 50) {
        struct timespec ts = { 0, 50 * 1000000L };
        nanosleep(&ts, NULL);
    }
}

static int http_read(cli_backend *b, const evs_read_options *ro, int follow, cli_line_fn fn,
                     void *ctx)
{
    http_backend *h = H(b);
    for (size_t i = 0; i < ro->filter.ntypes; i++)
        if (strchr(ro->filter.types[i], ',')) {
            /* The server splits type=... at commas: it would filter for other types. */
            set_error(h, "type '%s' contains a comma, which the HTTP API reads as a list of "
                         "types; filter for it with --data on the server's machine",
                      ro->filter.types[i]);
            return EVS_EINVAL;
        }
    uint64_t from = ro->from, got = 0;
    int connected_once = 0, lost = 0, backoff = 100;
    for (;;) {
        if (ro->stream) {
            url_begin(h, "/streams/");
            put_enc(&h->url, ro->stream);
        } else {
            url_begin(h, "/events");
        }
        /* from=0 and limit=0 mean "from the start/end" and "no limit" to the
         * library, but the server takes them literally: leave them out. */
        if (from)
            url_arg_u64(h, "from", from);
        if (ro->limit)
            url_arg_u64(h, "limit", ro->limit - got);
        if (ro->backward)
            url_arg(h, "direction", "backward");
        for (size_t i = 0; i < ro->filter.ntypes; i++)
            url_arg(h, "type", ro->filter.types[i]);
        if (!ro->stream && ro->filter.stream_prefix)
            url_arg(h, "stream_prefix", ro->filter.stream_prefix);
        if (follow) {
            url_arg(h, "watch", "true");
            url_arg_u64(h, "heartbeat", FOLLOW_HEARTBEAT);
        }
        resp r;
        resp_init(&r, h);
        r.lines = 1;
        r.fn = fn;
        r.ctx = ctx;
        r.want_version = ro->stream != NULL;
        /* The server ignores a prefix on a stream read; the library applies
         * it, so a stream outside the prefix shows nothing (but must exist). */
        r.drop = ro->stream && ro->filter.stream_prefix &&
                 strncmp(ro->stream, ro->filter.stream_prefix, strlen(ro->filter.stream_prefix));
        int rc = prepare(h, NULL, 0, follow);
        if (rc == 0)
            rc = perform(h, &r, PERFORM_INTERRUPTIBLE | (follow ? PERFORM_FLUSH : 0));
        got += r.delivered;
        if (r.delivered) {
            from = (ro->stream ? r.last_version : r.last_position) + 1;
            backoff = 100;
        }
        int http_ok = r.status >= 200 && r.status <= 299;
        if (rc == 0 && !http_ok) {
            rc = http_failure(h, &r);
            /* A server being restarted or failing over answers 503 for a
             * moment; anything else (auth, not found, bad request) is final. */
            if (r.status != 503 || !connected_once) {
                resp_free(&r);
                return rc;
            }
        }
        resp_free(&r);
        if (rc == PERFORM_STOPPED)
            return 0;   /* the commands look at cli_stop themselves */
        if (rc > 0 || (rc == 0 && !follow))
            return rc;  /* fn's answer, or a complete read */
        if (rc < 0 && (!follow || (!connected_once && !http_ok)))
            return rc;
        if (http_ok)
            connected_once = 1;
        if (cli_stop)
            return 0;
        if (ro->limit && got >= ro->limit)
            return 0;
        /* Following, and the answer ended (the server stopped) or broke. One
         * note per outage: a connected attempt that ends starts a new one. */
        if (http_ok)
            lost = 0;
        if (!lost) {
            cli_error("read: %s; reconnecting from %s %llu",
                      rc ? b->error : "the server ended the answer",
                      ro->stream ? "version" : "position",
                      (unsigned long long)(from ? from : 1));
            lost = 1;
        }
        b->error[0] = 0;
        pause_ms(backoff);
        backoff = backoff * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : backoff * 2;
        if (cli_stop)
            return 0;
    }
}

static int http_get(cli_backend *b, const uint8_t id[16], cli_line_fn fn, void *ctx)
{
    http_backend *h = H(b);
    char text[37];
    evs_uuid_format(id, text);
    url_begin(h, "/events/");
    jb_puts(&h->url, text);
    resp r;
    resp_init(&r, h);
    int rc = get_one(h, &r, PERFORM_INTERRUPTIBLE);
    if (rc == 0 && fn) {
        size_t n = r.body.len;
        while (n && (r.body.p[n - 1] == '\n' || r.body.p[n - 1] == '\r'))
            n--;
        cli_line line = { .json = r.body.p ? r.body.p : "", .len = n, .position = 0 };
        jget_u64(line.json, line.json + n, "position", &line.position);
        rc = fn(ctx, &line);
    }
    resp_free(&r);
    return rc;
}

typedef struct streams_ctx {
    http_backend *h;
    cli_stream_fn fn;
    void *ctx;
} streams_ctx;

static int on_stream_line(void *arg, const cli_line *line)
{
    streams_ctx *s = arg;
    if (!line)
        return 0;
    uint64_t version = 0;
    const char *e = line->json + line->len;
    if (jget_str(line->json, e, "stream", &s->h->scratch) != 0 ||
        jget_u64(line->json, e, "version", &version) != 0) {
        set_error(s->h, "%s listed a stream as something unexpected: %.200s", s->h->base_url,
                  line->json);
        return -EPROTO;
    }
    return s->fn(s->ctx, s->h->scratch.p, version);
}

static int http_streams(cli_backend *b, const char *prefix, cli_stream_fn fn, void *ctx)
{
    http_backend *h = H(b);
    url_begin(h, "/streams");
    if (prefix)
        url_arg(h, "prefix", prefix);
    streams_ctx s = { h, fn, ctx };
    resp r;
    resp_init(&r, h);
    r.lines = 1;
    r.fn = on_stream_line;
    r.ctx = &s;
    int rc = prepare(h, NULL, 0, 0);
    if (rc == 0)
        rc = perform(h, &r, PERFORM_INTERRUPTIBLE);
    if (rc == PERFORM_STOPPED) {
        set_error(h, "interrupted");
        rc = -EINTR;
    } else if (rc == 0 && (r.status < 200 || r.status > 299)) {
        rc = http_failure(h, &r);
    }
    resp_free(&r);
    return rc;
}

/* GET /stats into r.body. */
static int fetch_stats(http_backend *h, resp *r)
{
    url_begin(h, "/stats");
    return get_one(h, r, PERFORM_INTERRUPTIBLE);
}

static int http_stats(cli_backend *b, evs_stats *st)
{
    http_backend *h = H(b);
    memset(st, 0, sizeof *st);
    resp r;
    resp_init(&r, h);
    int rc = fetch_stats(h, &r);
    if (rc == 0) {
        const char *s = r.body.p ? r.body.p : "", *e = s + r.body.len;
        static const struct { const char *name; size_t off; } fields[] = {
            { "events", offsetof(evs_stats, events) },
            { "streams", offsetof(evs_stats, streams) },
            { "segments", offsetof(evs_stats, segments) },
            { "bytes", offsetof(evs_stats, bytes) },
            { "position", offsetof(evs_stats, position) },
            { "appends", offsetof(evs_stats, appends) },
            { "appended_events", offsetof(evs_stats, appended_events) },
            { "reads", offsetof(evs_stats, reads) },
            { "fsyncs", offsetof(evs_stats, fsyncs) },
            { "group_commits", offsetof(evs_stats, group_commits) },
            { "recovered_truncated_bytes", offsetof(evs_stats, recovered_truncated_bytes) },
            { "index_checkpoint_position", offsetof(evs_stats, index_checkpoint_position) },
        };
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
            jget_u64(s, e, fields[i].name, (uint64_t *)(void *)((char *)st + fields[i].off));
        if (jget_str(s, e, "status", &h->scratch) == 0) {
            st->read_only = strcmp(h->scratch.p, "read_only") == 0;
            st->failed = strcmp(h->scratch.p, "failed") == 0;
        }
        st->sync = EVS_SYNC_ALWAYS;
        if (jget_str(s, e, "fsync", &h->scratch) == 0)
            st->sync = strcmp(h->scratch.p, "never") == 0 ? EVS_SYNC_NEVER
                       : strncmp(h->scratch.p, "interval", 8) == 0 ? EVS_SYNC_INTERVAL
                                                                   : EVS_SYNC_ALWAYS;
    }
    resp_free(&r);
    return rc;
}

static int http_raw_stats(cli_backend *b, cli_line_fn fn, void *ctx)
{
    http_backend *h = H(b);
    resp r;
    resp_init(&r, h);
    int rc = fetch_stats(h, &r);
    if (rc == 0) {
        size_t n = r.body.len;
        while (n && (r.body.p[n - 1] == '\n' || r.body.p[n - 1] == '\r'))
            n--;
        cli_line line = { .json = r.body.p ? r.body.p : "{}", .len = n ? n : 2, .position = 0 };
        rc = fn(ctx, &line);
    }
    resp_free(&r);
    return rc;
}

/* GET /health: is there an evstored, and where is its log? (No token needed.)
 * @return 0 (h->position updated) or an error (b->error set). */
static int health(http_backend *h)
{
    url_begin(h, "/health");
    resp r;
    resp_init(&r, h);
    int rc = prepare(h, NULL, 0, 0);
    if (rc == 0)
        rc = perform(h, &r, PERFORM_INTERRUPTIBLE);
    if (rc == PERFORM_STOPPED) {
        set_error(h, "interrupted");
        rc = -EINTR;
    }
    const char *s = r.body.p ? r.body.p : "", *e = s + r.body.len;
    uint64_t pos = 0;
    if (rc == 0) {
        /* 503 is a failed store: still evstored, still a position. */
        if ((r.status == 200 || r.status == 503) && jget_u64(s, e, "position", &pos) == 0)
            h->position = pos;
        else if (r.status >= 200 && r.status <= 299) {
            set_error(h, "%s does not answer like evstored (GET /health: %.100s)", h->base_url, s);
            rc = -EPROTO;
        } else {
            rc = http_failure(h, &r);
        }
    }
    resp_free(&r);
    return rc;
}

static uint64_t http_position(cli_backend *b)
{
    http_backend *h = H(b);
    /* If the server cannot be asked now, the answer from a moment ago (at
     * open) stands; the next request reports the connection problem. */
    char saved[sizeof b->error];
    memcpy(saved, b->error, sizeof saved);
    health(h);
    memcpy(b->error, saved, sizeof saved);
    return h->position;
}

static int http_close(cli_backend *b)
{
    http_backend *h = H(b);
    if (h->easy)
        curl_easy_cleanup(h->easy);
    if (h->multi)
        curl_multi_cleanup(h->multi);
    curl_slist_free_all(h->headers);
    jb_free(&h->url);
    jb_free(&h->body);
    jb_free(&h->scratch);
    free(h->base_url);
    free(h);
    curl_global_cleanup();
    return 0;
}

/* The base URL: a scheme (http:// when none is given), no trailing '/',
 * no query. @return a malloc'ed string, or NULL after reporting. */
static char *normalise_url(const char *url)
{
    const char *sep = strstr(url, "://");
    if (sep && !((sep - url == 4 && strncasecmp(url, "http", 4) == 0) ||
                 (sep - url == 5 && strncasecmp(url, "https", 5) == 0))) {
        cli_error("--url %s: only http:// and https:// are supported", url);
        return NULL;
    }
    if (strpbrk(url, "?# \t\r\n")) {
        cli_error("--url %s: give the server's address only (no query, fragment or spaces), "
                  "e.g. http://127.0.0.1:2114", url);
        return NULL;
    }
    const char *host = sep ? sep + 3 : url;
    if (!*host || *host == '/') {
        cli_error("--url %s: the address has no host, e.g. http://127.0.0.1:2114", url);
        return NULL;
    }
    size_t n = strlen(url);
    while (n && url[n - 1] == '/')
        n--;
    char *out = malloc(n + 8);
    if (!out) {
        cli_error("out of memory");
        return NULL;
    }
    snprintf(out, n + 8, "%s%.*s", sep ? "" : "http://", (int)n, url);
    return out;
}

int cli_backend_http_open(const cli_global *g, int mode, cli_backend **out)
{
    *out = NULL;
    if (g->token) {
        for (const char *p = g->token; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                cli_error("--token: the token contains a control character");
                return CLI_EXIT_USAGE;
            }
        if (!*g->token || strlen(g->token) > 1000) {
            cli_error("--token: a token is 1 to 1000 characters");
            return CLI_EXIT_USAGE;
        }
    }
    char *base = normalise_url(g->url);
    if (!base)
        return CLI_EXIT_USAGE;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cli_error("cannot initialise libcurl");
        free(base);
        return CLI_EXIT_FAIL;
    }
    http_backend *h = calloc(1, sizeof *h);
    if (!h) {
        cli_error("out of memory");
        free(base);
        curl_global_cleanup();
        return CLI_EXIT_FAIL;
    }
    h->base_url = base;
    h->token = g->token;
    h->base.where = base;
    h->base.writable = mode == CLI_OPEN_WRITE;
    h->base.append = http_append;
    h->base.append_multi = http_append_multi;
    h->base.read = http_read;
    h->base.get = http_get;
    h->base.streams = http_streams;
    h->base.stats = http_stats;
    h->base.raw_stats = http_raw_stats;
    h->base.position = http_position;
    h->base.close = http_close;
    jb_init(&h->url);
    jb_init(&h->body);
    jb_init(&h->scratch);
    h->easy = curl_easy_init();
    h->multi = curl_multi_init();
    if (!h->easy || !h->multi) {
        cli_error("cannot initialise libcurl");
        http_close(&h->base);
        return CLI_EXIT_FAIL;
    }
    CURL *c = h->easy;
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->curl_err);
    /* Leave signals alone: libcurl sends with MSG_NOSIGNAL, so SIGPIPE can only
     * come from stdout, which then behaves as in the local mode ("| head"). */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    char agent[64];
    snprintf(agent, sizeof agent, "evstore/%d.%d.%d", EVS_VERSION_MAJOR, EVS_VERSION_MINOR,
             EVS_VERSION_PATCH);
    curl_easy_setopt(c, CURLOPT_USERAGENT, agent);   /* copied by libcurl */
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);   /* never rewrite a stream name */
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    if (g->cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, g->cacert);
    if (g->insecure) {
        cli_warn("--insecure: the server's TLS certificate is not checked; anyone on the "
                 "way can read and change what is sent (use --cacert FILE instead)");
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    int rc = health(h);
    if (rc) {
        cli_error("%s", h->base.error);
        http_close(&h->base);
        return CLI_EXIT_FAIL;
    }
    *out = &h->base;
    return 0;
}
