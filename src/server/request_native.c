/* request_native.c: POST /v1/jobs, the worker's own job API (the original
 * worker's contract, DESIGN.md "HTTP"):
 *   {"operation": "image_generation" | "image_transform" | "image_inpaint",
 *    "prompt", "negative_prompt", "steps", "guidance_scale", "width", "height",
 *    "seed", "sampler", "scheduler", "init_image" | "input_image" (base64),
 *    "mask_image" (base64, white = repaint), "strength",
 *    "loras": [{"path" | "name", "strength"}], "model", "preview_every"}
 * Extensions: "cfg_scale" (= guidance_scale), "clip_skip", "rng" ("cpu" |
 * "cuda"), "guidance" (FLUX dev's distilled guidance, apart from
 * guidance_scale; "distilled_cfg_scale", Forge's name, is the same). Unknown members ("hive_id", "worker_id", ...) are ignored. Without
 * "operation" the images present decide it. */
#include "server/request_internal.h"
#include "core/error.h"
#include <stdio.h>
#include <string.h>

static sdw_status read_loras(const cJSON *j, sdw_job_request *r)
{
    const cJSON *arr = req_get(j, "loras");
    if (!arr) return SDW_OK;
    if (!cJSON_IsArray(arr)) return sdw_fail(SDW_ERR_INVALID_ARG, "loras: must be an array of {\"name\", \"strength\"}");
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        char field[32];
        snprintf(field, sizeof field, "loras[%d]", i++);
        if (!cJSON_IsObject(e)) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be an object {\"name\", \"strength\"}", field);
        const char *name = NULL;
        float w = 1.0f;
        SDW_TRY(req_str(e, "name", SDW_REQ_MAX_NAME, &name));
        if (!name) SDW_TRY(req_str(e, "path", SDW_REQ_MAX_NAME, &name));
        if (!name) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: needs \"name\" or \"path\"", field);
        if (req_float(e, "strength", -10, 10, false, &w) != SDW_OK) return sdw_fail_context(SDW_ERR_INVALID_ARG, "%s", field);
        float te = w, unet = w;
        if (req_float(e, "te_strength", -10, 10, false, &te) != SDW_OK ||
            req_float(e, "unet_strength", -10, 10, false, &unet) != SDW_OK)
            return sdw_fail_context(SDW_ERR_INVALID_ARG, "%s", field);
        SDW_TRY(req_add_lora(r, field, name, te, unet));
    }
    return SDW_OK;
}

static sdw_status read_image(const cJSON *j, const char *key, const sdw_request_limits *lim, sdw_image *out)
{
    const char *b64 = NULL;
    const cJSON *v = req_get(j, key);
    if (v && !cJSON_IsString(v)) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be a base64 string", key);
    if (v) b64 = v->valuestring;
    if (!b64) return SDW_OK;
    return req_image_b64(key, b64, strlen(b64), lim, out);
}

static sdw_status parse(const cJSON *j, const sdw_request_limits *lim, sdw_job_request *r)
{
    const char *op = NULL, *s = NULL;
    SDW_TRY(req_str(j, "operation", 64, &op));
    SDW_TRY(req_strdup(j, "prompt", lim->max_prompt, &r->prompt));
    if (!r->prompt) return sdw_fail(SDW_ERR_INVALID_ARG, "prompt: required");
    SDW_TRY(req_strdup(j, "negative_prompt", lim->max_prompt, &r->negative_prompt));
    SDW_TRY(req_int(j, "steps", 1, SDW_REQ_MAX_STEPS, &r->steps));
    SDW_TRY(req_float(j, "cfg_scale", 0, SDW_REQ_MAX_GUIDANCE, false, &r->cfg));
    SDW_TRY(req_float(j, "guidance_scale", 0, SDW_REQ_MAX_GUIDANCE, false, &r->cfg));
    SDW_TRY(req_float(j, "distilled_cfg_scale", 0, SDW_REQ_MAX_GUIDANCE, false, &r->guidance));
    SDW_TRY(req_float(j, "guidance", 0, SDW_REQ_MAX_GUIDANCE, false, &r->guidance));
    SDW_TRY(req_width_height(j, r));
    SDW_TRY(req_int64(j, "seed", -1, SDW_REQ_MAX_SEED, &r->seed));
    SDW_TRY(req_str(j, "sampler", 64, &s));
    SDW_TRY(req_sampler("sampler", s, r));
    s = NULL;
    SDW_TRY(req_str(j, "scheduler", 64, &s));
    SDW_TRY(req_schedule("scheduler", s, r));
    s = NULL;
    SDW_TRY(req_str(j, "rng", 16, &s));
    if (s && !sdw_rng_kind_parse(s, &r->rng)) return sdw_fail(SDW_ERR_INVALID_ARG, "rng: must be \"cpu\" or \"cuda\"");
    SDW_TRY(req_float(j, "strength", 0, 1, true, &r->strength));
    SDW_TRY(req_int(j, "clip_skip", 1, 12, &r->clip_skip));
    SDW_TRY(req_int(j, "preview_every", 0, SDW_REQ_MAX_STEPS, &r->preview_every));
    SDW_TRY(req_strdup(j, "model", SDW_REQ_MAX_NAME, &r->model));
    SDW_TRY(read_loras(j, r));
    const char *init_key = req_get(j, "init_image") ? "init_image" : "input_image";
    SDW_TRY(read_image(j, init_key, lim, &r->init));
    SDW_TRY(read_image(j, "mask_image", lim, &r->mask));
    if (!op) r->kind = r->mask.w ? SDW_JOB_INPAINT : r->init.w ? SDW_JOB_IMG2IMG : SDW_JOB_TXT2IMG;
    else if (!strcmp(op, "image_generation")) r->kind = SDW_JOB_TXT2IMG;
    else if (!strcmp(op, "image_transform")) r->kind = SDW_JOB_IMG2IMG;
    else if (!strcmp(op, "image_inpaint")) r->kind = SDW_JOB_INPAINT;
    else
        return sdw_fail(SDW_ERR_INVALID_ARG,
                        "operation: unknown '%s'; valid: image_generation, image_transform, image_inpaint", op);
    if (r->kind == SDW_JOB_IMG2IMG && r->mask.w)
        return sdw_fail(SDW_ERR_INVALID_ARG, "mask_image: not used by image_transform (use image_inpaint)");
    return req_finish(r, lim);
}

sdw_status sdw_parse_native_request(const char *body, size_t n, const sdw_request_limits *lim, sdw_job_request *out)
{
    sdw_job_request_init(out);
    out->dialect = SDW_DIALECT_NATIVE;
    cJSON *j;
    SDW_TRY(req_json_object(body, n, &j));
    sdw_status s = parse(j, lim, out);
    cJSON_Delete(j);
    return s;
}
