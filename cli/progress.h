/*
 * progress.h — a one-line progress report on stderr for long operations
 * (backup, restore, verify, import, export): events and bytes done (of their
 * totals, when known), their rates, and an ETA.
 *
 * It draws only when stderr is a terminal (never into logs or pipes), at
 * most ten times a second, and ends with a summary line.
 */
#ifndef EVS_CLI_PROGRESS_H
#define EVS_CLI_PROGRESS_H

#include <stdint.h>

typedef struct cli_progress {
    int enabled;           /* stderr is a terminal and the caller allowed it */
    const char *label;     /* "export", "backup (copy)", ... */
    uint64_t events;       /* events done */
    uint64_t events_total; /* 0: unknown */
    uint64_t bytes;        /* bytes done */
    uint64_t bytes_total;  /* 0: unknown */
    double start;          /* monotonic seconds at progress_start */
    double last_draw;      /* when the line was last drawn */
    int drawn;             /* a line is on the screen */
} cli_progress;

/** Start a line. The totals may be 0 (unknown: no ETA from them).
 *  allow = 0 keeps it silent whatever stderr is (e.g. stdout is the same terminal). */
void progress_start(cli_progress *p, const char *label, uint64_t events_total, uint64_t bytes_total,
                    int allow);
/** Record progress; redraws if 100 ms have passed. */
void progress_update(cli_progress *p, uint64_t events, uint64_t bytes);
/** Learn the totals later. */
void progress_totals(cli_progress *p, uint64_t events_total, uint64_t bytes_total);
/** Erase the line (if drawn) so other output can be printed; the next
 *  update draws it again. */
void progress_clear(cli_progress *p);
/** Replace the line with a final summary (events, bytes, time) and end it. */
void progress_done(cli_progress *p);

#endif /* EVS_CLI_PROGRESS_H */
