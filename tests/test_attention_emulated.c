/* test_attention_emulated.c: the bf16 attention kernel on AVX-512-BF16 dot
 * products (attention_dp.c), compiled for this test on SIMDe's emulation of
 * those instructions (tests/emulated/), so that the kernel's packing,
 * tiles, online softmax, causal masks and ragged ends are checked on
 * every CPU, not only where vdpbf16ps exists. Against the naive reference
 * of attention_kit.c: f32 in and out, and bf16 in and out as the UNet's
 * projections give them (the activations rounded first, the reference run
 * on the rounded values). Gate: rel L2 1e-2, as the native bf16 paths. */
#include "testkit.h"
#include "attention_kit.h"
#include "backend/avx512_bf16.h" /* with SDW_EMULATE_AVX512: the emulated copy's names */
#include "backend/attention_bf16.h"
#include "core/error.h"
#include "core/half.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

static uint16_t *to_bf16(const float *x, size_t n)
{
    uint16_t *b = malloc(n * sizeof *b);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++) b[i] = emu_bf16(x[i]);
    return b;
}

/* bf16_io: q, k, v handed over as bf16 and the result taken as bf16. */
static void check(sdw_backend *be, const attn_case *c, bool bf16_io)
{
    attn_data d = attn_data_make(c);
    float *out = malloc(d.no * sizeof *out);
    assert_non_null(out);
    uint16_t *qb = NULL, *kb = NULL, *vb = NULL, *ob = NULL;
    if (bf16_io) { /* the reference sees the rounded inputs the kernel sees */
        qb = to_bf16(d.q, d.nq), kb = to_bf16(d.k, d.nkv), vb = to_bf16(d.v, d.nkv);
        ob = malloc(d.no * sizeof *ob);
        assert_non_null(ob);
    }
    const sdw_attn_args a = { bf16_io ? (const void *)qb : d.q, bf16_io ? (const void *)kb : d.k,
                              bf16_io ? (const void *)vb : d.v, d.qs, d.kvs, bf16_io,
                              c->B, c->Tq, c->Tk, c->H, c->D, c->causal };
    sdw_status st = sdw_attention_dp(be, &a, bf16_io ? NULL : out, ob);
    char name[128], what[192];
    attn_case_name(name, sizeof name, c, &d);
    snprintf(what, sizeof what, "emulated dp attention %s %s", bf16_io ? "bf16 in/out" : "f32 in/out", name);
    if (st != SDW_OK) fail_msg("%s: %s", what, sdw_last_error());
    if (bf16_io)
        for (size_t i = 0; i < d.no; i++) out[i] = sdw_bf16_to_f32(ob[i]);
    test_check_close(what, out, d.ref, d.no, 1e-2);
    free(qb), free(kb), free(vb), free(ob), free(out);
    attn_data_free(&d);
}

static void dot_product_kernel(void **state)
{
    (void)state;
    sdw_backend *be = NULL; /* for its scratch buffers; the kernel runs whatever the precision */
    if (sdw_backend_create(SDW_PRECISION_F32, &be) != SDW_OK) fail_msg("%s", sdw_last_error());
    const int threads = omp_get_max_threads();
    for (int t = 0; t < 2; t++) { /* three threads too: an odd split of the blocks */
        omp_set_num_threads(t ? 3 : threads);
        for (size_t i = 0; i < attn_n_cases; i++) {
            check(be, &attn_cases[i], false);
            check(be, &attn_cases[i], true);
        }
    }
    omp_set_num_threads(threads);
    sdw_backend_free(be);
}

int main(void)
{
    printf("attention_dp (dot products, queries in lanes) on SIMDe's AVX-512-BF16 emulation (isa %s; %s)\n", sdw_cpu_isa_name(),
           sdw_cpu_has_native_bf16() ? "this CPU also runs them natively in test_backend_attention"
                                     : "this CPU has no AVX-512-BF16");
    const struct CMUnitTest tests[] = { cmocka_unit_test(dot_product_kernel) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
