/*
 * cmd_export.c — evstore export: the global log as JSON Lines, in position
 * order, in the served form (which evstore import reads back).
 *
 * The export is a snapshot: it ends at the position committed when it
 * started (or --to), so a writer appending meanwhile cannot make it run
 * forever and the line count is known up front for the progress ETA.
 */
#include <string.h>

#include "args.h"
#include "backend.h"
#include "output.h"
#include "progress.h"

enum { OPT_TO = OPT_CMD };

typedef struct export_ctx {
    cli_progress progress;   /* on stderr when it is a terminal */
    uint64_t count;          /* lines written */
    int write_failed;        /* the output failed; out_close reports it */
} export_ctx;

static int on_event(void *arg, const cli_line *ev)
{
    export_ctx *x = arg;
    if (!ev)
        return 0;
    if (out_json(ev->json, ev->len) != 0) {
        x->write_failed = 1;
        return 1;
    }
    x->count++;
    progress_update(&x->progress, x->count, out_bytes());
    return cli_stop ? 1 : 0;
}

int cmd_export(cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        ARGS_COMMON_LONG,
        { "from", required_argument, NULL, 'f' },
        { "to", required_argument, NULL, OPT_TO },
        { "output", required_argument, NULL, 'o' },
        { NULL, 0, NULL, 0 }
    };
    uint64_t from = 1, to = 0;
    const char *output = NULL;
    int c;
    args_begin();
    while ((c = args_next(g, argc, argv, ARGS_SHORT("f:o:"), longopts)) != ARGS_END) {
        switch (c) {
        case ARGS_HELP:
            cli_print_help(g->command);
            return 0;
        case 'f':
            if (args_u64(g, "--from", optarg, &from) != 0)
                return CLI_EXIT_USAGE;
            if (from == 0)
                from = 1;   /* positions start at 1; 0 means "the start" as in read */
            break;
        case OPT_TO:
            if (args_u64(g, "--to", optarg, &to) != 0)
                return CLI_EXIT_USAGE;
            if (to == 0)
                return args_usage(g, "--to: positions start at 1");
            break;
        case 'o':
            output = optarg;
            break;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 0)
        return args_usage(g, "unexpected argument '%s'", argv[optind]);
    if (to && to < from)
        return args_usage(g, "--to %llu is before --from %llu", (unsigned long long)to,
                          (unsigned long long)from);

    cli_backend *b = NULL;
    int exit_code = cli_backend_open(g, CLI_OPEN_READ, &b);
    if (exit_code)
        return exit_code;
    uint64_t end = b->position(b);
    if (to && to < end)
        end = to;
    export_ctx x;
    memset(&x, 0, sizeof x);
    int rc = 0;
    if (output && (rc = out_open_file(output)) != 0) {
        cli_error_rc(rc, "export: cannot create %s", output);
        cli_backend_close(b);
        return CLI_EXIT_FAIL;
    }
    if (end >= from) {
        evs_read_options ro;
        evs_read_options_init(&ro);
        ro.from = from;
        ro.limit = end - from + 1;   /* positions are contiguous: the count is exact */
        /* A progress line beside events printed on the same terminal would
         * garble both; it is for exports redirected to a file. */
        progress_start(&x.progress, "export", ro.limit, 0, !out_is_tty());
        rc = b->read(b, &ro, 0, on_event, &x);
        progress_done(&x.progress);
    }
    if (rc < 0) {
        cli_backend_error(b, rc, "export: reading the global log after %llu events",
                          (unsigned long long)x.count);
        exit_code = CLI_EXIT_FAIL;
    } else if (x.write_failed) {
        exit_code = CLI_EXIT_FAIL;
    } else if (cli_stop) {
        cli_error("export: interrupted after %llu events; the output is incomplete",
                  (unsigned long long)x.count);
        exit_code = 130;
    }
    if (cli_backend_close(b) != 0)
        exit_code = CLI_EXIT_FAIL;
    return exit_code;
}
