/* weights.h: loading a network's weights from a safetensors file into backend
 * layers, with shape checks that name the tensor on mismatch. Names are given
 * printf-style so a model can say "%slayers.%d.mlp.fc1" with its own prefix. */
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
/* "<name>.weight" [cout, cin, k, k] (+ "<name>.bias") into a convolution. */
sdw_status sdw_wl_conv2d(sdw_wloader *wl, sdw_conv2d **out, int cin, int cout, int k, int stride, int pad,
                         const char *fmt, ...) __attribute__((format(printf, 8, 9)));
/* Stages an f32 copy of a tensor in the loader's scratch (valid until the next call). */
sdw_status sdw_wl_stage(sdw_wloader *wl, const sdw_st_tensor *t, float **data);
#endif
