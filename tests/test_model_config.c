/* test_model_config.c: the diffusers config.json readers (json_file's parser
 * and the UNet and VAE config interpreters) on the tiny models' configs and on
 * hostile ones: sizes a loader would divide by or overflow on are refused with
 * SDW_ERR_FORMAT, Python's Infinity/NaN literals are read outside strings only. */
#include "testkit.h"
#include "core/error.h"
#include "io/json_file.h"
#include "models/unet.h"
#include "models/vae.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *parse(const char *text)
{
    char *buf = strdup(text);
    assert_non_null(buf);
    cJSON *j = NULL;
    sdw_status s = sdw_json_parse(buf, strlen(buf), "config.json", &j);
    free(buf);
    if (s != SDW_OK) fail_msg("parse: %s", sdw_last_error());
    return j;
}

static void tiny_configs(void **state)
{
    (void)state;
    static const char *const unets[] = {"sd1-tiny", "sd2-tiny", "sdxl-tiny", "sd1-tiny-inpaint"};
    for (size_t i = 0; i < sizeof unets / sizeof unets[0]; i++) {
        char rel[128];
        cJSON *j;
        snprintf(rel, sizeof rel, "models/%s/diffusers/unet/config.json", unets[i]);
        assert_int_equal(sdw_json_load_file(test_data_path(rel), &j), SDW_OK);
        sdw_unet_config uc;
        assert_int_equal(sdw_unet_config_from_diffusers(j, &uc), SDW_OK);
        assert_int_equal(uc.time_embed_dim, 4 * uc.block_out[0]);
        cJSON_Delete(j);
        snprintf(rel, sizeof rel, "models/%s/diffusers/vae/config.json", unets[i]);
        assert_int_equal(sdw_json_load_file(test_data_path(rel), &j), SDW_OK);
        sdw_vae_config vc;
        assert_int_equal(sdw_vae_config_from_diffusers(j, &vc), SDW_OK);
        cJSON_Delete(j);
    }
}

#define UNET_BASE "\"block_out_channels\": [32, 64], \"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"]"

/* Each found by fuzz_json_config or by hand: all would reach the loader. */
static void hostile_unet_configs(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{" UNET_BASE ", \"attention_head_dim\": 0}",                    /* C % heads: SIGFPE */
        "{" UNET_BASE ", \"num_attention_heads\": [2, -1]}",
        "{\"block_out_channels\": [1e999, 64], \"down_block_types\": [\"a\", \"b\"]}", /* 4 * INT_MAX */
        "{\"block_out_channels\": [0, 64], \"down_block_types\": [\"a\", \"b\"]}",
        "{" UNET_BASE ", \"in_channels\": -4}",
        "{" UNET_BASE ", \"layers_per_block\": 100000}",
        "{" UNET_BASE ", \"transformer_layers_per_block\": [1, -2]}",
        "{" UNET_BASE ", \"cross_attention_dim\": 0}",
        "{" UNET_BASE ", \"addition_embed_type\": \"text_time\", \"projection_class_embeddings_input_dim\": 0,"
        " \"addition_time_embed_dim\": 256}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *j = parse(bad[i]);
        sdw_unet_config uc;
        sdw_status s = sdw_unet_config_from_diffusers(j, &uc);
        if (s != SDW_ERR_FORMAT) fail_msg("accepted (%s): %s", sdw_status_name(s), bad[i]);
        printf("  %s\n", sdw_last_error());
        cJSON_Delete(j);
    }
    cJSON *j = parse("{" UNET_BASE ", \"attention_head_dim\": [2, 4], \"transformer_layers_per_block\": 0}");
    sdw_unet_config uc;
    assert_int_equal(sdw_unet_config_from_diffusers(j, &uc), SDW_OK);
    assert_int_equal(uc.heads[1], 4);
    assert_int_equal(uc.depth[0], 0);
    cJSON_Delete(j);
}

static void hostile_vae_configs(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"block_out_channels\": [32, \"64\"]}",
        "{\"block_out_channels\": [32, -64]}",
        "{\"block_out_channels\": [32, 1e12]}",
        "{\"block_out_channels\": [32], \"layers_per_block\": 0}",
        "{\"block_out_channels\": [32], \"latent_channels\": -1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *j = parse(bad[i]);
        sdw_vae_config vc;
        sdw_status s = sdw_vae_config_from_diffusers(j, &vc);
        if (s != SDW_ERR_FORMAT) fail_msg("accepted (%s): %s", sdw_status_name(s), bad[i]);
        cJSON_Delete(j);
    }
}

static void python_literals(void **state)
{
    (void)state;
    cJSON *j = parse("{\"a\": Infinity, \"b\": NaN, \"c\": \"Infinity NaN \\\" NaN\", \"d\": [-Infinity]}");
    assert_true(cJSON_GetObjectItem(j, "a")->valuedouble > 1e300);
    assert_true(cJSON_GetObjectItem(j, "b")->valuedouble == 0.0);
    assert_string_equal(cJSON_GetObjectItem(j, "c")->valuestring, "Infinity NaN \" NaN");
    assert_true(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "d"), 0)->valuedouble < -1e300);
    cJSON_Delete(j);
    char text[] = "[1, 2]";
    j = (cJSON *)1;
    assert_int_equal(sdw_json_parse(text, strlen(text), "list.json", &j), SDW_ERR_FORMAT);
    assert_null(j);
    assert_non_null(strstr(sdw_last_error(), "list.json"));
    /* not NUL-terminated: the parse stops at n */
    char cut[] = "{\"a\": 1}garbage";
    assert_int_equal(sdw_json_parse(cut, 8, "cut.json", &j), SDW_OK);
    cJSON_Delete(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tiny_configs),
        cmocka_unit_test(hostile_unet_configs),
        cmocka_unit_test(hostile_vae_configs),
        cmocka_unit_test(python_literals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
