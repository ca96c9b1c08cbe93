/* comfy_node_latent.c: the LATENT nodes and the VAE.
 *
 *   EmptyLatentImage       zeros [batch, C, h / 8, w / 8], C the model's
 *                          (kept lazy: ComfyUI's 4-channel zeros become the
 *                          model's count in fix_empty_latent_channels)
 *   EmptySD3LatentImage    zeros with 16 channels
 *   LatentUpscale          comfy.utils.common_upscale on the samples (not
 *                          "bislerp"); the noise mask is kept as it is
 *   SetLatentNoiseMask     the samples with the mask as their noise mask
 *   VAEEncode              pixels cropped to a multiple of 8 (centred, as
 *                          ComfyUI's vae_encode_crop_pixels), encoded to the
 *                          posterior's mean, unscaled
 *   VAEEncodeForInpaint    the mask resized (bilinear) to the pixels,
 *                          rounded, grown by grow_mask_by (a box of ones,
 *                          padding ceil((g - 1) / 2), clamped); pixels under
 *                          the mask set to 0.5 before encoding; the grown
 *                          mask is the noise mask
 *   VAEDecode              decoded images in [0, 1]
 *
 * LATENT samples are ComfyUI's unscaled ones; the scaled latents the
 * pipeline takes are (x - shift) * scale (process_latent_in). */
#include "comfy/comfy_values.h"
#include "core/error.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

sdw_status sdw_cx_latent_in(const sdw_cv_latent *l, const sdw_model_info *info, float **out)
{
    int C = info->latent_channels;
    size_t plane = (size_t)l->h * l->w, n = (size_t)l->batch * C * plane;
    bool zeros = !l->samples;
    if (l->samples && l->channels != C) {
        zeros = true;
        for (size_t i = 0; zeros && i < (size_t)l->batch * l->channels * plane; i++) zeros = l->samples[i] == 0;
        if (!zeros)
            return sdw_fail(SDW_ERR_INVALID_ARG, "the latent has %d channels and the model (%s) takes %d", l->channels,
                            sdw_family_name(info->family), C);
    }
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (!x) return sdw_fail(SDW_ERR_NOMEM, "out of memory for latents");
    for (size_t i = 0; i < n; i++)
        x[i] = ((zeros ? 0.0f : l->samples[i]) - info->latent_shift) * info->latent_scale;
    *out = x;
    return SDW_OK;
}

static sdw_status latent_alloc(sdw_cvalue **out, int batch, int channels, int h, int w)
{
    sdw_cvalue *v = sdw_cv_new(SDW_CT_LATENT);
    if (!v) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    v->latent = (sdw_cv_latent){.batch = batch, .channels = channels, .h = h, .w = w};
    if (channels > 0) {
        v->latent.samples = calloc((size_t)batch * channels * h * w, sizeof(float));
        if (!v->latent.samples) {
            sdw_cv_free(v);
            return sdw_fail(SDW_ERR_NOMEM, "out of memory for a %dx%dx%dx%d latent", batch, channels, h, w);
        }
    }
    *out = v;
    return SDW_OK;
}

sdw_status sdw_cx_latent_out(const float *scaled, int batch, int h, int w, const sdw_model_info *info,
                             sdw_cvalue **out)
{
    int C = info->latent_channels;
    SDW_TRY(latent_alloc(out, batch, C, h, w));
    float *x = (*out)->latent.samples;
    for (size_t i = 0; i < (size_t)batch * C * h * w; i++) x[i] = scaled[i] / info->latent_scale + info->latent_shift;
    return SDW_OK;
}

static sdw_status copy_mask(sdw_cv_latent *dst, const float *mask, int mh, int mw)
{
    if (!mask) return SDW_OK;
    dst->noise_mask = malloc((size_t)mh * mw * sizeof(float));
    if (!dst->noise_mask) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    memcpy(dst->noise_mask, mask, (size_t)mh * mw * sizeof(float));
    dst->mask_h = mh;
    dst->mask_w = mw;
    return SDW_OK;
}

sdw_status sdw_cx_latent_copy(const sdw_cv_latent *l, sdw_cvalue **out)
{
    SDW_TRY(latent_alloc(out, l->batch, l->channels, l->h, l->w));
    if (l->samples)
        memcpy((*out)->latent.samples, l->samples, (size_t)l->batch * l->channels * l->h * l->w * sizeof(float));
    return copy_mask(&(*out)->latent, l->noise_mask, l->mask_h, l->mask_w);
}

static sdw_status size_input(const sdw_comfy_node *n, int *w, int *h, int *batch)
{
    *w = (int)sdw_cx_num(n, "width", 512);
    *h = (int)sdw_cx_num(n, "height", 512);
    *batch = (int)sdw_cx_num(n, "batch_size", 1);
    if (*w < 16 || *h < 16 || *w > 16384 || *h > 16384 || *batch < 1 || *batch > 4096)
        return sdw_fail(SDW_ERR_INVALID_ARG, "size %dx%d, batch %d out of range", *w, *h, *batch);
    return SDW_OK;
}

sdw_status sdw_node_empty_latent(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    int w, h, b;
    (void)x;
    SDW_TRY(size_input(n, &w, &h, &b));
    return latent_alloc(&out[0], b, 0, h / 8, w / 8);
}

sdw_status sdw_node_empty_sd3_latent(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    int w, h, b;
    (void)x;
    SDW_TRY(size_input(n, &w, &h, &b));
    return latent_alloc(&out[0], b, 16, h / 8, w / 8);
}

sdw_status sdw_node_latent_upscale(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const sdw_cvalue *in;
    SDW_TRY(sdw_cx_link(x, n, "samples", SDW_CT_LATENT, &in));
    const sdw_cv_latent *l = &in->latent;
    const char *method = sdw_cx_str(n, "upscale_method");
    sdw_upscale_method m;
    SDW_TRY(sdw_upscale_method_parse(method, &m));
    if (m == SDW_UP_LANCZOS) return sdw_fail(SDW_ERR_INVALID_ARG, "lanczos is for images, not latents");
    int w = (int)sdw_cx_num(n, "width", 512), h = (int)sdw_cx_num(n, "height", 512);
    bool center = !strcmp(sdw_cx_str(n, "crop"), "center");
    /* ComfyUI's size rules: 0 keeps the aspect, and nothing below 64. */
    if (w == 0 && h == 0) {
        w = l->w * 8;
        h = l->h * 8;
    } else if (w == 0) {
        h = h > 64 ? h : 64;
        w = (int)nearbyint((double)l->w * h / l->h);
        if (w < 64) w = 64;
    } else if (h == 0) {
        w = w > 64 ? w : 64;
        h = (int)nearbyint((double)l->h * w / l->w);
        if (h < 64) h = 64;
    } else {
        w = w > 64 ? w : 64;
        h = h > 64 ? h : 64;
    }
    int ow = w / 8, oh = h / 8;
    SDW_TRY(latent_alloc(&out[0], l->batch, l->channels, oh, ow));
    sdw_cv_latent *o = &out[0]->latent;
    if (l->samples) {
        /* Each [h, w] plane as an image of one channel. */
        float *r;
        int planes = l->batch * l->channels;
        SDW_TRY(sdw_resize_image(l->samples, planes, l->h, l->w, 1, oh, ow, m, center, &r));
        memcpy(o->samples, r, (size_t)planes * oh * ow * sizeof *r);
        free(r);
    }
    return copy_mask(o, l->noise_mask, l->mask_h, l->mask_w);
}

sdw_status sdw_node_set_latent_noise_mask(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const sdw_cvalue *in, *mask;
    SDW_TRY(sdw_cx_link(x, n, "samples", SDW_CT_LATENT, &in));
    SDW_TRY(sdw_cx_link(x, n, "mask", SDW_CT_MASK, &mask));
    const sdw_cv_latent *l = &in->latent;
    SDW_TRY(latent_alloc(&out[0], l->batch, l->channels, l->h, l->w));
    if (l->samples)
        memcpy(out[0]->latent.samples, l->samples, (size_t)l->batch * l->channels * l->h * l->w * sizeof(float));
    /* The new mask replaces any the samples had. */
    return copy_mask(&out[0]->latent, mask->mask.data, mask->mask.h, mask->mask.w);
}

/* Encodes [B, H, W, 3] pixels (H, W multiples of 8) into a new LATENT. */
static sdw_status encode(sdw_comfy_exec *x, const sdw_cvalue *vae, const float *pixels, int B, int H, int W,
                         sdw_cvalue **out)
{
    sdw_model *m;
    SDW_TRY(sdw_cx_vae_model(x, &vae->vae, &m));
    const sdw_model_info *info = sdw_model_get_info(m);
    int h = H / 8, w = W / 8;
    float *lat = malloc((size_t)B * info->latent_channels * h * w * sizeof *lat);
    if (!lat) return sdw_fail(SDW_ERR_NOMEM, "out of memory for latents");
    sdw_status s = sdw_pipeline_encode(m, pixels, B, H, W, lat);
    if (s == SDW_OK) s = sdw_cx_latent_out(lat, B, h, w, info, out);
    free(lat);
    return s;
}

/* ComfyUI's vae_encode_crop_pixels: the centred part whose sides are multiples of 8. */
static sdw_status crop8(const sdw_cv_image *im, float **out, int *H, int *W, int *y0, int *x0)
{
    *H = im->h / 8 * 8;
    *W = im->w / 8 * 8;
    *y0 = (im->h % 8) / 2;
    *x0 = (im->w % 8) / 2;
    if (*H == 0 || *W == 0) return sdw_fail(SDW_ERR_INVALID_ARG, "image %dx%d is smaller than 8x8", im->w, im->h);
    float *p = malloc((size_t)im->batch * *H * *W * 3 * sizeof *p);
    if (!p) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    for (int b = 0; b < im->batch; b++)
        for (int y = 0; y < *H; y++)
            memcpy(p + (((size_t)b * *H + y) * *W) * 3,
                   im->data + (((size_t)b * im->h + y + *y0) * im->w + *x0) * 3, (size_t)*W * 3 * sizeof *p);
    *out = p;
    return SDW_OK;
}

sdw_status sdw_node_vae_encode(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const sdw_cvalue *pixels, *vae;
    SDW_TRY(sdw_cx_link(x, n, "pixels", SDW_CT_IMAGE, &pixels));
    SDW_TRY(sdw_cx_link(x, n, "vae", SDW_CT_VAE, &vae));
    float *p;
    int H, W, y0, x0;
    SDW_TRY(crop8(&pixels->image, &p, &H, &W, &y0, &x0));
    sdw_status s = encode(x, vae, p, pixels->image.batch, H, W, &out[0]);
    free(p);
    return s;
}

/* The rounded mask grown by g: 1 where any pixel of the g x g box starting
 * at (y - pad, x - pad) is set (conv2d with ones, padding ceil((g - 1) / 2),
 * clamped to 1); separable, rows then columns. */
static sdw_status grow(const float *m, int H, int W, int g, float *out)
{
    int pad = (g - 1 + 1) / 2;
    float *t = malloc((size_t)H * W * sizeof *t);
    if (!t) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float v = 0;
            for (int k = 0; k < g && !v; k++) {
                int xx = x - pad + k;
                if (xx >= 0 && xx < W && nearbyintf(m[(size_t)y * W + xx]) > 0) v = 1;
            }
            t[(size_t)y * W + x] = v;
        }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float v = 0;
            for (int k = 0; k < g && !v; k++) {
                int yy = y - pad + k;
                if (yy >= 0 && yy < H && t[(size_t)yy * W + x] > 0) v = 1;
            }
            out[(size_t)y * W + x] = v;
        }
    free(t);
    return SDW_OK;
}

sdw_status sdw_node_vae_encode_for_inpaint(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const sdw_cvalue *pixels, *vae, *mask;
    SDW_TRY(sdw_cx_link(x, n, "pixels", SDW_CT_IMAGE, &pixels));
    SDW_TRY(sdw_cx_link(x, n, "vae", SDW_CT_VAE, &vae));
    SDW_TRY(sdw_cx_link(x, n, "mask", SDW_CT_MASK, &mask));
    int g = (int)sdw_cx_num(n, "grow_mask_by", 6);
    if (g < 0 || g > 64) return sdw_fail(SDW_ERR_INVALID_ARG, "grow_mask_by %d not in 0..64", g);
    const sdw_cv_image *im = &pixels->image;
    /* The mask at the pixels' size (bilinear), then the same crop. */
    float *full = malloc((size_t)im->h * im->w * sizeof *full);
    if (!full) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    sdw_resize_plane(mask->mask.data, mask->mask.h, mask->mask.w, mask->mask.w, 1, full, im->h, im->w, im->w, 1,
                     SDW_UP_BILINEAR);
    float *p = NULL, *mk = NULL, *grown = NULL;
    int H, W, y0, x0;
    sdw_status s = crop8(im, &p, &H, &W, &y0, &x0);
    if (s == SDW_OK) {
        mk = malloc((size_t)H * W * sizeof *mk);
        grown = malloc((size_t)H * W * sizeof *grown);
        if (!mk || !grown) s = sdw_fail(SDW_ERR_NOMEM, "out of memory");
    }
    if (s == SDW_OK) {
        for (int y = 0; y < H; y++)
            memcpy(mk + (size_t)y * W, full + (size_t)(y + y0) * im->w + x0, (size_t)W * sizeof *mk);
        if (g > 0) s = grow(mk, H, W, g, grown);
        else
            for (size_t i = 0; i < (size_t)H * W; i++) grown[i] = nearbyintf(mk[i]);
    }
    if (s == SDW_OK) {
        /* Pixels to be repainted become 0.5 gray, as ComfyUI. */
        for (int b = 0; b < im->batch; b++)
            for (size_t i = 0; i < (size_t)H * W; i++) {
                float keep = 1.0f - nearbyintf(mk[i]);
                float *px = p + ((size_t)b * H * W + i) * 3;
                for (int c = 0; c < 3; c++) px[c] = (px[c] - 0.5f) * keep + 0.5f;
            }
        s = encode(x, vae, p, im->batch, H, W, &out[0]);
    }
    if (s == SDW_OK) s = copy_mask(&out[0]->latent, grown, H, W);
    free(full);
    free(p);
    free(mk);
    free(grown);
    return s;
}

sdw_status sdw_node_vae_decode(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const sdw_cvalue *samples, *vae;
    SDW_TRY(sdw_cx_link(x, n, "samples", SDW_CT_LATENT, &samples));
    SDW_TRY(sdw_cx_link(x, n, "vae", SDW_CT_VAE, &vae));
    sdw_model *m;
    SDW_TRY(sdw_cx_vae_model(x, &vae->vae, &m));
    const sdw_cv_latent *l = &samples->latent;
    float *lat;
    SDW_TRY(sdw_cx_latent_in(l, sdw_model_get_info(m), &lat));
    sdw_cvalue *v = sdw_cv_new(SDW_CT_IMAGE);
    if (v) v->image.data = malloc((size_t)l->batch * l->h * 8 * l->w * 8 * 3 * sizeof(float));
    sdw_status s = v && v->image.data ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory for the decoded image");
    if (s == SDW_OK) {
        v->image = (sdw_cv_image){l->batch, l->h * 8, l->w * 8, v->image.data};
        s = sdw_pipeline_decode(m, lat, l->batch, l->h, l->w, -1, v->image.data);
    }
    free(lat);
    if (s != SDW_OK) {
        sdw_cv_free(v);
        return s;
    }
    out[0] = v;
    return SDW_OK;
}
