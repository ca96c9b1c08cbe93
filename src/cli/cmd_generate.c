/* cmd_generate.c: `sd-worker generate`: txt2img, img2img (-i) and inpainting
 * (-i with --mask), with LoRAs and ControlNets (--control), from the command
 * line, writing PNG (or .jpg / .webp) files that carry A1111's "parameters"
 * text. It generates through the public API (sdw.h: sdw_generate), as a
 * program embedding the library would; --dump adds the pipeline's tensor
 * observer (api/gen_observer.h). The option parsing helpers of cli_args.h
 * still see the internal enums they validate against. */
#include "cli/commands.h"
#include "cli/cli_args.h"
#include "cli/dump.h"
#include "api/gen_observer.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What the API takes at most (sdw_gen_params_check says so too). */
#define MAX_LORAS 16
#define MAX_CONTROLS 8
#define MAX_SLG_LAYERS 16

typedef struct {
    const char *lora_dir;
    const char *lora[MAX_LORAS];
    int n_lora;
    const char *model, *prompt, *negative, *init, *mask, *out, *vae, *dump_dir, *preview_dir, *sampler, *scheduler;
    const char *clip_l, *clip_g, *t5xxl;
    bool no_t5;
    int t5_len, slg_layers[MAX_SLG_LAYERS], n_slg;
    float slg_scale, slg_start, slg_end;
    int width, height, steps, clip_skip, batch_size, batch_count, threads, preview_every;
    float cfg, strength, guidance;
    long long seed;
    bool verbose;
    int turbo, vae_tiling;
    const char *rng;
    sdw_precision precision;
    sdw_prediction prediction;
    sdw_weight_type weight_type;
    int page_out;
    cli_control_spec control[MAX_CONTROLS];
    int n_control;
    const char *control_pre, *control_mode, *control_fit;   /* NULL: none, balanced, crop */
    bool control_guess;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sd-worker generate -m MODEL -p PROMPT [-n NEGATIVE] [-W W -H H] [--steps N]\n"
            "    [--cfg-scale S] [--seed N|-1] [--sampler NAME] [--scheduler NAME] [--rng cpu|cuda]\n"
            "    [-i INIT_IMAGE [--strength S]] [--mask MASK_IMAGE] [--clip-skip N]\n"
            "    [--batch-size N] [--batch-count N] [--dump DIR] [--prediction auto|eps|v] [--vae FILE]\n"
            "    [--clip-l FILE] [--t5xxl FILE] [--guidance G] (FLUX: its text encoders; dev's distilled guidance)\n"
            "    [--clip-g FILE] [--no-t5] [--t5-max-length N] (SD3: its text encoders; T5 tokens, default 256)\n"
            "    [--slg-layers 7,8,9 --slg-scale 2.8 --slg-start 0.01 --slg-end 0.2] (SD3.5 skip-layer guidance)\n"
            "    [--weight-type keep|f32|bf16|q8_0|q5_1|q5_0|q4_1|q4_0] (large linear layers held as)\n"
            "    [--page-out auto|always|never] (FLUX: T5 and transformer take turns in memory)\n"
            "    [--precision auto|f32|bf16] [--threads N] [--preview-every N --preview-dir DIR]\n"
            "    [--preset auto|turbo|none] [--lora FILE[:W]]... [--lora-dir DIR]\n"
            "    [--vae-tiling | --no-vae-tiling] (default: tiled above 1024x1024 pixels)\n"
            "    [--control FILE:IMAGE[:SCALE[:START:END]]]... (ControlNet, SD1 / SD2 / SDXL; IMAGE as given)\n"
            "    [--control-preprocess none|canny[:LOW:HIGH]|invert|threshold[:T]|scribble] [--control-guess]\n"
            "    [--control-mode balanced|prompt|controlnet] [--control-resize just|crop|fill] (default crop)\n"
            "    [-o OUT.png] [-v]\n");
}

static int bad(const char *fmt, const char *v)
{
    fprintf(stderr, "sd-worker generate: ");
    fprintf(stderr, fmt, v);
    fputc('\n', stderr);
    return 2;
}

/* "7,8,9" -> block numbers. */
static bool parse_layers(const char *v, options *o)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    o->n_slg = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        long long n;
        if (o->n_slg == MAX_SLG_LAYERS || !cli_parse_int(t, 0, 1000, &n)) return false;
        o->slg_layers[o->n_slg++] = (int)n;
    }
    return o->n_slg > 0;
}

static int parse(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->out = "out.png";
    o->seed = 42;
    o->batch_size = o->batch_count = 1;
    o->cfg = NAN;
    o->guidance = -1.0f;
    o->page_out = -1;
    o->slg_scale = 2.8f;
    o->slg_start = 0.01f;
    o->slg_end = 0.2f;
    o->strength = 0.75f;
    o->turbo = -1;
    o->vae_tiling = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
#define IS(s) (!strcmp(a, s))
        if (IS("-v") || IS("--verbose")) { o->verbose = true; continue; }
        if (IS("--vae-tiling")) { o->vae_tiling = 1; continue; }
        if (IS("--no-vae-tiling")) { o->vae_tiling = 0; continue; }
        if (IS("--no-t5")) { o->no_t5 = true; continue; }
        if (IS("--control-guess")) { o->control_guess = true; continue; }
        if (IS("-h") || IS("--help")) { usage(stdout); exit(0); }
        if (!v) return bad("option %s needs a value", a);
        i++;
        if (IS("-m") || IS("--model")) o->model = v;
        else if (IS("-p") || IS("--prompt")) o->prompt = v;
        else if (IS("-n") || IS("--negative-prompt")) o->negative = v;
        else if (IS("-i") || IS("--init-image")) o->init = v;
        else if (IS("--mask")) o->mask = v;
        else if (IS("-o") || IS("--output")) o->out = v;
        else if (IS("--vae")) o->vae = v;
        else if (IS("--clip-l")) o->clip_l = v;
        else if (IS("--clip-g")) o->clip_g = v;
        else if (IS("--t5-max-length")) { if (!cli_parse_int(v, 1, 512, &n)) return bad("--t5-max-length must be in 1..512, not '%s'", v); o->t5_len = (int)n; }
        else if (IS("--slg-layers")) { if (!parse_layers(v, o)) return bad("--slg-layers takes block numbers like 7,8,9, not '%s'", v); }
        else if (IS("--slg-scale")) { if (!cli_parse_float(v, 0, 100, &o->slg_scale)) return bad("--slg-scale must be in 0..100, not '%s'", v); }
        else if (IS("--slg-start")) { if (!cli_parse_float(v, 0, 1, &o->slg_start)) return bad("--slg-start must be in 0..1, not '%s'", v); }
        else if (IS("--slg-end")) { if (!cli_parse_float(v, 0, 1, &o->slg_end)) return bad("--slg-end must be in 0..1, not '%s'", v); }
        else if (IS("--page-out")) {
            if (!strcmp(v, "auto")) o->page_out = -1;
            else if (!strcmp(v, "always")) o->page_out = 1;
            else if (!strcmp(v, "never")) o->page_out = 0;
            else return bad("--page-out must be auto, always or never, not '%s'", v);
        } else if (IS("--weight-type")) { if (sdw_weight_type_parse(v, &o->weight_type) != SDW_OK) return bad("%s", sdw_last_error()); }
        else if (IS("--t5xxl") || IS("--t5")) o->t5xxl = v;
        else if (IS("--guidance") || IS("--distilled-cfg-scale")) { if (!cli_parse_float(v, 0, 100, &o->guidance)) return bad("--guidance must be in 0..100, not '%s'", v); }
        else if (IS("--dump")) o->dump_dir = v;
        else if (IS("--preview-dir")) o->preview_dir = v;
        else if (IS("--sampler")) o->sampler = v;
        else if (IS("--scheduler")) o->scheduler = v;
        else if (IS("-W") || IS("--width")) { if (!cli_parse_int(v, 8, 8192, &n)) return bad("bad width '%s'", v); o->width = (int)n; }
        else if (IS("-H") || IS("--height")) { if (!cli_parse_int(v, 8, 8192, &n)) return bad("bad height '%s'", v); o->height = (int)n; }
        else if (IS("--steps")) { if (!cli_parse_int(v, 1, 1000, &n)) return bad("--steps must be in 1..1000, not '%s'", v); o->steps = (int)n; }
        else if (IS("--clip-skip")) { if (!cli_parse_int(v, 1, 12, &n)) return bad("--clip-skip must be in 1..12, not '%s'", v); o->clip_skip = (int)n; }
        else if (IS("--batch-size")) { if (!cli_parse_int(v, 1, 32, &n)) return bad("--batch-size must be in 1..32, not '%s'", v); o->batch_size = (int)n; }
        else if (IS("--batch-count")) { if (!cli_parse_int(v, 1, 10000, &n)) return bad("--batch-count must be in 1..10000, not '%s'", v); o->batch_count = (int)n; }
        else if (IS("--threads")) { if (!cli_parse_int(v, 1, 1024, &n)) return bad("bad --threads '%s'", v); o->threads = (int)n; }
        else if (IS("--preview-every")) { if (!cli_parse_int(v, 0, 1000, &n)) return bad("bad --preview-every '%s'", v); o->preview_every = (int)n; }
        else if (IS("--seed")) { if (!cli_parse_int(v, -1, INT64_MAX, &n)) return bad("--seed must be -1 or a non-negative integer, not '%s'", v); o->seed = n; }
        else if (IS("--cfg-scale")) { if (!cli_parse_float(v, 0, 100, &o->cfg)) return bad("--cfg-scale must be in 0..100, not '%s'", v); }
        else if (IS("--strength")) { if (!cli_parse_float(v, 0, 1, &o->strength) || o->strength <= 0) return bad("--strength must be in (0, 1], not '%s'", v); }
        else if (IS("--rng")) { sdw_rng_kind k; if (!sdw_rng_kind_parse(v, &k)) return bad("--rng must be cpu or cuda, not '%s'", v); o->rng = v; }
        else if (IS("--precision")) { if (!cli_parse_precision(v, &o->precision)) return bad("--precision must be auto, f32 or bf16, not '%s'", v); }
        else if (IS("--prediction")) { if (!cli_parse_prediction(v, &o->prediction)) return bad("--prediction must be auto, eps or v, not '%s'", v); } else if (IS("--preset")) {
            if (!strcmp(v, "turbo")) o->turbo = 1;
            else if (!strcmp(v, "none")) o->turbo = 0;
            else if (!strcmp(v, "auto")) o->turbo = -1;
            else return bad("--preset must be turbo, none or auto, not '%s'", v);
        } else if (IS("--lora")) {
            if (o->n_lora == MAX_LORAS) return bad("at most %s --lora options", "16");
            o->lora[o->n_lora++] = v;
        } else if (IS("--lora-dir")) {
            o->lora_dir = v;
        } else if (IS("--control")) {
            if (o->n_control == MAX_CONTROLS) return bad("at most %s --control options", "8");
            const char *why = cli_parse_control(v, &o->control[o->n_control++]);
            if (why) {
                fprintf(stderr, "sd-worker generate: --control '%s': %s\n", v, why);
                return 2;
            }
        } else if (IS("--control-preprocess")) {
            sdw_preprocessor pre;
            if (sdw_preprocessor_parse(v, &pre) != SDW_OK) return bad("--control-preprocess: %s", sdw_last_error());
            o->control_pre = pre.kind == SDW_PRE_NONE ? NULL : v;
        } else if (IS("--control-mode")) {
            sdw_control_mode mode;
            if (!cli_parse_control_mode(v, &mode)) return bad("--control-mode must be balanced, prompt or controlnet, not '%s'", v);
            o->control_mode = mode == SDW_CONTROL_BALANCED ? NULL : v;
        } else if (IS("--control-resize")) {
            sdw_fit_mode fit;
            if (!cli_parse_control_resize(v, &fit)) return bad("--control-resize must be just, crop or fill, not '%s'", v);
            o->control_fit = v;
        } else {
            return bad("unknown option '%s' (see sd-worker generate --help)", a);
        }
#undef IS
    }
    if (!o->model || !o->prompt) {
        usage(stderr);
        return 2;
    }
    if (o->mask && !o->init) return bad("%s", "--mask needs an init image (-i)");
    if (o->preview_every && !o->preview_dir) return bad("%s", "--preview-every needs --preview-dir");
    if (!o->n_control && (o->control_guess || o->control_mode || o->control_pre))
        return bad("%s", "--control-guess, --control-mode and --control-preprocess need a --control");
    if (o->control_guess && o->control_mode)
        return bad("%s", "--control-guess and --control-mode prompt / controlnet are two rules for the same thing; give one");
    return 0;
}

/* ---------------------------------------------------------------- progress */

typedef struct {
    bool tty;
    const char *preview_dir;
} progress_ctx;

static int on_progress(void *user, const sdw_gen_progress *p)
{
    progress_ctx *c = user;
    double per = p->step ? p->elapsed_s / p->step : 0;
    if (c->tty) {
        char bar[31];
        int fill = p->total ? 30 * p->step / p->total : 30;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '=' : ' ';
        bar[30] = 0;
        fprintf(stderr, "\r%3d/%-3d [%s] %.2f s/it, ETA %.0f s ", p->step, p->total, bar, per, p->eta_s);
        if (p->step == p->total) fputc('\n', stderr);
    } else {
        fprintf(stderr, "step %d/%d %.2f s/it eta %.0f s\n", p->step, p->total, per, p->eta_s);
    }
    if (p->preview && c->preview_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/preview-%d-step%03d.png", c->preview_dir, p->run, p->step);
        if (sdw_image_rgb8_write(path, p->preview, NULL) != SDW_OK)
            fprintf(stderr, "sd-worker generate: preview: %s\n", sdw_last_error());
    }
    return 0;
}

/* ---------------------------------------------------------------- --dump */

static void *dump_begin(void *user, int run) { return sdw_dump_begin(user, run); }

static void dump_end(void *run_user, bool ok)
{
    if (sdw_dump_end(run_user, ok) != SDW_OK) fprintf(stderr, "sd-worker generate: --dump: %s\n", sdw_last_error());
}

/* ---------------------------------------------------------------- inputs */

static void output_name(const char *out, int index, int total, char *buf, size_t n)
{
    if (total == 1) {
        snprintf(buf, n, "%s", out);
        return;
    }
    const char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
    if (!dot || (slash && dot < slash)) dot = out + strlen(out);
    snprintf(buf, n, "%.*s-%d%s", (int)(dot - out), out, index + 1, dot);
}

/* What one command asks for, in the API's terms, with the storage its
 * pointers point into. */
typedef struct {
    sdw_gen_params p;
    char lora_path[MAX_LORAS][1024];
    sdw_lora_ref loras[MAX_LORAS];
    sdw_gen_control controls[MAX_CONTROLS];
    sdw_image_rgb8 init, mask;
} request;

/* --lora FILE[:W]: W for the text encoder and the UNet alike. */
static void add_loras(const options *o, request *r)
{
    for (int i = 0; i < o->n_lora; i++) {
        float w = 1.0f;
        char *path = r->lora_path[i];
        snprintf(path, sizeof r->lora_path[0], "%s", o->lora[i]);
        char *colon = strrchr(path, ':');
        if (colon && cli_parse_float(colon + 1, -100, 100, &w)) *colon = 0;
        else w = 1.0f;
        r->loras[i] = sdw_lora_ref_make(path, w, w);
    }
    r->p.loras = r->loras;
    r->p.n_loras = o->n_lora;
    r->p.lora_dir = o->lora_dir;
}

static void free_request(request *r)
{
    sdw_image_rgb8_free(&r->init);
    sdw_image_rgb8_free(&r->mask);
    for (int k = 0; k < MAX_CONTROLS; k++) sdw_image_rgb8_free(&r->controls[k].image);
}

static int fail(const char *what)
{
    fprintf(stderr, "sd-worker generate: %s%s%s\n", what ? what : "", what ? ": " : "", sdw_last_error());
    return 1;
}

/* The request from the options, its images read; 0 or the exit status. */
static int make_request(const options *o, request *r)
{
    sdw_gen_params *p = &r->p;
    *p = sdw_gen_params_default();
    p->prompt = o->prompt;
    p->negative_prompt = o->negative;
    p->width = o->width;
    p->height = o->height;
    p->steps = o->steps;
    p->cfg_scale = isnan(o->cfg) ? -1.0f : o->cfg;
    p->guidance = o->guidance;
    p->sampler = o->sampler;
    p->scheduler = o->scheduler;
    p->rng = o->rng;
    p->t5_max_length = o->t5_len;
    p->slg_layers = o->slg_layers;
    p->n_slg_layers = o->n_slg;
    p->slg_scale = o->slg_scale;
    p->slg_start = o->slg_start;
    p->slg_end = o->slg_end;
    p->clip_skip = o->clip_skip;
    p->batch_size = o->batch_size;
    p->batch_count = o->batch_count;
    p->strength = o->strength;
    p->preview_every = o->preview_every;
    p->vae_tiling = o->vae_tiling;
    p->control_guess = o->control_guess;
    add_loras(o, r);
    if (o->init) {
        if (sdw_image_rgb8_load(o->init, false, &r->init) != SDW_OK) return fail(NULL);
        p->init_image = &r->init;
    }
    if (o->mask) {
        if (sdw_image_rgb8_load(o->mask, false, &r->mask) != SDW_OK) return fail(o->mask);
        p->mask = &r->mask;
    }
    for (int k = 0; k < o->n_control; k++) {
        const cli_control_spec *cs = &o->control[k];
        sdw_gen_control *c = &r->controls[k];
        *c = sdw_gen_control_default();
        if (sdw_image_rgb8_load(cs->image, true, &c->image) != SDW_OK) return fail(NULL);
        c->path = cs->file;
        c->scale = cs->scale;
        c->start = cs->start;
        c->end = cs->end;
        c->preprocessor = o->control_pre;
        c->resize_mode = o->control_fit;
        c->control_mode = o->control_mode;
    }
    p->controls = r->controls;
    p->n_controls = o->n_control;
    /* Names, LoRA tags and the rest are checked before the (slow) model load. */
    if (sdw_gen_params_check(p) != SDW_OK) return fail(NULL);
    if (o->seed < 0) {
        p->seed = (int64_t)sdw_random_seed();
        fprintf(stderr, "seed %llu\n", (unsigned long long)p->seed);
    } else {
        p->seed = o->seed;
    }
    return 0;
}

static sdw_model *load_model(const options *o)
{
    sdw_load_params lp = sdw_load_params_default();
    lp.turbo = o->turbo;
    lp.precision = o->precision;
    lp.prediction = o->prediction;
    lp.vae_path = o->vae;
    lp.clip_l_path = o->clip_l;
    lp.clip_g_path = o->clip_g;
    lp.no_t5 = o->no_t5;
    lp.t5_path = o->t5xxl;
    lp.weight_type = o->weight_type;
    lp.page_out = o->page_out;
    lp.with_vae_encoder = o->init != NULL;
    sdw_model *m;
    return sdw_model_load(o->model, &lp, &m) == SDW_OK ? m : NULL;
}

/* Writes the result's images under the -o name (numbered when the command
 * asks for more than one); 0 or the exit status. */
static int write_images(const options *o, const sdw_gen_result *res)
{
    for (int i = 0; i < res->n_images; i++) {
        const sdw_gen_image *gi = res->images[i];
        char path[4096];
        output_name(o->out, i, o->batch_count * o->batch_size, path, sizeof path);
        if (sdw_image_rgb8_write(path, &gi->image, gi->parameters) != SDW_OK) return fail(path);
        printf("%s\n", path);
    }
    return 0;
}

int cmd_generate(int argc, char **argv)
{
    options o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    sdw_set_log(cli_log_to_stderr, NULL, o.verbose ? SDW_LOG_DEBUG : SDW_LOG_WARN);
    if (o.threads) omp_set_num_threads(o.threads);
    static request req;   /* static: its path buffers are large */
    sdw_gen_result res = sdw_gen_result_init();
    sdw_model *m = NULL;
    if ((rc = make_request(&o, &req))) goto out;
    rc = 1;
    if (!(m = load_model(&o))) { fail(NULL); goto out; }
    if (sdw_model_apply_loras(m, &req.p, &res) != SDW_OK) { fail(NULL); goto out; }
    for (int i = 0; i < res.n_loras; i++)
        fprintf(stderr, "LoRA %s: applied %d of %d keys (te %g, unet %g)\n", res.loras[i]->name,
                res.loras[i]->keys_applied, res.loras[i]->keys_total, res.loras[i]->te_strength,
                res.loras[i]->unet_strength);
    const sdw_model_info *mi = sdw_model_get_info(m);
    if (mi->turbo) fprintf(stderr, "SDXL-Turbo defaults: %dx%d, %d steps, cfg %g, %s %s (override any of them)\n",
                           mi->default_width, mi->default_height, mi->default_steps, mi->default_cfg,
                           mi->default_sampler, mi->default_scheduler);
    char hash[16], stem[256];
    sdw_model_hash10(o.model, hash);
    sdw_path_stem(o.model, stem, sizeof stem);
    req.p.model_name = stem;
    req.p.model_hash = hash;
    progress_ctx pc = { isatty(2), o.preview_dir };
    req.p.progress = on_progress;
    req.p.progress_user = &pc;
    sdw_gen_observer dump = { dump_begin, sdw_dump_observe, dump_end, (void *)o.dump_dir };
    if (sdw_generate_observed(m, &req.p, &res, o.dump_dir ? &dump : NULL) != SDW_OK) {
        /* The runs before a failing one are written (as they were, run by run). */
        write_images(&o, &res);
        fail(NULL);
        goto out;
    }
    rc = write_images(&o, &res);
out:
    sdw_gen_result_free(&res);
    free_request(&req);
    sdw_model_free(m);
    return rc;
}
