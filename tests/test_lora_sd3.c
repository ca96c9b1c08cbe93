/* test_lora_sd3.c: LoRAs on the tiny SD3 and SD3.5 models (MMDiT or MMDiT-X,
 * CLIP-L, CLIP-G, T5), loaded as the pipeline loads them. The data holds no
 * SD3 LoRA, so each file is written here with small random factors, under
 * the names its trainer uses (sd-scripts' lora_unet_ / lora_te1_ / te2_ /
 * te3_, its split-qkv save with a block-diagonal up, diffusers / PEFT
 * "transformer." / "text_encoder_3.", ComfyUI, OneTrainer, SimpleTuner), and
 * mapped here, by hand, to the Stability layer and rows it must change
 * (q, k, v of fused qkv layers; the halves of norm_out.linear and the last
 * block's norm1_context.linear swapped; the patch embedding's 4-D conv
 * factors). The merged weights must equal W + delta computed here from the
 * factors with plain loops, and undoing must restore every stored byte. A
 * LoRA changes the image, and at strength 0 (or undone) gives the same image
 * bit for bit. SD3 LoRAs on SD 1.x and FLUX.1, and theirs on SD3, are
 * refused naming both families. */
#include "lora_kit.h"
#include "models/lora.h"
#include "models/lora_family.h"
#include "models/lora_keys.h"
#include "models/mmdit.h"
#include "models/model.h"
#include "models/sd3_text.h"
#include "models/t5.h"
#include "pipeline/pipeline.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SD3_FILE "sd3/models/sd3-tiny/sd3-tiny.safetensors"
#define SD35_FILE "sd3/models/sd35-tiny/sd35-tiny.safetensors"
#define TE "sd3/models/text_encoders/"
#define H 128            /* the tiny transformers' width (q, k, v: H rows each) */
#define WEIGHT_GATE 1e-6 /* merged weights against W + delta, rel L2 */
#define DELTA_GATE 1e-5  /* their change against delta */

static sdw_model *sd3;

static sdw_status load_sd3(const char *file, sdw_precision prec, bool t5, sdw_model **m)
{
    char path[1024], clip_l[1024], clip_g[1024], t5_path[1024];
    snprintf(path, sizeof path, "%s", test_data_path(file));
    snprintf(clip_l, sizeof clip_l, "%s", test_data_path(TE "clip_l.safetensors"));
    snprintf(clip_g, sizeof clip_g, "%s", test_data_path(TE "clip_g.safetensors"));
    snprintf(t5_path, sizeof t5_path, "%s", test_data_path(TE "t5xxl.safetensors"));
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = prec;
    lp.clip_l_path = clip_l;
    lp.clip_g_path = clip_g;
    lp.t5_path = t5 ? t5_path : NULL;
    return sdw_model_load(path, &lp, m);
}

static sdw_model *load_or_fail(const char *file, sdw_precision prec, bool t5)
{
    sdw_model *m;
    if (load_sd3(file, prec, t5, &m) != SDW_OK) fail_msg("%s: %s", file, sdw_last_error());
    return m;
}

static int setup(void **state)
{
    (void)state;
    if (load_sd3(SD3_FILE, SDW_PRECISION_F32, true, &sd3) != SDW_OK) {
        fprintf(stderr, "%s\n", sdw_last_error());
        return -1;
    }
    return lora_tmpdir_make("sdw-test-lora-sd3");
}

static int teardown(void **state)
{
    (void)state;
    sdw_model_free(sd3);
    return lora_tmpdir_remove();
}

/* ---- the model's layers ---- */

/* part: 'l' CLIP-L, 'g' CLIP-G (transformers names), '5' T5, 'm' the transformer (Stability names). */
static const sdw_named_layer *layer_of(const sdw_model *m, char part, const char *name)
{
    const sdw_layer_list *l = part == 'l'   ? &m->sd3_text->clip_l->layers
                              : part == 'g' ? &m->sd3_text->clip_g->layers
                              : part == '5' ? sdw_t5_layers(m->sd3_text->t5)
                                            : sdw_mmdit_layers(m->mmdit);
    return lora_find_layer(l, name);
}

/* ---- LoRA files written here ---- */

typedef enum {
    PLAIN,      /* down [r, in], up [rows, r] */
    CONV,       /* the patch embedding's Conv2d factors: down [r, C, p, p], up [rows, r, 1, 1] */
    SPLIT_QKV,  /* sd-scripts' split_qkv save: down [3r, in], up [rows, 3r] block-diagonal */
} form;

typedef struct {
    const char *module;   /* tensor names before the factor suffix */
    char part;            /* as layer_of */
    const char *layer;    /* the model layer it changes */
    int row0, rows;       /* rows of that layer (rows 0: all of the named layer's) */
    bool swap;            /* the module's rows are the layer's halves swapped */
    char style;           /* 'k' kohya (lora_down / lora_up, alpha), 'p' PEFT (lora_A / lora_B, no alpha) */
    form f;
} mapping;
#define COUNT(a) ((int)(sizeof a / sizeof a[0]))

/* One module's factors as written, for the expected delta. */
typedef struct {
    float *down, *up;     /* [r, cols], [rows, r] */
    int r, rows, cols;
    float alpha;          /* 0: none (alpha = r) */
} factors;

/* A file being written (lora_kit.h) and the factors of its modules. */
typedef struct {
    lora_file file;
    factors fac[48];
    int n_fac;
} sd3_lora;

static float *add_tensor(lora_file *f, const char *name, int ndim, const int64_t *shape, uint32_t seed, float scale)
{
    const int64_t one[4] = { 1, 1, 1, 1 }, *s = ndim ? shape : one;
    float *v = lora_file_add(f, name, ndim, s[0], s[1], s[2], s[3], seed);
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    for (size_t k = 0; k < n; k++) v[k] *= scale;
    return v;
}

/* A module of rank r for rows x cols of a layer (factors in [-0.5, 0.5)). */
static void add_module(sd3_lora *f, const mapping *mp, int rows, int cols, int r, float alpha)
{
    const bool peft = mp->style == 'p';
    const int rr = mp->f == SPLIT_QKV ? 3 * r : r;
    char name[512];
    const uint32_t seed = (uint32_t)f->file.n * 7919u + 17u;
    int64_t dshape[4] = { rr, cols }, ushape[4] = { rows, rr, 1, 1 };
    int dn = 2, un = 2;
    if (mp->f == CONV) {   /* cols = C p p with p = 2 */
        dshape[1] = cols / 4;
        dshape[2] = dshape[3] = 2;
        dn = un = 4;
    }
    snprintf(name, sizeof name, "%s%s", mp->module, peft ? ".lora_A.weight" : ".lora_down.weight");
    float *down = add_tensor(&f->file, name, dn, dshape, seed, 0.5f);
    snprintf(name, sizeof name, "%s%s", mp->module, peft ? ".lora_B.weight" : ".lora_up.weight");
    float *up = add_tensor(&f->file, name, un, ushape, seed + 1, 0.5f);
    if (mp->f == SPLIT_QKV)   /* row block j takes only rank block j */
        for (int o = 0; o < rows; o++)
            for (int j = 0; j < rr; j++)
                if (o / (rows / 3) != j / r) up[(size_t)o * rr + j] = 0;
    if (!peft) {
        snprintf(name, sizeof name, "%s.alpha", mp->module);
        add_tensor(&f->file, name, 0, NULL, 1, 1.0f)[0] = alpha;
    }
    assert_true(f->n_fac < 48);
    f->fac[f->n_fac++] = (factors){ down, up, rr, rows, cols, peft ? 0 : alpha };
}

static void free_file(sd3_lora *f)
{
    lora_file_free(&f->file);
    f->n_fac = 0;
}

/* A file holding map's modules (shapes from m's layers), ranks 2..4. */
static const char *file_for(sd3_lora *f, const sdw_model *m, const mapping *map, int n, const char *stem)
{
    for (int i = 0; i < n; i++) {
        const sdw_named_layer *l = layer_of(m, map[i].part, map[i].layer);
        add_module(f, &map[i], map[i].rows ? map[i].rows : l->rows, sdw_linear_in(l->linear), 2 + i % 3,
                   1.0f + 0.5f * (float)(i % 4));
    }
    return lora_file_write(&f->file, stem);
}

/* delta [rows, cols] = scale * alpha / r * up @ down, in double. */
static double *module_delta(const factors *fc, float scale)
{
    double *d = malloc((size_t)fc->rows * fc->cols * sizeof *d);
    const double s = scale * (fc->alpha > 0 ? fc->alpha / fc->r : 1.0);
    for (int o = 0; o < fc->rows; o++)
        for (int k = 0; k < fc->cols; k++) {
            double acc = 0;
            for (int j = 0; j < fc->r; j++) acc += (double)fc->up[(size_t)o * fc->r + j] * fc->down[(size_t)j * fc->cols + k];
            d[(size_t)o * fc->cols + k] = acc * s;
        }
    return d;
}

/* One layer a file touches: its weights and stored bytes before, and W + delta expected. */
typedef struct {
    const sdw_named_layer *l;
    float *before;
    double *want;
    void *orig;
    size_t bytes;
    int rows, cols;
} touched;

static touched *touch(touched *v, int *n, const sdw_model *m, const sdw_named_layer *l)
{
    for (int i = 0; i < *n; i++)
        if (v[i].l->linear == l->linear) return &v[i];
    touched *t = &v[(*n)++];
    t->l = l;
    t->rows = sdw_linear_out(l->linear);
    t->cols = sdw_linear_in(l->linear);
    t->before = lora_layer_weights(m, l);
    t->want = malloc((size_t)t->rows * t->cols * sizeof *t->want);
    for (size_t k = 0; k < (size_t)t->rows * t->cols; k++) t->want[k] = t->before[k];
    t->orig = lora_layer_stored_copy(l, &t->bytes);
    return t;
}

/* Applies path at (te, unet), checks every mapped layer against W + its
 * modules' deltas and the report (n_total modules in the file, the first n
 * of them mapped), then undoes and checks the stored bytes. Returns the
 * worst rel L2 of the merged weights; *worst_delta gets that of the change. */
static double check_file(sdw_model *m, const char *path, const sd3_lora *f, const mapping *map, int n, int n_total,
                         float te, float unet, double *worst_delta)
{
    touched *v = calloc((size_t)n, sizeof *v);
    int nt = 0;
    for (int i = 0; i < n; i++) {
        const sdw_named_layer *l = layer_of(m, map[i].part, map[i].layer);
        touched *t = touch(v, &nt, m, l);
        const factors *fc = &f->fac[i];
        const int row0 = l->row0 + map[i].row0, rows = fc->rows;
        assert_int_equal(fc->cols, t->cols);
        double *d = module_delta(fc, map[i].part == 'm' ? unet : te);
        for (int r = 0; r < rows; r++) {
            const int dst = row0 + (map[i].swap ? (r + rows / 2) % rows : r);
            for (int c = 0; c < t->cols; c++) t->want[(size_t)dst * t->cols + c] += d[(size_t)r * t->cols + c];
        }
        free(d);
    }
    sdw_lora_spec spec = { path, te, unet };
    sdw_lora_report rep;
    if (sdw_model_set_loras(m, &spec, 1, &rep) != SDW_OK) fail_msg("%s: %s", path, sdw_last_error());
    assert_int_equal(rep.keys_applied, n);
    assert_int_equal(rep.keys_total, n_total);
    double worst = 0;
    *worst_delta = 0;
    for (int i = 0; i < nt; i++) {
        const size_t k = (size_t)v[i].rows * v[i].cols;
        float *after = lora_layer_weights(m, v[i].l), *want = malloc(k * sizeof *want);
        float *got_d = malloc(k * sizeof *got_d), *want_d = malloc(k * sizeof *want_d);
        for (size_t j = 0; j < k; j++) {
            want[j] = (float)v[i].want[j];
            got_d[j] = after[j] - v[i].before[j];
            want_d[j] = (float)(v[i].want[j] - v[i].before[j]);
        }
        char what[300];
        snprintf(what, sizeof what, "%s: %s weights", rep.name, v[i].l->name);
        test_check_close(what, after, want, k, WEIGHT_GATE);
        snprintf(what, sizeof what, "%s: %s delta", rep.name, v[i].l->name);
        test_check_close(what, got_d, want_d, k, DELTA_GATE);
        worst = fmax(worst, test_rel_l2(after, want, k));
        *worst_delta = fmax(*worst_delta, test_rel_l2(got_d, want_d, k));
        free(after); free(want); free(got_d); free(want_d);
    }
    assert_int_equal(sdw_model_set_loras(m, NULL, 0, NULL), SDW_OK);
    for (int i = 0; i < nt; i++) {
        size_t bytes;
        assert_memory_equal(sdw_linear_stored(v[i].l->linear, &bytes), v[i].orig, v[i].bytes);
        free(v[i].before); free(v[i].want); free(v[i].orig);
    }
    free(v);
    return worst;
}

/* Writes map's file, checks it at (te, unet) and prints the figures. */
static void check_map(sdw_model *m, const mapping *map, int n, const char *stem, float te, float unet)
{
    sd3_lora f = { 0 };
    const char *path = file_for(&f, m, map, n, stem);
    double wd;
    double w = check_file(m, path, &f, map, n, n, te, unet, &wd);
    printf("  %-12s %2d modules (te %g, unet %g): merged weights rel L2 %.3g, their change %.3g; undo exact\n", stem,
           n, te, unet, w, wd);
    free_file(&f);
}

/* ---- names ---- */

static const mapping kohya_map[] = {
    { "lora_unet_joint_blocks_0_x_block_attn_qkv", 'm', "joint_blocks.0.x_block.attn.qkv", 0, 0, false, 'k', PLAIN },
    { "lora_unet_joint_blocks_1_x_block_attn_qkv", 'm', "joint_blocks.1.x_block.attn.qkv", 0, 0, false, 'k', SPLIT_QKV },
    { "lora_unet_joint_blocks_0_context_block_attn_qkv", 'm', "joint_blocks.0.context_block.attn.qkv", 0, 0, false, 'k', SPLIT_QKV },
    { "lora_unet_joint_blocks_0_context_block_attn_proj", 'm', "joint_blocks.0.context_block.attn.proj", 0, 0, false, 'k', PLAIN },
    { "lora_unet_joint_blocks_0_context_block_mlp_fc1", 'm', "joint_blocks.0.context_block.mlp.fc1", 0, 0, false, 'k', PLAIN },
    { "lora_unet_joint_blocks_1_x_block_mlp_fc2", 'm', "joint_blocks.1.x_block.mlp.fc2", 0, 0, false, 'k', PLAIN },
    { "lora_unet_joint_blocks_0_x_block_adaLN_modulation_1", 'm', "joint_blocks.0.x_block.adaLN_modulation.1", 0, 0, false, 'k', PLAIN },
    /* The last block's pre-only context stream: (shift, scale) in Stability's order, as stored. */
    { "lora_unet_joint_blocks_1_context_block_adaLN_modulation_1", 'm', "joint_blocks.1.context_block.adaLN_modulation.1", 0, 0, false, 'k', PLAIN },
    { "lora_unet_joint_blocks_1_context_block_attn_qkv", 'm', "joint_blocks.1.context_block.attn.qkv", 0, 0, false, 'k', PLAIN },
    { "lora_unet_context_embedder", 'm', "context_embedder", 0, 0, false, 'k', PLAIN },
    { "lora_unet_t_embedder_mlp_0", 'm', "t_embedder.mlp.0", 0, 0, false, 'k', PLAIN },
    { "lora_unet_y_embedder_mlp_2", 'm', "y_embedder.mlp.2", 0, 0, false, 'k', PLAIN },
    { "lora_unet_x_embedder_proj", 'm', "x_embedder.proj", 0, 0, false, 'k', CONV },
    { "lora_unet_final_layer_adaLN_modulation_1", 'm', "final_layer.adaLN_modulation.1", 0, 0, false, 'k', PLAIN },
    { "lora_unet_final_layer_linear", 'm', "final_layer.linear", 0, 0, false, 'k', PLAIN },
    { "lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 'l', "text_model.encoder.layers.0.self_attn.q_proj", 0, 0, false, 'k', PLAIN },
    { "lora_te1_text_model_encoder_layers_1_mlp_fc1", 'l', "text_model.encoder.layers.1.mlp.fc1", 0, 0, false, 'k', PLAIN },
    { "lora_te2_text_model_encoder_layers_0_self_attn_v_proj", 'g', "text_model.encoder.layers.0.self_attn.v_proj", 0, 0, false, 'k', PLAIN },
    { "lora_te2_text_model_encoder_layers_1_self_attn_out_proj", 'g', "text_model.encoder.layers.1.self_attn.out_proj", 0, 0, false, 'k', PLAIN },
    { "lora_te3_encoder_block_0_layer_0_SelfAttention_q", '5', "encoder.block.0.layer.0.SelfAttention.q", 0, 0, false, 'k', PLAIN },
    { "lora_te3_encoder_block_1_layer_1_DenseReluDense_wi_1", '5', "encoder.block.1.layer.1.DenseReluDense.wi_1", 0, 0, false, 'k', PLAIN },
};

static const mapping peft_map[] = {
    /* q, k, v into the fused qkv layers' thirds. */
    { "transformer.transformer_blocks.0.attn.to_q", 'm', "joint_blocks.0.x_block.attn.qkv", 0, H, false, 'p', PLAIN },
    { "transformer.transformer_blocks.0.attn.to_k", 'm', "joint_blocks.0.x_block.attn.qkv", H, H, false, 'p', PLAIN },
    { "transformer.transformer_blocks.0.attn.to_v", 'm', "joint_blocks.0.x_block.attn.qkv", 2 * H, H, false, 'p', PLAIN },
    { "transformer.transformer_blocks.0.attn.add_q_proj", 'm', "joint_blocks.0.context_block.attn.qkv", 0, H, false, 'p', PLAIN },
    { "transformer.transformer_blocks.0.attn.add_k_proj", 'm', "joint_blocks.0.context_block.attn.qkv", H, H, false, 'p', PLAIN },
    { "transformer.transformer_blocks.1.attn.add_v_proj", 'm', "joint_blocks.1.context_block.attn.qkv", 2 * H, H, false, 'p', PLAIN },
    { "transformer.transformer_blocks.0.attn.to_out.0", 'm', "joint_blocks.0.x_block.attn.proj", 0, 0, false, 'p', PLAIN },
    { "transformer.transformer_blocks.0.attn.to_add_out", 'm', "joint_blocks.0.context_block.attn.proj", 0, 0, false, 'p', PLAIN },
    { "transformer.transformer_blocks.1.ff.net.0.proj", 'm', "joint_blocks.1.x_block.mlp.fc1", 0, 0, false, 'p', PLAIN },
    { "transformer.transformer_blocks.0.ff.net.2", 'm', "joint_blocks.0.x_block.mlp.fc2", 0, 0, false, 'p', PLAIN },
    { "transformer.transformer_blocks.0.ff_context.net.0.proj", 'm', "joint_blocks.0.context_block.mlp.fc1", 0, 0, false, 'p', PLAIN },
    { "transformer.transformer_blocks.0.ff_context.net.2", 'm', "joint_blocks.0.context_block.mlp.fc2", 0, 0, false, 'p', PLAIN },
    { "transformer.transformer_blocks.1.norm1.linear", 'm', "joint_blocks.1.x_block.adaLN_modulation.1", 0, 0, false, 'p', PLAIN },
    { "transformer.transformer_blocks.0.norm1_context.linear", 'm', "joint_blocks.0.context_block.adaLN_modulation.1", 0, 0, false, 'p', PLAIN },
    /* diffusers' AdaLayerNormContinuous: (scale, shift), Stability's halves swapped. */
    { "transformer.transformer_blocks.1.norm1_context.linear", 'm', "joint_blocks.1.context_block.adaLN_modulation.1", 0, 0, true, 'p', PLAIN },
    { "transformer.norm_out.linear", 'm', "final_layer.adaLN_modulation.1", 0, 0, true, 'p', PLAIN },
    { "transformer.proj_out", 'm', "final_layer.linear", 0, 0, false, 'p', PLAIN },
    { "transformer.context_embedder", 'm', "context_embedder", 0, 0, false, 'p', PLAIN },
    { "transformer.pos_embed.proj", 'm', "x_embedder.proj", 0, 0, false, 'p', CONV },
    { "transformer.time_text_embed.timestep_embedder.linear_1", 'm', "t_embedder.mlp.0", 0, 0, false, 'p', PLAIN },
    { "transformer.time_text_embed.text_embedder.linear_2", 'm', "y_embedder.mlp.2", 0, 0, false, 'p', PLAIN },
    { "text_encoder.text_model.encoder.layers.0.self_attn.k_proj", 'l', "text_model.encoder.layers.0.self_attn.k_proj", 0, 0, false, 'p', PLAIN },
    { "text_encoder_2.text_model.encoder.layers.2.mlp.fc2", 'g', "text_model.encoder.layers.2.mlp.fc2", 0, 0, false, 'p', PLAIN },
    { "text_encoder_3.encoder.block.1.layer.0.SelfAttention.o", '5', "encoder.block.1.layer.0.SelfAttention.o", 0, 0, false, 'p', PLAIN },
};

static void kohya_names(void **state)
{
    (void)state;
    check_map(sd3, kohya_map, COUNT(kohya_map), "kohya", 1.0f, 1.0f);
    check_map(sd3, kohya_map, COUNT(kohya_map), "kohya_apart", 0.4f, -1.3f);   /* te and unet apart */
}

static void peft_names(void **state)
{
    (void)state;
    check_map(sd3, peft_map, COUNT(peft_map), "peft", 0.75f, 0.75f);
}

static void other_trainers_names(void **state)
{
    (void)state;
    static const mapping map[] = {
        /* ComfyUI: Stability names under diffusion_model. / model.diffusion_model. */
        { "diffusion_model.joint_blocks.0.x_block.mlp.fc1", 'm', "joint_blocks.0.x_block.mlp.fc1", 0, 0, false, 'k', PLAIN },
        { "model.diffusion_model.final_layer.linear", 'm', "final_layer.linear", 0, 0, false, 'k', PLAIN },
        /* OneTrainer: diffusers names, kohya style. */
        { "lora_transformer_transformer_blocks_0_attn_to_v", 'm', "joint_blocks.0.x_block.attn.qkv", 2 * H, H, false, 'k', PLAIN },
        { "lora_transformer_norm_out_linear", 'm', "final_layer.adaLN_modulation.1", 0, 0, true, 'k', PLAIN },
        /* flash-sd3 and bare PEFT saves. */
        { "base_model.model.transformer_blocks.1.attn.to_k", 'm', "joint_blocks.1.x_block.attn.qkv", H, H, false, 'p', PLAIN },
        { "transformer_blocks.0.attn.add_v_proj", 'm', "joint_blocks.0.context_block.attn.qkv", 2 * H, H, false, 'p', PLAIN },
        { "joint_blocks.1.x_block.adaLN_modulation.1", 'm', "joint_blocks.1.x_block.adaLN_modulation.1", 0, 0, false, 'p', PLAIN },
        /* SimpleTuner's LyCORIS names. */
        { "lycoris_transformer_blocks_0_ff_context_net_2", 'm', "joint_blocks.0.context_block.mlp.fc2", 0, 0, false, 'k', PLAIN },
        { "lycoris_transformer_blocks_1_norm1_context_linear", 'm', "joint_blocks.1.context_block.adaLN_modulation.1", 0, 0, true, 'k', PLAIN },
        /* kohya-style diffusers names. */
        { "lora_unet_transformer_blocks_0_norm1_context_linear", 'm', "joint_blocks.0.context_block.adaLN_modulation.1", 0, 0, false, 'k', PLAIN },
        { "lora_te2_text_model_encoder_layers_2_self_attn_k_proj", 'g', "text_model.encoder.layers.2.self_attn.k_proj", 0, 0, false, 'k', PLAIN },
    };
    check_map(sd3, map, COUNT(map), "others", -0.6f, 1.2f);
}

/* SD3.5-medium's MMDiT-X: the image stream's second attention, 9 H modulation rows. */
static void mmdit_x_names(void **state)
{
    (void)state;
    static const mapping map[] = {
        { "lora_unet_joint_blocks_0_x_block_attn2_qkv", 'm', "joint_blocks.0.x_block.attn2.qkv", 0, 0, false, 'k', PLAIN },
        { "lora_unet_joint_blocks_0_x_block_attn2_proj", 'm', "joint_blocks.0.x_block.attn2.proj", 0, 0, false, 'k', PLAIN },
        { "transformer.transformer_blocks.0.attn2.to_k", 'm', "joint_blocks.0.x_block.attn2.qkv", H, H, false, 'p', PLAIN },
        { "transformer.transformer_blocks.0.attn2.to_out.0", 'm', "joint_blocks.0.x_block.attn2.proj", 0, 0, false, 'p', PLAIN },
        { "transformer.transformer_blocks.0.norm1.linear", 'm', "joint_blocks.0.x_block.adaLN_modulation.1", 0, 0, false, 'p', PLAIN },
        { "transformer.transformer_blocks.1.norm1_context.linear", 'm', "joint_blocks.1.context_block.adaLN_modulation.1", 0, 0, true, 'p', PLAIN },
        { "transformer.norm_out.linear", 'm', "final_layer.adaLN_modulation.1", 0, 0, true, 'p', PLAIN },
        { "lora_unet_joint_blocks_1_x_block_attn_qkv", 'm', "joint_blocks.1.x_block.attn.qkv", 0, 0, false, 'k', SPLIT_QKV },
        { "lora_te3_encoder_block_0_layer_1_DenseReluDense_wo", '5', "encoder.block.0.layer.1.DenseReluDense.wo", 0, 0, false, 'k', PLAIN },
    };
    sdw_model *m = load_or_fail(SD35_FILE, SDW_PRECISION_F32, true);
    assert_int_equal(sdw_model_get_info(m)->family, SDW_FAMILY_SD35_MEDIUM);
    check_map(m, map, COUNT(map), "sd35", 0.9f, 1.1f);
    sdw_model_free(m);
}

/* Modules the model lacks count in the total, not as applied. */
static void applied_n_of_m(void **state)
{
    (void)state;
    static const mapping present[] = {
        { "lora_unet_joint_blocks_0_x_block_mlp_fc1", 'm', "joint_blocks.0.x_block.mlp.fc1", 0, 0, false, 'k', PLAIN },
        { "lora_te1_text_model_encoder_layers_0_mlp_fc2", 'l', "text_model.encoder.layers.0.mlp.fc2", 0, 0, false, 'k', PLAIN },
    };
    /* A third block, MMDiT-X's attn2 and T5 on a model loaded without one. */
    static const mapping absent[] = {
        { "lora_unet_joint_blocks_2_x_block_attn_qkv", 'm', "", 0, 3 * H, false, 'k', PLAIN },
        { "transformer.transformer_blocks.0.attn2.to_q", 'm', "", 0, H, false, 'p', PLAIN },
        { "lora_te3_encoder_block_0_layer_0_SelfAttention_k", '5', "", 0, 32, false, 'k', PLAIN },
    };
    sdw_model *m = load_or_fail(SD3_FILE, SDW_PRECISION_F32, false);
    assert_null(m->sd3_text->t5);
    sd3_lora f = { 0 };
    for (int i = 0; i < COUNT(present); i++) {
        const sdw_named_layer *l = layer_of(m, present[i].part, present[i].layer);
        add_module(&f, &present[i], l->rows, sdw_linear_in(l->linear), 2, 1.0f);
    }
    const int cols[] = { H, H, 32 };
    for (int i = 0; i < COUNT(absent); i++) add_module(&f, &absent[i], absent[i].rows, cols[i], 2, 1.0f);
    const char *path = lora_file_write(&f.file, "partial");
    double wd;
    double w = check_file(m, path, &f, present, COUNT(present), COUNT(present) + COUNT(absent), 1.0f, 1.0f, &wd);
    printf("  applied 2 of 5 keys (a third block, attn2 on MMDiT, T5 without T5): merged rel L2 %.3g\n", w);
    free_file(&f);
    sdw_model_free(m);
}

static void key_names(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        { "lora_unet_joint_blocks_3_x_block_attn_qkv.lora_down.weight", "u:joint_blocks_3_x_block_attn_qkv" },
        { "transformer.transformer_blocks.0.attn.add_q_proj.lora_A.weight", "u:transformer_blocks_0_attn_add_q_proj" },
        { "diffusion_model.joint_blocks.1.context_block.mlp.fc2.lora_up.weight", "u:joint_blocks_1_context_block_mlp_fc2" },
        { "text_encoder_3.encoder.block.0.layer.0.SelfAttention.q.lora_B.weight", "2:encoder_block_0_layer_0_SelfAttention_q" },
        { "lora_te2_text_model_encoder_layers_0_mlp_fc1.alpha", "1:encoder_layers_0_mlp_fc1" },
        { "lycoris_transformer_blocks_0_attn_to_q.lokr_w1", "u:transformer_blocks_0_attn_to_q" },
        { "joint_blocks.0.x_block.attn.proj.lora_A.weight", "u:joint_blocks_0_x_block_attn_proj" },
    };
    char key[320];
    sdw_lora_role role;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_true(sdw_lora_split_name(cases[i][0], key, sizeof key, &role));
        assert_string_equal(key, cases[i][1]);
    }
    const unsigned dit = SDW_ARCH_FLUX | SDW_ARCH_SD3;
    assert_int_equal(sdw_lora_key_archs("u:joint_blocks_0_x_block_attn_qkv"), SDW_ARCH_SD3);
    assert_int_equal(sdw_lora_key_archs("u:x_embedder_proj"), SDW_ARCH_SD3);
    assert_int_equal(sdw_lora_key_archs("u:pos_embed_proj"), SDW_ARCH_SD3);
    assert_int_equal(sdw_lora_key_archs("u:transformer_blocks_3_attn2_to_q"), SDW_ARCH_SD3);
    assert_int_equal(sdw_lora_key_archs("u:x_embedder"), SDW_ARCH_FLUX);
    assert_int_equal(sdw_lora_key_archs("u:single_transformer_blocks_0_attn_to_q"), SDW_ARCH_FLUX);
    assert_int_equal(sdw_lora_key_archs("u:time_text_embed_guidance_embedder_linear_1"), SDW_ARCH_FLUX);
    assert_int_equal(sdw_lora_key_archs("u:transformer_blocks_3_attn_to_q"), dit);
    assert_int_equal(sdw_lora_key_archs("u:final_layer_linear"), dit);
    assert_int_equal(sdw_lora_key_archs("u:norm_out_linear"), dit);
    assert_int_equal(sdw_lora_key_archs("2:encoder_block_0_layer_0_SelfAttention_q"), dit);
    assert_int_equal(sdw_lora_key_archs("u:down_blocks_0_attentions_0_proj_in"), SDW_ARCH_SD);
    assert_int_equal(sdw_lora_key_archs("1:encoder_layers_0_mlp_fc1"), SDW_ARCH_ALL);
}

/* ---- images ---- */

static void txt2img(sdw_model *m, float *img)
{
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = "a photo of a red fox in the snow";
    p.width = p.height = 64;
    p.steps = 3;
    p.cfg_scale = 5.0f;
    p.seed = 1;
    p.sampler = SDW_SAMPLER_EULER;
    p.schedule = SDW_SCHEDULE_FLOW;
    if (sdw_pipeline_run(m, &p, img) != SDW_OK) fail_msg("%s", sdw_last_error());
}

static void set_lora(sdw_model *m, const char *path, float te, float unet)
{
    sdw_lora_spec spec = { path, te, unet };
    if (sdw_model_set_loras(m, &spec, path ? 1 : 0, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
}

/* The kohya file (every encoder and the transformer) changes the image, as
 * do its text-encoder and transformer parts alone; at strength 0, and once
 * undone, the image is the base one bit for bit. */
static void images(sdw_model *m, const char *label)
{
    enum { N = 64 * 64 * 3 };
    sd3_lora f = { 0 };
    const char *path = file_for(&f, m, kohya_map, COUNT(kohya_map), "image_lora");
    float *base = malloc(N * sizeof *base), *img = malloc(N * sizeof *img);
    txt2img(m, base);
    static const float strengths[][2] = { { 1.0f, 1.0f }, { 1.0f, 0.0f }, { 0.0f, 1.0f } };
    for (int i = 0; i < 3; i++) {
        set_lora(m, path, strengths[i][0], strengths[i][1]);
        txt2img(m, img);
        const double rel = test_rel_l2(img, base, N);
        printf("  %s: LoRA at te %g, unet %g: image rel L2 %.3g from the base image\n", label, strengths[i][0],
               strengths[i][1], rel);
        assert_true(rel > 1e-3);
    }
    set_lora(m, path, 0.0f, 0.0f);
    txt2img(m, img);
    assert_memory_equal(img, base, N * sizeof *img);
    set_lora(m, path, 1.0f, 1.0f);
    set_lora(m, NULL, 0, 0);
    txt2img(m, img);
    assert_memory_equal(img, base, N * sizeof *img);
    printf("  %s: strength 0 and undone: the base image bit for bit\n", label);
    free(base);
    free(img);
    free_file(&f);
}

static void images_f32(void **state)
{
    (void)state;
    images(sd3, "f32");
}

static void images_bf16(void **state)
{
    (void)state;
    if (!test_precision_runs(SDW_PRECISION_BF16)) return;
    sdw_model *m = load_or_fail(SD3_FILE, SDW_PRECISION_BF16, true);
    images(m, "bf16");
    sdw_model_free(m);
}

/* ---- refusals ---- */

/* One module under name, rows x cols. */
static const char *one_module(const char *name, char style, int rows, int cols, const char *stem, sd3_lora *f)
{
    const mapping mp = { name, 'm', "", 0, 0, false, style, PLAIN };
    add_module(f, &mp, rows, cols, 2, 1.0f);
    return lora_file_write(&f->file, stem);
}

static sdw_model *load_flux(void)
{
    sdw_model *m;
    if (lora_load_flux_tiny("flux/models/flux-tiny-dev/flux1-dev.safetensors", SDW_PRECISION_F32, SDW_WT_KEEP, &m) !=
        SDW_OK)
        fail_msg("%s", sdw_last_error());
    return m;
}

static void sd3_loras_refused_elsewhere(void **state)
{
    (void)state;
    sdw_model *flux = load_flux();
    sdw_model *sd1 = lora_load_sd1_tiny();
    size_t bytes_f, bytes_s;
    const sdw_named_layer *fl = &flux->text.te1->layers.v[0], *sl = &sd1->text.te1->layers.v[0];
    void *orig_f = lora_layer_stored_copy(fl, &bytes_f), *orig_s = lora_layer_stored_copy(sl, &bytes_s);

    /* The kohya SD3 file (its CLIP-L keys would fit both). */
    sd3_lora f = { 0 };
    const char *path = file_for(&f, sd3, kohya_map, COUNT(kohya_map), "sd3_kohya");
    lora_expect_refusal(flux, path, "is for SD3 / SD3.5", "flux-dev (FLUX.1)");
    lora_expect_refusal(sd1, path, "is for SD3 / SD3.5", "sd1");
    free_file(&f);
    /* diffusers names FLUX shares: told by the widths on FLUX, by name on SD. */
    path = file_for(&f, sd3, peft_map, 8, "sd3_peft_shared");
    lora_expect_refusal(flux, path, "is it for SD3 / SD3.5?", "flux-dev (FLUX.1)");
    lora_expect_refusal(sd1, path, "is for FLUX.1 or SD3 / SD3.5", "sd1");
    free_file(&f);
    /* T5 alone on SD; CLIP-G alone on FLUX. */
    lora_expect_refusal(sd1, one_module("lora_te3_encoder_block_0_layer_0_SelfAttention_q", 'k', 32, 32, "t5_only", &f),
                        "is for FLUX.1 or SD3 / SD3.5", "sd1");
    free_file(&f);
    lora_expect_refusal(flux,
                        one_module("lora_te2_text_model_encoder_layers_0_mlp_fc1", 'k', 48, 12, "clip_g_only", &f),
                        "for SDXL or SD3 / SD3.5", "flux-dev");
    free_file(&f);
    /* By kohya metadata. */
    lora_expect_refusal(flux, lora_file_with_meta("lora_te1_text_model_encoder_layers_0_mlp_fc1", 32, 8, "sd3_m"),
                        "SD3 / SD3.5", "flux-dev");
    lora_expect_refusal(sd1, lora_file_with_meta("lora_te1_text_model_encoder_layers_0_mlp_fc1", 32, 8, "sd3_large"),
                        "SD3 / SD3.5", "sd1");
    assert_memory_equal(sdw_linear_stored(fl->linear, &bytes_f), orig_f, bytes_f);
    assert_memory_equal(sdw_linear_stored(sl->linear, &bytes_s), orig_s, bytes_s);
    free(orig_f);
    free(orig_s);
    sdw_model_free(flux);
    sdw_model_free(sd1);
}

static void other_loras_refused_on_sd3(void **state)
{
    (void)state;
    const sdw_named_layer *qkv = layer_of(sd3, 'm', "joint_blocks.0.x_block.attn.qkv");
    const sdw_named_layer *q = layer_of(sd3, 'l', "text_model.encoder.layers.0.self_attn.q_proj");
    size_t bytes, bytes_q;
    void *orig = lora_layer_stored_copy(qkv, &bytes), *orig_q = lora_layer_stored_copy(q, &bytes_q);
    char path[1024];
    snprintf(path, sizeof path, "%s", test_data_path("flux/models/flux-tiny-dev/loras/flux-tiny-dev-lora-kohya.safetensors"));
    lora_expect_refusal(sd3, path, "is for FLUX.1", "sd3 (SD3 / SD3.5)");
    snprintf(path, sizeof path, "%s", test_data_path("flux/models/flux-tiny-dev/loras/flux-tiny-dev-lora-peft.safetensors"));
    lora_expect_refusal(sd3, path, "is for FLUX.1", "sd3 (SD3 / SD3.5)");
    snprintf(path, sizeof path, "%s", test_data_path("models/sd1-tiny-lora/sd1-tiny-lora-kohya.safetensors"));
    lora_expect_refusal(sd3, path, "is for an SD 1.x / 2.x / SDXL UNet", "sd3 (SD3 / SD3.5)");
    /* A FLUX diffusers LoRA on names SD3 shares: FLUX's width (32). */
    sd3_lora f = { 0 };
    lora_expect_refusal(sd3, one_module("transformer.transformer_blocks.0.attn.to_q", 'p', 32, 32, "flux_shared", &f),
                        "is it for FLUX.1?", "sd3 (SD3 / SD3.5)");
    free_file(&f);
    lora_expect_refusal(sd3, lora_file_with_meta("lora_te1_text_model_encoder_layers_0_mlp_fc1", 32, 8, "flux1"),
                        "FLUX.1", "sd3");
    lora_expect_refusal(sd3,
                        lora_file_with_meta("lora_te1_text_model_encoder_layers_0_mlp_fc1", 32, 8, "sdxl_base_v1-0"),
                        "SDXL", "sd3");
    /* Its own tag passes (zero factors: no change). */
    const char *own = lora_file_with_meta("lora_unet_joint_blocks_0_x_block_attn_qkv", 3 * H, H, "sd3_m");
    sdw_lora_spec ok = { own, 1.0f, 1.0f };
    if (sdw_model_set_loras(sd3, &ok, 1, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
    assert_int_equal(sdw_model_set_loras(sd3, NULL, 0, NULL), SDW_OK);
    assert_memory_equal(sdw_linear_stored(qkv->linear, &bytes), orig, bytes);
    assert_memory_equal(sdw_linear_stored(q->linear, &bytes_q), orig_q, bytes_q);
    free(orig);
    free(orig_q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_names),
        cmocka_unit_test(kohya_names),
        cmocka_unit_test(peft_names),
        cmocka_unit_test(other_trainers_names),
        cmocka_unit_test(mmdit_x_names),
        cmocka_unit_test(applied_n_of_m),
        cmocka_unit_test(images_f32),
        cmocka_unit_test(images_bf16),
        cmocka_unit_test(sd3_loras_refused_elsewhere),
        cmocka_unit_test(other_loras_refused_on_sd3),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
