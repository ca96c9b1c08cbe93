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
#define sdw_attention_bf16 sdw_attention_bf16_emulated
#define sdw_bf16_products_dp sdw_bf16_products_dp_emulated
#define sdw_linear_dp sdw_linear_dp_emulated
#define sdw_linear_dp_fits sdw_linear_dp_fits_emulated
#define sdw_linear_dp_suits sdw_linear_dp_suits_emulated
#else
#include <immintrin.h>
#define BF16_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#endif
#endif
