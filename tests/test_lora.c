/* test_lora.c: LoRA formats merged into the tiny SD1 model, checked against
 * their closed forms computed here with plain loops; undo restoring every
 * weight bit for bit; sets switching between jobs; key names; refusals.
 * The kohya golden cases (against diffusers) run in test_pipeline. */
#include "lora_kit.h"
#include "models/lora.h"
#include "models/lora_keys.h"
#include "models/model.h"
#include "pipeline/pipeline.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sdw_model *model;

static int setup(void **state)
{
    (void)state;
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    if (sdw_model_load(test_data_path("models/sd1-tiny/sd1-tiny.safetensors"), &lp, &model) != SDW_OK) {
        fprintf(stderr, "%s\n", sdw_last_error());
        return -1;
    }
    return lora_tmpdir_make("sdw-test-lora");
}

static int teardown(void **state)
{
    (void)state;
    sdw_model_free(model);
    return lora_tmpdir_remove();
}

/* ---- the model's layers ---- */

static const sdw_named_layer *layer(const char *name)
{
    return lora_find_layer(name[0] == 't' ? &model->text.te1->layers : sdw_unet_layers(model->unet), name);
}

typedef struct {
    int out, in, kh, kw;   /* the whole backend layer */
} dims;

static dims dims_of(const sdw_named_layer *l)
{
    dims d = { 0, 0, 1, 1 };
    if (l->linear) {
        d.out = sdw_linear_out(l->linear);
        d.in = sdw_linear_in(l->linear);
    } else {
        sdw_conv2d_shape(l->conv, &d.in, &d.out, &d.kh, &d.kw);
    }
    return d;
}

static float *weights(const sdw_named_layer *l) { return lora_layer_weights(model, l); }

/* ---- building LoRA files (lora_kit.h) ---- */

static void add_alpha(lora_file *f, const char *module, float alpha)
{
    char name[256];
    snprintf(name, sizeof name, "%s.alpha", module);
    lora_file_add(f, name, 0, 0, 0, 0, 0, 1)[0] = alpha;
}

/* ---- the check every format goes through ---- */

/* Applies the file at strength s, compares the layer's change over rows
 * [row0, row0 + rows) with expected (other rows unchanged), then undoes it
 * and checks the stored bytes are back exactly. */
static void check_merge(const char *path, const char *layer_name, const float *expected, float s)
{
    const sdw_named_layer *l = layer(layer_name);
    dims d = dims_of(l);
    size_t cols = (size_t)d.in * d.kh * d.kw, n = (size_t)d.out * cols;
    size_t bytes;
    void *orig = lora_layer_stored_copy(l, &bytes);
    float *before = weights(l);
    sdw_lora_spec spec = { path, s, s };
    sdw_lora_report rep;
    if (sdw_model_set_loras(model, &spec, 1, &rep) != SDW_OK) fail_msg("%s", sdw_last_error());
    assert_int_equal(rep.keys_applied, 1);
    float *after = weights(l);
    float *got = malloc(n * sizeof *got), *want = calloc(n, sizeof *want);
    for (size_t i = 0; i < n; i++) got[i] = after[i] - before[i];
    memcpy(want + (size_t)l->row0 * cols, expected, (size_t)l->rows * cols * sizeof *want);
    char what[300];
    snprintf(what, sizeof what, "%s delta", layer_name);
    test_check_close(what, got, want, n, 1e-5);
    for (size_t i = 0; i < n; i++)
        if (i / cols < (size_t)l->row0 || i / cols >= (size_t)(l->row0 + l->rows)) assert_true(got[i] == 0.0f);
    assert_int_equal(sdw_model_set_loras(model, NULL, 0, NULL), SDW_OK);
    assert_memory_equal(lora_layer_stored(l, &bytes), orig, bytes);
    free(orig); free(before); free(after); free(got); free(want);
}

/* E[rows, cols] = scale * A[rows, r] @ B[r, cols] */
static void matmul(float *E, const float *A, const float *B, int rows, int r, size_t cols, float scale)
{
    for (int o = 0; o < rows; o++)
        for (size_t k = 0; k < cols; k++) {
            double acc = 0;
            for (int j = 0; j < r; j++) acc += (double)A[(size_t)o * r + j] * B[(size_t)j * cols + k];
            E[(size_t)o * cols + k] = (float)(acc * scale);
        }
}

/* out[P, Q, kk] = sum_ij t[i, j, kk] a[i, P] b[j, Q] */
static void tucker(float *out, const float *t, const float *a, const float *b, int r1, int r2, int P, int Q, int kk)
{
    for (int p = 0; p < P; p++)
        for (int q = 0; q < Q; q++)
            for (int k = 0; k < kk; k++) {
                double acc = 0;
                for (int i = 0; i < r1; i++)
                    for (int j = 0; j < r2; j++)
                        acc += (double)t[((size_t)i * r2 + j) * kk + k] * a[(size_t)i * P + p] * b[(size_t)j * Q + q];
                out[((size_t)p * Q + q) * kk + k] = (float)acc;
            }
}

#define ATTN "down_blocks.0.attentions.0.transformer_blocks.0."
#define KOHYA_ATTN "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_"

static void kohya_linear_in_stacked_qkv(void **state)
{
    (void)state;
    const sdw_named_layer *l = layer(ATTN "attn1.to_k");
    int rows = l->rows, in = dims_of(l).in, r = 3;
    lora_file f = { 0 };
    float *down = lora_file_add(&f, KOHYA_ATTN "attn1_to_k.lora_down.weight", 2, r, in, 0, 0, 11);
    float *up = lora_file_add(&f, KOHYA_ATTN "attn1_to_k.lora_up.weight", 2, rows, r, 0, 0, 12);
    add_alpha(&f, KOHYA_ATTN "attn1_to_k", 1.5f);
    float *E = malloc((size_t)rows * in * sizeof *E);
    matmul(E, up, down, rows, r, (size_t)in, 0.7f * 1.5f / r);
    check_merge(lora_file_write(&f, "kohya_k"), ATTN "attn1.to_k", E, 0.7f);
    free(E);
    lora_file_free(&f);
}

#define LDM_Q "lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_q"

static void ldm_names_reach_the_same_layer(void **state)
{
    (void)state;
    /* SDXL-style kohya names (LDM paths) for down_blocks.0.attentions.0 are input_blocks.1.1. */
    const sdw_named_layer *l = layer(ATTN "attn2.to_q");
    int rows = l->rows, in = dims_of(l).in, r = 2;
    lora_file f = { 0 };
    float *down = lora_file_add(&f, LDM_Q ".lora_down.weight", 2, r, in, 0, 0, 21);
    float *up = lora_file_add(&f, LDM_Q ".lora_up.weight", 2, rows, r, 0, 0, 22);
    float *E = malloc((size_t)rows * in * sizeof *E);
    matmul(E, up, down, rows, r, (size_t)in, 1.0f);   /* no alpha: scale 1 */
    check_merge(lora_file_write(&f, "ldm_q"), ATTN "attn2.to_q", E, 1.0f);
    free(E);
    lora_file_free(&f);
}

static void peft_text_encoder_and_unet_names(void **state)
{
    (void)state;
    static const char *const te[] = { "text_encoder.text_model.encoder.layers.0.self_attn.v_proj.lora_A.weight",
                                      "text_encoder.text_model.encoder.layers.0.self_attn.v_proj.lora_B.weight" };
    static const char *const un[] = { "unet." ATTN "attn2.to_v.lora_A.weight", "unet." ATTN "attn2.to_v.lora_B.weight" };
    static const char *const old[] = { "unet." ATTN "attn1.processor.to_out_lora.down.weight",
                                       "unet." ATTN "attn1.processor.to_out_lora.up.weight" };
    const char *const *names[] = { te, un, old };
    const char *layers[] = { "text_model.encoder.layers.0.self_attn.v_proj", ATTN "attn2.to_v", ATTN "attn1.to_out.0" };
    for (int k = 0; k < 3; k++) {
        const sdw_named_layer *l = layer(layers[k]);
        int rows = l->rows, in = dims_of(l).in, r = 2;
        lora_file f = { 0 };
        float *down = lora_file_add(&f, names[k][0], 2, r, in, 0, 0, 31 + k);
        float *up = lora_file_add(&f, names[k][1], 2, rows, r, 0, 0, 41 + k);
        float *E = malloc((size_t)rows * in * sizeof *E);
        matmul(E, up, down, rows, r, (size_t)in, -0.5f);
        check_merge(lora_file_write(&f, "peft"), layers[k], E, -0.5f);   /* negative strengths subtract */
        free(E);
        lora_file_free(&f);
    }
}

#define CONV "down_blocks.0.resnets.0.conv1"
#define KOHYA_CONV "lora_unet_down_blocks_0_resnets_0_conv1"

static void locon_3x3(void **state)
{
    (void)state;
    const sdw_named_layer *l = layer(CONV);
    dims d = dims_of(l);
    int r = 4;
    size_t cols = (size_t)d.in * d.kh * d.kw;
    lora_file f = { 0 };
    float *down = lora_file_add(&f, KOHYA_CONV ".lora_down.weight", 4, r, d.in, d.kh, d.kw, 51);
    float *up = lora_file_add(&f, KOHYA_CONV ".lora_up.weight", 4, d.out, r, 1, 1, 52);
    add_alpha(&f, KOHYA_CONV, 2.0f);
    float *E = malloc((size_t)d.out * cols * sizeof *E);
    matmul(E, up, down, d.out, r, cols, 2.0f / r);
    check_merge(lora_file_write(&f, "locon"), CONV, E, 1.0f);
    free(E);
    lora_file_free(&f);
}

static void locon_tucker_mid(void **state)
{
    (void)state;
    const sdw_named_layer *l = layer(CONV);
    dims d = dims_of(l);
    int r = 3, kk = d.kh * d.kw;
    lora_file f = { 0 };
    float *down = lora_file_add(&f, KOHYA_CONV ".lora_down.weight", 4, r, d.in, 1, 1, 61);
    float *mid = lora_file_add(&f, KOHYA_CONV ".lora_mid.weight", 4, r, r, d.kh, d.kw, 62);
    float *up = lora_file_add(&f, KOHYA_CONV ".lora_up.weight", 4, d.out, r, 1, 1, 63);
    add_alpha(&f, KOHYA_CONV, 1.0f);
    /* delta[o, i, k] = sum_ab up[o, a] mid[a, b, k] down[b, i]: Tucker with a = up^T. */
    float *upT = malloc((size_t)r * d.out * sizeof *upT);
    for (int o = 0; o < d.out; o++)
        for (int a = 0; a < r; a++) upT[(size_t)a * d.out + o] = up[(size_t)o * r + a];
    size_t n = (size_t)d.out * d.in * kk;
    float *E = malloc(n * sizeof *E);
    tucker(E, mid, upT, down, r, r, d.out, d.in, kk);
    for (size_t i = 0; i < n; i++) E[i] *= 1.0f / r;
    check_merge(lora_file_write(&f, "locon_mid"), CONV, E, 1.0f);
    free(upT);
    free(E);
    lora_file_free(&f);
}

static void loha_linear_and_tucker_conv(void **state)
{
    (void)state;
    /* Linear: (w1a @ w1b) * (w2a @ w2b) * alpha / r. */
    const char *ln = ATTN "ff.net.2";
    const sdw_named_layer *l = layer(ln);
    dims d = dims_of(l);
    int r = 2;
    lora_file f = { 0 };
    const char *m = KOHYA_ATTN "ff_net_2";
    char nm[256];
#define PART(s) (snprintf(nm, sizeof nm, "%s.%s", m, s), nm)
    float *w1a = lora_file_add(&f, PART("hada_w1_a"), 2, d.out, r, 0, 0, 71);
    float *w1b = lora_file_add(&f, PART("hada_w1_b"), 2, r, d.in, 0, 0, 72);
    float *w2a = lora_file_add(&f, PART("hada_w2_a"), 2, d.out, r, 0, 0, 73);
    float *w2b = lora_file_add(&f, PART("hada_w2_b"), 2, r, d.in, 0, 0, 74);
    add_alpha(&f, m, 1.0f);
    size_t n = (size_t)d.out * d.in;
    float *E = malloc(n * sizeof *E), *E2 = malloc(n * sizeof *E2);
    matmul(E, w1a, w1b, d.out, r, (size_t)d.in, 1.0f);
    matmul(E2, w2a, w2b, d.out, r, (size_t)d.in, 1.0f);
    for (size_t i = 0; i < n; i++) E[i] *= E2[i] * 0.8f / r;
    check_merge(lora_file_write(&f, "loha"), ln, E, 0.8f);
    free(E); free(E2);
    lora_file_free(&f);

    /* 3x3 conv through Tucker cores: a [r, out], b [r, in], t [r, r, kh, kw]. */
    l = layer(CONV);
    d = dims_of(l);
    int kk = d.kh * d.kw;
    m = KOHYA_CONV;
    float *a1 = lora_file_add(&f, PART("hada_w1_a"), 2, r, d.out, 0, 0, 81);
    float *b1 = lora_file_add(&f, PART("hada_w1_b"), 2, r, d.in, 0, 0, 82);
    float *t1 = lora_file_add(&f, PART("hada_t1"), 4, r, r, d.kh, d.kw, 83);
    float *a2 = lora_file_add(&f, PART("hada_w2_a"), 2, r, d.out, 0, 0, 84);
    float *b2 = lora_file_add(&f, PART("hada_w2_b"), 2, r, d.in, 0, 0, 85);
    float *t2 = lora_file_add(&f, PART("hada_t2"), 4, r, r, d.kh, d.kw, 86);
    add_alpha(&f, m, 4.0f);
    n = (size_t)d.out * d.in * kk;
    E = malloc(n * sizeof *E);
    E2 = malloc(n * sizeof *E2);
    tucker(E, t1, a1, b1, r, r, d.out, d.in, kk);
    tucker(E2, t2, a2, b2, r, r, d.out, d.in, kk);
    for (size_t i = 0; i < n; i++) E[i] *= E2[i] * 4.0f / r;
    check_merge(lora_file_write(&f, "loha_conv"), CONV, E, 1.0f);
    free(E); free(E2);
    lora_file_free(&f);
#undef PART
}

/* kron(w1 [a, b], w2 [c, dc]) laid out as [a c, b dc] with dc = din * kk. */
static void kron(float *E, const float *w1, const float *w2, int a, int b, int c, int din, int kk, float scale)
{
    size_t cols = (size_t)b * din * kk;
    for (int i1 = 0; i1 < a; i1++)
        for (int i2 = 0; i2 < c; i2++)
            for (int j1 = 0; j1 < b; j1++)
                for (int j2 = 0; j2 < din; j2++)
                    for (int k = 0; k < kk; k++)
                        E[(size_t)(i1 * c + i2) * cols + ((size_t)j1 * din + j2) * kk + k] =
                            w1[i1 * b + j1] * w2[((size_t)i2 * din + j2) * kk + k] * scale;
}

static void lokr_linear_and_conv(void **state)
{
    (void)state;
    /* Linear: full w1, w2 = w2_a @ w2_b, alpha / r applies. */
    const char *ln = ATTN "attn1.to_out.0";
    const sdw_named_layer *l = layer(ln);
    dims d = dims_of(l);
    assert_true(d.out % 2 == 0 && d.in % 2 == 0);
    int a = 2, b = 2, c = d.out / 2, din = d.in / 2, r = 2;
    lora_file f = { 0 };
    const char *m = KOHYA_ATTN "attn1_to_out_0";
    char nm[256];
#define PART(s) (snprintf(nm, sizeof nm, "%s.%s", m, s), nm)
    float *w1 = lora_file_add(&f, PART("lokr_w1"), 2, a, b, 0, 0, 91);
    float *w2a = lora_file_add(&f, PART("lokr_w2_a"), 2, c, r, 0, 0, 92);
    float *w2b = lora_file_add(&f, PART("lokr_w2_b"), 2, r, din, 0, 0, 93);
    add_alpha(&f, m, 1.0f);
    float *w2 = malloc((size_t)c * din * sizeof *w2);
    matmul(w2, w2a, w2b, c, r, (size_t)din, 1.0f);
    float *E = malloc((size_t)d.out * d.in * sizeof *E);
    kron(E, w1, w2, a, b, c, din, 1, 1.0f / r);
    check_merge(lora_file_write(&f, "lokr"), ln, E, 1.0f);
    free(w2); free(E);
    lora_file_free(&f);

    /* Conv: both factors full (w2 [c, din, kh, kw]): no alpha scaling. */
    l = layer(CONV);
    d = dims_of(l);
    assert_true(d.out % 2 == 0 && d.in % 2 == 0);
    c = d.out / 2;
    din = d.in / 2;
    int kk = d.kh * d.kw;
    m = KOHYA_CONV;
    w1 = lora_file_add(&f, PART("lokr_w1"), 2, a, b, 0, 0, 95);
    float *w2f = lora_file_add(&f, PART("lokr_w2"), 4, c, din, d.kh, d.kw, 96);
    add_alpha(&f, m, 8.0f);
    E = malloc((size_t)d.out * d.in * kk * sizeof *E);
    kron(E, w1, w2f, a, b, c, din, kk, 0.5f);
    check_merge(lora_file_write(&f, "lokr_conv"), CONV, E, 0.5f);
    free(E);
    lora_file_free(&f);
#undef PART
}

static void dora_renormalises_rows(void **state)
{
    (void)state;
    const char *ln = "text_model.encoder.layers.0.mlp.fc1";
    const sdw_named_layer *l = layer(ln);
    dims d = dims_of(l);
    int r = 2;
    float s = 0.6f;
    lora_file f = { 0 };
    const char *m = "lora_te_text_model_encoder_layers_0_mlp_fc1";
    char nm[256];
    snprintf(nm, sizeof nm, "%s.lora_down.weight", m);
    float *down = lora_file_add(&f, nm, 2, r, d.in, 0, 0, 101);
    snprintf(nm, sizeof nm, "%s.lora_up.weight", m);
    float *up = lora_file_add(&f, nm, 2, d.out, r, 0, 0, 102);
    snprintf(nm, sizeof nm, "%s.dora_scale", m);
    float *mag = lora_file_add(&f, nm, 2, d.out, 1, 0, 0, 103);
    for (int i = 0; i < d.out; i++) mag[i] = 1.0f + fabsf(mag[i]);
    add_alpha(&f, m, 2.0f);
    float *W = weights(l);
    size_t n = (size_t)d.out * d.in;
    float *D = malloc(n * sizeof *D), *E = malloc(n * sizeof *E);
    matmul(D, up, down, d.out, r, (size_t)d.in, 2.0f / r);
    for (int o = 0; o < d.out; o++) {
        double ss = 0;
        for (int i = 0; i < d.in; i++) ss += pow((double)W[(size_t)o * d.in + i] + D[(size_t)o * d.in + i], 2);
        for (int i = 0; i < d.in; i++) {
            size_t k = (size_t)o * d.in + i;
            double merged = mag[o] * (W[k] + D[k]) / sqrt(ss);
            E[k] = (float)(s * (merged - W[k]));
        }
    }
    check_merge(lora_file_write(&f, "dora"), ln, E, s);
    free(W); free(D); free(E);
    lora_file_free(&f);
}

/* ---- whole jobs ---- */

static void run_job(float *img)
{
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = "a red cube";
    p.width = p.height = 64;
    p.steps = 2;
    p.cfg_scale = 5.0f;
    p.seed = 7;
    if (sdw_pipeline_run(model, &p, img) != SDW_OK) fail_msg("%s", sdw_last_error());
}

static void sets_switch_and_clear_exactly(void **state)
{
    (void)state;
    size_t n = 64 * 64 * 3;
    float *base = malloc(n * sizeof *base), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    float *again = malloc(n * sizeof *again);
    run_job(base);
    char kohya[512];
    snprintf(kohya, sizeof kohya, "%s", test_data_path("models/sd1-tiny-lora/sd1-tiny-lora-kohya.safetensors"));
    sdw_lora_spec one = { kohya, 1.0f, 1.0f };
    sdw_lora_spec two[2] = { { kohya, 0.5f, 0.25f }, { kohya, -0.3f, 0.8f } };
    sdw_lora_report rep[2];
    assert_int_equal(sdw_model_set_loras(model, &one, 1, rep), SDW_OK);
    run_job(a);
    /* The same set again costs nothing and changes nothing. */
    assert_int_equal(sdw_model_set_loras(model, &one, 1, rep), SDW_OK);
    run_job(again);
    assert_memory_equal(a, again, n * sizeof *a);
    assert_int_equal(sdw_model_set_loras(model, two, 2, rep), SDW_OK);
    assert_int_equal(rep[1].keys_applied, 90);
    run_job(b);
    assert_int_equal(sdw_model_set_loras(model, NULL, 0, NULL), SDW_OK);
    run_job(again);
    printf("  LoRA changed the image by rel L2 %.3g (one) and %.3g (two); after clearing: %.3g\n",
           test_rel_l2(a, base, n), test_rel_l2(b, base, n), test_rel_l2(again, base, n));
    assert_true(test_rel_l2(a, base, n) > 1e-3 && test_rel_l2(b, base, n) > 1e-3);
    assert_memory_equal(again, base, n * sizeof *base);
    char *h = sdw_lora_hashes(rep, 2);
    printf("  Lora hashes: %s\n", h);
    assert_int_equal(strlen(rep[0].hash12), 12);
    free(h);
    free(base); free(a); free(b); free(again);
}

static void refusals(void **state)
{
    (void)state;
    /* A LoRA whose keys match nothing. */
    lora_file f = { 0 };
    lora_file_add(&f, "lora_unet_no_such_module.lora_down.weight", 2, 2, 4, 0, 0, 1);
    lora_file_add(&f, "lora_unet_no_such_module.lora_up.weight", 2, 4, 2, 0, 0, 2);
    sdw_lora_spec spec = { lora_file_write(&f, "nothing"), 1, 1 };
    assert_int_not_equal(sdw_model_set_loras(model, &spec, 1, NULL), SDW_OK);
    printf("  %s\n", sdw_last_error());
    assert_non_null(strstr(sdw_last_error(), "matched 0 of 1 keys"));
    lora_file_free(&f);
    /* SDXL LoRA (second text encoder) on SD1. */
    lora_file_add(&f, "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", 2, 2, 8, 0, 0, 1);
    lora_file_add(&f, "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", 2, 32, 2, 0, 0, 2);
    spec.path = lora_file_write(&f, "xl");
    assert_int_not_equal(sdw_model_set_loras(model, &spec, 1, NULL), SDW_OK);
    printf("  %s\n", sdw_last_error());
    assert_non_null(strstr(sdw_last_error(), "for SDXL"));
    lora_file_free(&f);
    /* A matching key whose shape does not fit: refused, and the model keeps its base weights. */
    const sdw_named_layer *l = layer(ATTN "attn1.to_k");
    size_t bytes;
    void *orig = lora_layer_stored_copy(l, &bytes);
    lora_file_add(&f, KOHYA_ATTN "attn1_to_k.lora_down.weight", 2, 2, 999, 0, 0, 1);
    lora_file_add(&f, KOHYA_ATTN "attn1_to_k.lora_up.weight", 2, 999, 2, 0, 0, 2);
    spec.path = lora_file_write(&f, "misfit");
    assert_int_not_equal(sdw_model_set_loras(model, &spec, 1, NULL), SDW_OK);
    printf("  %s\n", sdw_last_error());
    assert_memory_equal(sdw_linear_stored(l->linear, &bytes), orig, bytes);
    free(orig);
    lora_file_free(&f);
    /* A missing file. */
    spec.path = "/nonexistent/x.safetensors";
    assert_int_not_equal(sdw_model_set_loras(model, &spec, 1, NULL), SDW_OK);
}

static void names_resolve_inside_the_directory(void **state)
{
    (void)state;
    char dir[300], sub[320], path[4096], cmd[1024];
    snprintf(dir, sizeof dir, "%s/loras", lora_tmpdir());
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && touch %s/style.safetensors %s/inner.safetensors %s/outside.safetensors "
             "%s/old.ckpt && ln -sf %s/outside.safetensors %s/escape.safetensors",
             sub, dir, sub, lora_tmpdir(), dir, lora_tmpdir(), dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(sdw_lora_resolve(dir, "style", path, sizeof path), SDW_OK);
    assert_non_null(strstr(path, "/loras/style.safetensors"));
    assert_int_equal(sdw_lora_resolve(dir, "style.safetensors", path, sizeof path), SDW_OK);
    assert_int_equal(sdw_lora_resolve(dir, "sub/inner", path, sizeof path), SDW_OK);
    static const char *const bad[] = { "../outside", "/etc/passwd", "sub/../../outside", "escape", "", ".hidden",
                                       "missing", "old.ckpt" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_not_equal(sdw_lora_resolve(dir, bad[i], path, sizeof path), SDW_OK);
        printf("  \"%s\": %s\n", bad[i], sdw_last_error());
    }
    assert_non_null(strstr((sdw_lora_resolve(dir, "old.ckpt", path, sizeof path), sdw_last_error()), "safetensors"));
    assert_int_not_equal(sdw_lora_resolve(NULL, "style", path, sizeof path), SDW_OK);
}

static void key_names(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        { "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", "u:down_blocks_0_attentions_0_proj_in" },
        { "lora_te_text_model_encoder_layers_3_mlp_fc2.alpha", "0:encoder_layers_3_mlp_fc2" },
        { "lora_te1_text_model_encoder_layers_3_mlp_fc2.lora_up.weight", "0:encoder_layers_3_mlp_fc2" },
        { "lora_te2_text_model_encoder_layers_3_self_attn_q_proj.hada_w1_a", "1:encoder_layers_3_self_attn_q_proj" },
        { "unet.mid_block.attentions.0.proj_out.lora_B.weight", "u:mid_block_attentions_0_proj_out" },
        { "base_model.model.down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2.lora_A.weight",
          "u:down_blocks_1_attentions_0_transformer_blocks_0_ff_net_2" },
        { "text_encoder_2.text_model.encoder.layers.0.self_attn.k_proj.lora.down.weight",
          "1:encoder_layers_0_self_attn_k_proj" },
        { "unet.up_blocks.1.attentions.2.transformer_blocks.0.attn2.processor.to_out_lora.up.weight",
          "u:up_blocks_1_attentions_2_transformer_blocks_0_attn2_to_out_0" },
        { "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.down.weight",
          "0:encoder_layers_0_self_attn_q_proj" },
        { "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k.lokr_w2_b",
          "u:input_blocks_4_1_transformer_blocks_0_attn1_to_k" },
    };
    char key[320];
    sdw_lora_role role;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_true(sdw_lora_split_name(cases[i][0], key, sizeof key, &role));
        assert_string_equal(key, cases[i][1]);
    }
    /* An LLM's PEFT adapter: no prefix we know (FLUX names are in test_lora_flux). */
    assert_false(sdw_lora_split_name("model.layers.0.mlp.gate_proj.lora_A.weight", key, sizeof key, &role));
    sdw_lora_layer_key('u', "down_blocks.0.attentions.0.proj_in", key, sizeof key);
    assert_string_equal(key, "u:down_blocks_0_attentions_0_proj_in");
    sdw_lora_layer_key('1', "text_model.encoder.layers.0.mlp.fc1", key, sizeof key);
    assert_string_equal(key, "1:encoder_layers_0_mlp_fc1");
}

int main(void)
{
    printf("precision f32, cpu isa %s\n", sdw_cpu_isa_name());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_names),
        cmocka_unit_test(kohya_linear_in_stacked_qkv),
        cmocka_unit_test(ldm_names_reach_the_same_layer),
        cmocka_unit_test(peft_text_encoder_and_unet_names),
        cmocka_unit_test(locon_3x3),
        cmocka_unit_test(locon_tucker_mid),
        cmocka_unit_test(loha_linear_and_tucker_conv),
        cmocka_unit_test(lokr_linear_and_conv),
        cmocka_unit_test(dora_renormalises_rows),
        cmocka_unit_test(sets_switch_and_clear_exactly),
        cmocka_unit_test(refusals),
        cmocka_unit_test(names_resolve_inside_the_directory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
