/* rng.c: see rng.h. The CPU kind follows torch 1.13's CPUGeneratorImpl
 * (at::mt19937), ATen/core/DistributionsHelper.h and the CPU normal kernel of
 * aten/src/ATen/native/cpu/DistributionTemplates.h; the CUDA
 * kind follows AUTOMATIC1111's modules/rng_philox.py. */
#include "sampling/rng.h"
#include <math.h>
#include <stdbool.h>
#include <string.h>

#define MT_M 397
#define MT_MATRIX_A 0x9908b0dfu
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7fffffffu

static const double k_pi = 3.14159265358979323846;

/* ---- mt19937 (at::mt19937: standard MT19937, seeded with seed & 0xffffffff) ---- */

static void mt_seed(sdw_rng *r, uint64_t seed)
{
    r->mt[0] = (uint32_t)(seed & 0xffffffffu);
    for (uint32_t j = 1; j < SDW_MT_N; j++)
        r->mt[j] = 1812433253u * (r->mt[j - 1] ^ (r->mt[j - 1] >> 30)) + j;
    r->mt_idx = SDW_MT_N;
}

static void mt_twist(sdw_rng *r)
{
    uint32_t *mt = r->mt;
    for (int i = 0; i < SDW_MT_N; i++) {
        uint32_t y = (mt[i] & MT_UPPER) | (mt[(i + 1) % SDW_MT_N] & MT_LOWER);
        mt[i] = mt[(i + MT_M) % SDW_MT_N] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
    }
    r->mt_idx = 0;
}

static uint32_t mt_next(sdw_rng *r)
{
    if (r->mt_idx >= SDW_MT_N) mt_twist(r);
    uint32_t y = r->mt[r->mt_idx++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* at::uniform_real_distribution<float>(0, 1): 24 low bits of one 32-bit draw. */
static float uniform_f32(sdw_rng *r)
{
    return (float)(mt_next(r) & ((1u << 24) - 1)) * (1.0f / (float)(1u << 24));
}

/* at::uniform_real_distribution<double>(0, 1): 53 low bits of random64(), which
 * is (first draw << 32) | second draw. */
static double uniform_f64(sdw_rng *r)
{
    uint64_t hi = mt_next(r), lo = mt_next(r);
    uint64_t v = hi << 32 | lo;
    return (double)(v & ((UINT64_C(1) << 53) - 1)) * (1.0 / (double)(UINT64_C(1) << 53));
}

/* at::normal_distribution<double>(0, 1) with the generator's cached sample. */
static double normal_f64(sdw_rng *r)
{
    if (r->has_cached_normal) {
        r->has_cached_normal = false;
        return r->cached_normal;
    }
    double u1 = uniform_f64(r);
    double u2 = uniform_f64(r);
    double radius = sqrt(-2.0 * log(1.0 - u2));
    double theta = 2.0 * k_pi * u1;
    r->cached_normal = radius * sin(theta);
    r->has_cached_normal = true;
    return radius * cos(theta);
}

/* torch's AVX2 kernel (normal_fill_16_AVX2) evaluates Box-Muller with the
 * Cephes single-precision log and sincos of avx_mathfun.h, and the release
 * builds (GCC, -mfma) contract each multiply feeding an add into an FMA. The
 * two functions below are those polynomials, one lane at a time, with the
 * same fused operations, so the result is bit-identical to torch on an AVX2
 * CPU. (The plain-libm scalar kernel torch uses elsewhere differs by ~1 ulp.) */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* log256_ps for x in (0, 1]. */
static float cephes_logf(float x)
{
    const float min_norm = f32_from_bits(0x00800000u);
    if (x < min_norm) x = min_norm;   /* cut off denormals */
    int32_t ex = (int32_t)(f32_bits(x) >> 23) - 0x7f;
    x = f32_from_bits((f32_bits(x) & ~0x7f800000u) | f32_bits(0.5f));   /* mantissa in [0.5, 1) */
    float e = (float)ex + 1.0f;
    float tmp = 0.0f;
    if (x < 0.707106781186547524f) { tmp = x; e -= 1.0f; }
    x -= 1.0f;
    x += tmp;
    const float z = x * x;
    float y = 7.0376836292E-2f;
    y = fmaf(y, x, -1.1514610310E-1f);
    y = fmaf(y, x, 1.1676998740E-1f);
    y = fmaf(y, x, -1.2420140846E-1f);
    y = fmaf(y, x, 1.4249322787E-1f);
    y = fmaf(y, x, -1.6668057665E-1f);
    y = fmaf(y, x, 2.0000714765E-1f);
    y = fmaf(y, x, -2.4999993993E-1f);
    y = fmaf(y, x, 3.3333331174E-1f);
    y = y * x;
    const float eq1 = e * -2.12194440e-4f;
    y = fmaf(y, z, eq1);
    const float half_z = z * 0.5f;   /* exact */
    y -= half_z;
    x += y;
    const float eq2 = e * 0.693359375f;   /* exact: short constant, small integer e */
    return x + eq2;
}

/* sincos256_ps. */
static void cephes_sincosf(float xin, float *s, float *c)
{
    uint32_t sign_sin = f32_bits(xin) & 0x80000000u;
    float x = fabsf(xin);
    int32_t j = (int32_t)(x * 1.27323954473516f);   /* 4 / pi, truncated */
    j = (j + 1) & ~1;
    const float y = (float)j;
    const uint32_t swap_sin = (uint32_t)(j & 4) << 29;
    const bool sin_poly = (j & 2) == 0;
    const uint32_t sign_cos = (uint32_t)(~(j - 2) & 4) << 29;
    sign_sin ^= swap_sin;
    /* extended precision modular arithmetic */
    x = fmaf(y, -0.78515625f, x);
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);
    const float z = x * x;
    float yc = 2.443315711809948E-005f;
    yc = fmaf(yc, z, -1.388731625493765E-003f);
    yc = fmaf(yc, z, 4.166664568298827E-002f);
    yc = yc * z;
    const float half_z = z * 0.5f;
    yc = fmaf(yc, z, -half_z);
    yc += 1.0f;
    float ys = -1.9515295891E-4f;
    ys = fmaf(ys, z, 8.3321608736E-3f);
    ys = fmaf(ys, z, -1.6666654611E-1f);
    ys = ys * z;
    ys = fmaf(ys, x, x);
    *s = f32_from_bits(f32_bits(sin_poly ? ys : yc) ^ sign_sin);
    *c = f32_from_bits(f32_bits(sin_poly ? yc : ys) ^ sign_cos);
}

/* normal_fill_16: Box-Muller in float on 16 uniforms in place (mean 0, std 1,
 * so the final fmadd(n, std, mean) is the identity). */
static void normal_fill_16(float *data)
{
    const float two_pi = (float)(2.0 * k_pi);
    for (int j = 0; j < 8; j++) {
        const float u1 = 1.0f - data[j];   /* [0, 1) -> (0, 1] for log */
        const float u2 = data[j + 8];
        const float radius = sqrtf(-2.0f * cephes_logf(u1));
        const float theta = two_pi * u2;
        float sn, cs;
        cephes_sincosf(theta, &sn, &cs);
        data[j] = radius * cs;
        data[j + 8] = radius * sn;
    }
}

static void cpu_randn(sdw_rng *r, float *out, size_t n)
{
    if (n < 16) {
        /* torch's serial path: a double normal per element, rounded to float */
        for (size_t i = 0; i < n; i++) out[i] = (float)normal_f64(r);
        return;
    }
    for (size_t i = 0; i < n; i++) out[i] = uniform_f32(r);
    for (size_t i = 0; i + 16 <= n; i += 16) normal_fill_16(out + i);
    if (n % 16 != 0) {
        /* recompute the last 16 values from fresh uniforms */
        float *tail = out + n - 16;
        for (int i = 0; i < 16; i++) tail[i] = uniform_f32(r);
        normal_fill_16(tail);
    }
}

/* ---- Philox4x32-10 (A1111 rng_philox.py) ---- */

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1)
{
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)c[0] * PHILOX_M0, p1 = (uint64_t)c[2] * PHILOX_M1;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
}

static void philox_block(const sdw_rng *r, uint64_t i, uint32_t out[4])
{
    /* counter = [offset, 0, i, 0]; A1111 keeps i in 32 bits (counter[2]) */
    out[0] = (uint32_t)r->offset;
    out[1] = 0;
    out[2] = (uint32_t)i;
    out[3] = 0;
    philox4x32_10(out, (uint32_t)(r->seed & 0xffffffffu), (uint32_t)(r->seed >> 32));
}

static void philox_randn(sdw_rng *r, float *out, size_t n)
{
    /* numpy: uint32 * float32 array -> float64; the halves are float32 (exact) */
    const float a = (float)2.3283064e-10, b = (float)(2.3283064e-10 * 6.2831855);
    const double ha = (double)(a / 2.0f), hb = (double)(b / 2.0f);
    for (size_t i = 0; i < n; i++) {
        uint32_t g[4];
        philox_block(r, i, g);
        /* separate statements: numpy rounds the product before the sum */
        double u = (double)g[0] * (double)a;
        u += ha;
        double v = (double)g[1] * (double)b;
        v += hb;
        out[i] = (float)(sqrt(-2.0 * log(u)) * sin(v));
    }
    r->offset++;
}

static void philox_rand(sdw_rng *r, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t g[4];
        philox_block(r, i, g);
        out[i] = (float)(g[0] >> 8) * (1.0f / (float)(1u << 24));
    }
    r->offset++;
}

/* ---- API ---- */

void sdw_rng_init(sdw_rng *r, sdw_rng_kind kind, uint64_t seed)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->seed = seed;
    if (kind == SDW_RNG_CPU) mt_seed(r, seed);
}

void sdw_rng_randn(sdw_rng *r, float *out, size_t n)
{
    if (r->kind == SDW_RNG_CUDA) philox_randn(r, out, n);
    else cpu_randn(r, out, n);
}

void sdw_rng_rand(sdw_rng *r, float *out, size_t n)
{
    if (r->kind == SDW_RNG_CUDA) { philox_rand(r, out, n); return; }
    for (size_t i = 0; i < n; i++) out[i] = uniform_f32(r);
}

const char *sdw_rng_kind_name(sdw_rng_kind k)
{
    return k == SDW_RNG_CUDA ? "cuda" : "cpu";
}

bool sdw_rng_kind_parse(const char *s, sdw_rng_kind *out)
{
    if (!s) return false;
    if (!strcmp(s, "cpu")) { *out = SDW_RNG_CPU; return true; }
    if (!strcmp(s, "cuda") || !strcmp(s, "gpu") || !strcmp(s, "philox")) { *out = SDW_RNG_CUDA; return true; }
    return false;
}
