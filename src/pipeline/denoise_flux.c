/* denoise_flux.c: FLUX.1 as a denoiser, as diffusers' FluxPipeline (= BFL's
 * reference) runs it:
 *   prepare: prompt -> T5-XXL last hidden state [L, 4096] (no attention mask:
 *            padding tokens attend), CLIP-L pooled [768] as the vector input;
 *            text ids zeros, image ids (0, i, j) over the 2x2-packed latents
 *   predict: pack the latents, one transformer pass at sigma = t / 1000 with
 *            the distilled guidance (dev), unpack; with --cfg-scale > 1 a
 *            second pass on the negative prompt and true CFG (the reference's
 *            true_cfg_scale; 1 by default, one pass a step).
 * With ComfyUI's conditioning lists (params.n_positive > 0, cond_list.h):
 * one pass per entry, each with its own prompt and FluxGuidance, an area's
 * entry on its crop of the latents with image ids counted from the crop's
 * corner (ComfyUI's Flux.forward builds them from the input it is given). */
#include "pipeline/denoiser.h"
#include "pipeline/cond_list.h"
#include "models/flux.h"
#include "models/t5.h"
#include "text/prompt_parse.h"
#include "text/t5_tokenizer.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *txt[2];          /* [L, context] positive, negative (cfg only) */
    float *vec[2];          /* [pooled] */
    int n_txt;
    float *txt_ids, *img_ids;
    float *packed, *vel, *vel_neg;   /* scratch for predict */
    int n_img, evals;
    float guidance;
    /* conditioning lists */
    sdw_cond_plan plan;
    float **ltxt, **lvec;   /* [plan.n_src]: each entry's T5 states and pooled CLIP */
    float *crop, *ids, *neg;   /* [lc, h, w], [n_img, 3], [lc, h, w] scratch */
} flux_state;

/* The text the encoders see: A1111 syntax and <lora:...> tags removed. */
static sdw_status plain_text(const char *prompt, char **out)
{
    sdw_parsed_prompt pp;
    SDW_TRY(sdw_prompt_parse(prompt ? prompt : "", &pp));
    size_t len = 1;
    for (int i = 0; i < pp.n_spans; i++) len += strlen(pp.spans[i].text) + 1;
    char *t = calloc(len, 1);
    if (!t) {
        sdw_parsed_prompt_free(&pp);
        return sdw_pipeline_nomem();
    }
    for (int i = 0; i < pp.n_spans; i++) strcat(t, pp.spans[i].is_break ? " " : pp.spans[i].text);
    sdw_parsed_prompt_free(&pp);
    *out = t;
    return SDW_OK;
}

/* prompt -> *txt [L, context] T5 states and *vec [pooled] (malloc'd here);
 * observed as the prompt's embeddings when observe. */
static sdw_status encode_into(sdw_run *r, flux_state *f, const char *prompt, float **txt, float **vec, bool observe)
{
    sdw_model *m = r->m;
    int L = f->n_txt, D = m->text.context_dim;
    char *text = NULL;
    SDW_TRY(plain_text(prompt, &text));
    int32_t *ids = malloc((size_t)L * sizeof *ids), clip_ids[SDW_CLIP_CONTEXT];
    *txt = malloc((size_t)L * D * sizeof(float));
    *vec = malloc((size_t)m->text.pooled_dim * sizeof(float));
    float *hidden = malloc((size_t)SDW_CLIP_CONTEXT * m->text.te1->cfg.width * sizeof(float));
    sdw_status s = ids && *txt && *vec && hidden ? SDW_OK : sdw_pipeline_nomem();
    if (s == SDW_OK) s = sdw_t5_tokenize(text, L, ids, NULL);
    if (s == SDW_OK) {
        sdw_arena_reset(&r->arena);
        s = sdw_t5_encode(m->be, &r->arena, m->t5, ids, L, *txt);
    }
    /* CLIP-L's pooled output: the final-norm state at the first end-of-text token. */
    if (s == SDW_OK) s = sdw_tokenize(text, SDW_PAD_EOS, clip_ids, NULL);
    if (s == SDW_OK) {
        sdw_arena_reset(&r->arena);
        s = sdw_clip_text_forward(m->be, &r->arena, m->text.te1, clip_ids, 1, 0, true, hidden, *vec);
    }
    if (s == SDW_OK && observe) {
        int64_t shape[3] = { 1, L, D }, pshape[2] = { 1, m->text.pooled_dim };
        sdw_pipeline_observe(r, "prompt_embeds", -1, *txt, 3, shape);
        sdw_pipeline_observe(r, "pooled_prompt_embeds", -1, *vec, 2, pshape);
    }
    free(text);
    free(ids);
    free(hidden);
    return s;
}

static sdw_status encode(sdw_run *r, flux_state *f, const char *prompt, int k)
{
    return encode_into(r, f, prompt, &f->txt[k], &f->vec[k], k == 0);
}

/* ---------------------------------------------------------------- conditioning lists */

static sdw_status prepare_list(sdw_run *r, flux_state *f)
{
    sdw_model *m = r->m;
    sdw_cond_plan *pl = &f->plan;
    SDW_TRY(sdw_cond_plan_make(r->p, r->cfg, 1, r->lc, r->h, r->w, pl));
    /* (ComfyUI pads an odd crop to the 2x2 patches circularly; not done here.) */
    SDW_TRY(sdw_cond_check_crops(pl, 2, "FLUX"));
    const size_t per = (size_t)r->lc * r->h * r->w;
    f->ltxt = calloc((size_t)pl->n_src, sizeof *f->ltxt);
    f->lvec = calloc((size_t)pl->n_src, sizeof *f->lvec);
    f->crop = malloc(per * sizeof(float));
    f->neg = malloc(per * sizeof(float));
    f->ids = malloc((size_t)f->n_img * 3 * sizeof(float));
    if (!f->ltxt || !f->lvec || !f->crop || !f->neg || !f->ids) return sdw_pipeline_nomem();
    for (int i = 0; i < pl->n_src; i++) {
        if (!pl->used[i]) continue;
        const sdw_cond_entry *e = sdw_cond_source(r->p, i);
        if (!e->zero) {
            SDW_TRY(encode_into(r, f, e->prompt ? e->prompt : "", &f->ltxt[i], &f->lvec[i], false));
            continue;
        }
        /* ConditioningZeroOut: the T5 states and the pooled vector zeros (their shapes do not depend on the prompt). */
        f->ltxt[i] = calloc((size_t)f->n_txt * m->text.context_dim, sizeof(float));
        f->lvec[i] = calloc((size_t)m->text.pooled_dim, sizeof(float));
        if (!f->ltxt[i] || !f->lvec[i]) return sdw_pipeline_nomem();
    }
    return SDW_OK;
}

/* Each evaluation of the plan on batch item x ([lc, h, w]) into the plan's sums. */
static sdw_status run_evals(sdw_run *r, flux_state *f, const float *x, float sigma)
{
    sdw_cond_plan *pl = &f->plan;
    sdw_cond_reset(pl);
    for (int k = 0; k < pl->n; k++) {
        const sdw_cond_eval *e = &pl->evals[k];
        if (!e->active) continue;   /* outside its timestep range */
        const sdw_cond_entry *ce = sdw_cond_source(r->p, e->src);
        sdw_cond_crop(pl, k, x, r->lc, f->crop);
        sdw_flux_pack(f->crop, r->lc, e->h, e->w, f->packed);
        if (e->area) sdw_flux_img_ids(e->h, e->w, f->ids);
        const sdw_flux_input in = { f->packed, (e->h / 2) * (e->w / 2), e->area ? f->ids : f->img_ids, f->ltxt[e->src],
                                    f->n_txt, f->txt_ids, sigma, ce->guidance >= 0 ? ce->guidance : f->guidance,
                                    f->lvec[e->src], NULL, NULL };
        sdw_arena_reset(&r->arena);
        SDW_TRY(sdw_flux_forward(r->m->be, &r->arena, r->m->flux, &in, f->vel));
        sdw_flux_unpack(f->vel, r->lc, e->h, e->w, f->crop);
        sdw_cond_add(pl, k, 0, f->crop);
    }
    return SDW_OK;
}

static sdw_status predict_list(sdw_run *r, const float *x, float t, float *out)
{
    flux_state *f = r->state;
    const size_t per = (size_t)r->lc * r->h * r->w;
    sdw_cond_select(&f->plan, r);
    for (int b = 0; b < r->B; b++) {
        float *o = out + b * per;
        SDW_TRY(run_evals(r, f, x + b * per, t / 1000.0f));
        sdw_cond_result(&f->plan, SDW_COND_POS, 0, o);
        if (!r->cfg) continue;
        sdw_cond_result(&f->plan, SDW_COND_NEG, 0, f->neg);
        sdw_cfg_combine(f->neg, o, r->p->cfg_scale, per, o);
    }
    int64_t shape[4] = { r->B, r->lc, r->h, r->w };
    sdw_pipeline_observe(r, "denoiser_out", f->evals++, out, 4, shape);
    return SDW_OK;
}

/* ---------------------------------------------------------------- the run */

static sdw_status prepare(sdw_run *r)
{
    flux_state *f = calloc(1, sizeof *f);
    if (!f) return sdw_pipeline_nomem();
    r->state = f;
    sdw_model *m = r->m;
    const sdw_flux_config *c = sdw_flux_get_config(m->flux);
    if (r->h % 2 || r->w % 2)
        return sdw_fail(SDW_ERR_INVALID_ARG, "FLUX needs width and height in multiples of 16 (got %dx%d)", r->p->width,
                        r->p->height);
    f->n_txt = m->info.t5_max_length;
    f->n_img = (r->h / 2) * (r->w / 2);
    f->guidance = r->p->guidance >= 0 ? r->p->guidance : m->info.default_guidance;
    f->txt_ids = calloc((size_t)f->n_txt * 3, sizeof(float));
    f->img_ids = malloc((size_t)f->n_img * 3 * sizeof(float));
    size_t np = (size_t)f->n_img * c->in_channels;
    f->packed = malloc(np * sizeof(float));
    f->vel = malloc(np * sizeof(float));
    f->vel_neg = malloc(np * sizeof(float));
    if (!f->txt_ids || !f->img_ids || !f->packed || !f->vel || !f->vel_neg) return sdw_pipeline_nomem();
    sdw_flux_img_ids(r->h, r->w, f->img_ids);
    /* Where memory is short the T5 and the transformer take turns in it. */
    sdw_model_page_out(m, 't');
    const bool lists = r->p->n_positive > 0;
    sdw_status s = lists ? prepare_list(r, f) : encode(r, f, r->p->prompt, 0);
    if (s == SDW_OK && r->cfg && !lists) s = encode(r, f, r->p->negative_prompt ? r->p->negative_prompt : "", 1);
    sdw_model_page_out(m, '5');
    return s;
}

static sdw_status forward(sdw_run *r, flux_state *f, int k, float sigma, float *vel)
{
    const sdw_flux_input in = { f->packed, f->n_img, f->img_ids, f->txt[k], f->n_txt, f->txt_ids, sigma,
                                f->guidance, f->vec[k], NULL, NULL };
    sdw_arena_reset(&r->arena);
    return sdw_flux_forward(r->m->be, &r->arena, r->m->flux, &in, vel);
}

static sdw_status predict(sdw_run *r, const float *x, float t, float *out)
{
    if (r->p->n_positive > 0) return predict_list(r, x, t, out);
    flux_state *f = r->state;
    const int lc = r->lc, h = r->h, w = r->w, C = sdw_flux_get_config(r->m->flux)->in_channels;
    const size_t per = (size_t)lc * h * w, np = (size_t)f->n_img * C;
    /* The reference passes timestep / 1000 with the timestep float32(sigma * 1000). */
    const float sigma = t / 1000.0f;
    for (int b = 0; b < r->B; b++) {
        sdw_flux_pack(x + b * per, lc, h, w, f->packed);
        int64_t shape[3] = { 1, f->n_img, C };
        sdw_pipeline_observe(r, "transformer_in", f->evals, f->packed, 3, shape);
        SDW_TRY(forward(r, f, 0, sigma, f->vel));
        if (r->cfg) {
            SDW_TRY(forward(r, f, 1, sigma, f->vel_neg));
            sdw_cfg_combine(f->vel_neg, f->vel, r->p->cfg_scale, np, f->vel);
        }
        sdw_pipeline_observe(r, "transformer_out", f->evals, f->vel, 3, shape);
        sdw_flux_unpack(f->vel, lc, h, w, out + b * per);
    }
    f->evals++;
    return SDW_OK;
}

static void release(sdw_run *r)
{
    flux_state *f = r->state;
    if (!f) return;
    for (int k = 0; k < 2; k++) {
        free(f->txt[k]);
        free(f->vec[k]);
    }
    free(f->txt_ids);
    free(f->img_ids);
    free(f->packed);
    free(f->vel);
    free(f->vel_neg);
    for (int i = 0; i < f->plan.n_src && f->ltxt; i++) free(f->ltxt[i]);
    for (int i = 0; i < f->plan.n_src && f->lvec; i++) free(f->lvec[i]);
    free(f->ltxt);
    free(f->lvec);
    free(f->crop);
    free(f->ids);
    free(f->neg);
    sdw_cond_plan_free(&f->plan);
    free(f);
    r->state = NULL;
}

const sdw_denoiser_ops sdw_flux_denoiser = { prepare, predict, release };
