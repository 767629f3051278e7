/*
 * backup_http.c — GET /backup from evstored into a file, with libcurl (see
 * backup_http.h).
 *
 * The archive goes straight to the file as it arrives (never whole in
 * memory). A refusal (4xx/5xx) is not written to the file: its JSON body is
 * collected instead and its "message" becomes the error. A transfer the
 * server ends early (it failed, or stopped) is an error too; the caller
 * then also checks the file with evs_backup_inspect, which is what proves
 * it complete. The server sends nothing until it has checked every segment
 * (the manifest with their checksums leads the archive), so there is no
 * low-speed timeout, only a connect timeout; SIGINT/SIGTERM stop the
 * transfer within a fraction of a second.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "backup_http.h"
#include "output.h"

typedef struct dl {
    CURL *c;
    int fd;                      /* the archive's file */
    long status;                 /* HTTP status, once known */
    uint64_t received;           /* archive bytes written */
    char body[4096];             /* an error answer's body (truncated) */
    size_t body_len;
    int write_errno;             /* writing the file failed */
    cli_progress *progress;
} dl;

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    dl *d = arg;
    size_t n = size * nmemb;
    if (!d->status)
        curl_easy_getinfo(d->c, CURLINFO_RESPONSE_CODE, &d->status);
    if (d->status != 200) {
        size_t k = sizeof d->body - 1 - d->body_len;
        if (k > n) k = n;
        memcpy(d->body + d->body_len, p, k);
        d->body_len += k;
        d->body[d->body_len] = 0;
        return n;
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = write(d->fd, p + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            d->write_errno = w < 0 ? errno : EIO;
            return 0;   /* makes libcurl stop with CURLE_WRITE_ERROR */
        }
        off += (size_t)w;
    }
    d->received += n;
    if (d->progress) progress_update(d->progress, 0, d->received);
    return n;
}

static int on_xfer(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    return cli_stop ? 1 : 0;
}

/* The "message" (and "error") of the server's JSON error answer. */
static void server_message(const char *body, char *out, size_t cap)
{
    const char *keys[2] = {"\"message\":\"", "\"error\":\""};
    char vals[2][600] = {"", ""};
    for (int k = 0; k < 2; k++) {
        const char *p = strstr(body, keys[k]);
        if (!p) continue;
        p += strlen(keys[k]);
        size_t o = 0;
        while (*p && *p != '"' && o + 1 < sizeof vals[k]) {
            if (*p == '\\' && p[1]) {
                p++;
                char c = *p == 'n' ? ' ' : *p == 't' ? ' ' : *p == 'r' ? ' ' : *p == 'u' ? '?' : *p;
                if (*p == 'u') p += strlen(p) >= 5 ? 4 : 0;
                vals[k][o++] = c;
                p++;
                continue;
            }
            vals[k][o++] = *p++;
        }
        vals[k][o] = 0;
    }
    if (vals[0][0]) {
        /* the message, then the code in parentheses, as the rest of the CLI reports it */
        size_t m = strlen(vals[0]);
        if (m >= cap) m = cap - 1;
        memcpy(out, vals[0], m);
        out[m] = 0;
        if (m + strlen(vals[1]) + 4 < cap && vals[1][0]) {
            strcat(out, " (");
            strcat(out, vals[1]);
            strcat(out, ")");
        }
    } else {
        snprintf(out, cap, "%.200s", body);
    }
}

int cli_http_backup(const cli_global *g, uint64_t since, int fd, cli_progress *progress, uint64_t *received,
                    char *err, size_t errlen)
{
    *received = 0;
    err[0] = 0;
    const char *url = g->url;
    const char *sep = strstr(url, "://");
    if ((sep && !((sep - url == 4 && strncasecmp(url, "http", 4) == 0) ||
                  (sep - url == 5 && strncasecmp(url, "https", 5) == 0))) ||
        strpbrk(url, "?# \t\r\n")) {
        snprintf(err, errlen, "--url %s: give the server's address only, http:// or https://, e.g. "
                 "http://127.0.0.1:2114", url);
        return CLI_EXIT_USAGE;
    }
    if (g->token) {
        for (const char *p = g->token; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                snprintf(err, errlen, "--token: the token contains a control character");
                return CLI_EXIT_USAGE;
            }
    }
    size_t n = strlen(url);
    while (n && url[n - 1] == '/') n--;
    char full[4096], auth[1100];
    int len = snprintf(full, sizeof full, "%s%.*s/backup", sep ? "" : "http://", (int)n, url);
    if (since && len > 0 && (size_t)len < sizeof full)
        len += snprintf(full + len, sizeof full - (size_t)len, "?since=%llu", (unsigned long long)since);
    if (len < 0 || (size_t)len >= sizeof full) {
        snprintf(err, errlen, "--url is too long");
        return CLI_EXIT_USAGE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return CLI_EXIT_FAIL;
    }
    dl d;
    memset(&d, 0, sizeof d);
    d.fd = fd;
    d.progress = progress;
    char curl_err[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL;
    int rc = CLI_EXIT_FAIL;
    CURL *c = d.c = curl_easy_init();
    if (!c) {
        snprintf(err, errlen, "cannot initialise libcurl");
        goto out;
    }
    char agent[64];
    snprintf(agent, sizeof agent, "evstore/%d.%d.%d", EVS_VERSION_MAJOR, EVS_VERSION_MINOR, EVS_VERSION_PATCH);
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_USERAGENT, agent);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xfer);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &d);
    if (g->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", g->token);
        hdrs = curl_slist_append(hdrs, auth);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    }
    if (g->cacert) curl_easy_setopt(c, CURLOPT_CAINFO, g->cacert);
    if (g->insecure) {
        cli_warn("--insecure: the server's TLS certificate is not checked; anyone on the way can read and "
                 "change what is sent (use --cacert FILE instead)");
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    CURLcode cc = curl_easy_perform(c);
    if (!d.status) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &d.status);
    *received = d.received;
    if (cc == CURLE_ABORTED_BY_CALLBACK && cli_stop) {
        snprintf(err, errlen, "interrupted after %llu bytes", (unsigned long long)d.received);
        rc = 130;
    } else if (d.write_errno) {
        snprintf(err, errlen, "writing the archive: %s", strerror(d.write_errno));
    } else if (d.status && d.status != 200) {
        char msg[700];
        server_message(d.body, msg, sizeof msg);
        snprintf(err, errlen, "the server refused the backup (HTTP %ld): %s", d.status, msg);
    } else if (cc == CURLE_PARTIAL_FILE || cc == CURLE_RECV_ERROR || (cc != CURLE_OK && d.status == 200)) {
        snprintf(err, errlen, "the server ended the archive after %llu bytes (%s); its log says why",
                 (unsigned long long)d.received, curl_err[0] ? curl_err : curl_easy_strerror(cc));
    } else if (cc != CURLE_OK) {
        snprintf(err, errlen, "cannot reach %s: %s", url, curl_err[0] ? curl_err : curl_easy_strerror(cc));
    } else {
        rc = 0;
    }
out:
    curl_slist_free_all(hdrs);
    if (c) curl_easy_cleanup(c);
    curl_global_cleanup();
    return rc;
}
