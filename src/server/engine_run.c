/* engine_run.c: what the generation thread does with one job: switch the
 * model if the job names another one, fill in the model's defaults, and
 * run it through the public API (sdw.h): its LoRA set applied and reported
 * first (sdw_model_apply_loras), its ControlNet units prepared (nets from
 * the cache, loaded once and kept across jobs; control images preprocessed
 * and fitted to the generation size here, as POST /controlnet/detect does),
 * then sdw_generate (n_iter runs, seed + i each) with a progress callback
 * that publishes progress and preview events and stops at the next step
 * once the job is cancelled; the images are encoded with their A1111
 * parameters and the job finished. Only the generation thread runs this
 * file; it takes the engine's mutex only to publish. */
#include "server/engine_internal.h"
#include "server/control_image.h"
#include "server/controlnet_cache.h"
#include "server/controlnet_files.h"
#include "server/server_log.h"
#include "core/error.h"
#include "io/base64.h"
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
    double t_last;
} progress_ctx;

static char *png_b64(const sdw_image_rgb8 *img)
{
    uint8_t *png = NULL;
    size_t n = 0;
    char *b64 = NULL;
    if (sdw_image_rgb8_encode_png(img, NULL, &png, &n) == SDW_OK) sdw_base64_encode(png, n, &b64, NULL);
    free(png);
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

/* Steps and ETA count over all n_iter runs; non-zero stops the run once
 * the job is cancelled (engine_run_job then reports the job's reason). */
static int on_progress(void *user, const sdw_gen_progress *p)
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
    int step = p->run * p->total + p->step, total = p->runs * p->total;
    double eta = p->eta_s + (p->runs - p->run - 1) * (p->elapsed_s + p->eta_s);
    char *prog = print_free(progress_json("progress", step, total)), *prev = NULL, *b64 = NULL;
    if (p->preview && (b64 = png_b64(p->preview))) {
        cJSON *o = progress_json("preview", step, total);
        cJSON_AddStringToObject(o, "image", b64);
        cJSON_AddStringToObject(o, "format", "png");
        prev = print_free(o);
    }
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
    pthread_mutex_unlock(&e->mu);
    free(b64);
    return cancel;
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

/* The cache's nets, loaded for the model that was current when the cache
 * was made (it goes with that model: engine_load_model frees it first). */
static sdw_status load_net(void *user, const char *path, void **net, size_t *bytes)
{
    sdw_controlnet *cn;
    SDW_TRY(sdw_controlnet_load_for(user, path, &cn));
    *net = cn;
    *bytes = sdw_controlnet_weight_bytes(cn);
    return SDW_OK;
}

static void free_net(void *user, void *net)
{
    (void)user;
    sdw_controlnet_free(net);
}

static const char *fit_mode_name(sdw_fit_mode m)
{
    return m == SDW_FIT_JUST_RESIZE ? "Just Resize" : m == SDW_FIT_RESIZE_AND_FILL ? "Resize and Fill" : "Crop and Resize";
}

static const char *control_mode_name(sdw_control_mode m)
{
    return m == SDW_CONTROL_PROMPT ? "prompt" : m == SDW_CONTROL_CONTROLNET ? "controlnet" : "balanced";
}

/* The preprocessor as sdw_gen_control names it, thresholds written so that
 * they read back as the same floats (for the parameters text). */
static void preprocessor_spec(const sdw_preprocessor *pre, char *buf, size_t n)
{
    const char *name = sdw_preprocessor_name(pre->kind);
    if (pre->kind == SDW_PRE_CANNY) snprintf(buf, n, "%s:%.9g:%.9g", name, pre->a, pre->b);
    else if (pre->kind == SDW_PRE_THRESHOLD) snprintf(buf, n, "%s:%.9g", name, pre->a);
    else snprintf(buf, n, "%s", name);
}

/* The job's units as the API takes them, for a generation of w x h. */
typedef struct {
    sdw_gen_control units[SDW_REQ_MAX_CONTROLS];
    sdw_image maps[SDW_REQ_MAX_CONTROLS];    /* preprocessed here and fitted to w x h */
    char pre[SDW_REQ_MAX_CONTROLS][64];
} job_controls;

static void job_controls_free(job_controls *jc)
{
    for (int i = 0; i < SDW_REQ_MAX_CONTROLS; i++) sdw_image_free(&jc->maps[i]);
}

/* Nets come from the cache (pinned until the job ends) and are checked
 * against the model here, so that a net that does not fit is the request's
 * fault (400) and leaves the cache; the control images are preprocessed
 * and fitted here (control_image.c, which POST /controlnet/detect shares). */
static sdw_status prepare_controls(sdw_engine *e, sdw_job *j, int w, int h, job_controls *jc)
{
    const sdw_job_request *r = &j->req;
    sdw_family f = sdw_model_get_info(e->model)->family;
    if (sdw_family_is_flux(f) || sdw_family_is_sd3(f))
        return sdw_fail(SDW_ERR_INVALID_ARG, "controlnets: %s models take no ControlNet (SD1, SD2 and SDXL do)",
                        sdw_family_name(f));
    if (!e->cn_cache && !(e->cn_cache = sdw_cn_cache_new(e->cfg.cn_cache_bytes, load_net, free_net, e->model)))
        return sdw_fail(SDW_ERR_NOMEM, "controlnets: out of memory");
    for (int i = 0; i < r->n_controls; i++) {
        const sdw_job_control *c = &r->controls[i];
        double t0 = sdw_now();
        void *net;
        bool hit;
        if (sdw_cn_cache_get(e->cn_cache, c->path, &net, &hit) != SDW_OK)
            return sdw_fail_context(SDW_ERR_IO, "%s: loading ControlNet %s", c->field, c->title);
        if (!hit) sdw_srv_log("job %s ControlNet %s loaded in %.2f s", j->id, c->title, sdw_now() - t0);
        if (sdw_controlnet_check_model(net, e->model, c->title) != SDW_OK) {
            sdw_cn_cache_refuse(e->cn_cache, c->path);
            return sdw_fail_context(SDW_ERR_INVALID_ARG, "%s: model", c->field);
        }
        const sdw_image *src = c->image.w ? &c->image : &r->init;
        int res = c->pixel_perfect ? sdw_control_pixel_perfect_res(src, w, h, c->resize_mode) : c->processor_res;
        if (sdw_control_fitted(&c->pre, res, c->resize_mode, src, w, h, &jc->maps[i]) != SDW_OK)
            return sdw_fail_context(SDW_ERR_INVALID_ARG, "%s", c->field);
        preprocessor_spec(&c->pre, jc->pre[i], sizeof jc->pre[i]);
        sdw_gen_control *u = &jc->units[i];
        *u = sdw_gen_control_default();
        u->path = c->path;
        u->net = net;
        u->image = (sdw_image_rgb8){ jc->maps[i].w, jc->maps[i].h, jc->maps[i].data };
        u->scale = c->scale;
        u->start = c->start;
        u->end = c->end;
        u->preprocessor = jc->pre[i];
        u->resize_mode = fit_mode_name(c->resize_mode);
        u->control_mode = control_mode_name(c->mode);
        u->preprocessed = true;
        u->processor_res = res;
        u->model_name = c->stem;
        u->model_hash = c->hash;
    }
    return SDW_OK;
}

/* ---------------------------------------------------------------- the job */

static bool ce_is_folder(const sdw_engine_model *m)
{
    return m->info.layout && !strcmp(m->info.layout, "diffusers");
}

/* A size from the init image: rounded down to what the model takes. */
static int size_from(int v, int mult)
{
    v -= v % mult;
    if (v < SDW_REQ_MIN_SIZE) v = (SDW_REQ_MIN_SIZE + mult - 1) / mult * mult;
    return v > SDW_REQ_MAX_SIZE ? SDW_REQ_MAX_SIZE - SDW_REQ_MAX_SIZE % mult : v;
}

/* The applied LoRA set as the job's result reports it. */
static void note_loras(sdw_job *j, const sdw_gen_result *g)
{
    j->result.n_loras = g->n_loras;
    for (int i = 0; i < g->n_loras; i++) {
        const sdw_gen_lora *l = g->loras[i];
        sdw_lora_report *rep = &j->result.loras[i];
        snprintf(rep->name, sizeof rep->name, "%s", l->name);
        snprintf(rep->hash12, sizeof rep->hash12, "%s", l->hash);
        rep->keys_applied = l->keys_applied;
        rep->keys_total = l->keys_total;
        sdw_srv_log("job %s LoRA %s: applied %d of %d keys (te %g, unet %g)", j->id, l->name, l->keys_applied,
                    l->keys_total, l->te_strength, l->unet_strength);
    }
}

/* The images made, encoded with their parameters text, into the job's result. */
static sdw_status add_images(sdw_job_result *r, const sdw_gen_result *g, sdw_image_format f)
{
    for (int k = 0; k < g->n_images; k++) {
        const sdw_gen_image *gi = g->images[k];
        int i = r->n_images;
        char *info = strdup(gi->parameters ? gi->parameters : "");
        if (!info) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        sdw_status s = sdw_image_rgb8_encode(&gi->image, sdw_image_format_name(f), info, &r->bytes[i], &r->len[i]);
        if (s != SDW_OK) {
            free(info);
            return s;
        }
        r->seeds[i] = gi->seed;
        r->infotexts[i] = info;
        r->n_images++;
    }
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

/* What the job's images hold, as RGB8 the API takes (the pixels in `owned`). */
typedef struct {
    sdw_image init, mask;
    sdw_image_rgb8 init8, mask8;
} job_images;

static void job_images_free(job_images *ji)
{
    sdw_image_free(&ji->init);
    sdw_image_free(&ji->mask);
}

/* The request's decoded images (any channel count) as RGB; an alpha mask as
 * its alpha plane in R, G and B (SDW_GEN_MASK_ALPHA). */
static sdw_status job_inputs(const sdw_job_request *r, sdw_gen_params *p, job_images *ji)
{
    if (r->init.w) {
        SDW_TRY(sdw_image_convert(&r->init, 3, &ji->init));
        ji->init8 = (sdw_image_rgb8){ ji->init.w, ji->init.h, ji->init.data };
        p->init_image = &ji->init8;
    }
    if (!r->mask.w) return SDW_OK;
    bool alpha = r->mask_source == SDW_MASK_ALPHA;
    if (alpha) {
        sdw_image rgba;
        SDW_TRY(sdw_image_convert(&r->mask, 4, &rgba));
        sdw_status s = sdw_image_alloc(&ji->mask, rgba.w, rgba.h, 3);
        for (size_t i = 0; s == SDW_OK && i < (size_t)rgba.w * rgba.h; i++)
            memset(ji->mask.data + i * 3, rgba.data[i * 4 + 3], 3);
        sdw_image_free(&rgba);
        SDW_TRY(s);
    } else {
        SDW_TRY(sdw_image_convert(&r->mask, 3, &ji->mask));
    }
    ji->mask8 = (sdw_image_rgb8){ ji->mask.w, ji->mask.h, ji->mask.data };
    p->mask = &ji->mask8;
    p->mask_source = alpha ? SDW_GEN_MASK_ALPHA : SDW_GEN_MASK_LUMA;
    p->mask_invert = r->mask_invert;
    return SDW_OK;
}

/* The request as sdw_gen_params with the model's defaults written in (the
 * result says what ran); the names of sampler and schedule as resolved. */
static void job_params(const sdw_job_request *r, const sdw_engine_model *cur, sdw_gen_params *p)
{
    const sdw_model_info *mi = &cur->info;
    int mult = cur->size_multiple;
    *p = sdw_gen_params_default();
    p->prompt = r->prompt;
    p->negative_prompt = r->negative_prompt;
    p->width = r->width ? r->width : r->init.w ? size_from(r->init.w, mult) : mi->default_width;
    p->height = r->height ? r->height : r->init.h ? size_from(r->init.h, mult) : mi->default_height;
    p->steps = r->steps ? r->steps : mi->default_steps;
    p->cfg_scale = isnan(r->cfg) ? mi->default_cfg : r->cfg;
    /* Only a model with distilled guidance (FLUX dev) reads it; the others
     * ignore the field, as Forge does. Its default is written in so that
     * the PNG's parameters and the result say what ran. */
    p->guidance = mi->default_guidance <= 0 ? -1 : isnan(r->guidance) ? mi->default_guidance : r->guidance;
    p->slg_layers = r->slg_layers;
    p->n_slg_layers = r->n_slg;
    p->slg_scale = r->slg_scale;
    p->slg_start = r->slg_start;
    p->slg_end = r->slg_end;
    sdw_sampler_kind sampler;
    sdw_schedule_kind schedule;
    if (r->has_sampler) sampler = r->sampler;
    else sdw_sampler_parse(mi->default_sampler, &sampler);
    if (r->has_schedule) schedule = r->schedule;
    else if (r->has_sampler)
        schedule = sdw_sampler_default_schedule_for(sampler, mi->prediction == SDW_PREDICTION_FLOW ? SDW_PARAM_FLOW
                                                                                                   : SDW_PARAM_EPS);
    else sdw_schedule_parse(mi->default_scheduler, &schedule);
    p->sampler = sdw_sampler_name(sampler);
    p->scheduler = sdw_schedule_name(schedule);
    p->rng = sdw_rng_kind_name(r->rng);
    p->clip_skip = r->clip_skip;
    p->batch_size = r->batch_size;
    p->batch_count = r->n_iter;   /* A1111's n_iter: seed, seed + 1, ... */
    p->strength = r->strength;
    p->preview_every = r->preview_every;
    p->seed = r->seed;
}

/* What the job's result says besides its images. */
static sdw_status result_fields(const sdw_job_request *r, const sdw_gen_params *p, sdw_job_result *res)
{
    sdw_sampler_kind sampler;
    sdw_schedule_kind schedule;
    sdw_sampler_parse(p->sampler, &sampler);
    sdw_schedule_parse(p->scheduler, &schedule);
    res->format = r->output_format;
    res->width = p->width;
    res->height = p->height;
    res->steps = p->steps;
    res->cfg = p->cfg_scale;
    res->guidance = p->guidance > 0 ? p->guidance : 0;
    res->strength = r->kind == SDW_JOB_TXT2IMG ? 0 : p->strength;
    res->sampler = sdw_sampler_a1111_name(sampler);
    res->schedule = sdw_schedule_a1111_name(schedule);
    int total = r->batch_size * r->n_iter;
    res->bytes = calloc((size_t)total, sizeof *res->bytes);
    res->len = calloc((size_t)total, sizeof *res->len);
    res->seeds = calloc((size_t)total, sizeof *res->seeds);
    res->infotexts = calloc((size_t)total, sizeof *res->infotexts);
    return res->bytes && res->len && res->seeds && res->infotexts
               ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory for %d images", total);
}

/* The job through the public API: its LoRA set first (reported before the
 * long part), then its ControlNets from the cache, then sdw_generate. */
static sdw_status generate(sdw_engine *e, sdw_job *j)
{
    const sdw_job_request *r = &j->req;
    const sdw_engine_model *cur = &e->current;   /* written only by this thread */
    sdw_gen_params p;
    job_params(r, cur, &p);
    /* The request's LoRAs and its prompt's tags are resolved already (at submit). */
    sdw_lora_ref loras[SDW_REQ_MAX_LORAS];
    for (int i = 0; i < j->n_lora_paths; i++)
        loras[i] = sdw_lora_ref_make(j->lora_paths[i], r->loras[i].te_strength, r->loras[i].unet_strength);
    p.loras = loras;
    p.n_loras = j->n_lora_paths;
    p.prompt_loras_listed = true;
    /* A1111's "Model": the file's stem; a folder goes by its model_name. */
    char stem[256];
    if (ce_is_folder(cur)) snprintf(stem, sizeof stem, "%s", cur->model_name);
    else sdw_path_stem(cur->path, stem, sizeof stem);
    p.model_name = stem;
    p.model_hash = cur->hash10[0] ? cur->hash10 : NULL;
    progress_ctx pc = { e, j, 0 };
    p.progress = on_progress;
    p.progress_user = &pc;

    sdw_gen_result g = sdw_gen_result_init();
    job_images ji = { 0 };
    job_controls *jc = calloc(1, sizeof *jc);
    sdw_status s = jc ? sdw_model_apply_loras(e->model, &p, &g) : sdw_fail(SDW_ERR_NOMEM, "out of memory");
    if (s == SDW_OK) note_loras(j, &g);
    if (s == SDW_OK) s = result_fields(r, &p, &j->result);
    if (s == SDW_OK) s = job_inputs(r, &p, &ji);
    if (s == SDW_OK && r->n_controls) s = prepare_controls(e, j, p.width, p.height, jc);
    p.controls = jc ? jc->units : NULL;
    p.n_controls = r->n_controls;
    p.control_guess = r->control_guess;
    pc.t_last = sdw_now();   /* the first step's time starts here, after the preparations */
    if (s == SDW_OK) s = sdw_generate(e->model, &p, &g);
    /* The runs that finished are kept also when a later one failed. */
    if (j->result.bytes) {
        sdw_status a = add_images(&j->result, &g, r->output_format);
        if (s == SDW_OK) s = a;
    }
    sdw_gen_result_free(&g);
    job_images_free(&ji);
    if (jc) job_controls_free(jc);
    free(jc);
    if (e->cn_cache) sdw_cn_cache_unpin_all(e->cn_cache);
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
        /* The API's message says where the run stopped; the job's reason says why. */
        char why[256];
        snprintf(why, sizeof why, "%s", j->cancel ? j->cancel_reason : sdw_last_error());
        job_finish_locked(e, j, SDW_JOB_CANCELLED, e->drain_cancel ? "shutting_down" : "cancelled", why);
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
