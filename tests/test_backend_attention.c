/* test_backend_attention.c: sdw_attention against a naive per-head reference
 * (double accumulation), causal and not, strided q/k/v, Tq != Tk, and
 * shrunken budgets so the row and head block loops (and the causal offset) run,
 * on every path this CPU has (attention_kit.c: the cases). Gates: rel L2 1e-5 in f32, 1e-2 in bf16 (q, k, v and P rounded to bf16). */
#include "testkit.h"
#include "attention_kit.h"
#include "backend/amx.h"
#include "backend/backend.h"
#include "core/error.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    attn_data d = attn_data_make(c);
    float *out = malloc(d.no * sizeof *out);
    assert_non_null(out);
    st = sdw_attention(be, d.q, d.qs, d.k, d.v, d.kvs, c->B, c->Tq, c->Tk, c->H, c->D, c->causal, out);
    char name[128], what[192];
    attn_case_name(name, sizeof name, c, &d);
    snprintf(what, sizeof what, "attention %s%s %s", sdw_precision_name(prec),
             own ? (prec == SDW_PRECISION_BF16 ? " own bf16" : " flash") : "", name);
    if (st != SDW_OK) fail_msg("%s: %s", what, sdw_last_error());
    test_check_close(what, out, d.ref, d.no, prec == SDW_PRECISION_BF16 ? 1e-2 : 1e-5);
    double fl = 4.0 * c->B * c->H * (double)c->Tq * c->Tk * c->D;
    assert_true(fabs(sdw_backend_flops(be) - fl) < 1);
    free(out);
    attn_data_free(&d);
    sdw_backend_free(be);
}

static void attention(void **state)
{
    (void)state;
    /* Three threads as well: an odd split of the blocks, and more threads
     * than this machine's two cores. */
    const int threads = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t ? 3 : threads);
        printf("  %d threads\n", omp_get_max_threads());
        for (int p = 0; p < 4; p++) /* f32, f32 flash, bf16, bf16 own (AMX or dot products) */
            for (size_t i = 0; i < attn_n_cases; i++)
                check(p < 2 ? SDW_PRECISION_F32 : SDW_PRECISION_BF16, p % 2, &attn_cases[i]);
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
    bool own_bf16 = sdw_backend_create(SDW_PRECISION_BF16, &be) == SDW_OK && sdw_backend_set_own_attention(be, true);
    sdw_backend_free(be);
    bool flash = sdw_backend_create(SDW_PRECISION_F32, &be) == SDW_OK && sdw_backend_set_own_attention(be, true);
    sdw_backend_free(be);
    sdw_clear_error();
    const char *bf16_kernel = !own_bf16 ? "not available (oneDNN path only; test_attention_emulated checks the "
                                          "dot products)"
                              : sdw_amx_usable() ? "AMX tiles, tested"
                                                 : "AVX-512-BF16 dot products (attention_dp), tested";
    printf("backend attention: isa %s, native bf16 %s, bf16 kernel %s, f32 flash kernel %s\n", sdw_cpu_isa_name(),
           sdw_cpu_has_native_bf16() ? "yes" : "no", bf16_kernel,
           flash ? "tested" : "not available (oneDNN path only)");
    const struct CMUnitTest tests[] = { cmocka_unit_test(attention), cmocka_unit_test(rejects_bad_shape) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
