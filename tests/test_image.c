/* test_image.c: image decode/encode, metadata, hostile inputs, the pipeline
 * conversions against diffusers' reference tensors, and resizing against
 * values computed with PIL 9.4 (Image.resize). */
#include "testkit.h"
#include "io/image.h"
#include "core/error.h"
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <jpeglib.h>
#include <stdlib.h>
#include <string.h>

static uint8_t pattern(int x, int y, int c) { return (uint8_t)(((x * 73 + y * 151 + c * 89 + x * y * 29) ^ (x * 5 + y * 11)) & 255); }

static sdw_image make_image(int w, int h, int ch)
{
    sdw_image im;
    assert_int_equal(sdw_image_alloc(&im, w, h, ch), SDW_OK);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) im.data[((size_t)y * w + x) * ch + c] = pattern(x, y, c);
    return im;
}

static void assert_same(const sdw_image *a, const sdw_image *b)
{
    assert_int_equal(a->w, b->w);
    assert_int_equal(a->h, b->h);
    assert_int_equal(a->channels, b->channels);
    assert_memory_equal(a->data, b->data, (size_t)a->w * a->h * a->channels);
}

static int max_diff(const sdw_image *a, const sdw_image *b)
{
    int m = 0;
    for (size_t i = 0; i < (size_t)a->w * a->h * a->channels; i++) m = abs(a->data[i] - b->data[i]) > m ? abs(a->data[i] - b->data[i]) : m;
    return m;
}

static bool contains_n(const uint8_t *buf, size_t n, const char *s, size_t k)
{
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(buf + i, s, k)) return true;
    return false;
}

static bool contains(const uint8_t *buf, size_t n, const char *s) { return contains_n(buf, n, s, strlen(s)); }

/* ---- PNGs built with libpng directly, in layouts our encoder never writes ---- */
typedef struct { uint8_t *p; size_t n; } membuf;
static void mem_write(png_structp png, png_bytep d, size_t n)
{
    membuf *m = png_get_io_ptr(png);
    m->p = realloc(m->p, m->n + n);
    memcpy(m->p + m->n, d, n);
    m->n += n;
}
static void mem_flush(png_structp png) { (void)png; }

/* rows: packed per PNG rules (bit depth, 16-bit big-endian). */
static membuf build_png(int w, int h, int color, int depth, const uint8_t *rows, size_t stride,
                        const png_color *pal, int npal, const uint8_t *trns, int ntrns, int interlace,
                        const png_text *text, int ntext)
{
    membuf m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) fail_msg("libpng failed building a test PNG");
    png_set_write_fn(png, &m, mem_write, mem_flush);
    png_set_IHDR(png, info, w, h, depth, color, interlace, 0, 0);
    if (pal) png_set_PLTE(png, info, pal, npal);
    if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
    if (text) png_set_text(png, info, text, ntext);
    png_write_info(png, info);
    int passes = png_set_interlace_handling(png);
    for (int y = 0; y < passes; y++)
        for (int r = 0; r < h; r++) png_write_row(png, rows + stride * r);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return m;
}

static sdw_image decode_ok(const void *buf, size_t n)
{
    sdw_image im;
    if (sdw_image_decode(buf, n, 0, &im) != SDW_OK) fail_msg("decode: %s", sdw_last_error());
    return im;
}

static void png_roundtrip(void **state)
{
    (void)state;
    for (int ch = 1; ch <= 4; ch++) {
        if (ch == 2) continue;
        sdw_image a = make_image(37, 23, ch);
        uint8_t *buf;
        size_t n;
        assert_int_equal(sdw_image_encode_png(&a, NULL, 0, &buf, &n), SDW_OK);
        assert_int_equal(sdw_image_detect(buf, n), SDW_IMAGE_PNG);
        sdw_image b = decode_ok(buf, n);
        assert_same(&a, &b);
        free(buf);
        sdw_image_free(&a);
        sdw_image_free(&b);
    }
}

static void png_text_chunks(void **state)
{
    (void)state;
    const char *params = "a photo of a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42";
    const char *latin = "caf\xc3\xa9 \xc3\xa0 la cr\xc3\xa8me";            /* fits Latin-1: tEXt */
    const char *wide = "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x90\xb4 horse";   /* does not: iTXt */
    sdw_png_text t[] = {{"parameters", params}, {"Comment", latin}, {"Title", wide}};
    sdw_image a = make_image(8, 8, 3);
    uint8_t *buf;
    size_t n;
    assert_int_equal(sdw_image_encode_png(&a, t, 3, &buf, &n), SDW_OK);
    assert_true(contains(buf, n, "tEXtparameters"));
    assert_true(contains_n(buf, n, "tEXtComment\0caf\xe9", 16));   /* stored as Latin-1, like PIL */
    assert_true(contains(buf, n, "iTXtTitle"));
    for (int i = 0; i < 3; i++) {
        char *v;
        assert_int_equal(sdw_png_read_text(buf, n, t[i].key, &v), SDW_OK);
        assert_non_null(v);
        assert_string_equal(v, t[i].text);
        free(v);
    }
    char *v;
    assert_int_equal(sdw_png_read_text(buf, n, "param", &v), SDW_OK);
    assert_null(v);
    assert_int_equal(sdw_image_read_parameters(buf, n, &v), SDW_OK);
    assert_string_equal(v, params);
    free(v);
    free(buf);
    sdw_png_text bad_key[] = {{" lead", "x"}}, bad_utf8[] = {{"k", "\xc3\x28"}};
    assert_int_equal(sdw_image_encode_png(&a, bad_key, 1, &buf, &n), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_image_encode_png(&a, bad_utf8, 1, &buf, &n), SDW_ERR_INVALID_ARG);
    sdw_image_free(&a);
}

/* zTXt and compressed iTXt written by libpng itself. */
static void png_compressed_text(void **state)
{
    (void)state;
    uint8_t px[4] = {1, 2, 3, 4};
    png_text t[2] = {{.compression = PNG_TEXT_COMPRESSION_zTXt, .key = "parameters", .text = "steps \xb5 20"},
                     {.compression = PNG_ITXT_COMPRESSION_zTXt, .key = "uni", .text = "\xe2\x82\xac 5", .lang = "", .lang_key = ""}};
    t[0].text_length = strlen(t[0].text);
    t[1].itxt_length = strlen(t[1].text);
    membuf m = build_png(2, 2, PNG_COLOR_TYPE_GRAY, 8, px, 2, NULL, 0, NULL, 0, 0, t, 2);
    char *v;
    assert_int_equal(sdw_png_read_text(m.p, m.n, "parameters", &v), SDW_OK);
    assert_string_equal(v, "steps \xc2\xb5 20");
    free(v);
    assert_int_equal(sdw_png_read_text(m.p, m.n, "uni", &v), SDW_OK);
    assert_string_equal(v, "\xe2\x82\xac 5");
    free(v);
    free(m.p);
}

static void png_layouts(void **state)
{
    (void)state;
    sdw_image im;
    /* 8-bit gray stays 1 channel */
    uint8_t g8[6] = {0, 50, 100, 150, 200, 255};
    membuf m = build_png(3, 2, PNG_COLOR_TYPE_GRAY, 8, g8, 3, NULL, 0, NULL, 0, 0, NULL, 0);
    im = decode_ok(m.p, m.n);
    assert_int_equal(im.channels, 1);
    assert_memory_equal(im.data, g8, 6);
    sdw_image_free(&im), free(m.p);
    /* 1-bit gray expands to 0/255 */
    uint8_t g1[2] = {0xa0, 0x40};   /* row 0: 1 0 1, row 1: 0 1 0 */
    m = build_png(3, 2, PNG_COLOR_TYPE_GRAY, 1, g1, 1, NULL, 0, NULL, 0, 0, NULL, 0);
    im = decode_ok(m.p, m.n);
    assert_memory_equal(im.data, ((uint8_t[]){255, 0, 255, 0, 255, 0}), 6);
    sdw_image_free(&im), free(m.p);
    /* 16-bit gray and RGB keep the high byte (PIL: RGB the same, gray saturates) */
    uint8_t g16[4] = {0x12, 0xff, 0xab, 0x01};
    m = build_png(2, 1, PNG_COLOR_TYPE_GRAY, 16, g16, 4, NULL, 0, NULL, 0, 0, NULL, 0);
    im = decode_ok(m.p, m.n);
    assert_memory_equal(im.data, ((uint8_t[]){0x12, 0xab}), 2);
    sdw_image_free(&im), free(m.p);
    uint8_t rgb16[6] = {0x01, 0x80, 0x7f, 0xff, 0xfe, 0x00};
    m = build_png(1, 1, PNG_COLOR_TYPE_RGB, 16, rgb16, 6, NULL, 0, NULL, 0, 0, NULL, 0);
    im = decode_ok(m.p, m.n);
    assert_int_equal(im.channels, 3);
    assert_memory_equal(im.data, ((uint8_t[]){0x01, 0x7f, 0xfe}), 3);
    sdw_image_free(&im), free(m.p);
    /* gray + alpha becomes RGBA */
    uint8_t ga[4] = {10, 0, 200, 255};
    m = build_png(2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, ga, 4, NULL, 0, NULL, 0, 0, NULL, 0);
    im = decode_ok(m.p, m.n);
    assert_int_equal(im.channels, 4);
    assert_memory_equal(im.data, ((uint8_t[]){10, 10, 10, 0, 200, 200, 200, 255}), 8);
    sdw_image_free(&im), free(m.p);
    /* palette: RGB, or RGBA with a tRNS chunk */
    png_color pal[3] = {{255, 0, 0}, {0, 255, 0}, {1, 2, 3}};
    uint8_t idx[3] = {2, 0, 1}, alpha[2] = {0, 128};
    m = build_png(3, 1, PNG_COLOR_TYPE_PALETTE, 8, idx, 3, pal, 3, NULL, 0, 0, NULL, 0);
    im = decode_ok(m.p, m.n);
    assert_int_equal(im.channels, 3);
    assert_memory_equal(im.data, ((uint8_t[]){1, 2, 3, 255, 0, 0, 0, 255, 0}), 9);
    sdw_image_free(&im), free(m.p);
    m = build_png(3, 1, PNG_COLOR_TYPE_PALETTE, 8, idx, 3, pal, 3, alpha, 2, 0, NULL, 0);
    im = decode_ok(m.p, m.n);
    assert_int_equal(im.channels, 4);
    assert_memory_equal(im.data, ((uint8_t[]){1, 2, 3, 255, 255, 0, 0, 0, 0, 255, 0, 128}), 12);
    sdw_image_free(&im), free(m.p);
    /* interlaced RGBA (OpenAI-style mask: transparent = edit) */
    sdw_image a = make_image(9, 7, 4);
    m = build_png(9, 7, PNG_COLOR_TYPE_RGBA, 8, a.data, 36, NULL, 0, NULL, 0, PNG_INTERLACE_ADAM7, NULL, 0);
    im = decode_ok(m.p, m.n);
    assert_same(&a, &im);
    sdw_image_free(&im), sdw_image_free(&a), free(m.p);
}

static void jpeg_roundtrip(void **state)
{
    (void)state;
    sdw_image a;
    assert_int_equal(sdw_image_alloc(&a, 40, 24, 4), SDW_OK);
    for (int i = 0; i < 40 * 24; i++)   /* smooth: JPEG's good case */
        for (int c = 0; c < 4; c++) a.data[i * 4 + c] = (uint8_t)(40 + (i % 40) * 3 + (i / 40) * 2 * c);
    const char *params = "masterpiece, \xe2\x9c\xa8 \xf0\x9f\x90\xb4\nSteps: 20, Seed: 7";
    uint8_t *buf;
    size_t n;
    assert_int_equal(sdw_image_encode_jpeg(&a, 95, params, &buf, &n), SDW_OK);
    assert_int_equal(sdw_image_detect(buf, n), SDW_IMAGE_JPEG);
    assert_true(contains_n(buf, n, "Exif\0\0MM\0*", 10));
    assert_true(contains(buf, n, "UNICODE"));
    sdw_image b = decode_ok(buf, n), rgb;
    assert_int_equal(b.channels, 3);   /* JPEG drops alpha */
    assert_int_equal(sdw_image_convert(&a, 3, &rgb), SDW_OK);
    assert_in_range(max_diff(&rgb, &b), 0, 6);
    char *v;
    assert_int_equal(sdw_image_read_parameters(buf, n, &v), SDW_OK);
    assert_string_equal(v, params);
    free(v), free(buf), sdw_image_free(&b);
    /* gray stays gray; no parameters, no EXIF */
    sdw_image g;
    assert_int_equal(sdw_image_convert(&a, 1, &g), SDW_OK);
    assert_int_equal(sdw_image_encode_jpeg(&g, 90, NULL, &buf, &n), SDW_OK);
    b = decode_ok(buf, n);
    assert_int_equal(b.channels, 1);
    assert_in_range(max_diff(&g, &b), 0, 6);
    assert_int_equal(sdw_image_read_parameters(buf, n, &v), SDW_OK);
    assert_null(v);
    free(buf), sdw_image_free(&b), sdw_image_free(&g), sdw_image_free(&rgb), sdw_image_free(&a);
    assert_int_equal(sdw_image_encode_jpeg(&b, 90, NULL, &buf, &n), SDW_ERR_INVALID_ARG);
}

/* A CMYK JPEG as Photoshop writes it (Adobe marker, inverted values), read
 * as PIL does: R = (255-K) - C(255-K)/255. */
static void jpeg_cmyk(void **state)
{
    (void)state;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    unsigned char *mem = NULL;
    unsigned long n = 0;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &mem, &n);
    c.image_width = 16, c.image_height = 8, c.input_components = 4, c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    uint8_t row[16 * 4];
    for (int i = 0; i < 16; i++) memcpy(row + 4 * i, (uint8_t[]){255 - 50, 255 - 100, 255 - 150, 255 - 30}, 4);
    while (c.next_scanline < 8) {
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    sdw_image im = decode_ok(mem, n);
    assert_int_equal(im.channels, 3);
    const int want[3] = {181, 137, 93};   /* 225 - round(C*225/255) for C = 50, 100, 150 */
    for (int i = 0; i < 16 * 8 * 3; i++) assert_in_range(im.data[i], want[i % 3] - 2, want[i % 3] + 2);
    sdw_image_free(&im);
    free(mem);
}

static void webp_roundtrip(void **state)
{
    (void)state;
    for (int ch = 3; ch <= 4; ch++) {
        sdw_image a = make_image(33, 17, ch);
        if (ch == 4) a.data[3] = 0, a.data[0] = 77;   /* colour under a transparent pixel survives */
        uint8_t *buf;
        size_t n;
        assert_int_equal(sdw_image_encode_webp(&a, 80, true, "Steps: 5 \xc3\xa9", &buf, &n), SDW_OK);
        assert_int_equal(sdw_image_detect(buf, n), SDW_IMAGE_WEBP);
        sdw_image b = decode_ok(buf, n);
        assert_same(&a, &b);
        char *v;
        assert_int_equal(sdw_image_read_parameters(buf, n, &v), SDW_OK);
        assert_string_equal(v, "Steps: 5 \xc3\xa9");
        free(v), free(buf), sdw_image_free(&b), sdw_image_free(&a);
    }
    sdw_image s;   /* lossy, smooth */
    assert_int_equal(sdw_image_alloc(&s, 32, 32, 3), SDW_OK);
    for (int i = 0; i < 32 * 32 * 3; i++) s.data[i] = (uint8_t)(60 + (i / 3) % 32 * 2 + i / 96);
    uint8_t *buf;
    size_t n;
    assert_int_equal(sdw_image_encode_webp(&s, 90, false, NULL, &buf, &n), SDW_OK);
    sdw_image b = decode_ok(buf, n);
    assert_int_equal(b.channels, 3);
    assert_in_range(max_diff(&s, &b), 0, 12);
    free(buf), sdw_image_free(&b), sdw_image_free(&s);
}

static void save_and_load(void **state)
{
    (void)state;
    sdw_image a = make_image(16, 12, 3), b;
    sdw_png_text t[] = {{"parameters", "p: 1"}};
    const char *ext[] = {"png", "JPG", "jpeg", "webp"};
    for (int i = 0; i < 4; i++) {
        char path[64];
        snprintf(path, sizeof path, "test_image_save.%s", ext[i]);
        assert_int_equal(sdw_image_save(path, &a, t, 1), SDW_OK);
        assert_int_equal(sdw_image_load(path, 0, &b), SDW_OK);
        assert_int_equal(b.w, 16);
        if (i == 0) assert_same(&a, &b);
        sdw_image_free(&b);
        remove(path);
    }
    assert_int_equal(sdw_image_save("x.gif", &a, NULL, 0), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_image_load("/nonexistent/x.png", 0, &b), SDW_ERR_IO);
    sdw_image_free(&a);
}

/* Every strict prefix of a valid file fails with a message and no image. */
static void truncated(void **state)
{
    (void)state;
    sdw_image a = make_image(8, 6, 3);
    sdw_png_text t[] = {{"parameters", "x"}};
    for (int f = 0; f < 4; f++) {
        uint8_t *buf;
        size_t n;
        sdw_status s = f == 0 ? sdw_image_encode_png(&a, t, 1, &buf, &n)
                     : f == 1 ? sdw_image_encode_jpeg(&a, 80, "x", &buf, &n)
                              : sdw_image_encode_webp(&a, 80, f == 3, "x", &buf, &n);
        assert_int_equal(s, SDW_OK);
        for (size_t k = 0; k < n; k++) {
            uint8_t *cut = malloc(k ? k : 1);   /* exact size: ASan sees any over-read */
            memcpy(cut, buf, k);
            sdw_image im = {.w = 9};
            sdw_clear_error();
            if (sdw_image_decode(cut, k, 0, &im) == SDW_OK) fail_msg("format %d: prefix %zu/%zu decoded", f, k, n);
            assert_true(sdw_last_error()[0] != 0);
            assert_null(im.data);
            char *v = NULL;
            if (sdw_image_read_parameters(cut, k, &v) == SDW_OK) free(v);
            free(cut);
        }
        free(buf);
    }
    sdw_image_free(&a);
}

static void garbage(void **state)
{
    (void)state;
    sdw_image im;
    uint8_t junk[512];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 131 + 7);
    assert_int_equal(sdw_image_decode(junk, sizeof junk, 0, &im), SDW_ERR_FORMAT);
    assert_int_equal(sdw_image_decode(junk, 0, 0, &im), SDW_ERR_FORMAT);
    assert_int_equal(sdw_image_decode("GIF89a\1\0\1\0", 10, 0, &im), SDW_ERR_UNSUPPORTED);
    const char *magic[] = {"\x89PNG\r\n\x1a\n", "\xff\xd8\xff", "RIFF\x10\0\0\0WEBP"};
    for (int m = 0; m < 3; m++) {
        memcpy(junk, magic[m], strlen(magic[m]) + (m == 2 ? 4 : 0));
        sdw_clear_error();
        assert_int_not_equal(sdw_image_decode(junk, sizeof junk, 0, &im), SDW_OK);
        assert_true(sdw_last_error()[0] != 0);
    }
    /* a valid PNG with one flipped bit in the pixel data */
    sdw_image a = make_image(20, 20, 3);
    uint8_t *buf;
    size_t n;
    assert_int_equal(sdw_image_encode_png(&a, NULL, 0, &buf, &n), SDW_OK);
    buf[n - 20] ^= 0x10;
    assert_int_equal(sdw_image_decode(buf, n, 0, &im), SDW_ERR_FORMAT);
    free(buf), sdw_image_free(&a);
}

static uint32_t crc(const uint8_t *p, size_t n)   /* PNG's CRC-32 */
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

static void put_be32(uint8_t *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = (uint8_t)v; }

/* Headers that claim a huge image are refused before any pixel allocation. */
static void decompression_bombs(void **state)
{
    (void)state;
    sdw_image im, a = make_image(16, 16, 3);
    uint8_t *buf;
    size_t n;
    assert_int_equal(sdw_image_encode_png(&a, NULL, 0, &buf, &n), SDW_OK);
    put_be32(buf + 16, 100000), put_be32(buf + 20, 100000);
    put_be32(buf + 29, crc(buf + 12, 17));
    assert_int_equal(sdw_image_decode(buf, n, 4096 * 4096, &im), SDW_ERR_NOMEM);
    assert_non_null(strstr(sdw_last_error(), "100000x100000"));
    assert_null(im.data);
    assert_int_equal(sdw_image_decode(buf, n, 0, &im), SDW_ERR_NOMEM);
    free(buf);
    /* the limit itself: 16x16 = 256 pixels */
    assert_int_equal(sdw_image_encode_png(&a, NULL, 0, &buf, &n), SDW_OK);
    assert_int_equal(sdw_image_decode(buf, n, 255, &im), SDW_ERR_NOMEM);
    assert_int_equal(sdw_image_decode(buf, n, 256, &im), SDW_OK);
    sdw_image_free(&im), free(buf);
    /* JPEG: patch the SOF dimensions */
    assert_int_equal(sdw_image_encode_jpeg(&a, 80, NULL, &buf, &n), SDW_OK);
    for (size_t i = 2; i + 9 < n; i++)
        if (buf[i] == 0xff && buf[i + 1] == 0xc0) {
            buf[i + 5] = buf[i + 7] = 0xea, buf[i + 6] = buf[i + 8] = 0x60;   /* 60000 */
            break;
        }
    assert_int_equal(sdw_image_decode(buf, n, 0, &im), SDW_ERR_NOMEM);
    free(buf);
    /* lossless WebP: 14-bit width-1 and height-1 all ones = 16384x16384 */
    assert_int_equal(sdw_image_encode_webp(&a, 50, true, NULL, &buf, &n), SDW_OK);
    assert_memory_equal(buf + 12, "VP8L", 4);
    buf[21] = buf[22] = buf[23] = 0xff, buf[24] |= 0x0f;
    assert_int_equal(sdw_image_decode(buf, n, 0, &im), SDW_ERR_NOMEM);
    free(buf), sdw_image_free(&a);
}

/* Offset of the data of the first RIFF chunk named fourcc in a WebP, or 0. */
static size_t webp_chunk(const uint8_t *buf, size_t n, const char *fourcc)
{
    for (size_t at = 12; at + 8 <= n;) {
        size_t len = buf[at + 4] | buf[at + 5] << 8 | buf[at + 6] << 16 | (size_t)buf[at + 7] << 24;
        if (!memcmp(buf + at, fourcc, 4)) return at + 8;
        at += 8 + len + (len & 1);
    }
    return 0;
}

/* Rewrites the size a file's header claims to 16383x16383 (VP8: 14-bit size
 * fields) or 16384x16384 (PNG, JPEG, VP8L: 14-bit size - 1), and a VP8X
 * canvas with it (libwebp refuses a canvas that differs from the bitstream).
 * The pixel data stays that of the small image: a decoder that went past the
 * header would fail on it, not refuse the size. */
static void claim_huge(uint8_t *buf, size_t n, sdw_image_format f)
{
    if (f == SDW_IMAGE_PNG) {
        put_be32(buf + 16, 16384), put_be32(buf + 20, 16384);
        put_be32(buf + 29, crc(buf + 12, 17));
    } else if (f == SDW_IMAGE_JPEG) {
        size_t i = 2;
        while (i + 9 < n && !(buf[i] == 0xff && buf[i + 1] == 0xc0)) i++;
        assert_true(i + 9 < n);
        buf[i + 5] = buf[i + 7] = 0x40, buf[i + 6] = buf[i + 8] = 0x00;
    } else {
        size_t d, x = webp_chunk(buf, n, "VP8X");
        int side = 16383;
        if ((d = webp_chunk(buf, n, "VP8 "))) {
            buf[d + 6] = buf[d + 8] = 0xff, buf[d + 7] = buf[d + 9] = 0x3f;
        } else {
            assert_true((d = webp_chunk(buf, n, "VP8L")));
            buf[d + 1] = buf[d + 2] = buf[d + 3] = 0xff, buf[d + 4] |= 0x0f;
            side = 16384;
        }
        if (x) {
            buf[x + 4] = buf[x + 7] = (uint8_t)(side - 1), buf[x + 5] = buf[x + 8] = (uint8_t)((side - 1) >> 8);
            buf[x + 6] = buf[x + 9] = 0;
        }
    }
}

/* Every format and WebP container is held to max_pixels by its header: a
 * 16x16 image decodes at a limit of 256 and fails at 255 with SDW_ERR_NOMEM
 * and the size check's message; the same file claiming 16K x 16K fails the
 * same way under the default limit (decoding it would need >= 768 MB). */
static void size_limit_every_format(void **state)
{
    (void)state;
    static const struct {
        sdw_image_format f;
        int ch;
        bool lossless;
        const char *params;   /* WebP: EXIF makes the extended (VP8X) container */
        const char *container;
    } cases[] = {
        {SDW_IMAGE_PNG, 3, false, NULL, NULL},
        {SDW_IMAGE_JPEG, 3, false, NULL, NULL},
        {SDW_IMAGE_JPEG, 1, false, "Steps: 20", NULL},
        {SDW_IMAGE_WEBP, 3, false, NULL, "VP8 "},
        {SDW_IMAGE_WEBP, 3, true, NULL, "VP8L"},
        {SDW_IMAGE_WEBP, 3, false, "Steps: 20", "VP8X"},
        {SDW_IMAGE_WEBP, 4, false, NULL, "VP8X"},
        {SDW_IMAGE_WEBP, 4, true, "Steps: 20", "VP8X"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        sdw_image a = make_image(16, 16, cases[k].ch), im;
        uint8_t *buf;
        size_t n;
        if (cases[k].f == SDW_IMAGE_PNG) assert_int_equal(sdw_image_encode_png(&a, NULL, 0, &buf, &n), SDW_OK);
        else if (cases[k].f == SDW_IMAGE_JPEG)
            assert_int_equal(sdw_image_encode_jpeg(&a, 80, cases[k].params, &buf, &n), SDW_OK);
        else assert_int_equal(sdw_image_encode_webp(&a, 80, cases[k].lossless, cases[k].params, &buf, &n), SDW_OK);
        if (cases[k].container) assert_memory_equal(buf + 12, cases[k].container, 4);
        assert_int_equal(sdw_image_decode(buf, n, 256, &im), SDW_OK);
        assert_int_equal(im.w * im.h, 256);
        sdw_image_free(&im);
        memset(&im, 0x5a, sizeof im);
        assert_int_equal(sdw_image_decode(buf, n, 255, &im), SDW_ERR_NOMEM);
        assert_non_null(strstr(sdw_last_error(), "16x16 image is over the limit of 255 pixels"));
        assert_null(im.data);
        assert_int_equal(im.w, 0);
        claim_huge(buf, n, cases[k].f);
        assert_int_equal(sdw_image_decode(buf, n, 0, &im), SDW_ERR_NOMEM);
        assert_non_null(strstr(sdw_last_error(), "image is over the limit of 67108864 pixels"));
        assert_null(im.data);
        free(buf), sdw_image_free(&a);
    }
}

/* diffusers' own tensors for the reference inputs: init image v/255 (then
 * 2v-1 in the pipeline), mask gray/255, output round(clamp(x/2+.5)*255). */
static void reference_cases(void **state)
{
    (void)state;
    DIR *d = opendir(test_data_path("inputs"));
    assert_non_null(d);
    int count = 0;
    for (struct dirent *e; (e = readdir(d));) {
        char rel[300];
        sdw_image im;
        if (!strstr(e->d_name, ".png")) continue;
        snprintf(rel, sizeof rel, "inputs/%s", e->d_name);
        assert_int_equal(sdw_image_load(test_data_path(rel), 0, &im), SDW_OK);
        assert_int_equal(im.channels, strstr(e->d_name, "_mask") ? 1 : 3);
        assert_true(im.h == 64 && (im.w == 64 || im.w == 96));
        sdw_image_free(&im), count++;
    }
    closedir(d);
    assert_true(count >= 12);
    const char *cases[] = {"i2i_sd1_ddim_s0.8", "i2i_sd1_euler_s0.5", "inp4_sd1_ddim_s0.75", "inp9_sd1_euler"};
    for (int c = 0; c < 4; c++) {
        char rel[128];
        snprintf(rel, sizeof rel, "cases/%s.safetensors", cases[c]);
        sdw_safetensors *st = test_open_st(rel);
        sdw_image init, mask, out_png, out;
        snprintf(rel, sizeof rel, "inputs/%s_init.png", cases[c]);
        assert_int_equal(sdw_image_load(test_data_path(rel), 0, &init), SDW_OK);
        int64_t n;
        float *ref = test_load_f32(st, "input.init_image", &n);
        assert_int_equal(n, (int64_t)init.w * init.h * 3);
        float *x = malloc(sizeof(float) * (size_t)n);
        sdw_image_to_float(&init, x);
        for (int64_t i = 0; i < n; i++) assert_true(x[i] == 2.0f * ref[i] - 1.0f);
        free(ref);
        if (c >= 2) {
            snprintf(rel, sizeof rel, "inputs/%s_mask.png", cases[c]);
            assert_int_equal(sdw_image_load(test_data_path(rel), 0, &mask), SDW_OK);
            ref = test_load_f32(st, "input.mask_image", &n);
            assert_int_equal(n, (int64_t)mask.w * mask.h);
            assert_int_equal(sdw_image_to_mask(&mask, SDW_MASK_LUMA, x), SDW_OK);
            for (int64_t i = 0; i < n; i++) assert_true(x[i] == ref[i]);
            free(ref), sdw_image_free(&mask);
        }
        float *dec = test_load_f32(st, "vae_decoded", &n);
        test_nchw_to_nhwc(dec, 1, 3, init.h, init.w, x);
        assert_int_equal(sdw_image_from_float(x, init.w, init.h, &out), SDW_OK);
        snprintf(rel, sizeof rel, "cases/%s_0.png", cases[c]);
        assert_int_equal(sdw_image_load(test_data_path(rel), 0, &out_png), SDW_OK);
        assert_same(&out_png, &out);
        free(dec), free(x), sdw_image_free(&out), sdw_image_free(&out_png), sdw_image_free(&init);
        sdw_st_close(st);
    }
}

static void float_conversions(void **state)
{
    (void)state;
    sdw_image g;
    assert_int_equal(sdw_image_alloc(&g, 4, 1, 1), SDW_OK);
    memcpy(g.data, (uint8_t[]){0, 255, 51, 128}, 4);
    float x[12];
    sdw_image_to_float(&g, x);
    assert_true(x[0] == -1.0f && x[1] == -1.0f && x[2] == -1.0f && x[3] == 1.0f);
    assert_float_equal(x[6], -0.6f, 1e-7);                   /* 51/255 = 0.2 */
    assert_float_equal(x[9], 1.0f / 255.0f, 1e-7);           /* 128/255*2-1 */
    sdw_image_free(&g);
    float in[12] = {-1.0f, 1.0f, 0.0f, 5.0f, -5.0f, NAN, -0.5f, 0.5f, 1.0f / 255.0f, -1.0f / 255.0f, 0.999f, -0.999f};
    sdw_image o;
    assert_int_equal(sdw_image_from_float(in, 2, 2, &o), SDW_OK);
    /* 0 -> 127.5 rounds half to even: 128; -0.5 -> 63.75: 64; 1/255 -> 128; -1/255 -> 127 */
    const uint8_t want[12] = {0, 255, 128, 255, 0, 0, 64, 191, 128, 127, 255, 0};
    assert_memory_equal(o.data, want, 12);
    sdw_image_free(&o);
}

static void masks(void **state)
{
    (void)state;
    sdw_image a;
    assert_int_equal(sdw_image_alloc(&a, 5, 1, 4), SDW_OK);
    const uint8_t px[20] = {255, 0, 0, 0, 0, 255, 0, 1, 0, 0, 255, 255, 100, 150, 200, 0, 255, 255, 255, 128};
    memcpy(a.data, px, 20);
    float m[5];
    assert_int_equal(sdw_image_to_mask(&a, SDW_MASK_LUMA, m), SDW_OK);
    const int luma[5] = {76, 150, 29, 141, 255};   /* PIL 9.4 convert("L") */
    for (int i = 0; i < 5; i++) assert_true(m[i] == (float)luma[i] / 255.0f);
    assert_int_equal(sdw_image_to_mask(&a, SDW_MASK_ALPHA, m), SDW_OK);
    const float alpha[5] = {1, 0, 0, 1, 0};
    assert_memory_equal(m, alpha, sizeof alpha);
    sdw_image g;
    assert_int_equal(sdw_image_convert(&a, 1, &g), SDW_OK);
    for (int i = 0; i < 5; i++) assert_int_equal(g.data[i], luma[i]);
    assert_int_equal(sdw_image_to_mask(&g, SDW_MASK_ALPHA, m), SDW_ERR_INVALID_ARG);
    sdw_image_free(&g), sdw_image_free(&a);
}

/* Image.resize outputs from PIL 9.4 for pattern() inputs: channels, in size,
 * out size, filter, bytes. */
static const struct {
    int ch, w, h, ow, oh;
    sdw_resize_filter f;
    uint8_t want[192];
} pil_cases[] = {
    {3, 7, 5, 3, 2, SDW_RESIZE_LANCZOS, {125, 142, 146, 126, 120, 126, 140, 138, 127, 120, 96, 127, 106, 147, 147, 134, 121, 130}},
    {3, 4, 3, 9, 7, SDW_RESIZE_LANCZOS, {0, 51, 186, 0, 73, 215, 9, 118, 254, 56, 189, 255, 104, 248, 182, 148, 240, 102, 185, 162, 94, 206, 82, 123, 213, 32, 146, 17, 100, 141, 25, 112, 179, 58, 127, 234, 98, 166, 246, 125, 220, 160, 148, 225, 69, 182, 157, 68, 208, 80, 113, 220, 33, 145, 87, 183, 68, 104, 178, 120, 142, 139, 200, 170, 125, 227, 159, 170, 125, 146, 198, 16, 174, 147, 27, 210, 77, 95, 231, 35, 140, 140, 255, 40, 170, 226, 88, 218, 132, 162, 235, 67, 188, 176, 110, 99, 119, 168, 5, 142, 137, 17, 195, 74, 78, 229, 36, 119, 108, 238, 127, 147, 195, 141, 206, 94, 151, 224, 29, 147, 144, 86, 118, 69, 161, 87, 94, 137, 77, 160, 73, 80, 202, 34, 85, 49, 184, 230, 90, 138, 211, 155, 59, 158, 180, 20, 124, 103, 92, 150, 31, 169, 177, 61, 142, 143, 131, 73, 91, 176, 31, 60, 13, 150, 255, 54, 104, 253, 123, 39, 164, 152, 16, 111, 78, 97, 169, 9, 174, 231, 43, 145, 182, 115, 73, 98, 161, 29, 47}},
    {3, 6, 6, 4, 3, SDW_RESIZE_BICUBIC, {103, 145, 174, 151, 155, 108, 142, 85, 145, 102, 182, 114, 138, 107, 128, 83, 113, 139, 110, 156, 134, 132, 89, 157, 150, 104, 107, 190, 54, 128, 132, 207, 99, 67, 161, 167}},
    {3, 5, 4, 3, 3, SDW_RESIZE_BILINEAR, {80, 137, 184, 153, 159, 110, 118, 92, 173, 148, 132, 156, 123, 117, 109, 95, 119, 167, 143, 98, 107, 76, 135, 130, 111, 169, 152}},
    {4, 6, 4, 3, 2, SDW_RESIZE_LANCZOS, {116, 228, 123, 68, 173, 95, 100, 157, 135, 138, 102, 107, 170, 80, 99, 123, 106, 121, 101, 103, 147, 87, 134, 169}},
    {1, 8, 8, 3, 5, SDW_RESIZE_LANCZOS, {128, 138, 152, 127, 102, 163, 112, 119, 156, 212, 99, 73, 108, 39, 154}},
    {3, 5, 3, 3, 7, SDW_RESIZE_NEAREST, {0, 89, 178, 152, 225, 78, 48, 105, 194, 0, 89, 178, 152, 225, 78, 48, 105, 194, 156, 251, 66, 118, 169, 0, 48, 151, 254, 156, 251, 66, 118, 169, 0, 48, 151, 254, 156, 251, 66, 118, 169, 0, 48, 151, 254, 56, 145, 246, 20, 173, 198, 16, 185, 198, 56, 145, 246, 20, 173, 198, 16, 185, 198}},
    {1, 7, 5, 4, 2, SDW_RESIZE_NEAREST, {156, 118, 48, 210, 228, 46, 112, 186}},
    {3, 12, 2, 5, 2, SDW_RESIZE_LANCZOS, {71, 150, 188, 142, 138, 128, 132, 107, 95, 180, 133, 162, 138, 75, 187, 189, 155, 92, 140, 113, 128, 159, 160, 132, 138, 112, 101, 147, 134, 193}},
    {4, 3, 5, 7, 2, SDW_RESIZE_BICUBIC, {145, 229, 89, 91, 143, 206, 103, 89, 144, 135, 147, 83, 143, 79, 172, 80, 131, 134, 109, 91, 121, 198, 51, 103, 121, 212, 35, 109, 196, 95, 88, 147, 185, 91, 88, 136, 156, 89, 86, 106, 116, 75, 97, 81, 136, 60, 141, 88, 165, 55, 177, 102, 177, 49, 186, 108}},
};

static void resize_matches_pil(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof pil_cases / sizeof pil_cases[0]; k++) {
        sdw_image a = make_image(pil_cases[k].w, pil_cases[k].h, pil_cases[k].ch), o;
        assert_int_equal(sdw_image_resize(&a, pil_cases[k].ow, pil_cases[k].oh, pil_cases[k].f, &o), SDW_OK);
        for (size_t i = 0; i < (size_t)o.w * o.h * o.channels; i++)
            if (o.data[i] != pil_cases[k].want[i])
                fail_msg("case %zu byte %zu: %d, PIL %d", k, i, o.data[i], pil_cases[k].want[i]);
        sdw_image_free(&o), sdw_image_free(&a);
    }
}

static void resize_properties(void **state)
{
    (void)state;
    sdw_image a = make_image(24, 16, 3), o, m, om;
    /* equal size: a copy, for every filter */
    for (int f = SDW_RESIZE_NEAREST; f <= SDW_RESIZE_LANCZOS; f++) {
        assert_int_equal(sdw_image_resize(&a, 24, 16, f, &o), SDW_OK);
        assert_same(&a, &o);
        sdw_image_free(&o);
    }
    /* nearest: pixel centres, 24 -> 12 takes the odd columns, 16 -> 32 doubles rows */
    assert_int_equal(sdw_image_resize(&a, 12, 32, SDW_RESIZE_NEAREST, &o), SDW_OK);
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 12; x++)
            for (int c = 0; c < 3; c++) assert_int_equal(o.data[(y * 12 + x) * 3 + c], pattern(2 * x + 1, y / 2, c));
    sdw_image_free(&o);
    /* a constant image stays constant through a 2x LANCZOS downscale */
    sdw_image k;
    assert_int_equal(sdw_image_alloc(&k, 64, 48, 3), SDW_OK);
    memset(k.data, 173, 64 * 48 * 3);
    assert_int_equal(sdw_image_resize(&k, 32, 24, SDW_RESIZE_LANCZOS, &o), SDW_OK);
    for (int i = 0; i < 32 * 24 * 3; i++) assert_int_equal(o.data[i], 173);
    sdw_image_free(&o), sdw_image_free(&k);
    /* mirror symmetry: resize(mirror(a)) == mirror(resize(a)) within 1 level */
    assert_int_equal(sdw_image_alloc(&m, 24, 16, 3), SDW_OK);
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 24; x++) memcpy(m.data + (y * 24 + x) * 3, a.data + (y * 24 + 23 - x) * 3, 3);
    assert_int_equal(sdw_image_resize(&a, 10, 7, SDW_RESIZE_LANCZOS, &o), SDW_OK);
    assert_int_equal(sdw_image_resize(&m, 10, 7, SDW_RESIZE_LANCZOS, &om), SDW_OK);
    for (int y = 0; y < 7; y++)
        for (int x = 0; x < 10; x++)
            for (int c = 0; c < 3; c++)
                assert_in_range(o.data[(y * 10 + x) * 3 + c] - om.data[(y * 10 + 9 - x) * 3 + c] + 1, 0, 2);
    sdw_image_free(&o), sdw_image_free(&om), sdw_image_free(&m);
    assert_int_equal(sdw_image_resize(&a, 0, 5, SDW_RESIZE_LANCZOS, &o), SDW_ERR_INVALID_ARG);
    sdw_image_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(png_roundtrip), cmocka_unit_test(png_text_chunks), cmocka_unit_test(png_compressed_text),
        cmocka_unit_test(png_layouts), cmocka_unit_test(jpeg_roundtrip), cmocka_unit_test(jpeg_cmyk), cmocka_unit_test(webp_roundtrip),
        cmocka_unit_test(save_and_load), cmocka_unit_test(truncated), cmocka_unit_test(garbage),
        cmocka_unit_test(decompression_bombs), cmocka_unit_test(size_limit_every_format),
        cmocka_unit_test(reference_cases), cmocka_unit_test(float_conversions),
        cmocka_unit_test(masks), cmocka_unit_test(resize_matches_pil), cmocka_unit_test(resize_properties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
