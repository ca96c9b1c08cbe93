/* test_sidecar_yaml.c: the A1111 sidecar yaml reader: dotted paths, list
 * indices, the tiny models' sidecars, and bad input. */
#include "testkit.h"
#include "io/sidecar_yaml.h"
#include <string.h>

static void flattens_paths(void **state)
{
    (void)state;
    const char *y = "model:\n  params:\n    scale: 0.18215\n    mult: [1, 2, 4]\n"
                    "    emb:\n      - target: a\n        params: {heads: 2}\n      - target: b\n";
    sdw_yaml_map m;
    assert_int_equal(sdw_yaml_parse(y, strlen(y), "inline", &m), SDW_OK);
    assert_string_equal(sdw_yaml_get(&m, "model.params.scale"), "0.18215");
    assert_string_equal(sdw_yaml_get(&m, "model.params.mult.2"), "4");
    assert_string_equal(sdw_yaml_get(&m, "model.params.emb.0.target"), "a");
    assert_int_equal(sdw_yaml_int(&m, "model.params.emb.0.params.heads", 0), 2);
    assert_string_equal(sdw_yaml_get(&m, "model.params.emb.1.target"), "b");
    assert_null(sdw_yaml_get(&m, "model.params.missing"));
    assert_int_equal(sdw_yaml_int(&m, "model.params.scale", -1), -1); /* not an integer */
    sdw_yaml_free(&m);
}

static void reads_tiny_sidecars(void **state)
{
    (void)state;
    sdw_yaml_map m;
    assert_int_equal(sdw_yaml_load(test_data_path("models/sd1-tiny/sd1-tiny.yaml"), &m), SDW_OK);
    assert_int_equal(sdw_yaml_int(&m, "model.params.cond_stage_config.params.num_attention_heads", 0), 2);
    assert_int_equal(sdw_yaml_int(&m, "model.params.unet_config.params.model_channels", 0), 32);
    sdw_yaml_free(&m);
    assert_int_equal(sdw_yaml_load(test_data_path("models/sdxl-tiny/sdxl-tiny.yaml"), &m), SDW_OK);
    assert_int_equal(sdw_yaml_int(&m, "model.params.conditioner_config.params.emb_models.1.params.heads", 0), 2);
    sdw_yaml_free(&m);
    char buf[4096];
    assert_true(sdw_yaml_sidecar_path(test_data_path("models/sd2-tiny/sd2-tiny.safetensors"), buf, sizeof buf));
    assert_false(sdw_yaml_sidecar_path(test_data_path("rng.safetensors"), buf, sizeof buf));
}

static void rejects_bad_yaml(void **state)
{
    (void)state;
    static const char *const bad[] = { "a: [1, 2", "a: b: c", "\t- x\n  y: :", "{a: 1", "a: *undefined" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sdw_yaml_map m;
        sdw_status s = sdw_yaml_parse(bad[i], strlen(bad[i]), "bad.yaml", &m);
        if (s == SDW_OK) sdw_yaml_free(&m);
        else assert_non_null(strstr(sdw_last_error(), "bad.yaml"));
    }
    sdw_yaml_map m;
    assert_int_equal(sdw_yaml_load("/nonexistent/x.yaml", &m), SDW_ERR_IO);
    const char *scalar = "just text";
    assert_int_equal(sdw_yaml_parse(scalar, strlen(scalar), "s", &m), SDW_OK);
    assert_int_equal(m.n, 0);
    sdw_yaml_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flattens_paths),
        cmocka_unit_test(reads_tiny_sidecars),
        cmocka_unit_test(rejects_bad_yaml),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
