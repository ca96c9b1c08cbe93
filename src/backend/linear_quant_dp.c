/* linear_quant_dp.c: a compact-weight layer (GGUF blocks, float8) in bf16
 * on AVX-512-BF16 dot products, for CPUs that have them without AMX.
 *
 * linear_quant.c's panels decode 256 x 256 weights at a time and hand each
 * to a oneDNN matmul, which packs the panel and the slice of x again on
 * every call and reads and writes the f32 result tile once per 256 inputs
 * (at FLUX's shapes 85-90% of the dense layer's speed on a 2-core Zen 5).
 * Here a thread decodes a panel of 64 outputs' weights straight into the
 * layout the register tile reads (linear_dp_tile.h: for an input pair, 16
 * outputs' pairs a vector) and runs a chunk of x's rows through it, the
 * sums in registers and L1, x packed once a call into the tiles' order
 * (pack_x). A panel is decoded once per chunk (chunks are whole up to 2048
 * rows). Where x's chunk is too large to stay in the last-level cache
 * while every panel passes (FLUX's 15360 inputs: 39 MB at 1280 rows,
 * streamed again for each of 48 panels), K is cut into slices of 4 MB of x
 * that serve 8 panels in turn, their sums kept between slices. Measured
 * on a 2-core Zen 5, FLUX.1 in Q8_0: its matmuls 0.9-1.1x the dense
 * layer's speed (1.06-1.15x the panels' in a harness), a warm evaluation
 * 31.6 -> 29.3 s.
 *
 * x of at most SDW_QL_FEW_ROWS rows against Q8_0 weights (the modulation
 * vectors) takes few_rows_q8_0: dot products straight from the decoded
 * register.
 *
 * Decoding: a Q8_0 block (32 int8 and their f16 scale) becomes 16 pairs in
 * one vector (scaled in f32, rounded to bf16 as the dequantized rows are
 * elsewhere); 16 rows' vectors transposed put each pair's 16 outputs in
 * one vector, stored where the tile reads it. Other formats decode 16 rows
 * to f32 first (sdw_qtype_dequantize_row), then the same. */
#include "backend/linear_dp_tile.h" /* first: with SDW_EMULATE_AVX512 it renames the kernel */
#include "backend/linear_quant.h"
#include "backend/amx.h"
#include "core/half.h"
#include <omp.h>

#define G 64           /* outputs of a panel: the tile's four vectors */
#define SUB 48         /* rows whose partial sums stay in L1 ... */
#define KB 128         /* ... while a block of this many inputs' weights (16 KiB) serves them */
#define MIN_CHUNK 64   /* rows of x a chunk keeps at least (its panels are decoded per chunk) */
#ifndef QDP_SMALL      /* (test_linear_emulated makes these small, to cut its small layers up) */
#define MAX_ROWS 2048  /* rows of a chunk at most */
#define GROUP 8        /* panels a slice of x serves before the next slice */
#define MIN_SLICE 1024 /* inputs of a slice at least: their sums' trips to part cost 4 bytes / MIN_SLICE a FLOP */
#define X_SLICE_BYTES ((size_t)4 << 20) /* a slice of a chunk of x that stays in the last-level cache */
#else
#define MAX_ROWS 64
#define GROUP 2
#define MIN_SLICE 256
#define X_SLICE_BYTES ((size_t)64 << 10)
#endif

bool sdw_qlinear_dp_suits(const sdw_backend *be, const sdw_qlinear_args *a)
{
    const bool shape = a->M <= SDW_QL_FEW_ROWS ? a->qt == SDW_QT_Q8_0 : a->K % 32 == 0 && a->N % G == 0;
    return shape && be->precision == SDW_PRECISION_BF16 && sdw_cpu_has_native_bf16() && !sdw_amx_usable();
}

/* A Q8_0 block's 32 weights as 16 bf16 pairs. */
BF16_FN static inline __m512i q8_0_pairs(const uint8_t *b)
{
    const __m512 d = _mm512_set1_ps(sdw_f16_to_f32((uint16_t)(b[0] | b[1] << 8)));
    const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 2))));
    const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 18))));
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_mul_ps(d, hi), _mm512_mul_ps(d, lo));
}

/* Output n of y = x W^T + b for x of at most SDW_QL_FEW_ROWS rows (FLUX's
 * and SD3's modulation vectors) and W in Q8_0: each block decoded into a
 * register and multiplied there with the rows' 32 values, two sums a row
 * (even and odd blocks) to hide the dot product's latency. The weights
 * pass once, 1.06 bytes a weight, so this runs at the speed they are read. */
BF16_FN static void few_rows_q8_0(const sdw_qlinear_args *a, int n)
{
    const int K = a->K, N = a->N, nb = K / 32, M = (int)a->M;
    const uint16_t *x = a->x;
    const uint8_t *w = a->w + (size_t)n * a->row_bytes;
    __m512 acc[SDW_QL_FEW_ROWS][2];
    for (int m = 0; m < M; m++) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m512bh w0 = (__m512bh)q8_0_pairs(w + (size_t)b * 34), w1 = (__m512bh)q8_0_pairs(w + (size_t)b * 34 + 34);
        for (int m = 0; m < M; m++) {
            const uint16_t *xr = x + (size_t)m * K + (size_t)b * 32;
            acc[m][0] = _mm512_dpbf16_ps(acc[m][0], (__m512bh)_mm512_loadu_si512(xr), w0);
            acc[m][1] = _mm512_dpbf16_ps(acc[m][1], (__m512bh)_mm512_loadu_si512(xr + 32), w1);
        }
    }
    if (b < nb) {
        const __m512bh w0 = (__m512bh)q8_0_pairs(w + (size_t)b * 34);
        for (int m = 0; m < M; m++)
            acc[m][0] = _mm512_dpbf16_ps(acc[m][0], (__m512bh)_mm512_loadu_si512(x + (size_t)m * K + (size_t)b * 32), w0);
    }
    for (int m = 0; m < M; m++) {
        const float v = _mm512_reduce_add_ps(_mm512_add_ps(acc[m][0], acc[m][1])) + (a->bias ? a->bias[n] : 0.0f);
        const size_t at = (size_t)m * N + (size_t)n;
        if (a->y_bf16) ((uint16_t *)a->y)[at] = sdw_f32_to_bf16(v);
        else ((float *)a->y)[at] = a->accumulate ? ((float *)a->y)[at] + v : v;
    }
}

/* Columns k0 .. k0 + kn of rows n0 .. n0 + 63 of W into panel: pair p of
 * output o at dword p * 64 + o. tmp: 16 rows of kn floats (formats other
 * than Q8_0). */
BF16_FN static void decode_panel(const sdw_qlinear_args *a, int n0, int k0, int kn, uint32_t *panel, float *tmp)
{
    size_t blk_bytes;
    const int blk = sdw_qtype_block(a->qt, &blk_bytes);
    for (int r0 = 0; r0 < G; r0 += 16) {
        const uint8_t *row = a->w + (size_t)(n0 + r0) * a->row_bytes + (size_t)(k0 / blk) * blk_bytes;
        if (a->qt != SDW_QT_Q8_0)
            for (int r = 0; r < 16; r++) sdw_qtype_dequantize_row(a->qt, row + (size_t)r * a->row_bytes, tmp + (size_t)r * kn, kn);
        for (int k = 0; k < kn; k += 32) {
            __m512i v[16];
            for (int r = 0; r < 16; r++) {
                if (a->qt == SDW_QT_Q8_0) {
                    v[r] = q8_0_pairs(row + (size_t)r * a->row_bytes + (size_t)(k / 32) * 34);
                } else {
                    const float *t = tmp + (size_t)r * kn + k;
                    v[r] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(t + 16), _mm512_loadu_ps(t));
                }
            }
            sdw_transpose16_epi32(v);
            for (int j = 0; j < 16; j++) _mm512_storeu_si512(panel + (size_t)(k / 2 + j) * G + r0, v[j]);
        }
    }
}

/* x packed for the tiles, once a call: tile t (rows 6 t ..) holds for
 * each input pair its rows' pairs side by side (a last tile's missing rows
 * zero), so that a tile reads one stream rather than six rows K pairs
 * apart: those made a FLUX evaluation 15% longer in the worker's process,
 * whose activations sit on 4 KiB pages, though not in a harness on huge
 * pages. Tiles of this thread's share. */
static void pack_x(const sdw_qlinear_args *a, uint32_t *xp)
{
    const int np = a->K / 2;
    const int64_t tiles = (a->M + SDW_DP_ROWS - 1) / SDW_DP_ROWS;
    const uint32_t *x = (const uint32_t *)a->x; /* pairs of bf16 */
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; t++) {
        uint32_t *dst = xp + (size_t)t * np * SDW_DP_ROWS;
        for (int i = 0; i < SDW_DP_ROWS; i++) {
            const int64_t r = SDW_DP_ROWS * t + i;
            if (r < a->M)
                for (int p = 0; p < np; p++) dst[(size_t)p * SDW_DP_ROWS + i] = x[(size_t)r * np + p];
            else
                for (int p = 0; p < np; p++) dst[(size_t)p * SDW_DP_ROWS + i] = 0;
        }
    }
}

/* Rows m0 .. m1 of y, outputs n0 .. n0 + 63, over inputs k0 .. k0 + kn
 * from the panel decoded from them and x packed (pack_x; m0 a multiple of
 * 6); the sums kept in part (64 a row from m0) until the last inputs. */
BF16_FN static inline __attribute__((always_inline)) void
run_rows(const sdw_qlinear_args *a, const uint16_t *panel, const uint16_t *xp, int n0, int64_t m0, int64_t m1,
         int k0, int kn, float *part, const sdw_dp_out out)
{
    const uint16_t *w[4];
    const float *bias[4];
    for (int v = 0; v < 4; v++) {
        w[v] = panel + 32 * v;
        bias[v] = a->bias ? a->bias + n0 + 16 * v : NULL;
    }
    const size_t N = (size_t)a->N, esz = out == SDW_DP_BF16 ? 2 : 4, ts = (size_t)a->K * SDW_DP_ROWS;
    xp += (size_t)k0 * SDW_DP_ROWS; /* pair k0 / 2 of each tile */
    for (int64_t s0 = m0; s0 < m1; s0 += SUB) {
        const int64_t s1 = s0 + SUB < m1 ? s0 + SUB : m1;
        for (int kb = 0; kb < kn; kb += KB) {
            const int p0 = kb / 2, p1 = (kb + KB < kn ? kb + KB : kn) / 2;
            const bool first = k0 + kb == 0, last = k0 + kb + KB >= a->K;
            sdw_dp_rows(xp + (size_t)s0 / SDW_DP_ROWS * ts, ts, 2, 2 * SDW_DP_ROWS, w, bias,
                        part + (s0 - m0) * G, s0, s1, p0, p1, first, last, (char *)a->y + (size_t)n0 * esz, N, out);
        }
    }
}

BF16_FN static void run_item(const sdw_qlinear_args *a, const uint16_t *panel, const uint16_t *xp, int n0,
                             int64_t m0, int64_t m1, int k0, int kn, float *part)
{
    if (a->y_bf16) run_rows(a, panel, xp, n0, m0, m1, k0, kn, part, SDW_DP_BF16);
    else if (a->accumulate) run_rows(a, panel, xp, n0, m0, m1, k0, kn, part, SDW_DP_ADD);
    else run_rows(a, panel, xp, n0, m0, m1, k0, kn, part, SDW_DP_STORE);
}

sdw_status sdw_qlinear_dp(sdw_backend *be, const sdw_qlinear_args *a)
{
    if (a->M < 1 || (a->M <= SDW_QL_FEW_ROWS ? a->qt != SDW_QT_Q8_0 : a->K % 32 || a->N % G))
        return sdw_fail(SDW_ERR_INVALID_ARG, "quantized linear on dot products: %lld x %d -> %d (%s)",
                        (long long)a->M, a->K, a->N, sdw_qtype_name(a->qt));
    if (a->M <= SDW_QL_FEW_ROWS) {
        /* (the parallel loop outside the target-attributed function: clang
         * outlines its body without the attribute) */
#pragma omp parallel for schedule(static) if ((int64_t)a->N * a->K > 65536)
        for (int n = 0; n < a->N; n++) few_rows_q8_0(a, n);
        return SDW_OK;
    }
    const int nt = omp_get_max_threads(), n_p = a->N / G;
    /* Items are (chunk of rows, panel), chunk-major, in equal runs a
     * thread. Chunks of at most MAX_ROWS, more where there are too few
     * panels to keep every thread busy. */
    int64_t n_m = (a->M + MAX_ROWS - 1) / MAX_ROWS;
    while (n_p * n_m < 2 * nt && a->M / (n_m + 1) >= MIN_CHUNK) n_m++;
    const int64_t chunk = ((a->M + n_m - 1) / n_m + SDW_DP_ROWS - 1) / SDW_DP_ROWS * SDW_DP_ROWS;
    n_m = (a->M + chunk - 1) / chunk;
    const int64_t items = n_p * n_m;
    /* A slice of kc inputs of a chunk stays in the last-level cache while
     * GROUP panels pass; their sums wait in part between slices. */
    int kc = (int)(X_SLICE_BYTES / ((size_t)chunk * 2)) / 256 * 256;
    if (kc < MIN_SLICE) kc = MIN_SLICE;
    if (kc >= a->K) kc = a->K;
    const bool sliced = kc < a->K;
    const size_t panel_bytes = (size_t)kc * G * 2, tmp_bytes = a->qt == SDW_QT_Q8_0 ? 0 : (size_t)kc * 16 * 4;
    const size_t part_bytes = (size_t)chunk * G * 4 * (sliced ? GROUP : 1);
    const size_t per_thread = panel_bytes + tmp_bytes + part_bytes;
    const size_t xp_bytes = (size_t)(a->M + SDW_DP_ROWS - 1) / SDW_DP_ROWS * SDW_DP_ROWS * (size_t)a->K * 2;
    char *buf = sdw_scratch(be, SDW_SCR_QUANT, xp_bytes + per_thread * (size_t)nt);
    if (!buf) return SDW_ERR_NOMEM;
    uint32_t *xp = (uint32_t *)buf;
#pragma omp parallel num_threads(nt) if (items > 1)
    {
        const int t = omp_get_thread_num(), nth = omp_get_num_threads();
        uint32_t *panel = (uint32_t *)(buf + xp_bytes + per_thread * (size_t)t);
        float *tmp = (float *)((char *)panel + panel_bytes), *part = (float *)((char *)tmp + tmp_bytes);
        pack_x(a, xp); /* (ends in the barrier of its loop) */
        const int64_t i1 = items * (t + 1) / nth;
        for (int64_t g0 = items * t / nth, g1; g0 < i1; g0 = g1) {
            /* a group: up to GROUP items of one chunk */
            const int64_t c = g0 / n_p, m0 = c * chunk, m1 = m0 + chunk < a->M ? m0 + chunk : a->M;
            g1 = g0 + GROUP < i1 ? g0 + GROUP : i1;
            if (g1 > (c + 1) * n_p) g1 = (c + 1) * n_p;
            for (int k0 = 0; k0 < a->K; k0 += kc) {
                const int kn = a->K - k0 < kc ? a->K - k0 : kc;
                for (int64_t i = g0; i < g1; i++) {
                    const int n0 = (int)(i % n_p) * G;
                    decode_panel(a, n0, k0, kn, panel, tmp);
                    run_item(a, (const uint16_t *)panel, (const uint16_t *)xp, n0, m0, m1, k0, kn,
                             part + (size_t)(sliced ? i - g0 : 0) * (size_t)chunk * G);
                }
            }
        }
    }
    return SDW_OK;
}
