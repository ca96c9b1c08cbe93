/* test_fullsize_models.c: the real architectures, at full size, against the
 * fp32 diffusers references of tests/data/fullsize (README.md section 2). For
 * each family (sd15, sd15-inpaint, sd21-v, sdxl) the seed-1 random-weight
 * checkpoint written by sdw-make-fullsize (tests/fullsize/make_checkpoints.sh)
 * is loaded with sdw_model_load, in f32 and then in bf16, and compared:
 *   text   every tower output the references hold (last / penultimate hidden
 *          state, pooled, SDXL's projected text_embeds), the tokenizer ids, and
 *          whole prompts through sdw_text_encode_prompt;
 *   unet   the output at t = 999 and t = 500 for the batch [uncond(""),
 *          cond("a photo of a cat")], with the per-block channel-mean
 *          fingerprints (time / add embedding, every down, mid and up block);
 *   vae    decode of vae.decoder_input; encode (mean, clamped log-variance) of
 *          the README's pattern image, generated here from its recipe.
 * f32 is gated at rel L2 < 1e-4 (fingerprints included); bf16 against the same
 * f32 references at the per-component tolerances below. Every metric is
 * printed, and every comparison runs before the test fails, so one run shows
 * where a divergence starts. Not compared: SD2's text_encoder_full24.text_embeds
 * (layer 24 + text_projection, which the SD2 loader deliberately skips), the
 * e2e.* tensors (sampler pipeline, not models). Also printed: load time and
 * peak RSS of each load, time (and cores had), peak RSS and activation
 * scratch of each UNet evaluation and VAE pass. The family and inpaint flag
 * that sdw_model_probe and `sd-worker info --json` report are asserted (and
 * the prediction: eps, or v for sd21-v with the override it is loaded with).
 *
 * env: SDW_FULLSIZE_DIR                checkpoint folder (default <build>/fullsize)
 *      SDW_FULLSIZE_NO_ARENA_RESERVE=1 do not pre-reserve the arena (see arena_reserve)
 *
 * Not part of `make test` (ctest label "full"; `make test-full`). The
 * checkpoints are read from $SDW_FULLSIZE_DIR (default <build>/fullsize) as
 * <family>-seed1.safetensors; a family whose file is absent is skipped.
 * Arguments name the families to run (default: all). */
#include "testkit.h"
#include "io/json_file.h"
#include "models/model.h"
#include <cjson/cJSON.h>
#include <malloc.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#ifndef SDW_FULLSIZE_DEFAULT_DIR
#define SDW_FULLSIZE_DEFAULT_DIR "build/fullsize"
#endif
#ifndef SDW_WORKER_BIN
#define SDW_WORKER_BIN "build/sd-worker"
#endif

/* f32: the references are fp32 computations from the same f16 weights, so
 * only summation order separates us from them (measured: <= 3.1e-6 on every
 * output, <= 7.6e-6 on the fingerprints, <= 8.6e-6 on the VAE). */
#define F32_GATE 1e-4
/* bf16 (weights and matmul / conv / attention inputs in bf16, f32
 * accumulation and f32 everything else) against the same f32 references.
 * Measured on all four families (AMX, oneDNN 3.x): text 5.8e-3 .. 7.3e-3,
 * UNet outputs 7.2e-3 .. 7.5e-3, fingerprints <= 5.6e-3, VAE decode 1.8e-2,
 * encode 1.3e-2. The gates leave 2-3x headroom. */
#define BF16_TEXT_GATE 2e-2
#define BF16_UNET_GATE 2e-2
#define BF16_FINGERPRINT_GATE 2e-2
#define BF16_VAE_GATE 4e-2

typedef struct {
    const char *name;     /* family label of the recipe */
    const char *ref;      /* reference file stem under tests/data/fullsize */
    const char *text_ref; /* where its text-encoder references are (sd15-inpaint: sd15's) */
    sdw_family family;
    bool inpaint;
    sdw_prediction prediction;  /* what the test loads with (AUTO: the loader's rule) */
    const char *info_family;    /* what `sd-worker info --json` must say */
} family_case;

static const family_case cases[] = {
    { "sd15", "sd15", "sd15", SDW_FAMILY_SD1, false, SDW_PREDICTION_AUTO, "sd1" },
    { "sd15-inpaint", "sd15-inpaint", "sd15", SDW_FAMILY_SD1, true, SDW_PREDICTION_AUTO, "sd1" },
    /* The SD2.1-768-v file has no v-prediction marker: the user sets it. */
    { "sd21-v", "sd21-v", "sd21-v", SDW_FAMILY_SD2, false, SDW_PREDICTION_V, "sd2" },
    { "sdxl", "sdxl", "sdxl", SDW_FAMILY_SDXL, false, SDW_PREDICTION_AUTO, "sdxl" },
};

/* ---- small helpers ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A /proc/self/status field in kB, or -1. */
static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t l = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, l) && line[l] == ':') {
            v = atol(line + l + 1);
            break;
        }
    fclose(f);
    return v;
}

/* Resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0); false if not possible. */
static bool reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

static double gib(long kb) { return (double)kb / (1024.0 * 1024.0); }

/* CPU seconds of the whole process (all threads): cpu / wall shows how many
 * cores a timed section really had (the machine may be shared). */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* An arena for the UNet / VAE passes, reserved as one large chunk up front.
 * Works around src/core/arena.c: after sdw_arena_restore only the newest
 * chunk is bumped from, so a pass that starts on an empty (or too small)
 * arena mallocs a fresh chunk for almost every block while the emptied ones
 * sit unused until the next sdw_arena_reset (SDXL f32 at 128x128 latents:
 * > 11 GB on top of 13 GB of weights, killed by the OOM killer on a 24 GB
 * machine; sd15: ~0.9 GiB per pass). One chunk holds every block's scratch
 * in LIFO order, and only the pages a pass touches become resident, so the
 * reported peaks are the passes' real needs. */
#define ARENA_RESERVE ((size_t)8 << 30)
static void arena_reserve(sdw_arena *a)
{
    const char *no = getenv("SDW_FULLSIZE_NO_ARENA_RESERVE");  /* to see the arena's own behaviour */
    if (no && *no && strcmp(no, "0")) return;
    if (sdw_arena_alloc(a, ARENA_RESERVE)) {
        sdw_arena_reset(a);
        a->peak = 0;  /* from here on: the passes' own high-water mark */
    } else printf("  (could not reserve %zu GiB of address space for the arena; passes may overgrow)\n",
                ARENA_RESERVE >> 30);
}

/* Every comparison of a family runs; failures are counted and reported at the end. */
typedef struct {
    int failures;
    char first[512];
    double worst[8];   /* per metric group, for the summary */
} tally;

enum { G_TEXT, G_UNET, G_FP, G_VAE, G_NGROUPS };
static const char *const group_name[] = { "text", "unet", "fingerprints", "vae" };

static void check(tally *t, int group, const char *what, const float *got, const float *ref, size_t n, double gate)
{
    double rel = test_rel_l2(got, ref, n), mx = test_max_abs(got, ref, n);
    bool ok = rel < gate;  /* NaN fails */
    printf("  %-56s rel_l2 %.3e  max_abs %.3e  (gate %.0e)%s\n", what, rel, mx, gate, ok ? "" : "  FAIL");
    fflush(stdout);
    if (!(rel <= t->worst[group])) t->worst[group] = rel;
    if (!ok && t->failures++ == 0)
        snprintf(t->first, sizeof t->first, "%s: rel L2 %.3g >= %.3g (max abs %.3g)", what, rel, gate, mx);
}

static const char *checkpoint_path(const family_case *fc)
{
    static char path[4096];
    const char *dir = getenv("SDW_FULLSIZE_DIR");
    if (!dir || !*dir) dir = SDW_FULLSIZE_DEFAULT_DIR;
    snprintf(path, sizeof path, "%s/%s-seed1.safetensors", dir, fc->name);
    return path;
}

static int32_t *load_ids(const sdw_safetensors *ref, const char *name)
{
    int64_t n;
    int64_t *v = test_load_i64(ref, name, &n);
    assert_int_equal(n, 2 * SDW_CLIP_CONTEXT);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)v[i];
    free(v);
    return ids;
}

/* ---- family, inpaint and prediction as the probe and `sd-worker info` see them ---- */

static void check_info(const family_case *fc, const char *ckpt)
{
    sdw_load_params p = sdw_load_params_default();
    sdw_model_info in;
    if (sdw_model_probe(ckpt, &p, &in) != SDW_OK) fail_msg("probe %s: %s", ckpt, sdw_last_error());
    printf("probe: family %s, inpaint %d, prediction %s (%s), %d tensors (%d unknown), unet %.1fM vae %.1fM text %.1fM\n",
           sdw_family_name(in.family), in.inpaint, sdw_prediction_name(in.prediction), in.prediction_source,
           in.n_tensors, in.n_unknown, in.params_unet / 1e6, in.params_vae / 1e6, in.params_text / 1e6);
    assert_int_equal(in.family, fc->family);
    assert_int_equal(in.inpaint, fc->inpaint);

    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' info --json '%s'", SDW_WORKER_BIN, ckpt);
    FILE *f = popen(cmd, "r");
    if (!f) fail_msg("popen %s failed", cmd);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    size_t r;
    while ((r = fread(out + len, 1, cap - 1 - len, f)) > 0) len += r;
    out[len] = 0;
    int rc = pclose(f);
    if (rc != 0) fail_msg("%s exited with status %d:\n%s", cmd, rc, out);
    cJSON *j = cJSON_Parse(out);
    if (!j) fail_msg("%s printed no JSON:\n%s", cmd, out);
    const char *fam = sdw_json_str(j, "family", "?"), *pred = sdw_json_str(j, "prediction", "?");
    bool inpaint = cJSON_IsTrue(cJSON_GetObjectItem(j, "inpaint"));
    printf("sd-worker info: family %s, inpaint %s, prediction %s (%s)\n", fam, inpaint ? "true" : "false", pred,
           sdw_json_str(j, "prediction_source", "?"));
    assert_string_equal(fam, fc->info_family);
    assert_int_equal(inpaint, fc->inpaint);
    cJSON_Delete(j);
    free(out);
    /* With the override the test loads with, the prediction is what it must be. */
    if (fc->prediction != SDW_PREDICTION_AUTO) {
        p.prediction = fc->prediction;
        assert_int_equal(sdw_model_probe(ckpt, &p, &in), SDW_OK);
        assert_int_equal(in.prediction, fc->prediction);
    } else {
        assert_int_equal(in.prediction, SDW_PREDICTION_EPS);
    }
}

/* ---- text encoders ---- */

static void check_text(tally *t, sdw_model *m, const family_case *fc, const sdw_safetensors *ref, double gate)
{
    sdw_text_conditioner *tc = &m->text;
    sdw_backend *be = m->be;
    const int T = SDW_CLIP_CONTEXT, B = 2;
    char what[256];
    static const char *const prompts[2] = { "a photo of a cat", "" };
    int32_t *ids1 = load_ids(ref, "text_encoder.input_ids");
    int32_t *ids2 = fc->family == SDW_FAMILY_SDXL ? load_ids(ref, "text_encoder_2.input_ids") : NULL;

    /* The tokenizer gives the reference ids (exactly). */
    for (int b = 0; b < B; b++) {
        int32_t ids[SDW_CLIP_CONTEXT];
        assert_int_equal(sdw_tokenize(prompts[b], fc->family == SDW_FAMILY_SD2 ? SDW_PAD_ZERO : SDW_PAD_EOS, ids, NULL),
                         SDW_OK);
        assert_memory_equal(ids, ids1 + b * T, sizeof ids);
        if (ids2) {
            assert_int_equal(sdw_tokenize(prompts[b], SDW_PAD_ZERO, ids, NULL), SDW_OK);
            assert_memory_equal(ids, ids2 + b * T, sizeof ids);
        }
    }

    const sdw_clip_text *te1 = tc->te1;
    int W1 = te1->cfg.width;
    float *h = malloc((size_t)B * T * 1280 * sizeof *h), *pooled = malloc((size_t)B * 1280 * sizeof *pooled);
    float *r;
    /* Tower 1: final-norm last layer + pooled (SD1, SD2 layer 23 of 24, SDXL TE1), and the penultimate layer. */
    assert_int_equal(sdw_clip_text_forward(be, &tc->arena, te1, ids1, B, 0, true, h, pooled), SDW_OK);
    if (fc->family != SDW_FAMILY_SDXL) {
        r = test_load_f32(ref, "text_encoder.last_hidden_state", NULL);
        check(t, G_TEXT, "text_encoder.last_hidden_state", h, r, (size_t)B * T * W1, gate);
        free(r);
    }
    r = test_load_f32(ref, "text_encoder.pooled", NULL);
    check(t, G_TEXT, "text_encoder.pooled", pooled, r, (size_t)B * W1, gate);
    free(r);
    if (fc->family != SDW_FAMILY_SD2) {
        assert_int_equal(sdw_clip_text_forward(be, &tc->arena, te1, ids1, B, 1, false, h, NULL), SDW_OK);
        r = test_load_f32(ref, "text_encoder.penultimate_hidden_state", NULL);
        check(t, G_TEXT, "text_encoder.penultimate_hidden_state", h, r, (size_t)B * T * W1, gate);
        free(r);
    } else {
        printf("  %-56s skipped: needs layer 24 and text_projection, which the SD2 loader does not load\n",
               "text_encoder_full24.text_embeds");
        assert_int_equal(te1->cfg.layers, 23);
    }
    /* SDXL tower 2 (bigG): penultimate layer, and the projected pooled output. */
    if (tc->te2) {
        const sdw_clip_text *te2 = tc->te2;
        int W2 = te2->cfg.width;
        assert_int_equal(sdw_clip_text_forward(be, &tc->arena, te2, ids2, B, 1, false, h, NULL), SDW_OK);
        r = test_load_f32(ref, "text_encoder_2.penultimate_hidden_state", NULL);
        check(t, G_TEXT, "text_encoder_2.penultimate_hidden_state", h, r, (size_t)B * T * W2, gate);
        free(r);
        assert_int_equal(sdw_clip_text_forward(be, &tc->arena, te2, ids2, B, 0, true, h, pooled), SDW_OK);
        r = test_load_f32(ref, "text_encoder_2.text_embeds", NULL);
        check(t, G_TEXT, "text_encoder_2.text_embeds", pooled, r, (size_t)B * te2->cfg.proj, gate);
        free(r);
    }

    /* Whole prompts through the conditioner: the UNet conditioning of each prompt. */
    int D = tc->context_dim;
    float *want = malloc((size_t)B * T * D * sizeof *want), *want_pooled = NULL;
    if (fc->family == SDW_FAMILY_SDXL) {
        float *a = test_load_f32(ref, "text_encoder.penultimate_hidden_state", NULL);
        float *b = test_load_f32(ref, "text_encoder_2.penultimate_hidden_state", NULL);
        int Wa = 768, Wb = D - 768;
        for (size_t i = 0; i < (size_t)B * T; i++) {
            memcpy(want + i * D, a + i * Wa, Wa * sizeof(float));
            memcpy(want + i * D + Wa, b + i * Wb, Wb * sizeof(float));
        }
        free(a);
        free(b);
        want_pooled = test_load_f32(ref, "text_encoder_2.text_embeds", NULL);
    } else {
        float *a = test_load_f32(ref, "text_encoder.last_hidden_state", NULL);
        memcpy(want, a, (size_t)B * T * D * sizeof(float));
        free(a);
    }
    for (int b = 0; b < B; b++) {
        sdw_text_embedding e;
        if (sdw_text_encode_prompt(be, tc, prompts[b], 1, 0, &e) != SDW_OK) fail_msg("%s", sdw_last_error());
        assert_int_equal(e.n_tokens, T);
        snprintf(what, sizeof what, "prompt \"%s\" conditioning", prompts[b]);
        check(t, G_TEXT, what, e.context, want + (size_t)b * T * D, (size_t)T * D, gate);
        if (want_pooled) {
            snprintf(what, sizeof what, "prompt \"%s\" pooled", prompts[b]);
            check(t, G_TEXT, what, e.pooled, want_pooled + (size_t)b * tc->pooled_dim, (size_t)tc->pooled_dim, gate);
        }
        sdw_text_embedding_free(&e);
    }
    free(want);
    free(want_pooled);
    free(h);
    free(pooled);
    free(ids1);
    free(ids2);
}

/* ---- UNet ---- */

typedef struct {
    tally *t;
    const sdw_safetensors *ref;
    int step;  /* 999 or 500 */
    double gate;
    int checked;
} tap_ctx;

/* The references hold channel means over H, W ([N, C]); our tap gives NHWC. */
static void fingerprint_tap(void *user, const char *name, const float *x, int N, int H, int W, int C)
{
    tap_ctx *tc = user;
    char key[128], what[160];
    snprintf(key, sizeof key, "unet.t%d.intermediate.%s", tc->step, name);
    if (!sdw_st_find(tc->ref, key)) return;
    float *r = test_load_f32(tc->ref, key, NULL);
    float *got = malloc((size_t)N * C * sizeof *got);
    double *acc = calloc((size_t)C, sizeof *acc);
    for (int n = 0; n < N; n++) {
        memset(acc, 0, (size_t)C * sizeof *acc);
        const float *xn = x + (size_t)n * H * W * C;
        for (size_t p = 0; p < (size_t)H * W; p++)
            for (int c = 0; c < C; c++) acc[c] += xn[p * C + c];
        for (int c = 0; c < C; c++) got[(size_t)n * C + c] = (float)(acc[c] / ((double)H * W));
    }
    snprintf(what, sizeof what, "unet t=%d %s%s [rss %.2f GiB]", tc->step, name, H * W > 1 ? " (channel means)" : "",
             gib(status_kb("VmRSS")));
    check(tc->t, G_FP, what, got, r, (size_t)N * C, tc->gate);
    tc->checked++;
    free(acc);
    free(got);
    free(r);
}

static void check_unet(tally *t, sdw_model *m, const family_case *fc, const sdw_safetensors *ref,
                       const sdw_safetensors *text_ref, double gate, double fp_gate, double secs[2])
{
    const sdw_unet_config *c = sdw_unet_get_config(m->unet);
    const sdw_st_tensor *ts = sdw_st_find(ref, "unet.sample");
    assert_non_null(ts);
    int C = (int)ts->shape[1], H = (int)ts->shape[2], W = (int)ts->shape[3], N = 2, T = SDW_CLIP_CONTEXT;
    assert_int_equal(C, c->in_channels);
    float *sample = test_load_f32(ref, "unet.sample", NULL);
    float *x = malloc((size_t)N * H * W * C * sizeof *x);
    test_nchw_to_nhwc(sample, 1, C, H, W, x);
    memcpy(x + (size_t)H * W * C, x, (size_t)H * W * C * sizeof *x);

    /* Conditioning from the stored text-encoder outputs: batch [uncond(""), cond(prompt)] = rows [1, 0]. */
    int D = c->context_dim;
    float *ctx = malloc((size_t)N * T * D * sizeof *ctx), *y = NULL;
    if (fc->family == SDW_FAMILY_SDXL) {
        float *a = test_load_f32(text_ref, "text_encoder.penultimate_hidden_state", NULL);
        float *b = test_load_f32(text_ref, "text_encoder_2.penultimate_hidden_state", NULL);
        int Wa = 768, Wb = D - 768;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < T; i++) {
                size_t src = (size_t)(1 - n) * T + i, dst = (size_t)n * T + i;
                memcpy(ctx + dst * D, a + src * Wa, Wa * sizeof(float));
                memcpy(ctx + dst * D + Wa, b + src * Wb, Wb * sizeof(float));
            }
        free(a);
        free(b);
        float *te = test_load_f32(text_ref, "text_encoder_2.text_embeds", NULL);
        float *ids = test_load_f32(ref, "unet.time_ids", NULL);
        int pd = c->adm_in - 6 * c->addition_time_embed_dim;
        assert_int_equal(pd, 1280);
        y = malloc((size_t)N * c->adm_in * sizeof *y);
        for (int n = 0; n < N; n++)
            sdw_unet_text_time_y(te + (size_t)(1 - n) * pd, pd, ids + n * 6, 6, c->addition_time_embed_dim,
                                 y + (size_t)n * c->adm_in);
        free(te);
        free(ids);
    } else {
        float *a = test_load_f32(text_ref, "text_encoder.last_hidden_state", NULL);
        for (int n = 0; n < N; n++) memcpy(ctx + (size_t)n * T * D, a + (size_t)(1 - n) * T * D, (size_t)T * D * sizeof(float));
        free(a);
    }

    float *out = malloc((size_t)N * H * W * 4 * sizeof *out), *got = malloc((size_t)N * H * W * 4 * sizeof *got);
    sdw_arena arena = { 0 };
    arena_reserve(&arena);
    static const int steps[2] = { 999, 500 };
    for (int k = 0; k < 2; k++) {
        float tv[2] = { (float)steps[k], (float)steps[k] };
        tap_ctx tcx = { t, ref, steps[k], fp_gate, 0 };
        sdw_unet_input in = { x, N, H, W, tv, ctx, T, y, fingerprint_tap, &tcx, NULL, NULL, NULL };
        sdw_arena_reset(&arena);
        bool reset = reset_peak_rss();
        double t0 = now_s(), c0 = cpu_s();
        if (sdw_unet_forward(m->be, &arena, m->unet, &in, out) != SDW_OK) fail_msg("%s", sdw_last_error());
        secs[k] = now_s() - t0;   /* includes the (cheap) fingerprint taps */
        double cores = (cpu_s() - c0) / secs[k];
        assert_true(tcx.checked >= (c->adm_in ? 2 : 1) + 2 * c->n_levels + 1);
        test_nhwc_to_nchw(out, N, H, W, 4, got);
        char key[64], what[96];
        snprintf(key, sizeof key, "unet.t%d.out", steps[k]);
        float *r = test_load_f32(ref, key, NULL);
        snprintf(what, sizeof what, "unet t=%d out [2,4,%d,%d]", steps[k], H, W);
        check(t, G_UNET, what, got, r, (size_t)N * H * W * 4, gate);
        free(r);
        printf("  unet t=%d: %.2f s on %.2f of %d cores%s (batch 2, %dx%d latents), peak RSS %.2f GiB%s, "
               "activation scratch %.2f GiB\n",
               steps[k], secs[k], cores, omp_get_max_threads(), k == 0 ? " (first pass: includes oneDNN primitive creation)" : "", H, W,
               gib(status_kb(reset ? "VmHWM" : "VmRSS")), reset ? "" : " (not measured: VmHWM not resettable)",
               arena.peak / (double)(1 << 30));
    }
    sdw_arena_free(&arena);
    free(sample); free(x); free(ctx); free(y); free(out); free(got);
}

/* ---- VAE ---- */

/* The README's pattern image, NHWC in [-1, 1], converted as diffusers does. */
static void pattern_image(int S, float *img)
{
    for (int yy = 0; yy < S; yy++)
        for (int xx = 0; xx < S; xx++) {
            int v[3] = { (255 * xx) / (S - 1), (255 * yy) / (S - 1), ((xx / 64) + (yy / 64)) % 2 == 0 ? 255 : 0 };
            for (int ch = 0; ch < 3; ch++) {
                float f = (float)v[ch] / 255.0f;
                img[((size_t)yy * S + xx) * 3 + ch] = 2.0f * f - 1.0f;
            }
        }
}

static void check_vae(tally *t, sdw_model *m, const sdw_safetensors *ref, double gate, double secs[2])
{
    const sdw_st_tensor *tz = sdw_st_find(ref, "vae.decoder_input");
    assert_non_null(tz);
    int lc = (int)tz->shape[1], h = (int)tz->shape[2], w = (int)tz->shape[3], S = h * 8;
    size_t npx = (size_t)S * S, nlat = (size_t)h * w * lc;
    sdw_arena arena = { 0 };
    arena_reserve(&arena);
    float *z = test_load_f32(ref, "vae.decoder_input", NULL), *zn = malloc(nlat * sizeof *zn);
    float *img = malloc(npx * 3 * sizeof *img), *img_nchw = malloc(npx * 3 * sizeof *img_nchw);
    test_nchw_to_nhwc(z, 1, lc, h, w, zn);
    bool reset = reset_peak_rss();
    double t0 = now_s();
    if (sdw_vae_decode(m->be, &arena, m->vae, zn, 1, h, w, img) != SDW_OK) fail_msg("%s", sdw_last_error());
    secs[0] = now_s() - t0;
    test_nhwc_to_nchw(img, 1, S, S, 3, img_nchw);
    float *r = test_load_f32(ref, "vae.decoder_output", NULL);
    char what[96];
    snprintf(what, sizeof what, "vae decode [1,3,%d,%d]", S, S);
    check(t, G_VAE, what, img_nchw, r, npx * 3, gate);
    free(r);

    assert_true(sdw_vae_has_encoder(m->vae));
    pattern_image(S, img);
    sdw_arena_reset(&arena);
    float *mom = malloc(2 * nlat * sizeof *mom), *mom_nchw = malloc(2 * nlat * sizeof *mom_nchw);
    t0 = now_s();
    if (sdw_vae_encode(m->be, &arena, m->vae, img, 1, S, S, mom) != SDW_OK) fail_msg("%s", sdw_last_error());
    secs[1] = now_s() - t0;
    test_nhwc_to_nchw(mom, 1, h, w, 2 * lc, mom_nchw);
    r = test_load_f32(ref, "vae.mean", NULL);
    snprintf(what, sizeof what, "vae encode mean (pattern %dx%d)", S, S);
    check(t, G_VAE, what, mom_nchw, r, nlat, gate);
    free(r);
    r = test_load_f32(ref, "vae.logvar", NULL);
    snprintf(what, sizeof what, "vae encode logvar (pattern %dx%d)", S, S);
    check(t, G_VAE, what, mom_nchw + nlat, r, nlat, gate);
    free(r);
    printf("  vae decode %.2f s, encode %.2f s, activation scratch %.2f GiB, peak RSS %.2f GiB\n", secs[0], secs[1],
           arena.peak / (double)(1 << 30), gib(status_kb(reset ? "VmHWM" : "VmRSS")));
    sdw_arena_free(&arena);
    free(z); free(zn); free(img); free(img_nchw); free(mom); free(mom_nchw);
}

/* ---- one family ---- */

static void run_family(void **state)
{
    const family_case *fc = *state;
    const char *ckpt = checkpoint_path(fc);
    struct stat sb;
    if (stat(ckpt, &sb) != 0) {
        printf("SKIP %s: %s is absent (tests/fullsize/make_checkpoints.sh writes it; set SDW_FULLSIZE_DIR)\n",
               fc->name, ckpt);
        fflush(stdout);
        skip();
    }
    char ckpt_copy[4096];
    snprintf(ckpt_copy, sizeof ckpt_copy, "%s", ckpt);
    ckpt = ckpt_copy;
    printf("==== %s: %s (%.2f GB), cpu isa %s\n", fc->name, ckpt, sb.st_size / 1e9, sdw_cpu_isa_name());
    check_info(fc, ckpt);

    char path[256];
    snprintf(path, sizeof path, "fullsize/%s.safetensors", fc->ref);
    sdw_safetensors *ref = test_open_st(path);
    snprintf(path, sizeof path, "fullsize/%s.safetensors", fc->text_ref);
    sdw_safetensors *text_ref = test_open_st(path);
    bool has_vae_ref = sdw_st_find(ref, "vae.decoder_input") != NULL;
    bool has_text_ref = sdw_st_find(text_ref, "text_encoder.input_ids") != NULL;
    assert_true(has_text_ref);

    tally t[2] = { 0 };
    double unet_s[2][2] = { { 0 } }, vae_s[2][2] = { { 0 } }, load_s[2] = { 0 };
    long hwm_kb[2] = { 0 }, rss_kb[2] = { 0 }, maxrss_kb[2] = { 0 };
    size_t weight_bytes[2] = { 0 };
    static const sdw_precision precs[2] = { SDW_PRECISION_F32, SDW_PRECISION_BF16 };
    const int nprec = test_precision_runs(SDW_PRECISION_BF16) ? 2 : 1; /* bf16 needs AVX-512 */
    for (int pi = 0; pi < nprec; pi++) {
        bool bf16 = precs[pi] == SDW_PRECISION_BF16;
        printf("---- %s %s\n", fc->name, sdw_precision_name(precs[pi]));
        sdw_load_params p = sdw_load_params_default();
        p.precision = precs[pi];
        p.prediction = fc->prediction;
        p.with_vae_encoder = true;
        long before_kb = status_kb("VmRSS");
        bool reset = reset_peak_rss();
        double t0 = now_s();
        sdw_model *m = NULL;
        if (sdw_model_load(ckpt, &p, &m) != SDW_OK) fail_msg("load %s: %s", ckpt, sdw_last_error());
        load_s[pi] = now_s() - t0;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        maxrss_kb[pi] = ru.ru_maxrss;
        hwm_kb[pi] = reset ? status_kb("VmHWM") : -1;
        rss_kb[pi] = status_kb("VmRSS");
        const sdw_model_info *in = sdw_model_get_info(m);
        weight_bytes[pi] = in->weight_bytes;
        printf("load: %.1f s, %.2f GB of weights in %s; RSS before %.2f GiB, peak during the load %.2f GiB%s, "
               "after %.2f GiB (process ru_maxrss %.2f GiB)\n",
               load_s[pi], in->weight_bytes / 1e9, sdw_precision_name(in->precision), gib(before_kb), gib(hwm_kb[pi]),
               reset ? "" : " (VmHWM not resettable)", gib(rss_kb[pi]), gib(maxrss_kb[pi]));
        fflush(stdout);
        assert_int_equal(in->family, fc->family);
        assert_int_equal(in->inpaint, fc->inpaint);
        assert_int_equal(in->precision, precs[pi]);
        if (fc->prediction != SDW_PREDICTION_AUTO) assert_int_equal(in->prediction, fc->prediction);

        check_text(&t[pi], m, fc, text_ref, bf16 ? BF16_TEXT_GATE : F32_GATE);
        check_unet(&t[pi], m, fc, ref, text_ref, bf16 ? BF16_UNET_GATE : F32_GATE,
                   bf16 ? BF16_FINGERPRINT_GATE : F32_GATE, unet_s[pi]);
        if (has_vae_ref) check_vae(&t[pi], m, ref, bf16 ? BF16_VAE_GATE : F32_GATE, vae_s[pi]);
        else printf("  vae: no references for %s (its VAE is sd15's, checked there)\n", fc->name);
        sdw_model_free(m);
        /* What stays resident after the free is the allocator's (glibc keeps freed heap memory); trim it so the
         * next load's peak is its own. */
        long freed_kb = status_kb("VmRSS");
        malloc_trim(0);
        printf("after sdw_model_free: RSS %.2f GiB, %.2f GiB after malloc_trim\n", gib(freed_kb), gib(status_kb("VmRSS")));
    }

    printf("==== %s summary (worst rel L2 per component%s)\n", fc->name, has_vae_ref ? "" : "; no VAE references");
    for (int pi = 0; pi < nprec; pi++) {
        printf("  %-4s", sdw_precision_name(precs[pi]));
        for (int g = 0; g < G_NGROUPS; g++) printf("  %s %.2e", group_name[g], t[pi].worst[g]);
        printf("\n       load %.1f s, peak RSS %.2f GiB (weights %.2f GB), unet t=999 %.2f s, t=500 %.2f s", load_s[pi],
               gib(hwm_kb[pi]), weight_bytes[pi] / 1e9, unet_s[pi][0], unet_s[pi][1]);
        if (has_vae_ref) printf(", vae decode %.2f s, encode %.2f s", vae_s[pi][0], vae_s[pi][1]);
        printf("\n");
    }
    fflush(stdout);
    sdw_st_close(ref);
    sdw_st_close(text_ref);
    for (int pi = 0; pi < nprec; pi++)
        if (t[pi].failures)
            fail_msg("%s %s: %d comparisons failed; first: %s", fc->name, sdw_precision_name(precs[pi]),
                     t[pi].failures, t[pi].first);
}

int main(int argc, char **argv)
{
    struct CMUnitTest tests[sizeof cases / sizeof cases[0]];
    size_t n = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool want = argc < 2;
        for (int a = 1; a < argc; a++) want |= !strcmp(argv[a], cases[i].name);
        if (!want) continue;
        tests[n] = (struct CMUnitTest){ cases[i].name, run_family, NULL, NULL, (void *)&cases[i] };
        n++;
    }
    for (int a = 1; a < argc; a++) {
        bool known = false;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) known |= !strcmp(argv[a], cases[i].name);
        if (!known) {
            fprintf(stderr, "usage: %s [sd15|sd15-inpaint|sd21-v|sdxl]...\n", argv[0]);
            return 2;
        }
    }
    /* Nothing to run: exit 77, which ctest reports as skipped (SKIP_RETURN_CODE). */
    size_t present = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat sb;
        const char *ckpt = checkpoint_path(tests[i].initial_state);
        if (stat(ckpt, &sb) == 0) present++;
        else printf("SKIP %s: %s is absent (tests/fullsize/make_checkpoints.sh writes it; set SDW_FULLSIZE_DIR)\n",
                    tests[i].name, ckpt);
    }
    if (present == 0) return 77;
    return _cmocka_run_group_tests("fullsize_models", tests, n, NULL, NULL);
}
