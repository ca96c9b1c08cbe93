/* attention_bf16_amx.c: the two products of the bf16 attention kernel
 * (attention_bf16.c) on AMX tiles: per step, a 32 x 32 block of sums in
 * tiles 0-3, the queries (or probabilities) in 4-5 and K (or V) in 6-7,
 * in the packed layouts attention_bf16.h describes. */
#include "backend/attention_bf16.h"
#include "backend/amx.h"
#include <immintrin.h>

#define KEYS SDW_ATT_KEYS
#define TILE_ELEMS SDW_ATT_TILE_ELEMS

/* s[32, n] = q[32, Dk] k^T for n keys (a multiple of 32) from key tile t0;
 * q bf16 rows of Dk, s f32 rows of n. The tiles' depth is 32: the padding
 * of D to Dk is multiplied too. */
AMX_FN static void scores(float *s, const uint16_t *q, const uint16_t *kp, int t0, int n, int D, int Dk)
{
    (void)D;
    const int nc = Dk / 32;
    const size_t ldq = (size_t)Dk * 2, lds = (size_t)n * 4;
    for (int t = 0; t < n / 16; t += 2) {
        const uint16_t *k0 = kp + (size_t)(t0 + t) * nc * TILE_ELEMS;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int c = 0; c < nc; c++) {
            _tile_loadd(4, q + c * 32, ldq);
            _tile_loadd(5, q + 16 * (size_t)Dk + c * 32, ldq);
            _tile_loadd(6, k0 + (size_t)c * TILE_ELEMS, 64);
            _tile_loadd(7, k0 + (size_t)(nc + c) * TILE_ELEMS, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
        _tile_stored(0, s + t * 16, lds);
        _tile_stored(1, s + t * 16 + 16, lds);
        _tile_stored(2, s + 16 * (size_t)n + t * 16, lds);
        _tile_stored(3, s + 16 * (size_t)n + t * 16 + 16, lds);
    }
}

/* o[32, nt * 16] += p[32, n] v for n keys (a multiple of 32) from key chunk
 * kc0; p bf16 rows of n; two column tiles at a time, o kept in f32 memory. */
AMX_FN static void values(float *o, const uint16_t *p, const uint16_t *vp, int kc0, int n, int nt)
{
    const size_t ldp = (size_t)n * 2, ldo = (size_t)nt * 16 * 4;
    float *o1 = o + 16 * (size_t)nt * 16;
    for (int j = 0; j < nt; j += 2) {
        const bool two = j + 1 < nt;
        _tile_loadd(0, o + j * 16, ldo);
        _tile_loadd(2, o1 + j * 16, ldo);
        if (two) {
            _tile_loadd(1, o + j * 16 + 16, ldo);
            _tile_loadd(3, o1 + j * 16 + 16, ldo);
        }
        for (int kc = 0; kc < n / KEYS; kc++) {
            const uint16_t *v0 = vp + ((size_t)(kc0 + kc) * nt + j) * TILE_ELEMS;
            _tile_loadd(4, p + kc * KEYS, ldp);
            _tile_loadd(5, p + 16 * (size_t)n + kc * KEYS, ldp);
            _tile_loadd(6, v0, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(2, 5, 6);
            if (two) {
                _tile_loadd(7, v0 + TILE_ELEMS, 64);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(3, 5, 7);
            }
        }
        _tile_stored(0, o + j * 16, ldo);
        _tile_stored(2, o1 + j * 16, ldo);
        if (two) {
            _tile_stored(1, o + j * 16 + 16, ldo);
            _tile_stored(3, o1 + j * 16 + 16, ldo);
        }
    }
}

const sdw_bf16_products sdw_bf16_products_amx = { .scores = scores, .values = values, .tiles = true,
                                                  .name = "attention_bf16 amx" };
