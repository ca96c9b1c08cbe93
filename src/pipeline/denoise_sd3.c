/* denoise_sd3.c: SD3 / SD3.5 as a denoiser, as diffusers'
 * StableDiffusion3Pipeline runs it:
 *   prepare: prompt and negative prompt ("" when none) -> CLIP-L / CLIP-G
 *            penultimate states ++ T5 (or zeros without T5) [77 + L, joint],
 *            pooled CLIP-L ++ CLIP-G projections (sd3_text.c)
 *   predict: the MMDiT on the latents for [uncond; cond], CFG when cfg > 1,
 *            then skip-layer guidance (SD3.5): in the steps of its window one
 *            more pass on the positive prompt with the listed blocks left out,
 *            v += slg_scale * (v_cond - v_skip).
 * With ComfyUI's conditioning lists (params.n_positive > 0, cond_list.h):
 * one pass per entry, an area's entry on its crop of the latents (the MMDiT
 * takes any size, its position embedding cropped from the centre as
 * ComfyUI's); skip-layer guidance reruns the positive list with the blocks
 * left out (ComfyUI's SkipLayerGuidanceSD3 runs calc_cond_batch on it). */
#include "pipeline/denoiser.h"
#include "pipeline/cond_list.h"
#include "models/mmdit.h"
#include "models/sd3_text.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *ctx[2];              /* [n_ctx, joint] positive, negative (each its own length: they run apart) */
    int n_ctx[2];
    float *pooled[2];           /* [pooled_dim] */
    float *v_cond, *v_uncond, *v_skip;   /* [lc, h, w] scratch */
    bool skip[SDW_MMDIT_MAX_DEPTH];
    bool slg;
    int evals;
    /* conditioning lists */
    sdw_cond_plan plan;
    float **lctx, **lpooled;    /* [plan.n_src] */
    int *ln_ctx;
    float *crop, *ocrop;        /* [lc, h, w] scratch */
} sd3_state;

static sdw_status encode_into(sdw_run *r, const char *prompt, float **ctx, int *n_ctx, float **pooled)
{
    sdw_model *m = r->m;
    /* (Without T5 the length is not used: its part is 77 zeros.) */
    const int len = r->p->t5_max_length > 0  ? r->p->t5_max_length
                    : m->info.t5_max_length > 0 ? m->info.t5_max_length
                                                : SDW_SD3_T5_LEN_DEFAULT;
    if (!(*pooled = malloc((size_t)sdw_mmdit_get_config(m->mmdit)->pooled_dim * sizeof(float))))
        return sdw_pipeline_nomem();
    sdw_arena_reset(&r->arena);
    int n = 0;
    SDW_TRY(sdw_sd3_encode(m->be, &r->arena, m->sd3_text, prompt ? prompt : "", len, r->p->clip_skip, ctx, &n,
                           *pooled));
    *n_ctx = n;
    return SDW_OK;
}

static sdw_status encode(sdw_run *r, sd3_state *s, const char *prompt, int k)
{
    return encode_into(r, prompt, &s->ctx[k], &s->n_ctx[k], &s->pooled[k]);
}

/* ---------------------------------------------------------------- conditioning lists */

static sdw_status prepare_list(sdw_run *r, sd3_state *s)
{
    const sdw_mmdit_config *c = sdw_mmdit_get_config(r->m->mmdit);
    sdw_cond_plan *pl = &s->plan;
    SDW_TRY(sdw_cond_plan_make(r->p, r->cfg, 1, r->lc, r->h, r->w, pl));
    SDW_TRY(sdw_cond_check_crops(pl, c->patch, "SD3"));
    const size_t per = (size_t)r->lc * r->h * r->w;
    s->lctx = calloc((size_t)pl->n_src, sizeof *s->lctx);
    s->lpooled = calloc((size_t)pl->n_src, sizeof *s->lpooled);
    s->ln_ctx = calloc((size_t)pl->n_src, sizeof *s->ln_ctx);
    s->crop = malloc(per * sizeof(float));
    s->ocrop = malloc(per * sizeof(float));
    if (!s->lctx || !s->lpooled || !s->ln_ctx || !s->crop || !s->ocrop) return sdw_pipeline_nomem();
    for (int i = 0; i < pl->n_src; i++) {
        if (!pl->used[i]) continue;
        const sdw_cond_entry *e = sdw_cond_source(r->p, i);
        SDW_TRY(encode_into(r, e->prompt, &s->lctx[i], &s->ln_ctx[i], &s->lpooled[i]));
        /* ConditioningZeroOut: zeros of the prompt's shape (the embeddings and the pooled output). */
        if (e->zero) {
            memset(s->lctx[i], 0, (size_t)s->ln_ctx[i] * c->joint_dim * sizeof(float));
            memset(s->lpooled[i], 0, (size_t)c->pooled_dim * sizeof(float));
        }
    }
    return SDW_OK;
}

/* The plan's evaluations of one side (or both: side < 0) on batch item x into its sums. */
static sdw_status run_evals(sdw_run *r, sd3_state *s, const float *x, float t, int side, const bool *skip)
{
    sdw_cond_plan *pl = &s->plan;
    for (int k = 0; k < pl->n; k++) {
        const sdw_cond_eval *e = &pl->evals[k];
        if ((side >= 0 && e->side != side) || !e->active) continue;
        sdw_cond_crop(pl, k, x, r->lc, s->crop);
        const sdw_mmdit_input in = { s->crop, e->h, e->w, t, s->lctx[e->src], s->ln_ctx[e->src], s->lpooled[e->src],
                                     skip, NULL, NULL };
        sdw_arena_reset(&r->arena);
        SDW_TRY(sdw_mmdit_forward(r->m->be, &r->arena, r->m->mmdit, &in, s->ocrop));
        sdw_cond_add(pl, k, 0, s->ocrop);
    }
    return SDW_OK;
}

static sdw_status predict_list(sdw_run *r, const float *x, float t, float *out)
{
    sd3_state *s = r->state;
    const sdw_pipeline_params *p = r->p;
    const size_t per = (size_t)r->lc * r->h * r->w;
    const int i = s->slg ? sdw_run_step_of(r, t) : 0, N = p->steps;
    const bool slg = s->slg && (double)i > (double)N * p->slg_start && (double)i < (double)N * p->slg_end;
    for (int b = 0; b < r->B; b++) {
        const float *xb = x + b * per;
        float *o = out + b * per;
        sdw_cond_reset(&s->plan);
        sdw_cond_select(&s->plan, r);
        SDW_TRY(run_evals(r, s, xb, t, -1, NULL));
        sdw_cond_result(&s->plan, SDW_COND_POS, 0, s->v_cond);
        if (r->cfg) {
            sdw_cond_result(&s->plan, SDW_COND_NEG, 0, s->v_uncond);
            sdw_cfg_combine(s->v_uncond, s->v_cond, p->cfg_scale, per, o);
        } else {
            memcpy(o, s->v_cond, per * sizeof *o);
        }
        if (slg) {
            sdw_cond_reset(&s->plan);
            SDW_TRY(run_evals(r, s, xb, t, SDW_COND_POS, s->skip));
            sdw_cond_result(&s->plan, SDW_COND_POS, 0, s->v_skip);
            for (size_t j = 0; j < per; j++) o[j] += p->slg_scale * (s->v_cond[j] - s->v_skip[j]);
        }
    }
    int64_t shape[4] = { r->B, r->lc, r->h, r->w };
    sdw_pipeline_observe(r, "denoiser_out", s->evals++, out, 4, shape);
    return SDW_OK;
}

/* ---------------------------------------------------------------- the run */

static sdw_status prepare(sdw_run *r)
{
    sd3_state *s = calloc(1, sizeof *s);
    if (!s) return sdw_pipeline_nomem();
    r->state = s;
    const sdw_pipeline_params *p = r->p;
    const sdw_mmdit_config *c = sdw_mmdit_get_config(r->m->mmdit);
    for (int i = 0; i < p->n_slg_layers; i++) {
        if (p->slg_layers[i] < 0 || p->slg_layers[i] >= c->depth)
            return sdw_fail(SDW_ERR_INVALID_ARG, "skip-layer guidance: block %d does not exist (the model has %d, 0..%d)",
                            p->slg_layers[i], c->depth, c->depth - 1);
        s->skip[p->slg_layers[i]] = true;
    }
    s->slg = p->n_slg_layers > 0 && p->slg_scale != 0;
    size_t per = (size_t)r->lc * r->h * r->w;
    s->v_cond = malloc(per * sizeof(float));
    s->v_uncond = malloc(per * sizeof(float));
    s->v_skip = malloc(per * sizeof(float));
    if (!s->v_cond || !s->v_uncond || !s->v_skip) return sdw_pipeline_nomem();
    if (p->n_positive > 0) return prepare_list(r, s);
    SDW_TRY(encode(r, s, p->prompt, 0));
    if (r->cfg) SDW_TRY(encode(r, s, p->negative_prompt ? p->negative_prompt : "", 1));
    int64_t shape[3] = { 1, s->n_ctx[0], c->joint_dim }, pshape[2] = { 1, c->pooled_dim };
    sdw_pipeline_observe(r, "prompt_embeds", -1, s->ctx[0], 3, shape);
    sdw_pipeline_observe(r, "pooled_prompt_embeds", -1, s->pooled[0], 2, pshape);
    if (r->cfg) {
        shape[1] = s->n_ctx[1];
        sdw_pipeline_observe(r, "negative_prompt_embeds", -1, s->ctx[1], 3, shape);
        sdw_pipeline_observe(r, "negative_pooled_prompt_embeds", -1, s->pooled[1], 2, pshape);
    }
    return SDW_OK;
}

static sdw_status forward(sdw_run *r, sd3_state *s, int k, const float *x, float t, const bool *skip, float *out)
{
    const sdw_mmdit_input in = { x, r->h, r->w, t, s->ctx[k], s->n_ctx[k], s->pooled[k], skip, NULL, NULL };
    sdw_arena_reset(&r->arena);
    return sdw_mmdit_forward(r->m->be, &r->arena, r->m->mmdit, &in, out);
}

static sdw_status predict(sdw_run *r, const float *x, float t, float *out)
{
    if (r->p->n_positive > 0) return predict_list(r, x, t, out);
    sd3_state *s = r->state;
    const sdw_pipeline_params *p = r->p;
    const size_t per = (size_t)r->lc * r->h * r->w;
    /* The step only matters to SLG (and a bench's lone evaluation has no sampler). */
    const int i = s->slg ? sdw_run_step_of(r, t) : 0, N = p->steps;
    /* diffusers: i > steps * start and i < steps * stop, strictly. */
    const bool slg = s->slg && (double)i > (double)N * p->slg_start && (double)i < (double)N * p->slg_end;
    for (int b = 0; b < r->B; b++) {
        const float *xb = x + b * per;
        float *o = out + b * per;
        SDW_TRY(forward(r, s, 0, xb, t, NULL, s->v_cond));
        int64_t shape[4] = { 1, r->lc, r->h, r->w };
        if (r->cfg) {
            SDW_TRY(forward(r, s, 1, xb, t, NULL, s->v_uncond));
            sdw_pipeline_observe(r, "transformer_out_uncond", s->evals, s->v_uncond, 4, shape);
            sdw_cfg_combine(s->v_uncond, s->v_cond, p->cfg_scale, per, o);
        } else {
            memcpy(o, s->v_cond, per * sizeof *o);
        }
        sdw_pipeline_observe(r, "transformer_out", s->evals, s->v_cond, 4, shape);
        if (slg) {
            SDW_TRY(forward(r, s, 0, xb, t, s->skip, s->v_skip));
            sdw_pipeline_observe(r, "slg_out", s->evals, s->v_skip, 4, shape);
            for (size_t j = 0; j < per; j++) o[j] += p->slg_scale * (s->v_cond[j] - s->v_skip[j]);
        }
    }
    s->evals++;
    return SDW_OK;
}

static void release(sdw_run *r)
{
    sd3_state *s = r->state;
    if (!s) return;
    for (int k = 0; k < 2; k++) {
        free(s->ctx[k]);
        free(s->pooled[k]);
    }
    free(s->v_cond);
    free(s->v_uncond);
    free(s->v_skip);
    for (int i = 0; i < s->plan.n_src && s->lctx; i++) free(s->lctx[i]);
    for (int i = 0; i < s->plan.n_src && s->lpooled; i++) free(s->lpooled[i]);
    free(s->lctx);
    free(s->lpooled);
    free(s->ln_ctx);
    free(s->crop);
    free(s->ocrop);
    sdw_cond_plan_free(&s->plan);
    free(s);
    r->state = NULL;
}

const sdw_denoiser_ops sdw_sd3_denoiser = { prepare, predict, release };
