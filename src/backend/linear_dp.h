/* linear_dp.h: the GEGLU projection on AVX-512-BF16 dot products (linear_dp.c). */
#ifndef SDW_BACKEND_LINEAR_DP_H
#define SDW_BACKEND_LINEAR_DP_H
#include "backend/linear_bf16.h"

/* Whether the stored weights wmd ([out, in] bf16) are in the layout the
 * kernel reads (AB8b64a2b) and the CPU has the dot products without AMX. */
bool sdw_linear_dp_fits(const dnnl_memory_desc_t *wmd, int in, int out);
/* Whether M rows suit it. */
bool sdw_linear_dp_suits(int64_t M);
/* a->geglu with a->y_bf: the only product it runs. */
sdw_status sdw_linear_dp(const sdw_linear_bf16_args *a);
#endif
