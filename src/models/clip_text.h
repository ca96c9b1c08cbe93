/* clip_text.h: the CLIP text transformer (SD1's ViT-L/14, SD2's OpenCLIP
 * ViT-H/14, SDXL's ViT-L + ViT-bigG/14), from HF-transformers or OpenCLIP key
 * layouts. Sizes come from the tensor shapes; the head count must be given
 * (from config.json or the sidecar yaml; real towers use 64-dim heads). */
#ifndef SDW_MODELS_CLIP_TEXT_H
#define SDW_MODELS_CLIP_TEXT_H
#include "backend/backend.h"
#include "models/weights.h"
#include "core/arena.h"
#include "io/safetensors.h"

typedef enum { SDW_CLIP_QUICK_GELU, SDW_CLIP_GELU } sdw_clip_act;
typedef enum { SDW_CLIP_LAYOUT_HF, SDW_CLIP_LAYOUT_OPENCLIP } sdw_clip_layout;

typedef struct {
    int vocab;      /* 49408 */
    int ctx;        /* 77 positions */
    int width;      /* hidden size: 768 (L), 1024 (H), 1280 (bigG) */
    int layers;     /* layers held (may be fewer than the file has, see max_layers) */
    int heads;
    int mlp;        /* feed-forward width, 4 x width */
    int proj;       /* text_projection output width, 0 if none */
    sdw_clip_act act;
} sdw_clip_config;

typedef struct {
    float *ln1_w, *ln1_b, *ln2_w, *ln2_b;  /* (width) */
    sdw_linear *qkv;     /* width -> 3*width, q k v fused */
    sdw_linear *out;     /* width -> width */
    sdw_linear *fc1;     /* width -> mlp */
    sdw_linear *fc2;     /* mlp -> width */
} sdw_clip_layer;

typedef struct {
    sdw_clip_config cfg;
    void *tok_emb;       /* (vocab, width), f32 or bf16 (the compute precision) */
    bool tok_emb_bf16;
    float *pos_emb;      /* (ctx, width) */
    sdw_clip_layer *layer;
    float *final_ln_w, *final_ln_b;  /* (width) */
    sdw_linear *text_proj;           /* width -> proj, no bias; NULL if none */
    sdw_layer_list layers;           /* the layers under transformers' names, for LoRA */
    size_t bytes;                    /* weights held */
} sdw_clip_text;

typedef struct {
    sdw_clip_layout layout;
    const char *prefix;  /* e.g. "cond_stage_model.transformer." or "" */
    int heads;           /* 0 = width / 64 */
    int max_layers;      /* load only the first N layers (0 = all) */
    sdw_clip_act act;
    bool projection;     /* load text_projection (SDXL's bigG pooled output needs it) */
} sdw_clip_load_opts;

/* The head count of a tower of this width loaded from file (NULL: a part of
 * a bigger checkpoint): a config.json beside the file (a transformers
 * folder) says; else the real towers' 64-dim heads; towers narrower than one
 * such head exist only as test models and use 2. */
int sdw_clip_text_heads(const char *file, int width);
/* Detects whether st holds a tower under prefix in either layout. */
bool sdw_clip_text_present(const sdw_safetensors *st, const char *prefix, sdw_clip_layout *layout);
/* Counts the layers a tower under prefix has in the file. */
int sdw_clip_text_count_layers(const sdw_safetensors *st, const char *prefix, sdw_clip_layout layout);
sdw_status sdw_clip_text_load(sdw_backend *be, const sdw_safetensors *st, const sdw_clip_load_opts *opts,
                              sdw_clip_text **out);
void sdw_clip_text_free(sdw_clip_text *m);

/* Runs B sequences of ctx ids. hidden [B, ctx, width] receives the output of
 * layer (layers - skip) (skip 0 = last layer; skip = layers gives the
 * embeddings), with the final layer norm applied when final_norm. pooled, if
 * not NULL, receives final_norm(last layer) at each sequence's first
 * highest-id position (the EOS token), through text_projection when the tower
 * has one: [B, proj] or [B, width]. Scratch comes from the arena. */
sdw_status sdw_clip_text_forward(sdw_backend *be, sdw_arena *arena, const sdw_clip_text *m, const int32_t *ids,
                                 int B, int skip, bool final_norm, float *hidden, float *pooled);
#endif
