/* controlnet_impl.h: the ControlNet's struct, shared by its loader
 * (controlnet_load.c) and its forward pass (controlnet.c); nothing else
 * includes it. */
#ifndef SDW_MODELS_CONTROLNET_IMPL_H
#define SDW_MODELS_CONTROLNET_IMPL_H
#include "models/controlnet.h"

/* Three (same width, then stride 2) pairs: the control image comes down 8x,
 * to the latent size. */
#define SDW_CONTROLNET_HINT_BLOCKS 6

struct sdw_controlnet {
    sdw_controlnet_info info;      /* info.unet: the encoder half's configuration */
    char path[1024];               /* for messages */
    /* Hint encoder (controlnet_cond_embedding), NHWC at 8x the latent size:
     * conv_in 3 -> hint_c[0]; block 2i: hint_c[i] -> hint_c[i] (3x3),
     * block 2i+1: hint_c[i] -> hint_c[i+1] (3x3 stride 2); conv_out
     * hint_c[3] -> block_out[0]; SiLU after all but conv_out. Real files:
     * 16, 32, 96, 256. */
    int hint_c[4];
    sdw_conv2d *hint_in, *hint[SDW_CONTROLNET_HINT_BLOCKS], *hint_out;
    sdw_unet *unet;                /* encoder_only: time (+ add) embedding, conv_in, down, mid */
    sdw_linear *zero[SDW_CONTROLNET_MAX_RES];   /* skip i: C_i -> C_i (1x1 convolutions) */
    sdw_linear *zero_mid;                       /* top -> top */
    bool heads_known;              /* from a config, not the family convention */
    bool global_pool;              /* residuals averaged over space (diffusers' global_pool_conditions) */
};
#endif
