/* t5_tokenizer.c: the T5 tokenizer (t5_tokenizer.h) as transformers' slow
 * T5Tokenizer runs it with legacy=True (the one BFL's FLUX code uses):
 *
 *   1. the added tokens (`</s>`, `<pad>`, `<unk>`, `<extra_id_0..99>`) are cut
 *      out of the raw text, leftmost first (their trie; no token is a prefix
 *      of another, so a plain scan finds the same cuts);
 *   2. the sentinels `<extra_id_N>` are AddedTokens with lstrip and rstrip:
 *      the text right before one loses its trailing whitespace and the text
 *      right after it its leading whitespace, Python's str.isspace() set;
 *   3. each remaining piece of text is encoded by SentencePiece on its own;
 *   4. `</s>` is appended unless the (truncated) ids already end with one
 *      (T5Tokenizer._add_eos_if_not_present), then `<pad>` up to the length.
 *
 * Step 2 differs from SentencePiece's own whitespace handling only for U+0085
 * (Python strips it, nmt_nfkc keeps it as an unknown character).
 *
 * The model (data/t5-spiece.model, compiled in by tools/embed_file.c) is
 * parsed once, under pthread_once; after that nothing here writes shared
 * state, so every call is thread-safe. */
#include "text/t5_tokenizer.h"
#include "text/spm_shim.h"
#include "core/error.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

extern const unsigned char sdw_t5_spiece[];
extern const size_t sdw_t5_spiece_len;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static sdw_spm *model;                 /* NULL if loading failed */
static char load_error[256];
static char extra_pieces[SDW_T5_N_EXTRA_IDS][16];   /* "<extra_id_N>" */

static void load_model(void)
{
    sdw_spm *m = NULL;
    if (sdw_spm_load(sdw_t5_spiece, sdw_t5_spiece_len, "built-in T5 spiece.model", &m) != SDW_OK) {
        snprintf(load_error, sizeof load_error, "%s", sdw_last_error());
        return;
    }
    /* The ids below are T5's: a model with other special pieces would give
     * wrong ids silently. */
    const char *pad = sdw_spm_piece(m, SDW_T5_PAD), *eos = sdw_spm_piece(m, SDW_T5_EOS),
               *unk = sdw_spm_piece(m, SDW_T5_UNK);
    if (sdw_spm_piece_count(m) != SDW_T5_N_PIECES || strcmp(pad, "<pad>") || strcmp(eos, "</s>") ||
        strcmp(unk, "<unk>")) {
        snprintf(load_error, sizeof load_error, "built-in T5 spiece.model: %d pieces, 0-2 = %s %s %s "
                 "(expected 32000, <pad> </s> <unk>)", sdw_spm_piece_count(m), pad, eos, unk);
        sdw_spm_free(m);
        return;
    }
    for (int i = 0; i < SDW_T5_N_EXTRA_IDS; i++)
        snprintf(extra_pieces[i], sizeof extra_pieces[i], "<extra_id_%d>", i);
    model = m;
}

sdw_status sdw_t5_init(void)
{
    pthread_once(&load_once, load_model);
    return model ? SDW_OK : sdw_fail(SDW_ERR_FORMAT, "T5 tokenizer: %s", load_error);
}

const char *sdw_t5_piece(int32_t id)
{
    if (sdw_t5_init() != SDW_OK || id < 0 || id >= SDW_T5_VOCAB_SIZE) return NULL;
    if (id < SDW_T5_N_PIECES) return sdw_spm_piece(model, id);
    return extra_pieces[SDW_T5_VOCAB_SIZE - 1 - id];
}

static sdw_status check_utf8(const char *text, size_t len)
{
    for (size_t i = 0; i < len;) {
        if ((unsigned char)text[i] < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0) return sdw_fail(SDW_ERR_INVALID_ARG, "T5 tokenizer: the text is not valid UTF-8 (at byte %zu)", i);
        i += (size_t)k;
    }
    return SDW_OK;
}

/* The id of the added token that s[0..n) starts with (its length in *len),
 * or -1. Sentinels are `<extra_id_N>` with N = 0..99 written without leading
 * zeros, exactly as the tokenizer's added-token list spells them. */
static int32_t special_at(const char *s, size_t n, size_t *len)
{
    static const struct { const char *text; int32_t id; } fixed[] = {
        {"</s>", SDW_T5_EOS}, {"<pad>", SDW_T5_PAD}, {"<unk>", SDW_T5_UNK}};
    for (size_t t = 0; t < sizeof fixed / sizeof fixed[0]; t++) {
        size_t k = strlen(fixed[t].text);
        if (n >= k && !memcmp(s, fixed[t].text, k)) {
            *len = k;
            return fixed[t].id;
        }
    }
    static const char prefix[] = "<extra_id_";
    size_t k = sizeof prefix - 1, i = k;
    if (n < k + 2 || memcmp(s, prefix, k)) return -1;
    int v = 0;
    while (i < n && i < k + 3 && s[i] >= '0' && s[i] <= '9') v = v * 10 + (s[i++] - '0');
    size_t digits = i - k;
    if (digits == 0 || digits > 2 || (digits == 2 && s[k] == '0') || i >= n || s[i] != '>') return -1;
    *len = i + 1;
    return SDW_T5_VOCAB_SIZE - 1 - v;
}

/* Python's str.isspace() code points (what str.strip() removes). */
static bool py_space(utf8proc_int32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

/* The code point starting at s[0..n) (valid UTF-8, checked before) and its
 * length in bytes. */
static size_t cp_at(const char *s, size_t n, utf8proc_int32_t *c)
{
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, c);
    return k > 0 ? (size_t)k : 1;
}

static void strip_left(const char **s, size_t *n)
{
    utf8proc_int32_t c;
    size_t k;
    while (*n && (k = cp_at(*s, *n, &c)) && py_space(c)) {
        *s += k;
        *n -= k;
    }
}

static void strip_right(const char *s, size_t *n)
{
    while (*n) {
        size_t start = *n - 1;
        while (start > 0 && ((unsigned char)s[start] & 0xc0) == 0x80) start--;
        utf8proc_int32_t c;
        cp_at(s + start, *n - start, &c);
        if (!py_space(c)) return;
        *n = start;
    }
}

typedef struct {
    int32_t *v;
    int n, cap;
} id_buf;

static sdw_status push(id_buf *b, int32_t id)
{
    if (b->n == b->cap) {
        if (b->cap > (1 << 29)) return sdw_fail(SDW_ERR_NOMEM, "T5 tokenizer: too many ids");
        int cap = b->cap ? 2 * b->cap : 64;
        int32_t *v = realloc(b->v, (size_t)cap * sizeof *v);
        if (!v) return sdw_fail(SDW_ERR_NOMEM, "T5 tokenizer: out of memory for %d ids", cap);
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = id;
    return SDW_OK;
}

/* The text between two added tokens, stripped where a sentinel sits next to
 * it, through SentencePiece. */
static sdw_status encode_chunk(const char *s, size_t n, bool after_sentinel, bool before_sentinel, id_buf *b)
{
    if (after_sentinel) strip_left(&s, &n);
    if (before_sentinel) strip_right(s, &n);
    if (!n) return SDW_OK;
    return sdw_spm_encode(model, s, n, &b->v, &b->n, &b->cap);
}

/* Steps 1-3: the ids of text, without the final `</s>`. */
static sdw_status encode_pieces(const char *text, id_buf *b)
{
    if (!text) return sdw_fail(SDW_ERR_INVALID_ARG, "T5 tokenizer: no text");
    size_t len = strlen(text);
    SDW_TRY(check_utf8(text, len));
    SDW_TRY(sdw_t5_init());
    size_t start = 0;
    bool after_sentinel = false;
    for (size_t i = 0; i < len; i++) {
        size_t tok_len;
        int32_t id;
        if (text[i] != '<' || (id = special_at(text + i, len - i, &tok_len)) < 0) continue;
        bool sentinel = id >= SDW_T5_N_PIECES;
        SDW_TRY(encode_chunk(text + start, i - start, after_sentinel, sentinel, b));
        SDW_TRY(push(b, id));
        start = i + tok_len;
        i = start - 1;
        after_sentinel = sentinel;
    }
    return encode_chunk(text + start, len - start, after_sentinel, false, b);
}

static bool ends_with_eos(const int32_t *ids, int n)
{
    return n > 0 && ids[n - 1] == SDW_T5_EOS;
}

sdw_status sdw_t5_tokenize_all(const char *text, int32_t **ids, int *n)
{
    *ids = NULL;
    *n = 0;
    id_buf b = {0};
    sdw_status s = encode_pieces(text, &b);
    if (s == SDW_OK && !ends_with_eos(b.v, b.n)) s = push(&b, SDW_T5_EOS);
    if (s != SDW_OK) {
        free(b.v);
        return s;
    }
    *ids = b.v;
    *n = b.n;
    return SDW_OK;
}

sdw_status sdw_t5_tokenize(const char *text, int max_length, int32_t *ids, int *n_untruncated)
{
    if (max_length < 1) return sdw_fail(SDW_ERR_INVALID_ARG, "T5 tokenizer: max_length %d < 1", max_length);
    if (!ids) return sdw_fail(SDW_ERR_INVALID_ARG, "T5 tokenizer: no output buffer");
    id_buf b = {0};
    sdw_status s = encode_pieces(text, &b);
    if (s != SDW_OK) {
        free(b.v);
        return s;
    }
    if (n_untruncated) *n_untruncated = b.n + !ends_with_eos(b.v, b.n);
    /* transformers truncates to max_length - 1 (room for `</s>`), then adds
     * `</s>` only if the kept ids do not already end with one. */
    int keep = b.n < max_length - 1 ? b.n : max_length - 1, k = keep;
    if (keep) memcpy(ids, b.v, (size_t)keep * sizeof *ids);
    if (!ends_with_eos(ids, keep)) ids[k++] = SDW_T5_EOS;
    for (; k < max_length; k++) ids[k] = SDW_T5_PAD;
    free(b.v);
    return SDW_OK;
}
