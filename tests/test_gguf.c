/* test_gguf.c: GGUF files and the quantized / fp8 dtypes as a tensor source.
 * (a) every GGUF block type dequantized equals gguf-py's reference values bit
 * for bit; (b) the tiny FLUX GGUFs open through sdw_st_open like the
 * safetensors file they were made from (names, shapes, KVs, types) and their
 * weights are the originals within the quantization step, with per-type
 * errors equal to the figures gguf.json gives; (c) float8 e4m3fn / e5m2
 * decode by their formulas, all 256 codes, and the fp8 T5 file reads;
 * (d) hand-built GGUF images, good and malformed: every bad one fails with a
 * message naming the file, truncated at every byte, bytes flipped, nothing
 * crashes. */
#include "testkit.h"
#include "core/error.h"
#include "core/half.h"
#include "io/gguf.h"
#include "io/json_file.h"
#include "io/quant.h"
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- (a) block test vectors ---- */

static void blocks_exact(void **state)
{
    (void)state;
    cJSON *j = NULL;
    assert_int_equal(sdw_json_load_file(test_data_path("flux/gguf_blocks/blocks.json"), &j), SDW_OK);
    sdw_safetensors *g = test_open_st("flux/gguf_blocks/blocks.gguf");
    sdw_safetensors *ref = test_open_st("flux/gguf_blocks/blocks_dequantized.safetensors");
    assert_string_equal(sdw_st_meta_get(g, "general.architecture"), "flux");
    const cJSON *types = cJSON_GetObjectItemCaseSensitive(j, "types");
    assert_int_equal(cJSON_GetArraySize(types), 10);
    const cJSON *ty;
    cJSON_ArrayForEach(ty, types) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%s", ty->valuestring);
        for (char *p = name; *p; p++) *p = (char)tolower((unsigned char)*p);
        const sdw_st_tensor *t = sdw_st_find(g, name), *r = sdw_st_find(ref, name);
        assert_non_null(t);
        assert_non_null(r);
        assert_string_equal(sdw_st_dtype_name(t->dtype), ty->valuestring);
        assert_int_equal(t->ndim, r->ndim);
        for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], r->shape[d]);
        size_t bytes, block = sdw_st_dtype_block(t->dtype, &bytes);
        assert_int_equal(t->nbytes, (uint64_t)t->numel / block * bytes);
        int64_t n;
        float *want = test_load_f32(ref, name, &n), *got = test_load_f32(g, name, NULL);
        int bad = 0;
        for (int64_t i = 0; i < n; i++)
            if (memcmp(&got[i], &want[i], 4) && bad++ < 3)
                print_message("%s[%lld]: %.9g, want %.9g\n", name, (long long)i, got[i], want[i]);
        print_message("%-12s %-5s %lld values, %d differ\n", name, ty->valuestring, (long long)n, bad);
        assert_int_equal(bad, 0);
        free(want);
        free(got);
    }
    sdw_st_close(g);
    sdw_st_close(ref);
    cJSON_Delete(j);
}

/* ---- (b) the tiny FLUX GGUFs ---- */

static float round_f16(float x) { return sdw_f16_to_f32(sdw_f32_to_f16(x)); }
static float round_bf16(float x) { return sdw_bf16_to_f32(sdw_f32_to_bf16(x)); }

/* Every element of a 32-block quantized tensor lies within the step of its
 * block: Q8_0 d = amax / 127, error <= d / 2; Q4_0 d = -max / 8 (max the
 * largest-magnitude value), error <= |d| (the top code is clamped at 15); each
 * plus the f16 rounding of d times |q| and the bf16 / f16 rounding of the
 * source. Returns the number of elements outside. */
static int64_t outside_step(sdw_st_dtype t, const float *got, const float *orig, int64_t n)
{
    int64_t bad = 0;
    for (int64_t b = 0; b < n; b += 32) {
        double amax = 0;
        for (int k = 0; k < 32; k++) amax = fmax(amax, fabs(orig[b + k]));
        double d = t == SDW_ST_Q8_0 ? amax / 127 : amax / 8;
        double tol = (t == SDW_ST_Q8_0 ? 0.5 * d + 127 * d / 2048 : d + 8 * d / 2048) + amax / 128;
        for (int k = 0; k < 32; k++)
            if (fabs((double)got[b + k] - orig[b + k]) > tol) bad++;
    }
    return bad;
}

static void flux_gguf(const char *file, const char *ftype, sdw_st_dtype qtype, bool bf16_source)
{
    char path[256];
    snprintf(path, sizeof path, "flux/models/flux-tiny-dev/%s", file);
    sdw_safetensors *g = test_open_st(path);
    sdw_safetensors *src = test_open_st("flux/models/flux-tiny-dev/flux1-dev.safetensors");
    cJSON *j = NULL;
    assert_int_equal(sdw_json_load_file(test_data_path("flux/models/flux-tiny-dev/gguf.json"), &j), SDW_OK);
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(j, file);
    const cJSON *types = cJSON_GetObjectItemCaseSensitive(desc, "tensor_types");
    const cJSON *errs = cJSON_GetObjectItemCaseSensitive(desc, "weight_rel_l2_vs_fp32_by_type");
    assert_non_null(types);
    assert_non_null(errs);

    assert_string_equal(sdw_st_meta_get(g, "general.architecture"), "flux");
    assert_string_equal(sdw_st_meta_get(g, "general.quantization_version"), "2");
    assert_string_equal(sdw_st_meta_get(g, "general.file_type"), ftype);
    assert_int_equal(g->n_tensors, src->n_tensors);
    assert_int_equal(g->n_tensors, cJSON_GetArraySize(types));

    /* rel L2 against the fp32 originals, max and mean per dtype */
    const sdw_st_dtype kinds[3] = { SDW_ST_F32, bf16_source ? SDW_ST_BF16 : SDW_ST_F16, qtype };
    double emax[3] = { 0 }, esum[3] = { 0 };
    int count[3] = { 0 };
    for (int i = 0; i < g->n_tensors; i++) {
        const sdw_st_tensor *t = &g->tensors[i], *o = sdw_st_find(src, t->name);
        assert_non_null(o);
        assert_int_equal(t->ndim, o->ndim);
        for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], o->shape[d]);
        const cJSON *jt = cJSON_GetObjectItemCaseSensitive(types, t->name);
        assert_non_null(jt);
        assert_string_equal(sdw_st_dtype_name(t->dtype), jt->valuestring);
        int k = 0;
        while (k < 3 && kinds[k] != t->dtype) k++;
        assert_true(k < 3);
        int64_t n;
        float *orig = test_load_f32(src, t->name, &n), *got = test_load_f32(g, t->name, NULL);
        int64_t bad = 0;
        for (int64_t e = 0; e < n && k < 2; e++) {   /* unquantized: the source rounded, exactly */
            float want = bf16_source || t->dtype == SDW_ST_BF16 ? round_bf16(orig[e])
                         : t->dtype == SDW_ST_F16 ? round_f16(orig[e]) : orig[e];
            if (memcmp(&got[e], &want, 4)) bad++;
        }
        if (k == 2) bad = outside_step(t->dtype, got, orig, n);
        if (bad) fail_msg("%s %s (%s): %lld values wrong", file, t->name, jt->valuestring, (long long)bad);
        double e = test_rel_l2(got, orig, (size_t)n);
        emax[k] = fmax(emax[k], e);
        esum[k] += e;
        count[k]++;
        free(orig);
        free(got);
    }
    /* The per-type figures in gguf.json were computed from the reference
     * dequantization: the same values give the same figures. */
    for (int k = 0; k < 3; k++) {
        const cJSON *je = cJSON_GetObjectItemCaseSensitive(errs, sdw_st_dtype_name(kinds[k]));
        assert_non_null(je);
        double jmax = cJSON_GetObjectItemCaseSensitive(je, "max")->valuedouble;
        double jmean = cJSON_GetObjectItemCaseSensitive(je, "mean")->valuedouble;
        double mean = esum[k] / count[k];
        print_message("%s %-4s %2d tensors: rel L2 vs fp32 max %.6e mean %.6e (gguf.json %.6e %.6e)\n", file,
                      sdw_st_dtype_name(kinds[k]), count[k], emax[k], mean, jmax, jmean);
        assert_true(fabs(emax[k] - jmax) <= 1e-6 * jmax + 1e-12);
        assert_true(fabs(mean - jmean) <= 1e-6 * jmean + 1e-12);
        char key[16];
        snprintf(key, sizeof key, "%s", sdw_st_dtype_name(kinds[k]));
        assert_int_equal(count[k], cJSON_GetObjectItemCaseSensitive(
                                       cJSON_GetObjectItemCaseSensitive(desc, "type_counts"), key)->valueint);
    }
    sdw_st_close(g);
    sdw_st_close(src);
    cJSON_Delete(j);
}

static void flux_q8_0(void **state) { (void)state; flux_gguf("flux1-dev-Q8_0.gguf", "7", SDW_ST_Q8_0, false); }
static void flux_q4_0(void **state) { (void)state; flux_gguf("flux1-dev-Q4_0.gguf", "2", SDW_ST_Q4_0, true); }

/* ---- (c) float8 ---- */

static double e4m3_formula(int b)
{
    int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    double v = e == 0 ? m / 8.0 * ldexp(1, -6) : (1 + m / 8.0) * ldexp(1, e - 7);
    return s ? -v : v;
}

static double e5m2_formula(int b)
{
    int s = b >> 7, e = (b >> 2) & 31, m = b & 3;
    double v = e == 31 ? (m ? NAN : INFINITY) : e == 0 ? m / 4.0 * ldexp(1, -14) : (1 + m / 4.0) * ldexp(1, e - 15);
    return s ? -v : v;
}

static void fp8_codes(void **state)
{
    (void)state;
    for (int b = 0; b < 256; b++) {
        float f = sdw_f8_e4m3_to_f32((uint8_t)b);
        if ((b & 0x7f) == 0x7f) {
            assert_true(isnan(f));
        } else {
            assert_true((double)f == e4m3_formula(b));
            assert_true(!!signbit(f) == (b >= 128));   /* 0x80 is -0 */
        }
        float g = sdw_f8_e5m2_to_f32((uint8_t)b);
        double w = e5m2_formula(b);
        if (isnan(w)) assert_true(isnan(g));
        else assert_true((double)g == w && !!signbit(g) == (b >= 128));
    }
    assert_true(sdw_f8_e4m3_to_f32(0x7e) == 448.0f);
    assert_true(sdw_f8_e4m3_to_f32(0x01) == 0x1p-9f);
    assert_true(sdw_f8_e5m2_to_f32(0x7b) == 57344.0f);
    assert_true(isinf(sdw_f8_e5m2_to_f32(0xfc)) && sdw_f8_e5m2_to_f32(0xfc) < 0);
}

static void fp8_t5_file(void **state)
{
    (void)state;
    sdw_safetensors *q = test_open_st("flux/models/flux-tiny-common/t5xxl_fp8_e4m3fn.safetensors");
    sdw_safetensors *o = test_open_st("flux/models/flux-tiny-common/t5xxl.safetensors");
    int n8 = 0, n16 = 0;
    for (int i = 0; i < q->n_tensors; i++) {
        const sdw_st_tensor *t = &q->tensors[i];
        int64_t n;
        float *got = test_load_f32(q, t->name, &n), *orig = test_load_f32(o, t->name, NULL);
        if (t->dtype == SDW_ST_F8_E4M3) {
            assert_int_equal(t->ndim, 2);
            n8++;
            const uint8_t *raw = t->data;
            for (int64_t e = 0; e < n; e++) {
                if ((double)got[e] != e4m3_formula(raw[e])) fail_msg("%s[%lld]", t->name, (long long)e);
                /* round to nearest: within half a step (2^(exponent - 3); 2^-9 below 2^-6) */
                double step = orig[e] ? ldexp(1, ilogb(orig[e]) - 3) : 0;
                step = fmax(step, ldexp(1, -9));
                assert_true(fabs((double)got[e] - orig[e]) <= step / 2 * (1 + 1e-9) || fabs(orig[e]) > 448);
            }
            if (n8 == 1)
                print_message("%s: F8_E4M3 rel L2 vs fp32 %.3e\n", t->name, test_rel_l2(got, orig, (size_t)n));
        } else {
            assert_int_equal(t->dtype, SDW_ST_F16);
            assert_int_equal(t->ndim, 1);
            n16++;
            for (int64_t e = 0; e < n; e++) assert_true(got[e] == round_f16(orig[e]));
        }
        free(got);
        free(orig);
    }
    print_message("t5xxl_fp8_e4m3fn: %d F8_E4M3 and %d F16 tensors decoded\n", n8, n16);
    assert_true(n8 > 0 && n16 > 0);
    sdw_st_close(q);
    sdw_st_close(o);
}

/* ---- (d) hand-built GGUF images ---- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *s, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void put_u8(buf *b, uint8_t v) { put(b, &v, 1); }
static void put_u32(buf *b, uint32_t v) { for (int i = 0; i < 4; i++) put_u8(b, (uint8_t)(v >> 8 * i)); }
static void put_u64(buf *b, uint64_t v) { for (int i = 0; i < 8; i++) put_u8(b, (uint8_t)(v >> 8 * i)); }
static void put_str(buf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }
static void pad_to(buf *b, size_t a) { while (b->n % a) put_u8(b, 0); }

/* What a built image changes from the good one. */
typedef struct {
    uint32_t version;                  /* 3 */
    uint64_t n_tensors, n_kv;          /* 0: the true counts */
    uint32_t type_b;                   /* ggml type of tensor b (Q8_0 = 8) */
    uint64_t ne0_b;                    /* 64: two Q8_0 blocks a row */
    uint64_t offset_b;                 /* 0: where it belongs */
    const char *name_b;                /* "b" */
    uint32_t ndim_b;                   /* 2 */
    uint32_t alignment;                /* 0: no general.alignment KV (32) */
    uint32_t alignment_type;           /* of that KV: 4 = u32 */
    uint32_t kv_type;                  /* of test.i8: 1 */
    bool dup_key, nested_array;
    uint64_t str_array_len;            /* 0: the true length, 2 */
} spec;

static spec good(void)
{
    return (spec){ .version = 3, .type_b = 8, .ne0_b = 64, .name_b = "b", .ndim_b = 2, .alignment_type = 4,
                   .kv_type = 1 };
}

/* Tensor a: F32 [2, 3] = 0..5. Tensor b: Q8_0 [2, ne0_b], block i has
 * d = 0.5 and q[k] = k - 16 + i, so b[i*32 + k] = 0.5 (k - 16 + i). */
static buf build(spec s)
{
    buf b = { 0 };
    uint32_t align = s.alignment ? s.alignment : 32;
    uint64_t n_kv = 9 + (s.alignment != 0) + s.dup_key + s.nested_array;
    put(&b, "GGUF", 4);
    put_u32(&b, s.version);
    put_u64(&b, s.n_tensors ? s.n_tensors : 2);
    put_u64(&b, s.n_kv ? s.n_kv : n_kv);
    put_str(&b, "general.architecture"); put_u32(&b, 8); put_str(&b, "flux");
    put_str(&b, "general.file_type"); put_u32(&b, 4); put_u32(&b, 7);
    put_str(&b, "test.f32"); put_u32(&b, 6); put_u32(&b, 0x3f000000);   /* 0.5 */
    put_str(&b, "test.bool"); put_u32(&b, 7); put_u8(&b, 1);
    put_str(&b, "test.i8"); put_u32(&b, s.kv_type); put_u8(&b, 0xfd);  /* -3 */
    put_str(&b, "test.i64"); put_u32(&b, 11); put_u64(&b, (uint64_t)-5);
    put_str(&b, "test.f64"); put_u32(&b, 12); put_u64(&b, 0x3fd0000000000000);   /* 0.25 */
    put_str(&b, "test.strings"); put_u32(&b, 9); put_u32(&b, 8); put_u64(&b, s.str_array_len ? s.str_array_len : 2);
    put_str(&b, "x"); put_str(&b, "yz");
    put_str(&b, "test.u32s"); put_u32(&b, 9); put_u32(&b, 4); put_u64(&b, 3);
    for (uint32_t i = 1; i <= 3; i++) put_u32(&b, i);
    if (s.alignment) { put_str(&b, "general.alignment"); put_u32(&b, s.alignment_type); put_u32(&b, s.alignment); }
    if (s.dup_key) { put_str(&b, "test.bool"); put_u32(&b, 7); put_u8(&b, 0); }
    if (s.nested_array) { put_str(&b, "test.nested"); put_u32(&b, 9); put_u32(&b, 9); put_u64(&b, 1); }
    /* tensor infos */
    put_str(&b, "a"); put_u32(&b, 2); put_u64(&b, 3); put_u64(&b, 2); put_u32(&b, 0); put_u64(&b, 0);
    uint64_t off_b = (24 + align - 1) / align * align;
    put_str(&b, s.name_b); put_u32(&b, s.ndim_b); put_u64(&b, s.ne0_b);
    for (uint32_t d = 1; d < s.ndim_b; d++) put_u64(&b, 2);
    put_u32(&b, s.type_b); put_u64(&b, s.offset_b ? s.offset_b : off_b);
    pad_to(&b, align);
    for (int i = 0; i < 6; i++) { float f = (float)i; put(&b, &f, 4); }
    pad_to(&b, align);
    for (uint64_t i = 0; i < s.ne0_b / 32 * 2 && s.ne0_b <= 1024; i++) {   /* no padding after: every prefix is short */
        put_u8(&b, 0x00); put_u8(&b, 0x38);             /* f16 0.5 */
        for (int k = 0; k < 32; k++) put_u8(&b, (uint8_t)(int8_t)(k - 16 + (int)i));
    }
    return b;
}

/* Parses through sdw_gguf_parse and (GGUF magic present) sdw_st_parse; both
 * must agree, and a failure must name the file. */
static sdw_status parse_both(const buf *b, sdw_safetensors **out)
{
    sdw_safetensors *st2 = NULL;
    sdw_status s = sdw_gguf_parse(b->p, b->n, "bad.gguf", out);
    if (s != SDW_OK) {
        assert_null(*out);
        if (!strstr(sdw_last_error(), "bad.gguf")) fail_msg("message without the file: %s", sdw_last_error());
    }
    if (b->n >= 4 && !memcmp(b->p, "GGUF", 4)) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", sdw_last_error());
        assert_int_equal(sdw_st_parse(b->p, b->n, "bad.gguf", &st2), s);
        if (s != SDW_OK) assert_string_equal(sdw_last_error(), msg);
        sdw_st_close(st2);
    }
    return s;
}

static void expect_fail(spec s, sdw_status want, const char *needle)
{
    buf b = build(s);
    sdw_safetensors *st = NULL;
    sdw_status got = parse_both(&b, &st);
    sdw_st_close(st);
    if (got != want || !strstr(sdw_last_error(), needle))
        fail_msg("status %d (want %d), message \"%s\" (want \"%s\" in it)", got, want, sdw_last_error(), needle);
    print_message("  %s\n", sdw_last_error());
    free(b.p);
}

static void check_good(const sdw_safetensors *st)
{
    assert_int_equal(st->n_tensors, 2);
    assert_string_equal(sdw_st_meta_get(st, "general.architecture"), "flux");
    assert_string_equal(sdw_st_meta_get(st, "general.file_type"), "7");
    assert_string_equal(sdw_st_meta_get(st, "test.f32"), "0.5");
    assert_string_equal(sdw_st_meta_get(st, "test.bool"), "true");
    assert_string_equal(sdw_st_meta_get(st, "test.i8"), "-3");
    assert_string_equal(sdw_st_meta_get(st, "test.i64"), "-5");
    assert_string_equal(sdw_st_meta_get(st, "test.f64"), "0.25");
    assert_null(sdw_st_meta_get(st, "test.strings"));   /* arrays are left out */
    const sdw_st_tensor *a = sdw_st_find(st, "a"), *b = sdw_st_find(st, "b");
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->dtype, SDW_ST_F32);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 3);
    assert_int_equal(b->dtype, SDW_ST_Q8_0);
    assert_int_equal(b->shape[0], 2);
    assert_int_equal(b->shape[1], 64);
    assert_int_equal(b->numel, 128);
    assert_int_equal(b->nbytes, 4 * 34);
    float v[128];
    assert_int_equal(sdw_st_read_f32(st, a, v), SDW_OK);
    for (int i = 0; i < 6; i++) assert_true(v[i] == (float)i);
    assert_int_equal(sdw_st_read_f32(st, b, v), SDW_OK);
    for (int i = 0; i < 128; i++) assert_true(v[i] == 0.5f * (float)(i % 32 - 16 + i / 32));
}

static void built_good(void **state)
{
    (void)state;
    buf b = build(good());
    sdw_safetensors *st = NULL;
    assert_int_equal(parse_both(&b, &st), SDW_OK);
    check_good(st);
    sdw_st_close(st);
    /* the same through a file, and a 64-byte alignment */
    char path[] = "/tmp/sdw_gguf_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b.p, b.n), (ssize_t)b.n);
    close(fd);
    assert_int_equal(sdw_st_open(path, &st), SDW_OK);
    check_good(st);
    sdw_st_close(st);
    unlink(path);
    free(b.p);
    spec s = good();
    s.alignment = 64;
    b = build(s);
    assert_int_equal(parse_both(&b, &st), SDW_OK);
    check_good(st);
    assert_int_equal(((const uint8_t *)sdw_st_find(st, "b")->data - b.p) % 64, 0);
    sdw_st_close(st);
    free(b.p);
}

static void built_malformed(void **state)
{
    (void)state;
    spec s;
    s = good(); s.version = 1; expect_fail(s, SDW_ERR_UNSUPPORTED, "version 1");
    s = good(); s.version = 4; expect_fail(s, SDW_ERR_UNSUPPORTED, "version 4");
    s = good(); s.version = 0x03000000; expect_fail(s, SDW_ERR_UNSUPPORTED, "big-endian");
    s = good(); s.n_tensors = UINT64_MAX; expect_fail(s, SDW_ERR_FORMAT, "claims");
    s = good(); s.n_tensors = (uint64_t)1 << 33; expect_fail(s, SDW_ERR_FORMAT, "claims");
    s = good(); s.n_tensors = 3; expect_fail(s, SDW_ERR_FORMAT, "outside the data section");   /* reads padding */
    s = good(); s.n_kv = (uint64_t)1 << 40; expect_fail(s, SDW_ERR_FORMAT, "claims");
    s = good(); s.type_b = 99; expect_fail(s, SDW_ERR_UNSUPPORTED, "tensor b has ggml type 99");
    s = good(); s.type_b = 16; expect_fail(s, SDW_ERR_UNSUPPORTED, "IQ2_XXS");
    s = good(); s.offset_b = 1 << 20; expect_fail(s, SDW_ERR_FORMAT, "outside the data section");
    s = good(); s.offset_b = 48; expect_fail(s, SDW_ERR_FORMAT, "not a multiple of the alignment");
    s = good(); s.offset_b = UINT64_MAX - 31; expect_fail(s, SDW_ERR_FORMAT, "outside");
    s = good(); s.alignment = 16; s.offset_b = 16; expect_fail(s, SDW_ERR_FORMAT, "overlap");
    s = good(); s.ne0_b = 48; expect_fail(s, SDW_ERR_FORMAT, "multiple of 32");
    s = good(); s.name_b = "a"; expect_fail(s, SDW_ERR_FORMAT, "appears twice");
    s = good(); s.dup_key = true; expect_fail(s, SDW_ERR_FORMAT, "key test.bool appears twice");
    s = good(); s.nested_array = true; expect_fail(s, SDW_ERR_FORMAT, "nested");
    s = good(); s.alignment = 24; expect_fail(s, SDW_ERR_FORMAT, "power of two");
    s = good(); s.alignment = 64; s.alignment_type = 5; expect_fail(s, SDW_ERR_FORMAT, "general.alignment");
    s = good(); s.alignment = 64; s.alignment_type = 8; expect_fail(s, SDW_ERR_FORMAT, "type 8");   /* a string */
    s = good(); s.kv_type = 13; expect_fail(s, SDW_ERR_FORMAT, "unknown value type 13");
    s = good(); s.ndim_b = 9; expect_fail(s, SDW_ERR_UNSUPPORTED, "9 dimensions");
    s = good(); s.ndim_b = 5; s.ne0_b = (uint64_t)1 << 62; expect_fail(s, SDW_ERR_FORMAT, "overflows");
    s = good(); s.str_array_len = (uint64_t)1 << 61; expect_fail(s, SDW_ERR_FORMAT, "array of");
    s = good(); s.str_array_len = 3; expect_fail(s, SDW_ERR_FORMAT, "truncated");

    buf b = build(good());
    sdw_safetensors *st = NULL;
    b.p[0] = 'X';   /* bad magic: not GGUF to either parser */
    assert_int_equal(sdw_gguf_parse(b.p, b.n, "bad.gguf", &st), SDW_ERR_FORMAT);
    assert_non_null(strstr(sdw_last_error(), "not a GGUF file"));
    assert_int_not_equal(sdw_st_parse(b.p, b.n, "bad.gguf", &st), SDW_OK);
    assert_null(st);
    b.p[0] = 'G';
    /* a string length past the end: the first key's */
    uint8_t save[8];
    memcpy(save, b.p + 24, 8);
    memset(b.p + 24, 0xff, 8);
    assert_int_equal(parse_both(&b, &st), SDW_ERR_FORMAT);
    assert_non_null(strstr(sdw_last_error(), "truncated"));
    memcpy(b.p + 24, save, 8);
    assert_int_equal(sdw_gguf_parse(NULL, 0, "bad.gguf", &st), SDW_ERR_FORMAT);
    free(b.p);
}

/* Every prefix of a good image fails cleanly; every single byte set to 0x00,
 * 0xff or flipped in its low bit either parses (and then reads) or fails with
 * a message. Under the sanitizer build this is the memory-safety check. */
static void built_truncated_and_flipped(void **state)
{
    (void)state;
    buf b = build(good());
    sdw_safetensors *st = NULL;
    for (size_t n = 0; n < b.n; n++) {
        uint8_t *copy = malloc(n ? n : 1);   /* exactly n bytes, so ASan sees any read past them */
        memcpy(copy, b.p, n);
        buf c = { copy, n, n };
        if (parse_both(&c, &st) == SDW_OK) fail_msg("a %zu-byte prefix of %zu parsed", n, b.n);
        free(copy);
    }
    int ok = 0, failed = 0;
    float v[128];
    for (size_t i = 0; i < b.n; i++) {
        for (int k = 0; k < 3; k++) {
            uint8_t *copy = malloc(b.n);
            memcpy(copy, b.p, b.n);
            copy[i] = k == 0 ? 0 : k == 1 ? 0xff : copy[i] ^ 1;
            buf c = { copy, b.n, b.n };
            if (parse_both(&c, &st) == SDW_OK) {
                ok++;
                for (int t = 0; t < st->n_tensors; t++)
                    if (st->tensors[t].numel <= 128) sdw_st_read_f32(st, &st->tensors[t], v);
                sdw_st_close(st);
            } else {
                failed++;
            }
            free(copy);
        }
    }
    print_message("%zu prefixes rejected; byte edits: %d parsed, %d rejected with a message\n", b.n, ok, failed);
    free(b.p);
}

static void dtype_table(void **state)
{
    (void)state;
    size_t bytes;
    assert_int_equal(sdw_st_dtype_block(SDW_ST_F32, &bytes), 1);
    assert_int_equal(bytes, 4);
    assert_int_equal(sdw_st_dtype_size(SDW_ST_BF16), 2);
    static const struct { sdw_st_dtype t; const char *name; size_t block, bytes; } q[] = {
        { SDW_ST_Q4_0, "Q4_0", 32, 18 },   { SDW_ST_Q4_1, "Q4_1", 32, 20 },   { SDW_ST_Q5_0, "Q5_0", 32, 22 },
        { SDW_ST_Q5_1, "Q5_1", 32, 24 },   { SDW_ST_Q8_0, "Q8_0", 32, 34 },   { SDW_ST_Q2_K, "Q2_K", 256, 84 },
        { SDW_ST_Q3_K, "Q3_K", 256, 110 }, { SDW_ST_Q4_K, "Q4_K", 256, 144 }, { SDW_ST_Q5_K, "Q5_K", 256, 176 },
        { SDW_ST_Q6_K, "Q6_K", 256, 210 },
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        assert_string_equal(sdw_st_dtype_name(q[i].t), q[i].name);
        assert_int_equal(sdw_st_dtype_block(q[i].t, &bytes), q[i].block);
        assert_int_equal(bytes, q[i].bytes);
        assert_int_equal(sdw_st_dtype_size(q[i].t), 0);   /* no per-element size */
        assert_true(sdw_is_quantized(q[i].t));
    }
    assert_false(sdw_is_quantized(SDW_ST_F32));
    assert_false(sdw_dequantize(SDW_ST_I32, "", NULL, 0));
    /* a safetensors header may not name a GGUF type */
    const char *json = "{\"x\":{\"dtype\":\"Q8_0\",\"shape\":[32],\"data_offsets\":[0,34]}}";
    uint8_t img[8 + 128 + 34] = { 0 };
    size_t jl = strlen(json);
    img[0] = (uint8_t)jl;
    memcpy(img + 8, json, jl);
    sdw_safetensors *st = NULL;
    assert_int_equal(sdw_st_parse(img, 8 + jl + 34, "q.safetensors", &st), SDW_ERR_UNSUPPORTED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dtype_table),       cmocka_unit_test(blocks_exact),
        cmocka_unit_test(flux_q8_0),         cmocka_unit_test(flux_q4_0),
        cmocka_unit_test(fp8_codes),         cmocka_unit_test(fp8_t5_file),
        cmocka_unit_test(built_good),        cmocka_unit_test(built_malformed),
        cmocka_unit_test(built_truncated_and_flipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
