/* elementwise.c: the memory-bound ops (norms, activations, softmax,
 * elementwise arithmetic, upsampling, concat) in plain C. Each op splits its
 * rows across OpenMP threads and runs a per-span kernel that the compiler
 * vectorises (SDW_VEC clones for AVX-512 / AVX2). exp and erf are our own
 * polynomials because libm's do not vectorise. */
#include "backend/cpu_internal.h"
#include <immintrin.h>
#include <math.h>

/* Below this many elements a parallel region costs more than it saves. */
#define PAR_MIN 32768
/* Channels whose statistics one group-norm pass keeps on the stack. */
#define GN_TILE 512
#define GN_GROUPS 256

/* exp(x) to ~2 ulp (Cephes expf): 2^n * p(r), r = x - n ln2, with the
 * argument clamped to [-87, 88] (so exp of a very negative x is 1.6e-38, not
 * 0: harmless next to the 1 a sigmoid adds or a softmax row's max). n comes
 * from rounding inside one fma against 1.5 * 2^23 + 127, whose low bits are
 * then n + 127: shifted, they are 2^n. Explicit fmaf: one instruction in the
 * FMA clones and the same rounding in every clone. About 15 vector ops. */
static inline float vexp(float x)
{
    const float magic = 12582912.0f + 127.0f;
    float xc = x < -87.0f ? -87.0f : x; /* written so a NaN passes through */
    xc = xc > 88.0f ? 88.0f : xc;
    float t = fmaf(xc, 1.44269504088896341f, magic);
    float n = t - magic;
    float r = fmaf(n, -0.693359375f, xc);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p * r, r, r) + 1.0f;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits <<= 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return p * s;
}

/* erf(x), Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7). */
static inline float verf(float x)
{
    float a = fabsf(x);
    float t = 1.0f / fmaf(0.3275911f, a, 1.0f);
    float p = 1.061405429f;
    p = fmaf(p, t, -1.453152027f);
    p = fmaf(p, t, 1.421413741f);
    p = fmaf(p, t, -0.284496736f);
    p = fmaf(p, t, 0.254829592f);
    float e = 1.0f - p * t * vexp(-a * a);
    return x < 0 ? -e : e;
}

/* ---- span kernels ---- */

static inline uint16_t bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r); /* NaN stays NaN */
}

/* Blocks of 16 with a scalar tail: the compiler's own loop shape (8 lanes,
 * peeled prologue and epilogue) costs more than the work on short rows. */
SDW_VEC static void cvt_bf16_c(uint16_t *restrict dst, const float *restrict src, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
#pragma omp simd
        for (int j = 0; j < 16; j++) dst[i + j] = bf16_round(src[i + j]);
    }
    for (; i < n; i++) dst[i] = bf16_round(src[i]);
}

/* The one place we use intrinsics: no compiler turns the rounding above into
 * AVX512-BF16's conversion instruction, which is twice as fast, and the
 * attention softmax spends a sixth of its time here. Same rounding (to
 * nearest even, NaN stays NaN), except that it flushes denormals to zero. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void cvt_bf16_native(uint16_t *restrict dst, const float *restrict src, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i)));
    }
}

void sdw_cvt_bf16_span(uint16_t *restrict dst, const float *restrict src, size_t n)
{
    /* A test of a bit libgcc set at startup (a hand-written ifunc resolver
     * would run before AddressSanitizer is up). */
    if (__builtin_cpu_supports("avx512bf16")) cvt_bf16_native(dst, src, n);
    else cvt_bf16_c(dst, src, n);
}

SDW_VEC void sdw_copy_span(float *restrict dst, const float *restrict src, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

SDW_VEC void sdw_scale_copy_span(float *restrict dst, const float *restrict src, float s, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] = src[i] * s;
}

SDW_VEC static void gelu_span(float *x, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + verf(x[i] * 0.70710678118654752f));
}

/* out[i] = v[i] * gelu(g[i]): one GEGLU row half. */
SDW_VEC static void geglu_span(float *restrict out, const float *restrict v, const float *restrict g, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) out[i] = v[i] * (0.5f * g[i] * (1.0f + verf(g[i] * 0.70710678118654752f)));
}

/* tanh form (T5's gated GELU, FLUX / SD3's MLPs): tanh(u) = 1 - 2 / (exp(2u) + 1). */
SDW_VEC static void gelu_tanh_span(float *x, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float u = 0.7978845608028654f * (x[i] + 0.044715f * x[i] * x[i] * x[i]);
        x[i] = 0.5f * x[i] * (2.0f - 2.0f / (vexp(2.0f * u) + 1.0f));
    }
}

/* y = x / sqrt(mean(x^2) + eps) * gamma over one row (sum in double). */
SDW_VEC static void rms_norm_row(const float *x, int C, const float *gamma, float eps, float *y)
{
    double q = 0;
#pragma omp simd reduction(+ : q)
    for (int i = 0; i < C; i++) q += (double)x[i] * x[i];
    const float r = (float)(1.0 / sqrt(q / C + eps));
    if (gamma) {
#pragma omp simd
        for (int i = 0; i < C; i++) y[i] = x[i] * r * gamma[i];
    } else {
#pragma omp simd
        for (int i = 0; i < C; i++) y[i] = x[i] * r;
    }
}

SDW_VEC static void quick_gelu_span(float *x, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + vexp(-1.702f * x[i]));
}

SDW_VEC static void silu_span(float *x, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + vexp(-x[i]));
}

SDW_VEC static void add_span(float *y, const float *a, const float *b, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

SDW_VEC static void mul_span(float *y, const float *a, const float *b, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}

/* y = (x - m) * a + b per channel; y may equal x. Subtracting the mean
 * first keeps a large mean from cancelling against b in f32. */
SDW_VEC static void affine_span(float *y, const float *x, const float *m, const float *a, const float *b, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) y[i] = (x[i] - m[i]) * a[i] + b[i];
}

/* The same followed by SiLU: a ResNet block's norm and activation in one pass. */
SDW_VEC static void affine_silu_span(float *y, const float *x, const float *m, const float *a, const float *b,
                                     size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float v = (x[i] - m[i]) * a[i] + b[i];
        y[i] = v / (1.0f + vexp(-v));
    }
}

SDW_VEC static void sum_sq_span(double *restrict s, double *restrict q, const float *restrict x, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        s[i] += v;
        q[i] += v * v;
    }
}

/* max_span and exp_span work in fixed blocks of VL lanes with the partial
 * results kept per lane: the compiler's own reductions spill and add 16
 * lanes one by one and finish with a scalar tail, which dominates rows as
 * short as CLIP's 77 (every cross-attention row). */
#define VL 16

SDW_VEC static float max_span(const float *x, size_t n)
{
    float acc[VL];
    for (int j = 0; j < VL; j++) acc[j] = -INFINITY;
    size_t i = 0;
    for (; i + VL <= n; i += VL) {
#pragma omp simd
        for (int j = 0; j < VL; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
    }
    for (; i < n; i++) acc[0] = x[i] > acc[0] ? x[i] : acc[0];
    for (int w = VL / 2; w > 0; w /= 2) /* a tree, not a 16-long dependency chain */
        for (int j = 0; j < w; j++) acc[j] = acc[j + w] > acc[j] ? acc[j + w] : acc[j];
    return acc[0];
}

/* x = exp((x - m) * scale), returns the sum. The tail goes through a padded
 * block so it runs vectorised too. */
SDW_VEC static float exp_span(float *x, size_t n, float m, float scale)
{
    float acc[VL] = { 0 };
    size_t i = 0;
    for (; i + VL <= n; i += VL) {
#pragma omp simd
        for (int j = 0; j < VL; j++) {
            float e = vexp((x[i + j] - m) * scale);
            x[i + j] = e;
            acc[j] += e;
        }
    }
    if (i < n) {
        int rem = (int)(n - i);
        float t[VL];
        for (int j = 0; j < VL; j++) t[j] = j < rem ? x[i + j] : m;
#pragma omp simd
        for (int j = 0; j < VL; j++) {
            float e = vexp((t[j] - m) * scale);
            t[j] = e;
            acc[j] += j < rem ? e : 0.0f;
        }
        memcpy(x + i, t, sizeof(float) * (size_t)rem);
    }
    for (int w = VL / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

SDW_VEC static void scale_span(float *x, size_t n, float s)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

/* Layer norm of one row: two passes in double over a row that sits in L1.
 * The result goes to y (f32) or, when y is NULL, to yb (bf16) through a
 * stack buffer a chunk at a time. */
#define ROW_CHUNK 256
SDW_VEC static void layer_norm_row(const float *x, int C, const float *g, const float *b, float eps, float *y,
                                   uint16_t *yb)
{
    double s = 0, q = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < C; i++) s += x[i];
    double mean = s / C;
#pragma omp simd reduction(+ : q)
    for (int i = 0; i < C; i++) q += (x[i] - mean) * (x[i] - mean);
    float m = (float)mean, r = (float)(1.0 / sqrt(q / C + eps));
    float tmp[ROW_CHUNK];
    for (int c0 = 0; c0 < C; c0 += ROW_CHUNK) {
        int len = C - c0 < ROW_CHUNK ? C - c0 : ROW_CHUNK;
        float *dst = y ? y + c0 : tmp;
#pragma omp simd
        for (int i = 0; i < len; i++)
            dst[i] = (x[c0 + i] - m) * r * (g ? g[c0 + i] : 1.0f) + (b ? b[c0 + i] : 0.0f);
        if (!y) sdw_cvt_bf16_span(yb + c0, tmp, (size_t)len);
    }
}

/* ---- parallel drivers ---- */

/* Splits n elements into per-thread blocks of whole cache lines. */
#define FOR_BLOCKS(n, body)                                                        \
    do {                                                                           \
        size_t n_ = (n), blk_ = 16384;                                             \
        size_t nb_ = (n_ + blk_ - 1) / blk_;                                       \
        _Pragma("omp parallel for schedule(static) if (n_ > PAR_MIN)")             \
        for (size_t b_ = 0; b_ < nb_; b_++) {                                      \
            size_t off = b_ * blk_, len = n_ - off < blk_ ? n_ - off : blk_;       \
            body;                                                                  \
        }                                                                          \
    } while (0)

void sdw_cvt_bf16(uint16_t *dst, const float *src, size_t n)
{
    FOR_BLOCKS(n, sdw_cvt_bf16_span(dst + off, src + off, len));
}
void sdw_gelu(float *x, size_t n) { FOR_BLOCKS(n, gelu_span(x + off, len)); }

void sdw_geglu(const float *in, int64_t rows, int inner, float *out)
{
#pragma omp parallel for schedule(static) if (rows * inner > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *v = in + r * 2 * inner;
        geglu_span(out + r * inner, v, v + inner, (size_t)inner);
    }
}
void sdw_gelu_tanh(float *x, size_t n) { FOR_BLOCKS(n, gelu_tanh_span(x + off, len)); }

void sdw_rms_norm(const float *x, int64_t rows, int C, const float *gamma, float eps, float *y)
{
#pragma omp parallel for schedule(static) if (rows * C > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) rms_norm_row(x + r * C, C, gamma, eps, y + r * C);
}
void sdw_quick_gelu(float *x, size_t n) { FOR_BLOCKS(n, quick_gelu_span(x + off, len)); }
void sdw_silu(float *x, size_t n) { FOR_BLOCKS(n, silu_span(x + off, len)); }
void sdw_add(float *y, const float *a, const float *b, size_t n)
{
    FOR_BLOCKS(n, add_span(y + off, a + off, b + off, len));
}
void sdw_mul(float *y, const float *a, const float *b, size_t n)
{
    FOR_BLOCKS(n, mul_span(y + off, a + off, b + off, len));
}

void sdw_add_bias(float *x, int64_t rows, int C, const float *bias)
{
#pragma omp parallel for schedule(static) if (rows * C > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) add_span(x + r * C, x + r * C, bias, (size_t)C);
}

void sdw_layer_norm(const float *x, int64_t rows, int C, const float *gamma, const float *beta, float eps,
                    float *y)
{
#pragma omp parallel for schedule(static) if (rows * C > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) layer_norm_row(x + r * C, C, gamma, beta, eps, y + r * C, NULL);
}

void sdw_layer_norm_act(const sdw_backend *be, const float *x, int64_t rows, int C, const float *gamma,
                        const float *beta, float eps, void *act)
{
    if (be->precision != SDW_PRECISION_BF16) {
        sdw_layer_norm(x, rows, C, gamma, beta, eps, act);
        return;
    }
    uint16_t *yb = act;
#pragma omp parallel for schedule(static) if (rows * C > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) layer_norm_row(x + r * C, C, gamma, beta, eps, NULL, yb + r * C);
}

/* bf16 -> f32 is exact: the bits, shifted. */
SDW_VEC static void widen_bf16_span(float *restrict dst, const uint16_t *restrict src, size_t n)
{
    uint32_t *d = (uint32_t *)dst;
#pragma omp simd
    for (size_t i = 0; i < n; i++) d[i] = (uint32_t)src[i] << 16;
}

void sdw_geglu_act(const sdw_backend *be, const void *in_act, int64_t rows, int inner, void *act)
{
    if (be->precision != SDW_PRECISION_BF16) {
        sdw_geglu(in_act, rows, inner, act);
        return;
    }
    const uint16_t *in = in_act;
    uint16_t *yb = act;
#pragma omp parallel for schedule(static) if (rows * inner > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *v = in + r * 2 * inner;
        float val[ROW_CHUNK], gate[ROW_CHUNK], y[ROW_CHUNK];
        for (int c0 = 0; c0 < inner; c0 += ROW_CHUNK) {
            int len = inner - c0 < ROW_CHUNK ? inner - c0 : ROW_CHUNK;
            widen_bf16_span(val, v + c0, (size_t)len);
            widen_bf16_span(gate, v + inner + c0, (size_t)len);
            geglu_span(y, val, gate, (size_t)len);
            sdw_cvt_bf16_span(yb + r * inner + c0, y, (size_t)len);
        }
    }
}

void sdw_gelu_tanh_act(const sdw_backend *be, void *act, size_t n)
{
    if (be->precision != SDW_PRECISION_BF16) {
        sdw_gelu_tanh(act, n);
        return;
    }
    uint16_t *x = act;
    FOR_BLOCKS(n, {
        float tmp[ROW_CHUNK];
        for (size_t c0 = 0; c0 < len; c0 += ROW_CHUNK) {
            const size_t m = len - c0 < ROW_CHUNK ? len - c0 : ROW_CHUNK;
            widen_bf16_span(tmp, x + off + c0, m);
            gelu_tanh_span(tmp, m);
            sdw_cvt_bf16_span(x + off + c0, tmp, m);
        }
    });
}

void sdw_to_act_rows(const sdw_backend *be, const float *x, int64_t rows, int cols, int64_t x_stride, bool gelu_tanh,
                     void *act, int64_t act_stride)
{
    const bool bf = be->precision == SDW_PRECISION_BF16;
#pragma omp parallel for schedule(static) if (rows * cols > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * x_stride;
        float tmp[ROW_CHUNK];
        for (int c0 = 0; c0 < cols; c0 += ROW_CHUNK) {
            const int len = cols - c0 < ROW_CHUNK ? cols - c0 : ROW_CHUNK;
            const float *src = xr + c0;
            if (gelu_tanh || !bf) {
                float *dst = bf ? tmp : (float *)act + r * act_stride + c0;
                memcpy(dst, src, (size_t)len * sizeof *dst);
                if (gelu_tanh) gelu_tanh_span(dst, (size_t)len);
                src = dst;
            }
            if (bf) sdw_cvt_bf16_span((uint16_t *)act + r * act_stride + c0, src, (size_t)len);
        }
    }
}

void sdw_to_act(const sdw_backend *be, const float *x, size_t n, void *act)
{
    if (be->precision == SDW_PRECISION_BF16) sdw_cvt_bf16(act, x, n);
    else memcpy(act, x, n * sizeof *x);
}

float sdw_attn_softmax_row(float *s, int n, int n_valid, float scale)
{
    float sum = exp_span(s, (size_t)n_valid, max_span(s, (size_t)n_valid), scale);
    memset(s + n_valid, 0, sizeof(float) * (size_t)(n - n_valid));
    return 1.0f / sum;
}

static void softmax_row(float *x, int n)
{
    float inv = 1.0f / exp_span(x, (size_t)n, max_span(x, (size_t)n), 1.0f);
    scale_span(x, (size_t)n, inv);
}

void sdw_softmax_rows(float *x, int64_t rows, int n)
{
#pragma omp parallel for schedule(static) if (rows * n > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) softmax_row(x + r * n, n);
}

/* Group norm, NHWC: statistics per (n, group) over HW x C/groups, taken in
 * double per channel (one pass over memory), then
 * y = (x - mean_g) * (gamma_c / std_g) + beta_c. Groups are handled
 * GN_GROUPS at a time and channels GN_TILE at a time so all state is on the
 * stack. */
/* y (f32) or yb (bf16, when y is NULL) receives the result. shift [N, C]
 * (or NULL) is added to x first, without a pass of its own: the statistics
 * of x + t follow from x's per-channel sums, and the affine pass subtracts
 * mean - t. */
static void group_norm(const float *x, const float *shift, int N, int64_t HW, int C, int groups,
                       const float *gamma, const float *beta, float eps, bool silu, float *y, uint16_t *yb)
{
    int cpg = C / groups;
    bool par = HW * C > PAR_MIN;
    for (int n = 0; n < N; n++) {
        const float *xn = x + (int64_t)n * HW * C, *tn = shift ? shift + (int64_t)n * C : NULL;
        float *yn = y ? y + (int64_t)n * HW * C : NULL;
        uint16_t *ybn = yb ? yb + (int64_t)n * HW * C : NULL;
        for (int g0 = 0; g0 < groups; g0 += GN_GROUPS) {
            int g1 = g0 + GN_GROUPS < groups ? g0 + GN_GROUPS : groups;
            double gs[GN_GROUPS] = { 0 }, gq[GN_GROUPS] = { 0 };
            float gmean[GN_GROUPS], grstd[GN_GROUPS];
            int cbeg = g0 * cpg, cend = g1 * cpg;
            for (int c0 = cbeg; c0 < cend; c0 += GN_TILE) {
                int len = cend - c0 < GN_TILE ? cend - c0 : GN_TILE;
                double ts[GN_TILE] = { 0 }, tq[GN_TILE] = { 0 };
#pragma omp parallel for schedule(static) reduction(+ : ts, tq) if (par)
                for (int64_t r = 0; r < HW; r++) sum_sq_span(ts, tq, xn + r * C + c0, (size_t)len);
                for (int i = 0; i < len; i++) {
                    int g = (c0 + i) / cpg - g0;
                    double t = tn ? tn[c0 + i] : 0.0; /* sums of x + t from those of x */
                    gs[g] += ts[i] + (double)HW * t;
                    gq[g] += tq[i] + 2.0 * t * ts[i] + (double)HW * t * t;
                }
            }
            double cnt = (double)HW * cpg;
            for (int g = 0; g < g1 - g0; g++) {
                double mean = gs[g] / cnt, var = gq[g] / cnt - mean * mean;
                gmean[g] = (float)mean;
                grstd[g] = (float)(1.0 / sqrt((var > 0 ? var : 0) + eps));
            }
            for (int c0 = cbeg; c0 < cend; c0 += GN_TILE) {
                int len = cend - c0 < GN_TILE ? cend - c0 : GN_TILE;
                float m[GN_TILE], a[GN_TILE], b[GN_TILE];
                for (int i = 0; i < len; i++) {
                    int c = c0 + i, g = c / cpg - g0;
                    m[i] = gmean[g] - (tn ? tn[c] : 0.0f);
                    a[i] = grstd[g] * (gamma ? gamma[c] : 1.0f);
                    b[i] = beta ? beta[c] : 0.0f;
                }
#pragma omp parallel for schedule(static) if (par)
                for (int64_t r = 0; r < HW; r++) {
                    float tmp[GN_TILE];
                    float *dst = yn ? yn + r * C + c0 : tmp;
                    if (silu) affine_silu_span(dst, xn + r * C + c0, m, a, b, (size_t)len);
                    else affine_span(dst, xn + r * C + c0, m, a, b, (size_t)len);
                    if (!yn) sdw_cvt_bf16_span(ybn + r * C + c0, tmp, (size_t)len);
                }
            }
        }
    }
}

void sdw_group_norm(const float *x, int N, int64_t HW, int C, int groups, const float *gamma,
                    const float *beta, float eps, float *y)
{
    group_norm(x, NULL, N, HW, C, groups, gamma, beta, eps, false, y, NULL);
}

void sdw_group_norm_silu(const float *x, int N, int64_t HW, int C, int groups, const float *gamma,
                         const float *beta, float eps, float *y)
{
    group_norm(x, NULL, N, HW, C, groups, gamma, beta, eps, true, y, NULL);
}

size_t sdw_act_bytes(const sdw_backend *be, size_t n)
{
    return n * (be->precision == SDW_PRECISION_BF16 ? sizeof(uint16_t) : sizeof(float));
}

void sdw_group_norm_silu_act(const sdw_backend *be, const float *x, int N, int64_t HW, int C, int groups,
                             const float *gamma, const float *beta, float eps, void *act)
{
    bool bf = be->precision == SDW_PRECISION_BF16;
    group_norm(x, NULL, N, HW, C, groups, gamma, beta, eps, true, bf ? NULL : act, bf ? act : NULL);
}

void sdw_group_norm_silu_shift_act(const sdw_backend *be, const float *x, const float *shift, int N, int64_t HW,
                                   int C, int groups, const float *gamma, const float *beta, float eps, void *act)
{
    bool bf = be->precision == SDW_PRECISION_BF16;
    group_norm(x, shift, N, HW, C, groups, gamma, beta, eps, true, bf ? NULL : act, bf ? act : NULL);
}

void sdw_group_norm_act(const sdw_backend *be, const float *x, int N, int64_t HW, int C, int groups,
                        const float *gamma, const float *beta, float eps, void *act)
{
    bool bf = be->precision == SDW_PRECISION_BF16;
    group_norm(x, NULL, N, HW, C, groups, gamma, beta, eps, false, bf ? NULL : act, bf ? act : NULL);
}

void sdw_upsample_nearest2x(const float *x, int N, int H, int W, int C, float *y)
{
    int64_t rows = (int64_t)N * H;
    size_t row_out = (size_t)2 * W * C;
#pragma omp parallel for schedule(static) if (rows * W * C > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * W * C;
        float *y0 = y + 2 * r * (int64_t)row_out;
        for (int w = 0; w < W; w++) {
            sdw_copy_span(y0 + (size_t)2 * w * C, xr + (size_t)w * C, (size_t)C);
            sdw_copy_span(y0 + (size_t)(2 * w + 1) * C, xr + (size_t)w * C, (size_t)C);
        }
        memcpy(y0 + row_out, y0, sizeof(float) * row_out);
    }
}

void sdw_upsample_nearest2x_act(const sdw_backend *be, const float *x, int N, int H, int W, int C, void *act)
{
    if (be->precision != SDW_PRECISION_BF16) {
        sdw_upsample_nearest2x(x, N, H, W, C, act);
        return;
    }
    uint16_t *y = act;
    int64_t rows = (int64_t)N * H;
    size_t row_out = (size_t)2 * W * C;
#pragma omp parallel for schedule(static) if (rows * W * C > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * W * C;
        uint16_t *y0 = y + 2 * r * (int64_t)row_out;
        for (int w = 0; w < W; w++) {
            sdw_cvt_bf16_span(y0 + (size_t)2 * w * C, xr + (size_t)w * C, (size_t)C);
            memcpy(y0 + (size_t)(2 * w + 1) * C, y0 + (size_t)2 * w * C, sizeof(uint16_t) * (size_t)C);
        }
        memcpy(y0 + row_out, y0, sizeof(uint16_t) * row_out);
    }
}

void sdw_concat_channels(const float *a, int Ca, const float *b, int Cb, int64_t rows, float *y)
{
    int C = Ca + Cb;
#pragma omp parallel for schedule(static) if (rows * C > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        memcpy(y + r * C, a + r * Ca, sizeof(float) * (size_t)Ca);
        memcpy(y + r * C + Ca, b + r * Cb, sizeof(float) * (size_t)Cb);
    }
}
