/* linear_avx2.h: f32 linear layers of few rows on AVX2 (linear_avx2.c). */
#ifndef SDW_BACKEND_LINEAR_AVX2_H
#define SDW_BACKEND_LINEAR_AVX2_H
#include "backend/cpu_internal.h"

/* Whether y = x W + b of M rows runs here rather than on oneDNN: f32 on a
 * CPU with AVX2 and no AVX-512 (or oneDNN capped to AVX2), weights stored
 * plain [in, out] (wmd), out a multiple of 16, and a number of rows where
 * oneDNN's gemm, which packs the weights again on every call, falls behind
 * (6 to 160; up to 256 for large layers). */
bool sdw_linear_avx2_suits(const sdw_backend *be, const dnnl_memory_desc_t *wmd, int in, int out, int64_t M);

/* y [M, out] = x [M, in] w [in, out] + bias (or NULL), or y += that when
 * accumulate. */
sdw_status sdw_linear_avx2(sdw_backend *be, const float *x, int64_t M, int in, int out, const float *w,
                           const float *bias, float *y, bool accumulate);
#endif
