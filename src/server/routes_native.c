/* routes_native.c: the worker's own routes (DESIGN.md "HTTP"): health and
 * readiness, /v1/info, the job API with its SSE stream, result files,
 * /metrics and the page at /.
 *
 *   GET    /health                 {"status":"healthy"}
 *   GET    /ready                  200 {"ready":true} | 503 while loading, or while the fleet's Redis is unreachable
 *   GET    /v1/info                model (family, denoiser, ...), defaults, samplers, schedulers, limits
 *   POST   /v1/jobs                202 {"job_id","sse_url","status"}
 *   GET    /v1/jobs/{id}           status, progress, result
 *   DELETE /v1/jobs/{id}           cancel
 *   GET    /v1/jobs/{id}/stream    SSE: progress, preview, complete | error, done
 *   GET    /v1/files/{id}-{i}.ext  an image of a finished job (OpenAI's "url")
 *   GET    /v1/workers             the fleet's workers (this process alone without --redis)
 *   GET    /metrics                Prometheus text
 *   GET    /, /app.js, ...         the page (web_page.c) */
#include "server/http_internal.h"
#include "core/error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum MHD_Result health(sdw_http_req *r)
{
    return http_json(r, 200, strdup("{\"status\":\"healthy\"}"));
}

static enum MHD_Result ready(sdw_http_req *r)
{
    char err[512], qerr[600];
    sdw_engine_state s = sdw_engine_get_state(r->srv->engine, err, sizeof err);
    bool queue = sdw_engine_queue_ok(r->srv->engine, qerr, sizeof qerr);
    if (s == SDW_ENGINE_READY && queue) return http_json(r, 200, strdup("{\"ready\":true}"));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ready", false);
    cJSON_AddStringToObject(o, "state", s == SDW_ENGINE_LOADING ? "loading" : s == SDW_ENGINE_FAILED ? "failed"
                                        : s == SDW_ENGINE_STOPPING ? "stopping" : "redis_unreachable");
    if (s == SDW_ENGINE_FAILED) cJSON_AddStringToObject(o, "error", err);
    else if (!queue) cJSON_AddStringToObject(o, "error", qerr);
    return http_cjson(r, 503, o);
}

static enum MHD_Result workers(sdw_http_req *r)
{
    char *json = sdw_engine_workers_json(r->srv->engine);
    if (!json) return http_error(r, 503, "redis_unavailable", "the fleet's Redis did not answer");
    return http_json(r, 200, json);
}

static enum MHD_Result info(sdw_http_req *r)
{
    sdw_engine_model m;
    if (!sdw_engine_model_get(r->srv->engine, &m)) return http_error(r, 503, "loading", "the model is still loading");
    const sdw_server_config *c = &r->srv->cfg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", SDW_VERSION);
    cJSON *mo = cJSON_AddObjectToObject(o, "model");
    cJSON_AddStringToObject(mo, "name", m.name);
    cJSON_AddStringToObject(mo, "title", m.title);
    cJSON_AddStringToObject(mo, "hash", m.hash10);
    cJSON_AddStringToObject(mo, "family", sdw_family_name(m.info.family));
    cJSON_AddBoolToObject(mo, "inpaint", m.info.inpaint);
    cJSON_AddStringToObject(mo, "prediction", sdw_prediction_name(m.info.prediction));
    cJSON_AddStringToObject(mo, "precision", sdw_precision_name(m.info.precision));
    if (m.info.denoiser) cJSON_AddStringToObject(mo, "denoiser", m.info.denoiser);
    if (m.info.t5_max_length > 0) cJSON_AddNumberToObject(mo, "t5_max_length", m.info.t5_max_length);
    if (m.info.flow_shift > 0) cJSON_AddNumberToObject(mo, "flow_shift", http_float(m.info.flow_shift));
    cJSON *d = cJSON_AddObjectToObject(o, "defaults");
    cJSON_AddNumberToObject(d, "width", m.info.default_width);
    cJSON_AddNumberToObject(d, "height", m.info.default_height);
    cJSON_AddNumberToObject(d, "steps", m.info.default_steps);
    cJSON_AddNumberToObject(d, "guidance_scale", m.info.default_cfg);
    /* FLUX dev's distilled guidance ("guidance" in a job), apart from cfg. */
    if (m.info.default_guidance > 0) cJSON_AddNumberToObject(d, "guidance", http_float(m.info.default_guidance));
    cJSON_AddStringToObject(d, "sampler", m.info.default_sampler);
    cJSON_AddStringToObject(d, "scheduler", m.info.default_scheduler);
    cJSON_AddNumberToObject(d, "preview_every", 5);
    cJSON_AddNumberToObject(d, "strength", 0.75);
    cJSON *sa = cJSON_AddArrayToObject(o, "samplers");
    for (int k = 0; k < SDW_SAMPLER_COUNT; k++) cJSON_AddItemToArray(sa, cJSON_CreateString(sdw_sampler_name((sdw_sampler_kind)k)));
    cJSON *sc = cJSON_AddArrayToObject(o, "schedulers");
    for (int k = 0; k < SDW_SCHEDULE_COUNT; k++) cJSON_AddItemToArray(sc, cJSON_CreateString(sdw_schedule_name((sdw_schedule_kind)k)));
    cJSON *l = cJSON_AddObjectToObject(o, "limits");
    cJSON_AddNumberToObject(l, "min_size", SDW_REQ_MIN_SIZE);
    cJSON_AddNumberToObject(l, "max_size", SDW_REQ_MAX_SIZE);
    cJSON_AddNumberToObject(l, "size_multiple", m.size_multiple);
    cJSON_AddNumberToObject(l, "max_pixels", (double)c->limits.max_pixels);
    cJSON_AddNumberToObject(l, "max_steps", SDW_REQ_MAX_STEPS);
    cJSON_AddNumberToObject(l, "max_guidance_scale", SDW_REQ_MAX_GUIDANCE);
    cJSON_AddNumberToObject(l, "max_batch", SDW_REQ_MAX_BATCH);
    cJSON_AddNumberToObject(l, "max_prompt_bytes", (double)c->limits.max_prompt);
    cJSON_AddNumberToObject(l, "max_body_bytes", (double)c->max_body);
    cJSON_AddNumberToObject(l, "queue_max", c->engine.queue_max);
    cJSON_AddNumberToObject(l, "result_ttl_s", c->engine.result_ttl_s);
    cJSON *ops = cJSON_AddArrayToObject(o, "operations");
    for (int k = SDW_JOB_TXT2IMG; k <= SDW_JOB_INPAINT; k++)
        cJSON_AddItemToArray(ops, cJSON_CreateString(sdw_job_kind_name((sdw_job_kind)k)));
    return http_cjson(r, 200, o);
}

static enum MHD_Result submit(sdw_http_req *r)
{
    sdw_job_request req;
    sdw_status s = sdw_parse_native_request(r->body, r->body_len, &r->srv->cfg.limits, &req);
    if (s != SDW_OK) {
        sdw_job_request_free(&req);
        sdw_metrics_job_rejected(sdw_engine_metrics(r->srv->engine), SDW_REJECT_INVALID);
        return http_bad_request(r, s);
    }
    char err[1024];
    sdw_job *j;
    sdw_submit_result res = http_submit(r, &req, &j, err, sizeof err);
    if (res != SDW_SUBMIT_OK) return http_submit_error(r, res, err);
    char url[128];
    snprintf(url, sizeof url, "/v1/jobs/%s/stream", sdw_job_id(j));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job_id", sdw_job_id(j));
    cJSON_AddStringToObject(o, "sse_url", url);
    cJSON_AddStringToObject(o, "status", "queued");
    sdw_job_release(r->srv->engine, j);
    return http_cjson(r, 202, o);
}

/* An unknown job is 404, unless the fleet's Redis could not be asked. */
static enum MHD_Result no_job(sdw_http_req *r, const char *what, const char *id)
{
    char err[600];
    if (!sdw_engine_queue_ok(r->srv->engine, err, sizeof err)) return http_error(r, 503, "redis_unavailable", "%s", err);
    return http_error(r, 404, "not_found", "no %s %s", what, id);
}

/* ---------------------------------------------------------------- SSE */

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    ssize_t n = sdw_stream_read(cls, buf, max);
    return n < 0 ? MHD_CONTENT_READER_END_OF_STREAM : n;
}

static void sse_free(void *cls)
{
    sdw_stream_close(cls);
}

static enum MHD_Result stream(sdw_http_req *r, const char *id)
{
    const char *last = http_header(r, "Last-Event-ID");
    long long last_id = last ? strtoll(last, NULL, 10) : 0;
    sdw_stream *s = sdw_engine_stream_open(r->srv->engine, id, last_id, r->srv->cfg.keepalive_s);
    if (!s) return no_job(r, "job", id);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, sse_read, s, sse_free);
    if (!resp) {
        sdw_stream_close(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    http_no_timeout(r);
    return http_queue(r, 200, resp);
}

static enum MHD_Result job_status(sdw_http_req *r, const char *id)
{
    char *json = sdw_engine_job_json(r->srv->engine, id);
    if (!json) return no_job(r, "job", id);
    return http_json(r, 200, json);
}

static enum MHD_Result job_cancel(sdw_http_req *r, const char *id)
{
    sdw_job_state before;
    if (!sdw_engine_cancel(r->srv->engine, id, &before)) return no_job(r, "job", id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job_id", id);
    cJSON_AddStringToObject(o, "status", before == SDW_JOB_QUEUED    ? "cancelled"
                                         : before == SDW_JOB_RUNNING ? "cancelling"
                                                                     : sdw_job_state_name(before));
    return http_cjson(r, 200, o);
}

/* ---------------------------------------------------------------- files */

static enum MHD_Result file(sdw_http_req *r, const char *name)
{
    char id[40];
    int index;
    char ext[8];
    const char *dash = strrchr(name, '-');
    if (!dash || dash - name >= (long)sizeof id || sscanf(dash + 1, "%d.%7s", &index, ext) != 2 || index < 0)
        return http_error(r, 404, "not_found", "no file %s", name);
    memcpy(id, name, (size_t)(dash - name));
    id[dash - name] = 0;
    sdw_job *j = sdw_engine_find(r->srv->engine, id);
    if (!j) return no_job(r, "file (results are kept for --result-ttl)", name);
    enum MHD_Result ret;
    const sdw_job_result *res = sdw_job_get_result(j);
    if (sdw_engine_job_state(r->srv->engine, j) != SDW_JOB_COMPLETED || index >= res->n_images)
        ret = http_error(r, 404, "not_found", "no file %s", name);
    else
        ret = http_bytes(r, 200, sdw_image_format_mime(res->format), res->bytes[index], res->len[index]);
    sdw_job_release(r->srv->engine, j);
    return ret;
}

/* ---------------------------------------------------------------- table */

static enum MHD_Result metrics(sdw_http_req *r)
{
    char *text = sdw_engine_metrics_text(r->srv->engine);
    if (!text) return http_error(r, 500, "internal", "out of memory");
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    return http_queue(r, 200, resp);
}

bool routes_native(sdw_http_req *r, enum MHD_Result *ret)
{
    const char *u = r->url, *m = r->method;
    bool get = !strcmp(m, "GET") || !strcmp(m, "HEAD"), post = !strcmp(m, "POST");
    if (get && !strcmp(u, "/health")) return *ret = health(r), true;
    if (get && !strcmp(u, "/ready")) return *ret = ready(r), true;
    if (get && !strcmp(u, "/v1/info")) return *ret = info(r), true;
    if (get && !strcmp(u, "/metrics")) return *ret = metrics(r), true;
    if (get && !strcmp(u, "/v1/workers")) return *ret = workers(r), true;
    if (routes_web(r, ret)) return true;   /* the page and its files (web_page.c) */
    if (post && !strcmp(u, "/v1/jobs")) return *ret = submit(r), true;
    if (get && !strncmp(u, "/v1/files/", 10)) return *ret = file(r, u + 10), true;
    if (strncmp(u, "/v1/jobs/", 9)) return false;
    const char *id = u + 9, *slash = strchr(id, '/');
    char buf[64];
    size_t n = slash ? (size_t)(slash - id) : strlen(id);
    if (n == 0 || n >= sizeof buf) return *ret = http_error(r, 404, "not_found", "no job"), true;
    memcpy(buf, id, n);
    buf[n] = 0;
    if (slash && !strcmp(slash, "/stream") && get) return *ret = stream(r, buf), true;
    if (slash) return false;
    if (get) return *ret = job_status(r, buf), true;
    if (!strcmp(m, "DELETE")) return *ret = job_cancel(r, buf), true;
    return false;
}
