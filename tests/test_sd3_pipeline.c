/* test_sd3_pipeline.c: every SD3 / SD3.5 end-to-end reference case (txt2img
 * square and non-square with CFG and negative prompts, without T5, T5 at 77
 * tokens, img2img, inpainting, SD3.5's MMDiT-X, skip-layer guidance) from
 * Stability's single file with clip_l / clip_g / t5xxl beside it. Checked at
 * every step: the conditioning, the transformer's outputs for both halves of
 * CFG and the skip-layer pass, the latents after the step, the image. f32 to
 * 1e-4 relative L2; bf16 (where the CPU runs it) to 3e-2. */
#include "testkit.h"
#include "io/json_file.h"
#include "pipeline/pipeline.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F32_GATE 1e-4
#define BF16_GATE 3e-2

typedef struct {
    const sdw_safetensors *ref;
    const char *name;
    double gate, worst;
    int steps, evals, slg;
} observer;

/* Row idx (of the leading dimension) of a reference tensor, rows of n floats,
 * at offset `sub` rows of n inside it (the [uncond; cond] halves). */
static void check_row(observer *o, const char *ref_name, int idx, int sub, int per_idx, const float *x, size_t n)
{
    const sdw_st_tensor *t = sdw_st_find(o->ref, ref_name);
    if (!t) fail_msg("%s: no %s in the reference", o->name, ref_name);
    if (idx >= (int)t->shape[0]) fail_msg("%s: %s %d past the reference's %d", o->name, ref_name, idx, (int)t->shape[0]);
    float *ref = test_load_f32(o->ref, ref_name, NULL);
    double rel = test_rel_l2(x, ref + ((size_t)idx * per_idx + sub) * n, n);
    free(ref);
    if (rel > o->worst) o->worst = rel;
    if (!(rel < o->gate)) fail_msg("%s: %s[%d][%d] rel L2 %.3g (gate %.0e)", o->name, ref_name, idx, sub, rel, o->gate);
}

static void on_tensor(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape)
{
    observer *o = user;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (!strcmp(name, "transformer_out")) check_row(o, "transformer_out", step, 1, 2, x, n), o->evals++;
    else if (!strcmp(name, "transformer_out_uncond")) check_row(o, "transformer_out", step, 0, 2, x, n);
    else if (!strcmp(name, "slg_out")) check_row(o, "slg_out", o->slg++, 0, 1, x, n);
    else if (!strcmp(name, "step_latents")) check_row(o, "step_latents", o->steps++, 0, 1, x, n);
    else if (!strcmp(name, "initial_latents")) check_row(o, "initial_latents", 0, 0, 1, x, n);
    else if (!strcmp(name, "prompt_embeds")) check_row(o, "prompt_embeds_cfg", 0, 1, 2, x, n);
    else if (!strcmp(name, "negative_prompt_embeds")) check_row(o, "prompt_embeds_cfg", 0, 0, 2, x, n);
    else if (!strcmp(name, "pooled_prompt_embeds")) check_row(o, "pooled_cfg", 0, 1, 2, x, n);
    else if (!strcmp(name, "negative_pooled_prompt_embeds")) check_row(o, "pooled_cfg", 0, 0, 2, x, n);
}

static sdw_model *load(const cJSON *j, sdw_precision prec)
{
    const bool sd35 = !strcmp(sdw_json_str(j, "family", ""), "sd35-tiny");
    char path[512], clip_l[512], clip_g[512], t5[512];
    snprintf(clip_l, sizeof clip_l, "%s", test_data_path("sd3/models/text_encoders/clip_l.safetensors"));
    snprintf(clip_g, sizeof clip_g, "%s", test_data_path("sd3/models/text_encoders/clip_g.safetensors"));
    snprintf(t5, sizeof t5, "%s", test_data_path("sd3/models/text_encoders/t5xxl.safetensors"));
    snprintf(path, sizeof path, "%s", test_data_path(sd35 ? "sd3/models/sd35-tiny/sd35-tiny.safetensors"
                                                          : "sd3/models/sd3-tiny/sd3-tiny.safetensors"));
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = prec;
    lp.clip_l_path = clip_l;
    lp.clip_g_path = clip_g;
    lp.t5_path = cJSON_IsTrue(cJSON_GetObjectItem(j, "t5")) ? t5 : NULL;
    sdw_model *m;
    if (sdw_model_load(path, &lp, &m) != SDW_OK) fail_msg("%s", sdw_last_error());
    assert_int_equal(sdw_model_get_info(m)->family, sd35 ? SDW_FAMILY_SD35_MEDIUM : SDW_FAMILY_SD3);
    return m;
}

static void run_case(const char *name, sdw_precision prec, double gate)
{
    char path[512];
    snprintf(path, sizeof path, "sd3/cases/%s.json", name);
    cJSON *j;
    assert_int_equal(sdw_json_load_file(test_data_path(path), &j), SDW_OK);
    snprintf(path, sizeof path, "sd3/cases/%s.safetensors", name);
    sdw_safetensors *ref = test_open_st(path);
    sdw_model *m = load(j, prec);

    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = sdw_json_str(j, "prompt", "");
    p.negative_prompt = sdw_json_str(j, "negative_prompt", NULL);
    p.width = sdw_json_int(j, "width", 0);
    p.height = sdw_json_int(j, "height", 0);
    p.steps = sdw_json_int(j, "steps", 0);
    p.cfg_scale = (float)cJSON_GetObjectItem(j, "guidance_scale")->valuedouble;
    p.seed = (uint64_t)cJSON_GetObjectItem(j, "seed")->valuedouble;
    p.sampler = SDW_SAMPLER_EULER;
    p.schedule = SDW_SCHEDULE_FLOW;
    p.t5_max_length = sdw_json_int(j, "max_sequence_length", 0);
    const cJSON *slg = cJSON_GetObjectItem(j, "skip_guidance_layers");
    if (cJSON_IsArray(slg)) {
        p.n_slg_layers = cJSON_GetArraySize(slg);
        for (int i = 0; i < p.n_slg_layers; i++) p.slg_layers[i] = cJSON_GetArrayItem(slg, i)->valueint;
        p.slg_scale = (float)cJSON_GetObjectItem(j, "skip_layer_guidance_scale")->valuedouble;
        p.slg_start = (float)cJSON_GetObjectItem(j, "skip_layer_guidance_start")->valuedouble;
        p.slg_end = (float)cJSON_GetObjectItem(j, "skip_layer_guidance_stop")->valuedouble;
    }
    const cJSON *strength = cJSON_GetObjectItem(j, "strength");
    float *init = NULL, *mask = NULL;
    if (sdw_st_find(ref, "input.init_image")) init = test_load_f32(ref, "input.init_image", NULL);
    if (sdw_st_find(ref, "input.mask_image")) mask = test_load_f32(ref, "input.mask_image", NULL);
    p.init_image = init;
    p.mask = mask;
    p.strength = cJSON_IsNumber(strength) ? (float)strength->valuedouble : 1.0f;
    char label[256];
    snprintf(label, sizeof label, "%s [%s]", name, sdw_precision_name(prec));
    observer o = { ref, label, gate, 0, 0, 0, 0 };
    p.observe = on_tensor;
    p.observe_user = &o;
    size_t n = (size_t)p.width * p.height * 3;
    float *img = malloc(n * sizeof *img);
    if (sdw_pipeline_run(m, &p, img) != SDW_OK) fail_msg("%s: %s", label, sdw_last_error());
    const sdw_st_tensor *t = sdw_st_find(ref, "step_latents");
    assert_int_equal(o.steps, (int)t->shape[0]);
    assert_int_equal(o.evals, (int)t->shape[0]);
    const sdw_st_tensor *so = sdw_st_find(ref, "slg_out");
    assert_int_equal(o.slg, so ? (int)so->shape[0] : 0);
    float *ref_img = test_load_f32(ref, "image", NULL);
    char what[300];
    snprintf(what, sizeof what, "%s image", label);
    test_check_close(what, img, ref_img, n, gate);
    printf("  %-40s worst rel_l2 %.3g over %d steps (%d skip-layer passes)\n", label, o.worst, o.steps, o.slg);
    free(img);
    free(ref_img);
    free(init);
    free(mask);
    sdw_model_free(m);
    sdw_st_close(ref);
    cJSON_Delete(j);
}

static const char *const cases[] = { "t2i_sd3_euler", "t2i_sd3_euler_64x96_neg", "t2i_sd3_noT5", "t2i_sd3_t5len77",
                                     "i2i_sd3_euler_s0.6", "inp_sd3_euler_s0.8", "t2i_sd35_euler_80x64",
                                     "t2i_sd35_euler_slg" };

static void cases_f32(void **state)
{
    (void)state;
    printf("precision f32, cpu isa %s\n", sdw_cpu_isa_name());
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(cases[i], SDW_PRECISION_F32, F32_GATE);
}

static void cases_bf16(void **state)
{
    (void)state;
    printf("precision bf16, cpu isa %s\n", sdw_cpu_isa_name());
    if (!test_precision_runs(SDW_PRECISION_BF16)) return;
    run_case("t2i_sd3_euler", SDW_PRECISION_BF16, BF16_GATE);
    run_case("t2i_sd35_euler_slg", SDW_PRECISION_BF16, BF16_GATE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cases_f32),
        cmocka_unit_test(cases_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
