/* generate.c: sdw_generate, the public way to make images: a call's
 * sdw_gen_params (any version) become one sdw_pipeline_params per run of
 * batch_count, with the model's defaults filled in where the caller left 0
 * or -1, its LoRA set applied, ControlNets loaded, init image and mask
 * converted; each run's images come back as RGB8 with their seed and A1111
 * parameters text. Progress goes to the caller's callback with previews as
 * RGB8; the callback's answer and the sdw_cancel flag stop a run between
 * steps. */
#include "api/api_internal.h"
#include "core/error.h"
#include "pipeline/frontend.h"
#include "sampling/rng.h"
#include "sampling/sampler.h"
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- cancel */

struct sdw_cancel {
    atomic_int raised;
};

sdw_cancel *sdw_cancel_new(void) { return calloc(1, sizeof(sdw_cancel)); }
void sdw_cancel_free(sdw_cancel *c) { free(c); }
void sdw_cancel_request(sdw_cancel *c) { if (c) atomic_store(&c->raised, 1); }
void sdw_cancel_reset(sdw_cancel *c) { if (c) atomic_store(&c->raised, 0); }
bool sdw_cancel_requested(const sdw_cancel *c) { return c && atomic_load(&((sdw_cancel *)c)->raised); }

/* ---------------------------------------------------------------- results */

#define RESULT_MIN (offsetof(sdw_gen_result, images) + sizeof(sdw_gen_image **))
#define RESULT_HAS(r, field) ((r)->struct_size >= offsetof(sdw_gen_result, field) + sizeof((r)->field))

static void free_images(sdw_gen_image **images, int n)
{
    for (int i = 0; images && i < n; i++) {
        if (!images[i]) continue;
        sdw_image_rgb8_free(&images[i]->image);
        free(images[i]->parameters);
        free(images[i]);
    }
    free(images);
}

static void free_loras(sdw_gen_lora **loras, int n)
{
    for (int i = 0; loras && i < n; i++) free(loras[i]);
    free(loras);
}

void sdw_gen_result_free(sdw_gen_result *r)
{
    if (!r || r->struct_size < RESULT_MIN) return;
    free_images(r->images, r->n_images);
    r->images = NULL;
    r->n_images = 0;
    if (RESULT_HAS(r, loras)) {
        free_loras(r->loras, r->n_loras);
        r->loras = NULL;
        r->n_loras = 0;
    }
}

/* The applied LoRAs as the result lists them. */
static sdw_status note_loras(sdw_gen_result *r, const sdw_lora_set *set, const sdw_lora_report *rep)
{
    if (!set->n) return SDW_OK;
    if (!(r->loras = calloc((size_t)set->n, sizeof *r->loras))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    for (int i = 0; i < set->n; i++) {
        sdw_gen_lora *l = calloc(1, sizeof *l);
        if (!l) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        r->loras[r->n_loras++] = l;
        *l = (sdw_gen_lora){ sizeof *l, "", "", rep[i].keys_applied, rep[i].keys_total, set->spec[i].te_strength,
                             set->spec[i].unet_strength };
        memcpy(l->name, rep[i].name, sizeof l->name);
        memcpy(l->hash, rep[i].hash12, sizeof l->hash);
    }
    return SDW_OK;
}

/* ---------------------------------------------------------------- progress */

typedef struct {
    const sdw_gen_params *q;
    int run;
} progress_ctx;

static sdw_status cancelled(const sdw_gen_params *q, int run, int step, int total, const char *by)
{
    return sdw_fail(SDW_ERR_CANCELLED, "generation cancelled by %s after step %d of %d (run %d of %d)", by,
                    step, total, run + 1, q->batch_count);
}

static sdw_status on_progress(void *user, const sdw_progress *p)
{
    progress_ctx *c = user;
    const sdw_gen_params *q = c->q;
    if (q->progress) {
        sdw_gen_progress g = { sizeof g, p->step, p->total, c->run, q->batch_count, p->elapsed_s, p->eta_s, NULL };
        sdw_image img = { 0 };
        sdw_image_rgb8 preview;
        if (p->preview) {
            SDW_TRY(sdw_rgb01_to_image(p->preview, p->preview_w, p->preview_h, &img));
            preview = (sdw_image_rgb8){ img.w, img.h, img.data };
            g.preview = &preview;
        }
        int stop = q->progress(q->progress_user, &g);
        sdw_image_free(&img);
        if (stop) return cancelled(q, c->run, p->step, p->total, "the progress callback");
    }
    if (sdw_cancel_requested(q->cancel)) return cancelled(q, c->run, p->step, p->total, "sdw_cancel_request");
    return SDW_OK;
}

/* ---------------------------------------------------------------- the run */

/* The pipeline's parameters from q, with the model's defaults where q leaves them open. */
static void pipeline_params(const sdw_gen_params *q, const sdw_model_info *mi, sdw_pipeline_params *pp)
{
    sdw_pipeline_params_init(pp);
    /* q was checked: the names parse. */
    sdw_sampler_parse(q->sampler ? q->sampler : mi->default_sampler, &pp->sampler);
    sdw_schedule_parse(q->scheduler ? q->scheduler : mi->default_scheduler, &pp->schedule);
    if (q->rng) sdw_rng_kind_parse(q->rng, &pp->rng);
    pp->prompt = q->prompt;
    pp->negative_prompt = q->negative_prompt;
    pp->width = q->width ? q->width : mi->default_width;
    pp->height = q->height ? q->height : mi->default_height;
    pp->steps = q->steps ? q->steps : mi->default_steps;
    pp->cfg_scale = q->cfg_scale >= 0 ? q->cfg_scale : mi->default_cfg;
    pp->guidance = q->guidance >= 0 ? q->guidance : mi->default_guidance;
    pp->t5_max_length = q->t5_max_length;
    for (int i = 0; i < q->n_slg_layers; i++) pp->slg_layers[i] = q->slg_layers[i];
    pp->n_slg_layers = q->n_slg_layers;
    pp->slg_scale = q->slg_scale;
    pp->slg_start = q->slg_start;
    pp->slg_end = q->slg_end;
    pp->clip_skip = q->clip_skip;
    pp->batch_size = q->batch_size;
    pp->strength = q->strength;
    pp->preview_every = q->preview_every;
    pp->vae_tiling = q->vae_tiling;
    pp->control_guess = q->control_guess;
}

/* Everything one call holds, freed together. */
typedef struct {
    sdw_lora_set loras;
    sdw_lora_report reports[SDW_MAX_LORAS];
    char *lora_hashes;
    sdw_api_controls *controls;
    float *init, *mask, *images;
} call_state;

static void call_free(call_state *cs)
{
    free(cs->lora_hashes);
    if (cs->controls) sdw_api_controls_free(cs->controls);
    free(cs->controls);
    free(cs->init);
    free(cs->mask);
    free(cs->images);
}

/* The mask as the pipeline's front end reads it: RGB for its luma, or
 * RGBA with the alpha plane the caller put in R. */
static sdw_status mask_floats(const sdw_gen_params *q, const sdw_image *view, int w, int h, float **out)
{
    if (q->mask_source != SDW_GEN_MASK_ALPHA)
        return sdw_mask_from_image(view, w, h, SDW_MASK_LUMA, q->mask_invert, out);
    sdw_image rgba;
    SDW_TRY(sdw_image_alloc(&rgba, view->w, view->h, 4));
    memset(rgba.data, 0, (size_t)view->w * view->h * 4);
    for (size_t i = 0; i < (size_t)view->w * view->h; i++) rgba.data[i * 4 + 3] = view->data[i * 3];
    sdw_status s = sdw_mask_from_image(&rgba, w, h, SDW_MASK_ALPHA, q->mask_invert, out);
    sdw_image_free(&rgba);
    return s;
}

/* Init image and mask as the pipeline takes them, at the run's size. */
static sdw_status inputs(const sdw_gen_params *q, sdw_pipeline_params *pp, call_state *cs)
{
    sdw_image view;
    if (q->init_image) {
        SDW_TRY(sdw_api_image_view(q->init_image, "init_image", &view));
        SDW_TRY(sdw_init_from_image(&view, pp->width, pp->height, &cs->init));
        pp->init_image = cs->init;
    }
    if (q->mask) {
        SDW_TRY(sdw_api_image_view(q->mask, "mask", &view));
        SDW_TRY(mask_floats(q, &view, pp->width, pp->height, &cs->mask));
        pp->mask = cs->mask;
    }
    return SDW_OK;
}

/* Run `run`'s images (float, [batch, h, w, 3]) into the result. */
static sdw_status collect(const sdw_gen_params *q, const sdw_pipeline_params *pp, const call_state *cs,
                          sdw_gen_result *r)
{
    size_t per = (size_t)pp->width * pp->height * 3;
    for (int b = 0; b < pp->batch_size; b++) {
        sdw_gen_image *gi = calloc(1, sizeof *gi);
        if (!gi) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        r->images[r->n_images++] = gi;
        gi->struct_size = sizeof *gi;
        gi->seed = pp->seed;
        sdw_image img;
        SDW_TRY(sdw_rgb01_to_image(cs->images + (size_t)b * per, pp->width, pp->height, &img));
        gi->image = (sdw_image_rgb8){ img.w, img.h, img.data };
        const char *hash = q->model_hash && q->model_hash[0] ? q->model_hash : NULL;
        sdw_infotext_args ia = { pp, pp->seed, q->model_name, hash, cs->lora_hashes };
        gi->parameters = sdw_infotext_controls(&ia, cs->controls->info);
        if (!gi->parameters) return sdw_fail(SDW_ERR_NOMEM, "out of memory writing the parameters text");
    }
    return SDW_OK;
}

static sdw_status apply_loras(sdw_model *m, const sdw_gen_params *q, call_state *cs, sdw_gen_result *r)
{
    SDW_TRY(sdw_api_lora_set(q, &cs->loras));
    SDW_TRY(sdw_model_set_loras(m, cs->loras.spec, cs->loras.n, cs->reports));
    if (cs->loras.n && !(cs->lora_hashes = sdw_lora_hashes(cs->reports, cs->loras.n)))
        return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    return note_loras(r, &cs->loras, cs->reports);
}

static sdw_status run_all(sdw_model *m, const sdw_gen_params *q, call_state *cs, sdw_gen_result *r,
                          const sdw_gen_observer *o)
{
    SDW_TRY(apply_loras(m, q, cs, r));

    sdw_pipeline_params pp;
    pipeline_params(q, sdw_model_get_info(m), &pp);
    if (!(cs->controls = calloc(1, sizeof *cs->controls))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    SDW_TRY(sdw_api_controls_load(q, m, pp.width, pp.height, cs->controls));
    pp.controls = cs->controls->units;
    pp.n_controls = q->n_controls;
    SDW_TRY(inputs(q, &pp, cs));

    int total = q->batch_count * q->batch_size;
    if (!(r->images = calloc((size_t)total, sizeof *r->images)) ||
        !(cs->images = malloc((size_t)q->batch_size * pp.width * pp.height * 3 * sizeof *cs->images)))
        return sdw_fail(SDW_ERR_NOMEM, "out of memory for %d images of %dx%d", total, pp.width, pp.height);
    uint64_t seed = q->seed < 0 ? sdw_random_seed() : (uint64_t)q->seed;
    progress_ctx pc = { q, 0 };
    pp.progress = on_progress;
    pp.progress_user = &pc;
    for (int run = 0; run < q->batch_count; run++) {
        pp.seed = seed + (uint64_t)run;   /* A1111's n_iter: seed, seed + 1, ... */
        pc.run = run;
        if (sdw_cancel_requested(q->cancel)) return cancelled(q, run, 0, pp.steps, "sdw_cancel_request");
        void *ou = o && o->begin ? o->begin(o->user, run) : NULL;
        pp.observe = ou ? o->observe : NULL;
        pp.observe_user = ou;
        sdw_status s = sdw_pipeline_run(m, &pp, cs->images);
        if (ou && o->end) o->end(ou, s == SDW_OK);
        SDW_TRY(s);
        SDW_TRY(collect(q, &pp, cs, r));
    }
    return SDW_OK;
}

/* Runs what (all of a generation, or only its LoRAs) over the caller's
 * result of any version: the fields its struct lacks are freed here. */
static sdw_status with_result(sdw_model *m, const sdw_gen_params *p, sdw_gen_result *result,
                              const sdw_gen_observer *o, bool loras_only)
{
    if (!result) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_generate: result is NULL");
    if (result->struct_size < RESULT_MIN)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_gen_result.struct_size is %zu, less than any version of it "
                        "(%zu): initialise it with sdw_gen_result_init()", result->struct_size, RESULT_MIN);
    sdw_gen_result_free(result);
    sdw_gen_result r = sdw_gen_result_init();
    size_t keep = result->struct_size < sizeof r ? result->struct_size : sizeof r;
    if (!m) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_generate: model is NULL");
    sdw_gen_params q;
    SDW_TRY(sdw_api_params_read(p, &q));
    call_state cs = { 0 };
    sdw_status s = loras_only ? apply_loras(m, &q, &cs, &r) : run_all(m, &q, &cs, &r, o);
    call_free(&cs);
    if (!RESULT_HAS(result, loras)) {
        free_loras(r.loras, r.n_loras);
        r.loras = NULL;
        r.n_loras = 0;
    }
    memcpy((unsigned char *)result + sizeof(size_t), (unsigned char *)&r + sizeof(size_t), keep - sizeof(size_t));
    return s;
}

sdw_status sdw_generate_observed(sdw_model *m, const sdw_gen_params *p, sdw_gen_result *result,
                                 const sdw_gen_observer *o)
{
    return with_result(m, p, result, o, false);
}

sdw_status sdw_generate(sdw_model *m, const sdw_gen_params *p, sdw_gen_result *result)
{
    return with_result(m, p, result, NULL, false);
}

sdw_status sdw_model_apply_loras(sdw_model *m, const sdw_gen_params *p, sdw_gen_result *result)
{
    return with_result(m, p, result, NULL, true);
}
