/* test_comfy_sampling.c: the pipeline's comfy mode (ComfyUI's KSampler /
 * KSamplerAdvanced on latents) and the VAE on its own (VAEDecode /
 * VAEEncode), on the tiny sd1 model:
 *   - txt2img from an empty latent against the 4-step Euler golden case,
 *     whose diffusers linspace schedule lands on table entries (999, 666,
 *     333, 0) and so equals ComfyUI's "normal" one: ComfyUI's first x is
 *     noise * sqrt(1 + sigma^2) (max_denoise) where diffusers' is noise *
 *     sigma, so the noise is checked against that scaling and the loop from
 *     the golden initial latents (add_noise off);
 *   - denoise 0.5 runs the last half of the doubled schedule from latent +
 *     noise * sigma_first; a KSamplerAdvanced split with leftover noise
 *     equals the whole run; a noise mask of ones changes nothing, one of
 *     zeros keeps the latent; latents_out + sdw_pipeline_decode equals the
 *     images; decode / encode against the VAE components;
 *   - each sampler's comfy form runs, the schedule rules (dpm2's discarded
 *     sigma, ddim_uniform), flow models' noise scaling and its inverse (tiny
 *     FLUX dev), and the range checks. */
#include "testkit.h"
#include "io/json_file.h"
#include "pipeline/pipeline.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F32_GATE 1e-4        /* end-to-end latents and images (tests/data/README.md) */
#define COMPONENT_GATE 1e-5  /* component outputs */
#define CASE "t2i_sd1_euler_batch2"

static sdw_model *model;
static cJSON *manifest;
static sdw_safetensors *golden;

static int setup(void **state)
{
    (void)state;
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    if (sdw_model_load(test_data_path("models/sd1-tiny/sd1-tiny.safetensors"), &lp, &model) != SDW_OK) return -1;
    if (sdw_json_load_file(test_data_path("cases/" CASE ".json"), &manifest) != SDW_OK) return -1;
    golden = test_open_st("cases/" CASE ".safetensors");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sdw_model_free(model);
    cJSON_Delete(manifest);
    sdw_st_close(golden);
    return 0;
}

/* The golden case's prompt and sizes as a comfy-mode euler / normal run. */
static void case_params(sdw_pipeline_params *p)
{
    sdw_pipeline_params_init(p);
    p->prompt = sdw_json_str(manifest, "prompt", "");
    p->negative_prompt = sdw_json_str(manifest, "negative_prompt", NULL);
    p->width = sdw_json_int(manifest, "width", 0);
    p->height = sdw_json_int(manifest, "height", 0);
    p->cfg_scale = (float)cJSON_GetObjectItem(manifest, "guidance_scale")->valuedouble;
    p->seed = (uint64_t)cJSON_GetObjectItem(manifest, "seed")->valuedouble;
    p->batch_size = sdw_json_int(manifest, "num_images_per_prompt", 1);
    p->sampler = SDW_SAMPLER_EULER;
    p->schedule = SDW_SCHEDULE_NORMAL;
    p->comfy = true;
    p->steps = p->schedule_steps = p->last_step = sdw_json_int(manifest, "steps", 0);
    p->first_step = 0;
    p->add_noise = true;
}

static size_t latent_count(const sdw_pipeline_params *p)
{
    return (size_t)p->batch_size * 4 * (p->height / 8) * (p->width / 8);
}
static size_t image_count(const sdw_pipeline_params *p) { return (size_t)p->batch_size * p->height * p->width * 3; }

static void run_ok(const sdw_pipeline_params *p, float *images)
{
    if (sdw_pipeline_run(model, p, images) != SDW_OK) fail_msg("comfy run: %s", sdw_last_error());
}

/* ComfyUI's schedule of a sampler / scheduler for this model. */
static sdw_sampler *comfy_sampler(sdw_sampler_kind k, sdw_schedule_kind sk, int steps)
{
    sdw_sampler_params sp = { .sampler = k, .schedule = sk, .steps = steps, .param = SDW_PARAM_EPS, .comfy = true };
    sdw_sampler *s;
    if (sdw_sampler_create(&sp, &s) != SDW_OK) fail_msg("%s", sdw_last_error());
    return s;
}

/* ---- observing ---- */

typedef struct {
    float *initial_noise, *initial_latents, *sigmas;
    int n_sigmas;
    const float *ref_steps;   /* golden step latents to check each step against, or NULL */
    int steps_seen;
    double worst;
} watch;

static float *dup(const float *x, size_t n)
{
    float *d = malloc(n * sizeof *d);
    memcpy(d, x, n * sizeof *d);
    return d;
}

static void on_tensor(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape)
{
    watch *w = user;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    (void)step;
    if (!strcmp(name, "initial_noise")) w->initial_noise = dup(x, n);
    else if (!strcmp(name, "initial_latents")) w->initial_latents = dup(x, n);
    else if (!strcmp(name, "comfy_sigmas")) {
        w->sigmas = dup(x, n);
        w->n_sigmas = (int)n;
    } else if (!strcmp(name, "step_latents")) {
        if (w->ref_steps) {
            double rel = test_rel_l2(x, w->ref_steps + (size_t)w->steps_seen * n, n);
            if (rel > w->worst) w->worst = rel;
            if (!(rel < F32_GATE)) fail_msg("comfy step %d latents rel L2 %.3g", w->steps_seen, rel);
        }
        w->steps_seen++;
    }
}

static void watch_free(watch *w)
{
    free(w->initial_noise);
    free(w->initial_latents);
    free(w->sigmas);
}

static int progress_calls, progress_total;
static sdw_status on_progress(void *user, const sdw_progress *pr)
{
    (void)user;
    progress_calls++;
    progress_total = pr->total;
    assert_int_equal(pr->step, progress_calls);
    return SDW_OK;
}

/* ---- (a) txt2img against the golden case ---- */

static void txt2img_golden(void **state)
{
    (void)state;
    sdw_pipeline_params p;
    case_params(&p);
    size_t n = latent_count(&p), ni = image_count(&p);
    float *ref_init = test_load_f32(golden, "initial_latents", NULL);
    float *ref_sigmas = test_load_f32(golden, "sigmas", NULL);
    float *ref_steps = test_load_f32(golden, "step_latents", NULL);
    float *ref_img = test_load_f32(golden, "image", NULL);
    float *img = malloc(ni * sizeof *img), *want = malloc(n * sizeof *want);

    /* The schedule is the golden one (to the tables' float rounding). */
    sdw_sampler *s = comfy_sampler(SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL, p.steps);
    test_check_close("comfy normal sigmas vs diffusers linspace", sdw_sampler_sigmas(s), ref_sigmas,
                     (size_t)p.steps + 1, COMPONENT_GATE);
    for (int i = 0; i < p.steps; i++) assert_true(sdw_sampler_timesteps(s)[i] == (float)(999 - 333 * i));
    sdw_sampler_free(s);

    /* Empty latent + noise: randn(seed) scaled by sqrt(1 + sigma_max^2). */
    watch w = { 0 };
    p.observe = on_tensor;
    p.observe_user = &w;
    run_ok(&p, img);
    const double s0 = ref_sigmas[0], k = sqrt(1 + s0 * s0) / s0;
    for (size_t i = 0; i < n; i++) want[i] = (float)(ref_init[i] * k);
    test_check_close("comfy initial latents (max_denoise)", w.initial_latents, want, n, F32_GATE);
    printf("  initial latents vs golden noise * sqrt(1 + s^2): rel L2 %.3g\n", test_rel_l2(w.initial_latents, want, n));
    assert_int_equal(w.steps_seen, p.steps);
    watch_free(&w);

    /* The loop from the golden initial latents: every step and the image. */
    memset(&w, 0, sizeof w);
    w.ref_steps = ref_steps;
    p.add_noise = false;
    p.init_latents = ref_init;
    run_ok(&p, img);
    assert_int_equal(w.steps_seen, p.steps);
    test_check_close("comfy image vs golden", img, ref_img, ni, F32_GATE);
    printf("  loop from the golden initial latents: worst step rel L2 %.3g, image %.3g\n", w.worst,
           test_rel_l2(img, ref_img, ni));
    watch_free(&w);
    free(ref_init); free(ref_sigmas); free(ref_steps); free(ref_img); free(img); free(want);
}

/* ---- (b) denoise 0.5 ---- */

/* The golden image's first item, encoded: a real latent to start from. */
static float *encoded_input(const sdw_pipeline_params *p)
{
    float *ref_img = test_load_f32(golden, "image", NULL);
    float *lat = malloc(latent_count(p) * sizeof *lat);
    size_t per = latent_count(p) / (size_t)p->batch_size;
    for (int b = 0; b < p->batch_size; b++)
        if (sdw_pipeline_encode(model, ref_img, 1, p->height, p->width, lat + (size_t)b * per) != SDW_OK)
            fail_msg("%s", sdw_last_error());
    free(ref_img);
    return lat;
}

static void denoise_half(void **state)
{
    (void)state;
    sdw_pipeline_params p;
    case_params(&p);
    p.batch_size = 1;
    p.seed = 7;
    const int steps = 4;
    p.schedule_steps = 2 * steps;   /* KSampler denoise 0.5: int(steps / 0.5) */
    p.first_step = steps;
    p.last_step = 2 * steps;
    float *lat = encoded_input(&p);
    p.init_latents = lat;
    size_t n = latent_count(&p);
    float *img = malloc(image_count(&p) * sizeof *img), *noise = malloc(n * sizeof *noise);
    watch w = { 0 };
    p.observe = on_tensor;
    p.observe_user = &w;
    p.progress = on_progress;
    progress_calls = 0;
    run_ok(&p, img);
    assert_int_equal(progress_calls, steps);
    assert_int_equal(progress_total, steps);
    assert_int_equal(w.steps_seen, steps);

    sdw_sampler *s = comfy_sampler(SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL, 2 * steps);
    const float *sig = sdw_sampler_sigmas(s);
    assert_int_equal(w.n_sigmas, steps + 1);
    for (int i = 0; i <= steps; i++) assert_true(w.sigmas[i] == sig[steps + i]);
    sdw_rng rng;
    sdw_rng_init(&rng, SDW_RNG_CPU, 7);
    sdw_rng_randn(&rng, noise, n);
    assert_true(test_max_abs(w.initial_noise, noise, n) == 0);
    /* not max denoise: latent + noise * sigma_first */
    for (size_t i = 0; i < n; i++) assert_true(w.initial_latents[i] == noise[i] * sig[steps] + lat[i]);
    printf("  denoise 0.5: sigmas %.4f..%.4f of the %d-step schedule\n", (double)w.sigmas[0],
           (double)w.sigmas[steps - 1], 2 * steps);
    sdw_sampler_free(s);
    watch_free(&w);

    /* ddim_uniform lays 7 steps out as 8 levels: KSampler's denoise takes
     * the tail, KSamplerAdvanced's start the index */
    s = comfy_sampler(SDW_SAMPLER_EULER, SDW_SCHEDULE_LEADING, 7);
    sig = sdw_sampler_sigmas(s);
    p.progress = NULL;
    p.schedule = SDW_SCHEDULE_LEADING;
    p.schedule_steps = 7;
    p.first_step = 3;
    p.last_step = 7;
    for (int tail = 0; tail <= 1; tail++) {
        memset(&w, 0, sizeof w);
        p.denoise_tail = tail;
        run_ok(&p, img);
        int from = tail ? 4 : 3;
        assert_int_equal(w.n_sigmas, 8 - from + 1);
        for (int i = 0; i < w.n_sigmas; i++) assert_true(w.sigmas[i] == sig[from + i]);
        watch_free(&w);
    }
    sdw_sampler_free(s);
    free(lat); free(img); free(noise);
}

/* ---- a 9-channel inpainting model: mask and masked-image channels ---- */

static void inpaint_model(void **state)
{
    (void)state;
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    sdw_model *inp;
    if (sdw_model_load(test_data_path("models/sd1-tiny-inpaint/diffusers"), &lp, &inp) != SDW_OK)
        fail_msg("%s", sdw_last_error());
    sdw_pipeline_params p;
    case_params(&p);
    p.batch_size = 1;
    size_t n = latent_count(&p), hw = (size_t)(p.height / 8) * (p.width / 8);
    float *img = test_load_f32(golden, "image", NULL), *lat = malloc(n * sizeof *lat), *out = malloc(n * sizeof *out);
    float *mask = malloc(hw * sizeof *mask);
    if (sdw_pipeline_encode(inp, img, 1, p.height, p.width, lat) != SDW_OK) fail_msg("%s", sdw_last_error());
    p.latents_out = out;
    /* no mask: ones and blank_inpaint_image_like */
    if (sdw_pipeline_run(inp, &p, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
    for (size_t i = 0; i < n; i++) assert_true(isfinite(out[i]));
    /* a mask of zeros keeps the latent (the UNet still sees mask and latent) */
    for (size_t i = 0; i < hw; i++) mask[i] = 0.4f;   /* rounds to 0 for the UNet, blends at 0.4 */
    p.init_latents = lat;
    p.noise_mask = mask;
    if (sdw_pipeline_run(inp, &p, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
    for (size_t i = 0; i < n; i++) assert_true(isfinite(out[i]));
    for (size_t i = 0; i < hw; i++) mask[i] = 0.0f;
    if (sdw_pipeline_run(inp, &p, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
    assert_true(test_max_abs(out, lat, n) < 1e-6);
    free(img); free(lat); free(out); free(mask);
    sdw_model_free(inp);
}

/* ---- (c) KSamplerAdvanced split ---- */

static void advanced_split(void **state)
{
    (void)state;
    sdw_pipeline_params p;
    case_params(&p);
    size_t n = latent_count(&p);
    float *whole = malloc(n * sizeof *whole), *half = malloc(n * sizeof *half), *rest = malloc(n * sizeof *rest);
    p.latents_out = whole;
    run_ok(&p, NULL);
    p.last_step = 2;
    p.leftover_noise = true;
    p.latents_out = half;
    run_ok(&p, NULL);
    p.first_step = 2;
    p.last_step = 4;
    p.leftover_noise = false;
    p.add_noise = false;
    p.init_latents = half;
    p.latents_out = rest;
    run_ok(&p, NULL);
    double d = test_max_abs(rest, whole, n);
    printf("  [0, 2) leftover + [2, 4) vs [0, 4): max abs %.3g\n", d);
    assert_true(d < 1e-6);
    /* without leftover noise the first part ends at sigma 0: a different latent */
    p.first_step = 0;
    p.last_step = 2;
    p.add_noise = true;
    p.init_latents = NULL;
    p.latents_out = rest;
    run_ok(&p, NULL);
    assert_true(test_max_abs(rest, half, n) > 1e-3);
    free(whole); free(half); free(rest);
}

/* ---- (d) noise masks ---- */

static void noise_masks(void **state)
{
    (void)state;
    sdw_pipeline_params p;
    case_params(&p);
    size_t n = latent_count(&p), hw = (size_t)(p.height / 8) * (p.width / 8);
    float *lat = encoded_input(&p), *plain = malloc(n * sizeof *plain), *masked = malloc(n * sizeof *masked);
    float *mask = malloc(hw * sizeof *mask);
    p.init_latents = lat;
    p.latents_out = plain;
    run_ok(&p, NULL);
    for (size_t i = 0; i < hw; i++) mask[i] = 1.0f;
    p.noise_mask = mask;
    p.latents_out = masked;
    run_ok(&p, NULL);
    assert_true(test_max_abs(masked, plain, n) == 0);
    for (size_t i = 0; i < hw; i++) mask[i] = 0.0f;
    run_ok(&p, NULL);
    double d = test_max_abs(masked, lat, n);
    printf("  noise mask of zeros: max abs from the latent %.3g\n", d);
    assert_true(d < 1e-6);
    /* half the mask: the kept half stays the latent, the other changes */
    for (size_t i = 0; i < hw; i++) mask[i] = i < hw / 2 ? 1.0f : 0.0f;
    p.sampler = SDW_SAMPLER_EULER_A;
    run_ok(&p, NULL);
    double kept = 0, moved = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)masked[i] - lat[i]);
        if (i % hw < hw / 2) moved = fmax(moved, e);
        else kept = fmax(kept, e);
    }
    assert_true(kept < 1e-5 && moved > 1e-2);
    free(lat); free(plain); free(masked); free(mask);
}

/* ---- (e) latents_out + decode ---- */

static void latents_then_decode(void **state)
{
    (void)state;
    sdw_pipeline_params p;
    case_params(&p);
    size_t n = latent_count(&p), ni = image_count(&p);
    float *lat = malloc(n * sizeof *lat), *img = malloc(ni * sizeof *img), *dec = malloc(ni * sizeof *dec);
    run_ok(&p, img);
    p.latents_out = lat;
    run_ok(&p, NULL);
    if (sdw_pipeline_decode(model, lat, p.batch_size, p.height / 8, p.width / 8, -1, dec) != SDW_OK)
        fail_msg("%s", sdw_last_error());
    assert_true(test_max_abs(dec, img, ni) == 0);
    free(lat); free(img); free(dec);
}

/* ---- (f) VAE against the components ---- */

static void vae_components(void **state)
{
    (void)state;
    sdw_safetensors *ref = test_open_st("components_sd1-tiny.safetensors");
    const sdw_st_tensor *ti = sdw_st_find(ref, "vae.encoder_input"), *tz = sdw_st_find(ref, "vae.decoder_input");
    int H = (int)ti->shape[2], W = (int)ti->shape[3], h = (int)tz->shape[2], w = (int)tz->shape[3];
    size_t np = (size_t)H * W * 3, nl = (size_t)4 * h * w;
    float *in = test_load_f32(ref, "vae.encoder_input", NULL), *z = test_load_f32(ref, "vae.decoder_input", NULL);
    float *mean = test_load_f32(ref, "vae.mean", NULL), *dec_ref = test_load_f32(ref, "vae.decoder_output", NULL);
    float *img = malloc(np * sizeof *img), *want = malloc(np * sizeof *want), *nhwc = malloc(np * sizeof *nhwc);
    float *lat = malloc(nl * sizeof *lat), *zs = malloc(nl * sizeof *zs);
    /* decode takes the scaled latents and returns [0, 1] images */
    for (size_t i = 0; i < nl; i++) zs[i] = z[i] * 0.18215f;
    if (sdw_pipeline_decode(model, zs, 1, h, w, 0, img) != SDW_OK) fail_msg("%s", sdw_last_error());
    test_nchw_to_nhwc(dec_ref, 1, 3, H, W, nhwc);
    for (size_t i = 0; i < np; i++) want[i] = fminf(fmaxf(nhwc[i] / 2.0f + 0.5f, 0.0f), 1.0f);
    test_check_close("sdw_pipeline_decode vs vae.decoder_output", img, want, np, COMPONENT_GATE);
    /* encode: [0, 1] images in, the posterior mean (scaled) out */
    test_nchw_to_nhwc(in, 1, 3, H, W, nhwc);
    for (size_t i = 0; i < np; i++) img[i] = (nhwc[i] + 1.0f) / 2.0f;
    if (sdw_pipeline_encode(model, img, 1, H, W, lat) != SDW_OK) fail_msg("%s", sdw_last_error());
    for (size_t i = 0; i < nl; i++) zs[i] = mean[i] * 0.18215f;
    test_check_close("sdw_pipeline_encode vs vae.mean", lat, zs, nl, COMPONENT_GATE);
    free(in); free(z); free(mean); free(dec_ref); free(img); free(want); free(nhwc); free(lat); free(zs);
    sdw_st_close(ref);
}

/* ---- every sampler's comfy form, the schedule rules, the checks ---- */

static void samplers_run(void **state)
{
    (void)state;
    static const sdw_sampler_kind kinds[] = { SDW_SAMPLER_EULER_A, SDW_SAMPLER_HEUN, SDW_SAMPLER_DPM2,
                                              SDW_SAMPLER_DPMPP_2M, SDW_SAMPLER_DPMPP_2S_A, SDW_SAMPLER_DPMPP_2M_SDE,
                                              SDW_SAMPLER_DDIM, SDW_SAMPLER_LCM, SDW_SAMPLER_LMS, SDW_SAMPLER_IPNDM };
    sdw_pipeline_params p;
    case_params(&p);
    size_t n = latent_count(&p), hw = (size_t)(p.height / 8) * (p.width / 8);
    float *lat = encoded_input(&p), *out = malloc(n * sizeof *out), *mask = malloc(hw * sizeof *mask);
    for (size_t i = 0; i < hw; i++) mask[i] = (i / 4) % 2 ? 1.0f : 0.0f;
    p.latents_out = out;
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        p.sampler = kinds[k];
        p.schedule = kinds[k] == SDW_SAMPLER_DPMPP_2M ? SDW_SCHEDULE_KARRAS : SDW_SCHEDULE_NORMAL;
        for (int masked = 0; masked <= 1; masked++) {
            p.init_latents = masked ? lat : NULL;
            p.noise_mask = masked ? mask : NULL;
            run_ok(&p, NULL);
            for (size_t i = 0; i < n; i++)
                if (!isfinite(out[i])) fail_msg("%s: non-finite latents", sdw_sampler_name(kinds[k]));
        }
    }
    p.sampler = SDW_SAMPLER_PNDM;
    assert_int_equal(sdw_pipeline_run(model, &p, NULL), SDW_ERR_INVALID_ARG);

    /* dpm2: laid out for one more step, the penultimate sigma dropped */
    sdw_sampler *five = comfy_sampler(SDW_SAMPLER_EULER, SDW_SCHEDULE_NORMAL, 5);
    sdw_sampler *dpm2 = comfy_sampler(SDW_SAMPLER_DPM2, SDW_SCHEDULE_NORMAL, 4);
    assert_int_equal(sdw_sampler_steps(dpm2), 4);
    for (int i = 0; i < 4; i++) {
        assert_true(sdw_sampler_sigmas(dpm2)[i] == sdw_sampler_sigmas(five)[i]);
        assert_true(sdw_sampler_timesteps(dpm2)[i] == sdw_sampler_timesteps(five)[i]);
    }
    assert_true(sdw_sampler_sigmas(dpm2)[4] == 0.0f);
    sdw_sampler_free(five);
    sdw_sampler_free(dpm2);
    /* ddim_uniform for 7 steps: entries 1, 143, ..., 995: eight levels */
    sdw_sampler *du = comfy_sampler(SDW_SAMPLER_EULER, SDW_SCHEDULE_LEADING, 7);
    assert_int_equal(sdw_sampler_steps(du), 8);
    assert_true(sdw_sampler_timesteps(du)[0] == 995.0f && sdw_sampler_timesteps(du)[7] == 1.0f);
    sdw_sampler_free(du);
    free(lat); free(out); free(mask);
}

/* ---- flow (CONST) model sampling, on the tiny FLUX dev ---- */

/* noise_scaling s * noise + (1 - s) * latent from an empty latent at s = 1
 * is the noise itself; a leftover-noise split is undone by
 * inverse_noise_scaling (latents / (1 - s)) and the next run's
 * noise_scaling; a mask of zeros keeps the latent. */
static void flow_split(void **state)
{
    (void)state;
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    sdw_model *flux;
    if (sdw_model_load(test_data_path("flux/models/flux-tiny-dev/diffusers"), &lp, &flux) != SDW_OK)
        fail_msg("%s", sdw_last_error());
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = "an old map of an imaginary island";
    p.width = 96;
    p.height = 64;
    p.cfg_scale = 1.0f;
    p.seed = 45;
    p.sampler = SDW_SAMPLER_EULER;
    p.schedule = SDW_SCHEDULE_SIMPLE;
    p.comfy = true;
    p.schedule_steps = p.last_step = 4;
    p.add_noise = true;
    size_t n = (size_t)16 * 8 * 12, hw = 8 * 12;
    float *whole = malloc(n * sizeof *whole), *half = malloc(n * sizeof *half), *rest = malloc(n * sizeof *rest);
    float *noise = malloc(n * sizeof *noise), *mask = calloc(hw, sizeof *mask);
    watch w = { 0 };
    p.observe = on_tensor;
    p.observe_user = &w;
    p.latents_out = whole;
    if (sdw_pipeline_run(flux, &p, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
    sdw_rng rng;
    sdw_rng_init(&rng, SDW_RNG_CPU, 45);
    sdw_rng_randn(&rng, noise, n);
    assert_true(w.sigmas[0] == 1.0f);
    assert_true(test_max_abs(w.initial_latents, noise, n) == 0);
    watch_free(&w);
    p.observe = NULL;
    p.last_step = 2;
    p.leftover_noise = true;
    p.latents_out = half;
    if (sdw_pipeline_run(flux, &p, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
    p.first_step = 2;
    p.last_step = 4;
    p.leftover_noise = false;
    p.add_noise = false;
    p.init_latents = half;
    p.latents_out = rest;
    if (sdw_pipeline_run(flux, &p, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
    double d = test_max_abs(rest, whole, n);
    printf("  flow: [0, 2) leftover + [2, 4) vs [0, 4): max abs %.3g, rel L2 %.3g\n", d, test_rel_l2(rest, whole, n));
    assert_true(d < 1e-5);
    /* a mask of zeros keeps the latent */
    p.first_step = 0;
    p.add_noise = true;
    p.init_latents = whole;
    p.noise_mask = mask;
    if (sdw_pipeline_run(flux, &p, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
    assert_true(test_max_abs(rest, whole, n) < 1e-6);
    free(whole); free(half); free(rest); free(noise); free(mask);
    sdw_model_free(flux);
}

static void range_checks(void **state)
{
    (void)state;
    sdw_pipeline_params p;
    case_params(&p);
    float *out = malloc(latent_count(&p) * sizeof *out);
    p.latents_out = out;
    p.first_step = 2;
    p.last_step = 2;
    assert_int_equal(sdw_pipeline_run(model, &p, NULL), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "first_step"));
    p.first_step = 0;
    p.last_step = 5;
    assert_int_equal(sdw_pipeline_run(model, &p, NULL), SDW_ERR_INVALID_ARG);
    p.last_step = 4;
    p.first_step = -1;
    assert_int_equal(sdw_pipeline_run(model, &p, NULL), SDW_ERR_INVALID_ARG);
    p.first_step = 0;
    p.latents_out = NULL;
    assert_int_equal(sdw_pipeline_run(model, &p, NULL), SDW_ERR_INVALID_ARG);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(txt2img_golden),   cmocka_unit_test(denoise_half),        cmocka_unit_test(advanced_split),
        cmocka_unit_test(noise_masks),      cmocka_unit_test(latents_then_decode), cmocka_unit_test(vae_components),
        cmocka_unit_test(inpaint_model),    cmocka_unit_test(samplers_run),        cmocka_unit_test(flow_split),
        cmocka_unit_test(range_checks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
