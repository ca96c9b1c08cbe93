/* sdw.h: the public C API of libsdw, the Stable Diffusion inference library
 * behind sd-worker. The CLI and the server use only what is declared here.
 *
 * Conventions: every fallible call returns an sdw_status; on failure a message
 * naming the cause is kept per thread and read with sdw_last_error(). Handles
 * are opaque; whoever creates one frees it with the matching _free call. */
#ifndef SDW_H
#define SDW_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SDW_VERSION "0.1.0"

typedef enum {
    SDW_OK = 0,
    SDW_ERR_INVALID_ARG,   /* a parameter out of range or inconsistent */
    SDW_ERR_IO,            /* a file could not be opened, read or mapped */
    SDW_ERR_FORMAT,        /* a file or request is malformed */
    SDW_ERR_UNSUPPORTED,   /* well-formed but not something we handle */
    SDW_ERR_NOMEM,         /* allocation failed or a size limit was hit */
    SDW_ERR_BACKEND,       /* the compute backend failed */
    SDW_ERR_CANCELLED,     /* stopped on request */
} sdw_status;

/* The message of the last failure on this thread ("" if none). Valid until the
 * next failing call on the same thread. */
const char *sdw_last_error(void);
const char *sdw_status_name(sdw_status s);

typedef enum { SDW_LOG_DEBUG, SDW_LOG_INFO, SDW_LOG_WARN, SDW_LOG_ERROR } sdw_log_level;
typedef void (*sdw_log_fn)(sdw_log_level level, const char *msg, void *user);
/* Library messages go only here; NULL (the default) discards them. */
void sdw_set_log(sdw_log_fn fn, void *user, sdw_log_level min_level);

/* Compute precision. AUTO = BF16 where the CPU has native bf16 (AMX or
 * AVX-512-BF16), else F32. F32 is the exact path used by golden tests. */
typedef enum { SDW_PRECISION_AUTO, SDW_PRECISION_F32, SDW_PRECISION_BF16 } sdw_precision;
sdw_precision sdw_precision_resolve(sdw_precision p);
const char *sdw_precision_name(sdw_precision p);
/* Name of the instruction set oneDNN dispatches to ("avx512_core_amx", ...). */
const char *sdw_cpu_isa_name(void);
bool sdw_cpu_has_native_bf16(void);

/* ---- Tokenizer (CLIP BPE, the real 49408-token vocabulary built in) ---- */
#define SDW_CLIP_CONTEXT 77
#define SDW_CLIP_BOS 49406
#define SDW_CLIP_EOS 49407
typedef enum { SDW_PAD_EOS, SDW_PAD_ZERO } sdw_pad;
/* Tokenizes text into 77 ids: BOS, up to 75 BPE ids (more are dropped), EOS,
 * padding. If n_untruncated is not NULL it receives the BPE id count before
 * truncation. */
sdw_status sdw_tokenize(const char *text, sdw_pad pad, int32_t ids[SDW_CLIP_CONTEXT],
                        int *n_untruncated);
/* Tokenizes text into BPE ids only (no BOS/EOS, no limit). *ids is malloc'd;
 * the caller frees it. */
sdw_status sdw_tokenize_bpe(const char *text, int32_t **ids, int *n);

/* ---- Models ---- */
typedef enum {
    SDW_FAMILY_SD1, SDW_FAMILY_SD2, SDW_FAMILY_SDXL, SDW_FAMILY_SDXL_REFINER,
    SDW_FAMILY_FLUX_DEV, SDW_FAMILY_FLUX_SCHNELL,   /* FLUX.1: transformer + T5-XXL + CLIP-L + 16-channel VAE */
    SDW_FAMILY_SD3, SDW_FAMILY_SD35_MEDIUM, SDW_FAMILY_SD35_LARGE,   /* MMDiT + CLIP-L, CLIP-G, T5-XXL + 16-ch VAE */
} sdw_family;
const char *sdw_family_name(sdw_family f);
bool sdw_family_is_flux(sdw_family f);
bool sdw_family_is_sd3(sdw_family f);
/* What the denoising network predicts: noise, v, or the rectified-flow
 * velocity (noise - x0; FLUX, SD3). */
typedef enum { SDW_PREDICTION_AUTO, SDW_PREDICTION_EPS, SDW_PREDICTION_V, SDW_PREDICTION_FLOW } sdw_prediction;
const char *sdw_prediction_name(sdw_prediction p);

/* How large linear layers hold their weights. KEEP: as stored (GGUF blocks
 * and float8 stay compact, and bf16 does in f32 precision: the same values
 * at half the bytes), other dtypes dense in the compute precision. A target
 * type (BF16, Q8_0, ..., Q4_0) converts the layers of at least 2^20 weights
 * whose file holds as many bits per weight or more, row by row from the
 * mapping; F32 makes every layer dense. Convolutions and vectors are never
 * converted. */
typedef enum {
    SDW_WT_KEEP, SDW_WT_F32, SDW_WT_BF16, SDW_WT_Q8_0, SDW_WT_Q5_1, SDW_WT_Q5_0, SDW_WT_Q4_1, SDW_WT_Q4_0,
    SDW_WT_COUNT
} sdw_weight_type;
/* "keep", "f32", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"
 * (case-insensitive); anything else fails with the list. */
sdw_status sdw_weight_type_parse(const char *name, sdw_weight_type *out);
const char *sdw_weight_type_name(sdw_weight_type t);

typedef struct {
    sdw_precision precision;
    sdw_prediction prediction;  /* AUTO: from the file, its configs, or the family rule */
    const char *vae_path;       /* a VAE file replacing the checkpoint's; NULL keeps it */
    bool with_vae_encoder;      /* img2img and inpainting need it; txt2img does not */
    int turbo;                  /* SDXL-Turbo defaults: -1 detect (default), 0 no, 1 yes */
    /* FLUX parts given as separate files (ComfyUI's clip_l.safetensors,
     * t5xxl_fp16 / fp8); NULL = from the model file or folder itself. */
    const char *clip_l_path;
    const char *clip_g_path;    /* SD3: CLIP-G (clip_g.safetensors) */
    const char *t5_path;
    bool no_t5;                 /* SD3: leave T5 out even where the file has it (its part of the context is zeros) */
    sdw_weight_type weight_type;   /* KEEP by default */
    /* FLUX: compact weights are read where the file holds them (mapped, not
     * copied); with page_out the T5's pages go back to the system after each
     * prompt is encoded and the transformer's before it, so the two are
     * never in memory at once: -1 when the weights would take more than 60%
     * of the RAM (the default), 0 never, 1 always. */
    int page_out;
} sdw_load_params;
sdw_load_params sdw_load_params_default(void);

typedef struct {
    sdw_family family;
    bool inpaint;                    /* 9-channel UNet input */
    sdw_prediction prediction;       /* EPS or V once resolved */
    char prediction_source[96];      /* "v_pred key", "scheduler config", "yaml", "override", "assumed: ..." */
    const char *layout;              /* "single-file" or "diffusers" */
    int n_tensors;                   /* in the checkpoint's files */
    int n_unknown;                   /* tensors outside every component (EMA copies, scheduler buffers) */
    int64_t params_unet, params_vae, params_text;   /* params_unet: the denoiser (UNet or transformer) */
    int64_t params_t5;               /* FLUX: the T5 encoder (not in params_text) */
    const char *denoiser;            /* "unet", "flux transformer" or "mmdit" */
    int t5_max_length;               /* FLUX: T5 tokens (512 dev, 256 schnell); SD3: 256; 0 = none (no T5) */
    float flow_shift;                /* SD3: the flow schedule's shift (3.0, or the model's own) */
    float default_guidance;          /* FLUX dev's distilled guidance (3.5); 0 = none */
    char dtypes[64];                 /* the file dtypes seen, e.g. "F16, I64" */
    bool turbo;                      /* SDXL-Turbo: from --preset turbo, the file name or its metadata */
    int default_width, default_height, default_steps;
    float default_cfg;
    const char *default_sampler, *default_scheduler;
    float latent_scale;              /* VAE scaling factor */
    float latent_shift;              /* VAE shift factor (FLUX 0.1159; 0 for SD) */
    int latent_channels;             /* 4, or 16 for FLUX */
    int size_multiple;               /* width and height must be multiples of this */
    sdw_precision precision;         /* compute precision once resolved */
    size_t weight_bytes;             /* weights held after loading (0 for a probe) */
} sdw_model_info;

typedef struct sdw_model sdw_model;
/* Loads a single-file checkpoint (with its sidecar MODEL.yaml if present) or a
 * diffusers folder. Weights are converted once to the compute precision and
 * the files are unmapped before this returns, except FLUX's transformer and
 * T5 files, whose compact weights (GGUF blocks, fp8, bf16 in f32 precision)
 * are used where they are mapped. */
sdw_status sdw_model_load(const char *path, const sdw_load_params *p, sdw_model **out);
/* What sdw_model_load would find, without loading any weights. */
sdw_status sdw_model_probe(const char *path, const sdw_load_params *p, sdw_model_info *info);
void sdw_model_free(sdw_model *m);
const sdw_model_info *sdw_model_get_info(const sdw_model *m);

/* ---- Generating images ----
 * txt2img, img2img (init_image) and inpainting (init_image + mask) through
 * one call, sdw_generate. Versioning: every struct below that a caller fills
 * or reads begins with size_t struct_size, the sizeof the caller was built
 * with. Fields are only ever added at the end; the library gives the fields
 * an older caller does not know their defaults, and refuses a struct from a
 * newer header (larger struct_size) unless the bytes it does not know are
 * all zero. The _default() initialisers are inline, so they fill exactly the
 * fields the caller's header has. */

/* All fields zero, in C and C++ (whose -Wextra warns on { 0 }). */
#ifdef __cplusplus
#define SDW_ZERO_INIT {}
#else
#define SDW_ZERO_INIT { 0 }
#endif

/* An 8-bit RGB image: width * height * 3 bytes, rows top to bottom, R G B
 * interleaved. A plain value (it is never extended): a new pixel format
 * would be a new type. Images the library returns are malloc'd and released
 * with sdw_image_rgb8_free (or sdw_gen_result_free). */
typedef struct {
    int width, height;
    uint8_t *data;
} sdw_image_rgb8;

/* Reads a PNG, JPEG or WebP file (format from its bytes) as RGB. Gray is
 * replicated; alpha is dropped (PIL's convert("RGB"), what img2img does with
 * an init image), or with over_white the colour is composited over white
 * (sd-webui-controlnet's HWC3, for control images). Errors name the file. */
sdw_status sdw_image_rgb8_load(const char *path, bool over_white, sdw_image_rgb8 *out);
/* Writes img by the extension of path (.png, .jpg / .jpeg, .webp). A
 * non-NULL parameters text goes where AUTOMATIC1111 and civitai read it: the
 * PNG "parameters" text chunk, the EXIF UserComment of JPEG and WebP. */
sdw_status sdw_image_rgb8_write(const char *path, const sdw_image_rgb8 *img, const char *parameters);
/* The same as a PNG in memory: *png is malloc'd (the caller frees it). */
sdw_status sdw_image_rgb8_encode_png(const sdw_image_rgb8 *img, const char *parameters, uint8_t **png, size_t *n);
/* The same in memory as format says ("png", "jpeg" / "jpg", "webp"; JPEG and
 * WebP at the quality sdw_image_rgb8_write uses): *out is malloc'd. */
sdw_status sdw_image_rgb8_encode(const sdw_image_rgb8 *img, const char *format, const char *parameters, uint8_t **out,
                                 size_t *n);
/* Frees the pixels and zeroes the struct; safe on a zeroed image. */
void sdw_image_rgb8_free(sdw_image_rgb8 *img);

/* A cancellation flag that another thread may raise while sdw_generate runs
 * (checked before the run and after every sampling step). */
typedef struct sdw_cancel sdw_cancel;
sdw_cancel *sdw_cancel_new(void);     /* NULL when out of memory */
void sdw_cancel_free(sdw_cancel *c);
void sdw_cancel_request(sdw_cancel *c);   /* thread-safe; NULL is ignored */
void sdw_cancel_reset(sdw_cancel *c);     /* lower the flag for the next run */
bool sdw_cancel_requested(const sdw_cancel *c);

/* A ControlNet loaded once and kept by the caller across calls (a server's
 * cache of nets), for sdw_gen_control.net. It is loaded for one model (on
 * its compute backend) and works with that model only: free it before the
 * model. */
typedef struct sdw_controlnet sdw_controlnet;
/* Loads a ControlNet file or diffusers folder for model. */
sdw_status sdw_controlnet_load_for(sdw_model *model, const char *path, sdw_controlnet **out);
/* Fails with SDW_ERR_INVALID_ARG, the message naming name, when cn was not
 * made for model's UNet (another family or shape, or a model without one). */
sdw_status sdw_controlnet_check_model(const sdw_controlnet *cn, const sdw_model *model, const char *name);
/* The bytes its weights hold. */
size_t sdw_controlnet_weight_bytes(const sdw_controlnet *cn);
void sdw_controlnet_free(sdw_controlnet *cn);   /* NULL is fine */

/* One LoRA (kohya, PEFT / diffusers, LyCORIS, DoRA .safetensors files). */
typedef struct {
    size_t struct_size;
    const char *path;
    float te_strength;       /* text encoder(s) */
    float unet_strength;     /* UNet or transformer */
} sdw_lora_ref;
static inline sdw_lora_ref sdw_lora_ref_make(const char *path, float te_strength, float unet_strength)
{
    sdw_lora_ref l = { sizeof(sdw_lora_ref), path, te_strength, unet_strength };
    return l;
}

/* One ControlNet unit (SD1, SD2, SDXL). The image is preprocessed (unless
 * the caller did: preprocessed), then fitted to the generation size when
 * its size differs. */
typedef struct {
    size_t struct_size;
    const char *path;            /* a ControlNet file or diffusers folder */
    sdw_image_rgb8 image;        /* the control image (or the picture to preprocess), any size */
    float scale;                 /* 1; 0..2 */
    float start, end;            /* 0, 1: the unit acts over this fraction of the steps */
    const char *preprocessor;    /* NULL / "none", "canny[:LOW:HIGH]", "invert", "threshold[:T]", "scribble" */
    const char *resize_mode;     /* NULL / "crop" (Crop and Resize), "just" (Just Resize), "fill" (Resize and Fill) */
    const char *control_mode;    /* NULL / "balanced", "prompt" (my prompt is more important), "controlnet" */
    /* Added after the first version (zero, the default, for older callers): */
    sdw_controlnet *net;         /* loaded by the caller for this model (sdw_controlnet_load_for) and kept:
                                    used instead of loading path, which still names the unit; NULL = load path */
    bool preprocessed;           /* image is the preprocessor's map already (the caller ran it): it is only
                                    fitted, and preprocessor says what ran, for the parameters text */
    int processor_res;           /* with preprocessed: the resolution it ran at ("Processor Res"; 0 = unsaid) */
    const char *model_name;      /* the parameters text's "Model" of the unit; NULL = path's stem */
    const char *model_hash;      /* its short hash there ("" = none); NULL = read from path (the whole file) */
} sdw_gen_control;
static inline sdw_gen_control sdw_gen_control_default(void)
{
    sdw_gen_control c = { sizeof(sdw_gen_control), NULL, { 0, 0, NULL }, 1.0f, 0.0f, 1.0f, NULL, NULL, NULL,
                          NULL, false, 0, NULL, NULL };
    return c;
}

/* What sdw_gen_params.mask holds. */
typedef enum {
    SDW_GEN_MASK_LUMA,    /* its gray (PIL's convert("L")), white = repaint; resized with Lanczos */
    SDW_GEN_MASK_ALPHA,   /* the alpha plane of an RGBA mask, in R (OpenAI's edits: transparent, 0, =
                             repaint, anything else kept); resized without blending */
} sdw_gen_mask_source;

/* What a progress callback sees after each sampling step. */
typedef struct {
    size_t struct_size;          /* the library's sizeof: fields past the caller's header are extra */
    int step, total;             /* 1-based step just finished, steps in this run */
    int run, runs;               /* 0-based run of batch_count (a run makes batch_size images) */
    double elapsed_s, eta_s;     /* this run's */
    const sdw_image_rgb8 *preview;   /* every preview_every steps and on the last: the cheap latent
                                        projection (1/8 of the size), valid during the call; else NULL */
} sdw_gen_progress;
/* Return 0 to go on, non-zero to cancel (sdw_generate then fails with
 * SDW_ERR_CANCELLED). Called on the thread that runs sdw_generate. */
typedef int (*sdw_gen_progress_fn)(void *user, const sdw_gen_progress *p);

typedef struct {
    size_t struct_size;
    const char *prompt;            /* A1111 syntax: (x:1.2), [x], BREAK, <lora:name:w> (needs lora_dir) */
    const char *negative_prompt;   /* NULL = none */
    int width, height, steps;      /* 0 = the model's default */
    float cfg_scale;               /* < 0 = the model's default; <= 1 runs the conditional branch only */
    float guidance;                /* FLUX dev's distilled guidance; < 0 = the model's default */
    int64_t seed;                  /* -1 = random (drawn once per call); run k of batch_count uses seed + k */
    const char *sampler;           /* NULL = the model's default; see sdw_sampler_names() */
    const char *scheduler;         /* NULL = the model's default; see sdw_scheduler_names() */
    const char *rng;               /* NULL / "cpu" (torch's CPU generator, ComfyUI) or "cuda" / "gpu" / "philox"
                                      (A1111's GPU Philox) */
    int clip_skip;                 /* A1111 numbering; 0 = the family's default */
    int batch_size;                /* images from one noise tensor (1) */
    int batch_count;               /* runs one after another, seeds seed, seed + 1, ... (1) */
    const sdw_image_rgb8 *init_image;   /* img2img / inpaint: any size, resized (Lanczos); NULL = txt2img */
    const sdw_image_rgb8 *mask;    /* inpaint: as mask_source says (its luma, white = repaint), any size;
                                      needs init_image */
    float strength;                /* img2img / inpaint denoising strength in (0, 1] (0.75) */
    const sdw_lora_ref *loras;     /* n_loras entries; the model keeps them applied until the next call */
    int n_loras;
    const char *lora_dir;          /* where the prompt's <lora:...> tags are looked up; NULL: tags are an error */
    const sdw_gen_control *controls;    /* n_controls ControlNet units (loaded for the call) */
    int n_controls;
    bool control_guess;            /* diffusers' guess mode */
    int t5_max_length;             /* SD3: T5 tokens; 0 = the model's */
    const int *slg_layers;         /* SD3.5 skip-layer guidance: block numbers; n_slg_layers 0 = off */
    int n_slg_layers;
    float slg_scale, slg_start, slg_end;   /* 2.8, 0.01, 0.2 */
    int vae_tiling;                /* 1 on, 0 off, -1 above 1024x1024 pixels (default) */
    const char *model_name;        /* the parameters text's "Model" (the file's stem); NULL = left out */
    const char *model_hash;        /* its "Model hash" (sdw_model_hash10); NULL = left out */
    sdw_gen_progress_fn progress;  /* NULL = none */
    void *progress_user;
    int preview_every;             /* previews to the progress callback every N steps; 0 = none */
    sdw_cancel *cancel;            /* NULL = none */
    /* Added after the first version (zero, the default, for older callers): */
    sdw_gen_mask_source mask_source;   /* LUMA */
    bool mask_invert;              /* repaint where the mask says keep, and the other way round */
    bool prompt_loras_listed;      /* the prompt's <lora:...> tags are in loras already (the caller resolved
                                      them): they are not looked up in lora_dir again */
} sdw_gen_params;
static inline sdw_gen_params sdw_gen_params_default(void)
{
    sdw_gen_params p = SDW_ZERO_INIT;
    p.struct_size = sizeof(sdw_gen_params);
    p.prompt = "";
    p.cfg_scale = -1.0f;
    p.guidance = -1.0f;
    p.seed = -1;
    p.batch_size = p.batch_count = 1;
    p.strength = 0.75f;
    p.slg_scale = 2.8f;
    p.slg_start = 0.01f;
    p.slg_end = 0.2f;
    p.vae_tiling = -1;
    return p;
}

/* One image made, owned by its sdw_gen_result. */
typedef struct {
    size_t struct_size;          /* the library's sizeof */
    sdw_image_rgb8 image;
    uint64_t seed;               /* its run's seed */
    char *parameters;            /* A1111's "parameters" text */
} sdw_gen_image;
/* A LoRA as applied: what matched the model. */
typedef struct {
    size_t struct_size;          /* the library's sizeof */
    char name[128];              /* file stem */
    char hash[16];               /* A1111's "Lora hashes" value (12 hex digits) */
    int keys_applied, keys_total;
    float te_strength, unet_strength;
} sdw_gen_lora;
typedef struct {
    size_t struct_size;          /* the caller's sizeof(sdw_gen_result) */
    int n_images;                /* batch_count * batch_size */
    sdw_gen_image **images;
    int n_loras;                 /* the loras and the prompt's tags, in that order */
    sdw_gen_lora **loras;
} sdw_gen_result;
static inline sdw_gen_result sdw_gen_result_init(void)
{
    sdw_gen_result r = { sizeof(sdw_gen_result), 0, NULL, 0, NULL };
    return r;
}
/* Frees what sdw_generate put in r and leaves it empty (struct_size kept). */
void sdw_gen_result_free(sdw_gen_result *r);

/* What can be checked without a model: struct sizes, sampler, scheduler and
 * rng names, ranges, the LoRA files and the prompt's LoRA tags, ControlNet
 * unit options. sdw_generate runs it first; call it early to fail before a
 * slow model load. */
sdw_status sdw_gen_params_check(const sdw_gen_params *p);
/* Generates p->batch_count * p->batch_size images into result (set up with
 * sdw_gen_result_init; what an earlier call left in it is freed first). The
 * caller frees it with sdw_gen_result_free, also after a failure (it then
 * holds the images of the runs that finished).
 * The model's LoRA set becomes p's (an unchanged set costs nothing). One call
 * at a time per model. Fails with SDW_ERR_CANCELLED when the progress
 * callback returns non-zero or p->cancel is raised. */
sdw_status sdw_generate(sdw_model *model, const sdw_gen_params *p, sdw_gen_result *result);

/* Makes the model's LoRA set the one p names (p->loras, then the prompt's
 * <lora:...> tags in p->lora_dir) now and lists it in result->loras (result
 * as for sdw_generate), to report it
 * before a long run; sdw_generate does the same, and an unchanged set costs
 * nothing there. A set that fails leaves the model with no LoRA. */
sdw_status sdw_model_apply_loras(sdw_model *model, const sdw_gen_params *p, sdw_gen_result *result);

/* Names accepted for sampler and scheduler, "euler_a, euler, ..." (static). */
const char *sdw_sampler_names(void);
const char *sdw_scheduler_names(void);
/* A random seed in 0..2^32-1 (what A1111 draws for seed -1). */
uint64_t sdw_random_seed(void);
/* The file name of path without folder or extension (the parameters text's "Model"). */
void sdw_path_stem(const char *path, char *buf, size_t n);
/* The first 10 hex digits of a regular file's SHA-256 (A1111's "Model
 * hash"); "" for a folder or when it cannot be read. Reads the whole file. */
void sdw_model_hash10(const char *path, char out[16]);

#ifdef __cplusplus
}
#endif
#endif
