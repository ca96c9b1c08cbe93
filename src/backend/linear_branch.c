/* linear_branch.c: low-rank branches beside a linear layer's weights (see
 * linear_branch.h and backend.h's sdw_linear_add_branch).
 *
 * A LoRA merged into compact weights is mostly rounded away (a 1% change
 * keeps 2% of itself in Q4_0, 27% in float8 E4M3); kept beside them it is
 * exact, at the cost of two thin matmuls a call:
 *   T [M, R]     = x @ D^T       every branch's D stacked, so x is read once
 *   y[:, rows]  += T[:, its r] @ U^T    per branch (dense: T's columns added)
 * both in f32 on dnnl_sgemm. At a LoRA's usual rank (R = 16..128 against
 * in = 3072) that is 1-4% of the layer's FLOPs. */
#include "backend/linear_branch.h"
#include <stdlib.h>

/* Rows of x a pass takes, at most: its f32 copy (bf16 activations) and T
 * stay in this many bytes, so a long sequence does not grow the scratch. */
#define BR_CHUNK_BYTES ((size_t)16 << 20)
#define BR_MIN_CHUNK 64

typedef struct {
    int row0, rows, r;
    int off;        /* its first row in the stacked D */
    float *U;       /* [rows, r], or NULL: dense, its rows of D are the change */
} branch;

struct sdw_lbranches {
    int in, out;
    int n, R;       /* branches; rows of D stacked */
    branch *b;
    float *D;       /* [R, in] */
};

void sdw_lbranches_free(sdw_lbranches *s)
{
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->b[i].U);
    free(s->b);
    free(s->D);
    free(s);
}

static sdw_status bad_branch(const sdw_linear *l, int row0, int rows, int r, const char *why)
{
    return sdw_fail(SDW_ERR_INVALID_ARG, "linear %d -> %d: a branch on rows %d + %d of rank %d: %s",
                    sdw_linear_in(l), sdw_linear_out(l), row0, rows, r, why);
}

/* Room for one more branch of r rows of D. */
static sdw_status grow(sdw_lbranches *s, int r)
{
    float *D = realloc(s->D, sizeof(float) * (size_t)(s->R + r) * (size_t)s->in);
    if (!D) return sdw_fail(SDW_ERR_NOMEM, "linear: out of memory for a branch");
    s->D = D;
    branch *b = realloc(s->b, sizeof *b * (size_t)(s->n + 1));
    if (!b) return sdw_fail(SDW_ERR_NOMEM, "linear: out of memory for a branch");
    s->b = b;
    return SDW_OK;
}

sdw_status sdw_linear_add_branch(sdw_linear *l, int row0, int rows, int r, const float *D, const float *U)
{
    const int in = sdw_linear_in(l), out = sdw_linear_out(l);
    if (rows <= 0 || row0 < 0 || row0 > out - rows) return bad_branch(l, row0, rows, r, "rows out of range");
    if (r <= 0 || !D || (!U && r != rows)) return bad_branch(l, row0, rows, r, "no factors, or a dense one of "
                                                              "another rank than its rows");
    sdw_lbranches **slot = sdw_linear_branch_slot(l);
    if (!*slot) {
        if (!(*slot = calloc(1, sizeof **slot))) return sdw_fail(SDW_ERR_NOMEM, "linear: out of memory");
        **slot = (sdw_lbranches){ .in = in, .out = out };
    }
    sdw_lbranches *s = *slot;
    if (r > INT32_MAX / 2 - s->R) return bad_branch(l, row0, rows, r, "too many rows in all");
    SDW_TRY(grow(s, r));
    float *u = NULL;
    if (U) {
        if (!(u = malloc(sizeof(float) * (size_t)rows * (size_t)r)))
            return sdw_fail(SDW_ERR_NOMEM, "linear: out of memory for a branch");
        memcpy(u, U, sizeof(float) * (size_t)rows * (size_t)r);
    }
    memcpy(s->D + (size_t)s->R * (size_t)in, D, sizeof(float) * (size_t)r * (size_t)in);
    s->b[s->n++] = (branch){ row0, rows, r, s->R, u };
    s->R += r;
    return SDW_OK;
}

void sdw_linear_clear_branches(sdw_linear *l)
{
    sdw_lbranches **slot = sdw_linear_branch_slot(l);
    sdw_lbranches_free(*slot);
    *slot = NULL;
}

size_t sdw_linear_branch_bytes(const sdw_linear *l)
{
    const sdw_lbranches *s = sdw_linear_branch_set(l);
    if (!s) return 0;
    size_t n = (size_t)s->R * (size_t)s->in;
    for (int i = 0; i < s->n; i++)
        if (s->b[i].U) n += (size_t)s->b[i].rows * (size_t)s->b[i].r;
    return n * sizeof(float);
}

/* n rows of bf16 (rows of in) as f32. */
static void expand_bf16(float *dst, const uint16_t *src, int64_t n, int in)
{
#pragma omp parallel for schedule(static) if (n * in > 65536)
    for (int64_t m = 0; m < n; m++) {
        uint32_t *d = (uint32_t *)(dst + m * in);
        const uint16_t *x = src + m * in;
        for (int k = 0; k < in; k++) d[k] = (uint32_t)x[k] << 16;
    }
}

/* y[n, cols] (row stride ldy) += t[n, cols] (row stride ldt). */
static void add_cols(float *y, int64_t ldy, const float *t, int64_t ldt, int64_t n, int cols)
{
#pragma omp parallel for schedule(static) if (n * cols > 65536)
    for (int64_t m = 0; m < n; m++)
        for (int c = 0; c < cols; c++) y[m * ldy + c] += t[m * ldt + c];
}

static sdw_status sgemm_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                           int64_t ldb, float beta, float *c, int64_t ldc)
{
    dnnl_status_t st = dnnl_sgemm('N', 'T', m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    return st == dnnl_success ? SDW_OK : sdw_dnnl_fail(st, "linear branch sgemm");
}

/* Rows [m0, m0 + n) of x through every branch into y. */
static sdw_status run_chunk(const sdw_lbranches *s, const float *X, int64_t n, float *T, float *y, int64_t ldy)
{
    SDW_TRY(sgemm_nt(n, s->R, s->in, X, s->in, s->D, s->in, 0.0f, T, s->R));
    for (int i = 0; i < s->n; i++) {
        const branch *b = &s->b[i];
        if (b->U) SDW_TRY(sgemm_nt(n, b->rows, b->r, T + b->off, s->R, b->U, b->r, 1.0f, y + b->row0, ldy));
        else add_cols(y + b->row0, ldy, T + b->off, s->R, n, b->rows);
    }
    return SDW_OK;
}

sdw_status sdw_lbranches_forward(sdw_backend *be, const sdw_lbranches *s, const void *x, bool x_bf16, int64_t M,
                                 float *y, int64_t ldy)
{
    if (!s || !s->n || M <= 0) return SDW_OK;
    const double t0 = sdw_be_now();
    const size_t per_row = sizeof(float) * ((x_bf16 ? (size_t)s->in : 0) + (size_t)s->R);
    int64_t mc = (int64_t)(BR_CHUNK_BYTES / per_row);
    if (mc < BR_MIN_CHUNK) mc = BR_MIN_CHUNK;
    if (mc > M) mc = M;
    float *buf = sdw_scratch(be, SDW_SCR_BRANCH, per_row * (size_t)mc);
    if (!buf) return SDW_ERR_NOMEM;
    float *T = buf + (x_bf16 ? (size_t)mc * s->in : 0);
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
        const int64_t n = M - m0 < mc ? M - m0 : mc;
        const float *X = (const float *)x + m0 * s->in;
        if (x_bf16) {
            expand_bf16(buf, (const uint16_t *)x + m0 * s->in, n, s->in);
            X = buf;
        }
        SDW_TRY(run_chunk(s, X, n, T, y + m0 * ldy, ldy));
    }
    double flops = 2.0 * (double)M * s->in * s->R;
    for (int i = 0; i < s->n; i++)
        if (s->b[i].U) flops += 2.0 * (double)M * s->b[i].r * s->b[i].rows;
    const int dims[SDW_OP_DIMS] = { (int)M, s->in, s->R };
    sdw_count_op(be, SDW_OPK_LINEAR, t0, flops, "lora_branch", dims);
    return SDW_OK;
}
