/* test_t5_tokenizer.c: the T5 tokenizer (FLUX / SD3) against transformers'
 * slow T5Tokenizer, legacy=True (tests/data/flux/t5_tokenizer.*: 55 prompts at
 * 512, 256 and 77 tokens), plus what those prompts do not reach: added-token
 * literals, truncation, errors, threads. */
#include "testkit.h"
#include "io/json_file.h"
#include "text/t5_tokenizer.h"
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *load_json(const char *rel)
{
    cJSON *j;
    if (sdw_json_load_file(test_data_path(rel), &j) != SDW_OK) fail_msg("%s", sdw_last_error());
    return j;
}

static void print_ids(const char *what, const int32_t *ids, int n)
{
    printf("    %s:", what);
    for (int i = 0; i < n; i++) printf(" %d", ids[i]);
    printf("\n");
}

/* One prompt at one length against ids_L / mask_L; false (and the ids
 * printed) on a mismatch. */
static bool check_length(int p, const char *text, int L, const int64_t *ref_ids, const int64_t *ref_mask,
                         int n_ref)
{
    int32_t *ids = malloc((size_t)L * sizeof *ids);
    int n = -1;
    assert_int_equal(sdw_t5_tokenize(text, L, ids, &n), SDW_OK);
    int n_real = n_ref < L ? n_ref : L;
    bool ok = n == n_ref;
    for (int i = 0; i < L; i++) ok &= ids[i] == ref_ids[i] && ref_mask[i] == (i < n_real);
    if (!ok) {
        printf("  prompt %d at %d (n %d, want %d): \"%s\"\n", p, L, n, n_ref, text);
        print_ids("got ", ids, L);
        int32_t *want = malloc((size_t)L * sizeof *want);
        for (int i = 0; i < L; i++) want[i] = (int32_t)ref_ids[i];
        print_ids("want", want, L);
        free(want);
    }
    free(ids);
    return ok;
}

/* sdw_t5_tokenize_all and sdw_t5_piece against ids_untruncated and pieces. */
static bool check_untruncated(int p, const char *text, cJSON *e)
{
    cJSON *untr = cJSON_GetObjectItem(e, "ids_untruncated"), *pieces = cJSON_GetObjectItem(e, "pieces");
    int32_t *ids = NULL;
    int n = 0;
    assert_int_equal(sdw_t5_tokenize_all(text, &ids, &n), SDW_OK);
    bool ok = n == cJSON_GetArraySize(untr) && n == cJSON_GetArraySize(pieces);
    for (int i = 0; ok && i < n; i++) {
        ok &= ids[i] == cJSON_GetArrayItem(untr, i)->valueint;
        const char *s = sdw_t5_piece(ids[i]);
        ok &= s && !strcmp(s, cJSON_GetArrayItem(pieces, i)->valuestring);
    }
    if (!ok) {
        printf("  prompt %d untruncated ids or pieces differ: \"%s\"\n", p, text);
        print_ids("got ", ids, n);
    }
    free(ids);
    return ok;
}

static void matches_transformers_reference(void **state)
{
    (void)state;
    static const int lengths[] = { 512, 256, 77 };
    cJSON *j = load_json("flux/t5_tokenizer.json");
    cJSON *prompts = cJSON_GetObjectItem(j, "prompts");
    int n_prompts = cJSON_GetArraySize(prompts);
    assert_int_equal(n_prompts, 55);
    sdw_safetensors *st = test_open_st("flux/t5_tokenizer.safetensors");
    int failures = 0, checks = 0;
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
        int L = lengths[li];
        char name[32];
        int64_t n_ids, n_mask;
        snprintf(name, sizeof name, "ids_%d", L);
        int64_t *ref = test_load_i64(st, name, &n_ids);
        snprintf(name, sizeof name, "mask_%d", L);
        int64_t *mask = test_load_i64(st, name, &n_mask);
        assert_int_equal(n_ids, (int64_t)n_prompts * L);
        assert_int_equal(n_mask, n_ids);
        for (int p = 0; p < n_prompts; p++) {
            cJSON *e = cJSON_GetArrayItem(prompts, p);
            const char *text = cJSON_GetObjectItem(e, "prompt")->valuestring;
            int n_ref = cJSON_GetObjectItem(e, "n_tokens_with_eos")->valueint;
            failures += !check_length(p, text, L, ref + (size_t)p * L, mask + (size_t)p * L, n_ref);
            checks++;
        }
        free(ref);
        free(mask);
    }
    for (int p = 0; p < n_prompts; p++) {
        cJSON *e = cJSON_GetArrayItem(prompts, p);
        failures += !check_untruncated(p, cJSON_GetObjectItem(e, "prompt")->valuestring, e);
        checks++;
    }
    printf("  %d prompts x (512, 256, 77 + untruncated): %d checks, %d mismatches\n", n_prompts, checks, failures);
    sdw_st_close(st);
    cJSON_Delete(j);
    assert_int_equal(failures, 0);
}

/* Expects text at length L to give want[0..n) then padding. */
static void expect_ids(const char *text, int L, const int32_t *want, int n, int n_untruncated)
{
    int32_t *ids = malloc((size_t)L * sizeof *ids);
    int got_n = -1;
    assert_int_equal(sdw_t5_tokenize(text, L, ids, &got_n), SDW_OK);
    bool ok = got_n == n_untruncated;
    for (int i = 0; i < L; i++) ok &= ids[i] == (i < n ? want[i] : SDW_T5_PAD);
    if (!ok) {
        printf("  \"%s\" at %d (n %d, want %d)\n", text, L, got_n, n_untruncated);
        print_ids("got ", ids, L);
        print_ids("want", want, n);
        free(ids);
        fail_msg("ids differ");
    }
    free(ids);
}

static void empty_and_short(void **state)
{
    (void)state;
    expect_ids("", 512, (const int32_t[]){ 1 }, 1, 1);
    expect_ids(" \t\n ", 8, (const int32_t[]){ 1 }, 1, 1);
    expect_ids("", 1, (const int32_t[]){ 1 }, 1, 1);
    /* max_length 1 leaves room for `</s>` only */
    expect_ids("a photo of a cat", 1, (const int32_t[]){ 1 }, 1, 8);
    expect_ids("a photo of a cat", 8, (const int32_t[]){ 3, 9, 1202, 13, 3, 9, 1712, 1 }, 8, 8);
    expect_ids("a photo of a cat", 5, (const int32_t[]){ 3, 9, 1202, 13, 1 }, 5, 8);
    int32_t *ids = NULL;
    int n = 0;
    assert_int_equal(sdw_t5_tokenize_all("", &ids, &n), SDW_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], SDW_T5_EOS);
    free(ids);
}

static void long_prompt_truncated(void **state)
{
    (void)state;
    /* 3000 x "word " = 3000 ids of "▁word" (1448) */
    size_t n_words = 3000;
    char *text = malloc(n_words * 5 + 1);
    for (size_t i = 0; i < n_words; i++) memcpy(text + 5 * i, "word ", 5);
    text[n_words * 5] = 0;
    int32_t ids[SDW_T5_MAX_LENGTH_DEV];
    int n = 0;
    assert_int_equal(sdw_t5_tokenize(text, SDW_T5_MAX_LENGTH_DEV, ids, &n), SDW_OK);
    assert_int_equal(n, (int)n_words + 1);
    for (int i = 0; i < SDW_T5_MAX_LENGTH_DEV - 1; i++) assert_int_equal(ids[i], 1448);
    assert_int_equal(ids[SDW_T5_MAX_LENGTH_DEV - 1], SDW_T5_EOS);
    free(text);
}

static void special_token_literals(void **state)
{
    (void)state;
    /* every literal is cut out of the raw text and becomes its id */
    expect_ids("<pad><unk></s>", 8, (const int32_t[]){ 0, 2, 1 }, 3, 3);
    expect_ids("<extra_id_0><extra_id_99><extra_id_9>", 8, (const int32_t[]){ 32099, 32000, 32090, 1 }, 4, 4);
    expect_ids("a<extra_id_1>b", 8, (const int32_t[]){ 3, 9, 32098, 3, 115, 1 }, 6, 6);
    /* not added tokens: SentencePiece sees the text ("<" is unknown) */
    int32_t *a = NULL, *b = NULL;
    int na = 0, nb = 0;
    assert_int_equal(sdw_t5_tokenize_all("<extra_id_100>", &a, &na), SDW_OK);
    assert_int_equal(sdw_t5_tokenize_all("<extra_id_05>", &b, &nb), SDW_OK);
    assert_int_equal(a[0], 3);
    assert_int_equal(a[1], SDW_T5_UNK);
    assert_int_equal(b[1], SDW_T5_UNK);
    for (int i = 0; i < na; i++) assert_true(a[i] < SDW_T5_N_PIECES);
    for (int i = 0; i < nb; i++) assert_true(b[i] < SDW_T5_N_PIECES);
    free(a);
    free(b);
    /* a literal `</s>` at the end is the end: no second `</s>`, as in the
     * slow tokenizer (the fast one appends one) ... */
    expect_ids("a</s>", 8, (const int32_t[]){ 3, 9, 1 }, 3, 3);
    /* ... also where truncation stops right after one ("a</s> b c" =
     * 3 9 1 3 115 3 75 1): the sequence is then one id shorter */
    expect_ids("a</s> b c", 3, (const int32_t[]){ 3, 9, 1 }, 3, 8);
    expect_ids("a</s> b c", 4, (const int32_t[]){ 3, 9, 1 }, 3, 8);
    expect_ids("a</s> b c", 5, (const int32_t[]){ 3, 9, 1, 3, 1 }, 5, 8);
}

/* The sentinels strip whitespace (Python's str.strip() set) on both sides;
 * only U+0085 shows it, as SentencePiece keeps it as an unknown character. */
static void sentinel_strips_python_whitespace(void **state)
{
    (void)state;
    expect_ids("a\xc2\x85", 8, (const int32_t[]){ 3, 9, 2, 1 }, 4, 4);
    expect_ids("a\xc2\x85 <extra_id_0> \xc2\x85" "b", 8, (const int32_t[]){ 3, 9, 32099, 3, 115, 1 }, 6, 6);
    /* `</s>` does not strip */
    expect_ids("a\xc2\x85</s>", 8, (const int32_t[]){ 3, 9, 2, 1 }, 4, 4);
}

static void bad_input(void **state)
{
    (void)state;
    int32_t ids[16];
    static const char *bad[] = { "\xff", "caf\xc3", "\xc0\x80", "\xed\xa0\x80", "a\xf4\x90\x80\x80" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sdw_t5_tokenize(bad[i], 16, ids, NULL), SDW_ERR_INVALID_ARG);
        assert_non_null(strstr(sdw_last_error(), "UTF-8"));
        int32_t *p = NULL;
        int n = 0;
        assert_int_equal(sdw_t5_tokenize_all(bad[i], &p, &n), SDW_ERR_INVALID_ARG);
        assert_null(p);
    }
    assert_int_equal(sdw_t5_tokenize("a", 0, ids, NULL), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "max_length"));
    assert_int_equal(sdw_t5_tokenize("a", -5, ids, NULL), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_t5_tokenize(NULL, 16, ids, NULL), SDW_ERR_INVALID_ARG);
}

static void vocabulary(void **state)
{
    (void)state;
    assert_int_equal(sdw_t5_init(), SDW_OK);
    assert_string_equal(sdw_t5_piece(0), "<pad>");
    assert_string_equal(sdw_t5_piece(1), "</s>");
    assert_string_equal(sdw_t5_piece(2), "<unk>");
    assert_string_equal(sdw_t5_piece(1202), "\xe2\x96\x81photo");
    assert_string_equal(sdw_t5_piece(32099), "<extra_id_0>");
    assert_string_equal(sdw_t5_piece(32000), "<extra_id_99>");
    assert_null(sdw_t5_piece(32100));
    assert_null(sdw_t5_piece(-1));
}

/* Threads tokenizing at once get what one thread gets. */
#define N_THREADS 4
static const char *thread_prompts[] = { "a photo of a cat", "année, café <extra_id_3> résumé",
                                        "東京タワーの夜景", "end </s> of sentence literal" };

static void *tokenize_many(void *arg)
{
    int32_t (*out)[4][64] = arg;
    for (int rep = 0; rep < 200; rep++)
        for (int p = 0; p < 4; p++)
            if (sdw_t5_tokenize(thread_prompts[p], 64, (*out)[p], NULL) != SDW_OK) return "failed";
    return NULL;
}

static void thread_safe(void **state)
{
    (void)state;
    static int32_t got[N_THREADS][4][64], want[4][64];
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, tokenize_many, got[i]), 0);
    for (int i = 0; i < N_THREADS; i++) {
        void *r = (void *)1;
        assert_int_equal(pthread_join(t[i], &r), 0);
        assert_null(r);
    }
    for (int p = 0; p < 4; p++) assert_int_equal(sdw_t5_tokenize(thread_prompts[p], 64, want[p], NULL), SDW_OK);
    for (int i = 0; i < N_THREADS; i++) assert_memory_equal(got[i], want, sizeof want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(thread_safe),   /* first: the model loads under threads racing */
        cmocka_unit_test(matches_transformers_reference),
        cmocka_unit_test(empty_and_short),
        cmocka_unit_test(long_prompt_truncated),
        cmocka_unit_test(special_token_literals),
        cmocka_unit_test(sentinel_strips_python_whitespace),
        cmocka_unit_test(bad_input),
        cmocka_unit_test(vocabulary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
