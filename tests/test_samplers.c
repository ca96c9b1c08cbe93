/* test_samplers.c: schedules and samplers, without a UNet.
 *
 * Golden: every end-to-end case of tests/data/cases (diffusers 0.27) maps its
 * scheduler to one of ours; the timesteps and sigmas must equal the
 * reference's, and a run from the case's initial latents, with a model that
 * checks its input against the recorded unet_in / unet_t and answers with the
 * recorded unet_out (CFG applied here), must reproduce every step's latents
 * (rel L2 < 1e-5). Ancestral / LCM noise comes from our torch-CPU generator,
 * advanced past the draws the pipeline made before the loop.
 *
 * Units: name tables, start steps, the karras / exponential / sgm_uniform /
 * simple / trailing schedules against the k-diffusion and ComfyUI formulas,
 * and every sampler on a Gaussian toy model whose exact solution is known.
 * Flow-matching models (FLUX) have their own file, test_samplers_flow.c. */
#include "testkit.h"
#include "sampling/sampler.h"
#include "io/json_file.h"
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GATE 1e-5

static sdw_status toy_model(void *user, const float *x_in, float t, float *out, size_t n);

/* ---- the case -> sampler mapping ---- */

typedef struct {
    const char *name;
    sdw_sampler_kind sampler;
    sdw_schedule_kind schedule;
} case_map;

static const case_map cases[] = {
    {"i2i_sd1_ddim_s0.8", SDW_SAMPLER_DDIM, SDW_SCHEDULE_LEADING},
    {"i2i_sd1_euler_s0.5", SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL},
    {"inp4_sd1_ddim_s0.75", SDW_SAMPLER_DDIM, SDW_SCHEDULE_LEADING},
    {"inp4_sd1_euler_s1.0", SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL},
    {"inp4_sd1_eulera_s0.8", SDW_SAMPLER_EULER_A, SDW_SCHEDULE_NORMAL},
    {"inp9_sd1_ddim_s0.75", SDW_SAMPLER_DDIM, SDW_SCHEDULE_LEADING},
    {"inp9_sd1_euler", SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL},
    {"lora_sd1_euler_base", SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL},
    {"lora_sd1_euler_scale0.5", SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL},
    {"lora_sd1_euler_scale1.0", SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL},
    {"t2i_sd1_ddim", SDW_SAMPLER_DDIM, SDW_SCHEDULE_LEADING},
    {"t2i_sd1_dpmpp2m", SDW_SAMPLER_DPMPP_2M, SDW_SCHEDULE_NORMAL},
    {"t2i_sd1_dpmpp2m_karras", SDW_SAMPLER_DPMPP_2M, SDW_SCHEDULE_KARRAS},
    {"t2i_sd1_euler_batch2", SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL},
    {"t2i_sd1_euler_cfg1_wide", SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL},
    {"t2i_sd1_euler_cfg7.5", SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL},
    {"t2i_sd1_euler_clipskip", SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL},
    {"t2i_sd1_eulera_neg", SDW_SAMPLER_EULER_A, SDW_SCHEDULE_NORMAL},
    {"t2i_sd1_lcm", SDW_SAMPLER_LCM, SDW_SCHEDULE_NORMAL},
    {"t2i_sd1_pndm", SDW_SAMPLER_PNDM, SDW_SCHEDULE_LEADING},
    {"t2i_sd2v_ddim", SDW_SAMPLER_DDIM, SDW_SCHEDULE_LEADING},
    {"t2i_sd2v_dpmpp2m_neg", SDW_SAMPLER_DPMPP_2M, SDW_SCHEDULE_NORMAL},
    {"t2i_sd2v_euler", SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL},
    {"t2i_sdxl_dpmpp2m_cfg1", SDW_SAMPLER_DPMPP_2M, SDW_SCHEDULE_NORMAL},
    {"t2i_sdxl_euler", SDW_SAMPLER_EULER, SDW_SCHEDULE_LEADING},
    {"t2i_sdxl_eulera_neg_wide", SDW_SAMPLER_EULER_A, SDW_SCHEDULE_NORMAL},
};
#define N_CASES (int)(sizeof cases / sizeof *cases)

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static sdw_schedule_kind spacing_kind(const char *spacing)
{
    if (!strcmp(spacing, "leading")) return SDW_SCHEDULE_LEADING;
    if (!strcmp(spacing, "trailing")) return SDW_SCHEDULE_TRAILING;
    assert_string_equal(spacing, "linspace");
    return SDW_SCHEDULE_NORMAL;
}

/* The mapping table, derived from the scheduler class and its config. */
static void map_scheduler(const cJSON *sched, sdw_sampler_kind *kind, sdw_schedule_kind *schedule)
{
    const char *cls = jstr(sched, "class");
    const cJSON *cfg = cJSON_GetObjectItem(sched, "config");
    assert_non_null(cfg);
    /* what every case shares, and what our table assumes */
    assert_string_equal(jstr(cfg, "beta_schedule"), "scaled_linear");
    assert_true(fabs(cJSON_GetObjectItem(cfg, "beta_start")->valuedouble - 0.00085) < 1e-12);
    assert_true(fabs(cJSON_GetObjectItem(cfg, "beta_end")->valuedouble - 0.012) < 1e-12);
    assert_int_equal(sdw_json_int(cfg, "num_train_timesteps", 0), 1000);
    assert_int_equal(sdw_json_int(cfg, "steps_offset", 0), 1);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(cfg, "rescale_betas_zero_snr")));
    const bool karras = cJSON_IsTrue(cJSON_GetObjectItem(cfg, "use_karras_sigmas"));
    const sdw_schedule_kind spacing = spacing_kind(jstr(cfg, "timestep_spacing"));
    if (!strcmp(cls, "EulerDiscreteScheduler") || !strcmp(cls, "EulerAncestralDiscreteScheduler")) {
        *kind = !strcmp(cls, "EulerDiscreteScheduler") ? SDW_SAMPLER_EULER : SDW_SAMPLER_EULER_A;
        *schedule = karras ? SDW_SCHEDULE_KARRAS : spacing;
    } else if (!strcmp(cls, "DPMSolverMultistepScheduler")) {
        assert_int_equal(sdw_json_int(cfg, "solver_order", 0), 2);
        assert_string_equal(jstr(cfg, "solver_type"), "midpoint");
        assert_string_equal(jstr(cfg, "final_sigmas_type"), "zero");
        const char *alg = jstr(cfg, "algorithm_type");
        *kind = !strcmp(alg, "sde-dpmsolver++") ? SDW_SAMPLER_DPMPP_2M_SDE : SDW_SAMPLER_DPMPP_2M;
        if (*kind == SDW_SAMPLER_DPMPP_2M) assert_string_equal(alg, "dpmsolver++");
        *schedule = karras ? SDW_SCHEDULE_KARRAS : spacing;
    } else if (!strcmp(cls, "DDIMScheduler") || !strcmp(cls, "PNDMScheduler")) {
        assert_false(cJSON_IsTrue(cJSON_GetObjectItem(cfg, "set_alpha_to_one")));
        assert_false(cJSON_IsTrue(cJSON_GetObjectItem(cfg, "clip_sample")));
        *kind = !strcmp(cls, "DDIMScheduler") ? SDW_SAMPLER_DDIM : SDW_SAMPLER_PNDM;
        if (*kind == SDW_SAMPLER_PNDM) assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cfg, "skip_prk_steps")));
        *schedule = spacing;
    } else if (!strcmp(cls, "LCMScheduler")) {
        assert_int_equal(sdw_json_int(cfg, "original_inference_steps", 0), 50);
        *kind = SDW_SAMPLER_LCM;
        *schedule = SDW_SCHEDULE_NORMAL;
    } else {
        fail_msg("unmapped scheduler class %s", cls);
    }
}

/* ---- the golden run ---- */

typedef struct {
    /* model */
    const float *unet_in, *unet_out, *unet_t;
    int n_calls, call;
    int batch, chans, hw;      /* latents [batch, 4, hw]; unet_in [cfg ? 2B : B, chans, hw] */
    bool cfg;
    float guidance;
    float *ref_half;
    double worst_in;
    /* steps */
    const float *step_latents;
    int n_ref_steps, start, steps_seen;
    double worst_step;
    /* 4-channel inpaint blending */
    const sdw_sampler *sampler;
    const float *mask, *image_latents, *noise;
    float *blend;
    const char *name;
} golden;

static sdw_status golden_model(void *user, const float *x_in, float t, float *out, size_t n)
{
    golden *g = user;
    if (g->call >= g->n_calls) fail_msg("%s: model called %d times, reference has %d", g->name, g->call + 1, g->n_calls);
    const int items = g->cfg ? 2 * g->batch : g->batch;
    const size_t item_in = (size_t)g->chans * g->hw, item = (size_t)4 * g->hw;
    assert_int_equal(n, (size_t)g->batch * item);
    const float *in = g->unet_in + (size_t)g->call * items * item_in;
    const float *ref = g->unet_out + (size_t)g->call * items * item;
    /* each half of the CFG batch holds our x_in in its first 4 channels */
    for (int half = 0; half < (g->cfg ? 2 : 1); half++) {
        for (int b = 0; b < g->batch; b++)
            memcpy(g->ref_half + b * item, in + (size_t)(half * g->batch + b) * item_in, item * sizeof(float));
        double e = test_rel_l2(x_in, g->ref_half, n);
        if (e > g->worst_in) g->worst_in = e;
        if (!(e < GATE)) fail_msg("%s: model input of call %d (half %d): rel L2 %.3g", g->name, g->call, half, e);
    }
    if (t != g->unet_t[g->call])
        fail_msg("%s: call %d at timestep %.9g, reference %.9g", g->name, g->call, t, g->unet_t[g->call]);
    if (g->cfg) {
        const float *u = ref, *c = ref + n;
        for (size_t i = 0; i < n; i++) out[i] = u[i] + g->guidance * (c[i] - u[i]);
    } else {
        memcpy(out, ref, n * sizeof *out);
    }
    g->call++;
    return SDW_OK;
}

static sdw_status golden_step(void *user, int step, float *x, size_t n)
{
    golden *g = user;
    if (g->mask) {
        /* StableDiffusionInpaintPipeline, 4-channel model: keep the unmasked
         * area on the image latents noised to the next level */
        const int steps = sdw_sampler_steps(g->sampler);
        const float *proper = g->image_latents;
        if (step < steps - 1) {
            sdw_sampler_add_noise(g->sampler, step + 1, g->image_latents, g->noise, g->blend, n);
            proper = g->blend;
        }
        const size_t item = (size_t)4 * g->hw;
        for (size_t i = 0; i < n; i++) {
            float m = g->mask[(i / item) * g->hw + i % g->hw];
            x[i] = (1 - m) * proper[i] + m * x[i];
        }
    }
    const int r = step - g->start;
    if (r < 0 || r >= g->n_ref_steps) fail_msg("%s: step %d has no reference (index %d)", g->name, step, r);
    double e = test_rel_l2(x, g->step_latents + (size_t)r * n, n);
    if (e > g->worst_step) g->worst_step = e;
    if (!(e < GATE)) fail_msg("%s: latents after step %d: rel L2 %.3g (max abs %.3g)", g->name, step, e,
                              test_max_abs(x, g->step_latents + (size_t)r * n, n));
    g->steps_seen++;
    return SDW_OK;
}

static double worst_in_all, worst_step_all;

static void test_case(void **state)
{
    const case_map *cm = *state;
    char rel[256];
    snprintf(rel, sizeof rel, "cases/%s.json", cm->name);
    cJSON *js = NULL;
    if (sdw_json_load_file(test_data_path(rel), &js) != SDW_OK) fail_msg("%s", sdw_last_error());
    snprintf(rel, sizeof rel, "cases/%s.safetensors", cm->name);
    sdw_safetensors *st = test_open_st(rel);

    const cJSON *sched = cJSON_GetObjectItem(js, "scheduler");
    sdw_sampler_params p = {0};
    map_scheduler(sched, &p.sampler, &p.schedule);
    assert_int_equal(p.sampler, cm->sampler);
    assert_int_equal(p.schedule, cm->schedule);
    p.steps = sdw_json_int(js, "steps", 0);
    p.param = !strcmp(jstr(cJSON_GetObjectItem(sched, "config"), "prediction_type"), "v_prediction") ? SDW_PARAM_V
                                                                                                      : SDW_PARAM_EPS;
    const cJSON *eta = cJSON_GetObjectItem(js, "eta");
    p.eta = cJSON_IsNumber(eta) ? (float)eta->valuedouble : 0.0f;
    sdw_sampler *s = NULL;
    if (sdw_sampler_create(&p, &s) != SDW_OK) fail_msg("%s", sdw_last_error());
    const int steps = sdw_sampler_steps(s);

    /* the schedule (pndm's lists its second timestep twice, as diffusers') */
    int64_t n_ts, n_sig;
    float *ts = test_load_f32(st, "timesteps", &n_ts);
    assert_int_equal(n_ts, steps);
    assert_int_equal(steps, p.steps + (p.sampler == SDW_SAMPLER_PNDM ? 1 : 0));
    for (int i = 0; i < steps; i++)
        if (sdw_sampler_timesteps(s)[i] != ts[i])
            fail_msg("%s: timestep %d is %.9g, reference %.9g", cm->name, i, sdw_sampler_timesteps(s)[i], ts[i]);
    if (sdw_st_find(st, "sigmas")) {
        float *sig = test_load_f32(st, "sigmas", &n_sig);
        assert_int_equal(n_sig, steps + 1);
        for (int i = 0; i <= steps; i++)
            if (sdw_sampler_sigmas(s)[i] != sig[i])
                fail_msg("%s: sigma %d is %.9g, reference %.9g", cm->name, i, sdw_sampler_sigmas(s)[i], sig[i]);
        free(sig);
    }

    /* shapes */
    const sdw_st_tensor *ti = sdw_st_find(st, "unet_in"), *tl = sdw_st_find(st, "initial_latents");
    assert_non_null(ti);
    assert_non_null(tl);
    golden g = {.name = cm->name, .sampler = s};
    g.batch = (int)tl->shape[0];
    g.hw = (int)(tl->shape[2] * tl->shape[3]);
    g.chans = (int)ti->shape[2];
    g.cfg = ti->shape[1] == 2 * tl->shape[0];
    g.guidance = (float)cJSON_GetObjectItem(js, "guidance_scale")->valuedouble;
    assert_true(g.cfg == (g.guidance > 1));
    const size_t n = (size_t)tl->numel;

    const char *pipeline = jstr(js, "pipeline");
    const cJSON *jstrength = cJSON_GetObjectItem(js, "strength");
    const float strength = cJSON_IsNumber(jstrength) ? (float)jstrength->valuedouble : 1.0f;
    const int start = !strcmp(pipeline, "txt2img") ? 0 : sdw_sampler_start_step(s, strength);

    /* the generator, past the pipeline's draws before the loop */
    sdw_rng rng;
    sdw_rng_init(&rng, SDW_RNG_CPU, (uint64_t)cJSON_GetObjectItem(js, "seed")->valuedouble);
    float *init = test_load_f32(st, "initial_latents", NULL);
    float *draw = malloc(n * sizeof *draw), *noise = malloc(n * sizeof *noise);
    if (!strcmp(pipeline, "txt2img")) {
        sdw_rng_randn(&rng, noise, n);
        for (size_t i = 0; i < n; i++) draw[i] = noise[i] * sdw_sampler_init_noise_sigma(s);
        test_check_close("initial latents = randn * init_noise_sigma", draw, init, n, 1e-6);
    } else if (!strcmp(pipeline, "img2img")) {
        sdw_rng_randn(&rng, draw, n);   /* VAE posterior sample */
        sdw_rng_randn(&rng, noise, n);
    } else {
        assert_string_equal(pipeline, "inpaint");
        if (g.chans == 9 && strength >= 1) {
            sdw_rng_randn(&rng, noise, n);
            sdw_rng_randn(&rng, draw, n);   /* masked-image VAE sample */
        } else {
            sdw_rng_randn(&rng, draw, n);   /* image VAE sample */
            sdw_rng_randn(&rng, noise, n);
            if (g.chans == 9) sdw_rng_randn(&rng, draw, n);
        }
        float *ref_noise = test_load_f32(st, "initial_noise", NULL);
        test_check_close("initial noise = the pipeline's noise draw", noise, ref_noise, n, 1e-6);
        free(ref_noise);
        if (strength >= 1) {
            for (size_t i = 0; i < n; i++) draw[i] = noise[i] * sdw_sampler_init_noise_sigma(s);
            test_check_close("initial latents = noise * init_noise_sigma", draw, init, n, 1e-6);
        } else if (sdw_st_find(st, "image_latents")) {
            float *img = test_load_f32(st, "image_latents", NULL);
            sdw_sampler_add_noise(s, start, img, noise, draw, n);
            test_check_close("initial latents = add_noise(image, noise, start)", draw, init, n, GATE);
            free(img);
        }
    }

    /* the loop */
    int64_t n_calls, n_steps_ref;
    float *unet_in = test_load_f32(st, "unet_in", NULL), *unet_out = test_load_f32(st, "unet_out", NULL);
    float *unet_t = test_load_f32(st, "unet_t", &n_calls);
    float *steps_ref = test_load_f32(st, "step_latents", &n_steps_ref);
    n_steps_ref /= (int64_t)n;
    g.unet_in = unet_in;
    g.unet_out = unet_out;
    g.unet_t = unet_t;
    g.n_calls = (int)n_calls;
    g.ref_half = malloc(n * sizeof(float));
    g.step_latents = steps_ref;
    g.n_ref_steps = (int)n_steps_ref;
    g.start = start;
    float *mask = NULL, *img = NULL;
    if (!strcmp(pipeline, "inpaint") && g.chans == 4) {
        mask = test_load_f32(st, "mask_latents", NULL);   /* [2, 1, h, w]: the CFG copies; the first */
        img = test_load_f32(st, "image_latents", NULL);
        g.mask = mask;
        g.image_latents = img;
        g.noise = noise;
        g.blend = malloc(n * sizeof(float));
    }
    assert_int_equal(g.n_calls, sdw_sampler_model_evals(s, start));
    float *x = malloc(n * sizeof *x);
    memcpy(x, init, n * sizeof *x);
    if (sdw_sampler_run(s, x, n, start, golden_model, &g, golden_step, &g, &rng) != SDW_OK)
        fail_msg("%s: %s", cm->name, sdw_last_error());
    assert_int_equal(g.call, g.n_calls);
    assert_int_equal(g.steps_seen, g.n_ref_steps);
    printf("  %-28s %-12s %-9s start %d: %d calls, %d steps; worst rel L2 model input %.2e, latents %.2e\n",
           cm->name, sdw_sampler_name(p.sampler), sdw_schedule_name(p.schedule), start, g.call, g.steps_seen,
           g.worst_in, g.worst_step);
    if (g.worst_in > worst_in_all) worst_in_all = g.worst_in;
    if (g.worst_step > worst_step_all) worst_step_all = g.worst_step;

    free(x);
    free(g.blend);
    free(mask);
    free(img);
    free(g.ref_half);
    free(unet_in);
    free(unet_out);
    free(unet_t);
    free(steps_ref);
    free(draw);
    free(noise);
    free(init);
    free(ts);
    sdw_sampler_free(s);
    sdw_st_close(st);
    cJSON_Delete(js);
}

/* Every case in tests/data/cases is in the table. */
static void test_case_list_complete(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s", test_data_path("cases"));
    DIR *d = opendir(path);
    if (!d) fail_msg("cannot list %s", path);
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json")) continue;
        found++;
        bool known = false;
        for (int i = 0; i < N_CASES; i++)
            if (strlen(cases[i].name) == len - 5 && !strncmp(cases[i].name, e->d_name, len - 5)) known = true;
        if (!known) fail_msg("case %s is not in the sampler mapping", e->d_name);
    }
    closedir(d);
    assert_int_equal(found, N_CASES);
    assert_int_equal(N_CASES, 26);
}

/* ---- names ---- */

static void test_names(void **state)
{
    (void)state;
    for (int k = 0; k < SDW_SAMPLER_COUNT; k++) {
        sdw_sampler_kind got;
        assert_int_equal(sdw_sampler_parse(sdw_sampler_name(k), &got), SDW_OK);
        assert_int_equal(got, k);
        assert_int_equal(sdw_sampler_parse(sdw_sampler_a1111_name(k), &got), SDW_OK);
        assert_int_equal(got, k);
    }
    for (int k = 0; k < SDW_SCHEDULE_COUNT; k++) {
        sdw_schedule_kind got;
        assert_int_equal(sdw_schedule_parse(sdw_schedule_name(k), &got), SDW_OK);
        assert_int_equal(got, k);
        assert_int_equal(sdw_schedule_parse(sdw_schedule_a1111_name(k), &got), SDW_OK);
        assert_int_equal(got, k);
    }
    static const struct { const char *s; sdw_sampler_kind k; } sn[] = {
        {"Euler a", SDW_SAMPLER_EULER_A}, {"EULER_A", SDW_SAMPLER_EULER_A}, {"dpm++ 2m", SDW_SAMPLER_DPMPP_2M},
        {"DPM++ 2M SDE", SDW_SAMPLER_DPMPP_2M_SDE}, {"dpm++2s_a", SDW_SAMPLER_DPMPP_2S_A},
        {"PLMS", SDW_SAMPLER_PNDM}, {"plms", SDW_SAMPLER_PNDM}, {"dpmpp_2m", SDW_SAMPLER_DPMPP_2M},
        {"euler_ancestral", SDW_SAMPLER_EULER_A}, {"LMS", SDW_SAMPLER_LMS}, {"lcm", SDW_SAMPLER_LCM},
        {"ipndm", SDW_SAMPLER_IPNDM}, {"iPNDM", SDW_SAMPLER_IPNDM},
    };
    for (size_t i = 0; i < sizeof sn / sizeof *sn; i++) {
        sdw_sampler_kind got;
        assert_int_equal(sdw_sampler_parse(sn[i].s, &got), SDW_OK);
        assert_int_equal(got, sn[i].k);
    }
    static const struct { const char *s; sdw_schedule_kind k; } cn[] = {
        {"discrete", SDW_SCHEDULE_NORMAL}, {"Normal", SDW_SCHEDULE_NORMAL}, {"Uniform", SDW_SCHEDULE_NORMAL},
        {"KARRAS", SDW_SCHEDULE_KARRAS}, {"SGM Uniform", SDW_SCHEDULE_SGM_UNIFORM},
        {"sgm_uniform", SDW_SCHEDULE_SGM_UNIFORM}, {"DDIM", SDW_SCHEDULE_LEADING}, {"leading", SDW_SCHEDULE_LEADING},
        {"trailing", SDW_SCHEDULE_TRAILING}, {"Simple", SDW_SCHEDULE_SIMPLE}, {"beta", SDW_SCHEDULE_BETA},
        {"Beta", SDW_SCHEDULE_BETA}, {"flow", SDW_SCHEDULE_FLOW}, {"flow_match", SDW_SCHEDULE_FLOW},
    };
    for (size_t i = 0; i < sizeof cn / sizeof *cn; i++) {
        sdw_schedule_kind got;
        assert_int_equal(sdw_schedule_parse(cn[i].s, &got), SDW_OK);
        assert_int_equal(got, cn[i].k);
    }
    assert_string_equal(sdw_sampler_a1111_name(SDW_SAMPLER_EULER_A), "Euler a");
    assert_string_equal(sdw_sampler_a1111_name(SDW_SAMPLER_PNDM), "PLMS");
    assert_string_equal(sdw_schedule_a1111_name(SDW_SCHEDULE_SGM_UNIFORM), "SGM Uniform");
    assert_string_equal(sdw_sampler_name(SDW_SAMPLER_DPMPP_2M_SDE), "dpm++2m_sde");
}

static void test_unknown_names(void **state)
{
    (void)state;
    sdw_sampler_kind k = SDW_SAMPLER_LMS;
    assert_int_equal(sdw_sampler_parse("euler_b", &k), SDW_ERR_INVALID_ARG);
    assert_int_equal(k, SDW_SAMPLER_LMS);
    const char *msg = sdw_last_error();
    assert_non_null(strstr(msg, "euler_b"));
    for (int i = 0; i < SDW_SAMPLER_COUNT; i++) {
        assert_non_null(strstr(msg, sdw_sampler_name(i)));
        assert_non_null(strstr(msg, sdw_sampler_a1111_name(i)));
    }
    assert_int_equal(sdw_sampler_parse(NULL, &k), SDW_ERR_INVALID_ARG);
    sdw_schedule_kind c;
    assert_int_equal(sdw_schedule_parse("Automatic", &c), SDW_ERR_INVALID_ARG);
    msg = sdw_last_error();
    assert_non_null(strstr(msg, "Automatic"));
    for (int i = 0; i < SDW_SCHEDULE_COUNT; i++) {
        assert_non_null(strstr(msg, sdw_schedule_name(i)));
        assert_non_null(strstr(msg, sdw_schedule_a1111_name(i)));
    }
    assert_int_equal(sdw_sampler_default_schedule(SDW_SAMPLER_DPMPP_2M), SDW_SCHEDULE_KARRAS);
    assert_int_equal(sdw_sampler_default_schedule(SDW_SAMPLER_EULER_A), SDW_SCHEDULE_NORMAL);
}

static sdw_sampler *make(sdw_sampler_kind k, sdw_schedule_kind c, int steps)
{
    sdw_sampler_params p = {.sampler = k, .schedule = c, .steps = steps};
    sdw_sampler *s = NULL;
    if (sdw_sampler_create(&p, &s) != SDW_OK) fail_msg("%s", sdw_last_error());
    return s;
}

static void test_bad_params(void **state)
{
    (void)state;
    sdw_sampler *s = (sdw_sampler *)1;
    sdw_sampler_params p = {.sampler = SDW_SAMPLER_EULER, .schedule = SDW_SCHEDULE_NORMAL, .steps = 0};
    assert_int_equal(sdw_sampler_create(&p, &s), SDW_ERR_INVALID_ARG);
    assert_null(s);
    p.steps = 1001;
    assert_int_equal(sdw_sampler_create(&p, &s), SDW_ERR_INVALID_ARG);
    p.steps = 20;
    p.eta = -1;
    assert_int_equal(sdw_sampler_create(&p, &s), SDW_ERR_INVALID_ARG);
    p.eta = 0;
    p.sampler = SDW_SAMPLER_COUNT;
    assert_int_equal(sdw_sampler_create(&p, &s), SDW_ERR_INVALID_ARG);
    p.sampler = SDW_SAMPLER_LCM;
    p.steps = 51;
    assert_int_equal(sdw_sampler_create(&p, &s), SDW_ERR_INVALID_ARG);
    /* an ancestral sampler without a generator */
    s = make(SDW_SAMPLER_EULER_A, SDW_SCHEDULE_NORMAL, 4);
    float x[16] = {0};
    assert_int_equal(sdw_sampler_run(s, x, 16, 0, toy_model, NULL, NULL, NULL, NULL), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_sampler_run(s, x, 16, 5, toy_model, NULL, NULL, NULL, NULL), SDW_ERR_INVALID_ARG);
    sdw_sampler_free(s);
    sdw_sampler_free(NULL);
}

static void test_start_step(void **state)
{
    (void)state;
    static const struct { int steps; float strength; int start; } cs[] = {
        {5, 0.8f, 1}, {6, 0.5f, 3}, {6, 0.75f, 2}, {5, 1.0f, 0}, {10, 0.7f, 3}, {20, 0.3f, 14}, {20, 0.15f, 17},
        {50, 0.75f, 13}, {30, 0.35f, 20}, {3, 0.01f, 3}, {4, 0.0f, 4}, {4, 1.5f, 0}, {7, 0.29f, 5},
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        sdw_sampler *s = make(SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL, cs[i].steps);
        int got = sdw_sampler_start_step(s, cs[i].strength);
        if (got != cs[i].start)
            fail_msg("steps %d strength %g: start %d, want %d", cs[i].steps, cs[i].strength, got, cs[i].start);
        sdw_sampler_free(s);
    }
}

/* ---- schedules against the k-diffusion / ComfyUI formulas ---- */

static const double SIGMA_MIN = 0.029167532920837402, SIGMA_MAX = 14.614645004272461;

static void check_sigmas(const char *what, const sdw_sampler *s, const double *want, int n)
{
    assert_int_equal(sdw_sampler_steps(s), n);
    const float *got = sdw_sampler_sigmas(s);
    for (int i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= 1e-6 * want[i]))
            fail_msg("%s: sigma %d is %.9g, want %.9g", what, i, got[i], want[i]);
    assert_true(got[n] == 0.0f);
}

/* The table of discrete sigmas, as the sampler sees it: the normal schedule
 * with 1000 steps visits every training timestep. */
static void full_table(double *sig)
{
    sdw_sampler *s = make(SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL, 1000);
    for (int i = 0; i < 1000; i++) {
        assert_true(sdw_sampler_timesteps(s)[i] == (float)(999 - i));
        sig[999 - i] = sdw_sampler_sigmas(s)[i];
    }
    assert_true(fabs(sig[0] - SIGMA_MIN) < 1e-12 && fabs(sig[999] - SIGMA_MAX) < 1e-12);
    sdw_sampler_free(s);
}

static void test_schedules(void **state)
{
    (void)state;
    double table[1000], want[64];
    full_table(table);
    for (int n = 1; n <= 25; n += 6) {
        char what[64];
        /* karras, rho 7 */
        for (int i = 0; i < n; i++) {
            double ramp = n == 1 ? 0 : (double)i / (n - 1);
            double a = pow(SIGMA_MAX, 1 / 7.0), b = pow(SIGMA_MIN, 1 / 7.0);
            want[i] = pow(a + ramp * (b - a), 7);
        }
        sdw_sampler *s = make(SDW_SAMPLER_EULER, SDW_SCHEDULE_KARRAS, n);
        snprintf(what, sizeof what, "karras %d", n);
        check_sigmas(what, s, want, n);
        /* its timesteps lie where the table has those sigmas */
        for (int i = 0; i < n; i++) {
            double t = sdw_sampler_timesteps(s)[i];
            int lo = t >= 999 ? 998 : (int)t;
            double ls = log(table[lo]) + (t - lo) * (log(table[lo + 1]) - log(table[lo]));
            assert_true(fabs(exp(ls) / want[i] - 1) < 1e-5);
        }
        sdw_sampler_free(s);
        /* exponential */
        for (int i = 0; i < n; i++)
            want[i] = exp(log(SIGMA_MAX) + (n == 1 ? 0 : (double)i / (n - 1)) * (log(SIGMA_MIN) - log(SIGMA_MAX)));
        s = make(SDW_SAMPLER_EULER, SDW_SCHEDULE_EXPONENTIAL, n);
        snprintf(what, sizeof what, "exponential %d", n);
        check_sigmas(what, s, want, n);
        sdw_sampler_free(s);
        /* sgm_uniform: linspace(999, 0, n + 1)[:-1] in t, sigma log-interpolated */
        for (int i = 0; i < n; i++) {
            double t = 999.0 - 999.0 * i / n;
            int lo = (int)floor(t), hi = (int)ceil(t);
            want[i] = exp((1 - (t - lo)) * log(table[lo]) + (t - lo) * log(table[hi]));
        }
        s = make(SDW_SAMPLER_EULER, SDW_SCHEDULE_SGM_UNIFORM, n);
        snprintf(what, sizeof what, "sgm_uniform %d", n);
        check_sigmas(what, s, want, n);
        sdw_sampler_free(s);
        /* simple: every (1000/n)-th sigma from the end */
        for (int i = 0; i < n; i++) want[i] = table[999 - (int)(i * 1000.0 / n)];
        s = make(SDW_SAMPLER_EULER, SDW_SCHEDULE_SIMPLE, n);
        snprintf(what, sizeof what, "simple %d", n);
        check_sigmas(what, s, want, n);
        for (int i = 0; i < n; i++) assert_true(sdw_sampler_timesteps(s)[i] == (float)(999 - (int)(i * 1000.0 / n)));
        sdw_sampler_free(s);
        /* trailing: round(1000 - i * 1000 / n) - 1 */
        for (int i = 0; i < n; i++) want[i] = table[(int)rint(1000 - i * 1000.0 / n) - 1];
        s = make(SDW_SAMPLER_EULER, SDW_SCHEDULE_TRAILING, n);
        snprintf(what, sizeof what, "trailing %d", n);
        check_sigmas(what, s, want, n);
        assert_true(sdw_sampler_init_noise_sigma(s) == sdw_sampler_sigmas(s)[0]);
        sdw_sampler_free(s);
    }
    /* spot values: trailing 5 = 999 799 599 399 199; leading 4 = 751 501 251 1;
     * dpm normal 6 = 999 832 666 500 333 166; lcm 4 = 999 759 499 259 */
    static const struct { sdw_sampler_kind k; sdw_schedule_kind c; int n; float t[6]; } spots[] = {
        {SDW_SAMPLER_DDIM, SDW_SCHEDULE_TRAILING, 5, {999, 799, 599, 399, 199}},
        {SDW_SAMPLER_DDIM, SDW_SCHEDULE_LEADING, 4, {751, 501, 251, 1}},
        {SDW_SAMPLER_DDIM, SDW_SCHEDULE_NORMAL, 5, {999, 749, 500, 250, 0}},
        {SDW_SAMPLER_DPMPP_2M, SDW_SCHEDULE_NORMAL, 6, {999, 832, 666, 500, 333, 166}},
        {SDW_SAMPLER_DPMPP_2M, SDW_SCHEDULE_LEADING, 5, {831, 665, 499, 333, 167}},
        {SDW_SAMPLER_LCM, SDW_SCHEDULE_NORMAL, 4, {999, 759, 499, 259}},
        {SDW_SAMPLER_LCM, SDW_SCHEDULE_LEADING, 4, {999, 759, 499, 259}},
        {SDW_SAMPLER_LCM, SDW_SCHEDULE_TRAILING, 4, {999, 749, 499, 249}},
        {SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL, 5, {999, 749.25f, 499.5f, 249.75f, 0}},
        {SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL, 1, {999}},
    };
    for (size_t i = 0; i < sizeof spots / sizeof *spots; i++) {
        sdw_sampler *s = make(spots[i].k, spots[i].c, spots[i].n);
        for (int j = 0; j < spots[i].n; j++) assert_true(sdw_sampler_timesteps(s)[j] == spots[i].t[j]);
        sdw_sampler_free(s);
    }
    /* leading Euler starts from sqrt(sigma_max^2 + 1), linspace from sigma_max */
    sdw_sampler *s = make(SDW_SAMPLER_EULER, SDW_SCHEDULE_LEADING, 5);
    float m = sdw_sampler_sigmas(s)[0];
    assert_true(sdw_sampler_init_noise_sigma(s) == sqrtf(m * m + 1));
    sdw_sampler_free(s);
    s = make(SDW_SAMPLER_DPMPP_2M, SDW_SCHEDULE_KARRAS, 6);
    assert_true(sdw_sampler_init_noise_sigma(s) == 1.0f);
    assert_true(sdw_sampler_is_vp(s));
    sdw_sampler_free(s);
}

/* ---- the toy model ---- */

/* Data x0 ~ N(0, SD^2) per element: the exact denoiser is x0 = x SD^2 /
 * (SD^2 + sigma^2) (sigma space), so eps = x sigma / (SD^2 + sigma^2) and
 * v = x_in sigma (1 - SD^2) / (SD^2 + sigma^2); the probability-flow ODE
 * carries x(sigma) proportional to sqrt(SD^2 + sigma^2). The model recovers
 * sigma from the timestep with its own float64 table. */
#define SD 0.5

typedef struct {
    double log_sigma[1000];
    bool v;
    int calls;
} toy;

static void toy_init(toy *m, bool v)
{
    double acc = 1;
    for (int i = 0; i < 1000; i++) {
        double b = sqrt(0.00085) + (sqrt(0.012) - sqrt(0.00085)) * i / 999.0;
        acc *= 1 - b * b;
        m->log_sigma[i] = 0.5 * log((1 - acc) / acc);
    }
    m->v = v;
    m->calls = 0;
}

static sdw_status toy_model(void *user, const float *x_in, float t, float *out, size_t n)
{
    toy *m = user;
    double tt = t < 0 ? 0 : t > 999 ? 999 : t;
    int lo = (int)floor(tt), hi = lo < 999 ? lo + 1 : lo;
    double sigma = exp(m->log_sigma[lo] + (tt - lo) * (m->log_sigma[hi] - m->log_sigma[lo]));
    double s2 = sigma * sigma, k = m->v ? sigma * (1 - SD * SD) / (SD * SD + s2) : sigma * sqrt(1 + s2) / (SD * SD + s2);
    for (size_t i = 0; i < n; i++) out[i] = (float)(x_in[i] * k);
    m->calls++;
    return SDW_OK;
}

typedef struct {
    int steps;
    int last;
} step_log;

static sdw_status toy_step(void *user, int step, float *x, size_t n)
{
    (void)x;
    (void)n;
    step_log *l = user;
    assert_int_equal(step, l->last + 1);
    l->last = step;
    l->steps++;
    return SDW_OK;
}

#define TOY_N 4096

/* Runs k from pure noise drawn with seed; returns the relative error of the
 * result against the ODE's exact solution, and the result's variance / SD^2. */
static void toy_run(sdw_sampler_kind k, int steps, bool v, float eta, uint64_t seed, float *x, double *err,
                    double *var)
{
    sdw_sampler_params p = {.sampler = k, .schedule = SDW_SCHEDULE_NORMAL, .steps = steps,
                            .param = v ? SDW_PARAM_V : SDW_PARAM_EPS, .eta = eta};
    if (k == SDW_SAMPLER_DDIM || k == SDW_SAMPLER_PNDM) p.schedule = SDW_SCHEDULE_LEADING;
    sdw_sampler *s = NULL;
    if (sdw_sampler_create(&p, &s) != SDW_OK) fail_msg("%s", sdw_last_error());
    sdw_rng rng;
    sdw_rng_init(&rng, SDW_RNG_CPU, seed);
    float *z = malloc(TOY_N * sizeof *z);
    sdw_rng_randn(&rng, z, TOY_N);
    const float init = sdw_sampler_init_noise_sigma(s);
    for (int i = 0; i < TOY_N; i++) x[i] = z[i] * init;
    toy m;
    toy_init(&m, v);
    step_log l = {0, -1};
    if (sdw_sampler_run(s, x, TOY_N, 0, toy_model, &m, toy_step, &l, &rng) != SDW_OK)
        fail_msg("%s: %s", sdw_sampler_name(k), sdw_last_error());
    assert_int_equal(l.steps, sdw_sampler_steps(s));
    assert_int_equal(m.calls, sdw_sampler_model_evals(s, 0));
    /* exact: sigma-space start x_T (vp: z sqrt(1 + sigma_0^2)), end at sigma_e
     * (ddim / pndm end on alphas_cumprod[0], the others on 0) */
    const double s0 = sdw_sampler_sigmas(s)[0];
    const double se = (k == SDW_SAMPLER_DDIM || k == SDW_SAMPLER_PNDM) ? SIGMA_MIN : 0;
    const double to_ve = sdw_sampler_is_vp(s) ? sqrt(1 + s0 * s0) : 1;
    const double from_ve = sdw_sampler_is_vp(s) ? 1 / sqrt(1 + se * se) : 1;
    const double gain = to_ve * sqrt(SD * SD + se * se) / sqrt(SD * SD + s0 * s0) * from_ve;
    double num = 0, den = 0, sum = 0, sq = 0;
    for (int i = 0; i < TOY_N; i++) {
        double want = z[i] * init * gain;
        num += (x[i] - want) * (x[i] - want);
        den += want * want;
        sum += x[i];
        sq += (double)x[i] * x[i];
    }
    *err = sqrt(num / den);
    *var = (sq / TOY_N - (sum / TOY_N) * (sum / TOY_N)) / (SD * SD);
    free(z);
    sdw_sampler_free(s);
}

/* The ODE samplers converge on the exact solution, at their order: the bound
 * at 40 steps is what the sampler reaches there, with a margin (the last
 * first-order step onto sigma 0 dominates euler, ddim, dpm++2m and ipndm,
 * which lands on denoised there; pndm combines v outputs before converting
 * them, as diffusers does). */
static void test_toy_deterministic(void **state)
{
    (void)state;
    static const struct { sdw_sampler_kind k; double bound40, ratio; } ks[] = {
        {SDW_SAMPLER_EULER, 8e-2, 3}, {SDW_SAMPLER_HEUN, 2e-3, 10}, {SDW_SAMPLER_DPM2, 2e-2, 6},
        {SDW_SAMPLER_DPMPP_2M, 5e-2, 3}, {SDW_SAMPLER_LMS, 1.5e-3, 10}, {SDW_SAMPLER_DDIM, 7e-2, 3},
        {SDW_SAMPLER_PNDM, 5e-2, 3}, {SDW_SAMPLER_IPNDM, 2e-2, 4},
    };
    float *x = malloc(TOY_N * sizeof *x);
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        for (int v = 0; v <= 1; v++) {
            double e10, e40, var;
            toy_run(ks[i].k, 10, v, 0, 7, x, &e10, &var);
            toy_run(ks[i].k, 40, v, 0, 7, x, &e40, &var);
            printf("  toy %-12s %s: rel error 10 steps %.2e, 40 steps %.2e\n", sdw_sampler_name(ks[i].k),
                   v ? "v  " : "eps", e10, e40);
            if (!(e40 < ks[i].bound40 && e10 / e40 > ks[i].ratio))
                fail_msg("%s (%s) does not converge: %.3g at 10 steps, %.3g at 40", sdw_sampler_name(ks[i].k),
                         v ? "v" : "eps", e10, e40);
        }
    }
    free(x);
}

/* img2img: from a later start step (pndm's start is an entry of its listing),
 * on the exact trajectory, every ODE sampler still lands on the solution. */
static void test_toy_img2img(void **state)
{
    (void)state;
    static const sdw_sampler_kind ks[] = {SDW_SAMPLER_EULER, SDW_SAMPLER_HEUN, SDW_SAMPLER_DPM2,
                                          SDW_SAMPLER_DPMPP_2M, SDW_SAMPLER_LMS, SDW_SAMPLER_DDIM, SDW_SAMPLER_PNDM,
                                          SDW_SAMPLER_IPNDM};
    float *x = malloc(TOY_N * sizeof *x), *w = malloc(TOY_N * sizeof *w);
    test_fill(w, TOY_N, 3);
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        const sdw_sampler_kind k = ks[i];
        const bool t0 = k == SDW_SAMPLER_DDIM || k == SDW_SAMPLER_PNDM;
        sdw_sampler *s = make(k, t0 ? SDW_SCHEDULE_LEADING : SDW_SCHEDULE_NORMAL, 40);
        const int start = sdw_sampler_start_step(s, 0.5f);
        assert_int_equal(start, k == SDW_SAMPLER_PNDM ? 21 : 20);
        const double sk = sdw_sampler_sigmas(s)[start], se = t0 ? SIGMA_MIN : 0;
        const double in_vp = sdw_sampler_is_vp(s) ? 1 / sqrt(1 + sk * sk) : 1;
        const double out_vp = sdw_sampler_is_vp(s) ? 1 / sqrt(1 + se * se) : 1;
        for (int j = 0; j < TOY_N; j++) x[j] = (float)(w[j] * sqrt(SD * SD + sk * sk) * in_vp);
        toy m;
        toy_init(&m, false);
        step_log l = {0, start - 1};
        assert_int_equal(sdw_sampler_run(s, x, TOY_N, start, toy_model, &m, toy_step, &l, NULL), SDW_OK);
        assert_int_equal(l.steps, sdw_sampler_steps(s) - start);
        assert_int_equal(m.calls, sdw_sampler_model_evals(s, start));
        double num = 0, den = 0;
        for (int j = 0; j < TOY_N; j++) {
            double want = w[j] * sqrt(SD * SD + se * se) * out_vp;
            num += (x[j] - want) * (x[j] - want);
            den += want * want;
        }
        printf("  toy %-12s img2img from step %d: rel error %.2e\n", sdw_sampler_name(k), start, sqrt(num / den));
        assert_true(sqrt(num / den) < 8e-2);
        if (k == SDW_SAMPLER_PNDM)
            assert_int_equal(sdw_sampler_run(s, x, TOY_N, 1, toy_model, &m, NULL, NULL, NULL), SDW_ERR_INVALID_ARG);
        sdw_sampler_free(s);
    }
    free(x);
    free(w);
}

/* The stochastic samplers sample N(0, SD^2) ever more closely with more steps
 * (ancestral steps lose variance at coarse steps), and repeat a seed exactly. */
static void test_toy_stochastic(void **state)
{
    (void)state;
    static const struct { sdw_sampler_kind k; float eta; } ks[] = {
        {SDW_SAMPLER_EULER_A, 0}, {SDW_SAMPLER_DPMPP_2S_A, 0}, {SDW_SAMPLER_DPMPP_2M_SDE, 0},
        {SDW_SAMPLER_DDIM, 1}, {SDW_SAMPLER_LCM, 0},
    };
    float *a = malloc(TOY_N * sizeof *a), *b = malloc(TOY_N * sizeof *b);
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        for (int v = 0; v <= 1; v++) {
            const sdw_sampler_kind k = ks[i].k;
            double err, var20, var160;
            toy_run(k, 20, v, ks[i].eta, 7, a, &err, &var20);
            if (k == SDW_SAMPLER_LCM) {
                /* lcm returns the last level's denoised estimate: less than SD^2 */
                printf("  toy %-12s %s: variance / SD^2 at 20 steps %.3f\n", sdw_sampler_name(k), v ? "v  " : "eps",
                       var20);
                assert_true(var20 > 0.2 && var20 < 1.0);
            } else {
                toy_run(k, 160, v, ks[i].eta, 7, b, &err, &var160);
                printf("  toy %-12s %s: variance / SD^2 at 20 steps %.3f, 160 steps %.3f\n", sdw_sampler_name(k),
                       v ? "v  " : "eps", var20, var160);
                if (!(fabs(var160 - 1) < 0.1 && fabs(var160 - 1) < fabs(var20 - 1)))
                    fail_msg("%s: variance ratio %.3f at 20 steps, %.3f at 160", sdw_sampler_name(k), var20, var160);
            }
            toy_run(k, 20, v, ks[i].eta, 7, b, &err, &var160);
            assert_memory_equal(a, b, TOY_N * sizeof *a);
            toy_run(k, 20, v, ks[i].eta, 8, b, &err, &var160);
            assert_true(memcmp(a, b, TOY_N * sizeof *a) != 0);
        }
    }
    free(a);
    free(b);
}

/* A run from a later start equals the tail of a full run given the same
 * latents at that step (single-step samplers), and img2img's add_noise puts
 * the latents at that step's level. */
static sdw_status capture_step(void *user, int step, float *x, size_t n)
{
    float **snap = user;
    memcpy(snap[step], x, n * sizeof *x);
    return SDW_OK;
}

static void test_start_and_add_noise(void **state)
{
    (void)state;
    enum { N = 64, STEPS = 6 };
    static float store[STEPS][N];
    float *snap[STEPS];
    for (int i = 0; i < STEPS; i++) snap[i] = store[i];
    sdw_sampler *s = make(SDW_SAMPLER_EULER, SDW_SCHEDULE_KARRAS, STEPS);
    float x[N], y[N], x0[N], noise[N];
    test_fill(x0, N, 1);
    test_fill(noise, N, 2);
    sdw_sampler_add_noise(s, 0, x0, noise, x, N);
    for (int i = 0; i < N; i++) assert_true(x[i] == x0[i] + noise[i] * sdw_sampler_sigmas(s)[0]);
    toy m;
    toy_init(&m, false);
    assert_int_equal(sdw_sampler_run(s, x, N, 0, toy_model, &m, capture_step, snap, NULL), SDW_OK);
    memcpy(y, store[2], sizeof y);
    assert_int_equal(sdw_sampler_run(s, y, N, 3, toy_model, &m, NULL, NULL, NULL), SDW_OK);
    assert_memory_equal(x, y, sizeof x);
    sdw_sampler_add_noise(s, STEPS, x0, noise, y, N);
    assert_memory_equal(x0, y, sizeof y);
    sdw_sampler_free(s);
    /* vp: sqrt(ac) x0 + sqrt(1 - ac) noise, with ac = 1 / (1 + sigma^2) */
    s = make(SDW_SAMPLER_DDIM, SDW_SCHEDULE_LEADING, STEPS);
    sdw_sampler_add_noise(s, 2, x0, noise, x, N);
    const double sg = sdw_sampler_sigmas(s)[2], ac = 1 / (1 + sg * sg);
    for (int i = 0; i < N; i++) assert_true(fabs(x[i] - (sqrt(ac) * x0[i] + sqrt(1 - ac) * noise[i])) < 1e-6);
    assert_int_equal(sdw_sampler_run(s, x, N, STEPS, toy_model, &m, NULL, NULL, NULL), SDW_OK);
    sdw_sampler_free(s);
}

static sdw_status stop_at_2(void *user, int step, float *x, size_t n)
{
    (void)user;
    (void)x;
    (void)n;
    return step == 2 ? SDW_ERR_CANCELLED : SDW_OK;
}

static void test_cancel(void **state)
{
    (void)state;
    sdw_sampler *s = make(SDW_SAMPLER_DPMPP_2M, SDW_SCHEDULE_KARRAS, 8);
    float x[32] = {0};
    toy m;
    toy_init(&m, false);
    assert_int_equal(sdw_sampler_run(s, x, 32, 0, toy_model, &m, stop_at_2, NULL, NULL), SDW_ERR_CANCELLED);
    assert_int_equal(m.calls, 3);
    sdw_sampler_free(s);
}

#define CASE(i) {cases[i].name, test_case, NULL, NULL, (void *)&cases[i]}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_unknown_names),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_start_step),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_toy_deterministic),
        cmocka_unit_test(test_toy_img2img),
        cmocka_unit_test(test_toy_stochastic),
        cmocka_unit_test(test_start_and_add_noise),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_case_list_complete),
        CASE(0), CASE(1), CASE(2), CASE(3), CASE(4), CASE(5), CASE(6), CASE(7), CASE(8), CASE(9), CASE(10),
        CASE(11), CASE(12), CASE(13), CASE(14), CASE(15), CASE(16), CASE(17), CASE(18), CASE(19), CASE(20),
        CASE(21), CASE(22), CASE(23), CASE(24), CASE(25),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    printf("samplers: worst rel L2 over all cases: model input %.2e, step latents %.2e\n", worst_in_all,
           worst_step_all);
    return rc;
}
