/* pipeline.c: see pipeline.h. One run:
 *   checks: sizes, ranges, and ControlNet units (control.c: UNet families only, each net for this base)
 *   conditioning: the family's denoiser encodes the prompts (denoiser.h)
 *   draws, in the reference's order: image latents (VAE sample), noise, masked-image latents
 *   sampler loop: the denoiser's guided prediction; inpaint blending after each step
 *   decode: latents / scale + shift -> VAE -> image
 * In comfy mode (ComfyUI's KSampler, pipeline_comfy.c) the run starts from
 * latents with ComfyUI's noise and may hand its latents back undecoded.
 * sdw_pipeline_decode / _encode are the VAE alone (ComfyUI's VAEDecode /
 * VAEEncode). */
#include "pipeline/denoiser.h"
#include "pipeline/control.h"
#include "pipeline/pipeline_comfy.h"
#include "core/error.h"
#include "core/log.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void sdw_pipeline_params_init(sdw_pipeline_params *p)
{
    memset(p, 0, sizeof *p);
    p->prompt = "";
    p->width = p->height = 512;
    p->steps = 20;
    p->cfg_scale = 7.0f;
    p->rng = SDW_RNG_CPU;
    p->sampler = SDW_SAMPLER_EULER_A;
    p->schedule = SDW_SCHEDULE_NORMAL;
    p->batch_size = 1;
    p->strength = 0.75f;
    p->vae_tiling = -1;
    p->guidance = -1.0f;
    p->slg_scale = 2.8f;   /* diffusers' SD3.5-medium example */
    p->slg_start = 0.01f;
    p->slg_end = 0.2f;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

sdw_status sdw_pipeline_nomem(void) { return sdw_fail(SDW_ERR_NOMEM, "out of memory in the pipeline"); }

int sdw_run_step_of(const sdw_run *r, float t)
{
    if (!r->sampler) return 0;
    const float *ts = sdw_sampler_timesteps(r->sampler);
    int n = sdw_sampler_steps(r->sampler), i = 0;
    while (i + 1 < n && ts[i + 1] >= t) i++;
    return i;
}

void sdw_pipeline_observe(const sdw_run *r, const char *name, int step, const float *x, int ndim,
                          const int64_t *shape)
{
    if (r->p->observe) r->p->observe(r->p->observe_user, name, step, x, ndim, shape);
}

void sdw_cfg_combine(const float *uncond, const float *cond, float g, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) out[i] = uncond[i] + g * (cond[i] - uncond[i]);
}

typedef sdw_run run;
#define nomem sdw_pipeline_nomem

/* ---------------------------------------------------------------- images to latents */

/* One VAE sample of an image [H, W, 3] in [-1, 1]: mean + std * randn, scaled. */
static sdw_status encode_image(run *r, const float *img_pm1, sdw_rng *rng, float *lat_nchw)
{
    sdw_model *m = r->m;
    int h = r->h, w = r->w, lc = r->lc;
    size_t n = (size_t)lc * h * w;
    float *mom = malloc(2 * n * sizeof *mom), *eps = malloc(n * sizeof *eps);
    sdw_status s = (mom && eps) ? SDW_OK : nomem();
    if (s == SDW_OK) s = sdw_vae_encode(m->be, &r->arena, m->vae, img_pm1, 1, r->p->height, r->p->width, mom);
    if (s == SDW_OK) {
        sdw_rng_randn(rng, eps, n);   /* drawn as torch draws [1, 4, h, w] */
        float scale = m->info.latent_scale, shift = m->info.latent_shift;
        for (int c = 0; c < lc; c++)
            for (int i = 0; i < h * w; i++) {
                float mean = mom[(size_t)i * 2 * lc + c], logvar = mom[(size_t)i * 2 * lc + lc + c];
                float std = expf(0.5f * logvar);
                lat_nchw[(size_t)c * h * w + i] = (mean + std * eps[(size_t)c * h * w + i] - shift) * scale;
            }
    }
    free(mom);
    free(eps);
    return s;
}

static sdw_status prepare_latents(run *r, sdw_rng *rng, float *x)
{
    const sdw_pipeline_params *p = r->p;
    sdw_model *m = r->m;
    int B = r->B, h = r->h, w = r->w, lc = r->lc, H = p->height, W = p->width;
    size_t per = (size_t)lc * h * w, n = (size_t)B * per;
    bool inpaint = p->mask != NULL, nine = m->info.inpaint;
    float strength = (p->init_image || inpaint) ? p->strength : 1.0f;
    r->first_step = strength >= 1.0f ? 0 : sdw_sampler_start_step(r->sampler, strength);
    if (r->first_step >= sdw_sampler_steps(r->sampler))
        return sdw_fail(SDW_ERR_INVALID_ARG, "strength %.3f leaves no step to run with %d steps", strength, p->steps);
    if (!(r->noise = malloc(n * sizeof(float)))) return nomem();

    float *img = NULL, *masked = NULL;
    if (p->init_image) {
        if (!(img = malloc((size_t)H * W * 3 * sizeof *img))) return nomem();
        for (size_t i = 0; i < (size_t)H * W * 3; i++) img[i] = 2.0f * p->init_image[i] - 1.0f;
    }
    if (inpaint) {
        /* Binary mask; the masked image keeps what will not be repainted. */
        if (!(r->mask_lat = malloc((size_t)h * w * sizeof(float)))) { free(img); return nomem(); }
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                int si = i * H / h, sj = j * W / w;  /* torch's nearest: floor(dst * in / out) */
                r->mask_lat[i * w + j] = p->mask[(size_t)si * W + sj] >= 0.5f ? 1.0f : 0.0f;
            }
        if (nine) {
            if (!(masked = malloc((size_t)H * W * 3 * sizeof *masked))) { free(img); return nomem(); }
            for (size_t i = 0; i < (size_t)H * W; i++)
                for (int c = 0; c < 3; c++) masked[i * 3 + c] = p->mask[i] < 0.5f ? img[i * 3 + c] : 0.0f;
        }
    }
    sdw_status s = SDW_OK;
    bool need_image_latents = p->init_image && (!nine || strength < 1.0f || !inpaint);
    /* The reference's draw order: image sample, noise, masked-image sample. */
    if (need_image_latents) {
        if (!(r->image_lat = malloc(per * sizeof(float)))) s = nomem();
        if (s == SDW_OK) s = encode_image(r, img, rng, r->image_lat);
    }
    if (s == SDW_OK) {
        sdw_rng_randn(rng, r->noise, n);
        int64_t shape[4] = { B, lc, h, w };
        sdw_pipeline_observe(r, "initial_noise", -1, r->noise, 4, shape);
    }
    if (s == SDW_OK && nine && inpaint) {
        if (!(r->masked_lat = malloc(per * sizeof(float)))) s = nomem();
        if (s == SDW_OK) s = encode_image(r, masked, rng, r->masked_lat);
    }
    free(img);
    free(masked);
    SDW_TRY(s);
    if (r->image_lat) {
        if (!(r->image_batch = malloc(n * sizeof(float)))) return nomem();
        for (int b = 0; b < B; b++) memcpy(r->image_batch + (size_t)b * per, r->image_lat, per * sizeof(float));
        if (inpaint && !nine && !(r->keep = malloc(n * sizeof(float)))) return nomem();
    }
    /* txt2img and full-strength inpainting start from pure noise; img2img
     * (at any strength) and partial inpainting from the noised image. */
    if (!p->init_image || (inpaint && strength >= 1.0f)) {
        float sigma0 = sdw_sampler_init_noise_sigma(r->sampler);
        for (size_t i = 0; i < n; i++) x[i] = r->noise[i] * sigma0;
    } else {
        sdw_sampler_add_noise(r->sampler, r->first_step, r->image_batch, r->noise, x, n);
    }
    int64_t shape[4] = { B, lc, h, w };
    sdw_pipeline_observe(r, "initial_latents", -1, x, 4, shape);
    return SDW_OK;
}

/* ---------------------------------------------------------------- the loop */

static sdw_status model_fn(void *user, const float *x_in, float t, float *out, size_t n)
{
    (void)n;
    run *r = user;
    return r->ops->predict(r, x_in, t, out);
}

static sdw_status step_fn(void *user, int step, float *x, size_t n)
{
    run *r = user;
    const sdw_pipeline_params *p = r->p;
    int B = r->B, h = r->h, w = r->w, lc = r->lc, steps = sdw_sampler_steps(r->sampler);
    size_t hw = (size_t)h * w;
    /* 4-channel inpainting: keep the unmasked region on the original image's
     * trajectory, noised to the level of the next step (clean after the last). */
    if (p->mask && !r->m->info.inpaint && r->image_lat) {
        float *keep = r->keep;
        if (step + 1 < steps) sdw_sampler_add_noise(r->sampler, step + 1, r->image_batch, r->noise, keep, n);
        else memcpy(keep, r->image_batch, n * sizeof *keep);
        for (size_t i = 0; i < n; i++) {
            float mk = r->mask_lat[i % hw];
            x[i] = (1.0f - mk) * keep[i] + mk * x[i];
        }
    }
    int64_t shape[4] = { B, lc, h, w };
    sdw_pipeline_observe(r, "step_latents", step, x, 4, shape);
    if (!p->progress) return SDW_OK;
    int done = step + 1 - r->first_step, total = steps - r->first_step;
    double el = now() - r->t0;
    sdw_progress pr = { done, total, el, done ? el / done * (total - done) : 0, NULL, w, h };
    if (p->preview_every > 0 && (done % p->preview_every == 0 || done == total)) {
        sdw_latent_preview(r->m->info.family, x, h, w, r->preview);
        pr.preview = r->preview;
    }
    return p->progress(p->progress_user, &pr);
}

/* One image's scaled latents [lc, h, w] -> the raw decoder output [h*8, w*8, 3];
 * z and zs are scratch of lc*h*w floats. */
static sdw_status decode_one(sdw_model *m, sdw_arena *arena, const float *lat, int h, int w, bool tiled, float *z,
                             float *zs, float *img)
{
    int lc = sdw_vae_get_config(m->vae)->latent_channels;
    size_t per = (size_t)lc * h * w;
    for (size_t i = 0; i < per; i++) zs[i] = lat[i] / m->info.latent_scale + m->info.latent_shift;
    sdw_nchw_to_nhwc(zs, 1, lc, h, w, z);
    sdw_arena_reset(arena);
    return tiled ? sdw_vae_decode_tiled(m->be, arena, m->vae, z, h, w, SDW_VAE_TILE, SDW_VAE_TILE_OVERLAP, img)
                 : sdw_vae_decode(m->be, arena, m->vae, z, 1, h, w, img);
}

static bool decode_tiled(int vae_tiling, int H, int W)
{
    return vae_tiling > 0 || (vae_tiling < 0 && (int64_t)H * W > SDW_VAE_TILING_AUTO_PIXELS);
}

static void to_unit(const float *img, size_t n, float *dst)
{
    for (size_t i = 0; i < n; i++) dst[i] = fminf(fmaxf(img[i] / 2.0f + 0.5f, 0.0f), 1.0f);
}

static sdw_status decode(run *r, const float *x, float *images)
{
    sdw_model *m = r->m;
    int h = r->h, w = r->w, lc = r->lc, H = r->p->height, W = r->p->width;
    size_t per = (size_t)lc * h * w;
    float *z = malloc(per * sizeof *z), *zs = malloc(per * sizeof *zs), *img = malloc((size_t)H * W * 3 * sizeof *img);
    sdw_status s = (z && zs && img) ? SDW_OK : nomem();
    bool tiled = decode_tiled(r->p->vae_tiling, H, W);
    for (int b = 0; b < r->B && s == SDW_OK; b++) {
        s = decode_one(m, &r->arena, x + (size_t)b * per, h, w, tiled, z, zs, img);
        if (s != SDW_OK) break;
        if (r->p->observe) {
            float *nchw = malloc((size_t)H * W * 3 * sizeof *nchw);
            if (nchw) {
                sdw_nhwc_to_nchw(img, 1, H, W, 3, nchw);
                int64_t shape[4] = { 1, 3, H, W };
                sdw_pipeline_observe(r, "vae_decoded", b, nchw, 4, shape);
                free(nchw);
            }
        }
        to_unit(img, (size_t)H * W * 3, images + (size_t)b * H * W * 3);
    }
    free(z);
    free(zs);
    free(img);
    return s;
}

sdw_status sdw_pipeline_decode(sdw_model *m, const float *latents, int batch, int h, int w, int vae_tiling,
                               float *images)
{
    if (!m || !latents || !images || batch < 1 || h < 1 || w < 1 || h > 4096 || w > 4096)
        return sdw_fail(SDW_ERR_INVALID_ARG, "vae decode: latents, images, a batch >= 1 and a size in 1..4096 "
                                             "latents are needed (got batch %d, %dx%d)", batch, w, h);
    int lc = sdw_vae_get_config(m->vae)->latent_channels, H = h * 8, W = w * 8;
    size_t per = (size_t)lc * h * w, npix = (size_t)H * W * 3;
    float *z = malloc(per * sizeof *z), *zs = malloc(per * sizeof *zs), *img = malloc(npix * sizeof *img);
    sdw_status s = (z && zs && img) ? SDW_OK : nomem();
    sdw_arena arena = { 0 };
    for (int b = 0; b < batch && s == SDW_OK; b++) {
        s = decode_one(m, &arena, latents + (size_t)b * per, h, w, decode_tiled(vae_tiling, H, W), z, zs, img);
        if (s == SDW_OK) to_unit(img, npix, images + (size_t)b * npix);
    }
    sdw_arena_free(&arena);
    free(z);
    free(zs);
    free(img);
    return s;
}

sdw_status sdw_pipeline_encode(sdw_model *m, const float *images, int batch, int height, int width, float *latents)
{
    if (!m || !images || !latents || batch < 1)
        return sdw_fail(SDW_ERR_INVALID_ARG, "vae encode: images, latents and a batch >= 1 are needed");
    if (height < 8 || width < 8 || height % 8 || width % 8 || height > 32768 || width > 32768)
        return sdw_fail(SDW_ERR_INVALID_ARG, "vae encode: width and height must be multiples of 8 (got %dx%d)", width,
                        height);
    if (!sdw_vae_has_encoder(m->vae))
        return sdw_fail(SDW_ERR_INVALID_ARG, "vae encode: the model was loaded without the VAE encoder");
    int lc = sdw_vae_get_config(m->vae)->latent_channels, h = height / 8, w = width / 8;
    size_t hw = (size_t)h * w, npix = (size_t)height * width * 3;
    float *img = malloc(npix * sizeof *img), *mom = malloc(2 * lc * hw * sizeof *mom);
    sdw_status s = (img && mom) ? SDW_OK : nomem();
    sdw_arena arena = { 0 };
    const float scale = m->info.latent_scale, shift = m->info.latent_shift;
    for (int b = 0; b < batch && s == SDW_OK; b++) {
        const float *src = images + (size_t)b * npix;
        for (size_t i = 0; i < npix; i++) img[i] = 2.0f * src[i] - 1.0f;
        sdw_arena_reset(&arena);
        s = sdw_vae_encode(m->be, &arena, m->vae, img, 1, height, width, mom);
        if (s != SDW_OK) break;
        /* the posterior's mean (moments NHWC: mean, then log-variance), process_latent_in */
        float *dst = latents + (size_t)b * lc * hw;
        for (int c = 0; c < lc; c++)
            for (size_t i = 0; i < hw; i++) dst[c * hw + i] = (mom[i * 2 * lc + c] - shift) * scale;
    }
    sdw_arena_free(&arena);
    free(img);
    free(mom);
    return s;
}

static sdw_status validate(const sdw_model *m, const sdw_pipeline_params *p)
{
    int mult = m->info.size_multiple > 8 ? m->info.size_multiple : 8;
    if (p->width < 8 || p->height < 8 || p->width % 8 || p->height % 8)
        return sdw_fail(SDW_ERR_INVALID_ARG, "width and height must be multiples of 8 (got %dx%d)", p->width, p->height);
    if (p->width % mult || p->height % mult)
        return sdw_fail(SDW_ERR_INVALID_ARG, "this model needs width and height in multiples of %d (got %dx%d)", mult,
                        p->width, p->height);
    if (!p->comfy && (p->steps < 1 || p->steps > 1000))
        return sdw_fail(SDW_ERR_INVALID_ARG, "steps must be in 1..1000 (got %d)", p->steps);
    if (p->batch_size < 1 || p->batch_size > 32)
        return sdw_fail(SDW_ERR_INVALID_ARG, "batch size must be in 1..32 (got %d)", p->batch_size);
    if (!(p->cfg_scale >= 0 && p->cfg_scale <= 100)) return sdw_fail(SDW_ERR_INVALID_ARG, "cfg scale must be in 0..100");
    if (!(p->guidance <= 100)) return sdw_fail(SDW_ERR_INVALID_ARG, "guidance must be in 0..100");
    if (p->comfy) {
        SDW_TRY(sdw_comfy_validate(m, p));
        return sdw_control_validate(m, p);
    }
    if ((p->init_image || p->mask) && !(p->strength > 0 && p->strength <= 1))
        return sdw_fail(SDW_ERR_INVALID_ARG, "strength must be in (0, 1] (got %g)", p->strength);
    if (p->mask && !p->init_image) return sdw_fail(SDW_ERR_INVALID_ARG, "a mask needs an init image");
    if (m->info.inpaint && !p->mask)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s is an inpainting model: give an init image and a mask",
                        sdw_family_name(m->info.family));
    if ((p->init_image || p->mask) && !sdw_vae_has_encoder(m->vae))
        return sdw_fail(SDW_ERR_INVALID_ARG, "the model was loaded without the VAE encoder");
    return sdw_control_validate(m, p);
}

static sdw_parametrization parametrization(sdw_prediction p)
{
    return p == SDW_PREDICTION_FLOW ? SDW_PARAM_FLOW : p == SDW_PREDICTION_V ? SDW_PARAM_V : SDW_PARAM_EPS;
}

/* SD3's static shift (mu = ln 3) and FLUX dev's resolution-dependent shift (diffusers' calculate_shift with
 * FLUX.1-dev's scheduler config: 0.5 at 256 image tokens, 1.15 at 4096,
 * linear in between and beyond), in float64 as the reference; schnell runs
 * unshifted. ComfyUI's FLUX dev (ModelSamplingFlux without the node of that
 * name, which the executor does not run) has the fixed shift 1.15. */
static double flow_mu(const sdw_model *m, const sdw_pipeline_params *p)
{
    int width = p->width, height = p->height;
    if (sdw_family_is_sd3(m->info.family)) return log((double)m->info.flow_shift);   /* static shift 3 */
    if (m->info.family != SDW_FAMILY_FLUX_DEV) return 0.0;
    if (p->comfy) return 1.15;
    double seq = (double)(height / 16) * (width / 16), k = (1.15 - 0.5) / (4096 - 256);
    return seq * k + (0.5 - 256 * k);
}

sdw_status sdw_pipeline_run(sdw_model *m, const sdw_pipeline_params *p, float *images)
{
    SDW_TRY(validate(m, p));
    if (!images && !(p->comfy && p->latents_out))
        return sdw_fail(SDW_ERR_INVALID_ARG, "pipeline: no output for the images");
    run r = { 0 };
    r.m = m;
    r.p = p;
    /* The last run's arena, its pages in memory already; its peak from here
     * is this run's. */
    r.arena = m->kept;
    r.arena.peak = 0;
    m->kept = (sdw_arena){ 0 };
    r.ops = m->flux ? &sdw_flux_denoiser : m->mmdit ? &sdw_sd3_denoiser : &sdw_unet_denoiser;
    r.B = p->batch_size;
    r.h = p->height / 8;
    r.w = p->width / 8;
    r.lc = sdw_vae_get_config(m->vae)->latent_channels;
    r.cfg = p->cfg_scale > 1.0f;
    r.t0 = now();
    /* ComfyUI's model sampling for FLUX dev (ModelSamplingFlux) tabulates
     * 10000 sigmas; schnell's (ModelSamplingDiscreteFlow) 1000. */
    sdw_sampler_params sp = { .sampler = p->sampler, .schedule = p->schedule,
                              .steps = p->comfy ? p->schedule_steps : p->steps, .comfy = p->comfy,
                              .param = parametrization(m->info.prediction), .eta = p->eta,
                              .flow_mu = flow_mu(m, p),
                              .flow_table_size = m->info.family == SDW_FAMILY_FLUX_DEV ? 10000 : 0,
                              .flow_static_shift = sdw_family_is_sd3(m->info.family) };
    if (p->comfy) sdw_comfy_flow_sampling(m, p, &sp.flow_mu, &sp.flow_table_size);
    size_t n = (size_t)r.B * r.lc * r.h * r.w;
    float *x = malloc(n * sizeof *x);
    r.preview = malloc((size_t)r.h * r.w * 3 * sizeof(float));
    sdw_status s = (x && r.preview) ? SDW_OK : nomem();
    /* ComfyUI's per-step noise has a CPU generator of its own, seeded with
     * seed + 1 (default_noise_sampler) */
    sdw_rng rng;
    sdw_rng_init(&rng, p->comfy ? SDW_RNG_CPU : p->rng, p->comfy ? p->seed + 1 : p->seed);
    bool run_steps = true;
    if (s == SDW_OK) s = sdw_sampler_create(&sp, &r.sampler);
    if (s == SDW_OK) s = r.ops->prepare(&r);
    if (s == SDW_OK) s = p->comfy ? sdw_comfy_prepare(&r, x, &run_steps) : prepare_latents(&r, &rng, x);
    if (s == SDW_OK && run_steps)
        s = sdw_sampler_run(r.sampler, x, n, r.first_step, model_fn, &r, step_fn, &r, &rng);
    if (s == SDW_OK && p->comfy) sdw_comfy_finish(&r, x);
    bool decode_images = !(p->comfy && p->latents_out);
    /* Where memory is short the transformer's pages make room for the decode. */
    if (s == SDW_OK && decode_images) sdw_model_page_out(m, 't');
    if (s == SDW_OK && decode_images) s = decode(&r, x, images);
    if (s == SDW_OK)
        SDW_INFO("generated %d image%s %dx%d in %.2f s", r.B, r.B > 1 ? "s" : "", p->width, p->height, now() - r.t0);
    r.ops->release(&r);
    free(x);
    free(r.preview);
    free(r.mask_lat);
    free(r.masked_lat);
    free(r.image_lat);
    free(r.image_batch);
    free(r.keep);
    if (r.comfy_inpaint_noise != r.noise) free(r.comfy_inpaint_noise);
    free(r.noise);
    free(r.comfy_latent);
    sdw_sampler_free(r.sampler);
    /* Kept for the next run unless memory is short (page_out) or it has
     * grown to more than twice what this run needed. */
    if (!m->page_out && sdw_arena_held(&r.arena) <= 2 * r.arena.peak) m->kept = r.arena;
    else sdw_arena_free(&r.arena);
    return s;
}

/* ---------------------------------------------------------------- previews */

/* Linear latent -> RGB factors and biases (ComfyUI's latent_formats). */
static const float sd1_rgb[4][3] = {
    { 0.3512f, 0.2297f, 0.3227f }, { 0.3250f, 0.4974f, 0.2350f },
    { -0.2829f, 0.1762f, 0.2721f }, { -0.2120f, -0.2616f, -0.7177f },
};
static const float xl_rgb[4][3] = {
    { 0.3651f, 0.4232f, 0.4341f }, { -0.2533f, -0.0042f, 0.1068f },
    { 0.1076f, 0.1111f, -0.0362f }, { -0.3165f, -0.2492f, -0.2188f },
};
static const float flux_rgb[16][3] = {
    { -0.0346f, 0.0244f, 0.0681f }, { 0.0034f, 0.0210f, 0.0687f },  { 0.0275f, -0.0668f, -0.0433f },
    { -0.0174f, 0.0160f, 0.0617f }, { 0.0859f, 0.0721f, 0.0329f },  { 0.0004f, 0.0383f, 0.0115f },
    { 0.0405f, 0.0861f, 0.0915f },  { -0.0236f, -0.0185f, -0.0259f }, { -0.0245f, 0.0250f, 0.1180f },
    { 0.1008f, 0.0755f, -0.0421f }, { -0.0515f, 0.0201f, 0.0011f }, { 0.0428f, -0.0012f, -0.0036f },
    { 0.0817f, 0.0765f, 0.0749f },  { -0.1264f, -0.0522f, -0.1103f }, { -0.0280f, -0.0881f, -0.0499f },
    { -0.1262f, -0.0982f, -0.0778f },
};
static const float sd3_rgb[16][3] = {
    { -0.0922f, -0.0175f, 0.0749f }, { 0.0311f, 0.0633f, 0.0954f },   { 0.1994f, 0.0927f, 0.0458f },
    { 0.0856f, 0.0339f, 0.0902f },   { 0.0587f, 0.0272f, -0.0496f },  { -0.0006f, 0.1104f, 0.0309f },
    { 0.0978f, 0.0306f, 0.0427f },   { -0.0042f, 0.1038f, 0.1358f },  { -0.0194f, 0.0020f, 0.0669f },
    { -0.0488f, 0.0130f, -0.0268f }, { 0.0922f, 0.0988f, 0.0951f },   { -0.0278f, 0.0524f, -0.0542f },
    { 0.0332f, 0.0456f, 0.0895f },   { -0.0069f, -0.0030f, -0.0810f }, { -0.0596f, -0.0465f, -0.0293f },
    { -0.1448f, -0.1463f, -0.1189f },
};
static const float sd3_bias[3] = { 0.2394f, 0.2135f, 0.1925f };
static const float xl_bias[3] = { 0.1084f, -0.0175f, -0.0011f }, flux_bias[3] = { -0.0329f, -0.0718f, -0.0851f },
                   zero_bias[3] = { 0, 0, 0 };

void sdw_latent_preview(sdw_family f, const float *latents, int h, int w, float *rgb)
{
    const float (*k)[3] = sd1_rgb;
    const float *bias = zero_bias;
    int lc = 4;
    if (f == SDW_FAMILY_SDXL || f == SDW_FAMILY_SDXL_REFINER) {
        k = xl_rgb;
        bias = xl_bias;
    } else if (sdw_family_is_sd3(f)) {
        k = sd3_rgb;
        bias = sd3_bias;
        lc = 16;
    } else if (sdw_family_is_flux(f)) {
        k = flux_rgb;
        bias = flux_bias;
        lc = 16;
    }
    size_t hw = (size_t)h * w;
    for (size_t i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) {
            float v = bias[c];
            for (int l = 0; l < lc; l++) v += latents[l * hw + i] * k[l][c];
            rgb[i * 3 + c] = fminf(fmaxf((v + 1.0f) * 0.5f, 0.0f), 1.0f);
        }
}
