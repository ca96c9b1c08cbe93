/* conv_wino.c: f32 3x3 stride-1 convolutions on Winograd kernels, which
 * need 2.25-4x fewer multiplies than the direct convolution: oneDNN's on
 * AVX-512, our own F(4x4, 3x3) on AVX2 (conv_wino_avx2.c), where oneDNN
 * has none. oneDNN's take activations in its blocked
 * nChw16c layout and weights in a Winograd layout whose blocking depends on
 * the call's size. So a call re-lays x out, convolves, and writes y back as
 * NHWC (adding into it for residuals); the layout changes cost 3-8% of the
 * convolution. The layer keeps its direct weights for other sizes, LoRA and
 * exact undo; the transformed copy follows them (sdw_conv_wino_drop).
 *
 * The kernel transforms the whole image into its scratchpad, 36 values per
 * 4x4 output tile and channel: 1.2 GB for the VAE's 256-channel 512x512
 * layer. Images whose working set passes the budget run as bands of rows,
 * each with its one-row halo, so the memory stays bounded. */
#include "backend/conv_wino.h"
#include "backend/conv_wino_avx2.h"
#include "core/log.h"
#include <stdlib.h>

enum { TO_BLOCKED, FROM_BLOCKED };

/* oneDNN's Winograd kernels are AVX-512 only. */
static bool onednn_winograd(void)
{
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    return (isa & (unsigned)dnnl_cpu_isa_avx512_core) == (unsigned)dnnl_cpu_isa_avx512_core;
}

bool sdw_conv_wino_suits(const sdw_backend *be, int cin, int cout, int kh, int kw, int stride, int pad_t, int pad_l,
                         int pad_b, int pad_r)
{
    const bool onednn = onednn_winograd();
    const int least = onednn ? SDW_WINO_MIN_CHANNELS : SDW_WINO_AVX2_MIN_CHANNELS;
    return be->precision == SDW_PRECISION_F32 && !be->no_winograd && (onednn || sdw_wino_avx2_usable()) &&
           kh == 3 && kw == 3 && stride == 1 && pad_t == 1 && pad_l == 1 && pad_b == 1 && pad_r == 1 &&
           cin % 16 == 0 && cout % 16 == 0 && cin >= least && cout >= least &&
           (int64_t)cin * cout <= SDW_WINO_MAX_CIN_X_COUT;
}

size_t sdw_backend_derived_bytes(const sdw_backend *be) { return be->derived_bytes; }
void sdw_backend_set_winograd_budget(sdw_backend *be, size_t bytes) { be->wino_budget = bytes; }

bool sdw_backend_set_winograd(sdw_backend *be, bool on)
{
    be->no_winograd = !on;
    return on && be->precision == SDW_PRECISION_F32 && (onednn_winograd() || sdw_wino_avx2_usable());
}

/* An activation of N images of `rows` x W x C: nChw16c, or NHWC rows of
 * images H rows tall (a band of them when rows < H). */
static sdw_status act_md(int N, int C, int rows, int W, int H, bool blocked, dnnl_memory_desc_t *md)
{
    dnnl_dims_t d = { N, C, rows, W };
    if (blocked) {
        SDW_DNNL(dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_nChw16c), "activation");
    } else {
        dnnl_dims_t strides = { (int64_t)H * W * C, 1, (int64_t)W * C, C };
        SDW_DNNL(dnnl_memory_desc_init_by_strides(md, 4, d, dnnl_f32, strides), "activation");
    }
    return SDW_OK;
}

/* One band of output rows: rows_in input rows (its halo included), padded
 * with zeros above on the first band and below on the last. */
typedef struct {
    int N, W, cin, cout, rows_in, pad_t, pad_b;
    bool bias;
} band;

static size_t working_bytes(const sdw_prim *p, const band *b)
{
    const size_t rows_out = (size_t)(b->rows_in + b->pad_t + b->pad_b - 2);
    return p->scratch_bytes + sizeof(float) * (size_t)b->N * b->W * ((size_t)b->rows_in * b->cin + rows_out * b->cout);
}

/* The cached Winograd primitive of a band; NULL p->prim when oneDNN has
 * none (remembered, so a declined size costs one lookup a call). */
static sdw_status wino_prim(sdw_backend *be, const band *b, sdw_prim **out)
{
    int64_t key[SDW_KEY_MAX] = { SDW_OP_WINO, b->N, b->rows_in, b->W, b->cin, b->cout, b->bias, b->pad_t, b->pad_b };
    *out = sdw_prim_find(be, key, NULL);
    if (*out) return SDW_OK;
    const int rows_out = b->rows_in + b->pad_t + b->pad_b - 2;
    dnnl_memory_desc_t src, wei, bias, dst;
    dnnl_dims_t dw = { b->cout, b->cin, 3, 3 }, db = { b->cout }, strides = { 1, 1 };
    dnnl_dims_t pl = { b->pad_t, 1 }, pr = { b->pad_b, 1 };
    SDW_TRY(act_md(b->N, b->cin, b->rows_in, b->W, 0, true, &src));
    SDW_TRY(act_md(b->N, b->cout, rows_out, b->W, 0, true, &dst));
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&wei, 4, dw, dnnl_f32, dnnl_format_tag_any), "conv weights");
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&bias, 1, db, dnnl_f32, dnnl_a), "conv bias");
    dnnl_convolution_desc_t d;
    SDW_DNNL(dnnl_convolution_forward_desc_init(&d, dnnl_forward_inference, dnnl_convolution_winograd, &src, &wei,
                                                b->bias ? &bias : NULL, &dst, strides, pl, pr),
             "winograd conv");
    if (sdw_prim_create(be, key, NULL, &d, NULL, out) == SDW_OK) {
        SDW_DEBUG("winograd conv %d -> %d on N%d x %d rows (pad %d above, %d below) x %d: working set %.0f MB",
                  b->cin, b->cout, b->N, b->rows_in, b->pad_t, b->pad_b, b->W, working_bytes(*out, b) / 1048576.0);
        return SDW_OK;
    }
    sdw_clear_error();
    return sdw_prim_mark_unsupported(be, key, out);
}

/* NHWC rows of H-row images <-> nChw16c, adding into the destination when sum. */
static sdw_status layout_prim(sdw_backend *be, int N, int C, int rows, int W, int H, int dir, bool sum,
                              sdw_prim **out)
{
    int64_t key[SDW_KEY_MAX] = { SDW_OP_REORDER, N, C, rows, W, H, dir };
    key[SDW_KEY_FLAGS] = sum ? SDW_PRIM_SUM : 0;
    *out = sdw_prim_find(be, key, NULL);
    if (*out) return SDW_OK;
    dnnl_memory_desc_t plain, blocked;
    SDW_TRY(act_md(N, C, rows, W, H, false, &plain));
    SDW_TRY(act_md(N, C, rows, W, H, true, &blocked));
    return dir == TO_BLOCKED ? sdw_prim_create_reorder(be, key, &plain, &blocked, out)
                             : sdw_prim_create_reorder(be, key, &blocked, &plain, out);
}

/* The band of output rows [r0, r0 + rows) of an H-row image. */
static band band_of(int N, int H, int W, int cin, int cout, bool bias, int r0, int rows)
{
    const int top = r0 == 0, bottom = r0 + rows == H;
    return (band){ N, W, cin, cout, rows + 2 - top - bottom, top, bottom, bias };
}

/* How many equal bands keep the working set within the budget: the
 * whole-image primitive's scratchpad scaled down, as it grows with the rows.
 * 0 when no divisor of H leaves bands of at least 8 rows that fit. */
static int band_count(size_t whole_bytes, size_t budget, int H)
{
    for (int nb = 1; nb <= H / 8; nb++)
        if (H % nb == 0 && whole_bytes / (size_t)nb <= budget) return nb;
    return whole_bytes <= budget ? 1 : 0;
}

/* The stored (blocked) weights as plain [cout, cin, 3, 3], which both
 * transforms start from; freed by the caller. */
static sdw_status plain_weights(sdw_backend *be, const dnnl_memory_desc_t *wmd, const void *w, int cin, int cout,
                                float **out)
{
    dnnl_memory_desc_t plain;
    dnnl_dims_t dw = { cout, cin, 3, 3 };
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&plain, 4, dw, dnnl_f32, dnnl_oihw), "conv weights");
    float *tmp = malloc(sizeof(float) * (size_t)cout * cin * 9);
    if (!tmp) return sdw_fail(SDW_ERR_NOMEM, "conv: out of memory for Winograd weights");
    sdw_status st = sdw_reorder_into(be, wmd, w, &plain, tmp);
    if (st != SDW_OK) free(tmp);
    else *out = tmp;
    return st;
}

static void hold(sdw_backend *be, sdw_conv_wino_weights *ww)
{
    ww->held = &be->derived_bytes;
    *ww->held += ww->bytes;
}

/* oneDNN transforms only plain weights, so the stored ones go through a
 * plain copy first. */
static sdw_status transform_weights(sdw_backend *be, const dnnl_memory_desc_t *wmd, const void *w, int cin, int cout,
                                    const dnnl_memory_desc_t *want, sdw_conv_wino_weights *ww)
{
    dnnl_memory_desc_t plain;
    dnnl_dims_t dw = { cout, cin, 3, 3 };
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&plain, 4, dw, dnnl_f32, dnnl_oihw), "conv weights");
    float *tmp = NULL;
    double t0 = sdw_be_now();
    SDW_TRY(plain_weights(be, wmd, w, cin, cout, &tmp));
    double t1 = sdw_be_now();
    sdw_status st = sdw_reorder_weights(be, &plain, tmp, want, &ww->w, &ww->bytes);
    SDW_DEBUG("winograd weights %d->%d: %.1f + %.1f ms", cin, cout, (t1 - t0) * 1e3, (sdw_be_now() - t1) * 1e3);
    free(tmp);
    if (st == SDW_OK) {
        ww->md = *want;
        hold(be, ww);
    }
    return st;
}

/* Our own kernel (no AVX-512): its weights made once, whatever the size. */
static sdw_status conv_own(sdw_backend *be, sdw_conv_wino_weights *ww, const dnnl_memory_desc_t *wmd, const void *w,
                           const float *bias, int N, int H, int W, int cin, int cout, const float *x, float *y,
                           bool accumulate, bool *ran)
{
    if (!sdw_wino_avx2_suits_size(N, H, W)) return SDW_OK;
    if (!ww->w) {
        float *tmp = NULL;
        SDW_TRY(plain_weights(be, wmd, w, cin, cout, &tmp));
        ww->bytes = sizeof(float) * sdw_wino_avx2_weight_floats(cin, cout);
        ww->w = aligned_alloc(64, (ww->bytes + 63) & ~(size_t)63);
        if (!ww->w) {
            free(tmp);
            *ww = (sdw_conv_wino_weights){ 0 };
            return sdw_fail(SDW_ERR_NOMEM, "conv: out of memory for Winograd weights");
        }
        sdw_wino_avx2_weights(tmp, cin, cout, ww->w);
        free(tmp);
        hold(be, ww);
    }
    SDW_TRY(sdw_wino_avx2_forward(be, ww->w, bias, N, H, W, cin, cout, x, y, accumulate));
    *ran = true;
    return SDW_OK;
}

const char *sdw_conv_wino_kernel(void)
{
    return onednn_winograd() ? "conv_wino (oneDNN winograd)" : "conv_wino_avx2 (F(4x4,3x3), 6x16 tiles)";
}

sdw_status sdw_conv_wino(sdw_backend *be, sdw_conv_wino_weights *ww, const dnnl_memory_desc_t *wmd, const void *w,
                         const float *bias, int N, int H, int W, int cin, int cout, const float *x, float *y,
                         bool accumulate, bool *ran)
{
    *ran = false;
    if (!onednn_winograd()) return conv_own(be, ww, wmd, w, bias, N, H, W, cin, cout, x, y, accumulate, ran);
    const size_t budget = be->wino_budget ? be->wino_budget : SDW_WINO_BUDGET;
    const band whole = band_of(N, H, W, cin, cout, bias != NULL, 0, H);
    sdw_prim *p;
    SDW_TRY(wino_prim(be, &whole, &p));
    if (!p->prim) return SDW_OK;
    const int nb = band_count(working_bytes(p, &whole), budget, H), rows = nb ? H / nb : 0;
    if (!nb) return SDW_OK;

    /* Every band's kernel must read the same transformed weights: bands of
     * one height, and oneDNN chose one blocking for the first, middle and
     * last. */
    sdw_prim *conv[3];
    const int probe[3] = { 0, rows < H - rows ? rows : 0, H - rows };
    for (int i = 0; i < 3; i++) {
        const band b = band_of(N, H, W, cin, cout, bias != NULL, probe[i], rows);
        SDW_TRY(wino_prim(be, &b, &conv[i]));
        if (!conv[i]->prim) return SDW_OK;
    }
    const dnnl_memory_desc_t *want[3];
    for (int i = 0; i < 3; i++)
        SDW_DNNL(dnnl_memory_get_memory_desc(conv[i]->mem[SDW_ARG_WEI], &want[i]), "winograd weights");
    if (!dnnl_memory_desc_equal(want[0], want[1]) || !dnnl_memory_desc_equal(want[0], want[2])) return SDW_OK;
    if (!ww->w || !dnnl_memory_desc_equal(&ww->md, want[0])) {
        sdw_conv_wino_drop(ww);
        SDW_TRY(transform_weights(be, wmd, w, cin, cout, want[0], ww));
    }

    float *xb = sdw_scratch(be, SDW_SCR_SRC, sizeof(float) * (size_t)N * cin * (rows + 2) * W);
    float *yb = sdw_scratch(be, SDW_SCR_DST, sizeof(float) * (size_t)N * cout * rows * W);
    if (!xb || !yb) return SDW_ERR_NOMEM;
    for (int r0 = 0; r0 < H; r0 += rows) {
        const band b = band_of(N, H, W, cin, cout, bias != NULL, r0, rows);
        sdw_prim *c = conv[r0 == 0 ? 0 : r0 + rows == H ? 2 : 1], *in, *out;
        SDW_TRY(layout_prim(be, N, cin, b.rows_in, W, H, TO_BLOCKED, false, &in));
        SDW_TRY(layout_prim(be, N, cout, rows, W, H, FROM_BLOCKED, accumulate, &out));
        const int first_in = r0 - 1 + b.pad_t;   /* the halo row above, where there is one */
        SDW_TRY(sdw_prim_exec(be, in, x + (size_t)first_in * W * cin, NULL, NULL, xb));
        SDW_TRY(sdw_prim_exec(be, c, xb, ww->w, bias, yb));
        SDW_TRY(sdw_prim_exec(be, out, yb, NULL, NULL, y + (size_t)r0 * W * cout));
    }
    *ran = true;
    return SDW_OK;
}

void sdw_conv_wino_drop(sdw_conv_wino_weights *ww)
{
    if (ww->held) *ww->held -= ww->bytes;
    free(ww->w);
    *ww = (sdw_conv_wino_weights){ 0 };
}
