/* fuzz_image.c: libFuzzer target for the image decoders and metadata readers.
 * Decodes the input (PNG, JPEG or WebP by magic bytes) under a 1-megapixel
 * limit; a failure must leave no image and say why. What decodes goes through
 * the pipeline conversions and a resize, and small images through a lossless
 * PNG round trip that must give the same pixels back. The parameter readers
 * run on every input. Not part of the ctest suite; `make fuzz-smoke` builds it.
 *
 * Built with -DSDW_FUZZ_MAKE_SEEDS instead, it is a program that writes a seed
 * corpus of small valid files of each format and layout into argv[1]. */
#include "io/image.h"
#include "core/error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PIXELS (1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_roundtrip(const sdw_image *im)
{
    uint8_t *png;
    size_t n;
    sdw_png_text t[] = {{"parameters", "fuzz \xc3\xa9"}};
    if (sdw_image_encode_png(im, t, 1, &png, &n) != SDW_OK) abort();
    sdw_image back;
    if (sdw_image_decode(png, n, MAX_PIXELS, &back) != SDW_OK) abort();
    if (back.w != im->w || back.h != im->h || back.channels != im->channels ||
        memcmp(back.data, im->data, (size_t)im->w * (size_t)im->h * (size_t)im->channels))
        abort();
    char *v;
    if (sdw_png_read_text(png, n, "parameters", &v) != SDW_OK || !v || strcmp(v, "fuzz \xc3\xa9")) abort();
    free(v);
    sdw_image_free(&back);
    free(png);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v = NULL;
    if (sdw_image_read_parameters(data, size, &v) == SDW_OK) free(v);
    if (sdw_png_read_text(data, size, "parameters", &v) == SDW_OK) free(v);

    sdw_image im = {.w = -1};
    sdw_clear_error();
    if (sdw_image_decode(data, size, MAX_PIXELS, &im) != SDW_OK) {
        if (im.data || im.w || im.h) abort();          /* a failed decode leaves nothing */
        if (!sdw_last_error()[0]) abort();             /* and always says why */
        return 0;
    }
    if (!im.data || im.w <= 0 || im.h <= 0 || (int64_t)im.w * im.h > MAX_PIXELS) abort();
    if (im.channels != 1 && im.channels != 3 && im.channels != 4) abort();
    size_t np = (size_t)im.w * (size_t)im.h;
    float *f = malloc(np * 3 * sizeof *f);
    if (!f) abort();
    sdw_image_to_float(&im, f);
    for (size_t i = 0; i < np * 3; i++)
        if (!(f[i] >= -1.0f && f[i] <= 1.0f)) abort();
    if (sdw_image_to_mask(&im, im.channels == 4 ? SDW_MASK_ALPHA : SDW_MASK_LUMA, f) != SDW_OK) abort();
    free(f);
    if (np <= 64 * 64) {
        sdw_image r;
        int w = im.w / 2 + 1, h = im.h * 3 / 2 + 1;
        if (sdw_image_resize(&im, w, h, (sdw_resize_filter)(size % 4), &r) != SDW_OK) abort();
        if (r.w != w || r.h != h || r.channels != im.channels) abort();
        sdw_image_free(&r);
        check_roundtrip(&im);
    }
    sdw_image_free(&im);
    return 0;
}

#ifdef SDW_FUZZ_MAKE_SEEDS
#include <jpeglib.h>

static void write_seed(const char *dir, const char *name, const uint8_t *buf, size_t n);

/* Layouts our encoder never writes: CMYK (Adobe), and progressive. */
static void jpeg_seed(const char *dir, const char *name, bool cmyk, bool progressive)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    unsigned char *mem = NULL;
    unsigned long n = 0;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &mem, &n);
    c.image_width = 20, c.image_height = 14;
    c.input_components = cmyk ? 4 : 3;
    c.in_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_set_defaults(&c);
    if (progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    uint8_t row[20 * 4];
    while (c.next_scanline < c.image_height) {
        for (int i = 0; i < 20 * 4; i++) row[i] = (uint8_t)(i * 13 + c.next_scanline * 29);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    write_seed(dir, name, mem, n);
}

static void write_seed(const char *dir, const char *name, const uint8_t *buf, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    free((void *)buf);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    const char *params = "a cat\nNegative prompt: dog\nSteps: 20, Sampler: Euler a, Seed: 1";
    sdw_png_text t[] = {{"parameters", params}, {"Title", "\xe6\x97\xa5\xe6\x9c\xac"}};
    for (int ch = 1; ch <= 4; ch++) {
        if (ch == 2) continue;
        sdw_image im;
        if (sdw_image_alloc(&im, 12, 9, ch) != SDW_OK) return 1;
        for (size_t i = 0; i < (size_t)12 * 9 * ch; i++) im.data[i] = (uint8_t)(i * 37 + i / 7);
        uint8_t *buf;
        size_t n;
        char name[64];
        snprintf(name, sizeof name, "seed_c%d.png", ch);
        if (sdw_image_encode_png(&im, t, 2, &buf, &n) != SDW_OK) return 1;
        write_seed(argv[1], name, buf, n);
        snprintf(name, sizeof name, "seed_c%d.jpg", ch);
        if (sdw_image_encode_jpeg(&im, 75, ch == 3 ? params : NULL, &buf, &n) != SDW_OK) return 1;
        write_seed(argv[1], name, buf, n);
        if (ch == 1) {
            sdw_image_free(&im);
            continue;
        }
        snprintf(name, sizeof name, "seed_c%d_lossy.webp", ch);
        if (sdw_image_encode_webp(&im, 60, false, params, &buf, &n) != SDW_OK) return 1;
        write_seed(argv[1], name, buf, n);
        snprintf(name, sizeof name, "seed_c%d_lossless.webp", ch);
        if (sdw_image_encode_webp(&im, 60, true, NULL, &buf, &n) != SDW_OK) return 1;
        write_seed(argv[1], name, buf, n);
        sdw_image_free(&im);
    }
    jpeg_seed(argv[1], "seed_cmyk.jpg", true, false);
    jpeg_seed(argv[1], "seed_progressive.jpg", false, true);
    return 0;
}
#endif
