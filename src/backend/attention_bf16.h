/* attention_bf16.h: the bf16 attention kernels. On CPUs with AMX tiles,
 * attention_bf16.c's driver over the products of attention_bf16_amx.c
 * (sdw_bf16_products: the layouts below); on CPUs with AVX-512-BF16 dot
 * products and no AMX, attention_dp.c (queries in the vector lanes, its own
 * layouts). sdw_attention picks one; the oneDNN path serves the rest.
 *
 * The products read packed operands, in the tiles' layouts:
 *  - a block's queries: ROWS rows of Dk bf16 (D zero-padded to 32s);
 *  - K of one head: tile (key tile t of 16 keys, depth chunk c of 32) holds,
 *    in row p, the pairs (K[16t + n][32c + 2p], K[16t + n][32c + 2p + 1]) for
 *    n = 0..15, TILE_ELEMS apart, chunks inside key tiles;
 *  - V of one head: tile (key chunk kc of 32 keys, column tile j of 16)
 *    holds, in row p, the pairs (V[32kc + 2p][16j + n], V[32kc + 2p + 1][16j + n]),
 *    column tiles inside key chunks; column D is 1 for every real key, so
 *    O's column D sums the bf16 P the products used;
 *  - P: ROWS rows of n bf16.
 * Each 32-bit pair is what AMX's bf16 dot product multiplies. */
#ifndef SDW_BACKEND_ATTENTION_BF16_H
#define SDW_BACKEND_ATTENTION_BF16_H
#include "backend/avx512_bf16.h"
#include "backend/cpu_internal.h"

#define SDW_ATT_ROWS 32        /* queries per block: two AMX row tiles */
#define SDW_ATT_KEYS 32        /* keys per chunk of P V: one tile's depth in bf16 */
#define SDW_ATT_TILE_ELEMS 512 /* bf16 elements of one packed 16 x 32 tile */

typedef struct {
    /* s[ROWS, n] = q[ROWS, Dk] K^T for n keys (a multiple of 32) from key
     * tile t0, of which D depths are real; s f32 rows of n. */
    void (*scores)(float *s, const uint16_t *q, const uint16_t *kp, int t0, int n, int D, int Dk);
    /* o[ROWS, nt * 16] += p[ROWS, n] V for n keys (a multiple of 32) from
     * key chunk kc0; o f32 rows of nt * 16. */
    void (*values)(float *o, const uint16_t *p, const uint16_t *vp, int kc0, int n, int nt);
    bool tiles; /* AMX: each thread configures the tiles first */
    const char *name; /* as the bench names the kernel */
} sdw_bf16_products;

extern const sdw_bf16_products sdw_bf16_products_amx; /* attention_bf16_amx.c */

/* 2^t: vreduceps gives f = t - floor(t) in [0, 1), a degree-3 minimax fit
 * of 2^f (relative error 7.5e-5; P is rounded to bf16 next, 2e-3) and
 * vscalefps multiplies by 2^floor(t), flushing to 0 far below. */
BF16_FN static inline __m512 sdw_exp2_ps(__m512 t)
{
    const __m512 f = _mm512_reduce_ps(t, 0x09); /* round down, no precision exception */
    __m512 p = _mm512_set1_ps(7.802452266e-02f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.260671554e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.958335405e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.999252186e-01f));
    return _mm512_scalef_ps(p, t);
}

/* sdw_attention's contract, in bf16 (f32 inputs rounded, f32 softmax and
 * sums) on the given products; the result goes to out (f32) or, when out is
 * NULL, to out_bf (bf16). */
sdw_status sdw_attention_bf16(sdw_backend *be, const sdw_attn_args *a, const sdw_bf16_products *prod, float *out,
                              uint16_t *out_bf);
/* The same on AVX-512-BF16 dot products, queries in the lanes
 * (attention_dp.c). */
sdw_status sdw_attention_dp(sdw_backend *be, const sdw_attn_args *a, float *out, uint16_t *out_bf);
#endif
