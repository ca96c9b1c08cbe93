/* frontend.c: see frontend.h. */
#include "pipeline/frontend.h"
#include "core/error.h"
#include "io/file_hash.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

sdw_status sdw_rgb01_to_image(const float *rgb, int w, int h, sdw_image *out)
{
    SDW_TRY(sdw_image_alloc(out, w, h, 3));
    for (size_t i = 0; i < (size_t)w * h * 3; i++) out->data[i] = (uint8_t)rintf(fminf(fmaxf(rgb[i], 0.0f), 1.0f) * 255.0f);
    return SDW_OK;
}

/* img with `channels` channels at w x h. */
static sdw_status fit(const sdw_image *img, int channels, int w, int h, sdw_resize_filter f, sdw_image *out)
{
    sdw_image c;
    SDW_TRY(sdw_image_convert(img, channels, &c));
    if (c.w == w && c.h == h) {
        *out = c;
        return SDW_OK;
    }
    sdw_status s = sdw_image_resize(&c, w, h, f, out);
    sdw_image_free(&c);
    return s;
}

sdw_status sdw_init_from_image(const sdw_image *img, int w, int h, float **out)
{
    *out = NULL;
    sdw_image rgb;
    SDW_TRY(fit(img, 3, w, h, SDW_RESIZE_LANCZOS, &rgb));
    float *f = malloc((size_t)w * h * 3 * sizeof *f);
    if (!f) {
        sdw_image_free(&rgb);
        return sdw_fail(SDW_ERR_NOMEM, "init image: out of memory");
    }
    for (size_t i = 0; i < (size_t)w * h * 3; i++) f[i] = rgb.data[i] / 255.0f;
    sdw_image_free(&rgb);
    *out = f;
    return SDW_OK;
}

sdw_status sdw_mask_from_image(const sdw_image *img, int w, int h, sdw_mask_source src, bool invert, float **out)
{
    *out = NULL;
    sdw_image m;
    /* Luma: RGB resized with Lanczos, then gray (what `generate` always did).
     * Alpha: resized without blending, so "fully transparent" stays exact. */
    if (src == SDW_MASK_ALPHA) SDW_TRY(fit(img, 4, w, h, SDW_RESIZE_NEAREST, &m));
    else SDW_TRY(fit(img, 3, w, h, SDW_RESIZE_LANCZOS, &m));
    float *f = malloc((size_t)w * h * sizeof *f);
    sdw_status s = f ? sdw_image_to_mask(&m, src, f) : sdw_fail(SDW_ERR_NOMEM, "mask: out of memory");
    sdw_image_free(&m);
    if (s != SDW_OK) {
        free(f);
        return s;
    }
    if (invert)
        for (size_t i = 0; i < (size_t)w * h; i++) f[i] = 1.0f - f[i];
    *out = f;
    return SDW_OK;
}

uint64_t sdw_random_seed(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) != sizeof r) r = (uint32_t)time(NULL);
    return r;
}

void sdw_path_stem(const char *path, char *buf, size_t n)
{
    const char *base = strrchr(path, '/');
    base = base && base[1] ? base + 1 : path;
    snprintf(buf, n, "%s", base);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf) *dot = 0;
}

void sdw_model_hash10(const char *path, char out[16])
{
    out[0] = 0;
    struct stat st;
    char hex[65];
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && sdw_file_sha256(path, hex) == SDW_OK)
        snprintf(out, 16, "%.10s", hex);
}
