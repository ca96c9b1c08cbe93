/* test_mmdit.c: the SD3 / SD3.5 transformer (MMDiT and MMDiT-X) of sd3-tiny
 * and sd35-tiny against the reference components: the velocity of two items
 * with their own timesteps, with and without block 0 (skip-layer guidance),
 * every intermediate the reference keeps, and the centre crop of the position
 * table; loaded from the SAI single file and from a diffusers-named file the
 * test converts it to (as diffusers' convert_sd3_to_diffusers does: q / k / v
 * split, norm_out and the last norm1_context turned round), which must give
 * the same outputs; bf16 against the f32 reference; the configuration from
 * shapes and config.json, the layer names LoRAs address, and clear refusals
 * of a file without an MMDiT and of a latent larger than pos_embed covers. */
#include "testkit.h"
#include "io/json_file.h"
#include "io/safetensors_write.h"
#include "models/mmdit.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define F32_GATE 1e-5
#define BF16_GATE 3e-2
#define SAI_PREFIX "model.diffusion_model."

typedef enum { FROM_SAI, FROM_DIFFUSERS } source;
static const char *const source_names[] = { "sai", "diffusers" };

/* ---------------------------------------------------------------- SAI -> diffusers, as diffusers converts */

typedef struct {
    const char *sai, *diffusers;
} rename_rule;

static const rename_rule top_rules[] = {
    { "pos_embed", "pos_embed.pos_embed" },
    { "x_embedder.proj.", "pos_embed.proj." },
    { "t_embedder.mlp.0.", "time_text_embed.timestep_embedder.linear_1." },
    { "t_embedder.mlp.2.", "time_text_embed.timestep_embedder.linear_2." },
    { "y_embedder.mlp.0.", "time_text_embed.text_embedder.linear_1." },
    { "y_embedder.mlp.2.", "time_text_embed.text_embedder.linear_2." },
    { "context_embedder.", "context_embedder." },
    { "final_layer.linear.", "proj_out." },
};

static const rename_rule block_rules[] = {
    { "x_block.adaLN_modulation.1.", "norm1.linear." },
    { "x_block.attn.proj.", "attn.to_out.0." },
    { "context_block.attn.proj.", "attn.to_add_out." },
    { "x_block.attn.ln_q.", "attn.norm_q." },
    { "x_block.attn.ln_k.", "attn.norm_k." },
    { "context_block.attn.ln_q.", "attn.norm_added_q." },
    { "context_block.attn.ln_k.", "attn.norm_added_k." },
    { "x_block.attn2.proj.", "attn2.to_out.0." },
    { "x_block.attn2.ln_q.", "attn2.norm_q." },
    { "x_block.attn2.ln_k.", "attn2.norm_k." },
    { "x_block.mlp.fc1.", "ff.net.0.proj." },
    { "x_block.mlp.fc2.", "ff.net.2." },
    { "context_block.mlp.fc1.", "ff_context.net.0.proj." },
    { "context_block.mlp.fc2.", "ff_context.net.2." },
};

typedef struct {
    sdw_st_out t[512];
    char names[512][128];
    int64_t shapes[512][4];
    float *data[512];
    int n;
} tensor_set;

static void emit(tensor_set *s, const char *name, int ndim, const int64_t *shape, const float *src, size_t n)
{
    assert_true(s->n < 512);
    int i = s->n++;
    snprintf(s->names[i], sizeof s->names[i], "%s", name);
    memcpy(s->shapes[i], shape, (size_t)ndim * sizeof *shape);
    s->data[i] = malloc(n * sizeof(float));
    memcpy(s->data[i], src, n * sizeof(float));
    s->t[i] = (sdw_st_out){ s->names[i], ndim, s->shapes[i], s->data[i] };
}

/* q, k, v rows of a fused [3D, ...] tensor as three tensors. */
static void emit_split(tensor_set *s, const char *blk, const char *const names[3], const char *suffix,
                       const sdw_st_tensor *t, const float *d)
{
    int64_t shape[4];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] /= 3;
    size_t n = (size_t)t->numel / 3;
    for (int i = 0; i < 3; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s%s%s", blk, names[i], suffix);
        emit(s, name, t->ndim, shape, d + i * n, n);
    }
}

/* diffusers' swap_scale_shift: [shift; scale] -> [scale; shift]. */
static void emit_swapped(tensor_set *s, const char *name, const sdw_st_tensor *t, const float *d)
{
    size_t n = (size_t)t->numel, h = n / 2;
    float *w = malloc(n * sizeof *w);
    memcpy(w, d + h, h * sizeof *w);
    memcpy(w + h, d, h * sizeof *w);
    emit(s, name, t->ndim, t->shape, w, n);
    free(w);
}

static bool renamed(tensor_set *s, const rename_rule *r, size_t nr, const char *blk, const char *rest,
                    const sdw_st_tensor *t, const float *d)
{
    for (size_t i = 0; i < nr; i++) {
        size_t len = strlen(r[i].sai);
        if (strncmp(rest, r[i].sai, len)) continue;
        char name[128];
        snprintf(name, sizeof name, "%s%s%s", blk, r[i].diffusers, rest + len);
        emit(s, name, t->ndim, t->shape, d, (size_t)t->numel);
        return true;
    }
    return false;
}

static void convert_tensor(tensor_set *s, const char *name, const sdw_st_tensor *t, const float *d, int depth)
{
    static const char *const x_qkv[] = { "attn.to_q", "attn.to_k", "attn.to_v" };
    static const char *const c_qkv[] = { "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj" };
    static const char *const x2_qkv[] = { "attn2.to_q", "attn2.to_k", "attn2.to_v" };
    int idx, used = 0;
    char blk[64];
    if (sscanf(name, "joint_blocks.%d.%n", &idx, &used) == 1 && used > 0) {
        const char *rest = name + used, *suffix = strrchr(name, '.');
        char out[128];
        snprintf(blk, sizeof blk, "transformer_blocks.%d.", idx);
        snprintf(out, sizeof out, "%snorm1_context.linear%s", blk, suffix);
        if (!strncmp(rest, "x_block.attn.qkv.", 17)) emit_split(s, blk, x_qkv, suffix, t, d);
        else if (!strncmp(rest, "context_block.attn.qkv.", 23)) emit_split(s, blk, c_qkv, suffix, t, d);
        else if (!strncmp(rest, "x_block.attn2.qkv.", 18)) emit_split(s, blk, x2_qkv, suffix, t, d);
        else if (!strncmp(rest, "context_block.adaLN_modulation.1.", 33) && idx == depth - 1) emit_swapped(s, out, t, d);
        else if (!strncmp(rest, "context_block.adaLN_modulation.1.", 33)) emit(s, out, t->ndim, t->shape, d, t->numel);
        else if (!renamed(s, block_rules, sizeof block_rules / sizeof *block_rules, blk, rest, t, d))
            fail_msg("no diffusers name for %s", name);
    } else if (!strncmp(name, "final_layer.adaLN_modulation.1.", 31)) {
        char out[128];
        snprintf(out, sizeof out, "norm_out.linear%s", strrchr(name, '.'));
        emit_swapped(s, out, t, d);
    } else if (!renamed(s, top_rules, sizeof top_rules / sizeof *top_rules, "", name, t, d)) {
        fail_msg("no diffusers name for %s", name);
    }
}

/* The transformer of an SAI file with diffusers' names, written to a
 * temporary file and opened (the mapping outlives the unlinked name). */
static sdw_safetensors *diffusers_copy(const sdw_safetensors *sai, int depth)
{
    tensor_set *s = calloc(1, sizeof *s);
    const size_t plen = strlen(SAI_PREFIX);
    for (int i = 0; i < sai->n_tensors; i++) {
        const sdw_st_tensor *t = &sai->tensors[i];
        if (strncmp(t->name, SAI_PREFIX, plen)) continue;   /* the VAE */
        float *d = test_load_f32(sai, t->name, NULL);
        convert_tensor(s, t->name + plen, t, d, depth);
        free(d);
    }
    char path[] = "/tmp/sdw_mmdit_diffusersXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(sdw_st_write_f32(path, s->t, s->n), SDW_OK);
    sdw_safetensors *st;
    assert_int_equal(sdw_st_open(path, &st), SDW_OK);
    unlink(path);
    for (int i = 0; i < s->n; i++) free(s->data[i]);
    free(s);
    return st;
}

/* ---------------------------------------------------------------- loading */

static const char *model_path(const char *variant)
{
    static char path[256];
    snprintf(path, sizeof path, "sd3/models/%s/%s.safetensors", variant, variant);
    return path;
}

static cJSON *diffusers_config(const char *variant)
{
    char path[256];
    cJSON *cfg;
    snprintf(path, sizeof path, "sd3/models/%s/diffusers/transformer/config.json", variant);
    assert_int_equal(sdw_json_load_file(test_data_path(path), &cfg), SDW_OK);
    return cfg;
}

/* The file of either layout, its prefix and config.json. */
static sdw_safetensors *open_source(const char *variant, source src, const char **prefix, sdw_name_layout *names,
                                    cJSON **cfg)
{
    sdw_safetensors *sai = test_open_st(model_path(variant));
    *prefix = SAI_PREFIX;
    *names = SDW_NAMES_LDM;
    *cfg = NULL;
    if (src == FROM_SAI) return sai;
    sdw_mmdit_config c;
    assert_int_equal(sdw_mmdit_config_from_tensors(sai, SAI_PREFIX, SDW_NAMES_LDM, NULL, &c), SDW_OK);
    sdw_safetensors *st = diffusers_copy(sai, c.depth);
    sdw_st_close(sai);
    *prefix = "";
    *names = SDW_NAMES_DIFFUSERS;
    *cfg = diffusers_config(variant);
    return st;
}

static sdw_mmdit *load(sdw_backend *be, const char *variant, source src)
{
    const char *prefix;
    sdw_name_layout names;
    cJSON *cfg;
    sdw_safetensors *st = open_source(variant, src, &prefix, &names, &cfg);
    sdw_mmdit_config c;
    assert_true(sdw_mmdit_present(st, prefix));
    if (sdw_mmdit_config_from_tensors(st, prefix, names, cfg, &c) != SDW_OK) fail_msg("%s", sdw_last_error());
    sdw_mmdit *m = NULL;
    if (sdw_mmdit_load(be, st, prefix, names, &c, &m) != SDW_OK) fail_msg("%s", sdw_last_error());
    cJSON_Delete(cfg);
    sdw_st_close(st);
    return m;
}

/* ---------------------------------------------------------------- forward against the references */

typedef struct {
    const sdw_safetensors *ref;
    int item;
    double gate;
    const char *tag;
    int checked;
    float *pos_embed;   /* a copy of the "pos_embed" tap, when set */
} tap_ctx;

static void tap(void *user, const char *name, const float *x, int rows, int cols)
{
    tap_ctx *t = user;
    char key[128], what[256];
    if (t->pos_embed && !strcmp(name, "pos_embed")) memcpy(t->pos_embed, x, (size_t)rows * cols * sizeof *x);
    if (!t->ref) return;
    snprintf(key, sizeof key, "transformer.intermediate.%s", name);
    const sdw_st_tensor *r = sdw_st_find(t->ref, key);
    if (!r) return;   /* sd35-tiny keeps no context_embedder */
    if (r->numel != 2 * (int64_t)rows * cols)
        fail_msg("tap %s: %d x %d, reference has %lld for two items", name, rows, cols, (long long)r->numel);
    float *ref = test_load_f32(t->ref, key, NULL);
    snprintf(what, sizeof what, "%s [%d] %s", t->tag, t->item, name);
    test_check_close(what, x, ref + (size_t)t->item * rows * cols, (size_t)rows * cols, t->gate);
    t->checked++;
    free(ref);
}

typedef struct {
    sdw_safetensors *ref;
    float *x, *ctx, *pooled, *t, *out, *out_skip;
    int C, h, w, n_ctx;
} refs;

static refs load_refs(const char *variant)
{
    char path[256];
    refs r;
    snprintf(path, sizeof path, "sd3/components_%s.safetensors", variant);
    r.ref = test_open_st(path);
    const sdw_st_tensor *tx = sdw_st_find(r.ref, "transformer.hidden_states");
    const sdw_st_tensor *tc = sdw_st_find(r.ref, "transformer.encoder_hidden_states");
    r.C = (int)tx->shape[1], r.h = (int)tx->shape[2], r.w = (int)tx->shape[3], r.n_ctx = (int)tc->shape[1];
    r.x = test_load_f32(r.ref, "transformer.hidden_states", NULL);
    r.ctx = test_load_f32(r.ref, "transformer.encoder_hidden_states", NULL);
    r.pooled = test_load_f32(r.ref, "transformer.pooled_projections", NULL);
    r.t = test_load_f32(r.ref, "transformer.timestep", NULL);
    r.out = test_load_f32(r.ref, "transformer.out", NULL);
    r.out_skip = test_load_f32(r.ref, "transformer.out_skip_layers", NULL);
    return r;
}

static void free_refs(refs *r)
{
    free(r->x); free(r->ctx); free(r->pooled); free(r->t); free(r->out); free(r->out_skip);
    sdw_st_close(r->ref);
}

/* Both items with and without block 0; outs[2][2] keeps each output for the layouts' comparison. */
static void run_model(sdw_backend *be, sdw_arena *arena, const sdw_mmdit *m, const refs *r, const char *tag,
                      double gate, float *outs)
{
    const sdw_mmdit_config *c = sdw_mmdit_get_config(m);
    const size_t n = (size_t)r->C * r->h * r->w;
    const int joint = c->joint_dim;
    bool skip[SDW_MMDIT_MAX_DEPTH] = { true };
    for (int b = 0; b < 2; b++)
        for (int sk = 0; sk < 2; sk++) {
            tap_ctx tc = { r->ref, b, gate, tag, 0, NULL };
            sdw_mmdit_input in = { r->x + b * n, r->h, r->w, r->t[b], r->ctx + (size_t)b * r->n_ctx * joint,
                                   r->n_ctx, r->pooled + (size_t)b * c->pooled_dim, sk ? skip : NULL,
                                   sk ? NULL : tap, &tc };
            float *out = outs + (size_t)(2 * b + sk) * n;
            if (sdw_mmdit_forward(be, arena, m, &in, out) != SDW_OK) fail_msg("%s", sdw_last_error());
            /* pos_embed, temb, [context_embedder,] block0 x 2, block1, norm_out */
            if (!sk) assert_int_equal(tc.checked, sdw_st_find(r->ref, "transformer.intermediate.context_embedder")
                                                      ? 7 : 6);
            char what[256];
            snprintf(what, sizeof what, "%s [%d] t=%g %s", tag, b, r->t[b], sk ? "out_skip_layers" : "out");
            test_check_close(what, out, (sk ? r->out_skip : r->out) + b * n, n, gate);
        }
}

/* The crop: with zero latents the "pos_embed" tap is the conv bias plus it. */
static void check_crop(sdw_backend *be, sdw_arena *arena, const sdw_mmdit *m, const refs *r, const char *variant)
{
    const sdw_mmdit_config *c = sdw_mmdit_get_config(m);
    const int H = c->hidden, n_img = (r->h / 2) * (r->w / 2);
    float *zeros = calloc((size_t)r->C * r->h * r->w, sizeof *zeros), *out = malloc((size_t)r->C * r->h * r->w * 4);
    float *pe = malloc((size_t)n_img * H * sizeof *pe);
    tap_ctx tc = { NULL, 0, 0, "", 0, pe };
    sdw_mmdit_input in = { zeros, r->h, r->w, r->t[0], r->ctx, r->n_ctx, r->pooled, NULL, tap, &tc };
    assert_int_equal(sdw_mmdit_forward(be, arena, m, &in, out), SDW_OK);
    sdw_safetensors *st = test_open_st(model_path(variant));
    float *bias = test_load_f32(st, SAI_PREFIX "x_embedder.proj.bias", NULL);
    float *crop = test_load_f32(r->ref, "transformer.cropped_pos_embed", NULL);
    for (int i = 0; i < n_img; i++)
        for (int k = 0; k < H; k++) pe[(size_t)i * H + k] -= bias[k];
    char what[128];
    snprintf(what, sizeof what, "%s cropped_pos_embed", variant);
    test_check_close(what, pe, crop, (size_t)n_img * H, 1e-6);
    free(bias); free(crop); free(zeros); free(out); free(pe);
    sdw_st_close(st);
}

static void run_variant(sdw_backend *be, sdw_arena *arena, const char *variant, double gate)
{
    refs r = load_refs(variant);
    const size_t n = (size_t)r.C * r.h * r.w;
    float *outs[2] = { malloc(4 * n * sizeof(float)), malloc(4 * n * sizeof(float)) };
    for (source src = FROM_SAI; src <= FROM_DIFFUSERS; src++) {
        sdw_mmdit *m = load(be, variant, src);
        char tag[64];
        snprintf(tag, sizeof tag, "%s/%s", variant, source_names[src]);
        run_model(be, arena, m, &r, tag, gate, outs[src]);
        if (src == FROM_SAI) check_crop(be, arena, m, &r, variant);
        sdw_mmdit_free(m);
    }
    /* Same weights, same arithmetic: the layouts agree exactly. */
    assert_memory_equal(outs[0], outs[1], 4 * n * sizeof(float));
    free(outs[0]);
    free(outs[1]);
    free_refs(&r);
}

static void run(sdw_precision prec, double gate)
{
    if (!test_precision_runs(prec)) return;
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(prec, &be), SDW_OK);
    printf("precision %s, cpu isa %s\n", sdw_precision_name(prec), sdw_cpu_isa_name());
    sdw_arena arena = { 0 };
    run_variant(be, &arena, "sd3-tiny", gate);
    run_variant(be, &arena, "sd35-tiny", gate);
    sdw_arena_free(&arena);
    sdw_backend_free(be);
}

static void mmdit_f32(void **state) { (void)state; run(SDW_PRECISION_F32, F32_GATE); }
static void mmdit_bf16(void **state) { (void)state; run(SDW_PRECISION_BF16, BF16_GATE); }

/* ---------------------------------------------------------------- configuration, names, refusals */

static void config_from_shapes(void **state)
{
    (void)state;
    static const char *const variants[] = { "sd3-tiny", "sd35-tiny" };
    for (int v = 0; v < 2; v++)
        for (source src = FROM_SAI; src <= FROM_DIFFUSERS; src++)
            for (int with_json = 0; with_json <= 1; with_json++) {
                const char *prefix;
                sdw_name_layout names;
                cJSON *cfg;
                sdw_safetensors *st = open_source(variants[v], src, &prefix, &names, &cfg);
                if (with_json && !cfg) cfg = diffusers_config(variants[v]);
                sdw_mmdit_config c;
                if (sdw_mmdit_config_from_tensors(st, prefix, names, with_json ? cfg : NULL, &c) != SDW_OK)
                    fail_msg("%s", sdw_last_error());
                assert_int_equal(c.patch, 2);
                assert_int_equal(c.in_channels, 16);
                assert_int_equal(c.out_channels, 16);
                assert_int_equal(c.depth, 2);
                assert_int_equal(c.hidden, 128);
                assert_int_equal(c.heads, 2);
                assert_int_equal(c.head_dim, 64);
                assert_int_equal(c.pos_max, v ? 10 : 8);
                assert_int_equal(c.joint_dim, 32);
                assert_int_equal(c.pooled_dim, 20);
                assert_int_equal(c.qk_norm, v == 1);
                assert_int_equal(c.dual[0], v == 1);
                assert_false(c.dual[1]);
                cJSON_Delete(cfg);
                sdw_st_close(st);
            }
}

static void rejects_other_files(void **state)
{
    (void)state;
    sdw_safetensors *st = test_open_st("sd3/models/text_encoders/t5xxl.safetensors");
    sdw_mmdit_config c;
    assert_false(sdw_mmdit_present(st, ""));
    assert_false(sdw_mmdit_present(st, SAI_PREFIX));
    assert_int_equal(sdw_mmdit_config_from_tensors(st, SAI_PREFIX, SDW_NAMES_LDM, NULL, &c), SDW_ERR_FORMAT);
    printf("  t5xxl as SAI: %s\n", sdw_last_error());
    assert_non_null(strstr(sdw_last_error(), "not an SD3 / SD3.5 transformer"));
    assert_int_equal(sdw_mmdit_config_from_tensors(st, "", SDW_NAMES_DIFFUSERS, NULL, &c), SDW_ERR_FORMAT);
    assert_non_null(strstr(sdw_last_error(), "not an SD3 / SD3.5 transformer"));
    sdw_st_close(st);
    /* The single file holds it under its prefix only, in SAI names only. */
    st = test_open_st(model_path("sd3-tiny"));
    assert_false(sdw_mmdit_present(st, ""));
    assert_true(sdw_mmdit_present(st, SAI_PREFIX));
    assert_int_equal(sdw_mmdit_config_from_tensors(st, "", SDW_NAMES_LDM, NULL, &c), SDW_ERR_FORMAT);
    assert_int_equal(sdw_mmdit_config_from_tensors(st, SAI_PREFIX, SDW_NAMES_DIFFUSERS, NULL, &c), SDW_ERR_FORMAT);
    /* A config that does not match the file fails on the tensor it misses. */
    assert_int_equal(sdw_mmdit_config_from_tensors(st, SAI_PREFIX, SDW_NAMES_LDM, NULL, &c), SDW_OK);
    c.depth = 3;
    sdw_backend *be;
    sdw_mmdit *m = NULL;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    assert_int_equal(sdw_mmdit_load(be, st, SAI_PREFIX, SDW_NAMES_LDM, &c, &m), SDW_ERR_FORMAT);
    printf("  depth 3: %s\n", sdw_last_error());
    assert_null(m);
    /* A diffusers config.json that disagrees with the shapes. */
    cJSON *cfg = diffusers_config("sd3-tiny");
    cJSON_ReplaceItemInObject(cfg, "num_attention_heads", cJSON_CreateNumber(4));
    assert_int_equal(sdw_mmdit_config_from_tensors(st, SAI_PREFIX, SDW_NAMES_LDM, cfg, &c), SDW_ERR_FORMAT);
    cJSON_Delete(cfg);
    cfg = diffusers_config("sd35-tiny");
    assert_int_equal(sdw_mmdit_config_from_tensors(st, SAI_PREFIX, SDW_NAMES_LDM, cfg, &c), SDW_ERR_FORMAT);
    printf("  sd35 config on sd3: %s\n", sdw_last_error());
    cJSON_Delete(cfg);
    sdw_st_close(st);
    sdw_backend_free(be);
}

static void rejects_bad_input(void **state)
{
    (void)state;
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    sdw_mmdit *m = load(be, "sd3-tiny", FROM_SAI);   /* pos_embed 8 x 8: latents up to 16 x 16 */
    sdw_arena arena = { 0 };
    float *x = calloc(16 * 18 * 18, sizeof *x), *out = malloc(16 * 18 * 18 * sizeof *out), ctx[4 * 32] = { 0 },
          pooled[20] = { 0 };
    sdw_mmdit_input in = { x, 16, 18, 500.0f, ctx, 4, pooled, NULL, NULL, NULL };
    assert_int_equal(sdw_mmdit_forward(be, &arena, m, &in, out), SDW_ERR_INVALID_ARG);
    printf("  16x18 latent: %s\n", sdw_last_error());
    assert_non_null(strstr(sdw_last_error(), "at most 128x128 pixels (16x16 latent)"));
    in.w = 15;   /* odd */
    assert_int_equal(sdw_mmdit_forward(be, &arena, m, &in, out), SDW_ERR_INVALID_ARG);
    in.w = 16;   /* the largest, and no text at all, run */
    assert_int_equal(sdw_mmdit_forward(be, &arena, m, &in, out), SDW_OK);
    in.n_ctx = 0;
    assert_int_equal(sdw_mmdit_forward(be, &arena, m, &in, out), SDW_OK);
    in.n_ctx = 4;
    in.context = NULL;
    assert_int_equal(sdw_mmdit_forward(be, &arena, m, &in, out), SDW_ERR_INVALID_ARG);
    free(x);
    free(out);
    sdw_arena_free(&arena);
    sdw_mmdit_free(m);
    sdw_backend_free(be);
}

static const sdw_named_layer *find_layer(const sdw_layer_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].name, name)) return &l->v[i];
    return NULL;
}

static void layers_and_names(void **state)
{
    (void)state;
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    for (source src = FROM_SAI; src <= FROM_DIFFUSERS; src++) {
        sdw_mmdit *m = load(be, "sd35-tiny", src);
        const sdw_layer_list *l = sdw_mmdit_layers(m);
        const sdw_named_layer *qkv = find_layer(l, "joint_blocks.0.context_block.attn.qkv");
        const sdw_named_layer *k = find_layer(l, "transformer_blocks.0.attn.add_k_proj");
        const sdw_named_layer *v2 = find_layer(l, "transformer_blocks.0.attn2.to_v");
        const sdw_named_layer *qkv2 = find_layer(l, "joint_blocks.0.x_block.attn2.qkv");
        assert_non_null(qkv); assert_non_null(k); assert_non_null(v2); assert_non_null(qkv2);
        assert_int_equal(qkv->rows, 384);
        assert_ptr_equal(k->linear, qkv->linear);
        assert_int_equal(k->row0, 128);
        assert_int_equal(k->rows, 128);
        assert_ptr_equal(v2->linear, qkv2->linear);
        assert_int_equal(v2->row0, 256);
        assert_non_null(find_layer(l, "x_embedder.proj"));
        assert_non_null(find_layer(l, "pos_embed.proj"));
        assert_non_null(find_layer(l, "transformer_blocks.0.norm1_context.linear"));
        assert_non_null(find_layer(l, "joint_blocks.1.context_block.adaLN_modulation.1"));
        assert_null(find_layer(l, "transformer_blocks.1.norm1_context.linear"));   /* halves swapped */
        assert_null(find_layer(l, "norm_out.linear"));
        assert_null(find_layer(l, "joint_blocks.1.context_block.attn.proj"));
        assert_int_equal(sdw_linear_in(find_layer(l, "x_embedder.proj")->linear), 64);
        int sai = 0;
        for (int i = 0; i < l->n; i++) sai += strncmp(l->v[i].name, "transformer_blocks.", 19) != 0;
        /* SAI: x_embedder, t x 2, y x 2, context_embedder (6) + block 0: x 7, ctx 5 + block 1: x 5,
         * ctx 2 + final 2 = 27, and the top-level diffusers aliases (pos_embed.proj, time_text_embed x 4,
         * proj_out; context_embedder is its own alias). */
        assert_int_equal(sai, 27 + 6);
        /* block aliases: block 0 x: norm1, to_q/k/v, to_out, attn2 q/k/v, attn2 out, ff x 2 (11),
         * ctx: norm1_context, add_q/k/v, to_add_out, ff_context x 2 (7); block 1 x: 7, ctx: add_q/k/v (3). */
        assert_int_equal(l->n - sai, 11 + 7 + 7 + 3);
        assert_int_equal(sdw_mmdit_bytes(m), 1224512 * 4 + test_linear_padding(l, 4));   /* every parameter, f32, and the layout's padding */
        sdw_mmdit_free(m);
    }
    sdw_backend_free(be);
    /* The mapping on its own. */
    sdw_mmdit_config c = { .hidden = 128, .depth = 2 };
    sdw_mmdit_part p[SDW_MMDIT_MAX_PARTS];
    assert_int_equal(sdw_mmdit_diffusers_parts("final_layer.adaLN_modulation.1", &c, 256, p), 2);
    assert_string_equal(p[0].name, "norm_out.linear");
    assert_int_equal(p[0].src_row0, 128);
    assert_int_equal(p[0].dst_row0, 0);
    assert_int_equal(p[1].src_row0, 0);
    assert_int_equal(p[1].dst_row0, 128);
    assert_int_equal(sdw_mmdit_diffusers_parts("joint_blocks.1.context_block.adaLN_modulation.1", &c, 256, p), 2);
    assert_string_equal(p[0].name, "transformer_blocks.1.norm1_context.linear");
    assert_int_equal(sdw_mmdit_diffusers_parts("joint_blocks.0.context_block.adaLN_modulation.1", &c, 768, p), 1);
    assert_int_equal(sdw_mmdit_diffusers_parts("joint_blocks.0.x_block.attn2.ln_k", &c, 64, p), 1);
    assert_string_equal(p[0].name, "transformer_blocks.0.attn2.norm_k");
    assert_int_equal(sdw_mmdit_diffusers_parts("pos_embed", &c, 1, p), 1);
    assert_string_equal(p[0].name, "pos_embed.pos_embed");
    assert_int_equal(sdw_mmdit_diffusers_parts("joint_blocks.0.bogus", &c, 128, p), 0);
    assert_int_equal(sdw_mmdit_diffusers_parts("final_layer.bogus", &c, 128, p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mmdit_f32),
        cmocka_unit_test(mmdit_bf16),
        cmocka_unit_test(config_from_shapes),
        cmocka_unit_test(rejects_other_files),
        cmocka_unit_test(rejects_bad_input),
        cmocka_unit_test(layers_and_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
