/* test_server_requests.c: the server's pure parsers on their own: the three
 * dialects' JSON bodies to a job request (fields, defaults, errors naming
 * the field), multipart/form-data, OpenAI edits from a form, FLUX dev's
 * distilled guidance in each dialect, pickle file names, ControlNet units
 * in the native and A1111 forms (and /controlnet/detect's body), and the
 * ControlNet cache's policy with a fake loader. The HTTP behaviour is tested
 * end to end by the node scripts beside this file. */
#include "testkit.h"
#include "core/error.h"
#include "io/base64.h"
#include "server/controlnet_cache.h"
#include "server/job_request.h"
#include "server/model_catalog.h"
#include "server/multipart.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sdw_request_limits lim;

/* A base64 PNG of w x h with `channels` channels; alpha 0 in the left half. */
static char *png_b64(int w, int h, int channels, uint8_t **raw, size_t *raw_n)
{
    sdw_image img;
    assert_int_equal(sdw_image_alloc(&img, w, h, channels), SDW_OK);
    for (int i = 0; i < w * h; i++)
        for (int c = 0; c < channels; c++)
            img.data[i * channels + c] = channels == 4 && c == 3 ? (i % w < w / 2 ? 0 : 255) : (uint8_t)(i * 7 + c);
    uint8_t *png;
    size_t n;
    assert_int_equal(sdw_image_encode_png(&img, NULL, 0, &png, &n), SDW_OK);
    sdw_image_free(&img);
    char *b64;
    assert_int_equal(sdw_base64_encode(png, n, &b64, NULL), SDW_OK);
    if (raw) {
        *raw = png;
        *raw_n = n;
    } else {
        free(png);
    }
    return b64;
}

static sdw_status native(const char *body, sdw_job_request *r)
{
    return sdw_parse_native_request(body, strlen(body), &lim, r);
}

/* Parsing fails with a message starting with `prefix`. */
static void native_fails(const char *body, const char *prefix)
{
    sdw_job_request r;
    sdw_status s = native(body, &r);
    if (s == SDW_OK || strncmp(sdw_last_error(), prefix, strlen(prefix)))
        fail_msg("%s: got %d '%s', want '%s...'", body, s, sdw_last_error(), prefix);
    sdw_job_request_free(&r);
}

static void test_native_fields(void **state)
{
    (void)state;
    sdw_job_request r;
    const char *body = "{\"operation\":\"image_generation\",\"prompt\":\"a cat <lora:style:0.7>\","
                       "\"negative_prompt\":\"dog\",\"steps\":12,\"guidance_scale\":4.5,\"width\":128,\"height\":64,"
                       "\"seed\":123,\"sampler\":\"dpm++2m\",\"scheduler\":\"Karras\",\"hive_id\":\"h\",\"worker_id\":7,"
                       "\"model\":\"m.safetensors\",\"loras\":[{\"name\":\"a/b\",\"strength\":0.5},{\"path\":\"c\"}],"
                       "\"preview_every\":3,\"rng\":\"cuda\",\"clip_skip\":2}";
    assert_int_equal(native(body, &r), SDW_OK);
    assert_int_equal(r.kind, SDW_JOB_TXT2IMG);
    assert_string_equal(r.prompt, "a cat <lora:style:0.7>");
    assert_string_equal(r.negative_prompt, "dog");
    assert_int_equal(r.steps, 12);
    assert_true(fabsf(r.cfg - 4.5f) < 1e-6f);
    assert_int_equal(r.width, 128);
    assert_int_equal(r.height, 64);
    assert_int_equal(r.seed, 123);
    assert_true(r.has_sampler && r.sampler == SDW_SAMPLER_DPMPP_2M);
    assert_true(r.has_schedule && r.schedule == SDW_SCHEDULE_KARRAS);
    assert_string_equal(r.model, "m.safetensors");
    assert_int_equal(r.preview_every, 3);
    assert_int_equal(r.rng, SDW_RNG_CUDA);
    assert_int_equal(r.clip_skip, 2);
    assert_int_equal(r.n_loras, 3);   /* two fields, then the prompt's tag */
    assert_string_equal(r.loras[0].name, "a/b");
    assert_true(r.loras[0].unet_strength == 0.5f);
    assert_string_equal(r.loras[1].name, "c");
    assert_true(r.loras[1].te_strength == 1.0f);
    assert_string_equal(r.loras[2].name, "style");
    assert_true(fabsf(r.loras[2].te_strength - 0.7f) < 1e-6f);
    sdw_job_request_free(&r);

    /* Defaults: the model's (0 / NAN), seed -1, previews every 5. */
    assert_int_equal(native("{\"prompt\":\"\",\"steps\":null}", &r), SDW_OK);
    assert_int_equal(r.steps, 0);
    assert_int_equal(r.width, 0);
    assert_true(isnan(r.cfg));
    assert_int_equal(r.seed, -1);
    assert_int_equal(r.preview_every, 5);
    assert_false(r.has_sampler);
    assert_int_equal(r.rng, SDW_RNG_CPU);
    sdw_job_request_free(&r);
}

static void test_native_images(void **state)
{
    (void)state;
    char *init = png_b64(64, 48, 3, NULL, NULL), *mask = png_b64(64, 48, 1, NULL, NULL);
    char *other = png_b64(32, 48, 1, NULL, NULL);
    size_t cap = strlen(init) + strlen(mask) + strlen(other) + 512;
    char *body = malloc(cap);
    sdw_job_request r;
    snprintf(body, cap, "{\"prompt\":\"x\",\"input_image\":\"data:image/png;base64,%s\",\"mask_image\":\"%s\"}", init, mask);
    assert_int_equal(native(body, &r), SDW_OK);
    assert_int_equal(r.kind, SDW_JOB_INPAINT);   /* inferred from the images */
    assert_int_equal(r.init.w, 64);
    assert_int_equal(r.init.h, 48);
    assert_int_equal(r.mask.channels, 1);
    sdw_job_request_free(&r);
    snprintf(body, cap, "{\"prompt\":\"x\",\"operation\":\"image_transform\",\"init_image\":\"%s\",\"strength\":0.3}", init);
    assert_int_equal(native(body, &r), SDW_OK);
    assert_int_equal(r.kind, SDW_JOB_IMG2IMG);
    assert_true(fabsf(r.strength - 0.3f) < 1e-6f);
    sdw_job_request_free(&r);
    snprintf(body, cap, "{\"prompt\":\"x\",\"operation\":\"image_inpaint\",\"init_image\":\"%s\",\"mask_image\":\"%s\"}", init, other);
    native_fails(body, "mask_image: 32x48 does not match the init image's 64x48");
    snprintf(body, cap, "{\"prompt\":\"x\",\"operation\":\"image_transform\",\"init_image\":\"%s\",\"mask_image\":\"%s\"}", init, mask);
    native_fails(body, "mask_image: not used by image_transform");
    lim.max_pixels = 1000;
    snprintf(body, cap, "{\"prompt\":\"x\",\"init_image\":\"%s\"}", init);
    sdw_status s = native(body, &r);
    assert_int_equal(s, SDW_ERR_NOMEM);   /* 413 */
    assert_non_null(strstr(sdw_last_error(), "init_image: larger than --max-pixels 1000"));
    sdw_job_request_free(&r);
    lim = sdw_request_limits_default();
    free(body);
    free(init);
    free(mask);
    free(other);
}

static void test_native_errors(void **state)
{
    (void)state;
    native_fails("", "body: empty");
    native_fails("{", "body: malformed JSON");
    native_fails("{} {}", "body: malformed JSON: data after the value");
    native_fails("\"x\"", "body: expected a JSON object");
    native_fails("{}", "prompt: required");
    native_fails("{\"prompt\":null}", "prompt: required");
    native_fails("{\"prompt\":[1]}", "prompt: must be a string, not an array");
    native_fails("{\"prompt\":\"x\",\"steps\":0}", "steps: must be in 1..150 (got 0)");
    native_fails("{\"prompt\":\"x\",\"steps\":1e9}", "steps: must be in 1..150");
    native_fails("{\"prompt\":\"x\",\"steps\":true}", "steps: must be an integer, not a boolean");
    native_fails("{\"prompt\":\"x\",\"width\":7}", "width: must be a multiple of 8 in 64..2048 (got 7)");
    native_fails("{\"prompt\":\"x\",\"height\":-8}", "height: must be a multiple of 8");
    native_fails("{\"prompt\":\"x\",\"width\":1e300}", "width: must be in");
    native_fails("{\"prompt\":\"x\",\"guidance_scale\":\"7\"}", "guidance_scale: must be a number, not a string");
    native_fails("{\"prompt\":\"x\",\"strength\":0}", "strength: must be in (0, 1]");
    native_fails("{\"prompt\":\"x\",\"seed\":-2}", "seed: must be in -1..");
    native_fails("{\"prompt\":\"x\",\"operation\":\"upscale\"}", "operation: unknown 'upscale'");
    native_fails("{\"prompt\":\"x\",\"sampler\":\"nope\"}", "sampler: unknown sampler 'nope'");
    native_fails("{\"prompt\":\"x\",\"scheduler\":\"nope\"}", "scheduler: unknown scheduler 'nope'");
    native_fails("{\"prompt\":\"x\",\"init_image\":\"@@@\"}", "init_image: invalid base64");
    native_fails("{\"prompt\":\"x\",\"init_image\":\"aGVsbG8=\"}", "init_image: not a PNG, JPEG or WebP image");
    native_fails("{\"prompt\":\"x\",\"operation\":\"image_transform\"}", "init_image: required by image_transform");
    native_fails("{\"prompt\":\"x\",\"loras\":[{\"name\":\"../x\"}]}", "loras[0]: LoRA '../x' must be a name inside --lora-dir");
    native_fails("{\"prompt\":\"x\",\"loras\":[{\"name\":\"/etc/x\"}]}", "loras[0]: LoRA '/etc/x'");
    native_fails("{\"prompt\":\"x\",\"loras\":[{\"strength\":1}]}", "loras[0]: needs \"name\" or \"path\"");
    native_fails("{\"prompt\":\"x\",\"loras\":[{\"name\":\"a\",\"strength\":\"1\"}]}", "loras[0]: strength: must be a number");
    native_fails("{\"prompt\":\"(x:1.2.3)\"}", "prompt: ");
    native_fails("{\"prompt\":\"\xff\"}", "prompt: not valid UTF-8");
    native_fails("{\"prompt\":\"x\",\"negative_prompt\":5}", "negative_prompt: must be a string");
    lim.max_prompt = 4;
    native_fails("{\"prompt\":\"12345\"}", "prompt: longer than 4 bytes (5)");
    lim = sdw_request_limits_default();
    /* 2048 x 2048 is the default pixel limit exactly; one more row of 8 is not. */
    sdw_job_request r;
    assert_int_equal(native("{\"prompt\":\"x\",\"width\":2048,\"height\":2048}", &r), SDW_OK);
    sdw_job_request_free(&r);
    lim.max_pixels = 2048 * 2040;
    native_fails("{\"prompt\":\"x\",\"width\":2048,\"height\":2048}", "width, height: 2048x2048 is more than --max-pixels");
    lim = sdw_request_limits_default();
}

static void test_a1111(void **state)
{
    (void)state;
    sdw_job_request r;
    const char *body = "{\"prompt\":\"p\",\"sampler_name\":\"DPM++ 2M Karras\",\"batch_size\":2,\"n_iter\":3,"
                       "\"cfg_scale\":5,\"override_settings\":{\"sd_model_checkpoint\":\"x [abc]\","
                       "\"CLIP_stop_at_last_layers\":2},\"restore_faces\":false,\"alwayson_scripts\":{}}";
    assert_int_equal(sdw_parse_a1111_request(body, strlen(body), false, &lim, &r), SDW_OK);
    assert_true(r.has_sampler && r.sampler == SDW_SAMPLER_DPMPP_2M);
    assert_true(r.has_schedule && r.schedule == SDW_SCHEDULE_KARRAS);
    assert_int_equal(r.batch_size, 2);
    assert_int_equal(r.n_iter, 3);
    assert_int_equal(r.clip_skip, 2);
    assert_string_equal(r.model, "x [abc]");
    assert_int_equal(r.rng, SDW_RNG_CUDA);
    assert_int_equal(r.dialect, SDW_DIALECT_A1111);
    sdw_job_request_free(&r);

    /* Everything may be left out; "Euler a" with "Automatic". */
    body = "{\"sampler_name\":\"Euler a\",\"scheduler\":\"Automatic\",\"override_settings\":{\"randn_source\":\"CPU\"}}";
    assert_int_equal(sdw_parse_a1111_request(body, strlen(body), false, &lim, &r), SDW_OK);
    assert_string_equal(r.prompt, "");
    assert_int_equal(r.sampler, SDW_SAMPLER_EULER_A);
    assert_false(r.has_schedule);
    assert_int_equal(r.rng, SDW_RNG_CPU);
    sdw_job_request_free(&r);

    char *init = png_b64(64, 64, 3, NULL, NULL), *mask = png_b64(64, 64, 1, NULL, NULL);
    size_t cap = strlen(init) + strlen(mask) + 256;
    char *b = malloc(cap);
    snprintf(b, cap, "{\"init_images\":[\"%s\"],\"mask\":\"%s\",\"inpainting_mask_invert\":1,\"denoising_strength\":0.4}",
             init, mask);
    assert_int_equal(sdw_parse_a1111_request(b, strlen(b), true, &lim, &r), SDW_OK);
    assert_int_equal(r.kind, SDW_JOB_INPAINT);
    assert_true(r.mask_invert);
    assert_true(fabsf(r.strength - 0.4f) < 1e-6f);
    sdw_job_request_free(&r);
    body = "{\"prompt\":\"x\"}";
    assert_int_not_equal(sdw_parse_a1111_request(body, strlen(body), true, &lim, &r), SDW_OK);
    assert_string_equal(sdw_last_error(), "init_images: required by img2img");
    sdw_job_request_free(&r);
    body = "{\"sampler_name\":\"Karras\"}";
    assert_int_not_equal(sdw_parse_a1111_request(body, strlen(body), false, &lim, &r), SDW_OK);
    assert_non_null(strstr(sdw_last_error(), "sampler_name: unknown sampler"));
    sdw_job_request_free(&r);

    char *name;
    body = "{\"sd_model_checkpoint\":\"a.safetensors\",\"other\":1}";
    assert_int_equal(sdw_parse_a1111_options(body, strlen(body), &name), SDW_OK);
    assert_string_equal(name, "a.safetensors");
    free(name);
    assert_int_equal(sdw_parse_a1111_options("{}", 2, &name), SDW_OK);
    assert_null(name);
    free(b);
    free(init);
    free(mask);
}

static void test_openai_generation(void **state)
{
    (void)state;
    sdw_job_request r;
    const char *body = "{\"model\":\"dall-e-2\",\"prompt\":\"p\",\"n\":3,\"size\":\"256x128\",\"response_format\":\"url\","
                       "\"output_format\":\"webp\",\"quality\":\"hd\",\"negative_prompt\":\"n\",\"steps\":4}";
    assert_int_equal(sdw_parse_openai_generation(body, strlen(body), &lim, &r), SDW_OK);
    assert_int_equal(r.batch_size, 3);
    assert_int_equal(r.width, 256);
    assert_int_equal(r.height, 128);
    assert_true(r.response_url);
    assert_int_equal(r.output_format, SDW_IMAGE_WEBP);
    assert_string_equal(r.negative_prompt, "n");
    sdw_job_request_free(&r);
    static const char *const bad[][2] = {
        { "{\"n\":1}", "prompt: required" },
        { "{\"prompt\":\"p\",\"size\":\"big\"}", "size: must be \"WIDTHxHEIGHT\" or \"auto\"" },
        { "{\"prompt\":\"p\",\"size\":\"7x7\"}", "size: must be a multiple of 8" },
        { "{\"prompt\":\"p\",\"n\":9}", "n: must be in 1..8" },
        { "{\"prompt\":\"p\",\"response_format\":\"file\"}", "response_format: must be b64_json or url" },
        { "{\"prompt\":\"p\",\"output_format\":\"gif\"}", "output_format: must be png, jpeg or webp" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_not_equal(sdw_parse_openai_generation(bad[i][0], strlen(bad[i][0]), &lim, &r), SDW_OK);
        if (strncmp(sdw_last_error(), bad[i][1], strlen(bad[i][1]))) fail_msg("%s: %s", bad[i][0], sdw_last_error());
        sdw_job_request_free(&r);
    }
    const char *autosize = "{\"prompt\":\"p\",\"size\":\"auto\"}";
    assert_int_equal(sdw_parse_openai_generation(autosize, strlen(autosize), &lim, &r), SDW_OK);
    assert_int_equal(r.width, 0);
    sdw_job_request_free(&r);
}

/* ---------------------------------------------------------------- multipart */

static void test_multipart(void **state)
{
    (void)state;
    const char *ct = "multipart/form-data; boundary=\"XyZ\"";
    const char body[] = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\na \"cat\"\r\n"
                        "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a\\\"b.png\"\r\n"
                        "Content-Type: image/png\r\n\r\n\x89PNG\r\n--X\r\n\r\n"
                        "--XyZ\r\nContent-Disposition: form-data; name=\"empty\"\r\n\r\n\r\n--XyZ--\r\nepilogue";
    sdw_multipart m;
    assert_int_equal(sdw_multipart_parse(ct, body, sizeof body - 1, &m), SDW_OK);
    assert_int_equal(m.n, 3);
    const sdw_multipart_part *p = sdw_multipart_get(&m, "prompt");
    assert_non_null(p);
    assert_int_equal(p->len, 7);
    assert_memory_equal(p->data, "a \"cat\"", 7);
    p = sdw_multipart_get(&m, "image");
    assert_string_equal(p->filename, "a\"b.png");
    assert_string_equal(p->content_type, "image/png");
    assert_int_equal(p->len, 11);    /* "\x89PNG\r\n--X\r\n": a partial delimiter is data */
    assert_int_equal(sdw_multipart_get(&m, "empty")->len, 0);
    assert_null(sdw_multipart_get(&m, "nope"));
    sdw_multipart_free(&m);

    /* Bare LF line ends. */
    const char lf[] = "--b\nContent-Disposition: form-data; name=n\n\n4\n--b--\n";
    assert_int_equal(sdw_multipart_parse("multipart/form-data; boundary=b", lf, sizeof lf - 1, &m), SDW_OK);
    assert_int_equal(m.n, 1);
    assert_int_equal(m.parts[0].len, 1);
    sdw_multipart_free(&m);

    static const char *const bad[][2] = {
        { "application/json", "{}" },
        { "multipart/form-data", "--b\r\n" },
        { "multipart/form-data; boundary=b", "no boundary at all" },
        { "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=x\r\n\r\ndata" },
        { "multipart/form-data; boundary=b", "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--" },
        { "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: attachment; name=x\r\n\r\nx\r\n--b--" },
        { "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--" },
        { "multipart/form-data; boundary=b", "--bjunk\r\n" },
        { "multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=x" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (sdw_multipart_parse(bad[i][0], bad[i][1], strlen(bad[i][1]), &m) == SDW_OK) fail_msg("accepted: %s", bad[i][1]);
        assert_int_equal(m.n, 0);
        assert_null(m.parts);
    }
    /* More parts than the limit. */
    size_t cap = 100 * (SDW_MULTIPART_MAX_PARTS + 2), n = 0;
    char *many = malloc(cap);
    for (int i = 0; i <= SDW_MULTIPART_MAX_PARTS; i++)
        n += (size_t)snprintf(many + n, cap - n, "--b\r\nContent-Disposition: form-data; name=p%d\r\n\r\nx\r\n", i);
    n += (size_t)snprintf(many + n, cap - n, "--b--\r\n");
    assert_int_not_equal(sdw_multipart_parse("multipart/form-data; boundary=b", many, n, &m), SDW_OK);
    assert_non_null(strstr(sdw_last_error(), "more than"));
    free(many);
}

/* A form with an image (and a mask) as the openai client sends it. */
static char *form(const uint8_t *img, size_t img_n, const uint8_t *mask, size_t mask_n, const char *extra, size_t *n)
{
    size_t cap = img_n + mask_n + 2048;
    char *b = malloc(cap);
    size_t k = (size_t)snprintf(b, cap, "--B\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nedit it\r\n%s"
                                "--B\r\nContent-Disposition: form-data; name=\"image\"; filename=\"i.png\"\r\n"
                                "Content-Type: image/png\r\n\r\n", extra);
    memcpy(b + k, img, img_n);
    k += img_n;
    if (mask) {
        k += (size_t)snprintf(b + k, cap - k, "\r\n--B\r\nContent-Disposition: form-data; name=\"mask\"; "
                              "filename=\"m.png\"\r\n\r\n");
        memcpy(b + k, mask, mask_n);
        k += mask_n;
    }
    k += (size_t)snprintf(b + k, cap - k, "\r\n--B--\r\n");
    *n = k;
    return b;
}

static void test_openai_edit(void **state)
{
    (void)state;
    uint8_t *rgb, *rgba;
    size_t rgb_n, rgba_n, n;
    free(png_b64(64, 64, 3, &rgb, &rgb_n));
    free(png_b64(64, 64, 4, &rgba, &rgba_n));
    const char *ct = "multipart/form-data; boundary=B";
    char *b = form(rgb, rgb_n, rgba, rgba_n,
                   "--B\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\n2\r\n"
                   "--B\r\nContent-Disposition: form-data; name=\"size\"\r\n\r\n64x64\r\n"
                   "--B\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\nurl\r\n", &n);
    sdw_multipart m;
    sdw_job_request r;
    assert_int_equal(sdw_multipart_parse(ct, b, n, &m), SDW_OK);
    assert_int_equal(sdw_parse_openai_edit(&m, &lim, &r), SDW_OK);
    assert_int_equal(r.kind, SDW_JOB_INPAINT);
    assert_string_equal(r.prompt, "edit it");
    assert_int_equal(r.batch_size, 2);
    assert_true(r.response_url);
    assert_int_equal(r.mask_source, SDW_MASK_ALPHA);
    assert_true(r.strength == 1.0f);
    sdw_job_request_free(&r);
    sdw_multipart_free(&m);
    free(b);

    /* No mask: the image's own alpha; none without transparency. */
    b = form(rgba, rgba_n, NULL, 0, "", &n);
    assert_int_equal(sdw_multipart_parse(ct, b, n, &m), SDW_OK);
    assert_int_equal(sdw_parse_openai_edit(&m, &lim, &r), SDW_OK);
    assert_int_equal(r.mask.channels, 4);
    sdw_job_request_free(&r);
    sdw_multipart_free(&m);
    free(b);
    b = form(rgb, rgb_n, NULL, 0, "--B\r\nContent-Disposition: form-data; name=\"steps\"\r\n\r\nmany\r\n", &n);
    assert_int_equal(sdw_multipart_parse(ct, b, n, &m), SDW_OK);
    assert_int_not_equal(sdw_parse_openai_edit(&m, &lim, &r), SDW_OK);
    assert_string_equal(sdw_last_error(), "steps: must be an integer (got 'many')");
    sdw_job_request_free(&r);
    sdw_multipart_free(&m);
    free(b);
    b = form(rgb, rgb_n, NULL, 0, "", &n);
    assert_int_equal(sdw_multipart_parse(ct, b, n, &m), SDW_OK);
    assert_int_not_equal(sdw_parse_openai_edit(&m, &lim, &r), SDW_OK);
    assert_string_equal(sdw_last_error(), "mask: required when the image has no transparency");
    sdw_job_request_free(&r);
    sdw_multipart_free(&m);
    free(b);
    free(rgb);
    free(rgba);
}

/* FLUX dev's distilled guidance: its own field in every dialect, apart from
 * cfg, NAN when absent, 0..SDW_REQ_MAX_GUIDANCE, errors naming the field. */
static sdw_status a1111(const char *body, sdw_job_request *r)
{
    return sdw_parse_a1111_request(body, strlen(body), false, &lim, r);
}

static sdw_status openai(const char *body, sdw_job_request *r)
{
    return sdw_parse_openai_generation(body, strlen(body), &lim, r);
}

/* parse(body) fails with a message starting with `prefix`. */
static void fails_with(sdw_status (*parse)(const char *, sdw_job_request *), const char *body, const char *prefix)
{
    sdw_job_request r;
    sdw_status s = parse(body, &r);
    if (s == SDW_OK || strncmp(sdw_last_error(), prefix, strlen(prefix)))
        fail_msg("%s: got %d '%s', want '%s...'", body, s, sdw_last_error(), prefix);
    sdw_job_request_free(&r);
}

/* parse(body) succeeds with this guidance (NAN: none) and cfg (NAN: none). */
static void parses_to(sdw_status (*parse)(const char *, sdw_job_request *), const char *body, float guidance, float cfg)
{
    sdw_job_request r;
    if (parse(body, &r) != SDW_OK) fail_msg("%s: %s", body, sdw_last_error());
    if (isnan(guidance) ? !isnan(r.guidance) : !(fabsf(r.guidance - guidance) < 1e-6f))
        fail_msg("%s: guidance %g, want %g", body, r.guidance, guidance);
    if (isnan(cfg) ? !isnan(r.cfg) : !(fabsf(r.cfg - cfg) < 1e-6f)) fail_msg("%s: cfg %g, want %g", body, r.cfg, cfg);
    sdw_job_request_free(&r);
}

static void test_guidance(void **state)
{
    (void)state;
    parses_to(native, "{\"prompt\":\"x\"}", NAN, NAN);
    parses_to(native, "{\"prompt\":\"x\",\"guidance\":3.5,\"guidance_scale\":1}", 3.5f, 1.0f);
    parses_to(native, "{\"prompt\":\"x\",\"distilled_cfg_scale\":2}", 2.0f, NAN);
    parses_to(native, "{\"prompt\":\"x\",\"distilled_cfg_scale\":2,\"guidance\":0}", 0.0f, NAN);
    parses_to(native, "{\"prompt\":\"x\",\"guidance\":null}", NAN, NAN);
    parses_to(native, "{\"prompt\":\"x\",\"guidance\":30}", 30.0f, NAN);
    fails_with(native, "{\"prompt\":\"x\",\"guidance\":31}", "guidance: must be in [0, 30] (got 31)");
    fails_with(native, "{\"prompt\":\"x\",\"guidance\":-0.5}", "guidance: must be in [0, 30] (got -0.5)");
    fails_with(native, "{\"prompt\":\"x\",\"guidance\":\"3\"}", "guidance: must be a number, not a string");
    fails_with(native, "{\"prompt\":\"x\",\"distilled_cfg_scale\":1e9}", "distilled_cfg_scale: must be in [0, 30]");

    parses_to(a1111, "{\"prompt\":\"x\",\"cfg_scale\":1,\"distilled_cfg_scale\":3.5}", 3.5f, 1.0f);
    parses_to(a1111, "{\"prompt\":\"x\",\"guidance\":2}", 2.0f, NAN);
    parses_to(a1111, "{\"prompt\":\"x\",\"guidance\":2,\"distilled_cfg_scale\":4}", 4.0f, NAN);
    fails_with(a1111, "{\"distilled_cfg_scale\":40}", "distilled_cfg_scale: must be in [0, 30] (got 40)");
    fails_with(a1111, "{\"guidance\":[1]}", "guidance: must be a number, not an array");

    parses_to(openai, "{\"prompt\":\"x\",\"guidance\":4,\"guidance_scale\":1.5}", 4.0f, 1.5f);
    fails_with(openai, "{\"prompt\":\"x\",\"guidance\":31}", "guidance: must be in [0, 30] (got 31)");

    /* An edit's form fields. */
    uint8_t *rgba;
    size_t rgba_n, n;
    free(png_b64(64, 64, 4, &rgba, &rgba_n));
    const char *ct = "multipart/form-data; boundary=B";
    static const char *const values[] = { "2.5", "99", "lots" };
    static const char *const errors[] = { NULL, "guidance: must be in 0..30 (got 99)", "guidance: must be a number (got 'lots')" };
    for (int i = 0; i < 3; i++) {
        char extra[256];
        snprintf(extra, sizeof extra, "--B\r\nContent-Disposition: form-data; name=\"guidance\"\r\n\r\n%s\r\n", values[i]);
        char *b = form(rgba, rgba_n, NULL, 0, extra, &n);
        sdw_multipart m;
        sdw_job_request r;
        assert_int_equal(sdw_multipart_parse(ct, b, n, &m), SDW_OK);
        sdw_status s = sdw_parse_openai_edit(&m, &lim, &r);
        if (!errors[i]) {
            assert_int_equal(s, SDW_OK);
            assert_true(fabsf(r.guidance - 2.5f) < 1e-6f);
            assert_true(isnan(r.cfg));
        } else {
            assert_int_not_equal(s, SDW_OK);
            assert_string_equal(sdw_last_error(), errors[i]);
        }
        sdw_job_request_free(&r);
        sdw_multipart_free(&m);
        free(b);
    }
    free(rgba);
}

/* ---------------------------------------------------------------- ControlNet units */

/* fmt with every "%s" replaced by b64. */
static char *with_image(const char *fmt, const char *b64)
{
    size_t n = strlen(b64), cap = strlen(fmt) + 1;
    for (const char *p = fmt; (p = strstr(p, "%s")); p += 2) cap += n;
    char *b = malloc(cap), *o = b;
    for (const char *p = fmt; *p;) {
        if (p[0] == '%' && p[1] == 's') {
            memcpy(o, b64, n);
            o += n;
            p += 2;
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    return b;
}

static void control_fails(sdw_status (*parse)(const char *, sdw_job_request *), const char *fmt, const char *b64,
                          const char *prefix)
{
    char *b = with_image(fmt, b64);
    fails_with(parse, b, prefix);
    free(b);
}

static void test_native_controlnets(void **state)
{
    (void)state;
    char *img = png_b64(48, 32, 3, NULL, NULL);
    sdw_job_request r;
    char *b = with_image("{\"prompt\":\"x\",\"controlnets\":[{\"model\":\"cn-a\",\"image\":\"%s\",\"preprocessor\":"
                         "\"canny:50:150\",\"threshold_b\":180,\"scale\":0.5,\"start\":0.2,\"end\":0.8,\"mode\":"
                         "\"controlnet\",\"resize_mode\":\"Resize and Fill\",\"processor_res\":256,\"pixel_perfect\":"
                         "true},{\"model\":\"sub/cn-b.safetensors\",\"image\":\"data:image/png;base64,%s\"}],"
                         "\"guess_mode\":true}", img);
    assert_int_equal(native(b, &r), SDW_OK);
    assert_int_equal(r.n_controls, 2);
    sdw_job_control *c = &r.controls[0];
    assert_string_equal(c->model, "cn-a");
    assert_int_equal(c->pre.kind, SDW_PRE_CANNY);
    assert_true(c->pre.a == 50 && c->pre.b == 180);
    assert_true(c->scale == 0.5f && c->start == 0.2f && c->end == 0.8f);
    assert_int_equal(c->mode, SDW_CONTROL_CONTROLNET);
    assert_int_equal(c->resize_mode, SDW_FIT_RESIZE_AND_FILL);
    assert_int_equal(c->processor_res, 256);
    assert_true(c->pixel_perfect);
    assert_int_equal(c->image.w, 48);
    assert_string_equal(c->field, "controlnets[0]");
    c = &r.controls[1];   /* the defaults */
    assert_int_equal(c->pre.kind, SDW_PRE_NONE);
    assert_true(c->scale == 1 && c->start == 0 && c->end == 1);
    assert_int_equal(c->mode, SDW_CONTROL_BALANCED);
    assert_int_equal(c->resize_mode, SDW_FIT_CROP_AND_RESIZE);
    assert_int_equal(c->processor_res, 0);
    assert_true(r.control_guess);
    sdw_job_request_free(&r);
    free(b);

    /* "canny" with its default thresholds; img2img units fall back on the init image. */
    b = with_image("{\"prompt\":\"x\",\"init_image\":\"%s\",\"controlnets\":[{\"model\":\"m\",\"module\":\"canny\","
                   "\"threshold_a\":-1,\"mode\":2,\"resize_mode\":0}]}", img);
    assert_int_equal(native(b, &r), SDW_OK);
    assert_int_equal(r.kind, SDW_JOB_IMG2IMG);
    assert_true(r.controls[0].pre.a == 100 && r.controls[0].pre.b == 200);
    assert_int_equal(r.controls[0].image.w, 0);
    assert_int_equal(r.controls[0].mode, SDW_CONTROL_CONTROLNET);
    assert_int_equal(r.controls[0].resize_mode, SDW_FIT_JUST_RESIZE);
    assert_false(r.control_guess);
    sdw_job_request_free(&r);
    free(b);

    const char *u = "{\"prompt\":\"x\",\"controlnets\":[{\"image\":\"%s\",\"model\":\"m\",";
    char f[512];
#define FAILS(extra, msg) (snprintf(f, sizeof f, "%s%s}]}", u, extra), control_fails(native, f, img, msg))
    FAILS("\"scale\":2.5", "controlnets[0]: scale: must be in [0, 2] (got 2.5)");
    FAILS("\"weight\":-1", "controlnets[0]: weight: must be in [0, 2] (got -1)");
    FAILS("\"preprocessor\":\"depth_midas\"", "controlnets[0]: preprocessor: ");
    FAILS("\"preprocessor\":\"canny\",\"threshold_a\":300", "controlnets[0]: threshold_a: must be an integer in 1..255");
    FAILS("\"preprocessor\":\"canny\",\"processor_res\":16", "controlnets[0]: processor_res: must be in 64..2048");
    FAILS("\"start\":0.6,\"end\":0.4", "controlnets[0]: start 0.6 and end 0.4 must satisfy");
    FAILS("\"mode\":\"loud\"", "controlnets[0]: mode: unknown 'loud'");
    FAILS("\"resize_mode\":7", "controlnets[0]: resize_mode: must be 0 (Just Resize)");
    FAILS("\"resize_mode\":\"stretch\"", "controlnets[0]: resize_mode: ");
    FAILS("\"guess_mode\":false},{\"model\":\"m\",\"image\":\"%s\",\"guess_mode\":true",
          "controlnets[1]: guess_mode: one setting for every unit");
#undef FAILS
    control_fails(native, "{\"prompt\":\"x\",\"controlnets\":[{\"model\":\"m\",\"image\":\"@@@%s\"}]}", img,
                  "controlnets[0]: image: invalid base64");
    control_fails(native, "{\"prompt\":\"x\",\"controlnets\":[{\"model\":\"../m\",\"image\":\"%s\"}]}", img,
                  "controlnets[0]: model: '../m' must be a name inside --controlnet-dir");
    control_fails(native, "{\"prompt\":\"x\",\"controlnets\":[{\"image\":\"%s\"}]}", img, "controlnets[0]: model: required");
    fails_with(native, "{\"prompt\":\"x\",\"controlnets\":[{\"model\":\"m\"}]}", "controlnets[0]: image: required");
    fails_with(native, "{\"prompt\":\"x\",\"controlnets\":{}}", "controlnets: must be an array");
    fails_with(native, "{\"prompt\":\"x\",\"controlnets\":[{\"model\":\"m\",\"image\":7}]}",
               "controlnets[0]: image: must be a base64 image");
    char *many = malloc(16384);
    int k = snprintf(many, 16384, "{\"prompt\":\"x\",\"controlnets\":[");
    for (int i = 0; i <= SDW_REQ_MAX_CONTROLS; i++) k += snprintf(many + k, 16384 - k, "%s{\"model\":\"m\",\"image\":\"%%s\"}", i ? "," : "");
    snprintf(many + k, 16384 - k, "]}");
    control_fails(native, many, img, "controlnets[8]: more than 8 ControlNet units");
    free(many);
    free(img);
}

static void test_a1111_controlnets(void **state)
{
    (void)state;
    char *img = png_b64(40, 40, 3, NULL, NULL);
    sdw_job_request r;
    /* As sd-webui-controlnet's API takes them: a disabled unit and a null are skipped. */
    char *b = with_image("{\"prompt\":\"x\",\"alwayson_scripts\":{\"ControlNet\":{\"args\":[{\"enabled\":true,\"module\":"
                         "\"canny\",\"model\":\"control_canny [abcd1234]\",\"weight\":0.7,\"image\":\"%s\",\"resize_mode\":"
                         "\"Just Resize\",\"processor_res\":-1,\"threshold_a\":60,\"threshold_b\":-1,\"guidance_start\":0.1,"
                         "\"guidance_end\":0.9,\"control_mode\":\"My prompt is more important\",\"pixel_perfect\":false},"
                         "{\"enabled\":false,\"model\":\"None\"},null,{\"module\":\"none\",\"model\":\"other\",\"image\":"
                         "{\"image\":\"%s\",\"mask\":null},\"control_mode\":2,\"resize_mode\":2,\"threshold_a\":64,"
                         "\"threshold_b\":64,\"processor_res\":64,\"guidance\":0.5,\"low_vram\":true}]}}}", img);
    assert_int_equal(a1111(b, &r), SDW_OK);
    assert_int_equal(r.n_controls, 2);
    sdw_job_control *c = &r.controls[0];
    assert_string_equal(c->model, "control_canny [abcd1234]");
    assert_true(c->pre.kind == SDW_PRE_CANNY && c->pre.a == 60 && c->pre.b == 200);
    assert_int_equal(c->processor_res, SDW_REQ_A1111_PROCESSOR_RES);
    assert_true(fabsf(c->scale - 0.7f) < 1e-6f && fabsf(c->start - 0.1f) < 1e-6f && fabsf(c->end - 0.9f) < 1e-6f);
    assert_int_equal(c->mode, SDW_CONTROL_PROMPT);
    assert_int_equal(c->resize_mode, SDW_FIT_JUST_RESIZE);
    c = &r.controls[1];
    assert_string_equal(c->field, "alwayson_scripts.controlnet.args[3]");
    assert_int_equal(c->pre.kind, SDW_PRE_NONE);
    assert_int_equal(c->processor_res, 0);   /* "none" is not scaled */
    assert_int_equal(c->image.w, 40);
    assert_int_equal(c->mode, SDW_CONTROL_CONTROLNET);
    assert_int_equal(c->resize_mode, SDW_FIT_RESIZE_AND_FILL);
    assert_true(c->end == 0.5f);
    sdw_job_request_free(&r);
    free(b);

    /* img2img: the older input_image, or none at all (the init image). */
    b = with_image("{\"init_images\":[\"%s\"],\"alwayson_scripts\":{\"controlnet\":{\"args\":[{\"model\":\"m\","
                   "\"input_image\":\"%s\"},{\"model\":\"m\",\"module\":\"invert (from white bg & black line)\"}]}}}", img);
    assert_int_equal(sdw_parse_a1111_request(b, strlen(b), true, &lim, &r), SDW_OK);
    assert_int_equal(r.n_controls, 2);
    assert_int_equal(r.controls[0].image.w, 40);
    assert_int_equal(r.controls[1].pre.kind, SDW_PRE_INVERT);
    assert_int_equal(r.controls[1].image.w, 0);
    sdw_job_request_free(&r);
    free(b);

    const char *u = "{\"alwayson_scripts\":{\"controlnet\":{\"args\":[{\"image\":\"%s\",\"model\":\"m\",";
    char f[512];
#define FAILS(extra, msg) (snprintf(f, sizeof f, "%s%s}]}}}", u, extra), control_fails(a1111, f, img, msg))
    FAILS("\"weight\":2.5", "alwayson_scripts.controlnet.args[0]: weight: must be in [0, 2] (got 2.5)");
    FAILS("\"module\":\"openpose\"", "alwayson_scripts.controlnet.args[0]: module: ");
    FAILS("\"guidance_start\":0.9,\"guidance_end\":0.1", "alwayson_scripts.controlnet.args[0]: start 0.9 and end 0.1");
    FAILS("\"control_mode\":3", "alwayson_scripts.controlnet.args[0]: control_mode: must be 0 (Balanced)");
    FAILS("\"enabled\":\"yes\"", "alwayson_scripts.controlnet.args[0]: enabled: must be a boolean");
#undef FAILS
    control_fails(a1111, "{\"alwayson_scripts\":{\"controlnet\":{\"args\":[{\"model\":\"None\",\"image\":\"%s\"}]}}}",
                  img, "alwayson_scripts.controlnet.args[0]: model: required");
    control_fails(a1111, "{\"alwayson_scripts\":{\"controlnet\":{\"args\":[{\"model\":\"m\",\"image\":\"x%s\"}]}}}",
                  img, "alwayson_scripts.controlnet.args[0]: image: ");
    fails_with(a1111, "{\"alwayson_scripts\":{\"controlnet\":{\"args\":[{\"model\":\"m\"}]}}}",
               "alwayson_scripts.controlnet.args[0]: image: required");
    fails_with(a1111, "{\"alwayson_scripts\":{\"controlnet\":{\"args\":{}}}}", "alwayson_scripts.controlnet.args: must be an array");
    fails_with(a1111, "{\"alwayson_scripts\":[]}", "alwayson_scripts: must be an object");

    /* POST /controlnet/detect's body. */
    sdw_detect_request d;
    b = with_image("{\"controlnet_module\":\"canny\",\"controlnet_input_images\":[\"%s\",\"%s\"],"
                   "\"controlnet_threshold_a\":30,\"controlnet_processor_res\":64}", img);
    assert_int_equal(sdw_parse_a1111_detect(b, strlen(b), &lim, &d), SDW_OK);
    assert_int_equal(d.n_images, 2);
    assert_true(d.pre.kind == SDW_PRE_CANNY && d.pre.a == 30 && d.pre.b == 200);
    assert_int_equal(d.processor_res, 64);
    sdw_detect_request_free(&d);
    free(b);
    free(img);
}

/* ---------------------------------------------------------------- the ControlNet cache */

/* Fake nets: a net is its file's size in bytes; frees are counted. */
static int fake_frees;
static sdw_status fake_load(void *user, const char *path, void **net, size_t *bytes)
{
    (void)user;
    FILE *f = fopen(path, "rb");
    if (!f) return sdw_fail(SDW_ERR_IO, "%s: missing", path);
    fseek(f, 0, SEEK_END);
    *bytes = (size_t)ftell(f);
    fclose(f);
    *net = strdup(path);
    return SDW_OK;
}
static void fake_free(void *user, void *net)
{
    (void)user;
    free(net);
    fake_frees++;
}

static void put_file(const char *path, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++) fputc('x', f);
    fclose(f);
}

static void test_controlnet_cache(void **state)
{
    (void)state;
    char dir[] = "/tmp/sdw_cn_cache_XXXXXX", a[64], b[64], c[64], big[64];
    assert_non_null(mkdtemp(dir));
    snprintf(a, sizeof a, "%s/a", dir), snprintf(b, sizeof b, "%s/b", dir);
    snprintf(c, sizeof c, "%s/c", dir), snprintf(big, sizeof big, "%s/big", dir);
    put_file(a, 40), put_file(b, 40), put_file(c, 40), put_file(big, 150);
    sdw_cn_cache *cc = sdw_cn_cache_new(100, fake_load, fake_free, NULL);
    void *na, *nb, *nc, *x;
    bool hit;
    /* Job 1: a and b. Job 2: a again (held), then c: b is the least recently used. */
    assert_int_equal(sdw_cn_cache_get(cc, a, &na, &hit), SDW_OK);
    assert_false(hit);
    assert_int_equal(sdw_cn_cache_get(cc, b, &nb, &hit), SDW_OK);
    sdw_cn_cache_unpin_all(cc);
    assert_int_equal(sdw_cn_cache_get(cc, a, &x, &hit), SDW_OK);
    assert_true(hit && x == na);
    assert_int_equal(sdw_cn_cache_get(cc, c, &nc, &hit), SDW_OK);
    sdw_cn_cache_stats st = sdw_cn_cache_get_stats(cc);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(fake_frees, 1);
    /* Pinned nets stay even past the budget: the same job asks for b again. */
    assert_int_equal(sdw_cn_cache_get(cc, b, &nb, &hit), SDW_OK);
    assert_false(hit);
    st = sdw_cn_cache_get_stats(cc);
    assert_true(st.entries == 3 && st.pinned == 3 && st.bytes == 120);
    sdw_cn_cache_unpin_all(cc);   /* a, the least recently used, goes */
    st = sdw_cn_cache_get_stats(cc);
    assert_true(st.entries == 2 && st.bytes == 80 && st.pinned == 0);
    assert_int_equal(sdw_cn_cache_get(cc, c, &x, &hit), SDW_OK);
    assert_true(hit && x == nc);
    /* A net larger than the budget runs its job, then goes. */
    assert_int_equal(sdw_cn_cache_get(cc, big, &x, &hit), SDW_OK);
    st = sdw_cn_cache_get_stats(cc);
    assert_true(st.entries == 2 && st.bytes == 190);   /* b dropped before loading; c is pinned */
    sdw_cn_cache_unpin_all(cc);
    st = sdw_cn_cache_get_stats(cc);
    assert_true(st.entries == 1 && st.bytes == 40);
    /* A file that changed is loaded again; a missing one fails. */
    put_file(c, 30);
    assert_int_equal(sdw_cn_cache_get(cc, c, &x, &hit), SDW_OK);
    assert_false(hit);
    assert_int_equal(sdw_cn_cache_get_stats(cc).bytes, 30);
    /* A net refused by the model (its heads guessed wrong, say) goes after the
     * job, pinned until then, so a config put beside it is read next time. */
    sdw_cn_cache_unpin_all(cc);
    assert_int_equal(sdw_cn_cache_get(cc, c, &nc, &hit), SDW_OK);
    assert_true(hit);
    sdw_cn_cache_refuse(cc, c);
    assert_int_equal(sdw_cn_cache_get_stats(cc).entries, 1);
    sdw_cn_cache_unpin_all(cc);
    assert_int_equal(sdw_cn_cache_get_stats(cc).entries, 0);
    assert_int_equal(sdw_cn_cache_get(cc, c, &x, &hit), SDW_OK);
    assert_false(hit);
    unlink(a);
    assert_int_not_equal(sdw_cn_cache_get(cc, a, &x, &hit), SDW_OK);
    sdw_cn_cache_free(cc);   /* the pinned c too */
    assert_int_equal(fake_frees, 7);
    unlink(b), unlink(c), unlink(big), rmdir(dir);
}

static void test_pickle_names(void **state)
{
    (void)state;
    assert_true(sdw_catalog_is_pickle("a.ckpt"));
    assert_true(sdw_catalog_is_pickle("dir/a.PT"));
    assert_true(sdw_catalog_is_pickle("a.pth"));
    assert_true(sdw_catalog_is_pickle("pytorch_model.bin"));
    assert_false(sdw_catalog_is_pickle("a.safetensors"));
    sdw_catalog_entry e;
    assert_int_not_equal(sdw_catalog_resolve(".", "x.ckpt", &e), SDW_OK);
    assert_non_null(strstr(sdw_last_error(), "convert it to .safetensors"));
    assert_int_not_equal(sdw_catalog_resolve(".", "../x.safetensors", &e), SDW_OK);
    assert_int_not_equal(sdw_catalog_resolve(".", "/x.safetensors", &e), SDW_OK);
}

int main(void)
{
    lim = sdw_request_limits_default();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_native_fields), cmocka_unit_test(test_native_images),
        cmocka_unit_test(test_native_errors), cmocka_unit_test(test_a1111),
        cmocka_unit_test(test_openai_generation), cmocka_unit_test(test_multipart),
        cmocka_unit_test(test_openai_edit), cmocka_unit_test(test_guidance),
        cmocka_unit_test(test_pickle_names), cmocka_unit_test(test_native_controlnets),
        cmocka_unit_test(test_a1111_controlnets), cmocka_unit_test(test_controlnet_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
