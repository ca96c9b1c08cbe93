/* comfy_node_sampling.c: KSampler, KSamplerAdvanced and SamplerCustomAdvanced
 * as one pipeline run each, in the pipeline's ComfyUI mode (pipeline.h: comfy = true, latents
 * in and out, ComfyUI's sampling semantics).
 *
 * What a node becomes:
 *   model          env->model of the MODEL chain's spec merged with the CLIP
 *                  the prompts were encoded with (one spec for all the
 *                  sampler's prompts: they are encoded in the same run)
 *   positive / negative   sdw_cond_entry lists; the CLIP's clip skip
 *   latent_image   init_latents = process_latent_in(samples); its noise mask
 *                  resized (bilinear) to the latent size (prepare_mask)
 *   steps, denoise KSampler: denoise d < 1 lays the schedule out for
 *                  int(steps / d) steps and runs the last `steps` of it;
 *                  d = 0 returns the latent as it came (no sigmas to run)
 *   KSamplerAdvanced  add_noise, start_at_step, end_at_step (capped at
 *                  steps; start >= end returns the latent as it came),
 *                  return_with_leftover_noise
 *   sampler_name / scheduler   ComfyUI's names to ours ("ddim" is Euler in
 *                  ComfyUI; sdw_sampler_parse knows the k-diffusion names)
 *   seed, cfg      as given; the CPU generator (ComfyUI's prepare_noise)
 *   ControlNets    the units the prompts carry (ControlNetApplyAdvanced);
 *                  ComfyUI runs a net while the step's sigma lies within
 *                  [sigma(end_percent), sigma(start_percent)], sigma(p)
 *                  the model's sigma at timestep (1 - p) * 999 (its
 *                  percent_to_sigma); our units are on / off by step
 *                  fraction, so those steps of the schedule are found and
 *                  start / end set to select exactly them. The hint is
 *                  resized to the generation size by nearest-exact with a
 *                  centre crop, as ComfyUI's ControlNet does.
 *   SamplerCustomAdvanced   the same run from its parts (comfy_node_model.c):
 *                  NOISE's seed (DisableNoise: no noise), GUIDER's model,
 *                  conditionings and cfg (BasicGuider: positive only, cfg
 *                  1), SAMPLER's name, SIGMAS' scheduler / steps / denoise
 *                  as KSampler's (its model's sampling must be the
 *                  guider's: the pipeline lays the schedule out with the
 *                  model it runs). Its denoised_output (the last step's x0)
 *                  is not kept: a graph that reads it fails.
 * Progress goes to env->progress with the node's id, a preview every step. */
#include "comfy/comfy_values.h"
#include "core/error.h"
#include "io/image.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int schedule_steps, first, last;
    bool add_noise, leftover;
    bool tail;                /* KSampler's denoise < 1: the last steps of the schedule (pipeline.h denoise_tail) */
} step_plan;

/* ComfyUI's sampler names are ours ("ddim" too: in comfy mode the pipeline
 * runs it as ComfyUI does, Euler with fresh inpainting noise). */
static sdw_status parse_sampler(const char *name, sdw_sampler_kind *k)
{
    return sdw_sampler_parse(name, k);
}

/* KSampler's and BasicScheduler's denoise: int(steps / d) laid out, the last steps run. */
static sdw_status plan_denoise(int steps, double d, step_plan *p)
{
    if (steps < 1 || steps > 10000) return sdw_fail(SDW_ERR_INVALID_ARG, "steps %d not in 1..10000", steps);
    *p = (step_plan){steps, 0, steps, true, false, false};
    if (!(d >= 0 && d <= 1)) return sdw_fail(SDW_ERR_INVALID_ARG, "denoise %g not in 0..1", d);
    if (d <= 0) {
        p->first = p->last = 0;
    } else if (d <= 0.9999) {
        double total = (double)steps / d;
        if (total > 100000)
            return sdw_fail(SDW_ERR_INVALID_ARG, "denoise %g with %d steps lays out too many", d, steps);
        p->schedule_steps = (int)total;
        p->first = p->schedule_steps - steps;
        p->last = p->schedule_steps;
        p->tail = true;
    }
    return SDW_OK;
}

static sdw_status plan_steps(const sdw_comfy_node *n, bool advanced, step_plan *p)
{
    int steps = (int)sdw_cx_num(n, "steps", 20);
    if (!advanced) return plan_denoise(steps, sdw_cx_num(n, "denoise", 1.0), p);
    SDW_TRY(plan_denoise(steps, 1.0, p));
    p->add_noise = strcmp(sdw_cx_str(n, "add_noise"), "disable") != 0;
    p->leftover = !strcmp(sdw_cx_str(n, "return_with_leftover_noise"), "enable");
    int start = (int)sdw_cx_num(n, "start_at_step", 0), end = (int)sdw_cx_num(n, "end_at_step", 10000);
    if (start < 0 || end < 0) return sdw_fail(SDW_ERR_INVALID_ARG, "start_at_step / end_at_step below 0");
    p->last = end < steps ? end : steps;
    p->first = start < p->last ? start : p->last;
    return SDW_OK;
}

/* The CLIP every entry of both lists was encoded with (they must agree). */
static sdw_status common_clip(const sdw_cvalue *pos, const sdw_cvalue *neg, const sdw_cv_clip **out)
{
    const sdw_cv_clip *c = NULL;
    const sdw_cvalue *lists[2] = {pos, neg};
    *out = NULL;
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < lists[l]->cond.n; i++) {
            const sdw_cv_clip *e = lists[l]->cond.e[i].clip;
            if (!c) c = e;
            else if (e != c && (!sdw_cx_spec_equal(&e->spec, &c->spec) || e->clip_skip != c->clip_skip))
                return sdw_fail(SDW_ERR_UNSUPPORTED,
                                "the prompts of one sampler must be encoded with one CLIP (same files, LoRAs and "
                                "CLIPSetLastLayer): the %s prompt %d differs from the first",
                                l ? "negative" : "positive", i + 1);
        }
    *out = c;
    return SDW_OK;
}

static sdw_cond_entry *entries(const sdw_cvalue *v)
{
    sdw_cond_entry *e = calloc(v->cond.n > 0 ? (size_t)v->cond.n : 1, sizeof *e);
    if (!e) return NULL;
    for (int i = 0; i < v->cond.n; i++) {
        const sdw_cv_cond *c = &v->cond.e[i];
        e[i] = (sdw_cond_entry){c->text, c->zero, c->strength, c->area_x, c->area_y, c->area_w, c->area_h, c->guidance,
                                c->timestep_range, c->start_percent, c->end_percent};
    }
    return e;
}

/* ---------------------------------------------------------------- ControlNets */

/* The model's sigma at a fractional timestep t, ComfyUI's
 * ModelSamplingDiscrete.sigma: log-sigmas interpolated, of the
 * scaled-linear betas 0.00085..0.012 over 1000 steps. */
static double discrete_sigma(double t)
{
    double log_sigmas[1000], ac = 1.0, a = sqrt(0.00085), b = sqrt(0.012);
    for (int i = 0; i < 1000; i++) {
        double beta = a + (b - a) * i / 999.0;
        ac *= 1.0 - beta * beta;
        log_sigmas[i] = log(sqrt((1.0 - ac) / ac));
    }
    if (t < 0) t = 0;
    if (t > 999) t = 999;
    int lo = (int)floor(t), hi = (int)ceil(t);
    double w = t - lo;
    return exp((1.0 - w) * log_sigmas[lo] + w * log_sigmas[hi]);
}

/* percent_to_sigma of ModelSamplingDiscrete. */
static double percent_to_sigma(double p)
{
    if (p <= 0.0) return 1e30;
    if (p >= 1.0) return 0.0;
    return discrete_sigma((1.0 - p) * 999.0);
}

/* Our step-fraction window for a unit active at sigmas within
 * [sigma(end), sigma(start)]; false when no step of the run is. */
static sdw_status control_window(const sdw_pipeline_params *pp, const sdw_model_info *info, const step_plan *sp,
                                 float start_pct, float end_pct, float *start, float *end, bool *any)
{
    sdw_sampler_params q = {.sampler = pp->sampler, .schedule = pp->schedule, .steps = sp->schedule_steps,
                            .param = info->prediction == SDW_PREDICTION_V ? SDW_PARAM_V : SDW_PARAM_EPS};
    sdw_sampler *s;
    SDW_TRY(sdw_sampler_create(&q, &s));
    const float *sig = sdw_sampler_sigmas(s);
    int n_sig = sdw_sampler_steps(s);
    double hi = percent_to_sigma(start_pct), lo = percent_to_sigma(end_pct);
    int N = sp->last - sp->first, a = -1, b = -1;
    for (int i = 0; i < N && sp->first + i < n_sig; i++) {
        double sigma = sig[sp->first + i];
        if (sigma <= hi && sigma >= lo) {
            if (a < 0) a = i;
            b = i;
        }
    }
    sdw_sampler_free(s);
    *any = a >= 0;
    if (*any) {
        *start = (float)((double)a / N);
        *end = (float)((double)(b + 1) / N);
    }
    return SDW_OK;
}

typedef struct {
    sdw_control_unit units[SDW_MAX_CONTROLS];
    float *hints[SDW_MAX_CONTROLS];
    int n;
} controls;

static bool same_units(const sdw_cv_cond *a, const sdw_cv_cond *b)
{
    if (a->n_controls != b->n_controls) return false;
    for (int i = 0; i < a->n_controls; i++)
        if (a->controls[i].id != b->controls[i].id) return false;
    return true;
}

static sdw_status make_controls(sdw_comfy_exec *x, sdw_model *m, const sdw_cvalue *pos, const sdw_cvalue *neg,
                                const sdw_pipeline_params *pp, const step_plan *sp, controls *c)
{
    c->n = 0;
    const sdw_cv_cond *first = &pos->cond.e[0];
    const sdw_cvalue *lists[2] = {pos, neg};
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < lists[l]->cond.n; i++)
            if (!same_units(first, &lists[l]->cond.e[i]))
                return sdw_fail(SDW_ERR_UNSUPPORTED, "the prompts of one sampler must carry the same ControlNets: the "
                                                     "%s prompt %d differs from the first",
                                l ? "negative" : "positive", i + 1);
    if (first->n_controls && !x->env->controlnet) return sdw_fail(SDW_ERR_UNSUPPORTED, "no ControlNet environment");
    const sdw_model_info *info = sdw_model_get_info(m);
    for (int k = 0; k < first->n_controls; k++) {
        const sdw_cv_control *u = &first->controls[k];
        sdw_control_unit *cu = &c->units[c->n];
        bool any;
        SDW_TRY(control_window(pp, info, sp, u->start_percent, u->end_percent, &cu->start, &cu->end, &any));
        if (!any) continue;   /* no step of this run lies in its sigma range */
        SDW_TRY(x->env->controlnet(x->env->user, u->path, m, &cu->net));
        float *hint;
        SDW_TRY(sdw_resize_image(u->image, 1, u->image_h, u->image_w, 3, pp->height, pp->width, SDW_UP_NEAREST_EXACT,
                                 true, &hint));
        c->hints[c->n] = hint;
        cu->image = hint;
        cu->scale = u->strength;
        cu->mode = SDW_CONTROL_BALANCED;
        c->n++;
    }
    return SDW_OK;
}

/* ---------------------------------------------------------------- the run */

typedef struct {
    sdw_comfy_exec *x;
    const char *id;
} progress_ctx;

static sdw_status on_progress(void *user, const sdw_progress *p)
{
    progress_ctx *c = user;
    const sdw_comfy_env *env = c->x->env;
    if (!env->progress) return SDW_OK;
    return env->progress(env->user, c->id, p->step, p->total, p->preview, p->preview_w, p->preview_h);
}

/* prepare_mask: the noise mask resized to the latent's h x w, bilinear. */
static float *latent_mask(const sdw_cv_latent *l)
{
    if (!l->noise_mask) return NULL;
    float *m = malloc((size_t)l->h * l->w * sizeof *m);
    if (m) sdw_resize_plane(l->noise_mask, l->mask_h, l->mask_w, l->mask_w, 1, m, l->h, l->w, l->w, 1, SDW_UP_BILINEAR);
    return m;
}

typedef struct {
    sdw_cond_entry *pos, *neg;
    float *init, *mask, *latents;
    controls ctl;
} run_buffers;

static void free_buffers(run_buffers *b)
{
    free(b->pos);
    free(b->neg);
    free(b->init);
    free(b->mask);
    free(b->latents);
    for (int i = 0; i < b->ctl.n; i++) free(b->ctl.hints[i]);
}

/* What a sampler node runs, whichever node it is. */
typedef struct {
    const sdw_comfy_model_spec *model;
    const sdw_cvalue *pos, *neg;
    const char *sampler, *scheduler;
    double seed, cfg;
} sample_args;

static sdw_status run(sdw_comfy_exec *x, const sdw_comfy_node *n, const sample_args *a, const sdw_cv_latent *l,
                      const step_plan *sp, run_buffers *b, sdw_cvalue **out)
{
    const sdw_cvalue *pos = a->pos, *neg = a->neg;
    if (pos->cond.n == 0) return sdw_fail(SDW_ERR_INVALID_ARG, "the positive conditioning is empty");
    const sdw_cv_clip *clip = NULL;
    SDW_TRY(common_clip(pos, neg, &clip));
    sdw_comfy_model_spec spec;
    SDW_TRY(sdw_cx_merge_spec(x, a->model, clip, &spec));
    SDW_TRY(sdw_cx_graph_vae(x, spec.vae, sizeof spec.vae));
    sdw_model *m;
    SDW_TRY(sdw_cx_model(x, &spec, &m));
    const sdw_model_info *info = sdw_model_get_info(m);

    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.comfy = true;
    SDW_TRY(parse_sampler(a->sampler, &p.sampler));
    SDW_TRY(sdw_schedule_parse(a->scheduler, &p.schedule));
    /* A JSON number is a double here: seeds above 2^53 arrive rounded, and
     * 0xffffffffffffffff as 2^64, which does not convert. */
    const double seed = a->seed;
    p.seed = seed >= 18446744073709551615.0 ? UINT64_MAX : seed > 0 ? (uint64_t)seed : 0;
    p.cfg_scale = (float)a->cfg;
    p.rng = SDW_RNG_CPU;
    p.width = l->w * 8;
    p.height = l->h * 8;
    p.batch_size = l->batch;
    p.steps = sp->schedule_steps;
    p.schedule_steps = sp->schedule_steps;
    p.first_step = sp->first;
    p.last_step = sp->last;
    p.add_noise = sp->add_noise;
    p.leftover_noise = sp->leftover;
    p.denoise_tail = sp->tail;
    p.clip_skip = clip ? clip->clip_skip : 0;
    p.comfy_sampling_sd3 = spec.sampling_sd3;
    p.comfy_sampling_flux = spec.sampling_flux;
    p.comfy_shift = spec.sampling_shift;
    b->pos = entries(pos);
    b->neg = entries(neg);
    if (!b->pos || !b->neg) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    p.positive = b->pos;
    p.n_positive = pos->cond.n;
    p.negative = b->neg;
    p.n_negative = neg->cond.n;
    SDW_TRY(sdw_cx_latent_in(l, info, &b->init));
    p.init_latents = b->init;
    if (l->noise_mask && !(b->mask = latent_mask(l))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    p.noise_mask = b->mask;
    SDW_TRY(make_controls(x, m, pos, neg, &p, sp, &b->ctl));
    p.controls = b->ctl.n ? b->ctl.units : NULL;
    p.n_controls = b->ctl.n;
    progress_ctx pc = {x, n->id};
    p.progress = on_progress;
    p.progress_user = &pc;
    p.preview_every = 1;
    size_t count = (size_t)l->batch * info->latent_channels * l->h * l->w;
    if (!(b->latents = malloc(count * sizeof *b->latents))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    p.latents_out = b->latents;
    SDW_TRY(sdw_pipeline_run(m, &p, NULL));
    SDW_TRY(sdw_cx_latent_out(b->latents, l->batch, l->h, l->w, info, out));
    /* ComfyUI's output is the input dict with new samples: the noise mask stays. */
    sdw_cv_latent *o = &(*out)->latent;
    if (l->noise_mask) {
        o->noise_mask = malloc((size_t)l->mask_h * l->mask_w * sizeof(float));
        if (!o->noise_mask) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        memcpy(o->noise_mask, l->noise_mask, (size_t)l->mask_h * l->mask_w * sizeof(float));
        o->mask_h = l->mask_h;
        o->mask_w = l->mask_w;
    }
    return SDW_OK;
}

static sdw_status sample_run(sdw_comfy_exec *x, const sdw_comfy_node *n, const sample_args *a,
                             const sdw_cv_latent *l, const step_plan *sp, sdw_cvalue **out)
{
    if (sp->first >= sp->last) return sdw_cx_latent_copy(l, &out[0]);
    run_buffers b = {0};
    sdw_status s = run(x, n, a, l, sp, &b, &out[0]);
    free_buffers(&b);
    if (s != SDW_OK) {
        sdw_cv_free(out[0]);
        out[0] = NULL;
    }
    return s;
}

static sdw_status sample(sdw_comfy_exec *x, const sdw_comfy_node *n, bool advanced, sdw_cvalue **out)
{
    const sdw_cvalue *model, *pos, *neg, *latent;
    SDW_TRY(sdw_cx_link(x, n, "model", SDW_CT_MODEL, &model));
    SDW_TRY(sdw_cx_link(x, n, "positive", SDW_CT_CONDITIONING, &pos));
    SDW_TRY(sdw_cx_link(x, n, "negative", SDW_CT_CONDITIONING, &neg));
    SDW_TRY(sdw_cx_link(x, n, "latent_image", SDW_CT_LATENT, &latent));
    step_plan sp = {0};
    SDW_TRY(plan_steps(n, advanced, &sp));
    const sample_args a = {&model->model, pos, neg, sdw_cx_str(n, "sampler_name"), sdw_cx_str(n, "scheduler"),
                           sdw_cx_num(n, advanced ? "noise_seed" : "seed", 0), sdw_cx_num(n, "cfg", 8.0)};
    return sample_run(x, n, &a, &latent->latent, &sp, out);
}

sdw_status sdw_node_ksampler(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    return sample(x, n, false, out);
}

sdw_status sdw_node_ksampler_advanced(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    return sample(x, n, true, out);
}

/* Whether some node reads output `slot` of node i. */
static bool output_read(const sdw_comfy_graph *g, int i, int slot)
{
    for (int k = 0; k < g->n_nodes; k++)
        for (int j = 0; j < SDW_COMFY_MAX_INPUTS && g->nodes[k].spec->inputs[j].name; j++) {
            const sdw_comfy_value *v = &g->nodes[k].in[j];
            if (v->present && v->is_link && v->link_node == i && v->link_slot == slot) return true;
        }
    return false;
}

static bool same_sampling(const sdw_comfy_model_spec *a, const sdw_comfy_model_spec *b)
{
    return !strcmp(a->path, b->path) && a->sampling_sd3 == b->sampling_sd3 && a->sampling_flux == b->sampling_flux &&
           a->sampling_shift == b->sampling_shift;
}

sdw_status sdw_node_sampler_custom_advanced(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const sdw_cvalue *noise, *guider, *sampler, *sigmas, *latent;
    SDW_TRY(sdw_cx_link(x, n, "noise", SDW_CT_NOISE, &noise));
    SDW_TRY(sdw_cx_link(x, n, "guider", SDW_CT_GUIDER, &guider));
    SDW_TRY(sdw_cx_link(x, n, "sampler", SDW_CT_SAMPLER, &sampler));
    SDW_TRY(sdw_cx_link(x, n, "sigmas", SDW_CT_SIGMAS, &sigmas));
    SDW_TRY(sdw_cx_link(x, n, "latent_image", SDW_CT_LATENT, &latent));
    if (output_read(x->g, (int)(n - x->g->nodes), 1))
        return sdw_fail(SDW_ERR_UNSUPPORTED, "denoised_output (the last step's x0) is not supported: link output "
                                             "instead");
    if (!same_sampling(&sigmas->sigmas.model, &guider->guider.model))
        return sdw_fail(SDW_ERR_UNSUPPORTED, "the sigmas' model (BasicScheduler) must be the guider's model file with "
                                             "the same model sampling (ModelSamplingSD3 / ModelSamplingFlux): the "
                                             "pipeline lays the schedule out with the model it runs");
    step_plan sp;
    SDW_TRY(plan_denoise(sigmas->sigmas.steps, sigmas->sigmas.denoise, &sp));
    sp.add_noise = noise->noise.add;
    /* BasicGuider has no negative conditioning: an empty list (cfg 1 never reads it). */
    static const sdw_cvalue no_cond = {.type = SDW_CT_CONDITIONING};
    const sample_args a = {&guider->guider.model, guider->guider.positive,
                           guider->guider.negative ? guider->guider.negative : &no_cond, sampler->sampler,
                           sigmas->sigmas.scheduler, noise->noise.seed, guider->guider.cfg};
    SDW_TRY(sample_run(x, n, &a, &latent->latent, &sp, out));
    /* denoised_output: nothing reads it (checked above); the slot holds the output again */
    return sdw_cx_latent_copy(&out[0]->latent, &out[1]);
}
