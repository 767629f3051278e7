/*
 * store.c — opening and closing a store, the writer lock, options, waiting
 * for new events, statistics and the failure state.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "store/store_int.h"

void evs_options_init(evs_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->struct_size = sizeof *opt;
    opt->create = 1;
    opt->sync = EVS_SYNC_ALWAYS;
    opt->sync_interval_ms = 100;
    opt->segment_size = 256ull << 20;
    opt->max_event_size = 1u << 20;
    opt->checkpoint_interval = 262144;
    opt->log_level = EVS_LOG_INFO;
}

/* Take the writer lock: flock on evstore.lock, which then holds our pid and
 * the committed position (read by followers in other processes).
 *   0  8  magic "EVSLOCK\0"
 *   8  8  pid of the writer
 *  16  8  committed position
 *  24  8  bitwise complement of the committed position (detects a torn read) */
static int take_lock(evs_store *s)
{
    char path[4096];
    int rc = evs__store_path(s, path, sizeof path, EVS_LOCK_FILE);
    if (rc) return rc;
    rc = s->vfs->open(s->vfs, path, EVS_O_RDWR | EVS_O_CREATE, &s->lock_file);
    if (rc) return rc;
    rc = s->lock_file->vfs->lock(s->lock_file);
    if (rc == -EWOULDBLOCK || rc == -EAGAIN) {
        uint8_t b[16];
        size_t got = 0;
        uint64_t pid = 0;
        if (evs__fread(s->lock_file, b, sizeof b, 0, &got) == 0 && got == sizeof b) pid = evs__get64(b + 8);
        evs__logf(&s->log, EVS_LOG_ERROR, "%s is locked by another writer (pid %" PRIu64 "); "
                  "open it read-only to follow that writer", s->dir, pid);
        evs__fclose(s->lock_file);
        s->lock_file = NULL;
        return EVS_ELOCKED;
    }
    if (rc) return rc;
    /* keep the published position as it is: followers rely on it while we
     * recover, and after a failed open; recovery publishes the new one */
    uint8_t b[32];
    size_t got = 0;
    if (evs__fread(s->lock_file, b, sizeof b, 0, &got) != 0 || got != sizeof b || memcmp(b, "EVSLOCK", 8) != 0) {
        memset(b, 0, sizeof b);
        memcpy(b, "EVSLOCK", 8);
        evs__put64(b + 24, ~(uint64_t)0);
    }
    evs__put64(b + 8, (uint64_t)getpid());
    return evs__fwrite(s->lock_file, b, sizeof b, 0, NULL);
}

static void copy_options(evs_store *s, const evs_options *opt)
{
    evs_options_init(&s->opt);
    if (opt) {
        size_t n = opt->struct_size && opt->struct_size < sizeof s->opt ? opt->struct_size : sizeof s->opt;
        memcpy(&s->opt, opt, n);
        s->opt.struct_size = sizeof s->opt;
    }
    if (!s->opt.max_event_size) s->opt.max_event_size = 1u << 20;
    if (!s->opt.checkpoint_interval) s->opt.checkpoint_interval = 262144;
    if (!s->opt.sync_interval_ms) s->opt.sync_interval_ms = 100;
}

int evs_open(const char *dir, const evs_options *opt, evs_store **out)
{
    *out = NULL;
    evs_store *s = calloc(1, sizeof *s);
    if (!s) return EVS_ENOMEM;
    copy_options(s, opt);
    s->vfs = s->opt.vfs ? s->opt.vfs : evs__vfs_posix();
    s->log = (evs_logger){s->opt.log, s->opt.log_ctx, s->opt.log_level};
    s->read_only = s->opt.read_only;
    pthread_rwlock_init(&s->seg_lock, NULL);
    pthread_rwlock_init(&s->tbl_lock, NULL);
    pthread_mutex_init(&s->q_mu, NULL);
    pthread_cond_init(&s->q_cv, NULL);
    pthread_mutex_init(&s->wait_mu, NULL);
    pthread_cond_init(&s->wait_cv, NULL);
    pthread_cond_init(&s->wait_gone, NULL);
    pthread_mutex_init(&s->fail_mu, NULL);
    pthread_mutex_init(&s->follow_mu, NULL);
    pthread_mutex_init(&s->sort_mu, NULL);
    *out = s;
    int rc = 0;
    if (!(s->dir = strdup(dir))) return EVS_ENOMEM;
    /* refuse, rather than quietly change, settings the format cannot honour */
    if (s->opt.segment_size < (64u << 10) || s->opt.segment_size > (4ull << 30) - 1) {  /* u32 offsets */
        evs__logf(&s->log, EVS_LOG_ERROR, "segment size %llu is outside 64 KiB .. 4 GiB - 1",
                  (unsigned long long)s->opt.segment_size);
        return EVS_EINVAL;
    }
    if (s->opt.max_event_size > (64u << 20)) {
        evs__logf(&s->log, EVS_LOG_ERROR, "max event size %u is over 64 MiB", s->opt.max_event_size);
        return EVS_EINVAL;
    }
    rc = s->vfs->exists(s->vfs, dir);
    if (rc == 0) {
        if (!s->opt.create || s->read_only) {
            evs__logf(&s->log, EVS_LOG_ERROR, "%s does not exist", dir);
            return -ENOENT;
        }
        if ((rc = s->vfs->mkdir(s->vfs, dir)) != 0 && rc != -EEXIST) return rc;
        /* the new directory's entry is durable only once its parent is synced */
        char parent[4096];
        size_t pl = strlen(dir);
        while (pl > 1 && dir[pl - 1] == '/') pl--;
        while (pl > 0 && dir[pl - 1] != '/') pl--;
        while (pl > 1 && dir[pl - 1] == '/') pl--;
        if (pl == 0) strcpy(parent, ".");
        else snprintf(parent, sizeof parent, "%.*s", (int)pl, dir);
        if ((rc = s->vfs->sync_dir(s->vfs, parent)) != 0) return rc;
    } else if (rc < 0) {
        return rc;
    }
    if (!s->read_only && (rc = take_lock(s)) != 0) return rc;
    uint64_t t0 = evs__mono_ns();
    if ((rc = evs__recover(s)) != 0) return rc;
    if ((rc = evs__proj_open(s)) != 0) return rc;  /* [projections] load and catch up (projection.c) */
    if (!s->read_only) {
        if ((rc = evs__publish_position(s, atomic_load(&s->committed))) != 0) return rc;
        if ((rc = evs__indexer_start(s)) != 0) return rc;  /* before the writer: it hands work over */
        if ((rc = evs__writer_start(s)) != 0) return rc;
    }
    evs__logf(&s->log, EVS_LOG_INFO, "opened %s%s: position %" PRIu64 ", %" PRIu64 " streams, %zu segments in %.1f ms",
              dir, s->read_only ? " read-only" : "", atomic_load(&s->committed), atomic_load(&s->nstreams),
              s->nsegs, (double)(evs__mono_ns() - t0) / 1e6);
    return 0;
}

int evs_close(evs_store *s)
{
    if (!s) return 0;
    int rc = 0;
    evs__proj_stop(s);  /* [projections] the builder thread first: it reads through the store */
    if (s->writer_started) {
        evs__writer_stop(s);
        rc = evs__checkpoint(s);  /* a last freeze, then the index thread finishes and exits */
        if (atomic_load(&s->failed) && !rc) rc = EVS_EFATAL;
    }
    evs__indexer_stop(s);  /* (already stopped unless the open failed before the writer started) */
    evs__proj_close(s);  /* [projections] persist index headers, free */
    pthread_mutex_lock(&s->q_mu);
    s->closing = 1;  /* also for read-only stores: evs_wait returns EVS_ECLOSED */
    pthread_mutex_unlock(&s->q_mu);
    /* threads inside evs_wait leave before the store is freed under them */
    pthread_mutex_lock(&s->wait_mu);
    while (s->waiters > 0) {
        pthread_cond_broadcast(&s->wait_cv);
        pthread_cond_wait(&s->wait_gone, &s->wait_mu);
    }
    pthread_mutex_unlock(&s->wait_mu);
    evs__lsm_close(s->ids);
    evs__lsm_close(s->sidx);
    free(s->changes.v);
    for (size_t i = 0; i < s->nsegs; i++) evs__seg_close(s->segs[i]);
    free(s->segs);
    evs__streams_free(&s->streams);
    evs__fclose(s->lock_file);
    pthread_rwlock_destroy(&s->seg_lock);
    pthread_rwlock_destroy(&s->tbl_lock);
    pthread_mutex_destroy(&s->q_mu);
    pthread_cond_destroy(&s->q_cv);
    pthread_mutex_destroy(&s->wait_mu);
    pthread_cond_destroy(&s->wait_cv);
    pthread_cond_destroy(&s->wait_gone);
    pthread_mutex_destroy(&s->fail_mu);
    pthread_mutex_destroy(&s->follow_mu);
    pthread_mutex_destroy(&s->sort_mu);
    free(s->dir);
    free(s);
    return rc;
}

const char *evs_failure(evs_store *s)
{
    return atomic_load(&s->failed) ? s->fail_reason : NULL;
}

int evs_refresh(evs_store *s) { return evs__refresh_follower(s); }

int evs_wait(evs_store *s, uint64_t position, int timeout_ms, uint64_t *now)
{
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : evs__mono_ns() + (uint64_t)timeout_ms * 1000000u;
    int rc = 0;
    pthread_mutex_lock(&s->wait_mu);
    s->waiters++;  /* evs_close waits for us to leave */
    pthread_mutex_unlock(&s->wait_mu);
    for (;;) {
        if (s->read_only) evs__refresh_follower(s);
        uint64_t c = atomic_load(&s->committed);
        if (c >= position) break;
        uint64_t t = evs__mono_ns();
        if (t >= deadline) { rc = EVS_ETIMEDOUT; break; }
        pthread_mutex_lock(&s->q_mu);
        int closing = s->closing;
        pthread_mutex_unlock(&s->q_mu);
        if (closing || atomic_load(&s->failed)) { rc = EVS_ECLOSED; break; }
        /* writers wake us on every publish; followers poll the writer's files */
        uint64_t slice = s->read_only ? 20000000u : 1000000000u;
        uint64_t until = deadline - t < slice ? deadline : t + slice;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t wait = until - t;
        ts.tv_sec += (time_t)(wait / 1000000000u);
        ts.tv_nsec += (long)(wait % 1000000000u);
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_mutex_lock(&s->wait_mu);
        if (atomic_load(&s->committed) < position)
            pthread_cond_timedwait(&s->wait_cv, &s->wait_mu, &ts);
        pthread_mutex_unlock(&s->wait_mu);
    }
    if (now) *now = atomic_load(&s->committed);
    pthread_mutex_lock(&s->wait_mu);
    if (--s->waiters == 0) pthread_cond_broadcast(&s->wait_gone);
    pthread_mutex_unlock(&s->wait_mu);
    return rc;
}

int evs_stat(evs_store *s, evs_stats *st)
{
    memset(st, 0, sizeof *st);
    evs__refresh_follower(s);
    st->position = st->events = atomic_load(&s->committed);
    st->streams = atomic_load(&s->nstreams);
    pthread_rwlock_rdlock(&s->seg_lock);
    st->segments = s->nsegs;
    for (size_t i = 0; i < s->nsegs; i++) st->bytes += atomic_load(&s->segs[i]->end);
    pthread_rwlock_unlock(&s->seg_lock);
    st->appends = atomic_load(&s->st_appends);
    st->appended_events = atomic_load(&s->st_events);
    st->reads = atomic_load(&s->st_reads);
    st->fsyncs = atomic_load(&s->st_fsyncs);
    st->group_commits = atomic_load(&s->st_groups);
    st->recovered_truncated_bytes = s->st_truncated;
    st->index_checkpoint_position = atomic_load(&s->ckpt_position);
    st->read_only = s->read_only;
    st->failed = atomic_load(&s->failed);
    if (st->failed) {
        pthread_mutex_lock(&s->fail_mu);
        st->failed_rc = s->fail_rc;
        pthread_mutex_unlock(&s->fail_mu);
    }
    for (int i = 0; i < 16; i++) {
        st->fsync_buckets[i] = atomic_load_explicit(&s->fsync_hist[i], memory_order_relaxed);
        st->group_buckets[i] = atomic_load_explicit(&s->group_hist[i], memory_order_relaxed);
    }
    st->fsync_sum_us = atomic_load_explicit(&s->fsync_sum_us, memory_order_relaxed);
    st->sync = s->opt.sync;
    return 0;
}
