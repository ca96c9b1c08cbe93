/* frontend.h: what a front end of the pipeline (sd-worker generate, the
 * server) does around sdw_pipeline_run: 8-bit images in (init images and
 * masks, resized to the run's size) and out, random seeds, and the model's
 * name and hash for the A1111 parameters text. */
#ifndef SDW_PIPELINE_FRONTEND_H
#define SDW_PIPELINE_FRONTEND_H
#include "io/image.h"

/* RGB floats [h, w, 3] in [0, 1] to an 8-bit RGB image (round to nearest). */
sdw_status sdw_rgb01_to_image(const float *rgb, int w, int h, sdw_image *out);
/* An init image for the pipeline: RGB [h, w, 3] in [0, 1], resized with
 * Lanczos (as diffusers does) when the sizes differ. *out is malloc'd. */
sdw_status sdw_init_from_image(const sdw_image *img, int w, int h, float **out);
/* A mask for the pipeline: [h, w] in [0, 1], 1 = repaint, read from luma
 * (white = repaint) or alpha (transparent = repaint, OpenAI's convention),
 * optionally inverted. *out is malloc'd. */
sdw_status sdw_mask_from_image(const sdw_image *img, int w, int h, sdw_mask_source src, bool invert, float **out);
/* A random seed in 0..2^32-1 (what A1111 draws for seed -1). */
uint64_t sdw_random_seed(void);
/* The file name of path without folder or extension. */
void sdw_path_stem(const char *path, char *buf, size_t n);
/* The first 10 hex digits of a regular file's SHA-256 (A1111's "Model
 * hash"); "" for a folder or when it cannot be read. */
void sdw_model_hash10(const char *path, char out[16]);
#endif
