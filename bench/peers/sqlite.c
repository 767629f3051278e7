/*
 * sqlite.c — the SQLite peer: a database file in WAL mode with
 * synchronous=FULL (every commit fsyncs the WAL), opened in this process and
 * used by one thread: SQLite serialises writers, so more threads would only
 * queue on its lock.
 *
 * Same table as the PostgreSQL peer (position integer primary key, unique
 * (stream, version), unique 16-byte random id, data checked by json()).
 *  append of N events   BEGIN IMMEDIATE; max(version) of the stream; N INSERTs; COMMIT
 *  read of a stream     SELECT ... WHERE stream = ? ORDER BY version LIMIT n
 *  full read            SELECT ... ORDER BY position, every column touched
 *
 * Not like-for-like: no network, no protocol, no serialisation of answers,
 * no concurrency: its figures are a library's, set against a server's.
 */
#include "peers.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef EVS_BENCH_HAVE_SQLITE
#include <sqlite3.h>

typedef struct spriv {
    sqlite3 *db;
    sqlite3_stmt *ver, *ins, *rf, *rb, *all;
    uint64_t seq;
} spriv;

int bh_sqlite_available(void) { return 1; }

static int exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s: %s\n", sql, err ? err : "?");
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

static int insert(spriv *p, const char *stream, int64_t version, const char *data)
{
    sqlite3_bind_text(p->ins, 1, stream, -1, SQLITE_STATIC);
    sqlite3_bind_int64(p->ins, 2, version);
    sqlite3_bind_text(p->ins, 3, data, (int)BH_DATA_LEN, SQLITE_STATIC);
    int rc = sqlite3_step(p->ins);
    sqlite3_reset(p->ins);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int append_sync(bh_sys *s, const char *stream, int nev)
{
    spriv *p = s->priv;
    if (exec(p->db, "BEGIN IMMEDIATE")) return -1;
    sqlite3_bind_text(p->ver, 1, stream, -1, SQLITE_STATIC);
    int64_t base = sqlite3_step(p->ver) == SQLITE_ROW ? sqlite3_column_int64(p->ver, 0) : 0;
    sqlite3_reset(p->ver);
    int rc = 0;
    for (int i = 0; i < nev && rc == 0; i++) rc = insert(p, stream, base + i + 1, bh_event_data(p->seq++));
    if (rc) { exec(p->db, "ROLLBACK"); return -1; }
    return exec(p->db, "COMMIT");
}

/* Step through a statement touching every column; rows and bytes. */
static void drain(sqlite3_stmt *st, uint64_t *rows, uint64_t *bytes)
{
    int nc = sqlite3_column_count(st);
    while (sqlite3_step(st) == SQLITE_ROW) {
        (*rows)++;
        for (int i = 0; i < nc; i++) {
            const void *b = sqlite3_column_blob(st, i);
            (void)b;
            *bytes += (uint64_t)sqlite3_column_bytes(st, i);
        }
    }
    sqlite3_reset(st);
}

static int read_sync(bh_sys *s, const char *stream, int limit, int backward, uint32_t *nread)
{
    spriv *p = s->priv;
    sqlite3_stmt *st = backward ? p->rb : p->rf;
    sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, limit);
    uint64_t rows = 0, bytes = 0;
    drain(st, &rows, &bytes);
    *nread = (uint32_t)rows;
    return 0;
}

static int fill(bh_sys *s, uint64_t nevents, int batch, uint32_t nstreams, const char *prefix, uint64_t seed)
{
    spriv *p = s->priv;
    uint32_t *ver = calloc(nstreams, sizeof *ver);
    if (!ver) return -1;
    uint64_t rng = seed;
    char stream[96];
    int rc = 0;
    for (uint64_t done = 0; done < nevents && rc == 0;) {
        int n = (int)(nevents - done < (uint64_t)batch ? nevents - done : (uint64_t)batch);
        if (exec(p->db, "BEGIN IMMEDIATE")) { rc = -1; break; }
        for (int i = 0; i < n && rc == 0; i++) {
            uint32_t k = (uint32_t)lg_rand_below(&rng, nstreams);
            snprintf(stream, sizeof stream, "%s%u", prefix, k);
            rc = insert(p, stream, ++ver[k], bh_event_data(done + (uint64_t)i));
        }
        if (exec(p->db, rc ? "ROLLBACK" : "COMMIT")) rc = -1;
        done += (uint64_t)n;
    }
    free(ver);
    return rc;
}

static int full_read(bh_sys *s, uint64_t *events, uint64_t *bytes)
{
    spriv *p = s->priv;
    *events = *bytes = 0;
    drain(p->all, events, bytes);
    return 0;
}

static uint64_t mem_kib(bh_sys *s)
{
    (void)s;
    return (uint64_t)sqlite3_memory_used() / 1024u;
}

static void stop(bh_sys *s)
{
    spriv *p = s->priv;
    if (p) {
        sqlite3_finalize(p->ver);
        sqlite3_finalize(p->ins);
        sqlite3_finalize(p->rf);
        sqlite3_finalize(p->rb);
        sqlite3_finalize(p->all);
        sqlite3_close(p->db);
        free(p);
    }
    s->priv = NULL;
}

int bh_sqlite_start(bh_sys *s, const char *dir, char *why, size_t whylen)
{
    mkdir(dir, 0700);
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/events.db", dir);
    spriv *p = calloc(1, sizeof *p);
    if (!p) return -1;
    s->priv = p;
    s->stop = stop;
    if (sqlite3_open(path, &p->db) != SQLITE_OK) {
        snprintf(why, whylen, "sqlite3_open %s failed", path);
        stop(s);
        return -1;
    }
    const char *cols = "position, stream, version, id, type, data, time";
    char q[512];
    int rc = exec(p->db, "PRAGMA journal_mode=WAL") || exec(p->db, "PRAGMA synchronous=FULL") ||
             exec(p->db, "CREATE TABLE events (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, "
                         "version INTEGER NOT NULL, id BLOB NOT NULL UNIQUE, type TEXT NOT NULL, data TEXT, "
                         "metadata TEXT, time TEXT NOT NULL, UNIQUE (stream, version))");
    if (!rc) rc = sqlite3_prepare_v2(p->db, "SELECT coalesce(max(version), 0) FROM events WHERE stream = ?1", -1, &p->ver, NULL);
    snprintf(q, sizeof q,
             "INSERT INTO events(stream, version, id, type, data, time) VALUES (?1, ?2, randomblob(16), '%s', json(?3), "
             "strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now'))",
             BH_EVENT_TYPE);
    if (!rc) rc = sqlite3_prepare_v2(p->db, q, -1, &p->ins, NULL);
    snprintf(q, sizeof q, "SELECT %s FROM events WHERE stream = ?1 ORDER BY version LIMIT ?2", cols);
    if (!rc) rc = sqlite3_prepare_v2(p->db, q, -1, &p->rf, NULL);
    snprintf(q, sizeof q, "SELECT %s FROM events WHERE stream = ?1 ORDER BY version DESC LIMIT ?2", cols);
    if (!rc) rc = sqlite3_prepare_v2(p->db, q, -1, &p->rb, NULL);
    snprintf(q, sizeof q, "SELECT %s FROM events ORDER BY position", cols);
    if (!rc) rc = sqlite3_prepare_v2(p->db, q, -1, &p->all, NULL);
    if (rc) {
        snprintf(why, whylen, "sqlite setup failed: %s", sqlite3_errmsg(p->db));
        stop(s);
        return -1;
    }
    s->name = "sqlite";
    s->inproc = 1;
    s->pid = 0;
    s->tree = 0;
    s->append_sync = append_sync;
    s->read_sync = read_sync;
    s->fill = fill;
    s->full_read = full_read;
    s->mem_kib = mem_kib;
    snprintf(s->config, sizeof s->config, "SQLite %s in process, WAL, synchronous=FULL, 1 writer", sqlite3_libversion());
    return 0;
}

#else

int bh_sqlite_available(void) { return 0; }
int bh_sqlite_start(bh_sys *s, const char *dir, char *why, size_t whylen)
{
    (void)s; (void)dir;
    snprintf(why, whylen, "built without libsqlite3 (run scripts/install-bench-peers, then re-run cmake)");
    return -1;
}

#endif
