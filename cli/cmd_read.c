/*
 * cmd_read.c — evstore read [STREAM]: the global log or one stream, forwards
 * or backwards, filtered, and with --follow live until SIGINT/SIGTERM.
 *
 * The store is opened read-only (no lock), so this works next to a running
 * server and, with --follow, tails what that server writes.
 */
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "backend.h"
#include "output.h"

typedef struct read_ctx {
    uint64_t printed;     /* events written so far */
    uint64_t limit;       /* 0: none */
    int write_failed;     /* stdout failed: stop, out_close reports it */
} read_ctx;

static int on_event(void *arg, const cli_line *ev)
{
    read_ctx *r = arg;
    if (!ev) {
        /* Caught up while following: whoever reads our pipe should see the
         * events now, not when a 64 KiB buffer fills. */
        if (out_flush() != 0) {
            r->write_failed = 1;
            return 1;
        }
        return cli_stop ? 1 : 0;
    }
    if (out_json(ev->json, ev->len) != 0) {
        r->write_failed = 1;
        return 1;
    }
    r->printed++;
    /* With --follow the iterator never ends by itself; the limit is ours. */
    if (r->limit && r->printed >= r->limit)
        return 1;
    return cli_stop ? 1 : 0;
}

int cmd_read(cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        ARGS_COMMON_LONG,
        { "from", required_argument, NULL, 'f' },
        { "backward", no_argument, NULL, 'b' },
        { "limit", required_argument, NULL, 'n' },
        { "type", required_argument, NULL, 't' },
        { "prefix", required_argument, NULL, 'p' },
        { "follow", no_argument, NULL, 'F' },
        { NULL, 0, NULL, 0 }
    };
    evs_read_options ro;
    evs_read_options_init(&ro);
    int follow = 0;
    /* Types point into argv; argc bounds how many there can be. */
    const char **types = calloc((size_t)argc + 1, sizeof *types);
    if (!types) {
        cli_error("out of memory");
        return CLI_EXIT_FAIL;
    }
    size_t ntypes = 0;
    int exit_code = CLI_EXIT_USAGE;
    cli_backend *b = NULL;
    int c;
    args_begin();
    while ((c = args_next(g, argc, argv, ARGS_SHORT("f:bn:t:p:F"), longopts)) != ARGS_END) {
        switch (c) {
        case ARGS_HELP:
            cli_print_help(g->command);
            exit_code = 0;
            goto out;
        case 'f':
            if (args_u64(g, "--from", optarg, &ro.from) != 0)
                goto out;
            break;
        case 'b':
            ro.backward = 1;
            break;
        case 'n':
            if (args_u64(g, "--limit", optarg, &ro.limit) != 0)
                goto out;
            break;
        case 't':
            if (!*optarg || strlen(optarg) > 255) {
                args_usage(g, "--type: a type is 1 to 255 bytes");
                goto out;
            }
            types[ntypes++] = optarg;
            break;
        case 'p':
            ro.filter.stream_prefix = optarg;
            break;
        case 'F':
            follow = 1;
            break;
        default:
            goto out;
        }
    }
    if (argc - optind > 1) {
        args_usage(g, "give at most one STREAM (without one the global log is read)");
        goto out;
    }
    if (argc - optind == 1) {
        ro.stream = argv[optind];
        if (evs_validate_stream_name(ro.stream, strlen(ro.stream)) != 0) {
            args_usage(g, "'%s' is not a valid stream name", ro.stream);
            goto out;
        }
    }
    if (follow && ro.backward) {
        args_usage(g, "--follow reads forwards; it cannot be combined with --backward");
        goto out;
    }
    ro.filter.types = ntypes ? types : NULL;
    ro.filter.ntypes = ntypes;

    if ((exit_code = cli_backend_open(g, CLI_OPEN_READ, &b)) != 0)
        goto out;
    read_ctx r = { .limit = ro.limit };
    int rc = b->read(b, &ro, follow, on_event, &r);
    if (rc < 0) {
        if (rc == EVS_ENOTFOUND && ro.stream)
            cli_error("stream '%s' not found (it has no events)", ro.stream);
        else if (rc == EVS_ECORRUPT)
            cli_error("reading %s%s: %s (%s); 'evstore verify' shows the damage",
                      ro.stream ? "stream " : "", ro.stream ? ro.stream : "the global log",
                      evs_strerror(rc), evs_errname(rc));
        else
            cli_backend_error(b, rc, "reading %s%s", ro.stream ? "stream " : "",
                              ro.stream ? ro.stream : "the global log");
        exit_code = CLI_EXIT_FAIL;
    } else if (r.write_failed) {
        exit_code = CLI_EXIT_FAIL;   /* out_close says what failed */
    } else if (cli_stop && !follow) {
        /* An interrupted one-shot read printed only a part: say so. */
        cli_error("read: interrupted after %llu events", (unsigned long long)r.printed);
        exit_code = 130;
    } else {
        exit_code = 0;   /* --follow ends with SIGINT/SIGTERM: that is success */
    }
out:
    if (cli_backend_close(b) != 0 && exit_code == 0)
        exit_code = CLI_EXIT_FAIL;
    free(types);
    return exit_code;
}
