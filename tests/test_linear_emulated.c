/* test_linear_emulated.c: the GEGLU projection on AVX-512-BF16 dot products
 * (linear_dp.c), compiled for this test on SIMDe's emulation of those
 * instructions (tests/emulated/), so that its weight addressing, tiles,
 * blocks of inputs, ragged rows and thread split are checked on every CPU,
 * not only where vdpbf16ps exists (test_backend_ops runs it natively
 * there). The weights are put in the kernel's layout (AB8b64a2b) by oneDNN's
 * reorder, which runs on any CPU; the result is held against the double
 * reference of v * gelu(g) on the bf16-rounded inputs and weights.
 * Gate: rel L2 1e-2, as the native bf16 paths. */
#include "testkit.h"
#include "backend/linear_dp.h" /* with SDW_EMULATE_AVX512: the emulated copy's names */
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

int main(void)
{
    printf("linear_dp GEGLU on SIMDe's AVX-512-BF16 emulation (isa %s; %s)\n", sdw_cpu_isa_name(),
           sdw_cpu_has_native_bf16() ? "this CPU also runs it natively in test_backend_ops"
                                     : "this CPU has no AVX-512-BF16");
    const struct CMUnitTest tests[] = { cmocka_unit_test(geglu_projection) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
