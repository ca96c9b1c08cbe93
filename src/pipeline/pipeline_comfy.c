/* pipeline_comfy.c: a run in comfy mode, as ComfyUI's common_ksampler
 * (nodes.py) -> comfy.sample.sample -> KSampler.sample -> CFGGuider ->
 * KSAMPLER.sample (comfy/samplers.py) computes it:
 *
 *   sigmas   the schedule for schedule_steps; if last_step < its length,
 *            sigmas[:last_step + 1] with the last forced to 0 unless the
 *            noise is left over (force_full_denoise); then sigmas[first_step:]
 *            (KSampler's denoise: the tail of last - first steps), or, when
 *            that leaves no step, the latent returned untouched;
 *   noise    torch.manual_seed(seed); randn(latent shape) on the CPU (zeros
 *            when add_noise is off: disable_noise);
 *   x        model_sampling.noise_scaling(sigmas[0], noise, latent,
 *            max_denoise): eps / v: latent + noise * sqrt(1 + s^2) when
 *            sigmas[0] is (close to) sigma_max, else latent + noise * s;
 *            flow (CONST): s * noise + (1 - s) * latent;
 *   mask     KSamplerX0Inpaint around every model call: x * m + noise_scaling
 *            (sigma, noise, latent) * (1 - m) in, denoised * m + latent *
 *            (1 - m) out (ComfyUI's "ddim", euler with inpaint_options
 *            random, blends with a randn drawn from seed + 1 instead);
 *   9-ch     concat_cond: mask = round(noise mask) (ones without one),
 *            masked image = the latent (without a mask:
 *            blank_inpaint_image_like, the latents of a black image);
 *   per-step ancestral / SDE noise: default_noise_sampler's own generator,
 *            seeded with seed + 1 on the CPU (pipeline.c seeds it);
 *   end      inverse_noise_scaling(sigmas[-1]): flow latents / (1 - s);
 *   model sampling   ModelSamplingSD3 / ModelSamplingFlux replace a flow
 *            model's shift (sdw_comfy_flow_sampling); percent_to_sigma of
 *            the model sampling turns ConditioningSetTimestepRange's percents
 *            into sigmas (cond_list.c), and every model evaluation's sigma
 *            reaches the denoiser through the hook (r->comfy_sigma). */
#include "pipeline/pipeline_comfy.h"
#include "core/error.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool any_range(const sdw_pipeline_params *p)
{
    for (int i = 0; i < p->n_positive; i++)
        if (p->positive[i].timestep_range) return true;
    for (int i = 0; i < p->n_negative; i++)
        if (p->negative[i].timestep_range) return true;
    return false;
}

/* ModelSamplingSD3 / ModelSamplingFlux fit the models whose timestep scale
 * they keep (ComfyUI applies either to any model, and a FLUX model under
 * ModelSamplingSD3's multiplier 1000 denoises at timesteps 1000 times too
 * large). */
static sdw_status validate_sampling(const sdw_model *m, const sdw_pipeline_params *p)
{
    const sdw_family f = m->info.family;
    const bool flux = f == SDW_FAMILY_FLUX_DEV || f == SDW_FAMILY_FLUX_SCHNELL;
    if (p->comfy_sampling_sd3 && p->comfy_sampling_flux)
        return sdw_fail(SDW_ERR_INVALID_ARG, "comfy mode: ModelSamplingSD3 and ModelSamplingFlux on one model");
    if (p->comfy_sampling_sd3 && !sdw_family_is_sd3(f))
        return sdw_fail(SDW_ERR_INVALID_ARG, "ModelSamplingSD3 applies to SD3 / SD3.5 models, and this is %s%s",
                        sdw_family_name(f), flux ? " (use ModelSamplingFlux)" : "");
    if (p->comfy_sampling_flux && !flux)
        return sdw_fail(SDW_ERR_INVALID_ARG, "ModelSamplingFlux applies to FLUX models, and this is %s%s",
                        sdw_family_name(f), sdw_family_is_sd3(f) ? " (use ModelSamplingSD3)" : "");
    if (p->comfy_sampling_sd3 && !(p->comfy_shift > 0 && p->comfy_shift <= 100))
        return sdw_fail(SDW_ERR_INVALID_ARG, "ModelSamplingSD3: shift must be in (0, 100] (got %g)", p->comfy_shift);
    if (p->comfy_sampling_flux && !(fabs(p->comfy_shift) <= 20))
        return sdw_fail(SDW_ERR_INVALID_ARG, "ModelSamplingFlux: the shift (mu) %g is outside [-20, 20]",
                        p->comfy_shift);
    return SDW_OK;
}

static sdw_status validate_ranges(const sdw_cond_entry *e, int n, const char *side)
{
    for (int i = 0; i < n; i++)
        if (e[i].timestep_range && !(e[i].start_percent >= 0 && e[i].start_percent <= 1 && e[i].end_percent >= 0 &&
                                     e[i].end_percent <= 1))
            return sdw_fail(SDW_ERR_INVALID_ARG, "conditioning %s[%d]: timestep range %g..%g must lie in 0..1", side,
                            i, e[i].start_percent, e[i].end_percent);
    return SDW_OK;
}

sdw_status sdw_comfy_validate(const sdw_model *m, const sdw_pipeline_params *p)
{
    SDW_TRY(validate_sampling(m, p));
    SDW_TRY(validate_ranges(p->positive, p->n_positive, "positive"));
    SDW_TRY(validate_ranges(p->negative, p->n_negative, "negative"));
    if (p->init_image || p->mask)
        return sdw_fail(SDW_ERR_INVALID_ARG, "comfy mode takes init_latents and noise_mask, not init_image / mask");
    if (p->schedule_steps < 1 || p->schedule_steps > 1000)
        return sdw_fail(SDW_ERR_INVALID_ARG, "schedule_steps must be in 1..1000 (got %d)", p->schedule_steps);
    if (p->first_step < 0 || p->first_step >= p->last_step || p->last_step > p->schedule_steps)
        return sdw_fail(SDW_ERR_INVALID_ARG,
                        "comfy steps: need 0 <= first_step < last_step <= schedule_steps (got first %d, last %d, "
                        "schedule %d)",
                        p->first_step, p->last_step, p->schedule_steps);
    if (m->info.inpaint && sdw_vae_get_config(m->vae)->latent_channels != 4)
        return sdw_fail(SDW_ERR_INVALID_ARG, "comfy mode: inpainting models with %d latent channels are not supported",
                        sdw_vae_get_config(m->vae)->latent_channels);
    return SDW_OK;
}

void sdw_comfy_flow_sampling(const sdw_model *m, const sdw_pipeline_params *p, double *mu, int *table)
{
    (void)m;
    if (p->comfy_sampling_sd3) {
        *mu = log(p->comfy_shift);
        *table = 1000;
    } else if (p->comfy_sampling_flux) {
        *mu = p->comfy_shift;
        *table = 10000;
    }
}

/* ModelSamplingDiscrete.sigma(t) of the eps / v table (schedule_comfy.c's,
 * float32 log sigmas of a float64 cumprod), log-linear between entries. */
static float discrete_sigma(float t)
{
    const double start = sqrt(0.00085), end = sqrt(0.012), step = (end - start) / 999;
    t = t < 0 ? 0 : t > 999 ? 999 : t;
    const int lo = (int)floorf(t), hi = (int)ceilf(t);
    double acc = 1.0;
    float log_lo = 0, log_hi = 0;
    for (int i = 0; i <= hi; i++) {
        const double b = i < 500 ? start + step * i : end - step * (999 - i);
        acc *= 1.0 - b * b;
        const float ls = (float)log(sqrt((1.0 - acc) / acc));
        if (i == lo) log_lo = ls;
        if (i == hi) log_hi = ls;
    }
    const float w = t - (float)lo;
    return expf((1.0f - w) * log_lo + w * log_hi);
}

double sdw_comfy_percent_to_sigma(const sdw_model *m, const sdw_pipeline_params *p, double percent)
{
    const bool flow = m->info.prediction == SDW_PREDICTION_FLOW;
    if (percent <= 0.0) return flow ? 1.0 : 999999999.9;
    if (percent >= 1.0) return 0.0;
    const double t = 1.0 - percent;
    if (!flow) return discrete_sigma((float)(t * 999.0));   /* sigma(torch.tensor(percent * 999.0)).item() */
    /* ModelSamplingFlux: flux_time_shift(mu, 1, t); ModelSamplingDiscreteFlow:
     * time_snr_shift(shift, t); in Python floats */
    const bool flux_sampling = p->comfy_sampling_flux || (!p->comfy_sampling_sd3 && m->info.family == SDW_FAMILY_FLUX_DEV);
    if (flux_sampling) {
        const double mu = p->comfy_sampling_flux ? p->comfy_shift : 1.15;
        return exp(mu) / (exp(mu) + (1.0 / t - 1.0));
    }
    const double shift = p->comfy_sampling_sd3 ? p->comfy_shift
                         : sdw_family_is_sd3(m->info.family) ? (double)m->info.flow_shift : 1.0;
    return shift == 1.0 ? t : shift * t / (1.0 + (shift - 1.0) * t);
}

/* Every evaluation's sigma for the conditioning lists' timestep ranges. */
static void sigma_hook(void *user, float sigma, bool output, float *x, size_t n)
{
    (void)x, (void)n;
    sdw_run *r = user;
    if (!output) r->comfy_sigma = sigma;
}

/* noise_scaling without max_denoise, as scale_latent_inpaint calls it. */
static float scaled(bool flow, float sigma, float noise, float latent)
{
    return flow ? sigma * noise + (1.0f - sigma) * latent : noise * sigma + latent;
}

/* KSamplerX0Inpaint: keep the region outside the mask on the latent. */
static void inpaint_hook(void *user, float sigma, bool output, float *x, size_t n)
{
    sdw_run *r = user;
    sigma_hook(user, sigma, output, x, n);
    const float *mask = r->p->noise_mask, *lat = r->comfy_latent, *noise = r->comfy_inpaint_noise;
    const bool flow = r->m->info.prediction == SDW_PREDICTION_FLOW;
    const size_t hw = (size_t)r->h * r->w;
    for (size_t i = 0; i < n; i++) {
        const float mk = mask[i % hw], keep = 1.0f - mk;
        x[i] = output ? x[i] * mk + lat[i] * keep : x[i] * mk + scaled(flow, sigma, noise[i], lat[i]) * keep;
    }
}

/* concat_cond of a 9-channel inpainting model (one [lc, h, w] for the batch). */
static sdw_status inpaint_inputs(sdw_run *r)
{
    const size_t hw = (size_t)r->h * r->w, per = (size_t)r->lc * hw;
    const float *nm = r->p->noise_mask;
    r->mask_lat = malloc(hw * sizeof(float));
    r->masked_lat = malloc(per * sizeof(float));
    if (!r->mask_lat || !r->masked_lat) return sdw_pipeline_nomem();
    for (size_t i = 0; i < hw; i++) r->mask_lat[i] = nm ? rintf(nm[i]) : 1.0f;   /* torch.round: half to even */
    if (nm) {
        for (int b = 1; b < r->B; b++)
            if (memcmp(r->comfy_latent, r->comfy_latent + (size_t)b * per, per * sizeof(float)))
                return sdw_fail(SDW_ERR_INVALID_ARG, "comfy mode: a 9-channel inpainting model takes one masked "
                                                     "image for the batch, and the batch's latents differ");
        memcpy(r->masked_lat, r->comfy_latent, per * sizeof(float));
    } else {
        /* blank_inpaint_image_like: "zero" in pixel space in latent space */
        static const float blank[4] = { 0.8223f, -0.6876f, 0.6364f, 0.1380f };
        for (int c = 0; c < 4; c++)
            for (size_t i = 0; i < hw; i++) r->masked_lat[c * hw + i] = blank[c];
    }
    return SDW_OK;
}

sdw_status sdw_comfy_prepare(sdw_run *r, float *x, bool *run)
{
    const sdw_pipeline_params *p = r->p;
    const size_t n = (size_t)r->B * r->lc * r->h * r->w;
    const bool flow = r->m->info.prediction == SDW_PREDICTION_FLOW;
    *run = false;
    if (!(r->noise = malloc(n * sizeof(float))) || !(r->comfy_latent = malloc(n * sizeof(float))))
        return sdw_pipeline_nomem();
    if (p->init_latents) memcpy(r->comfy_latent, p->init_latents, n * sizeof(float));
    else memset(r->comfy_latent, 0, n * sizeof(float));

    /* KSampler.sample's slicing. The schedule may have other than
     * schedule_steps levels (ddim_uniform, beta): an end at schedule_steps
     * is ComfyUI's "no last_step" (KSampler) or one past the list's end
     * (KSamplerAdvanced's default 10000), and cuts nothing. */
    const int levels = sdw_sampler_steps(r->sampler);
    if (p->last_step < p->schedule_steps && p->last_step < levels)
        SDW_TRY(sdw_sampler_truncate(r->sampler, p->last_step, p->leftover_noise));
    if (p->denoise_tail) {
        const int from_end = levels - (p->last_step - p->first_step);
        r->first_step = from_end > 0 ? from_end : 0;
    } else {
        r->first_step = p->first_step;
    }
    *run = r->first_step < sdw_sampler_steps(r->sampler);

    sdw_rng rng;
    sdw_rng_init(&rng, SDW_RNG_CPU, p->seed);
    if (p->add_noise) sdw_rng_randn(&rng, r->noise, n);
    else memset(r->noise, 0, n * sizeof(float));
    int64_t shape[4] = { r->B, r->lc, r->h, r->w };
    sdw_pipeline_observe(r, "initial_noise", -1, r->noise, 4, shape);
    if (r->m->info.inpaint) SDW_TRY(inpaint_inputs(r));
    if (!*run) {
        memcpy(x, r->comfy_latent, n * sizeof(float));
        return SDW_OK;
    }
    if (p->noise_mask) {
        if (p->sampler == SDW_SAMPLER_DDIM) {
            /* inpaint_options random: torch.manual_seed(seed + 1), randn(noise shape) */
            if (!(r->comfy_inpaint_noise = malloc(n * sizeof(float)))) return sdw_pipeline_nomem();
            sdw_rng_init(&rng, SDW_RNG_CPU, p->seed + 1);
            sdw_rng_randn(&rng, r->comfy_inpaint_noise, n);
        }
        if (!r->comfy_inpaint_noise) r->comfy_inpaint_noise = r->noise;
        sdw_sampler_set_denoise_hook(r->sampler, inpaint_hook, r);
    } else if (any_range(p)) {
        sdw_sampler_set_denoise_hook(r->sampler, sigma_hook, r);
    }
    r->comfy_sigma = sdw_sampler_sigmas(r->sampler)[r->first_step];

    const float s0 = sdw_sampler_sigmas(r->sampler)[r->first_step], smax = sdw_sampler_sigma_max(r->sampler);
    const bool max_denoise = fabs((double)smax - s0) <= 1e-5 * fmax(fabs(smax), fabs(s0)) || s0 > smax;
    const float *noise = r->noise, *lat = r->comfy_latent;
    if (flow) {
        for (size_t i = 0; i < n; i++) x[i] = s0 * noise[i] + (1.0f - s0) * lat[i];
    } else {
        const float f = max_denoise ? sqrtf(1.0f + s0 * s0) : s0;
        for (size_t i = 0; i < n; i++) x[i] = noise[i] * f + lat[i];
    }
    sdw_pipeline_observe(r, "initial_latents", -1, x, 4, shape);
    /* the sigmas this run steps through (golden tests of the slicing) */
    int64_t ns[1] = { sdw_sampler_steps(r->sampler) - r->first_step + 1 };
    sdw_pipeline_observe(r, "comfy_sigmas", -1, sdw_sampler_sigmas(r->sampler) + r->first_step, 1, ns);
    return SDW_OK;
}

void sdw_comfy_finish(sdw_run *r, float *x)
{
    const size_t n = (size_t)r->B * r->lc * r->h * r->w;
    if (r->m->info.prediction == SDW_PREDICTION_FLOW && r->first_step < sdw_sampler_steps(r->sampler)) {
        const float last = sdw_sampler_sigmas(r->sampler)[sdw_sampler_steps(r->sampler)];
        if (last != 0.0f)
            for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f - last);
    }
    if (r->p->latents_out) memcpy(r->p->latents_out, x, n * sizeof(float));
}
