/* model.h: a loaded checkpoint: its text conditioner, UNet and VAE on one
 * backend, plus what was detected about it (sdw_model_info). The pipelines
 * reach into this struct; users see only the opaque sdw_model. */
#ifndef SDW_MODELS_MODEL_H
#define SDW_MODELS_MODEL_H
#include "models/text_conditioner.h"
#include "models/unet.h"
#include "models/vae.h"

struct sdw_model {
    sdw_model_info info;
    sdw_backend *be;
    sdw_text_conditioner text;
    sdw_unet *unet;
    sdw_vae *vae;
    struct sdw_lora_state *lora;   /* NULL until a LoRA is first applied */
};

/* Bytes of weights the model holds now: what loading stored, plus the
 * Winograd copies the backend makes at first use (conv_wino.c). */
size_t sdw_model_held_bytes(const struct sdw_model *m);
#endif
