/*
 * input.c — see input.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "input.h"

static int read_all(int fd, cli_input *in)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        if (len == cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return -ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r > 0) {
            len += (size_t)r;
            continue;
        }
        if (r == 0)
            break;
        /* Signals are installed without SA_RESTART: EINTR after ^C means stop. */
        if (errno == EINTR && !cli_stop)
            continue;
        int e = errno;
        free(buf);
        return -e;
    }
    in->heap = buf;
    in->data = buf;
    in->len = len;
    return 0;
}

int input_load(const char *path, cli_input *in)
{
    memset(in, 0, sizeof *in);
    int from_stdin = !path || strcmp(path, "-") == 0;
    in->name = from_stdin ? "stdin" : path;
    int fd = from_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
        (uint64_t)st.st_size <= SIZE_MAX) {
        /* stdin redirected from a file is mapped too ("import < file"). The
         * offset matters for stdin: a shell may have consumed a part of it. */
        off_t off = from_stdin ? lseek(fd, 0, SEEK_CUR) : 0;
        if (off < 0)
            off = 0;
        if (off > st.st_size)
            off = st.st_size;
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
            in->map = m;
            in->data = (const char *)m + off;
            in->len = (size_t)(st.st_size - off);
            goto out;
        }
    }
    rc = read_all(fd, in);
out:
    if (!from_stdin)
        close(fd);
    return rc;
}

void input_free(cli_input *in)
{
    if (in->map) {
        /* data may start past map (stdin's offset); the mapping length is
         * that offset plus len. */
        size_t off = (size_t)(in->data - (const char *)in->map);
        munmap(in->map, off + in->len);
    }
    free(in->heap);
    memset(in, 0, sizeof *in);
}
