/* test_prompt_parse.c: A1111 prompt syntax and 75-token chunking. Expected
 * spans are A1111's parse_prompt_attention docstring examples, then cases
 * worked out by hand from its code (modules/prompt_parser.py,
 * modules/sd_hijack_clip.py tokenize_line, extensions-builtin/Lora). */
#include "testkit.h"
#include "text/clip_tokenizer.h"
#include "text/prompt_chunks.h"
#include "text/prompt_parse.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *text;
    double weight;   /* as A1111 computes it, in double */
    bool is_break;
} span_want;

#define BRK { "BREAK", -1.0, true }

static void expect_spans(const char *prompt, const span_want *want, int n)
{
    sdw_parsed_prompt p;
    if (sdw_prompt_parse(prompt, &p) != SDW_OK) fail_msg("parse \"%s\": %s", prompt, sdw_last_error());
    bool ok = p.n_spans == n;
    for (int i = 0; ok && i < n; i++)
        ok = !strcmp(p.spans[i].text, want[i].text) && p.spans[i].weight == (float)want[i].weight &&
             p.spans[i].is_break == want[i].is_break;
    if (!ok) {
        printf("  \"%s\"\n    got: ", prompt);
        for (int i = 0; i < p.n_spans; i++)
            printf("['%s', %.17g%s] ", p.spans[i].text, p.spans[i].weight, p.spans[i].is_break ? " break" : "");
        printf("\n    want:");
        for (int i = 0; i < n; i++) printf("['%s', %.17g%s] ", want[i].text, want[i].weight, want[i].is_break ? " break" : "");
        printf("\n");
    }
    sdw_parsed_prompt_free(&p);
    if (!ok) fail_msg("spans differ");
}

#define SPANS(prompt, ...)                                                                 \
    do {                                                                                   \
        const span_want w_[] = { __VA_ARGS__ };                                            \
        expect_spans(prompt, w_, (int)(sizeof w_ / sizeof w_[0]));                         \
    } while (0)

static void docstring_examples(void **state)
{
    (void)state;
    SPANS("normal text", { "normal text", 1.0, false });
    SPANS("an (important) word", { "an ", 1.0, false }, { "important", 1.1, false }, { " word", 1.0, false });
    SPANS("(unbalanced", { "unbalanced", 1.1, false });
    SPANS("\\(literal\\]", { "(literal]", 1.0, false });
    SPANS("(unnecessary)(parens)", { "unnecessaryparens", 1.1, false });
    SPANS("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
          { "a ", 1.0, false }, { "house", 1.5730000000000004, false }, { " ", 1.1, false }, { "on", 1.0, false },
          { " a ", 1.1, false }, { "hill", 0.55, false }, { ", sun, ", 1.1, false },
          { "sky", 1.4641000000000006, false }, { ".", 1.1, false });
}

static void attention_syntax(void **state)
{
    (void)state;
    SPANS("", { "", 1.0, false });
    SPANS("a ((word)) b", { "a ", 1.0, false }, { "word", 1.1 * 1.1, false }, { " b", 1.0, false });
    SPANS("[word]", { "word", 1 / 1.1, false });
    SPANS("[[word]]", { "word", 1 / 1.1 / 1.1, false });
    SPANS("[unbalanced", { "unbalanced", 1 / 1.1, false });
    SPANS("(word:0.25)", { "word", 0.25, false });
    SPANS("( word : 1.5 )", { " word ", 1.5, false });
    SPANS("((a:1.5))", { "a", 1.5 * 1.1, false });
    SPANS("(a:-1)", { "a", -1.0, false });
    SPANS("(a:+.5) b", { "a", 0.5, false }, { " b", 1.0, false });
    SPANS("a [b (c) d] e", { "a ", 1.0, false }, { "b ", 1 / 1.1, false }, { "c", 1.1 * (1 / 1.1), false },
          { " d", 1 / 1.1, false }, { " e", 1.0, false });
    /* a weight with no open bracket is text; ':' alone is text */
    SPANS("a:1.5) b", { "a:1.5) b", 1.0, false });
    SPANS("(a:b)", { "a:b", 1.1, false });
    SPANS("[a:b:0.5]", { "a:b:0.5", 1 / 1.1, false });   /* prompt editing is not parsed here */
    SPANS("a) b] c", { "a) b] c", 1.0, false });
    /* escapes; a lone backslash is dropped */
    SPANS("\\(a\\)", { "(a)", 1.0, false });
    SPANS("a\\\\b", { "a\\b", 1.0, false });
    SPANS("a\\b", { "ab", 1.0, false });
    SPANS("end\\", { "end", 1.0, false });
    SPANS("\\[x\\] (\\(y\\))", { "[x] ", 1.0, false }, { "(y)", 1.1, false });
    /* UTF-8 passes through */
    SPANS("(猫:1.2) café", { "猫", 1.2, false }, { " café", 1.0, false });

    sdw_parsed_prompt p;
    assert_int_equal(sdw_prompt_parse("(a:1.2.3)", &p), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "1.2.3"));
    assert_int_equal(p.n_spans, 0);
    assert_int_equal(sdw_prompt_parse("(a:.)", &p), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_prompt_parse("bad \xff", &p), SDW_ERR_INVALID_ARG);
}

static void break_keyword(void **state)
{
    (void)state;
    SPANS("a BREAK b", { "a", 1.0, false }, BRK, { "b", 1.0, false });
    SPANS("a, BREAK, b", { "a,", 1.0, false }, BRK, { ", b", 1.0, false });
    SPANS("a\n BREAK\tb", { "a", 1.0, false }, BRK, { "b", 1.0, false });
    SPANS("BREAK", { "", 1.0, false }, BRK, { "", 1.0, false });
    SPANS("(a)BREAK", { "a", 1.1, false }, { "", 1.0, false }, BRK, { "", 1.0, false });
    /* only a whole word */
    SPANS("aBREAK b", { "aBREAK b", 1.0, false });
    SPANS("BREAKs break", { "BREAKs break", 1.0, false });
    SPANS("a_BREAK", { "a_BREAK", 1.0, false });
    /* inside brackets A1111 multiplies the -1 too, and it is no longer a break */
    SPANS("(a BREAK b)", { "a", 1.1, false }, { "BREAK", -1.1, false }, { "b", 1.1, false });
}

static void lora_tags(void **state)
{
    (void)state;
    sdw_parsed_prompt p;
    assert_int_equal(sdw_prompt_parse("<lora:detail:0.7> a cat", &p), SDW_OK);
    assert_int_equal(p.n_spans, 1);
    assert_string_equal(p.spans[0].text, " a cat");
    assert_int_equal(p.n_loras, 1);
    assert_string_equal(p.loras[0].name, "detail");
    assert_float_equal(p.loras[0].te_weight, 0.7f, 0);
    assert_float_equal(p.loras[0].unet_weight, 0.7f, 0);   /* unet defaults to te */
    sdw_parsed_prompt_free(&p);

    assert_int_equal(sdw_prompt_parse("a <lora:x:0.5:0.8>, b <lyco:y-2.1:1.2> <hypernet:h:1> <lora:z>(c)", &p), SDW_OK);
    assert_int_equal(p.n_spans, 2);
    assert_string_equal(p.spans[0].text, "a , b   ");   /* every tag type is removed */
    assert_string_equal(p.spans[1].text, "c");
    assert_int_equal(p.n_loras, 3);
    assert_string_equal(p.loras[0].name, "x");
    assert_float_equal(p.loras[0].te_weight, 0.5f, 0);
    assert_float_equal(p.loras[0].unet_weight, 0.8f, 0);
    assert_string_equal(p.loras[1].name, "y-2.1");
    assert_float_equal(p.loras[1].te_weight, 1.2f, 0);
    assert_float_equal(p.loras[1].unet_weight, 1.2f, 0);
    assert_string_equal(p.loras[2].name, "z");
    assert_float_equal(p.loras[2].te_weight, 1.0f, 0);
    assert_float_equal(p.loras[2].unet_weight, 1.0f, 0);
    sdw_parsed_prompt_free(&p);

    /* named weights; named te also moves the unet default */
    assert_int_equal(sdw_prompt_parse("<lora:a:te=0.3:unet=0.6><lora:b:0.5:te=0.2><lora:my lora v2: 1.5 >", &p), SDW_OK);
    assert_int_equal(p.n_loras, 3);
    assert_float_equal(p.loras[0].te_weight, 0.3f, 0);
    assert_float_equal(p.loras[0].unet_weight, 0.6f, 0);
    assert_float_equal(p.loras[1].te_weight, 0.2f, 0);
    assert_float_equal(p.loras[1].unet_weight, 0.2f, 0);
    assert_string_equal(p.loras[2].name, "my lora v2");
    assert_float_equal(p.loras[2].te_weight, 1.5f, 0);
    assert_int_equal(p.n_spans, 1);
    assert_string_equal(p.spans[0].text, "");
    sdw_parsed_prompt_free(&p);

    /* a tag inside brackets leaves the brackets; an unclosed tag is text;
     * the type is case-sensitive, as in A1111 (<LORA:...> is removed, unused) */
    assert_int_equal(sdw_prompt_parse("<LORA:q:1>(<lora:x:1>cat) <lora:y:1", &p), SDW_OK);
    assert_int_equal(p.n_loras, 1);
    assert_string_equal(p.loras[0].name, "x");
    assert_int_equal(p.n_spans, 2);
    assert_string_equal(p.spans[0].text, "cat");
    assert_float_equal(p.spans[0].weight, 1.1f, 0);
    assert_string_equal(p.spans[1].text, " <lora:y:1");
    sdw_parsed_prompt_free(&p);
    /* [^>]+ runs on to the next '>', as in A1111: this is one tag, "y" with
     * the weight "1 <lora" */
    assert_int_equal(sdw_prompt_parse("<lora:y:1 <lora:x:1>", &p), SDW_ERR_INVALID_ARG);

    assert_int_equal(sdw_prompt_parse("<lora:x:abc>", &p), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_prompt_parse("<lora::1>", &p), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_prompt_parse("<lora:x:1:inf>", &p), SDW_ERR_INVALID_ARG);
    /* finite in double but not in float, where the weight is kept (fuzz_prompt) */
    assert_int_equal(sdw_prompt_parse("<lora:x:1e45>", &p), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_prompt_parse("<lora:x:1:unet=-1e39>", &p), SDW_ERR_INVALID_ARG);
    assert_int_equal(p.n_loras, 0);
    assert_null(p.loras);
}

/* ---- chunks ---- */

typedef struct {
    int32_t *ids;
    float *w;
    int n;
} chunks;

static chunks to_chunks(const char *prompt, sdw_pad pad)
{
    sdw_parsed_prompt p;
    if (sdw_prompt_parse(prompt, &p) != SDW_OK) fail_msg("parse: %s", sdw_last_error());
    chunks c = {0};
    if (sdw_prompt_to_chunks(&p, pad, &c.ids, &c.w, &c.n) != SDW_OK) fail_msg("chunks: %s", sdw_last_error());
    sdw_parsed_prompt_free(&p);
    return c;
}

static void chunks_free(chunks *c)
{
    free(c->ids);
    free(c->w);
}

static int32_t id_of(const char *token)
{
    int32_t id = sdw_clip_token_id(token);
    if (id < 0) fail_msg("no token %s", token);
    return id;
}

/* Checks chunk k: BOS, n copies of token (or the given list), EOS, padding. */
static void expect_chunk(const chunks *c, int k, const int32_t *tokens, int n, sdw_pad pad)
{
    const int32_t *d = c->ids + (size_t)k * SDW_CLIP_CONTEXT;
    const float *w = c->w + (size_t)k * SDW_CLIP_CONTEXT;
    assert_int_equal(d[0], SDW_CLIP_BOS);
    assert_float_equal(w[0], 1.0f, 0);
    for (int i = 0; i < n; i++) assert_int_equal(d[1 + i], tokens[i]);
    assert_int_equal(d[1 + n], SDW_CLIP_EOS);
    for (int i = n + 2; i < SDW_CLIP_CONTEXT; i++) {
        assert_int_equal(d[i], pad == SDW_PAD_EOS ? SDW_CLIP_EOS : 0);
        assert_float_equal(w[i], 1.0f, 0);
    }
    assert_int_equal(d[76], pad == SDW_PAD_EOS || n == 75 ? SDW_CLIP_EOS : 0);
}

static void short_prompt_is_one_chunk_like_sdw_tokenize(void **state)
{
    (void)state;
    const char *text = "a photograph of an astronaut riding a horse";
    for (int pad = SDW_PAD_EOS; pad <= SDW_PAD_ZERO; pad++) {
        chunks c = to_chunks(text, (sdw_pad)pad);
        int32_t ids[SDW_CLIP_CONTEXT];
        assert_int_equal(sdw_tokenize(text, (sdw_pad)pad, ids, NULL), SDW_OK);
        assert_int_equal(c.n, 1);
        assert_memory_equal(c.ids, ids, sizeof ids);
        for (int i = 0; i < SDW_CLIP_CONTEXT; i++) assert_float_equal(c.w[i], 1.0f, 0);
        chunks_free(&c);
    }
    /* the "!" rule of the zero-padded tokenizer applies here too */
    chunks c = to_chunks("wow!!", SDW_PAD_ZERO);
    expect_chunk(&c, 0, (const int32_t[]){ id_of("wow</w>"), 0, 0 }, 3, SDW_PAD_ZERO);
    chunks_free(&c);
}

static void weights_follow_spans(void **state)
{
    (void)state;
    chunks c = to_chunks("a (cat:1.5) [dog]", SDW_PAD_EOS);
    assert_int_equal(c.n, 1);
    expect_chunk(&c, 0, (const int32_t[]){ 320, 2368, id_of("dog</w>") }, 3, SDW_PAD_EOS);
    assert_float_equal(c.w[1], 1.0f, 0);
    assert_float_equal(c.w[2], 1.5f, 0);
    assert_float_equal(c.w[3], (float)(1 / 1.1), 0);
    assert_float_equal(c.w[4], 1.0f, 0);
    chunks_free(&c);
}

static void empty_prompt(void **state)
{
    (void)state;
    for (int pad = SDW_PAD_EOS; pad <= SDW_PAD_ZERO; pad++) {
        chunks c = to_chunks("", (sdw_pad)pad);
        assert_int_equal(c.n, 1);
        expect_chunk(&c, 0, NULL, 0, (sdw_pad)pad);
        chunks_free(&c);
    }
}

static void long_prompt_two_chunks(void **state)
{
    (void)state;
    char text[1024] = "";
    for (int i = 0; i < 80; i++) strcat(text, "cat ");
    int32_t cat = id_of("cat</w>"), cats[75];
    for (int i = 0; i < 75; i++) cats[i] = cat;
    for (int pad = SDW_PAD_EOS; pad <= SDW_PAD_ZERO; pad++) {
        chunks c = to_chunks(text, (sdw_pad)pad);
        assert_int_equal(c.n, 2);
        expect_chunk(&c, 0, cats, 75, (sdw_pad)pad);
        expect_chunk(&c, 1, cats, 5, (sdw_pad)pad);
        chunks_free(&c);
    }
    /* exactly 75 tokens: one full chunk, no empty second one */
    text[0] = 0;
    for (int i = 0; i < 75; i++) strcat(text, "cat ");
    chunks c = to_chunks(text, SDW_PAD_EOS);
    assert_int_equal(c.n, 1);
    chunks_free(&c);
}

static void break_closes_chunk(void **state)
{
    (void)state;
    chunks c = to_chunks("a BREAK b", SDW_PAD_ZERO);
    assert_int_equal(c.n, 2);
    expect_chunk(&c, 0, (const int32_t[]){ 320 }, 1, SDW_PAD_ZERO);
    expect_chunk(&c, 1, (const int32_t[]){ 321 }, 1, SDW_PAD_ZERO);
    chunks_free(&c);

    c = to_chunks("BREAK a", SDW_PAD_EOS);   /* a leading BREAK emits an empty chunk */
    assert_int_equal(c.n, 2);
    expect_chunk(&c, 0, NULL, 0, SDW_PAD_EOS);
    expect_chunk(&c, 1, (const int32_t[]){ 320 }, 1, SDW_PAD_EOS);
    chunks_free(&c);

    c = to_chunks("a BREAK", SDW_PAD_EOS);   /* a trailing one does not */
    assert_int_equal(c.n, 1);
    chunks_free(&c);

    c = to_chunks("(a BREAK b)", SDW_PAD_EOS);   /* bracketed: the word BREAK, weighted -1.1 */
    assert_int_equal(c.n, 1);
    assert_int_equal(c.ids[2], id_of("break</w>"));
    assert_float_equal(c.w[2], -1.1f, 1e-6);
    chunks_free(&c);
}

/* n_before words, a comma, n_after words: where does the first chunk end? */
static void comma_case(int n_before, int n_after, int want_first, int want_second)
{
    char text[2048] = "";
    for (int i = 0; i < n_before; i++) strcat(text, i ? " cat" : "cat");
    strcat(text, ",");
    for (int i = 0; i < n_after; i++) strcat(text, " dog");
    chunks c = to_chunks(text, SDW_PAD_EOS);
    assert_int_equal(c.n, 2);
    int32_t toks[75];
    for (int i = 0; i < 75; i++) toks[i] = i < n_before ? id_of("cat</w>") : i == n_before ? SDW_CLIP_COMMA : id_of("dog</w>");
    expect_chunk(&c, 0, toks, want_first, SDW_PAD_EOS);
    for (int i = 0; i < 75; i++) toks[i] = id_of("dog</w>");
    expect_chunk(&c, 1, toks, want_second, SDW_PAD_EOS);
    chunks_free(&c);
}

static void comma_backtracking(void **state)
{
    (void)state;
    comma_case(70, 10, 71, 10);   /* comma 5 back from the end: the 4 words after it move */
    comma_case(55, 30, 56, 30);   /* exactly 20 back: still moves */
    comma_case(54, 30, 75, 10);   /* 21 back: no backtracking */
    comma_case(74, 5, 75, 5);     /* the comma is the 75th token: nothing to move */
}

static void zero_pad_after_first_eos(void **state)
{
    (void)state;
    /* A1111's process_tokens zeroes everything after the first EOS, even a
     * literal <|endoftext|> in the prompt */
    chunks c = to_chunks("a <|endoftext|> b", SDW_PAD_ZERO);
    assert_int_equal(c.n, 1);
    expect_chunk(&c, 0, (const int32_t[]){ 320 }, 1, SDW_PAD_ZERO);
    chunks_free(&c);
}

static void pad_chunk_count(void **state)
{
    (void)state;
    for (int pad = SDW_PAD_EOS; pad <= SDW_PAD_ZERO; pad++) {
        chunks c = to_chunks("a cat", (sdw_pad)pad);
        assert_int_equal(sdw_prompt_chunks_pad(&c.ids, &c.w, &c.n, 3, (sdw_pad)pad), SDW_OK);
        assert_int_equal(c.n, 3);
        expect_chunk(&c, 0, (const int32_t[]){ 320, 2368 }, 2, (sdw_pad)pad);
        expect_chunk(&c, 1, NULL, 0, (sdw_pad)pad);
        expect_chunk(&c, 2, NULL, 0, (sdw_pad)pad);
        assert_int_equal(sdw_prompt_chunks_pad(&c.ids, &c.w, &c.n, 2, (sdw_pad)pad), SDW_OK);   /* never shrinks */
        assert_int_equal(c.n, 3);
        chunks_free(&c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(docstring_examples),
        cmocka_unit_test(attention_syntax),
        cmocka_unit_test(break_keyword),
        cmocka_unit_test(lora_tags),
        cmocka_unit_test(short_prompt_is_one_chunk_like_sdw_tokenize),
        cmocka_unit_test(weights_follow_spans),
        cmocka_unit_test(empty_prompt),
        cmocka_unit_test(long_prompt_two_chunks),
        cmocka_unit_test(break_closes_chunk),
        cmocka_unit_test(comma_backtracking),
        cmocka_unit_test(zero_pad_after_first_eos),
        cmocka_unit_test(pad_chunk_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
