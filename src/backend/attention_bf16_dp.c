/* attention_bf16_dp.c: the two products of the bf16 attention kernel
 * (attention_bf16.c) on AVX-512-BF16 dot products, for CPUs that have them
 * without AMX (AMD Zen 4 and later, Intel Cooper Lake).
 *
 * vdpbf16ps adds to each of 16 f32 lanes the products of one bf16 pair
 * of a with the same lane's pair of b: the packed K and V (attention_bf16.h)
 * hold, in each 64-byte row, 16 keys' (or columns') pairs along the depth
 * (or the keys), so a vector of them times one query's (or probability
 * row's) pair broadcast to every lane adds a depth (key) pair to 16 sums.
 * Both products run on register tiles of 8 rows x 2 or 3 vectors (16 or 24
 * of the 32 registers), the depth loop inside:
 *   S = Q K^T   8 queries x 32 keys, over the D real depths only (the
 *               tiles' padding to 32 depths is skipped: 37% of SD1's 64)
 *   O += P V    8 rows x 48 columns, over the block's keys, O in memory
 * The loops run key (or column) slice outside and rows inside, so a slice
 * of K or V (8-12 KiB) stays in L1 for the four row groups. */
#include "backend/avx512_bf16.h"
#include "backend/attention_bf16.h"
#include <string.h>

#define ROWS SDW_ATT_ROWS
#define KEYS SDW_ATT_KEYS
#define TILE_ELEMS SDW_ATT_TILE_ELEMS
#define R 8 /* rows of a register tile */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* The pair at p (two bf16) in every lane. */
BF16_FN ALWAYS_INLINE __m512bh pair(const uint16_t *p)
{
    int32_t x;
    memcpy(&x, p, sizeof x);
    return (__m512bh)_mm512_set1_epi32(x);
}

BF16_FN ALWAYS_INLINE __m512bh row16(const uint16_t *p) { return (__m512bh)_mm512_loadu_si512(p); }

/* s[R rows, 32 keys] of key tiles k0 and k1 (nc depth chunks each) for q's
 * R rows (Dk apart), over depth pairs 0..pairs. */
BF16_FN ALWAYS_INLINE void scores_tile(float *s, int lds, const uint16_t *q, int Dk, const uint16_t *k0,
                                       const uint16_t *k1, int pairs)
{
    __m512 acc[R][2];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int c = 0; c * 16 < pairs; c++) {
        const int end = pairs - c * 16 < 16 ? pairs - c * 16 : 16;
        const uint16_t *b0 = k0 + (size_t)c * TILE_ELEMS, *b1 = k1 + (size_t)c * TILE_ELEMS;
        const uint16_t *a = q + c * 32;
        for (int e = 0; e < end; e++) {
            const __m512bh v0 = row16(b0 + e * 32), v1 = row16(b1 + e * 32);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const __m512bh x = pair(a + (size_t)r * Dk + 2 * e);
                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, v0);
                acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, v1);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        _mm512_storeu_ps(s + (size_t)r * lds, acc[r][0]);
        _mm512_storeu_ps(s + (size_t)r * lds + 16, acc[r][1]);
    }
}

BF16_FN static void scores(float *s, const uint16_t *q, const uint16_t *kp, int t0, int n, int D, int Dk)
{
    const int nc = Dk / 32, pairs = (D + 1) / 2;
    for (int g = 0; g < n / 32; g++) {
        const uint16_t *k0 = kp + (size_t)(t0 + 2 * g) * nc * TILE_ELEMS, *k1 = k0 + (size_t)nc * TILE_ELEMS;
        for (int r0 = 0; r0 < ROWS; r0 += R)
            scores_tile(s + (size_t)r0 * n + g * 32, n, q + (size_t)r0 * Dk, Dk, k0, k1, pairs);
    }
}

/* o[R rows, NV x 16 columns] (ldo apart) += p[R rows, n keys] (n apart)
 * times NV column tiles from vp (key chunks nt tiles apart). */
BF16_FN ALWAYS_INLINE void values_tile(float *o, int ldo, const uint16_t *p, int n, const uint16_t *vp, int nt,
                                       const int NV)
{
    __m512 acc[R][3];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_loadu_ps(o + (size_t)r * ldo + v * 16);
    for (int kc = 0; kc < n / KEYS; kc++) {
        const uint16_t *b = vp + (size_t)kc * nt * TILE_ELEMS, *a = p + kc * KEYS;
        for (int e = 0; e < KEYS / 2; e++) {
            __m512bh w[3];
#pragma GCC unroll 3
            for (int v = 0; v < NV; v++) w[v] = row16(b + (size_t)v * TILE_ELEMS + e * 32);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const __m512bh x = pair(a + (size_t)r * n + 2 * e);
#pragma GCC unroll 3
                for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], x, w[v]);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(o + (size_t)r * ldo + v * 16, acc[r][v]);
}

BF16_FN static void values(float *o, const uint16_t *p, const uint16_t *vp, int kc0, int n, int nt)
{
    const int ldo = nt * 16;
    const uint16_t *v0 = vp + (size_t)kc0 * nt * TILE_ELEMS;
    for (int j = 0; j < nt; j += 3) {
        const int nv = nt - j < 3 ? nt - j : 3;
        for (int r0 = 0; r0 < ROWS; r0 += R) {
            float *oj = o + (size_t)r0 * ldo + j * 16;
            const uint16_t *pr = p + (size_t)r0 * n, *vj = v0 + (size_t)j * TILE_ELEMS;
            if (nv == 3) values_tile(oj, ldo, pr, n, vj, nt, 3);
            else if (nv == 2) values_tile(oj, ldo, pr, n, vj, nt, 2);
            else values_tile(oj, ldo, pr, n, vj, nt, 1);
        }
    }
}

const sdw_bf16_products sdw_bf16_products_dp = { scores, values, false, "attention_bf16 avx512_bf16 dp" };
