/* test_pipeline.c: every end-to-end reference case (txt2img with each
 * reference scheduler, cfg 1 and 7.5, negative prompts, batches, clip skip,
 * img2img, 9- and 4-channel inpainting, SD2 v-prediction, SDXL): the initial
 * latents, the latents after every step, the decoded image. f32 must agree to
 * 1e-4 relative L2; bf16 is run on a few cases against the same references. */
#include "testkit.h"
#include "io/json_file.h"
#include "pipeline/pipeline.h"
#include "models/lora.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F32_GATE 1e-4

/* The reference scheduler of a case as our sampler + schedule. */
static void map_scheduler(const cJSON *sched, sdw_sampler_kind *k, sdw_schedule_kind *sk)
{
    const char *cls = cJSON_GetObjectItem(sched, "class")->valuestring;
    const cJSON *cfg = cJSON_GetObjectItem(sched, "config");
    const char *spacing = sdw_json_str(cfg, "timestep_spacing", "leading");
    bool karras = cJSON_IsTrue(cJSON_GetObjectItem(cfg, "use_karras_sigmas"));
    *sk = !strcmp(spacing, "leading") ? SDW_SCHEDULE_LEADING
          : !strcmp(spacing, "trailing") ? SDW_SCHEDULE_TRAILING
                                         : SDW_SCHEDULE_NORMAL;
    if (karras) *sk = SDW_SCHEDULE_KARRAS;
    if (!strcmp(cls, "EulerDiscreteScheduler")) *k = SDW_SAMPLER_EULER;
    else if (!strcmp(cls, "EulerAncestralDiscreteScheduler")) *k = SDW_SAMPLER_EULER_A;
    else if (!strcmp(cls, "DPMSolverMultistepScheduler")) *k = SDW_SAMPLER_DPMPP_2M;
    else if (!strcmp(cls, "DDIMScheduler")) *k = SDW_SAMPLER_DDIM;
    else if (!strcmp(cls, "LCMScheduler")) *k = SDW_SAMPLER_LCM;
    else if (!strcmp(cls, "PNDMScheduler")) *k = SDW_SAMPLER_PNDM;
    else fail_msg("unmapped scheduler %s", cls);
}

typedef struct {
    const sdw_safetensors *ref;
    double gate;
    const char *name;
    int steps_checked;
    double worst_step;
} observer;

static void on_tensor(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape)
{
    observer *o = user;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    char what[256];
    if (!strcmp(name, "initial_latents")) {
        float *ref = test_load_f32(o->ref, "initial_latents", NULL);
        snprintf(what, sizeof what, "%s initial_latents", o->name);
        test_check_close(what, x, ref, n, o->gate);
        free(ref);
    } else if (!strcmp(name, "step_latents")) {
        const sdw_st_tensor *t = sdw_st_find(o->ref, "step_latents");
        int ran = (int)t->shape[0];
        int64_t total;
        float *ref = test_load_f32(o->ref, "step_latents", &total);
        /* The reference holds the steps actually run (img2img runs the tail). */
        int idx = o->steps_checked++;
        assert_true(idx < ran);
        double rel = test_rel_l2(x, ref + (size_t)idx * n, n);
        if (rel > o->worst_step) o->worst_step = rel;
        if (!(rel < o->gate)) fail_msg("%s: step %d (of %d) latents rel L2 %.3g", o->name, idx, ran, rel);
        free(ref);
        (void)step;
    } else if (!strcmp(name, "vae_decoded")) {
        int64_t total;
        float *ref = test_load_f32(o->ref, "vae_decoded", &total);
        snprintf(what, sizeof what, "%s vae_decoded[%d]", o->name, step);
        test_check_close(what, x, ref + (size_t)step * n, n, o->gate);
        free(ref);
    }
}

static sdw_model *load_model(const cJSON *manifest, sdw_precision prec)
{
    const cJSON *model = cJSON_GetObjectItem(manifest, "model");
    const char *family = sdw_json_str(model, "family", "");
    char path[512];
    /* sd1-tiny-inpaint's single file is not in the test data: its diffusers folder. */
    if (!strcmp(family, "sd1-tiny-inpaint")) snprintf(path, sizeof path, "models/%s/diffusers", family);
    else snprintf(path, sizeof path, "models/%s/%s.safetensors", family, family);
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = prec;
    sdw_model *m;
    if (sdw_model_load(test_data_path(path), &lp, &m) != SDW_OK) fail_msg("%s", sdw_last_error());
    return m;
}

static void run_case(const char *name, sdw_precision prec, double gate, bool check_steps)
{
    char path[512];
    snprintf(path, sizeof path, "cases/%s.json", name);
    cJSON *j;
    assert_int_equal(sdw_json_load_file(test_data_path(path), &j), SDW_OK);
    snprintf(path, sizeof path, "cases/%s.safetensors", name);
    sdw_safetensors *ref = test_open_st(path);
    sdw_model *m = load_model(j, prec);
    /* The reference merges the kohya LoRA at lora.scale into both the UNet and the text encoder. */
    const cJSON *lora = cJSON_GetObjectItem(j, "lora");
    if (lora) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", test_data_path("models"), sdw_json_str(lora, "file", ""));
        float scale = (float)cJSON_GetObjectItem(lora, "scale")->valuedouble;
        sdw_lora_spec spec = { path, scale, scale };
        sdw_lora_report rep;
        if (sdw_model_set_loras(m, &spec, 1, &rep) != SDW_OK) fail_msg("%s: %s", name, sdw_last_error());
        assert_int_equal(rep.keys_applied, sdw_json_int(lora, "n_lora_modules_injected", -1));
        assert_int_equal(rep.keys_total, rep.keys_applied);
    }

    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = sdw_json_str(j, "prompt", "");
    p.negative_prompt = sdw_json_str(j, "negative_prompt", NULL);
    p.width = sdw_json_int(j, "width", 0);
    p.height = sdw_json_int(j, "height", 0);
    p.steps = sdw_json_int(j, "steps", 0);
    p.cfg_scale = (float)cJSON_GetObjectItem(j, "guidance_scale")->valuedouble;
    p.seed = (uint64_t)cJSON_GetObjectItem(j, "seed")->valuedouble;
    p.clip_skip = sdw_json_int(j, "clip_skip_a1111", 0);
    p.batch_size = sdw_json_int(j, "num_images_per_prompt", 1);
    const cJSON *eta = cJSON_GetObjectItem(j, "eta");
    p.eta = cJSON_IsNumber(eta) ? (float)eta->valuedouble : 0.0f;
    map_scheduler(cJSON_GetObjectItem(j, "scheduler"), &p.sampler, &p.schedule);
    const cJSON *strength = cJSON_GetObjectItem(j, "strength");
    float *init = NULL, *mask = NULL;
    if (sdw_st_find(ref, "input.init_image")) init = test_load_f32(ref, "input.init_image", NULL);
    if (sdw_st_find(ref, "input.mask_image")) mask = test_load_f32(ref, "input.mask_image", NULL);
    p.init_image = init;
    p.mask = mask;
    p.strength = cJSON_IsNumber(strength) ? (float)strength->valuedouble : 1.0f;
    observer o = { ref, gate, name, 0, 0 };
    if (check_steps) {
        p.observe = on_tensor;
        p.observe_user = &o;
    }
    size_t n = (size_t)p.batch_size * p.width * p.height * 3;
    float *img = malloc(n * sizeof *img);
    if (sdw_pipeline_run(m, &p, img) != SDW_OK) fail_msg("%s: %s", name, sdw_last_error());
    float *ref_img = test_load_f32(ref, "image", NULL);
    char what[256];
    snprintf(what, sizeof what, "%s image (%s)", name, sdw_precision_name(prec));
    test_check_close(what, img, ref_img, n, gate);
    if (check_steps) {
        const sdw_st_tensor *t = sdw_st_find(ref, "step_latents");
        assert_int_equal(o.steps_checked, (int)t->shape[0]);
        printf("  %-48s worst step rel_l2 %.3g over %d steps\n", name, o.worst_step, o.steps_checked);
    }
    free(img);
    free(ref_img);
    free(init);
    free(mask);
    sdw_model_free(m);
    sdw_st_close(ref);
    cJSON_Delete(j);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void all_cases_f32(void **state)
{
    (void)state;
    printf("precision f32, cpu isa %s\n", sdw_cpu_isa_name());
    DIR *d = opendir(test_data_path("cases"));
    assert_non_null(d);
    char *names[128];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 128) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".json")) names[n++] = strndup(e->d_name, l - 5);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    assert_true(n >= 26);
    for (int i = 0; i < n; i++) {
        run_case(names[i], SDW_PRECISION_F32, F32_GATE, true);
        free(names[i]);
    }
}

/* bf16 against the f32 references: stated tolerance for these tiny models. */
#define BF16_GATE 3e-2
static void some_cases_bf16(void **state)
{
    (void)state;
    printf("precision bf16, cpu isa %s\n", sdw_cpu_isa_name());
    if (!test_precision_runs(SDW_PRECISION_BF16)) return;
    static const char *const cases[] = { "t2i_sd1_euler_cfg7.5", "t2i_sd2v_euler", "t2i_sdxl_euler", "inp9_sd1_euler" };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(cases[i], SDW_PRECISION_BF16, BF16_GATE, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(all_cases_f32),
        cmocka_unit_test(some_cases_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
