/* attention_amx.c: bf16 attention on AMX tiles, for CPUs that have them.
 *
 * oneDNN's matmul runs the two attention products far below its peak here:
 * Q K^T has a depth of one head (40..160), where its brgemm kernels spend
 * more time on setup and stores than on the tile multiplies (about 0.3
 * TFLOP/s a core), and it repacks K or V on every call. So per batch item
 * K and V are packed once, per head, into the tile layouts (VNNI pairs; V
 * with an extra column of ones), and each thread takes blocks of 32
 * queries x one head through the keys, 128 at a time (FlashAttention's
 * online softmax: scores and probabilities stay in L1):
 *   S = Q K^T           AMX, f32 scores of the 128 keys
 *   P = 2^(c S - max)   AVX-512, bf16; when a block raises a row's max, the
 *                       row's outputs so far are scaled down first
 *   O += P V            AMX; the ones column makes O's last column the sum
 *                       of exactly the bf16 P multiplied, the denominator
 * and O is divided by it as it is written out. Q, K and V come as f32
 * (rounded while packed) or, from the UNet's projections, as bf16. The exp
 * (a degree-4 polynomial for 2^f, then vscalefps) is the bound: one per
 * score, next to 80 multiply-adds on tiles at SD1's head size. */
#include "backend/attention_amx.h"
#include "backend/amx.h"
#include <immintrin.h>
#include <math.h>
#include <omp.h>

#define ROWS 32   /* queries per block: two row tiles */
#define KEYS 32   /* keys per step of P V: one tile's depth in bf16 */
#define TILE_ELEMS 512 /* bf16 elements of one packed 16 x 32 tile */
#define BLOCK_KEYS 128 /* keys per step of the online softmax: scores stay in L1 */

/* ------------------------------------------------------------ packing */

/* An input tensor: f32 (rounded to bf16 as it is packed) or bf16. */
typedef struct {
    const void *p;
    bool bf;
} input;

/* Elements at..at+15 of x as bf16 (masked to n for a ragged end); f32 is
 * rounded to nearest even. */
AMX_FN static inline __m256i bf16x16(input x, int64_t at, int n)
{
    __mmask16 m = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n < 0 ? 0 : n)) - 1);
    if (x.bf) return _mm256_maskz_loadu_epi16(m, (const uint16_t *)x.p + at);
    return (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, (const float *)x.p + at));
}

/* K of one head as B tiles of S = Q K^T: tile (key tile t, depth chunk c)
 * holds, in row p, the pairs (K[16t + n][32c + 2p], K[16t + n][32c + 2p + 1])
 * for n = 0..15. Keys past Tk and depths past D are zero. */
AMX_FN static void pack_k(uint16_t *dst, input k, int64_t at, int64_t stride, int Tk, int Tkp, int D, int Dk)
{
    const int nc = Dk / 32;
    uint16_t row[32];
    for (int key = 0; key < Tkp; key++) {
        const int t = key / 16, n = key % 16;
        for (int c = 0; c < nc; c++) {
            if (key < Tk) {
                _mm256_storeu_si256((__m256i *)row, bf16x16(k, at + key * stride + c * 32, D - c * 32));
                _mm256_storeu_si256((__m256i *)(row + 16), bf16x16(k, at + key * stride + c * 32 + 16, D - c * 32 - 16));
            } else {
                memset(row, 0, sizeof row);
            }
            uint32_t *tile = (uint32_t *)(dst + ((size_t)t * nc + c) * TILE_ELEMS);
            const uint32_t *pairs = (const uint32_t *)row;
            for (int p = 0; p < 16; p++) tile[p * 16 + n] = pairs[p];
        }
    }
}

/* V of one head as B tiles of O = P V: tile (key chunk kc, column tile j)
 * holds, in row p, the pairs (V[32kc + 2p][16j + n], V[32kc + 2p + 1][16j + n]).
 * Column D is 1 for every real key, so O's column D sums the bf16 P the
 * products used: the softmax denominator, rescaled along with O. */
AMX_FN static void pack_v(uint16_t *dst, input v, int64_t at, int64_t stride, int Tk, int Tkp, int D, int nt)
{
    uint16_t row[16];
    for (int key = 0; key < Tkp; key++) {
        const int kc = key / KEYS, p = key % KEYS / 2, e = key % 2;
        for (int j = 0; j < nt; j++) {
            if (key < Tk) _mm256_storeu_si256((__m256i *)row, bf16x16(v, at + key * stride + j * 16, D - j * 16));
            else memset(row, 0, sizeof row);
            if (key < Tk && D >= j * 16 && D < j * 16 + 16) row[D - j * 16] = 0x3f80; /* 1.0 */
            uint16_t *tile = dst + ((size_t)kc * nt + j) * TILE_ELEMS;
            for (int n = 0; n < 16; n++) tile[(p * 16 + n) * 2 + e] = row[n];
        }
    }
}

/* ------------------------------------------------------------ kernels */

/* s[32, n] = q[32, Dk] k^T for n keys (a multiple of 32) from key tile t0;
 * q bf16 rows of Dk, s f32 rows of n. */
AMX_FN static void scores(float *s, const uint16_t *q, const uint16_t *kp, int t0, int n, int Dk)
{
    const int nc = Dk / 32;
    const size_t ldq = (size_t)Dk * 2, lds = (size_t)n * 4;
    for (int t = 0; t < n / 16; t += 2) {
        const uint16_t *k0 = kp + (size_t)(t0 + t) * nc * TILE_ELEMS;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int c = 0; c < nc; c++) {
            _tile_loadd(4, q + c * 32, ldq);
            _tile_loadd(5, q + 16 * (size_t)Dk + c * 32, ldq);
            _tile_loadd(6, k0 + (size_t)c * TILE_ELEMS, 64);
            _tile_loadd(7, k0 + (size_t)(nc + c) * TILE_ELEMS, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
        _tile_stored(0, s + t * 16, lds);
        _tile_stored(1, s + t * 16 + 16, lds);
        _tile_stored(2, s + 16 * (size_t)n + t * 16, lds);
        _tile_stored(3, s + 16 * (size_t)n + t * 16 + 16, lds);
    }
}

/* o[32, nt * 16] += p[32, n] v for n keys (a multiple of 32) from key chunk
 * kc0; p bf16 rows of n; two column tiles at a time, o kept in f32 memory. */
AMX_FN static void accumulate_values(float *o, const uint16_t *p, const uint16_t *vp, int kc0, int n, int nt)
{
    const size_t ldp = (size_t)n * 2, ldo = (size_t)nt * 16 * 4;
    float *o1 = o + 16 * (size_t)nt * 16;
    for (int j = 0; j < nt; j += 2) {
        const bool two = j + 1 < nt;
        _tile_loadd(0, o + j * 16, ldo);
        _tile_loadd(2, o1 + j * 16, ldo);
        if (two) {
            _tile_loadd(1, o + j * 16 + 16, ldo);
            _tile_loadd(3, o1 + j * 16 + 16, ldo);
        }
        for (int kc = 0; kc < n / KEYS; kc++) {
            const uint16_t *v0 = vp + ((size_t)(kc0 + kc) * nt + j) * TILE_ELEMS;
            _tile_loadd(4, p + kc * KEYS, ldp);
            _tile_loadd(5, p + 16 * (size_t)n + kc * KEYS, ldp);
            _tile_loadd(6, v0, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(2, 5, 6);
            if (two) {
                _tile_loadd(7, v0 + TILE_ELEMS, 64);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(3, 5, 7);
            }
        }
        _tile_stored(0, o + j * 16, ldo);
        _tile_stored(2, o1 + j * 16, ldo);
        if (two) {
            _tile_stored(1, o + j * 16 + 16, ldo);
            _tile_stored(3, o1 + j * 16 + 16, ldo);
        }
    }
}

/* 2^t for t <= 0: 2^n by vscalefps (flushing to 0 far below) times a
 * degree-4 fit of 2^f on [-0.5, 0.5] (relative error 2.7e-6: P is rounded
 * to bf16 next, 1e-3, and two fewer multiply-adds than f32's own exp2
 * matter, as this is the kernel's bound). */
AMX_FN static inline __m512 exp2_nonpos(__m512 t)
{
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(9.560510205e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.591703917e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402498111e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931219677e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.999991909e-1f));
    return _mm512_scalef_ps(p, n);
}

/* One row of a key block, online: s holds n raw scores (the first `valid`
 * real), c = scale * log2(e), and *m is the running max of c * s. When the
 * block raises it, the row's outputs so far (o, its sum column included)
 * are scaled down to the new max first. Then p = bf16(2^(c * s - *m)), 0
 * past valid. */
AMX_FN static void softmax_block_row(uint16_t *p, const float *s, int n, int valid, float c, float *m, float *o,
                                     int od)
{
    __m512 mx = _mm512_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 16 <= valid; i += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(s + i));
    if (i < valid) mx = _mm512_mask_max_ps(mx, (__mmask16)((1u << (valid - i)) - 1), mx, _mm512_loadu_ps(s + i));
    const float bm = _mm512_reduce_max_ps(mx) * c;
    if (bm > *m) {
        if (*m != -INFINITY) {
            const __m512 a = _mm512_set1_ps(exp2f(*m - bm));
            for (int d = 0; d < od; d += 16) _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), a));
        }
        *m = bm;
    }
    const __m512 vm = _mm512_set1_ps(*m), vc = _mm512_set1_ps(c);
    for (i = 0; i + 16 <= valid; i += 16) {
        __m512 e = exp2_nonpos(_mm512_fmsub_ps(_mm512_loadu_ps(s + i), vc, vm));
        _mm256_storeu_si256((__m256i *)(p + i), (__m256i)_mm512_cvtneps_pbh(e));
    }
    if (i < valid) {
        const __mmask16 k = (__mmask16)((1u << (valid - i)) - 1);
        __m512 e = _mm512_maskz_mov_ps(k, exp2_nonpos(_mm512_fmsub_ps(_mm512_loadu_ps(s + i), vc, vm)));
        _mm256_storeu_si256((__m256i *)(p + i), (__m256i)_mm512_cvtneps_pbh(e));
        i += 16;
    }
    for (; i < n; i += 16) _mm256_storeu_si256((__m256i *)(p + i), _mm256_setzero_si256());
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
} amx_job;

AMX_FN static void run_block(const amx_job *j, uint16_t *qb, float *s, uint16_t *p, float *o, int q0, int h)
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
        scores(s, qb, kp, k0 / 16, n, j->Dk);
        for (int r = 0; r < ROWS; r++) {
            const int i = q0 + r, seen = j->causal && i + 1 < j->Tk ? i + 1 : j->Tk;
            const int valid = seen - k0 < 0 ? 0 : seen - k0 > n ? n : seen - k0;
            softmax_block_row(p + (size_t)r * n, s + (size_t)r * n, n, valid, c, &m[r], o + (size_t)r * od, od);
        }
        accumulate_values(o, p, vp, k0 / KEYS, n, j->nt);
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

AMX_FN static void pack_item(const amx_job *j, uint16_t *kp, uint16_t *vp, input k, input v, int64_t at,
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

sdw_status sdw_attention_amx(sdw_backend *be, const sdw_attn_args *a, float *out, uint16_t *out_bf)
{
    const int Tq = a->Tq, Tk = a->Tk, H = a->H, D = a->D;
    amx_job j = { .q = { a->q, a->bf }, .q_stride = a->q_stride, .Tq = Tq, .Tk = Tk, .H = H, .D = D,
                  .causal = a->causal, .scale = 1.0f / sqrtf((float)D) };
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
            sdw_amx_configure_tiles();
#pragma omp for schedule(dynamic)
            for (int t = 0; t < n_rb * H; t++) run_block(&j, qb, s, p, o, t % n_rb * ROWS, t / n_rb);
            sdw_amx_release_tiles();
        }
    }
    return SDW_OK;
}
