/* test_model_load.c: whole-checkpoint loading: family, inpainting and
 * prediction detection for every tiny model in both layouts, loading with
 * and without a replacement VAE, and malformed checkpoints (a missing tensor,
 * a wrong shape, a diffusers folder without unet/, a pickle file). */
#include "testkit.h"
#include "io/safetensors_write.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *path;
    sdw_family family;
    bool inpaint;
    sdw_prediction prediction;
    const char *source;    /* substring of prediction_source */
} expect;

static const expect models[] = {
    { "models/sd1-tiny/sd1-tiny.safetensors", SDW_FAMILY_SD1, false, SDW_PREDICTION_EPS, "assumed" },
    { "models/sd1-tiny/diffusers", SDW_FAMILY_SD1, false, SDW_PREDICTION_EPS, "scheduler config" },
    { "models/sd2-tiny/sd2-tiny.safetensors", SDW_FAMILY_SD2, false, SDW_PREDICTION_V, "sidecar yaml" },
    { "models/sd2-tiny/diffusers", SDW_FAMILY_SD2, false, SDW_PREDICTION_V, "scheduler config" },
    { "models/sdxl-tiny/sdxl-tiny.safetensors", SDW_FAMILY_SDXL, false, SDW_PREDICTION_EPS, "assumed" },
    { "models/sdxl-tiny/diffusers", SDW_FAMILY_SDXL, false, SDW_PREDICTION_EPS, "scheduler config" },
    { "models/sd1-tiny-inpaint/diffusers", SDW_FAMILY_SD1, true, SDW_PREDICTION_EPS, "scheduler config" },
};

static void detects_families(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        const expect *e = &models[i];
        sdw_load_params lp = sdw_load_params_default();
        sdw_model_info in;
        if (sdw_model_probe(test_data_path(e->path), &lp, &in) != SDW_OK) fail_msg("%s: %s", e->path, sdw_last_error());
        printf("  %-44s %s%s %s (%s)\n", e->path, sdw_family_name(in.family), in.inpaint ? " inpaint" : "",
               sdw_prediction_name(in.prediction), in.prediction_source);
        assert_int_equal(in.family, e->family);
        assert_int_equal(in.inpaint, e->inpaint);
        assert_int_equal(in.prediction, e->prediction);
        assert_non_null(strstr(in.prediction_source, e->source));
        assert_true(in.params_unet > 0 && in.params_vae > 0 && in.params_text > 0);
        /* Loading agrees with probing, and --prediction overrides. */
        lp.precision = SDW_PRECISION_F32;
        lp.prediction = SDW_PREDICTION_V;
        sdw_model *m;
        if (sdw_model_load(test_data_path(e->path), &lp, &m) != SDW_OK) fail_msg("%s: %s", e->path, sdw_last_error());
        assert_int_equal(sdw_model_get_info(m)->prediction, SDW_PREDICTION_V);
        assert_string_equal(sdw_model_get_info(m)->prediction_source, "override");
        assert_true(sdw_model_get_info(m)->weight_bytes > 0);
        sdw_model_free(m);
    }
}

static void turbo_defaults(void **state)
{
    (void)state;
    sdw_load_params lp = sdw_load_params_default();
    sdw_model_info in;
    assert_int_equal(sdw_model_probe(test_data_path("models/sdxl-tiny/sdxl-tiny.safetensors"), &lp, &in), SDW_OK);
    assert_false(in.turbo);
    assert_int_equal(in.default_width, 1024);
    lp.turbo = 1;   /* --preset turbo */
    assert_int_equal(sdw_model_probe(test_data_path("models/sdxl-tiny/sdxl-tiny.safetensors"), &lp, &in), SDW_OK);
    assert_true(in.turbo);
    assert_int_equal(in.default_width, 512);
    assert_int_equal(in.default_steps, 4);
    assert_true(in.default_cfg == 0.0f);
    assert_string_equal(in.default_scheduler, "trailing");
    assert_string_equal(in.default_sampler, "euler_a");
    /* Detected from the file name, overridable with --preset none. */
    char dir[] = "/tmp/sdw-turbo-XXXXXX", path[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/sd_xl_turbo_1.0.safetensors", dir);
    char src[4096];
    snprintf(src, sizeof src, "%s", test_data_path("models/sdxl-tiny/sdxl-tiny.safetensors"));
    assert_int_equal(symlink(src, path), 0);
    lp.turbo = -1;
    assert_int_equal(sdw_model_probe(path, &lp, &in), SDW_OK);
    assert_true(in.turbo);
    lp.turbo = 0;
    assert_int_equal(sdw_model_probe(path, &lp, &in), SDW_OK);
    assert_false(in.turbo);
    unlink(path);
    rmdir(dir);
}

static void replacement_vae(void **state)
{
    (void)state;
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    lp.vae_path = test_data_path("models/sd1-tiny/diffusers/vae/diffusion_pytorch_model.safetensors");
    char vae[4096];
    snprintf(vae, sizeof vae, "%s", lp.vae_path);
    lp.vae_path = vae;
    sdw_model *m;
    /* The tiny VAE is not the standard architecture: a diffusers-named VAE file
     * is taken as the standard SD VAE, so this must fail with a shape error. */
    sdw_status s = sdw_model_load(test_data_path("models/sd1-tiny/sd1-tiny.safetensors"), &lp, &m);
    assert_int_equal(s, SDW_ERR_FORMAT);
    assert_non_null(strstr(sdw_last_error(), "--vae"));
    lp.vae_path = NULL;
    assert_int_equal(sdw_model_load(test_data_path("models/sd1-tiny/sd1-tiny.safetensors"), &lp, &m), SDW_OK);
    sdw_model_free(m);
}

/* Rewrites a checkpoint without one tensor, or with one tensor reshaped. */
static void rewrite(const char *src, const char *dst, const char *drop, const char *reshape)
{
    sdw_safetensors *st;
    assert_int_equal(sdw_st_open(src, &st), SDW_OK);
    sdw_st_out *t = calloc((size_t)st->n_tensors, sizeof *t);
    float **bufs = calloc((size_t)st->n_tensors, sizeof *bufs);
    int64_t (*shapes)[8] = calloc((size_t)st->n_tensors, sizeof *shapes);
    int n = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const sdw_st_tensor *x = &st->tensors[i];
        if (drop && !strcmp(x->name, drop)) continue;
        if (x->dtype != SDW_ST_F32) continue;   /* position_ids and the like */
        bufs[n] = malloc((size_t)(x->numel + 1) * sizeof(float));
        assert_int_equal(sdw_st_read_f32(st, x, bufs[n]), SDW_OK);
        memcpy(shapes[n], x->shape, sizeof x->shape);
        int nd = x->ndim;
        if (reshape && !strcmp(x->name, reshape)) {   /* same numel, another shape */
            shapes[n][0] = x->numel;
            nd = 1;
        }
        t[n] = (sdw_st_out){ x->name, nd, shapes[n], bufs[n] };
        n++;
    }
    assert_int_equal(sdw_st_write_f32(dst, t, n), SDW_OK);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(shapes);
    free(t);
    sdw_st_close(st);
}

static void copy_file(const char *src, const char *dst)
{
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, a)) > 0) assert_int_equal(fwrite(buf, 1, k, b), k);
    fclose(a);
    fclose(b);
}

static void malformed_checkpoints(void **state)
{
    (void)state;
    char dir[] = "/tmp/sdw-test-XXXXXX", path[512];
    assert_non_null(mkdtemp(dir));
    const char *src = test_data_path("models/sd1-tiny/sd1-tiny.safetensors");
    char srcbuf[4096];
    snprintf(srcbuf, sizeof srcbuf, "%s", src);
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    sdw_model *m;
    static const char *const missing = "model.diffusion_model.output_blocks.2.0.in_layers.2.weight";
    char yaml[512];
    snprintf(yaml, sizeof yaml, "%s/missing.yaml", dir);
    copy_file(test_data_path("models/sd1-tiny/sd1-tiny.yaml"), yaml);
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    rewrite(srcbuf, path, missing, NULL);
    assert_int_not_equal(sdw_model_load(path, &lp, &m), SDW_OK);
    printf("  missing tensor: %s\n", sdw_last_error());
    assert_non_null(strstr(sdw_last_error(), missing));
    static const char *const wrong = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight";
    char yaml2[512];
    snprintf(yaml2, sizeof yaml2, "%s/wrong.yaml", dir);
    copy_file(test_data_path("models/sd1-tiny/sd1-tiny.yaml"), yaml2);
    snprintf(path, sizeof path, "%s/wrong.safetensors", dir);
    rewrite(srcbuf, path, NULL, wrong);
    assert_int_not_equal(sdw_model_load(path, &lp, &m), SDW_OK);
    printf("  wrong shape: %s\n", sdw_last_error());
    assert_non_null(strstr(sdw_last_error(), "input_blocks.1.0"));
    unlink(path);
    unlink(yaml);
    unlink(yaml2);
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    unlink(path);
    /* A diffusers folder without unet/. */
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"_class_name\": \"StableDiffusionPipeline\"}", f);
    fclose(f);
    assert_int_not_equal(sdw_model_load(dir, &lp, &m), SDW_OK);
    printf("  no unet/: %s\n", sdw_last_error());
    assert_non_null(strstr(sdw_last_error(), "unet"));
    unlink(path);
    /* Pickle files are refused without being read. */
    snprintf(path, sizeof path, "%s/model.ckpt", dir);
    f = fopen(path, "w");
    fputs("not really a pickle", f);
    fclose(f);
    assert_int_equal(sdw_model_load(path, &lp, &m), SDW_ERR_UNSUPPORTED);
    assert_non_null(strstr(sdw_last_error(), "safetensors"));
    unlink(path);
    assert_int_equal(sdw_model_load("/nonexistent/model.safetensors", &lp, &m), SDW_ERR_IO);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(detects_families),
        cmocka_unit_test(turbo_defaults),
        cmocka_unit_test(replacement_vae),
        cmocka_unit_test(malformed_checkpoints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
