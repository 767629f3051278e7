/*
 * vfs_posix.c — the default evs_vfs: plain POSIX calls, retried on EINTR.
 * This is the only file in src/ allowed to call open/pread/pwrite/fsync/...
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evs_int.h"

typedef struct posix_file {
    evs_file base;  /* must be first: the store sees only this */
    int fd;         /* the open descriptor */
} posix_file;

static int posix_fd(evs_file *f) { return ((posix_file *)f)->fd; }

static int px_open(const evs_vfs *vfs, const char *path, unsigned flags, evs_file **out)
{
    int oflags = O_CLOEXEC | ((flags & EVS_O_RDWR) ? O_RDWR : O_RDONLY);
    if (flags & EVS_O_CREATE) oflags |= O_CREAT;
    if (flags & EVS_O_EXCL) oflags |= O_EXCL;
    if (flags & EVS_O_TRUNC) oflags |= O_TRUNC;
    int fd;
    do fd = open(path, oflags, 0644); while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -errno;
    posix_file *pf = calloc(1, sizeof *pf);
    if (!pf) {
        close(fd);
        return EVS_ENOMEM;
    }
    pf->base.vfs = vfs;
    pf->fd = fd;
    *out = &pf->base;
    return 0;
}

static int px_close(evs_file *f)
{
    int rc = close(posix_fd(f)) < 0 ? -errno : 0;
    free(f);
    return rc;
}

static int px_pread(evs_file *f, void *buf, size_t n, uint64_t off, size_t *got)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(posix_fd(f), (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            *got = done;
            return -errno;
        }
        if (r == 0) break;
        done += (size_t)r;
    }
    *got = done;
    return 0;
}

static int px_pwrite(evs_file *f, const void *buf, size_t n, uint64_t off, size_t *written)
{
    size_t done = 0;
    int rc = 0;
    while (done < n) {
        ssize_t r = pwrite(posix_fd(f), (const char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = -errno;
            break;
        }
        if (r == 0) { rc = -EIO; break; }
        done += (size_t)r;
    }
    if (written) *written = done;
    return rc;
}

static int px_sync(evs_file *f) { return fsync(posix_fd(f)) < 0 ? -errno : 0; }
static int px_datasync(evs_file *f) { return fdatasync(posix_fd(f)) < 0 ? -errno : 0; }

static int px_truncate(evs_file *f, uint64_t size)
{
    int r;
    do r = ftruncate(posix_fd(f), (off_t)size); while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

static int px_size(evs_file *f, uint64_t *size)
{
    struct stat st;
    if (fstat(posix_fd(f), &st) < 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

static int px_lock(evs_file *f)
{
    int r;
    do r = flock(posix_fd(f), LOCK_EX | LOCK_NB); while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

static int px_rename(const evs_vfs *vfs, const char *from, const char *to)
{ return rename(from, to) < 0 ? -errno : 0; }
static int px_unlink(const evs_vfs *vfs, const char *path)
{ return unlink(path) < 0 ? -errno : 0; }
static int px_mkdir(const evs_vfs *vfs, const char *path)
{ return mkdir(path, 0755) < 0 ? -errno : 0; }
static int px_rmdir(const evs_vfs *vfs, const char *path)  /* [backup] */
{ return rmdir(path) < 0 ? -errno : 0; }

static int px_sync_dir(const evs_vfs *vfs, const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int px_list_dir(const evs_vfs *vfs, const char *path,
                       int (*cb)(void *, const char *), void *cbctx)
{
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if ((rc = cb(cbctx, de->d_name)) != 0)
            break;
    }
    closedir(d);
    return rc;
}

static int px_exists(const evs_vfs *vfs, const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) return 1;
    return errno == ENOENT ? 0 : -errno;
}

static const evs_vfs posix_vfs = {
    .version = EVS_VFS_VERSION,
    .name = "posix",
    .ctx = NULL,
    .open = px_open,
    .close = px_close,
    .pread = px_pread,
    .pwrite = px_pwrite,
    .sync = px_sync,
    .datasync = px_datasync,
    .truncate = px_truncate,
    .size = px_size,
    .lock = px_lock,
    .rename = px_rename,
    .unlink = px_unlink,
    .mkdir = px_mkdir,
    .sync_dir = px_sync_dir,
    .list_dir = px_list_dir,
    .exists = px_exists,
    .rmdir = px_rmdir,  /* [backup] */
};

const evs_vfs *evs__vfs_posix(void) { return &posix_vfs; }
