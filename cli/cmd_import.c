/*
 * cmd_import.c — evstore import [FILE|-]: bulk append of JSON Lines in the
 * exported (served) form.
 *
 * All or nothing at the level users care about: the whole input is checked
 * before the first write — JSON and event rules (by the library's parser),
 * event size, ids repeated inside the input, ids already in the store — and
 * every bad line is reported with its number. Only a clean input is written,
 * in atomic batches (evs_append_multi) of --batch events, so a crash or I/O
 * error mid-way leaves a prefix of whole batches, and the message says how
 * far it got.
 *
 * Each line names its stream; position, version and time are accepted and
 * ignored (the store assigns them again), ids are kept. Importing an export
 * into an empty store therefore gives the same positions and versions.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "backend.h"
#include "input.h"
#include "output.h"
#include "progress.h"

enum { OPT_BATCH = OPT_CMD };

#define PARSE_FLAGS (EVS_PARSE_MULTI_STREAM | EVS_PARSE_ALLOW_POSITION)
/* Bytes per parse/append chunk besides the event count, so a batch of
 * large events stays well under the library's batch limit. */
#define CHUNK_BYTES (4u << 20)

/* ---- lines and chunks --------------------------------------------------- */

/* A run of whole lines [start, end) beginning at line number first_line. */
typedef struct chunk {
    size_t start;         /* byte offset of its first line */
    size_t end;           /* byte offset after its last newline */
    uint64_t first_line;  /* 1-based number of its first line */
    uint64_t lines;       /* lines in it, blank ones included */
    size_t events;        /* non-blank lines: one event each */
} chunk;

/* NDJSON skips lines holding only whitespace; so do we when counting events. */
static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

/* The line at *off (without its newline); advances *off. 0 at the end. */
static int next_line(const cli_input *in, size_t *off, size_t limit, const char **s, size_t *n)
{
    if (*off >= limit)
        return 0;
    const char *p = in->data + *off;
    const char *nl = memchr(p, '\n', limit - *off);
    *s = p;
    *n = nl ? (size_t)(nl - p) : limit - *off;
    *off += *n + (nl ? 1 : 0);
    return 1;
}

/* The chunk after prev: up to batch non-blank lines or CHUNK_BYTES (but at
 * least one line). 0 when the input is used up. */
static int next_chunk(const cli_input *in, const chunk *prev, size_t batch, chunk *c)
{
    c->start = prev ? prev->end : 0;
    c->first_line = prev ? prev->first_line + prev->lines : 1;
    c->lines = 0;
    size_t off = c->start, events = 0;
    const char *s;
    size_t n;
    while (events < batch && (c->lines == 0 || off - c->start < CHUNK_BYTES) &&
           next_line(in, &off, in->len, &s, &n)) {
        c->lines++;
        if (!blank(s, n))
            events++;
    }
    c->end = off;
    c->events = events;
    return c->lines > 0;
}

/* The line number of the k-th (0-based) event of a chunk, or 0. */
static uint64_t event_line(const cli_input *in, const chunk *c, size_t k)
{
    size_t off = c->start;
    const char *s;
    size_t n;
    for (uint64_t line = c->first_line; next_line(in, &off, c->end, &s, &n); line++)
        if (!blank(s, n) && k-- == 0)
            return line;
    return 0;
}

/* ---- ids seen in the input ---------------------------------------------- */

/* Open addressing over the 16 id bytes; remembers the line of each id so a
 * repeat can name both lines, and so ids found in the store can be reported
 * by line after the input has been read. */
typedef struct id_slot {
    uint8_t id[16];       /* the id */
    uint64_t line;        /* 0: empty slot */
} id_slot;

typedef struct id_set {
    id_slot *slots;       /* cap entries */
    size_t cap;           /* a power of two */
    size_t n;             /* used slots */
} id_set;

static size_t id_hash(const uint8_t id[16], size_t mask)
{
    uint64_t a, b;
    memcpy(&a, id, 8);
    memcpy(&b, id + 8, 8);
    /* UUIDv7 starts with a timestamp: mix both halves so the random tail
     * decides the slot. */
    uint64_t h = (a ^ (b * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull;
    return (size_t)(h ^ (h >> 31)) & mask;
}

static int id_grow(id_set *set)
{
    size_t cap = set->cap ? set->cap * 2 : 1024;
    id_slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return EVS_ENOMEM;
    for (size_t i = 0; i < set->cap; i++) {
        if (!set->slots[i].line)
            continue;
        size_t j = id_hash(set->slots[i].id, cap - 1);
        while (slots[j].line)
            j = (j + 1) & (cap - 1);
        slots[j] = set->slots[i];
    }
    free(set->slots);
    set->slots = slots;
    set->cap = cap;
    return 0;
}

/* Add id seen on line. @return 0, the earlier line (> 0) if it was there, or
 * EVS_ENOMEM. */
static int64_t id_add(id_set *set, const uint8_t id[16], uint64_t line)
{
    if ((set->n + 1) * 4 > set->cap * 3 && id_grow(set) != 0)
        return EVS_ENOMEM;
    size_t j = id_hash(id, set->cap - 1);
    while (set->slots[j].line) {
        if (memcmp(set->slots[j].id, id, 16) == 0)
            return (int64_t)set->slots[j].line;
        j = (j + 1) & (set->cap - 1);
    }
    memcpy(set->slots[j].id, id, 16);
    set->slots[j].line = line;
    set->n++;
    return 0;
}

/* ---- validation --------------------------------------------------------- */

typedef struct check_ctx {
    const cli_input *in;     /* the input */
    const char *name;        /* its name for messages */
    id_set ids;              /* ids seen so far */
    uint64_t max_event_size; /* the library's limit (evs_options default) */
    uint64_t bad;            /* bad lines reported */
    uint64_t events;         /* good events counted */
    int oom;                 /* ran out of memory: stop */
} check_ctx;

static void bad_line(check_ctx *k, uint64_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void bad_line(check_ctx *k, uint64_t line, const char *fmt, ...)
{
    char why[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    cli_error("import: %s: line %llu: %s", k->name, (unsigned long long)line, why);
    k->bad++;
}

/* The parser's sentence for a one-line input may locate the problem as
 * "line 1"; that would contradict our own line number, so drop it. */
static const char *reason(const char *err)
{
    static const char *const prefixes[] = { "line 1: ", "line 1, ", "at line 1: ", "line 1 " };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(err, prefixes[i], strlen(prefixes[i])) == 0)
            return err + strlen(prefixes[i]);
    return *err ? err : "invalid event";
}

/* The checks the parser cannot make: size and id uniqueness in the input. */
static void check_event(check_ctx *k, const evs_event_in *ev, uint64_t line)
{
    /* Measured as the library does: absent data is stored as "null". */
    uint64_t size = strlen(ev->stream) + strlen(ev->type) + (ev->data ? ev->data_len : 4) +
                    ev->metadata_len;
    if (size > k->max_event_size) {
        bad_line(k, line, "event is too big: %llu bytes of stream, type, data and metadata; "
                 "the limit is %llu", (unsigned long long)size,
                 (unsigned long long)k->max_event_size);
        return;
    }
    k->events++;
    if (!ev->id)
        return;   /* the store generates one */
    int64_t first = id_add(&k->ids, ev->id, line);
    if (first == EVS_ENOMEM) {
        k->oom = 1;
    } else if (first > 0) {
        char id[37];
        evs_uuid_format(ev->id, id);
        bad_line(k, line, "event id %s was already used on line %lld", id, (long long)first);
    }
}

static void check_chunk(check_ctx *k, const chunk *c)
{
    const cli_input *in = k->in;
    char err[512] = "";
    evs_parsed *p = NULL;
    size_t n = 0;
    if (c->events == 0)
        return;
    /* Fast path: the whole chunk parses; events map to non-blank lines. */
    if (evs_parse_events(in->data + c->start, c->end - c->start, EVS_PARSE_NDJSON, PARSE_FLAGS,
                         &p, err, sizeof err) == 0) {
        const evs_event_in *ev = evs_parsed_events(p, &n);
        size_t off = c->start, i = 0;
        const char *s;
        size_t len;
        for (uint64_t line = c->first_line; i < n && next_line(in, &off, c->end, &s, &len);
             line++)
            if (!blank(s, len))
                check_event(k, &ev[i++], line);
        evs_parsed_free(p);
        return;
    }
    evs_parsed_free(p);
    /* Slow path: something in it is bad; parse line by line to name every
     * bad line, and still check the good ones (ids, sizes). */
    size_t off = c->start;
    const char *s;
    size_t len;
    for (uint64_t line = c->first_line; next_line(in, &off, c->end, &s, &len); line++) {
        if (blank(s, len))
            continue;
        p = NULL;
        err[0] = 0;
        int rc = evs_parse_events(s, len, EVS_PARSE_NDJSON, PARSE_FLAGS, &p, err, sizeof err);
        if (rc == EVS_ENOMEM) {
            k->oom = 1;
        } else if (rc) {
            bad_line(k, line, "%s", reason(err));
        } else {
            const evs_event_in *ev = evs_parsed_events(p, &n);
            for (size_t i = 0; i < n; i++)
                check_event(k, &ev[i], line);
        }
        evs_parsed_free(p);
    }
}

static int by_line(const void *a, const void *b)
{
    uint64_t x = ((const id_slot *)a)->line, y = ((const id_slot *)b)->line;
    return x < y ? -1 : x > y;
}

/* Ids of the input that the store already holds would fail the append that
 * carries them after earlier batches were written: find them first. */
static int check_store(check_ctx *k, cli_backend *b)
{
    if (b->position(b) == 0 || k->ids.n == 0)
        return 0;
    id_slot *found = malloc(k->ids.n * sizeof *found);
    if (!found)
        return EVS_ENOMEM;
    size_t nfound = 0;
    int rc = 0;
    for (size_t i = 0; i < k->ids.cap && !cli_stop; i++) {
        if (!k->ids.slots[i].line)
            continue;
        rc = b->get(b, k->ids.slots[i].id, NULL, NULL);
        if (rc == 0)
            found[nfound++] = k->ids.slots[i];
        else if (rc != EVS_ENOTFOUND)
            break;
        rc = 0;
    }
    qsort(found, nfound, sizeof *found, by_line);
    for (size_t i = 0; i < nfound; i++) {
        char id[37];
        evs_uuid_format(found[i].id, id);
        bad_line(k, found[i].line, "event id %s is already in the store", id);
    }
    free(found);
    return rc;
}

/* ---- writing ------------------------------------------------------------ */

typedef struct write_ctx {
    cli_backend *b;          /* where to */
    uint64_t batches;        /* atomic appends done */
    uint64_t imported;       /* events written */
    uint64_t first, last;    /* positions written */
} write_ctx;

/* Append n events as one batch; a batch the library finds too big is split
 * in halves (nothing was written, so that is safe). On failure *failed is
 * the index of the event that failed. */
static int append_batch(write_ctx *w, const evs_event_in *ev, size_t n,
                        evs_append_result *res, size_t *failed)
{
    memset(res, 0, sizeof *res);
    int rc = w->b->append_multi(w->b, ev, n, NULL, res);
    if (rc == EVS_ETOOBIG && n > 1) {
        size_t h = n / 2;
        if ((rc = append_batch(w, ev, h, res, failed)) != 0)
            return rc;
        rc = append_batch(w, ev + h, n - h, res, failed);
        if (rc)
            *failed += h;
        return rc;
    }
    if (rc) {
        *failed = res->failed_index < n ? res->failed_index : 0;
        return rc;
    }
    if (!w->first)
        w->first = res->first_position;
    w->last = res->last_position;
    w->imported += n;
    w->batches++;
    return 0;
}

static int write_all(const cli_input *in, size_t batch, write_ctx *w, uint64_t total)
{
    cli_progress prog;
    progress_start(&prog, "import", total, in->len, 1);
    chunk c, prev;
    int have_prev = 0, rc = 0;
    while (!cli_stop && next_chunk(in, have_prev ? &prev : NULL, batch, &c)) {
        prev = c;
        have_prev = 1;
        if (c.events == 0)
            continue;   /* trailing blank lines: the parser would call it empty */
        char err[512] = "";
        evs_parsed *p = NULL;
        rc = evs_parse_events(in->data + c.start, c.end - c.start, EVS_PARSE_NDJSON,
                              PARSE_FLAGS, &p, err, sizeof err);
        if (rc) {
            /* It parsed a moment ago; only memory can make it fail now. */
            cli_error_rc(rc, "import: %s: line %llu", in->name,
                         (unsigned long long)c.first_line);
            evs_parsed_free(p);
            break;
        }
        size_t n = 0, failed = 0;
        const evs_event_in *ev = evs_parsed_events(p, &n);
        evs_append_result res;
        if (n && (rc = append_batch(w, ev, n, &res, &failed)) != 0) {
            char what[600];
            snprintf(what, sizeof what, "import: %s: line %llu (after %llu batch%s, %llu events, "
                     "were imported)", in->name, (unsigned long long)event_line(in, &c, failed),
                     (unsigned long long)w->batches, w->batches == 1 ? "" : "es",
                     (unsigned long long)w->imported);
            cli_backend_append_error(w->b, rc, &res, ev[failed].stream, what);
        }
        evs_parsed_free(p);
        if (rc)
            break;
        progress_update(&prog, w->imported, c.end);
    }
    progress_done(&prog);
    return rc;
}

/* ---- the command -------------------------------------------------------- */

static void print_summary(const write_ctx *w)
{
    jbuf o;
    jb_init(&o);
    jb_puts(&o, "{\"events\":");
    jb_u64(&o, w->imported);
    jb_puts(&o, ",\"first_position\":");
    jb_u64(&o, w->first);
    jb_puts(&o, ",\"last_position\":");
    jb_u64(&o, w->last);
    jb_puts(&o, "}");
    if (!o.oom)
        out_json(o.p, o.len);
    jb_free(&o);
}

int cmd_import(cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        ARGS_COMMON_LONG,
        ARGS_WRITE_LONG,
        { "batch", required_argument, NULL, OPT_BATCH },
        { NULL, 0, NULL, 0 }
    };
    uint64_t batch = 1000;
    int c;
    args_begin();
    while ((c = args_next(g, argc, argv, ARGS_SHORT(""), longopts)) != ARGS_END) {
        switch (c) {
        case ARGS_HELP:
            cli_print_help(g->command);
            return 0;
        case OPT_BATCH:
            if (args_u64(g, "--batch", optarg, &batch) != 0)
                return CLI_EXIT_USAGE;
            if (batch < 1 || batch > 100000)
                return args_usage(g, "--batch: between 1 and 100000 events");
            break;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind > 1)
        return args_usage(g, "give at most one FILE ('-' or nothing: stdin)");
    const char *path = argc - optind == 1 ? argv[optind] : NULL;
    if ((!path || strcmp(path, "-") == 0) && isatty(STDIN_FILENO))
        cli_error("note: reading events from the terminal, one JSON object per line; "
                  "end with Ctrl-D");

    cli_input in;
    int rc = input_load(path, &in);
    if (rc) {
        cli_error_rc(rc, "import: cannot read %s", path ? path : "stdin");
        return CLI_EXIT_FAIL;
    }
    evs_options defaults;
    evs_options_init(&defaults);
    check_ctx k;
    memset(&k, 0, sizeof k);
    k.in = &in;
    k.name = in.name;
    k.max_event_size = defaults.max_event_size;
    int exit_code = CLI_EXIT_FAIL;
    cli_backend *b = NULL;

    /* 1. The input on its own, before the store is even opened (a bad
     *    input must not leave a freshly created empty store behind). */
    cli_progress prog;
    progress_start(&prog, "import: checking", 0, in.len, 1);
    chunk ch, prev;
    int have_prev = 0;
    while (!cli_stop && !k.oom && next_chunk(&in, have_prev ? &prev : NULL, (size_t)batch, &ch)) {
        check_chunk(&k, &ch);
        prev = ch;
        have_prev = 1;
        progress_update(&prog, k.events, ch.end);
    }
    progress_done(&prog);
    if (k.oom) {
        cli_error("import: out of memory while checking %s", in.name);
        goto out;
    }
    if (cli_stop) {
        cli_error("import: interrupted while checking; nothing was imported");
        exit_code = 130;
        goto out;
    }

    /* 2. Against the store, under the writer lock so nothing changes
     *    between this check and the appends. (A server has no such lock: an
     *    id stored by another client meanwhile fails its batch with
     *    duplicate_event_id, reported with how many batches landed.) */
    if (k.bad == 0) {
        if ((exit_code = cli_backend_open(g, CLI_OPEN_WRITE, &b)) != 0)
            goto out;
        exit_code = CLI_EXIT_FAIL;
        if ((rc = check_store(&k, b)) != 0) {
            cli_backend_error(b, rc, "import: looking up event ids in %s", b->where);
            goto out;
        }
    }
    if (k.bad) {
        cli_error("import: %s: %llu bad line%s; nothing was imported", in.name,
                  (unsigned long long)k.bad, k.bad == 1 ? "" : "s");
        goto out;
    }

    /* 3. Write. */
    write_ctx w = { .b = b };
    rc = write_all(&in, (size_t)batch, &w, k.events);
    if (rc == 0 && cli_stop) {
        if (w.imported)
            cli_error("import: interrupted after %llu of %llu events (positions %llu..%llu "
                      "were imported)", (unsigned long long)w.imported,
                      (unsigned long long)k.events, (unsigned long long)w.first,
                      (unsigned long long)w.last);
        else
            cli_error("import: interrupted; nothing was imported");
        exit_code = 130;
    } else if (rc == 0) {
        exit_code = 0;
    }
    if (rc == 0)
        print_summary(&w);
out:
    if (cli_backend_close(b) != 0)
        exit_code = CLI_EXIT_FAIL;
    free(k.ids.slots);
    input_free(&in);
    return exit_code;
}
