/* image_rgb8.c: the public API's 8-bit RGB images (sdw_image_rgb8, sdw.h)
 * read from and written to files over io/image.h, so that a program that
 * embeds the library needs no image library of its own: PNG, JPEG and WebP
 * in; out, to a file or to memory, with the generation parameters where
 * A1111 and civitai look. */
#include "api/api_internal.h"
#include "core/error.h"
#include "io/preprocess.h"
#include <stdlib.h>
#include <string.h>
#include <strings.h>

sdw_status sdw_image_rgb8_load(const char *path, bool over_white, sdw_image_rgb8 *out)
{
    if (!out) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_image_rgb8_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_image_rgb8_load: path is NULL");
    sdw_image img, rgb;
    SDW_TRY(sdw_image_load(path, SDW_IMAGE_DEFAULT_MAX_PIXELS, &img));
    /* "none" is the HWC3 step every ControlNet preprocessor starts with. */
    sdw_preprocessor flat = { SDW_PRE_NONE, 0, 0 };
    sdw_status s = over_white ? sdw_preprocess(&flat, &img, &rgb) : sdw_image_convert(&img, 3, &rgb);
    sdw_image_free(&img);
    if (s != SDW_OK) return sdw_fail_context(s, "%s", path);
    *out = (sdw_image_rgb8){ rgb.w, rgb.h, rgb.data };
    return SDW_OK;
}

static sdw_status view(const sdw_image_rgb8 *img, sdw_image *out)
{
    if (!img) return sdw_fail(SDW_ERR_INVALID_ARG, "image is NULL");
    return sdw_api_image_view(img, "image", out);
}

sdw_status sdw_image_rgb8_write(const char *path, const sdw_image_rgb8 *img, const char *parameters)
{
    if (!path) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_image_rgb8_write: path is NULL");
    sdw_image v;
    SDW_TRY(view(img, &v));
    sdw_png_text t = { "parameters", parameters };
    return sdw_image_save(path, &v, &t, parameters ? 1 : 0);
}

sdw_status sdw_image_rgb8_encode_png(const sdw_image_rgb8 *img, const char *parameters, uint8_t **png, size_t *n)
{
    if (!png || !n) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_image_rgb8_encode_png: png or n is NULL");
    *png = NULL;
    *n = 0;
    sdw_image v;
    SDW_TRY(view(img, &v));
    sdw_png_text t = { "parameters", parameters };
    return sdw_image_encode_png(&v, &t, parameters ? 1 : 0, png, n);
}

sdw_status sdw_image_rgb8_encode(const sdw_image_rgb8 *img, const char *format, const char *parameters, uint8_t **out,
                                 size_t *n)
{
    if (!out || !n || !format) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_image_rgb8_encode: format, out or n is NULL");
    *out = NULL;
    *n = 0;
    if (!strcasecmp(format, "png")) return sdw_image_rgb8_encode_png(img, parameters, out, n);
    sdw_image v;
    SDW_TRY(view(img, &v));
    if (!strcasecmp(format, "jpeg") || !strcasecmp(format, "jpg"))
        return sdw_image_encode_jpeg(&v, SDW_IMAGE_SAVE_QUALITY, parameters, out, n);
    if (!strcasecmp(format, "webp")) return sdw_image_encode_webp(&v, SDW_IMAGE_SAVE_QUALITY, false, parameters, out, n);
    return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_image_rgb8_encode: format '%s' is not png, jpeg or webp", format);
}

void sdw_image_rgb8_free(sdw_image_rgb8 *img)
{
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}
