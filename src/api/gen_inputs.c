/* gen_inputs.c: what sdw_generate makes of a call's inputs before the
 * pipeline runs: RGB8 images viewed as io/image.h images, the LoRA set (the
 * caller's list, then the prompt's <lora:...> tags resolved in lora_dir),
 * and the ControlNet units (nets loaded, or the caller's own handles, and
 * checked against the model's UNet; control images preprocessed unless the
 * caller did, and fitted to the generation size; what the parameters text
 * says of each unit). */
#include "api/api_internal.h"
#include "core/error.h"
#include "io/preprocess.h"
#include "pipeline/frontend.h"
#include "text/prompt_parse.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sdw_status sdw_api_image_view(const sdw_image_rgb8 *in, const char *what, sdw_image *out)
{
    memset(out, 0, sizeof *out);
    if (!in->data || in->width <= 0 || in->height <= 0)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: an empty image (%dx%d%s)", what, in->width, in->height,
                        in->data ? "" : ", data NULL");
    if ((int64_t)in->width * in->height > SDW_IMAGE_DEFAULT_MAX_PIXELS)
        return sdw_fail(SDW_ERR_NOMEM, "%s: %dx%d is more than %lld pixels", what, in->width, in->height,
                        (long long)SDW_IMAGE_DEFAULT_MAX_PIXELS);
    *out = (sdw_image){ in->width, in->height, 3, in->data };
    return SDW_OK;
}

sdw_status sdw_api_lora_set(const sdw_gen_params *p, sdw_lora_set *set)
{
    memset(set, 0, sizeof *set);
    for (int i = 0; i < p->n_loras; i++) {
        sdw_lora_ref l;
        SDW_TRY(sdw_api_lora_read(p, i, &l));
        SDW_TRY(sdw_lora_set_add(set, l.path, l.te_strength, l.unet_strength));
    }
    if (p->prompt_loras_listed) return SDW_OK;
    sdw_parsed_prompt pp;
    SDW_TRY(sdw_prompt_parse(p->prompt, &pp));
    int tags = pp.n_loras;
    sdw_parsed_prompt_free(&pp);
    if (tags && !p->lora_dir)
        return sdw_fail(SDW_ERR_INVALID_ARG, "the prompt names LoRAs (<lora:...>): give a folder to find them in "
                        "(lora_dir; --lora-dir DIR on the command line)");
    return tags ? sdw_lora_set_add_prompt(set, p->lora_dir, p->prompt) : SDW_OK;
}

/* ---------------------------------------------------------------- ControlNets */

static const char *fit_name(sdw_fit_mode m)
{
    return m == SDW_FIT_JUST_RESIZE ? "Just Resize" : m == SDW_FIT_RESIZE_AND_FILL ? "Resize and Fill" : "Crop and Resize";
}

static sdw_control_mode mode_of(const char *s)
{
    return !s || !strcmp(s, "balanced") ? SDW_CONTROL_BALANCED
         : !strcmp(s, "prompt")         ? SDW_CONTROL_PROMPT
                                        : SDW_CONTROL_CONTROLNET;
}

/* Error messages name the file: the loader's and the image reader's do; where one does not, it is put first. */
static sdw_status name_file(sdw_status s, const char *path)
{
    if (s != SDW_OK && !strstr(sdw_last_error(), path)) return sdw_fail_context(s, "%s", path);
    return s;
}

/* The net in path, loaded once however often it is named, and checked against the model's UNet. */
static sdw_status control_net(sdw_api_controls *c, sdw_model *m, const char *path, sdw_controlnet **out)
{
    char real[PATH_MAX];
    if (!realpath(path, real)) snprintf(real, sizeof real, "%s", path);
    for (int i = 0; i < c->n_nets; i++)
        if (!strcmp(c->real[i], real)) {
            *out = c->nets[i];
            return SDW_OK;
        }
    SDW_TRY(sdw_controlnet_load(m->be, path, out));
    c->nets[c->n_nets] = *out;
    snprintf(c->real[c->n_nets++], sizeof c->real[0], "%s", real);
    const char *base = strrchr(path, '/');
    return sdw_controlnet_check_base(*out, sdw_unet_get_config(m->unet), base && base[1] ? base + 1 : path);
}

/* The unit's image preprocessed (unless the caller did), fit to w x h when its size differs, as RGB
 * floats in [0, 1]. */
static sdw_status control_image(const sdw_gen_control *u, const sdw_preprocessor *pre, sdw_fit_mode fit_mode,
                                int k, int w, int h, float **out, sdw_infotext_control *info)
{
    sdw_image src, img, fit;
    char what[48];
    snprintf(what, sizeof what, "controls[%d].image", k);
    SDW_TRY(sdw_api_image_view(&u->image, what, &src));
    if (u->preprocessed) {
        SDW_TRY(sdw_image_convert(&src, 3, &img));
        info->processor_res = pre->kind == SDW_PRE_NONE || u->processor_res <= 0 ? -1 : u->processor_res;
    } else {
        SDW_TRY(sdw_preprocess(pre, &src, &img));
        /* The preprocessor ran at the image's own size: its shorter side is A1111's processor resolution. */
        info->processor_res = pre->kind == SDW_PRE_NONE ? -1 : (src.w < src.h ? src.w : src.h);
    }
    if (img.w != w || img.h != h) {
        sdw_status s = sdw_control_image_fit(&img, w, h, fit_mode, &fit);
        sdw_image_free(&img);
        SDW_TRY(s);
        img = fit;
    }
    float *f = malloc((size_t)w * h * 3 * sizeof *f);
    if (f)
        for (size_t i = 0; i < (size_t)w * h * 3; i++) f[i] = img.data[i] / 255.0f;
    sdw_image_free(&img);
    if (!f) return sdw_fail(SDW_ERR_NOMEM, "%s: out of memory", what);
    *out = f;
    return SDW_OK;
}

static sdw_status load_unit(const sdw_gen_params *p, sdw_model *m, int k, int w, int h, sdw_api_controls *c)
{
    sdw_gen_control u;
    SDW_TRY(sdw_api_control_read(p, k, &u));
    sdw_preprocessor pre = { SDW_PRE_NONE, 0, 0 };
    sdw_fit_mode fit = SDW_FIT_CROP_AND_RESIZE;
    if (u.preprocessor) SDW_TRY(sdw_preprocessor_parse(u.preprocessor, &pre));
    if (u.resize_mode) SDW_TRY(sdw_fit_mode_parse(u.resize_mode, &fit));
    sdw_controlnet *net = u.net;
    if (net) SDW_TRY(sdw_controlnet_check_model(net, m, u.path));
    else SDW_TRY(name_file(control_net(c, m, u.path, &net), u.path));
    sdw_infotext_control *info = &c->info[k];
    SDW_TRY(control_image(&u, &pre, fit, k, w, h, &c->images[k], info));
    c->units[k] = (sdw_control_unit){ net, c->images[k], u.scale, u.start, u.end, mode_of(u.control_mode) };
    if (u.model_name) snprintf(c->stem[k], sizeof c->stem[0], "%s", u.model_name);
    else sdw_path_stem(u.path, c->stem[k], sizeof c->stem[0]);
    if (u.model_hash) snprintf(c->hash[k], sizeof c->hash[0], "%s", u.model_hash);
    else sdw_infotext_short_hash(u.path, c->hash[k]);
    info->module = sdw_preprocessor_name(pre.kind);
    info->model = c->stem[k];
    info->hash = c->hash[k];
    info->resize_mode = fit_name(fit);
    info->threshold_a = pre.kind == SDW_PRE_CANNY || pre.kind == SDW_PRE_THRESHOLD ? pre.a : -1;
    info->threshold_b = pre.kind == SDW_PRE_CANNY ? pre.b : -1;
    return SDW_OK;
}

sdw_status sdw_api_controls_load(const sdw_gen_params *p, sdw_model *m, int w, int h, sdw_api_controls *c)
{
    if (!p->n_controls) return SDW_OK;
    if (!m->unet)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "ControlNet works with SD1, SD2 and SDXL models, not %s",
                        sdw_family_name(m->info.family));
    for (int k = 0; k < p->n_controls; k++) {
        SDW_TRY(load_unit(p, m, k, w, h, c));
        c->n = k + 1;
    }
    return SDW_OK;
}

void sdw_api_controls_free(sdw_api_controls *c)
{
    for (int i = 0; i < c->n_nets; i++) sdw_controlnet_free(c->nets[i]);
    for (int k = 0; k < SDW_MAX_CONTROLS; k++) free(c->images[k]);
    memset(c, 0, sizeof *c);
}
