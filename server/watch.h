/*
 * watch.h — a streamed read answer (plain or watching); the hub that keeps
 * the ring of encoded events and wakes suspended watchers is in watch.c.
 */
#ifndef EVSD_WATCH_H
#define EVSD_WATCH_H

#include <sys/types.h>

#include "server.h"

/* it is owned by the state from here on. */
evsd_stream_state *evsd_stream_new(evsd_server *srv, struct MHD_Connection *conn, evs_iter *it, int watch,
                                   int sse, uint64_t limit, uint64_t heartbeat_ns);
/* The content-reader body: bytes written, 0 after suspending, or an MHD end code. */
ssize_t evsd_stream_fill(evsd_stream_state *w, char *out, size_t max);
void evsd_stream_free(evsd_stream_state *w);
/* Do not send events whose global position is <= position (SSE resume). */
void evsd_stream_skip_through(evsd_stream_state *w, uint64_t position);
/* A watch of the global log or of one stream: once caught up it reads the
 * hub's ring of encoded events instead of the store. ro is what its iterator
 * was opened with (strings copied). 0, or -ENOMEM. Others (backward, system
 * streams, projections) keep reading the store. */
int evsd_stream_follow(evsd_stream_state *w, const evs_read_options *ro);

#endif
