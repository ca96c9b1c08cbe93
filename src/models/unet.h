/* unet.h: the latent diffusion UNet of SD1.x, SD2.x, SDXL and the SDXL refiner
 * (and their 9-channel inpainting variants), one implementation configured by
 * sdw_unet_config. Weights load from diffusers names or original LDM names. */
#ifndef SDW_MODELS_UNET_H
#define SDW_MODELS_UNET_H
#include "backend/backend.h"
#include "core/arena.h"
#include "io/safetensors.h"
#include "io/sidecar_yaml.h"
#include "models/weights.h"
#include <cjson/cJSON.h>

#define SDW_UNET_MAX_LEVELS 4
#define SDW_UNET_MAX_LAYERS 3   /* resnets per down level */
/* Skip tensors, at most: conv_in's, one per down resnet, one per downsampler. */
#define SDW_UNET_MAX_SKIPS (1 + SDW_UNET_MAX_LEVELS * SDW_UNET_MAX_LAYERS + SDW_UNET_MAX_LEVELS - 1)

typedef struct {
    int in_channels;                  /* 4, or 9 for inpainting */
    int out_channels;                 /* 4 */
    int n_levels;                     /* 4 (SD1/SD2), 3 (SDXL) */
    int block_out[SDW_UNET_MAX_LEVELS];   /* 320, 640, 1280, 1280 */
    int layers_per_block;             /* resnets per down level (up levels have one more) */
    int depth[SDW_UNET_MAX_LEVELS];   /* transformer blocks per attention; 0 = no attention */
    int mid_depth;                    /* transformer blocks in the middle */
    int heads[SDW_UNET_MAX_LEVELS];   /* attention heads per level (mid uses the last) */
    int context_dim;                  /* 768, 1024, 2048, 1280 (refiner) */
    bool linear_proj;                 /* SD2/SDXL: linear proj_in/out; SD1: 1x1 conv (same map) */
    int time_embed_dim;               /* 4 x block_out[0] */
    int adm_in;                       /* SDXL: label_emb input width (2816); 0 = none */
    int addition_time_embed_dim;      /* SDXL: sinusoidal width per micro-conditioning value (256) */
    bool encoder_only;                /* a ControlNet's copy: time embedding, conv_in, down and middle
                                         blocks; no up path, conv_norm_out or conv_out (out_channels 0) */
} sdw_unet_config;

typedef enum { SDW_NAMES_DIFFUSERS, SDW_NAMES_LDM } sdw_name_layout;

/* From a diffusers unet/config.json. */
sdw_status sdw_unet_config_from_diffusers(const cJSON *cfg, sdw_unet_config *c);
/* From the tensor shapes of an LDM checkpoint ("model.diffusion_model.*"),
 * with head counts from the sidecar yaml if given, else the family convention
 * (context 768: 8 heads; otherwise 64-dim heads). */
sdw_status sdw_unet_config_from_ldm(const sdw_safetensors *st, const sdw_yaml_map *yaml, sdw_unet_config *c);
/* The encoder half (encoder_only) from the tensor shapes under prefix, in
 * LDM names (input_blocks.*, as a ControlNet's "control_model.*") or
 * diffusers names (down_blocks.*); heads by the family convention. */
sdw_status sdw_unet_encoder_config_from_shapes(const sdw_safetensors *st, sdw_name_layout names, const char *prefix,
                                               sdw_unet_config *c);
/* heads[i] = num_heads when > 0, else block_out[i] / head_channels when > 0,
 * else the family convention (context 768: 8 heads; otherwise 64-dim heads). */
void sdw_unet_set_heads(sdw_unet_config *c, int num_heads, int head_channels);
/* Maps a diffusers UNet tensor name to its LDM name (with prefix). */
const char *sdw_unet_ldm_name(const sdw_unet_config *c, const char *name, char *buf, size_t n);

typedef struct sdw_unet sdw_unet;

sdw_status sdw_unet_load(sdw_backend *be, const sdw_safetensors *st, sdw_name_layout names,
                         const sdw_unet_config *c, sdw_unet **out);
/* The same through a loader the caller set up (its map names the tensors: a
 * ControlNet's own prefix); wl->layers is set for the call and restored. */
sdw_status sdw_unet_load_with(sdw_wloader *wl, const sdw_unet_config *c, sdw_unet **out);
void sdw_unet_free(sdw_unet *u);
const sdw_unet_config *sdw_unet_get_config(const sdw_unet *u);
/* Every linear and convolution, under its diffusers name. */
const sdw_layer_list *sdw_unet_layers(const sdw_unet *u);
size_t sdw_unet_bytes(const sdw_unet *u);

/* Observes intermediate activations (debugging, golden tests): x is NHWC
 * [N, H, W, C] (H = W = 1 for vectors). */
typedef void (*sdw_unet_tap)(void *user, const char *name, const float *x, int N, int H, int W, int C);

/* The cross-attention keys and values of one text context, kept across an
 * image's evaluations (they depend on the context and the weights only):
 * sdw_unet_forward with in->ctx_cache set projects each block's once and
 * reads them after, for as long as it is called with the same UNet,
 * context pointer, N and n_ctx (else it starts over). The caller keeps the
 * context unchanged meanwhile. Zero-initialise; sdw_unet_ctx_cache_free.
 * It holds at most max bytes (0: SDW_UNET_CTX_CACHE_MAX; SDXL, one image
 * with CFG, needs 51 MB): blocks past that project at every call, as
 * without it. */
#define SDW_UNET_CTX_CACHE_MAX ((size_t)256 << 20)
typedef struct {
    size_t max;
    const sdw_unet *u;
    const float *context;
    int N, n_ctx;
    int n, cap;
    size_t bytes;
    struct sdw_unet_ctx_kv {
        const void *block; /* the transformer block */
        void *kv;          /* [N * n_ctx, 2C] activations: K then V of each row */
    } *e;
} sdw_unet_ctx_cache;
void sdw_unet_ctx_cache_free(sdw_unet_ctx_cache *c);

typedef struct {
    const float *x;          /* [N, H, W, in_channels] NHWC latents */
    int N, H, W;
    const float *timesteps;  /* [N] */
    const float *context;    /* [N, n_ctx, context_dim] */
    int n_ctx;
    const float *y;          /* SDXL: [N, adm_in] = pooled ++ sinusoidal(time ids); else NULL */
    sdw_unet_tap tap;
    void *tap_user;
    /* ControlNet residuals (models/controlnet.h), NHWC, or NULL: down_res[i]
     * is added to skip tensor i (conv_in's output, then each down resnet /
     * attention and downsampler output, in order) before the up path reads
     * it, mid_res to the middle block's output. */
    const float *const *down_res;
    const float *mid_res;
    sdw_unet_ctx_cache *ctx_cache; /* or NULL: K and V projected at every call */
} sdw_unet_input;

/* out: [N, H, W, out_channels]. H and W must be multiples of 2^(n_levels-1). */
sdw_status sdw_unet_forward(sdw_backend *be, sdw_arena *arena, const sdw_unet *u, const sdw_unet_input *in,
                            float *out);

/* The shapes of the skip tensors for latents of H x W: hwc[i] = {Hi, Wi, Ci}
 * in the order of sdw_unet_input.down_res, then the middle output's at
 * hwc[n]. Returns n (3 * layers_per_block + ... : 12 for SD1, 9 for SDXL). */
int sdw_unet_skip_shapes(const sdw_unet_config *c, int H, int W, int hwc[][3]);

/* The encoder half as a ControlNet runs it: time embedding, conv_in (plus
 * add [N, H, W, block_out[0]] when not NULL, before the first skip is
 * kept), down blocks, middle block; in->down_res / mid_res are ignored.
 * skip[i] (at least SDW_UNET_MAX_SKIPS) and *mid point at the skip tensors
 * and the middle output (shapes from sdw_unet_skip_shapes), which live in
 * arena: the caller restores it when done with them. Returns the count in
 * *n_skip. in->tap sees "time_embedding", "conv_in" (before add),
 * "down_blocks.i" and "mid_block". */
sdw_status sdw_unet_encode(sdw_backend *be, sdw_arena *arena, const sdw_unet *u, const sdw_unet_input *in,
                           const float *add, float **skip, float **mid, int *n_skip);

/* Sinusoidal embedding as diffusers computes it (flip_sin_to_cos, shift 0):
 * out[i] = cos(t * f_i) for i < dim/2, sin(t * f_(i-dim/2)) after. */
void sdw_timestep_embedding(float t, int dim, float *out);

/* SDXL's added conditioning y = pooled ++ sinusoid(each of n_ids micro-
 * conditioning values: original h, w, crop top, left, target h, w) with dim
 * channels each. y has pooled_dim + n_ids * dim floats. */
void sdw_unet_text_time_y(const float *pooled, int pooled_dim, const float *ids, int n_ids, int dim, float *y);
#endif
