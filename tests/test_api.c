/* test_api.c: the public generation API (sdw.h: sdw_generate and its
 * helpers) on the tiny SD1 model: txt2img, img2img and inpainting through
 * RGB8 images bit for bit equal to what sdw_pipeline_run makes from the same
 * inputs; progress on every step, previews, cancellation from the callback
 * and from another thread; callers built against an older or newer header;
 * LoRA and ControlNet through the API; the image helpers; clear errors. */
#include "testkit.h"
#include "io/image.h"
#include "pipeline/frontend.h"
#include "pipeline/pipeline.h"
#include "sampling/sampler.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODEL "models/sd1-tiny/sd1-tiny.safetensors"
#define W 64
#define H 64

static sdw_model *model;

static int setup(void **state)
{
    (void)state;
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    lp.with_vae_encoder = true;
    return sdw_model_load(test_data_path(MODEL), &lp, &model) == SDW_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sdw_model_free(model);
    return 0;
}

static sdw_gen_params base_params(void)
{
    sdw_gen_params p = sdw_gen_params_default();
    p.prompt = "a red cube";
    p.negative_prompt = "blurry";
    p.width = W;
    p.height = H;
    p.steps = 3;
    p.seed = 42;
    p.sampler = "euler_a";
    p.scheduler = "karras";
    return p;
}

/* What sdw_pipeline_run makes of the same request, as RGB8 (img2img / inpaint when init / mask). */
static uint8_t *pipeline_rgb8(const sdw_gen_params *g, const sdw_image_rgb8 *init, const sdw_image_rgb8 *mask)
{
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = g->prompt;
    p.negative_prompt = g->negative_prompt;
    p.width = W;
    p.height = H;
    p.steps = g->steps;
    p.seed = (uint64_t)g->seed;
    p.strength = g->strength;
    p.cfg_scale = sdw_model_get_info(model)->default_cfg;
    assert_int_equal(sdw_sampler_parse(g->sampler, &p.sampler), SDW_OK);
    assert_int_equal(sdw_schedule_parse(g->scheduler, &p.schedule), SDW_OK);
    float *fi = NULL, *fm = NULL;
    if (init) {
        sdw_image v = { init->width, init->height, 3, init->data };
        assert_int_equal(sdw_init_from_image(&v, W, H, &fi), SDW_OK);
        p.init_image = fi;
    }
    if (mask) {
        sdw_image v = { mask->width, mask->height, 3, mask->data };
        assert_int_equal(sdw_mask_from_image(&v, W, H, SDW_MASK_LUMA, false, &fm), SDW_OK);
        p.mask = fm;
    }
    float *img = malloc((size_t)W * H * 3 * sizeof *img);
    assert_int_equal(sdw_pipeline_run(model, &p, img), SDW_OK);
    sdw_image out;
    assert_int_equal(sdw_rgb01_to_image(img, W, H, &out), SDW_OK);
    free(img);
    free(fi);
    free(fm);
    return out.data;
}

static void expect_same(const sdw_gen_result *r, const uint8_t *ref)
{
    assert_int_equal(r->n_images, 1);
    assert_int_equal(r->images[0]->image.width, W);
    assert_int_equal(r->images[0]->image.height, H);
    assert_memory_equal(r->images[0]->image.data, ref, (size_t)W * H * 3);
}

static void test_txt2img_equals_pipeline(void **state)
{
    (void)state;
    sdw_gen_params p = base_params();
    p.model_name = "sd1-tiny";
    p.model_hash = "0123456789";
    sdw_gen_result r = sdw_gen_result_init();
    assert_int_equal(sdw_generate(model, &p, &r), SDW_OK);
    uint8_t *ref = pipeline_rgb8(&p, NULL, NULL);
    expect_same(&r, ref);
    assert_true(r.images[0]->seed == 42);
    const char *info = r.images[0]->parameters;
    assert_non_null(strstr(info, "a red cube\nNegative prompt: blurry\nSteps: 3, Sampler: Euler a"));
    assert_non_null(strstr(info, "Seed: 42, Size: 64x64, Model hash: 0123456789, Model: sd1-tiny"));
    assert_int_equal(r.n_loras, 0);
    free(ref);
    sdw_gen_result_free(&r);
    assert_int_equal(r.n_images, 0);
    assert_null(r.images);
}

/* A picture to start from: left half red, right half a gradient. */
static sdw_image_rgb8 make_picture(int w, int h)
{
    sdw_image_rgb8 img = { w, h, malloc((size_t)w * h * 3) };
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *px = img.data + ((size_t)y * w + x) * 3;
            px[0] = x < w / 2 ? 220 : (uint8_t)(x * 3);
            px[1] = x < w / 2 ? 30 : (uint8_t)(y * 3);
            px[2] = (uint8_t)(x + y);
        }
    return img;
}

static void test_img2img_and_inpaint_rgb8(void **state)
{
    (void)state;
    /* Another size than the output: resized the way the pipeline's front end does. */
    sdw_image_rgb8 init = make_picture(80, 72), mask = make_picture(32, 32);
    sdw_gen_params p = base_params();
    p.init_image = &init;
    p.strength = 0.6f;
    sdw_gen_result r = sdw_gen_result_init();
    assert_int_equal(sdw_generate(model, &p, &r), SDW_OK);
    uint8_t *ref = pipeline_rgb8(&p, &init, NULL);
    expect_same(&r, ref);
    assert_non_null(strstr(r.images[0]->parameters, "Denoising strength: 0.6"));
    free(ref);
    sdw_gen_result_free(&r);

    p.mask = &mask;
    p.strength = 0.75f;
    assert_int_equal(sdw_generate(model, &p, &r), SDW_OK);
    ref = pipeline_rgb8(&p, &init, &mask);
    expect_same(&r, ref);
    free(ref);
    sdw_gen_result_free(&r);
    sdw_image_rgb8_free(&init);
    sdw_image_rgb8_free(&mask);
}

/* ---------------------------------------------------------------- progress and cancel */

typedef struct {
    int calls, last_step, previews, cancel_at, runs_seen;
    bool wrong;
    sdw_cancel *raise;   /* raised at cancel_at instead of returning non-zero */
} progress_log;

static int on_progress(void *user, const sdw_gen_progress *g)
{
    progress_log *l = user;
    l->calls++;
    if (g->struct_size != sizeof *g || g->total != 4 || g->step != l->last_step % 4 + 1 || g->run != l->calls / 5 ||
        g->runs != 2 || g->elapsed_s < 0)
        l->wrong = true;
    l->last_step = g->step;
    if (g->preview) {
        l->previews++;
        if (g->step % 2 || g->preview->width != W / 8 || g->preview->height != H / 8 || !g->preview->data) l->wrong = true;
    }
    if (g->step == l->cancel_at) {
        if (l->raise) sdw_cancel_request(l->raise);
        else return 1;
    }
    return 0;
}

static void test_progress_every_step(void **state)
{
    (void)state;
    sdw_gen_params p = base_params();
    progress_log log = { 0 };
    p.steps = 4;
    p.batch_count = 2;
    p.preview_every = 2;
    p.progress = on_progress;
    p.progress_user = &log;
    sdw_gen_result r = sdw_gen_result_init();
    assert_int_equal(sdw_generate(model, &p, &r), SDW_OK);
    assert_false(log.wrong);
    assert_int_equal(log.calls, 8);
    assert_int_equal(log.previews, 4);
    assert_int_equal(r.n_images, 2);
    assert_true(r.images[0]->seed == 42 && r.images[1]->seed == 43);
    assert_non_null(strstr(r.images[1]->parameters, "Seed: 43"));
    sdw_gen_result_free(&r);
}

static void test_cancel_from_callback(void **state)
{
    (void)state;
    sdw_gen_params p = base_params();
    progress_log log = { .cancel_at = 2 };
    p.steps = 4;
    p.batch_count = 2;
    p.progress = on_progress;
    p.progress_user = &log;
    sdw_gen_result r = sdw_gen_result_init();
    assert_int_equal(sdw_generate(model, &p, &r), SDW_ERR_CANCELLED);
    assert_int_equal(log.calls, 2);
    assert_non_null(strstr(sdw_last_error(), "cancelled by the progress callback after step 2 of 4"));
    assert_int_equal(r.n_images, 0);
    sdw_gen_result_free(&r);

    /* The flag, raised here from the callback, stops the run after the same step. */
    log = (progress_log){ .cancel_at = 2, .raise = sdw_cancel_new() };
    p.cancel = log.raise;
    assert_int_equal(sdw_generate(model, &p, &r), SDW_ERR_CANCELLED);
    assert_int_equal(log.calls, 2);
    assert_non_null(strstr(sdw_last_error(), "sdw_cancel_request"));
    /* Still raised: the next call stops before its first step; lowered, it runs. */
    log = (progress_log){ 0 };
    p.progress = NULL;
    assert_int_equal(sdw_generate(model, &p, &r), SDW_ERR_CANCELLED);
    sdw_cancel_reset(p.cancel);
    assert_false(sdw_cancel_requested(p.cancel));
    assert_int_equal(sdw_generate(model, &p, &r), SDW_OK);
    assert_int_equal(r.n_images, 2);
    sdw_gen_result_free(&r);
    sdw_cancel_free(p.cancel);
}

/* Another thread raises the flag while step 1's callback waits for it. */
typedef struct {
    sdw_cancel *c;
    atomic_int at_step_1;
} canceller;

static void *cancel_thread(void *arg)
{
    canceller *k = arg;
    while (!atomic_load(&k->at_step_1)) usleep(1000);
    sdw_cancel_request(k->c);
    return NULL;
}

static int wait_for_cancel(void *user, const sdw_gen_progress *g)
{
    canceller *k = user;
    if (g->step == 1) {
        atomic_store(&k->at_step_1, 1);
        while (!sdw_cancel_requested(k->c)) usleep(1000);
    }
    return 0;
}

static void test_cancel_from_another_thread(void **state)
{
    (void)state;
    canceller k = { sdw_cancel_new(), 0 };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_thread, &k), 0);
    sdw_gen_params p = base_params();
    p.steps = 4;
    p.cancel = k.c;
    p.progress = wait_for_cancel;
    p.progress_user = &k;
    sdw_gen_result r = sdw_gen_result_init();
    assert_int_equal(sdw_generate(model, &p, &r), SDW_ERR_CANCELLED);
    assert_non_null(strstr(sdw_last_error(), "after step 1 of 4"));
    pthread_join(t, NULL);
    sdw_gen_result_free(&r);
    sdw_cancel_free(k.c);
}

/* ---------------------------------------------------------------- versions */

static void test_older_and_newer_callers(void **state)
{
    (void)state;
    sdw_gen_params p = base_params();
    sdw_gen_result r = sdw_gen_result_init();
    assert_int_equal(sdw_generate(model, &p, &r), SDW_OK);
    uint8_t *ref = malloc((size_t)W * H * 3);
    memcpy(ref, r.images[0]->image.data, (size_t)W * H * 3);
    sdw_gen_result_free(&r);

    /* An older header ended before the LoRAs: what lies beyond is not read (garbage here), and its
     * result struct had no LoRA list, which is then not written either. */
    p.struct_size = offsetof(sdw_gen_params, loras);
    p.loras = (const sdw_lora_ref *)(uintptr_t)1;
    p.n_loras = 12345;
    p.n_controls = -7;
    p.preview_every = -1;
    p.cancel = (sdw_cancel *)(uintptr_t)1;
    struct {
        sdw_gen_result r;
        char canary[32];
    } old;
    memset(&old, 0x5a, sizeof old);
    old.r.struct_size = offsetof(sdw_gen_result, n_loras);   /* its sdw_gen_result_init() */
    old.r.n_images = 0;
    old.r.images = NULL;
    assert_int_equal(sdw_generate(model, &p, &old.r), SDW_OK);
    assert_int_equal(old.r.n_images, 1);
    assert_memory_equal(old.r.images[0]->image.data, ref, (size_t)W * H * 3);
    assert_int_equal(old.r.n_loras, 0x5a5a5a5a);   /* beyond its struct_size: untouched */
    sdw_gen_result_free(&old.r);
    assert_int_equal(old.r.n_images, 0);

    /* A newer header: unknown fields left zero are fine, set ones are refused. */
    struct {
        sdw_gen_params p;
        char more[16];
    } newer;
    memset(&newer, 0, sizeof newer);
    newer.p = base_params();
    newer.p.struct_size = sizeof newer;
    assert_int_equal(sdw_generate(model, &newer.p, &r), SDW_OK);
    assert_memory_equal(r.images[0]->image.data, ref, (size_t)W * H * 3);
    sdw_gen_result_free(&r);
    newer.more[5] = 1;
    assert_int_equal(sdw_gen_params_check(&newer.p), SDW_ERR_UNSUPPORTED);
    assert_non_null(strstr(sdw_last_error(), "newer sdw.h"));
    /* Smaller than any version. */
    p = base_params();
    p.struct_size = 4;
    assert_int_equal(sdw_generate(model, &p, &r), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "sdw_gen_params.struct_size is 4"));
    free(ref);
}

/* ---------------------------------------------------------------- errors */

static void expect_error(const sdw_gen_params *p, sdw_status want, const char *needle)
{
    sdw_gen_result r = sdw_gen_result_init();
    sdw_status s = sdw_generate(model, p, &r);
    if (s != want || !strstr(sdw_last_error(), needle))
        fail_msg("want %s with '%s', got %s: %s", sdw_status_name(want), needle, sdw_status_name(s), sdw_last_error());
    assert_int_equal(r.n_images, 0);
    sdw_gen_result_free(&r);
}

static void test_bad_params(void **state)
{
    (void)state;
    sdw_image_rgb8 pic = make_picture(W, H), empty = { 0, 0, NULL };
    sdw_gen_params p = base_params();
    p.sampler = "euler_b";
    expect_error(&p, SDW_ERR_INVALID_ARG, "valid:");
    p = base_params();
    p.scheduler = "fancy";
    expect_error(&p, SDW_ERR_INVALID_ARG, "karras");
    p = base_params();
    p.rng = "tpu";
    expect_error(&p, SDW_ERR_INVALID_ARG, "rng must be cpu or cuda");
    p = base_params();
    p.steps = -1;
    expect_error(&p, SDW_ERR_INVALID_ARG, "sdw_gen_params.steps is -1");
    p = base_params();
    p.width = 60;
    expect_error(&p, SDW_ERR_INVALID_ARG, "multiples of 8");
    p = base_params();
    p.mask = &pic;
    expect_error(&p, SDW_ERR_INVALID_ARG, "mask needs an init image");
    p = base_params();
    p.init_image = &pic;
    p.strength = 1.5f;
    expect_error(&p, SDW_ERR_INVALID_ARG, "strength is 1.5");
    p.strength = 0.5f;
    p.mask = &empty;
    expect_error(&p, SDW_ERR_INVALID_ARG, "mask: an empty image");
    p = base_params();
    p.n_loras = 1;
    expect_error(&p, SDW_ERR_INVALID_ARG, "loras is NULL");
    p = base_params();
    p.prompt = "x <lora:style:1>";
    expect_error(&p, SDW_ERR_INVALID_ARG, "lora_dir");
    p = base_params();
    p.cfg_scale = 0.0f / 0.0f;
    expect_error(&p, SDW_ERR_INVALID_ARG, "cfg_scale is not a number");
    sdw_gen_control c = sdw_gen_control_default();
    c.path = "cn.safetensors";
    c.image = pic;
    c.scale = 3;
    p = base_params();
    p.controls = &c;
    p.n_controls = 1;
    expect_error(&p, SDW_ERR_INVALID_ARG, "controls[0].scale is 3");
    c.scale = 1;
    c.preprocessor = "sobel";
    expect_error(&p, SDW_ERR_INVALID_ARG, "sobel");
    sdw_gen_result r = sdw_gen_result_init();
    assert_int_equal(sdw_generate(NULL, &p, &r), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_generate(model, NULL, &r), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "sdw_gen_params is NULL"));
    assert_int_equal(sdw_generate(model, &p, NULL), SDW_ERR_INVALID_ARG);
    sdw_image_rgb8_free(&pic);
}

/* ---------------------------------------------------------------- LoRA and ControlNet */

static void test_lora_through_api(void **state)
{
    (void)state;
    sdw_gen_params p = base_params();
    p.steps = 1;
    p.prompt = "x <lora:sd1-tiny-lora-kohya:0.8>";
    p.lora_dir = test_data_path("models/sd1-tiny-lora");
    sdw_gen_result r = sdw_gen_result_init();
    assert_int_equal(sdw_model_apply_loras(model, &p, &r), SDW_OK);
    assert_int_equal(r.n_loras, 1);
    assert_int_equal(r.n_images, 0);
    assert_string_equal(r.loras[0]->name, "sd1-tiny-lora-kohya");
    assert_true(r.loras[0]->keys_applied > 0 && r.loras[0]->te_strength == 0.8f);
    assert_int_equal(sdw_generate(model, &p, &r), SDW_OK);
    assert_int_equal(r.n_loras, 1);
    char want[64];
    snprintf(want, sizeof want, "Lora hashes: \"sd1-tiny-lora-kohya: %s\"", r.loras[0]->hash);
    assert_non_null(strstr(r.images[0]->parameters, want));
    sdw_gen_result_free(&r);
    /* The next call without LoRAs takes them off again. */
    p.prompt = "x";
    assert_int_equal(sdw_model_apply_loras(model, &p, &r), SDW_OK);
    assert_int_equal(r.n_loras, 0);
    sdw_gen_result_free(&r);
}

static void test_controlnet_through_api(void **state)
{
    (void)state;
    sdw_gen_control c = sdw_gen_control_default();
    c.path = test_data_path("controlnet/models/cn-sd1-tiny/cn-sd1-tiny.safetensors");
    char cn_path[4096];
    snprintf(cn_path, sizeof cn_path, "%s", c.path);
    c.path = cn_path;
    assert_int_equal(sdw_image_rgb8_load(test_data_path("controlnet/inputs/cn_t2i_sd1_euler_control_src.png"), true,
                                         &c.image), SDW_OK);
    c.preprocessor = "canny:100:200";
    c.scale = 0.8f;
    c.control_mode = "prompt";
    sdw_gen_params p = base_params();
    p.steps = 1;
    p.controls = &c;
    p.n_controls = 1;
    sdw_gen_result r = sdw_gen_result_init();
    assert_int_equal(sdw_generate(model, &p, &r), SDW_OK);
    assert_non_null(strstr(r.images[0]->parameters, "ControlNet 0: \"Module: canny, Model: cn-sd1-tiny ["));
    assert_non_null(strstr(r.images[0]->parameters, "Control Mode: My prompt is more important"));
    sdw_gen_result_free(&r);
    sdw_image_rgb8_free(&c.image);
}

/* ---------------------------------------------------------------- image helpers */

static void test_image_helpers(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_api_XXXXXX", path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/x.png", dir);
    sdw_image_rgb8 pic = make_picture(40, 24), back;
    assert_int_equal(sdw_image_rgb8_write(path, &pic, "a cat\nSteps: 3"), SDW_OK);
    assert_int_equal(sdw_image_rgb8_load(path, false, &back), SDW_OK);
    assert_int_equal(back.width, 40);
    assert_int_equal(back.height, 24);
    assert_memory_equal(back.data, pic.data, 40 * 24 * 3);
    uint8_t *png;
    size_t n;
    char *text;
    assert_int_equal(sdw_image_rgb8_encode_png(&pic, "a cat\nSteps: 3", &png, &n), SDW_OK);
    assert_int_equal(sdw_png_read_text(png, n, "parameters", &text), SDW_OK);
    assert_string_equal(text, "a cat\nSteps: 3");
    free(text);
    free(png);
    sdw_image_rgb8_free(&back);
    assert_int_equal(sdw_image_rgb8_load("/nonexistent/y.png", false, &back), SDW_ERR_IO);
    assert_non_null(strstr(sdw_last_error(), "/nonexistent/y.png"));
    assert_null(back.data);
    sdw_image_rgb8_free(&back);
    sdw_image_rgb8_free(&pic);
    unlink(path);
    rmdir(dir);
    assert_non_null(strstr(sdw_sampler_names(), "euler_a"));
    assert_non_null(strstr(sdw_scheduler_names(), "karras"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_txt2img_equals_pipeline),
        cmocka_unit_test(test_img2img_and_inpaint_rgb8),
        cmocka_unit_test(test_progress_every_step),
        cmocka_unit_test(test_cancel_from_callback),
        cmocka_unit_test(test_cancel_from_another_thread),
        cmocka_unit_test(test_older_and_newer_callers),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_lora_through_api),
        cmocka_unit_test(test_controlnet_through_api),
        cmocka_unit_test(test_image_helpers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
