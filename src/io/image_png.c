/* image_png.c: PNG through libpng, plus a chunk walker for text metadata.
 * libpng reports errors by longjmp: every call into it runs under a setjmp in
 * the function that owns the png struct, and whatever that function allocates
 * is held in volatile locals so the error path can free it. Its warnings are
 * dropped (library code prints nothing). */
#include "io/image_internal.h"
#include "core/error.h"
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Texts are a few KB; this bounds what a zTXt/iTXt bomb can inflate to. */
#define PNG_TEXT_MAX ((size_t)16 << 20)

typedef struct {
    const uint8_t *buf;
    size_t n, pos;
    char msg[160];
} png_ctx;

static void on_error(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void read_mem(png_structp png, png_bytep data, size_t len)
{
    png_ctx *c = png_get_io_ptr(png);
    if (len > c->n - c->pos) png_error(png, "truncated PNG");
    memcpy(data, c->buf + c->pos, len);
    c->pos += len;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

sdw_status sdw_png_decode(const uint8_t *buf, size_t n, int64_t max_pixels, sdw_image *out)
{
    memset(out, 0, sizeof *out);
    /* The IHDR must come first and is fixed-size: read the size from it before
     * libpng allocates anything. */
    if (n < 8 + 25) return sdw_fail(SDW_ERR_FORMAT, "truncated PNG (%zu bytes)", n);
    if (be32(buf + 8) != 13 || memcmp(buf + 12, "IHDR", 4))
        return sdw_fail(SDW_ERR_FORMAT, "malformed PNG: first chunk is not IHDR");
    sdw_status st = sdw_image_check_size(be32(buf + 16), be32(buf + 20), max_pixels);
    if (st != SDW_OK) return sdw_fail_context(st, "PNG");

    png_ctx ctx = {.buf = buf, .n = n, .pos = 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
    if (!png) return sdw_fail(SDW_ERR_NOMEM, "out of memory creating a PNG reader");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return sdw_fail(SDW_ERR_NOMEM, "out of memory creating a PNG reader");
    }
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return sdw_fail(SDW_ERR_FORMAT, "malformed PNG: %s", ctx.msg);
    }
    png_set_read_fn(png, &ctx, read_mem);
    /* Pixels only: skip the chunks whose parsing costs memory or inflating. */
    static const png_byte skip[] = "tEXt\0zTXt\0iTXt\0iCCP\0sPLT\0eXIf";
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, skip, 6);
    png_set_chunk_malloc_max(png, (png_alloc_size_t)8 << 20);
    png_read_info(png, info);

    png_uint_32 w, h;
    int depth, color, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    bool trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    if (depth == 16) png_set_strip_16(png);   /* high byte, like PIL's RGB;16B */
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (trns) png_set_tRNS_to_alpha(png);
    /* Two channels are not a layout we offer: gray+alpha becomes RGBA. */
    if (color == PNG_COLOR_TYPE_GRAY_ALPHA || (color == PNG_COLOR_TYPE_GRAY && trns))
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int ch = png_get_channels(png, info);
    size_t stride = (size_t)w * (size_t)ch;
    if ((ch != 1 && ch != 3 && ch != 4) || png_get_rowbytes(png, info) != stride)
        png_error(png, "unexpected pixel layout");
    pixels = malloc(stride * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!pixels || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + stride * y;
    png_read_image(png, rows);
    png_read_end(png, NULL);   /* a missing tail is a truncated upload too */

    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    *out = (sdw_image){.w = (int)w, .h = (int)h, .channels = ch, .data = pixels};
    return SDW_OK;
}

static void write_mem(png_structp png, png_bytep data, size_t len)
{
    if (!sdw_bytes_put(png_get_io_ptr(png), data, len)) png_error(png, "out of memory");
}

static void flush_mem(png_structp png) { (void)png; }

/* PNG keywords: 1-79 Latin-1 printable characters, no leading, trailing or
 * doubled spaces; we take the ASCII ones only. */
static bool keyword_ok(const char *k)
{
    size_t n = strlen(k);
    if (n < 1 || n > 79 || k[0] == ' ' || k[n - 1] == ' ') return false;
    for (size_t i = 0; i < n; i++)
        if (k[i] < 0x20 || k[i] > 0x7e || (k[i] == ' ' && k[i + 1] == ' ')) return false;
    return true;
}

sdw_status sdw_image_encode_png(const sdw_image *img, const sdw_png_text *texts, int n_texts,
                                uint8_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    SDW_TRY(sdw_image_check(img));
    if (n_texts < 0 || (n_texts > 0 && !texts)) return sdw_fail(SDW_ERR_INVALID_ARG, "bad PNG text list");
    for (int i = 0; i < n_texts; i++) {
        if (!texts[i].key || !keyword_ok(texts[i].key))
            return sdw_fail(SDW_ERR_INVALID_ARG, "PNG text keyword \"%s\" is not 1-79 printable ASCII characters",
                            texts[i].key ? texts[i].key : "(null)");
        if (!texts[i].text || !sdw_utf8_valid(texts[i].text, strlen(texts[i].text)))
            return sdw_fail(SDW_ERR_INVALID_ARG, "PNG text \"%s\" is not valid UTF-8", texts[i].key);
    }
    png_ctx ctx = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
    if (!png) return sdw_fail(SDW_ERR_NOMEM, "out of memory creating a PNG writer");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return sdw_fail(SDW_ERR_NOMEM, "out of memory creating a PNG writer");
    }
    sdw_bytes buf = {0};
    png_textp volatile tx = NULL;
    char **volatile latin = NULL;
    if (setjmp(png_jmpbuf(png))) {
        if (latin)
            for (int i = 0; i < n_texts; i++) free(latin[i]);
        free(latin);
        free(tx);
        free(buf.p);
        png_destroy_write_struct(&png, &info);
        return sdw_fail(SDW_ERR_NOMEM, "encoding PNG: %s", ctx.msg);
    }
    png_set_write_fn(png, &buf, write_mem, flush_mem);
    static const int color[5] = {0, PNG_COLOR_TYPE_GRAY, 0, PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    png_set_IHDR(png, info, (png_uint_32)img->w, (png_uint_32)img->h, 8, color[img->channels],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (n_texts > 0) {
        tx = calloc((size_t)n_texts, sizeof *tx);
        latin = calloc((size_t)n_texts, sizeof *latin);
        if (!tx || !latin) png_error(png, "out of memory");
        for (int i = 0; i < n_texts; i++) {
            /* PIL's rule, which A1111 inherits: Latin-1 text goes in tEXt. */
            size_t len = strlen(texts[i].text);
            latin[i] = sdw_utf8_to_latin1(texts[i].text, &len);
            tx[i].key = (png_charp)texts[i].key;
            if (latin[i]) {
                tx[i].compression = PNG_TEXT_COMPRESSION_NONE;
                tx[i].text = latin[i];
                tx[i].text_length = len;
            } else {
                tx[i].compression = PNG_ITXT_COMPRESSION_NONE;
                tx[i].text = (png_charp)texts[i].text;
                tx[i].itxt_length = len;
                tx[i].lang = (png_charp)"";
                tx[i].lang_key = (png_charp)"";
            }
        }
        png_set_text(png, info, tx, n_texts);
    }
    png_write_info(png, info);
    size_t stride = (size_t)img->w * (size_t)img->channels;
    for (int y = 0; y < img->h; y++) png_write_row(png, img->data + stride * (size_t)y);
    png_write_end(png, NULL);

    if (latin)
        for (int i = 0; i < n_texts; i++) free(latin[i]);
    free(latin);
    free(tx);
    png_destroy_write_struct(&png, &info);
    *out = buf.p;
    *n = buf.n;
    return SDW_OK;
}

/* zlib stream -> malloc'd bytes (NUL-terminated), at most PNG_TEXT_MAX. */
static sdw_status inflate_text(const uint8_t *src, size_t n, uint8_t **out, size_t *out_n)
{
    z_stream z = {0};
    if (inflateInit(&z) != Z_OK) return sdw_fail(SDW_ERR_NOMEM, "out of memory (zlib)");
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)n;
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    int rc = Z_OK;
    bool too_big = false;
    for (;;) {
        if (len == cap) {
            if (cap == PNG_TEXT_MAX) { too_big = true; break; }
            size_t nc = cap ? cap * 2 : 4096;
            if (nc > PNG_TEXT_MAX) nc = PNG_TEXT_MAX;
            uint8_t *nb = realloc(buf, nc + 1);
            if (!nb) { rc = Z_MEM_ERROR; break; }
            buf = nb;
            cap = nc;
        }
        z.next_out = buf + len;
        z.avail_out = (uInt)(cap - len);
        rc = inflate(&z, Z_NO_FLUSH);
        len = cap - z.avail_out;
        if (rc != Z_OK) break;
        if (z.avail_out) { rc = Z_DATA_ERROR; break; }   /* input ran out first */
    }
    inflateEnd(&z);
    if (rc != Z_STREAM_END || too_big) {
        free(buf);
        if (too_big) return sdw_fail(SDW_ERR_NOMEM, "PNG text inflates past %zu bytes", PNG_TEXT_MAX);
        if (rc == Z_MEM_ERROR) return sdw_fail(SDW_ERR_NOMEM, "out of memory inflating PNG text");
        return sdw_fail(SDW_ERR_FORMAT, "malformed PNG: bad compressed text");
    }
    buf[len] = 0;
    *out = buf;
    *out_n = len;
    return SDW_OK;
}

/* The text of one tEXt/zTXt/iTXt chunk body after its keyword's NUL. */
static sdw_status chunk_text(const char *type, const uint8_t *p, size_t n, char **value)
{
    uint8_t *raw = NULL;
    size_t len = 0;
    bool utf8 = false;
    if (!memcmp(type, "tEXt", 4)) {
        *value = sdw_latin1_to_utf8(p, n);
        return *value ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory");
    }
    if (!memcmp(type, "zTXt", 4)) {
        if (n < 1 || p[0] != 0) return sdw_fail(SDW_ERR_FORMAT, "malformed PNG: bad zTXt chunk");
        SDW_TRY(inflate_text(p + 1, n - 1, &raw, &len));
    } else {   /* iTXt: flag, method, language\0, translated keyword\0, text */
        if (n < 2 || p[0] > 1 || p[1] != 0) return sdw_fail(SDW_ERR_FORMAT, "malformed PNG: bad iTXt chunk");
        bool compressed = p[0] == 1;
        const uint8_t *q = p + 2, *end = p + n;
        for (int field = 0; field < 2; field++) {
            const uint8_t *z = memchr(q, 0, (size_t)(end - q));
            if (!z) return sdw_fail(SDW_ERR_FORMAT, "malformed PNG: bad iTXt chunk");
            q = z + 1;
        }
        if (compressed) {
            SDW_TRY(inflate_text(q, (size_t)(end - q), &raw, &len));
        } else {
            len = (size_t)(end - q);
            raw = malloc(len + 1);
            if (!raw) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
            memcpy(raw, q, len);
            raw[len] = 0;
        }
        utf8 = true;
    }
    if (utf8) {
        if (memchr(raw, 0, len) || !sdw_utf8_valid((const char *)raw, len)) {
            free(raw);
            return sdw_fail(SDW_ERR_FORMAT, "malformed PNG: iTXt text is not UTF-8");
        }
        *value = (char *)raw;
        return SDW_OK;
    }
    *value = sdw_latin1_to_utf8(raw, len);
    free(raw);
    return *value ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory");
}

sdw_status sdw_png_read_text(const void *data, size_t n, const char *key, char **value)
{
    *value = NULL;
    const uint8_t *buf = data;
    if (sdw_image_detect(buf, n) != SDW_IMAGE_PNG) return sdw_fail(SDW_ERR_FORMAT, "not a PNG");
    size_t klen = strlen(key);
    for (size_t pos = 8;;) {
        if (n - pos < 12) return sdw_fail(SDW_ERR_FORMAT, "truncated PNG: chunk at offset %zu", pos);
        uint32_t len = be32(buf + pos);
        const char *type = (const char *)buf + pos + 4;
        const uint8_t *body = buf + pos + 8;
        if (len > 0x7fffffffu || len > n - pos - 12)
            return sdw_fail(SDW_ERR_FORMAT, "truncated PNG: %.4s chunk at offset %zu", type, pos);
        if (!memcmp(type, "IEND", 4)) return SDW_OK;
        bool is_text = !memcmp(type, "tEXt", 4) || !memcmp(type, "zTXt", 4) || !memcmp(type, "iTXt", 4);
        if (is_text && len > klen && !memcmp(body, key, klen) && body[klen] == 0) {
            if (crc32(0, (const Bytef *)type, len + 4) != be32(body + len))
                return sdw_fail(SDW_ERR_FORMAT, "malformed PNG: CRC mismatch in %.4s chunk \"%s\"", type, key);
            return chunk_text(type, body + klen + 1, len - klen - 1, value);
        }
        pos += 12 + (size_t)len;
    }
}
