/* fullsize_write.h: writes a recipe tensor list (fullsize_recipe.h) as a
 * checkpoint file, streaming chunk by chunk (a 12 GB file needs a few MB):
 *   safetensors  every tensor at its list dtype (F16 / BF16 / F32); for the
 *                SD lists byte for byte what tests/data/fullsize/README.md defines
 *   fp8          safetensors, every tensor of 2 or more dims as F8_E4M3 cast
 *                from its list-dtype value (torch's rounding), the rest at the
 *                list dtype: the layout of t5xxl_fp8_e4m3fn.safetensors
 *   gguf-q8_0    GGUF v3 in city96's layout (tests/data/flux/README.md
 *                "GGUF"), general.architecture "flux", or "sd3" for a list with
 *                joint_blocks.*: 1-D tensors and those of <= 1024 elements
 *                F32; the input/output layers at the list dtype (FLUX:
 *                txt_in., img_in., time_in., vector_in., guidance_in.,
 *                final_layer.; SD3: x_embedder., t_embedder., y_embedder.,
 *                context_embedder., final_layer., pos_embed, and every tensor
 *                that is not 2-D, as ComfyUI-GGUF's lcpp_sd3.patch); every
 *                other weight Q8_0 quantized from the list-dtype value as
 *                llama.cpp's quantize_row_q8_0_ref; dims reversed, 32-byte
 *                alignment; bare names only (a model.diffusion_model. or
 *                first_stage_model. name is an error, as city96's tool has it)
 * The values are those of the recipe (fs_fill_f32), rounded to the list's
 * dtype first, so every format holds the same model at its own precision. */
#ifndef SDW_FULLSIZE_WRITE_H
#define SDW_FULLSIZE_WRITE_H
#include "fullsize_recipe.h"

typedef enum { FS_FORMAT_SAFETENSORS, FS_FORMAT_FP8, FS_FORMAT_GGUF_Q8_0 } fs_format;

/* "safetensors", "fp8", "gguf-q8_0"; 0, or -1 for another name. */
int fs_format_parse(const char *s, fs_format *out);
const char *fs_format_name(fs_format f);

/* The type tensor t of list l is stored as in format f. */
fs_dtype fs_stored_type(const fs_list *l, const fs_tensor *t, fs_format f);
/* A GGUF's general.architecture for list l: "sd3" (it has joint_blocks.*) or "flux". */
const char *fs_gguf_arch(const fs_list *l);

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
