/* cmd_info.c: `sd-worker info [--json] [--prediction eps|v] [--vae F]
 * [--clip-l F] [--t5xxl F] MODEL`: what the loader detects in a checkpoint
 * (and the FLUX parts given beside it), or in a ControlNet file or folder,
 * without loading its weights. */
#include "cli/commands.h"
#include "cli/cli_args.h"
#include "models/controlnet.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A ControlNet: what it is for and how it is stored. */
static int controlnet_info(const char *path, const sdw_controlnet_info *cn, bool json)
{
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", path);
        cJSON_AddStringToObject(o, "kind", "controlnet");
        cJSON_AddStringToObject(o, "family", sdw_family_name(cn->family));
        cJSON_AddStringToObject(o, "layout", cn->layout);
        cJSON_AddNumberToObject(o, "residuals", cn->n_down + 1);
        cJSON_AddNumberToObject(o, "context_dim", cn->unet.context_dim);
        cJSON_AddNumberToObject(o, "parameters", (double)cn->params);
        cJSON_AddStringToObject(o, "dtypes", cn->dtypes);
        char *s = cJSON_Print(o);
        puts(s);
        free(s);
        cJSON_Delete(o);
        return 0;
    }
    printf("model        %s\n", path);
    printf("kind         ControlNet (for %s UNets)\n", sdw_family_name(cn->family));
    printf("family       %s\n", sdw_family_name(cn->family));
    printf("layout       %s\n", cn->layout);
    printf("residuals    %d down + mid, context %d\n", cn->n_down, cn->unet.context_dim);
    printf("parameters   %.1fM\n", (double)cn->params / 1e6);
    printf("file dtypes  %s\n", cn->dtypes);
    return 0;
}

int cmd_info(int argc, char **argv)
{
    const char *model = NULL;
    bool json = false;
    sdw_load_params p = sdw_load_params_default();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--prediction") && i + 1 < argc) {
            if (!cli_parse_prediction(argv[++i], &p.prediction)) {
                fprintf(stderr, "sd-worker info: --prediction must be auto, eps or v\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--vae") && i + 1 < argc) p.vae_path = argv[++i];
        else if (!strcmp(argv[i], "--clip-l") && i + 1 < argc) p.clip_l_path = argv[++i];
        else if (!strcmp(argv[i], "--clip-g") && i + 1 < argc) p.clip_g_path = argv[++i];
        else if (!strcmp(argv[i], "--no-t5")) p.no_t5 = true;
        else if ((!strcmp(argv[i], "--t5xxl") || !strcmp(argv[i], "--t5")) && i + 1 < argc) p.t5_path = argv[++i];
        else if (!model && argv[i][0] != '-') model = argv[i];
        else {
            fprintf(stderr, "sd-worker info: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "usage: sd-worker info [--json] [--prediction auto|eps|v] [--vae F] [--clip-l F] [--clip-g F] [--t5xxl F] [--no-t5] MODEL\n");
        return 2;
    }
    sdw_controlnet_info cn;
    if (sdw_controlnet_probe(model, &cn) == SDW_OK) return controlnet_info(model, &cn, json);
    sdw_model_info in;
    if (sdw_model_probe(model, &p, &in) != SDW_OK) {
        fprintf(stderr, "sd-worker info: %s\n", sdw_last_error());
        return 1;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model);
        cJSON_AddStringToObject(o, "family", sdw_family_name(in.family));
        cJSON_AddBoolToObject(o, "inpaint", in.inpaint);
        cJSON_AddBoolToObject(o, "turbo", in.turbo);
        cJSON_AddStringToObject(o, "prediction", sdw_prediction_name(in.prediction));
        cJSON_AddStringToObject(o, "prediction_source", in.prediction_source);
        cJSON_AddStringToObject(o, "layout", in.layout);
        cJSON_AddStringToObject(o, "denoiser", in.denoiser ? in.denoiser : "unet");
        cJSON_AddNumberToObject(o, "tensors", in.n_tensors);
        cJSON_AddNumberToObject(o, "unknown_tensors", in.n_unknown);
        cJSON *pc = cJSON_AddObjectToObject(o, "parameters");
        cJSON_AddNumberToObject(pc, "unet", (double)in.params_unet);
        cJSON_AddNumberToObject(pc, "vae", (double)in.params_vae);
        cJSON_AddNumberToObject(pc, "text_encoders", (double)in.params_text);
        if (in.params_t5) cJSON_AddNumberToObject(pc, "t5", (double)in.params_t5);
        cJSON_AddStringToObject(o, "dtypes", in.dtypes);
        cJSON_AddStringToObject(o, "precision", sdw_precision_name(in.precision));
        cJSON *d = cJSON_AddObjectToObject(o, "defaults");
        cJSON_AddNumberToObject(d, "width", in.default_width);
        cJSON_AddNumberToObject(d, "height", in.default_height);
        cJSON_AddNumberToObject(d, "steps", in.default_steps);
        cJSON_AddNumberToObject(d, "cfg_scale", in.default_cfg);
        cJSON_AddStringToObject(d, "sampler", in.default_sampler);
        cJSON_AddStringToObject(d, "scheduler", in.default_scheduler);
        if (in.default_guidance > 0) cJSON_AddNumberToObject(d, "guidance", in.default_guidance);
        if (in.t5_max_length) cJSON_AddNumberToObject(d, "t5_max_length", in.t5_max_length);
        if (in.flow_shift > 0) cJSON_AddNumberToObject(d, "flow_shift", in.flow_shift);
        cJSON_AddNumberToObject(o, "latent_scale", in.latent_scale);
        cJSON_AddNumberToObject(o, "latent_shift", in.latent_shift);
        cJSON_AddNumberToObject(o, "latent_channels", in.latent_channels);
        cJSON_AddNumberToObject(o, "size_multiple", in.size_multiple);
        char *s = cJSON_Print(o);
        puts(s);
        free(s);
        cJSON_Delete(o);
        return 0;
    }
    printf("model        %s\n", model);
    printf("family       %s%s%s\n", sdw_family_name(in.family), in.inpaint ? " (inpainting, 9-channel UNet)" : "",
           in.turbo ? " (turbo)" : "");
    printf("prediction   %s (%s)\n", sdw_prediction_name(in.prediction), in.prediction_source);
    printf("layout       %s\n", in.layout);
    printf("tensors      %d (%d outside the known components)\n", in.n_tensors, in.n_unknown);
    printf("denoiser     %s, latents %d channels, sizes in multiples of %d\n", in.denoiser ? in.denoiser : "unet",
           in.latent_channels, in.size_multiple);
    const bool transformer = in.denoiser && strcmp(in.denoiser, "unet");
    printf("parameters   %s %.1fM, vae %.1fM, text encoders %.1fM", transformer ? "transformer" : "unet",
           (double)in.params_unet / 1e6, (double)in.params_vae / 1e6, (double)in.params_text / 1e6);
    if (in.params_t5) printf(" + T5 %.1fM", (double)in.params_t5 / 1e6);
    printf("\n");
    printf("file dtypes  %s\n", in.dtypes);
    printf("precision    %s (cpu isa %s)\n", sdw_precision_name(in.precision), sdw_cpu_isa_name());
    printf("defaults     %dx%d, %d steps, cfg %.1f, %s %s, latent scale %.5f", in.default_width,
           in.default_height, in.default_steps, in.default_cfg, in.default_sampler, in.default_scheduler,
           in.latent_scale);
    if (in.latent_shift != 0) printf(" shift %.4f", in.latent_shift);
    if (in.default_guidance > 0) printf(", guidance %.1f", in.default_guidance);
    if (in.t5_max_length) printf(", %d T5 tokens", in.t5_max_length);
    else if (sdw_family_is_sd3(in.family)) printf(", no T5 (its part of the context is zeros)");
    if (in.flow_shift > 0) printf(", flow shift %.2f", in.flow_shift);
    printf("\n");
    return 0;
}
