/* tensor.c: tensor bookkeeping and dtype conversion. */
#include "core/tensor.h"
#include "core/error.h"
#include "core/half.h"
#include <stdlib.h>
#include <string.h>

size_t sdw_dtype_size(sdw_dtype t) { return t == SDW_DTYPE_F32 ? 4 : 2; }

const char *sdw_dtype_name(sdw_dtype t)
{
    switch (t) {
    case SDW_DTYPE_F32: return "F32";
    case SDW_DTYPE_F16: return "F16";
    case SDW_DTYPE_BF16: return "BF16";
    }
    return "?";
}

int64_t sdw_tensor_numel(const sdw_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t sdw_tensor_bytes(const sdw_tensor *t) { return (size_t)sdw_tensor_numel(t) * sdw_dtype_size(t->dtype); }

sdw_tensor sdw_tensor_view(void *data, sdw_dtype dtype, int ndim, const int64_t *shape)
{
    sdw_tensor t = { .dtype = dtype, .ndim = ndim, .data = data, .owns = false };
    for (int i = 0; i < ndim && i < SDW_MAX_DIMS; i++) t.shape[i] = shape[i];
    return t;
}

sdw_status sdw_tensor_new(sdw_tensor *t, sdw_dtype dtype, int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > SDW_MAX_DIMS) return sdw_fail(SDW_ERR_INVALID_ARG, "tensor rank %d not in 0..4", ndim);
    *t = sdw_tensor_view(NULL, dtype, ndim, shape);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] && n > INT64_MAX / 8 / shape[i]))
            return sdw_fail(SDW_ERR_INVALID_ARG, "tensor shape too large");
        n *= shape[i];
    }
    t->data = calloc((size_t)(n ? n : 1), sdw_dtype_size(dtype));
    if (!t->data) return sdw_fail(SDW_ERR_NOMEM, "out of memory allocating a tensor of %lld elements", (long long)n);
    t->owns = true;
    return SDW_OK;
}

void sdw_tensor_free(sdw_tensor *t)
{
    if (t->owns) free(t->data);
    t->data = NULL;
    t->owns = false;
}

void sdw_convert_to_f32(float *dst, const void *src, sdw_dtype src_type, size_t n)
{
    const uint16_t *h = src;
    switch (src_type) {
    case SDW_DTYPE_F32: memmove(dst, src, n * 4); break;
    case SDW_DTYPE_F16:
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) dst[i] = sdw_f16_to_f32(h[i]);
        break;
    case SDW_DTYPE_BF16:
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) dst[i] = sdw_bf16_to_f32(h[i]);
        break;
    }
}

void sdw_convert_from_f32(void *dst, sdw_dtype dst_type, const float *src, size_t n)
{
    uint16_t *h = dst;
    switch (dst_type) {
    case SDW_DTYPE_F32: memmove(dst, src, n * 4); break;
    case SDW_DTYPE_F16:
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) h[i] = sdw_f32_to_f16(src[i]);
        break;
    case SDW_DTYPE_BF16:
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) h[i] = sdw_f32_to_bf16(src[i]);
        break;
    }
}

void sdw_nchw_to_nhwc(const float *src, int N, int C, int H, int W, float *dst)
{
    size_t hw = (size_t)H * W;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (size_t p = 0; p < hw; p++) dst[((size_t)n * hw + p) * C + c] = src[((size_t)n * C + c) * hw + p];
}

void sdw_nhwc_to_nchw(const float *src, int N, int H, int W, int C, float *dst)
{
    size_t hw = (size_t)H * W;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (size_t p = 0; p < hw; p++) dst[((size_t)n * C + c) * hw + p] = src[((size_t)n * hw + p) * C + c];
}
