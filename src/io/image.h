/* image.h: 8-bit images in and out of the worker. Decoding of PNG, JPEG and
 * WebP (detected by magic bytes, never by name) for init images, masks and
 * uploads; encoding to the same three with the generation parameters embedded
 * where AUTOMATIC1111 and civitai look for them (PNG tEXt/iTXt "parameters",
 * EXIF UserComment in JPEG and WebP); and the pixel conversions and resizing
 * the pipelines need, bit-compatible with what diffusers does through PIL.
 *
 * Untrusted input is the normal case here (the server decodes uploads):
 * decoders refuse images whose header asks for more than max_pixels before any
 * pixel memory is allocated, and every malformed or truncated input ends in an
 * sdw_status with a message, never in an abort or a partial image. */
#ifndef SDW_IO_IMAGE_H
#define SDW_IO_IMAGE_H
#include "sdw.h"

/* Row-major, channels interleaved: 1 = L (gray), 3 = RGB, 4 = RGBA. The
 * pixel data is malloc'd and owned by the struct; sdw_image_free releases it. */
typedef struct {
    int w, h, channels;
    uint8_t *data;
} sdw_image;

typedef enum { SDW_IMAGE_UNKNOWN, SDW_IMAGE_PNG, SDW_IMAGE_JPEG, SDW_IMAGE_WEBP } sdw_image_format;

/* Used by decode and load when max_pixels <= 0. */
#define SDW_IMAGE_DEFAULT_MAX_PIXELS ((int64_t)8192 * 8192)
/* Quality sdw_image_save uses for JPEG and lossy WebP. */
#define SDW_IMAGE_SAVE_QUALITY 90

/* A text chunk for PNG encoding; key and text are UTF-8, key 1..79 printable
 * ASCII characters. */
typedef struct {
    const char *key;
    const char *text;
} sdw_png_text;

/* Allocates w x h x channels zeroed pixels into *img. */
sdw_status sdw_image_alloc(sdw_image *img, int w, int h, int channels);
/* Frees the pixels and zeroes the struct; safe on a zeroed or freed image. */
void sdw_image_free(sdw_image *img);

sdw_image_format sdw_image_detect(const void *buf, size_t n);
/* "png", "jpeg", "webp" or "unknown"; and the MIME type ("image/png", ...). */
const char *sdw_image_format_name(sdw_image_format f);
const char *sdw_image_format_mime(sdw_image_format f);

/* Decodes a PNG, JPEG or WebP held in memory into *out (zeroed on failure).
 * Gray stays 1 channel; gray+alpha becomes RGBA; palette becomes RGB, or RGBA
 * when it has transparency; 16-bit samples keep their high byte (PIL does
 * the same for RGB; it saturates 16-bit gray at 255, which we do not copy);
 * CMYK/YCCK JPEGs are converted to RGB as PIL's convert("RGB") does. Images
 * with w*h > max_pixels (SDW_IMAGE_DEFAULT_MAX_PIXELS when <= 0) fail with
 * SDW_ERR_NOMEM before pixel memory is allocated; malformed or truncated data
 * fails with SDW_ERR_FORMAT, animated WebP with SDW_ERR_UNSUPPORTED. EXIF
 * orientation is not applied. */
sdw_status sdw_image_decode(const void *buf, size_t n, int64_t max_pixels, sdw_image *out);
/* Reads the file at path and decodes it; errors name the file. */
sdw_status sdw_image_load(const char *path, int64_t max_pixels, sdw_image *out);

/* Encoders: *out is malloc'd (caller frees), *n its size. */
/* PNG, 8-bit, 1/3/4 channels kept. Each text goes in a tEXt chunk when it is
 * Latin-1 (stored as Latin-1, as PIL does) and in an uncompressed UTF-8 iTXt
 * chunk otherwise. Texts must be valid UTF-8. */
sdw_status sdw_image_encode_png(const sdw_image *img, const sdw_png_text *texts, int n_texts,
                                uint8_t **out, size_t *n);
/* JPEG, baseline 4:2:0, quality 1..100; alpha is dropped. A non-NULL
 * parameters string is stored as the EXIF UserComment (UNICODE, as A1111
 * writes it through piexif); it must fit one APP1 segment (about 32K chars). */
sdw_status sdw_image_encode_jpeg(const sdw_image *img, int quality, const char *parameters,
                                 uint8_t **out, size_t *n);
/* WebP, lossy at quality 0..100, or lossless (quality is then the effort) and
 * exact, RGB under transparent pixels included; alpha kept, gray stored as
 * RGB. parameters as for JPEG, in an EXIF chunk. */
sdw_status sdw_image_encode_webp(const sdw_image *img, int quality, bool lossless,
                                 const char *parameters, uint8_t **out, size_t *n);
/* Encodes by the extension of path (.png, .jpg/.jpeg, .webp; case-insensitive)
 * and writes the file. PNG gets every text; JPEG and WebP carry the text keyed
 * "parameters" (if any) as EXIF UserComment at SDW_IMAGE_SAVE_QUALITY. */
sdw_status sdw_image_save(const char *path, const sdw_image *img, const sdw_png_text *texts,
                          int n_texts);

/* The text of the first tEXt, zTXt or iTXt chunk of a PNG whose keyword is key,
 * as malloc'd UTF-8 in *value, or *value = NULL when there is none. Walks the
 * chunks without decoding pixels; fails on a malformed PNG. */
sdw_status sdw_png_read_text(const void *buf, size_t n, const char *key, char **value);
/* A1111's generation parameters from any of the three formats: the PNG
 * "parameters" text, or the EXIF UserComment of a JPEG or WebP. *value = NULL
 * when absent. */
sdw_status sdw_image_read_parameters(const void *buf, size_t n, char **value);

/* ---- Conversions for the pipelines ---- */

/* A copy with 1, 3 or 4 channels, as PIL's convert("L"/"RGB"/"RGBA"): gray is
 * L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16, alpha is dropped or set
 * to 255. */
sdw_status sdw_image_convert(const sdw_image *in, int channels, sdw_image *out);
/* out[H, W, 3] in [-1, 1] as diffusers' VaeImageProcessor: v / 255 in float32,
 * then 2v - 1. Gray is replicated, alpha ignored. */
void sdw_image_to_float(const sdw_image *img, float *out);
/* From x[H, W, 3] in [-1, 1] to an RGB image as diffusers postprocesses:
 * clamp(v/2 + 0.5, 0, 1) in float32, then round-half-even(v * 255). */
sdw_status sdw_image_from_float(const float *x, int w, int h, sdw_image *out);

typedef enum {
    SDW_MASK_LUMA,   /* gray of the image (PIL convert("L")) / 255: white = repaint */
    SDW_MASK_ALPHA,  /* OpenAI edits: 1 where alpha == 0 (transparent = edit), else 0 */
} sdw_mask_source;
/* out[H, W] in [0, 1]. SDW_MASK_ALPHA needs a 4-channel image. */
sdw_status sdw_image_to_mask(const sdw_image *img, sdw_mask_source src, float *out);

typedef enum {
    SDW_RESIZE_NEAREST,
    SDW_RESIZE_BILINEAR,
    SDW_RESIZE_BICUBIC,
    SDW_RESIZE_LANCZOS,  /* what diffusers uses for init images of another size */
} sdw_resize_filter;
/* PIL's Image.resize((w, h), filter), to the byte: separable convolution,
 * horizontal pass first, antialiased when shrinking, 22-bit fixed point with
 * 8-bit rounding between passes; RGBA is resized premultiplied. Equal sizes
 * copy. */
sdw_status sdw_image_resize(const sdw_image *in, int w, int h, sdw_resize_filter f, sdw_image *out);
#endif
