/* api_internal.h: what the files of the public generation API (src/api/,
 * declared in include/sdw.h) share, and the one hook the command line needs
 * beyond the public header (gen_observer.h: the pipeline's tensor observer
 * for `generate --dump`). The api layer sits between pipeline/ and the front ends
 * (server/, cli/): it turns sdw_gen_params into sdw_pipeline_params runs. */
#ifndef SDW_API_INTERNAL_H
#define SDW_API_INTERNAL_H
#include "sdw.h"
#include "io/image.h"
#include "models/controlnet.h"
#include "models/lora.h"
#include "pipeline/infotext.h"
#include "pipeline/pipeline.h"
#include "api/gen_observer.h"

/* ---- Versioned structs (gen_params.c) ---- */

/* Copies a caller's struct of `given` bytes over *full (already holding the
 * defaults, `known` bytes): fields past `given` keep their defaults. Fails
 * when given < min (older than any header that had the struct), or when
 * given > known and a byte this library does not know is non-zero (a caller
 * built against a newer sdw.h asking for something this library lacks). */
sdw_status sdw_api_versioned_copy(void *full, size_t known, const void *in, size_t given, size_t min,
                                  const char *what);
/* p (any version) as this library's full struct, checked (sdw_gen_params_check's rules). */
sdw_status sdw_api_params_read(const sdw_gen_params *p, sdw_gen_params *out);
/* Entry i of an array of versioned structs whose first entry gives the stride. */
const void *sdw_api_entry(const void *array, size_t stride, int i);
sdw_status sdw_api_lora_read(const sdw_gen_params *p, int i, sdw_lora_ref *out);
sdw_status sdw_api_control_read(const sdw_gen_params *p, int i, sdw_gen_control *out);

/* ---- Inputs (gen_inputs.c) ---- */

/* A borrowed view of an RGB8 image as io/image.h's sdw_image (no copy);
 * fails with a message naming what when it is empty or too large. */
sdw_status sdw_api_image_view(const sdw_image_rgb8 *in, const char *what, sdw_image *out);
/* The LoRAs of p (full, checked): its list, then the prompt's tags in lora_dir. */
sdw_status sdw_api_lora_set(const sdw_gen_params *p, sdw_lora_set *set);

/* The ControlNet units of one call: each net file loaded once however often
 * it is named, images preprocessed and fitted, and what the parameters text
 * says of each unit. */
typedef struct {
    sdw_controlnet *nets[SDW_MAX_CONTROLS];
    char real[SDW_MAX_CONTROLS][4096];   /* where each loaded net's file is (realpath) */
    int n_nets;
    sdw_control_unit units[SDW_MAX_CONTROLS];
    float *images[SDW_MAX_CONTROLS];
    sdw_infotext_control info[SDW_MAX_CONTROLS];
    char stem[SDW_MAX_CONTROLS][256], hash[SDW_MAX_CONTROLS][16];
    int n;
} sdw_api_controls;
/* c must be zeroed; free it with sdw_api_controls_free also after a failure. */
sdw_status sdw_api_controls_load(const sdw_gen_params *p, sdw_model *m, int w, int h, sdw_api_controls *c);
void sdw_api_controls_free(sdw_api_controls *c);

#endif
