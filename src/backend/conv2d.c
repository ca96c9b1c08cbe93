/* conv2d.c: NHWC convolution on oneDNN. The weights are reordered once, at
 * create, into the layout the convolution prefers on a representative 64x64
 * image (the UNet's working size); other sizes are created against it.
 *
 * A 3x3 convolution of a nearest-2x upsampled image (every decoder's
 * upsample block) runs as four 2x2 convolutions of the image itself, one
 * per output phase (row and column parity): an output pixel's 3x3 window
 * covers only 2x2 distinct input pixels, so the taps that see the same
 * pixel are summed into one weight. 16 multiply-adds per output instead of
 * 36, and no upsampled copy of the input (1.6-2.6x as fast in bf16 at SD's
 * sizes). f32 layers that take Winograd keep their 3x3. */
#include "backend/conv_amx.h"
#include "backend/conv_wino.h"
#include <stdlib.h>
#include <string.h>

struct sdw_conv2d {
    int cin, cout, kh, kw, stride;
    int pad_t, pad_l, pad_b, pad_r;
    dnnl_data_type_t dt;
    dnnl_memory_desc_t wmd;   /* stored layout of the [Cout, Cin, kh, kw] weights */
    void *w;
    size_t wbytes;
    float *bias;
    int amx_wblock;           /* > 0: the stored layout also serves conv_amx.c (its block width) */
    /* The Winograd copy of the weights (conv_wino.c), made at first use. A
     * cache, so the const forward path fills it: one thread uses a layer at
     * a time (backend.h). */
    sdw_conv_wino_weights wino;
    /* The four phase layers of sdw_conv2d_forward_up2x, made at first use
     * like the Winograd copy; their bytes are counted in *up2x_held. */
    struct sdw_conv2d *up2x[4];
    size_t up2x_bytes, *up2x_held;
};

static void drop_up2x(sdw_conv2d *c)
{
    for (int i = 0; i < 4; i++) {
        sdw_conv2d_free(c->up2x[i]);
        c->up2x[i] = NULL;
    }
    if (c->up2x_held) *c->up2x_held -= c->up2x_bytes;
    c->up2x_bytes = 0;
    c->up2x_held = NULL;
}

static int out_size(int in, int pad_lo, int pad_hi, int k, int stride)
{
    return (in + pad_lo + pad_hi - k) / stride + 1;
}

/* Convolution descriptor for an N x H x W source; wmd NULL asks for
 * format_tag_any weights. */
static sdw_status conv_desc(const sdw_conv2d *c, int N, int H, int W, const dnnl_memory_desc_t *wmd,
                            dnnl_convolution_desc_t *d)
{
    int Ho = out_size(H, c->pad_t, c->pad_b, c->kh, c->stride);
    int Wo = out_size(W, c->pad_l, c->pad_r, c->kw, c->stride);
    dnnl_memory_desc_t src, wei, bias, dst;
    dnnl_dims_t ds = { N, c->cin, H, W }, dw = { c->cout, c->cin, c->kh, c->kw }, db = { c->cout };
    dnnl_dims_t dd = { N, c->cout, Ho, Wo };
    dnnl_dims_t strides = { c->stride, c->stride }, pl = { c->pad_t, c->pad_l }, pr = { c->pad_b, c->pad_r };
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&src, 4, ds, c->dt, dnnl_nhwc), "conv src");
    if (wmd) wei = *wmd;
    else SDW_DNNL(dnnl_memory_desc_init_by_tag(&wei, 4, dw, c->dt, dnnl_format_tag_any), "conv weights");
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&bias, 1, db, dnnl_f32, dnnl_a), "conv bias");
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dnnl_nhwc), "conv dst");
    SDW_DNNL(dnnl_convolution_forward_desc_init(d, dnnl_forward_inference, dnnl_convolution_direct, &src, &wei,
                                                c->bias ? &bias : NULL, &dst, strides, pl, pr),
             "conv");
    return SDW_OK;
}

static sdw_status user_md(const sdw_conv2d *c, dnnl_memory_desc_t *md)
{
    dnnl_dims_t dims = { c->cout, c->cin, c->kh, c->kw };
    SDW_DNNL(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, dnnl_oihw), "conv weights");
    return SDW_OK;
}

static sdw_status choose_layout(sdw_backend *be, sdw_conv2d *c)
{
    /* The representative image must be at least as large as the kernel. */
    int hw = SDW_CONV_LAYOUT_HW;
    if (hw < c->kh * 2) hw = c->kh * 2;
    if (hw < c->kw * 2) hw = c->kw * 2;
    dnnl_convolution_desc_t d;
    SDW_TRY(conv_desc(c, 1, hw, hw, NULL, &d));
    dnnl_primitive_desc_t pd;
    SDW_DNNL(dnnl_primitive_desc_create(&pd, &d, NULL, be->engine, NULL), "conv layout");
    c->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    return SDW_OK;
}

sdw_status sdw_conv2d_create_padded(sdw_backend *be, int cin, int cout, int kh, int kw, int stride, int pad_t,
                                    int pad_l, int pad_b, int pad_r, const float *w, const float *bias,
                                    sdw_conv2d **out_layer)
{
    *out_layer = NULL;
    if (cin <= 0 || cout <= 0 || kh <= 0 || kw <= 0 || stride <= 0 || pad_t < 0 || pad_l < 0 || pad_b < 0 ||
        pad_r < 0 || !w)
        return sdw_fail(SDW_ERR_INVALID_ARG, "conv2d: bad parameters %d -> %d, kernel %dx%d, stride %d", cin,
                        cout, kh, kw, stride);
    sdw_conv2d *c = calloc(1, sizeof *c);
    if (!c) return sdw_fail(SDW_ERR_NOMEM, "conv2d: out of memory");
    *c = (sdw_conv2d){ .cin = cin, .cout = cout, .kh = kh, .kw = kw, .stride = stride, .pad_t = pad_t,
                       .pad_l = pad_l, .pad_b = pad_b, .pad_r = pad_r,
                       .dt = be->precision == SDW_PRECISION_BF16 ? dnnl_bf16 : dnnl_f32 };
    sdw_status st = SDW_OK;
    if (bias) {
        c->bias = malloc(sizeof(float) * (size_t)cout);
        if (!c->bias) st = sdw_fail(SDW_ERR_NOMEM, "conv2d: out of memory");
        else memcpy(c->bias, bias, sizeof(float) * (size_t)cout);
    }
    if (st == SDW_OK) st = choose_layout(be, c);
    if (st == SDW_OK) {
        dnnl_memory_desc_t user;
        st = user_md(c, &user);
        if (st == SDW_OK) st = sdw_reorder_weights(be, &user, w, &c->wmd, &c->w, &c->wbytes);
    }
    if (st == SDW_OK && c->dt == dnnl_bf16) sdw_conv_amx_fits(&c->wmd, cin, cout, kh, kw, &c->amx_wblock);
    if (st != SDW_OK) {
        sdw_conv2d_free(c);
        return sdw_fail_context(st, "conv2d %d -> %d %dx%d", cin, cout, kh, kw);
    }
    *out_layer = c;
    return SDW_OK;
}

sdw_status sdw_conv2d_create(sdw_backend *be, int cin, int cout, int kh, int kw, int stride, int pad,
                             const float *w, const float *bias, sdw_conv2d **out_layer)
{
    return sdw_conv2d_create_padded(be, cin, cout, kh, kw, stride, pad, pad, pad, pad, w, bias, out_layer);
}

/* x is f32, or already in the compute type when x_is_act (sdw_act). The
 * op is counted (sdw_count_op) unless a caller counts it as part of its own:
 * then *kernel gets the name of the kernel that ran, for the caller's count. */
static sdw_status run(sdw_backend *be, const sdw_conv2d *c, const void *x, bool x_is_act, int N, int H, int W,
                      float *y, int *Ho, int *Wo, int64_t flags, const char **kernel)
{
    const char *unused;
    const bool count = !kernel;
    if (count) kernel = &unused;
    int ho = out_size(H, c->pad_t, c->pad_b, c->kh, c->stride);
    int wo = out_size(W, c->pad_l, c->pad_r, c->kw, c->stride);
    if (N <= 0 || H <= 0 || W <= 0 || H + c->pad_t + c->pad_b < c->kh || W + c->pad_l + c->pad_r < c->kw)
        return sdw_fail(SDW_ERR_INVALID_ARG, "conv2d: input %dx%dx%d too small for kernel %dx%d", N, H, W,
                        c->kh, c->kw);
    SDW_TRY(sdw_check_not_parallel("conv2d"));
    double t0 = sdw_be_now();
    const double flops = 2.0 * N * ho * wo * (double)c->cout * c->cin * c->kh * c->kw;
    const int dims[SDW_OP_DIMS] = { N, H, W, c->cin, c->cout, c->kh, c->stride };
    if (Ho) *Ho = ho;
    if (Wo) *Wo = wo;
    if (sdw_conv2d_uses_own_kernel(be, c, N, H, W)) {
        const sdw_conv_amx_shape s = { N, H, W, ho, wo, c->cin, c->cout, c->kh, c->kw, c->stride, c->pad_t, c->pad_l };
        SDW_TRY(sdw_conv_amx(be, &s, x, x_is_act, c->w, c->amx_wblock, c->bias, y, flags & SDW_PRIM_SUM));
        *kernel = "conv_amx";
        if (count) sdw_count_op(be, SDW_OPK_CONV, t0, flops, *kernel, dims);
        return SDW_OK;
    }
    if (sdw_conv_wino_suits(be, c->cin, c->cout, c->kh, c->kw, c->stride, c->pad_t, c->pad_l, c->pad_b, c->pad_r)) {
        bool ran;
        sdw_conv_wino_weights *ww = (sdw_conv_wino_weights *)&c->wino;
        SDW_TRY(sdw_conv_wino(be, ww, &c->wmd, c->w, c->bias, N, H, W, c->cin, c->cout, (const float *)x, y,
                              flags & SDW_PRIM_SUM, &ran));
        if (ran) {
            *kernel = sdw_conv_wino_kernel();
            if (count) sdw_count_op(be, SDW_OPK_CONV, t0, flops, *kernel, dims);
            return SDW_OK;
        }
    }
    int64_t key[SDW_KEY_MAX] = { SDW_OP_CONV, c->dt, N, H, W, c->cin, c->cout, c->kh, c->kw, c->stride,
                                 c->pad_t, c->pad_l, c->pad_b, c->pad_r, c->bias != NULL };
    key[SDW_KEY_FLAGS] = flags;
    sdw_prim *p = sdw_prim_find(be, key, &c->wmd);
    if (!p) {
        dnnl_convolution_desc_t d, d_any;
        SDW_TRY(conv_desc(c, N, H, W, &c->wmd, &d));
        SDW_TRY(conv_desc(c, N, H, W, NULL, &d_any));
        SDW_TRY(sdw_prim_create(be, key, &c->wmd, &d, &d_any, &p));
    }
    const void *src = x;
    size_t n_in = (size_t)N * H * W * c->cin;
    if (c->dt == dnnl_bf16 && !x_is_act) {
        uint16_t *xb = sdw_scratch(be, SDW_SCR_SRC, sizeof(uint16_t) * n_in);
        if (!xb) return SDW_ERR_NOMEM;
        sdw_cvt_bf16(xb, x, n_in);
        src = xb;
    }
    SDW_TRY(sdw_prim_exec(be, p, src, c->w, c->bias, y));
    *kernel = p->impl;
    if (count) sdw_count_op(be, SDW_OPK_CONV, t0, flops, *kernel, dims);
    return SDW_OK;
}

static sdw_status forward(sdw_backend *be, const sdw_conv2d *c, const void *x, bool x_is_act, int N, int H, int W,
                          float *y, int *Ho, int *Wo, int64_t flags)
{
    return run(be, c, x, x_is_act, N, H, W, y, Ho, Wo, flags, NULL);
}

bool sdw_conv2d_uses_own_kernel(const sdw_backend *be, const sdw_conv2d *c, int N, int H, int W)
{
    int ho = out_size(H, c->pad_t, c->pad_b, c->kh, c->stride), wo = out_size(W, c->pad_l, c->pad_r, c->kw, c->stride);
    return c->amx_wblock && !be->no_own_conv &&
           sdw_conv_amx_suits((int64_t)N * ho * wo, (int64_t)c->kh * c->kw * c->cin);
}

sdw_status sdw_conv2d_forward(sdw_backend *be, const sdw_conv2d *c, const float *x, int N, int H, int W,
                              float *y, int *Ho, int *Wo)
{
    return forward(be, c, x, false, N, H, W, y, Ho, Wo, 0);
}

sdw_status sdw_conv2d_forward_act(sdw_backend *be, const sdw_conv2d *c, const void *act, int N, int H, int W,
                                  float *y, bool accumulate)
{
    return forward(be, c, act, true, N, H, W, y, NULL, NULL, accumulate ? SDW_PRIM_SUM : 0);
}

sdw_status sdw_conv2d_forward_add(sdw_backend *be, const sdw_conv2d *c, const float *x, int N, int H, int W,
                                  float *y)
{
    return forward(be, c, x, false, N, H, W, y, NULL, NULL, SDW_PRIM_SUM);
}

/* ---- a 3x3 convolution of a nearest-2x upsampled image ---- */

/* fold[a][k]: the input tap (0 or 1) that kernel row k lands on for output
 * rows of parity a. a = 0 reads rows i - 1 (kernel row 0) and i (rows 1
 * and 2); a = 1 reads rows i (rows 0 and 1) and i + 1 (row 2). Columns
 * likewise. */
static const int fold[2][3] = { { 0, 1, 1 }, { 0, 0, 1 } };

/* The four phase layers from the stored weights (phase a * 2 + b). */
static sdw_status make_up2x(sdw_backend *be, sdw_conv2d *c)
{
    const size_t per = (size_t)c->cout * c->cin;
    float *w = malloc(sizeof(float) * per * 9), *pw = malloc(sizeof(float) * per * 4);
    sdw_status st = w && pw ? sdw_conv2d_get_weights(be, c, w) : sdw_fail(SDW_ERR_NOMEM, "conv2d: out of memory");
    for (int ph = 0; ph < 4 && st == SDW_OK; ph++) {
        const int a = ph / 2, b = ph % 2;
        memset(pw, 0, sizeof(float) * per * 4);
        for (size_t oi = 0; oi < per; oi++)
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) pw[oi * 4 + fold[a][ky] * 2 + fold[b][kx]] += w[oi * 9 + ky * 3 + kx];
        /* Phase 0 of a dimension reads one pixel before (padding at the top
         * or left), phase 1 one after (bottom or right). */
        st = sdw_conv2d_create_padded(be, c->cin, c->cout, 2, 2, 1, a == 0, b == 0, a == 1, b == 1, pw, c->bias,
                                      &c->up2x[ph]);
    }
    free(w);
    free(pw);
    if (st != SDW_OK) {
        drop_up2x(c);
        return sdw_fail_context(st, "conv2d %d -> %d: upsampling phases", c->cin, c->cout);
    }
    for (int ph = 0; ph < 4; ph++) c->up2x_bytes += sdw_conv2d_bytes(c->up2x[ph]);
    c->up2x_held = &be->derived_bytes;
    be->derived_bytes += c->up2x_bytes;
    return SDW_OK;
}

/* y[n, 2i + a, 2j + b, :] = p[n, i, j, :] for n < N, i < H, j < W; y's
 * images are 2 Hy rows high (Hy = H unless p is a band of rows). */
static void scatter_phase(float *y, const float *p, int N, int H, int W, int C, int a, int b, int Hy)
{
#pragma omp parallel for schedule(static) if ((int64_t)N * H * W * C > 32768)
    for (int64_t r = 0; r < (int64_t)N * H; r++) {
        const int64_t n = r / H, i = r % H;
        float *dst = y + ((n * 2 * Hy + 2 * i + a) * 2 * W + b) * C;
        const float *src = p + r * W * C;
        for (int j = 0; j < W; j++) sdw_copy_span(dst + (size_t)j * 2 * C, src + (size_t)j * C, (size_t)C);
    }
}

static sdw_status check_up2x(const sdw_conv2d *c, int N, int H, int W)
{
    if (c->kh != 3 || c->kw != 3 || c->stride != 1 || c->pad_t != 1 || c->pad_l != 1 || c->pad_b != 1 ||
        c->pad_r != 1)
        return sdw_fail(SDW_ERR_INVALID_ARG, "conv2d: upsampling needs a 3x3 layer of stride 1 and padding 1");
    if (N <= 0 || H <= 0 || W <= 0) return sdw_fail(SDW_ERR_INVALID_ARG, "conv2d: empty input %dx%dx%d", N, H, W);
    return sdw_check_not_parallel("conv2d");
}

/* In f32 the layers that take Winograd keep it: it saves as many
 * multiplies, and ran as fast or faster (0.86-1.1x the phases). */
static bool up2x_runs_phases(const sdw_backend *be, const sdw_conv2d *c)
{
    return !be->no_up2x && !sdw_conv_wino_suits(be, c->cin, c->cout, 3, 3, 1, 1, 1, 1, 1);
}

/* The plain way: x upsampled into up (in the convolution's input type),
 * then the 3x3 into y (which may be x: up holds all it needs). */
static sdw_status upsample_conv(sdw_backend *be, const sdw_conv2d *c, const float *x, int N, int H, int W, void *up,
                                float *y)
{
    sdw_upsample_nearest2x_act(be, x, N, H, W, c->cin, up);
    return forward(be, c, up, true, N, 2 * H, 2 * W, y, NULL, NULL, 0);
}

/* Input rows [i0, i1) of the n0..n0+nn-1 images (all of them, or one band of
 * one) through the four phases into y. A band reads one row above and below
 * it where the image has them, and is padded only at the image's edges:
 * the phase layer runs with its vertical padding set for the band. *kernel:
 * the kernel the phases ran on (a fallback's name where one phase took one,
 * as that is the one to see). */
static sdw_status up2x_band(sdw_backend *be, const sdw_conv2d *c, const float *x, int n0, int nn, int H, int W,
                            int i0, int i1, float *y, const char **kernel)
{
    const int lo = i0 > 0 ? i0 - 1 : 0, hi = i1 < H ? i1 + 1 : H, rows = i1 - i0;
    const size_t row_in = (size_t)W * c->cin;
    const float *src = x + ((size_t)n0 * H + lo) * row_in;
    const void *act = src;
    if (c->dt == dnnl_bf16) { /* the band (one image) or the batch, read once as bf16 */
        const size_t n = nn > 1 ? (size_t)nn * H * row_in : (size_t)(hi - lo) * row_in;
        uint16_t *xb = sdw_scratch(be, SDW_SCR_UP2X_IN, sizeof(uint16_t) * n);
        if (!xb) return SDW_ERR_NOMEM;
        sdw_cvt_bf16(xb, src, n);
        act = xb;
    }
    float *p = sdw_scratch(be, SDW_SCR_UP2X_OUT, sizeof(float) * (size_t)nn * rows * W * c->cout);
    if (!p) return SDW_ERR_NOMEM;
    for (int ph = 0; ph < 4; ph++) {
        const int a = ph / 2;
        sdw_conv2d band = *c->up2x[ph]; /* the layer with this band's vertical padding */
        band.pad_t = a == 0 && i0 == 0;
        band.pad_b = a == 1 && i1 == H;
        const int first = a == 0 ? (i0 > 0 ? i0 - 1 : 0) : i0, last = a == 1 ? (i1 < H ? i1 + 1 : H) : i1;
        const void *in = (const char *)act + sdw_act_bytes(be, (size_t)(first - lo) * row_in);
        const char *k = NULL;
        SDW_TRY(run(be, &band, in, true, nn, last - first, W, p, NULL, NULL, 0, &k));
        if (!*kernel || (k && (strncmp(k, "ref", 3) == 0 || strstr(k, "gemm")))) *kernel = k;
        /* The band's output rows are rows 2 i0 + a, 2 (i0 + 1) + a, ... of y. */
        scatter_phase(y + ((size_t)n0 * 2 * H + 2 * (size_t)i0) * 2 * W * c->cout, p, nn, rows, W, c->cout, a, ph % 2,
                      H);
    }
    return SDW_OK;
}

sdw_status sdw_conv2d_forward_up2x(sdw_backend *be, const sdw_conv2d *c, const float *x, int N, int H, int W,
                                   float *y)
{
    SDW_TRY(check_up2x(c, N, H, W));
    if (!up2x_runs_phases(be, c)) {
        void *up = sdw_scratch(be, SDW_SCR_UP2X_IN, sdw_act_bytes(be, (size_t)N * 4 * H * W * c->cin));
        if (!up) return SDW_ERR_NOMEM;
        return upsample_conv(be, c, x, N, H, W, up, y);
    }
    sdw_conv2d *cache = (sdw_conv2d *)c; /* the phases are a cache, like the Winograd copy */
    if (!c->up2x[0]) SDW_TRY(make_up2x(be, cache));
    double t0 = sdw_be_now();
    const char *kernel = NULL;
    /* The whole batch at once while a phase's output fits the band budget
     * (the UNet's sizes); else each image in bands of rows (the VAE's). */
    const size_t per_row = (size_t)W * c->cout * sizeof(float);
    const int64_t fit = (int64_t)((be->up2x_band_bytes ? be->up2x_band_bytes : SDW_UP2X_BAND_BYTES) / per_row);
    if ((int64_t)N * H <= fit) {
        SDW_TRY(up2x_band(be, c, x, 0, N, H, W, 0, H, y, &kernel));
    } else {
        const int band = fit < 2 ? 2 : (int)fit; /* two rows at least, whatever the width */
        for (int n = 0; n < N; n++)
            for (int i0 = 0; i0 < H; i0 += band)
                SDW_TRY(up2x_band(be, c, x, n, 1, H, W, i0, i0 + band < H ? i0 + band : H, y, &kernel));
    }
    /* Counted as the 3x3 convolution of the upsampled image, as Winograd's
     * are counted as the direct convolution. */
    const double flops = 2.0 * N * (4.0 * H * W) * c->cout * c->cin * 9;
    const int dims[SDW_OP_DIMS] = { N, 2 * H, 2 * W, c->cin, c->cout, 3, 1 };
    sdw_count_op(be, SDW_OPK_CONV, t0, flops, sdw_kernel_name(be, "conv_up2x (four 2x2 phases)", kernel), dims);
    return SDW_OK;
}

sdw_status sdw_conv2d_upsample_block(sdw_backend *be, const sdw_conv2d *c, float **x, float **y, int N, int H,
                                     int W)
{
    SDW_TRY(check_up2x(c, N, H, W));
    if (up2x_runs_phases(be, c)) {
        SDW_TRY(sdw_conv2d_forward_up2x(be, c, *x, N, H, W, *y));
        float *t = *x;
        *x = *y;
        *y = t;
        return SDW_OK;
    }
    return upsample_conv(be, c, *x, N, H, W, *y, *x);
}

sdw_status sdw_conv2d_get_weights(sdw_backend *be, const sdw_conv2d *c, float *w)
{
    dnnl_memory_desc_t md;
    SDW_TRY(user_md(c, &md));
    return sdw_reorder_into(be, &c->wmd, c->w, &md, w);
}

sdw_status sdw_conv2d_set_weights(sdw_backend *be, sdw_conv2d *c, const float *w)
{
    sdw_conv_wino_drop(&c->wino);
    drop_up2x(c);
    dnnl_memory_desc_t md;
    SDW_TRY(user_md(c, &md));
    return sdw_reorder_into(be, &md, w, &c->wmd, c->w);
}

void sdw_backend_set_upsample_phases(sdw_backend *be, bool on) { be->no_up2x = !on; }
void sdw_backend_set_up2x_band_bytes(sdw_backend *be, size_t bytes) { be->up2x_band_bytes = bytes; }

void *sdw_conv2d_stored(sdw_conv2d *c, size_t *bytes)
{
    sdw_conv_wino_drop(&c->wino);   /* the caller may write the bytes */
    drop_up2x(c);
    *bytes = c->wbytes;
    return c->w;
}

void sdw_conv2d_shape(const sdw_conv2d *c, int *cin, int *cout, int *kh, int *kw)
{
    *cin = c->cin;
    *cout = c->cout;
    *kh = c->kh;
    *kw = c->kw;
}

size_t sdw_conv2d_bytes(const sdw_conv2d *c)
{
    return c->wbytes + c->wino.bytes + c->up2x_bytes + (c->bias ? sizeof(float) * (size_t)c->cout : 0);
}

void sdw_conv2d_free(sdw_conv2d *c)
{
    if (!c) return;
    sdw_conv_wino_drop(&c->wino);
    drop_up2x(c);
    free(c->w);
    free(c->bias);
    free(c);
}
