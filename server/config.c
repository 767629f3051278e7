/*
 * config.c — flags and EVSTORE_* environment variables for evstored.
 * Every value is validated at start; anything wrong is one clear line and a
 * non-zero exit, never a silent default.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum opt_kind { OPT_STR, OPT_SIZE, OPT_UINT, OPT_FLAG };

typedef struct opt_def {
    const char *flag;            /* without the leading "--" */
    enum opt_kind kind;
    const char *help;
} opt_def;

static const opt_def options[] = {
    {"data", OPT_STR, "data directory (default ./data)"},
    {"listen", OPT_STR, "ADDR:PORT to listen on (default 127.0.0.1:2114)"},
    {"fsync", OPT_STR, "always (default) | interval:MS | never"},
    {"segment-size", OPT_SIZE, "seal segments at this size (default 256M)"},
    {"max-event-size", OPT_SIZE, "largest event accepted (default 1M)"},
    {"max-body-size", OPT_SIZE, "largest request body accepted (default 64M)"},
    {"max-connections", OPT_UINT, "concurrent connections (default 10000)"},
    {"auth-tokens", OPT_STR, "file of token hashes; enables authentication"},
    {"tls-cert", OPT_STR, "PEM certificate; enables TLS with --tls-key"},
    {"tls-key", OPT_STR, "PEM private key"},
    {"read-only", OPT_FLAG, "serve a directory another process writes"},
    {"log-format", OPT_STR, "text (default) | json"},
    {"log-level", OPT_STR, "error | warn | info (default) | debug"},
    {"heartbeat", OPT_UINT, "seconds between watch heartbeats (default 10)"},
    {"threads", OPT_UINT, "HTTP worker threads (default 2)"},
    {"idle-timeout", OPT_UINT, "seconds before an idle connection is closed (default 60)"},
    {"watch-buffer", OPT_SIZE, "recent events kept encoded for watchers (default 16M)"},
};
#define NOPTS (sizeof options / sizeof options[0])

int evsd_parse_size(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!text || !isdigit((unsigned char)*text)) return -1;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno) return -1;
    uint64_t mul = 1;
    if (*end) {
        switch (toupper((unsigned char)*end)) {
        case 'K': mul = 1ull << 10; break;
        case 'M': mul = 1ull << 20; break;
        case 'G': mul = 1ull << 30; break;
        default: return -1;
        }
        end++;
        if (*end == 'i' || *end == 'I') end++;
        if (*end == 'B' || *end == 'b') end++;
        if (*end) return -1;
    }
    if (v > UINT64_MAX / mul) return -1;
    *out = v * mul;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: evstored [options]\n\nEvery option can also be set as EVSTORE_<OPTION> in the environment\n"
               "(e.g. EVSTORE_FSYNC=never); a flag on the command line wins.\n\n");
    for (size_t i = 0; i < NOPTS; i++)
        fprintf(f, "  --%-18s %s\n", options[i].flag, options[i].help);
}

static int bad(const char *flag, const char *value, const char *why)
{
    fprintf(stderr, "evstored: invalid --%s '%s': %s\n", flag, value ? value : "", why);
    return 2;
}

/* Apply one option value (from argv or the environment). */
static int apply(evsd_config *c, const opt_def *o, const char *v)
{
    uint64_t n = 0;
    if (o->kind == OPT_SIZE && evsd_parse_size(v, &n) != 0)
        return bad(o->flag, v, "expected a size such as 1048576, 64K, 256M or 1G");
    if (o->kind == OPT_UINT) {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(v, &end, 10);
        if (!isdigit((unsigned char)*v) || *end || errno || u > 1000000) return bad(o->flag, v, "expected a whole number");
        n = u;
    }
    if (o->kind == OPT_FLAG) {
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes")) n = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no")) n = 0;
        else return bad(o->flag, v, "expected true or false");
    }
    const char *f = o->flag;
    if (!strcmp(f, "data")) {
        if (!*v) return bad(f, v, "must not be empty");
        c->data = v;
    } else if (!strcmp(f, "listen")) {
        const char *colon = strrchr(v, ':');
        if (!colon || colon == v) return bad(f, v, "expected ADDR:PORT, e.g. 127.0.0.1:2114");
        char *end;
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (*end || port == 0 || port > 65535 || !isdigit((unsigned char)colon[1])) return bad(f, v, "port must be 1-65535");
        size_t hl = (size_t)(colon - v);
        if (v[0] == '[' && hl > 2 && v[hl - 1] == ']') { v++; hl -= 2; }
        if (hl >= sizeof c->listen_host) return bad(f, v, "address too long");
        memcpy(c->listen_host, v, hl);
        c->listen_host[hl] = 0;
        c->listen_port = (uint16_t)port;
    } else if (!strcmp(f, "fsync")) {
        c->fsync = v;
        if (!strcmp(v, "always")) c->sync = EVS_SYNC_ALWAYS;
        else if (!strcmp(v, "never")) c->sync = EVS_SYNC_NEVER;
        else if (!strncmp(v, "interval:", 9)) {
            char *end;
            unsigned long ms = strtoul(v + 9, &end, 10);
            if (!isdigit((unsigned char)v[9]) || *end || ms == 0 || ms > 3600000)
                return bad(f, v, "interval must be 1-3600000 milliseconds, e.g. interval:100");
            c->sync = EVS_SYNC_INTERVAL;
            c->sync_interval_ms = (uint32_t)ms;
        } else {
            return bad(f, v, "expected always, interval:MS or never");
        }
    } else if (!strcmp(f, "segment-size")) {
        if (n < (64u << 10) || n >= (4ull << 30)) return bad(f, v, "must be between 64K and 4G");
        c->segment_size = n;
    } else if (!strcmp(f, "max-event-size")) {
        if (n < 256 || n > (64u << 20)) return bad(f, v, "must be between 256 and 64M");
        c->max_event_size = n;
    } else if (!strcmp(f, "max-body-size")) {
        if (n < 1024 || n > (4ull << 30)) return bad(f, v, "must be between 1K and 4G");
        c->max_body_size = n;
    } else if (!strcmp(f, "max-connections")) {
        if (n < 1) return bad(f, v, "must be at least 1");
        c->max_connections = (unsigned)n;
    } else if (!strcmp(f, "auth-tokens")) {
        c->auth_tokens = *v ? v : NULL;
    } else if (!strcmp(f, "tls-cert")) {
        c->tls_cert = *v ? v : NULL;
    } else if (!strcmp(f, "tls-key")) {
        c->tls_key = *v ? v : NULL;
    } else if (!strcmp(f, "read-only")) {
        c->read_only = (int)n;
    } else if (!strcmp(f, "log-format")) {
        if (!strcmp(v, "json")) c->log_json = 1;
        else if (!strcmp(v, "text")) c->log_json = 0;
        else return bad(f, v, "expected text or json");
    } else if (!strcmp(f, "log-level")) {
        static const char *levels[] = {"error", "warn", "info", "debug"};
        int found = -1;
        for (int i = 0; i < 4; i++) if (!strcmp(v, levels[i])) found = i;
        if (found < 0) return bad(f, v, "expected error, warn, info or debug");
        c->log_level = found;
    } else if (!strcmp(f, "heartbeat")) {
        if (n < 1 || n > 3600) return bad(f, v, "must be 1-3600 seconds");
        c->heartbeat_default = (unsigned)n;
    } else if (!strcmp(f, "threads")) {
        if (n < 1 || n > 64) return bad(f, v, "must be 1-64");
        c->threads = (unsigned)n;
    } else if (!strcmp(f, "idle-timeout")) {
        if (n < 1 || n > 86400) return bad(f, v, "must be 1-86400 seconds");
        c->idle_timeout = (unsigned)n;
    } else if (!strcmp(f, "watch-buffer")) {
        if (n < (64u << 10) || n > (4ull << 30)) return bad(f, v, "must be between 64K and 4G");
        c->watch_buffer = n;
    }
    return 0;
}

static const opt_def *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(options[i].flag) == len && !strncmp(options[i].flag, name, len)) return &options[i];
    return NULL;
}

int evsd_config_parse(evsd_config *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    c->data = "./data";
    strcpy(c->listen_host, "127.0.0.1");
    c->listen_port = 2114;
    c->fsync = "always";
    c->sync = EVS_SYNC_ALWAYS;
    c->sync_interval_ms = 100;
    c->segment_size = 256ull << 20;
    c->max_event_size = 1u << 20;
    c->max_body_size = 64ull << 20;
    c->max_connections = 10000;
    c->log_level = EVS_LOG_INFO;
    c->heartbeat_default = 10;
    c->threads = 2;
    c->idle_timeout = 60;
    c->watch_buffer = 16u << 20;
    /* the environment first, so that flags win */
    for (size_t i = 0; i < NOPTS; i++) {
        char env[64] = "EVSTORE_";
        size_t k = strlen(env);
        for (const char *p = options[i].flag; *p && k < sizeof env - 1; p++)
            env[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        env[k] = 0;
        const char *v = getenv(env);
        if (v) {
            int rc = apply(c, &options[i], v);
            if (rc) { fprintf(stderr, "evstored: (from the environment variable %s)\n", env); return rc; }
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 1; }
        if (!strcmp(a, "--version")) { printf("evstored %s\n", evs_version_string()); return 1; }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "evstored: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        const opt_def *o = find_opt(name, eq ? (size_t)(eq - name) : strlen(name));
        if (!o) {
            fprintf(stderr, "evstored: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v && o->kind == OPT_FLAG) v = "true";
        if (!v) {
            if (i + 1 >= argc) { fprintf(stderr, "evstored: --%s needs a value\n", o->flag); return 2; }
            v = argv[++i];
        }
        int rc = apply(c, o, v);
        if (rc) return rc;
    }
    if (!!c->tls_cert != !!c->tls_key) {
        fprintf(stderr, "evstored: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (c->max_event_size > c->max_body_size) {
        fprintf(stderr, "evstored: --max-event-size must not exceed --max-body-size\n");
        return 2;
    }
    return 0;
}
