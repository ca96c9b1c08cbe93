/* clip_text.c: the CLIP text transformer (see clip_text.h). A pre-norm
 * transformer with causal self-attention:
 *   x = tok_emb[ids] + pos_emb
 *   per layer: x += out(attn(qkv(ln1(x)))); x += fc2(act(fc1(ln2(x))))
 *   final layer norm; pooled = x[eos] (@ text_projection). */
#include "models/clip_text.h"
#include "core/error.h"
#include "core/half.h"
#include "models/weights.h"
#include "io/json_file.h"
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Key names of the two layouts, relative to the tower's prefix. */
typedef struct {
    const char *tok, *pos, *layer, *ln1, *ln2, *fc1, *fc2, *out, *final_ln;
} clip_names;

static const clip_names hf_names = {
    "text_model.embeddings.token_embedding.weight", "text_model.embeddings.position_embedding.weight",
    "text_model.encoder.layers.%d.", "layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2", "self_attn.out_proj",
    "text_model.final_layer_norm",
};
static const clip_names openclip_names = {
    "token_embedding.weight", "positional_embedding", "transformer.resblocks.%d.", "ln_1", "ln_2", "mlp.c_fc",
    "mlp.c_proj", "attn.out_proj", "ln_final",
};

static const clip_names *names_of(sdw_clip_layout l) { return l == SDW_CLIP_LAYOUT_HF ? &hf_names : &openclip_names; }

int sdw_clip_text_heads(const char *file, int width)
{
    if (file) {
        char buf[4096], cfg[4200];
        snprintf(buf, sizeof buf, "%s", file);
        snprintf(cfg, sizeof cfg, "%s/config.json", dirname(buf));
        cJSON *j;
        if (sdw_json_load_file(cfg, &j) == SDW_OK) {
            int h = sdw_json_int(j, "num_attention_heads", 0);
            cJSON_Delete(j);
            if (h > 0) return h;
        }
    }
    return width >= 64 ? width / 64 : 2;
}

bool sdw_clip_text_present(const sdw_safetensors *st, const char *prefix, sdw_clip_layout *layout)
{
    char name[512];
    for (int l = SDW_CLIP_LAYOUT_HF; l <= SDW_CLIP_LAYOUT_OPENCLIP; l++) {
        snprintf(name, sizeof name, "%s%s", prefix, names_of((sdw_clip_layout)l)->tok);
        if (sdw_st_find(st, name)) {
            if (layout) *layout = (sdw_clip_layout)l;
            return true;
        }
    }
    return false;
}

int sdw_clip_text_count_layers(const sdw_safetensors *st, const char *prefix, sdw_clip_layout layout)
{
    const clip_names *nm = names_of(layout);
    char layer[256], name[512];
    int n = 0;
    for (;; n++) {
        snprintf(layer, sizeof layer, nm->layer, n);
        snprintf(name, sizeof name, "%s%s%s.weight", prefix, layer, nm->ln1);
        if (!sdw_st_find(st, name)) return n;
    }
}

/* q, k, v of one layer as one [3W, W] weight and [3W] bias: HF keeps three
 * projections, OpenCLIP one in_proj already in that order. */
static sdw_status load_qkv(sdw_wloader *wl, sdw_clip_layout layout, const char *lp, int W, sdw_linear **out)
{
    if (layout == SDW_CLIP_LAYOUT_OPENCLIP) {
        /* OpenCLIP's nn.MultiheadAttention names: in_proj_weight [3W, W], in_proj_bias [3W]. */
        const sdw_st_tensor *t;
        float *d, *bias = NULL;
        SDW_TRY(sdw_wl_find(wl, &t, 2, "%sattn.in_proj_weight", lp));
        if (t->shape[0] != 3 * W || t->shape[1] != W)
            return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s is not [%d, %d]", wl->st->path, t->name, 3 * W, W);
        SDW_TRY(sdw_wl_floats(wl, &bias, 3 * W, "%sattn.in_proj_bias", lp));
        wl->bytes_held -= (size_t)3 * W * sizeof(float);
        sdw_status s = sdw_wl_stage(wl, t, &d);
        if (s == SDW_OK) s = sdw_linear_create(wl->be, W, 3 * W, d, bias, out);
        if (s == SDW_OK) wl->bytes_held += sdw_linear_bytes(*out);
        free(bias);
        return s;
    }
    static const char *const proj[3] = { "q_proj", "k_proj", "v_proj" };
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%sself_attn.", lp);
    return sdw_wl_linear_stack(wl, out, W, W, 3, true, prefix, proj);
}

static sdw_status load_layer(sdw_wloader *wl, const sdw_clip_load_opts *o, const sdw_clip_config *c, int i,
                             sdw_clip_layer *L)
{
    const clip_names *nm = names_of(o->layout);
    char lp[384], rel[128];
    snprintf(rel, sizeof rel, nm->layer, i);
    snprintf(lp, sizeof lp, "%s%s", o->prefix, rel);
    int W = c->width;
    SDW_TRY(sdw_wl_floats(wl, &L->ln1_w, W, "%s%s.weight", lp, nm->ln1));
    SDW_TRY(sdw_wl_floats(wl, &L->ln1_b, W, "%s%s.bias", lp, nm->ln1));
    SDW_TRY(sdw_wl_floats(wl, &L->ln2_w, W, "%s%s.weight", lp, nm->ln2));
    SDW_TRY(sdw_wl_floats(wl, &L->ln2_b, W, "%s%s.bias", lp, nm->ln2));
    SDW_TRY(load_qkv(wl, o->layout, lp, W, &L->qkv));
    SDW_TRY(sdw_wl_linear(wl, &L->out, W, W, true, "%s%s", lp, nm->out));
    SDW_TRY(sdw_wl_linear(wl, &L->fc1, W, c->mlp, true, "%s%s", lp, nm->fc1));
    SDW_TRY(sdw_wl_linear(wl, &L->fc2, c->mlp, W, true, "%s%s", lp, nm->fc2));
    return SDW_OK;
}

/* Names every layer as transformers does, whatever the file's layout, since
 * LoRAs for both OpenCLIP and CLIP towers use those names. */
static sdw_status name_layers(sdw_clip_text *m)
{
    static const char *const qkv[3] = { "q_proj", "k_proj", "v_proj" };
    int W = m->cfg.width;
    char name[128];
    for (int i = 0; i < m->cfg.layers; i++) {
        sdw_clip_layer *L = &m->layer[i];
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "text_model.encoder.layers.%d.self_attn.%s", i, qkv[k]);
            SDW_TRY(sdw_layer_list_add(&m->layers, name, L->qkv, NULL, k * W, W));
        }
        snprintf(name, sizeof name, "text_model.encoder.layers.%d.self_attn.out_proj", i);
        SDW_TRY(sdw_layer_list_add(&m->layers, name, L->out, NULL, 0, W));
        snprintf(name, sizeof name, "text_model.encoder.layers.%d.mlp.fc1", i);
        SDW_TRY(sdw_layer_list_add(&m->layers, name, L->fc1, NULL, 0, m->cfg.mlp));
        snprintf(name, sizeof name, "text_model.encoder.layers.%d.mlp.fc2", i);
        SDW_TRY(sdw_layer_list_add(&m->layers, name, L->fc2, NULL, 0, W));
    }
    return SDW_OK;
}

static sdw_status load_token_embedding(sdw_wloader *wl, sdw_clip_text *m, const sdw_st_tensor *t)
{
    size_t n = (size_t)t->numel;
    float *d;
    SDW_TRY(sdw_wl_stage(wl, t, &d));
    /* Held in the compute precision: in bf16 it is rounded like every other weight. */
    m->tok_emb_bf16 = sdw_backend_precision(wl->be) == SDW_PRECISION_BF16;
    size_t bytes = n * (m->tok_emb_bf16 ? 2 : 4);
    m->tok_emb = malloc(bytes);
    if (!m->tok_emb) return sdw_fail(SDW_ERR_NOMEM, "out of memory for the token embedding");
    sdw_convert_from_f32(m->tok_emb, m->tok_emb_bf16 ? SDW_DTYPE_BF16 : SDW_DTYPE_F32, d, n);
    wl->bytes_held += bytes;
    return SDW_OK;
}

static sdw_status load_projection(sdw_wloader *wl, const sdw_clip_load_opts *o, sdw_clip_text *m)
{
    const sdw_st_tensor *t;
    int W = m->cfg.width;
    if (!o->projection) return SDW_OK;
    if (o->layout == SDW_CLIP_LAYOUT_HF) {
        if (!sdw_wl_has(wl, "%stext_projection.weight", o->prefix)) return SDW_OK;
        SDW_TRY(sdw_wl_find(wl, &t, 2, "%stext_projection.weight", o->prefix));
        m->cfg.proj = (int)t->shape[0];
        return sdw_wl_linear(wl, &m->text_proj, W, m->cfg.proj, false, "%stext_projection", o->prefix);
    }
    if (!sdw_wl_has(wl, "%stext_projection", o->prefix)) return SDW_OK;
    /* OpenCLIP stores P as [width, proj] and computes x @ P: a linear weight is P^T. */
    SDW_TRY(sdw_wl_find(wl, &t, 2, "%stext_projection", o->prefix));
    if (t->shape[0] != W) return sdw_fail(SDW_ERR_FORMAT, "%s: %s is not [%d, proj]", wl->st->path, t->name, W);
    int P = (int)t->shape[1];
    float *d, *wt = malloc((size_t)W * P * sizeof *wt);
    if (!wt) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    sdw_status s = sdw_wl_stage(wl, t, &d);
    if (s == SDW_OK) {
        for (int i = 0; i < W; i++)
            for (int j = 0; j < P; j++) wt[(size_t)j * W + i] = d[(size_t)i * P + j];
        s = sdw_linear_create(wl->be, W, P, wt, NULL, &m->text_proj);
    }
    free(wt);
    if (s == SDW_OK) {
        m->cfg.proj = P;
        wl->bytes_held += sdw_linear_bytes(m->text_proj);
    }
    return s;
}

sdw_status sdw_clip_text_load(sdw_backend *be, const sdw_safetensors *st, const sdw_clip_load_opts *o,
                              sdw_clip_text **out)
{
    *out = NULL;
    const clip_names *nm = names_of(o->layout);
    sdw_clip_text *m = calloc(1, sizeof *m);
    if (!m) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    sdw_wloader wl;
    sdw_wl_init(&wl, be, st);
    sdw_status s;
    const sdw_st_tensor *tok, *pos, *fc1;
    if ((s = sdw_wl_find(&wl, &tok, 2, "%s%s", o->prefix, nm->tok)) != SDW_OK) goto fail;
    if ((s = sdw_wl_find(&wl, &pos, 2, "%s%s", o->prefix, nm->pos)) != SDW_OK) goto fail;
    sdw_clip_config *c = &m->cfg;
    c->vocab = (int)tok->shape[0];
    c->width = (int)tok->shape[1];
    c->ctx = (int)pos->shape[0];
    c->act = o->act;
    c->layers = sdw_clip_text_count_layers(st, o->prefix, o->layout);
    if (o->max_layers > 0 && o->max_layers < c->layers) c->layers = o->max_layers;
    c->heads = o->heads > 0 ? o->heads : c->width / 64;
    if (c->heads < 1) {
        s = sdw_fail(SDW_ERR_FORMAT, "%s: text encoder %s: cannot tell its head count (width %d is no multiple "
                     "of 64): a sidecar yaml or config.json must say it", st->path, o->prefix, c->width);
        goto fail;
    }
    if (pos->shape[1] != c->width || c->layers < 1 || c->heads < 1 || c->width % c->heads) {
        s = sdw_fail(SDW_ERR_FORMAT, "%s: text encoder %s: inconsistent sizes (width %d, %d layers, %d heads)",
                     st->path, o->prefix, c->width, c->layers, c->heads);
        goto fail;
    }
    char rel[128];
    snprintf(rel, sizeof rel, nm->layer, 0);
    if ((s = sdw_wl_find(&wl, &fc1, 2, "%s%s%s.weight", o->prefix, rel, nm->fc1)) != SDW_OK) goto fail;
    c->mlp = (int)fc1->shape[0];

    if ((s = load_token_embedding(&wl, m, tok)) != SDW_OK) goto fail;
    if ((s = sdw_wl_floats(&wl, &m->pos_emb, (int64_t)c->ctx * c->width, "%s%s", o->prefix, nm->pos)) != SDW_OK)
        goto fail;
    m->layer = calloc((size_t)c->layers, sizeof *m->layer);
    if (!m->layer) { s = sdw_fail(SDW_ERR_NOMEM, "out of memory"); goto fail; }
    for (int i = 0; i < c->layers; i++)
        if ((s = load_layer(&wl, o, c, i, &m->layer[i])) != SDW_OK) goto fail;
    if ((s = sdw_wl_floats(&wl, &m->final_ln_w, c->width, "%s%s.weight", o->prefix, nm->final_ln)) != SDW_OK)
        goto fail;
    if ((s = sdw_wl_floats(&wl, &m->final_ln_b, c->width, "%s%s.bias", o->prefix, nm->final_ln)) != SDW_OK)
        goto fail;
    if ((s = load_projection(&wl, o, m)) != SDW_OK) goto fail;
    if ((s = name_layers(m)) != SDW_OK) goto fail;
    m->bytes = wl.bytes_held;
    sdw_wl_done(&wl);
    *out = m;
    return SDW_OK;
fail:
    sdw_wl_done(&wl);
    sdw_clip_text_free(m);
    return s;
}

void sdw_clip_text_free(sdw_clip_text *m)
{
    if (!m) return;
    sdw_layer_list_free(&m->layers);
    if (m->layer) {
        for (int i = 0; i < m->cfg.layers; i++) {
            sdw_clip_layer *L = &m->layer[i];
            free(L->ln1_w); free(L->ln1_b); free(L->ln2_w); free(L->ln2_b);
            sdw_linear_free(L->qkv); sdw_linear_free(L->out);
            sdw_linear_free(L->fc1); sdw_linear_free(L->fc2);
        }
        free(m->layer);
    }
    free(m->tok_emb);
    free(m->pos_emb);
    free(m->final_ln_w);
    free(m->final_ln_b);
    sdw_linear_free(m->text_proj);
    free(m);
}

static void embed(const sdw_clip_text *m, const int32_t *ids, int B, float *x)
{
    int W = m->cfg.width, T = m->cfg.ctx;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *row = x + ((size_t)b * T + t) * W;
            size_t off = (size_t)ids[b * T + t] * W;
            if (m->tok_emb_bf16) sdw_convert_to_f32(row, (const uint16_t *)m->tok_emb + off, SDW_DTYPE_BF16, (size_t)W);
            else memcpy(row, (const float *)m->tok_emb + off, (size_t)W * sizeof *row);
            const float *p = m->pos_emb + (size_t)t * W;
            for (int i = 0; i < W; i++) row[i] += p[i];
        }
}

/* One pre-norm transformer layer, in place on x [rows, W]. */
static sdw_status layer_forward(sdw_backend *be, sdw_arena *arena, const sdw_clip_text *m, const sdw_clip_layer *L,
                                float *x, int B)
{
    const sdw_clip_config *c = &m->cfg;
    int W = c->width, T = c->ctx;
    int64_t rows = (int64_t)B * T;
    sdw_arena_mark mark = sdw_arena_save(arena);
    float *h = sdw_arena_floats(arena, (size_t)rows * W);
    float *qkv = sdw_arena_floats(arena, (size_t)rows * 3 * W);
    float *a = sdw_arena_floats(arena, (size_t)rows * W);
    float *mlp = sdw_arena_floats(arena, (size_t)rows * c->mlp);
    if (!h || !qkv || !a || !mlp) return sdw_fail(SDW_ERR_NOMEM, "out of memory in the text encoder");

    sdw_layer_norm(x, rows, W, L->ln1_w, L->ln1_b, 1e-5f, h);
    SDW_TRY(sdw_linear_forward(be, L->qkv, h, rows, qkv));
    SDW_TRY(sdw_attention(be, qkv, 3 * W, qkv + W, qkv + 2 * W, 3 * W, B, T, T, c->heads, W / c->heads, true, a));
    SDW_TRY(sdw_linear_forward_add(be, L->out, a, rows, x));

    sdw_layer_norm(x, rows, W, L->ln2_w, L->ln2_b, 1e-5f, h);
    SDW_TRY(sdw_linear_forward(be, L->fc1, h, rows, mlp));
    if (c->act == SDW_CLIP_QUICK_GELU) sdw_quick_gelu(mlp, (size_t)rows * c->mlp);
    else sdw_gelu(mlp, (size_t)rows * c->mlp);
    SDW_TRY(sdw_linear_forward_add(be, L->fc2, mlp, rows, x));
    sdw_arena_restore(arena, mark);
    return SDW_OK;
}

static sdw_status pool(sdw_backend *be, sdw_arena *arena, const sdw_clip_text *m, const int32_t *ids, int B,
                       const float *x, float *pooled)
{
    int W = m->cfg.width, T = m->cfg.ctx;
    float *rows = sdw_arena_floats(arena, (size_t)B * W);
    if (!rows) return sdw_fail(SDW_ERR_NOMEM, "out of memory in the text encoder");
    for (int b = 0; b < B; b++) {
        int eos = 0;
        for (int t = 1; t < T; t++)
            if (ids[b * T + t] > ids[b * T + eos]) eos = t;
        sdw_layer_norm(x + ((size_t)b * T + eos) * W, 1, W, m->final_ln_w, m->final_ln_b, 1e-5f,
                       rows + (size_t)b * W);
    }
    if (m->text_proj) return sdw_linear_forward(be, m->text_proj, rows, B, pooled);
    memcpy(pooled, rows, (size_t)B * W * sizeof *rows);
    return SDW_OK;
}

sdw_status sdw_clip_text_forward(sdw_backend *be, sdw_arena *arena, const sdw_clip_text *m, const int32_t *ids,
                                 int B, int skip, bool final_norm, float *hidden, float *pooled)
{
    const sdw_clip_config *c = &m->cfg;
    if (skip < 0 || skip > c->layers) return sdw_fail(SDW_ERR_INVALID_ARG, "clip skip %d out of range", skip);
    for (int i = 0; i < B * c->ctx; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab) return sdw_fail(SDW_ERR_INVALID_ARG, "token id %d out of range", ids[i]);
    int W = c->width;
    int64_t rows = (int64_t)B * c->ctx;
    sdw_arena_mark mark = sdw_arena_save(arena);
    float *x = sdw_arena_floats(arena, (size_t)rows * W);
    if (!x) return sdw_fail(SDW_ERR_NOMEM, "out of memory in the text encoder");
    embed(m, ids, B, x);
    int want = c->layers - skip, run = pooled ? c->layers : want;
    sdw_status s = SDW_OK;
    for (int l = 0; l <= run && s == SDW_OK; l++) {
        if (l == want) {
            if (final_norm) sdw_layer_norm(x, rows, W, m->final_ln_w, m->final_ln_b, 1e-5f, hidden);
            else memcpy(hidden, x, (size_t)rows * W * sizeof *x);
        }
        if (l < run) s = layer_forward(be, arena, m, &m->layer[l], x, B);
    }
    if (s == SDW_OK && pooled) s = pool(be, arena, m, ids, B, x, pooled);
    sdw_arena_restore(arena, mark);
    return s;
}
