/* linear_avx2.c: f32 linear layers of few rows on AVX2: the text encoders'
 * 77-token prompts, the UNet's cross-attention keys and values of the
 * context, the time embeddings.
 *
 * oneDNN 2.6 has no AVX2 brgemm: its f32 matmul is a gemm that packs both
 * operands on every call. At 77 rows packing the weights costs about as
 * much as multiplying them, and CLIP's layers ran at 55-60% of the f32 peak.
 * Here the weights are read where they lie ([in, out], as the layer stores
 * them for the matmul), a 16-column panel at a time: each thread takes a
 * range of panels and, 256 depths at a time (x's slice stays in L2), runs
 * every 6-row tile of x over each panel (sdw_gemm_6x16), adding to y after
 * the first slice. A last partial tile of rows is copied, zero-padded, once
 * per call.
 *
 * Where a row of w is a multiple of 4 KiB (out a multiple of 1024: CLIP's
 * 768 -> 3072, 1024 -> 4096 and 1280 -> 5120, T5's 4096 -> 10240), the 256
 * rows of a panel's slice all fall in one set of the L1 cache, which keeps
 * 12 of them: every tile of rows read the panel from L2 again, at 0.12
 * TFLOP/s against 0.16 for the other shapes (2-core EPYC Zen 5, under
 * ONEDNN_MAX_CPU_ISA=AVX2). There the slice is first copied into a
 * contiguous buffer of the thread's, which the tiles then share. */
#include "backend/linear_avx2.h"
#include "backend/gemm_avx2.h"
#include <omp.h>

#define MR SDW_GEMM_MR
#define NR SDW_GEMM_NR
/* Where it ran faster than oneDNN's gemm on a 2-core EPYC (Zen 3), best of
 * 20 calls each: from 6 to 160 rows 0.99-1.65x (CLIP-L's 77 rows: 1.17x
 * for 768 -> 2304, 1.65x for 768 -> 3072, where oneDNN fell to 0.08
 * TFLOP/s); up to 256 rows for weights of 2M+ values (T5's 256 tokens:
 * 1.35-1.43x), but 0.95x at 256 x 1280 -> 1280; 0.63-0.88x at 512 rows,
 * 0.89-0.95x under 6. */
#define MIN_ROWS 6
#define FEW_ROWS 160
#define MAX_ROWS 256
#define LARGE_WEIGHTS ((int64_t)2 << 20)
/* Depths a pass takes: the rows' slice of x (77 x 256 floats, 77 KiB) stays
 * in L2 while the thread's panels of w pass over it. */
#define DEPTH_BLOCK 256
/* Rows of w this many bytes apart (a multiple of the L1's way, 4 KiB) share a set. */
#define ALIASED_STRIDE 4096

bool sdw_linear_avx2_suits(const sdw_backend *be, const dnnl_memory_desc_t *wmd, int in, int out, int64_t M)
{
    if (be->precision != SDW_PRECISION_F32 || out % NR || M < MIN_ROWS || M > MAX_ROWS ||
        (M > FEW_ROWS && (int64_t)in * out < LARGE_WEIGHTS))
        return false;
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    if ((isa & (unsigned)dnnl_cpu_isa_avx512_core) == (unsigned)dnnl_cpu_isa_avx512_core ||
        (isa & (unsigned)dnnl_cpu_isa_avx2) != (unsigned)dnnl_cpu_isa_avx2 || !__builtin_cpu_supports("fma"))
        return false;
    dnnl_memory_desc_t plain;
    dnnl_dims_t dims = { in, out }, strides = { out, 1 };
    if (dnnl_memory_desc_init_by_strides(&plain, 2, dims, dnnl_f32, strides) != dnnl_success) return false;
    return dnnl_memory_desc_equal(&plain, wmd);
}

typedef struct {
    const float *x, *tail, *w, *bias;
    float *y;
    int64_t M, full; /* rows, and rows in whole tiles */
    int in, out;
    bool accumulate;
} job;

/* Rows r0 .. r0 + rows (<= MR) of y's panel at column n0, from tile t:
 * the first depth block's sums plus the bias (and y itself when
 * accumulating), the later blocks' added to y. */
AVX2_FN static void store_tile(const job *j, const sdw_gemm_tile *t, int64_t r0, int rows, int n0, bool first)
{
    const bool bias = first && j->bias, add = !first || j->accumulate;
    const __m256 b0 = bias ? _mm256_loadu_ps(j->bias + n0) : _mm256_setzero_ps();
    const __m256 b1 = bias ? _mm256_loadu_ps(j->bias + n0 + 8) : _mm256_setzero_ps();
    for (int r = 0; r < rows; r++) {
        __m256 lo, hi;
        sdw_gemm_row(t, r, &lo, &hi);
        float *y = j->y + (size_t)(r0 + r) * j->out + n0;
        lo = _mm256_add_ps(lo, b0);
        hi = _mm256_add_ps(hi, b1);
        if (add) {
            lo = _mm256_add_ps(lo, _mm256_loadu_ps(y));
            hi = _mm256_add_ps(hi, _mm256_loadu_ps(y + 8));
        }
        _mm256_storeu_ps(y, lo);
        _mm256_storeu_ps(y + 8, hi);
    }
}

/* The panel's kc rows of 16 from w (rows ldw apart) into buf, contiguous. */
AVX2_FN static void copy_panel(const float *w, size_t ldw, int kc, float *buf)
{
    for (int k = 0; k < kc; k++, w += ldw, buf += NR) {
        _mm256_store_ps(buf, _mm256_loadu_ps(w));
        _mm256_store_ps(buf + 8, _mm256_loadu_ps(w + 8));
    }
}

/* Panels p0 .. p1 of y over depths k0 .. k0 + kc; buf, when not NULL,
 * takes a copy of each panel's slice. */
AVX2_FN static void run_panels(const job *j, int p0, int p1, int k0, int kc, float *buf)
{
    for (int p = p0; p < p1; p++) {
        const int n0 = p * NR;
        const float *b = j->w + (size_t)k0 * j->out + n0;
        size_t ldb = (size_t)j->out;
        if (buf) {
            copy_panel(b, ldb, kc, buf);
            b = buf;
            ldb = NR;
        }
        for (int64_t r0 = 0; r0 < j->full; r0 += MR) {
            const sdw_gemm_tile t = sdw_gemm_6x16(j->x + (size_t)r0 * j->in + k0, (size_t)j->in, b, ldb, kc);
            store_tile(j, &t, r0, MR, n0, k0 == 0);
        }
        if (j->tail) {
            const sdw_gemm_tile t = sdw_gemm_6x16(j->tail + k0, (size_t)j->in, b, ldb, kc);
            store_tile(j, &t, j->full, (int)(j->M - j->full), n0, k0 == 0);
        }
    }
}

sdw_status sdw_linear_avx2(sdw_backend *be, const float *x, int64_t M, int in, int out, const float *w,
                           const float *bias, float *y, bool accumulate)
{
    if (in <= 0 || out % NR)
        return sdw_fail(SDW_ERR_INVALID_ARG, "linear: %d -> %d outputs not a multiple of %d", in, out, NR);
    job j = { .x = x, .w = w, .bias = bias, .y = y, .M = M, .full = M / MR * MR, .in = in, .out = out,
              .accumulate = accumulate };
    if (j.full < M) {
        float *tail = sdw_scratch(be, SDW_SCR_SRC, sizeof(float) * MR * (size_t)in);
        if (!tail) return SDW_ERR_NOMEM;
        memset(tail, 0, sizeof(float) * MR * (size_t)in);
        memcpy(tail, x + (size_t)j.full * in, sizeof(float) * (size_t)(M - j.full) * in);
        j.tail = tail;
    }
    const int panels = out / NR;
    const bool aliased = (size_t)out * sizeof(float) % ALIASED_STRIDE == 0;
#pragma omp parallel
    {
        const int nt = omp_get_num_threads(), id = omp_get_thread_num();
        const int p0 = (int)((int64_t)panels * id / nt), p1 = (int)((int64_t)panels * (id + 1) / nt);
        _Alignas(32) float buf[DEPTH_BLOCK * NR];
        for (int k0 = 0; k0 < in; k0 += DEPTH_BLOCK)
            run_panels(&j, p0, p1, k0, in - k0 < DEPTH_BLOCK ? in - k0 : DEPTH_BLOCK, aliased ? buf : NULL);
    }
    return SDW_OK;
}
