/* request_a1111.c: the AUTOMATIC1111 web UI's API bodies, as its clients send
 * them: POST /sdapi/v1/txt2img and /img2img (StableDiffusionProcessing's
 * fields) and POST /sdapi/v1/options.
 *
 * Read: prompt (default ""), negative_prompt, seed (-1 = random), steps,
 * cfg_scale, distilled_cfg_scale (Forge's: FLUX dev's distilled guidance,
 * apart from cfg_scale; "guidance" is the same), width, height, sampler_name (or the older sampler_index; A1111
 * names such as "Euler a", "DPM++ 2M", also with a schedule suffix, "DPM++ 2M
 * Karras"), scheduler, batch_size, n_iter, clip_skip, override_settings
 * (sd_model_checkpoint, CLIP_stop_at_last_layers, randn_source: the noise
 * comes from A1111's GPU generator unless it says "CPU"); img2img adds
 * denoising_strength, init_images (the first is used), mask (white =
 * repaint) and inpainting_mask_invert. `<lora:name:w>` tags in the prompt are
 * collected by req_finish. Everything else (restore_faces, resize_mode,
 * mask_blur, alwayson_scripts, ...) is accepted and ignored. Unlike A1111,
 * sizes not given default to the model's (or the init image's). */
#include "server/request_internal.h"
#include "core/error.h"
#include <string.h>

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
