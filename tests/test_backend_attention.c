/* test_backend_attention.c: sdw_attention against a naive per-head reference
 * (double accumulation), causal and not, strided q/k/v, Tq != Tk, and
 * shrunken budgets so the row and head block loops (and the causal offset) run.
 * Gates: rel L2 1e-5 in f32, 1e-2 in bf16 (q, k, v and P rounded to bf16). */
#include "testkit.h"
#include "backend/backend.h"
#include "core/error.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int B, Tq, Tk, H, D;
    bool causal;
    int q_extra, kv_extra;  /* row stride = H*D + extra */
    size_t budget;          /* per thread; 0 = default */
    bool rising;            /* keys grow along Tk, one late key far more: most key blocks raise rows' max */
} attn_case;

static void ref_attention(const attn_case *c, const float *q, int64_t qs, const float *k, const float *v,
                          int64_t kvs, float *out)
{
    double *p = malloc(sizeof(double) * (size_t)c->Tk);
    assert_non_null(p);
    const double scale = 1.0 / sqrt((double)c->D);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++)
            for (int i = 0; i < c->Tq; i++) {
                const float *qi = q + ((int64_t)b * c->Tq + i) * qs + (int64_t)h * c->D;
                double m = -INFINITY, s = 0;
                for (int j = 0; j < c->Tk; j++) {
                    const float *kj = k + ((int64_t)b * c->Tk + j) * kvs + (int64_t)h * c->D;
                    double d = 0;
                    for (int e = 0; e < c->D; e++) d += (double)qi[e] * kj[e];
                    p[j] = (c->causal && j > i) ? -INFINITY : d * scale;
                    if (p[j] > m) m = p[j];
                }
                for (int j = 0; j < c->Tk; j++) s += (p[j] = exp(p[j] - m));
                for (int e = 0; e < c->D; e++) {
                    double o = 0;
                    for (int j = 0; j < c->Tk; j++)
                        o += p[j] * v[((int64_t)b * c->Tk + j) * kvs + (int64_t)h * c->D + e];
                    out[(((int64_t)b * c->Tq + i) * c->H + h) * c->D + e] = (float)(o / s);
                }
            }
    free(p);
}

/* own: our kernel instead of oneDNN's matmuls, where the CPU has it: in
 * bf16 the AMX tile kernel, in f32 the flash kernel (AVX2 or AVX-512). */
static void check(sdw_precision prec, bool own, const attn_case *c)
{
    if (!test_precision_runs(prec)) return; /* bf16 without AVX-512: nothing to test */
    sdw_backend *be = NULL;
    sdw_status st = sdw_backend_create(prec, &be);
    if (st != SDW_OK) fail_msg("%s", sdw_last_error());
    sdw_backend_set_attention_budget(be, c->budget * (size_t)omp_get_max_threads());
    if (sdw_backend_set_own_attention(be, own) != own) { /* not on this CPU: the oneDNN runs cover it */
        sdw_backend_free(be);
        return;
    }
    int64_t HD = (int64_t)c->H * c->D, qs = HD + c->q_extra, kvs = HD + c->kv_extra;
    size_t nq = (size_t)c->B * c->Tq * qs, nkv = (size_t)c->B * c->Tk * kvs, no = (size_t)c->B * c->Tq * HD;
    float *q = malloc(nq * sizeof *q), *k = malloc(nkv * sizeof *k), *v = malloc(nkv * sizeof *v);
    float *out = malloc(no * sizeof *out), *ref = malloc(no * sizeof *ref);
    assert_true(q && k && v && out && ref);
    test_fill(q, nq, 101);
    test_fill(k, nkv, 102);
    test_fill(v, nkv, 103);
    for (size_t i = 0; i < nq; i++) q[i] *= 3.0f; /* peakier softmax than uniform noise gives */
    for (int j = 0; c->rising && j < c->B * c->Tk; j++) {
        const int key = j % c->Tk;
        const float grow = key == c->Tk - 3 ? 12.0f : 0.25f + 3.0f * (float)key / (float)c->Tk;
        for (int64_t e = 0; e < HD; e++) k[(int64_t)j * kvs + e] *= grow;
    }
    ref_attention(c, q, qs, k, v, kvs, ref);
    st = sdw_attention(be, q, qs, k, v, kvs, c->B, c->Tq, c->Tk, c->H, c->D, c->causal, out);
    char what[128];
    snprintf(what, sizeof what, "attention %s%s B%d Tq%d Tk%d H%d D%d%s qs%lld kvs%lld%s%s", sdw_precision_name(prec),
             own ? (prec == SDW_PRECISION_BF16 ? " amx" : " flash") : "",
             c->B, c->Tq, c->Tk, c->H, c->D, c->causal ? " causal" : "", (long long)qs, (long long)kvs,
             c->budget ? " blocked" : "", c->rising ? " rising" : "");
    if (st != SDW_OK) fail_msg("%s: %s", what, sdw_last_error());
    test_check_close(what, out, ref, no, prec == SDW_PRECISION_BF16 ? 1e-2 : 1e-5);
    double fl = 4.0 * c->B * c->H * (double)c->Tq * c->Tk * c->D;
    assert_true(fabs(sdw_backend_flops(be) - fl) < 1);
    free(q), free(k), free(v), free(out), free(ref);
    sdw_backend_free(be);
}

static void attention(void **state)
{
    (void)state;
    /* A thread's block takes budget / (Tk x 6) rows x heads; under 64 rows of
     * all heads, blocks take fewer heads (or, at one head, fewer rows). */
    const attn_case cases[] = {
        { 1, 77, 77, 4, 16, true, 2 * 64, 2 * 64, 0, false },   /* CLIP: causal, rows of a fused qkv */
        { 2, 77, 77, 3, 20, true, 0, 0, 77 * 6 * 60, false },   /* causal, 1 head x 48 rows blocks */
        { 2, 300, 77, 3, 40, false, 5, 0, 3 * 77 * 6 * 64, false }, /* cross-attention, 3 heads x 64 rows */
        { 1, 100, 50, 3, 8, true, 0, 0, 2 * 64 * 50 * 6, false }, /* 2 heads + 1, Tq > Tk causal */
        { 1, 256, 256, 2, 64, false, 0, 7, 0, false },
        { 1, 128, 50, 3, 8, false, 0, 0, 50 * 6 * 32, false },  /* 1 head x 32 rows */
        { 1, 300, 300, 2, 64, false, 0, 0, 0, false },
        { 1, 160, 160, 1, 512, false, 0, 0, 160 * 6 * 48, false }, /* VAE mid-block: one wide head */
        { 1, 5, 3, 1, 7, false, 1, 2, 0, false },               /* odd and tiny */
        { 1, 9, 13, 2, 3, true, 0, 0, 13 * 6 * 2, false },      /* causal Tq < Tk, 2 queries a block */
        { 1, 70, 1000, 2, 40, false, 8, 0, 0, false },          /* SD1's head: key blocks and a ragged tail */
        { 1, 300, 300, 2, 80, true, 0, 0, 0, false },           /* causal over several key blocks */
        { 1, 50, 4133, 2, 40, false, 3, 5, 0, false },          /* long: dozens of key blocks, a ragged tail */
        { 2, 64, 1000, 2, 40, false, 0, 0, 0, true },           /* rising scores: rows rescaled block after block */
        { 1, 40, 700, 1, 64, true, 0, 0, 0, true },             /* the same, causal */
    };
    /* Three threads as well: an odd split of the blocks, and more threads
     * than this machine's two cores. */
    const int threads = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t ? 3 : threads);
        printf("  %d threads\n", omp_get_max_threads());
        for (int p = 0; p < 4; p++) /* f32, f32 flash, bf16, bf16 amx */
            for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
                check(p < 2 ? SDW_PRECISION_F32 : SDW_PRECISION_BF16, p % 2, &cases[i]);
    }
    omp_set_num_threads(threads);
}

static void rejects_bad_shape(void **state)
{
    (void)state;
    sdw_backend *be = NULL;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    float x[8] = { 0 };
    assert_int_equal(sdw_attention(be, x, 1, x, x, 2, 1, 1, 1, 1, 2, false, x), SDW_ERR_INVALID_ARG);
    sdw_backend_free(be);
}

int main(void)
{
    sdw_backend *be = NULL;
    bool amx = sdw_backend_create(SDW_PRECISION_BF16, &be) == SDW_OK && sdw_backend_set_own_attention(be, true);
    sdw_backend_free(be);
    bool flash = sdw_backend_create(SDW_PRECISION_F32, &be) == SDW_OK && sdw_backend_set_own_attention(be, true);
    sdw_backend_free(be);
    sdw_clear_error();
    printf("backend attention: isa %s, native bf16 %s, AMX tile kernel %s, f32 flash kernel %s\n",
           sdw_cpu_isa_name(), sdw_cpu_has_native_bf16() ? "yes" : "no",
           amx ? "tested" : "not available (oneDNN path only)", flash ? "tested" : "not available (oneDNN path only)");
    const struct CMUnitTest tests[] = { cmocka_unit_test(attention), cmocka_unit_test(rejects_bad_shape) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
