/* conv_wino.h: f32 3x3 convolutions on Winograd kernels (conv_wino.c):
 * oneDNN's on AVX-512, ours on AVX2. */
#ifndef SDW_BACKEND_CONV_WINO_H
#define SDW_BACKEND_CONV_WINO_H
#include "backend/cpu_internal.h"

/* Which convolutions take it: the Winograd weights (F(4x4, 3x3): 6x6 tiles)
 * are 4x the size of the 3x3 ones and are held beside them, so only layers
 * whose weights are small next to their work: both sides at least 256
 * channels (at 128 the 512x512 VAE layers gained 1.1x) and cin x cout up
 * to 1280 x 640. In SD1.5 that is the UNet's 64x64 and 32x32 levels and the
 * VAE's 256- and 512-channel layers: 2-2.9x faster than brgconv f32 on
 * AVX-512, layout changes included, for about 1.7 GB more weights. */
#define SDW_WINO_MIN_CHANNELS 256
/* Our AVX2 kernel (conv_wino_avx2.c) gains at 128 channels too: 4.2x on
 * the VAE's 512x512 128->128 layer, its slowest direct one (its weights:
 * 2.4 MB). */
#define SDW_WINO_AVX2_MIN_CHANNELS 128
#define SDW_WINO_MAX_CIN_X_COUT (1280 * 640)
/* A call's working set (the kernel's scratchpad and the re-laid-out input
 * and output) above this runs in bands of rows: SD1.5's UNet layers fit
 * whole (up to about 200 MB at 512x512); the VAE's 256x256 and 512x512
 * layers run in 2-8 bands. */
#define SDW_WINO_BUDGET ((size_t)256 << 20)

/* The transformed weights of one layer: made from its stored weights at
 * first use, and made again when a shape's kernel wants another blocking. */
typedef struct {
    dnnl_memory_desc_t md;
    void *w;
    size_t bytes;
    size_t *held;   /* the backend's count of such bytes (sdw_backend_derived_bytes) */
} sdw_conv_wino_weights;

/* Whether a layer of this shape takes the Winograd path when its kernel
 * exists for the call's size (f32 precision, not switched off). */
bool sdw_conv_wino_suits(const sdw_backend *be, int cin, int cout, int kh, int kw, int stride, int pad_t, int pad_l,
                         int pad_b, int pad_r);

/* y [N, H, W, cout] = conv(x) + bias, or y += that when accumulate; x and y
 * NHWC f32, weights (wmd, w) as the layer stores them. Sets *ran false and
 * returns SDW_OK when this size has no Winograd kernel here (no AVX-512, or
 * oneDNN declines it): the caller then runs the direct convolution. */
sdw_status sdw_conv_wino(sdw_backend *be, sdw_conv_wino_weights *ww, const dnnl_memory_desc_t *wmd, const void *w,
                         const float *bias, int N, int H, int W, int cin, int cout, const float *x, float *y,
                         bool accumulate, bool *ran);
/* The kernel sdw_conv_wino runs on this CPU, as the bench names it. */
const char *sdw_conv_wino_kernel(void);
/* Frees the transformed weights (the stored ones changed, or the layer goes). */
void sdw_conv_wino_drop(sdw_conv_wino_weights *ww);
#endif
