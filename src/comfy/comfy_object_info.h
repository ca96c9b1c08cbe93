/* comfy_object_info.h: what comfy_object_info.c shares with comfy_graph.c
 * (private to src/comfy): an input described as /object_info describes it,
 * which ComfyUI's validation errors repeat as "input_config". */
#ifndef SDW_COMFY_OBJECT_INFO_H
#define SDW_COMFY_OBJECT_INFO_H
#include "comfy/comfy.h"

/* [type, {options}] for input `in` of class s: type is "MODEL", "INT", ...
 * or the COMBO's list of choices (folders through cat). Without always_opts
 * an empty options object is left out (["MODEL"]), as ComfyUI's tuples
 * without one are; with it, it is always there (ComfyUI's input_config).
 * NULL when out of memory. */
cJSON *sdw_comfy_input_spec(const sdw_comfy_node_spec *s, const sdw_comfy_input *in, const sdw_comfy_catalog *cat,
                            bool always_opts);
/* A COMBO's choices as an array of strings (NULL when out of memory). */
cJSON *sdw_comfy_combo_list(const sdw_comfy_input *in, const sdw_comfy_catalog *cat);
/* A number as ComfyUI writes it: INT values past 2^53 exactly (the seed's
 * 0xffffffffffffffff). */
cJSON *sdw_comfy_json_number(double v, bool integer);
#endif
