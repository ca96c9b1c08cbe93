/* controlnet.c: a ControlNet's forward pass (see controlnet.h; loading is in
 * controlnet_load.c).
 *
 *   feat = hint_encoder(control image)            8H x 8W x 3 -> H x W x block_out[0]
 *   skips, mid = unet_encoder(latents, t, text; conv_in(latents) + feat)
 *   down[i] += scale[i] * zero_conv[i](skips[i])  1x1, one per skip tensor
 *   mid     += scale[n] * zero_conv_mid(mid)
 *
 * The encoder half is unet.c's (sdw_unet_encode), the same blocks the UNet
 * runs; what is ControlNet's own is the hint encoder and the 1x1 convs. */
#include "models/controlnet_impl.h"
#include "core/error.h"
#include <string.h>

int sdw_controlnet_residual_shapes(const sdw_controlnet *cn, int H, int W, int hwc[][3])
{
    return sdw_unet_skip_shapes(&cn->info.unet, H, W, hwc);
}

static sdw_status nomem(void) { return sdw_fail(SDW_ERR_NOMEM, "out of memory in the ControlNet"); }

/* One control image hint [8H, 8W, 3] -> feat [H, W, block_out[0]]; a and b
 * are ping-pong buffers big enough for any stage. */
static sdw_status hint_encoder(sdw_backend *be, const sdw_controlnet *cn, const float *hint, int H, int W, float *a,
                               float *b, float *feat)
{
    int h = 8 * H, w = 8 * W, c = cn->hint_c[0];
    SDW_TRY(sdw_conv2d_forward(be, cn->hint_in, hint, 1, h, w, a, NULL, NULL));
    sdw_silu(a, (size_t)h * w * c);
    for (int i = 0; i < SDW_CONTROLNET_HINT_BLOCKS; i++) {
        int ho, wo;
        SDW_TRY(sdw_conv2d_forward(be, cn->hint[i], a, 1, h, w, b, &ho, &wo));
        h = ho;
        w = wo;
        c = cn->hint_c[(i + 1) / 2];
        sdw_silu(b, (size_t)h * w * c);
        float *t = a;
        a = b;
        b = t;
    }
    if (h != H || w != W)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: the control image came down to %dx%d, not the latent %dx%d",
                        cn->path, h, w, H, W);
    return sdw_conv2d_forward(be, cn->hint_out, a, 1, h, w, feat, NULL, NULL);
}

/* feat [N, H, W, block_out[0]] for the N control images; a batch item whose
 * image equals the one before (the two CFG halves) reuses its features. */
static sdw_status hint_features(sdw_backend *be, sdw_arena *arena, const sdw_controlnet *cn, const float *hint, int N,
                                int H, int W, float *feat)
{
    size_t px = (size_t)H * W, img = 64 * px * 3, fc = (size_t)cn->info.unet.block_out[0];
    /* The largest stage: 64 px x c0 at full size, 16 px x c1, 4 px x c2, px x c3. */
    size_t room = 64 * px * cn->hint_c[0];
    for (int i = 1; i < 4; i++) {
        size_t s = (px << (2 * (3 - i))) * cn->hint_c[i];
        room = s > room ? s : room;
    }
    float *a = sdw_arena_floats(arena, room), *b = sdw_arena_floats(arena, room);
    if (!a || !b) return nomem();
    for (int n = 0; n < N; n++) {
        float *f = feat + n * px * fc;
        if (n > 0 && !memcmp(hint + n * img, hint + (n - 1) * img, img * sizeof *hint))
            memcpy(f, f - px * fc, px * fc * sizeof *f);
        else
            SDW_TRY(hint_encoder(be, cn, hint + n * img, H, W, a, b, f));
    }
    return SDW_OK;
}

/* out += scale * zero_conv(x) over rows [N * px, C]; averaged over the px
 * positions first for a global-pooling ControlNet (shuffle). */
static sdw_status zero_conv_add(sdw_backend *be, const sdw_controlnet *cn, const sdw_linear *l, const float *x, int N,
                                size_t px, int C, float scale, float *tmp, float *out)
{
    if (scale == 0) return SDW_OK;
    SDW_TRY(sdw_linear_forward(be, l, x, (int64_t)(N * px), tmp));
    for (int n = 0; n < N; n++) {
        float *t = tmp + n * px * C, *o = out + n * px * C;
        if (cn->global_pool) {
            for (int c = 0; c < C; c++) {
                double s = 0;
                for (size_t p = 0; p < px; p++) s += t[p * C + c];
                t[c] = (float)(s / (double)px);
            }
            for (size_t p = 0; p < px; p++)
                for (int c = 0; c < C; c++) o[p * C + c] += scale * t[c];
        } else {
            for (size_t i = 0; i < px * C; i++) o[i] += scale * t[i];
        }
    }
    return SDW_OK;
}

static sdw_status run(sdw_backend *be, sdw_arena *arena, const sdw_controlnet *cn, const sdw_unet_input *in,
                      const float *hint, const float *scales, float *const *down, float *mid)
{
    const sdw_unet_config *c = &cn->info.unet;
    int N = in->N, H = in->H, W = in->W, n = cn->info.n_down;
    if (N < 1 || H < 1 || W < 1 || !in->x || !hint || !scales || !down || !mid)
        return sdw_fail(SDW_ERR_INVALID_ARG, "ControlNet: missing input");
    float *feat = sdw_arena_floats(arena, (size_t)N * H * W * c->block_out[0]);
    if (!feat) return nomem();
    sdw_arena_mark m = sdw_arena_save(arena);
    SDW_TRY(hint_features(be, arena, cn, hint, N, H, W, feat));
    sdw_arena_restore(arena, m);
    if (in->tap) in->tap(in->tap_user, "cond_embedding", feat, N, H, W, c->block_out[0]);

    float *skip[SDW_UNET_MAX_SKIPS], *top;
    int ns;
    SDW_TRY(sdw_unet_encode(be, arena, cn->unet, in, feat, skip, &top, &ns));
    if (ns != n) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: %d skip tensors for %d zero convolutions", cn->path, ns, n);
    int hwc[SDW_UNET_MAX_SKIPS + 1][3];
    sdw_unet_skip_shapes(c, H, W, hwc);
    size_t most = 0;
    for (int i = 0; i <= n; i++) {
        size_t e = (size_t)hwc[i][0] * hwc[i][1] * hwc[i][2];
        most = e > most ? e : most;
    }
    float *tmp = sdw_arena_floats(arena, (size_t)N * most);
    if (!tmp) return nomem();
    for (int i = 0; i < n; i++)
        SDW_TRY(zero_conv_add(be, cn, cn->zero[i], skip[i], N, (size_t)hwc[i][0] * hwc[i][1], hwc[i][2], scales[i],
                              tmp, down[i]));
    return zero_conv_add(be, cn, cn->zero_mid, top, N, (size_t)hwc[n][0] * hwc[n][1], hwc[n][2], scales[n], tmp, mid);
}

sdw_status sdw_controlnet_forward(sdw_backend *be, sdw_arena *arena, const sdw_controlnet *cn,
                                  const sdw_unet_input *in, const float *hint, const float *scales,
                                  float *const *down, float *mid)
{
    sdw_arena_mark m = sdw_arena_save(arena);
    sdw_status s = run(be, arena, cn, in, hint, scales, down, mid);
    sdw_arena_restore(arena, m);
    return s;
}
