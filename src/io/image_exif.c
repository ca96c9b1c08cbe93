/* image_exif.c: the one piece of EXIF we write and read, the UserComment that
 * AUTOMATIC1111 fills with the generation parameters of JPEG and WebP images
 * (piexif.dump of {"Exif": {UserComment: UserComment.dump(text, "unicode")}}),
 * and the text-encoding helpers the image metadata needs. */
#include "io/image_internal.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

#define TAG_EXIF_IFD 0x8769
#define TAG_USER_COMMENT 0x9286

static const uint8_t prefix_unicode[8] = {'U', 'N', 'I', 'C', 'O', 'D', 'E', 0};

/* Decodes one UTF-8 sequence of the valid string s at *i; advances *i. */
static uint32_t utf8_next(const uint8_t *s, size_t *i)
{
    uint32_t c = s[*i];
    int extra = c < 0x80 ? 0 : c < 0xe0 ? 1 : c < 0xf0 ? 2 : 3;
    if (extra) c &= 0x3fu >> extra;
    (*i)++;
    for (int k = 0; k < extra; k++) c = c << 6 | (s[(*i)++] & 0x3fu);
    return c;
}

bool sdw_utf8_valid(const char *str, size_t n)
{
    const uint8_t *s = (const uint8_t *)str;
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        int extra = c >= 0xc2 && c < 0xe0 ? 1 : c >= 0xe0 && c < 0xf0 ? 2 : c >= 0xf0 && c < 0xf5 ? 3 : -1;
        if (extra < 0 || n - i <= (size_t)extra) return false;
        for (int k = 1; k <= extra; k++)
            if ((s[i + k] & 0xc0) != 0x80) return false;
        /* overlong 3/4-byte forms, UTF-16 surrogates, past U+10FFFF */
        if ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] >= 0xa0) ||
            (c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] >= 0x90))
            return false;
        i += (size_t)extra + 1;
    }
    return true;
}

char *sdw_utf8_to_latin1(const char *str, size_t *n)
{
    const uint8_t *s = (const uint8_t *)str;
    size_t len = *n, m = 0;
    char *out = malloc(len + 1);
    if (!out) return NULL;
    for (size_t i = 0; i < len;) {
        uint32_t c = utf8_next(s, &i);
        if (c > 0xff) {
            free(out);
            return NULL;
        }
        out[m++] = (char)c;
    }
    out[m] = 0;
    *n = m;
    return out;
}

char *sdw_latin1_to_utf8(const uint8_t *s, size_t n)
{
    char *out = malloc(2 * n + 1), *p = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n && s[i]; i++) {
        if (s[i] < 0x80) {
            *p++ = (char)s[i];
        } else {
            *p++ = (char)(0xc0 | s[i] >> 6);
            *p++ = (char)(0x80 | (s[i] & 0x3f));
        }
    }
    *p = 0;
    return out;
}

static void put16(uint8_t *p, unsigned v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, v & 0xffff); }

sdw_status sdw_exif_build_comment(const char *utf8, uint8_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t len = strlen(utf8), units = 0;
    if (!sdw_utf8_valid(utf8, len)) return sdw_fail(SDW_ERR_INVALID_ARG, "EXIF comment is not valid UTF-8");
    const uint8_t *s = (const uint8_t *)utf8;
    for (size_t i = 0; i < len;) units += utf8_next(s, &i) > 0xffff ? 2 : 1;
    if (units > (UINT32_MAX - 64) / 2) return sdw_fail(SDW_ERR_INVALID_ARG, "EXIF comment too long");
    /* Big-endian TIFF as piexif writes it: IFD0 at 8 holding only the Exif IFD
     * pointer, the Exif IFD at 26 holding only UserComment, its data at 44. */
    uint32_t count = 8 + 2 * (uint32_t)units;
    size_t total = 44 + (size_t)count;
    uint8_t *t = calloc(1, total);
    if (!t) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    memcpy(t, "MM\0\x2a", 4);
    put32(t + 4, 8);
    put16(t + 8, 1);
    put16(t + 10, TAG_EXIF_IFD), put16(t + 12, 4), put32(t + 14, 1), put32(t + 18, 26);
    put32(t + 22, 0);
    put16(t + 26, 1);
    put16(t + 28, TAG_USER_COMMENT), put16(t + 30, 7), put32(t + 32, count), put32(t + 36, 44);
    put32(t + 40, 0);
    memcpy(t + 44, prefix_unicode, 8);
    uint8_t *p = t + 52;
    for (size_t i = 0; i < len;) {
        uint32_t c = utf8_next(s, &i);
        if (c > 0xffff) {
            c -= 0x10000;
            put16(p, 0xd800 | c >> 10), p += 2;
            c = 0xdc00 | (c & 0x3ff);
        }
        put16(p, c), p += 2;
    }
    *out = t;
    *n = total;
    return SDW_OK;
}

typedef struct {
    const uint8_t *t;
    size_t n;
    bool be;
} tiff;

static uint32_t rd16(const tiff *f, size_t off)
{
    const uint8_t *p = f->t + off;
    return f->be ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
}

static uint32_t rd32(const tiff *f, size_t off)
{
    return f->be ? rd16(f, off) << 16 | rd16(f, off + 2) : rd16(f, off + 2) << 16 | rd16(f, off);
}

/* The 12-byte entry for tag in the IFD at off: its offset, 0 if absent, or
 * SIZE_MAX if the IFD does not fit. */
static size_t find_tag(const tiff *f, uint32_t off, unsigned tag)
{
    if (off < 8 || off > f->n - 2) return SIZE_MAX;
    uint32_t cnt = rd16(f, off);
    if ((size_t)cnt * 12 > f->n - off - 2) return SIZE_MAX;
    for (uint32_t i = 0; i < cnt; i++) {
        size_t e = off + 2 + (size_t)i * 12;
        if (rd16(f, e) == tag) return e;
    }
    return 0;
}

/* UTF-16 in the TIFF's byte order (piexif: big-endian, and MM) to UTF-8;
 * unpaired surrogates become U+FFFD, a NUL ends the text. */
static char *utf16_to_utf8(const tiff *f, size_t off, size_t units)
{
    char *out = malloc(3 * units + 1), *p = out;
    if (!out) return NULL;
    for (size_t i = 0; i < units; i++) {
        uint32_t c = rd16(f, off + 2 * i);
        if (c == 0) break;
        if (c >= 0xd800 && c < 0xdc00 && i + 1 < units) {
            uint32_t d = rd16(f, off + 2 * (i + 1));
            if (d >= 0xdc00 && d < 0xe000) {
                c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
                i++;
            }
        }
        if (c >= 0xd800 && c < 0xe000) c = 0xfffd;
        if (c < 0x80) {
            *p++ = (char)c;
        } else if (c < 0x800) {
            *p++ = (char)(0xc0 | c >> 6);
            *p++ = (char)(0x80 | (c & 0x3f));
        } else if (c < 0x10000) {
            *p++ = (char)(0xe0 | c >> 12);
            *p++ = (char)(0x80 | (c >> 6 & 0x3f));
            *p++ = (char)(0x80 | (c & 0x3f));
        } else {   /* 4 bytes from the 2 units of a pair: still within 3 per unit */
            *p++ = (char)(0xf0 | c >> 18);
            *p++ = (char)(0x80 | (c >> 12 & 0x3f));
            *p++ = (char)(0x80 | (c >> 6 & 0x3f));
            *p++ = (char)(0x80 | (c & 0x3f));
        }
    }
    *p = 0;
    return out;
}

sdw_status sdw_exif_read_comment(const uint8_t *t, size_t n, char **value)
{
    *value = NULL;
    tiff f = {.t = t, .n = n, .be = n >= 2 && t[0] == 'M' && t[1] == 'M'};
    if (n < 8 || !(f.be || (t[0] == 'I' && t[1] == 'I')) || rd16(&f, 2) != 42)
        return sdw_fail(SDW_ERR_FORMAT, "malformed EXIF: bad TIFF header");
    size_t e = find_tag(&f, rd32(&f, 4), TAG_EXIF_IFD);
    if (e == 0) return SDW_OK;
    if (e == SIZE_MAX) return sdw_fail(SDW_ERR_FORMAT, "malformed EXIF: IFD0 out of bounds");
    e = find_tag(&f, rd32(&f, e + 8), TAG_USER_COMMENT);
    if (e == 0) return SDW_OK;
    if (e == SIZE_MAX) return sdw_fail(SDW_ERR_FORMAT, "malformed EXIF: Exif IFD out of bounds");
    uint32_t count = rd32(&f, e + 4);
    size_t off = count <= 4 ? e + 8 : rd32(&f, e + 8);
    if (off > n || count > n - off) return sdw_fail(SDW_ERR_FORMAT, "malformed EXIF: UserComment out of bounds");
    if (count >= 8 && !memcmp(t + off, prefix_unicode, 8)) {
        *value = utf16_to_utf8(&f, off + 8, (count - 8) / 2);
    } else {
        /* ASCII, undefined or unknown: the bytes after the 8-byte prefix, as
         * UTF-8 where valid (what A1111 falls back to) or else Latin-1. */
        size_t skip = count >= 8 ? 8 : 0, len = count - skip;
        const uint8_t *s = t + off + skip;
        const uint8_t *z = memchr(s, 0, len);
        if (z) len = (size_t)(z - s);
        if (sdw_utf8_valid((const char *)s, len)) {
            *value = malloc(len + 1);
            if (*value) memcpy(*value, s, len), (*value)[len] = 0;
        } else {
            *value = sdw_latin1_to_utf8(s, len);
        }
    }
    return *value ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory");
}
