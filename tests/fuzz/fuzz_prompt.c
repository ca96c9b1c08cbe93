/* fuzz_prompt.c: libFuzzer target for the A1111 prompt syntax parser and the
 * 75-token chunking behind it. The input is the prompt (cut at its first NUL,
 * as every caller passes C strings). A failed parse must leave nothing and say
 * why; a parsed prompt must keep its promises (at least one span, LoRA tags
 * named with finite weights) and turn, with either padding, into well-formed
 * 77-id chunks that padding to one more chunk extends. */
#include "text/prompt_chunks.h"
#include "text/prompt_parse.h"
#include "text/clip_tokenizer.h"
#include "core/error.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_chunks(const int32_t *ids, const float *w, int n, sdw_pad pad)
{
    for (int c = 0; c < n; c++) {
        const int32_t *d = ids + (size_t)c * SDW_CLIP_CONTEXT;
        const float *dw = w + (size_t)c * SDW_CLIP_CONTEXT;
        if (d[0] != SDW_CLIP_BOS || dw[0] != 1.0f) abort();
        int eos = -1;
        for (int i = 1; i < SDW_CLIP_CONTEXT; i++) {
            if (d[i] < 0 || d[i] >= SDW_CLIP_VOCAB_SIZE) abort();
            if (eos < 0 && d[i] == SDW_CLIP_EOS) eos = i;
        }
        if (eos < 1) abort();
        if (pad == SDW_PAD_ZERO)
            for (int i = eos + 1; i < SDW_CLIP_CONTEXT; i++)
                if (d[i] != 0) abort();
        if (pad == SDW_PAD_EOS && d[SDW_CLIP_CONTEXT - 1] != SDW_CLIP_EOS) abort();
    }
}

static void chunk(const sdw_parsed_prompt *p, sdw_pad pad)
{
    int32_t *ids = (int32_t *)1;
    float *w = (float *)1;
    int n = -1;
    if (sdw_prompt_to_chunks(p, pad, &ids, &w, &n) != SDW_OK) {
        if (ids || w) abort();
        return;
    }
    if (n < 1 || !ids || !w) abort();
    check_chunks(ids, w, n, pad);
    int n2 = n;
    if (sdw_prompt_chunks_pad(&ids, &w, &n2, n + 1, pad) != SDW_OK) abort();
    if (n2 != n + 1) abort();
    check_chunks(ids, w, n2, pad);
    free(ids);
    free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *prompt = malloc(size + 1);
    if (!prompt) return 0;
    memcpy(prompt, data, size);
    prompt[size] = 0;
    sdw_parsed_prompt p;
    memset(&p, 0xa5, sizeof p);
    sdw_clear_error();
    if (sdw_prompt_parse(prompt, &p) != SDW_OK) {
        if (p.spans || p.n_spans || p.loras || p.n_loras) abort();
        if (!sdw_last_error()[0]) abort();
        free(prompt);
        return 0;
    }
    if (p.n_spans < 1 || !p.spans) abort();
    for (int i = 0; i < p.n_spans; i++) {
        if (!p.spans[i].text) abort();
        if (p.spans[i].is_break && p.spans[i].weight != -1.0f) abort();
    }
    if ((p.n_loras > 0) != (p.loras != NULL)) abort();
    for (int i = 0; i < p.n_loras; i++)
        if (!p.loras[i].name || !p.loras[i].name[0] || !isfinite(p.loras[i].te_weight) ||
            !isfinite(p.loras[i].unet_weight))
            abort();
    chunk(&p, SDW_PAD_EOS);
    chunk(&p, SDW_PAD_ZERO);
    sdw_parsed_prompt_free(&p);
    free(prompt);
    return 0;
}
