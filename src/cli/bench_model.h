/* bench_model.h: the full-size models `sd-worker bench --family` runs on:
 * random-weight checkpoints written by the project's tool
 * (tools/fullsize/sdw-make-fullsize, seed 1), cached as
 * <dir>/<recipe>-seed1.safetensors, where the full-size tests keep theirs.
 * The tool is $SDW_MAKE_FULLSIZE, else tools/fullsize/sdw-make-fullsize next
 * to the sd-worker executable (the build folder); the folder is
 * $SDW_FULLSIZE_DIR, else fullsize/ next to the executable. */
#ifndef SDW_CLI_BENCH_MODEL_H
#define SDW_CLI_BENCH_MODEL_H
#include "sdw.h"

typedef struct {
    const char *name;          /* as given to --family: sd15, sd15-inpaint, sd2, sdxl */
    const char *recipe;        /* the tool's family: sd15, sd15-inpaint, sd21-v, sdxl */
    sdw_prediction prediction; /* to load it with */
} bench_family;

/* NULL if name is not a bench family. */
const bench_family *bench_family_find(const char *name);
/* "sd15|sd15-inpaint|sd2|sdxl" */
const char *bench_family_names(void);

/* Puts the checkpoint's path in path, writing it first (2-7 GB, tens of
 * seconds) if it is not there yet. On failure prints one line on stderr
 * (prefixed with who) and returns false. */
bool bench_model_path(const char *who, const bench_family *f, char *path, size_t n);
#endif
