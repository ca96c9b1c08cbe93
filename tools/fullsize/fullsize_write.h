/* fullsize_write.h: writes a recipe tensor list (fullsize_recipe.h) as a
 * checkpoint file, streaming chunk by chunk (a 12 GB file needs a few MB):
 *   safetensors  every tensor at its list dtype (F16 / BF16 / F32); for the
 *                SD lists byte for byte what tests/data/fullsize/README.md defines
 *   fp8          safetensors, every tensor of 2 or more dims as F8_E4M3 cast
 *                from its list-dtype value (torch's rounding), the rest at the
 *                list dtype: the layout of t5xxl_fp8_e4m3fn.safetensors
 *   gguf-q8_0    GGUF v3 in city96's FLUX layout (tests/data/flux/README.md
 *                "GGUF"): 1-D tensors and those of <= 1024 elements F32, the
 *                input/output layers (txt_in., img_in., time_in., vector_in.,
 *                guidance_in., final_layer.) at the list dtype, every other
 *                weight Q8_0 quantized from the list-dtype value as llama.cpp's
 *                quantize_row_q8_0_ref; dims reversed, 32-byte alignment
 * The values are those of the recipe (fs_fill_f32), rounded to the list's
 * dtype first, so every format holds the same model at its own precision. */
#ifndef SDW_FULLSIZE_WRITE_H
#define SDW_FULLSIZE_WRITE_H
#include "fullsize_recipe.h"

typedef enum { FS_FORMAT_SAFETENSORS, FS_FORMAT_FP8, FS_FORMAT_GGUF_Q8_0 } fs_format;

/* "safetensors", "fp8", "gguf-q8_0"; 0, or -1 for another name. */
int fs_format_parse(const char *s, fs_format *out);
const char *fs_format_name(fs_format f);

/* The type tensor i is stored as in format f. */
fs_dtype fs_stored_type(const fs_tensor *t, fs_format f);

/* Where the bytes go. put returns 0 or -1 (the write stops); tensor_begin
 * and tensor_end (may be NULL) bracket each tensor's data bytes (not the
 * header or the GGUF padding), with its stored byte count at the end. */
typedef struct {
    int (*put)(void *user, const void *p, size_t n);
    int (*tensor_begin)(void *user, size_t i);
    int (*tensor_end)(void *user, size_t i, uint64_t bytes);
    void *user;
} fs_sink;

/* Writes l in format f with the recipe seed. *total = bytes written. Returns
 * 0, or -1 with a message in err (a list the format cannot hold, e.g. a
 * Q8_0 row not a multiple of 32; a failed put). */
int fs_write(const fs_list *l, fs_format f, uint64_t seed, const fs_sink *s, uint64_t *total, char *err,
             size_t errlen);

/* One Q8_0 block of 32 floats (34 bytes: f16 scale, 32 int8), as
 * llama.cpp's quantize_row_q8_0_ref: d = max|x| / 127, q = roundf(x / d). */
void fs_q8_0_block(const float *x, uint8_t out[34]);
#endif
