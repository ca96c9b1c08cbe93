/* linear_amx.h: bf16 linear layers on AMX tiles (linear_amx.c). */
#ifndef SDW_BACKEND_LINEAR_AMX_H
#define SDW_BACKEND_LINEAR_AMX_H
#include "backend/linear_bf16.h"

/* Whether the stored weights wmd ([out, in] bf16) are in the layout the
 * kernel reads, and the kernel can run here. */
bool sdw_linear_amx_fits(const dnnl_memory_desc_t *wmd, int in, int out);
/* Whether M rows suit it: a block of 32 rows at least (a partial last
 * block is padded). */
bool sdw_linear_amx_suits(int64_t M);
sdw_status sdw_linear_amx(sdw_backend *be, const sdw_linear_bf16_args *a);
#endif
