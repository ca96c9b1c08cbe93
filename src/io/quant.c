/* quant.c: see quant.h. One small decoder per GGUF block type, written from
 * the layouts of ggml's block_q* structs (little-endian fields, f16 scales)
 * and the formulas of llama.cpp's dequantize_row_q* / gguf-py's quants.py.
 *
 * Exactness: the reference computes in f32 in a fixed order, e.g. Q4_K's
 * (d * sc) * q - (dmin * m), each product rounded. The products here are kept
 * in that order and every multiply-then-add is split over two statements, so
 * no compiler contracts it into an FMA (which would round once, not twice). */
#include "io/quant.h"
#include "core/half.h"
#include <math.h>
#include <string.h>

#define QK 32     /* elements in a Q4_0 ... Q8_0 block */
#define QK_K 256  /* elements in a K-quant super-block */

static float f16_at(const uint8_t *p)
{
    return sdw_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

static uint32_t u32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

float sdw_f8_e4m3_to_f32(uint8_t b)
{
    uint32_t sign = (uint32_t)(b >> 7) << 31, e = (b >> 3) & 15, m = b & 7;
    float v;
    if (e == 15 && m == 7) {
        v = NAN;                                  /* e4m3fn spends the top code on NaN, not infinity */
    } else if (e == 0) {
        v = (float)m * 0x1p-9f;                   /* subnormal: m/8 * 2^-6 */
    } else {
        uint32_t u = (e - 7 + 127) << 23 | m << 20;
        memcpy(&v, &u, 4);
    }
    uint32_t u;
    memcpy(&u, &v, 4);
    u = (u & 0x7fffffffu) | sign;
    memcpy(&v, &u, 4);
    return v;
}

float sdw_f8_e5m2_to_f32(uint8_t b)
{
    return sdw_f16_to_f32((uint16_t)(b << 8));   /* e5m2 is an f16 with 8 mantissa bits dropped */
}

/* ---- 32-element blocks ---- */

/* Q4_0: f16 d, 16 bytes; low nibbles are elements 0..15, high 16..31; x = d (q - 8). */
static void dq_q4_0(const uint8_t *b, float *y)
{
    float d = f16_at(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = d * (float)((qs[j] & 15) - 8);
        y[j + QK / 2] = d * (float)((qs[j] >> 4) - 8);
    }
}

/* Q4_1: f16 d, f16 m, 16 bytes of nibbles as Q4_0; x = d q + m. */
static void dq_q4_1(const uint8_t *b, float *y)
{
    float d = f16_at(b), m = f16_at(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < QK / 2; j++) {
        float lo = d * (float)(qs[j] & 15), hi = d * (float)(qs[j] >> 4);
        y[j] = lo + m;
        y[j + QK / 2] = hi + m;
    }
}

/* Q5_0: f16 d, 32 high bits (bit i for element i), nibbles as Q4_0; x = d (q - 16). */
static void dq_q5_0(const uint8_t *b, float *y)
{
    float d = f16_at(b);
    uint32_t qh = u32_at(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < QK / 2; j++) {
        int lo = (qs[j] & 15) | (int)((qh >> j) & 1) << 4;
        int hi = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = d * (float)(lo - 16);
        y[j + QK / 2] = d * (float)(hi - 16);
    }
}

/* Q5_1: f16 d, f16 m, high bits and nibbles as Q5_0; x = d q + m. */
static void dq_q5_1(const uint8_t *b, float *y)
{
    float d = f16_at(b), m = f16_at(b + 2);
    uint32_t qh = u32_at(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < QK / 2; j++) {
        int lo = (qs[j] & 15) | (int)((qh >> j) & 1) << 4;
        int hi = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        float plo = d * (float)lo, phi = d * (float)hi;
        y[j] = plo + m;
        y[j + QK / 2] = phi + m;
    }
}

/* Q8_0: f16 d, 32 int8; x = d q. */
static void dq_q8_0(const uint8_t *b, float *y)
{
    float d = f16_at(b);
    for (int j = 0; j < QK; j++) y[j] = d * (float)(int8_t)b[2 + j];
}

/* ---- 256-element super-blocks ---- */

/* Q2_K: 16 scale bytes (low nibble scale, high nibble min, one per 16
 * elements), 64 bytes of 2-bit values, f16 d, f16 dmin. Element e sits in
 * byte (e / 128) * 32 + e % 32 at bit 2 * ((e / 32) % 4); x = (d sc) q - dmin m. */
static void dq_q2_k(const uint8_t *b, float *y)
{
    const uint8_t *sc = b, *qs = b + 16;
    float d = f16_at(b + 80), dmin = f16_at(b + 82);
    for (int is = 0; is < QK_K / 16; is++) {
        float dl = d * (float)(sc[is] & 15), ml = dmin * (float)(sc[is] >> 4);
        /* a sub-block of 16 stays inside one 32-element run: one byte range, one shift */
        int e0 = is * 16, shift = 2 * ((e0 / 32) % 4);
        const uint8_t *q = qs + (e0 / 128) * 32 + e0 % 32;
        for (int k = 0; k < 16; k++) {
            float p = dl * (float)((q[k] >> shift) & 3);
            y[e0 + k] = p - ml;
        }
    }
}

/* Q3_K: 32 bytes of high bits (element e: bit e / 32 of byte e % 32), 64
 * bytes of 2-bit values (placed as Q2_K), 12 bytes holding 16 6-bit scales
 * (low nibbles in bytes 0..7, two high bits each in bytes 8..11), f16 d.
 * x = (d (sc - 32)) (q - (high bit ? 0 : 4)). */
static void dq_q3_k(const uint8_t *b, float *y)
{
    const uint8_t *hm = b, *qs = b + 32, *sc = b + 96;
    float d = f16_at(b + 108);
    for (int is = 0; is < QK_K / 16; is++) {
        int lo = is < 8 ? sc[is] & 15 : sc[is - 8] >> 4;
        int hi = (sc[8 + is % 4] >> (2 * (is / 4))) & 3;
        float dl = d * (float)((lo | hi << 4) - 32);
        int e0 = is * 16, shift = 2 * ((e0 / 32) % 4), bit = e0 / 32;
        const uint8_t *q = qs + (e0 / 128) * 32 + e0 % 32, *h = hm + e0 % 32;
        for (int k = 0; k < 16; k++) {
            int v = ((q[k] >> shift) & 3) - (((h[k] >> bit) & 1) ? 0 : 4);
            y[e0 + k] = dl * (float)v;
        }
    }
}

/* The 8 6-bit scales and mins of Q4_K / Q5_K packed in 12 bytes (ggml's
 * get_scale_min_k4): the first four whole in bytes 0..3 / 4..7, the last four
 * as a nibble in bytes 8..11 plus the top two bits of bytes 0..3 / 4..7. */
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

/* Q4_K: f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles: sub-block j of
 * 32 elements is byte (j / 2) * 32 + l, low nibble for even j.
 * x = (d sc) q - (dmin m). */
static void dq_q4_k(const uint8_t *b, float *y)
{
    float d = f16_at(b), dmin = f16_at(b + 2);
    const uint8_t *scales = b + 4, *qs = b + 16;
    for (int j = 0; j < QK_K / 32; j++) {
        int sc, m;
        scale_min_k4(j, scales, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            int q = (qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 15;
            float p = dl * (float)q;
            y[j * 32 + l] = p - ml;
        }
    }
}

/* Q5_K: as Q4_K plus 32 bytes of fifth bits before the nibbles: sub-block j
 * takes bit j of byte l. */
static void dq_q5_k(const uint8_t *b, float *y)
{
    float d = f16_at(b), dmin = f16_at(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
    for (int j = 0; j < QK_K / 32; j++) {
        int sc, m;
        scale_min_k4(j, scales, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            int q = ((qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 15) | ((qh[l] >> j) & 1) << 4;
            float p = dl * (float)q;
            y[j * 32 + l] = p - ml;
        }
    }
}

/* Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 int8 scales,
 * f16 d. In each half h of 128 elements, element r takes nibble r / 64 of
 * byte h * 64 + r % 64 and bits 2 (r / 32) of byte h * 32 + r % 32.
 * x = (d sc) (q - 32). */
static void dq_q6_k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = f16_at(b + 208);
    for (int is = 0; is < QK_K / 16; is++) {
        float dl = d * (float)sc[is];
        int e0 = is * 16, r0 = e0 % 128;
        const uint8_t *lo = ql + (e0 / 128) * 64 + r0 % 64, *hi = qh + (e0 / 128) * 32 + r0 % 32;
        int lshift = 4 * (r0 / 64), hshift = 2 * (r0 / 32);
        for (int k = 0; k < 16; k++) {
            int q = ((lo[k] >> lshift) & 15) | ((hi[k] >> hshift) & 3) << 4;
            y[e0 + k] = dl * (float)(q - 32);
        }
    }
}

typedef void (*block_fn)(const uint8_t *, float *);

static block_fn block_decoder(sdw_st_dtype t)
{
    switch (t) {
    case SDW_ST_Q4_0: return dq_q4_0;
    case SDW_ST_Q4_1: return dq_q4_1;
    case SDW_ST_Q5_0: return dq_q5_0;
    case SDW_ST_Q5_1: return dq_q5_1;
    case SDW_ST_Q8_0: return dq_q8_0;
    case SDW_ST_Q2_K: return dq_q2_k;
    case SDW_ST_Q3_K: return dq_q3_k;
    case SDW_ST_Q4_K: return dq_q4_k;
    case SDW_ST_Q5_K: return dq_q5_k;
    case SDW_ST_Q6_K: return dq_q6_k;
    default: return NULL;
    }
}

bool sdw_is_quantized(sdw_st_dtype t)
{
    return t == SDW_ST_F8_E4M3 || t == SDW_ST_F8_E5M2 || block_decoder(t);
}

bool sdw_dequantize(sdw_st_dtype t, const void *src, float *dst, size_t n)
{
    const uint8_t *p = src;
    if (t == SDW_ST_F8_E4M3 || t == SDW_ST_F8_E5M2) {
        float lut[256];   /* 256 codes: a table is cheaper than decoding each byte */
        for (int b = 0; b < 256; b++)
            lut[b] = t == SDW_ST_F8_E4M3 ? sdw_f8_e4m3_to_f32((uint8_t)b) : sdw_f8_e5m2_to_f32((uint8_t)b);
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) dst[i] = lut[p[i]];
        return true;
    }
    block_fn fn = block_decoder(t);
    if (!fn) return false;
    size_t bytes, per = sdw_st_dtype_block(t, &bytes), nb = n / per;
#pragma omp parallel for schedule(static) if (nb > 2048)
    for (size_t i = 0; i < nb; i++) fn(p + i * bytes, dst + i * per);
    return true;
}
