/* lora_family.c: see lora_family.h. The name lists are the top-level module
 * names of each architecture as its LoRA trainers write them (lora_keys.h
 * form, '.' -> '_'): LDM and diffusers UNets; BFL, diffusers and XLabs FLUX;
 * Stability's (sd-scripts, ComfyUI) and diffusers' SD3. */
#include "models/lora_family.h"
#include "core/error.h"
#include "models/model.h"
#include <stdio.h>
#include <string.h>

static bool starts(const char *s, const char *const *prefixes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strncmp(s, prefixes[i], strlen(prefixes[i]))) return true;
    return false;
}

/* diffusers' SD3 blocks have a second attention on MMDiT-X (SD3.5-medium);
 * FLUX's blocks have none. */
static bool sd3_attn2(const char *name)
{
    int used = 0, idx;
    return sscanf(name, "transformer_blocks_%d_%n", &idx, &used) == 1 && used > 0 && !strncmp(name + used, "attn2_", 6);
}

unsigned sdw_lora_key_archs(const char *key)
{
    static const char *const sd3[] = {
        "joint_blocks_", "x_embedder_proj", "t_embedder_", "y_embedder_", "pos_embed_",
    };
    /* After sd3: SD3's "x_embedder_proj" and FLUX's "x_embedder" share a start. */
    static const char *const flux[] = {
        "double_blocks_", "single_blocks_", "single_transformer_blocks_", "img_in", "txt_in", "time_in_",
        "vector_in_", "guidance_in_", "time_text_embed_guidance_embedder", "x_embedder",
    };
    static const char *const dit[] = {
        "transformer_blocks_", "context_embedder", "time_text_embed_", "norm_out_linear", "proj_out", "final_layer_",
    };
    static const char *const sd[] = {
        "down_blocks_", "mid_block_", "up_blocks_", "input_blocks_", "middle_block_", "output_blocks_",
        "time_embedding_", "time_embed_", "add_embedding_", "label_emb_", "conv_in", "conv_out", "conv_norm_out",
    };
    if (key[0] == '2') return SDW_ARCH_FLUX | SDW_ARCH_SD3;   /* T5 */
    if (key[0] != 'u' || key[1] != ':') return SDW_ARCH_ALL;
    const char *name = key + 2;
    if (starts(name, sd3, sizeof sd3 / sizeof *sd3) || sd3_attn2(name)) return SDW_ARCH_SD3;
    if (starts(name, flux, sizeof flux / sizeof *flux)) return SDW_ARCH_FLUX;
    if (starts(name, dit, sizeof dit / sizeof *dit)) return SDW_ARCH_FLUX | SDW_ARCH_SD3;
    if (starts(name, sd, sizeof sd / sizeof *sd)) return SDW_ARCH_SD;
    return SDW_ARCH_ALL;
}

unsigned sdw_lora_model_arch(const sdw_model *m)
{
    return m->flux ? SDW_ARCH_FLUX : m->mmdit ? SDW_ARCH_SD3 : SDW_ARCH_SD;
}

const char *sdw_lora_arch_name(unsigned archs)
{
    switch (archs) {
    case SDW_ARCH_SD: return "an SD 1.x / 2.x / SDXL UNet";
    case SDW_ARCH_FLUX: return "FLUX.1";
    case SDW_ARCH_SD3: return "SD3 / SD3.5";
    case SDW_ARCH_FLUX | SDW_ARCH_SD3: return "FLUX.1 or SD3 / SD3.5";
    default: return "another model family";
    }
}

/* The model's architecture in a refusal: "the model is sd1 (SD 1.x / 2.x / SDXL)". */
static const char *model_kind(const sdw_model *m)
{
    unsigned a = sdw_lora_model_arch(m);
    return a == SDW_ARCH_SD ? "SD 1.x / 2.x / SDXL" : sdw_lora_arch_name(a);
}

sdw_status sdw_lora_check_meta(const sdw_model *m, const sdw_safetensors *st, const char *name)
{
    const char *v = sdw_st_meta_get(st, "ss_base_model_version");
    if (!v) return SDW_OK;
    /* sd-scripts writes "sd_v1", "sd_v2", "sdxl_base_v1-0", "flux1", "sd3_m"; others "sd3_medium", "sd3_large". */
    bool xl = !strncmp(v, "sdxl", 4), v2 = !strncmp(v, "sd_v2", 5), v1 = !strncmp(v, "sd_v1", 5);
    bool flux = !strncmp(v, "flux", 4), sd3 = !strncmp(v, "sd3", 3);
    sdw_family f = m->info.family;
    bool model_xl = f == SDW_FAMILY_SDXL || f == SDW_FAMILY_SDXL_REFINER;
    bool model_flux = sdw_family_is_flux(f), model_sd3 = sdw_family_is_sd3(f);
    if ((xl && !model_xl) || (v1 && f != SDW_FAMILY_SD1) || (v2 && f != SDW_FAMILY_SD2) || (flux && !model_flux) ||
        (sd3 && !model_sd3) || ((model_flux || model_sd3) && (xl || v1 || v2)) || (model_sd3 && flux) ||
        (model_flux && sd3))
        return sdw_fail(SDW_ERR_UNSUPPORTED, "LoRA %s is for %s (ss_base_model_version %s); the model is %s (%s)",
                        name, xl ? "SDXL" : v2 ? "SD 2.x" : v1 ? "SD 1.x" : flux ? "FLUX.1" : sd3 ? "SD3 / SD3.5" : v,
                        v, sdw_family_name(f), model_kind(m));
    return SDW_OK;
}

sdw_status sdw_lora_check_names(const sdw_model *m, const char *const *keys, int n, const char *name)
{
    const unsigned model = sdw_lora_model_arch(m);
    unsigned agreed = SDW_ARCH_ALL;
    const char *foreign = NULL;
    for (int i = 0; i < n; i++) {
        if (!keys[i]) continue;
        unsigned a = sdw_lora_key_archs(keys[i]);
        agreed &= a;
        if (!(a & model) && !foreign) foreign = keys[i];
    }
    if (!foreign) return SDW_OK;
    /* A file mixing families is named by the first name the model lacks; the
     * module shown is one of the family named where the file has one. */
    const unsigned named = agreed ? agreed : sdw_lora_key_archs(foreign);
    for (int i = 0; i < n; i++)
        if (keys[i] && sdw_lora_key_archs(keys[i]) == named) {
            foreign = keys[i];
            break;
        }
    return sdw_fail(SDW_ERR_UNSUPPORTED, "LoRA %s is for %s (module %s); the model is %s (%s)", name,
                    sdw_lora_arch_name(named), foreign + 2, sdw_family_name(m->info.family), model_kind(m));
}
