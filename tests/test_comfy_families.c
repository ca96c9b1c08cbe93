/* test_comfy_families.c: ComfyUI's own example workflows for SD3 / SD3.5 and
 * FLUX (comfyanonymous/ComfyUI_examples: sd3.5_text_encoders_example with
 * the SD3 examples' negative, flux_dev_checkpoint_example, flux_dev_example's
 * split files, flux_schnell_example) run by the executor on the tiny models
 * of tests/data/sd3 and tests/data/flux, through a fake environment as in
 * test_comfy_exec.c:
 *   - the timestep-range logic (ConditioningSetTimestepRange, cond_list.c's
 *     sdw_cond_select) against a hand computation: percent_to_sigma of each
 *     model sampling, and which entries count at which sigma;
 *   - SD3.5: TripleCLIPLoader + ModelSamplingSD3 + the zeroed negative after
 *     10 % of the schedule (ConditioningZeroOut, two timestep ranges,
 *     ConditioningCombine) equals the pipeline's comfy mode with the same
 *     entries; and with euler equals two KSamplerAdvanced-style runs split
 *     where the range says (the original negative before, the zeroed after);
 *   - FLUX dev: the all-in-one checkpoint and UNETLoader + DualCLIPLoader +
 *     VAELoader give the same latents, equal to the comfy-mode pipeline;
 *     ModelSamplingFlux's shift; schnell in 4 steps;
 *   - the custom sampler (SamplerCustomAdvanced with RandomNoise, BasicGuider /
 *     CFGGuider, KSamplerSelect, BasicScheduler: flux_dev_example's) equals
 *     the KSampler run it describes, on FLUX dev and SD3.5;
 *   - models of another family: EmptyLatentImage on FLUX runs (ComfyUI's
 *     fix_empty_latent_channels), ModelSamplingSD3 on FLUX and
 *     ModelSamplingFlux on SD3.5 fail at the sampler, naming it. */
#include "testkit.h"
#include "comfy/comfy_values.h"
#include "core/error.h"
#include "models/model.h"
#include "pipeline/cond_list.h"
#include "pipeline/denoiser.h"
#include "pipeline/pipeline_comfy.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- the fake environment */

typedef struct {
    sdw_model *m;
    sdw_comfy_model_spec loaded;   /* the files of m */
    int loads;
    sdw_image saved[4];
    int n_saved;
} fake_env;

static fake_env E;

static bool find(sdw_comfy_folder f, const char *name, char *path, size_t n)
{
    const char *roots[2] = {NULL, NULL};
    switch (f) {
    case SDW_FOLDER_CHECKPOINTS: roots[0] = "sd3/models", roots[1] = "flux/models"; break;
    case SDW_FOLDER_CLIP: roots[0] = "sd3/models/text_encoders", roots[1] = "flux/models"; break;
    case SDW_FOLDER_UNET: case SDW_FOLDER_VAE: roots[0] = "flux/models"; break;
    default: return false;
    }
    for (int i = 0; i < 2 && roots[i]; i++) {
        char rel[512];
        snprintf(rel, sizeof rel, "%s/%s", roots[i], name);
        snprintf(path, n, "%s", test_data_path(rel));
        if (access(path, R_OK) == 0) return true;
    }
    return false;
}

static bool cat_has(void *user, sdw_comfy_folder f, const char *name)
{
    (void)user;
    char p[4096];
    return find(f, name, p, sizeof p);
}

static sdw_status env_resolve(void *user, sdw_comfy_folder f, const char *name, char *path, size_t n)
{
    (void)user;
    if (!find(f, name, path, n)) return sdw_fail(SDW_ERR_IO, "no file '%s'", name);
    return SDW_OK;
}

static bool same_files(const sdw_comfy_model_spec *a, const sdw_comfy_model_spec *b)
{
    return !strcmp(a->path, b->path) && !strcmp(a->clip_l, b->clip_l) && !strcmp(a->clip_g, b->clip_g) &&
           !strcmp(a->t5, b->t5) && !strcmp(a->vae, b->vae);
}

static sdw_status env_model(void *user, const sdw_comfy_model_spec *spec, sdw_model **out)
{
    fake_env *e = user;
    if (!e->m || !same_files(&e->loaded, spec)) {
        sdw_model_free(e->m);
        e->m = NULL;
        sdw_load_params lp = sdw_load_params_default();
        lp.precision = SDW_PRECISION_F32;
        lp.vae_path = spec->vae[0] ? spec->vae : NULL;
        lp.clip_l_path = spec->clip_l[0] ? spec->clip_l : NULL;
        lp.clip_g_path = spec->clip_g[0] ? spec->clip_g : NULL;
        lp.t5_path = spec->t5[0] ? spec->t5 : NULL;
        e->loads++;
        SDW_TRY(sdw_model_load(spec->path, &lp, &e->m));
        e->loaded = *spec;
    }
    *out = e->m;
    return SDW_OK;
}

static sdw_status env_save(void *user, const sdw_image *img, const char *prefix, bool temp, sdw_comfy_file *f)
{
    (void)temp;
    fake_env *e = user;
    assert_true(e->n_saved < 4);
    sdw_image *s = &e->saved[e->n_saved++];
    SDW_TRY(sdw_image_alloc(s, img->w, img->h, img->channels));
    memcpy(s->data, img->data, (size_t)img->w * img->h * img->channels);
    snprintf(f->filename, sizeof f->filename, "%s_%05d_.png", prefix, e->n_saved);
    snprintf(f->type, sizeof f->type, "output");
    return SDW_OK;
}

static void env_executed(void *user, const char *id, cJSON *output)
{
    (void)user, (void)id;
    cJSON_Delete(output);
}

static const sdw_comfy_env ENV = {&E, env_model, env_resolve, NULL, NULL, NULL, env_save, env_executed};
static const sdw_comfy_catalog CAT = {&E, NULL, cat_has};

static void env_reset(void)
{
    for (int i = 0; i < E.n_saved; i++) sdw_image_free(&E.saved[i]);
    E.n_saved = 0;
}

static int teardown(void **state)
{
    (void)state;
    env_reset();
    sdw_model_free(E.m);
    return 0;
}

/* ---------------------------------------------------------------- workflows */

/* A workflow written with ' for " (readable in C). */
static sdw_comfy_graph *parse(const char *json_sq)
{
    char *j = strdup(json_sq);
    for (char *c = j; *c; c++)
        if (*c == '\'') *c = '"';
    cJSON *prompt = cJSON_Parse(j);
    free(j);
    if (!prompt) fail_msg("bad test JSON");
    sdw_comfy_graph *g = NULL;
    cJSON *err = NULL;
    if (sdw_comfy_graph_parse(prompt, &CAT, &g, &err) != SDW_OK) {
        char *e = err ? cJSON_PrintUnformatted(err) : NULL;
        fail_msg("graph: %s %s", sdw_last_error(), e ? e : "");
    }
    cJSON_Delete(prompt);
    cJSON_Delete(err);
    return g;
}

static int node_index(const sdw_comfy_graph *g, const char *id)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (!strcmp(g->nodes[i].id, id)) return i;
    fail_msg("no node %s", id);
    return -1;
}

/* Runs a workflow; a copy of the sampler's (node id) LATENT samples, unscaled. */
static float *run_latents(const char *json_sq, const char *sampler_id, size_t *n)
{
    sdw_comfy_graph *g = parse(json_sq);
    env_reset();
    sdw_comfy_exec *x;
    int failed;
    if (sdw_comfy_run_keep(g, &ENV, &failed, &x) != SDW_OK) fail_msg("run: %s (node %d)", sdw_last_error(), failed);
    const sdw_cvalue *v = sdw_cx_value(x, node_index(g, sampler_id), 0);
    assert_non_null(v);
    const sdw_cv_latent *l = &v->latent;
    *n = (size_t)l->batch * l->channels * l->h * l->w;
    float *out = malloc(*n * sizeof *out);
    memcpy(out, l->samples, *n * sizeof *out);
    sdw_comfy_exec_free(x);
    sdw_comfy_graph_free(g);
    return out;
}

/* A workflow that must fail: the failing node's id and the message. */
static void run_fails(const char *json_sq, const char *node_id, const char *needle)
{
    sdw_comfy_graph *g = parse(json_sq);
    env_reset();
    int failed;
    assert_int_not_equal(sdw_comfy_run(g, &ENV, &failed), SDW_OK);
    printf("  failure: %s\n", sdw_last_error());
    assert_int_equal(failed, node_index(g, node_id));
    assert_non_null(strstr(sdw_last_error(), needle));
    sdw_comfy_graph_free(g);
}

/* ---------------------------------------------------------------- direct references */

typedef struct {
    const sdw_cond_entry *pos, *neg;
    int n_pos, n_neg, size, steps, first, last;
    float cfg;
    uint64_t seed;
    sdw_sampler_kind sampler;
    sdw_schedule_kind schedule;
    bool sd3_sampling, flux_sampling, no_noise, leftover;
    double shift;
    const float *init;        /* scaled latents; NULL = process_latent_in of zeros */
} ref_run;

/* The comfy-mode pipeline on the loaded model; scaled latents out. */
static float *direct(const ref_run *r, sdw_observe_fn observe, void *observe_user)
{
    const sdw_model_info *info = sdw_model_get_info(E.m);
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.comfy = true;
    p.positive = r->pos;
    p.n_positive = r->n_pos;
    p.negative = r->neg;
    p.n_negative = r->n_neg;
    p.width = p.height = r->size;
    p.sampler = r->sampler;
    p.schedule = r->schedule;
    p.steps = p.schedule_steps = r->steps;
    p.first_step = r->first;
    p.last_step = r->last ? r->last : r->steps;
    p.add_noise = !r->no_noise;
    p.leftover_noise = r->leftover;
    p.cfg_scale = r->cfg;
    p.seed = r->seed;
    p.comfy_sampling_sd3 = r->sd3_sampling;
    p.comfy_sampling_flux = r->flux_sampling;
    p.comfy_shift = r->shift;
    p.observe = observe;
    p.observe_user = observe_user;
    size_t n = (size_t)info->latent_channels * (r->size / 8) * (r->size / 8);
    float *empty = malloc(n * sizeof *empty);
    for (size_t i = 0; i < n; i++) empty[i] = (0.0f - info->latent_shift) * info->latent_scale;
    p.init_latents = r->init ? r->init : empty;
    float *lat = malloc(n * sizeof *lat);
    p.latents_out = lat;
    if (sdw_pipeline_run(E.m, &p, NULL) != SDW_OK) fail_msg("direct run: %s", sdw_last_error());
    free(empty);
    return lat;
}

/* The executor's LATENT (unscaled) against direct latents (scaled). */
static void check_equal(const char *what, const float *unscaled, const float *scaled, size_t n)
{
    const sdw_model_info *info = sdw_model_get_info(E.m);
    float *u = malloc(n * sizeof *u);
    for (size_t i = 0; i < n; i++) u[i] = scaled[i] / info->latent_scale + info->latent_shift;
    double rel = test_rel_l2(unscaled, u, n), mx = test_max_abs(unscaled, u, n);
    printf("  %s: executor vs direct comfy-mode run: rel L2 %.3g, max abs %.3g\n", what, rel, mx);
    assert_true(rel <= 1e-6);
    free(u);
}

static sdw_cond_entry entry(const char *text)
{
    return (sdw_cond_entry){.prompt = text, .strength = 1.0f, .guidance = -1.0f};
}

static sdw_cond_entry ranged(sdw_cond_entry e, float start, float end)
{
    e.timestep_range = true;
    e.start_percent = start;
    e.end_percent = end;
    return e;
}

/* ---------------------------------------------------------------- timestep ranges by hand */

/* sigma(t) of ModelSamplingDiscrete at a fractional timestep, in float64. */
static double discrete_sigma_f64(double t)
{
    double ac = 1.0, a = sqrt(0.00085), b = sqrt(0.012), ls[1000];
    for (int i = 0; i < 1000; i++) {
        double beta = a + (b - a) * i / 999.0;
        ac *= 1.0 - beta * beta;
        ls[i] = log(sqrt((1.0 - ac) / ac));
    }
    int lo = (int)floor(t), hi = (int)ceil(t);
    return exp((1.0 - (t - lo)) * ls[lo] + (t - lo) * ls[hi]);
}

static void test_percent_to_sigma(void **state)
{
    (void)state;
    sdw_model m = {0};
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    /* SD3: ModelSamplingDiscreteFlow, shift 3: 3 t / (1 + 2 t), t = 1 - percent */
    m.info.prediction = SDW_PREDICTION_FLOW;
    m.info.family = SDW_FAMILY_SD35_MEDIUM;
    m.info.flow_shift = 3.0f;
    assert_true(fabs(sdw_comfy_percent_to_sigma(&m, &p, 0.1) - 2.7 / 2.8) < 1e-15);
    assert_true(sdw_comfy_percent_to_sigma(&m, &p, 0.0) == 1.0 && sdw_comfy_percent_to_sigma(&m, &p, 1.0) == 0.0);
    /* ModelSamplingSD3 shift 2 */
    p.comfy_sampling_sd3 = true;
    p.comfy_shift = 2.0;
    assert_true(fabs(sdw_comfy_percent_to_sigma(&m, &p, 0.25) - 1.5 / 1.75) < 1e-15);
    /* FLUX dev: ModelSamplingFlux 1.15: e^mu / (e^mu + 1/t - 1) */
    p.comfy_sampling_sd3 = false;
    m.info.family = SDW_FAMILY_FLUX_DEV;
    double e = exp(1.15);
    assert_true(fabs(sdw_comfy_percent_to_sigma(&m, &p, 0.3) - e / (e + 1 / 0.7 - 1)) < 1e-15);
    p.comfy_sampling_flux = true;
    p.comfy_shift = 0.6;
    e = exp(0.6);
    assert_true(fabs(sdw_comfy_percent_to_sigma(&m, &p, 0.3) - e / (e + 1 / 0.7 - 1)) < 1e-15);
    /* schnell: unshifted */
    p.comfy_sampling_flux = false;
    m.info.family = SDW_FAMILY_FLUX_SCHNELL;
    assert_true(fabs(sdw_comfy_percent_to_sigma(&m, &p, 0.3) - 0.7) < 1e-15);
    /* SD1: the discrete table at (1 - percent) * 999 (float32 there: ~1e-6) */
    m.info.prediction = SDW_PREDICTION_EPS;
    m.info.family = SDW_FAMILY_SD1;
    double got = sdw_comfy_percent_to_sigma(&m, &p, 0.5), want = discrete_sigma_f64(499.5);
    printf("  SD1 percent_to_sigma(0.5) = %.7g (float64 hand value %.7g)\n", got, want);
    assert_true(fabs(got - want) <= 1e-5 * want);
    assert_true(sdw_comfy_percent_to_sigma(&m, &p, 0.0) == 999999999.9);
}

/* Which evaluations count at which sigma: SD3's zeroed negative after 10 %. */
static void test_range_selection(void **state)
{
    (void)state;
    sdw_model m = {0};
    m.info.prediction = SDW_PREDICTION_FLOW;
    m.info.family = SDW_FAMILY_SD35_MEDIUM;
    m.info.flow_shift = 3.0f;
    sdw_cond_entry pos[1] = {entry("a")};
    sdw_cond_entry zero = entry("n");
    zero.zero = true;
    /* ConditioningCombine(zeroed 0.1..1, original 0..0.1), and one entry whose range is empty */
    sdw_cond_entry neg[3] = {ranged(zero, 0.1f, 1.0f), ranged(entry("n"), 0.0f, 0.1f), ranged(entry("x"), 0.6f, 0.4f)};
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.comfy = true;
    p.cfg_scale = 4.5f;
    p.positive = pos;
    p.n_positive = 1;
    p.negative = neg;
    p.n_negative = 3;
    sdw_cond_plan pl;
    assert_int_equal(sdw_cond_plan_make(&p, true, 1, 16, 4, 4, &pl), SDW_OK);
    assert_true(pl.any_range);
    assert_int_equal(pl.n, 4);
    sdw_run r = {0};
    r.m = &m;
    r.p = &p;
    /* sigma(0.1) = 2.7 / 2.8 = 0.9642857, compared in float32 */
    const float edge = (float)(2.7 / 2.8);
    const struct {
        float sigma;
        bool zero_on, orig_on;
    } cases[] = {
        {1.0f, false, true}, {0.97f, false, true}, {edge, true, true}, {nextafterf(edge, 0), true, false},
        {0.5f, true, false}, {0.0f, true, false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        r.comfy_sigma = cases[c].sigma;
        sdw_cond_select(&pl, &r);
        assert_true(pl.evals[0].active);   /* the positive has no range */
        assert_true(pl.evals[1].active == cases[c].zero_on);
        assert_true(pl.evals[2].active == cases[c].orig_on);
        /* sigma(0.6) = 1.2 / 2.6 < sigma(0.4) = 1.8 / 2.2: no sigma lies in it */
        assert_false(pl.evals[3].active);
        /* the negative side's count: one per active entry */
        const float want = (float)(cases[c].zero_on + cases[c].orig_on);
        assert_true(pl.cnt[SDW_COND_NEG][5] == want);
        assert_true(pl.cnt[SDW_COND_POS][5] == 1.0f);
    }
    printf("  ranges at sigma 1 / 0.97 / %.7g / just below / 0.5 / 0: zeroed %d%d%d%d%d%d, original %d%d%d%d%d%d\n",
           edge, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0);
    /* an inactive evaluation adds nothing */
    float out[16 * 16], res[16 * 16];
    for (int i = 0; i < 16 * 16; i++) out[i] = 1.0f;
    r.comfy_sigma = 0.5f;
    sdw_cond_select(&pl, &r);
    sdw_cond_reset(&pl);
    sdw_cond_add(&pl, 1, 0, out);
    for (int i = 0; i < 16 * 16; i++) out[i] = 7.0f;
    sdw_cond_add(&pl, 2, 0, out);
    sdw_cond_result(&pl, SDW_COND_NEG, 0, res);
    assert_true(res[0] == 1.0f && res[255] == 1.0f);
    sdw_cond_plan_free(&pl);
    /* outside comfy mode no evaluation's sigma is known: refused */
    p.comfy = false;
    assert_int_equal(sdw_cond_plan_make(&p, true, 1, 16, 4, 4, &pl), SDW_ERR_INVALID_ARG);
    printf("  outside comfy mode: %s\n", sdw_last_error());
    sdw_cond_plan_free(&pl);
}

/* ---------------------------------------------------------------- SD3.5 */

/* sd3.5_text_encoders_example (checkpoint without text encoders + TripleCLIPLoader)
 * with ModelSamplingSD3 and the SD3 examples' negative: the prompt for the
 * first 10 % of the schedule, zeros after. */
#define SD35_WORKFLOW(sampler, steps)                                                                          \
    "{'3': {'class_type': 'KSampler', 'inputs': {'seed': 77, 'steps': " steps ", 'cfg': 4.5,"                  \
    " 'sampler_name': '" sampler "', 'scheduler': 'sgm_uniform', 'denoise': 1, 'model': ['13', 0],"            \
    " 'positive': ['6', 0], 'negative': ['69', 0], 'latent_image': ['135', 0]}},"                            \
    " '4': {'class_type': 'CheckpointLoaderSimple', 'inputs': {'ckpt_name': 'sd35-tiny/sd35-tiny.safetensors'}}," \
    " '11': {'class_type': 'TripleCLIPLoader', 'inputs': {'clip_name1': 'clip_l.safetensors',"                \
    " 'clip_name2': 'clip_g.safetensors', 'clip_name3': 't5xxl.safetensors'}},"                               \
    " '13': {'class_type': 'ModelSamplingSD3', 'inputs': {'shift': 3.0, 'model': ['4', 0]}},"                 \
    " '6': {'class_type': 'CLIPTextEncode', 'inputs': {'text': 'a lighthouse on a cliff at dusk',"            \
    " 'clip': ['11', 0]}},"                                                                                  \
    " '71': {'class_type': 'CLIPTextEncode', 'inputs': {'text': 'blurry, low quality', 'clip': ['11', 0]}},"  \
    " '67': {'class_type': 'ConditioningZeroOut', 'inputs': {'conditioning': ['71', 0]}},"                    \
    " '68': {'class_type': 'ConditioningSetTimestepRange', 'inputs': {'start': 0.1, 'end': 1.0,"              \
    " 'conditioning': ['67', 0]}},"                                                                          \
    " '70': {'class_type': 'ConditioningSetTimestepRange', 'inputs': {'start': 0.0, 'end': 0.1,"              \
    " 'conditioning': ['71', 0]}},"                                                                          \
    " '69': {'class_type': 'ConditioningCombine', 'inputs': {'conditioning_1': ['68', 0],"                    \
    " 'conditioning_2': ['70', 0]}},"                                                                        \
    " '135': {'class_type': 'EmptySD3LatentImage', 'inputs': {'width': 64, 'height': 64, 'batch_size': 1}},"  \
    " '231': {'class_type': 'VAEDecode', 'inputs': {'samples': ['3', 0], 'vae': ['4', 2]}},"                  \
    " '9': {'class_type': 'SaveImage', 'inputs': {'filename_prefix': 'sd3.5', 'images': ['231', 0]}}}"

#define SD35_POS "a lighthouse on a cliff at dusk"
#define SD35_NEG "blurry, low quality"

typedef struct {
    float sigmas[64];
    int n;
} sigma_log;

static void observe_sigmas(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape)
{
    (void)step, (void)ndim;
    sigma_log *s = user;
    if (strcmp(name, "comfy_sigmas") || shape[0] > 64) return;
    s->n = (int)shape[0];
    memcpy(s->sigmas, x, (size_t)s->n * sizeof *x);
}

static void test_sd35_example(void **state)
{
    (void)state;
    size_t n;
    float *got = run_latents(SD35_WORKFLOW("dpmpp_2m", "8"), "3", &n);
    assert_int_equal(n, 16 * 8 * 8);
    assert_int_equal(E.n_saved, 1);
    assert_int_equal(E.saved[0].w, 64);
    assert_non_null(strstr(E.loaded.clip_g, "clip_g.safetensors"));
    assert_non_null(strstr(E.loaded.t5, "t5xxl.safetensors"));
    sdw_cond_entry zero = entry(SD35_NEG);
    zero.zero = true;
    sdw_cond_entry pos[1] = {entry(SD35_POS)};
    sdw_cond_entry neg[2] = {ranged(zero, 0.1f, 1.0f), ranged(entry(SD35_NEG), 0.0f, 0.1f)};
    ref_run r = {.pos = pos, .neg = neg, .n_pos = 1, .n_neg = 2, .size = 64, .steps = 8, .cfg = 4.5f, .seed = 77,
                 .sampler = SDW_SAMPLER_DPMPP_2M, .schedule = SDW_SCHEDULE_SGM_UNIFORM, .sd3_sampling = true,
                 .shift = 3.0};
    float *lat = direct(&r, NULL, NULL);
    check_equal("SD3.5 example (dpmpp_2m, sgm_uniform, 8 steps)", got, lat, n);
    /* The ranges matter: all-zero and all-prompt negatives both differ. */
    sdw_cond_entry only_zero[1] = {zero}, only_orig[1] = {entry(SD35_NEG)};
    r.neg = only_zero;
    r.n_neg = 1;
    float *a = direct(&r, NULL, NULL);
    r.neg = only_orig;
    float *b = direct(&r, NULL, NULL);
    printf("  SD3.5: ranged negative vs zeroed throughout: rel L2 %.3g; vs the prompt throughout: %.3g\n",
           test_rel_l2(lat, a, n), test_rel_l2(lat, b, n));
    assert_true(test_rel_l2(lat, a, n) > 1e-4 && test_rel_l2(lat, b, n) > 1e-4);
    free(a);
    free(b);
    free(lat);
    free(got);
}

/* With euler (no history between steps) the ranged run is two runs split at
 * the first step whose sigma is below sigma(0.1): the prompt's negative
 * before (leftover noise), the zeroed one after (no new noise). */
static void test_sd35_range_split(void **state)
{
    (void)state;
    size_t n;
    float *got = run_latents(SD35_WORKFLOW("euler", "6"), "3", &n);
    sdw_cond_entry zero = entry(SD35_NEG);
    zero.zero = true;
    sdw_cond_entry pos[1] = {entry(SD35_POS)};
    sdw_cond_entry neg[2] = {ranged(zero, 0.1f, 1.0f), ranged(entry(SD35_NEG), 0.0f, 0.1f)};
    ref_run r = {.pos = pos, .neg = neg, .n_pos = 1, .n_neg = 2, .size = 64, .steps = 6, .cfg = 4.5f, .seed = 77,
                 .sampler = SDW_SAMPLER_EULER, .schedule = SDW_SCHEDULE_SGM_UNIFORM, .sd3_sampling = true,
                 .shift = 3.0};
    sigma_log sl = {0};
    float *lat = direct(&r, observe_sigmas, &sl);
    check_equal("SD3.5 example (euler, 6 steps)", got, lat, n);
    /* The hand computation: sigma(0.1) = 2.7 / 2.8; steps at or above it see the prompt's negative. */
    assert_int_equal(sl.n, 7);
    const float edge = (float)(2.7 / 2.8);
    int k = 0;
    while (k < 6 && sl.sigmas[k] >= edge) k++;
    printf("  SD3.5 sigmas %.4f %.4f %.4f ...: the prompt's negative for %d step(s), zeros for %d\n", sl.sigmas[0],
           sl.sigmas[1], sl.sigmas[2], k, 6 - k);
    assert_true(k >= 1 && k < 6);
    sdw_cond_entry orig1[1] = {entry(SD35_NEG)}, zero1[1] = {zero};
    ref_run a = r;
    a.neg = orig1, a.n_neg = 1, a.last = k, a.leftover = true;
    float *mid = direct(&a, NULL, NULL);
    ref_run b = r;
    b.neg = zero1, b.n_neg = 1, b.first = k, b.no_noise = true, b.init = mid;
    float *two = direct(&b, NULL, NULL);
    /* The split divides by (1 - sigma_k) and multiplies back: float32 rounding only. */
    double rel = test_rel_l2(lat, two, n);
    printf("  SD3.5: ranged run vs split runs: rel L2 %.3g\n", rel);
    assert_true(rel < 1e-5);
    free(mid);
    free(two);
    free(lat);
    free(got);
}

/* ---------------------------------------------------------------- FLUX */

#define FLUX_TAIL(model, clip, vae, latent, steps, extra)                                                      \
    " '31': {'class_type': 'KSampler', 'inputs': {'seed': 5, 'steps': " steps ", 'cfg': 1.0,"                 \
    " 'sampler_name': 'euler', 'scheduler': 'simple', 'denoise': 1, 'model': " model ","                     \
    " 'positive': ['35', 0], 'negative': ['33', 0], 'latent_image': ['27', 0]}},"                            \
    " '6': {'class_type': 'CLIPTextEncode', 'inputs': {'text': 'a red fox in the snow', 'clip': " clip "}},"  \
    " '35': {'class_type': 'FluxGuidance', 'inputs': {'conditioning': ['6', 0], 'guidance': 3.5}},"           \
    " '33': {'class_type': 'ConditioningZeroOut', 'inputs': {'conditioning': ['6', 0]}},"                     \
    " '27': {'class_type': '" latent "', 'inputs': {'width': 64, 'height': 64, 'batch_size': 1}},"            \
    " '8': {'class_type': 'VAEDecode', 'inputs': {'samples': ['31', 0], 'vae': " vae "}},"                    \
    " '9': {'class_type': 'SaveImage', 'inputs': {'filename_prefix': 'flux', 'images': ['8', 0]}}" extra "}"

/* flux_dev_checkpoint_example: one file for all. */
#define FLUX_CKPT(latent, model, extra)                                                                        \
    "{'30': {'class_type': 'CheckpointLoaderSimple', 'inputs': {'ckpt_name':"                                 \
    " 'flux-tiny-dev/flux1-dev-allinone.safetensors'}}," FLUX_TAIL(model, "['30', 1]", "['30', 2]", latent, "4", extra)

/* flux_dev_example's loaders: the diffusion model, the two text encoders and the VAE as files. */
#define FLUX_SPLIT(unet, t5)                                                                     \
    "{'12': {'class_type': 'UNETLoader', 'inputs': {'unet_name': '" unet "', 'weight_dtype': 'default'}},"     \
    " '11': {'class_type': 'DualCLIPLoader', 'inputs': {'clip_name1': 'flux-tiny-common/" t5 "',"             \
    " 'clip_name2': 'flux-tiny-common/clip_l.safetensors', 'type': 'flux'}},"                                 \
    " '10': {'class_type': 'VAELoader', 'inputs': {'vae_name': 'flux-tiny-common/ae.safetensors'}},"

/* flux_dev_example: ModelSamplingFlux and the custom sampler's parts (sampler_cls: the sampler's class). */
#define FLUX_CUSTOM(sampler_cls, decoded)                                                                      \
    FLUX_SPLIT("flux-tiny-dev/flux1-dev.safetensors", "t5xxl_fp8_e4m3fn.safetensors")                           \
    " '30': {'class_type': 'ModelSamplingFlux', 'inputs': {'model': ['12', 0], 'max_shift': 1.15,"            \
    " 'base_shift': 0.5, 'width': 64, 'height': 64}},"                                                       \
    " '6': {'class_type': 'CLIPTextEncode', 'inputs': {'text': 'a red fox in the snow', 'clip': ['11', 0]}},"  \
    " '26': {'class_type': 'FluxGuidance', 'inputs': {'conditioning': ['6', 0], 'guidance': 3.5}},"           \
    " '22': {'class_type': 'BasicGuider', 'inputs': {'model': ['30', 0], 'conditioning': ['26', 0]}},"        \
    " '16': {'class_type': 'KSamplerSelect', 'inputs': {'sampler_name': 'euler'}},"                          \
    " '17': {'class_type': 'BasicScheduler', 'inputs': {'model': ['30', 0], 'scheduler': 'simple',"           \
    " 'steps': 4, 'denoise': 1.0}},"                                                                         \
    " '25': {'class_type': 'RandomNoise', 'inputs': {'noise_seed': 5}},"                                     \
    " '27': {'class_type': 'EmptySD3LatentImage', 'inputs': {'width': 64, 'height': 64, 'batch_size': 1}},"   \
    " '13': {'class_type': " sampler_cls ", 'inputs': {'noise': ['25', 0], 'guider': ['22', 0],"              \
    " 'sampler': ['16', 0], 'sigmas': ['17', 0], 'latent_image': ['27', 0]}},"                               \
    " '8': {'class_type': 'VAEDecode', 'inputs': {'samples': " decoded ", 'vae': ['10', 0]}},"                \
    " '9': {'class_type': 'SaveImage', 'inputs': {'filename_prefix': 'flux', 'images': ['8', 0]}}}"

#define FLUX_PROMPT "a red fox in the snow"

static float *flux_direct(int steps, bool flux_sampling, double shift)
{
    sdw_cond_entry pos[1] = {entry(FLUX_PROMPT)}, neg[1] = {entry(FLUX_PROMPT)};
    pos[0].guidance = 3.5f;
    neg[0].zero = true;
    ref_run r = {.pos = pos, .neg = neg, .n_pos = 1, .n_neg = 1, .size = 64, .steps = steps, .cfg = 1.0f, .seed = 5,
                 .sampler = SDW_SAMPLER_EULER, .schedule = SDW_SCHEDULE_SIMPLE, .flux_sampling = flux_sampling,
                 .shift = shift};
    return direct(&r, NULL, NULL);
}

static void test_flux_dev(void **state)
{
    (void)state;
    size_t n, n2;
    float *ckpt = run_latents(FLUX_CKPT("EmptySD3LatentImage", "['30', 0]", ""), "31", &n);
    assert_int_equal(n, 16 * 8 * 8);
    sdw_image img = E.saved[0];
    E.saved[0] = (sdw_image){0};
    E.n_saved = 0;
    float *lat = flux_direct(4, false, 0);
    check_equal("FLUX dev checkpoint example", ckpt, lat, n);
    free(lat);

    float *split = run_latents(FLUX_SPLIT("flux-tiny-dev/flux1-dev.safetensors", "t5xxl_fp8_e4m3fn.safetensors")
                               FLUX_TAIL("['12', 0]", "['11', 0]", "['10', 0]", "EmptySD3LatentImage", "4", ""),
                               "31", &n2);
    assert_int_equal(n2, n);
    assert_non_null(strstr(E.loaded.path, "flux1-dev.safetensors"));
    double mx = test_max_abs(split, ckpt, n);
    int diff = 0;
    for (size_t i = 0; i < (size_t)img.w * img.h * img.channels; i++) diff += img.data[i] != E.saved[0].data[i];
    printf("  FLUX dev: checkpoint vs UNETLoader + DualCLIPLoader + VAELoader: latents max abs %.3g, image bytes "
           "differing %d\n", mx, diff);
    assert_true(mx == 0);
    assert_int_equal(diff, 0);
    sdw_image_free(&img);

    /* ModelSamplingFlux at 64x64: mu = 16 * (1.15 - 0.5) / 3840 + 0.5 - 256 * (1.15 - 0.5) / 3840 */
    float *shifted = run_latents(FLUX_SPLIT("flux-tiny-dev/flux1-dev.safetensors", "t5xxl_fp8_e4m3fn.safetensors")
                                 FLUX_TAIL("['40', 0]", "['11', 0]", "['10', 0]", "EmptySD3LatentImage", "4",
                                           ", '40': {'class_type': 'ModelSamplingFlux', 'inputs': {'model': ['12', 0],"
                                           " 'max_shift': 1.15, 'base_shift': 0.5, 'width': 64, 'height': 64}}"),
                                 "31", &n2);
    const double mm = (1.15 - 0.5) / (4096 - 256), mu = 16 * mm + (0.5 - mm * 256);
    lat = flux_direct(4, true, mu);
    check_equal("FLUX dev with ModelSamplingFlux (mu 0.459)", shifted, lat, n);
    printf("  FLUX dev: ModelSamplingFlux mu %.4f vs the default 1.15: rel L2 %.3g\n", mu,
           test_rel_l2(shifted, split, n));
    assert_true(test_rel_l2(shifted, split, n) > 1e-4);
    free(lat);

    /* flux_dev_example's custom sampler: the same run from its parts. */
    float *custom = run_latents(FLUX_CUSTOM("'SamplerCustomAdvanced'", "['13', 0]"), "13", &n2);
    printf("  FLUX dev: SamplerCustomAdvanced (RandomNoise, BasicGuider, KSamplerSelect, BasicScheduler) vs "
           "KSampler: max abs %.3g\n", test_max_abs(custom, shifted, n));
    assert_true(test_max_abs(custom, shifted, n) == 0);
    free(custom);
    free(shifted);

    /* EmptyLatentImage on FLUX: ComfyUI's fix_empty_latent_channels gives 16 channels; the same latents. */
    float *empty4 = run_latents(FLUX_CKPT("EmptyLatentImage", "['30', 0]", ""), "31", &n2);
    assert_int_equal(n2, n);
    assert_true(test_max_abs(empty4, ckpt, n) == 0);
    free(empty4);
    free(split);
    free(ckpt);
}

static void test_flux_schnell(void **state)
{
    (void)state;
    size_t n;
    float *got = run_latents(FLUX_SPLIT("flux-tiny-schnell/flux1-schnell.safetensors", "t5xxl.safetensors")
                             FLUX_TAIL("['12', 0]", "['11', 0]", "['10', 0]", "EmptySD3LatentImage", "4", ""),
                             "31", &n);
    assert_int_equal(E.saved[0].w, 64);
    float *lat = flux_direct(4, false, 0);
    check_equal("FLUX schnell example (4 steps)", got, lat, n);
    free(lat);
    free(got);
}

/* ---------------------------------------------------------------- custom sampling on SD3.5 */

/* The SD3.5 workflow's KSampler as CFGGuider + KSamplerSelect + BasicScheduler + RandomNoise. */
#define SD35_CUSTOM(decoded)                                                                                   \
    "{'4': {'class_type': 'CheckpointLoaderSimple', 'inputs': {'ckpt_name': 'sd35-tiny/sd35-tiny.safetensors'}}," \
    " '11': {'class_type': 'TripleCLIPLoader', 'inputs': {'clip_name1': 'clip_l.safetensors',"                \
    " 'clip_name2': 'clip_g.safetensors', 'clip_name3': 't5xxl.safetensors'}},"                               \
    " '13': {'class_type': 'ModelSamplingSD3', 'inputs': {'shift': 3.0, 'model': ['4', 0]}},"                 \
    " '6': {'class_type': 'CLIPTextEncode', 'inputs': {'text': 'a lighthouse on a cliff at dusk',"            \
    " 'clip': ['11', 0]}},"                                                                                  \
    " '71': {'class_type': 'CLIPTextEncode', 'inputs': {'text': 'blurry, low quality', 'clip': ['11', 0]}},"  \
    " '67': {'class_type': 'ConditioningZeroOut', 'inputs': {'conditioning': ['71', 0]}},"                    \
    " '68': {'class_type': 'ConditioningSetTimestepRange', 'inputs': {'start': 0.1, 'end': 1.0,"              \
    " 'conditioning': ['67', 0]}},"                                                                          \
    " '70': {'class_type': 'ConditioningSetTimestepRange', 'inputs': {'start': 0.0, 'end': 0.1,"              \
    " 'conditioning': ['71', 0]}},"                                                                          \
    " '69': {'class_type': 'ConditioningCombine', 'inputs': {'conditioning_1': ['68', 0],"                    \
    " 'conditioning_2': ['70', 0]}},"                                                                        \
    " '135': {'class_type': 'EmptySD3LatentImage', 'inputs': {'width': 64, 'height': 64, 'batch_size': 1}},"  \
    " '20': {'class_type': 'CFGGuider', 'inputs': {'model': ['13', 0], 'positive': ['6', 0],"                 \
    " 'negative': ['69', 0], 'cfg': 4.5}},"                                                                  \
    " '21': {'class_type': 'KSamplerSelect', 'inputs': {'sampler_name': 'dpmpp_2m'}},"                       \
    " '22': {'class_type': 'BasicScheduler', 'inputs': {'model': ['13', 0], 'scheduler': 'sgm_uniform',"      \
    " 'steps': 8, 'denoise': 1.0}},"                                                                         \
    " '23': {'class_type': 'RandomNoise', 'inputs': {'noise_seed': 77}},"                                    \
    " '3': {'class_type': 'SamplerCustomAdvanced', 'inputs': {'noise': ['23', 0], 'guider': ['20', 0],"       \
    " 'sampler': ['21', 0], 'sigmas': ['22', 0], 'latent_image': ['135', 0]}},"                              \
    " '231': {'class_type': 'VAEDecode', 'inputs': {'samples': " decoded ", 'vae': ['4', 2]}},"               \
    " '9': {'class_type': 'SaveImage', 'inputs': {'filename_prefix': 'sd3.5', 'images': ['231', 0]}}}"

static void test_sd35_custom_sampler(void **state)
{
    (void)state;
    size_t n, n2;
    float *ks = run_latents(SD35_WORKFLOW("dpmpp_2m", "8"), "3", &n);
    float *custom = run_latents(SD35_CUSTOM("['3', 0]"), "3", &n2);
    assert_int_equal(n2, n);
    printf("  SD3.5: SamplerCustomAdvanced (CFGGuider 4.5, KSamplerSelect, BasicScheduler, RandomNoise) vs KSampler: "
           "max abs %.3g\n", test_max_abs(custom, ks, n));
    assert_true(test_max_abs(custom, ks, n) == 0);
    free(custom);
    free(ks);
    /* denoised_output (the last step's x0) is not kept: reading it fails at the sampler. */
    run_fails(SD35_CUSTOM("['3', 1]"), "3", "denoised_output");
}

/* ---------------------------------------------------------------- the wrong family */

static void test_wrong_family(void **state)
{
    (void)state;
    run_fails(FLUX_CKPT("EmptySD3LatentImage", "['40', 0]",
                        ", '40': {'class_type': 'ModelSamplingSD3', 'inputs': {'model': ['30', 0], 'shift': 3.0}}"),
              "31", "node 31 (KSampler): ModelSamplingSD3 applies to SD3 / SD3.5 models");
    run_fails("{'3': {'class_type': 'KSampler', 'inputs': {'seed': 1, 'steps': 2, 'cfg': 4.5, 'sampler_name': 'euler',"
              " 'scheduler': 'sgm_uniform', 'denoise': 1, 'model': ['13', 0], 'positive': ['6', 0],"
              " 'negative': ['6', 0], 'latent_image': ['135', 0]}},"
              " '4': {'class_type': 'CheckpointLoaderSimple', 'inputs': {'ckpt_name': 'sd35-tiny/sd35-tiny.safetensors'}},"
              " '11': {'class_type': 'TripleCLIPLoader', 'inputs': {'clip_name1': 'clip_l.safetensors',"
              " 'clip_name2': 'clip_g.safetensors', 'clip_name3': 't5xxl.safetensors'}},"
              " '13': {'class_type': 'ModelSamplingFlux', 'inputs': {'model': ['4', 0], 'max_shift': 1.15,"
              " 'base_shift': 0.5, 'width': 64, 'height': 64}},"
              " '6': {'class_type': 'CLIPTextEncode', 'inputs': {'text': 'a', 'clip': ['11', 0]}},"
              " '135': {'class_type': 'EmptySD3LatentImage', 'inputs': {'width': 64, 'height': 64, 'batch_size': 1}},"
              " '231': {'class_type': 'VAEDecode', 'inputs': {'samples': ['3', 0], 'vae': ['4', 2]}},"
              " '9': {'class_type': 'PreviewImage', 'inputs': {'images': ['231', 0]}}}",
              "3", "ModelSamplingFlux applies to FLUX models");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percent_to_sigma),
        cmocka_unit_test(test_range_selection),
        cmocka_unit_test(test_sd35_example),
        cmocka_unit_test(test_sd35_range_split),
        cmocka_unit_test(test_flux_dev),
        cmocka_unit_test(test_flux_schnell),
        cmocka_unit_test(test_sd35_custom_sampler),
        cmocka_unit_test(test_wrong_family),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
