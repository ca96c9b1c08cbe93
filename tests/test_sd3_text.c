/* test_sd3_text.c: SD3's text conditioning (models/sd3_text.c) against
 * tests/data/sd3/components_sd3_text (diffusers 0.32 StableDiffusion3Pipeline
 * .encode_prompt on the tiny CLIP-L, CLIP-G and T5 of
 * tests/data/sd3/models/text_encoders):
 *   token ids of the three tokenizers, exactly (prompt 2 has a "!", which
 *     CLIP-G's "!"-padded tokenizer makes id 0), also through the A1111
 *     chunking sdw_sd3_encode uses;
 *   each encoder: hidden_states[-2] and [-3], the last hidden state, the
 *     pooled output unprojected and projected (text_embeds), T5 at 256 and 77;
 *   prompt_embeds / pooled_prompt_embeds: T5 length 256 (default) and 77,
 *     no T5 (zeros), diffusers clip_skip 1 (our A1111 numbering 3);
 *   the same from an all-in-one checkpoint written here from the three files
 *     under text_encoders.*.transformer.;
 *   A1111 emphasis on the CLIP part, long prompts in chunks, <lora:> tags;
 *   refusals: files in the wrong place (T5 as CLIP, CLIP as T5, CLIP-L where
 *     CLIP-G goes at the real sizes, from header-only sparse files), a T5 or
 *     pooled width that does not fit the transformer.
 * f32 gate 1e-5 relative L2 (components, README); bf16 against the f32
 * reference at 2e-2, where the CPU has bf16. */
#include "testkit.h"
#include "backend/backend.h"
#include "core/error.h"
#include "io/safetensors_write.h"
#include "models/sd3_text.h"
#include "text/clip_tokenizer.h"
#include "text/prompt_chunks.h"
#include "text/t5_tokenizer.h"
#include "io/json_file.h"
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define F32_GATE 1e-5
#define BF16_GATE 2e-2
#define REF "sd3/components_sd3_text.safetensors"
#define TE_DIR "sd3/models/text_encoders/"
#define N_PROMPTS 3
#define JOINT 32
#define POOLED 20

static char prompts[N_PROMPTS][256];

static void load_prompts(void)
{
    cJSON *js = NULL;
    if (sdw_json_load_file(test_data_path("sd3/components_sd3_text.json"), &js) != SDW_OK)
        fail_msg("%s", sdw_last_error());
    const cJSON *list = cJSON_GetObjectItem(js, "prompts");
    assert_int_equal(cJSON_GetArraySize(list), N_PROMPTS);
    for (int i = 0; i < N_PROMPTS; i++)
        snprintf(prompts[i], sizeof prompts[i], "%s", cJSON_GetArrayItem(list, i)->valuestring);
    cJSON_Delete(js);
}

static int32_t *load_ids(const sdw_safetensors *ref, const char *name, int64_t *n)
{
    int64_t *v = test_load_i64(ref, name, n);
    int32_t *ids = malloc((size_t)*n * sizeof *ids);
    for (int64_t i = 0; i < *n; i++) ids[i] = (int32_t)v[i];
    free(v);
    return ids;
}

static void check_ids(const char *what, const int32_t *got, const int32_t *ref, int n)
{
    for (int i = 0; i < n; i++)
        if (got[i] != ref[i]) fail_msg("%s: id %d is %d, reference %d", what, i, got[i], ref[i]);
}

static char te_paths[3][1024];

static void text_paths(void)
{
    static const char *const f[3] = { TE_DIR "clip_l.safetensors", TE_DIR "clip_g.safetensors",
                                      TE_DIR "t5xxl.safetensors" };
    for (int i = 0; i < 3; i++) snprintf(te_paths[i], sizeof te_paths[i], "%s", test_data_path(f[i]));
}

static void load_files(sdw_backend *be, bool with_t5, sdw_sd3_text *t)
{
    if (sdw_sd3_text_load_files(be, te_paths[0], te_paths[1], with_t5 ? te_paths[2] : NULL, t) != SDW_OK)
        fail_msg("%s", sdw_last_error());
    if (sdw_sd3_text_check(t, JOINT, POOLED) != SDW_OK) fail_msg("%s", sdw_last_error());
}

/* ------------------------------------------------------------ tokenizers */

static void test_token_ids(void **state)
{
    (void)state;
    load_prompts();
    sdw_safetensors *ref = test_open_st(REF);
    int64_t n;
    int32_t *l = load_ids(ref, "clip_l.input_ids", &n), *g = load_ids(ref, "clip_g.input_ids", &n);
    int32_t *t256 = load_ids(ref, "t5_256.input_ids", &n), *t77 = load_ids(ref, "t5_77.input_ids", &n);
    int32_t ids[SDW_SD3_T5_LEN_DEFAULT];
    for (int p = 0; p < N_PROMPTS; p++) {
        char what[64];
        snprintf(what, sizeof what, "prompt %d CLIP-L", p);
        assert_int_equal(sdw_tokenize(prompts[p], SDW_PAD_EOS, ids, NULL), SDW_OK);
        check_ids(what, ids, l + p * 77, 77);
        snprintf(what, sizeof what, "prompt %d CLIP-G", p);
        assert_int_equal(sdw_tokenize(prompts[p], SDW_PAD_ZERO, ids, NULL), SDW_OK);
        check_ids(what, ids, g + p * 77, 77);
        /* the chunking the encoder runs gives the same 77 ids */
        sdw_parsed_prompt pp;
        assert_int_equal(sdw_prompt_parse(prompts[p], &pp), SDW_OK);
        for (int k = 0; k < 2; k++) {
            int32_t *ci;
            float *cw;
            int nc;
            assert_int_equal(sdw_prompt_to_chunks(&pp, k ? SDW_PAD_ZERO : SDW_PAD_EOS, &ci, &cw, &nc), SDW_OK);
            assert_int_equal(nc, 1);
            check_ids(k ? "chunked CLIP-G" : "chunked CLIP-L", ci, (k ? g : l) + p * 77, 77);
            free(ci);
            free(cw);
        }
        sdw_parsed_prompt_free(&pp);
        int chunks = 0;
        assert_int_equal(sdw_sd3_prompt_chunks(prompts[p], &chunks), SDW_OK);
        assert_int_equal(chunks, 1);
        snprintf(what, sizeof what, "prompt %d T5 256", p);
        assert_int_equal(sdw_t5_tokenize(prompts[p], 256, ids, NULL), SDW_OK);
        check_ids(what, ids, t256 + p * 256, 256);
        snprintf(what, sizeof what, "prompt %d T5 77", p);
        assert_int_equal(sdw_t5_tokenize(prompts[p], 77, ids, NULL), SDW_OK);
        check_ids(what, ids, t77 + p * 77, 77);
    }
    /* the "!" of prompt 2: BPE "!</w>" (256) for CLIP-L, the pad token 0 for CLIP-G */
    assert_int_equal(l[77 + 8], 256);
    assert_int_equal(g[77 + 8], 0);
    printf("  CLIP-L, CLIP-G (\"!\" -> 0), T5 256 / 77: ids of %d prompts exact\n", N_PROMPTS);
    free(l); free(g); free(t256); free(t77);
    sdw_st_close(ref);
}

/* ------------------------------------------------------------ the encoders */

static void check_ref(const sdw_safetensors *ref, const char *name, const float *got, size_t n, double gate)
{
    int64_t m;
    float *r = test_load_f32(ref, name, &m);
    assert_int_equal((size_t)m, n);
    test_check_close(name, got, r, n, gate);
    free(r);
}

static void check_clip(sdw_backend *be, const sdw_clip_text *c, const sdw_safetensors *ref, const char *tag)
{
    char name[96];
    int64_t n;
    snprintf(name, sizeof name, "%s.input_ids", tag);
    int32_t *ids = load_ids(ref, name, &n);
    const int W = c->cfg.width, T = 77, B = N_PROMPTS;
    float *h = malloc(sizeof(float) * B * T * W), *pooled = malloc(sizeof(float) * B * W);
    float *raw = malloc(sizeof(float) * B * W);
    sdw_arena arena = { 0 };
    static const struct { int skip; bool norm; const char *ref; } taps[3] = {
        { 1, false, "penultimate_hidden_state" }, { 2, false, "clip_skip1_hidden_state" },
        { 0, true, "last_hidden_state" },
    };
    for (int k = 0; k < 3; k++) {
        assert_int_equal(sdw_clip_text_forward(be, &arena, c, ids, B, taps[k].skip, taps[k].norm, h, pooled), SDW_OK);
        snprintf(name, sizeof name, "%s.%s", tag, taps[k].ref);
        check_ref(ref, name, h, (size_t)B * T * W, F32_GATE);
    }
    snprintf(name, sizeof name, "%s.text_embeds", tag);
    check_ref(ref, name, pooled, (size_t)B * c->cfg.proj, F32_GATE);
    /* unprojected: the final-norm state at the first EOS (the first highest id) */
    for (int b = 0; b < B; b++) {
        int eos = 0;
        for (int t = 1; t < T; t++)
            if (ids[b * T + t] > ids[b * T + eos]) eos = t;
        memcpy(raw + b * W, h + ((size_t)b * T + eos) * W, sizeof(float) * W);
    }
    snprintf(name, sizeof name, "%s.pooled", tag);
    check_ref(ref, name, raw, (size_t)B * W, F32_GATE);
    sdw_arena_free(&arena);
    free(ids); free(h); free(pooled); free(raw);
}

static void check_t5(sdw_backend *be, const sdw_t5 *t5, const sdw_safetensors *ref, int L)
{
    char name[64];
    int64_t n;
    snprintf(name, sizeof name, "t5_%d.input_ids", L);
    int32_t *ids = load_ids(ref, name, &n);
    const int D = sdw_t5_d_model(t5);
    float *h = malloc(sizeof(float) * N_PROMPTS * L * D);
    sdw_arena arena = { 0 };
    for (int b = 0; b < N_PROMPTS; b++)
        assert_int_equal(sdw_t5_encode(be, &arena, t5, ids + b * L, L, h + (size_t)b * L * D), SDW_OK);
    snprintf(name, sizeof name, "t5_%d.last_hidden_state", L);
    check_ref(ref, name, h, (size_t)N_PROMPTS * L * D, F32_GATE);
    sdw_arena_free(&arena);
    free(ids);
    free(h);
}

static void test_encoders(void **state)
{
    (void)state;
    text_paths();
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    sdw_sd3_text t;
    load_files(be, true, &t);
    /* the sizes the files tell, heads 2 (narrower than 64), activations by role */
    assert_int_equal(t.clip_l->cfg.width, 8);
    assert_int_equal(t.clip_l->cfg.heads, 2);
    assert_int_equal(t.clip_l->cfg.act, SDW_CLIP_QUICK_GELU);
    assert_int_equal(t.clip_g->cfg.width, 12);
    assert_int_equal(t.clip_g->cfg.act, SDW_CLIP_GELU);
    assert_int_equal(sdw_sd3_text_pooled_dim(&t), POOLED);
    assert_int_equal(t.joint_dim, JOINT);
    sdw_safetensors *ref = test_open_st(REF);
    check_clip(be, t.clip_l, ref, "clip_l");
    check_clip(be, t.clip_g, ref, "clip_g");
    check_t5(be, t.t5, ref, 256);
    check_t5(be, t.t5, ref, 77);
    sdw_st_close(ref);
    sdw_sd3_text_free(&t);
    sdw_backend_free(be);
}

/* ------------------------------------------------------------ the conditioning */

/* Every prompt through sdw_sd3_encode against <tag>prompt_embeds and
 * <tag>pooled_prompt_embeds; prints the worst rel L2 of each. */
static void check_cond(sdw_backend *be, const sdw_sd3_text *t, const sdw_safetensors *ref, const char *tag,
                       int t5_len, int clip_skip, int want_tokens, double gate)
{
    char name[96];
    int64_t n;
    snprintf(name, sizeof name, "%sprompt_embeds", tag);
    float *emb = test_load_f32(ref, name, &n);
    snprintf(name, sizeof name, "%spooled_prompt_embeds", tag);
    float *pool = test_load_f32(ref, name, NULL);
    assert_int_equal(n, (int64_t)N_PROMPTS * want_tokens * JOINT);
    sdw_arena arena = { 0 };
    double worst_c = 0, worst_p = 0;
    for (int p = 0; p < N_PROMPTS; p++) {
        float *ctx = NULL, pooled[POOLED];
        int n_ctx = 0;
        if (sdw_sd3_encode(be, &arena, t, prompts[p], t5_len, clip_skip, &ctx, &n_ctx, pooled) != SDW_OK)
            fail_msg("%s", sdw_last_error());
        assert_int_equal(n_ctx, want_tokens);
        const size_t per = (size_t)want_tokens * JOINT;
        const double ec = test_rel_l2(ctx, emb + p * per, per), ep = test_rel_l2(pooled, pool + p * POOLED, POOLED);
        if (!(ec < gate) || !(ep < gate))
            fail_msg("%s prompt %d: prompt_embeds rel L2 %.3g (max abs %.3g), pooled %.3g (gate %g)", tag, p, ec,
                     test_max_abs(ctx, emb + p * per, per), ep, gate);
        worst_c = fmax(worst_c, ec);
        worst_p = fmax(worst_p, ep);
        free(ctx);
    }
    printf("  %-12s T5 %-3d clip skip %d: [%d, %d] worst rel L2 prompt_embeds %.2e, pooled %.2e (gate %g)\n",
           *tag ? tag : "default", t->t5 ? t5_len : 0, clip_skip, want_tokens, JOINT, worst_c, worst_p, gate);
    sdw_arena_free(&arena);
    free(emb);
    free(pool);
}

static void test_conditioning(void **state)
{
    (void)state;
    text_paths();
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    sdw_safetensors *ref = test_open_st(REF);
    sdw_sd3_text t, no_t5;
    load_files(be, true, &t);
    check_cond(be, &t, ref, "", 256, 0, 333, F32_GATE);
    check_cond(be, &t, ref, "t5len77.", 77, 0, 154, F32_GATE);
    /* diffusers clip_skip 1 = hidden_states[-3] = A1111's 3; 1 and 2 are the default */
    check_cond(be, &t, ref, "clip_skip1.", 256, 3, 333, F32_GATE);
    check_cond(be, &t, ref, "", 256, 2, 333, F32_GATE);
    load_files(be, false, &no_t5);
    assert_null(no_t5.t5);
    check_cond(be, &no_t5, ref, "noT5.", 256, 0, 154, F32_GATE);
    sdw_sd3_text_free(&no_t5);
    /* without T5 and without the transformer's width there is no context width */
    assert_int_equal(sdw_sd3_text_load_files(be, te_paths[0], te_paths[1], NULL, &no_t5), SDW_OK);
    float *ctx = NULL, pooled[POOLED];
    int n_ctx;
    sdw_arena arena = { 0 };
    assert_int_equal(sdw_sd3_encode(be, &arena, &no_t5, "x", 256, 0, &ctx, &n_ctx, pooled), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "joint_attention_dim"));
    assert_int_equal(sdw_sd3_encode(be, &arena, &t, "x", 0, 0, &ctx, &n_ctx, pooled), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_sd3_encode(be, &arena, &t, "x", 513, 0, &ctx, &n_ctx, pooled), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_sd3_encode(be, &arena, &t, "x", 77, 4, &ctx, &n_ctx, pooled), SDW_ERR_INVALID_ARG);
    assert_null(ctx);
    sdw_clear_error();
    sdw_arena_free(&arena);
    sdw_sd3_text_free(&no_t5);
    sdw_sd3_text_free(&t);
    sdw_st_close(ref);
    sdw_backend_free(be);
}

/* A1111 syntax on the CLIP part: a weight of 1 and a <lora:> tag change
 * nothing; emphasis scales the emphasised tokens' CLIP rows (mean restored)
 * and leaves T5 and pooled alone; a long prompt takes two CLIP chunks. */
static void test_prompt_syntax(void **state)
{
    (void)state;
    text_paths();
    load_prompts();
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    sdw_sd3_text t;
    load_files(be, true, &t);
    sdw_arena arena = { 0 };
    float *base, *same, *emph, pb[POOLED], ps[POOLED], pe[POOLED];
    int nb, ns, ne;
    assert_int_equal(sdw_sd3_encode(be, &arena, &t, "a red fox in the snow", 77, 0, &base, &nb, pb), SDW_OK);
    assert_int_equal(sdw_sd3_encode(be, &arena, &t, "a (red:1.0) fox <lora:foo:0.7>in the snow", 77, 0, &same, &ns,
                                    ps), SDW_OK);
    assert_int_equal(ns, nb);
    assert_memory_equal(same, base, sizeof(float) * nb * JOINT);
    assert_memory_equal(ps, pb, sizeof pb);
    assert_int_equal(sdw_sd3_encode(be, &arena, &t, "a (red:1.5) fox in the snow", 77, 0, &emph, &ne, pe), SDW_OK);
    assert_int_equal(ne, nb);
    assert_memory_equal(pe, pb, sizeof pb);
    /* T5 rows identical; CLIP rows: "red" (token 2) scaled by 1.5 x k, the others by k */
    assert_memory_equal(emph + 77 * JOINT, base + 77 * JOINT, sizeof(float) * 77 * JOINT);
    double before = 0, after = 0;
    for (int i = 0; i < 77 * JOINT; i++) {
        before += base[i];
        after += emph[i];
    }
    assert_true(fabs(after - before) < 1e-4 * fabs(before) + 1e-5);
    const double k = emph[0] / (double)base[0];
    for (int r = 0; r < 77; r++)
        for (int c = 0; c < 20; c++) {
            const double want = base[r * JOINT + c] * k * (r == 2 ? 1.5 : 1.0);
            if (fabs(emph[r * JOINT + c] - want) > 1e-5 * (1 + fabs(want)))
                fail_msg("emphasis: row %d col %d is %g, want %g", r, c, emph[r * JOINT + c], want);
        }
    assert_true(fabs(k - 1.0) > 1e-6);
    free(base); free(same); free(emph);

    /* past 75 tokens: two CLIP chunks, then T5; min_chunks pads a short prompt to match */
    char longp[2048] = "";
    for (int i = 0; i < 20; i++) strcat(longp, "a photo of a red fox, ");
    int chunks = 0;
    assert_int_equal(sdw_sd3_prompt_chunks(longp, &chunks), SDW_OK);
    assert_int_equal(chunks, 2);
    float *lc, *sc;
    int nl, nsc;
    assert_int_equal(sdw_sd3_encode(be, &arena, &t, longp, 77, 0, &lc, &nl, pb), SDW_OK);
    assert_int_equal(nl, 2 * 77 + 77);
    assert_int_equal(sdw_sd3_encode_chunks(be, &arena, &t, "", 2, 77, 0, &sc, &nsc, ps), SDW_OK);
    assert_int_equal(nsc, 2 * 77 + 77);
    /* the padding chunk is the empty prompt's chunk */
    test_check_close("padding chunk = empty prompt", sc + 77 * JOINT, sc, 77 * JOINT, 1e-6);
    free(lc);
    free(sc);
    sdw_arena_free(&arena);
    sdw_sd3_text_free(&t);
    sdw_backend_free(be);
}

/* ------------------------------------------------------------ all-in-one */

/* Writes the three encoders under their all-in-one prefixes (and a stand-in
 * transformer tensor) into path, the T5 embedding under both its names as
 * the official files have it. */
static void write_aio(const char *path, bool with_t5)
{
    static const char *const prefixes[3] = { SDW_SD3_AIO_CLIP_L, SDW_SD3_AIO_CLIP_G, SDW_SD3_AIO_T5 };
    sdw_safetensors *st[3];
    int total = 2;
    for (int i = 0; i < 3; i++) {
        if (sdw_st_open(te_paths[i], &st[i]) != SDW_OK) fail_msg("%s", sdw_last_error());
        total += st[i]->n_tensors;
    }
    sdw_st_out *out = calloc((size_t)total, sizeof *out);
    char **names = calloc((size_t)total, sizeof *names);
    float **data = calloc((size_t)total, sizeof *data);
    static const int64_t one = 4;
    static const float four[4] = { 1, 2, 3, 4 };
    int n = 0;
    out[n++] = (sdw_st_out){ "model.diffusion_model.x_embedder.proj.bias", 1, &one, four };
    for (int i = 0; i < (with_t5 ? 3 : 2); i++)
        for (int k = 0; k < st[i]->n_tensors; k++) {
            const sdw_st_tensor *tt = &st[i]->tensors[k];
            names[n] = malloc(strlen(prefixes[i]) + strlen(tt->name) + 1);
            sprintf(names[n], "%s%s", prefixes[i], tt->name);
            data[n] = test_load_f32(st[i], tt->name, NULL);
            out[n] = (sdw_st_out){ names[n], tt->ndim, tt->shape, data[n] };
            n++;
            if (i == 2 && !strcmp(tt->name, "shared.weight")) {
                names[n] = strdup(SDW_SD3_AIO_T5 "encoder.embed_tokens.weight");
                data[n] = test_load_f32(st[i], tt->name, NULL);
                out[n] = (sdw_st_out){ names[n], tt->ndim, tt->shape, data[n] };
                n++;
            }
        }
    if (sdw_st_write_f32(path, out, n) != SDW_OK) fail_msg("%s", sdw_last_error());
    for (int i = 0; i < n; i++) {
        free(names[i]);
        free(data[i]);
    }
    free(names); free(data); free(out);
    for (int i = 0; i < 3; i++) sdw_st_close(st[i]);
}

static void test_all_in_one(void **state)
{
    (void)state;
    text_paths();
    load_prompts();
    char dir[] = "/tmp/sdw_sd3_text_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/sd3_aio.safetensors", dir);
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    sdw_safetensors *ref = test_open_st(REF);
    for (int with_t5 = 1; with_t5 >= 0; with_t5--) {
        write_aio(path, with_t5);
        sdw_safetensors *st;
        assert_int_equal(sdw_st_open(path, &st), SDW_OK);
        bool has_t5 = !with_t5;
        assert_true(sdw_sd3_text_aio_present(st, &has_t5));
        assert_true(has_t5 == with_t5);
        sdw_sd3_text t;
        if (sdw_sd3_text_load_aio(be, st, path, &t) != SDW_OK) fail_msg("%s", sdw_last_error());
        sdw_st_close(st);
        assert_true((t.t5 != NULL) == with_t5);
        assert_non_null(strstr(t.what[1], "text_encoders.clip_g.transformer."));
        assert_int_equal(sdw_sd3_text_check(&t, JOINT, POOLED), SDW_OK);
        if (with_t5) check_cond(be, &t, ref, "", 256, 0, 333, F32_GATE);
        else check_cond(be, &t, ref, "noT5.", 256, 0, 154, F32_GATE);
        sdw_sd3_text_free(&t);
    }
    /* a plain text-encoder file is no all-in-one checkpoint */
    sdw_safetensors *st;
    assert_int_equal(sdw_st_open(te_paths[0], &st), SDW_OK);
    assert_false(sdw_sd3_text_aio_present(st, NULL));
    sdw_sd3_text t;
    assert_int_equal(sdw_sd3_text_load_aio(be, st, te_paths[0], &t), SDW_ERR_FORMAT);
    assert_non_null(strstr(sdw_last_error(), "text_encoders.clip_l.transformer."));
    sdw_clear_error();
    sdw_st_close(st);
    sdw_st_close(ref);
    sdw_backend_free(be);
    unlink(path);
    rmdir(dir);
}

/* ------------------------------------------------------------ refusals */

/* A header-only CLIP tower of real size, its data a hole in a sparse file:
 * enough for the loader to tell what it is before it reads a weight. */
static void write_fake_clip(const char *path, int width, int layers)
{
    char *hdr = malloc(1 << 16);
    size_t off = 0, len = 0;
    len += (size_t)sprintf(hdr + len, "{");
#define TENSOR(fmt, arg, d0, d1, nd)                                                                                   \
    do {                                                                                                              \
        const size_t bytes = (size_t)(d0) * ((nd) == 2 ? (size_t)(d1) : 1) * 2;                                       \
        len += (size_t)sprintf(hdr + len, "%s\"" fmt "\":{\"dtype\":\"F16\",\"shape\":", len > 1 ? "," : "", arg);    \
        if ((nd) == 2) len += (size_t)sprintf(hdr + len, "[%d,%d]", (int)(d0), (int)(d1));                           \
        else len += (size_t)sprintf(hdr + len, "[%d]", (int)(d0));                                                    \
        len += (size_t)sprintf(hdr + len, ",\"data_offsets\":[%zu,%zu]}", off, off + bytes);                          \
        off += bytes;                                                                                                 \
    } while (0)
    TENSOR("%s", "text_model.embeddings.token_embedding.weight", 49408, width, 2);
    TENSOR("%s", "text_model.embeddings.position_embedding.weight", 77, width, 2);
    TENSOR("%s", "text_projection.weight", width, width, 2);
    for (int i = 0; i < layers; i++) TENSOR("text_model.encoder.layers.%d.layer_norm1.weight", i, width, 0, 1);
#undef TENSOR
    len += (size_t)sprintf(hdr + len, "}");
    while (len % 8) hdr[len++] = ' ';
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    assert_true(fd >= 0);
    const uint64_t n = len;
    assert_int_equal(write(fd, &n, 8), 8);
    assert_int_equal(write(fd, hdr, len), (ssize_t)len);
    assert_int_equal(ftruncate(fd, (off_t)(8 + len + off)), 0);
    close(fd);
    free(hdr);
}

static void expect_clip_refused(sdw_backend *be, sdw_sd3_clip_kind kind, const char *file, const char *needle)
{
    sdw_safetensors *st;
    if (sdw_st_open(file, &st) != SDW_OK) fail_msg("%s", sdw_last_error());
    sdw_sd3_text t = { 0 };
    assert_int_equal(sdw_sd3_text_load_clip(be, &t, kind, st, "", file, file), SDW_ERR_FORMAT);
    const char *msg = sdw_last_error();
    if (!strstr(msg, file) || !strstr(msg, needle)) fail_msg("message '%s' lacks the file or '%s'", msg, needle);
    printf("  refused: %s\n", msg);
    assert_null(t.clip_l);
    assert_null(t.clip_g);
    sdw_clear_error();
    sdw_st_close(st);
}

static void test_refusals(void **state)
{
    (void)state;
    text_paths();
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    /* the T5 file where a CLIP goes, a CLIP file where the T5 goes */
    expect_clip_refused(be, SDW_SD3_CLIP_L, te_paths[2], "T5");
    sdw_sd3_text t;
    assert_int_equal(sdw_sd3_text_load_files(be, te_paths[0], te_paths[1], te_paths[0], &t), SDW_ERR_FORMAT);
    assert_non_null(strstr(sdw_last_error(), te_paths[0]));
    assert_non_null(strstr(sdw_last_error(), "CLIP text encoder, not the T5"));
    assert_null(t.clip_l);
    sdw_clear_error();
    /* FLUX's CLIP-L has no text_projection: refused as CLIP-G, taken as CLIP-L (unprojected pooled) */
    char flux_l[1024];
    snprintf(flux_l, sizeof flux_l, "%s", test_data_path("flux/models/flux-tiny-common/clip_l.safetensors"));
    expect_clip_refused(be, SDW_SD3_CLIP_G, flux_l, "text_projection");
    assert_int_equal(sdw_sd3_text_load_files(be, flux_l, te_paths[1], NULL, &t), SDW_OK);
    assert_int_equal(t.clip_l->cfg.proj, 0);
    assert_int_equal(sdw_sd3_text_pooled_dim(&t), 20);
    sdw_sd3_text_free(&t);

    /* real sizes: CLIP-L (768 x 12) and CLIP-G (1280 x 32) swapped, an SD2 ViT-H (1024 x 24) */
    char dir[] = "/tmp/sdw_sd3_fake_XXXXXX", l[64], g[64], h[64];
    assert_non_null(mkdtemp(dir));
    snprintf(l, sizeof l, "%s/clip_l.safetensors", dir);
    snprintf(g, sizeof g, "%s/clip_g.safetensors", dir);
    snprintf(h, sizeof h, "%s/vit_h.safetensors", dir);
    write_fake_clip(l, 768, 12);
    write_fake_clip(g, 1280, 32);
    write_fake_clip(h, 1024, 24);
    expect_clip_refused(be, SDW_SD3_CLIP_G, l, "is a CLIP-L text encoder (768 wide, 12 layers), not the CLIP-G");
    expect_clip_refused(be, SDW_SD3_CLIP_L, g, "is a CLIP-G text encoder (1280 wide, 32 layers), not the CLIP-L");
    expect_clip_refused(be, SDW_SD3_CLIP_G, h, "1024 wide with 24 layers is not SD3's CLIP-G");
    unlink(l); unlink(g); unlink(h);
    rmdir(dir);

    /* widths that do not fit the transformer: the T5's d_model, the pooled sum */
    load_files(be, true, &t);
    assert_int_equal(sdw_sd3_text_check(&t, 64, POOLED), SDW_ERR_FORMAT);
    assert_non_null(strstr(sdw_last_error(), te_paths[2]));
    assert_non_null(strstr(sdw_last_error(), "T5 encoder is 32 wide"));
    printf("  refused: %s\n", sdw_last_error());
    assert_int_equal(sdw_sd3_text_check(&t, JOINT, 2048), SDW_ERR_FORMAT);
    assert_non_null(strstr(sdw_last_error(), te_paths[0]));
    assert_non_null(strstr(sdw_last_error(), "2048"));
    printf("  refused: %s\n", sdw_last_error());
    sdw_sd3_text_free(&t);
    load_files(be, false, &t);
    assert_int_equal(sdw_sd3_text_check(&t, 16, POOLED), SDW_ERR_FORMAT); /* 8 + 12 CLIP features in 16 */
    assert_non_null(strstr(sdw_last_error(), "do not fit"));
    sdw_clear_error();
    sdw_sd3_text_free(&t);
    sdw_backend_free(be);
}

/* ------------------------------------------------------------ bf16 */

static void test_bf16(void **state)
{
    (void)state;
    if (!test_precision_runs(SDW_PRECISION_BF16)) return;
    text_paths();
    load_prompts();
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_BF16, &be), SDW_OK);
    sdw_safetensors *ref = test_open_st(REF);
    sdw_sd3_text t;
    load_files(be, true, &t);
    check_cond(be, &t, ref, "", 256, 0, 333, BF16_GATE);
    sdw_sd3_text_free(&t);
    load_files(be, false, &t);
    check_cond(be, &t, ref, "noT5.", 256, 0, 154, BF16_GATE);
    sdw_sd3_text_free(&t);
    sdw_st_close(ref);
    sdw_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_ids),    cmocka_unit_test(test_encoders), cmocka_unit_test(test_conditioning),
        cmocka_unit_test(test_prompt_syntax), cmocka_unit_test(test_all_in_one), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
