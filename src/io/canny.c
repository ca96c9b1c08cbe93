/* canny.c: OpenCV's cv2.Canny(img, low, high) (apertureSize 3, L1 gradient)
 * reproduced bit for bit, because every Canny ControlNet was trained on its
 * edge maps and the A1111 / diffusers tooling users compare against calls it.
 * The steps are those of tests/data/controlnet/README.md ("Canny"): integer
 * Sobel with replicated borders, the strongest channel per pixel, OpenCV's
 * fixed-point non-maximum suppression, then hysteresis with an explicit stack.
 * Whole-image buffers (O(w*h)) instead of OpenCV's rolling rows: simpler, and
 * control images are small next to the models that consume them. */
#include "io/preprocess.h"
#include "core/error.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { NOT_EDGE = 0, WEAK = 1, STRONG = 2 };

static int clamp_i(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Sobel of channel c at (x, y), out-of-image pixels replicated from the edge. */
static void sobel(const uint8_t *img, int w, int h, int ch, int c, int x, int y, int *dx, int *dy)
{
    int xl = clamp_i(x - 1, 0, w - 1), xr = clamp_i(x + 1, 0, w - 1);
    int yu = clamp_i(y - 1, 0, h - 1), yd = clamp_i(y + 1, 0, h - 1);
#define P(yy, xx) ((int)img[((size_t)(yy) * (size_t)w + (size_t)(xx)) * (size_t)ch + (size_t)c])
    *dx = (P(yu, xr) - P(yu, xl)) + 2 * (P(y, xr) - P(y, xl)) + (P(yd, xr) - P(yd, xl));
    *dy = (P(yd, xl) - P(yu, xl)) + 2 * (P(yd, x) - P(yu, x)) + (P(yd, xr) - P(yu, xr));
#undef P
}

/* Per pixel the gradient of the channel with the largest |dx| + |dy| (the
 * first on ties). mag has a one-pixel frame of zeros: NMS reads neighbours
 * outside the image as magnitude 0, as OpenCV's padded buffer does. */
static void gradients(const uint8_t *img, int w, int h, int ch, int16_t *gx, int16_t *gy, int32_t *mag)
{
    size_t mw = (size_t)w + 2;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int bx = 0, by = 0, bm = -1;
            for (int c = 0; c < ch; c++) {
                int dx, dy;
                sobel(img, w, h, ch, c, x, y, &dx, &dy);
                int m = abs(dx) + abs(dy);
                if (m > bm) bm = m, bx = dx, by = dy;
            }
            size_t i = (size_t)y * (size_t)w + (size_t)x;
            gx[i] = (int16_t)bx;
            gy[i] = (int16_t)by;
            mag[(size_t)(y + 1) * mw + (size_t)(x + 1)] = bm;
        }
}

/* OpenCV's non-maximum suppression in fixed point: tan(22.5 deg) ~ 13573 / 2^15
 * splits horizontal, vertical and the two diagonals. The asymmetric > / >=
 * on the horizontal and vertical axes keeps one pixel of a plateau. */
static uint8_t suppress(const int32_t *mag, size_t mw, int x, int y, int dx, int dy, int low, int high)
{
    const int32_t *row = mag + (size_t)(y + 1) * mw + (size_t)(x + 1);
    const int32_t *up = row - mw, *down = row + mw;
    int m = row[0];
    if (m <= low) return NOT_EDGE;
    int ax = abs(dx);
    int ay = abs(dy) << 15;
    int tg22x = ax * 13573;
    bool keep;
    if (ay < tg22x) keep = m > row[-1] && m >= row[1];
    else if (ay > tg22x + (ax << 16)) keep = m > up[0] && m >= down[0];
    else {
        int s = (dx ^ dy) < 0 ? -1 : 1;
        keep = m > up[-s] && m > down[s];
    }
    if (!keep) return NOT_EDGE;
    return m > high ? STRONG : WEAK;
}

/* Grows the strong pixels through 8-connected weak ones. Each pixel is pushed
 * at most once (it turns STRONG when pushed), so w*h entries always suffice. */
static void hysteresis(uint8_t *map, int w, int h, int32_t *stack)
{
    size_t n = 0, np = (size_t)w * (size_t)h;
    for (size_t i = 0; i < np; i++)
        if (map[i] == STRONG) stack[n++] = (int32_t)i;
    while (n > 0) {
        int32_t i = stack[--n];
        int x = i % w, y = i / w;
        for (int yy = y - 1; yy <= y + 1; yy++) {
            if (yy < 0 || yy >= h) continue;
            for (int xx = x - 1; xx <= x + 1; xx++) {
                if (xx < 0 || xx >= w) continue;
                size_t j = (size_t)yy * (size_t)w + (size_t)xx;
                if (map[j] != WEAK) continue;
                map[j] = STRONG;
                stack[n++] = (int32_t)j;
            }
        }
    }
}

/* floor() of a threshold as an int. Magnitudes lie in 0..2040, so clamping to
 * [-1, 4096] changes no comparison and keeps the conversion defined. */
static int threshold_int(double t) { return t < -1.0 ? -1 : t > 4096.0 ? 4096 : (int)floor(t); }

sdw_status sdw_canny(const uint8_t *img, int w, int h, int channels, double low, double high, uint8_t *edges)
{
    if (!img || !edges || w <= 0 || h <= 0) return sdw_fail(SDW_ERR_INVALID_ARG, "canny: empty image (%d x %d)", w, h);
    if (channels != 1 && channels != 3)
        return sdw_fail(SDW_ERR_INVALID_ARG, "canny: %d channels (1 or 3 expected)", channels);
    if ((int64_t)w * h > INT32_MAX) return sdw_fail(SDW_ERR_NOMEM, "canny: image of %d x %d too large", w, h);
    if (!isfinite(low) || !isfinite(high))
        return sdw_fail(SDW_ERR_INVALID_ARG, "canny: thresholds must be finite numbers");
    if (low > high) {
        double t = low;
        low = high;
        high = t;
    }
    int lo = threshold_int(low), hi = threshold_int(high);

    size_t np = (size_t)w * (size_t)h, mw = (size_t)w + 2;
    int16_t *gx = malloc(np * sizeof *gx), *gy = malloc(np * sizeof *gy);
    int32_t *mag = calloc(mw * ((size_t)h + 2), sizeof *mag);
    int32_t *stack = malloc(np * sizeof *stack);
    if (!gx || !gy || !mag || !stack) {
        free(gx), free(gy), free(mag), free(stack);
        return sdw_fail(SDW_ERR_NOMEM, "canny: out of memory for a %d x %d image", w, h);
    }
    gradients(img, w, h, channels, gx, gy, mag);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * (size_t)w + (size_t)x;
            edges[i] = suppress(mag, mw, x, y, gx[i], gy[i], lo, hi);
        }
    hysteresis(edges, w, h, stack);
    for (size_t i = 0; i < np; i++) edges[i] = edges[i] == STRONG ? 255 : 0;
    free(gx), free(gy), free(mag), free(stack);
    return SDW_OK;
}
