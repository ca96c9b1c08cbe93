/* flux.c: the FLUX.1 transformer (see flux.h), batch 1, tokens [rows, hidden].
 *
 *   vec  = time_in(emb(1000 t)) [+ guidance_in(emb(1000 g))] + vector_in(y)
 *   mods = every block's modulation Linear(SiLU(vec)), once per forward
 *   x    = cat(txt_in(txt), img_in(img))   one buffer: the double blocks work on its two halves
 *   pe   = RoPE angles of cat(txt_ids, img_ids)
 *   double blocks (x txt, x img), single blocks (x), final layer (img rows) -> velocity
 *
 * Weights are asked for by BFL names; flux_names.c says where a diffusers
 * folder keeps each one. */
#include "models/flux.h"
#include "core/error.h"
#include "models/act.h"
#include "models/timestep_embed.h"
#include "models/unet.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LN_EPS 1e-6f    /* the blocks' and final layer's LayerNorm (no affine) */
#define RMS_EPS 1e-6f   /* the q / k RMSNorm */
#define TIME_DIM 256    /* sinusoid width of t and guidance */

typedef struct {
    sdw_linear *in_layer, *out_layer;   /* in -> hidden, hidden -> hidden; SiLU between */
} mlp_embedder;

typedef struct {               /* one stream (img or txt) of a double block */
    sdw_linear *mod;           /* hidden -> 6 hidden: (shift, scale, gate) for attention, then for the MLP */
    sdw_linear *qkv;           /* hidden -> 3 hidden, rows q|k|v, each head-major */
    float *q_norm, *k_norm;    /* (head_dim) RMSNorm scales */
    sdw_linear *proj;          /* hidden -> hidden */
    sdw_linear *mlp0, *mlp2;   /* hidden -> mlp_hidden, GELU(tanh), mlp_hidden -> hidden */
} stream;

typedef struct {
    stream img, txt;
} double_block;

typedef struct {
    sdw_linear *mod;           /* hidden -> 3 hidden: (shift, scale, gate) */
    sdw_linear *linear1;       /* hidden -> 3 hidden + mlp_hidden: q|k|v|mlp */
    float *q_norm, *k_norm;    /* (head_dim) */
    sdw_linear *linear2;       /* hidden + mlp_hidden -> hidden, on cat(attention, GELU(mlp)) */
} single_block;

struct sdw_flux {
    sdw_flux_config cfg;
    sdw_linear *img_in;        /* in_channels -> hidden */
    sdw_linear *txt_in;        /* context_dim -> hidden */
    mlp_embedder time_in;      /* 256 -> hidden */
    mlp_embedder guidance_in;  /* 256 -> hidden, dev only */
    mlp_embedder vector_in;    /* vec_dim -> hidden */
    double_block *dbl;         /* depth */
    single_block *sgl;         /* depth_single */
    sdw_linear *final_mod;     /* hidden -> 2 hidden: (shift, scale) */
    sdw_linear *final_linear;  /* hidden -> in_channels */
    size_t bytes;
    sdw_layer_list layers;     /* BFL names, and diffusers names of the parts */
};

/* ---------------------------------------------------------------- loading */

/* Modules are asked for by BFL names; a diffusers file answers through
 * flux_names.c's map (weights_parts.c does the reading). */
static int diffusers_parts(const void *model, const char *bfl, int out_rows, sdw_wl_split *p)
{
    return sdw_flux_diffusers_parts(bfl, &((const sdw_flux *)model)->cfg, out_rows, p);
}

static sdw_status load_embedder(sdw_split_loader *sl, mlp_embedder *e, int in, int H, const char *name)
{
    SDW_TRY(sdw_sl_linear(sl, &e->in_layer, in, H, true, "%s.in_layer", name));
    return sdw_sl_linear(sl, &e->out_layer, H, H, true, "%s.out_layer", name);
}

static sdw_status load_stream(sdw_split_loader *sl, const sdw_flux_config *c, stream *s, int i, const char *which)
{
    int H = c->hidden, M = c->mlp_hidden, D = c->head_dim;
    SDW_TRY(sdw_sl_linear(sl, &s->mod, H, 6 * H, true, "double_blocks.%d.%s_mod.lin", i, which));
    SDW_TRY(sdw_sl_linear(sl, &s->qkv, H, 3 * H, c->qkv_bias, "double_blocks.%d.%s_attn.qkv", i, which));
    SDW_TRY(sdw_sl_vector(sl, &s->q_norm, D, "double_blocks.%d.%s_attn.norm.query_norm", i, which));
    SDW_TRY(sdw_sl_vector(sl, &s->k_norm, D, "double_blocks.%d.%s_attn.norm.key_norm", i, which));
    SDW_TRY(sdw_sl_linear(sl, &s->proj, H, H, true, "double_blocks.%d.%s_attn.proj", i, which));
    SDW_TRY(sdw_sl_linear(sl, &s->mlp0, H, M, true, "double_blocks.%d.%s_mlp.0", i, which));
    return sdw_sl_linear(sl, &s->mlp2, M, H, true, "double_blocks.%d.%s_mlp.2", i, which);
}

static sdw_status load_single(sdw_split_loader *sl, const sdw_flux_config *c, single_block *b, int i)
{
    int H = c->hidden, M = c->mlp_hidden, D = c->head_dim;
    SDW_TRY(sdw_sl_linear(sl, &b->mod, H, 3 * H, true, "single_blocks.%d.modulation.lin", i));
    SDW_TRY(sdw_sl_linear(sl, &b->linear1, H, 3 * H + M, true, "single_blocks.%d.linear1", i));
    SDW_TRY(sdw_sl_vector(sl, &b->q_norm, D, "single_blocks.%d.norm.query_norm", i));
    SDW_TRY(sdw_sl_vector(sl, &b->k_norm, D, "single_blocks.%d.norm.key_norm", i));
    return sdw_sl_linear(sl, &b->linear2, H + M, H, true, "single_blocks.%d.linear2", i);
}

static sdw_status load_all(sdw_split_loader *sl, void *model)
{
    sdw_flux *f = model;
    const sdw_flux_config *c = &f->cfg;
    int H = c->hidden;
    SDW_TRY(sdw_sl_linear(sl, &f->img_in, c->in_channels, H, true, "img_in"));
    SDW_TRY(sdw_sl_linear(sl, &f->txt_in, c->context_dim, H, true, "txt_in"));
    SDW_TRY(load_embedder(sl, &f->time_in, TIME_DIM, H, "time_in"));
    if (c->guidance_embed) SDW_TRY(load_embedder(sl, &f->guidance_in, TIME_DIM, H, "guidance_in"));
    SDW_TRY(load_embedder(sl, &f->vector_in, c->vec_dim, H, "vector_in"));
    f->dbl = calloc((size_t)c->depth + 1, sizeof *f->dbl);
    f->sgl = calloc((size_t)c->depth_single + 1, sizeof *f->sgl);
    if (!f->dbl || !f->sgl) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    for (int i = 0; i < c->depth; i++) {
        SDW_TRY(load_stream(sl, c, &f->dbl[i].img, i, "img"));
        SDW_TRY(load_stream(sl, c, &f->dbl[i].txt, i, "txt"));
    }
    for (int i = 0; i < c->depth_single; i++) SDW_TRY(load_single(sl, c, &f->sgl[i], i));
    SDW_TRY(sdw_sl_linear(sl, &f->final_mod, H, 2 * H, true, "final_layer.adaLN_modulation.1"));
    return sdw_sl_linear(sl, &f->final_linear, H, c->in_channels, true, "final_layer.linear");
}

static bool config_ok(const sdw_flux_config *c)
{
    return c->hidden > 0 && c->heads > 0 && c->head_dim > 1 && c->heads * c->head_dim == c->hidden &&
           c->head_dim % 2 == 0 && c->axes_dim[0] >= 0 && c->axes_dim[1] >= 0 && c->axes_dim[2] >= 0 &&
           c->axes_dim[0] % 2 == 0 && c->axes_dim[1] % 2 == 0 && c->axes_dim[2] % 2 == 0 &&
           c->axes_dim[0] + c->axes_dim[1] + c->axes_dim[2] == c->head_dim && c->depth >= 0 && c->depth_single >= 0 &&
           c->mlp_hidden > 0 && c->in_channels > 0 && c->context_dim > 0 && c->vec_dim > 0 && c->theta > 0;
}

static void drop(void *f) { sdw_flux_free(f); }

sdw_status sdw_flux_load(sdw_backend *be, const sdw_safetensors *st, const char *prefix, sdw_name_layout names,
                         const sdw_flux_config *c, sdw_flux **out)
{
    *out = NULL;
    if (!config_ok(c)) return sdw_fail(SDW_ERR_UNSUPPORTED, "unsupported FLUX transformer configuration");
    sdw_flux *f = calloc(1, sizeof *f);
    if (!f) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    f->cfg = *c;
    const bool diffusers = names == SDW_NAMES_DIFFUSERS;
    sdw_split_loader sl = { .prefix = prefix, .split = diffusers, .splits = diffusers_parts,
                            .vector_suffix = diffusers ? ".weight" : ".scale", .what = "FLUX", .model = f,
                            .layers = &f->layers, .bytes = &f->bytes };
    SDW_TRY(sdw_sl_load(&sl, be, st, load_all, drop));
    *out = f;
    return SDW_OK;
}

static void free_embedder(mlp_embedder *e)
{
    sdw_linear_free(e->in_layer);
    sdw_linear_free(e->out_layer);
}

static void free_stream(stream *s)
{
    sdw_linear_free(s->mod); sdw_linear_free(s->qkv); sdw_linear_free(s->proj);
    sdw_linear_free(s->mlp0); sdw_linear_free(s->mlp2);
    free(s->q_norm); free(s->k_norm);
}

void sdw_flux_free(sdw_flux *f)
{
    if (!f) return;
    for (int i = 0; f->dbl && i < f->cfg.depth; i++) {
        free_stream(&f->dbl[i].img);
        free_stream(&f->dbl[i].txt);
    }
    for (int i = 0; f->sgl && i < f->cfg.depth_single; i++) {
        single_block *b = &f->sgl[i];
        sdw_linear_free(b->mod); sdw_linear_free(b->linear1); sdw_linear_free(b->linear2);
        free(b->q_norm); free(b->k_norm);
    }
    free(f->dbl);
    free(f->sgl);
    sdw_linear_free(f->img_in); sdw_linear_free(f->txt_in);
    free_embedder(&f->time_in); free_embedder(&f->guidance_in); free_embedder(&f->vector_in);
    sdw_linear_free(f->final_mod); sdw_linear_free(f->final_linear);
    sdw_layer_list_free(&f->layers);
    free(f);
}

size_t sdw_flux_bytes(const sdw_flux *f) { return f ? f->bytes : 0; }
const sdw_flux_config *sdw_flux_get_config(const sdw_flux *f) { return &f->cfg; }
const sdw_layer_list *sdw_flux_layers(const sdw_flux *f) { return &f->layers; }

/* ---------------------------------------------------------------- forward */

typedef struct {
    sdw_backend *be;
    sdw_arena *arena;
    const sdw_flux *f;
    const sdw_flux_input *in;
    int n_txt, n_img, L;   /* L = n_txt + n_img, txt rows first */
    float *pe_cos, *pe_sin;   /* [L, head_dim / 2] RoPE rotation of each pair */
} fwd;

static void tap(const fwd *f, const char *name, const float *x, int rows, int cols)
{
    if (f->in->tap) f->in->tap(f->in->tap_user, name, x, rows, cols);
}

static sdw_status nomem(void) { return sdw_fail(SDW_ERR_NOMEM, "out of memory in the FLUX transformer"); }

/* A modulation's chunks, each [hidden], as BFL's Modulation splits them. The
 * scales are stored as 1 + scale: the LayerNorm's gamma. */
typedef struct {
    const float *shift, *scale1, *gate;
} mod3;

/* y = (1 + scale) * LayerNorm(x) + shift (a LayerNorm with that gamma and
 * beta), as an activation. */
static void norm_modulate(const fwd *f, const float *x, int64_t rows, int H, const mod3 *m, void *y)
{
    sdw_layer_norm_act(f->be, x, rows, H, m->scale1, m->shift, LN_EPS, y);
}

/* x += gate * y, gate broadcast over rows. */
static void gated_add(float *x, const float *y, const float *gate, int64_t rows, int H)
{
#pragma omp parallel for schedule(static) if (rows * H > 65536)
    for (int64_t r = 0; r < rows; r++)
        for (int c = 0; c < H; c++) x[r * H + c] += gate[c] * y[r * H + c];
}

/* In place on q and k of rows tokens starting at row0 (row stride floats):
 * RMSNorm per head with the learned scales, then RoPE on pairs (x[2m], x[2m+1]). */
static void qk_norm_rope(const fwd *f, float *buf, int64_t stride, int row0, int rows, const float *q_scale,
                         const float *k_scale)
{
    const sdw_flux_config *c = &f->f->cfg;
    const int D = c->head_dim, nh = c->heads, H = c->hidden, half = D / 2;
#pragma omp parallel for schedule(static) if ((int64_t)rows * H > 65536)
    for (int r = 0; r < rows; r++) {
        const float *cs = f->pe_cos + (size_t)(row0 + r) * half, *sn = f->pe_sin + (size_t)(row0 + r) * half;
        for (int qk = 0; qk < 2; qk++) {
            const float *scale = qk ? k_scale : q_scale;
            for (int h = 0; h < nh; h++) {
                float *x = buf + (row0 + r) * stride + qk * H + h * D;
                float ss = 0;
                for (int d = 0; d < D; d++) ss += x[d] * x[d];
                float rrms = 1.0f / sqrtf(ss / (float)D + RMS_EPS);
                for (int m = 0; m < half; m++) {
                    float x0 = x[2 * m] * rrms * scale[2 * m], x1 = x[2 * m + 1] * rrms * scale[2 * m + 1];
                    x[2 * m] = cs[m] * x0 - sn[m] * x1;
                    x[2 * m + 1] = sn[m] * x0 + cs[m] * x1;
                }
            }
        }
    }
}

/* RoPE angles of cat(txt_ids, img_ids): for axis k of d = axes_dim[k] dims,
 * pair m of that block turns by id_k * theta^(-2m / d). */
static sdw_status rope_table(fwd *f)
{
    const sdw_flux_config *c = &f->f->cfg;
    int half = c->head_dim / 2;
    f->pe_cos = sdw_arena_floats(f->arena, (size_t)f->L * half);
    f->pe_sin = sdw_arena_floats(f->arena, (size_t)f->L * half);
    if (!f->pe_cos || !f->pe_sin) return nomem();
    for (int t = 0; t < f->L; t++) {
        const float *id = t < f->n_txt ? f->in->txt_ids + (size_t)t * 3 : f->in->img_ids + (size_t)(t - f->n_txt) * 3;
        int m = 0;
        for (int k = 0; k < 3; k++)
            for (int j = 0; j < c->axes_dim[k] / 2; j++, m++) {
                /* float64 as diffusers; BFL's float32 agrees to ~1e-7. */
                double a = (double)id[k] * pow((double)c->theta, -2.0 * j / c->axes_dim[k]);
                f->pe_cos[(size_t)t * half + m] = (float)cos(a);
                f->pe_sin[(size_t)t * half + m] = (float)sin(a);
            }
    }
    if (f->in->tap) {   /* as BFL's EmbedND returns it: per pair [[cos, -sin], [sin, cos]] */
        sdw_arena_mark mk = sdw_arena_save(f->arena);
        float *pe = sdw_arena_floats(f->arena, (size_t)f->L * half * 4);
        if (!pe) return nomem();
        for (size_t i = 0; i < (size_t)f->L * half; i++) {
            pe[4 * i] = f->pe_cos[i];
            pe[4 * i + 1] = -f->pe_sin[i];
            pe[4 * i + 2] = f->pe_sin[i];
            pe[4 * i + 3] = f->pe_cos[i];
        }
        tap(f, "pe_embedder", pe, f->L, half * 4);
        sdw_arena_restore(f->arena, mk);
    }
    return SDW_OK;
}

/* out [hidden] = out_layer(SiLU(in_layer(x))). */
static sdw_status embed(const fwd *f, const mlp_embedder *e, const float *x, float *out)
{
    int H = f->f->cfg.hidden;
    float *h = sdw_arena_floats(f->arena, (size_t)H);
    if (!h) return nomem();
    SDW_TRY(sdw_linear_forward(f->be, e->in_layer, x, 1, h));
    sdw_silu(h, (size_t)H);
    return sdw_linear_forward(f->be, e->out_layer, h, 1, out);
}

/* SiLU(vec) [hidden]: time, guidance and pooled text, what every modulation reads. */
static sdw_status vector(const fwd *f, float *vec)
{
    const sdw_flux *m = f->f;
    int H = m->cfg.hidden;
    float *temb = sdw_arena_floats(f->arena, TIME_DIM), *e = sdw_arena_floats(f->arena, (size_t)H);
    if (!temb || !e) return nomem();
    sdw_time_sinusoid(1000.0f * f->in->t, TIME_DIM, temb);
    SDW_TRY(embed(f, &m->time_in, temb, vec));
    tap(f, "time_in", vec, 1, H);
    if (m->cfg.guidance_embed) {
        sdw_time_sinusoid(1000.0f * f->in->guidance, TIME_DIM, temb);
        SDW_TRY(embed(f, &m->guidance_in, temb, e));
        tap(f, "guidance_in", e, 1, H);
        sdw_add(vec, vec, e, (size_t)H);
    }
    SDW_TRY(embed(f, &m->vector_in, f->in->y, e));
    tap(f, "vector_in", e, 1, H);
    sdw_add(vec, vec, e, (size_t)H);
    sdw_silu(vec, (size_t)H);
    return SDW_OK;
}

/* l(SiLU(vec)) split into groups of (shift, 1 + scale, gate) chunks, m[i] for group i. */
static sdw_status modulation(const fwd *f, const sdw_linear *l, const float *silu_vec, int groups, mod3 *m)
{
    int H = f->f->cfg.hidden;
    float *v = sdw_arena_floats(f->arena, (size_t)sdw_linear_out(l));
    if (!v) return nomem();
    SDW_TRY(sdw_linear_forward(f->be, l, silu_vec, 1, v));
    for (int g = 0; g < groups; g++) {
        float *base = v + (size_t)g * 3 * H;
        for (int c = 0; c < H; c++) base[H + c] += 1.0f;
        m[g] = (mod3){ base, base + H, base + 2 * H };
    }
    return SDW_OK;
}

/* Scratch of one forward, sized for the widest block. Between a norm and
 * the projection that ends its branch everything is an activation
 * (sdw_act_bytes: bf16 in BF16 precision, written so by the op before and
 * read so by the one after), but for the q / k norms and RoPE, which take
 * the projections in f32; the residual stream and the projections' outputs
 * are f32. */
typedef struct {
    void *h;       /* [L, hidden] normalised tokens */
    float *qkv;    /* [L, 3 hidden + mlp_hidden] f32 projections (double blocks use 3 hidden a row) */
    void *qkv_act; /* [L, 3 hidden] q, k (normed, turned), v: what the attention reads */
    void *attn;    /* [L, hidden] attention output */
    void *cat;     /* [L, hidden + mlp_hidden] linear2 input; double blocks use it for the MLP */
    float *y;      /* [L, hidden] an output before its gated residual */
} scratch;

/* x += gate2 * mlp2(gelu(mlp0(LN_mod2(x)))) over rows tokens of one stream. */
static sdw_status stream_mlp(const fwd *f, const stream *s, const mod3 *m2, float *x, int rows, const scratch *b)
{
    const sdw_flux_config *c = &f->f->cfg;
    norm_modulate(f, x, rows, c->hidden, m2, b->h);
    SDW_TRY(sdw_linear_forward_gelu_act(f->be, s->mlp0, b->h, rows, b->cat));
    SDW_TRY(sdw_linear_forward_act(f->be, s->mlp2, b->cat, rows, b->y, false));
    gated_add(x, b->y, m2->gate, rows, c->hidden);
    return SDW_OK;
}

/* Both streams of x = cat(txt, img); mt / mi: (attention, MLP) modulations of txt / img. */
static sdw_status double_block_forward(const fwd *f, const double_block *blk, const mod3 *mt, const mod3 *mi,
                                       float *x, const scratch *b)
{
    const sdw_flux_config *c = &f->f->cfg;
    const int H = c->hidden, nt = f->n_txt, ni = f->n_img;
    float *img = x + (size_t)nt * H;
    const int64_t st = 3 * (int64_t)H;
    void *h_img = sdw_act_at(f->be, b->h, (size_t)nt * H);
    norm_modulate(f, x, nt, H, &mt[0], b->h);
    norm_modulate(f, img, ni, H, &mi[0], h_img);
    if (nt) SDW_TRY(sdw_linear_forward_act(f->be, blk->txt.qkv, b->h, nt, b->qkv, false));
    SDW_TRY(sdw_linear_forward_act(f->be, blk->img.qkv, h_img, ni, b->qkv + (size_t)nt * st, false));
    qk_norm_rope(f, b->qkv, st, 0, nt, blk->txt.q_norm, blk->txt.k_norm);
    qk_norm_rope(f, b->qkv, st, nt, ni, blk->img.q_norm, blk->img.k_norm);
    sdw_to_act(f->be, b->qkv, (size_t)f->L * st, b->qkv_act);
    SDW_TRY(sdw_attention_act(f->be, b->qkv_act, st, sdw_act_at(f->be, b->qkv_act, H),
                              sdw_act_at(f->be, b->qkv_act, 2 * H), st, 1, f->L, f->L, c->heads, c->head_dim, false,
                              b->attn));
    if (nt) {
        SDW_TRY(sdw_linear_forward_act(f->be, blk->txt.proj, b->attn, nt, b->y, false));
        gated_add(x, b->y, mt[0].gate, nt, H);
    }
    SDW_TRY(sdw_linear_forward_act(f->be, blk->img.proj, sdw_act_at(f->be, b->attn, (size_t)nt * H), ni, b->y, false));
    gated_add(img, b->y, mi[0].gate, ni, H);
    SDW_TRY(stream_mlp(f, &blk->img, &mi[1], img, ni, b));
    if (nt) SDW_TRY(stream_mlp(f, &blk->txt, &mt[1], x, nt, b));
    return SDW_OK;
}

/* x += gate * linear2(cat(attention(q, k, v), gelu(mlp))) with q|k|v|mlp = linear1(LN_mod(x)). */
static sdw_status single_block_forward(const fwd *f, const single_block *blk, const mod3 *m, float *x,
                                       const scratch *b)
{
    const sdw_flux_config *c = &f->f->cfg;
    const int H = c->hidden, M = c->mlp_hidden, L = f->L;
    const int64_t st = 3 * (int64_t)H + M;
    norm_modulate(f, x, L, H, m, b->h);
    SDW_TRY(sdw_linear_forward_act(f->be, blk->linear1, b->h, L, b->qkv, false));
    qk_norm_rope(f, b->qkv, st, 0, L, blk->q_norm, blk->k_norm);
    sdw_to_act_rows(f->be, b->qkv, L, 3 * H, st, false, b->qkv_act, 3 * H);
    SDW_TRY(sdw_attention_act(f->be, b->qkv_act, 3 * H, sdw_act_at(f->be, b->qkv_act, H),
                              sdw_act_at(f->be, b->qkv_act, 2 * H), 3 * H, 1, L, L, c->heads, c->head_dim, false,
                              b->attn));
    /* linear2 reads cat(attention, GELU(mlp)) a row */
    const size_t row = sdw_act_bytes(f->be, (size_t)H + M), head = sdw_act_bytes(f->be, (size_t)H);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < L; r++) memcpy((char *)b->cat + r * row, (const char *)b->attn + r * head, head);
    sdw_to_act_rows(f->be, b->qkv + 3 * H, L, M, st, true, sdw_act_at(f->be, b->cat, (size_t)H), H + M);
    SDW_TRY(sdw_linear_forward_act(f->be, blk->linear2, b->cat, L, b->y, false));
    gated_add(x, b->y, m->gate, L, H);
    return SDW_OK;
}

static sdw_status check_input(const sdw_flux *m, const sdw_flux_input *in)
{
    if (in->n_img < 1 || !in->img || !in->img_ids || !in->y)
        return sdw_fail(SDW_ERR_INVALID_ARG, "the FLUX transformer needs image tokens, their ids and pooled text");
    if (in->n_txt < 0 || (in->n_txt > 0 && (!in->txt || !in->txt_ids)))
        return sdw_fail(SDW_ERR_INVALID_ARG, "the FLUX transformer's text tokens or their ids are missing");
    if ((int64_t)in->n_img + in->n_txt > (int64_t)1 << 24)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%d + %d tokens are too many", in->n_txt, in->n_img);
    if (!isfinite(in->t) || (m->cfg.guidance_embed && !isfinite(in->guidance)))
        return sdw_fail(SDW_ERR_INVALID_ARG, "the FLUX timestep or guidance is not finite");
    return SDW_OK;
}

static sdw_status forward(fwd *f, float *out)
{
    const sdw_flux *m = f->f;
    const sdw_flux_config *c = &m->cfg;
    const int H = c->hidden, M = c->mlp_hidden, L = f->L, nt = f->n_txt;
    char name[64];

    float *silu_vec = sdw_arena_floats(f->arena, (size_t)H);
    if (!silu_vec) return nomem();
    SDW_TRY(vector(f, silu_vec));
    /* Every modulation at once: they depend on vec only. */
    mod3 *mods = sdw_arena_alloc(f->arena, ((size_t)4 * c->depth + c->depth_single + 1) * sizeof *mods);
    if (!mods) return nomem();
    mod3 *dmod = mods, *smod = mods + 4 * (size_t)c->depth, *fmod = smod + c->depth_single;
    for (int i = 0; i < c->depth; i++) {
        SDW_TRY(modulation(f, m->dbl[i].txt.mod, silu_vec, 2, &dmod[4 * i]));
        SDW_TRY(modulation(f, m->dbl[i].img.mod, silu_vec, 2, &dmod[4 * i + 2]));
    }
    for (int i = 0; i < c->depth_single; i++) SDW_TRY(modulation(f, m->sgl[i].mod, silu_vec, 1, &smod[i]));
    /* The final layer's chunks are (shift, scale) without a gate. */
    SDW_TRY(modulation(f, m->final_mod, silu_vec, 1, fmod));

    SDW_TRY(rope_table(f));
    scratch b = {
        sdw_act_alloc(f->be, f->arena, (size_t)L * H), sdw_arena_floats(f->arena, (size_t)L * (3 * H + M)),
        sdw_act_alloc(f->be, f->arena, (size_t)L * 3 * H), sdw_act_alloc(f->be, f->arena, (size_t)L * H),
        sdw_act_alloc(f->be, f->arena, (size_t)L * (H + M)), sdw_arena_floats(f->arena, (size_t)L * H),
    };
    float *x = sdw_arena_floats(f->arena, (size_t)L * H);
    if (!b.h || !b.qkv || !b.qkv_act || !b.attn || !b.cat || !b.y || !x) return nomem();
    float *img = x + (size_t)nt * H;
    if (nt) SDW_TRY(sdw_linear_forward(f->be, m->txt_in, f->in->txt, nt, x));
    SDW_TRY(sdw_linear_forward(f->be, m->img_in, f->in->img, f->n_img, img));
    tap(f, "img_in", img, f->n_img, H);
    tap(f, "txt_in", x, nt, H);

    for (int i = 0; i < c->depth; i++) {
        SDW_TRY(double_block_forward(f, &m->dbl[i], &dmod[4 * i], &dmod[4 * i + 2], x, &b));
        snprintf(name, sizeof name, "double_blocks.%d.img", i);
        tap(f, name, img, f->n_img, H);
        snprintf(name, sizeof name, "double_blocks.%d.txt", i);
        tap(f, name, x, nt, H);
    }
    for (int i = 0; i < c->depth_single; i++) {
        SDW_TRY(single_block_forward(f, &m->sgl[i], &smod[i], x, &b));
        snprintf(name, sizeof name, "single_blocks.%d", i);
        tap(f, name, x, L, H);
    }
    norm_modulate(f, img, f->n_img, H, fmod, b.h);
    SDW_TRY(sdw_linear_forward_act(f->be, m->final_linear, b.h, f->n_img, out, false));
    tap(f, "final_layer", out, f->n_img, c->in_channels);
    return SDW_OK;
}

sdw_status sdw_flux_forward(sdw_backend *be, sdw_arena *arena, const sdw_flux *m, const sdw_flux_input *in,
                            float *out)
{
    SDW_TRY(check_input(m, in));
    fwd f = { be, arena, m, in, in->n_txt, in->n_img, in->n_txt + in->n_img, NULL, NULL };
    sdw_arena_mark m0 = sdw_arena_save(arena);
    sdw_status s = forward(&f, out);
    sdw_arena_restore(arena, m0);
    return s;
}

/* ---------------------------------------------------------------- packing */

/* Where packed value k ([(h/2)(w/2), 4C] row-major) sits in the latent:
 * token (i, j), channel c*4 + di*2 + dj is latent (c, 2i + di, 2j + dj). */
static size_t latent_offset(size_t k, int C, int h, int w)
{
    const size_t token = k / (4 * (size_t)C), i = token / (size_t)(w / 2), j = token % (size_t)(w / 2);
    const int ch = (int)(k % (4 * (size_t)C)), c = ch / 4, di = ch / 2 % 2, dj = ch % 2;
    return ((size_t)c * h + 2 * i + di) * w + 2 * j + dj;
}

void sdw_flux_pack(const float *lat, int C, int h, int w, float *packed)
{
    const size_t n = (size_t)(h / 2) * (w / 2) * 4 * C;
    for (size_t k = 0; k < n; k++) packed[k] = lat[latent_offset(k, C, h, w)];
}

void sdw_flux_unpack(const float *packed, int C, int h, int w, float *lat)
{
    const size_t n = (size_t)(h / 2) * (w / 2) * 4 * C;
    for (size_t k = 0; k < n; k++) lat[latent_offset(k, C, h, w)] = packed[k];
}

void sdw_flux_img_ids(int h, int w, float *ids)
{
    int ph = h / 2, pw = w / 2;
    for (int i = 0; i < ph; i++)
        for (int j = 0; j < pw; j++) {
            float *id = ids + ((size_t)i * pw + j) * 3;
            id[0] = 0;
            id[1] = (float)i;
            id[2] = (float)j;
        }
}
