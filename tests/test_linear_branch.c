/* test_linear_branch.c: low-rank branches beside a linear layer's weights
 * (backend linear_branch.c; how a LoRA stays exact on compact weights):
 *   - every forward entry point of a layer with several branches (low-rank,
 *     dense, overlapping row ranges) equals x @ (W + the branches' U D)^T + b
 *     computed in double, on compact layers (Q4_0, Q8_0, Q5_K, float8, bf16)
 *     and on a dense one, at several M;
 *   - a long x runs in chunks of rows;
 *   - their FLOPs are counted; clearing them gives the plain layer back,
 *     bit for bit; misplaced branches are refused. */
#include "testkit.h"
#include "backend/backend.h"
#include "core/half.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F32_GATE 1e-6
#define BF16_GATE 1e-2

typedef struct {
    int row0, rows, r;   /* r == rows with dense: no U */
    bool dense;
    float *D, *U;
} branch;

typedef struct {
    const char *name;
    int K, N;
    sdw_linear *l;
    float *w, *bias;     /* the weights the layer computes with (decoded), the bias */
    float *w_eff;        /* w plus every branch added */
} layer;

/* q < 0: a dense layer. */
static layer make_layer(sdw_backend *be, int q, int K, int N, uint32_t seed)
{
    layer L = { q < 0 ? "dense" : sdw_qtype_name((sdw_qtype)q), K, N, NULL, malloc(sizeof(float) * (size_t)K * N),
                malloc(sizeof(float) * (size_t)N), malloc(sizeof(float) * (size_t)K * N) };
    test_fill(L.w, (size_t)K * N, seed);
    test_fill(L.bias, (size_t)N, seed + 1);
    if (q < 0) {
        assert_int_equal(sdw_linear_create(be, K, N, L.w, L.bias, &L.l), SDW_OK);
        /* bf16 precision rounds dense weights: compute against what it holds. */
        assert_int_equal(sdw_linear_get_weights(be, L.l, L.w), SDW_OK);
    } else {
        const size_t rb = sdw_qtype_row_bytes((sdw_qtype)q, K);
        uint8_t *rows = malloc(rb * (size_t)N);
        for (int r = 0; r < N; r++) sdw_qtype_quantize_row((sdw_qtype)q, L.w + (size_t)r * K, rows + rb * r, K);
        if (sdw_linear_create_quant(be, K, N, (sdw_qtype)q, rows, L.bias, &L.l) != SDW_OK)
            fail_msg("%s", sdw_last_error());
        assert_int_equal(sdw_linear_get_weights(be, L.l, L.w), SDW_OK);
        free(rows);
    }
    memcpy(L.w_eff, L.w, sizeof(float) * (size_t)K * N);
    return L;
}

static void free_layer(layer *L)
{
    sdw_linear_free(L->l);
    free(L->w), free(L->bias), free(L->w_eff);
}

/* A branch of small values (a LoRA changes W by about 1%... here 10%, to
 * show), added to the layer and to w_eff in double. */
static void add_branch(layer *L, int row0, int rows, int r, bool dense, uint32_t seed)
{
    const int K = L->K;
    float *D = malloc(sizeof(float) * (size_t)r * K), *U = dense ? NULL : malloc(sizeof(float) * (size_t)rows * r);
    test_fill(D, (size_t)r * K, seed);
    for (size_t i = 0; i < (size_t)r * K; i++) D[i] *= 0.1f;
    if (U) test_fill(U, (size_t)rows * r, seed + 1);
    assert_int_equal(sdw_linear_add_branch(L->l, row0, rows, r, D, U), SDW_OK);
    for (int o = 0; o < rows; o++)
        for (int k = 0; k < K; k++) {
            double s = 0;
            if (dense) s = D[(size_t)o * K + k];
            else
                for (int j = 0; j < r; j++) s += (double)U[(size_t)o * r + j] * D[(size_t)j * K + k];
            float *w = &L->w_eff[(size_t)(row0 + o) * K + k];
            *w = (float)((double)*w + s);
        }
    free(D), free(U);
}

/* y = x @ w^T + b in double, rounded to f32. */
static void reference(const float *x, const float *w, const float *b, int M, int K, int N, float *y)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = b[n];
            for (int k = 0; k < K; k++) s += (double)x[(size_t)m * K + k] * w[(size_t)n * K + k];
            y[(size_t)m * N + n] = (float)s;
        }
}

static void from_act(const sdw_backend *be, const void *act, size_t n, float *y)
{
    if (sdw_backend_precision(be) != SDW_PRECISION_BF16) {
        memcpy(y, act, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) y[i] = sdw_bf16_to_f32(((const uint16_t *)act)[i]);
}

static double check(const char *what, const layer *L, int M, const float *got, const float *ref, size_t n,
                    double gate)
{
    char msg[160];
    snprintf(msg, sizeof msg, "%s %s M=%d", L->name, what, M);
    test_check_close(msg, got, ref, n, gate);
    return test_rel_l2(got, ref, n);
}

/* Every entry point at M rows against x @ w_eff^T + b; returns the worst rel L2. */
static double check_forward(sdw_backend *be, const layer *L, int M, double gate)
{
    const int K = L->K, N = L->N;
    const size_t nx = (size_t)M * K, ny = (size_t)M * N;
    float *x = malloc(sizeof(float) * nx), *ref = malloc(sizeof(float) * ny), *y = malloc(sizeof(float) * ny);
    float *y0 = malloc(sizeof(float) * ny), *want = malloc(sizeof(float) * ny);
    void *xa = malloc(sdw_act_bytes(be, nx)), *ya = malloc(sdw_act_bytes(be, ny));
    void *ga = malloc(sdw_act_bytes(be, ny / 2)), *tmp = malloc(sdw_act_bytes(be, ny));
    test_fill(x, nx, 100u + (uint32_t)M);
    test_fill(y0, ny, 200u + (uint32_t)M);
    /* The activation entry points read x rounded as an activation. */
    sdw_to_act(be, x, nx, xa);
    from_act(be, xa, nx, x);
    reference(x, L->w_eff, L->bias, M, K, N, ref);
    for (size_t i = 0; i < ny; i++) want[i] = y0[i] + ref[i];
    double worst = 0, e;
    assert_int_equal(sdw_linear_forward(be, L->l, x, M, y), SDW_OK);
    if ((e = check("forward", L, M, y, ref, ny, gate)) > worst) worst = e;
    memcpy(y, y0, sizeof(float) * ny);
    assert_int_equal(sdw_linear_forward_add(be, L->l, x, M, y), SDW_OK);
    if ((e = check("forward_add", L, M, y, want, ny, gate)) > worst) worst = e;
    assert_int_equal(sdw_linear_forward_act(be, L->l, xa, M, y, false), SDW_OK);
    if ((e = check("forward_act", L, M, y, ref, ny, gate)) > worst) worst = e;
    memcpy(y, y0, sizeof(float) * ny);
    assert_int_equal(sdw_linear_forward_act(be, L->l, xa, M, y, true), SDW_OK);
    if ((e = check("forward_act accumulate", L, M, y, want, ny, gate)) > worst) worst = e;
    assert_int_equal(sdw_linear_forward_to_act(be, L->l, xa, M, ya), SDW_OK);
    from_act(be, ya, ny, y);
    if ((e = check("forward_to_act", L, M, y, ref, ny, gate)) > worst) worst = e;
    assert_int_equal(sdw_linear_forward_geglu_act(be, L->l, xa, M, tmp, ga), SDW_OK);
    from_act(be, ga, ny / 2, y);
    sdw_geglu(ref, M, N / 2, want);
    if ((e = check("forward_geglu_act", L, M, y, want, ny / 2, gate)) > worst) worst = e;
    free(x), free(ref), free(y), free(y0), free(want), free(xa), free(ya), free(ga), free(tmp);
    return worst;
}

/* in 320 (256-element blocks: 512), out 200: a rank-4 branch on rows 0..63,
 * a rank-8 one on 50..129 over it, a dense one on 150..169, a rank-2 one on
 * every row. */
static void run_types(sdw_precision prec, double gate)
{
    if (!test_precision_runs(prec)) return;
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(prec, &be), SDW_OK);
    static const int types[] = { SDW_QT_Q4_0, SDW_QT_Q8_0, SDW_QT_Q5_K, SDW_QT_F8_E4M3, SDW_QT_BF16, -1 };
    static const int Ms[] = { 1, 7, 300 };
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const int K = types[t] >= 0 && sdw_qtype_block((sdw_qtype)types[t], NULL) == 256 ? 512 : 320, N = 200;
        layer L = make_layer(be, types[t], K, N, (uint32_t)(7 + t));
        add_branch(&L, 0, 64, 4, false, 31);
        add_branch(&L, 50, 80, 8, false, 37);
        add_branch(&L, 150, 20, 20, true, 41);
        add_branch(&L, 0, N, 2, false, 43);
        assert_int_equal(sdw_linear_branch_bytes(L.l),
                         sizeof(float) * ((size_t)(4 + 8 + 20 + 2) * K + 64 * 4 + 80 * 8 + (size_t)N * 2));
        double worst = 0;
        for (size_t m = 0; m < sizeof Ms / sizeof Ms[0]; m++) {
            double e = check_forward(be, &L, Ms[m], gate);
            if (e > worst) worst = e;
        }
        printf("  %-8s %s: 4 branches, every entry point, worst rel L2 %.3g\n", L.name, sdw_precision_name(prec),
               worst);
        free_layer(&L);
    }
    sdw_backend_free(be);
}

static void test_entry_points_f32(void **state)
{
    (void)state;
    run_types(SDW_PRECISION_F32, F32_GATE);
}

static void test_entry_points_bf16(void **state)
{
    (void)state;
    run_types(SDW_PRECISION_BF16, BF16_GATE);
}

/* A dense branch over 2048 rows makes x @ D^T 8 KB a row: 2100 rows of x
 * take two chunks of the branch's 16 MiB. */
static void test_chunks(void **state)
{
    (void)state;
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    layer L = make_layer(be, SDW_QT_Q8_0, 64, 2048, 5);
    add_branch(&L, 0, 2048, 2048, true, 51);
    add_branch(&L, 1000, 1000, 3, false, 53);
    const int M = 2100;
    float *x = malloc(sizeof(float) * (size_t)M * L.K), *y = malloc(sizeof(float) * (size_t)M * L.N);
    float *ref = malloc(sizeof(float) * (size_t)M * L.N);
    test_fill(x, (size_t)M * L.K, 9);
    reference(x, L.w_eff, L.bias, M, L.K, L.N, ref);
    assert_int_equal(sdw_linear_forward(be, L.l, x, M, y), SDW_OK);
    double e = check("forward (2 chunks)", &L, M, y, ref, (size_t)M * L.N, F32_GATE);
    printf("  q8_0 M=%d, a dense branch of 2048 rows: rel L2 %.3g\n", M, e);
    free(x), free(y), free(ref);
    free_layer(&L);
    sdw_backend_free(be);
}

/* FLOPs: the product's 2 M K N plus 2 M K R (x @ D^T, R every branch's
 * rows of D) plus 2 M r rows per low-rank branch; clear restores the
 * layer's own output exactly; misplaced branches are refused. */
static void test_flops_clear_refusals(void **state)
{
    (void)state;
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    layer L = make_layer(be, SDW_QT_Q4_0, 320, 200, 3);
    const int M = 50;
    float *x = malloc(sizeof(float) * (size_t)M * L.K), *y0 = malloc(sizeof(float) * (size_t)M * L.N);
    float *y = malloc(sizeof(float) * (size_t)M * L.N);
    test_fill(x, (size_t)M * L.K, 4);
    assert_int_equal(sdw_linear_forward(be, L.l, x, M, y0), SDW_OK);
    add_branch(&L, 10, 30, 4, false, 61);
    add_branch(&L, 100, 16, 16, true, 67);
    sdw_backend_reset_flops(be);
    assert_int_equal(sdw_linear_forward(be, L.l, x, M, y), SDW_OK);
    const double want = 2.0 * M * L.K * L.N + 2.0 * M * L.K * (4 + 16) + 2.0 * M * 4 * 30;
    assert_true(sdw_backend_flops(be) == want);
    assert_true(memcmp(y, y0, sizeof(float) * (size_t)M * L.N) != 0);
    sdw_linear_clear_branches(L.l);
    assert_int_equal(sdw_linear_branch_bytes(L.l), 0);
    assert_int_equal(sdw_linear_forward(be, L.l, x, M, y), SDW_OK);
    assert_memory_equal(y, y0, sizeof(float) * (size_t)M * L.N);
    sdw_linear_clear_branches(L.l);   /* twice is harmless */

    float D[4 * 320] = { 0 }, U[200 * 4] = { 0 };
    assert_int_equal(sdw_linear_add_branch(L.l, 190, 20, 4, D, U), SDW_ERR_INVALID_ARG);   /* past the rows */
    printf("  %s\n", sdw_last_error());
    assert_int_equal(sdw_linear_add_branch(L.l, -1, 20, 4, D, U), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_linear_add_branch(L.l, 0, 20, 0, D, U), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_linear_add_branch(L.l, 0, 20, 4, D, NULL), SDW_ERR_INVALID_ARG);   /* dense: r = rows */
    assert_int_equal(sdw_linear_add_branch(L.l, 0, 20, 4, NULL, U), SDW_ERR_INVALID_ARG);
    assert_int_equal(sdw_linear_branch_bytes(L.l), 0);
    free(x), free(y0), free(y);
    free_layer(&L);
    sdw_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entry_points_f32),
        cmocka_unit_test(test_entry_points_bf16),
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_flops_clear_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
