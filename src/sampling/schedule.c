/* schedule.c: the training noise table (diffusers' scaled-linear betas, in
 * float32 exactly as torch computes them), timestep <-> sigma interpolation,
 * and the step schedules a sampler runs on: normal (linspace), leading and
 * trailing as each diffusers scheduler lays them out, karras and exponential
 * (k-diffusion), sgm_uniform, simple and beta (ComfyUI). Flow models'
 * schedules are in schedule_flow.c.
 *
 * diffusers computes the schedule in float64 numpy from the float32 table and
 * casts the result to float32; the same is done here, so the sigmas and
 * timesteps are bit-identical to diffusers 0.27's. */
#include "sampling/sampler_internal.h"
#include "core/error.h"
#include <math.h>
#include <string.h>

#define BETA_START 0.00085
#define BETA_END 0.012

/* torch.linspace(start, end, steps, dtype=float32) on the CPU: the vectorised
 * kernel fills blocks of 8 lanes from the block's first value (start + step*i
 * below halfway, end - step*(steps-1-i) above) plus lane * step; the tail past
 * the last 16-element pair of blocks is filled element-wise. Computing it this
 * way (and not as start + i*step) is what makes alphas_cumprod, and with it
 * every sigma, match diffusers' bit for bit. */
void sdw_torch_linspace_f32(float start, float end, int steps, float *out)
{
    const double step = ((double)end - (double)start) / (steps - 1);
    const int halfway = steps / 2, lanes = 8, tail = steps - steps % (2 * lanes);
    for (int i = 0; i < steps; i++) {
        int b = i < tail ? i - i % lanes : i;
        float base = (float)(b < halfway ? start + step * b : end - step * (steps - b - 1));
        out[i] = (float)((double)base + (i - b) * step);
    }
}

void sdw_noise_table_init(sdw_noise_table *tab)
{
    float lin[SDW_TRAIN_STEPS];
    sdw_torch_linspace_f32((float)sqrt(BETA_START), (float)sqrt(BETA_END), SDW_TRAIN_STEPS, lin);
    /* torch.cumprod on the CPU accumulates float32 in double */
    double acc = 1.0;
    for (int i = 0; i < SDW_TRAIN_STEPS; i++) {
        float beta = lin[i] * lin[i];
        float alpha = 1.0f - beta;
        acc *= alpha;
        float ac = (float)acc;
        tab->alphas_cumprod[i] = ac;
        tab->sigmas[i] = sqrtf((1.0f - ac) / ac);
        tab->log_sigmas[i] = logf(tab->sigmas[i]);
    }
}

static double clamp_t(double t)
{
    return t < 0 ? 0 : t > SDW_TRAIN_STEPS - 1 ? SDW_TRAIN_STEPS - 1 : t;
}

double sdw_sigma_at(const sdw_noise_table *tab, double t)
{
    t = clamp_t(t);
    int j = (int)floor(t);
    if (j >= SDW_TRAIN_STEPS - 1 || (double)j == t) return tab->sigmas[j];
    double slope = (double)tab->sigmas[j + 1] - (double)tab->sigmas[j];
    return slope * (t - j) + tab->sigmas[j];
}

double sdw_sigma_at_log(const sdw_noise_table *tab, double t)
{
    t = clamp_t(t);
    int lo = (int)floor(t), hi = (int)ceil(t);
    double w = t - lo;
    return exp((1 - w) * tab->log_sigmas[lo] + w * tab->log_sigmas[hi]);
}

double sdw_sigma_to_t(const sdw_noise_table *tab, double sigma)
{
    double log_sigma = log(sigma > 1e-10 ? sigma : 1e-10);
    /* numpy 1.x evaluates log_sigma - log_sigmas in float32 */
    float ls = (float)log_sigma;
    int lo = 0;
    for (int i = 0; i < SDW_TRAIN_STEPS; i++)
        if (ls - tab->log_sigmas[i] >= 0) lo = i;
    if (lo > SDW_TRAIN_STEPS - 2) lo = SDW_TRAIN_STEPS - 2;
    double low = tab->log_sigmas[lo], high = tab->log_sigmas[lo + 1];
    double w = (low - log_sigma) / (low - high);
    w = w < 0 ? 0 : w > 1 ? 1 : w;
    return (1 - w) * lo + w * (lo + 1);
}

/* ---- names ---- */

static const char *const schedule_names[SDW_SCHEDULE_COUNT] = {
    "normal", "karras", "exponential", "sgm_uniform", "simple", "leading", "trailing", "beta", "flow",
};
/* A1111's scheduler labels; its "DDIM" scheduler is the leading one (offset
 * 1). A1111 has no flow schedule: "Flow" is ours. */
static const char *const schedule_a1111[SDW_SCHEDULE_COUNT] = {
    "Normal", "Karras", "Exponential", "SGM Uniform", "Simple", "DDIM", "Trailing", "Beta", "Flow",
};
static const sdw_name_alias schedule_aliases[] = {
    {"discrete", SDW_SCHEDULE_NORMAL},   {"linspace", SDW_SCHEDULE_NORMAL},
    {"uniform", SDW_SCHEDULE_NORMAL},    {"sgmuniform", SDW_SCHEDULE_SGM_UNIFORM},
    {"ddim_uniform", SDW_SCHEDULE_LEADING}, {"flow_match", SDW_SCHEDULE_FLOW},
    {"flowmatch", SDW_SCHEDULE_FLOW},
};

const char *sdw_schedule_name(sdw_schedule_kind k)
{
    return (unsigned)k < SDW_SCHEDULE_COUNT ? schedule_names[k] : "unknown";
}

const char *sdw_schedule_a1111_name(sdw_schedule_kind k)
{
    return (unsigned)k < SDW_SCHEDULE_COUNT ? schedule_a1111[k] : "unknown";
}

sdw_status sdw_schedule_parse(const char *s, sdw_schedule_kind *out)
{
    int k;
    SDW_TRY(sdw_lookup_name("scheduler", s, schedule_names, schedule_a1111, SDW_SCHEDULE_COUNT, schedule_aliases,
                            sizeof schedule_aliases / sizeof *schedule_aliases, &k));
    *out = (sdw_schedule_kind)k;
    return SDW_OK;
}

/* ---- step schedules ---- */

/* The timestep-spaced schedules: the timestep of step j (0 = noisiest), as a
 * float32 value the way the scheduler of that style stores it. */
static sdw_status spaced_timestep(sdw_schedule_kind kind, sdw_timestep_style style, int n, int j, float *t)
{
    /* LCMScheduler ignores its timestep_spacing ("leading" in its config):
     * both run its own schedule */
    if (style == SDW_STYLE_LCM && kind == SDW_SCHEDULE_LEADING) kind = SDW_SCHEDULE_NORMAL;
    switch (kind) {
    case SDW_SCHEDULE_NORMAL:
        if (style == SDW_STYLE_DPM) {
            /* np.linspace(0, 999, n + 1).round()[::-1][:-1] */
            int i = n - j;
            *t = i == n ? 999.0f : (float)rint(i * (999.0 / n));
        } else if (style == SDW_STYLE_LCM) {
            /* LCMScheduler: every (1000/50)-th step of its 50-step distillation
             * schedule, n of them evenly picked from the top */
            int idx = (int)floor(j * (50.0 / n));
            *t = (float)(999 - 20 * idx);
        } else {
            /* np.linspace(0, 999, n)[::-1] (float32; DDIM/PNDM round it).
             * One step starts at 999 (diffusers' linspace would give 0). */
            int i = n - 1 - j;
            double v = (n == 1 || i == n - 1) ? 999.0 : i * (999.0 / (n - 1));
            *t = style == SDW_STYLE_K ? (float)v : (float)rint(v);
        }
        return SDW_OK;
    case SDW_SCHEDULE_LEADING: {
        /* (arange(n) * (1000 // n))[::-1] + steps_offset 1; DPMSolver spaces
         * n + 1 points and drops the last */
        int ratio = style == SDW_STYLE_DPM ? SDW_TRAIN_STEPS / (n + 1) : SDW_TRAIN_STEPS / n;
        if (ratio < 1) return sdw_fail(SDW_ERR_INVALID_ARG, "leading schedule: %d steps is too many", n);
        *t = (float)((style == SDW_STYLE_DPM ? n - j : n - 1 - j) * ratio + 1);
        return SDW_OK;
    }
    case SDW_SCHEDULE_TRAILING:
        /* np.arange(1000, 0, -1000 / n).round() - 1 */
        *t = (float)(rint(SDW_TRAIN_STEPS - j * ((double)SDW_TRAIN_STEPS / n)) - 1);
        return SDW_OK;
    case SDW_SCHEDULE_SIMPLE:
        /* ComfyUI simple: sigmas[-(1 + int(j * len(sigmas) / n))] */
        *t = (float)(SDW_TRAIN_STEPS - 1 - (int)(j * ((double)SDW_TRAIN_STEPS / n)));
        return SDW_OK;
    default:
        return sdw_fail(SDW_ERR_INVALID_ARG, "schedule %d is not timestep-spaced", (int)kind);
    }
}

/* alphas_cumprod of a level: the table's entry when the level is one. */
static float level_acp(const sdw_noise_table *tab, float t, double sigma)
{
    if (t >= 0 && t <= SDW_TRAIN_STEPS - 1 && t == floorf(t) && (float)sigma == tab->sigmas[(int)t])
        return tab->alphas_cumprod[(int)t];
    return (float)(1.0 / (1.0 + sigma * sigma));
}

/* ComfyUI's beta schedule over the training table: its entries at the
 * quantiles, each level a training timestep. */
static int build_beta(const sdw_noise_table *tab, int steps, float *timesteps, float *sigmas, float *acp)
{
    int idx[SDW_SAMPLER_MAX_STEPS];
    const int n = sdw_beta_indices(steps, SDW_TRAIN_STEPS - 1, idx);
    for (int j = 0; j < n; j++) {
        timesteps[j] = (float)idx[j];
        sigmas[j] = tab->sigmas[idx[j]];
        acp[j] = tab->alphas_cumprod[idx[j]];
    }
    sigmas[n] = 0.0f;
    return n;
}

sdw_status sdw_schedule_build(const sdw_noise_table *tab, sdw_schedule_kind kind, sdw_timestep_style style,
                              int n, float *timesteps, float *sigmas, float *acp, int *n_out)
{
    if (n < 1 || n > SDW_SAMPLER_MAX_STEPS)
        return sdw_fail(SDW_ERR_INVALID_ARG, "steps %d out of range [1, %d]", n, SDW_SAMPLER_MAX_STEPS);
    *n_out = n;
    if (kind == SDW_SCHEDULE_FLOW)
        return sdw_fail(SDW_ERR_INVALID_ARG, "the flow schedule is for flow-matching models (FLUX, SD3) only");
    if (kind == SDW_SCHEDULE_BETA) {
        *n_out = build_beta(tab, n, timesteps, sigmas, acp);
        return SDW_OK;
    }
    const double smin = tab->sigmas[0], smax = tab->sigmas[SDW_TRAIN_STEPS - 1];
    for (int j = 0; j < n; j++) {
        double sigma;
        float t = 0;
        switch (kind) {
        case SDW_SCHEDULE_KARRAS: {
            /* k-diffusion get_sigmas_karras, rho 7, over the model's range */
            double ramp = n == 1 ? 0.0 : j == n - 1 ? 1.0 : j * (1.0 / (n - 1));
            double min_inv = pow(smin, 1 / 7.0), max_inv = pow(smax, 1 / 7.0);
            sigma = pow(max_inv + ramp * (min_inv - max_inv), 7.0);
            double ts = sdw_sigma_to_t(tab, sigma);
            t = (float)(style == SDW_STYLE_K ? ts : rint(ts));
            break;
        }
        case SDW_SCHEDULE_EXPONENTIAL: {
            /* exp(linspace(log sigma_max, log sigma_min, n)) */
            double lmax = log(smax), lmin = log(smin);
            double l = n == 1 ? lmax : j == n - 1 ? lmin : lmax + j * ((lmin - lmax) / (n - 1));
            sigma = exp(l);
            double ts = sdw_sigma_to_t(tab, sigma);
            t = (float)(style == SDW_STYLE_K ? ts : rint(ts));
            break;
        }
        case SDW_SCHEDULE_SGM_UNIFORM: {
            /* ComfyUI sgm_uniform: linspace(999, 0, n + 1)[:-1] in timestep,
             * sigma interpolated in log space */
            float ts = (float)(999.0 - j * (999.0 / n));
            sigma = sdw_sigma_at_log(tab, ts);
            t = style == SDW_STYLE_K ? ts : (float)rint(ts);
            break;
        }
        default:
            SDW_TRY(spaced_timestep(kind, style, n, j, &t));
            sigma = sdw_sigma_at(tab, t);
            break;
        }
        timesteps[j] = t;
        sigmas[j] = (float)sigma;
        acp[j] = level_acp(tab, t, sigma);
    }
    sigmas[n] = 0.0f;
    return SDW_OK;
}
