/* conv_amx.c: small-image convolutions as im2col + a matmul on AMX tiles.
 *
 * At the UNet's 16x16 and 8x8 levels (1280-2560 channels, 128-512 output
 * pixels with the CFG batch) oneDNN's brgconv runs at a third of the speed
 * it reaches at 64x64: 30-60 MB of weights a call against few pixels (at
 * that speed it must be reading them more than once). Here the input is
 * unrolled once into A [pixels, taps x cin] (bf16; the f32 -> bf16
 * conversion rides along), and the weights are read in the layout sdw_conv2d already stores
 * for oneDNN (AcdB16b{32,64}a2b: blocks of 32 input channels of one tap x
 * 32 or 64 output channels, VNNI pairs), which is exactly the B of that
 * matmul. The depth is walked in chunks whose slice of A stays in L2; the
 * threads split the output channels, so each streams its weights once. */
#include "backend/conv_amx.h"
#include "backend/amx.h"
#include <immintrin.h>
#include <omp.h>

#define A_CHUNK_BYTES ((size_t)1 << 20) /* the slice of A each depth chunk keeps in L2 */

bool sdw_conv_amx_fits(const dnnl_memory_desc_t *wmd, int cin, int cout, int kh, int kw, int *wblock)
{
    *wblock = 0;
    if (cin % 32 || cout % 32 || !sdw_amx_usable()) return false;
    static const dnnl_format_tag_t tags[2] = { dnnl_AcdB16b32a2b, dnnl_AcdB16b64a2b };
    for (int i = 0; i < 2; i++) {
        const int nb = i ? 64 : 32;
        if (cout % nb) continue;
        dnnl_memory_desc_t want;
        dnnl_dims_t dims = { cout, cin, kh, kw };
        if (dnnl_memory_desc_init_by_tag(&want, 4, dims, dnnl_bf16, tags[i]) != dnnl_success) continue;
        if (dnnl_memory_desc_equal(&want, wmd)) {
            *wblock = nb;
            return true;
        }
    }
    return false;
}

bool sdw_backend_set_own_conv(sdw_backend *be, bool on)
{
    be->no_own_conv = !on;
    return on && be->precision == SDW_PRECISION_BF16 && sdw_amx_usable();
}

bool sdw_conv_amx_suits(int64_t pixels, int64_t depth)
{
    return pixels % 32 == 0 && pixels <= SDW_CONV_AMX_MAX_PIXELS && depth >= SDW_CONV_AMX_MIN_DEPTH_PER_PIXEL * pixels;
}

/* A row of the unrolled input: for every tap, cin values of the input pixel
 * under it (zero where the tap falls in the padding). */
AMX_FN static void unroll_row(uint16_t *dst, const sdw_conv_amx_shape *s, const void *x, bool x_bf16, int64_t p)
{
    const int64_t per_img = (int64_t)s->Ho * s->Wo;
    const int n = (int)(p / per_img), oy = (int)(p % per_img / s->Wo), ox = (int)(p % s->Wo);
    for (int ky = 0; ky < s->kh; ky++) {
        for (int kx = 0; kx < s->kw; kx++, dst += s->cin) {
            const int iy = oy * s->stride - s->pad_t + ky, ix = ox * s->stride - s->pad_l + kx;
            if (iy < 0 || iy >= s->H || ix < 0 || ix >= s->W) {
                memset(dst, 0, sizeof(uint16_t) * (size_t)s->cin);
                continue;
            }
            const size_t at = (((size_t)n * s->H + iy) * s->W + ix) * s->cin;
            if (x_bf16) memcpy(dst, (const uint16_t *)x + at, sizeof(uint16_t) * (size_t)s->cin);
            else sdw_cvt_bf16_span(dst, (const float *)x + at, (size_t)s->cin);
        }
    }
}

/* c[32, 32] (+)= a[32, kn] b over kn / 32 steps of depth. a: bf16 rows of
 * lda; b: the weights block column of these 32 outputs from depth block kb0
 * (wblock wide, 32 x wblock elements a block); c: f32 rows of ldc. init: 0
 * = load c, 1 = zero, 2 = the bias in every row. */
AMX_FN static void tile_block(const uint16_t *a, size_t lda, int kn, const uint16_t *b, int wblock, float *c,
                              size_t ldc, int init, const float *bias)
{
    const size_t lda_b = lda * 2, ldc_b = ldc * 4, ldb_b = (size_t)wblock * 4;
    float *c1 = c + 16 * ldc;
    if (init == 0) {
        _tile_loadd(0, c, ldc_b);
        _tile_loadd(1, c + 16, ldc_b);
        _tile_loadd(2, c1, ldc_b);
        _tile_loadd(3, c1 + 16, ldc_b);
    } else {
        SDW_AMX_SUMS_FROM(init == 2 ? bias : NULL);
    }
    const size_t bstep = (size_t)32 * wblock;
    for (int k = 0; k < kn / 32; k++) {
        _tile_loadd(4, a + k * 32, lda_b);
        _tile_loadd(5, a + 16 * lda + k * 32, lda_b);
        _tile_loadd(6, b + k * bstep, ldb_b);
        _tile_loadd(7, b + k * bstep + 32, ldb_b);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, ldc_b);
    _tile_stored(1, c + 16, ldc_b);
    _tile_stored(2, c1, ldc_b);
    _tile_stored(3, c1 + 16, ldc_b);
}

AMX_FN static void add_bias_rows(float *c, size_t ldc, const float *bias)
{
    const __m512 b0 = _mm512_loadu_ps(bias), b1 = _mm512_loadu_ps(bias + 16);
    for (int r = 0; r < 32; r++) {
        float *row = c + r * ldc;
        _mm512_storeu_ps(row, _mm512_add_ps(_mm512_loadu_ps(row), b0));
        _mm512_storeu_ps(row + 16, _mm512_add_ps(_mm512_loadu_ps(row + 16), b1));
    }
}

AMX_FN sdw_status sdw_conv_amx(sdw_backend *be, const sdw_conv_amx_shape *s, const void *x, bool x_bf16,
                               const uint16_t *w, int wblock, const float *bias, float *y, bool accumulate)
{
    const int64_t M = (int64_t)s->N * s->Ho * s->Wo;
    const int K = s->kh * s->kw * s->cin, N = s->cout;
    uint16_t *a = sdw_scratch(be, SDW_SCR_SRC, sizeof(uint16_t) * (size_t)M * K);
    if (!a) return SDW_ERR_NOMEM;
    int kc = (int)(A_CHUNK_BYTES / ((size_t)M * 2) / 32 * 32);
    if (kc < 32) kc = 32;
    const int nkb = K / 32, pairs = N / 32;
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int64_t p = 0; p < M; p++) unroll_row(a + p * K, s, x, x_bf16, p);
        sdw_amx_configure_tiles();
        for (int k0 = 0; k0 < K; k0 += kc) {
            const int kn = K - k0 < kc ? K - k0 : kc;
            const bool first = k0 == 0, last = k0 + kn == K;
            const int init = !first || accumulate ? 0 : bias ? 2 : 1;
            /* The same static split every chunk: a thread owns its output
             * columns throughout, so chunks need no barrier between them. */
#pragma omp for schedule(static) nowait
            for (int j = 0; j < pairs; j++) {
                const int n0 = j * 32;
                const uint16_t *b = w + ((size_t)(n0 / wblock) * nkb + k0 / 32) * 32 * wblock + (n0 % wblock) * 2;
                for (int64_t r0 = 0; r0 < M; r0 += 32) {
                    float *c = y + r0 * N + n0;
                    tile_block(a + r0 * K + k0, (size_t)K, kn, b, wblock, c, (size_t)N, init, bias ? bias + n0 : NULL);
                    if (last && accumulate && bias) add_bias_rows(c, (size_t)N, bias + n0);
                }
            }
        }
        sdw_amx_release_tiles();
    }
    return SDW_OK;
}
