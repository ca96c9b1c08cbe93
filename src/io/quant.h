/* quant.h: decoders from the compressed weight formats to f32: GGUF's block
 * quantizations (Q4_0 ... Q8_0, the K-quants Q2_K ... Q6_K) and the two 8-bit
 * floats of safetensors (F8_E4M3 = float8_e4m3fn, F8_E5M2). sdw_st_read_f32
 * calls these; the results equal llama.cpp's / gguf-py's reference
 * dequantizers and torch's float8 casts bit for bit. */
#ifndef SDW_IO_QUANT_H
#define SDW_IO_QUANT_H
#include "io/safetensors.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* float8 e4m3fn: bias 7, subnormals, no infinities, 0x7F / 0xFF are NaN. */
float sdw_f8_e4m3_to_f32(uint8_t b);
/* float8 e5m2: bias 15, IEEE infinities and NaNs (the top byte of an f16). */
float sdw_f8_e5m2_to_f32(uint8_t b);

/* Whether sdw_dequantize decodes dtype t (F8 and GGUF block types). */
bool sdw_is_quantized(sdw_st_dtype t);
/* Decodes n elements of type t from src (any alignment) into dst. n must be
 * a multiple of t's block (sdw_st_dtype_block), as a parsed tensor's numel
 * is. Returns false, writing nothing, for a dtype it does not decode. */
bool sdw_dequantize(sdw_st_dtype t, const void *src, float *dst, size_t n);
#endif
