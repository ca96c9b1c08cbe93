/* comfy_node_model.c: the nodes that patch a MODEL's sampling, as ComfyUI's
 * comfy_extras/nodes_model_advanced.py does with an object patch on
 * "model_sampling". Nothing is loaded: the MODEL value (a model spec) carries
 * the choice to the sampler, whose pipeline run lays its schedule out, scales
 * its noise and turns timestep-range percents into sigmas with it
 * (pipeline.h comfy_sampling_*, pipeline_comfy.c). A later patch replaces an
 * earlier one, as a second object patch does.
 *
 *   ModelSamplingSD3    ModelSamplingDiscreteFlow with `shift` (CONST flow,
 *                       multiplier 1000): SD3 / SD3.5
 *   ModelSamplingFlux   ModelSamplingFlux with the shift (mu) interpolated
 *                       linearly in the image's 2x2 latent patches between
 *                       base_shift at 256 and max_shift at 4096: FLUX
 * The pipeline refuses either on a model of another family (ComfyUI would
 * run it with timesteps of the wrong scale).
 *
 * And the parts SamplerCustomAdvanced (comfy_node_sampling.c) puts together,
 * each a recipe for the one pipeline run it makes:
 *   RandomNoise / DisableNoise   NOISE: the seed of prepare_noise / none
 *   BasicGuider / CFGGuider      GUIDER: the model and the conditionings
 *                                (BasicGuider: positive only, cfg 1)
 *   KSamplerSelect               SAMPLER: the sampler's name
 *   BasicScheduler               SIGMAS: scheduler, steps and denoise over
 *                                its model's sampling (calculate_sigmas for
 *                                int(steps / denoise) steps, the last steps + 1
 *                                kept), computed by the pipeline */
#include "comfy/comfy_values.h"
#include "core/error.h"

static sdw_status patched(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const sdw_cvalue *model;
    SDW_TRY(sdw_cx_link(x, n, "model", SDW_CT_MODEL, &model));
    if (!(out[0] = sdw_cv_new(SDW_CT_MODEL))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    out[0]->model = model->model;
    return SDW_OK;
}

sdw_status sdw_node_model_sampling_sd3(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    SDW_TRY(patched(x, n, out));
    sdw_comfy_model_spec *m = &out[0]->model;
    m->sampling_sd3 = true;
    m->sampling_flux = false;
    m->sampling_shift = sdw_cx_num(n, "shift", 3.0);
    return SDW_OK;
}

sdw_status sdw_node_model_sampling_flux(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    SDW_TRY(patched(x, n, out));
    const double max_shift = sdw_cx_num(n, "max_shift", 1.15), base_shift = sdw_cx_num(n, "base_shift", 0.5);
    const double width = sdw_cx_num(n, "width", 1024), height = sdw_cx_num(n, "height", 1024);
    /* x1 = 256, x2 = 4096 latent patches; Python floats */
    const double mm = (max_shift - base_shift) / (4096 - 256), b = base_shift - mm * 256;
    sdw_comfy_model_spec *m = &out[0]->model;
    m->sampling_flux = true;
    m->sampling_sd3 = false;
    m->sampling_shift = (width * height / (8 * 8 * 2 * 2)) * mm + b;
    return SDW_OK;
}

sdw_status sdw_node_random_noise(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    (void)x;
    if (!(out[0] = sdw_cv_new(SDW_CT_NOISE))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    out[0]->noise.add = true;
    out[0]->noise.seed = sdw_cx_num(n, "noise_seed", 0);
    return SDW_OK;
}

sdw_status sdw_node_disable_noise(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    (void)x, (void)n;
    if (!(out[0] = sdw_cv_new(SDW_CT_NOISE))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    return SDW_OK;   /* Noise_EmptyNoise: zeros, seed 0 */
}

static sdw_status guider(sdw_comfy_exec *x, const sdw_comfy_node *n, const char *pos, const char *neg, double cfg,
                         sdw_cvalue **out)
{
    const sdw_cvalue *model, *p, *q = NULL;
    SDW_TRY(sdw_cx_link(x, n, "model", SDW_CT_MODEL, &model));
    SDW_TRY(sdw_cx_link(x, n, pos, SDW_CT_CONDITIONING, &p));
    if (neg) SDW_TRY(sdw_cx_link(x, n, neg, SDW_CT_CONDITIONING, &q));
    if (!(out[0] = sdw_cv_new(SDW_CT_GUIDER))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    out[0]->guider.model = model->model;
    out[0]->guider.positive = p;
    out[0]->guider.negative = q;
    out[0]->guider.cfg = cfg;
    return SDW_OK;
}

sdw_status sdw_node_basic_guider(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    return guider(x, n, "conditioning", NULL, 1.0, out);
}

sdw_status sdw_node_cfg_guider(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    return guider(x, n, "positive", "negative", sdw_cx_num(n, "cfg", 8.0), out);
}

sdw_status sdw_node_ksampler_select(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    (void)x;
    if (!(out[0] = sdw_cv_new(SDW_CT_SAMPLER))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    snprintf(out[0]->sampler, sizeof out[0]->sampler, "%s", sdw_cx_str(n, "sampler_name"));
    return SDW_OK;
}

sdw_status sdw_node_basic_scheduler(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const sdw_cvalue *model;
    SDW_TRY(sdw_cx_link(x, n, "model", SDW_CT_MODEL, &model));
    if (!(out[0] = sdw_cv_new(SDW_CT_SIGMAS))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    out[0]->sigmas.model = model->model;
    snprintf(out[0]->sigmas.scheduler, sizeof out[0]->sigmas.scheduler, "%s", sdw_cx_str(n, "scheduler"));
    out[0]->sigmas.steps = (int)sdw_cx_num(n, "steps", 20);
    out[0]->sigmas.denoise = sdw_cx_num(n, "denoise", 1.0);
    return SDW_OK;
}
