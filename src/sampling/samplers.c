/* samplers.c: the sampler object (schedule, init noise, add_noise, img2img
 * start), the name tables, and the one-step samplers: euler, euler_a, heun,
 * dpm2, dpm++2s_a (sigma space), ddim and lcm (variance-preserving space).
 * The multistep ones (dpm++2m, dpm++2m_sde, pndm, lms, ipndm) are in
 * samplers_multistep.c.
 *
 * Each follows the diffusers 0.27 scheduler it reproduces operation by
 * operation in float32 (EulerDiscrete, EulerAncestralDiscrete, DDIM, LCM), or
 * k-diffusion's sampler where diffusers has none (heun, dpm2, dpm++2s_a
 * match HeunDiscrete / KDPM2Discrete's math); a run calls the model once per
 * evaluation and the step callback once per step of the schedule.
 *
 * On flow-matching models the sigma-space samplers run as ComfyUI runs them
 * on its CONST model sampling (denoised = x - sigma v, so (x - denoised) /
 * sigma is the velocity): euler is FlowMatchEulerDiscrete's x + dt v, and
 * the ancestral ones take ComfyUI's _RF forms, whose noise keeps x on the
 * (1 - sigma) x0 + sigma noise line. ddim, lcm, pndm and dpm++2m_sde, whose
 * updates assume the variance-preserving space, are refused there.
 *
 * Comfy mode (params.comfy, the workflow executor) runs every sampler in
 * sigma space as ComfyUI does: ddim is euler, lcm k-diffusion's sample_lcm,
 * and a denoise hook (KSamplerX0Inpaint's blending) may wrap every model
 * evaluation; its table and schedules are in schedule_comfy.c. */
#include "sampling/sampler_internal.h"
#include "core/error.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- names ---- */

static const char *const sampler_names[SDW_SAMPLER_COUNT] = {
    "euler", "euler_a", "heun", "dpm2", "dpm++2m", "dpm++2s_a", "dpm++2m_sde", "ddim", "lcm", "pndm", "lms",
    "ipndm",
};
/* A1111 has no iPNDM: that label is ours */
static const char *const sampler_a1111[SDW_SAMPLER_COUNT] = {
    "Euler", "Euler a", "Heun", "DPM2", "DPM++ 2M", "DPM++ 2S a", "DPM++ 2M SDE", "DDIM", "LCM", "PLMS", "LMS",
    "iPNDM",
};
/* ComfyUI / k-diffusion spellings */
static const sdw_name_alias sampler_aliases[] = {
    {"euler_ancestral", SDW_SAMPLER_EULER_A},   {"k_euler", SDW_SAMPLER_EULER},
    {"k_euler_a", SDW_SAMPLER_EULER_A},         {"k_euler_ancestral", SDW_SAMPLER_EULER_A},
    {"k_heun", SDW_SAMPLER_HEUN},               {"dpm_2", SDW_SAMPLER_DPM2},
    {"k_dpm_2", SDW_SAMPLER_DPM2},              {"dpmpp_2m", SDW_SAMPLER_DPMPP_2M},
    {"k_dpmpp_2m", SDW_SAMPLER_DPMPP_2M},       {"dpmpp_2s_ancestral", SDW_SAMPLER_DPMPP_2S_A},
    {"k_dpmpp_2s_a", SDW_SAMPLER_DPMPP_2S_A},   {"dpmpp_2m_sde", SDW_SAMPLER_DPMPP_2M_SDE},
    {"k_dpmpp_2m_sde", SDW_SAMPLER_DPMPP_2M_SDE}, {"plms", SDW_SAMPLER_PNDM},
    {"k_lms", SDW_SAMPLER_LMS},                 {"k_ipndm", SDW_SAMPLER_IPNDM},
};

const char *sdw_sampler_name(sdw_sampler_kind k)
{
    return (unsigned)k < SDW_SAMPLER_COUNT ? sampler_names[k] : "unknown";
}

const char *sdw_sampler_a1111_name(sdw_sampler_kind k)
{
    return (unsigned)k < SDW_SAMPLER_COUNT ? sampler_a1111[k] : "unknown";
}

sdw_status sdw_lookup_name(const char *what, const char *s, const char *const *names, const char *const *a1111,
                           int count, const sdw_name_alias *aliases, size_t n_aliases, int *out)
{
    if (s) {
        for (int k = 0; k < count; k++)
            if (!strcasecmp(s, names[k]) || !strcasecmp(s, a1111[k])) {
                *out = k;
                return SDW_OK;
            }
        for (size_t i = 0; i < n_aliases; i++)
            if (!strcasecmp(s, aliases[i].alias)) {
                *out = aliases[i].kind;
                return SDW_OK;
            }
    }
    char list[512] = "";
    size_t len = 0;
    for (int k = 0; k < count && len < sizeof list; k++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s (%s)", k ? ", " : "", names[k], a1111[k]);
    return sdw_fail(SDW_ERR_INVALID_ARG, "unknown %s '%s'; valid: %s", what, s ? s : "(null)", list);
}

sdw_status sdw_sampler_parse(const char *s, sdw_sampler_kind *out)
{
    int k;
    SDW_TRY(sdw_lookup_name("sampler", s, sampler_names, sampler_a1111, SDW_SAMPLER_COUNT, sampler_aliases,
                            sizeof sampler_aliases / sizeof *sampler_aliases, &k));
    *out = (sdw_sampler_kind)k;
    return SDW_OK;
}

sdw_schedule_kind sdw_sampler_default_schedule(sdw_sampler_kind k)
{
    switch (k) {
    case SDW_SAMPLER_DPM2: case SDW_SAMPLER_DPMPP_2M: case SDW_SAMPLER_DPMPP_2S_A: return SDW_SCHEDULE_KARRAS;
    case SDW_SAMPLER_DPMPP_2M_SDE: return SDW_SCHEDULE_EXPONENTIAL;
    case SDW_SAMPLER_DDIM: case SDW_SAMPLER_PNDM: return SDW_SCHEDULE_LEADING;
    default: return SDW_SCHEDULE_NORMAL;
    }
}

sdw_schedule_kind sdw_sampler_default_schedule_for(sdw_sampler_kind k, sdw_parametrization p)
{
    return p == SDW_PARAM_FLOW ? SDW_SCHEDULE_FLOW : sdw_sampler_default_schedule(k);
}

/* ---- the sampler object ---- */

static sdw_timestep_style style_of(sdw_sampler_kind k)
{
    switch (k) {
    case SDW_SAMPLER_DPMPP_2M: case SDW_SAMPLER_DPMPP_2M_SDE: return SDW_STYLE_DPM;
    case SDW_SAMPLER_DDIM: case SDW_SAMPLER_PNDM: return SDW_STYLE_DDIM;
    case SDW_SAMPLER_LCM: return SDW_STYLE_LCM;
    default: return SDW_STYLE_K;
    }
}

static bool kind_is_vp(sdw_sampler_kind k, bool flow, bool comfy)
{
    return !flow && !comfy && (k == SDW_SAMPLER_DDIM || k == SDW_SAMPLER_PNDM || k == SDW_SAMPLER_LCM ||
                     k == SDW_SAMPLER_DPMPP_2M || k == SDW_SAMPLER_DPMPP_2M_SDE);
}

/* What a flow model can run: the samplers whose update needs only denoised
 * in sigma space, on the schedules that do not space discrete timesteps. */
static sdw_status check_flow(const sdw_sampler_params *p)
{
    switch (p->sampler) {
    case SDW_SAMPLER_DDIM: case SDW_SAMPLER_LCM:
        if (p->comfy) break;   /* ComfyUI's ddim is euler; its lcm renoises with the flow's noise_scaling */
        /* fall through */
    case SDW_SAMPLER_PNDM: case SDW_SAMPLER_DPMPP_2M_SDE:
        return sdw_fail(SDW_ERR_INVALID_ARG,
                        "sampler: %s assumes the variance-preserving noise of eps / v models and does not run on "
                        "flow-matching models (FLUX, SD3); use euler, euler_a, heun, dpm2, dpm++2m, dpm++2s_a, "
                        "lms or ipndm",
                        sdw_sampler_name(p->sampler));
    default: break;
    }
    if (!isfinite(p->flow_mu) || fabs(p->flow_mu) > 20)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler: flow shift mu %g out of range [-20, 20]", p->flow_mu);
    if (p->flow_table_size != 0 && (p->flow_table_size < 2 || p->flow_table_size > 100000))
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler: flow table size %d out of range [2, 100000]",
                        p->flow_table_size);
    return SDW_OK;
}

/* ComfyUI lays dpm2's schedule out for one more step and drops the
 * penultimate sigma (KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS). */
static void drop_penultimate(sdw_sampler *s)
{
    const int L = s->levels;
    if (L < 2) return;
    s->sigmas[L - 1] = s->sigmas[L];
    s->acp[L - 1] = s->acp[L];
    s->levels = L - 1;
}

/* The schedule of p into s (timesteps, sigmas, acp; s->levels). */
static sdw_status build_schedule(sdw_sampler *s, const sdw_sampler_params *p)
{
    const bool discard = p->comfy && p->sampler == SDW_SAMPLER_DPM2;
    const int steps = discard ? p->steps + 1 : p->steps;
    if (s->flow) {
        /* acp is the variance-preserving samplers' and unused here */
        for (int i = 0; i <= steps; i++) s->acp[i] = 1.0f;
        SDW_TRY(sdw_flow_schedule_build(&s->shift, p->schedule, steps, s->timesteps, s->sigmas, &s->levels));
    } else if (p->comfy) {
        SDW_TRY(sdw_comfy_schedule_build(&s->tab, p->schedule, steps, s->timesteps, s->sigmas, s->acp, &s->levels));
    } else {
        return sdw_schedule_build(&s->tab, p->schedule, style_of(p->sampler), p->steps, s->timesteps, s->sigmas,
                                  s->acp, &s->levels);
    }
    if (discard) drop_penultimate(s);
    return SDW_OK;
}

/* What ComfyUI cannot run (comfy mode). */
static sdw_status check_comfy(const sdw_sampler_params *p)
{
    if (p->sampler == SDW_SAMPLER_PNDM)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler: ComfyUI has no pndm (plms) sampler");
    if (p->schedule == SDW_SCHEDULE_TRAILING || p->schedule == SDW_SCHEDULE_FLOW)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler: ComfyUI has no %s schedule", sdw_schedule_name(p->schedule));
    return SDW_OK;
}

sdw_status sdw_sampler_create(const sdw_sampler_params *p, sdw_sampler **out)
{
    if (!out) return sdw_fail(SDW_ERR_INVALID_ARG, "sampler: no output handle");
    *out = NULL;
    if (!p) return sdw_fail(SDW_ERR_INVALID_ARG, "sampler: no parameters");
    if ((unsigned)p->sampler >= SDW_SAMPLER_COUNT)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler: unknown kind %d", (int)p->sampler);
    if ((unsigned)p->schedule >= SDW_SCHEDULE_COUNT)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler: unknown schedule %d", (int)p->schedule);
    if ((unsigned)p->param > SDW_PARAM_FLOW)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler: unknown parametrisation %d", (int)p->param);
    if (p->param == SDW_PARAM_FLOW) SDW_TRY(check_flow(p));
    if (p->comfy) SDW_TRY(check_comfy(p));
    if (p->steps < 1 || p->steps > SDW_SAMPLER_MAX_STEPS)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler: steps %d out of range [1, %d]", p->steps,
                        SDW_SAMPLER_MAX_STEPS);
    if (!isfinite(p->eta) || p->eta < 0)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler: eta %g must be finite and >= 0", (double)p->eta);
    if (p->sampler == SDW_SAMPLER_LCM && !p->comfy &&
        (p->schedule == SDW_SCHEDULE_NORMAL || p->schedule == SDW_SCHEDULE_LEADING) && p->steps > 50)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler: lcm takes at most 50 steps on its own schedule (got %d)",
                        p->steps);
    sdw_sampler *s = calloc(1, sizeof *s);
    if (!s) return sdw_fail(SDW_ERR_NOMEM, "sampler: out of memory");
    s->p = *p;
    s->flow = p->param == SDW_PARAM_FLOW;
    s->shift.mu = p->flow_mu;
    s->shift.size = p->flow_table_size ? p->flow_table_size : 1000;
    s->shift.static_shift = p->flow_static_shift;
    if (p->comfy) sdw_noise_table_init_comfy(&s->tab);
    else sdw_noise_table_init(&s->tab);
    /* room for pndm's extra entry, dpm2's discarded one, ComfyUI's ddim_uniform's extra levels */
    const size_t room = p->comfy ? SDW_TRAIN_STEPS + 2 : (size_t)p->steps + 2;
    s->timesteps = malloc(room * sizeof *s->timesteps);
    s->sigmas = malloc(room * sizeof *s->sigmas);
    s->acp = malloc(room * sizeof *s->acp);
    if (!s->timesteps || !s->sigmas || !s->acp) {
        sdw_sampler_free(s);
        return sdw_fail(SDW_ERR_NOMEM, "sampler: out of memory");
    }
    sdw_status st = build_schedule(s, p);
    if (st != SDW_OK) {
        sdw_sampler_free(s);
        return st;
    }
    const int levels = s->levels;
    /* pndm lists its first step's second evaluation as a step of its own */
    s->n = p->sampler == SDW_SAMPLER_PNDM && levels >= 2 ? levels + 1 : levels;
    /* DDIM / PNDM land on alphas_cumprod[0] (set_alpha_to_one False, SD's config) */
    bool to_t0 = p->sampler == SDW_SAMPLER_DDIM || p->sampler == SDW_SAMPLER_PNDM;
    s->acp[levels] = to_t0 ? s->tab.alphas_cumprod[0] : 1.0f;
    if (s->n > levels) {
        /* PNDMScheduler's plms_timesteps: T0, T1, T1, T2, ..., T_last */
        memmove(s->timesteps + 2, s->timesteps + 1, (size_t)(levels - 1) * sizeof *s->timesteps);
        memmove(s->sigmas + 2, s->sigmas + 1, (size_t)levels * sizeof *s->sigmas);
        memmove(s->acp + 2, s->acp + 1, (size_t)levels * sizeof *s->acp);
    }
    s->vp = kind_is_vp(p->sampler, s->flow, p->comfy);
    float smax = 0;
    for (int i = 0; i <= s->n; i++) smax = s->sigmas[i] > smax ? s->sigmas[i] : smax;
    /* EulerDiscrete: max sigma for linspace / trailing spacing, sqrt(max^2 + 1)
     * for leading; flow: pure noise is sigma 1 */
    s->init_noise_sigma = s->vp || s->flow ? 1.0f
                          : p->schedule == SDW_SCHEDULE_LEADING ? sqrtf(smax * smax + 1.0f)
                                                                : smax;
    *out = s;
    return SDW_OK;
}

void sdw_sampler_free(sdw_sampler *s)
{
    if (!s) return;
    free(s->timesteps);
    free(s->sigmas);
    free(s->acp);
    free(s);
}

int sdw_sampler_steps(const sdw_sampler *s) { return s->n; }
const float *sdw_sampler_timesteps(const sdw_sampler *s) { return s->timesteps; }
const float *sdw_sampler_sigmas(const sdw_sampler *s) { return s->sigmas; }
float sdw_sampler_init_noise_sigma(const sdw_sampler *s) { return s->init_noise_sigma; }
bool sdw_sampler_is_vp(const sdw_sampler *s) { return s->vp; }

float sdw_sampler_sigma_max(const sdw_sampler *s)
{
    return s->flow ? sdw_flow_sigma(&s->shift, 1.0f) : s->tab.sigmas[SDW_TRAIN_STEPS - 1];
}

void sdw_sampler_set_noise_fn(sdw_sampler *s, sdw_noise_fn fn, void *user)
{
    s->noise_fn = fn;
    s->noise_user = user;
}

void sdw_sampler_set_denoise_hook(sdw_sampler *s, sdw_denoise_hook fn, void *user)
{
    s->hook = fn;
    s->hook_user = user;
}

sdw_status sdw_sampler_truncate(sdw_sampler *s, int last, bool keep_sigma)
{
    if (s->vp)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler: %s runs in the variance-preserving space; only sigma-space "
                                             "samplers end early", sdw_sampler_name(s->p.sampler));
    if (last < 1 || last > s->n)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler: last step %d out of range [1, %d]", last, s->n);
    if (!keep_sigma) s->sigmas[last] = 0.0f;
    s->n = s->levels = last;
    return SDW_OK;
}

/* The double a user typing the float's shortest decimal form into Python
 * would have passed (0.7f -> 0.7), so int(steps * strength) agrees with
 * diffusers at the boundaries (10 * 0.7 = 7.000000000000001 -> 7). */
static double shortest_double(float f)
{
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f) return d;
    }
    return f;
}

int sdw_sampler_start_step(const sdw_sampler *s, float strength)
{
    int steps = s->levels, k;
    if (!(strength > 0)) k = steps;
    else if (strength >= 1) k = 0;
    else if (s->flow) {
        /* the Flux / SD3 pipelines truncate only the difference: 10 x 0.75 -> 2 */
        double init = steps * shortest_double(strength);
        double rest = steps - (init > steps ? steps : init);
        k = (int)(rest > 0 ? rest : 0);
    } else {
        double init = floor(steps * shortest_double(strength));
        k = steps - (init > steps ? steps : (int)init);
    }
    /* pndm: the entry of level k in its listing (level 1 is entry 2) */
    return s->n > s->levels && k > 0 ? k + 1 : k;
}

void sdw_sampler_add_noise(const sdw_sampler *s, int step, const float *x0, const float *noise, float *x, size_t n)
{
    if (step < 0) step = 0;
    if (step >= s->n) {
        if (x != x0) memmove(x, x0, n * sizeof *x);
        return;
    }
    const float sigma = s->sigmas[step];
    if (s->flow) {
        /* FlowMatchEulerDiscreteScheduler.scale_noise */
        const float keep = 1.0f - sigma;
        for (size_t i = 0; i < n; i++) x[i] = sigma * noise[i] + keep * x0[i];
    } else if (!s->vp) {
        for (size_t i = 0; i < n; i++) x[i] = x0[i] + noise[i] * sigma;
    } else if (style_of(s->p.sampler) == SDW_STYLE_DPM) {
        const float alpha = 1.0f / sqrtf(sigma * sigma + 1.0f), sigma_t = sigma * alpha;
        for (size_t i = 0; i < n; i++) x[i] = alpha * x0[i] + sigma_t * noise[i];
    } else {
        const float ac = s->acp[step], sa = sqrtf(ac), sb = sqrtf(1.0f - ac);
        for (size_t i = 0; i < n; i++) x[i] = sa * x0[i] + sb * noise[i];
    }
}

int sdw_sampler_model_evals(const sdw_sampler *s, int start)
{
    if (start < 0) start = 0;
    int m = s->n - start, evals = 0;
    if (m <= 0) return 0;
    switch (s->p.sampler) {
    case SDW_SAMPLER_HEUN: case SDW_SAMPLER_DPM2: case SDW_SAMPLER_DPMPP_2S_A:
        for (int i = start; i < s->n; i++) evals += s->sigmas[i + 1] > 0 ? 2 : 1;
        return evals;
    default: return m;
    }
}

/* ---- the run context ---- */

/* The model's denoised estimate at sigma, as its model sampling computes it. */
static sdw_status denoise_plain(sdw_run_ctx *c, const float *x, float sigma, float t, float *x0)
{
    const size_t n = c->n;
    const float *out = c->out;
    if (c->s->flow) {
        /* CONST: the model sees x itself; denoised = x - sigma v */
        SDW_TRY(c->model(c->model_user, x, t, c->out, n));
        for (size_t i = 0; i < n; i++) x0[i] = x[i] - out[i] * sigma;
        return SDW_OK;
    }
    const float scale = sqrtf(sigma * sigma + 1.0f);
    for (size_t i = 0; i < n; i++) c->xin[i] = x[i] / scale;
    SDW_TRY(c->model(c->model_user, c->xin, t, c->out, n));
    if (c->s->p.param != SDW_PARAM_V) {
        for (size_t i = 0; i < n; i++) x0[i] = x[i] - sigma * out[i];
    } else {
        const float c_out = -sigma / scale, c_skip_den = sigma * sigma + 1.0f;
        for (size_t i = 0; i < n; i++) x0[i] = out[i] * c_out + x[i] / c_skip_den;
    }
    return SDW_OK;
}

sdw_status sdw_run_denoise_ve(sdw_run_ctx *c, const float *x, float sigma, float t, float *x0)
{
    const sdw_sampler *s = c->s;
    if (!s->hook) return denoise_plain(c, x, sigma, t, x0);
    /* KSamplerX0Inpaint: the model sees the blended copy, the sampler gets the blended estimate */
    memcpy(c->xb, x, c->n * sizeof *x);
    s->hook(s->hook_user, sigma, false, c->xb, c->n);
    SDW_TRY(denoise_plain(c, c->xb, sigma, t, x0));
    s->hook(s->hook_user, sigma, true, x0, c->n);
    return SDW_OK;
}

float sdw_run_timestep(const sdw_sampler *s, double sigma)
{
    if (s->flow) return (float)sigma * 1000.0f;
    return s->p.comfy ? sdw_comfy_timestep(&s->tab, (float)sigma) : (float)sdw_sigma_to_t(&s->tab, sigma);
}

sdw_status sdw_run_model_vp(sdw_run_ctx *c, const float *x, float t)
{
    return c->model(c->model_user, x, t, c->out, c->n);
}

void sdw_run_noise(sdw_run_ctx *c, float *buf)
{
    if (c->s->noise_fn) c->s->noise_fn(c->s->noise_user, c->rng, buf, c->n);
    else sdw_rng_randn(c->rng, buf, c->n);
}

sdw_status sdw_run_step_done(sdw_run_ctx *c, int step)
{
    return c->on_step ? c->on_step(c->step_user, step, c->x, c->n) : SDW_OK;
}

/* ---- sigma-space samplers ---- */

/* ComfyUI's sample_euler_ancestral_RF (eta 1): step to sigma_down =
 * next^2 / sigma along the line to denoised, scale up to the next level's
 * signal and add the noise that brings it to sigma next; onto sigma 0, x =
 * denoised. */
static void euler_rf_step(sdw_run_ctx *c, double sigma, double next, const float *den, float *noise)
{
    float *x = c->x;
    if (next == 0) {
        memcpy(x, den, c->n * sizeof *x);
        return;
    }
    const double down = next * (next / sigma), alpha_next = 1 - next, alpha_down = 1 - down;
    const double lost = down * alpha_next / alpha_down;
    const double renoise = sqrt(fmax(next * next - lost * lost, 0));
    const float r = (float)(down / sigma), keep = (float)(1 - down / sigma), a = (float)(alpha_next / alpha_down);
    const float fu = (float)renoise;
    sdw_run_noise(c, noise);
    for (size_t k = 0; k < c->n; k++) {
        const float y = r * x[k] + keep * den[k];
        x[k] = a * y + noise[k] * fu;
    }
}

/* EulerDiscreteScheduler (s_churn 0) and EulerAncestralDiscreteScheduler;
 * flow: FlowMatchEulerDiscreteScheduler (x + (next - sigma) v, the velocity
 * straight from the model) and ComfyUI's euler_ancestral_RF. */
static sdw_status run_euler(sdw_run_ctx *c, int start, bool ancestral, float *den, float *noise)
{
    const sdw_sampler *s = c->s;
    float *x = c->x;
    for (int i = start; i < s->n; i++) {
        /* comfy: ComfyUI's sample_euler steps along (x - denoised) / sigma on flow models too */
        if (s->flow && (ancestral || !s->p.comfy)) {
            const float sigma = s->sigmas[i], next = s->sigmas[i + 1];
            SDW_TRY(sdw_run_denoise_ve(c, x, sigma, s->timesteps[i], den));
            if (ancestral) {
                euler_rf_step(c, sigma, next, den, noise);
            } else {
                const float dt = next - sigma, *v = c->out;
                for (size_t k = 0; k < c->n; k++) x[k] = x[k] + dt * v[k];
            }
            SDW_TRY(sdw_run_step_done(c, i));
            continue;
        }
        const float sigma = s->sigmas[i], next = s->sigmas[i + 1];
        SDW_TRY(sdw_run_denoise_ve(c, x, sigma, s->timesteps[i], den));
        float dt = next - sigma, sigma_up = 0;
        if (ancestral) {
            sigma_up = sqrtf(next * next * (sigma * sigma - next * next) / (sigma * sigma));
            float down2 = next * next - sigma_up * sigma_up;
            dt = sqrtf(down2 > 0 ? down2 : 0) - sigma;
        }
        for (size_t k = 0; k < c->n; k++) {
            float d = (x[k] - den[k]) / sigma;
            x[k] = x[k] + d * dt;
        }
        if (sigma_up > 0) {
            sdw_run_noise(c, noise);
            for (size_t k = 0; k < c->n; k++) x[k] = x[k] + noise[k] * sigma_up;
        }
        SDW_TRY(sdw_run_step_done(c, i));
    }
    return SDW_OK;
}

/* k-diffusion sample_heun (= diffusers HeunDiscreteScheduler): the trapezoid
 * rule with a second evaluation at the next sigma, Euler onto sigma 0. */
static sdw_status run_heun(sdw_run_ctx *c, int start, float *den, float *d, float *x2)
{
    const sdw_sampler *s = c->s;
    float *x = c->x;
    for (int i = start; i < s->n; i++) {
        const float sigma = s->sigmas[i], next = s->sigmas[i + 1], dt = next - sigma;
        SDW_TRY(sdw_run_denoise_ve(c, x, sigma, s->timesteps[i], den));
        for (size_t k = 0; k < c->n; k++) d[k] = (x[k] - den[k]) / sigma;
        if (next == 0) {
            for (size_t k = 0; k < c->n; k++) x[k] = x[k] + d[k] * dt;
        } else {
            for (size_t k = 0; k < c->n; k++) x2[k] = x[k] + d[k] * dt;
            SDW_TRY(sdw_run_denoise_ve(c, x2, next, s->timesteps[i + 1], den));
            for (size_t k = 0; k < c->n; k++) {
                float d2 = (x2[k] - den[k]) / next;
                x[k] = x[k] + (d[k] + d2) / 2 * dt;
            }
        }
        SDW_TRY(sdw_run_step_done(c, i));
    }
    return SDW_OK;
}

/* k-diffusion sample_dpm_2 (= diffusers KDPM2DiscreteScheduler): the
 * midpoint rule at the log-midpoint sigma. */
static sdw_status run_dpm2(sdw_run_ctx *c, int start, float *den, float *d, float *x2)
{
    const sdw_sampler *s = c->s;
    float *x = c->x;
    for (int i = start; i < s->n; i++) {
        const float sigma = s->sigmas[i], next = s->sigmas[i + 1];
        SDW_TRY(sdw_run_denoise_ve(c, x, sigma, s->timesteps[i], den));
        for (size_t k = 0; k < c->n; k++) d[k] = (x[k] - den[k]) / sigma;
        if (next == 0) {
            for (size_t k = 0; k < c->n; k++) x[k] = x[k] + d[k] * (next - sigma);
        } else {
            const float ls = logf(sigma), mid = expf(ls + 0.5f * (logf(next) - ls));
            const float t_mid = sdw_run_timestep(s, mid);
            for (size_t k = 0; k < c->n; k++) x2[k] = x[k] + d[k] * (mid - sigma);
            SDW_TRY(sdw_run_denoise_ve(c, x2, mid, t_mid, den));
            for (size_t k = 0; k < c->n; k++) {
                float d2 = (x2[k] - den[k]) / mid;
                x[k] = x[k] + d2 * (next - sigma);
            }
        }
        SDW_TRY(sdw_run_step_done(c, i));
    }
    return SDW_OK;
}

/* ComfyUI's sample_dpmpp_2s_ancestral_RF (eta 1): the same midpoint step in
 * the flow's log-SNR lambda = log((1 - sigma) / sigma) onto sigma_down =
 * next^2 / sigma, then euler_a_RF's rescale and noise. */
static sdw_status dpmpp_2s_rf_step(sdw_run_ctx *c, double sigma, double next, float *den, float *x2, float *noise)
{
    float *x = c->x;
    const double down = next * (next / sigma);
    if (next == 0) {
        /* Euler onto sigma_down = 0: x = denoised */
        const float dt = (float)(down - sigma), fs = (float)sigma;
        for (size_t k = 0; k < c->n; k++) x[k] = x[k] + (x[k] - den[k]) / fs * dt;
        return SDW_OK;
    }
    double sm = 0.9999;   /* lambda(1) is -inf: ComfyUI's stand-in midpoint */
    if (sigma != 1.0) {
        const double li = log((1 - sigma) / sigma), ld = log((1 - down) / down);
        sm = 1 / (exp(li + 0.5 * (ld - li)) + 1);
    }
    const float r1 = (float)(sm / sigma), k1 = (float)(1 - sm / sigma);
    for (size_t k = 0; k < c->n; k++) x2[k] = r1 * x[k] + k1 * den[k];
    SDW_TRY(sdw_run_denoise_ve(c, x2, (float)sm, sdw_run_timestep(c->s, sm), den));
    const float r2 = (float)(down / sigma), k2 = (float)(1 - down / sigma);
    for (size_t k = 0; k < c->n; k++) x[k] = r2 * x[k] + k2 * den[k];
    const double alpha_next = 1 - next, alpha_down = 1 - down;
    const double lost = down * alpha_next / alpha_down;
    const double renoise = sqrt(fmax(next * next - lost * lost, 0));
    const float a = (float)(alpha_next / alpha_down), fu = (float)renoise;
    sdw_run_noise(c, noise);
    for (size_t k = 0; k < c->n; k++) x[k] = a * x[k] + noise[k] * fu;
    return SDW_OK;
}

/* k-diffusion sample_dpmpp_2s_ancestral (eta 1): DPM-Solver++(2S) onto the
 * ancestral step's sigma_down, then fresh noise of sigma_up. */
static sdw_status run_dpmpp_2s_a(sdw_run_ctx *c, int start, float *den, float *x2, float *noise)
{
    const sdw_sampler *s = c->s;
    float *x = c->x;
    for (int i = start; i < s->n; i++) {
        if (s->flow) {
            SDW_TRY(sdw_run_denoise_ve(c, x, s->sigmas[i], s->timesteps[i], den));
            SDW_TRY(dpmpp_2s_rf_step(c, s->sigmas[i], s->sigmas[i + 1], den, x2, noise));
            SDW_TRY(sdw_run_step_done(c, i));
            continue;
        }
        const double sigma = s->sigmas[i], next = s->sigmas[i + 1];
        SDW_TRY(sdw_run_denoise_ve(c, x, (float)sigma, s->timesteps[i], den));
        double up = sqrt(next * next * (sigma * sigma - next * next) / (sigma * sigma));
        if (up > next) up = next;
        const double down = sqrt(fmax(next * next - up * up, 0));
        if (down == 0) {
            const float dt = (float)(down - sigma);
            for (size_t k = 0; k < c->n; k++) x[k] = x[k] + (x[k] - den[k]) / (float)sigma * dt;
        } else {
            /* t = -log sigma; half step to s = t + h/2 */
            const double t = -log(sigma), t_next = -log(down), h = t_next - t, sm = exp(-(t + 0.5 * h));
            const float a1 = (float)(sm / sigma), b1 = (float)expm1(-0.5 * h);
            for (size_t k = 0; k < c->n; k++) x2[k] = a1 * x[k] - b1 * den[k];
            SDW_TRY(sdw_run_denoise_ve(c, x2, (float)sm, sdw_run_timestep(s, sm), den));
            const float a2 = (float)(down / sigma), b2 = (float)expm1(-h);
            for (size_t k = 0; k < c->n; k++) x[k] = a2 * x[k] - b2 * den[k];
        }
        if (next > 0 && up > 0) {
            sdw_run_noise(c, noise);
            const float fu = (float)up;
            for (size_t k = 0; k < c->n; k++) x[k] = x[k] + noise[k] * fu;
        }
        SDW_TRY(sdw_run_step_done(c, i));
    }
    return SDW_OK;
}

/* ---- variance-preserving one-step samplers ---- */

/* DDIMScheduler.step (clip_sample off), stepping level i -> i + 1. */
static sdw_status run_ddim(sdw_run_ctx *c, int start, float *noise)
{
    const sdw_sampler *s = c->s;
    const bool v = s->p.param == SDW_PARAM_V;
    const float eta = s->p.eta;
    float *x = c->x;
    const float *e = c->out;
    for (int i = start; i < s->n; i++) {
        SDW_TRY(sdw_run_model_vp(c, x, s->timesteps[i]));
        const float a_t = s->acp[i], a_prev = s->acp[i + 1], b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
        const float sa = sqrtf(a_t), sb = sqrtf(b_t);
        const float variance = (b_prev / b_t) * (1.0f - a_t / a_prev);
        const float std = eta * sqrtf(variance);
        const float c_dir = sqrtf(1.0f - a_prev - std * std), c_x0 = sqrtf(a_prev);
        for (size_t k = 0; k < c->n; k++) {
            float x0, pe;
            if (!v) {
                x0 = (x[k] - sb * e[k]) / sa;
                pe = e[k];
            } else {
                x0 = sa * x[k] - sb * e[k];
                pe = sa * e[k] + sb * x[k];
            }
            x[k] = c_x0 * x0 + c_dir * pe;
        }
        if (eta > 0) {
            sdw_run_noise(c, noise);
            for (size_t k = 0; k < c->n; k++) x[k] = x[k] + std * noise[k];
        }
        SDW_TRY(sdw_run_step_done(c, i));
    }
    return SDW_OK;
}

/* LCMScheduler.step: the consistency function's boundary scalings, then
 * re-noise to the next level (not after the last step). */
static sdw_status run_lcm(sdw_run_ctx *c, int start, float *noise)
{
    const sdw_sampler *s = c->s;
    const bool v = s->p.param == SDW_PARAM_V;
    float *x = c->x;
    const float *e = c->out;
    for (int i = start; i < s->n; i++) {
        const float t = s->timesteps[i];
        SDW_TRY(sdw_run_model_vp(c, x, t));
        const bool last = i == s->n - 1;
        const float a_t = s->acp[i], a_prev = last ? a_t : s->acp[i + 1];
        const float sa = sqrtf(a_t), sb = sqrtf(1.0f - a_t);
        const float scaled = t * 10.0f, den2 = scaled * scaled + 0.25f;
        const float c_skip = 0.25f / den2, c_out = scaled / sqrtf(den2);
        if (!last) sdw_run_noise(c, noise);
        const float pa = sqrtf(a_prev), pb = sqrtf(1.0f - a_prev);
        for (size_t k = 0; k < c->n; k++) {
            float x0 = v ? sa * x[k] - sb * e[k] : (x[k] - sb * e[k]) / sa;
            float den = c_out * x0 + c_skip * x[k];
            x[k] = last ? den : pa * den + pb * noise[k];
        }
        SDW_TRY(sdw_run_step_done(c, i));
    }
    return SDW_OK;
}

/* k-diffusion / ComfyUI sample_lcm: x = denoised, renoised to the next
 * level with the model sampling's noise_scaling (x0 + sigma noise; flow:
 * sigma noise + (1 - sigma) x0), not after the last step. */
static sdw_status run_lcm_k(sdw_run_ctx *c, int start, float *den, float *noise)
{
    const sdw_sampler *s = c->s;
    float *x = c->x;
    for (int i = start; i < s->n; i++) {
        SDW_TRY(sdw_run_denoise_ve(c, x, s->sigmas[i], s->timesteps[i], den));
        const float next = s->sigmas[i + 1];
        if (next > 0) {
            sdw_run_noise(c, noise);
            if (s->flow) {
                const float keep = 1.0f - next;
                for (size_t k = 0; k < c->n; k++) x[k] = next * noise[k] + keep * den[k];
            } else {
                for (size_t k = 0; k < c->n; k++) x[k] = noise[k] * next + den[k];
            }
        } else {
            memcpy(x, den, c->n * sizeof *x);
        }
        SDW_TRY(sdw_run_step_done(c, i));
    }
    return SDW_OK;
}

/* ---- run ---- */

static bool needs_noise(const sdw_sampler *s)
{
    switch (s->p.sampler) {
    case SDW_SAMPLER_EULER_A: case SDW_SAMPLER_DPMPP_2S_A: case SDW_SAMPLER_DPMPP_2M_SDE: case SDW_SAMPLER_LCM:
        return true;
    case SDW_SAMPLER_DDIM: return s->p.eta > 0 && !s->p.comfy;
    default: return false;
    }
}

sdw_status sdw_sampler_run(sdw_sampler *s, float *x, size_t n, int start, sdw_model_fn model, void *model_user,
                           sdw_step_fn on_step, void *step_user, sdw_rng *rng)
{
    if (!s || !x || !model || n == 0) return sdw_fail(SDW_ERR_INVALID_ARG, "sampler run: missing arguments");
    if (start < 0 || start > s->n)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler run: start step %d out of range [0, %d]", start, s->n);
    if (s->p.sampler == SDW_SAMPLER_PNDM && s->n > s->p.steps && start == 1)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler run: pndm cannot start at its step 1, the second "
                                             "evaluation of step 0 (start at 0 or 2)");
    if (s->hook && s->vp)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler run: %s runs in the variance-preserving space, which has "
                                             "no denoised estimate for an inpainting hook",
                        sdw_sampler_name(s->p.sampler));
    if (needs_noise(s) && !rng && !s->noise_fn)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sampler run: %s needs a random generator",
                        sdw_sampler_name(s->p.sampler));
    if (start == s->n) return SDW_OK;
    /* xin, out, three work buffers for the samplers here, and the hook's copy of x */
    const size_t nbuf = s->hook ? 6 : 5;
    if (n > SIZE_MAX / sizeof(float) / nbuf) return sdw_fail(SDW_ERR_NOMEM, "sampler run: %zu floats", n);
    float *buf = malloc(nbuf * n * sizeof *buf);
    if (!buf) return sdw_fail(SDW_ERR_NOMEM, "sampler run: out of memory for %zu floats", nbuf * n);
    sdw_run_ctx c = {.s = s, .x = x, .n = n, .model = model, .model_user = model_user, .on_step = on_step,
                     .step_user = step_user, .rng = rng, .xin = buf, .out = buf + n,
                     .xb = s->hook ? buf + 5 * n : NULL};
    float *w0 = buf + 2 * n, *w1 = buf + 3 * n, *w2 = buf + 4 * n;
    sdw_status st;
    switch (s->p.sampler) {
    case SDW_SAMPLER_EULER: st = run_euler(&c, start, false, w0, w1); break;
    case SDW_SAMPLER_EULER_A: st = run_euler(&c, start, true, w0, w1); break;
    case SDW_SAMPLER_HEUN: st = run_heun(&c, start, w0, w1, w2); break;
    case SDW_SAMPLER_DPM2: st = run_dpm2(&c, start, w0, w1, w2); break;
    case SDW_SAMPLER_DPMPP_2S_A: st = run_dpmpp_2s_a(&c, start, w0, w1, w2); break;
    case SDW_SAMPLER_DDIM:
        /* ComfyUI's "ddim" is its euler (comfy/samplers.py sampler_object) */
        st = s->p.comfy ? run_euler(&c, start, false, w0, w1) : run_ddim(&c, start, w0);
        break;
    case SDW_SAMPLER_LCM: st = s->p.comfy ? run_lcm_k(&c, start, w0, w1) : run_lcm(&c, start, w0); break;
    case SDW_SAMPLER_DPMPP_2M: st = sdw_run_dpmpp_2m(&c, start, false); break;
    case SDW_SAMPLER_DPMPP_2M_SDE: st = sdw_run_dpmpp_2m(&c, start, true); break;
    case SDW_SAMPLER_PNDM: st = sdw_run_pndm(&c, start); break;
    case SDW_SAMPLER_LMS: st = sdw_run_lms(&c, start); break;
    case SDW_SAMPLER_IPNDM: st = sdw_run_ipndm(&c, start); break;
    default: st = sdw_fail(SDW_ERR_INVALID_ARG, "sampler run: unknown kind %d", (int)s->p.sampler); break;
    }
    free(buf);
    return st;
}
