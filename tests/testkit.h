/* testkit.h: shared helpers for the tests: reference data loading and the
 * error metrics the golden tests gate on. */
#ifndef SDW_TESTKIT_H
#define SDW_TESTKIT_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "sdw.h"
#include "io/safetensors.h"
#include "models/weights.h"

/* Path under tests/data (static buffer, one at a time per call site). */
const char *test_data_path(const char *rel);
/* Opens tests/data/<rel>; fails the test on error. */
sdw_safetensors *test_open_st(const char *rel);
/* Loads a named float tensor as f32 (malloc'd, numel in *n); fails the test if missing. */
float *test_load_f32(const sdw_safetensors *st, const char *name, int64_t *n);
int64_t *test_load_i64(const sdw_safetensors *st, const char *name, int64_t *n);

double test_rel_l2(const float *got, const float *ref, size_t n);
double test_max_abs(const float *got, const float *ref, size_t n);
/* Fails the test (with both metrics printed) unless rel L2 < rel_tol. */
void test_check_close(const char *what, const float *got, const float *ref, size_t n, double rel_tol);
/* A reproducible pseudo-random fill in [-1, 1). */
void test_fill(float *x, size_t n, uint32_t seed);
/* Whether this CPU runs precision p; bf16 needs AVX-512, and where it is
 * missing the caller skips its bf16 checks (said in the output). */
bool test_precision_runs(sdw_precision p);
/* Bytes the dense linears of a layer list hold beyond their weights (of
 * weight_size bytes: 4 in f32, 2 in bf16) and f32 biases: the padding of the blocked layout oneDNN picks on this CPU (on
 * AVX-512 it pads 32 outputs to 64), 0 where it keeps the rows as they are.
 * Each linear counts once however many names it has; all have a bias. */
size_t test_linear_padding(const sdw_layer_list *l, size_t weight_size);


/* Layout conversion between PyTorch's NCHW references and our NHWC. */
void test_nchw_to_nhwc(const float *src, int N, int C, int H, int W, float *dst);
void test_nhwc_to_nchw(const float *src, int N, int H, int W, int C, float *dst);
#endif
