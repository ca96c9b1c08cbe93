/* linear_dp_tile.h: the register tile of the bf16 products on AVX-512-BF16
 * dot products (linear_dp.c's GEGLU projection, linear_quant_dp.c's
 * compact-weight layers). Both read weights stored as AB8b64a2b's groups
 * of 64 outputs: for one input pair, the pairs of 16 outputs are one
 * vector (what vdpbf16ps multiplies with a row's pair broadcast), and the
 * next input pair's are 128 bf16 further. */
#ifndef SDW_BACKEND_LINEAR_DP_TILE_H
#define SDW_BACKEND_LINEAR_DP_TILE_H
#include "backend/linear_bf16.h"

#define SDW_DP_ROWS 6 /* rows of a register tile: 6 x 4 vectors, 24 of the 32 registers */

/* What a tile does with its sums after the last input pair. */
typedef enum {
    SDW_DP_GEGLU, /* 32 bf16 a row: v * gelu(g), the values in vectors 0-1, their gates in 2-3 */
    SDW_DP_STORE, /* 64 f32 a row */
    SDW_DP_ADD,   /* 64 f32 a row, added to dst */
    SDW_DP_BF16,  /* 64 bf16 a row */
} sdw_dp_out;

/* rows (<= SDW_DP_ROWS) rows of a times the four column vectors at w[],
 * over input pairs p0..p1 (row i's pair p at a + i * rs + p * ps: rows of
 * a matrix, or a packed tile): from the bias (first; NULL: zero) or the
 * partial sums in part (64 a row), back to part or, after the last pairs,
 * written to dst (ld elements apart) as `out` says. */
BF16_FN static inline __attribute__((always_inline)) void
sdw_dp_tile(const uint16_t *a, size_t rs, size_t ps, const uint16_t *const w[4], const float *const bias[4],
            float *part, int p0, int p1, bool first, bool last, void *dst, size_t ld, const int rows,
            const sdw_dp_out out)
{
    __m512 acc[SDW_DP_ROWS][4];
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            acc[r][v] = !first ? _mm512_loadu_ps(part + r * 64 + 16 * v)
                        : bias[v] ? _mm512_loadu_ps(bias[v]) : _mm512_setzero_ps();
    for (int p = p0; p < p1; p++) {
        const size_t at = (size_t)p * 128;
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(w[0] + at), b1 = (__m512bh)_mm512_loadu_si512(w[1] + at);
        const __m512bh b2 = (__m512bh)_mm512_loadu_si512(w[2] + at), b3 = (__m512bh)_mm512_loadu_si512(w[3] + at);
#pragma GCC unroll 6
        for (int r = 0; r < rows; r++) {
            const __m512bh x = sdw_bf16_pair(a + (size_t)r * rs + (size_t)p * ps);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
            acc[r][2] = _mm512_dpbf16_ps(acc[r][2], x, b2);
            acc[r][3] = _mm512_dpbf16_ps(acc[r][3], x, b3);
        }
    }
    if (!last) {
#pragma GCC unroll 6
        for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) _mm512_storeu_ps(part + r * 64 + 16 * v, acc[r][v]);
        return;
    }
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++) {
        uint16_t *hb = (uint16_t *)dst + (size_t)r * ld;
        float *hf = (float *)dst + (size_t)r * ld;
        switch (out) {
        case SDW_DP_GEGLU:
            _mm512_storeu_si512(hb, (__m512i)_mm512_cvtne2ps_pbh(sdw_geglu16(acc[r][1], acc[r][3]),
                                                                 sdw_geglu16(acc[r][0], acc[r][2])));
            break;
        case SDW_DP_BF16:
            _mm512_storeu_si512(hb, (__m512i)_mm512_cvtne2ps_pbh(acc[r][1], acc[r][0]));
            _mm512_storeu_si512(hb + 32, (__m512i)_mm512_cvtne2ps_pbh(acc[r][3], acc[r][2]));
            break;
        case SDW_DP_ADD:
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                _mm512_storeu_ps(hf + 16 * v, _mm512_add_ps(_mm512_loadu_ps(hf + 16 * v), acc[r][v]));
            break;
        case SDW_DP_STORE:
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) _mm512_storeu_ps(hf + 16 * v, acc[r][v]);
            break;
        }
    }
}
/* Rows s0 .. s1 through the tiles over input pairs p0 .. p1, 6 rows at a
 * time, then the rest: the tile of row s0 + 6 t + i reads a + t * ts (rows
 * i * rs apart, pairs ps apart), keeps its sums at part + (r - s0) * 64
 * and writes its outputs at dst + r * ld elements. */
BF16_FN static inline __attribute__((always_inline)) void
sdw_dp_rows(const uint16_t *a, size_t ts, size_t rs, size_t ps, const uint16_t *const w[4],
            const float *const bias[4], float *part, int64_t s0, int64_t s1, int p0, int p1, bool first, bool last,
            void *dst, size_t ld, const sdw_dp_out out)
{
    const size_t esz = out == SDW_DP_STORE || out == SDW_DP_ADD ? sizeof(float) : sizeof(uint16_t);
    int64_t r = s0;
#define SDW_DP_TILE(rows)                                                                                     \
    sdw_dp_tile(a + (size_t)(r - s0) / SDW_DP_ROWS * ts, rs, ps, w, bias, part + (r - s0) * 64, p0, p1,       \
                first, last, (char *)dst + (size_t)r * ld * esz, ld, rows, out)
    for (; r + SDW_DP_ROWS <= s1; r += SDW_DP_ROWS) SDW_DP_TILE(SDW_DP_ROWS);
    switch (s1 - r) { /* the last rows */
    case 5: SDW_DP_TILE(5); break;
    case 4: SDW_DP_TILE(4); break;
    case 3: SDW_DP_TILE(3); break;
    case 2: SDW_DP_TILE(2); break;
    case 1: SDW_DP_TILE(1); break;
    default: break;
    }
#undef SDW_DP_TILE
}
#endif
