/* image_webp.c: WebP through libwebp (still images; the first frame of an
 * animation is not extracted). The EXIF chunk that carries A1111's parameters
 * is added with libwebpmux and found again by walking the RIFF chunks. */
#include "io/image_internal.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>
#include <webp/encode.h>
#include <webp/mux.h>

static const char *status_text(VP8StatusCode s)
{
    switch (s) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated data";
    default: return "error";
    }
}

static sdw_status webp_fail(VP8StatusCode s)
{
    sdw_status st = s == VP8_STATUS_OUT_OF_MEMORY ? SDW_ERR_NOMEM
                  : s == VP8_STATUS_UNSUPPORTED_FEATURE ? SDW_ERR_UNSUPPORTED : SDW_ERR_FORMAT;
    return sdw_fail(st, "malformed WebP: %s", status_text(s));
}

sdw_status sdw_webp_decode(const uint8_t *buf, size_t n, int64_t max_pixels, sdw_image *out)
{
    memset(out, 0, sizeof *out);
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg)) return sdw_fail(SDW_ERR_UNSUPPORTED, "libwebp version mismatch");
    VP8StatusCode st = WebPGetFeatures(buf, n, &cfg.input);
    if (st != VP8_STATUS_OK) return webp_fail(st);
    if (cfg.input.has_animation) return sdw_fail(SDW_ERR_UNSUPPORTED, "animated WebP is not supported");
    sdw_status size_st = sdw_image_check_size(cfg.input.width, cfg.input.height, max_pixels);
    if (size_st != SDW_OK) return sdw_fail_context(size_st, "WebP");
    int w = cfg.input.width, h = cfg.input.height, ch = cfg.input.has_alpha ? 4 : 3;
    size_t size = (size_t)w * (size_t)h * (size_t)ch;
    uint8_t *pixels = malloc(size);
    if (!pixels) return sdw_fail(SDW_ERR_NOMEM, "out of memory for a %dx%d WebP", w, h);
    /* Decode into our own buffer so the caller frees it with free(). */
    cfg.output.colorspace = ch == 4 ? MODE_RGBA : MODE_RGB;
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA.rgba = pixels;
    cfg.output.u.RGBA.stride = w * ch;
    cfg.output.u.RGBA.size = size;
    st = WebPDecode(buf, n, &cfg);
    WebPFreeDecBuffer(&cfg.output);
    if (st != VP8_STATUS_OK) {
        free(pixels);
        return webp_fail(st);
    }
    *out = (sdw_image){.w = w, .h = h, .channels = ch, .data = pixels};
    return SDW_OK;
}

/* Wraps a bare WebP bitstream and an EXIF blob into one extended file. */
static sdw_status add_exif(const uint8_t *webp, size_t n, const char *parameters, WebPData *res)
{
    uint8_t *tiff;
    size_t tn;
    SDW_TRY(sdw_exif_build_comment(parameters, &tiff, &tn));
    WebPMux *mux = WebPMuxNew();
    WebPData image = {webp, n}, exif = {tiff, tn};
    WebPMuxError me = mux ? WebPMuxSetImage(mux, &image, 0) : WEBP_MUX_MEMORY_ERROR;
    if (me == WEBP_MUX_OK) me = WebPMuxSetChunk(mux, "EXIF", &exif, 0);
    if (me == WEBP_MUX_OK) me = WebPMuxAssemble(mux, res);
    WebPMuxDelete(mux);
    free(tiff);
    if (me != WEBP_MUX_OK) return sdw_fail(me == WEBP_MUX_MEMORY_ERROR ? SDW_ERR_NOMEM : SDW_ERR_FORMAT,
                                           "adding EXIF to WebP failed (mux error %d)", (int)me);
    return SDW_OK;
}

sdw_status sdw_image_encode_webp(const sdw_image *img, int quality, bool lossless,
                                 const char *parameters, uint8_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    SDW_TRY(sdw_image_check(img));
    if (quality < 0 || quality > 100) return sdw_fail(SDW_ERR_INVALID_ARG, "WebP quality %d not in 0..100", quality);
    if (img->w > WEBP_MAX_DIMENSION || img->h > WEBP_MAX_DIMENSION)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%dx%d is too large for WebP (max %d)", img->w, img->h, WEBP_MAX_DIMENSION);
    sdw_image rgb = {0};
    const sdw_image *src = img;
    if (img->channels == 1) {   /* WebP has no gray mode */
        SDW_TRY(sdw_image_convert(img, 3, &rgb));
        src = &rgb;
    }
    WebPConfig cfg;
    WebPPicture pic;
    WebPMemoryWriter wr;
    if (!WebPConfigInit(&cfg) || !WebPPictureInit(&pic)) {
        sdw_image_free(&rgb);
        return sdw_fail(SDW_ERR_UNSUPPORTED, "libwebp version mismatch");
    }
    cfg.quality = (float)quality;
    cfg.lossless = lossless;
    /* Keep RGB under transparent pixels: an OpenAI-style mask image must come
     * back with the colours it was given. */
    cfg.exact = lossless;
    pic.use_argb = lossless;
    pic.width = src->w;
    pic.height = src->h;
    WebPMemoryWriterInit(&wr);
    pic.writer = WebPMemoryWrite;
    pic.custom_ptr = &wr;
    int stride = src->w * src->channels;
    int ok = src->channels == 4 ? WebPPictureImportRGBA(&pic, src->data, stride)
                                : WebPPictureImportRGB(&pic, src->data, stride);
    if (ok) ok = WebPEncode(&cfg, &pic);
    WebPEncodingError err = pic.error_code;
    WebPPictureFree(&pic);
    sdw_image_free(&rgb);
    if (!ok) {
        WebPMemoryWriterClear(&wr);
        return sdw_fail(err == VP8_ENC_ERROR_OUT_OF_MEMORY ? SDW_ERR_NOMEM : SDW_ERR_INVALID_ARG,
                        "encoding WebP failed (libwebp error %d)", (int)err);
    }
    WebPData res = {wr.mem, wr.size};
    if (parameters) {
        sdw_status s = add_exif(wr.mem, wr.size, parameters, &res);
        WebPMemoryWriterClear(&wr);
        if (s != SDW_OK) return s;
    }
    /* Hand back malloc'd memory, like the other encoders. */
    *out = malloc(res.size ? res.size : 1);
    if (*out) memcpy(*out, res.bytes, res.size), *n = res.size;
    if (parameters) WebPDataClear(&res);
    else WebPMemoryWriterClear(&wr);
    return *out ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory");
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

sdw_status sdw_webp_read_comment(const uint8_t *buf, size_t n, char **value)
{
    *value = NULL;
    if (n < 12 || memcmp(buf, "RIFF", 4) || memcmp(buf + 8, "WEBP", 4)) return sdw_fail(SDW_ERR_FORMAT, "not a WebP");
    for (size_t pos = 12; pos + 8 <= n;) {
        size_t len = le32(buf + pos + 4);
        if (len > n - pos - 8) return sdw_fail(SDW_ERR_FORMAT, "truncated WebP: chunk at offset %zu", pos);
        const uint8_t *body = buf + pos + 8;
        if (!memcmp(buf + pos, "EXIF", 4)) {
            /* Some writers (older PIL) keep the JPEG "Exif\0\0" prefix. */
            if (len >= 6 && !memcmp(body, "Exif\0\0", 6)) body += 6, len -= 6;
            return sdw_exif_read_comment(body, len, value);
        }
        pos += 8 + len + (len & 1);
    }
    return SDW_OK;
}
