/* mmdit.h: the SD3 / SD3.5 transformer: Stability-AI's MMDiT (SD3-medium,
 * SD3.5-large) and MMDiT-X (SD3.5-medium: a second, image-only attention in
 * the first blocks), = diffusers' SD3Transformer2DModel.
 *
 *   x   = patchify(latents) + centre crop of pos_embed      [n_img, hidden]
 *   c   = t_embedder(sinusoid(t)) + y_embedder(pooled)      [hidden]
 *   ctx = context_embedder(text states)                     [n_ctx, hidden]
 *   joint blocks: both streams modulated by c, one attention over cat(ctx, x);
 *                 the last block's context stream only gives k and v
 *   final layer: modulated LayerNorm, Linear(hidden, p*p*out), unpatchify -> velocity
 *
 * Weights load from Stability-AI names (sd3_medium.safetensors,
 * "model.diffusion_model." in single files; SDW_NAMES_LDM) or from a diffusers
 * transformer folder (SDW_NAMES_DIFFUSERS), whose split q / k / v are stacked
 * into SAI's fused qkv at load (mmdit_names.c holds the mapping). */
#ifndef SDW_MODELS_MMDIT_H
#define SDW_MODELS_MMDIT_H
#include "backend/backend.h"
#include "core/arena.h"
#include "io/safetensors.h"
#include "models/unet.h"   /* sdw_name_layout: SDW_NAMES_LDM stands for SAI names here */
#include "models/weights.h"
#include <cjson/cJSON.h>

#define SDW_MMDIT_MAX_DEPTH 64   /* joint blocks; SD3.5-large has 38 */

/* SAI's convention: head_dim 64, heads = hidden / 64 (= the block count in
 * every released model); a diffusers config.json overrides heads / head_dim. */
typedef struct {
    int patch;         /* 2 */
    int in_channels;   /* 16 latent channels */
    int out_channels;  /* 16 */
    int depth;         /* joint blocks: 24 (SD3-medium, SD3.5-medium), 38 (SD3.5-large) */
    int hidden;        /* 64 x heads: 1536, 2432 */
    int heads, head_dim;
    int pos_max;       /* pos_embed is a pos_max x pos_max grid: 192, 384 (SD3.5-medium) */
    int joint_dim;     /* text states' width: 4096 */
    int pooled_dim;    /* pooled CLIP-L + CLIP-G: 2048 */
    bool qk_norm;      /* RMS q / k norms per head (SD3.5) */
    bool dual[SDW_MMDIT_MAX_DEPTH];   /* block i's x_block has attn2 (MMDiT-X) */
} sdw_mmdit_config;

/* Whether SAI names under prefix ("model.diffusion_model." or "") or
 * diffusers names under prefix ("") hold an MMDiT. */
bool sdw_mmdit_present(const sdw_safetensors *st, const char *prefix);
/* From the tensor shapes under prefix (checked against diffusers_cfg, the
 * transformer's config.json, when given). A file that is not an MMDiT fails
 * with SDW_ERR_FORMAT naming the tensors it looked for. */
sdw_status sdw_mmdit_config_from_tensors(const sdw_safetensors *st, const char *prefix, sdw_name_layout names,
                                         const cJSON *diffusers_cfg, sdw_mmdit_config *c);

typedef struct sdw_mmdit sdw_mmdit;

/* Loads every weight (linears stay compact as stored, see weights.h); st may
 * be closed afterwards unless it keeps its mapping for borrowed layers. */
sdw_status sdw_mmdit_load(sdw_backend *be, const sdw_safetensors *st, const char *prefix, sdw_name_layout names,
                          const sdw_mmdit_config *c, sdw_mmdit **out);
void sdw_mmdit_free(sdw_mmdit *m);
size_t sdw_mmdit_bytes(const sdw_mmdit *m);
const sdw_mmdit_config *sdw_mmdit_get_config(const sdw_mmdit *m);
/* Every linear under its SAI module name ("joint_blocks.3.x_block.attn.qkv",
 * rows 0..all; the patch embedding "x_embedder.proj" as a linear over
 * in_channels x patch x patch inputs) and, whichever layout it loaded from,
 * again under the diffusers name of each tensor it is stacked from
 * ("transformer_blocks.3.attn.to_k": row0 = hidden, rows = hidden) or renamed
 * from ("transformer_blocks.3.norm1.linear"), for LoRAs of either naming.
 * norm_out.linear and the last block's norm1_context.linear (halves swapped)
 * have no such alias. */
const sdw_layer_list *sdw_mmdit_layers(const sdw_mmdit *m);

/* Where an SAI tensor's rows come from in the diffusers layout (see
 * sdw_wl_split in weights.h): for the SAI module sai (no ".weight";
 * "pos_embed" for the table, whose diffusers name is then
 * "pos_embed.pos_embed" without a suffix) with out_rows rows, its diffusers
 * parts (1 to 3), or 0 when sai is not an MMDiT module name. */
typedef sdw_wl_split sdw_mmdit_part;
#define SDW_MMDIT_MAX_PARTS 3
int sdw_mmdit_diffusers_parts(const char *sai, const sdw_mmdit_config *c, int out_rows,
                              sdw_mmdit_part parts[SDW_MMDIT_MAX_PARTS]);

/* Observes intermediates under diffusers' names: "pos_embed" (patch embedding
 * + positions, [n_img, hidden]), "temb" ([1, hidden]), "context_embedder",
 * "blockN.hidden_states", "blockN.encoder_hidden_states" (each joint block's
 * outputs; none for the last block's context, nor for skipped blocks),
 * "norm_out" (before the final linear). x is [rows, cols] row-major. */
typedef void (*sdw_mmdit_tap)(void *user, const char *name, const float *x, int rows, int cols);

typedef struct {
    const float *x; int h, w;          /* NCHW [in_channels, h, w] latents, batch 1; h, w multiples of patch */
    float t;                           /* timestep = sigma * 1000 */
    const float *context; int n_ctx;   /* [n_ctx, joint_dim] */
    const float *pooled;               /* [pooled_dim] */
    const bool *skip;                  /* [depth] blocks not run (skip-layer guidance), or NULL */
    sdw_mmdit_tap tap; void *tap_user;
} sdw_mmdit_input;

/* out: NCHW [out_channels, h, w] velocity. A latent larger than pos_embed
 * covers fails with SDW_ERR_INVALID_ARG naming the largest size. Scratch comes
 * from arena (rewound before returning). */
sdw_status sdw_mmdit_forward(sdw_backend *be, sdw_arena *arena, const sdw_mmdit *m, const sdw_mmdit_input *in,
                             float *out);
#endif
