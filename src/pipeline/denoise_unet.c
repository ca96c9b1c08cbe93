/* denoise_unet.c: the UNet families (SD1, SD2, SDXL) as a denoiser:
 *   prepare: prompt and negative prompt -> CLIP context (and SDXL's pooled
 *            vector with the size micro-conditioning), batch [uncond; cond];
 *            the ControlNet units' buffers (control.c), once per run
 *   predict: the active ControlNets' residuals (control.c), the UNet on the
 *            whole batch (+ mask and masked-image latents for 9-channel
 *            inpainting models) with them, then classifier-free guidance. */
#include "pipeline/denoiser.h"
#include "pipeline/control.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    int n_ctx;                    /* tokens per conditioning */
    float *context;               /* [(cfg ? 2B : B), n_ctx, D] */
    float *y;                     /* SDXL added conditioning, same batch, or NULL */
    float *unet_in, *unet_out, *nchw;   /* scratch for predict */
    sdw_control_run *control;     /* ControlNet units, or NULL */
} unet_state;

static bool is_xl(sdw_family f) { return f == SDW_FAMILY_SDXL || f == SDW_FAMILY_SDXL_REFINER; }

static sdw_status encode_prompts(sdw_run *r, unet_state *u)
{
    sdw_model *m = r->m;
    const sdw_pipeline_params *p = r->p;
    sdw_text_embedding pos = { 0 }, neg = { 0 };
    SDW_TRY(sdw_text_encode_prompt(m->be, &m->text, p->prompt, 1, p->clip_skip, &pos));
    /* SDXL without a negative prompt conditions the unconditional branch on
     * zeros (diffusers' force_zeros_for_empty_prompt); SD1/SD2 encode "". */
    bool zero_uncond = is_xl(m->info.family) && (!p->negative_prompt || !p->negative_prompt[0]);
    sdw_status s = SDW_OK;
    int chunks = pos.n_tokens / SDW_CLIP_CONTEXT;
    if (r->cfg && !zero_uncond) {
        s = sdw_text_encode_prompt(m->be, &m->text, p->negative_prompt ? p->negative_prompt : "", chunks,
                                   p->clip_skip, &neg);
        /* A longer negative prompt: pad the positive to its length (A1111's "pad conds"). */
        if (s == SDW_OK && neg.n_tokens > pos.n_tokens) {
            sdw_text_embedding_free(&pos);
            s = sdw_text_encode_prompt(m->be, &m->text, p->prompt, neg.n_tokens / SDW_CLIP_CONTEXT, p->clip_skip,
                                       &pos);
        }
    }
    int D = m->text.context_dim, B = r->B, nb = r->cfg ? 2 * B : B;
    u->n_ctx = pos.n_tokens;
    size_t per = (size_t)u->n_ctx * D;
    if (s == SDW_OK && !(u->context = calloc((size_t)nb * per, sizeof(float)))) s = sdw_pipeline_nomem();
    if (s == SDW_OK) {
        /* Batch order as diffusers: [uncond x B, cond x B]. */
        for (int b = 0; b < B; b++) {
            float *cond = u->context + (size_t)(r->cfg ? B + b : b) * per;
            memcpy(cond, pos.context, per * sizeof(float));
            if (r->cfg && !zero_uncond) memcpy(u->context + (size_t)b * per, neg.context, per * sizeof(float));
        }
        int64_t shape[3] = { nb, u->n_ctx, D };
        sdw_pipeline_observe(r, "prompt_embeds", -1, u->context, 3, shape);
    }
    const sdw_unet_config *uc = sdw_unet_get_config(m->unet);
    if (s == SDW_OK && uc->adm_in) {
        int pd = m->text.pooled_dim, td = uc->addition_time_embed_dim;
        float ids[6] = { (float)p->height, (float)p->width, 0, 0, (float)p->height, (float)p->width };
        int n_ids = (uc->adm_in - pd) / td;
        if (n_ids != 6 || !pos.pooled) {
            s = sdw_fail(SDW_ERR_UNSUPPORTED, "the UNet's added conditioning (%d wide) is not pooled %d + 6 x %d",
                         uc->adm_in, pd, td);
        } else if (!(u->y = calloc((size_t)nb * uc->adm_in, sizeof(float)))) {
            s = sdw_pipeline_nomem();
        } else {
            float *zeros = calloc((size_t)pd, sizeof(float));
            if (!zeros) s = sdw_pipeline_nomem();
            for (int b = 0; b < nb && s == SDW_OK; b++) {
                bool uncond = r->cfg && b < B;
                const float *pooled = uncond ? (zero_uncond ? zeros : neg.pooled) : pos.pooled;
                sdw_unet_text_time_y(pooled, pd, ids, 6, td, u->y + (size_t)b * uc->adm_in);
            }
            free(zeros);
        }
    }
    sdw_text_embedding_free(&pos);
    sdw_text_embedding_free(&neg);
    return s;
}

static sdw_status prepare(sdw_run *r)
{
    unet_state *u = calloc(1, sizeof *u);
    if (!u) return sdw_pipeline_nomem();
    r->state = u;
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
    sdw_unet_input in = { u->unet_in, nb, h, w, ts, u->context, u->n_ctx, u->y, NULL, NULL, NULL, NULL };
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
    free(u->unet_in);
    free(u->unet_out);
    free(u->nchw);
    sdw_control_end(u->control);
    free(u);
    r->state = NULL;
}

const sdw_denoiser_ops sdw_unet_denoiser = { prepare, predict, release };
