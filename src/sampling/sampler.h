/* sampler.h: noise schedules and samplers. A sampler owns its schedule
 * (timesteps, sigmas) and runs the denoising loop, calling back into the
 * pipeline for every model evaluation and after every step.
 *
 * Conventions, eps and v models (diffusers' discrete schedule, scaled-linear
 * betas 0.00085..0.012 over 1000 training steps): latents x live at noise
 * level sigma; the model is evaluated on scale_model_input(x) at a (possibly
 * fractional) timestep and returns its raw output (eps, or v for
 * v-prediction models) with classifier-free guidance already applied by the
 * pipeline.
 *
 * Flow-matching models (FLUX, SD3: rectified flow, ComfyUI's CONST model
 * sampling, diffusers' FlowMatchEulerDiscreteScheduler): x_sigma =
 * (1 - sigma) x0 + sigma noise with sigma in [0, 1]; the model sees x
 * unscaled at timestep sigma * 1000 and returns the velocity v = noise - x0
 * (denoised = x - sigma v). The sampler is layout-agnostic: FLUX's packed
 * latents are just n floats to it. */
#ifndef SDW_SAMPLING_SAMPLER_H
#define SDW_SAMPLING_SAMPLER_H
#include "sdw.h"
#include "sampling/rng.h"

typedef enum {
    SDW_SAMPLER_EULER, SDW_SAMPLER_EULER_A, SDW_SAMPLER_HEUN, SDW_SAMPLER_DPM2, SDW_SAMPLER_DPMPP_2M,
    SDW_SAMPLER_DPMPP_2S_A, SDW_SAMPLER_DPMPP_2M_SDE, SDW_SAMPLER_DDIM, SDW_SAMPLER_LCM, SDW_SAMPLER_PNDM,
    SDW_SAMPLER_LMS, SDW_SAMPLER_IPNDM, SDW_SAMPLER_COUNT
} sdw_sampler_kind;

/* beta: ComfyUI's beta(0.6, 0.6) quantiles of the model's sigma table.
 * flow: diffusers' FlowMatchEulerDiscrete schedule (flow models only). */
typedef enum {
    SDW_SCHEDULE_NORMAL, SDW_SCHEDULE_KARRAS, SDW_SCHEDULE_EXPONENTIAL, SDW_SCHEDULE_SGM_UNIFORM,
    SDW_SCHEDULE_SIMPLE, SDW_SCHEDULE_LEADING, SDW_SCHEDULE_TRAILING, SDW_SCHEDULE_BETA, SDW_SCHEDULE_FLOW,
    SDW_SCHEDULE_COUNT
} sdw_schedule_kind;

/* What the model predicts: eps, v (v-prediction), or the flow velocity. */
typedef enum { SDW_PARAM_EPS, SDW_PARAM_V, SDW_PARAM_FLOW } sdw_parametrization;

/* Our names ("euler_a", "dpm++2m", ...; "normal"/"discrete", "karras", ...),
 * the A1111 names ("Euler a", "DPM++ 2M"; "Karras", ...), and parsing of
 * either (case-insensitive). Parsing failures leave a message listing the
 * valid names. */
const char *sdw_sampler_name(sdw_sampler_kind k);
const char *sdw_sampler_a1111_name(sdw_sampler_kind k);
sdw_status sdw_sampler_parse(const char *s, sdw_sampler_kind *out);
const char *sdw_schedule_name(sdw_schedule_kind k);
const char *sdw_schedule_a1111_name(sdw_schedule_kind k);
sdw_status sdw_schedule_parse(const char *s, sdw_schedule_kind *out);

typedef struct {
    sdw_sampler_kind sampler;
    sdw_schedule_kind schedule;
    int steps;                 /* >= 1 */
    sdw_parametrization param;
    float eta;                 /* DDIM eta (0 = deterministic); ancestral samplers use 1 */
    /* Flow models: the shift, sigma(t) = e^mu / (e^mu + (1/t - 1)). FLUX dev:
     * mu from the image size (the caller's); schnell 0; SD3 ln 3 (shift 3). */
    double flow_mu;
    /* Flow models: entries of the sigma table ComfyUI's schedules (all but
     * flow) pick from, sigma(i / size) for i = 1..size. 0 = 1000
     * (ModelSamplingDiscreteFlow: SD3, FLUX schnell); ComfyUI's
     * ModelSamplingFlux (FLUX dev) has 10000. */
    int flow_table_size;
    /* Flow models, how the flow schedule lays its steps out: false = FLUX's
     * (diffusers with dynamic shifting: linspace(1, 1/N, N), then the shift
     * by mu); true = SD3's static shift S = e^mu (diffusers' shift config:
     * a linspace between the shifted training sigmas, shifted again). The
     * other schedules do not look at it. */
    bool flow_static_shift;
    /* ComfyUI's sampling (the workflow executor's KSampler; comfy/samplers.py,
     * comfy/k_diffusion/sampling.py): every sampler in k-diffusion's sigma
     * space (x = x0 + sigma eps, as ComfyUI has no other), dpm++2m /
     * dpm++2m_sde / lcm in their k-diffusion forms, ddim as ComfyUI's "ddim"
     * (its euler), lms landing on denoised at sigma 0; eps / v models on
     * ComfyUI's table with integer model timesteps (schedule_comfy.c); dpm2's
     * schedule laid out for one more step and its penultimate sigma dropped
     * (DISCARD_PENULTIMATE_SIGMA_SAMPLERS). pndm and the trailing and flow
     * schedules have no ComfyUI counterpart and are refused. The initial
     * noise is the caller's (ComfyUI's noise_scaling). */
    bool comfy;
} sdw_sampler_params;

typedef struct sdw_sampler sdw_sampler;
sdw_status sdw_sampler_create(const sdw_sampler_params *p, sdw_sampler **out);
void sdw_sampler_free(sdw_sampler *s);

/* The schedule after set_timesteps: n timesteps and n + 1 sigmas (ending in
 * 0). n is params.steps except for pndm (below) and the beta schedule, which
 * drops the steps that land on the same table entry (as ComfyUI does). */
int sdw_sampler_steps(const sdw_sampler *s);
const float *sdw_sampler_timesteps(const sdw_sampler *s);
const float *sdw_sampler_sigmas(const sdw_sampler *s);
/* The model sampling's sigma_max: the noise table's largest sigma (flow:
 * its last entry), which ComfyUI's max_denoise compares the first sigma to. */
float sdw_sampler_sigma_max(const sdw_sampler *s);
/* The factor pure noise is multiplied by to start txt2img. */
float sdw_sampler_init_noise_sigma(const sdw_sampler *s);
/* img2img / inpaint: the first step index for a denoising strength in (0, 1]
 * (diffusers: init_timestep = min(int(steps * strength), steps), start =
 * steps - init; flow models, diffusers' Flux / SD3 pipelines: start =
 * int(max(steps - min(steps * strength, steps), 0)) on the float product). */
int sdw_sampler_start_step(const sdw_sampler *s, float strength);
/* x = add_noise(x0, noise) at step index i (the level the loop starts from
 * at i): x0 + sigma noise, sqrt(ac) x0 + sqrt(1 - ac) noise (variance-
 * preserving samplers), or (1 - sigma) x0 + sigma noise (flow). */
void sdw_sampler_add_noise(const sdw_sampler *s, int step, const float *x0, const float *noise, float *x, size_t n);

/* Evaluates the model on x_in (already scaled for the model) at timestep t
 * (flow: sigma * 1000); writes the guided raw output (eps, v or the flow
 * velocity) to out. n floats each. */
typedef sdw_status (*sdw_model_fn)(void *user, const float *x_in, float t, float *out, size_t n);
/* Called after step i (0-based, of the full schedule) with the new latents;
 * may modify x in place (inpaint blending) or return non-OK to stop. */
typedef sdw_status (*sdw_step_fn)(void *user, int step, float *x, size_t n);

/* Runs steps [start, steps) on x (n floats, in place). Ancestral and SDE
 * samplers draw their noise from rng with one randn(n) per draw, after any
 * draws the caller made. */
sdw_status sdw_sampler_run(sdw_sampler *s, float *x, size_t n, int start, sdw_model_fn model, void *model_user,
                           sdw_step_fn on_step, void *step_user, sdw_rng *rng);

/* ---- additions ---- */

/* A1111's "Automatic" schedule of a sampler (karras for dpm2 and dpm++2m /
 * 2s_a, exponential for dpm++2m_sde, leading for ddim / pndm, normal else).
 * Each sampler lays normal / leading out as its diffusers scheduler does
 * (DPMSolver spaces steps + 1 points; lcm's normal and leading are both
 * LCMScheduler's own 50-step-origin schedule, at most 50 steps). */
sdw_schedule_kind sdw_sampler_default_schedule(sdw_sampler_kind k);
/* The same for a model of parametrisation p: flow models take the flow
 * schedule whatever the sampler. */
sdw_schedule_kind sdw_sampler_default_schedule_for(sdw_sampler_kind k, sdw_parametrization p);

/* Replaces the per-step noise source (default: sdw_rng_randn(rng, out, n)),
 * e.g. for a pipeline whose latents are not in the NCHW order torch draws in:
 * it draws NCHW and reorders. NULL restores the default. */
typedef void (*sdw_noise_fn)(void *user, sdw_rng *rng, float *out, size_t n);
void sdw_sampler_set_noise_fn(sdw_sampler *s, sdw_noise_fn fn, void *user);

/* The space x lives in, as diffusers keeps it: true for ddim, pndm, lcm,
 * dpm++2m and dpm++2m_sde on eps / v models (x = sqrt(ac) x0 + sqrt(1 - ac)
 * eps, model input x, init noise sigma 1); false for the sigma-space samplers
 * (x = x0 + sigma eps, model input x / sqrt(sigma^2 + 1)) and on flow models
 * (dpm++2m runs k-diffusion's form there, as ComfyUI). */
bool sdw_sampler_is_vp(const sdw_sampler *s);

/* Ends the schedule at level last (1 <= last <= steps): a run's last step
 * goes to sigmas[last], or to 0 unless keep_sigma (ComfyUI's
 * force_full_denoise), as KSampler.sample slices sigmas[:last + 1]. Sigma-
 * space samplers only (a variance-preserving form would need its own
 * alphas). */
sdw_status sdw_sampler_truncate(sdw_sampler *s, int last, bool keep_sigma);

/* Around every model evaluation of the sigma-space samplers (ComfyUI's
 * KSamplerX0Inpaint): called with output false on a copy of x that the
 * model then sees (the sampler's own x is left alone), and with output true
 * on the denoised estimate, both at the evaluation's sigma. The variance-
 * preserving forms refuse to run with a hook. NULL removes it. */
typedef void (*sdw_denoise_hook)(void *user, float sigma, bool output, float *x, size_t n);
void sdw_sampler_set_denoise_hook(sdw_sampler *s, sdw_denoise_hook fn, void *user);

/* Model evaluations sdw_sampler_run makes from step start (heun / dpm2 /
 * dpm++2s_a evaluate twice per step but the last). pndm, like diffusers'
 * PNDMScheduler, lists the second evaluation of its first step as a step of
 * its own: steps + 1 timesteps T0, T1, T1, T2, ... (so for it
 * sdw_sampler_steps is params.steps + 1 and start_step of level k >= 1 is
 * k + 1; a run cannot start at 1). */
int sdw_sampler_model_evals(const sdw_sampler *s, int start);
#endif
