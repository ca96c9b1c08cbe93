/* linear_amx.c: bf16 linear layers on AMX tiles.
 *
 * oneDNN's inner product spends a fifth of its time at the UNet's shapes
 * outside the tile multiplies: converting the f32 sums to bf16 (or adding
 * them to the residual) after each block, while the tile unit waits. Here
 * a block's sums go to a small buffer and are written out by the vector
 * units during the next block's multiplies. The weights are read in the
 * inner product's stored layout (AB16b64a2b: for 64 outputs x 32 inputs,
 * 16 rows of input pairs x 64 outputs), so the layer keeps one copy and
 * oneDNN still runs the shapes this does not take. Blocks are 32 rows x 32
 * outputs (four f32 tiles; a partial last block of rows is read from a
 * zero-padded copy); the threads split the outputs, and the rows
 * are walked in chunks whose A stays in L2 while each thread's weights
 * pass once per chunk (rows outer when a block's A fits L1). Measured
 * against the inner product in one process, interleaved: 1.0-1.6x at the
 * UNet's shapes (the least at depth 320). */
#include "backend/linear_amx.h"
#include "backend/amx.h"
#include "backend/linear_bf16.h"
#include <immintrin.h>
#include <omp.h>

#define ROWS 32                            /* rows of a block: two row tiles */
#define WB 64                              /* outputs per block of the stored layout */
#define W_BLOCK_ELEMS (32 * WB)            /* bf16 of one 32-input x 64-output block */
#define A_CHUNK_BYTES ((size_t)1 << 20)    /* the rows of A kept in L2 while the weights pass */
#define A_L1_BYTES ((size_t)40 << 10)      /* a block of rows small enough to stay in L1 */

bool sdw_linear_amx_fits(const dnnl_memory_desc_t *wmd, int in, int out)
{
    if (in % 32 || out % WB || !sdw_amx_usable()) return false;
    dnnl_memory_desc_t want;
    dnnl_dims_t dims = { out, in };
    if (dnnl_memory_desc_init_by_tag(&want, 2, dims, dnnl_bf16, dnnl_AB16b64a2b) != dnnl_success) return false;
    return dnnl_memory_desc_equal(&want, wmd);
}

bool sdw_linear_amx_suits(int64_t M) { return M >= ROWS; }

/* What the threads share: the arguments, and a partial last block of rows
 * padded with zeros (tail, from row full on). */
typedef struct {
    const sdw_linear_bf16_args *a;
    const uint16_t *tail;
    int64_t full;
} job;

typedef enum { OUT_STORE, OUT_BF16, OUT_ADD, OUT_GEGLU } out_kind;

/* A block's f32 sums waiting in tmp for the vector units. */
typedef struct {
    const float *tmp;
    void *dst;
    size_t ld;
    int row;  /* the next row to write out */
    int rows; /* the block's real rows: none is left when row reaches them */
    const float *bias[2]; /* of the block's two column tiles, or NULL */
} pending;

AMX_FN static inline void write_rows(pending *p, int upto, out_kind kind)
{
    if (upto > p->rows) upto = p->rows;
    for (; p->row < upto; p->row++) {
        const float *t = p->tmp + p->row * 32;
        __m512 x0 = _mm512_load_ps(t), x1 = _mm512_load_ps(t + 16);
        if (p->bias[0]) {
            x0 = _mm512_add_ps(x0, _mm512_loadu_ps(p->bias[0]));
            x1 = _mm512_add_ps(x1, _mm512_loadu_ps(p->bias[1]));
        }
        if (kind == OUT_GEGLU) {
            _mm256_storeu_si256((__m256i *)((uint16_t *)p->dst + p->row * p->ld),
                                (__m256i)_mm512_cvtneps_pbh(sdw_geglu16(x0, x1)));
        } else if (kind == OUT_BF16) {
            _mm512_storeu_si512((uint16_t *)p->dst + p->row * p->ld, (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
        } else if (kind == OUT_STORE) { /* a partial block: its tiles cannot go straight to y */
            float *d = (float *)p->dst + p->row * p->ld;
            _mm512_storeu_ps(d, x0);
            _mm512_storeu_ps(d + 16, x1);
        } else {
            float *d = (float *)p->dst + p->row * p->ld;
            _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), x0));
            _mm512_storeu_ps(d + 16, _mm512_add_ps(_mm512_loadu_ps(d + 16), x1));
        }
    }
}

/* The first of the 16 outputs from column n of one depth block of the
 * stored weights: a B tile, rows of WB * 4 bytes. */
static inline const uint16_t *weights_at(const sdw_linear_bf16_args *a, int n)
{
    return a->w + (size_t)(n / WB) * (a->K / 32) * W_BLOCK_ELEMS + (n % WB) * 2;
}

/* The two column tiles of block j: outputs 32 j and 32 j + 16, or for
 * GEGLU the value 16 j and its gate 16 j + N / 2. */
static inline void block_columns(const sdw_linear_bf16_args *a, int j, out_kind kind, int col[2])
{
    col[0] = kind == OUT_GEGLU ? 16 * j : 32 * j;
    col[1] = kind == OUT_GEGLU ? 16 * j + a->N / 2 : 32 * j + 16;
}

/* Rows r0.. of block j: the sums into y directly (direct: OUT_STORE of a
 * whole block, from the bias) or into tmp (from zero: the bias is added as
 * they are written out, by the vector units, cheaper than four more tile
 * loads), while prev is written out. */
AMX_FN static void block(const job *jb, int64_t r0, int j, float *tmp, pending *prev, out_kind kind, bool direct)
{
    const sdw_linear_bf16_args *a = jb->a;
    const int nkb = a->K / 32;
    const size_t lda = (size_t)a->K * 2;
    int col[2];
    block_columns(a, j, kind, col);
    const uint16_t *ar = r0 < jb->full ? a->a + r0 * a->K : jb->tail;
    const uint16_t *b0 = weights_at(a, col[0]), *b1 = weights_at(a, col[1]);
    SDW_AMX_SUMS_FROM(a->bias && direct ? a->bias + col[0] : NULL);
    for (int k = 0; k < nkb; k++) {
        _tile_loadd(4, ar + k * 32, lda);
        _tile_loadd(5, ar + 16 * (size_t)a->K + k * 32, lda);
        _tile_loadd(6, b0 + (size_t)k * W_BLOCK_ELEMS, WB * 4);
        _tile_loadd(7, b1 + (size_t)k * W_BLOCK_ELEMS, WB * 4);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
        write_rows(prev, ROWS * (k + 1) / nkb, kind);
    }
    float *c = tmp;
    size_t ldc = 32 * 4;
    if (direct) {
        c = a->y + r0 * a->N + col[0];
        ldc = (size_t)a->N * 4;
    }
    _tile_stored(0, c, ldc);
    _tile_stored(1, c + 16, ldc);
    _tile_stored(2, (char *)c + 16 * ldc, ldc);
    _tile_stored(3, (char *)c + 16 * ldc + 64, ldc);
}

AMX_FN static void worker(const job *jb, out_kind kind)
{
    const sdw_linear_bf16_args *a = jb->a;
    /* One buffer: a block's k-loop writes out all of prev before it stores
     * its own sums. */
    float tmp[ROWS * 32] __attribute__((aligned(64)));
    const int pairs = a->N / 32, t = omp_get_thread_num(), nt = omp_get_num_threads(); /* blocks of columns */
    const int j0 = (int)((int64_t)pairs * t / nt), j1 = (int)((int64_t)pairs * (t + 1) / nt);
    if (j0 == j1) return;
    /* A block of rows that fits L1 is best reused across all the outputs
     * (rows outer); a deeper one is kept in L2 by chunks of rows. */
    int64_t chunk = (int64_t)(A_CHUNK_BYTES / ((size_t)a->K * 2)) / ROWS * ROWS;
    if (chunk < ROWS || (size_t)ROWS * a->K * 2 <= A_L1_BYTES) chunk = ROWS;
    void *dst = kind == OUT_STORE || kind == OUT_ADD ? (void *)a->y : (void *)a->y_bf;
    const size_t esz = kind == OUT_STORE || kind == OUT_ADD ? 4 : 2, ld = kind == OUT_GEGLU ? a->N / 2 : a->N;
    pending prev = { .row = ROWS, .rows = ROWS };
    sdw_amx_configure_tiles();
    for (int64_t c0 = 0; c0 < a->M; c0 += chunk) {
        const int64_t c1 = c0 + chunk < a->M ? c0 + chunk : a->M;
        for (int j = j0; j < j1; j++) {
            for (int64_t r0 = c0; r0 < c1; r0 += ROWS) {
                const bool direct = kind == OUT_STORE && r0 < jb->full;
                block(jb, r0, j, tmp, &prev, kind, direct);
                if (direct) continue;
                int col[2];
                block_columns(a, j, kind, col);
                const int rows = a->M - r0 < ROWS ? (int)(a->M - r0) : ROWS;
                prev = (pending){ tmp, (char *)dst + ((size_t)r0 * ld + (size_t)col[0]) * esz, ld, 0, rows,
                                  { a->bias ? a->bias + col[0] : NULL, a->bias ? a->bias + col[1] : NULL } };
            }
        }
    }
    write_rows(&prev, ROWS, kind);
    sdw_amx_release_tiles();
}

sdw_status sdw_linear_amx(sdw_backend *be, const sdw_linear_bf16_args *a)
{
    if (!sdw_linear_amx_suits(a->M) || a->K % 32 || a->N % WB)
        return sdw_fail(SDW_ERR_INVALID_ARG, "linear_amx: shape %lld x %d -> %d", (long long)a->M, a->K, a->N);
    job jb = { a, NULL, a->M / ROWS * ROWS };
    if (jb.full < a->M) {
        const size_t row = (size_t)a->K, have = (size_t)(a->M - jb.full);
        uint16_t *tail = sdw_scratch(be, SDW_SCR_LINEAR_TAIL, sizeof(uint16_t) * ROWS * row);
        if (!tail) return SDW_ERR_NOMEM;
        memcpy(tail, a->a + (size_t)jb.full * row, sizeof(uint16_t) * have * row);
        memset(tail + have * row, 0, sizeof(uint16_t) * (ROWS - have) * row);
        jb.tail = tail;
    }
    const out_kind kind = a->geglu ? OUT_GEGLU : a->y_bf ? OUT_BF16 : a->accumulate ? OUT_ADD : OUT_STORE;
#pragma omp parallel
    worker(&jb, kind);
    return SDW_OK;
}
