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

/* ---------------------------------------------------------------- split modules
 *
 * Transformers stored in two layouts (FLUX: BFL or diffusers names; SD3:
 * Stability's or diffusers names) are loaded by their native module names
 * (weights_parts.c). The other layout may keep a module under another name,
 * split across several tensors (a fused q|k|v as to_q, to_k, to_v) or with
 * its row ranges swapped. A split says where rows of the module come from:
 * rows [dst_row0, dst_row0 + rows) of it are rows [src_row0, src_row0 +
 * rows) of "<name>.weight" (and ".bias"), a tensor of tensor_rows rows. */
typedef struct {
    char name[96];
    int src_row0, dst_row0, rows, tensor_rows;
} sdw_wl_split;
#define SDW_WL_MAX_SPLITS 4

/* The other layout's tensors of the native module `native` (no ".weight")
 * with out_rows rows: how many (1 to SDW_WL_MAX_SPLITS), 0 when native is
 * not a module name. model: the split loader's. */
typedef int (*sdw_wl_split_fn)(const void *model, const char *native, int out_rows, sdw_wl_split *parts);

typedef struct {
    sdw_wloader wl;
    const char *prefix;          /* before every tensor name in the file */
    bool split;                  /* the file is in the other layout (else it holds the native names) */
    sdw_wl_split_fn splits;      /* native name -> the other layout's tensors, whichever layout the file is in */
    const char *vector_suffix;   /* of a vector (a norm scale) in this file: ".weight", BFL's ".scale" */
    const char *what;            /* the model, for messages: "FLUX", "SD3 transformer" */
    void *model;                 /* the model being loaded */
    sdw_layer_list *layers;      /* the model's: every linear loaded (sdw_sl_record) */
    size_t *bytes;               /* the model's: grows by what each load holds */
} sdw_split_loader;

/* Runs load(sl, sl->model) with sl->wl open on (be, st); on failure the
 * model is dropped (drop(sl->model)). The other fields are the caller's. */
sdw_status sdw_sl_load(sdw_split_loader *sl, sdw_backend *be, const sdw_safetensors *st,
                       sdw_status (*load)(sdw_split_loader *sl, void *model), void (*drop)(void *model));
/* The tensors the module native is read from: itself (one whole tensor of
 * out_rows rows), or its splits when the file is in the other layout. */
sdw_status sdw_sl_parts(sdw_split_loader *sl, const char *native, int out_rows, sdw_wl_split *parts, int *n);
/* A malloc'd [rows] gathered from "<name><suffix>" of parts[0..n) (a bias, a norm scale). */
sdw_status sdw_sl_rows(sdw_split_loader *sl, const char *native, const sdw_wl_split *parts, int n,
                       const char *suffix, int rows, float **out);
/* Lists l under its native name, and under the other layout's name of each
 * whole tensor it is stacked from or renamed from, so adapters of either
 * naming find it. Ranges not whole (swapped halves) get no alias. */
sdw_status sdw_sl_record(sdw_split_loader *sl, const char *native, sdw_linear *l, int out_rows);
/* The linear called "<fmt...>" ([outf, in] weight, [outf] bias when bias),
 * from whichever layout, recorded and counted. Compact weights (GGUF,
 * float8) keep their blocks whatever the layout splits them into. */
sdw_status sdw_sl_linear(sdw_split_loader *sl, sdw_linear **out, int in, int outf, bool bias, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* A malloc'd vector [n] "<fmt...>" + vector_suffix (a q / k norm's scale), counted. */
sdw_status sdw_sl_vector(sdw_split_loader *sl, float **out, int n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The tensor "<prefix><fmt>" with fmt's %d the block index i, or NULL: for
 * telling a configuration from the names a layout uses. */
const sdw_st_tensor *sdw_wl_tensor_at(const sdw_safetensors *st, const char *prefix, const char *fmt, int i);

/* Building a split map (flux_names.c, mmdit_names.c); each returns how many
 * splits it wrote at p. One whole tensor "<block><name>" of rows rows: */
int sdw_wl_split_whole(sdw_wl_split *p, const char *block, const char *name, int rows);
/* n whole tensors "<block><names[i]>", rows[i] tall, stacked in order (a fused q|k|v): */
int sdw_wl_split_stacked(sdw_wl_split *p, const char *block, const char *const *names, const int *rows, int n);
/* One tensor [2 half] whose halves the module holds the other way round
 * (diffusers' AdaLayerNormContinuous: (scale, shift) for (shift, scale)): */
int sdw_wl_split_swapped(sdw_wl_split *p, const char *block, const char *name, int half);
/* A module only renamed: native suffix -> the other layout's suffix. */
typedef struct {
    const char *native, *other;
} sdw_wl_rename;
/* The whole tensor "<block><other>" for native found in r[0..n), or 0 (not listed). */
int sdw_wl_split_renamed(const sdw_wl_rename *r, size_t n, const char *native, sdw_wl_split *p, const char *block,
                         int rows);
#endif
