/* test_cond_list.c: ComfyUI's conditioning lists (sdw_pipeline_params.positive
 * / negative, pipeline/cond_list.h) through the pipeline on the tiny models:
 *   - one positive and one negative entry make the prompt path's images
 *     (SD1, SDXL, FLUX dev, SD3; batch 1 and 2), two identical entries one;
 *   - strength-weighted entries, a zeroed negative and an area (its crop, the
 *     feathered mult, the negative side's entry of the same area) against the
 *     UNet run directly on the same latents (SD1, DDIM: model input = x);
 *   - ConditioningZeroOut on SDXL = a missing negative prompt (zeros);
 *   - FluxGuidance per entry, areas on FLUX and SD3, SD3.5's skip-layer
 *     guidance with lists;
 *   - ControlNet units with lists; the errors (empty negative, bad areas,
 *     areas with ControlNets). */
#include "testkit.h"
#include "pipeline/pipeline.h"
#include "models/model.h"
#include "models/controlnet.h"
#include "core/arena.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SAME 1e-6   /* float reordering at most */

typedef enum { SD1, SDXL, FLUX, SD3, SD35 } fam;
static const char *const fam_names[] = { "sd1-tiny", "sdxl-tiny", "flux-tiny-dev", "sd3-tiny", "sd35-tiny" };

static sdw_model *load(fam f)
{
    char path[512], a[512], b[512], c[512];
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    switch (f) {
    case SD1: snprintf(path, sizeof path, "%s", test_data_path("models/sd1-tiny/sd1-tiny.safetensors")); break;
    case SDXL: snprintf(path, sizeof path, "%s", test_data_path("models/sdxl-tiny/sdxl-tiny.safetensors")); break;
    case FLUX:
        snprintf(path, sizeof path, "%s", test_data_path("flux/models/flux-tiny-dev/flux1-dev.safetensors"));
        snprintf(a, sizeof a, "%s", test_data_path("flux/models/flux-tiny-common/ae.safetensors"));
        snprintf(b, sizeof b, "%s", test_data_path("flux/models/flux-tiny-common/clip_l.safetensors"));
        snprintf(c, sizeof c, "%s", test_data_path("flux/models/flux-tiny-common/t5xxl.safetensors"));
        lp.vae_path = a;
        lp.clip_l_path = b;
        lp.t5_path = c;
        break;
    case SD3:
    case SD35:
        snprintf(path, sizeof path, "%s", test_data_path(f == SD3 ? "sd3/models/sd3-tiny/sd3-tiny.safetensors"
                                                                  : "sd3/models/sd35-tiny/sd35-tiny.safetensors"));
        snprintf(a, sizeof a, "%s", test_data_path("sd3/models/text_encoders/clip_l.safetensors"));
        snprintf(b, sizeof b, "%s", test_data_path("sd3/models/text_encoders/clip_g.safetensors"));
        snprintf(c, sizeof c, "%s", test_data_path("sd3/models/text_encoders/t5xxl.safetensors"));
        lp.clip_l_path = a;
        lp.clip_g_path = b;
        lp.t5_path = c;
        break;
    }
    sdw_model *m;
    if (sdw_model_load(path, &lp, &m) != SDW_OK) fail_msg("%s: %s", fam_names[f], sdw_last_error());
    return m;
}

/* What a run shows: the guided output of one evaluation, and the initial latents. */
typedef struct {
    int want;            /* which evaluation's "denoiser_out" */
    float *out, *init;
    size_t n_out, n_init;
} capture;

static void grab(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape)
{
    capture *c = user;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    float **dst = NULL;
    if (!strcmp(name, "denoiser_out") && step == c->want) {
        dst = &c->out;
        c->n_out = n;
    } else if (!strcmp(name, "initial_latents")) {
        dst = &c->init;
        c->n_init = n;
    }
    if (!dst) return;
    free(*dst);
    *dst = malloc(n * sizeof(float));
    memcpy(*dst, x, n * sizeof(float));
}

static void capture_free(capture *c)
{
    free(c->out);
    free(c->init);
    memset(c, 0, sizeof *c);
}

static void base(sdw_pipeline_params *p, fam f, int w, int h, int steps, float cfg, int batch)
{
    sdw_pipeline_params_init(p);
    p->width = w;
    p->height = h;
    p->steps = steps;
    p->cfg_scale = cfg;
    p->batch_size = batch;
    p->seed = 1234;
    p->sampler = SDW_SAMPLER_EULER;
    p->schedule = f == FLUX || f == SD3 || f == SD35 ? SDW_SCHEDULE_FLOW : SDW_SCHEDULE_NORMAL;
}

static sdw_cond_entry entry(const char *prompt, float strength)
{
    sdw_cond_entry e = { .prompt = prompt, .strength = strength, .guidance = -1.0f };
    return e;
}

static sdw_cond_entry area(const char *prompt, float strength, int x, int y, int w, int h)
{
    sdw_cond_entry e = entry(prompt, strength);
    e.area_x = x;
    e.area_y = y;
    e.area_w = w;
    e.area_h = h;
    return e;
}

static void set_lists(sdw_pipeline_params *p, const sdw_cond_entry *pos, int np, const sdw_cond_entry *neg, int nn)
{
    p->prompt = "";
    p->negative_prompt = NULL;
    p->positive = pos;
    p->n_positive = np;
    p->negative = neg;
    p->n_negative = nn;
}

/* Runs p; the images (malloc'd), and c filled when given. */
static float *run(sdw_model *m, sdw_pipeline_params *p, capture *c, const char *what)
{
    size_t n = (size_t)p->batch_size * p->width * p->height * 3;
    float *img = malloc(n * sizeof *img);
    p->observe = c ? grab : NULL;
    p->observe_user = c;
    if (sdw_pipeline_run(m, p, img) != SDW_OK) fail_msg("%s: %s", what, sdw_last_error());
    return img;
}

static void check_same(const char *what, const float *got, const float *want, size_t n)
{
    double rel = test_rel_l2(got, want, n);
    printf("  %-60s rel L2 %.3g\n", what, rel);
    if (!(rel <= SAME)) fail_msg("%s: rel L2 %.3g > %g", what, rel, SAME);
}

/* ---------------------------------------------------------------- the prompt path */

static void prompt_path_family(fam f, int w, int h)
{
    sdw_model *m = load(f);
    const char *A = "a red fox in the snow", *N = "blurry, dark";
    const size_t px = (size_t)w * h * 3;
    for (int batch = 1; batch <= 2; batch++) {
        /* FLUX's single pass (cfg 1) at batch 1, its true CFG at batch 2. */
        const float cfg = f == FLUX ? (batch == 1 ? 1.0f : 2.0f) : 5.0f;
        sdw_pipeline_params p;
        base(&p, f, w, h, 3, cfg, batch);
        p.prompt = A;
        p.negative_prompt = N;
        float *want = run(m, &p, NULL, "prompt path");
        sdw_cond_entry pos[2] = { entry(A, 1), entry(A, 1) }, neg[1] = { entry(N, 1) };
        set_lists(&p, pos, 1, neg, 1);
        float *one = run(m, &p, NULL, "one entry");
        char what[128];
        snprintf(what, sizeof what, "%s batch %d cfg %g: one entry = prompt path", fam_names[f], batch, cfg);
        check_same(what, one, want, px * batch);
        set_lists(&p, pos, 2, neg, 1);
        float *two = run(m, &p, NULL, "two entries");
        snprintf(what, sizeof what, "%s batch %d: two identical entries = one", fam_names[f], batch);
        check_same(what, two, one, px * batch);
        free(want);
        free(one);
        free(two);
    }
    sdw_model_free(m);
}

static void one_entry_is_the_prompt_path(void **state)
{
    (void)state;
    prompt_path_family(SD1, 96, 64);
    prompt_path_family(SDXL, 64, 64);
    prompt_path_family(FLUX, 64, 64);
    prompt_path_family(SD3, 64, 64);
}

/* SDXL's prompt path conditions a missing negative prompt on zeros: ConditioningZeroOut. */
static void zero_out_is_sdxl_zeros(void **state)
{
    (void)state;
    sdw_model *m = load(SDXL);
    sdw_pipeline_params p;
    base(&p, SDXL, 64, 64, 3, 6.0f, 1);
    p.prompt = "a lighthouse";
    float *want = run(m, &p, NULL, "prompt path");
    sdw_cond_entry pos[1] = { entry("a lighthouse", 1) }, neg[1] = { entry(NULL, 1) };
    neg[0].zero = true;
    set_lists(&p, pos, 1, neg, 1);
    float *got = run(m, &p, NULL, "zero entry");
    check_same("sdxl: ConditioningZeroOut negative = no negative prompt", got, want, 64 * 64 * 3);
    free(got);
    /* Zeros of a prompt's shape: the prompt does not matter. */
    neg[0].prompt = "blurry";
    got = run(m, &p, NULL, "zero entry with a prompt");
    check_same("sdxl: ConditioningZeroOut of a prompt = of nothing", got, want, 64 * 64 * 3);
    free(got);
    free(want);
    sdw_model_free(m);
}

/* ---------------------------------------------------------------- against the UNet itself */

/* SD1's UNet alone on N rows x [N, 4, h, w] (NCHW) at t with contexts [N, n_ctx, D] -> out [N, 4, h, w].
 * The references below batch the rows as the denoiser does (evaluations of one crop in pairs, the negative
 * one first): the UNet's sums change with the batch at the 1e-7 level. */
static void unet_direct(sdw_model *m, int N, const float *x, int h, int w, float t, const float *ctx, int n_ctx,
                        float *out)
{
    const size_t n = (size_t)N * h * w * 4;
    float *in = malloc(n * sizeof *in), *o = malloc(n * sizeof *o), ts[8];
    for (int i = 0; i < N; i++) ts[i] = t;
    test_nchw_to_nhwc(x, N, 4, h, w, in);
    sdw_unet_input ui = { in, N, h, w, ts, ctx, n_ctx, NULL, NULL, NULL, NULL, NULL, NULL };
    sdw_arena a = { 0 };
    if (sdw_unet_forward(m->be, &a, m->unet, &ui, o) != SDW_OK) fail_msg("unet: %s", sdw_last_error());
    test_nhwc_to_nchw(o, N, h, w, 4, out);
    sdw_arena_free(&a);
    free(in);
    free(o);
}

/* Row r of a batch: x's item and a context, copied into place. */
static void put_row(float *xs, float *ctxs, int r, const float *x, size_t nx, const float *ctx, size_t nc)
{
    memcpy(xs + r * nx, x, nx * sizeof(float));
    memcpy(ctxs + r * nc, ctx, nc * sizeof(float));
}

/* A prompt's context as the denoiser encodes an entry's (77 zeros when NULL: ConditioningZeroOut). */
static float *context_of(sdw_model *m, const char *prompt, int *n_ctx)
{
    sdw_text_embedding e = { 0 };
    if (!prompt) {
        *n_ctx = SDW_CLIP_CONTEXT;
        return calloc((size_t)SDW_CLIP_CONTEXT * m->text.context_dim, sizeof(float));
    }
    if (sdw_text_encode_prompt(m->be, &m->text, prompt, 1, 0, &e) != SDW_OK) fail_msg("%s", sdw_last_error());
    *n_ctx = e.n_tokens;
    free(e.pooled);
    return e.context;
}

/* The first timestep of SD1's DDIM schedule as the pipeline lays it out (DDIM's model input is x itself). */
static float ddim_t0(int steps)
{
    sdw_sampler_params sp = { .sampler = SDW_SAMPLER_DDIM, .schedule = SDW_SCHEDULE_LEADING, .steps = steps,
                              .param = SDW_PARAM_EPS };
    sdw_sampler *s;
    assert_int_equal(sdw_sampler_create(&sp, &s), SDW_OK);
    float t = sdw_sampler_timesteps(s)[0];
    sdw_sampler_free(s);
    return t;
}

static void ddim(sdw_pipeline_params *p, int w, int h, float cfg, int batch)
{
    base(p, SD1, w, h, 2, cfg, batch);
    p->sampler = SDW_SAMPLER_DDIM;
    p->schedule = SDW_SCHEDULE_LEADING;
}

/* Strengths weigh the entries: (0.3 oA + 0.7 oB) / (1e-37 + 1); a zeroed negative is the UNet on zeros. */
static void strengths_and_zero_against_the_unet(void **state)
{
    (void)state;
    sdw_model *m = load(SD1);
    const int w = 64, h = 64, lw = 8, lh = 8;
    const size_t n = (size_t)4 * lw * lh;
    const float t = ddim_t0(2);
    int na, nb, nz;
    float *ca = context_of(m, "a castle on a hill", &na), *cb = context_of(m, "an old ship at sea", &nb);
    float *cz = context_of(m, NULL, &nz);
    const size_t nc = (size_t)na * m->text.context_dim;
    assert_int_equal(na, nb);
    assert_int_equal(na, nz);
    float *xs = malloc(2 * n * sizeof(float)), *cs = malloc(2 * nc * sizeof(float)), *o = malloc(2 * n * sizeof(float));
    float *want = malloc(n * sizeof(float));

    sdw_pipeline_params p;
    ddim(&p, w, h, 1.0f, 1);
    sdw_cond_entry pos[2] = { entry("a castle on a hill", 0.3f), entry("an old ship at sea", 0.7f) };
    set_lists(&p, pos, 2, NULL, 0);
    capture c = { 0 };
    free(run(m, &p, &c, "weighted"));
    assert_non_null(c.out);
    put_row(xs, cs, 0, c.init, n, ca, nc);
    put_row(xs, cs, 1, c.init, n, cb, nc);
    unet_direct(m, 2, xs, lh, lw, t, cs, na, o);
    for (size_t i = 0; i < n; i++) want[i] = (0.0f + o[i] * 0.3f + o[n + i] * 0.7f) / (1e-37f + 0.3f + 0.7f);
    check_same("sd1: strengths 0.3 / 0.7 = weighted UNet outputs", c.out, want, n);
    capture_free(&c);

    ddim(&p, w, h, 4.0f, 1);
    sdw_cond_entry neg[1] = { entry(NULL, 1) };
    neg[0].zero = true;
    set_lists(&p, pos, 1, neg, 1);
    pos[0].strength = 1;
    free(run(m, &p, &c, "zero negative"));
    put_row(xs, cs, 0, c.init, n, cz, nc);
    put_row(xs, cs, 1, c.init, n, ca, nc);
    unet_direct(m, 2, xs, lh, lw, t, cs, na, o);
    for (size_t i = 0; i < n; i++) want[i] = o[i] + 4.0f * (o[n + i] - o[i]);
    check_same("sd1: zeroed negative = UNet on zeros, cfg 4", c.out, want, n);
    capture_free(&c);
    free(xs);
    free(cs);
    free(o);
    free(want);
    free(ca);
    free(cb);
    free(cz);
    sdw_model_free(m);
}

/* SD1 at 16x16 latents: positive = a whole-image entry + an area (8x8 at 8,4: its left, top and bottom
 * edges inside the image, its right edge on the border), negative = a whole-image entry, which ComfyUI
 * gives an entry of the area too; batch 2, cfg 3. */
static float feather_y(int i) { return i == 0 || i == 7 ? 0.5f : 1.0f; }   /* rr = min(8, 8 / 4) = 2 */
static float feather_x(int j) { return j == 0 ? 0.5f : 1.0f; }             /* right edge on the border */

static void area_against_the_unet(void **state)
{
    (void)state;
    sdw_model *m = load(SD1);
    const char *A = "a green valley", *Bp = "a flock of birds", *N = "ugly";
    const int lw = 16, lh = 16, ax = 8, ay = 4, aw = 8, ah = 8;
    const float s = 0.8f, cfg = 3.0f, t = ddim_t0(2);
    const size_t n = (size_t)4 * lw * lh, nc = (size_t)4 * aw * ah;
    sdw_pipeline_params p;
    ddim(&p, lw * 8, lh * 8, cfg, 2);
    sdw_cond_entry pos[2] = { entry(A, 1), area(Bp, s, ax, ay, aw, ah) }, neg[1] = { entry(N, 1) };
    set_lists(&p, pos, 2, neg, 1);
    capture c = { 0 }, plain = { 0 };
    free(run(m, &p, &c, "area"));
    set_lists(&p, pos, 1, neg, 1);
    free(run(m, &p, &plain, "no area"));
    assert_int_equal(c.n_out, 2 * n);

    int na, nb, nn;
    float *ca = context_of(m, A, &na), *cb = context_of(m, Bp, &nb), *cn = context_of(m, N, &nn);
    assert_true(na == nb && na == nn);
    const size_t cl = (size_t)na * m->text.context_dim;
    /* The denoiser's two batches: the whole image [N x0, N x1, A x0, A x1], the area [N, N, B, B] on the crops. */
    float *xs = malloc(4 * n * sizeof(float)), *cs = malloc(4 * cl * sizeof(float)), *of = malloc(4 * n * sizeof(float));
    float *xcs = malloc(4 * nc * sizeof(float)), *ccs = malloc(4 * cl * sizeof(float));
    float *ocs = malloc(4 * nc * sizeof(float)), *xc = malloc(nc * sizeof(float)), *want = malloc(2 * n * sizeof(float));
    for (int b = 0; b < 2; b++) {
        const float *x = c.init + b * n;
        for (int ch = 0; ch < 4; ch++)
            for (int i = 0; i < ah; i++)
                memcpy(xc + ((size_t)ch * ah + i) * aw, x + ((size_t)ch * lh + ay + i) * lw + ax, aw * sizeof(float));
        put_row(xs, cs, b, x, n, cn, cl);
        put_row(xs, cs, 2 + b, x, n, ca, cl);
        put_row(xcs, ccs, b, xc, nc, cn, cl);
        put_row(xcs, ccs, 2 + b, xc, nc, cb, cl);
    }
    unet_direct(m, 4, xs, lh, lw, t, cs, na, of);
    unet_direct(m, 4, xcs, ah, aw, t, ccs, na, ocs);
    int outside_diff = 0;
    for (int b = 0; b < 2; b++) {
        const float *oa = of + (2 + b) * n, *on = of + b * n, *obc = ocs + (2 + b) * nc, *onc = ocs + b * nc;
        for (int ch = 0; ch < 4; ch++)
            for (int y = 0; y < lh; y++)
                for (int x0 = 0; x0 < lw; x0++) {
                    const size_t at = ((size_t)ch * lh + y) * lw + x0;
                    float vp = oa[at], vn = on[at];
                    const bool in = y >= ay && y < ay + ah && x0 >= ax && x0 < ax + aw;
                    if (in) {
                        const int i = y - ay, j = x0 - ax;
                        const float mult = s * feather_y(i) * feather_x(j), cnt = 1e-37f + 1.0f + mult;
                        const size_t k = ((size_t)ch * ah + i) * aw + j;
                        vp = (oa[at] + obc[k] * mult) / cnt;
                        vn = (on[at] + onc[k] * mult) / cnt;
                    } else {
                        /* Outside the area the outputs are the whole-image entries' alone, to the bit. */
                        outside_diff += c.out[b * n + at] != plain.out[b * n + at];
                    }
                    want[b * n + at] = vn + cfg * (vp - vn);
                }
    }
    check_same("sd1: area (feathered, negative of the same area), batch 2", c.out, want, 2 * n);
    assert_int_equal(outside_diff, 0);
    /* A few pixels on their own: the feathered corner (mult 0.8 * 0.5 * 0.5), the top edge, the inside and
     * the border column (no feathering on the right). */
    const int py[4] = { ay, ay, ay + 3, ay + 7 }, pxs[4] = { ax, ax + 3, ax + 3, ax + 7 };
    for (int q = 0; q < 4; q++) {
        const size_t at = (size_t)py[q] * lw + pxs[q];
        const float d = fabsf(c.out[at] - want[at]);
        printf("  pixel (%d, %d): mult %.3f, got %.6f want %.6f\n", py[q], pxs[q],
               s * feather_y(py[q] - ay) * feather_x(pxs[q] - ax), c.out[at], want[at]);
        assert_true(d <= 1e-5f * (1.0f + fabsf(want[at])));
    }
    capture_free(&c);
    capture_free(&plain);
    free(ca);
    free(cb);
    free(cn);
    free(xs);
    free(cs);
    free(of);
    free(xcs);
    free(ccs);
    free(ocs);
    free(xc);
    free(want);
    sdw_model_free(m);
}

/* ---------------------------------------------------------------- FLUX and SD3 */

/* An area on a flow model: [A, B at 2,2 4x4, strength 0.6] against A alone and B alone (cfg 1, one step):
 * outside the area A's output to the bit; inside (oA + oB * 0.6) / (1 + 0.6) (rr = min(8, 4 / 4) = 1: no
 * visible feathering). */
static void flow_area(sdw_model *m, fam f)
{
    const int lw = 8, lh = 8, ax = 2, ay = 2, aw = 4, ah = 4;
    const size_t n = (size_t)16 * lw * lh;
    const float s = 0.6f;
    sdw_pipeline_params p;
    base(&p, f, lw * 8, lh * 8, 1, 1.0f, 1);
    sdw_cond_entry pos[2] = { entry("a mountain lake", 1), area("a red boat", s, ax, ay, aw, ah) };
    capture both = { 0 }, a = { 0 }, b = { 0 };
    set_lists(&p, pos, 2, NULL, 0);
    free(run(m, &p, &both, "area"));
    set_lists(&p, pos, 1, NULL, 0);
    free(run(m, &p, &a, "whole"));
    set_lists(&p, pos + 1, 1, NULL, 0);
    free(run(m, &p, &b, "area alone"));
    float *want = malloc(n * sizeof(float));
    int outside_diff = 0;
    for (int ch = 0; ch < 16; ch++)
        for (int y = 0; y < lh; y++)
            for (int x = 0; x < lw; x++) {
                const size_t at = ((size_t)ch * lh + y) * lw + x;
                const bool in = y >= ay && y < ay + ah && x >= ax && x < ax + aw;
                /* B alone inside its area: oB * s / (1e-37 + s) = oB to an ulp; 0 outside it. */
                want[at] = in ? (a.out[at] + b.out[at] * s) / (1e-37f + 1.0f + s) : a.out[at];
                if (!in) {
                    outside_diff += both.out[at] != a.out[at];
                    assert_true(b.out[at] == 0.0f);
                }
            }
    char what[96];
    snprintf(what, sizeof what, "%s: area blended with the whole-image entry", fam_names[f]);
    check_same(what, both.out, want, n);
    assert_int_equal(outside_diff, 0);
    /* An odd area cannot be cut into 2x2 patches. */
    pos[1] = area("a red boat", s, 1, 1, 3, 4);
    set_lists(&p, pos, 2, NULL, 0);
    float *img = malloc((size_t)64 * 64 * 3 * sizeof *img);
    p.observe = NULL;
    assert_int_equal(sdw_pipeline_run(m, &p, img), SDW_ERR_UNSUPPORTED);
    printf("  %s odd area: %s\n", fam_names[f], sdw_last_error());
    assert_non_null(strstr(sdw_last_error(), "ConditioningSetArea"));
    free(img);
    free(want);
    capture_free(&both);
    capture_free(&a);
    capture_free(&b);
}

/* FluxGuidance per entry: the entry's guidance is the run's for it. */
static void flux_guidance_and_areas(void **state)
{
    (void)state;
    sdw_model *m = load(FLUX);
    const char *A = "a cat wearing a hat";
    const size_t px = 64 * 64 * 3, n = (size_t)16 * 8 * 8;
    sdw_pipeline_params p;
    base(&p, FLUX, 64, 64, 2, 1.0f, 1);
    p.prompt = A;
    p.guidance = 2.0f;
    float *want = run(m, &p, NULL, "prompt path, guidance 2");
    sdw_cond_entry pos[2] = { entry(A, 0.5f), entry(A, 0.5f) };
    pos[0].guidance = 2.0f;
    pos[1].guidance = 5.0f;
    p.guidance = -1.0f;   /* the model's default (3.5): the entries' own must win */
    set_lists(&p, pos, 1, NULL, 0);
    capture c2 = { 0 }, c5 = { 0 }, mix = { 0 };
    float *got = run(m, &p, &c2, "entry guidance 2");
    check_same("flux: entry guidance 2 = the run's guidance 2", got, want, px);
    set_lists(&p, pos + 1, 1, NULL, 0);
    free(run(m, &p, &c5, "entry guidance 5"));
    set_lists(&p, pos, 2, NULL, 0);
    free(run(m, &p, &mix, "guidance 2 and 5"));
    double apart = test_rel_l2(c2.out, c5.out, n);
    printf("  flux: guidance 2 vs 5 outputs differ by rel L2 %.3g\n", apart);
    assert_true(apart > 1e-3);
    float *w = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) w[i] = (c2.out[i] * 0.5f + c5.out[i] * 0.5f) / (1e-37f + 0.5f + 0.5f);
    check_same("flux: entries of guidance 2 and 5 at 0.5 each", mix.out, w, n);
    free(w);
    free(got);
    free(want);
    capture_free(&c2);
    capture_free(&c5);
    capture_free(&mix);
    flow_area(m, FLUX);
    sdw_model_free(m);
}

/* SD3.5's skip-layer guidance reruns the positive list with the blocks left out: one entry = the prompt path. */
static void sd3_areas_and_slg(void **state)
{
    (void)state;
    sdw_model *m = load(SD3);
    flow_area(m, SD3);
    sdw_model_free(m);
    m = load(SD35);
    sdw_pipeline_params p;
    base(&p, SD35, 64, 64, 3, 4.0f, 1);
    p.prompt = "a snowy forest";
    p.negative_prompt = "noise";
    p.n_slg_layers = 1;
    p.slg_layers[0] = 0;
    p.slg_end = 1.0f;   /* steps 1 and 2 of 3 */
    float *want = run(m, &p, NULL, "prompt path + SLG");
    sdw_cond_entry pos[1] = { entry("a snowy forest", 1) }, neg[1] = { entry("noise", 1) };
    set_lists(&p, pos, 1, neg, 1);
    float *got = run(m, &p, NULL, "lists + SLG");
    check_same("sd35-tiny: one entry + skip-layer guidance = prompt path", got, want, 64 * 64 * 3);
    p.n_slg_layers = 0;
    float *plain = run(m, &p, NULL, "lists, no SLG");
    assert_true(test_rel_l2(plain, got, 64 * 64 * 3) > 1e-4);   /* the guidance acted */
    free(plain);
    free(got);
    free(want);
    sdw_model_free(m);
}

/* ---------------------------------------------------------------- ControlNets and errors */

static void controlnet_with_lists(void **state)
{
    (void)state;
    sdw_model *m = load(SD1);
    sdw_controlnet *cn;
    if (sdw_controlnet_load(m->be, test_data_path("controlnet/models/cn-sd1-tiny/cn-sd1-tiny.safetensors"), &cn) != SDW_OK)
        fail_msg("%s", sdw_last_error());
    const size_t px = 64 * 64 * 3;
    float *hint = malloc(px * sizeof *hint);
    test_fill(hint, px, 7);
    for (size_t i = 0; i < px; i++) hint[i] = 0.5f + 0.5f * hint[i];
    sdw_control_unit u = { cn, hint, 0.9f, 0.0f, 1.0f, SDW_CONTROL_BALANCED };
    sdw_pipeline_params p;
    base(&p, SD1, 64, 64, 3, 5.0f, 1);
    p.prompt = "a house";
    p.negative_prompt = "fog";
    p.controls = &u;
    p.n_controls = 1;
    float *want = run(m, &p, NULL, "prompt path + ControlNet");
    sdw_cond_entry pos[2] = { entry("a house", 1), area("a tree", 1, 2, 2, 4, 4) }, neg[1] = { entry("fog", 1) };
    set_lists(&p, pos, 1, neg, 1);
    float *got = run(m, &p, NULL, "lists + ControlNet");
    check_same("sd1: one entry + ControlNet = prompt path + ControlNet", got, want, px);
    set_lists(&p, pos, 2, neg, 1);
    assert_int_equal(sdw_pipeline_run(m, &p, got), SDW_ERR_UNSUPPORTED);
    printf("  area + ControlNet: %s\n", sdw_last_error());
    set_lists(&p, pos, 1, neg, 1);
    p.control_guess = true;
    assert_int_equal(sdw_pipeline_run(m, &p, got), SDW_ERR_UNSUPPORTED);
    free(got);
    free(want);
    free(hint);
    sdw_controlnet_free(cn);
    sdw_model_free(m);
}

static void expect_error(sdw_model *m, sdw_pipeline_params *p, sdw_status want, const char *what)
{
    float *img = malloc((size_t)p->batch_size * p->width * p->height * 3 * sizeof *img);
    p->observe = NULL;
    sdw_status s = sdw_pipeline_run(m, p, img);
    printf("  %-28s -> %s\n", what, sdw_last_error());
    assert_int_equal(s, want);
    free(img);
}

static void errors(void **state)
{
    (void)state;
    sdw_model *m = load(SD1);
    sdw_pipeline_params p;
    base(&p, SD1, 64, 64, 2, 5.0f, 1);
    sdw_cond_entry pos[1] = { entry("a cup", 1) }, neg[1] = { entry("", 1) };
    set_lists(&p, pos, 1, NULL, 0);
    expect_error(m, &p, SDW_ERR_INVALID_ARG, "cfg > 1, no negative");
    set_lists(&p, pos, 1, neg, 1);
    pos[0] = area("a cup", 1, 0, 0, 3, 4);
    expect_error(m, &p, SDW_ERR_UNSUPPORTED, "odd area on a 2-level UNet");
    pos[0] = area("a cup", 1, 8, 0, 2, 2);
    expect_error(m, &p, SDW_ERR_INVALID_ARG, "area outside the latent");
    pos[0] = area("a cup", 1, 0, 0, 0, 2);
    expect_error(m, &p, SDW_ERR_INVALID_ARG, "area of width 0");
    pos[0] = entry("a cup", -1);
    expect_error(m, &p, SDW_ERR_INVALID_ARG, "negative strength");
    /* An area reaching past the image is clamped, as ComfyUI clamps it. */
    pos[0] = area("a cup", 1, 4, 4, 16, 16);
    float *img = run(m, &p, NULL, "clamped area");
    free(img);
    sdw_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_entry_is_the_prompt_path),
        cmocka_unit_test(zero_out_is_sdxl_zeros),
        cmocka_unit_test(strengths_and_zero_against_the_unet),
        cmocka_unit_test(area_against_the_unet),
        cmocka_unit_test(flux_guidance_and_areas),
        cmocka_unit_test(sd3_areas_and_slg),
        cmocka_unit_test(controlnet_with_lists),
        cmocka_unit_test(errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
