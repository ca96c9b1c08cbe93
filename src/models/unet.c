/* unet.c: the latent diffusion UNet (see unet.h), NHWC throughout.
 *
 *   temb = time_embedding(sinusoid(t)) (+ add_embedding(y) for SDXL)
 *   x = conv_in(latents); skips = [x]
 *   down levels: (resnet, [transformer]) x layers, downsample; every output is a skip
 *   middle: resnet, transformer, resnet
 *   up levels: (concat skip, resnet, [transformer]) x (layers + 1), upsample
 *   out: group norm, SiLU, conv_out */
#include "models/unet.h"
#include "core/error.h"
#include "models/act.h"
#include "models/weights.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int cin, cout;
    float *norm1_w, *norm1_b, *norm2_w, *norm2_b;  /* (cin), (cout) */
    sdw_conv2d *conv1, *conv2;                     /* cin -> cout 3x3, cout -> cout 3x3 */
    sdw_linear *temb_proj;                         /* time_embed_dim -> cout */
    sdw_conv2d *shortcut;                          /* cin -> cout 1x1, NULL when cin == cout */
} resnet;

typedef struct {
    float *norm1_w, *norm1_b, *norm2_w, *norm2_b, *norm3_w, *norm3_b;  /* (C) */
    sdw_linear *qkv;        /* self-attention q, k, v fused: C -> 3C, no bias */
    sdw_linear *attn1_out;  /* C -> C */
    sdw_linear *q2;         /* cross-attention query: C -> C, no bias */
    sdw_linear *kv2;        /* cross-attention key, value fused: context_dim -> 2C, no bias */
    sdw_linear *attn2_out;  /* C -> C */
    sdw_linear *ff_in;      /* GEGLU: C -> 2 * 4C (value half, then gate half) */
    sdw_linear *ff_out;     /* 4C -> C */
} tblock;

typedef struct {
    int C, heads, depth;
    float *norm_w, *norm_b;
    sdw_linear *proj_in, *proj_out;  /* C -> C (a 1x1 conv in SD1: the same map on NHWC) */
    tblock *blocks;
} transformer;

typedef struct {
    resnet *res;         /* layers (down) or layers + 1 (up) */
    transformer *attn;   /* same count, or NULL when the level has no attention */
    sdw_conv2d *resample;  /* down: 3x3 stride 2; up: 3x3 after nearest 2x; NULL on the last */
} level;

struct sdw_unet {
    sdw_unet_config cfg;
    sdw_conv2d *conv_in;
    sdw_linear *time_1, *time_2;   /* block_out[0] -> temb -> temb */
    sdw_linear *add_1, *add_2;     /* SDXL: adm_in -> temb -> temb */
    level down[SDW_UNET_MAX_LEVELS], up[SDW_UNET_MAX_LEVELS];
    resnet mid_res[2];
    transformer mid_attn;
    float *norm_out_w, *norm_out_b;
    sdw_conv2d *conv_out;
    size_t bytes;
    sdw_layer_list layers;         /* under diffusers names, for LoRA */
};

/* ---------------------------------------------------------------- loading */

static sdw_status load_resnet(sdw_wloader *wl, const sdw_unet_config *c, resnet *r, int cin, int cout,
                              const char *p)
{
    r->cin = cin;
    r->cout = cout;
    SDW_TRY(sdw_wl_floats(wl, &r->norm1_w, cin, "%s.norm1.weight", p));
    SDW_TRY(sdw_wl_floats(wl, &r->norm1_b, cin, "%s.norm1.bias", p));
    SDW_TRY(sdw_wl_conv2d(wl, &r->conv1, cin, cout, 3, 1, 1, "%s.conv1", p));
    SDW_TRY(sdw_wl_linear(wl, &r->temb_proj, c->time_embed_dim, cout, true, "%s.time_emb_proj", p));
    SDW_TRY(sdw_wl_floats(wl, &r->norm2_w, cout, "%s.norm2.weight", p));
    SDW_TRY(sdw_wl_floats(wl, &r->norm2_b, cout, "%s.norm2.bias", p));
    SDW_TRY(sdw_wl_conv2d(wl, &r->conv2, cout, cout, 3, 1, 1, "%s.conv2", p));
    if (cin != cout) SDW_TRY(sdw_wl_conv2d(wl, &r->shortcut, cin, cout, 1, 1, 0, "%s.conv_shortcut", p));
    return SDW_OK;
}

static sdw_status load_tblock(sdw_wloader *wl, const sdw_unet_config *c, tblock *b, int C, const char *p)
{
    static const char *const qkv[] = { "attn1.to_q", "attn1.to_k", "attn1.to_v" };
    static const char *const kv[] = { "attn2.to_k", "attn2.to_v" };
    char dot[256];
    snprintf(dot, sizeof dot, "%s.", p);
    SDW_TRY(sdw_wl_floats(wl, &b->norm1_w, C, "%s.norm1.weight", p));
    SDW_TRY(sdw_wl_floats(wl, &b->norm1_b, C, "%s.norm1.bias", p));
    SDW_TRY(sdw_wl_linear_stack(wl, &b->qkv, C, C, 3, false, dot, qkv));
    SDW_TRY(sdw_wl_linear(wl, &b->attn1_out, C, C, true, "%s.attn1.to_out.0", p));
    SDW_TRY(sdw_wl_floats(wl, &b->norm2_w, C, "%s.norm2.weight", p));
    SDW_TRY(sdw_wl_floats(wl, &b->norm2_b, C, "%s.norm2.bias", p));
    SDW_TRY(sdw_wl_linear(wl, &b->q2, C, C, false, "%s.attn2.to_q", p));
    SDW_TRY(sdw_wl_linear_stack(wl, &b->kv2, c->context_dim, C, 2, false, dot, kv));
    SDW_TRY(sdw_wl_linear(wl, &b->attn2_out, C, C, true, "%s.attn2.to_out.0", p));
    SDW_TRY(sdw_wl_floats(wl, &b->norm3_w, C, "%s.norm3.weight", p));
    SDW_TRY(sdw_wl_floats(wl, &b->norm3_b, C, "%s.norm3.bias", p));
    SDW_TRY(sdw_wl_linear(wl, &b->ff_in, C, 8 * C, true, "%s.ff.net.0.proj", p));
    SDW_TRY(sdw_wl_linear(wl, &b->ff_out, 4 * C, C, true, "%s.ff.net.2", p));
    return SDW_OK;
}

static sdw_status load_transformer(sdw_wloader *wl, const sdw_unet_config *c, transformer *t, int C, int heads,
                                   int depth, const char *p)
{
    t->C = C;
    t->heads = heads;
    if (C % heads) return sdw_fail(SDW_ERR_FORMAT, "%s: %d channels do not split into %d heads", p, C, heads);
    SDW_TRY(sdw_wl_floats(wl, &t->norm_w, C, "%s.norm.weight", p));
    SDW_TRY(sdw_wl_floats(wl, &t->norm_b, C, "%s.norm.bias", p));
    SDW_TRY(sdw_wl_linear(wl, &t->proj_in, C, C, true, "%s.proj_in", p));
    SDW_TRY(sdw_wl_linear(wl, &t->proj_out, C, C, true, "%s.proj_out", p));
    t->blocks = calloc((size_t)depth, sizeof *t->blocks);
    if (!t->blocks) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    t->depth = depth;
    char bp[256];
    for (int i = 0; i < depth; i++) {
        snprintf(bp, sizeof bp, "%s.transformer_blocks.%d", p, i);
        SDW_TRY(load_tblock(wl, c, &t->blocks[i], C, bp));
    }
    return SDW_OK;
}

static sdw_status load_levels(sdw_wloader *wl, sdw_unet *u)
{
    const sdw_unet_config *c = &u->cfg;
    int nl = c->n_levels, L = c->layers_per_block;
    char p[256];
    int ch = c->block_out[0];
    for (int i = 0; i < nl; i++) {   /* down */
        level *lv = &u->down[i];
        lv->res = calloc((size_t)L, sizeof *lv->res);
        lv->attn = c->depth[i] ? calloc((size_t)L, sizeof *lv->attn) : NULL;
        if (!lv->res || (c->depth[i] && !lv->attn)) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        for (int j = 0; j < L; j++) {
            snprintf(p, sizeof p, "down_blocks.%d.resnets.%d", i, j);
            SDW_TRY(load_resnet(wl, c, &lv->res[j], ch, c->block_out[i], p));
            ch = c->block_out[i];
            if (lv->attn) {
                snprintf(p, sizeof p, "down_blocks.%d.attentions.%d", i, j);
                SDW_TRY(load_transformer(wl, c, &lv->attn[j], ch, c->heads[i], c->depth[i], p));
            }
        }
        if (i < nl - 1) {
            snprintf(p, sizeof p, "down_blocks.%d.downsamplers.0.conv", i);
            SDW_TRY(sdw_wl_conv2d(wl, &lv->resample, ch, ch, 3, 2, 1, "%s", p));
        }
    }
    int top = c->block_out[nl - 1];
    SDW_TRY(load_resnet(wl, c, &u->mid_res[0], top, top, "mid_block.resnets.0"));
    SDW_TRY(load_transformer(wl, c, &u->mid_attn, top, c->heads[nl - 1], c->mid_depth, "mid_block.attentions.0"));
    SDW_TRY(load_resnet(wl, c, &u->mid_res[1], top, top, "mid_block.resnets.1"));
    if (c->encoder_only) return SDW_OK;
    /* Up level i mirrors down level nl-1-i; skip widths follow the down path in reverse. */
    int skip_ch[SDW_UNET_MAX_SKIPS], ns = 0;
    skip_ch[ns++] = c->block_out[0];
    for (int i = 0; i < nl; i++) {
        for (int j = 0; j < L; j++) skip_ch[ns++] = c->block_out[i];
        if (i < nl - 1) skip_ch[ns++] = c->block_out[i];
    }
    ch = top;
    for (int i = 0; i < nl; i++) {
        int d = nl - 1 - i, out = c->block_out[d];
        level *lv = &u->up[i];
        lv->res = calloc((size_t)L + 1, sizeof *lv->res);
        lv->attn = c->depth[d] ? calloc((size_t)L + 1, sizeof *lv->attn) : NULL;
        if (!lv->res || (c->depth[d] && !lv->attn)) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        for (int j = 0; j <= L; j++) {
            snprintf(p, sizeof p, "up_blocks.%d.resnets.%d", i, j);
            SDW_TRY(load_resnet(wl, c, &lv->res[j], ch + skip_ch[--ns], out, p));
            ch = out;
            if (lv->attn) {
                snprintf(p, sizeof p, "up_blocks.%d.attentions.%d", i, j);
                SDW_TRY(load_transformer(wl, c, &lv->attn[j], ch, c->heads[d], c->depth[d], p));
            }
        }
        if (i < nl - 1) {
            snprintf(p, sizeof p, "up_blocks.%d.upsamplers.0.conv", i);
            SDW_TRY(sdw_wl_conv2d(wl, &lv->resample, ch, ch, 3, 1, 1, "%s", p));
        }
    }
    return SDW_OK;
}

static const char *ldm_map(void *ctx, const char *name, char *buf, size_t n)
{
    return sdw_unet_ldm_name(ctx, name, buf, n);
}

sdw_status sdw_unet_load_with(sdw_wloader *wl, const sdw_unet_config *c, sdw_unet **out)
{
    *out = NULL;
    if (c->n_levels < 1 || c->n_levels > SDW_UNET_MAX_LEVELS || c->layers_per_block < 1 ||
        c->layers_per_block > SDW_UNET_MAX_LAYERS || c->in_channels < 1 || (!c->encoder_only && c->out_channels < 1))
        return sdw_fail(SDW_ERR_UNSUPPORTED, "unsupported UNet configuration");
    sdw_unet *u = calloc(1, sizeof *u);
    if (!u) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    u->cfg = *c;
    sdw_layer_list *caller_layers = wl->layers;
    size_t held0 = wl->bytes_held;
    wl->layers = &u->layers;
    int c0 = c->block_out[0], te = c->time_embed_dim;
    sdw_status s = sdw_wl_conv2d(wl, &u->conv_in, c->in_channels, c0, 3, 1, 1, "conv_in");
    if (s == SDW_OK) s = sdw_wl_linear(wl, &u->time_1, c0, te, true, "time_embedding.linear_1");
    if (s == SDW_OK) s = sdw_wl_linear(wl, &u->time_2, te, te, true, "time_embedding.linear_2");
    if (s == SDW_OK && c->adm_in) s = sdw_wl_linear(wl, &u->add_1, c->adm_in, te, true, "add_embedding.linear_1");
    if (s == SDW_OK && c->adm_in) s = sdw_wl_linear(wl, &u->add_2, te, te, true, "add_embedding.linear_2");
    if (s == SDW_OK) s = load_levels(wl, u);
    if (!c->encoder_only) {
        if (s == SDW_OK) s = sdw_wl_floats(wl, &u->norm_out_w, c0, "conv_norm_out.weight");
        if (s == SDW_OK) s = sdw_wl_floats(wl, &u->norm_out_b, c0, "conv_norm_out.bias");
        if (s == SDW_OK) s = sdw_wl_conv2d(wl, &u->conv_out, c0, c->out_channels, 3, 1, 1, "conv_out");
    }
    u->bytes = wl->bytes_held - held0;
    wl->layers = caller_layers;
    if (s != SDW_OK) {
        sdw_unet_free(u);
        return s;
    }
    *out = u;
    return SDW_OK;
}

sdw_status sdw_unet_load(sdw_backend *be, const sdw_safetensors *st, sdw_name_layout names,
                         const sdw_unet_config *c, sdw_unet **out)
{
    sdw_wloader wl;
    sdw_wl_init(&wl, be, st);
    sdw_unet_config cfg = *c;
    if (names == SDW_NAMES_LDM) {
        wl.map = ldm_map;
        wl.map_ctx = &cfg;
    }
    sdw_status s = sdw_unet_load_with(&wl, c, out);
    sdw_wl_done(&wl);
    return s;
}

static void free_resnet(resnet *r)
{
    free(r->norm1_w); free(r->norm1_b); free(r->norm2_w); free(r->norm2_b);
    sdw_conv2d_free(r->conv1); sdw_conv2d_free(r->conv2); sdw_conv2d_free(r->shortcut);
    sdw_linear_free(r->temb_proj);
}

static void free_transformer(transformer *t)
{
    free(t->norm_w); free(t->norm_b);
    sdw_linear_free(t->proj_in); sdw_linear_free(t->proj_out);
    for (int i = 0; t->blocks && i < t->depth; i++) {
        tblock *b = &t->blocks[i];
        free(b->norm1_w); free(b->norm1_b); free(b->norm2_w); free(b->norm2_b); free(b->norm3_w); free(b->norm3_b);
        sdw_linear_free(b->qkv); sdw_linear_free(b->attn1_out); sdw_linear_free(b->q2); sdw_linear_free(b->kv2);
        sdw_linear_free(b->attn2_out); sdw_linear_free(b->ff_in); sdw_linear_free(b->ff_out);
    }
    free(t->blocks);
}

static void free_level(level *lv, int n)
{
    for (int j = 0; lv->res && j < n; j++) free_resnet(&lv->res[j]);
    for (int j = 0; lv->attn && j < n; j++) free_transformer(&lv->attn[j]);
    free(lv->res);
    free(lv->attn);
    sdw_conv2d_free(lv->resample);
}

void sdw_unet_free(sdw_unet *u)
{
    if (!u) return;
    for (int i = 0; i < u->cfg.n_levels; i++) {
        free_level(&u->down[i], u->cfg.layers_per_block);
        free_level(&u->up[i], u->cfg.layers_per_block + 1);
    }
    free_resnet(&u->mid_res[0]);
    free_resnet(&u->mid_res[1]);
    free_transformer(&u->mid_attn);
    sdw_conv2d_free(u->conv_in);
    sdw_linear_free(u->time_1); sdw_linear_free(u->time_2);
    sdw_linear_free(u->add_1); sdw_linear_free(u->add_2);
    free(u->norm_out_w); free(u->norm_out_b);
    sdw_conv2d_free(u->conv_out);
    sdw_layer_list_free(&u->layers);
    free(u);
}

const sdw_unet_config *sdw_unet_get_config(const sdw_unet *u) { return &u->cfg; }
const sdw_layer_list *sdw_unet_layers(const sdw_unet *u) { return &u->layers; }
size_t sdw_unet_bytes(const sdw_unet *u) { return u ? u->bytes : 0; }

/* ---------------------------------------------------------------- forward */

void sdw_timestep_embedding(float t, int dim, float *out)
{
    /* float32 throughout, in torch's order: exp(-ln(10000) * i / half) * t. */
    int half = dim / 2;
    const float neg_log = -logf(10000.0f);
    for (int i = 0; i < half; i++) {
        float e = expf(neg_log * (float)i / (float)half) * t;
        out[i] = cosf(e);
        out[half + i] = sinf(e);
    }
    if (dim % 2) out[dim - 1] = 0;
}

void sdw_unet_text_time_y(const float *pooled, int pooled_dim, const float *ids, int n_ids, int dim, float *y)
{
    memcpy(y, pooled, (size_t)pooled_dim * sizeof *y);
    for (int i = 0; i < n_ids; i++) sdw_timestep_embedding(ids[i], dim, y + pooled_dim + (size_t)i * dim);
}

typedef struct {
    sdw_backend *be;
    sdw_arena *arena;
    const sdw_unet *u;
    const sdw_unet_input *in;
    int N;
    float *temb_act;   /* SiLU(temb) [N, time_embed_dim], what every resnet projects */
    void *context_act; /* the text context as an activation, what every cross-attention projects */
} fwd;

static void tap(const fwd *f, const char *name, const float *x, int H, int W, int C)
{
    if (f->in->tap) f->in->tap(f->in->tap_user, name, x, f->N, H, W, C);
}

static sdw_status nomem(void) { return sdw_fail(SDW_ERR_NOMEM, "out of memory in the UNet"); }

/* out = resnet(x): out must not alias x. */
static sdw_status resnet_forward(const fwd *f, const resnet *r, const float *x, int H, int W, float *out)
{
    int N = f->N;
    size_t px = (size_t)N * H * W;
    sdw_arena_mark m = sdw_arena_save(f->arena);
    /* The normalised activations, in the convolutions' own type. */
    size_t act_n = px * (size_t)(r->cin > r->cout ? r->cin : r->cout);
    void *h = sdw_act_alloc(f->be, f->arena, act_n);
    float *tp = sdw_arena_floats(f->arena, (size_t)N * r->cout);
    if (!h || !tp) return nomem();
    int Ho, Wo;
    sdw_group_norm_silu_act(f->be, x, N, (int64_t)H * W, r->cin, 32, r->norm1_w, r->norm1_b, 1e-5f, h);
    SDW_TRY(sdw_conv2d_forward_act(f->be, r->conv1, h, N, H, W, out, false));
    SDW_TRY(sdw_linear_forward(f->be, r->temb_proj, f->temb_act, N, tp));
    /* norm2 of conv1's output plus the time embedding, added on the fly. */
    sdw_group_norm_silu_shift_act(f->be, out, tp, N, (int64_t)H * W, r->cout, 32, r->norm2_w, r->norm2_b, 1e-5f, h);
    /* out = skip(x), then conv2 adds onto it: no separate residual pass. */
    if (r->shortcut) SDW_TRY(sdw_conv2d_forward(f->be, r->shortcut, x, N, H, W, out, &Ho, &Wo));
    else memcpy(out, x, px * r->cout * sizeof *out);
    SDW_TRY(sdw_conv2d_forward_act(f->be, r->conv2, h, N, H, W, out, true));
    sdw_arena_restore(f->arena, m);
    return SDW_OK;
}

void sdw_unet_ctx_cache_free(sdw_unet_ctx_cache *c)
{
    for (int i = 0; i < c->n; i++) free(c->e[i].kv);
    free(c->e);
    *c = (sdw_unet_ctx_cache){ .max = c->max };
}

/* The input's cache, emptied when it was filled for another UNet or context. */
static void ctx_cache_check(const fwd *f)
{
    sdw_unet_ctx_cache *c = f->in->ctx_cache;
    if (!c || (c->u == f->u && c->context == f->in->context && c->N == f->N && c->n_ctx == f->in->n_ctx)) return;
    sdw_unet_ctx_cache_free(c);
    *c = (sdw_unet_ctx_cache){ .max = c->max, .u = f->u, .context = f->in->context, .N = f->N,
                               .n_ctx = f->in->n_ctx };
}

/* Block b's cross-attention K and V of the context: from the input's cache
 * when it holds them, else projected into scratch, or into the cache when
 * there is one. */
static sdw_status context_kv(const fwd *f, const tblock *b, int C, void *scratch, const void **kv)
{
    sdw_unet_ctx_cache *c = f->in->ctx_cache;
    const int64_t rows = (int64_t)f->N * f->in->n_ctx;
    if (c)
        for (int i = 0; i < c->n; i++)
            if (c->e[i].block == b) {
                *kv = c->e[i].kv;
                return SDW_OK;
            }
    const size_t bytes = sdw_act_bytes(f->be, (size_t)rows * 2 * C);
    if (c && c->bytes + bytes > (c->max ? c->max : SDW_UNET_CTX_CACHE_MAX)) c = NULL; /* full: every time */
    void *dst = scratch;
    if (c) {
        if (c->n == c->cap) {
            const int cap = c->cap ? 2 * c->cap : 32;
            struct sdw_unet_ctx_kv *e = realloc(c->e, sizeof *e * (size_t)cap);
            if (!e) return nomem();
            c->e = e;
            c->cap = cap;
        }
        if (!(dst = malloc(bytes))) return nomem();
    }
    const sdw_status st = sdw_linear_forward_to_act(f->be, b->kv2, f->context_act, rows, dst);
    if (c && st != SDW_OK) free(dst);
    SDW_TRY(st);
    if (c) {
        c->e[c->n++] = (struct sdw_unet_ctx_kv){ b, dst };
        c->bytes += bytes;
    }
    *kv = dst;
    return SDW_OK;
}

static sdw_status tblock_forward(const fwd *f, const tblock *b, float *x, int64_t T, int C, int heads)
{
    int N = f->N, D = C / heads;
    int64_t rows = (int64_t)N * T, nctx = f->in->n_ctx;
    sdw_arena_mark m = sdw_arena_save(f->arena);
    void *h = sdw_act_alloc(f->be, f->arena, (size_t)rows * C);
    void *big = sdw_act_alloc(f->be, f->arena, (size_t)rows * 8 * C); /* qkv (3C) or GEGLU input (8C) */
    void *a = sdw_act_alloc(f->be, f->arena, (size_t)rows * 4 * C);
    void *kv = sdw_act_alloc(f->be, f->arena, (size_t)N * nctx * 2 * C);
    if (!h || !big || !a || !kv) return nomem();

    /* Between the norms and the output projections everything is an
     * activation in the compute type (h, big, kv, a hold bf16 in BF16
     * precision): the matmuls write what attention and GEGLU read. Only the
     * residual stream x stays f32. */
    sdw_layer_norm_act(f->be, x, rows, C, b->norm1_w, b->norm1_b, 1e-5f, h);
    SDW_TRY(sdw_linear_forward_to_act(f->be, b->qkv, h, rows, big));
    SDW_TRY(sdw_attention_act(f->be, big, 3 * C, sdw_act_at(f->be, big, C), sdw_act_at(f->be, big, 2 * C), 3 * C, N,
                              (int)T, (int)T, heads, D, false, a));
    SDW_TRY(sdw_linear_forward_act(f->be, b->attn1_out, a, rows, x, true));

    sdw_layer_norm_act(f->be, x, rows, C, b->norm2_w, b->norm2_b, 1e-5f, h);
    SDW_TRY(sdw_linear_forward_to_act(f->be, b->q2, h, rows, big));
    const void *ckv = NULL;
    SDW_TRY(context_kv(f, b, C, kv, &ckv));
    SDW_TRY(sdw_attention_act(f->be, big, C, ckv, (const char *)ckv + sdw_act_bytes(f->be, C), 2 * C, N, (int)T,
                              (int)nctx, heads, D, false, a));
    SDW_TRY(sdw_linear_forward_act(f->be, b->attn2_out, a, rows, x, true));

    sdw_layer_norm_act(f->be, x, rows, C, b->norm3_w, b->norm3_b, 1e-5f, h);
    SDW_TRY(sdw_linear_forward_geglu_act(f->be, b->ff_in, h, rows, big, a));
    SDW_TRY(sdw_linear_forward_act(f->be, b->ff_out, a, rows, x, true));
    sdw_arena_restore(f->arena, m);
    return SDW_OK;
}

/* In place on x [N, H, W, C]: x += proj_out(blocks(proj_in(norm(x)))). */
static sdw_status transformer_forward(const fwd *f, const transformer *t, float *x, int H, int W)
{
    int C = t->C;
    int64_t T = (int64_t)H * W, rows = (int64_t)f->N * T;
    sdw_arena_mark m = sdw_arena_save(f->arena);
    void *h = sdw_act_alloc(f->be, f->arena, (size_t)rows * C);
    float *tok = sdw_arena_floats(f->arena, (size_t)rows * C);
    if (!h || !tok) return nomem();
    sdw_group_norm_act(f->be, x, f->N, T, C, 32, t->norm_w, t->norm_b, 1e-6f, h);
    SDW_TRY(sdw_linear_forward_act(f->be, t->proj_in, h, rows, tok, false));
    for (int i = 0; i < t->depth; i++) SDW_TRY(tblock_forward(f, &t->blocks[i], tok, T, C, t->heads));
    SDW_TRY(sdw_linear_forward_add(f->be, t->proj_out, tok, rows, x));
    sdw_arena_restore(f->arena, m);
    return SDW_OK;
}

static sdw_status time_embedding(fwd *f)
{
    const sdw_unet *u = f->u;
    const sdw_unet_config *c = &u->cfg;
    int N = f->N, c0 = c->block_out[0], te = c->time_embed_dim;
    float *sin_t = sdw_arena_floats(f->arena, (size_t)N * c0);
    float *h = sdw_arena_floats(f->arena, (size_t)N * te);
    float *temb = sdw_arena_floats(f->arena, (size_t)N * te);
    if (!sin_t || !h || !temb) return nomem();
    for (int n = 0; n < N; n++) sdw_timestep_embedding(f->in->timesteps[n], c0, sin_t + (size_t)n * c0);
    SDW_TRY(sdw_linear_forward(f->be, u->time_1, sin_t, N, h));
    sdw_silu(h, (size_t)N * te);
    SDW_TRY(sdw_linear_forward(f->be, u->time_2, h, N, temb));
    tap(f, "time_embedding", temb, 1, 1, te);
    if (c->adm_in) {
        if (!f->in->y) return sdw_fail(SDW_ERR_INVALID_ARG, "this UNet needs the SDXL added conditioning (y)");
        float *e = sdw_arena_floats(f->arena, (size_t)N * te);
        if (!e) return nomem();
        SDW_TRY(sdw_linear_forward(f->be, u->add_1, f->in->y, N, h));
        sdw_silu(h, (size_t)N * te);
        SDW_TRY(sdw_linear_forward(f->be, u->add_2, h, N, e));
        tap(f, "add_embedding", e, 1, 1, te);
        sdw_add(temb, temb, e, (size_t)N * te);
    }
    sdw_silu(temb, (size_t)N * te);  /* every consumer applies SiLU first */
    f->temb_act = temb;
    return SDW_OK;
}

int sdw_unet_skip_shapes(const sdw_unet_config *c, int H, int W, int hwc[][3])
{
    int n = 0;
#define SHAPE(C_) (hwc[n][0] = H, hwc[n][1] = W, hwc[n][2] = (C_), n++)
    SHAPE(c->block_out[0]);
    for (int i = 0; i < c->n_levels; i++) {
        for (int j = 0; j < c->layers_per_block; j++) SHAPE(c->block_out[i]);
        if (i < c->n_levels - 1) {
            H = (H + 1) / 2;   /* 3x3, stride 2, padding 1 */
            W = (W + 1) / 2;
            SHAPE(c->block_out[i]);
        }
    }
#undef SHAPE
    hwc[n][0] = H;
    hwc[n][1] = W;
    hwc[n][2] = c->block_out[c->n_levels - 1];
    return n;
}

/* The down path's state: the current activation x (y its ping-pong
 * partner) at H x W x C, and the skips kept so far (each its own arena
 * block, alive until the up path or the caller consumes it). */
typedef struct {
    float *x, *y;
    int H, W, C, ns;
    float *skip[SDW_UNET_MAX_SKIPS];
    int skip_c[SDW_UNET_MAX_SKIPS];
} down_state;

/* What both halves need: the input checks, the time embedding, the context as
 * an activation, the ping-pong buffers (room for an up level's concat too
 * unless encoder_only). */
static sdw_status begin(fwd *f, down_state *d)
{
    const sdw_unet_config *c = &f->u->cfg;
    const sdw_unet_input *in = f->in;
    int nl = c->n_levels, N = in->N, H = in->H, W = in->W;
    int mult = 1 << (nl - 1);
    if (N < 1 || H < 1 || W < 1 || H % mult || W % mult)
        return sdw_fail(SDW_ERR_INVALID_ARG, "latent size %dx%d is not a multiple of %d", H, W, mult);
    if (in->n_ctx < 1 || !in->context) return sdw_fail(SDW_ERR_INVALID_ARG, "the UNet needs a text context");
    SDW_TRY(time_embedding(f));
    ctx_cache_check(f);
    const size_t ctx_n = (size_t)N * in->n_ctx * c->context_dim;
    if (!(f->context_act = sdw_act_alloc(f->be, f->arena, ctx_n))) return nomem();
    sdw_to_act(f->be, in->context, ctx_n, f->context_act);
    size_t maxpx = (size_t)N * H * W;
    int maxc = 0;
    for (int i = 0; i < nl; i++) maxc = c->block_out[i] > maxc ? c->block_out[i] : maxc;
    size_t room = maxpx * maxc * (c->encoder_only ? 1 : 2);
    d->x = sdw_arena_floats(f->arena, room);
    d->y = sdw_arena_floats(f->arena, room);
    if (!d->x || !d->y) return nomem();
    d->H = H;
    d->W = W;
    d->C = c->block_out[0];
    d->ns = 0;
    return SDW_OK;
}

static void swap(down_state *d)
{
    float *t = d->x;
    d->x = d->y;
    d->y = t;
}

static sdw_status push_skip(const fwd *f, down_state *d)
{
    size_t n = (size_t)f->N * d->H * d->W * d->C;
    float *s = sdw_arena_floats(f->arena, n);
    if (!s) return nomem();
    memcpy(s, d->x, n * sizeof *s);
    d->skip_c[d->ns] = d->C;
    d->skip[d->ns++] = s;
    return SDW_OK;
}

/* conv_in (+ add), the down levels keeping every skip, the middle block:
 * its output ends in d->x. */
static sdw_status down_path(const fwd *f, down_state *d, const float *add)
{
    const sdw_unet *u = f->u;
    const sdw_unet_config *c = &u->cfg;
    int nl = c->n_levels, L = c->layers_per_block, N = f->N, Ho, Wo;
    SDW_TRY(sdw_conv2d_forward(f->be, u->conv_in, f->in->x, N, d->H, d->W, d->x, &Ho, &Wo));
    tap(f, "conv_in", d->x, d->H, d->W, d->C);
    if (add) sdw_add(d->x, d->x, add, (size_t)N * d->H * d->W * d->C);
    SDW_TRY(push_skip(f, d));
    char name[64];
    for (int i = 0; i < nl; i++) {
        const level *lv = &u->down[i];
        for (int j = 0; j < L; j++) {
            SDW_TRY(resnet_forward(f, &lv->res[j], d->x, d->H, d->W, d->y));
            swap(d);
            d->C = lv->res[j].cout;
            if (lv->attn) SDW_TRY(transformer_forward(f, &lv->attn[j], d->x, d->H, d->W));
            SDW_TRY(push_skip(f, d));
        }
        if (lv->resample) {
            SDW_TRY(sdw_conv2d_forward(f->be, lv->resample, d->x, N, d->H, d->W, d->y, &Ho, &Wo));
            swap(d);
            d->H = Ho;
            d->W = Wo;
            SDW_TRY(push_skip(f, d));
        }
        snprintf(name, sizeof name, "down_blocks.%d", i);
        tap(f, name, d->x, d->H, d->W, d->C);
    }
    SDW_TRY(resnet_forward(f, &u->mid_res[0], d->x, d->H, d->W, d->y));
    SDW_TRY(transformer_forward(f, &u->mid_attn, d->y, d->H, d->W));
    SDW_TRY(resnet_forward(f, &u->mid_res[1], d->y, d->H, d->W, d->x));
    tap(f, "mid_block", d->x, d->H, d->W, d->C);
    return SDW_OK;
}

sdw_status sdw_unet_encode(sdw_backend *be, sdw_arena *arena, const sdw_unet *u, const sdw_unet_input *in,
                           const float *add, float **skip, float **mid, int *n_skip)
{
    fwd f = { be, arena, u, in, in->N, NULL, NULL };
    down_state d;
    SDW_TRY(begin(&f, &d));
    SDW_TRY(down_path(&f, &d, add));
    for (int i = 0; i < d.ns; i++) skip[i] = d.skip[i];
    *mid = d.x;
    *n_skip = d.ns;
    return SDW_OK;
}

/* The whole UNet; the caller restores the arena. */
static sdw_status run_unet(fwd *f, float *out)
{
    const sdw_unet *u = f->u;
    const sdw_unet_input *in = f->in;
    sdw_backend *be = f->be;
    const sdw_unet_config *c = &u->cfg;
    int nl = c->n_levels, L = c->layers_per_block, N = in->N, Ho, Wo;
    down_state d;
    SDW_TRY(begin(f, &d));
    SDW_TRY(down_path(f, &d, NULL));
    /* ControlNet residuals: on the kept skips (not on the activation that
     * went on down) and on the middle output, as diffusers adds them. */
    if (in->down_res) {
        int hwc[SDW_UNET_MAX_SKIPS + 1][3];
        int n = sdw_unet_skip_shapes(c, in->H, in->W, hwc);
        for (int i = 0; i < n; i++)
            if (in->down_res[i])
                sdw_add(d.skip[i], d.skip[i], in->down_res[i], (size_t)N * hwc[i][0] * hwc[i][1] * hwc[i][2]);
    }
    if (in->mid_res) sdw_add(d.x, d.x, in->mid_res, (size_t)N * d.H * d.W * d.C);
    float *x = d.x, *y = d.y;
    int H = d.H, W = d.W, C = d.C, ns = d.ns;
    char name[64];
    for (int i = 0; i < nl; i++) {
        const level *lv = &u->up[i];
        for (int j = 0; j <= L; j++) {
            int sc = d.skip_c[--ns];
            sdw_concat_channels(x, C, d.skip[ns], sc, (int64_t)N * H * W, y);
            SDW_TRY(resnet_forward(f, &lv->res[j], y, H, W, x));
            C = lv->res[j].cout;
            if (lv->attn) SDW_TRY(transformer_forward(f, &lv->attn[j], x, H, W));
        }
        if (lv->resample) {
            SDW_TRY(sdw_conv2d_upsample_block(be, lv->resample, &x, &y, N, H, W));
            H *= 2;
            W *= 2;
        }
        snprintf(name, sizeof name, "up_blocks.%d", i);
        tap(f, name, x, H, W, C);
    }
    sdw_group_norm(x, N, (int64_t)H * W, C, 32, u->norm_out_w, u->norm_out_b, 1e-5f, y);
    tap(f, "conv_norm_out", y, H, W, C);
    sdw_silu(y, (size_t)N * H * W * C);
    return sdw_conv2d_forward(be, u->conv_out, y, N, H, W, out, &Ho, &Wo);
}

sdw_status sdw_unet_forward(sdw_backend *be, sdw_arena *arena, const sdw_unet *u, const sdw_unet_input *in,
                            float *out)
{
    if (u->cfg.encoder_only) return sdw_fail(SDW_ERR_INVALID_ARG, "a ControlNet's UNet half has no up path to run");
    fwd f = { be, arena, u, in, in->N, NULL, NULL };
    sdw_arena_mark m0 = sdw_arena_save(arena);
    sdw_status s = run_unet(&f, out);
    sdw_arena_restore(arena, m0);
    return s;
}
