/*
 * lsm.c — the persisted index (lsm.h): memtables + immutable runs + manifest.
 *
 * State: `mem` receives puts; `imm` is the memtable frozen by a checkpoint
 * in progress (or NULL); `cur` is the current version, an immutable,
 * reference-counted list of open runs, oldest first. Precedence on equal
 * (key, a): mem, then imm, then runs newest to oldest.
 *
 * Locking (LevelDB's imm_ pattern): one rwlock guards the three pointers and
 * the contents of the memtables. put takes it for writing for one O(1)
 * insert. get/scan take it for reading only to search the memtables and to
 * take a reference to `cur`; all run I/O happens after it is released, so a
 * slow disk never stalls the writer. checkpoint takes it for writing twice,
 * each time for O(1): to freeze mem into imm, and to install the new version
 * (and drop imm) once the run and the manifest are durable. Writing and
 * merging runs happen with no lock held; readers keep using imm and the old
 * version meanwhile.
 *
 * Lifetime: a version is freed when its last holder (the index or a reader
 * mid-lookup) drops it; a run when the last version listing it goes. A run
 * merged away is marked doomed once the manifest no longer lists it and its
 * file is unlinked when its last reference goes, so readers of an older
 * version never lose the file under them (on any vfs).
 *
 * Crash safety: see docs/FORMAT-index.md. In short: the manifest is the
 * commit point; files it does not list are garbage that a writable open
 * deletes; files it lists are deleted only after a manifest without them is
 * durable.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "index/lsm.h"
#include "index/manifest.h"
#include "index/memtable.h"
#include "index/merge.h"
#include "index/run.h"
#include "index/lsm_ext.h"

#define LSM_OPEN_ATTEMPTS 8  /* manifest re-reads when a listed run vanished (read-only) */

typedef struct lsm_version {
    atomic_int refs;        /* the index (while current) and readers mid-lookup */
    size_t nruns;           /* runs listed */
    size_t cap;             /* capacity of runs */
    evs__run **runs;        /* oldest first; one reference held per run (owned) */
} lsm_version;

struct evs__lsm {
    const evs_vfs *vfs;     /* all file I/O */
    char *dir;              /* directory (owned) */
    char *name;             /* index name (owned) */
    int read_only;          /* 1: never write, create or delete a file */
    evs_logger lg;          /* where problems are logged */
    pthread_rwlock_t lock;  /* guards mem, imm, cur and the memtables' contents */
    evs__memtable *mem;     /* receives puts */
    evs__memtable *imm;     /* frozen by a checkpoint in progress, or NULL */
    lsm_version *cur;       /* the runs readers search */
    size_t mem_count;       /* entries in mem + imm (atomic access: read from any thread) */
    /* writer-thread state: what the manifest on disk says */
    uint64_t covered;       /* covered position of the last manifest */
    uint64_t next_seq;      /* next run sequence number */
    uint64_t gen;           /* generation of the last manifest */
};

/* ---- versions ---- */

static lsm_version *version_new(size_t cap)
{
    lsm_version *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->runs = calloc(cap ? cap : 1, sizeof *v->runs);
    if (!v->runs) {
        free(v);
        return NULL;
    }
    atomic_init(&v->refs, 1);
    v->cap = cap ? cap : 1;
    return v;
}

static void version_ref(lsm_version *v) { atomic_fetch_add(&v->refs, 1); }

static void version_unref(lsm_version *v)
{
    if (!v || atomic_fetch_sub(&v->refs, 1) != 1)
        return;
    for (size_t i = 0; i < v->nruns; i++)
        evs__run_unref(v->runs[i]);
    free(v->runs);
    free(v);
}

static int version_has(const lsm_version *v, const evs__run *r)
{
    for (size_t i = 0; i < v->nruns; i++)
        if (v->runs[i] == r)
            return 1;
    return 0;
}

/* ---- open / close / destroy ---- */

void evs__lsm_set_logger(evs__lsm *l, const evs_logger *lg)
{
    if (lg)
        l->lg = *lg;
}

static void lsm_free(evs__lsm *l)
{
    if (!l)
        return;
    version_unref(l->cur);
    evs__mt_free(l->mem);
    evs__mt_free(l->imm);
    pthread_rwlock_destroy(&l->lock);
    free(l->dir);
    free(l->name);
    free(l);
}

void evs__lsm_close(evs__lsm *l) { lsm_free(l); }

/*
 * Open the runs manifest m lists. *retry is set when a run is missing or is
 * not the file the manifest recorded (another process replaced it between
 * our reads); the caller re-reads the manifest.
 */
static int lsm_open_runs(evs__lsm *l, const evs__manifest *m, lsm_version **out, int *retry)
{
    int rc = 0;
    char fname[EVS_IDX_FNAME_MAX];
    lsm_version *v = version_new(m->nruns);
    *retry = 0;
    if (!v)
        return EVS_ENOMEM;
    for (size_t i = 0; i < m->nruns; i++) {
        const evs__man_run *mr = &m->runs[i];
        evs__run *r = NULL;
        if ((rc = evs__idx_run_name(fname, sizeof fname, l->name, mr->seq, 0)) != 0)
            goto out;
        rc = evs__run_open(l->vfs, &l->lg, l->dir, fname, &r);
        if (rc == -ENOENT) {
            *retry = 1;
            evs__logf(&l->lg, EVS_LOG_INFO, "index %s: run %s listed but absent", l->name, fname);
            goto out;
        }
        if (rc)
            goto out;
        v->runs[v->nruns++] = r;
        if (r->h.seq != mr->seq || r->h.entries != mr->entries || r->size != mr->size ||
            r->h.hdr_sum != mr->hdr_sum) {
            *retry = 1;
            evs__logf(&l->lg, EVS_LOG_INFO, "index %s: run %s differs from the manifest", l->name,
                      fname);
            goto out;
        }
    }
    *out = v;
    v = NULL;
out:
    version_unref(v);
    return rc;
}

/* Writable open: delete temp files and runs the manifest does not list. */
static int lsm_sweep(evs__lsm *l)
{
    int rc = 0;
    evs__idx_file *files = NULL;
    size_t nf = 0, deleted = 0;
    char path[EVS_IDX_PATH_MAX];
    if ((rc = evs__idx_list(l->vfs, l->dir, l->name, &files, &nf)) != 0)
        goto out;
    for (size_t i = 0; i < nf; i++) {
        int stale = files[i].kind == EVS_IDXF_RUN_TMP || files[i].kind == EVS_IDXF_MANIFEST_TMP;
        if (files[i].kind == EVS_IDXF_RUN) {
            stale = 1;
            for (size_t j = 0; j < l->cur->nruns; j++)
                if (l->cur->runs[j]->h.seq == files[i].seq)
                    stale = 0;
        }
        if (!stale)
            continue;
        if ((rc = evs__path(path, sizeof path, l->dir, files[i].fname)) != 0 ||
            ((rc = l->vfs->unlink(l->vfs, path)) != 0 && rc != -ENOENT))
            goto out;
        rc = 0;
        deleted++;
        evs__logf(&l->lg, EVS_LOG_INFO, "index %s: deleted leftover %s", l->name, files[i].fname);
    }
    if (deleted)
        rc = l->vfs->sync_dir(l->vfs, l->dir);
out:
    free(files);
    return rc;
}

static int lsm_load(evs__lsm *l)
{
    int rc = 0;
    evs__manifest m = { 0 };
    for (int attempt = 1;; attempt++) {
        int retry = 0;
        evs__man_free(&m);
        rc = evs__man_read(l->vfs, &l->lg, l->dir, l->name, &m);
        if (rc == EVS_ENOTFOUND) {
            memset(&m, 0, sizeof m);
            m.next_seq = 1;
            rc = 0;
        }
        if (rc)
            goto out;
        rc = lsm_open_runs(l, &m, &l->cur, &retry);
        if (rc && !retry)
            goto out;
        if (!retry)
            break;
        /* Read-only: the owner merged or rebuilt between our reads; its new
         * manifest is renamed in before old runs are deleted, so re-reading
         * it finds a consistent set. A writer owns the directory: no race. */
        if (!l->read_only || attempt == LSM_OPEN_ATTEMPTS) {
            rc = EVS_CORRUPT_HERE(&l->lg, l->dir, 0,
                                  "index manifest lists a run that is missing or different");
            goto out;
        }
    }
    l->covered = m.covered;
    l->next_seq = m.next_seq;
    l->gen = m.gen;
    if (!l->read_only)
        rc = lsm_sweep(l);
out:
    evs__man_free(&m);
    return rc;
}

int evs__lsm_open(const evs_vfs *vfs, const char *dir, const char *name, int read_only,
                  uint64_t *covered, evs__lsm **out)
{
    int rc = 0;
    evs__lsm *l = NULL;
    pthread_rwlockattr_t attr;
    *out = NULL;
    if ((rc = evs__idx_check_name(name)) != 0)
        return rc;
    l = calloc(1, sizeof *l);
    if (!l)
        return EVS_ENOMEM;
    /* writer-preferring: a stream of readers must not starve put/checkpoint */
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int prc = pthread_rwlock_init(&l->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (prc) {
        free(l);
        return -prc;
    }
    l->vfs = vfs;
    l->read_only = read_only;
    l->lg.fn = NULL;
    l->lg.level = EVS_LOG_INFO;
    l->dir = strdup(dir);
    l->name = strdup(name);
    if (!l->dir || !l->name || (rc = evs__mt_new(&l->mem)) != 0) {
        rc = EVS_ENOMEM;
        goto out;
    }
    if ((rc = lsm_load(l)) != 0)
        goto out;
    if (covered)
        *covered = l->covered;
    *out = l;
    l = NULL;
out:
    lsm_free(l);
    return rc;
}

int evs__lsm_destroy(const evs_vfs *vfs, const char *dir, const char *name)
{
    int rc = 0;
    evs__idx_file *files = NULL;
    size_t nf = 0;
    char path[EVS_IDX_PATH_MAX];
    if ((rc = evs__idx_check_name(name)) != 0)
        return rc;
    rc = evs__idx_list(vfs, dir, name, &files, &nf);
    if (rc == -ENOENT)
        return 0;
    if (rc)
        goto out;
    /* the manifest first: a crash midway leaves only unlisted runs, which open sweeps */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < nf; i++) {
            if ((files[i].kind == EVS_IDXF_MANIFEST) != (pass == 0))
                continue;
            if ((rc = evs__path(path, sizeof path, dir, files[i].fname)) != 0 ||
                ((rc = vfs->unlink(vfs, path)) != 0 && rc != -ENOENT))
                goto out;
            rc = 0;
        }
    if (nf)
        rc = vfs->sync_dir(vfs, dir);
out:
    free(files);
    return rc;
}

/* ---- put / get / scan ---- */

static void lsm_count(evs__lsm *l)  /* under the write lock */
{
    size_t n = evs__mt_entries(l->mem) + (l->imm ? evs__mt_entries(l->imm) : 0);
    __atomic_store_n(&l->mem_count, n, __ATOMIC_RELAXED);
}

int evs__lsm_put(evs__lsm *l, const evs_kv *e)
{
    pthread_rwlock_wrlock(&l->lock);
    int rc = evs__mt_put(l->mem, e);
    lsm_count(l);
    pthread_rwlock_unlock(&l->lock);
    return rc;
}

size_t evs__lsm_mem_entries(const evs__lsm *l)
{
    return __atomic_load_n(&l->mem_count, __ATOMIC_RELAXED);
}

int evs__lsm_get(evs__lsm *l, const uint8_t key[16], uint64_t a_min, evs_kv *out)
{
    int rc = 0, found = 0;
    evs_kv best, e;
    lsm_version *v = NULL;
    pthread_rwlock_rdlock(&l->lock);
    found = evs__mt_get(l->mem, key, a_min, &best);
    if (l->imm && evs__mt_get(l->imm, key, a_min, &e) && (!found || e.a < best.a)) {
        best = e;
        found = 1;
    }
    v = l->cur;
    version_ref(v);
    pthread_rwlock_unlock(&l->lock);
    /* newest run first; an older source only wins with a strictly smaller a */
    for (size_t i = v->nruns; i-- > 0;) {
        if (found && best.a == a_min)
            break;  /* nothing can be smaller */
        rc = evs__run_get(v->runs[i], key, a_min, &e);
        if (rc == EVS_ENOTFOUND) {
            rc = 0;
            continue;
        }
        if (rc)
            goto out;
        if (!found || e.a < best.a) {
            best = e;
            found = 1;
        }
    }
    if (found)
        *out = best;
    else
        rc = EVS_ENOTFOUND;
out:
    version_unref(v);
    return rc;
}

int evs__lsm_get_last(evs__lsm *l, const uint8_t key[16], uint64_t a_max, evs_kv *out)
{
    int rc = 0, found = 0;
    evs_kv best, e;
    lsm_version *v = NULL;
    pthread_rwlock_rdlock(&l->lock);
    found = evs__mt_get_last(l->mem, key, a_max, &best);
    if (l->imm && evs__mt_get_last(l->imm, key, a_max, &e) && (!found || e.a > best.a)) {
        best = e;
        found = 1;
    }
    v = l->cur;
    version_ref(v);
    pthread_rwlock_unlock(&l->lock);
    /* newest run first; an older source only wins with a strictly larger a */
    for (size_t i = v->nruns; i-- > 0;) {
        if (found && best.a == a_max)
            break;  /* nothing can be larger */
        rc = evs__run_get_last(v->runs[i], key, a_max, &e);
        if (rc == EVS_ENOTFOUND) {
            rc = 0;
            continue;
        }
        if (rc)
            goto out;
        if (!found || e.a > best.a) {
            best = e;
            found = 1;
        }
    }
    if (found)
        *out = best;
    else
        rc = EVS_ENOTFOUND;
out:
    version_unref(v);
    return rc;
}

/* One ordered source of a scan: a copied memtable range or a run cursor. */
typedef struct scan_src {
    const evs_kv *arr;      /* memtable copy, or NULL for a cursor */
    size_t n;               /* entries in arr */
    size_t i;               /* next entry of arr */
    evs__cursor c;          /* run cursor (when arr == NULL) */
    int has_cursor;         /* 1: c is initialised and must be freed */
} scan_src;

/* The source's current entry if it is still within (key, ..hi), else NULL. */
static const evs_kv *src_cur(const scan_src *s, const uint8_t key[16], uint64_t hi)
{
    const evs_kv *e = NULL;
    if (s->arr)
        e = s->i < s->n ? &s->arr[s->i] : NULL;
    else if (s->c.valid)
        e = &s->c.cur;
    if (e && (memcmp(e->key, key, 16) != 0 || e->a > hi))
        e = NULL;
    return e;
}

int evs__lsm_scan(evs__lsm *l, const uint8_t key[16], uint64_t a_lo, uint64_t a_hi,
                  evs_kv *out, size_t max, size_t *n)
{
    int rc = 0;
    lsm_version *v = NULL;
    evs_kv *memcopy = NULL;
    scan_src *src = NULL;
    size_t nsrc = 0, got = 0;
    *n = 0;
    if (max == 0 || a_lo > a_hi)
        return 0;
    pthread_rwlock_rdlock(&l->lock);
    size_t c0 = evs__mt_count(l->mem, key, a_lo, a_hi);
    size_t c1 = l->imm ? evs__mt_count(l->imm, key, a_lo, a_hi) : 0;
    c0 = EVS_MIN(c0, max);
    c1 = EVS_MIN(c1, max);
    v = l->cur;
    version_ref(v);
    src = calloc(2 + v->nruns, sizeof *src);
    if (c0 + c1)
        memcopy = malloc((c0 + c1) * sizeof *memcopy);
    if (!src || (c0 + c1 && !memcopy)) {
        pthread_rwlock_unlock(&l->lock);
        rc = EVS_ENOMEM;
        goto out;
    }
    /* sources newest first: ties go to the lowest index */
    src[nsrc].arr = memcopy;
    src[nsrc++].n = evs__mt_range(l->mem, key, a_lo, a_hi, memcopy, c0);
    if (l->imm) {
        src[nsrc].arr = memcopy + c0;
        src[nsrc++].n = evs__mt_range(l->imm, key, a_lo, a_hi, memcopy + c0, c1);
    }
    pthread_rwlock_unlock(&l->lock);
    for (size_t i = v->nruns; i-- > 0;) {
        if (!evs__run_may_have_key(v->runs[i], key))
            continue;
        scan_src *s = &src[nsrc++];
        if ((rc = evs__cursor_init(&s->c, v->runs[i], 1)) != 0)
            goto out;
        s->has_cursor = 1;
        if ((rc = evs__cursor_seek(&s->c, key, a_lo)) != 0)
            goto out;
    }
    while (got < max) {
        const evs_kv *best = NULL;
        for (size_t i = 0; i < nsrc; i++) {
            const evs_kv *e = src_cur(&src[i], key, a_hi);
            if (e && (!best || e->a < best->a))
                best = e;
        }
        if (!best)
            break;
        out[got] = *best;
        uint64_t a = out[got++].a;
        for (size_t i = 0; i < nsrc; i++) {  /* consume a from every source */
            const evs_kv *e = src_cur(&src[i], key, a_hi);
            if (!e || e->a != a)
                continue;
            if (src[i].arr)
                src[i].i++;
            else if ((rc = evs__cursor_next(&src[i].c)) != 0)
                goto out;
        }
    }
    *n = got;
out:
    for (size_t i = 0; src && i < nsrc; i++)
        if (src[i].has_cursor)
            evs__cursor_free(&src[i].c);
    free(src);
    free(memcopy);
    version_unref(v);
    return rc;
}

/* ---- checkpoint ---- */

typedef struct mt_write_ctx {
    evs__run_writer *w;     /* the run being written */
} mt_write_ctx;

static int mt_write_cb(void *ctx, const evs_kv *e)
{
    return evs__run_writer_add(((mt_write_ctx *)ctx)->w, e);
}

/* Write memtable m as run seq and open it. */
static int lsm_write_run(evs__lsm *l, const evs__memtable *m, uint64_t seq, evs__run **out)
{
    int rc = 0;
    evs__run_writer w;
    char fname[EVS_IDX_FNAME_MAX];
    mt_write_ctx wc = { &w };
    if ((rc = evs__run_writer_open(&w, l->vfs, l->dir, l->name, seq)) != 0)
        return rc;
    if ((rc = evs__mt_visit_sorted(m, mt_write_cb, &wc)) != 0 ||
        (rc = evs__run_writer_finish(&w)) != 0)
        goto out;
    if ((rc = evs__idx_run_name(fname, sizeof fname, l->name, seq, 0)) != 0 ||
        (rc = evs__run_open(l->vfs, &l->lg, l->dir, fname, out)) != 0)
        w.done = 0;  /* unusable: abort removes it */
out:
    evs__run_writer_abort(&w);
    return rc;
}

/* Append r (reference transferred) to v, growing it. */
static int version_push(lsm_version *v, evs__run *r)
{
    if (v->nruns == v->cap) {
        size_t ncap = v->cap * 2;
        evs__run **nr = realloc(v->runs, ncap * sizeof *nr);
        if (!nr)
            return EVS_ENOMEM;
        v->runs = nr;
        v->cap = ncap;
    }
    v->runs[v->nruns++] = r;
    return 0;
}

/* Apply the merge policy to v (not yet visible to anyone) until it picks nothing. */
static int lsm_merge(evs__lsm *l, lsm_version *v, const lsm_version *old, uint64_t *next_seq)
{
    int rc = 0;
    uint64_t *sizes = NULL;
    size_t start = 0;
    for (;;) {
        free(sizes);
        sizes = malloc((v->nruns ? v->nruns : 1) * sizeof *sizes);
        if (!sizes) {
            rc = EVS_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < v->nruns; i++)
            sizes[i] = v->runs[i]->h.entries;
        if (!evs__merge_pick(sizes, v->nruns, &start))
            break;
        evs__run *m = NULL;
        if ((rc = evs__merge_runs(l->vfs, &l->lg, l->dir, l->name, (*next_seq)++,
                                  v->runs + start, EVS_MERGE_WIDTH, &m)) != 0)
            goto out;
        for (size_t i = start; i < start + EVS_MERGE_WIDTH; i++) {
            if (!version_has(old, v->runs[i]))  /* made by this checkpoint, never listed */
                atomic_store(&v->runs[i]->doomed, 1);
            evs__run_unref(v->runs[i]);
        }
        v->runs[start] = m;
        memmove(v->runs + start + 1, v->runs + start + EVS_MERGE_WIDTH,
                (v->nruns - start - EVS_MERGE_WIDTH) * sizeof *v->runs);
        v->nruns -= EVS_MERGE_WIDTH - 1;
    }
out:
    free(sizes);
    return rc;
}

int evs__lsm_checkpoint(evs__lsm *l, uint64_t covered)
{
    int rc = 0, frozen = 0, renamed = 0;
    evs__memtable *fresh = NULL;
    lsm_version *nv = NULL, *old = NULL;
    evs__manifest m = { 0 };
    uint64_t next_seq = l->next_seq;
    if (l->read_only)
        return EVS_EREADONLY;
    if (evs__mt_entries(l->mem) == 0 && covered == l->covered)
        return 0;  /* nothing would change */
    if ((rc = evs__mt_new_sized(&fresh, evs__mt_slots(l->mem))) != 0)
        return rc;
    nv = version_new(l->cur->nruns + 1);
    if (!nv) {
        rc = EVS_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < l->cur->nruns; i++) {  /* only this thread replaces cur */
        evs__run_ref(l->cur->runs[i]);
        nv->runs[nv->nruns++] = l->cur->runs[i];
    }
    pthread_rwlock_wrlock(&l->lock);
    l->imm = l->mem;
    l->mem = fresh;
    pthread_rwlock_unlock(&l->lock);
    fresh = NULL;
    frozen = 1;
    if (evs__mt_entries(l->imm) > 0) {
        evs__run *r = NULL;
        if ((rc = lsm_write_run(l, l->imm, next_seq++, &r)) != 0)
            goto out;
        if ((rc = version_push(nv, r)) != 0) {
            atomic_store(&r->doomed, 1);
            evs__run_unref(r);
            goto out;
        }
    }
    if ((rc = lsm_merge(l, nv, l->cur, &next_seq)) != 0)
        goto out;
    m.covered = covered;
    m.next_seq = next_seq;
    m.gen = l->gen + 1;
    m.nruns = nv->nruns;
    m.runs = calloc(nv->nruns ? nv->nruns : 1, sizeof *m.runs);
    if (!m.runs) {
        rc = EVS_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nv->nruns; i++) {
        const evs__run *r = nv->runs[i];
        m.runs[i] = (evs__man_run){ r->h.seq, r->h.entries, r->size, r->h.hdr_sum };
    }
    if ((rc = evs__man_write(l->vfs, l->dir, l->name, &m, &renamed)) != 0)
        goto out;
    /* committed: publish the new version, drop the frozen memtable */
    pthread_rwlock_wrlock(&l->lock);
    old = l->cur;
    l->cur = nv;
    fresh = l->imm;  /* freed below, outside the lock */
    l->imm = NULL;
    lsm_count(l);
    pthread_rwlock_unlock(&l->lock);
    frozen = 0;
    for (size_t i = 0; i < old->nruns; i++)
        if (!version_has(nv, old->runs[i]))
            atomic_store(&old->runs[i]->doomed, 1);
    version_unref(old);
    nv = NULL;
    l->covered = covered;
    l->gen = m.gen;
out:
    l->next_seq = next_seq;  /* never reuse a number, even one that failed */
    if (nv) {
        /* failed: files this checkpoint made go, unless a manifest naming them may be in place */
        for (size_t i = 0; i < nv->nruns && !renamed; i++)
            if (!version_has(l->cur, nv->runs[i]))
                atomic_store(&nv->runs[i]->doomed, 1);
        version_unref(nv);
    }
    if (frozen) {  /* undo the freeze: the writer (this thread) put nothing meanwhile */
        pthread_rwlock_wrlock(&l->lock);
        fresh = l->mem;
        l->mem = l->imm;
        l->imm = NULL;
        lsm_count(l);
        pthread_rwlock_unlock(&l->lock);
    }
    evs__mt_free(fresh);
    evs__man_free(&m);
    return rc;
}
