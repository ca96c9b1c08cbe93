/* comfy_exec.c: runs a validated ComfyUI graph (comfy_graph.c) node by node
 * in g->order, each node through its function in comfy_node_*.c, keeping
 * every node's output values until the run ends (a value may point into
 * another: comfy_values.h). Before each node the environment hears
 * `executing`; a failing node stops the run with its index in *failed_node
 * and the message prefixed "node 3 (KSampler): ".
 *
 * Also the helpers the node functions share: reading inputs by name (so
 * that the node table's order of inputs is comfy_nodes.c's business alone),
 * the string pool, and which model spec goes to env->model: a sampler's
 * merged MODEL + CLIP spec, and for VAE nodes the model already current
 * when it holds their VAE, so a workflow's VAEDecode does not reload. */
#include "comfy/comfy_values.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *cls;
    sdw_comfy_node_fn fn;
} node_fns[] = {
    {"CheckpointLoaderSimple", sdw_node_checkpoint_loader},
    {"UNETLoader", sdw_node_unet_loader},
    {"CLIPLoader", sdw_node_clip_loader},
    {"DualCLIPLoader", sdw_node_clip_loader},
    {"TripleCLIPLoader", sdw_node_clip_loader},
    {"VAELoader", sdw_node_vae_loader},
    {"LoraLoader", sdw_node_lora_loader},
    {"LoraLoaderModelOnly", sdw_node_lora_loader},
    {"ControlNetLoader", sdw_node_controlnet_loader},
    {"CLIPTextEncode", sdw_node_clip_text_encode},
    {"CLIPSetLastLayer", sdw_node_clip_set_last_layer},
    {"ConditioningCombine", sdw_node_conditioning_combine},
    {"ConditioningSetArea", sdw_node_conditioning_set_area},
    {"ConditioningZeroOut", sdw_node_conditioning_zero_out},
    {"FluxGuidance", sdw_node_flux_guidance},
    {"ControlNetApplyAdvanced", sdw_node_controlnet_apply_advanced},
    {"ConditioningSetTimestepRange", sdw_node_conditioning_set_timestep_range},
    {"ModelSamplingSD3", sdw_node_model_sampling_sd3},
    {"ModelSamplingFlux", sdw_node_model_sampling_flux},
    {"EmptyLatentImage", sdw_node_empty_latent},
    {"EmptySD3LatentImage", sdw_node_empty_sd3_latent},
    {"LatentUpscale", sdw_node_latent_upscale},
    {"SetLatentNoiseMask", sdw_node_set_latent_noise_mask},
    {"VAEEncode", sdw_node_vae_encode},
    {"VAEEncodeForInpaint", sdw_node_vae_encode_for_inpaint},
    {"VAEDecode", sdw_node_vae_decode},
    {"KSampler", sdw_node_ksampler},
    {"KSamplerAdvanced", sdw_node_ksampler_advanced},
    {"SamplerCustomAdvanced", sdw_node_sampler_custom_advanced},
    {"RandomNoise", sdw_node_random_noise},
    {"DisableNoise", sdw_node_disable_noise},
    {"BasicGuider", sdw_node_basic_guider},
    {"CFGGuider", sdw_node_cfg_guider},
    {"KSamplerSelect", sdw_node_ksampler_select},
    {"BasicScheduler", sdw_node_basic_scheduler},
    {"LoadImage", sdw_node_load_image},
    {"LoadImageMask", sdw_node_load_image_mask},
    {"SaveImage", sdw_node_save_image},
    {"PreviewImage", sdw_node_preview_image},
    {"ImageScale", sdw_node_image_scale},
    {"Canny", sdw_node_canny},
};

static sdw_comfy_node_fn find_fn(const char *cls)
{
    for (size_t i = 0; i < sizeof node_fns / sizeof *node_fns; i++)
        if (!strcmp(node_fns[i].cls, cls)) return node_fns[i].fn;
    return NULL;
}

/* ---------------------------------------------------------------- values */

sdw_cvalue *sdw_cv_new(sdw_comfy_type t)
{
    sdw_cvalue *v = calloc(1, sizeof *v);
    if (v) v->type = t;
    return v;
}

void sdw_cv_free(sdw_cvalue *v)
{
    if (!v) return;
    switch (v->type) {
    case SDW_CT_CONDITIONING: free(v->cond.e); break;
    case SDW_CT_LATENT:
        free(v->latent.samples);
        free(v->latent.noise_mask);
        break;
    case SDW_CT_IMAGE: free(v->image.data); break;
    case SDW_CT_MASK: free(v->mask.data); break;
    default: break;
    }
    free(v);
}

const sdw_cvalue *sdw_cx_value(const sdw_comfy_exec *x, int node, int slot)
{
    if (node < 0 || node >= x->g->n_nodes || slot < 0 || slot >= SDW_COMFY_MAX_OUTPUTS) return NULL;
    return x->values[node][slot];
}

/* ---------------------------------------------------------------- inputs */

static int input_index(const sdw_comfy_node *n, const char *name)
{
    for (int i = 0; i < SDW_COMFY_MAX_INPUTS && n->spec->inputs[i].name; i++)
        if (!strcmp(n->spec->inputs[i].name, name)) return i;
    return -1;
}

sdw_status sdw_cx_link(sdw_comfy_exec *x, const sdw_comfy_node *n, const char *name, sdw_comfy_type t,
                       const sdw_cvalue **out)
{
    *out = NULL;
    int i = input_index(n, name);
    if (i < 0 || !n->in[i].present) {
        if (i >= 0 && n->spec->inputs[i].optional) return SDW_OK;
        return sdw_fail(SDW_ERR_INVALID_ARG, "input '%s' is missing", name);
    }
    const sdw_comfy_value *v = &n->in[i];
    if (!v->is_link) return sdw_fail(SDW_ERR_INVALID_ARG, "input '%s' must be a link to a %s output", name,
                                     sdw_comfy_type_name(t));
    const sdw_cvalue *val = sdw_cx_value(x, v->link_node, v->link_slot);
    if (!val) return sdw_fail(SDW_ERR_INVALID_ARG, "input '%s': node %s output %d has no value", name,
                              x->g->nodes[v->link_node].id, v->link_slot);
    if (val->type != t)
        return sdw_fail(SDW_ERR_INVALID_ARG, "input '%s' is a %s, expected %s", name, sdw_comfy_type_name(val->type),
                        sdw_comfy_type_name(t));
    *out = val;
    return SDW_OK;
}

double sdw_cx_num(const sdw_comfy_node *n, const char *name, double def)
{
    int i = input_index(n, name);
    if (i < 0 || !n->in[i].present || n->in[i].is_link) return def;
    return n->in[i].num;
}

const char *sdw_cx_str(const sdw_comfy_node *n, const char *name)
{
    int i = input_index(n, name);
    if (i < 0 || !n->in[i].present || n->in[i].is_link || !n->in[i].str) return "";
    return n->in[i].str;
}

const char *sdw_cx_keep(sdw_comfy_exec *x, const char *s)
{
    if (x->n_strings == x->cap_strings) {
        int cap = x->cap_strings ? 2 * x->cap_strings : 16;
        char **p = realloc(x->strings, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        x->strings = p;
        x->cap_strings = cap;
    }
    char *c = strdup(s);
    if (c) x->strings[x->n_strings++] = c;
    return c;
}

sdw_status sdw_cx_resolve(sdw_comfy_exec *x, sdw_comfy_folder f, const char *name, char *path, size_t n)
{
    if (!x->env->resolve) return sdw_fail(SDW_ERR_UNSUPPORTED, "no %s folder to find '%s' in", sdw_comfy_folder_name(f),
                                          name);
    return x->env->resolve(x->env->user, f, name, path, n);
}

/* ---------------------------------------------------------------- model specs */

bool sdw_cx_spec_equal(const sdw_comfy_model_spec *a, const sdw_comfy_model_spec *b)
{
    if (strcmp(a->path, b->path) || strcmp(a->clip_l, b->clip_l) || strcmp(a->clip_g, b->clip_g) ||
        strcmp(a->t5, b->t5) || strcmp(a->vae, b->vae) || a->weight_type != b->weight_type ||
        a->n_loras != b->n_loras)
        return false;
    for (int i = 0; i < a->n_loras; i++)
        if (strcmp(a->loras[i].path, b->loras[i].path) || a->loras[i].te_strength != b->loras[i].te_strength ||
            a->loras[i].unet_strength != b->loras[i].unet_strength)
            return false;
    return true;
}

sdw_status sdw_cx_add_lora(sdw_comfy_exec *x, sdw_comfy_model_spec *spec, const char *path, float te, float unet)
{
    for (int i = 0; i < spec->n_loras; i++)
        if (!strcmp(spec->loras[i].path, path)) {
            spec->loras[i].te_strength += te;
            spec->loras[i].unet_strength += unet;
            return SDW_OK;
        }
    if (spec->n_loras == SDW_MAX_LORAS) return sdw_fail(SDW_ERR_INVALID_ARG, "more than %d LoRAs", SDW_MAX_LORAS);
    const char *kept = sdw_cx_keep(x, path);
    if (!kept) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    spec->loras[spec->n_loras++] = (sdw_lora_spec){kept, te, unet};
    return SDW_OK;
}

/* Copies a text encoder part the CLIP names over the MODEL's (or keeps the model's). */
static void take_part(char *dst, const char *src)
{
    if (src[0]) snprintf(dst, 4096, "%s", src);
}

sdw_status sdw_cx_merge_spec(sdw_comfy_exec *x, const sdw_comfy_model_spec *model, const sdw_cv_clip *clip,
                             sdw_comfy_model_spec *out)
{
    *out = *model;
    if (!clip) return SDW_OK;
    const sdw_comfy_model_spec *c = &clip->spec;
    if (c->path[0] && strcmp(c->path, model->path))
        return sdw_fail(SDW_ERR_UNSUPPORTED,
                        "the CLIP comes from '%s' and the MODEL from '%s': one sampler runs one model file (give the "
                        "text encoders as separate files with CLIPLoader / DualCLIPLoader instead)",
                        c->path, model->path);
    take_part(out->clip_l, c->clip_l);
    take_part(out->clip_g, c->clip_g);
    take_part(out->t5, c->t5);
    for (int i = 0; i < c->n_loras; i++)
        SDW_TRY(sdw_cx_add_lora(x, out, c->loras[i].path, c->loras[i].te_strength, c->loras[i].unet_strength));
    return SDW_OK;
}

sdw_status sdw_cx_model(sdw_comfy_exec *x, const sdw_comfy_model_spec *spec, sdw_model **m)
{
    if (!x->env->model) return sdw_fail(SDW_ERR_UNSUPPORTED, "no model environment");
    if (!spec->path[0]) return sdw_fail(SDW_ERR_INVALID_ARG, "no model file (connect a checkpoint or UNETLoader)");
    SDW_TRY(x->env->model(x->env->user, spec, m));
    /* The spec's LoRA paths point into this run's pool: the copy stays valid. */
    x->cur = *spec;
    x->have_cur = true;
    x->model = *m;
    return SDW_OK;
}

static bool is_sampler(const sdw_comfy_node *n)
{
    return !strcmp(n->spec->class_type, "KSampler") || !strcmp(n->spec->class_type, "KSamplerAdvanced");
}

/* The link of input `name` of node i, or -1. */
static int link_of(const sdw_comfy_graph *g, int i, const char *name)
{
    const sdw_comfy_node *n = &g->nodes[i];
    int k = input_index(n, name);
    return k >= 0 && n->in[k].present && n->in[k].is_link ? k : -1;
}

/* The CLIP the positive prompt of sampler s is encoded with: follows the
 * conditioning nodes back to a CLIPTextEncode and runs its CLIP chain
 * (loaders only, nothing heavy). NULL when there is none. */
static sdw_status first_clip(sdw_comfy_exec *x, int s, const sdw_cv_clip **out)
{
    const sdw_comfy_graph *g = x->g;
    *out = NULL;
    int k = link_of(g, s, "positive"), node = s;
    for (int hops = 0; k >= 0 && hops < g->n_nodes; hops++) {
        node = g->nodes[node].in[k].link_node;
        const sdw_comfy_node *n = &g->nodes[node];
        if (!strcmp(n->spec->class_type, "CLIPTextEncode")) {
            int c = link_of(g, node, "clip");
            if (c < 0) return SDW_OK;
            int cn = n->in[c].link_node;
            SDW_TRY(sdw_cx_ensure(x, cn));
            const sdw_cvalue *v = sdw_cx_value(x, cn, n->in[c].link_slot);
            if (v && v->type == SDW_CT_CLIP) *out = &v->clip;
            return SDW_OK;
        }
        k = -1;
        for (int i = 0; i < SDW_COMFY_MAX_INPUTS && n->spec->inputs[i].name; i++)
            if (n->spec->inputs[i].type == SDW_CT_CONDITIONING && n->in[i].present && n->in[i].is_link) {
                k = i;
                break;
            }
    }
    return SDW_OK;
}

/* The merged spec of the first sampler in the order that has not run. */
static sdw_status next_sampler_spec(sdw_comfy_exec *x, sdw_comfy_model_spec *spec, bool *found)
{
    *found = false;
    for (int o = 0; o < x->g->n_order; o++) {
        int s = x->g->order[o];
        if (x->done[s] || !is_sampler(&x->g->nodes[s])) continue;
        int k = link_of(x->g, s, "model");
        if (k < 0) return SDW_OK;
        const sdw_comfy_value *v = &x->g->nodes[s].in[k];
        SDW_TRY(sdw_cx_ensure(x, v->link_node));
        const sdw_cvalue *mv = sdw_cx_value(x, v->link_node, v->link_slot);
        if (!mv || mv->type != SDW_CT_MODEL) return SDW_OK;
        const sdw_cv_clip *clip;
        SDW_TRY(first_clip(x, s, &clip));
        SDW_TRY(sdw_cx_merge_spec(x, &mv->model, clip, spec));
        SDW_TRY(sdw_cx_graph_vae(x, spec->vae, sizeof spec->vae));
        *found = true;
        return SDW_OK;
    }
    return SDW_OK;
}

sdw_status sdw_cx_graph_vae(sdw_comfy_exec *x, char *vae, size_t n)
{
    int found = -1;
    for (int i = 0; i < x->g->n_nodes; i++) {
        const sdw_comfy_node *nd = &x->g->nodes[i];
        if (strcmp(nd->spec->class_type, "VAELoader")) continue;
        if (found >= 0 && strcmp(sdw_cx_str(nd, "vae_name"), sdw_cx_str(&x->g->nodes[found], "vae_name")))
            return SDW_OK;   /* two VAE files: each VAE node says which */
        found = i;
    }
    if (found < 0 || vae[0]) return SDW_OK;
    SDW_TRY(sdw_cx_ensure(x, found));
    const sdw_cvalue *v = sdw_cx_value(x, found, 0);
    if (v && v->type == SDW_CT_VAE) snprintf(vae, n, "%s", v->vae.vae);
    return SDW_OK;
}

sdw_status sdw_cx_vae_model(sdw_comfy_exec *x, const sdw_comfy_model_spec *vae, sdw_model **m)
{
    sdw_comfy_model_spec spec;
    bool have = false;
    if (x->have_cur) {
        spec = x->cur;
        have = true;
    } else {
        SDW_TRY(next_sampler_spec(x, &spec, &have));
    }
    if (vae->vae[0]) {
        /* VAELoader: its file on the model at hand. */
        if (!have) memset(&spec, 0, sizeof spec);
        snprintf(spec.vae, sizeof spec.vae, "%s", vae->vae);
        if (!spec.path[0])
            return sdw_fail(SDW_ERR_INVALID_ARG, "a VAE from VAELoader needs a model to run with: no sampler uses one");
    } else if (!have || strcmp(spec.path, vae->path) || spec.vae[0]) {
        /* The checkpoint's own VAE; LoRAs do not touch the VAE. */
        spec = *vae;
    }
    return sdw_cx_model(x, &spec, m);
}

/* ---------------------------------------------------------------- running */

static sdw_status run_node(sdw_comfy_exec *x, int i)
{
    const sdw_comfy_node *n = &x->g->nodes[i];
    if (x->env->executing && x->env->executing(x->env->user, n->id) != SDW_OK) {
        x->failed = i;
        return sdw_fail(SDW_ERR_CANCELLED, "interrupted before node %s (%s)", n->id, n->spec->class_type);
    }
    sdw_comfy_node_fn fn = find_fn(n->spec->class_type);
    sdw_cvalue *out[SDW_COMFY_MAX_OUTPUTS] = {0};
    sdw_status s = fn ? fn(x, n, out) : sdw_fail(SDW_ERR_UNSUPPORTED, "no executor for this class");
    if (s == SDW_OK)
        for (int k = 0; k < n->spec->n_outputs; k++)
            if (!out[k]) s = sdw_fail(SDW_ERR_NOMEM, "out of memory");
    if (s != SDW_OK) {
        for (int k = 0; k < SDW_COMFY_MAX_OUTPUTS; k++) sdw_cv_free(out[k]);
        /* The innermost failure names its node (a VAE node may run a
         * sampler's loaders first: sdw_cx_vae_model). */
        if (x->failed < 0) {
            x->failed = i;
            sdw_fail_context(s, "node %s (%s)", n->id, n->spec->class_type);
        }
        return s;
    }
    memcpy(x->values[i], out, sizeof out);
    x->done[i] = true;
    return SDW_OK;
}

sdw_status sdw_cx_ensure(sdw_comfy_exec *x, int i)
{
    if (x->done[i]) return SDW_OK;
    const sdw_comfy_node *n = &x->g->nodes[i];
    if (x->busy[i]) return sdw_fail(SDW_ERR_INVALID_ARG, "node %s (%s) depends on itself", n->id, n->spec->class_type);
    x->busy[i] = true;
    sdw_status s = SDW_OK;
    for (int k = 0; s == SDW_OK && k < SDW_COMFY_MAX_INPUTS && n->spec->inputs[k].name; k++)
        if (n->in[k].present && n->in[k].is_link) s = sdw_cx_ensure(x, n->in[k].link_node);
    if (s == SDW_OK) s = run_node(x, i);
    x->busy[i] = false;
    return s;
}

void sdw_comfy_exec_free(sdw_comfy_exec *x)
{
    if (!x) return;
    if (x->values)
        for (int i = 0; i < x->g->n_nodes; i++)
            for (int k = 0; k < SDW_COMFY_MAX_OUTPUTS; k++) sdw_cv_free(x->values[i][k]);
    for (int i = 0; i < x->n_strings; i++) free(x->strings[i]);
    free(x->strings);
    free(x->values);
    free(x->done);
    free(x->busy);
    free(x);
}

sdw_status sdw_comfy_run_keep(const sdw_comfy_graph *g, const sdw_comfy_env *env, int *failed_node,
                              sdw_comfy_exec **keep)
{
    if (failed_node) *failed_node = -1;
    if (keep) *keep = NULL;
    sdw_comfy_exec *x = calloc(1, sizeof *x);
    if (!x) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    x->g = g;
    x->env = env;
    x->failed = -1;
    size_t n = g->n_nodes > 0 ? (size_t)g->n_nodes : 1;
    x->values = calloc(n, sizeof *x->values);
    x->done = calloc(n, sizeof *x->done);
    x->busy = calloc(n, sizeof *x->busy);
    sdw_status s = SDW_OK;
    if (!x->values || !x->done || !x->busy) s = sdw_fail(SDW_ERR_NOMEM, "out of memory");
    for (int o = 0; s == SDW_OK && o < g->n_order; o++) s = sdw_cx_ensure(x, g->order[o]);
    if (s != SDW_OK && failed_node) *failed_node = x->failed;
    if (keep) *keep = x;
    else sdw_comfy_exec_free(x);
    return s;
}

sdw_status sdw_comfy_run(const sdw_comfy_graph *g, const sdw_comfy_env *env, int *failed_node)
{
    return sdw_comfy_run_keep(g, env, failed_node, NULL);
}
