/* samplers_multistep.c: the samplers that reuse earlier model outputs:
 * dpm++2m and dpm++2m_sde (diffusers DPMSolverMultistepScheduler,
 * algorithm dpmsolver++ / sde-dpmsolver++, order 2, midpoint, in the
 * variance-preserving space; on flow models and in comfy mode they are
 * k-diffusion's sample_dpmpp_2m / _2m_sde in sigma space, as ComfyUI runs
 * them), pndm
 * (PNDMScheduler with skip_prk_steps: the PLMS sampler SD shipped with), lms
 * (k-diffusion sample_lms, order 4) and ipndm (k-diffusion sample_ipndm,
 * order 4). A run from a later start step starts a fresh history, as
 * diffusers and ComfyUI (which slices the sigmas) do. */
#include "sampling/sampler_internal.h"
#include "core/error.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static float *alloc_floats(size_t n, size_t count)
{
    if (n > SIZE_MAX / sizeof(float) / count) return NULL;
    return malloc(n * count * sizeof(float));
}

/* ---- dpm++2m / dpm++2m_sde ---- */

typedef struct {
    float alpha, sigma, lambda;   /* alpha_t = 1/sqrt(s^2+1), sigma_t = s alpha_t, lambda = log alpha - log sigma */
} vp_level;

static vp_level level_of(float s)
{
    vp_level l;
    l.alpha = 1.0f / sqrtf(s * s + 1.0f);
    l.sigma = s * l.alpha;
    l.lambda = logf(l.alpha) - logf(l.sigma);
    return l;
}

static sdw_status run_dpmpp_2m(sdw_run_ctx *c, int start, bool sde, float *x0, float *prev, float *noise)
{
    const sdw_sampler *s = c->s;
    const bool v = s->p.param == SDW_PARAM_V;
    float *x = c->x;
    const float *e = c->out;
    for (int i = start; i < s->n; i++) {
        SDW_TRY(sdw_run_model_vp(c, x, s->timesteps[i]));
        const vp_level l0 = level_of(s->sigmas[i]);
        for (size_t k = 0; k < c->n; k++)
            x0[k] = v ? l0.alpha * x[k] - l0.sigma * e[k] : (x[k] - l0.sigma * e[k]) / l0.alpha;
        const float next = s->sigmas[i + 1];
        if (next == 0) {
            /* the first-order update onto sigma 0 is x0 itself */
            memcpy(x, x0, c->n * sizeof *x);
        } else {
            const vp_level lt = level_of(next);
            const float h = lt.lambda - l0.lambda;
            /* first order at the first step of a run and at the last step (lower_order_final) */
            bool first = i == start || i == s->n - 1;
            float r_inv = 0;
            if (!first) {
                const vp_level l1 = level_of(s->sigmas[i - 1]);
                r_inv = 1.0f / ((l0.lambda - l1.lambda) / h);
                /* a repeated sigma (h0 = 0) leaves nothing to extrapolate from */
                first = !isfinite(r_inv);
            }
            if (!sde) {
                const float c_x = lt.sigma / l0.sigma, c_d = lt.alpha * (expf(-h) - 1.0f), c_d1 = 0.5f * c_d;
                for (size_t k = 0; k < c->n; k++) {
                    float y = c_x * x[k] - c_d * x0[k];
                    if (!first) y = y - c_d1 * (r_inv * (x0[k] - prev[k]));
                    x[k] = y;
                }
            } else {
                const float c_x = lt.sigma / l0.sigma * expf(-h), c_d = lt.alpha * (1.0f - expf(-2.0f * h));
                const float c_d1 = 0.5f * c_d, c_n = lt.sigma * sqrtf(1.0f - expf(-2.0f * h));
                sdw_run_noise(c, noise);
                for (size_t k = 0; k < c->n; k++) {
                    float y = c_x * x[k] + c_d * x0[k];
                    if (!first) y = y + c_d1 * (r_inv * (x0[k] - prev[k]));
                    x[k] = y + c_n * noise[k];
                }
            }
        }
        float *t = prev;
        prev = x0;
        x0 = t;
        SDW_TRY(sdw_run_step_done(c, i));
    }
    return SDW_OK;
}

/* k-diffusion sample_dpmpp_2m in sigma space (t = -log sigma) on the
 * denoised estimates: first order at the run's first step and onto sigma 0
 * (where it is denoised itself). */
static sdw_status run_dpmpp_2m_k(sdw_run_ctx *c, int start, float *den, float *old)
{
    const sdw_sampler *s = c->s;
    float *x = c->x;
    for (int i = start; i < s->n; i++) {
        const double sigma = s->sigmas[i], next = s->sigmas[i + 1];
        SDW_TRY(sdw_run_denoise_ve(c, x, (float)sigma, s->timesteps[i], den));
        if (next == 0) {
            memcpy(x, den, c->n * sizeof *x);
        } else {
            const double h = log(sigma) - log(next);
            const float ratio = (float)(next / sigma), c_d = (float)-expm1(-h);
            if (i == start) {
                for (size_t k = 0; k < c->n; k++) x[k] = ratio * x[k] + c_d * den[k];
            } else {
                const double r = (log(s->sigmas[i - 1]) - log(sigma)) / h;
                const float w_new = (float)(1 + 1 / (2 * r)), w_old = (float)(1 / (2 * r));
                for (size_t k = 0; k < c->n; k++) x[k] = ratio * x[k] + c_d * (w_new * den[k] - w_old * old[k]);
            }
        }
        float *t = old;
        old = den;
        den = t;
        SDW_TRY(sdw_run_step_done(c, i));
    }
    return SDW_OK;
}

/* k-diffusion / ComfyUI sample_dpmpp_2m_sde (eta 1, midpoint) on eps / v
 * models, lambda = -log sigma: ComfyUI draws the noise from a torchsde
 * Brownian tree seeded with the seed, which is not reproduced: here each
 * step draws one randn (so the image is ComfyUI's in distribution only). */
static sdw_status run_dpmpp_2m_sde_k(sdw_run_ctx *c, int start, float *den, float *old, float *noise)
{
    const sdw_sampler *s = c->s;
    float *x = c->x;
    double h_last = 0;
    for (int i = start; i < s->n; i++) {
        const double sigma = s->sigmas[i], next = s->sigmas[i + 1];
        SDW_TRY(sdw_run_denoise_ve(c, x, (float)sigma, s->timesteps[i], den));
        if (next == 0) {
            memcpy(x, den, c->n * sizeof *x);
        } else {
            const double h = log(sigma) - log(next), alpha_t = next * exp(-log(next));
            const double c_d = alpha_t * -expm1(-2 * h);
            const float c_x = (float)(next / sigma * exp(-h)), fd = (float)c_d;
            const float c_n = (float)(next * sqrt(-expm1(-2 * h)));
            const float c_1 = i > start ? (float)(0.5 * c_d * (h / h_last)) : 0.0f;
            sdw_run_noise(c, noise);
            for (size_t k = 0; k < c->n; k++) {
                float y = c_x * x[k] + fd * den[k];
                if (i > start) y = y + c_1 * (den[k] - old[k]);
                x[k] = y + noise[k] * c_n;
            }
            h_last = h;
        }
        float *t = old;
        old = den;
        den = t;
        SDW_TRY(sdw_run_step_done(c, i));
    }
    return SDW_OK;
}

sdw_status sdw_run_dpmpp_2m(sdw_run_ctx *c, int start, bool sde)
{
    float *buf = alloc_floats(c->n, 3);
    if (!buf) return sdw_fail(SDW_ERR_NOMEM, "dpm++2m: out of memory");
    sdw_status st;
    if (c->s->vp) st = run_dpmpp_2m(c, start, sde, buf, buf + c->n, buf + 2 * c->n);
    else if (sde) st = run_dpmpp_2m_sde_k(c, start, buf, buf + c->n, buf + 2 * c->n);
    else st = run_dpmpp_2m_k(c, start, buf, buf + c->n);
    free(buf);
    return st;
}

/* ---- pndm (PLMS) ---- */

/* PNDMScheduler._get_prev_sample: x at alphas_cumprod a_t -> a_prev with the
 * (combined) model output mo; v outputs become eps against x_from. */
static void pndm_prev(const sdw_sampler *s, float a_t, float a_prev, const float *x_from, const float *mo, float *x,
                      size_t n)
{
    const float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
    const float sa = sqrtf(a_t), sb = sqrtf(b_t);
    const float c_x = sqrtf(a_prev / a_t);
    const float denom = a_t * sqrtf(b_prev) + sqrtf(a_t * b_t * a_prev);
    const float c_e = a_prev - a_t;
    const bool v = s->p.param == SDW_PARAM_V;
    for (size_t k = 0; k < n; k++) {
        float e = v ? sa * mo[k] + sb * x_from[k] : mo[k];
        x[k] = c_x * x_from[k] - c_e * e / denom;
    }
}

/* The PLMS loop over diffusers' listing T0, T1, T1, T2, ...: entry 0 takes an
 * Euler step T0 -> T1 and entry 1 evaluates there and redoes the step from x0
 * with the mean of both outputs; every later entry j (level j - 1) combines
 * the last up to 4 outputs with the Adams-Bashforth weights. Entry j's level
 * is at acp[j] and the next level at acp[j + 1] (entry 0: acp[1]). A run from
 * a later level (img2img) starts with a plain first-order step instead of
 * the pair, as diffusers would from the list's head; diffusers itself
 * restarts mid-list with the pair's logic and mismatched levels. */
static sdw_status run_pndm(sdw_run_ctx *c, int start, float *ets, float *cur, float *mo)
{
    const sdw_sampler *s = c->s;
    const size_t n = c->n;
    const bool pair = s->n > s->p.steps && start == 0;
    float *x = c->x;
    int n_ets = 0;   /* ets + j*n, j = 0 the newest */
    for (int j = start; j < s->n; j++) {
        SDW_TRY(sdw_run_model_vp(c, x, s->timesteps[j]));
        if (pair && j == 1) {
            for (size_t k = 0; k < n; k++) mo[k] = (c->out[k] + ets[k]) / 2;
            pndm_prev(s, s->acp[0], s->acp[1], cur, mo, x, n);
            SDW_TRY(sdw_run_step_done(c, j));
            continue;
        }
        memmove(ets + n, ets, (size_t)(n_ets < 4 ? n_ets : 3) * n * sizeof *ets);
        memcpy(ets, c->out, n * sizeof *ets);
        if (n_ets < 4) n_ets++;
        const float *e1 = ets, *e2 = ets + n, *e3 = ets + 2 * n, *e4 = ets + 3 * n;
        const float a_t = s->acp[j], a_next = s->acp[pair && j == 0 ? 1 : j + 1];
        if (n_ets == 1) {
            if (pair) memcpy(cur, x, n * sizeof *x);
            pndm_prev(s, a_t, a_next, x, e1, x, n);
        } else {
            const float w24 = (float)(1.0 / 24);
            for (size_t k = 0; k < n; k++) {
                if (n_ets == 2) mo[k] = (3 * e1[k] - e2[k]) / 2;
                else if (n_ets == 3) mo[k] = (23 * e1[k] - 16 * e2[k] + 5 * e3[k]) / 12;
                else mo[k] = w24 * (55 * e1[k] - 59 * e2[k] + 37 * e3[k] - 9 * e4[k]);
            }
            pndm_prev(s, a_t, a_next, x, mo, x, n);
        }
        SDW_TRY(sdw_run_step_done(c, j));
    }
    return SDW_OK;
}

sdw_status sdw_run_pndm(sdw_run_ctx *c, int start)
{
    float *buf = alloc_floats(c->n, 6);
    if (!buf) return sdw_fail(SDW_ERR_NOMEM, "pndm: out of memory");
    sdw_status st = run_pndm(c, start, buf, buf + 4 * c->n, buf + 5 * c->n);
    free(buf);
    return st;
}

/* ---- lms ---- */

/* k-diffusion linear_multistep_coeff: the integral over [t_i, t_i+1] of the
 * Lagrange basis polynomial of t[i - j] on the nodes t[i], ..., t[i - order + 1]
 * (degree <= 3, so 4-point Gauss-Legendre is exact). */
static double lms_coeff(int order, const float *t, int i, int j)
{
    static const double gx[4] = {-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526};
    static const double gw[4] = {0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538};
    const double a = t[i], b = t[i + 1], half = 0.5 * (b - a), mid = 0.5 * (a + b);
    double sum = 0;
    for (int q = 0; q < 4; q++) {
        double tau = mid + half * gx[q], prod = 1;
        for (int k = 0; k < order; k++) {
            if (k == j) continue;
            prod *= (tau - t[i - k]) / ((double)t[i - j] - t[i - k]);
        }
        sum += gw[q] * prod;
    }
    return sum * half;
}

static sdw_status run_lms(sdw_run_ctx *c, int start, float *ds, float *den)
{
    const sdw_sampler *s = c->s;
    const size_t n = c->n;
    float *x = c->x;
    int n_ds = 0;   /* ds + j*n, j = 0 the newest */
    for (int i = start; i < s->n; i++) {
        const float sigma = s->sigmas[i];
        SDW_TRY(sdw_run_denoise_ve(c, x, sigma, s->timesteps[i], den));
        memmove(ds + n, ds, (size_t)(n_ds < 4 ? n_ds : 3) * n * sizeof *ds);
        for (size_t k = 0; k < n; k++) ds[k] = (x[k] - den[k]) / sigma;
        if (n_ds < 4) n_ds++;
        if ((s->flow || s->p.comfy) && s->sigmas[i + 1] == 0) {
            /* ComfyUI's sample_lms lands on denoised (k-diffusion's, which
             * A1111 runs on eps / v models, integrates on to 0) */
            memcpy(x, den, n * sizeof *x);
            SDW_TRY(sdw_run_step_done(c, i));
            continue;
        }
        float coeff[4];
        for (int j = 0; j < n_ds; j++) coeff[j] = (float)lms_coeff(n_ds, s->sigmas, i, j);
        for (size_t k = 0; k < n; k++) {
            float acc = coeff[0] * ds[k];
            for (int j = 1; j < n_ds; j++) acc = acc + coeff[j] * ds[(size_t)j * n + k];
            x[k] = x[k] + acc;
        }
        SDW_TRY(sdw_run_step_done(c, i));
    }
    return SDW_OK;
}

sdw_status sdw_run_lms(sdw_run_ctx *c, int start)
{
    float *buf = alloc_floats(c->n, 5);
    if (!buf) return sdw_fail(SDW_ERR_NOMEM, "lms: out of memory");
    sdw_status st = run_lms(c, start, buf, buf + 4 * c->n);
    free(buf);
    return st;
}

/* ---- ipndm ---- */

/* k-diffusion sample_ipndm (max order 4): Adams-Bashforth in sigma on the
 * derivatives d = (x - denoised) / sigma with the fixed-step weights, the
 * order rising by one per step of the run; onto sigma 0, x = denoised. */
static sdw_status run_ipndm(sdw_run_ctx *c, int start, float *ds, float *den)
{
    const sdw_sampler *s = c->s;
    const size_t n = c->n;
    float *x = c->x;
    int n_ds = 0;   /* ds + j*n, j = 0 the newest */
    for (int i = start; i < s->n; i++) {
        const float sigma = s->sigmas[i], next = s->sigmas[i + 1], dt = next - sigma;
        SDW_TRY(sdw_run_denoise_ve(c, x, sigma, s->timesteps[i], den));
        memmove(ds + n, ds, (size_t)(n_ds < 4 ? n_ds : 3) * n * sizeof *ds);
        for (size_t k = 0; k < n; k++) ds[k] = (x[k] - den[k]) / sigma;
        if (n_ds < 4) n_ds++;
        const float *d1 = ds, *d2 = ds + n, *d3 = ds + 2 * n, *d4 = ds + 3 * n;
        for (size_t k = 0; k < n; k++) {
            if (next == 0) x[k] = den[k];
            else if (n_ds == 1) x[k] = x[k] + dt * d1[k];
            else if (n_ds == 2) x[k] = x[k] + dt * (3 * d1[k] - d2[k]) / 2;
            else if (n_ds == 3) x[k] = x[k] + dt * (23 * d1[k] - 16 * d2[k] + 5 * d3[k]) / 12;
            else x[k] = x[k] + dt * (55 * d1[k] - 59 * d2[k] + 37 * d3[k] - 9 * d4[k]) / 24;
        }
        SDW_TRY(sdw_run_step_done(c, i));
    }
    return SDW_OK;
}

sdw_status sdw_run_ipndm(sdw_run_ctx *c, int start)
{
    float *buf = alloc_floats(c->n, 5);
    if (!buf) return sdw_fail(SDW_ERR_NOMEM, "ipndm: out of memory");
    sdw_status st = run_ipndm(c, start, buf, buf + 4 * c->n);
    free(buf);
    return st;
}
