/* test_util.c: see testkit.h. */
#include "testkit.h"
#include "core/tensor.h"
#include "backend/backend.h"
#include "core/error.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

const char *test_data_path(const char *rel)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", SDW_TEST_DATA, rel);
    return buf;
}

sdw_safetensors *test_open_st(const char *rel)
{
    sdw_safetensors *st = NULL;
    if (sdw_st_open(test_data_path(rel), &st) != SDW_OK) fail_msg("open %s: %s", rel, sdw_last_error());
    return st;
}

float *test_load_f32(const sdw_safetensors *st, const char *name, int64_t *n)
{
    const sdw_st_tensor *t = sdw_st_find(st, name);
    if (!t) fail_msg("reference tensor %s missing", name);
    float *v = malloc(((size_t)t->numel + 1) * sizeof *v);
    if (sdw_st_read_f32(st, t, v) != SDW_OK) fail_msg("%s", sdw_last_error());
    if (n) *n = t->numel;
    return v;
}

int64_t *test_load_i64(const sdw_safetensors *st, const char *name, int64_t *n)
{
    const sdw_st_tensor *t = sdw_st_find(st, name);
    if (!t) fail_msg("reference tensor %s missing", name);
    int64_t *v = NULL;
    if (sdw_st_read_i64(st, t, &v) != SDW_OK) fail_msg("%s", sdw_last_error());
    if (n) *n = t->numel;
    return v;
}

double test_rel_l2(const float *got, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

double test_max_abs(const float *got, const float *ref, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= m)) m = d;   /* NaN propagates */
    }
    return m;
}

void test_check_close(const char *what, const float *got, const float *ref, size_t n, double rel_tol)
{
    double rel = test_rel_l2(got, ref, n), mx = test_max_abs(got, ref, n);
    printf("  %-48s rel_l2 %.3g  max_abs %.3g  (gate %.3g)\n", what, rel, mx, rel_tol);
    if (!(rel < rel_tol)) fail_msg("%s: rel L2 %.3g >= %.3g (max abs %.3g)", what, rel, rel_tol, mx);
}

void test_fill(float *x, size_t n, uint32_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        x[i] = (float)((s >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
    }
}

void test_nchw_to_nhwc(const float *src, int N, int C, int H, int W, float *dst)
{
    sdw_nchw_to_nhwc(src, N, C, H, W, dst);
}

void test_nhwc_to_nchw(const float *src, int N, int H, int W, int C, float *dst)
{
    sdw_nhwc_to_nchw(src, N, H, W, C, dst);
}

bool test_precision_runs(sdw_precision p)
{
    sdw_backend *be = NULL;
    const sdw_status st = sdw_backend_create(p, &be);
    if (st == SDW_ERR_UNSUPPORTED && p == SDW_PRECISION_BF16) {
        printf("  skip %s: %s\n", sdw_precision_name(p), sdw_last_error());
        sdw_clear_error();
        return false;
    }
    if (st != SDW_OK) fail_msg("backend: %s", sdw_last_error());
    sdw_backend_free(be);
    return true;
}

size_t test_linear_padding(const sdw_layer_list *l, size_t weight_size)
{
    size_t pad = 0;
    for (int i = 0; i < l->n; i++) {
        const sdw_linear *lin = l->v[i].linear;
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) seen = l->v[j].linear == lin;
        sdw_qtype t;
        if (!lin || seen || sdw_linear_quant_type(lin, &t)) continue;
        pad += sdw_linear_bytes(lin) - (weight_size * (size_t)sdw_linear_in(lin) + sizeof(float)) * sdw_linear_out(lin);
    }
    return pad;
}
