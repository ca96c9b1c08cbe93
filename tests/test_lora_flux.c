/* test_lora_flux.c: LoRAs on the tiny FLUX.1-dev model (transformer, CLIP-L,
 * T5), loaded as the pipeline loads it. Each file's modules are mapped here,
 * by hand, to the BFL layer and rows they must change (kohya / sd-scripts,
 * diffusers / PEFT, ai-toolkit / ComfyUI, XLabs names; q/k/v and MLP parts of
 * fused layers; diffusers' norm_out.linear with its halves swapped); the
 * merged weights must equal W + delta computed here from the file with plain
 * loops, and undoing must restore every stored byte. SD LoRAs on FLUX and
 * FLUX LoRAs on SD are refused naming both families. The reference cases
 * lora_kohya_dev / lora_peft_dev run end to end when the FLUX pipeline runs.
 * On the GGUF transformers (Q8_0, Q4_0) a LoRA stays beside the compact
 * layers as branches: each layer must give x @ (dequantized W + delta)^T + b
 * to f32 rounding (every LoRA form, DoRA included, against the same file
 * loaded dense and merged), and lora_kohya_dev's run must equal that dense
 * load's and miss the f32 file's by no more than the quantization does
 * without the LoRA; what re-encoding a merged layer would cost is printed
 * beside it (why branches). */
#include "lora_kit.h"
#include "io/json_file.h"
#include "models/flux.h"
#include "models/lora.h"
#include "models/lora_flux.h"
#include "models/lora_keys.h"
#include "models/model.h"
#include "models/t5.h"
#include "pipeline/pipeline.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEV "flux/models/flux-tiny-dev/"
#define LORAS DEV "loras/"

static sdw_model *flux;

static int setup(void **state)
{
    (void)state;
    if (lora_load_flux_tiny(DEV "flux1-dev.safetensors", SDW_PRECISION_F32, SDW_WT_KEEP, &flux) != SDW_OK) {
        fprintf(stderr, "%s\n", sdw_last_error());
        return -1;
    }
    return lora_tmpdir_make("sdw-test-lora-flux");
}

static int teardown(void **state)
{
    (void)state;
    sdw_model_free(flux);
    return lora_tmpdir_remove();
}

/* ---- the model's layers ---- */

/* part: 't' CLIP-L (transformers names), '5' T5, 'f' the transformer (BFL names). */
static const sdw_named_layer *layer_of(const sdw_model *m, char part, const char *name)
{
    const sdw_layer_list *l = part == 't' ? &m->text.te1->layers : part == '5' ? sdw_t5_layers(m->t5)
                                                                              : sdw_flux_layers(m->flux);
    return lora_find_layer(l, name);
}

/* ---- what a file must do, mapped by hand ---- */

typedef struct {
    const char *module;   /* tensor names up to ".lora_down" / ".lora_A" / ".down" */
    char part;            /* as layer_of */
    const char *layer;    /* the model layer it changes */
    int row0, rows;       /* rows of that layer (rows 0: all) */
    bool swap;            /* the module's rows are the layer's halves swapped */
} mapping;

/* A LoRA module's factors from the file, whatever its naming. */
static bool read_factor(const sdw_safetensors *st, const char *module, const char *const *suffixes, int n,
                        float **data, int64_t *d0, int64_t *d1)
{
    char name[512];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s%s", module, suffixes[i]);
        const sdw_st_tensor *t = sdw_st_find(st, name);
        if (!t) continue;
        *data = test_load_f32(st, name, NULL);
        *d0 = t->shape[0];
        *d1 = t->ndim > 1 ? t->shape[1] : 1;
        return true;
    }
    return false;
}

/* delta [rows, cols] = scale * alpha / rank * up @ down (alpha = rank where the file has none). */
static float *module_delta(const sdw_safetensors *st, const char *module, float scale, int rows, int cols)
{
    static const char *const downs[] = { ".lora_down.weight", ".lora_A.weight", ".down.weight" };
    static const char *const ups[] = { ".lora_up.weight", ".lora_B.weight", ".up.weight" };
    float *down = NULL, *up = NULL;
    int64_t r = 0, in = 0, out = 0, r2 = 0;
    if (!read_factor(st, module, downs, 3, &down, &r, &in) || !read_factor(st, module, ups, 3, &up, &out, &r2))
        fail_msg("%s: no factors in the file", module);
    assert_int_equal(in, cols);
    assert_int_equal(out, rows);
    assert_int_equal(r2, r);
    char name[512];
    snprintf(name, sizeof name, "%s.alpha", module);
    float alpha = (float)r;
    if (sdw_st_find(st, name)) {
        float *a = test_load_f32(st, name, NULL);
        alpha = a[0];
        free(a);
    }
    float *d = malloc((size_t)rows * cols * sizeof *d);
    for (int o = 0; o < rows; o++)
        for (int k = 0; k < cols; k++) {
            double acc = 0;
            for (int j = 0; j < r; j++) acc += (double)up[(size_t)o * r + j] * down[(size_t)j * cols + k];
            d[(size_t)o * cols + k] = (float)(acc * scale * alpha / (double)r);
        }
    free(down);
    free(up);
    return d;
}

/* One model layer a file touches: its weights and stored bytes before (the
 * bytes only when asked: taking them makes a layer on borrowed rows copy
 * them), and the change the test expects. */
typedef struct {
    const sdw_named_layer *l;
    float *before, *want;
    void *orig;
    size_t bytes;
    int rows, cols;
} touched;

static touched *touch(touched *v, int *n, const sdw_model *m, const sdw_named_layer *l, bool keep_bytes)
{
    for (int i = 0; i < *n; i++)
        if (v[i].l->linear == l->linear) return &v[i];
    touched *t = &v[(*n)++];
    t->l = l;
    t->rows = sdw_linear_out(l->linear);
    t->cols = sdw_linear_in(l->linear);
    t->before = lora_layer_weights(m, l);
    t->want = malloc((size_t)t->rows * t->cols * sizeof *t->want);
    memcpy(t->want, t->before, (size_t)t->rows * t->cols * sizeof *t->want);
    if (keep_bytes) t->orig = lora_layer_stored_copy(l, &t->bytes);
    return t;
}

/* The layers path's modules touch in m (v: n entries), each with W + its
 * modules' deltas at (te, unet) computed here; returns how many. */
static int expected(const sdw_model *m, const char *path, const mapping *map, int n, float te, float unet,
                    bool keep_bytes, touched *v)
{
    sdw_safetensors *st;
    assert_int_equal(sdw_st_open(path, &st), SDW_OK);
    int nt = 0;
    for (int i = 0; i < n; i++) {
        const sdw_named_layer *l = layer_of(m, map[i].part, map[i].layer);
        touched *t = touch(v, &nt, m, l, keep_bytes);
        int row0 = l->row0 + map[i].row0, rows = map[i].rows ? map[i].rows : l->rows;
        float *d = module_delta(st, map[i].module, map[i].part == 'f' ? unet : te, rows, t->cols);
        for (int r = 0; r < rows; r++) {
            int dst = row0 + (map[i].swap ? (r + rows / 2) % rows : r);
            for (int c = 0; c < t->cols; c++) t->want[(size_t)dst * t->cols + c] += d[(size_t)r * t->cols + c];
        }
        free(d);
    }
    sdw_st_close(st);
    return nt;
}

/* Applies path at (te, unet), checks every mapped layer against W + its
 * modules' deltas (other layers of the model are not looked at) and the
 * report, then undoes and checks the stored bytes. Returns the worst rel L2. */
static double check_file(sdw_model *m, const char *path, const mapping *map, int n, float te, float unet)
{
    touched *v = calloc((size_t)n, sizeof *v);
    const int nt = expected(m, path, map, n, te, unet, true, v);
    sdw_lora_spec spec = { path, te, unet };
    sdw_lora_report rep;
    if (sdw_model_set_loras(m, &spec, 1, &rep) != SDW_OK) fail_msg("%s: %s", path, sdw_last_error());
    assert_int_equal(rep.keys_applied, n);
    assert_int_equal(rep.keys_total, n);
    double worst = 0;
    for (int i = 0; i < nt; i++) {
        size_t k = (size_t)v[i].rows * v[i].cols;
        float *after = lora_layer_weights(m, v[i].l), *got = malloc(k * sizeof *got), *exp = malloc(k * sizeof *exp);
        for (size_t j = 0; j < k; j++) {
            got[j] = after[j] - v[i].before[j];
            exp[j] = v[i].want[j] - v[i].before[j];
        }
        char what[300];
        snprintf(what, sizeof what, "%s: %s delta", rep.name, v[i].l->name);
        test_check_close(what, got, exp, k, 1e-5);
        double rel = test_rel_l2(got, exp, k);
        if (rel > worst) worst = rel;
        free(after); free(got); free(exp);
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

/* ---- the reference files ---- */

static const mapping kohya_map[] = {
    { "lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 't', "text_model.encoder.layers.0.self_attn.q_proj", 0, 0, false },
    { "lora_te1_text_model_encoder_layers_2_mlp_fc1", 't', "text_model.encoder.layers.2.mlp.fc1", 0, 0, false },
    { "lora_unet_double_blocks_0_img_attn_proj", 'f', "double_blocks.0.img_attn.proj", 0, 0, false },
    { "lora_unet_double_blocks_0_img_attn_qkv", 'f', "double_blocks.0.img_attn.qkv", 0, 0, false },
    { "lora_unet_double_blocks_1_img_mod_lin", 'f', "double_blocks.1.img_mod.lin", 0, 0, false },
    { "lora_unet_double_blocks_1_txt_mlp_0", 'f', "double_blocks.1.txt_mlp.0", 0, 0, false },
    { "lora_unet_single_blocks_0_linear2", 'f', "single_blocks.0.linear2", 0, 0, false },
    { "lora_unet_single_blocks_1_modulation_lin", 'f', "single_blocks.1.modulation.lin", 0, 0, false },
};

/* Hidden width 32 (q, k, v: 32 rows each; the MLP 128). */
#define H 32
static const mapping peft_map[] = {
    { "transformer.single_transformer_blocks.0.proj_mlp", 'f', "single_blocks.0.linear1", 3 * H, 128, false },
    { "transformer.single_transformer_blocks.1.attn.to_v", 'f', "single_blocks.1.linear1", 2 * H, H, false },
    { "transformer.single_transformer_blocks.1.proj_out", 'f', "single_blocks.1.linear2", 0, 0, false },
    { "transformer.transformer_blocks.0.attn.add_v_proj", 'f', "double_blocks.0.txt_attn.qkv", 2 * H, H, false },
    { "transformer.transformer_blocks.0.attn.to_k", 'f', "double_blocks.0.img_attn.qkv", H, H, false },
    { "transformer.transformer_blocks.0.attn.to_q", 'f', "double_blocks.0.img_attn.qkv", 0, H, false },
    { "transformer.transformer_blocks.1.ff.net.0.proj", 'f', "double_blocks.1.img_mlp.0", 0, 0, false },
    { "transformer.transformer_blocks.1.norm1.linear", 'f', "double_blocks.1.img_mod.lin", 0, 0, false },
};
#define COUNT(a) ((int)(sizeof a / sizeof a[0]))

static void kohya_reference_file(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s", test_data_path(LORAS "flux-tiny-dev-lora-kohya.safetensors"));
    double w = check_file(flux, path, kohya_map, COUNT(kohya_map), 1.0f, 1.0f);
    double w2 = check_file(flux, path, kohya_map, COUNT(kohya_map), 0.4f, -1.3f);   /* te and unet apart */
    printf("  kohya: 8 of 8 modules, worst layer delta rel L2 %.3g (strength 1), %.3g (te 0.4, unet -1.3)\n", w, w2);
}

static void peft_reference_file(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s", test_data_path(LORAS "flux-tiny-dev-lora-peft.safetensors"));
    double w = check_file(flux, path, peft_map, COUNT(peft_map), 0.75f, 0.75f);
    printf("  peft: 8 of 8 modules into 6 fused / renamed layers, worst delta rel L2 %.3g\n", w);
}

/* ---- other namings, in files written here ---- */

/* A tensor [d0, d1][:ndim] of the file (ndim 0: one value). */
static void add_tensor(lora_file *f, const char *name, int ndim, int64_t d0, int64_t d1, uint32_t seed)
{
    lora_file_add(f, name, ndim, d0, d1, 0, 0, seed);
}

/* A module of rank r for a layer of rows x cols, with the given factor suffixes. */
static void add_module(lora_file *f, const char *module, const char *down, const char *up, int rows, int cols, int r,
                       float alpha)
{
    char name[512];
    snprintf(name, sizeof name, "%s%s", module, down);
    add_tensor(f, name, 2, r, cols, (uint32_t)(f->n * 7 + 1));
    snprintf(name, sizeof name, "%s%s", module, up);
    add_tensor(f, name, 2, rows, r, (uint32_t)(f->n * 7 + 2));
    if (alpha > 0) {
        snprintf(name, sizeof name, "%s.alpha", module);
        add_tensor(f, name, 0, 0, 0, 1);
        f->data[f->n - 1][0] = alpha;
    }
}

/* Writes a file holding map's modules (shapes from the model's layers). */
static const char *file_for(lora_file *f, const mapping *map, int n, const char *down, const char *up, float alpha,
                            const char *stem)
{
    for (int i = 0; i < n; i++) {
        const sdw_named_layer *l = layer_of(flux, map[i].part, map[i].layer);
        add_module(f, map[i].module, down, up, map[i].rows ? map[i].rows : l->rows, sdw_linear_in(l->linear), 2 + i % 3,
                   alpha);
    }
    return lora_file_write(f, stem);
}

static void xlabs_processors(void **state)
{
    (void)state;
    static const mapping map[] = {
        { "double_blocks.0.processor.qkv_lora1", 'f', "double_blocks.0.img_attn.qkv", 0, 0, false },
        { "double_blocks.0.processor.qkv_lora2", 'f', "double_blocks.0.txt_attn.qkv", 0, 0, false },
        { "double_blocks.1.processor.proj_lora1", 'f', "double_blocks.1.img_attn.proj", 0, 0, false },
        { "double_blocks.1.processor.proj_lora2", 'f', "double_blocks.1.txt_attn.proj", 0, 0, false },
        { "single_blocks.0.processor.qkv_lora", 'f', "single_blocks.0.linear1", 0, 3 * H, false },
        { "single_blocks.1.processor.proj_lora", 'f', "single_blocks.1.linear2", 0, 0, false },
    };
    lora_file f = { 0 };
    /* XLabs keeps no alpha: up @ down at strength 1. */
    double w = check_file(flux, file_for(&f, map, COUNT(map), ".down.weight", ".up.weight", 0, "xlabs"), map,
                          COUNT(map), 1.0f, 0.8f);
    printf("  XLabs: worst delta rel L2 %.3g\n", w);
    lora_file_free(&f);
}

static void ai_toolkit_comfy_and_diffusers_names(void **state)
{
    (void)state;
    static const mapping map[] = {
        /* ComfyUI / ai-toolkit: BFL names under diffusion_model. */
        { "diffusion_model.double_blocks.0.txt_mod.lin", 'f', "double_blocks.0.txt_mod.lin", 0, 0, false },
        { "diffusion_model.single_blocks.1.linear1", 'f', "single_blocks.1.linear1", 0, 0, false },
        /* diffusers names of the top-level layers (and norm_out, halves swapped, beside the BFL name). */
        { "transformer.x_embedder", 'f', "img_in", 0, 0, false },
        { "transformer.context_embedder", 'f', "txt_in", 0, 0, false },
        { "transformer.time_text_embed.timestep_embedder.linear_1", 'f', "time_in.in_layer", 0, 0, false },
        { "transformer.time_text_embed.guidance_embedder.linear_2", 'f', "guidance_in.out_layer", 0, 0, false },
        { "transformer.time_text_embed.text_embedder.linear_1", 'f', "vector_in.in_layer", 0, 0, false },
        { "transformer.proj_out", 'f', "final_layer.linear", 0, 0, false },
        { "transformer.norm_out.linear", 'f', "final_layer.adaLN_modulation.1", 0, 0, true },
        { "diffusion_model.final_layer.adaLN_modulation.1", 'f', "final_layer.adaLN_modulation.1", 0, 0, false },
        /* the rest of a double block, and the split single-block q / k next to its MLP. */
        { "transformer.transformer_blocks.1.attn.to_out.0", 'f', "double_blocks.1.img_attn.proj", 0, 0, false },
        { "transformer.transformer_blocks.1.attn.to_add_out", 'f', "double_blocks.1.txt_attn.proj", 0, 0, false },
        { "transformer.transformer_blocks.1.attn.add_q_proj", 'f', "double_blocks.1.txt_attn.qkv", 0, H, false },
        { "transformer.transformer_blocks.1.attn.add_k_proj", 'f', "double_blocks.1.txt_attn.qkv", H, H, false },
        { "transformer.transformer_blocks.0.ff.net.2", 'f', "double_blocks.0.img_mlp.2", 0, 0, false },
        { "transformer.transformer_blocks.0.ff_context.net.0.proj", 'f', "double_blocks.0.txt_mlp.0", 0, 0, false },
        { "transformer.transformer_blocks.0.ff_context.net.2", 'f', "double_blocks.0.txt_mlp.2", 0, 0, false },
        { "transformer.transformer_blocks.0.norm1_context.linear", 'f', "double_blocks.0.txt_mod.lin", 0, 0, false },
        { "transformer.single_transformer_blocks.0.attn.to_q", 'f', "single_blocks.0.linear1", 0, H, false },
        { "transformer.single_transformer_blocks.0.attn.to_k", 'f', "single_blocks.0.linear1", H, H, false },
        { "transformer.single_transformer_blocks.0.norm.linear", 'f', "single_blocks.0.modulation.lin", 0, 0, false },
        /* the text encoders by PEFT names: CLIP-L as text_encoder, T5 as text_encoder_2. */
        { "text_encoder.text_model.encoder.layers.1.self_attn.k_proj", 't', "text_model.encoder.layers.1.self_attn.k_proj", 0, 0, false },
        { "text_encoder_2.encoder.block.0.layer.0.SelfAttention.q", '5', "encoder.block.0.layer.0.SelfAttention.q", 0, 0, false },
    };
    lora_file f = { 0 };
    double w = check_file(flux, file_for(&f, map, COUNT(map), ".lora_A.weight", ".lora_B.weight", 0, "peft_names"), map,
                          COUNT(map), -0.6f, 1.2f);
    printf("  ai-toolkit / ComfyUI / diffusers names (%d modules): worst delta rel L2 %.3g\n", COUNT(map), w);
    lora_file_free(&f);
}

static void kohya_t5_and_diffusers_split_names(void **state)
{
    (void)state;
    static const mapping map[] = {
        /* sd-scripts' T5 (lora_te3_) and lora_te2_ for it too. */
        { "lora_te3_encoder_block_0_layer_1_DenseReluDense_wi_0", '5', "encoder.block.0.layer.1.DenseReluDense.wi_0", 0, 0, false },
        { "lora_te2_encoder_block_1_layer_0_SelfAttention_o", '5', "encoder.block.1.layer.0.SelfAttention.o", 0, 0, false },
        /* kohya-style names of diffusers modules, into fused layers' rows. */
        { "lora_transformer_single_transformer_blocks_1_attn_to_k", 'f', "single_blocks.1.linear1", H, H, false },
        { "lora_transformer_single_transformer_blocks_1_proj_mlp", 'f', "single_blocks.1.linear1", 3 * H, 128, false },
        { "lora_unet_transformer_blocks_1_attn_to_v", 'f', "double_blocks.1.img_attn.qkv", 2 * H, H, false },
        { "lora_unet_single_blocks_0_linear1", 'f', "single_blocks.0.linear1", 0, 0, false },
        { "lora_unet_final_layer_linear", 'f', "final_layer.linear", 0, 0, false },
    };
    lora_file f = { 0 };
    double w = check_file(flux, file_for(&f, map, COUNT(map), ".lora_down.weight", ".lora_up.weight", 1.5f, "kohya_more"),
                          map, COUNT(map), 0.9f, 0.7f);
    printf("  kohya T5 / split names: worst delta rel L2 %.3g\n", w);
    lora_file_free(&f);
}

static void key_names(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        { "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight", "u:double_blocks_0_img_attn_qkv" },
        { "transformer.transformer_blocks.0.attn.to_q.lora_A.weight", "u:transformer_blocks_0_attn_to_q" },
        { "diffusion_model.single_blocks.3.linear1.lora_B.weight", "u:single_blocks_3_linear1" },
        { "double_blocks.0.processor.proj_lora1.down.weight", "u:double_blocks_0_proj_lora1" },
        { "single_blocks.2.processor.qkv_lora.up.weight", "u:single_blocks_2_qkv" },
        { "lora_te3_encoder_block_0_layer_0_SelfAttention_q.alpha", "2:encoder_block_0_layer_0_SelfAttention_q" },
        { "text_encoder_2.encoder.block.0.layer.1.DenseReluDense.wo.lora_A.weight",
          "1:encoder_block_0_layer_1_DenseReluDense_wo" },
        { "lora_transformer_single_transformer_blocks_0_proj_mlp.lora_up.weight",
          "u:single_transformer_blocks_0_proj_mlp" },
    };
    char key[320];
    sdw_lora_role role;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_true(sdw_lora_split_name(cases[i][0], key, sizeof key, &role));
        assert_string_equal(key, cases[i][1]);
    }
    assert_int_equal(sdw_lora_key_family("u:double_blocks_0_img_attn_qkv"), SDW_LORA_FOR_FLUX);
    assert_int_equal(sdw_lora_key_family("u:norm_out_linear"), SDW_LORA_FOR_FLUX);
    assert_int_equal(sdw_lora_key_family("2:encoder_block_0_layer_0_SelfAttention_q"), SDW_LORA_FOR_FLUX);
    assert_int_equal(sdw_lora_key_family("u:down_blocks_0_attentions_0_proj_in"), SDW_LORA_FOR_SD);
    assert_int_equal(sdw_lora_key_family("u:input_blocks_1_1_proj_in"), SDW_LORA_FOR_SD);
    assert_int_equal(sdw_lora_key_family("0:encoder_layers_0_mlp_fc1"), SDW_LORA_FOR_ANY);
}

/* ---- refusals ---- */

static void families_refused(void **state)
{
    (void)state;
    char path[1024];
    const sdw_named_layer *qkv = layer_of(flux, 'f', "double_blocks.0.img_attn.qkv");
    size_t bytes;
    void *orig = lora_layer_stored_copy(qkv, &bytes);
    /* SD LoRAs (kohya with CLIP keys FLUX's CLIP-L would take; diffusers) on FLUX. */
    snprintf(path, sizeof path, "%s", test_data_path("models/sd1-tiny-lora/sd1-tiny-lora-kohya.safetensors"));
    lora_expect_refusal(flux, path, "for an SD 1.x / 2.x / SDXL UNet", "flux-dev");
    lora_expect_refusal(flux, lora_file_with_meta("lora_unet_double_blocks_0_img_attn_qkv", 96, 32, "sd_v1"), "SD 1.x",
                        "flux-dev");
    /* A FLUX LoRA with a FLUX metadata tag passes the family check. */
    sdw_lora_spec ok = { lora_file_with_meta("lora_unet_double_blocks_0_img_attn_qkv", 96, 32, "flux1"), 1.0f, 1.0f };
    if (sdw_model_set_loras(flux, &ok, 1, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
    assert_int_equal(sdw_model_set_loras(flux, NULL, 0, NULL), SDW_OK);
    /* SDXL's second CLIP on FLUX. */
    lora_file f = { 0 };
    add_module(&f, "lora_te2_text_model_encoder_layers_0_mlp_fc1", ".lora_down.weight", ".lora_up.weight", 32, 8, 2, 0);
    lora_expect_refusal(flux, lora_file_write(&f, "sdxl_te2"), "for SDXL", "flux-dev");
    lora_file_free(&f);
    assert_memory_equal(sdw_linear_stored(qkv->linear, &bytes), orig, bytes);
    free(orig);

    /* The FLUX LoRAs on SD 1.x. */
    sdw_model *sd = lora_load_sd1_tiny();
    snprintf(path, sizeof path, "%s", test_data_path(LORAS "flux-tiny-dev-lora-kohya.safetensors"));
    lora_expect_refusal(sd, path, "is for FLUX.1", "sd1");
    snprintf(path, sizeof path, "%s", test_data_path(LORAS "flux-tiny-dev-lora-peft.safetensors"));
    lora_expect_refusal(sd, path, "is for FLUX.1", "sd1");
    lora_expect_refusal(sd, lora_file_with_meta("lora_te1_text_model_encoder_layers_0_mlp_fc1", 32, 8, "flux1"),
                        "FLUX.1", "sd1");
    sdw_model_free(sd);
}

/* ---- compact transformers (GGUF): LoRAs as branches beside the weights ---- */

/* The same merge (decode, add, re-encode) on layers made quantized here from
 * the f32 model's img qkv, for the types whose 32-element blocks fit its
 * 32-wide rows: the figure the loader's quantized layers will show. */
static void requantize_cost(sdw_qtype qt, double delta_of_w)
{
    const sdw_named_layer *l = layer_of(flux, 'f', "double_blocks.0.img_attn.qkv");
    int rows = sdw_linear_out(l->linear), cols = sdw_linear_in(l->linear);
    size_t n = (size_t)rows * cols, rb = sdw_qtype_row_bytes(qt, cols);
    assert_true(rb > 0);
    float *W = lora_layer_weights(flux, l), *Wq = malloc(n * sizeof *Wq), *Wm = malloc(n * sizeof *Wm);
    unsigned char *blocks = malloc((size_t)rows * rb);
    for (int r = 0; r < rows; r++) sdw_qtype_quantize_row(qt, W + (size_t)r * cols, blocks + (size_t)r * rb, cols);
    sdw_linear *q;
    assert_int_equal(sdw_linear_create_quant(flux->be, cols, rows, qt, blocks, NULL, &q), SDW_OK);
    sdw_safetensors *st;
    assert_int_equal(sdw_st_open(test_data_path(LORAS "flux-tiny-dev-lora-kohya.safetensors"), &st), SDW_OK);
    float *d = module_delta(st, "lora_unet_double_blocks_0_img_attn_qkv", 1.0f, rows, cols);
    /* The tiny file's delta is as large as W; a trained LoRA's is nearer 1 %. */
    double dd = 0, ww = 0;
    for (size_t i = 0; i < n; i++) {
        dd += (double)d[i] * d[i];
        ww += (double)W[i] * W[i];
    }
    for (size_t i = 0; i < n; i++) d[i] *= (float)(delta_of_w * sqrt(ww / dd));
    assert_int_equal(sdw_linear_get_weights(flux->be, q, Wq), SDW_OK);
    for (size_t i = 0; i < n; i++) Wm[i] = Wq[i] + d[i];
    assert_int_equal(sdw_linear_set_weights(flux->be, q, Wm), SDW_OK);
    float *got = malloc(n * sizeof *got);
    assert_int_equal(sdw_linear_get_weights(flux->be, q, got), SDW_OK);
    double e2 = 0, d2 = 0, w2 = 0, qe2 = 0, kept = 0;
    for (size_t i = 0; i < n; i++) {
        kept += ((double)got[i] - Wq[i]) * d[i];
        e2 += ((double)got[i] - Wm[i]) * ((double)got[i] - Wm[i]);
        qe2 += ((double)Wq[i] - W[i]) * ((double)Wq[i] - W[i]);
        d2 += (double)d[i] * d[i];
        w2 += (double)W[i] * W[i];
    }
    /* kept: the merged change projected on the delta (1 = all of it). */
    printf("  %-7s delta %.2g of W: re-encoded W + delta off by %.3g of the delta, %.3g of W (the type's own "
           "error on W: %.3g); delta kept %.3g\n", sdw_qtype_name(qt), sqrt(d2 / w2), sqrt(e2 / d2), sqrt(e2 / w2),
           sqrt(qe2 / w2), kept / d2);
    sdw_linear_free(q);
    sdw_st_close(st);
    free(W); free(Wq); free(Wm); free(blocks); free(d); free(got);
}

/* x [XM, in] for a layer check, the same for every model. */
#define XM 5
static float *layer_x(const sdw_named_layer *l, uint32_t seed)
{
    size_t n = (size_t)XM * sdw_linear_in(l->linear);
    float *x = malloc(n * sizeof *x);
    test_fill(x, n, seed);
    return x;
}

/* y [XM, out] = x @ W^T + b through the layer (x NULL: zeros, which gives b). */
static float *layer_y(const sdw_model *m, const sdw_named_layer *l, const float *x)
{
    float *zero = x ? NULL : calloc((size_t)XM * sdw_linear_in(l->linear), sizeof *zero);
    float *y = malloc((size_t)XM * sdw_linear_out(l->linear) * sizeof *y);
    assert_int_equal(sdw_linear_forward(m->be, l->linear, x ? x : zero, XM, y), SDW_OK);
    free(zero);
    return y;
}

/* y = x @ w^T + b in double, rounded to f32. */
static float *reference_y(const float *x, const float *w, const float *b, int in, int out)
{
    float *y = malloc((size_t)XM * out * sizeof *y);
    for (int m = 0; m < XM; m++)
        for (int o = 0; o < out; o++) {
            double s = b[(size_t)m * out + o];
            for (int k = 0; k < in; k++) s += (double)x[(size_t)m * in + k] * w[(size_t)o * in + k];
            y[(size_t)m * out + o] = (float)s;
        }
    return y;
}

/* check_file through the layers' outputs, for a model whose transformer is
 * compact: each mapped layer must give x @ (W + its modules' deltas)^T + b
 * (W as get_weights decodes it) to f32 rounding, whether it merged (dense:
 * CLIP-L) or took branches (compact: then its weights and whether it
 * borrows its rows stay as they were); undoing gives every output back bit
 * for bit and drops the branches. Returns the worst rel L2. */
static double check_outputs(sdw_model *m, const char *path, const mapping *map, int n, float te, float unet,
                            int *n_branched)
{
    touched *v = calloc((size_t)n, sizeof *v);
    const int nt = expected(m, path, map, n, te, unet, false, v);
    float *x[16], *b[16], *base[16];
    bool borrows[16];
    assert_true(nt <= 16);
    for (int i = 0; i < nt; i++) {
        x[i] = layer_x(v[i].l, 300u + (uint32_t)i);
        b[i] = layer_y(m, v[i].l, NULL);
        base[i] = layer_y(m, v[i].l, x[i]);
        borrows[i] = sdw_linear_borrows(v[i].l->linear);
    }
    sdw_lora_spec spec = { path, te, unet };
    sdw_lora_report rep;
    if (sdw_model_set_loras(m, &spec, 1, &rep) != SDW_OK) fail_msg("%s: %s", path, sdw_last_error());
    assert_int_equal(rep.keys_applied, n);
    double worst = 0;
    *n_branched = 0;
    for (int i = 0; i < nt; i++) {
        const sdw_named_layer *l = v[i].l;
        float *y = layer_y(m, l, x[i]), *ref = reference_y(x[i], v[i].want, b[i], v[i].cols, v[i].rows);
        char what[300];
        snprintf(what, sizeof what, "%s: %s output", rep.name, l->name);
        const size_t k = (size_t)XM * v[i].rows;
        test_check_close(what, y, ref, k, 1e-6);
        if (test_rel_l2(y, ref, k) > worst) worst = test_rel_l2(y, ref, k);
        if (sdw_linear_quant_type(l->linear, NULL)) {
            (*n_branched)++;
            assert_true(sdw_linear_branch_bytes(l->linear) > 0);
            float *w = lora_layer_weights(m, l);
            assert_memory_equal(w, v[i].before, (size_t)v[i].rows * v[i].cols * sizeof *w);
            assert_true(sdw_linear_borrows(l->linear) == borrows[i]);
            free(w);
        }
        free(y);
        free(ref);
    }
    assert_int_equal(sdw_model_set_loras(m, NULL, 0, NULL), SDW_OK);
    for (int i = 0; i < nt; i++) {
        float *y = layer_y(m, v[i].l, x[i]);
        assert_memory_equal(y, base[i], (size_t)XM * v[i].rows * sizeof *y);
        assert_int_equal(sdw_linear_branch_bytes(v[i].l->linear), 0);
        free(y), free(x[i]), free(b[i]), free(base[i]), free(v[i].before), free(v[i].want);
    }
    free(v);
    return worst;
}

/* LyCORIS forms and DoRA on the tiny transformer (hidden 32), kept beside
 * compact layers as factors (LoHa: rank 2 x 3; LoKr with a factored w2:
 * 4 x 2) or as dense rows (LoKr of two full factors: rank 2 x 16 is no
 * thinner than its 128 x 32 layer; DoRA), on diffusers' norm_out.linear
 * with its halves swapped too. The second file's DoRA follows the first's
 * LoHa on that layer: its norms take W with the LoHa merged. */
typedef struct {
    const char *part;
    int d0, d1;
} part_spec;
typedef struct {
    const char *module;
    const part_spec *parts;
    int n;
    float alpha;   /* 0: none in the file */
    const char *layer;   /* DoRA: the layer whose row norms its magnitudes scatter about */
    bool swap;           /* its halves swapped */
} module_spec;

/* DoRA's magnitudes [rows]: the f32 model's row norms of layer, within 10%,
 * as a trained DoRA's stay near them. */
static void magnitudes(const module_spec *m, float *mag, int rows)
{
    const sdw_named_layer *l = layer_of(flux, 'f', m->layer);
    float *w = lora_layer_weights(flux, l);
    const int in = sdw_linear_in(l->linear);
    for (int r = 0; r < rows; r++) {
        const int lr = m->swap ? (r + rows / 2) % rows : r;
        double ss = 0;
        for (int k = 0; k < in; k++) ss += (double)w[(size_t)lr * in + k] * w[(size_t)lr * in + k];
        mag[r] = (float)sqrt(ss) * (1.0f + 0.1f * mag[r]);
    }
    free(w);
}

/* A file of the given modules, random factors. */
static char *write_modules(const module_spec *mods, int n, const char *stem)
{
    lora_file f = { 0 };
    char name[256];
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < mods[i].n; k++) {
            const part_spec *p = &mods[i].parts[k];
            snprintf(name, sizeof name, "%s.%s", mods[i].module, p->part);
            add_tensor(&f, name, 2, p->d0, p->d1, (uint32_t)(500 + 10 * i + k));
            if (strstr(p->part, "dora") || strstr(p->part, "magnitude")) magnitudes(&mods[i], f.data[f.n - 1], p->d0);
        }
        if (mods[i].alpha > 0) {
            snprintf(name, sizeof name, "%s.alpha", mods[i].module);
            add_tensor(&f, name, 0, 0, 0, 1);
            f.data[f.n - 1][0] = mods[i].alpha;
        }
    }
    char *path = strdup(lora_file_write(&f, stem));
    lora_file_free(&f);
    return path;
}

static void write_forms(char **a, char **b)
{
    static const part_spec hada[] = { { "hada_w1_a", 96, 2 }, { "hada_w1_b", 2, 32 }, { "hada_w2_a", 96, 3 },
                                      { "hada_w2_b", 3, 32 } };
    static const part_spec lokr[] = { { "lokr_w1", 4, 4 }, { "lokr_w2_a", 8, 2 }, { "lokr_w2_b", 2, 8 } };
    static const part_spec lokr_full[] = { { "lokr_w1", 4, 2 }, { "lokr_w2", 32, 16 } };
    static const part_spec dora[] = { { "lora_down.weight", 4, 160 }, { "lora_up.weight", 32, 4 },
                                      { "dora_scale", 32, 1 } };
    static const part_spec hada_out[] = { { "hada_w1_a", 64, 2 }, { "hada_w1_b", 2, 32 }, { "hada_w2_a", 64, 2 },
                                          { "hada_w2_b", 2, 32 } };
    static const part_spec dora_out[] = { { "lora_A.weight", 2, 32 }, { "lora_B.weight", 64, 2 },
                                          { "lora_magnitude_vector", 64, 1 } };
    static const module_spec in_a[] = {
        { "lora_unet_double_blocks_0_img_attn_qkv", hada, 4, 1.5f, NULL, false },
        { "lora_unet_double_blocks_0_img_attn_proj", lokr, 3, 1.0f, NULL, false },
        { "lora_unet_double_blocks_1_img_mlp_0", lokr_full, 2, 0, NULL, false },
        { "lora_unet_single_blocks_0_linear2", dora, 3, 4.0f, "single_blocks.0.linear2", false },
        { "transformer.norm_out.linear", hada_out, 4, 0, NULL, false },
    };
    static const module_spec in_b[] = {
        { "transformer.norm_out.linear", dora_out, 3, 0, "final_layer.adaLN_modulation.1", true },
    };
    *a = write_modules(in_a, COUNT(in_a), "forms_a");
    *b = write_modules(in_b, COUNT(in_b), "forms_b");
}

/* Every transformer layer of q (compact, LoRAs as branches) against d (the
 * same file loaded dense, LoRAs merged), on the same x. Returns the worst
 * rel L2; counts q's layers holding branches. */
static double compare_layers(const sdw_model *q, const sdw_model *d, int *n_branched)
{
    const sdw_layer_list *lq = sdw_flux_layers(q->flux);
    double worst = 0;
    *n_branched = 0;
    for (int i = 0; i < lq->n; i++) {
        const sdw_named_layer *a = &lq->v[i], *b = layer_of(d, 'f', a->name);
        float *x = layer_x(a, 700u + (uint32_t)i), *ya = layer_y(q, a, x), *yb = layer_y(d, b, x);
        const size_t k = (size_t)XM * sdw_linear_out(a->linear);
        char what[300];
        snprintf(what, sizeof what, "branches vs merged: %s", a->name);
        if (test_rel_l2(ya, yb, k) > 1e-6) test_check_close(what, ya, yb, k, 1e-6);
        if (test_rel_l2(ya, yb, k) > worst) worst = test_rel_l2(ya, yb, k);
        bool first = true;   /* a fused layer is listed under each of its names */
        for (int j = 0; j < i; j++) first &= lq->v[j].linear != a->linear;
        *n_branched += first && sdw_linear_branch_bytes(a->linear) > 0;
        assert_false(sdw_linear_branch_bytes(b->linear) > 0);
        free(x), free(ya), free(yb);
    }
    return worst;
}

static void keep_warning(sdw_log_level level, const char *msg, void *user)
{
    if (level == SDW_LOG_WARN) snprintf(user, 512, "%s", msg);
}

/* With branches capped at 1 value beyond a file's own factors, forms_a's
 * layers (LyCORIS forms, DoRA) merge, re-encoded, with a warning; the
 * kohya file's plain LoRAs stay branches (they hold only their factors);
 * undo restores the merged weights exactly. */
static void dense_branch_cap(sdw_model *q, const char *kohya, const char *forms_a)
{
    const sdw_named_layer *full = layer_of(q, 'f', "double_blocks.1.img_mlp.0");
    const sdw_named_layer *plain = layer_of(q, 'f', "double_blocks.1.img_mod.lin");
    float *before = lora_layer_weights(q, full);
    const size_t n = (size_t)sdw_linear_out(full->linear) * sdw_linear_in(full->linear);
    char warning[512] = "";
    sdw_set_log(keep_warning, warning, SDW_LOG_WARN);
    sdw_lora_set_dense_branch_max(1);
    const sdw_lora_spec set[] = { { kohya, 1.0f, 1.0f }, { forms_a, 1.0f, 1.0f } };
    if (sdw_model_set_loras(q, set, 2, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
    sdw_lora_set_dense_branch_max(0);
    sdw_set_log(NULL, NULL, SDW_LOG_WARN);
    printf("  dense branches capped: %s\n", warning);
    assert_non_null(strstr(warning, "merged into the weights"));
    assert_int_equal(sdw_linear_branch_bytes(full->linear), 0);
    assert_true(sdw_linear_branch_bytes(plain->linear) > 0);
    float *after = lora_layer_weights(q, full);
    assert_true(memcmp(after, before, n * sizeof *after) != 0);
    assert_int_equal(sdw_model_set_loras(q, NULL, 0, NULL), SDW_OK);
    free(after);
    after = lora_layer_weights(q, full);
    assert_memory_equal(after, before, n * sizeof *after);
    assert_int_equal(sdw_linear_branch_bytes(plain->linear), 0);
    free(after);
    free(before);
}

static void gguf_branches(const char *file, const char *label)
{
    sdw_model *q, *d;
    if (lora_load_flux_tiny(file, SDW_PRECISION_F32, SDW_WT_KEEP, &q) != SDW_OK) {
        printf("  %s: not loadable here (%s); skipped\n", label, sdw_last_error());
        return;
    }
    if (lora_load_flux_tiny(file, SDW_PRECISION_F32, SDW_WT_F32, &d) != SDW_OK) fail_msg("%s", sdw_last_error());
    sdw_qtype qt;
    assert_true(sdw_linear_quant_type(layer_of(q, 'f', "double_blocks.0.img_attn.qkv")->linear, &qt));
    assert_false(sdw_linear_quant_type(layer_of(d, 'f', "double_blocks.0.img_attn.qkv")->linear, NULL));
    char kohya[1024], peft[1024];
    snprintf(kohya, sizeof kohya, "%s", test_data_path(LORAS "flux-tiny-dev-lora-kohya.safetensors"));
    snprintf(peft, sizeof peft, "%s", test_data_path(LORAS "flux-tiny-dev-lora-peft.safetensors"));
    int nb, nb2, nb3;
    /* The reference files against deltas computed here: whole fused layers, and q / k / v row ranges. */
    double w1 = check_outputs(q, kohya, kohya_map, COUNT(kohya_map), 0.4f, -1.3f, &nb);
    double w2 = check_outputs(q, peft, peft_map, COUNT(peft_map), 0.75f, 0.75f, &nb2);
    printf("  %s (%s): layer = x @ (dequantized W + delta)^T + b: kohya worst rel L2 %.3g (%d compact layers "
           "branched), peft %.3g (%d, q / k / v rows)\n", label, sdw_qtype_name(qt), w1, nb, w2, nb2);
    /* Four LoRAs at once, LyCORIS forms and DoRA included, against the same set merged into the dense load. */
    char *fa, *fb;
    write_forms(&fa, &fb);
    const sdw_lora_spec set[] = { { kohya, 1.0f, 1.0f }, { peft, 0.75f, 0.75f }, { fa, 1.0f, 0.8f }, { fb, 1.0f, -0.6f } };
    sdw_lora_report rq[4], rd[4];
    if (sdw_model_set_loras(q, set, 4, rq) != SDW_OK) fail_msg("%s", sdw_last_error());
    if (sdw_model_set_loras(d, set, 4, rd) != SDW_OK) fail_msg("%s", sdw_last_error());
    for (int i = 0; i < 4; i++) assert_int_equal(rq[i].keys_applied, rd[i].keys_applied);
    double w3 = compare_layers(q, d, &nb3);
    printf("  %s: kohya + peft + LoHa / LoKr / DoRA files: every transformer layer against the dense load "
           "merged, worst rel L2 %.3g (%d layers branched)\n", label, w3, nb3);
    assert_int_equal(sdw_model_set_loras(q, NULL, 0, NULL), SDW_OK);
    assert_int_equal(sdw_model_set_loras(d, NULL, 0, NULL), SDW_OK);
    w3 = compare_layers(q, d, &nb3);
    assert_int_equal(nb3, 0);
    dense_branch_cap(q, kohya, fa);
    free(fa), free(fb);
    sdw_model_free(q);
    sdw_model_free(d);
}

static void gguf_transformers(void **state)
{
    (void)state;
    static const sdw_qtype types[] = { SDW_QT_Q8_0, SDW_QT_Q5_1, SDW_QT_Q4_0, SDW_QT_F8_E4M3, SDW_QT_BF16 };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) requantize_cost(types[i], 1.0);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) requantize_cost(types[i], 0.01);
    gguf_branches(DEV "flux1-dev-Q8_0.gguf", "GGUF Q8_0");
    gguf_branches(DEV "flux1-dev-Q4_0.gguf", "GGUF Q4_0");
}

/* ---- the reference cases end to end ---- */

typedef struct {
    const sdw_safetensors *ref;
    const char *name;
    int steps;
    double worst;
} observer;

static void on_tensor(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape)
{
    observer *o = user;
    (void)step;
    if (strcmp(name, "step_latents")) return;
    /* We observe NCHW [1, 16, h, w]; the reference holds the packed tokens. */
    assert_int_equal(ndim, 4);
    int C = (int)shape[1], h = (int)shape[2], w = (int)shape[3];
    size_t n = (size_t)C * h * w;
    float *packed = malloc(n * sizeof *packed);
    sdw_flux_pack(x, C, h, w, packed);
    float *ref = test_load_f32(o->ref, "step_latents", NULL);
    double rel = test_rel_l2(packed, ref + (size_t)o->steps++ * n, n);
    if (rel > o->worst) o->worst = rel;
    free(ref);
    free(packed);
}

/* A reference case's run: its JSON (kept in *j for the strings p points
 * into), pipeline parameters and LoRA (path: 1024 bytes). */
static void case_params(const char *name, cJSON **j, sdw_pipeline_params *pp, sdw_lora_spec *spec, char *path)
{
    char file[1024];
    snprintf(file, sizeof file, "flux/cases/%s.json", name);
    assert_int_equal(sdw_json_load_file(test_data_path(file), j), SDW_OK);
    const cJSON *lora = cJSON_GetObjectItem(*j, "lora");
    snprintf(path, 1024, "%s/%s", test_data_path("flux/models"), sdw_json_str(lora, "file", ""));
    float scale = (float)cJSON_GetObjectItem(lora, "scale")->valuedouble;
    *spec = (sdw_lora_spec){ path, scale, scale };
    sdw_pipeline_params *p = pp;
    sdw_pipeline_params_init(p);
    p->prompt = sdw_json_str(*j, "prompt", "");
    p->width = sdw_json_int(*j, "width", 0);
    p->height = sdw_json_int(*j, "height", 0);
    p->steps = sdw_json_int(*j, "steps", 0);
    p->cfg_scale = (float)cJSON_GetObjectItem(*j, "true_cfg_scale")->valuedouble;
    p->guidance = (float)cJSON_GetObjectItem(*j, "guidance_scale")->valuedouble;
    p->seed = (uint64_t)cJSON_GetObjectItem(*j, "seed")->valuedouble;
    p->sampler = SDW_SAMPLER_EULER;
    p->schedule = SDW_SCHEDULE_FLOW;
}

/* gate: f32 1e-4; bf16 3e-2 (the README's end-to-end gate for tiny networks). */
static void run_case(sdw_model *m, const char *name, double gate)
{
    char path[1024];
    cJSON *j;
    sdw_pipeline_params p;
    sdw_lora_spec spec;
    case_params(name, &j, &p, &spec, path);
    char file[1024];
    snprintf(file, sizeof file, "flux/cases/%s.safetensors", name);
    sdw_safetensors *ref = test_open_st(file);
    sdw_lora_report rep;
    if (sdw_model_set_loras(m, &spec, 1, &rep) != SDW_OK) fail_msg("%s: %s", name, sdw_last_error());
    assert_int_equal(rep.keys_applied, rep.keys_total);

    observer o = { ref, name, 0, 0 };
    p.observe = on_tensor;
    p.observe_user = &o;
    size_t n = (size_t)p.width * p.height * 3;
    float *img = malloc(n * sizeof *img);
    if (sdw_pipeline_run(m, &p, img) != SDW_OK) fail_msg("%s: %s", name, sdw_last_error());
    float *ref_img = test_load_f32(ref, "image", NULL);
    char what[256];
    snprintf(what, sizeof what, "%s image", name);
    test_check_close(what, img, ref_img, n, gate);
    assert_int_equal(o.steps, (int)sdw_st_find(ref, "step_latents")->shape[0]);
    printf("  %-16s %s: %d of %d keys, worst step_latents rel L2 %.3g over %d steps, image %.3g\n", name,
           sdw_precision_name(m->info.precision), rep.keys_applied, rep.keys_total, o.worst, o.steps,
           test_rel_l2(img, ref_img, n));
    assert_true(o.worst < gate);
    /* Without the LoRA the same run must miss the reference by far (the LoRA is what it checks). */
    assert_int_equal(sdw_model_set_loras(m, NULL, 0, NULL), SDW_OK);
    observer base = { ref, name, 0, 0 };
    p.observe_user = &base;
    if (sdw_pipeline_run(m, &p, img) != SDW_OK) fail_msg("%s: %s", name, sdw_last_error());
    printf("  %-16s without the LoRA: worst step_latents rel L2 %.3g, image %.3g\n", name, base.worst,
           test_rel_l2(img, ref_img, n));
    assert_true(base.worst > (gate < 1e-3 ? 100 * o.worst : o.worst));
    free(img);
    free(ref_img);
    sdw_st_close(ref);
    cJSON_Delete(j);
}

static void reference_cases(void **state)
{
    (void)state;
    run_case(flux, "lora_kohya_dev", 1e-4);
    run_case(flux, "lora_peft_dev", 1e-4);
}

/* ---- the GGUF transformers end to end ---- */

/* One run's step latents (packed, as the reference holds them) and image. */
typedef struct {
    float *lat, *img;
    size_t n_lat, n_img;
    int steps;
} run_trace;

static void on_trace(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape)
{
    run_trace *t = user;
    (void)step;
    if (strcmp(name, "step_latents")) return;
    assert_int_equal(ndim, 4);
    const int C = (int)shape[1], h = (int)shape[2], w = (int)shape[3];
    t->n_lat = (size_t)C * h * w;
    t->lat = realloc(t->lat, (size_t)(t->steps + 1) * t->n_lat * sizeof *t->lat);
    sdw_flux_pack(x, C, h, w, t->lat + (size_t)t->steps++ * t->n_lat);
}

/* lora_kohya_dev's run on m, with its LoRA or without (lora NULL). */
static run_trace trace_case(sdw_model *m, bool with_lora)
{
    char path[1024];
    cJSON *j;
    sdw_pipeline_params p;
    sdw_lora_spec spec;
    case_params("lora_kohya_dev", &j, &p, &spec, path);
    if (sdw_model_set_loras(m, &spec, with_lora, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
    run_trace t = { 0 };
    t.n_img = (size_t)p.width * p.height * 3;
    t.img = malloc(t.n_img * sizeof *t.img);
    p.observe = on_trace;
    p.observe_user = &t;
    if (sdw_pipeline_run(m, &p, t.img) != SDW_OK) fail_msg("%s", sdw_last_error());
    assert_int_equal(sdw_model_set_loras(m, NULL, 0, NULL), SDW_OK);
    cJSON_Delete(j);
    return t;
}

/* The worst step's rel L2 of a against b (the image's in *img). */
static double trace_diff(const run_trace *a, const run_trace *b, double *img)
{
    assert_int_equal(a->steps, b->steps);
    double worst = 0;
    for (int s = 0; s < a->steps; s++) {
        double e = test_rel_l2(a->lat + (size_t)s * a->n_lat, b->lat + (size_t)s * b->n_lat, a->n_lat);
        if (e > worst) worst = e;
    }
    *img = test_rel_l2(a->img, b->img, a->n_img);
    return worst;
}

static void free_trace(run_trace *t)
{
    free(t->lat);
    free(t->img);
}

/* lora_kohya_dev's pipeline on the GGUF transformer, the LoRA as branches:
 * it must equal the same file loaded dense with the LoRA merged (to
 * gate: f32 rounding, or in bf16 the README's end-to-end gate, as the
 * dense load rounds W + delta to bf16), and miss our own transformer of
 * the f32 file with the LoRA merged by no more than twice what the GGUF
 * misses it by without the LoRA (the reference's own steps use the f32
 * weights: only the quantization of W may part them; a LoRA lost would
 * miss by its whole effect). */
static void gguf_pipeline(const char *file, const char *label, sdw_precision prec, double gate)
{
    sdw_model *q, *d, *f = flux;
    if (lora_load_flux_tiny(file, prec, SDW_WT_KEEP, &q) != SDW_OK) {
        printf("  %s: not loadable here (%s); skipped\n", label, sdw_last_error());
        return;
    }
    if (lora_load_flux_tiny(file, prec, SDW_WT_F32, &d) != SDW_OK) fail_msg("%s", sdw_last_error());
    if (prec != SDW_PRECISION_F32 && lora_load_flux_tiny(DEV "flux1-dev.safetensors", prec, SDW_WT_KEEP, &f) != SDW_OK)
        fail_msg("%s", sdw_last_error());
    run_trace ql = trace_case(q, true), dl = trace_case(d, true), fl = trace_case(f, true);
    run_trace q0 = trace_case(q, false), f0 = trace_case(f, false);
    double img_merged, img_lora, img_base, img_effect;
    const double vs_merged = trace_diff(&ql, &dl, &img_merged);
    const double lora_err = trace_diff(&ql, &fl, &img_lora), base_err = trace_diff(&q0, &f0, &img_base);
    const double effect = trace_diff(&fl, &f0, &img_effect);
    const char *pn = sdw_precision_name(prec);
    printf("  %s %s lora_kohya_dev: branches vs the dense load merged: worst step rel L2 %.3g, image %.3g\n", label,
           pn, vs_merged, img_merged);
    printf("  %s %s lora_kohya_dev vs the f32 file's transformer: with the LoRA %.3g (image %.3g), without %.3g "
           "(image %.3g); the LoRA's own effect %.3g\n", label, pn, lora_err, img_lora, base_err, img_base, effect);
    test_check_close("GGUF branches vs merged image", ql.img, dl.img, ql.n_img, gate);
    assert_true(vs_merged < gate);
    assert_true(lora_err < 2 * base_err);
    free_trace(&ql), free_trace(&dl), free_trace(&fl), free_trace(&q0), free_trace(&f0);
    sdw_model_free(q);
    sdw_model_free(d);
    if (f != flux) sdw_model_free(f);
}

static void gguf_reference_case(void **state)
{
    (void)state;
    gguf_pipeline(DEV "flux1-dev-Q8_0.gguf", "GGUF Q8_0", SDW_PRECISION_F32, 1e-5);
    gguf_pipeline(DEV "flux1-dev-Q4_0.gguf", "GGUF Q4_0", SDW_PRECISION_F32, 1e-5);
    if (!test_precision_runs(SDW_PRECISION_BF16)) return;
    gguf_pipeline(DEV "flux1-dev-Q8_0.gguf", "GGUF Q8_0", SDW_PRECISION_BF16, 3e-2);
    gguf_pipeline(DEV "flux1-dev-Q4_0.gguf", "GGUF Q4_0", SDW_PRECISION_BF16, 3e-2);
}

static void reference_cases_bf16(void **state)
{
    (void)state;
    if (!test_precision_runs(SDW_PRECISION_BF16)) return;
    sdw_model *m;
    if (lora_load_flux_tiny(DEV "flux1-dev.safetensors", SDW_PRECISION_BF16, SDW_WT_KEEP, &m) != SDW_OK)
        fail_msg("%s", sdw_last_error());
    run_case(m, "lora_kohya_dev", 3e-2);
    run_case(m, "lora_peft_dev", 3e-2);
    sdw_model_free(m);
}

int main(void)
{
    printf("precision f32, cpu isa %s\n", sdw_cpu_isa_name());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_names),
        cmocka_unit_test(kohya_reference_file),
        cmocka_unit_test(peft_reference_file),
        cmocka_unit_test(xlabs_processors),
        cmocka_unit_test(ai_toolkit_comfy_and_diffusers_names),
        cmocka_unit_test(kohya_t5_and_diffusers_split_names),
        cmocka_unit_test(families_refused),
        cmocka_unit_test(gguf_transformers),
        cmocka_unit_test(reference_cases),
        cmocka_unit_test(gguf_reference_case),
        cmocka_unit_test(reference_cases_bf16),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
