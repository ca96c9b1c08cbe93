/* test_preprocess.c: the ControlNet preprocessors and control-image fitting
 * (io/preprocess.h). Canny against OpenCV 4.6's edge maps in
 * tests/data/controlnet/canny (every file, byte for byte); the other
 * preprocessors, the parsers and the resize modes on small hand-made images
 * whose expected pixels follow from sd-webui-controlnet's rules. */
#include "testkit.h"
#include "io/preprocess.h"
#include "io/json_file.h"
#include "core/error.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sdw_image make(int w, int h, int ch, const uint8_t *px)
{
    sdw_image im;
    assert_int_equal(sdw_image_alloc(&im, w, h, ch), SDW_OK);
    if (px) memcpy(im.data, px, (size_t)w * h * ch);
    return im;
}

static const uint8_t *at(const sdw_image *im, int x, int y) { return im->data + ((size_t)y * im->w + x) * im->channels; }

static void assert_rgb(const sdw_image *im, int x, int y, int r, int g, int b)
{
    const uint8_t *p = at(im, x, y);
    if (p[0] != r || p[1] != g || p[2] != b)
        fail_msg("pixel (%d, %d) is (%d, %d, %d), expected (%d, %d, %d)", x, y, p[0], p[1], p[2], r, g, b);
}

/* ---- Canny against OpenCV ---- */

static void check_canny_entry(const cJSON *e)
{
    const char *in_rel = sdw_json_str(e, "input", NULL), *out_rel = sdw_json_str(e, "output", NULL);
    int lo = sdw_json_int(e, "low_threshold", -1), hi = sdw_json_int(e, "high_threshold", -1);
    int ch = sdw_json_int(e, "channels", 0), n_edges = sdw_json_int(e, "n_edge_pixels", -1);
    char rel[256];
    snprintf(rel, sizeof rel, "controlnet/%s", in_rel);
    sdw_image in, ref;
    assert_int_equal(sdw_image_load(test_data_path(rel), 0, &in), SDW_OK);
    snprintf(rel, sizeof rel, "controlnet/%s", out_rel);
    assert_int_equal(sdw_image_load(test_data_path(rel), 0, &ref), SDW_OK);
    assert_int_equal(in.channels, ch);
    assert_int_equal(ref.channels, 1);
    assert_int_equal(in.w, sdw_json_int(e, "width", 0));
    assert_int_equal(in.h, sdw_json_int(e, "height", 0));
    assert_int_equal(ref.w, in.w);
    assert_int_equal(ref.h, in.h);
    size_t np = (size_t)in.w * in.h;

    uint8_t *edges = malloc(np);
    assert_int_equal(sdw_canny(in.data, in.w, in.h, in.channels, lo, hi, edges), SDW_OK);
    size_t diff = 0, count = 0;
    for (size_t i = 0; i < np; i++) diff += edges[i] != ref.data[i], count += edges[i] == 255;
    printf("  %-34s %dx%d c%d %3d:%-3d  %4zu edges (ref %d), %zu pixels differ\n", out_rel, in.w, in.h, ch, lo, hi,
           count, n_edges, diff);
    assert_int_equal(diff, 0);
    assert_int_equal((int)count, n_edges);

    /* Through the preprocessor: three equal channels, the same edges; a gray
     * input given as RGB, or any input with an opaque alpha, changes nothing. */
    char spec[64];
    snprintf(spec, sizeof spec, "canny:%d:%d", lo, hi);
    sdw_preprocessor p;
    assert_int_equal(sdw_preprocessor_parse(spec, &p), SDW_OK);
    sdw_image rgba = make(in.w, in.h, 4, NULL), out;
    for (size_t i = 0; i < np; i++) {
        for (int c = 0; c < 3; c++) rgba.data[4 * i + c] = in.data[i * ch + (ch == 3 ? c : 0)];
        rgba.data[4 * i + 3] = 255;
    }
    const sdw_image *inputs[2] = {&in, &rgba};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(sdw_preprocess(&p, inputs[k], &out), SDW_OK);
        assert_int_equal(out.channels, 3);
        for (size_t i = 0; i < np; i++)
            for (int c = 0; c < 3; c++) assert_int_equal(out.data[3 * i + c], ref.data[i]);
        sdw_image_free(&out);
    }
    free(edges);
    sdw_image_free(&rgba);
    sdw_image_free(&in);
    sdw_image_free(&ref);
}

static void test_canny_references(void **state)
{
    (void)state;
    cJSON *j;
    assert_int_equal(sdw_json_load_file(test_data_path("controlnet/canny/canny.json"), &j), SDW_OK);
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(j, "entries"), *e;
    int n = 0;
    cJSON_ArrayForEach(e, entries) {
        check_canny_entry(e);
        n++;
    }
    assert_int_equal(n, 16);
    cJSON_Delete(j);
}

/* Thresholds are floored and swapped like OpenCV's: 99.9:199.9 is 99:199. */
static void test_canny_thresholds(void **state)
{
    (void)state;
    sdw_image in;
    assert_int_equal(sdw_image_load(test_data_path("controlnet/canny/scene64_input.png"), 0, &in), SDW_OK);
    size_t np = (size_t)in.w * in.h;
    uint8_t *a = malloc(np), *b = malloc(np);
    assert_int_equal(sdw_canny(in.data, in.w, in.h, 3, 199.9, 99.9, a), SDW_OK);
    assert_int_equal(sdw_canny(in.data, in.w, in.h, 3, 99, 199, b), SDW_OK);
    assert_memory_equal(a, b, np);
    assert_int_equal(sdw_canny(in.data, in.w, in.h, 3, NAN, 100, a), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_canny(in.data, in.w, in.h, 2, 100, 200, a), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_canny(in.data, 0, in.h, 3, 100, 200, a), SDW_ERR_INVALID_ARG);
    free(a), free(b);
    sdw_image_free(&in);
}

/* One-pixel-wide and one-pixel-high images: the replicated border makes the
 * across-gradient 0; a step along the strip gives one edge, on its near side. */
static void test_canny_thin_images(void **state)
{
    (void)state;
    uint8_t e[1] = {7}, px1[3] = {10, 200, 30};
    assert_int_equal(sdw_canny(px1, 1, 1, 3, 100, 200, e), SDW_OK);
    assert_int_equal(e[0], 0);
    uint8_t strip[16], edges[16];
    for (int i = 0; i < 16; i++) strip[i] = i < 8 ? 0 : 255;
    for (int vertical = 0; vertical < 2; vertical++) {
        int w = vertical ? 1 : 16, h = vertical ? 16 : 1;
        assert_int_equal(sdw_canny(strip, w, h, 1, 100, 200, edges), SDW_OK);
        for (int i = 0; i < 16; i++) assert_int_equal(edges[i], i == 7 ? 255 : 0);
    }
    sdw_preprocessor p;
    assert_int_equal(sdw_preprocessor_parse("canny", &p), SDW_OK);
    sdw_image one = make(1, 1, 4, (const uint8_t[]){1, 2, 3, 4}), col = make(1, 16, 1, strip), out;
    assert_int_equal(sdw_preprocess(&p, &one, &out), SDW_OK);
    assert_int_equal(out.w * out.h * out.channels, 3);
    assert_rgb(&out, 0, 0, 0, 0, 0);
    sdw_image_free(&out);
    assert_int_equal(sdw_preprocess(&p, &col, &out), SDW_OK);
    for (int y = 0; y < 16; y++) assert_rgb(&out, 0, y, y == 7 ? 255 : 0, y == 7 ? 255 : 0, y == 7 ? 255 : 0);
    sdw_image_free(&out);
    sdw_image_free(&one);
    sdw_image_free(&col);
}

/* ---- The parser ---- */

static void test_parse_good(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        sdw_preprocessor_kind kind;
        float a, b;
    } cases[] = {
        {"none", SDW_PRE_NONE, 0, 0},
        {"None", SDW_PRE_NONE, 0, 0},
        {"canny", SDW_PRE_CANNY, 100, 200},
        {"canny:50:150", SDW_PRE_CANNY, 50, 150},
        {"CANNY:0:255", SDW_PRE_CANNY, 0, 255},
        {"canny:200:100", SDW_PRE_CANNY, 200, 100},
        {"canny:99.5:120", SDW_PRE_CANNY, 99.5f, 120},
        {"invert", SDW_PRE_INVERT, 0, 0},
        {"invert (from white bg & black line)", SDW_PRE_INVERT, 0, 0},
        {"threshold", SDW_PRE_THRESHOLD, 127, 0},
        {"threshold:64", SDW_PRE_THRESHOLD, 64, 0},
        {"scribble", SDW_PRE_SCRIBBLE, 0, 0},
        {"scribble_thr", SDW_PRE_SCRIBBLE, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sdw_preprocessor p;
        if (sdw_preprocessor_parse(cases[i].spec, &p) != SDW_OK) fail_msg("'%s': %s", cases[i].spec, sdw_last_error());
        assert_int_equal(p.kind, cases[i].kind);
        if (p.kind == SDW_PRE_CANNY || p.kind == SDW_PRE_THRESHOLD) assert_float_equal(p.a, cases[i].a, 0);
        if (p.kind == SDW_PRE_CANNY) assert_float_equal(p.b, cases[i].b, 0);
    }
    static const char *canon[] = {"none", "canny", "invert", "threshold", "scribble"};
    for (int k = 0; k < 5; k++) {
        assert_string_equal(sdw_preprocessor_name((sdw_preprocessor_kind)k), canon[k]);
        sdw_preprocessor p;
        assert_int_equal(sdw_preprocessor_parse(canon[k], &p), SDW_OK);
        assert_int_equal(p.kind, k);
    }
}

static void test_parse_bad(void **state)
{
    (void)state;
    static const char *bad[] = {"",       "cany",        "canny:50",        "canny:50:150:3", "canny:a:b",
                                "canny:-1:5", "canny:5:300", "canny:50:",    "threshold:",     "threshold:1:2",
                                "invert:3", "scribble_hed", "lineart",      "canny 50 150",   "none:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sdw_preprocessor p;
        if (sdw_preprocessor_parse(bad[i], &p) == SDW_OK) fail_msg("'%s' was accepted", bad[i]);
        const char *msg = sdw_last_error();
        if (!strstr(msg, "valid:") || !strstr(msg, "canny[:LOW:HIGH]") || !strstr(msg, "scribble"))
            fail_msg("'%s': message lacks the list: %s", bad[i], msg);
    }
    sdw_preprocessor p;
    assert_int_equal(sdw_preprocessor_parse(NULL, &p), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "valid:"));

    sdw_fit_mode m;
    static const struct {
        const char *s;
        sdw_fit_mode m;
    } modes[] = {{"Just Resize", SDW_FIT_JUST_RESIZE}, {"Crop and Resize", SDW_FIT_CROP_AND_RESIZE},
                 {"Resize and Fill", SDW_FIT_RESIZE_AND_FILL}, {"0", SDW_FIT_JUST_RESIZE},
                 {"1", SDW_FIT_CROP_AND_RESIZE}, {"2", SDW_FIT_RESIZE_AND_FILL}, {"just", SDW_FIT_JUST_RESIZE},
                 {"just_resize", SDW_FIT_JUST_RESIZE}, {"crop", SDW_FIT_CROP_AND_RESIZE},
                 {"fill", SDW_FIT_RESIZE_AND_FILL}, {"Envelope (Outer Fit)", SDW_FIT_RESIZE_AND_FILL},
                 {"Scale to Fit (Inner Fit)", SDW_FIT_CROP_AND_RESIZE}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        assert_int_equal(sdw_fit_mode_parse(modes[i].s, &m), SDW_OK);
        assert_int_equal(m, modes[i].m);
    }
    assert_int_equal(sdw_fit_mode_parse("stretch", &m), SDW_ERR_INVALID_ARG);
    assert_non_null(strstr(sdw_last_error(), "Crop and Resize"));
    assert_int_equal(sdw_fit_mode_parse("4", &m), SDW_ERR_INVALID_ARG);
}

/* ---- invert, threshold, scribble, none ---- */

static sdw_image run(const char *spec, const sdw_image *in)
{
    sdw_preprocessor p;
    sdw_image out;
    assert_int_equal(sdw_preprocessor_parse(spec, &p), SDW_OK);
    assert_int_equal(sdw_preprocess(&p, in, &out), SDW_OK);
    assert_int_equal(out.w, in->w);
    assert_int_equal(out.h, in->h);
    assert_int_equal(out.channels, 3);
    return out;
}

static void test_simple_preprocessors(void **state)
{
    (void)state;
    /* (200, 100, 200): gray 141 but min 100, so the min rule and a gray rule disagree. */
    const uint8_t px[] = {200, 100, 200, 200, 200, 200, 126, 255, 255, 127, 127, 127, 0, 0, 0, 255, 255, 255};
    sdw_image rgb = make(3, 2, 3, px);
    sdw_image o = run("invert", &rgb);
    for (int i = 0; i < 18; i++) assert_int_equal(o.data[i], 255 - px[i]);
    sdw_image_free(&o);

    const int thr127[] = {0, 255, 0, 0, 0, 255}, thr200[] = {0, 0, 0, 0, 0, 255}, scrib[] = {255, 0, 255, 0, 255, 0};
    const char *specs[] = {"threshold", "threshold:200", "scribble"};
    const int *want[] = {thr127, thr200, scrib};
    for (int s = 0; s < 3; s++) {
        o = run(specs[s], &rgb);
        for (int i = 0; i < 6; i++) assert_rgb(&o, i % 3, i / 3, want[s][i], want[s][i], want[s][i]);
        sdw_image_free(&o);
    }
    o = run("none", &rgb);
    assert_memory_equal(o.data, px, 18);
    sdw_image_free(&o);

    /* Gray is replicated; RGBA is composited over white first (HWC3):
     * transparent -> white, 100 at alpha 128 -> 100 * 128/255 + 127 = 177. */
    sdw_image gray = make(2, 1, 1, (const uint8_t[]){30, 220});
    o = run("none", &gray);
    assert_rgb(&o, 0, 0, 30, 30, 30);
    assert_rgb(&o, 1, 0, 220, 220, 220);
    sdw_image_free(&o);
    o = run("scribble", &gray);
    assert_rgb(&o, 0, 0, 255, 255, 255);
    assert_rgb(&o, 1, 0, 0, 0, 0);
    sdw_image_free(&o);
    sdw_image rgba = make(3, 1, 4, (const uint8_t[]){0, 0, 0, 0, 100, 100, 100, 128, 10, 20, 30, 255});
    o = run("none", &rgba);
    assert_rgb(&o, 0, 0, 255, 255, 255);
    assert_rgb(&o, 1, 0, 177, 177, 177);
    assert_rgb(&o, 2, 0, 10, 20, 30);
    sdw_image_free(&o);
    o = run("invert (from white bg & black line)", &rgba);
    assert_rgb(&o, 0, 0, 0, 0, 0);
    assert_rgb(&o, 2, 0, 245, 235, 225);
    sdw_image_free(&o);

    sdw_preprocessor p = {SDW_PRE_INVERT, 0, 0};
    uint8_t la[2] = {1, 2};
    sdw_image two = {1, 1, 2, la}; /* gray + alpha never reaches here (decoders make it RGBA) */
    assert_int_equal(sdw_preprocess(&p, &two, &o), SDW_ERR_INVALID_ARG);
    sdw_image_free(&gray);
    sdw_image_free(&rgba);
    sdw_image_free(&rgb);
}

/* ---- Fitting ---- */

static sdw_image fit(const sdw_image *in, int w, int h, sdw_fit_mode m)
{
    sdw_image out;
    if (sdw_control_image_fit(in, w, h, m, &out) != SDW_OK) fail_msg("fit: %s", sdw_last_error());
    assert_int_equal(out.w, w);
    assert_int_equal(out.h, h);
    assert_int_equal(out.channels, 3);
    return out;
}

/* w x h with one colour per column from a palette of `colors` (< 200: nearest). */
static sdw_image columns(int w, int h)
{
    sdw_image im = make(w, h, 3, NULL);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = im.data + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(10 * x + 5), p[1] = (uint8_t)(7 * y + 3), p[2] = 99;
        }
    return im;
}

static void test_fit_crop_and_fill(void **state)
{
    (void)state;
    /* Crop: 8x4 -> 4x4 keeps the scale (max(4/4, 4/8) = 1) and the centre columns 2..5. */
    sdw_image in = columns(8, 4), o = fit(&in, 4, 4, SDW_FIT_CROP_AND_RESIZE);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) assert_memory_equal(at(&o, x, y), at(&in, x + 2, y), 3);
    sdw_image_free(&o);
    sdw_image_free(&in);
    /* An odd excess: 7x4 -> 4x4 drops one column on the left, two on the right. */
    in = columns(7, 4);
    o = fit(&in, 4, 4, SDW_FIT_CROP_AND_RESIZE);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) assert_memory_equal(at(&o, x, y), at(&in, x + 1, y), 3);
    sdw_image_free(&o);

    /* Fill: 7x4 -> 7x9 keeps the scale (min(9/4, 7/7) = 1); rows 2..5 are the
     * image, the rest the per-channel median of the 22 border values (the
     * corners counted twice, as numpy concatenates the four edges). */
    for (int x = 0; x < 7; x++)
        for (int y = 0; y < 4; y++) in.data[((size_t)y * 7 + x) * 3 + 1] = 24;
    o = fit(&in, 7, 9, SDW_FIT_RESIZE_AND_FILL);
    uint8_t v[22];
    int n = 0;
    for (int x = 0; x < 7; x++) v[n++] = in.data[(size_t)x * 3], v[n++] = in.data[((size_t)3 * 7 + x) * 3];
    for (int y = 0; y < 4; y++) v[n++] = in.data[(size_t)y * 7 * 3], v[n++] = in.data[((size_t)y * 7 + 6) * 3];
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (v[j] < v[i]) { uint8_t t = v[i]; v[i] = v[j]; v[j] = t; }
    int med0 = (v[10] + v[11]) / 2;
    for (int y = 0; y < 9; y++)
        for (int x = 0; x < 7; x++)
            if (y >= 2 && y < 6) assert_memory_equal(at(&o, x, y), at(&in, x, y - 2), 3);
            else assert_rgb(&o, x, y, med0, 24, 99);
    sdw_image_free(&o);
    sdw_image_free(&in);

    /* An even split of the border takes the mean of the two middle values,
     * truncated: 3 black, 3 white -> 127. 2x1 -> 2x2: image on row 0. */
    in = make(2, 1, 3, (const uint8_t[]){0, 0, 0, 255, 255, 255});
    o = fit(&in, 2, 2, SDW_FIT_RESIZE_AND_FILL);
    assert_rgb(&o, 0, 0, 0, 0, 0);
    assert_rgb(&o, 1, 0, 255, 255, 255);
    assert_rgb(&o, 0, 1, 127, 127, 127);
    assert_rgb(&o, 1, 1, 127, 127, 127);
    sdw_image_free(&o);
    sdw_image_free(&in);
}

/* Nearest as OpenCV's INTER_NEAREST (floor(x * src / dst)) for 3..199 colours:
 * 3 -> 4 columns gives A A B C (PIL's centre sampling would give A B B C). */
static void test_fit_nearest(void **state)
{
    (void)state;
    sdw_image in = make(3, 1, 3, (const uint8_t[]){10, 0, 0, 20, 0, 0, 30, 0, 0});
    sdw_image o = fit(&in, 4, 2, SDW_FIT_JUST_RESIZE);
    const int want[4] = {10, 10, 20, 30};
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 4; x++) assert_rgb(&o, x, y, want[x], 0, 0);
    sdw_image_free(&o);
    sdw_image_free(&in);
}

/* 200 colours or more: our PIL-exact BICUBIC when growing, BILINEAR when shrinking. */
static void test_fit_smooth(void **state)
{
    (void)state;
    sdw_image in = make(16, 16, 3, NULL);
    for (int i = 0; i < 256; i++) in.data[3 * i] = (uint8_t)i, in.data[3 * i + 1] = (uint8_t)(i * 7), in.data[3 * i + 2] = 0;
    const int sizes[2][2] = {{24, 20}, {8, 10}};
    for (int k = 0; k < 2; k++) {
        sdw_image o = fit(&in, sizes[k][0], sizes[k][1], SDW_FIT_JUST_RESIZE), ref;
        assert_int_equal(sdw_image_resize(&in, sizes[k][0], sizes[k][1], k == 0 ? SDW_RESIZE_BICUBIC : SDW_RESIZE_BILINEAR,
                                          &ref), SDW_OK);
        assert_memory_equal(o.data, ref.data, (size_t)ref.w * ref.h * 3);
        sdw_image_free(&o);
        sdw_image_free(&ref);
    }
    sdw_image_free(&in);
}

static bool is_binary_gray(const sdw_image *o, int *white)
{
    *white = 0;
    for (size_t i = 0; i < (size_t)o->w * o->h; i++) {
        const uint8_t *p = o->data + 3 * i;
        if ((p[0] != 0 && p[0] != 255) || p[1] != p[0] || p[2] != p[0]) return false;
        *white += p[0] == 255;
    }
    return true;
}

/* Black-and-white maps stay black and white after a resize; one-pixel line
 * art stays about one pixel wide (nake_nms, Otsu, thinning). */
static void test_fit_binary(void **state)
{
    (void)state;
    sdw_image line = make(16, 16, 3, NULL);
    for (int x = 2; x < 14; x++) memset(line.data + ((size_t)8 * 16 + x) * 3, 255, 3);
    sdw_image o = fit(&line, 40, 40, SDW_FIT_JUST_RESIZE);
    int white;
    assert_true(is_binary_gray(&o, &white));
    assert_true(white > 0);
    for (int x = 0; x < 40; x++) {
        int col = 0;
        for (int y = 0; y < 40; y++) col += at(&o, x, y)[0] == 255;
        assert_true(col <= 1); /* a thinned horizontal line: one pixel per column */
    }
    printf("  1-px line 16 -> 40: %d white pixels\n", white);
    sdw_image_free(&o);

    sdw_image blocks = make(8, 8, 3, NULL);
    for (int y = 0; y < 8; y++) memset(blocks.data + (size_t)y * 8 * 3, 255, 4 * 3);
    o = fit(&blocks, 12, 12, SDW_FIT_JUST_RESIZE);
    assert_true(is_binary_gray(&o, &white));
    assert_int_equal(white, 72); /* the left half, exactly */
    sdw_image_free(&o);
    o = fit(&blocks, 5, 5, SDW_FIT_CROP_AND_RESIZE);
    assert_true(is_binary_gray(&o, &white));
    sdw_image_free(&o);
    sdw_image_free(&blocks);
    sdw_image_free(&line);
}

/* 1x1 and 1xN inputs in every mode: right size, nothing out of bounds. */
static void test_fit_tiny(void **state)
{
    (void)state;
    sdw_image one = make(1, 1, 3, (const uint8_t[]){40, 50, 60});
    for (int m = 0; m < 3; m++) {
        sdw_image o = fit(&one, 64, 48, (sdw_fit_mode)m);
        for (int y = 0; y < 48; y++)
            for (int x = 0; x < 64; x++) assert_rgb(&o, x, y, 40, 50, 60);
        sdw_image_free(&o);
    }
    sdw_image_free(&one);

    /* 1 wide, 10 high. Fill to 8x8: scale 0.8 -> 1x8 in column (8 - 1) / 2 = 3,
     * the rest the border colour. Crop to 8x8: scale 8 -> 8x80, rows 36..43. */
    sdw_image col = make(1, 10, 3, NULL);
    for (int y = 0; y < 10; y++) col.data[3 * y] = 7, col.data[3 * y + 1] = (uint8_t)(y * 20), col.data[3 * y + 2] = 1;
    sdw_image o = fit(&col, 8, 8, SDW_FIT_RESIZE_AND_FILL);
    uint8_t bg[3];
    memcpy(bg, at(&o, 0, 0), 3);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++)
            if (x != 3) assert_memory_equal(at(&o, x, y), bg, 3);
    sdw_image_free(&o);
    for (int m = 0; m < 3; m += 1) {
        o = fit(&col, 8, 8, (sdw_fit_mode)m);
        sdw_image_free(&o);
        o = fit(&col, 1, 3, (sdw_fit_mode)m);
        sdw_image_free(&o);
    }
    sdw_image row = make(5, 1, 1, (const uint8_t[]){0, 50, 100, 150, 200});
    o = fit(&row, 3, 64, SDW_FIT_CROP_AND_RESIZE);
    sdw_image_free(&o);
    assert_int_equal(sdw_control_image_fit(&row, 0, 8, SDW_FIT_JUST_RESIZE, &o), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_control_image_fit(&row, 8, 8, (sdw_fit_mode)7, &o), SDW_ERR_INVALID_ARG);
    sdw_image_free(&row);
    sdw_image_free(&col);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canny_references), cmocka_unit_test(test_canny_thresholds),
        cmocka_unit_test(test_canny_thin_images), cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),        cmocka_unit_test(test_simple_preprocessors),
        cmocka_unit_test(test_fit_crop_and_fill), cmocka_unit_test(test_fit_nearest),
        cmocka_unit_test(test_fit_smooth),       cmocka_unit_test(test_fit_binary),
        cmocka_unit_test(test_fit_tiny),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
