/* image_jpeg.c: JPEG through libjpeg(-turbo). libjpeg's default error_exit
 * calls exit() and its messages go to stderr, so both are replaced: errors
 * longjmp back to the function that owns the codec, messages are dropped.
 * Input comes from our own source manager, which fails on running out of data
 * where libjpeg's would pad a truncated upload with a fake end marker. */
#include "io/image_internal.h"
#include "core/error.h"
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

/* A progressive JPEG may hold any number of scans, each a full pass over the
 * coefficients: a few KB can cost minutes. Real encoders write about 10. */
#define JPEG_MAX_SCANS 256
/* The APP1 payload limit of a JPEG marker segment. */
#define APP1_MAX 65533

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    sdw_status status;
    char msg[JMSG_LENGTH_MAX + 32];
} jerr;

static void on_error_exit(j_common_ptr c)
{
    jerr *e = (jerr *)c->err;
    char m[JMSG_LENGTH_MAX];
    e->pub.format_message(c, m);
    snprintf(e->msg, sizeof e->msg, "%s", m);
    longjmp(e->jb, 1);
}

static void on_output_message(j_common_ptr c) { (void)c; }

static void jfail(j_common_ptr c, sdw_status s, const char *msg)
{
    jerr *e = (jerr *)c->err;
    e->status = s;
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jb, 1);
}

static void src_init(j_decompress_ptr c) { (void)c; }
static void src_term(j_decompress_ptr c) { (void)c; }

static boolean src_fill(j_decompress_ptr c)
{
    jfail((j_common_ptr)c, SDW_ERR_FORMAT, "truncated JPEG");
    return FALSE;
}

static void src_skip(j_decompress_ptr c, long n)
{
    if (n <= 0) return;
    if ((size_t)n > c->src->bytes_in_buffer) jfail((j_common_ptr)c, SDW_ERR_FORMAT, "truncated JPEG");
    c->src->next_input_byte += n;
    c->src->bytes_in_buffer -= (size_t)n;
}

static void on_progress(j_common_ptr c)
{
    if (c->is_decompressor && ((j_decompress_ptr)c)->input_scan_number > JPEG_MAX_SCANS)
        jfail(c, SDW_ERR_UNSUPPORTED, "JPEG has more than 256 scans");
}

/* PIL reads CMYK JPEGs as Adobe-inverted ("CMYK;I") and converts with
 * R = (255-K) - (C*(255-K))/255 (its MULDIV255 rounding). */
static void cmyk_row_to_rgb(const uint8_t *in, uint8_t *out, int w)
{
    for (int x = 0; x < w; x++, in += 4, out += 3) {
        int nk = in[3];   /* inverted: 255 - K */
        for (int c = 0; c < 3; c++) {
            int t = (255 - in[c]) * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            out[c] = (uint8_t)(v < 0 ? 0 : v);
        }
    }
}

sdw_status sdw_jpeg_decode(const uint8_t *buf, size_t n, int64_t max_pixels, sdw_image *out)
{
    memset(out, 0, sizeof *out);
    struct jpeg_decompress_struct c;
    struct jpeg_source_mgr src = {
        .next_input_byte = buf, .bytes_in_buffer = n, .init_source = src_init,
        .fill_input_buffer = src_fill, .skip_input_data = src_skip,
        .resync_to_restart = jpeg_resync_to_restart, .term_source = src_term,
    };
    struct jpeg_progress_mgr progress = {.progress_monitor = on_progress};
    jerr e = {.status = SDW_ERR_FORMAT};
    uint8_t *volatile pixels = NULL, *volatile row = NULL;
    c.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = on_error_exit;
    e.pub.output_message = on_output_message;
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&c);
        free(pixels);
        free(row);
        if (e.status == SDW_ERR_FORMAT) return sdw_fail(e.status, "malformed JPEG: %s", e.msg);
        return sdw_fail(e.status, "JPEG: %s", e.msg);
    }
    jpeg_create_decompress(&c);
    c.src = &src;
    c.progress = &progress;
    /* Progressive images keep every coefficient in memory: bound it. */
    c.mem->max_memory_to_use = (long)(max_pixels * 8 + (64 << 20));
    if (jpeg_read_header(&c, TRUE) != JPEG_HEADER_OK) jfail((j_common_ptr)&c, SDW_ERR_FORMAT, "no image in JPEG");
    sdw_status size_st = sdw_image_check_size(c.image_width, c.image_height, max_pixels);
    if (size_st != SDW_OK) jfail((j_common_ptr)&c, size_st, sdw_last_error());
    bool cmyk = c.jpeg_color_space == JCS_CMYK || c.jpeg_color_space == JCS_YCCK;
    c.out_color_space = cmyk ? JCS_CMYK : c.jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&c);
    int w = (int)c.output_width, h = (int)c.output_height, ch = cmyk ? 3 : c.output_components;
    if (c.output_components != (cmyk ? 4 : c.out_color_space == JCS_GRAYSCALE ? 1 : 3))
        jfail((j_common_ptr)&c, SDW_ERR_FORMAT, "unexpected component count");
    size_t stride = (size_t)w * (size_t)ch;
    pixels = malloc(stride * (size_t)h);
    if (cmyk) row = malloc((size_t)w * 4);
    if (!pixels || (cmyk && !row)) jfail((j_common_ptr)&c, SDW_ERR_NOMEM, "out of memory");
    while (c.output_scanline < c.output_height) {
        size_t y = c.output_scanline;
        JSAMPROW r = cmyk ? row : pixels + stride * y;
        jpeg_read_scanlines(&c, &r, 1);
        if (cmyk) cmyk_row_to_rgb(row, pixels + stride * y, w);
    }
    jpeg_finish_decompress(&c);   /* reads to EOI: a cut tail is an error */
    jpeg_destroy_decompress(&c);
    free(row);
    *out = (sdw_image){.w = w, .h = h, .channels = ch, .data = pixels};
    return SDW_OK;
}

/* Destination: compressed bytes go through a fixed buffer into an sdw_bytes. */
typedef struct {
    struct jpeg_destination_mgr pub;
    sdw_bytes out;
    JOCTET buf[16384];
} dst_mgr;

static void dst_init(j_compress_ptr c)
{
    dst_mgr *d = (dst_mgr *)c->dest;
    d->pub.next_output_byte = d->buf;
    d->pub.free_in_buffer = sizeof d->buf;
}

static boolean dst_empty(j_compress_ptr c)
{
    dst_mgr *d = (dst_mgr *)c->dest;
    if (!sdw_bytes_put(&d->out, d->buf, sizeof d->buf)) jfail((j_common_ptr)c, SDW_ERR_NOMEM, "out of memory");
    dst_init(c);
    return TRUE;
}

static void dst_term(j_compress_ptr c)
{
    dst_mgr *d = (dst_mgr *)c->dest;
    if (!sdw_bytes_put(&d->out, d->buf, sizeof d->buf - d->pub.free_in_buffer))
        jfail((j_common_ptr)c, SDW_ERR_NOMEM, "out of memory");
}

sdw_status sdw_image_encode_jpeg(const sdw_image *img, int quality, const char *parameters,
                                 uint8_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    SDW_TRY(sdw_image_check(img));
    if (quality < 1 || quality > 100) return sdw_fail(SDW_ERR_INVALID_ARG, "JPEG quality %d not in 1..100", quality);
    if (img->w > JPEG_MAX_DIMENSION || img->h > JPEG_MAX_DIMENSION)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%dx%d is too large for JPEG", img->w, img->h);
    uint8_t *app1 = NULL;
    size_t app1_n = 0;
    if (parameters) {
        uint8_t *tiff;
        size_t tn;
        SDW_TRY(sdw_exif_build_comment(parameters, &tiff, &tn));
        app1_n = 6 + tn;
        app1 = app1_n <= APP1_MAX ? malloc(app1_n) : NULL;
        if (app1) memcpy(app1, "Exif\0\0", 6), memcpy(app1 + 6, tiff, tn);
        free(tiff);
        if (app1_n > APP1_MAX)
            return sdw_fail(SDW_ERR_INVALID_ARG, "parameters too long for a JPEG EXIF segment (%zu bytes)", app1_n);
        if (!app1) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    }
    dst_mgr *dst = calloc(1, sizeof *dst);
    if (!dst) {
        free(app1);
        return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    }
    dst->pub = (struct jpeg_destination_mgr){
        .init_destination = dst_init, .empty_output_buffer = dst_empty, .term_destination = dst_term};
    struct jpeg_compress_struct c;
    jerr e = {.status = SDW_ERR_NOMEM};
    c.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = on_error_exit;
    e.pub.output_message = on_output_message;
    if (setjmp(e.jb)) {
        jpeg_destroy_compress(&c);
        free(dst->out.p);
        free(dst);
        free(app1);
        return sdw_fail(e.status, "encoding JPEG: %s", e.msg);
    }
    jpeg_create_compress(&c);
    c.dest = &dst->pub;
    c.image_width = (JDIMENSION)img->w;
    c.image_height = (JDIMENSION)img->h;
    c.input_components = img->channels;
    /* libjpeg-turbo reads RGBA directly and ignores the alpha byte. */
    c.in_color_space = img->channels == 1 ? JCS_GRAYSCALE : img->channels == 3 ? JCS_RGB : JCS_EXT_RGBA;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    if (app1) jpeg_write_marker(&c, JPEG_APP0 + 1, app1, (unsigned)app1_n);
    size_t stride = (size_t)img->w * (size_t)img->channels;
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = img->data + stride * c.next_scanline;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *out = dst->out.p;
    *n = dst->out.n;
    free(dst);
    free(app1);
    return SDW_OK;
}

sdw_status sdw_jpeg_read_comment(const uint8_t *buf, size_t n, char **value)
{
    *value = NULL;
    if (n < 4 || buf[0] != 0xff || buf[1] != 0xd8) return sdw_fail(SDW_ERR_FORMAT, "not a JPEG");
    /* Metadata segments precede the first scan; stop there. */
    for (size_t pos = 2; pos + 4 <= n;) {
        if (buf[pos] != 0xff) return sdw_fail(SDW_ERR_FORMAT, "malformed JPEG: no marker at offset %zu", pos);
        uint8_t m = buf[pos + 1];
        if (m == 0xff) { pos++; continue; }    /* fill byte */
        if (m == 0xda || m == 0xd9) return SDW_OK;
        size_t len = (size_t)buf[pos + 2] << 8 | buf[pos + 3];
        if (len < 2 || len > n - pos - 2) return sdw_fail(SDW_ERR_FORMAT, "truncated JPEG: segment at offset %zu", pos);
        const uint8_t *body = buf + pos + 4;
        if (m == 0xe1 && len >= 2 + 6 && !memcmp(body, "Exif\0\0", 6))
            return sdw_exif_read_comment(body + 6, len - 2 - 6, value);
        pos += 2 + len;
    }
    return sdw_fail(SDW_ERR_FORMAT, "truncated JPEG");
}
