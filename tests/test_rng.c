/* test_rng.c: the seed-compatible generators against torch (CPU) and A1111's
 * Philox reproduction (CUDA), every tensor of tests/data/rng.safetensors as
 * described by rng.json. Gate: max abs < 1e-6 on every tensor. */
#include "testkit.h"
#include "sampling/rng.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GATE 1e-6

static cJSON *load_manifest(void)
{
    const char *path = test_data_path("rng.json");
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    buf[len] = 0;
    cJSON *root = cJSON_Parse(buf);
    free(buf);
    if (!root) fail_msg("rng.json is not valid JSON");
    return root;
}

static size_t entry_numel(const cJSON *e)
{
    size_t n = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(e, "shape")) n *= (size_t)d->valuedouble;
    return n;
}

static uint64_t entry_seed(const cJSON *e)
{
    /* 2**32+7 is exact in a double */
    return (uint64_t)cJSON_GetObjectItem(e, "seed")->valuedouble;
}

static bool entry_sequential(const cJSON *e)
{
    return cJSON_IsTrue(cJSON_GetObjectItem(e, "sequential"));
}

static int entry_draw(const cJSON *e)
{
    const cJSON *d = cJSON_GetObjectItem(e, "draw_index");
    return d ? (int)d->valuedouble : 0;
}

static const char *entry_op(const cJSON *e)
{
    return cJSON_GetObjectItem(e, "op")->valuestring;
}

/* The earlier draw k of the sequence e belongs to (same op, seed, sequential). */
static const cJSON *find_draw(const cJSON *entries, const cJSON *e, int k)
{
    const cJSON *x;
    cJSON_ArrayForEach(x, entries)
        if (entry_sequential(x) && entry_draw(x) == k && !strcmp(entry_op(x), entry_op(e)) &&
            entry_seed(x) == entry_seed(e))
            return x;
    fail_msg("sequence of %s: draw %d missing", cJSON_GetObjectItem(e, "name")->valuestring, k);
    return NULL;
}

enum { FAM_CPU_SMALL, FAM_CPU_LARGE, FAM_CPU_SEQ, FAM_CPU_RAND, FAM_PHILOX, FAM_PHILOX_SEQ, N_FAM };
static const char *fam_names[N_FAM] = {
    "cpu randn numel<16", "cpu randn numel>=16", "cpu randn sequences", "cpu rand",
    "philox randn", "philox randn sequences",
};

static void matches_reference(void **state)
{
    (void)state;
    sdw_safetensors *st = test_open_st("rng.safetensors");
    cJSON *root = load_manifest();
    const cJSON *entries = cJSON_GetObjectItem(root, "entries");
    double worst[N_FAM] = { -1, -1, -1, -1, -1, -1 };
    const char *worst_name[N_FAM] = { 0 };
    int count[N_FAM] = { 0 }, failures = 0, total = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, entries) {
        const char *name = cJSON_GetObjectItem(e, "name")->valuestring;
        const char *op = entry_op(e);
        bool philox = !strcmp(op, "philox_randn"), uniform = !strcmp(op, "rand");
        assert_true(philox || uniform || !strcmp(op, "randn"));
        size_t n = entry_numel(e);
        int64_t nref = 0;
        float *ref = test_load_f32(st, name, &nref);
        assert_int_equal((size_t)nref, n);

        sdw_rng rng;
        sdw_rng_init(&rng, philox ? SDW_RNG_CUDA : SDW_RNG_CPU, entry_seed(e));
        if (entry_sequential(e)) {
            for (int k = 0; k < entry_draw(e); k++) {
                size_t m = entry_numel(find_draw(entries, e, k));
                float *skip = malloc(m * sizeof *skip);
                assert_non_null(skip);
                sdw_rng_randn(&rng, skip, m);
                free(skip);
            }
            const cJSON *off = cJSON_GetObjectItem(e, "philox_offset");
            if (philox && off) assert_int_equal(rng.offset, (uint64_t)off->valuedouble);
        }
        float *got = malloc(n * sizeof *got);
        assert_non_null(got);
        if (uniform) sdw_rng_rand(&rng, got, n);
        else sdw_rng_randn(&rng, got, n);
        double err = test_max_abs(got, ref, n);

        int fam = philox ? (entry_sequential(e) ? FAM_PHILOX_SEQ : FAM_PHILOX)
                : uniform ? FAM_CPU_RAND
                : entry_sequential(e) ? FAM_CPU_SEQ
                : n < 16 ? FAM_CPU_SMALL : FAM_CPU_LARGE;
        count[fam]++;
        total++;
        if (!(err <= worst[fam])) { worst[fam] = err; worst_name[fam] = name; }
        if (!(err < GATE)) {
            printf("  FAIL %-44s max_abs %.3g\n", name, err);
            failures++;
        }
        free(got);
        free(ref);
    }
    for (int f = 0; f < N_FAM; f++)
        printf("  %-24s %3d tensors  worst max_abs %.3g (%s)\n", fam_names[f], count[f], worst[f],
               worst_name[f] ? worst_name[f] : "-");
    cJSON_Delete(root);
    sdw_st_close(st);
    assert_true(total > 100);
    for (int f = 0; f < N_FAM; f++) assert_true(count[f] > 0);
    if (failures) fail_msg("%d of %d reference tensors over max abs %g", failures, total, GATE);
}

/* The CPU engine uses only the low 32 bits of the seed. */
static void cpu_seed_is_low_32_bits(void **state)
{
    (void)state;
    sdw_rng a, b, c;
    sdw_rng_init(&a, SDW_RNG_CPU, (UINT64_C(1) << 32) + 7);
    sdw_rng_init(&b, SDW_RNG_CPU, 7);
    sdw_rng_init(&c, SDW_RNG_CPU, 8);
    float x[40], y[40], z[40];
    sdw_rng_randn(&a, x, 40);
    sdw_rng_randn(&b, y, 40);
    sdw_rng_randn(&c, z, 40);
    assert_memory_equal(x, y, sizeof x);
    assert_memory_not_equal(x, z, sizeof x);
    /* Philox keeps the high word in the key */
    sdw_rng_init(&a, SDW_RNG_CUDA, (UINT64_C(1) << 32) + 7);
    sdw_rng_init(&b, SDW_RNG_CUDA, 7);
    sdw_rng_randn(&a, x, 40);
    sdw_rng_randn(&b, y, 40);
    assert_memory_not_equal(x, y, sizeof x);
}

/* Small draws share torch's cached second Box-Muller value: randn(1) then
 * randn(1) equals randn(2); a large draw neither uses nor clears the cache. */
static void cpu_small_draw_cache(void **state)
{
    (void)state;
    sdw_rng a, b;
    float two[2], one[2], big[32], big2[32], after[1];
    sdw_rng_init(&a, SDW_RNG_CPU, 42);
    sdw_rng_randn(&a, two, 2);
    sdw_rng_init(&b, SDW_RNG_CPU, 42);
    sdw_rng_randn(&b, &one[0], 1);
    assert_true(b.has_cached_normal);
    sdw_rng_randn(&b, &one[1], 1);
    assert_false(b.has_cached_normal);
    assert_memory_equal(two, one, sizeof two);

    /* randn(3), randn(32), randn(1): the last value is the cached sine half of the 3-draw */
    float three[3];
    sdw_rng_init(&b, SDW_RNG_CPU, 5);
    sdw_rng_randn(&b, three, 3);
    sdw_rng_randn(&b, big, 32);
    sdw_rng_randn(&b, after, 1);
    float four[4];
    sdw_rng_init(&a, SDW_RNG_CPU, 5);
    sdw_rng_randn(&a, four, 4);
    assert_memory_equal(&four[3], after, sizeof after);
    /* and the 32-draw equals one taken straight after 4 small values */
    sdw_rng_init(&a, SDW_RNG_CPU, 5);
    sdw_rng_randn(&a, four, 4);
    sdw_rng_randn(&a, big2, 32);
    assert_memory_equal(big, big2, sizeof big);

    /* re-seeding clears the cache */
    sdw_rng_init(&b, SDW_RNG_CPU, 42);
    sdw_rng_randn(&b, one, 1);
    sdw_rng_init(&b, SDW_RNG_CPU, 42);
    sdw_rng_randn(&b, &one[1], 1);
    assert_memory_equal(&one[0], &one[1], sizeof(float));
}

static void edge_cases(void **state)
{
    (void)state;
    sdw_rng a, b;
    float x[64], y[64];
    /* n = 0 draws nothing (CPU) and advances the Philox offset like any call */
    sdw_rng_init(&a, SDW_RNG_CPU, 3);
    sdw_rng_init(&b, SDW_RNG_CPU, 3);
    sdw_rng_randn(&a, NULL, 0);
    sdw_rng_randn(&a, x, 64);
    sdw_rng_randn(&b, y, 64);
    assert_memory_equal(x, y, sizeof x);
    sdw_rng_init(&a, SDW_RNG_CUDA, 3);
    sdw_rng_randn(&a, NULL, 0);
    assert_int_equal(a.offset, 1);

    /* uniforms lie in [0, 1) and are finite; normals are finite */
    sdw_rng_init(&a, SDW_RNG_CPU, 11);
    sdw_rng_init(&b, SDW_RNG_CUDA, 11);
    for (int rep = 0; rep < 200; rep++) {
        sdw_rng_rand(&a, x, 64);
        sdw_rng_rand(&b, y, 64);
        for (int i = 0; i < 64; i++) {
            assert_true(x[i] >= 0.0f && x[i] < 1.0f);
            assert_true(y[i] >= 0.0f && y[i] < 1.0f);
        }
        sdw_rng_randn(&a, x, 64);
        sdw_rng_randn(&b, y, 64);
        for (int i = 0; i < 64; i++) assert_true(isfinite(x[i]) && isfinite(y[i]));
    }

    /* moments of a large draw */
    enum { N = 1 << 18 };
    float *v = malloc(N * sizeof *v);
    assert_non_null(v);
    for (int kind = 0; kind < 2; kind++) {
        sdw_rng_init(&a, kind ? SDW_RNG_CUDA : SDW_RNG_CPU, 1234);
        sdw_rng_randn(&a, v, N);
        double s = 0, s2 = 0;
        for (int i = 0; i < N; i++) { s += v[i]; s2 += (double)v[i] * v[i]; }
        double mean = s / N, var = s2 / N - mean * mean;
        assert_true(fabs(mean) < 0.01);
        assert_true(fabs(var - 1.0) < 0.01);
    }
    free(v);

    sdw_rng_kind k;
    assert_true(sdw_rng_kind_parse("cpu", &k) && k == SDW_RNG_CPU);
    assert_true(sdw_rng_kind_parse("cuda", &k) && k == SDW_RNG_CUDA);
    assert_false(sdw_rng_kind_parse("nv2", &k));
    assert_string_equal(sdw_rng_kind_name(SDW_RNG_CUDA), "cuda");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matches_reference),
        cmocka_unit_test(cpu_seed_is_low_32_bits),
        cmocka_unit_test(cpu_small_draw_cache),
        cmocka_unit_test(edge_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
