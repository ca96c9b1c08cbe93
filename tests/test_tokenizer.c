/* test_tokenizer.c: the CLIP tokenizer against transformers' ids
 * (tests/data/tokenizer.*), plus the behaviours those prompts do not reach. */
#include "testkit.h"
#include "io/json_file.h"
#include "text/clip_tokenizer.h"
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void matches_transformers_reference(void **state)
{
    (void)state;
    cJSON *j = load_json("tokenizer.json");
    cJSON *prompts = cJSON_GetObjectItem(j, "prompts");
    int n_prompts = cJSON_GetArraySize(prompts);
    sdw_safetensors *st = test_open_st("tokenizer.safetensors");
    int64_t n_ids, n_excl, n_ftfy;
    int64_t *ref = test_load_i64(st, "ids", &n_ids);
    int64_t *ref_excl = test_load_i64(st, "ids_pad_excl", &n_excl);
    int64_t *ref_ftfy = test_load_i64(st, "ids_ftfy", &n_ftfy);
    assert_int_equal(n_ids, (int64_t)n_prompts * SDW_CLIP_CONTEXT);
    assert_int_equal(n_excl, n_ids);
    assert_int_equal(n_ftfy, n_ids);

    int failures = 0, ftfy_differs = 0;
    for (int p = 0; p < n_prompts; p++) {
        cJSON *e = cJSON_GetArrayItem(prompts, p);
        const char *text = cJSON_GetObjectItem(e, "prompt")->valuestring;
        int n_untrunc_ref = cJSON_GetObjectItem(e, "n_tokens_untruncated")->valueint - 2;
        const int64_t *r_eos = ref + (size_t)p * SDW_CLIP_CONTEXT, *r_zero = ref_excl + (size_t)p * SDW_CLIP_CONTEXT;
        int32_t eos[SDW_CLIP_CONTEXT], zero[SDW_CLIP_CONTEXT];
        int n_untrunc = -1, n_untrunc_zero = -1;
        assert_int_equal(sdw_tokenize(text, SDW_PAD_EOS, eos, &n_untrunc), SDW_OK);
        assert_int_equal(sdw_tokenize(text, SDW_PAD_ZERO, zero, &n_untrunc_zero), SDW_OK);
        bool ok_eos = true, ok_zero = true, ok_ftfy = true;
        for (int i = 0; i < SDW_CLIP_CONTEXT; i++) {
            ok_eos &= eos[i] == r_eos[i];
            ok_zero &= zero[i] == r_zero[i];
            ok_ftfy &= eos[i] == ref_ftfy[(size_t)p * SDW_CLIP_CONTEXT + i];
        }
        ftfy_differs += !ok_ftfy;

        /* untruncated ids and the BPE strings */
        int32_t *bpe = NULL;
        int n_bpe = 0;
        assert_int_equal(sdw_tokenize_bpe(text, &bpe, &n_bpe), SDW_OK);
        cJSON *untr = cJSON_GetObjectItem(e, "ids_untruncated"), *strs = cJSON_GetObjectItem(e, "bpe_tokens");
        bool ok_bpe = n_bpe == n_untrunc_ref && n_untrunc == n_untrunc_ref && cJSON_GetArraySize(untr) == n_bpe + 2;
        for (int i = 0; ok_bpe && i < n_bpe; i++) {
            ok_bpe &= bpe[i] == cJSON_GetArrayItem(untr, i + 1)->valueint;
            const char *s = sdw_clip_token_text(bpe[i]);
            ok_bpe &= s && !strcmp(s, cJSON_GetArrayItem(strs, i)->valuestring);
        }
        if (!ok_eos || !ok_zero || !ok_bpe) {
            failures++;
            printf("  prompt %d %s%s%s: \"%s\"\n", p, ok_eos ? "" : "[pad eos] ", ok_zero ? "" : "[pad zero] ",
                   ok_bpe ? "" : "[untruncated] ", text);
            print_ids("got ", ok_eos ? zero : eos, SDW_CLIP_CONTEXT);
            int32_t want[SDW_CLIP_CONTEXT];
            for (int i = 0; i < SDW_CLIP_CONTEXT; i++) want[i] = (int32_t)(ok_eos ? r_zero[i] : r_eos[i]);
            print_ids("want", want, SDW_CLIP_CONTEXT);
        }
        free(bpe);
    }
    printf("  %d prompts, %d mismatches; ftfy (original CLIP) would differ on %d\n", n_prompts, failures, ftfy_differs);
    free(ref);
    free(ref_excl);
    free(ref_ftfy);
    sdw_st_close(st);
    cJSON_Delete(j);
    assert_int_equal(failures, 0);
}

static void astronaut_sanity(void **state)
{
    (void)state;
    const int32_t want[] = { 49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407 };
    int32_t ids[SDW_CLIP_CONTEXT];
    int n = 0;
    assert_int_equal(sdw_tokenize("a photograph of an astronaut riding a horse", SDW_PAD_ZERO, ids, &n), SDW_OK);
    assert_int_equal(n, 8);
    for (int i = 0; i < 10; i++) assert_int_equal(ids[i], want[i]);
    for (int i = 10; i < SDW_CLIP_CONTEXT; i++) assert_int_equal(ids[i], 0);
}

static void vocabulary(void **state)
{
    (void)state;
    assert_int_equal(sdw_clip_init(), SDW_OK);
    assert_string_equal(sdw_clip_token_text(0), "!");
    assert_string_equal(sdw_clip_token_text(256), "!</w>");
    assert_string_equal(sdw_clip_token_text(255), "\xc5\x83");   /* the last byte, 0xAD, -> U+0143 */
    assert_string_equal(sdw_clip_token_text(49406), "<|startoftext|>");
    assert_string_equal(sdw_clip_token_text(49407), "<|endoftext|>");
    assert_string_equal(sdw_clip_token_text(512), "in");
    assert_null(sdw_clip_token_text(49408));
    assert_null(sdw_clip_token_text(-1));
    assert_int_equal(sdw_clip_token_id(",</w>"), SDW_CLIP_COMMA);
    assert_int_equal(sdw_clip_token_id("photo</w>"), 1125);
    assert_int_equal(sdw_clip_token_id("no such token"), -1);
    for (int32_t id = 0; id < SDW_CLIP_VOCAB_SIZE; id++) assert_int_equal(sdw_clip_token_id(sdw_clip_token_text(id)), id);
}

/* Expects text to tokenize (pad eos, BPE part) as want[0..n). */
static void expect_bpe(const char *text, const int32_t *want, int n)
{
    int32_t *ids = NULL;
    int got = -1;
    assert_int_equal(sdw_tokenize_bpe(text, &ids, &got), SDW_OK);
    if (got != n || memcmp(ids, want, (size_t)n * sizeof *ids)) {
        printf("  \"%s\"\n", text);
        print_ids("got ", ids, got);
        print_ids("want", want, n);
        free(ids);
        fail_msg("tokens differ");
    }
    free(ids);
}

/* Expects a and b to give the same ids. */
static void expect_same(const char *a, const char *b)
{
    int32_t *ib = NULL;
    int nb = 0;
    assert_int_equal(sdw_tokenize_bpe(b, &ib, &nb), SDW_OK);
    expect_bpe(a, ib, nb);
    free(ib);
}

static void special_tokens_are_cut_out_first(void **state)
{
    (void)state;
    /* transformers splits added tokens out of the raw text before the regex,
     * so "!<|endoftext|>" is "!" + EOS, not the punctuation run "!<|" ... */
    expect_bpe("!<|endoftext|>", (const int32_t[]){ 256, 49407 }, 2);
    expect_bpe("a<|startoftext|>b", (const int32_t[]){ 320, 49406, 321 }, 3);
    /* ... while a special string that only appears after lower-casing is
     * caught by the regex and CLIP's BPE cache. */
    expect_bpe("<|ENDOFTEXT|>", (const int32_t[]){ 49407 }, 1);
    /* "!" is an added token only for the "!"-padded tokenizer */
    int32_t ids[SDW_CLIP_CONTEXT];
    assert_int_equal(sdw_tokenize("wow!!", SDW_PAD_ZERO, ids, NULL), SDW_OK);
    assert_int_equal(ids[2], 0);
    assert_int_equal(ids[3], 0);
    assert_int_equal(ids[4], SDW_CLIP_EOS);
    assert_int_equal(sdw_tokenize("wow!!", SDW_PAD_EOS, ids, NULL), SDW_OK);
    assert_int_equal(ids[2], 748);
    assert_int_equal(ids[3], SDW_CLIP_EOS);
}

static void python_lower_and_cleaning(void **state)
{
    (void)state;
    expect_same("ΟΔΟΣ ΣΑ", "οδος σα");           /* final sigma only at the end of a word */
    expect_same("İ", "i\xcc\x87");                 /* U+0130 -> i + combining dot */
    expect_same("a\x01" "b\x7f" "c\xe2\x80\x8b", "abc");   /* control and format characters dropped */
    expect_same("a\xc2\xa0\xe3\x80\x80z", "a z");  /* Zs are spaces */
    expect_same("a\xe2\x80\xa8z", "a z");          /* U+2028 survives cleaning but str.split() splits on it */
    expect_same("e\xcc\x81", "\xc3\xa9");           /* NFC */
    expect_same("猫cat", "猫 cat");                  /* spaces around CJK ideographs */
    expect_same("", "   \t\n ");
}

/* ASCII text takes a shortcut past utf8proc; appending a separate non-ASCII
 * word sends the same text down the Unicode path, which must agree. */
static void ascii_shortcut_agrees(void **state)
{
    (void)state;
    const char *cases[] = { "Hello,   World!!", "  a\tb\nc\rd  ", "x\x01y\x7fz\x0b\x0c" "w", "A\x1c\x1d\x1e\x1f" "B",
                            "don't STOP", "<|endoftext|>x", "", " ", "MiXeD 123 CaSe_words" };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char both[256];
        snprintf(both, sizeof both, "%s \xc3\xa9", cases[c]);
        int32_t *a = NULL, *b = NULL, *e = NULL;
        int na, nb, ne;
        assert_int_equal(sdw_tokenize_bpe(cases[c], &a, &na), SDW_OK);
        assert_int_equal(sdw_tokenize_bpe(both, &b, &nb), SDW_OK);
        assert_int_equal(sdw_tokenize_bpe("\xc3\xa9", &e, &ne), SDW_OK);
        assert_int_equal(nb, na + ne);
        assert_memory_equal(b, a, (size_t)na * sizeof *a);
        assert_memory_equal(b + na, e, (size_t)ne * sizeof *e);
        free(a);
        free(b);
        free(e);
    }
}

static void invalid_utf8_is_rejected(void **state)
{
    (void)state;
    int32_t ids[SDW_CLIP_CONTEXT];
    assert_int_equal(sdw_tokenize("ab\xff", SDW_PAD_EOS, ids, NULL), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "UTF-8"));
    assert_int_equal(sdw_tokenize("\xed\xa0\x80", SDW_PAD_EOS, ids, NULL), SDW_ERR_INVALID_ARG);   /* surrogate */
    assert_int_equal(sdw_tokenize("\xc0\xaf", SDW_PAD_EOS, ids, NULL), SDW_ERR_INVALID_ARG);       /* overlong */
    assert_int_equal(sdw_tokenize("ok", (sdw_pad)7, ids, NULL), SDW_ERR_INVALID_ARG);
}

static void truncation(void **state)
{
    (void)state;
    char text[2000] = "";
    for (int i = 0; i < 100; i++) strcat(text, "cat ");
    int32_t ids[SDW_CLIP_CONTEXT];
    int n = 0;
    assert_int_equal(sdw_tokenize(text, SDW_PAD_ZERO, ids, &n), SDW_OK);
    assert_int_equal(n, 100);
    assert_int_equal(ids[0], SDW_CLIP_BOS);
    for (int i = 1; i <= 75; i++) assert_int_equal(ids[i], 2368);
    assert_int_equal(ids[76], SDW_CLIP_EOS);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fast_enough(void **state)
{
    (void)state;
    char text[4096] = "";
    while (strlen(text) < 1500) strcat(text, "masterpiece, best quality, (a cozy cabin:1.2) in the snowy mountains at night, ");
    int32_t *ids = NULL;
    int n = 0;
    assert_int_equal(sdw_tokenize_bpe(text, &ids, &n), SDW_OK);   /* init */
    free(ids);
    const int reps = 200;
    double t0 = now_s();
    for (int r = 0; r < reps; r++) {
        assert_int_equal(sdw_tokenize_bpe(text, &ids, &n), SDW_OK);
        free(ids);
    }
    double per = (now_s() - t0) / reps;
    printf("  %d tokens in %.1f us\n", n, per * 1e6);
    assert_true(n >= 300);
#if !defined(__SANITIZE_ADDRESS__)
    assert_true(per < 1e-3);
#endif

    /* a pathological 200k-letter word: BPE is O(n log n) */
    size_t big = 200000;
    char *word = malloc(big + 1);
    memset(word, 'x', big);
    word[big] = 0;
    t0 = now_s();
    assert_int_equal(sdw_tokenize_bpe(word, &ids, &n), SDW_OK);
    printf("  200k-letter word: %d tokens in %.1f ms\n", n, (now_s() - t0) * 1e3);
    assert_true(n > 0 && n < 100000);
    free(ids);
    free(word);
}

static void *tokenize_thread(void *arg)
{
    int32_t *out = arg;
    for (int r = 0; r < 20; r++)
        if (sdw_tokenize("a (red) cube on a wooden table, studio light", SDW_PAD_EOS, out, NULL) != SDW_OK) out[0] = -1;
    return NULL;
}

static void thread_safe(void **state)
{
    (void)state;
    enum { T = 4 };
    pthread_t th[T];
    int32_t out[T][SDW_CLIP_CONTEXT];
    for (int i = 0; i < T; i++) assert_int_equal(pthread_create(&th[i], NULL, tokenize_thread, out[i]), 0);
    for (int i = 0; i < T; i++) pthread_join(th[i], NULL);
    for (int i = 1; i < T; i++) assert_memory_equal(out[0], out[i], sizeof out[0]);
    assert_int_equal(out[0][0], SDW_CLIP_BOS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(thread_safe),   /* first, so the threads race to initialise */
        cmocka_unit_test(matches_transformers_reference),
        cmocka_unit_test(astronaut_sanity),
        cmocka_unit_test(vocabulary),
        cmocka_unit_test(special_tokens_are_cut_out_first),
        cmocka_unit_test(python_lower_and_cleaning),
        cmocka_unit_test(ascii_shortcut_agrees),
        cmocka_unit_test(invalid_utf8_is_rejected),
        cmocka_unit_test(truncation),
        cmocka_unit_test(fast_enough),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
