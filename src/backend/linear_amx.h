/* linear_amx.h: bf16 linear layers on AMX tiles (linear_amx.c). */
#ifndef SDW_BACKEND_LINEAR_AMX_H
#define SDW_BACKEND_LINEAR_AMX_H
#include "backend/cpu_internal.h"

/* y[M, N] = a[M, K] w^T + bias: a bf16 rows of K; w in the inner product's
 * stored layout AB16b64a2b; the result written as bf16 (y_bf), added to y
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
} sdw_linear_amx_args;

/* Whether the stored weights wmd ([out, in] bf16) are in the layout the
 * kernel reads, and the kernel can run here. */
bool sdw_linear_amx_fits(const dnnl_memory_desc_t *wmd, int in, int out);
/* Whether M rows suit it: a block of 32 rows at least (a partial last
 * block is padded). */
bool sdw_linear_amx_suits(int64_t M);
sdw_status sdw_linear_amx(sdw_backend *be, const sdw_linear_amx_args *a);
#endif
