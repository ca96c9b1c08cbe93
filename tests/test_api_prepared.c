/* test_api_prepared.c: the public generation API (sdw.h) with inputs a
 * caller prepared itself, as the server does, on the tiny SD1 model: a
 * ControlNet loaded once as a handle and a map already preprocessed give
 * the same image as path and preprocessor, and the parameters text says
 * what the caller reported; an alpha mask and an inverted mask match the
 * pipeline's front end; LoRA tags the caller resolved are not looked up
 * again; an sdw_gen_control from an older header; in-memory encoding. */
#include "testkit.h"
#include "io/image.h"
#include "io/preprocess.h"
#include "pipeline/frontend.h"
#include "pipeline/pipeline.h"
#include "sampling/sampler.h"
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL "models/sd1-tiny/sd1-tiny.safetensors"
#define CN "controlnet/models/cn-sd1-tiny/cn-sd1-tiny.safetensors"
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
    p.width = W;
    p.height = H;
    p.steps = 2;
    p.seed = 7;
    p.sampler = "euler";
    p.scheduler = "karras";
    return p;
}

/* One image from p, its pixels and parameters text copied out. */
static void generate_one(const sdw_gen_params *p, uint8_t **pixels, char **text)
{
    sdw_gen_result r = sdw_gen_result_init();
    if (sdw_generate(model, p, &r) != SDW_OK) fail_msg("sdw_generate: %s", sdw_last_error());
    assert_int_equal(r.n_images, 1);
    *pixels = malloc((size_t)W * H * 3);
    memcpy(*pixels, r.images[0]->image.data, (size_t)W * H * 3);
    if (text) *text = strdup(r.images[0]->parameters);
    sdw_gen_result_free(&r);
}

/* ---------------------------------------------------------------- ControlNet */

static void test_controlnet_handle_and_map(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s", test_data_path(CN));
    sdw_image_rgb8 src;
    assert_int_equal(sdw_image_rgb8_load(test_data_path("controlnet/inputs/cn_t2i_sd1_euler_control_src.png"), true,
                                         &src), SDW_OK);
    sdw_gen_control c = sdw_gen_control_default();
    c.path = path;
    c.image = src;
    c.preprocessor = "canny:100:200";
    c.resize_mode = "Just Resize";
    c.scale = 0.9f;
    sdw_gen_params p = base_params();
    p.controls = &c;
    p.n_controls = 1;
    uint8_t *ref, *got;
    char *ref_text, *text;
    generate_one(&p, &ref, &ref_text);

    /* The caller's own net and map: canny run here, fitted by the API. */
    sdw_controlnet *net;
    assert_int_equal(sdw_controlnet_load_for(model, path, &net), SDW_OK);
    assert_int_equal(sdw_controlnet_check_model(net, model, "cn"), SDW_OK);
    assert_true(sdw_controlnet_weight_bytes(net) > 0);
    sdw_preprocessor pre;
    assert_int_equal(sdw_preprocessor_parse("canny:100:200", &pre), SDW_OK);
    sdw_image view = { src.width, src.height, 3, src.data }, map;
    assert_int_equal(sdw_preprocess(&pre, &view, &map), SDW_OK);
    c.net = net;
    c.image = (sdw_image_rgb8){ map.w, map.h, map.data };
    c.preprocessed = true;
    c.processor_res = 321;
    c.model_name = "my-net";
    c.model_hash = "abcd1234";
    generate_one(&p, &got, &text);
    assert_memory_equal(got, ref, (size_t)W * H * 3);
    assert_non_null(strstr(ref_text, "Module: canny, Model: cn-sd1-tiny ["));
    assert_non_null(strstr(text, "ControlNet 0: \"Module: canny, Model: my-net [abcd1234], Weight: 0.9, "
                                 "Resize Mode: Just Resize, Low Vram: False, Processor Res: 321, Threshold A: 100, "
                                 "Threshold B: 200, Guidance Start: 0"));
    free(got);
    free(text);

    /* A caller built before these fields: what follows its struct is not read. */
    struct {
        sdw_gen_control c;
        char garbage[8];
    } old;
    memset(&old, 0x5a, sizeof old);
    old.c = c;
    memset((char *)&old.c + offsetof(sdw_gen_control, net), 0x5a, sizeof old.c - offsetof(sdw_gen_control, net));
    old.c.struct_size = offsetof(sdw_gen_control, net);
    old.c.image = src;
    p.controls = &old.c;
    generate_one(&p, &got, &text);
    assert_memory_equal(got, ref, (size_t)W * H * 3);
    assert_string_equal(text, ref_text);
    free(got);
    free(text);

    /* start == end: a unit that acts on no step is allowed. */
    c.start = c.end = 0.5f;
    p.controls = &c;
    assert_int_equal(sdw_gen_params_check(&p), SDW_OK);
    assert_int_equal(sdw_controlnet_check_model(NULL, model, "cn"), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_controlnet_load_for(model, "/nonexistent/cn.safetensors", &net), SDW_ERR_IO);
    assert_null(net);
    sdw_controlnet_free(c.net);
    sdw_image_free(&map);
    sdw_image_rgb8_free(&src);
    free(ref);
    free(ref_text);
}

/* ---------------------------------------------------------------- masks */

/* A mask picture: a transparent (alpha 0) disc on opaque, its colour a gradient. */
static sdw_image make_rgba(int w, int h)
{
    sdw_image m;
    assert_int_equal(sdw_image_alloc(&m, w, h, 4), SDW_OK);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *px = m.data + ((size_t)y * w + x) * 4;
            int dx = x - w / 2, dy = y - h / 2;
            px[0] = (uint8_t)(x * 4);
            px[1] = (uint8_t)(y * 4);
            px[2] = 128;
            px[3] = dx * dx + dy * dy < w * h / 10 ? 0 : 255;
        }
    return m;
}

/* What the pipeline makes with the front end's mask of m (src, invert). */
static uint8_t *pipeline_inpaint(const sdw_gen_params *g, const sdw_image_rgb8 *init, const sdw_image *m,
                                 sdw_mask_source src, bool invert)
{
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = g->prompt;
    p.width = W;
    p.height = H;
    p.steps = g->steps;
    p.seed = (uint64_t)g->seed;
    p.strength = g->strength;
    p.cfg_scale = sdw_model_get_info(model)->default_cfg;
    assert_int_equal(sdw_sampler_parse(g->sampler, &p.sampler), SDW_OK);
    assert_int_equal(sdw_schedule_parse(g->scheduler, &p.schedule), SDW_OK);
    float *fi, *fm;
    sdw_image v = { init->width, init->height, 3, init->data };
    assert_int_equal(sdw_init_from_image(&v, W, H, &fi), SDW_OK);
    assert_int_equal(sdw_mask_from_image(m, W, H, src, invert, &fm), SDW_OK);
    p.init_image = fi;
    p.mask = fm;
    float *img = malloc((size_t)W * H * 3 * sizeof *img);
    assert_int_equal(sdw_pipeline_run(model, &p, img), SDW_OK);
    sdw_image out;
    assert_int_equal(sdw_rgb01_to_image(img, W, H, &out), SDW_OK);
    free(img);
    free(fi);
    free(fm);
    return out.data;
}

static void test_alpha_and_inverted_masks(void **state)
{
    (void)state;
    /* Another size than the output, so that the masks are resized too. */
    sdw_image rgba = make_rgba(40, 40), rgb;
    assert_int_equal(sdw_image_convert(&rgba, 3, &rgb), SDW_OK);
    sdw_image_rgb8 init = { rgb.w, rgb.h, rgb.data }, alpha = { 40, 40, malloc(40 * 40 * 3) };
    for (int i = 0; i < 40 * 40; i++) memset(alpha.data + i * 3, rgba.data[i * 4 + 3], 3);
    sdw_gen_params p = base_params();
    p.init_image = &init;
    p.mask = &alpha;
    p.mask_source = SDW_GEN_MASK_ALPHA;
    uint8_t *got, *ref = pipeline_inpaint(&p, &init, &rgba, SDW_MASK_ALPHA, false);
    generate_one(&p, &got, NULL);
    assert_memory_equal(got, ref, (size_t)W * H * 3);
    free(got);
    free(ref);

    p.mask_invert = true;
    ref = pipeline_inpaint(&p, &init, &rgba, SDW_MASK_ALPHA, true);
    generate_one(&p, &got, NULL);
    assert_memory_equal(got, ref, (size_t)W * H * 3);
    free(got);
    free(ref);

    /* Luma, inverted: the colour picture as the mask. */
    p.mask = &init;
    p.mask_source = SDW_GEN_MASK_LUMA;
    ref = pipeline_inpaint(&p, &init, &rgb, SDW_MASK_LUMA, true);
    generate_one(&p, &got, NULL);
    assert_memory_equal(got, ref, (size_t)W * H * 3);
    free(got);
    free(ref);

    p.mask_source = (sdw_gen_mask_source)7;
    assert_int_equal(sdw_gen_params_check(&p), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "mask_source is 7"));
    sdw_image_free(&rgba);
    sdw_image_free(&rgb);
    sdw_image_rgb8_free(&alpha);
}

/* ---------------------------------------------------------------- LoRA tags */

static void test_prompt_loras_listed(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s", test_data_path("models/sd1-tiny-lora/sd1-tiny-lora-kohya.safetensors"));
    sdw_lora_ref l = sdw_lora_ref_make(path, 0.8f, 0.8f);
    sdw_gen_params p = base_params();
    p.prompt = "x <lora:sd1-tiny-lora-kohya:0.8>";
    p.loras = &l;
    p.n_loras = 1;
    /* Without the flag the tag needs lora_dir; with it the list is the whole set. */
    assert_int_equal(sdw_gen_params_check(&p), SDW_ERR_INVALID_ARG);
    p.prompt_loras_listed = true;
    sdw_gen_result r = sdw_gen_result_init();
    assert_int_equal(sdw_model_apply_loras(model, &p, &r), SDW_OK);
    assert_int_equal(r.n_loras, 1);
    assert_string_equal(r.loras[0]->name, "sd1-tiny-lora-kohya");
    sdw_gen_result_free(&r);
    p.n_loras = 0;
    p.prompt = "x";
    assert_int_equal(sdw_model_apply_loras(model, &p, &r), SDW_OK);
    sdw_gen_result_free(&r);
}

/* ---------------------------------------------------------------- encoding */

static void test_encode_formats(void **state)
{
    (void)state;
    sdw_image_rgb8 pic = { 16, 8, calloc(16 * 8, 3) };
    uint8_t *out;
    size_t n;
    char *text;
    assert_int_equal(sdw_image_rgb8_encode(&pic, "png", "Steps: 3", &out, &n), SDW_OK);
    assert_int_equal(sdw_image_detect(out, n), SDW_IMAGE_PNG);
    assert_int_equal(sdw_png_read_text(out, n, "parameters", &text), SDW_OK);
    assert_string_equal(text, "Steps: 3");
    free(text);
    free(out);
    assert_int_equal(sdw_image_rgb8_encode(&pic, "jpeg", "Steps: 3", &out, &n), SDW_OK);
    assert_int_equal(sdw_image_detect(out, n), SDW_IMAGE_JPEG);
    free(out);
    assert_int_equal(sdw_image_rgb8_encode(&pic, "WebP", NULL, &out, &n), SDW_OK);
    assert_int_equal(sdw_image_detect(out, n), SDW_IMAGE_WEBP);
    free(out);
    assert_int_equal(sdw_image_rgb8_encode(&pic, "gif", NULL, &out, &n), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "'gif'"));
    assert_null(out);
    sdw_image_rgb8_free(&pic);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_controlnet_handle_and_map),
        cmocka_unit_test(test_alpha_and_inverted_masks),
        cmocka_unit_test(test_prompt_loras_listed),
        cmocka_unit_test(test_encode_formats),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
