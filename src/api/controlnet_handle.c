/* controlnet_handle.c: ControlNets as public handles (sdw.h's
 * sdw_controlnet), for a caller that loads a net once and keeps it across
 * calls (the server's cache) and hands it to sdw_generate in
 * sdw_gen_control.net. The handle is the models layer's net itself; these
 * calls take the model instead of its backend and UNet config. */
#include "api/api_internal.h"
#include "core/error.h"

sdw_status sdw_controlnet_load_for(sdw_model *model, const char *path, sdw_controlnet **out)
{
    if (!out) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_controlnet_load_for: out is NULL");
    *out = NULL;
    if (!model || !path) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_controlnet_load_for: model or path is NULL");
    return sdw_controlnet_load(model->be, path, out);
}

sdw_status sdw_controlnet_check_model(const sdw_controlnet *cn, const sdw_model *model, const char *name)
{
    if (!cn || !model) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_controlnet_check_model: net or model is NULL");
    if (!model->unet)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: ControlNet works with SD1, SD2 and SDXL models, not %s", name,
                        sdw_family_name(model->info.family));
    return sdw_controlnet_check_base(cn, sdw_unet_get_config(model->unet), name);
}

size_t sdw_controlnet_weight_bytes(const sdw_controlnet *cn)
{
    return cn ? sdw_controlnet_get_info(cn)->weight_bytes : 0;
}
