/* lora_keys.h: how adapter files name the modules they patch, reduced to one
 * key per module that a model's layer names reduce to as well:
 *   "u:" + UNet module (diffusers or LDM path), "0:" / "1:" + text encoder
 *   module (transformers path without "text_model."), with '.' -> '_'.
 * kohya ("lora_unet_down_blocks_0_..._to_q.lora_down.weight", "lora_te1_..."),
 * PEFT ("unet.down_blocks.0....to_q.lora_A.weight", "text_encoder_2.") and the
 * old diffusers processor names ("attn1.processor.to_q_lora.down.weight") all
 * land on the same key. FLUX: "u:" + transformer module in BFL or diffusers
 * form (kohya "lora_unet_double_blocks_0_...", diffusers "transformer.",
 * ComfyUI / ai-toolkit "diffusion_model.", XLabs' bare
 * "double_blocks.0.processor.qkv_lora1.down.weight"), and "2:" + T5 module
 * for sd-scripts' "lora_te3_" (its "lora_te2_" and diffusers'
 * "text_encoder_2." give "1:", which FLUX matches against T5 as well).
 * SD3: "u:" + transformer module in Stability or diffusers form (sd-scripts
 * "lora_unet_joint_blocks_0_x_block_attn_qkv", diffusers "transformer.",
 * ComfyUI "diffusion_model.", SimpleTuner "lycoris_"), "0:" CLIP-L
 * ("lora_te1_", "text_encoder."), "1:" CLIP-G ("lora_te2_",
 * "text_encoder_2."), "2:" T5 ("lora_te3_", "text_encoder_3."). */
#ifndef SDW_MODELS_LORA_KEYS_H
#define SDW_MODELS_LORA_KEYS_H
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    SDW_LORA_UP, SDW_LORA_DOWN, SDW_LORA_MID, SDW_LORA_ALPHA,
    SDW_LORA_HADA_W1_A, SDW_LORA_HADA_W1_B, SDW_LORA_HADA_W2_A, SDW_LORA_HADA_W2_B, SDW_LORA_HADA_T1, SDW_LORA_HADA_T2,
    SDW_LORA_LOKR_W1, SDW_LORA_LOKR_W1_A, SDW_LORA_LOKR_W1_B, SDW_LORA_LOKR_W2, SDW_LORA_LOKR_W2_A,
    SDW_LORA_LOKR_W2_B, SDW_LORA_LOKR_T2,
    SDW_LORA_DORA_SCALE,
    SDW_LORA_ROLE_COUNT,
    SDW_LORA_UNKNOWN = SDW_LORA_ROLE_COUNT   /* a module part we do not apply (.diff, .w_norm, ...) */
} sdw_lora_role;

/* Splits an adapter tensor name into its module key and role. Returns false
 * when the name is not under any known prefix (the module is then foreign). */
bool sdw_lora_split_name(const char *tensor, char *key, size_t n, sdw_lora_role *role);

/* The key of a model layer: comp is 'u' (UNet, name in diffusers or LDM
 * form, without "model.diffusion_model.") or '0' / '1' (text encoders,
 * transformers names). */
void sdw_lora_layer_key(char comp, const char *name, char *key, size_t n);
#endif
