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
 *   SD3:  the MMDiT as <sd3-medium|sd35-medium|sd35-large>-seed1-Q8_0.gguf
 *         (city96's layout) with sd3-vae-seed1.safetensors (F16), or
 *         Stability's single file <family>-seed1-<f16|bf16>.safetensors (MMDiT
 *         + VAE; F16 for SD3-medium, BF16 for SD3.5, as published), and the
 *         parts all three share: sd3-clip_l-seed1.safetensors,
 *         sd3-clip_g-seed1.safetensors (F16) and FLUX's T5 file above (SD3's
 *         T5-XXL is the same encoder, tools/fullsize/sd3_lists.py checks it)
 *   ControlNet (--control auto; SD1.5 and SDXL): <control>-seed1.safetensors
 *         from the lists tools/fullsize/CONTROLNET.md describes
 * The tool is $SDW_MAKE_FULLSIZE, else tools/fullsize/sdw-make-fullsize next
 * to the sd-worker executable (the build folder); the folder is
 * $SDW_FULLSIZE_DIR, else fullsize/ next to the executable. */
#ifndef SDW_CLI_BENCH_MODEL_H
#define SDW_CLI_BENCH_MODEL_H
#include "sdw.h"

typedef enum {
    BENCH_KIND_SD,   /* one single-file checkpoint */
    BENCH_KIND_FLUX, /* a transformer plus separate ae / clip_l / t5xxl files */
    BENCH_KIND_SD3,  /* an MMDiT (GGUF + separate VAE, or a single file with it) plus clip_l / clip_g / t5xxl */
} bench_kind;

typedef struct {
    const char *name;          /* as given to --family: sd15, sd15-inpaint, sd2, sdxl, flux-schnell, flux-dev,
                                * sd3-medium, sd35-medium, sd35-large */
    const char *recipe;        /* the tool's family: sd15, sd15-inpaint, sd21-v, sdxl; FLUX / SD3: the
                                * transformer's (SD3: the single file's; its GGUF is <recipe>-mmdit) */
    sdw_prediction prediction; /* to load it with */
    bench_kind kind;
    const char *dtype16;       /* FLUX / SD3: the 16-bit file's dtype, "bf16" or "f16" */
    const char *control;       /* the tool's family of its full-size ControlNet (sd15-controlnet,
                                * sdxl-controlnet), or NULL */
} bench_family;

/* Which transformer file (FLUX, SD3): the Q8_0 GGUF (default) or the 16-bit
 * safetensors (BF16; SD3-medium's F16). */
typedef enum { BENCH_WEIGHTS_Q8_0, BENCH_WEIGHTS_16BIT } bench_weights;

/* NULL if name is not a bench family. */
const bench_family *bench_family_find(const char *name);
/* "sd15|sd15-inpaint|sd2|sdxl|flux-schnell|flux-dev|sd3-medium|sd35-medium|sd35-large" */
const char *bench_family_names(void);

/* The files of a family (FLUX: all but clip_g; SD3: all, vae "" with the
 * single file; SD: model only), the rest "". */
typedef struct {
    char model[4096], vae[4096], clip_l[4096], clip_g[4096], t5xxl[4096];
} bench_files;

/* Fills files, writing each one first if it is not there yet (SD: 2-7 GB,
 * tens of seconds; FLUX: 12-24 GB for the transformer, 5 GB for T5, some
 * minutes; SD3: 2.8-16 GB for the MMDiT, 1.4 GB for CLIP-G, FLUX's T5). On
 * failure prints one line on stderr (prefixed with who) and returns false. */
bool bench_model_files(const char *who, const bench_family *f, bench_weights w, bench_files *files);

/* The family's full-size random ControlNet (f->control) into path, written
 * first if it is not there yet (SD1.5 0.7 GB, SDXL 2.5 GB, F16). A family
 * without one, or a failure: one line on stderr, false. */
bool bench_control_file(const char *who, const bench_family *f, char *path, size_t n);
#endif
