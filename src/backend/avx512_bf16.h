/* avx512_bf16.h: the intrinsics of the AVX-512-BF16 kernels, and the
 * attribute of the functions that use them. A test (SDW_EMULATE_AVX512)
 * compiles the same kernels again on SIMDe's portable emulation of these
 * instructions, so that their logic is checked on CPUs without them;
 * that copy's symbols get names of their own. */
#ifndef SDW_BACKEND_AVX512_BF16_H
#define SDW_BACKEND_AVX512_BF16_H
#ifdef SDW_EMULATE_AVX512
#include "avx512_emulated.h" /* tests/emulated/ */
#define BF16_FN
#define sdw_attention_dp sdw_attention_dp_emulated
#define sdw_linear_dp sdw_linear_dp_emulated
#define sdw_linear_dp_fits sdw_linear_dp_fits_emulated
#define sdw_linear_dp_suits sdw_linear_dp_suits_emulated
#define sdw_qlinear_dp sdw_qlinear_dp_emulated
#define sdw_qlinear_dp_suits sdw_qlinear_dp_suits_emulated
#else
#include <immintrin.h>
#define BF16_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#endif

#include <stdint.h>
#include <string.h>

/* The pair at p (two bf16) in every lane: what vdpbf16ps multiplies a
 * vector of packed pairs with. */
BF16_FN static inline __m512bh sdw_bf16_pair(const uint16_t *p)
{
    int32_t x;
    memcpy(&x, p, sizeof x);
    return (__m512bh)_mm512_set1_epi32(x);
}

/* 32 bf16 whose low 16 are the even elements and high 16 the odd ones (as
 * vcvtne2ps2bf16 writes two vectors), interleaved back into their order. */
BF16_FN static inline __m512i sdw_bf16_interleave(__m512i halves)
{
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                           22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(order, halves);
}

/* Transposes 16 rows of 16 dwords in place: r[i] dword j <-> r[j] dword i. */
BF16_FN static inline __attribute__((always_inline)) void sdw_transpose16_epi32(__m512i r[16])
{
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
    }
}
#endif
