/* gemm_avx2.h: the f32 register tile our AVX2 kernels multiply with
 * (conv_wino_avx2.c, linear_avx2.c): 6 rows x 16 columns of sums in 12 of
 * the 16 ymm registers, a row's value broadcast against two vectors of a
 * row of b per step of the depth. */
#ifndef SDW_BACKEND_GEMM_AVX2_H
#define SDW_BACKEND_GEMM_AVX2_H
#include <immintrin.h>
#include <stddef.h>

#define AVX2_FN __attribute__((target("avx2,fma")))
#define SDW_GEMM_MR 6  /* rows of the tile */
#define SDW_GEMM_NR 16 /* columns of the tile: two vectors */

/* The tile's sums, named one by one: gcc keeps an array of them in memory,
 * stored at every step of the loop. */
typedef struct {
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
} sdw_gemm_tile;

/* t = a[6, K] (rows lda apart) b[K, 16] (rows ldb apart), K > 0. */
AVX2_FN static inline sdw_gemm_tile sdw_gemm_6x16(const float *a, size_t lda, const float *b, size_t ldb, int K)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *end = a + K;
    do {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        __m256 x = _mm256_broadcast_ss(a);
        c00 = _mm256_fmadd_ps(x, b0, c00), c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a + lda);
        c10 = _mm256_fmadd_ps(x, b0, c10), c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a + 2 * lda);
        c20 = _mm256_fmadd_ps(x, b0, c20), c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a + 3 * lda);
        c30 = _mm256_fmadd_ps(x, b0, c30), c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(a + 4 * lda);
        c40 = _mm256_fmadd_ps(x, b0, c40), c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(a + 5 * lda);
        c50 = _mm256_fmadd_ps(x, b0, c50), c51 = _mm256_fmadd_ps(x, b1, c51);
        a++;
        b += ldb;
    } while (a < end);
    return (sdw_gemm_tile){ c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51 };
}

/* Row r of the tile (its two vectors). */
AVX2_FN static inline void sdw_gemm_row(const sdw_gemm_tile *t, int r, __m256 *lo, __m256 *hi)
{
    const __m256 *v = &t->c00;
    *lo = v[2 * r];
    *hi = v[2 * r + 1];
}
#endif
