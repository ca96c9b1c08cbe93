/* linear_branch.h: low-rank branches beside a linear layer's weights
 * (linear_branch.c): y[:, row0 : row0 + rows] += (x @ D^T) @ U^T, how a LoRA
 * stays exact on a layer whose weights are compact (GGUF blocks, float8,
 * bf16) instead of being rounded into them. linear.c holds one set per
 * layer (NULL: none) and runs it after the layer's own product. */
#ifndef SDW_BACKEND_LINEAR_BRANCH_H
#define SDW_BACKEND_LINEAR_BRANCH_H
#include "backend/cpu_internal.h"

typedef struct sdw_lbranches sdw_lbranches;

/* The layer's set, for linear_branch.c's half of the public API (linear.c). */
sdw_lbranches **sdw_linear_branch_slot(sdw_linear *l);
const sdw_lbranches *sdw_linear_branch_set(const sdw_linear *l);

void sdw_lbranches_free(sdw_lbranches *s);
/* y [M, columns of row stride ldy] (f32) += every branch of x [M, in], x f32
 * or, when x_bf16, a bf16 activation (expanded to f32: a branch runs in f32
 * in every precision). Counted as a linear op, "lora_branch". */
sdw_status sdw_lbranches_forward(sdw_backend *be, const sdw_lbranches *s, const void *x, bool x_bf16, int64_t M,
                                 float *y, int64_t ldy);
#endif
