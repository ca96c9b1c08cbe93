/* comfy_node_conditioning.c: the nodes that build CONDITIONING lists and
 * the CLIP they are encoded with. Prompts are not encoded here: an entry
 * keeps its text and CLIP, and the sampler's pipeline run encodes them
 * (pipeline.h's sdw_cond_entry), so the text encoders load with the rest
 * of the model, once.
 *
 *   CLIPTextEncode        one entry: the text, the CLIP
 *   CLIPSetLastLayer      the CLIP with A1111's clip skip -stop_at_clip_layer
 *   ConditioningCombine   list 1 then list 2 (ComfyUI's list concatenation)
 *   ConditioningSetArea   every entry: area (x, y, w, h) / 8 and strength
 *   ConditioningZeroOut   every entry: zero embeddings and pooled output
 *   FluxGuidance          every entry: guidance
 *   ControlNetApplyAdvanced  every entry of positive and negative: one more
 *                         ControlNet unit (net, image, strength, start /
 *                         end percent), chained after the ones it has, as
 *                         ComfyUI's set_previous_controlnet; strength 0
 *                         passes both lists through
 *   ConditioningSetTimestepRange  every entry: start / end percent (the
 *                         pipeline turns them into sigmas with the model
 *                         sampling's percent_to_sigma, cond_list.c) */
#include "comfy/comfy_values.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

/* A new CONDITIONING value of n entries, the first `copy` of them copied from e. */
static sdw_cvalue *cond_new(const sdw_cv_cond *e, int copy, int n)
{
    sdw_cvalue *v = sdw_cv_new(SDW_CT_CONDITIONING);
    if (!v) return NULL;
    v->cond.e = calloc(n > 0 ? (size_t)n : 1, sizeof *v->cond.e);
    if (!v->cond.e) {
        sdw_cv_free(v);
        return NULL;
    }
    if (copy > 0) memcpy(v->cond.e, e, (size_t)copy * sizeof *e);
    v->cond.n = n;
    return v;
}

/* A new CONDITIONING value holding a copy of n entries. */
static sdw_cvalue *cond_copy(const sdw_cv_cond *e, int n)
{
    return cond_new(e, n, n);
}

static sdw_status cond_input(sdw_comfy_exec *x, const sdw_comfy_node *n, const char *name, sdw_cvalue **out)
{
    const sdw_cvalue *in;
    SDW_TRY(sdw_cx_link(x, n, name, SDW_CT_CONDITIONING, &in));
    if (!(*out = cond_copy(in->cond.e, in->cond.n))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    return SDW_OK;
}

sdw_status sdw_node_clip_text_encode(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const sdw_cvalue *clip;
    SDW_TRY(sdw_cx_link(x, n, "clip", SDW_CT_CLIP, &clip));
    sdw_cv_cond e = {0};
    e.text = sdw_cx_str(n, "text");   /* the graph outlives the run */
    e.clip = &clip->clip;
    e.strength = 1.0f;
    e.guidance = -1.0f;
    if (!(out[0] = cond_copy(&e, 1))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    return SDW_OK;
}

sdw_status sdw_node_clip_set_last_layer(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const sdw_cvalue *clip;
    SDW_TRY(sdw_cx_link(x, n, "clip", SDW_CT_CLIP, &clip));
    int stop = (int)sdw_cx_num(n, "stop_at_clip_layer", -1);
    if (stop > -1 || stop < -24) return sdw_fail(SDW_ERR_INVALID_ARG, "stop_at_clip_layer %d not in -24..-1", stop);
    if (!(out[0] = sdw_cv_new(SDW_CT_CLIP))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    out[0]->clip = clip->clip;
    out[0]->clip.clip_skip = -stop;
    return SDW_OK;
}

sdw_status sdw_node_conditioning_combine(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const sdw_cvalue *a, *b;
    SDW_TRY(sdw_cx_link(x, n, "conditioning_1", SDW_CT_CONDITIONING, &a));
    SDW_TRY(sdw_cx_link(x, n, "conditioning_2", SDW_CT_CONDITIONING, &b));
    sdw_cvalue *v = cond_new(a->cond.e, a->cond.n, a->cond.n + b->cond.n);
    if (!v) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    if (b->cond.n > 0) memcpy(v->cond.e + a->cond.n, b->cond.e, (size_t)b->cond.n * sizeof *b->cond.e);
    out[0] = v;
    return SDW_OK;
}

sdw_status sdw_node_conditioning_set_area(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    SDW_TRY(cond_input(x, n, "conditioning", &out[0]));
    int w = (int)sdw_cx_num(n, "width", 64), h = (int)sdw_cx_num(n, "height", 64);
    int ax = (int)sdw_cx_num(n, "x", 0), ay = (int)sdw_cx_num(n, "y", 0);
    float strength = (float)sdw_cx_num(n, "strength", 1.0);
    if (w < 8 || h < 8 || ax < 0 || ay < 0) return sdw_fail(SDW_ERR_INVALID_ARG, "area %dx%d at %d,%d", w, h, ax, ay);
    for (int i = 0; i < out[0]->cond.n; i++) {
        sdw_cv_cond *e = &out[0]->cond.e[i];
        e->area_x = ax / 8;
        e->area_y = ay / 8;
        e->area_w = w / 8;
        e->area_h = h / 8;
        e->strength = strength;
    }
    return SDW_OK;
}

sdw_status sdw_node_conditioning_zero_out(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    SDW_TRY(cond_input(x, n, "conditioning", &out[0]));
    for (int i = 0; i < out[0]->cond.n; i++) out[0]->cond.e[i].zero = true;
    return SDW_OK;
}

sdw_status sdw_node_flux_guidance(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    SDW_TRY(cond_input(x, n, "conditioning", &out[0]));
    float g = (float)sdw_cx_num(n, "guidance", 3.5);
    for (int i = 0; i < out[0]->cond.n; i++) out[0]->cond.e[i].guidance = g;
    return SDW_OK;
}

sdw_status sdw_node_conditioning_set_timestep_range(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    SDW_TRY(cond_input(x, n, "conditioning", &out[0]));
    float start = (float)sdw_cx_num(n, "start", 0.0), end = (float)sdw_cx_num(n, "end", 1.0);
    for (int i = 0; i < out[0]->cond.n; i++) {
        sdw_cv_cond *e = &out[0]->cond.e[i];
        e->timestep_range = true;
        e->start_percent = start;
        e->end_percent = end;
    }
    return SDW_OK;
}

static sdw_status add_control(sdw_cvalue *v, const sdw_cv_control *u)
{
    for (int i = 0; i < v->cond.n; i++) {
        sdw_cv_cond *e = &v->cond.e[i];
        if (e->n_controls == SDW_MAX_CONTROLS)
            return sdw_fail(SDW_ERR_INVALID_ARG, "more than %d ControlNets on one prompt", SDW_MAX_CONTROLS);
        e->controls[e->n_controls++] = *u;
    }
    return SDW_OK;
}

sdw_status sdw_node_controlnet_apply_advanced(sdw_comfy_exec *x, const sdw_comfy_node *n, sdw_cvalue **out)
{
    const sdw_cvalue *net, *image;
    SDW_TRY(cond_input(x, n, "positive", &out[0]));
    SDW_TRY(cond_input(x, n, "negative", &out[1]));
    SDW_TRY(sdw_cx_link(x, n, "control_net", SDW_CT_CONTROL_NET, &net));
    SDW_TRY(sdw_cx_link(x, n, "image", SDW_CT_IMAGE, &image));
    sdw_cv_control u = {0};
    u.strength = (float)sdw_cx_num(n, "strength", 1.0);
    if (u.strength == 0) return SDW_OK;
    u.id = ++x->next_control_id;
    u.path = net->controlnet;
    u.image = image->image.data;
    u.image_w = image->image.w;
    u.image_h = image->image.h;
    u.start_percent = (float)sdw_cx_num(n, "start_percent", 0.0);
    u.end_percent = (float)sdw_cx_num(n, "end_percent", 1.0);
    SDW_TRY(add_control(out[0], &u));
    return add_control(out[1], &u);
}
