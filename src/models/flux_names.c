/* flux_names.c: what a FLUX transformer file holds, by name: its
 * configuration from tensor shapes (and a diffusers config.json), whether a
 * file holds one at all, and where each BFL module's rows live in the
 * diffusers layout (diffusers' convert_flux_transformer_checkpoint_to_diffusers
 * run backwards). flux.c loads by BFL names through the latter. */
#include "models/flux.h"
#include "core/error.h"
#include "io/json_file.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds for sizes read from a file, far above any real model's: they must
 * not make the loader divide by zero or overflow int arithmetic. */
#define FLUX_MAX_SIZE 65536
#define FLUX_MAX_DEPTH 1024

/* The tensor names that tell the configuration, per layout. */
typedef struct {
    const char *img_in, *txt_in, *vector_in, *time_in, *guidance_in;
    const char *dqkv, *dqkv_bias, *dmlp0, *dqnorm;   /* "%d": double block index */
    const char *s_lin1, *s_lin1_q, *sqnorm;          /* "%d": single block index */
    const char *final_linear;
} name_set;

static const name_set bfl_names = {
    "img_in.weight", "txt_in.weight", "vector_in.in_layer.weight", "time_in.in_layer.weight",
    "guidance_in.in_layer.weight", "double_blocks.%d.img_attn.qkv.weight", "double_blocks.%d.img_attn.qkv.bias",
    "double_blocks.%d.img_mlp.0.weight", "double_blocks.%d.img_attn.norm.query_norm.scale",
    "single_blocks.%d.linear1.weight", "single_blocks.%d.linear1.weight", "single_blocks.%d.norm.query_norm.scale",
    "final_layer.linear.weight",
};

static const name_set diffusers_names = {
    "x_embedder.weight", "context_embedder.weight", "time_text_embed.text_embedder.linear_1.weight",
    "time_text_embed.timestep_embedder.linear_1.weight", "time_text_embed.guidance_embedder.linear_1.weight",
    "transformer_blocks.%d.attn.to_q.weight", "transformer_blocks.%d.attn.to_q.bias",
    "transformer_blocks.%d.ff.net.0.proj.weight", "transformer_blocks.%d.attn.norm_q.weight",
    "single_transformer_blocks.%d.proj_mlp.weight", "single_transformer_blocks.%d.attn.to_q.weight",
    "single_transformer_blocks.%d.attn.norm_q.weight", "proj_out.weight",
};

static bool is_2d(const sdw_st_tensor *t) { return t && t->ndim == 2; }

static bool present_as(const sdw_safetensors *st, const char *prefix, const name_set *n)
{
    const char *const need[] = { n->img_in, n->txt_in, n->vector_in, n->time_in };
    for (size_t i = 0; i < sizeof need / sizeof *need; i++)
        if (!is_2d(sdw_wl_tensor_at(st, prefix, need[i], 0))) return false;
    return true;
}

bool sdw_flux_present(const sdw_safetensors *st, const char *prefix)
{
    return present_as(st, prefix, &bfl_names) || present_as(st, prefix, &diffusers_names);
}

static bool even_in(int v, int lo, int hi) { return v >= lo && v <= hi && v % 2 == 0; }

/* heads and axes_dim from a diffusers config.json, checked against the shapes. */
static sdw_status from_json(const sdw_safetensors *st, const cJSON *cfg, sdw_flux_config *c)
{
    int heads = sdw_json_int(cfg, "num_attention_heads", c->heads);
    int hd = sdw_json_int(cfg, "attention_head_dim", c->head_dim);
    if (heads < 1 || hd != c->head_dim || heads * hd != c->hidden)
        return sdw_fail(SDW_ERR_FORMAT, "%s: config.json says %d heads of %d, the tensors %d wide with %d-dim q-norms",
                        st->path, heads, hd, c->hidden, c->head_dim);
    c->heads = heads;
    const cJSON *ax = cJSON_GetObjectItemCaseSensitive(cfg, "axes_dims_rope");
    if (ax) {
        if (!cJSON_IsArray(ax) || cJSON_GetArraySize(ax) != 3)
            return sdw_fail(SDW_ERR_FORMAT, "%s: config.json axes_dims_rope is not a list of 3", st->path);
        for (int k = 0; k < 3; k++) {
            const cJSON *e = cJSON_GetArrayItem(ax, k);
            c->axes_dim[k] = cJSON_IsNumber(e) ? e->valueint : -1;
        }
    }
    int layers = sdw_json_int(cfg, "num_layers", c->depth);
    int single = sdw_json_int(cfg, "num_single_layers", c->depth_single);
    if (layers != c->depth || single != c->depth_single)
        return sdw_fail(SDW_ERR_FORMAT, "%s: config.json says %d + %d blocks, the file holds %d + %d", st->path, layers,
                        single, c->depth, c->depth_single);
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(cfg, "guidance_embeds");
    if (cJSON_IsBool(g) && cJSON_IsTrue(g) != c->guidance_embed)
        return sdw_fail(SDW_ERR_FORMAT, "%s: config.json guidance_embeds disagrees with the tensors", st->path);
    return SDW_OK;
}

sdw_status sdw_flux_config_from_tensors(const sdw_safetensors *st, const char *prefix, sdw_name_layout names,
                                        const cJSON *diffusers_cfg, sdw_flux_config *c)
{
    memset(c, 0, sizeof *c);
    if (!prefix) prefix = "";
    const name_set *n = names == SDW_NAMES_DIFFUSERS ? &diffusers_names : &bfl_names;
    const sdw_st_tensor *img_in = sdw_wl_tensor_at(st, prefix, n->img_in, 0);
    const sdw_st_tensor *txt_in = sdw_wl_tensor_at(st, prefix, n->txt_in, 0);
    const sdw_st_tensor *vec_in = sdw_wl_tensor_at(st, prefix, n->vector_in, 0);
    const sdw_st_tensor *time_in = sdw_wl_tensor_at(st, prefix, n->time_in, 0);
    if (!is_2d(img_in) || !is_2d(txt_in) || !is_2d(vec_in) || !is_2d(time_in))
        return sdw_fail(SDW_ERR_FORMAT, "%s: not a FLUX transformer (no 2-D %s%s / %s / %s / %s)", st->path, prefix,
                        n->img_in, n->txt_in, n->vector_in, n->time_in);
    c->hidden = (int)img_in->shape[0];
    c->in_channels = (int)img_in->shape[1];
    c->context_dim = (int)txt_in->shape[1];
    c->vec_dim = (int)vec_in->shape[1];
    c->theta = 10000.0f;
    c->guidance_embed = sdw_wl_tensor_at(st, prefix, n->guidance_in, 0) != NULL;
    while (c->depth < FLUX_MAX_DEPTH && sdw_wl_tensor_at(st, prefix, n->dqkv, c->depth)) c->depth++;
    while (c->depth_single < FLUX_MAX_DEPTH && sdw_wl_tensor_at(st, prefix, n->s_lin1, c->depth_single))
        c->depth_single++;
    /* The first block's q-norm and MLP input tell head_dim and mlp_hidden. */
    const sdw_st_tensor *qn = sdw_wl_tensor_at(st, prefix, c->depth ? n->dqnorm : n->sqnorm, 0);
    const sdw_st_tensor *mlp = sdw_wl_tensor_at(st, prefix, c->depth ? n->dmlp0 : n->s_lin1, 0);
    if (!qn || !mlp || !is_2d(mlp) || (c->depth == 0 && c->depth_single == 0))
        return sdw_fail(SDW_ERR_FORMAT, "%s: FLUX transformer without blocks or their q-norm / MLP", st->path);
    c->head_dim = (int)qn->numel;
    c->mlp_hidden = (int)mlp->shape[0];
    /* BFL's single-block linear1 holds q|k|v before the MLP rows. */
    if (!c->depth && names != SDW_NAMES_DIFFUSERS) c->mlp_hidden -= 3 * c->hidden;
    c->qkv_bias = c->depth ? sdw_wl_tensor_at(st, prefix, n->dqkv_bias, 0) != NULL : true;
    if (c->hidden < 1 || c->hidden > FLUX_MAX_SIZE || c->head_dim < 2 || c->hidden % c->head_dim ||
        c->in_channels < 1 || c->in_channels > FLUX_MAX_SIZE || c->context_dim < 1 || c->context_dim > FLUX_MAX_SIZE ||
        c->vec_dim < 1 || c->vec_dim > FLUX_MAX_SIZE || c->mlp_hidden < 1 || c->mlp_hidden > 16 * FLUX_MAX_SIZE)
        return sdw_fail(SDW_ERR_FORMAT, "%s: FLUX transformer sizes out of range (hidden %d, head_dim %d)", st->path,
                        c->hidden, c->head_dim);
    c->heads = c->hidden / c->head_dim;
    /* FLUX.1 Fill / Canny / Depth take the packed latents with their image
     * conditioning concatenated (384 or 128 inputs for 64 outputs). */
    const sdw_st_tensor *fin = sdw_wl_tensor_at(st, prefix, n->final_linear, 0);
    if (fin && fin->ndim == 2 && fin->shape[0] != c->in_channels)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: a FLUX transformer with %d inputs for %d outputs (FLUX.1 Fill, Canny "
                        "or Depth): its image conditioning is not supported yet", st->path, c->in_channels,
                        (int)fin->shape[0]);
    int a = 7 * c->head_dim / 16 / 2 * 2;
    c->axes_dim[0] = c->head_dim - 2 * a;
    c->axes_dim[1] = c->axes_dim[2] = a;
    if (diffusers_cfg) SDW_TRY(from_json(st, diffusers_cfg, c));
    if (!even_in(c->axes_dim[0], 0, c->head_dim) || !even_in(c->axes_dim[1], 0, c->head_dim) ||
        !even_in(c->axes_dim[2], 0, c->head_dim) || c->axes_dim[0] + c->axes_dim[1] + c->axes_dim[2] != c->head_dim)
        return sdw_fail(SDW_ERR_FORMAT, "%s: RoPE axes (%d, %d, %d) do not split head_dim %d into even parts", st->path,
                        c->axes_dim[0], c->axes_dim[1], c->axes_dim[2], c->head_dim);
    return SDW_OK;
}

/* ---------------------------------------------------------------- BFL -> diffusers */

/* BFL module suffixes and the diffusers suffixes they become, for the
 * modules that map one to one (whole tensor). */
static const sdw_wl_rename top_level[] = {
    { "img_in", "x_embedder" },
    { "txt_in", "context_embedder" },
    { "time_in.in_layer", "time_text_embed.timestep_embedder.linear_1" },
    { "time_in.out_layer", "time_text_embed.timestep_embedder.linear_2" },
    { "guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1" },
    { "guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2" },
    { "vector_in.in_layer", "time_text_embed.text_embedder.linear_1" },
    { "vector_in.out_layer", "time_text_embed.text_embedder.linear_2" },
    { "final_layer.linear", "proj_out" },
};

static const sdw_wl_rename double_block[] = {
    { "img_mod.lin", "norm1.linear" },
    { "txt_mod.lin", "norm1_context.linear" },
    { "img_attn.proj", "attn.to_out.0" },
    { "txt_attn.proj", "attn.to_add_out" },
    { "img_mlp.0", "ff.net.0.proj" },
    { "img_mlp.2", "ff.net.2" },
    { "txt_mlp.0", "ff_context.net.0.proj" },
    { "txt_mlp.2", "ff_context.net.2" },
    { "img_attn.norm.query_norm", "attn.norm_q" },
    { "img_attn.norm.key_norm", "attn.norm_k" },
    { "txt_attn.norm.query_norm", "attn.norm_added_q" },
    { "txt_attn.norm.key_norm", "attn.norm_added_k" },
};

static const sdw_wl_rename single_block[] = {
    { "linear2", "proj_out" },
    { "modulation.lin", "norm.linear" },
    { "norm.query_norm", "attn.norm_q" },
    { "norm.key_norm", "attn.norm_k" },
};

/* The split loader (weights_parts.c) asks for up to SDW_WL_MAX_SPLITS. */
_Static_assert(SDW_FLUX_MAX_PARTS <= SDW_WL_MAX_SPLITS, "more splits than weights_parts.c holds");

#define RENAMED(table, rest, p, block, rows) \
    sdw_wl_split_renamed(table, sizeof table / sizeof *table, rest, p, block, rows)

int sdw_flux_diffusers_parts(const char *bfl, const sdw_flux_config *c, int out_rows,
                             sdw_flux_part parts[SDW_FLUX_MAX_PARTS])
{
    static const char *const img_qkv[] = { "attn.to_q", "attn.to_k", "attn.to_v" };
    static const char *const txt_qkv[] = { "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj" };
    static const char *const lin1[] = { "attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp" };
    const int H = c->hidden, rows4[] = { H, H, H, c->mlp_hidden };
    char block[64];
    int idx, used = 0;
    if (sscanf(bfl, "double_blocks.%d.%n", &idx, &used) == 1 && used > 0) {
        snprintf(block, sizeof block, "transformer_blocks.%d.", idx);
        const char *rest = bfl + used;
        if (!strcmp(rest, "img_attn.qkv")) return sdw_wl_split_stacked(parts, block, img_qkv, rows4, 3);
        if (!strcmp(rest, "txt_attn.qkv")) return sdw_wl_split_stacked(parts, block, txt_qkv, rows4, 3);
        return RENAMED(double_block, rest, parts, block, out_rows);
    }
    if (sscanf(bfl, "single_blocks.%d.%n", &idx, &used) == 1 && used > 0) {
        snprintf(block, sizeof block, "single_transformer_blocks.%d.", idx);
        const char *rest = bfl + used;
        if (!strcmp(rest, "linear1")) return sdw_wl_split_stacked(parts, block, lin1, rows4, 4);
        return RENAMED(single_block, rest, parts, block, out_rows);
    }
    /* diffusers' AdaLayerNormContinuous chunks (scale, shift); BFL (shift, scale). */
    if (!strcmp(bfl, "final_layer.adaLN_modulation.1")) return sdw_wl_split_swapped(parts, "", "norm_out.linear", H);
    return RENAMED(top_level, bfl, parts, "", out_rows);
}
