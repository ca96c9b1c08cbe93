/* gguf.h: a validated reader of GGUF files (llama.cpp's format, also used
 * for quantized FLUX / SD3 transformers) into the safetensors reader's struct
 * (io/safetensors.h), so every loader reads both. sdw_st_open and sdw_st_parse
 * call it for content that begins with the GGUF magic.
 *
 * What it checks before returning: magic, version 2 or 3, every KV and tensor
 * info within the file (counts, lengths and array sizes bounded by the bytes
 * left, so no huge allocation), general.alignment a power of two, each tensor
 * of a known ggml type with at most SDW_ST_MAX_DIMS dims, its element count
 * free of overflow and its first dimension a multiple of the type's block,
 * its offset aligned and its data inside the file, no two tensors overlapping,
 * no name twice. Errors name the file (and the tensor or key). */
#ifndef SDW_IO_GGUF_H
#define SDW_IO_GGUF_H
#include "io/safetensors.h"

#define SDW_GGUF_MAGIC "GGUF"
#define SDW_GGUF_DEFAULT_ALIGNMENT 32

/* Parses the GGUF image buf[0, size) (not copied: buf must outlive the
 * result; close it with sdw_st_close). Tensors get torch shapes (GGUF's ne
 * reversed), dtypes from their ggml types (F32, F16, BF16, Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0, Q2_K ... Q6_K; others fail with SDW_ERR_UNSUPPORTED), data
 * pointers into buf, and are sorted by name. String, number and bool KVs
 * become meta pairs (numbers printed in decimal); arrays are checked and
 * skipped. name is used in error messages. */
sdw_status sdw_gguf_parse(const void *buf, size_t size, const char *name, sdw_safetensors **out);
#endif
