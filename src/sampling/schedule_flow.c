/* schedule_flow.c: the step schedules of flow-matching models (FLUX, SD3),
 * whose noise level sigma runs from 1 (pure noise) to 0 with a shift mu
 * that spends more steps at high noise: sigma(t) = e^mu / (e^mu + 1/t - 1).
 *
 * flow: diffusers' FlowMatchEulerDiscreteScheduler, bit for bit, in its two
 * configurations: as the Flux pipelines drive it (dynamic shifting), sigmas =
 * float32(linspace(1, 1/N, N)) shifted in float32 (an unshifted schedule,
 * schnell's, stays exactly the linspace); and with SD3's static shift S = e^mu
 * (static_shift), a float64 linspace of timesteps between the shifted
 * training sigmas' ends, each shifted again with S s / (1 + (S - 1) s).
 * The others are ComfyUI's over its flow model sampling: a table of `size`
 * sigmas sigma(i / size), i = 1..size (ModelSamplingFlux for FLUX dev,
 * 10000 entries; ModelSamplingDiscreteFlow for SD3 and schnell, 1000):
 * simple and beta pick table entries, normal and sgm_uniform space the
 * model timestep (which for these samplings is sigma itself) evenly between
 * the table's ends and shift it, karras and exponential span the table's
 * sigma_min..sigma_max. The model timestep of every level is sigma * 1000. */
#include "sampling/sampler_internal.h"
#include "core/error.h"
#include <math.h>
#include <stdlib.h>

float sdw_flow_sigma(const sdw_flow_shift *f, float t)
{
    if (f->size == 10000) {
        /* ModelSamplingFlux: flux_time_shift(mu, 1, t) on a float32 tensor */
        const float e = (float)exp(f->mu);
        return e / (e + (1.0f / t - 1.0f));
    }
    /* ModelSamplingDiscreteFlow: time_snr_shift(alpha, t), the identity at alpha 1 */
    const double alpha = exp(f->mu);
    if (alpha == 1.0) return t;
    return (float)alpha * t / (1.0f + (float)(alpha - 1.0) * t);
}

/* Entry i (0-based, ascending) of ComfyUI's table. */
static float table_sigma(const sdw_flow_shift *f, int i)
{
    return sdw_flow_sigma(f, (float)((i + 1) / (double)f->size));
}

/* diffusers: sigmas = linspace(1, 1/N, N) (float64, then float32); with
 * dynamic shifting time_shift(mu, 1, sigmas) in float32, E = float32(e^mu). */
static void diffusers_flow(double mu, int n, float *sigmas)
{
    const double step = (1.0 / n - 1.0) / (n > 1 ? n - 1 : 1);
    const float e = (float)exp(mu);
    for (int j = 0; j < n; j++) {
        const float s = (float)(j == n - 1 ? 1.0 / n : j * step + 1.0);
        sigmas[j] = mu == 0 ? s : e / (e + (1.0f / s - 1.0f));
    }
}

/* The shift S back from mu = ln S. exp(ln 3) is 3 + 1 ulp; configured
 * shifts are short decimals, so 12 significant digits restore them exactly
 * (and leave any other value within 1e-12 of e^mu). */
static double static_shift_of(double mu)
{
    const double e = exp(mu), scale = pow(10.0, 11 - floor(log10(e)));
    return round(e * scale) / scale;
}

/* diffusers with a static shift (SD3's scheduler_config): the training table
 * float32(shift(i / 1000)), i = 1..1000, computed in float32, gives
 * sigma_max and sigma_min; set_timesteps(N) takes timesteps t =
 * np.linspace(1000 sigma_max, 1000 sigma_min, N) in float64 and sigmas =
 * float32(shift(t / 1000)) in float64 (the shift applied a second time). */
static void diffusers_static(double mu, int n, float *sigmas)
{
    const double S = static_shift_of(mu);
    const float fs = (float)S, fs1 = (float)(S - 1.0), tmin = 1.0f / 1000.0f;
    const float smax = fs * 1.0f / (1.0f + fs1 * 1.0f), smin = fs * tmin / (1.0f + fs1 * tmin);
    const double start = (double)smax * 1000.0, stop = (double)smin * 1000.0;
    const double step = n > 1 ? (stop - start) / (n - 1) : 0.0;
    for (int j = 0; j < n; j++) {
        /* numpy: arange(n) * step + start, the last point set to stop */
        const double t = n > 1 && j == n - 1 ? stop : j * step + start, s = t / 1000.0;
        sigmas[j] = (float)(S * s / (1.0 + (S - 1.0) * s));
    }
}

/* ComfyUI normal_scheduler (sgm: linspace over steps + 1, the last dropped):
 * torch.linspace(timestep(sigma_max), timestep(sigma_min)) in float32, each
 * point through the shift again. */
static sdw_status comfy_normal(const sdw_flow_shift *f, int n, bool sgm, float *sigmas)
{
    const int points = sgm ? n + 1 : n;
    float *ts = malloc((size_t)points * sizeof *ts);
    if (!ts) return sdw_fail(SDW_ERR_NOMEM, "flow schedule: out of memory");
    const float start = table_sigma(f, f->size - 1), end = table_sigma(f, 0);
    if (points == 1) ts[0] = start;
    else sdw_torch_linspace_f32(start, end, points, ts);
    for (int j = 0; j < n; j++) sigmas[j] = sdw_flow_sigma(f, ts[j]);
    free(ts);
    return SDW_OK;
}

sdw_status sdw_flow_schedule_build(const sdw_flow_shift *f, sdw_schedule_kind kind, int n, float *timesteps,
                                   float *sigmas, int *n_out)
{
    if (n < 1 || n > SDW_SAMPLER_MAX_STEPS)
        return sdw_fail(SDW_ERR_INVALID_ARG, "steps %d out of range [1, %d]", n, SDW_SAMPLER_MAX_STEPS);
    const double smin = table_sigma(f, 0), smax = table_sigma(f, f->size - 1);
    switch (kind) {
    case SDW_SCHEDULE_FLOW:
        if (f->static_shift) diffusers_static(f->mu, n, sigmas);
        else diffusers_flow(f->mu, n, sigmas);
        break;
    case SDW_SCHEDULE_NORMAL: SDW_TRY(comfy_normal(f, n, false, sigmas)); break;
    case SDW_SCHEDULE_SGM_UNIFORM: SDW_TRY(comfy_normal(f, n, true, sigmas)); break;
    case SDW_SCHEDULE_SIMPLE: {
        /* sigmas[-(1 + int(j * len(sigmas) / n))] */
        const double ss = (double)f->size / n;
        for (int j = 0; j < n; j++) sigmas[j] = table_sigma(f, f->size - 1 - (int)(j * ss));
        break;
    }
    case SDW_SCHEDULE_BETA: {
        int *idx = malloc((size_t)n * sizeof *idx);
        if (!idx) return sdw_fail(SDW_ERR_NOMEM, "flow schedule: out of memory");
        n = sdw_beta_indices(n, f->size - 1, idx);
        for (int j = 0; j < n; j++) sigmas[j] = table_sigma(f, idx[j]);
        free(idx);
        break;
    }
    case SDW_SCHEDULE_KARRAS:
        /* k-diffusion get_sigmas_karras, rho 7 */
        for (int j = 0; j < n; j++) {
            const double ramp = n == 1 ? 0.0 : j == n - 1 ? 1.0 : j * (1.0 / (n - 1));
            const double min_inv = pow(smin, 1 / 7.0), max_inv = pow(smax, 1 / 7.0);
            sigmas[j] = (float)pow(max_inv + ramp * (min_inv - max_inv), 7.0);
        }
        break;
    case SDW_SCHEDULE_EXPONENTIAL:
        /* exp(linspace(log sigma_max, log sigma_min, n)) */
        for (int j = 0; j < n; j++) {
            const double lmax = log(smax), lmin = log(smin);
            sigmas[j] = (float)exp(n == 1 ? lmax : j == n - 1 ? lmin : lmax + j * ((lmin - lmax) / (n - 1)));
        }
        break;
    default:
        return sdw_fail(SDW_ERR_INVALID_ARG,
                        "schedule %s does not apply to flow-matching models (FLUX, SD3): it spaces the discrete "
                        "timesteps of eps / v models; use flow, simple, normal, sgm_uniform, beta, karras or "
                        "exponential",
                        sdw_schedule_name(kind));
    }
    for (int j = 0; j < n; j++) timesteps[j] = sigmas[j] * 1000.0f;
    sigmas[n] = 0.0f;
    *n_out = n;
    return SDW_OK;
}
