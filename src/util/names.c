/*
 * names.c — the one rule for stream names and event types: 1..255 bytes of
 * valid UTF-8 without control characters.
 *
 * Valid UTF-8 here is the strict RFC 3629 form: no overlong encodings, no
 * UTF-16 surrogates, nothing above U+10FFFF, no truncated sequences. Control
 * characters are C0 (U+0000..U+001F), DEL (U+007F) and C1 (U+0080..U+009F):
 * names end up in URLs, log lines and terminals, where any of them misleads.
 */
#include "json/json_int.h"

#define EVS__NAME_MAX 255

int evs__validate_name(const char *name, size_t len)
{
    if (!name || len == 0 || len > EVS__NAME_MAX)
        return EVS_EINVAL;
    const uint8_t *s = (const uint8_t *)name;
    size_t i = 0;
    while (i < len) {
        uint8_t b = s[i];
        if (b < 0x80) {
            /* ASCII fast path: most names are plain ASCII. */
            if (b < 0x20 || b == 0x7F)
                return EVS_EINVAL;
            i++;
            continue;
        }
        uint32_t cp;
        size_t n = evs__utf8_char(s + i, len - i, &cp);
        if (n == 0 || cp <= 0x9F)
            return EVS_EINVAL;
        i += n;
    }
    return 0;
}

int evs_validate_stream_name(const char *name, size_t len)
{
    return evs__validate_name(name, len);
}
