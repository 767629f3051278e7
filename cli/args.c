/*
 * args.c — option parsing helpers: environment defaults, the options every
 * command shares, and strict number/size/fsync-policy parsers.
 *
 * Every problem is reported here as one line on stderr, so callers only
 * have to turn a -1 into CLI_EXIT_USAGE.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "output.h"

void args_global_init(cli_global *g)
{
    memset(g, 0, sizeof *g);
    g->data_dir = "./data";
    g->sync = EVS_SYNC_ALWAYS;
    g->sync_interval_ms = 100;   /* the library's default, used by "interval" alone */
    g->segment_size = 0;         /* 0: leave the library default */
}

static int args_segment_size(cli_global *g, const char *option, const char *text);

/* A variable that is set but empty counts as unset: "EVSTORE_DATA= evstore ..."
 * is how people clear a variable for one command. */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int args_global_env(cli_global *g)
{
    const char *v;
    if ((v = env("EVSTORE_DATA")) != NULL)
        g->data_dir = v;
    if ((v = env("EVSTORE_URL")) != NULL)
        g->url = v;
    if ((v = env("EVSTORE_TOKEN")) != NULL)
        g->token = v;
    if ((v = env("EVSTORE_CACERT")) != NULL)
        g->cacert = v;
    if ((v = env("EVSTORE_FSYNC")) != NULL && args_fsync(g, "EVSTORE_FSYNC", v) != 0)
        return -1;
    if ((v = env("EVSTORE_SEGMENT_SIZE")) != NULL &&
        args_segment_size(g, "EVSTORE_SEGMENT_SIZE", v) != 0)
        return -1;
    return 0;
}

/* The library raises a smaller segment size to its minimum without a word;
 * a user who typed 4K should hear that it is not possible instead. */
static int args_segment_size(cli_global *g, const char *option, const char *text)
{
    uint64_t v;
    if (args_size(g, option, text, &v) != 0)
        return -1;
    if (v < (64u << 10)) {
        args_usage(g, "%s: %s is below the minimum segment size of 64K", option, text);
        return -1;
    }
    g->segment_size = v;
    return 0;
}

int args_common(cli_global *g, int opt, const char *arg)
{
    switch (opt) {
    case 'd':
    case OPT_DATA:
        if (!*arg) {
            args_usage(g, "--data: the directory name is empty");
            return -1;
        }
        g->data_dir = arg;
        g->data_from_flag = 1;
        return 1;
    case OPT_URL:
        if (!*arg) {
            args_usage(g, "--url: the address is empty");
            return -1;
        }
        g->url = arg;
        g->url_from_flag = 1;
        return 1;
    case OPT_TOKEN:
        g->token = arg;
        return 1;
    case OPT_CACERT:
        g->cacert = arg;
        return 1;
    case OPT_INSECURE:
        g->insecure = 1;
        return 1;
    case OPT_PRETTY:
        g->pretty = 1;
        return 1;
    case 'v':
        g->verbose++;
        return 1;
    case OPT_FSYNC:
        return args_fsync(g, "--fsync", arg) == 0 ? 1 : -1;
    case OPT_SEGMENT_SIZE:
        return args_segment_size(g, "--segment-size", arg) == 0 ? 1 : -1;
    default:
        return 0;
    }
}

void args_begin(void)
{
    /* optind = 0 makes glibc (and musl) reinitialise getopt's internal state,
     * which a second parse over a different argv needs. */
    optind = 0;
    opterr = 0;
}

int args_next(cli_global *g, int argc, char **argv, const char *shortopts,
              const struct option *longopts)
{
    for (;;) {
        int c = getopt_long(argc, argv, shortopts, longopts, NULL);
        if (c == -1)
            return ARGS_END;
        if (c == 'h')
            return ARGS_HELP;
        if (c == '?' || c == ':') {
            /* An unknown short option leaves its character in optopt (it may
             * sit inside a cluster like -bx); otherwise the culprit is the
             * word getopt just stepped over. */
            char word[64];
            const char *w = argv[optind - 1];
            if (c == '?' && optopt > 0 && optopt < 256 && isprint(optopt))
                snprintf(word, sizeof word, "-%c", optopt);
            else   /* the option word itself; "--opt=value" is named without its value */
                snprintf(word, sizeof word, "%.*s", (int)strcspn(w, "="), w);
            if (c == '?')
                args_usage(g, "unknown option '%s'", word);
            else
                args_usage(g, "option '%s' needs a value", word);
            return ARGS_ERROR;
        }
        int r = args_common(g, c, optarg);
        if (r < 0)
            return ARGS_ERROR;
        if (r == 0)
            return c;
    }
}

int args_u64(cli_global *g, const char *option, const char *text, uint64_t *out)
{
    /* strtoull accepts "-1" (and wraps it) and leading blanks; we do not. */
    if (!isdigit((unsigned char)text[0])) {
        args_usage(g, "%s: '%s' is not a non-negative integer", option, text);
        return -1;
    }
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno == ERANGE || *end) {
        args_usage(g, "%s: '%s' is not a non-negative integer", option, text);
        return -1;
    }
    *out = v;
    return 0;
}

int args_size(cli_global *g, const char *option, const char *text, uint64_t *out)
{
    if (!isdigit((unsigned char)text[0]))
        goto bad;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno == ERANGE)
        goto bad;
    unsigned shift = 0;
    switch (*end) {
    case 0: break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: goto bad;
    }
    if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
        end += strlen(end);
    if (*end)
        goto bad;
    if (shift && v > (UINT64_MAX >> shift))
        goto bad;
    *out = (uint64_t)v << shift;
    return 0;
bad:
    args_usage(g, "%s: '%s' is not a size (a number of bytes, optionally with K, M, G or T)",
               option, text);
    return -1;
}

int args_fsync(cli_global *g, const char *option, const char *text)
{
    if (strcmp(text, "always") == 0) {
        g->sync = EVS_SYNC_ALWAYS;
        return 0;
    }
    if (strcmp(text, "never") == 0) {
        g->sync = EVS_SYNC_NEVER;
        return 0;
    }
    if (strcmp(text, "interval") == 0) {
        g->sync = EVS_SYNC_INTERVAL;
        return 0;
    }
    if (strncmp(text, "interval:", 9) == 0) {
        const char *ms = text + 9;
        char *end;
        errno = 0;
        unsigned long v = isdigit((unsigned char)ms[0]) ? strtoul(ms, &end, 10) : 0;
        if (isdigit((unsigned char)ms[0]) && !*end && errno == 0 && v >= 1 && v <= 3600000) {
            g->sync = EVS_SYNC_INTERVAL;
            g->sync_interval_ms = (uint32_t)v;
            return 0;
        }
    }
    args_usage(g, "%s: '%s' is not a fsync policy (always, interval:MS with MS 1..3600000, "
                  "or never)", option, text);
    return -1;
}

int args_usage(const cli_global *g, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g && g->command)
        cli_error("%s: %s (see 'evstore help %s')", g->command, msg, g->command);
    else
        cli_error("%s (see 'evstore --help')", msg);
    return CLI_EXIT_USAGE;
}
