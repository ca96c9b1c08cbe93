/* clip_tokenizer.c: the CLIP BPE tokenizer (see clip_tokenizer.h for what it
 * reproduces). The vocabulary is derived from the compiled-in merges exactly
 * as openai/CLIP's simple_tokenizer.py does: ids 0..255 are the GPT-2
 * bytes_to_unicode characters in that function's order, 256..511 the same with
 * "</w>", 512 + k the concatenation of merge k, then <|startoftext|> and
 * <|endoftext|>. Because every merge's halves were created by earlier merges,
 * a BPE symbol is always a vocabulary entry, so BPE runs on ids: pair (a, b)
 * with rank k merges into id 512 + k.
 *
 * Unicode handling uses utf8proc (categories, simple case mapping, NFC) and
 * PCRE2 (the CLIP regex, UTF + UCP); the few places where Python's semantics
 * go beyond those (full lower-casing of U+0130, final sigma) are spelled out. */
#include "text/clip_tokenizer.h"
#include "core/error.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

extern const unsigned char sdw_clip_merges[];
extern const size_t sdw_clip_merges_len;

enum { N_MERGES = 48894, FIRST_MERGE = 512, CHUNK_TOKENS = 75 };
#define TOKEN_SLOTS (1u << 17)   /* power of two, > 2x the vocabulary */
#define PAIR_SLOTS (1u << 17)

static const char BOS_TEXT[] = "<|startoftext|>";
static const char EOS_TEXT[] = "<|endoftext|>";

/* transformers' CLIPTokenizer pattern; compiled UTF + UCP + CASELESS (it uses
 * regex.IGNORECASE). */
static const char CLIP_PATTERN[] =
    "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|"
    "[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

static struct {
    char *strings;                                /* vocab strings, NUL-terminated, in id order */
    uint32_t offset[SDW_CLIP_VOCAB_SIZE + 1];     /* start of each string; [VOCAB] = end */
    int32_t byte_id[256];                         /* byte -> id of its bytes_to_unicode char */
    int32_t *token_slot;                          /* hash(string) -> id, -1 = empty */
    uint64_t *pair_key;                           /* ((a << 32) | b) + 1, 0 = empty */
    int32_t *pair_rank;
    pcre2_code *pattern;
    sdw_status status;
    char error[256];
} V;
static pthread_once_t init_once_flag = PTHREAD_ONCE_INIT;

/* ---- growable buffers ---- */

/* Grows the array whose pointer is at ptr_addr (any T **) to hold need
 * elements; the pointer is read and written with memcpy so that no T ** is
 * accessed as a void **. */
static bool grow(void *ptr_addr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *p;
    memcpy(&p, ptr_addr, sizeof p);
    void *q = realloc(p, c * elem);
    if (!q) return false;
    memcpy(ptr_addr, &q, sizeof q);
    *cap = c;
    return true;
}

sdw_status sdw_id_list_push(sdw_id_list *l, int32_t id)
{
    if (l->n == l->cap) {
        size_t cap = (size_t)l->cap;
        if (l->n >= (1 << 28) || !grow(&l->v, &cap, (size_t)l->n + 1, sizeof *l->v))
            return sdw_fail(SDW_ERR_NOMEM, "token list: out of memory");
        l->cap = (int)cap;
    }
    l->v[l->n++] = id;
    return SDW_OK;
}

void sdw_id_list_free(sdw_id_list *l)
{
    free(l->v);
    *l = (sdw_id_list){0};
}

/* ---- vocabulary tables ---- */

static uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u;   /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static size_t token_len(int32_t id) { return V.offset[id + 1] - V.offset[id] - 1; }

static int32_t token_find(const char *s, size_t n)
{
    for (uint32_t i = hash_bytes(s, n) & (TOKEN_SLOTS - 1);; i = (i + 1) & (TOKEN_SLOTS - 1)) {
        int32_t id = V.token_slot[i];
        if (id < 0) return -1;
        if (token_len(id) == n && !memcmp(V.strings + V.offset[id], s, n)) return id;
    }
}

static bool token_insert(int32_t id)
{
    const char *s = V.strings + V.offset[id];
    size_t n = token_len(id);
    uint32_t i = hash_bytes(s, n) & (TOKEN_SLOTS - 1);
    for (; V.token_slot[i] >= 0; i = (i + 1) & (TOKEN_SLOTS - 1))
        if (token_len(V.token_slot[i]) == n && !memcmp(V.strings + V.offset[V.token_slot[i]], s, n))
            return false;   /* duplicate string: the vocabulary would not be a bijection */
    V.token_slot[i] = id;
    return true;
}

static uint32_t pair_slot(uint64_t key) { return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 40) & (PAIR_SLOTS - 1); }

static void pair_insert(int32_t a, int32_t b, int32_t rank)
{
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = pair_slot(key);
    while (V.pair_key[i]) i = (i + 1) & (PAIR_SLOTS - 1);
    V.pair_key[i] = key;
    V.pair_rank[i] = rank;
}

static int32_t pair_find(int32_t a, int32_t b)
{
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    for (uint32_t i = pair_slot(key); V.pair_key[i]; i = (i + 1) & (PAIR_SLOTS - 1))
        if (V.pair_key[i] == key) return V.pair_rank[i];
    return -1;
}

static sdw_status init_fail(sdw_status s, const char *msg)
{
    snprintf(V.error, sizeof V.error, "CLIP tokenizer: %s", msg);
    return s;
}

/* Appends the next vocabulary string (id = count so far). */
static void put_string(size_t *pos, int32_t id, const char *a, size_t na, const char *b, size_t nb)
{
    V.offset[id] = (uint32_t)*pos;
    memcpy(V.strings + *pos, a, na);
    memcpy(V.strings + *pos + na, b, nb);
    *pos += na + nb;
    V.strings[(*pos)++] = 0;
    V.offset[id + 1] = (uint32_t)*pos;
}

static sdw_status build_tables(void)
{
    size_t cap = sdw_clip_merges_len + 256 * 3 + 256 * 7 + sizeof BOS_TEXT + sizeof EOS_TEXT;
    V.strings = malloc(cap);
    V.token_slot = malloc(TOKEN_SLOTS * sizeof *V.token_slot);
    V.pair_key = calloc(PAIR_SLOTS, sizeof *V.pair_key);
    V.pair_rank = malloc(PAIR_SLOTS * sizeof *V.pair_rank);
    if (!V.strings || !V.token_slot || !V.pair_key || !V.pair_rank) return init_fail(SDW_ERR_NOMEM, "out of memory");
    memset(V.token_slot, 0xff, TOKEN_SLOTS * sizeof *V.token_slot);

    /* GPT-2 bytes_to_unicode: printable bytes map to themselves, in byte
     * order, then the others to U+0100.. in byte order. */
    char chars[256][3];
    size_t char_len[256];
    int n = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int b = 0, extra = 0; b < 256; b++) {
            bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
            if (printable != (pass == 0)) continue;
            uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)extra++;
            V.byte_id[b] = n;
            char_len[n] = (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)chars[n]);
            n++;
        }
    }
    size_t pos = 0;
    for (int i = 0; i < 256; i++) put_string(&pos, i, chars[i], char_len[i], "", 0);
    for (int i = 0; i < 256; i++) put_string(&pos, 256 + i, chars[i], char_len[i], "</w>", 4);
    for (int i = 0; i < FIRST_MERGE; i++)
        if (!token_insert(i)) return init_fail(SDW_ERR_FORMAT, "duplicate byte symbol");

    const char *p = (const char *)sdw_clip_merges, *end = p + sdw_clip_merges_len;
    if (end - p >= 8 && !memcmp(p, "#version", 8)) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    int k = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *line_end = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
        if (line_end > p) {
            const char *sp = memchr(p, ' ', (size_t)(line_end - p));
            if (!sp || k >= N_MERGES) return init_fail(SDW_ERR_FORMAT, "malformed merges data");
            /* Looking the halves up among the ids made so far also checks that
             * every merge only uses earlier symbols, which BPE-on-ids relies on. */
            int32_t a = token_find(p, (size_t)(sp - p));
            int32_t b = token_find(sp + 1, (size_t)(line_end - sp - 1));
            if (a < 0 || b < 0) return init_fail(SDW_ERR_FORMAT, "a merge uses a symbol not made before it");
            int32_t id = FIRST_MERGE + k;
            put_string(&pos, id, p, (size_t)(sp - p), sp + 1, (size_t)(line_end - sp - 1));
            if (!token_insert(id)) return init_fail(SDW_ERR_FORMAT, "two merges make the same token");
            pair_insert(a, b, k);
            k++;
        }
        p = eol + 1;
    }
    if (k != N_MERGES) return init_fail(SDW_ERR_FORMAT, "wrong number of merges");
    put_string(&pos, SDW_CLIP_BOS, BOS_TEXT, sizeof BOS_TEXT - 1, "", 0);
    put_string(&pos, SDW_CLIP_EOS, EOS_TEXT, sizeof EOS_TEXT - 1, "", 0);
    if (!token_insert(SDW_CLIP_BOS) || !token_insert(SDW_CLIP_EOS))
        return init_fail(SDW_ERR_FORMAT, "special token clashes with a merge");

    int err;
    PCRE2_SIZE err_off;
    V.pattern = pcre2_compile((PCRE2_SPTR)CLIP_PATTERN, PCRE2_ZERO_TERMINATED,
                              PCRE2_UTF | PCRE2_UCP | PCRE2_CASELESS, &err, &err_off, NULL);
    if (!V.pattern) return init_fail(SDW_ERR_UNSUPPORTED, "PCRE2 rejected the CLIP pattern");
    pcre2_jit_compile(V.pattern, PCRE2_JIT_COMPLETE);   /* optional: falls back to the interpreter */
    return SDW_OK;
}

static void init_once(void) { V.status = build_tables(); }

sdw_status sdw_clip_init(void)
{
    pthread_once(&init_once_flag, init_once);
    if (V.status != SDW_OK) return sdw_fail(V.status, "%s", V.error);
    return SDW_OK;
}

const char *sdw_clip_token_text(int32_t id)
{
    if (id < 0 || id >= SDW_CLIP_VOCAB_SIZE || sdw_clip_init() != SDW_OK) return NULL;
    return V.strings + V.offset[id];
}

int32_t sdw_clip_token_id(const char *token)
{
    if (!token || sdw_clip_init() != SDW_OK) return -1;
    return token_find(token, strlen(token));
}

/* ---- per-call scratch ---- */

typedef struct { int32_t rank, pos; } heap_item;

typedef struct {
    uint32_t *cp;            /* code points */
    size_t n_cp, cap_cp;
    char *s;                 /* UTF-8 text */
    size_t n_s, cap_s;
    int32_t *sym, *prev, *next;
    size_t cap_sym;
    heap_item *heap;
    size_t n_heap, cap_heap;
    pcre2_match_data *md;
} scratch;

static void scratch_free(scratch *w)
{
    free(w->cp);
    free(w->s);
    free(w->sym);
    free(w->prev);
    free(w->next);
    free(w->heap);
    pcre2_match_data_free(w->md);
}

static bool put_cp(scratch *w, uint32_t c)
{
    if (!grow(&w->s, &w->cap_s, w->n_s + 4, 1)) return false;
    w->n_s += (size_t)utf8proc_encode_char((utf8proc_int32_t)c, (utf8proc_uint8_t *)w->s + w->n_s);
    return true;
}

static sdw_status nomem(void) { return sdw_fail(SDW_ERR_NOMEM, "tokenizer: out of memory"); }

/* ---- BasicTokenizer(do_lower_case, tokenize_chinese_chars, strip_accents=False,
 * do_split_on_punc=False), Python semantics ---- */

static bool is_control(uint32_t c)   /* _is_control: category C*, but not \t \n \r */
{
    if (c == '\t' || c == '\n' || c == '\r') return false;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_CN || k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF ||
           k == UTF8PROC_CATEGORY_CS || k == UTF8PROC_CATEGORY_CO;
}

static bool is_bt_whitespace(uint32_t c)   /* _is_whitespace */
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
           utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ZS;
}

static bool is_py_space(uint32_t c)   /* str.isspace(), what str.split() splits on */
{
    return (c >= 9 && c <= 13) || (c >= 28 && c <= 32) || c == 0x85 || c == 0x2028 || c == 0x2029 ||
           utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ZS;
}

static bool is_cjk(uint32_t c)   /* _is_chinese_char */
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Unicode Case_Ignorable: Mn Me Cf Lm Sk and Word_Break MidLetter, MidNumLet,
 * Single_Quote. */
static bool is_case_ignorable(uint32_t c)
{
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_SK:
        return true;
    default:
        break;
    }
    static const uint32_t mid[] = { 0x27, 0x2E, 0x3A, 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019,
                                    0x2024, 0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A };
    for (size_t i = 0; i < sizeof mid / sizeof mid[0]; i++)
        if (c == mid[i]) return true;
    return false;
}

/* Unicode Cased: Lu Ll Lt, anything with a case mapping, and the few
 * Other_Lowercase / Other_Uppercase characters that are neither (modifier
 * letters are left out: they are case-ignorable, which is checked first). */
static bool is_cased(uint32_t c)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT) return true;
    if ((uint32_t)utf8proc_tolower((utf8proc_int32_t)c) != c || (uint32_t)utf8proc_toupper((utf8proc_int32_t)c) != c)
        return true;
    return c == 0xAA || c == 0xBA || (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
           (c >= 0x1F170 && c <= 0x1F189);
}

/* CPython's handle_capital_sigma: U+03A3 lower-cases to final sigma U+03C2 when
 * preceded by a cased letter and not followed by one (case-ignorables skipped). */
static bool final_sigma(const uint32_t *w, size_t n, size_t i)
{
    size_t j = i;
    uint32_t c = 0;
    bool found = false;
    while (j > 0) {
        c = w[--j];
        if (!is_case_ignorable(c)) { found = true; break; }
    }
    if (!found || !is_cased(c)) return false;
    for (j = i + 1; j < n; j++) {
        c = w[j];
        if (!is_case_ignorable(c)) return !is_cased(c);
    }
    return true;
}

/* Python str.lower() of one word: simple lower-case mapping except the one
 * unconditional multi-character mapping (U+0130) and final sigma. */
static bool put_lower(scratch *w, const uint32_t *word, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t c = word[i];
        bool ok;
        if (c == 0x130) ok = put_cp(w, 'i') && put_cp(w, 0x307);
        else if (c == 0x3A3) ok = put_cp(w, final_sigma(word, n, i) ? 0x3C2 : 0x3C3);
        else ok = put_cp(w, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c));
        if (!ok) return false;
    }
    return true;
}

static bool push_cp(scratch *w, uint32_t c)
{
    if (!grow(&w->cp, &w->cap_cp, w->n_cp + 1, sizeof *w->cp)) return false;
    w->cp[w->n_cp++] = c;
    return true;
}

/* The same steps for ASCII text (most prompts), without Unicode tables:
 * C0 controls and DEL are dropped, \t \n \r are spaces, NFC is the identity
 * and lower-casing is A-Z only. */
static sdw_status basic_normalize_ascii(scratch *w, const char *text, size_t len)
{
    if (!grow(&w->s, &w->cap_s, len + 1, 1)) return nomem();
    w->n_s = 0;
    bool space = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            space = true;
            continue;
        }
        if ((unsigned char)c < 0x20 || c == 0x7f) continue;
        if (space && w->n_s) w->s[w->n_s++] = ' ';
        space = false;
        w->s[w->n_s++] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
    }
    return SDW_OK;
}

/* BasicTokenizer.tokenize(text), joined with single spaces, into w->s. */
static sdw_status basic_normalize(scratch *w, const char *text, size_t len)
{
    size_t k = 0;
    while (k < len && (unsigned char)text[k] < 0x80) k++;
    if (k == len) return basic_normalize_ascii(w, text, len);

    /* _clean_text and _tokenize_chinese_chars, into code points */
    w->n_cp = 0;
    uint32_t max_cp = 0;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t c;
        i += (size_t)utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &c);
        uint32_t u = (uint32_t)c;
        if (u == 0 || u == 0xFFFD || is_control(u)) continue;
        if (is_bt_whitespace(u)) u = ' ';
        bool ok = is_cjk(u) ? push_cp(w, ' ') && push_cp(w, u) && push_cp(w, ' ') : push_cp(w, u);
        if (!ok) return nomem();
        if (u > max_cp) max_cp = u;
    }

    /* NFC; text below U+0300 (where the first combining marks are) is
     * already NFC */
    if (max_cp >= 0x300) {
        w->n_s = 0;
        for (size_t i = 0; i < w->n_cp; i++)
            if (!put_cp(w, w->cp[i])) return nomem();
        utf8proc_uint8_t *nfc = NULL;
        utf8proc_ssize_t n_nfc = utf8proc_map((const utf8proc_uint8_t *)w->s, (utf8proc_ssize_t)w->n_s, &nfc,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (n_nfc < 0) return sdw_fail(SDW_ERR_INVALID_ARG, "tokenizer: NFC failed: %s", utf8proc_errmsg(n_nfc));
        w->n_cp = 0;
        for (utf8proc_ssize_t i = 0; i < n_nfc;) {
            utf8proc_int32_t c;
            utf8proc_ssize_t step = utf8proc_iterate(nfc + i, n_nfc - i, &c);
            if (step <= 0) break;
            i += step;
            if (!push_cp(w, (uint32_t)c)) {
                free(nfc);
                return nomem();
            }
        }
        free(nfc);
    }

    /* whitespace_tokenize, then str.lower() on each word */
    w->n_s = 0;
    for (size_t i = 0; i < w->n_cp;) {
        while (i < w->n_cp && is_py_space(w->cp[i])) i++;
        if (i == w->n_cp) break;
        size_t j = i;
        while (j < w->n_cp && !is_py_space(w->cp[j])) j++;
        if ((w->n_s && !put_cp(w, ' ')) || !put_lower(w, w->cp + i, j - i)) return nomem();
        i = j;
    }
    return SDW_OK;
}

/* ---- byte-level BPE on ids ---- */

static bool heap_less(heap_item a, heap_item b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(scratch *w, int32_t rank, int32_t pos)
{
    size_t i = w->n_heap++;
    w->heap[i] = (heap_item){ rank, pos };
    while (i > 0 && heap_less(w->heap[i], w->heap[(i - 1) / 2])) {
        heap_item t = w->heap[i];
        w->heap[i] = w->heap[(i - 1) / 2];
        w->heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static heap_item heap_pop(scratch *w)
{
    heap_item top = w->heap[0];
    w->heap[0] = w->heap[--w->n_heap];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->n_heap && heap_less(w->heap[l], w->heap[m])) m = l;
        if (r < w->n_heap && heap_less(w->heap[r], w->heap[m])) m = r;
        if (m == i) break;
        heap_item t = w->heap[i];
        w->heap[i] = w->heap[m];
        w->heap[m] = t;
        i = m;
    }
    return top;
}

/* Merging the lowest-ranked pair first, leftmost first among equals, gives the
 * same result as CLIP's loop (merge every occurrence of the best pair, left to
 * right): a pair that involves a freshly merged symbol always ranks after the
 * merge that made it. O(n log n), so a pathological 100k-letter word is fine. */
static sdw_status bpe(scratch *w, const unsigned char *p, size_t n, sdw_id_list *out)
{
    if (n > (size_t)INT32_MAX / 4) return sdw_fail(SDW_ERR_NOMEM, "tokenizer: a %zu-byte word is too long", n);
    if (n > w->cap_sym) {
        size_t c1 = w->cap_sym, c2 = w->cap_sym, c3 = w->cap_sym;
        bool ok = grow(&w->sym, &c1, n, sizeof *w->sym) && grow(&w->prev, &c2, n, sizeof *w->prev) &&
                  grow(&w->next, &c3, n, sizeof *w->next);
        if (!ok) return nomem();   /* the arrays that did grow stay valid; cap_sym is the old, safe bound */
        w->cap_sym = c1;           /* all three grew to the same capacity */
    }
    if (!grow(&w->heap, &w->cap_heap, 3 * n, sizeof *w->heap)) return nomem();
    int32_t m = (int32_t)n;
    for (int32_t i = 0; i < m; i++) {
        w->sym[i] = V.byte_id[p[i]];
        w->prev[i] = i - 1;
        w->next[i] = i + 1;
    }
    w->sym[m - 1] += 256;   /* the last symbol carries "</w>" */
    w->n_heap = 0;
    for (int32_t i = 0; i + 1 < m; i++) {
        int32_t r = pair_find(w->sym[i], w->sym[i + 1]);
        if (r >= 0) heap_push(w, r, i);
    }
    while (w->n_heap) {
        heap_item it = heap_pop(w);
        int32_t i = it.pos, j = w->next[i];
        if (w->sym[i] < 0 || j >= m || pair_find(w->sym[i], w->sym[j]) != it.rank) continue;   /* stale */
        w->sym[i] = FIRST_MERGE + it.rank;
        w->sym[j] = -1;
        w->next[i] = w->next[j];
        if (w->next[i] < m) w->prev[w->next[i]] = i;
        int32_t r;
        if (w->prev[i] >= 0 && (r = pair_find(w->sym[w->prev[i]], w->sym[i])) >= 0) heap_push(w, r, w->prev[i]);
        if (w->next[i] < m && (r = pair_find(w->sym[i], w->sym[w->next[i]])) >= 0) heap_push(w, r, i);
    }
    for (int32_t i = 0; i < m; i = w->next[i]) SDW_TRY(sdw_id_list_push(out, w->sym[i]));
    return SDW_OK;
}

/* ---- CLIPTokenizer._tokenize on one piece of text between added tokens ---- */

static sdw_status encode_segment(scratch *w, const char *text, size_t len, sdw_id_list *out)
{
    SDW_TRY(basic_normalize(w, text, len));
    const char *s = w->s;
    size_t n = w->n_s, off = 0;
    while (off < n) {
        int rc = pcre2_match(V.pattern, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, w->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return sdw_fail(SDW_ERR_INVALID_ARG, "tokenizer: regex match failed (PCRE2 error %d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        size_t a = ov[0], b = ov[1];
        if (b <= a) break;   /* every alternative consumes a character; defensive */
        /* CLIP's BPE cache maps the special strings to themselves. */
        if (b - a == sizeof BOS_TEXT - 1 && !memcmp(s + a, BOS_TEXT, b - a)) SDW_TRY(sdw_id_list_push(out, SDW_CLIP_BOS));
        else if (b - a == sizeof EOS_TEXT - 1 && !memcmp(s + a, EOS_TEXT, b - a)) SDW_TRY(sdw_id_list_push(out, SDW_CLIP_EOS));
        else SDW_TRY(bpe(w, (const unsigned char *)s + a, b - a, out));
        off = b;
    }
    return SDW_OK;
}

static sdw_status encode(scratch *w, const char *text, size_t len, bool bang_special, sdw_id_list *out)
{
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &c);
        if (k < 0) return sdw_fail(SDW_ERR_INVALID_ARG, "text is not valid UTF-8 (at byte %zu)", i);
        i += (size_t)k;
    }
    w->md = pcre2_match_data_create_from_pattern(V.pattern, NULL);
    if (!w->md) return nomem();

    /* PreTrainedTokenizer.tokenize: added tokens are cut out of the raw text
     * (case-sensitive, before any normalisation); the pieces between them are
     * tokenized independently. */
    size_t seg = 0;
    for (size_t i = 0; i < len;) {
        int32_t id = -1;
        size_t n = 0;
        if (text[i] == '<' && len - i >= sizeof BOS_TEXT - 1 && !memcmp(text + i, BOS_TEXT, sizeof BOS_TEXT - 1))
            id = SDW_CLIP_BOS, n = sizeof BOS_TEXT - 1;
        else if (text[i] == '<' && len - i >= sizeof EOS_TEXT - 1 && !memcmp(text + i, EOS_TEXT, sizeof EOS_TEXT - 1))
            id = SDW_CLIP_EOS, n = sizeof EOS_TEXT - 1;
        else if (text[i] == '!' && bang_special)
            id = 0, n = 1;
        if (id < 0) {
            i++;
            continue;
        }
        SDW_TRY(encode_segment(w, text + seg, i - seg, out));
        SDW_TRY(sdw_id_list_push(out, id));
        i += n;
        seg = i;
    }
    return encode_segment(w, text + seg, len - seg, out);
}

sdw_status sdw_clip_encode(const char *text, size_t len, bool bang_special, sdw_id_list *out)
{
    if (!text || !out) return sdw_fail(SDW_ERR_INVALID_ARG, "tokenizer: NULL argument");
    SDW_TRY(sdw_clip_init());
    scratch w = {0};
    sdw_status st = encode(&w, text, len, bang_special, out);
    scratch_free(&w);
    return st;
}

/* ---- public API (sdw.h) ---- */

sdw_status sdw_tokenize(const char *text, sdw_pad pad, int32_t ids[SDW_CLIP_CONTEXT], int *n_untruncated)
{
    if (!text || !ids) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_tokenize: NULL argument");
    if (pad != SDW_PAD_EOS && pad != SDW_PAD_ZERO) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_tokenize: bad pad mode %d", (int)pad);
    sdw_id_list l = {0};
    sdw_status st = sdw_clip_encode(text, strlen(text), pad == SDW_PAD_ZERO, &l);
    if (st != SDW_OK) {
        sdw_id_list_free(&l);
        return st;
    }
    int n = l.n < CHUNK_TOKENS ? l.n : CHUNK_TOKENS;
    ids[0] = SDW_CLIP_BOS;
    for (int i = 0; i < n; i++) ids[1 + i] = l.v[i];
    ids[n + 1] = SDW_CLIP_EOS;
    for (int i = n + 2; i < SDW_CLIP_CONTEXT; i++) ids[i] = pad == SDW_PAD_EOS ? SDW_CLIP_EOS : 0;
    if (n_untruncated) *n_untruncated = l.n;
    sdw_id_list_free(&l);
    return SDW_OK;
}

sdw_status sdw_tokenize_bpe(const char *text, int32_t **ids, int *n)
{
    if (!text || !ids || !n) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_tokenize_bpe: NULL argument");
    sdw_id_list l = {0};
    sdw_status st = sdw_clip_encode(text, strlen(text), false, &l);
    if (st == SDW_OK && !l.v) {   /* never hand back NULL */
        st = sdw_id_list_push(&l, 0);
        l.n = 0;
    }
    if (st != SDW_OK) {
        sdw_id_list_free(&l);
        return st;
    }
    *ids = l.v;
    *n = l.n;
    return SDW_OK;
}
