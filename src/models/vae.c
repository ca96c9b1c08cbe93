/* vae.c: AutoencoderKL encoder and decoder (see vae.h), NHWC.
 *   encode: conv_in, down levels (resnets, downsample with (0,1,0,1) padding),
 *           mid (resnet, single-head attention, resnet), norm, SiLU, conv_out, quant_conv
 *   decode: post_quant_conv, conv_in, mid, up levels (resnets, nearest 2x + conv),
 *           norm, SiLU, conv_out
 * quant_conv / post_quant_conv are absent in FLUX's autoencoder (identity).
 * Every group norm here uses eps 1e-6. */
#include "models/vae.h"
#include "core/error.h"
#include "io/json_file.h"
#include "models/weights.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int cin, cout;
    float *norm1_w, *norm1_b, *norm2_w, *norm2_b;
    sdw_conv2d *conv1, *conv2, *shortcut;   /* shortcut 1x1 when cin != cout */
} vresnet;

typedef struct {
    int C;
    float *norm_w, *norm_b;
    sdw_linear *qkv, *out;   /* q, k, v fused: C -> 3C; C -> C */
} vattn;

typedef struct {
    vresnet res[2];
    vattn attn;
} vmid;

typedef struct {
    vresnet *res;
    sdw_conv2d *resample;
} vlevel;

typedef struct {
    sdw_conv2d *conv_in, *conv_out;
    vlevel level[SDW_VAE_MAX_LEVELS];
    vmid mid;
    float *norm_w, *norm_b;
} vcoder;

struct sdw_vae {
    sdw_vae_config cfg;
    bool has_encoder;
    vcoder enc, dec;
    sdw_conv2d *quant_conv, *post_quant_conv;
    size_t bytes;
};

/* ---------------------------------------------------------------- config */

/* True unless the config sets key to false (diffusers' default is true;
 * null counts as unset). */
static bool json_flag(const cJSON *cfg, const char *key)
{
    return !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cfg, key));
}

sdw_status sdw_vae_config_from_diffusers(const cJSON *cfg, sdw_vae_config *c)
{
    memset(c, 0, sizeof *c);
    const cJSON *bo = cJSON_GetObjectItemCaseSensitive(cfg, "block_out_channels");
    int n = cJSON_GetArraySize(bo);
    if (!cJSON_IsArray(bo) || n < 1 || n > SDW_VAE_MAX_LEVELS)
        return sdw_fail(SDW_ERR_FORMAT, "vae config: block_out_channels missing or unsupported");
    c->n_levels = n;
    /* Bounds far above any real VAE: the file must not make the loader
     * allocate absurd sizes or overflow int arithmetic. */
    bool ok = true;
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(bo, i);
        c->block_out[i] = cJSON_IsNumber(e) ? e->valueint : 0;
        ok = ok && c->block_out[i] >= 1 && c->block_out[i] <= 65536;
    }
    c->layers_per_block = sdw_json_int(cfg, "layers_per_block", 2);
    c->latent_channels = sdw_json_int(cfg, "latent_channels", 4);
    c->use_quant_conv = json_flag(cfg, "use_quant_conv");
    c->use_post_quant_conv = json_flag(cfg, "use_post_quant_conv");
    ok = ok && c->layers_per_block >= 1 && c->layers_per_block <= 64 && c->latent_channels >= 1 &&
         c->latent_channels <= 65536;
    if (!ok) return sdw_fail(SDW_ERR_FORMAT, "vae config: a size or count is out of range");
    const cJSON *sf = cJSON_GetObjectItemCaseSensitive(cfg, "scaling_factor");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(cfg, "shift_factor");
    /* The pipeline divides by the scale: a zero, negative or infinite one
     * would only give NaN images. */
    if (cJSON_IsNumber(sf)) c->scaling_factor = (float)sf->valuedouble;
    if (cJSON_IsNumber(sh)) c->shift_factor = (float)sh->valuedouble;
    if ((cJSON_IsNumber(sf) && !(isfinite(c->scaling_factor) && c->scaling_factor > 0)) ||
        !isfinite(c->shift_factor))
        return sdw_fail(SDW_ERR_FORMAT, "vae config: scaling_factor / shift_factor out of range");
    return SDW_OK;
}

static bool has_tensor(const sdw_safetensors *st, const char *prefix, const char *name)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return sdw_st_find(st, full) != NULL;
}

/* decoder.conv_in alone is also a diffusers VAE name; the LDM mid-block name
 * is not, and no UNet or text encoder has either. post_quant_conv is not
 * asked for: FLUX's autoencoder has none. */
bool sdw_vae_ldm_present(const sdw_safetensors *st, const char *prefix)
{
    return has_tensor(st, prefix, "decoder.conv_in.weight") && has_tensor(st, prefix, "decoder.mid.block_1.conv1.weight");
}

sdw_status sdw_vae_config_from_ldm(const sdw_safetensors *st, const char *prefix, sdw_vae_config *c)
{
    memset(c, 0, sizeof *c);
    char name[256];
    const sdw_st_tensor *t;
    for (int i = 0; i < SDW_VAE_MAX_LEVELS; i++) {
        snprintf(name, sizeof name, "%sdecoder.up.%d.block.0.conv1.weight", prefix, i);
        if (!(t = sdw_st_find(st, name))) break;
        c->block_out[i] = (int)t->shape[0];
        c->n_levels = i + 1;
    }
    /* decoder.conv_in's input is the latent, with or without post_quant_conv
     * before it (FLUX has none). */
    snprintf(name, sizeof name, "%sdecoder.conv_in.weight", prefix);
    t = sdw_st_find(st, name);
    if (!c->n_levels || !t || t->ndim != 4 || t->shape[1] < 1 || t->shape[1] > 65536)
        return sdw_fail(SDW_ERR_FORMAT, "%s: no VAE under \"%s\"", st->path, prefix);
    c->latent_channels = (int)t->shape[1];
    c->use_quant_conv = has_tensor(st, prefix, "quant_conv.weight");
    c->use_post_quant_conv = has_tensor(st, prefix, "post_quant_conv.weight");
    while (1) {
        snprintf(name, sizeof name, "%sdecoder.up.0.block.%d.conv1.weight", prefix, c->layers_per_block);
        if (!sdw_st_find(st, name)) break;
        c->layers_per_block++;
    }
    c->layers_per_block--;   /* decoder levels have one more than the encoder's */
    if (c->layers_per_block < 1) return sdw_fail(SDW_ERR_FORMAT, "%s: VAE decoder levels too short", st->path);
    return SDW_OK;
}

/* diffusers VAE name -> LDM name under ctx (the prefix). */
typedef struct {
    const char *prefix;
    int n_levels;
} ldm_ctx;

static const char *vae_ldm_name(void *vctx, const char *name, char *buf, size_t n)
{
    const ldm_ctx *x = vctx;
    const char *P = x->prefix;
    char coder[16], rest[256];
    int a, b, k = 0;
    static const char *const res_map[][2] = { { "conv_shortcut", "nin_shortcut" } };
    static const char *const attn_map[][2] = {
        { "group_norm", "norm" }, { "to_q", "q" }, { "to_k", "k" }, { "to_v", "v" }, { "to_out.0", "proj_out" },
    };
    if (sscanf(name, "%15[a-z].down_blocks.%d.resnets.%d.%255s", coder, &a, &b, rest) == 4) {
        const char *r = !strncmp(rest, res_map[0][0], 13) ? res_map[0][1] : NULL;
        snprintf(buf, n, "%s%s.down.%d.block.%d.%s%s", P, coder, a, b, r ? r : rest, r ? rest + 13 : "");
    } else if (sscanf(name, "%15[a-z].up_blocks.%d.resnets.%d.%255s", coder, &a, &b, rest) == 4) {
        const char *r = !strncmp(rest, res_map[0][0], 13) ? res_map[0][1] : NULL;
        snprintf(buf, n, "%s%s.up.%d.block.%d.%s%s", P, coder, x->n_levels - 1 - a, b, r ? r : rest, r ? rest + 13 : "");
    } else if (sscanf(name, "%15[a-z].down_blocks.%d.downsamplers.0.%255s", coder, &a, rest) == 3) {
        snprintf(buf, n, "%s%s.down.%d.downsample.%s", P, coder, a, rest);
    } else if (sscanf(name, "%15[a-z].up_blocks.%d.upsamplers.0.%255s", coder, &a, rest) == 3) {
        snprintf(buf, n, "%s%s.up.%d.upsample.%s", P, coder, x->n_levels - 1 - a, rest);
    } else if (sscanf(name, "%15[a-z].mid_block.resnets.%d.%255s", coder, &a, rest) == 3) {
        snprintf(buf, n, "%s%s.mid.block_%d.%s", P, coder, a + 1, rest);
    } else if (sscanf(name, "%15[a-z].mid_block.attentions.0.%n", coder, &k) == 1 && k) {
        const char *r = name + k;
        for (size_t i = 0; i < sizeof attn_map / sizeof attn_map[0]; i++) {
            size_t l = strlen(attn_map[i][0]);
            if (!strncmp(r, attn_map[i][0], l) && r[l] == '.') {
                snprintf(buf, n, "%s%s.mid.attn_1.%s%s", P, coder, attn_map[i][1], r + l);
                return buf;
            }
        }
        snprintf(buf, n, "%s%s.mid.attn_1.%s", P, coder, r);
    } else if (sscanf(name, "%15[a-z].conv_norm_out.%255s", coder, rest) == 2) {
        snprintf(buf, n, "%s%s.norm_out.%s", P, coder, rest);
    } else {
        snprintf(buf, n, "%s%s", P, name);
    }
    return buf;
}

/* ---------------------------------------------------------------- loading */

static sdw_status load_vresnet(sdw_wloader *wl, vresnet *r, int cin, int cout, const char *p)
{
    r->cin = cin;
    r->cout = cout;
    SDW_TRY(sdw_wl_floats(wl, &r->norm1_w, cin, "%s.norm1.weight", p));
    SDW_TRY(sdw_wl_floats(wl, &r->norm1_b, cin, "%s.norm1.bias", p));
    SDW_TRY(sdw_wl_conv2d(wl, &r->conv1, cin, cout, 3, 1, 1, "%s.conv1", p));
    SDW_TRY(sdw_wl_floats(wl, &r->norm2_w, cout, "%s.norm2.weight", p));
    SDW_TRY(sdw_wl_floats(wl, &r->norm2_b, cout, "%s.norm2.bias", p));
    SDW_TRY(sdw_wl_conv2d(wl, &r->conv2, cout, cout, 3, 1, 1, "%s.conv2", p));
    if (cin != cout) SDW_TRY(sdw_wl_conv2d(wl, &r->shortcut, cin, cout, 1, 1, 0, "%s.conv_shortcut", p));
    return SDW_OK;
}

static sdw_status load_vattn(sdw_wloader *wl, vattn *a, int C, const char *p)
{
    a->C = C;
    /* Older diffusers files name them query/key/value/proj_attn. */
    bool old = !sdw_wl_has(wl, "%s.to_q.weight", p) && sdw_wl_has(wl, "%s.query.weight", p);
    const char *q = old ? "query" : "to_q", *k = old ? "key" : "to_k", *v = old ? "value" : "to_v";
    SDW_TRY(sdw_wl_floats(wl, &a->norm_w, C, "%s.group_norm.weight", p));
    SDW_TRY(sdw_wl_floats(wl, &a->norm_b, C, "%s.group_norm.bias", p));
    const char *parts[3] = { q, k, v };
    char dot[256];
    snprintf(dot, sizeof dot, "%s.", p);
    sdw_status s = sdw_wl_linear_stack(wl, &a->qkv, C, C, 3, true, dot, parts);
    if (s == SDW_OK) s = sdw_wl_linear(wl, &a->out, C, C, true, "%s.%s", p, old ? "proj_attn" : "to_out.0");
    return s;
}

static sdw_status load_mid(sdw_wloader *wl, vmid *m, int C, const char *coder)
{
    char p[128];
    snprintf(p, sizeof p, "%s.mid_block.resnets.0", coder);
    SDW_TRY(load_vresnet(wl, &m->res[0], C, C, p));
    snprintf(p, sizeof p, "%s.mid_block.attentions.0", coder);
    SDW_TRY(load_vattn(wl, &m->attn, C, p));
    snprintf(p, sizeof p, "%s.mid_block.resnets.1", coder);
    return load_vresnet(wl, &m->res[1], C, C, p);
}

static sdw_status load_encoder(sdw_wloader *wl, const sdw_vae_config *c, vcoder *e)
{
    int nl = c->n_levels, L = c->layers_per_block, ch = c->block_out[0];
    char p[128];
    SDW_TRY(sdw_wl_conv2d(wl, &e->conv_in, 3, ch, 3, 1, 1, "encoder.conv_in"));
    for (int i = 0; i < nl; i++) {
        vlevel *lv = &e->level[i];
        if (!(lv->res = calloc((size_t)L, sizeof *lv->res))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%d", i, j);
            SDW_TRY(load_vresnet(wl, &lv->res[j], ch, c->block_out[i], p));
            ch = c->block_out[i];
        }
        if (i < nl - 1) SDW_TRY(sdw_wl_conv2d(wl, &lv->resample, ch, ch, 3, 2, 0, "encoder.down_blocks.%d.downsamplers.0.conv", i));
    }
    SDW_TRY(load_mid(wl, &e->mid, ch, "encoder"));
    SDW_TRY(sdw_wl_floats(wl, &e->norm_w, ch, "encoder.conv_norm_out.weight"));
    SDW_TRY(sdw_wl_floats(wl, &e->norm_b, ch, "encoder.conv_norm_out.bias"));
    return sdw_wl_conv2d(wl, &e->conv_out, ch, 2 * c->latent_channels, 3, 1, 1, "encoder.conv_out");
}

static sdw_status load_decoder(sdw_wloader *wl, const sdw_vae_config *c, vcoder *d)
{
    int nl = c->n_levels, L = c->layers_per_block, ch = c->block_out[nl - 1];
    char p[128];
    SDW_TRY(sdw_wl_conv2d(wl, &d->conv_in, c->latent_channels, ch, 3, 1, 1, "decoder.conv_in"));
    SDW_TRY(load_mid(wl, &d->mid, ch, "decoder"));
    for (int i = 0; i < nl; i++) {
        int out = c->block_out[nl - 1 - i];
        vlevel *lv = &d->level[i];
        if (!(lv->res = calloc((size_t)L + 1, sizeof *lv->res))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        for (int j = 0; j <= L; j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            SDW_TRY(load_vresnet(wl, &lv->res[j], ch, out, p));
            ch = out;
        }
        if (i < nl - 1) SDW_TRY(sdw_wl_conv2d(wl, &lv->resample, ch, ch, 3, 1, 1, "decoder.up_blocks.%d.upsamplers.0.conv", i));
    }
    SDW_TRY(sdw_wl_floats(wl, &d->norm_w, ch, "decoder.conv_norm_out.weight"));
    SDW_TRY(sdw_wl_floats(wl, &d->norm_b, ch, "decoder.conv_norm_out.bias"));
    return sdw_wl_conv2d(wl, &d->conv_out, ch, 3, 3, 1, 1, "decoder.conv_out");
}

sdw_status sdw_vae_load(sdw_backend *be, const sdw_safetensors *st, const char *ldm_prefix,
                        const sdw_vae_config *c, bool with_encoder, sdw_vae **out)
{
    *out = NULL;
    if (c->n_levels < 1 || c->n_levels > SDW_VAE_MAX_LEVELS || c->layers_per_block < 1 || c->latent_channels < 1)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "unsupported VAE configuration");
    sdw_vae *v = calloc(1, sizeof *v);
    if (!v) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    v->cfg = *c;
    v->has_encoder = with_encoder;
    sdw_wloader wl;
    sdw_wl_init(&wl, be, st);
    ldm_ctx ctx = { ldm_prefix, c->n_levels };
    if (ldm_prefix) {
        wl.map = vae_ldm_name;
        wl.map_ctx = &ctx;
    }
    int lc = c->latent_channels;
    sdw_status s = load_decoder(&wl, c, &v->dec);
    if (s == SDW_OK && c->use_post_quant_conv)
        s = sdw_wl_conv2d(&wl, &v->post_quant_conv, lc, lc, 1, 1, 0, "post_quant_conv");
    if (s == SDW_OK && with_encoder) s = load_encoder(&wl, c, &v->enc);
    if (s == SDW_OK && with_encoder && c->use_quant_conv)
        s = sdw_wl_conv2d(&wl, &v->quant_conv, 2 * lc, 2 * lc, 1, 1, 0, "quant_conv");
    v->bytes = wl.bytes_held;
    sdw_wl_done(&wl);
    if (s != SDW_OK) {
        sdw_vae_free(v);
        return s;
    }
    *out = v;
    return SDW_OK;
}

static void free_vresnet(vresnet *r)
{
    free(r->norm1_w); free(r->norm1_b); free(r->norm2_w); free(r->norm2_b);
    sdw_conv2d_free(r->conv1); sdw_conv2d_free(r->conv2); sdw_conv2d_free(r->shortcut);
}

static void free_coder(vcoder *x, int nl, int per_level)
{
    sdw_conv2d_free(x->conv_in);
    sdw_conv2d_free(x->conv_out);
    for (int i = 0; i < nl; i++) {
        for (int j = 0; x->level[i].res && j < per_level; j++) free_vresnet(&x->level[i].res[j]);
        free(x->level[i].res);
        sdw_conv2d_free(x->level[i].resample);
    }
    free_vresnet(&x->mid.res[0]);
    free_vresnet(&x->mid.res[1]);
    free(x->mid.attn.norm_w);
    free(x->mid.attn.norm_b);
    sdw_linear_free(x->mid.attn.qkv);
    sdw_linear_free(x->mid.attn.out);
    free(x->norm_w);
    free(x->norm_b);
}

void sdw_vae_free(sdw_vae *v)
{
    if (!v) return;
    free_coder(&v->enc, v->cfg.n_levels, v->cfg.layers_per_block);
    free_coder(&v->dec, v->cfg.n_levels, v->cfg.layers_per_block + 1);
    sdw_conv2d_free(v->quant_conv);
    sdw_conv2d_free(v->post_quant_conv);
    free(v);
}

size_t sdw_vae_bytes(const sdw_vae *v) { return v ? v->bytes : 0; }
bool sdw_vae_has_encoder(const sdw_vae *v) { return v->has_encoder; }
const sdw_vae_config *sdw_vae_get_config(const sdw_vae *v) { return &v->cfg; }

/* ---------------------------------------------------------------- forward */

typedef struct {
    sdw_backend *be;
    sdw_arena *arena;
    int N;
} vfwd;

static sdw_status nomem(void) { return sdw_fail(SDW_ERR_NOMEM, "out of memory in the VAE"); }

/* *x -> resnet(*x), left in *x: with an identity skip conv2 adds onto x in
 * place (no copy of x); with a projected skip the result is built in *y and
 * the two buffers swap. *y is scratch of x's size either way. */
static sdw_status vresnet_forward(const vfwd *f, const vresnet *r, float **xp, float **yp, int H, int W)
{
    float *x = *xp, *out = *yp;
    sdw_arena_mark m = sdw_arena_save(f->arena);
    /* The normalised activations, in the convolutions' own type. */
    size_t act_n = (size_t)f->N * H * W * (size_t)(r->cin > r->cout ? r->cin : r->cout);
    void *h = sdw_arena_floats(f->arena, (sdw_act_bytes(f->be, act_n) + 3) / 4);
    if (!h) return nomem();
    sdw_group_norm_silu_act(f->be, x, f->N, (int64_t)H * W, r->cin, 32, r->norm1_w, r->norm1_b, 1e-6f, h);
    SDW_TRY(sdw_conv2d_forward_act(f->be, r->conv1, h, f->N, H, W, out, false));
    sdw_group_norm_silu_act(f->be, out, f->N, (int64_t)H * W, r->cout, 32, r->norm2_w, r->norm2_b, 1e-6f, h);
    if (r->shortcut) {
        /* out = skip(x), then conv2 adds onto it: no separate residual pass. */
        SDW_TRY(sdw_conv2d_forward(f->be, r->shortcut, x, f->N, H, W, out, NULL, NULL));
        SDW_TRY(sdw_conv2d_forward_act(f->be, r->conv2, h, f->N, H, W, out, true));
        *xp = out;
        *yp = x;
    } else {
        SDW_TRY(sdw_conv2d_forward_act(f->be, r->conv2, h, f->N, H, W, x, true));
    }
    sdw_arena_restore(f->arena, m);
    return SDW_OK;
}

/* In place: x += out(attention(qkv(norm(x)))), one head over all H*W tokens. */
static sdw_status vattn_forward(const vfwd *f, const vattn *a, float *x, int H, int W)
{
    int C = a->C;
    int64_t T = (int64_t)H * W, rows = (int64_t)f->N * T;
    sdw_arena_mark m = sdw_arena_save(f->arena);
    float *h = sdw_arena_floats(f->arena, (size_t)rows * C), *qkv = sdw_arena_floats(f->arena, (size_t)rows * 3 * C);
    if (!h || !qkv) return nomem();
    sdw_group_norm(x, f->N, T, C, 32, a->norm_w, a->norm_b, 1e-6f, h);
    SDW_TRY(sdw_linear_forward(f->be, a->qkv, h, rows, qkv));
    SDW_TRY(sdw_attention(f->be, qkv, 3 * C, qkv + C, qkv + 2 * C, 3 * C, f->N, (int)T, (int)T, 1, C, false, h));
    SDW_TRY(sdw_linear_forward_add(f->be, a->out, h, rows, x));
    sdw_arena_restore(f->arena, m);
    return SDW_OK;
}

/* mid block on *x, result in *x (*y is scratch of the same size). */
static sdw_status mid_forward(const vfwd *f, const vmid *m, float **x, float **y, int H, int W)
{
    SDW_TRY(vresnet_forward(f, &m->res[0], x, y, H, W));
    SDW_TRY(vattn_forward(f, &m->attn, *x, H, W));
    return vresnet_forward(f, &m->res[1], x, y, H, W);
}

/* norm, SiLU, conv_out: x -> out. */
static sdw_status tail(const vfwd *f, const vcoder *c, float *x, int H, int W, int C, float *y, float *out)
{
    sdw_group_norm_silu_act(f->be, x, f->N, (int64_t)H * W, C, 32, c->norm_w, c->norm_b, 1e-6f, y);
    return sdw_conv2d_forward_act(f->be, c->conv_out, y, f->N, H, W, out, false);
}

/* The encoder's downsampler pads only right and bottom (by one) before a
 * stride-2 3x3 convolution without padding. */
static void pad_right_bottom(const float *x, int N, int H, int W, int C, float *y)
{
    for (int n = 0; n < N; n++)
        for (int i = 0; i <= H; i++) {
            float *dst = y + (((size_t)n * (H + 1) + i) * (W + 1)) * C;
            if (i == H) {
                memset(dst, 0, (size_t)(W + 1) * C * sizeof *dst);
                continue;
            }
            memcpy(dst, x + (((size_t)n * H + i) * W) * C, (size_t)W * C * sizeof *dst);
            memset(dst + (size_t)W * C, 0, (size_t)C * sizeof *dst);
        }
}

sdw_status sdw_vae_encode(sdw_backend *be, sdw_arena *arena, const sdw_vae *v, const float *img, int N, int H,
                          int W, float *moments)
{
    const sdw_vae_config *c = &v->cfg;
    if (!v->has_encoder) return sdw_fail(SDW_ERR_INVALID_ARG, "the VAE was loaded without its encoder");
    int mult = 1 << (c->n_levels - 1);
    if (N < 1 || H < mult || W < mult || H % mult || W % mult)
        return sdw_fail(SDW_ERR_INVALID_ARG, "image size %dx%d is not a multiple of %d", W, H, mult);
    vfwd f = { be, arena, N };
    sdw_arena_mark m0 = sdw_arena_save(arena);
    int maxc = 0;
    for (int i = 0; i < c->n_levels; i++) maxc = c->block_out[i] > maxc ? c->block_out[i] : maxc;
    size_t cap = (size_t)N * (H + 1) * (W + 1) * maxc;
    float *x = sdw_arena_floats(arena, cap), *y = sdw_arena_floats(arena, cap);
    if (!x || !y) return nomem();
    int Ho, Wo, C = c->block_out[0];
    SDW_TRY(sdw_conv2d_forward(be, v->enc.conv_in, img, N, H, W, x, &Ho, &Wo));
    for (int i = 0; i < c->n_levels; i++) {
        const vlevel *lv = &v->enc.level[i];
        for (int j = 0; j < c->layers_per_block; j++) {
            SDW_TRY(vresnet_forward(&f, &lv->res[j], &x, &y, H, W));
            C = lv->res[j].cout;
        }
        if (lv->resample) {
            pad_right_bottom(x, N, H, W, C, y);
            SDW_TRY(sdw_conv2d_forward(be, lv->resample, y, N, H + 1, W + 1, x, &Ho, &Wo));
            H = Ho;
            W = Wo;
        }
    }
    SDW_TRY(mid_forward(&f, &v->enc.mid, &x, &y, H, W));
    if (v->quant_conv) {
        float *pre = sdw_arena_floats(arena, (size_t)N * H * W * 2 * c->latent_channels);
        if (!pre) return nomem();
        SDW_TRY(tail(&f, &v->enc, x, H, W, C, y, pre));
        SDW_TRY(sdw_conv2d_forward(be, v->quant_conv, pre, N, H, W, moments, &Ho, &Wo));
    } else {
        SDW_TRY(tail(&f, &v->enc, x, H, W, C, y, moments));
    }
    int lc = c->latent_channels;
    size_t px = (size_t)N * H * W;
    for (size_t p = 0; p < px; p++) {
        float *lv = moments + p * 2 * lc + lc;
        for (int k = 0; k < lc; k++) lv[k] = fminf(fmaxf(lv[k], -30.0f), 20.0f);
    }
    sdw_arena_restore(arena, m0);
    return SDW_OK;
}

/* The largest activation the decoder holds at once: each level's resnets at
 * its size, and the upsampling convolution's output (with the level's
 * channels, at twice the size). Sized per stage rather than as
 * widest channels x full size, which would double a 1024x1024 decode. */
static size_t decode_cap(const sdw_vae *v, int N, int h, int w)
{
    const sdw_vae_config *c = &v->cfg;
    size_t cap = (size_t)h * w * c->block_out[c->n_levels - 1], H = (size_t)h, W = (size_t)w;
    for (int i = 0; i < c->n_levels; i++) {
        const vlevel *lv = &v->dec.level[i];
        for (int j = 0; j <= c->layers_per_block; j++) {
            size_t wide = (size_t)(lv->res[j].cin > lv->res[j].cout ? lv->res[j].cin : lv->res[j].cout);
            if (H * W * wide > cap) cap = H * W * wide;
        }
        if (lv->resample) {
            H *= 2;
            W *= 2;
            size_t up = H * W * (size_t)lv->res[c->layers_per_block].cout;
            if (up > cap) cap = up;
        }
    }
    return cap * (size_t)N;
}

sdw_status sdw_vae_decode(sdw_backend *be, sdw_arena *arena, const sdw_vae *v, const float *z, int N, int h, int w,
                          float *img)
{
    const sdw_vae_config *c = &v->cfg;
    if (N < 1 || h < 1 || w < 1) return sdw_fail(SDW_ERR_INVALID_ARG, "empty latent");
    vfwd f = { be, arena, N };
    sdw_arena_mark m0 = sdw_arena_save(arena);
    int nl = c->n_levels;
    size_t cap = decode_cap(v, N, h, w);
    float *x = sdw_arena_floats(arena, cap), *y = sdw_arena_floats(arena, cap);
    if (!x || !y) return nomem();
    int Ho, Wo, H = h, W = w, C = c->block_out[nl - 1];
    const float *zq = z;
    if (v->post_quant_conv) {
        float *q = sdw_arena_floats(arena, (size_t)N * h * w * c->latent_channels);
        if (!q) return nomem();
        SDW_TRY(sdw_conv2d_forward(be, v->post_quant_conv, z, N, h, w, q, &Ho, &Wo));
        zq = q;
    }
    SDW_TRY(sdw_conv2d_forward(be, v->dec.conv_in, zq, N, h, w, x, &Ho, &Wo));
    SDW_TRY(mid_forward(&f, &v->dec.mid, &x, &y, H, W));
    for (int i = 0; i < nl; i++) {
        const vlevel *lv = &v->dec.level[i];
        for (int j = 0; j <= c->layers_per_block; j++) {
            SDW_TRY(vresnet_forward(&f, &lv->res[j], &x, &y, H, W));
            C = lv->res[j].cout;
        }
        if (lv->resample) {
            SDW_TRY(sdw_conv2d_upsample_block(be, lv->resample, &x, &y, N, H, W));
            H *= 2;
            W *= 2;
        }
    }
    SDW_TRY(tail(&f, &v->dec, x, H, W, C, y, img));
    sdw_arena_restore(arena, m0);
    return SDW_OK;
}
