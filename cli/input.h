/*
 * input.h — the whole of a command's input (a file or stdin) as one byte
 * range. Regular files are mapped rather than read, so importing a large
 * export costs page cache, not heap; pipes are read into memory because
 * import must see all of its input before it writes anything.
 */
#ifndef EVS_CLI_INPUT_H
#define EVS_CLI_INPUT_H

#include <stddef.h>

typedef struct cli_input {
    const char *data;     /* the bytes */
    size_t len;           /* how many */
    const char *name;     /* the file name, or "stdin", for messages */
    void *map;            /* mmap'ed region, or NULL */
    char *heap;           /* malloc'ed buffer, or NULL */
} cli_input;

/** Load path ("-" or NULL: stdin). @return 0, or -errno (-EINTR when interrupted). */
int input_load(const char *path, cli_input *in);
void input_free(cli_input *in);

#endif /* EVS_CLI_INPUT_H */
