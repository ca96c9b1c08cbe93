/* attention_amx.h: the AMX attention kernel (bf16 precision on CPUs with
 * AMX tiles); sdw_attention picks it, the oneDNN path serves the rest. */
#ifndef SDW_BACKEND_ATTENTION_AMX_H
#define SDW_BACKEND_ATTENTION_AMX_H
#include "backend/cpu_internal.h"

/* sdw_attention's contract, in bf16 (f32 inputs rounded, f32 softmax and
 * sums); the result goes to out (f32) or, when out is NULL, to out_bf (bf16). */
sdw_status sdw_attention_amx(sdw_backend *be, const sdw_attn_args *a, float *out, uint16_t *out_bf);
#endif
