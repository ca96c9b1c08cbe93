/* attention.c: memory-efficient multi-head attention. sdw_attention hands
 * the work to our own kernels where they run (attention_bf16.c in bf16 on
 * AMX or AVX-512-BF16, attention_flash.c in f32 on AVX2 / AVX-512); what
 * follows is the oneDNN path that serves everything else:
 *
 * Per batch item, K and V are packed head-major ([heads, Tk, D], bf16 in BF16
 * precision, K zero-padded to a multiple of 32 columns there); then the
 * queries are cut into blocks of rows x heads whose scores (f32, plus bf16
 * probabilities) fit one thread's budget, about its L2. Each OpenMP thread
 * takes whole blocks and runs them start to finish on its own:
 *   Qc [heads, rows, D]   packed
 *   S = Qc K^T            oneDNN batched matmul, f32, on the calling thread
 *   P = exp(S / sqrt(D) - max) with the causal mask, in C (bf16 P in BF16)
 *   Oc = P V / rowsum(P)  oneDNN batched matmul, normalised while scattered
 *                         into out.
 * So a block's scores never leave its core's cache, and the threads meet
 * once per batch item instead of at every step of every block (which, on a
 * busy machine, is where the time went). Packing costs D/Tk of the score
 * traffic and buys the dense layouts oneDNN's brgemm (AMX) kernels take;
 * strided views fall back to a slower gemm. */
#include "backend/amx.h"
#include "backend/attention_bf16.h"
#include "backend/attention_flash.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>

/* The primitive for c[batch, M, N] = a[batch, M, K] @ b, with b [batch, K, N]
 * dense, or stored as [batch, N, K] when b_t (so K^T needs no transpose). */
static sdw_status get_matmul(sdw_backend *be, dnnl_data_type_t dt, int64_t batch, int64_t M, int64_t N, int64_t K,
                             bool b_t, sdw_prim **out)
{
    int64_t key[SDW_KEY_MAX] = { SDW_OP_MATMUL, dt, batch, M, N, K, b_t };
    *out = sdw_prim_find(be, key, NULL);
    if (*out) return SDW_OK;
    dnnl_memory_desc_t ma, mb, mc;
    dnnl_dims_t da = { batch, M, K }, db = { batch, K, N }, dc = { batch, M, N };
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&ma, 3, da, dt, dnnl_abc), "attention matmul");
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&mb, 3, db, dt, b_t ? dnnl_acb : dnnl_abc), "attention matmul");
    SDW_DNNL(dnnl_memory_desc_init_by_tag(&mc, 3, dc, dnnl_f32, dnnl_abc), "attention matmul");
    dnnl_matmul_desc_t d;
    SDW_DNNL(dnnl_matmul_desc_init(&d, &ma, &mb, NULL, &mc), "attention matmul");
    /* These run inside our parallel region, where oneDNN gives them one
     * thread; a primitive created for more splits its work for that many and
     * would leave all but the first share undone. */
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    sdw_status st = sdw_prim_create(be, key, NULL, &d, NULL, out);
    omp_set_num_threads(threads);
    return st;
}

/* Element i of an f32 tensor, or of a bf16 one when bf. */
static const void *elem(const void *p, bool bf, int64_t i)
{
    return (const char *)p + (bf ? sizeof(uint16_t) : sizeof(float)) * i;
}

/* dst[h, t, :] = src[t * stride + h * D + :] for t < T, zero-padded to Dp
 * columns, converted to bf16 when bf (src_bf: src is bf16 already). */
static void pack_heads(void *dst, const void *src, bool src_bf, int64_t stride, int T, int H, int D, int Dp, bool bf,
                       bool par)
{
#pragma omp parallel for schedule(static) if (par && (int64_t)T * H * D > 32768)
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < H; h++) {
            const void *s = elem(src, src_bf, t * stride + (int64_t)h * D);
            size_t o = ((size_t)h * T + t) * Dp;
            if (src_bf) {
                memcpy((uint16_t *)dst + o, s, sizeof(uint16_t) * (size_t)D);
                memset((uint16_t *)dst + o + D, 0, sizeof(uint16_t) * (size_t)(Dp - D));
            } else if (bf) {
                sdw_cvt_bf16_span((uint16_t *)dst + o, s, (size_t)D);
                memset((uint16_t *)dst + o + D, 0, sizeof(uint16_t) * (size_t)(Dp - D));
            } else {
                sdw_copy_span((float *)dst + o, s, (size_t)D);
                memset((float *)dst + o + D, 0, sizeof(float) * (size_t)(Dp - D));
            }
        }
    }
}

/* out[i * stride + h * D + :] = o[h, i, :] * inv[h * T + i] for i < T, h < H:
 * the softmax normalisation, applied to D outputs instead of Tk scores. */
static void unpack_heads(float *out, int64_t stride, const float *o, const float *inv, int T, int H, int D)
{
    for (int i = 0; i < T; i++)
        for (int h = 0; h < H; h++)
            sdw_scale_copy_span(out + i * stride + (int64_t)h * D, o + ((size_t)h * T + i) * D,
                                inv[(size_t)h * T + i], (size_t)D);
}

/* Picks the block of queries (rows) x heads whose scores fit the budget:
 * all heads with as many rows as fit, but when that is under min_rows, fewer
 * heads with min_rows rows, so the scores stay cache-sized for a long Tk
 * while the matmuls keep enough rows to fill their tiles. */
static void choose_block(size_t budget, int Tq, int Tk, int H, int *rows, int *hb)
{
    const size_t per = (size_t)Tk * 6; /* f32 scores + bf16 probabilities per row and head */
    const int min_rows = 64;
    int64_t c = (int64_t)(budget / (per * H)), h = H;
    if (c < min_rows && c < Tq) {
        c = Tq < min_rows ? Tq : min_rows;
        h = (int64_t)(budget / (per * c));
        if (h < 1) {
            h = 1;
            c = (int64_t)(budget / per);
        }
    }
    if (c > 16) c &= ~(int64_t)15; /* whole row tiles for the matmul */
    *rows = (int)(c < 1 ? 1 : c > Tq ? Tq : c);
    *hb = (int)(h > H ? H : h);
}

/* One thread's buffers for one block. */
typedef struct {
    void *q;
    float *s;
    uint16_t *p;
    float *o, *inv;
    void *scratchpad;
} block_buf;

typedef struct {
    const void *q;       /* the batch item's queries */
    int64_t q_stride;
    bool q_bf;
    const char *kp, *vp; /* packed K, V of the batch item */
    float *out;          /* rows of the batch item */
    int Tq, Tk, H, D, Dk, C, HB;
    size_t esz;
    bool bf, causal;
    float scale;
    sdw_prim *qk[2][2], *pv[2][2]; /* [tail rows][tail heads] */
} attn_job;

static sdw_status run_block(sdw_backend *be, const attn_job *j, const block_buf *buf, int tid, int q0, int h0)
{
    const int c = j->Tq - q0 < j->C ? j->Tq - q0 : j->C, hb = j->H - h0 < j->HB ? j->H - h0 : j->HB;
    const sdw_prim *qk = j->qk[c != j->C][hb != j->HB], *pv = j->pv[c != j->C][hb != j->HB];
    pack_heads(buf->q, elem(j->q, j->q_bf, (int64_t)q0 * j->q_stride + (int64_t)h0 * j->D), j->q_bf, j->q_stride, c,
               hb, j->D, j->Dk, j->bf, false);
    SDW_TRY(sdw_prim_exec_thread(be, qk, tid, buf->scratchpad, buf->q,
                                 j->kp + j->esz * (size_t)h0 * j->Tk * j->Dk, buf->s));
    const int64_t rows = (int64_t)hb * c;
    for (int64_t r = 0; r < rows; r++) {
        int64_t i = q0 + r % c;
        int valid = j->causal && i + 1 < j->Tk ? (int)(i + 1) : j->Tk;
        buf->inv[r] = sdw_attn_softmax_row(buf->s + r * j->Tk, j->Tk, valid, j->scale);
    }
    /* One conversion over the block, not a short one per row (Tk = 77). */
    if (j->bf) sdw_cvt_bf16_span(buf->p, buf->s, (size_t)rows * j->Tk);
    SDW_TRY(sdw_prim_exec_thread(be, pv, tid, buf->scratchpad, j->bf ? (const void *)buf->p : buf->s,
                                 j->vp + j->esz * (size_t)h0 * j->Tk * j->D, buf->o));
    unpack_heads(j->out + (int64_t)q0 * j->H * j->D + (int64_t)h0 * j->D, (int64_t)j->H * j->D, buf->o, buf->inv,
                 c, hb, j->D);
    return SDW_OK;
}

/* Rounds up to whole cache lines, so threads' slices never share one. */
static size_t lines(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/* The oneDNN path: out f32 [B, Tq, H * D]; *impl: the implementation of the
 * main blocks' Q K^T (the bench's kernel name). */
static sdw_status attention_onednn(sdw_backend *be, const sdw_attn_args *a, float *out, const char **impl)
{
    const int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, D = a->D;
    const int64_t kv_stride = a->kv_stride;
    attn_job j = { .q_stride = a->q_stride, .q_bf = a->bf, .Tq = Tq, .Tk = Tk, .H = H, .D = D, .causal = a->causal,
                   .bf = be->precision == SDW_PRECISION_BF16, .scale = 1.0f / sqrtf((float)D) };
    const dnnl_data_type_t dt = j.bf ? dnnl_bf16 : dnnl_f32;
    j.esz = j.bf ? 2 : 4;
    /* AMX multiplies bf16 in 32-deep slices; a ragged head_dim (SD1's 40)
     * runs a tail path at under half the speed of zero-padding it to 64. */
    j.Dk = j.bf ? (D + 31) / 32 * 32 : D;
    const int nt = omp_get_max_threads();
    choose_block(be->attn_budget / (size_t)nt, Tq, Tk, H, &j.C, &j.HB);
    /* Enough blocks to keep every thread busy (a few each, for balance), as
     * long as a block keeps 16 rows. */
    const int n_h = (H + j.HB - 1) / j.HB, want = 4 * nt;
    if ((Tq + j.C - 1) / j.C * n_h < want) {
        int c = ((Tq * n_h + want - 1) / want + 15) & ~15;
        if (c < j.C) j.C = c;
    }

    /* Every primitive the blocks need exists before the threads start. */
    size_t scratchpad = 0;
    for (int tr = 0; tr < 2; tr++) {
        for (int th = 0; th < 2; th++) {
            int c = tr ? Tq % j.C : j.C, hb = th ? H % j.HB : j.HB;
            if (c == 0 || hb == 0) continue;
            SDW_TRY(get_matmul(be, dt, hb, c, Tk, j.Dk, true, &j.qk[tr][th]));
            SDW_TRY(get_matmul(be, dt, hb, c, D, Tk, false, &j.pv[tr][th]));
            if (j.qk[tr][th]->scratch_bytes > scratchpad) scratchpad = j.qk[tr][th]->scratch_bytes;
            if (j.pv[tr][th]->scratch_bytes > scratchpad) scratchpad = j.pv[tr][th]->scratch_bytes;
        }
    }
    *impl = j.qk[0][0] ? j.qk[0][0]->impl : NULL;
    SDW_TRY(sdw_backend_thread_streams(be, nt));

    const size_t blk = (size_t)j.HB * j.C;
    const size_t sz_q = lines(j.esz * blk * j.Dk), sz_s = lines(sizeof(float) * blk * Tk);
    const size_t sz_p = j.bf ? lines(sizeof(uint16_t) * blk * Tk) : 0, sz_o = lines(sizeof(float) * blk * D);
    const size_t sz_inv = lines(sizeof(float) * blk), sz_pad = lines(scratchpad);
    char *kp = sdw_scratch(be, SDW_SCR_ATT_K, j.esz * H * Tk * j.Dk);
    char *vp = sdw_scratch(be, SDW_SCR_ATT_V, j.esz * H * Tk * D);
    char *qb = sdw_scratch(be, SDW_SCR_ATT_Q, sz_q * nt);
    char *sb = sdw_scratch(be, SDW_SCR_ATT_S, sz_s * nt);
    char *pb = j.bf ? sdw_scratch(be, SDW_SCR_ATT_P, sz_p * nt) : NULL;
    char *ob = sdw_scratch(be, SDW_SCR_ATT_O, sz_o * nt);
    char *lb = sdw_scratch(be, SDW_SCR_ATT_L, sz_inv * nt);
    char *padb = sdw_scratch(be, SDW_SCR_ONEDNN, sz_pad * nt);
    if (!kp || !vp || !qb || !sb || (j.bf && !pb) || !ob || !lb || !padb) return SDW_ERR_NOMEM;
    j.kp = kp;
    j.vp = vp;

    const int n_q = (Tq + j.C - 1) / j.C;
    sdw_status failed = SDW_OK;
    char why[256] = "";
    for (int b = 0; b < B && failed == SDW_OK; b++) {
        pack_heads(kp, elem(a->k, a->bf, (int64_t)b * Tk * kv_stride), a->bf, kv_stride, Tk, H, D, j.Dk, j.bf, true);
        pack_heads(vp, elem(a->v, a->bf, (int64_t)b * Tk * kv_stride), a->bf, kv_stride, Tk, H, D, D, j.bf, true);
        j.q = elem(a->q, a->bf, (int64_t)b * Tq * a->q_stride);
        j.out = out + (int64_t)b * Tq * H * D;
#pragma omp parallel num_threads(nt) if (n_q * n_h > 1)
        {
            const int tid = omp_get_thread_num();
            const block_buf buf = { qb + sz_q * tid, (float *)(sb + sz_s * tid),
                                    pb ? (uint16_t *)(pb + sz_p * tid) : NULL, (float *)(ob + sz_o * tid),
                                    (float *)(lb + sz_inv * tid), padb + sz_pad * tid };
#pragma omp for schedule(dynamic)
            for (int t = 0; t < n_q * n_h; t++) {
                sdw_status st;
#pragma omp atomic read
                st = failed;
                if (st != SDW_OK) continue;
                st = run_block(be, &j, &buf, tid, t / n_h * j.C, t % n_h * j.HB);
                if (st != SDW_OK) {
#pragma omp critical(sdw_attention_error)
                    if (failed == SDW_OK) { /* the message is in this thread's error buffer */
                        snprintf(why, sizeof why, "%s", sdw_last_error());
#pragma omp atomic write
                        failed = st;
                    }
                }
            }
        }
    }
    if (failed != SDW_OK) return sdw_fail(failed, "attention: %s", why);
    return SDW_OK;
}

static sdw_status check_shape(const sdw_attn_args *a)
{
    if (a->B <= 0 || a->Tq <= 0 || a->Tk <= 0 || a->H <= 0 || a->D <= 0 || a->q_stride < (int64_t)a->H * a->D ||
        a->kv_stride < (int64_t)a->H * a->D)
        return sdw_fail(SDW_ERR_INVALID_ARG, "attention: bad shape B %d Tq %d Tk %d heads %d dim %d", a->B, a->Tq,
                        a->Tk, a->H, a->D);
    return SDW_OK;
}

/* Runs a on the backend's path and writes out (f32) or, when out is NULL,
 * out_bf (bf16, BF16 precision only). */
static sdw_status attention(sdw_backend *be, const sdw_attn_args *a, float *out, uint16_t *out_bf)
{
    SDW_TRY(check_shape(a));
    double t0 = sdw_be_now();
    const char *path;
    if (be->own_attention && be->precision == SDW_PRECISION_F32) {
        path = sdw_attention_flash_kernel();
        SDW_TRY(sdw_attention_flash_f32(be, a->q, a->q_stride, a->k, a->v, a->kv_stride, a->B, a->Tq, a->Tk, a->H,
                                        a->D, a->causal, out));
    } else if (be->own_attention) {
        if (sdw_amx_usable()) {
            path = sdw_bf16_products_amx.name;
            SDW_TRY(sdw_attention_bf16(be, a, &sdw_bf16_products_amx, out, out_bf));
        } else {
            path = "attention_dp avx512_bf16 (queries in lanes)";
            SDW_TRY(sdw_attention_dp(be, a, out, out_bf));
        }
    } else {
        const char *impl = NULL;
        float *o = out;
        const size_t n = (size_t)a->B * a->Tq * a->H * a->D;
        if (!o && !(o = sdw_scratch(be, SDW_SCR_ATT_OUT, sizeof(float) * n))) return SDW_ERR_NOMEM;
        SDW_TRY(attention_onednn(be, a, o, &impl));
        path = sdw_kernel_name(be, "oneDNN matmuls + C softmax", impl);
        if (!out) sdw_cvt_bf16(out_bf, o, n);
    }
    const int dims[SDW_OP_DIMS] = { a->B, a->Tq, a->Tk, a->H, a->D, a->causal };
    sdw_count_op(be, SDW_OPK_ATTENTION, t0, 4.0 * a->B * a->H * (double)a->Tq * a->Tk * a->D, path, dims);
    return SDW_OK;
}

sdw_status sdw_attention(sdw_backend *be, const float *q, int64_t q_stride, const float *k, const float *v,
                         int64_t kv_stride, int B, int Tq, int Tk, int heads, int head_dim, bool causal,
                         float *out)
{
    const sdw_attn_args a = { q, k, v, q_stride, kv_stride, false, B, Tq, Tk, heads, head_dim, causal };
    return attention(be, &a, out, NULL);
}

sdw_status sdw_attention_act(sdw_backend *be, const void *q, int64_t q_stride, const void *k, const void *v,
                             int64_t kv_stride, int B, int Tq, int Tk, int heads, int head_dim, bool causal,
                             void *act)
{
    const bool bf = be->precision == SDW_PRECISION_BF16;
    const sdw_attn_args a = { q, k, v, q_stride, kv_stride, bf, B, Tq, Tk, heads, head_dim, causal };
    return attention(be, &a, bf ? NULL : act, bf ? act : NULL);
}
