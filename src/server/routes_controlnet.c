/* routes_controlnet.c: sd-webui-controlnet's own routes, for A1111 clients
 * that use ControlNet (its units themselves travel in txt2img / img2img's
 * alwayson_scripts, request_a1111.c):
 *
 *   GET  /controlnet/version       {"version": 2}, the API version these answer as
 *   GET  /controlnet/model_list    {"model_list": ["name [hash]", ...]}: --controlnet-dir's ControlNets
 *   GET  /controlnet/module_list   {"module_list", "module_detail"} (?alias_names=true: the UI's names)
 *   GET  /controlnet/settings      {"control_net_unit_count"}
 *   POST /controlnet/detect        a preprocessor on images: {"images": [base64 PNG], "info": "Success"}
 *
 * Detection runs on the request's own thread (it needs no model): a
 * preprocessor is cheap next to a generation step. */
#include "server/http_internal.h"
#include "server/control_image.h"
#include "server/controlnet_files.h"
#include "core/error.h"
#include "io/base64.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* sd-webui-controlnet's API version. */
#define CONTROLNET_API_VERSION 2
#define N_MODULES (SDW_PRE_SCRIBBLE + 1)

/* The name its UI shows, where it differs from the module's. */
static const char *alias_name(sdw_preprocessor_kind k)
{
    return k == SDW_PRE_INVERT ? "invert (from white bg & black line)" : sdw_preprocessor_name(k);
}

static void add_slider(cJSON *sliders, const char *name, double value, double min, double max)
{
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "name", name);
    cJSON_AddNumberToObject(s, "value", value);
    cJSON_AddNumberToObject(s, "min", min);
    cJSON_AddNumberToObject(s, "max", max);
    cJSON_AddItemToArray(sliders, s);
}

/* module_detail's entry: the sliders its UI shows (what processor_res,
 * threshold_a and threshold_b mean for the module), as its
 * preprocessor_sliders_config lists them. */
static cJSON *module_detail(sdw_preprocessor_kind k)
{
    cJSON *o = cJSON_CreateObject(), *sl;
    cJSON_AddBoolToObject(o, "model_free", true);
    sl = cJSON_AddArrayToObject(o, "sliders");
    if (k == SDW_PRE_NONE) return o;
    add_slider(sl, "Preprocessor Resolution", SDW_REQ_A1111_PROCESSOR_RES, SDW_REQ_MIN_PROCESSOR_RES,
               SDW_REQ_MAX_PROCESSOR_RES);
    if (k == SDW_PRE_CANNY) {
        add_slider(sl, "Canny Low Threshold", 100, 1, 255);
        add_slider(sl, "Canny High Threshold", 200, 1, 255);
    } else if (k == SDW_PRE_THRESHOLD) {
        add_slider(sl, "Binarization Threshold", 127, 0, 255);
    }
    return o;
}

static enum MHD_Result module_list(sdw_http_req *r)
{
    const char *q = http_query(r, "alias_names");
    bool alias = q && (!strcmp(q, "true") || !strcmp(q, "True") || !strcmp(q, "1"));
    cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "module_list");
    cJSON *detail = cJSON_AddObjectToObject(o, "module_detail");
    for (int k = 0; k < N_MODULES; k++) {
        const char *name = alias ? alias_name((sdw_preprocessor_kind)k) : sdw_preprocessor_name((sdw_preprocessor_kind)k);
        cJSON_AddItemToArray(list, cJSON_CreateString(name));
        cJSON_AddItemToObject(detail, name, module_detail((sdw_preprocessor_kind)k));
    }
    return http_cjson(r, 200, o);
}

static enum MHD_Result model_list(sdw_http_req *r)
{
    const char *dir = sdw_engine_get_config(r->srv->engine)->controlnet_dir;
    cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "model_list");
    sdw_cn_entry *v = NULL;
    int n = 0;
    if (dir && sdw_cn_list(dir, true, &v, &n) != SDW_OK) {
        cJSON_Delete(o);
        return http_error(r, 500, "controlnet_dir", "%s", sdw_last_error());
    }
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(list, cJSON_CreateString(v[i].title));
    free(v);
    return http_cjson(r, 200, o);
}

static char *map_png_b64(const sdw_image *map)
{
    uint8_t *png = NULL;
    size_t n = 0;
    char *b64 = NULL;
    if (sdw_image_encode_png(map, NULL, 0, &png, &n) == SDW_OK) sdw_base64_encode(png, n, &b64, NULL);
    free(png);
    return b64;
}

static enum MHD_Result detect(sdw_http_req *r)
{
    sdw_detect_request d;
    sdw_status st = sdw_parse_a1111_detect(r->body, r->body_len, &r->srv->cfg.limits, &d);
    if (st != SDW_OK) {
        sdw_detect_request_free(&d);
        return http_bad_request(r, st);
    }
    cJSON *o = cJSON_CreateObject(), *images = cJSON_AddArrayToObject(o, "images");
    for (int i = 0; i < d.n_images && st == SDW_OK; i++) {
        sdw_image map;
        st = sdw_control_detect(&d.pre, d.processor_res, &d.images[i], &map);
        if (st != SDW_OK) {
            sdw_fail_context(st, "controlnet_input_images[%d]", i);
            break;
        }
        char *b64 = map_png_b64(&map);
        sdw_image_free(&map);
        if (!b64) {
            st = sdw_fail(SDW_ERR_NOMEM, "out of memory encoding a detected map");
            break;
        }
        cJSON_AddItemToArray(images, cJSON_CreateString(b64));
        free(b64);
    }
    sdw_detect_request_free(&d);
    if (st != SDW_OK) {
        cJSON_Delete(o);
        return http_bad_request(r, st);
    }
    cJSON_AddStringToObject(o, "info", "Success");
    return http_cjson(r, 200, o);
}

bool routes_controlnet(sdw_http_req *r, enum MHD_Result *ret)
{
    if (strncmp(r->url, "/controlnet/", 12)) return false;
    const char *u = r->url + 12;
    bool get = !strcmp(r->method, "GET") || !strcmp(r->method, "HEAD"), post = !strcmp(r->method, "POST");
    if (get && !strcmp(u, "version")) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "version", CONTROLNET_API_VERSION);
        return *ret = http_cjson(r, 200, o), true;
    }
    if (get && !strcmp(u, "model_list")) return *ret = model_list(r), true;
    if (get && !strcmp(u, "module_list")) return *ret = module_list(r), true;
    if (get && !strcmp(u, "settings")) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "control_net_unit_count", SDW_REQ_MAX_CONTROLS);
        return *ret = http_cjson(r, 200, o), true;
    }
    if (post && !strcmp(u, "detect")) return *ret = detect(r), true;
    return false;
}
