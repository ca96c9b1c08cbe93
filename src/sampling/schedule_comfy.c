/* schedule_comfy.c: the eps / v model sampling of ComfyUI (comfy/
 * model_sampling.py ModelSamplingDiscrete, comfy/samplers.py schedulers),
 * for the sampler's comfy mode (the workflow executor's KSampler):
 *
 *   - the sigma table from make_beta_schedule("linear") in float64 (betas
 *     = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2, cumprod in float64),
 *     stored as float32 sigmas and float32(log(sigma in float64));
 *   - the model's timestep of a sigma: the index of the nearest log sigma
 *     (argmin, the first on a tie), an integer, not diffusers' fractional t;
 *   - normal: torch.linspace(999, 0, n) in float32, each point's sigma
 *     interpolated in log sigma in float32 (diffusers' linspace interpolates
 *     sigma itself); sgm_uniform the same over n + 1 points, the last
 *     dropped; leading is ComfyUI's ddim_uniform: table entries 1, 1 + k,
 *     1 + 2k, ... (k = 1000 // n) reversed, which for an n not dividing 1000
 *     can be more levels than n;
 *   - simple, beta, karras and exponential are the same functions of the
 *     table as schedule.c's (given this table).
 * Differences from the diffusers table are ~1e-7 relative: they matter for
 * bit-parity with ComfyUI, not for the golden gates. */
#include "sampling/sampler_internal.h"
#include "core/error.h"
#include <math.h>
#include <stdlib.h>

void sdw_noise_table_init_comfy(sdw_noise_table *tab)
{
    const double start = sqrt(0.00085), end = sqrt(0.012);
    const int n = SDW_TRAIN_STEPS;
    const double step = (end - start) / (n - 1);
    double acc = 1.0;
    for (int i = 0; i < n; i++) {
        /* torch.linspace in float64: from the start below halfway, from the end above */
        const double b = i < n / 2 ? start + step * i : end - step * (n - 1 - i);
        acc *= 1.0 - b * b;
        const double sigma = sqrt((1.0 - acc) / acc);
        tab->alphas_cumprod[i] = (float)acc;
        tab->sigmas[i] = (float)sigma;
        tab->log_sigmas[i] = (float)log(sigma);
    }
}

float sdw_comfy_timestep(const sdw_noise_table *tab, float sigma)
{
    const float ls = logf(sigma);
    int best = 0;
    float best_d = fabsf(ls - tab->log_sigmas[0]);
    for (int i = 1; i < SDW_TRAIN_STEPS; i++) {
        const float d = fabsf(ls - tab->log_sigmas[i]);
        if (d < best_d) {
            best_d = d;
            best = i;
        }
    }
    return (float)best;
}

/* ModelSamplingDiscrete.sigma(t) in float32: log-linear between entries. */
static float comfy_sigma(const sdw_noise_table *tab, float t)
{
    t = t < 0 ? 0 : t > SDW_TRAIN_STEPS - 1 ? SDW_TRAIN_STEPS - 1 : t;
    const int lo = (int)floorf(t), hi = (int)ceilf(t);
    const float w = t - (float)lo;
    return expf((1.0f - w) * tab->log_sigmas[lo] + w * tab->log_sigmas[hi]);
}

static sdw_status comfy_normal(const sdw_noise_table *tab, int n, bool sgm, float *sigmas)
{
    const int points = sgm ? n + 1 : n;
    float *ts = malloc((size_t)points * sizeof *ts);
    if (!ts) return sdw_fail(SDW_ERR_NOMEM, "schedule: out of memory");
    if (points == 1) ts[0] = SDW_TRAIN_STEPS - 1;
    else sdw_torch_linspace_f32(SDW_TRAIN_STEPS - 1, 0, points, ts);
    for (int j = 0; j < n; j++) sigmas[j] = comfy_sigma(tab, ts[j]);
    free(ts);
    return SDW_OK;
}

/* ddim_scheduler: entry 1 is no zero sigma on this table, so the list is
 * [0, sigmas[1], sigmas[1 + k], ...] reversed. */
static int comfy_ddim_uniform(const sdw_noise_table *tab, int n, float *sigmas)
{
    const int k = SDW_TRAIN_STEPS / n > 1 ? SDW_TRAIN_STEPS / n : 1;
    int count = 0;
    for (int x = 1; x < SDW_TRAIN_STEPS; x += k) count++;
    int j = count - 1;
    for (int x = 1; x < SDW_TRAIN_STEPS; x += k) sigmas[j--] = tab->sigmas[x];
    return count;
}

sdw_status sdw_comfy_schedule_build(const sdw_noise_table *tab, sdw_schedule_kind kind, int n, float *timesteps,
                                    float *sigmas, float *acp, int *n_out)
{
    if (n < 1 || n > SDW_SAMPLER_MAX_STEPS)
        return sdw_fail(SDW_ERR_INVALID_ARG, "steps %d out of range [1, %d]", n, SDW_SAMPLER_MAX_STEPS);
    switch (kind) {
    case SDW_SCHEDULE_NORMAL: SDW_TRY(comfy_normal(tab, n, false, sigmas)); break;
    case SDW_SCHEDULE_SGM_UNIFORM: SDW_TRY(comfy_normal(tab, n, true, sigmas)); break;
    case SDW_SCHEDULE_LEADING: n = comfy_ddim_uniform(tab, n, sigmas); break;
    case SDW_SCHEDULE_SIMPLE: case SDW_SCHEDULE_BETA: case SDW_SCHEDULE_KARRAS: case SDW_SCHEDULE_EXPONENTIAL:
        SDW_TRY(sdw_schedule_build(tab, kind, SDW_STYLE_K, n, timesteps, sigmas, acp, &n));
        break;
    default:
        return sdw_fail(SDW_ERR_INVALID_ARG,
                        "schedule %s has no ComfyUI counterpart; ComfyUI's are normal, karras, exponential, "
                        "sgm_uniform, simple, ddim_uniform (leading) and beta",
                        sdw_schedule_name(kind));
    }
    for (int j = 0; j < n; j++) {
        timesteps[j] = sdw_comfy_timestep(tab, sigmas[j]);
        acp[j] = (float)(1.0 / (1.0 + (double)sigmas[j] * sigmas[j]));
    }
    sigmas[n] = 0.0f;
    *n_out = n;
    return SDW_OK;
}
