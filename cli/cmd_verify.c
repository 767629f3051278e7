/*
 * cmd_verify.c — evstore verify: the offline integrity check of a data
 * directory (evs_verify), as a report a person or a script can act on.
 *
 * Exit codes differ from the other commands on purpose: 1 means "the check
 * ran and found damage", so "the check could not run" is 2.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "backend.h"
#include "output.h"
#include "progress.h"

enum { OPT_JSON = OPT_CMD };

typedef struct verify_ctx {
    int json;              /* --json */
    jbuf line;             /* reused per problem */
    cli_progress progress; /* on stderr when it is a terminal */
    const char *phase;     /* of the progress line */
    char label[48];
} verify_ctx;

static int on_progress(void *arg, const evs_progress *p)
{
    verify_ctx *v = arg;
    if (!v->phase || strcmp(v->phase, p->phase) != 0) {
        if (v->phase)
            progress_done(&v->progress);
        v->phase = p->phase;
        if (!strcmp(p->phase, "log"))
            snprintf(v->label, sizeof v->label, "verify");
        else
            snprintf(v->label, sizeof v->label, "verify (%s)", p->phase);
        progress_start(&v->progress, v->label, p->events_total, p->bytes_total, 1);
    }
    progress_totals(&v->progress, p->events_total, p->bytes_total);
    progress_update(&v->progress, p->events, p->bytes);
    return cli_stop ? 1 : 0;
}

static void on_problem(void *arg, const char *file, uint64_t offset, const char *problem)
{
    verify_ctx *v = arg;
    progress_clear(&v->progress);   /* the report goes to stdout, maybe the same terminal */
    jb_reset(&v->line);
    if (v->json) {
        jb_puts(&v->line, "{\"file\":");
        jb_str(&v->line, file, strlen(file));
        jb_puts(&v->line, ",\"offset\":");
        jb_u64(&v->line, offset);
        jb_puts(&v->line, ",\"problem\":");
        jb_str(&v->line, problem, strlen(problem));
        jb_puts(&v->line, "}");
        if (!v->line.oom)
            out_json(v->line.p, v->line.len);
    } else {
        /* file:offset: problem — the shape compilers use, so editors and
         * grep -n habits carry over. */
        jb_puts(&v->line, file);
        jb_puts(&v->line, ":");
        jb_u64(&v->line, offset);
        jb_puts(&v->line, ": ");
        jb_puts(&v->line, problem);
        if (!v->line.oom)
            out_text(v->line.p, v->line.len);
    }
}

int cmd_verify(cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        ARGS_COMMON_LONG,
        { "json", no_argument, NULL, OPT_JSON },
        { NULL, 0, NULL, 0 }
    };
    verify_ctx v = { 0 };
    int c;
    args_begin();
    while ((c = args_next(g, argc, argv, ARGS_SHORT(""), longopts)) != ARGS_END) {
        switch (c) {
        case ARGS_HELP:
            cli_print_help(g->command);
            return 0;
        case OPT_JSON:
            v.json = 1;
            break;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 0)
        return args_usage(g, "unexpected argument '%s' (the directory is given with --data)",
                          argv[optind]);
    if (g->url_from_flag || (g->url && !g->data_from_flag)) {
        cli_error("verify: is offline only: it checks a data directory (--data DIR) on the "
                  "machine that holds it and cannot run through a server (--url)");
        return CLI_EXIT_USAGE;
    }

    evs_options opt;
    cli_store_options(g, CLI_OPEN_READ, &opt);
    jb_init(&v.line);
    uint64_t problems = 0;
    evs_verify_options vo;
    evs_verify_options_init(&vo);
    vo.problem = on_problem;
    vo.problem_ctx = &v;
    vo.progress = on_progress;
    vo.progress_ctx = &v;
    int rc = evs_verify_ex(g->data_dir, &opt, &vo, &problems);
    if (v.phase)
        progress_done(&v.progress);
    jb_free(&v.line);
    if (rc == -ECANCELED && cli_stop) {
        cli_error("verify: interrupted; %s was not checked completely", g->data_dir);
        return 130;
    }
    if (rc) {
        cli_error_rc(rc, "verify: cannot check %s", g->data_dir);
        return CLI_EXIT_USAGE;
    }
    char summary[600];
    int n;
    if (v.json) {
        jbuf s;
        jb_init(&s);
        jb_puts(&s, "{\"data\":");
        jb_str(&s, g->data_dir, strlen(g->data_dir));
        jb_puts(&s, problems ? ",\"ok\":false,\"problems\":" : ",\"ok\":true,\"problems\":");
        jb_u64(&s, problems);
        jb_puts(&s, "}");
        if (!s.oom)
            out_json(s.p, s.len);
        jb_free(&s);
    } else {
        if (problems)
            n = snprintf(summary, sizeof summary, "%s: %llu problem%s found", g->data_dir,
                         (unsigned long long)problems, problems == 1 ? "" : "s");
        else
            n = snprintf(summary, sizeof summary, "%s: ok, no problems found", g->data_dir);
        out_text(summary, n > 0 && (size_t)n < sizeof summary ? (size_t)n : strlen(summary));
    }
    return problems ? CLI_EXIT_FAIL : 0;
}
