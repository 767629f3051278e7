/*
 * pg.c — the PostgreSQL peer: initdb + postgres started as our child (as an
 * unprivileged user: postgres refuses root) on 127.0.0.1 with a temporary
 * data directory, synchronous_commit=on and fsync=on; driven through libpq's
 * asynchronous API on the load generator's epoll loop, one connection per
 * client, prepared statements.
 *
 * The table is what an event store on PostgreSQL looks like:
 *   events(position bigint identity primary key, stream text, version int,
 *          id uuid default gen_random_uuid() unique, type text, data json,
 *          time timestamptz default now(), unique (stream, version))
 *
 *  append of N events   one INSERT ... SELECT statement, its own transaction
 *                       (autocommit): the version is assigned in the server
 *                       from max(version) of the stream, like evstore does;
 *                       each client appends to its own streams (no conflicts)
 *  read of a stream     SELECT ... WHERE stream = $1 ORDER BY version LIMIT n
 *  full read            COPY (SELECT ... ORDER BY position) TO STDOUT
 *
 * Not like-for-like: positions come from a sequence (gaps after a rollback,
 * and commit order may differ from position order under concurrency);
 * `json` keeps the client's bytes like evstore (jsonb would not).
 */
#include "peers.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef EVS_BENCH_HAVE_LIBPQ
#include <libpq-fe.h>

typedef struct ppriv {
    int port;
    char conninfo[256];
} ppriv;

typedef struct pconn {
    PGconn *pg;
    int batch;                             /* the batch size "aN" was prepared for */
    const char *vals[1002];
} pconn;

int bh_pg_available(void) { return 1; }

static const char *COLS = "position, stream, version, id, type, data, time";

static char *batch_sql(int n)
{
    lg_buf b = {0};
    lg_buf_addf(&b, "INSERT INTO events(stream, version, type, data) SELECT $1, b.base + t.n, '%s', t.d::json "
                    "FROM (SELECT coalesce(max(version), 0) AS base FROM events WHERE stream = $1) b, (VALUES ",
                BH_EVENT_TYPE);
    for (int i = 0; i < n; i++) lg_buf_addf(&b, "%s(%d, $%d)", i ? ", " : "", i + 1, i + 2);
    lg_buf_addf(&b, ") AS t(n, d)");
    return b.p;
}

static int prepare(PGconn *pg, const char *name, const char *sql)
{
    PGresult *r = PQprepare(pg, name, sql, 0, NULL);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) fprintf(stderr, "postgres: prepare %s: %s", name, PQerrorMessage(pg));
    PQclear(r);
    return ok ? 0 : -1;
}

static int conn_open(bh_sys *s, lg_conn *c)
{
    ppriv *p = s->priv;
    pconn *pc = calloc(1, sizeof *pc);
    if (!pc) return -1;
    c->proto = pc;
    pc->pg = PQconnectdb(p->conninfo);
    if (PQstatus(pc->pg) != CONNECTION_OK) {
        fprintf(stderr, "postgres: connect: %s", PQerrorMessage(pc->pg));
        return -1;
    }
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO events(stream, version, type, data) SELECT $1, coalesce(max(version), 0) + 1, '%s', $2::json "
             "FROM events WHERE stream = $1",
             BH_EVENT_TYPE);
    if (prepare(pc->pg, "a1", sql)) return -1;
    snprintf(sql, sizeof sql, "SELECT %s FROM events WHERE stream = $1 ORDER BY version LIMIT $2", COLS);
    if (prepare(pc->pg, "rf", sql)) return -1;
    snprintf(sql, sizeof sql, "SELECT %s FROM events WHERE stream = $1 ORDER BY version DESC LIMIT $2", COLS);
    if (prepare(pc->pg, "rb", sql)) return -1;
    if (s->want_batch > 1 && s->want_batch <= 1000) {
        char *b = batch_sql(s->want_batch);
        int rc = prepare(pc->pg, "aN", b);
        free(b);
        if (rc) return -1;
        pc->batch = s->want_batch;
    }
    PQsetnonblocking(pc->pg, 1);
    c->fd = PQsocket(pc->pg);
    return c->fd >= 0 ? 0 : -1;
}

static void conn_close(bh_sys *s, lg_conn *c)
{
    (void)s;
    pconn *pc = c->proto;
    if (pc) {
        if (pc->pg) PQfinish(pc->pg);      /* closes the socket */
        free(pc);
    }
    c->proto = NULL;
    c->fd = -1;
    lg_conn_close(c);
}

static int sent(pconn *pc, int ok)
{
    if (!ok) return LG_ERR;
    int f = PQflush(pc->pg);
    return f < 0 ? LG_ERR : f == 1 ? LG_MORE_OUT : LG_MORE_IN;
}

static int issue_append(bh_sys *s, lg_conn *c, const char *stream, int nev)
{
    (void)s;
    pconn *pc = c->proto;
    c->ok = 1;
    c->nevents = (uint32_t)nev;
    pc->vals[0] = stream;
    if (nev == 1) {
        pc->vals[1] = bh_event_data(c->seq);
        return sent(pc, PQsendQueryPrepared(pc->pg, "a1", 2, pc->vals, NULL, NULL, 0));
    }
    if (nev != pc->batch) return LG_ERR;
    for (int i = 0; i < nev; i++) pc->vals[i + 1] = bh_event_data(c->seq * 7 + (uint64_t)i);
    return sent(pc, PQsendQueryPrepared(pc->pg, "aN", nev + 1, pc->vals, NULL, NULL, 0));
}

static int issue_read(bh_sys *s, lg_conn *c, const char *stream, int limit, int backward)
{
    (void)s;
    pconn *pc = c->proto;
    char n[16];
    snprintf(n, sizeof n, "%d", limit);
    pc->vals[0] = stream;
    pc->vals[1] = n;
    c->ok = 1;
    return sent(pc, PQsendQueryPrepared(pc->pg, backward ? "rb" : "rf", 2, pc->vals, NULL, NULL, 0));
}

static int on_io(bh_sys *s, lg_conn *c, unsigned events)
{
    (void)s;
    pconn *pc = c->proto;
    if (events & EPOLLOUT) {
        int f = PQflush(pc->pg);
        if (f < 0) return LG_ERR;
        if (f == 1) {
            if ((events & EPOLLIN) && !PQconsumeInput(pc->pg)) return LG_ERR;
            return LG_MORE_OUT;
        }
    }
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && !PQconsumeInput(pc->pg)) return LG_ERR;
    while (!PQisBusy(pc->pg)) {
        PGresult *r = PQgetResult(pc->pg);
        if (!r) return LG_DONE;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_TUPLES_OK) c->nevents = (uint32_t)PQntuples(r);
        else if (st != PGRES_COMMAND_OK) c->ok = 0;
        PQclear(r);
    }
    return LG_MORE_IN;
}

static PGconn *blocking(bh_sys *s)
{
    ppriv *p = s->priv;
    PGconn *pg = PQconnectdb(p->conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "postgres: connect: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

static int exec_ok(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) fprintf(stderr, "postgres: %s: %s", sql, PQerrorMessage(pg));
    PQclear(r);
    return ok ? 0 : -1;
}

/* Bulk load with versions assigned here (this loader is the only writer). */
static int fill(bh_sys *s, uint64_t nevents, int batch, uint32_t nstreams, const char *prefix, uint64_t seed)
{
    PGconn *pg = blocking(s);
    if (!pg) return -1;
    uint32_t *ver = calloc(nstreams, sizeof *ver);
    char (*names)[64] = malloc((size_t)batch * 64);
    char (*vers)[16] = malloc((size_t)batch * 16);
    const char **vals = malloc((size_t)batch * 3 * sizeof *vals);
    int rc = ver && names && vers && vals ? 0 : -1;
    uint64_t rng = seed;
    for (uint64_t done = 0; done < nevents && rc == 0;) {
        int n = (int)(nevents - done < (uint64_t)batch ? nevents - done : (uint64_t)batch);
        lg_buf sql = {0};
        lg_buf_addf(&sql, "INSERT INTO events(stream, version, type, data) VALUES ");
        for (int i = 0; i < n; i++) {
            uint32_t k = (uint32_t)lg_rand_below(&rng, nstreams);
            snprintf(names[i], 64, "%s%u", prefix, k);
            snprintf(vers[i], 16, "%u", ++ver[k]);
            vals[3 * i] = names[i];
            vals[3 * i + 1] = vers[i];
            vals[3 * i + 2] = bh_event_data(done + (uint64_t)i);
            lg_buf_addf(&sql, "%s($%d, $%d::int, '%s', $%d::json)", i ? ", " : "", 3 * i + 1, 3 * i + 2, BH_EVENT_TYPE,
                        3 * i + 3);
        }
        PGresult *r = PQexecParams(pg, sql.p, 3 * n, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "postgres: fill: %s", PQerrorMessage(pg));
            rc = -1;
        }
        PQclear(r);
        lg_buf_free(&sql);
        done += (uint64_t)n;
    }
    free(ver);
    free(names);
    free(vers);
    free(vals);
    PQfinish(pg);
    return rc;
}

static int full_read(bh_sys *s, uint64_t *events, uint64_t *bytes)
{
    PGconn *pg = blocking(s);
    if (!pg) return -1;
    *events = *bytes = 0;
    char sql[256];
    snprintf(sql, sizeof sql, "COPY (SELECT %s FROM events ORDER BY position) TO STDOUT", COLS);
    PGresult *r = PQexec(pg, sql);
    int rc = PQresultStatus(r) == PGRES_COPY_OUT ? 0 : -1;
    PQclear(r);
    while (rc == 0) {
        char *buf = NULL;
        int n = PQgetCopyData(pg, &buf, 0);
        if (n == -1) break;
        if (n < 0) { rc = -1; break; }
        (*events)++;
        *bytes += (uint64_t)n;
        PQfreemem(buf);
    }
    while ((r = PQgetResult(pg))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK) rc = -1;
        PQclear(r);
    }
    PQfinish(pg);
    return rc;
}

static void stop(bh_sys *s)
{
    if (s->pid > 0) bh_stop_pid(s->pid, SIGINT, 30000);   /* fast shutdown */
    s->pid = 0;
    free(s->priv);
    s->priv = NULL;
}

int bh_pg_start(bh_sys *s, const char *dir, const char *user, char *why, size_t whylen)
{
    char bindir[PATH_MAX + 16], postgres[PATH_MAX + 16], initdb[PATH_MAX + 32];
    if (bh_glob_last("/usr/lib/postgresql/*/bin/postgres", postgres, sizeof postgres) != 0) {
        snprintf(why, whylen, "PostgreSQL is not installed (scripts/install-bench-peers)");
        return -1;
    }
    snprintf(bindir, sizeof bindir, "%s", postgres);
    *strrchr(bindir, '/') = 0;
    snprintf(initdb, sizeof initdb, "%s/initdb", bindir);
    uid_t uid;
    gid_t gid;
    if (geteuid() == 0 && bh_user_ids(user, &uid, &gid) != 0) {
        snprintf(why, whylen, "user %s does not exist: postgres refuses to run as root (scripts/install-bench-peers creates it)", user);
        return -1;
    }
    const char *as = geteuid() == 0 ? user : NULL;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(why, whylen, "mkdir %s: %s", dir, strerror(errno));
        return -1;
    }
    if (as && chown(dir, uid, gid) != 0) {
        snprintf(why, whylen, "chown %s: %s", dir, strerror(errno));
        return -1;
    }
    char data[PATH_MAX + 8], log[PATH_MAX + 16];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(log, sizeof log, "%s/initdb.log", dir);
    char *iargv[] = {initdb, "-D", data, "-U", (char *)user, "-A", "trust", "-E", "UTF8", "--locale=C", "-N", NULL};
    if (bh_run(iargv, log, as, 180000) != 0) {
        snprintf(why, whylen, "initdb failed (see %s)", log);
        return -1;
    }
    ppriv *p = calloc(1, sizeof *p);
    if (!p) return -1;
    snprintf(log, sizeof log, "%s/postgres.log", dir);
    for (int attempt = 0; attempt < 5 && !s->pid; attempt++) {
        p->port = bh_free_port();
        char port[16];
        snprintf(port, sizeof port, "%d", p->port);
        snprintf(p->conninfo, sizeof p->conninfo, "host=127.0.0.1 port=%d dbname=postgres user=%s connect_timeout=10",
                 p->port, user);
        char *argv[] = {postgres, "-D", data, "-p", port, "-k", (char *)dir,
                        "-c", "listen_addresses=127.0.0.1", "-c", "synchronous_commit=on", "-c", "fsync=on",
                        "-c", "max_connections=300", "-c", "logging_collector=off", NULL};
        pid_t pid = bh_spawn(argv, log, as);
        if (pid < 0) break;
        for (int i = 0; i < 3000; i++) {    /* up to 30 s */
            if (PQping(p->conninfo) == PQPING_OK) { s->pid = pid; break; }
            if (bh_child_exited(pid)) break;
            lg_sleep_ns(10000000u);
        }
        if (!s->pid) bh_stop_pid(pid, SIGKILL, 1000);
    }
    if (!s->pid) {
        snprintf(why, whylen, "postgres did not start (see %s)", log);
        free(p);
        return -1;
    }
    s->priv = p;
    PGconn *pg = blocking(s);
    int version = pg ? PQserverVersion(pg) : 0;
    int rc = pg ? exec_ok(pg, "CREATE TABLE events (position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                              "stream text NOT NULL, version int NOT NULL, "
                              "id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE, type text NOT NULL, data json, "
                              "metadata json, time timestamptz NOT NULL DEFAULT now(), UNIQUE (stream, version))")
                : -1;
    if (pg) PQfinish(pg);
    s->name = "postgres";
    s->inproc = 0;
    s->tree = 1;
    s->conn_open = conn_open;
    s->conn_close = conn_close;
    s->issue_append = issue_append;
    s->issue_read = issue_read;
    s->on_io = on_io;
    s->fill = fill;
    s->full_read = full_read;
    s->stop = stop;
    snprintf(s->config, sizeof s->config,
             "PostgreSQL %d.%d, synchronous_commit=on, fsync=on, one transaction per append", version / 10000,
             version % 10000);
    if (rc) {
        snprintf(why, whylen, "cannot create the events table (see stderr)");
        stop(s);
        return -1;
    }
    return 0;
}

#else

int bh_pg_available(void) { return 0; }
int bh_pg_start(bh_sys *s, const char *dir, const char *user, char *why, size_t whylen)
{
    (void)s; (void)dir; (void)user;
    snprintf(why, whylen, "built without libpq (run scripts/install-bench-peers, then re-run cmake)");
    return -1;
}

#endif
