/* lora_family.h: which model architecture a LoRA is for, told from its kohya
 * metadata (ss_base_model_version) and from its module names, so that a LoRA
 * for another family is refused naming both families rather than matching
 * by chance the text encoder the families share (CLIP-L) or reporting
 * "matched nothing".
 *
 * Names alone cannot always tell: diffusers' transformer names
 * ("transformer_blocks.N.attn.to_q", "context_embedder", "proj_out",
 * "norm_out.linear", "time_text_embed.*") and T5 belong to both FLUX.1 and
 * SD3 / SD3.5 (lora.c then tells them apart by the layers' widths). */
#ifndef SDW_MODELS_LORA_FAMILY_H
#define SDW_MODELS_LORA_FAMILY_H
#include "io/safetensors.h"
#include "sdw.h"

/* Architectures, as a mask. */
enum {
    SDW_ARCH_SD = 1,      /* SD 1.x / 2.x / SDXL UNet */
    SDW_ARCH_FLUX = 2,    /* FLUX.1 transformer */
    SDW_ARCH_SD3 = 4,     /* SD3 / SD3.5 MMDiT */
    SDW_ARCH_ALL = 7,
};

/* The architectures a module key (lora_keys.h form, "u:joint_blocks_0_x_block_attn_qkv")
 * may belong to by its name: one bit for a name only one of them uses,
 * SDW_ARCH_FLUX | SDW_ARCH_SD3 for diffusers transformer names and T5
 * ("2:"), SDW_ARCH_ALL for CLIP ("0:", "1:") and names nobody owns. */
unsigned sdw_lora_key_archs(const char *key);
/* The model's architecture (one bit). */
unsigned sdw_lora_model_arch(const sdw_model *m);
/* "an SD 1.x / 2.x / SDXL UNet", "FLUX.1", "SD3 / SD3.5", "FLUX.1 or SD3 / SD3.5". */
const char *sdw_lora_arch_name(unsigned archs);

/* Refuses, naming the LoRA (name) and the model's family, a file whose
 * ss_base_model_version names another family ("sd_v1", "sd_v2", "sdxl",
 * "flux1", "sd3_m" / "sd3_medium" / "sd3_large"). No metadata passes. */
sdw_status sdw_lora_check_meta(const sdw_model *m, const sdw_safetensors *st, const char *name);

/* Refuses a file whose module keys (n of them, NULL entries skipped) name
 * an architecture other than the model's: the architecture all its names
 * agree on, or else that of the first name the model does not have. */
sdw_status sdw_lora_check_names(const sdw_model *m, const char *const *keys, int n, const char *name);
#endif
