/* mmdit_names.c: what an SD3 / SD3.5 transformer file holds, by name: its
 * configuration from tensor shapes (and a diffusers config.json), whether a
 * file holds one at all, and where each Stability-AI tensor's rows live in
 * the diffusers layout (diffusers' convert_sd3_transformer_checkpoint_to_diffusers
 * run backwards). mmdit.c loads by SAI names through the latter. */
#include "models/mmdit.h"
#include "core/error.h"
#include "io/json_file.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds for sizes read from a file, far above any real model's: they must
 * not make the loader divide by zero or overflow int arithmetic. */
#define MMDIT_MAX_SIZE 65536
#define MMDIT_MAX_PATCH 16
#define MMDIT_MAX_POS 4096
#define SAI_HEAD_DIM 64

/* The tensor names that tell the configuration, per layout ("%d": block index). */
typedef struct {
    const char *patch, *pos, *context, *pooled, *final_linear;
    const char *qkv, *attn2, *ctx_ln_k, *ln_q;
} name_set;

static const name_set sai_names = {
    "x_embedder.proj.weight", "pos_embed", "context_embedder.weight", "y_embedder.mlp.0.weight",
    "final_layer.linear.weight", "joint_blocks.%d.x_block.attn.qkv.weight", "joint_blocks.%d.x_block.attn2.qkv.weight",
    "joint_blocks.%d.context_block.attn.ln_k.weight", "joint_blocks.%d.x_block.attn.ln_q.weight",
};

static const name_set diffusers_names = {
    "pos_embed.proj.weight", "pos_embed.pos_embed", "context_embedder.weight",
    "time_text_embed.text_embedder.linear_1.weight", "proj_out.weight", "transformer_blocks.%d.attn.to_q.weight",
    "transformer_blocks.%d.attn2.to_q.weight", "transformer_blocks.%d.attn.norm_added_k.weight",
    "transformer_blocks.%d.attn.norm_q.weight",
};

static bool has_dims(const sdw_st_tensor *t, int ndim) { return t && t->ndim == ndim; }

static bool present_as(const sdw_safetensors *st, const char *prefix, const name_set *n)
{
    const char *const need[] = { n->patch, n->pos, n->context, n->pooled, n->qkv };
    static const int ndim[] = { 4, 3, 2, 2, 2 };
    for (size_t i = 0; i < sizeof need / sizeof *need; i++)
        if (!has_dims(sdw_wl_tensor_at(st, prefix, need[i], 0), ndim[i])) return false;
    return true;
}

bool sdw_mmdit_present(const sdw_safetensors *st, const char *prefix)
{
    if (!prefix) prefix = "";
    return present_as(st, prefix, &sai_names) || present_as(st, prefix, &diffusers_names);
}

/* Every number config.json gives must agree with the shapes. */
static sdw_status json_agrees(const sdw_safetensors *st, const cJSON *cfg, const char *key, int have)
{
    int v = sdw_json_int(cfg, key, have);
    if (v != have)
        return sdw_fail(SDW_ERR_FORMAT, "%s: config.json says %s %d, the tensors %d", st->path, key, v, have);
    return SDW_OK;
}

/* heads / head_dim from a diffusers config.json, the rest checked against the shapes. */
static sdw_status from_json(const sdw_safetensors *st, const cJSON *cfg, sdw_mmdit_config *c)
{
    int heads = sdw_json_int(cfg, "num_attention_heads", c->heads);
    int hd = sdw_json_int(cfg, "attention_head_dim", c->head_dim);
    if (heads < 1 || hd < 1 || (int64_t)heads * hd != c->hidden || (c->qk_norm && hd != c->head_dim))
        return sdw_fail(SDW_ERR_FORMAT, "%s: config.json says %d heads of %d, the tensors are %d wide%s", st->path,
                        heads, hd, c->hidden, c->qk_norm ? " with 64-dim q / k norms" : "");
    c->heads = heads;
    c->head_dim = hd;
    SDW_TRY(json_agrees(st, cfg, "num_layers", c->depth));
    SDW_TRY(json_agrees(st, cfg, "patch_size", c->patch));
    SDW_TRY(json_agrees(st, cfg, "in_channels", c->in_channels));
    SDW_TRY(json_agrees(st, cfg, "out_channels", c->out_channels));
    SDW_TRY(json_agrees(st, cfg, "joint_attention_dim", c->joint_dim));
    SDW_TRY(json_agrees(st, cfg, "pooled_projection_dim", c->pooled_dim));
    SDW_TRY(json_agrees(st, cfg, "caption_projection_dim", c->hidden));
    SDW_TRY(json_agrees(st, cfg, "pos_embed_max_size", c->pos_max));
    const cJSON *qk = cJSON_GetObjectItemCaseSensitive(cfg, "qk_norm");
    if (qk && (cJSON_IsString(qk) != c->qk_norm || (cJSON_IsString(qk) && strcmp(qk->valuestring, "rms_norm"))))
        return sdw_fail(SDW_ERR_FORMAT, "%s: config.json qk_norm disagrees with the tensors (%s q / k norms)",
                        st->path, c->qk_norm ? "with" : "without");
    const cJSON *dual = cJSON_GetObjectItemCaseSensitive(cfg, "dual_attention_layers");
    if (dual && cJSON_IsArray(dual)) {
        bool listed[SDW_MMDIT_MAX_DEPTH] = { false };
        const cJSON *e;
        cJSON_ArrayForEach(e, dual) {
            if (!cJSON_IsNumber(e) || e->valueint < 0 || e->valueint >= c->depth)
                return sdw_fail(SDW_ERR_FORMAT, "%s: config.json dual_attention_layers names a block outside 0..%d",
                                st->path, c->depth - 1);
            listed[e->valueint] = true;
        }
        for (int i = 0; i < c->depth; i++)
            if (listed[i] != c->dual[i])
                return sdw_fail(SDW_ERR_FORMAT, "%s: config.json dual_attention_layers disagrees with the tensors at "
                                "block %d", st->path, i);
    }
    return SDW_OK;
}

static int isqrt(int64_t n)
{
    int r = 0;
    while ((int64_t)(r + 1) * (r + 1) <= n) r++;
    return r;
}

/* Sizes from the embedders, the position table and the final layer. */
static sdw_status shapes(const sdw_safetensors *st, const char *prefix, const name_set *n, sdw_mmdit_config *c)
{
    const sdw_st_tensor *patch = sdw_wl_tensor_at(st, prefix, n->patch, 0);
    const sdw_st_tensor *pos = sdw_wl_tensor_at(st, prefix, n->pos, 0);
    const sdw_st_tensor *ctx = sdw_wl_tensor_at(st, prefix, n->context, 0);
    const sdw_st_tensor *pooled = sdw_wl_tensor_at(st, prefix, n->pooled, 0);
    const sdw_st_tensor *fin = sdw_wl_tensor_at(st, prefix, n->final_linear, 0);
    if (!has_dims(patch, 4) || !has_dims(pos, 3) || !has_dims(ctx, 2) || !has_dims(pooled, 2) || !has_dims(fin, 2))
        return sdw_fail(SDW_ERR_FORMAT, "%s: not an SD3 / SD3.5 transformer (no %s%s [D, C, p, p], %s [1, P*P, D], "
                        "%s, %s, %s)", st->path, prefix, n->patch, n->pos, n->context, n->pooled, n->final_linear);
    c->hidden = (int)patch->shape[0];
    c->in_channels = (int)patch->shape[1];
    c->patch = (int)patch->shape[2];
    c->joint_dim = (int)ctx->shape[1];
    c->pooled_dim = (int)pooled->shape[1];
    bool ok = patch->shape[0] >= 1 && patch->shape[0] <= MMDIT_MAX_SIZE && patch->shape[1] >= 1 &&
              patch->shape[1] <= MMDIT_MAX_SIZE && patch->shape[2] >= 1 && patch->shape[2] <= MMDIT_MAX_PATCH &&
              patch->shape[3] == patch->shape[2] && ctx->shape[0] == c->hidden && ctx->shape[1] >= 1 &&
              ctx->shape[1] <= MMDIT_MAX_SIZE && pooled->shape[0] == c->hidden && pooled->shape[1] >= 1 &&
              pooled->shape[1] <= MMDIT_MAX_SIZE && pos->shape[0] == 1 && pos->shape[2] == c->hidden &&
              fin->shape[1] == c->hidden && pos->shape[1] >= 1 && pos->shape[1] <= (int64_t)MMDIT_MAX_POS * MMDIT_MAX_POS;
    if (!ok)
        return sdw_fail(SDW_ERR_FORMAT, "%s: SD3 transformer shapes disagree (%s [%lld, %lld, ...], %s, %s, %s)",
                        st->path, n->patch, (long long)patch->shape[0], (long long)patch->shape[1], n->pos,
                        n->context, n->pooled);
    c->pos_max = isqrt(pos->shape[1]);
    if ((int64_t)c->pos_max * c->pos_max != pos->shape[1])
        return sdw_fail(SDW_ERR_FORMAT, "%s: %s holds %lld positions, not a square grid", st->path, n->pos,
                        (long long)pos->shape[1]);
    const int pp = c->patch * c->patch;
    if (fin->shape[0] % pp || fin->shape[0] < pp || fin->shape[0] / pp > MMDIT_MAX_SIZE)
        return sdw_fail(SDW_ERR_FORMAT, "%s: %s has %lld outputs, not %d per output channel", st->path,
                        n->final_linear, (long long)fin->shape[0], pp);
    c->out_channels = (int)(fin->shape[0] / pp);
    return SDW_OK;
}

sdw_status sdw_mmdit_config_from_tensors(const sdw_safetensors *st, const char *prefix, sdw_name_layout names,
                                         const cJSON *diffusers_cfg, sdw_mmdit_config *c)
{
    memset(c, 0, sizeof *c);
    if (!prefix) prefix = "";
    const name_set *n = names == SDW_NAMES_DIFFUSERS ? &diffusers_names : &sai_names;
    SDW_TRY(shapes(st, prefix, n, c));
    while (c->depth <= SDW_MMDIT_MAX_DEPTH && sdw_wl_tensor_at(st, prefix, n->qkv, c->depth)) c->depth++;
    if (c->depth > SDW_MMDIT_MAX_DEPTH)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: an SD3 transformer with more than %d blocks", st->path,
                        SDW_MMDIT_MAX_DEPTH);
    if (!c->depth)
        return sdw_fail(SDW_ERR_FORMAT, "%s: SD3 transformer without blocks (no %s%s)", st->path, prefix, n->qkv);
    for (int i = 0; i < c->depth; i++) c->dual[i] = sdw_wl_tensor_at(st, prefix, n->attn2, i) != NULL;
    c->qk_norm = sdw_wl_tensor_at(st, prefix, n->ctx_ln_k, 0) != NULL;
    c->head_dim = SAI_HEAD_DIM;
    if (c->qk_norm) {
        const sdw_st_tensor *lq = sdw_wl_tensor_at(st, prefix, n->ln_q, 0);
        if (!has_dims(lq, 1) || lq->shape[0] < 1)
            return sdw_fail(SDW_ERR_FORMAT, "%s: SD3 transformer with a k norm but no 1-D q norm %s%s", st->path,
                            prefix, n->ln_q);
        c->head_dim = (int)lq->shape[0];
    }
    if (c->hidden % c->head_dim)
        return sdw_fail(SDW_ERR_FORMAT, "%s: SD3 transformer width %d is not a multiple of its %d-dim heads",
                        st->path, c->hidden, c->head_dim);
    c->heads = c->hidden / c->head_dim;
    if (diffusers_cfg) SDW_TRY(from_json(st, diffusers_cfg, c));
    return SDW_OK;
}

/* ---------------------------------------------------------------- SAI -> diffusers */

/* SAI module suffixes and the diffusers suffixes they become, whole tensor. */
static const sdw_wl_rename top_level[] = {
    { "pos_embed", "pos_embed.pos_embed" },
    { "x_embedder.proj", "pos_embed.proj" },
    { "t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1" },
    { "t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2" },
    { "y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1" },
    { "y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2" },
    { "context_embedder", "context_embedder" },
    { "final_layer.linear", "proj_out" },
};

static const sdw_wl_rename block[] = {
    { "x_block.adaLN_modulation.1", "norm1.linear" },
    { "context_block.adaLN_modulation.1", "norm1_context.linear" },
    { "x_block.attn.proj", "attn.to_out.0" },
    { "context_block.attn.proj", "attn.to_add_out" },
    { "x_block.attn.ln_q", "attn.norm_q" },
    { "x_block.attn.ln_k", "attn.norm_k" },
    { "context_block.attn.ln_q", "attn.norm_added_q" },
    { "context_block.attn.ln_k", "attn.norm_added_k" },
    { "x_block.attn2.proj", "attn2.to_out.0" },
    { "x_block.attn2.ln_q", "attn2.norm_q" },
    { "x_block.attn2.ln_k", "attn2.norm_k" },
    { "x_block.mlp.fc1", "ff.net.0.proj" },
    { "x_block.mlp.fc2", "ff.net.2" },
    { "context_block.mlp.fc1", "ff_context.net.0.proj" },
    { "context_block.mlp.fc2", "ff_context.net.2" },
};

/* The split loader (weights_parts.c) asks for up to SDW_WL_MAX_SPLITS. */
_Static_assert(SDW_MMDIT_MAX_PARTS <= SDW_WL_MAX_SPLITS, "more splits than weights_parts.c holds");

#define RENAMED(table, rest, p, blk, rows) sdw_wl_split_renamed(table, sizeof table / sizeof *table, rest, p, blk, rows)

int sdw_mmdit_diffusers_parts(const char *sai, const sdw_mmdit_config *c, int out_rows,
                              sdw_mmdit_part parts[SDW_MMDIT_MAX_PARTS])
{
    static const char *const x_qkv[] = { "attn.to_q", "attn.to_k", "attn.to_v" };
    static const char *const ctx_qkv[] = { "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj" };
    static const char *const x2_qkv[] = { "attn2.to_q", "attn2.to_k", "attn2.to_v" };
    const int H = c->hidden, rows3[] = { H, H, H };
    char blk[64];
    int idx, used = 0;
    if (sscanf(sai, "joint_blocks.%d.%n", &idx, &used) == 1 && used > 0 && idx >= 0) {
        snprintf(blk, sizeof blk, "transformer_blocks.%d.", idx);
        const char *rest = sai + used;
        if (!strcmp(rest, "x_block.attn.qkv")) return sdw_wl_split_stacked(parts, blk, x_qkv, rows3, 3);
        if (!strcmp(rest, "context_block.attn.qkv")) return sdw_wl_split_stacked(parts, blk, ctx_qkv, rows3, 3);
        if (!strcmp(rest, "x_block.attn2.qkv")) return sdw_wl_split_stacked(parts, blk, x2_qkv, rows3, 3);
        /* The last block's pre-only context modulation is (shift, scale), turned round like norm_out. */
        if (idx == c->depth - 1 && !strcmp(rest, "context_block.adaLN_modulation.1"))
            return sdw_wl_split_swapped(parts, blk, "norm1_context.linear", H);
        return RENAMED(block, rest, parts, blk, out_rows);
    }
    /* diffusers' AdaLayerNormContinuous chunks (scale, shift); SAI (shift, scale). */
    if (!strcmp(sai, "final_layer.adaLN_modulation.1")) return sdw_wl_split_swapped(parts, "", "norm_out.linear", H);
    return RENAMED(top_level, sai, parts, "", out_rows);
}
