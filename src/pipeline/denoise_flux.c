/* denoise_flux.c: FLUX.1 as a denoiser, as diffusers' FluxPipeline (= BFL's
 * reference) runs it:
 *   prepare: prompt -> T5-XXL last hidden state [L, 4096] (no attention mask:
 *            padding tokens attend), CLIP-L pooled [768] as the vector input;
 *            text ids zeros, image ids (0, i, j) over the 2x2-packed latents
 *   predict: pack the latents, one transformer pass at sigma = t / 1000 with
 *            the distilled guidance (dev), unpack; with --cfg-scale > 1 a
 *            second pass on the negative prompt and true CFG (the reference's
 *            true_cfg_scale; 1 by default, one pass a step). */
#include "pipeline/denoiser.h"
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

static sdw_status encode(sdw_run *r, flux_state *f, const char *prompt, int k)
{
    sdw_model *m = r->m;
    int L = f->n_txt, D = m->text.context_dim;
    char *text = NULL;
    SDW_TRY(plain_text(prompt, &text));
    int32_t *ids = malloc((size_t)L * sizeof *ids), clip_ids[SDW_CLIP_CONTEXT];
    f->txt[k] = malloc((size_t)L * D * sizeof(float));
    f->vec[k] = malloc((size_t)m->text.pooled_dim * sizeof(float));
    float *hidden = malloc((size_t)SDW_CLIP_CONTEXT * m->text.te1->cfg.width * sizeof(float));
    sdw_status s = ids && f->txt[k] && f->vec[k] && hidden ? SDW_OK : sdw_pipeline_nomem();
    if (s == SDW_OK) s = sdw_t5_tokenize(text, L, ids, NULL);
    if (s == SDW_OK) {
        sdw_arena_reset(&r->arena);
        s = sdw_t5_encode(m->be, &r->arena, m->t5, ids, L, f->txt[k]);
    }
    /* CLIP-L's pooled output: the final-norm state at the first end-of-text token. */
    if (s == SDW_OK) s = sdw_tokenize(text, SDW_PAD_EOS, clip_ids, NULL);
    if (s == SDW_OK) {
        sdw_arena_reset(&r->arena);
        s = sdw_clip_text_forward(m->be, &r->arena, m->text.te1, clip_ids, 1, 0, true, hidden, f->vec[k]);
    }
    if (s == SDW_OK && k == 0) {
        int64_t shape[3] = { 1, L, D }, pshape[2] = { 1, m->text.pooled_dim };
        sdw_pipeline_observe(r, "prompt_embeds", -1, f->txt[k], 3, shape);
        sdw_pipeline_observe(r, "pooled_prompt_embeds", -1, f->vec[k], 2, pshape);
    }
    free(text);
    free(ids);
    free(hidden);
    return s;
}

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
    sdw_status s = encode(r, f, r->p->prompt, 0);
    if (s == SDW_OK && r->cfg) s = encode(r, f, r->p->negative_prompt ? r->p->negative_prompt : "", 1);
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
    free(f);
    r->state = NULL;
}

const sdw_denoiser_ops sdw_flux_denoiser = { prepare, predict, release };
