/* denoise_unet.c: the UNet families (SD1, SD2, SDXL) as a denoiser:
 *   prepare: prompt and negative prompt -> CLIP context (and SDXL's pooled
 *            vector with the size micro-conditioning), batch [uncond; cond];
 *            the ControlNet units' buffers (control.c), once per run
 *   predict: the active ControlNets' residuals (control.c), the UNet on the
 *            whole batch (+ mask and masked-image latents for 9-channel
 *            inpainting models) with them, then classifier-free guidance.
 * With ComfyUI's conditioning lists (params.n_positive > 0, cond_list.h)
 * each entry is encoded on its own and the plan's evaluations run in UNet
 * batches of at most two entries of the same crop and context length (the
 * negative one first: one positive and one negative entry make exactly the
 * batch above), each on its crop of the latents. */
#include "pipeline/denoiser.h"
#include "pipeline/control.h"
#include "pipeline/cond_list.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

/* Conditioning lists: up to two evaluations of one crop and context length in one UNet call. */
#define GROUP_MAX 2
typedef struct {
    int k[GROUP_MAX], n;          /* the plan's evaluations, batch order */
    float *context;               /* [n * B, n_ctx, D] */
    float *y;                     /* [n * B, adm_in] (SDXL) or NULL */
    int n_ctx;
    sdw_unet_ctx_cache kv;        /* the cross-attention K, V of context, made at the first step */
} unet_group;

typedef struct {
    int n_ctx;                    /* tokens per conditioning */
    float *context;               /* [(cfg ? 2B : B), n_ctx, D] */
    float *y;                     /* SDXL added conditioning, same batch, or NULL */
    sdw_unet_ctx_cache kv;        /* the cross-attention K, V of context, made at the first step */
    float *unet_in, *unet_out, *nchw;   /* scratch for predict */
    sdw_control_run *control;     /* ControlNet units, or NULL */
    /* conditioning lists */
    sdw_cond_plan plan;
    sdw_text_embedding *enc;      /* [plan.n_src] */
    unet_group *groups;
    int n_groups, evals;
    sdw_control_run *lctl[GROUP_MAX];   /* ControlNet buffers for groups of 1 and 2 entries */
    float *neg;                   /* [lc, h, w] */
} unet_state;

static bool is_xl(sdw_family f) { return f == SDW_FAMILY_SDXL || f == SDW_FAMILY_SDXL_REFINER; }

static sdw_status encode_prompts(sdw_run *r, unet_state *u)
{
    sdw_model *m = r->m;
    const sdw_pipeline_params *p = r->p;
    sdw_text_embedding e[2] = { 0 }, *pos = &e[0], *neg = &e[1];
    /* SDXL without a negative prompt conditions the unconditional branch on
     * zeros (diffusers' force_zeros_for_empty_prompt); SD1/SD2 encode "".
     * Prompt and negative prompt are padded to the same length (A1111's
     * "pad conds") and encoded together. */
    bool zero_uncond = is_xl(m->info.family) && (!p->negative_prompt || !p->negative_prompt[0]);
    const char *prompts[2] = { p->prompt, p->negative_prompt ? p->negative_prompt : "" };
    const int n = r->cfg && !zero_uncond ? 2 : 1;
    sdw_status s = sdw_text_encode_prompts(m->be, &m->text, prompts, n, 1, p->clip_skip, e);
    int D = m->text.context_dim, B = r->B, nb = r->cfg ? 2 * B : B;
    u->n_ctx = pos->n_tokens;
    size_t per = (size_t)u->n_ctx * D;
    if (s == SDW_OK && !(u->context = calloc((size_t)nb * per, sizeof(float)))) s = sdw_pipeline_nomem();
    if (s == SDW_OK) {
        /* Batch order as diffusers: [uncond x B, cond x B]. */
        for (int b = 0; b < B; b++) {
            float *cond = u->context + (size_t)(r->cfg ? B + b : b) * per;
            memcpy(cond, pos->context, per * sizeof(float));
            if (r->cfg && !zero_uncond) memcpy(u->context + (size_t)b * per, neg->context, per * sizeof(float));
        }
        int64_t shape[3] = { nb, u->n_ctx, D };
        sdw_pipeline_observe(r, "prompt_embeds", -1, u->context, 3, shape);
    }
    const sdw_unet_config *uc = sdw_unet_get_config(m->unet);
    if (s == SDW_OK && uc->adm_in) {
        int pd = m->text.pooled_dim, td = uc->addition_time_embed_dim;
        float ids[6] = { (float)p->height, (float)p->width, 0, 0, (float)p->height, (float)p->width };
        int n_ids = (uc->adm_in - pd) / td;
        if (n_ids != 6 || !pos->pooled) {
            s = sdw_fail(SDW_ERR_UNSUPPORTED, "the UNet's added conditioning (%d wide) is not pooled %d + 6 x %d",
                         uc->adm_in, pd, td);
        } else if (!(u->y = calloc((size_t)nb * uc->adm_in, sizeof(float)))) {
            s = sdw_pipeline_nomem();
        } else {
            float *zeros = calloc((size_t)pd, sizeof(float));
            if (!zeros) s = sdw_pipeline_nomem();
            for (int b = 0; b < nb && s == SDW_OK; b++) {
                bool uncond = r->cfg && b < B;
                const float *pooled = uncond ? (zero_uncond ? zeros : neg->pooled) : pos->pooled;
                sdw_unet_text_time_y(pooled, pd, ids, 6, td, u->y + (size_t)b * uc->adm_in);
            }
            free(zeros);
        }
    }
    sdw_text_embedding_free(pos);
    sdw_text_embedding_free(neg);
    return s;
}

/* ---------------------------------------------------------------- conditioning lists */

/* One entry's conditioning: its prompt encoded as the prompt path encodes one
 * (as many chunks as it needs), or zeros of that shape for
 * ConditioningZeroOut (the embeddings and the pooled output). */
static sdw_status encode_entry(sdw_run *r, const sdw_cond_entry *e, sdw_text_embedding *out)
{
    sdw_model *m = r->m;
    const char *prompt = e->prompt ? e->prompt : "";
    if (!e->zero || prompt[0]) {
        SDW_TRY(sdw_text_encode_prompt(m->be, &m->text, prompt, 1, r->p->clip_skip, out));
    } else {
        out->n_tokens = SDW_CLIP_CONTEXT;
        out->context = malloc((size_t)SDW_CLIP_CONTEXT * m->text.context_dim * sizeof(float));
        if (m->text.pooled_dim) out->pooled = malloc((size_t)m->text.pooled_dim * sizeof(float));
        if (!out->context || (m->text.pooled_dim && !out->pooled)) return sdw_pipeline_nomem();
    }
    if (e->zero) {
        memset(out->context, 0, (size_t)out->n_tokens * m->text.context_dim * sizeof(float));
        if (out->pooled) memset(out->pooled, 0, (size_t)m->text.pooled_dim * sizeof(float));
    }
    return SDW_OK;
}

static bool same_crop(const sdw_cond_eval *a, const sdw_cond_eval *b)
{
    return a->x == b->x && a->y == b->y && a->w == b->w && a->h == b->h;
}

/* A group's batch: each evaluation's context (and SDXL's y, with the whole
 * image's size as ComfyUI's encode_adm takes it, also for an area) B times. */
static sdw_status group_inputs(sdw_run *r, unet_state *u, unet_group *g)
{
    sdw_model *m = r->m;
    const sdw_unet_config *uc = sdw_unet_get_config(m->unet);
    const int B = r->B, rows = g->n * B, D = m->text.context_dim;
    const size_t per = (size_t)g->n_ctx * D;
    if (!(g->context = malloc((size_t)rows * per * sizeof(float)))) return sdw_pipeline_nomem();
    if (uc->adm_in && !(g->y = malloc((size_t)rows * uc->adm_in * sizeof(float)))) return sdw_pipeline_nomem();
    const int pd = m->text.pooled_dim, td = uc->addition_time_embed_dim;
    const float ids[6] = { (float)r->p->height, (float)r->p->width, 0, 0, (float)r->p->height, (float)r->p->width };
    for (int i = 0; i < g->n; i++) {
        const sdw_text_embedding *e = &u->enc[u->plan.evals[g->k[i]].src];
        if (uc->adm_in && ((uc->adm_in - pd) / td != 6 || !e->pooled))
            return sdw_fail(SDW_ERR_UNSUPPORTED, "the UNet's added conditioning (%d wide) is not pooled %d + 6 x %d",
                            uc->adm_in, pd, td);
        for (int b = 0; b < B; b++) {
            const int row = i * B + b;
            memcpy(g->context + (size_t)row * per, e->context, per * sizeof(float));
            if (g->y) sdw_unet_text_time_y(e->pooled, pd, ids, 6, td, g->y + (size_t)row * uc->adm_in);
        }
    }
    return SDW_OK;
}

/* Batches of up to GROUP_MAX evaluations sharing a crop and a context length. */
static sdw_status make_groups(sdw_run *r, unet_state *u)
{
    const sdw_cond_plan *pl = &u->plan;
    if (!(u->groups = calloc((size_t)pl->n, sizeof *u->groups))) return sdw_pipeline_nomem();
    for (int k = 0; k < pl->n; k++) {
        const sdw_cond_eval *e = &pl->evals[k];
        const int n_ctx = u->enc[e->src].n_tokens;
        int g = 0;
        while (g < u->n_groups && !(u->groups[g].n < GROUP_MAX && u->groups[g].n_ctx == n_ctx &&
                                    same_crop(&pl->evals[u->groups[g].k[0]], e)))
            g++;
        if (g == u->n_groups) u->groups[u->n_groups++].n_ctx = n_ctx;
        u->groups[g].k[u->groups[g].n++] = k;
    }
    for (int g = 0; g < u->n_groups; g++) {
        unet_group *G = &u->groups[g];
        /* The negative entry first, as the prompt path batches [uncond; cond]. */
        if (G->n == 2 && pl->evals[G->k[0]].side == SDW_COND_POS && pl->evals[G->k[1]].side == SDW_COND_NEG) {
            const int t = G->k[0];
            G->k[0] = G->k[1];
            G->k[1] = t;
        }
        SDW_TRY(group_inputs(r, u, G));
    }
    return SDW_OK;
}

/* control.c lays its buffers and rows out from r->B and r->cfg: a group is
 * n * B rows that all get the residuals (as ComfyUI's ControlNetApply puts
 * the control on every entry of both sides). */
static sdw_status control_rows(sdw_run *r, unet_state *u, int n, sdw_unet_input *in, float t)
{
    const int B = r->B;
    const bool cfg = r->cfg;
    r->B = n * B;
    r->cfg = false;
    sdw_status s = in ? sdw_control_apply(u->lctl[n - 1], r, t, in) : sdw_control_begin(r, &u->lctl[n - 1]);
    r->B = B;
    r->cfg = cfg;
    return s;
}

static sdw_status list_controls(sdw_run *r, unet_state *u)
{
    const sdw_pipeline_params *p = r->p;
    if (p->control_guess)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "conditioning lists: ControlNet guess mode is not supported (ComfyUI has "
                        "no such mode)");
    for (int k = 0; k < p->n_controls; k++)
        if (p->controls[k].mode != SDW_CONTROL_BALANCED)
            return sdw_fail(SDW_ERR_UNSUPPORTED, "conditioning lists: ControlNet unit %d: only the balanced control mode "
                            "is supported (ComfyUI has no other)", k);
    if (u->plan.any_area)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "ConditioningSetArea with ControlNets: not supported yet (ComfyUI "
                        "resizes the control image to each area)");
    for (int g = 0; g < u->n_groups; g++)
        if (!u->lctl[u->groups[g].n - 1]) SDW_TRY(control_rows(r, u, u->groups[g].n, NULL, 0));
    return SDW_OK;
}

static sdw_status prepare_list(sdw_run *r, unet_state *u)
{
    const sdw_unet_config *uc = sdw_unet_get_config(r->m->unet);
    sdw_cond_plan *pl = &u->plan;
    SDW_TRY(sdw_cond_plan_make(r->p, r->cfg, r->B, r->lc, r->h, r->w, pl));
    SDW_TRY(sdw_cond_check_crops(pl, 1 << (uc->n_levels - 1), "this UNet"));
    if (!(u->enc = calloc((size_t)pl->n_src, sizeof *u->enc))) return sdw_pipeline_nomem();
    for (int i = 0; i < pl->n_src; i++)
        if (pl->used[i]) SDW_TRY(encode_entry(r, sdw_cond_source(r->p, i), &u->enc[i]));
    SDW_TRY(make_groups(r, u));
    size_t n = (size_t)GROUP_MAX * r->B * r->h * r->w * (uc->in_channels > r->lc ? uc->in_channels : r->lc);
    u->unet_in = malloc(n * sizeof(float));
    u->unet_out = malloc(n * sizeof(float));
    u->nchw = malloc(n * sizeof(float));
    u->neg = malloc((size_t)r->lc * r->h * r->w * sizeof(float));
    if (!u->unet_in || !u->unet_out || !u->nchw || !u->neg) return sdw_pipeline_nomem();
    if (r->p->n_controls > 0) SDW_TRY(list_controls(r, u));
    return SDW_OK;
}

/* One group's UNet call: each evaluation's crop of every batch item (+ the
 * crops of the inpainting mask and masked-image latents), then the outputs
 * into the plan's sums. */
static sdw_status run_group(sdw_run *r, unet_state *u, unet_group *g, const float *x_in, float t)
{
    sdw_cond_plan *pl = &u->plan;
    const sdw_unet_config *uc = sdw_unet_get_config(r->m->unet);
    const sdw_cond_eval *e0 = &pl->evals[g->k[0]];
    const int B = r->B, lc = r->lc, cin = uc->in_channels, oc = uc->out_channels, rows = g->n * B;
    const size_t ehw = (size_t)e0->h * e0->w, per = (size_t)lc * r->h * r->w;
    if (cin == 9 && (!r->mask_lat || !r->masked_lat))
        return sdw_fail(SDW_ERR_INVALID_ARG, "an inpainting model needs an image and a mask");
    for (int i = 0; i < g->n; i++)
        for (int b = 0; b < B; b++) {
            float *dst = u->nchw + (size_t)(i * B + b) * cin * ehw;
            sdw_cond_crop(pl, g->k[i], x_in + b * per, lc, dst);
            if (cin == 9) {
                sdw_cond_crop(pl, g->k[i], r->mask_lat, 1, dst + lc * ehw);
                sdw_cond_crop(pl, g->k[i], r->masked_lat, lc, dst + (lc + 1) * ehw);
            }
        }
    sdw_nchw_to_nhwc(u->nchw, rows, cin, e0->h, e0->w, u->unet_in);
    float ts[2 * 32];
    for (int b = 0; b < rows; b++) ts[b] = t;
    sdw_unet_input in = { u->unet_in, rows, e0->h, e0->w, ts, g->context, g->n_ctx, g->y, NULL, NULL, NULL, NULL,
                          &g->kv };
    if (u->lctl[g->n - 1]) SDW_TRY(control_rows(r, u, g->n, &in, t));
    sdw_arena_reset(&r->arena);
    SDW_TRY(sdw_unet_forward(r->m->be, &r->arena, r->m->unet, &in, u->unet_out));
    sdw_nhwc_to_nchw(u->unet_out, rows, e0->h, e0->w, oc, u->nchw);
    for (int i = 0; i < g->n; i++)
        for (int b = 0; b < B; b++) sdw_cond_add(pl, g->k[i], b, u->nchw + (size_t)(i * B + b) * oc * ehw);
    return SDW_OK;
}

static sdw_status predict_list(sdw_run *r, const float *x_in, float t, float *out)
{
    unet_state *u = r->state;
    const size_t per = (size_t)r->lc * r->h * r->w;
    sdw_cond_reset(&u->plan);
    /* (evaluations outside their timestep range run with their group and are left out of the sums) */
    sdw_cond_select(&u->plan, r);
    for (int g = 0; g < u->n_groups; g++) SDW_TRY(run_group(r, u, &u->groups[g], x_in, t));
    for (int b = 0; b < r->B; b++) {
        float *o = out + b * per;
        sdw_cond_result(&u->plan, SDW_COND_POS, b, o);
        if (!r->cfg) continue;
        sdw_cond_result(&u->plan, SDW_COND_NEG, b, u->neg);
        sdw_cfg_combine(u->neg, o, r->p->cfg_scale, per, o);
    }
    int64_t shape[4] = { r->B, r->lc, r->h, r->w };
    sdw_pipeline_observe(r, "denoiser_out", u->evals++, out, 4, shape);
    return SDW_OK;
}

/* ---------------------------------------------------------------- the run */

static sdw_status prepare(sdw_run *r)
{
    unet_state *u = calloc(1, sizeof *u);
    if (!u) return sdw_pipeline_nomem();
    r->state = u;
    if (r->p->n_positive > 0) return prepare_list(r, u);
    const sdw_unet_config *uc = sdw_unet_get_config(r->m->unet);
    size_t nb = (size_t)(r->cfg ? 2 : 1) * r->B;
    size_t n = nb * (size_t)r->h * r->w * (uc->in_channels > r->lc ? uc->in_channels : r->lc);
    u->unet_in = malloc(n * sizeof(float));
    u->unet_out = malloc(n * sizeof(float));
    u->nchw = malloc(n * sizeof(float));
    if (!u->unet_in || !u->unet_out || !u->nchw) return sdw_pipeline_nomem();
    if (r->p->n_controls > 0) SDW_TRY(sdw_control_begin(r, &u->control));
    return encode_prompts(r, u);
}

static sdw_status predict(sdw_run *r, const float *x_in, float t, float *out)
{
    if (r->p->n_positive > 0) return predict_list(r, x_in, t, out);
    unet_state *u = r->state;
    sdw_model *m = r->m;
    const sdw_unet_config *uc = sdw_unet_get_config(m->unet);
    int B = r->B, h = r->h, w = r->w, lc = r->lc, cin = uc->in_channels, nb = r->cfg ? 2 * B : B;
    size_t hw = (size_t)h * w;
    /* NCHW input for the whole UNet batch: [uncond; cond] copies (+ mask, masked latents). */
    float *nchw = u->nchw;
    for (int b = 0; b < nb; b++) {
        float *dst = nchw + (size_t)b * cin * hw;
        memcpy(dst, x_in + (size_t)(b % B) * lc * hw, (size_t)lc * hw * sizeof *dst);
        if (cin == 9) {
            if (!r->mask_lat || !r->masked_lat)
                return sdw_fail(SDW_ERR_INVALID_ARG, "an inpainting model needs an image and a mask");
            memcpy(dst + lc * hw, r->mask_lat, hw * sizeof *dst);
            memcpy(dst + (lc + 1) * hw, r->masked_lat, (size_t)lc * hw * sizeof *dst);
        }
    }
    sdw_nchw_to_nhwc(nchw, nb, cin, h, w, u->unet_in);
    float ts[64];
    for (int b = 0; b < nb; b++) ts[b] = t;
    sdw_unet_input in = { u->unet_in, nb, h, w, ts, u->context, u->n_ctx, u->y, NULL, NULL, NULL, NULL, &u->kv };
    if (u->control) SDW_TRY(sdw_control_apply(u->control, r, t, &in));
    sdw_arena_reset(&r->arena);
    SDW_TRY(sdw_unet_forward(m->be, &r->arena, m->unet, &in, u->unet_out));
    sdw_nhwc_to_nchw(u->unet_out, nb, h, w, uc->out_channels, nchw);
    size_t per = (size_t)B * lc * hw;
    if (!r->cfg) memcpy(out, nchw, per * sizeof *out);
    else sdw_cfg_combine(nchw, nchw + per, r->p->cfg_scale, per, out);
    return SDW_OK;
}

static void release(sdw_run *r)
{
    unet_state *u = r->state;
    if (!u) return;
    free(u->context);
    free(u->y);
    sdw_unet_ctx_cache_free(&u->kv);
    free(u->unet_in);
    free(u->unet_out);
    free(u->nchw);
    sdw_control_end(u->control);
    if (u->enc)
        for (int i = 0; i < u->plan.n_src; i++) sdw_text_embedding_free(&u->enc[i]);
    free(u->enc);
    for (int g = 0; g < u->n_groups; g++) {
        free(u->groups[g].context);
        free(u->groups[g].y);
        sdw_unet_ctx_cache_free(&u->groups[g].kv);
    }
    free(u->groups);
    for (int n = 0; n < GROUP_MAX; n++) sdw_control_end(u->lctl[n]);
    free(u->neg);
    sdw_cond_plan_free(&u->plan);
    free(u);
    r->state = NULL;
}

const sdw_denoiser_ops sdw_unet_denoiser = { prepare, predict, release };
