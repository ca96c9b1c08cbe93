/* cmd_bench.c: `sd-worker bench`: loads a model (-m, with FLUX's and SD3's
 * parts by --vae / --clip-l / --clip-g / --t5xxl) or the full-size random-weight model of a
 * family (--family, written once by the project's tool), measures the bf16
 * and f32 peaks of this machine, then times the stages of txt2img
 * (src/bench/bench.c) and prints them as a table, or as one JSON object
 * with --json. --control adds a ControlNet (a file, or the family's
 * full-size random one) to the steps and evaluations, and times it alone. */
#include "cli/bench_model.h"
#include "cli/commands.h"
#include "cli/cli_args.h"
#include "bench/bench.h"
#include "models/controlnet.h"
#include "models/model.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WHO "sd-worker bench"

typedef struct {
    const char *model, *family, *prompt, *negative, *vae, *clip_l, *clip_g, *t5xxl;
    const char *control;    /* a ControlNet file, "auto" (the family's full-size one) or NULL */
    int width, height, steps, repeat, threads;
    float cfg, sustained;   /* cfg NAN: the family's (7 for SD, FLUX's 1, SD3's 7) */
    sdw_precision precision;
    bench_weights weights;
    sdw_weight_type weight_type;
    bool json, verbose, no_winograd, shapes, paired;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sd-worker bench [--family sd15|sd15-inpaint|sd2|sdxl|flux-schnell|flux-dev|\n"
            "    sd3-medium|sd35-medium|sd35-large | -m MODEL]\n"
            "    [-W 512 -H 512] [--steps 20] [--cfg-scale 7] [--precision auto|f32|bf16] [--repeat 3]\n"
            "    [--threads N] [--sustained 3] [--paired] [--no-winograd] [--shapes] [-p PROMPT] [-n NEGATIVE]\n"
            "    [--weights q8_0|bf16|f16] [--vae FILE] [--clip-l FILE] [--clip-g FILE] [--t5xxl FILE]\n"
            "    [--control FILE|auto] [--json] [-v]\n"
            "    [--weight-type keep|f32|bf16|q8_0|q5_1|q5_0|q4_1|q4_0] (large linear layers held as)\n"
            "Times text encode, one denoiser evaluation (UNet; FLUX, SD3: transformer) as an image's\n"
            "steps after the first run it (a UNet projects the text context's keys and values once per\n"
            "image), one sampling step, VAE decode and VAE encode (median of --repeat runs), with the\n"
            "FLOPs the backend ran,\n"
            "the TFLOP/s achieved and the %% of this machine's peak (bf16 / f32 conv and matmul,\n"
            "measured in the same run: best single call), and of the peak convolution's speed run\n"
            "back to back for\n"
            "--sustained seconds after the stages (0 skips it): on a host whose speed drifts,\n"
            "whether the peak came from a short fast spell.\n"
            "--paired runs the peak conv after each timed run of a stage (and each sampling step,\n"
            "its time left out of the pipeline's) for as long as the run took, and gives each\n"
            "stage's median %% of that (\"%% paired\"): the host's speed next to the run, where it\n"
            "changes from one second to the next; the image estimates are given at those speeds too.\n"
            "--no-winograd runs every f32 conv direct (for A/B runs; the peaks are always direct).\n"
            "--shapes lists the denoiser's and the VAE decode's slowest ops by shape and kernel.\n"
            "--control FILE|auto: a ControlNet for the model's UNet (SD1, SD2, SDXL) in every timed\n"
            "pipeline run and denoiser evaluation (one unit: a random control image, scale 1 at every\n"
            "step, balanced), so the unet eval and the sampling step include it, and one more stage,\n"
            "controlnet eval, times the net alone at the denoiser's batch, with its share of the step;\n"
            "auto (--family sd15, sd15-inpaint, sdxl) writes the family's full-size random ControlNet\n"
            "(tools/fullsize/CONTROLNET.md) beside the model once and uses it.\n"
            "--family uses a full-size model with random weights (default sd15), written once by\n"
            "tools/fullsize/sdw-make-fullsize into fullsize/ next to sd-worker ($SDW_FULLSIZE_DIR).\n"
            "FLUX (flux-schnell, flux-dev, or -m a FLUX transformer with --vae ae.safetensors\n"
            "--clip-l clip_l.safetensors --t5xxl t5xxl_*.safetensors): text encode is T5-XXL +\n"
            "CLIP-L; defaults are the model's: 1024x1024, cfg 1 (one pass a step; > 1 is true CFG,\n"
            "two), 4 steps (schnell) / 28 (dev), guidance 3.5 (dev). --family flux-* writes the\n"
            "transformer as a Q8_0 GGUF (city96's layout, ~12.7 GB) or, with --weights bf16, as\n"
            "BFL's BF16 safetensors (~23.8 GB), plus ae (F32), clip_l (F16) and T5-XXL in fp8 (~4.8 GB).\n"
            "SD3 / SD3.5 (sd3-medium, sd35-medium, sd35-large, or -m an SD3 single file or MMDiT with\n"
            "--clip-l clip_l.safetensors --clip-g clip_g.safetensors --t5xxl t5xxl_*.safetensors, and\n"
            "--vae for a file without one): text encode is CLIP-L + CLIP-G + T5-XXL (256 tokens);\n"
            "defaults are the model's: 1024x1024, 28 steps, cfg 7 (two passes a step). --family sd3*\n"
            "writes the MMDiT as a Q8_0 GGUF (city96's layout: 2.3 / 2.9 / 8.8 GB) with the VAE\n"
            "(F16) beside it or, with --weights f16|bf16, as Stability's single file with the VAE\n"
            "(SD3-medium F16 4.3 GB, SD3.5 BF16 5.1 / 16.5 GB), plus clip_l, clip_g (F16) and\n"
            "FLUX's T5-XXL fp8 file (the same encoder).\n");
}

static int bad(const char *fmt, const char *v)
{
    fprintf(stderr, WHO ": ");
    fprintf(stderr, fmt, v);
    fprintf(stderr, " (sd-worker bench --help)\n");
    return 2;
}

/* An int option within [lo, hi]. */
static bool int_opt(const char *s, long long lo, long long hi, int *out)
{
    long long v;
    if (!cli_parse_int(s, lo, hi, &v)) return false;
    *out = (int)v;
    return true;
}

static int parse(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->repeat = 3;
    o->cfg = NAN;
    o->sustained = 3.0f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define IS(s) (!strcmp(a, s))
        if (IS("-h") || IS("--help")) { usage(stdout); exit(0); }
        if (IS("--json")) { o->json = true; continue; }
        if (IS("-v") || IS("--verbose")) { o->verbose = true; continue; }
        if (IS("--no-winograd")) { o->no_winograd = true; continue; }
        if (IS("--shapes")) { o->shapes = true; continue; }
        if (IS("--paired")) { o->paired = true; continue; }
        if (!v) return bad("option %s needs a value", a);
        i++;
        if (IS("-m") || IS("--model")) o->model = v;
        else if (IS("--family")) o->family = v;
        else if (IS("-p") || IS("--prompt")) o->prompt = v;
        else if (IS("--vae")) o->vae = v;
        else if (IS("--clip-l")) o->clip_l = v;
        else if (IS("--clip-g")) o->clip_g = v;
        else if (IS("--t5xxl") || IS("--t5")) o->t5xxl = v;
        else if (IS("--control")) o->control = v;
        else if (IS("--weight-type")) {
            if (sdw_weight_type_parse(v, &o->weight_type) != SDW_OK) return bad("%s", sdw_last_error());
        } else if (IS("--weights")) {
            if (!strcmp(v, "q8_0") || !strcmp(v, "Q8_0")) o->weights = BENCH_WEIGHTS_Q8_0;
            else if (!strcmp(v, "bf16") || !strcmp(v, "BF16") || !strcmp(v, "f16") || !strcmp(v, "F16"))
                o->weights = BENCH_WEIGHTS_16BIT;   /* the family's 16-bit file, whichever of the two it is */
            else return bad("--weights must be q8_0, bf16 or f16, not '%s'", v);
        }
        else if (IS("-n") || IS("--negative-prompt")) o->negative = v;
        else if (IS("-W") || IS("--width")) { if (!int_opt(v, 8, 8192, &o->width)) return bad("bad width '%s'", v); }
        else if (IS("-H") || IS("--height")) { if (!int_opt(v, 8, 8192, &o->height)) return bad("bad height '%s'", v); }
        else if (IS("--steps")) { if (!int_opt(v, 1, 1000, &o->steps)) return bad("--steps must be in 1..1000, not '%s'", v); }
        else if (IS("--repeat")) { if (!int_opt(v, 1, 1000, &o->repeat)) return bad("--repeat must be in 1..1000, not '%s'", v); }
        else if (IS("--threads")) { if (!int_opt(v, 1, 1024, &o->threads)) return bad("bad --threads '%s'", v); }
        else if (IS("--cfg-scale")) { if (!cli_parse_float(v, 0, 100, &o->cfg)) return bad("--cfg-scale must be in 0..100, not '%s'", v); }
        else if (IS("--sustained")) { if (!cli_parse_float(v, 0, 600, &o->sustained)) return bad("--sustained must be in 0..600 seconds, not '%s'", v); }
        else if (IS("--precision")) { if (!cli_parse_precision(v, &o->precision)) return bad("--precision must be auto, f32 or bf16, not '%s'", v); }
        else return bad("unknown option '%s'", a);
#undef IS
    }
    if (o->model && o->family) return bad("give --family or -m, not both%s", "");
    if (!o->model && !o->family) o->family = "sd15";
    if (o->family && !bench_family_find(o->family))
        return bad("--family must be sd15, sd15-inpaint, sd2, sdxl, flux-schnell, flux-dev, sd3-medium, sd35-medium "
                   "or sd35-large, not '%s'", o->family);
    if (o->family && (o->vae || o->clip_l || o->clip_g || o->t5xxl))
        return bad("--vae, --clip-l, --clip-g and --t5xxl go with -m MODEL; --family %s brings its own", o->family);
    if (o->control && !strcmp(o->control, "auto")) {
        if (!o->family) return bad("--control auto goes with --family; with -m MODEL give a ControlNet file%s", "");
        if (!bench_family_find(o->family)->control)
            return bad("--control auto: there is a full-size ControlNet for sd15, sd15-inpaint and sdxl, not %s "
                       "(give a ControlNet file)", o->family);
    }
    return 0;
}

static void note_stderr(void *user, const char *msg)
{
    (void)user;
    fprintf(stderr, WHO ": %s\n", msg);
}

/* The slowest ops of a stage by shape, down to 1% of the stage's time. */
static void print_shapes(const char *stage, const sdw_bench_stage_result *s)
{
    printf("\n%s, last run, by shape (conv N HxW cin->cout kernel/stride; matmul M in->out;\n"
           "attention B Tq x Tk heads x head_dim):\n", stage);
    printf("  %-40s %5s %8s %8s %6s  %s\n", "op", "calls", "seconds", "TFLOP/s", "%", "kernel");
    int shown = 0;
    for (int i = 0; i < s->n_shapes && i < SDW_BENCH_MAX_SHAPES; i++) {
        const sdw_op_shape *e = &s->shapes[i];
        const int *d = e->dims;
        if (e->seconds < 0.01 * s->seconds && shown >= 5) break;
        char what[64];
        if (e->kind == SDW_OPK_CONV)
            snprintf(what, sizeof what, "conv N%d %dx%d %d->%d %dx%d/%d", d[0], d[1], d[2], d[3], d[4], d[5], d[5], d[6]);
        else if (e->kind == SDW_OPK_LINEAR)
            snprintf(what, sizeof what, "matmul M%d %d->%d", d[0], d[1], d[2]);
        else
            snprintf(what, sizeof what, "attention B%d %dx%d %dx%d%s", d[0], d[1], d[2], d[3], d[4], d[5] ? " causal" : "");
        printf("  %-40s %5ld %8.3f %8.3f %6.1f  %s\n", what, e->calls, e->seconds,
               e->seconds > 0 ? e->flops / e->seconds * 1e-12 : 0, 100.0 * e->seconds / s->seconds,
               e->path ? e->path : "?");
        shown++;
    }
    if (s->n_shapes > shown) printf("  ... %d more shapes\n", s->n_shapes - shown);
}

static void print_table(const char *what, const sdw_model_info *mi, const sdw_bench_result *r, double load_s)
{
    printf("sd-worker bench: %s (%s%s, %s) %dx%d, cfg %g, %d steps", what, sdw_family_name(mi->family),
           mi->inpaint ? " inpaint" : "", sdw_prediction_name(mi->prediction), r->width, r->height, r->cfg_scale,
           r->steps);
    if (mi->default_guidance > 0) printf(", guidance %g", mi->default_guidance);
    if (mi->t5_max_length) printf(", %d T5 tokens", mi->t5_max_length);
    printf(", median of %d\n", r->repeat);
    printf("host %s\n", r->host);
    printf("cpu %s, %d threads, precision %s; loaded in %.1f s\n", r->isa, r->threads,
           sdw_precision_name(r->precision), load_s);
    const sdw_bench_peak *pk[2] = { &r->peak_bf16, &r->peak_f32 };
    const char *pn[2] = { "bf16", "f32" };
    for (int i = 0; i < 2; i++) {
        if (!pk[i]->available) printf("peak %-4s: not available on this CPU\n", pn[i]);
        else
            printf("peak %-4s: %6.2f TFLOP/s (conv 3x3 320->320 64x64 b2 %.2f, matmul 8192x1280x1280 %.2f)\n", pn[i],
                   pk[i]->tflops, pk[i]->conv_tflops, pk[i]->matmul_tflops);
    }
    if (r->sustained_tflops > 0)
        printf("sustained: %6.2f TFLOP/s (the %s conv above, back to back after the stages)\n", r->sustained_tflops,
               sdw_precision_name(r->precision));
    bool paired = r->stage[SDW_BENCH_DENOISE].host_tflops > 0;
    /* Wide enough for "controlnet eval (batch 2)" when it is there. */
    const int nw = r->stage[SDW_BENCH_CONTROL].ran ? 25 : 22;
    printf("\n%-*s %9s %10s %9s %7s", nw, "stage", "seconds", "GFLOP", "TFLOP/s", "% peak");
    if (r->sustained_tflops > 0) printf(" %7s", "% sust");
    if (paired) printf(" %8s %7s", "% paired", "host");
    printf("\n");
    const bool unet = !strcmp(r->denoiser, "unet");
    for (int i = 0; i < SDW_BENCH_STAGES; i++) {
        const sdw_bench_stage_result *s = &r->stage[i];
        const char *label = sdw_bench_stage_label(r, (sdw_bench_stage)i);
        char name[64];
        if (i == SDW_BENCH_CONTROL && !s->ran) continue;   /* no ControlNet: the table as it always was */
        if ((i == SDW_BENCH_DENOISE && unet) || i == SDW_BENCH_CONTROL)
            snprintf(name, sizeof name, "%s (batch %d)", label, r->denoiser_batch);
        else if (i == SDW_BENCH_DENOISE && r->denoiser_batch > 1)
            snprintf(name, sizeof name, "%s (x%d)", label, r->denoiser_batch);
        else snprintf(name, sizeof name, "%s", label);
        if (!s->ran) {
            printf("%-*s %9s\n", nw, name, "-");
            continue;
        }
        printf("%-*s %9.3f %10.2f %9.3f %7.1f", nw, name, s->seconds, s->flops * 1e-9, s->tflops, s->pct_peak);
        if (r->sustained_tflops > 0) printf(" %7.1f", s->pct_sustained);
        if (paired && s->host_tflops > 0) printf(" %8.1f %7.2f", s->pct_paired, s->host_tflops);
        else if (paired) printf(" %8s %7s", "-", "-");
        printf("\n");
    }
    printf("(%s evaluation from the architecture: %.2f GFLOP)\n", unet ? "UNet" : "transformer",
           r->denoiser_flops_analytic * 1e-9);
    const sdw_bench_stage_result *cn = &r->stage[SDW_BENCH_CONTROL];
    if (cn->ran)
        printf("controlnet: %.3f s of a %.3f s step (%.1f%%), %.2f GFLOP of %.2f; the unet eval and the sampling "
               "step include it\n",
               cn->seconds, r->stage[SDW_BENCH_STEP].seconds, 100.0 * r->control_share, cn->flops * 1e-9,
               r->stage[SDW_BENCH_STEP].flops * 1e-9);
    if (paired)
        printf("(%% paired: median of each run against the peak conv run right after it for as long; host: that "
               "conv's TFLOP/s)\n");
    printf("\n");
    /* Where a stage's time goes: the heavy ops the backend ran, and the rest
     * (norms, activations, adds, layout and precision conversions). */
    static const char *const kind[SDW_OPK_COUNT] = { "conv", "matmul", "attention" };
    static const sdw_bench_stage where[] = { SDW_BENCH_DENOISE, SDW_BENCH_CONTROL, SDW_BENCH_DECODE };
    for (size_t w = 0; w < sizeof where / sizeof where[0]; w++) {
        const int i = where[w];
        const sdw_bench_stage_result *s = &r->stage[i];
        if (!s->ran) continue;
        double heavy = 0;
        printf("%s, last run:", sdw_bench_stage_label(r, (sdw_bench_stage)i));
        for (int k = 0; k < SDW_OPK_COUNT; k++) {
            heavy += s->ops.seconds[k];
            if (s->ops.calls[k])
                printf(" %s %.2f s (%.2f TFLOP/s),", kind[k], s->ops.seconds[k],
                       s->ops.seconds[k] > 0 ? s->ops.flops[k] / s->ops.seconds[k] * 1e-12 : 0);
        }
        printf(" other %.2f s\n", s->seconds - heavy > 0 ? s->seconds - heavy : 0);
    }
    for (size_t w = 0; w < sizeof where / sizeof where[0]; w++)
        if (r->stage[where[w]].n_shapes) print_shapes(sdw_bench_stage_label(r, where[w]), &r->stage[where[w]]);
    printf("\n");
    const sdw_bench_image *ims[2] = { &r->image, &r->image20 };
    for (int i = 0; i < (r->steps == 20 ? 1 : 2); i++) {
        const sdw_bench_image *im = ims[i];
        printf("%d-step image (estimate): %.2f s = text %.3f + %d x step %.3f + decode %.3f; %.3g TFLOP = %.3g s at "
               "peak (%.2fx)\n",
               im->steps, im->seconds, r->stage[SDW_BENCH_TEXT].seconds, im->steps, r->stage[SDW_BENCH_STEP].seconds,
               r->stage[SDW_BENCH_DECODE].seconds, im->flops * 1e-12, im->seconds_at_peak, im->x_peak);
        if (im->x_host > 0)
            printf("  at the paired host speed of each stage: %.3g s (%.2fx)\n", im->seconds_at_host, im->x_host);
    }
    printf("%d-step pipeline run (measured, median): %.2f s\n", r->steps, r->pipeline_seconds);
    printf("weights held %.3f GB", (double)r->weight_bytes / 1e9);
    if (r->weight_bytes_after > r->weight_bytes)
        printf(" (%.3f GB after the runs, with the copies made at first use)", (double)r->weight_bytes_after / 1e9);
    printf("; peak RSS %.3f GB\n", (double)r->peak_rss_bytes / 1e9);
}

int cmd_bench(int argc, char **argv)
{
    options o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    sdw_set_log(cli_log_to_stderr, NULL, o.verbose ? SDW_LOG_DEBUG : SDW_LOG_WARN);
    if (o.threads) omp_set_num_threads(o.threads);

    static bench_files files;
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = o.precision;
    lp.with_vae_encoder = true;
    lp.vae_path = o.vae;
    lp.clip_l_path = o.clip_l;
    lp.clip_g_path = o.clip_g;
    lp.t5_path = o.t5xxl;
    lp.weight_type = o.weight_type;
    const char *model = o.model;
    if (o.family) {
        const bench_family *f = bench_family_find(o.family);
        if (!bench_model_files(WHO, f, o.weights, &files)) return 1;
        model = files.model;
        lp.prediction = f->prediction;
        if (f->kind != BENCH_KIND_SD) {
            lp.vae_path = files.vae[0] ? files.vae : NULL;   /* SD3's single file has its own */
            lp.clip_l_path = files.clip_l;
            lp.clip_g_path = files.clip_g[0] ? files.clip_g : NULL;
            lp.t5_path = files.t5xxl;
        }
    }
    static char control_file[4096];
    const char *control = o.control;
    if (control && !strcmp(control, "auto")) {
        if (!bench_control_file(WHO, bench_family_find(o.family), control_file, sizeof control_file)) return 1;
        control = control_file;
    }
    fprintf(stderr, WHO ": loading %s\n", model);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sdw_model *m;
    if (sdw_model_load(model, &lp, &m) != SDW_OK) {
        fprintf(stderr, WHO ": %s\n", sdw_last_error());
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double load_s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    const sdw_model_info *mi = sdw_model_get_info(m);
    sdw_controlnet *cn = NULL;
    if (control) {
        fprintf(stderr, WHO ": loading the ControlNet %s\n", control);
        if (sdw_controlnet_load(m->be, control, &cn) != SDW_OK) {
            fprintf(stderr, WHO ": %s\n", sdw_last_error());
            sdw_model_free(m);
            return 1;
        }
    }

    sdw_bench_opts bo;
    sdw_bench_opts_init(&bo);
    bo.prompt = o.prompt;
    bo.negative_prompt = o.negative;
    bo.width = o.width;
    bo.height = o.height;
    /* Unless given: FLUX's and SD3's own steps and cfg (FLUX 1: one pass a
     * step; SD3 7: two); for the UNets the figures the SD bench has always
     * used (20 steps, cfg 7). */
    const bool own = sdw_family_is_flux(mi->family) || sdw_family_is_sd3(mi->family);
    bo.steps = o.steps ? o.steps : own ? mi->default_steps : 20;
    bo.cfg_scale = !isnan(o.cfg) ? o.cfg : own ? mi->default_cfg : 7.0f;
    bo.repeat = o.repeat;
    bo.sustained_seconds = o.sustained;
    bo.no_winograd = o.no_winograd;
    bo.shapes = o.shapes;
    bo.paired = o.paired;
    bo.control = cn;
    bo.control_name = "--control";
    bo.note = note_stderr;
    sdw_bench_result r;
    sdw_status s = sdw_bench_run(m, &bo, &r);
    sdw_controlnet_free(cn);
    if (s != SDW_OK) {
        fprintf(stderr, WHO ": %s\n", sdw_last_error());
        sdw_model_free(m);
        return 1;
    }
    const char *what = o.family ? o.family : model;
    if (o.json) {
        cJSON *j = sdw_bench_result_json(&r);
        char *text = NULL;
        if (j) {
            if (o.family) cJSON_AddStringToObject(j, "family", o.family);
            cJSON_AddStringToObject(j, "model", model);
            if (lp.vae_path) cJSON_AddStringToObject(j, "vae", lp.vae_path);
            if (lp.clip_l_path) cJSON_AddStringToObject(j, "clip_l", lp.clip_l_path);
            if (lp.clip_g_path) cJSON_AddStringToObject(j, "clip_g", lp.clip_g_path);
            if (lp.t5_path) cJSON_AddStringToObject(j, "t5xxl", lp.t5_path);
            if (control) cJSON_AddStringToObject(j, "controlnet", control);
            cJSON_AddStringToObject(j, "model_family", sdw_family_name(mi->family));
            cJSON_AddBoolToObject(j, "inpaint", mi->inpaint);
            cJSON_AddStringToObject(j, "prediction", sdw_prediction_name(mi->prediction));
            cJSON_AddNumberToObject(j, "load_seconds", load_s);
            text = cJSON_Print(j);
            cJSON_Delete(j);
        }
        if (!text) {
            fprintf(stderr, WHO ": out of memory writing JSON\n");
            sdw_model_free(m);
            return 1;
        }
        printf("%s\n", text);
        free(text);
    } else {
        print_table(what, mi, &r, load_s);
    }
    sdw_model_free(m);
    return 0;
}
