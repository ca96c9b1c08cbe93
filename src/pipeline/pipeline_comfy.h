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
/* After the loop: the model sampling's inverse_noise_scaling, and the
 * latents to p->latents_out when asked. */
void sdw_comfy_finish(sdw_run *r, float *x);
#endif
