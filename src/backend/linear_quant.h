/* linear_quant.h: the matmul of a linear layer whose weights stay in a
 * compact format (linear_quant.c), and the row codecs of those formats
 * (linear_quant_rows.c). linear.c owns the layer and calls these. */
#ifndef SDW_BACKEND_LINEAR_QUANT_H
#define SDW_BACKEND_LINEAR_QUANT_H
#include "backend/cpu_internal.h"

/* One call: y[M, N] (=, or += when accumulate) x[M, K] @ W^T + bias, W held
 * as N rows of row_bytes in format qt. x is in the compute type (bf16 in
 * BF16 precision, else f32); y is f32, or written as bf16 when y_bf16. */
typedef struct {
    sdw_qtype qt;
    const uint8_t *w;
    size_t row_bytes;
    const float *bias; /* N, or NULL */
    int64_t M;
    int K, N;
    const void *x;
    void *y;
    bool y_bf16, accumulate;
} sdw_qlinear_args;

sdw_status sdw_qlinear_forward(sdw_backend *be, const sdw_qlinear_args *a);
/* x of at most this many rows is taken row by row: W decoded a row at a
 * time and dotted with them, not through panels. */
#define SDW_QL_FEW_ROWS 4

/* The bf16 product on AVX-512-BF16 dot products (linear_quant_dp.c), which
 * sdw_qlinear_forward takes where it suits: BF16 precision on such a CPU
 * without AMX, and either K a multiple of 32 and N of 64, or a few rows
 * against Q8_0 weights. */
bool sdw_qlinear_dp_suits(const sdw_backend *be, const sdw_qlinear_args *a);
sdw_status sdw_qlinear_dp(sdw_backend *be, const sdw_qlinear_args *a);
/* The name of the kernel that runs a call, for sdw_backend_shapes (static storage). */
const char *sdw_qlinear_path(const sdw_backend *be, const sdw_qlinear_args *a);
/* f32 panels multiplied by dnnl_sgemm (the default) or by a oneDNN matmul
 * primitive per shape (A/B runs; bf16 always takes the primitive). */
void sdw_qlinear_use_sgemm(bool on);
#endif
