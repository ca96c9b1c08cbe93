/* request_internal.h: what the three request parsers share: typed readers of
 * JSON fields that name the field in their errors, image decoding with the
 * limits, and the cross-field checks every job gets (request_common.c).
 *
 * Every reader treats an absent member and a JSON null alike: *out is left
 * as it was and SDW_OK returned, so defaults are set before reading. */
#ifndef SDW_SERVER_REQUEST_INTERNAL_H
#define SDW_SERVER_REQUEST_INTERNAL_H
#include "server/job_request.h"
#include <cjson/cJSON.h>

/* The body must be one JSON object. */
sdw_status req_json_object(const char *body, size_t n, cJSON **out);
/* Present and not null. */
const cJSON *req_get(const cJSON *obj, const char *key);

sdw_status req_int(const cJSON *obj, const char *key, long long lo, long long hi, int *out);
sdw_status req_int64(const cJSON *obj, const char *key, long long lo, long long hi, int64_t *out);
/* A finite number in [lo, hi]; lo_open excludes lo itself. */
sdw_status req_float(const cJSON *obj, const char *key, double lo, double hi, bool lo_open, float *out);
sdw_status req_bool(const cJSON *obj, const char *key, bool *out);
/* A UTF-8 string of at most max bytes; *out borrowed from obj. */
sdw_status req_str(const cJSON *obj, const char *key, size_t max, const char **out);
/* The same, copied (*out replaced; the old value freed). */
sdw_status req_strdup(const cJSON *obj, const char *key, size_t max, char **out);

/* A width or height: a multiple of 8 in SDW_REQ_MIN_SIZE..SDW_REQ_MAX_SIZE. */
sdw_status req_check_size(const char *field, long long v);
/* "width" and "height", each optional (0 = the model's default) and checked. */
sdw_status req_width_height(const cJSON *j, sdw_job_request *r);
/* "slg_layers" (block numbers, e.g. [7, 8, 9]), "slg_scale", "slg_start", "slg_end": SD3.5's skip-layer
 * guidance, the same fields in every dialect that takes it. */
sdw_status req_slg(const cJSON *j, sdw_job_request *r);
/* Text values (form fields) with the same rules as their JSON twins. */
sdw_status req_parse_int_text(const char *field, const char *s, long long lo, long long hi, long long *out);
sdw_status req_parse_float_text(const char *field, const char *s, double lo, double hi, float *out);
/* "WxH" (OpenAI's size); "auto" leaves *w and *h at 0. */
sdw_status req_parse_size(const char *field, const char *s, int *w, int *h);

/* Sampler and scheduler names, ours or A1111's; an A1111 sampler name with
 * a schedule suffix ("DPM++ 2M Karras") sets both. "Automatic" / "" leave the
 * schedule at its default. */
sdw_status req_sampler(const char *field, const char *s, sdw_job_request *r);
sdw_status req_schedule(const char *field, const char *s, sdw_job_request *r);

/* Decodes base64 text, then the image in it. */
sdw_status req_image_b64(const char *field, const char *b64, size_t len, const sdw_request_limits *lim,
                         sdw_image *out);
sdw_status req_image_bytes(const char *field, const void *buf, size_t n, const sdw_request_limits *lim,
                           sdw_image *out);

/* Appends a LoRA by name (checked: relative, no "..", length). */
sdw_status req_add_lora(sdw_job_request *r, const char *field, const char *name, float te, float unet);

bool req_utf8_valid(const char *s, size_t n);

/* ControlNet units. A dialect reads each unit's fields with these (each
 * names its key in errors; the dialect prefixes the unit, "controlnets[1]")
 * into a unit from req_control_init, then hands it to req_add_control,
 * which checks the unit as a whole and takes it (on failure the caller
 * frees it with req_control_free). */
void req_control_init(sdw_job_control *c);
void req_control_free(sdw_job_control *c);
/* The preprocessor: "none" when absent; "canny:100:200" carries thresholds. */
sdw_status req_control_module(const cJSON *u, const char *key, sdw_job_control *c);
/* After the module: its thresholds (-1 = the module's default; ignored by modules without them). */
sdw_status req_control_thresholds(const cJSON *u, const char *key_a, const char *key_b, sdw_job_control *c);
/* After the module: -1 or absent = dflt (0 = the image's own size). */
sdw_status req_control_processor_res(const cJSON *u, const char *key, int dflt, sdw_job_control *c);
/* A1111's names, its older aliases and 0..3, or ours (preprocess.h). */
sdw_status req_control_resize_mode(const cJSON *u, const char *key, sdw_job_control *c);
/* "balanced" | "prompt" | "controlnet", A1111's names, or 0..2. */
sdw_status req_control_mode(const cJSON *u, const char *key, sdw_job_control *c);
/* base64, {"image", "mask"} or [image, mask] (the mask is not used). */
sdw_status req_control_image(const cJSON *u, const char *key, const sdw_request_limits *lim, sdw_job_control *c);
/* has_init: the job has an init image, which a unit without one uses. */
sdw_status req_add_control(sdw_job_request *r, const char *field, sdw_job_control *c, bool has_init);

/* The checks across fields, after a parser has read them all: what each
 * kind needs (an init image, a mask of the same size), the pixel limit, and
 * the prompt's <lora:name:w> tags, added to r->loras. */
sdw_status req_finish(sdw_job_request *r, const sdw_request_limits *lim);
#endif
