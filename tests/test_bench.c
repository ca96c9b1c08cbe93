/* test_bench.c: what `sd-worker bench` measures (src/bench/bench.c), on the
 * tiny models (SD1, SDXL, a 9-channel inpainting UNet, FLUX dev, SD3 and
 * SD3.5 medium; SD1 with a ControlNet). Timings are
 * never compared with numbers, only checked for sense: the FLOPs the backend
 * counts for a denoiser evaluation equal the count from the architecture,
 * rates are positive and below twice the measured peak, the JSON parses. */
#include "testkit.h"
#include "models/controlnet.h"
#include "models/flux.h"
#include "models/mmdit.h"
#include "models/model.h"
#include "bench/bench.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Measured once for the whole file (one run per kernel: the rates only need to be positive). */
static sdw_bench_peak peak_bf16, peak_f32;

static int measure_peaks(void **state)
{
    (void)state;
    if (sdw_bench_measure_peak(SDW_PRECISION_BF16, 1, &peak_bf16) != SDW_OK) return -1;
    if (sdw_bench_measure_peak(SDW_PRECISION_F32, 1, &peak_f32) != SDW_OK) return -1;
    return 0;
}

static void close_to(double got, double want, double rel, const char *what)
{
    if (!(fabs(got - want) <= rel * fabs(want))) fail_msg("%s: %.6g, expected %.6g", what, got, want);
}

static void test_peaks(void **state)
{
    (void)state;
    assert_true(peak_f32.available);
    assert_true(peak_f32.conv_tflops > 0 && peak_f32.matmul_tflops > 0);
    assert_true(peak_f32.tflops == fmax(peak_f32.conv_tflops, peak_f32.matmul_tflops));
    if (sdw_cpu_has_native_bf16()) assert_true(peak_bf16.available);
    if (peak_bf16.available)
        assert_true(peak_bf16.tflops > 0 && peak_bf16.tflops == fmax(peak_bf16.conv_tflops, peak_bf16.matmul_tflops));
    /* The sustained speed: the same conv back to back (printed: on a shared host it drifts either way). */
    double sustained = 0;
    assert_int_equal(sdw_bench_measure_sustained(SDW_PRECISION_F32, 0.2, &sustained), SDW_OK);
    printf("  f32 conv: best call %.3f TFLOP/s, sustained over 0.2 s %.3f\n", peak_f32.conv_tflops, sustained);
    assert_true(sustained > 0);
}

/* SD1.5: 339 GMAC per UNet evaluation of one 64x64 latent with 77 tokens in
 * its convolutions and linear layers (issue 7: 1.36 TFLOP per CFG step), plus
 * the attention products q k^T and p v (T x (T + 77) x C multiply-adds per
 * transformer block at T tokens of C channels), which the count includes. */
static void test_unet_flops_sd15(void **state)
{
    (void)state;
    sdw_unet_config c = { .in_channels = 4, .out_channels = 4, .n_levels = 4, .block_out = { 320, 640, 1280, 1280 },
                          .layers_per_block = 2, .depth = { 1, 1, 1, 0 }, .mid_depth = 1, .heads = { 8, 8, 8, 8 },
                          .context_dim = 768, .time_embed_dim = 1280 };
    double one = sdw_bench_unet_flops(&c, 1, 64, 64, 77), two = sdw_bench_unet_flops(&c, 2, 64, 64, 77);
    /* The context's keys and values (once per image): 77 x 768 x 2C for each of the 16 blocks. */
    const double ctx = sdw_bench_unet_context_flops(&c, 1, 77);
    close_to(ctx, 2.0 * 77 * 768 * 2 * (5 * 320 + 5 * 640 + 6 * 1280), 1e-12, "SD1.5 context keys and values");
    /* Blocks per resolution: 2 down + 3 up at 64x64, 32x32 and 16x16; 1 in the middle at 8x8. */
    static const struct { double T, C, blocks; } at[] = { { 4096, 320, 5 }, { 1024, 640, 5 }, { 256, 1280, 5 },
                                                           { 64, 1280, 1 } };
    double attn_mac = 0;
    for (int i = 0; i < 4; i++) attn_mac += 2 * at[i].blocks * at[i].T * (at[i].T + 77) * at[i].C;
    close_to((one + ctx) / 2 - attn_mac, 339e9, 0.005, "SD1.5 UNet multiply-adds outside attention");
    close_to(two, 2 * one, 1e-12, "batch 2");
}

static void check_stage(const sdw_bench_result *r, sdw_bench_stage s)
{
    const sdw_bench_stage_result *st = &r->stage[s];
    if (!st->ran) fail_msg("stage %s did not run", sdw_bench_stage_name(s));
    assert_int_equal(st->samples >= 1, 1);
    assert_true(st->seconds > 0 && st->min_seconds > 0 && st->min_seconds <= st->seconds);
    assert_true(st->flops > 0);
    assert_true(st->tflops > 0);
    /* A bound for FLOP counts gone wrong by a factor, not a speed check: on a
     * loaded host (tests side by side) a tiny stage can outrun a peak that was
     * measured in a slow spell 2x, so the bound is 10x. The counts themselves
     * are checked exactly in test_unet_flops_sd15 and the *_flops_full tests. */
    if (!(st->pct_peak > 0 && st->pct_peak < 1000))
        fail_msg("stage %s at %g%% of the peak", sdw_bench_stage_name(s), st->pct_peak);
}

/* FLUX's and SD3's parts beside the transformer (each NULL when not given). */
typedef struct {
    const char *vae, *clip_l, *t5xxl, *clip_g;
} flux_parts;

/* p's test-data file as an absolute path in buf, or NULL when p is. */
static const char *part_path(const char *p, char *buf, size_t n)
{
    if (!p) return NULL;
    snprintf(buf, n, "%s", test_data_path(p));
    return buf;
}

static sdw_model *load_parts(const char *model, const flux_parts *parts)
{
    sdw_load_params lp = sdw_load_params_default();
    lp.with_vae_encoder = true;
    char vae[4096], clip[4096], t5[4096], clip_g[4096];
    if (parts) {
        lp.vae_path = part_path(parts->vae, vae, sizeof vae);
        lp.clip_l_path = part_path(parts->clip_l, clip, sizeof clip);
        lp.t5_path = part_path(parts->t5xxl, t5, sizeof t5);
        lp.clip_g_path = part_path(parts->clip_g, clip_g, sizeof clip_g);
    }
    sdw_model *m;
    if (sdw_model_load(test_data_path(model), &lp, &m) != SDW_OK) fail_msg("load %s: %s", model, sdw_last_error());
    return m;
}

/* The bench on m, its shapes tracked, with the ControlNet cn (or none). */
static void bench_on(sdw_model *m, int size, float cfg, bool paired, const sdw_controlnet *cn, sdw_bench_result *r)
{
    sdw_bench_opts o;
    sdw_bench_opts_init(&o);
    o.width = o.height = size;
    o.steps = 2;
    o.repeat = 2;
    o.cfg_scale = cfg;
    o.peak_bf16 = &peak_bf16;
    o.peak_f32 = &peak_f32;
    o.shapes = true;
    o.paired = paired;
    o.control = cn;
    if (sdw_bench_run(m, &o, r) != SDW_OK) fail_msg("bench: %s", sdw_last_error());
    /* Every figure carries the host it ran on. */
    assert_non_null(strstr(r->host, "CPUs; amx "));
    assert_null(strstr(r->host, "unknown"));
}

static void run_bench_parts(const char *model, const flux_parts *parts, int size, float cfg, bool paired,
                            sdw_bench_result *r, sdw_model **out)
{
    *out = load_parts(model, parts);
    bench_on(*out, size, cfg, paired, NULL, r);
}

static void run_bench(const char *model, int size, float cfg, bool paired, sdw_bench_result *r, sdw_model **out)
{
    run_bench_parts(model, NULL, size, cfg, paired, r, out);
}

/* A shape's kernel: a name the backend gave (oneDNN's implementation string,
 * ours, or ours on oneDNN's, "kernel: impl"), whatever it is on this CPU:
 * never missing, empty, oneDNN's "unknown" or an unfilled part. */
static bool kernel_named(const char *k)
{
    if (!k || !*k || strcmp(k, "?") == 0 || strstr(k, "unknown") || strstr(k, "(null)")) return false;
    const size_t n = strlen(k);
    return k[n - 1] != ' ' && k[n - 1] != ':';
}

static void check_result(sdw_model *m, const sdw_bench_result *r, int size, float cfg)
{
    int nb = cfg > 1 ? 2 : 1;
    assert_int_equal(r->denoiser_batch, nb);
    assert_string_equal(r->denoiser, m->info.denoiser);
    assert_int_equal(r->width, size);
    assert_int_equal(r->precision, m->info.precision);
    double peak = r->precision == SDW_PRECISION_BF16 ? peak_bf16.tflops : peak_f32.tflops;
    assert_true(r->peak_tflops == peak && peak > 0);
    /* The ControlNet's stage runs only with one; the evaluation and the step then count it on top. */
    const bool control = r->stage[SDW_BENCH_CONTROL].ran;
    const double cn_flops = control ? r->stage[SDW_BENCH_CONTROL].flops : 0;
    for (int s = 0; s < SDW_BENCH_STAGES; s++)
        if (s != SDW_BENCH_CONTROL || control) check_stage(r, (sdw_bench_stage)s);
    if (!control) assert_true(r->control_share == 0);

    /* The backend's count of a denoiser evaluation is the architecture's. */
    double analytic = m->flux    ? nb * sdw_bench_flux_flops(sdw_flux_get_config(m->flux), (size / 16) * (size / 16),
                                                             m->info.t5_max_length)
                      : m->mmdit ? nb * sdw_bench_sd3_flops(sdw_mmdit_get_config(m->mmdit), (size / 16) * (size / 16),
                                                            sdw_bench_sd3_context(m->info.t5_max_length))
                                 : sdw_bench_unet_flops(sdw_unet_get_config(m->unet), nb, size / 8, size / 8, 77);
    close_to(r->denoiser_flops_analytic, analytic, 1e-12, "analytic denoiser FLOPs");
    close_to(r->stage[SDW_BENCH_DENOISE].flops, analytic + cn_flops, 0.01, "counted denoiser FLOPs");
    /* A sampling step runs one evaluation (euler_a; FLUX: euler) and nothing else counted. */
    close_to(r->stage[SDW_BENCH_STEP].flops, analytic + cn_flops, 0.01, "counted step FLOPs");
    /* 2 steps from each of 2 runs, less the first (cold) one. */
    assert_int_equal(r->stage[SDW_BENCH_STEP].samples, 3);
    assert_int_equal(r->stage[SDW_BENCH_DENOISE].samples, 2);

    const sdw_bench_stage_result *t = r->stage + SDW_BENCH_TEXT, *st = r->stage + SDW_BENCH_STEP,
                                 *d = r->stage + SDW_BENCH_DECODE;
    close_to(r->image.seconds, t->seconds + 2 * st->seconds + d->seconds, 1e-9, "image estimate");
    close_to(r->image20.flops, t->flops + 20 * st->flops + d->flops, 1e-9, "20-step FLOPs");
    close_to(r->image20.seconds_at_peak * peak * 1e12, r->image20.flops, 1e-9, "seconds at peak");
    assert_true(r->image20.x_peak > 0.5);   /* nothing runs at twice the peak */
    assert_true(r->pipeline_seconds > 0);
    assert_true(r->weight_bytes == m->info.weight_bytes && r->weight_bytes > 0);
    assert_true(r->peak_rss_bytes > r->weight_bytes);

    /* By shape: the UNet's, the ControlNet's and the decode's last run,
     * slowest first, adding up to the per-kind totals of the same run. */
    for (int s = 0; s < SDW_BENCH_STAGES; s++) {
        const sdw_bench_stage_result *sr = &r->stage[s];
        if (s != SDW_BENCH_DENOISE && s != SDW_BENCH_DECODE && !(s == SDW_BENCH_CONTROL && control)) {
            assert_int_equal(sr->n_shapes, 0);
            continue;
        }
        assert_true(sr->n_shapes > 0 && sr->n_shapes <= SDW_BENCH_MAX_SHAPES);
        double fl = 0, fl_kinds = 0;
        long calls = 0, calls_kinds = 0;
        for (int i = 0; i < sr->n_shapes; i++) {
            fl += sr->shapes[i].flops;
            calls += sr->shapes[i].calls;
            assert_true(kernel_named(sr->shapes[i].path));
            if (i) assert_true(sr->shapes[i].seconds <= sr->shapes[i - 1].seconds);
        }
        for (int k = 0; k < SDW_OPK_COUNT; k++) fl_kinds += sr->ops.flops[k], calls_kinds += sr->ops.calls[k];
        close_to(fl, fl_kinds, 1e-9, "FLOPs by shape");
        assert_int_equal(calls, calls_kinds);
    }

    cJSON *j = sdw_bench_result_json(r);
    assert_non_null(j);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    assert_non_null(text);
    cJSON *back = cJSON_Parse(text);
    free(text);
    assert_non_null(back);
    const cJSON *stages = cJSON_GetObjectItem(back, "stages");
    for (int s = 0; s < SDW_BENCH_STAGES; s++) {
        const cJSON *so = cJSON_GetObjectItem(stages, sdw_bench_stage_name((sdw_bench_stage)s));
        if (s == SDW_BENCH_CONTROL && !control) {
            /* Without a ControlNet the JSON is what it always was. */
            assert_null(so);
            assert_null(cJSON_GetObjectItem(back, "controlnet_share_of_step"));
            continue;
        }
        assert_true(cJSON_IsObject(so));
        close_to(cJSON_GetObjectItem(so, "gflop")->valuedouble, r->stage[s].flops * 1e-9, 1e-9, "JSON gflop");
        close_to(cJSON_GetObjectItem(so, "pct_peak")->valuedouble, r->stage[s].pct_peak, 1e-9, "JSON pct_peak");
        const cJSON *shapes = cJSON_GetObjectItem(so, "shapes");
        if (r->stage[s].n_shapes) assert_int_equal(cJSON_GetArraySize(shapes), r->stage[s].n_shapes);
        else assert_null(shapes);
        for (int i = 0; i < cJSON_GetArraySize(shapes); i++)
            assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(shapes, i), "kernel")->valuestring,
                                r->stage[s].shapes[i].path);
        if (r->stage[s].host_tflops == 0) assert_null(cJSON_GetObjectItem(so, "pct_paired"));
    }
    assert_string_equal(cJSON_GetObjectItem(back, "precision")->valuestring, sdw_precision_name(r->precision));
    assert_string_equal(cJSON_GetObjectItem(back, "denoiser")->valuestring, r->denoiser);
    close_to(cJSON_GetObjectItem(back, "denoiser_analytic_gflop")->valuedouble, r->denoiser_flops_analytic * 1e-9, 1e-9,
             "JSON analytic");
    assert_true(cJSON_IsObject(cJSON_GetObjectItem(cJSON_GetObjectItem(back, "peak"), "f32")));
    close_to(cJSON_GetObjectItem(back, "peak_rss_bytes")->valuedouble, (double)r->peak_rss_bytes, 1e-12, "JSON RSS");
    close_to(cJSON_GetObjectItem(cJSON_GetObjectItem(back, "image20_estimate"), "seconds")->valuedouble,
             r->image20.seconds, 1e-9, "JSON image20");
    if (r->stage[SDW_BENCH_STEP].host_tflops == 0) {
        assert_true(r->image20.x_host == 0);
        assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(back, "image20_estimate"), "x_host"));
    }
    cJSON_Delete(back);
}

/* With opts.paired every stage has the host's speed next to it, and its
 * share of that, in the JSON too. */
static void check_paired(const sdw_bench_result *r)
{
    cJSON *j = sdw_bench_result_json(r);
    assert_non_null(j);
    const cJSON *stages = cJSON_GetObjectItem(j, "stages");
    for (int s = 0; s < SDW_BENCH_STAGES; s++) {
        const sdw_bench_stage_result *st = &r->stage[s];
        const cJSON *so = cJSON_GetObjectItem(stages, sdw_bench_stage_name((sdw_bench_stage)s));
        if (!st->ran && s == SDW_BENCH_CONTROL) continue;
        if (!(st->host_tflops > 0 && st->pct_paired > 0 && st->pct_paired < 1000))
            fail_msg("stage %s: paired %g%% of a host at %g TFLOP/s", sdw_bench_stage_name((sdw_bench_stage)s),
                     st->pct_paired, st->host_tflops);
        close_to(cJSON_GetObjectItem(so, "pct_paired")->valuedouble, st->pct_paired, 1e-9, "JSON pct_paired");
        printf("  %-14s %.3f TFLOP/s, %.1f%% of the peak conv next to it (%.3f TFLOP/s)\n",
               sdw_bench_stage_name((sdw_bench_stage)s), st->tflops, st->pct_paired, st->host_tflops);
    }
    /* The image at each stage's paired host speed: its FLOPs over those
     * speeds, summed. */
    const sdw_bench_stage_result *t = r->stage + SDW_BENCH_TEXT, *st = r->stage + SDW_BENCH_STEP,
                                 *d = r->stage + SDW_BENCH_DECODE;
    const sdw_bench_image *im = &r->image20;
    double at_host = (t->flops / t->host_tflops + 20 * st->flops / st->host_tflops + d->flops / d->host_tflops) * 1e-12;
    close_to(im->seconds_at_host, at_host, 1e-9, "seconds at the paired host speed");
    close_to(im->x_host, im->seconds / at_host, 1e-9, "x at the paired host speed");
    close_to(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "image20_estimate"), "x_host")->valuedouble, im->x_host, 1e-9,
             "JSON x_host");
    cJSON_Delete(j);
    printf("  20-step image %.2fx the FLOPs at the paired host speed\n", im->x_host);
    printf("  pipeline run %.3f s with the probes' time left out\n", r->pipeline_seconds);
}

static void test_bench_sd1_tiny(void **state)
{
    (void)state;
    sdw_bench_result r;
    sdw_model *m;
    run_bench("models/sd1-tiny/sd1-tiny.safetensors", 64, 7.0f, true, &r, &m);
    check_result(m, &r, 64, 7.0f);
    check_paired(&r);
    sdw_model_free(m);
}

/* SDXL: pooled text and micro-conditioning into the UNet; cfg 1: batch 1. */
static void test_bench_sdxl_tiny_no_cfg(void **state)
{
    (void)state;
    sdw_bench_result r;
    sdw_model *m;
    run_bench("models/sdxl-tiny/sdxl-tiny.safetensors", 64, 1.0f, false, &r, &m);
    check_result(m, &r, 64, 1.0f);
    sdw_model_free(m);
}

/* A 9-channel model: the pipeline runs need an image and a mask. */
static void test_bench_inpaint_tiny(void **state)
{
    (void)state;
    sdw_bench_result r;
    sdw_model *m;
    run_bench("models/sd1-tiny-inpaint/diffusers", 64, 7.0f, false, &r, &m);
    assert_true(m->info.inpaint);
    check_result(m, &r, 64, 7.0f);
    sdw_model_free(m);
}

/* FLUX dev: T5 + CLIP-L text encode, the transformer (one pass a step at
 * cfg 1, with the distilled guidance), its 16-channel VAE. The stage ids stay
 * the UNet's; the table says "transformer eval". */
static void test_bench_flux_tiny(void **state)
{
    (void)state;
    static const flux_parts parts = { "flux/models/flux-tiny-common/ae.safetensors",
                                      "flux/models/flux-tiny-common/clip_l.safetensors",
                                      "flux/models/flux-tiny-common/t5xxl.safetensors", NULL };
    sdw_bench_result r;
    sdw_model *m;
    run_bench_parts("flux/models/flux-tiny-dev/flux1-dev.safetensors", &parts, 64, 1.0f, false, &r, &m);
    assert_non_null(m->flux);
    check_result(m, &r, 64, 1.0f);
    assert_string_equal(sdw_bench_stage_label(&r, SDW_BENCH_DENOISE), "transformer eval");
    assert_string_equal(sdw_bench_stage_name(SDW_BENCH_DENOISE), "unet_eval");
    for (int s = 0; s < SDW_BENCH_STAGES; s++)
        if (r.stage[s].ran)
            printf("  %-16s %8.4f s %8.3f GFLOP\n", sdw_bench_stage_label(&r, (sdw_bench_stage)s), r.stage[s].seconds,
                   r.stage[s].flops * 1e-9);
    /* The text stage runs T5 over all 512 tokens: its matmuls alone are 2 x 512 x the T5 linears' weights. */
    assert_true(r.stage[SDW_BENCH_TEXT].flops > 2.0 * 512 * 4 * 32 * 32);
    sdw_model_free(m);
    /* FLUX sizes are multiples of 16, not of the UNet's 64. */
    sdw_load_params lp = sdw_load_params_default();
    char vae[4096], clip[4096], t5[4096];
    snprintf(vae, sizeof vae, "%s", test_data_path(parts.vae));
    snprintf(clip, sizeof clip, "%s", test_data_path(parts.clip_l));
    snprintf(t5, sizeof t5, "%s", test_data_path(parts.t5xxl));
    lp.vae_path = vae;
    lp.clip_l_path = clip;
    lp.t5_path = t5;
    assert_int_equal(sdw_model_load(test_data_path("flux/models/flux-tiny-dev/flux1-dev.safetensors"), &lp, &m),
                     SDW_OK);
    sdw_bench_opts o;
    sdw_bench_opts_init(&o);
    o.width = 48;
    o.height = 40;
    o.peak_bf16 = &peak_bf16;
    o.peak_f32 = &peak_f32;
    assert_int_equal(sdw_bench_run(m, &o, &r), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "multiples of 16"));
    sdw_model_free(m);
}

/* SD3-medium style (CLIP-L + CLIP-G + T5 text encode, the MMDiT twice a
 * step with CFG, the VAE in the checkpoint) and SD3.5-medium style (MMDiT-X's
 * image-only attention, q/k norms; cfg 1: one pass): the backend's count of
 * an evaluation is sdw_bench_sd3_flops'. */
static void test_bench_sd3_tiny(void **state)
{
    (void)state;
    static const flux_parts parts = { NULL, "sd3/models/text_encoders/clip_l.safetensors",
                                      "sd3/models/text_encoders/t5xxl.safetensors",
                                      "sd3/models/text_encoders/clip_g.safetensors" };
    static const struct {
        const char *model;
        float cfg;
        sdw_family family;
    } cases[] = { { "sd3/models/sd3-tiny/sd3-tiny.safetensors", 5.0f, SDW_FAMILY_SD3 },
                  { "sd3/models/sd35-tiny/sd35-tiny.safetensors", 1.0f, SDW_FAMILY_SD35_MEDIUM } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sdw_bench_result r;
        sdw_model *m;
        run_bench_parts(cases[i].model, &parts, 64, cases[i].cfg, false, &r, &m);
        assert_non_null(m->mmdit);
        assert_int_equal(m->info.family, cases[i].family);
        check_result(m, &r, 64, cases[i].cfg);
        assert_string_equal(sdw_bench_stage_label(&r, SDW_BENCH_DENOISE), "transformer eval");
        close_to(r.stage[SDW_BENCH_DENOISE].flops, r.denoiser_flops_analytic, 1e-9, "SD3: counted = architecture");
        printf("  %s, cfg %g: transformer eval %.4f GFLOP counted, %.4f from the architecture (ratio %.9f); "
               "text encode %.4f GFLOP\n", cases[i].model, cases[i].cfg, r.stage[SDW_BENCH_DENOISE].flops * 1e-9,
               r.denoiser_flops_analytic * 1e-9, r.stage[SDW_BENCH_DENOISE].flops / r.denoiser_flops_analytic,
               r.stage[SDW_BENCH_TEXT].flops * 1e-9);
        /* The text stage runs T5 over its 256 tokens: its matmuls alone are 2 x 256 x the T5 linears' weights. */
        assert_true(r.stage[SDW_BENCH_TEXT].flops > 2.0 * 256 * 2 * 4 * 32 * 32);
        sdw_model_free(m);
    }
}

/* The SD3 count, term by term, for SD3.5-large at 1024x1024 (4096 image
 * tokens, 77 + 256 text tokens): 2 x the blocks' weights x the tokens each
 * stream runs them on, plus the joint attention in 38 blocks (the last with
 * image queries only); embedders, modulations and the final layer well under
 * 1%. The mediums printed beside it. */
static void test_sd3_flops_full(void **state)
{
    (void)state;
    sdw_mmdit_config c = { .patch = 2, .in_channels = 16, .out_channels = 16, .depth = 38, .hidden = 2432,
                           .heads = 38, .head_dim = 64, .pos_max = 192, .joint_dim = 4096, .pooled_dim = 2048,
                           .qk_norm = true };
    const double N = 4096, T = sdw_bench_sd3_context(256), L = N + T, H = 2432, D = 38;
    assert_true(T == 333);
    double f = sdw_bench_sd3_flops(&c, 4096, 333);
    /* Per block and stream 12 H^2 (qkv 3, proj 1, MLP 8); the last context stream only its qkv. */
    double weights = 2 * (N * D * 12 * H * H + T * ((D - 1) * 12 * H * H + 3 * H * H));
    double attn = (D - 1) * 4 * L * L * H + 4 * N * L * H;
    double rest = f - weights - attn;
    assert_true(rest > 0 && rest < 0.01 * f);
    printf("  SD3.5-large 1024x1024: %.1f TFLOP per MMDiT pass (attention %.1f%%), %.1f a CFG step\n", f * 1e-12,
           100 * attn / f, 2 * f * 1e-12);
    c.depth = 24;
    c.hidden = 1536;
    c.heads = 24;
    c.pos_max = 384;
    for (int i = 0; i <= 12; i++) c.dual[i] = true;
    double medium35 = sdw_bench_sd3_flops(&c, 4096, 333);
    c.qk_norm = false;
    c.pos_max = 192;
    for (int i = 0; i <= 12; i++) c.dual[i] = false;
    double medium3 = sdw_bench_sd3_flops(&c, 4096, 333);
    /* MMDiT-X adds attn2 (qkv, proj: 4 H^2 a token) and its N^2 attention in 13 blocks. */
    close_to(medium35 - medium3, 13 * (2 * N * 4 * 1536.0 * 1536 + 4 * N * N * 1536 + 2 * 3 * 1536.0 * 1536), 1e-9,
             "MMDiT-X's share");
    printf("  SD3-medium %.1f, SD3.5-medium %.1f TFLOP per pass at 1024x1024\n", medium3 * 1e-12, medium35 * 1e-12);
}

/* The FLUX count, term by term, for FLUX.1 schnell at 1024x1024 (4096 image
 * tokens, 256 text tokens): 12B weights x 2 x 4352 tokens, plus the joint
 * attention over 4352 tokens in 57 blocks. */
static void test_flux_flops_full(void **state)
{
    (void)state;
    sdw_flux_config c = { .in_channels = 64, .hidden = 3072, .heads = 24, .head_dim = 128, .axes_dim = { 16, 56, 56 },
                          .depth = 19, .depth_single = 38, .mlp_hidden = 12288, .context_dim = 4096, .vec_dim = 768,
                          .theta = 10000, .guidance_embed = false, .qkv_bias = true };
    double f = sdw_bench_flux_flops(&c, 4096, 256), H = 3072, L = 4352;
    /* Linear weights applied to every token: the blocks' (19 x 2 streams x 12 H^2 + 38 x 12 H^2). */
    double per_token = 19 * 12 * H * H + 38 * 12 * H * H;
    double attn = 57 * 4 * L * L * H;
    double rest = f - 2 * L * per_token - attn;
    /* img_in, txt_in, the final linear, embedders and modulations: well under 1%. */
    assert_true(rest > 0 && rest < 0.01 * f);
    printf("  FLUX schnell 1024x1024: %.1f TFLOP per transformer pass (attention %.1f%%)\n", f * 1e-12,
           100 * attn / f);
}

/* SD1 with a ControlNet (balanced, scale 1, every step): the net's own
 * stage runs at the denoiser's batch and counts FLOPs; the evaluation and
 * the step count the UNet's plus the net's, so the step with the net
 * exceeds the step without it by the net's count; the JSON and --paired
 * carry the new stage. */
static void test_bench_controlnet_tiny(void **state)
{
    (void)state;
    sdw_model *m = load_parts("models/sd1-tiny/sd1-tiny.safetensors", NULL);
    sdw_controlnet *cn;
    if (sdw_controlnet_load(m->be, test_data_path("controlnet/models/cn-sd1-tiny/cn-sd1-tiny.safetensors"), &cn) !=
        SDW_OK)
        fail_msg("load the ControlNet: %s", sdw_last_error());
    sdw_bench_result without, with;
    bench_on(m, 64, 7.0f, false, NULL, &without);
    bench_on(m, 64, 7.0f, true, cn, &with);
    check_result(m, &with, 64, 7.0f);
    check_paired(&with);
    const sdw_bench_stage_result *c = &with.stage[SDW_BENCH_CONTROL];
    assert_true(c->ran && c->flops > 0 && c->n_shapes > 0);
    assert_int_equal(c->samples, 2);
    close_to(with.stage[SDW_BENCH_STEP].flops - without.stage[SDW_BENCH_STEP].flops, c->flops, 0.01,
             "the step's FLOPs with the ControlNet less those without");
    close_to(with.stage[SDW_BENCH_DENOISE].flops - without.stage[SDW_BENCH_DENOISE].flops, c->flops, 0.01,
             "the evaluation's FLOPs with the ControlNet less those without");
    /* The text, decode and encode stages do not carry it. */
    close_to(with.stage[SDW_BENCH_TEXT].flops, without.stage[SDW_BENCH_TEXT].flops, 1e-12, "text FLOPs");
    close_to(with.stage[SDW_BENCH_DECODE].flops, without.stage[SDW_BENCH_DECODE].flops, 1e-12, "decode FLOPs");
    close_to(with.control_share, c->seconds / with.stage[SDW_BENCH_STEP].seconds, 1e-12, "share of the step");
    assert_string_equal(sdw_bench_stage_name(SDW_BENCH_CONTROL), "controlnet_eval");
    assert_string_equal(sdw_bench_stage_label(&with, SDW_BENCH_CONTROL), "controlnet eval");
    cJSON *j = sdw_bench_result_json(&with);
    assert_non_null(j);
    close_to(cJSON_GetObjectItem(j, "controlnet_share_of_step")->valuedouble, with.control_share, 1e-12,
             "JSON share");
    cJSON_Delete(j);
    printf("  step %.3f GFLOP without, %.3f with; controlnet %.3f GFLOP, %.1f%% of the step's time\n",
           without.stage[SDW_BENCH_STEP].flops * 1e-9, with.stage[SDW_BENCH_STEP].flops * 1e-9, c->flops * 1e-9,
           100 * with.control_share);
    sdw_controlnet_free(cn);
    sdw_model_free(m);
}

/* A ControlNet for another base is refused before anything runs, naming
 * it; so is one on a model without a UNet. */
static void test_bench_controlnet_refused(void **state)
{
    (void)state;
    sdw_model *m = load_parts("models/sd1-tiny/sd1-tiny.safetensors", NULL);
    sdw_controlnet *cn;
    assert_int_equal(
        sdw_controlnet_load(m->be, test_data_path("controlnet/models/cn-sdxl-tiny/cn-sdxl-tiny.safetensors"), &cn),
        SDW_OK);
    sdw_bench_opts o;
    sdw_bench_opts_init(&o);
    o.width = o.height = 64;
    o.peak_bf16 = &peak_bf16;
    o.peak_f32 = &peak_f32;
    o.control = cn;
    o.control_name = "--control";
    sdw_bench_result r;
    assert_int_equal(sdw_bench_run(m, &o, &r), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "--control"));
    assert_non_null(strstr(sdw_last_error(), "cn-sdxl-tiny.safetensors"));
    assert_non_null(strstr(sdw_last_error(), "another UNet"));
    assert_false(r.stage[SDW_BENCH_STEP].ran);
    sdw_controlnet_free(cn);
    sdw_model_free(m);

    static const flux_parts parts = { "flux/models/flux-tiny-common/ae.safetensors",
                                      "flux/models/flux-tiny-common/clip_l.safetensors",
                                      "flux/models/flux-tiny-common/t5xxl.safetensors", NULL };
    m = load_parts("flux/models/flux-tiny-dev/flux1-dev.safetensors", &parts);
    assert_int_equal(
        sdw_controlnet_load(m->be, test_data_path("controlnet/models/cn-sd1-tiny/cn-sd1-tiny.safetensors"), &cn),
        SDW_OK);
    o.control = cn;
    o.control_name = NULL;
    assert_int_equal(sdw_bench_run(m, &o, &r), SDW_ERR_UNSUPPORTED);
    assert_non_null(strstr(sdw_last_error(), "the ControlNet"));
    sdw_controlnet_free(cn);
    sdw_model_free(m);
}

static void test_bad_size(void **state)
{
    (void)state;
    sdw_model *m;
    sdw_load_params lp = sdw_load_params_default();
    assert_int_equal(sdw_model_load(test_data_path("models/sd1-tiny/sd1-tiny.safetensors"), &lp, &m), SDW_OK);
    sdw_bench_opts o;
    sdw_bench_opts_init(&o);
    o.width = o.height = 60;
    o.peak_bf16 = &peak_bf16;
    o.peak_f32 = &peak_f32;
    sdw_bench_result r;
    assert_int_equal(sdw_bench_run(m, &o, &r), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "multiples"));
    o.width = o.height = 64;
    o.repeat = 0;
    assert_int_equal(sdw_bench_run(m, &o, &r), SDW_ERR_INVALID_ARG);
    sdw_model_free(m);
}

int main(void)
{
    /* Rates are only checked for sense here, so one thread: with ctest
     * running tests side by side on few cores, OpenMP barriers of tiny ops
     * waiting on descheduled threads make a 2-second test take 30. */
    omp_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peaks),
        cmocka_unit_test(test_unet_flops_sd15),
        cmocka_unit_test(test_bench_sd1_tiny),
        cmocka_unit_test(test_bench_sdxl_tiny_no_cfg),
        cmocka_unit_test(test_bench_inpaint_tiny),
        cmocka_unit_test(test_bench_flux_tiny),
        cmocka_unit_test(test_flux_flops_full),
        cmocka_unit_test(test_bench_sd3_tiny),
        cmocka_unit_test(test_sd3_flops_full),
        cmocka_unit_test(test_bench_controlnet_tiny),
        cmocka_unit_test(test_bench_controlnet_refused),
        cmocka_unit_test(test_bad_size),
    };
    return cmocka_run_group_tests(tests, measure_peaks, NULL);
}
