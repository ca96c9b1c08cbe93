/* control.c: see control.h. The rules, per unit at step i of the N steps run:
 *
 *   active     diffusers: keep = 1 - (i / N < start or (i + 1) / N > end); an
 *              inactive unit's residuals would be multiplied by 0, so it is
 *              not run at all.
 *   BALANCED   diffusers' normal mode (A1111 "Balanced"): the net sees the
 *              UNet's whole batch (both CFG halves), every residual * scale.
 *   guess      diffusers' guess_mode (params.control_guess): with CFG the net
 *              sees only the conditional half, the unconditional half gets
 *              zeros; residual k of n * scale * logspace(-1, 0, n + 1)[k] (the
 *              middle one: * scale), with or without CFG.
 *   PROMPT     A1111 "My prompt is more important". sd-webui-controlnet
 *              (scripts/controlnet.py) sets soft_injection = (mode !=
 *              BALANCED) and cfg_injection = (mode == CONTROL); hook.py then
 *              scales with soft injection
 *                  control_scales = [weight * 0.825 ** float(12 - i) for i in range(13)]
 *              zipped with the residuals in order (SDXL keeps the first 10:
 *              its 9 down residuals get 0.825^12 .. 0.825^4, its middle one
 *              0.825^3), both halves.
 *   CONTROLNET A1111 "ControlNet is more important": the same soft scales, and
 *              cfg_injection multiplies the residuals by cond_mark (1 on the
 *              conditional rows, 0 on the unconditional ones), which is the
 *              net run on the conditional half only (its rows do not mix).
 *              Without CFG every row is conditional.
 * Units sum their residuals (diffusers' MultiControlNetModel, in unit order).
 */
#include "pipeline/control.h"
#include "models/controlnet.h"
#include "core/error.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RES (SDW_CONTROLNET_MAX_RES + 1)   /* down residuals + the middle one */

struct sdw_control_run {
    int n_down, B, nb, n_units;
    int hwc[MAX_RES][3];                 /* residual k: {Hi, Wi, Ci} */
    float *block;                        /* every residual buffer, one allocation */
    float *res[MAX_RES];                 /* [nb, Hi, Wi, Ci] NHWC; res[n_down] = the middle one */
    const float *down_c[SDW_CONTROLNET_MAX_RES];
    float *hint[SDW_MAX_CONTROLS];       /* [nb, H, W, 3]: each unit's image for every batch row */
    float *x4;                           /* 9-channel bases: the 4 latent channels [nb, h, w, 4] */
    float *obs;                          /* NCHW scratch for the observer (NULL without one) */
    int evals;
};

/* ---------------------------------------------------------------- the rules */

bool sdw_control_active(const sdw_control_unit *u, int i, int n)
{
    /* The reference compares Python floats with the user's numbers; start and
     * end are floats here, so the fractions are rounded to float too, and a
     * boundary as written (start 0.2 at step 1 of 5) stays inside. */
    float a = (float)((double)i / n), b = (float)((double)(i + 1) / n);
    return !(a < u->start || b > u->end);
}

bool sdw_control_cond_only(const sdw_control_unit *u, bool guess) { return guess || u->mode == SDW_CONTROL_CONTROLNET; }

/* torch.logspace(-1, 0, steps)[k] in float32 as ATen computes it: a float
 * step, exponents from the near end, pow in double, rounded to float. */
static float logspace_w(int k, int steps)
{
    float step = 1.0f / (float)(steps - 1);
    float e = k < steps / 2 ? -1.0f + step * (float)k : 0.0f - step * (float)(steps - k - 1);
    return (float)pow(10.0, (double)e);
}

void sdw_control_scales(const sdw_control_unit *u, bool guess, int i, int n, int n_down, float *scales)
{
    double base = sdw_control_active(u, i, n) ? (double)u->scale : 0.0;
    for (int k = 0; k <= n_down; k++) {
        double w = 1.0;
        if (guess) w = logspace_w(k, n_down + 1);
        else if (u->mode != SDW_CONTROL_BALANCED) w = pow(0.825, (double)(12 - k));
        scales[k] = (float)(base * w);
    }
}

/* ---------------------------------------------------------------- checks */

sdw_status sdw_control_validate(const sdw_model *m, const sdw_pipeline_params *p)
{
    if (p->n_controls == 0) return SDW_OK;
    if (p->n_controls < 0 || p->n_controls > SDW_MAX_CONTROLS)
        return sdw_fail(SDW_ERR_INVALID_ARG, "at most %d ControlNet units (got %d)", SDW_MAX_CONTROLS, p->n_controls);
    if (!p->controls) return sdw_fail(SDW_ERR_INVALID_ARG, "%d ControlNet units but no list of them", p->n_controls);
    if (!m->unet)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "ControlNet works with SD1, SD2 and SDXL models, not %s",
                        sdw_family_name(m->info.family));
    const sdw_unet_config *base = sdw_unet_get_config(m->unet);
    for (int k = 0; k < p->n_controls; k++) {
        const sdw_control_unit *u = &p->controls[k];
        if (!u->net || !u->image) return sdw_fail(SDW_ERR_INVALID_ARG, "ControlNet unit %d has no %s", k, u->net ? "image" : "model");
        if (!(u->scale >= 0 && u->scale <= 2))
            return sdw_fail(SDW_ERR_INVALID_ARG, "ControlNet unit %d: weight must be in 0..2 (got %g)", k, u->scale);
        if (!(u->start >= 0 && u->end <= 1 && u->start < u->end))
            return sdw_fail(SDW_ERR_INVALID_ARG, "ControlNet unit %d: start and end must satisfy 0 <= start < end <= 1 (got %g, %g)",
                            k, u->start, u->end);
        if (u->mode != SDW_CONTROL_BALANCED && u->mode != SDW_CONTROL_PROMPT && u->mode != SDW_CONTROL_CONTROLNET)
            return sdw_fail(SDW_ERR_INVALID_ARG, "ControlNet unit %d: unknown control mode %d", k, (int)u->mode);
        /* Two rules for the same thing (which half, which weights): one at a time. */
        if (p->control_guess && u->mode != SDW_CONTROL_BALANCED)
            return sdw_fail(SDW_ERR_INVALID_ARG, "ControlNet unit %d: guess mode and a control mode other than balanced "
                            "cannot be combined", k);
        char name[48];
        snprintf(name, sizeof name, "ControlNet unit %d", k);
        SDW_TRY(sdw_controlnet_check_base(u->net, base, name));
    }
    return SDW_OK;
}

/* ---------------------------------------------------------------- a run */

static size_t res_numel(const sdw_control_run *c, int k) { return (size_t)c->hwc[k][0] * c->hwc[k][1] * c->hwc[k][2]; }

sdw_status sdw_control_begin(sdw_run *r, sdw_control_run **out)
{
    const sdw_pipeline_params *p = r->p;
    sdw_control_run *c = calloc(1, sizeof *c);
    if (!c) return sdw_pipeline_nomem();
    *out = c;
    c->n_units = p->n_controls;
    c->B = r->B;
    c->nb = r->cfg ? 2 * r->B : r->B;
    c->n_down = sdw_controlnet_residual_shapes(p->controls[0].net, r->h, r->w, c->hwc);
    if (c->n_down < 1 || c->n_down > SDW_CONTROLNET_MAX_RES)
        return sdw_fail(SDW_ERR_INVALID_ARG, "the ControlNet has %d residuals", c->n_down);
    size_t total = 0, most = (size_t)r->h * r->w * 4;
    for (int k = 0; k <= c->n_down; k++) {
        total += res_numel(c, k);
        if (res_numel(c, k) > most) most = res_numel(c, k);
    }
    if (!(c->block = malloc(total * c->nb * sizeof(float)))) return sdw_pipeline_nomem();
    float *at = c->block;
    for (int k = 0; k <= c->n_down; k++) {
        c->res[k] = at;
        if (k < c->n_down) c->down_c[k] = at;
        at += res_numel(c, k) * c->nb;
    }
    size_t px = (size_t)p->width * p->height * 3;
    for (int u = 0; u < c->n_units; u++) {
        if (!(c->hint[u] = malloc(px * c->nb * sizeof(float)))) return sdw_pipeline_nomem();
        for (int b = 0; b < c->nb; b++) memcpy(c->hint[u] + b * px, p->controls[u].image, px * sizeof(float));
    }
    if (sdw_unet_get_config(r->m->unet)->in_channels != 4 &&
        !(c->x4 = malloc((size_t)c->nb * r->h * r->w * 4 * sizeof(float))))
        return sdw_pipeline_nomem();
    if (p->observe && !(c->obs = malloc(most * c->nb * sizeof(float)))) return sdw_pipeline_nomem();
    return SDW_OK;
}

void sdw_control_end(sdw_control_run *c)
{
    if (!c) return;
    free(c->block);
    for (int u = 0; u < SDW_MAX_CONTROLS; u++) free(c->hint[u]);
    free(c->x4);
    free(c->obs);
    free(c);
}

/* The step this evaluation belongs to, counted in the steps run, and their
 * number (a lone evaluation without a sampler is step 0 of 1). */
static void step_of(const sdw_run *r, float t, int *i, int *n)
{
    const int k = sdw_run_step_of(r, t);
    *n = r->sampler ? sdw_sampler_steps(r->sampler) - r->first_step : 1;
    *i = k > r->first_step ? k - r->first_step : 0;
}

/* The ControlNet's latents: the UNet's own input, or its first 4 channels for a 9-channel inpainting base. */
static const float *latents4(sdw_control_run *c, const sdw_unet_input *in, int cin)
{
    if (cin == 4) return in->x;
    size_t px = (size_t)c->nb * in->H * in->W;
    for (size_t i = 0; i < px; i++) memcpy(c->x4 + i * 4, in->x + i * cin, 4 * sizeof(float));
    return c->x4;
}

static void observe(sdw_control_run *c, const sdw_run *r, const char *name, const float *nhwc, int N, int H, int W, int C)
{
    sdw_nhwc_to_nchw(nhwc, N, H, W, C, c->obs);
    int64_t shape[4] = { N, C, H, W };
    sdw_pipeline_observe(r, name, c->evals, c->obs, 4, shape);
}

sdw_status sdw_control_apply(sdw_control_run *c, sdw_run *r, float t, sdw_unet_input *in)
{
    const sdw_pipeline_params *p = r->p;
    const sdw_unet_config *uc = sdw_unet_get_config(r->m->unet);
    int i, n;
    step_of(r, t, &i, &n);
    float scales[SDW_MAX_CONTROLS][MAX_RES], used[SDW_MAX_CONTROLS];
    bool any = false;
    for (int u = 0; u < c->n_units; u++) {
        sdw_control_scales(&p->controls[u], p->control_guess, i, n, c->n_down, scales[u]);
        bool on = sdw_control_active(&p->controls[u], i, n);
        used[u] = on ? p->controls[u].scale : 0.0f;
        any |= on;
    }
    const bool first_seen = c->evals == 0 && p->observe;
    const float *x = any || p->observe ? latents4(c, in, uc->in_channels) : NULL;
    if (p->observe) {
        int64_t shape[1] = { c->n_units };
        sdw_pipeline_observe(r, "controlnet_scale", c->evals, used, 1, shape);
        /* What guess mode feeds the nets (the README's controlnet_in): the conditional half, else all. */
        bool half = r->cfg && p->control_guess;
        observe(c, r, "controlnet_in", x + (half ? (size_t)c->B * in->H * in->W * 4 : 0), half ? c->B : c->nb, in->H,
                in->W, 4);
    }
    in->down_res = NULL;
    in->mid_res = NULL;
    if (!any && !first_seen) {
        c->evals++;
        return SDW_OK;
    }
    for (int k = 0; k <= c->n_down; k++) memset(c->res[k], 0, res_numel(c, k) * c->nb * sizeof(float));
    for (int u = 0; u < c->n_units && any; u++) {
        const sdw_control_unit *cu = &p->controls[u];
        if (!sdw_control_active(cu, i, n)) continue;
        /* The rows this unit runs on: [uncond x B, cond x B], or the cond half only. */
        const int off = r->cfg && sdw_control_cond_only(cu, p->control_guess) ? c->B : 0, N = c->nb - off;
        const size_t px = (size_t)in->H * in->W;
        sdw_unet_input cin = { x + off * px * 4, N, in->H, in->W, in->timesteps + off,
                               in->context + (size_t)off * in->n_ctx * uc->context_dim, in->n_ctx,
                               in->y ? in->y + (size_t)off * uc->adm_in : NULL, NULL, NULL, NULL, NULL, NULL };
        float *down[SDW_CONTROLNET_MAX_RES];
        for (int k = 0; k < c->n_down; k++) down[k] = c->res[k] + off * res_numel(c, k);
        float *mid = c->res[c->n_down] + off * res_numel(c, c->n_down);
        SDW_TRY(sdw_controlnet_forward(r->m->be, &r->arena, cu->net, &cin, c->hint[u], scales[u], down, mid));
    }
    if (any) {
        in->down_res = c->down_c;
        in->mid_res = c->res[c->n_down];
    }
    if (first_seen) {
        for (int k = 0; k <= c->n_down; k++) {
            char name[32];
            if (k < c->n_down) snprintf(name, sizeof name, "down_res.%d", k);
            else snprintf(name, sizeof name, "mid_res");
            observe(c, r, name, c->res[k], c->nb, c->hwc[k][0], c->hwc[k][1], c->hwc[k][2]);
        }
    }
    c->evals++;
    return SDW_OK;
}
