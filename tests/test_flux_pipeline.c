/* test_flux_pipeline.c: every FLUX.1 end-to-end reference case (dev and
 * schnell txt2img, a non-square size, img2img, inpainting, GGUF Q8_0 / Q4_0
 * transformers, the fp8 T5 of an all-in-one checkpoint), loaded as users have
 * the files: BFL's transformer with ae / clip_l / t5xxl beside it, the
 * diffusers folder, the GGUF, the all-in-one file. Checked at every step:
 * the transformer's input and output and the latents after the step (all
 * packed [1, n, 64] as the reference keeps them), then the image. f32 to
 * 1e-4 relative L2; bf16 (where the CPU runs it) to 3e-2 on two cases. */
#include "testkit.h"
#include "io/json_file.h"
#include "models/flux.h"
#include "models/model.h"
#include "pipeline/pipeline.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F32_GATE 1e-4
#define BF16_GATE 3e-2

typedef enum { BFL_PARTS, DIFFUSERS, GGUF, ALL_IN_ONE } layout;
static const char *const layout_names[] = { "BFL file + ae/clip_l/t5xxl", "diffusers folder", "GGUF + parts",
                                            "all-in-one" };

typedef struct {
    const sdw_safetensors *ref;
    const char *name;
    double gate, worst;
    int h, w, evals, steps;
} observer;

static void check_row(observer *o, const char *ref_name, int idx, const float *x, size_t n)
{
    const sdw_st_tensor *t = sdw_st_find(o->ref, ref_name);
    assert_non_null(t);
    if (idx >= (int)t->shape[0]) fail_msg("%s: %s %d past the reference's %d", o->name, ref_name, idx, (int)t->shape[0]);
    float *ref = test_load_f32(o->ref, ref_name, NULL);
    double rel = test_rel_l2(x, ref + (size_t)idx * n, n);
    free(ref);
    if (rel > o->worst) o->worst = rel;
    if (!(rel < o->gate)) fail_msg("%s: %s[%d] rel L2 %.3g (gate %.0e)", o->name, ref_name, idx, rel, o->gate);
}

static void on_tensor(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape)
{
    observer *o = user;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (!strcmp(name, "transformer_in") || !strcmp(name, "transformer_out")) {
        check_row(o, name, step, x, n);
        if (!strcmp(name, "transformer_out")) o->evals++;
    } else if (!strcmp(name, "step_latents")) {
        /* NCHW [1, 16, h, w] here; the reference keeps them packed. */
        float *packed = malloc(n * sizeof *packed);
        sdw_flux_pack(x, 16, o->h, o->w, packed);
        check_row(o, "step_latents", o->steps++, packed, n);
        free(packed);
    } else if (!strcmp(name, "prompt_embeds")) {
        char what[256];
        snprintf(what, sizeof what, "%s prompt_embeds", o->name);
        float *ref = test_load_f32(o->ref, "prompt_embeds", NULL);
        test_check_close(what, x, ref, n, o->gate);
        free(ref);
    } else if (!strcmp(name, "pooled_prompt_embeds")) {
        char what[256];
        snprintf(what, sizeof what, "%s pooled_prompt_embeds", o->name);
        float *ref = test_load_f32(o->ref, "pooled_prompt_embeds", NULL);
        test_check_close(what, x, ref, n, o->gate);
        free(ref);
    } else if (!strcmp(name, "vae_decoded")) {
        char what[256];
        snprintf(what, sizeof what, "%s vae_decoded", o->name);
        float *ref = test_load_f32(o->ref, "vae_decoded", NULL);
        test_check_close(what, x, ref, n, o->gate);
        free(ref);
    }
}

static sdw_model *load(const cJSON *j, layout lay, sdw_precision prec)
{
    const cJSON *model = cJSON_GetObjectItem(j, "model");
    bool dev = !strcmp(sdw_json_str(model, "family", ""), "flux-tiny-dev");
    const char *fam = dev ? "flux-tiny-dev" : "flux-tiny-schnell";
    char path[512], vae[512], clip[512], t5[512];
    snprintf(vae, sizeof vae, "%s", test_data_path("flux/models/flux-tiny-common/ae.safetensors"));
    snprintf(clip, sizeof clip, "%s", test_data_path("flux/models/flux-tiny-common/clip_l.safetensors"));
    snprintf(t5, sizeof t5, "%s", test_data_path("flux/models/flux-tiny-common/t5xxl.safetensors"));
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = prec;
    const cJSON *gguf = cJSON_GetObjectItem(j, "gguf");
    switch (lay) {
    case DIFFUSERS: snprintf(path, sizeof path, "flux/models/%s/diffusers", fam); break;
    case ALL_IN_ONE: snprintf(path, sizeof path, "flux/models/flux-tiny-dev/flux1-dev-allinone.safetensors"); break;
    case GGUF: snprintf(path, sizeof path, "flux/models/%s/%s", fam, sdw_json_str(gguf, "file", "")); break;
    case BFL_PARTS: snprintf(path, sizeof path, "flux/models/%s/%s.safetensors", fam, dev ? "flux1-dev" : "flux1-schnell");
    }
    if (lay == BFL_PARTS || lay == GGUF) {
        lp.vae_path = vae;
        lp.clip_l_path = clip;
        lp.t5_path = t5;
    }
    /* The quantized and fp8 files run with their mapped pages going back to
     * the system between the T5 and the transformer (read again on use). */
    if (lay == GGUF || lay == ALL_IN_ONE) lp.page_out = 1;
    sdw_model *m;
    if (sdw_model_load(test_data_path(path), &lp, &m) != SDW_OK) fail_msg("%s", sdw_last_error());
    assert_int_equal(sdw_model_get_info(m)->family, dev ? SDW_FAMILY_FLUX_DEV : SDW_FAMILY_FLUX_SCHNELL);
    /* GGUF blocks stay blocks in memory: the 2-D weights at a quarter (Q8_0)
     * or a seventh (Q4_0) of f32, the small and outer layers as they were
     * (less the padding this CPU's layout gives those; in bf16 those hold
     * 2 bytes a weight). */
    size_t fbytes = sdw_flux_bytes(m->flux), f32_bytes = 134528 * sizeof(float);
    if (lay == GGUF) {
        size_t pad = test_linear_padding(sdw_flux_layers(m->flux), prec == SDW_PRECISION_BF16 ? 2 : 4);
        printf("  %s holds %zu bytes of transformer weights, %zu of them layout padding (f32: %zu)\n", path,
               fbytes, pad, f32_bytes);
        assert_true(fbytes - pad < f32_bytes / 2);
        assert_true(m->page_out);
    }
    return m;
}

static void run_case(const char *name, layout lay, sdw_precision prec, double gate)
{
    char path[512];
    snprintf(path, sizeof path, "flux/cases/%s.json", name);
    cJSON *j;
    assert_int_equal(sdw_json_load_file(test_data_path(path), &j), SDW_OK);
    snprintf(path, sizeof path, "flux/cases/%s.safetensors", name);
    sdw_safetensors *ref = test_open_st(path);
    sdw_model *m = load(j, lay, prec);

    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = sdw_json_str(j, "prompt", "");
    p.width = sdw_json_int(j, "width", 0);
    p.height = sdw_json_int(j, "height", 0);
    p.steps = sdw_json_int(j, "steps", 0);
    p.cfg_scale = 1.0f;
    const cJSON *g = cJSON_GetObjectItem(j, "guidance_scale");
    p.guidance = cJSON_IsNumber(g) ? (float)g->valuedouble : 0.0f;
    p.seed = (uint64_t)cJSON_GetObjectItem(j, "seed")->valuedouble;
    p.sampler = SDW_SAMPLER_EULER;
    p.schedule = SDW_SCHEDULE_FLOW;
    const cJSON *strength = cJSON_GetObjectItem(j, "strength");
    float *init = NULL, *mask = NULL;
    if (sdw_st_find(ref, "input.init_image")) init = test_load_f32(ref, "input.init_image", NULL);
    if (sdw_st_find(ref, "input.mask_image")) mask = test_load_f32(ref, "input.mask_image", NULL);
    p.init_image = init;
    p.mask = mask;
    p.strength = cJSON_IsNumber(strength) ? (float)strength->valuedouble : 1.0f;
    char label[256];
    snprintf(label, sizeof label, "%s [%s, %s]", name, layout_names[lay], sdw_precision_name(prec));
    observer o = { ref, label, gate, 0, p.height / 8, p.width / 8, 0, 0 };
    p.observe = on_tensor;
    p.observe_user = &o;
    size_t n = (size_t)p.width * p.height * 3;
    float *img = malloc(n * sizeof *img);
    if (sdw_pipeline_run(m, &p, img) != SDW_OK) fail_msg("%s: %s", label, sdw_last_error());
    const sdw_st_tensor *t = sdw_st_find(ref, "step_latents");
    assert_int_equal(o.steps, (int)t->shape[0]);
    assert_int_equal(o.evals, (int)t->shape[0]);
    float *ref_img = test_load_f32(ref, "image", NULL);
    char what[300];
    snprintf(what, sizeof what, "%s image", label);
    test_check_close(what, img, ref_img, n, gate);
    printf("  %-64s worst per-step rel_l2 %.3g over %d steps\n", label, o.worst, o.steps);
    free(img);
    free(ref_img);
    free(init);
    free(mask);
    sdw_model_free(m);
    sdw_st_close(ref);
    cJSON_Delete(j);
}

static void cases_f32(void **state)
{
    (void)state;
    printf("precision f32, cpu isa %s\n", sdw_cpu_isa_name());
    run_case("t2i_dev", BFL_PARTS, SDW_PRECISION_F32, F32_GATE);
    run_case("t2i_dev", DIFFUSERS, SDW_PRECISION_F32, F32_GATE);
    run_case("t2i_dev_ns", BFL_PARTS, SDW_PRECISION_F32, F32_GATE);
    run_case("t2i_schnell", BFL_PARTS, SDW_PRECISION_F32, F32_GATE);
    run_case("t2i_schnell", DIFFUSERS, SDW_PRECISION_F32, F32_GATE);
    run_case("i2i_dev_s0.6", BFL_PARTS, SDW_PRECISION_F32, F32_GATE);
    run_case("inp_dev_s0.7", BFL_PARTS, SDW_PRECISION_F32, F32_GATE);
    run_case("gguf_q8_0_dev", GGUF, SDW_PRECISION_F32, F32_GATE);
    run_case("gguf_q4_0_dev", GGUF, SDW_PRECISION_F32, F32_GATE);
    run_case("t5fp8_dev", ALL_IN_ONE, SDW_PRECISION_F32, F32_GATE);
}

static void cases_bf16(void **state)
{
    (void)state;
    printf("precision bf16, cpu isa %s\n", sdw_cpu_isa_name());
    if (!test_precision_runs(SDW_PRECISION_BF16)) return;
    run_case("t2i_dev", BFL_PARTS, SDW_PRECISION_BF16, BF16_GATE);
    run_case("t2i_schnell", DIFFUSERS, SDW_PRECISION_BF16, BF16_GATE);
    /* compact weights in bf16: on AVX-512-BF16 without AMX, linear_quant_dp.c */
    run_case("gguf_q8_0_dev", GGUF, SDW_PRECISION_BF16, BF16_GATE);
    run_case("gguf_q4_0_dev", GGUF, SDW_PRECISION_BF16, BF16_GATE);
}

/* The errors a user meets first: a missing part, a part of the wrong kind. */
static void missing_and_wrong_parts(void **state)
{
    (void)state;
    char vae[512], clip[512], t5[512];
    snprintf(vae, sizeof vae, "%s", test_data_path("flux/models/flux-tiny-common/ae.safetensors"));
    snprintf(clip, sizeof clip, "%s", test_data_path("flux/models/flux-tiny-common/clip_l.safetensors"));
    snprintf(t5, sizeof t5, "%s", test_data_path("flux/models/flux-tiny-common/t5xxl.safetensors"));
    const char *tr = test_data_path("flux/models/flux-tiny-dev/flux1-dev.safetensors");
    char trp[512];
    snprintf(trp, sizeof trp, "%s", tr);
    struct { const char *vae, *clip, *t5, *expect; } c[] = {
        { NULL, clip, t5, "--vae" },
        { vae, NULL, t5, "--clip-l" },
        { vae, clip, NULL, "--t5xxl" },
        { vae, t5, t5, "not a CLIP-L" },
        { vae, clip, clip, "T5" },
        { clip, clip, t5, "autoencoder" },
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        sdw_load_params lp = sdw_load_params_default();
        lp.precision = SDW_PRECISION_F32;
        lp.vae_path = c[i].vae;
        lp.clip_l_path = c[i].clip;
        lp.t5_path = c[i].t5;
        sdw_model *m = NULL;
        assert_int_not_equal(sdw_model_load(trp, &lp, &m), SDW_OK);
        assert_null(m);
        printf("  refused: %s\n", sdw_last_error());
        if (!strstr(sdw_last_error(), c[i].expect)) fail_msg("case %zu: '%s' does not say '%s'", i, sdw_last_error(), c[i].expect);
    }
    /* A width that is a multiple of 8 but not of 16. */
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    lp.vae_path = vae;
    lp.clip_l_path = clip;
    lp.t5_path = t5;
    sdw_model *m;
    assert_int_equal(sdw_model_load(trp, &lp, &m), SDW_OK);
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = "x";
    p.width = 72;
    p.height = 64;
    p.steps = 1;
    float img[72 * 64 * 3];
    assert_int_equal(sdw_pipeline_run(m, &p, img), SDW_ERR_INVALID_ARG);
    printf("  refused: %s\n", sdw_last_error());
    assert_non_null(strstr(sdw_last_error(), "16"));
    sdw_model_free(m);
}

/* The samplers and schedules ComfyUI runs on flow models (no reference
 * images for them: each must run, count its evaluations and stay finite). */
static void samplers_on_flow(void **state)
{
    (void)state;
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    char vae[512], clip[512], t5[512], tr[512];
    snprintf(vae, sizeof vae, "%s", test_data_path("flux/models/flux-tiny-common/ae.safetensors"));
    snprintf(clip, sizeof clip, "%s", test_data_path("flux/models/flux-tiny-common/clip_l.safetensors"));
    snprintf(t5, sizeof t5, "%s", test_data_path("flux/models/flux-tiny-common/t5xxl.safetensors"));
    snprintf(tr, sizeof tr, "%s", test_data_path("flux/models/flux-tiny-dev/flux1-dev.safetensors"));
    lp.vae_path = vae;
    lp.clip_l_path = clip;
    lp.t5_path = t5;
    sdw_model *m;
    if (sdw_model_load(tr, &lp, &m) != SDW_OK) fail_msg("%s", sdw_last_error());
    static const sdw_sampler_kind samplers[] = { SDW_SAMPLER_EULER, SDW_SAMPLER_EULER_A, SDW_SAMPLER_HEUN,
                                                 SDW_SAMPLER_DPM2, SDW_SAMPLER_DPMPP_2M, SDW_SAMPLER_DPMPP_2S_A,
                                                 SDW_SAMPLER_LMS, SDW_SAMPLER_IPNDM };
    static const sdw_schedule_kind schedules[] = { SDW_SCHEDULE_FLOW, SDW_SCHEDULE_SIMPLE, SDW_SCHEDULE_NORMAL,
                                                   SDW_SCHEDULE_BETA, SDW_SCHEDULE_SGM_UNIFORM, SDW_SCHEDULE_KARRAS };
    float img[64 * 64 * 3];
    for (size_t i = 0; i < sizeof samplers / sizeof *samplers; i++)
        for (size_t k = 0; k < sizeof schedules / sizeof *schedules; k++) {
            sdw_pipeline_params p;
            sdw_pipeline_params_init(&p);
            p.prompt = "a fox";
            p.width = p.height = 64;
            p.steps = 4;
            p.cfg_scale = 1.0f;
            p.sampler = samplers[i];
            p.schedule = schedules[k];
            if (sdw_pipeline_run(m, &p, img) != SDW_OK)
                fail_msg("%s / %s: %s", sdw_sampler_name(p.sampler), sdw_schedule_name(p.schedule), sdw_last_error());
            for (size_t j = 0; j < sizeof img / sizeof *img; j++)
                if (!(img[j] >= 0 && img[j] <= 1)) fail_msg("%s / %s: pixel %zu is %g", sdw_sampler_name(p.sampler),
                                                            sdw_schedule_name(p.schedule), j, img[j]);
        }
    printf("  %zu samplers x %zu schedules ran on FLUX dev\n", sizeof samplers / sizeof *samplers,
           sizeof schedules / sizeof *schedules);
    /* The variance-preserving samplers have no flow form: refused by name. */
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = "a fox";
    p.width = p.height = 64;
    p.steps = 2;
    p.sampler = SDW_SAMPLER_DDIM;
    p.schedule = SDW_SCHEDULE_FLOW;
    assert_int_not_equal(sdw_pipeline_run(m, &p, img), SDW_OK);
    printf("  refused: %s\n", sdw_last_error());
    sdw_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cases_f32),
        cmocka_unit_test(cases_bf16),
        cmocka_unit_test(missing_and_wrong_parts),
        cmocka_unit_test(samplers_on_flow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
