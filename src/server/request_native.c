/* request_native.c: POST /v1/jobs, the worker's own job API (the original
 * worker's contract, DESIGN.md "HTTP"):
 *   {"operation": "image_generation" | "image_transform" | "image_inpaint",
 *    "prompt", "negative_prompt", "steps", "guidance_scale", "width", "height",
 *    "seed", "sampler", "scheduler", "init_image" | "input_image" (base64),
 *    "mask_image" (base64, white = repaint), "strength",
 *    "loras": [{"path" | "name", "strength"}], "model", "preview_every"}
 * Extensions: "cfg_scale" (= guidance_scale), "clip_skip", "rng" ("cpu" |
 * "cuda"), "guidance" (FLUX dev's distilled guidance, apart from
 * guidance_scale; "distilled_cfg_scale", Forge's name, is the same),
 * SD3.5's skip-layer guidance ("slg_layers": [7, 8, 9], "slg_scale",
 * "slg_start", "slg_end"; other families ignore them), and ControlNets:
 *   "controlnets": [{"model" (a name in --controlnet-dir), "image" (base64;
 *     img2img / inpaint default to the init image), "preprocessor" ("none",
 *     "canny", "canny:LOW:HIGH", ...; "module" is the same), "threshold_a",
 *     "threshold_b", "processor_res", "pixel_perfect", "resize_mode",
 *     "scale" (or "weight", 0..2), "start", "end", "mode" ("balanced" |
 *     "prompt" | "controlnet")}], "guess_mode" (all units at once).
 * Unknown members ("hive_id", "worker_id", ...) are ignored. Without
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

/* guess is diffusers' guess mode, the pipeline's for every unit: given at
 * the top, or on units that agree. *guess: -1 = not said yet. */
static sdw_status read_control(const cJSON *u, const sdw_request_limits *lim, sdw_job_control *c, int *guess)
{
    const char *pre = req_get(u, "preprocessor") ? "preprocessor" : "module";
    bool g = false;
    SDW_TRY(req_strdup(u, "model", SDW_REQ_MAX_NAME, &c->model));
    SDW_TRY(req_control_module(u, pre, c));
    SDW_TRY(req_control_thresholds(u, "threshold_a", "threshold_b", c));
    SDW_TRY(req_control_processor_res(u, "processor_res", 0, c));
    SDW_TRY(req_bool(u, "pixel_perfect", &c->pixel_perfect));
    SDW_TRY(req_control_resize_mode(u, "resize_mode", c));
    SDW_TRY(req_float(u, "weight", 0, SDW_REQ_MAX_CONTROL_WEIGHT, false, &c->scale));
    SDW_TRY(req_float(u, "scale", 0, SDW_REQ_MAX_CONTROL_WEIGHT, false, &c->scale));
    SDW_TRY(req_float(u, "start", 0, 1, false, &c->start));
    SDW_TRY(req_float(u, "end", 0, 1, false, &c->end));
    SDW_TRY(req_control_mode(u, "mode", c));
    SDW_TRY(req_control_image(u, "image", lim, c));
    if (req_get(u, "guess_mode")) {
        SDW_TRY(req_bool(u, "guess_mode", &g));
        if (*guess >= 0 && *guess != (int)g)
            return sdw_fail(SDW_ERR_INVALID_ARG, "guess_mode: one setting for every unit (diffusers' guess mode); "
                            "give it once at the top level");
        *guess = g;
    }
    return SDW_OK;
}

static sdw_status read_controls(const cJSON *j, const sdw_request_limits *lim, sdw_job_request *r)
{
    int guess = -1;
    if (req_get(j, "guess_mode")) {
        bool g = false;
        SDW_TRY(req_bool(j, "guess_mode", &g));
        guess = g;
    }
    const cJSON *arr = req_get(j, "controlnets");
    if (!arr) return SDW_OK;
    if (!cJSON_IsArray(arr)) return sdw_fail(SDW_ERR_INVALID_ARG, "controlnets: must be an array of {\"model\", \"image\", ...}");
    int i = 0;
    const cJSON *u;
    cJSON_ArrayForEach(u, arr) {
        char field[32];
        snprintf(field, sizeof field, "controlnets[%d]", i++);
        if (!cJSON_IsObject(u)) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be an object {\"model\", \"image\", ...}", field);
        sdw_job_control c;
        req_control_init(&c);
        sdw_status s = read_control(u, lim, &c, &guess);
        if (s == SDW_OK) s = req_add_control(r, field, &c, r->init.w > 0);
        else sdw_fail_context(s, "%s", field);
        req_control_free(&c);
        if (s != SDW_OK) return s;
    }
    r->control_guess = guess == 1;
    return SDW_OK;
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
    SDW_TRY(req_slg(j, r));
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
    SDW_TRY(read_controls(j, lim, r));
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
