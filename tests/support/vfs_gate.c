/*
 * vfs_gate.c — the gating evs_vfs wrapper (see vfs_gate.h).
 *
 * Invariants: count is the number of calls of the armed (op, match) begun
 * since the arm; the call whose count equals nth is the gated one. `hit` is
 * set (and broadcast) when it arrives; a blocking gate then waits on `cv`
 * until `released`. The mutex is released while the call waits and before
 * the wrapped vfs is called.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vfs_gate.h"

typedef struct gate_vfs {
    evs_vfs vfs;              /* must be first; vfs.ctx points back here */
    const evs_vfs *inner;     /* the wrapped vfs (borrowed) */
    pthread_mutex_t mu;       /* the fields below */
    pthread_cond_t cv;        /* hit / released changes */
    int armed;                /* an arm is in place */
    vfs_gate_op op;           /* what it stops */
    char *match;              /* path substring (owned) */
    uint64_t nth, count;      /* the call to stop; matching calls so far */
    int err;                  /* 0: block; else fail with -err */
    int hit;                  /* the call was reached */
    uint64_t gen;             /* arms so far */
    uint64_t released;        /* the arm (gen) whose blocked call may go on */
} gate_vfs;

typedef struct gate_file {
    evs_file base;            /* must be first */
    evs_file *inner;          /* the wrapped file (owned) */
    char *path;               /* for matching (owned) */
} gate_file;

static int gt_open(const evs_vfs *vfs, const char *path, unsigned flags, evs_file **out);

static gate_vfs *G(const evs_vfs *vfs)
{
    if (!vfs || vfs->open != gt_open)
        abort();  /* a control function given another vfs: a test bug */
    return (gate_vfs *)vfs->ctx;
}

/* 0 to forward the call; else the error to return. May block. */
static int pass(const evs_vfs *vfs, vfs_gate_op op, const char *path)
{
    gate_vfs *g = vfs->ctx;
    int rc = 0;
    pthread_mutex_lock(&g->mu);
    if (g->armed && !g->hit && op == g->op && strstr(path, g->match) && ++g->count == g->nth) {
        g->hit = 1;
        pthread_cond_broadcast(&g->cv);
        if (g->err) {
            rc = -g->err;
            g->armed = 0;
        } else {
            uint64_t mine = g->gen;  /* a later arm must not hold this call again */
            while (g->released < mine)
                pthread_cond_wait(&g->cv, &g->mu);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

static evs_file *IN(evs_file *f) { return ((gate_file *)f)->inner; }
static const char *PATH(evs_file *f) { return ((gate_file *)f)->path; }

static int gt_open(const evs_vfs *vfs, const char *path, unsigned flags, evs_file **out)
{
    gate_vfs *g = vfs->ctx;
    int rc = pass(vfs, VFS_GATE_OPEN, path);
    if (rc)
        return rc;
    gate_file *gf = calloc(1, sizeof *gf);
    if (!gf || !(gf->path = strdup(path)))
        abort();  /* test code */
    if ((rc = g->inner->open(g->inner, path, flags, &gf->inner)) != 0) {
        free(gf->path);
        free(gf);
        return rc;
    }
    gf->base.vfs = vfs;
    *out = &gf->base;
    return 0;
}

static int gt_close(evs_file *f)
{
    int rc = evs__fclose(IN(f));
    free(((gate_file *)f)->path);
    free(f);
    return rc;
}

static int gt_pread(evs_file *f, void *buf, size_t n, uint64_t off, size_t *got)
{
    return IN(f)->vfs->pread(IN(f), buf, n, off, got);
}

static int gt_pwrite(evs_file *f, const void *buf, size_t n, uint64_t off, size_t *written)
{
    int rc = pass(f->vfs, VFS_GATE_PWRITE, PATH(f));
    if (rc) {
        if (written)
            *written = 0;
        return rc;
    }
    return IN(f)->vfs->pwrite(IN(f), buf, n, off, written);
}

static int gt_sync(evs_file *f)
{
    int rc = pass(f->vfs, VFS_GATE_SYNC, PATH(f));
    return rc ? rc : IN(f)->vfs->sync(IN(f));
}

static int gt_datasync(evs_file *f)
{
    int rc = pass(f->vfs, VFS_GATE_SYNC, PATH(f));
    return rc ? rc : IN(f)->vfs->datasync(IN(f));
}

static int gt_truncate(evs_file *f, uint64_t size) { return IN(f)->vfs->truncate(IN(f), size); }
static int gt_size(evs_file *f, uint64_t *size) { return IN(f)->vfs->size(IN(f), size); }
static int gt_lock(evs_file *f) { return IN(f)->vfs->lock(IN(f)); }

#define INNER(vfs) (((gate_vfs *)(vfs)->ctx)->inner)

static int gt_rename(const evs_vfs *vfs, const char *from, const char *to)
{
    int rc = pass(vfs, VFS_GATE_RENAME, to);
    return rc ? rc : INNER(vfs)->rename(INNER(vfs), from, to);
}

static int gt_sync_dir(const evs_vfs *vfs, const char *path)
{
    int rc = pass(vfs, VFS_GATE_SYNC_DIR, path);
    return rc ? rc : INNER(vfs)->sync_dir(INNER(vfs), path);
}

static int gt_unlink(const evs_vfs *vfs, const char *path) { return INNER(vfs)->unlink(INNER(vfs), path); }
static int gt_mkdir(const evs_vfs *vfs, const char *path) { return INNER(vfs)->mkdir(INNER(vfs), path); }
static int gt_exists(const evs_vfs *vfs, const char *path) { return INNER(vfs)->exists(INNER(vfs), path); }
static int gt_rmdir(const evs_vfs *vfs, const char *path)
{
    return INNER(vfs)->rmdir ? INNER(vfs)->rmdir(INNER(vfs), path) : -ENOSYS;
}

static int gt_list_dir(const evs_vfs *vfs, const char *path, int (*cb)(void *cbctx, const char *name),
                       void *cbctx)
{
    return INNER(vfs)->list_dir(INNER(vfs), path, cb, cbctx);
}

evs_vfs *vfs_gate_new(const evs_vfs *inner)
{
    gate_vfs *g = calloc(1, sizeof *g);
    if (!g)
        abort();
    g->vfs = (evs_vfs){
        .version = EVS_VFS_VERSION,
        .name = "gate",
        .ctx = g,
        .open = gt_open,
        .close = gt_close,
        .pread = gt_pread,
        .pwrite = gt_pwrite,
        .sync = gt_sync,
        .datasync = gt_datasync,
        .truncate = gt_truncate,
        .size = gt_size,
        .lock = gt_lock,
        .rename = gt_rename,
        .unlink = gt_unlink,
        .mkdir = gt_mkdir,
        .sync_dir = gt_sync_dir,
        .list_dir = gt_list_dir,
        .exists = gt_exists,
        .rmdir = gt_rmdir,
    };
    g->inner = inner ? inner : evs__vfs_posix();
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    return &g->vfs;
}

void vfs_gate_free(evs_vfs *vfs)
{
    if (!vfs)
        return;
    gate_vfs *g = G(vfs);
    vfs_gate_release(vfs);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->match);
    free(g);
}

void vfs_gate_arm(evs_vfs *vfs, vfs_gate_op op, const char *match, uint64_t nth, int err)
{
    gate_vfs *g = G(vfs);
    char *m = strdup(match ? match : "");
    if (!m)
        abort();
    pthread_mutex_lock(&g->mu);
    free(g->match);
    g->match = m;
    g->op = op;
    g->nth = nth ? nth : 1;
    g->count = 0;
    g->err = err < 0 ? -err : err;
    g->hit = 0;
    g->gen++;
    g->armed = 1;
    pthread_mutex_unlock(&g->mu);
}

int vfs_gate_wait_hit(evs_vfs *vfs, int timeout_ms)
{
    gate_vfs *g = G(vfs);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&g->mu);
    while (!g->hit && rc == 0)
        rc = pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    int hit = g->hit;
    pthread_mutex_unlock(&g->mu);
    return hit ? 0 : -ETIMEDOUT;
}

void vfs_gate_release(evs_vfs *vfs)
{
    gate_vfs *g = G(vfs);
    pthread_mutex_lock(&g->mu);
    g->released = g->gen;
    g->armed = 0;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

int vfs_gate_hit(const evs_vfs *vfs)
{
    gate_vfs *g = G(vfs);
    pthread_mutex_lock(&g->mu);
    int h = g->hit;
    pthread_mutex_unlock(&g->mu);
    return h;
}
