/* routes_openai.c: the OpenAI Images API, for the `openai` clients with
 * their baseURL pointed here.
 *
 *   POST /v1/images/generations   JSON; synchronous: {created, data: [...]}
 *   POST /v1/images/edits         multipart/form-data (image, mask, prompt, ...)
 *   GET  /v1/models               the loaded model and --models-dir's
 *
 * response_format "b64_json" puts the images in the answer (and the job is
 * dropped at once); "url" gives /v1/files/{job}-{i}.{ext} on this server,
 * served for --result-ttl. */
#include "server/http_internal.h"
#include "server/multipart.h"
#include "core/error.h"
#include "io/base64.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "http://host:port" as the client reached us (Host), or as we are bound. */
static void base_url(sdw_http_req *r, char *out, size_t n)
{
    const char *host = http_header(r, "Host");
    bool ok = host && *host && strlen(host) < 200;
    for (const char *c = host; ok && *c; c++)
        ok = isalnum((unsigned char)*c) || strchr(".-:[]", *c);
    if (ok) snprintf(out, n, "http://%s", host);
    else snprintf(out, n, "http://%s:%d", r->srv->cfg.host, r->srv->port);
}

static const char *extension(sdw_image_format f)
{
    return f == SDW_IMAGE_JPEG ? "jpeg" : f == SDW_IMAGE_WEBP ? "webp" : "png";
}

static enum MHD_Result run(sdw_http_req *r, sdw_job_request *req)
{
    sdw_engine *e = r->srv->engine;
    char err[1024];
    sdw_job *j;
    sdw_submit_result sr = http_submit(r, req, &j, err, sizeof err);
    if (sr != SDW_SUBMIT_OK) return http_submit_error(r, sr, err);
    http_no_timeout(r);
    sdw_job_state state = sdw_engine_wait(e, j);
    const sdw_job_result *res = sdw_job_get_result(j);
    const sdw_job_request *q = sdw_job_get_request(j);
    enum MHD_Result ret;
    if (state != SDW_JOB_COMPLETED) {
        const char *code = res->error_code ? res->error_code : "generation_failed";
        ret = http_error(r, strcmp(code, "shutting_down") ? 500 : 503, code, "%s", res->error ? res->error : "");
        sdw_engine_forget(e, j);
        sdw_job_release(e, j);
        return ret;
    }
    char base[256];
    base_url(r, base, sizeof base);
    cJSON *o = cJSON_CreateObject(), *data = cJSON_CreateArray();
    cJSON_AddNumberToObject(o, "created", (double)time(NULL));
    for (int i = 0; i < res->n_images; i++) {
        cJSON *item = cJSON_CreateObject();
        if (q->response_url) {
            char url[512];
            snprintf(url, sizeof url, "%s/v1/files/%s-%d.%s", base, sdw_job_id(j), i, extension(res->format));
            cJSON_AddStringToObject(item, "url", url);
        } else {
            char *b64;
            if (sdw_base64_encode(res->bytes[i], res->len[i], &b64, NULL) == SDW_OK) {
                cJSON_AddStringToObject(item, "b64_json", b64);
                free(b64);
            }
        }
        cJSON_AddNumberToObject(item, "seed", (double)res->seeds[i]);
        cJSON_AddItemToArray(data, item);
    }
    cJSON_AddItemToObject(o, "data", data);
    cJSON_AddStringToObject(o, "output_format", extension(res->format));
    char size[32];
    snprintf(size, sizeof size, "%dx%d", res->width, res->height);
    cJSON_AddStringToObject(o, "size", size);
    ret = http_cjson(r, 200, o);
    if (!q->response_url) sdw_engine_forget(e, j);
    sdw_job_release(e, j);
    return ret;
}

static enum MHD_Result generations(sdw_http_req *r)
{
    sdw_job_request req;
    sdw_status s = sdw_parse_openai_generation(r->body, r->body_len, &r->srv->cfg.limits, &req);
    if (s != SDW_OK) {
        sdw_job_request_free(&req);
        sdw_metrics_job_rejected(sdw_engine_metrics(r->srv->engine), SDW_REJECT_INVALID);
        return http_bad_request(r, s);
    }
    return run(r, &req);
}

static enum MHD_Result edits(sdw_http_req *r)
{
    sdw_multipart form;
    sdw_status s = sdw_multipart_parse(http_header(r, "Content-Type"), r->body, r->body_len, &form);
    sdw_job_request req;
    sdw_job_request_init(&req);
    if (s == SDW_OK) s = sdw_parse_openai_edit(&form, &r->srv->cfg.limits, &req);
    sdw_multipart_free(&form);
    if (s != SDW_OK) {
        sdw_job_request_free(&req);
        sdw_metrics_job_rejected(sdw_engine_metrics(r->srv->engine), SDW_REJECT_INVALID);
        return http_bad_request(r, s);
    }
    return run(r, &req);
}

static void add_model(void *user, const sdw_catalog_entry *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", c->title);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddNumberToObject(o, "created", 0);
    cJSON_AddStringToObject(o, "owned_by", "sd-worker");
    cJSON_AddItemToArray(user, o);
}

static enum MHD_Result models(sdw_http_req *r)
{
    cJSON *o = cJSON_CreateObject(), *data = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "object", "list");
    sdw_list_models(r, add_model, data);
    cJSON_AddItemToObject(o, "data", data);
    return http_cjson(r, 200, o);
}

bool routes_openai(sdw_http_req *r, enum MHD_Result *ret)
{
    bool get = !strcmp(r->method, "GET") || !strcmp(r->method, "HEAD"), post = !strcmp(r->method, "POST");
    if (post && !strcmp(r->url, "/v1/images/generations")) return *ret = generations(r), true;
    if (post && !strcmp(r->url, "/v1/images/edits")) return *ret = edits(r), true;
    if (get && !strcmp(r->url, "/v1/models")) return *ret = models(r), true;
    return false;
}
