/* comfy_node_loaders.c: the loader nodes. None of them loads anything:
 * they name files (resolved through the environment's folders) and LoRA
 * strengths, and the sampler or VAE node that needs a model hands the
 * combined spec to env->model (comfy_exec.c). So a LoraLoader costs nothing
 * until a sampler runs, and two samplers on one checkpoint share one load.
 *
 *   CheckpointLoaderSimple   MODEL, CLIP, VAE all naming the checkpoint
 *   UNETLoader               MODEL: a diffusion model file (FLUX, SD3 as
 *                            ComfyUI's split files); weight_dtype fp8_* keeps
 *                            the file's own types (we do not quantize to fp8)
 *   CLIPLoader / DualCLIPLoader / TripleCLIPLoader
 *                            CLIP: each file to the text encoder slot its name
 *                            says (t5 / umt5 -> t5, clip_g / "g" -> clip_g,
 *                            else clip_l); ComfyUI reads the tensors instead
 *   VAELoader                VAE: the file, on whichever model runs it
 *   LoraLoader(ModelOnly)    the MODEL's LoRA at strength_model (UNet or
 *                            transformer), the CLIP's at strength_clip
 *   ControlNetLoader         CONTROL_NET: the file (loaded for the sampler's
 *                            model by env->controlnet) */
#include "comfy/comfy_values.h"
#include "core/error.h"
#include <ctype.h>
#include <string.h>

sdw_status sdw_node_checkpoint_loader(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    char path[4096];
    SDW_TRY(sdw_cx_resolve(x, SDW_FOLDER_CHECKPOINTS, sdw_cx_str(n, "ckpt_name"), path, sizeof path));
    out[0] = sdw_cv_new(SDW_CT_MODEL);
    out[1] = sdw_cv_new(SDW_CT_CLIP);
    out[2] = sdw_cv_new(SDW_CT_VAE);
    if (!out[0] || !out[1] || !out[2]) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    snprintf(out[0]->model.path, sizeof out[0]->model.path, "%s", path);
    out[1]->clip.spec = out[0]->model;
    out[2]->vae = out[0]->model;
    return SDW_OK;
}

sdw_status sdw_node_unet_loader(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    char path[4096];
    SDW_TRY(sdw_cx_resolve(x, SDW_FOLDER_UNET, sdw_cx_str(n, "unet_name"), path, sizeof path));
    if (!(out[0] = sdw_cv_new(SDW_CT_MODEL))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    snprintf(out[0]->model.path, sizeof out[0]->model.path, "%s", path);
    out[0]->model.weight_type = SDW_WT_KEEP;
    return SDW_OK;
}

/* Whether the file name has `word` as a token of its own ("clip_g.safetensors"
 * has "g"; "t5xxl_fp16" has "t5xxl"). */
static bool name_has(const char *name, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = name; (p = strstr(p, word)); p++) {
        bool start = p == name || !isalnum((unsigned char)p[-1]);
        bool end = !isalnum((unsigned char)p[n]);
        if (start && end) return true;
    }
    return false;
}

static char *clip_slot(sdw_comfy_model_spec *s, const char *name)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    char low[256];
    size_t i = 0;
    for (; base[i] && i + 1 < sizeof low; i++) low[i] = (char)tolower((unsigned char)base[i]);
    low[i] = 0;
    if (name_has(low, "t5") || name_has(low, "t5xxl") || name_has(low, "umt5")) return s->t5;
    if (name_has(low, "clip_g") || name_has(low, "clipg") || name_has(low, "g")) return s->clip_g;
    return s->clip_l;
}

sdw_status sdw_node_clip_loader(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    static const char *const inputs[] = {"clip_name", "clip_name1", "clip_name2", "clip_name3"};
    if (!(out[0] = sdw_cv_new(SDW_CT_CLIP))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    sdw_comfy_model_spec *s = &out[0]->clip.spec;
    for (int i = 0; i < 4; i++) {
        const char *name = sdw_cx_str(n, inputs[i]);
        if (!name[0]) continue;
        char *slot = clip_slot(s, name);
        if (slot[0]) return sdw_fail(SDW_ERR_INVALID_ARG, "two text encoder files for one slot: '%s' and '%s'", slot, name);
        SDW_TRY(sdw_cx_resolve(x, SDW_FOLDER_CLIP, name, slot, 4096));
    }
    return SDW_OK;
}

sdw_status sdw_node_vae_loader(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    if (!(out[0] = sdw_cv_new(SDW_CT_VAE))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    return sdw_cx_resolve(x, SDW_FOLDER_VAE, sdw_cx_str(n, "vae_name"), out[0]->vae.vae, sizeof out[0]->vae.vae);
}

sdw_status sdw_node_lora_loader(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    bool with_clip = !strcmp(n->spec->class_type, "LoraLoader");
    const sdw_cvalue *model, *clip = NULL;
    SDW_TRY(sdw_cx_link(x, n, "model", SDW_CT_MODEL, &model));
    if (with_clip) SDW_TRY(sdw_cx_link(x, n, "clip", SDW_CT_CLIP, &clip));
    float sm = (float)sdw_cx_num(n, "strength_model", 1.0);
    float sc = with_clip ? (float)sdw_cx_num(n, "strength_clip", 1.0) : 0.0f;
    out[0] = sdw_cv_new(SDW_CT_MODEL);
    if (with_clip) out[1] = sdw_cv_new(SDW_CT_CLIP);
    if (!out[0] || (with_clip && !out[1])) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    out[0]->model = model->model;
    if (with_clip) out[1]->clip = clip->clip;
    /* ComfyUI returns its inputs untouched when both strengths are 0. */
    if (sm == 0 && sc == 0) return SDW_OK;
    char path[4096];
    SDW_TRY(sdw_cx_resolve(x, SDW_FOLDER_LORAS, sdw_cx_str(n, "lora_name"), path, sizeof path));
    if (sm != 0) SDW_TRY(sdw_cx_add_lora(x, &out[0]->model, path, 0.0f, sm));
    if (with_clip && sc != 0) SDW_TRY(sdw_cx_add_lora(x, &out[1]->clip.spec, path, sc, 0.0f));
    return SDW_OK;
}

sdw_status sdw_node_controlnet_loader(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    if (!(out[0] = sdw_cv_new(SDW_CT_CONTROL_NET))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    return sdw_cx_resolve(x, SDW_FOLDER_CONTROLNET, sdw_cx_str(n, "control_net_name"), out[0]->controlnet,
                          sizeof out[0]->controlnet);
}
