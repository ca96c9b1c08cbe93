/* attention_flash.c: f32 attention in one pass over the keys, for CPUs
 * without bf16 matmuls (AVX-512 or AVX2; attention_bf16.c serves bf16).
 *
 * On oneDNN's f32 matmuls (attention.c) Q K^T has a depth of one head (40
 * in SD1), every block's scores go to memory and back between the products
 * and the softmax, and each call repacks its operands. Here, per batch item,
 * K and V are packed once per head, and each thread takes blocks of 32
 * queries x one head through the keys in steps of 96, whose scores stay in
 * L1 (the online softmax of FlashAttention), with the queries along the
 * vectors:
 *   S^T = K Q^T             register tiles, scaled to log2 units
 *   P^T = 2^(S^T - max)     a lane per query: max and sum need no shuffles
 *   O^T = O^T a + V^T P^T   register tiles; a rescales the outputs so far
 *                           when the step raised their max
 * and O is divided by the sums as it is written out. The tiles are plain C
 * loops over fixed-size blocks, depth (or key) loop outside, that gcc
 * vectorises into registers in each SDW_VEC clone: 8 keys (or head dims) x
 * 32 queries on AVX-512 (16 of its 32 registers), 6 x 16 on AVX2 (12 of
 * 16). The driver picks the size of the clone the CPU runs. */
#include "backend/attention_flash.h"
#include <limits.h>
#include <math.h>
#include <omp.h>

#define QUERIES 32    /* queries per block: the vector lanes, two 16-float vectors */
#define BLOCK_KEYS 96 /* keys per step of the online softmax: a multiple of both tile heights */
#define ALWAYS_INLINE static inline __attribute__((always_inline)) /* into each clone */

/* The x86-64-v4 features, where the resolver picks the AVX-512 clone. */
static bool wide_tiles(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
}

/* ------------------------------------------------------------ tiles */

/* Both products run with the queries along the vectors (W of them, rows
 * QUERIES apart), in register tiles of R x W sums with the depth (or key)
 * loop outside. gcc keeps the sums in registers only when nothing copies
 * them as they are: a zero-trip loop joins its paths in memory, and a plain
 * copy out becomes a memcpy from memory. So the loops run at least once
 * (do-while) and the sums leave through arithmetic: the score scale, the
 * rescaling of the outputs. */

/* s[R][W] = c x the scores of R keys (kt depth-major: kt[d * R + r]) for W
 * queries (qt[d][w]); mx[W] raised to their max. With mask, key r counts
 * for query w only when r < keys and r + lim <= w, else it scores -inf. */
#define SCORES_TILE(R, W)                                                                                    \
    ALWAYS_INLINE void scores_##R##x##W(float *restrict s, const float *restrict kt, const float *restrict qt, \
                                        int D, float c, float *restrict mx, bool mask, int keys, int lim)    \
    {                                                                                                        \
        float acc[R][W] = { { 0 } };                                                                         \
        int d = 0;                                                                                           \
        do {                                                                                                 \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                              \
            {                                                                                                \
                const float kr = kt[d * R + r];                                                              \
                for (int w = 0; w < W; w++) acc[r][w] = fmaf(kr, qt[d * QUERIES + w], acc[r][w]);            \
            }                                                                                                \
        } while (++d < D);                                                                                   \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) for (int w = 0; w < W; w++)                      \
        {                                                                                                    \
            const float x = !mask || (r < keys && r + lim <= w) ? acc[r][w] * c : -INFINITY;                 \
            s[r * QUERIES + w] = x;                                                                          \
            mx[w] = x > mx[w] ? x : mx[w];                                                                   \
        }                                                                                                    \
    }

/* o[R][W] = o a + v^T p over n >= 1 keys: R head dims (v[x * ldv + r]) of
 * the outputs of W queries, p[x][w] the queries' probabilities, a[w] the
 * rescaling of their outputs so far. */
#define VALUES_TILE(R, W)                                                                                    \
    ALWAYS_INLINE void values_##R##x##W(float *restrict o, const float *restrict v, int ldv,                 \
                                        const float *restrict p, int n, const float *restrict a)             \
    {                                                                                                        \
        float acc[R][W] = { { 0 } };                                                                         \
        int x = 0;                                                                                           \
        do {                                                                                                 \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                              \
            {                                                                                                \
                const float vr = v[x * ldv + r];                                                             \
                for (int w = 0; w < W; w++) acc[r][w] = fmaf(vr, p[x * QUERIES + w], acc[r][w]);             \
            }                                                                                                \
        } while (++x < n);                                                                                   \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) for (int w = 0; w < W; w++) o[r * QUERIES + w] = \
            fmaf(o[r * QUERIES + w], a[w], acc[r][w]);                                                       \
    }

SCORES_TILE(8, 32) /* AVX-512: 16 of its 32 registers */
VALUES_TILE(8, 32)
SCORES_TILE(6, 16) /* AVX2: 12 of 16 */
VALUES_TILE(6, 16)

/* ------------------------------------------------------------ softmax */

/* 2^(x - top) for x <= top (x may be -inf), flushed to 0 below top - 127:
 * 2^n from exponent bits times a degree-6 polynomial for 2^f, f = t - n in
 * [-0.5, 0.5] (Cephes exp2f, relative error 2e-7). n comes from rounding
 * inside one add against 1.5 * 2^23 + 127, whose low bits are then n + 127:
 * shifted, they are 2^n (0 for n = -127). The floor of t is written
 * (top - top) - 127, which gcc may not fold (inf - inf is NaN): against a
 * constant it folds the floored path and leaves a branch that it cannot
 * vectorise for AVX2. */
ALWAYS_INLINE float exp2_below(float x, float top)
{
    const float magic = 12582912.0f + 127.0f, lo = (top - top) - 127.0f, d = x - top;
    const float t = d < lo ? lo : d;
    const float r = t + magic, n = r - magic, f = t - n;
    float p = 1.535336188319500e-4f;
    p = fmaf(p, f, 1.339887440266574e-3f);
    p = fmaf(p, f, 9.618437357674640e-3f);
    p = fmaf(p, f, 5.550332471162809e-2f);
    p = fmaf(p, f, 2.402264791363012e-1f);
    p = fmaf(p, f, 6.931472028550421e-1f);
    p = fmaf(p, f, 1.0f);
    union {
        float f;
        uint32_t u;
    } scale = { .f = r };
    scale.u <<= 23;
    return p * scale.f;
}

/* The online softmax over one key block, in place, one lane per query:
 * s[k][c] holds the score of key k0 + k for query q0 + c in log2 units (n
 * keys, -inf where masked), mx the queries' max over them and the earlier
 * blocks, m and l the running max and sum before this block. a becomes the
 * rescaling of the outputs and sum so far to the new max, then s becomes
 * p = 2^(s - mx). Every query sees key 0, so mx is finite. */
ALWAYS_INLINE void softmax_block(float *restrict s, int n, const float *restrict mx, float *restrict m,
                                 float *restrict l, float *restrict a)
{
#pragma omp simd
    for (int c = 0; c < QUERIES; c++) {
        a[c] = exp2_below(m[c], mx[c]); /* 0 on the first block: m = -inf */
        m[c] = mx[c];
    }
    /* Queries by sixteens outside, their max and sum in locals: registers. */
    for (int c0 = 0; c0 < QUERIES; c0 += 16) {
        float top[16], sum[16];
        for (int c = 0; c < 16; c++) {
            top[c] = m[c0 + c];
            sum[c] = 0; /* the block's own sum, then added: shorter chains of rounding */
        }
        for (int k = 0; k < n; k++) {
#pragma omp simd
            for (int c = 0; c < 16; c++) {
                const float p = exp2_below(s[k * QUERIES + c0 + c], top[c]);
                s[k * QUERIES + c0 + c] = p;
                sum[c] += p;
            }
        }
        for (int c = 0; c < 16; c++) l[c0 + c] = fmaf(l[c0 + c], a[c0 + c], sum[c]);
    }
}

/* ------------------------------------------------------------ driver */

typedef struct {
    const float *q;
    int64_t q_stride;
    float *out;            /* rows of the batch item */
    const float *kp, *vp;  /* packed K, V of the batch item, per head */
    size_t k_head, v_head; /* floats per head */
    int Tq, Tk, Tkp, H, D, Dp, R;
    bool causal, wide;
    float c;               /* log2(e) / sqrt(D): scores in log2 units */
} flash_job;

/* dst[d][r] = k[r][d] for R keys (rows stride apart) of D dims. */
ALWAYS_INLINE void pack_k_group(float *restrict dst, const float *restrict k, int64_t stride, int D, const int R)
{
    for (int d = 0; d < D; d++)
        for (int r = 0; r < R; r++) dst[d * R + r] = k[r * stride + d];
}

/* One key's V row into groups of R dims group floats apart, zero past D. */
ALWAYS_INLINE void pack_v_row(float *restrict dst, size_t group, const float *restrict v, int D, const int R)
{
    int d = 0;
    for (; d + R <= D; d += R, dst += group)
        for (int r = 0; r < R; r++) dst[r] = v[d + r];
    for (int r = 0; d < D && r < R; r++) dst[r] = d + r < D ? v[d + r] : 0.0f;
}

/* Keys k0..k0 + R - 1 of K and V, all heads, into each head's layouts,
 * both in groups so the tiles read them in order: K in groups of R keys,
 * each depth-major (kp[key / R][d][key % R], zero past Tk); V in groups of
 * R dims, each key-major (vp[d / R][key][d % R], zero past D). */
SDW_VEC static void pack_keys(const flash_job *j, float *kp, float *vp, const float *k, const float *v,
                              int64_t stride, int k0)
{
    const int D = j->D, R = j->R, rows = j->Tk - k0 < R ? j->Tk - k0 : R;
    const size_t group = (size_t)j->Tk * R;
    for (int h = 0; h < j->H; h++) {
        float *kd = kp + (size_t)h * j->k_head + (size_t)k0 * D;
        const float *ks = k + k0 * stride + (int64_t)h * D;
        if (rows < R) {
            for (int d = 0; d < D; d++)
                for (int r = 0; r < R; r++) kd[d * R + r] = r < rows ? ks[r * stride + d] : 0.0f;
        } else if (j->wide) {
            pack_k_group(kd, ks, stride, D, 8);
        } else {
            pack_k_group(kd, ks, stride, D, 6);
        }
        for (int r = 0; r < rows; r++) {
            float *vd = vp + (size_t)h * j->v_head + (size_t)(k0 + r) * R;
            const float *vs = v + (k0 + r) * stride + (int64_t)h * D;
            if (j->wide) pack_v_row(vd, group, vs, D, 8);
            else pack_v_row(vd, group, vs, D, 6);
        }
    }
}

/* s[k][:] = the scores of the block's keys k < n (whole tiles; -inf past n
 * and where masked) from its packed K at kt, for the queries of qt
 * [D][QUERIES]; mx raised to their max. Causal, query c sees key k when k +
 * first <= c. Only tiles that need the mask pay for it. */
ALWAYS_INLINE void block_scores(const flash_job *j, float *s, const float *qt, const float *kt, int n, int first,
                                float *mx)
{
    const int D = j->D;
    const float c = j->c;
    if (j->wide) {
        for (int k = 0; k < n; k += 8) {
            if (j->causal || n - k < 8)
                scores_8x32(s + k * QUERIES, kt + (size_t)k * D, qt, D, c, mx, true, n - k, first + k);
            else
                scores_8x32(s + k * QUERIES, kt + (size_t)k * D, qt, D, c, mx, false, 8, 0);
        }
    } else {
        for (int k = 0; k < n; k += 6)
            for (int q = 0; q < QUERIES; q += 16) {
                if (j->causal || n - k < 6)
                    scores_6x16(s + k * QUERIES + q, kt + (size_t)k * D, qt + q, D, c, mx + q, true, n - k,
                                first + k - q);
                else
                    scores_6x16(s + k * QUERIES + q, kt + (size_t)k * D, qt + q, D, c, mx + q, false, 6, 0);
            }
    }
}

/* o [Dp][QUERIES] = o a + V^T p for the n keys of the block from key k0 (v:
 * the head's packed V). */
ALWAYS_INLINE void block_values(const flash_job *j, float *o, const float *p, const float *v, int k0, int n,
                                const float *a)
{
    if (j->wide) {
        for (int d = 0; d < j->Dp; d += 8)
            values_8x32(o + d * QUERIES, v + (size_t)d * j->Tk + k0 * 8, 8, p, n, a);
    } else {
        for (int d = 0; d < j->Dp; d += 6)
            for (int c = 0; c < QUERIES; c += 16)
                values_6x16(o + d * QUERIES + c, v + (size_t)d * j->Tk + k0 * 6, 6, p + c, n, a + c);
    }
}

/* Queries q0.. (up to QUERIES) of head h, start to finish, in one thread's
 * buffers: qt [D][QUERIES] (Q^T, zero columns past Tq), s [BLOCK_KEYS]
 * [QUERIES], o [Dp][QUERIES]. */
SDW_VEC static void run_block(const flash_job *j, float *qt, float *s, float *o, int q0, int h)
{
    const int D = j->D, rows = j->Tq - q0 < QUERIES ? j->Tq - q0 : QUERIES;
    const float *q = j->q + (int64_t)q0 * j->q_stride + (int64_t)h * D;
    if (rows == QUERIES) { /* the queries along the vectors: gcc gathers them */
        for (int d = 0; d < D; d++)
#pragma omp simd
            for (int c = 0; c < QUERIES; c++) qt[d * QUERIES + c] = q[c * j->q_stride + d];
    } else {
        memset(qt, 0, sizeof(float) * QUERIES * (size_t)D);
        for (int c = 0; c < rows; c++)
            for (int d = 0; d < D; d++) qt[d * QUERIES + c] = q[c * j->q_stride + d];
    }
    memset(o, 0, sizeof(float) * (size_t)j->Dp * QUERIES);
    float m[QUERIES], mx[QUERIES], l[QUERIES], a[QUERIES];
    for (int c = 0; c < QUERIES; c++) {
        m[c] = -INFINITY;
        l[c] = 0;
    }
    const float *kp = j->kp + (size_t)h * j->k_head, *vp = j->vp + (size_t)h * j->v_head;
    const int last = j->causal && q0 + QUERIES < j->Tk ? q0 + QUERIES : j->Tk; /* keys any query sees */
    for (int k0 = 0; k0 < last; k0 += BLOCK_KEYS) {
        const int n = last - k0 < BLOCK_KEYS ? last - k0 : BLOCK_KEYS;
        memcpy(mx, m, sizeof mx);
        block_scores(j, s, qt, kp + (size_t)k0 * D, n, j->causal ? k0 - q0 : INT_MIN / 2, mx);
        softmax_block(s, n, mx, m, l, a);
        block_values(j, o, s, vp, k0, n, a);
    }
    for (int c = 0; c < rows; c++) {
        float *dst = j->out + (int64_t)(q0 + c) * j->H * D + (int64_t)h * D;
        const float inv = 1.0f / l[c];
        for (int d = 0; d < D; d++) dst[d] = o[d * QUERIES + c] * inv;
    }
}

const char *sdw_attention_flash_kernel(void)
{
    return wide_tiles() ? "attention_flash f32 avx512 (8x32 tiles)" : "attention_flash f32 avx2 (6x16 tiles)";
}

/* Rounds up to whole cache lines, so threads' buffers never share one. */
static size_t lines(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

sdw_status sdw_attention_flash_f32(sdw_backend *be, const float *q, int64_t q_stride, const float *k, const float *v,
                                   int64_t kv_stride, int B, int Tq, int Tk, int H, int D, bool causal, float *out)
{
    flash_job j = { .q_stride = q_stride, .Tq = Tq, .Tk = Tk, .H = H, .D = D, .causal = causal,
                    .wide = wide_tiles(), .c = 1.44269504088896341f / sqrtf((float)D) };
    j.R = j.wide ? 8 : 6;
    j.Tkp = (Tk + j.R - 1) / j.R * j.R;
    j.Dp = (D + j.R - 1) / j.R * j.R;
    j.k_head = (size_t)j.Tkp * D;
    j.v_head = (size_t)Tk * j.Dp;
    const int nt = omp_get_max_threads();
    const size_t sz_q = lines(sizeof(float) * QUERIES * (size_t)D);
    const size_t sz_s = lines(sizeof(float) * QUERIES * BLOCK_KEYS);
    const size_t per_thread = sz_q + sz_s + lines(sizeof(float) * QUERIES * (size_t)j.Dp);
    float *kp = sdw_scratch(be, SDW_SCR_ATT_K, sizeof(float) * j.k_head * H);
    float *vp = sdw_scratch(be, SDW_SCR_ATT_V, sizeof(float) * j.v_head * H);
    char *tb = sdw_scratch(be, SDW_SCR_ATT_S, per_thread * nt);
    if (!kp || !vp || !tb) return SDW_ERR_NOMEM;
    j.kp = kp;
    j.vp = vp;
    const int n_rb = (Tq + QUERIES - 1) / QUERIES;
    for (int b = 0; b < B; b++) {
        const float *kb = k + (int64_t)b * Tk * kv_stride, *vb = v + (int64_t)b * Tk * kv_stride;
#pragma omp parallel for schedule(static)
        for (int k0 = 0; k0 < j.Tkp; k0 += j.R) pack_keys(&j, kp, vp, kb, vb, kv_stride, k0);
        j.q = q + (int64_t)b * Tq * q_stride;
        j.out = out + (int64_t)b * Tq * H * D;
#pragma omp parallel num_threads(nt)
        {
            char *mine = tb + per_thread * (size_t)omp_get_thread_num();
            float *qt = (float *)mine, *s = (float *)(mine + sz_q), *o = (float *)(mine + sz_q + sz_s);
            /* Head-major order: consecutive blocks share one head's K and V. */
#pragma omp for schedule(dynamic)
            for (int t = 0; t < n_rb * H; t++) run_block(&j, qt, s, o, t % n_rb * QUERIES, t / n_rb);
        }
    }
    return SDW_OK;
}
