/* prompt_chunks.c: see prompt_chunks.h. The loop in sdw_prompt_to_chunks is
 * tokenize_line's, statement for statement (without textual inversion). */
#include "text/prompt_chunks.h"
#include "core/error.h"
#include "text/clip_tokenizer.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t *ids;                       /* finished chunks, SDW_CLIP_CONTEXT each */
    float *w;
    int n, cap;
    int32_t cur[SDW_CHUNK_TOKENS];      /* the chunk being filled */
    float cur_w[SDW_CHUNK_TOKENS];
    int cur_n;
    int last_comma;                     /* index in cur of the last comma, -1 none */
    sdw_pad pad;
} builder;

static sdw_status nomem(void) { return sdw_fail(SDW_ERR_NOMEM, "prompt chunks: out of memory"); }

static sdw_status reserve_chunks(int32_t **ids, float **w, int *cap, int need)
{
    if (need <= *cap) return SDW_OK;
    int c = *cap ? *cap : 2;
    while (c < need) c *= 2;
    int32_t *a = realloc(*ids, (size_t)c * SDW_CLIP_CONTEXT * sizeof *a);
    if (!a) return nomem();
    *ids = a;
    float *b = realloc(*w, (size_t)c * SDW_CLIP_CONTEXT * sizeof *b);
    if (!b) return nomem();
    *w = b;
    *cap = c;
    return SDW_OK;
}

/* Writes BOS, tokens[0..n), EOS padding to 76, EOS; then A1111's SD2 rule:
 * with zero padding everything after the first EOS becomes 0. */
static void write_chunk(int32_t *d, float *dw, const int32_t *tokens, const float *tw, int n, sdw_pad pad)
{
    d[0] = SDW_CLIP_BOS;
    dw[0] = 1.0f;
    for (int i = 0; i < n; i++) {
        d[1 + i] = tokens[i];
        dw[1 + i] = tw[i];
    }
    for (int i = 1 + n; i < SDW_CLIP_CONTEXT; i++) {
        d[i] = SDW_CLIP_EOS;
        dw[i] = 1.0f;
    }
    if (pad == SDW_PAD_ZERO) {
        int k = 1;
        while (d[k] != SDW_CLIP_EOS) k++;
        for (int i = k + 1; i < SDW_CLIP_CONTEXT; i++) d[i] = 0;
    }
}

static sdw_status next_chunk(builder *b)
{
    SDW_TRY(reserve_chunks(&b->ids, &b->w, &b->cap, b->n + 1));
    write_chunk(b->ids + (size_t)b->n * SDW_CLIP_CONTEXT, b->w + (size_t)b->n * SDW_CLIP_CONTEXT, b->cur, b->cur_w,
                b->cur_n, b->pad);
    b->n++;
    b->cur_n = 0;
    b->last_comma = -1;
    return SDW_OK;
}

static sdw_status add_tokens(builder *b, const int32_t *tokens, int n, float weight)
{
    for (int pos = 0; pos < n; pos++) {
        int32_t token = tokens[pos];
        if (token == SDW_CLIP_COMMA) {
            b->last_comma = b->cur_n;
        } else if (b->cur_n == SDW_CHUNK_TOKENS && b->last_comma != -1 &&
                   b->cur_n - b->last_comma <= SDW_COMMA_BACKTRACK) {
            /* the tokens after the comma move on to the next chunk */
            int brk = b->last_comma + 1, n_reloc = b->cur_n - brk;
            int32_t reloc[SDW_CHUNK_TOKENS];
            float reloc_w[SDW_CHUNK_TOKENS];
            memcpy(reloc, b->cur + brk, (size_t)n_reloc * sizeof *reloc);
            memcpy(reloc_w, b->cur_w + brk, (size_t)n_reloc * sizeof *reloc_w);
            b->cur_n = brk;
            SDW_TRY(next_chunk(b));
            memcpy(b->cur, reloc, (size_t)n_reloc * sizeof *reloc);
            memcpy(b->cur_w, reloc_w, (size_t)n_reloc * sizeof *reloc_w);
            b->cur_n = n_reloc;
        }
        if (b->cur_n == SDW_CHUNK_TOKENS) SDW_TRY(next_chunk(b));
        b->cur[b->cur_n] = token;
        b->cur_w[b->cur_n] = weight;
        b->cur_n++;
    }
    return SDW_OK;
}

static sdw_status build(builder *b, const sdw_parsed_prompt *p)
{
    sdw_id_list toks = {0};
    sdw_status st = SDW_OK;
    for (int s = 0; s < p->n_spans && st == SDW_OK; s++) {
        const sdw_prompt_span *span = &p->spans[s];
        if (span->is_break) {
            st = next_chunk(b);
            continue;
        }
        toks.n = 0;
        st = sdw_clip_encode(span->text, strlen(span->text), b->pad == SDW_PAD_ZERO, &toks);
        if (st == SDW_OK) st = add_tokens(b, toks.v, toks.n, span->weight);
    }
    sdw_id_list_free(&toks);
    if (st == SDW_OK && (b->cur_n > 0 || b->n == 0)) st = next_chunk(b);
    return st;
}

sdw_status sdw_prompt_to_chunks(const sdw_parsed_prompt *p, sdw_pad pad, int32_t **ids, float **weights,
                                int *n_chunks)
{
    if (!p || !ids || !weights || !n_chunks || (p->n_spans > 0 && !p->spans))
        return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_prompt_to_chunks: NULL argument");
    if (pad != SDW_PAD_EOS && pad != SDW_PAD_ZERO) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_prompt_to_chunks: bad pad mode");
    *ids = NULL;
    *weights = NULL;
    *n_chunks = 0;
    builder b = { .last_comma = -1, .pad = pad };
    sdw_status st = build(&b, p);
    if (st != SDW_OK) {
        free(b.ids);
        free(b.w);
        return st;
    }
    *ids = b.ids;
    *weights = b.w;
    *n_chunks = b.n;
    return SDW_OK;
}

sdw_status sdw_prompt_chunks_pad(int32_t **ids, float **weights, int *n_chunks, int target, sdw_pad pad)
{
    if (!ids || !weights || !n_chunks || *n_chunks < 0) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_prompt_chunks_pad: bad argument");
    if (pad != SDW_PAD_EOS && pad != SDW_PAD_ZERO) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_prompt_chunks_pad: bad pad mode");
    if (target <= *n_chunks) return SDW_OK;
    int cap = *n_chunks;
    SDW_TRY(reserve_chunks(ids, weights, &cap, target));
    for (int c = *n_chunks; c < target; c++)
        write_chunk(*ids + (size_t)c * SDW_CLIP_CONTEXT, *weights + (size_t)c * SDW_CLIP_CONTEXT, NULL, NULL, 0, pad);
    *n_chunks = target;
    return SDW_OK;
}
