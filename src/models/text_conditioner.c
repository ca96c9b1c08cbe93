/* text_conditioner.c: see text_conditioner.h. */
#include "models/text_conditioner.h"
#include "core/error.h"
#include "io/json_file.h"
#include "text/prompt_chunks.h"
#include "text/prompt_parse.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sdw_clip_act act_from_name(const char *name, sdw_clip_act def)
{
    if (!name) return def;
    if (!strcmp(name, "quick_gelu")) return SDW_CLIP_QUICK_GELU;
    if (!strcmp(name, "gelu")) return SDW_CLIP_GELU;
    return def;
}

static bool is_xl(sdw_family f) { return f == SDW_FAMILY_SDXL || f == SDW_FAMILY_SDXL_REFINER; }

static void finish(sdw_text_conditioner *tc)
{
    if (is_xl(tc->family)) {
        tc->context_dim = (tc->te1 ? tc->te1->cfg.width : 0) + tc->te2->cfg.width;
        tc->pooled_dim = tc->te2->cfg.proj ? tc->te2->cfg.proj : tc->te2->cfg.width;
    } else {
        tc->context_dim = tc->te1->cfg.width;
        tc->pooled_dim = 0;
    }
}

#define SD_COND "model.params.cond_stage_config.params."
#define XL_EMB "model.params.conditioner_config.params.emb_models."

sdw_status sdw_text_conditioner_load_single(sdw_backend *be, const sdw_safetensors *st, const sdw_yaml_map *yaml,
                                            sdw_text_conditioner *tc)
{
    static const sdw_yaml_map none;
    if (!yaml) yaml = &none;
    memset(tc, 0, sizeof *tc);
    sdw_clip_layout l1, l2;
    sdw_clip_load_opts o = { 0 };
    sdw_status s;
    if (sdw_clip_text_present(st, "conditioner.embedders.0.transformer.", &l1) &&
        sdw_clip_text_present(st, "conditioner.embedders.1.model.", &l2)) {
        tc->family = SDW_FAMILY_SDXL;
        o = (sdw_clip_load_opts){ l1, "conditioner.embedders.0.transformer.",
                                  sdw_yaml_int(yaml, XL_EMB "0.params.num_attention_heads", 0), 0,
                                  act_from_name(sdw_yaml_get(yaml, XL_EMB "0.params.hidden_act"), SDW_CLIP_QUICK_GELU), false };
        if ((s = sdw_clip_text_load(be, st, &o, &tc->te1)) != SDW_OK) goto fail;
        o = (sdw_clip_load_opts){ l2, "conditioner.embedders.1.model.", sdw_yaml_int(yaml, XL_EMB "1.params.heads", 0),
                                  0, act_from_name(sdw_yaml_get(yaml, XL_EMB "1.params.act"), SDW_CLIP_GELU), true };
        if ((s = sdw_clip_text_load(be, st, &o, &tc->te2)) != SDW_OK) goto fail;
    } else if (sdw_clip_text_present(st, "conditioner.embedders.0.model.", &l2)) {
        /* The SDXL refiner conditions on OpenCLIP bigG alone. */
        tc->family = SDW_FAMILY_SDXL_REFINER;
        o = (sdw_clip_load_opts){ l2, "conditioner.embedders.0.model.", sdw_yaml_int(yaml, XL_EMB "0.params.heads", 0),
                                  0, act_from_name(sdw_yaml_get(yaml, XL_EMB "0.params.act"), SDW_CLIP_GELU), true };
        if ((s = sdw_clip_text_load(be, st, &o, &tc->te2)) != SDW_OK) goto fail;
    } else if (sdw_clip_text_present(st, "cond_stage_model.model.", &l1)) {
        /* SD2: OpenCLIP ViT-H; the last layer is never used ("penultimate"), so it is not loaded. */
        tc->family = SDW_FAMILY_SD2;
        const char *layer = sdw_yaml_get(yaml, SD_COND "layer");
        int n = sdw_clip_text_count_layers(st, "cond_stage_model.model.", l1);
        o = (sdw_clip_load_opts){ l1, "cond_stage_model.model.", sdw_yaml_int(yaml, SD_COND "heads", 0),
                                  (layer && !strcmp(layer, "last")) ? n : n - 1,
                                  act_from_name(sdw_yaml_get(yaml, SD_COND "act"), SDW_CLIP_GELU), false };
        if ((s = sdw_clip_text_load(be, st, &o, &tc->te1)) != SDW_OK) goto fail;
    } else if (sdw_clip_text_present(st, "cond_stage_model.transformer.", &l1)) {
        tc->family = SDW_FAMILY_SD1;
        o = (sdw_clip_load_opts){ l1, "cond_stage_model.transformer.",
                                  sdw_yaml_int(yaml, SD_COND "num_attention_heads", 0), 0,
                                  act_from_name(sdw_yaml_get(yaml, SD_COND "hidden_act"), SDW_CLIP_QUICK_GELU), false };
        if ((s = sdw_clip_text_load(be, st, &o, &tc->te1)) != SDW_OK) goto fail;
    } else {
        return sdw_fail(SDW_ERR_UNSUPPORTED,
                        "%s: no text encoder found (looked for cond_stage_model.transformer.*, "
                        "cond_stage_model.model.*, conditioner.embedders.0/1.*)",
                        st->path);
    }
    finish(tc);
    return SDW_OK;
fail:
    sdw_text_conditioner_free(tc);
    return s;
}

/* One diffusers text encoder folder: config.json gives heads and activation. */
static sdw_status load_diffusers_te(sdw_backend *be, const char *dir, const char *sub, bool projection,
                                    sdw_clip_text **out)
{
    char path[4096];
    cJSON *cfg = NULL;
    snprintf(path, sizeof path, "%s/%s/config.json", dir, sub);
    SDW_TRY(sdw_json_load_file(path, &cfg));
    sdw_clip_load_opts o = { SDW_CLIP_LAYOUT_HF, "", sdw_json_int(cfg, "num_attention_heads", 0), 0,
                             act_from_name(sdw_json_str(cfg, "hidden_act", NULL), SDW_CLIP_QUICK_GELU), projection };
    cJSON_Delete(cfg);
    static const char *const files[] = { "model.safetensors", "model.fp16.safetensors" };
    sdw_safetensors *st = NULL;
    for (size_t i = 0; i < 2 && !st; i++) {
        snprintf(path, sizeof path, "%s/%s/%s", dir, sub, files[i]);
        if (sdw_st_open(path, &st) != SDW_OK && i == 1) return sdw_fail_context(SDW_ERR_IO, "%s/%s", dir, sub);
    }
    sdw_status s = sdw_clip_text_load(be, st, &o, out);
    sdw_st_close(st);
    return s;
}

sdw_status sdw_text_conditioner_load_diffusers(sdw_backend *be, const char *dir, sdw_text_conditioner *tc)
{
    memset(tc, 0, sizeof *tc);
    char path[4096];
    sdw_status s = load_diffusers_te(be, dir, "text_encoder", false, &tc->te1);
    if (s != SDW_OK) return s;
    snprintf(path, sizeof path, "%s/text_encoder_2/config.json", dir);
    FILE *f = fopen(path, "r");
    if (f) {
        fclose(f);
        tc->family = SDW_FAMILY_SDXL;
        s = load_diffusers_te(be, dir, "text_encoder_2", true, &tc->te2);
    } else {
        /* SD2's diffusers encoder is already cut at the penultimate layer; it is the GELU one. */
        tc->family = tc->te1->cfg.act == SDW_CLIP_GELU ? SDW_FAMILY_SD2 : SDW_FAMILY_SD1;
    }
    if (s != SDW_OK) {
        sdw_text_conditioner_free(tc);
        return s;
    }
    finish(tc);
    return SDW_OK;
}

void sdw_text_conditioner_free(sdw_text_conditioner *tc)
{
    sdw_clip_text_free(tc->te1);
    sdw_clip_text_free(tc->te2);
    sdw_arena_free(&tc->arena);
    memset(tc, 0, sizeof *tc);
}

/* sdw_text_encode_ids for n_chunks chunks, with pooled [n_chunks / every,
 * pooled_dim]: chunk 0's, chunk every's, ... (each prompt's first). */
static sdw_status encode_chunks(sdw_backend *be, sdw_text_conditioner *tc, const int32_t *ids1, const int32_t *ids2,
                                int n_chunks, int every, int clip_skip, float *context, float *pooled)
{
    if (n_chunks < 1) return sdw_fail(SDW_ERR_INVALID_ARG, "no token chunks to encode");
    if (clip_skip < 0 || clip_skip > 12) return sdw_fail(SDW_ERR_INVALID_ARG, "clip skip %d not in 1..12", clip_skip);
    int skip = clip_skip > 0 ? clip_skip - 1 : 0;
    const int T = SDW_CLIP_CONTEXT;
    int D = tc->context_dim;
    sdw_arena_reset(&tc->arena);
    sdw_status s = SDW_OK;
    if (!is_xl(tc->family)) {
        float *h = sdw_arena_floats(&tc->arena, (size_t)n_chunks * T * D);
        if (!h) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        s = sdw_clip_text_forward(be, &tc->arena, tc->te1, ids1, n_chunks, skip, true, h, NULL);
        if (s == SDW_OK) memcpy(context, h, (size_t)n_chunks * T * D * sizeof *h);
        return s;
    }
    /* SDXL: the penultimate layers (clip skip counts from there), no final norm;
     * the refiner has only the second encoder. */
    if (!ids2) return sdw_fail(SDW_ERR_INVALID_ARG, "SDXL needs the second encoder's token ids");
    int W1 = tc->te1 ? tc->te1->cfg.width : 0, W2 = tc->te2->cfg.width;
    skip = skip > 1 ? skip : 1;
    float *h1 = sdw_arena_floats(&tc->arena, (size_t)n_chunks * T * (W1 ? W1 : 1));
    float *h2 = sdw_arena_floats(&tc->arena, (size_t)n_chunks * T * W2);
    float *p = sdw_arena_floats(&tc->arena, (size_t)n_chunks * tc->pooled_dim);
    if (!h1 || !h2 || !p) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    if (tc->te1) SDW_TRY(sdw_clip_text_forward(be, &tc->arena, tc->te1, ids1, n_chunks, skip, false, h1, NULL));
    SDW_TRY(sdw_clip_text_forward(be, &tc->arena, tc->te2, ids2, n_chunks, skip, false, h2, p));
    for (size_t r = 0; r < (size_t)n_chunks * T; r++) {
        memcpy(context + r * D, h1 + r * W1, (size_t)W1 * sizeof *h1);
        memcpy(context + r * D + W1, h2 + r * W2, (size_t)W2 * sizeof *h2);
    }
    if (pooled) /* A1111: the first chunk's */
        for (int c = 0; c < n_chunks; c += every)
            memcpy(pooled + (size_t)(c / every) * tc->pooled_dim, p + (size_t)c * tc->pooled_dim,
                   (size_t)tc->pooled_dim * sizeof *p);
    return SDW_OK;
}

sdw_status sdw_text_encode_ids(sdw_backend *be, sdw_text_conditioner *tc, const int32_t *ids1, const int32_t *ids2,
                               int n_chunks, int clip_skip, float *context, float *pooled)
{
    return encode_chunks(be, tc, ids1, ids2, n_chunks, n_chunks, clip_skip, context, pooled);
}

/* A1111's "Original" emphasis: scale each token's vectors by its weight, then
 * restore the chunk's mean so the overall magnitude is unchanged. */
void sdw_apply_emphasis(float *z, const float *weights, int T, int D)
{
    double before = 0, after = 0;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D; i++) before += z[(size_t)t * D + i];
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D; i++) {
            z[(size_t)t * D + i] *= weights[t];
            after += z[(size_t)t * D + i];
        }
    if (after == 0) return;
    float k = (float)(before / after);
    for (size_t i = 0; i < (size_t)T * D; i++) z[i] *= k;
}

static bool all_ones(const float *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (w[i] != 1.0f) return false;
    return true;
}

/* One prompt's chunks of ids (two tokenizations for SDXL) and weights. */
typedef struct {
    int32_t *ids1, *ids2;
    float *w1, *w2;
    int n1, n2;
} prompt_ids;

static void prompt_ids_free(prompt_ids *q)
{
    free(q->ids1); free(q->ids2); free(q->w1); free(q->w2);
    memset(q, 0, sizeof *q);
}

/* The first encoder's padding: SD2's OpenCLIP pads with 0, CLIP-L with EOS. */
static sdw_pad first_pad(const sdw_text_conditioner *tc)
{
    return tc->family == SDW_FAMILY_SD2 ? SDW_PAD_ZERO : SDW_PAD_EOS;
}

static sdw_status tokenize(const sdw_text_conditioner *tc, const char *prompt, prompt_ids *q)
{
    sdw_parsed_prompt pp;
    SDW_TRY(sdw_prompt_parse(prompt ? prompt : "", &pp));
    sdw_status s = sdw_prompt_to_chunks(&pp, first_pad(tc), &q->ids1, &q->w1, &q->n1);
    if (s == SDW_OK && is_xl(tc->family)) s = sdw_prompt_to_chunks(&pp, SDW_PAD_ZERO, &q->ids2, &q->w2, &q->n2);
    sdw_parsed_prompt_free(&pp);
    return s;
}

/* Pads q to target chunks, then appends its ids to all (prompt k's at chunk k * target). */
static sdw_status gather(const sdw_text_conditioner *tc, prompt_ids *q, int target, int k, int32_t *all1, int32_t *all2)
{
    const size_t T = SDW_CLIP_CONTEXT, at = (size_t)k * target * T;
    SDW_TRY(sdw_prompt_chunks_pad(&q->ids1, &q->w1, &q->n1, target, first_pad(tc)));
    memcpy(all1 + at, q->ids1, (size_t)target * T * sizeof *all1);
    if (q->ids2) {
        SDW_TRY(sdw_prompt_chunks_pad(&q->ids2, &q->w2, &q->n2, target, SDW_PAD_ZERO));
        memcpy(all2 + at, q->ids2, (size_t)target * T * sizeof *all2);
    }
    return SDW_OK;
}

/* The prompts' ids, each padded to target chunks, through the encoders at
 * once (one batch: CLIP's 77-row matmuls are short of rows), then split. */
static sdw_status encode_padded(sdw_backend *be, sdw_text_conditioner *tc, prompt_ids *q, int n, int target,
                                int clip_skip, sdw_text_embedding *out)
{
    const size_t T = SDW_CLIP_CONTEXT, D = (size_t)tc->context_dim, chunks = (size_t)n * target;
    int32_t *all1 = malloc(chunks * T * sizeof *all1), *all2 = q[0].ids2 ? malloc(chunks * T * sizeof *all2) : NULL;
    float *context = malloc(chunks * T * D * sizeof *context);
    float *pooled = tc->pooled_dim ? malloc((size_t)n * tc->pooled_dim * sizeof *pooled) : NULL;
    sdw_status s = (!all1 || (q[0].ids2 && !all2) || !context || (tc->pooled_dim && !pooled))
                       ? sdw_fail(SDW_ERR_NOMEM, "out of memory")
                       : SDW_OK;
    for (int k = 0; k < n && s == SDW_OK; k++) s = gather(tc, &q[k], target, k, all1, all2);
    if (s == SDW_OK) s = encode_chunks(be, tc, all1, all2, (int)chunks, target, clip_skip, context, pooled);
    for (int k = 0; k < n && s == SDW_OK; k++) {
        sdw_text_embedding *e = &out[k];
        e->n_tokens = target * (int)T;
        e->context = malloc((size_t)e->n_tokens * D * sizeof(float));
        e->pooled = pooled ? malloc((size_t)tc->pooled_dim * sizeof(float)) : NULL;
        if (!e->context || (pooled && !e->pooled)) {
            s = sdw_fail(SDW_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(e->context, context + (size_t)k * e->n_tokens * D, (size_t)e->n_tokens * D * sizeof(float));
        if (pooled) memcpy(e->pooled, pooled + (size_t)k * tc->pooled_dim, (size_t)tc->pooled_dim * sizeof(float));
        if (!all_ones(q[k].w1, (size_t)target * T))
            for (int c = 0; c < target; c++)
                sdw_apply_emphasis(e->context + (size_t)c * T * D, q[k].w1 + (size_t)c * T, (int)T, (int)D);
    }
    free(all1); free(all2); free(context); free(pooled);
    return s;
}

sdw_status sdw_text_encode_prompts(sdw_backend *be, sdw_text_conditioner *tc, const char *const *prompts, int n,
                                   int min_chunks, int clip_skip, sdw_text_embedding *out)
{
    if (n < 1 || n > SDW_TEXT_MAX_PROMPTS)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%d prompts to encode at once (1 to %d)", n, SDW_TEXT_MAX_PROMPTS);
    memset(out, 0, (size_t)n * sizeof *out);
    prompt_ids q[SDW_TEXT_MAX_PROMPTS] = { 0 };
    sdw_status s = SDW_OK;
    /* Both SDXL tokenizations, and all the prompts, get the same chunk count ('!' splits differently). */
    int target = min_chunks;
    for (int k = 0; k < n && s == SDW_OK; k++) {
        s = tokenize(tc, prompts[k], &q[k]);
        target = q[k].n1 > target ? q[k].n1 : target;
        target = q[k].n2 > target ? q[k].n2 : target;
    }
    if (s == SDW_OK) s = encode_padded(be, tc, q, n, target, clip_skip, out);
    for (int k = 0; k < n; k++) {
        prompt_ids_free(&q[k]);
        if (s != SDW_OK) sdw_text_embedding_free(&out[k]);
    }
    return s;
}

sdw_status sdw_text_encode_prompt(sdw_backend *be, sdw_text_conditioner *tc, const char *prompt, int min_chunks,
                                  int clip_skip, sdw_text_embedding *out)
{
    return sdw_text_encode_prompts(be, tc, &prompt, 1, min_chunks, clip_skip, out);
}

void sdw_text_embedding_free(sdw_text_embedding *e)
{
    free(e->context);
    free(e->pooled);
    memset(e, 0, sizeof *e);
}
