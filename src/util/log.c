/*
 * log.c — the library's only way of saying something: through the
 * application's callback, or one line on stderr.
 */
#include <stdio.h>

#include "evs_int.h"

static const char *level_name(int level)
{
    switch (level) {
    case EVS_LOG_ERROR: return "error";
    case EVS_LOG_WARN: return "warn";
    case EVS_LOG_INFO: return "info";
    default: return "debug";
    }
}

void evs__logf(const evs_logger *lg, int level, const char *fmt, ...)
{
    if (lg && level > lg->level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (lg && lg->fn)
        lg->fn(lg->ctx, level, msg);
    else
        fprintf(stderr, "evstore %s: %s\n", level_name(level), msg);
}

int evs__corrupt(const evs_logger *lg, const char *file, uint64_t off, const char *what,
                 const char *src_file, int src_line)
{
    const char *base = strrchr(src_file, '/');  /* the source file's name, not the build machine's path */
    evs__logf(lg, EVS_LOG_ERROR, "corruption in %s at offset %llu: %s (detected at %s:%d)",
              file ? file : "?", (unsigned long long)off, what, base ? base + 1 : src_file, src_line);
    return EVS_ECORRUPT;
}
