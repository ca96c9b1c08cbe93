/* test_samplers_sd3.c: the flow schedule and sampler as SD3 / SD3.5 use them
 * (beside test_samplers_flow.c, FLUX's), without a transformer.
 *
 * Golden (tests/data/sd3, diffusers 0.32 StableDiffusion3Pipeline & co.,
 * FlowMatchEulerDiscreteScheduler with the static shift 3): the flow schedule
 * with flow_static_shift equals every case's sigmas / timesteps bit for bit;
 * a flow Euler run from each case's initial latents, answered with its
 * recorded velocities (CFG, then skip-layer guidance where the case has it),
 * reproduces every step (img2img: start step and add_noise; inpaint: the
 * pipeline's blending in the step callback), and the noise draws are the
 * pipeline's. ComfyUI's schedules over SD3's table (ModelSamplingDiscreteFlow,
 * shift 3, 1000 entries) are checked in test_samplers_flow.c. */
#include "testkit.h"
#include "sampling/sampler.h"
#include "io/json_file.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GATE 1e-6

static void check_exact(const char *what, const float *got, const float *ref, int n)
{
    for (int i = 0; i < n; i++)
        if (got[i] != ref[i]) fail_msg("%s: entry %d is %.9g, reference %.9g", what, i, got[i], ref[i]);
}

/* ---- SD3: the static shift against diffusers' SD3 pipelines ---- */

static const char *const sd3_cases[] = {
    "t2i_sd3_euler", "t2i_sd3_euler_64x96_neg", "t2i_sd3_noT5", "t2i_sd3_t5len77", "i2i_sd3_euler_s0.6",
    "inp_sd3_euler_s0.8", "t2i_sd35_euler_80x64", "t2i_sd35_euler_slg",
};

static sdw_sampler *make_sd3(int steps, double shift)
{
    sdw_sampler_params p = {.sampler = SDW_SAMPLER_EULER, .schedule = SDW_SCHEDULE_FLOW, .steps = steps,
                            .param = SDW_PARAM_FLOW, .flow_mu = log(shift), .flow_static_shift = true};
    sdw_sampler *s = NULL;
    if (sdw_sampler_create(&p, &s) != SDW_OK) fail_msg("%s", sdw_last_error());
    return s;
}

static void test_sd3_schedule_golden(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof sd3_cases / sizeof *sd3_cases; c++) {
        char rel[256];
        snprintf(rel, sizeof rel, "sd3/cases/%s.json", sd3_cases[c]);
        cJSON *js = NULL;
        if (sdw_json_load_file(test_data_path(rel), &js) != SDW_OK) fail_msg("%s", sdw_last_error());
        snprintf(rel, sizeof rel, "sd3/cases/%s.safetensors", sd3_cases[c]);
        sdw_safetensors *st = test_open_st(rel);
        const cJSON *cfg = cJSON_GetObjectItem(cJSON_GetObjectItem(js, "scheduler"), "config");
        assert_false(cJSON_IsTrue(cJSON_GetObjectItem(cfg, "use_dynamic_shifting")));
        const double shift = cJSON_GetObjectItem(cfg, "shift")->valuedouble;
        const int steps = sdw_json_int(js, "steps", 0);
        int64_t n_sig, n_ts;
        float *sig = test_load_f32(st, "sigmas", &n_sig), *ts = test_load_f32(st, "timesteps", &n_ts);
        assert_int_equal(n_sig, steps + 1);
        assert_int_equal(n_ts, steps);
        sdw_sampler *s = make_sd3(steps, shift);
        assert_int_equal(sdw_sampler_steps(s), steps);
        check_exact(sd3_cases[c], sdw_sampler_sigmas(s), sig, steps + 1);
        check_exact(sd3_cases[c], sdw_sampler_timesteps(s), ts, steps);
        printf("  %-24s shift %g %d steps: sigmas and timesteps bit-exact\n", sd3_cases[c], shift, steps);
        sdw_sampler_free(s);
        free(sig);
        free(ts);
        sdw_st_close(st);
        cJSON_Delete(js);
    }
    /* the README's example: N = 6 -> 1000, 923.34, 818.92, 668.33, 432.23, 8.93 */
    sdw_sampler *s = make_sd3(6, 3.0);
    static const double t6[6] = {1000, 923.34, 818.92, 668.33, 432.23, 8.93};
    for (int i = 0; i < 6; i++) assert_true(fabs(sdw_sampler_timesteps(s)[i] - t6[i]) < 0.006);
    sdw_sampler_free(s);
    /* one step: sigma_max alone; shift 1: timesteps evenly from 1000 to 1 */
    s = make_sd3(1, 3.0);
    assert_true(sdw_sampler_sigmas(s)[0] == 1.0f && sdw_sampler_sigmas(s)[1] == 0.0f);
    sdw_sampler_free(s);
    /* ComfyUI's schedules over SD3's table do not look at the spacing flag */
    static const sdw_schedule_kind comfy[] = {SDW_SCHEDULE_SIMPLE, SDW_SCHEDULE_NORMAL, SDW_SCHEDULE_SGM_UNIFORM,
                                              SDW_SCHEDULE_BETA, SDW_SCHEDULE_KARRAS, SDW_SCHEDULE_EXPONENTIAL};
    for (size_t k = 0; k < sizeof comfy / sizeof *comfy; k++) {
        sdw_sampler *a = NULL, *b = NULL;
        sdw_sampler_params p = {.sampler = SDW_SAMPLER_EULER, .schedule = comfy[k], .steps = 13,
                                .param = SDW_PARAM_FLOW, .flow_mu = log(3.0)};
        assert_int_equal(sdw_sampler_create(&p, &a), SDW_OK);
        p.flow_static_shift = true;
        assert_int_equal(sdw_sampler_create(&p, &b), SDW_OK);
        assert_int_equal(sdw_sampler_steps(a), sdw_sampler_steps(b));
        assert_memory_equal(sdw_sampler_sigmas(a), sdw_sampler_sigmas(b), sizeof(float) * (sdw_sampler_steps(a) + 1));
        sdw_sampler_free(a);
        sdw_sampler_free(b);
    }
    s = make_sd3(4, 1.0);
    static const float lin4[5] = {1.0f, 0.667f, 0.334f, 0.001f, 0.0f};
    for (int i = 0; i < 5; i++) assert_true(fabsf(sdw_sampler_sigmas(s)[i] - lin4[i]) < 1e-7f);
    sdw_sampler_free(s);
}

/* The SD3 cases' run: the model answers with the recorded [uncond; cond]
 * velocities combined as the pipeline does (CFG, then skip-layer guidance on
 * the listed steps, in float32); its input must be the previous step's
 * latents; inpainting blends in the step callback. */
typedef struct {
    const char *name;
    const float *t_out, *t_fed, *init, *steps_ref, *slg_out, *mask, *img, *noise;
    const sdw_sampler *s;
    float g, slg_scale, *blend;
    int calls, n_calls, start, hw, seen, slg_next, n_slg;
    const int64_t *slg_steps;
    double worst_step;
} sd3_golden;

static sdw_status sd3_model(void *user, const float *x, float t, float *out, size_t n)
{
    sd3_golden *g = user;
    if (g->calls >= g->n_calls)
        fail_msg("%s: model called %d times, reference has %d", g->name, g->calls + 1, g->n_calls);
    const float *want_x = g->calls ? g->steps_ref + (size_t)(g->calls - 1) * n : g->init;
    if (memcmp(x, want_x, n * sizeof *x)) fail_msg("%s: call %d: input is not the previous latents", g->name, g->calls);
    if (t != g->t_fed[2 * g->calls])
        fail_msg("%s: call %d at %.9g, reference %.9g", g->name, g->calls, t, g->t_fed[2 * g->calls]);
    const float *u = g->t_out + (size_t)g->calls * 2 * n, *c = u + n;
    for (size_t i = 0; i < n; i++) out[i] = u[i] + g->g * (c[i] - u[i]);
    if (g->slg_next < g->n_slg && g->slg_steps[g->slg_next] == g->start + g->calls) {
        const float *sk = g->slg_out + (size_t)g->slg_next++ * n;
        for (size_t i = 0; i < n; i++) out[i] = out[i] + (c[i] - sk[i]) * g->slg_scale;
    }
    g->calls++;
    return SDW_OK;
}

static sdw_status sd3_step(void *user, int step, float *x, size_t n)
{
    sd3_golden *g = user;
    if (g->mask) {
        const float *proper = g->img;
        if (step < sdw_sampler_steps(g->s) - 1) {
            sdw_sampler_add_noise(g->s, step + 1, g->img, g->noise, g->blend, n);
            proper = g->blend;
        }
        for (size_t i = 0; i < n; i++) {
            const float m = g->mask[i % g->hw];
            x[i] = (1 - m) * proper[i] + m * x[i];
        }
    }
    const float *ref = g->steps_ref + (size_t)(step - g->start) * n;
    const double e = test_rel_l2(x, ref, n);
    if (e > g->worst_step) g->worst_step = e;
    if (!(e < GATE)) fail_msg("%s: latents after step %d: rel L2 %.3g", g->name, step, e);
    g->seen++;
    return SDW_OK;
}

static void test_sd3_case(void **state)
{
    const char *name = *state;
    char rel[256];
    snprintf(rel, sizeof rel, "sd3/cases/%s.json", name);
    cJSON *js = NULL;
    if (sdw_json_load_file(test_data_path(rel), &js) != SDW_OK) fail_msg("%s", sdw_last_error());
    snprintf(rel, sizeof rel, "sd3/cases/%s.safetensors", name);
    sdw_safetensors *st = test_open_st(rel);
    const int steps = sdw_json_int(js, "steps", 0), h = sdw_json_int(js, "height", 0) / 8,
              w = sdw_json_int(js, "width", 0) / 8;
    sdw_sampler *s = make_sd3(steps, 3.0);
    const char *pipeline = cJSON_GetObjectItem(js, "pipeline")->valuestring;
    const bool t2i = !strcmp(pipeline, "txt2img");
    const int start = t2i ? 0 : sdw_sampler_start_step(s, (float)cJSON_GetObjectItem(js, "strength")->valuedouble);
    if (!t2i) assert_int_equal(start, sdw_json_int(js, "t_start", -1));
    int64_t n, n_fed;
    float *init = test_load_f32(st, "initial_latents", &n), *t_fed = test_load_f32(st, "transformer_t", &n_fed);
    assert_int_equal(n, (int64_t)16 * h * w);
    sd3_golden g = {.name = name, .init = init, .t_fed = t_fed, .s = s, .n_calls = (int)(n_fed / 2), .start = start,
                    .hw = h * w, .g = (float)cJSON_GetObjectItem(js, "guidance_scale")->valuedouble};
    assert_int_equal(start, steps - g.n_calls);
    float *t_out = test_load_f32(st, "transformer_out", NULL), *steps_ref = test_load_f32(st, "step_latents", NULL);
    g.t_out = t_out;
    g.steps_ref = steps_ref;

    /* the generator: txt2img draws the noise; img2img / inpaint the VAE
     * posterior sample first */
    sdw_rng rng;
    sdw_rng_init(&rng, SDW_RNG_CPU, (uint64_t)cJSON_GetObjectItem(js, "seed")->valuedouble);
    float *noise = malloc((size_t)n * sizeof *noise), *x = malloc((size_t)n * sizeof *x);
    float *img = NULL, *ref_noise = NULL;
    if (!t2i) sdw_rng_randn(&rng, x, (size_t)n);
    sdw_rng_randn(&rng, noise, (size_t)n);
    if (t2i) {
        for (int64_t i = 0; i < n; i++) x[i] = noise[i] * sdw_sampler_init_noise_sigma(s);
        check_exact("initial latents = noise", x, init, (int)n);
    } else {
        ref_noise = test_load_f32(st, "initial_noise", NULL);
        check_exact("initial noise = the pipeline's draw", noise, ref_noise, (int)n);
        img = test_load_f32(st, "image_latents", NULL);
        sdw_sampler_add_noise(s, start, img, noise, x, (size_t)n);
        check_exact("initial latents = add_noise(image, noise, start)", x, init, (int)n);
    }
    float *mask = NULL, *slg_out = NULL;
    int64_t *slg_steps = NULL;
    if (!strcmp(pipeline, "inpaint")) {
        g.mask = mask = test_load_f32(st, "mask_latents", NULL);
        g.img = img;
        g.noise = noise;
        g.blend = malloc((size_t)n * sizeof(float));
    }
    if (cJSON_IsArray(cJSON_GetObjectItem(js, "skip_guidance_layers"))) {
        int64_t k;
        slg_steps = test_load_i64(st, "slg_steps", &k);
        g.slg_steps = slg_steps;
        g.n_slg = (int)k;
        g.slg_out = slg_out = test_load_f32(st, "slg_out", NULL);
        g.slg_scale = (float)cJSON_GetObjectItem(js, "skip_layer_guidance_scale")->valuedouble;
    }
    memcpy(x, init, (size_t)n * sizeof *x);
    if (sdw_sampler_run(s, x, (size_t)n, start, sd3_model, &g, sd3_step, &g, NULL) != SDW_OK)
        fail_msg("%s: %s", name, sdw_last_error());
    assert_int_equal(g.calls, g.n_calls);
    assert_int_equal(g.seen, g.n_calls);
    assert_int_equal(g.slg_next, g.n_slg);
    printf("  %-24s %-8s start %d: %d steps (%d with SLG); worst rel L2 latents %.2e\n", name, pipeline, start, g.seen,
           g.n_slg, g.worst_step);
    free(g.blend);
    free(mask);
    free(slg_out);
    free(slg_steps);
    free(img);
    free(ref_noise);
    free(noise);
    free(x);
    free(t_out);
    free(steps_ref);
    free(t_fed);
    free(init);
    sdw_sampler_free(s);
    sdw_st_close(st);
    cJSON_Delete(js);
}

#define SD3_CASE(i) {sd3_cases[i], test_sd3_case, NULL, NULL, (void *)sd3_cases[i]}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sd3_schedule_golden),
        SD3_CASE(0), SD3_CASE(1), SD3_CASE(2), SD3_CASE(3), SD3_CASE(4), SD3_CASE(5), SD3_CASE(6), SD3_CASE(7),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
