/* test_backend_ops.c: every CPU backend op except attention against a naive C
 * reference (plain loops, double accumulation). F32 is the exact path (gate
 * rel L2 1e-5); BF16 rounds matmul / conv inputs and weights to bf16 and is
 * gated at 1e-2 against the same f32 reference. */
#include "testkit.h"
#include "backend/amx.h"
#include "backend/backend.h"
#include "backend/conv_wino.h"
#include "backend/cpu_internal.h"
#include "core/error.h"
#include "core/half.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F32_GATE 1e-5
#define BF16_GATE 1e-2

static float *falloc(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    return p;
}

static float *frand(size_t n, uint32_t seed, float scale)
{
    float *p = falloc(n);
    test_fill(p, n, seed);
    for (size_t i = 0; i < n; i++) p[i] *= scale;
    return p;
}

/* NULL (after printing why) when the CPU cannot run bf16 at all (no AVX-512):
 * that is a skip, not a failure. */
static sdw_backend *backend(sdw_precision p)
{
    sdw_backend *be = NULL;
    if (!test_precision_runs(p)) return NULL;
    if (sdw_backend_create(p, &be) != SDW_OK) fail_msg("backend: %s", sdw_last_error());
    return be;
}

static double gate(sdw_precision p) { return p == SDW_PRECISION_BF16 ? BF16_GATE : F32_GATE; }

/* ---- linear ---- */

static void ref_linear(const float *x, int64_t M, int K, int N, const float *w, const float *b, float *y)
{
    for (int64_t m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = b ? b[n] : 0;
            for (int k = 0; k < K; k++) s += (double)x[m * K + k] * w[(size_t)n * K + k];
            y[m * N + n] = (float)s;
        }
}

static void check_linear(sdw_precision prec, int K, int N, bool with_bias, const int64_t *Ms, int nM)
{
    sdw_backend *be = backend(prec);
    if (!be) return;
    float *w = frand((size_t)N * K, 11 + K, 1.0f / sqrtf((float)K)), *b = frand((size_t)N, 12 + N, 0.5f);
    sdw_linear *l = NULL;
    if (sdw_linear_create(be, K, N, w, with_bias ? b : NULL, &l) != SDW_OK) fail_msg("%s", sdw_last_error());
    assert_int_equal(sdw_linear_in(l), K);
    assert_int_equal(sdw_linear_out(l), N);
    double flops = 0;
    for (int i = 0; i < nM; i++) {
        int64_t M = Ms[i];
        float *x = frand((size_t)M * K, 13 + (uint32_t)M, 1.0f), *y = falloc((size_t)M * N),
              *r = falloc((size_t)M * N);
        ref_linear(x, M, K, N, w, with_bias ? b : NULL, r);
        for (int rep = 0; rep < 2; rep++) { /* the second call runs the cached primitive */
            memset(y, 0, sizeof(float) * (size_t)M * N);
            if (sdw_linear_forward(be, l, x, M, y) != SDW_OK) fail_msg("%s", sdw_last_error());
            flops += 2.0 * M * K * N;
        }
        char what[96];
        snprintf(what, sizeof what, "linear %s M%lld K%d N%d%s", sdw_precision_name(prec), (long long)M, K, N,
                 with_bias ? " +bias" : "");
        test_check_close(what, y, r, (size_t)M * N, gate(prec));
        free(x), free(y), free(r);
    }
    assert_true(fabs(sdw_backend_flops(be) - flops) < 1);
    sdw_backend_reset_flops(be);
    assert_true(sdw_backend_flops(be) == 0);
    sdw_linear_free(l);
    free(w), free(b);
    sdw_backend_free(be);
}

static void linear_ops(void **state)
{
    (void)state;
    static const sdw_precision precs[2] = { SDW_PRECISION_F32, SDW_PRECISION_BF16 };
    for (int p = 0; p < 2; p++) {
        check_linear(precs[p], 13, 40, true, (const int64_t[]){ 1, 77, 2 }, 3);
        check_linear(precs[p], 40, 3, false, (const int64_t[]){ 77, 1 }, 2);
        check_linear(precs[p], 768, 320, true, (const int64_t[]){ 77, 1, 154 }, 3);
        check_linear(precs[p], 320, 1280, true, (const int64_t[]){ 300 }, 1);
    }
}

static void linear_holds_weights_once(void **state)
{
    (void)state;
    for (int p = 0; p < 2; p++) {
        sdw_precision prec = p ? SDW_PRECISION_BF16 : SDW_PRECISION_F32;
        sdw_backend *be = backend(prec);
        if (!be) continue;
        float *w = frand(768 * 320, 5, 0.05f);
        sdw_linear *l = NULL;
        assert_int_equal(sdw_linear_create(be, 768, 320, w, NULL, &l), SDW_OK);
        size_t want = (size_t)768 * 320 * (p ? 2 : 4);
        printf("  linear 768->320 %s holds %zu bytes (dense %zu)\n", sdw_precision_name(prec), sdw_linear_bytes(l),
               want);
        assert_true(sdw_linear_bytes(l) >= want && sdw_linear_bytes(l) <= want + want / 8);
        sdw_linear_free(l);
        free(w);
        sdw_backend_free(be);
    }
}

/* ---- conv2d ---- */

typedef struct {
    int N, H, W, cin, cout, k, stride, pt, pl, pb, pr;
    bool bias;
} conv_case;

static void ref_conv(const conv_case *c, const float *x, const float *w, const float *b, float *y, int Ho, int Wo)
{
    for (int n = 0; n < c->N; n++)
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++)
                for (int o = 0; o < c->cout; o++) {
                    double s = b ? b[o] : 0;
                    for (int kh = 0; kh < c->k; kh++) {
                        int ih = oh * c->stride - c->pt + kh;
                        if (ih < 0 || ih >= c->H) continue;
                        for (int kw = 0; kw < c->k; kw++) {
                            int iw = ow * c->stride - c->pl + kw;
                            if (iw < 0 || iw >= c->W) continue;
                            const float *xp = x + (((size_t)n * c->H + ih) * c->W + iw) * c->cin;
                            for (int i = 0; i < c->cin; i++)
                                s += (double)xp[i] * w[(((size_t)o * c->cin + i) * c->k + kh) * c->k + kw];
                        }
                    }
                    y[(((size_t)n * Ho + oh) * Wo + ow) * c->cout + o] = (float)s;
                }
}

static void check_conv(sdw_precision prec, const conv_case *c)
{
    sdw_backend *be = backend(prec);
    if (!be) return;
    size_t nw = (size_t)c->cout * c->cin * c->k * c->k, nx = (size_t)c->N * c->H * c->W * c->cin;
    float *w = frand(nw, 21 + c->cin, 1.0f / sqrtf((float)(c->cin * c->k * c->k)));
    float *b = frand((size_t)c->cout, 22, 0.5f), *x = frand(nx, 23 + c->H, 1.0f);
    sdw_conv2d *conv = NULL;
    if (sdw_conv2d_create_padded(be, c->cin, c->cout, c->k, c->k, c->stride, c->pt, c->pl, c->pb, c->pr, w,
                                 c->bias ? b : NULL, &conv) != SDW_OK)
        fail_msg("%s", sdw_last_error());
    int Ho = (c->H + c->pt + c->pb - c->k) / c->stride + 1, Wo = (c->W + c->pl + c->pr - c->k) / c->stride + 1;
    size_t ny = (size_t)c->N * Ho * Wo * c->cout;
    float *y = falloc(ny), *r = falloc(ny);
    ref_conv(c, x, w, c->bias ? b : NULL, r, Ho, Wo);
    for (int rep = 0; rep < 2; rep++) { /* the second call runs the cached primitive */
        int ho = 0, wo = 0;
        memset(y, 0, ny * sizeof *y);
        if (sdw_conv2d_forward(be, conv, x, c->N, c->H, c->W, y, &ho, &wo) != SDW_OK) fail_msg("%s", sdw_last_error());
        assert_int_equal(ho, Ho);
        assert_int_equal(wo, Wo);
    }
    double fl = 2.0 * 2 * c->N * Ho * Wo * (double)c->cout * c->cin * c->k * c->k;
    assert_true(fabs(sdw_backend_flops(be) - fl) < 1);
    char what[128];
    snprintf(what, sizeof what, "conv %s N%d %dx%d %d->%d k%d s%d pad %d,%d,%d,%d%s", sdw_precision_name(prec), c->N,
             c->H, c->W, c->cin, c->cout, c->k, c->stride, c->pt, c->pl, c->pb, c->pr, c->bias ? " +bias" : "");
    test_check_close(what, y, r, ny, gate(prec));
    sdw_conv2d_free(conv);
    free(w), free(b), free(x), free(y), free(r);
    sdw_backend_free(be);
}

static void conv_ops(void **state)
{
    (void)state;
    static const conv_case cases[] = {
        { 1, 9, 7, 3, 13, 3, 1, 1, 1, 1, 1, true },      /* RGB-like input, odd everything */
        { 2, 16, 16, 40, 40, 3, 2, 1, 1, 1, 1, true },   /* downsample: stride 2, pad 1 */
        { 2, 8, 8, 13, 16, 1, 1, 0, 0, 0, 0, true },     /* 1x1 */
        { 1, 12, 12, 32, 64, 3, 1, 1, 1, 1, 1, false },
        { 1, 10, 11, 8, 8, 3, 2, 0, 0, 1, 1, true },     /* VAE encoder's asymmetric pad */
        { 1, 6, 6, 4, 5, 5, 1, 2, 2, 2, 2, true },       /* 5x5 */
        { 1, 2, 3, 4, 4, 3, 1, 1, 1, 1, 1, true },       /* image smaller than the kernel's reach */
    };
    for (int p = 0; p < 2; p++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            check_conv(p ? SDW_PRECISION_BF16 : SDW_PRECISION_F32, &cases[i]);
}

/* y += linear(x) and y += conv(x): the sum post-op the residual connections use. */
static void forward_add(void **state)
{
    (void)state;
    for (int p = 0; p < 2; p++) {
        sdw_precision prec = p ? SDW_PRECISION_BF16 : SDW_PRECISION_F32;
        sdw_backend *be = backend(prec);
        if (!be) continue;
        int K = 40, N = 24, M = 77;
        float *w = frand((size_t)N * K, 31, 0.2f), *b = frand((size_t)N, 32, 0.5f), *x = frand((size_t)M * K, 33, 1);
        float *y = frand((size_t)M * N, 34, 1), *r = falloc((size_t)M * N);
        ref_linear(x, M, K, N, w, b, r);
        for (size_t i = 0; i < (size_t)M * N; i++) r[i] += y[i];
        sdw_linear *l = NULL;
        assert_int_equal(sdw_linear_create(be, K, N, w, b, &l), SDW_OK);
        assert_int_equal(sdw_linear_forward_add(be, l, x, M, y), SDW_OK);
        char what[96];
        snprintf(what, sizeof what, "linear_forward_add %s", sdw_precision_name(prec));
        test_check_close(what, y, r, (size_t)M * N, gate(prec));
        sdw_linear_free(l);
        free(w), free(b), free(x), free(y), free(r);

        conv_case c = { 2, 9, 7, 16, 8, 3, 1, 1, 1, 1, 1, true };
        size_t nw = (size_t)c.cout * c.cin * 9, nx = (size_t)c.N * c.H * c.W * c.cin, ny = (size_t)c.N * c.H * c.W * c.cout;
        w = frand(nw, 35, 0.1f);
        b = frand((size_t)c.cout, 36, 0.5f);
        x = frand(nx, 37, 1);
        y = frand(ny, 38, 1);
        r = falloc(ny);
        ref_conv(&c, x, w, b, r, c.H, c.W);
        for (size_t i = 0; i < ny; i++) r[i] += y[i];
        sdw_conv2d *conv = NULL;
        assert_int_equal(sdw_conv2d_create(be, c.cin, c.cout, 3, 3, 1, 1, w, b, &conv), SDW_OK);
        assert_int_equal(sdw_conv2d_forward_add(be, conv, x, c.N, c.H, c.W, y), SDW_OK);
        snprintf(what, sizeof what, "conv2d_forward_add %s", sdw_precision_name(prec));
        test_check_close(what, y, r, ny, gate(prec));
        /* The same convolution fed by group norm + SiLU written in the compute type. */
        float *gamma = frand((size_t)c.cin, 39, 1), *beta = frand((size_t)c.cin, 40, 0.5f), *gn = falloc(nx);
        sdw_group_norm_silu(x, c.N, (int64_t)c.H * c.W, c.cin, 4, gamma, beta, 1e-5f, gn);
        ref_conv(&c, gn, w, b, r, c.H, c.W);
        void *act = malloc(sdw_act_bytes(be, nx));
        sdw_group_norm_silu_act(be, x, c.N, (int64_t)c.H * c.W, c.cin, 4, gamma, beta, 1e-5f, act);
        assert_int_equal(sdw_conv2d_forward_act(be, conv, act, c.N, c.H, c.W, y, false), SDW_OK);
        snprintf(what, sizeof what, "conv2d_forward_act(group_norm_silu_act) %s", sdw_precision_name(prec));
        test_check_close(what, y, r, ny, gate(prec));
        free(gamma), free(beta), free(gn), free(act);
        sdw_conv2d_free(conv);
        free(w), free(b), free(x), free(y), free(r);
        sdw_backend_free(be);
    }
}

/* The three ways into a convolution, by mode: forward, forward_add (y +=),
 * forward_act (from an activation in the backend's compute type). */
enum { CONV_FORWARD, CONV_ADD, CONV_ACT, CONV_MODES };
static const char *const conv_mode_name[CONV_MODES] = { "forward", "forward_add", "forward_act" };

static void run_conv(sdw_backend *be, const sdw_conv2d *conv, const conv_case *c, int mode, const float *x,
                     const void *act, float *y)
{
    sdw_status st = mode == CONV_FORWARD ? sdw_conv2d_forward(be, conv, x, c->N, c->H, c->W, y, NULL, NULL)
                    : mode == CONV_ADD   ? sdw_conv2d_forward_add(be, conv, x, c->N, c->H, c->W, y)
                                         : sdw_conv2d_forward_act(be, conv, act, c->N, c->H, c->W, y, false);
    assert_int_equal(st, SDW_OK);
}

static void print_log(sdw_log_level level, const char *msg, void *user)
{
    (void)level;
    (*(int *)user)++;
    printf("    log: %s\n", msg);
}

/* Sizes far from the 64x64 the weights layout was chosen for (bf16 at
 * 256x256 and up prefers another layout on AMX): checked against the f32
 * path, which the naive reference has vouched for above. */
/* The AMX small-image kernel (conv_amx.c) against oneDNN's convolution on
 * the same backend: the same bf16 inputs and weights, only the f32
 * summation order differs (gate 1e-5); plain, accumulating with bias, and
 * from a bf16 activation. */
static void conv_own_kernel(void **state)
{
    (void)state;
    sdw_backend *be = backend(SDW_PRECISION_BF16);
    if (!be) return;
    if (!sdw_backend_set_own_conv(be, true)) {
        printf("  no AMX here: small-image convolutions run on oneDNN only\n");
        sdw_backend_free(be);
        return;
    }
    static const conv_case cases[] = {
        { 2, 4, 4, 96, 64, 3, 1, 1, 1, 1, 1, true },       /* the UNet's 8x8 level in small: deep, few pixels */
        { 2, 8, 8, 192, 64, 3, 2, 1, 1, 1, 1, false },     /* downsample to 4x4 */
        { 2, 4, 4, 2048, 64, 3, 1, 1, 1, 1, 1, true },     /* depth 18432 in two chunks */
        { 1, 8, 4, 1024, 128, 1, 1, 0, 0, 0, 0, true },    /* 1x1 */
        { 1, 6, 6, 64, 320, 3, 1, 0, 0, 1, 1, true },      /* asymmetric padding, 5 x 5 = 25 px: not ours */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const conv_case *c = &cases[i];
        size_t nw = (size_t)c->cout * c->cin * c->k * c->k, nx = (size_t)c->N * c->H * c->W * c->cin;
        float *w = frand(nw, 61, 1.0f / sqrtf((float)(c->cin * c->k * c->k))), *b = frand((size_t)c->cout, 62, 0.5f);
        float *x = frand(nx, 63, 1.0f);
        sdw_conv2d *conv = NULL;
        assert_int_equal(sdw_conv2d_create_padded(be, c->cin, c->cout, c->k, c->k, c->stride, c->pt, c->pl, c->pb,
                                                  c->pr, w, c->bias ? b : NULL, &conv),
                         SDW_OK);
        int Ho = (c->H + c->pt + c->pb - c->k) / c->stride + 1, Wo = (c->W + c->pl + c->pr - c->k) / c->stride + 1;
        size_t ny = (size_t)c->N * Ho * Wo * c->cout;
        float *r = falloc(ny), *base = frand(ny, 64, 1.0f), *ours = falloc(ny), *theirs = falloc(ny);
        ref_conv(c, x, w, c->bias ? b : NULL, r, Ho, Wo);
        sdw_backend_set_own_conv(be, true);
        bool own = sdw_conv2d_uses_own_kernel(be, conv, c->N, c->H, c->W);
        if (i < 3) assert_true(own);
        if (i == 4) assert_false(own);
        uint16_t *act = malloc(nx * sizeof *act);
        assert_non_null(act);
        sdw_cvt_bf16_span(act, x, nx);
        for (int mode = 0; mode < CONV_MODES; mode++) {
            for (int side = 0; side < 2; side++) {
                float *y = side ? theirs : ours;
                sdw_backend_set_own_conv(be, side == 0);
                memcpy(y, base, ny * sizeof *y);
                run_conv(be, conv, c, mode, x, act, y);
            }
            char what[128];
            snprintf(what, sizeof what, "conv %s N%d %dx%d %d->%d k%d s%d %s%s", own ? "amx" : "(onednn)", c->N, c->H,
                     c->W, c->cin, c->cout, c->k, c->stride, conv_mode_name[mode], c->bias ? " +bias" : "");
            test_check_close(what, ours, theirs, ny, 1e-5);
            if (mode != CONV_ADD) test_check_close(what, ours, r, ny, BF16_GATE);
        }
        sdw_conv2d_free(conv);
        free(w), free(b), free(x), free(r), free(base), free(ours), free(theirs), free(act);
    }
    sdw_backend_free(be);
}

/* Linear layers on linear_amx.c against oneDNN's inner product on the same
 * stored weights, every entry point: they differ by the summation order
 * (f32 outputs within 1e-5; bf16 outputs by a rounding now and then), and
 * both against the double reference. Shapes cover rows outer (shallow) and
 * rows in chunks (deep, two chunks), and the ones left to oneDNN. */
enum { LIN_FORWARD, LIN_ADD, LIN_ACT, LIN_ACT_ADD, LIN_TO_ACT, LIN_GEGLU, LIN_MODES };
static const char *const lin_mode_name[LIN_MODES] = { "forward", "forward_add", "forward_act", "forward_act +=",
                                                       "forward_to_act", "forward_geglu_act" };

static void run_linear(sdw_backend *be, const sdw_linear *l, int mode, const float *x, const void *act, int64_t M,
                       float *y, uint16_t *y_act)
{
    sdw_status st = mode == LIN_GEGLU   ? sdw_linear_forward_geglu_act(be, l, act, M, y, y_act)
                    : mode == LIN_FORWARD ? sdw_linear_forward(be, l, x, M, y)
                    : mode == LIN_ADD   ? sdw_linear_forward_add(be, l, x, M, y)
                    : mode == LIN_TO_ACT ? sdw_linear_forward_to_act(be, l, act, M, y_act)
                                         : sdw_linear_forward_act(be, l, act, M, y, mode == LIN_ACT_ADD);
    if (st != SDW_OK) fail_msg("%s", sdw_last_error());
}

/* f32 layers of few rows on our AVX2 kernel (linear_avx2.c) where the CPU
 * has AVX2 and no AVX-512: against oneDNN and the double reference, with
 * a partial last tile of rows, depths past one 256-deep slice (and not a
 * multiple of it), bias or none, and added into y. */
static void linear_own_kernel_f32(void **state)
{
    (void)state;
    sdw_backend *be = backend(SDW_PRECISION_F32);
    const bool ours = sdw_backend_set_own_linear(be, true);
    printf("  %s\n", ours ? "f32 layers of few rows on linear_avx2.c here" : "no AVX2-only kernel here: oneDNN only");
    static const struct { int K, N; int64_t M; bool bias; } cases[] = {
        { 768, 320, 77, true },  /* CLIP's rows: 12 whole tiles and 5 rows */
        { 300, 48, 6, false },   /* one tile; two depth slices, the second short */
        { 40, 16, 13, true },    /* one panel, under one slice */
        { 2048, 1024, 200, true }, /* large enough for 200 rows; rows of w 4 KiB apart: panels copied */
        { 300, 1024, 20, false },  /* copied, the second slice short */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int K = cases[i].K, N = cases[i].N;
        const int64_t M = cases[i].M;
        const size_t ny = (size_t)M * N;
        float *w = frand((size_t)N * K, 91 + K, 1.0f / sqrtf((float)K)), *b = frand((size_t)N, 92, 0.5f);
        float *x = frand((size_t)M * K, 93, 1.0f), *base = frand(ny, 94, 1.0f), *r = falloc(ny);
        float *y[2] = { falloc(ny), falloc(ny) };
        sdw_linear *l = NULL;
        if (sdw_linear_create(be, K, N, w, cases[i].bias ? b : NULL, &l) != SDW_OK) fail_msg("%s", sdw_last_error());
        ref_linear(x, M, K, N, w, cases[i].bias ? b : NULL, r);
        for (int add = 0; add < 2; add++) {
            for (int side = 0; side < 2; side++) { /* 0: ours where it runs, 1: oneDNN */
                sdw_backend_set_own_linear(be, side == 0);
                memcpy(y[side], base, ny * sizeof(float));
                assert_int_equal((add ? sdw_linear_forward_add : sdw_linear_forward)(be, l, x, M, y[side]), SDW_OK);
            }
            char what[96];
            snprintf(what, sizeof what, "linear f32 own vs oneDNN M%lld K%d N%d%s%s", (long long)M, K, N,
                     cases[i].bias ? " +bias" : "", add ? " add" : "");
            test_check_close(what, y[0], y[1], ny, F32_GATE);
            if (!add) {
                snprintf(what, sizeof what, "linear f32 own vs reference M%lld K%d N%d", (long long)M, K, N);
                test_check_close(what, y[0], r, ny, F32_GATE);
            }
        }
        sdw_linear_free(l);
        free(w), free(b), free(x), free(base), free(r), free(y[0]), free(y[1]);
    }
    sdw_backend_free(be);
}

static float *as_act(sdw_backend *be, const float *x, size_t n, void *act);

/* sdw_linear_forward_gelu_act on every path it takes (oneDNN's post-op in
 * f32 and bf16; our own kernels, compact weights and low-rank branches with
 * the GELU pass after them) against GELU (tanh form) of the double
 * reference, the branch included; in bf16 against the unfused pair too. */
static void linear_gelu(void **state)
{
    (void)state;
    const int K = 96, N = 128;
    const int64_t M = 70; /* own kernels: AMX from 32 rows */
    const size_t nx = (size_t)M * K, ny = (size_t)M * N;
    for (int v = 0; v < 4; v++) { /* f32, bf16, bf16 Q8_0 weights, bf16 with a branch */
        const sdw_precision prec = v ? SDW_PRECISION_BF16 : SDW_PRECISION_F32;
        sdw_backend *be = backend(prec);
        if (!be) continue;
        const bool own = sdw_backend_set_own_linear(be, true);
        float *w = frand((size_t)N * K, 301, 1.0f / sqrtf((float)K)), *b = frand((size_t)N, 302, 0.5f);
        float *x = frand(nx, 303, 1.5f), *r = falloc(ny), *got = falloc(ny), *pair = falloc(ny);
        void *act = malloc(nx * sizeof(float)), *y = malloc(ny * sizeof(float)), *y2 = malloc(ny * sizeof(float));
        assert_true(act && y && y2);
        float *xr = as_act(be, x, nx, act); /* what the product multiplies */
        sdw_linear *l = NULL;
        if (v == 2) {
            const size_t rb = sdw_qtype_row_bytes(SDW_QT_Q8_0, K);
            uint8_t *rows = malloc(rb * N);
            assert_non_null(rows);
            for (int n = 0; n < N; n++) sdw_qtype_quantize_row(SDW_QT_Q8_0, w + (size_t)n * K, rows + rb * n, K);
            for (int n = 0; n < N; n++) sdw_qtype_dequantize_row(SDW_QT_Q8_0, rows + rb * n, w + (size_t)n * K, K);
            assert_int_equal(sdw_linear_create_quant(be, K, N, SDW_QT_Q8_0, rows, b, &l), SDW_OK);
            free(rows);
        } else {
            assert_int_equal(sdw_linear_create(be, K, N, w, b, &l), SDW_OK);
        }
        ref_linear(xr, M, K, N, w, b, r);
        if (v == 3) { /* a dense branch on outputs 8..39: the GELU comes after it */
            float *d = frand((size_t)32 * K, 304, 0.05f);
            assert_int_equal(sdw_linear_add_branch(l, 8, 32, 32, d, NULL), SDW_OK);
            for (int64_t m = 0; m < M; m++)
                for (int o = 0; o < 32; o++) {
                    double s = 0;
                    for (int k = 0; k < K; k++) s += (double)xr[m * K + k] * d[(size_t)o * K + k];
                    r[m * N + 8 + o] += (float)s;
                }
            free(d);
        }
        for (size_t i = 0; i < ny; i++) {
            const double u = r[i];
            r[i] = (float)(0.5 * u * (1.0 + tanh(0.7978845608028654 * (u + 0.044715 * u * u * u))));
        }
        assert_int_equal(sdw_linear_forward_gelu_act(be, l, act, M, y), SDW_OK);
        assert_int_equal(sdw_linear_forward_to_act(be, l, act, M, y2), SDW_OK);
        sdw_gelu_tanh_act(be, y2, ny);
        for (size_t i = 0; i < ny; i++) {
            got[i] = prec == SDW_PRECISION_BF16 ? sdw_bf16_to_f32(((uint16_t *)y)[i]) : ((float *)y)[i];
            pair[i] = prec == SDW_PRECISION_BF16 ? sdw_bf16_to_f32(((uint16_t *)y2)[i]) : ((float *)y2)[i];
        }
        static const char *const name[4] = { "f32", "bf16", "bf16 q8_0", "bf16 + branch" };
        char what[128];
        snprintf(what, sizeof what, "linear_gelu_act %s M%lld K%d N%d (%s)", name[v], (long long)M, K, N,
                 v == 2 ? "quant kernel, GELU after" : v == 3 ? "branch, GELU after"
                 : own ? "own kernel where it runs, GELU after" : "oneDNN's post-op");
        test_check_close(what, got, r, ny, prec == SDW_PRECISION_BF16 ? BF16_GATE : F32_GATE);
        snprintf(what, sizeof what, "linear_gelu_act %s against to_act + gelu_tanh_act", name[v]);
        test_check_close(what, got, pair, ny, prec == SDW_PRECISION_BF16 ? BF16_GATE : F32_GATE);
        sdw_linear_free(l);
        free(w), free(b), free(x), free(xr), free(r), free(got), free(pair), free(act), free(y), free(y2);
        sdw_backend_free(be);
    }
}

static void linear_own_kernel(void **state)
{
    (void)state;
    sdw_backend *be = backend(SDW_PRECISION_BF16);
    if (!be) return;
    if (!sdw_backend_set_own_linear(be, true)) {
        printf("  neither AMX nor AVX-512-BF16 here: linear layers run on oneDNN only\n");
        sdw_backend_free(be);
        return;
    }
    /* linear_amx.c takes every product of 32 rows or more; linear_dp.c
     * (AVX-512-BF16 without AMX) the GEGLU projection of 16 or more */
    const bool amx = sdw_amx_usable();
    const int64_t min_rows = amx ? 32 : 16;
    printf("  own kernel here: %s\n", amx ? "linear_amx.c (AMX tiles)" : "linear_dp.c (AVX-512-BF16 dot products)");
    static const struct { int K, N; int64_t M; bool bias; } cases[] = {
        { 64, 128, 64, true },      /* rows outer (AMX) */
        { 320, 192, 96, false },    /* three threads' worth of output pairs (AMX), three groups (dp) */
        { 2048, 128, 512, true },   /* depth 2048: rows in chunks of 256 */
        { 64, 128, 77, true },      /* a partial last block of rows: padded (AMX), a tile of 5 (dp) */
        { 768, 256, 154, false },   /* the text context's keys and values */
        { 64, 128, 16, true },      /* under a block of rows: oneDNN on AMX */
        { 64, 128, 8, true },       /* under 16 rows: oneDNN */
        { 64, 40, 64, true },       /* outputs not in blocks of 64: oneDNN */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int K = cases[i].K, N = cases[i].N;
        const int64_t M = cases[i].M;
        const size_t nx = (size_t)M * K, ny = (size_t)M * N;
        float *w = frand((size_t)N * K, 71 + K, 1.0f / sqrtf((float)K)), *b = frand((size_t)N, 72, 0.5f);
        float *x = frand(nx, 73, 1.0f), *xr = falloc(nx), *r = falloc(ny), *base = frand(ny, 74, 1.0f);
        float *out[2] = { falloc(ny), falloc(ny) };
        uint16_t *act = malloc(nx * sizeof *act), *out_act[2] = { malloc(ny * 2), malloc(ny * 2) };
        assert_true(act && out_act[0] && out_act[1]);
        sdw_cvt_bf16_span(act, x, nx);
        for (size_t k = 0; k < nx; k++) xr[k] = sdw_bf16_to_f32(act[k]); /* what both kernels multiply */
        sdw_linear *l = NULL;
        if (sdw_linear_create(be, K, N, w, cases[i].bias ? b : NULL, &l) != SDW_OK) fail_msg("%s", sdw_last_error());
        sdw_backend_set_own_linear(be, true);
        const bool ours = N % 64 == 0 && M >= min_rows;
        assert_int_equal(sdw_linear_uses_own_kernel(be, l, M), amx && ours);
        ref_linear(xr, M, K, N, w, cases[i].bias ? b : NULL, r);
        float *rg = falloc(ny / 2); /* GEGLU of the reference: the first half times the GELU of the second */
        for (int64_t m = 0; m < M; m++)
            for (int c = 0; c < N / 2; c++) {
                const double g = r[m * N + N / 2 + c];
                rg[m * (N / 2) + c] = (float)(r[m * N + c] * 0.5 * g * (1.0 + erf(g / sqrt(2.0))));
            }
        for (int mode = 0; mode < LIN_MODES; mode++) {
            const bool adds = mode == LIN_ADD || mode == LIN_ACT_ADD, geglu = mode == LIN_GEGLU;
            const size_t n_out = geglu ? ny / 2 : ny;
            for (int side = 0; side < 2; side++) {
                sdw_backend_set_own_linear(be, side == 0);
                memcpy(out[side], base, ny * sizeof(float));
                run_linear(be, l, mode, x, act, M, out[side], out_act[side]);
                if (mode == LIN_TO_ACT || geglu)
                    for (size_t k = 0; k < n_out; k++) out[side][k] = sdw_bf16_to_f32(out_act[side][k]);
                if (adds)
                    for (size_t k = 0; k < ny; k++) out[side][k] -= base[k];
            }
            char what[128];
            const char *kernel = !ours ? "(onednn)" : amx ? "amx" : geglu ? "dp" : "(onednn)";
            snprintf(what, sizeof what, "linear %s M%lld K%d N%d %s%s", kernel,
                     (long long)M, K, N, lin_mode_name[mode], cases[i].bias ? " +bias" : "");
            /* Unfused, GEGLU reads the projection rounded to bf16: a few 1e-3. */
            test_check_close(what, out[0], out[1], n_out, geglu ? BF16_GATE : mode == LIN_TO_ACT ? 2e-3 : 1e-5);
            test_check_close(what, out[0], geglu ? rg : r, n_out, BF16_GATE);
        }
        free(rg);
        sdw_linear_free(l);
        free(w), free(b), free(x), free(xr), free(r), free(base), free(out[0]), free(out[1]), free(act);
        free(out_act[0]), free(out_act[1]);
    }
    sdw_backend_free(be);
}

/* f32 3x3 convolutions of 256+ channels run on oneDNN's Winograd kernels
 * where the CPU has them (AVX-512), those of 128+ on our own F(4x4, 3x3)
 * on AVX2. Against the direct convolution on the same backend and against
 * the double reference: the transforms cost a few bits (measured
 * 1.7e-6..2.1e-6 at SD's sizes; gate F32_GATE, 1e-5). Then
 * the weights change under it as LoRA changes them: through the stored
 * bytes (merge and exact undo) and through set_weights; the Winograd copy
 * must follow both. */
static void conv_winograd(void **state)
{
    (void)state;
    sdw_backend *be = backend(SDW_PRECISION_F32);
    bool wino = sdw_backend_set_winograd(be, true);
    printf("  %s%s\n", wino ? "Winograd kernels here: " : "no Winograd kernels here: every f32 conv runs direct",
           wino ? sdw_conv_wino_kernel() : ", compared with itself");
    static const conv_case cases[] = {
        { 2, 16, 16, 256, 256, 3, 1, 1, 1, 1, 1, true },
        { 1, 13, 11, 320, 256, 3, 1, 1, 1, 1, 1, false },  /* odd sizes: partial tiles */
        { 1, 3, 3, 256, 512, 3, 1, 1, 1, 1, 1, true },     /* smaller than one tile */
        { 2, 16, 16, 64, 256, 3, 1, 1, 1, 1, 1, true },    /* 64 channels in: direct */
        { 1, 50, 38, 128, 144, 3, 1, 1, 1, 1, 1, true },   /* 128: AVX2 only; blocks of tiles, a ragged last */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const conv_case *c = &cases[i];
        size_t nw = (size_t)c->cout * c->cin * 9, nx = (size_t)c->N * c->H * c->W * c->cin;
        size_t ny = (size_t)c->N * c->H * c->W * c->cout;
        float *w = frand(nw, 71, 1.0f / sqrtf(c->cin * 9.0f)), *b = frand((size_t)c->cout, 72, 0.5f);
        float *x = frand(nx, 73, 1.0f), *base = frand(ny, 74, 1.0f);
        float *r = falloc(ny), *ours = falloc(ny), *theirs = falloc(ny);
        ref_conv(c, x, w, c->bias ? b : NULL, r, c->H, c->W);
        sdw_conv2d *conv = NULL;
        assert_int_equal(sdw_conv2d_create(be, c->cin, c->cout, 3, 3, 1, 1, w, c->bias ? b : NULL, &conv), SDW_OK);
        size_t direct_bytes = sdw_conv2d_bytes(conv);
        for (int mode = 0; mode < CONV_MODES; mode++) {
            for (int side = 0; side < 2; side++) {
                float *y = side ? theirs : ours;
                sdw_backend_set_winograd(be, side == 0);
                memcpy(y, base, ny * sizeof *y);
                run_conv(be, conv, c, mode, x, x, y); /* in f32 the activation is x itself */
            }
            char what[128];
            snprintf(what, sizeof what, "conv winograd vs direct N%d %dx%d %d->%d %s%s", c->N, c->H, c->W, c->cin,
                     c->cout, conv_mode_name[mode], c->bias ? " +bias" : "");
            test_check_close(what, ours, theirs, ny, F32_GATE);
            if (mode != CONV_ADD) {
                snprintf(what, sizeof what, "conv winograd vs reference N%d %dx%d %d->%d %s", c->N, c->H, c->W,
                         c->cin, c->cout, conv_mode_name[mode]);
                test_check_close(what, ours, r, ny, F32_GATE);
            }
        }
        bool took = sdw_conv2d_bytes(conv) > direct_bytes;
        printf("  N%d %dx%d %d->%d: %s (weights held %zu -> %zu bytes)\n", c->N, c->H, c->W, c->cin, c->cout,
               took ? "winograd" : "direct", direct_bytes, sdw_conv2d_bytes(conv));
        if (i == 3 || !wino) assert_false(took);
        else if (i == 0) assert_true(took);

        /* The weights change under it: doubled through the stored bytes,
         * then back through set_weights. */
        sdw_backend_set_winograd(be, true);
        float *w2 = falloc(nw);
        for (size_t j = 0; j < nw; j++) w2[j] = 2.0f * w[j];
        sdw_conv2d *twice = NULL;
        assert_int_equal(sdw_conv2d_create(be, c->cin, c->cout, 3, 3, 1, 1, w2, c->bias ? b : NULL, &twice), SDW_OK);
        assert_int_equal(sdw_conv2d_forward(be, twice, x, c->N, c->H, c->W, theirs, NULL, NULL), SDW_OK);
        size_t nb_src, nb_dst;
        void *src = sdw_conv2d_stored(twice, &nb_src), *dst = sdw_conv2d_stored(conv, &nb_dst);
        assert_int_equal(nb_src, nb_dst);
        memcpy(dst, src, nb_dst);
        assert_int_equal(sdw_conv2d_forward(be, conv, x, c->N, c->H, c->W, ours, NULL, NULL), SDW_OK);
        assert_memory_equal(ours, theirs, ny * sizeof *ours);
        assert_int_equal(sdw_conv2d_set_weights(be, conv, w), SDW_OK);
        assert_int_equal(sdw_conv2d_forward(be, conv, x, c->N, c->H, c->W, ours, NULL, NULL), SDW_OK);
        test_check_close("conv winograd after set_weights", ours, r, ny, F32_GATE);
        sdw_conv2d_free(twice);
        sdw_conv2d_free(conv);
        free(w), free(w2), free(b), free(x), free(r), free(base), free(ours), free(theirs);
    }
    sdw_backend_free(be);
}

/* Images whose Winograd working set passes the budget run in bands of rows,
 * each with its halo: the same result as one whole-image call. The budget
 * is shrunk so that a 2 x 48 x 20 image splits into 3 and 6 bands, and
 * then leaves no band of 8 rows that fits (the direct convolution runs);
 * the log shows the band kernels made. */
static void conv_winograd_bands(void **state)
{
    (void)state;
    sdw_backend *be = backend(SDW_PRECISION_F32);
    if (!sdw_backend_set_winograd(be, true) || strstr(sdw_conv_wino_kernel(), "avx2")) {
        printf("  %s\n", sdw_backend_set_winograd(be, true) ? "our AVX2 Winograd runs in blocks of tiles: no bands"
                                                           : "no Winograd kernels here: nothing to split");
        sdw_backend_free(be);
        return;
    }
    const conv_case c = { 2, 48, 20, 256, 256, 3, 1, 1, 1, 1, 1, true };
    size_t nw = (size_t)c.cout * c.cin * 9, nx = (size_t)c.N * c.H * c.W * c.cin, ny = (size_t)c.N * c.H * c.W * c.cout;
    float *w = frand(nw, 81, 1.0f / sqrtf(c.cin * 9.0f)), *b = frand((size_t)c.cout, 82, 0.5f);
    float *x = frand(nx, 83, 1.0f), *base = frand(ny, 84, 1.0f);
    float *r = falloc(ny), *whole = falloc(ny), *banded = falloc(ny);
    ref_conv(&c, x, w, b, r, c.H, c.W);
    sdw_conv2d *conv = NULL;
    assert_int_equal(sdw_conv2d_create(be, c.cin, c.cout, 3, 3, 1, 1, w, b, &conv), SDW_OK);
    int n_log = 0;
    sdw_set_log(print_log, &n_log, SDW_LOG_DEBUG);
    static const size_t budgets[] = { 0, 12u << 20, 6u << 20, 1u << 20 }; /* whole, 3 and 6 bands, direct */
    float *whole_add = falloc(ny);
    for (size_t i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
        sdw_backend_set_winograd_budget(be, budgets[i]);
        for (int add = 0; add < 2; add++) {
            float *y = i == 0 ? (add ? whole_add : whole) : banded;
            memcpy(y, base, ny * sizeof *y);
            run_conv(be, conv, &c, add ? CONV_ADD : CONV_FORWARD, x, NULL, y);
            char what[96];
            if (i == 0) {
                if (!add) test_check_close("conv winograd whole image vs reference", y, r, ny, F32_GATE);
                continue;
            }
            snprintf(what, sizeof what, "conv %s, budget %zu KiB%s", i == 3 ? "direct, no band fits" : "winograd in bands",
                     budgets[i] >> 10, add ? ", add" : "");
            /* oneDNN may block the weights differently for a band, which
             * changes the summation order: the Winograd gate again. */
            test_check_close(what, banded, add ? whole_add : whole, ny, F32_GATE);
        }
    }
    free(whole_add);
    sdw_set_log(NULL, NULL, SDW_LOG_WARN);
    assert_true(n_log >= 3); /* the whole image, then band kernels (first, middle, last) */
    sdw_conv2d_free(conv);
    sdw_backend_free(be);
    free(w), free(b), free(x), free(base), free(r), free(whole), free(banded);
}

/* sdw_conv2d_forward_up2x (four 2x2 phase convolutions) against the 3x3
 * convolution of the upsampled image; its phase weights are a cache that a
 * change of the layer's weights drops. With the phases off, or for an f32
 * layer that takes Winograd, it is that convolution, bit for bit. */
static void conv_upsample_phases(void **state)
{
    (void)state;
    static const struct { int N, H, W, cin, cout; } cases[] = {
        { 2, 5, 7, 64, 96 },    /* odd sizes, oneDNN */
        { 1, 8, 8, 320, 320 },  /* small image, wide layer: conv_amx in bf16 */
        { 1, 3, 3, 256, 256 },  /* Winograd-sized in f32: the 2x2 phases run direct */
    };
    for (int v = 0; v < 2; v++) {
        sdw_precision prec = v ? SDW_PRECISION_BF16 : SDW_PRECISION_F32;
        sdw_backend *be = backend(prec);
        if (!be) continue;
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            const int N = cases[k].N, H = cases[k].H, W = cases[k].W, ci = cases[k].cin, co = cases[k].cout;
            const size_t nw = (size_t)co * ci * 9, nout = (size_t)N * 4 * H * W * co;
            float *w = frand(nw, 61, 1.0f / sqrtf(ci * 9.0f)), *w2 = frand(nw, 62, 1.0f / sqrtf(ci * 9.0f));
            float *b = frand((size_t)co, 63, 0.5f), *x = frand((size_t)N * H * W * ci, 64, 1.0f);
            float *up = falloc((size_t)N * 4 * H * W * ci), *ref = falloc(nout), *got = falloc(nout), *again = falloc(nout);
            sdw_conv2d *c = NULL, *fresh = NULL;
            assert_int_equal(sdw_conv2d_create(be, ci, co, 3, 3, 1, 1, w, b, &c), SDW_OK);
            const size_t held_start = sdw_backend_derived_bytes(be), bytes_start = sdw_conv2d_bytes(c);
            sdw_upsample_nearest2x(x, N, H, W, ci, up);
            assert_int_equal(sdw_conv2d_forward(be, c, up, N, 2 * H, 2 * W, ref, NULL, NULL), SDW_OK);
            /* (after the reference, which may have made the layer's Winograd copy) */
            const size_t held0 = sdw_backend_derived_bytes(be), bytes0 = sdw_conv2d_bytes(c);
            sdw_backend_set_upsample_phases(be, false);
            assert_int_equal(sdw_conv2d_forward_up2x(be, c, x, N, H, W, got), SDW_OK);
            assert_memory_equal(got, ref, sizeof(float) * nout);
            assert_true(sdw_conv2d_bytes(c) == bytes0);
            sdw_backend_set_upsample_phases(be, true);
            const bool wino = !v && ci >= 256 && co >= 256 && sdw_backend_set_winograd(be, true);
            if (sdw_conv2d_forward_up2x(be, c, x, N, H, W, got) != SDW_OK) fail_msg("%s", sdw_last_error());
            if (wino) { /* keeps its Winograd 3x3; without it, the phases */
                assert_memory_equal(got, ref, sizeof(float) * nout);
                assert_true(sdw_conv2d_bytes(c) == bytes0);
                sdw_backend_set_winograd(be, false);
                assert_int_equal(sdw_conv2d_forward_up2x(be, c, x, N, H, W, got), SDW_OK);
                printf("  f32 %d->%d takes Winograd: the 3x3 kept, bit for bit; phases with Winograd off\n", ci, co);
            }
            char what[96];
            snprintf(what, sizeof what, "conv up2x %s N%d %dx%d %d->%d", sdw_precision_name(prec), N, H, W, ci, co);
            test_check_close(what, got, ref, nout, v ? BF16_GATE : F32_GATE);
            /* The block form (two buffers of the upsampled size): the same
             * result, in *x whichever way it ran. */
            {
                const size_t big = (size_t)N * 4 * H * W * (ci > co ? ci : co);
                float *bx = falloc(big), *by = falloc(big);
                memcpy(bx, x, sizeof(float) * (size_t)N * H * W * ci);
                assert_int_equal(sdw_conv2d_upsample_block(be, c, &bx, &by, N, H, W), SDW_OK);
                assert_memory_equal(bx, got, sizeof(float) * nout);
                free(bx), free(by);
            }
            /* The phases (16/9 of the 3x3 weights) are counted as held. */
            const size_t extra = sdw_conv2d_bytes(c) - bytes0;
            assert_true(extra > bytes_start && sdw_backend_derived_bytes(be) == held0 + extra);
            /* New weights drop every copy; the next call equals a layer made with them. */
            assert_int_equal(sdw_conv2d_set_weights(be, c, w2), SDW_OK);
            assert_true(sdw_backend_derived_bytes(be) == held_start && sdw_conv2d_bytes(c) == bytes_start);
            assert_int_equal(sdw_conv2d_forward_up2x(be, c, x, N, H, W, got), SDW_OK);
            assert_int_equal(sdw_conv2d_create(be, ci, co, 3, 3, 1, 1, w2, b, &fresh), SDW_OK);
            assert_int_equal(sdw_conv2d_forward_up2x(be, fresh, x, N, H, W, again), SDW_OK);
            assert_memory_equal(got, again, sizeof(float) * nout);
            /* In bands of rows (2 and 3 rows of each image, and the rest):
             * the same values, as each band reads its neighbours' rows. */
            for (int rows = 2; rows <= 3; rows++) {
                sdw_backend_set_up2x_band_bytes(be, sizeof(float) * (size_t)rows * W * co);
                assert_int_equal(sdw_conv2d_forward_up2x(be, c, x, N, H, W, again), SDW_OK);
                snprintf(what, sizeof what, "  bands of %d rows", rows);
                test_check_close(what, again, got, nout, 1e-6);
            }
            sdw_backend_set_up2x_band_bytes(be, 0);
            size_t stored_bytes; /* handing out the stored bytes (LoRA) drops them too */
            assert_non_null(sdw_conv2d_stored(c, &stored_bytes));
            assert_true(sdw_backend_derived_bytes(be) == held_start + sdw_conv2d_bytes(fresh) - bytes_start);
            sdw_conv2d_free(c), sdw_conv2d_free(fresh);
            assert_true(sdw_backend_derived_bytes(be) == held_start);
            if (wino) sdw_backend_set_winograd(be, true);
            free(w), free(w2), free(b), free(x), free(up), free(ref), free(got), free(again);
        }
        /* Only a 3x3 layer of stride 1 and padding 1 upsamples this way. */
        float *w = frand(16 * 16, 65, 0.1f), *x = frand(16 * 4, 66, 1.0f), *y = falloc(16 * 16);
        sdw_conv2d *c = NULL;
        assert_int_equal(sdw_conv2d_create(be, 16, 16, 1, 1, 1, 0, w, NULL, &c), SDW_OK);
        assert_int_equal(sdw_conv2d_forward_up2x(be, c, x, 1, 2, 2, y), SDW_ERR_INVALID_ARG);
        printf("  1x1 layer: %s\n", sdw_last_error());
        sdw_conv2d_free(c);
        free(w), free(x), free(y);
        sdw_backend_free(be);
    }
}

static void conv_large_image(void **state)
{
    (void)state;
    const int N = 1, H = 256, W = 256, C = 64;
    float *w = frand((size_t)C * C * 9, 31, 1.0f / sqrtf(C * 9.0f)), *b = frand(C, 32, 0.5f);
    float *x = frand((size_t)N * H * W * C, 33, 1.0f);
    float *y32 = falloc((size_t)N * H * W * C), *y16 = falloc((size_t)N * H * W * C);
    sdw_backend *b32 = backend(SDW_PRECISION_F32), *b16 = backend(SDW_PRECISION_BF16);
    sdw_conv2d *c32 = NULL, *c16 = NULL;
    int n_log = 0;
    sdw_set_log(print_log, &n_log, SDW_LOG_DEBUG); /* shows the oneDNN kernels chosen */
    if (sdw_conv2d_create(b32, C, C, 3, 3, 1, 1, w, b, &c32) != SDW_OK) fail_msg("%s", sdw_last_error());
    if (sdw_conv2d_forward(b32, c32, x, N, H, W, y32, NULL, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
    if (b16) {
        sdw_backend_set_own_conv(b16, false); /* this test is about oneDNN's layouts */
        assert_int_equal(sdw_conv2d_create(b16, C, C, 3, 3, 1, 1, w, b, &c16), SDW_OK);
        for (int hw = 256; hw >= 32; hw /= 8) { /* 256 then 32: both layouts from one layer */
            if (sdw_conv2d_forward(b16, c16, x, N, hw, hw, y16, NULL, NULL) != SDW_OK)
                fail_msg("%s", sdw_last_error());
        }
        if (sdw_conv2d_forward(b16, c16, x, N, H, W, y16, NULL, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
        test_check_close("conv bf16 256x256 64->64 vs f32", y16, y32, (size_t)N * H * W * C, BF16_GATE);
    }
    sdw_set_log(NULL, NULL, SDW_LOG_INFO);
    assert_true(n_log >= (b16 ? 3 : 1)); /* one primitive per shape, created once */
    sdw_conv2d_free(c32), sdw_conv2d_free(c16);
    sdw_backend_free(b32), sdw_backend_free(b16);
    free(w), free(b), free(x), free(y32), free(y16);
}

static void rejects_bad_shapes(void **state)
{
    (void)state;
    sdw_backend *be = backend(SDW_PRECISION_F32);
    float w[9] = { 0 };
    sdw_conv2d *c = NULL;
    sdw_linear *l = NULL;
    assert_int_equal(sdw_conv2d_create(be, 1, 1, 3, 3, 0, 1, w, NULL, &c), SDW_ERR_INVALID_ARG);
    assert_null(c);
    assert_int_equal(sdw_linear_create(be, 0, 3, w, NULL, &l), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_conv2d_create(be, 1, 1, 3, 3, 1, 0, w, NULL, &c), SDW_OK);
    float x[9] = { 0 }, y[9];
    assert_int_equal(sdw_conv2d_forward(be, c, x, 1, 2, 2, y, NULL, NULL), SDW_ERR_INVALID_ARG);
    assert_true(strlen(sdw_last_error()) > 0);
    /* The ops parallelise themselves; from inside a parallel region they refuse. */
    sdw_status inside = SDW_OK;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        inside = sdw_conv2d_forward(be, c, x, 1, 3, 3, y, NULL, NULL);
    }
    assert_int_equal(inside, SDW_ERR_INVALID_ARG);
    sdw_conv2d_free(c);
    sdw_backend_free(be);
}

/* The vector conversion (AVX512-BF16 or C, whichever this CPU runs) against
 * core/half.h's scalar one, bit for bit: odd lengths, ties, NaN, inf. */
static void bf16_conversion(void **state)
{
    (void)state;
    const size_t n = 1003;
    float *x = frand(n, 7, 100.0f);
    uint16_t *got = malloc(n * sizeof *got);
    assert_non_null(got);
    uint32_t specials[] = { 0x3f808000u, 0x3f818000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x80000000u, 0x7f7fffffu };
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) memcpy(&x[i], &specials[i], sizeof(float));
    for (size_t len = 0; len <= n; len += len < 40 ? 1 : 321) {
        memset(got, 0xff, n * sizeof *got);
        sdw_cvt_bf16_span(got, x, len);
        for (size_t i = 0; i < len; i++) assert_int_equal(got[i], sdw_f32_to_bf16(x[i]));
        if (len < n) assert_int_equal(got[len], 0xffff); /* nothing past the end */
    }
    free(x), free(got);
}

/* ---- memory-bound ops ---- */

static void ref_group_norm(const float *x, int N, int HW, int C, int G, const float *g, const float *b, float eps,
                           float *y)
{
    int cpg = C / G;
    for (int n = 0; n < N; n++)
        for (int gr = 0; gr < G; gr++) {
            double s = 0, q = 0, cnt = (double)HW * cpg;
            for (int r = 0; r < HW; r++)
                for (int c = gr * cpg; c < (gr + 1) * cpg; c++) s += x[((size_t)n * HW + r) * C + c];
            double mean = s / cnt;
            for (int r = 0; r < HW; r++)
                for (int c = gr * cpg; c < (gr + 1) * cpg; c++) {
                    double d = x[((size_t)n * HW + r) * C + c] - mean;
                    q += d * d;
                }
            double rstd = 1.0 / sqrt(q / cnt + eps);
            for (int r = 0; r < HW; r++)
                for (int c = gr * cpg; c < (gr + 1) * cpg; c++) {
                    size_t i = ((size_t)n * HW + r) * C + c;
                    y[i] = (float)((x[i] - mean) * rstd * g[c] + b[c]);
                }
        }
}

static void group_norm(void **state)
{
    (void)state;
    /* N, HW, C, groups, offset (a large mean tests the variance's accuracy) */
    static const int cases[][5] = { { 2, 37, 40, 8, 0 }, { 1, 64, 1280, 32, 0 }, { 2, 300, 640, 32, 20 },
                                    { 1, 5, 3, 1, 0 },   { 1, 9, 600, 300, 3 }, { 1, 4096, 13, 13, 0 } };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int N = cases[t][0], HW = cases[t][1], C = cases[t][2], G = cases[t][3];
        size_t n = (size_t)N * HW * C;
        float *x = frand(n, 41 + (uint32_t)t, 1.0f), *g = frand((size_t)C, 42, 1.0f), *b = frand((size_t)C, 43, 1.0f);
        for (size_t i = 0; i < n; i++) x[i] += (float)cases[t][4];
        float *y = falloc(n), *r = falloc(n), *r2 = falloc(n);
        ref_group_norm(x, N, HW, C, G, g, b, 1e-5f, r);
        sdw_group_norm(x, N, HW, C, G, g, b, 1e-5f, y);
        char what[96];
        snprintf(what, sizeof what, "group_norm N%d HW%d C%d G%d +%d", N, HW, C, G, cases[t][4]);
        test_check_close(what, y, r, n, F32_GATE);
        sdw_group_norm_silu(x, N, HW, C, G, g, b, 1e-5f, y);
        for (size_t i = 0; i < n; i++) r2[i] = (float)(r[i] / (1.0 + exp(-(double)r[i])));
        test_check_close("group_norm_silu", y, r2, n, F32_GATE);
        sdw_group_norm(x, N, HW, C, G, g, b, 1e-5f, x); /* in place */
        test_check_close("group_norm in place", x, r, n, F32_GATE);
        free(x), free(g), free(b), free(y), free(r), free(r2);
    }
}

static void norms_without_affine(void **state)
{
    (void)state;
    const int HW = 50, C = 24, G = 4;
    size_t n = (size_t)HW * C;
    float *x = frand(n, 57, 2.0f), *one = falloc((size_t)C), *zero = falloc((size_t)C);
    float *y = falloc(n), *r = falloc(n);
    for (int c = 0; c < C; c++) one[c] = 1.0f, zero[c] = 0.0f;
    sdw_group_norm(x, 1, HW, C, G, one, zero, 1e-6f, r);
    sdw_group_norm(x, 1, HW, C, G, NULL, NULL, 1e-6f, y);
    assert_memory_equal(y, r, n * sizeof *y);
    sdw_layer_norm(x, HW, C, one, zero, 1e-6f, r);
    sdw_layer_norm(x, HW, C, NULL, NULL, 1e-6f, y);
    assert_memory_equal(y, r, n * sizeof *y);
    free(x), free(one), free(zero), free(y), free(r);
}

static void layer_norm(void **state)
{
    (void)state;
    static const int cases[][2] = { { 77, 768 }, { 3, 13 }, { 1, 1 }, { 4096, 320 } };
    for (size_t t = 0; t < 4; t++) {
        int rows = cases[t][0], C = cases[t][1];
        size_t n = (size_t)rows * C;
        float *x = frand(n, 51, 2.0f), *g = frand((size_t)C, 52, 1.0f), *b = frand((size_t)C, 53, 1.0f);
        float *y = falloc(n), *r = falloc(n);
        for (int i = 0; i < rows; i++) {
            double s = 0, q = 0;
            for (int c = 0; c < C; c++) s += x[(size_t)i * C + c];
            double m = s / C;
            for (int c = 0; c < C; c++) q += (x[(size_t)i * C + c] - m) * (x[(size_t)i * C + c] - m);
            for (int c = 0; c < C; c++)
                r[(size_t)i * C + c] = (float)((x[(size_t)i * C + c] - m) / sqrt(q / C + 1e-5) * g[c] + b[c]);
        }
        sdw_layer_norm(x, rows, C, g, b, 1e-5f, y);
        char what[64];
        snprintf(what, sizeof what, "layer_norm %dx%d", rows, C);
        test_check_close(what, y, r, n, F32_GATE);
        sdw_layer_norm(x, rows, C, g, b, 1e-5f, x);
        test_check_close("layer_norm in place", x, r, n, F32_GATE);
        free(x), free(g), free(b), free(y), free(r);
    }
}

static void softmax_rows(void **state)
{
    (void)state;
    static const int cases[][2] = { { 10, 77 }, { 3, 1 }, { 64, 4096 }, { 5, 19 } };
    for (size_t t = 0; t < 4; t++) {
        int rows = cases[t][0], n = cases[t][1];
        float *x = frand((size_t)rows * n, 61, 30.0f), *r = falloc((size_t)rows * n);
        for (int i = 0; i < rows; i++) {
            const float *xr = x + (size_t)i * n;
            double m = -INFINITY, s = 0;
            for (int j = 0; j < n; j++) m = xr[j] > m ? xr[j] : m;
            for (int j = 0; j < n; j++) s += exp(xr[j] - m);
            for (int j = 0; j < n; j++) r[(size_t)i * n + j] = (float)(exp(xr[j] - m) / s);
        }
        sdw_softmax_rows(x, rows, n);
        char what[64];
        snprintf(what, sizeof what, "softmax %dx%d", rows, n);
        test_check_close(what, x, r, (size_t)rows * n, F32_GATE);
        free(x), free(r);
    }
}

static void activations(void **state)
{
    (void)state;
    const size_t n = 100003;
    float *x = frand(n, 71, 12.0f), *y = falloc(n), *r = falloc(n);
    x[0] = 0, x[1] = -100, x[2] = 100, x[3] = -88, x[4] = 1e-30f;
    for (int op = 0; op < 3; op++) {
        memcpy(y, x, n * sizeof *y);
        for (size_t i = 0; i < n; i++) {
            double v = x[i];
            r[i] = (float)(op == 0 ? 0.5 * v * (1 + erf(v / sqrt(2.0))) : op == 1 ? v / (1 + exp(-1.702 * v))
                                                                                  : v / (1 + exp(-v)));
        }
        const char *name = op == 0 ? "gelu (erf)" : op == 1 ? "quick_gelu" : "silu";
        if (op == 0) sdw_gelu(y, n);
        else if (op == 1) sdw_quick_gelu(y, n);
        else sdw_silu(y, n);
        test_check_close(name, y, r, n, F32_GATE);
        assert_true(test_max_abs(y, r, n) < 1e-5); /* also pointwise, large |x| included */
    }
    /* GEGLU: rows of [value | gate]; an odd width leaves a ragged end. */
    const int rows = 97, inner = 1031;
    float *in = frand((size_t)rows * 2 * inner, 72, 12.0f), *g = falloc((size_t)rows * inner);
    float *gr = falloc((size_t)rows * inner);
    in[inner] = -100, in[inner + 1] = 100, in[inner + 2] = 0, in[inner + 3] = 1e-30f;
    for (int rw = 0; rw < rows; rw++)
        for (int i = 0; i < inner; i++) {
            double v = in[(size_t)rw * 2 * inner + i], gt = in[(size_t)rw * 2 * inner + inner + i];
            gr[(size_t)rw * inner + i] = (float)(v * 0.5 * gt * (1 + erf(gt / sqrt(2.0))));
        }
    sdw_geglu(in, rows, inner, g);
    test_check_close("geglu", g, gr, (size_t)rows * inner, F32_GATE);
    assert_true(test_max_abs(g, gr, (size_t)rows * inner) < 1e-4); /* values up to 72 */
    /* A NaN gate stays NaN, an infinite one infinite. */
    float e[4] = { 1, 1, NAN, INFINITY }, eo[2];
    sdw_geglu(e, 1, 2, eo);
    assert_true(isnan(eo[0]) && isinf(eo[1]) && eo[1] > 0);
    free(in), free(g), free(gr);
    float s[3] = { 1, 2, 3 };
    sdw_silu(s, 3); /* below the parallel threshold */
    assert_true(fabsf(s[2] - 3.0f / (1.0f + expf(-3.0f))) < 1e-6f);
    free(x), free(y), free(r);
}

static void elementwise(void **state)
{
    (void)state;
    const int rows = 1000, C = 77;
    size_t n = (size_t)rows * C;
    float *a = frand(n, 81, 1.0f), *b = frand(n, 82, 1.0f), *y = falloc(n), *bias = frand((size_t)C, 83, 1.0f);
    sdw_add(y, a, b, n);
    for (size_t i = 0; i < n; i++) assert_true(y[i] == a[i] + b[i]);
    sdw_mul(y, a, b, n);
    for (size_t i = 0; i < n; i++) assert_true(y[i] == a[i] * b[i]);
    memcpy(y, a, n * sizeof *y);
    sdw_add(y, y, b, n); /* y may alias an input */
    for (size_t i = 0; i < n; i++) assert_true(y[i] == a[i] + b[i]);
    memcpy(y, a, n * sizeof *y);
    sdw_add_bias(y, rows, C, bias);
    for (size_t i = 0; i < n; i++) assert_true(y[i] == a[i] + bias[i % C]);
    free(a), free(b), free(y), free(bias);
}

static void upsample_concat(void **state)
{
    (void)state;
    const int N = 2, H = 5, W = 3, C = 13, Cb = 40;
    size_t n = (size_t)N * H * W * C;
    float *x = frand(n, 91, 1.0f), *y = falloc(4 * n), *b = frand((size_t)N * H * W * Cb, 92, 1.0f);
    sdw_upsample_nearest2x(x, N, H, W, C, y);
    for (int i = 0; i < N; i++)
        for (int h = 0; h < 2 * H; h++)
            for (int w = 0; w < 2 * W; w++)
                for (int c = 0; c < C; c++)
                    assert_true(y[(((size_t)i * 2 * H + h) * 2 * W + w) * C + c] ==
                                x[(((size_t)i * H + h / 2) * W + w / 2) * C + c]);
    int64_t rows = (int64_t)N * H * W;
    float *cat = falloc((size_t)rows * (C + Cb));
    sdw_concat_channels(x, C, b, Cb, rows, cat);
    for (int64_t r = 0; r < rows; r++) {
        assert_memory_equal(cat + r * (C + Cb), x + r * C, sizeof(float) * C);
        assert_memory_equal(cat + r * (C + Cb) + C, b + r * Cb, sizeof(float) * Cb);
    }
    free(x), free(y), free(b), free(cat);
}

/* ---- producers writing the next matmul's input (sdw_*_act) ---- */

/* The activation equals the f32 result stored in the compute type, bit for
 * bit: bf16 rounding of the f32 op in BF16, the f32 op itself in F32. */
static void expect_act(sdw_precision prec, const char *what, const void *act, const float *f32, size_t n)
{
    if (prec == SDW_PRECISION_BF16) {
        uint16_t *want = malloc(n * sizeof *want);
        assert_non_null(want);
        sdw_cvt_bf16_span(want, f32, n);
        if (memcmp(act, want, n * sizeof *want) != 0) fail_msg("%s bf16: activation differs from the rounded f32 op", what);
        free(want);
    } else if (memcmp(act, f32, n * sizeof *f32) != 0) {
        fail_msg("%s f32: activation differs from the f32 op", what);
    }
    printf("  %-28s %s: activation equals the f32 op (bitwise)\n", what, sdw_precision_name(prec));
}

/* x as the backend stores it in an activation, widened back to f32: the
 * values an op reading that activation sees. */
static float *as_act(sdw_backend *be, const float *x, size_t n, void *act)
{
    sdw_to_act(be, x, n, act);
    float *y = falloc(n);
    if (sdw_backend_precision(be) != SDW_PRECISION_BF16) memcpy(y, act, n * sizeof *y);
    else for (size_t i = 0; i < n; i++) y[i] = sdw_bf16_to_f32(((const uint16_t *)act)[i]);
    return y;
}

static void act_producers(void **state)
{
    (void)state;
    for (int v = 0; v < 3; v++) { /* f32, bf16 on oneDNN, bf16 with the AMX attention kernel */
        sdw_precision prec = v ? SDW_PRECISION_BF16 : SDW_PRECISION_F32;
        sdw_backend *be = backend(prec);
        if (!be) continue;
        if (sdw_backend_set_own_attention(be, v == 2) != (v == 2)) {
            sdw_backend_free(be);
            continue;
        }
        const int N = 2, HW = 37, C = 64, rows = N * HW, inner = 96, heads = 2, D = 32, Tk = 45;
        float *x = frand((size_t)rows * 2 * inner, 51, 2.0f), *g = frand((size_t)C, 52, 1.0f), *b = frand((size_t)C, 53, 0.5f);
        float *y = falloc((size_t)rows * 2 * inner);
        void *act = malloc((size_t)rows * 2 * inner * sizeof(float));
        assert_non_null(act);
        if (v < 2) {
            sdw_layer_norm(x, rows, C, g, b, 1e-5f, y);
            sdw_layer_norm_act(be, x, rows, C, g, b, 1e-5f, act);
            expect_act(prec, "layer_norm_act", act, y, (size_t)rows * C);
            sdw_group_norm(x, N, HW, C, 8, g, b, 1e-6f, y);
            sdw_group_norm_act(be, x, N, HW, C, 8, g, b, 1e-6f, act);
            expect_act(prec, "group_norm_act", act, y, (size_t)rows * C);
            /* GEGLU reads an activation (the matmul's before it) too. */
            void *act_in = malloc((size_t)rows * 2 * inner * sizeof(float));
            assert_non_null(act_in);
            float *xr = as_act(be, x, (size_t)rows * 2 * inner, act_in);
            sdw_geglu(xr, rows, inner, y);
            sdw_geglu_act(be, act_in, rows, inner, act);
            expect_act(prec, "geglu_act", act, y, (size_t)rows * inner);
            /* GELU (tanh) in place on one, as the transformers' MLPs take it. */
            memcpy(y, xr, (size_t)rows * 2 * inner * sizeof(float));
            sdw_gelu_tanh(y, (size_t)rows * 2 * inner);
            sdw_gelu_tanh_act(be, act_in, (size_t)rows * 2 * inner);
            expect_act(prec, "gelu_tanh_act", act_in, y, (size_t)rows * 2 * inner);
            free(act_in), free(xr);
            /* With a per-(n, c) shift folded in: the f32 op on x + shift. */
            {
                float *t = frand((size_t)N * C, 55, 3.0f), *xs = falloc((size_t)rows * C);
                memcpy(xs, x, sizeof(float) * (size_t)rows * C);
                for (int n = 0; n < N; n++) sdw_add_bias(xs + (size_t)n * HW * C, HW, C, t + (size_t)n * C);
                sdw_group_norm_silu(xs, N, HW, C, 8, g, b, 1e-5f, y);
                sdw_group_norm_silu_shift_act(be, x, t, N, HW, C, 8, g, b, 1e-5f, act);
                float *got = as_act(be, y, (size_t)rows * C, xs); /* y rounded as an activation would be */
                float *mine = falloc((size_t)rows * C);
                if (prec == SDW_PRECISION_BF16)
                    for (size_t i = 0; i < (size_t)rows * C; i++) mine[i] = sdw_bf16_to_f32(((uint16_t *)act)[i]);
                else memcpy(mine, act, sizeof(float) * (size_t)rows * C);
                double e = test_rel_l2(mine, got, (size_t)rows * C), gate = prec == SDW_PRECISION_BF16 ? 4e-3 : 1e-6;
                printf("  %-28s %s: rel_l2 %.3g against the op on x + shift (gate %g)\n", "group_norm_silu_shift_act",
                       sdw_precision_name(prec), e, gate);
                assert_true(e < gate);
                free(t), free(xs), free(got), free(mine);
            }
            sdw_upsample_nearest2x(x, N, 3, 5, 40, y); /* 2 x 3 x 5 x 40 in, 4x that out */
            sdw_upsample_nearest2x_act(be, x, N, 3, 5, 40, act);
            expect_act(prec, "upsample_nearest2x_act", act, y, (size_t)N * 6 * 10 * 40);

            /* The matmul of an activation equals the matmul of its f32 source. */
            float *w = frand((size_t)C * C, 54, 0.1f), *y2 = falloc((size_t)rows * C);
            sdw_linear *l = NULL;
            assert_int_equal(sdw_linear_create(be, C, C, w, b, &l), SDW_OK);
            sdw_layer_norm(x, rows, C, g, b, 1e-5f, y);
            sdw_layer_norm_act(be, x, rows, C, g, b, 1e-5f, act);
            assert_int_equal(sdw_linear_forward(be, l, y, rows, y2), SDW_OK);
            float *y3 = falloc((size_t)rows * C);
            assert_int_equal(sdw_linear_forward_act(be, l, act, rows, y3, false), SDW_OK);
            assert_memory_equal(y2, y3, sizeof(float) * (size_t)rows * C);
            memcpy(y3, x, sizeof(float) * (size_t)rows * C);
            memcpy(y2, x, sizeof(float) * (size_t)rows * C);
            assert_int_equal(sdw_linear_forward_add(be, l, y, rows, y2), SDW_OK);
            assert_int_equal(sdw_linear_forward_act(be, l, act, rows, y3, true), SDW_OK);
            assert_memory_equal(y2, y3, sizeof(float) * (size_t)rows * C);
            printf("  %-28s %s: equals the linear of the f32 input, and with accumulate\n", "linear_forward_act",
                   sdw_precision_name(prec));
            /* Written as an activation: the f32 result, rounded. */
            assert_int_equal(sdw_linear_forward_act(be, l, act, rows, y3, false), SDW_OK);
            void *out_act = malloc((size_t)rows * C * sizeof(float));
            assert_non_null(out_act);
            assert_int_equal(sdw_linear_forward_to_act(be, l, act, rows, out_act), SDW_OK);
            expect_act(prec, "linear_forward_to_act", out_act, y3, (size_t)rows * C);
            free(out_act);
            sdw_linear_free(l);
            free(w), free(y2), free(y3);
        }
        /* Attention on activations, on oneDNN (v = 1) and on the AMX kernel
         * (v = 2), against the f32 entry given the same values: q, k and v
         * are rounded to bf16 there too, so the results match bit for bit. */
        const size_t nx = (size_t)rows * 2 * inner;
        void *act_in = malloc(nx * sizeof(float));
        assert_non_null(act_in);
        const float *xr = as_act(be, x, nx, act_in);
        const float *q = xr, *k = xr + rows * heads * D;
        const size_t k_at = (size_t)rows * heads * D;
        assert_int_equal(sdw_attention(be, q, heads * D, k, k + 7, heads * D + 7, N, HW, Tk / 2, heads, D, false, y),
                         SDW_OK);
        const void *qa = act_in, *ka = (const char *)act_in + sdw_act_bytes(be, k_at);
        const void *va = (const char *)act_in + sdw_act_bytes(be, k_at + 7);
        assert_int_equal(sdw_attention_act(be, qa, heads * D, ka, va, heads * D + 7, N, HW, Tk / 2, heads, D, false, act),
                         SDW_OK);
        expect_act(prec, v == 2 ? "attention_act (amx)" : "attention_act", act, y, (size_t)rows * heads * D);
        free(act_in), free((void *)xr);
        free(x), free(g), free(b), free(y), free(act);
        sdw_backend_free(be);
    }
}

int main(void)
{
    printf("backend ops: isa %s, native bf16 %s, auto precision = %s\n", sdw_cpu_isa_name(),
           sdw_cpu_has_native_bf16() ? "yes" : "no", sdw_precision_name(sdw_precision_resolve(SDW_PRECISION_AUTO)));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(linear_ops),
        cmocka_unit_test(linear_holds_weights_once),
        cmocka_unit_test(forward_add),
        cmocka_unit_test(linear_own_kernel),
        cmocka_unit_test(linear_gelu),
        cmocka_unit_test(linear_own_kernel_f32),
        cmocka_unit_test(conv_ops),
        cmocka_unit_test(conv_own_kernel),
        cmocka_unit_test(conv_winograd),
        cmocka_unit_test(conv_winograd_bands),
        cmocka_unit_test(conv_upsample_phases),
        cmocka_unit_test(conv_large_image),
        cmocka_unit_test(rejects_bad_shapes),
        cmocka_unit_test(bf16_conversion),
        cmocka_unit_test(group_norm),
        cmocka_unit_test(norms_without_affine),
        cmocka_unit_test(layer_norm),
        cmocka_unit_test(softmax_rows),
        cmocka_unit_test(activations),
        cmocka_unit_test(elementwise),
        cmocka_unit_test(upsample_concat),
        cmocka_unit_test(act_producers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
