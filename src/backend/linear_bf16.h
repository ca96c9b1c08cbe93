/* linear_bf16.h: what the bf16 linear kernels on our own products share
 * (linear_amx.c on AMX tiles, linear_dp.c on AVX-512-BF16 dot products):
 * their arguments and the GEGLU epilogue. */
#ifndef SDW_BACKEND_LINEAR_BF16_H
#define SDW_BACKEND_LINEAR_BF16_H
#include "backend/avx512_bf16.h"
#include "backend/cpu_internal.h"

/* y[M, N] = a[M, K] w^T + bias: a bf16 rows of K; w in the inner product's
 * stored layout (the kernel's own); the result written as bf16 (y_bf), added to y
 * (accumulate), or stored in y. With geglu, y_bf [M, N / 2] gets
 * GEGLU(y): its first half times the GELU of its second. */
typedef struct {
    const uint16_t *a;
    int64_t M;
    int K, N;
    const uint16_t *w;
    const float *bias; /* N, or NULL */
    float *y;
    uint16_t *y_bf;
    bool accumulate;
    bool geglu;
} sdw_linear_bf16_args;

/* exp(x) as elementwise.c's vexp (Cephes expf), 16 lanes; NaN passes. */
BF16_FN static inline __m512 sdw_exp16(__m512 x)
{
    const __m512 magic = _mm512_set1_ps(12582912.0f + 127.0f);
    const __m512 xc = _mm512_min_ps(_mm512_set1_ps(88.0f), _mm512_max_ps(_mm512_set1_ps(-87.0f), x));
    const __m512 t = _mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), magic), n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), xc);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    return _mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(t), 23)));
}

/* v * gelu(g), gelu by erf as elementwise.c's (Abramowitz & Stegun 7.1.26). */
BF16_FN static inline __m512 sdw_geglu16(__m512 v, __m512 g)
{
    const __m512 x = _mm512_mul_ps(g, _mm512_set1_ps(0.70710678118654752f)), a = _mm512_abs_ps(x);
    const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), a,
                                                                          _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    __m512 e = _mm512_fnmadd_ps(_mm512_mul_ps(p, t), sdw_exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a))),
                                _mm512_set1_ps(1.0f));
    e = _mm512_mask_sub_ps(e, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps(), e);
    const __m512 gelu = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), g), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    return _mm512_mul_ps(v, gelu);
}
#endif
