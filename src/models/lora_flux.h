/* lora_flux.h: what LoRA merging needs to know about FLUX.1 beyond the layer
 * list the transformer gives (sdw_flux_layers: BFL names, and the diffusers
 * names of the parts its fused layers are stacked from):
 *   - the names only some trainers use (XLabs' attention processors), and
 *     diffusers' norm_out.linear, whose rows are BFL's two halves swapped;
 *   - which family a module key's name belongs to (lora_family.h holds the
 *     lists), so a FLUX LoRA on an SD model (or the reverse) is refused by
 *     name, not by "matched nothing". */
#ifndef SDW_MODELS_LORA_FLUX_H
#define SDW_MODELS_LORA_FLUX_H
#include "models/flux.h"
#include "models/weights.h"

/* The alias whose rows are those of its layer with the first and second
 * halves swapped (diffusers' AdaLayerNormContinuous chunks scale, shift;
 * BFL's final layer shift, scale). */
#define SDW_LORA_FLUX_SWAPPED "norm_out.linear"

/* Appends to out the extra names of f's layers: XLabs' double-block
 * processors (double_blocks.N.qkv_lora1 / qkv_lora2 -> img / txt qkv,
 * proj_lora1 / proj_lora2 -> img / txt proj), its single-block processor
 * (single_blocks.N.qkv: rows [0, 3 hidden) of linear1; single_blocks.N.proj:
 * linear2, as "qkv_lora" / "proj_lora" read after the "_lora" suffix), and
 * SDW_LORA_FLUX_SWAPPED. */
sdw_status sdw_lora_flux_aliases(const sdw_flux *f, sdw_layer_list *out);

typedef enum {
    SDW_LORA_FOR_ANY,     /* a text encoder's, or a name no family owns */
    SDW_LORA_FOR_SD,      /* an SD 1.x / 2.x / SDXL UNet module */
    SDW_LORA_FOR_FLUX,    /* a FLUX transformer module, or a name FLUX shares with SD3 (diffusers'
                             transformer names, T5 as a third text encoder) */
    SDW_LORA_FOR_SD3,     /* a name only SD3 / SD3.5 uses (Stability's, attn2) */
} sdw_lora_for;

/* The family a module key (lora_keys.h form, "u:double_blocks_0_img_attn_qkv")
 * belongs to by its name alone; lora_family.h's sdw_lora_key_archs tells the
 * names FLUX and SD3 share apart from FLUX's own. */
sdw_lora_for sdw_lora_key_family(const char *key);
#endif
