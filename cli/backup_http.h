/*
 * backup_http.h — `evstore backup --url`: GET /backup from evstored into a
 * file descriptor, with libcurl.
 */
#ifndef EVS_CLI_BACKUP_HTTP_H
#define EVS_CLI_BACKUP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "cli.h"
#include "progress.h"

/**
 * Download the archive GET <url>/backup[?since=N] into fd, drawing progress
 * (bytes received). Interruptible (cli_stop).
 * @param received  bytes written to fd.
 * @param err       receives a sentence on failure (the server's message and
 *                  code, or why the transfer failed).
 * @return 0; CLI_EXIT_USAGE (bad --url or --token); CLI_EXIT_FAIL; 130 when
 *         interrupted.
 */
int cli_http_backup(const cli_global *g, uint64_t since, int fd, cli_progress *progress, uint64_t *received,
                    char *err, size_t errlen);

#endif /* EVS_CLI_BACKUP_HTTP_H */
