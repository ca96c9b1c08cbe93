/* lora_delta.c: see lora_delta.h. Products go through oneDNN's sgemm, which
 * is multithreaded; the Tucker contractions are small (rank x rank x k x k). */
#include "models/lora_delta.h"
#include "core/error.h"
#include <dnnl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HAS(r) (p->t[r] != NULL)

/* C[M, N] = alpha A[M, K] @ B[K, N] + beta C (row-major; ta: A given as [K, M]). */
static sdw_status gemm_ab(bool ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A, const float *B,
                          float beta, float *C)
{
    dnnl_status_t s = dnnl_sgemm(ta ? 'T' : 'N', 'N', M, N, K, alpha, A, ta ? M : K, B, N, beta, C, N);
    return s == dnnl_success ? SDW_OK : sdw_fail(SDW_ERR_BACKEND, "LoRA: sgemm failed (%d)", (int)s);
}

static sdw_status gemm(bool ta, int64_t M, int64_t N, int64_t K, const float *A, const float *B, float *C)
{
    return gemm_ab(ta, M, N, K, 1.0f, A, B, 0.0f, C);
}

static sdw_status misfit(const char *key, const char *what)
{
    return sdw_fail(SDW_ERR_FORMAT, "LoRA module %s: %s does not fit the model's layer (is the LoRA for another "
                    "model family?)", key, what);
}

/* out[P, Q, kh, kw] = sum_ij t[i, j, kh, kw] a[i, P] b[j, Q] (LyCORIS' Tucker form). */
static sdw_status tucker(const sdw_lora_parts *p, const char *key, sdw_lora_role rt, sdw_lora_role ra,
                         sdw_lora_role rb, sdw_lora_target_shape s, int P, int Q, float *out)
{
    int r1 = (int)p->shape[rt][0], r2 = (int)p->shape[rt][1], kk = s.kh * s.kw;
    if (p->ndim[rt] != 4 || p->shape[rt][2] != s.kh || p->shape[rt][3] != s.kw || p->numel[ra] != (int64_t)r1 * P ||
        p->numel[rb] != (int64_t)r2 * Q)
        return misfit(key, "Tucker core");
    /* tmp[i, Q, k] = sum_j t[i, j, k] b[j, Q] */
    float *tmp = calloc((size_t)r1 * Q * kk, sizeof *tmp);
    if (!tmp) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    const float *t = p->t[rt], *b = p->t[rb];
    for (int i = 0; i < r1; i++)
        for (int j = 0; j < r2; j++)
            for (int q = 0; q < Q; q++)
                for (int k = 0; k < kk; k++)
                    tmp[((size_t)i * Q + q) * kk + k] += t[((size_t)i * r2 + j) * kk + k] * b[(size_t)j * Q + q];
    sdw_status st = gemm(true, P, (int64_t)Q * kk, r1, p->t[ra], tmp, out);
    free(tmp);
    return st;
}

/* out [P, cols] = a @ b where a is [P, r] and b is [r, cols]. */
static sdw_status product(const sdw_lora_parts *p, const char *key, sdw_lora_role ra, sdw_lora_role rb, int64_t P,
                          int64_t cols, float *out, int *rank)
{
    int64_t r = p->shape[rb][0];
    if (r <= 0 || p->numel[ra] != P * r || p->numel[rb] != r * cols || p->shape[ra][0] != P)
        return misfit(key, "a factor's shape");
    *rank = (int)r;
    return gemm(false, P, cols, r, p->t[ra], p->t[rb], out);
}

static float alpha_over(const sdw_lora_parts *p, int rank)
{
    return HAS(SDW_LORA_ALPHA) && rank > 0 ? p->t[SDW_LORA_ALPHA][0] / (float)rank : 1.0f;
}

/* The element-wise loops stay serial: they are memory-bound, and a parallel
 * region per module costs more in barriers than it saves. */
static void scale(float *x, size_t n, float s)
{
    if (s == 1.0f) return;
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

static sdw_status lora(const sdw_lora_parts *p, const char *key, sdw_lora_target_shape s, float *delta)
{
    size_t cols = (size_t)s.in * s.kh * s.kw;
    int rank;
    if (!HAS(SDW_LORA_UP) || !HAS(SDW_LORA_DOWN)) return misfit(key, "a LoRA without both up and down");
    if (!HAS(SDW_LORA_MID)) {
        SDW_TRY(product(p, key, SDW_LORA_UP, SDW_LORA_DOWN, s.rows, (int64_t)cols, delta, &rank));
    } else {
        /* LoCon with a Tucker core: down [r, in] (1x1), mid [r, r, kh, kw], up [rows, r]. */
        int r = (int)p->shape[SDW_LORA_DOWN][0];
        if (p->numel[SDW_LORA_DOWN] != (int64_t)r * s.in || p->numel[SDW_LORA_UP] != (int64_t)s.rows * r)
            return misfit(key, "a factor's shape");
        /* down as [r, in] is b of the Tucker form; up is a, given [rows, r]: transpose it. */
        float *upT = malloc((size_t)r * s.rows * sizeof *upT);
        if (!upT) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        for (int i = 0; i < s.rows; i++)
            for (int k = 0; k < r; k++) upT[(size_t)k * s.rows + i] = p->t[SDW_LORA_UP][(size_t)i * r + k];
        sdw_lora_parts q = *p;
        q.t[SDW_LORA_UP] = upT;
        q.numel[SDW_LORA_UP] = (int64_t)r * s.rows;
        sdw_status st = tucker(&q, key, SDW_LORA_MID, SDW_LORA_UP, SDW_LORA_DOWN, s, s.rows, s.in, delta);
        free(upT);
        SDW_TRY(st);
        rank = r;
    }
    scale(delta, (size_t)s.rows * cols, alpha_over(p, rank));
    return SDW_OK;
}

/* One Hadamard factor: a @ b, or through the Tucker core. */
static sdw_status hada_factor(const sdw_lora_parts *p, const char *key, sdw_lora_role a, sdw_lora_role b,
                              sdw_lora_role t, sdw_lora_target_shape s, float *out, int *rank)
{
    if (!HAS(a) || !HAS(b)) return misfit(key, "a LoHa without its factors");
    if (HAS(t)) {
        *rank = (int)p->shape[b][0];
        return tucker(p, key, t, a, b, s, s.rows, s.in, out);
    }
    return product(p, key, a, b, s.rows, (int64_t)s.in * s.kh * s.kw, out, rank);
}

static sdw_status loha(const sdw_lora_parts *p, const char *key, sdw_lora_target_shape s, float *delta)
{
    size_t n = (size_t)s.rows * s.in * s.kh * s.kw;
    float *w2 = malloc(n * sizeof *w2);
    if (!w2) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    int r1, r2;
    sdw_status st = hada_factor(p, key, SDW_LORA_HADA_W1_A, SDW_LORA_HADA_W1_B, SDW_LORA_HADA_T1, s, delta, &r1);
    if (st == SDW_OK)
        st = hada_factor(p, key, SDW_LORA_HADA_W2_A, SDW_LORA_HADA_W2_B, SDW_LORA_HADA_T2, s, w2, &r2);
    if (st == SDW_OK) {
        float a = alpha_over(p, r1);
        for (size_t i = 0; i < n; i++) delta[i] *= w2[i] * a;
    }
    free(w2);
    return st;
}

/* A LoKr factor as [P, Q] (Q includes the kernel for w2): full, or a
 * product (then *rank is its inner dimension, else left alone). */
static sdw_status lokr_factor(const sdw_lora_parts *p, const char *key, sdw_lora_role full, sdw_lora_role a,
                              sdw_lora_role b, sdw_lora_role t, sdw_lora_target_shape s, float **out, int64_t *P,
                              int64_t *Q, int *rank)
{
    *out = NULL;
    if (HAS(full)) {
        *P = p->shape[full][0];
        *Q = p->numel[full] / (*P ? *P : 1);
        size_t n = (size_t)p->numel[full];
        if (!(*out = malloc((n ? n : 1) * sizeof **out))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        memcpy(*out, p->t[full], n * sizeof **out);
        return SDW_OK;
    }
    if (!HAS(a) || !HAS(b) || p->ndim[b] < 2) return misfit(key, "a LoKr without its factors");
    *rank = (int)p->shape[b][0];
    bool core = t != SDW_LORA_ROLE_COUNT && HAS(t);
    if (core) {
        /* Tucker: a [r, P], b [r, Qin], t [r, r, kh, kw] -> [P, Qin, kh, kw]. */
        if (p->ndim[a] < 2) return misfit(key, "a LoKr factor");
        *P = p->shape[a][1];
        *Q = p->shape[b][1] * s.kh * s.kw;
    } else {
        *P = p->shape[a][0];
        *Q = p->numel[b] / p->shape[b][0];
    }
    if (*P <= 0 || *Q <= 0 || *P * *Q > (int64_t)1 << 31) return misfit(key, "a LoKr factor");
    if (!(*out = malloc((size_t)(*P * *Q) * sizeof **out))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    if (core) return tucker(p, key, t, a, b, s, (int)*P, (int)(*Q / (s.kh * s.kw)), *out);
    int r;
    return product(p, key, a, b, *P, *Q, *out, &r);
}

static sdw_status lokr(const sdw_lora_parts *p, const char *key, sdw_lora_target_shape s, float *delta)
{
    int kk = s.kh * s.kw, rank1 = 0, rank2 = 0;
    int64_t a, b, c, d;   /* w1 [a, b]; w2 [c, d] with d = in-channels x kernel */
    float *w1 = NULL, *w2 = NULL;
    sdw_status st = lokr_factor(p, key, SDW_LORA_LOKR_W1, SDW_LORA_LOKR_W1_A, SDW_LORA_LOKR_W1_B, SDW_LORA_ROLE_COUNT,
                                s, &w1, &a, &b, &rank1);
    if (st == SDW_OK)
        st = lokr_factor(p, key, SDW_LORA_LOKR_W2, SDW_LORA_LOKR_W2_A, SDW_LORA_LOKR_W2_B, SDW_LORA_LOKR_T2, s, &w2,
                         &c, &d, &rank2);
    if (st == SDW_OK) {
        /* w2's columns include the kernel: d counts in-channels times kk. */
        int64_t din = d / kk;
        if (d % kk || a * c != s.rows || b * din != s.in) st = misfit(key, "the Kronecker factors' shape");
    }
    if (st == SDW_OK) {
        int64_t din = d / kk, cols = (int64_t)s.in * kk;
        /* delta[(i1 c + i2), (j1 din + j2) kk + k] = w1[i1, j1] w2[i2, j2 kk + k] */
        for (int64_t i1 = 0; i1 < a; i1++)
            for (int64_t i2 = 0; i2 < c; i2++)
                for (int64_t j1 = 0; j1 < b; j1++) {
                    float v = w1[i1 * b + j1];
                    float *dst = delta + (i1 * c + i2) * cols + j1 * din * kk;
                    const float *src = w2 + i2 * d;
                    for (int64_t j = 0; j < d; j++) dst[j] = v * src[j];
                }
        /* alpha / rank applies only when a factor was decomposed (ComfyUI's rule). */
        int rank = rank1 ? rank1 : rank2;
        scale(delta, (size_t)s.rows * cols, rank ? alpha_over(p, rank) : 1.0f);
    }
    free(w1);
    free(w2);
    return st;
}

sdw_status sdw_lora_delta(const sdw_lora_parts *p, const char *key, sdw_lora_target_shape s, float *delta)
{
    if (HAS(SDW_LORA_UP) || HAS(SDW_LORA_DOWN)) return lora(p, key, s, delta);
    if (HAS(SDW_LORA_HADA_W1_A) || HAS(SDW_LORA_HADA_W1_B)) return loha(p, key, s, delta);
    if (HAS(SDW_LORA_LOKR_W1) || HAS(SDW_LORA_LOKR_W1_A) || HAS(SDW_LORA_LOKR_W2) || HAS(SDW_LORA_LOKR_W2_A))
        return lokr(p, key, s, delta);
    return sdw_fail(SDW_ERR_UNSUPPORTED, "LoRA module %s: no weights of a format we merge", key);
}

sdw_status sdw_lora_merge(const sdw_lora_parts *p, const char *key, sdw_lora_target_shape s, float strength,
                          float *delta, float *W, float *work)
{
    size_t rows = (size_t)s.rows, cols = (size_t)s.in * s.kh * s.kw, n = rows * cols;
    if (HAS(SDW_LORA_UP) && HAS(SDW_LORA_DOWN) && !HAS(SDW_LORA_MID) && !HAS(SDW_LORA_DORA_SCALE)) {
        /* Plain LoRA, the common case: W += strength alpha / r up @ down in one pass. */
        int64_t r = p->shape[SDW_LORA_DOWN][0];
        if (r <= 0 || p->numel[SDW_LORA_UP] != (int64_t)rows * r || p->numel[SDW_LORA_DOWN] != r * (int64_t)cols ||
            p->shape[SDW_LORA_UP][0] != (int64_t)rows)
            return misfit(key, "a factor's shape");
        return gemm_ab(false, (int64_t)rows, (int64_t)cols, r, strength * alpha_over(p, (int)r), p->t[SDW_LORA_UP],
                       p->t[SDW_LORA_DOWN], 1.0f, W);
    }
    SDW_TRY(sdw_lora_delta(p, key, s, delta));
    if (!HAS(SDW_LORA_DORA_SCALE)) {
        for (size_t i = 0; i < n; i++) W[i] += strength * delta[i];
        return SDW_OK;
    }
    /* DoRA: the magnitude is per output row, or per input channel (over rows and kernel). */
    const float *m = p->t[SDW_LORA_DORA_SCALE];
    int64_t mn = p->numel[SDW_LORA_DORA_SCALE];
    bool out_axis = mn == (int64_t)rows;
    if (!out_axis && mn != s.in) return misfit(key, "dora_scale");
    for (size_t i = 0; i < n; i++) work[i] = W[i] + delta[i];
    if (out_axis) {
        for (size_t r = 0; r < rows; r++) {
            double ss = 0;
            for (size_t c = 0; c < cols; c++) ss += (double)work[r * cols + c] * work[r * cols + c];
            float f = m[r] / (float)sqrt(ss);
            for (size_t c = 0; c < cols; c++) work[r * cols + c] *= f;
        }
    } else {
        size_t kk = (size_t)s.kh * s.kw;
        for (int i = 0; i < s.in; i++) {
            double ss = 0;
            for (size_t r = 0; r < rows; r++)
                for (size_t k = 0; k < kk; k++) ss += (double)work[r * cols + i * kk + k] * work[r * cols + i * kk + k];
            float f = m[i] / (float)sqrt(ss);
            for (size_t r = 0; r < rows; r++)
                for (size_t k = 0; k < kk; k++) work[r * cols + i * kk + k] *= f;
        }
    }
    for (size_t i = 0; i < n; i++) W[i] += strength * (work[i] - W[i]);
    return SDW_OK;
}

/* ---- the change as exact factors U @ D (compact layers keep it beside them) ---- */

/* A LoKr factor X [P, Q] as L [P, k] @ R [k, Q]: its two parts, or a full X
 * beside an identity on its shorter side (the Kronecker product of two
 * products is the product of the two Kronecker products). */
typedef struct {
    const float *L, *R;
    float *eye;               /* the identity made for a full factor, or NULL */
    int64_t P, Q, k;
    bool parts;               /* given as a product (alpha / rank applies) */
} kfactor;

static int64_t kfactor_rank(const sdw_lora_parts *p, sdw_lora_role full, sdw_lora_role a, sdw_lora_role b)
{
    if (HAS(full)) {
        int64_t P = p->shape[full][0], Q = P > 0 ? p->numel[full] / P : 0;
        return P < Q ? P : Q;
    }
    return HAS(a) && HAS(b) ? p->shape[b][0] : 0;
}

static sdw_status kfactor_make(const sdw_lora_parts *p, const char *key, sdw_lora_role full, sdw_lora_role a,
                               sdw_lora_role b, kfactor *f)
{
    *f = (kfactor){ 0 };
    if (!HAS(full)) {
        f->P = p->shape[a][0];
        f->k = p->shape[b][0];
        f->Q = f->k > 0 ? p->numel[b] / f->k : 0;
        if (f->P <= 0 || f->k <= 0 || p->numel[a] != f->P * f->k || p->numel[b] != f->k * f->Q)
            return misfit(key, "a LoKr factor");
        *f = (kfactor){ p->t[a], p->t[b], NULL, f->P, f->Q, f->k, true };
        return SDW_OK;
    }
    f->P = p->shape[full][0];
    f->Q = f->P > 0 ? p->numel[full] / f->P : 0;
    if (f->Q <= 0 || f->P * f->Q != p->numel[full]) return misfit(key, "a LoKr factor");
    f->k = f->P < f->Q ? f->P : f->Q;
    if (!(f->eye = calloc((size_t)(f->k * f->k), sizeof *f->eye))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < f->k; i++) f->eye[i * f->k + i] = 1.0f;
    f->L = f->P <= f->Q ? f->eye : p->t[full];
    f->R = f->P <= f->Q ? p->t[full] : f->eye;
    return SDW_OK;
}

/* out [m1 m2, n1 n2] = s kron(A [m1, n1], B [m2, n2]). */
static void kron(const float *A, int64_t m1, int64_t n1, const float *B, int64_t m2, int64_t n2, float s, float *out)
{
    for (int64_t i1 = 0; i1 < m1; i1++)
        for (int64_t i2 = 0; i2 < m2; i2++) {
            float *o = out + (i1 * m2 + i2) * n1 * n2;
            for (int64_t j1 = 0; j1 < n1; j1++) {
                const float a = s * A[i1 * n1 + j1];
                for (int64_t j2 = 0; j2 < n2; j2++) o[j1 * n2 + j2] = a * B[i2 * n2 + j2];
            }
        }
}

static bool linear_target(sdw_lora_target_shape s) { return s.kh == 1 && s.kw == 1; }

int sdw_lora_factor_rank(const sdw_lora_parts *p, sdw_lora_target_shape s)
{
    if (!linear_target(s) || HAS(SDW_LORA_DORA_SCALE)) return 0;
    int64_t r = 0;
    if (HAS(SDW_LORA_UP) || HAS(SDW_LORA_DOWN)) {
        if (HAS(SDW_LORA_UP) && HAS(SDW_LORA_DOWN) && !HAS(SDW_LORA_MID)) r = p->shape[SDW_LORA_DOWN][0];
    } else if (HAS(SDW_LORA_HADA_W1_A) || HAS(SDW_LORA_HADA_W1_B)) {
        if (HAS(SDW_LORA_HADA_W1_A) && HAS(SDW_LORA_HADA_W1_B) && HAS(SDW_LORA_HADA_W2_A) &&
            HAS(SDW_LORA_HADA_W2_B) && !HAS(SDW_LORA_HADA_T1) && !HAS(SDW_LORA_HADA_T2))
            r = p->shape[SDW_LORA_HADA_W1_B][0] * p->shape[SDW_LORA_HADA_W2_B][0];
    } else if (!HAS(SDW_LORA_LOKR_T2)) {
        r = kfactor_rank(p, SDW_LORA_LOKR_W1, SDW_LORA_LOKR_W1_A, SDW_LORA_LOKR_W1_B) *
            kfactor_rank(p, SDW_LORA_LOKR_W2, SDW_LORA_LOKR_W2_A, SDW_LORA_LOKR_W2_B);
    }
    return r > 0 && r <= (int64_t)1 << 24 ? (int)r : 0;
}

/* LoHa: (A1 B1) * (A2 B2) = U D with U[i, k r2 + l] = A1[i, k] A2[i, l] and
 * D[k r2 + l, j] = B1[k, j] B2[l, j]. */
static sdw_status loha_factors(const sdw_lora_parts *p, const char *key, sdw_lora_target_shape s, float strength,
                               float *U, float *D)
{
    const float *a1 = p->t[SDW_LORA_HADA_W1_A], *b1 = p->t[SDW_LORA_HADA_W1_B];
    const float *a2 = p->t[SDW_LORA_HADA_W2_A], *b2 = p->t[SDW_LORA_HADA_W2_B];
    const int64_t r1 = p->shape[SDW_LORA_HADA_W1_B][0], r2 = p->shape[SDW_LORA_HADA_W2_B][0], rows = s.rows, in = s.in;
    if (p->numel[SDW_LORA_HADA_W1_A] != rows * r1 || p->numel[SDW_LORA_HADA_W1_B] != r1 * in ||
        p->numel[SDW_LORA_HADA_W2_A] != rows * r2 || p->numel[SDW_LORA_HADA_W2_B] != r2 * in)
        return misfit(key, "a factor's shape");
    const float sc = strength * alpha_over(p, (int)r1);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t k = 0; k < r1; k++)
            for (int64_t l = 0; l < r2; l++) U[(i * r1 + k) * r2 + l] = sc * a1[i * r1 + k] * a2[i * r2 + l];
    for (int64_t k = 0; k < r1; k++)
        for (int64_t l = 0; l < r2; l++)
            for (int64_t j = 0; j < in; j++) D[(k * r2 + l) * in + j] = b1[k * in + j] * b2[l * in + j];
    return SDW_OK;
}

static sdw_status lokr_factors(const sdw_lora_parts *p, const char *key, sdw_lora_target_shape s, float strength,
                               float *U, float *D)
{
    kfactor f1, f2 = { 0 };
    sdw_status st = kfactor_make(p, key, SDW_LORA_LOKR_W1, SDW_LORA_LOKR_W1_A, SDW_LORA_LOKR_W1_B, &f1);
    if (st == SDW_OK) st = kfactor_make(p, key, SDW_LORA_LOKR_W2, SDW_LORA_LOKR_W2_A, SDW_LORA_LOKR_W2_B, &f2);
    if (st == SDW_OK && (f1.P * f2.P != s.rows || f1.Q * f2.Q != s.in))
        st = misfit(key, "the Kronecker factors' shape");
    if (st == SDW_OK) {
        /* alpha / rank applies only when a factor was decomposed (ComfyUI's rule), as in lokr(). */
        const int64_t rank = f1.parts ? f1.k : f2.parts ? f2.k : 0;
        kron(f1.L, f1.P, f1.k, f2.L, f2.P, f2.k, strength * (rank ? alpha_over(p, (int)rank) : 1.0f), U);
        kron(f1.R, f1.k, f1.Q, f2.R, f2.k, f2.Q, 1.0f, D);
    }
    free(f1.eye);
    free(f2.eye);
    return st;
}

sdw_status sdw_lora_factors(const sdw_lora_parts *p, const char *key, sdw_lora_target_shape s, float strength,
                            float *U, float *D)
{
    const int r = sdw_lora_factor_rank(p, s);
    if (!r) return sdw_fail(SDW_ERR_INVALID_ARG, "LoRA module %s: not in a factored form", key);
    if (HAS(SDW_LORA_UP)) {
        if (p->numel[SDW_LORA_UP] != (int64_t)s.rows * r || p->numel[SDW_LORA_DOWN] != (int64_t)r * s.in ||
            p->shape[SDW_LORA_UP][0] != s.rows)
            return misfit(key, "a factor's shape");
        const float sc = strength * alpha_over(p, r);
        for (size_t i = 0; i < (size_t)s.rows * r; i++) U[i] = sc * p->t[SDW_LORA_UP][i];
        memcpy(D, p->t[SDW_LORA_DOWN], (size_t)r * s.in * sizeof *D);
        return SDW_OK;
    }
    if (HAS(SDW_LORA_HADA_W1_A)) return loha_factors(p, key, s, strength, U, D);
    return lokr_factors(p, key, s, strength, U, D);
}
