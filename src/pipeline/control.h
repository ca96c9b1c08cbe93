/* control.h: ControlNets in the UNet denoiser (denoise_unet.c). Per model
 * evaluation at step i of the N steps run (after an img2img / inpaint
 * strength cut), each ControlNet unit that is active at i runs on its batch
 * half with its per-residual scales, and the residuals of all units sum into
 * buffers that the UNet adds to its skip tensors and middle output
 * (sdw_unet_input.down_res / mid_res).
 *
 * The rules (diffusers 0.27 for BALANCED and guess mode, sd-webui-controlnet's
 * scripts/hook.py for A1111's two other control modes) are in control.c. */
#ifndef SDW_PIPELINE_CONTROL_H
#define SDW_PIPELINE_CONTROL_H
#include "pipeline/denoiser.h"

typedef struct sdw_control_run sdw_control_run;

/* Checks p's ControlNet units against m: a UNet family, each net made for this base, ranges of scale, start,
 * end and mode. Fails with a message naming the unit. */
sdw_status sdw_control_validate(const sdw_model *m, const sdw_pipeline_params *p);

/* Whether unit u acts at step i of the n steps run: i / n >= start and (i + 1) / n <= end
 * (diffusers' control_guidance_start / _end). */
bool sdw_control_active(const sdw_control_unit *u, int i, int n);
/* scales[k] for residual k of unit u at step i of n (k < n_down: the down residuals in order; k == n_down:
 * the middle one), under the unit's mode or diffusers' guess mode (guess); all 0 when u is not active. */
void sdw_control_scales(const sdw_control_unit *u, bool guess, int i, int n, int n_down, float *scales);
/* Whether u sees only the conditional half of a CFG batch (guess mode, or "ControlNet is more important"). */
bool sdw_control_cond_only(const sdw_control_unit *u, bool guess);

/* Allocates what the run's evaluations need (residual buffers, hints) for r: once per run. */
sdw_status sdw_control_begin(sdw_run *r, sdw_control_run **out);
/* For the UNet input `in` (the whole [uncond; cond] batch, its x NHWC with the base's channels) at the
 * sampler's timestep t: runs the active units and points in->down_res / mid_res at their summed residuals
 * (NULL when no unit acts at this step). Observes "controlnet_in", "controlnet_scale" and, at the first
 * evaluation, "down_res.K" / "mid_res" (NCHW, both halves). */
sdw_status sdw_control_apply(sdw_control_run *c, sdw_run *r, float t, sdw_unet_input *in);
void sdw_control_end(sdw_control_run *c);
#endif
