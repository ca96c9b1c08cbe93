/* comfy_object_info.c: GET /object_info[/{node}]: the node table in
 * ComfyUI's shape, per class
 *   {"input": {"required": {name: [type or [choices], {options}]},
 *              "optional": {...}, "hidden": {...}},
 *    "input_order": {"required": [names], ...},
 *    "output": [...], "output_is_list": [...], "output_name": [...],
 *    "name", "display_name", "description", "python_module", "category",
 *    "output_node"}
 * with the folder combos (checkpoints, LoRAs, ...) listing what the
 * server's catalog holds now. comfy_graph.c repeats an input's description
 * in its validation errors ("input_config"), as ComfyUI does. */
#include "comfy/comfy_object_info.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Options ComfyUI's INPUT_TYPES give that the node table has no field for:
 * widget hints for its frontend. */
typedef struct {
    const char *class_type, *input, *key;
    double num;               /* < 0: true */
} input_extra;
static const input_extra extras[] = {
    {"KSampler", "seed", "control_after_generate", -1},
    {"KSampler", "cfg", "round", 0.01},
    {"KSamplerAdvanced", "noise_seed", "control_after_generate", -1},
    {"KSamplerAdvanced", "cfg", "round", 0.01},
    {"KSamplerAdvanced", "add_noise", "advanced", -1},
    {"KSamplerAdvanced", "start_at_step", "advanced", -1},
    {"KSamplerAdvanced", "end_at_step", "advanced", -1},
    {"KSamplerAdvanced", "return_with_leftover_noise", "advanced", -1},
    {"CLIPTextEncode", "text", "dynamicPrompts", -1},
    {"CLIPSetLastLayer", "stop_at_clip_layer", "advanced", -1},
    {"UNETLoader", "weight_dtype", "advanced", -1},
    {"CLIPLoader", "device", "advanced", -1},
    {"DualCLIPLoader", "device", "advanced", -1},
    {"TripleCLIPLoader", "device", "advanced", -1},
    {"RandomNoise", "noise_seed", "control_after_generate", -1},
    {"CFGGuider", "cfg", "round", 0.01},
};

/* The Python module of a class (comfy_extras for the newer nodes). */
static const char *python_module(const char *class_type)
{
    static const char *const map[][2] = {
        {"TripleCLIPLoader", "comfy_extras.nodes_sd3"}, {"EmptySD3LatentImage", "comfy_extras.nodes_sd3"},
        {"FluxGuidance", "comfy_extras.nodes_flux"}, {"Canny", "comfy_extras.nodes_canny"},
        {"ModelSamplingSD3", "comfy_extras.nodes_model_advanced"},
        {"ModelSamplingFlux", "comfy_extras.nodes_model_advanced"},
        {"SamplerCustomAdvanced", "comfy_extras.nodes_custom_sampler"},
        {"RandomNoise", "comfy_extras.nodes_custom_sampler"}, {"DisableNoise", "comfy_extras.nodes_custom_sampler"},
        {"BasicGuider", "comfy_extras.nodes_custom_sampler"}, {"CFGGuider", "comfy_extras.nodes_custom_sampler"},
        {"KSamplerSelect", "comfy_extras.nodes_custom_sampler"},
        {"BasicScheduler", "comfy_extras.nodes_custom_sampler"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i][0], class_type) == 0) return map[i][1];
    return "nodes";
}

cJSON *sdw_comfy_json_number(double v, bool integer)
{
    /* 2^53 and past: cJSON would print %1.17g ("1.8446744073709552e+19");
     * ComfyUI prints Python ints exactly. */
    if (integer && isfinite(v) && fabs(v) >= 9007199254740992.0) {
        char buf[64];
        if (v >= 18446744073709551615.0)
            snprintf(buf, sizeof buf, "18446744073709551615");
        else
            snprintf(buf, sizeof buf, "%.0f", v);
        return cJSON_CreateRaw(buf);
    }
    return cJSON_CreateNumber(v);
}

typedef struct {
    cJSON *arr;
    bool failed;
} list_ctx;

static void add_name(void *ctx, const char *name)
{
    list_ctx *l = ctx;
    cJSON *s = cJSON_CreateString(name);
    if (!s || !cJSON_AddItemToArray(l->arr, s)) {
        cJSON_Delete(s);
        l->failed = true;
    }
}

cJSON *sdw_comfy_combo_list(const sdw_comfy_input *in, const sdw_comfy_catalog *cat)
{
    list_ctx l = {cJSON_CreateArray(), false};
    if (!l.arr) return NULL;
    if (in->folder != SDW_FOLDER_NONE) {
        if (cat && cat->list) cat->list(cat->user, in->folder, add_name, &l);
    } else if (in->choices) {
        for (int i = 0; in->choices[i]; i++) add_name(&l, in->choices[i]);
    }
    if (l.failed) {
        cJSON_Delete(l.arr);
        return NULL;
    }
    return l.arr;
}

/* Adds item under key, or deletes it. */
static bool add_item(cJSON *o, const char *key, cJSON *item)
{
    if (item && cJSON_AddItemToObject(o, key, item)) return true;
    cJSON_Delete(item);
    return false;
}

/* {"default", "min", "max", "step", ...} as nodes.py writes them. */
static bool add_options(cJSON *o, const sdw_comfy_node_spec *s, const sdw_comfy_input *in)
{
    bool ok = true;
    switch (in->type) {
    case SDW_CT_INT:
    case SDW_CT_FLOAT: {
        bool integer = in->type == SDW_CT_INT;
        ok = add_item(o, "default", sdw_comfy_json_number(in->def, integer)) &&
             add_item(o, "min", sdw_comfy_json_number(in->min, integer)) &&
             add_item(o, "max", sdw_comfy_json_number(in->max, integer));
        if (ok && in->step != 0) ok = add_item(o, "step", sdw_comfy_json_number(in->step, integer));
        break;
    }
    case SDW_CT_BOOLEAN: ok = cJSON_AddBoolToObject(o, "default", in->def != 0) != NULL; break;
    case SDW_CT_STRING:
        if (in->def_str) ok = cJSON_AddStringToObject(o, "default", in->def_str) != NULL;
        if (ok && in->multiline) ok = cJSON_AddTrueToObject(o, "multiline") != NULL;
        break;
    case SDW_CT_COMBO:
        if (in->def_str) ok = cJSON_AddStringToObject(o, "default", in->def_str) != NULL;
        if (ok && in->image_upload) ok = cJSON_AddTrueToObject(o, "image_upload") != NULL;
        break;
    default: break;
    }
    for (size_t i = 0; ok && i < sizeof extras / sizeof extras[0]; i++) {
        const input_extra *e = &extras[i];
        if (strcmp(e->class_type, s->class_type) != 0 || strcmp(e->input, in->name) != 0) continue;
        ok = (e->num < 0 ? cJSON_AddTrueToObject(o, e->key) : cJSON_AddNumberToObject(o, e->key, e->num)) != NULL;
    }
    return ok;
}

cJSON *sdw_comfy_input_spec(const sdw_comfy_node_spec *s, const sdw_comfy_input *in, const sdw_comfy_catalog *cat,
                            bool always_opts)
{
    cJSON *spec = cJSON_CreateArray();
    if (!spec) return NULL;
    cJSON *type = in->type == SDW_CT_COMBO ? sdw_comfy_combo_list(in, cat)
                                           : cJSON_CreateString(sdw_comfy_type_name(in->type));
    if (!type || !cJSON_AddItemToArray(spec, type)) {
        cJSON_Delete(type);
        cJSON_Delete(spec);
        return NULL;
    }
    cJSON *opts = cJSON_CreateObject();
    if (!opts || !add_options(opts, s, in)) {
        cJSON_Delete(opts);
        cJSON_Delete(spec);
        return NULL;
    }
    if (!always_opts && !opts->child) {
        cJSON_Delete(opts);
        return spec;
    }
    if (!cJSON_AddItemToArray(spec, opts)) {
        cJSON_Delete(opts);
        cJSON_Delete(spec);
        return NULL;
    }
    return spec;
}

/* input.required / input.optional and their input_order lists. */
static bool add_inputs(cJSON *input, cJSON *order, const sdw_comfy_node_spec *s, const sdw_comfy_catalog *cat)
{
    for (int pass = 0; pass < 2; pass++) {
        const char *key = pass ? "optional" : "required";
        cJSON *group = NULL, *names = NULL;
        for (int i = 0; i < sdw_comfy_spec_n_inputs(s); i++) {
            const sdw_comfy_input *in = &s->inputs[i];
            if (in->optional != (pass == 1)) continue;
            if (!group) {
                group = cJSON_AddObjectToObject(input, key);
                names = cJSON_AddArrayToObject(order, key);
                if (!group || !names) return false;
            }
            if (!add_item(group, in->name, sdw_comfy_input_spec(s, in, cat, false))) return false;
            cJSON *name = cJSON_CreateString(in->name);
            if (!name || !cJSON_AddItemToArray(names, name)) {
                cJSON_Delete(name);
                return false;
            }
        }
    }
    /* SaveImage / PreviewImage also declare the prompt and workflow they
     * write into the PNG. */
    if (s->output_node) {
        cJSON *hidden = cJSON_AddObjectToObject(input, "hidden");
        cJSON *names = cJSON_AddArrayToObject(order, "hidden");
        if (!hidden || !names || !cJSON_AddStringToObject(hidden, "prompt", "PROMPT") ||
            !cJSON_AddStringToObject(hidden, "extra_pnginfo", "EXTRA_PNGINFO"))
            return false;
        cJSON *a = cJSON_CreateString("prompt"), *b = cJSON_CreateString("extra_pnginfo");
        bool ok = a && b && cJSON_AddItemToArray(names, a);
        if (!ok) cJSON_Delete(a);
        if (!ok || !cJSON_AddItemToArray(names, b)) {
            cJSON_Delete(b);
            return false;
        }
    }
    return true;
}

static bool add_outputs(cJSON *info, const sdw_comfy_node_spec *s)
{
    cJSON *out = cJSON_AddArrayToObject(info, "output");
    cJSON *is_list = cJSON_AddArrayToObject(info, "output_is_list");
    cJSON *names = cJSON_AddArrayToObject(info, "output_name");
    if (!out || !is_list || !names) return false;
    for (int i = 0; i < s->n_outputs; i++) {
        cJSON *t = cJSON_CreateString(sdw_comfy_type_name(s->outputs[i]));
        if (!t || !cJSON_AddItemToArray(out, t)) {
            cJSON_Delete(t);
            return false;
        }
        cJSON *f = cJSON_CreateFalse();
        if (!f || !cJSON_AddItemToArray(is_list, f)) {
            cJSON_Delete(f);
            return false;
        }
        cJSON *n = cJSON_CreateString(s->output_names[i] ? s->output_names[i] : sdw_comfy_type_name(s->outputs[i]));
        if (!n || !cJSON_AddItemToArray(names, n)) {
            cJSON_Delete(n);
            return false;
        }
    }
    return true;
}

static cJSON *node_info(const sdw_comfy_node_spec *s, const sdw_comfy_catalog *cat)
{
    cJSON *info = cJSON_CreateObject();
    if (!info) return NULL;
    cJSON *input = cJSON_AddObjectToObject(info, "input");
    cJSON *order = cJSON_AddObjectToObject(info, "input_order");
    bool ok = input && order && add_inputs(input, order, s, cat) && add_outputs(info, s) &&
              cJSON_AddStringToObject(info, "name", s->class_type) &&
              cJSON_AddStringToObject(info, "display_name", s->display_name ? s->display_name : s->class_type) &&
              cJSON_AddStringToObject(info, "description", s->description ? s->description : "") &&
              cJSON_AddStringToObject(info, "python_module", python_module(s->class_type)) &&
              cJSON_AddStringToObject(info, "category", s->category ? s->category : "") &&
              cJSON_AddBoolToObject(info, "output_node", s->output_node);
    if (!ok) {
        cJSON_Delete(info);
        return NULL;
    }
    return info;
}

cJSON *sdw_comfy_object_info(const sdw_comfy_catalog *cat, const char *node)
{
    cJSON *all = cJSON_CreateObject();
    if (!all) return NULL;
    for (int i = 0; i < sdw_comfy_n_nodes; i++) {
        const sdw_comfy_node_spec *s = &sdw_comfy_nodes[i];
        if (node && strcmp(node, s->class_type) != 0) continue;
        if (!add_item(all, s->class_type, node_info(s, cat))) {
            cJSON_Delete(all);
            return NULL;
        }
    }
    return all;
}
