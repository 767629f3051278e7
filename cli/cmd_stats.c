/*
 * cmd_stats.c — evstore stats: every evs_stats counter as one JSON object,
 * named as GET /stats names them where the two overlap (events, streams,
 * segments, bytes, position, fsync, appends, reads).
 *
 * The store is opened read-only, so the "since open" counters (appends,
 * reads, fsyncs, ...) describe this process and are normally 0; the totals
 * (events, streams, segments, bytes, position) describe the directory.
 *
 * With --url the server's own GET /stats object is printed as it is: its
 * counters describe the server process, and it has fields (uptime, watchers,
 * connections, status) that evs_stats does not.
 */
#include <stdio.h>

#include "args.h"
#include "backend.h"
#include "output.h"

static int print_line(void *ctx, const cli_line *line)
{
    (void)ctx;
    return out_json(line->json, line->len) ? 1 : 0;
}

static void field(jbuf *b, const char *name, uint64_t v)
{
    jb_puts(b, ",\"");
    jb_puts(b, name);
    jb_puts(b, "\":");
    jb_u64(b, v);
}

int cmd_stats(cli_global *g, int argc, char **argv)
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
    if (argc - optind != 0)
        return args_usage(g, "unexpected argument '%s'", argv[optind]);

    cli_backend *b = NULL;
    int exit_code = cli_backend_open(g, CLI_OPEN_READ, &b);
    if (exit_code)
        return exit_code;
    if (b->raw_stats) {
        int rc = b->raw_stats(b, print_line, NULL);
        if (rc < 0)
            cli_backend_error(b, rc, "stats");
        if (cli_backend_close(b) != 0 || rc)
            return CLI_EXIT_FAIL;   /* rc > 0: the write failed; out_close reports it */
        return 0;
    }
    evs_stats st;
    int rc = b->stats(b, &st);
    if (rc) {
        cli_backend_error(b, rc, "stats");
        cli_backend_close(b);
        return CLI_EXIT_FAIL;
    }
    char fsync[32];
    switch (st.sync) {
    case EVS_SYNC_INTERVAL:
        snprintf(fsync, sizeof fsync, "interval:%u", (unsigned)g->sync_interval_ms);
        break;
    case EVS_SYNC_NEVER: snprintf(fsync, sizeof fsync, "never"); break;
    default: snprintf(fsync, sizeof fsync, "always"); break;
    }
    jbuf o;
    jb_init(&o);
    jb_puts(&o, "{\"events\":");
    jb_u64(&o, st.events);
    field(&o, "streams", st.streams);
    field(&o, "segments", st.segments);
    field(&o, "bytes", st.bytes);
    field(&o, "position", st.position);
    jb_puts(&o, ",\"fsync\":\"");
    jb_puts(&o, fsync);
    jb_puts(&o, "\"");
    field(&o, "appends", st.appends);
    field(&o, "appended_events", st.appended_events);
    field(&o, "reads", st.reads);
    field(&o, "fsyncs", st.fsyncs);
    field(&o, "group_commits", st.group_commits);
    field(&o, "recovered_truncated_bytes", st.recovered_truncated_bytes);
    field(&o, "index_checkpoint_position", st.index_checkpoint_position);
    jb_puts(&o, st.read_only ? ",\"read_only\":true" : ",\"read_only\":false");
    jb_puts(&o, st.failed ? ",\"failed\":true}" : ",\"failed\":false}");
    if (o.oom) {
        cli_error("out of memory");
        exit_code = CLI_EXIT_FAIL;
    } else if (out_json(o.p, o.len) != 0) {
        exit_code = CLI_EXIT_FAIL;
    }
    jb_free(&o);
    if (cli_backend_close(b) != 0)
        exit_code = CLI_EXIT_FAIL;
    return exit_code;
}
