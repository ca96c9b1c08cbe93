/* engine_run.c: what the generation thread does with one job: switch the
 * model if the job names another one, apply its LoRA set, fill in the
 * model's defaults, prepare its ControlNet units (nets from the cache,
 * control images preprocessed and fitted to the generation size), run the
 * pipeline (n_iter runs, seed + i each) with a
 * progress callback that publishes progress and preview events and stops at
 * the next step once the job is cancelled, encode the images with their
 * A1111 parameters, and finish the job. Only the generation thread runs this
 * file; it takes the engine's mutex only to publish. */
#include "server/engine_internal.h"
#include "server/control_image.h"
#include "server/controlnet_cache.h"
#include "server/controlnet_files.h"
#include "server/server_log.h"
#include "core/error.h"
#include "io/base64.h"
#include "models/controlnet.h"
#include "models/lora.h"
#include "pipeline/frontend.h"
#include "pipeline/infotext.h"
#include "pipeline/pipeline.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void finish(sdw_engine *e, sdw_job *j, sdw_job_state st, const char *code, const char *message)
{
    pthread_mutex_lock(&e->mu);
    job_finish_locked(e, j, st, code, message);
    pthread_mutex_unlock(&e->mu);
}

/* What width and height must be multiples of: the model says (16 for FLUX);
 * a loader that leaves it 0 has a UNet, whose downsampling decides. */
static int size_multiple(const sdw_model *m)
{
    if (m->info.size_multiple > 0) return m->info.size_multiple;
    return m->unet ? 8 << (sdw_unet_get_config(m->unet)->n_levels - 1) : 8;
}

sdw_status engine_load_model(sdw_engine *e, const char *path)
{
    return engine_load_model_with(e, path, &e->cfg.load);
}

sdw_status engine_load_model_with(sdw_engine *e, const char *path, const sdw_load_params *params)
{
    if (sdw_catalog_is_pickle(path))
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s is a pickle checkpoint, which sd-worker never loads: convert it to "
                        ".safetensors", path);
    double t0 = sdw_now();
    sdw_srv_log("loading model %s", path);
    sdw_load_params lp = *params;
    lp.with_vae_encoder = true;
    sdw_model *m;
    if (sdw_model_load(path, &lp, &m) != SDW_OK) return sdw_fail_context(SDW_ERR_IO, "loading %s", path);
    double dt = sdw_now() - t0;
    sdw_metrics_model_load_seconds(e->metrics, dt);
    sdw_engine_model snap;
    memset(&snap, 0, sizeof snap);
    snap.info = *sdw_model_get_info(m);
    sdw_catalog_entry ce;
    sdw_catalog_describe(e->cfg.models_dir, path, &ce);
    snprintf(snap.path, sizeof snap.path, "%s", ce.path);
    snprintf(snap.title, sizeof snap.title, "%s", ce.title);
    snprintf(snap.name, sizeof snap.name, "%s", ce.name);
    snprintf(snap.model_name, sizeof snap.model_name, "%s", ce.model_name);
    snprintf(snap.hash10, sizeof snap.hash10, "%s", ce.hash10);
    snap.size_multiple = size_multiple(m);
    /* The old model goes only once the new one is in: a failed load leaves it.
     * Its ControlNets were loaded on its backend, so they go first. */
    engine_controls_free(e);
    sdw_model_free(e->model);
    e->model = m;
    pthread_mutex_lock(&e->mu);
    e->current = snap;
    e->has_model = true;
    pthread_mutex_unlock(&e->mu);
    sdw_srv_log("model loaded: %s (%s) in %.2f s", snap.title, sdw_family_name(snap.info.family), dt);
    return SDW_OK;
}

/* ---------------------------------------------------------------- progress */

typedef struct {
    sdw_engine *e;
    sdw_job *j;
    int run, n_runs;
    double t_last;
} progress_ctx;

static char *png_b64(const float *rgb, int w, int h)
{
    sdw_image img;
    uint8_t *png = NULL;
    size_t n = 0;
    char *b64 = NULL;
    if (sdw_rgb01_to_image(rgb, w, h, &img) != SDW_OK) return NULL;
    if (sdw_image_encode_png(&img, NULL, 0, &png, &n) == SDW_OK) sdw_base64_encode(png, n, &b64, NULL);
    free(png);
    sdw_image_free(&img);
    return b64;
}

static cJSON *progress_json(const char *type, int step, int total)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    cJSON_AddNumberToObject(o, "step", step);
    cJSON_AddNumberToObject(o, "total", total);
    cJSON_AddNumberToObject(o, "percent", total ? round(1000.0 * step / total) / 10 : 0);
    return o;
}

static char *print_free(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static sdw_status on_progress(void *user, const sdw_progress *p)
{
    progress_ctx *c = user;
    sdw_engine *e = c->e;
    sdw_job *j = c->j;
    double now = sdw_now();
    sdw_metrics_step_seconds(e->metrics, now - c->t_last);
    if (e->cfg.step_delay_ms > 0) {
        struct timespec ts = { e->cfg.step_delay_ms / 1000, (long)(e->cfg.step_delay_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    c->t_last = sdw_now();
    int step = c->run * p->total + p->step, total = c->n_runs * p->total;
    double eta = p->eta_s + (c->n_runs - c->run - 1) * (p->elapsed_s + p->eta_s);
    char *prog = print_free(progress_json("progress", step, total)), *prev = NULL, *b64 = NULL;
    if (p->preview && (b64 = png_b64(p->preview, p->preview_w, p->preview_h))) {
        cJSON *o = progress_json("preview", step, total);
        cJSON_AddStringToObject(o, "image", b64);
        cJSON_AddStringToObject(o, "format", "png");
        prev = print_free(o);
    }
    char reason[96];
    pthread_mutex_lock(&e->mu);
    j->step = step;
    j->total = total;
    j->eta_s = eta;
    job_emit_locked(e, j, "progress", prog);
    if (prev) {
        job_emit_locked(e, j, "preview", prev);
        free(j->preview_b64);
        j->preview_b64 = b64;
        b64 = NULL;
    }
    bool cancel = j->cancel;
    snprintf(reason, sizeof reason, "%s", j->cancel_reason);
    pthread_mutex_unlock(&e->mu);
    free(b64);
    return cancel ? sdw_fail(SDW_ERR_CANCELLED, "%s", reason) : SDW_OK;
}

/* ---------------------------------------------------------------- ControlNets */

static bool takes_controlnets(sdw_family f)
{
    return f == SDW_FAMILY_SD1 || f == SDW_FAMILY_SD2 || f == SDW_FAMILY_SDXL;
}

sdw_submit_result engine_resolve_controls(sdw_engine *e, sdw_job *j, const sdw_engine_model *cur, char *err, size_t n)
{
    sdw_job_request *r = &j->req;
    if (!r->n_controls) return SDW_SUBMIT_OK;
    const char *dir = e->cfg.controlnet_dir;
    if (!dir) return snprintf(err, n, "controlnets: this server has no --controlnet-dir"), SDW_SUBMIT_INVALID;
    /* The family is checked here against the model the job runs on when it
     * is the loaded one; after a switch, the generation thread checks. */
    bool same_model = cur && (!j->model_path || !strcmp(j->model_path, cur->path));
    if (same_model && !takes_controlnets(cur->info.family)) {
        snprintf(err, n, "controlnets: %s is a %s model, which takes no ControlNet (SD1, SD2 and SDXL do)", cur->name,
                 sdw_family_name(cur->info.family));
        return SDW_SUBMIT_INVALID;
    }
    for (int i = 0; i < r->n_controls; i++) {
        sdw_job_control *c = &r->controls[i];
        sdw_cn_entry ce;
        if (sdw_cn_resolve(dir, c->model, &ce) != SDW_OK)
            return snprintf(err, n, "%s: model: %s", c->field, sdw_last_error()), SDW_SUBMIT_INVALID;
        if (same_model && ce.family != cur->info.family) {
            snprintf(err, n, "%s: model: ControlNet '%s' is for %s models, and %s is %s", c->field, ce.name,
                     sdw_family_name(ce.family), cur->name, sdw_family_name(cur->info.family));
            return SDW_SUBMIT_INVALID;
        }
        if (!(c->path = strdup(ce.path)) || !(c->title = strdup(ce.title)) || !(c->stem = strdup(ce.stem)))
            return snprintf(err, n, "out of memory"), SDW_SUBMIT_INVALID;
        snprintf(c->hash, sizeof c->hash, "%s", ce.hash);
    }
    return SDW_SUBMIT_OK;
}

void engine_controls_free(sdw_engine *e)
{
    sdw_cn_cache_free(e->cn_cache);
    e->cn_cache = NULL;
}

static const char *fit_mode_name(sdw_fit_mode m)
{
    return m == SDW_FIT_JUST_RESIZE ? "Just Resize" : m == SDW_FIT_RESIZE_AND_FILL ? "Resize and Fill" : "Crop and Resize";
}

/* What the parameters text says of unit c, run at processor resolution
 * res, as sd-webui-controlnet writes it: the values a module has no
 * slider for are left out. */
static sdw_infotext_control info_of(const sdw_job_control *c, int res)
{
    sdw_preprocessor_kind k = c->pre.kind;
    bool canny = k == SDW_PRE_CANNY;
    return (sdw_infotext_control){
        .module = sdw_preprocessor_name(k),
        .model = c->stem,
        .hash = c->hash,
        .resize_mode = fit_mode_name(c->resize_mode),
        .processor_res = k == SDW_PRE_NONE || res <= 0 ? -1 : res,
        .threshold_a = canny || k == SDW_PRE_THRESHOLD ? c->pre.a : -1,
        .threshold_b = canny ? c->pre.b : -1,
    };
}

/* The job's units for a generation of p->width x p->height: nets from the
 * cache (pinned until the job ends), each checked against the UNet, control
 * maps (maps[i], malloc'd, the caller frees them) and what infotext says of
 * each (infos[i]). */
static sdw_status prepare_controls(sdw_engine *e, sdw_job *j, sdw_pipeline_params *p, sdw_control_unit *units,
                                   float **maps, sdw_infotext_control *infos)
{
    const sdw_job_request *r = &j->req;
    sdw_model *m = e->model;
    if (!m->unet)
        return sdw_fail(SDW_ERR_INVALID_ARG, "controlnets: %s models take no ControlNet (SD1, SD2 and SDXL do)",
                        sdw_family_name(m->info.family));
    if (!e->cn_cache && !(e->cn_cache = sdw_cn_cache_new_controlnets(e->cfg.cn_cache_bytes, m->be)))
        return sdw_fail(SDW_ERR_NOMEM, "controlnets: out of memory");
    for (int i = 0; i < r->n_controls; i++) {
        const sdw_job_control *c = &r->controls[i];
        double t0 = sdw_now();
        void *net;
        bool hit;
        if (sdw_cn_cache_get(e->cn_cache, c->path, &net, &hit) != SDW_OK)
            return sdw_fail_context(SDW_ERR_IO, "%s: loading ControlNet %s", c->field, c->title);
        if (!hit) sdw_srv_log("job %s ControlNet %s loaded in %.2f s", j->id, c->title, sdw_now() - t0);
        /* A net that does not fit the model is the request's fault (400), not the server's. */
        if (sdw_controlnet_check_base(net, sdw_unet_get_config(m->unet), c->title) != SDW_OK) {
            sdw_cn_cache_refuse(e->cn_cache, c->path);
            return sdw_fail_context(SDW_ERR_INVALID_ARG, "%s: model", c->field);
        }
        const sdw_image *src = c->image.w ? &c->image : &r->init;
        int res = c->pixel_perfect ? sdw_control_pixel_perfect_res(src, p->width, p->height, c->resize_mode)
                                   : c->processor_res;
        if (sdw_control_map(&c->pre, res, c->resize_mode, src, p->width, p->height, &maps[i]) != SDW_OK)
            return sdw_fail_context(SDW_ERR_INVALID_ARG, "%s", c->field);
        infos[i] = info_of(c, res);
        units[i] = (sdw_control_unit){ net, maps[i], c->scale, c->start, c->end, c->mode };
    }
    p->controls = units;
    p->n_controls = r->n_controls;
    p->control_guess = r->control_guess;
    return SDW_OK;
}

/* ---------------------------------------------------------------- the job */

static bool ce_is_folder(const sdw_engine_model *m)
{
    return m->info.layout && !strcmp(m->info.layout, "diffusers");
}

static sdw_status encode(const sdw_image *img, sdw_image_format f, const char *info, uint8_t **out, size_t *n)
{
    if (f == SDW_IMAGE_JPEG) return sdw_image_encode_jpeg(img, SDW_IMAGE_SAVE_QUALITY, info, out, n);
    if (f == SDW_IMAGE_WEBP) return sdw_image_encode_webp(img, SDW_IMAGE_SAVE_QUALITY, false, info, out, n);
    sdw_png_text t = { "parameters", info };
    return sdw_image_encode_png(img, &t, 1, out, n);
}

/* A size from the init image: rounded down to what the model takes. */
static int size_from(int v, int mult)
{
    v -= v % mult;
    if (v < SDW_REQ_MIN_SIZE) v = (SDW_REQ_MIN_SIZE + mult - 1) / mult * mult;
    return v > SDW_REQ_MAX_SIZE ? SDW_REQ_MAX_SIZE - SDW_REQ_MAX_SIZE % mult : v;
}

/* The LoRA set of the job on the model; *hashes gets A1111's "Lora hashes"
 * (malloc'd, NULL without LoRAs). */
static sdw_status apply_loras(sdw_engine *e, sdw_job *j, char **hashes)
{
    sdw_lora_spec specs[SDW_REQ_MAX_LORAS] = { 0 };
    sdw_lora_report reports[SDW_REQ_MAX_LORAS];
    int k = j->n_lora_paths;
    *hashes = NULL;
    for (int i = 0; i < k; i++)
        specs[i] = (sdw_lora_spec){ j->lora_paths[i], j->req.loras[i].te_strength, j->req.loras[i].unet_strength };
    SDW_TRY(sdw_model_set_loras(e->model, specs, k, k ? reports : NULL));
    if (k) *hashes = sdw_lora_hashes(reports, k);
    j->result.n_loras = k;
    for (int i = 0; i < k; i++) {
        j->result.loras[i] = reports[i];
        sdw_srv_log("job %s LoRA %s: applied %d of %d keys (te %g, unet %g)", j->id, reports[i].name,
                    reports[i].keys_applied, reports[i].keys_total, specs[i].te_strength, specs[i].unet_strength);
    }
    return SDW_OK;
}

static sdw_status add_image(sdw_job_result *r, const float *rgb, int w, int h, sdw_image_format f, uint64_t seed,
                            char *info)
{
    int i = r->n_images;
    sdw_image img;
    SDW_TRY(sdw_rgb01_to_image(rgb, w, h, &img));
    sdw_status s = encode(&img, f, info ? info : "", &r->bytes[i], &r->len[i]);
    sdw_image_free(&img);
    if (s != SDW_OK) return s;
    r->seeds[i] = seed;
    r->infotexts[i] = info;
    r->n_images++;
    return SDW_OK;
}

static char *complete_json(const sdw_job_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "complete");
    cJSON *images = r->n_images > 1 ? cJSON_AddArrayToObject(o, "images") : NULL;
    for (int i = 0; i < r->n_images; i++) {
        char *b64;
        if (sdw_base64_encode(r->bytes[i], r->len[i], &b64, NULL) != SDW_OK) continue;
        if (i == 0) cJSON_AddStringToObject(o, "image", b64);
        if (images) cJSON_AddItemToArray(images, cJSON_CreateString(b64));
        free(b64);
    }
    cJSON_AddStringToObject(o, "format", sdw_image_format_name(r->format));
    cJSON_AddNumberToObject(o, "seed", r->n_images ? (double)r->seeds[0] : 0);
    cJSON_AddStringToObject(o, "info", r->n_images ? r->infotexts[0] : "");
    cJSON_AddNumberToObject(o, "width", r->width);
    cJSON_AddNumberToObject(o, "height", r->height);
    if (r->n_loras) {
        cJSON *loras = cJSON_AddArrayToObject(o, "loras");
        for (int i = 0; i < r->n_loras; i++) {
            cJSON *l = cJSON_CreateObject();
            cJSON_AddStringToObject(l, "name", r->loras[i].name);
            cJSON_AddStringToObject(l, "hash", r->loras[i].hash12);
            cJSON_AddNumberToObject(l, "keys_applied", r->loras[i].keys_applied);
            cJSON_AddNumberToObject(l, "keys_total", r->loras[i].keys_total);
            cJSON_AddItemToArray(loras, l);
        }
    }
    return print_free(o);
}

static sdw_status generate(sdw_engine *e, sdw_job *j)
{
    const sdw_job_request *r = &j->req;
    const sdw_engine_model *cur = &e->current;   /* written only by this thread */
    const sdw_model_info *mi = &cur->info;
    char *lora_hashes;
    SDW_TRY(apply_loras(e, j, &lora_hashes));

    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    int mult = cur->size_multiple;
    p.prompt = r->prompt;
    p.negative_prompt = r->negative_prompt;
    p.width = r->width ? r->width : r->init.w ? size_from(r->init.w, mult) : mi->default_width;
    p.height = r->height ? r->height : r->init.h ? size_from(r->init.h, mult) : mi->default_height;
    p.steps = r->steps ? r->steps : mi->default_steps;
    p.cfg_scale = isnan(r->cfg) ? mi->default_cfg : r->cfg;
    /* Only a model with distilled guidance (FLUX dev) reads it; the others
     * ignore the field, as Forge does. Its default is written in so that
     * the PNG's parameters and the result say what ran. */
    p.guidance = mi->default_guidance <= 0 ? -1 : isnan(r->guidance) ? mi->default_guidance : r->guidance;
    memcpy(p.slg_layers, r->slg_layers, sizeof p.slg_layers);
    p.n_slg_layers = r->n_slg;
    p.slg_scale = r->slg_scale;
    p.slg_start = r->slg_start;
    p.slg_end = r->slg_end;
    if (r->has_sampler) p.sampler = r->sampler;
    else sdw_sampler_parse(mi->default_sampler, &p.sampler);
    if (r->has_schedule) p.schedule = r->schedule;
    else if (r->has_sampler)
        p.schedule = sdw_sampler_default_schedule_for(
            p.sampler, mi->prediction == SDW_PREDICTION_FLOW ? SDW_PARAM_FLOW : SDW_PARAM_EPS);
    else sdw_schedule_parse(mi->default_scheduler, &p.schedule);
    p.rng = r->rng;
    p.clip_skip = r->clip_skip;
    p.batch_size = r->batch_size;
    p.strength = r->strength;
    p.preview_every = r->preview_every;

    sdw_job_result *res = &j->result;
    res->format = r->output_format;
    res->width = p.width;
    res->height = p.height;
    res->steps = p.steps;
    res->cfg = p.cfg_scale;
    res->guidance = p.guidance > 0 ? p.guidance : 0;
    res->strength = r->kind == SDW_JOB_TXT2IMG ? 0 : p.strength;
    res->sampler = sdw_sampler_a1111_name(p.sampler);
    res->schedule = sdw_schedule_a1111_name(p.schedule);
    int total = r->batch_size * r->n_iter;
    res->bytes = calloc((size_t)total, sizeof *res->bytes);
    res->len = calloc((size_t)total, sizeof *res->len);
    res->seeds = calloc((size_t)total, sizeof *res->seeds);
    res->infotexts = calloc((size_t)total, sizeof *res->infotexts);
    size_t per = (size_t)p.width * p.height * 3;
    float *images = malloc((size_t)r->batch_size * per * sizeof *images), *init = NULL, *mask = NULL;
    sdw_status s = res->bytes && res->len && res->seeds && res->infotexts && images
                       ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory for %d images", total);
    if (s == SDW_OK && r->init.w) s = sdw_init_from_image(&r->init, p.width, p.height, &init);
    if (s == SDW_OK && r->mask.w) s = sdw_mask_from_image(&r->mask, p.width, p.height, r->mask_source, r->mask_invert, &mask);
    p.init_image = init;
    p.mask = mask;
    sdw_control_unit units[SDW_REQ_MAX_CONTROLS];
    float *maps[SDW_REQ_MAX_CONTROLS] = { 0 };
    sdw_infotext_control infos[SDW_REQ_MAX_CONTROLS];
    if (s == SDW_OK && r->n_controls) s = prepare_controls(e, j, &p, units, maps, infos);
    uint64_t seed = r->seed >= 0 ? (uint64_t)r->seed : sdw_random_seed();
    /* A1111's "Model": the file's stem; a folder goes by its model_name. */
    char stem[256];
    if (ce_is_folder(cur)) snprintf(stem, sizeof stem, "%s", cur->model_name);
    else sdw_path_stem(cur->path, stem, sizeof stem);
    progress_ctx pc = { e, j, 0, r->n_iter, sdw_now() };
    p.progress = on_progress;
    p.progress_user = &pc;
    for (int run = 0; run < r->n_iter && s == SDW_OK; run++) {
        pc.run = run;
        p.seed = seed + (uint64_t)run;   /* A1111's n_iter: seed, seed + 1, ... */
        s = sdw_pipeline_run(e->model, &p, images);
        for (int b = 0; b < r->batch_size && s == SDW_OK; b++) {
            sdw_infotext_args ia = { &p, p.seed, stem, cur->hash10[0] ? cur->hash10 : NULL,
                                     lora_hashes };
            char *info = sdw_infotext_controls(&ia, r->n_controls ? infos : NULL);
            s = add_image(res, images + (size_t)b * per, p.width, p.height, r->output_format, p.seed, info);
            if (s != SDW_OK) free(info);
        }
    }
    free(images);
    free(init);
    free(mask);
    for (int i = 0; i < r->n_controls; i++) free(maps[i]);
    if (e->cn_cache) sdw_cn_cache_unpin_all(e->cn_cache);
    free(lora_hashes);
    return s;
}

void engine_run_job(sdw_engine *e, sdw_job *j)
{
    double t0 = sdw_now();
    if (j->model_path && strcmp(j->model_path, e->current.path) && engine_load_model(e, j->model_path) != SDW_OK) {
        finish(e, j, SDW_JOB_FAILED, "model_load_failed", sdw_last_error());
        return;
    }
    if (j->req.kind == SDW_JOB_LOAD_MODEL) {
        finish(e, j, SDW_JOB_COMPLETED, NULL, NULL);
        return;
    }
    if (j->req.kind == SDW_JOB_COMFY) {   /* the workflow loads its own models */
        engine_comfy_run(e, j);
        return;
    }
    sdw_status s = e->model ? generate(e, j) : sdw_fail(SDW_ERR_INVALID_ARG, "no model is loaded");
    if (s == SDW_ERR_CANCELLED) {
        pthread_mutex_lock(&e->mu);
        job_finish_locked(e, j, SDW_JOB_CANCELLED, e->drain_cancel ? "shutting_down" : "cancelled", sdw_last_error());
        pthread_mutex_unlock(&e->mu);
        return;
    }
    if (s != SDW_OK) {
        finish(e, j, SDW_JOB_FAILED, s == SDW_ERR_INVALID_ARG ? "invalid_request" : "generation_failed",
               sdw_last_error());
        return;
    }
    j->result.seconds = sdw_now() - t0;
    sdw_metrics_image_seconds(e->metrics, j->result.seconds);
    char *complete = complete_json(&j->result);
    pthread_mutex_lock(&e->mu);
    job_emit_locked(e, j, "complete", complete);
    job_finish_locked(e, j, SDW_JOB_COMPLETED, NULL, NULL);
    pthread_mutex_unlock(&e->mu);
}
