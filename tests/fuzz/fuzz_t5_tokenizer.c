/* fuzz_t5_tokenizer.c: libFuzzer target for the T5 tokenizer (SentencePiece
 * behind text/spm_shim.cc, its model compiled in). The input is a C string
 * (cut at the first NUL): it must fail exactly when it is not UTF-8, with a
 * message; otherwise every id must be in the vocabulary with a piece, the
 * untruncated ids must end with `</s>`, and the fixed-length ids (a length
 * taken from the first byte, and 512) must be those ids cut and padded by
 * the rule in t5_tokenizer.h. */
#include "text/t5_tokenizer.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool valid_utf8(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
        if (k <= 0) return false;
        i += (size_t)k;
    }
    return true;
}

/* ids[0..L) against the untruncated e[0..n), by transformers' rule: the
 * pieces (e without the `</s>` the tokenizer appended; a prompt ending in the
 * literal text `</s>` ends e with two of them and had none appended) are cut
 * to L - 1, then `</s>` is added unless they already end with it, then
 * `<pad>`. (So a prompt whose literal `</s>`s make it exactly L long still
 * loses one piece: the room for `</s>` is kept whether or not it is used.) */
static void check_fixed(const char *text, int L, const int32_t *e, int n)
{
    int32_t *ids = malloc((size_t)L * sizeof *ids);
    if (!ids) return;
    int got_n = -1;
    if (sdw_t5_tokenize(text, L, ids, &got_n) != SDW_OK || got_n != n) abort();
    const int pieces = n >= 2 && e[n - 2] == SDW_T5_EOS ? n : n - 1;
    const int keep = pieces < L - 1 ? pieces : L - 1;
    int k = 0;
    for (; k < keep; k++)
        if (ids[k] != e[k]) abort();
    if (!(keep > 0 && e[keep - 1] == SDW_T5_EOS) && ids[k++] != SDW_T5_EOS) abort();
    for (; k < L; k++)
        if (ids[k] != SDW_T5_PAD) abort();
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    bool valid = valid_utf8(text);
    int32_t *e = NULL;
    int n = 0;
    sdw_clear_error();
    sdw_status s = sdw_t5_tokenize_all(text, &e, &n);
    if (s != SDW_OK) {
        /* allocation failures aside, only bad UTF-8 fails, with a message */
        if ((valid && s != SDW_ERR_NOMEM) || !sdw_last_error()[0] || e) abort();
        free(text);
        return 0;
    }
    if (!valid || n < 1 || e[n - 1] != SDW_T5_EOS) abort();
    for (int i = 0; i < n; i++)
        if (e[i] < 0 || e[i] >= SDW_T5_VOCAB_SIZE || !sdw_t5_piece(e[i])) abort();
    check_fixed(text, size ? 1 + data[0] % 80 : 1, e, n);
    check_fixed(text, SDW_T5_MAX_LENGTH_DEV, e, n);
    free(e);
    free(text);
    return 0;
}
