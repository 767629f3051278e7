/*
 * lsm.c — the persisted index (lsm.h): memtables + immutable runs + manifest.
 *
 * State: `mem` receives puts; `imm[0..nimm)` are memtables frozen by
 * evs__lsm_freeze and not yet written (oldest first, each with the covered
 * position it was frozen at); `cur` is the current version, an immutable,
 * reference-counted list of open runs, oldest first. Precedence on equal
 * (key, a): mem, then imm newest to oldest, then runs newest to oldest.
 *
 * Roles: the *owner* (the store's writer thread) calls put and freeze; the
 * *flusher* (the store's index thread) calls flush and merge_step, and is the
 * only thread that replaces `cur` or writes a file; readers call get, get_last
 * and scan from any thread. evs__lsm_checkpoint plays both roles in the
 * calling thread (tests, tools).
 *
 * Locking (LevelDB's imm_ pattern): one rwlock guards mem, imm[], nimm, cur
 * and the contents of the memtables. put takes it for writing for one O(1)
 * insert; freeze for one O(1) pointer swap. get/scan take it for reading only
 * to search the memtables and to take a reference to `cur`; all run I/O
 * happens after it is released, so a slow disk never stalls the owner. flush
 * takes it for writing once, for O(1), to install the new version and drop
 * the frozen table it wrote, both at once: a reader sees the entries either
 * in the frozen table or in the new run, never in neither. Writing and
 * merging runs happen with no lock held.
 *
 * Merges are resumable (evs__merger) and run in bounded steps, so a flush
 * never waits behind a long merge. Which runs are merged is decided as if
 * every flush were followed by its merges to a fixpoint: only the `settled`
 * oldest runs are considered, and a flushed run joins them when the policy
 * finds nothing more to merge among them. The merges (and so the files and
 * calls) are then the same whatever the timing of freezes and flushes.
 *
 * Lifetime: a version is freed when its last holder (the index or a reader
 * mid-lookup) drops it; a run when the last version listing it goes. A run
 * merged away is marked doomed once the manifest no longer lists it and its
 * file is unlinked when its last reference goes, so readers of an older
 * version never lose the file under them (on any vfs).
 *
 * Crash safety: see docs/FORMAT-index.md. In short: the manifest is the
 * commit point and names the position its runs cover (that of the frozen
 * table just written, whose run is durable before the manifest is written);
 * files it does not list are garbage that a writable open deletes; files it
 * lists are deleted only after a manifest without them is durable.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "index/lsm.h"
#include "index/manifest.h"
#include "index/memtable.h"
#include "index/merge.h"
#include "index/run.h"
#include "index/lsm_ext.h"

#define LSM_OPEN_ATTEMPTS 8  /* manifest re-reads when a listed run vanished (read-only) */
#define LSM_MAX_IMM 4        /* frozen memtables at most (freeze beyond: EVS_EBUSY) */

typedef struct lsm_version {
    atomic_int refs;        /* the index (while current) and readers mid-lookup */
    size_t nruns;           /* runs listed */
    size_t cap;             /* capacity of runs */
    evs__run **runs;        /* oldest first; one reference held per run (owned) */
    uint64_t covered;       /* what the manifest naming exactly these runs says (for pins) */
    uint64_t next_seq;
    uint64_t gen;
} lsm_version;

struct evs__lsm {
    const evs_vfs *vfs;     /* all file I/O */
    char *dir;              /* directory (owned) */
    char *name;             /* index name (owned) */
    int read_only;          /* 1: never write, create or delete a file */
    evs_logger lg;          /* where problems are logged */
    pthread_rwlock_t lock;  /* guards mem, imm, imm_cov, nimm, cur and the memtables' contents */
    evs__memtable *mem;     /* receives puts */
    evs__memtable *imm[LSM_MAX_IMM]; /* frozen, not yet in a run; oldest first */
    uint64_t imm_cov[LSM_MAX_IMM];   /* the covered position each was frozen at */
    size_t nimm;            /* frozen tables */
    size_t min_slots;       /* owner: the size evs__lsm_presize asked for (the least a fresh mem gets) */
    lsm_version *cur;       /* the runs readers search */
    size_t mem_count;       /* entries in mem + imm (atomic access: read from any thread) */
    /* owner state */
    uint64_t frozen_cov;    /* covered position of the last freeze (or of the manifest at open) */
    /* flusher state: what the manifest on disk says, and the merge in progress */
    uint64_t covered;       /* covered position of the last manifest */
    uint64_t next_seq;      /* next run sequence number */
    uint64_t gen;           /* generation of the last manifest */
    size_t settled;         /* the oldest runs of cur the merge policy considers */
    int merging;            /* 1: mg is under way, merging cur->runs[mstart, mstart + WIDTH) */
    size_t mstart;          /* first input's index in cur->runs */
    evs__run *min[EVS_MERGE_WIDTH]; /* the inputs (referenced while merging) */
    evs__merger mg;         /* the streaming merge */
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

static void merge_drop(evs__lsm *l)  /* abandon the merge in progress (its file is removed) */
{
    if (!l->merging)
        return;
    evs__merger_abort(&l->mg);
    for (size_t i = 0; i < EVS_MERGE_WIDTH; i++) {
        evs__run_unref(l->min[i]);
        l->min[i] = NULL;
    }
    l->merging = 0;
}

static void lsm_free(evs__lsm *l)
{
    if (!l)
        return;
    merge_drop(l);
    version_unref(l->cur);
    evs__mt_free(l->mem);
    for (size_t i = 0; i < l->nimm; i++)
        evs__mt_free(l->imm[i]);
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
    l->covered = l->frozen_cov = m.covered;
    l->next_seq = m.next_seq;
    l->gen = m.gen;
    l->cur->covered = m.covered;
    l->cur->next_seq = m.next_seq;
    l->cur->gen = m.gen;
    l->settled = l->cur->nruns;
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
    size_t n = evs__mt_entries(l->mem);
    for (size_t i = 0; i < l->nimm; i++)
        n += evs__mt_entries(l->imm[i]);
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
    for (size_t i = l->nimm; i-- > 0;)  /* newest first: an older one wins only with a smaller a */
        if (evs__mt_get(l->imm[i], key, a_min, &e) && (!found || e.a < best.a)) {
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
    for (size_t i = l->nimm; i-- > 0;)  /* newest first: an older one wins only with a larger a */
        if (evs__mt_get_last(l->imm[i], key, a_max, &e) && (!found || e.a > best.a)) {
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
    /* memtables newest first (mem, then imm newest to oldest): ties go to the lowest index */
    size_t nmt = 1 + l->nimm, ctot = 0, cnt[1 + LSM_MAX_IMM];
    for (size_t j = 0; j < nmt; j++) {
        const evs__memtable *m = j == 0 ? l->mem : l->imm[l->nimm - j];
        cnt[j] = EVS_MIN(evs__mt_count(m, key, a_lo, a_hi), max);
        ctot += cnt[j];
    }
    v = l->cur;
    version_ref(v);
    src = calloc(nmt + v->nruns, sizeof *src);
    if (ctot)
        memcopy = malloc(ctot * sizeof *memcopy);
    if (!src || (ctot && !memcopy)) {
        pthread_rwlock_unlock(&l->lock);
        rc = EVS_ENOMEM;
        goto out;
    }
    for (size_t j = 0, off = 0; j < nmt; j++) {
        const evs__memtable *m = j == 0 ? l->mem : l->imm[l->nimm - j];
        evs_kv *dst = memcopy ? memcopy + off : NULL;  /* no arithmetic on NULL (nothing to copy) */
        src[nsrc].arr = dst;
        src[nsrc++].n = evs__mt_range(m, key, a_lo, a_hi, dst, cnt[j]);
        off += cnt[j];
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

/* A new version: v's runs (referenced again), with room for one more. */
static lsm_version *version_copy(const lsm_version *v)
{
    lsm_version *nv = version_new(v->nruns + 1);
    if (!nv)
        return NULL;
    for (size_t i = 0; i < v->nruns; i++) {
        evs__run_ref(v->runs[i]);
        nv->runs[nv->nruns++] = v->runs[i];
    }
    nv->covered = v->covered;
    nv->next_seq = v->next_seq;
    nv->gen = v->gen;
    return nv;
}

/* m->runs: the manifest entries of v's runs (m->nruns = v->nruns). */
static int man_runs_of(const lsm_version *v, evs__manifest *m)
{
    m->runs = calloc(v->nruns ? v->nruns : 1, sizeof *m->runs);
    if (!m->runs)
        return EVS_ENOMEM;
    for (size_t i = 0; i < v->nruns; i++) {
        const evs__run *r = v->runs[i];
        m->runs[i] = (evs__man_run){ r->h.seq, r->h.entries, r->size, r->h.hdr_sum };
    }
    return 0;
}

/* Write the manifest naming nv's runs as covering `covered`. */
static int lsm_write_manifest(evs__lsm *l, lsm_version *nv, uint64_t covered, int *renamed)
{
    evs__manifest m = { 0 };
    m.covered = covered;
    m.next_seq = l->next_seq;
    m.gen = l->gen + 1;
    m.nruns = nv->nruns;
    int rc = man_runs_of(nv, &m);
    if (rc == 0)
        rc = evs__man_write(l->vfs, l->dir, l->name, &m, renamed);
    evs__man_free(&m);
    if (rc == 0) {
        l->gen++;
        nv->covered = covered;
        nv->next_seq = m.next_seq;
        nv->gen = l->gen;
    }
    return rc;
}

/* The manifest for nv is durable: make nv current (dropping the oldest frozen
 * table in the same step when drop_imm), doom the runs it no longer lists. */
static void lsm_install(evs__lsm *l, lsm_version *nv, int drop_imm)
{
    evs__memtable *gone = NULL;
    pthread_rwlock_wrlock(&l->lock);
    lsm_version *old = l->cur;
    l->cur = nv;
    if (drop_imm) {
        gone = l->imm[0];
        memmove(l->imm, l->imm + 1, (l->nimm - 1) * sizeof *l->imm);
        memmove(l->imm_cov, l->imm_cov + 1, (l->nimm - 1) * sizeof *l->imm_cov);
        l->nimm--;
        lsm_count(l);
    }
    pthread_rwlock_unlock(&l->lock);
    for (size_t i = 0; i < old->nruns; i++)
        if (!version_has(nv, old->runs[i]))
            atomic_store(&old->runs[i]->doomed, 1);
    version_unref(old);
    evs__mt_free(gone);  /* outside the lock: O(entries) */
}

/* A failed step: drop nv, removing the files this step made unless a manifest naming them may be in place. */
static void lsm_discard(evs__lsm *l, lsm_version *nv, int renamed)
{
    if (!nv)
        return;
    for (size_t i = 0; i < nv->nruns && !renamed; i++)
        if (!version_has(l->cur, nv->runs[i]))
            atomic_store(&nv->runs[i]->doomed, 1);
    version_unref(nv);
}

/* Slots for a memtable that is to hold `keys` keys with an eighth to spare
 * (the table keeps its load under 3/4): a checkpoint interval is a count of
 * events, but a freeze comes after the group commit that reaches it. */
static size_t lsm_slots_for(size_t keys)
{
    keys += keys / 8;
    return keys + keys / 3 + 1;
}

void evs__lsm_presize(evs__lsm *l, size_t entries)
{
    evs__memtable *m = NULL;
    size_t slots = lsm_slots_for(entries);
    if (l->read_only)
        return;
    l->min_slots = slots;
    if (evs__mt_entries(l->mem) != 0 || evs__mt_slots(l->mem) >= slots || evs__mt_new_sized(&m, slots) != 0)
        return;
    pthread_rwlock_wrlock(&l->lock);
    evs__memtable *old = l->mem;
    l->mem = m;
    pthread_rwlock_unlock(&l->lock);
    evs__mt_free(old);
}

int evs__lsm_freeze(evs__lsm *l, uint64_t covered)
{
    int rc = 0;
    evs__memtable *fresh = NULL;
    if (l->read_only)
        return EVS_EREADONLY;
    if (evs__mt_entries(l->mem) == 0 && covered == l->frozen_cov)
        return 0;  /* nothing would change */
    /* the next table is sized for as many keys as this one holds (no rehashing
     * cycle after cycle; the stores' intervals are alike), at least for what
     * presize asked for; its pages cost nothing until written, so making it
     * here is O(1) */
    size_t want = lsm_slots_for(evs__mt_keys(l->mem));
    if (want < l->min_slots)
        want = l->min_slots;
    if ((rc = evs__mt_new_sized(&fresh, want)) != 0)
        return rc;
    pthread_rwlock_wrlock(&l->lock);
    if (l->nimm == LSM_MAX_IMM) {
        rc = -EBUSY;
    } else {
        l->imm[l->nimm] = l->mem;
        l->imm_cov[l->nimm++] = covered;
        l->mem = fresh;
        fresh = NULL;
        lsm_count(l);
    }
    pthread_rwlock_unlock(&l->lock);
    evs__mt_free(fresh);
    if (rc == 0)
        l->frozen_cov = covered;
    return rc;
}

size_t evs__lsm_frozen(evs__lsm *l)
{
    pthread_rwlock_rdlock(&l->lock);
    size_t n = l->nimm;
    pthread_rwlock_unlock(&l->lock);
    return n;
}

int evs__lsm_flush(evs__lsm *l)
{
    int rc = 0, renamed = 0;
    lsm_version *nv = NULL;
    if (l->read_only)
        return EVS_EREADONLY;
    pthread_rwlock_rdlock(&l->lock);
    evs__memtable *m = l->nimm ? l->imm[0] : NULL;  /* frozen: nobody changes it any more */
    uint64_t covered = l->nimm ? l->imm_cov[0] : 0;
    pthread_rwlock_unlock(&l->lock);
    if (!m)
        return 0;
    if (!(nv = version_copy(l->cur)))  /* only this thread replaces cur */
        return EVS_ENOMEM;
    if (evs__mt_entries(m) > 0) {
        evs__run *r = NULL;
        if ((rc = lsm_write_run(l, m, l->next_seq++, &r)) != 0)
            goto out;
        if ((rc = version_push(nv, r)) != 0) {
            atomic_store(&r->doomed, 1);
            evs__run_unref(r);
            goto out;
        }
    }
    if ((nv->nruns != l->cur->nruns || covered != l->covered) &&
        (rc = lsm_write_manifest(l, nv, covered, &renamed)) != 0)
        goto out;
    /* committed: readers find the entries in the new run from now on */
    lsm_install(l, nv, 1);
    nv = NULL;
    l->covered = covered;
out:
    lsm_discard(l, nv, renamed);
    return rc;
}

int evs__lsm_merge_step(evs__lsm *l, uint64_t budget, int *more)
{
    int rc = 0, done = 0, renamed = 0;
    lsm_version *nv = NULL;
    evs__run *out = NULL;
    *more = 0;
    if (l->read_only)
        return 0;
    while (!l->merging) {
        lsm_version *v = l->cur;
        size_t n = EVS_MIN(l->settled, v->nruns), start = 0;
        uint64_t sizes[EVS_MERGE_MAX_RUNS * 4 + EVS_MERGE_WIDTH];
        uint64_t *sz = n <= sizeof sizes / sizeof sizes[0] ? sizes : malloc(n * sizeof *sz);
        if (!sz)
            return EVS_ENOMEM;
        for (size_t i = 0; i < n; i++)
            sz[i] = v->runs[i]->h.entries;
        int pick = evs__merge_pick(sz, n, &start);
        if (sz != sizes)
            free(sz);
        if (!pick) {
            if (l->settled >= v->nruns)
                return 0;  /* nothing to merge */
            l->settled++;  /* the next flushed run joins the merge policy */
            continue;
        }
        for (size_t i = 0; i < EVS_MERGE_WIDTH; i++) {
            l->min[i] = v->runs[start + i];
            evs__run_ref(l->min[i]);
        }
        l->mstart = start;
        l->merging = 1;
        if ((rc = evs__merger_begin(&l->mg, l->vfs, &l->lg, l->dir, l->name, l->next_seq++, l->min,
                                    EVS_MERGE_WIDTH)) != 0)
            goto fail;
    }
    if ((rc = evs__merger_step(&l->mg, budget, &done)) != 0)
        goto fail;
    if (!done) {
        *more = 1;
        return 0;
    }
    if ((rc = evs__merger_finish(&l->mg, &out)) != 0)
        goto fail;
    /* the new version: the inputs' window (still where it was: flushes only append) replaced */
    lsm_version *v = l->cur;
    nv = version_new(v->nruns);
    if (!nv) {
        rc = EVS_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < v->nruns; i++) {
        if (i >= l->mstart && i < l->mstart + EVS_MERGE_WIDTH) {
            if (v->runs[i] != l->min[i - l->mstart]) {
                rc = EVS_EINVAL;  /* cannot happen: only this thread changes cur */
                goto fail;
            }
            if (i == l->mstart) {
                nv->runs[nv->nruns++] = out;
                out = NULL;
            }
            continue;
        }
        evs__run_ref(v->runs[i]);
        nv->runs[nv->nruns++] = v->runs[i];
    }
    if ((rc = lsm_write_manifest(l, nv, l->covered, &renamed)) != 0)
        goto fail;
    lsm_install(l, nv, 0);  /* dooms the inputs */
    nv = NULL;
    l->settled -= EVS_MERGE_WIDTH - 1;
    merge_drop(l);
    *more = 1;  /* the policy may pick again (cascades) */
    return 0;
fail:
    if (out) {
        if (!renamed)
            atomic_store(&out->doomed, 1);
        evs__run_unref(out);
    }
    lsm_discard(l, nv, renamed);
    merge_drop(l);
    return rc;
}

int evs__lsm_checkpoint(evs__lsm *l, uint64_t covered)
{
    int rc = 0, more = 1;
    if (l->read_only)
        return EVS_EREADONLY;
    while (evs__lsm_frozen(l) > 0)  /* what an earlier failed checkpoint left frozen first */
        if ((rc = evs__lsm_flush(l)) != 0)
            return rc;
    if ((rc = evs__lsm_freeze(l, covered)) != 0 || (rc = evs__lsm_flush(l)) != 0)
        return rc;
    while (rc == 0 && more)
        rc = evs__lsm_merge_step(l, UINT64_MAX, &more);
    return rc;
}

/* ---- pins (lsm_ext.h) ---- */

struct evs__lsm_pinned {
    lsm_version *v;         /* one reference: its runs (and their files) stay */
    char *name;             /* the index name (owned) */
};

int evs__lsm_pin(evs__lsm *l, evs__lsm_pinned **out)
{
    *out = NULL;
    evs__lsm_pinned *p = calloc(1, sizeof *p);
    if (!p || !(p->name = strdup(l->name))) {
        free(p);
        return EVS_ENOMEM;
    }
    pthread_rwlock_rdlock(&l->lock);
    p->v = l->cur;
    version_ref(p->v);
    pthread_rwlock_unlock(&l->lock);
    *out = p;
    return 0;
}

void evs__lsm_unpin(evs__lsm_pinned *p)
{
    if (!p)
        return;
    version_unref(p->v);  /* a run merged away meanwhile is unlinked now */
    free(p->name);
    free(p);
}

uint64_t evs__lsm_pin_covered(const evs__lsm_pinned *p) { return p->v->covered; }

size_t evs__lsm_pin_nruns(const evs__lsm_pinned *p) { return p->v->nruns; }

int evs__lsm_pin_run(const evs__lsm_pinned *p, size_t i, char *name, size_t cap, evs_file **f, uint64_t *size)
{
    const evs__run *r = p->v->runs[i];
    *f = r->f;
    *size = r->size;
    return evs__idx_run_name(name, cap, p->name, r->h.seq, 0);
}

int evs__lsm_pin_manifest(const evs__lsm_pinned *p, char *name, size_t cap, uint8_t **out, size_t *len)
{
    const lsm_version *v = p->v;
    int rc = evs__idx_man_name(name, cap, p->name, 0);
    if (rc)
        return rc;
    evs__manifest m = { .covered = v->covered, .next_seq = v->next_seq, .gen = v->gen, .nruns = v->nruns };
    if ((rc = man_runs_of(v, &m)) == 0)
        rc = evs__man_encode(&m, out, len);
    evs__man_free(&m);
    return rc;
}
