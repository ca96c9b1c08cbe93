/* comfy_resize.c: ComfyUI's resampling, comfy.utils.common_upscale, for
 * ImageScale, LatentUpscale, the sampler's noise mask and the ControlNet
 * hint: an optional centre crop to the target's aspect, then
 * torch.nn.functional.interpolate in the mode asked (align_corners False,
 * no antialiasing, float arithmetic as torch's CPU kernels), or for
 * "lanczos" PIL's filter on the 8-bit image.
 *
 * The torch rules, per output index d of a dimension of input size I and
 * output size O, with scale = (float)I / O:
 *   nearest-exact  src = min(floor((d + 0.5) * scale), I - 1)
 *   bilinear       src = max(scale * (d + 0.5) - 0.5, 0), the two
 *                  neighbours i and i + (i < I - 1), weights src - i
 *   bicubic        src = scale * (d + 0.5) - 0.5 (not clamped), four
 *                  neighbours clamped to the edge, Keys' kernel, A = -0.75
 *   area           adaptive average pooling: [floor(d I / O), ceil((d + 1) I / O)) */
#include "comfy/comfy_values.h"
#include "core/error.h"
#include "io/image.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

sdw_status sdw_upscale_method_parse(const char *s, sdw_upscale_method *out)
{
    static const char *const names[] = {"nearest-exact", "bilinear", "area", "bicubic", "lanczos"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *out = (sdw_upscale_method)i;
            return SDW_OK;
        }
    return sdw_fail(SDW_ERR_UNSUPPORTED, "upscale_method '%s' is not supported (nearest-exact, bilinear, area, bicubic, "
                                         "lanczos)", s);
}

static float cubic1(float x, float a) { return ((a + 2) * x - (a + 3)) * x * x + 1; }
static float cubic2(float x, float a) { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; }

static void cubic_coeffs(float t, float c[4])
{
    const float a = -0.75f;
    c[0] = cubic2(t + 1.0f, a);
    c[1] = cubic1(t, a);
    c[2] = cubic1(1.0f - t, a);
    c[3] = cubic2(2.0f - t, a);
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

#define AT(y, x) in[(ptrdiff_t)(y) * row + (ptrdiff_t)(x) * px]

static float bicubic_at(const float *in, int H, int W, ptrdiff_t row, ptrdiff_t px, float sy, float sx)
{
    int iy = (int)floorf(sy), ix = (int)floorf(sx);
    float cy[4], cx[4];
    cubic_coeffs(sy - (float)iy, cy);
    cubic_coeffs(sx - (float)ix, cx);
    float rows[4];
    for (int j = 0; j < 4; j++) {
        int y = clampi(iy - 1 + j, 0, H - 1);
        rows[j] = AT(y, clampi(ix - 1, 0, W - 1)) * cx[0] + AT(y, clampi(ix, 0, W - 1)) * cx[1] +
                  AT(y, clampi(ix + 1, 0, W - 1)) * cx[2] + AT(y, clampi(ix + 2, 0, W - 1)) * cx[3];
    }
    return rows[0] * cy[0] + rows[1] * cy[1] + rows[2] * cy[2] + rows[3] * cy[3];
}

static float bilinear_at(const float *in, int H, int W, ptrdiff_t row, ptrdiff_t px, float sy, float sx)
{
    if (sy < 0) sy = 0;
    if (sx < 0) sx = 0;
    int y = (int)sy, x = (int)sx;
    int yp = y < H - 1 ? 1 : 0, xp = x < W - 1 ? 1 : 0;
    float ly1 = sy - (float)y, ly0 = 1.0f - ly1, lx1 = sx - (float)x, lx0 = 1.0f - lx1;
    return ly0 * (lx0 * AT(y, x) + lx1 * AT(y, x + xp)) + ly1 * (lx0 * AT(y + yp, x) + lx1 * AT(y + yp, x + xp));
}

static float area_at(const float *in, int H, int W, ptrdiff_t row, ptrdiff_t px, int oy, int ox, int OH, int OW)
{
    int y0 = (int)(((int64_t)oy * H) / OH), y1 = (int)((((int64_t)oy + 1) * H + OH - 1) / OH);
    int x0 = (int)(((int64_t)ox * W) / OW), x1 = (int)((((int64_t)ox + 1) * W + OW - 1) / OW);
    float sum = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) sum += AT(y, x);
    return sum / (float)((y1 - y0) * (x1 - x0));
}

void sdw_resize_plane(const float *in, int H, int W, ptrdiff_t row, ptrdiff_t px, float *out, int OH, int OW,
                      ptrdiff_t orow, ptrdiff_t opx, sdw_upscale_method m)
{
    float sh = (float)H / (float)OH, sw = (float)W / (float)OW;
    for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++) {
            float v;
            if (m == SDW_UP_NEAREST_EXACT) {
                int y = (int)floorf(((float)oy + 0.5f) * sh), x = (int)floorf(((float)ox + 0.5f) * sw);
                v = AT(y < H - 1 ? y : H - 1, x < W - 1 ? x : W - 1);
            } else if (m == SDW_UP_AREA) {
                v = area_at(in, H, W, row, px, oy, ox, OH, OW);
            } else {
                float sy = sh * ((float)oy + 0.5f) - 0.5f, sx = sw * ((float)ox + 0.5f) - 0.5f;
                v = m == SDW_UP_BICUBIC ? bicubic_at(in, H, W, row, px, sy, sx) : bilinear_at(in, H, W, row, px, sy, sx);
            }
            out[(ptrdiff_t)oy * orow + (ptrdiff_t)ox * opx] = v;
        }
}

void sdw_center_crop(int H, int W, int OH, int OW, int *y0, int *x0, int *h, int *w)
{
    double old_aspect = (double)W / H, new_aspect = (double)OW / OH;
    int x = 0, y = 0;
    if (old_aspect > new_aspect) x = (int)nearbyint((W - W * (new_aspect / old_aspect)) / 2);
    else if (old_aspect < new_aspect) y = (int)nearbyint((H - H * (old_aspect / new_aspect)) / 2);
    *y0 = y;
    *x0 = x;
    *h = H - 2 * y;
    *w = W - 2 * x;
}

/* PIL's lanczos on the 8-bit picture, as comfy.utils.lanczos: values
 * clipped to [0, 255] and truncated, resized, divided by 255. */
static sdw_status lanczos_one(const float *in, int H, int W, int C, int y0, int x0, int h, int w, int OH, int OW,
                              float *out)
{
    sdw_image a = {0}, b = {0};
    SDW_TRY(sdw_image_alloc(&a, w, h, C));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < C; c++) {
                float v = 255.0f * in[((size_t)(y0 + y) * W + (size_t)(x0 + x)) * C + c];
                a.data[((size_t)y * w + x) * C + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    sdw_status s = sdw_image_resize(&a, OW, OH, SDW_RESIZE_LANCZOS, &b);
    if (s == SDW_OK)
        for (size_t i = 0; i < (size_t)OH * OW * C; i++) out[i] = (float)b.data[i] / 255.0f;
    sdw_image_free(&a);
    sdw_image_free(&b);
    (void)H;
    return s;
}

sdw_status sdw_resize_image(const float *in, int B, int H, int W, int C, int OH, int OW, sdw_upscale_method m,
                            bool center, float **out)
{
    *out = NULL;
    if (OH < 1 || OW < 1 || OH > 16384 || OW > 16384)
        return sdw_fail(SDW_ERR_INVALID_ARG, "resize to %dx%d out of range", OW, OH);
    float *o = malloc((size_t)B * OH * OW * C * sizeof *o);
    if (!o) return sdw_fail(SDW_ERR_NOMEM, "out of memory resizing to %dx%d", OW, OH);
    int y0 = 0, x0 = 0, h = H, w = W;
    if (center) sdw_center_crop(H, W, OH, OW, &y0, &x0, &h, &w);
    for (int b = 0; b < B; b++) {
        const float *src = in + (size_t)b * H * W * C;
        float *dst = o + (size_t)b * OH * OW * C;
        if (m == SDW_UP_LANCZOS) {
            sdw_status s = lanczos_one(src, H, W, C, y0, x0, h, w, OH, OW, dst);
            if (s != SDW_OK) {
                free(o);
                return s;
            }
            continue;
        }
        for (int c = 0; c < C; c++)
            sdw_resize_plane(src + ((size_t)y0 * W + x0) * C + c, h, w, (ptrdiff_t)W * C, C, dst + c, OH, OW,
                             (ptrdiff_t)OW * C, C, m);
    }
    *out = o;
    return SDW_OK;
}
