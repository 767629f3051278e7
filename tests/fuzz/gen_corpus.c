/*
 * gen_corpus.c — writes the seed corpora of fuzz_http, fuzz_index and
 * fuzz_backup (tests/fuzz/corpus/{http,index,backup}/). Built with the tests
 * (target fuzz_gen_corpus), never run by them; run it by hand after a format
 * change:
 *     build/tests/fuzz/fuzz_gen_corpus tests/fuzz/corpus
 * Files it does not write (crashes kept as regression inputs, named
 * "crash-*" or "regress-*") are left alone.
 *
 * http:   requests over every route, valid and invalid, ordered by name
 *         (fuzz_http's store keeps state across inputs: appends come first).
 * index:  a run file, a manifest, streams.idx and a two-run index directory,
 *         made by the engine's own writers on an in-memory file system, each
 *         as it is and with the "fix checksums" flag (see fuzz_index.c).
 * backup: tars of real backups (a full one, an increment, an empty store) in
 *         the modes of fuzz_backup.c, and one raw archive.
 * Ids, salts and times in the files differ from run to run; that is fine.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

#include "backup/backup_int.h"
#include "index/lsm.h"
#include "index/manifest.h"
#include "store/store_int.h"
#include "vfs_mem.h"

static const char *outdir;

static void save(const char *target, const char *name, uint8_t mode, int with_mode, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", outdir, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", outdir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || (with_mode && fwrite(&mode, 1, 1, f) != 1) || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void quiet(void *ctx, int level, const char *msg) { (void)ctx; (void)level; (void)msg; }

static void check(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "gen_corpus: %s: %s\n", what, evs_strerror(rc));
        exit(1);
    }
}

static uint8_t *slurp(const evs_vfs *vfs, const char *path, size_t *len)
{
    evs_file *f = NULL;
    uint64_t size = 0;
    size_t got = 0;
    check(vfs->open(vfs, path, EVS_O_RDONLY, &f), path);
    check(f->vfs->size(f, &size), path);
    uint8_t *p = malloc(size ? size : 1);
    if (!p) exit(1);
    check(evs__fread(f, p, size, 0, &got), path);
    evs__fclose(f);
    *len = got;
    return p;
}

/* ---- http ---- */

#define W "Authorization: Bearer fuzz-write\r\n"
#define R "Authorization: Bearer fuzz-read\r\n"
#define T "Authorization: Bearer fuzz-t\r\n"
#define H "Host: localhost\r\n"
#define JSON "Content-Type: application/json\r\n"
#define NDJSON "Content-Type: application/x-ndjson\r\n"
#define ID "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"

/* A POST/PUT with a body: Content-Length computed. */
static void body_req(const char *name, const char *head, const char *body)
{
    char buf[16384];
    int n = snprintf(buf, sizeof buf, "%sContent-Length: %zu\r\n\r\n%s", head, strlen(body), body);
    save("http", name, 0, 0, buf, (size_t)n);
}

static void plain(const char *name, const char *text) { save("http", name, 0, 0, text, strlen(text)); }

static void gen_http(void)
{
    /* 0x: the state the others read: streams, events with a known id, a projection, a consumer */
    body_req("00-append-one", "POST /streams/orders-1 HTTP/1.1\r\n" H W JSON,
             "{\"type\":\"OrderPlaced\",\"data\":{\"total\":12.5,\"items\":[\"a\",\"b\"]},\"metadata\":{\"by\":\"u1\"},"
             "\"id\":\"" ID "\"}");
    body_req("01-append-batch", "POST /streams/orders-2?expected_version=no_stream HTTP/1.1\r\n" H W JSON,
             "[{\"type\":\"A\",\"data\":1},{\"type\":\"B\",\"data\":\"\\u00e9t\\u00e9 \\ud83d\\ude00\"},"
             "{\"type\":\"A\",\"data\":null,\"metadata\":{}}]");
    body_req("02-append-ndjson", "POST /streams/t%2Flog?expected_version=any HTTP/1.1\r\n" H T NDJSON,
             "{\"type\":\"L\",\"data\":{\"n\":1}}\n{\"type\":\"L\",\"data\":{\"n\":2}}\n");
    body_req("03-append-multi", "POST /events HTTP/1.1\r\n" H W JSON,
             "[{\"stream\":\"orders-1\",\"type\":\"Paid\",\"data\":{},\"expected_version\":1},"
             "{\"stream\":\"inv-9\",\"type\":\"Reserved\",\"data\":[1,2,3],\"expected_version\":\"no_stream\"}]");
    body_req("04-append-condition", "POST /events HTTP/1.1\r\n" H W JSON,
             "{\"events\":[{\"stream\":\"orders-3\",\"type\":\"A\",\"data\":true}],"
             "\"condition\":{\"filter\":{\"types\":[\"A\"],\"stream_prefix\":\"orders\"},\"after\":100}}");
    plain("05-append-chunked",
          "POST /streams/orders-4 HTTP/1.1\r\n" H W JSON "Transfer-Encoding: chunked\r\n\r\n"
          "c\r\n{\"type\":\"C\",\r\na\r\n\"data\":{}}\r\n0\r\n\r\n");
    body_req("06-append-expect", "POST /streams/orders-5 HTTP/1.1\r\n" H W JSON "Expect: 100-continue\r\n",
             "{\"type\":\"E\",\"data\":0}");
    body_req("07-projection-put", "PUT /projections/big-orders HTTP/1.1\r\n" H W JSON,
             "{\"types\":[\"OrderPlaced\",\"Paid\"],\"stream_prefix\":\"orders-\"}");
    body_req("08-consumer-put", "PUT /consumers/mailer HTTP/1.1\r\n" H W JSON,
             "{\"stream_prefix\":\"orders\",\"types\":[\"A\",\"OrderPlaced\"]}");
    body_req("09-consumer-put-projection", "PUT /consumers/p-reader HTTP/1.1\r\n" H W JSON,
             "{\"projection\":\"big-orders\"}");
    {
        /* big bodies, so the fuzzer's length limit starts at a few KiB: a
         * batch of 40 events, and one event over --max-event-size 4K (413) */
        char body[6000];
        size_t k = (size_t)snprintf(body, sizeof body, "[");
        for (int i = 0; i < 40; i++)
            k += (size_t)snprintf(body + k, sizeof body - k, "%s{\"type\":\"Bulk\",\"data\":{\"i\":%d,\"pad\":\"%s\"}}",
                                  i ? "," : "", i, "abcdefghijklmnopqrstuvwxyz0123456789");
        snprintf(body + k, sizeof body - k, "]");
        body_req("0a-append-bulk", "POST /streams/bulk-1 HTTP/1.1\r\n" H W JSON, body);
        k = (size_t)snprintf(body, sizeof body, "{\"type\":\"Huge\",\"data\":\"");
        memset(body + k, 'h', 4200);
        snprintf(body + k + 4200, sizeof body - k - 4200, "\"}");
        body_req("0b-append-over-event-limit", "POST /streams/bulk-2 HTTP/1.1\r\n" H W JSON, body);
    }
    /* 1x: reads */
    plain("10-read-all", "GET /events HTTP/1.1\r\n" H R "\r\n");
    plain("11-read-filtered",
          "GET /events?from=2&limit=3&direction=forward&type=A,B&type=Paid&stream_prefix=orders HTTP/1.1\r\n" H R "\r\n");
    plain("12-read-backward", "GET /streams/orders-2?direction=backward&from=2&limit=1 HTTP/1.1\r\n" H R "\r\n");
    plain("13-read-stream-sse",
          "GET /streams/orders-1?from=0 HTTP/1.1\r\n" H R "Accept: text/event-stream\r\nLast-Event-ID: 1\r\n\r\n");
    plain("14-get-event", "GET /events/" ID " HTTP/1.1\r\n" H R "\r\n");
    plain("15-list-streams", "GET /streams?prefix=orders HTTP/1.1\r\n" H R "\r\n");
    plain("16-head-stream", "HEAD /streams/orders-1 HTTP/1.1\r\n" H R "\r\n");
    plain("17-projection-read", "GET /projections/big-orders?from=1&limit=10&direction=backward HTTP/1.1\r\n" H R "\r\n");
    plain("18-consumer-get", "GET /consumers/mailer HTTP/1.1\r\n" H R "\r\n");
    plain("19-consumer-events", "GET /consumers/mailer/events?limit=2 HTTP/1.1\r\n" H R "\r\n");
    body_req("20-consumer-checkpoint", "POST /consumers/mailer/checkpoint HTTP/1.1\r\n" H W JSON,
             "{\"position\":2,\"state\":{\"sent\":[1,2],\"x\":\"y\"}}");
    plain("21-watch-sse",
          "GET /events?watch=true&heartbeat=1&stream_prefix=orders HTTP/1.1\r\n" H R
          "Accept: text/event-stream\r\nLast-Event-ID: 3\r\n\r\n");
    plain("22-watch-stream", "GET /streams/orders-9?watch=1 HTTP/1.1\r\n" H R "\r\n");
    plain("23-stats-metrics", "GET /stats HTTP/1.1\r\n" H R "\r\n\r\nGET /metrics HTTP/1.1\r\n" H R "\r\n");
    plain("24-health", "GET /health HTTP/1.1\r\n" H "\r\n");
    plain("25-backup", "GET /backup?since=3 HTTP/1.1\r\n" H R "Connection: close\r\n\r\n");
    {
        char buf[1024];
        const char *b = "{\"type\":\"P\",\"data\":2}";
        int n = snprintf(buf, sizeof buf,
                         "GET /health HTTP/1.1\r\n" H "\r\nPOST /streams/orders-6 HTTP/1.1\r\n" H W JSON
                         "Content-Length: %zu\r\n\r\n%sGET /streams/orders-6 HTTP/1.1\r\n" H R "\r\n", strlen(b), b);
        save("http", "26-pipelined", 0, 0, buf, (size_t)n);
    }
    plain("27-http10", "GET /streams/orders-2 HTTP/1.0\r\n" R "\r\n");
    /* 3x: refusals (nothing may be written) */
    body_req("30-conflict", "POST /streams/orders-1?expected_version=0 HTTP/1.1\r\n" H W JSON,
             "{\"type\":\"X\",\"data\":{}}");
    body_req("31-duplicate-id", "POST /streams/other HTTP/1.1\r\n" H W JSON,
             "{\"type\":\"X\",\"data\":{},\"id\":\"" ID "\"}");
    body_req("32-bad-json", "POST /streams/orders-1 HTTP/1.1\r\n" H W JSON, "{\"type\":\"X\",\"data\":{]}");
    body_req("33-bad-type", "POST /streams/orders-1 HTTP/1.1\r\n" H W JSON, "{\"type\":\"\",\"data\":1,\"extra\":2}");
    body_req("34-no-token", "POST /streams/orders-1 HTTP/1.1\r\n" H JSON, "{\"type\":\"X\",\"data\":1}");
    body_req("35-read-token-writes", "POST /events HTTP/1.1\r\n" H R JSON,
             "[{\"stream\":\"a\",\"type\":\"X\",\"data\":1}]");
    body_req("36-prefix-token-outside", "POST /events HTTP/1.1\r\n" H T JSON,
             "[{\"stream\":\"t/ok\",\"type\":\"X\",\"data\":1},{\"stream\":\"u/no\",\"type\":\"X\",\"data\":1}]");
    plain("37-too-big", "POST /streams/big HTTP/1.1\r\n" H W JSON "Content-Length: 99999999999\r\n\r\n{}");
    plain("38-unknown-param", "GET /events?limt=10&from=x HTTP/1.1\r\n" H R "\r\n");
    plain("39-bad-params", "GET /events?from=-1&limit=1e3&direction=up&watch=maybe&heartbeat=0 HTTP/1.1\r\n" H R "\r\n");
    plain("40-bad-method", "PATCH /streams/orders-1 HTTP/1.1\r\n" H W "\r\n");
    plain("41-nul-in-name", "GET /streams/a%00b%ZZ%2 HTTP/1.1\r\n" H R "\r\n");
    plain("42-no-route", "DELETE /nowhere/%FF%FE?x=1&x=2&=&& HTTP/1.1\r\n" H W "\r\n");
    body_req("43-condition-failed", "POST /events HTTP/1.1\r\n" H W JSON,
             "{\"events\":[{\"stream\":\"orders-7\",\"type\":\"A\",\"data\":1}],"
             "\"condition\":{\"filter\":{\"types\":[\"A\"]},\"after\":0}}");
    body_req("44-bad-envelope", "POST /events HTTP/1.1\r\n" H W JSON,
             "{\"events\":[],\"condition\":{\"filter\":{\"types\":[1]},\"after\":-1},\"more\":1}");
    plain("45-bad-uuid", "GET /events/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5 HTTP/1.1\r\n" H R "\r\n");
    body_req("46-projection-conflict", "PUT /projections/big-orders HTTP/1.1\r\n" H W JSON, "{\"types\":[\"Other\"]}");
    body_req("47-consumer-bad", "PUT /consumers/bad%2Fevents HTTP/1.1\r\n" H W JSON,
             "{\"stream\":\"a\",\"projection\":\"b\",\"types\":\"c\"}");
    body_req("48-checkpoint-bad", "POST /consumers/mailer/checkpoint HTTP/1.1\r\n" H W JSON,
             "{\"position\":999999,\"state\":[}");
    plain("49-bad-http", "GET /health HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n");
    plain("50-incomplete", "POST /streams/x HTTP/1.1\r\n" H W "Content-Length: 50\r\n\r\n{\"type\":");
    plain("51-backup-bad", "GET /backup?since=abc&x=1 HTTP/1.1\r\n" H R "\r\n");
    /* 6x: deletions last */
    plain("60-consumer-delete", "DELETE /consumers/p-reader HTTP/1.1\r\n" H W "\r\n");
    plain("61-projection-delete", "DELETE /projections/big-orders HTTP/1.1\r\n" H W "\r\n");
    plain("62-consumer-of-deleted", "GET /consumers/mailer/events HTTP/1.1\r\n" H R "\r\n");
}

/* ---- index ---- */

static void kv_of(uint64_t i, evs_kv *e)
{
    uint64_t x = i * 0x9E3779B97F4A7C15ull;
    for (int k = 0; k < 16; k++) e->key[k] = (uint8_t)(x >> (8 * (k % 8))) ^ (uint8_t)k;
    e->key[0] = (uint8_t)(i % 7);  /* some keys share a prefix: several a per key */
    e->a = i / 7 + 1;
    e->b = i;
}

static void tlv(uint8_t **buf, size_t *len, uint8_t tag, const uint8_t *p, size_t n)
{
    *buf = realloc(*buf, *len + 5 + n);
    if (!*buf) exit(1);
    (*buf)[*len] = tag;
    evs__put32(*buf + *len + 1, (uint32_t)n);
    memcpy(*buf + *len + 5, p, n);
    *len += 5 + n;
}

static void gen_index(void)
{
    evs_vfs *vfs = vfs_mem_new();
    check(vfs->mkdir(vfs, "/ix"), "mkdir");
    evs__lsm *l = NULL;
    uint64_t covered = 0;
    check(evs__lsm_open(vfs, "/ix", "ids", 0, &covered, &l), "lsm open");
    for (uint64_t i = 0; i < 300; i++) {
        evs_kv e;
        kv_of(i, &e);
        check(evs__lsm_put(l, &e), "put");
    }
    check(evs__lsm_checkpoint(l, 300), "checkpoint");
    for (uint64_t i = 300; i < 340; i++) {
        evs_kv e;
        kv_of(i, &e);
        check(evs__lsm_put(l, &e), "put");
    }
    check(evs__lsm_checkpoint(l, 340), "checkpoint");
    evs__lsm_close(l);

    size_t mlen = 0;
    uint8_t *man = slurp(vfs, "/ix/ids.manifest.idx", &mlen);
    evs__manifest m;
    uint64_t off;
    const char *what;
    check(evs__man_decode(man, mlen, &m, &off, &what), "manifest");
    save("index", "manifest", 1, 1, man, mlen);
    uint8_t *dir = NULL;
    size_t dlen = 0;
    tlv(&dir, &dlen, 0, man, mlen);
    for (size_t i = 0; i < m.nruns; i++) {
        char fname[EVS_IDX_FNAME_MAX], path[EVS_IDX_PATH_MAX];
        evs__idx_run_name(fname, sizeof fname, "ids", m.runs[i].seq, 0);
        snprintf(path, sizeof path, "/ix/%s", fname);
        size_t rlen = 0;
        uint8_t *run = slurp(vfs, path, &rlen);
        if (i == 0) {  /* the bigger, older run */
            save("index", "run", 0, 1, run, rlen);
            save("index", "run-fix", 4, 1, run, rlen);
        }
        tlv(&dir, &dlen, (uint8_t)(2 * m.runs[i].seq + 1), run, rlen);
        free(run);
    }
    save("index", "lsm", 3, 1, dir, dlen);
    save("index", "lsm-fix", 7, 1, dir, dlen);
    save("index", "lsm-readonly-fix", 15, 1, dir, dlen);
    evs__man_free(&m);
    free(dir);
    free(man);

    /* streams.idx: two chunks, from two sessions of a store */
    evs_options opt;
    evs_options_init(&opt);
    opt.vfs = vfs;
    opt.log = quiet;
    opt.sync = EVS_SYNC_NEVER;
    for (int round = 0; round < 2; round++) {
        evs_store *s = NULL;
        check(evs_open("/db", &opt, &s), "open");
        const char *names[] = {"orders-1", "orders-2", "a$b", "t/log", "\xc3\xa9t\xc3\xa9"};
        for (int i = round; i < 5; i += 1 + round) {
            evs_event_in e = {.type = "T", .data = "{}", .data_len = 2};
            check(evs_append(s, names[i], EVS_EXPECT_ANY, &e, 1, NULL, NULL), "append");
        }
        check(evs_close(s), "close");
    }
    size_t slen = 0;
    uint8_t *st = slurp(vfs, "/db/" EVS_STREAMS_FILE, &slen);
    save("index", "streams", 2, 1, st, slen);
    save("index", "streams-fix", 6, 1, st, slen);
    free(st);
    vfs_mem_free(vfs);
}

/* ---- backup ---- */

typedef struct sink { uint8_t *p; size_t len; } sink;

static int to_sink(void *ctx, const void *buf, size_t n)
{
    sink *k = ctx;
    k->p = realloc(k->p, k->len + n);
    if (!k->p) return -ENOMEM;
    memcpy(k->p + k->len, buf, n);
    k->len += n;
    return 0;
}

static sink backup(evs_store *s, uint64_t since)
{
    sink k = {0};
    evs_backup_options bo;
    evs_backup_options_init(&bo);
    bo.write = to_sink;
    bo.write_ctx = &k;
    check(evs_backup(s, -1, since, &bo, NULL), "backup");
    return k;
}

/* The tar inside an archive: decompress the zstd frame before the trailer. */
static sink untar(const sink *a)
{
    sink t = {0};
    ZSTD_DStream *z = ZSTD_createDStream();
    ZSTD_inBuffer in = {a->p, a->len - EVS_BACKUP_TRAILER_SIZE, 0};
    uint8_t out[65536];
    while (in.pos < in.size) {
        ZSTD_outBuffer ob = {out, sizeof out, 0};
        size_t r = ZSTD_decompressStream(z, &ob, &in);
        if (ZSTD_isError(r)) exit(1);
        to_sink(&t, out, ob.pos);
    }
    ZSTD_freeDStream(z);
    return t;
}

static void gen_backup(void)
{
    evs_vfs *vfs = vfs_mem_new();
    evs_options opt;
    evs_options_init(&opt);
    opt.vfs = vfs;
    opt.log = quiet;
    opt.sync = EVS_SYNC_NEVER;
    opt.segment_size = 64u << 10;
    evs_store *s = NULL;
    check(evs_open("/empty", &opt, &s), "open");
    sink e = backup(s, 0), et = untar(&e);
    save("backup", "empty", 0, 1, et.p, et.len);
    check(evs_close(s), "close");

    check(evs_open("/db", &opt, &s), "open");
    for (int i = 0; i < 12; i++) {
        char data[64];
        int n = snprintf(data, sizeof data, "{\"i\":%d,\"s\":\"\\u00e9\"}", i);
        evs_event_in ev = {.type = i % 3 ? "Placed" : "Paid", .data = data, .data_len = (size_t)n,
                           .metadata = i % 4 ? NULL : "{\"by\":1}", .metadata_len = i % 4 ? 0 : 8};
        check(evs_append(s, i % 2 ? "orders-1" : "orders-2", EVS_EXPECT_ANY, &ev, 1, NULL, NULL), "append");
    }
    sink full = backup(s, 0), ft = untar(&full);
    uint64_t p = evs_position(s);
    for (int i = 0; i < 4; i++) {
        evs_event_in ev = {.type = "Later", .data = "[1,2]", .data_len = 5};
        check(evs_append(s, "orders-3", EVS_EXPECT_ANY, &ev, 1, NULL, NULL), "append");
    }
    sink inc = backup(s, p), it = untar(&inc);
    check(evs_close(s), "close");
    save("backup", "full", 0, 1, ft.p, ft.len);
    save("backup", "full-fix", 1, 1, ft.p, ft.len);
    save("backup", "full-exists-fix", 9, 1, ft.p, ft.len);
    save("backup", "raw", 2, 1, full.p, full.len);
    sink chain = {0};
    to_sink(&chain, ft.p, ft.len);
    to_sink(&chain, "EVS-NEXT-ARCHIVE", 16);
    to_sink(&chain, it.p, it.len);
    save("backup", "chain", 4, 1, chain.p, chain.len);
    save("backup", "chain-fix", 5, 1, chain.p, chain.len);
    sink *all[] = {&e, &et, &full, &ft, &inc, &it, &chain};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]->p);
    vfs_mem_free(vfs);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR   (e.g. tests/fuzz/corpus)\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    gen_http();
    gen_index();
    gen_backup();
    return 0;
}
