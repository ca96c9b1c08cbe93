/* attention_bias.c: f32 multi-head attention with an additive score bias,
 *   out = softmax(scale * q k^T + bias[h]) v
 * for T5's relative position bias (and any model whose scores carry a
 * per-head [Tq, Tk] term). sdw_attention has no such input, and T5 rows are
 * short enough (512 keys) that a whole row of scores fits a thread's cache,
 * so this runs the plain two-pass softmax rather than an online one.
 *
 * Per batch item, K is packed once per head transposed and V per head
 * dense, both zero-padded to whole tiles:
 *   kt [heads, D, Tkp]   (Tkp = Tk rounded up to TILE_W)
 *   vp [heads, Tk, Dp]   (Dp = D rounded up to TILE_W)
 * Then each OpenMP thread takes blocks of QUERIES queries x one head and
 * runs them start to finish in its own buffers:
 *   S = Qb K^T            register tiles of TILE_R queries x TILE_W keys
 *   P = exp(scale S + bias - max)   a row at a time (sdw_attn_softmax_row)
 *   O = P V / rowsum(P)   register tiles of TILE_R queries x TILE_W dims, summed
 *                         over chunks of keys
 * The tiles are plain C loops of fixed size, depth loop outside, that gcc
 * vectorises into registers in each SDW_VEC clone (12 accumulators on AVX2). */
#include "backend/cpu_internal.h"
#include <math.h>
#include <omp.h>

#define QUERIES 48 /* queries per block: 48 x 512 scores = 96 KiB, in L2 */
#define TILE_R 6   /* queries per register tile: 12 AVX2 accumulators of 16 */
#define TILE_W 16  /* keys (or head dims) per register tile: two AVX2 vectors */
/* P V sums run over chunks of this many keys, then add up: f32 rounding
 * grows with the length of a sum. Over the tiny T5's 256 keys one chain
 * put the encoder 1.2e-6 (rel L2) from the reference, chunks 4e-7. */
#define KEY_CHUNK 64
_Static_assert(QUERIES % TILE_R == 0, "a block is whole tiles of queries");
#define ALWAYS_INLINE static inline __attribute__((always_inline)) /* into each clone */

typedef struct {
    const float *q;       /* the batch item's queries */
    int64_t q_stride;
    const float *bias;    /* [H, Tq, Tk] or NULL */
    float *out;           /* the batch item's rows, [Tq, H * D] */
    const float *kt, *vp; /* packed K^T, V */
    int Tq, Tk, Tkp, H, D, Dp;
    float scale;
} bias_job;

/* s[r][0..TILE_W) = the scores of TILE_R queries (qt [d][QUERIES], one
 * address for all rows) against TILE_W keys (kt [d][ldk]). The sums stay in
 * registers: the depth loop runs at least once (do-while) and the sums
 * leave through a multiply. */
ALWAYS_INLINE void scores_tile(float *restrict s, int lds, const float *restrict qt, int D,
                               const float *restrict kt, int ldk, float scale)
{
    float acc[TILE_R][TILE_W] = { { 0 } };
    int d = 0;
    do {
#pragma GCC unroll 8
        for (int r = 0; r < TILE_R; r++) {
            const float qr = qt[d * QUERIES + r];
            for (int c = 0; c < TILE_W; c++) acc[r][c] = fmaf(qr, kt[(size_t)d * ldk + c], acc[r][c]);
        }
    } while (++d < D);
#pragma GCC unroll 8
    for (int r = 0; r < TILE_R; r++)
        for (int c = 0; c < TILE_W; c++) s[r * lds + c] = acc[r][c] * scale;
}

/* o[r][0..TILE_W) += sum_j p[r][j] v[j][:] over n >= 1 keys: a long row
 * is summed in chunks (KEY_CHUNK) into o. */
ALWAYS_INLINE void values_tile(float *restrict o, const float *restrict p, int ldp, const float *restrict v,
                               int ldv, int n)
{
    float acc[TILE_R][TILE_W] = { { 0 } };
    int j = 0;
    do {
#pragma GCC unroll 8
        for (int r = 0; r < TILE_R; r++) {
            const float pr = p[(size_t)r * ldp + j];
            for (int c = 0; c < TILE_W; c++) acc[r][c] = fmaf(pr, v[(size_t)j * ldv + c], acc[r][c]);
        }
    } while (++j < n);
#pragma GCC unroll 8
    for (int r = 0; r < TILE_R; r++)
        for (int c = 0; c < TILE_W; c++) o[r * TILE_W + c] += acc[r][c];
}

/* Head h's K transposed and V, zero past Tk and D, from one batch item. */
SDW_VEC static void pack_head(const bias_job *j, float *restrict kt, float *restrict vp, const float *k,
                              const float *v, int64_t stride, int h)
{
    const int D = j->D, Tk = j->Tk, Tkp = j->Tkp, Dp = j->Dp;
    for (int t = 0; t < Tk; t++) {
        const float *ks = k + t * stride + (int64_t)h * D, *vs = v + t * stride + (int64_t)h * D;
        float *vd = vp + (size_t)t * Dp;
        for (int d = 0; d < D; d++) {
            kt[(size_t)d * Tkp + t] = ks[d];
            vd[d] = vs[d];
        }
        for (int d = D; d < Dp; d++) vd[d] = 0.0f;
    }
    for (int d = 0; d < D; d++)
        for (int t = Tk; t < Tkp; t++) kt[(size_t)d * Tkp + t] = 0.0f;
}

/* Queries q0.. (up to QUERIES) of head h in one thread's buffers: qt
 * [D][QUERIES] (Q^T, zero columns past Tq), s [QUERIES][Tkp], inv
 * [QUERIES], o [TILE_R][TILE_W]. */
SDW_VEC static void run_block(const bias_job *j, float *qt, float *s, float *inv, float *o, int q0, int h)
{
    const int D = j->D, Tk = j->Tk, Tkp = j->Tkp, Dp = j->Dp;
    const int rows = j->Tq - q0 < QUERIES ? j->Tq - q0 : QUERIES;
    const int rows_p = (rows + TILE_R - 1) / TILE_R * TILE_R; /* whole tiles; the extra rows are discarded */
    const float *q = j->q + (int64_t)q0 * j->q_stride + (int64_t)h * D;
    if (rows < QUERIES) memset(qt, 0, sizeof(float) * QUERIES * (size_t)D);
    for (int r = 0; r < rows; r++)
        for (int d = 0; d < D; d++) qt[d * QUERIES + r] = q[r * j->q_stride + d];

    const float *kt = j->kt + (size_t)h * D * Tkp, *vp = j->vp + (size_t)h * Tk * Dp;
    for (int r = 0; r < rows_p; r += TILE_R)
        for (int c = 0; c < Tkp; c += TILE_W)
            scores_tile(s + (size_t)r * Tkp + c, Tkp, qt + r, D, kt + c, Tkp, j->scale);

    for (int r = 0; r < rows_p; r++) {
        float *row = s + (size_t)r * Tkp;
        if (j->bias && r < rows) {
            const float *b = j->bias + ((size_t)h * j->Tq + q0 + r) * Tk;
#pragma omp simd
            for (int c = 0; c < Tk; c++) row[c] += b[c];
        }
        inv[r] = sdw_attn_softmax_row(row, Tkp, Tk, 1.0f);
    }

    for (int r = 0; r < rows_p; r += TILE_R)
        for (int d = 0; d < Dp; d += TILE_W) {
            memset(o, 0, sizeof(float) * TILE_R * TILE_W);
            for (int k0 = 0; k0 < Tk; k0 += KEY_CHUNK)
                values_tile(o, s + (size_t)r * Tkp + k0, Tkp, vp + (size_t)k0 * Dp + d, Dp,
                            Tk - k0 < KEY_CHUNK ? Tk - k0 : KEY_CHUNK);
            const int n = D - d < TILE_W ? D - d : TILE_W;
            for (int i = 0; i < TILE_R && r + i < rows; i++) {
                float *dst = j->out + (int64_t)(q0 + r + i) * j->H * D + (int64_t)h * D + d;
                for (int c = 0; c < n; c++) dst[c] = o[i * TILE_W + c] * inv[r + i];
            }
        }
}

/* Rounds up to whole cache lines, so threads' buffers never share one. */
static size_t lines(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

sdw_status sdw_attention_bias(sdw_backend *be, const float *q, int64_t q_stride, const float *k, const float *v,
                              int64_t kv_stride, int B, int Tq, int Tk, int heads, int head_dim, float scale,
                              const float *bias, float *out)
{
    if (B <= 0 || Tq <= 0 || Tk <= 0 || heads <= 0 || head_dim <= 0 || q_stride < (int64_t)heads * head_dim ||
        kv_stride < (int64_t)heads * head_dim)
        return sdw_fail(SDW_ERR_INVALID_ARG, "attention with bias: bad shape B %d Tq %d Tk %d heads %d dim %d", B,
                        Tq, Tk, heads, head_dim);
    const double t0 = sdw_be_now();
    bias_job j = { .q_stride = q_stride, .bias = bias, .Tq = Tq, .Tk = Tk, .H = heads, .D = head_dim,
                   .scale = scale };
    j.Tkp = (Tk + TILE_W - 1) / TILE_W * TILE_W;
    j.Dp = (head_dim + TILE_W - 1) / TILE_W * TILE_W;
    const int nt = omp_get_max_threads();
    const size_t sz_q = lines(sizeof(float) * QUERIES * (size_t)head_dim);
    const size_t sz_s = lines(sizeof(float) * QUERIES * (size_t)j.Tkp);
    const size_t sz_inv = lines(sizeof(float) * QUERIES);
    const size_t per_thread = sz_q + sz_s + sz_inv + lines(sizeof(float) * TILE_R * TILE_W);
    float *kt = sdw_scratch(be, SDW_SCR_ATT_K, sizeof(float) * (size_t)heads * head_dim * j.Tkp);
    float *vp = sdw_scratch(be, SDW_SCR_ATT_V, sizeof(float) * (size_t)heads * Tk * j.Dp);
    char *tb = sdw_scratch(be, SDW_SCR_ATT_S, per_thread * (size_t)nt);
    if (!kt || !vp || !tb) return SDW_ERR_NOMEM;
    j.kt = kt;
    j.vp = vp;
    const int n_rb = (Tq + QUERIES - 1) / QUERIES;
    for (int b = 0; b < B; b++) {
        const float *kb = k + (int64_t)b * Tk * kv_stride, *vb = v + (int64_t)b * Tk * kv_stride;
#pragma omp parallel for schedule(static)
        for (int h = 0; h < heads; h++)
            pack_head(&j, kt + (size_t)h * head_dim * j.Tkp, vp + (size_t)h * Tk * j.Dp, kb, vb, kv_stride, h);
        j.q = q + (int64_t)b * Tq * q_stride;
        j.out = out + (int64_t)b * Tq * heads * head_dim;
#pragma omp parallel num_threads(nt)
        {
            char *mine = tb + per_thread * (size_t)omp_get_thread_num();
            float *qt = (float *)mine, *s = (float *)(mine + sz_q), *inv = (float *)(mine + sz_q + sz_s);
            float *o = (float *)(mine + sz_q + sz_s + sz_inv);
            /* Head-major order: consecutive blocks share one head's K and V. */
#pragma omp for schedule(dynamic)
            for (int t = 0; t < n_rb * heads; t++) run_block(&j, qt, s, inv, o, t % n_rb * QUERIES, t / n_rb);
        }
    }
    const int dims[SDW_OP_DIMS] = { B, Tq, Tk, heads, head_dim, 0 };
    sdw_count_op(be, SDW_OPK_ATTENTION, t0, 4.0 * B * heads * (double)Tq * Tk * head_dim, "attention_bias", dims);
    return SDW_OK;
}
