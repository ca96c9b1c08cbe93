/* linear_dp.c: the feed-forward's GEGLU projection in bf16 on AVX-512-BF16
 * dot products, for CPUs that have them without AMX (AMD Zen 4 and 5).
 *
 * oneDNN's inner product writes the projection's 2 x inner columns in bf16
 * and a second pass reads them back for v * gelu(g); here each register
 * tile holds 32 value columns and their 32 gates and writes the 32 outputs
 * from its sums (1.04-1.36x the pair at SD1.5's and SDXL's shapes on a
 * 2-core Zen 5; the other products stay on oneDNN, within 0.86-1.06x of it
 * on this same kernel). It reads the inner product's stored weights in the
 * layout oneDNN picks there (AB8b64a2b: for 64 outputs x 16 inputs, 8 rows
 * of input pairs x 64 outputs), in which the pairs of 16 outputs for one
 * input pair are one vector: what vdpbf16ps multiplies with a row's pair
 * broadcast, 128 bf16 further for the next pair. A tile
 * (linear_dp_tile.h) is 6 rows x 4 vectors; it runs the inputs in blocks of 128
 * whose weights (16 KiB) serve 48 rows from L1, their partial sums kept
 * beside them. Work items are (chunk of rows, 32 outputs), chunk-major, in
 * equal runs a thread: a chunk's A stays in L2 while the weights pass. */
#include "backend/linear_dp.h"
#include "backend/linear_dp_tile.h"
#include "backend/amx.h"
#include <omp.h>

#define WB 64                           /* outputs of a block of the stored layout, and of a tile */
#define A_CHUNK_BYTES ((size_t)1 << 20) /* rows of A kept in L2 while the weights pass */
#define SUB 48                          /* rows whose partial sums stay in L1 ... */
#define KB 128                          /* ... while a block of this many inputs' weights (16 KiB) serves them */

bool sdw_linear_dp_fits(const dnnl_memory_desc_t *wmd, int in, int out)
{
    if (in % 16 || out % WB || !sdw_cpu_has_native_bf16() || sdw_amx_usable()) return false;
    dnnl_memory_desc_t want;
    dnnl_dims_t dims = { out, in };
    if (dnnl_memory_desc_init_by_tag(&want, 2, dims, dnnl_bf16, dnnl_AB8b64a2b) != dnnl_success) return false;
    return dnnl_memory_desc_equal(&want, wmd);
}

bool sdw_linear_dp_suits(int64_t M) { return M >= 16; }

/* Input pair 0 of the 16 outputs from column c: later pairs are 128 bf16 apart. */
static inline const uint16_t *weights_at(const sdw_linear_bf16_args *a, int c)
{
    return a->w + (size_t)(c / WB) * (size_t)(a->K / 16) * (16 * WB) + (size_t)(c % WB) * 2;
}

/* Rows r0..r1 of output group g: values 32 g.., gates N / 2 + 32 g... */
BF16_FN static void group(const sdw_linear_bf16_args *a, int64_t r0, int64_t r1, int g)
{
    const uint16_t *w[4];
    const float *bias[4];
    for (int v = 0; v < 4; v++) {
        const int col = 32 * g + 16 * (v % 2) + (v / 2) * (a->N / 2);
        w[v] = weights_at(a, col);
        bias[v] = a->bias ? a->bias + col : NULL;
    }
    const size_t ld = (size_t)a->N / 2;
    uint16_t *base = a->y_bf + (size_t)32 * g;
    float part[SUB * WB] __attribute__((aligned(64)));
    for (int64_t s0 = r0; s0 < r1; s0 += SUB) {
        const int64_t s1 = s0 + SUB < r1 ? s0 + SUB : r1;
        for (int k0 = 0; k0 < a->K; k0 += KB) {
            const int p0 = k0 / 2, p1 = (k0 + KB < a->K ? k0 + KB : a->K) / 2;
            const bool first = k0 == 0, last = k0 + KB >= a->K;
            sdw_dp_rows(a->a + (size_t)s0 * a->K, (size_t)SDW_DP_ROWS * a->K, (size_t)a->K, 2, w, bias, part, s0, s1,
                        p0, p1, first, last, base, ld, SDW_DP_GEGLU);
        }
    }
}

BF16_FN static void worker(const sdw_linear_bf16_args *a, int64_t chunk, int n_groups, int64_t items)
{
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t i0 = items * t / nt, i1 = items * (t + 1) / nt;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t r0 = i / n_groups * chunk, r1 = r0 + chunk < a->M ? r0 + chunk : a->M;
        group(a, r0, r1, (int)(i % n_groups));
    }
}

sdw_status sdw_linear_dp(const sdw_linear_bf16_args *a)
{
    if (!sdw_linear_dp_suits(a->M) || a->K % 16 || a->N % WB || !a->geglu || !a->y_bf)
        return sdw_fail(SDW_ERR_INVALID_ARG, "linear_dp: GEGLU of %lld x %d -> %d", (long long)a->M, a->K, a->N);
    const int n_groups = a->N / 64, nt = omp_get_max_threads();
    /* Chunks of rows that stay in L2, of equal size (the threads take equal
     * runs of items), more of them where that leaves fewer than four items
     * a thread. */
    int64_t most = (int64_t)(A_CHUNK_BYTES / ((size_t)a->K * 2));
    if (most < SDW_DP_ROWS) most = SDW_DP_ROWS;
    int64_t n_chunks = (a->M + most - 1) / most;
    const int64_t want = ((int64_t)4 * nt + n_groups - 1) / n_groups;
    if (n_chunks < want) n_chunks = want;
    const int64_t chunk = ((a->M + n_chunks - 1) / n_chunks + SDW_DP_ROWS - 1) / SDW_DP_ROWS * SDW_DP_ROWS;
    const int64_t items = (a->M + chunk - 1) / chunk * n_groups;
#pragma omp parallel
    worker(a, chunk, n_groups, items);
    return SDW_OK;
}
