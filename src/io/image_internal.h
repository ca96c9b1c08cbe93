/* image_internal.h: what the image_*.c files share and nobody else uses: the
 * per-format codecs behind image.h, EXIF UserComment blobs, and the text
 * encodings the metadata formats need (Latin-1 in PNG tEXt, UTF-16 in EXIF). */
#ifndef SDW_IO_IMAGE_INTERNAL_H
#define SDW_IO_IMAGE_INTERNAL_H
#include "io/image.h"

/* Each decoder gets the data already recognised by its magic bytes and an
 * effective (positive) max_pixels. */
sdw_status sdw_png_decode(const uint8_t *buf, size_t n, int64_t max_pixels, sdw_image *out);
sdw_status sdw_jpeg_decode(const uint8_t *buf, size_t n, int64_t max_pixels, sdw_image *out);
sdw_status sdw_webp_decode(const uint8_t *buf, size_t n, int64_t max_pixels, sdw_image *out);
/* The EXIF UserComment of a JPEG (APP1) or WebP (EXIF chunk); NULL if none. */
sdw_status sdw_jpeg_read_comment(const uint8_t *buf, size_t n, char **value);
sdw_status sdw_webp_read_comment(const uint8_t *buf, size_t n, char **value);

/* Checks an image struct handed to an encoder or converter. */
sdw_status sdw_image_check(const sdw_image *img);
/* Fails with SDW_ERR_NOMEM unless 0 < w, h and w*h <= max_pixels. */
sdw_status sdw_image_check_size(int64_t w, int64_t h, int64_t max_pixels);

/* A growable byte buffer for encoders. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} sdw_bytes;
bool sdw_bytes_put(sdw_bytes *b, const void *data, size_t n);

/* A TIFF blob (as in a WebP EXIF chunk; a JPEG APP1 prepends "Exif\0\0") with
 * one Exif IFD holding text as UserComment, "UNICODE\0" + UTF-16BE: what
 * piexif.helper.UserComment.dump(text, encoding="unicode") produces. */
sdw_status sdw_exif_build_comment(const char *utf8, uint8_t **out, size_t *n);
/* Finds the UserComment in a TIFF blob (either byte order) and returns it as
 * UTF-8 (*value = NULL if absent); ASCII, UNICODE and undefined prefixes. */
sdw_status sdw_exif_read_comment(const uint8_t *tiff, size_t n, char **value);

/* Text encodings. utf8 input must be valid (sdw_utf8_valid). */
bool sdw_utf8_valid(const char *s, size_t n);
/* Latin-1 bytes for a UTF-8 string whose code points are all <= 0xFF, else
 * NULL (and *n untouched). */
char *sdw_utf8_to_latin1(const char *s, size_t *n);
char *sdw_latin1_to_utf8(const uint8_t *s, size_t n);
#endif
