/* fuzz_json_config.c: libFuzzer target for the config.json reader (cJSON
 * behind our rewrite of Python's Infinity/NaN) and what reads its result: the
 * diffusers UNet and VAE config interpreters and the lookups the model loader
 * makes in model_index.json, scheduler_config.json and text encoder configs.
 * A failed parse must leave nothing and say why. */
#include "io/json_file.h"
#include "models/unet.h"
#include "models/vae.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > SDW_JSON_FILE_MAX) return 0;
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    cJSON *j = (cJSON *)1;
    sdw_clear_error();
    if (sdw_json_parse(text, size, "config.json", &j) != SDW_OK) {
        if (j) abort();
        if (!sdw_last_error()[0]) abort();
        free(text);
        return 0;
    }
    free(text);
    if (!cJSON_IsObject(j)) abort();
    sdw_unet_config uc;
    if (sdw_unet_config_from_diffusers(j, &uc) == SDW_OK && (uc.n_levels < 1 || uc.n_levels > SDW_UNET_MAX_LEVELS))
        abort();
    sdw_vae_config vc;
    if (sdw_vae_config_from_diffusers(j, &vc) == SDW_OK && (vc.n_levels < 1 || vc.n_levels > SDW_VAE_MAX_LEVELS))
        abort();
    sdw_json_str(j, "prediction_type", NULL);
    sdw_json_str(j, "hidden_act", NULL);
    sdw_json_int(j, "num_attention_heads", 0);
    sdw_json_int(j, "projection_dim", 0);
    cJSON_Delete(j);
    return 0;
}
