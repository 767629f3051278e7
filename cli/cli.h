/*
 * cli.h — what every part of the evstore CLI shares: exit codes, the global
 * options, the command entry points and the stop flag set by SIGINT/SIGTERM.
 *
 * The CLI uses only the public <evstore.h>; nothing under src/ is visible here.
 */
#ifndef EVS_CLI_H
#define EVS_CLI_H

#include <signal.h>
#include <stdint.h>

#include <evstore.h>

/* Exit codes, documented in docs/CLI.md. verify uses 1 for "damage found",
 * so "could not even look" must be different there: it is 2, like usage. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAIL = 1,   /* the command ran and failed (not found, conflict, I/O, ...) */
    CLI_EXIT_USAGE = 2   /* bad command line or environment; for verify also "could not run" */
};

/* Options that apply to every command. Filled from the environment first,
 * then from flags (a flag wins), see args_global_env()/args_common(). */
typedef struct cli_global {
    const char *data_dir;       /* --data / EVSTORE_DATA, default "./data" */
    const char *url;            /* --url / EVSTORE_URL: talk to evstored at this address */
    const char *token;          /* --token / EVSTORE_TOKEN: bearer token sent with --url */
    const char *cacert;         /* --cacert / EVSTORE_CACERT: CA certificate(s) for https:// */
    int insecure;               /* --insecure: do not verify the server's certificate */
    int data_from_flag;         /* --data was given: it beats EVSTORE_URL */
    int url_from_flag;          /* --url was given: it beats EVSTORE_DATA */
    int pretty;                 /* --pretty: indented JSON for people */
    int verbose;                /* -v: library log level INFO (twice: DEBUG) */
    evs_sync_mode sync;         /* --fsync / EVSTORE_FSYNC */
    uint32_t sync_interval_ms;  /* with EVS_SYNC_INTERVAL */
    uint64_t segment_size;      /* --segment-size / EVSTORE_SEGMENT_SIZE; 0 = library default */
    const char *command;        /* the command being run, for messages */
} cli_global;

/* One command: parses its own arguments (argv[0] is the command name) and
 * returns the process exit code. */
typedef int (*cli_command_fn)(cli_global *g, int argc, char **argv);

int cmd_append(cli_global *g, int argc, char **argv);
int cmd_read(cli_global *g, int argc, char **argv);
int cmd_get(cli_global *g, int argc, char **argv);
int cmd_streams(cli_global *g, int argc, char **argv);
int cmd_stats(cli_global *g, int argc, char **argv);
int cmd_verify(cli_global *g, int argc, char **argv);
int cmd_export(cli_global *g, int argc, char **argv);
int cmd_import(cli_global *g, int argc, char **argv);
/* [backup] cmd_backup.c */
int cmd_backup(cli_global *g, int argc, char **argv);
int cmd_restore(cli_global *g, int argc, char **argv);

/* Print the help of one command (or the overview for NULL) to stdout.
 * Returns 0, or -1 if there is no such command. Lives in main.c next to the
 * dispatch table so the two cannot disagree. */
int cli_print_help(const char *command);

/* SIGINT/SIGTERM set this; long-running loops (--follow, export, import)
 * check it between steps and finish cleanly. */
extern volatile sig_atomic_t cli_stop;

#endif /* EVS_CLI_H */
