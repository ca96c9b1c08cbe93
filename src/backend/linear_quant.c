/* linear_quant.c: y = x W^T + b for a linear layer whose weights stay in a
 * compact format (GGUF blocks, float8, bf16; linear_quant_rows.c decodes
 * them), so a FLUX transformer in Q8_0 holds 17/64 of its f32 bytes. The
 * weights are never expanded whole: only a panel at a time, inside the
 * matmul.
 *
 * The output features are cut into panels of P rows of W, the rows of x
 * into chunks; a work item is one (panel, chunk), and each OpenMP thread
 * takes a run of items in panel order. For its item a thread walks K in
 * steps of QL_KC: it decodes that slice of the panel into its own
 * L2-sized buffer (f32 in F32 precision, bf16 in BF16) and multiplies its
 * chunk of x by it on that thread alone (oneDNN runs a call made inside
 * our parallel region single-threaded), adding along K:
 *   panel [P, Kc]   decoded from P rows of blocks (Kc = 256: whole blocks)
 *   y[chunk, panel] (+)= x[chunk, k0 : k0 + Kc] @ panel^T
 *                   dnnl_sgemm in f32 (beta 1 past the first slice); in
 *                   bf16 a oneDNN matmul primitive per shape (sum post-op)
 *   then the bias, and for a bf16 activation the rounding, row by row.
 * Decoding takes 0.3-0.5 ns a weight on this AVX2 host and is redone per
 * chunk, which at M = 1280 is 2% of the multiply (chunks stay whole
 * unless the thread count needs more items). Measured against the dense
 * f32 layer on the dequantized weights (one thread, CPU time, FLUX-like
 * shapes M = 1280..4352, K = 3072 or 12288, N = 3072 or 12288): 86-100%
 * of its GFLOP/s, 92-97% typical.
 *
 * A few rows of x (FLUX's and SD3's modulation vectors: one row against
 * up to 3072 x 18432 weights, 27% of FLUX's) take another path: each
 * thread decodes its share of W's rows one at a time and takes their dot
 * products with the rows of x. Through panels, every 256 x 256 slice of W
 * was one matmul call of 131 kFLOP, its cost mostly the call's.
 *
 * In bf16 on AVX-512-BF16 without AMX (AMD Zen 4 / 5), linear_quant_dp.c
 * takes the rest (N a multiple of 64): its own tiles over weights decoded
 * once into their layout, 0.9-1.1x the dense layer's speed where these
 * panels ran at 0.75-0.9x. */
#include "backend/linear_quant.h"
#include "core/half.h"
#include <omp.h>
#include <stdlib.h>

/* A panel is QL_PANEL_F32 (f32) or QL_PANEL_BF16 rows of W by QL_KC
 * columns: 512 KB in f32, 128 KB in bf16, so it stays in the core's L2
 * while the gemm packs it. Its rows are the gemm's N: on this AVX2 host
 * (M = 1024, K = N = 3072, one thread) sgemm over 64-row panels ran at 66%
 * of a whole-matrix sgemm, over 256 rows at 86%, over 512 at 95%: each
 * call packs its rows of x again, so the wider the panel the less that
 * costs. bf16 takes a oneDNN matmul primitive per shape instead (oneDNN
 * 2.6 exports no bf16 gemm; on AVX-512 / AMX that is its brgemm kernel,
 * untested on this AVX2 host beyond the same code run in f32). */
#define QL_PANEL_F32 512
#define QL_PANEL_BF16 256
#define QL_KC 256
/* A chunk of x keeps this many rows at least (the gemm's tiles stay full)
 * and at most QL_MAX_CHUNK (bounds a thread's f32 result tile in bf16). */
#define QL_MIN_CHUNK 64
#define QL_MAX_CHUNK 1024

/* f32 panels on dnnl_sgemm (true) or on a matmul primitive (false: tests
 * and A/B runs, sdw_qlinear_use_sgemm). */
static bool use_sgemm = true;

typedef struct {
    const sdw_qlinear_args *a;
    bool bf;                 /* BF16 precision: bf16 panels and source */
    int P, n_p, n_m, Kc, blk;
    size_t blk_bytes;
    int64_t Mc;
    size_t sz_panel, sz_tile, sz_row, sz_pad, slice;
    char *buf;               /* one slice per thread */
    sdw_prim *mm[2][2][2][2]; /* [tail chunk][tail panel][tail Kc][sum], matmul path only */
} qjob;

static size_t lines(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

const char *sdw_qlinear_path(const sdw_backend *be, const sdw_qlinear_args *a)
{
#define QL_NAMES(f)                                                                                      \
    { "quant:" f " (panels)", "quant:" f " (row by row)", "quant:" f " (dot products, 6x64 tiles)",       \
      "quant:" f " (row by row, dot products)" }
    static const char *const names[SDW_QT_COUNT][4] = {
        [SDW_QT_Q4_0] = QL_NAMES("q4_0"),       [SDW_QT_Q4_1] = QL_NAMES("q4_1"),
        [SDW_QT_Q5_0] = QL_NAMES("q5_0"),       [SDW_QT_Q5_1] = QL_NAMES("q5_1"),
        [SDW_QT_Q8_0] = QL_NAMES("q8_0"),       [SDW_QT_Q2_K] = QL_NAMES("q2_k"),
        [SDW_QT_Q3_K] = QL_NAMES("q3_k"),       [SDW_QT_Q4_K] = QL_NAMES("q4_k"),
        [SDW_QT_Q5_K] = QL_NAMES("q5_k"),       [SDW_QT_Q6_K] = QL_NAMES("q6_k"),
        [SDW_QT_F8_E4M3] = QL_NAMES("f8_e4m3"), [SDW_QT_F8_E5M2] = QL_NAMES("f8_e5m2"),
        [SDW_QT_BF16] = QL_NAMES("bf16"),
    };
#undef QL_NAMES
    const bool few = a->M <= SDW_QL_FEW_ROWS;
    const int path = sdw_qlinear_dp_suits(be, a) ? (few ? 3 : 2) : few ? 1 : 0;
    return (unsigned)a->qt < SDW_QT_COUNT ? names[a->qt][path] : "quant";
}

SDW_VEC static void add_row(float *restrict y, const float *restrict b, int n)
{
    for (int i = 0; i < n; i++) y[i] += b[i];
}

/* The matmul c[mr, pn] (row stride ldc, f32) = a[mr, kc] (row stride lda)
 * @ panel^T, the panel stored as pn rows of kc (oneDNN's "ba" weights),
 * adding into c when sum. Created single-threaded: it runs inside our
 * parallel region, where oneDNN gives it one thread. */
static sdw_status get_matmul(sdw_backend *be, dnnl_data_type_t dt, int64_t mr, int pn, int kc, int64_t lda,
                             int64_t ldc, bool sum, sdw_prim **out)
{
    /* batch -1 keeps these apart from attention's batched matmuls. */
    int64_t key[SDW_KEY_MAX] = { SDW_OP_MATMUL, dt, -1, mr, pn, kc, lda, ldc };
    key[SDW_KEY_FLAGS] = sum ? SDW_PRIM_SUM : 0;
    *out = sdw_prim_find(be, key, NULL);
    if (*out) return SDW_OK;
    dnnl_memory_desc_t ma, mb, mc;
    dnnl_dims_t da = { mr, kc }, db = { kc, pn }, dc = { mr, pn }, sa = { lda, 1 }, sb = { 1, kc }, sc = { ldc, 1 };
    SDW_DNNL(dnnl_memory_desc_init_by_strides(&ma, 2, da, dt, sa), "quantized linear src");
    SDW_DNNL(dnnl_memory_desc_init_by_strides(&mb, 2, db, dt, sb), "quantized linear panel");
    SDW_DNNL(dnnl_memory_desc_init_by_strides(&mc, 2, dc, dnnl_f32, sc), "quantized linear dst");
    dnnl_matmul_desc_t d;
    SDW_DNNL(dnnl_matmul_desc_init(&d, &ma, &mb, NULL, &mc), "quantized linear matmul");
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    sdw_status st = sdw_prim_create(be, key, NULL, &d, NULL, out);
    omp_set_num_threads(threads);
    return st;
}

/* Columns [k0, k0 + kc) of rows [n0, n0 + pn) of W into the thread's
 * panel, pn rows of kc, f32 or bf16. */
static void decode_panel(const qjob *j, char *slice, int n0, int pn, int k0, int kc)
{
    const sdw_qlinear_args *a = j->a;
    const size_t off = (size_t)(k0 / j->blk) * j->blk_bytes;
    for (int r = 0; r < pn; r++) {
        const uint8_t *src = a->w + (size_t)(n0 + r) * a->row_bytes + off;
        if (!j->bf) {
            sdw_qtype_dequantize_row(a->qt, src, (float *)slice + (size_t)r * kc, kc);
        } else {
            float *tmp = (float *)(slice + j->sz_panel + j->sz_tile);
            sdw_qtype_dequantize_row(a->qt, src, tmp, kc);
            sdw_cvt_bf16_span((uint16_t *)slice + (size_t)r * kc, tmp, (size_t)kc);
        }
    }
}

/* One item: y[m0 + mr, n0 + pn), panel by panel along K. */
static sdw_status run_item(sdw_backend *be, const qjob *j, char *slice, int tid, int64_t m0, int64_t mr, int n0,
                           int pn)
{
    const sdw_qlinear_args *a = j->a;
    const int K = a->K, N = a->N;
    const bool tile = a->y_bf16;   /* f32 results go to the thread's tile, then to bf16 */
    float *c = tile ? (float *)(slice + j->sz_panel) : (float *)a->y + m0 * N + n0;
    const int64_t ldc = tile ? pn : N;
    const size_t esz = j->bf ? sizeof(uint16_t) : sizeof(float);
    for (int k0 = 0; k0 < K; k0 += j->Kc) {
        const int kc = K - k0 < j->Kc ? K - k0 : j->Kc;
        const bool sum = k0 > 0 || (a->accumulate && !tile);
        const void *x = (const char *)a->x + esz * ((size_t)m0 * K + (size_t)k0);
        decode_panel(j, slice, n0, pn, k0, kc);
        if (!j->bf && use_sgemm) {
            dnnl_status_t s = dnnl_sgemm('N', 'T', mr, pn, kc, 1.0f, x, K, (const float *)slice, kc,
                                         sum ? 1.0f : 0.0f, c, ldc);
            if (s != dnnl_success) return sdw_dnnl_fail(s, "quantized linear sgemm");
        } else {
            const sdw_prim *p = j->mm[mr != j->Mc][pn != j->P][kc != j->Kc][sum];
            SDW_TRY(sdw_prim_exec_thread(be, p, tid, slice + j->sz_panel + j->sz_tile + j->sz_row, x, slice, c));
        }
    }
    for (int64_t r = 0; r < mr; r++) {
        float *row = c + r * ldc;
        if (a->bias) add_row(row, a->bias + n0, pn);
        if (tile) sdw_cvt_bf16_span((uint16_t *)a->y + (size_t)(m0 + r) * N + n0, row, (size_t)pn);
    }
    return SDW_OK;
}

/* Chunks of x, then panels: as few and as wide as keep every thread busy
 * with a couple of items. */
static void plan(qjob *j, int nt)
{
    const sdw_qlinear_args *a = j->a;
    const int P = j->bf ? QL_PANEL_BF16 : QL_PANEL_F32;
    j->P = a->N < P ? a->N : P;
    j->n_p = (a->N + j->P - 1) / j->P;
    j->Kc = a->K < QL_KC ? a->K : QL_KC;  /* a multiple of every block: 256 */
    j->blk = sdw_qtype_block(a->qt, &j->blk_bytes);
    int64_t n_m = a->y_bf16 ? (a->M + QL_MAX_CHUNK - 1) / QL_MAX_CHUNK : 1;
    while ((int64_t)j->n_p * n_m < 2 * nt && a->M / (n_m + 1) >= QL_MIN_CHUNK) n_m++;
    j->Mc = (a->M + n_m - 1) / n_m;
    j->n_m = (int)((a->M + j->Mc - 1) / j->Mc);
    /* Still too few items (a short x, e.g. FLUX's modulation vectors):
     * narrower panels, down to 128 rows, or 16 where x has too few rows
     * for its repacking to matter. */
    const int P_min = a->M < QL_MIN_CHUNK ? 16 : 128;
    while ((int64_t)j->n_p * j->n_m < 2 * nt && j->P > P_min) {
        j->P = (j->P / 2 + 15) & ~15;
        j->n_p = (a->N + j->P - 1) / j->P;
    }
}

/* Every primitive the items need, before the threads start. */
static sdw_status make_matmuls(sdw_backend *be, qjob *j)
{
    const sdw_qlinear_args *a = j->a;
    const dnnl_data_type_t dt = j->bf ? dnnl_bf16 : dnnl_f32;
    const int64_t mrs[2] = { j->Mc, a->M - (int64_t)(j->n_m - 1) * j->Mc };
    const int pns[2] = { j->P, a->N - (j->n_p - 1) * j->P }, kcs[2] = { j->Kc, a->K - (a->K - 1) / j->Kc * j->Kc };
    size_t pad = 0;
    for (int i = 0; i < 16; i++) {
        const int tm = i >> 3 & 1, tp = i >> 2 & 1, tk = i >> 1 & 1, sum = i & 1;
        sdw_prim **p = &j->mm[tm][tp][tk][sum];
        /* A tail equal to the full size is never looked up under the tail. */
        if ((tm && mrs[1] == mrs[0]) || (tp && pns[1] == pns[0]) || (tk && kcs[1] == kcs[0])) continue;
        SDW_TRY(get_matmul(be, dt, mrs[tm], pns[tp], kcs[tk], a->K, a->y_bf16 ? pns[tp] : a->N, sum, p));
        if ((*p)->scratch_bytes > pad) pad = (*p)->scratch_bytes;
    }
    j->sz_pad = lines(pad);
    return SDW_OK;
}

/* x rounded to bf16 and back, n at a time, through tmp. */
SDW_VEC static void round_bf16(float *restrict x, uint16_t *restrict tmp, int n)
{
    sdw_cvt_bf16_span(tmp, x, (size_t)n);
    uint32_t *u = (uint32_t *)x;
#pragma omp simd
    for (int i = 0; i < n; i++) u[i] = (uint32_t)tmp[i] << 16;
}

/* 16 partial sums whether or not the compiler vectorizes (the -O0
 * sanitizer build does not): one float summing K = 800 products drifted
 * 1.25e-6 from the double sum, past the f32 gate. */
SDW_VEC static float dot(const float *restrict a, const float *restrict b, int n)
{
    float s[16] = { 0 };
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) s[j] += a[i + j] * b[i + j];
    float t = 0;
    for (; i < n; i++) t += a[i] * b[i];
    for (int j = 0; j < 16; j++) t += s[j];
    return t;
}

/* y = x W^T + b for M <= SDW_QL_FEW_ROWS: W decoded a row at a time (rounded
 * to bf16 in BF16 precision, as the panels are) and dotted with x's rows,
 * widened to f32 once. */
static sdw_status few_rows(sdw_backend *be, const sdw_qlinear_args *a, bool bf)
{
    const int nt = omp_get_max_threads(), K = a->K, N = a->N;
    const int64_t M = a->M;
    const size_t row = lines(sizeof(float) * (size_t)K);
    const size_t mine = row + lines(sizeof(uint16_t) * (size_t)K); /* a row of W, and its bf16 */
    char *buf = sdw_scratch(be, SDW_SCR_QUANT, row * (size_t)M + mine * (size_t)nt);
    if (!buf) return SDW_ERR_NOMEM;
    float *xf = (float *)buf;
    for (int64_t m = 0; m < M; m++)
        for (int k = 0; k < K; k++)
            xf[(size_t)m * row / sizeof(float) + k] =
                bf ? sdw_bf16_to_f32(((const uint16_t *)a->x)[m * K + k]) : ((const float *)a->x)[m * K + k];
#pragma omp parallel num_threads(nt) if ((int64_t)N * K > 65536)
    {
        float *w = (float *)(buf + row * (size_t)M + mine * (size_t)omp_get_thread_num());
        uint16_t *wb = (uint16_t *)((char *)w + row);
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            sdw_qtype_dequantize_row(a->qt, a->w + (size_t)n * a->row_bytes, w, K);
            if (bf) round_bf16(w, wb, K);
            for (int64_t m = 0; m < M; m++) {
                float v = dot(xf + (size_t)m * row / sizeof(float), w, K) + (a->bias ? a->bias[n] : 0.0f);
                if (a->y_bf16) {
                    ((uint16_t *)a->y)[m * N + n] = sdw_f32_to_bf16(v);
                } else {
                    float *y = (float *)a->y + m * N + n;
                    *y = a->accumulate ? *y + v : v;
                }
            }
        }
    }
    return SDW_OK;
}

sdw_status sdw_qlinear_forward(sdw_backend *be, const sdw_qlinear_args *a)
{
    if (sdw_qlinear_dp_suits(be, a)) return sdw_qlinear_dp(be, a);
    if (a->M <= SDW_QL_FEW_ROWS) return few_rows(be, a, be->precision == SDW_PRECISION_BF16);
    const int nt = omp_get_max_threads();
    qjob j = { .a = a, .bf = be->precision == SDW_PRECISION_BF16 };
    plan(&j, nt);
    if (j.bf || !use_sgemm) {
        SDW_TRY(make_matmuls(be, &j));
        SDW_TRY(sdw_backend_thread_streams(be, nt));
    }
    j.sz_panel = lines((j.bf ? sizeof(uint16_t) : sizeof(float)) * (size_t)j.P * j.Kc);
    j.sz_tile = a->y_bf16 ? lines(sizeof(float) * (size_t)j.Mc * j.P) : 0;
    j.sz_row = j.bf ? lines(sizeof(float) * (size_t)j.Kc) : 0;
    j.slice = j.sz_panel + j.sz_tile + j.sz_row + j.sz_pad;
    j.buf = sdw_scratch(be, SDW_SCR_QUANT, j.slice * (size_t)nt);
    if (!j.buf) return SDW_ERR_NOMEM;

    const int64_t items = (int64_t)j.n_p * j.n_m;
    int failed = 0;
#pragma omp parallel num_threads(nt) if (items > 1)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        char *slice = j.buf + j.slice * (size_t)tid;
        for (int64_t it = items * tid / nth; it < items * (tid + 1) / nth; it++) {
            int failed_now;
#pragma omp atomic read
            failed_now = failed;
            if (failed_now) break;
            const int p = (int)(it / j.n_m), n0 = p * j.P, pn = a->N - n0 < j.P ? a->N - n0 : j.P;
            const int64_t m0 = (it % j.n_m) * j.Mc, mr = a->M - m0 < j.Mc ? a->M - m0 : j.Mc;
            if (run_item(be, &j, slice, tid, m0, mr, n0, pn) != SDW_OK) {
#pragma omp atomic write
                failed = 1;
            }
        }
    }
    if (failed)
        return sdw_fail(SDW_ERR_BACKEND, "quantized linear %d -> %d (%s): the matmul failed", a->K, a->N,
                        sdw_qtype_name(a->qt));
    return SDW_OK;
}

void sdw_qlinear_use_sgemm(bool on) { use_sgemm = on; }
