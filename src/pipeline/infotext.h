/* infotext.h: the generation parameters as AUTOMATIC1111 writes them into a
 * PNG's "parameters" text chunk, so A1111 and civitai can read them back:
 *   <prompt>
 *   Negative prompt: <negative>
 *   Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x512, ...
 * (ControlNet units as sd-webui-controlnet's "ControlNet N" entries). */
#ifndef SDW_PIPELINE_INFOTEXT_H
#define SDW_PIPELINE_INFOTEXT_H
#include "pipeline/pipeline.h"

/* What the parameters text says of ControlNet unit k beyond p->controls[k] (weight, start, end, mode), as
 * sd-webui-controlnet writes its units:
 *   ControlNet 0: "Module: canny, Model: NAME [hash], Weight: 1, Resize Mode: Crop and Resize, ..." */
typedef struct {
    const char *module;         /* preprocessor ("none", "canny", ...); NULL = "none" */
    const char *model;          /* the file's stem; NULL = "None" */
    const char *hash;           /* sdw_infotext_short_hash of the file, or NULL / "" */
    const char *resize_mode;    /* "Just Resize", "Crop and Resize", "Resize and Fill"; NULL = "Crop and Resize" */
    int processor_res;          /* < 0: not written (A1111 leaves out its -1 values) */
    float threshold_a, threshold_b;   /* < 0: not written */
} sdw_infotext_control;

typedef struct {
    const sdw_pipeline_params *p;
    uint64_t seed;              /* this image's seed */
    const char *model_name;     /* file stem */
    const char *model_hash;     /* first 10 hex digits of the file's SHA-256, or NULL */
    const char *lora_hashes;    /* "name: hash, ..." or NULL */
} sdw_infotext_args;

/* Returns a malloc'd string (NULL when out of memory). ControlNet units of a->p are written with module
 * "none" and model "None"; sdw_infotext_controls says what they were. */
char *sdw_infotext(const sdw_infotext_args *a);
/* The same with controls[k] (a->p->n_controls entries) describing unit k. */
char *sdw_infotext_controls(const sdw_infotext_args *a, const sdw_infotext_control *controls);
/* A1111's short model hash (modules/sd_models.py model_hash: the first 8 hex digits of the SHA-256 of the
 * 64 KiB at offset 1 MiB), which sd-webui-controlnet puts after a ControlNet's name; "" for a folder or
 * an unreadable file. */
void sdw_infotext_short_hash(const char *path, char out[16]);
#endif
