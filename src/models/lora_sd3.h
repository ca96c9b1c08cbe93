/* lora_sd3.h: what LoRA merging needs to know about SD3 / SD3.5 beyond the
 * layer list the transformer gives (sdw_mmdit_layers: Stability's names,
 * which sd-scripts' "lora_unet_joint_blocks_0_x_block_attn_qkv" and
 * ComfyUI's "diffusion_model." use, and the diffusers names of the parts its
 * fused layers are stacked from, which diffusers / PEFT "transformer." use):
 * the two diffusers names whose rows are the layer's halves swapped.
 * diffusers' AdaLayerNormContinuous chunks its output (scale, shift) where
 * Stability's final layer and the last block's pre-only context modulation
 * give (shift, scale). */
#ifndef SDW_MODELS_LORA_SD3_H
#define SDW_MODELS_LORA_SD3_H
#include "models/mmdit.h"
#include "models/weights.h"

/* Appends to out "norm_out.linear" (final_layer.adaLN_modulation.1) and
 * "transformer_blocks.<depth - 1>.norm1_context.linear" (the last block's
 * context_block.adaLN_modulation.1): every alias here has its halves swapped. */
sdw_status sdw_lora_sd3_aliases(const sdw_mmdit *m, sdw_layer_list *out);
#endif
