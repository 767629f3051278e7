/*
 * indexer.c — the index thread: writes every checkpointed index file, so
 * that the writer thread never waits for index I/O.
 *
 * THE HAND-OVER
 *  Every checkpoint_interval events the writer freezes (writer.c,
 *  evs__freeze): the id and stream-version indexes swap their in-memory
 *  tables for fresh ones (O(1)) and the writer queues a job holding the
 *  position C the frozen state covers, the segment and offset where C's
 *  record ends, and the stream changes since the previous job. Readers keep
 *  searching the frozen tables until the index thread has installed the runs
 *  made from them, so no committed event is ever missing from a lookup.
 *
 * A JOB, IN THIS ORDER (the crash-safety argument is the one of
 * docs/DESIGN.md §6; each step only ever claims what is already durable):
 *  1. fdatasync the offsets file of C's segment (earlier segments were
 *     synced when sealed; the log itself is durable up to C: the writer
 *     synced it before freezing);
 *  2. append the stream table chunk of the job's stream changes (or rewrite
 *     the table into the next generation's file when it has doubled), fdatasync;
 *  3. each index: write the oldest frozen table as a run, fsync, rename,
 *     fsync the directory, then its manifest covering C, then drop the table;
 *  4. projection index headers, claiming at most C;
 *  5. checkpoint.idx (C, the stream table's generation and length, where C
 *     ends), temp + rename; then the stream table file of the generation a
 *     rewrite replaced, if any, is removed.
 *  A crash anywhere leaves checkpoint.idx at an earlier job and each index's
 *  manifest at that job or this one: recovery scans from the smallest.
 *
 * MERGES run here too, between jobs, in steps of MERGE_STEP entries, so a job
 * never waits long behind a merge (see lsm.c for why the merges made are the
 * same whatever the timing). So does the upkeep of the streams' name order
 * (evs__streams_sort, after a job, when more than EVS_FRESH_SORT streams are
 * new).
 *
 * BACKPRESSURE: at most EVS_CKPT_MAX_PENDING jobs are queued or in progress;
 * a writer due to freeze another waits (evs__indexer_wait_room). Memory for
 * frozen tables is thus bounded by MAX_PENDING checkpoint intervals.
 *
 * FAILURE: any error fails the store (fail-stop, as a failed checkpoint
 * always has): later appends return EVS_EFATAL, readers keep working from the
 * frozen tables still in memory, remaining jobs are dropped, evs_close
 * returns the failure. Nothing is retried.
 *
 * CLOSE: the writer stops, evs__checkpoint freezes what is left, and the
 * index thread finishes every job and every merge before it exits.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "store/store_int.h"

#define MERGE_STEP 65536u  /* entries merged (2 MiB written) between looks at the job queue */

typedef struct evs_indexer {
    pthread_t th;
    int started;
    pthread_mutex_t mu;          /* everything below */
    pthread_cond_t cv;           /* to the index thread: a job, or stop */
    pthread_cond_t room;         /* to the writer: a job finished (or the store failed) */
    evs_ckpt_job *head, *tail;   /* queued jobs, oldest first */
    size_t pending;              /* jobs queued or in progress */
    int stop;                    /* finish everything, then exit */
    int merge_more;              /* merge work may remain */
    int sort_check;              /* a job ran: new streams may be due for the name order. Not at
                                    open: the streams loaded then are sorted by the first listing
                                    that needs it, so an open + close never waits for a sort */
    int trim_due;                /* a job ran: trim malloc's arenas once idle (arena_trim) */
} evs_indexer;

void evs__ckpt_job_free(evs_ckpt_job *job)
{
    if (!job) return;
    free(job->changes.v);
    free(job);
}

static int write_checkpoint_file(evs_store *s, const evs_ckpt_job *job)
{
    char path[4096], tmp[4096];
    uint8_t b[64] = {'E', 'V', 'S', 'C', 'K', 'P', 'T', 0};
    evs__put32(b + 8, EVS_FORMAT_VERSION);
    evs__put64(b + 16, job->covered);
    evs__put64(b + 24, s->streams_file_len);
    evs__put64(b + 32, job->seg->base);
    evs__put64(b + 40, job->end_off);
    evs__put64(b + 48, s->streams_gen);
    evs__put64(b + 56, XXH3_64bits(b, 56));
    int rc = evs__store_path(s, path, sizeof path, EVS_CHECKPOINT_FILE);
    if (rc) return rc;
    if ((rc = evs__store_path(s, tmp, sizeof tmp, EVS_CHECKPOINT_FILE ".tmp")) != 0) return rc;
    evs_file *f = NULL;
    if ((rc = s->vfs->open(s->vfs, tmp, EVS_O_RDWR | EVS_O_CREATE | EVS_O_TRUNC, &f)) != 0) return rc;
    rc = evs__fwrite(f, b, sizeof b, 0, NULL);
    if (rc == 0) rc = f->vfs->sync(f);
    evs__fclose(f);
    if (rc == 0) rc = s->vfs->rename(s->vfs, tmp, path);
    if (rc == 0) rc = s->vfs->sync_dir(s->vfs, s->dir);
    return rc;
}

static int run_job(evs_store *s, const evs_ckpt_job *job)
{
    int rc = 0;
    const char *what = "syncing the offsets index";
    evs_file *offsets = job->seg->offsets;
    if ((rc = offsets->vfs->datasync(offsets)) != 0) goto out;
    what = "saving the stream table";
    if ((rc = evs__streams_save(s, job->covered, &job->changes)) != 0) goto out;
    what = "checkpointing the id index";
    if ((rc = evs__lsm_flush(s->ids)) != 0) goto out;
    what = "checkpointing the stream index";
    if ((rc = evs__lsm_flush(s->sidx)) != 0) goto out;
    what = "checkpointing the projection indexes";  /* [projections] */
    if ((rc = evs__proj_checkpoint(s, job->covered)) != 0) goto out;
    what = "writing checkpoint.idx";
    if ((rc = write_checkpoint_file(s, job)) != 0) goto out;
    atomic_store(&s->ckpt_position, job->covered);
    evs__logf(&s->log, EVS_LOG_DEBUG, "checkpoint at position %" PRIu64, job->covered);
    if (s->streams_old_gen != s->streams_gen) {
        /* the stream table was rewritten into a new generation, which the
         * checkpoint just made durable names: the old file is garbage (a
         * failure to remove it is harmless: the next writable open does) */
        char path[4096], fname[EVS_STREAMS_FNAME_MAX];
        evs__streams_fname(s->streams_old_gen, fname);
        int urc = evs__store_path(s, path, sizeof path, fname);
        if (urc == 0) urc = s->vfs->unlink(s->vfs, path);
        if (urc && urc != -ENOENT)
            evs__logf(&s->log, EVS_LOG_WARN, "could not remove the old stream table %s (rc %d); the next open will", fname, urc);
        s->streams_old_gen = s->streams_gen;
    }
out:
    if (rc) evs__fail(s, rc, what);
    return rc;
}

/* One bounded step of merging; 0 when no merge work remains. */
static int merge_step(evs_store *s)
{
    int more = 0, rc = evs__lsm_merge_step(s->ids, MERGE_STEP, &more);
    if (rc == 0 && !more) rc = evs__lsm_merge_step(s->sidx, MERGE_STEP, &more);
    if (rc) {
        evs__fail(s, rc, "merging index runs");
        return 0;
    }
    return more;
}

/* Once the work a checkpoint brings is done (its job, merges, the name
 * order): hand the pages malloc holds free back to the kernel. A job frees
 * the stream changes of an interval and the name order is rebuilt into a new
 * array; those are large blocks, and glibc keeps a freed block of a thread's
 * arena resident (it raises its mmap threshold to the size of large blocks
 * freed, so the next ones come from the arenas). Tens of MiB at a million
 * streams; the trim costs a walk of the arenas' free lists, once per
 * checkpoint interval. */
static void arena_trim(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

static void *indexer_main(void *arg)
{
    evs_store *s = arg;
    evs_indexer *ix = s->ix;
    pthread_mutex_lock(&ix->mu);
    for (;;) {
        int failed = atomic_load(&s->failed);
        if (ix->head) {
            evs_ckpt_job *job = ix->head;
            ix->head = job->next;
            if (!ix->head) ix->tail = NULL;
            pthread_mutex_unlock(&ix->mu);
            if (!failed && run_job(s, job) == 0) ix->merge_more = ix->sort_check = ix->trim_due = 1;  /* the new runs may make a merge due */
            evs__ckpt_job_free(job);
            pthread_mutex_lock(&ix->mu);
            ix->pending--;
            pthread_cond_broadcast(&ix->room);
            continue;
        }
        if (ix->merge_more && !failed) {
            pthread_mutex_unlock(&ix->mu);
            int more = merge_step(s);
            pthread_mutex_lock(&ix->mu);
            ix->merge_more = more;
            continue;
        }
        if (ix->sort_check && !ix->stop) {  /* new streams into the name order listings walk (no I/O; read.c) */
            ix->sort_check = 0;
            pthread_mutex_unlock(&ix->mu);
            /* (on ENOMEM listings copy more fresh streams: no harm, tried again after the next job) */
            if (evs__streams_sort_due(s)) evs__streams_sort(s);
            pthread_mutex_lock(&ix->mu);
            continue;
        }
        if (ix->trim_due && !ix->stop) {
            ix->trim_due = 0;
            pthread_mutex_unlock(&ix->mu);
            arena_trim();
            pthread_mutex_lock(&ix->mu);
            continue;
        }
        if (failed) pthread_cond_broadcast(&ix->room);  /* a writer waiting for room gives up */
        if (ix->stop) break;
        pthread_cond_wait(&ix->cv, &ix->mu);
    }
    pthread_mutex_unlock(&ix->mu);
    return NULL;
}

int evs__indexer_start(evs_store *s)
{
    evs_indexer *ix = calloc(1, sizeof *ix);
    if (!ix) return EVS_ENOMEM;
    pthread_mutex_init(&ix->mu, NULL);
    pthread_cond_init(&ix->cv, NULL);
    pthread_cond_init(&ix->room, NULL);
    ix->merge_more = 1;  /* the runs found at open may be due for a merge */
    s->ix = ix;
    int rc = pthread_create(&ix->th, NULL, indexer_main, s);
    if (rc) return -rc;
    ix->started = 1;
    return 0;
}

int evs__indexer_wait_room(evs_store *s)
{
    evs_indexer *ix = s->ix;
    pthread_mutex_lock(&ix->mu);
    while (ix->pending >= EVS_CKPT_MAX_PENDING && !atomic_load(&s->failed))
        pthread_cond_wait(&ix->room, &ix->mu);
    pthread_mutex_unlock(&ix->mu);
    return atomic_load(&s->failed) ? EVS_EFATAL : 0;
}

void evs__indexer_submit(evs_store *s, evs_ckpt_job *job)
{
    evs_indexer *ix = s->ix;
    job->next = NULL;
    pthread_mutex_lock(&ix->mu);
    if (ix->tail) ix->tail->next = job;
    else ix->head = job;
    ix->tail = job;
    ix->pending++;
    pthread_cond_signal(&ix->cv);
    pthread_mutex_unlock(&ix->mu);
}

int evs__indexer_stop(evs_store *s)
{
    evs_indexer *ix = s->ix;
    if (!ix) return 0;
    if (ix->started) {
        pthread_mutex_lock(&ix->mu);
        ix->stop = 1;
        pthread_cond_signal(&ix->cv);
        pthread_mutex_unlock(&ix->mu);
        pthread_join(ix->th, NULL);
    }
    while (ix->head) {  /* jobs a failed store never ran */
        evs_ckpt_job *job = ix->head;
        ix->head = job->next;
        evs__ckpt_job_free(job);
    }
    pthread_mutex_destroy(&ix->mu);
    pthread_cond_destroy(&ix->cv);
    pthread_cond_destroy(&ix->room);
    free(ix);
    s->ix = NULL;
    return atomic_load(&s->failed) ? EVS_EFATAL : 0;
}

/* Close, after the writer stopped (this thread now plays the writer): a last
 * freeze of whatever was committed since the previous one, then the index
 * thread finishes every job and merge. */
int evs__checkpoint(evs_store *s)
{
    int rc = 0;
    if (s->ix && !s->read_only && !atomic_load(&s->failed)) rc = evs__freeze(s);
    int rc2 = evs__indexer_stop(s);
    return rc ? rc : rc2;
}
