/* test_generate.c: what a user of generation relies on beyond the golden
 * numbers: one progress call per step with previews of the documented size
 * that encode as PNGs, A1111 parameters that survive a PNG round trip field by
 * field, bit-identical output for a seed, agreement across thread counts, and
 * clear errors for bad input. */
#include "testkit.h"
#include "io/image.h"
#include "pipeline/infotext.h"
#include "pipeline/pipeline.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sdw_model *load(const char *rel)
{
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    sdw_model *m;
    if (sdw_model_load(test_data_path(rel), &lp, &m) != SDW_OK) fail_msg("%s", sdw_last_error());
    return m;
}

static void base_params(sdw_pipeline_params *p)
{
    sdw_pipeline_params_init(p);
    p->prompt = "a red cube, (studio light:1.2)";
    p->negative_prompt = "blurry, low quality";
    p->width = 64;
    p->height = 48;
    p->steps = 5;
    p->seed = 7;
    p->sampler = SDW_SAMPLER_EULER_A;
    p->schedule = SDW_SCHEDULE_KARRAS;
}

typedef struct {
    int calls, last_step, total, previews;
} progress_log;

static sdw_status on_progress(void *user, const sdw_progress *pr)
{
    progress_log *l = user;
    l->calls++;
    assert_int_equal(pr->step, l->last_step + 1);
    l->last_step = pr->step;
    l->total = pr->total;
    assert_true(pr->elapsed_s >= 0 && pr->eta_s >= 0);
    if (pr->preview) {
        l->previews++;
        assert_int_equal(pr->preview_w, 64 / 8);
        assert_int_equal(pr->preview_h, 48 / 8);
        sdw_image img, back;
        assert_int_equal(sdw_image_from_float(pr->preview, pr->preview_w, pr->preview_h, &img), SDW_OK);
        uint8_t *png;
        size_t n;
        assert_int_equal(sdw_image_encode_png(&img, NULL, 0, &png, &n), SDW_OK);
        assert_int_equal(sdw_image_decode(png, n, 0, &back), SDW_OK);
        assert_int_equal(back.w, pr->preview_w);
        assert_int_equal(back.h, pr->preview_h);
        sdw_image_free(&img);
        sdw_image_free(&back);
        free(png);
    }
    return SDW_OK;
}

static void progress_and_previews(void **state)
{
    (void)state;
    sdw_model *m = load("models/sd1-tiny/sd1-tiny.safetensors");
    sdw_pipeline_params p;
    base_params(&p);
    progress_log log = { 0 };
    p.progress = on_progress;
    p.progress_user = &log;
    p.preview_every = 2;
    float *img = malloc((size_t)64 * 48 * 3 * sizeof *img);
    assert_int_equal(sdw_pipeline_run(m, &p, img), SDW_OK);
    assert_int_equal(log.calls, 5);
    assert_int_equal(log.total, 5);
    assert_int_equal(log.previews, 3);   /* steps 2, 4 and the last */
    free(img);
    sdw_model_free(m);
}

static void infotext_round_trip(void **state)
{
    (void)state;
    sdw_pipeline_params p;
    base_params(&p);
    p.cfg_scale = 6.5f;
    p.clip_skip = 2;
    sdw_infotext_args a = { &p, 1234567890123ull, "my, model", "a4f3409780", NULL };
    char *info = sdw_infotext(&a);
    assert_non_null(info);
    sdw_image img;
    assert_int_equal(sdw_image_alloc(&img, 8, 8, 3), SDW_OK);
    sdw_png_text t = { "parameters", info };
    uint8_t *png;
    size_t n;
    assert_int_equal(sdw_image_encode_png(&img, &t, 1, &png, &n), SDW_OK);
    char *back = NULL;
    assert_int_equal(sdw_png_read_text(png, n, "parameters", &back), SDW_OK);
    assert_string_equal(back, info);
    printf("%s\n", back);
    /* Line by line, field by field, as A1111's parser reads it. */
    assert_int_equal(strncmp(back, "a red cube, (studio light:1.2)\nNegative prompt: blurry, low quality\n", 68), 0);
    static const char *const fields[] = {
        "Steps: 5", "Sampler: Euler a", "Schedule type: Karras", "CFG scale: 6.5", "Seed: 1234567890123",
        "Size: 64x48", "Model hash: a4f3409780", "Model: \"my, model\"", "Clip skip: 2", "RNG: CPU",
        "Version: sd-worker " SDW_VERSION,
    };
    const char *last = strrchr(back, '\n') + 1;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!strstr(last, fields[i])) fail_msg("field '%s' missing from '%s'", fields[i], last);
    assert_null(strstr(last, "Denoising strength"));  /* txt2img has none */
    free(back);
    free(png);
    free(info);
    sdw_image_free(&img);
}

static void run_once(sdw_model *m, int threads, float *img)
{
    sdw_pipeline_params p;
    base_params(&p);
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    sdw_status s = sdw_pipeline_run(m, &p, img);
    omp_set_num_threads(saved);
    if (s != SDW_OK) fail_msg("%s", sdw_last_error());
}

static void deterministic(void **state)
{
    (void)state;
    sdw_model *m = load("models/sdxl-tiny/sdxl-tiny.safetensors");
    size_t n = (size_t)64 * 48 * 3;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
    run_once(m, 2, a);
    run_once(m, 2, b);
    assert_memory_equal(a, b, n * sizeof *a);
    run_once(m, 1, c);
    test_check_close("1 thread vs 2 threads", c, a, n, 1e-5);
    free(a);
    free(b);
    free(c);
    sdw_model_free(m);
}

static void expect_error(sdw_model *m, const sdw_pipeline_params *p, const char *needle)
{
    float *img = malloc((size_t)(p->width > 0 ? p->width : 8) * (p->height > 0 ? p->height : 8) * 3 * 4 * sizeof *img);
    sdw_status s = sdw_pipeline_run(m, p, img);
    free(img);
    if (s == SDW_OK) fail_msg("expected an error containing '%s'", needle);
    printf("  rejected: %s\n", sdw_last_error());
    if (!strstr(sdw_last_error(), needle)) fail_msg("error '%s' lacks '%s'", sdw_last_error(), needle);
}

static void bad_input(void **state)
{
    (void)state;
    sdw_model *m = load("models/sd1-tiny/sd1-tiny.safetensors");
    sdw_pipeline_params p;
    base_params(&p);
    p.width = 60;
    expect_error(m, &p, "multiples of 8");
    base_params(&p);
    p.height = 40;   /* a multiple of 8 but not of this UNet's 16 */
    expect_error(m, &p, "multiples of 16");
    base_params(&p);
    p.steps = 0;
    expect_error(m, &p, "steps");
    base_params(&p);
    float init[64 * 48 * 3] = { 0 };
    p.init_image = init;
    p.strength = 1.5f;
    expect_error(m, &p, "strength");
    p.strength = 0;
    expect_error(m, &p, "strength");
    base_params(&p);
    float mask[64 * 48] = { 0 };
    p.mask = mask;
    expect_error(m, &p, "init image");
    base_params(&p);
    p.batch_size = 0;
    expect_error(m, &p, "batch size");
    sdw_sampler_kind k;
    assert_int_equal(sdw_sampler_parse("euler_b", &k), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "dpm++2m"));
    sdw_schedule_kind sk;
    assert_int_equal(sdw_schedule_parse("fancy", &sk), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "karras"));
    assert_int_equal(sdw_sampler_parse("DPM++ 2M", &k), SDW_OK);
    assert_int_equal(k, SDW_SAMPLER_DPMPP_2M);
    /* A garbled init image is refused by the decoder with a clear error. */
    sdw_image img;
    static const uint8_t garbage[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H' };
    assert_int_not_equal(sdw_image_decode(garbage, sizeof garbage, 0, &img), SDW_OK);
    printf("  garbled png: %s\n", sdw_last_error());
    sdw_model_free(m);
    /* An inpainting model without a mask. */
    m = load("models/sd1-tiny-inpaint/diffusers");
    base_params(&p);
    expect_error(m, &p, "inpainting model");
    sdw_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(progress_and_previews),
        cmocka_unit_test(infotext_round_trip),
        cmocka_unit_test(deterministic),
        cmocka_unit_test(bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
