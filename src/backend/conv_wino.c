/* conv_wino.c: f32 3x3 stride-1 convolutions on oneDNN's Winograd kernels,
 * which need about 2.25x fewer multiplies than the direct convolution.
 * oneDNN has them for f32 on AVX-512 only, with activations in its blocked
 * nChw16c layout and weights in a Winograd layout whose blocking depends on
 * the call's size. So a call re-lays x out, convolves, and writes y back as
 * NHWC (adding into it for residuals); the layout changes cost 3-8% of the
 * convolution. The layer keeps its direct weights for other sizes, LoRA and
 * exact undo; the transformed copy follows them (sdw_conv_wino_drop). */
#include "backend/conv_wino.h"
#include "core/log.h"
#include <stdlib.h>

enum { TO_BLOCKED, FROM_BLOCKED };

bool sdw_conv_wino_suits(const sdw_backend *be, int cin, int cout, int kh, int kw, int stride, int pad_t, int pad_l,
                         int pad_b, int pad_r)
{
    return be->precision == SDW_PRECISION_F32 && !be->no_winograd && kh == 3 && kw == 3 && stride == 1 &&
           pad_t == 1 && pad_l == 1 && pad_b == 1 && pad_r == 1 && cin % 16 == 0 && cout % 16 == 0 &&
           cin >= SDW_WINO_MIN_CHANNELS && cout >= SDW_WINO_MIN_CHANNELS &&
           (int64_t)cin * cout <= SDW_WINO_MAX_CIN_X_COUT;
}

size_t sdw_backend_derived_bytes(const sdw_backend *be) { return be->derived_bytes; }

bool sdw_backend_set_winograd(sdw_backend *be, bool on)
{
    be->no_winograd = !on;
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    return on && be->precision == SDW_PRECISION_F32 &&
           (isa & (unsigned)dnnl_cpu_isa_avx512_core) == (unsigned)dnnl_cpu_isa_avx512_core;
}

static sdw_status act_md(int N, int C, int H, int W, bool blocked, dnnl_memory_desc_t *md)
{
    dnnl_dims_t d = { N, C, H, W };
    SDW_DNNL(dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, blocked ? dnnl_nChw16c : dnnl_nhwc), "activation");
    return SDW_OK;
}

/* The cached Winograd primitive for this size; NULL p->prim when oneDNN has
 * none (remembered, so a declined size costs one lookup a call). */
static sdw_status wino_prim(sdw_backend *be, int N, int H, int W, int cin, int cout, bool bias, sdw_prim **out)
{
    int64_t key[SDW_KEY_MAX] = { SDW_OP_WINO, N, H, W, cin, cout, bias };
    *out = sdw_prim_find(be, key, NULL);
    if (*out) return SDW_OK;
    dnnl_memory_desc_t src, wei, b, dst;
    dnnl_dims_t dw = { cout, cin, 3, 3 }, db = { cout }, strides = { 1, 1 }, pad = { 1, 1 };
    SDW_TRY(act_md(N, cin, H, W, true, &src));
    SDW_TRY(act_md(N, cout, H, W, true, &dst));
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&wei, 4, dw, dnnl_f32, dnnl_format_tag_any), "conv weights");
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&b, 1, db, dnnl_f32, dnnl_a), "conv bias");
    dnnl_convolution_desc_t d;
    SDW_DNNL(dnnl_convolution_forward_desc_init(&d, dnnl_forward_inference, dnnl_convolution_winograd, &src, &wei,
                                                bias ? &b : NULL, &dst, strides, pad, pad),
             "winograd conv");
    if (sdw_prim_create(be, key, NULL, &d, NULL, out) == SDW_OK) return SDW_OK;
    sdw_clear_error();
    return sdw_prim_mark_unsupported(be, key, out);
}

/* NHWC <-> nChw16c, adding into the destination when sum. */
static sdw_status layout_prim(sdw_backend *be, int N, int C, int H, int W, int dir, bool sum, sdw_prim **out)
{
    int64_t key[SDW_KEY_MAX] = { SDW_OP_REORDER, N, C, H, W, dir };
    key[SDW_KEY_FLAGS] = sum ? SDW_PRIM_SUM : 0;
    *out = sdw_prim_find(be, key, NULL);
    if (*out) return SDW_OK;
    dnnl_memory_desc_t plain, blocked;
    SDW_TRY(act_md(N, C, H, W, false, &plain));
    SDW_TRY(act_md(N, C, H, W, true, &blocked));
    return dir == TO_BLOCKED ? sdw_prim_create_reorder(be, key, &plain, &blocked, out)
                             : sdw_prim_create_reorder(be, key, &blocked, &plain, out);
}

/* oneDNN transforms only plain [cout, cin, 3, 3] weights, so the stored
 * (blocked) ones go through a plain copy first. */
static sdw_status transform_weights(sdw_backend *be, const dnnl_memory_desc_t *wmd, const void *w, int cin, int cout,
                                    const dnnl_memory_desc_t *want, sdw_conv_wino_weights *ww)
{
    dnnl_memory_desc_t plain;
    dnnl_dims_t dw = { cout, cin, 3, 3 };
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&plain, 4, dw, dnnl_f32, dnnl_oihw), "conv weights");
    float *tmp = malloc(sizeof(float) * (size_t)cout * cin * 9);
    if (!tmp) return sdw_fail(SDW_ERR_NOMEM, "conv: out of memory for Winograd weights");
    double t0 = sdw_be_now();
    sdw_status st = sdw_reorder_into(be, wmd, w, &plain, tmp);
    double t1 = sdw_be_now();
    if (st == SDW_OK) st = sdw_reorder_weights(be, &plain, tmp, want, &ww->w, &ww->bytes);
    SDW_DEBUG("winograd weights %d->%d: %.1f + %.1f ms", cin, cout, (t1 - t0) * 1e3, (sdw_be_now() - t1) * 1e3);
    free(tmp);
    if (st == SDW_OK) {
        ww->md = *want;
        ww->held = &be->derived_bytes;
        *ww->held += ww->bytes;
    }
    return st;
}

sdw_status sdw_conv_wino(sdw_backend *be, sdw_conv_wino_weights *ww, const dnnl_memory_desc_t *wmd, const void *w,
                         const float *bias, int N, int H, int W, int cin, int cout, const float *x, float *y,
                         bool accumulate, bool *ran)
{
    *ran = false;
    sdw_prim *conv, *in, *out;
    SDW_TRY(wino_prim(be, N, H, W, cin, cout, bias != NULL, &conv));
    if (!conv->prim) return SDW_OK;
    const dnnl_memory_desc_t *want;
    SDW_DNNL(dnnl_memory_get_memory_desc(conv->mem[SDW_ARG_WEI], &want), "winograd weights");
    if (!ww->w || !dnnl_memory_desc_equal(&ww->md, want)) {
        sdw_conv_wino_drop(ww);
        SDW_TRY(transform_weights(be, wmd, w, cin, cout, want, ww));
    }
    SDW_TRY(layout_prim(be, N, cin, H, W, TO_BLOCKED, false, &in));
    SDW_TRY(layout_prim(be, N, cout, H, W, FROM_BLOCKED, accumulate, &out));
    float *xb = sdw_scratch(be, SDW_SCR_SRC, sizeof(float) * (size_t)N * cin * H * W);
    float *yb = sdw_scratch(be, SDW_SCR_DST, sizeof(float) * (size_t)N * cout * H * W);
    if (!xb || !yb) return SDW_ERR_NOMEM;
    SDW_TRY(sdw_prim_exec(be, in, x, NULL, NULL, xb));
    SDW_TRY(sdw_prim_exec(be, conv, xb, ww->w, bias, yb));
    SDW_TRY(sdw_prim_exec(be, out, yb, NULL, NULL, y));
    *ran = true;
    return SDW_OK;
}

void sdw_conv_wino_drop(sdw_conv_wino_weights *ww)
{
    if (ww->held) *ww->held -= ww->bytes;
    free(ww->w);
    *ww = (sdw_conv_wino_weights){ 0 };
}
