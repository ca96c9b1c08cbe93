/* test_unet.c: the UNet of each tiny family against the reference components,
 * loaded from the diffusers folder and from the single-file checkpoint with
 * its yaml: every timestep's output, and at t = 999 every block's output (to
 * show where a divergence starts). bf16 is compared with the f32 reference. */
#include "testkit.h"
#include "io/json_file.h"
#include "models/unet.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F32_GATE 1e-5
#define BF16_GATE 3e-2

static const char *const families[] = { "sd1-tiny", "sd2-tiny", "sdxl-tiny", "sd1-tiny-inpaint" };

typedef struct {
    const sdw_safetensors *ref;
    double gate;
    const char *tag;
    int checked;
} tap_ctx;

static void tap(void *user, const char *name, const float *x, int N, int H, int W, int C)
{
    tap_ctx *t = user;
    char key[128], what[256];
    snprintf(key, sizeof key, "unet.t0.intermediate.%s", name);
    if (!sdw_st_find(t->ref, key)) return;
    float *ref = test_load_f32(t->ref, key, NULL);
    float *got = malloc((size_t)N * H * W * C * sizeof *got);
    test_nhwc_to_nchw(x, N, H, W, C, got);
    snprintf(what, sizeof what, "%s %s", t->tag, name);
    test_check_close(what, got, ref, (size_t)N * H * W * C, t->gate);
    t->checked++;
    free(ref);
    free(got);
}

static sdw_unet *load(sdw_backend *be, const char *family, bool single)
{
    char path[512];
    sdw_unet_config c;
    sdw_unet *u = NULL;
    sdw_safetensors *st;
    if (single) {
        snprintf(path, sizeof path, "models/%s/%s.safetensors", family, family);
        st = test_open_st(path);
        char yp[4096];
        sdw_yaml_map yaml = { 0 };
        if (sdw_yaml_sidecar_path(st->path, yp, sizeof yp)) assert_int_equal(sdw_yaml_load(yp, &yaml), SDW_OK);
        assert_int_equal(sdw_unet_config_from_ldm(st, &yaml, &c), SDW_OK);
        sdw_yaml_free(&yaml);
        if (sdw_unet_load(be, st, SDW_NAMES_LDM, &c, &u) != SDW_OK) fail_msg("%s", sdw_last_error());
    } else {
        cJSON *j;
        snprintf(path, sizeof path, "models/%s/diffusers/unet/config.json", family);
        assert_int_equal(sdw_json_load_file(test_data_path(path), &j), SDW_OK);
        assert_int_equal(sdw_unet_config_from_diffusers(j, &c), SDW_OK);
        cJSON_Delete(j);
        snprintf(path, sizeof path, "models/%s/diffusers/unet/diffusion_pytorch_model.safetensors", family);
        st = test_open_st(path);
        if (sdw_unet_load(be, st, SDW_NAMES_DIFFUSERS, &c, &u) != SDW_OK) fail_msg("%s", sdw_last_error());
    }
    sdw_st_close(st);
    return u;
}

static void run(sdw_precision prec, double gate)
{
    if (!test_precision_runs(prec)) return;
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(prec, &be), SDW_OK);
    printf("precision %s, cpu isa %s\n", sdw_precision_name(prec), sdw_cpu_isa_name());
    sdw_arena arena = { 0 };
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        char path[256];
        snprintf(path, sizeof path, "components_%s.safetensors", families[f]);
        sdw_safetensors *ref = test_open_st(path);
        snprintf(path, sizeof path, "components_%s.json", families[f]);
        cJSON *manifest;
        assert_int_equal(sdw_json_load_file(test_data_path(path), &manifest), SDW_OK);
        const sdw_st_tensor *st_sample = sdw_st_find(ref, "unet.sample");
        const sdw_st_tensor *st_ctx = sdw_st_find(ref, "unet.encoder_hidden_states");
        int N = (int)st_sample->shape[0], C = (int)st_sample->shape[1], H = (int)st_sample->shape[2],
            W = (int)st_sample->shape[3], T = (int)st_ctx->shape[1];
        float *sample = test_load_f32(ref, "unet.sample", NULL), *ctx = test_load_f32(ref, "unet.encoder_hidden_states", NULL);
        float *x = malloc((size_t)N * H * W * C * sizeof *x), *out = malloc((size_t)N * H * W * 4 * sizeof *out);
        float *got = malloc((size_t)N * H * W * 4 * sizeof *got);
        test_nchw_to_nhwc(sample, N, C, H, W, x);
        for (int single = 0; single <= 1; single++) {
            if (single && !strcmp(families[f], "sd1-tiny-inpaint")) continue; /* not in the test data */
            sdw_unet *u = load(be, families[f], single);
            const sdw_unet_config *c = sdw_unet_get_config(u);
            float *y = NULL;
            if (c->adm_in) {
                float *te = test_load_f32(ref, "unet.text_embeds", NULL), *ids = test_load_f32(ref, "unet.time_ids", NULL);
                int pd = c->adm_in - 6 * c->addition_time_embed_dim;
                y = malloc((size_t)N * c->adm_in * sizeof *y);
                for (int n = 0; n < N; n++)
                    sdw_unet_text_time_y(te + n * pd, pd, ids + n * 6, 6, c->addition_time_embed_dim, y + (size_t)n * c->adm_in);
                free(te);
                free(ids);
            }
            char tag[128];
            snprintf(tag, sizeof tag, "%s/%s", families[f], single ? "single" : "diffusers");
            const cJSON *ts = cJSON_GetObjectItem(manifest, "unet_timesteps");
            sdw_unet_ctx_cache kv = { 0 }; /* as the pipeline runs it: K, V of the context from the first step */
            for (int k = 0; k < cJSON_GetArraySize(ts); k++) {
                float t = (float)cJSON_GetObjectItem(cJSON_GetArrayItem(ts, k), "timestep")->valuedouble;
                float tv[8];
                for (int n = 0; n < N; n++) tv[n] = t;
                tap_ctx tc = { ref, gate, tag, 0 };
                sdw_unet_input in = { x, N, H, W, tv, ctx, T, y, k == 0 ? tap : NULL, &tc, NULL, NULL, &kv };
                if (sdw_unet_forward(be, &arena, u, &in, out) != SDW_OK) fail_msg("%s", sdw_last_error());
                if (k == 0) assert_true(tc.checked >= 5);
                test_nhwc_to_nchw(out, N, H, W, 4, got);
                char key[64], what[256];
                snprintf(key, sizeof key, "unet.t%d.out", k);
                float *r = test_load_f32(ref, key, NULL);
                snprintf(what, sizeof what, "%s t=%g out", tag, t);
                test_check_close(what, got, r, (size_t)N * H * W * 4, gate);
                free(r);
            }
            sdw_unet_ctx_cache_free(&kv);
            free(y);
            sdw_unet_free(u);
        }
        free(sample); free(ctx); free(x); free(out); free(got);
        cJSON_Delete(manifest);
        sdw_st_close(ref);
    }
    sdw_arena_free(&arena);
    sdw_backend_free(be);
}

static void unet_f32(void **state) { (void)state; run(SDW_PRECISION_F32, F32_GATE); }
static void unet_bf16(void **state) { (void)state; run(SDW_PRECISION_BF16, BF16_GATE); }

/* The context cache changes nothing: the same bits as projecting K and V at
 * every call, at the call that fills it and after; a new context (another
 * pointer) starts it over; held to one block's bytes, it keeps that block
 * and the others project every time. */
static void context_cache_exact(void **state)
{
    (void)state;
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    sdw_arena arena = { 0 };
    for (int f = 0; f < 2; f++) { /* sd1 (no y) and sdxl (y, two transformer depths) */
        const char *family = f ? "sdxl-tiny" : "sd1-tiny";
        sdw_unet *u = load(be, family, false);
        const sdw_unet_config *c = sdw_unet_get_config(u);
        enum { N = 2, H = 8, W = 8, T = 77 };
        const size_t nx = (size_t)N * H * W * c->in_channels, no = (size_t)N * H * W * c->out_channels;
        const size_t nc = (size_t)N * T * c->context_dim;
        float *x = malloc(nx * sizeof *x), *ctx[2] = { malloc(nc * sizeof(float)), malloc(nc * sizeof(float)) };
        float *y = c->adm_in ? calloc((size_t)N * c->adm_in, sizeof *y) : NULL, t[N] = { 500, 500 };
        float *want = malloc(no * sizeof *want), *got = malloc(no * sizeof *got);
        assert_true(x && ctx[0] && ctx[1] && want && got);
        for (size_t i = 0; i < nx; i++) x[i] = sinf((float)i * 0.37f);
        for (size_t i = 0; i < nc; i++) ctx[0][i] = cosf((float)i * 0.11f), ctx[1][i] = 0.5f * sinf((float)i * 0.23f);
        sdw_unet_ctx_cache kv = { 0 };
        for (int k = 0; k < 2; k++) {
            sdw_unet_input in = { x, N, H, W, t, ctx[k], T, y, NULL, NULL, NULL, NULL, NULL };
            if (sdw_unet_forward(be, &arena, u, &in, want) != SDW_OK) fail_msg("%s", sdw_last_error());
            in.ctx_cache = &kv;
            for (int call = 0; call < 2; call++) {
                if (sdw_unet_forward(be, &arena, u, &in, got) != SDW_OK) fail_msg("%s", sdw_last_error());
                assert_memory_equal(got, want, no * sizeof *got);
                assert_ptr_equal(kv.context, ctx[k]);
            }
        }
        printf("  %s: cached K, V of %d cross-attention blocks give the same bits\n", family, kv.n);
        assert_true(kv.n >= 2);
        sdw_unet_ctx_cache_free(&kv);
        kv.max = sdw_act_bytes(be, (size_t)N * T * 2 * c->block_out[0]); /* one of the narrowest blocks */
        sdw_unet_input in = { x, N, H, W, t, ctx[1], T, y, NULL, NULL, NULL, NULL, &kv };
        for (int call = 0; call < 2; call++) {
            if (sdw_unet_forward(be, &arena, u, &in, got) != SDW_OK) fail_msg("%s", sdw_last_error());
            assert_memory_equal(got, want, no * sizeof *got);
        }
        printf("  held to %zu bytes: %d blocks cached (%zu bytes), the rest projected each call, the same bits\n",
               kv.max, kv.n, kv.bytes);
        assert_true(kv.n >= 1 && kv.bytes <= kv.max);
        sdw_unet_ctx_cache_free(&kv);
        free(x), free(ctx[0]), free(ctx[1]), free(y), free(want), free(got);
        sdw_unet_free(u);
    }
    sdw_arena_free(&arena);
    sdw_backend_free(be);
}

static void rejects_bad_sizes(void **state)
{
    (void)state;
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    sdw_unet *u = load(be, "sd1-tiny", false);
    sdw_arena arena = { 0 };
    float x[4 * 7 * 7] = { 0 }, t = 1, ctx[77 * 8] = { 0 }, out[4 * 7 * 7];
    sdw_unet_input in = { x, 1, 7, 7, &t, ctx, 77, NULL, NULL, NULL, NULL, NULL, NULL };
    assert_int_equal(sdw_unet_forward(be, &arena, u, &in, out), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "multiple of 2"));
    sdw_arena_free(&arena);
    sdw_unet_free(u);
    sdw_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unet_f32),
        cmocka_unit_test(unet_bf16),
        cmocka_unit_test(context_cache_exact),
        cmocka_unit_test(rejects_bad_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
