/* test_samplers_flow.c: the samplers and schedules on flow-matching models
 * (FLUX, SD3), without a transformer; beside test_samplers.c (eps / v).
 *
 * Golden (tests/data/flux, diffusers 0.32 FluxPipeline & co.): the flow
 * schedule equals every `sched.*` entry of components_flux-tiny-common and
 * every case's sigmas / timesteps bit for bit; a flow Euler run of each case
 * from its initial latents, with a model that checks its input against the
 * recorded transformer_in and answers with the recorded transformer_out,
 * reproduces every step's latents (img2img: start step and add_noise;
 * inpaint: the pipeline's blending in the step callback). The references'
 * latents are packed [1, n, 64]; the sampler does not care.
 *
 * Units: ComfyUI's schedules over the flow table (simple, normal,
 * sgm_uniform, beta, karras, exponential) against their formulas evaluated
 * here in double precision (beta's quantiles from an independent quadrature
 * of the beta density); every flow sampler on a Gaussian toy whose exact
 * solution is known; ipndm against a double-precision reimplementation;
 * the beta schedule on the discrete table; what is refused. */
#include "testkit.h"
#include "sampling/sampler.h"
#include "sampling/sampler_internal.h"
#include "io/json_file.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GATE 1e-6

static sdw_sampler *make_flow(sdw_sampler_kind k, sdw_schedule_kind c, int steps, double mu, int size)
{
    sdw_sampler_params p = {.sampler = k, .schedule = c, .steps = steps, .param = SDW_PARAM_FLOW, .flow_mu = mu,
                            .flow_table_size = size};
    sdw_sampler *s = NULL;
    if (sdw_sampler_create(&p, &s) != SDW_OK) fail_msg("%s", sdw_last_error());
    return s;
}

static double json_mu(const cJSON *o)
{
    const cJSON *mu = cJSON_GetObjectItem(o, "mu");
    return cJSON_IsNumber(mu) ? mu->valuedouble : 0.0;   /* schnell: null, no shift */
}

static void check_exact(const char *what, const float *got, const float *ref, int n)
{
    for (int i = 0; i < n; i++)
        if (got[i] != ref[i]) fail_msg("%s: entry %d is %.9g, reference %.9g", what, i, got[i], ref[i]);
}

/* ---- the flow schedule against diffusers ---- */

static void test_flow_schedule_golden(void **state)
{
    (void)state;
    cJSON *js = NULL;
    if (sdw_json_load_file(test_data_path("flux/components_flux-tiny-common.json"), &js) != SDW_OK)
        fail_msg("%s", sdw_last_error());
    sdw_safetensors *st = test_open_st("flux/components_flux-tiny-common.safetensors");
    const cJSON *list = cJSON_GetObjectItem(js, "schedules"), *e;
    int checked = 0;
    cJSON_ArrayForEach(e, list) {
        const char *key = cJSON_GetObjectItem(e, "key")->valuestring;
        int steps = 0;
        assert_int_equal(sscanf(strstr(key, ".steps"), ".steps%d", &steps), 1);
        char name[160];
        int64_t n_sig, n_ts;
        snprintf(name, sizeof name, "%s.sigmas", key);
        float *sig = test_load_f32(st, name, &n_sig);
        snprintf(name, sizeof name, "%s.timesteps", key);
        float *ts = test_load_f32(st, name, &n_ts);
        assert_int_equal(n_sig, steps + 1);
        assert_int_equal(n_ts, steps);
        sdw_sampler *s = make_flow(SDW_SAMPLER_EULER, SDW_SCHEDULE_FLOW, steps, json_mu(e), 0);
        assert_int_equal(sdw_sampler_steps(s), steps);
        check_exact(key, sdw_sampler_sigmas(s), sig, steps + 1);
        check_exact(key, sdw_sampler_timesteps(s), ts, steps);
        printf("  %-34s mu %-9.6g %2d steps: sigmas and timesteps bit-exact\n", key, json_mu(e), steps);
        sdw_sampler_free(s);
        free(sig);
        free(ts);
        checked++;
    }
    assert_int_equal(checked, 8);
    sdw_st_close(st);
    cJSON_Delete(js);
}

/* ---- the cases: flow Euler against the recorded run ---- */

/* Packs [16, h, w] into FLUX's [(h/2)(w/2), 64]: token (i, j) row-major,
 * channel c*4 + di*2 + dj. */
static void pack(const float *x, int h, int w, float *out)
{
    for (int i = 0; i < h / 2; i++)
        for (int j = 0; j < w / 2; j++)
            for (int c = 0; c < 16; c++)
                for (int di = 0; di < 2; di++)
                    for (int dj = 0; dj < 2; dj++)
                        out[((size_t)i * (w / 2) + j) * 64 + c * 4 + di * 2 + dj] =
                            x[((size_t)c * h + 2 * i + di) * w + 2 * j + dj];
}

typedef struct {
    const char *name;
    const float *t_in, *t_out, *t_sigma, *timesteps, *steps_ref, *mask;
    const float *img, *noise;   /* packed image latents and noise (inpaint) */
    const sdw_sampler *s;
    float *blend;
    int calls, n_calls, start, seen;
    double worst_in, worst_step;
} golden;

static sdw_status golden_model(void *user, const float *x, float t, float *out, size_t n)
{
    golden *g = user;
    if (g->calls >= g->n_calls)
        fail_msg("%s: model called %d times, reference has %d", g->name, g->calls + 1, g->n_calls);
    const double e = test_rel_l2(x, g->t_in + (size_t)g->calls * n, n);
    if (e > g->worst_in) g->worst_in = e;
    if (!(e < GATE)) fail_msg("%s: transformer input of call %d: rel L2 %.3g", g->name, g->calls, e);
    /* the timestep is sigma * 1000 (the pipeline divides by 1000) */
    const float want_t = g->timesteps[g->start + g->calls];
    if (t != want_t) fail_msg("%s: call %d at timestep %.9g, schedule %.9g", g->name, g->calls, t, want_t);
    if (!(fabs(t / 1000.0 - g->t_sigma[g->calls]) <= 1e-7 * g->t_sigma[g->calls]))
        fail_msg("%s: call %d at sigma %.9g, reference %.9g", g->name, g->calls, t / 1000.0, g->t_sigma[g->calls]);
    memcpy(out, g->t_out + (size_t)g->calls * n, n * sizeof *out);
    g->calls++;
    return SDW_OK;
}

static sdw_status golden_step(void *user, int step, float *x, size_t n)
{
    golden *g = user;
    if (g->mask) {
        /* FluxInpaintPipeline: the kept area on the image latents, re-noised
         * to the next level but after the last step */
        const float *proper = g->img;
        if (step < sdw_sampler_steps(g->s) - 1) {
            sdw_sampler_add_noise(g->s, step + 1, g->img, g->noise, g->blend, n);
            proper = g->blend;
        }
        for (size_t i = 0; i < n; i++) x[i] = (1 - g->mask[i]) * proper[i] + g->mask[i] * x[i];
    }
    const float *ref = g->steps_ref + (size_t)(step - g->start) * n;
    const double e = test_rel_l2(x, ref, n);
    if (e > g->worst_step) g->worst_step = e;
    if (!(e < GATE)) fail_msg("%s: latents after step %d: rel L2 %.3g (max abs %.3g)", g->name, step, e,
                              test_max_abs(x, ref, n));
    g->seen++;
    return SDW_OK;
}

static const char *const flux_cases[] = {
    "t2i_dev", "t2i_dev_ns", "t2i_schnell", "i2i_dev_s0.6", "inp_dev_s0.7", "gguf_q8_0_dev", "gguf_q4_0_dev",
    "t5fp8_dev", "lora_kohya_dev", "lora_peft_dev",
};

static void test_flux_case(void **state)
{
    const char *name = *state;
    char rel[256];
    snprintf(rel, sizeof rel, "flux/cases/%s.json", name);
    cJSON *js = NULL;
    if (sdw_json_load_file(test_data_path(rel), &js) != SDW_OK) fail_msg("%s", sdw_last_error());
    snprintf(rel, sizeof rel, "flux/cases/%s.safetensors", name);
    sdw_safetensors *st = test_open_st(rel);
    const cJSON *cfg = cJSON_GetObjectItem(cJSON_GetObjectItem(js, "scheduler"), "config");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(js, "scheduler"), "class")->valuestring,
                        "FlowMatchEulerDiscreteScheduler");
    assert_int_equal(sdw_json_int(cfg, "num_train_timesteps", 0), 1000);
    const int steps = sdw_json_int(js, "steps", 0), h = sdw_json_int(js, "height", 0) / 8,
              w = sdw_json_int(js, "width", 0) / 8;
    const double mu = json_mu(js);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cfg, "use_dynamic_shifting")) == (mu != 0));
    sdw_sampler *s = make_flow(SDW_SAMPLER_EULER, SDW_SCHEDULE_FLOW, steps, mu, 0);

    int64_t n_sig, n_ts;
    float *sig = test_load_f32(st, "sigmas", &n_sig), *ts = test_load_f32(st, "timesteps", &n_ts);
    assert_int_equal(n_ts, steps);
    assert_int_equal(n_sig, steps + 1);
    check_exact("sigmas", sdw_sampler_sigmas(s), sig, steps + 1);
    check_exact("timesteps", sdw_sampler_timesteps(s), ts, steps);

    const char *pipeline = cJSON_GetObjectItem(js, "pipeline")->valuestring;
    const cJSON *jstrength = cJSON_GetObjectItem(js, "strength");
    const bool t2i = !strcmp(pipeline, "txt2img");
    const int start = t2i ? 0 : sdw_sampler_start_step(s, (float)jstrength->valuedouble);
    int64_t n_calls, n;
    float *t_sigma = test_load_f32(st, "transformer_t", &n_calls);
    float *init = test_load_f32(st, "initial_latents", &n);
    assert_int_equal(n, (int64_t)16 * h * w);
    assert_int_equal(start, steps - n_calls);

    /* the generator: txt2img draws the noise; img2img / inpaint the VAE
     * posterior sample first */
    sdw_rng rng;
    sdw_rng_init(&rng, SDW_RNG_CPU, (uint64_t)cJSON_GetObjectItem(js, "seed")->valuedouble);
    float *draw = malloc((size_t)n * sizeof *draw), *noise = malloc((size_t)n * sizeof *noise);
    float *noise_p = malloc((size_t)n * sizeof *noise_p), *x = malloc((size_t)n * sizeof *x);
    float *ref_noise = test_load_f32(st, "initial_noise", NULL);
    if (!t2i) sdw_rng_randn(&rng, draw, (size_t)n);
    sdw_rng_randn(&rng, noise, (size_t)n);
    test_check_close("initial noise = the pipeline's draw", noise, ref_noise, (size_t)n, 1e-6);
    pack(ref_noise, h, w, noise_p);
    float *img_p = NULL;
    if (t2i) {
        for (int64_t i = 0; i < n; i++) x[i] = noise_p[i] * sdw_sampler_init_noise_sigma(s);
        check_exact("initial latents = pack(noise) * init_noise_sigma", x, init, (int)n);
    } else {
        float *img = test_load_f32(st, "image_latents", NULL);
        img_p = malloc((size_t)n * sizeof *img_p);
        /* the pipeline noises unpacked, then packs: elementwise, so either order */
        sdw_sampler_add_noise(s, start, img, ref_noise, draw, (size_t)n);
        pack(draw, h, w, x);
        check_exact("initial latents = pack(add_noise(image, noise, start))", x, init, (int)n);
        pack(img, h, w, img_p);
        free(img);
    }

    golden g = {.name = name, .t_sigma = t_sigma, .timesteps = sdw_sampler_timesteps(s), .s = s,
                .n_calls = (int)n_calls, .start = start};
    float *t_in = test_load_f32(st, "transformer_in", NULL), *t_out = test_load_f32(st, "transformer_out", NULL);
    float *steps_ref = test_load_f32(st, "step_latents", NULL), *mask = NULL;
    g.t_in = t_in;
    g.t_out = t_out;
    g.steps_ref = steps_ref;
    if (!strcmp(pipeline, "inpaint")) {
        mask = test_load_f32(st, "mask_latents_packed", NULL);
        g.mask = mask;
        g.img = img_p;
        g.noise = noise_p;
        g.blend = malloc((size_t)n * sizeof(float));
    }
    assert_int_equal(sdw_sampler_model_evals(s, start), n_calls);
    memcpy(x, init, (size_t)n * sizeof *x);
    if (sdw_sampler_run(s, x, (size_t)n, start, golden_model, &g, golden_step, &g, NULL) != SDW_OK)
        fail_msg("%s: %s", name, sdw_last_error());
    assert_int_equal(g.calls, n_calls);
    assert_int_equal(g.seen, n_calls);
    printf("  %-16s %-8s mu %-9.6g start %d: %d steps; worst rel L2 transformer input %.2e, latents %.2e\n", name,
           pipeline, mu, start, g.seen, g.worst_in, g.worst_step);

    free(g.blend);
    free(mask);
    free(t_in);
    free(t_out);
    free(steps_ref);
    free(img_p);
    free(ref_noise);
    free(x);
    free(noise_p);
    free(noise);
    free(draw);
    free(init);
    free(t_sigma);
    free(sig);
    free(ts);
    sdw_sampler_free(s);
    sdw_st_close(st);
    cJSON_Delete(js);
}

/* ---- start step, add_noise, refusals ---- */

static void test_flow_start_and_noise(void **state)
{
    (void)state;
    /* int(max(N - min(N * strength, N), 0)) on the float product */
    static const struct { int steps; float strength; int start; } cs[] = {
        {5, 0.6f, 2}, {10, 0.75f, 2}, {5, 0.7f, 1}, {4, 1.0f, 0}, {28, 0.3f, 19}, {20, 0.15f, 17},
        {10, 0.7f, 3}, {3, 0.01f, 2}, {4, 0.0f, 4}, {4, 1.5f, 0}, {50, 0.55f, 22},
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        sdw_sampler *s = make_flow(SDW_SAMPLER_EULER, SDW_SCHEDULE_FLOW, cs[i].steps, 0.5, 0);
        const int got = sdw_sampler_start_step(s, cs[i].strength);
        if (got != cs[i].start)
            fail_msg("flow: steps %d strength %g: start %d, want %d", cs[i].steps, cs[i].strength, got, cs[i].start);
        sdw_sampler_free(s);
    }
    /* the SD rule is untouched: 10 x 0.75 -> 3 */
    sdw_sampler_params p = {.sampler = SDW_SAMPLER_EULER, .schedule = SDW_SCHEDULE_NORMAL, .steps = 10};
    sdw_sampler *s = NULL;
    assert_int_equal(sdw_sampler_create(&p, &s), SDW_OK);
    assert_int_equal(sdw_sampler_start_step(s, 0.75f), 3);
    sdw_sampler_free(s);

    enum { N = 64 };
    float x0[N], noise[N], x[N];
    test_fill(x0, N, 1);
    test_fill(noise, N, 2);
    s = make_flow(SDW_SAMPLER_DPMPP_2M, SDW_SCHEDULE_SIMPLE, 6, 1.15, 10000);
    assert_false(sdw_sampler_is_vp(s));
    assert_true(sdw_sampler_init_noise_sigma(s) == 1.0f);
    assert_true(sdw_sampler_sigmas(s)[0] == 1.0f);
    sdw_sampler_add_noise(s, 2, x0, noise, x, N);
    const float sg = sdw_sampler_sigmas(s)[2];
    for (int i = 0; i < N; i++) assert_true(x[i] == sg * noise[i] + (1 - sg) * x0[i]);
    sdw_sampler_add_noise(s, 6, x0, noise, x, N);
    assert_memory_equal(x, x0, sizeof x);
    sdw_sampler_free(s);
    assert_int_equal(sdw_sampler_default_schedule_for(SDW_SAMPLER_DPMPP_2M, SDW_PARAM_FLOW), SDW_SCHEDULE_FLOW);
    assert_int_equal(sdw_sampler_default_schedule_for(SDW_SAMPLER_DPMPP_2M, SDW_PARAM_EPS), SDW_SCHEDULE_KARRAS);
}

static void expect_refused(sdw_sampler_params p, const char *needle)
{
    sdw_sampler *s = (sdw_sampler *)1;
    assert_int_equal(sdw_sampler_create(&p, &s), SDW_ERR_INVALID_ARG);
    assert_null(s);
    if (!strstr(sdw_last_error(), needle)) fail_msg("message '%s' lacks '%s'", sdw_last_error(), needle);
}

static void test_flow_refusals(void **state)
{
    (void)state;
    static const sdw_sampler_kind vp[] = {SDW_SAMPLER_DDIM, SDW_SAMPLER_LCM, SDW_SAMPLER_PNDM,
                                          SDW_SAMPLER_DPMPP_2M_SDE};
    for (size_t i = 0; i < sizeof vp / sizeof *vp; i++)
        expect_refused((sdw_sampler_params){.sampler = vp[i], .schedule = SDW_SCHEDULE_FLOW, .steps = 8,
                                            .param = SDW_PARAM_FLOW},
                       "flow-matching");
    expect_refused((sdw_sampler_params){.sampler = SDW_SAMPLER_EULER, .schedule = SDW_SCHEDULE_LEADING, .steps = 8,
                                        .param = SDW_PARAM_FLOW},
                   "leading");
    expect_refused((sdw_sampler_params){.sampler = SDW_SAMPLER_EULER, .schedule = SDW_SCHEDULE_TRAILING,
                                        .steps = 8, .param = SDW_PARAM_FLOW},
                   "trailing");
    expect_refused((sdw_sampler_params){.sampler = SDW_SAMPLER_EULER, .schedule = SDW_SCHEDULE_FLOW, .steps = 8},
                   "flow-matching");
    expect_refused((sdw_sampler_params){.sampler = SDW_SAMPLER_EULER, .schedule = SDW_SCHEDULE_FLOW, .steps = 8,
                                        .param = SDW_PARAM_FLOW, .flow_mu = NAN},
                   "mu");
    expect_refused((sdw_sampler_params){.sampler = SDW_SAMPLER_EULER, .schedule = SDW_SCHEDULE_FLOW, .steps = 8,
                                        .param = SDW_PARAM_FLOW, .flow_table_size = 1},
                   "table");
    expect_refused((sdw_sampler_params){.sampler = SDW_SAMPLER_EULER, .schedule = SDW_SCHEDULE_FLOW, .steps = 8,
                                        .param = (sdw_parametrization)7},
                   "parametrisation");
    /* everything else runs */
    static const sdw_sampler_kind ok[] = {SDW_SAMPLER_EULER, SDW_SAMPLER_EULER_A, SDW_SAMPLER_HEUN, SDW_SAMPLER_DPM2,
                                          SDW_SAMPLER_DPMPP_2M, SDW_SAMPLER_DPMPP_2S_A, SDW_SAMPLER_LMS,
                                          SDW_SAMPLER_IPNDM};
    static const sdw_schedule_kind sk[] = {SDW_SCHEDULE_FLOW, SDW_SCHEDULE_NORMAL, SDW_SCHEDULE_SIMPLE,
                                           SDW_SCHEDULE_SGM_UNIFORM, SDW_SCHEDULE_BETA, SDW_SCHEDULE_KARRAS,
                                           SDW_SCHEDULE_EXPONENTIAL};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        for (size_t j = 0; j < sizeof sk / sizeof *sk; j++) {
            sdw_sampler *s = make_flow(ok[i], sk[j], 9, 0.8, 0);
            const float *sig = sdw_sampler_sigmas(s);
            const int n = sdw_sampler_steps(s);
            assert_true(sig[n] == 0.0f && sig[0] <= 1.0f);
            for (int k = 0; k < n; k++) {
                assert_true(sig[k] > sig[k + 1]);
                assert_true(sdw_sampler_timesteps(s)[k] == sig[k] * 1000.0f);
            }
            sdw_sampler_free(s);
        }
}

/* ---- ComfyUI's schedules on the flow table, by hand ---- */

static double shift_d(double mu, double t) { return exp(mu) / (exp(mu) + (1 / t - 1)); }

/* The beta(0.6, 0.6) CDF by quadrature, independent of the library's
 * continued fraction: x = sin^2(u^5) makes the integrand smooth. */
static double beta06_mass(double x)
{
    const double top = pow(asin(sqrt(x)), 0.2);
    const int m = 1000;   /* Simpson */
    double sum = 0;
    for (int i = 0; i <= m; i++) {
        const double u = top * i / m, th = pow(u, 5);
        const double f = u == 0 ? 0 : 2 * pow(sin(th) * cos(th), 0.2) * 5 * pow(u, 4);
        sum += f * (i == 0 || i == m ? 1 : i % 2 ? 4 : 2);
    }
    return sum * top / m / 3;
}

static double beta06_ppf(double p)
{
    static double half;
    if (half == 0) half = beta06_mass(0.5);
    if (p == 0.5) return 0.5;   /* the symmetric median, exact */
    if (p > 0.5) return 1 - beta06_ppf(1 - p);
    double lo = 0, hi = 0.5;
    for (int i = 0; i < 48; i++) {
        const double mid = 0.5 * (lo + hi);
        if (beta06_mass(mid) / (2 * half) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

static void check_spots(const char *what, const sdw_sampler *s, const double *want, int n)
{
    assert_int_equal(sdw_sampler_steps(s), n);
    const float *got = sdw_sampler_sigmas(s);
    for (int i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= 1e-6 * want[i]))
            fail_msg("%s: sigma %d is %.9g, want %.9g", what, i, got[i], want[i]);
    assert_true(got[n] == 0.0f);
}

static void test_flow_comfy_schedules(void **state)
{
    (void)state;
    static const struct { double mu; int size; } tabs[] = {{1.15, 10000}, {0.0, 1000}, {1.0986122886681098, 1000},
                                                          {0.63, 10000}};
    double want[64];
    for (size_t ti = 0; ti < sizeof tabs / sizeof *tabs; ti++) {
        const double mu = tabs[ti].mu;
        const int size = tabs[ti].size;
        const double smin = shift_d(mu, 1.0 / size), smax = 1.0;
        for (int n = 1; n <= 31; n += 6) {
            char what[96];
            /* simple: sigmas[-(1 + int(i * size / n))] */
            for (int i = 0; i < n; i++) want[i] = shift_d(mu, (size - (int)(i * ((double)size / n))) / (double)size);
            sdw_sampler *s = make_flow(SDW_SAMPLER_EULER, SDW_SCHEDULE_SIMPLE, n, mu, size);
            snprintf(what, sizeof what, "simple mu %g size %d n %d", mu, size, n);
            check_spots(what, s, want, n);
            sdw_sampler_free(s);
            /* normal: the timestep (= sigma) evenly from sigma_max to
             * sigma_min, then shifted; sgm_uniform over n + 1 points */
            for (int sgm = 0; sgm <= 1; sgm++) {
                const int pts = sgm ? n + 1 : n;
                for (int i = 0; i < n; i++)
                    want[i] = shift_d(mu, pts == 1 ? smax : smax + (smin - smax) * i / (pts - 1));
                s = make_flow(SDW_SAMPLER_EULER, sgm ? SDW_SCHEDULE_SGM_UNIFORM : SDW_SCHEDULE_NORMAL, n, mu, size);
                snprintf(what, sizeof what, "%s mu %g size %d n %d", sgm ? "sgm_uniform" : "normal", mu, size, n);
                check_spots(what, s, want, n);
                sdw_sampler_free(s);
            }
            /* karras (rho 7) and exponential over [sigma_min, sigma_max] */
            for (int i = 0; i < n; i++) {
                const double ramp = n == 1 ? 0 : (double)i / (n - 1);
                want[i] = pow(pow(smax, 1 / 7.0) + ramp * (pow(smin, 1 / 7.0) - pow(smax, 1 / 7.0)), 7);
            }
            s = make_flow(SDW_SAMPLER_EULER, SDW_SCHEDULE_KARRAS, n, mu, size);
            snprintf(what, sizeof what, "karras mu %g size %d n %d", mu, size, n);
            check_spots(what, s, want, n);
            sdw_sampler_free(s);
            for (int i = 0; i < n; i++)
                want[i] = exp(log(smax) + (n == 1 ? 0 : (double)i / (n - 1)) * (log(smin) - log(smax)));
            s = make_flow(SDW_SAMPLER_EULER, SDW_SCHEDULE_EXPONENTIAL, n, mu, size);
            snprintf(what, sizeof what, "exponential mu %g size %d n %d", mu, size, n);
            check_spots(what, s, want, n);
            sdw_sampler_free(s);
            /* beta: table entries at rint(ppf(1 - i/n) * (size - 1)) */
            int m = 0;
            double last = -1;
            for (int i = 0; i < n; i++) {
                const double t = rint(beta06_ppf(1.0 - i * (1.0 / n)) * (size - 1));
                if (t != last) want[m++] = shift_d(mu, (t + 1) / size);
                last = t;
            }
            s = make_flow(SDW_SAMPLER_EULER, SDW_SCHEDULE_BETA, n, mu, size);
            snprintf(what, sizeof what, "beta mu %g size %d n %d", mu, size, n);
            check_spots(what, s, want, m);
            sdw_sampler_free(s);
        }
    }
    /* spot values: FLUX dev (mu 1.15, 10000 entries), 4 steps */
    sdw_sampler *s = make_flow(SDW_SAMPLER_EULER, SDW_SCHEDULE_SIMPLE, 4, 1.15, 10000);
    /* e^1.15 / (e^1.15 + 1/t - 1), t = 1, 0.75, 0.5, 0.25 */
    const double simple4[4] = {1.0, 0.9045307667, 0.7595109169, 0.5128441015};
    for (int i = 0; i < 4; i++) assert_true(fabs(sdw_sampler_sigmas(s)[i] - simple4[i]) < 1e-6);
    sdw_sampler_free(s);
    /* schnell's table (no shift, 1000 entries): simple 4 = 1, 0.75, 0.5, 0.25 exactly */
    s = make_flow(SDW_SAMPLER_EULER, SDW_SCHEDULE_SIMPLE, 4, 0, 1000);
    const float plain4[5] = {1.0f, 0.75f, 0.5f, 0.25f, 0.0f};
    assert_memory_equal(sdw_sampler_sigmas(s), plain4, sizeof plain4);
    sdw_sampler_free(s);
}

/* The library's beta quantiles against the quadrature, and what a many-step
 * beta schedule drops. */
static void test_beta(void **state)
{
    (void)state;
    double worst = 0;
    for (int i = 1; i < 100; i++) {
        const double p = i / 100.0, e = fabs(sdw_beta_ppf(p, 0.6, 0.6) - beta06_ppf(p));
        if (e > worst) worst = e;
    }
    printf("  beta(0.6, 0.6) ppf vs quadrature: worst abs difference %.2e\n", worst);
    assert_true(worst < 1e-10);
    assert_true(sdw_beta_ppf(0.5, 0.6, 0.6) == 0.5);
    /* the discrete table: levels are training timesteps, repeats dropped */
    sdw_sampler_params p = {.sampler = SDW_SAMPLER_EULER, .schedule = SDW_SCHEDULE_BETA, .steps = 400};
    sdw_sampler *s = NULL;
    assert_int_equal(sdw_sampler_create(&p, &s), SDW_OK);
    const int n = sdw_sampler_steps(s);
    printf("  beta schedule, 400 steps on the discrete table: %d distinct levels\n", n);
    assert_true(n < 400 && n > 300);
    assert_true(sdw_sampler_timesteps(s)[0] == 999.0f && sdw_sampler_timesteps(s)[n - 1] == 0.0f);
    for (int i = 0; i < n; i++) assert_true(sdw_sampler_timesteps(s)[i] == floorf(sdw_sampler_timesteps(s)[i]));
    assert_true(sdw_sampler_sigmas(s)[n] == 0.0f);
    /* strength counts the levels that remain */
    assert_int_equal(sdw_sampler_start_step(s, 0.5f), n - n / 2);
    sdw_sampler_free(s);
    /* a variance-preserving sampler on it: the table's own levels */
    p.steps = 10;
    p.sampler = SDW_SAMPLER_DDIM;
    assert_int_equal(sdw_sampler_create(&p, &s), SDW_OK);
    assert_int_equal(sdw_sampler_steps(s), 10);
    for (int i = 0; i < 10; i++) {
        const double t = rint(beta06_ppf(1.0 - i * 0.1) * 999);
        if (sdw_sampler_timesteps(s)[i] != (float)t)
            fail_msg("beta 10: timestep %d is %g, want %g", i, sdw_sampler_timesteps(s)[i], t);
    }
    printf("  beta 10 on the discrete table: timesteps");
    for (int i = 0; i < 10; i++) printf(" %g", sdw_sampler_timesteps(s)[i]);
    printf("\n");
    sdw_sampler_free(s);
}

/* ---- the Gaussian toy ---- */

/* Data x0 ~ N(0, SD^2) per element, x = (1 - sigma) x0 + sigma noise: the
 * exact velocity is v = x (sigma - (1 - sigma) SD^2) / var(sigma), var =
 * (1 - sigma)^2 SD^2 + sigma^2, and the probability-flow ODE carries x in
 * proportion to sqrt(var): from sigma 1 to 0, x_end = x_start SD. The model
 * reads sigma from the timestep (sigma * 1000). */
#define SD 0.5
#define TOY_N 4096

typedef struct {
    int calls;
} flow_toy;

static double toy_k(double sigma)
{
    const double var = (1 - sigma) * (1 - sigma) * SD * SD + sigma * sigma;
    return (sigma - (1 - sigma) * SD * SD) / var;
}

static sdw_status toy_model(void *user, const float *x, float t, float *out, size_t n)
{
    flow_toy *m = user;
    const double k = toy_k(t / 1000.0);
    for (size_t i = 0; i < n; i++) out[i] = (float)(x[i] * k);
    m->calls++;
    return SDW_OK;
}

static sdw_status count_step(void *user, int step, float *x, size_t n)
{
    (void)x;
    (void)n;
    int *last = user;
    assert_int_equal(step, *last + 1);
    *last = step;
    return SDW_OK;
}

/* A run from pure noise (seed): relative error against x_end = z SD, and
 * the result's variance / SD^2. */
static void toy_run(sdw_sampler_kind k, sdw_schedule_kind c, int steps, uint64_t seed, float *x, double *err,
                    double *var)
{
    sdw_sampler *s = make_flow(k, c, steps, 1.15, 10000);
    sdw_rng rng;
    sdw_rng_init(&rng, SDW_RNG_CPU, seed);
    float *z = malloc(TOY_N * sizeof *z);
    sdw_rng_randn(&rng, z, TOY_N);
    for (int i = 0; i < TOY_N; i++) x[i] = z[i] * sdw_sampler_init_noise_sigma(s);
    flow_toy m = {0};
    int last = -1;
    if (sdw_sampler_run(s, x, TOY_N, 0, toy_model, &m, count_step, &last, &rng) != SDW_OK)
        fail_msg("%s: %s", sdw_sampler_name(k), sdw_last_error());
    assert_int_equal(last, sdw_sampler_steps(s) - 1);
    assert_int_equal(m.calls, sdw_sampler_model_evals(s, 0));
    double num = 0, den = 0, sum = 0, sq = 0;
    for (int i = 0; i < TOY_N; i++) {
        const double want = z[i] * SD;
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

/* The ODE samplers converge on the exact solution (bound at 40 steps, with
 * a margin; the last step onto sigma 0, denoised or first order, limits
 * them all), on the flow schedule and on karras. */
static void test_flow_toy_deterministic(void **state)
{
    (void)state;
    static const struct { sdw_sampler_kind k; double bound40, ratio; } ks[] = {
        {SDW_SAMPLER_EULER, 1e-1, 3}, {SDW_SAMPLER_HEUN, 2e-2, 10}, {SDW_SAMPLER_DPM2, 1.5e-2, 10},
        {SDW_SAMPLER_DPMPP_2M, 2.5e-2, 8}, {SDW_SAMPLER_LMS, 2e-2, 10}, {SDW_SAMPLER_IPNDM, 2e-2, 10},
    };
    static const sdw_schedule_kind cs[] = {SDW_SCHEDULE_FLOW, SDW_SCHEDULE_KARRAS};
    float *x = malloc(TOY_N * sizeof *x);
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++)
        for (size_t j = 0; j < sizeof cs / sizeof *cs; j++) {
            double e10, e40, var;
            toy_run(ks[i].k, cs[j], 10, 7, x, &e10, &var);
            toy_run(ks[i].k, cs[j], 40, 7, x, &e40, &var);
            printf("  flow toy %-10s %-7s: rel error 10 steps %.2e, 40 steps %.2e\n", sdw_sampler_name(ks[i].k),
                   sdw_schedule_name(cs[j]), e10, e40);
            if (!(e40 < ks[i].bound40 && e10 / e40 > ks[i].ratio))
                fail_msg("%s on %s does not converge: %.3g at 10 steps, %.3g at 40", sdw_sampler_name(ks[i].k),
                         sdw_schedule_name(cs[j]), e10, e40);
        }
    free(x);
}

/* The _RF ancestral samplers sample N(0, SD^2) ever more closely with more
 * steps, repeat a seed exactly and differ across seeds. */
static void test_flow_toy_stochastic(void **state)
{
    (void)state;
    static const sdw_sampler_kind ks[] = {SDW_SAMPLER_EULER_A, SDW_SAMPLER_DPMPP_2S_A};
    float *a = malloc(TOY_N * sizeof *a), *b = malloc(TOY_N * sizeof *b);
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        double err, var20, var160;
        toy_run(ks[i], SDW_SCHEDULE_FLOW, 20, 7, a, &err, &var20);
        toy_run(ks[i], SDW_SCHEDULE_FLOW, 160, 7, b, &err, &var160);
        printf("  flow toy %-10s: variance / SD^2 at 20 steps %.3f, 160 steps %.3f\n", sdw_sampler_name(ks[i]), var20,
               var160);
        if (!(fabs(var160 - 1) < 0.1 && fabs(var160 - 1) < fabs(var20 - 1)))
            fail_msg("%s: variance ratio %.3f at 20 steps, %.3f at 160", sdw_sampler_name(ks[i]), var20, var160);
        toy_run(ks[i], SDW_SCHEDULE_FLOW, 20, 7, b, &err, &var160);
        assert_memory_equal(a, b, TOY_N * sizeof *a);
        toy_run(ks[i], SDW_SCHEDULE_FLOW, 20, 8, b, &err, &var160);
        assert_true(memcmp(a, b, TOY_N * sizeof *a) != 0);
    }
    free(a);
    free(b);
}

/* img2img on the toy: from the start step's level, on the exact trajectory,
 * every ODE sampler still lands on the solution. */
static void test_flow_toy_img2img(void **state)
{
    (void)state;
    static const sdw_sampler_kind ks[] = {SDW_SAMPLER_EULER, SDW_SAMPLER_HEUN, SDW_SAMPLER_DPM2,
                                          SDW_SAMPLER_DPMPP_2M, SDW_SAMPLER_LMS, SDW_SAMPLER_IPNDM};
    float *x = malloc(TOY_N * sizeof *x), *w = malloc(TOY_N * sizeof *w);
    test_fill(w, TOY_N, 3);
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        sdw_sampler *s = make_flow(ks[i], SDW_SCHEDULE_FLOW, 40, 1.15, 0);
        const int start = sdw_sampler_start_step(s, 0.5f);
        assert_int_equal(start, 20);
        /* on the exact trajectory at the start level: x = w sqrt(var) */
        const double sk = sdw_sampler_sigmas(s)[start];
        const double sd_k = sqrt((1 - sk) * (1 - sk) * SD * SD + sk * sk);
        for (int j = 0; j < TOY_N; j++) x[j] = (float)(w[j] * sd_k);
        flow_toy m = {0};
        int last = start - 1;
        assert_int_equal(sdw_sampler_run(s, x, TOY_N, start, toy_model, &m, count_step, &last, NULL), SDW_OK);
        assert_int_equal(m.calls, sdw_sampler_model_evals(s, start));
        double num = 0, den = 0;
        for (int j = 0; j < TOY_N; j++) {
            const double want = w[j] * SD;
            num += (x[j] - want) * (x[j] - want);
            den += want * want;
        }
        printf("  flow toy %-10s img2img from step %d (sigma %.3f): rel error %.2e\n", sdw_sampler_name(ks[i]), start,
               sk, sqrt(num / den));
        assert_true(sqrt(num / den) < 1e-1);
        sdw_sampler_free(s);
    }
    free(x);
    free(w);
}

/* ---- ipndm against a double-precision reimplementation ---- */

/* k-diffusion sample_ipndm on one element, in double, on the same sigmas,
 * with the exact denoiser of the toy (flow, or eps: x0 = x SD^2 / (SD^2 +
 * sigma^2)). */
static double ipndm_ref(const float *sig, int n, double x, bool flow)
{
    double buf[3] = {0};
    for (int i = 0; i < n; i++) {
        const double s = sig[i], t = sig[i + 1];
        const double den = flow ? x - s * x * toy_k(s) : x * SD * SD / (SD * SD + s * s);
        const double d = (x - den) / s;
        const int order = i + 1 < 4 ? i + 1 : 4;
        if (t == 0) x = den;
        else if (order == 1) x = x + (t - s) * d;
        else if (order == 2) x = x + (t - s) * (3 * d - buf[0]) / 2;
        else if (order == 3) x = x + (t - s) * (23 * d - 16 * buf[0] + 5 * buf[1]) / 12;
        else x = x + (t - s) * (55 * d - 59 * buf[0] + 37 * buf[1] - 9 * buf[2]) / 24;
        buf[2] = buf[1];
        buf[1] = buf[0];
        buf[0] = d;
    }
    return x;
}

/* The eps toy of test_samplers.c: eps = x_in sigma sqrt(1 + sigma^2) /
 * (SD^2 + sigma^2), sigma from the timestep through the float64 table. */
typedef struct {
    double log_sigma[1000];
} eps_toy;

static sdw_status eps_model(void *user, const float *x_in, float t, float *out, size_t n)
{
    const eps_toy *m = user;
    const double tt = t < 0 ? 0 : t > 999 ? 999 : t;
    const int lo = (int)floor(tt), hi = lo < 999 ? lo + 1 : lo;
    const double sigma = exp(m->log_sigma[lo] + (tt - lo) * (m->log_sigma[hi] - m->log_sigma[lo]));
    const double k = sigma * sqrt(1 + sigma * sigma) / (SD * SD + sigma * sigma);
    for (size_t i = 0; i < n; i++) out[i] = (float)(x_in[i] * k);
    return SDW_OK;
}

static void test_ipndm_reference(void **state)
{
    (void)state;
    enum { N = 256 };
    float x[N], x0[N];
    test_fill(x0, N, 5);
    for (int flow = 0; flow <= 1; flow++) {
        for (int steps = 3; steps <= 30; steps += 9) {
            sdw_sampler *s;
            double sig0;
            if (flow) {
                s = make_flow(SDW_SAMPLER_IPNDM, SDW_SCHEDULE_FLOW, steps, 0.7, 0);
                sig0 = 1;
                flow_toy m = {0};
                for (int i = 0; i < N; i++) x[i] = x0[i];
                assert_int_equal(sdw_sampler_run(s, x, N, 0, toy_model, &m, NULL, NULL, NULL), SDW_OK);
            } else {
                sdw_sampler_params p = {.sampler = SDW_SAMPLER_IPNDM, .schedule = SDW_SCHEDULE_KARRAS, .steps = steps};
                assert_int_equal(sdw_sampler_create(&p, &s), SDW_OK);
                sig0 = sdw_sampler_sigmas(s)[0];
                eps_toy m;
                double acc = 1;
                for (int i = 0; i < 1000; i++) {
                    const double b = sqrt(0.00085) + (sqrt(0.012) - sqrt(0.00085)) * i / 999.0;
                    acc *= 1 - b * b;
                    m.log_sigma[i] = 0.5 * log((1 - acc) / acc);
                }
                for (int i = 0; i < N; i++) x[i] = (float)(x0[i] * sig0);
                assert_int_equal(sdw_sampler_run(s, x, N, 0, eps_model, &m, NULL, NULL, NULL), SDW_OK);
            }
            double num = 0, den = 0;
            for (int i = 0; i < N; i++) {
                const double want = ipndm_ref(sdw_sampler_sigmas(s), sdw_sampler_steps(s), x0[i] * sig0, flow);
                num += (x[i] - want) * (x[i] - want);
                den += want * want;
            }
            printf("  ipndm %s %2d steps vs double reimplementation: rel L2 %.2e\n", flow ? "flow" : "eps ", steps,
                   sqrt(num / den));
            /* the eps model reads sigma back from the timestep: a little more */
            assert_true(sqrt(num / den) < (flow ? 1e-6 : 1e-4));
            sdw_sampler_free(s);
        }
    }
}

#define FLUX_CASE(i) {flux_cases[i], test_flux_case, NULL, NULL, (void *)flux_cases[i]}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flow_schedule_golden),
        cmocka_unit_test(test_flow_start_and_noise),
        cmocka_unit_test(test_flow_refusals),
        cmocka_unit_test(test_flow_comfy_schedules),
        cmocka_unit_test(test_beta),
        cmocka_unit_test(test_flow_toy_deterministic),
        cmocka_unit_test(test_flow_toy_stochastic),
        cmocka_unit_test(test_flow_toy_img2img),
        cmocka_unit_test(test_ipndm_reference),
        FLUX_CASE(0), FLUX_CASE(1), FLUX_CASE(2), FLUX_CASE(3), FLUX_CASE(4), FLUX_CASE(5), FLUX_CASE(6),
        FLUX_CASE(7), FLUX_CASE(8), FLUX_CASE(9),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
