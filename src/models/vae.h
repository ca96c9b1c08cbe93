/* vae.h: the KL autoencoder (AutoencoderKL) of SD1/SD2/SDXL and FLUX.1's
 * 16-channel autoencoder (BFL ae.safetensors): image <-> latents. Latents here
 * are unscaled; the family's scale and shift (SD 0.18215, SDXL 0.13025, no
 * shift; FLUX 0.3611 and 0.1159: z = (latent - shift) * scale) are applied by
 * the pipeline. Images are NHWC RGB in [-1, 1]. */
#ifndef SDW_MODELS_VAE_H
#define SDW_MODELS_VAE_H
#include "backend/backend.h"
#include "core/arena.h"
#include "io/safetensors.h"
#include <cjson/cJSON.h>

#define SDW_VAE_MAX_LEVELS 4

typedef struct {
    int n_levels;                        /* 4 */
    int block_out[SDW_VAE_MAX_LEVELS];   /* 128, 256, 512, 512 */
    int layers_per_block;                /* 2 (decoder levels have one more) */
    int latent_channels;                 /* 4 (FLUX 16) */
    /* The 1x1 convolutions after the encoder and before the decoder; FLUX's
     * autoencoder has neither (identity when false). */
    bool use_quant_conv, use_post_quant_conv;
    /* diffusers' scaling_factor / shift_factor, for the pipeline (the VAE
     * itself never applies them). 0 = not stated by the config (LDM files
     * never state them): the caller uses the family's. */
    float scaling_factor, shift_factor;
} sdw_vae_config;

/* From a diffusers vae/config.json: use_quant_conv / use_post_quant_conv
 * default to true, scaling_factor / shift_factor to 0 (not stated). */
sdw_status sdw_vae_config_from_diffusers(const cJSON *cfg, sdw_vae_config *c);
/* From shapes under an LDM prefix ("first_stage_model.", "vae." in a FLUX
 * all-in-one file, "" for a bare VAE file): quant_conv / post_quant_conv are
 * used where the file has them; scaling_factor and shift_factor are 0. */
sdw_status sdw_vae_config_from_ldm(const sdw_safetensors *st, const char *prefix, sdw_vae_config *c);
/* True if st holds an LDM-layout VAE under prefix (with or without
 * post_quant_conv; a diffusers-named VAE file is not one). */
bool sdw_vae_ldm_present(const sdw_safetensors *st, const char *prefix);

typedef struct sdw_vae sdw_vae;
/* ldm_prefix NULL = diffusers names; else LDM names under that prefix. The
 * encoder is loaded only when with_encoder (txt2img never needs it). */
sdw_status sdw_vae_load(sdw_backend *be, const sdw_safetensors *st, const char *ldm_prefix,
                        const sdw_vae_config *c, bool with_encoder, sdw_vae **out);
void sdw_vae_free(sdw_vae *v);
size_t sdw_vae_bytes(const sdw_vae *v);
bool sdw_vae_has_encoder(const sdw_vae *v);
const sdw_vae_config *sdw_vae_get_config(const sdw_vae *v);

/* img [N, H, W, 3] -> moments [N, H/8, W/8, 2*latent]: mean, then log-variance
 * clamped to [-30, 20]. H, W multiples of 2^(n_levels-1). */
sdw_status sdw_vae_encode(sdw_backend *be, sdw_arena *arena, const sdw_vae *v, const float *img, int N, int H,
                          int W, float *moments);
/* z [N, h, w, latent] -> img [N, h*8, w*8, 3] (unclamped). */
sdw_status sdw_vae_decode(sdw_backend *be, sdw_arena *arena, const sdw_vae *v, const float *z, int N, int h, int w,
                          float *img);

/* The same in overlapping tiles of tile x tile latents (overlap latents shared
 * by neighbours, blended with linear ramps), so memory no longer grows with
 * the image: for sizes the untiled decode cannot hold. One image (N = 1).
 * Group norms then see one tile's statistics, so the result differs slightly
 * from the untiled decode. */
#define SDW_VAE_TILE 64
#define SDW_VAE_TILE_OVERLAP 16
sdw_status sdw_vae_decode_tiled(sdw_backend *be, sdw_arena *arena, const sdw_vae *v, const float *z, int h, int w,
                                int tile, int overlap, float *img);
#endif
