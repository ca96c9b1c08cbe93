/* mmdit.c: the SD3 / SD3.5 transformer (see mmdit.h), batch 1, tokens [rows, hidden].
 *
 *   x   = x_embedder(patches of the latents) + centre crop of pos_embed
 *   c   = t_embedder(sinusoid(t)) + y_embedder(pooled); every modulation reads SiLU(c)
 *   buf = cat(context_embedder(context), x)   one buffer: the blocks work on its two halves
 *   joint blocks (ctx, x), each: modulated LN -> qkv [-> q / k RMS norm] -> one attention over
 *       buf -> gated projections; MMDiT-X blocks add an image-only attention (attn2); gated MLPs
 *   final layer (x rows) -> unpatchify -> velocity NCHW
 *
 * Weights are asked for by SAI names; mmdit_names.c says where a diffusers
 * folder keeps each one. */
#include "models/mmdit.h"
#include "core/error.h"
#include "models/act.h"
#include "models/timestep_embed.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LN_EPS 1e-6f    /* the blocks' and final layer's LayerNorm (no affine) */
#define RMS_EPS 1e-6f   /* the q / k RMSNorm */
#define TIME_DIM 256    /* sinusoid width of t */
#define MLP_RATIO 4

typedef struct {
    sdw_linear *qkv;          /* hidden -> 3 hidden, rows q|k|v, each head-major */
    float *ln_q, *ln_k;       /* (head_dim) RMSNorm scales, qk_norm only */
    sdw_linear *proj;         /* hidden -> hidden; NULL in the pre-only context stream */
} attention;

typedef struct {              /* one stream (x or context) of a joint block */
    sdw_linear *mod;          /* hidden -> n_mod hidden: (shift, scale, gate) x (attn, mlp[, attn2]) */
    int n_mod;                /* 6; 9 with attn2; 2 (shift, scale) pre-only */
    attention attn, attn2;    /* attn2: MMDiT-X x_block only */
    sdw_linear *fc1, *fc2;    /* hidden -> 4 hidden, GELU(tanh), -> hidden; NULL pre-only */
} stream;

typedef struct {
    stream x, ctx;
} joint_block;

struct sdw_mmdit {
    sdw_mmdit_config cfg;
    sdw_linear *x_embedder;       /* in_channels p p -> hidden: the patch conv as a linear */
    float *pos_embed;             /* [pos_max, pos_max, hidden] */
    sdw_linear *t0, *t2;          /* 256 -> hidden, SiLU, hidden -> hidden */
    sdw_linear *y0, *y2;          /* pooled_dim -> hidden, SiLU, hidden -> hidden */
    sdw_linear *context_embedder; /* joint_dim -> hidden */
    joint_block *blocks;          /* depth */
    sdw_linear *final_mod;        /* hidden -> 2 hidden: (shift, scale) */
    sdw_linear *final_linear;     /* hidden -> p p out_channels, channel (di p + dj) out + c */
    size_t bytes;
    sdw_layer_list layers;        /* SAI names, and diffusers names of the parts */
};

/* ---------------------------------------------------------------- loading */

/* Modules are asked for by SAI names; a diffusers file answers through
 * mmdit_names.c's map (weights_parts.c does the reading). */
static int diffusers_parts(const void *model, const char *sai, int out_rows, sdw_wl_split *p)
{
    return sdw_mmdit_diffusers_parts(sai, &((const sdw_mmdit *)model)->cfg, out_rows, p);
}

/* The 2x2 stride-2 patch conv [hidden, C, p, p] as a linear over flattened
 * patches (input c p p + di p + dj): its few weights load dense. */
static sdw_status load_patch_embed(sdw_split_loader *sl, sdw_mmdit *m)
{
    const sdw_mmdit_config *c = &m->cfg;
    const int in = c->in_channels * c->patch * c->patch, H = c->hidden;
    sdw_wl_split p[SDW_WL_MAX_SPLITS];
    const sdw_st_tensor *t;
    float *w, *b = NULL;
    int n;
    SDW_TRY(sdw_sl_parts(sl, "x_embedder.proj", H, p, &n));
    SDW_TRY(sdw_wl_find(&sl->wl, &t, 4, "%s%s.weight", sl->prefix, p->name));
    if (t->shape[0] != H || t->shape[1] != c->in_channels || t->shape[2] != c->patch || t->shape[3] != c->patch)
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s is not [%d, %d, %d, %d]", sl->wl.st->path, t->name, H,
                        c->in_channels, c->patch, c->patch);
    sdw_status s = sdw_sl_rows(sl, "x_embedder.proj", p, n, ".bias", H, &b);
    if (s == SDW_OK) s = sdw_wl_stage(&sl->wl, t, &w);
    if (s == SDW_OK) s = sdw_linear_create(sl->wl.be, in, H, w, b, &m->x_embedder);
    free(b);
    if (s == SDW_OK) m->bytes += sdw_linear_bytes(m->x_embedder);
    if (s == SDW_OK) s = sdw_sl_record(sl, "x_embedder.proj", m->x_embedder, H);
    return s;
}

static sdw_status load_pos_embed(sdw_split_loader *sl, sdw_mmdit *m)
{
    const sdw_mmdit_config *c = &m->cfg;
    const int64_t n = (int64_t)c->pos_max * c->pos_max * c->hidden;
    sdw_wl_split p[SDW_WL_MAX_SPLITS];
    int np;
    SDW_TRY(sdw_sl_parts(sl, "pos_embed", 1, p, &np));
    SDW_TRY(sdw_wl_floats(&sl->wl, &m->pos_embed, n, "%s%s", sl->prefix, p->name));
    m->bytes += (size_t)n * sizeof(float);
    return SDW_OK;
}

/* which: "x_block.attn", "x_block.attn2" or "context_block.attn". */
static sdw_status load_attention(sdw_split_loader *sl, const sdw_mmdit_config *c, attention *a, int i,
                                 const char *which, bool proj)
{
    const int H = c->hidden;
    SDW_TRY(sdw_sl_linear(sl, &a->qkv, H, 3 * H, true, "joint_blocks.%d.%s.qkv", i, which));
    if (proj) SDW_TRY(sdw_sl_linear(sl, &a->proj, H, H, true, "joint_blocks.%d.%s.proj", i, which));
    if (!c->qk_norm) return SDW_OK;
    SDW_TRY(sdw_sl_vector(sl, &a->ln_q, c->head_dim, "joint_blocks.%d.%s.ln_q", i, which));
    return sdw_sl_vector(sl, &a->ln_k, c->head_dim, "joint_blocks.%d.%s.ln_k", i, which);
}

/* One stream: "x_block" or "context_block"; pre_only: the last block's context. */
static sdw_status load_stream(sdw_split_loader *sl, const sdw_mmdit_config *c, stream *s, int i, const char *which,
                              bool dual, bool pre_only)
{
    const int H = c->hidden;
    char name[64];
    s->n_mod = pre_only ? 2 : dual ? 9 : 6;
    SDW_TRY(sdw_sl_linear(sl, &s->mod, H, s->n_mod * H, true, "joint_blocks.%d.%s.adaLN_modulation.1", i, which));
    snprintf(name, sizeof name, "%s.attn", which);
    SDW_TRY(load_attention(sl, c, &s->attn, i, name, !pre_only));
    if (dual) {
        snprintf(name, sizeof name, "%s.attn2", which);
        SDW_TRY(load_attention(sl, c, &s->attn2, i, name, true));
    }
    if (pre_only) return SDW_OK;
    SDW_TRY(sdw_sl_linear(sl, &s->fc1, H, MLP_RATIO * H, true, "joint_blocks.%d.%s.mlp.fc1", i, which));
    return sdw_sl_linear(sl, &s->fc2, MLP_RATIO * H, H, true, "joint_blocks.%d.%s.mlp.fc2", i, which);
}

static sdw_status load_all(sdw_split_loader *sl, void *model)
{
    sdw_mmdit *m = model;
    const sdw_mmdit_config *c = &m->cfg;
    const int H = c->hidden;
    SDW_TRY(load_patch_embed(sl, m));
    SDW_TRY(load_pos_embed(sl, m));
    SDW_TRY(sdw_sl_linear(sl, &m->t0, TIME_DIM, H, true, "t_embedder.mlp.0"));
    SDW_TRY(sdw_sl_linear(sl, &m->t2, H, H, true, "t_embedder.mlp.2"));
    SDW_TRY(sdw_sl_linear(sl, &m->y0, c->pooled_dim, H, true, "y_embedder.mlp.0"));
    SDW_TRY(sdw_sl_linear(sl, &m->y2, H, H, true, "y_embedder.mlp.2"));
    SDW_TRY(sdw_sl_linear(sl, &m->context_embedder, c->joint_dim, H, true, "context_embedder"));
    if (!(m->blocks = calloc((size_t)c->depth, sizeof *m->blocks)))
        return sdw_fail(SDW_ERR_NOMEM, "out of memory loading the SD3 transformer");
    for (int i = 0; i < c->depth; i++) {
        SDW_TRY(load_stream(sl, c, &m->blocks[i].x, i, "x_block", c->dual[i], false));
        SDW_TRY(load_stream(sl, c, &m->blocks[i].ctx, i, "context_block", false, i == c->depth - 1));
    }
    SDW_TRY(sdw_sl_linear(sl, &m->final_mod, H, 2 * H, true, "final_layer.adaLN_modulation.1"));
    return sdw_sl_linear(sl, &m->final_linear, H, c->patch * c->patch * c->out_channels, true, "final_layer.linear");
}

static bool config_ok(const sdw_mmdit_config *c)
{
    return c->patch >= 1 && c->patch <= 16 && c->in_channels > 0 && c->out_channels > 0 && c->depth >= 1 &&
           c->depth <= SDW_MMDIT_MAX_DEPTH && c->heads > 0 && c->head_dim > 0 &&
           (int64_t)c->heads * c->head_dim == c->hidden && c->hidden <= 65536 && c->pos_max >= 1 &&
           c->pos_max <= 4096 && c->joint_dim > 0 && c->pooled_dim > 0 &&
           (int64_t)c->in_channels * c->patch * c->patch <= 65536 &&
           (int64_t)c->out_channels * c->patch * c->patch <= 65536;
}

static void drop(void *m) { sdw_mmdit_free(m); }

sdw_status sdw_mmdit_load(sdw_backend *be, const sdw_safetensors *st, const char *prefix, sdw_name_layout names,
                          const sdw_mmdit_config *c, sdw_mmdit **out)
{
    *out = NULL;
    if (!config_ok(c)) return sdw_fail(SDW_ERR_UNSUPPORTED, "unsupported SD3 transformer configuration");
    sdw_mmdit *m = calloc(1, sizeof *m);
    if (!m) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    m->cfg = *c;
    sdw_split_loader sl = { .prefix = prefix, .split = names == SDW_NAMES_DIFFUSERS, .splits = diffusers_parts,
                            .vector_suffix = ".weight", .what = "SD3 transformer", .model = m, .layers = &m->layers,
                            .bytes = &m->bytes };
    SDW_TRY(sdw_sl_load(&sl, be, st, load_all, drop));
    *out = m;
    return SDW_OK;
}

static void free_attention(attention *a)
{
    sdw_linear_free(a->qkv);
    sdw_linear_free(a->proj);
    free(a->ln_q);
    free(a->ln_k);
}

static void free_stream(stream *s)
{
    sdw_linear_free(s->mod);
    free_attention(&s->attn);
    free_attention(&s->attn2);
    sdw_linear_free(s->fc1);
    sdw_linear_free(s->fc2);
}

void sdw_mmdit_free(sdw_mmdit *m)
{
    if (!m) return;
    for (int i = 0; m->blocks && i < m->cfg.depth; i++) {
        free_stream(&m->blocks[i].x);
        free_stream(&m->blocks[i].ctx);
    }
    free(m->blocks);
    free(m->pos_embed);
    sdw_linear_free(m->x_embedder); sdw_linear_free(m->t0); sdw_linear_free(m->t2);
    sdw_linear_free(m->y0); sdw_linear_free(m->y2); sdw_linear_free(m->context_embedder);
    sdw_linear_free(m->final_mod); sdw_linear_free(m->final_linear);
    sdw_layer_list_free(&m->layers);
    free(m);
}

size_t sdw_mmdit_bytes(const sdw_mmdit *m) { return m ? m->bytes : 0; }
const sdw_mmdit_config *sdw_mmdit_get_config(const sdw_mmdit *m) { return &m->cfg; }
const sdw_layer_list *sdw_mmdit_layers(const sdw_mmdit *m) { return &m->layers; }

/* ---------------------------------------------------------------- forward */

typedef struct {
    sdw_backend *be;
    sdw_arena *arena;
    const sdw_mmdit *m;
    const sdw_mmdit_input *in;
    int hp, wp;                /* patch grid */
    int n_ctx, n_img, L;       /* L = n_ctx + n_img, context rows first */
} fwd;

/* Scratch of one forward. Between a norm and the projection that ends its
 * branch everything is an activation (sdw_act_bytes: bf16 in BF16
 * precision, written so by the op before and read so by the one after);
 * the residual stream and the projections' outputs are f32. */
typedef struct {
    void *h;       /* [L, hidden] modulated LN of both streams */
    void *h2;      /* [n_img, hidden] attn2's input (MMDiT-X) */
    float *qkv;    /* [L, 3 hidden] f32, for the q / k RMS norms */
    void *qkv_act; /* [L, 3 hidden] what the attention reads */
    void *attn;    /* [L, hidden] attention output */
    void *mlp;     /* [L, 4 hidden] */
    float *y;      /* [L, hidden] an output before its gated residual */
} scratch;

static void tap(const fwd *f, const char *name, const float *x, int rows, int cols)
{
    if (f->in->tap) f->in->tap(f->in->tap_user, name, x, rows, cols);
}

static sdw_status nomem(void) { return sdw_fail(SDW_ERR_NOMEM, "out of memory in the SD3 transformer"); }

/* y = l(x) over rows tokens of an activation; nothing to do for none (a
 * context-free call). */
static sdw_status lin(const fwd *f, const sdw_linear *l, const void *x, int rows, float *y)
{
    return rows ? sdw_linear_forward_act(f->be, l, x, rows, y, false) : SDW_OK;
}

/* A modulation's chunks, each [hidden], in SAI's order. The scales are
 * stored as 1 + scale: the LayerNorm's gamma. gate is NULL for a
 * (shift, scale) pair. */
typedef struct {
    const float *shift, *scale1, *gate;
} mod3;

/* l(SiLU(c)) split into groups of (shift, 1 + scale[, gate]) chunks. */
static sdw_status modulation(const fwd *f, const sdw_linear *l, const float *silu_c, mod3 *m)
{
    const int H = f->m->cfg.hidden, n = sdw_linear_out(l) / H;
    float *v = sdw_arena_floats(f->arena, (size_t)n * H);
    if (!v) return nomem();
    SDW_TRY(sdw_linear_forward(f->be, l, silu_c, 1, v));
    for (int g = 0; 3 * g < n; g++) {
        float *base = v + (size_t)3 * g * H;
        for (int c = 0; c < H; c++) base[H + c] += 1.0f;
        m[g] = (mod3){ base, base + H, 3 * g + 2 < n ? base + 2 * H : NULL };
    }
    return SDW_OK;
}

/* y = (1 + scale) * LayerNorm(x) + shift (a LayerNorm with that gamma and
 * beta), as an activation. */
static void norm_modulate(const fwd *f, const float *x, int rows, const mod3 *m, void *y)
{
    sdw_layer_norm_act(f->be, x, rows, f->m->cfg.hidden, m->scale1, m->shift, LN_EPS, y);
}

/* x += gate * y, gate broadcast over rows. */
static void gated_add(float *x, const float *y, const float *gate, int64_t rows, int H)
{
#pragma omp parallel for schedule(static) if (rows * H > 65536)
    for (int64_t r = 0; r < rows; r++)
        for (int c = 0; c < H; c++) x[r * H + c] += gate[c] * y[r * H + c];
}

/* In place on q and k of rows tokens (row stride 3 hidden): RMSNorm per
 * 64-channel head with the learned scales. */
static void qk_norm(const fwd *f, float *qkv, int rows, const attention *a)
{
    const sdw_mmdit_config *c = &f->m->cfg;
    const int D = c->head_dim, H = c->hidden;
#pragma omp parallel for schedule(static) if ((int64_t)rows * H > 65536)
    for (int r = 0; r < rows; r++)
        for (int qk = 0; qk < 2; qk++) {
            const float *w = qk ? a->ln_k : a->ln_q;
            for (int h = 0; h < c->heads; h++) {
                float *x = qkv + (size_t)r * 3 * H + (size_t)qk * H + (size_t)h * D, ss = 0;
                for (int d = 0; d < D; d++) ss += x[d] * x[d];
                const float rrms = 1.0f / sqrtf(ss / (float)D + RMS_EPS);
                for (int d = 0; d < D; d++) x[d] = x[d] * rrms * w[d];
            }
        }
}

/* s->qkv_act rows r0.. = a.qkv(h) of rows tokens, q and k RMS-normed
 * where the model has the norms (in f32, through s->qkv). */
static sdw_status project_qkv(const fwd *f, const attention *a, const void *h, int r0, int rows, const scratch *s)
{
    const int64_t st = 3 * (int64_t)f->m->cfg.hidden;
    if (!rows) return SDW_OK;
    void *dst = sdw_act_at(f->be, s->qkv_act, (size_t)r0 * st);
    if (!f->m->cfg.qk_norm) return sdw_linear_forward_to_act(f->be, a->qkv, h, rows, dst);
    float *x = s->qkv + r0 * st;
    SDW_TRY(sdw_linear_forward_act(f->be, a->qkv, h, rows, x, false));
    qk_norm(f, x, rows, a);
    sdw_to_act(f->be, x, (size_t)rows * st, dst);
    return SDW_OK;
}

/* s->attn rows q0.. = softmax(q k^T / sqrt(d)) v of the qkv rows [q0,
 * q0 + nq) against all n keys of qkv. */
static sdw_status attend(const fwd *f, int q0, int nq, int n, const scratch *s)
{
    const sdw_mmdit_config *c = &f->m->cfg;
    const int64_t st = 3 * (int64_t)c->hidden;
    void *qkv = s->qkv_act;
    return sdw_attention_act(f->be, sdw_act_at(f->be, qkv, q0 * st), st, sdw_act_at(f->be, qkv, c->hidden),
                             sdw_act_at(f->be, qkv, 2 * c->hidden), st, 1, nq, n, c->heads, c->head_dim, false,
                             sdw_act_at(f->be, s->attn, (size_t)q0 * c->hidden));
}

/* x += gate_mlp * fc2(GELU(fc1(LN_mod(x)))) over rows tokens of one stream. */
static sdw_status stream_mlp(const fwd *f, const stream *st, const mod3 *mm, float *x, int rows, const scratch *s)
{
    const int H = f->m->cfg.hidden;
    if (!rows) return SDW_OK;
    norm_modulate(f, x, rows, mm, s->h);
    SDW_TRY(sdw_linear_forward_gelu_act(f->be, st->fc1, s->h, rows, s->mlp));
    SDW_TRY(lin(f, st->fc2, s->mlp, rows, s->y));
    gated_add(x, s->y, mm->gate, rows, H);
    return SDW_OK;
}

/* MMDiT-X: x += gate_msa2 * attn2.proj(self-attention of x's tokens on h2). */
static sdw_status attention2(const fwd *f, const stream *st, const mod3 *m2, float *img, const scratch *s)
{
    const int H = f->m->cfg.hidden, ni = f->n_img;
    SDW_TRY(project_qkv(f, &st->attn2, s->h2, 0, ni, s));
    SDW_TRY(attend(f, 0, ni, ni, s));
    SDW_TRY(lin(f, st->attn2.proj, s->attn, ni, s->y));
    gated_add(img, s->y, m2->gate, ni, H);
    return SDW_OK;
}

/* Joint block on buf = cat(ctx, x); SiLU(c) in silu_c. */
static sdw_status joint_block_forward(const fwd *f, const joint_block *b, const float *silu_c, float *buf,
                                      const scratch *s)
{
    const int H = f->m->cfg.hidden, nc = f->n_ctx, ni = f->n_img;
    const bool pre_only = !b->ctx.attn.proj, dual = b->x.attn2.qkv != NULL;
    float *img = buf + (size_t)nc * H;
    mod3 mc[3], mx[3];
    SDW_TRY(modulation(f, b->ctx.mod, silu_c, mc));
    SDW_TRY(modulation(f, b->x.mod, silu_c, mx));
    void *h_img = sdw_act_at(f->be, s->h, (size_t)nc * H);
    if (nc) norm_modulate(f, buf, nc, &mc[0], s->h);
    norm_modulate(f, img, ni, &mx[0], h_img);
    if (dual) norm_modulate(f, img, ni, &mx[2], s->h2);   /* the same LN(x), before the residuals */
    SDW_TRY(project_qkv(f, &b->ctx.attn, s->h, 0, nc, s));
    SDW_TRY(project_qkv(f, &b->x.attn, h_img, nc, ni, s));
    /* Pre-only, the context's queries are never used: only x's attend. */
    const int q0 = pre_only ? nc : 0;
    SDW_TRY(attend(f, q0, f->L - q0, f->L, s));
    if (!pre_only && nc) {
        SDW_TRY(lin(f, b->ctx.attn.proj, s->attn, nc, s->y));
        gated_add(buf, s->y, mc[0].gate, nc, H);
    }
    SDW_TRY(lin(f, b->x.attn.proj, sdw_act_at(f->be, s->attn, (size_t)nc * H), ni, s->y));
    gated_add(img, s->y, mx[0].gate, ni, H);
    if (dual) SDW_TRY(attention2(f, &b->x, &mx[2], img, s));
    SDW_TRY(stream_mlp(f, &b->x, &mx[1], img, ni, s));
    if (!pre_only) SDW_TRY(stream_mlp(f, &b->ctx, &mc[1], buf, nc, s));
    return SDW_OK;
}

/* out [hidden] = l2(SiLU(l0(x))). */
static sdw_status embed(const fwd *f, const sdw_linear *l0, const sdw_linear *l2, const float *x, float *out)
{
    const int H = f->m->cfg.hidden;
    float *h = sdw_arena_floats(f->arena, (size_t)H);
    if (!h) return nomem();
    SDW_TRY(sdw_linear_forward(f->be, l0, x, 1, h));
    sdw_silu(h, (size_t)H);
    return sdw_linear_forward(f->be, l2, h, 1, out);
}

/* SiLU(c), c = t_embedder(sinusoid(t)) + y_embedder(pooled): what every modulation reads. */
static sdw_status conditioning(const fwd *f, float *silu_c)
{
    const sdw_mmdit *m = f->m;
    const int H = m->cfg.hidden;
    float *temb = sdw_arena_floats(f->arena, TIME_DIM), *e = sdw_arena_floats(f->arena, (size_t)H);
    if (!temb || !e) return nomem();
    sdw_time_sinusoid(f->in->t, TIME_DIM, temb);
    SDW_TRY(embed(f, m->t0, m->t2, temb, silu_c));
    SDW_TRY(embed(f, m->y0, m->y2, f->in->pooled, e));
    sdw_add(silu_c, silu_c, e, (size_t)H);
    tap(f, "temb", silu_c, 1, H);
    sdw_silu(silu_c, (size_t)H);
    return SDW_OK;
}

/* img = x_embedder(patches) + pos_embed's centre crop [hp, wp]. */
static sdw_status patch_embed(const fwd *f, float *img)
{
    const sdw_mmdit_config *c = &f->m->cfg;
    const int p = c->patch, C = c->in_channels, H = c->hidden, w = f->in->w, h = f->in->h, K = C * p * p;
    float *patches = sdw_arena_floats(f->arena, (size_t)f->n_img * K);
    if (!patches) return nomem();
    for (int i = 0; i < f->hp; i++)
        for (int j = 0; j < f->wp; j++)
            for (int ch = 0; ch < C; ch++)
                for (int di = 0; di < p; di++)
                    for (int dj = 0; dj < p; dj++)
                        patches[((size_t)i * f->wp + j) * K + (size_t)ch * p * p + di * p + dj] =
                            f->in->x[((size_t)ch * h + (size_t)i * p + di) * w + (size_t)j * p + dj];
    SDW_TRY(sdw_linear_forward(f->be, f->m->x_embedder, patches, f->n_img, img));
    const int top = (c->pos_max - f->hp) / 2, left = (c->pos_max - f->wp) / 2;
    for (int i = 0; i < f->hp; i++)
        sdw_add(img + (size_t)i * f->wp * H, img + (size_t)i * f->wp * H,
                f->m->pos_embed + ((size_t)(top + i) * c->pos_max + left) * H, (size_t)f->wp * H);
    tap(f, "pos_embed", img, f->n_img, H);
    return SDW_OK;
}

/* Final layer's [n_img, p p out] (channel (di p + dj) out + c) -> NCHW [out, h, w]. */
static void unpatchify(const fwd *f, const float *y, float *out)
{
    const sdw_mmdit_config *c = &f->m->cfg;
    const int p = c->patch, O = c->out_channels, w = f->in->w, h = f->in->h;
    for (int i = 0; i < f->hp; i++)
        for (int j = 0; j < f->wp; j++)
            for (int di = 0; di < p; di++)
                for (int dj = 0; dj < p; dj++)
                    for (int ch = 0; ch < O; ch++)
                        out[((size_t)ch * h + (size_t)i * p + di) * w + (size_t)j * p + dj] =
                            y[((size_t)i * f->wp + j) * p * p * O + (size_t)(di * p + dj) * O + ch];
}

static sdw_status check_input(const sdw_mmdit *m, const sdw_mmdit_input *in)
{
    const sdw_mmdit_config *c = &m->cfg;
    const int p = c->patch, most = p * c->pos_max;
    if (!in->x || !in->pooled || in->h < p || in->w < p)
        return sdw_fail(SDW_ERR_INVALID_ARG, "the SD3 transformer needs latents and pooled text");
    if (in->h % p || in->w % p)
        return sdw_fail(SDW_ERR_INVALID_ARG, "SD3 latents %dx%d are not multiples of the patch size %d", in->h,
                        in->w, p);
    if (in->h > most || in->w > most)
        return sdw_fail(SDW_ERR_INVALID_ARG, "a %dx%d image (%dx%d latent) is larger than this SD3 transformer's "
                        "position table allows: at most %dx%d pixels (%dx%d latent)", 8 * in->w, 8 * in->h, in->w,
                        in->h, 8 * most, 8 * most, most, most);
    if (in->n_ctx < 0 || (in->n_ctx > 0 && !in->context) || in->n_ctx > 1 << 20)
        return sdw_fail(SDW_ERR_INVALID_ARG, "the SD3 transformer's text states are missing or too many (%d)",
                        in->n_ctx);
    if (!isfinite(in->t)) return sdw_fail(SDW_ERR_INVALID_ARG, "the SD3 timestep is not finite");
    return SDW_OK;
}

static sdw_status forward(fwd *f, float *out)
{
    const sdw_mmdit *m = f->m;
    const sdw_mmdit_config *c = &m->cfg;
    const int H = c->hidden, L = f->L, nc = f->n_ctx, ni = f->n_img;
    char name[64];

    float *silu_c = sdw_arena_floats(f->arena, (size_t)H);
    float *buf = sdw_arena_floats(f->arena, (size_t)L * H);
    scratch s = {
        sdw_act_alloc(f->be, f->arena, (size_t)L * H),
        sdw_act_alloc(f->be, f->arena, (size_t)ni * H),
        c->qk_norm ? sdw_arena_floats(f->arena, (size_t)L * 3 * H) : NULL,
        sdw_act_alloc(f->be, f->arena, (size_t)L * 3 * H),
        sdw_act_alloc(f->be, f->arena, (size_t)L * H),
        sdw_act_alloc(f->be, f->arena, (size_t)L * MLP_RATIO * H),
        sdw_arena_floats(f->arena, (size_t)L * H),
    };
    if (!silu_c || !buf || !s.h || !s.h2 || (c->qk_norm && !s.qkv) || !s.qkv_act || !s.attn || !s.mlp || !s.y)
        return nomem();
    float *img = buf + (size_t)nc * H;
    SDW_TRY(patch_embed(f, img));
    SDW_TRY(conditioning(f, silu_c));
    if (nc) SDW_TRY(sdw_linear_forward(f->be, m->context_embedder, f->in->context, nc, buf));
    tap(f, "context_embedder", buf, nc, H);

    for (int i = 0; i < c->depth; i++) {
        if (f->in->skip && f->in->skip[i]) continue;
        sdw_arena_mark mk = sdw_arena_save(f->arena);
        SDW_TRY(joint_block_forward(f, &m->blocks[i], silu_c, buf, &s));
        sdw_arena_restore(f->arena, mk);
        snprintf(name, sizeof name, "block%d.hidden_states", i);
        tap(f, name, img, ni, H);
        if (i == c->depth - 1) continue;   /* the pre-only block returns no context */
        snprintf(name, sizeof name, "block%d.encoder_hidden_states", i);
        tap(f, name, buf, nc, H);
    }
    mod3 fm;
    SDW_TRY(modulation(f, m->final_mod, silu_c, &fm));
    norm_modulate(f, img, ni, &fm, s.h);
    if (f->in->tap) { /* the f32 values, for a test's comparison */
        sdw_layer_norm(img, ni, H, fm.scale1, fm.shift, LN_EPS, s.y);
        tap(f, "norm_out", s.y, ni, H);
    }
    const int P = c->patch * c->patch * c->out_channels;
    float *y = sdw_arena_floats(f->arena, (size_t)ni * P);
    if (!y) return nomem();
    SDW_TRY(sdw_linear_forward_act(f->be, m->final_linear, s.h, ni, y, false));
    unpatchify(f, y, out);
    return SDW_OK;
}

sdw_status sdw_mmdit_forward(sdw_backend *be, sdw_arena *arena, const sdw_mmdit *m, const sdw_mmdit_input *in,
                             float *out)
{
    SDW_TRY(check_input(m, in));
    const int hp = in->h / m->cfg.patch, wp = in->w / m->cfg.patch;
    fwd f = { be, arena, m, in, hp, wp, in->n_ctx, hp * wp, in->n_ctx + hp * wp };
    sdw_arena_mark m0 = sdw_arena_save(arena);
    sdw_status s = forward(&f, out);
    sdw_arena_restore(arena, m0);
    return s;
}
