/* tensor.h: a dense, contiguous, row-major tensor of up to 4 dimensions.
 * A tensor either owns its data (freed by sdw_tensor_free) or is a view into
 * memory owned elsewhere (a mapped file, an arena, another tensor). */
#ifndef SDW_CORE_TENSOR_H
#define SDW_CORE_TENSOR_H
#include "sdw.h"

typedef enum { SDW_DTYPE_F32, SDW_DTYPE_F16, SDW_DTYPE_BF16 } sdw_dtype;

#define SDW_MAX_DIMS 4
typedef struct {
    sdw_dtype dtype;
    int ndim;
    int64_t shape[SDW_MAX_DIMS];
    void *data;
    bool owns;
} sdw_tensor;

size_t sdw_dtype_size(sdw_dtype t);
const char *sdw_dtype_name(sdw_dtype t);
int64_t sdw_tensor_numel(const sdw_tensor *t);
size_t sdw_tensor_bytes(const sdw_tensor *t);

/* Allocates a zeroed owning tensor. */
sdw_status sdw_tensor_new(sdw_tensor *t, sdw_dtype dtype, int ndim, const int64_t *shape);
sdw_tensor sdw_tensor_view(void *data, sdw_dtype dtype, int ndim, const int64_t *shape);
void sdw_tensor_free(sdw_tensor *t);
/* Converts n elements of any dtype to f32. */
void sdw_convert_to_f32(float *dst, const void *src, sdw_dtype src_type, size_t n);
void sdw_convert_from_f32(void *dst, sdw_dtype dst_type, const float *src, size_t n);
/* Layout transposes between PyTorch's NCHW and our channels-last NHWC. */
void sdw_nchw_to_nhwc(const float *src, int N, int C, int H, int W, float *dst);
void sdw_nhwc_to_nchw(const float *src, int N, int H, int W, int C, float *dst);
#endif
