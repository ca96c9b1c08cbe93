/* attention_flash.h: the f32 attention kernel (CPUs with AVX2 or AVX-512);
 * sdw_attention picks it in f32 precision, the oneDNN path serves the rest. */
#ifndef SDW_BACKEND_ATTENTION_FLASH_H
#define SDW_BACKEND_ATTENTION_FLASH_H
#include "backend/cpu_internal.h"

/* sdw_attention's contract, in f32. */
sdw_status sdw_attention_flash_f32(sdw_backend *be, const float *q, int64_t q_stride, const float *k, const float *v,
                                   int64_t kv_stride, int B, int Tq, int Tk, int H, int D, bool causal, float *out);
/* The clone this CPU runs, as the bench names it: "attention_flash f32 avx512
 * (8x32 tiles)" or "attention_flash f32 avx2 (6x16 tiles)". */
const char *sdw_attention_flash_kernel(void);
#endif
