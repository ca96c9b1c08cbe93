/* flux.h: the FLUX.1 transformer (dev and schnell), BFL's flux/model.py:
 *
 *   vec = time_in(emb(t)) [+ guidance_in(emb(g))] + vector_in(y)
 *   img = img_in(packed latents), txt = txt_in(T5 states), pe = RoPE(cat(txt_ids, img_ids))
 *   double blocks: img and txt streams, each modulated by vec, attending jointly over cat(txt, img)
 *   single blocks: over cat(txt, img), attention and MLP in parallel from one fused linear
 *   final layer: modulated LayerNorm and a linear on the img tokens -> velocity [n_img, 64]
 *
 * Weights load from BFL names (flux1-dev.safetensors, optionally prefixed
 * "model.diffusion_model." in all-in-one checkpoints; SDW_NAMES_LDM) or from a
 * diffusers transformer folder (SDW_NAMES_DIFFUSERS), whose split q/k/v are
 * stacked into BFL's fused layers at load. */
#ifndef SDW_MODELS_FLUX_H
#define SDW_MODELS_FLUX_H
#include "backend/backend.h"
#include "core/arena.h"
#include "io/safetensors.h"
#include "models/unet.h"   /* sdw_name_layout: SDW_NAMES_LDM stands for BFL names here */
#include "models/weights.h"
#include <cjson/cJSON.h>

typedef struct {
    int in_channels;      /* 64: packed 2x2 patches of the 16-channel latent (also the output width) */
    int hidden;           /* 3072 */
    int heads, head_dim;  /* 24 x 128 */
    int axes_dim[3];      /* RoPE dims per position axis, summing to head_dim: (16, 56, 56) */
    int depth;            /* double blocks: 19 */
    int depth_single;     /* single blocks: 38 */
    int mlp_hidden;       /* 4 x hidden */
    int context_dim;      /* T5 width: 4096 */
    int vec_dim;          /* pooled CLIP width: 768 */
    float theta;          /* RoPE base: 10000 */
    bool guidance_embed;  /* dev: true (guidance_in); schnell: false */
    bool qkv_bias;        /* the double blocks' qkv carry a bias (true in FLUX.1) */
} sdw_flux_config;

/* From tensor shapes under prefix ("" or "model.diffusion_model." for BFL
 * names). heads / axes_dim: from the diffusers config.json when given
 * (num_attention_heads, attention_head_dim, axes_dims_rope; checked against
 * the shapes); else head_dim = the q-norm scale's length, heads = hidden /
 * head_dim, axes = (head_dim - 2a, a, a) with a = 7 head_dim / 16 rounded
 * down to even: (16, 56, 56) for 128 as the real model, (4, 6, 6) for 16.
 * A file that is not a FLUX transformer fails with SDW_ERR_FORMAT. */
sdw_status sdw_flux_config_from_tensors(const sdw_safetensors *st, const char *prefix, sdw_name_layout names,
                                        const cJSON *diffusers_cfg, sdw_flux_config *c);
/* Whether BFL or diffusers FLUX transformer tensors are under prefix. */
bool sdw_flux_present(const sdw_safetensors *st, const char *prefix);

typedef struct sdw_flux sdw_flux;

/* Loads every weight (converted to the backend's precision); st may be closed afterwards. */
sdw_status sdw_flux_load(sdw_backend *be, const sdw_safetensors *st, const char *prefix, sdw_name_layout names,
                         const sdw_flux_config *c, sdw_flux **out);
void sdw_flux_free(sdw_flux *f);
size_t sdw_flux_bytes(const sdw_flux *f);
const sdw_flux_config *sdw_flux_get_config(const sdw_flux *f);
/* Every linear under its BFL module name ("double_blocks.0.img_attn.qkv",
 * rows 0..all) and, whichever layout it loaded from, again under the
 * diffusers name of each tensor a BFL layer is stacked from
 * ("transformer_blocks.0.attn.to_k": row0 = hidden, rows = hidden;
 * "single_transformer_blocks.0.proj_mlp": row0 = 3 hidden) or renamed from
 * ("transformer_blocks.0.norm1.linear"), for LoRAs of either naming.
 * norm_out.linear (final_layer.adaLN_modulation.1 with its halves swapped)
 * has no such alias: its rows are not one range. */
const sdw_layer_list *sdw_flux_layers(const sdw_flux *f);

/* Where a BFL layer's rows come from in the diffusers layout (see
 * sdw_wl_split in weights.h): for the BFL module bfl (no ".weight"; a q/k
 * norm as "...query_norm") with out_rows output rows, the diffusers parts
 * (1 to 4), or 0 when bfl is not a FLUX module name. */
typedef sdw_wl_split sdw_flux_part;
#define SDW_FLUX_MAX_PARTS 4
int sdw_flux_diffusers_parts(const char *bfl, const sdw_flux_config *c, int out_rows,
                             sdw_flux_part parts[SDW_FLUX_MAX_PARTS]);

/* Observes intermediates as the reference names them: "img_in", "txt_in",
 * "time_in", "guidance_in", "vector_in" ([1, hidden]), "pe_embedder" (RoPE
 * [L, head_dim / 2 x (cos, -sin, sin, cos)], L = n_txt + n_img, txt first),
 * "double_blocks.N.img", "double_blocks.N.txt", "single_blocks.N" (over
 * cat(txt, img)), "final_layer". x is [rows, cols] row-major. */
typedef void (*sdw_flux_tap)(void *user, const char *name, const float *x, int rows, int cols);

typedef struct {
    const float *img; int n_img;        /* [n_img, in_channels] packed latents */
    const float *img_ids;               /* [n_img, 3] */
    const float *txt; int n_txt;        /* [n_txt, context_dim] */
    const float *txt_ids;               /* [n_txt, 3] */
    float t;                            /* sigma in [0, 1] */
    float guidance;                     /* dev only */
    const float *y;                     /* [vec_dim] pooled CLIP */
    sdw_flux_tap tap; void *tap_user;
} sdw_flux_input;

/* out: [n_img, in_channels] velocity. Batch 1. Scratch comes from arena
 * (rewound before returning). */
sdw_status sdw_flux_forward(sdw_backend *be, sdw_arena *arena, const sdw_flux *f, const sdw_flux_input *in,
                            float *out);

/* Packing for the pipeline: latents NCHW [C, h, w] (h, w even) <-> packed
 * [(h/2)(w/2), 4C], token (i, j) row-major, channel c*4 + di*2 + dj; and
 * the img ids (0, i, j) [(h/2)(w/2), 3] of that grid (h, w: latent size). */
void sdw_flux_pack(const float *lat, int C, int h, int w, float *packed);
void sdw_flux_unpack(const float *packed, int C, int h, int w, float *lat);
void sdw_flux_img_ids(int h, int w, float *ids);
#endif
