/* test_linear_emulated.c: the GEGLU projection and the compact-weight
 * layers on AVX-512-BF16 dot products (linear_dp.c, linear_quant_dp.c),
 * compiled for this test on SIMDe's emulation of those
 * instructions (tests/emulated/), so that its weight addressing, tiles,
 * blocks of inputs, ragged rows and thread split are checked on every CPU,
 * not only where vdpbf16ps exists (test_backend_ops runs it natively
 * there). The weights are put in the kernel's layout (AB8b64a2b) by oneDNN's
 * reorder, which runs on any CPU; the result is held against the double
 * reference of v * gelu(g) on the bf16-rounded inputs and weights.
 * Gate: rel L2 1e-2, as the native bf16 paths. */
#include "testkit.h"
#include "backend/linear_dp.h" /* with SDW_EMULATE_AVX512: the emulated copy's names */
#include "backend/linear_quant.h"
#include "core/error.h"
#include "core/half.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

static void check(sdw_backend *be, int64_t M, int K, int N, bool bias)
{
    const size_t nx = (size_t)M * K, nw = (size_t)N * K;
    float *w = malloc(nw * sizeof *w), *b = malloc((size_t)N * sizeof *b), *x = malloc(nx * sizeof *x);
    float *ref = malloc((size_t)M * (N / 2) * sizeof *ref), *got = malloc((size_t)M * (N / 2) * sizeof *got);
    uint16_t *xb = malloc(nx * sizeof *xb), *yb = malloc((size_t)M * (N / 2) * sizeof *yb);
    assert_true(w && b && x && ref && got && xb && yb);
    test_fill(w, nw, 11 + K);
    for (size_t i = 0; i < nw; i++) w[i] /= sqrtf((float)K);
    test_fill(b, (size_t)N, 12);
    test_fill(x, nx, 13);
    for (size_t i = 0; i < nx; i++) xb[i] = emu_bf16(x[i]);
    /* [N, K] f32 into the inner product's layout, bf16 */
    dnnl_memory_desc_t user, stored;
    dnnl_dims_t dims = { N, K };
    assert_int_equal(dnnl_memory_desc_init_by_tag(&user, 2, dims, dnnl_f32, dnnl_ab), dnnl_success);
    assert_int_equal(dnnl_memory_desc_init_by_tag(&stored, 2, dims, dnnl_bf16, dnnl_AB8b64a2b), dnnl_success);
    void *wp = NULL;
    size_t wbytes = 0;
    if (sdw_reorder_weights(be, &user, w, &stored, &wp, &wbytes) != SDW_OK) fail_msg("%s", sdw_last_error());
    for (int64_t m = 0; m < M; m++)
        for (int c = 0; c < N / 2; c++) {
            double v = bias ? b[c] : 0, g = bias ? b[N / 2 + c] : 0;
            for (int k = 0; k < K; k++) {
                const double a = sdw_bf16_to_f32(xb[m * K + k]);
                v += a * sdw_bf16_to_f32(emu_bf16(w[(size_t)c * K + k]));
                g += a * sdw_bf16_to_f32(emu_bf16(w[(size_t)(N / 2 + c) * K + k]));
            }
            ref[m * (N / 2) + c] = (float)(v * 0.5 * g * (1.0 + erf(g / sqrt(2.0))));
        }
    const sdw_linear_bf16_args a = { xb, M, K, N, wp, bias ? b : NULL, NULL, yb, false, true };
    assert_int_equal(sdw_linear_dp(&a), SDW_OK);
    for (size_t i = 0; i < (size_t)M * (N / 2); i++) got[i] = sdw_bf16_to_f32(yb[i]);
    char what[96];
    snprintf(what, sizeof what, "emulated dp GEGLU M%lld K%d N%d%s (%d threads)", (long long)M, K, N,
             bias ? " +bias" : "", omp_get_max_threads());
    test_check_close(what, got, ref, (size_t)M * (N / 2), 1e-2);
    free(wp);
    free(w), free(b), free(x), free(ref), free(got), free(xb), free(yb);
}

static void geglu_projection(void **state)
{
    (void)state;
    sdw_backend *be = NULL; /* for the reorder */
    if (sdw_backend_create(SDW_PRECISION_F32, &be) != SDW_OK) fail_msg("%s", sdw_last_error());
    const int threads = omp_get_max_threads();
    for (int t = 0; t < 2; t++) { /* three threads too: an odd split of the items */
        omp_set_num_threads(t ? 3 : threads);
        check(be, 16, 64, 128, true);    /* the fewest rows it takes; one input block */
        check(be, 77, 320, 192, false);  /* a last tile of 5 rows, three blocks of inputs, the last short */
        check(be, 154, 768, 256, true);  /* past one 48-row group of partial sums; 4 tiles of 32 outputs */
    }
    omp_set_num_threads(threads);
    /* and what it refuses */
    const sdw_linear_bf16_args bad = { NULL, 8, 64, 128, NULL, NULL, NULL, NULL, false, true };
    assert_int_equal(sdw_linear_dp(&bad), SDW_ERR_INVALID_ARG);
    sdw_backend_free(be);
}

/* y = x W^T (+ b) with W in format q, into f32, added to f32, or into bf16:
 * against the double sum over the bf16-rounded inputs and the decoded
 * weights rounded to bf16 (gate 1e-5 for f32 results, 1e-2 for bf16). */
static void check_quant(sdw_backend *be, sdw_qtype q, int64_t M, int K, int N, bool bias, int mode)
{
    static const char *const modes[] = { "f32", "accumulate", "bf16" };
    const size_t nx = (size_t)M * K, ny = (size_t)M * N, rb = sdw_qtype_row_bytes(q, K);
    float *w = malloc((size_t)N * K * sizeof *w), *b = malloc((size_t)N * sizeof *b), *x = malloc(nx * sizeof *x);
    float *ref = malloc(ny * sizeof *ref), *y = malloc(ny * sizeof *y);
    uint16_t *xb = malloc(nx * sizeof *xb), *yb = malloc(ny * sizeof *yb);
    uint8_t *rows = malloc(rb * (size_t)N);
    assert_true(w && b && x && ref && y && xb && yb && rows);
    test_fill(w, (size_t)N * K, 21 + K);
    test_fill(b, (size_t)N, 22);
    test_fill(x, nx, 23);
    test_fill(y, ny, 24);
    for (int n = 0; n < N; n++) {
        sdw_qtype_quantize_row(q, w + (size_t)n * K, rows + rb * n, K);
        sdw_qtype_dequantize_row(q, rows + rb * n, w + (size_t)n * K, K);
    }
    for (size_t i = 0; i < nx; i++) xb[i] = emu_bf16(x[i]);
    for (int64_t m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = bias ? b[n] : 0;
            for (int k = 0; k < K; k++)
                s += (double)sdw_bf16_to_f32(xb[m * K + k]) * sdw_bf16_to_f32(emu_bf16(w[(size_t)n * K + k]));
            ref[m * N + n] = (float)s + (mode == 1 ? y[m * N + n] : 0.0f);
        }
    const sdw_qlinear_args a = { q, rows, rb, bias ? b : NULL, M, K, N, xb, mode == 2 ? (void *)yb : (void *)y,
                                 mode == 2, mode == 1 };
    assert_int_equal(sdw_qlinear_dp(be, &a), SDW_OK);
    if (mode == 2)
        for (size_t i = 0; i < ny; i++) y[i] = sdw_bf16_to_f32(yb[i]);
    char what[112];
    snprintf(what, sizeof what, "emulated dp %s M%lld K%d N%d%s into %s (%d threads)", sdw_qtype_name(q),
             (long long)M, K, N, bias ? " +bias" : "", modes[mode], omp_get_max_threads());
    test_check_close(what, y, ref, ny, mode == 2 ? 1e-2 : 1e-5); /* f32: the same sums but their order */
    free(w), free(b), free(x), free(ref), free(y), free(xb), free(yb), free(rows);
}

static void compact_weights(void **state)
{
    (void)state;
    sdw_backend *be = NULL; /* for the scratch */
    if (sdw_backend_create(SDW_PRECISION_BF16, &be) != SDW_OK) fail_msg("%s", sdw_last_error());
    const int threads = omp_get_max_threads();
    for (int t = 0; t < 2; t++) { /* three threads too: an odd split of the items */
        omp_set_num_threads(t ? 3 : threads);
        /* Q8_0 decoded in registers; Q4_K through f32 rows. Built with
         * QDP_SMALL: chunks of at most 64 rows, groups of 2 panels, slices
         * of x of 64 KiB. 70 rows: chunks of 36 and 34, a last tile of 4;
         * K 1024: slices of 768 and 256 inputs, the sums kept between them
         * for a group of at most 2 of the 3 panels. */
        check_quant(be, SDW_QT_Q8_0, 70, 1024, 192, true, 0);
        check_quant(be, SDW_QT_Q8_0, 70, 1024, 192, false, 1);
        check_quant(be, SDW_QT_Q4_K, 70, 1024, 128, true, 2);
        check_quant(be, SDW_QT_Q8_0, 9, 96, 64, true, 2);     /* one panel, one chunk; K of 3 blocks */
        check_quant(be, SDW_QT_Q8_0, 200, 288, 64, false, 0); /* one panel: chunks of 54 rows; one slice */
        check_quant(be, SDW_QT_Q8_0, 48, 2048, 256, true, 1); /* one full 48-row block; 4 slices */
        /* a few rows: Q8_0 blocks dotted in registers, any N; an odd block last */
        check_quant(be, SDW_QT_Q8_0, 1, 96, 100, true, 2);
        check_quant(be, SDW_QT_Q8_0, 4, 1024, 70, false, 1);
        check_quant(be, SDW_QT_Q8_0, 3, 288, 33, true, 0);
    }
    omp_set_num_threads(threads);
    /* what it refuses: N not a multiple of 64; a few rows in another format */
    const sdw_qlinear_args bad = { SDW_QT_Q8_0, NULL, 34, NULL, 8, 32, 100, NULL, NULL, false, false };
    assert_int_equal(sdw_qlinear_dp(be, &bad), SDW_ERR_INVALID_ARG);
    const sdw_qlinear_args few = { SDW_QT_Q4_K, NULL, 144, NULL, 2, 256, 64, NULL, NULL, false, false };
    assert_int_equal(sdw_qlinear_dp(be, &few), SDW_ERR_INVALID_ARG);
    sdw_backend_free(be);
}

int main(void)
{
    printf("linear_dp GEGLU and linear_quant_dp on SIMDe's AVX-512-BF16 emulation (isa %s; %s)\n", sdw_cpu_isa_name(),
           sdw_cpu_has_native_bf16() ? "this CPU also runs it natively in test_backend_ops"
                                     : "this CPU has no AVX-512-BF16");
    const struct CMUnitTest tests[] = { cmocka_unit_test(geglu_projection), cmocka_unit_test(compact_weights) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
