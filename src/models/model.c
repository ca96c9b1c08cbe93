/* model.c: loading a whole checkpoint (sdw_model_load): single-file LDM/SGM
 * checkpoints with an optional sidecar yaml, or diffusers folders; family,
 * inpainting and prediction type detection; an optional replacement VAE. */
#include "models/model.h"
#include "models/lora.h"
#include "models/flux.h"
#include "models/mmdit.h"
#include "models/sd3_text.h"
#include "models/t5.h"
#include "core/error.h"
#include "core/log.h"
#include "io/json_file.h"
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *sdw_family_name(sdw_family f)
{
    switch (f) {
    case SDW_FAMILY_SD1: return "sd1";
    case SDW_FAMILY_SD2: return "sd2";
    case SDW_FAMILY_SDXL: return "sdxl";
    case SDW_FAMILY_SDXL_REFINER: return "sdxl-refiner";
    case SDW_FAMILY_FLUX_DEV: return "flux-dev";
    case SDW_FAMILY_FLUX_SCHNELL: return "flux-schnell";
    case SDW_FAMILY_SD3: return "sd3";
    case SDW_FAMILY_SD35_MEDIUM: return "sd3.5-medium";
    case SDW_FAMILY_SD35_LARGE: return "sd3.5-large";
    }
    return "?";
}

bool sdw_family_is_sd3(sdw_family f)
{
    return f == SDW_FAMILY_SD3 || f == SDW_FAMILY_SD35_MEDIUM || f == SDW_FAMILY_SD35_LARGE;
}

bool sdw_family_is_flux(sdw_family f) { return f == SDW_FAMILY_FLUX_DEV || f == SDW_FAMILY_FLUX_SCHNELL; }

const char *sdw_prediction_name(sdw_prediction p)
{
    switch (p) {
    case SDW_PREDICTION_AUTO: return "auto";
    case SDW_PREDICTION_EPS: return "eps";
    case SDW_PREDICTION_V: return "v";
    case SDW_PREDICTION_FLOW: return "flow";
    }
    return "?";
}

sdw_load_params sdw_load_params_default(void)
{
    sdw_load_params p = { .precision = SDW_PRECISION_AUTO, .prediction = SDW_PREDICTION_AUTO, .with_vae_encoder = true,
                          .turbo = -1, .weight_type = SDW_WT_KEEP, .page_out = -1 };
    return p;
}

static sdw_status family_of(const sdw_unet_config *c, const char *what, sdw_family *f)
{
    if (c->adm_in && c->context_dim == 2048) *f = SDW_FAMILY_SDXL;
    else if (c->adm_in && c->context_dim == 1280) *f = SDW_FAMILY_SDXL_REFINER;
    else if (!c->adm_in && c->context_dim == 768) *f = SDW_FAMILY_SD1;
    else if (!c->adm_in && c->context_dim == 1024) *f = SDW_FAMILY_SD2;
    /* The tiny test models: tell SD1 from SD2 by their projection kind. */
    else if (!c->adm_in) *f = c->linear_proj ? SDW_FAMILY_SD2 : SDW_FAMILY_SD1;
    else if (c->adm_in) *f = SDW_FAMILY_SDXL;
    else return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: unknown model family (context %d)", what, c->context_dim);
    return SDW_OK;
}

static bool turbo_family(sdw_family f) { return f == SDW_FAMILY_SDXL || f == SDW_FAMILY_SD35_LARGE; }

void sdw_model_set_defaults(sdw_model_info *in)
{
    in->denoiser = "unet";
    in->latent_channels = 4;
    in->default_steps = 20;
    in->default_cfg = 7.0f;
    in->default_sampler = "euler_a";
    in->default_scheduler = "normal";
    switch (in->family) {
    case SDW_FAMILY_SD1: in->default_width = 512; in->latent_scale = 0.18215f; break;
    case SDW_FAMILY_SD2:
        in->default_width = in->prediction == SDW_PREDICTION_V ? 768 : 512;
        in->latent_scale = 0.18215f;
        break;
    case SDW_FAMILY_SDXL:
    case SDW_FAMILY_SDXL_REFINER: in->default_width = 1024; in->latent_scale = 0.13025f; break;
    case SDW_FAMILY_FLUX_DEV:
    case SDW_FAMILY_FLUX_SCHNELL:
        /* diffusers' FluxPipeline defaults: 28 steps guided 3.5 (dev), 4 unguided (schnell); one
         * evaluation a step (cfg 1); Euler on the reference's own shifted schedule. */
        in->denoiser = "flux transformer";
        in->latent_channels = 16;
        in->size_multiple = 16;
        in->default_width = 1024;
        in->latent_scale = 0.3611f;
        in->latent_shift = 0.1159f;
        in->default_cfg = 1.0f;
        in->default_sampler = "euler";
        in->default_scheduler = "flow";
        in->default_steps = in->family == SDW_FAMILY_FLUX_DEV ? 28 : 4;
        in->default_guidance = in->family == SDW_FAMILY_FLUX_DEV ? 3.5f : 0.0f;
        in->t5_max_length = in->family == SDW_FAMILY_FLUX_DEV ? 512 : 256;
        break;
    case SDW_FAMILY_SD3:
    case SDW_FAMILY_SD35_MEDIUM:
    case SDW_FAMILY_SD35_LARGE:
        /* diffusers' StableDiffusion3Pipeline defaults: 28 steps, cfg 7, T5 at 256 tokens;
         * Euler on the reference's flow schedule, shift 3 (or the model's own). */
        in->denoiser = "mmdit";
        in->latent_channels = 16;
        in->size_multiple = 16;
        in->default_width = 1024;
        in->latent_scale = 1.5305f;
        in->latent_shift = 0.0609f;
        in->default_cfg = 7.0f;
        in->default_sampler = "euler";
        in->default_scheduler = "flow";
        in->default_steps = 28;
        in->t5_max_length = 256;
        if (in->flow_shift <= 0) in->flow_shift = 3.0f;
        break;
    }
    in->default_height = in->default_width;
    if (in->turbo && in->family == SDW_FAMILY_SDXL) {
        /* SDXL-Turbo is distilled for 1-4 steps without guidance on trailing timesteps. */
        in->default_width = in->default_height = 512;
        in->default_steps = 4;
        in->default_cfg = 0.0f;
        in->default_scheduler = "trailing";
    } else if (in->turbo) {
        /* SD3.5 Large Turbo: 4 steps, no guidance (one pass a step), 1024x1024 (SAI's sd3_infer). */
        in->default_steps = 4;
        in->default_cfg = 0.0f;
    }
}

static bool contains_turbo(const char *s)
{
    return s && strcasestr(s, "turbo") != NULL;
}

/* --preset decides; else the file or folder name, or the safetensors metadata, says "turbo". */
void sdw_model_detect_turbo(sdw_model_info *in, const sdw_load_params *p, const char *path, const sdw_safetensors *st)
{
    if (p->turbo >= 0) in->turbo = p->turbo && turbo_family(in->family);
    else in->turbo = turbo_family(in->family) &&
                     (contains_turbo(strrchr(path, '/') ? strrchr(path, '/') + 1 : path) ||
                      (st && (contains_turbo(sdw_st_meta_get(st, "modelspec.title")) ||
                              contains_turbo(sdw_st_meta_get(st, "modelspec.architecture")))));
}

/* ComfyUI's rule for SD2 single files without a marker: v-prediction models
 * have a wide spread in this late norm bias. Only a guess; --prediction wins. */
static bool sd2_v_heuristic(const sdw_safetensors *st, double *std_out)
{
    const sdw_st_tensor *t = sdw_st_find(st, "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias");
    if (!t) return false;
    float *v = malloc((size_t)t->numel * sizeof *v);
    if (!v || sdw_st_read_f32(st, t, v) != SDW_OK) {
        free(v);
        return false;
    }
    double s = 0, sq = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        s += v[i];
        sq += (double)v[i] * v[i];
    }
    free(v);
    double mean = s / (double)t->numel, sd = sqrt(fmax(sq / (double)t->numel - mean * mean, 0));
    *std_out = sd;
    return sd > 0.09;
}

void sdw_model_note_dtypes(sdw_model_info *in, const sdw_safetensors *st)
{
    for (int i = 0; i < st->n_tensors; i++) {
        const char *d = sdw_st_dtype_name(st->tensors[i].dtype);
        if (strstr(in->dtypes, d)) continue;
        size_t l = strlen(in->dtypes);
        snprintf(in->dtypes + l, sizeof in->dtypes - l, "%s%s", l ? ", " : "", d);
    }
    in->n_tensors += st->n_tensors;
}

void sdw_model_count_part(sdw_model_info *in, const sdw_safetensors *st, int64_t *params)
{
    sdw_model_note_dtypes(in, st);
    for (int i = 0; i < st->n_tensors; i++) *params += st->tensors[i].numel;
}

sdw_status sdw_model_open_part(const char *path, sdw_model_info *in, int64_t *params, sdw_safetensors **st)
{
    SDW_TRY(sdw_st_open(path, st));
    sdw_model_count_part(in, *st, params);
    return SDW_OK;
}

sdw_status sdw_model_keep_or_close(sdw_model *m, sdw_safetensors *st, sdw_status s, char role, const char *prefix)
{
    if (s == SDW_OK && st->keep_mapped) sdw_model_keep_mapped(m, st, role, prefix);
    else sdw_st_close(st);
    return s;
}

int64_t sdw_model_params_under(const sdw_safetensors *st, const char *const *prefixes, int n)
{
    int64_t p = 0;
    for (int i = 0; i < st->n_tensors; i++)
        for (int k = 0; k < n; k++)
            if (!strncmp(st->tensors[i].name, prefixes[k], strlen(prefixes[k]))) {
                p += st->tensors[i].numel;
                break;
            }
    return p;
}

static sdw_status load_vae_override(sdw_model *m, const char *path, bool enc)
{
    sdw_safetensors *st;
    SDW_TRY(sdw_st_open(path, &st));
    sdw_vae_config c;
    const char *prefix = sdw_vae_ldm_present(st, "first_stage_model.") ? "first_stage_model."
                         : sdw_vae_ldm_present(st, "")                  ? ""
                                                                         : NULL;
    sdw_status s;
    if (prefix) {
        s = sdw_vae_config_from_ldm(st, prefix, &c);
    } else {
        /* diffusers-named VAE file: the standard SD architecture. */
        c = (sdw_vae_config){ .n_levels = 4, .block_out = { 128, 256, 512, 512 }, .layers_per_block = 2,
                              .latent_channels = 4, .use_quant_conv = true, .use_post_quant_conv = true };
        s = sdw_st_find(st, "decoder.conv_in.weight") ? SDW_OK
                                                        : sdw_fail(SDW_ERR_FORMAT, "%s: not a VAE file", path);
    }
    /* FLUX's 16-channel autoencoder loads as an LDM VAE too, but cannot
     * decode a 4-channel UNet's latents. */
    if (s == SDW_OK && m->unet && c.latent_channels != sdw_unet_get_config(m->unet)->out_channels)
        s = sdw_fail(SDW_ERR_FORMAT, "%s: a %d-channel VAE, the UNet's latents have %d", path, c.latent_channels,
                     sdw_unet_get_config(m->unet)->out_channels);
    if (s == SDW_OK) s = sdw_vae_load(m->be, st, prefix, &c, enc, &m->vae);
    sdw_st_close(st);
    return s == SDW_OK ? s : sdw_fail_context(s, "--vae %s", path);
}

static sdw_status load_single(sdw_model *m, const char *path, const sdw_load_params *p)
{
    sdw_model_info *in = &m->info;
    in->layout = "single-file";
    sdw_safetensors *st;
    SDW_TRY(sdw_st_open(path, &st));
    /* SD3's MMDiT: Stability's single files (or a bare transformer file). */
    static const char *const sd3_prefixes[] = { "model.diffusion_model.", "" };
    for (int i = 0; i < 2; i++)
        if (sdw_mmdit_present(st, sd3_prefixes[i])) return sdw_sd3_model_load_single(m, path, st, sd3_prefixes[i], p);
    /* FLUX's transformer, bare (BFL's file, a GGUF) or in an all-in-one checkpoint. */
    static const char *const flux_prefixes[] = { "", "model.diffusion_model." };
    for (int i = 0; i < 2; i++)
        if (sdw_flux_present(st, flux_prefixes[i])) {
            return sdw_flux_model_load_single(m, path, st, flux_prefixes[i], p);   /* it owns st now */
        }
    sdw_yaml_map yaml = { 0 };
    char yp[4096];
    sdw_status s = SDW_OK;
    if (sdw_yaml_sidecar_path(path, yp, sizeof yp)) s = sdw_yaml_load(yp, &yaml);
    sdw_unet_config uc;
    if (s == SDW_OK) s = sdw_unet_config_from_ldm(st, &yaml, &uc);
    if (s == SDW_OK) s = family_of(&uc, path, &in->family);
    if (s != SDW_OK) goto out;
    in->inpaint = uc.in_channels == 9;
    in->size_multiple = 8 << (uc.n_levels - 1);
    sdw_model_note_dtypes(in, st);
    static const char *const unet_p[] = { "model.diffusion_model." }, *const vae_p[] = { "first_stage_model." };
    static const char *const text_p[] = { "cond_stage_model.", "conditioner.embedders." };
    in->params_unet = sdw_model_params_under(st, unet_p, 1);
    in->params_vae = sdw_model_params_under(st, vae_p, 1);
    in->params_text = sdw_model_params_under(st, text_p, 2);
    for (int i = 0; i < st->n_tensors; i++) {
        const char *n = st->tensors[i].name;
        if (strncmp(n, "model.diffusion_model.", 22) && strncmp(n, "first_stage_model.", 18) &&
            strncmp(n, "cond_stage_model.", 17) && strncmp(n, "conditioner.embedders.", 22))
            in->n_unknown++;
    }
    /* Prediction type: what the user says, then what the file says, then the family rule. */
    const char *param = sdw_yaml_get(&yaml, "model.params.parameterization");
    double sd = 0;
    if (p->prediction != SDW_PREDICTION_AUTO) {
        in->prediction = p->prediction;
        snprintf(in->prediction_source, sizeof in->prediction_source, "override");
    } else if (sdw_st_find(st, "v_pred")) {
        in->prediction = SDW_PREDICTION_V;
        snprintf(in->prediction_source, sizeof in->prediction_source, "v_pred key");
    } else if (param) {
        in->prediction = !strcmp(param, "v") ? SDW_PREDICTION_V : SDW_PREDICTION_EPS;
        snprintf(in->prediction_source, sizeof in->prediction_source, "sidecar yaml");
    } else if (in->family == SDW_FAMILY_SD2 && !in->inpaint) {
        in->prediction = sd2_v_heuristic(st, &sd) ? SDW_PREDICTION_V : SDW_PREDICTION_EPS;
        snprintf(in->prediction_source, sizeof in->prediction_source,
                 "assumed: norm-bias spread %.3f %s 0.09 (ComfyUI's rule)", sd, sd > 0.09 ? ">" : "<=");
    } else {
        in->prediction = SDW_PREDICTION_EPS;
        snprintf(in->prediction_source, sizeof in->prediction_source, "assumed: family default");
    }
    sdw_model_detect_turbo(in, p, path, st);
    sdw_model_set_defaults(in);
    const char *scale = sdw_yaml_get(&yaml, "model.params.scale_factor");
    if (scale && atof(scale) > 0) in->latent_scale = (float)atof(scale);
    if (!m->be) goto out;   /* a probe stops here */

    s = sdw_text_conditioner_load_single(m->be, st, &yaml, &m->text);
    if (s == SDW_OK && (m->text.family == SDW_FAMILY_SDXL) != (in->family == SDW_FAMILY_SDXL))
        s = sdw_fail(SDW_ERR_FORMAT, "%s: the text encoders (%s) do not match the UNet (%s)", path,
                     sdw_family_name(m->text.family), sdw_family_name(in->family));
    if (s == SDW_OK && m->text.context_dim != uc.context_dim)
        s = sdw_fail(SDW_ERR_FORMAT, "%s: text conditioning is %d wide but the UNet expects %d", path,
                     m->text.context_dim, uc.context_dim);
    if (s == SDW_OK) s = sdw_unet_load(m->be, st, SDW_NAMES_LDM, &uc, &m->unet);
    if (s == SDW_OK && !p->vae_path) {
        sdw_vae_config vc;
        s = sdw_vae_config_from_ldm(st, "first_stage_model.", &vc);
        if (s == SDW_OK) s = sdw_vae_load(m->be, st, "first_stage_model.", &vc, p->with_vae_encoder, &m->vae);
    }
out:
    sdw_yaml_free(&yaml);
    sdw_st_close(st);
    return s;
}

/* Opens <dir>/<sub>/<stem>.safetensors or its .fp16 variant. */
sdw_status sdw_model_open_diffusers(const char *dir, const char *sub, const char *stem, sdw_safetensors **st)
{
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s/%s.safetensors", dir, sub, stem);
    if (stat(path, &sb) != 0) snprintf(path, sizeof path, "%s/%s/%s.fp16.safetensors", dir, sub, stem);
    if (stat(path, &sb) != 0)
        return sdw_fail(SDW_ERR_IO, "%s: no %s/%s.safetensors (nor .fp16.safetensors)", dir, sub, stem);
    return sdw_st_open(path, st);
}

sdw_status sdw_model_load_transformer(sdw_model *m, const char *dir, sdw_transformer_config_fn configure,
                                      sdw_transformer_load_fn load, void *config)
{
    char path[4200];
    cJSON *cfg;
    snprintf(path, sizeof path, "%s/transformer/config.json", dir);
    SDW_TRY(sdw_json_load_file(path, &cfg));
    sdw_safetensors *st;
    sdw_status s = sdw_model_open_diffusers(dir, "transformer", "diffusion_pytorch_model", &st);
    if (s == SDW_OK) {
        s = sdw_fail_context(configure(st, cfg, config), "%s/transformer", dir);
        if (s != SDW_OK) sdw_st_close(st);
    }
    cJSON_Delete(cfg);
    SDW_TRY(s);
    sdw_model_count_part(&m->info, st, &m->info.params_unet);
    st->keep_mapped = m->be != NULL;
    if (m->be) s = sdw_fail_context(load(m, st, config), "%s/transformer", dir);
    return sdw_model_keep_or_close(m, st, s, 't', "");
}

static sdw_status load_diffusers(sdw_model *m, const char *dir, const sdw_load_params *p)
{
    sdw_model_info *in = &m->info;
    in->layout = "diffusers";
    char path[4096];
    cJSON *j = NULL;
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    SDW_TRY(sdw_json_load_file(path, &j));
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/transformer/config.json", dir);
    struct stat tsb;
    if (stat(path, &tsb) == 0) {
        cJSON *tj;
        SDW_TRY(sdw_json_load_file(path, &tj));
        bool sd3 = !strcmp(sdw_json_str(tj, "_class_name", ""), "SD3Transformer2DModel");
        cJSON_Delete(tj);
        return sd3 ? sdw_sd3_model_load_diffusers(m, dir, p) : sdw_flux_model_load_diffusers(m, dir, p);
    }
    snprintf(path, sizeof path, "%s/unet/config.json", dir);
    sdw_status s = sdw_json_load_file(path, &j);
    if (s != SDW_OK) return sdw_fail_context(s, "%s: the diffusers folder has no usable unet/", dir);
    sdw_unet_config uc;
    s = sdw_unet_config_from_diffusers(j, &uc);
    cJSON_Delete(j);
    SDW_TRY(s);
    SDW_TRY(family_of(&uc, dir, &in->family));
    in->inpaint = uc.in_channels == 9;
    in->size_multiple = 8 << (uc.n_levels - 1);
    in->prediction = SDW_PREDICTION_EPS;
    snprintf(in->prediction_source, sizeof in->prediction_source, "assumed: family default");
    snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir);
    if (sdw_json_load_file(path, &j) == SDW_OK) {
        const char *pt = sdw_json_str(j, "prediction_type", NULL);
        if (pt) {
            in->prediction = !strcmp(pt, "v_prediction") ? SDW_PREDICTION_V : SDW_PREDICTION_EPS;
            snprintf(in->prediction_source, sizeof in->prediction_source, "scheduler config");
        }
        cJSON_Delete(j);
    }
    if (p->prediction != SDW_PREDICTION_AUTO) {
        in->prediction = p->prediction;
        snprintf(in->prediction_source, sizeof in->prediction_source, "override");
    }
    sdw_model_detect_turbo(in, p, dir, NULL);
    sdw_model_set_defaults(in);
    snprintf(path, sizeof path, "%s/vae/config.json", dir);
    sdw_vae_config vc;
    if ((s = sdw_json_load_file(path, &j)) != SDW_OK) return sdw_fail_context(s, "%s: no usable vae/", dir);
    s = sdw_vae_config_from_diffusers(j, &vc);
    const cJSON *sf = cJSON_GetObjectItem(j, "scaling_factor");
    if (cJSON_IsNumber(sf)) in->latent_scale = (float)sf->valuedouble;
    cJSON_Delete(j);
    SDW_TRY(s);

    sdw_safetensors *st;
    SDW_TRY(sdw_model_open_diffusers(dir, "unet", "diffusion_pytorch_model", &st));
    sdw_model_count_part(in, st, &in->params_unet);
    if (m->be) s = sdw_unet_load(m->be, st, SDW_NAMES_DIFFUSERS, &uc, &m->unet);
    sdw_st_close(st);
    SDW_TRY(s);
    SDW_TRY(sdw_model_open_diffusers(dir, "vae", "diffusion_pytorch_model", &st));
    sdw_model_count_part(in, st, &in->params_vae);
    if (m->be && !p->vae_path) s = sdw_vae_load(m->be, st, NULL, &vc, p->with_vae_encoder, &m->vae);
    sdw_st_close(st);
    SDW_TRY(s);
    static const char *const tes[] = { "text_encoder", "text_encoder_2" };
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, tes[i]);
        struct stat sb;
        if (stat(path, &sb) != 0) continue;
        SDW_TRY(sdw_model_open_diffusers(dir, tes[i], "model", &st));
        sdw_model_count_part(in, st, &in->params_text);
        sdw_st_close(st);
    }
    if (!m->be) return SDW_OK;
    SDW_TRY(sdw_text_conditioner_load_diffusers(m->be, dir, &m->text));
    if (m->text.context_dim != uc.context_dim)
        return sdw_fail(SDW_ERR_FORMAT, "%s: text conditioning is %d wide but the UNet expects %d", dir,
                        m->text.context_dim, uc.context_dim);
    return SDW_OK;
}

static sdw_status load_any(const char *path, const sdw_load_params *p, sdw_model *m)
{
    struct stat sb;
    if (stat(path, &sb) != 0) return sdw_fail(SDW_ERR_IO, "%s: no such file or folder", path);
    size_t l = strlen(path);
    if (S_ISREG(sb.st_mode) && ((l > 5 && !strcmp(path + l - 5, ".ckpt")) || (l > 3 && !strcmp(path + l - 3, ".pt")) ||
                                (l > 4 && !strcmp(path + l - 4, ".pth") ) || (l > 4 && !strcmp(path + l - 4, ".bin"))))
        return sdw_fail(SDW_ERR_UNSUPPORTED,
                        "%s: pickle checkpoints are not loaded (they can run code); convert it to .safetensors", path);
    sdw_status s = S_ISDIR(sb.st_mode) ? load_diffusers(m, path, p) : load_single(m, path, p);
    bool flux = sdw_family_is_flux(m->info.family), sd3 = sdw_family_is_sd3(m->info.family);
    if (s == SDW_OK && !flux && !sd3 && (p->clip_l_path || p->t5_path || p->clip_g_path || p->no_t5))
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s is %s: --clip-l, --clip-g, --t5xxl and --no-t5 are FLUX / SD3 parts",
                        path, sdw_family_name(m->info.family));
    if (s == SDW_OK && flux && (p->clip_g_path || p->no_t5))
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s is %s: FLUX has no CLIP-G and needs its T5", path,
                        sdw_family_name(m->info.family));
    if (s == SDW_OK && m->be && p->vae_path && !flux && !sd3) s = load_vae_override(m, p->vae_path, p->with_vae_encoder);
    return s;
}

sdw_status sdw_model_probe(const char *path, const sdw_load_params *p, sdw_model_info *info)
{
    sdw_model m = { 0 };
    sdw_status s = load_any(path, p, &m);
    m.info.precision = sdw_precision_resolve(p->precision);
    *info = m.info;
    return s;
}

size_t sdw_model_held_bytes(const sdw_model *m)
{
    size_t sd3 = m->mmdit ? sdw_mmdit_bytes(m->mmdit) : 0;
    if (m->sd3_text)
        sd3 += (m->sd3_text->clip_l ? m->sd3_text->clip_l->bytes : 0) +
               (m->sd3_text->clip_g ? m->sd3_text->clip_g->bytes : 0) + sdw_t5_bytes(m->sd3_text->t5);
    return sd3 + sdw_unet_bytes(m->unet) + sdw_flux_bytes(m->flux) + sdw_t5_bytes(m->t5) + sdw_vae_bytes(m->vae) + (m->text.te1 ? m->text.te1->bytes : 0) +
           (m->text.te2 ? m->text.te2->bytes : 0) + sdw_backend_derived_bytes(m->be);
}
sdw_status sdw_model_load(const char *path, const sdw_load_params *p, sdw_model **out)
{
    *out = NULL;
    sdw_model *m = calloc(1, sizeof *m);
    if (!m) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    sdw_status s = (unsigned)p->weight_type < SDW_WT_COUNT
                       ? sdw_backend_create(p->precision, &m->be)
                       : sdw_fail(SDW_ERR_INVALID_ARG, "unknown weight type %d", (int)p->weight_type);
    if (s == SDW_OK) sdw_backend_set_weight_type(m->be, p->weight_type);
    if (s == SDW_OK) s = load_any(path, p, m);
    if (s != SDW_OK) {
        sdw_model_free(m);
        return s;
    }
    m->info.precision = sdw_backend_precision(m->be);
    m->info.weight_bytes = sdw_model_held_bytes(m);
    SDW_INFO("loaded %s: %s%s, %s prediction (%s), %.3f GB of weights (%s) in %s", path,
             sdw_family_name(m->info.family), m->info.inpaint ? " inpaint" : "", sdw_prediction_name(m->info.prediction),
             m->info.prediction_source, (double)m->info.weight_bytes / 1e9, sdw_weight_type_name(p->weight_type),
             sdw_precision_name(m->info.precision));
    *out = m;
    return SDW_OK;
}

void sdw_model_keep_mapped(sdw_model *m, sdw_safetensors *st, char role, const char *prefix)
{
    m->mapped[m->n_mapped].st = st;
    m->mapped[m->n_mapped].role = role;
    snprintf(m->mapped[m->n_mapped].prefix, sizeof m->mapped[m->n_mapped].prefix, "%s", prefix);
    m->n_mapped++;
}

void sdw_model_page_out(sdw_model *m, char role)
{
    if (!m->page_out) return;
    for (int i = 0; i < m->n_mapped; i++) {
        if (m->mapped[i].role != role) continue;
        const sdw_safetensors *st = m->mapped[i].st;
        size_t l = strlen(m->mapped[i].prefix);
        for (int k = 0; k < st->n_tensors; k++)
            if (!strncmp(st->tensors[k].name, m->mapped[i].prefix, l)) sdw_st_release(st, &st->tensors[k]);
    }
}

void sdw_model_free(sdw_model *m)
{
    if (!m) return;
    sdw_lora_state_free(m->lora);
    sdw_text_conditioner_free(&m->text);
    sdw_unet_free(m->unet);
    sdw_flux_free(m->flux);
    sdw_t5_free(m->t5);
    sdw_mmdit_free(m->mmdit);
    if (m->sd3_text) sdw_sd3_text_free(m->sd3_text);
    free(m->sd3_text);
    sdw_vae_free(m->vae);
    /* After the layers reading them; an all-in-one file is listed twice. */
    for (int i = 0; i < m->n_mapped; i++) {
        bool again = false;
        for (int k = 0; k < i; k++) again = again || m->mapped[k].st == m->mapped[i].st;
        if (!again) sdw_st_close(m->mapped[i].st);
    }
    sdw_arena_free(&m->kept);
    sdw_backend_free(m->be);
    free(m);
    /* Gigabytes of weights go back to the system now, not at exit: a worker
     * that switches models must not hold two models' worth. */
    malloc_trim(0);
}

const sdw_model_info *sdw_model_get_info(const sdw_model *m) { return &m->info; }
