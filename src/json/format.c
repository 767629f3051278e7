/*
 * format.c — the served JSON of an event (SPEC §2) and RFC 3339 times.
 *
 * This is on the read hot path (every event served over HTTP or exported goes
 * through evs_event_format), so it allocates nothing, calls no printf and no
 * gmtime (glibc's takes a lock), and measures before it writes: the needed
 * length is computed first, and nothing is written when it does not fit.
 *
 * data and metadata are copied byte for byte: they were validated and
 * minified on append, and serving the client's bytes is the contract.
 */
#include "evs_int.h"

/* 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z in microseconds: the range a
 * four-digit year can show. Times outside are clamped (they cannot come from
 * a real clock). */
#define EVS__TIME_MIN_US (-62167219200000000LL)
#define EVS__TIME_END_US (253402300800000000LL)
#define EVS__US_PER_DAY (86400000000LL)

static void put_digits(char *o, uint32_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        o[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* Days since 1970-01-01 to a proleptic Gregorian date. Shifts the year to
 * start in March so the leap day is the last day of a year, then counts in
 * 400-year eras of 146097 days. */
static void civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t z = days + 719468;                 /* days since 0000-03-01 */
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);                           /* [0, 146096] */
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  /* [0, 399] */
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                /* [0, 365] */
    unsigned mp = (5 * doy + 2) / 153;                                     /* [0, 11], March = 0 */
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void evs_time_format(int64_t time_us, char out[28])
{
    if (time_us < EVS__TIME_MIN_US)
        time_us = EVS__TIME_MIN_US;
    if (time_us >= EVS__TIME_END_US)
        time_us = EVS__TIME_END_US - 1;
    int64_t days = time_us / EVS__US_PER_DAY;
    int64_t rem = time_us % EVS__US_PER_DAY;
    if (rem < 0) {          /* floor, not truncation, before the epoch */
        rem += EVS__US_PER_DAY;
        days--;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    uint32_t secs = (uint32_t)(rem / 1000000);
    uint32_t us = (uint32_t)(rem % 1000000);

    put_digits(out, (uint32_t)y, 4);
    out[4] = '-';
    put_digits(out + 5, m, 2);
    out[7] = '-';
    put_digits(out + 8, d, 2);
    out[10] = 'T';
    put_digits(out + 11, secs / 3600, 2);
    out[13] = ':';
    put_digits(out + 14, secs / 60 % 60, 2);
    out[16] = ':';
    put_digits(out + 17, secs % 60, 2);
    out[19] = '.';
    put_digits(out + 20, us, 6);
    out[26] = 'Z';
    out[27] = '\0';
}

/* Bytes a JSON string body needs: '"' and '\\' get a backslash, control
 * characters an escape; everything else (valid UTF-8 included) is as is. */
static size_t escaped_len(const char *s, size_t n)
{
    size_t extra = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
            extra += 1;
        else if (c < 0x20)
            extra += 5;    /* \u00XX */
    }
    return n + extra;
}

static char *put_escaped(char *o, const char *s, size_t n, size_t escaped)
{
    if (escaped == n) {    /* the usual case: nothing to escape */
        memcpy(o, s, n);
        return o + n;
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        char e = 0;
        switch (c) {
        case '"': e = '"'; break;
        case '\\': e = '\\'; break;
        case '\b': e = 'b'; break;
        case '\f': e = 'f'; break;
        case '\n': e = 'n'; break;
        case '\r': e = 'r'; break;
        case '\t': e = 't'; break;
        default: break;
        }
        if (e) {
            *o++ = '\\';
            *o++ = e;
        } else if (c < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 0x0F];
            o += 6;
        } else {
            *o++ = (char)c;
        }
    }
    return o;
}

static size_t u64_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

static char *put_u64(char *o, uint64_t v, size_t len)
{
    for (size_t i = len; i > 0; i--) {
        o[i - 1] = (char)('0' + v % 10);
        v /= 10;
    }
    return o + len;
}

#define LIT(o, s) (memcpy((o), (s), sizeof(s) - 1), (o) + sizeof(s) - 1)

size_t evs_event_format(const evs_event *ev, char *buf, size_t cap)
{
    static const char k_pos[] = "{\"position\":";
    static const char k_stream[] = ",\"stream\":\"";
    static const char k_version[] = "\",\"version\":";
    static const char k_id[] = ",\"id\":\"";
    static const char k_type[] = "\",\"type\":\"";
    static const char k_time[] = "\",\"time\":\"";
    static const char k_data[] = "\",\"data\":";
    static const char k_meta[] = ",\"metadata\":";

    const char *stream = ev->stream ? ev->stream : "";
    size_t stream_n = ev->stream ? ev->stream_len : 0;
    const char *type = ev->type ? ev->type : "";
    size_t type_n = ev->type ? ev->type_len : 0;
    const char *data = ev->data;
    size_t data_n = ev->data_len;
    if (!data || data_n == 0) {
        data = "null";
        data_n = 4;
    }
    int has_meta = ev->metadata && ev->metadata_len > 0;

    size_t pos_n = u64_len(ev->position);
    size_t ver_n = u64_len(ev->version);
    size_t stream_e = escaped_len(stream, stream_n);
    size_t type_e = escaped_len(type, type_n);
    size_t need = (sizeof k_pos - 1) + pos_n + (sizeof k_stream - 1) + stream_e +
                  (sizeof k_version - 1) + ver_n + (sizeof k_id - 1) + 36 +
                  (sizeof k_type - 1) + type_e + (sizeof k_time - 1) + 27 +
                  (sizeof k_data - 1) + data_n + 1;
    if (has_meta)
        need += (sizeof k_meta - 1) + ev->metadata_len;
    if (need > cap || !buf)
        return need;

    char id[37];
    char tm[28];
    evs_uuid_format(ev->id, id);
    evs_time_format(ev->time_us, tm);

    char *o = buf;
    o = LIT(o, k_pos);
    o = put_u64(o, ev->position, pos_n);
    o = LIT(o, k_stream);
    o = put_escaped(o, stream, stream_n, stream_e);
    o = LIT(o, k_version);
    o = put_u64(o, ev->version, ver_n);
    o = LIT(o, k_id);
    memcpy(o, id, 36);
    o += 36;
    o = LIT(o, k_type);
    o = put_escaped(o, type, type_n, type_e);
    o = LIT(o, k_time);
    memcpy(o, tm, 27);
    o += 27;
    o = LIT(o, k_data);
    memcpy(o, data, data_n);
    o += data_n;
    if (has_meta) {
        o = LIT(o, k_meta);
        memcpy(o, ev->metadata, ev->metadata_len);
        o += ev->metadata_len;
    }
    *o++ = '}';
    if (need < cap)
        *o = '\0';     /* a convenience when there is room, as snprintf does */
    return need;
}
