/* conv_wino_avx2.h: our own f32 Winograd convolution F(4x4, 3x3), for CPUs
 * where oneDNN has none (AVX2 without AVX-512); conv_wino.c picks it. */
#ifndef SDW_BACKEND_CONV_WINO_AVX2_H
#define SDW_BACKEND_CONV_WINO_AVX2_H
#include "backend/cpu_internal.h"

/* Whether this CPU runs it (AVX2 and FMA, and oneDNN allowed AVX2). */
bool sdw_wino_avx2_usable(void);

/* Floats of the transformed weights of a cin -> cout layer (cout a multiple
 * of 16): 36 per weight pair, 4x the 3x3 ones. */
size_t sdw_wino_avx2_weight_floats(int cin, int cout);

/* u = the transformed weights of w [cout, cin, 3, 3] (plain, f32), in the
 * kernel's packed layout. */
void sdw_wino_avx2_weights(const float *w, int cin, int cout, float *u);

/* Whether an N x H x W image is worth it: 12 or more 4x4 tiles. */
bool sdw_wino_avx2_suits_size(int N, int H, int W);

/* y [N, H, W, cout] = conv3x3(x, pad 1) + bias, or y += that when
 * accumulate; x, y NHWC f32; u from sdw_wino_avx2_weights. */
sdw_status sdw_wino_avx2_forward(sdw_backend *be, const float *u, const float *bias, int N, int H, int W, int cin,
                                 int cout, const float *x, float *y, bool accumulate);
#endif
