/* bench_model.h: the full-size models `sd-worker bench --family` runs on:
 * random-weight files written by the project's tool
 * (tools/fullsize/sdw-make-fullsize, seed 1), cached in one folder, where
 * the full-size tests keep theirs:
 *   SD:   <recipe>-seed1.safetensors (one single-file checkpoint)
 *   FLUX: the transformer as flux-<dev|schnell>-seed1-Q8_0.gguf (city96's
 *         layout) or flux-<dev|schnell>-seed1-bf16.safetensors (BFL's), and
 *         the parts both share: flux-ae-seed1.safetensors (F32),
 *         flux-clip_l-seed1.safetensors (F16) and
 *         flux-t5xxl-seed1-fp8_e4m3fn.safetensors (the fp8 T5 users run)
 * The tool is $SDW_MAKE_FULLSIZE, else tools/fullsize/sdw-make-fullsize next
 * to the sd-worker executable (the build folder); the folder is
 * $SDW_FULLSIZE_DIR, else fullsize/ next to the executable. */
#ifndef SDW_CLI_BENCH_MODEL_H
#define SDW_CLI_BENCH_MODEL_H
#include "sdw.h"

typedef struct {
    const char *name;          /* as given to --family: sd15, sd15-inpaint, sd2, sdxl, flux-schnell, flux-dev */
    const char *recipe;        /* the tool's family: sd15, sd15-inpaint, sd21-v, sdxl; FLUX: the transformer's */
    sdw_prediction prediction; /* to load it with */
    bool flux;                 /* a transformer plus separate ae / clip_l / t5xxl files */
} bench_family;

/* Which FLUX transformer file: the Q8_0 GGUF (default) or the BF16 safetensors. */
typedef enum { BENCH_WEIGHTS_Q8_0, BENCH_WEIGHTS_BF16 } bench_weights;

/* NULL if name is not a bench family. */
const bench_family *bench_family_find(const char *name);
/* "sd15|sd15-inpaint|sd2|sdxl|flux-schnell|flux-dev" */
const char *bench_family_names(void);

/* The files of a family (FLUX: all four; SD: model only, the rest ""). */
typedef struct {
    char model[4096], vae[4096], clip_l[4096], t5xxl[4096];
} bench_files;

/* Fills files, writing each one first if it is not there yet (SD: 2-7 GB,
 * tens of seconds; FLUX: 12-24 GB for the transformer, 5 GB for T5, some
 * minutes). On failure prints one line on stderr (prefixed with who) and
 * returns false. */
bool bench_model_files(const char *who, const bench_family *f, bench_weights w, bench_files *files);
#endif
