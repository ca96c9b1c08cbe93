/* attention_bf16.c: bf16 attention on our own kernel, for CPUs with AMX
 * tiles (attention_bf16.h: the products; attention_dp.c serves CPUs with
 * AVX-512-BF16 dot products only).
 *
 * oneDNN's matmul runs the two attention products far below its peak here:
 * Q K^T has a depth of one head (40..160), where its brgemm kernels spend
 * more time on setup and stores than on the multiplies (about 0.3 TFLOP/s
 * a core on AMX, 37% of the bf16 peak on AVX-512-BF16), and it repacks K or
 * V on every call. So per batch item K and V are packed once, per head,
 * into the tile layouts (VNNI pairs; V with an extra column of ones), and
 * each thread takes blocks of 32 queries x one head through the keys, 128
 * at a time (FlashAttention's online softmax: scores and probabilities stay
 * in L1):
 *   S = Q K^T           products->scores, f32 scores of the 128 keys
 *   P = 2^(c S - max)   AVX-512, bf16, against the row's running max, in
 *                       one pass that also finds the block's max; in the
 *                       rare block that raises it, the row's outputs so
 *                       far are scaled down and P is taken again
 *   O += P V            products->values; the ones column makes O's column
 *                       D the sum of exactly the bf16 P multiplied, the
 *                       denominator
 * and O is divided by it as it is written out. Q, K and V come as f32
 * (rounded while packed) or, from the UNet's projections, as bf16. The exp
 * (vreduceps, a degree-3 polynomial for 2^f, vscalefps) is the bound on
 * AMX: one per score, next to 80 multiply-adds on tiles at SD1's head size. */
#include "backend/avx512_bf16.h"
#include "backend/attention_bf16.h"
#include "backend/amx.h"
#include <math.h>
#include <omp.h>

#define ROWS SDW_ATT_ROWS
#define KEYS SDW_ATT_KEYS
#define TILE_ELEMS SDW_ATT_TILE_ELEMS
#define BLOCK_KEYS 128 /* keys per step of the online softmax: scores stay in L1 */

/* ------------------------------------------------------------ packing */

/* An input tensor: f32 (rounded to bf16 as it is packed) or bf16. */
typedef struct {
    const void *p;
    bool bf;
} input;

/* Elements at..at+15 of x as bf16 (masked to n for a ragged end); f32 is
 * rounded to nearest even. */
BF16_FN static inline __m256i bf16x16(input x, int64_t at, int n)
{
    __mmask16 m = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n < 0 ? 0 : n)) - 1);
    if (x.bf) return _mm256_maskz_loadu_epi16(m, (const uint16_t *)x.p + at);
    return (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, (const float *)x.p + at));
}

/* K of one head as B tiles of S = Q K^T: tile (key tile t, depth chunk c)
 * holds, in row p, the pairs (K[16t + n][32c + 2p], K[16t + n][32c + 2p + 1])
 * for n = 0..15: the transpose of the 16 keys' rows of pairs. Keys past Tk
 * and depths past D are zero. */
BF16_FN static void pack_k(uint16_t *dst, input k, int64_t at, int64_t stride, int Tk, int Tkp, int D, int Dk)
{
    const int nc = Dk / 32;
    __m512i r[16];
    for (int t = 0; t < Tkp / 16; t++) {
        for (int c = 0; c < nc; c++) {
            for (int n = 0; n < 16; n++) {
                const int key = t * 16 + n;
                if (key >= Tk) {
                    r[n] = _mm512_setzero_si512();
                    continue;
                }
                const int64_t from = at + key * stride + c * 32;
                r[n] = _mm512_inserti64x4(_mm512_castsi256_si512(bf16x16(k, from, D - c * 32)),
                                          bf16x16(k, from + 16, D - c * 32 - 16), 1);
            }
            sdw_transpose16_epi32(r);
            uint16_t *tile = dst + ((size_t)t * nc + c) * TILE_ELEMS;
            for (int p = 0; p < 16; p++) _mm512_storeu_si512(tile + p * 32, r[p]);
        }
    }
}

/* V of one head as B tiles of O = P V: tile (key chunk kc, column tile j)
 * holds, in row p, the pairs (V[32kc + 2p][16j + n], V[32kc + 2p + 1][16j + n]):
 * two keys' 16 columns, interleaved. Column D is 1 for every real key, so
 * O's column D sums the bf16 P the products used: the softmax denominator,
 * rescaled along with O. */
BF16_FN static void pack_v(uint16_t *dst, input v, int64_t at, int64_t stride, int Tk, int Tkp, int D, int nt)
{
    for (int key = 0; key < Tkp; key += 2) {
        const int kc = key / KEYS, p = key % KEYS / 2;
        for (int j = 0; j < nt; j++) {
            __m256i row[2];
            for (int e = 0; e < 2; e++) {
                if (key + e >= Tk) {
                    row[e] = _mm256_setzero_si256();
                    continue;
                }
                row[e] = bf16x16(v, at + (key + e) * stride + j * 16, D - j * 16);
                if (D >= j * 16 && D < j * 16 + 16) /* the sum column: 1.0 */
                    row[e] = _mm256_mask_set1_epi16(row[e], (__mmask16)(1u << (D - j * 16)), 0x3f80);
            }
            const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(row[0]), row[1], 1);
            uint16_t *tile = dst + ((size_t)kc * nt + j) * TILE_ELEMS;
            _mm512_storeu_si512(tile + p * 32, sdw_bf16_interleave(both));
        }
    }
}

/* ------------------------------------------------------------ softmax */

/* p[0..n) = bf16(2^(c s - m)), zero past valid; returns the lanes' max of
 * the valid s. n is a multiple of 32; pairs of vectors share one rounding
 * to bf16. */
BF16_FN static inline __m512 exp_pass(uint16_t *p, const float *s, int n, int valid, float c, float m)
{
    const __m512 vm = _mm512_set1_ps(m), vc = _mm512_set1_ps(c);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 32 <= valid; i += 32) {
        const __m512 s0 = _mm512_loadu_ps(s + i), s1 = _mm512_loadu_ps(s + i + 16);
        mx = _mm512_max_ps(mx, _mm512_max_ps(s0, s1));
        const __m512 e0 = sdw_exp2_ps(_mm512_fmsub_ps(s0, vc, vm)), e1 = sdw_exp2_ps(_mm512_fmsub_ps(s1, vc, vm));
        _mm512_storeu_si512(p + i, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
    }
    for (; i < n; i += 32) {
        const int l0 = valid - i, l1 = valid - i - 16;
        const __mmask16 k0 = l0 >= 16 ? 0xffff : l0 <= 0 ? 0 : (__mmask16)((1u << l0) - 1);
        const __mmask16 k1 = l1 >= 16 ? 0xffff : l1 <= 0 ? 0 : (__mmask16)((1u << l1) - 1);
        const __m512 s0 = _mm512_maskz_loadu_ps(k0, s + i), s1 = _mm512_maskz_loadu_ps(k1, s + i + 16);
        mx = _mm512_mask_max_ps(mx, k0, mx, s0);
        mx = _mm512_mask_max_ps(mx, k1, mx, s1);
        const __m512 e0 = _mm512_maskz_mov_ps(k0, sdw_exp2_ps(_mm512_fmsub_ps(s0, vc, vm)));
        const __m512 e1 = _mm512_maskz_mov_ps(k1, sdw_exp2_ps(_mm512_fmsub_ps(s1, vc, vm)));
        _mm512_storeu_si512(p + i, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
    }
    return mx;
}

/* One row of a key block, online: s holds n raw scores (the first `valid`
 * real), c = scale * log2(e), and *m the row's running max of c * s. P is
 * taken against *m as it stands, in the pass that also finds the block's
 * max: past a row's first blocks a new max is rare, so most blocks read
 * their scores once. When the block does raise it (and on the row's first
 * block, whose max is found first), *m is raised, the row's outputs so far
 * (o, its sum column included) are scaled down to it, and P is taken again. */
BF16_FN static void softmax_block_row(uint16_t *p, const float *s, int n, int valid, float c, float *m, float *o,
                                     int od)
{
    if (valid <= 0) {
        memset(p, 0, sizeof(uint16_t) * (size_t)n);
        return;
    }
    float bm;
    if (*m != -INFINITY) {
        const __m512 mx = exp_pass(p, s, n, valid, c, *m);
        if (!_mm512_cmp_ps_mask(_mm512_mul_ps(mx, _mm512_set1_ps(c)), _mm512_set1_ps(*m), _CMP_GT_OQ)) return;
        bm = _mm512_reduce_max_ps(mx) * c;
        const __m512 a = _mm512_set1_ps(exp2f(*m - bm));
        for (int d = 0; d < od; d += 16) _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), a));
    } else {
        __m512 mx = _mm512_set1_ps(-INFINITY);
        int i = 0;
        for (; i + 16 <= valid; i += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(s + i));
        if (i < valid) mx = _mm512_mask_max_ps(mx, (__mmask16)((1u << (valid - i)) - 1), mx, _mm512_loadu_ps(s + i));
        bm = _mm512_reduce_max_ps(mx) * c;
    }
    *m = bm;
    exp_pass(p, s, n, valid, c, bm);
}

/* ------------------------------------------------------------ driver */

typedef struct {
    input q;
    int64_t q_at, q_stride; /* the batch item's first query row */
    float *out;              /* f32 output, or NULL for out_bf */
    uint16_t *out_bf;        /* bf16 output (the activation of the output projection) */
    const uint16_t *kp, *vp; /* packed K, V of this batch item, per head */
    size_t k_head, v_head;   /* elements per head */
    int Tq, Tk, Tkp, H, D, Dk, nt;
    bool causal;
    float scale;
    const sdw_bf16_products *prod;
} job;

BF16_FN static void run_block(const job *j, uint16_t *qb, float *s, uint16_t *p, float *o, int q0, int h)
{
    const int rows = j->Tq - q0 < ROWS ? j->Tq - q0 : ROWS, od = j->nt * 16;
    for (int r = 0; r < ROWS; r++) {
        uint16_t *dst = qb + (size_t)r * j->Dk;
        if (r >= rows) {
            memset(dst, 0, sizeof(uint16_t) * (size_t)j->Dk);
            continue;
        }
        const int64_t at = j->q_at + (int64_t)(q0 + r) * j->q_stride + (int64_t)h * j->D;
        for (int d = 0; d < j->Dk; d += 16) _mm256_storeu_si256((__m256i *)(dst + d), bf16x16(j->q, at + d, j->D - d));
    }
    float m[ROWS];
    for (int r = 0; r < ROWS; r++) m[r] = -INFINITY;
    memset(o, 0, sizeof(float) * ROWS * (size_t)od);
    const float c = j->scale * 1.44269504088896341f;
    const uint16_t *kp = j->kp + (size_t)h * j->k_head, *vp = j->vp + (size_t)h * j->v_head;
    const int last = j->causal ? (q0 + rows < j->Tk ? q0 + rows : j->Tk) : j->Tk; /* keys any row sees */
    for (int k0 = 0; k0 < last; k0 += BLOCK_KEYS) {
        const int n = (j->Tkp - k0 < BLOCK_KEYS ? j->Tkp - k0 : BLOCK_KEYS);
        j->prod->scores(s, qb, kp, k0 / 16, n, j->D, j->Dk);
        for (int r = 0; r < ROWS; r++) {
            const int i = q0 + r, seen = j->causal && i + 1 < j->Tk ? i + 1 : j->Tk;
            const int valid = seen - k0 < 0 ? 0 : seen - k0 > n ? n : seen - k0;
            softmax_block_row(p + (size_t)r * n, s + (size_t)r * n, n, valid, c, &m[r], o + (size_t)r * od, od);
        }
        j->prod->values(o, p, vp, k0 / KEYS, n, j->nt);
    }
    for (int r = 0; r < rows; r++) {
        const int64_t at = (int64_t)(q0 + r) * j->H * j->D + (int64_t)h * j->D;
        const __m512 f = _mm512_set1_ps(1.0f / o[(size_t)r * od + j->D]); /* the sum column */
        for (int d = 0; d < j->D; d += 16) {
            const int left = j->D - d;
            const __mmask16 k = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            const __m512 val = _mm512_mul_ps(_mm512_loadu_ps(o + (size_t)r * od + d), f);
            if (j->out_bf) _mm256_mask_storeu_epi16(j->out_bf + at + d, k, (__m256i)_mm512_cvtneps_pbh(val));
            else _mm512_mask_storeu_ps(j->out + at + d, k, val);
        }
    }
}

BF16_FN static void pack_item(const job *j, uint16_t *kp, uint16_t *vp, input k, input v, int64_t at,
                              int64_t kv_stride)
{
#pragma omp parallel for schedule(static)
    for (int hh = 0; hh < 2 * j->H; hh++) {
        const int h = hh / 2;
        if (hh % 2 == 0)
            pack_k(kp + (size_t)h * j->k_head, k, at + (int64_t)h * j->D, kv_stride, j->Tk, j->Tkp, j->D, j->Dk);
        else
            pack_v(vp + (size_t)h * j->v_head, v, at + (int64_t)h * j->D, kv_stride, j->Tk, j->Tkp, j->D, j->nt);
    }
}

sdw_status sdw_attention_bf16(sdw_backend *be, const sdw_attn_args *a, const sdw_bf16_products *prod, float *out,
                              uint16_t *out_bf)
{
    const int Tq = a->Tq, Tk = a->Tk, H = a->H, D = a->D;
    job j = { .q = { a->q, a->bf }, .q_stride = a->q_stride, .Tq = Tq, .Tk = Tk, .H = H, .D = D,
              .causal = a->causal, .scale = 1.0f / sqrtf((float)D), .prod = prod };
    const input k = { a->k, a->bf }, v = { a->v, a->bf };
    j.Tkp = (Tk + KEYS - 1) / KEYS * KEYS;
    j.Dk = (D + 31) / 32 * 32;
    j.nt = (D + 1 + 15) / 16; /* D columns and the sum */
    j.k_head = (size_t)j.Tkp * j.Dk;
    j.v_head = (size_t)j.Tkp * j.nt * 16;
    const int nt_threads = omp_get_max_threads();
    const size_t sz_q = (size_t)ROWS * j.Dk * 2, sz_s = (size_t)ROWS * BLOCK_KEYS * 4;
    const size_t sz_p = (size_t)ROWS * BLOCK_KEYS * 2;
    const size_t sz_o = (size_t)ROWS * j.nt * 16 * 4;
    const size_t per_thread = (sz_q + sz_s + sz_p + sz_o + 4 * 64) & ~(size_t)63;
    uint16_t *kp = sdw_scratch(be, SDW_SCR_ATT_K, j.k_head * H * 2);
    uint16_t *vp = sdw_scratch(be, SDW_SCR_ATT_V, j.v_head * H * 2);
    char *tb = sdw_scratch(be, SDW_SCR_ATT_S, per_thread * nt_threads);
    if (!kp || !vp || !tb) return SDW_ERR_NOMEM;
    j.kp = kp;
    j.vp = vp;
    const int n_rb = (Tq + ROWS - 1) / ROWS;
    for (int b = 0; b < a->B; b++) {
        pack_item(&j, kp, vp, k, v, (int64_t)b * Tk * a->kv_stride, a->kv_stride);
        j.q_at = (int64_t)b * Tq * a->q_stride;
        j.out = out ? out + (int64_t)b * Tq * H * D : NULL;
        j.out_bf = out_bf ? out_bf + (int64_t)b * Tq * H * D : NULL;
#pragma omp parallel num_threads(nt_threads)
        {
            char *mine = tb + per_thread * (size_t)omp_get_thread_num();
            uint16_t *qb = (uint16_t *)mine;
            float *s = (float *)(mine + ((sz_q + 63) & ~(size_t)63));
            uint16_t *p = (uint16_t *)((char *)s + ((sz_s + 63) & ~(size_t)63));
            float *o = (float *)((char *)p + ((sz_p + 63) & ~(size_t)63));
            /* Tiles configured once per thread, not per block; head-major
             * order: consecutive blocks share one head's K and V. */
            if (prod->tiles) sdw_amx_configure_tiles();
#pragma omp for schedule(dynamic)
            for (int t = 0; t < n_rb * H; t++) run_block(&j, qb, s, p, o, t % n_rb * ROWS, t / n_rb);
            if (prod->tiles) sdw_amx_release_tiles();
        }
    }
    return SDW_OK;
}
