/*
 * test_http_api_doc.c — keeps docs/API.md honest: every ```console block
 * of the document is run, in order, against one fresh evstored, and each
 * command's output must match what the document shows.
 *
 * In a console block a line starting with "$ " is a command (a trailing
 * backslash continues it on the next line); the lines up to the next command
 * or the end of the block are its expected output (stdout and stderr).
 * "localhost:2114" in commands is replaced by the test server's address.
 * Values that differ from run to run are normalised on both sides before
 * comparing: UUIDs, RFC 3339 times, HTTP Date headers, uptime, bytes on
 * disk (they follow the file format) and a few counters of /stats, the
 * version string. Blocks marked ```sh or ```text
 * are illustrations and are not run.
 *
 * To refresh the outputs after an intended change of the API:
 *   EVS_API_DOC_UPDATE=/tmp/API.md build/tests/test_http_api_doc
 * writes the document with the new outputs there (review, then copy it over
 * docs/API.md). The source root is found from this file's path, or $EVS_SRC.
 */
#include <regex.h>

#include "../http/http_test.h"

static char doc_path[PATH_MAX];

static void find_doc(void)
{
    const char *src = getenv("EVS_SRC");
    if (src && *src) {
        snprintf(doc_path, sizeof doc_path, "%.2000s/docs/API.md", src);
        return;
    }
    char here[1024];
    snprintf(here, sizeof here, "%s", __FILE__);
    char *cut = strstr(here, "tests/unit/test_http_api_doc.c");
    if (cut) *cut = 0;
    else snprintf(here, sizeof here, "./");
    snprintf(doc_path, sizeof doc_path, "%sdocs/API.md", here);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    b[got] = 0;
    if (len) *len = got;
    return b;
}

/* A growable string. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->p = realloc(s->p, s->cap);
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = 0;
}

static void sb_adds(sbuf *s, const char *p)
{
    sb_add(s, p, strlen(p));
}

/* Replace every match of re (extended) in *text by rep ("\1" = group 1). */
static void replace_all(char **text, const char *re, const char *rep)
{
    regex_t rx;
    if (regcomp(&rx, re, REG_EXTENDED | REG_NEWLINE) != 0) fail_msg("bad regex %s", re);
    sbuf out = {0};
    const char *p = *text;
    regmatch_t m[3];
    int flags = 0;
    while (regexec(&rx, p, 3, m, flags) == 0) {
        sb_add(&out, p, (size_t)m[0].rm_so);
        for (const char *r = rep; *r; r++) {
            if (r[0] == '\\' && r[1] >= '1' && r[1] <= '2') {
                int g = r[1] - '0';
                if (m[g].rm_so >= 0) sb_add(&out, p + m[g].rm_so, (size_t)(m[g].rm_eo - m[g].rm_so));
                r++;
            } else {
                sb_add(&out, r, 1);
            }
        }
        if (m[0].rm_eo == 0) { /* empty match: step over one byte */
            if (!*p) break;
            sb_add(&out, p, 1);
            p++;
        } else {
            p += m[0].rm_eo;
        }
        flags = REG_NOTBOL;
    }
    sb_adds(&out, p);
    regfree(&rx);
    free(*text);
    *text = out.p ? out.p : strdup("");
}

/* What varies from run to run, on both sides of the comparison. */
static char *normalise(const char *text)
{
    char *t = strdup(text);
    replace_all(&t, "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "<id>");
    replace_all(&t, "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z", "<time>");
    replace_all(&t, "^Date: .*$", "Date: <date>");
    replace_all(&t, "\"(uptime_seconds|bytes|connections|fsyncs|group_commits|watchers|reads|read_requests|index_checkpoint_position)\":[0-9]+",
                "\"\\1\":N");
    replace_all(&t, "\"version\":\"[^\"]*\"", "\"version\":\"<v>\"");
    return t;
}

/* Is a single-quoted string still open at the end of cmd? */
static int open_quote(const char *cmd)
{
    int open = 0;
    for (const char *c = cmd; *c; c++) {
        if (!open && *c == '\\' && c[1]) c++;
        else if (*c == '\'') open = !open;
    }
    return open;
}

/* Run cmd with bash; stdout and stderr together. */
static char *run_cmd(const char *cmd, int *status)
{
    int pfd[2];
    if (pipe(pfd) != 0) fail_msg("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        execl("/bin/bash", "bash", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    sbuf out = {0};
    sb_adds(&out, "");
    int64_t deadline = ht_now_ms() + 30000;
    char buf[4096];
    for (;;) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        int left = (int)(deadline - ht_now_ms());
        if (left <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        if (poll(&p, 1, left) <= 0) continue;
        ssize_t n = read(pfd[0], buf, sizeof buf);
        if (n <= 0) break;
        sb_add(&out, buf, (size_t)n);
    }
    close(pfd[0]);
    waitpid(pid, status, 0);
    return out.p;
}

static void t_api_doc_examples(void **state)
{
    (void)state;
    int st;
    char *probe = run_cmd("command -v curl", &st);
    free(probe);
    if (st != 0) {
        print_message("curl is not installed: the examples of docs/API.md are not checked\n");
        skip();
    }
    find_doc();
    size_t doclen;
    char *doc = read_all(doc_path, &doclen);
    if (!doc) fail_msg("cannot read %s (set EVS_SRC to the source root)", doc_path);
    ht_server s;
    ht_server_init(&s, NULL);
    ht_server_start(&s);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)s.port);

    const char *update = getenv("EVS_API_DOC_UPDATE");
    sbuf out = {0};
    sb_adds(&out, "");
    int in_block = 0, commands = 0, mismatches = 0;
    sbuf cmd = {0}, expected = {0};
    int have_cmd = 0;
    int lineno = 0, cmd_line = 0;
    char *save = NULL;
    /* split keeping empty lines: walk by hand */
    const char *p = doc;
    sbuf firstdiff = {0};
    sb_adds(&firstdiff, "");
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char *line = strndup(p, n);
        p += n + (nl ? 1 : 0);
        lineno++;
        int flush = 0, is_cmd = 0, end_block = 0;
        if (!in_block) {
            sb_adds(&out, line);
            sb_adds(&out, "\n");
            if (!strcmp(line, "```console")) in_block = 1;
            free(line);
            continue;
        }
        if (!strcmp(line, "```")) flush = end_block = 1;
        else if (!strncmp(line, "$ ", 2)) flush = is_cmd = 1;
        if (flush && have_cmd) {
            /* run the pending command */
            char *real = strdup(cmd.p);
            for (char *h; (h = strstr(real, "localhost:2114"));) {
                size_t pre = (size_t)(h - real);
                char *nr = malloc(strlen(real) + 64);
                memcpy(nr, real, pre);
                strcpy(nr + pre, addr);
                strcat(nr, h + strlen("localhost:2114"));
                free(real);
                real = nr;
            }
            char *got = run_cmd(real, &st);
            free(real);
            commands++;
            char *ng = normalise(got), *ne = normalise(expected.p ? expected.p : "");
            if (strcmp(ng, ne) != 0) {
                mismatches++;
                if (!firstdiff.len) {
                    char head[200];
                    snprintf(head, sizeof head, "docs/API.md line %d: ", cmd_line);
                    sb_adds(&firstdiff, head);
                    sb_adds(&firstdiff, cmd.p);
                    sb_adds(&firstdiff, "\n--- the document shows (normalised):\n");
                    sb_adds(&firstdiff, ne);
                    sb_adds(&firstdiff, "--- the server answered (normalised):\n");
                    sb_adds(&firstdiff, ng);
                }
            }
            sb_adds(&out, got);
            free(ng);
            free(ne);
            free(got);
            have_cmd = 0;
            free(cmd.p);
            free(expected.p);
            memset(&cmd, 0, sizeof cmd);
            memset(&expected, 0, sizeof expected);
        }
        if (end_block) {
            in_block = 0;
            sb_adds(&out, line);
            sb_adds(&out, "\n");
        } else if (is_cmd) {
            have_cmd = 1;
            cmd_line = lineno;
            sb_adds(&out, line);
            sb_adds(&out, "\n");
            sb_adds(&cmd, line + 2);
            /* continuation lines: a trailing backslash, or a quote left open */
            while (cmd.len && (cmd.p[cmd.len - 1] == '\\' || open_quote(cmd.p)) && *p) {
                const char *nl2 = strchr(p, '\n');
                size_t n2 = nl2 ? (size_t)(nl2 - p) : strlen(p);
                sb_adds(&cmd, "\n");
                sb_add(&cmd, p, n2);
                sb_add(&out, p, n2);
                sb_adds(&out, "\n");
                p += n2 + (nl2 ? 1 : 0);
                lineno++;
            }
            sb_adds(&expected, "");
        } else if (have_cmd) {
            sb_adds(&expected, line);
            sb_adds(&expected, "\n");
        } else {
            sb_adds(&out, line);
            sb_adds(&out, "\n");
        }
        free(line);
    }
    (void)save;
    ht_server_stop(&s);
    ht_server_free(&s);
    if (update) {
        FILE *f = fopen(update, "w");
        if (!f) fail_msg("cannot write %s", update);
        fwrite(out.p, 1, out.len, f);
        fclose(f);
        print_message("wrote %s: %d commands, %d outputs changed\n", update, commands, mismatches);
    }
    print_message("docs/API.md: %d examples run, %d differ\n", commands, mismatches);
    if (commands == 0) fail_msg("docs/API.md has no ```console examples: expected some");
    if (mismatches && !update)
        fail_msg("%d of %d examples of docs/API.md differ from what the server answers; the first:\n%s", mismatches, commands, firstdiff.p);
    free(firstdiff.p);
    free(out.p);
    free(doc);
}

int main(void)
{
    ht_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_api_doc_examples),
    };
    return cmocka_run_group_tests_name("http_api_doc", tests, NULL, NULL);
}
