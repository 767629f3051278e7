/*
 * output.c — stdout/stderr for the CLI.
 *
 * stdout carries only results (JSON Lines, or re-indented JSON with
 * --pretty); everything for the human — errors, warnings, progress — goes to
 * stderr, so "evstore read | jq" and "evstore export > file" stay clean.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <evstore.h>

#include "cli.h"
#include "output.h"

/* ---- jbuf ---------------------------------------------------------------- */

void jb_init(jbuf *b) { memset(b, 0, sizeof *b); }

void jb_free(jbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

void jb_reset(jbuf *b)
{
    b->len = 0;
    b->oom = 0;
    if (b->p)
        b->p[0] = 0;
}

char *jb_reserve(jbuf *b, size_t n)
{
    if (b->oom)
        return NULL;
    if (b->len + n + 1 > b->cap) {   /* +1 keeps room for the terminating NUL */
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return NULL;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    return b->p + b->len;
}

void jb_put(jbuf *b, const void *s, size_t n)
{
    char *d = jb_reserve(b, n);
    if (!d)
        return;
    memcpy(d, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void jb_puts(jbuf *b, const char *s) { jb_put(b, s, strlen(s)); }

void jb_u64(jbuf *b, uint64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    jb_put(b, t, (size_t)n);
}

void jb_i64(jbuf *b, int64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%lld", (long long)v);
    jb_put(b, t, (size_t)n);
}

void jb_str(jbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    jb_put(b, "\"", 1);
    size_t run = 0;   /* bytes copied as they are, flushed in one jb_put */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        jb_put(b, s + i - run, run);
        run = 0;
        char e[6] = { '\\', 0, 0, 0, 0, 0 };
        size_t en = 2;
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
            e[1] = 'u'; e[2] = '0'; e[3] = '0';
            e[4] = hex[c >> 4]; e[5] = hex[c & 15];
            en = 6;
        }
        jb_put(b, e, en);
    }
    jb_put(b, s + n - run, run);
    jb_put(b, "\"", 1);
}

/* ---- stdout -------------------------------------------------------------- */

static FILE *out_fp;        /* stdout, or the file of export -o */
static const int *out_pretty; /* points at cli_global.pretty */
static int out_err;         /* first write error (errno), reported by out_close */
static uint64_t out_total;  /* bytes given to out_json */
static jbuf out_scratch;    /* reused for --pretty */

void out_init(const int *pretty)
{
    out_fp = stdout;
    out_pretty = pretty;
    /* A big buffer matters for export (millions of short lines); a terminal
     * keeps its line buffering so --follow shows events as they come. */
    if (!isatty(STDOUT_FILENO))
        setvbuf(stdout, NULL, _IOFBF, 1 << 16);
}

int out_open_file(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    setvbuf(f, NULL, _IOFBF, 1 << 16);
    out_fp = f;
    return 0;
}

int out_is_tty(void) { return out_fp == stdout && isatty(STDOUT_FILENO); }

static void indent(jbuf *b, int depth)
{
    char *d = jb_reserve(b, 1 + 2 * (size_t)depth);
    if (!d)
        return;
    d[0] = '\n';
    memset(d + 1, ' ', 2 * (size_t)depth);
    b->len += 1 + 2 * (size_t)depth;
    b->p[b->len] = 0;
}

/* Re-indent valid JSON without parsing values: whitespace between tokens is
 * replaced, everything inside strings and every number is copied byte for
 * byte. Empty {} and [] stay on one line. */
static void pretty(jbuf *b, const char *s, size_t n)
{
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case ' ': case '\t': case '\n': case '\r':
            break;
        case '"': {
            size_t j = i + 1;
            while (j < n && s[j] != '"')
                j += s[j] == '\\' ? 2 : 1;
            if (j >= n)
                j = n - 1;
            jb_put(b, s + i, j - i + 1);
            i = j;
            break;
        }
        case '{': case '[': {
            char close = c == '{' ? '}' : ']';
            size_t j = i + 1;
            while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r'))
                j++;
            jb_put(b, &c, 1);
            if (j < n && s[j] == close) {
                jb_put(b, &close, 1);
                i = j;
            } else {
                indent(b, ++depth);
            }
            break;
        }
        case '}': case ']':
            indent(b, depth > 0 ? --depth : 0);
            jb_put(b, &c, 1);
            break;
        case ',':
            jb_put(b, ",", 1);
            indent(b, depth);
            break;
        case ':':
            jb_put(b, ": ", 2);
            break;
        default:
            jb_put(b, &c, 1);
        }
    }
}

static int write_all(const char *p, size_t n)
{
    if (out_err)
        return -out_err;
    if (fwrite(p, 1, n, out_fp) != n) {
        out_err = errno ? errno : EIO;
        return -out_err;
    }
    return 0;
}

int out_json(const char *json, size_t len)
{
    out_total += len + 1;
    if (!out_pretty || !*out_pretty) {
        int rc = write_all(json, len);
        return rc ? rc : write_all("\n", 1);
    }
    jb_reset(&out_scratch);
    pretty(&out_scratch, json, len);
    jb_put(&out_scratch, "\n", 1);
    if (out_scratch.oom)
        return -ENOMEM;
    return write_all(out_scratch.p, out_scratch.len);
}

int out_text(const char *text, size_t len)
{
    out_total += len + 1;
    int rc = write_all(text, len);
    return rc ? rc : write_all("\n", 1);
}

int out_flush(void)
{
    if (out_err)
        return -out_err;
    if (fflush(out_fp) != 0) {
        out_err = errno ? errno : EIO;
        return -out_err;
    }
    return 0;
}

uint64_t out_bytes(void) { return out_total; }

int out_close(void)
{
    jb_free(&out_scratch);
    if (!out_fp)
        return 0;
    out_flush();
    if (out_fp != stdout) {
        if (fclose(out_fp) != 0 && !out_err)
            out_err = errno ? errno : EIO;
        out_fp = stdout;
    }
    if (out_err) {
        cli_error("cannot write the output: %s", strerror(out_err));
        return CLI_EXIT_FAIL;
    }
    return 0;
}

/* ---- stderr -------------------------------------------------------------- */

static void vline(const char *prefix, const char *fmt, va_list ap, const char *suffix)
{
    /* Build the whole line first so it reaches stderr in one write and does
     * not interleave with a progress line or another process. */
    char msg[1024];
    int n = snprintf(msg, sizeof msg, "evstore: %s", prefix);
    if (n < 0 || (size_t)n >= sizeof msg)
        n = 0;
    int m = vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    size_t len = m < 0 ? (size_t)n : (size_t)n + (size_t)m;
    if (len > sizeof msg - 2)
        len = sizeof msg - 2;
    if (suffix) {
        int k = snprintf(msg + len, sizeof msg - len, "%s", suffix);
        len += k < 0 ? 0 : (size_t)k;
        if (len > sizeof msg - 2)
            len = sizeof msg - 2;
    }
    msg[len++] = '\n';
    fflush(stdout);   /* results printed before an error appear before it */
    ssize_t w = write(STDERR_FILENO, msg, len);
    (void)w;          /* nowhere left to report a failing stderr */
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline("", fmt, ap, NULL);
    va_end(ap);
}

void cli_error_rc(int rc, const char *fmt, ...)
{
    char why[256];
    snprintf(why, sizeof why, ": %s (%s)", evs_strerror(rc), evs_errname(rc));
    va_list ap;
    va_start(ap, fmt);
    vline("", fmt, ap, why);
    va_end(ap);
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline("warning: ", fmt, ap, NULL);
    va_end(ap);
}

/* ---- append errors ------------------------------------------------------- */

void cli_expected_text(int64_t expected, char out[24])
{
    switch (expected) {
    case EVS_EXPECT_ANY: strcpy(out, "any"); break;
    case EVS_EXPECT_NO_STREAM: strcpy(out, "no_stream"); break;
    case EVS_EXPECT_EXISTS: strcpy(out, "exists"); break;
    default: snprintf(out, 24, "%lld", (long long)expected);
    }
}

void cli_append_error(int rc, const evs_append_result *r, const char *stream, const char *what)
{
    if (rc == EVS_ECONFLICT && r) {
        char exp[24];
        cli_expected_text(r->expected_version, exp);
        cli_error("%s: wrong expected version for stream '%s': expected %s, actual %llu",
                  what, stream ? stream : "?", exp, (unsigned long long)r->actual_version);
    } else if ((rc == EVS_EINVAL || rc == EVS_EDUPLICATE || rc == EVS_ETOOBIG ||
                rc == EVS_ECONDITION) && r && r->message[0]) {
        cli_error("%s: %s (%s)", what, r->message, evs_errname(rc));
    } else {
        cli_error_rc(rc, "%s", what);
    }
}
