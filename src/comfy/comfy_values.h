/* comfy_values.h: the values that flow between the nodes of a ComfyUI
 * workflow while comfy_exec.c runs it, and what the node functions
 * (comfy_node_*.c) share: reading a node's inputs, making the model
 * current through the environment, and ComfyUI's resampling (torch's
 * interpolate) for images, masks and latents.
 *
 * Nothing heavy is built before a sampler needs it: MODEL, CLIP and VAE are
 * model specs (which files, which LoRAs at which strength), CONDITIONING is
 * a list of prompts with the CLIP that would encode them, CONTROL_NET is a
 * path. The pipeline does the encoding and the loading when a KSampler runs,
 * as one sdw_pipeline_run. Pixel and latent values are float arrays as
 * ComfyUI holds them: IMAGE [B, H, W, 3] in [0, 1], MASK [H, W] (1 = the
 * area to repaint), LATENT samples [B, C, h, w] NCHW, unscaled (what the VAE
 * encoder gives: ComfyUI's process_latent_in / _out convert at the sampler
 * and at the VAE).
 *
 * Every value lives until the run ends, so a value may point into another
 * one (a conditioning entry at its text and CLIP, a ControlNet unit at its
 * image) without copying. Internal to comfy/. */
#ifndef SDW_COMFY_VALUES_H
#define SDW_COMFY_VALUES_H
#include "pipeline/pipeline.h"   /* first: it declares struct sdw_controlnet, which comfy.h names */
#include "comfy/comfy.h"
#include <stdio.h>

/* CLIP: the files the text encoders come from (spec.path: a checkpoint,
 * or "" with clip_l / clip_g / t5 set) and the LoRAs on them (te_strength;
 * unet_strength 0), and CLIPSetLastLayer's choice as A1111's clip skip
 * (stop_at_clip_layer -1 -> 1, -2 -> 2; 0 = the family's default). */
typedef struct {
    sdw_comfy_model_spec spec;
    int clip_skip;
} sdw_cv_clip;

/* One ControlNet application (ControlNetApplyAdvanced) carried by a
 * conditioning entry. id tells applications apart: every entry of the
 * positive and negative lists that one node touched gets the same id. */
typedef struct {
    int id;
    const char *path;
    const float *image;       /* [image_h, image_w, 3] in [0, 1]: the IMAGE's first picture */
    int image_w, image_h;
    float strength, start_percent, end_percent;
} sdw_cv_control;

/* One CONDITIONING entry: what sdw_cond_entry says, plus the CLIP. */
typedef struct {
    const char *text;
    const sdw_cv_clip *clip;
    bool zero;
    float strength;
    int area_x, area_y, area_w, area_h;   /* latent pixels; area_w 0 = everywhere */
    float guidance;                       /* < 0 = the run's */
    sdw_cv_control controls[SDW_MAX_CONTROLS];
    int n_controls;
    bool timestep_range;                  /* ConditioningSetTimestepRange: start / end percent */
    float start_percent, end_percent;
} sdw_cv_cond;

/* LATENT. channels 0 with samples NULL: EmptyLatentImage's zeros, whose
 * channel count is the model's (ComfyUI's fix_empty_latent_channels). The
 * noise mask (SetLatentNoiseMask, VAEEncodeForInpaint) is at its own size,
 * resized to h x w by the sampler as ComfyUI's prepare_mask does. */
typedef struct {
    int batch, channels, h, w;
    float *samples;           /* [batch, channels, h, w] or NULL */
    float *noise_mask;        /* [mask_h, mask_w] or NULL */
    int mask_h, mask_w;
} sdw_cv_latent;

typedef struct {
    int batch, h, w;
    float *data;              /* [batch, h, w, 3] */
} sdw_cv_image;

typedef struct {
    int h, w;
    float *data;              /* [h, w] */
} sdw_cv_mask;

typedef struct sdw_cvalue {
    sdw_comfy_type type;
    union {
        sdw_comfy_model_spec model;   /* MODEL: LoRAs with unet_strength (te 0) */
        sdw_cv_clip clip;
        sdw_comfy_model_spec vae;     /* VAE: path = the checkpoint, or "" with vae = the file */
        struct {
            sdw_cv_cond *e;
            int n;
        } cond;
        sdw_cv_latent latent;
        sdw_cv_image image;
        sdw_cv_mask mask;
        char controlnet[4096];        /* CONTROL_NET: the file */
        struct {
            bool add;                 /* DisableNoise: false */
            double seed;
        } noise;                      /* NOISE */
        struct {
            sdw_comfy_model_spec model;
            const struct sdw_cvalue *positive, *negative;   /* negative NULL: BasicGuider (cfg 1) */
            double cfg;
        } guider;                     /* GUIDER */
        char sampler[32];             /* SAMPLER: KSamplerSelect's name */
        struct {
            sdw_comfy_model_spec model;   /* whose model sampling lays the schedule out */
            char scheduler[32];
            int steps;
            double denoise;
        } sigmas;                     /* SIGMAS: BasicScheduler's recipe (the pipeline computes the sigmas) */
    };
} sdw_cvalue;

/* The state of one run. */
typedef struct sdw_comfy_exec {
    const sdw_comfy_graph *g;
    const sdw_comfy_env *env;
    sdw_cvalue *(*values)[SDW_COMFY_MAX_OUTPUTS];   /* [n_nodes][output slot] */
    bool *done, *busy;
    char **strings;           /* strings the values point at (LoRA paths) */
    int n_strings, cap_strings;
    sdw_comfy_model_spec cur; /* what env->model last made current */
    bool have_cur;
    sdw_model *model;
    int failed;               /* the node that failed (index into g->nodes), or -1 */
    int next_control_id;
} sdw_comfy_exec;

/* A node's function: reads its inputs, fills out[k] for each output slot
 * (sdw_cv_new); output nodes report through the environment instead. */
typedef sdw_status (*sdw_comfy_node_fn)(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);

/* The node functions, by file. */
sdw_status sdw_node_checkpoint_loader(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_unet_loader(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_clip_loader(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_vae_loader(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_lora_loader(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_controlnet_loader(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);

sdw_status sdw_node_clip_text_encode(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_clip_set_last_layer(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_conditioning_combine(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_conditioning_set_area(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_conditioning_zero_out(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_flux_guidance(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_controlnet_apply_advanced(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_conditioning_set_timestep_range(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);

/* comfy_node_model.c */
sdw_status sdw_node_model_sampling_sd3(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_model_sampling_flux(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);

sdw_status sdw_node_empty_latent(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_empty_sd3_latent(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_latent_upscale(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_set_latent_noise_mask(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_vae_encode(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_vae_encode_for_inpaint(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_vae_decode(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);

sdw_status sdw_node_ksampler(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_ksampler_advanced(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_sampler_custom_advanced(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
/* comfy_node_model.c: the custom sampler's parts */
sdw_status sdw_node_random_noise(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_disable_noise(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_basic_guider(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_cfg_guider(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_ksampler_select(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_basic_scheduler(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);

sdw_status sdw_node_load_image(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_load_image_mask(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_save_image(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_preview_image(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_image_scale(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);
sdw_status sdw_node_canny(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out);

/* ---------------------------------------------------------------- the executor (comfy_exec.c) */

/* sdw_comfy_run that hands the run's state, with every node's values, to
 * the caller (*keep, also on failure; tests look at the values), to free
 * with sdw_comfy_exec_free. */
sdw_status sdw_comfy_run_keep(const sdw_comfy_graph *g, const sdw_comfy_env *env, int *failed_node,
                              sdw_comfy_exec **keep);
void sdw_comfy_exec_free(sdw_comfy_exec *x);
/* Runs node i after its inputs (those not run yet); once. */
sdw_status sdw_cx_ensure(sdw_comfy_exec *x, int i);
/* A node's output value (NULL when it has not run). */
const sdw_cvalue *sdw_cx_value(const sdw_comfy_exec *x, int node, int slot);

/* ---------------------------------------------------------------- helpers (comfy_exec.c) */

/* A zeroed value of type t; NULL when out of memory. */
sdw_cvalue *sdw_cv_new(sdw_comfy_type t);
void sdw_cv_free(sdw_cvalue *v);

/* The value linked to input `name` of n, checked to be of type t. Required
 * inputs that are missing fail naming the input; an optional one leaves
 * *out NULL. */
sdw_status sdw_cx_link(sdw_comfy_exec *x, const sdw_comfy_node *n, const char *name, sdw_comfy_type t,
                       const sdw_cvalue **out);
/* A widget value (INT, FLOAT, BOOLEAN) / a STRING or COMBO value; def / ""
 * when the input is absent from the spec. */
double sdw_cx_num(const sdw_comfy_node *n, const char *name, double def);
const char *sdw_cx_str(const sdw_comfy_node *n, const char *name);
/* A copy kept until the run ends; NULL when out of memory. */
const char *sdw_cx_keep(sdw_comfy_exec *x, const char *s);
/* A folder name to its path through env->resolve. */
sdw_status sdw_cx_resolve(sdw_comfy_exec *x, sdw_comfy_folder f, const char *name, char *path, size_t n);

/* Makes spec current through env->model (remembered, so that VAE nodes can
 * reuse it). */
sdw_status sdw_cx_model(sdw_comfy_exec *x, const sdw_comfy_model_spec *spec, sdw_model **m);
/* The model a VAE node runs on for this VAE value: the current one when it
 * holds that VAE, else the checkpoint's, or (VAELoader before any sampler)
 * the model of the first sampler still to run with that VAE file. */
sdw_status sdw_cx_vae_model(sdw_comfy_exec *x, const sdw_comfy_model_spec *vae, sdw_model **m);
/* The file of the graph's VAELoader (when all of them name one file) into
 * an empty vae: a sampler's spec then holds the VAE its images will be
 * decoded with, and VAEDecode needs no other model. */
sdw_status sdw_cx_graph_vae(sdw_comfy_exec *x, char *vae, size_t n);
/* The merged model spec of a sampler: the MODEL chain's files and LoRAs
 * (unet strengths) with the CLIP's text encoder files and LoRAs (te
 * strengths), one sdw_lora_spec per file. Fails when the CLIP comes from
 * another checkpoint than the MODEL. */
sdw_status sdw_cx_merge_spec(sdw_comfy_exec *x, const sdw_comfy_model_spec *model, const sdw_cv_clip *clip,
                             sdw_comfy_model_spec *out);
bool sdw_cx_spec_equal(const sdw_comfy_model_spec *a, const sdw_comfy_model_spec *b);
/* Adds a LoRA to a spec (strengths summed when the file is there already,
 * as ComfyUI's patches add). */
sdw_status sdw_cx_add_lora(sdw_comfy_exec *x, sdw_comfy_model_spec *spec, const char *path, float te, float unet);

/* ---------------------------------------------------------------- latents (comfy_node_latent.c) */

/* ComfyUI's process_latent_in: the model's scaled latents (x - shift) *
 * scale of l, [batch, channels, h, w] malloc'd, for a model with `channels`
 * latent channels. An empty latent (or any all-zero one, as ComfyUI's
 * fix_empty_latent_channels) takes the model's channel count; other
 * mismatches fail. */
sdw_status sdw_cx_latent_in(const sdw_cv_latent *l, const sdw_model_info *info, float **out);
/* A new LATENT value equal to l (noise mask included). */
sdw_status sdw_cx_latent_copy(const sdw_cv_latent *l, sdw_cvalue **out);
/* process_latent_out into a new LATENT value: x / scale + shift. */
sdw_status sdw_cx_latent_out(const float *scaled, int batch, int h, int w, const sdw_model_info *info,
                             sdw_cvalue **out);

/* ---------------------------------------------------------------- resampling (comfy_resize.c) */

/* torch.nn.functional.interpolate's modes, as comfy.utils.common_upscale calls them. */
typedef enum { SDW_UP_NEAREST_EXACT, SDW_UP_BILINEAR, SDW_UP_AREA, SDW_UP_BICUBIC, SDW_UP_LANCZOS } sdw_upscale_method;
/* "nearest-exact", "bilinear", "area", "bicubic", "lanczos"; anything else fails naming it. */
sdw_status sdw_upscale_method_parse(const char *s, sdw_upscale_method *out);

/* One plane: in is H x W with element (y, x) at in[y * row + x * px], out
 * OH x OW at out[y * orow + x * opx]. Not lanczos (that is PIL's, on 8-bit
 * images: sdw_resize_image). */
void sdw_resize_plane(const float *in, int H, int W, ptrdiff_t row, ptrdiff_t px, float *out, int OH, int OW,
                      ptrdiff_t orow, ptrdiff_t opx, sdw_upscale_method m);
/* common_upscale's crop "center": the offsets and size of the part of an
 * H x W plane kept for an OH x OW target (Python's round, half to even). */
void sdw_center_crop(int H, int W, int OH, int OW, int *y0, int *x0, int *h, int *w);
/* common_upscale on images [B, H, W, C]: optional centre crop, then the
 * method (lanczos: PIL on the 8-bit image, as ComfyUI does). out is
 * [B, OH, OW, C], malloc'd. */
sdw_status sdw_resize_image(const float *in, int B, int H, int W, int C, int OH, int OW, sdw_upscale_method m,
                            bool center, float **out);
#endif
