/*
 * args.h — command-line and environment parsing shared by all commands.
 *
 * Every command accepts the common options (--data, --url, --pretty, -v,
 * --help) after its name as well as before it, because users type
 * "evstore read --data DIR" as often as "evstore --data DIR read".
 * args_next() handles those and returns only the command's own options, so a
 * command's option loop stays a short switch.
 */
#ifndef EVS_CLI_ARGS_H
#define EVS_CLI_ARGS_H

#include <getopt.h>
#include <stdint.h>

#include "cli.h"

/* Long-option codes outside the char range, so they never clash with a
 * command's short options. Commands number their own from OPT_CMD. */
enum {
    OPT_DATA = 0x100,
    OPT_URL,
    OPT_PRETTY,
    OPT_FSYNC,
    OPT_SEGMENT_SIZE,
    OPT_TOKEN,
    OPT_CACERT,
    OPT_INSECURE,
    OPT_CMD = 0x200
};

/* Entries every command's struct option table starts with. */
#define ARGS_COMMON_LONG                                     \
    { "data", required_argument, NULL, OPT_DATA },           \
    { "url", required_argument, NULL, OPT_URL },             \
    { "token", required_argument, NULL, OPT_TOKEN },         \
    { "cacert", required_argument, NULL, OPT_CACERT },       \
    { "insecure", no_argument, NULL, OPT_INSECURE },         \
    { "pretty", no_argument, NULL, OPT_PRETTY },             \
    { "verbose", no_argument, NULL, 'v' },                   \
    { "help", no_argument, NULL, 'h' }
/* Added by commands that write (append, import). */
#define ARGS_WRITE_LONG                                      \
    { "fsync", required_argument, NULL, OPT_FSYNC },         \
    { "segment-size", required_argument, NULL, OPT_SEGMENT_SIZE }
/* The short-option string: the leading ':' makes getopt report a missing
 * argument as ':' (not '?') and stay silent, so we print one line ourselves. */
#define ARGS_SHORT(cmd_short) ":d:hv" cmd_short

/* args_next() results besides the command's own option characters. */
enum {
    ARGS_END = -1,    /* no more options: positionals start at optind */
    ARGS_ERROR = -2,  /* a bad option was reported on stderr: exit CLI_EXIT_USAGE */
    ARGS_HELP = -3    /* --help: print the command's help and exit 0 */
};

/** Defaults: ./data, fsync always, library segment size. */
void args_global_init(cli_global *g);
/** Apply EVSTORE_DATA, EVSTORE_URL, EVSTORE_TOKEN, EVSTORE_CACERT, EVSTORE_FSYNC,
 *  EVSTORE_SEGMENT_SIZE.
 *  @return 0, or -1 after reporting a bad value. */
int args_global_env(cli_global *g);
/** Handle one common option (OPT_DATA, ..., 'v'). @return 1 handled, 0 not
 *  a common option, -1 bad value (reported). */
int args_common(cli_global *g, int opt, const char *arg);

/** Start parsing a command's argv (argv[0] is the command name). */
void args_begin(void);
/** The next command-specific option (its code, with its argument in optarg),
 *  or ARGS_END / ARGS_ERROR / ARGS_HELP. Common options are consumed here. */
int args_next(cli_global *g, int argc, char **argv, const char *shortopts,
              const struct option *longopts);

/** Strict unsigned decimal. @return 0, or -1 after reporting "OPTION: ...". */
int args_u64(cli_global *g, const char *option, const char *text, uint64_t *out);
/** A byte size with an optional K, M, G or T suffix (powers of 1024, "KiB"
 *  and "KB" spelled out are accepted too). @return 0 or -1 (reported). */
int args_size(cli_global *g, const char *option, const char *text, uint64_t *out);
/** "always", "never" or "interval:MS" into g. @return 0 or -1 (reported). */
int args_fsync(cli_global *g, const char *option, const char *text);

/** Report a usage problem of the current command as one line with a hint
 *  where help is; @return CLI_EXIT_USAGE for "return args_usage(...)". */
int args_usage(const cli_global *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* EVS_CLI_ARGS_H */
