/* linear_quant_rows.c: the compact weight formats a quantized linear holds
 * (linear_quant.c), one row at a time: GGUF's blocks (Q4_0 ... Q8_0 of 32
 * elements, the K-quants Q2_K ... Q6_K of 256), the two float8s and bf16.
 *
 * Decoding gives exactly the values of llama.cpp's reference dequantizers
 * and torch's float8 casts, as io/quant.c does for the loader. It is written
 * again here because the backend sits below io/, and because these loops run
 * inside the matmul, once per panel of weights: inner loops go over
 * contiguous bytes, so each SDW_VEC clone vectorises them. As in io/quant.c,
 * a product and the sum after it are separate statements, so no compiler
 * fuses them into an FMA (the reference rounds twice).
 *
 * Encoding (a LoRA merged into quantized weights, weights quantized while
 * loading) follows llama.cpp's reference quantizers for the 32-element
 * formats. The K-quants get a simpler encoder than llama.cpp's searches:
 * per sub-block a min / max fit refined twice by least squares, then the
 * sub-block scales quantized against the super-block's. */
#include "backend/linear_quant.h"
#include "core/half.h"
#include <math.h>
#include <pthread.h>

#define QK 32
#define QK_K 256

typedef struct {
    const char *name;
    int block, bytes;
} qtype_info;

static const qtype_info infos[SDW_QT_COUNT] = {
    [SDW_QT_Q4_0] = { "q4_0", QK, 18 },     [SDW_QT_Q4_1] = { "q4_1", QK, 20 },
    [SDW_QT_Q5_0] = { "q5_0", QK, 22 },     [SDW_QT_Q5_1] = { "q5_1", QK, 24 },
    [SDW_QT_Q8_0] = { "q8_0", QK, 34 },     [SDW_QT_Q2_K] = { "q2_k", QK_K, 84 },
    [SDW_QT_Q3_K] = { "q3_k", QK_K, 110 },  [SDW_QT_Q4_K] = { "q4_k", QK_K, 144 },
    [SDW_QT_Q5_K] = { "q5_k", QK_K, 176 },  [SDW_QT_Q6_K] = { "q6_k", QK_K, 210 },
    [SDW_QT_F8_E4M3] = { "f8_e4m3", 1, 1 }, [SDW_QT_F8_E5M2] = { "f8_e5m2", 1, 1 },
    [SDW_QT_BF16] = { "bf16", 1, 2 },
};

const char *sdw_qtype_name(sdw_qtype t) { return (unsigned)t < SDW_QT_COUNT ? infos[t].name : "?"; }

int sdw_qtype_block(sdw_qtype t, size_t *block_bytes)
{
    if ((unsigned)t >= SDW_QT_COUNT) return 0;
    if (block_bytes) *block_bytes = (size_t)infos[t].bytes;
    return infos[t].block;
}

size_t sdw_qtype_row_bytes(sdw_qtype t, int n)
{
    if ((unsigned)t >= SDW_QT_COUNT || n <= 0 || n % infos[t].block) return 0;
    return (size_t)(n / infos[t].block) * (size_t)infos[t].bytes;
}

static float f16_at(const uint8_t *p) { return sdw_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static void put_f16(uint8_t *p, float v)
{
    uint16_t h = sdw_f32_to_f16(v);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* ---------------------------------------------------------------- decoding */

SDW_VEC static void dec_q4_0(const uint8_t *restrict b, float *restrict y, int nb)
{
    for (int i = 0; i < nb; i++, b += 18, y += QK) {
        const float d = f16_at(b);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * (float)((b[2 + j] & 15) - 8);
            y[j + QK / 2] = d * (float)((b[2 + j] >> 4) - 8);
        }
    }
}

SDW_VEC static void dec_q4_1(const uint8_t *restrict b, float *restrict y, int nb)
{
    for (int i = 0; i < nb; i++, b += 20, y += QK) {
        const float d = f16_at(b), m = f16_at(b + 2);
        for (int j = 0; j < QK / 2; j++) {
            float lo = d * (float)(b[4 + j] & 15), hi = d * (float)(b[4 + j] >> 4);
            y[j] = lo + m;
            y[j + QK / 2] = hi + m;
        }
    }
}

/* Q5_0 / Q5_1: the fifth bit of element j is bit j of the 32-bit qh. */
SDW_VEC static void dec_q5_0(const uint8_t *restrict b, float *restrict y, int nb)
{
    for (int i = 0; i < nb; i++, b += 22, y += QK) {
        const float d = f16_at(b);
        const uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 | (uint32_t)b[5] << 24;
        for (int j = 0; j < QK / 2; j++) {
            int lo = (b[6 + j] & 15) | (int)((qh >> j) & 1) << 4;
            int hi = (b[6 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = d * (float)(lo - 16);
            y[j + QK / 2] = d * (float)(hi - 16);
        }
    }
}

SDW_VEC static void dec_q5_1(const uint8_t *restrict b, float *restrict y, int nb)
{
    for (int i = 0; i < nb; i++, b += 24, y += QK) {
        const float d = f16_at(b), m = f16_at(b + 2);
        const uint32_t qh = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
        for (int j = 0; j < QK / 2; j++) {
            int lo = (b[8 + j] & 15) | (int)((qh >> j) & 1) << 4;
            int hi = (b[8 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            float plo = d * (float)lo, phi = d * (float)hi;
            y[j] = plo + m;
            y[j + QK / 2] = phi + m;
        }
    }
}

SDW_VEC static void dec_q8_0(const uint8_t *restrict b, float *restrict y, int nb)
{
    for (int i = 0; i < nb; i++, b += 34, y += QK) {
        const float d = f16_at(b);
        for (int j = 0; j < QK; j++) y[j] = d * (float)(int8_t)b[2 + j];
    }
}

/* Q2_K and Q3_K place element n*128 + j*32 + l (n < 2, j < 4, l < 32) in
 * bits 2j of byte n*32 + l of their 64 bytes of 2-bit values; a scale
 * covers 16 elements. */
SDW_VEC static void dec_q2_k(const uint8_t *restrict b, float *restrict y, int nb)
{
    for (int i = 0; i < nb; i++, b += 84, y += QK_K) {
        const uint8_t *sc = b, *qs = b + 16;
        const float d = f16_at(b + 80), dmin = f16_at(b + 82);
        for (int n = 0; n < 2; n++)
            for (int j = 0; j < 4; j++)
                for (int h = 0; h < 2; h++) {
                    const int is = n * 8 + j * 2 + h;
                    const float dl = d * (float)(sc[is] & 15), ml = dmin * (float)(sc[is] >> 4);
                    float *o = y + n * 128 + j * 32 + h * 16;
                    const uint8_t *q = qs + n * 32 + h * 16;
                    for (int l = 0; l < 16; l++) {
                        float p = dl * (float)((q[l] >> (2 * j)) & 3);
                        o[l] = p - ml;
                    }
                }
    }
}

/* Q3_K's 16 6-bit scales: low nibbles in bytes 0..7 (scale i and i + 8
 * share byte i), two high bits each in bytes 8..11. */
static int q3_scale(const uint8_t *sc, int is)
{
    int lo = is < 8 ? sc[is] & 15 : sc[is - 8] >> 4;
    int hi = (sc[8 + is % 4] >> (2 * (is / 4))) & 3;
    return (lo | hi << 4) - 32;
}

SDW_VEC static void dec_q3_k(const uint8_t *restrict b, float *restrict y, int nb)
{
    for (int i = 0; i < nb; i++, b += 110, y += QK_K) {
        const uint8_t *hm = b, *qs = b + 32, *sc = b + 96;
        const float d = f16_at(b + 108);
        for (int n = 0; n < 2; n++)
            for (int j = 0; j < 4; j++)
                for (int h = 0; h < 2; h++) {
                    const float dl = d * (float)q3_scale(sc, n * 8 + j * 2 + h);
                    float *o = y + n * 128 + j * 32 + h * 16;
                    const uint8_t *q = qs + n * 32 + h * 16, *m = hm + h * 16;
                    const int bit = n * 4 + j;
                    for (int l = 0; l < 16; l++) {
                        int v = ((q[l] >> (2 * j)) & 3) - 4 + 4 * ((m[l] >> bit) & 1);
                        o[l] = dl * (float)v;
                    }
                }
    }
}

/* Q4_K / Q5_K: the 8 6-bit scales and mins of ggml's get_scale_min_k4. */
static void scale_min_k4(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

SDW_VEC static void dec_q4_k(const uint8_t *restrict b, float *restrict y, int nb)
{
    for (int i = 0; i < nb; i++, b += 144, y += QK_K) {
        const float d = f16_at(b), dmin = f16_at(b + 2);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_k4(j, b + 4, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            const uint8_t *q = b + 16 + (j / 2) * 32;
            for (int l = 0; l < 32; l++) {
                float p = dl * (float)((q[l] >> (4 * (j % 2))) & 15);
                y[j * 32 + l] = p - ml;
            }
        }
    }
}

SDW_VEC static void dec_q5_k(const uint8_t *restrict b, float *restrict y, int nb)
{
    for (int i = 0; i < nb; i++, b += 176, y += QK_K) {
        const float d = f16_at(b), dmin = f16_at(b + 2);
        const uint8_t *qh = b + 16;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_k4(j, b + 4, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            const uint8_t *q = b + 48 + (j / 2) * 32;
            for (int l = 0; l < 32; l++) {
                float p = dl * (float)(((q[l] >> (4 * (j % 2))) & 15) | ((qh[l] >> j) & 1) << 4);
                y[j * 32 + l] = p - ml;
            }
        }
    }
}

/* Q6_K: in half h of 128 elements, element qq*32 + l takes nibble qq / 2 of
 * byte h*64 + (qq % 2)*32 + l and bits 2qq of byte h*32 + l. */
SDW_VEC static void dec_q6_k(const uint8_t *restrict b, float *restrict y, int nb)
{
    for (int i = 0; i < nb; i++, b += 210, y += QK_K) {
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = f16_at(b + 208);
        for (int h = 0; h < 2; h++)
            for (int qq = 0; qq < 4; qq++)
                for (int s = 0; s < 2; s++) {
                    const float dl = d * (float)sc[h * 8 + qq * 2 + s];
                    const uint8_t *ql = b + h * 64 + (qq % 2) * 32 + s * 16, *qh = b + 128 + h * 32 + s * 16;
                    float *o = y + h * 128 + qq * 32 + s * 16;
                    for (int l = 0; l < 16; l++) {
                        int v = ((ql[l] >> (4 * (qq / 2))) & 15) | ((qh[l] >> (2 * qq)) & 3) << 4;
                        o[l] = dl * (float)(v - 32);
                    }
                }
    }
}

/* float8 e4m3fn: bias 7, subnormals m/8 * 2^-6, 0x7F / 0xFF NaN, no infinity. */
static float e4m3_value(uint8_t b)
{
    const uint32_t e = (b >> 3) & 15, m = b & 7;
    float v;
    if (e == 15 && m == 7) {
        v = NAN;
    } else if (e == 0) {
        v = (float)m * 0x1p-9f;
    } else {
        uint32_t u = (e + 120) << 23 | m << 20;
        memcpy(&v, &u, 4);
    }
    return b & 0x80 ? -v : v;
}

/* float8 e5m2: an f16 without its low 8 mantissa bits. */
static float e5m2_value(uint8_t b) { return sdw_f16_to_f32((uint16_t)(b << 8)); }

/* Both float8s decode through a table of their 256 values (about 1 ns an
 * element less than decoding the bits), filled once. */
static float lut_e4m3[256], lut_e5m2[256];
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;

static void fill_luts(void)
{
    for (int i = 0; i < 256; i++) {
        lut_e4m3[i] = e4m3_value((uint8_t)i);
        lut_e5m2[i] = e5m2_value((uint8_t)i);
    }
}

static void dec_lut(const float *restrict lut, const uint8_t *restrict b, float *restrict y, int n)
{
    for (int i = 0; i < n; i++) y[i] = lut[b[i]];
}

SDW_VEC static void dec_bf16(const uint8_t *restrict b, float *restrict y, int n)
{
    for (int i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, b + 2 * i, 2);
        const uint32_t u = (uint32_t)h << 16;
        memcpy(&y[i], &u, 4);
    }
}

void sdw_qtype_dequantize_row(sdw_qtype t, const void *src, float *dst, int n)
{
    const uint8_t *b = src;
    switch (t) {
    case SDW_QT_Q4_0: dec_q4_0(b, dst, n / QK); break;
    case SDW_QT_Q4_1: dec_q4_1(b, dst, n / QK); break;
    case SDW_QT_Q5_0: dec_q5_0(b, dst, n / QK); break;
    case SDW_QT_Q5_1: dec_q5_1(b, dst, n / QK); break;
    case SDW_QT_Q8_0: dec_q8_0(b, dst, n / QK); break;
    case SDW_QT_Q2_K: dec_q2_k(b, dst, n / QK_K); break;
    case SDW_QT_Q3_K: dec_q3_k(b, dst, n / QK_K); break;
    case SDW_QT_Q4_K: dec_q4_k(b, dst, n / QK_K); break;
    case SDW_QT_Q5_K: dec_q5_k(b, dst, n / QK_K); break;
    case SDW_QT_Q6_K: dec_q6_k(b, dst, n / QK_K); break;
    case SDW_QT_F8_E4M3:
    case SDW_QT_F8_E5M2:
        pthread_once(&lut_once, fill_luts);
        dec_lut(t == SDW_QT_F8_E4M3 ? lut_e4m3 : lut_e5m2, b, dst, n);
        break;
    case SDW_QT_BF16: dec_bf16(b, dst, n); break;
    case SDW_QT_COUNT: break;
    }
}

/* ---------------------------------------------------------------- encoding */

/* llama.cpp's nearest_int for the K-quants: round half to even. */
static int nearest(float v) { return (int)lrintf(v); }
static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The element of largest magnitude, with its sign. */
static float signed_max(const float *x, int n)
{
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    return max;
}

static void enc_q4_0(const float *x, uint8_t *b)
{
    const float d = signed_max(x, QK) / -8, id = d != 0 ? 1.0f / d : 0.0f;
    put_f16(b, d);
    for (int j = 0; j < QK / 2; j++) {
        int lo = (int8_t)(x[j] * id + 8.5f), hi = (int8_t)(x[j + QK / 2] * id + 8.5f);
        b[2 + j] = (uint8_t)((lo < 15 ? lo : 15) | (hi < 15 ? hi : 15) << 4);
    }
}

static void min_max(const float *x, int n, float *mn, float *mx)
{
    *mn = x[0];
    *mx = x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < *mn) *mn = x[i];
        if (x[i] > *mx) *mx = x[i];
    }
}

static void enc_q4_1(const float *x, uint8_t *b)
{
    float mn, mx;
    min_max(x, QK, &mn, &mx);
    const float d = (mx - mn) / 15, id = d != 0 ? 1.0f / d : 0.0f;
    put_f16(b, d);
    put_f16(b + 2, mn);
    for (int j = 0; j < QK / 2; j++) {
        int lo = (int8_t)((x[j] - mn) * id + 0.5f), hi = (int8_t)((x[j + QK / 2] - mn) * id + 0.5f);
        b[4 + j] = (uint8_t)((lo < 15 ? lo : 15) | (hi < 15 ? hi : 15) << 4);
    }
}

/* Q5_0 / Q5_1: 5-bit values, nibbles as Q4, fifth bits gathered into qh. */
static void pack5(const int *q, uint8_t *qh_at, uint8_t *qs)
{
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; j++) {
        qs[j] = (uint8_t)((q[j] & 15) | (q[j + QK / 2] & 15) << 4);
        qh |= (uint32_t)((q[j] >> 4) & 1) << j | (uint32_t)((q[j + QK / 2] >> 4) & 1) << (j + QK / 2);
    }
    for (int k = 0; k < 4; k++) qh_at[k] = (uint8_t)(qh >> (8 * k));
}

static void enc_q5_0(const float *x, uint8_t *b)
{
    const float d = signed_max(x, QK) / -16, id = d != 0 ? 1.0f / d : 0.0f;
    int q[QK];
    put_f16(b, d);
    for (int j = 0; j < QK; j++) {
        int v = (int8_t)(x[j] * id + 16.5f);
        q[j] = v < 31 ? v : 31;
    }
    pack5(q, b + 2, b + 6);
}

static void enc_q5_1(const float *x, uint8_t *b)
{
    float mn, mx;
    min_max(x, QK, &mn, &mx);
    const float d = (mx - mn) / 31, id = d != 0 ? 1.0f / d : 0.0f;
    int q[QK];
    put_f16(b, d);
    put_f16(b + 2, mn);
    for (int j = 0; j < QK; j++) q[j] = (uint8_t)((x[j] - mn) * id + 0.5f);
    pack5(q, b + 4, b + 8);
}

static void enc_q8_0(const float *x, uint8_t *b)
{
    float amax = 0;
    for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
    put_f16(b, d);
    for (int j = 0; j < QK; j++) b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

/* x ~ s q - m with q in [0, nmax] and m >= 0 (the K-quants' sub-blocks):
 * a min / max fit, then twice the least-squares s and m for the chosen q. */
static void fit_affine(const float *x, int n, int nmax, float *s, float *m)
{
    float mn, mx;
    min_max(x, n, &mn, &mx);
    if (mn > 0) mn = 0;
    *s = (mx - mn) / (float)nmax;
    *m = -mn;
    for (int it = 0; it < 2 && *s > 0; it++) {
        double sq = 0, sq2 = 0, sx = 0, sxq = 0;
        for (int i = 0; i < n; i++) {
            double q = clampi(nearest((x[i] + *m) / *s), 0, nmax);
            sq += q, sq2 += q * q, sx += x[i], sxq += x[i] * q;
        }
        double det = n * sq2 - sq * sq;
        if (det <= 0) break;
        double ns = (n * sxq - sq * sx) / det, nm = (sq * sxq - sq2 * sx) / det;
        if (nm < 0) { /* the minimum is pinned at 0 */
            nm = 0;
            ns = sq2 > 0 ? sxq / sq2 : 0;
        }
        if (ns <= 0) break;
        *s = (float)ns;
        *m = (float)nm;
    }
}

/* x ~ s q with q in [-nmax, nmax - 1] (Q3_K, Q6_K): the signed extreme
 * maps to -nmax, then the least-squares s for the chosen q. */
static float fit_signed(const float *x, int n, int nmax)
{
    const float max = signed_max(x, n);
    if (max == 0) return 0;
    float s = max / (float)-nmax;
    double sxq = 0, sq2 = 0;
    for (int i = 0; i < n; i++) {
        int q = clampi(nearest(x[i] / s), -nmax, nmax - 1);
        sxq += (double)x[i] * q;
        sq2 += (double)q * q;
    }
    return sq2 > 0 ? (float)(sxq / sq2) : s;
}

/* Quantizes n sub-block values against a super-block scale of smax steps:
 * d is what is stored (rounded to f16), the steps go to out. */
static float scale_steps(const float *v, int n, int smax, int *out)
{
    float mx = 0;
    for (int i = 0; i < n; i++) mx = fmaxf(mx, v[i]);
    const float d = sdw_f16_to_f32(sdw_f32_to_f16(mx / (float)smax));
    for (int i = 0; i < n; i++) out[i] = d > 0 ? clampi(nearest(v[i] / d), 0, smax) : 0;
    return d;
}

/* The values q of sub-block x given its decoded scale dl and min ml. */
static void quant_affine(const float *x, int n, float dl, float ml, int nmax, int *q)
{
    for (int i = 0; i < n; i++) q[i] = dl > 0 ? clampi(nearest((x[i] + ml) / dl), 0, nmax) : 0;
}

static void enc_q2_k(const float *x, uint8_t *b)
{
    float s[16], m[16];
    int sc[16], mc[16], q[QK_K];
    for (int is = 0; is < 16; is++) fit_affine(x + 16 * is, 16, 3, &s[is], &m[is]);
    const float d = scale_steps(s, 16, 15, sc), dmin = scale_steps(m, 16, 15, mc);
    memset(b, 0, 84);
    put_f16(b + 80, d);
    put_f16(b + 82, dmin);
    for (int is = 0; is < 16; is++) {
        b[is] = (uint8_t)(sc[is] | mc[is] << 4);
        quant_affine(x + 16 * is, 16, d * (float)sc[is], dmin * (float)mc[is], 3, q + 16 * is);
    }
    for (int n = 0; n < 2; n++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) b[16 + n * 32 + l] |= (uint8_t)(q[n * 128 + j * 32 + l] << (2 * j));
}

/* Signed sub-block scales against the super-block's d = extreme / -smin. */
static float signed_steps(const float *s, int n, int smin, int *out)
{
    const float d = sdw_f16_to_f32(sdw_f32_to_f16(signed_max(s, n) / (float)-smin));
    for (int i = 0; i < n; i++) out[i] = d != 0 ? clampi(nearest(s[i] / d), -smin, smin - 1) : 0;
    return d;
}

static void quant_signed(const float *x, int n, float dl, int nmax, int *q)
{
    for (int i = 0; i < n; i++) q[i] = dl != 0 ? clampi(nearest(x[i] / dl), -nmax, nmax - 1) : 0;
}

static void enc_q3_k(const float *x, uint8_t *b)
{
    float s[16];
    int sc[16], q[QK_K];
    for (int is = 0; is < 16; is++) s[is] = fit_signed(x + 16 * is, 16, 4);
    const float d = signed_steps(s, 16, 32, sc);
    memset(b, 0, 110);
    put_f16(b + 108, d);
    for (int is = 0; is < 16; is++) {
        const int v = sc[is] + 32;
        b[96 + (is < 8 ? is : is - 8)] |= (uint8_t)((v & 15) << (is < 8 ? 0 : 4));
        b[96 + 8 + is % 4] |= (uint8_t)((v >> 4) << (2 * (is / 4)));
        quant_signed(x + 16 * is, 16, d * (float)sc[is], 4, q + 16 * is);
    }
    for (int n = 0; n < 2; n++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                const int v = q[n * 128 + j * 32 + l] + 4;
                b[32 + n * 32 + l] |= (uint8_t)((v & 3) << (2 * j));
                b[l] |= (uint8_t)((v >> 2) << (n * 4 + j));
            }
}

/* Q4_K / Q5_K's scale bytes: the inverse of scale_min_k4. */
static void put_scale_min_k4(uint8_t *q, const int *sc, const int *m)
{
    memset(q, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] |= (uint8_t)sc[j];
            q[j + 4] |= (uint8_t)m[j];
        } else {
            q[j + 4] = (uint8_t)((sc[j] & 15) | (m[j] & 15) << 4);
            q[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            q[j] |= (uint8_t)((m[j] >> 4) << 6);
        }
    }
}

/* Q4_K (bits 4) and Q5_K (bits 5): 8 sub-blocks of 32, 6-bit scales and mins. */
static void enc_qk_affine(const float *x, uint8_t *b, int bits)
{
    const int nmax = (1 << bits) - 1;
    float s[8], m[8];
    int sc[8], mc[8], q[QK_K];
    for (int j = 0; j < 8; j++) fit_affine(x + 32 * j, 32, nmax, &s[j], &m[j]);
    const float d = scale_steps(s, 8, 63, sc), dmin = scale_steps(m, 8, 63, mc);
    memset(b, 0, bits == 4 ? 144 : 176);
    put_f16(b, d);
    put_f16(b + 2, dmin);
    put_scale_min_k4(b + 4, sc, mc);
    for (int j = 0; j < 8; j++) quant_affine(x + 32 * j, 32, d * (float)sc[j], dmin * (float)mc[j], nmax, q + 32 * j);
    uint8_t *qs = b + (bits == 4 ? 16 : 48);
    for (int j = 0; j < 8; j++)
        for (int l = 0; l < 32; l++) {
            qs[(j / 2) * 32 + l] |= (uint8_t)((q[j * 32 + l] & 15) << (4 * (j % 2)));
            if (bits == 5) b[16 + l] |= (uint8_t)(((q[j * 32 + l] >> 4) & 1) << j);
        }
}

static void enc_q6_k(const float *x, uint8_t *b)
{
    float s[16];
    int sc[16], q[QK_K];
    for (int is = 0; is < 16; is++) s[is] = fit_signed(x + 16 * is, 16, 32);
    const float d = signed_steps(s, 16, 128, sc);
    memset(b, 0, 210);
    put_f16(b + 208, d);
    for (int is = 0; is < 16; is++) {
        b[192 + is] = (uint8_t)(int8_t)sc[is];
        quant_signed(x + 16 * is, 16, d * (float)sc[is], 32, q + 16 * is);
    }
    for (int h = 0; h < 2; h++)
        for (int qq = 0; qq < 4; qq++)
            for (int l = 0; l < 32; l++) {
                const int v = q[h * 128 + qq * 32 + l] + 32;
                b[h * 64 + (qq % 2) * 32 + l] |= (uint8_t)((v & 15) << (4 * (qq / 2)));
                b[128 + h * 32 + l] |= (uint8_t)((v >> 4) << (2 * qq));
            }
}

/* f32 to a float8 with mbits of mantissa and the given bias, rounding to
 * nearest even; out-of-range values saturate to the largest finite code
 * (a merged weight is better clipped than NaN), NaN stays NaN. */
static uint8_t enc_f8(float x, int mbits, int bias, uint8_t max_code, uint8_t nan_code)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    const uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    if (isnan(x)) return sign | nan_code;
    const float a = fabsf(x), min_normal = ldexpf(1.0f, 1 - bias);
    uint32_t code;
    if (a < min_normal) {
        code = (uint32_t)lrintf(a * ldexpf(1.0f, bias - 1 + mbits)); /* subnormal steps, exact scaling */
    } else {
        uint32_t v = u & 0x7fffffffu;
        const int shift = 23 - mbits;
        v += (1u << (shift - 1)) - 1 + ((v >> shift) & 1);
        code = (v >> shift) - ((uint32_t)(127 - bias) << mbits);
    }
    return sign | (uint8_t)(code > max_code ? max_code : code);
}

void sdw_qtype_quantize_row(sdw_qtype t, const float *src, void *dst, int n)
{
    uint8_t *b = dst;
    const int per = sdw_qtype_block(t, NULL);
    size_t bytes = 0;
    sdw_qtype_block(t, &bytes);
    for (int i = 0; per && i < n; i += per, b += bytes) {
        const float *x = src + i;
        switch (t) {
        case SDW_QT_Q4_0: enc_q4_0(x, b); break;
        case SDW_QT_Q4_1: enc_q4_1(x, b); break;
        case SDW_QT_Q5_0: enc_q5_0(x, b); break;
        case SDW_QT_Q5_1: enc_q5_1(x, b); break;
        case SDW_QT_Q8_0: enc_q8_0(x, b); break;
        case SDW_QT_Q2_K: enc_q2_k(x, b); break;
        case SDW_QT_Q3_K: enc_q3_k(x, b); break;
        case SDW_QT_Q4_K: enc_qk_affine(x, b, 4); break;
        case SDW_QT_Q5_K: enc_qk_affine(x, b, 5); break;
        case SDW_QT_Q6_K: enc_q6_k(x, b); break;
        case SDW_QT_F8_E4M3: *b = enc_f8(*x, 3, 7, 0x7e, 0x7f); break;
        case SDW_QT_F8_E5M2: *b = enc_f8(*x, 2, 15, 0x7b, 0x7e); break;
        case SDW_QT_BF16: {
            uint16_t h = sdw_f32_to_bf16(*x);
            b[0] = (uint8_t)h;
            b[1] = (uint8_t)(h >> 8);
            break;
        }
        case SDW_QT_COUNT: return;
        }
    }
}
