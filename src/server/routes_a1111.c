/* routes_a1111.c: the AUTOMATIC1111 web UI's API, for clients written
 * against it.
 *
 *   POST /sdapi/v1/txt2img, /img2img   synchronous: {images, parameters, info}
 *   GET  /sdapi/v1/progress            progress, eta_relative, state, current_image
 *   POST /sdapi/v1/interrupt           stops the running job at its next step
 *   GET  /sdapi/v1/sd-models | samplers | schedulers | loras | options
 *   POST /sdapi/v1/options             sd_model_checkpoint switches the model
 *   /controlnet/...                    sd-webui-controlnet's routes (routes_controlnet.c)
 *
 * txt2img and img2img go through the same queue as every job; the request's
 * thread waits for its job (other connections, /progress and /interrupt
 * included, are served meanwhile by their own threads). An interrupted job
 * answers 200 with no images and "interrupted": true in info (A1111 would
 * return the partly denoised image, which the pipeline does not keep). */
#include "server/http_internal.h"
#include "server/model_catalog.h"
#include "core/error.h"
#include "io/base64.h"
#include "models/lora.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The request echoed back with the values the job ran with. */
static cJSON *parameters(sdw_http_req *r, const sdw_job_request *q, const sdw_job_result *res)
{
    cJSON *p = cJSON_ParseWithLength(r->body, r->body_len);
    if (!cJSON_IsObject(p)) {
        cJSON_Delete(p);
        p = cJSON_CreateObject();
    }
    if (cJSON_HasObjectItem(p, "init_images")) cJSON_ReplaceItemInObject(p, "init_images", cJSON_CreateNull());
    if (cJSON_HasObjectItem(p, "mask")) cJSON_ReplaceItemInObject(p, "mask", cJSON_CreateNull());
#define SET(key, item)                                                    \
    do {                                                                  \
        if (!cJSON_HasObjectItem(p, key)) cJSON_AddItemToObject(p, key, item); \
    } while (0)
    SET("prompt", cJSON_CreateString(q->prompt));
    SET("negative_prompt", cJSON_CreateString(q->negative_prompt ? q->negative_prompt : ""));
    SET("seed", cJSON_CreateNumber((double)q->seed));
    SET("steps", cJSON_CreateNumber(res->steps));
    SET("cfg_scale", cJSON_CreateNumber(http_float(res->cfg)));
    if (res->guidance > 0) SET("distilled_cfg_scale", cJSON_CreateNumber(http_float(res->guidance)));
    SET("width", cJSON_CreateNumber(res->width));
    SET("height", cJSON_CreateNumber(res->height));
    SET("sampler_name", cJSON_CreateString(res->sampler ? res->sampler : ""));
    SET("scheduler", cJSON_CreateString(res->schedule ? res->schedule : ""));
    SET("batch_size", cJSON_CreateNumber(q->batch_size));
    SET("n_iter", cJSON_CreateNumber(q->n_iter));
    if (q->kind != SDW_JOB_TXT2IMG) SET("denoising_strength", cJSON_CreateNumber(http_float(q->strength)));
#undef SET
    return p;
}

static char *info_string(sdw_http_req *r, const sdw_job_request *q, const sdw_job_result *res, bool interrupted)
{
    sdw_engine_model m;
    bool have = sdw_engine_model_get(r->srv->engine, &m);
    cJSON *o = cJSON_CreateObject();
    int n = res->n_images;
    cJSON_AddStringToObject(o, "prompt", q->prompt);
    cJSON *ap = cJSON_AddArrayToObject(o, "all_prompts"), *an = cJSON_AddArrayToObject(o, "all_negative_prompts");
    cJSON *as = cJSON_AddArrayToObject(o, "all_seeds"), *it = cJSON_AddArrayToObject(o, "infotexts");
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(ap, cJSON_CreateString(q->prompt));
        cJSON_AddItemToArray(an, cJSON_CreateString(q->negative_prompt ? q->negative_prompt : ""));
        cJSON_AddItemToArray(as, cJSON_CreateNumber((double)res->seeds[i]));
        cJSON_AddItemToArray(it, cJSON_CreateString(res->infotexts[i]));
    }
    cJSON_AddStringToObject(o, "negative_prompt", q->negative_prompt ? q->negative_prompt : "");
    cJSON_AddNumberToObject(o, "seed", n ? (double)res->seeds[0] : (double)q->seed);
    cJSON_AddNumberToObject(o, "subseed", -1);
    cJSON_AddNumberToObject(o, "subseed_strength", 0);
    cJSON_AddNumberToObject(o, "width", res->width);
    cJSON_AddNumberToObject(o, "height", res->height);
    cJSON_AddStringToObject(o, "sampler_name", res->sampler ? res->sampler : "");
    cJSON_AddStringToObject(o, "scheduler", res->schedule ? res->schedule : "");
    cJSON_AddNumberToObject(o, "cfg_scale", http_float(res->cfg));
    /* Forge's: FLUX dev's distilled guidance. */
    if (res->guidance > 0) cJSON_AddNumberToObject(o, "distilled_cfg_scale", http_float(res->guidance));
    cJSON_AddNumberToObject(o, "steps", res->steps);
    cJSON_AddNumberToObject(o, "batch_size", q->batch_size);
    cJSON_AddNumberToObject(o, "n_iter", q->n_iter);
    cJSON_AddBoolToObject(o, "restore_faces", false);
    cJSON_AddStringToObject(o, "sd_model_name", have ? m.name : "");
    cJSON_AddStringToObject(o, "sd_model_hash", have ? m.hash10 : "");
    if (q->kind != SDW_JOB_TXT2IMG) cJSON_AddNumberToObject(o, "denoising_strength", http_float(q->strength));
    else cJSON_AddNullToObject(o, "denoising_strength");
    cJSON_AddNumberToObject(o, "clip_skip", q->clip_skip ? q->clip_skip : 1);
    cJSON_AddNumberToObject(o, "index_of_first_image", 0);
    cJSON_AddBoolToObject(o, "is_using_inpainting_conditioning", have && m.info.inpaint && q->kind == SDW_JOB_INPAINT);
    cJSON_AddBoolToObject(o, "interrupted", interrupted);
    char stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
    cJSON_AddStringToObject(o, "job_timestamp", stamp);
    cJSON_AddStringToObject(o, "version", "sd-worker " SDW_VERSION);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static enum MHD_Result generate(sdw_http_req *r, bool img2img)
{
    sdw_engine *e = r->srv->engine;
    sdw_job_request req;
    sdw_status st = sdw_parse_a1111_request(r->body, r->body_len, img2img, &r->srv->cfg.limits, &req);
    if (st != SDW_OK) {
        sdw_job_request_free(&req);
        sdw_metrics_job_rejected(sdw_engine_metrics(e), SDW_REJECT_INVALID);
        return http_bad_request(r, st);
    }
    char err[1024];
    sdw_job *j;
    sdw_submit_result sr = http_submit(r, &req, &j, err, sizeof err);
    if (sr != SDW_SUBMIT_OK) return http_submit_error(r, sr, err);
    http_no_timeout(r);
    sdw_job_state state = sdw_engine_wait(e, j);
    const sdw_job_result *res = sdw_job_get_result(j);
    const sdw_job_request *q = sdw_job_get_request(j);
    enum MHD_Result ret;
    if (state == SDW_JOB_FAILED || (state == SDW_JOB_CANCELLED && res->error_code && strcmp(res->error_code, "cancelled"))) {
        const char *code = res->error_code ? res->error_code : "generation_failed";
        /* invalid_request: found wrong only once running (a ControlNet for the model a job switched to). */
        unsigned status = !strcmp(code, "shutting_down") ? 503 : !strcmp(code, "invalid_request") ? 400 : 500;
        ret = http_error(r, status, code, "%s", res->error ? res->error : "");
    } else {
        cJSON *o = cJSON_CreateObject(), *images = cJSON_AddArrayToObject(o, "images");
        for (int i = 0; i < res->n_images; i++) {
            char *b64;
            if (sdw_base64_encode(res->bytes[i], res->len[i], &b64, NULL) == SDW_OK) {
                cJSON_AddItemToArray(images, cJSON_CreateString(b64));
                free(b64);
            }
        }
        cJSON_AddItemToObject(o, "parameters", parameters(r, q, res));
        char *info = info_string(r, q, res, state == SDW_JOB_CANCELLED);
        cJSON_AddStringToObject(o, "info", info ? info : "{}");
        free(info);
        ret = http_cjson(r, 200, o);
    }
    sdw_engine_forget(e, j);
    sdw_job_release(e, j);
    return ret;
}

/* ---------------------------------------------------------------- lists */

static cJSON *model_item(const sdw_catalog_entry *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "title", c->title);
    cJSON_AddStringToObject(o, "model_name", c->model_name);
    if (c->hash10[0]) cJSON_AddStringToObject(o, "hash", c->hash10);
    else cJSON_AddNullToObject(o, "hash");
    if (c->sha256[0]) cJSON_AddStringToObject(o, "sha256", c->sha256);
    else cJSON_AddNullToObject(o, "sha256");
    cJSON_AddStringToObject(o, "filename", c->path);
    cJSON_AddNullToObject(o, "config");
    /* Ours, not A1111's: the web page's size presets follow it. */
    cJSON_AddStringToObject(o, "family", sdw_family_name(c->family));
    return o;
}

/* Calls add for the loaded model (unless --models-dir lists it), then for
 * --models-dir's checkpoints. */
void sdw_list_models(sdw_http_req *r, void (*add)(void *, const sdw_catalog_entry *), void *user)
{
    sdw_engine_model m;
    bool have = sdw_engine_model_get(r->srv->engine, &m);
    const char *dir = sdw_engine_get_config(r->srv->engine)->models_dir;
    sdw_catalog_entry *v = NULL, cur;
    int n = 0;
    if (dir) sdw_catalog_list(dir, &v, &n);
    bool listed = false;
    for (int i = 0; i < n; i++) listed |= have && !strcmp(v[i].path, m.path);
    if (have && !listed) {
        sdw_catalog_describe(dir, m.path, &cur);
        cur.family = m.info.family;
        add(user, &cur);
    }
    for (int i = 0; i < n; i++) add(user, &v[i]);
    free(v);
}

static void add_a1111_model(void *user, const sdw_catalog_entry *c)
{
    cJSON_AddItemToArray(user, model_item(c));
}

static enum MHD_Result sd_models(sdw_http_req *r)
{
    cJSON *a = cJSON_CreateArray();
    sdw_list_models(r, add_a1111_model, a);
    return http_cjson(r, 200, a);
}

static enum MHD_Result samplers(sdw_http_req *r)
{
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; k < SDW_SAMPLER_COUNT; k++) {
        cJSON *o = cJSON_CreateObject(), *al = cJSON_AddArrayToObject(o, "aliases");
        cJSON_AddStringToObject(o, "name", sdw_sampler_a1111_name((sdw_sampler_kind)k));
        cJSON_AddItemToArray(al, cJSON_CreateString(sdw_sampler_name((sdw_sampler_kind)k)));
        cJSON_AddObjectToObject(o, "options");
        cJSON_AddItemToArray(a, o);
    }
    return http_cjson(r, 200, a);
}

static enum MHD_Result schedulers(sdw_http_req *r)
{
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; k < SDW_SCHEDULE_COUNT; k++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", sdw_schedule_name((sdw_schedule_kind)k));
        cJSON_AddStringToObject(o, "label", sdw_schedule_a1111_name((sdw_schedule_kind)k));
        cJSON_AddNullToObject(o, "aliases");
        cJSON_AddNumberToObject(o, "default_rho", -1);
        cJSON_AddBoolToObject(o, "need_inner_model", false);
        cJSON_AddItemToArray(a, o);
    }
    return http_cjson(r, 200, a);
}

static void add_lora(void *user, const sdw_lora_entry *l)
{
    cJSON *o = cJSON_CreateObject(), *md = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", l->name);
    cJSON_AddStringToObject(o, "alias", l->output_name ? l->output_name : l->name);
    cJSON_AddStringToObject(o, "path", l->path);
    if (l->base_model) cJSON_AddStringToObject(md, "ss_base_model_version", l->base_model);
    cJSON_AddItemToObject(o, "metadata", md);
    cJSON_AddItemToArray(user, o);
}

static enum MHD_Result loras(sdw_http_req *r)
{
    cJSON *a = cJSON_CreateArray();
    const char *dir = sdw_engine_get_config(r->srv->engine)->lora_dir;
    if (dir && sdw_lora_list(dir, add_lora, a) != SDW_OK) {
        cJSON_Delete(a);
        return http_error(r, 500, "lora_dir", "%s", sdw_last_error());
    }
    return http_cjson(r, 200, a);
}

static enum MHD_Result options_get(sdw_http_req *r)
{
    sdw_engine_model m;
    bool have = sdw_engine_model_get(r->srv->engine, &m);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "sd_model_checkpoint", have ? m.title : "");
    cJSON_AddStringToObject(o, "sd_checkpoint_hash", have ? m.hash10 : "");
    cJSON_AddNumberToObject(o, "CLIP_stop_at_last_layers", 1);
    cJSON_AddStringToObject(o, "samples_format", "png");
    cJSON_AddStringToObject(o, "sd_vae", "Automatic");
    return http_cjson(r, 200, o);
}

/* Switching the model is a job: it waits its turn behind the queued ones. */
static enum MHD_Result options_post(sdw_http_req *r)
{
    char *name;
    sdw_status st = sdw_parse_a1111_options(r->body, r->body_len, &name);
    if (st != SDW_OK) return http_bad_request(r, st);
    if (!name) return http_json(r, 200, strdup("null"));
    sdw_job_request req;
    sdw_job_request_init(&req);
    req.kind = SDW_JOB_LOAD_MODEL;
    req.dialect = SDW_DIALECT_A1111;
    req.model = name;
    req.prompt = strdup("");
    char err[1024];
    sdw_job *j;
    sdw_submit_result sr = http_submit(r, &req, &j, err, sizeof err);
    if (sr != SDW_SUBMIT_OK) return http_submit_error(r, sr, err);
    http_no_timeout(r);
    sdw_job_state state = sdw_engine_wait(r->srv->engine, j);
    const sdw_job_result *res = sdw_job_get_result(j);
    enum MHD_Result ret = state == SDW_JOB_COMPLETED
                              ? http_json(r, 200, strdup("null"))
                              : http_error(r, 500, res->error_code ? res->error_code : "model_load_failed", "%s",
                                           res->error ? res->error : "");
    sdw_engine_forget(r->srv->engine, j);
    sdw_job_release(r->srv->engine, j);
    return ret;
}

static enum MHD_Result progress(sdw_http_req *r)
{
    char *json = sdw_engine_a1111_progress(r->srv->engine);
    const char *skip = http_query(r, "skip_current_image");
    if (json && skip && !strcmp(skip, "true")) {
        cJSON *o = cJSON_Parse(json);
        free(json);
        if (o) cJSON_ReplaceItemInObject(o, "current_image", cJSON_CreateNull());
        return http_cjson(r, 200, o);
    }
    return http_json(r, 200, json);
}

static enum MHD_Result interrupt(sdw_http_req *r)
{
    sdw_engine_interrupt(r->srv->engine);
    return http_json(r, 200, strdup("{}"));
}

bool routes_a1111(sdw_http_req *r, enum MHD_Result *ret)
{
    if (routes_controlnet(r, ret)) return true;   /* sd-webui-controlnet's extension routes */
    if (strncmp(r->url, "/sdapi/v1/", 10)) return false;
    const char *u = r->url + 10;
    bool get = !strcmp(r->method, "GET") || !strcmp(r->method, "HEAD"), post = !strcmp(r->method, "POST");
    if (post && !strcmp(u, "txt2img")) return *ret = generate(r, false), true;
    if (post && !strcmp(u, "img2img")) return *ret = generate(r, true), true;
    if (get && !strcmp(u, "progress")) return *ret = progress(r), true;
    if (post && !strcmp(u, "interrupt")) return *ret = interrupt(r), true;
    if (get && !strcmp(u, "sd-models")) return *ret = sd_models(r), true;
    if (get && !strcmp(u, "samplers")) return *ret = samplers(r), true;
    if (get && !strcmp(u, "schedulers")) return *ret = schedulers(r), true;
    if (get && !strcmp(u, "loras")) return *ret = loras(r), true;
    if (get && !strcmp(u, "options")) return *ret = options_get(r), true;
    if (post && !strcmp(u, "options")) return *ret = options_post(r), true;
    return false;
}
