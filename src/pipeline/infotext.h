/* infotext.h: the generation parameters as AUTOMATIC1111 writes them into a
 * PNG's "parameters" text chunk, so A1111 and civitai can read them back:
 *   <prompt>
 *   Negative prompt: <negative>
 *   Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x512, ... */
#ifndef SDW_PIPELINE_INFOTEXT_H
#define SDW_PIPELINE_INFOTEXT_H
#include "pipeline/pipeline.h"

typedef struct {
    const sdw_pipeline_params *p;
    uint64_t seed;              /* this image's seed */
    const char *model_name;     /* file stem */
    const char *model_hash;     /* first 10 hex digits of the file's SHA-256, or NULL */
    const char *lora_hashes;    /* "name: hash, ..." or NULL */
} sdw_infotext_args;

/* Returns a malloc'd string (NULL when out of memory). */
char *sdw_infotext(const sdw_infotext_args *a);
#endif
