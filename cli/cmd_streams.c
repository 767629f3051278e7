/*
 * cmd_streams.c — evstore streams [--prefix P]: the streams with their
 * versions, one {"stream":…,"version":N} per line, in name order (the same
 * lines as GET /streams).
 */
#include <string.h>

#include "args.h"
#include "backend.h"
#include "output.h"

static int print_stream(void *ctx, const char *name, uint64_t version)
{
    jbuf *b = ctx;
    jb_reset(b);
    jb_puts(b, "{\"stream\":");
    jb_str(b, name, strlen(name));
    jb_puts(b, ",\"version\":");
    jb_u64(b, version);
    jb_puts(b, "}");
    if (b->oom)
        return EVS_ENOMEM;
    return out_json(b->p, b->len) ? 1 : 0;
}

int cmd_streams(cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        ARGS_COMMON_LONG,
        { "prefix", required_argument, NULL, 'p' },
        { NULL, 0, NULL, 0 }
    };
    const char *prefix = NULL;
    int c;
    args_begin();
    while ((c = args_next(g, argc, argv, ARGS_SHORT("p:"), longopts)) != ARGS_END) {
        switch (c) {
        case ARGS_HELP:
            cli_print_help(g->command);
            return 0;
        case 'p':
            prefix = optarg;
            break;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 0)
        return args_usage(g, "unexpected argument '%s' (a prefix is given with --prefix)",
                          argv[optind]);

    cli_backend *b = NULL;
    int exit_code = cli_backend_open(g, CLI_OPEN_READ, &b);
    if (exit_code)
        return exit_code;
    jbuf buf;
    jb_init(&buf);
    int rc = b->streams(b, prefix, print_stream, &buf);
    if (rc < 0) {
        cli_backend_error(b, rc, "listing streams");
        exit_code = CLI_EXIT_FAIL;
    } else if (rc > 0) {
        exit_code = CLI_EXIT_FAIL;   /* the write failed; out_close reports it */
    }
    jb_free(&buf);
    if (cli_backend_close(b) != 0)
        exit_code = CLI_EXIT_FAIL;
    return exit_code;
}
