/*
 * projection.c — projections: derived streams of the events that match a
 * declarative filter, defined in the log ($projections/<name>) and indexed in
 * projection-<hash of name>.idx (an ascending list of global positions; bytes
 * in docs/FORMAT.md). Also the helpers sysstream.h declares for consumer.c.
 *
 * WHO WRITES AN INDEX, AND THE INVARIANT READERS RELY ON
 *  Each projection has `covered` and `count`: the first `count` entries of
 *  its file are exactly the matching positions <= covered, ascending. Entries
 *  are written before count is published, and count before covered, so a
 *  reader that loads covered and then count may use every entry it sees up
 *  to min(covered, committed). Anything after covered it reads by scanning
 *  the log with the filter (a forward projection iterator is therefore
 *  always exact, also while the index is being built or on a follower).
 *  Exactly one thread appends to a given index at a time, decided under the
 *  projection's mutex by comparing covered with `hooked` (the last position
 *  the writer's commit hook has passed over):
 *   - covered == hooked: the index is live. The writer thread, in its
 *     commit hook (evs__proj_on_commit, called from flush_group after the
 *     group is durable and before it is published), appends the group's
 *     matches and moves covered to the group's last position.
 *   - covered < hooked: the index is behind (new projection, or rebuilt
 *     after its file was lost). The hook only moves hooked; the builder
 *     thread scans the log in chunks of BUILD_CHUNK positions from covered
 *     up to hooked (waiting until hooked is committed) and appends. When it
 *     reaches hooked, the next commit hook finds covered == hooked and takes
 *     over: no position is missed or added twice.
 *  `seen` (the set's last hooked position) gives a projection registered
 *  between a hook and its publish the right starting `hooked`.
 *
 * DEFINITIONS FOLLOW THE LOG
 *  The writer's commit hook watches its own group for ProjectionDefined and
 *  ProjectionDeleted events and registers or drops projections right there,
 *  so the set of live projections changes exactly at the positions where the
 *  log says so. At open, the set is loaded from the last event of every
 *  $projections/ stream, each index is checked (magic, versions, name and
 *  filter hashes, checksum, covered <= the log's end, length) and caught up:
 *  a tail of at most checkpoint_interval positions synchronously (it is the
 *  tail recovery has just read, so it comes from the page cache), anything
 *  longer — a missing, damaged or foreign file is rebuilt from position 1 —
 *  in the background by the builder thread while reads scan the log for
 *  what is not covered yet. Index files that belong to no live projection
 *  are deleted. Checkpoints sync each index and then its header (covered,
 *  count); entries after the header's count are ignored at open.
 *
 * LOCK ORDER: set->lock (rwlock: list membership, seen) before p->mu.
 * The writer's hook takes set->lock for writing; readers and the builder for
 * reading, briefly. Projection objects are reference-counted: the set holds
 * one reference, every iterator and the builder one each; a deleted
 * projection is marked dead (its iterators return EVS_ENOTFOUND) and freed
 * with its last reference. Its file is unlinked at deletion; open handles
 * keep reading the unlinked file.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <jansson.h>
#include <xxhash.h>

#include "store/sysstream.h"

#define PROJ_HDR_SIZE 64u           /* header of a projection index; entries follow */
#define PROJ_FORMAT_VERSION 1u      /* of projection index files */
#define BUILD_CHUNK 65536u          /* positions the builder scans per step */
#define ENTRY_CACHE 256u            /* entries an iterator reads per pread */
#define SYS_LOCKS 64u               /* stripes of evs__sys_lock */

/* ------------------------------------------------------------------------ */
/* Shared helpers (sysstream.h)                                             */
/* ------------------------------------------------------------------------ */

int evs__buf_puts(evs_buf *b, const char *str) { return evs__buf_append(b, str, strlen(str)); }

int evs__buf_nul(evs_buf *b)
{
    int rc = evs__buf_reserve(b, 1);
    if (rc == 0) b->p[b->len] = 0;
    return rc;
}

int evs__json_str(evs_buf *b, const char *p, size_t n)
{
    int rc = evs__buf_append(b, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        char esc[8];
        if (c == '"' || c == '\\') snprintf(esc, sizeof esc, "\\%c", c);
        else snprintf(esc, sizeof esc, "\\u%04x", c);
        rc = evs__buf_append(b, p + start, i - start);
        if (rc == 0) rc = evs__buf_puts(b, esc);
        start = i + 1;
    }
    if (rc == 0) rc = evs__buf_append(b, p + start, n - start);
    if (rc == 0) rc = evs__buf_append(b, "\"", 1);
    return rc;
}

void evs__ofilter_free(evs_ofilter *f)
{
    for (size_t i = 0; i < f->ntypes; i++) free(f->types[i]);
    free(f->types);
    free(f->prefix);
    memset(f, 0, sizeof *f);
}

int evs__ofilter_match(const evs_ofilter *f, const char *stream, size_t slen, const char *type, size_t tlen)
{
    if (evs__system_hidden(f->prefix, stream)) return 0;
    if (f->prefix) {
        size_t pl = strlen(f->prefix);
        if (pl > slen || memcmp(stream, f->prefix, pl) != 0) return 0;
    }
    if (!f->ntypes) return 1;
    for (size_t i = 0; i < f->ntypes; i++)
        if (strlen(f->types[i]) == tlen && memcmp(f->types[i], type, tlen) == 0) return 1;
    return 0;
}

evs_filter evs__ofilter_view(const evs_ofilter *f)
{
    evs_filter v = {(const char *const *)f->types, f->ntypes, f->prefix};
    return v;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort and deduplicate f->types in place. */
static void normalise_types(evs_ofilter *f)
{
    if (f->ntypes < 2) return;
    qsort(f->types, f->ntypes, sizeof *f->types, cmp_str);
    size_t k = 1;
    for (size_t i = 1; i < f->ntypes; i++) {
        if (strcmp(f->types[i], f->types[k - 1]) == 0) free(f->types[i]);
        else f->types[k++] = f->types[i];
    }
    f->ntypes = k;
}

static int valid_prefix(const char *p, size_t len)
{
    return len == 0 || evs__validate_name(p, len) == 0;
}

int evs__ofilter_canon(const evs_ofilter *f, evs_buf *out)
{
    int rc = evs__buf_puts(out, "{");
    if (rc == 0 && f->ntypes) {
        rc = evs__buf_puts(out, "\"types\":[");
        for (size_t i = 0; i < f->ntypes && rc == 0; i++) {
            if (i) rc = evs__buf_puts(out, ",");
            if (rc == 0) rc = evs__json_str(out, f->types[i], strlen(f->types[i]));
        }
        if (rc == 0) rc = evs__buf_puts(out, "]");
    }
    if (rc == 0 && f->prefix) {
        if (f->ntypes) rc = evs__buf_puts(out, ",");
        if (rc == 0) rc = evs__buf_puts(out, "\"stream_prefix\":");
        if (rc == 0) rc = evs__json_str(out, f->prefix, strlen(f->prefix));
    }
    if (rc == 0) rc = evs__buf_puts(out, "}");
    if (rc == 0) rc = evs__buf_nul(out);
    return rc;
}

int evs__filter_canon(const evs_filter *in, evs_buf *out)
{
    evs_ofilter f = {0};
    int rc = 0;
    if (!in || (in->ntypes == 0 && !in->stream_prefix) || (in->ntypes && !in->types)) return EVS_EINVAL;
    if (in->stream_prefix) {
        if (!valid_prefix(in->stream_prefix, strlen(in->stream_prefix))) return EVS_EINVAL;
        if (!(f.prefix = strdup(in->stream_prefix))) return EVS_ENOMEM;
    }
    if (in->ntypes && !(f.types = calloc(in->ntypes, sizeof *f.types))) { rc = EVS_ENOMEM; goto out; }
    for (size_t i = 0; i < in->ntypes; i++) {
        const char *t = in->types[i];
        if (!t || evs__validate_name(t, strlen(t)) != 0) { rc = EVS_EINVAL; goto out; }
        if (!(f.types[i] = strdup(t))) { rc = EVS_ENOMEM; goto out; }
        f.ntypes++;
    }
    normalise_types(&f);
    rc = evs__ofilter_canon(&f, out);
out:
    evs__ofilter_free(&f);
    return rc;
}

int evs__filter_parse(const char *json, size_t len, evs_ofilter *out)
{
    memset(out, 0, sizeof *out);
    json_error_t e;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &e);
    int rc = 0;
    if (!root || !json_is_object(root)) { rc = EVS_EINVAL; goto out; }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "stream_prefix")) {
            if (!json_is_string(v) || !valid_prefix(json_string_value(v), json_string_length(v))) { rc = EVS_EINVAL; goto out; }
            if (!(out->prefix = strdup(json_string_value(v)))) { rc = EVS_ENOMEM; goto out; }
        } else if (!strcmp(key, "types")) {
            size_t n = json_array_size(v);
            if (!json_is_array(v) || n == 0) { rc = EVS_EINVAL; goto out; }
            if (!(out->types = calloc(n, sizeof *out->types))) { rc = EVS_ENOMEM; goto out; }
            for (size_t i = 0; i < n; i++) {
                json_t *t = json_array_get(v, i);
                if (!json_is_string(t) || evs__validate_name(json_string_value(t), json_string_length(t)) != 0) {
                    rc = EVS_EINVAL;
                    goto out;
                }
                if (!(out->types[i] = strdup(json_string_value(t)))) { rc = EVS_ENOMEM; goto out; }
                out->ntypes++;
            }
        } else {
            rc = EVS_EINVAL;  /* unknown fields are refused, so typos surface */
            goto out;
        }
    }
    if (!out->prefix && !out->ntypes) rc = EVS_EINVAL;
    normalise_types(out);
out:
    json_decref(root);
    if (rc) evs__ofilter_free(out);
    return rc;
}

int evs__sys_name(char out[256], const char *kind, const char *name)
{
    size_t kl = strlen(kind), nl = name ? strlen(name) : 0;
    if (nl == 0 || kl + nl > 255) return EVS_EINVAL;
    memcpy(out, kind, kl);
    memcpy(out + kl, name, nl + 1);
    return evs__validate_name(out, kl + nl) == 0 ? 0 : EVS_EINVAL;
}

/* One allocation holding the event and its strings, as evs_get returns. */
static int copy_event(const evs_event *ev, evs_event **out)
{
    size_t need = ev->stream_len + ev->type_len + ev->data_len + ev->metadata_len + 4;
    evs_event *e = malloc(sizeof *e + need);
    if (!e) return EVS_ENOMEM;
    *e = *ev;
    char *p = (char *)(e + 1);
#define COPY(field, lenf) do { memcpy(p, ev->field, ev->lenf); p[ev->lenf] = 0; e->field = p; p += ev->lenf + 1; } while (0)
    COPY(stream, stream_len);
    COPY(type, type_len);
    COPY(data, data_len);
    if (ev->metadata) COPY(metadata, metadata_len);
#undef COPY
    *out = e;
    return 0;
}

static int read_one(evs_store *s, const char *stream, uint64_t from, int backward, evs_event **out)
{
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.stream = stream;
    ro.from = from;
    ro.backward = backward;
    ro.limit = 1;
    evs_iter *it = NULL;
    const evs_event *ev = NULL;
    *out = NULL;
    int rc = evs_iter_open(s, &ro, &it);
    if (rc == 0) rc = evs_iter_next(it, &ev);
    if (rc == 0 && !ev) rc = EVS_ENOTFOUND;
    if (rc == 0) rc = copy_event(ev, out);
    evs_iter_close(it);
    return rc;
}

int evs__sys_last(evs_store *s, const char *stream, evs_event **out)
{
    return read_one(s, stream, 0, 1, out);
}

int evs__sys_at_version(evs_store *s, const char *stream, uint64_t version, evs_event **out)
{
    int rc = read_one(s, stream, version, 0, out);
    if (rc == 0 && (*out)->version != version) {
        evs_free(*out);
        *out = NULL;
        rc = EVS_ENOTFOUND;
    }
    return rc;
}

static int type_is(const evs_event *ev, const char *type)
{
    return ev->type_len == strlen(type) && memcmp(ev->type, type, ev->type_len) == 0;
}

/* ------------------------------------------------------------------------ */
/* Projection objects and their index files                                 */
/* ------------------------------------------------------------------------ */

typedef struct evs_proj {
    _Atomic int refs;            /* the set's + one per iterator and builder step */
    char *name;                  /* the projection's name */
    char *canon;                 /* canonical filter JSON (its ProjectionDefined data) */
    size_t canon_len;
    uint64_t fhash;              /* XXH3-64 of canon */
    uint64_t defined_at;         /* position of its ProjectionDefined event */
    evs_ofilter f;               /* the filter */
    evs_file *file;              /* the index, or NULL (a follower without a usable file) */
    char fname[48];              /* "projection-<16 hex digits>.idx" */
    pthread_mutex_t mu;          /* appends to file, count, covered, hooked */
    _Atomic uint64_t count;      /* valid entries in file */
    _Atomic uint64_t covered;    /* entries [0, count) are every match at positions <= covered */
    uint64_t hooked;             /* mu: the last position the writer's commit hook passed over */
    uint64_t hdr_covered;        /* covered as last written to the header (index thread / close) */
    int build_failed;            /* mu: the builder gave up on it (logged); reads scan the log */
    _Atomic int dead;            /* deleted or replaced: its iterators return EVS_ENOTFOUND */
    struct evs_proj *next;       /* the set's list (set->lock) */
} evs_proj;

typedef struct evs_proj_set evs_proj_set;
struct evs_proj_set {
    pthread_rwlock_t lock;       /* the list and seen */
    evs_proj *head;              /* live projections */
    uint64_t seen;               /* the last position evs__proj_on_commit has processed */
    evs_buf ents;                /* writer thread: encoded entries of one group */
    pthread_mutex_t bmu;         /* the builder's flags below */
    pthread_cond_t bcv;          /* wakes the builder */
    pthread_t builder;           /* the builder thread */
    int builder_started;         /* bmu */
    int stop;                    /* bmu: evs_close is under way */
    int kick;                    /* bmu: an index may be behind */
    pthread_mutex_t sys_mu[SYS_LOCKS]; /* evs__sys_lock stripes, by hash of the stream name */
};

static void proj_unref(evs_proj *p)
{
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1) return;
    evs__fclose(p->file);
    evs__ofilter_free(&p->f);
    pthread_mutex_destroy(&p->mu);
    free(p->name);
    free(p->canon);
    free(p);
}

static int proj_new(const char *name, const char *canon, size_t canon_len, uint64_t defined_at, evs_proj **out)
{
    evs_proj *p = calloc(1, sizeof *p);
    if (!p) return EVS_ENOMEM;
    atomic_init(&p->refs, 1);
    pthread_mutex_init(&p->mu, NULL);
    int rc = evs__filter_parse(canon, canon_len, &p->f);
    if (rc == 0 && (!(p->name = strdup(name)) || !(p->canon = malloc(canon_len + 1)))) rc = EVS_ENOMEM;
    if (rc) { proj_unref(p); return rc; }
    memcpy(p->canon, canon, canon_len);
    p->canon[canon_len] = 0;
    p->canon_len = canon_len;
    p->fhash = XXH3_64bits(canon, canon_len);
    p->defined_at = defined_at;
    snprintf(p->fname, sizeof p->fname, "projection-%016" PRIx64 ".idx", (uint64_t)XXH3_64bits(name, strlen(name)));
    *out = p;
    return 0;
}

/* Header: see docs/FORMAT.md "Projection index". */
static void header_encode(const evs_proj *p, uint64_t covered, uint64_t count, uint8_t b[PROJ_HDR_SIZE])
{
    memset(b, 0, PROJ_HDR_SIZE);
    memcpy(b, "EVSPROJ", 8);
    evs__put32(b + 8, PROJ_FORMAT_VERSION);
    evs__put32(b + 12, PROJ_HDR_SIZE);
    evs__put64(b + 16, XXH3_64bits(p->name, strlen(p->name)));
    evs__put64(b + 24, p->fhash);
    evs__put64(b + 32, covered);
    evs__put64(b + 40, count);
    evs__put64(b + 56, XXH3_64bits(b, 56));
}

static int header_write(evs_proj *p, uint64_t covered, uint64_t count)
{
    uint8_t b[PROJ_HDR_SIZE];
    header_encode(p, covered, count, b);
    return evs__fwrite(p->file, b, sizeof b, 0, NULL);
}

/* Check the header of p->file. 0 with covered and count set; EVS_ECORRUPT (not
 * usable: damaged, another projection's, another filter, longer than the
 * log); EVS_EFORMAT; -errno. */
static int header_check(evs_store *s, evs_proj *p, uint64_t *covered, uint64_t *count)
{
    uint8_t b[PROJ_HDR_SIZE];
    size_t got = 0;
    uint64_t size = 0;
    int rc = evs__fread(p->file, b, sizeof b, 0, &got);
    if (rc == 0) rc = p->file->vfs->size(p->file, &size);
    if (rc) return rc;
    const char *why = NULL;
    if (got != sizeof b || memcmp(b, "EVSPROJ", 8) != 0) why = "bad magic or short header";
    else if (evs__get32(b + 8) > PROJ_FORMAT_VERSION) {
        evs__logf(&s->log, EVS_LOG_ERROR, "%s was written by a newer format (version %" PRIu32 ", this library reads %u)",
                  p->fname, evs__get32(b + 8), PROJ_FORMAT_VERSION);
        return EVS_EFORMAT;
    } else if (evs__get64(b + 56) != XXH3_64bits(b, 56)) why = "header checksum mismatch";
    else if (evs__get32(b + 12) != PROJ_HDR_SIZE) why = "bad header size";
    else if (evs__get64(b + 16) != XXH3_64bits(p->name, strlen(p->name))) why = "it belongs to another projection";
    else if (evs__get64(b + 24) != p->fhash) why = "it was built for another filter";
    else if (evs__get64(b + 32) > atomic_load(&s->committed)) why = "it covers positions past the end of the log";
    else if (evs__get64(b + 40) > evs__get64(b + 32) || size < PROJ_HDR_SIZE + 8 * evs__get64(b + 40))
        why = "it is shorter than its header says";
    if (why) {
        evs__logf(&s->log, EVS_LOG_WARN, "projection \"%s\": %s is not usable (%s); rebuilding it from the log",
                  p->name, p->fname, why);
        return EVS_ECORRUPT;
    }
    *covered = evs__get64(b + 32);
    *count = evs__get64(b + 40);
    return 0;
}

/* Writer: a new, empty index file for p (any old file of that name is unlinked
 * first, so iterators still reading it keep their own copy). */
static int file_create(evs_store *s, evs_proj *p)
{
    char path[4096];
    int rc = evs__store_path(s, path, sizeof path, p->fname);
    if (rc) return rc;
    evs__fclose(p->file);
    p->file = NULL;
    s->vfs->unlink(s->vfs, path);
    if ((rc = s->vfs->open(s->vfs, path, EVS_O_RDWR | EVS_O_CREATE | EVS_O_TRUNC, &p->file)) != 0) return rc;
    atomic_store(&p->count, 0);
    atomic_store(&p->covered, 0);
    p->hdr_covered = 0;
    return header_write(p, 0, 0);
}

static void file_unlink(evs_store *s, evs_proj *p)
{
    char path[4096];
    if (!s->read_only && evs__store_path(s, path, sizeof path, p->fname) == 0) s->vfs->unlink(s->vfs, path);
}

void evs__sys_lock(evs_store *s, const char *stream)
{
    pthread_mutex_lock(&s->proj->sys_mu[XXH3_64bits(stream, strlen(stream)) % SYS_LOCKS]);
}

void evs__sys_unlock(evs_store *s, const char *stream)
{
    pthread_mutex_unlock(&s->proj->sys_mu[XXH3_64bits(stream, strlen(stream)) % SYS_LOCKS]);
}

static evs_proj *set_find(evs_proj_set *set, const char *name)
{
    for (evs_proj *p = set->head; p; p = p->next)
        if (!strcmp(p->name, name)) return p;
    return NULL;
}

/* Take p out of the set (set->lock held for writing). */
static void set_drop(evs_store *s, evs_proj_set *set, evs_proj *p, int unlink_file)
{
    for (evs_proj **pp = &set->head; *pp; pp = &(*pp)->next) {
        if (*pp != p) continue;
        *pp = p->next;
        break;
    }
    atomic_store(&p->dead, 1);
    if (unlink_file) file_unlink(s, p);
    proj_unref(p);
}

/* Append n positions (LE u64) to p's index at entry count. p->mu held, or the
 * caller is the only appender (see the header comment). */
static int entries_write(evs_proj *p, const uint8_t *enc, size_t n)
{
    if (n == 0) return 0;
    uint64_t count = atomic_load(&p->count);
    return evs__fwrite(p->file, enc, n * 8, PROJ_HDR_SIZE + count * 8, NULL);
}

/* Scan the log for p's matches at positions (from, to] (all committed) and
 * append them; then publish count and covered. Used by the builder and at open. */
static int build_step(evs_store *s, evs_proj *p, uint64_t from, uint64_t to)
{
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.from = from + 1;
    ro.filter = evs__ofilter_view(&p->f);
    evs_iter *it = NULL;
    evs_buf enc = {0};
    size_t n = 0;
    int rc = evs_iter_open(s, &ro, &it);
    while (rc == 0) {
        const evs_event *ev = NULL;
        if ((rc = evs_iter_next(it, &ev)) != 0 || !ev || ev->position > to) break;
        if ((rc = evs__buf_reserve(&enc, 8)) != 0) break;
        evs__put64(enc.p + enc.len, ev->position);
        enc.len += 8;
        n++;
        if (enc.len >= (1u << 20) && ev->position < to) {
            /* write in pieces, so a huge match list never sits in memory. covered
             * stays below `to` (<= hooked) here, so the writer cannot take over
             * before the last piece is in */
            if ((rc = entries_write(p, enc.p, n)) != 0) break;
            pthread_mutex_lock(&p->mu);
            atomic_store(&p->count, atomic_load(&p->count) + n);
            atomic_store(&p->covered, ev->position);
            pthread_mutex_unlock(&p->mu);
            enc.len = 0;
            n = 0;
        }
    }
    evs_iter_close(it);
    if (rc == 0) rc = entries_write(p, enc.p, n);
    if (rc == 0) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->count, atomic_load(&p->count) + n);
        atomic_store(&p->covered, to);
        pthread_mutex_unlock(&p->mu);
    }
    evs__buf_free(&enc);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The builder thread                                                       */
/* ------------------------------------------------------------------------ */

static int builder_stopping(evs_proj_set *set)
{
    pthread_mutex_lock(&set->bmu);
    int stop = set->stop;
    pthread_mutex_unlock(&set->bmu);
    return stop;
}

/* Bring p up to the writer: 0 when it is live (or dead), 1 when stopping, or an error. */
static int build(evs_store *s, evs_proj_set *set, evs_proj *p)
{
    for (;;) {
        if (builder_stopping(set)) return 1;
        if (atomic_load(&p->dead)) return 0;
        pthread_mutex_lock(&p->mu);
        uint64_t cov = atomic_load(&p->covered), target = p->hooked;
        pthread_mutex_unlock(&p->mu);
        if (cov >= target) return 0;  /* live: the writer's next commit hook continues it */
        if (atomic_load(&s->committed) < target) {
            /* the group that moved hooked is not published yet */
            int rc = evs_wait(s, target, 100, NULL);
            if (rc == EVS_ECLOSED) return 1;
            continue;
        }
        uint64_t end = target - cov > BUILD_CHUNK ? cov + BUILD_CHUNK : target;
        int rc = build_step(s, p, cov, end);
        if (rc) return rc;
    }
}

static evs_proj *pick_behind(evs_proj_set *set)
{
    evs_proj *found = NULL;
    pthread_rwlock_rdlock(&set->lock);
    for (evs_proj *p = set->head; p && !found; p = p->next) {
        pthread_mutex_lock(&p->mu);
        if (p->file && !p->build_failed && atomic_load(&p->covered) < p->hooked) {
            atomic_fetch_add(&p->refs, 1);
            found = p;
        }
        pthread_mutex_unlock(&p->mu);
    }
    pthread_rwlock_unlock(&set->lock);
    return found;
}

static void *builder_main(void *arg)
{
    evs_store *s = arg;
    evs_proj_set *set = s->proj;
    for (;;) {
        pthread_mutex_lock(&set->bmu);
        while (!set->stop && !set->kick) pthread_cond_wait(&set->bcv, &set->bmu);
        int stop = set->stop;
        set->kick = 0;
        pthread_mutex_unlock(&set->bmu);
        if (stop) break;
        evs_proj *p;
        while ((p = pick_behind(set)) != NULL) {
            uint64_t t0 = evs__mono_ns(), from = atomic_load(&p->covered);
            int rc = build(s, set, p);
            if (rc < 0) {
                evs__logf(&s->log, EVS_LOG_ERROR, "building projection \"%s\" failed: %s (%s); its reads scan the log",
                          p->name, evs_strerror(rc), evs_errname(rc));
                pthread_mutex_lock(&p->mu);
                p->build_failed = 1;
                pthread_mutex_unlock(&p->mu);
            } else if (rc == 0 && !atomic_load(&p->dead)) {
                evs__logf(&s->log, EVS_LOG_INFO, "projection \"%s\": indexed positions %" PRIu64 "..%" PRIu64
                          " (%" PRIu64 " events) in %.1f ms", p->name, from + 1, atomic_load(&p->covered),
                          atomic_load(&p->count), (double)(evs__mono_ns() - t0) / 1e6);
            }
            proj_unref(p);
            if (rc == 1) goto out;
        }
    }
out:
    return NULL;
}

static int builder_start(evs_store *s)
{
    evs_proj_set *set = s->proj;
    pthread_mutex_lock(&set->bmu);
    int rc = 0;
    if (!set->builder_started && !set->stop) {
        rc = -pthread_create(&set->builder, NULL, builder_main, s);
        if (rc == 0) set->builder_started = 1;
    }
    set->kick = 1;
    pthread_cond_signal(&set->bcv);
    pthread_mutex_unlock(&set->bmu);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Open, commit hook, checkpoint, close                                     */
/* ------------------------------------------------------------------------ */

/* At open: p's file, checked; a writer creates (or rebuilds) it. */
static int load_index(evs_store *s, evs_proj *p)
{
    char path[4096];
    uint64_t covered = 0, count = 0;
    int rc = evs__store_path(s, path, sizeof path, p->fname);
    if (rc) return rc;
    rc = s->vfs->open(s->vfs, path, s->read_only ? EVS_O_RDONLY : EVS_O_RDWR, &p->file);
    if (rc == 0) rc = header_check(s, p, &covered, &count);
    else if (rc == -ENOENT) {
        if (atomic_load(&s->committed) > 0)
            evs__logf(&s->log, EVS_LOG_WARN, "projection \"%s\": %s is missing; rebuilding it from the log",
                      p->name, p->fname);
        rc = EVS_ECORRUPT;
    }
    if (rc == EVS_EFORMAT) return rc;
    if (rc) {  /* not usable */
        evs__fclose(p->file);
        p->file = NULL;
        if (s->read_only) return 0;  /* a follower reads by scanning the log */
        return file_create(s, p);
    }
    atomic_store(&p->count, count);
    atomic_store(&p->covered, covered);
    p->hdr_covered = covered;
    return 0;
}

typedef struct orphan_ctx { evs_store *s; int rc; } orphan_ctx;

static int on_orphan(void *arg, const char *name)
{
    orphan_ctx *c = arg;
    size_t n = strlen(name);
    if (n < 15 || strncmp(name, "projection-", 11) != 0 || strcmp(name + n - 4, ".idx") != 0) return 0;
    for (evs_proj *p = c->s->proj->head; p; p = p->next)
        if (!strcmp(p->fname, name)) return 0;
    char path[4096];
    if (evs__store_path(c->s, path, sizeof path, name) == 0) {
        evs__logf(&c->s->log, EVS_LOG_INFO, "removing %s: it belongs to no defined projection", name);
        c->s->vfs->unlink(c->s->vfs, path);
    }
    return 0;
}

int evs__proj_open(evs_store *s)
{
    evs_proj_set *set = calloc(1, sizeof *set);
    if (!set) return EVS_ENOMEM;
    pthread_rwlock_init(&set->lock, NULL);
    pthread_mutex_init(&set->bmu, NULL);
    pthread_cond_init(&set->bcv, NULL);
    for (unsigned i = 0; i < SYS_LOCKS; i++) pthread_mutex_init(&set->sys_mu[i], NULL);
    s->proj = set;
    uint64_t committed = atomic_load(&s->committed);
    set->seen = committed;
    int rc = 0;
    evs_stream_iter *sit = NULL;
    if (committed > 0 && (rc = evs_streams_open(s, EVS_SYS_PROJECTIONS, &sit)) != 0) return rc;
    for (;;) {
        const char *stream = NULL;
        uint64_t version;
        if (!sit || (rc = evs_streams_next(sit, &stream, &version)) != 0 || !stream) break;
        evs_event *ev = NULL;
        if ((rc = evs__sys_last(s, stream, &ev)) != 0) break;
        evs_proj *p = NULL;
        if (type_is(ev, "ProjectionDefined")) {
            rc = proj_new(stream + strlen(EVS_SYS_PROJECTIONS), ev->data, ev->data_len, ev->position, &p);
            if (rc == EVS_EINVAL) rc = EVS_CORRUPT_HERE(&s->log, stream, ev->position, "projection definition is not a valid filter");
        }
        evs_free(ev);
        if (rc) break;
        if (!p) continue;  /* deleted */
        if ((rc = load_index(s, p)) != 0) { proj_unref(p); break; }
        p->hooked = committed;
        p->next = set->head;
        set->head = p;
    }
    evs_streams_close(sit);
    if (rc || s->read_only) return rc;
    orphan_ctx oc = {s, 0};
    if ((rc = s->vfs->list_dir(s->vfs, s->dir, on_orphan, &oc)) != 0) return rc;
    int behind = 0;
    for (evs_proj *p = set->head; p && rc == 0; p = p->next) {
        uint64_t cov = atomic_load(&p->covered);
        if (cov == committed) continue;
        if (committed - cov <= s->opt.checkpoint_interval) {
            uint64_t t0 = evs__mono_ns();
            rc = build_step(s, p, cov, committed);  /* the tail recovery just read */
            if (rc == 0)
                evs__logf(&s->log, EVS_LOG_DEBUG, "projection \"%s\": caught up positions %" PRIu64 "..%" PRIu64
                          " in %.1f ms", p->name, cov + 1, committed, (double)(evs__mono_ns() - t0) / 1e6);
        } else {
            behind = 1;
        }
    }
    if (rc == 0 && behind) rc = builder_start(s);
    return rc;
}

void evs__proj_stop(evs_store *s)
{
    evs_proj_set *set = s->proj;
    if (!set) return;
    pthread_mutex_lock(&set->bmu);
    set->stop = 1;
    int started = set->builder_started;
    set->builder_started = 0;
    pthread_cond_signal(&set->bcv);
    pthread_mutex_unlock(&set->bmu);
    if (started) pthread_join(set->builder, NULL);
}

/* The number of entries among the first cnt of p's index that are <= pos
 * (binary search with 8-byte preads; entries below count never change). */
static int count_upto(evs_proj *p, uint64_t pos, uint64_t cnt, uint64_t *out)
{
    uint64_t lo = 0, hi = cnt;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        uint8_t b[8];
        size_t got = 0;
        int rc = evs__fread(p->file, b, 8, PROJ_HDR_SIZE + mid * 8, &got);
        if (rc) return rc;
        if (got != 8) return EVS_ECORRUPT;
        if (evs__get64(b) <= pos) lo = mid + 1;
        else hi = mid;
    }
    *out = lo;
    return 0;
}

/* Index thread (or close, after it stopped): sync each index, then write its
 * header, claiming at most `limit` (data up to there must be durable; the
 * writer's commit hook may have moved a projection past it since). The set is
 * only held long enough to take references: the writer's commit hook takes it
 * for writing on every group. */
static int persist_headers(evs_store *s, uint64_t limit)
{
    evs_proj_set *set = s->proj;
    int rc = 0;
    size_t n = 0, k = 0;
    pthread_rwlock_rdlock(&set->lock);
    for (evs_proj *p = set->head; p; p = p->next) n++;
    evs_proj **ps = n ? calloc(n, sizeof *ps) : NULL;
    for (evs_proj *p = set->head; p && ps; p = p->next) {
        atomic_fetch_add(&p->refs, 1);
        ps[k++] = p;
    }
    pthread_rwlock_unlock(&set->lock);
    if (n && !ps) return EVS_ENOMEM;
    for (size_t i = 0; i < k; i++) {
        evs_proj *p = ps[i];
        if (rc || !p->file || atomic_load(&p->dead)) continue;
        pthread_mutex_lock(&p->mu);
        uint64_t cov = atomic_load(&p->covered), cnt = atomic_load(&p->count);
        pthread_mutex_unlock(&p->mu);
        if (cov > limit) {
            if ((rc = count_upto(p, limit, cnt, &cnt)) != 0) continue;
            cov = limit;
        }
        if (cov == p->hdr_covered) continue;
        if ((rc = p->file->vfs->datasync(p->file)) != 0) continue;
        if ((rc = header_write(p, cov, cnt)) != 0) continue;
        if ((rc = p->file->vfs->datasync(p->file)) != 0) continue;
        p->hdr_covered = cov;
    }
    for (size_t i = 0; i < k; i++) proj_unref(ps[i]);
    free(ps);
    return rc;
}

int evs__proj_checkpoint(evs_store *s, uint64_t covered)
{
    if (!s->proj || s->read_only) return 0;
    return persist_headers(s, covered);
}

void evs__proj_close(evs_store *s)
{
    evs_proj_set *set = s->proj;
    if (!set) return;
    evs__proj_stop(s);
    /* the writer has stopped and synced everything committed: headers may claim it */
    if (!s->read_only && !atomic_load(&s->failed)) {
        int rc = persist_headers(s, UINT64_MAX);
        if (rc) evs__logf(&s->log, EVS_LOG_WARN, "could not save the projection index headers: %s (they are rebuilt at the next open)",
                          evs_strerror(rc));
    }
    while (set->head) {
        evs_proj *p = set->head;
        set->head = p->next;
        proj_unref(p);
    }
    evs__buf_free(&set->ents);
    pthread_rwlock_destroy(&set->lock);
    pthread_mutex_destroy(&set->bmu);
    pthread_cond_destroy(&set->bcv);
    for (unsigned i = 0; i < SYS_LOCKS; i++) pthread_mutex_destroy(&set->sys_mu[i]);
    free(set);
    s->proj = NULL;
}

static const char *ev_stream(const evs_req *r, size_t i) { return r->stream ? r->stream : r->in[i].stream; }

/* A ProjectionDefined or ProjectionDeleted in the group being committed. */
static int apply_definition(evs_store *s, evs_proj_set *set, const evs_req *r, size_t i, uint64_t position)
{
    const char *name = ev_stream(r, i) + strlen(EVS_SYS_PROJECTIONS);
    const char *type = r->in[i].type;
    evs_proj *old = set_find(set, name);
    if (!strcmp(type, "ProjectionDeleted")) {
        if (old) set_drop(s, set, old, 1);
        return 0;
    }
    if (strcmp(type, "ProjectionDefined") != 0 || !r->in[i].data) return 0;
    const char *canon = r->in[i].data;
    size_t len = r->in[i].data_len;
    if (old && old->canon_len == len && !memcmp(old->canon, canon, len)) return 0;
    if (old) set_drop(s, set, old, 1);
    evs_proj *p = NULL;
    int rc = proj_new(name, canon, len, position, &p);
    if (rc == 0) rc = file_create(s, p);
    if (rc) { proj_unref(p); return rc; }
    p->hooked = set->seen;
    p->next = set->head;
    set->head = p;
    return 0;
}

int evs__proj_on_commit(evs_store *s, evs_req **reqs, size_t nreqs, uint64_t first, uint64_t last)
{
    evs_proj_set *set = s->proj;
    if (!set) return 0;
    int rc = 0, behind = 0;
    pthread_rwlock_wrlock(&set->lock);
    /* definitions first: they take effect at their position, inside this group */
    for (size_t k = 0; k < nreqs && rc == 0; k++) {
        const evs_req *r = reqs[k];
        for (size_t i = 0; i < r->n && rc == 0; i++) {
            const char *st = ev_stream(r, i);
            if (st[0] == '$' && !strncmp(st, EVS_SYS_PROJECTIONS, strlen(EVS_SYS_PROJECTIONS)))
                rc = apply_definition(s, set, r, i, r->first_pos + i);
        }
    }
    for (evs_proj *p = set->head; p && rc == 0; p = p->next) {
        pthread_mutex_lock(&p->mu);
        if (p->file && atomic_load(&p->covered) == first - 1) {
            set->ents.len = 0;
            size_t n = 0;
            for (size_t k = 0; k < nreqs && rc == 0; k++) {
                const evs_req *r = reqs[k];
                for (size_t i = 0; i < r->n && rc == 0; i++) {
                    const char *st = ev_stream(r, i), *ty = r->in[i].type;
                    if (!evs__ofilter_match(&p->f, st, strlen(st), ty, strlen(ty))) continue;
                    if ((rc = evs__buf_reserve(&set->ents, 8)) != 0) break;
                    evs__put64(set->ents.p + set->ents.len, r->first_pos + i);
                    set->ents.len += 8;
                    n++;
                }
            }
            if (rc == 0) rc = entries_write(p, set->ents.p, n);
            if (rc == 0) {
                atomic_store(&p->count, atomic_load(&p->count) + n);
                atomic_store(&p->covered, last);
            }
        } else if (p->file && !p->build_failed) {
            behind = 1;
        }
        p->hooked = last;
        pthread_mutex_unlock(&p->mu);
    }
    set->seen = last;
    pthread_rwlock_unlock(&set->lock);
    if (rc == 0 && behind) rc = builder_start(s);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Reading a projection                                                     */
/* ------------------------------------------------------------------------ */

struct evs_proj_iter {
    evs_store *s;                /* the store */
    evs_proj *p;                 /* referenced */
    int backward;                /* direction */
    uint64_t next;               /* forward: the lowest position not yet considered;
                                    backward: the highest (0 = done) */
    uint64_t snap;               /* backward: committed when opened (a backward read is a snapshot) */
    uint64_t idx;                /* forward: the first entry >= next / backward: entries <= next */
    int idx_ok;                  /* idx matches next */
    evs_iter *scan;              /* the log scan for what the index does not cover, or NULL */
    uint64_t scan_next;          /* forward: the position scan continues at */
    uint64_t cache_first;        /* entries cache: index of cache[0] */
    uint64_t cache_n;            /* valid entries in cache */
    uint64_t cache[ENTRY_CACHE];
};

/* Entry i of the index (i < cnt, the count the caller loaded). */
static int entry_at(evs_proj_iter *pi, uint64_t i, uint64_t cnt, uint64_t *out)
{
    if (i < pi->cache_first || i >= pi->cache_first + pi->cache_n) {
        uint64_t first = i - i % ENTRY_CACHE, n = EVS_MIN((uint64_t)ENTRY_CACHE, cnt - first);
        uint8_t b[ENTRY_CACHE * 8];
        size_t got = 0;
        int rc = evs__fread(pi->p->file, b, n * 8, PROJ_HDR_SIZE + first * 8, &got);
        if (rc) return rc;
        if (got != n * 8)
            return EVS_CORRUPT_HERE(&pi->s->log, pi->p->fname, PROJ_HDR_SIZE + first * 8, "projection index is cut short");
        for (uint64_t k = 0; k < n; k++) pi->cache[k] = evs__get64(b + 8 * k);
        pi->cache_first = first;
        pi->cache_n = n;
    }
    *out = pi->cache[i - pi->cache_first];
    if (*out == 0) return EVS_CORRUPT_HERE(&pi->s->log, pi->p->fname, PROJ_HDR_SIZE + i * 8, "projection index holds position 0");
    return 0;
}

/* The number of entries in [0, cnt) that are < pos (upper = 0) or <= pos (upper = 1). */
static int entry_rank(evs_proj_iter *pi, uint64_t pos, int upper, uint64_t cnt, uint64_t *out)
{
    uint64_t lo = 0, hi = cnt;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2, e;
        int rc = entry_at(pi, mid, cnt, &e);
        if (rc) return rc;
        if (e < pos || (upper && e == pos)) lo = mid + 1;
        else hi = mid;
    }
    *out = lo;
    return 0;
}

static int scan_open(evs_proj_iter *pi, uint64_t from, int backward)
{
    evs_iter_close(pi->scan);
    pi->scan = NULL;
    evs_read_options ro;
    evs_read_options_init(&ro);
    ro.from = from;
    ro.backward = backward;
    ro.filter = evs__ofilter_view(&pi->p->f);
    return evs_iter_open(pi->s, &ro, &pi->scan);
}

int evs__proj_iter_open(evs_store *s, const evs_read_options *ro, evs_proj_iter **out, char **prefix,
                        char ***types, size_t *ntypes)
{
    char stream[256];
    int rc = evs__sys_name(stream, EVS_SYS_PROJECTIONS, ro->projection);
    if (rc) return rc;
    evs_proj *p = NULL;
    evs_proj_set *set = s->proj;
    if (!s->read_only) {
        /* a writer's set follows the log exactly (the commit hook keeps it) */
        pthread_rwlock_rdlock(&set->lock);
        if ((p = set_find(set, ro->projection)) != NULL) atomic_fetch_add(&p->refs, 1);
        pthread_rwlock_unlock(&set->lock);
        if (!p) return EVS_ENOTFOUND;
    } else {
        /* a follower reads the definition from the log; its index only if it is for that filter */
        evs_event *ev = NULL;
        if ((rc = evs__sys_last(s, stream, &ev)) != 0) return rc;
        if (!type_is(ev, "ProjectionDefined")) { evs_free(ev); return EVS_ENOTFOUND; }
        uint64_t h = XXH3_64bits(ev->data, ev->data_len);
        if (set) {
            pthread_rwlock_rdlock(&set->lock);
            evs_proj *q = set_find(set, ro->projection);
            if (q && q->fhash == h) { p = q; atomic_fetch_add(&p->refs, 1); }
            pthread_rwlock_unlock(&set->lock);
        }
        if (!p) rc = proj_new(ro->projection, ev->data, ev->data_len, ev->position, &p);  /* no index: scans */
        evs_free(ev);
        if (rc) return rc;
    }
    evs_proj_iter *pi = calloc(1, sizeof *pi);
    if (!pi) { proj_unref(p); return EVS_ENOMEM; }
    pi->s = s;
    pi->p = p;
    pi->backward = ro->backward;
    if (ro->backward) {
        pi->snap = atomic_load(&s->committed);
        pi->next = ro->from && ro->from < pi->snap ? ro->from : pi->snap;
    } else {
        pi->next = ro->from ? ro->from : 1;
    }
    /* the outer iterator checks every event against the filter too */
    if (p->f.prefix && !(*prefix = strdup(p->f.prefix))) rc = EVS_ENOMEM;
    if (rc == 0 && p->f.ntypes && !(*types = calloc(p->f.ntypes, sizeof **types))) rc = EVS_ENOMEM;
    for (size_t i = 0; rc == 0 && i < p->f.ntypes; i++, (*ntypes)++)
        if (!((*types)[i] = strdup(p->f.types[i]))) rc = EVS_ENOMEM;
    if (rc) { evs__proj_iter_close(pi); return rc; }
    *out = pi;
    return 0;
}

static int next_forward(evs_proj_iter *pi, uint64_t *position)
{
    evs_store *s = pi->s;
    evs_proj *p = pi->p;
    int refreshed = 0;
    for (;;) {
        if (atomic_load(&p->dead)) return EVS_ENOTFOUND;
        uint64_t c = atomic_load(&s->committed);
        uint64_t cov = p->file ? EVS_MIN(atomic_load(&p->covered), c) : 0;
        uint64_t cnt = p->file ? atomic_load(&p->count) : 0;
        if (pi->next <= cov) {
            int rc;
            if (!pi->idx_ok && (rc = entry_rank(pi, pi->next, 0, cnt, &pi->idx)) != 0) return rc;
            pi->idx_ok = 1;
            if (pi->idx < cnt) {
                uint64_t e;
                if ((rc = entry_at(pi, pi->idx, cnt, &e)) != 0) return rc;
                if (e < pi->next)
                    return EVS_CORRUPT_HERE(&s->log, p->fname, PROJ_HDR_SIZE + pi->idx * 8, "projection index is out of order");
                if (e <= cov) {
                    pi->idx++;
                    pi->next = e + 1;
                    *position = e;
                    return 0;
                }
            }
            pi->next = cov + 1;  /* no more matches up to cov; idx stays the first entry >= next */
        }
        if (pi->next > c) {
            if (s->read_only && !refreshed) {  /* a follower looks for new records once */
                refreshed = 1;
                evs__refresh_follower(s);
                continue;
            }
            *position = 0;
            return 0;
        }
        /* (cov, c] is not in the index (yet): scan the log */
        int rc;
        if ((!pi->scan || pi->scan_next != pi->next) && (rc = scan_open(pi, pi->next, 0)) != 0) return rc;
        pi->scan_next = pi->next;
        const evs_event *ev = NULL;
        if ((rc = evs_iter_next(pi->scan, &ev)) != 0) return rc;
        pi->idx_ok = 0;
        if (ev) {
            pi->next = pi->scan_next = ev->position + 1;
            *position = ev->position;
            return 0;
        }
        /* nothing up to (at least) c */
        pi->next = c + 1;
        evs_iter_close(pi->scan);
        pi->scan = NULL;
        if (!refreshed && s->read_only) { refreshed = 1; evs__refresh_follower(s); continue; }
        *position = 0;
        return 0;
    }
}

static int next_backward(evs_proj_iter *pi, uint64_t *position)
{
    evs_store *s = pi->s;
    evs_proj *p = pi->p;
    for (;;) {
        if (atomic_load(&p->dead)) return EVS_ENOTFOUND;
        if (pi->next == 0) { *position = 0; return 0; }
        uint64_t cov = p->file ? EVS_MIN(atomic_load(&p->covered), pi->snap) : 0;
        uint64_t cnt = p->file ? atomic_load(&p->count) : 0;
        int rc;
        if (pi->next > cov) {
            /* above what the index covers: scan the log down to cov */
            if (!pi->scan && (rc = scan_open(pi, pi->next, 1)) != 0) return rc;
            const evs_event *ev = NULL;
            if ((rc = evs_iter_next(pi->scan, &ev)) != 0) return rc;
            if (ev && ev->position > cov) {
                pi->next = ev->position - 1;
                *position = ev->position;
                return 0;
            }
            evs_iter_close(pi->scan);
            pi->scan = NULL;
            pi->next = ev ? cov : 0;  /* the rest is in the index (or there is nothing more) */
            pi->idx_ok = 0;
            continue;
        }
        if (!pi->idx_ok && (rc = entry_rank(pi, pi->next, 1, cnt, &pi->idx)) != 0) return rc;
        pi->idx_ok = 1;
        if (pi->idx == 0) { pi->next = 0; continue; }
        uint64_t e;
        if ((rc = entry_at(pi, pi->idx - 1, cnt, &e)) != 0) return rc;
        if (e > pi->next)
            return EVS_CORRUPT_HERE(&s->log, p->fname, PROJ_HDR_SIZE + (pi->idx - 1) * 8, "projection index is out of order");
        pi->idx--;
        pi->next = e - 1;
        *position = e;
        return 0;
    }
}

int evs__proj_iter_next(evs_proj_iter *pi, uint64_t *position)
{
    *position = 0;
    return pi->backward ? next_backward(pi, position) : next_forward(pi, position);
}

void evs__proj_iter_close(evs_proj_iter *pi)
{
    if (!pi) return;
    evs_iter_close(pi->scan);
    proj_unref(pi->p);
    free(pi);
}

/* ------------------------------------------------------------------------ */
/* API                                                                      */
/* ------------------------------------------------------------------------ */

int evs_projection_define(evs_store *s, const char *name, const evs_filter *filter, int *created)
{
    char stream[256];
    evs_buf canon = {0};
    if (created) *created = 0;
    int rc = evs__sys_name(stream, EVS_SYS_PROJECTIONS, name);
    if (rc == 0) rc = evs__filter_canon(filter, &canon);
    int locked = rc == 0;
    if (locked) evs__sys_lock(s, stream);  /* one change to this stream at a time */
    for (int tries = 0; rc == 0; tries++) {
        evs_event *ev = NULL;
        uint64_t version = 0;
        rc = evs__sys_last(s, stream, &ev);
        if (rc == 0) {
            version = ev->version;
            if (type_is(ev, "ProjectionDefined"))
                rc = ev->data_len == canon.len && !memcmp(ev->data, canon.p, canon.len) ? 1 : EVS_ECONFLICT;
            evs_free(ev);
            if (rc == 1) { rc = 0; break; }  /* already defined with this filter */
            if (rc) break;
        } else if (rc != EVS_ENOTFOUND) {
            break;
        }
        evs_event_in in = {.type = "ProjectionDefined", .data = (const char *)canon.p, .data_len = canon.len,
                           .expected_version = EVS_EXPECT_ANY};
        rc = evs__append_system(s, stream, (int64_t)version, &in, 1, NULL, NULL);
        if (rc == 0 && created) *created = 1;
        if (rc != EVS_ECONFLICT || tries >= EVS_SYS_RETRIES) break;
        rc = 0;  /* another change won the race: look again */
    }
    if (locked) evs__sys_unlock(s, stream);
    evs__buf_free(&canon);
    return rc;
}

int evs_projection_delete(evs_store *s, const char *name)
{
    char stream[256];
    int rc = evs__sys_name(stream, EVS_SYS_PROJECTIONS, name);
    int locked = rc == 0;
    if (locked) evs__sys_lock(s, stream);  /* one change to this stream at a time */
    for (int tries = 0; rc == 0; tries++) {
        evs_event *ev = NULL;
        if ((rc = evs__sys_last(s, stream, &ev)) != 0) break;
        uint64_t version = ev->version;
        int defined = type_is(ev, "ProjectionDefined");
        evs_free(ev);
        if (!defined) { rc = EVS_ENOTFOUND; break; }
        evs_event_in in = {.type = "ProjectionDeleted", .expected_version = EVS_EXPECT_ANY};
        rc = evs__append_system(s, stream, (int64_t)version, &in, 1, NULL, NULL);
        if (rc != EVS_ECONFLICT || tries >= EVS_SYS_RETRIES) break;
        rc = 0;
    }
    if (locked) evs__sys_unlock(s, stream);
    return rc;
}

int evs_projection_get(evs_store *s, const char *name, evs_projection_info **out)
{
    char stream[256];
    *out = NULL;
    int rc = evs__sys_name(stream, EVS_SYS_PROJECTIONS, name);
    if (rc) return rc;
    evs_event *ev = NULL;
    if ((rc = evs__sys_last(s, stream, &ev)) != 0) return rc;
    if (!type_is(ev, "ProjectionDefined")) { evs_free(ev); return EVS_ENOTFOUND; }
    evs_ofilter f;
    rc = evs__filter_parse(ev->data, ev->data_len, &f);
    if (rc == EVS_EINVAL) rc = EVS_CORRUPT_HERE(&s->log, stream, ev->position, "projection definition is not a valid filter");
    if (rc) { evs_free(ev); return rc; }
    /* one allocation: the info, the types array, then the strings */
    size_t need = sizeof(evs_projection_info) + f.ntypes * sizeof(char *) + (f.prefix ? strlen(f.prefix) + 1 : 0);
    for (size_t i = 0; i < f.ntypes; i++) need += strlen(f.types[i]) + 1;
    evs_projection_info *info = calloc(1, need);
    if (!info) { evs__ofilter_free(&f); evs_free(ev); return EVS_ENOMEM; }
    char **tv = (char **)(info + 1);
    char *p = (char *)(tv + f.ntypes);
    for (size_t i = 0; i < f.ntypes; i++) {
        size_t l = strlen(f.types[i]) + 1;
        memcpy(p, f.types[i], l);
        tv[i] = p;
        p += l;
    }
    if (f.prefix) {
        memcpy(p, f.prefix, strlen(f.prefix) + 1);
        info->filter.stream_prefix = p;
    }
    info->filter.types = f.ntypes ? (const char *const *)tv : NULL;
    info->filter.ntypes = f.ntypes;
    info->defined_at = ev->position;
    uint64_t h = XXH3_64bits(ev->data, ev->data_len);
    evs_proj_set *set = s->proj;
    if (set) {
        pthread_rwlock_rdlock(&set->lock);
        evs_proj *q = set_find(set, name);
        if (q && q->fhash == h && q->file) {
            uint64_t cov = EVS_MIN(atomic_load(&q->covered), atomic_load(&s->committed));
            uint64_t cnt = atomic_load(&q->count);
            /* entries past cov (a group not yet published) are not counted */
            evs_proj_iter tmp = {.s = s, .p = q};
            if (cov < atomic_load(&q->covered) && entry_rank(&tmp, cov, 1, cnt, &cnt) != 0) cnt = 0;
            info->covered = cov;
            info->indexed = cnt;
        }
        pthread_rwlock_unlock(&set->lock);
    }
    evs__ofilter_free(&f);
    evs_free(ev);
    *out = info;
    return 0;
}
