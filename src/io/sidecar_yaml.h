/* sidecar_yaml.h: the A1111-style MODEL.yaml next to a single-file checkpoint
 * (an ldm/sgm inference config). It is read into a flat list of dotted paths
 * ("model.params.unet_config.params.num_head_channels" = "64"; list items get
 * their index: "...emb_models.1.params.heads"), which is all the overrides need. */
#ifndef SDW_IO_SIDECAR_YAML_H
#define SDW_IO_SIDECAR_YAML_H
#include "sdw.h"

typedef struct {
    char **keys, **values;
    int n, cap;
} sdw_yaml_map;

#define SDW_YAML_MAX_BYTES ((size_t)1 << 20)
sdw_status sdw_yaml_load(const char *path, sdw_yaml_map *out);
sdw_status sdw_yaml_parse(const char *text, size_t len, const char *name, sdw_yaml_map *out);
void sdw_yaml_free(sdw_yaml_map *m);
/* Value at an exact dotted path, or NULL. */
const char *sdw_yaml_get(const sdw_yaml_map *m, const char *path);
/* Value at prefix + suffix, integer, or def. */
int sdw_yaml_int(const sdw_yaml_map *m, const char *path, int def);
/* For "model.foo" finds the sidecar path for a checkpoint: "dir/name.yaml"
 * beside "dir/name.safetensors" (written into buf); false if none exists. */
bool sdw_yaml_sidecar_path(const char *checkpoint, char *buf, size_t n);
#endif
