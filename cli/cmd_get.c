/*
 * cmd_get.c — evstore get ID: one event by its id.
 */
#include <string.h>

#include "args.h"
#include "backend.h"
#include "output.h"

static int print_event(void *ctx, const cli_line *ev)
{
    (void)ctx;
    return out_json(ev->json, ev->len) ? 1 : 0;
}

int cmd_get(cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = { ARGS_COMMON_LONG, { NULL, 0, NULL, 0 } };
    int c;
    args_begin();
    while ((c = args_next(g, argc, argv, ARGS_SHORT(""), longopts)) != ARGS_END) {
        if (c == ARGS_HELP) {
            cli_print_help(g->command);
            return 0;
        }
        return CLI_EXIT_USAGE;
    }
    if (argc - optind != 1)
        return args_usage(g, "give exactly one event ID");
    const char *text = argv[optind];
    uint8_t id[16];
    if (evs_uuid_parse(text, strlen(text), id) != 0)
        return args_usage(g, "'%s' is not an event id (a UUID: 8-4-4-4-12 hex digits)", text);

    cli_backend *b = NULL;
    int exit_code = cli_backend_open(g, CLI_OPEN_READ, &b);
    if (exit_code)
        return exit_code;
    int rc = b->get(b, id, print_event, NULL);
    if (rc == EVS_ENOTFOUND) {
        char canon[37];
        evs_uuid_format(id, canon);
        cli_error("event %s not found", canon);
        exit_code = CLI_EXIT_FAIL;
    } else if (rc < 0) {
        cli_backend_error(b, rc, "get %s", text);
        exit_code = CLI_EXIT_FAIL;
    } else if (rc > 0) {
        exit_code = CLI_EXIT_FAIL;   /* the write failed; out_close reports it */
    }
    if (cli_backend_close(b) != 0)
        exit_code = CLI_EXIT_FAIL;
    return exit_code;
}
