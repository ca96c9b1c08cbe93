/* request_common.c: the field readers and checks the request parsers share
 * (see request_internal.h), and the job request's lifetime. */
#include "server/request_internal.h"
#include "core/error.h"
#include "io/base64.h"
#include "text/prompt_parse.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

sdw_request_limits sdw_request_limits_default(void)
{
    return (sdw_request_limits){ SDW_REQ_DEFAULT_MAX_PIXELS, SDW_REQ_DEFAULT_MAX_PROMPT, (size_t)50 << 20 };
}

const char *sdw_job_kind_name(sdw_job_kind k)
{
    switch (k) {
    case SDW_JOB_TXT2IMG: return "image_generation";
    case SDW_JOB_IMG2IMG: return "image_transform";
    case SDW_JOB_INPAINT: return "image_inpaint";
    case SDW_JOB_LOAD_MODEL: return "load_model";
    case SDW_JOB_COMFY: return "comfy_prompt";
    }
    return "unknown";
}

void sdw_job_request_init(sdw_job_request *r)
{
    memset(r, 0, sizeof *r);
    r->cfg = NAN;
    r->guidance = NAN;
    r->slg_scale = 2.8f;
    r->slg_start = 0.01f;
    r->slg_end = 0.2f;
    r->seed = -1;
    r->strength = 0.75f;
    r->batch_size = r->n_iter = 1;
    r->preview_every = 5;
    r->mask_source = SDW_MASK_LUMA;
    r->output_format = SDW_IMAGE_PNG;
}

void sdw_job_request_free(sdw_job_request *r)
{
    free(r->prompt);
    free(r->negative_prompt);
    free(r->model);
    for (int i = 0; i < r->n_loras; i++) free(r->loras[i].name);
    free(r->loras);
    sdw_image_free(&r->init);
    sdw_image_free(&r->mask);
    for (int i = 0; i < r->n_controls; i++) req_control_free(&r->controls[i]);
    free(r->controls);
    sdw_comfy_graph_free(r->comfy.graph);
    cJSON_Delete(r->comfy.prompt);
    cJSON_Delete(r->comfy.extra_data);
    sdw_job_request_init(r);
}

/* ---------------------------------------------------------------- JSON */

sdw_status req_json_object(const char *body, size_t n, cJSON **out)
{
    *out = NULL;
    if (!body || n == 0) return sdw_fail(SDW_ERR_FORMAT, "body: empty; expected a JSON object");
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(body, n, &end, false);
    if (!j) {
        size_t at = end && end >= body && end <= body + n ? (size_t)(end - body) : 0;
        return sdw_fail(SDW_ERR_FORMAT, "body: malformed JSON near byte %zu", at);
    }
    /* Only whitespace may follow the value. */
    for (const char *p = end; p && p < body + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' && *p != 0) {
            cJSON_Delete(j);
            return sdw_fail(SDW_ERR_FORMAT, "body: malformed JSON: data after the value at byte %zu",
                            (size_t)(p - body));
        }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sdw_fail(SDW_ERR_FORMAT, "body: expected a JSON object");
    }
    *out = j;
    return SDW_OK;
}

const cJSON *req_get(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static const char *type_name(const cJSON *v)
{
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "null";
}

sdw_status req_int64(const cJSON *obj, const char *key, long long lo, long long hi, int64_t *out)
{
    const cJSON *v = req_get(obj, key);
    if (!v) return SDW_OK;
    if (!cJSON_IsNumber(v)) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be an integer, not %s", key, type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be an integer (got %g)", key, d);
    if (d < (double)lo || d > (double)hi)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be in %lld..%lld (got %.0f)", key, lo, hi, d);
    *out = (int64_t)d;
    return SDW_OK;
}

sdw_status req_int(const cJSON *obj, const char *key, long long lo, long long hi, int *out)
{
    int64_t v = *out;
    SDW_TRY(req_int64(obj, key, lo, hi, &v));
    *out = (int)v;
    return SDW_OK;
}

sdw_status req_float(const cJSON *obj, const char *key, double lo, double hi, bool lo_open, float *out)
{
    const cJSON *v = req_get(obj, key);
    if (!v) return SDW_OK;
    if (!cJSON_IsNumber(v)) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be a number, not %s", key, type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d < lo || d > hi || (lo_open && d == lo))
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be in %s%g, %g] (got %g)", key, lo_open ? "(" : "[", lo, hi, d);
    *out = (float)d;
    return SDW_OK;
}

sdw_status req_bool(const cJSON *obj, const char *key, bool *out)
{
    const cJSON *v = req_get(obj, key);
    if (!v) return SDW_OK;
    if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v);
    else if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1)) *out = v->valuedouble == 1;
    else return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be a boolean, not %s", key, type_name(v));
    return SDW_OK;
}

sdw_status req_str(const cJSON *obj, const char *key, size_t max, const char **out)
{
    const cJSON *v = req_get(obj, key);
    if (!v) return SDW_OK;
    if (!cJSON_IsString(v) || !v->valuestring)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be a string, not %s", key, type_name(v));
    size_t n = strlen(v->valuestring);
    if (n > max) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: longer than %zu bytes (%zu)", key, max, n);
    if (!req_utf8_valid(v->valuestring, n)) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: not valid UTF-8", key);
    *out = v->valuestring;
    return SDW_OK;
}

sdw_status req_strdup(const cJSON *obj, const char *key, size_t max, char **out)
{
    const char *s = NULL;
    SDW_TRY(req_str(obj, key, max, &s));
    if (!s) return SDW_OK;
    char *c = strdup(s);
    if (!c) return sdw_fail(SDW_ERR_NOMEM, "%s: out of memory", key);
    free(*out);
    *out = c;
    return SDW_OK;
}

bool req_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        unsigned c = *p++;
        int more;
        unsigned min;
        if (c < 0x80) continue;
        if (c >= 0xc2 && c <= 0xdf) more = 1, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef) more = 2, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4) more = 3, min = 0x10000;
        else return false;
        unsigned cp = c & (0x3f >> more);
        for (int i = 0; i < more; i++) {
            if (p >= e || (*p & 0xc0) != 0x80) return false;
            cp = cp << 6 | (*p++ & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    }
    return true;
}

/* ---------------------------------------------------------------- text values */

sdw_status req_check_size(const char *field, long long v)
{
    if (v < SDW_REQ_MIN_SIZE || v > SDW_REQ_MAX_SIZE || v % 8)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be a multiple of 8 in %d..%d (got %lld)", field,
                        SDW_REQ_MIN_SIZE, SDW_REQ_MAX_SIZE, v);
    return SDW_OK;
}

sdw_status req_width_height(const cJSON *j, sdw_job_request *r)
{
    int64_t w = 0, h = 0;
    SDW_TRY(req_int64(j, "width", INT32_MIN, INT32_MAX, &w));
    SDW_TRY(req_int64(j, "height", INT32_MIN, INT32_MAX, &h));
    if (req_get(j, "width")) SDW_TRY(req_check_size("width", w));
    if (req_get(j, "height")) SDW_TRY(req_check_size("height", h));
    r->width = (int)w;
    r->height = (int)h;
    return SDW_OK;
}

sdw_status req_slg(const cJSON *j, sdw_job_request *r)
{
    const cJSON *v = req_get(j, "slg_layers");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsArray(v))
            return sdw_fail(SDW_ERR_INVALID_ARG, "slg_layers: must be an array of block numbers (got %s)", type_name(v));
        if (cJSON_GetArraySize(v) > SDW_MAX_SLG_LAYERS)
            return sdw_fail(SDW_ERR_INVALID_ARG, "slg_layers: at most %d blocks", SDW_MAX_SLG_LAYERS);
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            /* The model's depth is checked when the job runs (the pipeline names it). */
            if (!cJSON_IsNumber(e) || e->valuedouble != (double)(int)e->valuedouble || e->valueint < 0 ||
                e->valueint > 999)
                return sdw_fail(SDW_ERR_INVALID_ARG, "slg_layers: block numbers are integers in 0..999");
            r->slg_layers[r->n_slg++] = e->valueint;
        }
    }
    SDW_TRY(req_float(j, "slg_scale", 0, 100, false, &r->slg_scale));
    SDW_TRY(req_float(j, "slg_start", 0, 1, false, &r->slg_start));
    SDW_TRY(req_float(j, "slg_end", 0, 1, false, &r->slg_end));
    if (r->slg_start > r->slg_end)
        return sdw_fail(SDW_ERR_INVALID_ARG, "slg_start: must not be after slg_end (%g > %g)", r->slg_start, r->slg_end);
    return SDW_OK;
}

sdw_status req_parse_int_text(const char *field, const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be an integer (got '%.40s')", field, s);
    if (v < lo || v > hi) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be in %lld..%lld (got %lld)", field, lo, hi, v);
    *out = v;
    return SDW_OK;
}

sdw_status req_parse_float_text(const char *field, const char *s, double lo, double hi, float *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !isfinite(v)) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be a number (got '%.40s')", field, s);
    if (v < lo || v > hi) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be in %g..%g (got %g)", field, lo, hi, v);
    *out = (float)v;
    return SDW_OK;
}

sdw_status req_parse_size(const char *field, const char *s, int *w, int *h)
{
    if (!strcmp(s, "auto")) return SDW_OK;
    long long a, b;
    char *x, *end;
    errno = 0;
    a = strtoll(s, &x, 10);
    if (x == s || (*x != 'x' && *x != 'X') || errno)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be \"WIDTHxHEIGHT\" or \"auto\" (got '%.40s')", field, s);
    b = strtoll(x + 1, &end, 10);
    if (end == x + 1 || *end || errno)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be \"WIDTHxHEIGHT\" or \"auto\" (got '%.40s')", field, s);
    SDW_TRY(req_check_size(field, a));
    SDW_TRY(req_check_size(field, b));
    *w = (int)a;
    *h = (int)b;
    return SDW_OK;
}

/* ---------------------------------------------------------------- names */

sdw_status req_schedule(const char *field, const char *s, sdw_job_request *r)
{
    if (!s || !*s || !strcasecmp(s, "automatic")) return SDW_OK;
    if (sdw_schedule_parse(s, &r->schedule) != SDW_OK) return sdw_fail_context(SDW_ERR_INVALID_ARG, "%s", field);
    r->has_schedule = true;
    return SDW_OK;
}

sdw_status req_sampler(const char *field, const char *s, sdw_job_request *r)
{
    if (!s || !*s) return SDW_OK;
    if (sdw_sampler_parse(s, &r->sampler) == SDW_OK) {
        r->has_sampler = true;
        return SDW_OK;
    }
    /* A1111 before 1.9 put the schedule in the sampler's name. */
    for (int k = 0; k < SDW_SCHEDULE_COUNT; k++) {
        const char *suffix = sdw_schedule_a1111_name((sdw_schedule_kind)k);
        size_t n = strlen(s), m = strlen(suffix);
        if (n > m + 1 && s[n - m - 1] == ' ' && !strcasecmp(s + n - m, suffix) && n - m - 1 < 64) {
            char head[64];
            memcpy(head, s, n - m - 1);
            head[n - m - 1] = 0;
            if (sdw_sampler_parse(head, &r->sampler) == SDW_OK) {
                r->has_sampler = r->has_schedule = true;
                r->schedule = (sdw_schedule_kind)k;
                return SDW_OK;
            }
        }
    }
    sdw_sampler_kind dummy;
    sdw_sampler_parse(s, &dummy); /* for its message listing the names */
    return sdw_fail_context(SDW_ERR_INVALID_ARG, "%s", field);
}

/* ---------------------------------------------------------------- images */

sdw_status req_image_bytes(const char *field, const void *buf, size_t n, const sdw_request_limits *lim,
                           sdw_image *out)
{
    if (sdw_image_detect(buf, n) == SDW_IMAGE_UNKNOWN)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: not a PNG, JPEG or WebP image", field);
    sdw_status s = sdw_image_decode(buf, n, lim->max_pixels, out);
    if (s == SDW_ERR_NOMEM) return sdw_fail_context(SDW_ERR_NOMEM, "%s: larger than --max-pixels %lld", field,
                                                    (long long)lim->max_pixels);
    if (s != SDW_OK) return sdw_fail_context(SDW_ERR_INVALID_ARG, "%s", field);
    return SDW_OK;
}

sdw_status req_image_b64(const char *field, const char *b64, size_t len, const sdw_request_limits *lim,
                         sdw_image *out)
{
    uint8_t *bytes;
    size_t n;
    sdw_status s = sdw_base64_decode(b64, len, lim->max_image_bytes, &bytes, &n);
    if (s == SDW_ERR_NOMEM) return sdw_fail_context(SDW_ERR_NOMEM, "%s", field);
    if (s != SDW_OK) return sdw_fail_context(SDW_ERR_INVALID_ARG, "%s: invalid base64", field);
    s = req_image_bytes(field, bytes, n, lim, out);
    free(bytes);
    return s;
}

/* ---------------------------------------------------------------- LoRA */

sdw_status req_add_lora(sdw_job_request *r, const char *field, const char *name, float te, float unet)
{
    size_t n = strlen(name);
    if (n == 0 || n > SDW_REQ_MAX_NAME) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: a LoRA name of 1..%d bytes", field, SDW_REQ_MAX_NAME);
    if (name[0] == '/' || strstr(name, "..") || strchr(name, '\\'))
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: LoRA '%s' must be a name inside --lora-dir (no absolute path, no '..')",
                        field, name);
    if (!isfinite(te) || !isfinite(unet) || fabsf(te) > 10 || fabsf(unet) > 10)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: LoRA strength must be in -10..10", field);
    if (r->n_loras >= SDW_REQ_MAX_LORAS) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: more than %d LoRAs", field, SDW_REQ_MAX_LORAS);
    sdw_job_lora *l = realloc(r->loras, (size_t)(r->n_loras + 1) * sizeof *l);
    if (!l) return sdw_fail(SDW_ERR_NOMEM, "%s: out of memory", field);
    r->loras = l;
    char *c = strdup(name);
    if (!c) return sdw_fail(SDW_ERR_NOMEM, "%s: out of memory", field);
    r->loras[r->n_loras++] = (sdw_job_lora){ c, te, unet };
    return SDW_OK;
}

/* ---------------------------------------------------------------- ControlNet units */

void req_control_init(sdw_job_control *c)
{
    memset(c, 0, sizeof *c);
    c->pre.kind = SDW_PRE_NONE;
    c->resize_mode = SDW_FIT_CROP_AND_RESIZE;
    c->scale = 1;
    c->end = 1;
    c->mode = SDW_CONTROL_BALANCED;
}

void req_control_free(sdw_job_control *c)
{
    free(c->model);
    free(c->path);
    free(c->title);
    free(c->stem);
    sdw_image_free(&c->image);
    memset(c, 0, sizeof *c);
}

sdw_status req_control_module(const cJSON *u, const char *key, sdw_job_control *c)
{
    const char *s = NULL;
    SDW_TRY(req_str(u, key, 64, &s));
    if (!s || !*s) s = "none";
    if (sdw_preprocessor_parse(s, &c->pre) != SDW_OK) return sdw_fail_context(SDW_ERR_INVALID_ARG, "%s", key);
    return SDW_OK;
}

/* A threshold of the module: -1 (or absent) keeps the module's default;
 * modules without that slider ignore the field, as sd-webui-controlnet
 * does (clients send its old defaults, 64, for every module). */
static sdw_status read_threshold(const cJSON *u, const char *key, bool used, double lo, float *out)
{
    float v = -1;
    SDW_TRY(req_float(u, key, -1e9, 1e9, false, &v));
    if (!used || v == -1) return SDW_OK;
    if (v < lo || v > 255 || v != floorf(v))
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be an integer in %g..255, or -1 for the default (got %g)", key,
                        lo, v);
    *out = v;
    return SDW_OK;
}

sdw_status req_control_thresholds(const cJSON *u, const char *key_a, const char *key_b, sdw_job_control *c)
{
    bool canny = c->pre.kind == SDW_PRE_CANNY, thr = c->pre.kind == SDW_PRE_THRESHOLD;
    /* sd-webui-controlnet's slider ranges: Canny 1..255 each, threshold 0..255. */
    SDW_TRY(read_threshold(u, key_a, canny || thr, canny ? 1 : 0, &c->pre.a));
    return read_threshold(u, key_b, canny, 1, &c->pre.b);
}

sdw_status req_control_processor_res(const cJSON *u, const char *key, int dflt, sdw_job_control *c)
{
    int64_t v = -1;
    SDW_TRY(req_int64(u, key, INT32_MIN, INT32_MAX, &v));
    c->processor_res = c->pre.kind == SDW_PRE_NONE ? 0 : dflt;
    if (c->pre.kind == SDW_PRE_NONE || v == -1) return SDW_OK;
    if (v < SDW_REQ_MIN_PROCESSOR_RES || v > SDW_REQ_MAX_PROCESSOR_RES)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be in %d..%d, or -1 for the default (got %lld)", key,
                        SDW_REQ_MIN_PROCESSOR_RES, SDW_REQ_MAX_PROCESSOR_RES, (long long)v);
    c->processor_res = (int)v;
    return SDW_OK;
}

sdw_status req_control_resize_mode(const cJSON *u, const char *key, sdw_job_control *c)
{
    const cJSON *v = req_get(u, key);
    if (!v) return SDW_OK;
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        /* 3 is A1111's "Just Resize (Latent upscale)": the same for a control image. */
        if (d == 0 || d == 3) c->resize_mode = SDW_FIT_JUST_RESIZE;
        else if (d == 1) c->resize_mode = SDW_FIT_CROP_AND_RESIZE;
        else if (d == 2) c->resize_mode = SDW_FIT_RESIZE_AND_FILL;
        else
            return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be 0 (Just Resize), 1 (Crop and Resize) or 2 (Resize and "
                            "Fill) (got %g)", key, d);
        return SDW_OK;
    }
    const char *s = NULL;
    SDW_TRY(req_str(u, key, 64, &s));
    /* sd-webui-controlnet's older names for the same modes. */
    if (!strcmp(s, "Inner Fit (Scale to Fit)") || !strcmp(s, "Scale to Fit (Inner Fit)")) s = "Crop and Resize";
    else if (!strcmp(s, "Outer Fit (Shrink to Fit)") || !strcmp(s, "Envelope (Outer Fit)")) s = "Resize and Fill";
    if (sdw_fit_mode_parse(s, &c->resize_mode) != SDW_OK) return sdw_fail_context(SDW_ERR_INVALID_ARG, "%s", key);
    return SDW_OK;
}

sdw_status req_control_mode(const cJSON *u, const char *key, sdw_job_control *c)
{
    static const struct {
        const char *a1111, *ours;
        sdw_control_mode mode;
    } modes[] = {
        { "Balanced", "balanced", SDW_CONTROL_BALANCED },
        { "My prompt is more important", "prompt", SDW_CONTROL_PROMPT },
        { "ControlNet is more important", "controlnet", SDW_CONTROL_CONTROLNET },
    };
    const cJSON *v = req_get(u, key);
    if (!v) return SDW_OK;
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d != 0 && d != 1 && d != 2)
            return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be 0 (Balanced), 1 (My prompt is more important) or 2 "
                            "(ControlNet is more important) (got %g)", key, d);
        c->mode = modes[(int)d].mode;
        return SDW_OK;
    }
    const char *s = NULL;
    SDW_TRY(req_str(u, key, 64, &s));
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (!strcasecmp(s, modes[i].a1111) || !strcasecmp(s, modes[i].ours)) {
            c->mode = modes[i].mode;
            return SDW_OK;
        }
    return sdw_fail(SDW_ERR_INVALID_ARG, "%s: unknown '%s'; valid: balanced, prompt, controlnet (or A1111's \"Balanced\", "
                    "\"My prompt is more important\", \"ControlNet is more important\", 0..2)", key, s);
}

sdw_status req_control_image(const cJSON *u, const char *key, const sdw_request_limits *lim, sdw_job_control *c)
{
    const cJSON *v = req_get(u, key);
    if (!v) return SDW_OK;
    /* sd-webui-controlnet also takes {"image", "mask"}, [image, mask] and a list of
     * such objects (several inputs are for IP-Adapter only: the first is used).
     * The mask only matters to its inpaint and IP-Adapter modules: ignored. */
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "image");
    if (!cJSON_IsString(v))
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be a base64 image (or {\"image\": base64, \"mask\": ...})", key);
    sdw_image_free(&c->image);
    return req_image_b64(key, v->valuestring, strlen(v->valuestring), lim, &c->image);
}

sdw_status req_add_control(sdw_job_request *r, const char *field, sdw_job_control *c, bool has_init)
{
    const char *m = c->model;
    if (!m || !*m || !strcmp(m, "None"))
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: model: required (a ControlNet in --controlnet-dir; GET "
                        "/controlnet/model_list lists them)", field);
    if (m[0] == '/' || strstr(m, "..") || strchr(m, '\\'))
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: model: '%s' must be a name inside --controlnet-dir (no absolute path, "
                        "no '..')", field, m);
    if (!isfinite(c->scale) || c->scale < 0 || c->scale > SDW_REQ_MAX_CONTROL_WEIGHT)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: weight must be in [0, %g] (got %g)", field, SDW_REQ_MAX_CONTROL_WEIGHT,
                        c->scale);
    if (!(c->start >= 0 && c->end <= 1 && c->start <= c->end))
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: start %g and end %g must satisfy 0 <= start <= end <= 1", field,
                        c->start, c->end);
    if (!c->image.w && !has_init)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: image: required (only img2img and inpainting fall back on the init "
                        "image)", field);
    if (r->n_controls >= SDW_REQ_MAX_CONTROLS)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: more than %d ControlNet units", field, SDW_REQ_MAX_CONTROLS);
    sdw_job_control *v = realloc(r->controls, (size_t)(r->n_controls + 1) * sizeof *v);
    if (!v) return sdw_fail(SDW_ERR_NOMEM, "%s: out of memory", field);
    r->controls = v;
    snprintf(c->field, sizeof c->field, "%s", field);
    r->controls[r->n_controls++] = *c;
    memset(c, 0, sizeof *c);
    return SDW_OK;
}

/* ---------------------------------------------------------------- checks */

sdw_status req_finish(sdw_job_request *r, const sdw_request_limits *lim)
{
    if (!r->prompt) return sdw_fail(SDW_ERR_INVALID_ARG, "prompt: required");
    if (strlen(r->prompt) > lim->max_prompt)
        return sdw_fail(SDW_ERR_INVALID_ARG, "prompt: longer than %zu bytes", lim->max_prompt);
    bool has_init = r->init.w > 0, has_mask = r->mask.w > 0;
    if (r->kind == SDW_JOB_IMG2IMG && !has_init)
        return sdw_fail(SDW_ERR_INVALID_ARG, "init_image: required by %s", sdw_job_kind_name(r->kind));
    if (r->kind == SDW_JOB_INPAINT && (!has_init || !has_mask))
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: required by %s", has_init ? "mask_image" : "init_image",
                        sdw_job_kind_name(r->kind));
    if (has_mask && (r->mask.w != r->init.w || r->mask.h != r->init.h))
        return sdw_fail(SDW_ERR_INVALID_ARG, "mask_image: %dx%d does not match the init image's %dx%d", r->mask.w,
                        r->mask.h, r->init.w, r->init.h);
    if (r->kind == SDW_JOB_TXT2IMG && (has_init || has_mask))
        return sdw_fail(SDW_ERR_INVALID_ARG, "init_image: not used by %s", sdw_job_kind_name(r->kind));
    if (r->width && r->height && (int64_t)r->width * r->height > lim->max_pixels)
        return sdw_fail(SDW_ERR_INVALID_ARG, "width, height: %dx%d is more than --max-pixels %lld", r->width,
                        r->height, (long long)lim->max_pixels);
    sdw_parsed_prompt pp;
    if (sdw_prompt_parse(r->prompt, &pp) != SDW_OK) return sdw_fail_context(SDW_ERR_INVALID_ARG, "prompt");
    sdw_status s = SDW_OK;
    for (int i = 0; i < pp.n_loras && s == SDW_OK; i++)
        s = req_add_lora(r, "prompt", pp.loras[i].name, pp.loras[i].te_weight, pp.loras[i].unet_weight);
    sdw_parsed_prompt_free(&pp);
    return s;
}
