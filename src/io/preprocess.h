/* preprocess.h: ControlNet preprocessors and control-image fitting, on 8-bit
 * images (io/image.h). A preprocessor turns a user's picture into the control
 * image a ControlNet was trained on (canny edges, an inverted line drawing,
 * a thresholded scribble); "none" passes an already processed image through.
 * Fitting brings a control image to the generation size as A1111's
 * sd-webui-controlnet resize modes do. Output images are RGB. */
#ifndef SDW_IO_PREPROCESS_H
#define SDW_IO_PREPROCESS_H
#include "io/image.h"

typedef enum {
    SDW_PRE_NONE,       /* the image as given */
    SDW_PRE_CANNY,      /* cv2.Canny(img, low, high), apertureSize 3, L1 gradient */
    SDW_PRE_INVERT,     /* 255 - x (white-background line art to the black background ControlNets expect) */
    SDW_PRE_THRESHOLD,  /* binary: 255 where min(R, G, B) > threshold, else 0 (sd-webui-controlnet's rule) */
    SDW_PRE_SCRIBBLE,   /* a user's scribble: 255 where min(R, G, B) < 127 (dark strokes on light paper ->
                         * white strokes on black; sd-webui-controlnet's scribble_thr) */
} sdw_preprocessor_kind;

typedef struct {
    sdw_preprocessor_kind kind;
    float a, b;         /* canny: low, high thresholds (0..255); threshold: the threshold */
} sdw_preprocessor;

/* Parses "none", "canny[:LOW:HIGH]" (default 100:200), "invert", "threshold[:T]" (default 127), "scribble",
 * and sd-webui-controlnet's module names for the same ("canny", "invert", "threshold", "scribble_hed" is not
 * one; see the .c for the accepted list). Anything else fails with the list of names. */
sdw_status sdw_preprocessor_parse(const char *spec, sdw_preprocessor *out);
/* The canonical name of a preprocessor ("canny", ...), as A1111 infotext and /controlnet/module_list give it. */
const char *sdw_preprocessor_name(sdw_preprocessor_kind k);

/* in (1, 3 or 4 channels) -> out, a new RGB image of the same size (edge maps in three equal channels).
 * Gray is replicated and RGBA composited over white first (sd-webui-controlnet's HWC3). */
sdw_status sdw_preprocess(const sdw_preprocessor *p, const sdw_image *in, sdw_image *out);

/* OpenCV's cv2.Canny bit for bit on an image of 1 or 3 channels (the channel with the largest gradient
 * magnitude per pixel): edges [h * w] = 255 or 0. low > high are swapped; both are floored. */
sdw_status sdw_canny(const uint8_t *img, int w, int h, int channels, double low, double high, uint8_t *edges);

/* A1111's resize modes for a control image of another size than the generation's. */
typedef enum {
    SDW_FIT_JUST_RESIZE,     /* "Just Resize": stretch to w x h */
    SDW_FIT_CROP_AND_RESIZE, /* "Crop and Resize": scale to cover, centre crop (the default) */
    SDW_FIT_RESIZE_AND_FILL, /* "Resize and Fill": scale to fit inside, pad the rest */
} sdw_fit_mode;
/* "Just Resize", "Crop and Resize", "Resize and Fill" (A1111's strings, also 0 / 1 / 2 and the short forms
 * "just_resize", "crop", "fill"); anything else fails with the list. */
sdw_status sdw_fit_mode_parse(const char *s, sdw_fit_mode *out);
/* in -> out, a new RGB image of w x h, as sd-webui-controlnet's detectmap_proc: crop centred, fill with the
 * median border colour, centred; see the .c for the resampling and how it differs from OpenCV's. */
sdw_status sdw_control_image_fit(const sdw_image *in, int w, int h, sdw_fit_mode mode, sdw_image *out);
#endif
