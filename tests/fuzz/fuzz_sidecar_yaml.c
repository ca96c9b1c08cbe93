/* fuzz_sidecar_yaml.c: libFuzzer target for the sidecar MODEL.yaml reader
 * (libyaml's event parser flattened into dotted paths). A failed parse must
 * leave an empty map and say why; a parsed map must find each of its keys and
 * answer the lookups the model loader makes. */
#include "io/sidecar_yaml.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const keys[] = {
    "model.params.parameterization",
    "model.params.scale_factor",
    "model.params.unet_config.params.num_heads",
    "model.params.unet_config.params.num_head_channels",
    "model.params.network_config.params.num_head_channels",
    "model.params.conditioner_config.params.emb_models.2.params.outdim",
    "model.params.cond_stage_config.params.layer",
    "",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A heap copy of exactly the input, so ASan sees a read past its end. */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    sdw_yaml_map m;
    memset(&m, 0xa5, sizeof m);
    sdw_clear_error();
    if (sdw_yaml_parse(text, size, "fuzz.yaml", &m) != SDW_OK) {
        if (m.n || m.keys || m.values) abort();
        if (!sdw_last_error()[0]) abort();
        free(text);
        return 0;
    }
    if (m.n < 0 || m.n > m.cap) abort();
    for (int i = 0; i < m.n; i++) {
        if (!m.keys[i] || !m.values[i] || !sdw_yaml_get(&m, m.keys[i])) abort();
        sdw_yaml_int(&m, m.keys[i], 0);
    }
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int v = sdw_yaml_int(&m, keys[i], -7);
        if (v != -7 && (v < -1000000000 || v > 1000000000)) abort();
    }
    sdw_yaml_free(&m);
    if (m.n || m.keys || m.values) abort();
    free(text);
    return 0;
}
