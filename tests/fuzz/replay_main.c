/*
 * replay_main.c — runs a libFuzzer target over files without libFuzzer, so
 * `make test` replays every corpus (and every crash turned regression) with
 * gcc and under ASan+UBSan. Arguments: files or directories of inputs.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return 1; }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *p = realloc(buf, cap);
            if (!p) { free(buf); fclose(f); return 1; }
            buf = p;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        if (!got) break;
        len += got;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) { perror(argv[i]); return 1; }
        if (!S_ISDIR(st.st_mode)) { if (run_file(argv[i])) return 1; n++; continue; }
        /* in name order: a stateful target (fuzz_http) replays the same way everywhere */
        struct dirent **names = NULL;
        int k = scandir(argv[i], &names, NULL, alphasort);
        if (k < 0) { perror(argv[i]); return 1; }
        int bad = 0;
        for (int j = 0; j < k; j++) {
            if (!bad && names[j]->d_name[0] != '.') {
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", argv[i], names[j]->d_name);
                if (run_file(path)) bad = 1;
                else n++;
            }
            free(names[j]);
        }
        free(names);
        if (bad) return 1;
    }
    printf("replayed %zu inputs\n", n);
    return 0;
}
