/* sd3_text.c: SD3's three text encoders and how their outputs become the
 * MMDiT's context and pooled vector (see sd3_text.h). */
#include "models/sd3_text.h"
#include "models/text_conditioner.h"
#include "core/error.h"
#include "core/log.h"
#include "text/prompt_chunks.h"
#include "text/prompt_parse.h"
#include "text/t5_tokenizer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The real towers' sizes, which tell CLIP-L and CLIP-G apart. */
static const struct { const char *name; int width, layers; sdw_clip_act act; } towers[2] = {
    [SDW_SD3_CLIP_L] = { "CLIP-L", 768, 12, SDW_CLIP_QUICK_GELU },
    [SDW_SD3_CLIP_G] = { "CLIP-G", 1280, 32, SDW_CLIP_GELU },
};

/* ---------------------------------------------------------------- loading */

/* Whether a tower width x layers is the kind asked for. Test towers (under
 * 64 wide) are whatever the caller says. */
static sdw_status check_kind(sdw_sd3_clip_kind kind, int width, int layers, int ctx, const char *what)
{
    const sdw_sd3_clip_kind other = kind == SDW_SD3_CLIP_L ? SDW_SD3_CLIP_G : SDW_SD3_CLIP_L;
    if (ctx != SDW_CLIP_CONTEXT)
        return sdw_fail(SDW_ERR_FORMAT, "%s: the text encoder has %d positions; SD3's %s reads %d tokens", what, ctx,
                        towers[kind].name, SDW_CLIP_CONTEXT);
    if (width < 64 || (width == towers[kind].width && layers == towers[kind].layers)) return SDW_OK;
    if (width == towers[other].width && layers == towers[other].layers)
        return sdw_fail(SDW_ERR_FORMAT, "%s is a %s text encoder (%d wide, %d layers), not the %s that goes there",
                        what, towers[other].name, width, layers, towers[kind].name);
    return sdw_fail(SDW_ERR_FORMAT, "%s: a text encoder %d wide with %d layers is not SD3's %s (%d wide, %d layers)",
                    what, width, layers, towers[kind].name, towers[kind].width, towers[kind].layers);
}

sdw_status sdw_sd3_text_load_clip(sdw_backend *be, sdw_sd3_text *t, sdw_sd3_clip_kind kind,
                                  const sdw_safetensors *st, const char *prefix, const char *file, const char *what)
{
    const char *name = towers[kind].name;
    sdw_clip_layout layout;
    if (!sdw_clip_text_present(st, prefix, &layout)) {
        if (sdw_t5_present(st, prefix))
            return sdw_fail(SDW_ERR_FORMAT, "%s is a T5 encoder, not the %s text encoder", what, name);
        return sdw_fail(SDW_ERR_FORMAT, "%s is not a %s text encoder (no %stext_model.* tensors)", what, name, prefix);
    }
    char tn[512];
    snprintf(tn, sizeof tn, "%s%s", prefix,
             layout == SDW_CLIP_LAYOUT_HF ? "text_model.embeddings.token_embedding.weight" : "token_embedding.weight");
    const sdw_st_tensor *tok = sdw_st_find(st, tn);
    snprintf(tn, sizeof tn, "%s%s", prefix,
             layout == SDW_CLIP_LAYOUT_HF ? "text_model.embeddings.position_embedding.weight" : "positional_embedding");
    const sdw_st_tensor *pos = sdw_st_find(st, tn);
    if (tok->ndim != 2 || !pos || pos->ndim != 2)
        return sdw_fail(SDW_ERR_FORMAT, "%s: the %s token / position embeddings are not 2-D", what, name);
    const int width = (int)tok->shape[1];
    SDW_TRY(check_kind(kind, width, sdw_clip_text_count_layers(st, prefix, layout), (int)pos->shape[0], what));
    snprintf(tn, sizeof tn, "%s%s", prefix,
             layout == SDW_CLIP_LAYOUT_HF ? "text_projection.weight" : "text_projection");
    const bool has_proj = sdw_st_find(st, tn) != NULL;
    if (kind == SDW_SD3_CLIP_G && !has_proj)
        return sdw_fail(SDW_ERR_FORMAT, "%s has no %s: SD3's CLIP-G needs its projection for the pooled output "
                        "(a CLIP-L, or a tower without projection?)", what, tn);

    sdw_clip_text **slot = kind == SDW_SD3_CLIP_L ? &t->clip_l : &t->clip_g;
    sdw_clip_text_free(*slot);
    *slot = NULL;
    const sdw_clip_load_opts o = { layout, prefix, sdw_clip_text_heads(file, width), 0, towers[kind].act, true };
    SDW_TRY(sdw_fail_context(sdw_clip_text_load(be, st, &o, slot), "%s", what));
    snprintf(t->what[kind], sizeof t->what[kind], "%s", what);
    if (!has_proj)
        SDW_WARN("%s has no text_projection: its pooled output goes to SD3 unprojected (as SAI's and ComfyUI's "
                 "SD3 use it; diffusers projects it)", what);
    return SDW_OK;
}

sdw_status sdw_sd3_text_load_t5(sdw_backend *be, sdw_sd3_text *t, const sdw_safetensors *st, const char *prefix,
                                const char *what)
{
    if (!sdw_t5_present(st, prefix) && sdw_clip_text_present(st, prefix, NULL))
        return sdw_fail(SDW_ERR_FORMAT, "%s is a CLIP text encoder, not the T5-XXL encoder", what);
    sdw_t5_free(t->t5);
    t->t5 = NULL;
    SDW_TRY(sdw_fail_context(sdw_t5_load(be, st, prefix, &t->t5), "%s", what));
    snprintf(t->what[2], sizeof t->what[2], "%s", what);
    t->joint_dim = sdw_t5_d_model(t->t5);
    return SDW_OK;
}

sdw_status sdw_sd3_text_load_files(sdw_backend *be, const char *clip_l_path, const char *clip_g_path,
                                   const char *t5_path, sdw_sd3_text *t)
{
    memset(t, 0, sizeof *t);
    const char *paths[3] = { clip_l_path, clip_g_path, t5_path };
    sdw_status s = SDW_OK;
    for (int i = 0; i < 3 && s == SDW_OK; i++) {
        if (!paths[i]) {
            if (i < 2) s = sdw_fail(SDW_ERR_INVALID_ARG, "SD3 needs the %s text encoder", towers[i].name);
            continue;
        }
        sdw_safetensors *st;
        s = sdw_st_open(paths[i], &st);
        if (s != SDW_OK) break;
        if (i < 2) s = sdw_sd3_text_load_clip(be, t, (sdw_sd3_clip_kind)i, st, "", paths[i], paths[i]);
        else s = sdw_sd3_text_load_t5(be, t, st, "", paths[i]);
        sdw_st_close(st);
    }
    if (s != SDW_OK) sdw_sd3_text_free(t);
    return s;
}

bool sdw_sd3_text_aio_present(const sdw_safetensors *st, bool *has_t5)
{
    if (has_t5) *has_t5 = sdw_t5_present(st, SDW_SD3_AIO_T5);
    return sdw_clip_text_present(st, SDW_SD3_AIO_CLIP_L, NULL) && sdw_clip_text_present(st, SDW_SD3_AIO_CLIP_G, NULL);
}

sdw_status sdw_sd3_text_load_aio(sdw_backend *be, const sdw_safetensors *st, const char *path, sdw_sd3_text *t)
{
    memset(t, 0, sizeof *t);
    static const char *const prefixes[3] = { SDW_SD3_AIO_CLIP_L, SDW_SD3_AIO_CLIP_G, SDW_SD3_AIO_T5 };
    char what[3][600];
    for (int i = 0; i < 3; i++) snprintf(what[i], sizeof what[i], "%s (%s*)", path, prefixes[i]);
    sdw_status s = sdw_sd3_text_load_clip(be, t, SDW_SD3_CLIP_L, st, prefixes[0], NULL, what[0]);
    if (s == SDW_OK) s = sdw_sd3_text_load_clip(be, t, SDW_SD3_CLIP_G, st, prefixes[1], NULL, what[1]);
    if (s == SDW_OK && sdw_t5_present(st, prefixes[2])) s = sdw_sd3_text_load_t5(be, t, st, prefixes[2], what[2]);
    if (s != SDW_OK) sdw_sd3_text_free(t);
    return s;
}

void sdw_sd3_text_free(sdw_sd3_text *t)
{
    sdw_clip_text_free(t->clip_l);
    sdw_clip_text_free(t->clip_g);
    sdw_t5_free(t->t5);
    memset(t, 0, sizeof *t);
}

static int pooled_width(const sdw_clip_text *c) { return c->cfg.proj ? c->cfg.proj : c->cfg.width; }

int sdw_sd3_text_pooled_dim(const sdw_sd3_text *t)
{
    return t->clip_l && t->clip_g ? pooled_width(t->clip_l) + pooled_width(t->clip_g) : 0;
}

sdw_status sdw_sd3_text_check(sdw_sd3_text *t, int joint_dim, int pooled_dim)
{
    if (!t->clip_l || !t->clip_g) return sdw_fail(SDW_ERR_INVALID_ARG, "SD3 needs both CLIP text encoders loaded");
    if (t->t5 && sdw_t5_d_model(t->t5) != joint_dim)
        return sdw_fail(SDW_ERR_FORMAT, "%s: the T5 encoder is %d wide, but the SD3 transformer reads %d-wide text "
                        "(its joint_attention_dim)", t->what[2], sdw_t5_d_model(t->t5), joint_dim);
    const int wl = t->clip_l->cfg.width, wg = t->clip_g->cfg.width;
    if (wl + wg > joint_dim)
        return sdw_fail(SDW_ERR_FORMAT, "the CLIP features (%s: %d wide, %s: %d) do not fit the SD3 transformer's "
                        "%d-wide text input", t->what[0], wl, t->what[1], wg, joint_dim);
    const int pl = pooled_width(t->clip_l), pg = pooled_width(t->clip_g);
    if (pl + pg != pooled_dim)
        return sdw_fail(SDW_ERR_FORMAT, "the pooled outputs (%s: %d wide, %s: %d) make %d, but the SD3 transformer "
                        "takes a %d-wide pooled vector", t->what[0], pl, t->what[1], pg, pl + pg, pooled_dim);
    t->joint_dim = joint_dim;
    return SDW_OK;
}

/* ---------------------------------------------------------------- prompts */

/* A prompt as the encoders see it: 77-id chunks for each CLIP (equal counts),
 * the emphasis weights of CLIP-L's tokenization (A1111 uses them for both),
 * and the plain text for T5. */
typedef struct {
    int32_t *ids_l, *ids_g;
    float *w_l, *w_g;
    int n;
    char *plain;
} sd3_tokens;

static void tokens_free(sd3_tokens *k)
{
    free(k->ids_l); free(k->ids_g); free(k->w_l); free(k->w_g); free(k->plain);
    memset(k, 0, sizeof *k);
}

/* The spans' text with the syntax gone, BREAK as a space (as FLUX's T5 reads it). */
static sdw_status plain_text(const sdw_parsed_prompt *pp, char **out)
{
    size_t len = 1;
    for (int i = 0; i < pp->n_spans; i++) len += strlen(pp->spans[i].text) + 1;
    char *t = calloc(len, 1);
    if (!t) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    for (int i = 0; i < pp->n_spans; i++) strcat(t, pp->spans[i].is_break ? " " : pp->spans[i].text);
    *out = t;
    return SDW_OK;
}

/* CLIP-L pads with EOS; CLIP-G with 0 after the EOS, "!" split out as 0
 * (SDW_PAD_ZERO): that may make more tokens, so both get the larger count. */
static sdw_status tokenize(const char *prompt, int min_chunks, sd3_tokens *k)
{
    memset(k, 0, sizeof *k);
    sdw_parsed_prompt pp;
    SDW_TRY(sdw_prompt_parse(prompt ? prompt : "", &pp));
    int nl = 0, ng = 0;
    sdw_status s = sdw_prompt_to_chunks(&pp, SDW_PAD_EOS, &k->ids_l, &k->w_l, &nl);
    if (s == SDW_OK) s = sdw_prompt_to_chunks(&pp, SDW_PAD_ZERO, &k->ids_g, &k->w_g, &ng);
    if (s == SDW_OK) s = plain_text(&pp, &k->plain);
    sdw_parsed_prompt_free(&pp);
    k->n = nl > ng ? nl : ng;
    if (k->n < min_chunks) k->n = min_chunks;
    if (s == SDW_OK) s = sdw_prompt_chunks_pad(&k->ids_l, &k->w_l, &nl, k->n, SDW_PAD_EOS);
    if (s == SDW_OK) s = sdw_prompt_chunks_pad(&k->ids_g, &k->w_g, &ng, k->n, SDW_PAD_ZERO);
    if (s != SDW_OK) tokens_free(k);
    return s;
}

sdw_status sdw_sd3_prompt_chunks(const char *prompt, int *n)
{
    sd3_tokens k;
    SDW_TRY(tokenize(prompt, 1, &k));
    *n = k.n;
    tokens_free(&k);
    return SDW_OK;
}

/* One CLIP tower on the chunks: features [n, 77, width] of hidden state
 * [-(skip + 1)] (no final norm), and the first chunk's pooled output. */
static sdw_status run_clip(sdw_backend *be, sdw_arena *arena, const sdw_clip_text *c, const int32_t *ids, int n,
                           int skip, float **feat, float *pooled)
{
    const int W = c->cfg.width, P = pooled_width(c);
    *feat = sdw_arena_floats(arena, (size_t)n * SDW_CLIP_CONTEXT * W);
    float *p = sdw_arena_floats(arena, (size_t)n * P);
    if (!*feat || !p) return sdw_fail(SDW_ERR_NOMEM, "out of memory in the SD3 text encoders");
    SDW_TRY(sdw_clip_text_forward(be, arena, c, ids, n, skip, false, *feat, p));
    memcpy(pooled, p, (size_t)P * sizeof *p);   /* A1111: the first chunk's */
    return SDW_OK;
}

/* The CLIP rows of the context: [L | G | zeros] per token, then each chunk's emphasis. */
static void assemble_clip(const sdw_sd3_text *t, const sd3_tokens *k, const float *fl, const float *fg, float *ctx)
{
    const int J = t->joint_dim, WL = t->clip_l->cfg.width, WG = t->clip_g->cfg.width;
    const size_t rows = (size_t)k->n * SDW_CLIP_CONTEXT;
    for (size_t r = 0; r < rows; r++) {
        float *d = ctx + r * J;
        memcpy(d, fl + r * WL, (size_t)WL * sizeof *d);
        memcpy(d + WL, fg + r * WG, (size_t)WG * sizeof *d);
        memset(d + WL + WG, 0, (size_t)(J - WL - WG) * sizeof *d);
    }
    for (int c = 0; c < k->n; c++) {
        const float *w = k->w_l + (size_t)c * SDW_CLIP_CONTEXT;
        bool ones = true;
        for (int i = 0; i < SDW_CLIP_CONTEXT; i++) ones = ones && w[i] == 1.0f;
        /* zeros do not move the mean's ratio: A1111 applies it to the padded rows the same */
        if (!ones) sdw_apply_emphasis(ctx + (size_t)c * SDW_CLIP_CONTEXT * J, w, SDW_CLIP_CONTEXT, J);
    }
}

static sdw_status check_args(const sdw_sd3_text *t, int t5_len, int clip_skip, int min_chunks)
{
    if (!t->clip_l || !t->clip_g) return sdw_fail(SDW_ERR_INVALID_ARG, "SD3 needs both CLIP text encoders loaded");
    if (t->joint_dim < t->clip_l->cfg.width + t->clip_g->cfg.width)
        return sdw_fail(SDW_ERR_INVALID_ARG, "SD3 text: the context width is not set (no T5: call sdw_sd3_text_check "
                        "with the transformer's joint_attention_dim first)");
    if (t->t5 && sdw_t5_d_model(t->t5) != t->joint_dim)
        return sdw_fail(SDW_ERR_INVALID_ARG, "SD3 text: the T5 is %d wide, the context %d", sdw_t5_d_model(t->t5),
                        t->joint_dim);
    if (t5_len < 1 || t5_len > SDW_SD3_T5_LEN_MAX)
        return sdw_fail(SDW_ERR_INVALID_ARG, "T5 length %d not in 1..%d", t5_len, SDW_SD3_T5_LEN_MAX);
    const int layers = t->clip_l->cfg.layers < t->clip_g->cfg.layers ? t->clip_l->cfg.layers : t->clip_g->cfg.layers;
    if (clip_skip < 0 || clip_skip > layers)
        return sdw_fail(SDW_ERR_INVALID_ARG, "clip skip %d not in 1..%d", clip_skip, layers);
    if (min_chunks < 1 || min_chunks > 64)
        return sdw_fail(SDW_ERR_INVALID_ARG, "SD3 text: %d prompt chunks asked for (1..64)", min_chunks);
    return SDW_OK;
}

sdw_status sdw_sd3_encode_chunks(sdw_backend *be, sdw_arena *arena, const sdw_sd3_text *t, const char *prompt,
                                 int min_chunks, int t5_len, int clip_skip, float **context, int *n_ctx,
                                 float *pooled)
{
    *context = NULL;
    *n_ctx = 0;
    SDW_TRY(check_args(t, t5_len, clip_skip, min_chunks));
    sd3_tokens k;
    SDW_TRY(tokenize(prompt, min_chunks, &k));
    /* diffusers' clip_skip k reads hidden_states[-(k + 2)]: A1111's N = k + 2 */
    const int skip = clip_skip > 2 ? clip_skip - 1 : 1, J = t->joint_dim;
    const int n_clip = k.n * SDW_CLIP_CONTEXT, n_t5 = t->t5 ? t5_len : SDW_CLIP_CONTEXT;
    float *ctx = malloc((size_t)(n_clip + n_t5) * J * sizeof *ctx), *fl, *fg;
    int32_t *ids = malloc((size_t)t5_len * sizeof *ids);
    sdw_status s = ctx && ids ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory in the SD3 text encoders");
    sdw_arena_reset(arena);
    if (s == SDW_OK) s = run_clip(be, arena, t->clip_l, k.ids_l, k.n, skip, &fl, pooled);
    if (s == SDW_OK) s = run_clip(be, arena, t->clip_g, k.ids_g, k.n, skip, &fg, pooled + pooled_width(t->clip_l));
    if (s == SDW_OK) assemble_clip(t, &k, fl, fg, ctx);
    sdw_arena_reset(arena);
    float *t5_part = ctx ? ctx + (size_t)n_clip * J : NULL;
    if (s == SDW_OK && !t->t5) memset(t5_part, 0, (size_t)n_t5 * J * sizeof *ctx);
    if (s == SDW_OK && t->t5) s = sdw_t5_tokenize(k.plain, t5_len, ids, NULL);
    if (s == SDW_OK && t->t5) s = sdw_t5_encode(be, arena, t->t5, ids, t5_len, t5_part);
    tokens_free(&k);
    free(ids);
    if (s != SDW_OK) {
        free(ctx);
        return s;
    }
    *context = ctx;
    *n_ctx = n_clip + n_t5;
    return SDW_OK;
}

sdw_status sdw_sd3_encode(sdw_backend *be, sdw_arena *arena, const sdw_sd3_text *t, const char *prompt, int t5_len,
                          int clip_skip, float **context, int *n_ctx, float *pooled)
{
    return sdw_sd3_encode_chunks(be, arena, t, prompt, 1, t5_len, clip_skip, context, n_ctx, pooled);
}
