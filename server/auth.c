/*
 * auth.c — --auth-tokens FILE: bearer tokens, stored only as SHA-256 hashes,
 * each scoped to read or read-write on a stream-name prefix.
 *
 * File format, one token per line ('#' starts a comment, blank lines skipped):
 *     <64 hex digits: SHA-256 of the token> <read|write> [<stream prefix>]
 * e.g. `printf %s "$TOKEN" | sha256sum` gives the hash. "write" includes
 * read. No prefix (or "*") means every stream.
 *
 * Requests carry `Authorization: Bearer <token>`. No or unknown token: 401
 * unauthorized. A known token outside its scope (a read token writing, a
 * stream outside its prefix): 403 forbidden. /health needs no token (load
 * balancers probe it). The token's hash is compared with every entry in
 * constant time, so timing says nothing about which bytes matched.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "server.h"

typedef struct evsd_token {
    uint8_t hash[32];            /* SHA-256 of the token */
    int write;                   /* 1: read-write; 0: read-only */
    char *prefix;                /* stream-name prefix it covers ("" = all) */
} evsd_token;

struct evsd_auth {
    evsd_token *tokens;
    size_t n;
};

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int evsd_auth_load(evsd_server *srv);

int evsd_auth_load(evsd_server *srv)
{
    size_t len = 0;
    char *text = evsd_read_file(srv->cfg.auth_tokens, &len);
    if (!text) {
        evsd_log(EVS_LOG_ERROR, "cannot read --auth-tokens %s: %s", srv->cfg.auth_tokens, strerror(errno));
        return -1;
    }
    struct evsd_auth *a = calloc(1, sizeof *a);
    int rc = -1, lineno = 0;
    char *save = NULL;
    if (!a) goto out;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *hash = NULL, *scope = NULL, *prefix = NULL, *s2 = NULL;
        char *hashp = strchr(line, '#');
        if (hashp) *hashp = 0;
        hash = strtok_r(line, " \t\r", &s2);
        if (!hash) continue;
        scope = strtok_r(NULL, " \t\r", &s2);
        prefix = strtok_r(NULL, " \t\r", &s2);
        if (strtok_r(NULL, " \t\r", &s2) || !scope || strlen(hash) != 64 ||
            (strcmp(scope, "read") && strcmp(scope, "write"))) {
            evsd_log(EVS_LOG_ERROR, "%s line %d: expected '<sha256 hex> <read|write> [prefix]'", srv->cfg.auth_tokens, lineno);
            goto out;
        }
        evsd_token t = {.write = !strcmp(scope, "write")};
        for (int i = 0; i < 32; i++) {
            int hi = hexval(hash[2 * i]), lo = hexval(hash[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                evsd_log(EVS_LOG_ERROR, "%s line %d: the hash must be 64 hex digits", srv->cfg.auth_tokens, lineno);
                goto out;
            }
            t.hash[i] = (uint8_t)(hi * 16 + lo);
        }
        t.prefix = strdup(prefix && strcmp(prefix, "*") ? prefix : "");
        evsd_token *nt = realloc(a->tokens, (a->n + 1) * sizeof *nt);
        if (!t.prefix || !nt) { free(t.prefix); goto out; }
        a->tokens = nt;
        a->tokens[a->n++] = t;
    }
    if (a->n == 0) {
        evsd_log(EVS_LOG_ERROR, "%s holds no tokens: nobody could use the server", srv->cfg.auth_tokens);
        goto out;
    }
    srv->auth = a;
    a = NULL;
    rc = 0;
out:
    if (a) {
        for (size_t i = 0; i < a->n; i++) free(a->tokens[i].prefix);
        free(a->tokens);
        free(a);
    }
    free(text);
    return rc;
}

void evsd_auth_free(evsd_server *srv)
{
    struct evsd_auth *a = srv->auth;
    if (!a) return;
    for (size_t i = 0; i < a->n; i++) free(a->tokens[i].prefix);
    free(a->tokens);
    free(a);
    srv->auth = NULL;
}

/* The token of this request, or NULL. Every entry is compared, in constant time. */
static const evsd_token *find_token(evsd_req *r)
{
    const char *h = evsd_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return NULL;
    const char *tok = h + 7;
    while (*tok == ' ') tok++;
    uint8_t digest[32];
    unsigned dlen = 0;
    if (!*tok || EVP_Digest(tok, strlen(tok), digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32) return NULL;
    const struct evsd_auth *a = r->srv->auth;
    const evsd_token *found = NULL;
    for (size_t i = 0; i < a->n; i++)
        if (CRYPTO_memcmp(digest, a->tokens[i].hash, 32) == 0 && !found) found = &a->tokens[i];
    return found;
}

int evsd_auth_require(evsd_req *r, const char *stream, int write, const char **prefix_out)
{
    if (prefix_out) *prefix_out = NULL;
    if (!r->srv->auth) return 0;
    const evsd_token *t = find_token(r);
    if (!t) {
        evsd_error(r, 401, "unauthorized", "a valid token is required: send 'Authorization: Bearer <token>'");
        return -1;
    }
    if (write && !t->write) {
        evsd_error(r, 403, "forbidden", "this token may only read");
        return -1;
    }
    size_t pl = strlen(t->prefix);
    if (stream && strncmp(stream, t->prefix, pl) != 0) {
        evsd_error(r, 403, "forbidden", "this token covers only streams starting with '%s'", t->prefix);
        return -1;
    }
    if (prefix_out) *prefix_out = t->prefix;
    return 0;
}
