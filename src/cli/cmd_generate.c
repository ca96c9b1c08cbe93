/* cmd_generate.c: `sd-worker generate`: txt2img, img2img (-i) and inpainting
 * (-i with --mask), with ControlNets (--control), from the command line,
 * writing PNG (or .jpg / .webp) files that carry A1111's "parameters" text. */
#include "cli/commands.h"
#include "cli/cli_args.h"
#include "cli/dump.h"
#include "core/error.h"
#include "io/image.h"
#include "models/controlnet.h"
#include "models/lora.h"
#include "text/prompt_parse.h"
#include "pipeline/frontend.h"
#include "pipeline/infotext.h"
#include "pipeline/pipeline.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *lora_dir;
    const char *lora[SDW_MAX_LORAS];
    int n_lora;
    const char *model, *prompt, *negative, *init, *mask, *out, *vae, *dump_dir, *preview_dir, *sampler, *scheduler;
    const char *clip_l, *clip_g, *t5xxl;
    bool no_t5;
    int t5_len, slg_layers[SDW_MAX_SLG_LAYERS], n_slg;
    float slg_scale, slg_start, slg_end;
    int width, height, steps, clip_skip, batch_size, batch_count, threads, preview_every;
    float cfg, strength, guidance;
    long long seed;
    bool verbose;
    int turbo, vae_tiling;
    sdw_rng_kind rng;
    sdw_precision precision;
    sdw_prediction prediction;
    sdw_weight_type weight_type;
    int page_out;
    cli_control_spec control[SDW_MAX_CONTROLS];
    int n_control;
    sdw_preprocessor control_pre;
    bool control_guess;
    sdw_control_mode control_mode;
    sdw_fit_mode control_fit;
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
        if (o->n_slg == SDW_MAX_SLG_LAYERS || !cli_parse_int(t, 0, 1000, &n)) return false;
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
    o->control_fit = SDW_FIT_CROP_AND_RESIZE;
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
        else if (IS("--rng")) { if (!sdw_rng_kind_parse(v, &o->rng)) return bad("--rng must be cpu or cuda, not '%s'", v); }
        else if (IS("--precision")) { if (!cli_parse_precision(v, &o->precision)) return bad("--precision must be auto, f32 or bf16, not '%s'", v); }
        else if (IS("--prediction")) { if (!cli_parse_prediction(v, &o->prediction)) return bad("--prediction must be auto, eps or v, not '%s'", v); } else if (IS("--preset")) {
            if (!strcmp(v, "turbo")) o->turbo = 1;
            else if (!strcmp(v, "none")) o->turbo = 0;
            else if (!strcmp(v, "auto")) o->turbo = -1;
            else return bad("--preset must be turbo, none or auto, not '%s'", v);
        } else if (IS("--lora")) {
            if (o->n_lora == SDW_MAX_LORAS) return bad("at most %s --lora options", "16");
            o->lora[o->n_lora++] = v;
        } else if (IS("--lora-dir")) {
            o->lora_dir = v;
        } else if (IS("--control")) {
            if (o->n_control == SDW_MAX_CONTROLS) return bad("at most %s --control options", "8");
            const char *why = cli_parse_control(v, &o->control[o->n_control++]);
            if (why) {
                fprintf(stderr, "sd-worker generate: --control '%s': %s\n", v, why);
                return 2;
            }
        } else if (IS("--control-preprocess")) {
            if (sdw_preprocessor_parse(v, &o->control_pre) != SDW_OK) return bad("--control-preprocess: %s", sdw_last_error());
        } else if (IS("--control-mode")) {
            if (!cli_parse_control_mode(v, &o->control_mode)) return bad("--control-mode must be balanced, prompt or controlnet, not '%s'", v);
        } else if (IS("--control-resize")) {
            if (!cli_parse_control_resize(v, &o->control_fit)) return bad("--control-resize must be just, crop or fill, not '%s'", v);
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
    if (!o->n_control && (o->control_guess || o->control_mode || o->control_pre.kind))
        return bad("%s", "--control-guess, --control-mode and --control-preprocess need a --control");
    if (o->control_guess && o->control_mode != SDW_CONTROL_BALANCED)
        return bad("%s", "--control-guess and --control-mode prompt / controlnet are two rules for the same thing; give one");
    return 0;
}

/* ---------------------------------------------------------------- progress */

typedef struct {
    bool tty;
    const char *preview_dir;
    int image_index;
} progress_ctx;

static sdw_status write_rgb_float(const char *path, const float *rgb01, int w, int h, const sdw_png_text *t, int nt)
{
    sdw_image img;
    SDW_TRY(sdw_rgb01_to_image(rgb01, w, h, &img));
    sdw_status s = sdw_image_save(path, &img, t, nt);
    sdw_image_free(&img);
    return s;
}

static sdw_status on_progress(void *user, const sdw_progress *p)
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
        snprintf(path, sizeof path, "%s/preview-%d-step%03d.png", c->preview_dir, c->image_index, p->step);
        if (write_rgb_float(path, p->preview, p->preview_w, p->preview_h, NULL, 0) != SDW_OK)
            fprintf(stderr, "sd-worker generate: preview: %s\n", sdw_last_error());
    }
    return SDW_OK;
}

/* ---------------------------------------------------------------- inputs */

/* Loads an image file and makes the pipeline's input of it: an init image or
 * a mask, resized to w x h. */
static sdw_status load_input(const char *path, int w, int h, bool mask, float **out)
{
    sdw_image img;
    SDW_TRY(sdw_image_load(path, SDW_IMAGE_DEFAULT_MAX_PIXELS, &img));
    sdw_status s = mask ? sdw_mask_from_image(&img, w, h, SDW_MASK_LUMA, false, out) : sdw_init_from_image(&img, w, h, out);
    sdw_image_free(&img);
    return s;
}

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

/* --lora FILE[:W] options, then the prompt's <lora:...> tags (in --lora-dir). */
static sdw_status collect_loras(const options *o, sdw_lora_set *set)
{
    memset(set, 0, sizeof *set);
    for (int i = 0; i < o->n_lora; i++) {
        char path[1024];
        float w = 1.0f;
        snprintf(path, sizeof path, "%s", o->lora[i]);
        char *colon = strrchr(path, ':');
        if (colon && cli_parse_float(colon + 1, -100, 100, &w)) *colon = 0;
        else w = 1.0f;
        SDW_TRY(sdw_lora_set_add(set, path, w, w));
    }
    sdw_parsed_prompt pp;
    SDW_TRY(sdw_prompt_parse(o->prompt, &pp));
    int tags = pp.n_loras;
    sdw_parsed_prompt_free(&pp);
    if (tags && !o->lora_dir)
        return sdw_fail(SDW_ERR_INVALID_ARG, "the prompt names LoRAs (<lora:...>): give --lora-dir DIR to find them");
    return tags ? sdw_lora_set_add_prompt(set, o->lora_dir, o->prompt) : SDW_OK;
}

/* ---------------------------------------------------------------- ControlNets */

typedef struct {
    sdw_controlnet *nets[SDW_MAX_CONTROLS];
    char real[SDW_MAX_CONTROLS][4096];   /* where each loaded net's file is (realpath) */
    int n_nets;
    sdw_control_unit units[SDW_MAX_CONTROLS];
    float *images[SDW_MAX_CONTROLS];
    sdw_infotext_control info[SDW_MAX_CONTROLS];
    char stem[SDW_MAX_CONTROLS][256], hash[SDW_MAX_CONTROLS][16];
} controls;

static const char *fit_name(sdw_fit_mode m)
{
    return m == SDW_FIT_JUST_RESIZE ? "Just Resize" : m == SDW_FIT_RESIZE_AND_FILL ? "Resize and Fill" : "Crop and Resize";
}

/* The net in path, loaded once however often it is named, and checked against the model's UNet. */
static sdw_status control_net(controls *c, sdw_model *m, const char *path, sdw_controlnet **out)
{
    char real[4096];
    if (!realpath(path, real)) snprintf(real, sizeof real, "%s", path);
    for (int i = 0; i < c->n_nets; i++)
        if (!strcmp(c->real[i], real)) {
            *out = c->nets[i];
            return SDW_OK;
        }
    SDW_TRY(sdw_controlnet_load(m->be, path, out));
    c->nets[c->n_nets] = *out;
    snprintf(c->real[c->n_nets++], sizeof c->real[0], "%s", real);
    const char *base = strrchr(path, '/');
    return sdw_controlnet_check_base(*out, sdw_unet_get_config(m->unet), base && base[1] ? base + 1 : path);
}

/* The control image in path: preprocessed (--control-preprocess), fit to w x h when its size differs,
 * as RGB floats in [0, 1]. */
static sdw_status control_image(const options *o, const char *path, int w, int h, float **out, sdw_infotext_control *info)
{
    sdw_image src, img, fit;
    SDW_TRY(sdw_image_load(path, SDW_IMAGE_DEFAULT_MAX_PIXELS, &src));
    sdw_status s = sdw_preprocess(&o->control_pre, &src, &img);
    /* The preprocessor ran at the image's own size: its shorter side is A1111's processor resolution. */
    info->processor_res = o->control_pre.kind == SDW_PRE_NONE ? -1 : (src.w < src.h ? src.w : src.h);
    sdw_image_free(&src);
    SDW_TRY(s);
    if (img.w != w || img.h != h) {
        s = sdw_control_image_fit(&img, w, h, o->control_fit, &fit);
        sdw_image_free(&img);
        SDW_TRY(s);
        img = fit;
    }
    float *f = malloc((size_t)w * h * 3 * sizeof *f);
    if (f)
        for (size_t i = 0; i < (size_t)w * h * 3; i++) f[i] = img.data[i] / 255.0f;
    sdw_image_free(&img);
    if (!f) return sdw_fail(SDW_ERR_NOMEM, "%s: out of memory", path);
    *out = f;
    return SDW_OK;
}

/* Error messages name the file: the loader's and the image reader's do; where one does not, it is put first. */
static sdw_status name_file(sdw_status s, const char *path)
{
    if (s != SDW_OK && !strstr(sdw_last_error(), path)) return sdw_fail(s, "%s: %s", path, sdw_last_error());
    return s;
}

static sdw_status load_controls(const options *o, sdw_model *m, int w, int h, controls *c)
{
    if (!o->n_control) return SDW_OK;
    if (!m->unet)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "ControlNet works with SD1, SD2 and SDXL models, not %s",
                        sdw_family_name(m->info.family));
    const sdw_preprocessor *pre = &o->control_pre;
    for (int k = 0; k < o->n_control; k++) {
        const cli_control_spec *cs = &o->control[k];
        sdw_controlnet *net;
        SDW_TRY(name_file(control_net(c, m, cs->file, &net), cs->file));
        sdw_infotext_control *info = &c->info[k];
        SDW_TRY(name_file(control_image(o, cs->image, w, h, &c->images[k], info), cs->image));
        c->units[k] = (sdw_control_unit){ net, c->images[k], cs->scale, cs->start, cs->end, o->control_mode };
        sdw_path_stem(cs->file, c->stem[k], sizeof c->stem[0]);
        sdw_infotext_short_hash(cs->file, c->hash[k]);
        info->module = sdw_preprocessor_name(pre->kind);
        info->model = c->stem[k];
        info->hash = c->hash[k];
        info->resize_mode = fit_name(o->control_fit);
        info->threshold_a = pre->kind == SDW_PRE_CANNY || pre->kind == SDW_PRE_THRESHOLD ? pre->a : -1;
        info->threshold_b = pre->kind == SDW_PRE_CANNY ? pre->b : -1;
    }
    return SDW_OK;
}

static void free_controls(controls *c)
{
    for (int i = 0; i < c->n_nets; i++) sdw_controlnet_free(c->nets[i]);
    for (int k = 0; k < SDW_MAX_CONTROLS; k++) free(c->images[k]);
}

static int fail(const char *what)
{
    fprintf(stderr, "sd-worker generate: %s%s%s\n", what ? what : "", what ? ": " : "", sdw_last_error());
    return 1;
}

int cmd_generate(int argc, char **argv)
{
    options o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    sdw_set_log(cli_log_to_stderr, NULL, o.verbose ? SDW_LOG_DEBUG : SDW_LOG_WARN);
    if (o.threads) omp_set_num_threads(o.threads);
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    /* Names are checked before the (slow) model load; defaults come after it. */
    if (o.sampler && sdw_sampler_parse(o.sampler, &p.sampler) != SDW_OK) return fail(NULL);
    if (o.scheduler && sdw_schedule_parse(o.scheduler, &p.schedule) != SDW_OK) return fail(NULL);

    static sdw_lora_set loras;
    if (collect_loras(&o, &loras) != SDW_OK) return fail(NULL);

    sdw_load_params lp = sdw_load_params_default();
    lp.turbo = o.turbo;
    lp.precision = o.precision;
    lp.prediction = o.prediction;
    lp.vae_path = o.vae;
    lp.clip_l_path = o.clip_l;
    lp.clip_g_path = o.clip_g;
    lp.no_t5 = o.no_t5;
    lp.t5_path = o.t5xxl;
    lp.weight_type = o.weight_type;
    lp.page_out = o.page_out;
    lp.with_vae_encoder = o.init != NULL;
    sdw_model *m;
    if (sdw_model_load(o.model, &lp, &m) != SDW_OK) return fail(NULL);
    sdw_lora_report reports[SDW_MAX_LORAS];
    char *lora_hashes = NULL;
    if (sdw_model_set_loras(m, loras.spec, loras.n, reports) != SDW_OK) {
        fail(NULL);
        sdw_model_free(m);
        return 1;
    }
    for (int i = 0; i < loras.n; i++)
        fprintf(stderr, "LoRA %s: applied %d of %d keys (te %g, unet %g)\n", reports[i].name,
                reports[i].keys_applied, reports[i].keys_total, loras.spec[i].te_strength,
                loras.spec[i].unet_strength);
    if (loras.n) lora_hashes = sdw_lora_hashes(reports, loras.n);
    const sdw_model_info *mi = sdw_model_get_info(m);
    if (!o.sampler) sdw_sampler_parse(mi->default_sampler, &p.sampler);
    if (!o.scheduler) sdw_schedule_parse(mi->default_scheduler, &p.schedule);
    if (mi->turbo) fprintf(stderr, "SDXL-Turbo defaults: %dx%d, %d steps, cfg %g, %s %s (override any of them)\n",
                           mi->default_width, mi->default_height, mi->default_steps, mi->default_cfg,
                           mi->default_sampler, mi->default_scheduler);
    p.prompt = o.prompt;
    p.negative_prompt = o.negative;
    p.width = o.width ? o.width : mi->default_width;
    p.height = o.height ? o.height : mi->default_height;
    p.steps = o.steps ? o.steps : mi->default_steps;
    p.cfg_scale = isnan(o.cfg) ? mi->default_cfg : o.cfg;
    p.guidance = o.guidance >= 0 ? o.guidance : mi->default_guidance;
    p.t5_max_length = o.t5_len;
    memcpy(p.slg_layers, o.slg_layers, sizeof p.slg_layers);
    p.n_slg_layers = o.n_slg;
    p.slg_scale = o.slg_scale;
    p.slg_start = o.slg_start;
    p.slg_end = o.slg_end;
    p.rng = o.rng;
    p.clip_skip = o.clip_skip;
    p.batch_size = o.batch_size;
    p.strength = o.strength;
    p.preview_every = o.preview_every;
    p.vae_tiling = o.vae_tiling;

    float *init_f = NULL, *mask_f = NULL, *images = NULL;
    char hash[16], stem[256];
    static controls cn;   /* static: its path buffers are large */
    rc = 1;
    if (load_controls(&o, m, p.width, p.height, &cn) != SDW_OK) { fail(NULL); goto out; }
    p.controls = cn.units;
    p.n_controls = o.n_control;
    p.control_guess = o.control_guess;
    if (o.init) {
        if (load_input(o.init, p.width, p.height, false, &init_f) != SDW_OK) { fail(NULL); goto out; }
        p.init_image = init_f;
    }
    if (o.mask) {
        if (load_input(o.mask, p.width, p.height, true, &mask_f) != SDW_OK) { fail(o.mask); goto out; }
        p.mask = mask_f;
    }
    uint64_t seed = (uint64_t)o.seed;
    if (o.seed < 0) {
        seed = sdw_random_seed();
        fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    }
    sdw_model_hash10(o.model, hash);
    sdw_path_stem(o.model, stem, sizeof stem);
    size_t per = (size_t)p.width * p.height * 3;
    images = malloc((size_t)p.batch_size * per * sizeof *images);
    if (!images) goto out;
    progress_ctx pc = { isatty(2), o.preview_dir, 0 };
    p.progress = on_progress;
    p.progress_user = &pc;
    int total = o.batch_count * o.batch_size;
    for (int run = 0; run < o.batch_count; run++) {
        p.seed = seed + (uint64_t)run;   /* A1111's n_iter: seed, seed + 1, ... */
        pc.image_index = run;
        sdw_dump *dump = NULL;
        if (o.dump_dir) {
            dump = sdw_dump_begin(o.dump_dir, run);
            p.observe = sdw_dump_observe;
            p.observe_user = dump;
        }
        sdw_status s = sdw_pipeline_run(m, &p, images);
        if (dump && sdw_dump_end(dump, s == SDW_OK) != SDW_OK) fail("--dump");
        if (s != SDW_OK) { fail(NULL); goto out; }
        for (int b = 0; b < p.batch_size; b++) {
            sdw_infotext_args ia = { &p, p.seed, stem, hash[0] ? hash : NULL, lora_hashes };
            char *info = sdw_infotext_controls(&ia, cn.info);
            sdw_png_text t = { "parameters", info ? info : "" };
            char path[4096];
            output_name(o.out, run * p.batch_size + b, total, path, sizeof path);
            s = write_rgb_float(path, images + (size_t)b * per, p.width, p.height, &t, 1);
            free(info);
            if (s != SDW_OK) { fail(path); goto out; }
            printf("%s\n", path);
        }
    }
    rc = 0;
out:
    free(lora_hashes);
    free(images);
    free(init_f);
    free(mask_f);
    free_controls(&cn);
    sdw_model_free(m);
    return rc;
}
