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
 * of K or V (8-12 KiB) stays in L1 for the four row groups.
 *
 * The softmax runs on S while it is still in registers (scores_softmax):
 * against each row's running max as it stands, raised only when a score
 * passes it by 2^8, so the scores are never stored and read back. That
 * took SD1.5's 4096 x 4096 x 40 attention from 64% to 71% of the paired
 * bf16 peak on a 2-core Zen 5 (1024 x 1024 x 80: 64% -> 70%). */
#include "backend/avx512_bf16.h"
#include "backend/attention_bf16.h"
#include <math.h>

#define ROWS SDW_ATT_ROWS
#define KEYS SDW_ATT_KEYS
#define TILE_ELEMS SDW_ATT_TILE_ELEMS
#define R 8 /* rows of a register tile */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

BF16_FN ALWAYS_INLINE __m512bh row16(const uint16_t *p) { return (__m512bh)_mm512_loadu_si512(p); }

/* acc[R rows][32 keys] of key tiles k0 and k1 (nc depth chunks each) for
 * q's R rows (Dk apart), over depth pairs 0..pairs. */
BF16_FN ALWAYS_INLINE void scores_acc(__m512 acc[R][2], const uint16_t *q, int Dk, const uint16_t *k0,
                                      const uint16_t *k1, int pairs)
{
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
                const __m512bh x = sdw_bf16_pair(a + (size_t)r * Dk + 2 * e);
                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, v0);
                acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, v1);
            }
        }
    }
}

BF16_FN ALWAYS_INLINE void scores_tile(float *s, int lds, const uint16_t *q, int Dk, const uint16_t *k0,
                                       const uint16_t *k1, int pairs)
{
    __m512 acc[R][2];
    scores_acc(acc, q, Dk, k0, k1, pairs);
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

/* P may reach 2^SLACK against a row's running max before the max is raised:
 * bf16 holds its 8 bits at any size, and the raises, each a rescaling of
 * the row's outputs so far, become rare past a row's first keys. */
#define SLACK 8.0f

/* 32 bf16 times a, rounded again: the even and the odd elements widened
 * apart, as vcvtne2ps2bf16 then packs them, and put back in order. */
BF16_FN ALWAYS_INLINE __m512i scale_bf16(__m512i x, __m512 a)
{
    const __m512 even = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(x, 16)), a);
    const __m512 odd = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32((int)0xffff0000u))), a);
    return sdw_bf16_interleave((__m512i)_mm512_cvtne2ps_pbh(odd, even));
}

/* A tile (R rows of 32 scores in st) where some row's scores pass its
 * threshold thr = (m + SLACK) / c: those rows' max m rises to the tile's,
 * their outputs so far and their P of this block so far (done keys) are
 * scaled down to it; then every row's P of the tile. */
BF16_FN __attribute__((noinline)) static void raise_tile(const float *st, uint16_t *p, int n, int done, float c,
                                                        float *m, float *thr, float *o, int od, __mmask16 v0,
                                                        __mmask16 v1)
{
    const __m512 vc = _mm512_set1_ps(c);
    for (int r = 0; r < R; r++) {
        const __m512 s0 = _mm512_loadu_ps(st + r * 32), s1 = _mm512_loadu_ps(st + r * 32 + 16);
        uint16_t *pr = p + (size_t)r * n;
        const float mx = _mm512_reduce_max_ps(_mm512_max_ps(s0, s1));
        if (mx > thr[r]) {
            const float bm = mx * c;
            if (m[r] != -INFINITY) {
                const __m512 a = _mm512_set1_ps(exp2f(m[r] - bm));
                float *orow = o + (size_t)r * od;
                for (int d = 0; d < od; d += 16)
                    _mm512_storeu_ps(orow + d, _mm512_mul_ps(_mm512_loadu_ps(orow + d), a));
                for (int i = 0; i < done; i += 32)
                    _mm512_storeu_si512(pr + i, scale_bf16(_mm512_loadu_si512(pr + i), a));
            }
            m[r] = bm;
            thr[r] = (bm + SLACK) / c;
        }
        const __m512 vm = _mm512_set1_ps(m[r]);
        const __m512 e0 = _mm512_maskz_mov_ps(v0, sdw_exp2_ps(_mm512_fmsub_ps(s0, vc, vm)));
        const __m512 e1 = _mm512_maskz_mov_ps(v1, sdw_exp2_ps(_mm512_fmsub_ps(s1, vc, vm)));
        _mm512_storeu_si512(pr + done, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
    }
}

/* P of 32 keys for R rows from the scores in registers, against each row's
 * running max as it stands, unless a score passes its row's threshold;
 * keys outside v0 / v1 (past the last) get P = 0. */
BF16_FN ALWAYS_INLINE void softmax_tile(__m512 acc[R][2], uint16_t *p, int n, int done, float c, float *m,
                                        float *thr, float *o, int od, __mmask16 v0, __mmask16 v1)
{
    __mmask16 raise = 0;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        const __m512 t = _mm512_set1_ps(thr[r]);
        raise |= (__mmask16)((v0 & _mm512_cmp_ps_mask(acc[r][0], t, _CMP_GT_OQ)) |
                             (v1 & _mm512_cmp_ps_mask(acc[r][1], t, _CMP_GT_OQ)));
    }
    if (raise) {
        float st[R * 32];
        const __m512 none = _mm512_set1_ps(-INFINITY);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            _mm512_storeu_ps(st + r * 32, _mm512_mask_mov_ps(none, v0, acc[r][0]));
            _mm512_storeu_ps(st + r * 32 + 16, _mm512_mask_mov_ps(none, v1, acc[r][1]));
        }
        raise_tile(st, p, n, done, c, m, thr, o, od, v0, v1);
        return;
    }
    const __m512 vc = _mm512_set1_ps(c);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        const __m512 vm = _mm512_set1_ps(m[r]);
        const __m512 e0 = _mm512_maskz_mov_ps(v0, sdw_exp2_ps(_mm512_fmsub_ps(acc[r][0], vc, vm)));
        const __m512 e1 = _mm512_maskz_mov_ps(v1, sdw_exp2_ps(_mm512_fmsub_ps(acc[r][1], vc, vm)));
        _mm512_storeu_si512(p + (size_t)r * n + done, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
    }
}

BF16_FN static void scores_softmax(uint16_t *p, const uint16_t *q, const uint16_t *kp, int t0, int n, int valid,
                                   int D, int Dk, float c, float *m, float *o, int od)
{
    const int nc = Dk / 32, pairs = (D + 1) / 2;
    float thr[ROWS];
    for (int r = 0; r < ROWS; r++) thr[r] = (m[r] + SLACK) / c;
    for (int g = 0; g < n / 32; g++) {
        const uint16_t *k0 = kp + (size_t)(t0 + 2 * g) * nc * TILE_ELEMS, *k1 = k0 + (size_t)nc * TILE_ELEMS;
        const int left = valid - g * 32; /* >= 1: n passes valid by less than a tile */
        const __mmask16 v0 = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
        const __mmask16 v1 = left >= 32 ? 0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
        for (int r0 = 0; r0 < ROWS; r0 += R) {
            __m512 acc[R][2];
            scores_acc(acc, q + (size_t)r0 * Dk, Dk, k0, k1, pairs);
            if (left >= 32) /* constant masks: the common tile compiled without them */
                softmax_tile(acc, p + (size_t)r0 * n, n, g * 32, c, m + r0, thr + r0, o + (size_t)r0 * od, od, 0xffff,
                             0xffff);
            else
                softmax_tile(acc, p + (size_t)r0 * n, n, g * 32, c, m + r0, thr + r0, o + (size_t)r0 * od, od, v0, v1);
        }
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
                const __m512bh x = sdw_bf16_pair(a + (size_t)r * n + 2 * e);
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

const sdw_bf16_products sdw_bf16_products_dp = { .scores = scores, .values = values, .scores_softmax = scores_softmax,
                                                 .name = "attention_bf16 avx512_bf16 dp" };
