/* comfy_nodes.c: the node table: one sdw_comfy_node_spec per ComfyUI class
 * we run, with ComfyUI's own inputs (names, types, defaults, min / max /
 * step, combo lists, optional ones), outputs, display names and categories,
 * as nodes.py and comfy_extras (nodes_sd3.py, nodes_flux.py, nodes_canny.py)
 * declare them today. comfy_graph.c validates workflows against it,
 * comfy_object_info.c describes it to clients, the executor runs it.
 *
 * Where ComfyUI's list names things we do not run, the list holds only what
 * we run, in ComfyUI's order and spelling: the samplers and schedulers, and
 * the model families of CLIPLoader / DualCLIPLoader's "type" (a workflow
 * asking for another family then fails validation with ComfyUI's
 * value_not_in_list answer naming the ones we have, rather than at run
 * time). Input order is ComfyUI's (required first, then optional): it is the
 * order of /object_info's input_order and of validation. */
#include "comfy/comfy.h"
#include <string.h>

#define MAX_RESOLUTION 16384.0
/* ComfyUI's seed maximum, 0xffffffffffffffff: as a double it rounds to
 * 2^64, which compares the same way against any JSON number (also a
 * double here). */
#define SEED_MAX 18446744073709551615.0

/* ---------------------------------------------------------------- choice lists */

/* comfy.samplers.KSampler.SAMPLERS order (KSAMPLER_NAMES, then ddim). */
const char *const sdw_comfy_sampler_names[] = {
    "euler", "euler_ancestral", "heun", "dpm_2", "lms", "dpmpp_2s_ancestral", "dpmpp_2m", "dpmpp_2m_sde",
    "lcm", "ipndm", "ddim", NULL,
};
/* comfy.samplers.SCHEDULER_HANDLERS order (ddim_uniform is our "leading",
 * laid out as ComfyUI's in comfy mode: sampling/schedule_comfy.c). */
const char *const sdw_comfy_scheduler_names[] = {
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", NULL,
};

static const char *const weight_dtypes[] = {"default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2", NULL};
static const char *const clip_types[] = {"stable_diffusion", "sd3", NULL};
static const char *const dual_clip_types[] = {"sdxl", "sd3", "flux", NULL};
static const char *const devices[] = {"default", "cpu", NULL};
static const char *const enable_disable[] = {"enable", "disable", NULL};
static const char *const disable_enable[] = {"disable", "enable", NULL};
static const char *const color_channels[] = {"alpha", "red", "green", "blue", NULL};
static const char *const image_upscale_methods[] = {"nearest-exact", "bilinear", "area", "bicubic", "lanczos", NULL};
static const char *const latent_upscale_methods[] = {"nearest-exact", "bilinear", "area", "bicubic", "bislerp", NULL};
static const char *const crop_methods[] = {"disabled", "center", NULL};

/* ---------------------------------------------------------------- input shorthands */

/* step 0: ComfyUI gives none (steps, seeds, batch sizes). */
#define LINK(n, t) {.name = n, .type = SDW_CT_##t}
#define OPT_LINK(n, t) {.name = n, .type = SDW_CT_##t, .optional = true}
#define INT(n, d, lo, hi, st) {.name = n, .type = SDW_CT_INT, .def = d, .min = lo, .max = hi, .step = st}
#define FLOAT(n, d, lo, hi, st) {.name = n, .type = SDW_CT_FLOAT, .def = d, .min = lo, .max = hi, .step = st}
#define COMBO(n, list) {.name = n, .type = SDW_CT_COMBO, .choices = list}
#define OPT_COMBO(n, list) {.name = n, .type = SDW_CT_COMBO, .choices = list, .optional = true}
#define FOLDER(n, f) {.name = n, .type = SDW_CT_COMBO, .folder = SDW_FOLDER_##f}
#define SEED(n) INT(n, 0, 0, SEED_MAX, 0)
#define SAMPLER_INPUTS                                                                                         \
    INT("steps", 20, 1, 10000, 0), FLOAT("cfg", 8.0, 0.0, 100.0, 0.1), COMBO("sampler_name", sdw_comfy_sampler_names), \
        COMBO("scheduler", sdw_comfy_scheduler_names), LINK("positive", CONDITIONING), LINK("negative", CONDITIONING), \
        LINK("latent_image", LATENT)

#define OUT1(t) .outputs = {SDW_CT_##t}, .output_names = {#t}, .n_outputs = 1

const sdw_comfy_node_spec sdw_comfy_nodes[] = {
    /* ---- loaders */
    {.class_type = "CheckpointLoaderSimple", .display_name = "Load Checkpoint", .category = "model/loaders",
     .description = "Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
     .inputs = {FOLDER("ckpt_name", CHECKPOINTS)},
     .outputs = {SDW_CT_MODEL, SDW_CT_CLIP, SDW_CT_VAE}, .output_names = {"MODEL", "CLIP", "VAE"}, .n_outputs = 3},
    {.class_type = "UNETLoader", .display_name = "Load Diffusion Model", .category = "model/loaders",
     .inputs = {FOLDER("unet_name", UNET), COMBO("weight_dtype", weight_dtypes)}, OUT1(MODEL)},
    {.class_type = "CLIPLoader", .display_name = "Load CLIP", .category = "model/loaders",
     .description = "Recipes:\nsd: clip-l\nsd3: t5 xxl / clip-g / clip-l",
     .inputs = {FOLDER("clip_name", CLIP), COMBO("type", clip_types), OPT_COMBO("device", devices)}, OUT1(CLIP)},
    {.class_type = "DualCLIPLoader", .display_name = "Load CLIP (Dual)", .category = "model/loaders",
     .description = "Recipes:\nsdxl: clip-l, clip-g\nsd3: clip-l, clip-g / clip-l, t5 / clip-g, t5\nflux: clip-l, t5",
     .inputs = {FOLDER("clip_name1", CLIP), FOLDER("clip_name2", CLIP), COMBO("type", dual_clip_types),
                OPT_COMBO("device", devices)},
     OUT1(CLIP)},
    {.class_type = "TripleCLIPLoader", .display_name = "Load CLIP (Triple)", .category = "model/loaders",
     .description = "Recipes:\nsd3: clip-l, clip-g, t5",
     .inputs = {FOLDER("clip_name1", CLIP), FOLDER("clip_name2", CLIP), FOLDER("clip_name3", CLIP),
                OPT_COMBO("device", devices)},
     OUT1(CLIP)},
    {.class_type = "VAELoader", .display_name = "Load VAE", .category = "model/loaders",
     .inputs = {FOLDER("vae_name", VAE)}, OUT1(VAE)},
    {.class_type = "LoraLoader", .display_name = "Load LoRA (Model and CLIP)", .category = "model/loaders",
     .description = "This LoRA loader is used to modify both diffusion and CLIP models, altering the way in which "
                    "latents are denoised such as applying styles. Multiple LoRA nodes can be linked together.",
     .inputs = {LINK("model", MODEL), LINK("clip", CLIP), FOLDER("lora_name", LORAS),
                FLOAT("strength_model", 1.0, -100.0, 100.0, 0.01), FLOAT("strength_clip", 1.0, -100.0, 100.0, 0.01)},
     .outputs = {SDW_CT_MODEL, SDW_CT_CLIP}, .output_names = {"MODEL", "CLIP"}, .n_outputs = 2},
    {.class_type = "LoraLoaderModelOnly", .display_name = "Load LoRA", .category = "model/loaders",
     .description = "This LoRAs loader is used to modify the diffusion model, altering the way in which latents are "
                    "denoised such as applying styles. Multiple LoRA nodes can be linked together.",
     .inputs = {LINK("model", MODEL), FOLDER("lora_name", LORAS), FLOAT("strength_model", 1.0, -100.0, 100.0, 0.01)},
     OUT1(MODEL)},
    {.class_type = "ControlNetLoader", .display_name = "Load ControlNet Model", .category = "model/loaders",
     .inputs = {FOLDER("control_net_name", CONTROLNET)}, OUT1(CONTROL_NET)},

    /* ---- conditioning */
    {.class_type = "CLIPTextEncode", .display_name = "CLIP Text Encode (Prompt)", .category = "model/conditioning",
     .description = "Encodes a text prompt using a CLIP model into an embedding that can be used to guide the "
                    "diffusion model towards generating specific images.",
     .inputs = {{.name = "text", .type = SDW_CT_STRING, .multiline = true}, LINK("clip", CLIP)}, OUT1(CONDITIONING)},
    {.class_type = "CLIPSetLastLayer", .display_name = "CLIP Set Last Layer", .category = "model/conditioning",
     .inputs = {LINK("clip", CLIP), INT("stop_at_clip_layer", -1, -24, -1, 1)}, OUT1(CLIP)},
    {.class_type = "ConditioningCombine", .display_name = "Conditioning (Combine)",
     .category = "model/conditioning/transform",
     .inputs = {LINK("conditioning_1", CONDITIONING), LINK("conditioning_2", CONDITIONING)}, OUT1(CONDITIONING)},
    {.class_type = "ConditioningSetArea", .display_name = "Conditioning (Set Area)",
     .category = "model/conditioning/transform",
     .inputs = {LINK("conditioning", CONDITIONING), INT("width", 64, 64, MAX_RESOLUTION, 8),
                INT("height", 64, 64, MAX_RESOLUTION, 8), INT("x", 0, 0, MAX_RESOLUTION, 8),
                INT("y", 0, 0, MAX_RESOLUTION, 8), FLOAT("strength", 1.0, 0.0, 10.0, 0.01)},
     OUT1(CONDITIONING)},
    {.class_type = "ConditioningZeroOut", .display_name = "Conditioning Zero Out",
     .category = "model/conditioning/transform", .inputs = {LINK("conditioning", CONDITIONING)}, OUT1(CONDITIONING)},
    {.class_type = "ControlNetApplyAdvanced", .display_name = "Apply ControlNet",
     .category = "model/conditioning/controlnet",
     .inputs = {LINK("positive", CONDITIONING), LINK("negative", CONDITIONING), LINK("control_net", CONTROL_NET),
                LINK("image", IMAGE), FLOAT("strength", 1.0, 0.0, 10.0, 0.01),
                FLOAT("start_percent", 0.0, 0.0, 1.0, 0.001), FLOAT("end_percent", 1.0, 0.0, 1.0, 0.001),
                OPT_LINK("vae", VAE)},
     .outputs = {SDW_CT_CONDITIONING, SDW_CT_CONDITIONING}, .output_names = {"positive", "negative"},
     .n_outputs = 2},
    {.class_type = "FluxGuidance", .display_name = "FluxGuidance", .category = "advanced/conditioning/flux",
     .inputs = {LINK("conditioning", CONDITIONING), FLOAT("guidance", 3.5, 0.0, 100.0, 0.1)}, OUT1(CONDITIONING)},
    {.class_type = "ConditioningSetTimestepRange", .display_name = "ConditioningSetTimestepRange",
     .category = "advanced/conditioning",
     .inputs = {LINK("conditioning", CONDITIONING), FLOAT("start", 0.0, 0.0, 1.0, 0.001),
                FLOAT("end", 1.0, 0.0, 1.0, 0.001)},
     OUT1(CONDITIONING)},

    /* ---- model patches (comfy_extras/nodes_model_advanced.py) */
    {.class_type = "ModelSamplingSD3", .display_name = "ModelSamplingSD3", .category = "advanced/model",
     .inputs = {LINK("model", MODEL), FLOAT("shift", 3.0, 0.0, 100.0, 0.01)}, OUT1(MODEL)},
    {.class_type = "ModelSamplingFlux", .display_name = "ModelSamplingFlux", .category = "advanced/model",
     .inputs = {LINK("model", MODEL), FLOAT("max_shift", 1.15, 0.0, 100.0, 0.01),
                FLOAT("base_shift", 0.5, 0.0, 100.0, 0.01), INT("width", 1024, 16, MAX_RESOLUTION, 8),
                INT("height", 1024, 16, MAX_RESOLUTION, 8)},
     OUT1(MODEL)},

    /* ---- latents */
    {.class_type = "EmptyLatentImage", .display_name = "Empty Latent Image", .category = "model/latent",
     .description = "Create a new batch of empty latent images to be denoised via sampling.",
     .inputs = {INT("width", 1024, 16, MAX_RESOLUTION, 8), INT("height", 1024, 16, MAX_RESOLUTION, 8),
                INT("batch_size", 1, 1, 4096, 0)},
     OUT1(LATENT)},
    {.class_type = "EmptySD3LatentImage", .display_name = "EmptySD3LatentImage",
     .category = "model/latent/stable diffusion",
     .inputs = {INT("width", 1024, 16, MAX_RESOLUTION, 16), INT("height", 1024, 16, MAX_RESOLUTION, 16),
                INT("batch_size", 1, 1, 4096, 0)},
     OUT1(LATENT)},
    {.class_type = "VAEDecode", .display_name = "VAE Decode", .category = "model/latent",
     .description = "Decodes latent images back into pixel space images.",
     .inputs = {LINK("samples", LATENT), LINK("vae", VAE)}, OUT1(IMAGE)},
    {.class_type = "VAEEncode", .display_name = "VAE Encode", .category = "model/latent",
     .inputs = {LINK("pixels", IMAGE), LINK("vae", VAE)}, OUT1(LATENT)},
    {.class_type = "VAEEncodeForInpaint", .display_name = "VAE Encode (for Inpainting)", .category = "model/latent",
     .inputs = {LINK("pixels", IMAGE), LINK("vae", VAE), LINK("mask", MASK), INT("grow_mask_by", 6, 0, 64, 1)},
     OUT1(LATENT)},
    {.class_type = "SetLatentNoiseMask", .display_name = "Set Latent Noise Mask", .category = "model/latent",
     .inputs = {LINK("samples", LATENT), LINK("mask", MASK)}, OUT1(LATENT)},
    {.class_type = "LatentUpscale", .display_name = "Upscale Latent", .category = "model/latent",
     .inputs = {LINK("samples", LATENT), COMBO("upscale_method", latent_upscale_methods),
                INT("width", 512, 0, MAX_RESOLUTION, 8), INT("height", 512, 0, MAX_RESOLUTION, 8),
                COMBO("crop", crop_methods)},
     OUT1(LATENT)},

    /* ---- sampling */
    {.class_type = "KSampler", .display_name = "KSampler", .category = "model/sampling",
     .description = "Uses the provided model, positive and negative conditioning to denoise the latent image.",
     .inputs = {LINK("model", MODEL), SEED("seed"), SAMPLER_INPUTS, FLOAT("denoise", 1.0, 0.0, 1.0, 0.01)},
     OUT1(LATENT)},
    {.class_type = "KSamplerAdvanced", .display_name = "KSampler (Advanced)", .category = "model/sampling",
     .inputs = {LINK("model", MODEL), COMBO("add_noise", enable_disable), SEED("noise_seed"), SAMPLER_INPUTS,
                INT("start_at_step", 0, 0, 10000, 0), INT("end_at_step", 10000, 0, 10000, 0),
                COMBO("return_with_leftover_noise", disable_enable)},
     OUT1(LATENT)},

    /* ---- custom sampling (comfy_extras/nodes_custom_sampler.py) */
    {.class_type = "SamplerCustomAdvanced", .display_name = "SamplerCustomAdvanced",
     .category = "sampling/custom_sampling",
     .inputs = {LINK("noise", NOISE), LINK("guider", GUIDER), LINK("sampler", SAMPLER), LINK("sigmas", SIGMAS),
                LINK("latent_image", LATENT)},
     .outputs = {SDW_CT_LATENT, SDW_CT_LATENT}, .output_names = {"output", "denoised_output"}, .n_outputs = 2},
    {.class_type = "RandomNoise", .display_name = "RandomNoise", .category = "sampling/custom_sampling/noise",
     .inputs = {SEED("noise_seed")}, OUT1(NOISE)},
    {.class_type = "DisableNoise", .display_name = "DisableNoise", .category = "sampling/custom_sampling/noise",
     OUT1(NOISE)},
    {.class_type = "BasicGuider", .display_name = "BasicGuider", .category = "sampling/custom_sampling/guiders",
     .inputs = {LINK("model", MODEL), LINK("conditioning", CONDITIONING)}, OUT1(GUIDER)},
    {.class_type = "CFGGuider", .display_name = "CFGGuider", .category = "sampling/custom_sampling/guiders",
     .inputs = {LINK("model", MODEL), LINK("positive", CONDITIONING), LINK("negative", CONDITIONING),
                FLOAT("cfg", 8.0, 0.0, 100.0, 0.1)},
     OUT1(GUIDER)},
    {.class_type = "KSamplerSelect", .display_name = "KSamplerSelect", .category = "sampling/custom_sampling/samplers",
     .inputs = {COMBO("sampler_name", sdw_comfy_sampler_names)}, OUT1(SAMPLER)},
    {.class_type = "BasicScheduler", .display_name = "BasicScheduler", .category = "sampling/custom_sampling/schedulers",
     .inputs = {LINK("model", MODEL), COMBO("scheduler", sdw_comfy_scheduler_names), INT("steps", 20, 1, 10000, 0),
                FLOAT("denoise", 1.0, 0.0, 1.0, 0.01)},
     OUT1(SIGMAS)},

    /* ---- images */
    {.class_type = "LoadImage", .display_name = "Load Image", .category = "image",
     .inputs = {{.name = "image", .type = SDW_CT_COMBO, .folder = SDW_FOLDER_INPUT, .image_upload = true}},
     .outputs = {SDW_CT_IMAGE, SDW_CT_MASK}, .output_names = {"IMAGE", "MASK"}, .n_outputs = 2},
    {.class_type = "LoadImageMask", .display_name = "Load Image (as Mask)", .category = "image",
     .inputs = {{.name = "image", .type = SDW_CT_COMBO, .folder = SDW_FOLDER_INPUT, .image_upload = true},
                COMBO("channel", color_channels)},
     OUT1(MASK)},
    /* ComfyUI's SaveImage / PreviewImage now also pass their images on. */
    {.class_type = "SaveImage", .display_name = "Save Image", .category = "image",
     .description = "Saves the input images to your ComfyUI output directory.",
     .inputs = {LINK("images", IMAGE), {.name = "filename_prefix", .type = SDW_CT_STRING, .def_str = "ComfyUI"}},
     .outputs = {SDW_CT_IMAGE}, .output_names = {"images"}, .n_outputs = 1, .output_node = true},
    {.class_type = "PreviewImage", .display_name = "Preview Image", .category = "image",
     .description = "Preview the images without saving them to the ComfyUI output directory.",
     .inputs = {LINK("images", IMAGE)},
     .outputs = {SDW_CT_IMAGE}, .output_names = {"images"}, .n_outputs = 1, .output_node = true},
    {.class_type = "ImageScale", .display_name = "Upscale Image", .category = "image/upscaling",
     .inputs = {LINK("image", IMAGE), COMBO("upscale_method", image_upscale_methods),
                INT("width", 512, 0, MAX_RESOLUTION, 1), INT("height", 512, 0, MAX_RESOLUTION, 1),
                COMBO("crop", crop_methods)},
     OUT1(IMAGE)},
    {.class_type = "Canny", .display_name = "Canny", .category = "image/preprocessors",
     .inputs = {LINK("image", IMAGE), FLOAT("low_threshold", 0.4, 0.01, 0.99, 0.01),
                FLOAT("high_threshold", 0.8, 0.01, 0.99, 0.01)},
     OUT1(IMAGE)},
};
const int sdw_comfy_n_nodes = (int)(sizeof sdw_comfy_nodes / sizeof sdw_comfy_nodes[0]);

const sdw_comfy_node_spec *sdw_comfy_node_find(const char *class_type)
{
    if (!class_type) return NULL;
    for (int i = 0; i < sdw_comfy_n_nodes; i++)
        if (strcmp(sdw_comfy_nodes[i].class_type, class_type) == 0) return &sdw_comfy_nodes[i];
    return NULL;
}

int sdw_comfy_spec_n_inputs(const sdw_comfy_node_spec *s)
{
    int n = 0;
    while (n < SDW_COMFY_MAX_INPUTS && s->inputs[n].name) n++;
    return n;
}

const char *sdw_comfy_type_name(sdw_comfy_type t)
{
    static const char *const names[] = {
        [SDW_CT_MODEL] = "MODEL", [SDW_CT_CLIP] = "CLIP", [SDW_CT_VAE] = "VAE",
        [SDW_CT_CONDITIONING] = "CONDITIONING", [SDW_CT_LATENT] = "LATENT", [SDW_CT_IMAGE] = "IMAGE",
        [SDW_CT_MASK] = "MASK", [SDW_CT_CONTROL_NET] = "CONTROL_NET", [SDW_CT_NOISE] = "NOISE",
        [SDW_CT_GUIDER] = "GUIDER", [SDW_CT_SAMPLER] = "SAMPLER", [SDW_CT_SIGMAS] = "SIGMAS", [SDW_CT_INT] = "INT",
        [SDW_CT_FLOAT] = "FLOAT", [SDW_CT_STRING] = "STRING", [SDW_CT_BOOLEAN] = "BOOLEAN",
        [SDW_CT_COMBO] = "COMBO",
    };
    if ((unsigned)t >= sizeof names / sizeof names[0] || !names[t]) return "*";
    return names[t];
}

/* ComfyUI's folder names (folder_paths): "unet" and "clip" are the legacy
 * aliases of these. */
const char *sdw_comfy_folder_name(sdw_comfy_folder f)
{
    switch (f) {
    case SDW_FOLDER_CHECKPOINTS: return "checkpoints";
    case SDW_FOLDER_LORAS: return "loras";
    case SDW_FOLDER_CONTROLNET: return "controlnet";
    case SDW_FOLDER_VAE: return "vae";
    case SDW_FOLDER_CLIP: return "text_encoders";
    case SDW_FOLDER_UNET: return "diffusion_models";
    case SDW_FOLDER_INPUT: return "input";
    case SDW_FOLDER_NONE:
    case SDW_FOLDER_COUNT: break;
    }
    return "";
}
