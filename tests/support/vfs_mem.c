/*
 * vfs_mem.c — the in-memory evs_vfs with a power-cut model (see vfs_mem.h
 * for the model itself; this file implements it).
 *
 * Representation. An inode is a file or a directory. Every inode ever made
 * lives in mem_vfs.inodes (creation order, which also fixes the order in which
 * the crash image consumes random numbers). A file inode has its current
 * bytes, its durable bytes and the pending data operations that lead from the
 * durable bytes to the current ones. A directory inode has its current
 * entries, its durable entries and the pending namespace operations that lead
 * from the durable entries to the current ones.
 *
 * Invariants (all under mem_vfs.mu):
 *  - file:  applying ops[0..nops) in order to dur gives cur.
 *  - dir:   applying nsops[0..nnsops) in order to dents gives ents.
 *  - an inode is freed only when unreachable from the root through current
 *    entries, durable entries and pending namespace operations, and no handle
 *    refers to it (mark-and-sweep in gc()).
 *  - dead: the power is off; every method returns -EIO. The post-crash image
 *    was already written into the durable fields and every pending list is
 *    empty, so restart only copies durable to current.
 *  - a handle is stale when its epoch differs from mem_vfs.epoch (it was
 *    opened before the last restart); stale handles fail with -EIO.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "vfs_mem.h"

#define MEM_NAME_MAX 255
#define MEM_PATH_MAX 4096
#define MEM_FILE_MAX ((uint64_t)1 << 32)

/* ---- allocation: test code, so running out of memory just aborts ---- */

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        abort();
    return q;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xrealloc(NULL, n), s, n);
}

/* v (elements of size sz, *cap of them) grown to hold at least need. */
static void *grow(void *v, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap)
        return v;
    size_t c = *cap ? *cap * 2 : 8;
    while (c < need)
        c *= 2;
    *cap = c;
    return xrealloc(v, c * sz);
}

/* ---- byte strings: file contents ---- */

typedef struct mem_bytes {
    uint8_t *p;     /* NULL until the first byte; bytes past len are garbage */
    size_t len;     /* the file size */
    size_t cap;     /* bytes allocated at p */
} mem_bytes;

/* Set the size to n; bytes exposed by growing read as zeros (a hole). */
static void bytes_resize(mem_bytes *b, size_t n)
{
    if (n > b->len) {
        b->p = grow(b->p, &b->cap, n, 1);
        memset(b->p + b->len, 0, n - b->len);
    }
    b->len = n;
}

static void bytes_write(mem_bytes *b, size_t off, const uint8_t *src, size_t n)
{
    if (off + n > b->len)
        bytes_resize(b, off + n);
    memcpy(b->p + off, src, n);
}

static void bytes_copy(mem_bytes *dst, const mem_bytes *src)
{
    dst->len = 0;
    bytes_resize(dst, src->len);
    if (src->len)
        memcpy(dst->p, src->p, src->len);
}

/* ---- inodes ---- */

typedef struct mem_inode mem_inode;

/* A pending data operation of a file (since its last sync). */
typedef struct mem_op {
    int is_trunc;   /* 1: truncate to off; 0: write len bytes of data at off */
    size_t off;     /* write offset, or the new size for a truncate */
    size_t len;     /* bytes in data (0 for a truncate) */
    uint8_t *data;  /* owned copy of the written bytes; NULL for a truncate */
} mem_op;

/* One name in a directory. */
typedef struct mem_dent {
    char *name;       /* owned, one path component */
    mem_inode *ino;   /* what it names */
} mem_dent;

typedef struct mem_dents {
    mem_dent *v;    /* entries in insertion order */
    size_t n;       /* entries in use */
    size_t cap;     /* entries allocated */
} mem_dents;

/* A pending namespace operation of a directory: bind set_name to set_ino
 * and/or remove del_name, atomically (a rename within one directory is both). */
typedef struct mem_nsop {
    char *set_name;     /* owned; NULL: nothing to bind */
    mem_inode *set_ino; /* the inode set_name comes to name */
    char *del_name;     /* owned; NULL: nothing to remove */
} mem_nsop;

struct mem_inode {
    int is_dir;            /* 1: directory (uses the dir fields), 0: file */
    int mark;              /* gc scratch: reachable in the current sweep */
    unsigned handles;      /* open handles on it, stale ones included (they pin it) */
    const void *locker;    /* the handle holding the lock, or NULL */
    mem_bytes cur;         /* file: what reads see */
    mem_bytes dur;         /* file: what survives a power cut for sure */
    mem_op *ops;           /* file: writes/truncates since the last sync, in order */
    size_t nops;           /* file: entries in ops */
    size_t capops;         /* file: entries allocated in ops */
    mem_dents ents;        /* dir: current entries */
    mem_dents dents;       /* dir: durable entries */
    mem_nsop *nsops;       /* dir: namespace operations since the last sync_dir, in order */
    size_t nnsops;         /* dir: entries in nsops */
    size_t capnsops;       /* dir: entries allocated in nsops */
};

typedef struct mem_vfs {
    evs_vfs vfs;            /* must be first: callers hold &vfs; vfs.ctx points back here */
    pthread_mutex_t mu;     /* guards everything below and every inode */
    mem_inode *root;        /* "/", always present and durable */
    mem_inode **inodes;     /* every live inode, in creation order */
    size_t ninodes;         /* entries in inodes */
    size_t capinodes;       /* entries allocated in inodes */
    size_t live_at_gc;      /* ninodes after the last gc: the next one runs at twice that */
    uint64_t syncs;         /* sync-class calls counted so far */
    uint64_t crash_in;      /* 0: disarmed; else the crash happens at this many more syncs */
    int dead;               /* 1: power is off, every call fails with -EIO */
    uint64_t epoch;         /* bumped at each restart; handles from older epochs are stale */
    uint64_t rng;           /* PRNG state for the crash image */
    vfs_mem_crash_mode mode;/* what a crash keeps */
    unsigned open_files;    /* handles not yet closed */
} mem_vfs;

/* An open file. */
typedef struct mem_file {
    evs_file base;      /* must be first: the store sees only this */
    mem_inode *ino;     /* the file (pinned by ino->handles) */
    int writable;       /* opened with EVS_O_RDWR */
    uint64_t epoch;     /* mem_vfs.epoch when opened */
} mem_file;

static int mem_open(const evs_vfs *vfs, const char *path, unsigned flags, evs_file **out);

static mem_vfs *M(const evs_vfs *vfs)
{
    /* Control functions given another kind of vfs is a test bug: stop loudly. */
    if (!vfs || vfs->open != mem_open)
        abort();
    return (mem_vfs *)vfs->ctx;
}

static mem_inode *inode_new(mem_vfs *m, int is_dir)
{
    mem_inode *ino = xrealloc(NULL, sizeof *ino);
    memset(ino, 0, sizeof *ino);
    ino->is_dir = is_dir;
    m->inodes = grow(m->inodes, &m->capinodes, m->ninodes + 1, sizeof *m->inodes);
    m->inodes[m->ninodes++] = ino;
    return ino;
}

static void ops_clear(mem_inode *ino)
{
    for (size_t i = 0; i < ino->nops; i++)
        free(ino->ops[i].data);
    ino->nops = 0;
}

static void dents_clear(mem_dents *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->v[i].name);
    d->n = 0;
}

static void nsops_clear(mem_inode *ino)
{
    for (size_t i = 0; i < ino->nnsops; i++) {
        free(ino->nsops[i].set_name);
        free(ino->nsops[i].del_name);
    }
    ino->nnsops = 0;
}

static void inode_free(mem_inode *ino)
{
    ops_clear(ino);
    nsops_clear(ino);
    dents_clear(&ino->ents);
    dents_clear(&ino->dents);
    free(ino->ops);
    free(ino->nsops);
    free(ino->ents.v);
    free(ino->dents.v);
    free(ino->cur.p);
    free(ino->dur.p);
    free(ino);
}

/* ---- directory entries ---- */

static mem_dent *dents_find(const mem_dents *d, const char *name)
{
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->v[i].name, name))
            return &d->v[i];
    return NULL;
}

static void dents_set(mem_dents *d, const char *name, mem_inode *ino)
{
    mem_dent *e = dents_find(d, name);
    if (e) {
        e->ino = ino;
        return;
    }
    d->v = grow(d->v, &d->cap, d->n + 1, sizeof *d->v);
    d->v[d->n].name = xstrdup(name);
    d->v[d->n].ino = ino;
    d->n++;
}

static void dents_del(mem_dents *d, const char *name)
{
    mem_dent *e = dents_find(d, name);
    if (!e)
        return;
    size_t i = (size_t)(e - d->v);
    free(e->name);
    /* Keep insertion order: list_dir output stays stable and deterministic. */
    memmove(&d->v[i], &d->v[i + 1], (d->n - i - 1) * sizeof *d->v);
    d->n--;
}

static void dents_copy(mem_dents *dst, const mem_dents *src)
{
    dents_clear(dst);
    for (size_t i = 0; i < src->n; i++)
        dents_set(dst, src->v[i].name, src->v[i].ino);
}

static void nsop_apply(mem_dents *d, const mem_nsop *op)
{
    if (op->set_name)
        dents_set(d, op->set_name, op->set_ino);
    if (op->del_name)
        dents_del(d, op->del_name);
}

/* Change dir's current entries and log the change as one pending operation. */
static void ns_change(mem_inode *dir, const char *set_name, mem_inode *set_ino, const char *del_name)
{
    dir->nsops = grow(dir->nsops, &dir->capnsops, dir->nnsops + 1, sizeof *dir->nsops);
    mem_nsop *op = &dir->nsops[dir->nnsops++];
    op->set_name = set_name ? xstrdup(set_name) : NULL;
    op->set_ino = set_ino;
    op->del_name = del_name ? xstrdup(del_name) : NULL;
    nsop_apply(&dir->ents, op);
}

/* ---- file data ---- */

static void op_apply(mem_bytes *b, const mem_op *op)
{
    if (op->is_trunc)
        bytes_resize(b, op->off);
    else
        bytes_write(b, op->off, op->data, op->len);
}

/* Change the file's current bytes and log the change as a pending operation. */
static void data_change(mem_inode *ino, int is_trunc, size_t off, const void *data, size_t len)
{
    ino->ops = grow(ino->ops, &ino->capops, ino->nops + 1, sizeof *ino->ops);
    mem_op *op = &ino->ops[ino->nops++];
    op->is_trunc = is_trunc;
    op->off = off;
    op->len = len;
    op->data = NULL;
    if (!is_trunc) {
        op->data = xrealloc(NULL, len);
        memcpy(op->data, data, len);
    }
    op_apply(&ino->cur, op);
}

/* sync/datasync: the pending operations reach the durable bytes. Replaying
 * them (rather than copying cur) keeps a sync O(bytes written since). */
static void data_sync(mem_inode *ino)
{
    for (size_t i = 0; i < ino->nops; i++)
        op_apply(&ino->dur, &ino->ops[i]);
    ops_clear(ino);
}

/* ---- garbage collection ---- */

static void mark(mem_inode *ino)
{
    if (!ino || ino->mark)
        return;
    ino->mark = 1;
    for (size_t i = 0; i < ino->ents.n; i++)
        mark(ino->ents.v[i].ino);
    for (size_t i = 0; i < ino->dents.n; i++)
        mark(ino->dents.v[i].ino);
    for (size_t i = 0; i < ino->nnsops; i++)
        mark(ino->nsops[i].set_ino);
}

static void gc(mem_vfs *m)
{
    for (size_t i = 0; i < m->ninodes; i++)
        m->inodes[i]->mark = 0;
    mark(m->root);
    for (size_t i = 0; i < m->ninodes; i++)
        if (m->inodes[i]->handles)
            mark(m->inodes[i]);
    size_t k = 0;
    for (size_t i = 0; i < m->ninodes; i++) {
        if (m->inodes[i]->mark)
            m->inodes[k++] = m->inodes[i];
        else
            inode_free(m->inodes[i]);
    }
    m->ninodes = k;
    m->live_at_gc = k;
}

/* Unlinked files stay until nothing can bring them back; sweep now and then
 * so a workload that churns temp files does not grow without bound. */
static void maybe_gc(mem_vfs *m)
{
    if (m->ninodes > 2 * m->live_at_gc + 32)
        gc(m);
}

/* ---- paths ---- */

/*
 * Resolve path through current entries. On success *dir is the directory
 * holding the last component (NULL for the root itself), name receives that
 * component, and *ino is what it names (NULL if absent).
 * @return 0; -ENOENT or -ENOTDIR for a bad intermediate component;
 *         -ENAMETOOLONG; -EINVAL for "..".
 */
static int walk(mem_vfs *m, const char *path, mem_inode **dir, char name[MEM_NAME_MAX + 1],
                mem_inode **ino)
{
    if (strlen(path) >= MEM_PATH_MAX)
        return -ENAMETOOLONG;
    *dir = NULL;
    *ino = m->root;
    name[0] = '\0';
    const char *p = path;
    for (;;) {
        while (*p == '/')
            p++;
        if (!*p)
            return 0;
        size_t n = strcspn(p, "/");
        if (n > MEM_NAME_MAX)
            return -ENAMETOOLONG;
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return -EINVAL;
        if (!(n == 1 && p[0] == '.')) {
            if (!*ino)
                return -ENOENT;
            if (!(*ino)->is_dir)
                return -ENOTDIR;
            *dir = *ino;
            memcpy(name, p, n);
            name[n] = '\0';
            mem_dent *e = dents_find(&(*dir)->ents, name);
            *ino = e ? e->ino : NULL;
        }
        p += n;
    }
}

/* 1 if target is dir or lies below it in the current tree. */
static int in_subtree(const mem_inode *dir, const mem_inode *target)
{
    if (dir == target)
        return 1;
    for (size_t i = 0; i < dir->ents.n; i++)
        if (dir->ents.v[i].ino->is_dir && in_subtree(dir->ents.v[i].ino, target))
            return 1;
    return 0;
}

/* ---- the power cut ---- */

/* Apply one pending write to the image torn: each sector it touches, aligned
 * to file offsets, independently applied or not. */
static void tear_write(mem_vfs *m, mem_bytes *img, const mem_op *op)
{
    size_t end = op->off + op->len;
    size_t old_len = img->len;
    for (size_t s = op->off / VFS_MEM_SECTOR * VFS_MEM_SECTOR; s < end; s += VFS_MEM_SECTOR) {
        if (!(evs_test_rand(&m->rng) & 1))
            continue;
        size_t a = s > op->off ? s : op->off;
        size_t b = s + VFS_MEM_SECTOR < end ? s + VFS_MEM_SECTOR : end;
        bytes_write(img, a, op->data + (a - op->off), b - a);
    }
    /* The size may reach the disk before the data (metadata journaled first):
     * the file then ends in zeros where the unwritten sectors are. */
    if (end > old_len && end > img->len && evs_test_rand_range(&m->rng, 0, 3) == 0)
        bytes_resize(img, end);
}

/* Replace the durable state by the post-crash image and drop every pending list. */
static void crash_image(mem_vfs *m)
{
    for (size_t i = 0; i < m->ninodes; i++) {
        mem_inode *ino = m->inodes[i];
        for (size_t j = 0; j < ino->nops; j++) {
            const mem_op *op = &ino->ops[j];
            uint64_t what = 0; /* 0 apply, 1 drop, 2 tear */
            if (m->mode == VFS_MEM_CRASH_DROP_ALL)
                what = 1;
            else if (m->mode == VFS_MEM_CRASH_TORN)
                what = evs_test_rand_range(&m->rng, 0, op->is_trunc ? 1 : 2);
            if (what == 0)
                op_apply(&ino->dur, op);
            else if (what == 2)
                tear_write(m, &ino->dur, op);
        }
        ops_clear(ino);
        size_t keep = ino->nnsops;
        if (m->mode == VFS_MEM_CRASH_DROP_ALL)
            keep = 0;
        else if (m->mode == VFS_MEM_CRASH_TORN)
            keep = (size_t)evs_test_rand_range(&m->rng, 0, ino->nnsops);
        for (size_t j = 0; j < keep; j++)
            nsop_apply(&ino->dents, &ino->nsops[j]);
        nsops_clear(ino);
    }
    m->dead = 1;
    m->crash_in = 0;
}

/* ---- methods ---- */

/* The rc for a call on f: -EIO if the power is off or f predates a restart. */
static int file_dead(const mem_vfs *m, const mem_file *f)
{
    return (m->dead || f->epoch != m->epoch) ? -EIO : 0;
}

static mem_vfs *FM(const evs_file *f) { return (mem_vfs *)f->vfs->ctx; }

static int mem_open(const evs_vfs *vfs, const char *path, unsigned flags, evs_file **out)
{
    mem_vfs *m = vfs->ctx;
    mem_inode *dir, *ino;
    mem_file *f = NULL;
    char name[MEM_NAME_MAX + 1];
    pthread_mutex_lock(&m->mu);
    int rc = m->dead ? -EIO : walk(m, path, &dir, name, &ino);
    if (rc)
        goto out;
    if (!ino) {
        if (!(flags & EVS_O_CREATE)) {
            rc = -ENOENT;
            goto out;
        }
        ino = inode_new(m, 0);
        ns_change(dir, name, ino, NULL);
    } else if (ino->is_dir) {
        rc = -EISDIR;
        goto out;
    } else if ((flags & EVS_O_CREATE) && (flags & EVS_O_EXCL)) {
        rc = -EEXIST;
        goto out;
    } else if ((flags & EVS_O_TRUNC) && ino->cur.len) {
        data_change(ino, 1, 0, NULL, 0);  /* like Linux, also for a read-only open */
    }
    f = xrealloc(NULL, sizeof *f);
    f->base.vfs = vfs;
    f->ino = ino;
    f->writable = (flags & EVS_O_RDWR) != 0;
    f->epoch = m->epoch;
    ino->handles++;
    m->open_files++;
    *out = &f->base;
out:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_close(evs_file *file)
{
    mem_vfs *m = FM(file);
    mem_file *f = (mem_file *)file;
    pthread_mutex_lock(&m->mu);
    int rc = file_dead(m, f);
    if (f->ino->locker == f)
        f->ino->locker = NULL;
    f->ino->handles--;
    m->open_files--;
    free(f);
    maybe_gc(m);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_pread(evs_file *file, void *buf, size_t n, uint64_t off, size_t *got)
{
    mem_vfs *m = FM(file);
    mem_file *f = (mem_file *)file;
    pthread_mutex_lock(&m->mu);
    *got = 0;
    int rc = file_dead(m, f);
    if (!rc && off < f->ino->cur.len) {
        size_t k = f->ino->cur.len - (size_t)off;
        *got = k < n ? k : n;
        memcpy(buf, f->ino->cur.p + off, *got);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_pwrite(evs_file *file, const void *buf, size_t n, uint64_t off, size_t *written)
{
    mem_vfs *m = FM(file);
    mem_file *f = (mem_file *)file;
    pthread_mutex_lock(&m->mu);
    int rc = file_dead(m, f);
    if (!rc && !f->writable)
        rc = -EBADF;
    if (!rc && (off > MEM_FILE_MAX || n > MEM_FILE_MAX - off))
        rc = -EFBIG;
    if (!rc && n)
        data_change(f->ino, 0, (size_t)off, buf, n);
    if (written)
        *written = rc ? 0 : n;
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_truncate(evs_file *file, uint64_t size)
{
    mem_vfs *m = FM(file);
    mem_file *f = (mem_file *)file;
    pthread_mutex_lock(&m->mu);
    int rc = file_dead(m, f);
    if (!rc && !f->writable)
        rc = -EINVAL;  /* ftruncate on a read-only descriptor */
    if (!rc && size > MEM_FILE_MAX)
        rc = -EFBIG;
    if (!rc)
        data_change(f->ino, 1, (size_t)size, NULL, 0);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* Count a sync-class call; 1 if it is the armed one (the power is now off). */
static int sync_counts_crash(mem_vfs *m)
{
    m->syncs++;
    if (m->crash_in && --m->crash_in == 0) {
        crash_image(m);
        return 1;
    }
    return 0;
}

static int mem_sync(evs_file *file)
{
    mem_vfs *m = FM(file);
    mem_file *f = (mem_file *)file;
    pthread_mutex_lock(&m->mu);
    int rc = file_dead(m, f);
    if (!rc && sync_counts_crash(m))
        rc = -EIO;
    if (!rc)
        data_sync(f->ino);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_size(evs_file *file, uint64_t *size)
{
    mem_vfs *m = FM(file);
    mem_file *f = (mem_file *)file;
    pthread_mutex_lock(&m->mu);
    int rc = file_dead(m, f);
    if (!rc)
        *size = f->ino->cur.len;
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_lock(evs_file *file)
{
    mem_vfs *m = FM(file);
    mem_file *f = (mem_file *)file;
    pthread_mutex_lock(&m->mu);
    int rc = file_dead(m, f);
    if (!rc && f->ino->locker && f->ino->locker != f)
        rc = -EWOULDBLOCK;
    if (!rc)
        f->ino->locker = f;
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_rename(const evs_vfs *vfs, const char *from, const char *to)
{
    mem_vfs *m = vfs->ctx;
    mem_inode *fdir, *fino, *tdir, *tino;
    char fname[MEM_NAME_MAX + 1], tname[MEM_NAME_MAX + 1];
    pthread_mutex_lock(&m->mu);
    int rc = m->dead ? -EIO : walk(m, from, &fdir, fname, &fino);
    if (!rc)
        rc = walk(m, to, &tdir, tname, &tino);
    if (rc)
        goto out;
    if (!fino || !tdir) {
        rc = fino ? -EBUSY : -ENOENT;  /* tdir NULL: the target is the root */
        goto out;
    }
    if (!fdir) {
        rc = -EBUSY;
        goto out;
    }
    if (fino == tino)
        goto out;  /* POSIX: renaming a file onto itself does nothing */
    if (tino && fino->is_dir && !tino->is_dir) {
        rc = -ENOTDIR;
        goto out;
    }
    if (tino && !fino->is_dir && tino->is_dir) {
        rc = -EISDIR;
        goto out;
    }
    if (tino && tino->is_dir && tino->ents.n) {
        rc = -ENOTEMPTY;
        goto out;
    }
    if (fino->is_dir && in_subtree(fino, tdir)) {
        rc = -EINVAL;
        goto out;
    }
    if (fdir == tdir) {
        ns_change(fdir, tname, fino, fname);  /* one atomic log entry */
    } else {
        ns_change(tdir, tname, fino, NULL);
        ns_change(fdir, NULL, NULL, fname);
    }
    maybe_gc(m);
out:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_unlink(const evs_vfs *vfs, const char *path)
{
    mem_vfs *m = vfs->ctx;
    mem_inode *dir, *ino;
    char name[MEM_NAME_MAX + 1];
    pthread_mutex_lock(&m->mu);
    int rc = m->dead ? -EIO : walk(m, path, &dir, name, &ino);
    if (!rc && !ino)
        rc = -ENOENT;
    if (!rc && ino->is_dir)
        rc = -EISDIR;
    if (!rc) {
        ns_change(dir, NULL, NULL, name);
        maybe_gc(m);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_mkdir(const evs_vfs *vfs, const char *path)
{
    mem_vfs *m = vfs->ctx;
    mem_inode *dir, *ino;
    char name[MEM_NAME_MAX + 1];
    pthread_mutex_lock(&m->mu);
    int rc = m->dead ? -EIO : walk(m, path, &dir, name, &ino);
    if (!rc && ino)
        rc = -EEXIST;
    if (!rc)
        ns_change(dir, name, inode_new(m, 1), NULL);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* Like rmdir(2): -ENOENT, -ENOTDIR, -ENOTEMPTY, -EBUSY for the root. The
 * removal is a namespace change of the parent, durable at its sync_dir. */
static int mem_rmdir(const evs_vfs *vfs, const char *path)
{
    mem_vfs *m = vfs->ctx;
    mem_inode *dir, *ino;
    char name[MEM_NAME_MAX + 1];
    pthread_mutex_lock(&m->mu);
    int rc = m->dead ? -EIO : walk(m, path, &dir, name, &ino);
    if (!rc && !ino)
        rc = -ENOENT;
    if (!rc && !dir)
        rc = -EBUSY;
    if (!rc && !ino->is_dir)
        rc = -ENOTDIR;
    if (!rc && ino->ents.n)
        rc = -ENOTEMPTY;
    if (!rc) {
        ns_change(dir, NULL, NULL, name);
        maybe_gc(m);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_sync_dir(const evs_vfs *vfs, const char *path)
{
    mem_vfs *m = vfs->ctx;
    mem_inode *dir, *ino;
    char name[MEM_NAME_MAX + 1];
    pthread_mutex_lock(&m->mu);
    int rc = m->dead ? -EIO : 0;
    if (!rc && sync_counts_crash(m))
        rc = -EIO;
    if (!rc)
        rc = walk(m, path, &dir, name, &ino);
    if (!rc && !ino)
        rc = -ENOENT;
    if (!rc && !ino->is_dir)
        rc = -ENOTDIR;
    if (!rc) {
        for (size_t i = 0; i < ino->nnsops; i++)
            nsop_apply(&ino->dents, &ino->nsops[i]);
        nsops_clear(ino);
        maybe_gc(m);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_list_dir(const evs_vfs *vfs, const char *path,
                        int (*cb)(void *cbctx, const char *name), void *cbctx)
{
    mem_vfs *m = vfs->ctx;
    mem_inode *dir, *ino;
    char name[MEM_NAME_MAX + 1];
    char **names = NULL;
    size_t n = 0;
    pthread_mutex_lock(&m->mu);
    int rc = m->dead ? -EIO : walk(m, path, &dir, name, &ino);
    if (!rc && !ino)
        rc = -ENOENT;
    if (!rc && !ino->is_dir)
        rc = -ENOTDIR;
    if (!rc) {
        /* Snapshot the names: cb runs unlocked and may change the directory. */
        n = ino->ents.n;
        names = xrealloc(NULL, n * sizeof *names);
        for (size_t i = 0; i < n; i++)
            names[i] = xstrdup(ino->ents.v[i].name);
    }
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < n && !rc; i++)
        rc = cb(cbctx, names[i]);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static int mem_exists(const evs_vfs *vfs, const char *path)
{
    mem_vfs *m = vfs->ctx;
    mem_inode *dir, *ino;
    char name[MEM_NAME_MAX + 1];
    pthread_mutex_lock(&m->mu);
    int rc = m->dead ? -EIO : walk(m, path, &dir, name, &ino);
    if (!rc)
        rc = ino ? 1 : 0;
    else if (rc == -ENOENT)
        rc = 0;
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* ---- control ---- */

evs_vfs *vfs_mem_new(void)
{
    mem_vfs *m = xrealloc(NULL, sizeof *m);
    memset(m, 0, sizeof *m);
    m->vfs = (evs_vfs){
        .version = EVS_VFS_VERSION,
        .name = "mem",
        .ctx = m,
        .open = mem_open,
        .close = mem_close,
        .pread = mem_pread,
        .pwrite = mem_pwrite,
        .sync = mem_sync,
        .datasync = mem_sync,  /* no metadata/data distinction in memory */
        .truncate = mem_truncate,
        .size = mem_size,
        .lock = mem_lock,
        .rename = mem_rename,
        .unlink = mem_unlink,
        .mkdir = mem_mkdir,
        .sync_dir = mem_sync_dir,
        .list_dir = mem_list_dir,
        .exists = mem_exists,
        .rmdir = mem_rmdir,
    };
    pthread_mutex_init(&m->mu, NULL);
    m->root = inode_new(m, 1);
    m->live_at_gc = 1;
    m->rng = evs_test_seed();
    m->mode = VFS_MEM_CRASH_TORN;
    return &m->vfs;
}

void vfs_mem_free(evs_vfs *vfs)
{
    if (!vfs)
        return;
    mem_vfs *m = M(vfs);
    for (size_t i = 0; i < m->ninodes; i++)
        inode_free(m->inodes[i]);
    free(m->inodes);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void vfs_mem_set_seed(evs_vfs *vfs, uint64_t seed)
{
    mem_vfs *m = M(vfs);
    pthread_mutex_lock(&m->mu);
    m->rng = seed;
    pthread_mutex_unlock(&m->mu);
}

void vfs_mem_set_crash_mode(evs_vfs *vfs, vfs_mem_crash_mode mode)
{
    mem_vfs *m = M(vfs);
    pthread_mutex_lock(&m->mu);
    m->mode = mode;
    pthread_mutex_unlock(&m->mu);
}

void vfs_mem_crash_at_sync(evs_vfs *vfs, uint64_t n)
{
    mem_vfs *m = M(vfs);
    pthread_mutex_lock(&m->mu);
    m->crash_in = n;
    pthread_mutex_unlock(&m->mu);
}

void vfs_mem_crash_now(evs_vfs *vfs)
{
    mem_vfs *m = M(vfs);
    pthread_mutex_lock(&m->mu);
    if (!m->dead)
        crash_image(m);
    pthread_mutex_unlock(&m->mu);
}

int vfs_mem_crashed(const evs_vfs *vfs)
{
    mem_vfs *m = M(vfs);
    pthread_mutex_lock(&m->mu);
    int dead = m->dead;
    pthread_mutex_unlock(&m->mu);
    return dead;
}

uint64_t vfs_mem_sync_count(const evs_vfs *vfs)
{
    mem_vfs *m = M(vfs);
    pthread_mutex_lock(&m->mu);
    uint64_t n = m->syncs;
    pthread_mutex_unlock(&m->mu);
    return n;
}

unsigned vfs_mem_open_files(const evs_vfs *vfs)
{
    mem_vfs *m = M(vfs);
    pthread_mutex_lock(&m->mu);
    unsigned n = m->open_files;
    pthread_mutex_unlock(&m->mu);
    return n;
}

int vfs_mem_restart(evs_vfs *vfs)
{
    mem_vfs *m = M(vfs);
    pthread_mutex_lock(&m->mu);
    int rc = m->dead ? 0 : -EINVAL;
    if (!rc) {
        for (size_t i = 0; i < m->ninodes; i++) {
            mem_inode *ino = m->inodes[i];
            bytes_copy(&ino->cur, &ino->dur);
            dents_copy(&ino->ents, &ino->dents);
            ino->locker = NULL;  /* the process that held it is gone */
        }
        m->epoch++;
        m->dead = 0;
        gc(m);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}
