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

#ifdef __cplusplus
}
#endif
#endif
