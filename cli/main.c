/*
 * main.c — the evstore command: global options, the dispatch table and help.
 *
 * evstore [GLOBAL OPTIONS] COMMAND [ARGS]. Global options may also follow
 * the command. Each command lives in its own cmd_<name>.c and returns the
 * exit code; this file only routes to it and makes sure buffered output is
 * written (a failed write to stdout is an error, not silence).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <evstore.h>

#include "args.h"
#include "cli.h"
#include "output.h"

volatile sig_atomic_t cli_stop;

typedef struct command {
    const char *name;      /* what the user types */
    cli_command_fn fn;     /* the implementation */
    const char *summary;   /* one line for the overview */
    const char *help;      /* usage and options, for "evstore help NAME" */
} command;

#define COMMON_HELP                                                               \
    "  -d, --data DIR       data directory (default ./data, env EVSTORE_DATA)\n"  \
    "      --url URL        talk to evstored at URL instead (env EVSTORE_URL)\n"   \
    "      --token T        bearer token for --url (env EVSTORE_TOKEN)\n"          \
    "      --cacert FILE    trust this CA/self-signed certificate for https://\n"  \
    "                       (env EVSTORE_CACERT)\n"                                 \
    "      --insecure       do not check the server's certificate (warns)\n"       \
    "      --pretty         indent JSON output for reading\n"                     \
    "  -v, --verbose        show the library's log messages (twice: debug)\n"     \
    "  -h, --help           this help\n"
#define WRITE_HELP                                                                \
    "      --fsync POLICY   always (default), interval:MS or never (env EVSTORE_FSYNC)\n" \
    "      --segment-size N seal segments at N bytes; K, M, G suffixes (env EVSTORE_SEGMENT_SIZE)\n"

static const command commands[] = {
    { "append", cmd_append, "append events from stdin (JSON Lines) to a stream, atomically",
      "usage: evstore append STREAM [--expected-version V] < events.jsonl\n"
      "\n"
      "Reads one event object per line from stdin ({\"type\":...,\"data\":...,\n"
      "\"metadata\":...,\"id\":...}) and appends them all as one atomic append.\n"
      "Prints {\"first_position\",\"last_position\",\"events\":[...]}.\n"
      "\n"
      "  -e, --expected-version V  any (default), no_stream, exists, or the exact\n"
      "                            number of events the stream must have\n"
      WRITE_HELP COMMON_HELP },
    { "read", cmd_read, "print events of the global log or of one stream",
      "usage: evstore read [STREAM] [options]\n"
      "\n"
      "Without STREAM reads the global log (positions); with it, one stream\n"
      "(versions). One event per line, as the server serves it.\n"
      "\n"
      "  -f, --from N          start at position/version N (inclusive)\n"
      "  -b, --backward        newest first\n"
      "  -n, --limit N         at most N events\n"
      "  -t, --type T          only events of type T (repeatable: any of them)\n"
      "  -p, --prefix P        only events of streams whose name starts with P\n"
      "  -F, --follow          after the existing events, wait for new ones until\n"
      "                        interrupted (SIGINT/SIGTERM end it with exit 0)\n"
      COMMON_HELP },
    { "get", cmd_get, "print one event by id",
      "usage: evstore get ID\n\nPrints the event with this id; exit 1 if there is none.\n\n"
      COMMON_HELP },
    { "streams", cmd_streams, "list streams and their versions",
      "usage: evstore streams [--prefix P]\n\nOne {\"stream\":...,\"version\":N} per line, in name order.\n\n"
      "  -p, --prefix P        only streams whose name starts with P\n" COMMON_HELP },
    { "stats", cmd_stats, "print the store's statistics as one JSON object",
      "usage: evstore stats\n\n" COMMON_HELP },
    { "verify", cmd_verify, "check every checksum and index of a data directory",
      "usage: evstore verify [--json]\n"
      "\n"
      "Offline check of the data directory: every record's checksum and framing,\n"
      "the position chain across segments, every index against the log. Prints\n"
      "each problem as \"file:offset: problem\" and a summary line. Offline only:\n"
      "run it on the server's machine with --data, not through --url.\n"
      "Exit 0: clean; 1: damage found; 2: the check could not run.\n"
      "\n"
      "      --json            problems and summary as JSON Lines\n" COMMON_HELP },
    { "export", cmd_export, "write the global log as JSON Lines (for import or backup)",
      "usage: evstore export [--from P] [--to P] [-o FILE]\n"
      "\n"
      "Every event of the global log, in order, one served JSON line each.\n"
      "Shows progress on a terminal.\n"
      "\n"
      "  -f, --from P          first position (default 1)\n"
      "      --to P            last position (default: the end)\n"
      "  -o, --output FILE     write to FILE instead of stdout\n" COMMON_HELP },
    { "import", cmd_import, "append exported JSON Lines, validating everything first",
      "usage: evstore import [FILE|-]\n"
      "\n"
      "Appends the events of an export (each line names its stream; positions,\n"
      "versions and times are reassigned, ids are kept) in batches. The whole\n"
      "input is validated first: if any line is bad, every bad line is reported\n"
      "and nothing is written. Prints {\"events\",\"first_position\",\"last_position\"}.\n"
      "\n"
      "      --batch N         events per atomic append (default 1000)\n"
      WRITE_HELP COMMON_HELP },
    /* [backup] cmd_backup.c */
    { "backup", cmd_backup, "write a consistent backup archive (.tar.zst), full or incremental",
      "usage: evstore backup -o FILE [--since P]\n"
      "\n"
      "Writes a snapshot of the whole store as one archive: with --data the\n"
      "directory is opened read-only (it works while evstored writes to it);\n"
      "with --url the server streams it (GET /backup) and the file received\n"
      "is then checked completely. Appends go on meanwhile. FILE appears only\n"
      "when it is complete and durable (FILE.part until then). Prints\n"
      "{\"file\",\"since\",\"first_position\",\"last_position\",\"files\",\"bytes\",...}.\n"
      "Shows progress on a terminal.\n"
      "\n"
      "  -o, --output FILE     the archive to write (- for stdout: no fsync, no check)\n"
      "      --since P         an increment: only what came after position P (the\n"
      "                        last_position of the previous backup)\n"
      "  -l, --level N         zstd level 1-19 (default 3; --data only)\n"
      COMMON_HELP },
    { "restore", cmd_restore, "restore a full backup and its increments into a new directory",
      "usage: evstore restore FULL [INCREMENT...] --data NEWDIR\n"
      "\n"
      "Checks every archive (checksums, the position chain across increments),\n"
      "writes the segments into NEWDIR.restoring, opens that as a store (its\n"
      "indexes are rebuilt), verifies it like `evstore verify`, and only then\n"
      "renames it to NEWDIR. NEWDIR must not exist or be empty. On any problem\n"
      "nothing is left behind. Prints {\"data\",\"archives\",\"last_position\",...}.\n"
      "Shows progress on a terminal.\n"
      "\n"
      COMMON_HELP },
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const command *find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int cli_print_help(const char *name)
{
    if (name) {
        const command *c = find(name);
        if (!c)
            return -1;
        fputs(c->help, stdout);
        return 0;
    }
    fputs("usage: evstore [GLOBAL OPTIONS] COMMAND [ARGS]\n"
          "\n"
          "An event store's command-line tool: works on a data directory (--data)\n"
          "or talks to a running evstored (--url).\n"
          "\n"
          "commands:\n", stdout);
    for (size_t i = 0; i < NCOMMANDS; i++)
        printf("  %-9s %s\n", commands[i].name, commands[i].summary);
    fputs("  help      help on a command: evstore help COMMAND\n"
          "\n"
          "global options (also accepted after the command):\n"
          COMMON_HELP WRITE_HELP
          "      --version        print the version\n"
          "\n"
          "Output is JSON Lines on stdout; errors are one line on stderr.\n"
          "Exit status: 0 ok, 1 failed, 2 bad usage (verify: 1 damage, 2 could not check).\n",
          stdout);
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    cli_stop = 1;
}

/* SIGINT/SIGTERM ask loops to stop cleanly (close the store, exit 0 after
 * --follow). No SA_RESTART, so a blocking read of stdin returns EINTR and the
 * command can give up. A second ^C kills at once (SA_RESETHAND), which is
 * safe because appends are atomic and the store recovers on the next open.
 * SIGTERM keeps its handler: supervisors such as timeout(1) deliver it twice
 * (to the process and to its group), and that must not turn into a kill. */
static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    /* A shell starts background jobs with SIGINT ignored so ^C spares them;
     * keep it that way. */
    struct sigaction old;
    sa.sa_flags = SA_RESETHAND;
    if (sigaction(SIGINT, NULL, &old) != 0 || old.sa_handler != SIG_IGN)
        sigaction(SIGINT, &sa, NULL);
}

enum { OPT_VERSION = OPT_CMD };

int main(int argc, char **argv)
{
    cli_global g;
    args_global_init(&g);
    out_init(&g.pretty);
    if (args_global_env(&g) != 0)
        return CLI_EXIT_USAGE;

    static const struct option longopts[] = {
        ARGS_COMMON_LONG,
        ARGS_WRITE_LONG,
        { "version", no_argument, NULL, OPT_VERSION },
        { NULL, 0, NULL, 0 }
    };
    /* '+': stop at the command word; its own options are parsed by it. */
    args_begin();
    for (;;) {
        int c = args_next(&g, argc, argv, "+" ARGS_SHORT(""), longopts);
        if (c == ARGS_END)
            break;
        if (c == ARGS_ERROR)
            return CLI_EXIT_USAGE;
        if (c == ARGS_HELP) {
            cli_print_help(NULL);
            return out_close();
        }
        if (c == OPT_VERSION) {
            printf("evstore %d.%d.%d (libevstore %s)\n", EVS_VERSION_MAJOR, EVS_VERSION_MINOR,
                   EVS_VERSION_PATCH, evs_version_string());
            return out_close();
        }
    }
    if (optind >= argc) {
        cli_error("no command given (see 'evstore --help')");
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        const char *topic = optind + 1 < argc ? argv[optind + 1] : NULL;
        if (cli_print_help(topic) != 0) {
            cli_error("unknown command '%s' (see 'evstore --help')", topic);
            return CLI_EXIT_USAGE;
        }
        return out_close();
    }
    const command *cmd = find(name);
    if (!cmd) {
        cli_error("unknown command '%s' (see 'evstore --help')", name);
        return CLI_EXIT_USAGE;
    }
    g.command = cmd->name;
    install_signals();
    int rc = cmd->fn(&g, argc - optind, argv + optind);
    int orc = out_close();
    return rc ? rc : orc;
}
