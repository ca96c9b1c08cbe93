/* comfy_node_image.c: the IMAGE and MASK nodes.
 *
 *   LoadImage       an uploaded image (the input folder) as RGB in [0, 1],
 *                   and 1 - alpha as its MASK; no alpha: a 64x64 zero mask,
 *                   as ComfyUI. Differences: EXIF orientation is not applied
 *                   (ComfyUI's exif_transpose), only the first frame of an
 *                   animation is read, and a palette PNG with transparency
 *                   gives its alpha as a mask (PIL's mode "P" has no "A"
 *                   band, so ComfyUI's mask is zeros there)
 *   LoadImageMask   one channel of the image made RGBA (gray replicated,
 *                   alpha 255 when absent): alpha -> 1 - a, else v / 255
 *   SaveImage / PreviewImage   each picture to 8 bits (255 x, clipped,
 *                   truncated as numpy's astype(uint8)) through
 *                   env->save_image, then env->executed with ComfyUI's
 *                   {"images": [{"filename", "subfolder", "type"}]}
 *   ImageScale      comfy.utils.common_upscale (comfy_resize.c)
 *   Canny           ComfyUI's node runs kornia.filters.canny on the image
 *                   in [0, 1]: gray (0.299, 0.587, 0.114), 5x5 Gaussian
 *                   (sigma 1, reflected border), Sobel (not normalized),
 *                   L2 magnitude, thresholds in those units. We blur the
 *                   same way, round to 8 bits and run OpenCV's Canny
 *                   (io/preprocess.h, the same Sobel on 0..255) with the
 *                   thresholds times 255: equal for edges along an axis;
 *                   OpenCV's L1 magnitude is up to sqrt(2) larger on
 *                   diagonal ones, its 8-bit input is rounded, and its
 *                   non-maximum suppression and hysteresis are OpenCV's,
 *                   so some edge pixels differ from ComfyUI's. */
#include "comfy/comfy_values.h"
#include "core/error.h"
#include "io/image.h"
#include "io/preprocess.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static sdw_status load(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_image *img)
{
    char path[4096];
    SDW_TRY(sdw_cx_resolve(x, SDW_FOLDER_INPUT, sdw_cx_str(n, "image"), path, sizeof path));
    return sdw_image_load(path, 0, img);
}

static sdw_cvalue *new_image(int batch, int h, int w)
{
    sdw_cvalue *v = sdw_cv_new(SDW_CT_IMAGE);
    if (!v) return NULL;
    v->image = (sdw_cv_image){batch, h, w, malloc((size_t)batch * h * w * 3 * sizeof(float))};
    if (!v->image.data) {
        sdw_cv_free(v);
        return NULL;
    }
    return v;
}

static sdw_cvalue *new_mask(int h, int w)
{
    sdw_cvalue *v = sdw_cv_new(SDW_CT_MASK);
    if (!v) return NULL;
    v->mask = (sdw_cv_mask){h, w, calloc((size_t)h * w, sizeof(float))};
    if (!v->mask.data) {
        sdw_cv_free(v);
        return NULL;
    }
    return v;
}

sdw_status sdw_node_load_image(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    sdw_image img = {0};
    SDW_TRY(load(x, n, &img));
    bool alpha = img.channels == 4;
    out[0] = new_image(1, img.h, img.w);
    out[1] = alpha ? new_mask(img.h, img.w) : new_mask(64, 64);
    if (!out[0] || !out[1]) {
        sdw_image_free(&img);
        return sdw_fail(SDW_ERR_NOMEM, "out of memory for a %dx%d image", img.w, img.h);
    }
    float *rgb = out[0]->image.data, *mask = out[1]->mask.data;
    for (size_t i = 0; i < (size_t)img.w * img.h; i++) {
        const uint8_t *p = img.data + i * img.channels;
        for (int c = 0; c < 3; c++) rgb[i * 3 + c] = (float)p[img.channels >= 3 ? c : 0] / 255.0f;
        if (alpha) mask[i] = 1.0f - (float)p[3] / 255.0f;
    }
    sdw_image_free(&img);
    return SDW_OK;
}

sdw_status sdw_node_load_image_mask(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    static const char *const channels[] = {"red", "green", "blue", "alpha"};
    const char *ch = sdw_cx_str(n, "channel");
    int c = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(ch, channels[i])) c = i;
    if (c < 0) return sdw_fail(SDW_ERR_INVALID_ARG, "channel '%s' is not alpha, red, green or blue", ch);
    sdw_image img = {0};
    SDW_TRY(load(x, n, &img));
    if (!(out[0] = new_mask(img.h, img.w))) {
        sdw_image_free(&img);
        return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    }
    float *m = out[0]->mask.data;
    for (size_t i = 0; i < (size_t)img.w * img.h; i++) {
        const uint8_t *p = img.data + i * img.channels;
        float v;
        if (c == 3) v = img.channels == 4 ? (float)p[3] : 255.0f;
        else v = (float)p[img.channels >= 3 ? c : 0];
        m[i] = c == 3 ? 1.0f - v / 255.0f : v / 255.0f;
    }
    sdw_image_free(&img);
    return SDW_OK;
}

/* ---------------------------------------------------------------- saving */

static sdw_status save(sdw_comfy_exec *x, const sdw_comfy_node *n, const char *prefix, bool temp, sdw_cvalue **out)
{
    const sdw_cvalue *images;
    SDW_TRY(sdw_cx_link(x, n, "images", SDW_CT_IMAGE, &images));
    if (!x->env->save_image) return sdw_fail(SDW_ERR_UNSUPPORTED, "no place to save images");
    const sdw_cv_image *im = &images->image;
    cJSON *list = cJSON_CreateArray();
    if (!list) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    sdw_status s = SDW_OK;
    for (int b = 0; s == SDW_OK && b < im->batch; b++) {
        sdw_image img = {0};
        s = sdw_image_alloc(&img, im->w, im->h, 3);
        if (s != SDW_OK) break;
        const float *src = im->data + (size_t)b * im->h * im->w * 3;
        for (size_t i = 0; i < (size_t)im->h * im->w * 3; i++) {
            float v = 255.0f * src[i];
            img.data[i] = (uint8_t)(v > 0 ? (v < 255 ? v : 255) : 0);
        }
        sdw_comfy_file f = {0};
        s = x->env->save_image(x->env->user, &img, prefix, temp, &f);
        sdw_image_free(&img);
        if (s != SDW_OK) break;
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddStringToObject(o, "filename", f.filename) ||
            !cJSON_AddStringToObject(o, "subfolder", f.subfolder) || !cJSON_AddStringToObject(o, "type", f.type)) {
            cJSON_Delete(o);
            s = sdw_fail(SDW_ERR_NOMEM, "out of memory");
            break;
        }
        cJSON_AddItemToArray(list, o);
    }
    cJSON *output = s == SDW_OK ? cJSON_CreateObject() : NULL;
    if (s == SDW_OK && !output) s = sdw_fail(SDW_ERR_NOMEM, "out of memory");
    if (s != SDW_OK) {
        cJSON_Delete(list);
        return s;
    }
    cJSON_AddItemToObject(output, "images", list);
    if (x->env->executed) x->env->executed(x->env->user, n->id, output);
    else cJSON_Delete(output);
    /* ComfyUI's save nodes now also pass their images on (an output of the node table). */
    if (n->spec->n_outputs > 0) {
        sdw_cvalue *v = new_image(im->batch, im->h, im->w);
        if (!v) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        memcpy(v->image.data, im->data, (size_t)im->batch * im->h * im->w * 3 * sizeof(float));
        out[0] = v;
    }
    return SDW_OK;
}

sdw_status sdw_node_save_image(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const char *prefix = sdw_cx_str(n, "filename_prefix");
    return save(x, n, prefix[0] ? prefix : "ComfyUI", false, out);
}

sdw_status sdw_node_preview_image(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    /* ComfyUI's PreviewImage: "ComfyUI_temp_" and five random letters (its alphabet, typo included). */
    static const char letters[] = "abcdefghijklmnopqrstupvxyz";
    char prefix[32] = "ComfyUI_temp_";
    unsigned r = (unsigned)time(NULL) * 2654435761u ^ (unsigned)(uintptr_t)x;
    for (int i = 0; i < 5; i++) {
        r = r * 1103515245u + 12345u;
        prefix[13 + i] = letters[(r >> 16) % 26];
    }
    prefix[18] = 0;
    return save(x, n, prefix, true, out);
}

/* ---------------------------------------------------------------- transforms */

sdw_status sdw_node_image_scale(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const sdw_cvalue *in;
    SDW_TRY(sdw_cx_link(x, n, "image", SDW_CT_IMAGE, &in));
    const sdw_cv_image *im = &in->image;
    sdw_upscale_method m;
    SDW_TRY(sdw_upscale_method_parse(sdw_cx_str(n, "upscale_method"), &m));
    int w = (int)sdw_cx_num(n, "width", 512), h = (int)sdw_cx_num(n, "height", 512);
    bool center = !strcmp(sdw_cx_str(n, "crop"), "center");
    if (w == 0 && h == 0) {
        w = im->w;
        h = im->h;
        center = false;
        m = SDW_UP_NEAREST_EXACT;   /* an identity at the same size */
    } else if (w == 0) {
        w = (int)nearbyint((double)im->w * h / im->h);
        if (w < 1) w = 1;
    } else if (h == 0) {
        h = (int)nearbyint((double)im->h * w / im->w);
        if (h < 1) h = 1;
    }
    sdw_cvalue *v = sdw_cv_new(SDW_CT_IMAGE);
    if (!v) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    sdw_status s = sdw_resize_image(im->data, im->batch, im->h, im->w, 3, h, w, m, center, &v->image.data);
    if (s != SDW_OK) {
        sdw_cv_free(v);
        return s;
    }
    v->image.batch = im->batch;
    v->image.h = h;
    v->image.w = w;
    out[0] = v;
    return SDW_OK;
}

/* kornia's gaussian_blur2d, 5x5, sigma 1, border "reflect" (no edge repeat). */
static int reflect(int i, int n)
{
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

static void blur5(const float *in, int h, int w, float *tmp, float *out)
{
    float k[5], sum = 0;
    for (int i = 0; i < 5; i++) sum += k[i] = expf(-(float)((i - 2) * (i - 2)) / 2.0f);
    for (int i = 0; i < 5; i++) k[i] /= sum;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float v = 0;
            for (int i = 0; i < 5; i++) v += k[i] * in[(size_t)y * w + reflect(x + i - 2, w)];
            tmp[(size_t)y * w + x] = v;
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float v = 0;
            for (int i = 0; i < 5; i++) v += k[i] * tmp[(size_t)reflect(y + i - 2, h) * w + x];
            out[(size_t)y * w + x] = v;
        }
}

sdw_status sdw_node_canny(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const sdw_cvalue *in;
    SDW_TRY(sdw_cx_link(x, n, "image", SDW_CT_IMAGE, &in));
    const sdw_cv_image *im = &in->image;
    double lo = sdw_cx_num(n, "low_threshold", 0.4), hi = sdw_cx_num(n, "high_threshold", 0.8);
    size_t px = (size_t)im->h * im->w;
    sdw_cvalue *v = new_image(im->batch, im->h, im->w);
    float *gray = malloc(px * sizeof *gray), *tmp = malloc(px * sizeof *tmp), *bl = malloc(px * sizeof *bl);
    uint8_t *g8 = malloc(px), *edges = malloc(px);
    sdw_status s = v && gray && tmp && bl && g8 && edges ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory");
    for (int b = 0; s == SDW_OK && b < im->batch; b++) {
        const float *src = im->data + (size_t)b * px * 3;
        for (size_t i = 0; i < px; i++) gray[i] = 0.299f * src[i * 3] + 0.587f * src[i * 3 + 1] + 0.114f * src[i * 3 + 2];
        blur5(gray, im->h, im->w, tmp, bl);
        for (size_t i = 0; i < px; i++) {
            float q = nearbyintf(bl[i] * 255.0f);
            g8[i] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
        }
        s = sdw_canny(g8, im->w, im->h, 1, lo * 255, hi * 255, edges);
        float *dst = v->image.data + (size_t)b * px * 3;
        for (size_t i = 0; s == SDW_OK && i < px; i++) dst[i * 3] = dst[i * 3 + 1] = dst[i * 3 + 2] = edges[i] ? 1.0f : 0.0f;
    }
    free(gray);
    free(tmp);
    free(bl);
    free(g8);
    free(edges);
    if (s != SDW_OK) {
        sdw_cv_free(v);
        return s;
    }
    out[0] = v;
    return SDW_OK;
}
