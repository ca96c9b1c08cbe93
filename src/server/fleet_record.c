/* fleet_record.c: see fleet_record.h. Everything here is a pure function of
 * its input: what comes out of Redis is checked as strictly as what comes
 * in over HTTP, since a record may have been written by another version,
 * by hand, or half-way through a crash. A record is written once, by the
 * front that queues the job; the worker that claims it reads it; its state
 * (queued -> claimed -> running -> completed | failed | cancelled) and
 * result are the scripts' to change, never this file's. */
#include "server/fleet_record.h"
#include "server/multipart.h"
#include "core/error.h"
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- URL */

/* Percent-decodes src[0..n) into out (a user name or password). */
static bool decode_part(const char *src, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)src[i];
        if (c == '%') {
            if (i + 2 >= n || !isxdigit((unsigned char)src[i + 1]) || !isxdigit((unsigned char)src[i + 2]))
                return false;
            char hex[3] = { src[i + 1], src[i + 2], 0 };
            c = (int)strtol(hex, NULL, 16);
            i += 2;
        }
        if (c == 0 || k + 1 >= cap) return false;
        out[k++] = (char)c;
    }
    out[k] = 0;
    return true;
}

static bool parse_uint(const char *s, size_t n, long max, long *out)
{
    if (n == 0 || n > 9) return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max) return false;
    *out = v;
    return true;
}

sdw_status fleet_url_parse(const char *text, fleet_url *out)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (!text || strncmp(text, "redis://", 8))
        return sdw_fail(SDW_ERR_INVALID_ARG, "--redis: the URL must look like redis://[user:pass@]host:port[/db] (got '%s')",
                        text ? text : "");
    const char *p = text + 8, *end = p + strlen(p);
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *auth_end = NULL;
    for (const char *c = p; c < (slash ? slash : end); c++)
        if (*c == '@') auth_end = c;      /* the last '@': a password may hold one, encoded or not */
    if (auth_end) {
        const char *colon = memchr(p, ':', (size_t)(auth_end - p));
        const char *user_end = colon ? colon : auth_end;
        if (!decode_part(p, (size_t)(user_end - p), out->user, sizeof out->user) ||
            (colon && !decode_part(colon + 1, (size_t)(auth_end - colon - 1), out->pass, sizeof out->pass)))
            return sdw_fail(SDW_ERR_INVALID_ARG, "--redis: bad user or password in the URL (percent-encode special characters)");
        if (!colon) {     /* redis://password@host, as redis-cli reads it */
            snprintf(out->pass, sizeof out->pass, "%s", out->user);
            out->user[0] = 0;
        }
        p = auth_end + 1;
    }
    const char *host_end = slash ? slash : end, *port_at = NULL;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(host_end - p));
        if (!close || close == p + 1) return sdw_fail(SDW_ERR_INVALID_ARG, "--redis: an unterminated [IPv6] host in '%s'", text);
        if ((size_t)(close - p - 1) >= sizeof out->host) return sdw_fail(SDW_ERR_INVALID_ARG, "--redis: host too long");
        memcpy(out->host, p + 1, (size_t)(close - p - 1));
        if (close + 1 < host_end) {
            if (close[1] != ':') return sdw_fail(SDW_ERR_INVALID_ARG, "--redis: expected ':port' after ']' in '%s'", text);
            port_at = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(host_end - p));
        const char *he = colon ? colon : host_end;
        if (he == p) return sdw_fail(SDW_ERR_INVALID_ARG, "--redis: no host in '%s'", text);
        if ((size_t)(he - p) >= sizeof out->host) return sdw_fail(SDW_ERR_INVALID_ARG, "--redis: host too long");
        for (const char *c = p; c < he; c++)
            if (!isalnum((unsigned char)*c) && *c != '.' && *c != '-' && *c != '_')
                return sdw_fail(SDW_ERR_INVALID_ARG, "--redis: bad character '%c' in the host of '%s'", *c, text);
        memcpy(out->host, p, (size_t)(he - p));
        if (colon) port_at = colon + 1;
    }
    long v;
    if (port_at && (!parse_uint(port_at, (size_t)(host_end - port_at), 65535, &v) || v == 0))
        return sdw_fail(SDW_ERR_INVALID_ARG, "--redis: the port must be a number in 1..65535 (in '%s')", text);
    if (port_at) out->port = (int)v;
    if (slash && slash + 1 < end) {
        if (!parse_uint(slash + 1, (size_t)(end - slash - 1), 1 << 20, &v))
            return sdw_fail(SDW_ERR_INVALID_ARG, "--redis: the database after '/' must be a number (in '%s')", text);
        out->db = (int)v;
    }
    return SDW_OK;
}

void fleet_url_describe(const fleet_url *u, char *out, size_t n)
{
    if (strchr(u->host, ':')) snprintf(out, n, "[%s]:%d/%d", u->host, u->port, u->db);
    else snprintf(out, n, "%s:%d/%d", u->host, u->port, u->db);
}

/* ---------------------------------------------------------------- routes */

static const struct {
    const char *name, *path;
} routes[FLEET_ROUTE_COUNT] = {
    [FLEET_ROUTE_NATIVE] = { "native", "/v1/jobs" },
    [FLEET_ROUTE_A1111_TXT2IMG] = { "a1111_txt2img", "/sdapi/v1/txt2img" },
    [FLEET_ROUTE_A1111_IMG2IMG] = { "a1111_img2img", "/sdapi/v1/img2img" },
    [FLEET_ROUTE_A1111_OPTIONS] = { "a1111_options", "/sdapi/v1/options" },
    [FLEET_ROUTE_OPENAI_GENERATIONS] = { "openai_generations", "/v1/images/generations" },
    [FLEET_ROUTE_OPENAI_EDITS] = { "openai_edits", "/v1/images/edits" },
};

bool fleet_route_of_path(const char *path, fleet_route *out)
{
    for (int i = 0; i < FLEET_ROUTE_COUNT; i++)
        if (!strcmp(path, routes[i].path)) return *out = (fleet_route)i, true;
    return false;
}

const char *fleet_route_name(fleet_route r)
{
    return (unsigned)r < FLEET_ROUTE_COUNT ? routes[r].name : "unknown";
}

bool fleet_route_parse(const char *name, size_t n, fleet_route *out)
{
    for (int i = 0; i < FLEET_ROUTE_COUNT; i++)
        if (strlen(routes[i].name) == n && !memcmp(name, routes[i].name, n)) return *out = (fleet_route)i, true;
    return false;
}

/* ---------------------------------------------------------------- job records */

bool fleet_id_valid(const char *s, size_t n)
{
    if (n != 36) return false;
    for (size_t i = 0; i < n; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !(isdigit((unsigned char)s[i]) || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    }
    return true;
}

static const fleet_field *find_field(const fleet_field *f, int n, const char *name)
{
    size_t k = strlen(name);
    for (int i = 0; i < n; i++)
        if (f[i].name_len == k && f[i].name && !memcmp(f[i].name, name, k)) return &f[i];
    return NULL;
}

/* A field's value as a C string in out; false when absent, too long or
 * holding a NUL. */
static bool field_text(const fleet_field *f, int n, const char *name, char *out, size_t cap)
{
    const fleet_field *x = find_field(f, n, name);
    if (!x || !x->value || x->len >= cap || memchr(x->value, 0, x->len)) return false;
    memcpy(out, x->value, x->len);
    out[x->len] = 0;
    return true;
}

sdw_status fleet_record_parse(const fleet_field *f, int n, fleet_record *out)
{
    memset(out, 0, sizeof *out);
    char buf[64];
    if (!field_text(f, n, "id", out->id, sizeof out->id) || !fleet_id_valid(out->id, strlen(out->id)))
        return sdw_fail(SDW_ERR_FORMAT, "job record: no valid id (a UUID)");
    const fleet_field *d = find_field(f, n, "dialect");
    if (!d || !d->value || !fleet_route_parse(d->value, d->len, &out->route))
        return sdw_fail(SDW_ERR_FORMAT, "job record %s: unknown dialect", out->id);
    const fleet_field *b = find_field(f, n, "body");
    if (!b || !b->value) return sdw_fail(SDW_ERR_FORMAT, "job record %s: no body", out->id);
    out->body = b->value;
    out->body_len = b->len;
    if (!field_text(f, n, "seed", buf, sizeof buf)) return sdw_fail(SDW_ERR_FORMAT, "job record %s: no seed", out->id);
    char *end;
    long long seed = strtoll(buf, &end, 10);
    if (end == buf || *end || seed < -1 || seed > SDW_REQ_MAX_SEED)
        return sdw_fail(SDW_ERR_FORMAT, "job record %s: seed '%s' is not in -1..%lld", out->id, buf, SDW_REQ_MAX_SEED);
    out->seed = seed;
    if (find_field(f, n, "content_type") &&
        !field_text(f, n, "content_type", out->content_type, sizeof out->content_type))
        return sdw_fail(SDW_ERR_FORMAT, "job record %s: bad content_type", out->id);
    if (find_field(f, n, "model") && !field_text(f, n, "model", out->model, sizeof out->model))
        return sdw_fail(SDW_ERR_FORMAT, "job record %s: bad model", out->id);
    if (out->route == FLEET_ROUTE_OPENAI_EDITS && !out->content_type[0])
        return sdw_fail(SDW_ERR_FORMAT, "job record %s: a multipart body without its content_type", out->id);
    return SDW_OK;
}

static sdw_status options_request(const fleet_record *rec, sdw_job_request *out)
{
    char *name = NULL;
    SDW_TRY(sdw_parse_a1111_options(rec->body, rec->body_len, &name));
    if (!name) return sdw_fail(SDW_ERR_FORMAT, "sd_model_checkpoint: missing from a model switch");
    out->kind = SDW_JOB_LOAD_MODEL;
    out->dialect = SDW_DIALECT_A1111;
    out->model = name;
    out->prompt = strdup("");
    return out->prompt ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory");
}

static sdw_status edit_request(const fleet_record *rec, const sdw_request_limits *lim, sdw_job_request *out)
{
    sdw_multipart form;
    sdw_status s = sdw_multipart_parse(rec->content_type, rec->body, rec->body_len, &form);
    if (s == SDW_OK) s = sdw_parse_openai_edit(&form, lim, out);
    sdw_multipart_free(&form);
    return s;
}

sdw_status fleet_record_request(const fleet_record *rec, const sdw_request_limits *lim, sdw_job_request *out)
{
    sdw_job_request_init(out);
    sdw_status s;
    switch (rec->route) {
    case FLEET_ROUTE_NATIVE: s = sdw_parse_native_request(rec->body, rec->body_len, lim, out); break;
    case FLEET_ROUTE_A1111_TXT2IMG:
    case FLEET_ROUTE_A1111_IMG2IMG:
        s = sdw_parse_a1111_request(rec->body, rec->body_len, rec->route == FLEET_ROUTE_A1111_IMG2IMG, lim, out);
        break;
    case FLEET_ROUTE_A1111_OPTIONS: s = options_request(rec, out); break;
    case FLEET_ROUTE_OPENAI_GENERATIONS: s = sdw_parse_openai_generation(rec->body, rec->body_len, lim, out); break;
    case FLEET_ROUTE_OPENAI_EDITS: s = edit_request(rec, lim, out); break;
    default: s = sdw_fail(SDW_ERR_FORMAT, "job record %s: unknown dialect", rec->id);
    }
    if (s != SDW_OK) return s;
    /* The front chose the seed of a random-seed request, so that a rerun
     * after a lost worker draws the same image; and the model it routed the
     * job by, which the worker resolves in its own folders. */
    if (rec->seed >= 0) out->seed = rec->seed;
    if (out->kind != SDW_JOB_LOAD_MODEL) {
        free(out->model);
        out->model = rec->model[0] ? strdup(rec->model) : NULL;
        if (rec->model[0] && !out->model) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    }
    return SDW_OK;
}

/* ---------------------------------------------------------------- results */

#define MAX_RESULT_IMAGES (SDW_REQ_MAX_BATCH * SDW_REQ_MAX_BATCH)

char *fleet_result_json(const sdw_job_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", sdw_image_format_name(r->format));
    cJSON_AddNumberToObject(o, "width", r->width);
    cJSON_AddNumberToObject(o, "height", r->height);
    cJSON_AddNumberToObject(o, "steps", r->steps);
    cJSON_AddNumberToObject(o, "cfg", r->cfg);
    cJSON_AddNumberToObject(o, "strength", r->strength);
    cJSON_AddNumberToObject(o, "guidance", r->guidance);
    cJSON_AddStringToObject(o, "sampler", r->sampler ? r->sampler : "");
    cJSON_AddStringToObject(o, "schedule", r->schedule ? r->schedule : "");
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    cJSON *seeds = cJSON_AddArrayToObject(o, "seeds"), *infos = cJSON_AddArrayToObject(o, "infotexts");
    for (int i = 0; i < r->n_images; i++) {
        cJSON_AddItemToArray(seeds, cJSON_CreateNumber((double)r->seeds[i]));
        cJSON_AddItemToArray(infos, cJSON_CreateString(r->infotexts[i] ? r->infotexts[i] : ""));
    }
    cJSON *loras = cJSON_AddArrayToObject(o, "loras");
    for (int i = 0; i < r->n_loras; i++) {
        cJSON *l = cJSON_CreateObject();
        cJSON_AddStringToObject(l, "name", r->loras[i].name);
        cJSON_AddStringToObject(l, "hash", r->loras[i].hash12);
        cJSON_AddNumberToObject(l, "keys_applied", r->loras[i].keys_applied);
        cJSON_AddNumberToObject(l, "keys_total", r->loras[i].keys_total);
        cJSON_AddItemToArray(loras, l);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static bool get_num(const cJSON *o, const char *key, double lo, double hi, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi)) return false;
    *out = v->valuedouble;
    return true;
}

static const char *get_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The library's own A1111 name equal to s (so nothing is allocated). */
static const char *sampler_name(const char *s)
{
    for (int k = 0; s && k < SDW_SAMPLER_COUNT; k++)
        if (!strcmp(s, sdw_sampler_a1111_name((sdw_sampler_kind)k))) return sdw_sampler_a1111_name((sdw_sampler_kind)k);
    return NULL;
}

static const char *schedule_name(const char *s)
{
    for (int k = 0; s && k < SDW_SCHEDULE_COUNT; k++)
        if (!strcmp(s, sdw_schedule_a1111_name((sdw_schedule_kind)k))) return sdw_schedule_a1111_name((sdw_schedule_kind)k);
    return NULL;
}

static sdw_image_format format_of(const char *name)
{
    for (int f = SDW_IMAGE_PNG; name && f <= SDW_IMAGE_WEBP; f++)
        if (!strcmp(name, sdw_image_format_name((sdw_image_format)f))) return (sdw_image_format)f;
    return SDW_IMAGE_UNKNOWN;
}

static sdw_status result_fields(const cJSON *o, sdw_job_result *r)
{
    double v;
    if (!cJSON_IsObject(o)) return sdw_fail(SDW_ERR_FORMAT, "result: not a JSON object");
    if ((r->format = format_of(get_str(o, "format"))) == SDW_IMAGE_UNKNOWN)
        return sdw_fail(SDW_ERR_FORMAT, "result: unknown image format");
#define NUM(key, lo, hi, dst, cast)                                                            \
    do {                                                                                       \
        if (!get_num(o, key, lo, hi, &v)) return sdw_fail(SDW_ERR_FORMAT, "result: bad " key); \
        dst = (cast)v;                                                                         \
    } while (0)
    NUM("width", 0, SDW_REQ_MAX_SIZE, r->width, int);
    NUM("height", 0, SDW_REQ_MAX_SIZE, r->height, int);
    NUM("steps", 0, 10000, r->steps, int);
    NUM("cfg", -1000, 1000, r->cfg, float);
    NUM("strength", 0, 1, r->strength, float);
    NUM("guidance", 0, 1000, r->guidance, float);
    NUM("seconds", 0, 1e9, r->seconds, double);
#undef NUM
    r->sampler = sampler_name(get_str(o, "sampler"));
    r->schedule = schedule_name(get_str(o, "schedule"));
    const cJSON *loras = cJSON_GetObjectItemCaseSensitive(o, "loras"), *l;
    if (loras && !cJSON_IsArray(loras)) return sdw_fail(SDW_ERR_FORMAT, "result: loras is not an array");
    cJSON_ArrayForEach(l, loras) {
        if (r->n_loras == SDW_REQ_MAX_LORAS) return sdw_fail(SDW_ERR_FORMAT, "result: too many loras");
        sdw_lora_report *x = &r->loras[r->n_loras];
        const char *name = get_str(l, "name"), *hash = get_str(l, "hash");
        double a, t;
        if (!name || !hash || !get_num(l, "keys_applied", 0, 1e9, &a) || !get_num(l, "keys_total", 0, 1e9, &t))
            return sdw_fail(SDW_ERR_FORMAT, "result: a lora without name, hash or key counts");
        snprintf(x->name, sizeof x->name, "%s", name);
        snprintf(x->hash12, sizeof x->hash12, "%s", hash);
        x->keys_applied = (int)a;
        x->keys_total = (int)t;
        r->n_loras++;
    }
    return SDW_OK;
}

sdw_status fleet_result_parse(const char *json, size_t n, const fleet_field *images, int n_images, sdw_job_result *r)
{
    cJSON *o = cJSON_ParseWithLength(json, n);
    sdw_status s = result_fields(o, r);
    const cJSON *seeds = cJSON_GetObjectItemCaseSensitive(o, "seeds"), *infos = cJSON_GetObjectItemCaseSensitive(o, "infotexts");
    if (s == SDW_OK && (!cJSON_IsArray(seeds) || !cJSON_IsArray(infos) || cJSON_GetArraySize(seeds) != n_images ||
                        cJSON_GetArraySize(infos) != n_images || n_images > MAX_RESULT_IMAGES || n_images < 0))
        s = sdw_fail(SDW_ERR_FORMAT, "result: %d images but seeds and infotexts do not say so", n_images);
    if (s == SDW_OK && n_images > 0) {
        r->bytes = calloc((size_t)n_images, sizeof *r->bytes);
        r->len = calloc((size_t)n_images, sizeof *r->len);
        r->seeds = calloc((size_t)n_images, sizeof *r->seeds);
        r->infotexts = calloc((size_t)n_images, sizeof *r->infotexts);
        if (!r->bytes || !r->len || !r->seeds || !r->infotexts) s = sdw_fail(SDW_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; s == SDW_OK && i < n_images; i++) {
        const cJSON *seed = cJSON_GetArrayItem(seeds, i), *info = cJSON_GetArrayItem(infos, i);
        if (!cJSON_IsNumber(seed) || !(seed->valuedouble >= 0 && seed->valuedouble <= 18446744073709549568.0) ||
            !cJSON_IsString(info) || !images[i].value) {
            s = sdw_fail(SDW_ERR_FORMAT, "result: image %d has no seed, infotext or bytes", i);
            break;
        }
        r->bytes[i] = malloc(images[i].len ? images[i].len : 1);
        r->infotexts[i] = strdup(info->valuestring);
        if (!r->bytes[i] || !r->infotexts[i]) {
            free(r->bytes[i]);
            free(r->infotexts[i]);
            s = sdw_fail(SDW_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(r->bytes[i], images[i].value, images[i].len);
        r->len[i] = images[i].len;
        r->seeds[i] = (uint64_t)seed->valuedouble;
        r->n_images = i + 1;
    }
    cJSON_Delete(o);
    return s;
}

void fleet_result_free(sdw_job_result *r)
{
    for (int i = 0; i < r->n_images; i++) {
        free(r->bytes[i]);
        free(r->infotexts[i]);
    }
    free(r->bytes);
    free(r->len);
    free(r->seeds);
    free(r->infotexts);
    r->bytes = NULL;
    r->len = NULL;
    r->seeds = NULL;
    r->infotexts = NULL;
    r->n_images = 0;
}

/* ---------------------------------------------------------------- models */

char *fleet_model_json(const sdw_engine_model *m)
{
    const sdw_model_info *i = &m->info;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", m->path);
    cJSON_AddStringToObject(o, "title", m->title);
    cJSON_AddStringToObject(o, "name", m->name);
    cJSON_AddStringToObject(o, "model_name", m->model_name);
    cJSON_AddStringToObject(o, "hash10", m->hash10);
    cJSON_AddNumberToObject(o, "size_multiple", m->size_multiple);
    cJSON_AddNumberToObject(o, "family", i->family);
    cJSON_AddBoolToObject(o, "inpaint", i->inpaint);
    cJSON_AddNumberToObject(o, "prediction", i->prediction);
    cJSON_AddNumberToObject(o, "precision", i->precision);
    cJSON_AddStringToObject(o, "layout", i->layout ? i->layout : "");
    cJSON_AddStringToObject(o, "denoiser", i->denoiser ? i->denoiser : "");
    cJSON_AddNumberToObject(o, "t5_max_length", i->t5_max_length);
    cJSON_AddNumberToObject(o, "default_guidance", i->default_guidance);
    cJSON_AddNumberToObject(o, "default_width", i->default_width);
    cJSON_AddNumberToObject(o, "default_height", i->default_height);
    cJSON_AddNumberToObject(o, "default_steps", i->default_steps);
    cJSON_AddNumberToObject(o, "default_cfg", i->default_cfg);
    cJSON_AddStringToObject(o, "default_sampler", i->default_sampler ? i->default_sampler : "");
    cJSON_AddStringToObject(o, "default_scheduler", i->default_scheduler ? i->default_scheduler : "");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* s as one of the library's static names (the model info holds pointers). */
static const char *static_name(const char *s, const char *const *names, int n)
{
    for (int i = 0; s && i < n; i++)
        if (!strcmp(s, names[i])) return names[i];
    return NULL;
}

static bool copy_str(const cJSON *o, const char *key, char *out, size_t cap)
{
    const char *s = get_str(o, key);
    if (!s || strlen(s) >= cap) return false;
    memcpy(out, s, strlen(s) + 1);
    return true;
}

sdw_status fleet_model_parse(const char *json, size_t n, sdw_engine_model *out)
{
    static const char *const layouts[] = { "single-file", "diffusers" };
    static const char *const denoisers[] = { "unet", "flux transformer", "mmdit" };
    memset(out, 0, sizeof *out);
    cJSON *o = cJSON_ParseWithLength(json, n);
    sdw_model_info *i = &out->info;
    double f, pred, prec, t5, g, w, h, st, cfg, mult;
    bool ok = cJSON_IsObject(o) && copy_str(o, "path", out->path, sizeof out->path) &&
              copy_str(o, "title", out->title, sizeof out->title) && copy_str(o, "name", out->name, sizeof out->name) &&
              copy_str(o, "model_name", out->model_name, sizeof out->model_name) &&
              copy_str(o, "hash10", out->hash10, sizeof out->hash10) &&
              get_num(o, "size_multiple", 1, 1024, &mult) && get_num(o, "family", 0, SDW_FAMILY_SD35_LARGE, &f) &&
              get_num(o, "prediction", 0, SDW_PREDICTION_FLOW, &pred) &&
              get_num(o, "precision", 0, SDW_PRECISION_BF16, &prec) && get_num(o, "t5_max_length", 0, 1 << 16, &t5) &&
              get_num(o, "default_guidance", 0, 1000, &g) && get_num(o, "default_width", 0, 1 << 16, &w) &&
              get_num(o, "default_height", 0, 1 << 16, &h) && get_num(o, "default_steps", 0, 1 << 16, &st) &&
              get_num(o, "default_cfg", -1000, 1000, &cfg);
    const cJSON *ip = cJSON_GetObjectItemCaseSensitive(o, "inpaint");
    ok = ok && cJSON_IsBool(ip);
    if (ok) {
        sdw_sampler_kind sk;
        sdw_schedule_kind ck;
        out->size_multiple = (int)mult;
        i->family = (sdw_family)(int)f;
        i->inpaint = cJSON_IsTrue(ip);
        i->prediction = (sdw_prediction)(int)pred;
        i->precision = (sdw_precision)(int)prec;
        i->t5_max_length = (int)t5;
        i->default_guidance = (float)g;
        i->default_width = (int)w;
        i->default_height = (int)h;
        i->default_steps = (int)st;
        i->default_cfg = (float)cfg;
        i->layout = static_name(get_str(o, "layout"), layouts, 2);
        i->denoiser = static_name(get_str(o, "denoiser"), denoisers, 3);
        const char *ds = get_str(o, "default_sampler"), *dc = get_str(o, "default_scheduler");
        i->default_sampler = ds && sdw_sampler_parse(ds, &sk) == SDW_OK ? sdw_sampler_name(sk) : "euler_a";
        i->default_scheduler = dc && sdw_schedule_parse(dc, &ck) == SDW_OK ? sdw_schedule_name(ck) : "normal";
    }
    cJSON_Delete(o);
    sdw_clear_error();
    return ok ? SDW_OK : sdw_fail(SDW_ERR_FORMAT, "model record: missing or out-of-range fields");
}

/* ---------------------------------------------------------------- events */

static bool event_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 32) return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || s[i] == '_')) return false;
    return true;
}

sdw_status fleet_event_frame(const char *entry_id, size_t id_len, const fleet_field *f, int n, char **frame,
                             size_t *len, long long *seq, bool *done)
{
    *frame = NULL;
    long v;
    /* Our entries are numbered 0-1, 0-2, ...: the number is the SSE id. */
    if (id_len < 3 || entry_id[0] != '0' || entry_id[1] != '-' || !parse_uint(entry_id + 2, id_len - 2, 999999999, &v))
        return sdw_fail(SDW_ERR_FORMAT, "event stream: entry id '%.*s' is not 0-N", (int)(id_len < 40 ? id_len : 40), entry_id);
    const fleet_field *ev = find_field(f, n, "event"), *data = find_field(f, n, "data");
    if (!ev || !ev->value || !event_name_ok(ev->value, ev->len))
        return sdw_fail(SDW_ERR_FORMAT, "event stream: entry %ld has no valid event name", v);
    /* One SSE data line: a newline in it would end the frame early. */
    if (!data || !data->value || memchr(data->value, '\n', data->len) || memchr(data->value, '\r', data->len) ||
        memchr(data->value, 0, data->len))
        return sdw_fail(SDW_ERR_FORMAT, "event stream: entry %ld has no valid data", v);
    size_t cap = data->len + ev->len + 48;
    char *s = malloc(cap);
    if (!s) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    int k = snprintf(s, cap, "id: %ld\nevent: %.*s\ndata: ", v, (int)ev->len, ev->value);
    memcpy(s + k, data->value, data->len);
    memcpy(s + k + data->len, "\n\n", 3);
    *frame = s;
    *len = (size_t)k + data->len + 2;
    *seq = v;
    *done = ev->len == 4 && !memcmp(ev->value, "done", 4);
    return SDW_OK;
}
