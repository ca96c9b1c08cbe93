/* pipeline_comfy.h: the comfy mode of a pipeline run (pipeline.h, p->comfy):
 * ComfyUI's KSampler / KSamplerAdvanced on latents, used by pipeline.c. */
#ifndef SDW_PIPELINE_PIPELINE_COMFY_H
#define SDW_PIPELINE_PIPELINE_COMFY_H
#include "pipeline/denoiser.h"

/* The comfy fields of p: step range, latents, mask, outputs. */
sdw_status sdw_comfy_validate(const sdw_model *m, const sdw_pipeline_params *p);
/* After the sampler is made: cuts its schedule to [first_step, last_step),
 * draws the noise, fills x [B, lc, h, w] with noise_scaling, sets the 9-channel
 * inpainting inputs and the mask blending hook. *run is false when the
 * range leaves no step (x is then the latent, as ComfyUI returns it). */
sdw_status sdw_comfy_prepare(sdw_run *r, float *x, bool *run);
/* The flow model sampling ModelSamplingSD3 / ModelSamplingFlux set (p's
 * comfy_sampling_*): the shift mu and the sigma table's size, as the
 * sampler takes them; untouched without either. */
void sdw_comfy_flow_sampling(const sdw_model *m, const sdw_pipeline_params *p, double *mu, int *table);
/* The model sampling's percent_to_sigma (ComfyUI's model_sampling.py): the
 * sigma at 1 - percent of the way through the model's timesteps; percent
 * <= 0: its largest (999999999.9 for eps / v, 1 for flow), >= 1: 0. */
double sdw_comfy_percent_to_sigma(const sdw_model *m, const sdw_pipeline_params *p, double percent);
/* After the loop: the model sampling's inverse_noise_scaling, and the
 * latents to p->latents_out when asked. */
void sdw_comfy_finish(sdw_run *r, float *x);
#endif
