/* test_comfy_exec.c: the ComfyUI workflow executor (comfy_exec.c and the
 * node functions) on real API-format workflows over sd1-tiny, through a
 * fake environment that resolves names in tests/data, loads the model with
 * the spec's LoRAs, and records what the executor reports:
 *   - txt2img (ComfyUI's default workflow, at the 4-step Euler golden
 *     case's settings): the saved images and the sampler's latents equal
 *     one direct comfy-mode pipeline run with the same settings; the image
 *     is also compared with the golden case (ComfyUI's first x is noise *
 *     sqrt(1 + sigma^2) where diffusers' is noise * sigma: the figure is
 *     printed, test_comfy_sampling.c checks that relation); SaveImage's
 *     prefix, the executed output {"images": [...]}, executing and
 *     progress callbacks;
 *   - img2img (LoadImage -> VAEEncode -> KSampler denoise 0.6), inpainting
 *     (VAEEncodeForInpaint's gray fill and grown mask; SetLatentNoiseMask):
 *     equal to direct runs, latents kept where the mask is 0;
 *   - a LoRA workflow: the spec the environment receives, the image equals
 *     our pipeline with the same LoRA set and differs from the no-LoRA one;
 *   - a ControlNet workflow (Canny -> ControlNetApplyAdvanced), with ComfyUI's
 *     sigma percents turned into our step window;
 *   - failures: a node's error sets failed_node and names it; a cancel.
 *   - the resampling rules (torch's interpolate) on small known cases. */
#include "testkit.h"
#include "comfy/comfy_values.h"
#include "core/error.h"
#include "io/image.h"
#include "models/controlnet.h"
#include "models/lora.h"
#include "models/model.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- the fake environment */

typedef struct {
    sdw_model *m;
    char model_path[4096], model_vae[4096];
    sdw_comfy_model_spec last_spec;
    int model_calls, loads;
    char lora_paths[SDW_MAX_LORAS][4096];
    struct sdw_controlnet *nets[4];
    char net_paths[4][4096];
    int n_nets;
    char tmp_dir[256];
    char executing[64][16];
    int n_executing;
    const char *cancel_at;
    int progress_calls, progress_total;
    char progress_node[16];
    sdw_image saved[8];
    char saved_prefix[8][64];
    bool saved_temp[8];
    int n_saved, counter;
    cJSON *executed[8];
    char executed_node[8][16];
    int n_executed;
} fake_env;

static fake_env E;

static bool file_exists(const char *p) { return access(p, R_OK) == 0; }

static bool find(fake_env *e, sdw_comfy_folder f, const char *name, char *path, size_t n)
{
    const char *roots[3] = {NULL, NULL, NULL};
    char r0[512], r1[512], r2[512];
    switch (f) {
    case SDW_FOLDER_CHECKPOINTS:
        snprintf(r0, sizeof r0, "%s", test_data_path("models"));
        roots[0] = r0;
        break;
    case SDW_FOLDER_VAE: case SDW_FOLDER_CLIP: case SDW_FOLDER_UNET:
        snprintf(r0, sizeof r0, "%s", test_data_path("flux/models"));
        roots[0] = r0;
        break;
    case SDW_FOLDER_LORAS:
        snprintf(r0, sizeof r0, "%s", test_data_path("models/sd1-tiny-lora"));
        roots[0] = r0;
        break;
    case SDW_FOLDER_CONTROLNET:
        snprintf(r0, sizeof r0, "%s", test_data_path("controlnet/models"));
        roots[0] = r0;
        break;
    case SDW_FOLDER_INPUT:
        snprintf(r0, sizeof r0, "%s", e->tmp_dir);
        snprintf(r1, sizeof r1, "%s", test_data_path("inputs"));
        snprintf(r2, sizeof r2, "%s", test_data_path("controlnet/inputs"));
        roots[0] = r0, roots[1] = r1, roots[2] = r2;
        break;
    default: return false;
    }
    for (int i = 0; i < 3 && roots[i]; i++) {
        snprintf(path, n, "%s/%s", roots[i], name);
        if (file_exists(path)) return true;
    }
    return false;
}

static bool cat_has(void *user, sdw_comfy_folder f, const char *name)
{
    char p[4096];
    return find(user, f, name, p, sizeof p);
}

static sdw_status env_resolve(void *user, sdw_comfy_folder f, const char *name, char *path, size_t n)
{
    if (!find(user, f, name, path, n)) return sdw_fail(SDW_ERR_IO, "no file '%s'", name);
    return SDW_OK;
}

static sdw_status env_model(void *user, const sdw_comfy_model_spec *spec, sdw_model **out)
{
    fake_env *e = user;
    e->model_calls++;
    e->last_spec = *spec;
    for (int i = 0; i < spec->n_loras; i++) {
        snprintf(e->lora_paths[i], sizeof e->lora_paths[i], "%s", spec->loras[i].path);
        e->last_spec.loras[i].path = e->lora_paths[i];
    }
    if (!e->m || strcmp(e->model_path, spec->path) || strcmp(e->model_vae, spec->vae)) {
        /* ControlNets live on the model's backend: they go with it. */
        for (int i = 0; i < e->n_nets; i++) sdw_controlnet_free(e->nets[i]);
        e->n_nets = 0;
        sdw_model_free(e->m);
        e->m = NULL;
        sdw_load_params lp = sdw_load_params_default();
        lp.precision = SDW_PRECISION_F32;
        lp.with_vae_encoder = true;
        lp.vae_path = spec->vae[0] ? spec->vae : NULL;
        lp.clip_l_path = spec->clip_l[0] ? spec->clip_l : NULL;
        lp.clip_g_path = spec->clip_g[0] ? spec->clip_g : NULL;
        lp.t5_path = spec->t5[0] ? spec->t5 : NULL;
        e->loads++;
        SDW_TRY(sdw_model_load(spec->path, &lp, &e->m));
        snprintf(e->model_path, sizeof e->model_path, "%s", spec->path);
        snprintf(e->model_vae, sizeof e->model_vae, "%s", spec->vae);
    }
    SDW_TRY(sdw_model_set_loras(e->m, spec->loras, spec->n_loras, NULL));
    *out = e->m;
    return SDW_OK;
}

static sdw_status env_controlnet(void *user, const char *path, sdw_model *m, const struct sdw_controlnet **out)
{
    fake_env *e = user;
    for (int i = 0; i < e->n_nets; i++)
        if (!strcmp(e->net_paths[i], path)) {
            *out = e->nets[i];
            return SDW_OK;
        }
    if (e->n_nets == 4) return sdw_fail(SDW_ERR_NOMEM, "too many nets");
    SDW_TRY(sdw_controlnet_load(m->be, path, &e->nets[e->n_nets]));
    snprintf(e->net_paths[e->n_nets], sizeof e->net_paths[0], "%s", path);
    *out = e->nets[e->n_nets++];
    return SDW_OK;
}

static sdw_status env_executing(void *user, const char *id)
{
    fake_env *e = user;
    if (e->n_executing < 64) snprintf(e->executing[e->n_executing++], 16, "%s", id);
    return e->cancel_at && !strcmp(e->cancel_at, id) ? SDW_ERR_CANCELLED : SDW_OK;
}

static sdw_status env_progress(void *user, const char *id, int step, int total, const float *preview, int pw, int ph)
{
    fake_env *e = user;
    e->progress_calls++;
    e->progress_total = total;
    snprintf(e->progress_node, sizeof e->progress_node, "%s", id);
    assert_true(step >= 1 && step <= total);
    assert_true(preview == NULL || (pw > 0 && ph > 0));
    return SDW_OK;
}

/* ComfyUI's names: prefix_00001_.png, counting up (the server's env does the same). */
static sdw_status env_save(void *user, const sdw_image *img, const char *prefix, bool temp, sdw_comfy_file *f)
{
    fake_env *e = user;
    assert_true(e->n_saved < 8);
    int k = e->n_saved++;
    SDW_TRY(sdw_image_alloc(&e->saved[k], img->w, img->h, img->channels));
    memcpy(e->saved[k].data, img->data, (size_t)img->w * img->h * img->channels);
    snprintf(e->saved_prefix[k], sizeof e->saved_prefix[k], "%s", prefix);
    e->saved_temp[k] = temp;
    snprintf(f->filename, sizeof f->filename, "%s_%05d_.png", prefix, ++e->counter);
    snprintf(f->type, sizeof f->type, "%s", temp ? "temp" : "output");
    return SDW_OK;
}

static void env_executed(void *user, const char *id, cJSON *output)
{
    fake_env *e = user;
    assert_true(e->n_executed < 8);
    snprintf(e->executed_node[e->n_executed], 16, "%s", id);
    e->executed[e->n_executed++] = output;
}

static const sdw_comfy_env ENV = {&E, env_model, env_resolve, env_controlnet, env_executing, env_progress, env_save,
                                  env_executed};
static const sdw_comfy_catalog CAT = {&E, NULL, cat_has};

/* Forgets what the last run reported (the model stays loaded). */
static void env_reset(void)
{
    for (int i = 0; i < E.n_saved; i++) sdw_image_free(&E.saved[i]);
    for (int i = 0; i < E.n_executed; i++) cJSON_Delete(E.executed[i]);
    E.n_saved = E.n_executed = E.n_executing = E.progress_calls = E.counter = 0;
    E.cancel_at = NULL;
}

static int setup(void **state)
{
    (void)state;
    snprintf(E.tmp_dir, sizeof E.tmp_dir, "/tmp/test_comfy_exec.XXXXXX");
    if (!mkdtemp(E.tmp_dir)) return -1;
    /* An RGBA upload: the inpaint case's picture, transparent where its mask is white. */
    sdw_image rgb = {0}, mask = {0}, rgba = {0};
    if (sdw_image_load(test_data_path("inputs/inp4_sd1_euler_s1.0_init.png"), 0, &rgb) != SDW_OK) return -1;
    if (sdw_image_load(test_data_path("inputs/inp4_sd1_euler_s1.0_mask.png"), 0, &mask) != SDW_OK) return -1;
    if (sdw_image_alloc(&rgba, rgb.w, rgb.h, 4) != SDW_OK) return -1;
    for (int i = 0; i < rgb.w * rgb.h; i++) {
        memcpy(rgba.data + i * 4, rgb.data + i * 3, 3);
        rgba.data[i * 4 + 3] = (uint8_t)(255 - mask.data[i * mask.channels]);
    }
    char p[512];
    snprintf(p, sizeof p, "%s/inpaint_rgba.png", E.tmp_dir);
    sdw_status s = sdw_image_save(p, &rgba, NULL, 0);
    sdw_image_free(&rgb);
    sdw_image_free(&mask);
    sdw_image_free(&rgba);
    return s == SDW_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    env_reset();
    for (int i = 0; i < E.n_nets; i++) sdw_controlnet_free(E.nets[i]);
    sdw_model_free(E.m);
    char p[512];
    snprintf(p, sizeof p, "%s/inpaint_rgba.png", E.tmp_dir);
    unlink(p);
    rmdir(E.tmp_dir);
    return 0;
}

/* ---------------------------------------------------------------- running workflows */

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
    sdw_status s = sdw_comfy_graph_parse(prompt, &CAT, &g, &err);
    if (s != SDW_OK) {
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

/* Runs a workflow and keeps its values. */
static sdw_comfy_exec *run_ok(const sdw_comfy_graph *g)
{
    env_reset();
    sdw_comfy_exec *x;
    int failed;
    if (sdw_comfy_run_keep(g, &ENV, &failed, &x) != SDW_OK) fail_msg("run: %s (node %d)", sdw_last_error(), failed);
    assert_int_equal(failed, -1);
    return x;
}

static const sdw_cvalue *value(const sdw_comfy_exec *x, const char *id, int slot)
{
    const sdw_cvalue *v = sdw_cx_value(x, node_index(x->g, id), slot);
    if (!v) fail_msg("node %s has no value %d", id, slot);
    return v;
}

/* ---------------------------------------------------------------- direct references */

static sdw_cond_entry entry(const char *text)
{
    return (sdw_cond_entry){.prompt = text, .strength = 1.0f, .guidance = -1.0f};
}

typedef struct {
    const char *prompt, *negative;
    int w, h, batch, steps, schedule_steps, first;
    float cfg;
    uint64_t seed;
    const float *init_scaled;
    const float *noise_mask;
    const sdw_control_unit *controls;
    int n_controls;
    sdw_schedule_kind schedule;   /* normal (0) unless said */
    float guidance;               /* FluxGuidance on the positive entry; 0 = none */
} ref_run;

/* The pipeline's comfy mode, as the executor should call it; latents out (scaled). */
static float *direct(const ref_run *r)
{
    const sdw_model_info *info = sdw_model_get_info(E.m);
    sdw_cond_entry pos = entry(r->prompt), neg = entry(r->negative);
    if (r->guidance > 0) pos.guidance = r->guidance;
    neg.zero = r->negative == NULL;   /* ConditioningZeroOut of the positive */
    if (!r->negative) neg.prompt = r->prompt;
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.comfy = true;
    p.positive = &pos;
    p.n_positive = 1;
    p.negative = &neg;
    p.n_negative = 1;
    p.width = r->w;
    p.height = r->h;
    p.batch_size = r->batch;
    p.sampler = SDW_SAMPLER_EULER;
    p.schedule = r->schedule;
    p.steps = p.schedule_steps = r->schedule_steps;
    p.first_step = r->first;
    p.last_step = r->schedule_steps;
    p.add_noise = true;
    p.cfg_scale = r->cfg;
    p.seed = r->seed;
    size_t n = (size_t)r->batch * info->latent_channels * (r->h / 8) * (r->w / 8);
    float *empty = malloc(n * sizeof *empty);   /* process_latent_in of EmptyLatentImage's zeros */
    for (size_t i = 0; i < n; i++) empty[i] = (0.0f - info->latent_shift) * info->latent_scale;
    p.init_latents = r->init_scaled ? r->init_scaled : empty;
    p.noise_mask = r->noise_mask;
    p.controls = r->controls;
    p.n_controls = r->n_controls;
    float *lat = malloc(n * sizeof *lat);
    p.latents_out = lat;
    if (sdw_pipeline_run(E.m, &p, NULL) != SDW_OK) fail_msg("direct run: %s", sdw_last_error());
    free(empty);
    return lat;
}

/* The sampler's LATENT (unscaled) against direct latents (scaled): ComfyUI's process_latent_out. */
static void check_latents(const char *what, const sdw_cv_latent *l, const float *scaled)
{
    const sdw_model_info *info = sdw_model_get_info(E.m);
    size_t n = (size_t)l->batch * l->channels * l->h * l->w;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)l->samples[i] - (double)(scaled[i] / info->latent_scale + info->latent_shift));
        if (d > worst) worst = d;
    }
    printf("  %s: executor latents vs direct run: max abs %.3g\n", what, worst);
    assert_true(worst == 0);
}

/* The saved 8-bit images against decoded direct latents, truncated as numpy's astype(uint8). */
static void check_saved(const char *what, const float *scaled, int batch, int h, int w, int first_saved)
{
    float *img = malloc((size_t)batch * h * 8 * w * 8 * 3 * sizeof *img);
    if (sdw_pipeline_decode(E.m, scaled, batch, h, w, -1, img) != SDW_OK) fail_msg("%s", sdw_last_error());
    size_t per = (size_t)h * 8 * w * 8 * 3;
    int diff = 0;
    for (int b = 0; b < batch; b++) {
        const sdw_image *s = &E.saved[first_saved + b];
        assert_int_equal(s->w, w * 8);
        assert_int_equal(s->h, h * 8);
        for (size_t i = 0; i < per; i++) {
            float v = 255.0f * img[b * per + i];
            uint8_t q = (uint8_t)(v > 0 ? (v < 255 ? v : 255) : 0);
            diff += q != s->data[i];
        }
    }
    printf("  %s: saved images vs direct decode: %d of %zu bytes differ\n", what, diff, per * batch);
    assert_int_equal(diff, 0);
    free(img);
}

/* ---------------------------------------------------------------- txt2img */

#define T2I_WORKFLOW                                                                                           \
    "{'3': {'class_type': 'KSampler', 'inputs': {'seed': 1009, 'steps': 4, 'cfg': 7.5, 'sampler_name': 'euler',"  \
    " 'scheduler': 'normal', 'denoise': 1, 'model': ['4', 0], 'positive': ['6', 0], 'negative': ['7', 0],"      \
    " 'latent_image': ['5', 0]}},"                                                                           \
    " '4': {'class_type': 'CheckpointLoaderSimple', 'inputs': {'ckpt_name': 'sd1-tiny/sd1-tiny.safetensors'}}," \
    " '5': {'class_type': 'EmptyLatentImage', 'inputs': {'width': 64, 'height': 64, 'batch_size': 2}},"        \
    " '6': {'class_type': 'CLIPTextEncode', 'inputs': {'text': 'a photograph of an astronaut riding a horse',"  \
    " 'clip': ['4', 1]}},"                                                                                   \
    " '7': {'class_type': 'CLIPTextEncode', 'inputs': {'text': '', 'clip': ['4', 1]}},"                        \
    " '8': {'class_type': 'VAEDecode', 'inputs': {'samples': ['3', 0], 'vae': ['4', 2]}},"                     \
    " '9': {'class_type': 'SaveImage', 'inputs': {'filename_prefix': 'ComfyUI', 'images': ['8', 0]}}}"

static void test_txt2img(void **state)
{
    (void)state;
    sdw_comfy_graph *g = parse(T2I_WORKFLOW);
    sdw_comfy_exec *x = run_ok(g);
    /* Callbacks: every node announced, the sampler's steps, SaveImage's names and output. */
    assert_int_equal(E.n_executing, 7);
    assert_string_equal(E.executing[E.n_executing - 1], "9");
    assert_int_equal(E.progress_calls, 4);
    assert_int_equal(E.progress_total, 4);
    assert_string_equal(E.progress_node, "3");
    assert_int_equal(E.n_saved, 2);
    assert_string_equal(E.saved_prefix[0], "ComfyUI");
    assert_false(E.saved_temp[0]);
    assert_int_equal(E.n_executed, 1);
    assert_string_equal(E.executed_node[0], "9");
    char *out = cJSON_PrintUnformatted(E.executed[0]);
    assert_string_equal(out, "{\"images\":[{\"filename\":\"ComfyUI_00001_.png\",\"subfolder\":\"\",\"type\":\"output\"},"
                             "{\"filename\":\"ComfyUI_00002_.png\",\"subfolder\":\"\",\"type\":\"output\"}]}");
    free(out);
    assert_int_equal(E.model_calls, 2);   /* the sampler, then VAEDecode on the same spec */
    assert_int_equal(E.last_spec.n_loras, 0);

    ref_run r = {"a photograph of an astronaut riding a horse", "", 64, 64, 2, 4, 4, 0, 7.5f, 1009, NULL, NULL, NULL, 0, SDW_SCHEDULE_NORMAL, 0};
    float *lat = direct(&r);
    check_latents("txt2img", &value(x, "3", 0)->latent, lat);
    check_saved("txt2img", lat, 2, 8, 8, 0);
    free(lat);

    /* Against the diffusers golden case: the same noise, ComfyUI's max_denoise start. */
    sdw_safetensors *ref = test_open_st("cases/t2i_sd1_euler_batch2.safetensors");
    float *gold = test_load_f32(ref, "image", NULL);
    const sdw_cv_image *im = &value(x, "8", 0)->image;
    size_t n = (size_t)im->batch * im->h * im->w * 3;
    printf("  txt2img vs golden t2i_sd1_euler_batch2 (diffusers starts at noise * sigma_max, ComfyUI at noise * "
           "sqrt(1 + sigma_max^2)): image rel L2 %.3g, max abs %.3g\n",
           test_rel_l2(im->data, gold, n), test_max_abs(im->data, gold, n));
    free(gold);
    sdw_st_close(ref);
    sdw_comfy_exec_free(x);
    sdw_comfy_graph_free(g);
}

/* ---------------------------------------------------------------- img2img and inpainting */

#define IMG_HEAD(image)                                                                                        \
    "{'4': {'class_type': 'CheckpointLoaderSimple', 'inputs': {'ckpt_name': 'sd1-tiny/sd1-tiny.safetensors'}}," \
    " '6': {'class_type': 'CLIPTextEncode', 'inputs': {'text': 'portrait of an old fisherman, oil painting',"   \
    " 'clip': ['4', 1]}},"                                                                                   \
    " '7': {'class_type': 'CLIPTextEncode', 'inputs': {'text': 'blurry', 'clip': ['4', 1]}},"                  \
    " '10': {'class_type': 'LoadImage', 'inputs': {'image': '" image "'}},"                                    \
    " '8': {'class_type': 'VAEDecode', 'inputs': {'samples': ['3', 0], 'vae': ['4', 2]}},"                     \
    " '9': {'class_type': 'SaveImage', 'inputs': {'filename_prefix': 'out/x', 'images': ['8', 0]}},"

#define KSAMPLER(latent, denoise)                                                                              \
    " '3': {'class_type': 'KSampler', 'inputs': {'seed': 1011, 'steps': 5, 'cfg': 7.5, 'sampler_name': 'euler',"  \
    " 'scheduler': 'normal', 'denoise': " denoise ", 'model': ['4', 0], 'positive': ['6', 0],"                 \
    " 'negative': ['7', 0], 'latent_image': " latent "}}"

/* process_latent_in of a LATENT value (as the executor must). */
static float *scaled_of(const sdw_cv_latent *l)
{
    float scale = sdw_model_get_info(E.m)->latent_scale;
    size_t n = (size_t)l->batch * l->channels * l->h * l->w;
    float *s = malloc(n * sizeof *s);
    for (size_t i = 0; i < n; i++) s[i] = l->samples[i] * scale;
    return s;
}

static void test_img2img(void **state)
{
    (void)state;
    sdw_comfy_graph *g = parse(IMG_HEAD("i2i_sd1_euler_s0.5_init.png")
                               " '11': {'class_type': 'VAEEncode', 'inputs': {'pixels': ['10', 0], 'vae': ['4', 2]}},"
                               KSAMPLER("['11', 0]", "0.6") "}");
    sdw_comfy_exec *x = run_ok(g);
    assert_string_equal(E.saved_prefix[0], "out/x");
    /* LoadImage: RGB / 255, no alpha: a 64x64 zero mask. */
    const sdw_cv_image *im = &value(x, "10", 0)->image;
    const sdw_cv_mask *mk = &value(x, "10", 1)->mask;
    assert_int_equal(mk->w, 64);
    for (int i = 0; i < mk->w * mk->h; i++) assert_true(mk->data[i] == 0);
    /* VAEEncode: the posterior mean, unscaled. */
    const sdw_cv_latent *enc = &value(x, "11", 0)->latent;
    float *mine = malloc((size_t)4 * 8 * 8 * sizeof *mine);
    assert_int_equal(sdw_pipeline_encode(E.m, im->data, 1, 64, 64, mine), SDW_OK);
    float scale = sdw_model_get_info(E.m)->latent_scale;
    for (int i = 0; i < 4 * 64; i++) assert_true(enc->samples[i] == mine[i] / scale);
    free(mine);
    /* denoise 0.6 of 5 steps: int(5 / 0.6) = 8 laid out, the last 5 run. */
    assert_int_equal(E.progress_calls, 5);
    float *init = scaled_of(enc);
    ref_run r = {"portrait of an old fisherman, oil painting", "blurry", 64, 64, 1, 5, 8, 3, 7.5f, 1011, init, NULL,
                 NULL, 0, SDW_SCHEDULE_NORMAL, 0};
    float *lat = direct(&r);
    check_latents("img2img", &value(x, "3", 0)->latent, lat);
    check_saved("img2img", lat, 1, 8, 8, 0);
    free(lat);
    free(init);
    sdw_comfy_exec_free(x);
    sdw_comfy_graph_free(g);
}

/* The latent-size mask the sampler uses, and the largest change of the
 * latents where it is 0 (relative to the largest latent). */
static double kept_change(const sdw_cv_latent *in, const sdw_cv_latent *out, int *n_kept)
{
    float *m = malloc((size_t)in->h * in->w * sizeof *m);
    sdw_resize_plane(in->noise_mask, in->mask_h, in->mask_w, in->mask_w, 1, m, in->h, in->w, in->w, 1, SDW_UP_BILINEAR);
    double worst = 0, big = 0;
    *n_kept = 0;
    for (int c = 0; c < in->channels; c++)
        for (int i = 0; i < in->h * in->w; i++) {
            float a = in->samples[c * in->h * in->w + i], b = out->samples[c * in->h * in->w + i];
            if (fabsf(a) > big) big = fabsf(a);
            if (m[i] != 0) continue;
            ++*n_kept;
            if (fabs(a - b) > worst) worst = fabs(a - b);
        }
    free(m);
    return worst / big;
}

static void test_inpaint_encode(void **state)
{
    (void)state;
    sdw_comfy_graph *g = parse(IMG_HEAD("inpaint_rgba.png")
                               " '11': {'class_type': 'VAEEncodeForInpaint', 'inputs': {'pixels': ['10', 0],"
                               " 'vae': ['4', 2], 'mask': ['10', 1], 'grow_mask_by': 6}},"
                               KSAMPLER("['11', 0]", "1.0") "}");
    sdw_comfy_exec *x = run_ok(g);
    const sdw_cv_image *im = &value(x, "10", 0)->image;
    const sdw_cv_mask *mk = &value(x, "10", 1)->mask;   /* 1 - alpha: the white of the mask file */
    const sdw_cv_latent *enc = &value(x, "11", 0)->latent;
    int set = 0;
    for (int i = 0; i < 64 * 64; i++) set += mk->data[i] > 0.5f;
    assert_true(set > 0 && set < 64 * 64);
    /* The gray fill: pixels under the (rounded) mask become 0.5 before encoding. */
    float *px = malloc((size_t)64 * 64 * 3 * sizeof *px), *mine = malloc((size_t)4 * 64 * sizeof *mine);
    for (int i = 0; i < 64 * 64; i++)
        for (int c = 0; c < 3; c++)
            px[i * 3 + c] = (im->data[i * 3 + c] - 0.5f) * (1.0f - nearbyintf(mk->data[i])) + 0.5f;
    assert_int_equal(sdw_pipeline_encode(E.m, px, 1, 64, 64, mine), SDW_OK);
    float scale = sdw_model_get_info(E.m)->latent_scale;
    for (int i = 0; i < 4 * 64; i++) assert_true(enc->samples[i] == mine[i] / scale);
    /* The grown mask: conv2d(round(mask), ones(6, 6), padding 3)[:64, :64] clamped. */
    assert_int_equal(enc->mask_h, 64);
    int grown = 0;
    for (int y = 0; y < 64; y++)
        for (int xx = 0; xx < 64; xx++) {
            float s = 0;
            for (int a = 0; a < 6; a++)
                for (int b = 0; b < 6; b++) {
                    int yy = y - 3 + a, xc = xx - 3 + b;
                    if (yy >= 0 && yy < 64 && xc >= 0 && xc < 64) s += nearbyintf(mk->data[yy * 64 + xc]);
                }
            float want = s > 0 ? 1.0f : 0.0f;
            assert_true(enc->noise_mask[y * 64 + xx] == want);
            grown += want > 0;
        }
    printf("  inpaint: mask %d px, grown by 6: %d px\n", set, grown);
    /* The run: equal to the direct one; latents kept where the latent mask is 0. */
    float *mask8 = malloc(64 * sizeof *mask8);
    sdw_resize_plane(enc->noise_mask, 64, 64, 64, 1, mask8, 8, 8, 8, 1, SDW_UP_BILINEAR);
    float *init = scaled_of(enc);
    ref_run r = {"portrait of an old fisherman, oil painting", "blurry", 64, 64, 1, 5, 5, 0, 7.5f, 1011, init, mask8,
                 NULL, 0, SDW_SCHEDULE_NORMAL, 0};
    float *lat = direct(&r);
    const sdw_cv_latent *out = &value(x, "3", 0)->latent;
    check_latents("inpaint (VAEEncodeForInpaint)", out, lat);
    check_saved("inpaint (VAEEncodeForInpaint)", lat, 1, 8, 8, 0);
    assert_non_null(out->noise_mask);   /* ComfyUI's sampler output keeps the input's mask */
    int kept;
    double change = kept_change(enc, out, &kept);
    printf("  inpaint: %d latent values outside the mask, changed by at most %.3g (relative to the largest)\n",
           kept, change);
    assert_true(kept > 0);
    assert_true(change < 1e-5);
    free(px);
    free(mine);
    free(mask8);
    free(init);
    free(lat);
    sdw_comfy_exec_free(x);
    sdw_comfy_graph_free(g);
}

static void test_inpaint_noise_mask(void **state)
{
    (void)state;
    sdw_comfy_graph *g = parse(IMG_HEAD("inpaint_rgba.png")
                               " '11': {'class_type': 'VAEEncode', 'inputs': {'pixels': ['10', 0], 'vae': ['4', 2]}},"
                               " '12': {'class_type': 'SetLatentNoiseMask', 'inputs': {'samples': ['11', 0],"
                               " 'mask': ['10', 1]}},"
                               KSAMPLER("['12', 0]", "0.8") "}");
    sdw_comfy_exec *x = run_ok(g);
    const sdw_cv_latent *in = &value(x, "12", 0)->latent;
    assert_int_equal(in->mask_w, 64);
    float *mask8 = malloc(64 * sizeof *mask8);
    sdw_resize_plane(in->noise_mask, 64, 64, 64, 1, mask8, 8, 8, 8, 1, SDW_UP_BILINEAR);
    float *init = scaled_of(in);
    /* int(5 / 0.8) = 6 laid out, the last 5 run. */
    ref_run r = {"portrait of an old fisherman, oil painting", "blurry", 64, 64, 1, 5, 6, 1, 7.5f, 1011, init, mask8,
                 NULL, 0, SDW_SCHEDULE_NORMAL, 0};
    float *lat = direct(&r);
    const sdw_cv_latent *out = &value(x, "3", 0)->latent;
    check_latents("inpaint (SetLatentNoiseMask)", out, lat);
    int kept;
    double change = kept_change(in, out, &kept);
    printf("  inpaint (SetLatentNoiseMask): %d latent values outside the mask, changed by at most %.3g\n", kept,
           change);
    assert_true(kept > 0);
    assert_true(change < 1e-5);
    free(mask8);
    free(init);
    free(lat);
    sdw_comfy_exec_free(x);
    sdw_comfy_graph_free(g);
}

/* ---------------------------------------------------------------- LoRA */

#define LORA_WORKFLOW(sm, sc)                                                                                  \
    "{'3': {'class_type': 'KSampler', 'inputs': {'seed': 1023, 'steps': 4, 'cfg': 7.5, 'sampler_name': 'euler',"  \
    " 'scheduler': 'normal', 'denoise': 1, 'model': ['10', 0], 'positive': ['6', 0], 'negative': ['7', 0],"    \
    " 'latent_image': ['5', 0]}},"                                                                           \
    " '4': {'class_type': 'CheckpointLoaderSimple', 'inputs': {'ckpt_name': 'sd1-tiny/sd1-tiny.safetensors'}}," \
    " '10': {'class_type': 'LoraLoader', 'inputs': {'model': ['4', 0], 'clip': ['4', 1],"                      \
    " 'lora_name': 'sd1-tiny-lora-kohya.safetensors', 'strength_model': " sm ", 'strength_clip': " sc "}},"    \
    " '5': {'class_type': 'EmptyLatentImage', 'inputs': {'width': 64, 'height': 64, 'batch_size': 1}},"        \
    " '6': {'class_type': 'CLIPTextEncode', 'inputs': {'text': 'a red cube on a wooden table, studio light',"   \
    " 'clip': ['10', 1]}},"                                                                                  \
    " '7': {'class_type': 'CLIPTextEncode', 'inputs': {'text': '', 'clip': ['10', 1]}},"                       \
    " '8': {'class_type': 'VAEDecode', 'inputs': {'samples': ['3', 0], 'vae': ['4', 2]}},"                     \
    " '9': {'class_type': 'SaveImage', 'inputs': {'filename_prefix': 'lora', 'images': ['8', 0]}}}"

static void test_lora(void **state)
{
    (void)state;
    sdw_comfy_graph *g = parse(LORA_WORKFLOW("1.0", "1.0"));
    sdw_comfy_exec *x = run_ok(g);
    /* One LoRA spec for the file, with both strengths. */
    assert_int_equal(E.last_spec.n_loras, 1);
    assert_non_null(strstr(E.last_spec.loras[0].path, "sd1-tiny-lora-kohya.safetensors"));
    assert_true(E.last_spec.loras[0].te_strength == 1.0f && E.last_spec.loras[0].unet_strength == 1.0f);
    /* Our pipeline with the same LoRA set (the env applied it: E.m has it now). */
    ref_run r = {"a red cube on a wooden table, studio light", "", 64, 64, 1, 4, 4, 0, 7.5f, 1023, NULL, NULL, NULL, 0, SDW_SCHEDULE_NORMAL, 0};
    float *with = direct(&r);
    check_latents("LoRA", &value(x, "3", 0)->latent, with);
    check_saved("LoRA", with, 1, 8, 8, 0);
    /* Without it the image differs. */
    assert_int_equal(sdw_model_set_loras(E.m, NULL, 0, NULL), SDW_OK);
    float *without = direct(&r);
    size_t n = 4 * 64;
    printf("  LoRA: latents with vs without the LoRA: rel L2 %.3g\n", test_rel_l2(with, without, n));
    assert_true(test_rel_l2(with, without, n) > 1e-2);
    free(with);
    free(without);
    sdw_comfy_exec_free(x);
    sdw_comfy_graph_free(g);

    /* The MODEL's strength only: te 0. */
    g = parse(LORA_WORKFLOW("0.5", "0"));
    x = run_ok(g);
    assert_int_equal(E.last_spec.n_loras, 1);
    assert_true(E.last_spec.loras[0].te_strength == 0.0f && E.last_spec.loras[0].unet_strength == 0.5f);
    sdw_comfy_exec_free(x);
    sdw_comfy_graph_free(g);
}

/* ---------------------------------------------------------------- ControlNet */

#define CN_WORKFLOW(start, end)                                                                                 \
    "{'3': {'class_type': 'KSampler', 'inputs': {'seed': 1009, 'steps': 4, 'cfg': 7.5, 'sampler_name': 'euler',"  \
    " 'scheduler': 'normal', 'denoise': 1, 'model': ['4', 0], 'positive': ['12', 0], 'negative': ['12', 1],"   \
    " 'latent_image': ['5', 0]}},"                                                                           \
    " '4': {'class_type': 'CheckpointLoaderSimple', 'inputs': {'ckpt_name': 'sd1-tiny/sd1-tiny.safetensors'}}," \
    " '5': {'class_type': 'EmptyLatentImage', 'inputs': {'width': 96, 'height': 64, 'batch_size': 1}},"        \
    " '6': {'class_type': 'CLIPTextEncode', 'inputs': {'text': 'a red cube', 'clip': ['4', 1]}},"              \
    " '7': {'class_type': 'CLIPTextEncode', 'inputs': {'text': '', 'clip': ['4', 1]}},"                        \
    " '10': {'class_type': 'LoadImage', 'inputs': {'image': 'cn_t2i_sd1_cfg1_control_src.png'}},"              \
    " '11': {'class_type': 'Canny', 'inputs': {'image': ['10', 0], 'low_threshold': 0.1,"                     \
    " 'high_threshold': 0.3}},"                                                                              \
    " '13': {'class_type': 'ControlNetLoader', 'inputs': {'control_net_name': 'cn-sd1-tiny/cn-sd1-tiny.safetensors'}}," \
    " '12': {'class_type': 'ControlNetApplyAdvanced', 'inputs': {'positive': ['6', 0], 'negative': ['7', 0],"  \
    " 'control_net': ['13', 0], 'image': ['11', 0], 'strength': 0.8, 'start_percent': " start ","            \
    " 'end_percent': " end "}},"                                                                             \
    " '8': {'class_type': 'VAEDecode', 'inputs': {'samples': ['3', 0], 'vae': ['4', 2]}},"                     \
    " '9': {'class_type': 'PreviewImage', 'inputs': {'images': ['8', 0]}}}"

static void run_controlnet(const char *start, const char *end, float our_start, float our_end)
{
    char wf[4096];
    snprintf(wf, sizeof wf, CN_WORKFLOW("%s", "%s"), start, end);
    sdw_comfy_graph *g = parse(wf);
    sdw_comfy_exec *x = run_ok(g);
    assert_true(E.saved_temp[0]);
    assert_non_null(strstr(E.saved_prefix[0], "ComfyUI_temp_"));
    /* Canny: binary edges in three equal channels, some found. */
    const sdw_cv_image *edges = &value(x, "11", 0)->image;
    int on = 0;
    for (int i = 0; i < edges->w * edges->h; i++) {
        float v = edges->data[i * 3];
        assert_true((v == 0 || v == 1) && edges->data[i * 3 + 1] == v && edges->data[i * 3 + 2] == v);
        on += v == 1;
    }
    assert_true(on > 0);
    /* The same size as the generation: the hint is the edge map itself. */
    assert_int_equal(edges->w, 96);
    sdw_control_unit u = {E.nets[0], edges->data, 0.8f, our_start, our_end, SDW_CONTROL_BALANCED};
    ref_run r = {"a red cube", "", 96, 64, 1, 4, 4, 0, 7.5f, 1009, NULL, NULL, &u, 1, SDW_SCHEDULE_NORMAL, 0};
    float *lat = direct(&r);
    char what[64];
    snprintf(what, sizeof what, "ControlNet %s..%s", start, end);
    printf("  %s: canny edge pixels %d; our window %.2f..%.2f\n", what, on, our_start, our_end);
    check_latents(what, &value(x, "3", 0)->latent, lat);
    free(lat);
    sdw_comfy_exec_free(x);
    sdw_comfy_graph_free(g);
}

static void test_controlnet(void **state)
{
    (void)state;
    run_controlnet("0.0", "1.0", 0.0f, 1.0f);
    /* 4 normal steps sit at t = 999, 666, 333, 0; 0.3..0.7 is t 699.3..299.7: steps 1 and 2. */
    run_controlnet("0.3", "0.7", 0.25f, 0.75f);
}


/* ---------------------------------------------------------------- FLUX from split files */

/* ComfyUI's FLUX dev example: the diffusion model, the two text encoders and
 * the VAE as separate files, FluxGuidance, EmptySD3LatentImage, cfg 1. */
#define FLUX_WORKFLOW                                                                                          \
    "{'3': {'class_type': 'KSampler', 'inputs': {'seed': 42, 'steps': 3, 'cfg': 1.0, 'sampler_name': 'euler',"    \
    " 'scheduler': 'simple', 'denoise': 1, 'model': ['12', 0], 'positive': ['26', 0], 'negative': ['7', 0],"   \
    " 'latent_image': ['5', 0]}},"                                                                           \
    " '12': {'class_type': 'UNETLoader', 'inputs': {'unet_name': 'flux-tiny-dev/flux1-dev.safetensors',"       \
    " 'weight_dtype': 'default'}},"                                                                          \
    " '11': {'class_type': 'DualCLIPLoader', 'inputs': {'clip_name1': 'flux-tiny-common/t5xxl.safetensors',"   \
    " 'clip_name2': 'flux-tiny-common/clip_l.safetensors', 'type': 'flux'}},"                                 \
    " '10': {'class_type': 'VAELoader', 'inputs': {'vae_name': 'flux-tiny-common/ae.safetensors'}},"           \
    " '5': {'class_type': 'EmptySD3LatentImage', 'inputs': {'width': 64, 'height': 64, 'batch_size': 1}},"     \
    " '6': {'class_type': 'CLIPTextEncode', 'inputs': {'text': 'a cat holding a sign', 'clip': ['11', 0]}},"    \
    " '26': {'class_type': 'FluxGuidance', 'inputs': {'conditioning': ['6', 0], 'guidance': 3.5}},"            \
    " '7': {'class_type': 'ConditioningZeroOut', 'inputs': {'conditioning': ['6', 0]}},"                       \
    " '8': {'class_type': 'VAEDecode', 'inputs': {'samples': ['3', 0], 'vae': ['10', 0]}},"                    \
    " '9': {'class_type': 'SaveImage', 'inputs': {'filename_prefix': 'flux', 'images': ['8', 0]}}}"

static void test_flux_split(void **state)
{
    (void)state;
    sdw_comfy_graph *g = parse(FLUX_WORKFLOW);
    E.loads = 0;
    sdw_comfy_exec *x = run_ok(g);
    /* The parts by name: t5xxl -> t5, clip_l -> clip_l; the VAELoader's file in the sampler's spec, so
     * VAEDecode reuses the model: one load. */
    assert_non_null(strstr(E.last_spec.t5, "t5xxl.safetensors"));
    assert_non_null(strstr(E.last_spec.clip_l, "clip_l.safetensors"));
    assert_non_null(strstr(E.last_spec.vae, "ae.safetensors"));
    assert_int_equal(E.loads, 1);
    const sdw_cv_latent *l = &value(x, "3", 0)->latent;
    assert_int_equal(l->channels, 16);
    assert_int_equal(E.saved[0].w, 64);
    /* The direct run: guidance on the entry, the zeroed negative (unused at cfg 1). */
    ref_run r = {"a cat holding a sign", NULL, 64, 64, 1, 3, 3, 0, 1.0f, 42, NULL, NULL, NULL, 0,
                 SDW_SCHEDULE_SIMPLE, 3.5f};
    float *lat = direct(&r);
    check_latents("FLUX split files", l, lat);
    free(lat);
    sdw_comfy_exec_free(x);
    sdw_comfy_graph_free(g);
}

/* ---------------------------------------------------------------- failures */

static void test_failures(void **state)
{
    (void)state;
    int failed;
    /* A node that fails names itself, and failed_node says which. */
    sdw_comfy_graph *g = parse("{'4': {'class_type': 'CheckpointLoaderSimple', 'inputs': {'ckpt_name':"
                               " 'sd1-tiny/sd1-tiny.safetensors'}},"
                               " '5': {'class_type': 'EmptyLatentImage', 'inputs': {'width': 64, 'height': 64,"
                               " 'batch_size': 1}},"
                               " '10': {'class_type': 'LatentUpscale', 'inputs': {'samples': ['5', 0],"
                               " 'upscale_method': 'bislerp', 'width': 128, 'height': 128, 'crop': 'disabled'}},"
                               " '8': {'class_type': 'VAEDecode', 'inputs': {'samples': ['10', 0], 'vae': ['4', 2]}},"
                               " '9': {'class_type': 'PreviewImage', 'inputs': {'images': ['8', 0]}}}");
    env_reset();
    assert_int_equal(sdw_comfy_run(g, &ENV, &failed), SDW_ERR_UNSUPPORTED);
    assert_int_equal(failed, node_index(g, "10"));
    printf("  failure: %s\n", sdw_last_error());
    assert_non_null(strstr(sdw_last_error(), "node 10 (LatentUpscale): "));
    assert_int_equal(E.n_saved, 0);
    /* A cancel from the executing callback. */
    env_reset();
    E.cancel_at = "10";
    assert_int_equal(sdw_comfy_run(g, &ENV, &failed), SDW_ERR_CANCELLED);
    assert_int_equal(failed, node_index(g, "10"));
    assert_string_equal(E.executing[E.n_executing - 1], "10");
    sdw_comfy_graph_free(g);

    /* Prompts encoded with different CLIPs (clip skip on one only). */
    g = parse("{'3': {'class_type': 'KSampler', 'inputs': {'seed': 1, 'steps': 1, 'cfg': 7.5, 'sampler_name': 'euler',"
              " 'scheduler': 'normal', 'denoise': 1, 'model': ['4', 0], 'positive': ['6', 0], 'negative': ['7', 0],"
              " 'latent_image': ['5', 0]}},"
              " '4': {'class_type': 'CheckpointLoaderSimple', 'inputs': {'ckpt_name': 'sd1-tiny/sd1-tiny.safetensors'}},"
              " '11': {'class_type': 'CLIPSetLastLayer', 'inputs': {'clip': ['4', 1], 'stop_at_clip_layer': -2}},"
              " '5': {'class_type': 'EmptyLatentImage', 'inputs': {'width': 64, 'height': 64, 'batch_size': 1}},"
              " '6': {'class_type': 'CLIPTextEncode', 'inputs': {'text': 'a', 'clip': ['11', 0]}},"
              " '7': {'class_type': 'CLIPTextEncode', 'inputs': {'text': '', 'clip': ['4', 1]}},"
              " '8': {'class_type': 'VAEDecode', 'inputs': {'samples': ['3', 0], 'vae': ['4', 2]}},"
              " '9': {'class_type': 'SaveImage', 'inputs': {'filename_prefix': 'x', 'images': ['8', 0]}}}");
    env_reset();
    assert_int_equal(sdw_comfy_run(g, &ENV, &failed), SDW_ERR_UNSUPPORTED);
    assert_int_equal(failed, node_index(g, "3"));
    printf("  failure: %s\n", sdw_last_error());
    assert_non_null(strstr(sdw_last_error(), "node 3 (KSampler): the prompts of one sampler"));
    sdw_comfy_graph_free(g);
}

/* ---------------------------------------------------------------- resampling */

static void test_resize(void **state)
{
    (void)state;
    const float in[4] = {0, 1, 2, 3};   /* [[0, 1], [2, 3]] */
    float out[16];
    /* torch.nn.functional.interpolate(x, size=(4, 4), mode='bilinear'). */
    const float bilinear[16] = {0, 0.25f, 0.75f, 1, 0.5f, 0.75f, 1.25f, 1.5f, 1.5f, 1.75f, 2.25f, 2.5f, 2, 2.25f, 2.75f, 3};
    sdw_resize_plane(in, 2, 2, 2, 1, out, 4, 4, 4, 1, SDW_UP_BILINEAR);
    for (int i = 0; i < 16; i++) assert_true(fabsf(out[i] - bilinear[i]) < 1e-6f);
    /* nearest-exact: each source pixel twice. */
    sdw_resize_plane(in, 2, 2, 2, 1, out, 4, 4, 4, 1, SDW_UP_NEAREST_EXACT);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) assert_true(out[y * 4 + x] == in[(y / 2) * 2 + x / 2]);
    /* area 4 -> 2: means of 2x2 blocks. */
    const float big[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    sdw_resize_plane(big, 4, 4, 4, 1, out, 2, 2, 2, 1, SDW_UP_AREA);
    assert_true(out[0] == 2.5f && out[1] == 4.5f && out[2] == 10.5f && out[3] == 12.5f);
    /* bicubic [0, 1] -> 4 (A = -0.75, edge-clamped taps): Keys' kernel at t = 0.75 and 0.25. */
    const float row[2] = {0, 1};
    const float bicubic[4] = {-0.10546875f, 0.2265625f, 0.7734375f, 1.10546875f};
    sdw_resize_plane(row, 1, 2, 2, 1, out, 1, 4, 4, 1, SDW_UP_BICUBIC);
    for (int i = 0; i < 4; i++) assert_true(fabsf(out[i] - bicubic[i]) < 1e-6f);
    /* common_upscale's centre crop: 96x64 to a square keeps the middle 64 columns. */
    int y0, x0, h, w;
    sdw_center_crop(64, 96, 512, 512, &y0, &x0, &h, &w);
    assert_true(y0 == 0 && x0 == 16 && h == 64 && w == 64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize),
        cmocka_unit_test(test_txt2img),
        cmocka_unit_test(test_img2img),
        cmocka_unit_test(test_inpaint_encode),
        cmocka_unit_test(test_inpaint_noise_mask),
        cmocka_unit_test(test_lora),
        cmocka_unit_test(test_controlnet),
        cmocka_unit_test(test_flux_split),
        cmocka_unit_test(test_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
