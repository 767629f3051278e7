/*
 * progress.h — a one-line progress report on stderr for long operations
 * (export, import): count, bytes, rate and, when the total is known, ETA.
 *
 * It draws only when stderr is a terminal (never into logs or pipes), at
 * most ten times a second, and erases itself when done.
 */
#ifndef EVS_CLI_PROGRESS_H
#define EVS_CLI_PROGRESS_H

#include <stdint.h>

typedef struct cli_progress {
    int enabled;           /* stderr is a terminal and the caller allowed it */
    const char *label;     /* "export", "import", ... */
    const char *unit;      /* "events" */
    uint64_t total;        /* 0: unknown, no ETA */
    uint64_t count;        /* items done */
    uint64_t bytes;        /* bytes done */
    double start;          /* monotonic seconds at progress_start */
    double last_draw;      /* when the line was last drawn */
    int drawn;             /* a line is on the screen and must be erased */
} cli_progress;

/** allow = 0 keeps it silent whatever stderr is (e.g. stdout is the same terminal). */
void progress_start(cli_progress *p, const char *label, const char *unit, uint64_t total,
                    int allow);
/** Record progress; redraws if 100 ms have passed. */
void progress_update(cli_progress *p, uint64_t count, uint64_t bytes);
/** Replace the line with a final summary (count, bytes, time) and end it. */
void progress_done(cli_progress *p);

#endif /* EVS_CLI_PROGRESS_H */
