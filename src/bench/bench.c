/* bench.c: see bench.h. The order of a run:
 *   peaks (bf16, f32) on their own backends
 *   `repeat` pipeline runs: the sampling steps, timed between progress
 *     callbacks (the first step of the first run, which creates the
 *     primitives, is left out when another step was timed)
 *   text encode, denoiser evaluation, (ControlNet evaluation,) VAE decode,
 *     VAE encode, each `repeat` times, called directly, warm (the pipeline
 *     runs created their primitives; the encoder gets a warm-up run of its
 *     own when the pipeline did not use it, the denoiser always one)
 * Text encode and the evaluation go through the family's denoiser
 * (pipeline/denoiser.h: its prepare and predict), so every family the
 * pipeline runs is measured the same way, the UNets, FLUX and SD3 alike.
 * With a ControlNet the pipeline runs and the evaluation carry one unit of
 * it (pipeline/control.c runs it in the UNet denoiser's predict), and the
 * net alone is called directly with the inputs predict would give it.
 * Every timed input is random: AMX runs 2-4x faster on zeros. */
#include "bench/bench_internal.h"
#include "pipeline/denoiser.h"
#include "pipeline/pipeline.h"
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define STOCK_PROMPT "a photograph of an astronaut riding a horse, highly detailed"
#define STOCK_NEGATIVE "lowres, blurry, bad anatomy"

static void note(const sdw_bench_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const sdw_bench_opts *o, const char *fmt, ...)
{
    if (!o->note) return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    o->note(o->note_user, msg);
}

const char *sdw_bench_stage_name(sdw_bench_stage s)
{
    static const char *const names[SDW_BENCH_STAGES] = { "text_encode", "unet_eval",  "sampling_step",
                                                         "vae_decode",  "vae_encode", "controlnet_eval" };
    return (unsigned)s < SDW_BENCH_STAGES ? names[s] : "?";
}

const char *sdw_bench_stage_label(const sdw_bench_result *r, sdw_bench_stage s)
{
    static const char *const label[SDW_BENCH_STAGES] = { "text encode", "unet eval",  "sampling step",
                                                         "vae decode",  "vae encode", "controlnet eval" };
    if (s == SDW_BENCH_DENOISE && r->denoiser && strcmp(r->denoiser, "unet") != 0) return "transformer eval";
    return (unsigned)s < SDW_BENCH_STAGES ? label[s] : "?";
}

void sdw_bench_opts_init(sdw_bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 20;
    o->cfg_scale = 7.0f;
    o->repeat = 3;
    o->seed = 42;
}

/* ---------------------------------------------------------------- samples */

typedef struct {
    double *t, *f;
    int n, cap;
} samples;

static sdw_status samples_add(samples *s, double t, double f)
{
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        double *nt = realloc(s->t, (size_t)cap * sizeof *nt);
        if (!nt) return bench_nomem();
        s->t = nt;
        double *nf = realloc(s->f, (size_t)cap * sizeof *nf);
        if (!nf) return bench_nomem();
        s->f = nf;
        s->cap = cap;
    }
    s->t[s->n] = t;
    s->f[s->n++] = f;
    return SDW_OK;
}

static void samples_free(samples *s)
{
    free(s->t);
    free(s->f);
    memset(s, 0, sizeof *s);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    if (n <= 0) return 0;
    double *c = malloc((size_t)n * sizeof *c);
    if (!c) return v[0];
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_double);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

/* Median seconds and median FLOPs (the same every run of a stage). */
static void stage_finish(sdw_bench_stage_result *st, const samples *s, double peak)
{
    memset(st, 0, sizeof *st);
    if (s->n == 0) return;
    st->ran = true;
    st->samples = s->n;
    st->seconds = median(s->t, s->n);
    st->flops = median(s->f, s->n);
    st->min_seconds = s->t[0];
    for (int i = 1; i < s->n; i++)
        if (s->t[i] < st->min_seconds) st->min_seconds = s->t[i];
    st->tflops = st->seconds > 0 ? st->flops / st->seconds * 1e-12 : 0;
    st->pct_peak = peak > 0 ? 100.0 * st->tflops / peak : 0;
}

/* ---------------------------------------------------------------- stages */

typedef struct {
    sdw_backend *be;
    double t_ref, f_ref;
    bool have_ref;
    bool first_run;
    int step;
    samples warm, cold;   /* steps after primitives exist; the very first step */
    bench_probe *probe;    /* opts.paired: after each warm step, the host's speed over as long */
    samples *paired;
    double probe_seconds; /* spent in the probe, taken out of the pipeline's time */
    sdw_status err;
} step_timer;

static void on_observe(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape)
{
    (void)step;
    (void)x;
    (void)ndim;
    (void)shape;
    step_timer *t = user;
    if (!strcmp(name, "initial_latents")) {
        t->f_ref = sdw_backend_flops(t->be);
        t->t_ref = bench_now();
        t->have_ref = true;
        t->step = 0;
    }
}

static sdw_status on_progress(void *user, const sdw_progress *p)
{
    (void)p;
    step_timer *t = user;
    double tn = bench_now(), fn = sdw_backend_flops(t->be);
    if (t->have_ref && t->err == SDW_OK) {
        const bool cold = t->first_run && t->step == 0;
        const double dt = tn - t->t_ref, df = fn - t->f_ref;
        t->err = samples_add(cold ? &t->cold : &t->warm, dt, df);
        if (t->err == SDW_OK && t->probe && t->probe->be && !cold) {
            double host;
            t->err = bench_probe_run(t->probe, dt, &host);
            if (t->err == SDW_OK) t->err = samples_add(t->paired, df / dt * 1e-12 / host, host);
            t->probe_seconds += bench_now() - tn;
        }
    }
    t->step++;
    t->f_ref = sdw_backend_flops(t->be);
    t->t_ref = bench_now();
    return t->err;
}

typedef struct {
    sdw_model *m;
    const sdw_bench_opts *o;
    sdw_bench_result *r;
    const char *prompt, *negative;
    samples s[SDW_BENCH_STAGES];
    sdw_op_stats ops[SDW_BENCH_STAGES];
    sdw_op_shape shapes[SDW_BENCH_STAGES][SDW_BENCH_MAX_SHAPES];
    int n_shapes[SDW_BENCH_STAGES];
    samples pipe;
    bench_probe probe;                /* opts.paired: open while the stages run */
    samples paired[SDW_BENCH_STAGES]; /* per run: its TFLOP/s over the probe's (t), the probe's TFLOP/s (f) */
    /* The denoiser's run state, as sdw_pipeline_run sets it up for one
     * latent: prepared again for every timed text encode, then once more
     * for the evaluations. */
    sdw_pipeline_params dp;
    sdw_run run;
    sdw_arena arena;
    float *x, *out, *img, *lat, *moments, *mask_lat, *masked_lat;
    /* opts.control: the unit the pipeline runs and the evaluations carry,
     * and the net's own inputs for SDW_BENCH_CONTROL (cn_res: every
     * residual buffer, which the net adds into). */
    sdw_control_unit unit;
    float *cn_image, *cn_x, *cn_ctx, *cn_y, *cn_hint, *cn_res;
    float cn_t[2];
    float *cn_down[SDW_CONTROLNET_MAX_RES], *cn_mid;
    float cn_scales[SDW_CONTROLNET_MAX_RES + 1];
    sdw_unet_input cn_in;
} bench;

static sdw_status run_pipelines(bench *b)
{
    sdw_model *m = b->m;
    sdw_bench_result *r = b->r;
    int H = r->height, W = r->width;
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = b->prompt;
    p.negative_prompt = b->negative;
    p.width = W;
    p.height = H;
    p.steps = r->steps;
    p.cfg_scale = r->cfg_scale;
    p.seed = b->o->seed;
    /* The family's own sampler and schedule (SD: euler_a normal; FLUX: euler on its flow schedule). */
    sdw_sampler_parse(m->info.default_sampler, &p.sampler);
    sdw_schedule_parse(m->info.default_scheduler, &p.schedule);
    step_timer t = { .be = m->be, .first_run = true, .probe = &b->probe, .paired = &b->paired[SDW_BENCH_STEP] };
    p.progress = on_progress;
    p.progress_user = &t;
    p.observe = on_observe;
    p.observe_user = &t;
    if (b->o->control) {
        p.controls = &b->unit;
        p.n_controls = 1;
    }
    float *images = malloc((size_t)H * W * 3 * sizeof *images);
    float *init = NULL, *mask = NULL;
    sdw_status s = images ? SDW_OK : bench_nomem();
    if (s == SDW_OK && m->info.inpaint) {
        /* A 9-channel model needs an image and a mask: random, left half repainted. */
        init = bench_random_floats((size_t)H * W * 3, 7, 0.0f, 1.0f);
        mask = malloc((size_t)H * W * sizeof *mask);
        if (!init || !mask) s = bench_nomem();
        for (int i = 0; s == SDW_OK && i < H; i++)
            for (int j = 0; j < W; j++) mask[(size_t)i * W + j] = j < W / 2 ? 1.0f : 0.0f;
        p.init_image = init;
        p.mask = mask;
        p.strength = 1.0f;
    }
    for (int i = 0; i < r->repeat && s == SDW_OK; i++) {
        note(b->o, "pipeline run %d/%d: %d steps", i + 1, r->repeat, r->steps);
        t.have_ref = false;
        t.first_run = i == 0;
        double f0 = sdw_backend_flops(m->be), t0 = bench_now();
        t.probe_seconds = 0;
        s = sdw_pipeline_run(m, &p, images);
        if (s == SDW_OK) s = t.err;
        if (s == SDW_OK) s = samples_add(&b->pipe, bench_now() - t0 - t.probe_seconds, sdw_backend_flops(m->be) - f0);
    }
    if (s == SDW_OK) {
        /* The first step creates the UNet's primitives: keep it only if nothing else was timed. */
        samples *use = t.warm.n ? &t.warm : &t.cold;
        for (int i = 0; i < use->n && s == SDW_OK; i++) s = samples_add(&b->s[SDW_BENCH_STEP], use->t[i], use->f[i]);
    }
    samples_free(&t.warm);
    samples_free(&t.cold);
    free(images);
    free(init);
    free(mask);
    return s;
}

/* Times fn(b) `repeat` times (after `warmups` untimed calls), with the FLOPs
 * the backend counted during each, into stage st. */
typedef sdw_status (*stage_fn)(bench *b);

static sdw_status time_stage(bench *b, sdw_bench_stage st, stage_fn fn, int warmups)
{
    sdw_backend *be = b->m->be;
    for (int i = 0; i < warmups; i++) SDW_TRY(fn(b));
    const bool shapes = b->o->shapes && (st == SDW_BENCH_DENOISE || st == SDW_BENCH_DECODE || st == SDW_BENCH_CONTROL);
    for (int i = 0; i < b->r->repeat; i++) {
        sdw_op_stats o0, o1;
        if (shapes && i == b->r->repeat - 1) SDW_TRY(sdw_backend_track_shapes(be, true));
        sdw_backend_op_stats(be, &o0);
        double f0 = sdw_backend_flops(be), t0 = bench_now();
        SDW_TRY(fn(b));
        double t = bench_now() - t0;
        if (shapes && i == b->r->repeat - 1) {
            b->n_shapes[st] = sdw_backend_shapes(be, b->shapes[st], SDW_BENCH_MAX_SHAPES);
            SDW_TRY(sdw_backend_track_shapes(be, false));
        }
        const double flops = sdw_backend_flops(be) - f0;
        SDW_TRY(samples_add(&b->s[st], t, flops));
        if (b->probe.be) {
            /* The host's speed now, over as long as the run took. */
            double host;
            SDW_TRY(bench_probe_run(&b->probe, t, &host));
            SDW_TRY(samples_add(&b->paired[st], flops / t * 1e-12 / host, host));
        }
        sdw_backend_op_stats(be, &o1);
        for (int k = 0; k < SDW_OPK_COUNT; k++) {
            b->ops[st].seconds[k] = o1.seconds[k] - o0.seconds[k];
            b->ops[st].flops[k] = o1.flops[k] - o0.flops[k];
            b->ops[st].calls[k] = o1.calls[k] - o0.calls[k];
        }
    }
    return SDW_OK;
}

/* The run sdw_pipeline_run would set up for one txt2img latent of this size. */
static void run_init(bench *b)
{
    sdw_model *m = b->m;
    sdw_pipeline_params_init(&b->dp);
    b->dp.prompt = b->prompt;
    b->dp.negative_prompt = b->negative;
    b->dp.width = b->r->width;
    b->dp.height = b->r->height;
    b->dp.steps = b->r->steps;
    b->dp.cfg_scale = b->r->cfg_scale;
    sdw_run *r = &b->run;
    memset(r, 0, sizeof *r);
    r->m = m;
    r->p = &b->dp;
    r->B = 1;
    r->h = b->r->height / 8;
    r->w = b->r->width / 8;
    r->lc = sdw_vae_get_config(m->vae)->latent_channels;
    r->cfg = b->r->cfg_scale > 1.0f;
    /* as sdw_pipeline_run picks */
    r->ops = m->flux ? &sdw_flux_denoiser : m->mmdit ? &sdw_sd3_denoiser : &sdw_unet_denoiser;
    r->mask_lat = b->mask_lat;
    r->masked_lat = b->masked_lat;
}

/* The prompts through the text encoder(s) into the denoiser's conditioning. */
static sdw_status text_once(bench *b)
{
    sdw_status s = b->run.ops->prepare(&b->run);
    b->run.ops->release(&b->run);
    return s;
}

/* One guided evaluation at t = 500 (FLUX, SD3: sigma 0.5) on random latents. */
static sdw_status denoise_once(bench *b) { return b->run.ops->predict(&b->run, b->x, 500.0f, b->out); }

static sdw_status decode_once(bench *b)
{
    sdw_arena_reset(&b->arena);
    return sdw_vae_decode(b->m->be, &b->arena, b->m->vae, b->lat, 1, b->r->height / 8, b->r->width / 8, b->img);
}

static sdw_status encode_once(bench *b)
{
    sdw_arena_reset(&b->arena);
    return sdw_vae_encode(b->m->be, &b->arena, b->m->vae, b->img, 1, b->r->height, b->r->width, b->moments);
}

/* One evaluation of the ControlNet alone, as the UNet denoiser's predict runs it. */
static sdw_status control_once(bench *b)
{
    sdw_arena_reset(&b->arena);
    return sdw_controlnet_forward(b->m->be, &b->arena, b->o->control, &b->cn_in, b->cn_hint, b->cn_scales, b->cn_down,
                                  b->cn_mid);
}

/* The evaluation's inputs: the prompts' conditioning (kept in b->run),
 * random latents and, for a 9-channel inpainting UNet, a random mask and
 * masked-image latents; with a ControlNet, its unit (the text encode was
 * timed without it: the unit's buffers are the evaluation's). */
static sdw_status prepare_denoiser(bench *b)
{
    const sdw_run *r = &b->run;
    if (b->o->control) {
        b->dp.controls = &b->unit;
        b->dp.n_controls = 1;
    }
    size_t hw = (size_t)r->h * r->w, n = (size_t)r->lc * hw;
    b->x = bench_random_floats(n, 11, -1.0f, 1.0f);
    b->out = malloc(n * sizeof(float));
    if (!b->x || !b->out) return bench_nomem();
    return b->run.ops->prepare(&b->run);
}

/* What the UNet denoiser's predict hands the net: the denoiser's batch of
 * 4-channel latents (random), one timestep, 77 tokens of text context (and
 * SDXL's added conditioning; random too), the unit's control image for
 * every row (the rows share it, so the hint encoder runs once, as in the
 * pipeline), scale 1 for every residual, and residual buffers to add into. */
static sdw_status prepare_control(bench *b)
{
    const sdw_controlnet *cn = b->o->control;
    const sdw_unet_config *c = &sdw_controlnet_get_info(cn)->unet;
    const int N = b->r->denoiser_batch, h = b->r->height / 8, w = b->r->width / 8;
    int hwc[SDW_CONTROLNET_MAX_RES + 1][3];
    const int n = sdw_controlnet_residual_shapes(cn, h, w, hwc);
    size_t total = 0;
    for (int k = 0; k <= n; k++) total += (size_t)N * hwc[k][0] * hwc[k][1] * hwc[k][2];
    const size_t px = (size_t)b->r->height * b->r->width * 3;
    b->cn_x = bench_random_floats((size_t)N * h * w * 4, 21, -1.0f, 1.0f);
    b->cn_ctx = bench_random_floats((size_t)N * SDW_CLIP_CONTEXT * c->context_dim, 22, -1.0f, 1.0f);
    b->cn_y = c->adm_in ? bench_random_floats((size_t)N * c->adm_in, 23, -1.0f, 1.0f) : NULL;
    b->cn_res = bench_random_floats(total, 24, -1.0f, 1.0f);
    b->cn_hint = malloc(px * N * sizeof(float));
    if (!b->cn_x || !b->cn_ctx || (c->adm_in && !b->cn_y) || !b->cn_res || !b->cn_hint) return bench_nomem();
    for (int i = 0; i < N; i++) {
        memcpy(b->cn_hint + i * px, b->cn_image, px * sizeof(float));
        b->cn_t[i] = 500.0f;
    }
    float *at = b->cn_res;
    for (int k = 0; k <= n; k++) {
        if (k < n) b->cn_down[k] = at;
        else b->cn_mid = at;
        b->cn_scales[k] = 1.0f;
        at += (size_t)N * hwc[k][0] * hwc[k][1] * hwc[k][2];
    }
    b->cn_in = (sdw_unet_input){ .x = b->cn_x, .N = N, .H = h, .W = w, .timesteps = b->cn_t, .context = b->cn_ctx,
                                 .n_ctx = SDW_CLIP_CONTEXT, .y = b->cn_y };
    return SDW_OK;
}

/* The unit every timed pipeline run and evaluation carries: a random
 * control image at the generation size, scale 1 from the first step to the
 * last, balanced (the net runs on the whole CFG batch). */
static sdw_status control_unit(bench *b)
{
    b->cn_image = bench_random_floats((size_t)b->r->height * b->r->width * 3, 20, 0.0f, 1.0f);
    if (!b->cn_image) return bench_nomem();
    b->unit = (sdw_control_unit){ .net = b->o->control, .image = b->cn_image, .scale = 1.0f, .start = 0.0f,
                                  .end = 1.0f, .mode = SDW_CONTROL_BALANCED };
    return SDW_OK;
}

static size_t peak_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024;   /* KiB on Linux */
}

static void image_estimate(sdw_bench_result *r, int steps, sdw_bench_image *im)
{
    const sdw_bench_stage_result *t = &r->stage[SDW_BENCH_TEXT], *st = &r->stage[SDW_BENCH_STEP],
                                 *d = &r->stage[SDW_BENCH_DECODE];
    im->steps = steps;
    im->seconds = t->seconds + steps * st->seconds + d->seconds;
    im->flops = t->flops + steps * st->flops + d->flops;
    im->seconds_at_peak = r->peak_tflops > 0 ? im->flops / (r->peak_tflops * 1e12) : 0;
    im->x_peak = im->seconds_at_peak > 0 ? im->seconds / im->seconds_at_peak : 0;
    im->seconds_at_host = 0;
    im->x_host = 0;
    if (t->host_tflops > 0 && st->host_tflops > 0 && d->host_tflops > 0) {
        im->seconds_at_host = (t->flops / t->host_tflops + steps * st->flops / st->host_tflops +
                               d->flops / d->host_tflops) * 1e-12;
        im->x_host = im->seconds / im->seconds_at_host;
    }
}

static sdw_status bench_stages(bench *b)
{
    sdw_model *m = b->m;
    sdw_bench_result *r = b->r;
    int h = r->height / 8, w = r->width / 8, lc = sdw_vae_get_config(m->vae)->latent_channels;
    if (m->info.inpaint) {
        /* A 9-channel UNet's extra inputs, random like the rest. */
        b->mask_lat = bench_random_floats((size_t)h * w, 15, 0.0f, 1.0f);
        b->masked_lat = bench_random_floats((size_t)h * w * lc, 16, -1.0f, 1.0f);
        if (!b->mask_lat || !b->masked_lat) return bench_nomem();
    }
    if (b->o->control) SDW_TRY(control_unit(b));
    run_init(b);
    SDW_TRY(run_pipelines(b));
    /* The stages run in the arena the pipeline runs left with the model
     * (sdw_pipeline_run), as a worker's next image does: one chunk, its
     * pages in memory. Else each stage's first runs would time the kernel
     * faulting fresh pages in, twice (the arena grows, then becomes one
     * chunk), and the median of three would be one of them. */
    b->run.arena = m->kept;
    m->kept = (sdw_arena){ 0 };

    note(b->o, "text encode x %d", r->repeat);
    SDW_TRY(time_stage(b, SDW_BENCH_TEXT, text_once, 0));

    SDW_TRY(prepare_denoiser(b));
    if (m->flux) {
        const int n_img = (h / 2) * (w / 2);
        r->denoiser_flops_analytic =
            r->denoiser_batch * sdw_bench_flux_flops(sdw_flux_get_config(m->flux), n_img, m->info.t5_max_length);
    } else if (m->mmdit) {
        const sdw_mmdit_config *c = sdw_mmdit_get_config(m->mmdit);
        const int n_img = (h / c->patch) * (w / c->patch);
        r->denoiser_flops_analytic =
            r->denoiser_batch * sdw_bench_sd3_flops(c, n_img, sdw_bench_sd3_context(m->info.t5_max_length));
    } else {
        r->denoiser_flops_analytic = sdw_bench_unet_flops(sdw_unet_get_config(m->unet), r->denoiser_batch, h, w,
                                                          SDW_CLIP_CONTEXT);
    }
    note(b->o, "%s evaluation (%d latent%s) x %d", m->info.denoiser, r->denoiser_batch,
         r->denoiser_batch > 1 ? "s" : "", r->repeat);
    /* One untimed call, so that every timed one is a sampling step's after
     * the image's first: the UNet projects the context's K and V at its
     * first evaluation and keeps them for the others; a FLUX or SD3
     * transformer whose mapped weights went back to the system while the
     * text was encoded (page_out) faults them in again at its first (a
     * Q8_0 FLUX's 12.6 GB: a first evaluation took 2-4 s longer than the
     * next on a 2-core Zen 5). */
    SDW_TRY(time_stage(b, SDW_BENCH_DENOISE, denoise_once, 1));
    b->run.ops->release(&b->run);
    sdw_arena_free(&b->arena); /* the ControlNet's and the VAE's stages take it over */
    b->arena = b->run.arena;
    b->run.arena = (sdw_arena){ 0 };
    free(b->x);
    free(b->out);
    b->x = b->out = NULL;
    if (b->o->control) {
        SDW_TRY(prepare_control(b));
        note(b->o, "ControlNet evaluation (%d latent%s) x %d", r->denoiser_batch, r->denoiser_batch > 1 ? "s" : "",
             r->repeat);
        SDW_TRY(time_stage(b, SDW_BENCH_CONTROL, control_once, 0));
    }

    b->lat = bench_random_floats((size_t)h * w * lc, 12, -4.0f, 4.0f);
    b->img = bench_random_floats((size_t)r->height * r->width * 3, 13, -1.0f, 1.0f);
    b->moments = malloc((size_t)h * w * 2 * lc * sizeof(float));
    if (!b->lat || !b->img || !b->moments) return bench_nomem();
    note(b->o, "VAE decode x %d", r->repeat);
    SDW_TRY(time_stage(b, SDW_BENCH_DECODE, decode_once, 0));
    bench_fill_random(b->img, (size_t)r->height * r->width * 3, 14, -1.0f, 1.0f);
    if (sdw_vae_has_encoder(m->vae)) {
        note(b->o, "VAE encode x %d", r->repeat);
        /* An inpainting pipeline run already encoded an image of this size. */
        SDW_TRY(time_stage(b, SDW_BENCH_ENCODE, encode_once, m->info.inpaint ? 0 : 1));
    }
    return SDW_OK;
}

/* The net must be for m's UNet; named as the caller named it. */
static sdw_status check_control(const sdw_model *m, const sdw_bench_opts *o)
{
    const char *name = o->control_name ? o->control_name : "the ControlNet";
    if (!m->unet)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "bench: %s: a ControlNet works with SD1, SD2 and SDXL models, not %s",
                        name, sdw_family_name(m->info.family));
    return sdw_controlnet_check_base(o->control, sdw_unet_get_config(m->unet), name);
}

sdw_status sdw_bench_run(sdw_model *m, const sdw_bench_opts *o, sdw_bench_result *r)
{
    memset(r, 0, sizeof *r);
    const sdw_model_info *mi = &m->info;
    r->precision = sdw_backend_precision(m->be);
    r->isa = sdw_cpu_isa_name();
    sdw_bench_host(r->host, sizeof r->host);
    r->threads = omp_get_max_threads();
    r->width = o->width ? o->width : mi->default_width;
    r->height = o->height ? o->height : mi->default_height;
    r->steps = o->steps;
    r->repeat = o->repeat;
    r->cfg_scale = o->cfg_scale;
    r->denoiser = mi->denoiser ? mi->denoiser : "unet";
    r->denoiser_batch = o->cfg_scale > 1.0f ? 2 : 1;
    r->weight_bytes = mi->weight_bytes;
    if (o->control) SDW_TRY(check_control(m, o));
    if (r->steps < 1 || r->repeat < 1)
        return sdw_fail(SDW_ERR_INVALID_ARG, "bench: steps and repeat must be at least 1 (got %d, %d)", r->steps,
                        r->repeat);
    /* The UNet halves the latent n_levels - 1 times; FLUX packs 2x2 latent patches. */
    int mult = m->unet ? 8 << (sdw_unet_get_config(m->unet)->n_levels - 1)
                       : (mi->size_multiple > 8 ? mi->size_multiple : 8);
    if (r->width < mult || r->height < mult || r->width % mult || r->height % mult)
        return sdw_fail(SDW_ERR_INVALID_ARG, "bench: width and height must be multiples of %d (got %dx%d)", mult,
                        r->width, r->height);

    if (o->peak_bf16 && o->peak_f32) {
        r->peak_bf16 = *o->peak_bf16;
        r->peak_f32 = *o->peak_f32;
    } else {
        note(o, "measuring the bf16 and f32 peaks");
        SDW_TRY(sdw_bench_measure_peak(SDW_PRECISION_BF16, o->peak_runs, &r->peak_bf16));
        SDW_TRY(sdw_bench_measure_peak(SDW_PRECISION_F32, o->peak_runs, &r->peak_f32));
    }
    r->peak_tflops = r->precision == SDW_PRECISION_BF16 ? r->peak_bf16.tflops : r->peak_f32.tflops;

    sdw_backend_set_winograd(m->be, !o->no_winograd);
    bench b = { .m = m, .o = o, .r = r };
    b.prompt = o->prompt ? o->prompt : STOCK_PROMPT;
    b.negative = o->negative_prompt ? o->negative_prompt : STOCK_NEGATIVE;
    sdw_status s = o->paired ? bench_probe_open(&b.probe, r->precision) : SDW_OK;
    if (s == SDW_OK) s = bench_stages(&b);
    bench_probe_close(&b.probe);
    if (s == SDW_OK && !(o->peak_bf16 && o->peak_f32)) {
        /* Once more after the stages, keeping the better: on a shared host
         * the speed drifts, and a peak caught in a slow minute would flatter
         * every percentage. */
        note(o, "measuring the peaks again");
        sdw_bench_peak again;
        s = sdw_bench_measure_peak(SDW_PRECISION_BF16, o->peak_runs, &again);
        if (s == SDW_OK) bench_keep_better(&r->peak_bf16, &again);
        if (s == SDW_OK) s = sdw_bench_measure_peak(SDW_PRECISION_F32, o->peak_runs, &again);
        if (s == SDW_OK) bench_keep_better(&r->peak_f32, &again);
        r->peak_tflops = r->precision == SDW_PRECISION_BF16 ? r->peak_bf16.tflops : r->peak_f32.tflops;
    }
    if (s == SDW_OK && o->sustained_seconds > 0) {
        note(o, "measuring the sustained convolution speed");
        s = sdw_bench_measure_sustained(r->precision, o->sustained_seconds, &r->sustained_tflops);
    }
    if (s == SDW_OK) {
        for (int i = 0; i < SDW_BENCH_STAGES; i++) {
            stage_finish(&r->stage[i], &b.s[i], r->peak_tflops);
            if (r->sustained_tflops > 0) r->stage[i].pct_sustained = 100.0 * r->stage[i].tflops / r->sustained_tflops;
            if (b.paired[i].n) {
                r->stage[i].pct_paired = 100.0 * median(b.paired[i].t, b.paired[i].n);
                r->stage[i].host_tflops = median(b.paired[i].f, b.paired[i].n);
            }
            r->stage[i].ops = b.ops[i];
            memcpy(r->stage[i].shapes, b.shapes[i], sizeof b.shapes[i]);
            r->stage[i].n_shapes = b.n_shapes[i];
        }
        const sdw_bench_stage_result *cn = &r->stage[SDW_BENCH_CONTROL], *step = &r->stage[SDW_BENCH_STEP];
        if (cn->ran && step->seconds > 0) r->control_share = cn->seconds / step->seconds;
        r->pipeline_seconds = median(b.pipe.t, b.pipe.n);
        image_estimate(r, r->steps, &r->image);
        image_estimate(r, 20, &r->image20);
        r->peak_rss_bytes = peak_rss();
        r->weight_bytes_after = sdw_model_held_bytes(m);
    }
    for (int i = 0; i < SDW_BENCH_STAGES; i++) {
        samples_free(&b.s[i]);
        samples_free(&b.paired[i]);
    }
    samples_free(&b.pipe);
    if (b.run.ops) b.run.ops->release(&b.run);
    sdw_arena_free(&b.run.arena);
    sdw_arena_free(&b.arena);
    free(b.mask_lat);
    free(b.masked_lat);
    free(b.x);
    free(b.out);
    free(b.img);
    free(b.lat);
    free(b.moments);
    free(b.cn_image);
    free(b.cn_x);
    free(b.cn_ctx);
    free(b.cn_y);
    free(b.cn_hint);
    free(b.cn_res);
    sdw_backend_set_winograd(m->be, true);   /* the model's default again */
    return s;
}
