/* unet_config.c: the UNet's architecture from a diffusers config.json or from
 * the tensor shapes of an original LDM checkpoint, and the diffusers -> LDM
 * tensor-name mapping used to load the latter. */
#include "models/unet.h"
#include "core/error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LDM "model.diffusion_model."

/* A config value that is either a number (same for every level) or a list. */
static bool per_level(const cJSON *cfg, const char *key, int n, int *out)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsNumber(j)) {
        for (int i = 0; i < n; i++) out[i] = j->valueint;
        return true;
    }
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != n) return false;
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(j, i);
        if (!cJSON_IsNumber(e)) return false;
        out[i] = e->valueint;
    }
    return true;
}

/* Bounds for sizes read from a config.json, far above any real model's: the
 * file comes from disk and must not make the loader divide by zero or
 * overflow int arithmetic. */
#define CFG_MAX_SIZE 65536
#define CFG_MAX_DEPTH 64

static bool in_range(int v, int lo, int hi) { return v >= lo && v <= hi; }

/* Checks what sdw_unet_config_from_diffusers read (or the shapes gave). */
static sdw_status check_diffusers_config(const sdw_unet_config *c)
{
    bool ok = in_range(c->in_channels, 1, CFG_MAX_SIZE) &&
              (c->encoder_only || in_range(c->out_channels, 1, CFG_MAX_SIZE)) &&
              in_range(c->layers_per_block, 1, CFG_MAX_DEPTH) && in_range(c->mid_depth, 0, CFG_MAX_DEPTH) &&
              in_range(c->context_dim, 1, CFG_MAX_SIZE);
    for (int i = 0; i < c->n_levels; i++)
        ok = ok && in_range(c->block_out[i], 1, CFG_MAX_SIZE) && in_range(c->depth[i], 0, CFG_MAX_DEPTH) &&
             in_range(c->heads[i], 1, CFG_MAX_SIZE);
    if (c->adm_in || c->addition_time_embed_dim)
        ok = ok && in_range(c->adm_in, 1, CFG_MAX_SIZE) && in_range(c->addition_time_embed_dim, 1, CFG_MAX_SIZE);
    return ok ? SDW_OK : sdw_fail(SDW_ERR_FORMAT, "unet config: a size or count is out of range");
}

sdw_status sdw_unet_config_from_diffusers(const cJSON *cfg, sdw_unet_config *c)
{
    memset(c, 0, sizeof *c);
    const cJSON *bo = cJSON_GetObjectItemCaseSensitive(cfg, "block_out_channels");
    const cJSON *down = cJSON_GetObjectItemCaseSensitive(cfg, "down_block_types");
    int n = cJSON_GetArraySize(bo);
    if (!cJSON_IsArray(bo) || n < 1 || n > SDW_UNET_MAX_LEVELS || cJSON_GetArraySize(down) != n)
        return sdw_fail(SDW_ERR_FORMAT, "unet config: block_out_channels / down_block_types missing or inconsistent");
    c->n_levels = n;
    if (!per_level(cfg, "block_out_channels", n, c->block_out))
        return sdw_fail(SDW_ERR_FORMAT, "unet config: bad block_out_channels");
    c->in_channels = cJSON_GetObjectItem(cfg, "in_channels") ? cJSON_GetObjectItem(cfg, "in_channels")->valueint : 4;
    c->out_channels = cJSON_GetObjectItem(cfg, "out_channels") ? cJSON_GetObjectItem(cfg, "out_channels")->valueint : 4;
    const cJSON *lpb = cJSON_GetObjectItemCaseSensitive(cfg, "layers_per_block");
    c->layers_per_block = cJSON_IsNumber(lpb) ? lpb->valueint : 2;
    int tl[SDW_UNET_MAX_LEVELS];
    if (!per_level(cfg, "transformer_layers_per_block", n, tl))
        for (int i = 0; i < n; i++) tl[i] = 1;
    for (int i = 0; i < n; i++) {
        const cJSON *t = cJSON_GetArrayItem(down, i);
        bool attn = cJSON_IsString(t) && strstr(t->valuestring, "CrossAttn");
        c->depth[i] = attn ? tl[i] : 0;
    }
    c->mid_depth = tl[n - 1];
    /* diffusers' "attention_head_dim" is, for these models, the number of heads
     * (a historical misnomer); "num_attention_heads" wins when present. */
    if (!per_level(cfg, "num_attention_heads", n, c->heads) && !per_level(cfg, "attention_head_dim", n, c->heads))
        for (int i = 0; i < n; i++) c->heads[i] = 8;
    const cJSON *cd = cJSON_GetObjectItemCaseSensitive(cfg, "cross_attention_dim");
    c->context_dim = cJSON_IsNumber(cd) ? cd->valueint : 768;
    c->linear_proj = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "use_linear_projection"));
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(cfg, "addition_embed_type");
    if (cJSON_IsString(add) && !strcmp(add->valuestring, "text_time")) {
        const cJSON *pi = cJSON_GetObjectItemCaseSensitive(cfg, "projection_class_embeddings_input_dim");
        const cJSON *td = cJSON_GetObjectItemCaseSensitive(cfg, "addition_time_embed_dim");
        if (!cJSON_IsNumber(pi) || !cJSON_IsNumber(td))
            return sdw_fail(SDW_ERR_FORMAT, "unet config: text_time embedding without its sizes");
        c->adm_in = pi->valueint;
        c->addition_time_embed_dim = td->valueint;
    }
    SDW_TRY(check_diffusers_config(c));
    c->time_embed_dim = 4 * c->block_out[0];
    return SDW_OK;
}

/* The tensor "<prefix><fmt with a, b>", or NULL. */
static const sdw_st_tensor *at(const sdw_safetensors *st, const char *prefix, const char *fmt, int a, int b)
{
    char name[320], tail[256];
    snprintf(tail, sizeof tail, fmt, a, b);
    snprintf(name, sizeof name, "%s%s", prefix, tail);
    return sdw_st_find(st, name);
}

static int count_blocks(const sdw_safetensors *st, const char *prefix, const char *fmt, int block)
{
    int n = 0;
    while (at(st, prefix, fmt, block, n)) n++;
    return n;
}

/* Everything but the heads and out_channels from LDM names under prefix
 * (input_blocks, middle_block, time_embed, label_emb). */
static sdw_status walk_ldm(const sdw_safetensors *st, const char *prefix, sdw_unet_config *c)
{
    const sdw_st_tensor *t = at(st, prefix, "input_blocks.0.0.weight", 0, 0);
    const sdw_st_tensor *te = at(st, prefix, "time_embed.0.weight", 0, 0);
    if (!t || !te || t->ndim != 4 || te->ndim != 2)
        return sdw_fail(SDW_ERR_FORMAT, "%s: no UNet (%sinput_blocks.0.0.weight, %stime_embed.0.weight)", st->path,
                        prefix, prefix);
    c->in_channels = (int)t->shape[1];
    c->time_embed_dim = (int)te->shape[0];
    /* Walk input_blocks: resnets until a downsampler ("op") closes a level. */
    int level = 0, per_level_count = 0, block = 1;
    for (;; block++) {
        if (at(st, prefix, "input_blocks.%d.0.op.weight", block, 0)) {
            if (level == 0) c->layers_per_block = per_level_count;
            else if (per_level_count != c->layers_per_block)
                return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: levels with different resnet counts", st->path);
            if (++level >= SDW_UNET_MAX_LEVELS)
                return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: more than %d UNet levels", st->path, SDW_UNET_MAX_LEVELS);
            per_level_count = 0;
            continue;
        }
        const sdw_st_tensor *r = at(st, prefix, "input_blocks.%d.0.in_layers.2.weight", block, 0);
        if (!r) break;
        c->block_out[level] = (int)r->shape[0];
        int d = count_blocks(st, prefix, "input_blocks.%d.1.transformer_blocks.%d.norm1.weight", block);
        if (per_level_count == 0) c->depth[level] = d;
        const sdw_st_tensor *k = at(st, prefix, "input_blocks.%d.1.transformer_blocks.0.attn2.to_k.weight", block, 0);
        if (k) c->context_dim = (int)k->shape[1];
        const sdw_st_tensor *pin = at(st, prefix, "input_blocks.%d.1.proj_in.weight", block, 0);
        if (pin) c->linear_proj = pin->ndim == 2;
        per_level_count++;
    }
    if (level == 0) c->layers_per_block = per_level_count;
    c->n_levels = level + 1;
    if (c->layers_per_block < 1 || per_level_count != c->layers_per_block)
        return sdw_fail(SDW_ERR_FORMAT, "%s: cannot make out the UNet's down blocks", st->path);
    c->mid_depth = count_blocks(st, prefix, "middle_block.%d.transformer_blocks.%d.norm1.weight", 1);
    if (!c->context_dim) {
        const sdw_st_tensor *k = at(st, prefix, "middle_block.1.transformer_blocks.0.attn2.to_k.weight", 0, 0);
        c->context_dim = k ? (int)k->shape[1] : 768;
    }
    const sdw_st_tensor *adm = at(st, prefix, "label_emb.0.0.weight", 0, 0);
    if (adm) {
        c->adm_in = (int)adm->shape[1];
        c->addition_time_embed_dim = 256;
    }
    return SDW_OK;
}

/* The same from diffusers names under prefix (down_blocks, mid_block,
 * time_embedding, add_embedding). */
static sdw_status walk_diffusers(const sdw_safetensors *st, const char *prefix, sdw_unet_config *c)
{
    const sdw_st_tensor *t = at(st, prefix, "conv_in.weight", 0, 0);
    const sdw_st_tensor *te = at(st, prefix, "time_embedding.linear_1.weight", 0, 0);
    if (!t || !te || t->ndim != 4 || te->ndim != 2)
        return sdw_fail(SDW_ERR_FORMAT, "%s: no UNet (%sconv_in.weight, %stime_embedding.linear_1.weight)", st->path,
                        prefix, prefix);
    c->in_channels = (int)t->shape[1];
    c->time_embed_dim = (int)te->shape[0];
    int n = 0;
    while (n < SDW_UNET_MAX_LEVELS && at(st, prefix, "down_blocks.%d.resnets.0.conv1.weight", n, 0)) n++;
    if (n == 0 || at(st, prefix, "down_blocks.%d.resnets.0.conv1.weight", n, 0))
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: no down blocks, or more than %d", st->path, SDW_UNET_MAX_LEVELS);
    c->n_levels = n;
    for (int i = 0; i < n; i++) {
        int L = count_blocks(st, prefix, "down_blocks.%d.resnets.%d.conv1.weight", i);
        if (i == 0) c->layers_per_block = L;
        else if (L != c->layers_per_block)
            return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: levels with different resnet counts", st->path);
        c->block_out[i] = (int)at(st, prefix, "down_blocks.%d.resnets.%d.conv1.weight", i, 0)->shape[0];
        c->depth[i] = count_blocks(st, prefix, "down_blocks.%d.attentions.0.transformer_blocks.%d.norm1.weight", i);
        const sdw_st_tensor *k = at(st, prefix, "down_blocks.%d.attentions.0.transformer_blocks.0.attn2.to_k.weight", i, 0);
        if (k) c->context_dim = (int)k->shape[1];
        const sdw_st_tensor *pin = at(st, prefix, "down_blocks.%d.attentions.0.proj_in.weight", i, 0);
        if (pin) c->linear_proj = pin->ndim == 2;
    }
    c->mid_depth = count_blocks(st, prefix, "mid_block.attentions.%d.transformer_blocks.%d.norm1.weight", 0);
    if (!c->context_dim) {
        const sdw_st_tensor *k = at(st, prefix, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight", 0, 0);
        c->context_dim = k ? (int)k->shape[1] : 768;
    }
    const sdw_st_tensor *adm = at(st, prefix, "add_embedding.linear_1.weight", 0, 0);
    if (adm) {
        c->adm_in = (int)adm->shape[1];
        c->addition_time_embed_dim = 256;
    }
    return SDW_OK;
}

void sdw_unet_set_heads(sdw_unet_config *c, int num_heads, int head_channels)
{
    if (num_heads <= 0 && head_channels <= 0) {
        if (c->context_dim == 768) num_heads = 8;
        else head_channels = 64;
    }
    for (int i = 0; i < c->n_levels; i++) {
        c->heads[i] = num_heads > 0 ? num_heads : c->block_out[i] / head_channels;
        if (c->heads[i] < 1) c->heads[i] = 1;
    }
}

sdw_status sdw_unet_config_from_ldm(const sdw_safetensors *st, const sdw_yaml_map *yaml, sdw_unet_config *c)
{
    memset(c, 0, sizeof *c);
    const sdw_st_tensor *o = sdw_st_find(st, LDM "out.2.weight");
    if (!o || o->ndim != 4)
        return sdw_fail(SDW_ERR_FORMAT, "%s: no UNet (model.diffusion_model.input_blocks.0.0.weight, out.2.weight, "
                        "time_embed.0.weight)", st->path);
    SDW_TRY(walk_ldm(st, LDM, c));
    c->out_channels = (int)o->shape[0];
    /* What shapes cannot tell: heads. The sidecar says, else the family convention. */
    const char *P = "model.params.unet_config.params.", *XL = "model.params.network_config.params.";
    char key[256];
    int num_heads = -1, head_ch = -1;
    if (yaml) {
        snprintf(key, sizeof key, "%snum_heads", P);
        num_heads = sdw_yaml_int(yaml, key, -1);
        snprintf(key, sizeof key, "%snum_head_channels", P);
        head_ch = sdw_yaml_int(yaml, key, -1);
        if (num_heads < 0 && head_ch < 0) {
            snprintf(key, sizeof key, "%snum_heads", XL);
            num_heads = sdw_yaml_int(yaml, key, -1);
            snprintf(key, sizeof key, "%snum_head_channels", XL);
            head_ch = sdw_yaml_int(yaml, key, -1);
        }
        if (c->adm_in) {
            int outdim = sdw_yaml_int(yaml, "model.params.conditioner_config.params.emb_models.2.params.outdim", -1);
            if (outdim > 0) c->addition_time_embed_dim = outdim;
        }
    }
    sdw_unet_set_heads(c, num_heads, head_ch);
    return SDW_OK;
}

sdw_status sdw_unet_encoder_config_from_shapes(const sdw_safetensors *st, sdw_name_layout names, const char *prefix,
                                               sdw_unet_config *c)
{
    memset(c, 0, sizeof *c);
    SDW_TRY(names == SDW_NAMES_LDM ? walk_ldm(st, prefix, c) : walk_diffusers(st, prefix, c));
    c->encoder_only = true;
    sdw_unet_set_heads(c, -1, -1);
    return check_diffusers_config(c);
}

/* diffusers resnet sub-module -> LDM resnet sub-module */
static const char *resnet_part(const char *p)
{
    static const char *const map[][2] = {
        { "norm1", "in_layers.0" },      { "conv1", "in_layers.2" },  { "time_emb_proj", "emb_layers.1" },
        { "norm2", "out_layers.0" },     { "conv2", "out_layers.3" }, { "conv_shortcut", "skip_connection" },
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t n = strlen(map[i][0]);
        if (!strncmp(p, map[i][0], n) && p[n] == '.') {
            static _Thread_local char buf[128];
            snprintf(buf, sizeof buf, "%s%s", map[i][1], p + n);
            return buf;
        }
    }
    return p;
}

const char *sdw_unet_ldm_name(const sdw_unet_config *c, const char *name, char *buf, size_t n)
{
    int L = c->layers_per_block, a, b, consumed = 0;
    if (!strncmp(name, "conv_in.", 8)) snprintf(buf, n, LDM "input_blocks.0.0.%s", name + 8);
    else if (!strncmp(name, "time_embedding.linear_1.", 24)) snprintf(buf, n, LDM "time_embed.0.%s", name + 24);
    else if (!strncmp(name, "time_embedding.linear_2.", 24)) snprintf(buf, n, LDM "time_embed.2.%s", name + 24);
    else if (!strncmp(name, "add_embedding.linear_1.", 23)) snprintf(buf, n, LDM "label_emb.0.0.%s", name + 23);
    else if (!strncmp(name, "add_embedding.linear_2.", 23)) snprintf(buf, n, LDM "label_emb.0.2.%s", name + 23);
    else if (!strncmp(name, "conv_norm_out.", 14)) snprintf(buf, n, LDM "out.0.%s", name + 14);
    else if (!strncmp(name, "conv_out.", 9)) snprintf(buf, n, LDM "out.2.%s", name + 9);
    else if (sscanf(name, "down_blocks.%d.resnets.%d.%n", &a, &b, &consumed) == 2 && consumed)
        snprintf(buf, n, LDM "input_blocks.%d.0.%s", 1 + a * (L + 1) + b, resnet_part(name + consumed));
    else if (sscanf(name, "down_blocks.%d.attentions.%d.%n", &a, &b, &consumed) == 2 && consumed)
        snprintf(buf, n, LDM "input_blocks.%d.1.%s", 1 + a * (L + 1) + b, name + consumed);
    else if (sscanf(name, "down_blocks.%d.downsamplers.0.conv.%n", &a, &consumed) == 1 && consumed)
        snprintf(buf, n, LDM "input_blocks.%d.0.op.%s", (a + 1) * (L + 1), name + consumed);
    else if (sscanf(name, "mid_block.resnets.%d.%n", &a, &consumed) == 1 && consumed)
        snprintf(buf, n, LDM "middle_block.%d.%s", a * 2, resnet_part(name + consumed));
    else if (!strncmp(name, "mid_block.attentions.0.", 23)) snprintf(buf, n, LDM "middle_block.1.%s", name + 23);
    else if (sscanf(name, "up_blocks.%d.resnets.%d.%n", &a, &b, &consumed) == 2 && consumed)
        snprintf(buf, n, LDM "output_blocks.%d.0.%s", a * (L + 1) + b, resnet_part(name + consumed));
    else if (sscanf(name, "up_blocks.%d.attentions.%d.%n", &a, &b, &consumed) == 2 && consumed)
        snprintf(buf, n, LDM "output_blocks.%d.1.%s", a * (L + 1) + b, name + consumed);
    else if (sscanf(name, "up_blocks.%d.upsamplers.0.conv.%n", &a, &consumed) == 1 && consumed) {
        bool attn = a >= 0 && a < c->n_levels && c->depth[c->n_levels - 1 - a] > 0;
        snprintf(buf, n, LDM "output_blocks.%d.%d.conv.%s", a * (L + 1) + L, attn ? 2 : 1, name + consumed);
    } else snprintf(buf, n, LDM "%s", name);
    return buf;
}
