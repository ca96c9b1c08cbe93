/* text_conditioner.h: a model family's text encoders and how their outputs
 * become the UNet's conditioning:
 *   SD1   CLIP ViT-L, last layer (or clip-skip) + final layer norm, pad EOS
 *   SD2   OpenCLIP ViT-H, penultimate layer + final layer norm, pad 0
 *   SDXL  CLIP ViT-L penultimate (no norm) ++ OpenCLIP bigG penultimate (no
 *         norm) = 2048 wide; pooled = bigG final-norm EOS @ text_projection
 * Prompts use A1111 syntax: emphasis, BREAK, 75-token chunks. */
#ifndef SDW_MODELS_TEXT_CONDITIONER_H
#define SDW_MODELS_TEXT_CONDITIONER_H
#include "models/clip_text.h"
#include "io/sidecar_yaml.h"


typedef struct {
    sdw_family family;
    sdw_clip_text *te1;   /* SD1/SDXL: CLIP ViT-L; SD2: OpenCLIP ViT-H */
    sdw_clip_text *te2;   /* SDXL: OpenCLIP bigG; else NULL */
    int context_dim;      /* width of one conditioning token */
    int pooled_dim;       /* SDXL: bigG projection width; else 0 */
    sdw_arena arena;
} sdw_text_conditioner;

/* Loads from an original single-file checkpoint; yaml (may be NULL) is its sidecar. */
sdw_status sdw_text_conditioner_load_single(sdw_backend *be, const sdw_safetensors *st, const sdw_yaml_map *yaml,
                                            sdw_text_conditioner *out);
/* Loads text_encoder/ (and text_encoder_2/) of a diffusers folder. */
sdw_status sdw_text_conditioner_load_diffusers(sdw_backend *be, const char *dir, sdw_text_conditioner *out);
void sdw_text_conditioner_free(sdw_text_conditioner *tc);

/* Encodes n_chunks chunks of 77 ids per encoder (ids2 for SDXL's second,
 * else NULL) into context [n_chunks*77, context_dim] and, for SDXL, pooled
 * [pooled_dim] from the first chunk. clip_skip follows A1111 (1 = last layer,
 * 2 = penultimate); 0 means the family default. */
sdw_status sdw_text_encode_ids(sdw_backend *be, sdw_text_conditioner *tc, const int32_t *ids1, const int32_t *ids2,
                               int n_chunks, int clip_skip, float *context, float *pooled);

typedef struct {
    float *context;   /* [n_tokens, context_dim], malloc'd */
    int n_tokens;     /* 77 x chunks */
    float *pooled;    /* [pooled_dim] or NULL */
} sdw_text_embedding;

/* A1111 prompt (emphasis, BREAK, long prompts; <lora:> tags must already be
 * removed or are ignored here) to conditioning. min_chunks pads the prompt
 * with empty chunks, so a negative prompt can match its positive. */
sdw_status sdw_text_encode_prompt(sdw_backend *be, sdw_text_conditioner *tc, const char *prompt, int min_chunks,
                                  int clip_skip, sdw_text_embedding *out);
/* n prompts (1 to SDW_TEXT_MAX_PROMPTS) at once, each padded to as many
 * chunks as the longest (and min_chunks), as A1111 pads a prompt and its
 * negative: one pass through the encoders, out[k] as sdw_text_encode_prompt
 * would give each. On failure every out[k] is empty. */
#define SDW_TEXT_MAX_PROMPTS 8
sdw_status sdw_text_encode_prompts(sdw_backend *be, sdw_text_conditioner *tc, const char *const *prompts, int n,
                                   int min_chunks, int clip_skip, sdw_text_embedding *out);
void sdw_text_embedding_free(sdw_text_embedding *e);

/* A1111's "Original" emphasis on one chunk z [T, D]: each token's vector
 * times its weight, then the chunk's mean restored. */
void sdw_apply_emphasis(float *z, const float *weights, int T, int D);
#endif
