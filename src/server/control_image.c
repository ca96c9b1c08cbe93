/* control_image.c: see control_image.h. */
#include "server/control_image.h"
#include "core/error.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int sdw_control_pixel_perfect_res(const sdw_image *src, int w, int h, sdw_fit_mode mode)
{
    double k0 = (double)h / src->h, k1 = (double)w / src->w;
    double k = mode == SDW_FIT_RESIZE_AND_FILL ? fmin(k0, k1) : fmax(k0, k1);
    return (int)lround(k * (src->h < src->w ? src->h : src->w));
}

sdw_status sdw_control_detect(const sdw_preprocessor *pre, int processor_res, const sdw_image *src, sdw_image *out)
{
    int short_side = src->h < src->w ? src->h : src->w;
    if (pre->kind == SDW_PRE_NONE || processor_res <= 0 || processor_res == short_side)
        return sdw_preprocess(pre, src, out);
    double k = (double)processor_res / short_side;
    long long w = llround(src->w * k), h = llround(src->h * k);
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    if (w * h > SDW_CONTROL_MAX_MAP_PIXELS)
        return sdw_fail(SDW_ERR_INVALID_ARG, "processor_res: %d makes the %dx%d image %lldx%lld, more than %lld pixels",
                        processor_res, src->w, src->h, w, h, (long long)SDW_CONTROL_MAX_MAP_PIXELS);
    sdw_image scaled;
    SDW_TRY(sdw_image_resize(src, (int)w, (int)h, k > 1 ? SDW_RESIZE_BICUBIC : SDW_RESIZE_BILINEAR, &scaled));
    sdw_status s = sdw_preprocess(pre, &scaled, out);
    sdw_image_free(&scaled);
    return s;
}

sdw_status sdw_control_fitted(const sdw_preprocessor *pre, int processor_res, sdw_fit_mode mode, const sdw_image *src,
                              int w, int h, sdw_image *out)
{
    memset(out, 0, sizeof *out);
    sdw_image map, fitted;
    SDW_TRY(sdw_control_detect(pre, processor_res, src, &map));
    sdw_status s = sdw_control_image_fit(&map, w, h, mode, &fitted);
    sdw_image_free(&map);
    if (s != SDW_OK) return s;
    if (fitted.channels != 3 || fitted.w != w || fitted.h != h) {
        sdw_image_free(&fitted);
        return sdw_fail(SDW_ERR_INVALID_ARG, "control image: fitting gave no %dx%d RGB image", w, h);
    }
    *out = fitted;
    return SDW_OK;
}

sdw_status sdw_control_map(const sdw_preprocessor *pre, int processor_res, sdw_fit_mode mode, const sdw_image *src,
                           int w, int h, float **out)
{
    *out = NULL;
    sdw_image fitted;
    SDW_TRY(sdw_control_fitted(pre, processor_res, mode, src, w, h, &fitted));
    size_t n = (size_t)w * h * 3;
    float *f = malloc(n * sizeof *f);
    if (!f) {
        sdw_image_free(&fitted);
        return sdw_fail(SDW_ERR_NOMEM, "out of memory for a %dx%d control image", w, h);
    }
    /* The map as diffusers feeds it: v / 255, no [-1, 1] scaling. */
    for (size_t i = 0; i < n; i++) f[i] = fitted.data[i] / 255.0f;
    sdw_image_free(&fitted);
    *out = f;
    return SDW_OK;
}
