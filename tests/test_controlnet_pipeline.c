/* test_controlnet_pipeline.c: ControlNets in the SD1 / SDXL pipeline.
 *   golden: every case of tests/data/controlnet/cases (diffusers 0.27: txt2img, scale with start / end, two
 *           nets, guess mode, no CFG, img2img, 4-channel inpainting, SDXL): per step the scale each net got,
 *           the latents fed to the nets and the latents after the step; the summed step-0 residuals the
 *           UNet got (both CFG halves); the image. f32 within 1e-4 relative L2; bf16 3e-2 (where it runs).
 *   rules:  the step window, the per-residual scales of each mode (hand-computed), and A1111's two other
 *           control modes on a real run (no reference exists): their step-0 residuals are the balanced
 *           ones times 0.825^(12 - k), and "ControlNet is more important" leaves the unconditional half
 *           at zero.
 *   checks: what the pipeline refuses; the units in A1111's parameters text. */
#include "testkit.h"
#include "io/json_file.h"
#include "models/controlnet.h"
#include "pipeline/control.h"
#include "pipeline/infotext.h"
#include "pipeline/pipeline.h"
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F32_GATE 1e-4
#define BF16_GATE 3e-2
#define MAX_NETS 2

/* The reference scheduler of a case as our sampler + schedule (as test_pipeline.c). */
static void map_scheduler(const cJSON *sched, sdw_sampler_kind *k, sdw_schedule_kind *sk)
{
    const char *cls = cJSON_GetObjectItem(sched, "class")->valuestring;
    const char *spacing = sdw_json_str(cJSON_GetObjectItem(sched, "config"), "timestep_spacing", "leading");
    *sk = !strcmp(spacing, "leading") ? SDW_SCHEDULE_LEADING
          : !strcmp(spacing, "trailing") ? SDW_SCHEDULE_TRAILING
                                         : SDW_SCHEDULE_NORMAL;
    if (!strcmp(cls, "EulerDiscreteScheduler")) *k = SDW_SAMPLER_EULER;
    else fail_msg("unmapped scheduler %s", cls);
}

/* A manifest value given as a number or a per-net list. */
static float per_net(const cJSON *j, const char *key, int k)
{
    const cJSON *v = cJSON_GetObjectItem(j, key);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, k);
    if (!cJSON_IsNumber(v)) fail_msg("manifest: %s[%d] is not a number", key, k);
    return (float)v->valuedouble;
}

/* ---------------------------------------------------------------- golden cases */

typedef struct {
    const sdw_safetensors *ref;
    const char *name;
    double gate;
    int n_nets, evals, steps;
    double worst_step, worst_in, worst_res;
    int res_checked;
} observer;

/* Row `row` of the reference tensor `name` against x (n floats). */
static double row_rel(const observer *o, const char *name, int row, const float *x, size_t n)
{
    const sdw_st_tensor *t = sdw_st_find(o->ref, name);
    if (!t) fail_msg("%s: the reference has no %s", o->name, name);
    if (row >= (int)t->shape[0]) fail_msg("%s: %s has %d rows, asked for %d", o->name, name, (int)t->shape[0], row);
    float *ref = test_load_f32(o->ref, name, NULL);
    double rel = test_rel_l2(x, ref + (size_t)row * n, n);
    free(ref);
    return rel;
}

static void on_tensor(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape)
{
    observer *o = user;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (!strcmp(name, "controlnet_scale")) {
        float *ref = test_load_f32(o->ref, "controlnet_scale", NULL);
        assert_int_equal((int)n, o->n_nets);
        for (int k = 0; k < o->n_nets; k++)
            if (fabsf(x[k] - ref[(size_t)step * o->n_nets + k]) > 1e-6f)
                fail_msg("%s: step %d net %d scale %g, reference %g", o->name, step, k, x[k], ref[(size_t)step * o->n_nets + k]);
        free(ref);
        o->evals++;
    } else if (!strcmp(name, "controlnet_in")) {
        double rel = row_rel(o, "controlnet_in", step, x, n);
        if (rel > o->worst_in) o->worst_in = rel;
        if (!(rel < o->gate)) fail_msg("%s: step %d controlnet_in rel L2 %.3g", o->name, step, rel);
    } else if (!strcmp(name, "step_latents")) {
        double rel = row_rel(o, "step_latents", o->steps, x, n);
        if (rel > o->worst_step) o->worst_step = rel;
        if (!(rel < o->gate)) fail_msg("%s: step %d latents rel L2 %.3g", o->name, o->steps, rel);
        o->steps++;
    } else if (!strncmp(name, "down_res.", 9) || !strcmp(name, "mid_res")) {
        char ref_name[64];
        snprintf(ref_name, sizeof ref_name, "step0.%s", name);
        assert_int_equal(step, 0);
        double rel = row_rel(o, ref_name, 0, x, n);
        /* In guess mode the reference's unconditional half is zeros, as ours must be. */
        if (rel > o->worst_res) o->worst_res = rel;
        if (!(rel < o->gate)) fail_msg("%s: %s rel L2 %.3g", o->name, ref_name, rel);
        o->res_checked++;
    }
}

static sdw_model *load_base(const char *family, sdw_precision prec)
{
    char path[512];
    snprintf(path, sizeof path, "models/%s/%s.safetensors", family, family);
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = prec;
    sdw_model *m;
    if (sdw_model_load(test_data_path(path), &lp, &m) != SDW_OK) fail_msg("%s", sdw_last_error());
    return m;
}

/* The case's net k as its single file (or, with diffusers_dir, its diffusers folder where it has one). */
static sdw_controlnet *load_net(sdw_model *m, const cJSON *j, int k, bool diffusers_dir)
{
    const cJSON *desc = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "controlnet_models"), k);
    const char *dir = sdw_json_str(desc, "dir", "");
    char path[1024];
    if (diffusers_dir && cJSON_GetObjectItem(desc, "diffusers_dir"))
        snprintf(path, sizeof path, "controlnet/%s", sdw_json_str(desc, "diffusers_dir", ""));
    else
        snprintf(path, sizeof path, "controlnet/%s/%s", dir, cJSON_GetObjectItem(desc, "single_files")->child->string);
    sdw_controlnet *cn;
    if (sdw_controlnet_load(m->be, test_data_path(path), &cn) != SDW_OK) fail_msg("%s: %s", path, sdw_last_error());
    return cn;
}

/* [H, W] edge map (0 or 1) -> [H, W, 3]. */
static float *control_rgb(const sdw_safetensors *ref, const char *name, size_t hw)
{
    float *gray = test_load_f32(ref, name, NULL), *rgb = malloc(hw * 3 * sizeof *rgb);
    for (size_t i = 0; i < hw * 3; i++) rgb[i] = gray[i / 3];
    free(gray);
    return rgb;
}

static void run_case(const char *name, sdw_precision prec, double gate, bool check_steps, bool diffusers_dir)
{
    char path[512];
    snprintf(path, sizeof path, "controlnet/cases/%s.json", name);
    cJSON *j;
    assert_int_equal(sdw_json_load_file(test_data_path(path), &j), SDW_OK);
    snprintf(path, sizeof path, "controlnet/cases/%s.safetensors", name);
    sdw_safetensors *ref = test_open_st(path);
    sdw_model *m = load_base(sdw_json_str(j, "family", ""), prec);

    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = sdw_json_str(j, "prompt", "");
    p.negative_prompt = sdw_json_str(j, "negative_prompt", NULL);
    p.width = sdw_json_int(j, "width", 0);
    p.height = sdw_json_int(j, "height", 0);
    p.steps = sdw_json_int(j, "steps", 0);
    p.cfg_scale = (float)cJSON_GetObjectItem(j, "guidance_scale")->valuedouble;
    p.seed = (uint64_t)cJSON_GetObjectItem(j, "seed")->valuedouble;
    map_scheduler(cJSON_GetObjectItem(j, "scheduler"), &p.sampler, &p.schedule);
    const cJSON *strength = cJSON_GetObjectItem(j, "strength");
    float *init = sdw_st_find(ref, "input.init_image") ? test_load_f32(ref, "input.init_image", NULL) : NULL;
    float *mask = sdw_st_find(ref, "input.mask_image") ? test_load_f32(ref, "input.mask_image", NULL) : NULL;
    p.init_image = init;
    p.mask = mask;
    p.strength = cJSON_IsNumber(strength) ? (float)strength->valuedouble : 1.0f;

    const cJSON *nets = cJSON_GetObjectItem(j, "controlnet");
    int n_nets = cJSON_IsArray(nets) ? cJSON_GetArraySize(nets) : 1;
    assert_true(n_nets >= 1 && n_nets <= MAX_NETS);
    sdw_controlnet *cn[MAX_NETS];
    sdw_control_unit units[MAX_NETS];
    float *images[MAX_NETS];
    size_t hw = (size_t)p.width * p.height;
    for (int k = 0; k < n_nets; k++) {
        cn[k] = load_net(m, j, k, diffusers_dir);
        images[k] = control_rgb(ref, k ? "input.control_image.1" : "input.control_image", hw);
        units[k] = (sdw_control_unit){ cn[k], images[k], per_net(j, "controlnet_conditioning_scale", k),
                                       per_net(j, "control_guidance_start", k), per_net(j, "control_guidance_end", k),
                                       SDW_CONTROL_BALANCED };
    }
    p.controls = units;
    p.n_controls = n_nets;
    p.control_guess = cJSON_IsTrue(cJSON_GetObjectItem(j, "guess_mode"));

    observer o = { ref, name, gate, n_nets, 0, 0, 0, 0, 0, 0 };
    if (check_steps) {
        p.observe = on_tensor;
        p.observe_user = &o;
    }
    float *img = malloc(hw * 3 * sizeof *img);
    if (sdw_pipeline_run(m, &p, img) != SDW_OK) fail_msg("%s: %s", name, sdw_last_error());
    float *ref_img = test_load_f32(ref, "image", NULL);
    char what[256];
    snprintf(what, sizeof what, "%s image (%s%s)", name, sdw_precision_name(prec), diffusers_dir ? ", diffusers folder" : "");
    test_check_close(what, img, ref_img, hw * 3, gate);
    if (check_steps) {
        int ran = (int)sdw_st_find(ref, "step_latents")->shape[0];
        assert_int_equal(o.steps, ran);
        assert_int_equal(o.evals, ran);
        assert_int_equal(o.res_checked, sdw_controlnet_get_info(cn[0])->n_down + 1);
        printf("  %-34s %d nets, worst rel_l2: step latents %.3g, controlnet_in %.3g, step-0 residuals %.3g\n", name,
               n_nets, o.worst_step, o.worst_in, o.worst_res);
    }
    for (int k = 0; k < n_nets; k++) {
        sdw_controlnet_free(cn[k]);
        free(images[k]);
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

static void golden_cases_f32(void **state)
{
    (void)state;
    printf("precision f32, cpu isa %s\n", sdw_cpu_isa_name());
    DIR *d = opendir(test_data_path("controlnet/cases"));
    assert_non_null(d);
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".json")) names[n++] = strndup(e->d_name, l - 5);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    assert_true(n >= 9);
    for (int i = 0; i < n; i++) {
        run_case(names[i], SDW_PRECISION_F32, F32_GATE, true, false);
        free(names[i]);
    }
    /* The same net from its diffusers folder. */
    run_case("cn_t2i_sd1_euler", SDW_PRECISION_F32, F32_GATE, false, true);
    run_case("cn_t2i_sdxl_euler", SDW_PRECISION_F32, F32_GATE, false, true);
}

static void golden_cases_bf16(void **state)
{
    (void)state;
    printf("precision bf16, cpu isa %s\n", sdw_cpu_isa_name());
    if (!test_precision_runs(SDW_PRECISION_BF16)) return;
    static const char *const cases[] = { "cn_t2i_sd1_euler", "cn_t2i_sd1_multi", "cn_inp4_sd1_euler_s0.75",
                                         "cn_t2i_sdxl_guess_neg" };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(cases[i], SDW_PRECISION_BF16, BF16_GATE, false, false);
}

/* ---------------------------------------------------------------- the rules by hand */

static void step_window(void **state)
{
    (void)state;
    sdw_control_unit u = { NULL, NULL, 0.5f, 0.2f, 0.8f, SDW_CONTROL_BALANCED };
    /* The README's example: 8 steps, start 0.2, end 0.8 -> steps 2..5. */
    for (int i = 0; i < 8; i++) assert_int_equal(sdw_control_active(&u, i, 8), i >= 2 && i <= 5);
    /* Boundaries as written count as inside: 1/5 = start 0.2, (3+1)/5 = end 0.8. */
    for (int i = 0; i < 5; i++) assert_int_equal(sdw_control_active(&u, i, 5), i >= 1 && i <= 3);
    u.start = 0.25f;
    u.end = 0.75f;
    for (int i = 0; i < 8; i++) assert_int_equal(sdw_control_active(&u, i, 8), i >= 2 && i <= 5);
    u.start = 0.0f;
    u.end = 1.0f;
    for (int i = 0; i < 3; i++) assert_true(sdw_control_active(&u, i, 3));
}

static void mode_scales(void **state)
{
    (void)state;
    float s[SDW_CONTROLNET_MAX_RES + 1];
    sdw_control_unit u = { NULL, NULL, 0.8f, 0.0f, 1.0f, SDW_CONTROL_BALANCED };
    sdw_control_scales(&u, false, 0, 4, 12, s);
    for (int k = 0; k <= 12; k++) assert_float_equal(s[k], 0.8f, 0);
    /* My prompt is more important (SD1: 12 down residuals + middle): weight * 0.825^(12 - k). */
    u.mode = SDW_CONTROL_PROMPT;
    sdw_control_scales(&u, false, 0, 4, 12, s);
    assert_float_equal(s[0], 0.8 * 0.09941396206337118, 1e-7);   /* 0.825^12 */
    assert_float_equal(s[11], 0.8 * 0.825, 1e-7);
    assert_float_equal(s[12], 0.8f, 1e-7);
    /* SDXL (9 + middle): hook.py keeps the first 10 of the 13 weights, the middle one gets 0.825^3. */
    sdw_control_scales(&u, false, 0, 4, 9, s);
    assert_float_equal(s[0], 0.8 * 0.09941396206337118, 1e-7);
    assert_float_equal(s[9], 0.8 * 0.825 * 0.825 * 0.825, 1e-7);
    /* ControlNet is more important: the same weights, on the conditional half only. */
    u.mode = SDW_CONTROL_CONTROLNET;
    sdw_control_scales(&u, false, 0, 4, 12, s);
    assert_float_equal(s[5], 0.8 * pow(0.825, 7), 1e-7);
    assert_true(sdw_control_cond_only(&u, false));
    u.mode = SDW_CONTROL_PROMPT;
    assert_false(sdw_control_cond_only(&u, false));
    /* diffusers' guess mode: logspace(-1, 0, n + 1), both ends exact. */
    u.mode = SDW_CONTROL_BALANCED;
    sdw_control_scales(&u, true, 0, 4, 6, s);
    assert_true(sdw_control_cond_only(&u, true));
    for (int k = 0; k <= 6; k++) assert_float_equal(s[k], 0.8 * pow(10.0, -1.0 + k / 6.0), 1e-7);
    assert_float_equal(s[0], 0.8f * 0.1f, 1e-8);
    assert_float_equal(s[6], 0.8f, 0);
    /* Outside the window every residual gets 0. */
    u.start = 0.5f;
    sdw_control_scales(&u, false, 0, 4, 6, s);
    for (int k = 0; k <= 6; k++) assert_float_equal(s[k], 0.0f, 0);
}

/* Step-0 residuals of a run of cn_t2i_sd1_euler (or its CFG-1 sibling) in mode `mode`. */
typedef struct {
    float *res[16];
    int64_t shape[16][4];
    int n;
} residuals;

static void grab(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape)
{
    residuals *r = user;
    if (step != 0 || (strncmp(name, "down_res.", 9) && strcmp(name, "mid_res")) || r->n == 16) return;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)(r->shape[r->n][i] = shape[i]);
    r->res[r->n] = malloc(n * sizeof(float));
    memcpy(r->res[r->n++], x, n * sizeof(float));
}

static void run_mode(sdw_model *m, sdw_controlnet *cn, const float *image, float cfg, sdw_control_mode mode, residuals *out,
                     float *img)
{
    sdw_control_unit u = { cn, image, 0.9f, 0.0f, 1.0f, mode };
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = "a lighthouse on a cliff";
    p.width = p.height = 64;
    p.steps = 3;
    p.cfg_scale = cfg;
    p.seed = 7;
    p.sampler = SDW_SAMPLER_EULER;
    p.controls = &u;
    p.n_controls = 1;
    p.observe = grab;
    p.observe_user = out;
    memset(out, 0, sizeof *out);
    if (sdw_pipeline_run(m, &p, img) != SDW_OK) fail_msg("%s", sdw_last_error());
}

static void free_residuals(residuals *r)
{
    for (int i = 0; i < r->n; i++) free(r->res[i]);
}

static void a1111_modes(void **state)
{
    (void)state;
    sdw_model *m = load_base("sd1-tiny", SDW_PRECISION_F32);
    sdw_controlnet *cn;
    assert_int_equal(sdw_controlnet_load(m->be, test_data_path("controlnet/models/cn-sd1-tiny/cn-sd1-tiny.safetensors"), &cn),
                     SDW_OK);
    sdw_safetensors *ref = test_open_st("controlnet/cases/cn_t2i_sd1_euler.safetensors");
    float *image = control_rgb(ref, "input.control_image", 64 * 64);
    int n_down = sdw_controlnet_get_info(cn)->n_down;
    float *img[3];
    for (int c = 0; c < 2; c++) {
        float cfg = c ? 1.0f : 7.5f;
        residuals bal, prompt, ctl;
        for (int i = 0; i < 3; i++) img[i] = malloc(64 * 64 * 3 * sizeof(float));
        run_mode(m, cn, image, cfg, SDW_CONTROL_BALANCED, &bal, img[0]);
        run_mode(m, cn, image, cfg, SDW_CONTROL_PROMPT, &prompt, img[1]);
        run_mode(m, cn, image, cfg, SDW_CONTROL_CONTROLNET, &ctl, img[2]);
        assert_int_equal(bal.n, n_down + 1);
        assert_int_equal(prompt.n, n_down + 1);
        assert_int_equal(ctl.n, n_down + 1);
        for (int k = 0; k <= n_down; k++) {
            int64_t N = bal.shape[k][0];
            size_t half = (size_t)(bal.shape[k][1] * bal.shape[k][2] * bal.shape[k][3]) * (cfg > 1 ? N / 2 : 0);
            size_t all = (size_t)(N * bal.shape[k][1] * bal.shape[k][2] * bal.shape[k][3]);
            assert_int_equal(N, cfg > 1 ? 2 : 1);
            float w = (float)pow(0.825, 12 - k);
            float *want = malloc(all * sizeof *want);
            for (size_t i = 0; i < all; i++) want[i] = bal.res[k][i] * w;
            char what[96];
            snprintf(what, sizeof what, "cfg %g, prompt mode, residual %d", cfg, k);
            test_check_close(what, prompt.res[k], want, all, 1e-6);
            /* ControlNet is more important: the unconditional half sees nothing, the conditional half the soft weights. */
            for (size_t i = 0; i < half; i++)
                if (ctl.res[k][i] != 0.0f) fail_msg("controlnet mode: residual %d unconditional half not zero", k);
            snprintf(what, sizeof what, "cfg %g, controlnet mode, residual %d (conditional half)", cfg, k);
            test_check_close(what, ctl.res[k] + half, want + half, all - half, 1e-6);
            free(want);
        }
        /* The modes do change the picture. */
        assert_true(test_rel_l2(img[1], img[0], 64 * 64 * 3) > 1e-3);
        if (cfg > 1) assert_true(test_rel_l2(img[2], img[1], 64 * 64 * 3) > 1e-3);
        else assert_true(test_rel_l2(img[2], img[1], 64 * 64 * 3) == 0.0);   /* without CFG all rows are conditional */
        printf("  cfg %-4g prompt vs balanced image rel_l2 %.3g, controlnet vs prompt %.3g\n", cfg,
               test_rel_l2(img[1], img[0], 64 * 64 * 3), test_rel_l2(img[2], img[1], 64 * 64 * 3));
        free_residuals(&bal);
        free_residuals(&prompt);
        free_residuals(&ctl);
        for (int i = 0; i < 3; i++) free(img[i]);
    }
    free(image);
    sdw_st_close(ref);
    sdw_controlnet_free(cn);
    sdw_model_free(m);
}

/* ---------------------------------------------------------------- refusals */

static void expect_refusal(sdw_model *m, sdw_pipeline_params *p, const char *needle)
{
    float img[64 * 64 * 3];
    assert_int_not_equal(sdw_pipeline_run(m, p, img), SDW_OK);
    if (!strstr(sdw_last_error(), needle)) fail_msg("error '%s' lacks '%s'", sdw_last_error(), needle);
    printf("  refused: %s\n", sdw_last_error());
}

static void refusals(void **state)
{
    (void)state;
    sdw_model *m = load_base("sd1-tiny", SDW_PRECISION_F32);
    sdw_controlnet *xl;
    assert_int_equal(sdw_controlnet_load(m->be, test_data_path("controlnet/models/cn-sdxl-tiny/cn-sdxl-tiny.safetensors"), &xl),
                     SDW_OK);
    static float image[64 * 64 * 3];
    sdw_control_unit u = { xl, image, 1.0f, 0.0f, 1.0f, SDW_CONTROL_BALANCED };
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.width = p.height = 64;
    p.steps = 1;
    p.controls = &u;
    p.n_controls = 1;
    expect_refusal(m, &p, "ControlNet unit 0");   /* an SDXL net on an SD1 base */
    sdw_controlnet *sd1;
    assert_int_equal(sdw_controlnet_load(m->be, test_data_path("controlnet/models/cn-sd1-tiny/cn-sd1-tiny.safetensors"), &sd1),
                     SDW_OK);
    u.net = sd1;
    u.start = 0.5f;
    u.end = 0.5f;
    expect_refusal(m, &p, "start < end");
    u.start = 0.0f;
    u.end = 1.0f;
    u.scale = 2.5f;
    expect_refusal(m, &p, "0..2");
    u.scale = 1.0f;
    u.mode = SDW_CONTROL_PROMPT;
    p.control_guess = true;
    expect_refusal(m, &p, "guess mode");
    p.control_guess = false;
    u.mode = SDW_CONTROL_BALANCED;
    u.image = NULL;
    expect_refusal(m, &p, "no image");
    sdw_controlnet_free(xl);
    sdw_controlnet_free(sd1);
    sdw_model_free(m);
}

/* ---------------------------------------------------------------- parameters text */

static void infotext_entries(void **state)
{
    (void)state;
    static float image[8 * 8 * 3];
    sdw_control_unit u[2] = { { NULL, image, 1.0f, 0.0f, 1.0f, SDW_CONTROL_BALANCED },
                              { NULL, image, 0.55f, 0.1f, 0.75f, SDW_CONTROL_CONTROLNET } };
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = "a house";
    p.controls = u;
    p.n_controls = 2;
    sdw_infotext_control info[2] = { { "canny", "control_v11p_sd15_canny", "d14c016b", "Crop and Resize", 512, 100, 200 },
                                     { "none", "my, net", NULL, "Just Resize", -1, -1, -1 } };
    sdw_infotext_args a = { &p, 1, "base", NULL, "lora: 0123456789ab" };
    char *text = sdw_infotext_controls(&a, info);
    printf("%s\n", text);
    /* sd-webui-controlnet's serialize_unit, quoted as A1111 quotes a value holding ',' and ':', before the
     * Lora hashes (A1111 writes extensions' entries in the order they were added). */
    const char *want0 = "ControlNet 0: \"Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1, Resize Mode: "
                        "Crop and Resize, Low Vram: False, Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance "
                        "Start: 0, Guidance End: 1, Pixel Perfect: False, Control Mode: Balanced, Hr Option: Both, Save "
                        "Detected Map: True\", ";
    const char *want1 = "ControlNet 1: \"Module: none, Model: my_ net, Weight: 0.55, Resize Mode: Just Resize, Low Vram: "
                        "False, Guidance Start: 0.1, Guidance End: 0.75, Pixel Perfect: False, Control Mode: ControlNet is "
                        "more important, Hr Option: Both, Save Detected Map: True\", Lora hashes: ";
    if (!strstr(text, want0)) fail_msg("lacks %s", want0);
    if (!strstr(text, want1)) fail_msg("lacks %s", want1);
    free(text);
    /* Without descriptions: module none, model None. */
    p.n_controls = 1;
    text = sdw_infotext(&a);
    assert_non_null(strstr(text, "ControlNet 0: \"Module: none, Model: None, Weight: 1, Resize Mode: Crop and Resize"));
    free(text);
    /* A1111's short hash: the SHA-256 of the 64 KiB at 1 MiB (of nothing for a smaller file). */
    char h[16];
    sdw_infotext_short_hash(test_data_path("controlnet/models/cn-sd1-tiny/cn-sd1-tiny.safetensors"), h);
    assert_string_equal(h, "f250768d");
    sdw_infotext_short_hash(test_data_path("controlnet/README.md"), h);
    assert_string_equal(h, "e3b0c442");
    sdw_infotext_short_hash(test_data_path("controlnet/models/cn-sd1-tiny/diffusers"), h);
    assert_string_equal(h, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(step_window),     cmocka_unit_test(mode_scales),       cmocka_unit_test(infotext_entries),
        cmocka_unit_test(refusals),
        cmocka_unit_test(a1111_modes),     cmocka_unit_test(golden_cases_f32),  cmocka_unit_test(golden_cases_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
