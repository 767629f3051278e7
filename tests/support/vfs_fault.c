/*
 * vfs_fault.c — the fault-injecting evs_vfs wrapper (see vfs_fault.h).
 *
 * Invariants: count[c] is the number of calls of class c begun so far; an
 * arm fires at the call whose count equals arm.at (and, with PERSIST, at
 * every later one). The decision is made and recorded under the mutex; the
 * wrapped vfs is called after it is released, so a slow or blocking inner
 * call never serialises other threads.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vfs_fault.h"

typedef struct fault_arm {
    uint64_t at;    /* the count at which it fires; 0: disarmed */
    int err;        /* negative errno to return */
    int flags;      /* VFS_FAULT_* */
} fault_arm;

typedef struct fault_vfs {
    evs_vfs vfs;                            /* must be first: callers hold &vfs; vfs.ctx points back here */
    const evs_vfs *inner;                   /* the wrapped vfs (borrowed) */
    pthread_mutex_t mu;                     /* guards the fields below */
    uint64_t count[VFS_FAULT_NCLASSES];     /* calls per class */
    uint64_t injected[VFS_FAULT_NCLASSES];  /* failures injected per class */
    fault_arm arm[VFS_FAULT_NCLASSES];      /* what to fail, per class */
    uint64_t rng;                           /* PRNG state for short-write lengths */
    void (*hook[VFS_FAULT_NCLASSES])(void *, vfs_fault_class); /* called before each call of a class */
    void *hook_ctx[VFS_FAULT_NCLASSES];
} fault_vfs;

typedef struct fault_file {
    evs_file base;      /* must be first: the store sees only this */
    evs_file *inner;    /* the wrapped vfs's file, owned */
} fault_file;

/* What one call should do, decided under the mutex. */
typedef struct fault_decision {
    int err;            /* 0: forward normally; else the negative errno to return */
    int shorted;        /* 1: write short_len bytes first (PWRITE + SHORT) */
    size_t short_len;   /* prefix length for a short write */
} fault_decision;

static int ft_open(const evs_vfs *vfs, const char *path, unsigned flags, evs_file **out);

static fault_vfs *F(const evs_vfs *vfs)
{
    /* Control functions given another kind of vfs is a test bug: stop loudly. */
    if (!vfs || vfs->open != ft_open)
        abort();
    return (fault_vfs *)vfs->ctx;
}

/* Count a call of cls (n: bytes, for a possible short write) and decide its fate. */
static fault_decision decide(const evs_vfs *vfs, vfs_fault_class cls, size_t n)
{
    fault_vfs *fv = vfs->ctx;
    fault_decision d = { 0, 0, 0 };
    pthread_mutex_lock(&fv->mu);
    void (*hook)(void *, vfs_fault_class) = fv->hook[cls];
    void *hook_ctx = fv->hook_ctx[cls];
    pthread_mutex_unlock(&fv->mu);
    if (hook)
        hook(hook_ctx, cls);
    pthread_mutex_lock(&fv->mu);
    uint64_t c = ++fv->count[cls];
    fault_arm *a = &fv->arm[cls];
    if (a->at && (c == a->at || (c > a->at && (a->flags & VFS_FAULT_PERSIST)))) {
        d.err = a->err;
        if (a->flags & VFS_FAULT_SHORT) {
            d.shorted = 1;
            d.short_len = n ? (size_t)evs_test_rand_range(&fv->rng, 0, n - 1) : 0;
        }
        fv->injected[cls]++;
        if (!(a->flags & VFS_FAULT_PERSIST))
            a->at = 0;
    }
    pthread_mutex_unlock(&fv->mu);
    return d;
}

static evs_file *IN(evs_file *f) { return ((fault_file *)f)->inner; }

static int ft_open(const evs_vfs *vfs, const char *path, unsigned flags, evs_file **out)
{
    fault_vfs *fv = vfs->ctx;
    fault_decision d = decide(vfs, VFS_FAULT_OPEN, 0);
    if (d.err)
        return d.err;
    fault_file *ff = calloc(1, sizeof *ff);
    if (!ff)
        return EVS_ENOMEM;
    int rc = fv->inner->open(fv->inner, path, flags, &ff->inner);
    if (rc) {
        free(ff);
        return rc;
    }
    ff->base.vfs = vfs;
    *out = &ff->base;
    return 0;
}

static int ft_close(evs_file *f)
{
    int rc = evs__fclose(IN(f));
    free(f);
    return rc;
}

static int ft_pread(evs_file *f, void *buf, size_t n, uint64_t off, size_t *got)
{
    fault_decision d = decide(f->vfs, VFS_FAULT_PREAD, n);
    if (d.err) {
        *got = 0;
        return d.err;
    }
    return IN(f)->vfs->pread(IN(f), buf, n, off, got);
}

static int ft_pwrite(evs_file *f, const void *buf, size_t n, uint64_t off, size_t *written)
{
    fault_decision d = decide(f->vfs, VFS_FAULT_PWRITE, n);
    if (!d.err)
        return IN(f)->vfs->pwrite(IN(f), buf, n, off, written);
    size_t done = 0;
    if (d.shorted && d.short_len) {
        int rc = IN(f)->vfs->pwrite(IN(f), buf, d.short_len, off, &done);
        if (rc) {
            if (written) *written = done;
            return rc;
        }
    }
    if (written) *written = done;
    return d.err;
}

static int ft_sync(evs_file *f)
{
    fault_decision d = decide(f->vfs, VFS_FAULT_SYNC, 0);
    return d.err ? d.err : IN(f)->vfs->sync(IN(f));
}

static int ft_datasync(evs_file *f)
{
    fault_decision d = decide(f->vfs, VFS_FAULT_SYNC, 0);
    return d.err ? d.err : IN(f)->vfs->datasync(IN(f));
}

static int ft_truncate(evs_file *f, uint64_t size)
{
    fault_decision d = decide(f->vfs, VFS_FAULT_TRUNCATE, 0);
    return d.err ? d.err : IN(f)->vfs->truncate(IN(f), size);
}

static int ft_size(evs_file *f, uint64_t *size) { return IN(f)->vfs->size(IN(f), size); }
static int ft_lock(evs_file *f) { return IN(f)->vfs->lock(IN(f)); }

static int ft_rename(const evs_vfs *vfs, const char *from, const char *to)
{
    const evs_vfs *in = ((fault_vfs *)vfs->ctx)->inner;
    fault_decision d = decide(vfs, VFS_FAULT_RENAME, 0);
    return d.err ? d.err : in->rename(in, from, to);
}

static int ft_unlink(const evs_vfs *vfs, const char *path)
{
    const evs_vfs *in = ((fault_vfs *)vfs->ctx)->inner;
    fault_decision d = decide(vfs, VFS_FAULT_UNLINK, 0);
    return d.err ? d.err : in->unlink(in, path);
}

static int ft_sync_dir(const evs_vfs *vfs, const char *path)
{
    const evs_vfs *in = ((fault_vfs *)vfs->ctx)->inner;
    fault_decision d = decide(vfs, VFS_FAULT_SYNC_DIR, 0);
    return d.err ? d.err : in->sync_dir(in, path);
}

static int ft_mkdir(const evs_vfs *vfs, const char *path)
{
    const evs_vfs *in = ((fault_vfs *)vfs->ctx)->inner;
    return in->mkdir(in, path);
}

static int ft_list_dir(const evs_vfs *vfs, const char *path,
                       int (*cb)(void *cbctx, const char *name), void *cbctx)
{
    const evs_vfs *in = ((fault_vfs *)vfs->ctx)->inner;
    return in->list_dir(in, path, cb, cbctx);
}

static int ft_exists(const evs_vfs *vfs, const char *path)
{
    const evs_vfs *in = ((fault_vfs *)vfs->ctx)->inner;
    return in->exists(in, path);
}

evs_vfs *vfs_fault_new(const evs_vfs *inner)
{
    fault_vfs *fv = calloc(1, sizeof *fv);
    if (!fv)
        abort();  /* test code */
    fv->vfs = (evs_vfs){
        .version = EVS_VFS_VERSION,
        .name = "fault",
        .ctx = fv,
        .open = ft_open,
        .close = ft_close,
        .pread = ft_pread,
        .pwrite = ft_pwrite,
        .sync = ft_sync,
        .datasync = ft_datasync,
        .truncate = ft_truncate,
        .size = ft_size,
        .lock = ft_lock,
        .rename = ft_rename,
        .unlink = ft_unlink,
        .mkdir = ft_mkdir,
        .sync_dir = ft_sync_dir,
        .list_dir = ft_list_dir,
        .exists = ft_exists,
    };
    fv->inner = inner ? inner : evs__vfs_posix();
    fv->rng = evs_test_seed();
    pthread_mutex_init(&fv->mu, NULL);
    return &fv->vfs;
}

void vfs_fault_free(evs_vfs *vfs)
{
    if (!vfs)
        return;
    fault_vfs *fv = F(vfs);
    pthread_mutex_destroy(&fv->mu);
    free(fv);
}

int vfs_fault_arm(evs_vfs *vfs, vfs_fault_class cls, uint64_t nth, int err, int flags)
{
    fault_vfs *fv = F(vfs);
    if ((unsigned)cls >= VFS_FAULT_NCLASSES || nth == 0 || err == 0)
        return -EINVAL;
    if ((flags & VFS_FAULT_SHORT) && cls != VFS_FAULT_PWRITE)
        return -EINVAL;
    if (flags & ~(VFS_FAULT_PERSIST | VFS_FAULT_SHORT))
        return -EINVAL;
    pthread_mutex_lock(&fv->mu);
    fv->arm[cls].at = fv->count[cls] + nth;
    fv->arm[cls].err = err < 0 ? err : -err;
    fv->arm[cls].flags = flags;
    pthread_mutex_unlock(&fv->mu);
    return 0;
}

void vfs_fault_disarm(evs_vfs *vfs, vfs_fault_class cls)
{
    fault_vfs *fv = F(vfs);
    pthread_mutex_lock(&fv->mu);
    for (int c = 0; c < VFS_FAULT_NCLASSES; c++)
        if (cls == VFS_FAULT_NCLASSES || (int)cls == c)
            fv->arm[c].at = 0;
    pthread_mutex_unlock(&fv->mu);
}

void vfs_fault_set_hook(evs_vfs *vfs, vfs_fault_class cls, void (*fn)(void *ctx, vfs_fault_class cls), void *ctx)
{
    fault_vfs *fv = F(vfs);
    if ((unsigned)cls >= VFS_FAULT_NCLASSES)
        return;
    pthread_mutex_lock(&fv->mu);
    fv->hook[cls] = fn;
    fv->hook_ctx[cls] = ctx;
    pthread_mutex_unlock(&fv->mu);
}

uint64_t vfs_fault_count(const evs_vfs *vfs, vfs_fault_class cls)
{
    fault_vfs *fv = F(vfs);
    if ((unsigned)cls >= VFS_FAULT_NCLASSES)
        return 0;
    pthread_mutex_lock(&fv->mu);
    uint64_t n = fv->count[cls];
    pthread_mutex_unlock(&fv->mu);
    return n;
}

uint64_t vfs_fault_injected(const evs_vfs *vfs, vfs_fault_class cls)
{
    fault_vfs *fv = F(vfs);
    if ((unsigned)cls >= VFS_FAULT_NCLASSES)
        return 0;
    pthread_mutex_lock(&fv->mu);
    uint64_t n = fv->injected[cls];
    pthread_mutex_unlock(&fv->mu);
    return n;
}

void vfs_fault_set_seed(evs_vfs *vfs, uint64_t seed)
{
    fault_vfs *fv = F(vfs);
    pthread_mutex_lock(&fv->mu);
    fv->rng = seed;
    pthread_mutex_unlock(&fv->mu);
}
