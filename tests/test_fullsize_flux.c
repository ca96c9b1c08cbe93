/* test_fullsize_flux.c: the FLUX files of sdw-make-fullsize (tools/fullsize,
 * FLUX.md there): the tensor lists against tests/data/flux/fullsize_shapes.json
 * (the real files' names, shapes and dtypes), the bf16 / fp8 / Q8_0 encoders
 * against the project's decoders, and the whole chain on the flux-mini lists
 * (real depths, width 64): written in every format to a temp folder, read
 * back tensor by tensor, loaded with sdw_model_load (dev: BF16 transformer +
 * fp16 T5; schnell: Q8_0 GGUF transformer + fp8 T5; both with ae and
 * clip_l) and run through all 19 + 38 blocks with every activation finite,
 * then for one 64x64 pipeline step. Full-size files are 5-24 GB: written by `sd-worker
 * bench --family flux-*`, not here. */
#include "fullsize_kit.h"
#include "core/half.h"
#include "io/json_file.h"
#include "io/quant.h"
#include "models/flux.h"
#include "models/model.h"
#include "pipeline/pipeline.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- lists */

/* Every list holds exactly the real file's tensors, at its usual dtype. */
static void lists_match_real_shapes(void **state)
{
    (void)state;
    static const struct {
        const char *list, *model;
    } pairs[] = {
        {"flux-dev", "flux1-dev.safetensors"}, {"flux-schnell", "flux1-schnell.safetensors"},
        {"flux-ae", "ae.safetensors"},         {"flux-clip_l", "clip_l.safetensors"},
        {"flux-t5xxl", "t5xxl_fp16.safetensors"},
    };
    cJSON *j;
    assert_int_equal(sdw_json_load_file(test_data_path("flux/fullsize_shapes.json"), &j), SDW_OK);
    const cJSON *models = cJSON_GetObjectItem(j, "models");
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        const cJSON *m = cJSON_GetObjectItem(models, pairs[p].model), *ts = cJSON_GetObjectItem(m, "tensors");
        fs_list l;
        fs_kit_load_list(pairs[p].list, &l);
        assert_int_equal(l.n, cJSON_GetArraySize(ts));
        assert_true((double)l.params == cJSON_GetObjectItem(m, "n_params")->valuedouble);
        const cJSON *t;
        cJSON_ArrayForEach(t, ts)
        {
            const char *name = cJSON_GetArrayItem(t, 0)->valuestring;
            const cJSON *shape = cJSON_GetArrayItem(t, 1);
            const fs_tensor *ft = fs_kit_find(&l, name);
            if (!ft) fail_msg("%s: %s missing", pairs[p].list, name);
            assert_int_equal(ft->ndim, cJSON_GetArraySize(shape));
            for (int d = 0; d < ft->ndim; d++)
                assert_true((double)ft->shape[d] == cJSON_GetArrayItem(shape, d)->valuedouble);
            assert_string_equal(fs_dtype_name(ft->dtype), cJSON_GetArrayItem(t, 2)->valuestring);
            /* fan_in = the product of the dims after the first (linear in, conv in x kh x kw) */
            if (ft->init == FS_WEIGHT) {
                double fan_in = 1;
                for (int d = 1; d < ft->ndim; d++) fan_in *= (double)ft->shape[d];
                assert_true(ft->param == fan_in);
            }
        }
        printf("  %-13s %4zu tensors, %12llu parameters = %s\n", pairs[p].list, l.n, (unsigned long long)l.params,
               pairs[p].model);
        fs_list_free(&l);
    }
    cJSON_Delete(j);
}

/* ---------------------------------------------------------------- encoders */

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* fp8 e4m3fn as torch: every code decodes and encodes back; ties go to the
 * even code; 464 rounds to 448, anything from 480 on is NaN (no saturation). */
static void f8_encoder(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        float v = sdw_f8_e4m3_to_f32((uint8_t)c);
        if (isnan(v)) continue;
        assert_int_equal(fs_f32_to_f8e4m3(v), c == 0x80 ? 0x80 : c);
    }
    assert_int_equal(fs_f32_to_f8e4m3(448.0f), 0x7E);
    assert_int_equal(fs_f32_to_f8e4m3(464.0f), 0x7E);            /* tie: 448 (mantissa 6, even) */
    assert_int_equal(fs_f32_to_f8e4m3(479.0f), 0x7F);            /* would round to 480: NaN */
    assert_int_equal(fs_f32_to_f8e4m3(-1e6f), 0xFF);
    assert_int_equal(fs_f32_to_f8e4m3(NAN) & 0x7F, 0x7F);
    assert_int_equal(fs_f32_to_f8e4m3(0x1p-10f), 0x00);          /* half the smallest subnormal: tie to 0 */
    assert_int_equal(fs_f32_to_f8e4m3(3 * 0x1p-10f), 0x02);      /* 1.5 units: tie to 2 */
    assert_int_equal(fs_f32_to_f8e4m3(1.0f + 0x1p-4f), 0x38);    /* tie between 1 and 1.125: 1 */
    assert_int_equal(fs_f32_to_f8e4m3(1.0f + 3 * 0x1p-4f), 0x3A);
    /* Nearest code for values across the range, sign by sign. */
    uint32_t s = 12345;
    for (int i = 0; i < 200000; i++) {
        s = s * 1664525u + 1013904223u;
        float x = ldexpf((float)(s >> 8) * 0x1p-24f + 0.5f, (int)(s % 24) - 14) * (s & 1 ? -1.0f : 1.0f);
        if (fabsf(x) >= 464.0f) continue;
        float got = sdw_f8_e4m3_to_f32(fs_f32_to_f8e4m3(x)), err = fabsf(got - x);
        for (int c = 0; c < 256; c++) {
            float v = sdw_f8_e4m3_to_f32((uint8_t)c);
            if (!isnan(v) && fabsf(v - x) < err) fail_msg("fp8 of %g: %g, but %g is nearer", x, got, v);
        }
    }
}

static void bf16_and_f16(void **state)
{
    (void)state;
    assert_int_equal(fs_f32_to_bf16(1.0f), 0x3F80);
    assert_int_equal(fs_f32_to_bf16(bits_f32(0x3F808000u)), 0x3F80); /* tie to even */
    assert_int_equal(fs_f32_to_bf16(bits_f32(0x3F818000u)), 0x3F82);
    assert_true(fs_bf16_to_f32(0xC040) == -3.0f);
    for (uint32_t h = 0; h < 0x7C00; h++) { /* every finite f16 round-trips */
        assert_true(fs_f16_to_f32((uint16_t)h) == sdw_f16_to_f32((uint16_t)h));
        assert_int_equal(fs_f32_to_f16(fs_f16_to_f32((uint16_t)(h | 0x8000))), h | 0x8000);
    }
}

/* Q8_0 as llama.cpp: d = max|x| / 127 (as f16), q = roundf(x / d); decoded
 * by the GGUF reader's dequantizer, every element within half a step. */
static void q8_0_block(void **state)
{
    (void)state;
    float x[32], y[32];
    uint8_t b[34];
    test_fill(x, 32, 7);
    x[5] = -2.5f;
    fs_q8_0_block(x, b);
    assert_int_equal((int8_t)b[2 + 5], -127);
    assert_true(sdw_dequantize(SDW_ST_Q8_0, b, y, 32));
    float d = fs_f16_to_f32((uint16_t)(b[0] | b[1] << 8));
    assert_true(fabsf(d - 2.5f / 127) < 1e-3f * d); /* d as f16 */
    for (int j = 0; j < 32; j++) assert_true(fabsf(y[j] - x[j]) <= 0.5f * d * 1.01f);
    memset(x, 0, sizeof x);
    fs_q8_0_block(x, b);
    for (int j = 0; j < 34; j++) assert_int_equal(b[j], 0);
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
    fs_kit_check_file(list, f, path, "flux", seen);
    if (f == FS_FORMAT_GGUF_Q8_0) assert_true(seen[FS_F32] && seen[FS_BF16] && seen[FS_Q8_0]);
    if (f == FS_FORMAT_FP8) assert_true(seen[FS_F8_E4M3] && seen[FS_F16]);
}

/* One transformer pass on noise at sigma 1 (the first step's input), taps on every block. */
static void run_forward(sdw_model *m, fs_kit_act_stats *a)
{
    const sdw_flux_config *c = sdw_flux_get_config(m->flux);
    int n_img = 16, n_txt = m->info.t5_max_length;
    float *img = malloc((size_t)n_img * c->in_channels * sizeof(float)), *ids = malloc((size_t)n_img * 3 * 4);
    float *txt = malloc((size_t)n_txt * c->context_dim * sizeof(float)), *tids = calloc((size_t)n_txt * 3, 4);
    float *y = malloc((size_t)c->vec_dim * sizeof(float)), *out = malloc((size_t)n_img * c->in_channels * 4);
    assert_true(img && ids && txt && tids && y && out);
    test_fill(img, (size_t)n_img * c->in_channels, 1);
    for (size_t i = 0; i < (size_t)n_img * c->in_channels; i++) img[i] *= 1.7f; /* ~unit variance noise */
    test_fill(txt, (size_t)n_txt * c->context_dim, 2);
    test_fill(y, (size_t)c->vec_dim, 3);
    sdw_flux_img_ids(8, 8, ids);
    sdw_flux_input in = {img, n_img, ids, txt, n_txt, tids, 1.0f, 3.5f, y, fs_kit_on_tap, a};
    sdw_arena arena = {0};
    assert_int_equal(sdw_flux_forward(m->be, &arena, m->flux, &in, out), SDW_OK);
    sdw_arena_free(&arena);
    free(img);
    free(ids);
    free(txt);
    free(tids);
    free(y);
    free(out);
}

static void load_and_step(const char *what, sdw_family family, const char *transformer, const char *ae,
                          const char *clip, const char *t5)
{
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    lp.vae_path = ae;
    lp.clip_l_path = clip;
    lp.t5_path = t5;
    sdw_model *m;
    if (sdw_model_load(transformer, &lp, &m) != SDW_OK) fail_msg("%s: %s", what, sdw_last_error());
    assert_int_equal(m->info.family, family);
    const sdw_flux_config *c = sdw_flux_get_config(m->flux);
    assert_int_equal(c->depth, 19);
    assert_int_equal(c->depth_single, 38);

    fs_kit_act_stats a = {.show = {"single_blocks.37", "double_blocks.18.img"}};
    run_forward(m, &a);
    assert_true(a.taps >= 2 * 19 + 38 + 1);
    assert_int_equal(a.bad, 0);
    printf("  %s: every block finite, max |activation| %.2f\n", what, a.max_abs);
    assert_true(a.max_abs < 1e4);

    printf("  %s: 64x64 one step, image mean %.3f\n", what, fs_kit_one_step(m, what, 1.0f));
    sdw_model_free(m);
}

static void mini_set_writes_loads_runs(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sdw_test_fullsize_flux_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char bf16[512], gguf[512], ae[512], clip[512], t5[512], t5f16[512];
    write_one("flux-mini-dev", FS_FORMAT_SAFETENSORS, "flux1-dev.safetensors", bf16, sizeof bf16);
    write_one("flux-mini-schnell", FS_FORMAT_GGUF_Q8_0, "flux1-schnell-Q8_0.gguf", gguf, sizeof gguf);
    write_one("flux-mini-ae", FS_FORMAT_SAFETENSORS, "ae.safetensors", ae, sizeof ae);
    write_one("flux-mini-clip_l", FS_FORMAT_SAFETENSORS, "clip_l.safetensors", clip, sizeof clip);
    write_one("flux-mini-t5xxl", FS_FORMAT_FP8, "t5xxl_fp8_e4m3fn.safetensors", t5, sizeof t5);
    write_one("flux-mini-t5xxl", FS_FORMAT_SAFETENSORS, "t5xxl_fp16.safetensors", t5f16, sizeof t5f16);
    check_file("flux-mini-dev", FS_FORMAT_SAFETENSORS, bf16);
    check_file("flux-mini-schnell", FS_FORMAT_GGUF_Q8_0, gguf);
    check_file("flux-mini-ae", FS_FORMAT_SAFETENSORS, ae);
    check_file("flux-mini-clip_l", FS_FORMAT_SAFETENSORS, clip);
    check_file("flux-mini-t5xxl", FS_FORMAT_FP8, t5);
    check_file("flux-mini-t5xxl", FS_FORMAT_SAFETENSORS, t5f16);

    load_and_step("dev BF16 + fp16 T5", SDW_FAMILY_FLUX_DEV, bf16, ae, clip, t5f16);
    load_and_step("schnell Q8_0 GGUF + fp8 T5", SDW_FAMILY_FLUX_SCHNELL, gguf, ae, clip, t5);
    const char *files[] = {bf16, gguf, ae, clip, t5, t5f16};
    for (size_t i = 0; i < 6; i++) unlink(files[i]);
    rmdir(tmpdir);
}

/* A Q8_0 row must be whole blocks: the writer says which tensor cannot. */
static void q8_0_needs_whole_blocks(void **state)
{
    (void)state;
    fs_tensor t = {.name = "double_blocks.0.img_mlp.0.weight", .ndim = 2, .shape = {64, 48}, .numel = 64 * 48,
                   .init = FS_WEIGHT, .param = 48, .dtype = FS_BF16};
    fs_list l = {&t, 1, t.numel};
    fs_kit_file_sink fsk = {fopen("/dev/null", "wb")};
    assert_non_null(fsk.f);
    fs_sink s = {fs_kit_put, NULL, NULL, &fsk};
    uint64_t total;
    char err[256];
    assert_int_equal(fs_write(&l, FS_FORMAT_GGUF_Q8_0, 1, &s, &total, err, sizeof err), -1);
    assert_non_null(strstr(err, "img_mlp.0.weight"));
    assert_int_equal(fs_write(&l, FS_FORMAT_SAFETENSORS, 1, &s, &total, err, sizeof err), 0);
    fclose(fsk.f);
}

int main(void)
{
    /* One thread: with ctest running tests side by side on few cores,
     * OpenMP barriers of tiny ops waiting on descheduled threads cost more
     * than the work. */
    omp_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lists_match_real_shapes), cmocka_unit_test(f8_encoder),
        cmocka_unit_test(bf16_and_f16),            cmocka_unit_test(q8_0_block),
        cmocka_unit_test(q8_0_needs_whole_blocks), cmocka_unit_test(mini_set_writes_loads_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
