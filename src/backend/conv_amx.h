/* conv_amx.h: small-image convolutions on AMX tiles (conv_amx.c). */
#ifndef SDW_BACKEND_CONV_AMX_H
#define SDW_BACKEND_CONV_AMX_H
#include "backend/cpu_internal.h"

/* Where the AMX path runs: up to this many output pixels (batch included),
 * and only where the depth (kh x kw x cin) is at least this many times the
 * pixels, i.e. where the weights dwarf the activations. Measured against
 * brgconv in one process on SD1's shapes (CFG batch 2): 8x8 with 1280 or
 * 2560 channels and the stride-2 16 -> 8 conv 1.5-2.2x faster, 16x16 with
 * 1920 or 2560 in 1.25-1.5x, 1280 -> 1280 at 16x16 (ratio 22) even, and
 * 640 -> 1280 at 16x16 (ratio 11) 0.8x. */
#define SDW_CONV_AMX_MAX_PIXELS 1024
#define SDW_CONV_AMX_MIN_DEPTH_PER_PIXEL 24

typedef struct {
    int N, H, W, Ho, Wo, cin, cout, kh, kw, stride, pad_t, pad_l;
} sdw_conv_amx_shape;

/* Whether weights stored as wmd (oneDNN's [cout, cin, kh, kw]) can be read
 * as the matmul's B: AcdB16b32a2b or AcdB16b64a2b without padding (its
 * output-block width goes to *wblock), and AMX usable. */
bool sdw_conv_amx_fits(const dnnl_memory_desc_t *wmd, int cin, int cout, int kh, int kw, int *wblock);
/* Whether a call with this many output pixels and this depth should take
 * the AMX path. */
bool sdw_conv_amx_suits(int64_t pixels, int64_t depth);
/* y [N, Ho, Wo, cout] = conv(x) + bias, or y += that when accumulate; x is
 * NHWC f32, or bf16 when x_bf16. */
sdw_status sdw_conv_amx(sdw_backend *be, const sdw_conv_amx_shape *s, const void *x, bool x_bf16,
                        const uint16_t *w, int wblock, const float *bias, float *y, bool accumulate);
#endif
