/*
 * log.c — evstored's log: one line per start, stop, recovery or error (never
 * one per request), as text or JSON (--log-format), on stderr.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "server.h"

static int log_json;
static int log_level = EVS_LOG_INFO;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

void evsd_log_init(int json, int level)
{
    log_json = json;
    log_level = level;
}

static const char *names[] = {"error", "warn", "info", "debug"};

static void emit(int level, const char *msg)
{
    if (level > log_level) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[80];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    const char *lv = names[level < 0 ? 0 : level > 3 ? 3 : level];
    pthread_mutex_lock(&log_mu);
    if (log_json) {
        evsd_str s = {0};
        evsd_str_addf(&s, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":", when, lv);
        evsd_str_add_json_string(&s, msg, strlen(msg));
        evsd_str_add(&s, "}\n", 2);
        fputs(s.p ? s.p : "", stderr);
        evsd_str_free(&s);
    } else {
        fprintf(stderr, "%s %-5s %s\n", when, lv, msg);
    }
    fflush(stderr);
    pthread_mutex_unlock(&log_mu);
}

void evsd_log(int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(level, msg);
}

void evsd_log_store(void *ctx, int level, const char *message)
{
    (void)ctx;
    emit(level, message);
}
