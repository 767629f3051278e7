/*
 * cmd_backup.c — evstore backup and evstore restore.
 *
 *   evstore backup -o FILE [--since P]    (--data DIR, or --url URL)
 *   evstore restore FILE [FILE...] --data NEWDIR
 *
 * backup writes FILE.part, fsyncs it, renames it to FILE and fsyncs the
 * directory, so FILE is either a complete archive or absent (a failed or
 * interrupted backup removes FILE.part and leaves an older FILE alone).
 * With --data the store is opened read-only (no lock: it works beside a
 * running evstored, following it); with --url the server streams the
 * archive, and the downloaded file is then checked completely
 * (evs_backup_inspect) before it is renamed into place. "-o -" writes to
 * stdout (no fsync, no rename: for pipes).
 *
 * restore hands the archives to evs_restore, which checks everything before
 * it creates NEWDIR (see evstore.h).
 *
 * Both print one JSON line describing the result, and progress on a
 * terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "backend.h"
#include "backup_http.h"
#include "output.h"
#include "progress.h"

enum { OPT_SINCE = OPT_CMD };

/* ---- progress ---- */

typedef struct prog {
    cli_progress p;
    const char *verb;          /* "backup" or "restore" */
    const char *phase;         /* the phase being drawn, or NULL */
    char label[48];
    int allow;                 /* draw at all (stderr a terminal, stdout not the same) */
} prog;

/* The label of a phase: evs_restore ends with evs_verify's phases. */
static void phase_label(prog *g, const char *phase)
{
    if (!strcmp(g->verb, "restore") && !strcmp(phase, "log"))
        snprintf(g->label, sizeof g->label, "%s (verify)", g->verb);
    else if (!strcmp(g->verb, "restore") && !strcmp(phase, "projections"))
        snprintf(g->label, sizeof g->label, "%s (verify projections)", g->verb);
    else
        snprintf(g->label, sizeof g->label, "%s (%s)", g->verb, phase);
}

static int on_progress(void *ctx, const evs_progress *p)
{
    prog *g = ctx;
    if (!g->phase || strcmp(g->phase, p->phase) != 0) {
        if (g->phase) progress_done(&g->p);
        g->phase = p->phase;
        phase_label(g, p->phase);
        progress_start(&g->p, g->label, p->events_total, p->bytes_total, g->allow);
        if (!strcmp(p->phase, "open") && g->p.enabled) {
            /* no counts here: say what is happening instead */
            fprintf(stderr, "%s: opening the restored store (rebuilding its indexes)...\n", g->verb);
            g->p.enabled = 0;
        }
    }
    progress_totals(&g->p, p->events_total, p->bytes_total);
    progress_update(&g->p, p->events, p->bytes);
    return cli_stop ? 1 : 0;
}

static void prog_end(prog *g)
{
    if (g->phase) progress_done(&g->p);
    g->phase = NULL;
}

/* ---- output ---- */

static void print_info(const char *key, const char *value, const evs_backup_info *bi, int archives)
{
    jbuf b;
    jb_init(&b);
    jb_puts(&b, "{\"");
    jb_puts(&b, key);
    jb_puts(&b, "\":");
    jb_str(&b, value, strlen(value));
    if (archives) {
        jb_puts(&b, ",\"archives\":");
        jb_u64(&b, (uint64_t)archives);
    } else {
        jb_puts(&b, ",\"since\":");
        jb_u64(&b, bi->since);
    }
    jb_puts(&b, ",\"first_position\":");
    jb_u64(&b, bi->first_position);
    jb_puts(&b, ",\"last_position\":");
    jb_u64(&b, bi->last_position);
    jb_puts(&b, ",\"files\":");
    jb_u64(&b, bi->files);
    jb_puts(&b, ",\"bytes\":");
    jb_u64(&b, bi->bytes);
    jb_puts(&b, ",\"archive_bytes\":");
    jb_u64(&b, bi->archive_bytes);
    jb_puts(&b, ",\"store_id\":");
    jb_str(&b, bi->store_id, strlen(bi->store_id));
    char t[28];
    evs_time_format(bi->created_us, t);
    jb_puts(&b, ",\"created\":");
    jb_str(&b, t, strlen(t));
    jb_puts(&b, "}");
    if (!b.oom) out_json(b.p, b.len);
    jb_free(&b);
}

/* ---- the output file ---- */

/* fsync the directory holding path (after a rename into it). */
static int sync_parent(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* Durable and complete, or not there: fsync FILE.part, rename it over FILE. */
static int finish_file(int fd, const char *part, const char *path)
{
    if (fsync(fd) != 0) return -errno;
    if (close(fd) != 0) return -errno;
    if (rename(part, path) != 0) return -errno;
    return sync_parent(path);
}

int cmd_backup(cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        ARGS_COMMON_LONG,
        { "output", required_argument, NULL, 'o' },
        { "since", required_argument, NULL, OPT_SINCE },
        { "level", required_argument, NULL, 'l' },
        { NULL, 0, NULL, 0 }
    };
    const char *output = NULL;
    uint64_t since = 0, level = 3;
    int c;
    args_begin();
    while ((c = args_next(g, argc, argv, ARGS_SHORT("o:l:"), longopts)) != ARGS_END) {
        switch (c) {
        case ARGS_HELP:
            cli_print_help(g->command);
            return 0;
        case 'o':
            output = optarg;
            break;
        case OPT_SINCE:
            if (args_u64(g, "--since", optarg, &since) != 0)
                return CLI_EXIT_USAGE;
            break;
        case 'l':
            if (args_u64(g, "--level", optarg, &level) != 0)
                return CLI_EXIT_USAGE;
            if (level < 1 || level > 19)
                return args_usage(g, "--level: zstd levels are 1 to 19");
            break;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 0)
        return args_usage(g, "unexpected argument '%s'", argv[optind]);
    if (!output)
        return args_usage(g, "name the archive to write with -o FILE (or -o - for stdout)");
    if (g->url_from_flag && g->data_from_flag) {
        cli_error("--data and --url cannot be used together: pick a directory or a server");
        return CLI_EXIT_USAGE;
    }
    int remote = g->url && !g->data_from_flag;
    int to_stdout = strcmp(output, "-") == 0;
    if (to_stdout && isatty(STDOUT_FILENO)) {
        cli_error("backup: refusing to write a binary archive to a terminal; redirect it or use -o FILE");
        return CLI_EXIT_USAGE;
    }
    char part[4096];
    if (!to_stdout && (size_t)snprintf(part, sizeof part, "%s.part", output) >= sizeof part)
        return args_usage(g, "-o: path too long");

    /* the store first (a local open can fail for reasons worth seeing before a file appears) */
    cli_backend *b = NULL;
    evs_store *s = NULL;
    int exit_code = 0;
    if (!remote) {
        if ((exit_code = cli_backend_local_open(g, CLI_OPEN_READ, &b)) != 0)
            return exit_code;
        s = cli_backend_local_store(b);
    }
    int fd = STDOUT_FILENO;
    if (!to_stdout && (fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        cli_error_rc(-errno, "backup: cannot create %s", part);
        cli_backend_close(b);
        return CLI_EXIT_FAIL;
    }
    prog pg;
    memset(&pg, 0, sizeof pg);
    pg.verb = "backup";
    pg.allow = !to_stdout || !out_is_tty();
    evs_backup_info bi;
    memset(&bi, 0, sizeof bi);
    int rc = 0;
    if (remote) {
        char err[1024];
        uint64_t got = 0;
        snprintf(pg.label, sizeof pg.label, "backup (download)");
        progress_start(&pg.p, pg.label, 0, 0, pg.allow);
        pg.phase = "download";
        exit_code = cli_http_backup(g, since, fd, &pg.p, &got, err, sizeof err);
        prog_end(&pg);
        if (exit_code) {
            cli_error("backup: %s: %s", g->url, err);
        } else if (!to_stdout) {
            /* the file, not the transfer, is what restore will read: check all of it */
            evs_backup_options bo;
            evs_backup_options_init(&bo);
            bo.progress = on_progress;
            bo.progress_ctx = &pg;
            evs_options opt;
            cli_store_options(g, CLI_OPEN_READ, &opt);
            rc = evs_backup_inspect(part, &opt, 1, &bo, &bi);
            prog_end(&pg);
            if (rc) {
                cli_error("backup: the downloaded archive is not intact: %s", bi.message);
                exit_code = CLI_EXIT_FAIL;
            } else if (bi.since != since) {
                cli_error("backup: the server sent an archive since %llu, not %llu",
                          (unsigned long long)bi.since, (unsigned long long)since);
                exit_code = CLI_EXIT_FAIL;
            }
        } else {
            bi.since = since;
            bi.archive_bytes = got;
        }
    } else {
        evs_backup_options bo;
        evs_backup_options_init(&bo);
        bo.level = (int)level;
        bo.progress = on_progress;
        bo.progress_ctx = &pg;
        rc = evs_backup(s, fd, since, &bo, &bi);
        prog_end(&pg);
        if (rc == -ECANCELED && cli_stop) {
            cli_error("backup: interrupted; no archive was written");
            exit_code = 130;
        } else if (rc) {
            cli_error("backup: %s", bi.message[0] ? bi.message : evs_strerror(rc));
            exit_code = CLI_EXIT_FAIL;
        }
    }
    if (!to_stdout) {
        if (exit_code == 0 && (rc = finish_file(fd, part, output)) != 0) {
            cli_error_rc(rc, "backup: cannot make %s durable", output);
            exit_code = CLI_EXIT_FAIL;
            unlink(part);
        } else if (exit_code) {
            close(fd);
            unlink(part);
        }
    }
    if (cli_backend_close(b) != 0 && exit_code == 0)
        exit_code = CLI_EXIT_FAIL;
    if (exit_code == 0)
        print_info("file", output, &bi, 0);
    return exit_code;
}

int cmd_restore(cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        ARGS_COMMON_LONG,
        ARGS_WRITE_LONG,
        { NULL, 0, NULL, 0 }
    };
    int c;
    args_begin();
    while ((c = args_next(g, argc, argv, ARGS_SHORT(""), longopts)) != ARGS_END) {
        switch (c) {
        case ARGS_HELP:
            cli_print_help(g->command);
            return 0;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    int n = argc - optind;
    if (n < 1)
        return args_usage(g, "name the archives to restore: a full backup, then its increments in order");
    if (g->url_from_flag) {
        cli_error("restore: writes a new data directory on this machine (--data NEWDIR); it does not "
                  "go through a server (--url)");
        return CLI_EXIT_USAGE;
    }
    if (!g->data_from_flag && !getenv("EVSTORE_DATA"))
        return args_usage(g, "name the new data directory with --data NEWDIR");
    evs_options opt;
    cli_store_options(g, CLI_OPEN_WRITE, &opt);
    prog pg;
    memset(&pg, 0, sizeof pg);
    pg.verb = "restore";
    pg.allow = 1;   /* stdout gets one line at the end, after the progress line is done */
    evs_backup_options bo;
    evs_backup_options_init(&bo);
    bo.progress = on_progress;
    bo.progress_ctx = &pg;
    evs_backup_info ri;
    int rc = evs_restore((const char *const *)(argv + optind), (size_t)n, g->data_dir, &opt, &bo, &ri);
    prog_end(&pg);
    if (rc == -ECANCELED && cli_stop) {
        cli_error("restore: interrupted; %s was not created", g->data_dir);
        return 130;
    }
    if (rc) {
        cli_error("restore: %s", ri.message[0] ? ri.message : evs_strerror(rc));
        return CLI_EXIT_FAIL;
    }
    print_info("data", g->data_dir, &ri, n);
    return 0;
}
