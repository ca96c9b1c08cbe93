/* attention_dp.c: bf16 attention on AVX-512-BF16 dot products, for CPUs
 * that have them without AMX (AMD Zen 4 and later, Intel Cooper Lake).
 *
 * vdpbf16ps adds to each of 16 f32 lanes the product of one bf16 pair of
 * a with the same lane's pair of b. Here the lanes are queries: a holds 16
 * queries' pairs, b one key's (or value's) pair broadcast to every lane.
 * So the sums are exactly the head size wide (no tile of columns padded
 * past D), each lane keeps its own row's running max in a vector, and a
 * key block needs no padding past 16 keys. Each thread takes blocks of 32
 * queries (two vectors) x one head through the keys, 128 at a time
 * (FlashAttention's online softmax):
 *   S^T = K Q^T     8 keys x 32 queries in 16 registers, over D / 2 pairs
 *   P^T = 2^(c S - m)  on the registers, c = log2(e) / sqrt(D), against
 *                   each query's running max m as it stands: m rises (and
 *                   the query's outputs, sum and P of the block so far are
 *                   scaled down) only when c S passes it by 8, rare past
 *                   the first keys; P rounded to bf16 pairs of keys
 *   O^T += V^T P^T  up to 12 columns x 32 queries in 24 registers, over
 *                   the block's key pairs, O^T in L1, and one more
 *                   column whose V is (1, 1): O^T's last row is the
 *                   softmax's sum l, of the rounded P it divides (a
 *                   product per pair of keys costs less than adding each
 *                   P into l)
 * and O = O^T / l, transposed back into rows as it is written out. K and
 * V are packed once per head and batch item: K as tiles of 8 keys' pairs
 * in depth order, V as pairs of keys' rows.
 *
 * Where the time goes at SD1.5's 4096 x 4096 x 40 (measured, 2-core Zen 5):
 * a vdpbf16ps issues at two a cycle and an FMA, add, scalef or roundscale
 * takes about one of its slots, vreduceps nearly two, vcvtne2ps2bf16 and
 * vpermw 2.5-3; so the softmax costs about 11 products' slots per 16
 * scores against the head size's 40 products (a ceiling near 78% of the
 * products' peak for D = 40, 92% for D = 128), and the kernel runs at
 * 67-74% of that peak there. Pairing two keys in a register so that P
 * needs no vpermw (queries doubled in Q^T) gained nothing once Q^T's loads
 * doubled; 14 columns of O^T at a time spilled registers (9% slower). */
#include "backend/avx512_bf16.h"
#include "backend/attention_bf16.h"
#include <math.h>
#include <omp.h>

#define QB 32  /* queries per block: two vectors of lanes */
#define KT 8   /* keys per register tile of scores */
#define KG 16  /* keys per packing group (two tiles); K and V padded to it */
#define BK 128 /* keys per step of the online softmax: P^T stays in L1 */
#define CW 12  /* most columns per register tile of O^T */
#define KV_SMALL (256 << 10) /* bytes of packed K and V that stay in L2 with the rest */
/* P may reach 2^SLACK against a query's running max before the max is
 * raised: bf16 keeps its 8 bits at any size. */
#define SLACK 8.0f
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* An input tensor: f32 (rounded to bf16 as it is packed) or bf16. */
typedef struct {
    const void *p;
    bool bf;
} input;

/* 16 bf16 from p, zero past n; unmasked where it can: masked moves are
 * slow on Zen 4 and 5. */
BF16_FN ALWAYS_INLINE __m256i bf16x16(const uint16_t *p, int n)
{
    if (n >= 16) return _mm256_loadu_si256((const __m256i *)p);
    return _mm256_maskz_loadu_epi16((__mmask16)((1u << (n < 0 ? 0 : n)) - 1), p);
}

/* 16 f32 from p, zero past n. */
BF16_FN ALWAYS_INLINE __m512 f32x16(const float *p, int n)
{
    if (n >= 16) return _mm512_loadu_ps(p);
    return _mm512_maskz_loadu_ps((__mmask16)((1u << (n < 0 ? 0 : n)) - 1), p);
}

/* Elements at..at+31 of x as 16 bf16 pairs of neighbours (f32 rounded to
 * nearest even), zero past n. */
BF16_FN ALWAYS_INLINE __m512i pairs16(input x, int64_t at, int n)
{
    if (x.bf) {
        const uint16_t *p = (const uint16_t *)x.p + at;
        return _mm512_inserti64x4(_mm512_castsi256_si512(bf16x16(p, n)), bf16x16(p + 16, n - 16), 1);
    }
    const float *p = (const float *)x.p + at;
    return (__m512i)_mm512_cvtne2ps_pbh(f32x16(p + 16, n - 16), f32x16(p, n));
}

/* ------------------------------------------------------------ packing */

/* K of one head: tile t of KT keys holds, for pair e = 0..np-1, the KT keys'
 * pairs (K[key][2e], K[key][2e + 1]) side by side (one dword each), which
 * the scores broadcast one by one. Keys past Tk and the odd D's last
 * element are zero. */
BF16_FN static void pack_k(uint32_t *dst, input k, int64_t at, int64_t stride, int Tk, int Tkp, int D, int np)
{
    __m512i r[16];
    for (int g = 0; g < Tkp; g += KG) {
        for (int e0 = 0; e0 < np; e0 += 16) {
            for (int n = 0; n < 16; n++)
                r[n] = g + n < Tk ? pairs16(k, at + (g + n) * stride + 2 * e0, D - 2 * e0) : _mm512_setzero_si512();
            sdw_transpose16_epi32(r); /* r[e]: the 16 keys' pair e0 + e */
            for (int e = 0; e < 16 && e0 + e < np; e++) {
                uint32_t *t0 = dst + ((size_t)(g / KT) * np + e0 + e) * KT, *t1 = t0 + (size_t)np * KT;
                _mm256_storeu_si256((__m256i *)t0, _mm512_castsi512_si256(r[e]));
                _mm256_storeu_si256((__m256i *)t1, _mm512_extracti64x4_epi64(r[e], 1));
            }
        }
    }
}

/* V of one head: row p holds, for d = 0..D-1, the pair (V[2p][d],
 * V[2p + 1][d]): what the P V product broadcasts for 32 queries' P of keys
 * 2p and 2p + 1. Keys past Tk are zero. */
BF16_FN static void pack_v(uint32_t *dst, input v, int64_t at, int64_t stride, int Tk, int Tkp, int D)
{
    for (int key = 0; key < Tkp; key += 2) {
        uint32_t *row = dst + (size_t)(key / 2) * D;
        for (int d = 0; d < D; d += 16) {
            const int left = D - d;
            __m512i both; /* key's 16 bf16, then key + 1's */
            if (v.bf) {
                const uint16_t *a = (const uint16_t *)v.p + at + key * stride + d;
                both = _mm512_castsi256_si512(key < Tk ? bf16x16(a, left) : _mm256_setzero_si256());
                if (key + 1 < Tk) both = _mm512_inserti64x4(both, bf16x16(a + stride, left), 1);
            } else {
                const float *a = (const float *)v.p + at + key * stride + d;
                both = (__m512i)_mm512_cvtne2ps_pbh(key + 1 < Tk ? f32x16(a + stride, left) : _mm512_setzero_ps(),
                                                    key < Tk ? f32x16(a, left) : _mm512_setzero_ps());
            }
            both = sdw_bf16_interleave(both);
            if (left >= 16) _mm512_storeu_si512(row + d, both);
            else _mm512_mask_storeu_ps(row + d, (__mmask16)((1u << left) - 1), _mm512_castsi512_ps(both));
        }
    }
}

/* ------------------------------------------------------------ one block */

typedef struct {
    input q;
    int64_t q_at, q_stride; /* the batch item's first query row */
    float *out;              /* f32 output, or NULL for out_bf */
    uint16_t *out_bf;        /* bf16 output (the activation of the output projection) */
    const uint32_t *kp, *vp; /* packed K, V of this batch item, per head */
    size_t k_head, v_head;   /* dwords per head */
    int Tq, Tk, Tkp, H, D, np;
    bool causal;
    float c; /* log2(e) / sqrt(D): c S in base-2 units */
} job;

/* A block's softmax state, lanes = queries: running max of c S and the raw
 * score that passes it by SLACK; c and 1 / c. */
typedef struct {
    __m512 m[2], thr[2], c, inv_c;
} rows;

/* s[v][j] = scores of key j of tile kt for the 16 queries of vector v. */
BF16_FN ALWAYS_INLINE void scores_tile(__m512 s[2][KT], const uint32_t *qt, const uint32_t *kt, int np)
{
#pragma GCC unroll 8
    for (int j = 0; j < KT; j++) s[0][j] = s[1][j] = _mm512_setzero_ps();
    for (int e = 0; e < np; e++) {
        const __m512bh a0 = (__m512bh)_mm512_loadu_si512(qt + e * 32);
        const __m512bh a1 = (__m512bh)_mm512_loadu_si512(qt + e * 32 + 16);
#pragma GCC unroll 8
        for (int j = 0; j < KT; j++) {
            const __m512bh b = (__m512bh)_mm512_set1_epi32((int)kt[e * KT + j]);
            s[0][j] = _mm512_dpbf16_ps(s[0][j], a0, b);
            s[1][j] = _mm512_dpbf16_ps(s[1][j], a1, b);
        }
    }
}

/* 16 bf16 pairs times a per lane, rounded again. */
BF16_FN ALWAYS_INLINE __m512i scale_pairs(__m512i x, __m512 a)
{
    const __m512 even = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(x, 16)), a);
    const __m512 odd = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32((int)0xffff0000u))), a);
    return sdw_bf16_interleave((__m512i)_mm512_cvtne2ps_pbh(odd, even));
}

/* Some lane's score in the tile s (masked by valid) passed its threshold:
 * those lanes' max rises to their tile max, and their outputs and sums so
 * far (ot, D + 1 columns) and P of this block so far (done pairs of pt) are
 * scaled down to it. */
BF16_FN __attribute__((noinline)) static void raise_max(rows *st, const __m512 *s, const __mmask16 *valid,
                                                       float *ot, int D, uint32_t *pt, int done)
{
    for (int v = 0; v < 2; v++) {
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int j = 0; j < KT; j++) mx = _mm512_mask_max_ps(mx, valid[v * KT + j], mx, s[v * KT + j]);
        const __mmask16 up = _mm512_cmp_ps_mask(mx, st->thr[v], _CMP_GT_OQ);
        if (!up) continue;
        const __mmask16 was = _mm512_cmp_ps_mask(st->m[v], _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ);
        const __m512 m = _mm512_mask_mov_ps(st->m[v], up, _mm512_mul_ps(mx, st->c));
        /* 1 where the max stays, 0 where there was none (nothing to scale) */
        __m512 a = _mm512_mask_mov_ps(_mm512_set1_ps(1.0f), up, sdw_exp2_ps(_mm512_sub_ps(st->m[v], m)));
        a = _mm512_mask_mov_ps(a, (__mmask16)(up & ~was), _mm512_setzero_ps());
        st->m[v] = m;
        st->thr[v] = _mm512_mul_ps(_mm512_add_ps(m, _mm512_set1_ps(SLACK)), st->inv_c);
        if (!(up & was)) continue; /* the lanes' first keys: nothing so far */
        for (int d = 0; d <= D; d++)
            _mm512_storeu_ps(ot + d * 32 + v * 16, _mm512_mul_ps(_mm512_loadu_ps(ot + d * 32 + v * 16), a));
        for (int p = 0; p < done; p++)
            _mm512_storeu_si512(pt + p * 32 + v * 16, scale_pairs(_mm512_loadu_si512(pt + p * 32 + v * 16), a));
    }
}

/* P^T of the tile s into pt (KT / 2 pairs of keys x 32 queries), against
 * st's max, raised first if a valid score passes its threshold. MASKED:
 * the tile has keys some lanes must not see (P = 0). */
BF16_FN ALWAYS_INLINE void softmax_tile(__m512 s[2][KT], rows *st, __mmask16 valid[2][KT], const bool MASKED,
                                        float *ot, int D, uint32_t *pt_block, int done)
{
    __mmask16 raise = 0;
#pragma GCC unroll 8
    for (int j = 0; j < KT; j++)
        for (int v = 0; v < 2; v++) {
            const __mmask16 k = _mm512_cmp_ps_mask(s[v][j], st->thr[v], _CMP_GT_OQ);
            raise |= MASKED ? (__mmask16)(k & valid[v][j]) : k;
        }
    if (raise) {
        __m512 all[2 * KT];
        __mmask16 vall[2 * KT];
        for (int v = 0; v < 2; v++)
            for (int j = 0; j < KT; j++) all[v * KT + j] = s[v][j], vall[v * KT + j] = MASKED ? valid[v][j] : 0xffff;
        raise_max(st, all, vall, ot, D, pt_block, done);
    }
    uint32_t *pt = pt_block + (size_t)done * 32;
#pragma GCC unroll 4
    for (int j = 0; j < KT; j += 2)
        for (int v = 0; v < 2; v++) {
            __m512 e0 = sdw_exp2_ps(_mm512_fmsub_ps(s[v][j], st->c, st->m[v]));
            __m512 e1 = sdw_exp2_ps(_mm512_fmsub_ps(s[v][j + 1], st->c, st->m[v]));
            if (MASKED) {
                e0 = _mm512_maskz_mov_ps(valid[v][j], e0);
                e1 = _mm512_maskz_mov_ps(valid[v][j + 1], e1);
            }
            _mm512_storeu_si512(pt + (j / 2) * 32 + v * 16, sdw_bf16_interleave((__m512i)_mm512_cvtne2ps_pbh(e1, e0)));
        }
}

/* ot[W columns] (32 floats each) += V^T P^T over np key pairs: pt's pairs
 * (32 queries each) times vp's rows (D dwords apart) from column 0; with
 * SUM, the last column is the pair (1, 1) instead of V's: P's sum. */
BF16_FN ALWAYS_INLINE void values_tile(float *ot, const uint32_t *pt, const uint32_t *vp, int D, int np, const int W,
                                       const bool SUM)
{
    const __m512bh ones = (__m512bh)_mm512_set1_epi32(0x3f803f80); /* bf16 1.0, twice */
    __m512 acc[2][CW];
#pragma GCC unroll 12
    for (int c = 0; c < W; c++) acc[0][c] = _mm512_loadu_ps(ot + c * 32), acc[1][c] = _mm512_loadu_ps(ot + c * 32 + 16);
    for (int p = 0; p < np; p++) {
        const __m512bh a0 = (__m512bh)_mm512_loadu_si512(pt + p * 32);
        const __m512bh a1 = (__m512bh)_mm512_loadu_si512(pt + p * 32 + 16);
        const uint32_t *b = vp + (size_t)p * D;
#pragma GCC unroll 12
        for (int c = 0; c < W; c++) {
            const __m512bh w = SUM && c == W - 1 ? ones : (__m512bh)_mm512_set1_epi32((int)b[c]);
            acc[0][c] = _mm512_dpbf16_ps(acc[0][c], a0, w);
            acc[1][c] = _mm512_dpbf16_ps(acc[1][c], a1, w);
        }
    }
#pragma GCC unroll 12
    for (int c = 0; c < W; c++) _mm512_storeu_ps(ot + c * 32, acc[0][c]), _mm512_storeu_ps(ot + c * 32 + 16, acc[1][c]);
}

/* O^T += V^T P^T for np key pairs from pair p0, over D + 1 columns (D and
 * P's sum, the last tile's last), in column tiles of equal widths up to
 * CW. */
BF16_FN static void values(float *ot, const uint32_t *pt, const uint32_t *vp, int D, int p0, int np)
{
    const int cols = D + 1, n = (cols + CW - 1) / CW, base = cols / n, wide = cols % n;
    const uint32_t *v = vp + (size_t)p0 * D;
    for (int i = 0, d = 0; i < n; d += base + (i < wide), i++) {
        float *o = ot + d * 32;
        const bool sum = i == n - 1;
        switch (base + (i < wide)) {
#define W_CASE(w) \
    case w: \
        if (sum) values_tile(o, pt, v + d, D, np, w, true); \
        else values_tile(o, pt, v + d, D, np, w, false); \
        break;
            W_CASE(1) W_CASE(2) W_CASE(3) W_CASE(4) W_CASE(5) W_CASE(6)
            W_CASE(7) W_CASE(8) W_CASE(9) W_CASE(10) W_CASE(11) W_CASE(12)
#undef W_CASE
        }
    }
}

/* Lanes of vector v (queries q0 + 16v + lane) that see key `key`. */
ALWAYS_INLINE __mmask16 seen_by(const job *j, int q0, int v, int key)
{
    if (key >= j->Tk) return 0;
    if (!j->causal) return 0xffff;
    const int first = key - q0 - 16 * v; /* the first lane that sees it */
    return first <= 0 ? (__mmask16)0xffff : first >= 16 ? 0 : (__mmask16)(0xffffu << first);
}

/* Q^T of the block: row e holds the 32 queries' pairs (q[2e], q[2e + 1]);
 * queries past Tq are zero. */
BF16_FN static void pack_q(const job *j, uint32_t *qt, int q0, int h)
{
    __m512i r[16];
    for (int v = 0; v < 2; v++)
        for (int e0 = 0; e0 < j->np; e0 += 16) {
            for (int n = 0; n < 16; n++) {
                const int i = q0 + 16 * v + n;
                const int64_t at = j->q_at + (int64_t)i * j->q_stride + (int64_t)h * j->D + 2 * e0;
                r[n] = i < j->Tq ? pairs16(j->q, at, j->D - 2 * e0) : _mm512_setzero_si512();
            }
            sdw_transpose16_epi32(r);
            for (int e = 0; e < 16 && e0 + e < j->np; e++) _mm512_storeu_si512(qt + (e0 + e) * 32 + v * 16, r[e]);
        }
}

/* out rows q0.. = O^T / l (O^T's row D), transposed 16 x 16 at a time. */
BF16_FN static void write_out(const job *j, const float *ot, int q0, int h)
{
    __m512i r[16];
    for (int v = 0; v < 2; v++) {
        const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_loadu_ps(ot + j->D * 32 + v * 16));
        for (int d0 = 0; d0 < j->D; d0 += 16) {
            for (int n = 0; n < 16; n++)
                r[n] = d0 + n < j->D ? _mm512_castps_si512(_mm512_mul_ps(_mm512_loadu_ps(ot + (d0 + n) * 32 + v * 16), inv))
                                     : _mm512_setzero_si512();
            sdw_transpose16_epi32(r); /* r[lane]: columns d0.. of query q0 + 16v + lane */
            const int left = j->D - d0;
            const __mmask16 k = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            for (int n = 0; n < 16 && q0 + 16 * v + n < j->Tq; n++) {
                const int64_t at = (int64_t)(q0 + 16 * v + n) * j->H * j->D + (int64_t)h * j->D + d0;
                const __m512 val = _mm512_castsi512_ps(r[n]);
                if (j->out_bf) {
                    const __m256i h = (__m256i)_mm512_cvtneps_pbh(val);
                    if (left >= 16) _mm256_storeu_si256((__m256i *)(j->out_bf + at), h);
                    else _mm256_mask_storeu_epi16(j->out_bf + at, k, h);
                } else if (left >= 16) _mm512_storeu_ps(j->out + at, val);
                else _mm512_mask_storeu_ps(j->out + at, k, val);
            }
        }
    }
}

/* Asks for the rows of Q of the head's next block of queries (q0 + QB..)
 * and the rows of O this block writes at its end, into L2: their first and
 * last bytes, the lines the hardware's prefetchers reach last. With few
 * keys (cross-attention) a block is short and waited on them: 5-9% faster.
 * (Inlined: GCC drops a call to a function that only prefetches; no loop
 * over the lines: its cost ate the gain.) */
ALWAYS_INLINE void prefetch_rows(const job *j, int q0, int h)
{
    const int64_t qe = j->q.bf ? 2 : 4, qb = j->D * qe, ob = j->D * (j->out_bf ? 2 : 4);
    for (int n = 0; n < QB; n++) {
        if (q0 + QB + n < j->Tq) {
            const int64_t at = j->q_at + (int64_t)(q0 + QB + n) * j->q_stride + (int64_t)h * j->D;
            const char *r = (const char *)j->q.p + at * qe;
            __builtin_prefetch(r, 0, 2);
            __builtin_prefetch(r + qb - 1, 0, 2);
        }
        if (q0 + n < j->Tq) {
            const int64_t at = (int64_t)(q0 + n) * j->H * j->D + (int64_t)h * j->D;
            const char *r = j->out_bf ? (const char *)(j->out_bf + at) : (const char *)(j->out + at);
            __builtin_prefetch(r, 0, 2);
            __builtin_prefetch(r + ob - 1, 0, 2);
        }
    }
}

BF16_FN static void run_block(const job *j, uint32_t *qt, uint32_t *pt, float *ot, int q0, int h)
{
    pack_q(j, qt, q0, h);
    prefetch_rows(j, q0, h);
    memset(ot, 0, sizeof(float) * 32 * (size_t)(j->D + 1));
    rows st;
    for (int v = 0; v < 2; v++) st.m[v] = st.thr[v] = _mm512_set1_ps(-INFINITY);
    st.c = _mm512_set1_ps(j->c);
    st.inv_c = _mm512_set1_ps(1.0f / j->c);
    const uint32_t *kp = j->kp + (size_t)h * j->k_head, *vp = j->vp + (size_t)h * j->v_head;
    const int last_q = q0 + QB - 1 < j->Tq - 1 ? q0 + QB - 1 : j->Tq - 1;
    const int keys = j->causal && last_q + 1 < j->Tk ? last_q + 1 : j->Tk; /* keys any query sees */
    const int end = (keys + KT - 1) / KT * KT;
    for (int k0 = 0; k0 < end; k0 += BK) {
        const int n = end - k0 < BK ? end - k0 : BK;
        for (int t = 0; t < n; t += KT) {
            const int key = k0 + t;
            __m512 s[2][KT];
            scores_tile(s, qt, kp + (size_t)(key / KT) * j->np * KT, j->np);
            __mmask16 valid[2][KT];
            const bool full = key + KT <= j->Tk && (!j->causal || key + KT - 1 <= q0);
            if (!full)
                for (int v = 0; v < 2; v++)
                    for (int i = 0; i < KT; i++) valid[v][i] = seen_by(j, q0, v, key + i);
            if (full) softmax_tile(s, &st, valid, false, ot, j->D, pt, t / 2);
            else softmax_tile(s, &st, valid, true, ot, j->D, pt, t / 2);
        }
        values(ot, pt, vp, j->D, k0 / 2, n / 2);
    }
    write_out(j, ot, q0, h);
}

BF16_FN static void pack_item(const job *j, uint32_t *kp, uint32_t *vp, input k, input v, int64_t at,
                              int64_t kv_stride)
{
#pragma omp parallel for schedule(static)
    for (int hh = 0; hh < 2 * j->H; hh++) {
        const int h = hh / 2;
        if (hh % 2 == 0) pack_k(kp + (size_t)h * j->k_head, k, at + (int64_t)h * j->D, kv_stride, j->Tk, j->Tkp, j->D, j->np);
        else pack_v(vp + (size_t)h * j->v_head, v, at + (int64_t)h * j->D, kv_stride, j->Tk, j->Tkp, j->D);
    }
}

sdw_status sdw_attention_dp(sdw_backend *be, const sdw_attn_args *a, float *out, uint16_t *out_bf)
{
    const int H = a->H, D = a->D;
    job j = { .q = { a->q, a->bf }, .q_stride = a->q_stride, .Tq = a->Tq, .Tk = a->Tk, .H = H, .D = D,
              .causal = a->causal, .c = 1.44269504088896341f / sqrtf((float)D) };
    const input k = { a->k, a->bf }, v = { a->v, a->bf };
    j.Tkp = (a->Tk + KG - 1) / KG * KG;
    j.np = (D + 1) / 2;
    j.k_head = (size_t)j.Tkp * j.np;
    j.v_head = (size_t)j.Tkp / 2 * D;
    const int nt_threads = omp_get_max_threads();
    const size_t sz_q = (size_t)j.np * QB * 4, sz_p = (size_t)BK / 2 * QB * 4, sz_o = (size_t)(D + 1) * QB * 4;
    const size_t per_thread = ((sz_q + 63) & ~(size_t)63) + ((sz_p + 63) & ~(size_t)63) + ((sz_o + 63) & ~(size_t)63);
    uint32_t *kp = sdw_scratch(be, SDW_SCR_ATT_K, j.k_head * H * 4);
    uint32_t *vp = sdw_scratch(be, SDW_SCR_ATT_V, j.v_head * H * 4);
    char *tb = sdw_scratch(be, SDW_SCR_ATT_S, per_thread * nt_threads);
    if (!kp || !vp || !tb) return SDW_ERR_NOMEM;
    j.kp = kp;
    j.vp = vp;
    const int n_qb = (a->Tq + QB - 1) / QB;
    const bool kv_small = (j.k_head + j.v_head) * H * 4 <= KV_SMALL;
    const int chunk = kv_small ? H : 1;
    for (int b = 0; b < a->B; b++) {
        pack_item(&j, kp, vp, k, v, (int64_t)b * a->Tk * a->kv_stride, a->kv_stride);
        j.q_at = (int64_t)b * a->Tq * a->q_stride;
        j.out = out ? out + (int64_t)b * a->Tq * H * D : NULL;
        j.out_bf = out_bf ? out_bf + (int64_t)b * a->Tq * H * D : NULL;
#pragma omp parallel num_threads(nt_threads)
        {
            char *mine = tb + per_thread * (size_t)omp_get_thread_num();
            uint32_t *qt = (uint32_t *)mine;
            uint32_t *pt = (uint32_t *)(mine + ((sz_q + 63) & ~(size_t)63));
            float *ot = (float *)((char *)pt + ((sz_p + 63) & ~(size_t)63));
            /* When every head's K and V fit in L2 together (cross-attention's
             * few keys), a thread takes one block of queries through all the
             * heads: its rows of Q and O stay in its cache, and no two
             * threads write the same lines of O (which cost cross-attention
             * 15%). Else one head through the queries, reusing its K and V. */
#pragma omp for schedule(dynamic, chunk)
            for (int t = 0; t < n_qb * H; t++) {
                if (kv_small) run_block(&j, qt, pt, ot, t / H * QB, t % H);
                else run_block(&j, qt, pt, ot, t % n_qb * QB, t / n_qb);
            }
        }
    }
    return SDW_OK;
}
