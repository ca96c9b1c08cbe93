/* base64.c: see base64.h. Decoding makes two passes over the input: the first
 * validates and counts (so limits are checked before allocating), the second
 * decodes. */
#include "io/base64.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for both alphabets, WS for whitespace, PAD for '=', BAD otherwise. */
enum { WS = 64, PAD = 65, BAD = 66 };

static int value_of(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    if (c == '=') return PAD;
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v') return WS;
    return BAD;
}

size_t sdw_base64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }

sdw_status sdw_base64_encode(const void *buf, size_t n, char **out, size_t *out_len)
{
    *out = NULL;
    if (n > (SIZE_MAX - 1) / 4 * 3 - 2) return sdw_fail(SDW_ERR_NOMEM, "base64: input too large");
    size_t len = sdw_base64_encoded_len(n);
    char *o = malloc(len + 1);
    if (!o) return sdw_fail(SDW_ERR_NOMEM, "out of memory encoding %zu bytes as base64", n);
    const uint8_t *p = buf;
    char *q = o;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *q++ = alphabet[v >> 18];
        *q++ = alphabet[v >> 12 & 63];
        *q++ = alphabet[v >> 6 & 63];
        *q++ = alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        *q++ = alphabet[v >> 18];
        *q++ = alphabet[v >> 12 & 63];
        *q++ = i + 1 < n ? alphabet[v >> 6 & 63] : '=';
        *q++ = '=';
    }
    *q = 0;
    *out = o;
    if (out_len) *out_len = len;
    return SDW_OK;
}

/* Offset where the base64 payload starts: after a data URL's comma, or 0. */
static sdw_status skip_data_url(const char *s, size_t len, size_t *start)
{
    size_t i = 0;
    while (i < len && value_of((unsigned char)s[i]) == WS) i++;
    *start = 0;
    if (len - i < 5 || strncasecmp(s + i, "data:", 5)) return SDW_OK;
    const char *comma = memchr(s + i, ',', len - i);
    if (!comma) return sdw_fail(SDW_ERR_FORMAT, "data URL without a comma");
    size_t hl = (size_t)(comma - (s + i));
    if (hl < 5 + 7 || strncasecmp(comma - 7, ";base64", 7))
        return sdw_fail(SDW_ERR_FORMAT, "data URL is not base64-encoded (no \";base64,\")");
    *start = (size_t)(comma - s) + 1;
    return SDW_OK;
}

sdw_status sdw_base64_decode(const char *s, size_t len, size_t max_bytes, uint8_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t start;
    SDW_TRY(skip_data_url(s, len, &start));
    size_t sig = 0, pad = 0;
    for (size_t i = start; i < len; i++) {
        int v = value_of((unsigned char)s[i]);
        if (v == WS) continue;
        if (v == BAD || (pad && v != PAD)) {
            unsigned char c = (unsigned char)s[i];
            if (v == BAD && c >= 0x20 && c < 0x7f)
                return sdw_fail(SDW_ERR_FORMAT, "invalid base64 character '%c' at offset %zu", c, i);
            if (v == BAD) return sdw_fail(SDW_ERR_FORMAT, "invalid base64 byte 0x%02x at offset %zu", c, i);
            return sdw_fail(SDW_ERR_FORMAT, "base64 data after '=' padding at offset %zu", i);
        }
        if (v == PAD) pad++;
        else sig++;
    }
    size_t rem = sig % 4;
    if (rem == 1) return sdw_fail(SDW_ERR_FORMAT, "truncated base64: %zu characters leave one over", sig);
    if (pad && (rem == 0 || pad > 4 - rem))
        return sdw_fail(SDW_ERR_FORMAT, "base64 has %zu '=' where %zu belong", pad, rem ? 4 - rem : 0);
    size_t bytes = sig / 4 * 3 + (rem ? rem - 1 : 0);
    if (bytes > max_bytes)
        return sdw_fail(SDW_ERR_NOMEM, "base64 data decodes to %zu bytes, over the limit of %zu", bytes, max_bytes);
    uint8_t *o = malloc(bytes ? bytes : 1);
    if (!o) return sdw_fail(SDW_ERR_NOMEM, "out of memory decoding %zu bytes of base64", bytes);
    uint32_t acc = 0;
    int nacc = 0;
    size_t m = 0;
    for (size_t i = start; i < len; i++) {
        int v = value_of((unsigned char)s[i]);
        if (v >= 64) continue;
        acc = acc << 6 | (uint32_t)v;
        if (++nacc == 4) {
            o[m++] = (uint8_t)(acc >> 16);
            o[m++] = (uint8_t)(acc >> 8);
            o[m++] = (uint8_t)acc;
            acc = 0;
            nacc = 0;
        }
    }
    if (nacc >= 2) o[m++] = (uint8_t)(acc >> (nacc == 2 ? 4 : 10));
    if (nacc == 3) o[m++] = (uint8_t)(acc >> 2);
    *out = o;
    *n = m;
    return SDW_OK;
}
