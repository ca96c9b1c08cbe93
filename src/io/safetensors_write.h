/* safetensors_write.h: writing f32 tensors to a safetensors file (--dump). */
#ifndef SDW_IO_SAFETENSORS_WRITE_H
#define SDW_IO_SAFETENSORS_WRITE_H
#include "sdw.h"

typedef struct {
    const char *name;
    int ndim;
    const int64_t *shape;
    const float *data;
} sdw_st_out;

sdw_status sdw_st_write_f32(const char *path, const sdw_st_out *tensors, int n);
#endif
