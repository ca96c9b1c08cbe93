/* image_resize.c: PIL's Image.resize, reproduced to the byte because diffusers
 * resizes init images and masks with it (LANCZOS) before they reach the VAE:
 * a different resampler would shift every golden comparison downstream.
 * Same structure as PIL's libImaging/Resample.c: per output position a window
 * of filter weights (support scaled by the shrink factor, which antialiases),
 * normalised, turned into 22-bit fixed point, applied horizontally then
 * vertically with rounding to 8 bits in between. NEAREST follows PIL's affine
 * scaling instead (pixel centres, accumulated steps). */
#include "io/image_internal.h"
#include "core/error.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

static double bilinear_fn(double x)
{
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double bicubic_fn(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc(double x)
{
    if (x == 0.0) return 1.0;
    x *= M_PI;
    return sin(x) / x;
}

static double lanczos_fn(double x)
{
    return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0;
}

typedef struct {
    double (*fn)(double);
    double support;
} filter;

/* The window of each output position: bounds[2i] = first input index,
 * bounds[2i+1] = count, weights kk[i*ksize ...] in fixed point. */
typedef struct {
    int ksize;
    int *bounds;
    int32_t *kk;
} coeffs;

static void coeffs_free(coeffs *c)
{
    free(c->bounds);
    free(c->kk);
}

static sdw_status precompute(int in_size, int out_size, const filter *f, coeffs *c)
{
    /* PIL passes the box edges as float; for these sizes that is exact. */
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale;
    c->ksize = (int)ceil(support) * 2 + 1;
    c->bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    c->kk = calloc((size_t)out_size * (size_t)c->ksize, sizeof(int32_t));
    double *k = malloc(sizeof(double) * (size_t)c->ksize);
    if (!c->bounds || !c->kk || !k) {
        free(k);
        coeffs_free(c);
        return sdw_fail(SDW_ERR_NOMEM, "out of memory for resize weights");
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            k[x] = f->fn((x + xmin - center + 0.5) * ss);
            ww += k[x];
        }
        int32_t *kk = c->kk + (size_t)xx * (size_t)c->ksize;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? k[x] / ww : k[x];
            kk[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                          : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    free(k);
    return SDW_OK;
}

static uint8_t clip8(int32_t ss)
{
    int32_t v = ss >> PRECISION_BITS;   /* arithmetic shift, as PIL relies on */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* rows [y0, y0 + out_h) of in (width in_w) resampled to width c->bounds' size. */
static void pass_h(const uint8_t *in, int in_w, int y0, int out_w, int out_h, int ch, const coeffs *c, uint8_t *out)
{
    for (int y = 0; y < out_h; y++) {
        const uint8_t *row = in + ((size_t)(y + y0) * (size_t)in_w) * (size_t)ch;
        for (int xx = 0; xx < out_w; xx++) {
            int xmin = c->bounds[2 * xx], xmax = c->bounds[2 * xx + 1];
            const int32_t *k = c->kk + (size_t)xx * (size_t)c->ksize;
            for (int b = 0; b < ch; b++) {
                int32_t ss = 1 << (PRECISION_BITS - 1);
                for (int x = 0; x < xmax; x++) ss += row[(size_t)(x + xmin) * (size_t)ch + (size_t)b] * k[x];
                out[((size_t)y * (size_t)out_w + (size_t)xx) * (size_t)ch + (size_t)b] = clip8(ss);
            }
        }
    }
}

static void pass_v(const uint8_t *in, int w, int out_h, int ch, const coeffs *c, int shift, uint8_t *out)
{
    size_t stride = (size_t)w * (size_t)ch;
    for (int yy = 0; yy < out_h; yy++) {
        int ymin = c->bounds[2 * yy] - shift, ymax = c->bounds[2 * yy + 1];
        const int32_t *k = c->kk + (size_t)yy * (size_t)c->ksize;
        for (size_t i = 0; i < stride; i++) {
            int32_t ss = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < ymax; y++) ss += in[(size_t)(y + ymin) * stride + i] * k[y];
            out[(size_t)yy * stride + i] = clip8(ss);
        }
    }
}

static sdw_status resample(const sdw_image *in, int w, int h, const filter *f, sdw_image *out)
{
    coeffs ch = {0}, cv = {0};
    SDW_TRY(precompute(in->w, w, f, &ch));
    sdw_status s = precompute(in->h, h, f, &cv);
    if (s != SDW_OK) {
        coeffs_free(&ch);
        return s;
    }
    s = sdw_image_alloc(out, w, h, in->channels);
    /* Only the input rows some output row reads go through the first pass. */
    int y_first = cv.bounds[0], y_last = cv.bounds[2 * h - 2] + cv.bounds[2 * h - 1];
    uint8_t *tmp = NULL;
    const uint8_t *src = in->data;
    int shift = 0;
    if (s == SDW_OK && w != in->w) {
        tmp = malloc((size_t)w * (size_t)(y_last - y_first) * (size_t)in->channels);
        if (!tmp) {
            s = sdw_fail(SDW_ERR_NOMEM, "out of memory resizing to %dx%d", w, h);
        } else {
            pass_h(in->data, in->w, y_first, w, y_last - y_first, in->channels, &ch, tmp);
            src = tmp;
            shift = y_first;
        }
    }
    if (s == SDW_OK) {
        if (h != in->h)
            pass_v(src, w, h, in->channels, &cv, shift, out->data);
        else   /* width only: the first pass covered every row */
            memcpy(out->data, src, (size_t)w * (size_t)h * (size_t)in->channels);
    }
    free(tmp);
    coeffs_free(&ch);
    coeffs_free(&cv);
    if (s != SDW_OK) sdw_image_free(out);
    return s;
}

static sdw_status nearest(const sdw_image *in, sdw_image *out)
{
    int ch = in->channels;
    int *xtab = malloc(sizeof(int) * (size_t)out->w);
    if (!xtab) {
        sdw_image_free(out);
        return sdw_fail(SDW_ERR_NOMEM, "out of memory resizing");
    }
    double ax = (double)in->w / out->w, ay = (double)in->h / out->h;
    double xo = ax * 0.5, yo = ay * 0.5;
    /* accumulated like PIL's ImagingScaleAffine, so exact ties fall the same way */
    for (int x = 0; x < out->w; x++, xo += ax) xtab[x] = (int)xo < in->w ? (int)xo : in->w - 1;
    for (int y = 0; y < out->h; y++, yo += ay) {
        int yi = (int)yo < in->h ? (int)yo : in->h - 1;
        const uint8_t *row = in->data + (size_t)yi * (size_t)in->w * (size_t)ch;
        uint8_t *o = out->data + (size_t)y * (size_t)out->w * (size_t)ch;
        for (int x = 0; x < out->w; x++) memcpy(o + (size_t)x * (size_t)ch, row + (size_t)xtab[x] * (size_t)ch, (size_t)ch);
    }
    free(xtab);
    return SDW_OK;
}

/* PIL resizes RGBA as premultiplied RGBa: convert there and back as it does. */
static void premultiply(uint8_t *p, size_t np)
{
    for (size_t i = 0; i < np; i++, p += 4)
        for (int c = 0; c < 3; c++) {
            unsigned t = (unsigned)p[c] * p[3] + 128;
            p[c] = (uint8_t)(((t >> 8) + t) >> 8);
        }
}

static void unpremultiply(uint8_t *p, size_t np)
{
    for (size_t i = 0; i < np; i++, p += 4) {
        unsigned a = p[3];
        if (a == 0 || a == 255) continue;
        for (int c = 0; c < 3; c++) {
            unsigned v = 255u * p[c] / a;
            p[c] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

sdw_status sdw_image_resize(const sdw_image *in, int w, int h, sdw_resize_filter f, sdw_image *out)
{
    memset(out, 0, sizeof *out);
    SDW_TRY(sdw_image_check(in));
    if (w <= 0 || h <= 0) return sdw_fail(SDW_ERR_INVALID_ARG, "resize to %dx%d", w, h);
    if (w == in->w && h == in->h) {
        SDW_TRY(sdw_image_alloc(out, w, h, in->channels));
        memcpy(out->data, in->data, (size_t)w * (size_t)h * (size_t)in->channels);
        return SDW_OK;
    }
    if (f == SDW_RESIZE_NEAREST) {
        SDW_TRY(sdw_image_alloc(out, w, h, in->channels));
        return nearest(in, out);
    }
    static const filter filters[] = {
        [SDW_RESIZE_BILINEAR] = {bilinear_fn, 1.0},
        [SDW_RESIZE_BICUBIC] = {bicubic_fn, 2.0},
        [SDW_RESIZE_LANCZOS] = {lanczos_fn, 3.0},
    };
    if (f != SDW_RESIZE_BILINEAR && f != SDW_RESIZE_BICUBIC && f != SDW_RESIZE_LANCZOS)
        return sdw_fail(SDW_ERR_INVALID_ARG, "unknown resize filter %d", (int)f);
    if (in->channels != 4) return resample(in, w, h, &filters[f], out);
    sdw_image pre;
    SDW_TRY(sdw_image_convert(in, 4, &pre));
    premultiply(pre.data, (size_t)pre.w * (size_t)pre.h);
    sdw_status s = resample(&pre, w, h, &filters[f], out);
    sdw_image_free(&pre);
    if (s == SDW_OK) unpremultiply(out->data, (size_t)w * (size_t)h);
    return s;
}
