/* routes_comfy.c: ComfyUI's HTTP and WebSocket API (DESIGN.md "HTTP"), as
 * ComfyUI's server.py answers it, so that its frontend, SDKs and bots work
 * unchanged. Every route is served at its own path and under /api, as
 * ComfyUI does.
 *
 *   GET  /prompt                 {"exec_info": {"queue_remaining"}}
 *   POST /prompt                 {"prompt_id", "number", "node_errors": {}} | 400 ComfyUI's validation answer
 *   GET  /queue, POST /queue     the queue; {"clear": true} | {"delete": [ids]}
 *   POST /interrupt              stops the running prompt ({"prompt_id"}: only that one)
 *   GET  /history[/{id}]         finished prompts (?max_items); POST /history {"clear"} | {"delete"}
 *   GET  /view                   ?filename&subfolder&type (output | input | temp)[&channel=rgb|a]
 *   POST /upload/image, /mask    multipart: image, overwrite, subfolder, type (mask: original_ref)
 *   GET  /object_info[/{node}]   the nodes we run, choices from the folders
 *   GET  /system_stats, /models[/{folder}], /embeddings, /extensions
 *   GET  /ws?clientId=           the WebSocket: ComfyUI's messages and binary previews
 *
 * The WebSocket rides on libmicrohttpd's HTTP upgrade (MHD_ALLOW_UPGRADE):
 * one server, one port, one thread per connection as for every request, so
 * no second library or listener is needed. Its session runs inside the
 * upgrade handler, which thread-per-connection mode allows to block.
 *
 * A prompt is validated here (comfy_graph.c, against the folders' catalog),
 * then queued as a job of kind SDW_JOB_COMFY in the engine's one queue: the
 * generation thread runs it (engine_comfy.c). With a fleet (--redis) these
 * routes answer 501: the workflow would have to travel to a worker that
 * has the same folders. */
#include "server/http_internal.h"
#include "server/comfy_ws.h"
#include "server/engine_comfy.h"
#include "server/multipart.h"
#include "server/server_log.h"
#include "core/error.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>

/* A file /view sends is read whole: images, never this large. */
#define VIEW_MAX_BYTES ((long)512 << 20)

static enum MHD_Result ok_empty(sdw_http_req *r) { return http_bytes(r, 200, "text/plain; charset=utf-8", "", 0); }

static cJSON *body_json(sdw_http_req *r)
{
    return r->body && r->body_len ? cJSON_ParseWithLength(r->body, r->body_len) : NULL;
}

/* ComfyUI's answer to a prompt it cannot queue. */
static enum MHD_Result prompt_error(sdw_http_req *r, const char *type, const char *message, const char *details)
{
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "details", details);
    cJSON_AddObjectToObject(e, "extra_info");
    cJSON_AddObjectToObject(o, "node_errors");
    return http_cjson(r, 400, o);
}

/* ---------------------------------------------------------------- prompts */

static enum MHD_Result post_prompt(sdw_http_req *r)
{
    sdw_engine *e = r->srv->engine;
    if (sdw_engine_get_state(e, NULL, 0) == SDW_ENGINE_LOADING)
        return http_error(r, 503, "loading", "the model is still loading; GET /ready says when it is in");
    cJSON *body = body_json(r);
    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        return prompt_error(r, "invalid_prompt", "Invalid prompt: the body is not a JSON object", "");
    }
    double number = sdw_comfy_take_number(e, body);
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    if (!cJSON_IsObject(prompt)) {
        cJSON_Delete(body);
        return prompt_error(r, "no_prompt", "No prompt provided", "No prompt provided");
    }
    sdw_comfy_catalog cat = sdw_comfy_engine_catalog(e);
    sdw_comfy_graph *g = NULL;
    cJSON *err_body = NULL;
    sdw_status s = sdw_comfy_graph_parse(prompt, &cat, &g, &err_body);
    if (s != SDW_OK) {
        cJSON_Delete(body);
        sdw_metrics_job_rejected(sdw_engine_metrics(e), SDW_REJECT_INVALID);
        if (err_body) return http_cjson(r, 400, err_body);
        return prompt_error(r, "invalid_prompt", "Invalid prompt", sdw_last_error());
    }
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(body, "extra_data");
    const cJSON *client = cJSON_GetObjectItemCaseSensitive(body, "client_id");
    sdw_job_request req;
    sdw_job_request_init(&req);
    req.kind = SDW_JOB_COMFY;
    req.dialect = SDW_DIALECT_COMFY;
    req.prompt = strdup("");
    req.comfy.graph = g;
    req.comfy.prompt = cJSON_Duplicate(prompt, true);
    req.comfy.extra_data = cJSON_IsObject(extra) ? cJSON_Duplicate(extra, true) : cJSON_CreateObject();
    req.comfy.number = number;
    if (cJSON_IsString(client) && strlen(client->valuestring) < sizeof req.comfy.client_id) {
        snprintf(req.comfy.client_id, sizeof req.comfy.client_id, "%s", client->valuestring);
        cJSON_AddStringToObject(req.comfy.extra_data, "client_id", client->valuestring);
    }
    cJSON_Delete(body);
    /* Outputs that failed validation while others passed: ComfyUI runs the
     * rest and names the failures in its 200 answer. */
    cJSON *node_errors = g->node_errors ? cJSON_Duplicate(g->node_errors, true) : cJSON_CreateObject();
    if (!req.prompt || !req.comfy.prompt || !req.comfy.extra_data || !node_errors) {
        cJSON_Delete(node_errors);
        sdw_job_request_free(&req);
        return http_error(r, 500, "internal", "out of memory");
    }
    char err[1024];
    sdw_job *j;
    sdw_submit_result res = http_submit(r, &req, &j, err, sizeof err);
    if (res != SDW_SUBMIT_OK) {
        cJSON_Delete(node_errors);
        return http_submit_error(r, res, err);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "prompt_id", sdw_job_id(j));
    cJSON_AddNumberToObject(o, "number", number);
    cJSON_AddItemToObject(o, "node_errors", node_errors);
    sdw_job_release(e, j);
    sdw_comfy_broadcast_status(e);
    return http_cjson(r, 200, o);
}

/* POST /queue and POST /history: {"clear": true} and / or {"delete": [ids]}. */
static enum MHD_Result clear_or_delete(sdw_http_req *r, void (*del)(sdw_engine *, const char *))
{
    cJSON *body = body_json(r);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "clear"))) del(r->srv->engine, NULL);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(body, "delete"), *id;
    if (!cJSON_IsArray(ids)) ids = NULL;
    cJSON_ArrayForEach(id, ids)
        if (cJSON_IsString(id)) del(r->srv->engine, id->valuestring);
    cJSON_Delete(body);
    return ok_empty(r);
}

static enum MHD_Result post_queue(sdw_http_req *r)
{
    enum MHD_Result ret = clear_or_delete(r, sdw_comfy_queue_delete);
    sdw_comfy_broadcast_status(r->srv->engine);
    return ret;
}

static enum MHD_Result interrupt(sdw_http_req *r)
{
    sdw_engine *e = r->srv->engine;
    cJSON *body = body_json(r);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(body, "prompt_id");
    if (cJSON_IsString(id) && id->valuestring[0]) {
        /* Only when that prompt is the one running, as ComfyUI does. */
        sdw_job *j = sdw_engine_find(e, id->valuestring);
        sdw_job_state st;
        if (j && sdw_engine_job_state(e, j) == SDW_JOB_RUNNING) sdw_engine_cancel(e, id->valuestring, &st);
        sdw_job_release(e, j);
    } else {
        sdw_engine_interrupt(e);
    }
    cJSON_Delete(body);
    return ok_empty(r);
}

static enum MHD_Result get_history(sdw_http_req *r, const char *id)
{
    const char *mi = http_query(r, "max_items");
    int max = mi && mi[0] ? atoi(mi) : -1;
    return http_cjson(r, 200, sdw_comfy_history(r->srv->engine, id, id ? -1 : max));
}

/* ---------------------------------------------------------------- files */

static const char *mime_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return "application/octet-stream";
    if (!strcasecmp(dot, ".png")) return "image/png";
    if (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")) return "image/jpeg";
    if (!strcasecmp(dot, ".webp")) return "image/webp";
    if (!strcasecmp(dot, ".json")) return "application/json";
    return "application/octet-stream";
}

static sdw_status read_file(const char *path, uint8_t **out, size_t *n)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return sdw_fail(SDW_ERR_IO, "cannot open %s", path);
    long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    uint8_t *buf = len >= 0 && len <= VIEW_MAX_BYTES ? malloc((size_t)len + 1) : NULL;
    bool ok = buf && fseek(f, 0, SEEK_SET) == 0 && fread(buf, 1, (size_t)len, f) == (size_t)len;
    fclose(f);
    if (!ok) {
        free(buf);
        return sdw_fail(SDW_ERR_IO, "cannot read %s", path);
    }
    *out = buf;
    *n = (size_t)len;
    return SDW_OK;
}

static sdw_status write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return sdw_fail(SDW_ERR_IO, "cannot create %s", path);
    bool ok = fwrite(data, 1, n, f) == n;
    if (fclose(f) != 0) ok = false;
    return ok ? SDW_OK : sdw_fail(SDW_ERR_IO, "cannot write %s", path);
}

/* ?channel=rgb (alpha dropped) or a (the alpha alone, over black), as ComfyUI's /view. */
static enum MHD_Result view_channel(sdw_http_req *r, const uint8_t *data, size_t n, bool alpha)
{
    sdw_image img = { 0 }, conv = { 0 };
    uint8_t *png = NULL;
    size_t pn = 0;
    sdw_status s = sdw_image_decode(data, n, r->srv->cfg.limits.max_pixels, &img);
    if (s == SDW_OK) s = sdw_image_convert(&img, 4, &conv);
    if (s == SDW_OK && alpha) {
        for (size_t i = 0; i < (size_t)conv.w * conv.h; i++) memset(conv.data + 4 * i, 0, 3);
    }
    sdw_image rgb = { 0 };
    if (s == SDW_OK && !alpha) s = sdw_image_convert(&conv, 3, &rgb);
    if (s == SDW_OK) s = sdw_image_encode_png(alpha ? &conv : &rgb, NULL, 0, &png, &pn);
    sdw_image_free(&img);
    sdw_image_free(&conv);
    sdw_image_free(&rgb);
    if (s != SDW_OK) return http_error(r, 400, "invalid_request", "%s", sdw_last_error());
    enum MHD_Result ret = http_bytes(r, 200, "image/png", png, pn);
    free(png);
    return ret;
}

static enum MHD_Result view(sdw_http_req *r)
{
    const char *filename = http_query(r, "filename"), *type = http_query(r, "type");
    const char *sub = http_query(r, "subfolder"), *channel = http_query(r, "channel");
    if (!filename || !filename[0]) return http_error(r, 404, "not_found", "view: no filename");
    if (filename[0] == '/' || strstr(filename, ".."))
        return http_error(r, 400, "invalid_request", "view: filename '%s' is not a name inside the folder", filename);
    const char *dir = sdw_comfy_type_dir(r->srv->engine, type);
    if (!dir) return http_error(r, 400, "invalid_request", "view: type must be output, input or temp");
    const char *base = strrchr(filename, '/');
    base = base ? base + 1 : filename;
    char path[PATH_MAX];
    sdw_status s = sdw_comfy_path(dir, sub, base, true, path, sizeof path);
    if (s == SDW_ERR_INVALID_ARG) return http_error(r, 403, "forbidden", "view: %s", sdw_last_error());
    if (s != SDW_OK) return http_error(r, 404, "not_found", "view: %s", sdw_last_error());
    uint8_t *data;
    size_t n;
    if (read_file(path, &data, &n) != SDW_OK) return http_error(r, 404, "not_found", "view: %s", sdw_last_error());
    enum MHD_Result ret;
    if (channel && (!strcmp(channel, "rgb") || !strcmp(channel, "a"))) {
        ret = view_channel(r, data, n, channel[0] == 'a');
    } else {
        struct MHD_Response *resp = MHD_create_response_from_buffer(n, data, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(data);
            return MHD_NO;
        }
        data = NULL;
        char disp[400];
        snprintf(disp, sizeof disp, "filename=\"%.300s\"", base);
        MHD_add_response_header(resp, "Content-Type", mime_of(base));
        MHD_add_response_header(resp, "Content-Disposition", disp);
        return http_queue(r, 200, resp);
    }
    free(data);
    return ret;
}

/* A text field of a form, "" when absent. */
static void form_value(const sdw_multipart *m, const char *name, char *out, size_t n)
{
    const sdw_multipart_part *p = sdw_multipart_get(m, name);
    size_t k = p ? (p->len < n - 1 ? p->len : n - 1) : 0;
    if (k) memcpy(out, p->data, k);
    out[k] = 0;
}

/* Whether path holds exactly data (ComfyUI reuses the name of an upload
 * it already has). */
static bool same_content(const char *path, const uint8_t *data, size_t n)
{
    uint8_t *old;
    size_t on;
    if (read_file(path, &old, &on) != SDW_OK) {
        sdw_clear_error();
        return false;
    }
    bool same = on == n && !memcmp(old, data, n);
    free(old);
    return same;
}

/* The name an upload is stored under: filename, or "stem (i).ext" past
 * the names taken unless overwrite; *dup when the same bytes are there. */
static void upload_name(const char *folder, const char *filename, const uint8_t *data, size_t n, bool overwrite,
                        char *name, size_t nn, bool *dup)
{
    snprintf(name, nn, "%s", filename);
    *dup = false;
    if (overwrite) return;
    const char *dot = strrchr(filename, '.');
    int stem = dot && dot != filename ? (int)(dot - filename) : (int)strlen(filename);
    for (int i = 1;; i++) {
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", folder, name);
        if (stat(path, &st) != 0) return;
        if (same_content(path, data, n)) {
            *dup = true;
            return;
        }
        snprintf(name, nn, "%.*s (%d)%s", stem, filename, i, filename + stem);
    }
}

/* PIL's putalpha of the mask's alpha onto the original, as /upload/mask does. */
static sdw_status compose_mask(sdw_http_req *r, const char *ref_json, const uint8_t *mask_data, size_t mask_n,
                               uint8_t **png, size_t *pn)
{
    cJSON *ref = cJSON_Parse(ref_json);
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(ref, "filename");
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(ref, "subfolder");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ref, "type");
    sdw_status s = SDW_OK;
    char path[PATH_MAX];
    if (!cJSON_IsString(fn) || !fn->valuestring[0] || fn->valuestring[0] == '/' || strstr(fn->valuestring, ".."))
        s = sdw_fail(SDW_ERR_INVALID_ARG, "original_ref: no valid filename");
    const char *dir = s == SDW_OK ? sdw_comfy_type_dir(r->srv->engine, cJSON_IsString(type) ? type->valuestring : "output")
                                  : NULL;
    if (s == SDW_OK && !dir) s = sdw_fail(SDW_ERR_INVALID_ARG, "original_ref: type must be output, input or temp");
    if (s == SDW_OK)
        s = sdw_comfy_path(dir, cJSON_IsString(sub) ? sub->valuestring : NULL, fn->valuestring, true, path, sizeof path);
    cJSON_Delete(ref);
    if (s != SDW_OK) return sdw_fail_context(SDW_ERR_INVALID_ARG, "original_ref");
    int64_t maxp = r->srv->cfg.limits.max_pixels;
    sdw_image orig = { 0 }, mask = { 0 }, o4 = { 0 }, m4 = { 0 };
    s = sdw_image_load(path, maxp, &orig);
    if (s == SDW_OK) s = sdw_image_decode(mask_data, mask_n, maxp, &mask);
    if (s == SDW_OK) s = sdw_image_convert(&orig, 4, &o4);
    if (s == SDW_OK) s = sdw_image_convert(&mask, 4, &m4);
    if (s == SDW_OK && (o4.w != m4.w || o4.h != m4.h))
        s = sdw_fail(SDW_ERR_INVALID_ARG, "image: the mask is %dx%d, the original %dx%d", m4.w, m4.h, o4.w, o4.h);
    if (s == SDW_OK) {
        for (size_t i = 0; i < (size_t)o4.w * o4.h; i++) o4.data[4 * i + 3] = m4.data[4 * i + 3];
        s = sdw_image_encode_png(&o4, NULL, 0, png, pn);
    }
    sdw_image_free(&orig);
    sdw_image_free(&mask);
    sdw_image_free(&o4);
    sdw_image_free(&m4);
    return s;
}

static enum MHD_Result upload(sdw_http_req *r, bool is_mask)
{
    sdw_multipart m;
    if (sdw_multipart_parse(http_header(r, "Content-Type"), r->body, r->body_len, &m) != SDW_OK)
        return http_error(r, 400, "invalid_request", "upload: %s", sdw_last_error());
    enum MHD_Result ret;
    char type[32], sub[512], overwrite[16], ref[4096];
    const sdw_multipart_part *img = sdw_multipart_get(&m, "image");
    form_value(&m, "type", type, sizeof type);
    form_value(&m, "subfolder", sub, sizeof sub);
    form_value(&m, "overwrite", overwrite, sizeof overwrite);
    form_value(&m, "original_ref", ref, sizeof ref);
    const char *dir = sdw_comfy_type_dir(r->srv->engine, type[0] ? type : "input");
    if (!type[0]) snprintf(type, sizeof type, "input");
    uint8_t *png = NULL;
    size_t pn = 0;
    if (!img || !img->filename[0]) {
        ret = http_error(r, 400, "invalid_request", "upload: no image part with a file name");
    } else if (!dir) {
        ret = http_error(r, 400, "invalid_request", "upload: type must be input, output or temp");
    } else if (strchr(img->filename, '/') || strchr(img->filename, '\\') || !strcmp(img->filename, "..") ||
               !strcmp(img->filename, ".")) {
        ret = http_error(r, 400, "invalid_request", "upload: file name '%s' is not a name inside the folder",
                         img->filename);
    } else if (sdw_comfy_mkdirs(dir, sub) != SDW_OK) {
        ret = http_error(r, 400, "invalid_request", "upload: %s", sdw_last_error());
    } else if (is_mask && compose_mask(r, ref, img->data, img->len, &png, &pn) != SDW_OK) {
        ret = http_error(r, 400, "invalid_request", "upload/mask: %s", sdw_last_error());
    } else {
        const uint8_t *data = is_mask ? png : img->data;
        size_t n = is_mask ? pn : img->len;
        char folder[PATH_MAX], name[300], path[PATH_MAX + 300];
        bool dup;
        snprintf(folder, sizeof folder, "%s%s%s", dir, sub[0] ? "/" : "", sub);
        upload_name(folder, img->filename, data, n, !strcmp(overwrite, "true") || !strcmp(overwrite, "1"), name,
                    sizeof name, &dup);
        snprintf(path, sizeof path, "%s/%s", folder, name);
        if (!dup && write_file(path, data, n) != SDW_OK) {
            ret = http_error(r, 500, "internal", "upload: %s", sdw_last_error());
        } else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", name);
            cJSON_AddStringToObject(o, "subfolder", sub);
            cJSON_AddStringToObject(o, "type", type);
            ret = http_cjson(r, 200, o);
        }
    }
    free(png);
    sdw_multipart_free(&m);
    return ret;
}

/* ---------------------------------------------------------------- about the server */

static void add_name(void *ctx, const char *name) { cJSON_AddItemToArray(ctx, cJSON_CreateString(name)); }

static enum MHD_Result models(sdw_http_req *r, const char *folder)
{
    static const char *const folders[] = { "checkpoints", "loras", "controlnet", "vae", "clip", "text_encoders",
                                           "unet", "diffusion_models" };
    cJSON *a = cJSON_CreateArray();
    if (!folder) {
        for (size_t i = 0; i < sizeof folders / sizeof *folders; i++) add_name(a, folders[i]);
        return http_cjson(r, 200, a);
    }
    sdw_comfy_folder f;
    if (!sdw_comfy_folder_by_name(folder, &f)) {
        cJSON_Delete(a);
        return http_error(r, 404, "not_found", "no model folder %s", folder);
    }
    sdw_comfy_catalog cat = sdw_comfy_engine_catalog(r->srv->engine);
    cat.list(cat.user, f, add_name, a);
    return http_cjson(r, 200, a);
}

static enum MHD_Result system_stats(sdw_http_req *r)
{
    struct sysinfo si;
    double total = 0, avail = 0;
    if (sysinfo(&si) == 0) {
        total = (double)si.totalram * si.mem_unit;
        avail = (double)(si.freeram + si.bufferram) * si.mem_unit;
    }
    cJSON *o = cJSON_CreateObject(), *sys = cJSON_AddObjectToObject(o, "system");
    cJSON_AddStringToObject(sys, "os", "posix");
    cJSON_AddNumberToObject(sys, "ram_total", total);
    cJSON_AddNumberToObject(sys, "ram_free", avail);
    cJSON_AddStringToObject(sys, "comfyui_version", "sd-worker " SDW_VERSION);
    cJSON_AddStringToObject(sys, "python_version", "");
    cJSON_AddStringToObject(sys, "pytorch_version", "");
    cJSON_AddBoolToObject(sys, "embedded_python", false);
    cJSON_AddArrayToObject(sys, "argv");
    cJSON *dev = cJSON_CreateObject();
    cJSON_AddStringToObject(dev, "name", "cpu");
    cJSON_AddStringToObject(dev, "type", "cpu");
    cJSON_AddNullToObject(dev, "index");
    cJSON_AddNumberToObject(dev, "vram_total", total);
    cJSON_AddNumberToObject(dev, "vram_free", avail);
    cJSON_AddNumberToObject(dev, "torch_vram_total", 0);
    cJSON_AddNumberToObject(dev, "torch_vram_free", 0);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "devices"), dev);
    return http_cjson(r, 200, o);
}

static enum MHD_Result object_info(sdw_http_req *r, const char *node)
{
    sdw_comfy_catalog cat = sdw_comfy_engine_catalog(r->srv->engine);
    cJSON *o = sdw_comfy_object_info(&cat, node);
    if (!o) return http_error(r, 500, "internal", "out of memory");
    return http_cjson(r, 200, o);
}

/* ---------------------------------------------------------------- the WebSocket */

typedef struct {
    sdw_engine *e;
    char client_id[128];
    int send_timeout_ms;
} ws_start;

/* Runs the session on this connection's own thread (thread-per-connection
 * mode lets the handler block), then hands the socket back to be closed. */
static void ws_upgraded(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra_in,
                        size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    (void)conn;
    (void)con_cls;
    ws_start *st = cls;
    sdw_comfy_client *c = sdw_comfy_connect(st->e, st->client_id);
    if (c) {
        sdw_ws_session s = { .fd = sock, .wake_fd = sdw_comfy_client_wake_fd(c), .next = sdw_comfy_client_next,
                             .user = c, .send_timeout_ms = st->send_timeout_ms, .extra_in = (const uint8_t *)extra_in,
                             .extra_in_size = extra_in_size };
        sdw_srv_log("ComfyUI WebSocket %s open", sdw_comfy_client_id(c));
        sdw_ws_session_run(&s);
        sdw_srv_log("ComfyUI WebSocket %s closed", sdw_comfy_client_id(c));
        sdw_comfy_disconnect(st->e, c);
    }
    free(st);
    MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

static enum MHD_Result ws(sdw_http_req *r)
{
    char accept[29];
    if (sdw_ws_handshake(http_header(r, "Upgrade"), http_header(r, "Connection"),
                         http_header(r, "Sec-WebSocket-Version"), http_header(r, "Sec-WebSocket-Key"), accept) != SDW_OK)
        return http_error(r, 400, "invalid_request", "ws: %s", sdw_last_error());
    ws_start *st = calloc(1, sizeof *st);
    if (!st) return http_error(r, 500, "internal", "out of memory");
    st->e = r->srv->engine;
    st->send_timeout_ms = 10000;
    const char *cid = http_query(r, "clientId");
    if (cid && strlen(cid) < sizeof st->client_id) snprintf(st->client_id, sizeof st->client_id, "%s", cid);
    struct MHD_Response *resp = MHD_create_response_for_upgrade(ws_upgraded, st);
    if (!resp) {
        free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Upgrade", "websocket");
    MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
    enum MHD_Result ret = http_queue(r, 101, resp);
    /* Refused responses never reach the handler, which frees st. */
    if (ret != MHD_YES) free(st);
    return ret;
}

/* ---------------------------------------------------------------- table */

bool routes_comfy(sdw_http_req *r, enum MHD_Result *ret)
{
    const char *u = r->url, *m = r->method;
    /* ComfyUI serves every route under /api too (its frontend uses those). */
    if (!strncmp(u, "/api/", 5)) u += 4;
    bool get = !strcmp(m, "GET") || !strcmp(m, "HEAD"), post = !strcmp(m, "POST");
    static const char *const roots[] = { "/prompt", "/queue", "/interrupt", "/history", "/view", "/upload/",
                                         "/object_info", "/system_stats", "/models", "/embeddings", "/extensions",
                                         "/ws" };
    bool ours = false;
    for (size_t i = 0; i < sizeof roots / sizeof *roots && !ours; i++) {
        size_t n = strlen(roots[i]);
        ours = !strncmp(u, roots[i], n) && (u[n] == 0 || u[n] == '/' || roots[i][n - 1] == '/');
    }
    if (!ours) return false;
    if (r->srv->cfg.engine.fleet.redis_url)
        return *ret = http_error(r, 501, "not_implemented", "ComfyUI's API is not served by a fleet (--redis) yet"), true;
    sdw_engine *e = r->srv->engine;
    if (get && !strcmp(u, "/ws")) return *ret = ws(r), true;
    if (get && !strcmp(u, "/prompt")) return *ret = http_cjson(r, 200, sdw_comfy_queue_info(e)), true;
    if (post && !strcmp(u, "/prompt")) return *ret = post_prompt(r), true;
    if (get && !strcmp(u, "/queue")) return *ret = http_cjson(r, 200, sdw_comfy_queue(e)), true;
    if (post && !strcmp(u, "/queue")) return *ret = post_queue(r), true;
    if (post && !strcmp(u, "/interrupt")) return *ret = interrupt(r), true;
    if (get && !strcmp(u, "/history")) return *ret = get_history(r, NULL), true;
    if (get && !strncmp(u, "/history/", 9) && u[9]) return *ret = get_history(r, u + 9), true;
    if (post && !strcmp(u, "/history")) return *ret = clear_or_delete(r, sdw_comfy_history_delete), true;
    if (get && !strcmp(u, "/view")) return *ret = view(r), true;
    if (post && !strcmp(u, "/upload/image")) return *ret = upload(r, false), true;
    if (post && !strcmp(u, "/upload/mask")) return *ret = upload(r, true), true;
    if (get && !strcmp(u, "/object_info")) return *ret = object_info(r, NULL), true;
    if (get && !strncmp(u, "/object_info/", 13)) return *ret = object_info(r, u + 13), true;
    if (get && !strcmp(u, "/system_stats")) return *ret = system_stats(r), true;
    if (get && !strcmp(u, "/models")) return *ret = models(r, NULL), true;
    if (get && !strncmp(u, "/models/", 8)) return *ret = models(r, u + 8), true;
    if (get && (!strcmp(u, "/embeddings") || !strcmp(u, "/extensions")))
        return *ret = http_json(r, 200, strdup("[]")), true;
    return false;
}
