/*
 * cmd_append.c — evstore append STREAM: every event on stdin (JSON Lines)
 * becomes ONE atomic append, checked against --expected-version. Either all
 * lines are stored, contiguously, or none is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "backend.h"
#include "input.h"
#include "output.h"

enum { OPT_EXPECTED = OPT_CMD };

/* The append response of SPEC §4, so scripts see the same shape from the
 * CLI as from the server. */
static void print_result(const char *stream, const evs_commit *c, size_t n,
                         const evs_append_result *res)
{
    jbuf b;
    jb_init(&b);
    jb_puts(&b, "{\"first_position\":");
    jb_u64(&b, res->first_position);
    jb_puts(&b, ",\"last_position\":");
    jb_u64(&b, res->last_position);
    jb_puts(&b, ",\"events\":[");
    for (size_t i = 0; i < n; i++) {
        char id[37], t[28];
        evs_uuid_format(c[i].id, id);
        evs_time_format(c[i].time_us, t);
        jb_puts(&b, i ? ",{\"id\":\"" : "{\"id\":\"");
        jb_puts(&b, id);
        jb_puts(&b, "\",\"stream\":");
        jb_str(&b, stream, strlen(stream));
        jb_puts(&b, ",\"version\":");
        jb_u64(&b, c[i].version);
        jb_puts(&b, ",\"position\":");
        jb_u64(&b, c[i].position);
        jb_puts(&b, ",\"time\":\"");
        jb_puts(&b, t);
        jb_puts(&b, "\"}");
    }
    jb_puts(&b, "]}");
    if (b.oom)
        cli_error("out of memory");
    else
        out_json(b.p, b.len);
    jb_free(&b);
}

int cmd_append(cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        ARGS_COMMON_LONG,
        ARGS_WRITE_LONG,
        { "expected-version", required_argument, NULL, 'e' },
        { NULL, 0, NULL, 0 }
    };
    int64_t expected = EVS_EXPECT_ANY;
    int c;
    args_begin();
    while ((c = args_next(g, argc, argv, ARGS_SHORT("e:"), longopts)) != ARGS_END) {
        switch (c) {
        case ARGS_HELP:
            cli_print_help(g->command);
            return 0;
        case 'e':
            if (evs_parse_expected(optarg, &expected) != 0)
                return args_usage(g, "--expected-version: '%s' is not any, no_stream, exists "
                                     "or a number of events", optarg);
            break;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 1)
        return args_usage(g, argc - optind ? "give exactly one STREAM" : "which STREAM?");
    const char *stream = argv[optind];
    if (evs_validate_stream_name(stream, strlen(stream)) != 0)
        return args_usage(g, "'%s' is not a valid stream name (1-255 bytes of UTF-8, no "
                             "control characters)", stream);

    if (isatty(STDIN_FILENO))
        cli_error("note: reading events from the terminal, one JSON object per line; "
                  "end with Ctrl-D");
    int exit_code = CLI_EXIT_FAIL;
    cli_backend *b = NULL;
    evs_parsed *parsed = NULL;
    evs_commit *commits = NULL;
    cli_input in;
    int rc = input_load(NULL, &in);
    if (rc) {
        cli_error_rc(rc, "append: cannot read stdin");
        return CLI_EXIT_FAIL;
    }
    char err[512] = "";
    rc = evs_parse_events(in.data, in.len, EVS_PARSE_NDJSON, 0, &parsed, err, sizeof err);
    if (rc) {
        if (err[0])
            cli_error("append: stdin: %s (nothing was appended)", err);
        else
            cli_error_rc(rc, "append: stdin");
        goto out;
    }
    size_t n = 0;
    const evs_event_in *events = evs_parsed_events(parsed, &n);
    if (n == 0) {
        cli_error("append: no events on stdin (one JSON object per line)");
        goto out;
    }
    commits = calloc(n, sizeof *commits);
    if (!commits) {
        cli_error("out of memory");
        goto out;
    }
    if ((exit_code = cli_backend_open(g, CLI_OPEN_WRITE, &b)) != 0)
        goto out;
    exit_code = CLI_EXIT_FAIL;
    evs_append_result res;
    memset(&res, 0, sizeof res);
    rc = b->append(b, stream, expected, events, n, commits, &res);
    if (rc) {
        cli_backend_append_error(b, rc, &res, stream, "append");
        goto out;
    }
    if (res.replayed)
        cli_error("note: these events (by id) were already stored by this same append; "
                  "nothing new was written");
    print_result(stream, commits, n, &res);
    exit_code = 0;
out:
    if (cli_backend_close(b) != 0)
        exit_code = CLI_EXIT_FAIL;
    free(commits);
    evs_parsed_free(parsed);
    input_free(&in);
    return exit_code;
}
