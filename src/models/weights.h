/* weights.h: loading a network's weights from a safetensors file into backend
 * layers, with shape checks that name the tensor on mismatch. Names are given
 * printf-style so a model can say "%slayers.%d.mlp.fc1" with its own prefix.
 *
 * Linear weights stored compact (GGUF blocks, float8) become compact layers
 * (sdw_linear_create_quant) from their raw bytes, never staged as f32; a
 * loader's weight_type can also compact dense weights while loading. */
#ifndef SDW_MODELS_WEIGHTS_H
#define SDW_MODELS_WEIGHTS_H
#include "backend/backend.h"
#include "io/safetensors.h"

/* A layer's weights as adapters (LoRA) address them: rows [row0, row0 + rows)
 * of a linear (q, k and v may be stacked in one) or a whole convolution. */
typedef struct {
    char *name;          /* the model's module name, e.g. "down_blocks.0.attentions.0.proj_in" */
    sdw_linear *linear;  /* exactly one of linear / conv is set */
    sdw_conv2d *conv;
    int row0, rows;
} sdw_named_layer;

typedef struct {
    sdw_named_layer *v;
    int n, cap;
} sdw_layer_list;

sdw_status sdw_layer_list_add(sdw_layer_list *l, const char *name, sdw_linear *linear, sdw_conv2d *conv, int row0,
                              int rows);
void sdw_layer_list_free(sdw_layer_list *l);

/* What the loader makes of a linear layer's weights. A target type
 * (BF16, Q8_0, ..., Q4_0) takes the weights of a large layer (at least
 * SDW_WL_COMPACT_MIN weights, rows a multiple of the target's block) whose
 * file format holds at least as many bits per weight as the target:
 * copied when they are in it already, else converted row by row from the
 * mapping (f32, f16, bf16, float8 or GGUF rows). Other layers load as under
 * KEEP: a Q4_K file asked for Q8_0 stays Q4_K. bf16 in BF16 precision is
 * the dense layer itself. Convolutions and 1-D tensors are never converted. */
#define SDW_WL_COMPACT_MIN ((int64_t)1 << 20)


typedef struct {
    sdw_backend *be;
    const sdw_safetensors *st;
    float *scratch;          /* f32 staging buffer, grown as needed */
    size_t scratch_n;
    size_t bytes_held;       /* weights handed out so far */
    /* Optional renaming of the names a model asks for into the file's names
     * (e.g. diffusers UNet names -> original LDM names); NULL = identity. */
    const char *(*map)(void *ctx, const char *name, char *buf, size_t n);
    void *map_ctx;
    /* When set, every linear and convolution loaded is recorded here under the
     * name the model asked for (before map). */
    sdw_layer_list *layers;
    sdw_weight_type weight_type;  /* the backend's (sdw_backend_weight_type) after sdw_wl_init */
} sdw_wloader;

void sdw_wl_init(sdw_wloader *wl, sdw_backend *be, const sdw_safetensors *st);
void sdw_wl_done(sdw_wloader *wl);
bool sdw_wl_has(const sdw_wloader *wl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The tensor or an error naming it; ndim < 0 skips the rank check. */
sdw_status sdw_wl_find(sdw_wloader *wl, const sdw_st_tensor **t, int ndim, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A malloc'd f32 copy of a tensor that must have exactly n elements. */
sdw_status sdw_wl_floats(sdw_wloader *wl, float **out, int64_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* "<name>.weight" [out, in] (+ "<name>.bias" [out] when with_bias) into a linear layer.
 * A 1x1 convolution weight [out, in, 1, 1] is accepted: on NHWC tokens it is the same map. */
sdw_status sdw_wl_linear(sdw_wloader *wl, sdw_linear **out, int in, int outf, bool with_bias, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* "<prefix><names[i]>.weight" [each, in] (+ ".bias" [each]) for i < parts,
 * stacked row-wise into one linear [parts * each, in]: q, k and v (or k and
 * v) then run as one matmul. 1x1 convolution weights are accepted. */
sdw_status sdw_wl_linear_stack(sdw_wloader *wl, sdw_linear **out, int in, int each, int parts, bool with_bias,
                               const char *prefix, const char *const *names);
/* Rows [src_row0, src_row0 + rows) of a linear weight tensor t ([rows of
 * t, in], or [.., in, 1, 1]) placed at rows [dst_row0, ...) of a layer. */
typedef struct {
    const sdw_st_tensor *t;
    int src_row0, rows, dst_row0;
} sdw_wl_part;
/* A linear [outf, in] from parts that together cover its rows (a stacked
 * q|k|v, a diffusers split of a fused BFL layer), bias [outf] or NULL
 * (copied). Parts in one compact format (after weight_type) keep their
 * blocks, copied row by row; parts in different formats load dense. */
sdw_status sdw_wl_linear_parts(sdw_wloader *wl, sdw_linear **out, int in, int outf, const sdw_wl_part *parts,
                               int n, const float *bias);
/* "<name>.weight" [cout, cin, k, k] (+ "<name>.bias") into a convolution. */
sdw_status sdw_wl_conv2d(sdw_wloader *wl, sdw_conv2d **out, int cin, int cout, int k, int stride, int pad,
                         const char *fmt, ...) __attribute__((format(printf, 8, 9)));
/* Stages an f32 copy of a tensor in the loader's scratch (valid until the next call). */
sdw_status sdw_wl_stage(sdw_wloader *wl, const sdw_st_tensor *t, float **data);
#endif
