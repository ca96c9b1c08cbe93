/* t5.h: the T5 v1.1 encoder (T5-XXL, FLUX's and SD3's second text encoder),
 * from HF-transformers T5EncoderModel names, optionally under a prefix
 * ("text_encoders.t5xxl.transformer." in all-in-one checkpoints). Sizes come
 * from the tensor shapes. Weights may be F32, F16, BF16 or F8_E4M3 (whatever
 * sdw_st_read_f32 decodes); they run in the backend's precision. */
#ifndef SDW_MODELS_T5_H
#define SDW_MODELS_T5_H
#include "backend/backend.h"
#include "core/arena.h"
#include "io/safetensors.h"
#include "models/weights.h"

typedef struct {
    int vocab;         /* 32128 */
    int d_model;       /* 4096 */
    int heads;         /* 64 */
    int d_kv;          /* 64: per head; heads * d_kv need not equal d_model */
    int d_ff;          /* 10240 */
    int layers;        /* 24 */
    int buckets;       /* 32 relative position buckets */
    int max_distance;  /* 128: positions further apart share the last bucket */
} sdw_t5_config;

typedef struct sdw_t5 sdw_t5;

/* Whether st holds a T5 encoder under prefix (its token embedding and first block). */
bool sdw_t5_present(const sdw_safetensors *st, const char *prefix);
/* Loads the encoder under prefix ("" for a plain file). A file that holds
 * none fails with SDW_ERR_FORMAT saying it is not a T5 encoder. *out is
 * freed with sdw_t5_free, before the backend. */
sdw_status sdw_t5_load(sdw_backend *be, const sdw_safetensors *st, const char *prefix, sdw_t5 **out);
void sdw_t5_free(sdw_t5 *t);
const sdw_t5_config *sdw_t5_get_config(const sdw_t5 *t);
int sdw_t5_d_model(const sdw_t5 *t);
size_t sdw_t5_bytes(const sdw_t5 *t);   /* weights held */
/* Every linear under transformers' module names ("encoder.block.0.layer.0.SelfAttention.q",
 * "encoder.block.0.layer.1.DenseReluDense.wi_0", ...), for LoRA. Owned by t. */
const sdw_layer_list *sdw_t5_layers(const sdw_t5 *t);

/* One sequence of n token ids (padding included: no attention mask, as
 * FLUX and SD3 run it) -> out [n, d_model], the final-norm hidden state.
 * Scratch comes from the arena (the position bias alone is heads * n * n
 * floats). */
sdw_status sdw_t5_encode(sdw_backend *be, sdw_arena *arena, const sdw_t5 *t, const int32_t *ids, int n,
                         float *out);
/* The hidden state after the first `layers` blocks, before the final norm
 * (0 = the embeddings): transformers' hidden_states[layers] for layers <
 * the block count. For golden tests and layer taps. */
sdw_status sdw_t5_encode_hidden(sdw_backend *be, sdw_arena *arena, const sdw_t5 *t, const int32_t *ids, int n,
                                int layers, float *out);
#endif
