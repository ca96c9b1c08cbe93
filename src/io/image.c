/* image.c: the format-independent half of image.h: the image type, format
 * detection and dispatch, files, and the pixel conversions the pipelines use
 * (each written to give the same bits as diffusers + PIL). */
#include "io/image_internal.h"
#include "core/error.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* Bigger image files than this are not inputs we mean to take. */
#define IMAGE_FILE_MAX ((int64_t)512 << 20)
/* Keeps w*h*8 far from overflowing in the decoders' memory budgets. */
#define MAX_PIXELS_CAP ((int64_t)1 << 40)

sdw_status sdw_image_alloc(sdw_image *img, int w, int h, int channels)
{
    memset(img, 0, sizeof *img);
    if (w <= 0 || h <= 0 || (channels != 1 && channels != 3 && channels != 4))
        return sdw_fail(SDW_ERR_INVALID_ARG, "bad image shape %dx%dx%d", w, h, channels);
    img->data = calloc((size_t)w * (size_t)h, (size_t)channels);
    if (!img->data) return sdw_fail(SDW_ERR_NOMEM, "out of memory for a %dx%d image", w, h);
    img->w = w;
    img->h = h;
    img->channels = channels;
    return SDW_OK;
}

void sdw_image_free(sdw_image *img)
{
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

sdw_status sdw_image_check(const sdw_image *img)
{
    if (!img || !img->data || img->w <= 0 || img->h <= 0 ||
        (img->channels != 1 && img->channels != 3 && img->channels != 4))
        return sdw_fail(SDW_ERR_INVALID_ARG, "not a valid image (%dx%dx%d)", img ? img->w : 0, img ? img->h : 0,
                        img ? img->channels : 0);
    return SDW_OK;
}

sdw_status sdw_image_check_size(int64_t w, int64_t h, int64_t max_pixels)
{
    if (w <= 0 || h <= 0) return sdw_fail(SDW_ERR_FORMAT, "image has zero width or height");
    if (w > max_pixels / h)
        return sdw_fail(SDW_ERR_NOMEM, "%lldx%lld image is over the limit of %lld pixels", (long long)w,
                        (long long)h, (long long)max_pixels);
    return SDW_OK;
}

bool sdw_bytes_put(sdw_bytes *b, const void *data, size_t n)
{
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) return false;
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, data, n);
    b->n += n;
    return true;
}

sdw_image_format sdw_image_detect(const void *data, size_t n)
{
    const uint8_t *b = data;
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return SDW_IMAGE_PNG;
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return SDW_IMAGE_JPEG;
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) return SDW_IMAGE_WEBP;
    return SDW_IMAGE_UNKNOWN;
}

const char *sdw_image_format_name(sdw_image_format f)
{
    switch (f) {
    case SDW_IMAGE_PNG: return "png";
    case SDW_IMAGE_JPEG: return "jpeg";
    case SDW_IMAGE_WEBP: return "webp";
    default: return "unknown";
    }
}

const char *sdw_image_format_mime(sdw_image_format f)
{
    switch (f) {
    case SDW_IMAGE_PNG: return "image/png";
    case SDW_IMAGE_JPEG: return "image/jpeg";
    case SDW_IMAGE_WEBP: return "image/webp";
    default: return "application/octet-stream";
    }
}

/* Names formats people do upload, so the error says what to convert from. */
static const char *other_format(const uint8_t *b, size_t n)
{
    if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) return "GIF";
    if (n >= 2 && !memcmp(b, "BM", 2)) return "BMP";
    if (n >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4))) return "TIFF";
    if (n >= 12 && !memcmp(b + 4, "ftyp", 4)) return "HEIF/AVIF";
    return NULL;
}

sdw_status sdw_image_decode(const void *buf, size_t n, int64_t max_pixels, sdw_image *out)
{
    memset(out, 0, sizeof *out);
    if (!buf || n == 0) return sdw_fail(SDW_ERR_FORMAT, "empty image data");
    if (max_pixels <= 0) max_pixels = SDW_IMAGE_DEFAULT_MAX_PIXELS;
    if (max_pixels > MAX_PIXELS_CAP) max_pixels = MAX_PIXELS_CAP;
    switch (sdw_image_detect(buf, n)) {
    case SDW_IMAGE_PNG: return sdw_png_decode(buf, n, max_pixels, out);
    case SDW_IMAGE_JPEG: return sdw_jpeg_decode(buf, n, max_pixels, out);
    case SDW_IMAGE_WEBP: return sdw_webp_decode(buf, n, max_pixels, out);
    default: break;
    }
    const char *other = other_format(buf, n);
    if (other) return sdw_fail(SDW_ERR_UNSUPPORTED, "%s images are not supported (PNG, JPEG or WebP)", other);
    return sdw_fail(SDW_ERR_FORMAT, "not a PNG, JPEG or WebP image");
}

static sdw_status read_file(const char *path, uint8_t **buf, size_t *n)
{
    *buf = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sdw_fail(SDW_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return sdw_fail(SDW_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size > IMAGE_FILE_MAX) {
        fclose(f);
        return sdw_fail(SDW_ERR_NOMEM, "%s: larger than %lld bytes", path, (long long)IMAGE_FILE_MAX);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *p = malloc(size ? size : 1);
    size_t got = p ? fread(p, 1, size, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (!p) return sdw_fail(SDW_ERR_NOMEM, "out of memory reading %s", path);
    if (got != size || err) {
        free(p);
        return sdw_fail(SDW_ERR_IO, "%s: read failed", path);
    }
    *buf = p;
    *n = size;
    return SDW_OK;
}

sdw_status sdw_image_load(const char *path, int64_t max_pixels, sdw_image *out)
{
    memset(out, 0, sizeof *out);
    uint8_t *buf;
    size_t n;
    SDW_TRY(read_file(path, &buf, &n));
    sdw_status s = sdw_image_decode(buf, n, max_pixels, out);
    free(buf);
    return s == SDW_OK ? s : sdw_fail_context(s, "%s", path);
}

sdw_status sdw_image_save(const char *path, const sdw_image *img, const sdw_png_text *texts, int n_texts)
{
    const char *dot = strrchr(path, '.');
    const char *params = NULL;
    for (int i = 0; texts && i < n_texts; i++)
        if (texts[i].key && !strcmp(texts[i].key, "parameters")) params = texts[i].text;
    uint8_t *buf = NULL;
    size_t n = 0;
    sdw_status s;
    if (dot && !strcasecmp(dot, ".png"))
        s = sdw_image_encode_png(img, texts, n_texts, &buf, &n);
    else if (dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")))
        s = sdw_image_encode_jpeg(img, SDW_IMAGE_SAVE_QUALITY, params, &buf, &n);
    else if (dot && !strcasecmp(dot, ".webp"))
        s = sdw_image_encode_webp(img, SDW_IMAGE_SAVE_QUALITY, false, params, &buf, &n);
    else
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: extension is not .png, .jpg, .jpeg or .webp", path);
    if (s != SDW_OK) return sdw_fail_context(s, "%s", path);
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(buf);
        return sdw_fail(SDW_ERR_IO, "%s: %s", path, strerror(errno));
    }
    bool ok = fwrite(buf, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    free(buf);
    if (!ok) return sdw_fail(SDW_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return SDW_OK;
}

sdw_status sdw_image_read_parameters(const void *buf, size_t n, char **value)
{
    *value = NULL;
    switch (sdw_image_detect(buf, n)) {
    case SDW_IMAGE_PNG: return sdw_png_read_text(buf, n, "parameters", value);
    case SDW_IMAGE_JPEG: return sdw_jpeg_read_comment(buf, n, value);
    case SDW_IMAGE_WEBP: return sdw_webp_read_comment(buf, n, value);
    default: return sdw_fail(SDW_ERR_FORMAT, "not a PNG, JPEG or WebP image");
    }
}

/* PIL's rgb2l (ITU-R 601-2 luma in 16-bit fixed point, rounded). */
static uint8_t luma(const uint8_t *p)
{
    return (uint8_t)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
}

sdw_status sdw_image_convert(const sdw_image *in, int channels, sdw_image *out)
{
    memset(out, 0, sizeof *out);
    SDW_TRY(sdw_image_check(in));
    SDW_TRY(sdw_image_alloc(out, in->w, in->h, channels));
    size_t np = (size_t)in->w * (size_t)in->h;
    int ic = in->channels;
    for (size_t i = 0; i < np; i++) {
        const uint8_t *s = in->data + i * (size_t)ic;
        uint8_t *d = out->data + i * (size_t)channels;
        if (channels == 1) {
            d[0] = ic == 1 ? s[0] : luma(s);
            continue;
        }
        for (int c = 0; c < 3; c++) d[c] = s[ic == 1 ? 0 : c];
        if (channels == 4) d[3] = ic == 4 ? s[3] : 255;
    }
    return SDW_OK;
}

void sdw_image_to_float(const sdw_image *img, float *out)
{
    size_t np = (size_t)img->w * (size_t)img->h;
    int ic = img->channels;
    for (size_t i = 0; i < np; i++) {
        const uint8_t *s = img->data + i * (size_t)ic;
        for (int c = 0; c < 3; c++) {
            /* np.float32(v) / 255.0, then 2x - 1: both rounded in float32 */
            float v = (float)s[ic == 1 ? 0 : c] / 255.0f;
            out[i * 3 + (size_t)c] = 2.0f * v - 1.0f;
        }
    }
}

sdw_status sdw_image_from_float(const float *x, int w, int h, sdw_image *out)
{
    SDW_TRY(sdw_image_alloc(out, w, h, 3));
    size_t n = (size_t)w * (size_t)h * 3;
    for (size_t i = 0; i < n; i++) {
        float v = x[i] / 2.0f + 0.5f;
        v = v > 1.0f ? 1.0f : v >= 0.0f ? v : 0.0f;   /* NaN -> 0 */
        out->data[i] = (uint8_t)rintf(v * 255.0f);     /* numpy round: half to even */
    }
    return SDW_OK;
}

sdw_status sdw_image_to_mask(const sdw_image *img, sdw_mask_source src, float *out)
{
    SDW_TRY(sdw_image_check(img));
    if (src == SDW_MASK_ALPHA && img->channels != 4)
        return sdw_fail(SDW_ERR_INVALID_ARG, "mask from alpha: the image has no alpha channel");
    size_t np = (size_t)img->w * (size_t)img->h;
    int ic = img->channels;
    for (size_t i = 0; i < np; i++) {
        const uint8_t *s = img->data + i * (size_t)ic;
        if (src == SDW_MASK_ALPHA)
            out[i] = s[3] == 0 ? 1.0f : 0.0f;
        else
            out[i] = (float)(ic == 1 ? s[0] : luma(s)) / 255.0f;
    }
    return SDW_OK;
}
