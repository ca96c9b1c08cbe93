/* controlnet.h: a ControlNet for the SD1 / SD2 / SDXL UNet: the hint encoder
 * (control image -> latent-size features), a copy of the UNet's time
 * embedding, conv_in, down blocks and middle block, and the 1x1 "zero"
 * convolutions that turn every skip tensor and the middle output into the
 * residuals the UNet adds (sdw_unet_input.down_res / mid_res).
 *
 * Files as users have them: lllyasviel's layout with or without the
 * "control_model." prefix (SD1.5 ControlNets), a diffusers folder
 * (config.json + diffusion_pytorch_model.safetensors) and a single file with
 * diffusers names (most SDXL ControlNets). */
#ifndef SDW_MODELS_CONTROLNET_H
#define SDW_MODELS_CONTROLNET_H
#include "models/unet.h"

#define SDW_CONTROLNET_MAX_RES (SDW_UNET_MAX_LEVELS * 4)   /* down residuals, at most */

typedef struct sdw_controlnet sdw_controlnet;

typedef struct {
    sdw_family family;          /* SD1, SD2 or SDXL: what base it is for, from the shapes */
    const char *layout;         /* "lllyasviel", "lllyasviel-noprefix", "diffusers", "diffusers-single-file" */
    int n_down;                 /* down residuals (12 for SD1.5, 9 for SDXL); the mid residual comes on top */
    int64_t params;
    char dtypes[64];
    size_t weight_bytes;        /* held after loading (0 for a probe) */
    sdw_unet_config unet;       /* the encoder half's configuration (in_channels 4) */
} sdw_controlnet_info;

/* What sdw_controlnet_load would find, without loading weights. */
sdw_status sdw_controlnet_probe(const char *path, sdw_controlnet_info *info);
/* Loads a ControlNet file or diffusers folder onto be (weights in its compute precision). */
sdw_status sdw_controlnet_load(sdw_backend *be, const char *path, sdw_controlnet **out);
void sdw_controlnet_free(sdw_controlnet *cn);
const sdw_controlnet_info *sdw_controlnet_get_info(const sdw_controlnet *cn);
/* Fails with a message naming `name` (the file) unless cn was made for a UNet of this configuration
 * (family, context width, levels and channels, SDXL's added conditioning). */
sdw_status sdw_controlnet_check_base(const sdw_controlnet *cn, const sdw_unet_config *base, const char *name);

/* The residuals for the UNet input `in` (its x must have 4 channels: the ControlNet sees the 4-channel
 * latents even for a 9-channel inpainting base; the rest as for sdw_unet_forward) and the control image
 * hint [in->N, 8 * in->H, 8 * in->W, 3] NHWC in [0, 1]. Residual i (i < n_down) is multiplied by scales[i],
 * the mid residual by scales[n_down], and ADDED to down[i] [N, Hi, Wi, Ci] / mid (NHWC, the shapes of the
 * UNet's skip tensors and middle output), so several ControlNets sum into the same buffers. Scratch from
 * arena (restored before returning). */
sdw_status sdw_controlnet_forward(sdw_backend *be, sdw_arena *arena, const sdw_controlnet *cn,
                                  const sdw_unet_input *in, const float *hint, const float *scales,
                                  float *const *down, float *mid);
/* The residual shapes for latents of H x W: hwc[i] = {Hi, Wi, Ci} for i < n_down, then the mid one.
 * Returns n_down. */
int sdw_controlnet_residual_shapes(const sdw_controlnet *cn, int H, int W, int hwc[][3]);
#endif
