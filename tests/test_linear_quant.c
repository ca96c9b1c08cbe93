/* test_linear_quant.c: linear layers on compact weights (backend
 * linear_quant.c, linear_quant_rows.c) and the loader that makes them
 * (models/weights.c):
 *   - the row decoders equal io/quant.c (llama.cpp's reference
 *     dequantizers) bit for bit, on random blocks and on the GGUF test
 *     vectors, whose layers decode to blocks_dequantized exactly;
 *   - every forward entry point equals x @ dequant(W)^T + b computed in
 *     double, for each format, M in {1, 7, 64, 300}, panels and K chunks
 *     with ragged tails, on sgemm and on the matmul primitives;
 *   - get / set_weights round trips (their error printed and bounded), the
 *     stored blocks restore exactly, bytes held are the blocks' bytes;
 *   - the loader keeps GGUF blocks, concatenates stacked rows of blocks,
 *     and quantizes dense weights while loading under weight_type. */
#include "testkit.h"
#include "backend/backend.h"
#include "backend/linear_quant.h"
#include "core/half.h"
#include "io/quant.h"
#include "models/weights.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F32_GATE 1e-6
#define BF16_GATE 1e-2

static const sdw_qtype all_types[] = { SDW_QT_Q4_0, SDW_QT_Q4_1, SDW_QT_Q5_0, SDW_QT_Q5_1, SDW_QT_Q8_0,
                                       SDW_QT_Q2_K, SDW_QT_Q3_K, SDW_QT_Q4_K, SDW_QT_Q5_K, SDW_QT_Q6_K,
                                       SDW_QT_F8_E4M3, SDW_QT_F8_E5M2, SDW_QT_BF16 };
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* The io/ dtype of a backend format (BF16 has none in io/quant.h). */
static sdw_st_dtype io_dtype(sdw_qtype q)
{
    static const sdw_st_dtype m[SDW_QT_COUNT] = {
        [SDW_QT_Q4_0] = SDW_ST_Q4_0, [SDW_QT_Q4_1] = SDW_ST_Q4_1, [SDW_QT_Q5_0] = SDW_ST_Q5_0,
        [SDW_QT_Q5_1] = SDW_ST_Q5_1, [SDW_QT_Q8_0] = SDW_ST_Q8_0, [SDW_QT_Q2_K] = SDW_ST_Q2_K,
        [SDW_QT_Q3_K] = SDW_ST_Q3_K, [SDW_QT_Q4_K] = SDW_ST_Q4_K, [SDW_QT_Q5_K] = SDW_ST_Q5_K,
        [SDW_QT_Q6_K] = SDW_ST_Q6_K, [SDW_QT_F8_E4M3] = SDW_ST_F8_E4M3, [SDW_QT_F8_E5M2] = SDW_ST_F8_E5M2,
        [SDW_QT_BF16] = SDW_ST_BF16,
    };
    return m[q];
}

static uint32_t rng(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* Random blocks whose f16 scale fields hold ordinary values (random bytes
 * there could be NaN or huge). */
static void random_blocks(sdw_qtype q, uint8_t *b, size_t n_blocks, uint32_t seed)
{
    static const int scale_at[SDW_QT_COUNT][2] = {
        [SDW_QT_Q4_0] = { 0, -1 },  [SDW_QT_Q4_1] = { 0, 2 },  [SDW_QT_Q5_0] = { 0, -1 }, [SDW_QT_Q5_1] = { 0, 2 },
        [SDW_QT_Q8_0] = { 0, -1 },  [SDW_QT_Q2_K] = { 80, 82 }, [SDW_QT_Q3_K] = { 108, -1 }, [SDW_QT_Q4_K] = { 0, 2 },
        [SDW_QT_Q5_K] = { 0, 2 },   [SDW_QT_Q6_K] = { 208, -1 },
    };
    size_t bytes;
    sdw_qtype_block(q, &bytes);
    for (size_t i = 0; i < n_blocks * bytes; i++) b[i] = (uint8_t)rng(&seed);
    if (q >= SDW_QT_F8_E4M3) return;
    for (size_t i = 0; i < n_blocks; i++)
        for (int f = 0; f < 2 && scale_at[q][f] >= 0; f++) {
            float v = ((float)(rng(&seed) % 1000) / 1000.0f + 0.05f) * (f ? -0.01f : 0.02f);
            uint16_t h = sdw_f32_to_f16(v);
            memcpy(b + i * bytes + scale_at[q][f], &h, 2);
        }
}

static void test_decode_matches_io(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_TYPES; i++) {
        const sdw_qtype q = all_types[i];
        const int n = 4 * 256;
        const size_t rb = sdw_qtype_row_bytes(q, n);
        uint8_t *b = malloc(rb);
        float *got = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n);
        random_blocks(q, b, (size_t)(n / sdw_qtype_block(q, NULL)), (uint32_t)(7 + i));
        sdw_qtype_dequantize_row(q, b, got, n);
        if (q == SDW_QT_BF16) {
            for (int k = 0; k < n; k++) ref[k] = sdw_bf16_to_f32((uint16_t)(b[2 * k] | b[2 * k + 1] << 8));
        } else {
            assert_true(sdw_dequantize(io_dtype(q), b, ref, (size_t)n));
        }
        if (memcmp(got, ref, sizeof(float) * n)) fail_msg("%s: decoded rows differ from io/quant.c", sdw_qtype_name(q));
        free(b);
        free(got);
        free(ref);
    }
}

/* y_ref = x @ w^T + b in double, rounded to f32. */
static void reference(const float *x, const float *w, const float *b, int M, int K, int N, float *y)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = b ? b[n] : 0;
            for (int k = 0; k < K; k++) s += (double)x[(size_t)m * K + k] * w[(size_t)n * K + k];
            y[(size_t)m * N + n] = (float)s;
        }
}

typedef struct {
    sdw_qtype q;
    int K, N;
    sdw_linear *l;
    float *w, *bias; /* the decoded weights, the bias */
} layer;

/* A layer of random weights quantized by our encoder. */
static layer make_layer(sdw_backend *be, sdw_qtype q, int K, int N, uint32_t seed)
{
    layer L = { q, K, N, NULL, malloc(sizeof(float) * (size_t)K * N), malloc(sizeof(float) * (size_t)N) };
    const size_t rb = sdw_qtype_row_bytes(q, K);
    uint8_t *rows = malloc(rb * (size_t)N);
    test_fill(L.w, (size_t)K * N, seed);
    test_fill(L.bias, (size_t)N, seed + 1);
    for (int r = 0; r < N; r++) sdw_qtype_quantize_row(q, L.w + (size_t)r * K, rows + rb * r, K);
    for (int r = 0; r < N; r++) sdw_qtype_dequantize_row(q, rows + rb * r, L.w + (size_t)r * K, K);
    if (sdw_linear_create_quant(be, K, N, q, rows, L.bias, &L.l) != SDW_OK) fail_msg("%s", sdw_last_error());
    free(rows);
    return L;
}

static void free_layer(layer *L)
{
    sdw_linear_free(L->l);
    free(L->w);
    free(L->bias);
}

/* act <-> f32 for the _act entry points (bf16 in BF16 precision). */
static void from_act(const sdw_backend *be, const void *act, size_t n, float *y)
{
    if (sdw_backend_precision(be) != SDW_PRECISION_BF16) {
        memcpy(y, act, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) y[i] = sdw_bf16_to_f32(((const uint16_t *)act)[i]);
}

static void check(const char *what, sdw_qtype q, int M, const float *got, const float *ref, size_t n, double gate)
{
    char msg[128];
    snprintf(msg, sizeof msg, "%s %s M=%d", sdw_qtype_name(q), what, M);
    test_check_close(msg, got, ref, n, gate);
}

/* Every entry point of one layer at M rows. */
static void check_forward(sdw_backend *be, const layer *L, int M, double gate)
{
    const int K = L->K, N = L->N;
    const size_t nx = (size_t)M * K, ny = (size_t)M * N;
    float *x = malloc(sizeof(float) * nx), *ref = malloc(sizeof(float) * ny), *y = malloc(sizeof(float) * ny);
    float *y0 = malloc(sizeof(float) * ny), *want = malloc(sizeof(float) * ny);
    void *xa = malloc(sdw_act_bytes(be, nx)), *ya = malloc(sdw_act_bytes(be, ny));
    void *ga = malloc(sdw_act_bytes(be, ny / 2)), *tmp = malloc(sdw_act_bytes(be, ny));
    test_fill(x, nx, 100u + (uint32_t)M);
    test_fill(y0, ny, 200u + (uint32_t)M);
    reference(x, L->w, L->bias, M, K, N, ref);
    /* y = x W^T + b */
    assert_int_equal(sdw_linear_forward(be, L->l, x, M, y), SDW_OK);
    check("forward", L->q, M, y, ref, ny, gate);
    /* y += x W^T + b */
    memcpy(y, y0, sizeof(float) * ny);
    for (size_t i = 0; i < ny; i++) want[i] = y0[i] + ref[i];
    assert_int_equal(sdw_linear_forward_add(be, L->l, x, M, y), SDW_OK);
    check("forward_add", L->q, M, y, want, ny, gate);
    /* from an activation, into f32 and (added) into f32 */
    sdw_to_act(be, x, nx, xa);
    assert_int_equal(sdw_linear_forward_act(be, L->l, xa, M, y, false), SDW_OK);
    check("forward_act", L->q, M, y, ref, ny, gate);
    memcpy(y, y0, sizeof(float) * ny);
    assert_int_equal(sdw_linear_forward_act(be, L->l, xa, M, y, true), SDW_OK);
    check("forward_act accumulate", L->q, M, y, want, ny, gate);
    /* into an activation, and through GEGLU */
    assert_int_equal(sdw_linear_forward_to_act(be, L->l, xa, M, ya), SDW_OK);
    from_act(be, ya, ny, y);
    check("forward_to_act", L->q, M, y, ref, ny, gate);
    assert_int_equal(sdw_linear_forward_geglu_act(be, L->l, xa, M, tmp, ga), SDW_OK);
    from_act(be, ga, ny / 2, y);
    sdw_geglu(ref, M, N / 2, want);
    check("forward_geglu_act", L->q, M, y, want, ny / 2, gate);
    free(x), free(ref), free(y), free(y0), free(want), free(xa), free(ya), free(ga), free(tmp);
}

/* in: 800 for the 32-element formats (K chunks of 256 with a tail of 32),
 * 768 for the K-quants; out 520 (a panel of 512 and a tail) and 192 (in
 * bf16 on AVX-512-BF16 without AMX, linear_quant_dp.c's three panels of
 * 64; elsewhere panels again). */
static void run_forward(sdw_precision prec, double gate)
{
    if (!test_precision_runs(prec)) return;
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(prec, &be), SDW_OK);
    static const int Ms[] = { 1, 7, 64, 300 }, Ns[] = { 520, 192 };
    for (size_t i = 0; i < N_TYPES; i++)
        for (size_t n = 0; n < sizeof Ns / sizeof Ns[0]; n++) {
            const sdw_qtype q = all_types[i];
            const int K = sdw_qtype_block(q, NULL) == 256 ? 768 : 800, N = Ns[n];
            layer L = make_layer(be, q, K, N, (uint32_t)(11 + i));
            assert_true(sdw_linear_quant_type(L.l, NULL));
            assert_int_equal(sdw_linear_bytes(L.l), sdw_qtype_row_bytes(q, K) * N + sizeof(float) * N);
            for (size_t m = 0; m < sizeof Ms / sizeof Ms[0]; m++) check_forward(be, &L, Ms[m], gate);
            free_layer(&L);
        }
    sdw_backend_free(be);
}

static void test_forward_f32(void **state)
{
    (void)state;
    run_forward(SDW_PRECISION_F32, F32_GATE);
}

/* f32 on oneDNN matmul primitives instead of sgemm: the path bf16 takes
 * (a primitive per tail shape, the sum post-op along K), testable here. */
static void test_forward_f32_matmul(void **state)
{
    (void)state;
    sdw_qlinear_use_sgemm(false);
    run_forward(SDW_PRECISION_F32, F32_GATE);
    sdw_qlinear_use_sgemm(true);
}

static void test_forward_bf16(void **state)
{
    (void)state;
    run_forward(SDW_PRECISION_BF16, BF16_GATE);
}

/* get -> set -> get: how far a requantization of already-decoded weights
 * moves them (0 for the 32-element formats, float8 and bf16, whose
 * encoders land on the same grid), and a LoRA-like merge undone exactly by
 * copying the stored blocks back. */
static void test_weights_round_trip(void **state)
{
    (void)state;
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    for (size_t i = 0; i < N_TYPES; i++) {
        const sdw_qtype q = all_types[i];
        const int K = 512, N = 96;
        const size_t n = (size_t)K * N;
        layer L = make_layer(be, q, K, N, (uint32_t)(31 + i));
        float *w1 = malloc(sizeof(float) * n), *w2 = malloc(sizeof(float) * n), *d = malloc(sizeof(float) * n);
        size_t bytes;
        void *stored = sdw_linear_stored(L.l, &bytes);
        assert_int_equal(bytes, sdw_qtype_row_bytes(q, K) * N);
        void *saved = malloc(bytes);
        memcpy(saved, stored, bytes);
        assert_int_equal(sdw_linear_get_weights(be, L.l, w1), SDW_OK);
        if (memcmp(w1, L.w, sizeof(float) * n)) fail_msg("%s: get_weights is not the decoded rows", sdw_qtype_name(q));
        assert_int_equal(sdw_linear_set_weights(be, L.l, w1), SDW_OK);
        assert_int_equal(sdw_linear_get_weights(be, L.l, w2), SDW_OK);
        const double rt = test_rel_l2(w2, w1, n);
        /* A merge: w1 + a delta of 1% of its size. */
        test_fill(d, n, 77);
        for (size_t k = 0; k < n; k++) d[k] = w1[k] + 0.01f * d[k];
        assert_int_equal(sdw_linear_set_weights(be, L.l, d), SDW_OK);
        assert_int_equal(sdw_linear_get_weights(be, L.l, w2), SDW_OK);
        const double merge = test_rel_l2(w2, d, n);
        /* How much of the delta itself survives: the error relative to it. */
        for (size_t k = 0; k < n; k++) {
            w2[k] -= w1[k];
            d[k] -= w1[k];
        }
        const double delta = test_rel_l2(w2, d, n);
        memcpy(sdw_linear_stored(L.l, &bytes), saved, bytes);
        assert_int_equal(sdw_linear_get_weights(be, L.l, w2), SDW_OK);
        if (memcmp(w1, w2, sizeof(float) * n)) fail_msg("%s: restoring the stored blocks", sdw_qtype_name(q));
        printf("  %-8s round trip rel L2 %.2e; a 1%% merge requantized: weights rel L2 %.2e, delta rel L2 %.2e\n",
               sdw_qtype_name(q), rt, merge, delta);
        const bool k_quant = sdw_qtype_block(q, NULL) == 256;
        if (!k_quant && rt != 0) fail_msg("%s: round trip moved the weights (rel L2 %.2e)", sdw_qtype_name(q), rt);
        if (k_quant && rt > 1e-2) fail_msg("%s: round trip rel L2 %.2e", sdw_qtype_name(q), rt);
        free(w1), free(w2), free(d), free(saved);
        free_layer(&L);
    }
    sdw_backend_free(be);
}

/* ---- the loader ---- */

/* A safetensors image in memory with F32 / F16 / F8_E4M3 tensors [rows, cols]. */
typedef struct {
    const char *name;
    const char *dtype; /* "F32", "F16" or "F8_E4M3" */
    int rows, cols;
    const float *data;
} mem_tensor;

static void *make_st(const mem_tensor *t, int n, size_t *size)
{
    char header[4096] = "{";
    size_t off = 0, len = 1;
    for (int i = 0; i < n; i++) {
        const size_t esz = !strcmp(t[i].dtype, "F32") ? 4 : !strcmp(t[i].dtype, "F16") ? 2 : 1, bytes = esz * (size_t)t[i].rows * t[i].cols;
        len += (size_t)snprintf(header + len, sizeof header - len,
                                "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
                                i ? "," : "", t[i].name, t[i].dtype, t[i].rows, t[i].cols, off, off + bytes);
        off += bytes;
    }
    len += (size_t)snprintf(header + len, sizeof header - len, "}");
    while (len % 8) header[len++] = ' ';
    uint8_t *buf = malloc(8 + len + off);
    for (int k = 0; k < 8; k++) buf[k] = (uint8_t)((uint64_t)len >> (8 * k));
    memcpy(buf + 8, header, len);
    uint8_t *p = buf + 8 + len;
    for (int i = 0; i < n; i++) {
        const size_t cnt = (size_t)t[i].rows * t[i].cols;
        if (!strcmp(t[i].dtype, "F32")) {
            memcpy(p, t[i].data, cnt * 4);
            p += cnt * 4;
        } else if (!strcmp(t[i].dtype, "F8_E4M3")) {
            sdw_qtype_quantize_row(SDW_QT_F8_E4M3, t[i].data, p, (int)cnt);
            p += cnt;
        } else {
            for (size_t k = 0; k < cnt; k++, p += 2) {
                uint16_t h = sdw_f32_to_f16(t[i].data[k]);
                memcpy(p, &h, 2);
            }
        }
    }
    *size = 8 + len + off;
    return buf;
}

/* The stored blocks of l equal q-encoding w's rows. */
static void expect_encoded(sdw_linear *l, sdw_qtype q, const float *w, int K, int N)
{
    sdw_qtype got;
    assert_true(sdw_linear_quant_type(l, &got));
    assert_int_equal(got, q);
    const size_t rb = sdw_qtype_row_bytes(q, K);
    uint8_t *want = malloc(rb * N);
    for (int r = 0; r < N; r++) sdw_qtype_quantize_row(q, w + (size_t)r * K, want + rb * r, K);
    size_t bytes;
    const void *stored = sdw_linear_stored(l, &bytes);
    assert_int_equal(bytes, rb * N);
    if (memcmp(stored, want, bytes)) fail_msg("%s: loaded blocks differ from the rows encoded", sdw_qtype_name(q));
    free(want);
}

static void test_loader_weight_type(void **state)
{
    (void)state;
    sdw_weight_type wt;
    assert_int_equal(sdw_weight_type_parse("Q8_0", &wt), SDW_OK);
    assert_int_equal(wt, SDW_WT_Q8_0);
    assert_int_equal(sdw_weight_type_parse("keep", &wt), SDW_OK);
    assert_int_equal(wt, SDW_WT_KEEP);
    assert_int_equal(sdw_weight_type_parse("f16", &wt), SDW_ERR_INVALID_ARG);
    assert_string_equal(sdw_weight_type_name(SDW_WT_Q4_0), "q4_0");

    const int K = 768, N = 1536, E = 512, S = 64;
    float *big = malloc(sizeof(float) * K * N), *bias = malloc(sizeof(float) * N), *small = malloc(sizeof(float) * S * S);
    test_fill(big, (size_t)K * N, 1);
    test_fill(bias, (size_t)N, 2);
    test_fill(small, (size_t)S * S, 3);
    const mem_tensor ts[] = {
        { "big.weight", "F32", N, K, big },        { "big.bias", "F32", 1, N, bias },
        { "half.weight", "F16", N, K, big },       { "small.weight", "F32", S, S, small },
        { "q.weight", "F32", E, K, big },          { "k.weight", "F32", E, K, big + (size_t)E * K },
        { "v.weight", "F32", E, K, big + (size_t)2 * E * K }, { "fp8.weight", "F8_E4M3", N, K, big },
    };
    size_t size;
    void *img = make_st(ts, (int)(sizeof ts / sizeof ts[0]), &size);
    sdw_safetensors *st;
    assert_int_equal(sdw_st_parse(img, size, "mem", &st), SDW_OK);
    /* big.bias is [1, N]: the loader only counts elements. */
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    sdw_wloader wl;
    sdw_wl_init(&wl, be, st);
    sdw_linear *l;

    /* keep: dense stays dense */
    assert_int_equal(sdw_wl_linear(&wl, &l, K, N, true, "big"), SDW_OK);
    assert_false(sdw_linear_quant_type(l, NULL));
    sdw_linear_free(l);

    /* q8_0: quantized row by row, the bias kept f32, the bytes counted */
    wl.weight_type = SDW_WT_Q8_0;
    wl.bytes_held = 0;
    assert_int_equal(sdw_wl_linear(&wl, &l, K, N, true, "big"), SDW_OK);
    expect_encoded(l, SDW_QT_Q8_0, big, K, N);
    assert_int_equal(wl.bytes_held, sdw_qtype_row_bytes(SDW_QT_Q8_0, K) * N + sizeof(float) * N);
    sdw_linear_free(l);
    /* a small layer stays dense */
    assert_int_equal(sdw_wl_linear(&wl, &l, S, S, false, "small"), SDW_OK);
    assert_false(sdw_linear_quant_type(l, NULL));
    sdw_linear_free(l);

    /* float8 (8 bits) asked for q8_0 (8.5) stays float8, its bytes as in the file */
    float *f8 = malloc(sizeof(float) * K * N);
    uint8_t *f8_bytes = malloc((size_t)K * N);
    sdw_qtype_quantize_row(SDW_QT_F8_E4M3, big, f8_bytes, K * N);
    sdw_qtype_dequantize_row(SDW_QT_F8_E4M3, f8_bytes, f8, K * N);
    assert_int_equal(sdw_wl_linear(&wl, &l, K, N, false, "fp8"), SDW_OK);
    expect_encoded(l, SDW_QT_F8_E4M3, f8, K, N);
    sdw_linear_free(l);

    /* q4_0 from f16 and from float8, and a stack of three parts: rows concatenated */
    wl.weight_type = SDW_WT_Q4_0;
    float *h = malloc(sizeof(float) * K * N);
    for (size_t i = 0; i < (size_t)K * N; i++) h[i] = sdw_f16_to_f32(sdw_f32_to_f16(big[i]));
    assert_int_equal(sdw_wl_linear(&wl, &l, K, N, false, "half"), SDW_OK);
    expect_encoded(l, SDW_QT_Q4_0, h, K, N);
    sdw_linear_free(l);
    assert_int_equal(sdw_wl_linear(&wl, &l, K, N, false, "fp8"), SDW_OK);
    expect_encoded(l, SDW_QT_Q4_0, f8, K, N);
    sdw_linear_free(l);
    static const char *const qkv[] = { "q", "k", "v" };
    assert_int_equal(sdw_wl_linear_stack(&wl, &l, K, E, 3, false, "", qkv), SDW_OK);
    expect_encoded(l, SDW_QT_Q4_0, big, K, 3 * E);
    sdw_linear_free(l);

    /* bf16 in f32 precision: compact bf16 from f32 and from f16 */
    wl.weight_type = SDW_WT_BF16;
    assert_int_equal(sdw_wl_linear(&wl, &l, K, N, false, "big"), SDW_OK);
    expect_encoded(l, SDW_QT_BF16, big, K, N);
    sdw_linear_free(l);
    assert_int_equal(sdw_wl_linear(&wl, &l, K, N, false, "half"), SDW_OK);
    expect_encoded(l, SDW_QT_BF16, h, K, N);
    sdw_linear_free(l);

    sdw_wl_done(&wl);
    sdw_st_close(st);
    sdw_backend_free(be);
    free(img), free(big), free(bias), free(small), free(h), free(f8), free(f8_bytes);
}

/* The GGUF test vectors: kept as blocks (the file's bytes), decoding to
 * llama.cpp's values exactly; stacked rows of blocks; mixed formats and
 * weight_type f32 load dense with the same values. */
static void test_loader_gguf(void **state)
{
    (void)state;
    static const char *const names[] = { "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k",
                                         "q6_k" };
    sdw_safetensors *st = test_open_st("flux/gguf_blocks/blocks.gguf");
    sdw_safetensors *ref = test_open_st("flux/gguf_blocks/blocks_dequantized.safetensors");
    sdw_backend *be;
    assert_int_equal(sdw_backend_create(SDW_PRECISION_F32, &be), SDW_OK);
    sdw_wloader wl;
    sdw_wl_init(&wl, be, st);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%s", names[i]);
        const sdw_st_tensor *t = sdw_st_find(st, name);
        assert_non_null(t);
        const int rows = (int)t->shape[0], K = (int)t->shape[1], M = 5;
        int64_t n;
        float *want = test_load_f32(ref, name, &n), *w = malloc(sizeof(float) * n);
        sdw_linear *l;
        for (int wt = 0; wt < 2; wt++) {
            wl.weight_type = wt ? SDW_WT_F32 : SDW_WT_KEEP;
            const sdw_wl_part part = { t, 0, rows, 0 };
            if (sdw_wl_linear_parts(&wl, &l, K, rows, &part, 1, NULL) != SDW_OK) fail_msg("%s", sdw_last_error());
            assert_int_equal(sdw_linear_quant_type(l, NULL), !wt);
            if (!wt) {
                size_t bytes;
                const void *stored = sdw_linear_stored(l, &bytes);
                assert_int_equal(bytes, t->nbytes);
                t = sdw_st_find(st, name); /* the mapping was released: read again */
                assert_int_equal(memcmp(stored, t->data, bytes), 0);
            }
            assert_int_equal(sdw_linear_get_weights(be, l, w), SDW_OK);
            if (memcmp(w, want, sizeof(float) * n)) fail_msg("%s: weights differ from llama.cpp's", name);
            float *x = malloc(sizeof(float) * M * K), *y = malloc(sizeof(float) * M * rows);
            float *yr = malloc(sizeof(float) * M * rows);
            test_fill(x, (size_t)M * K, 9);
            reference(x, want, NULL, M, K, rows, yr);
            assert_int_equal(sdw_linear_forward(be, l, x, M, y), SDW_OK);
            char what[96];
            snprintf(what, sizeof what, "%s %s M=%d", name, wt ? "dense" : "blocks", M);
            test_check_close(what, y, yr, (size_t)M * rows, F32_GATE);
            free(x), free(y), free(yr);
            sdw_linear_free(l);
        }
        /* Stacked after itself: twice the rows of blocks. */
        wl.weight_type = SDW_WT_KEEP;
        const sdw_wl_part two[] = { { t, 0, rows, 0 }, { t, 0, rows, rows } };
        assert_int_equal(sdw_wl_linear_parts(&wl, &l, K, 2 * rows, two, 2, NULL), SDW_OK);
        assert_true(sdw_linear_quant_type(l, NULL));
        float *w2 = malloc(sizeof(float) * 2 * n);
        assert_int_equal(sdw_linear_get_weights(be, l, w2), SDW_OK);
        assert_int_equal(memcmp(w2, want, sizeof(float) * n), 0);
        assert_int_equal(memcmp(w2 + n, want, sizeof(float) * n), 0);
        free(w2);
        sdw_linear_free(l);
        free(want), free(w);
    }
    /* q4_0 and q8_0 rows (both 64 wide) in one stack: dense, same values. */
    const sdw_wl_part mixed[] = { { sdw_st_find(st, "blocks.q4_0"), 0, 3, 0 }, { sdw_st_find(st, "blocks.q8_0"), 0, 3, 3 } };
    sdw_linear *l;
    assert_int_equal(sdw_wl_linear_parts(&wl, &l, 64, 6, mixed, 2, NULL), SDW_OK);
    assert_false(sdw_linear_quant_type(l, NULL));
    float w[6 * 64], *a = test_load_f32(ref, "blocks.q4_0", NULL), *b = test_load_f32(ref, "blocks.q8_0", NULL);
    assert_int_equal(sdw_linear_get_weights(be, l, w), SDW_OK);
    assert_int_equal(memcmp(w, a, sizeof(float) * 3 * 64), 0);
    assert_int_equal(memcmp(w + 3 * 64, b, sizeof(float) * 3 * 64), 0);
    free(a), free(b);
    sdw_linear_free(l);
    sdw_wl_done(&wl);
    sdw_st_close(st);
    sdw_st_close(ref);
    sdw_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_matches_io),   cmocka_unit_test(test_forward_f32),
        cmocka_unit_test(test_forward_f32_matmul),
        cmocka_unit_test(test_forward_bf16),        cmocka_unit_test(test_weights_round_trip),
        cmocka_unit_test(test_loader_weight_type),  cmocka_unit_test(test_loader_gguf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
