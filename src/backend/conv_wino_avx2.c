/* conv_wino_avx2.c: f32 3x3 convolutions (stride 1, pad 1) as Winograd's
 * F(4x4, 3x3), on AVX2 + FMA, where oneDNN has no Winograd kernel.
 *
 * Each 4x4 block of outputs (a tile) comes from a 6x6 block of inputs:
 *   V = B^T d B          per tile and input channel (36 values)
 *   M[xi] = V[xi] U[xi]  36 matrix products, tiles x cin times cin x cout
 *   y = A^T M A          per tile and output channel, + bias
 * with U = G g G^T the weights transformed once (4x their size). The
 * products do 36 multiply-adds where the direct convolution does 144 (per
 * tile, channel pair), on a 6 x 16 register tile of 12 FMA sums, the
 * kernel's main cost at 128+ channels: the transforms are add/FMA chains
 * over 8 channels at a time, about 6% of the operations at 128 channels
 * (7% of the time in perf).
 *
 * Each thread takes blocks of up to 96 tiles through all three steps, so a
 * block's transformed inputs (V, one xi of them at a time) stay in L2 while
 * every cout panel of U[xi] passes over them, and U streams from memory once
 * per block: enough reuse that even the 512-channel layers (37 MB of U) are
 * not bound by memory. The transforms lose a few bits (2-3e-6 relative L2
 * per layer; oneDNN's Winograd 1.7-2.1e-6). */
#include "backend/conv_wino_avx2.h"
#include "backend/gemm_avx2.h"
#include <dnnl.h>
#include <omp.h>

#define MR SDW_GEMM_MR /* tiles (rows) of a register tile */
#define NR SDW_GEMM_NR /* output channels (columns) of a register tile */
#define MAX_TB 96     /* tiles a block takes at most */
#define XI 36         /* 6 x 6 transformed values per tile */

bool sdw_wino_avx2_usable(void)
{
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    return (isa & (unsigned)dnnl_cpu_isa_avx2) == (unsigned)dnnl_cpu_isa_avx2 && __builtin_cpu_supports("avx2") &&
           __builtin_cpu_supports("fma");
}

size_t sdw_wino_avx2_weight_floats(int cin, int cout) { return (size_t)XI * cin * cout; }

/* ------------------------------------------------------------ weights */

/* U[xi][cout / NR][cin][NR] = (G g G^T)[xi] for every (cout, cin), in
 * double: panels of NR output channels, one row per input channel, as the
 * register tile reads them. */
void sdw_wino_avx2_weights(const float *w, int cin, int cout, float *u)
{
    static const double G[6][3] = {
        { 1.0 / 4, 0, 0 },
        { -1.0 / 6, -1.0 / 6, -1.0 / 6 },
        { -1.0 / 6, 1.0 / 6, -1.0 / 6 },
        { 1.0 / 24, 1.0 / 12, 1.0 / 6 },
        { 1.0 / 24, -1.0 / 12, 1.0 / 6 },
        { 0, 0, 1 },
    };
    const int panels = cout / NR;
#pragma omp parallel for schedule(static)
    for (int o = 0; o < cout; o++) {
        for (int i = 0; i < cin; i++) {
            const float *g = w + ((size_t)o * cin + i) * 9;
            double gt[6][3]; /* G g */
            for (int r = 0; r < 6; r++)
                for (int c = 0; c < 3; c++) gt[r][c] = G[r][0] * g[c] + G[r][1] * g[3 + c] + G[r][2] * g[6 + c];
            for (int r = 0; r < 6; r++)
                for (int c = 0; c < 6; c++) {
                    const double v = gt[r][0] * G[c][0] + gt[r][1] * G[c][1] + gt[r][2] * G[c][2];
                    const size_t xi = (size_t)r * 6 + c;
                    u[((xi * panels + o / NR) * cin + i) * NR + o % NR] = (float)v;
                }
        }
    }
}

/* ------------------------------------------------------------ transforms */

/* The rows (or columns) of B^T d, in place. */
AVX2_FN static inline void bt6(__m256 d[6])
{
    const __m256 two = _mm256_set1_ps(2), four = _mm256_set1_ps(4), five = _mm256_set1_ps(5);
    const __m256 s12 = _mm256_add_ps(d[1], d[2]), s34 = _mm256_add_ps(d[3], d[4]);
    const __m256 d12 = _mm256_sub_ps(d[1], d[2]), d43 = _mm256_sub_ps(d[4], d[3]);
    const __m256 d42 = _mm256_sub_ps(d[4], d[2]), d31 = _mm256_sub_ps(d[3], d[1]);
    const __m256 o0 = _mm256_fmadd_ps(four, d[0], _mm256_fnmadd_ps(five, d[2], d[4]));
    const __m256 o5 = _mm256_fmadd_ps(four, d[1], _mm256_fnmadd_ps(five, d[3], d[5]));
    d[0] = o0;
    d[1] = _mm256_fnmadd_ps(four, s12, s34);
    d[2] = _mm256_fmadd_ps(four, d12, d43);
    d[3] = _mm256_fmadd_ps(two, d31, d42);
    d[4] = _mm256_fnmadd_ps(two, d31, d42);
    d[5] = o5;
}

/* The 4 rows (or columns) of A^T m from 6. */
AVX2_FN static inline void at6(const __m256 m[6], __m256 y[4])
{
    const __m256 a = _mm256_add_ps(m[1], m[2]), b = _mm256_sub_ps(m[1], m[2]);
    const __m256 c = _mm256_add_ps(m[3], m[4]), d = _mm256_sub_ps(m[3], m[4]);
    y[0] = _mm256_add_ps(_mm256_add_ps(m[0], a), c);
    y[1] = _mm256_fmadd_ps(_mm256_set1_ps(2), d, b);
    y[2] = _mm256_fmadd_ps(_mm256_set1_ps(4), c, a);
    y[3] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8), d, b), m[5]);
}

typedef struct {
    const float *x, *u, *bias;
    float *y;
    int N, H, W, cin, cout, th, tw; /* th x tw tiles an image */
    int64_t tiles;
    int tb;                 /* tiles a block, a multiple of MR */
    size_t v_stride, m_stride; /* floats from one xi of V (M) to the next */
    bool accumulate;
} job;

/* Tile t's first row and column of inputs (one above and left of its
 * outputs: the padding) and its image. */
static void tile_origin(const job *j, int64_t t, int *n, int *y0, int *x0)
{
    const int64_t per = (int64_t)j->th * j->tw;
    *n = (int)(t / per);
    const int rem = (int)(t % per);
    *y0 = rem / j->tw * 4 - 1;
    *x0 = rem % j->tw * 4 - 1;
}

/* V[xi][slot][0..cin) of tile t; inputs outside the image are the zero
 * padding. */
AVX2_FN static void input_tile(const job *j, int64_t t, int slot, float *V)
{
    int n, y0, x0;
    tile_origin(j, t, &n, &y0, &x0);
    const float *at[6][6];
    for (int r = 0; r < 6; r++)
        for (int c = 0; c < 6; c++) {
            const int yy = y0 + r, xx = x0 + c;
            at[r][c] = yy >= 0 && yy < j->H && xx >= 0 && xx < j->W
                           ? j->x + (((size_t)n * j->H + yy) * j->W + xx) * j->cin
                           : NULL;
        }
    const size_t xi_stride = j->v_stride;
    float *v0 = V + (size_t)slot * j->cin;
    for (int ch = 0; ch < j->cin; ch += 8) {
        __m256 d[6][6], col[6];
        for (int r = 0; r < 6; r++)
            for (int c = 0; c < 6; c++) d[r][c] = at[r][c] ? _mm256_loadu_ps(at[r][c] + ch) : _mm256_setzero_ps();
        for (int c = 0; c < 6; c++) { /* B^T d, column by column */
            for (int r = 0; r < 6; r++) col[r] = d[r][c];
            bt6(col);
            for (int r = 0; r < 6; r++) d[r][c] = col[r];
        }
        for (int r = 0; r < 6; r++) { /* (B^T d) B, row by row */
            bt6(d[r]);
            for (int c = 0; c < 6; c++) _mm256_storeu_ps(v0 + (size_t)(r * 6 + c) * xi_stride + ch, d[r][c]);
        }
    }
}

/* y's 4x4 outputs of tile t from M[xi][slot][0..cout), + bias. */
AVX2_FN static void output_tile(const job *j, int64_t t, int slot, const float *M)
{
    int n, y0, x0;
    tile_origin(j, t, &n, &y0, &x0);
    y0++, x0++;
    const int rows = j->H - y0 < 4 ? j->H - y0 : 4, cols = j->W - x0 < 4 ? j->W - x0 : 4;
    const size_t xi_stride = j->m_stride;
    const float *m0 = M + (size_t)slot * j->cout;
    for (int ch = 0; ch < j->cout; ch += 8) {
        __m256 m[6][6], s[4][6], col[6], out[4];
        for (int xi = 0; xi < XI; xi++) m[xi / 6][xi % 6] = _mm256_loadu_ps(m0 + (size_t)xi * xi_stride + ch);
        for (int c = 0; c < 6; c++) { /* A^T M, column by column */
            for (int r = 0; r < 6; r++) col[r] = m[r][c];
            at6(col, out);
            for (int r = 0; r < 4; r++) s[r][c] = out[r];
        }
        const __m256 b = j->bias ? _mm256_loadu_ps(j->bias + ch) : _mm256_setzero_ps();
        for (int r = 0; r < rows; r++) {
            at6(s[r], out); /* (A^T M) A, row r */
            float *yr = j->y + (((size_t)n * j->H + y0 + r) * j->W + x0) * j->cout + ch;
            for (int c = 0; c < cols; c++) {
                __m256 v = _mm256_add_ps(out[c], b);
                if (j->accumulate) v = _mm256_add_ps(v, _mm256_loadu_ps(yr + (size_t)c * j->cout));
                _mm256_storeu_ps(yr + (size_t)c * j->cout, v);
            }
        }
    }
}

/* ------------------------------------------------------------ products */

/* c[MR, NR] = a[MR, K] (rows lda apart) b[K, NR] (a packed panel), K > 0. */
AVX2_FN static inline void gemm_tile(const float *a, int lda, const float *b, int K, float *c, int ldc)
{
    const sdw_gemm_tile t = sdw_gemm_6x16(a, (size_t)lda, b, NR, K);
    for (int r = 0; r < MR; r++) {
        __m256 lo, hi;
        sdw_gemm_row(&t, r, &lo, &hi);
        _mm256_storeu_ps(c + (size_t)r * ldc, lo);
        _mm256_storeu_ps(c + (size_t)r * ldc + 8, hi);
    }
}

/* One block: tiles t0 .. t0 + n through the three steps, on this thread's
 * V [XI][tb][cin] and M [XI][tb][cout]. */
AVX2_FN static void run_block(const job *j, int64_t t0, int n, float *V, float *M)
{
    const int rows = (n + MR - 1) / MR * MR, panels = j->cout / NR;
    for (int s = 0; s < n; s++) input_tile(j, t0 + s, s, V);
    for (int xi = 0; xi < XI && rows > n; xi++) /* the register tiles' rows past the block's end */
        memset(V + (size_t)xi * j->v_stride + (size_t)n * j->cin, 0, sizeof(float) * (size_t)(rows - n) * j->cin);
    for (int xi = 0; xi < XI; xi++) {
        const float *a = V + (size_t)xi * j->v_stride;
        float *c = M + (size_t)xi * j->m_stride;
        for (int p = 0; p < panels; p++) {
            const float *b = j->u + ((size_t)xi * panels + p) * j->cin * NR;
            for (int r = 0; r < rows; r += MR)
                gemm_tile(a + (size_t)r * j->cin, j->cin, b, j->cin, c + (size_t)r * j->cout + p * NR, j->cout);
        }
    }
    for (int s = 0; s < n; s++) output_tile(j, t0 + s, s, M);
}

static int64_t tiles_of(int N, int H, int W) { return (int64_t)N * ((H + 3) / 4) * ((W + 3) / 4); }

/* A thread's share under two register tiles' rows leaves U (streamed once
 * per block) barely used: such images take fewer threads, and those of
 * under 12 tiles the direct convolution. */
#define MIN_TILES_A_THREAD (2 * MR)

bool sdw_wino_avx2_suits_size(int N, int H, int W) { return tiles_of(N, H, W) >= MIN_TILES_A_THREAD; }

sdw_status sdw_wino_avx2_forward(sdw_backend *be, const float *u, const float *bias, int N, int H, int W, int cin,
                                 int cout, const float *x, float *y, bool accumulate)
{
    if (cin % 8 || cout % NR)
        return sdw_fail(SDW_ERR_INVALID_ARG, "winograd conv: channels %d -> %d not multiples of 8 -> 16", cin, cout);
    job j = { .x = x, .u = u, .bias = bias, .y = y, .N = N, .H = H, .W = W, .cin = cin, .cout = cout,
              .th = (H + 3) / 4, .tw = (W + 3) / 4, .tiles = tiles_of(N, H, W), .accumulate = accumulate };
    int threads = omp_get_max_threads();
    if (j.tiles / MIN_TILES_A_THREAD < threads)
        threads = j.tiles < MIN_TILES_A_THREAD ? 1 : (int)(j.tiles / MIN_TILES_A_THREAD);
    /* About 256 KiB of V (or M) per xi: a block's rows stay in L2 while
     * every panel of U passes; fewer when that leaves a thread idle. */
    const int widest = cin > cout ? cin : cout;
    int tb = 65536 / widest / MR * MR;
    tb = tb < MR ? MR : tb > MAX_TB ? MAX_TB : tb;
    const int64_t fair = (j.tiles + threads - 1) / threads;
    if (fair < tb) tb = (int)((fair + MR - 1) / MR * MR);
    j.tb = tb;
    /* One cache line more than the xi's rows: the 36 values of a tile are
     * written (read) together, and at a power-of-two stride they would all
     * fall in one set of L1. */
    j.v_stride = (size_t)tb * cin + 16;
    j.m_stride = (size_t)tb * cout + 16;
    const size_t v_floats = XI * j.v_stride, m_floats = XI * j.m_stride;
    const size_t per_thread = (v_floats + m_floats + 15) & ~(size_t)15; /* 64-byte aligned */
    float *scratch = sdw_scratch(be, SDW_SCR_SRC, sizeof(float) * per_thread * (size_t)threads);
    if (!scratch) return SDW_ERR_NOMEM;
    const int64_t blocks = (j.tiles + tb - 1) / tb;
#pragma omp parallel num_threads(threads)
    {
        float *V = scratch + per_thread * (size_t)omp_get_thread_num(), *M = V + v_floats;
#pragma omp for schedule(dynamic)
        for (int64_t b = 0; b < blocks; b++) {
            const int64_t t0 = b * tb;
            run_block(&j, t0, (int)(j.tiles - t0 < tb ? j.tiles - t0 : tb), V, M);
        }
    }
    return SDW_OK;
}
