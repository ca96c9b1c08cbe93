/* test_fullsize_sd3.c: the SD3 / SD3.5 files of sdw-make-fullsize
 * (tools/fullsize, SD3.md there): the tensor lists against
 * tests/data/sd3/fullsize_shapes.json (the real files' names and shapes;
 * SD3's T5 = FLUX's list), the SD3 GGUF's type rules (ComfyUI-GGUF's
 * lcpp_sd3.patch), and the whole chain on the mini lists (real depths, width
 * 64): written in both layouts to a temp folder, read back tensor by tensor,
 * loaded with sdw_model_load (Stability's single file with its VAE; the
 * MMDiT as a Q8_0 GGUF with the VAE beside it; CLIP-L, CLIP-G and the fp8 T5
 * each their own file), run through all 24 / 38 blocks with every
 * activation finite, then one 64x64 pipeline step with CFG (two
 * evaluations). Full-size files are 2.3-16.5 GB: written by `sd-worker bench
 * --family sd3*`, not here. */
#include "fullsize_kit.h"
#include "io/json_file.h"
#include "io/quant.h"
#include "models/mmdit.h"
#include "models/model.h"
#include "pipeline/pipeline.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MMDIT "model.diffusion_model."
#define VAE "first_stage_model."

/* ---------------------------------------------------------------- lists */

/* The json's file whose key begins with start. */
static const cJSON *json_file(const cJSON *files, const char *start)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, files) if (!strncmp(f->string, start, strlen(start))) return f;
    fail_msg("fullsize_shapes.json has no file %s*", start);
    return NULL;
}

/* Every [name, shape] of file (names beginning with strip, that cut; others
 * skipped unless strip is "") is in l with that shape; returns how many. */
static size_t match_file(const fs_list *l, const char *what, const cJSON *file, const char *strip, const char *skip)
{
    size_t n = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, file)
    {
        const char *name = cJSON_GetArrayItem(t, 0)->valuestring;
        const cJSON *shape = cJSON_GetArrayItem(t, 1);
        if (skip && !strcmp(name, skip)) continue;
        if (strncmp(name, strip, strlen(strip))) fail_msg("%s: %s has no prefix %s", what, name, strip);
        const fs_tensor *ft = fs_kit_find(l, name + strlen(strip));
        if (!ft) fail_msg("%s: %s missing", what, name);
        assert_int_equal(ft->ndim, cJSON_GetArraySize(shape));
        for (int d = 0; d < ft->ndim; d++)
            assert_true((double)ft->shape[d] == cJSON_GetArrayItem(shape, d)->valuedouble);
        if (ft->init == FS_WEIGHT) { /* fan_in = the dims after the first (linear in; conv in x kh x kw) */
            double fan_in = 1;
            for (int d = 1; d < ft->ndim; d++) fan_in *= (double)ft->shape[d];
            assert_true(ft->param == fan_in);
        }
        n++;
    }
    return n;
}

static void check_dtype(const fs_list *l, fs_dtype dt)
{
    for (size_t i = 0; i < l->n; i++) assert_int_equal(l->t[i].dtype, dt);
}

/* Every list holds exactly the real file's tensors (the dtype is the usual
 * distribution's: the json has none). */
static void lists_match_real_shapes(void **state)
{
    (void)state;
    static const struct {
        const char *fam, *json, *count;
        fs_dtype dt;
    } mm[] = {
        {"sd3-medium", "sd3_medium.safetensors", "sd3_medium", FS_F16},
        {"sd35-medium", "sd3.5_medium.safetensors", "sd3.5_medium", FS_BF16},
        {"sd35-large", "sd3.5_large.safetensors", "sd3.5_large", FS_BF16},
    };
    cJSON *j;
    assert_int_equal(sdw_json_load_file(test_data_path("sd3/fullsize_shapes.json"), &j), SDW_OK);
    const cJSON *files = cJSON_GetObjectItem(j, "files"), *counts = cJSON_GetObjectItem(j, "parameter_counts");
    const cJSON *vae = json_file(files, "first_stage_model");
    const double vae_params = cJSON_GetObjectItem(counts, "vae")->valuedouble;
    char name[64];
    for (size_t p = 0; p < sizeof mm / sizeof mm[0]; p++) {
        const double params = cJSON_GetObjectItem(counts, mm[p].count)->valuedouble;
        fs_list l;
        fs_kit_load_list(mm[p].fam, &l); /* the single file: MMDiT + VAE under their prefixes */
        size_t n = match_file(&l, mm[p].fam, json_file(files, mm[p].json), "", NULL) +
                   match_file(&l, mm[p].fam, vae, "", NULL);
        assert_int_equal(n, l.n);
        assert_true((double)l.params == params + vae_params);
        check_dtype(&l, mm[p].dt);
        printf("  %-18s %4zu tensors, %11llu parameters = %s + VAE\n", mm[p].fam, l.n, (unsigned long long)l.params,
               mm[p].json);
        fs_list_free(&l);
        snprintf(name, sizeof name, "%s-mmdit", mm[p].fam); /* the GGUF's: bare names */
        fs_kit_load_list(name, &l);
        assert_int_equal(match_file(&l, name, json_file(files, mm[p].json), MMDIT, NULL), l.n);
        assert_true((double)l.params == params);
        check_dtype(&l, mm[p].dt);
        fs_list_free(&l);
    }
    static const struct {
        const char *list, *json, *count, *strip, *skip;
    } parts[] = {
        {"sd3-vae", "first_stage_model", "vae", VAE, NULL},
        {"sd3-clip_l", "clip_l", "clip_l", "", NULL},
        {"sd3-clip_g", "clip_g", "clip_g", "", NULL},
        /* SD3's T5 is FLUX's: the official file adds a copy of shared.weight. */
        {"flux-t5xxl", "t5xxl", "t5xxl", "", "encoder.embed_tokens.weight"},
    };
    for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
        fs_list l;
        fs_kit_load_list(parts[p].list, &l);
        assert_int_equal(match_file(&l, parts[p].list, json_file(files, parts[p].json), parts[p].strip, parts[p].skip),
                         l.n);
        const cJSON *c;
        double params = -1;
        cJSON_ArrayForEach(c, counts) if (!strncmp(c->string, parts[p].count, strlen(parts[p].count))) params =
            c->valuedouble;
        assert_true((double)l.params == params);
        check_dtype(&l, FS_F16);
        printf("  %-18s %4zu tensors, %11llu parameters\n", parts[p].list, l.n, (unsigned long long)l.params);
        fs_list_free(&l);
    }
    cJSON_Delete(j);
}

/* city96's SD3 rules: small and 1-D tensors F32, the embedders, the final
 * layer, pos_embed and the patch conv at the source dtype, the rest Q8_0;
 * architecture "sd3"; a single file's prefixed names refused. */
static void gguf_rules(void **state)
{
    (void)state;
    fs_list l;
    fs_kit_load_list("sd35-large-mmdit", &l);
    assert_string_equal(fs_gguf_arch(&l), "sd3");
    static const struct {
        const char *name;
        fs_dtype want;
    } cases[] = {
        {"pos_embed", FS_BF16},
        {"x_embedder.proj.weight", FS_BF16},
        {"x_embedder.proj.bias", FS_F32},
        {"t_embedder.mlp.0.weight", FS_BF16},
        {"y_embedder.mlp.2.weight", FS_BF16},
        {"context_embedder.weight", FS_BF16},
        {"final_layer.linear.weight", FS_BF16},
        {"final_layer.adaLN_modulation.1.weight", FS_BF16},
        {"joint_blocks.0.x_block.attn.qkv.weight", FS_Q8_0},
        {"joint_blocks.0.x_block.attn.ln_q.weight", FS_F32},
        {"joint_blocks.37.context_block.adaLN_modulation.1.weight", FS_Q8_0},
        {"joint_blocks.12.x_block.mlp.fc2.weight", FS_Q8_0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const fs_tensor *t = fs_kit_find(&l, cases[i].name);
        assert_non_null(t);
        if (fs_stored_type(&l, t, FS_FORMAT_GGUF_Q8_0) != cases[i].want)
            fail_msg("%s stored as %s, not %s", t->name, fs_dtype_name(fs_stored_type(&l, t, FS_FORMAT_GGUF_Q8_0)),
                     fs_dtype_name(cases[i].want));
    }
    fs_list_free(&l);
    fs_kit_load_list("flux-schnell", &l);
    assert_string_equal(fs_gguf_arch(&l), "flux");
    fs_list_free(&l);

    fs_kit_load_list("sd3-mini-medium", &l);
    fs_kit_file_sink fsk = {fopen("/dev/null", "wb")};
    assert_non_null(fsk.f);
    fs_sink s = {fs_kit_put, NULL, NULL, &fsk};
    uint64_t total;
    char err[256];
    assert_int_equal(fs_write(&l, FS_FORMAT_GGUF_Q8_0, 1, &s, &total, err, sizeof err), -1);
    assert_non_null(strstr(err, "bare names"));
    fclose(fsk.f);
    fs_list_free(&l);
}

/* ---------------------------------------------------------------- the mini set */

static char tmpdir[256];

static void write_one(const char *list, fs_format f, const char *file, char *path, size_t n)
{
    fs_kit_write_one(tmpdir, list, f, file, path, n);
}

/* The file holds the recipe's values (fs_kit_check_file), its tensors at the format's types. */
static void check_file(const char *list, fs_format f, const char *path)
{
    int seen[5];
    fs_kit_check_file(list, f, path, "sd3", seen);
    fs_list l;   /* the list's own dtype, its first tensor's, stays beside Q8_0 */
    fs_kit_load_list(list, &l);
    if (f == FS_FORMAT_GGUF_Q8_0) assert_true(seen[FS_F32] && seen[l.t[0].dtype] && seen[FS_Q8_0]);
    fs_list_free(&l);
    if (f == FS_FORMAT_FP8) assert_true(seen[FS_F8_E4M3] && seen[FS_F16]);
}

/* One MMDiT pass on unit-variance noise at sigma 1 (the first step's input), taps on every block. */
static void run_forward(sdw_model *m, fs_kit_act_stats *a)
{
    const sdw_mmdit_config *c = sdw_mmdit_get_config(m->mmdit);
    const int h = 8, w = 8, n_ctx = 77 + 32;
    float *x = malloc((size_t)c->in_channels * h * w * sizeof(float));
    float *out = malloc((size_t)c->out_channels * h * w * sizeof(float));
    float *ctx = malloc((size_t)n_ctx * c->joint_dim * sizeof(float)), *pooled = malloc((size_t)c->pooled_dim * 4);
    assert_true(x && out && ctx && pooled);
    test_fill(x, (size_t)c->in_channels * h * w, 1);
    for (size_t i = 0; i < (size_t)c->in_channels * h * w; i++) x[i] *= 1.7f; /* ~unit variance noise */
    test_fill(ctx, (size_t)n_ctx * c->joint_dim, 2);
    test_fill(pooled, (size_t)c->pooled_dim, 3);
    snprintf(a->show[0], sizeof a->show[0], "block%d.hidden_states", c->depth - 1);
    sdw_mmdit_input in = {x, h, w, 1000.0f, ctx, n_ctx, pooled, NULL, fs_kit_on_tap, a};
    sdw_arena arena = {0};
    assert_int_equal(sdw_mmdit_forward(m->be, &arena, m->mmdit, &in, out), SDW_OK);
    for (size_t i = 0; i < (size_t)c->out_channels * h * w; i++) assert_true(isfinite(out[i]));
    sdw_arena_free(&arena);
    free(x);
    free(out);
    free(ctx);
    free(pooled);
}

typedef struct {
    const char *clip_l, *clip_g, *t5;
} text_files;

static void load_and_step(const char *what, sdw_family family, int depth, const char *model, const char *vae,
                          const text_files *tx)
{
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    lp.vae_path = vae;
    lp.clip_l_path = tx->clip_l;
    lp.clip_g_path = tx->clip_g;
    lp.t5_path = tx->t5;
    sdw_model *m;
    if (sdw_model_load(model, &lp, &m) != SDW_OK) fail_msg("%s: %s", what, sdw_last_error());
    assert_int_equal(m->info.family, family);
    assert_int_equal(sdw_mmdit_get_config(m->mmdit)->depth, depth);

    fs_kit_act_stats a = {0};
    run_forward(m, &a);
    assert_true(a.taps >= 2 * depth);
    assert_int_equal(a.bad, 0);
    printf("  %s: every block finite, max |activation| %.2f\n", what, a.max_abs);
    assert_true(a.max_abs < 1e4);

    /* cfg 7: two evaluations, negative and positive */
    printf("  %s: 64x64 one step at cfg 7, image mean %.3f\n", what, fs_kit_one_step(m, what, 7.0f));
    sdw_model_free(m);
}

static void mini_set_writes_loads_runs(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sdw_test_fullsize_sd3_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char sd3[512], m35[512], l35[512], l35g[512], vae[512], cl[512], cg[512], t5[512];
    write_one("sd3-mini-medium", FS_FORMAT_SAFETENSORS, "sd3_medium.safetensors", sd3, sizeof sd3);
    write_one("sd35-mini-medium-mmdit", FS_FORMAT_GGUF_Q8_0, "sd3.5_medium-Q8_0.gguf", m35, sizeof m35);
    write_one("sd35-mini-large", FS_FORMAT_SAFETENSORS, "sd3.5_large.safetensors", l35, sizeof l35);
    write_one("sd35-mini-large-mmdit", FS_FORMAT_GGUF_Q8_0, "sd3.5_large-Q8_0.gguf", l35g, sizeof l35g);
    write_one("sd3-mini-vae", FS_FORMAT_SAFETENSORS, "vae.safetensors", vae, sizeof vae);
    write_one("sd3-mini-clip_l", FS_FORMAT_SAFETENSORS, "clip_l.safetensors", cl, sizeof cl);
    write_one("sd3-mini-clip_g", FS_FORMAT_SAFETENSORS, "clip_g.safetensors", cg, sizeof cg);
    write_one("flux-mini-t5xxl", FS_FORMAT_FP8, "t5xxl_fp8_e4m3fn.safetensors", t5, sizeof t5);
    check_file("sd3-mini-medium", FS_FORMAT_SAFETENSORS, sd3);
    check_file("sd35-mini-medium-mmdit", FS_FORMAT_GGUF_Q8_0, m35);
    check_file("sd35-mini-large", FS_FORMAT_SAFETENSORS, l35);
    check_file("sd35-mini-large-mmdit", FS_FORMAT_GGUF_Q8_0, l35g);
    check_file("sd3-mini-vae", FS_FORMAT_SAFETENSORS, vae);
    check_file("sd3-mini-clip_l", FS_FORMAT_SAFETENSORS, cl);
    check_file("sd3-mini-clip_g", FS_FORMAT_SAFETENSORS, cg);
    check_file("flux-mini-t5xxl", FS_FORMAT_FP8, t5);

    const text_files tx = {cl, cg, t5};
    load_and_step("sd3-medium F16 single file", SDW_FAMILY_SD3, 24, sd3, NULL, &tx);
    load_and_step("sd3.5-medium Q8_0 GGUF + VAE", SDW_FAMILY_SD35_MEDIUM, 24, m35, vae, &tx);
    load_and_step("sd3.5-large BF16 single file", SDW_FAMILY_SD35_LARGE, 38, l35, NULL, &tx);
    load_and_step("sd3.5-large Q8_0 GGUF + VAE", SDW_FAMILY_SD35_LARGE, 38, l35g, vae, &tx);
    const char *files[] = {sd3, m35, l35, l35g, vae, cl, cg, t5};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) unlink(files[i]);
    rmdir(tmpdir);
}

int main(void)
{
    /* One thread: with ctest running tests side by side on few cores,
     * OpenMP barriers of tiny ops waiting on descheduled threads cost more
     * than the work. */
    omp_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lists_match_real_shapes),
        cmocka_unit_test(gguf_rules),
        cmocka_unit_test(mini_set_writes_loads_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
