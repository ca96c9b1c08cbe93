/* pipeline.h: txt2img, img2img and inpainting over a loaded model: prompt
 * encoding with classifier-free guidance, the initial noise, the sampler
 * loop with the UNet, inpaint conditioning or blending, and the VAE decode.
 *
 * Latents are kept in PyTorch's NCHW order between steps, so that every
 * random draw lands on the same element as in diffusers / ComfyUI / A1111;
 * they are transposed to NHWC only at the UNet and VAE boundaries. */
#ifndef SDW_PIPELINE_PIPELINE_H
#define SDW_PIPELINE_PIPELINE_H
#include "models/model.h"
#include "sampling/sampler.h"

#define SDW_MAX_SLG_LAYERS 16

/* Called once per sampling step; preview (if not NULL) is an RGB float image
 * [ph, pw, 3] in [0, 1] from the cheap latent projection. Return non-OK to
 * cancel the run. */
typedef struct {
    int step, total;          /* 1-based step just finished, steps in this run */
    double elapsed_s, eta_s;
    const float *preview;
    int preview_w, preview_h;
} sdw_progress;
typedef sdw_status (*sdw_progress_fn)(void *user, const sdw_progress *p);

/* Observes intermediate tensors (golden tests, --dump): name, data in NCHW
 * (or as described), and its shape. */
typedef void (*sdw_observe_fn)(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape);

/* One ControlNet unit (UNet families). The residuals are multiplied by
 * scale while the unit is active: at step i of the N steps run (after an
 * img2img / inpaint strength cut) when i / N >= start and (i + 1) / N <= end,
 * as diffusers' control_guidance_start / _end; several units sum. */
typedef enum {
    SDW_CONTROL_BALANCED,      /* diffusers' normal mode; A1111 "Balanced" */
    SDW_CONTROL_PROMPT,        /* A1111 "My prompt is more important" (sd-webui-controlnet's soft injection) */
    SDW_CONTROL_CONTROLNET,    /* A1111 "ControlNet is more important" (residuals on the conditional half only) */
} sdw_control_mode;
#define SDW_MAX_CONTROLS 8
typedef struct {
    const struct sdw_controlnet *net;
    const float *image;        /* [height, width, 3] in [0, 1] at the generation size, already preprocessed */
    float scale, start, end;   /* 1, 0, 1 by default */
    sdw_control_mode mode;
} sdw_control_unit;

/* One entry of a ComfyUI conditioning list (CONDITIONING in a workflow):
 * the model is evaluated once per entry and the entries' outputs are
 * averaged per latent pixel, weighted by strength over their area (ComfyUI's
 * calc_cond_batch: an area's own crop of the latents, its edges feathered
 * over 8 latent pixels where they are not the image border). */
typedef struct {
    const char *prompt;
    bool zero;                     /* ConditioningZeroOut: the embeddings and the pooled output are zeros */
    float strength;                /* 1 */
    int area_x, area_y, area_w, area_h;   /* ConditioningSetArea, in latent pixels (/8); area_w == 0: everywhere */
    float guidance;                /* FluxGuidance; < 0 = the run's */
    /* ConditioningSetTimestepRange (comfy mode): with timestep_range the entry counts at a model evaluation
       only while its sigma s has sigma(end_percent) <= s <= sigma(start_percent), sigma(p) the model
       sampling's percent_to_sigma (ComfyUI's calc_cond_batch with timestep_start / timestep_end) */
    bool timestep_range;
    float start_percent, end_percent;
} sdw_cond_entry;

typedef struct {
    const char *prompt;
    const char *negative_prompt;   /* NULL = none ("" for SD1/2; zeros for SDXL) */
    /* ComfyUI's conditioning lists (the workflow executor): when n_positive
     * > 0 they replace prompt and negative_prompt (n_negative 0 with cfg > 1:
     * an empty list is an error, as ComfyUI's). */
    const sdw_cond_entry *positive, *negative;
    int n_positive, n_negative;
    int width, height, steps;
    float cfg_scale;               /* <= 1: the conditional branch only */
    float guidance;                /* FLUX dev's distilled guidance (one evaluation a step); < 0 = the model's default */
    int t5_max_length;             /* SD3: T5 tokens (256 as diffusers, 77 as SAI / ComfyUI); 0 = the model's */
    /* SD3.5 skip-layer guidance: at step i (0-based) with steps * slg_start < i
     * < steps * slg_end, one more pass on the positive prompt with these
     * blocks left out, and v += slg_scale * (v_cond - v_skip). */
    int slg_layers[SDW_MAX_SLG_LAYERS];
    int n_slg_layers;              /* 0 = off */
    float slg_scale, slg_start, slg_end;
    uint64_t seed;
    sdw_rng_kind rng;
    sdw_sampler_kind sampler;
    sdw_schedule_kind schedule;
    float eta;                     /* DDIM */
    int clip_skip;                 /* A1111 numbering; 0 = family default */
    int batch_size;                /* images drawn from one noise tensor */
    const float *init_image;       /* [height, width, 3] in [0, 1], or NULL */
    const float *mask;             /* [height, width] in [0, 1], white = repaint, or NULL */
    float strength;                /* img2img / inpaint denoising strength in (0, 1] */
    sdw_progress_fn progress;
    void *progress_user;
    int preview_every;             /* 0 = no previews */
    int vae_tiling;                /* VAE decode in tiles: 1 on, 0 off, -1 (default) when larger than
                                      SDW_VAE_TILING_AUTO_PIXELS */
    sdw_observe_fn observe;
    void *observe_user;
    const sdw_control_unit *controls;   /* ControlNets (SD1 / SD2 / SDXL), or NULL */
    int n_controls;
    bool control_guess;            /* diffusers' guess mode: the nets see only the conditional half, and
                                      residual k of n is scaled by logspace(-1, 0, n + 1)[k] */
    /* ComfyUI's KSampler and KSamplerAdvanced (the workflow executor, comfy/)
     * run on latents, not images, with ComfyUI's sampling (comfy/samplers.py,
     * comfy/sample.py, model_sampling.py) instead of diffusers' img2img: */
    bool comfy;                    /* set by the executor; the fields below are read only then */
    const float *init_latents;     /* [batch_size, lc, h, w] NCHW, the model's scaled latents (ComfyUI's
                                      process_latent_in of a LATENT's samples); NULL = zeros (EmptyLatentImage) */
    const float *noise_mask;       /* [h, w] latent-space denoise mask, 1 = denoise (SetLatentNoiseMask,
                                      VAEEncodeForInpaint): KSamplerX0Inpaint's blending around every model call,
                                      and the mask / masked-image channels of a 9-channel inpainting model; NULL */
    int schedule_steps;            /* the schedule is laid out for this many steps, and the run takes steps
                                      [first_step, last_step) of it: KSampler with denoise d < 1 lays out
                                      int(steps / d) and runs the last steps; KSamplerAdvanced start/end_at_step */
    int first_step, last_step;
    bool add_noise;                /* noise = randn(latent shape) from a CPU generator seeded with seed, scaled by
                                      model_sampling.noise_scaling (max_denoise at sigma_max); false = none */
    bool leftover_noise;           /* KSamplerAdvanced return_with_leftover_noise: the run ends at its last
                                      step's sigma instead of forcing it to 0 */
    float *latents_out;            /* [batch_size, lc, h, w]: the final latents (scaled); no decode, images may be NULL */
    bool denoise_tail;             /* KSampler's denoise < 1 (sigmas[-(steps + 1):]): the run is the last
                                      last_step - first_step levels of the schedule, counted from its end; differs
                                      from first_step only where the schedule has more or fewer levels than
                                      schedule_steps (ddim_uniform, beta). false: KSamplerAdvanced's indices */
    /* ComfyUI's ModelSamplingSD3 / ModelSamplingFlux on the MODEL (comfy mode, flow models): the model
       sampling becomes ModelSamplingDiscreteFlow with shift comfy_shift (sd3: sigma(t) = S t / (1 + (S - 1) t),
       1000 sigmas) or ModelSamplingFlux with shift comfy_shift (flux: mu of e^mu / (e^mu + 1/t - 1), 10000
       sigmas); neither: the model's own (SD3 shift 3, FLUX dev mu 1.15, schnell unshifted) */
    bool comfy_sampling_sd3, comfy_sampling_flux;
    double comfy_shift;
} sdw_pipeline_params;

/* Above this many pixels the decode is tiled by default (memory stays bounded). */
#define SDW_VAE_TILING_AUTO_PIXELS (1024 * 1024)

void sdw_pipeline_params_init(sdw_pipeline_params *p);
/* images: [batch_size, height, width, 3] floats in [0, 1]. */
sdw_status sdw_pipeline_run(sdw_model *m, const sdw_pipeline_params *p, float *images);

/* The VAE on its own (ComfyUI's VAEDecode / VAEEncode). Latents are the
 * model's scaled ones, [batch, lc, h, w] NCHW; images [batch, h*8, w*8, 3]
 * in [0, 1]. decode tiles as vae_tiling says (pipeline params); encode
 * takes the posterior's mean (ComfyUI's DiagonalGaussianRegularizer with
 * sample=False): no random draw. */
sdw_status sdw_pipeline_decode(sdw_model *m, const float *latents, int batch, int h, int w, int vae_tiling,
                               float *images);
sdw_status sdw_pipeline_encode(sdw_model *m, const float *images, int batch, int height, int width, float *latents);

/* The cheap preview: latents [4 or 16, h, w] (NCHW, the model's latents) to
 * RGB [h, w, 3] in [0, 1] with the family's linear factors. */
void sdw_latent_preview(sdw_family f, const float *latents, int h, int w, float *rgb);
#endif
