/* request_openai.c: the OpenAI Images API bodies, as the `openai` clients
 * send them.
 *
 * POST /v1/images/generations (JSON): prompt (required), n, size ("WxH" or
 * "auto"), response_format ("b64_json" | "url"), output_format ("png" |
 * "jpeg" | "webp"); extensions: negative_prompt, steps, seed,
 * guidance_scale, guidance (FLUX dev's distilled guidance), sampler,
 * scheduler. model, quality, style, user, background,
 * moderation, output_compression are accepted and ignored.
 *
 * POST /v1/images/edits (multipart/form-data): image (or image[]; a file),
 * mask (a file, same size; alpha 0 = the area to edit; a mask without alpha
 * is read as white = edit), prompt, and the fields above as text, plus
 * strength (default 1: the masked area is drawn anew). Without a mask the
 * image's own transparency is the mask. */
#include "server/request_internal.h"
#include "server/multipart.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

static sdw_status output_format(const char *field, const char *s, sdw_job_request *r)
{
    if (!strcmp(s, "png")) r->output_format = SDW_IMAGE_PNG;
    else if (!strcmp(s, "jpeg") || !strcmp(s, "jpg")) r->output_format = SDW_IMAGE_JPEG;
    else if (!strcmp(s, "webp")) r->output_format = SDW_IMAGE_WEBP;
    else return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be png, jpeg or webp (got '%.40s')", field, s);
    return SDW_OK;
}

static sdw_status response_format(const char *field, const char *s, sdw_job_request *r)
{
    if (!strcmp(s, "b64_json")) r->response_url = false;
    else if (!strcmp(s, "url")) r->response_url = true;
    else return sdw_fail(SDW_ERR_INVALID_ARG, "%s: must be b64_json or url (got '%.40s')", field, s);
    return SDW_OK;
}

static sdw_status parse_json(const cJSON *j, const sdw_request_limits *lim, sdw_job_request *r)
{
    const char *s = NULL;
    SDW_TRY(req_strdup(j, "prompt", lim->max_prompt, &r->prompt));
    if (!r->prompt) return sdw_fail(SDW_ERR_INVALID_ARG, "prompt: required");
    SDW_TRY(req_strdup(j, "negative_prompt", lim->max_prompt, &r->negative_prompt));
    SDW_TRY(req_int(j, "n", 1, SDW_REQ_MAX_BATCH, &r->batch_size));
    SDW_TRY(req_str(j, "size", 32, &s));
    if (s) SDW_TRY(req_parse_size("size", s, &r->width, &r->height));
    s = NULL;
    SDW_TRY(req_str(j, "response_format", 32, &s));
    if (s) SDW_TRY(response_format("response_format", s, r));
    s = NULL;
    SDW_TRY(req_str(j, "output_format", 32, &s));
    if (s) SDW_TRY(output_format("output_format", s, r));
    SDW_TRY(req_int(j, "steps", 1, SDW_REQ_MAX_STEPS, &r->steps));
    SDW_TRY(req_int64(j, "seed", -1, SDW_REQ_MAX_SEED, &r->seed));
    SDW_TRY(req_float(j, "guidance_scale", 0, SDW_REQ_MAX_GUIDANCE, false, &r->cfg));
    SDW_TRY(req_float(j, "guidance", 0, SDW_REQ_MAX_GUIDANCE, false, &r->guidance));
    s = NULL;
    SDW_TRY(req_str(j, "sampler", 64, &s));
    SDW_TRY(req_sampler("sampler", s, r));
    s = NULL;
    SDW_TRY(req_str(j, "scheduler", 64, &s));
    SDW_TRY(req_schedule("scheduler", s, r));
    r->kind = SDW_JOB_TXT2IMG;
    return req_finish(r, lim);
}

sdw_status sdw_parse_openai_generation(const char *body, size_t n, const sdw_request_limits *lim,
                                       sdw_job_request *out)
{
    sdw_job_request_init(out);
    out->dialect = SDW_DIALECT_OPENAI;
    cJSON *j;
    SDW_TRY(req_json_object(body, n, &j));
    sdw_status s = parse_json(j, lim, out);
    cJSON_Delete(j);
    return s;
}

/* ---------------------------------------------------------------- edits */

/* A text field as a NUL-terminated copy (NULL when absent). */
static sdw_status form_text(const sdw_multipart *f, const char *name, size_t max, char **out)
{
    *out = NULL;
    const sdw_multipart_part *p = sdw_multipart_get(f, name);
    if (!p) return SDW_OK;
    if (p->len > max) return sdw_fail(SDW_ERR_INVALID_ARG, "%s: longer than %zu bytes", name, max);
    if (memchr(p->data, 0, p->len) || !req_utf8_valid((const char *)p->data, p->len))
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: not valid UTF-8 text", name);
    char *s = malloc(p->len + 1);
    if (!s) return sdw_fail(SDW_ERR_NOMEM, "%s: out of memory", name);
    memcpy(s, p->data, p->len);
    s[p->len] = 0;
    *out = s;
    return SDW_OK;
}

/* Reads the small text fields; each value is freed before the next. */
static sdw_status form_fields(const sdw_multipart *f, sdw_job_request *r)
{
    static const char *const names[] = { "n", "size", "response_format", "output_format", "steps", "seed",
                                         "guidance_scale", "sampler", "scheduler", "strength", "guidance" };
    sdw_status s = SDW_OK;
    for (size_t i = 0; i < sizeof names / sizeof *names && s == SDW_OK; i++) {
        char *v;
        SDW_TRY(form_text(f, names[i], 64, &v));
        if (!v) continue;
        long long k;
        switch (i) {
        case 0: if ((s = req_parse_int_text("n", v, 1, SDW_REQ_MAX_BATCH, &k)) == SDW_OK) r->batch_size = (int)k; break;
        case 1: s = req_parse_size("size", v, &r->width, &r->height); break;
        case 2: s = response_format("response_format", v, r); break;
        case 3: s = output_format("output_format", v, r); break;
        case 4: if ((s = req_parse_int_text("steps", v, 1, SDW_REQ_MAX_STEPS, &k)) == SDW_OK) r->steps = (int)k; break;
        case 5: if ((s = req_parse_int_text("seed", v, -1, SDW_REQ_MAX_SEED, &k)) == SDW_OK) r->seed = k; break;
        case 6: s = req_parse_float_text("guidance_scale", v, 0, SDW_REQ_MAX_GUIDANCE, &r->cfg); break;
        case 7: s = req_sampler("sampler", v, r); break;
        case 8: s = req_schedule("scheduler", v, r); break;
        case 9:
            s = req_parse_float_text("strength", v, 0, 1, &r->strength);
            if (s == SDW_OK && r->strength <= 0) s = sdw_fail(SDW_ERR_INVALID_ARG, "strength: must be in (0, 1]");
            break;
        case 10: s = req_parse_float_text("guidance", v, 0, SDW_REQ_MAX_GUIDANCE, &r->guidance); break;
        }
        free(v);
    }
    return s;
}

static sdw_status parse_edit(const sdw_multipart *f, const sdw_request_limits *lim, sdw_job_request *r)
{
    SDW_TRY(form_text(f, "prompt", lim->max_prompt, &r->prompt));
    if (!r->prompt) return sdw_fail(SDW_ERR_INVALID_ARG, "prompt: required");
    SDW_TRY(form_text(f, "negative_prompt", lim->max_prompt, &r->negative_prompt));
    SDW_TRY(form_fields(f, r));
    const sdw_multipart_part *img = sdw_multipart_get(f, "image");
    if (!img) img = sdw_multipart_get(f, "image[]");
    if (!img) return sdw_fail(SDW_ERR_INVALID_ARG, "image: required (a PNG, JPEG or WebP file)");
    SDW_TRY(req_image_bytes("image", img->data, img->len, lim, &r->init));
    const sdw_multipart_part *mask = sdw_multipart_get(f, "mask");
    if (mask) {
        SDW_TRY(req_image_bytes("mask", mask->data, mask->len, lim, &r->mask));
        r->mask_source = r->mask.channels == 4 ? SDW_MASK_ALPHA : SDW_MASK_LUMA;
    } else {
        if (r->init.channels != 4)
            return sdw_fail(SDW_ERR_INVALID_ARG, "mask: required when the image has no transparency");
        SDW_TRY(sdw_image_alloc(&r->mask, r->init.w, r->init.h, 4));
        memcpy(r->mask.data, r->init.data, (size_t)r->init.w * r->init.h * 4);
        r->mask_source = SDW_MASK_ALPHA;
    }
    r->kind = SDW_JOB_INPAINT;
    return req_finish(r, lim);
}

sdw_status sdw_parse_openai_edit(const sdw_multipart *form, const sdw_request_limits *lim, sdw_job_request *out)
{
    sdw_job_request_init(out);
    out->dialect = SDW_DIALECT_OPENAI;
    out->strength = 1.0f;
    return parse_edit(form, lim, out);
}
