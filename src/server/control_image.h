/* control_image.h: from a request's control image to what a ControlNet
 * sees, the way sd-webui-controlnet gets there: the picture is scaled so
 * that its shorter side is the preprocessor resolution (unless the
 * preprocessor is "none"), run through the preprocessor (io/preprocess.h),
 * and the resulting map fitted to the generation size by the unit's resize
 * mode. The job's engine and POST /controlnet/detect share it.
 */
#ifndef SDW_SERVER_CONTROL_IMAGE_H
#define SDW_SERVER_CONTROL_IMAGE_H
#include "io/preprocess.h"

/* A processed map may have at most this many pixels (an extreme aspect
 * ratio scaled to a large processor resolution would be larger). */
#define SDW_CONTROL_MAX_MAP_PIXELS ((int64_t)4096 * 4096)

/* sd-webui-controlnet's "Pixel Perfect" resolution for src and a
 * generation of w x h: the scale that covers w x h (that fits inside, for
 * Resize and Fill) applied to the shorter side. */
int sdw_control_pixel_perfect_res(const sdw_image *src, int w, int h, sdw_fit_mode mode);

/* The preprocessor's map of src (RGB) at processor_res (0 = src's own size;
 * ignored by "none"). Upscaling is bicubic, downscaling antialiased
 * bilinear (sd-webui-controlnet uses OpenCV's cubic and area filters, so a
 * scaled map can differ from its by a pixel here and there; at the image's
 * own size it is the same). */
sdw_status sdw_control_detect(const sdw_preprocessor *pre, int processor_res, const sdw_image *src, sdw_image *out);

/* The whole way for a generation of w x h (processor_res as for
 * sdw_control_detect): *out, a new w x h RGB image (what a job hands
 * sdw_generate as a preprocessed sdw_gen_control.image). */
sdw_status sdw_control_fitted(const sdw_preprocessor *pre, int processor_res, sdw_fit_mode mode, const sdw_image *src,
                              int w, int h, sdw_image *out);
/* The same as [h, w, 3] floats in [0, 1] (malloc'd), what sdw_control_unit.image takes. */
sdw_status sdw_control_map(const sdw_preprocessor *pre, int processor_res, sdw_fit_mode mode, const sdw_image *src,
                           int w, int h, float **out);
#endif
