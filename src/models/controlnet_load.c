/* controlnet_load.c: finding, configuring and loading a ControlNet (see
 * controlnet.h); the forward pass is in controlnet.c.
 *
 * A ControlNet is three things under one set of names: the hint encoder
 * (diffusers' controlnet_cond_embedding, lllyasviel's input_hint_block), a
 * copy of the base UNet's encoder half (loaded by unet.c in encoder_only
 * mode, under the UNet's own diffusers or LDM names) and the 1x1 "zero"
 * convolutions (controlnet_down_blocks.N / zero_convs.N.0 and
 * controlnet_mid_block / middle_block_out.0). The model asks for every
 * tensor by its diffusers name; for lllyasviel files a name map turns that
 * into the LDM name under the file's prefix.
 *
 * Shapes give the structure. Head counts they cannot give: a diffusers
 * config.json (the folder's, or one beside a single file) or an A1111-style
 * yaml says them, else the family convention (SD1: 8 heads, else 64-wide). */
#include "models/controlnet_impl.h"
#include "core/error.h"
#include "core/log.h"
#include "io/json_file.h"
#include "io/sidecar_yaml.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LDM_UNET "model.diffusion_model."

/* What the file or folder at a path holds, before any weight is read. */
typedef struct {
    sdw_safetensors *st;
    const char *layout;
    const char *prefix;        /* before every ControlNet tensor name in st */
    sdw_name_layout names;
    sdw_unet_config cfg;       /* encoder_only */
    bool heads_known, global_pool;
} found;

/* ---------------------------------------------------------------- naming */

typedef struct {
    const sdw_unet_config *cfg;
    const char *prefix;
    int hint_blocks;
} ldm_names;

/* diffusers ControlNet name -> lllyasviel name (prefix included). */
static const char *ldm_map(void *ctx, const char *name, char *buf, size_t n)
{
    const ldm_names *l = ctx;
    int a, used = 0;
    char unet[384];
    if (!strncmp(name, "controlnet_cond_embedding.conv_in.", 34))
        snprintf(buf, n, "%sinput_hint_block.0.%s", l->prefix, name + 34);
    else if (sscanf(name, "controlnet_cond_embedding.blocks.%d.%n", &a, &used) == 1 && used)
        snprintf(buf, n, "%sinput_hint_block.%d.%s", l->prefix, 2 * (a + 1), name + used);
    else if (!strncmp(name, "controlnet_cond_embedding.conv_out.", 35))
        snprintf(buf, n, "%sinput_hint_block.%d.%s", l->prefix, 2 * (l->hint_blocks + 1), name + 35);
    else if (sscanf(name, "controlnet_down_blocks.%d.%n", &a, &used) == 1 && used)
        snprintf(buf, n, "%szero_convs.%d.0.%s", l->prefix, a, name + used);
    else if (!strncmp(name, "controlnet_mid_block.", 21))
        snprintf(buf, n, "%smiddle_block_out.0.%s", l->prefix, name + 21);
    else {
        /* The UNet half: the UNet's LDM name, under this file's prefix. */
        const char *u = sdw_unet_ldm_name(l->cfg, name, unet, sizeof unet);
        size_t p = strlen(LDM_UNET);
        snprintf(buf, n, "%s%s", l->prefix, strncmp(u, LDM_UNET, p) ? u : u + p);
    }
    return buf;
}

/* ---------------------------------------------------------------- finding */

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Why a file without ControlNet tensors is not one, for the message. */
static const char *what_else(const sdw_safetensors *st)
{
    if (sdw_st_find(st, "lora_controlnet")) return "a control-LoRA (not supported)";
    for (int i = 0; i < st->n_tensors; i++)
        if (strstr(st->tensors[i].name, "lora_") || strstr(st->tensors[i].name, ".lora.") ||
            strstr(st->tensors[i].name, "lora_unet"))
            return "a LoRA";
    if (sdw_st_find(st, LDM_UNET "input_blocks.0.0.weight")) return "a checkpoint with a UNet";
    if (sdw_st_find(st, "conv_in.weight") && sdw_st_find(st, "up_blocks.0.resnets.0.conv1.weight"))
        return "a diffusers UNet";
    if (sdw_st_find(st, "adapter.body.0.resnets.0.block1.weight")) return "a T2I-Adapter (not supported)";
    return "no ControlNet (no input_hint_block / controlnet_cond_embedding tensors)";
}

/* From a diffusers ControlNetModel config. */
static sdw_status config_from_json(const cJSON *j, const char *file, sdw_unet_config *c, bool *global_pool)
{
    const char *cls = sdw_json_str(j, "_class_name", NULL);
    if (cls && strcmp(cls, "ControlNetModel"))
        return sdw_fail(SDW_ERR_FORMAT, "%s: a %s config, not a ControlNetModel's", file, cls);
    SDW_TRY(sdw_fail_context(sdw_unet_config_from_diffusers(j, c), "%s", file));
    c->encoder_only = true;
    c->out_channels = 0;
    int cond = sdw_json_int(j, "conditioning_channels", 3);
    if (cond != 3)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: %d conditioning channels (only RGB control images, 3, are supported)",
                        file, cond);
    *global_pool = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "global_pool_conditions"));
    return SDW_OK;
}

static bool same_structure(const sdw_unet_config *a, const sdw_unet_config *b)
{
    if (a->n_levels != b->n_levels || a->layers_per_block != b->layers_per_block || a->context_dim != b->context_dim ||
        a->adm_in != b->adm_in || a->in_channels != b->in_channels || a->mid_depth != b->mid_depth)
        return false;
    for (int i = 0; i < a->n_levels; i++)
        if (a->block_out[i] != b->block_out[i] || a->depth[i] != b->depth[i]) return false;
    return true;
}

/* A config beside a single file: "<stem>.config.json" (the stem without its
 * last extension, or up to its first dot), "config.json" in its
 * folder (a diffusers-named file next to its config), "diffusers/config.json"
 * in its folder (a diffusers copy saved beside it), or an A1111 "<stem>.yaml".
 * Taken only where it describes the structure the shapes show. */
static void config_beside(const char *path, found *f)
{
    char dir[4096], name[1024], cand[4][5200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    snprintf(name, sizeof name, "%s", slash ? slash + 1 : path);
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    char *dot = strrchr(name, '.');
    if (dot) *dot = 0;
    snprintf(cand[0], sizeof cand[0], "%s%s.config.json", dir, name);
    dot = strchr(name, '.');   /* "x.noprefix.safetensors": also "x.config.json" */
    if (dot) *dot = 0;
    snprintf(cand[1], sizeof cand[1], "%s%s.config.json", dir, name);
    snprintf(cand[2], sizeof cand[2], "%sconfig.json", dir);
    snprintf(cand[3], sizeof cand[3], "%sdiffusers/config.json", dir);
    for (int i = 0; i < 4; i++) {
        cJSON *j;
        if (!is_file(cand[i]) || sdw_json_load_file(cand[i], &j) != SDW_OK) continue;
        sdw_unet_config c;
        bool pool = false;
        bool ok = config_from_json(j, cand[i], &c, &pool) == SDW_OK && same_structure(&c, &f->cfg);
        cJSON_Delete(j);
        if (!ok) {
            SDW_WARN("%s: %s does not describe this ControlNet; not used", path, cand[i]);
            continue;
        }
        SDW_DEBUG("%s: configuration from %s", path, cand[i]);
        f->cfg = c;
        f->global_pool = pool;
        f->heads_known = true;
        return;
    }
    char yp[4200];
    sdw_yaml_map y = { 0 };
    if (!sdw_yaml_sidecar_path(path, yp, sizeof yp) || sdw_yaml_load(yp, &y) != SDW_OK) return;
    const char *P = "model.params.control_stage_config.params.";
    char k1[160], k2[160], k3[160];
    snprintf(k1, sizeof k1, "%snum_heads", P);
    snprintf(k2, sizeof k2, "%snum_head_channels", P);
    snprintf(k3, sizeof k3, "%sglobal_average_pooling", P);
    int heads = sdw_yaml_int(&y, k1, -1), head_ch = sdw_yaml_int(&y, k2, -1);
    const char *pool = sdw_yaml_get(&y, k3);
    if (heads > 0 || head_ch > 0) {
        sdw_unet_set_heads(&f->cfg, heads, head_ch);
        f->heads_known = true;
    }
    f->global_pool = pool && (!strcmp(pool, "True") || !strcmp(pool, "true"));
    sdw_yaml_free(&y);
}

static sdw_status find_folder(const char *dir, found *f)
{
    char cp[4200];
    snprintf(cp, sizeof cp, "%s/config.json", dir);
    cJSON *j;
    SDW_TRY(sdw_fail_context(sdw_json_load_file(cp, &j), "%s: not a diffusers ControlNet folder", dir));
    sdw_status s = config_from_json(j, cp, &f->cfg, &f->global_pool);
    cJSON_Delete(j);
    SDW_TRY(s);
    char wp[4200];
    snprintf(wp, sizeof wp, "%s/diffusion_pytorch_model.safetensors", dir);
    if (!is_file(wp)) snprintf(wp, sizeof wp, "%s/diffusion_pytorch_model.fp16.safetensors", dir);
    if (!is_file(wp))
        return sdw_fail(SDW_ERR_IO, "%s: no diffusion_pytorch_model.safetensors (nor .fp16.safetensors)", dir);
    SDW_TRY(sdw_st_open(wp, &f->st));
    if (!sdw_st_find(f->st, "controlnet_cond_embedding.conv_in.weight"))
        return sdw_fail(SDW_ERR_FORMAT, "%s: the weights are %s", f->st->path, what_else(f->st));
    f->layout = "diffusers";
    f->prefix = "";
    f->names = SDW_NAMES_DIFFUSERS;
    f->heads_known = true;
    return SDW_OK;
}

static sdw_status find_file(const char *path, found *f)
{
    SDW_TRY(sdw_st_open(path, &f->st));
    const sdw_safetensors *st = f->st;
    if (sdw_st_find(st, "control_model.input_hint_block.0.weight")) {
        f->layout = "lllyasviel";
        f->prefix = "control_model.";
        f->names = SDW_NAMES_LDM;
    } else if (sdw_st_find(st, "input_hint_block.0.weight")) {
        f->layout = "lllyasviel-noprefix";
        f->prefix = "";
        f->names = SDW_NAMES_LDM;
    } else if (sdw_st_find(st, "controlnet_cond_embedding.conv_in.weight")) {
        f->layout = "diffusers-single-file";
        f->prefix = "";
        f->names = SDW_NAMES_DIFFUSERS;
    } else {
        return sdw_fail(SDW_ERR_FORMAT, "%s: not a ControlNet: %s", path, what_else(st));
    }
    if (sdw_st_find(st, "lora_controlnet"))
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: a control-LoRA (not supported)", path);
    SDW_TRY(sdw_fail_context(sdw_unet_encoder_config_from_shapes(st, f->names, f->prefix, &f->cfg),
                             "%s: a ControlNet (%s) whose UNet half is not readable", path, f->layout));
    config_beside(path, f);
    return SDW_OK;
}

static sdw_family family_of(const sdw_unet_config *c)
{
    if (c->adm_in) return SDW_FAMILY_SDXL;
    if (c->context_dim == 768) return SDW_FAMILY_SD1;
    if (c->context_dim == 1024) return SDW_FAMILY_SD2;
    /* Small test models: SD2 projects with linear layers, SD1 with 1x1 convolutions. */
    return c->linear_proj ? SDW_FAMILY_SD2 : SDW_FAMILY_SD1;
}

/* Parameters and dtypes of the ControlNet's own tensors (a full v1.0 file
 * holds the whole SD model beside them). */
static void count(const found *f, sdw_controlnet_info *in)
{
    size_t pl = strlen(f->prefix);
    const sdw_safetensors *st = f->st;
    for (int i = 0; i < st->n_tensors; i++) {
        const sdw_st_tensor *t = &st->tensors[i];
        if (pl && strncmp(t->name, f->prefix, pl)) continue;
        in->params += t->numel;
        const char *d = sdw_st_dtype_name(t->dtype);
        if (strstr(in->dtypes, d)) continue;
        size_t l = strlen(in->dtypes);
        snprintf(in->dtypes + l, sizeof in->dtypes - l, "%s%s", l ? ", " : "", d);
    }
}

/* Opens path and fills f and the info (f->st is the caller's to close). */
static sdw_status find(const char *path, found *f, sdw_controlnet_info *info)
{
    memset(f, 0, sizeof *f);
    memset(info, 0, sizeof *info);
    sdw_status s = is_dir(path) ? find_folder(path, f) : find_file(path, f);
    if (s != SDW_OK) {
        sdw_st_close(f->st);
        f->st = NULL;
        return s;
    }
    int hwc[SDW_UNET_MAX_SKIPS + 1][3];
    info->family = family_of(&f->cfg);
    info->layout = f->layout;
    info->n_down = sdw_unet_skip_shapes(&f->cfg, 8, 8, hwc);
    info->unet = f->cfg;
    count(f, info);
    return SDW_OK;
}

sdw_status sdw_controlnet_probe(const char *path, sdw_controlnet_info *info)
{
    found f;
    SDW_TRY(find(path, &f, info));
    sdw_st_close(f.st);
    return SDW_OK;
}

/* ---------------------------------------------------------------- loading */

/* controlnet_cond_embedding: conv_in, blocks (pairs: same width, then
 * stride 2 to the next width), conv_out into block_out[0]; every width read
 * from the shapes. */
static sdw_status load_hint(sdw_wloader *wl, const found *f, sdw_controlnet *cn)
{
    const sdw_st_tensor *t;
    SDW_TRY(sdw_wl_find(wl, &t, 4, "controlnet_cond_embedding.conv_in.weight"));
    if (t->shape[1] != 3)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: %s takes %lld channels (only RGB control images, 3, are supported)",
                        wl->st->path, t->name, (long long)t->shape[1]);
    int c = (int)t->shape[0];
    cn->hint_c[0] = c;
    SDW_TRY(sdw_wl_conv2d(wl, &cn->hint_in, 3, c, 3, 1, 1, "controlnet_cond_embedding.conv_in"));
    for (int i = 0; i < SDW_CONTROLNET_HINT_BLOCKS; i++) {
        SDW_TRY(sdw_wl_find(wl, &t, 4, "controlnet_cond_embedding.blocks.%d.weight", i));
        int out = (int)t->shape[0];
        if (!(i % 2) && out != c)
            return sdw_fail(SDW_ERR_FORMAT, "%s: %s has %d output channels, expected %d", wl->st->path, t->name, out, c);
        SDW_TRY(sdw_wl_conv2d(wl, &cn->hint[i], c, out, 3, i % 2 ? 2 : 1, 1, "controlnet_cond_embedding.blocks.%d", i));
        c = out;
        cn->hint_c[(i + 1) / 2] = c;
    }
    /* One block more (in lllyasviel's numbering conv_out comes after the
     * blocks, so look past it) would leave the image at 1/16. */
    char more[160];
    if (f->names == SDW_NAMES_LDM)
        snprintf(more, sizeof more, "%sinput_hint_block.%d.weight", f->prefix, 2 * (SDW_CONTROLNET_HINT_BLOCKS + 2));
    else snprintf(more, sizeof more, "controlnet_cond_embedding.blocks.%d.weight", SDW_CONTROLNET_HINT_BLOCKS);
    if (sdw_st_find(f->st, more))
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: the hint encoder has more than %d blocks (the control image must "
                        "come down to the latent size, 1/8)", wl->st->path, SDW_CONTROLNET_HINT_BLOCKS);
    return sdw_wl_conv2d(wl, &cn->hint_out, c, cn->info.unet.block_out[0], 3, 1, 1, "controlnet_cond_embedding.conv_out");
}

static sdw_status load_zero_convs(sdw_wloader *wl, sdw_controlnet *cn)
{
    int hwc[SDW_UNET_MAX_SKIPS + 1][3], n = cn->info.n_down;
    sdw_unet_skip_shapes(&cn->info.unet, 8, 8, hwc);
    for (int i = 0; i < n; i++)
        SDW_TRY(sdw_wl_linear(wl, &cn->zero[i], hwc[i][2], hwc[i][2], true, "controlnet_down_blocks.%d", i));
    if (sdw_wl_has(wl, "controlnet_down_blocks.%d.weight", n))
        return sdw_fail(SDW_ERR_FORMAT, "%s: more zero convolutions than the %d skip tensors of its UNet half",
                        wl->st->path, n);
    return sdw_wl_linear(wl, &cn->zero_mid, hwc[n][2], hwc[n][2], true, "controlnet_mid_block");
}

sdw_status sdw_controlnet_load(sdw_backend *be, const char *path, sdw_controlnet **out)
{
    *out = NULL;
    found f;
    sdw_controlnet_info info;
    SDW_TRY(find(path, &f, &info));
    sdw_controlnet *cn = calloc(1, sizeof *cn);
    if (!cn) {
        sdw_st_close(f.st);
        return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    }
    cn->info = info;
    cn->heads_known = f.heads_known;
    cn->global_pool = f.global_pool;
    snprintf(cn->path, sizeof cn->path, "%s", path);
    sdw_wloader wl;
    sdw_wl_init(&wl, be, f.st);
    ldm_names names = { &cn->info.unet, f.prefix, SDW_CONTROLNET_HINT_BLOCKS };
    if (f.names == SDW_NAMES_LDM) {
        wl.map = ldm_map;
        wl.map_ctx = &names;
    }
    sdw_status s = load_hint(&wl, &f, cn);
    if (s == SDW_OK) s = sdw_unet_load_with(&wl, &cn->info.unet, &cn->unet);
    if (s == SDW_OK) s = load_zero_convs(&wl, cn);
    cn->info.weight_bytes = wl.bytes_held;
    sdw_wl_done(&wl);
    sdw_st_close(f.st);
    if (s != SDW_OK) {
        sdw_controlnet_free(cn);
        return s;
    }
    *out = cn;
    return SDW_OK;
}

void sdw_controlnet_free(sdw_controlnet *cn)
{
    if (!cn) return;
    sdw_unet_free(cn->unet);
    sdw_conv2d_free(cn->hint_in);
    for (int i = 0; i < SDW_CONTROLNET_HINT_BLOCKS; i++) sdw_conv2d_free(cn->hint[i]);
    sdw_conv2d_free(cn->hint_out);
    for (int i = 0; i < SDW_CONTROLNET_MAX_RES; i++) sdw_linear_free(cn->zero[i]);
    sdw_linear_free(cn->zero_mid);
    free(cn);
}

const sdw_controlnet_info *sdw_controlnet_get_info(const sdw_controlnet *cn) { return &cn->info; }

/* ---------------------------------------------------------------- the base */

static void describe(const sdw_unet_config *c, char *buf, size_t n)
{
    int l = snprintf(buf, n, "%s, context %d, channels", sdw_family_name(family_of(c)), c->context_dim);
    for (int i = 0; i < c->n_levels && l > 0 && (size_t)l < n; i++)
        l += snprintf(buf + l, n - (size_t)l, "%s%d", i ? "/" : " ", c->block_out[i]);
    if (l > 0 && (size_t)l < n) snprintf(buf + l, n - (size_t)l, ", %d resnets a level", c->layers_per_block);
}

sdw_status sdw_controlnet_check_base(const sdw_controlnet *cn, const sdw_unet_config *base, const char *name)
{
    const sdw_unet_config *c = &cn->info.unet;
    /* What the residuals and the shared inputs must agree on: the skip
     * shapes, the text context, SDXL's added conditioning. */
    bool ok = family_of(c) == family_of(base) && c->n_levels == base->n_levels &&
              c->layers_per_block == base->layers_per_block && c->context_dim == base->context_dim &&
              c->adm_in == base->adm_in && (!c->adm_in || c->addition_time_embed_dim == base->addition_time_embed_dim);
    for (int i = 0; ok && i < c->n_levels; i++) ok = c->block_out[i] == base->block_out[i];
    if (!ok) {
        char a[160], b[160];
        describe(c, a, sizeof a);
        describe(base, b, sizeof b);
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s (%s): a ControlNet for another UNet (%s); the model's UNet is %s",
                        name, cn->path, a, b);
    }
    /* A ControlNet copies its base's attention; heads guessed by the family
     * rule that differ from the base's mean the guess is wrong. */
    for (int i = 0; !cn->heads_known && i < c->n_levels; i++)
        if ((c->depth[i] || (i == c->n_levels - 1 && c->mid_depth)) && c->heads[i] != base->heads[i])
            return sdw_fail(SDW_ERR_FORMAT, "%s (%s): its attention head count is not in the file (taken as %d, the "
                            "model has %d): put its diffusers config.json beside it as <name>.config.json",
                            name, cn->path, c->heads[i], base->heads[i]);
    return SDW_OK;
}
