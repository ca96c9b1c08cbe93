/* model.h: a loaded checkpoint: its text conditioner, UNet and VAE on one
 * backend, plus what was detected about it (sdw_model_info). The pipelines
 * reach into this struct; users see only the opaque sdw_model. */
#ifndef SDW_MODELS_MODEL_H
#define SDW_MODELS_MODEL_H
#include "models/text_conditioner.h"
#include "models/unet.h"
#include "models/vae.h"

struct sdw_flux;
struct sdw_t5;
struct sdw_mmdit;
struct sdw_sd3_text;

struct sdw_model {
    sdw_model_info info;
    sdw_backend *be;
    sdw_text_conditioner text;
    sdw_unet *unet;                /* SD1 / SD2 / SDXL; NULL for FLUX */
    struct sdw_flux *flux;         /* FLUX.1; text.te1 is then its CLIP-L (pooled vector only) */
    struct sdw_t5 *t5;             /* FLUX's T5-XXL */
    struct sdw_mmdit *mmdit;       /* SD3 / SD3.5 */
    struct sdw_sd3_text *sd3_text; /* SD3's CLIP-L, CLIP-G and T5 */
    sdw_vae *vae;
    struct sdw_lora_state *lora;   /* NULL until a LoRA is first applied */
    /* Files whose mapping layers read their compact weights from, kept open
     * until the model is freed: the FLUX transformer's ('t') and the T5's
     * ('5'), each under its tensor-name prefix. */
    struct {
        sdw_safetensors *st;
        char role;
        char prefix[40];
    } mapped[3];
    int n_mapped;
    bool page_out;                 /* pages of one go back to the system while the other runs */
    /* The last image's activations (sdw_pipeline_run), kept for the next:
     * fresh memory is faulted in page by page, 0.6 s of SD1.5's first step
     * at 512x512. */
    sdw_arena kept;
};

/* Bytes of weights the model holds now: what loading stored, plus the
 * Winograd copies the backend makes at first use (conv_wino.c). */
size_t sdw_model_held_bytes(const struct sdw_model *m);

/* Shared by the family loaders (model.c, model_flux.c). */
void sdw_model_set_defaults(sdw_model_info *in);
/* --preset decides; else the file or folder name, or the safetensors metadata, says "turbo"
 * (SDXL-Turbo, SD3.5 Large Turbo). Call before sdw_model_set_defaults. */
void sdw_model_detect_turbo(sdw_model_info *in, const sdw_load_params *p, const char *path, const sdw_safetensors *st);
void sdw_model_note_dtypes(sdw_model_info *in, const sdw_safetensors *st);
int64_t sdw_model_params_under(const sdw_safetensors *st, const char *const *prefixes, int n);
/* Opens <dir>/<sub>/<stem>.safetensors or its .fp16 variant. */
sdw_status sdw_model_open_diffusers(const char *dir, const char *sub, const char *stem, sdw_safetensors **st);
/* Notes st's dtypes in the info and adds its parameters to *params. */
void sdw_model_count_part(sdw_model_info *in, const sdw_safetensors *st, int64_t *params);
/* Opens a part file (the caller's to close) and counts it so. */
sdw_status sdw_model_open_part(const char *path, sdw_model_info *in, int64_t *params, sdw_safetensors **st);
/* After loading from st with status s: keeps st mapped (sdw_model_keep_mapped)
 * when s is SDW_OK and st->keep_mapped, else closes it. Returns s. */
sdw_status sdw_model_keep_or_close(sdw_model *m, sdw_safetensors *st, sdw_status s, char role, const char *prefix);
/* The transformer of a diffusers folder (FLUX, SD3): configure reads its
 * configuration (into config) from <dir>/transformer's weights and
 * config.json; with a backend, load makes m's transformer from them. Its
 * parameters count as the denoiser's; the file stays mapped as role 't'. */
typedef sdw_status (*sdw_transformer_config_fn)(const sdw_safetensors *st, const cJSON *cfg, void *config);
typedef sdw_status (*sdw_transformer_load_fn)(sdw_model *m, const sdw_safetensors *st, const void *config);
sdw_status sdw_model_load_transformer(sdw_model *m, const char *dir, sdw_transformer_config_fn configure,
                                      sdw_transformer_load_fn load, void *config);
/* FLUX.1 (model_flux.c): from a transformer file (BFL names under prefix: ""
 * or ComfyUI's all-in-one "model.diffusion_model."; safetensors or GGUF;
 * the call owns st), the other parts from the load parameters or the same
 * file; or from a diffusers folder. With m->be NULL only the info is filled
 * (a probe). */
sdw_status sdw_flux_model_load_single(sdw_model *m, const char *path, sdw_safetensors *st, const char *prefix,
                                      const sdw_load_params *p);
/* SD3 / SD3.5 (model_sd3.c), as FLUX: the MMDiT under prefix
 * ("model.diffusion_model.") of st (owned by the call), or a diffusers folder. */
sdw_status sdw_sd3_model_load_single(sdw_model *m, const char *path, sdw_safetensors *st, const char *prefix,
                                     const sdw_load_params *p);
sdw_status sdw_sd3_model_load_diffusers(sdw_model *m, const char *dir, const sdw_load_params *p);
/* Keeps st open until the model is freed: layers read compact weights from
 * its mapping. role 't' (the denoiser) or '5' (T5), under prefix. */
void sdw_model_keep_mapped(sdw_model *m, sdw_safetensors *st, char role, const char *prefix);
/* Gives the mapped pages of the model's denoiser ('t') or T5 ('5') back to
 * the system when m->page_out (the next use reads them again): the T5 after
 * encoding, the transformer before encoding and before the VAE decode. */
void sdw_model_page_out(sdw_model *m, char role);
sdw_status sdw_flux_model_load_diffusers(sdw_model *m, const char *dir, const sdw_load_params *p);
#endif
