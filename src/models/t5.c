/* t5.c: the T5 v1.1 encoder (see t5.h), as in Raffel et al. 2020 with the
 * v1.1 changes (gated-GELU feed-forward, no biases, untied embedding):
 *   x = shared[ids]
 *   bias[h, i, j] = rel_bias[bucket(j - i), h]      block 0's table, every layer
 *   per block: x += o(attn(q, k, v of rms(x)) + bias)       no 1/sqrt(d_kv)
 *              x += wo(gelu_tanh(wi_0 rms(x)) * wi_1 rms(x))
 *   out = rms(x)
 * RMS norms without mean subtraction or bias, eps 1e-6. Every position
 * attends to every other, padding included (FLUX and SD3 pass no mask). */
#include "models/t5.h"
#include "core/error.h"
#include "core/tensor.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T5_EPS 1e-6f
#define T5_MAX_DISTANCE 128 /* transformers' relative_attention_max_distance; not in the weights */

typedef struct {
    float *ln1;       /* (d_model) RMS norm weight before self-attention */
    sdw_linear *qkv[3]; /* d_model -> heads * d_kv each: q, k, v, no bias (three layers, so compact
                           weights are read where the file holds them; T5 runs once a prompt) */
    sdw_linear *o;    /* heads * d_kv -> d_model */
    float *ln2;       /* (d_model) RMS norm weight before the feed-forward */
    sdw_linear *wi_0; /* d_model -> d_ff, through GELU: the gate */
    sdw_linear *wi_1; /* d_model -> d_ff, linear */
    sdw_linear *wo;   /* d_ff -> d_model */
} t5_block;

struct sdw_t5 {
    sdw_t5_config cfg;
    void *shared;          /* (vocab, d_model) token embedding, f32 or bf16 (the compute precision) */
    bool shared_bf16;
    float *rel_bias;       /* (buckets, heads) block 0's relative_attention_bias */
    t5_block *block;       /* (layers) */
    float *final_ln;       /* (d_model) */
    sdw_layer_list layers; /* the linears under transformers' names, for LoRA */
    size_t bytes;          /* weights held */
};

/* ---------------------------------------------------------------- loading */

/* The token embedding's name: shared.weight, or encoder.embed_tokens.weight
 * in files that keep only the tied copy. NULL when neither is there. */
static const sdw_st_tensor *find_embedding(const sdw_safetensors *st, const char *prefix)
{
    static const char *const names[2] = { "shared.weight", "encoder.embed_tokens.weight" };
    char name[512];
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, names[i]);
        const sdw_st_tensor *t = sdw_st_find(st, name);
        if (t) return t;
    }
    return NULL;
}

bool sdw_t5_present(const sdw_safetensors *st, const char *prefix)
{
    char name[512];
    snprintf(name, sizeof name, "%sencoder.block.0.layer.0.SelfAttention.q.weight", prefix);
    return find_embedding(st, prefix) && sdw_st_find(st, name);
}

static int count_blocks(const sdw_safetensors *st, const char *prefix)
{
    char name[512];
    int n = 0;
    for (;; n++) {
        snprintf(name, sizeof name, "%sencoder.block.%d.layer.0.SelfAttention.q.weight", prefix, n);
        if (!sdw_st_find(st, name)) return n;
    }
}

/* Sizes from the shapes: heads from the position bias table, d_kv from q,
 * d_ff from wi_0. */
static sdw_status read_config(sdw_wloader *wl, const char *prefix, sdw_t5_config *c)
{
    const sdw_st_tensor *emb = find_embedding(wl->st, prefix), *rb, *q, *wi;
    if (!emb || emb->ndim != 2)
        return sdw_fail(SDW_ERR_FORMAT, "%s: %sshared.weight is not [vocab, d_model]", wl->st->path, prefix);
    c->vocab = (int)emb->shape[0];
    c->d_model = (int)emb->shape[1];
    SDW_TRY(sdw_wl_find(wl, &rb, 2, "%sencoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                        prefix));
    c->buckets = (int)rb->shape[0];
    c->heads = (int)rb->shape[1];
    SDW_TRY(sdw_wl_find(wl, &q, 2, "%sencoder.block.0.layer.0.SelfAttention.q.weight", prefix));
    SDW_TRY(sdw_wl_find(wl, &wi, 2, "%sencoder.block.0.layer.1.DenseReluDense.wi_0.weight", prefix));
    c->d_ff = (int)wi->shape[0];
    c->layers = count_blocks(wl->st, prefix);
    c->max_distance = T5_MAX_DISTANCE;
    if (c->heads < 1 || q->shape[0] % c->heads || c->buckets < 4 || c->buckets % 2)
        return sdw_fail(SDW_ERR_FORMAT, "%s: T5 %s: %s [%lld, %lld] does not fit %lld heads and %d buckets",
                        wl->st->path, prefix, q->name, (long long)q->shape[0], (long long)q->shape[1],
                        (long long)rb->shape[1], c->buckets);
    c->d_kv = (int)(q->shape[0] / c->heads);
    return SDW_OK;
}

static sdw_status load_block(sdw_wloader *wl, const char *prefix, const sdw_t5_config *c, int i, t5_block *B)
{
    const int D = c->d_model, inner = c->heads * c->d_kv;
    char attn[448], ff[448];
    snprintf(attn, sizeof attn, "%sencoder.block.%d.layer.0.", prefix, i);
    snprintf(ff, sizeof ff, "%sencoder.block.%d.layer.1.", prefix, i);
    SDW_TRY(sdw_wl_floats(wl, &B->ln1, D, "%slayer_norm.weight", attn));
    for (int k = 0; k < 3; k++)
        SDW_TRY(sdw_wl_linear(wl, &B->qkv[k], D, inner, false, "%sSelfAttention.%c", attn, "qkv"[k]));
    SDW_TRY(sdw_wl_linear(wl, &B->o, inner, D, false, "%sSelfAttention.o", attn));
    SDW_TRY(sdw_wl_floats(wl, &B->ln2, D, "%slayer_norm.weight", ff));
    SDW_TRY(sdw_wl_linear(wl, &B->wi_0, D, c->d_ff, false, "%sDenseReluDense.wi_0", ff));
    SDW_TRY(sdw_wl_linear(wl, &B->wi_1, D, c->d_ff, false, "%sDenseReluDense.wi_1", ff));
    SDW_TRY(sdw_wl_linear(wl, &B->wo, c->d_ff, D, false, "%sDenseReluDense.wo", ff));
    return SDW_OK;
}

/* Names every linear as transformers does, without the file's prefix: the
 * names LoRAs address (kohya's lora_te2_encoder_block_0_layer_0_SelfAttention_q). */
static sdw_status name_layers(sdw_t5 *t)
{
    static const char *const qkv[3] = { "q", "k", "v" };
    const int inner = t->cfg.heads * t->cfg.d_kv;
    char name[128];
    for (int i = 0; i < t->cfg.layers; i++) {
        t5_block *B = &t->block[i];
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "encoder.block.%d.layer.0.SelfAttention.%s", i, qkv[k]);
            SDW_TRY(sdw_layer_list_add(&t->layers, name, B->qkv[k], NULL, 0, inner));
        }
        snprintf(name, sizeof name, "encoder.block.%d.layer.0.SelfAttention.o", i);
        SDW_TRY(sdw_layer_list_add(&t->layers, name, B->o, NULL, 0, t->cfg.d_model));
        snprintf(name, sizeof name, "encoder.block.%d.layer.1.DenseReluDense.wi_0", i);
        SDW_TRY(sdw_layer_list_add(&t->layers, name, B->wi_0, NULL, 0, t->cfg.d_ff));
        snprintf(name, sizeof name, "encoder.block.%d.layer.1.DenseReluDense.wi_1", i);
        SDW_TRY(sdw_layer_list_add(&t->layers, name, B->wi_1, NULL, 0, t->cfg.d_ff));
        snprintf(name, sizeof name, "encoder.block.%d.layer.1.DenseReluDense.wo", i);
        SDW_TRY(sdw_layer_list_add(&t->layers, name, B->wo, NULL, 0, t->cfg.d_model));
    }
    return SDW_OK;
}

/* Held in the compute precision, as every other weight: half the bytes in
 * bf16 (the real table is 32128 x 4096). */
static sdw_status load_embedding(sdw_wloader *wl, const char *prefix, sdw_t5 *t)
{
    const sdw_st_tensor *e = find_embedding(wl->st, prefix);
    const size_t n = (size_t)e->numel;
    float *d;
    SDW_TRY(sdw_wl_stage(wl, e, &d));
    t->shared_bf16 = sdw_backend_precision(wl->be) == SDW_PRECISION_BF16;
    const size_t bytes = n * (t->shared_bf16 ? 2 : 4);
    if (!(t->shared = malloc(bytes))) return sdw_fail(SDW_ERR_NOMEM, "out of memory for the T5 token embedding");
    sdw_convert_from_f32(t->shared, t->shared_bf16 ? SDW_DTYPE_BF16 : SDW_DTYPE_F32, d, n);
    wl->bytes_held += bytes;
    return SDW_OK;
}

static sdw_status load_all(sdw_wloader *wl, const char *prefix, sdw_t5 *t)
{
    sdw_t5_config *c = &t->cfg;
    SDW_TRY(read_config(wl, prefix, c));
    SDW_TRY(load_embedding(wl, prefix, t));
    SDW_TRY(sdw_wl_floats(wl, &t->rel_bias, (int64_t)c->buckets * c->heads,
                          "%sencoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", prefix));
    if (!(t->block = calloc((size_t)c->layers, sizeof *t->block))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    for (int i = 0; i < c->layers; i++) SDW_TRY(load_block(wl, prefix, c, i, &t->block[i]));
    SDW_TRY(sdw_wl_floats(wl, &t->final_ln, c->d_model, "%sencoder.final_layer_norm.weight", prefix));
    return name_layers(t);
}

sdw_status sdw_t5_load(sdw_backend *be, const sdw_safetensors *st, const char *prefix, sdw_t5 **out)
{
    *out = NULL;
    if (!prefix) prefix = "";
    if (!sdw_t5_present(st, prefix))
        return sdw_fail(SDW_ERR_FORMAT, "%s is not a T5 encoder (no %sshared.weight / %sencoder.block.0...)",
                        st->path, prefix, prefix);
    sdw_t5 *t = calloc(1, sizeof *t);
    if (!t) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    sdw_wloader wl;
    sdw_wl_init(&wl, be, st);
    sdw_status s = load_all(&wl, prefix, t);
    t->bytes = wl.bytes_held;
    sdw_wl_done(&wl);
    if (s != SDW_OK) {
        sdw_t5_free(t);
        return s;
    }
    *out = t;
    return SDW_OK;
}

void sdw_t5_free(sdw_t5 *t)
{
    if (!t) return;
    sdw_layer_list_free(&t->layers);
    if (t->block) {
        for (int i = 0; i < t->cfg.layers; i++) {
            t5_block *B = &t->block[i];
            free(B->ln1);
            free(B->ln2);
            for (int k = 0; k < 3; k++) sdw_linear_free(B->qkv[k]);
            sdw_linear_free(B->o);
            sdw_linear_free(B->wi_0);
            sdw_linear_free(B->wi_1);
            sdw_linear_free(B->wo);
        }
        free(t->block);
    }
    free(t->shared);
    free(t->rel_bias);
    free(t->final_ln);
    free(t);
}

const sdw_t5_config *sdw_t5_get_config(const sdw_t5 *t) { return &t->cfg; }
int sdw_t5_d_model(const sdw_t5 *t) { return t->cfg.d_model; }
size_t sdw_t5_bytes(const sdw_t5 *t) { return t ? t->bytes : 0; }
const sdw_layer_list *sdw_t5_layers(const sdw_t5 *t) { return &t->layers; }

/* ---------------------------------------------------------------- forward */

/* transformers' T5Attention._relative_position_bucket, bidirectional, for
 * rel = key - query: half the buckets for keys after the query, half for
 * those before; in each, distances below a quarter of the buckets get their
 * own, the rest are log-spaced up to max_distance, beyond which they share
 * the last. In float32 as torch computes it (the truncation decides). */
static int position_bucket(int rel, int buckets, int max_distance)
{
    const int half = buckets / 2, exact = half / 2, dist = rel < 0 ? -rel : rel;
    const int base = rel > 0 ? half : 0;
    if (dist < exact) return base + dist;
    const float ratio = logf((float)dist / (float)exact) / (float)log((double)max_distance / exact);
    const int large = exact + (int)(ratio * (float)(half - exact));
    return base + (large < half - 1 ? large : half - 1);
}

/* bias [heads, n, n]: each head's score offset for query i and key j. */
static void position_bias(const sdw_t5 *t, int n, int *bucket, float *bias)
{
    const sdw_t5_config *c = &t->cfg;
    for (int r = -(n - 1); r <= n - 1; r++) bucket[r + n - 1] = position_bucket(r, c->buckets, c->max_distance);
#pragma omp parallel for schedule(static) if ((int64_t)c->heads * n * n > 65536)
    for (int h = 0; h < c->heads; h++)
        for (int i = 0; i < n; i++) {
            float *row = bias + ((size_t)h * n + i) * n;
            for (int j = 0; j < n; j++) row[j] = t->rel_bias[(size_t)bucket[j - i + n - 1] * c->heads + h];
        }
}

static void embed(const sdw_t5 *t, const int32_t *ids, int n, float *x)
{
    const int D = t->cfg.d_model;
    for (int i = 0; i < n; i++) {
        const size_t off = (size_t)ids[i] * D;
        float *row = x + (size_t)i * D;
        if (t->shared_bf16) sdw_convert_to_f32(row, (const uint16_t *)t->shared + off, SDW_DTYPE_BF16, (size_t)D);
        else memcpy(row, (const float *)t->shared + off, (size_t)D * sizeof *row);
    }
}

/* One encoder block, in place on x [n, d_model]. */
static sdw_status block_forward(sdw_backend *be, sdw_arena *arena, const sdw_t5 *t, const t5_block *B,
                                const float *bias, float *x, int n)
{
    const sdw_t5_config *c = &t->cfg;
    const int D = c->d_model, inner = c->heads * c->d_kv;
    sdw_arena_mark mark = sdw_arena_save(arena);
    float *h = sdw_arena_floats(arena, (size_t)n * D);
    float *qkv = sdw_arena_floats(arena, (size_t)n * 3 * inner);   /* q, k, v one after the other */
    float *a = sdw_arena_floats(arena, (size_t)n * inner);
    float *gate = sdw_arena_floats(arena, (size_t)n * c->d_ff);
    float *lin = sdw_arena_floats(arena, (size_t)n * c->d_ff);
    if (!h || !qkv || !a || !gate || !lin) return sdw_fail(SDW_ERR_NOMEM, "out of memory in the T5 encoder");

    /* Self-attention; T5 folds the 1/sqrt(d_kv) into its initialisation, so the scale is 1. */
    sdw_rms_norm(x, n, D, B->ln1, T5_EPS, h);
    for (int k = 0; k < 3; k++) SDW_TRY(sdw_linear_forward(be, B->qkv[k], h, n, qkv + (size_t)k * n * inner));
    SDW_TRY(sdw_attention_bias(be, qkv, inner, qkv + (size_t)n * inner, qkv + (size_t)2 * n * inner, inner, 1, n, n,
                               c->heads, c->d_kv, 1.0f, bias, a));
    SDW_TRY(sdw_linear_forward_add(be, B->o, a, n, x));

    /* Gated-GELU feed-forward. */
    sdw_rms_norm(x, n, D, B->ln2, T5_EPS, h);
    SDW_TRY(sdw_linear_forward(be, B->wi_0, h, n, gate));
    SDW_TRY(sdw_linear_forward(be, B->wi_1, h, n, lin));
    sdw_gelu_tanh(gate, (size_t)n * c->d_ff);
    sdw_mul(gate, gate, lin, (size_t)n * c->d_ff);
    SDW_TRY(sdw_linear_forward_add(be, B->wo, gate, n, x));
    sdw_arena_restore(arena, mark);
    return SDW_OK;
}

/* The hidden state after `layers` blocks into out, final-normed when final_norm. */
static sdw_status forward(sdw_backend *be, sdw_arena *arena, const sdw_t5 *t, const int32_t *ids, int n, int layers,
                          bool final_norm, float *out)
{
    const sdw_t5_config *c = &t->cfg;
    if (n < 1) return sdw_fail(SDW_ERR_INVALID_ARG, "T5: %d tokens", n);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return sdw_fail(SDW_ERR_INVALID_ARG, "T5: token id %d out of range (vocabulary %d)", ids[i], c->vocab);
    const int D = c->d_model;
    sdw_arena_mark mark = sdw_arena_save(arena);
    float *x = sdw_arena_floats(arena, (size_t)n * D);
    float *bias = layers > 0 ? sdw_arena_floats(arena, (size_t)c->heads * n * n) : NULL;
    int *bucket = sdw_arena_alloc(arena, sizeof(int) * (size_t)(2 * n - 1));
    if (!x || (layers > 0 && !bias) || !bucket) return sdw_fail(SDW_ERR_NOMEM, "out of memory in the T5 encoder");
    embed(t, ids, n, x);
    if (layers > 0) position_bias(t, n, bucket, bias);
    sdw_status s = SDW_OK;
    for (int l = 0; l < layers && s == SDW_OK; l++) s = block_forward(be, arena, t, &t->block[l], bias, x, n);
    if (s == SDW_OK) {
        if (final_norm) sdw_rms_norm(x, n, D, t->final_ln, T5_EPS, out);
        else memcpy(out, x, (size_t)n * D * sizeof *x);
    }
    sdw_arena_restore(arena, mark);
    return s;
}

sdw_status sdw_t5_encode(sdw_backend *be, sdw_arena *arena, const sdw_t5 *t, const int32_t *ids, int n, float *out)
{
    return forward(be, arena, t, ids, n, t->cfg.layers, true, out);
}

sdw_status sdw_t5_encode_hidden(sdw_backend *be, sdw_arena *arena, const sdw_t5 *t, const int32_t *ids, int n,
                                int layers, float *out)
{
    if (layers < 0 || layers > t->cfg.layers)
        return sdw_fail(SDW_ERR_INVALID_ARG, "T5: %d layers asked of %d", layers, t->cfg.layers);
    return forward(be, arena, t, ids, n, layers, false, out);
}
