/* request_a1111.c: the AUTOMATIC1111 web UI's API bodies, as its clients send
 * them: POST /sdapi/v1/txt2img and /img2img (StableDiffusionProcessing's
 * fields) and POST /sdapi/v1/options.
 *
 * Read: prompt (default ""), negative_prompt, seed (-1 = random), steps,
 * cfg_scale, distilled_cfg_scale (Forge's: FLUX dev's distilled guidance,
 * apart from cfg_scale; "guidance" is the same), slg_layers / slg_scale /
 * slg_start / slg_end (SD3.5's skip-layer guidance, as the native API), width, height, sampler_name (or the older sampler_index; A1111
 * names such as "Euler a", "DPM++ 2M", also with a schedule suffix, "DPM++ 2M
 * Karras"), scheduler, batch_size, n_iter, clip_skip, override_settings
 * (sd_model_checkpoint, CLIP_stop_at_last_layers, randn_source: the noise
 * comes from A1111's GPU generator unless it says "CPU"); img2img adds
 * denoising_strength, init_images (the first is used), mask (white =
 * repaint) and inpainting_mask_invert. `<lora:name:w>` tags in the prompt are
 * collected by req_finish. alwayson_scripts.controlnet.args are
 * sd-webui-controlnet's units (parse_controlnet below). Everything else
 * (restore_faces, resize_mode, mask_blur, other scripts, ...) is accepted
 * and ignored. Unlike A1111, sizes not given default to the model's (or the
 * init image's). */
#include "server/request_internal.h"
#include "core/error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static sdw_status parse_overrides(const cJSON *j, sdw_job_request *r)
{
    const cJSON *o = req_get(j, "override_settings");
    if (!o) return SDW_OK;
    if (!cJSON_IsObject(o)) return sdw_fail(SDW_ERR_INVALID_ARG, "override_settings: must be an object");
    const char *rng = NULL;
    if (req_strdup(o, "sd_model_checkpoint", SDW_REQ_MAX_NAME, &r->model) != SDW_OK ||
        req_int(o, "CLIP_stop_at_last_layers", 1, 12, &r->clip_skip) != SDW_OK ||
        req_str(o, "randn_source", 16, &rng) != SDW_OK)
        return sdw_fail_context(SDW_ERR_INVALID_ARG, "override_settings");
    if (rng && !strcmp(rng, "CPU")) r->rng = SDW_RNG_CPU;
    else if (rng && (!strcmp(rng, "GPU") || !strcmp(rng, "NV"))) r->rng = SDW_RNG_CUDA;
    else if (rng) return sdw_fail(SDW_ERR_INVALID_ARG, "override_settings: randn_source: must be GPU, CPU or NV");
    return SDW_OK;
}

static sdw_status parse_images(const cJSON *j, const sdw_request_limits *lim, sdw_job_request *r)
{
    const cJSON *arr = req_get(j, "init_images");
    if (!arr) return sdw_fail(SDW_ERR_INVALID_ARG, "init_images: required by img2img");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) < 1 || !cJSON_IsString(cJSON_GetArrayItem(arr, 0)))
        return sdw_fail(SDW_ERR_INVALID_ARG, "init_images: must be an array of base64 strings");
    const char *b64 = cJSON_GetArrayItem(arr, 0)->valuestring;
    SDW_TRY(req_image_b64("init_images[0]", b64, strlen(b64), lim, &r->init));
    const cJSON *mask = req_get(j, "mask");
    if (mask) {
        if (!cJSON_IsString(mask)) return sdw_fail(SDW_ERR_INVALID_ARG, "mask: must be a base64 string");
        SDW_TRY(req_image_b64("mask", mask->valuestring, strlen(mask->valuestring), lim, &r->mask));
        SDW_TRY(req_bool(j, "inpainting_mask_invert", &r->mask_invert));
    }
    r->kind = r->mask.w ? SDW_JOB_INPAINT : SDW_JOB_IMG2IMG;
    return req_float(j, "denoising_strength", 0, 1, true, &r->strength);
}

/* One sd-webui-controlnet unit (its ControlNetUnit, with the defaults of
 * its API): enabled (true), module ("none"), model, weight (1, 0..2), image
 * (or the older input_image; base64, {"image", "mask"} or [image, mask];
 * img2img falls back on the init image), resize_mode ("Crop and Resize"),
 * processor_res (512), threshold_a / threshold_b (the module's defaults),
 * guidance_start (0), guidance_end (1; the older "guidance"), control_mode
 * ("Balanced"), pixel_perfect (false). low_vram, the mask, guess_mode
 * (dropped by sd-webui-controlnet 1.1.136 for control_mode) and the
 * fields of other unit types are ignored. */
static sdw_status read_unit(const cJSON *u, const sdw_request_limits *lim, sdw_job_control *c)
{
    SDW_TRY(req_strdup(u, "model", SDW_REQ_MAX_NAME, &c->model));
    SDW_TRY(req_control_module(u, "module", c));
    SDW_TRY(req_control_thresholds(u, "threshold_a", "threshold_b", c));
    SDW_TRY(req_control_processor_res(u, "processor_res", SDW_REQ_A1111_PROCESSOR_RES, c));
    SDW_TRY(req_bool(u, "pixel_perfect", &c->pixel_perfect));
    SDW_TRY(req_control_resize_mode(u, "resize_mode", c));
    SDW_TRY(req_float(u, "weight", 0, SDW_REQ_MAX_CONTROL_WEIGHT, false, &c->scale));
    SDW_TRY(req_float(u, "guidance_start", 0, 1, false, &c->start));
    SDW_TRY(req_float(u, "guidance", 0, 1, false, &c->end));
    SDW_TRY(req_float(u, "guidance_end", 0, 1, false, &c->end));
    SDW_TRY(req_control_mode(u, "control_mode", c));
    SDW_TRY(req_control_image(u, req_get(u, "image") ? "image" : "input_image", lim, c));
    return SDW_OK;
}

/* alwayson_scripts: {"controlnet": {"args": [unit, ...]}} (A1111 matches the
 * script's title in any case). Disabled units and nulls are skipped; the
 * others keep their argument index in messages. */
static sdw_status parse_controlnet(const cJSON *j, const sdw_request_limits *lim, sdw_job_request *r)
{
    const cJSON *scripts = req_get(j, "alwayson_scripts"), *cn = NULL, *it;
    if (!scripts) return SDW_OK;
    if (!cJSON_IsObject(scripts)) return sdw_fail(SDW_ERR_INVALID_ARG, "alwayson_scripts: must be an object");
    cJSON_ArrayForEach(it, scripts)
        if (it->string && !strcasecmp(it->string, "controlnet")) cn = it;
    if (!cn || cJSON_IsNull(cn)) return SDW_OK;
    const cJSON *args = cJSON_IsObject(cn) ? req_get(cn, "args") : NULL;
    if (!args) return SDW_OK;
    if (!cJSON_IsArray(args))
        return sdw_fail(SDW_ERR_INVALID_ARG, "alwayson_scripts.controlnet.args: must be an array of units");
    int i = 0;
    const cJSON *u;
    cJSON_ArrayForEach(u, args) {
        char field[64];
        snprintf(field, sizeof field, "alwayson_scripts.controlnet.args[%d]", i++);
        if (cJSON_IsNull(u)) continue;
        if (!cJSON_IsObject(u)) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be an object (a ControlNet unit)", field);
        bool enabled = true;
        if (req_bool(u, "enabled", &enabled) != SDW_OK) return sdw_fail_context(SDW_ERR_INVALID_ARG, "%s", field);
        if (!enabled) continue;
        sdw_job_control c;
        req_control_init(&c);
        sdw_status s = read_unit(u, lim, &c);
        if (s == SDW_OK) s = req_add_control(r, field, &c, r->init.w > 0);
        else sdw_fail_context(s, "%s", field);
        req_control_free(&c);
        if (s != SDW_OK) return s;
    }
    return SDW_OK;
}

static sdw_status parse(const cJSON *j, bool img2img, const sdw_request_limits *lim, sdw_job_request *r)
{
    const char *s = NULL;
    SDW_TRY(req_strdup(j, "prompt", lim->max_prompt, &r->prompt));
    if (!r->prompt && !(r->prompt = strdup(""))) return sdw_fail(SDW_ERR_NOMEM, "prompt: out of memory");
    SDW_TRY(req_strdup(j, "negative_prompt", lim->max_prompt, &r->negative_prompt));
    SDW_TRY(req_int64(j, "seed", -1, SDW_REQ_MAX_SEED, &r->seed));
    SDW_TRY(req_int(j, "steps", 1, SDW_REQ_MAX_STEPS, &r->steps));
    SDW_TRY(req_float(j, "cfg_scale", 0, SDW_REQ_MAX_GUIDANCE, false, &r->cfg));
    SDW_TRY(req_float(j, "guidance", 0, SDW_REQ_MAX_GUIDANCE, false, &r->guidance));
    SDW_TRY(req_float(j, "distilled_cfg_scale", 0, SDW_REQ_MAX_GUIDANCE, false, &r->guidance));
    SDW_TRY(req_width_height(j, r));
    SDW_TRY(req_slg(j, r));
    SDW_TRY(req_str(j, "sampler_index", 64, &s));
    SDW_TRY(req_str(j, "sampler_name", 64, &s));
    SDW_TRY(req_sampler(req_get(j, "sampler_name") ? "sampler_name" : "sampler_index", s, r));
    s = NULL;
    SDW_TRY(req_str(j, "scheduler", 64, &s));
    SDW_TRY(req_schedule("scheduler", s, r));
    SDW_TRY(req_int(j, "batch_size", 1, SDW_REQ_MAX_BATCH, &r->batch_size));
    SDW_TRY(req_int(j, "n_iter", 1, SDW_REQ_MAX_BATCH, &r->n_iter));
    SDW_TRY(req_int(j, "clip_skip", 1, 12, &r->clip_skip));
    SDW_TRY(parse_overrides(j, r));
    r->kind = SDW_JOB_TXT2IMG;
    if (img2img) SDW_TRY(parse_images(j, lim, r));
    SDW_TRY(parse_controlnet(j, lim, r));
    return req_finish(r, lim);
}

sdw_status sdw_parse_a1111_request(const char *body, size_t n, bool img2img, const sdw_request_limits *lim,
                                   sdw_job_request *out)
{
    sdw_job_request_init(out);
    out->dialect = SDW_DIALECT_A1111;
    out->rng = SDW_RNG_CUDA;   /* A1111's default noise: the GPU (Philox) generator */
    cJSON *j;
    SDW_TRY(req_json_object(body, n, &j));
    sdw_status s = parse(j, img2img, lim, out);
    cJSON_Delete(j);
    return s;
}

sdw_status sdw_parse_a1111_options(const char *body, size_t n, char **name)
{
    *name = NULL;
    cJSON *j;
    SDW_TRY(req_json_object(body, n, &j));
    sdw_status s = req_strdup(j, "sd_model_checkpoint", SDW_REQ_MAX_NAME, name);
    cJSON_Delete(j);
    return s;
}

/* ---------------------------------------------------------------- /controlnet/detect */

void sdw_detect_request_free(sdw_detect_request *d)
{
    for (int i = 0; i < d->n_images; i++) sdw_image_free(&d->images[i]);
    free(d->images);
    memset(d, 0, sizeof *d);
}

/* {controlnet_module ("none"), controlnet_input_images ([base64]),
 * controlnet_processor_res (-1 = 512), controlnet_threshold_a / _b (-1 =
 * the module's defaults)}; controlnet_masks and low_vram are ignored. */
static sdw_status parse_detect(const cJSON *j, const sdw_request_limits *lim, sdw_detect_request *d)
{
    sdw_job_control c;
    req_control_init(&c);
    SDW_TRY(req_control_module(j, "controlnet_module", &c));
    SDW_TRY(req_control_thresholds(j, "controlnet_threshold_a", "controlnet_threshold_b", &c));
    SDW_TRY(req_control_processor_res(j, "controlnet_processor_res", SDW_REQ_A1111_PROCESSOR_RES, &c));
    d->pre = c.pre;
    d->processor_res = c.processor_res;
    const cJSON *arr = req_get(j, "controlnet_input_images");
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;
    if (arr && !cJSON_IsArray(arr))
        return sdw_fail(SDW_ERR_INVALID_ARG, "controlnet_input_images: must be an array of base64 images");
    if (n == 0) return sdw_fail(SDW_ERR_INVALID_ARG, "controlnet_input_images: no image given");
    if (n > SDW_REQ_MAX_DETECT_IMAGES)
        return sdw_fail(SDW_ERR_INVALID_ARG, "controlnet_input_images: more than %d images", SDW_REQ_MAX_DETECT_IMAGES);
    if (!(d->images = calloc((size_t)n, sizeof *d->images))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(arr, i);
        char field[48];
        snprintf(field, sizeof field, "controlnet_input_images[%d]", i);
        if (!cJSON_IsString(v)) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be a base64 image", field);
        SDW_TRY(req_image_b64(field, v->valuestring, strlen(v->valuestring), lim, &d->images[i]));
        d->n_images = i + 1;
    }
    return SDW_OK;
}

sdw_status sdw_parse_a1111_detect(const char *body, size_t n, const sdw_request_limits *lim, sdw_detect_request *out)
{
    memset(out, 0, sizeof *out);
    cJSON *j;
    SDW_TRY(req_json_object(body, n, &j));
    sdw_status s = parse_detect(j, lim, out);
    cJSON_Delete(j);
    return s;
}
