/* denoiser.h: what the pipeline needs of a family's denoising network, and
 * the run state it shares with it. The pipeline (pipeline.c) owns the
 * latents, the random draws, img2img / inpainting and the VAE; a denoiser
 * turns prompts into its conditioning once per run, and latents at a
 * timestep into the guided raw output (eps, v or the flow velocity, as the
 * model's parametrisation says) every evaluation. A new family adds one
 * file with one sdw_denoiser_ops, not branches in the pipeline or samplers.
 *
 * Latents are NCHW [B, lc, h, w] on both sides, as the reference draws them. */
#ifndef SDW_PIPELINE_DENOISER_H
#define SDW_PIPELINE_DENOISER_H
#include "pipeline/pipeline.h"
#include "core/arena.h"

/* Everything one run needs, owned by the pipeline and freed at its end. */
typedef struct sdw_run {
    sdw_model *m;
    const sdw_pipeline_params *p;
    int B, h, w, lc;              /* batch, latent size, latent channels */
    bool cfg;                     /* two evaluations a step: negative and positive */
    float *mask_lat;              /* inpaint: [h, w] binary latent mask */
    float *masked_lat;            /* 9-ch inpaint: [lc, h, w] masked-image latents (scaled) */
    float *image_lat;             /* img2img / inpaint: [lc, h, w] image latents (scaled) */
    float *noise;                 /* [B, lc, h, w] */
    float *image_batch;           /* image_lat for each batch item, [B, lc, h, w] */
    float *keep;                  /* 4-ch inpaint: image_batch noised to the next step (the loop allocates nothing) */
    sdw_sampler *sampler;
    sdw_arena arena;
    double t0;
    int first_step;
    float *preview;
    const struct sdw_denoiser_ops *ops;
    void *state;                  /* the denoiser's conditioning and scratch */
    /* comfy mode (pipeline_comfy.c): */
    float *comfy_latent;          /* [B, lc, h, w] the LATENT's samples (zeros for an empty latent) */
    float *comfy_inpaint_noise;   /* [B, lc, h, w] KSamplerX0Inpaint's noise (noise_mask runs) */
    float comfy_sigma;            /* the sigma of the model evaluation in progress (runs with timestep ranges:
                                     pipeline_comfy.c's hook sets it, cond_list.c reads it) */
} sdw_run;

typedef struct sdw_denoiser_ops {
    /* Encodes the prompts and allocates what predict needs into r->state. */
    sdw_status (*prepare)(sdw_run *r);
    /* x [B, lc, h, w] at timestep t (the sampler's: sigma * 1000 for flow) -> out, guided. */
    sdw_status (*predict)(sdw_run *r, const float *x, float t, float *out);
    void (*release)(sdw_run *r);
} sdw_denoiser_ops;

extern const sdw_denoiser_ops sdw_unet_denoiser;   /* denoise_unet.c: SD1 / SD2 / SDXL */
extern const sdw_denoiser_ops sdw_flux_denoiser;   /* denoise_flux.c: FLUX.1 */
extern const sdw_denoiser_ops sdw_sd3_denoiser;    /* denoise_sd3.c: SD3 / SD3.5 */

sdw_status sdw_pipeline_nomem(void);
void sdw_pipeline_observe(const sdw_run *r, const char *name, int step, const float *x, int ndim,
                          const int64_t *shape);
/* The step of the schedule an evaluation at timestep t belongs to: its
 * timestep's index (a second evaluation between two steps belongs to the
 * first); 0 without a sampler (a bench's lone evaluation). */
int sdw_run_step_of(const sdw_run *r, float t);
/* out = uncond + g * (cond - uncond) over n floats (out may be uncond). */
void sdw_cfg_combine(const float *uncond, const float *cond, float g, size_t n, float *out);
#endif
