/* fuzz_clip_tokenizer.c: libFuzzer target for the CLIP tokenizer (its
 * vocabulary and merges are compiled in). The input is tokenized as raw bytes
 * with and without "!" as a special token, and as a C string through the
 * public 77-id sdw_tokenize. Text that is not UTF-8 must fail with a message;
 * every id that comes out must be in the vocabulary, and its text must map
 * back to it. */
#include "text/clip_tokenizer.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void encode(const char *text, size_t n, bool bang)
{
    sdw_id_list l = {0};
    sdw_clear_error();
    if (sdw_clip_encode(text, n, bang, &l) != SDW_OK) {
        if (!sdw_last_error()[0]) abort();
        sdw_id_list_free(&l);
        return;
    }
    if (l.n < 0 || l.n > l.cap || (l.n && !l.v)) abort();
    for (int i = 0; i < l.n; i++) {
        int32_t id = l.v[i];
        if (id < 0 || id >= SDW_CLIP_VOCAB_SIZE) abort();
        const char *t = sdw_clip_token_text(id);
        if (!t || sdw_clip_token_id(t) != id) abort();
    }
    sdw_id_list_free(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    encode(text, size, false);
    encode(text, size, true);
    int32_t ids[SDW_CLIP_CONTEXT];
    int n = -1;
    for (int pad = SDW_PAD_EOS; pad <= SDW_PAD_ZERO; pad++) {
        if (sdw_tokenize(text, (sdw_pad)pad, ids, &n) != SDW_OK) continue;
        if (ids[0] != SDW_CLIP_BOS || n < 0) abort();
        int k = n < 75 ? n : 75;
        if (ids[k + 1] != SDW_CLIP_EOS) abort();
        for (int i = k + 2; i < SDW_CLIP_CONTEXT; i++)
            if (ids[i] != (pad == SDW_PAD_EOS ? SDW_CLIP_EOS : 0)) abort();
    }
    sdw_clip_token_id(text);
    free(text);
    return 0;
}
