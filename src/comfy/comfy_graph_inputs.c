/* comfy_graph_inputs.c: one input of a node checked as ComfyUI's
 * validate_inputs checks it, for comfy_graph.c's walk: a link [id, slot]
 * resolved (or the KeyError / IndexError / TypeError Python would raise), a
 * widget value converted with Python's int() / float() / str() / bool() and
 * held to its min / max or combo list (folders through the catalog), and
 * ComfyUI's error objects with their input_config, received_value and
 * messages worded as Python words them. */
#include "comfy/comfy_graph_internal.h"
#include "comfy/comfy_object_info.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- small JSON helpers */

cJSON *cgraph_take(vctx *c, cJSON *o, const char *key, cJSON *item)
{
    if (item && o && cJSON_AddItemToObject(o, key, item)) return item;
    cJSON_Delete(item);
    c->nomem = true;
    return NULL;
}

void cgraph_push_item(vctx *c, cJSON *arr, cJSON *item)
{
    if (item && arr && cJSON_AddItemToArray(arr, item)) return;
    cJSON_Delete(item);
    c->nomem = true;
}

static cJSON *pystr_json(vctx *c, sdw_pystr *b)
{
    if (b->failed) c->nomem = true;
    cJSON *s = cJSON_CreateString(sdw_pystr_get(b));
    sdw_pystr_free(b);
    return s;
}

/* {"type", "message", "details", "extra_info"}, taking details and extra. */
cJSON *cgraph_make_error(vctx *c, const char *type, const char *message, sdw_pystr *details, cJSON *extra)
{
    cJSON *e = cJSON_CreateObject();
    cgraph_take(c, e, "type", cJSON_CreateString(type));
    cgraph_take(c, e, "message", cJSON_CreateString(message));
    cgraph_take(c, e, "details", pystr_json(c, details));
    cgraph_take(c, e, "extra_info", extra ? extra : cJSON_CreateObject());
    return e;
}

void cgraph_add_error(vctx *c, frame *f, cJSON *e)
{
    f->valid = false;
    if (c->n_errors >= MAX_ERRORS) {
        cJSON_Delete(e);
        return;
    }
    c->n_errors++;
    cgraph_push_item(c, f->errors, e);
}

/* The input as ComfyUI's input_config repeats it: null for lists over 20
 * choices, as ComfyUI leaves "gigantic lists" out. */
cJSON *cgraph_input_config(vctx *c, const sdw_comfy_node_spec *s, const sdw_comfy_input *in)
{
    /* Past MAX_ERRORS the error is dropped: no need to list a folder. */
    if (c->n_errors >= MAX_ERRORS) return cJSON_CreateNull();
    if (in->type == SDW_CT_COMBO) {
        cJSON *list = sdw_comfy_combo_list(in, c->cat);
        int n = list ? cJSON_GetArraySize(list) : 0;
        cJSON_Delete(list);
        if (n > 20) return cJSON_CreateNull();
    }
    return sdw_comfy_input_spec(s, in, c->cat, true);
}

/* The input's type as ComfyUI prints it: "INT", or a combo's list. */
void cgraph_type_str(vctx *c, sdw_pystr *b, const sdw_comfy_input *in)
{
    if (c->n_errors >= MAX_ERRORS) return;
    if (in->type != SDW_CT_COMBO) return sdw_pystr_cat(b, sdw_comfy_type_name(in->type));
    cJSON *list = sdw_comfy_combo_list(in, c->cat);
    if (!list) {
        c->nomem = true;
        return;
    }
    int n = cJSON_GetArraySize(list);
    if (n > 20) sdw_pystr_catf(b, "(list of length %d)", n);
    else sdw_py_repr(b, list);
    cJSON_Delete(list);
}

/* ---------------------------------------------------------------- one input */

/* ["id", slot] to a node and output index, or the exception Python raises
 * on prompt[id] / RETURN_TYPES[slot]. */
bool cgraph_resolve_link(vctx *c, const cJSON *val, int *node, int *slot, pyexc *ex)
{
    const cJSON *oid = val->child, *sl = oid->next;
    if (cJSON_IsArray(oid) || cJSON_IsObject(oid)) {
        ex->type = "TypeError";
        sdw_pystr_catf(&ex->msg, "unhashable type: '%s'", sdw_py_type_name(oid));
        return false;
    }
    int k = cJSON_IsString(oid) ? cgraph_find_node(c, oid->valuestring) : -1;
    if (k < 0) {
        ex->type = "KeyError";
        sdw_py_repr(&ex->msg, oid);
        return false;
    }
    double d;
    if (cJSON_IsBool(sl)) d = cJSON_IsTrue(sl) ? 1 : 0;
    else if (cJSON_IsNumber(sl) && sl->valuedouble == trunc(sl->valuedouble)) d = sl->valuedouble;
    else {
        ex->type = "TypeError";
        sdw_pystr_catf(&ex->msg, "tuple indices must be integers or slices, not %s", sdw_py_type_name(sl));
        return false;
    }
    int n = c->v[k].spec->n_outputs;
    if (!(d >= -n && d < n)) {
        ex->type = "IndexError";
        sdw_pystr_cat(&ex->msg, "tuple index out of range");
        return false;
    }
    *node = k;
    *slot = d < 0 ? n + (int)d : (int)d;
    return true;
}

/* {"input_name": x, "input_config": [...]} and the rest of extra_info. */
cJSON *cgraph_input_extra(vctx *c, const sdw_comfy_node_spec *s, const sdw_comfy_input *in)
{
    cJSON *extra = cJSON_CreateObject();
    cgraph_take(c, extra, "input_name", cJSON_CreateString(in->name));
    cgraph_take(c, extra, "input_config", cgraph_input_config(c, s, in));
    return extra;
}

static void error_min_max(vctx *c, frame *f, const sdw_comfy_input *in, double x, bool below)
{
    bool integer = in->type == SDW_CT_INT;
    sdw_pystr details = {0}, message = {0};
    sdw_pystr_cat(&details, in->name);
    sdw_pystr_cat(&message, "Value ");
    (integer ? sdw_py_int : sdw_py_float)(&message, x);
    sdw_pystr_cat(&message, below ? " smaller than min of " : " bigger than max of ");
    double limit = below ? in->min : in->max;
    if (integer && limit >= 18446744073709551615.0) sdw_pystr_cat(&message, "18446744073709551615");
    else (integer ? sdw_py_int : sdw_py_float)(&message, limit);
    cJSON *extra = cgraph_input_extra(c, c->v[f->node].spec, in);
    cgraph_take(c, extra, "received_value", sdw_comfy_json_number(x, integer));
    if (message.failed) c->nomem = true;
    cgraph_add_error(c, f, cgraph_make_error(c, below ? "value_smaller_than_min" : "value_bigger_than_max",
                               sdw_pystr_get(&message), &details, extra));
    sdw_pystr_free(&message);
}

/* Whether a COMBO holds val; else ComfyUI's value_not_in_list. */
static bool check_combo(vctx *c, frame *f, const sdw_comfy_input *in, const cJSON *val)
{
    const char *s = cJSON_IsString(val) ? val->valuestring : NULL;
    if (s && in->folder == SDW_FOLDER_NONE && in->choices)
        for (int i = 0; in->choices[i]; i++)
            if (strcmp(in->choices[i], s) == 0) return true;
    if (s && in->folder != SDW_FOLDER_NONE && c->cat && c->cat->has && c->cat->has(c->cat->user, in->folder, s))
        return true;
    sdw_pystr details = {0};
    sdw_pystr_cat(&details, in->name);
    sdw_pystr_cat(&details, ": ");
    sdw_py_repr(&details, val);
    sdw_pystr_cat(&details, " not in ");
    cgraph_type_str(c, &details, in);
    cJSON *extra = cgraph_input_extra(c, c->v[f->node].spec, in);
    cgraph_take(c, extra, "received_value", cJSON_Duplicate(val, true));
    cgraph_add_error(c, f, cgraph_make_error(c, "value_not_in_list", "Value not in list", &details, extra));
    return false;
}

/* A widget value: converted as ComfyUI converts it, checked against min /
 * max or the combo's list, stored in out. */
void cgraph_bad_link(vctx *c, frame *f, const sdw_comfy_input *in, const cJSON *val)
{
    sdw_pystr details = {0};
    sdw_pystr_cat(&details, in->name);
    cJSON *extra = cgraph_input_extra(c, c->v[f->node].spec, in);
    cgraph_take(c, extra, "received_value", cJSON_Duplicate(val, true));
    cgraph_add_error(c, f, cgraph_make_error(c, "bad_linked_input",
                               "Bad linked input, must be a length-2 list of [node_id, slot_index]", &details, extra));
}

void cgraph_check_widget(vctx *c, frame *f, const sdw_comfy_input *in, const cJSON *val, sdw_comfy_value *out)
{
    const sdw_comfy_node_spec *s = c->v[f->node].spec;
    const cJSON *wrapped = cJSON_IsObject(val) ? cJSON_GetObjectItemCaseSensitive(val, "__value__") : NULL;
    if (wrapped) val = wrapped;
    sdw_comfy_value v = {.present = true};
    if (in->type == SDW_CT_COMBO && in->image_upload) {
        /* LoadImage's VALIDATE_INPUTS replaces the list check (check_image). */
        f->image_input = f->input;
        f->image = val;
        return;
    }
    if (in->type == SDW_CT_COMBO) {
        if (!check_combo(c, f, in, val)) return;
        if (!(v.str = strdup(val->valuestring))) c->nomem = true;
        *out = v;
        return;
    }
    if (in->type < SDW_CT_INT) {
        /* A value where a link belongs: ComfyUI lets it through to fail in
         * the node; we cannot run it, so it fails here. */
        cgraph_bad_link(c, f, in, val);
        return;
    }
    const char *exc = NULL;
    sdw_pystr msg = {0};
    bool ok = true;
    if (in->type == SDW_CT_INT) ok = sdw_py_to_int(val, &v.num, &exc, &msg);
    else if (in->type == SDW_CT_FLOAT) ok = sdw_py_to_float(val, &v.num, &exc, &msg);
    else if (in->type == SDW_CT_BOOLEAN) v.num = sdw_py_truth(val);
    else {
        sdw_pystr text = {0};
        sdw_py_str(&text, val);
        if (text.failed || !(v.str = strdup(sdw_pystr_get(&text)))) c->nomem = true;
        sdw_pystr_free(&text);
    }
    if (!ok) {
        sdw_pystr details = {0}, message = {0};
        sdw_pystr_catf(&details, "%s, ", in->name);
        sdw_py_str(&details, val);
        sdw_pystr_catf(&details, ", %s", sdw_pystr_get(&msg));
        sdw_pystr_catf(&message, "Failed to convert an input value to a %s value", sdw_comfy_type_name(in->type));
        cJSON *extra = cgraph_input_extra(c, s, in);
        cgraph_take(c, extra, "received_value", cJSON_Duplicate(val, true));
        cgraph_take(c, extra, "exception_message", pystr_json(c, &msg));
        cgraph_add_error(c, f, cgraph_make_error(c, "invalid_input_type", sdw_pystr_get(&message), &details, extra));
        sdw_pystr_free(&message);
        return;
    }
    sdw_pystr_free(&msg);
    if (in->type == SDW_CT_INT || in->type == SDW_CT_FLOAT) {
        /* NaN passes both, as in Python. */
        if (v.num < in->min) return error_min_max(c, f, in, v.num, true);
        if (v.num > in->max) return error_min_max(c, f, in, v.num, false);
    }
    *out = v;
}

/* LoadImage's VALIDATE_INPUTS, after the other inputs: the file must be
 * in the input folder ("name" or "name [input]"). */
void cgraph_check_image(vctx *c, frame *f)
{
    const sdw_comfy_input *in = &c->v[f->node].spec->inputs[f->image_input];
    sdw_comfy_value *out = &c->g->nodes[f->node].in[f->image_input];
    const char *name = cJSON_GetStringValue(f->image);
    char *file = name ? strdup(name) : NULL;
    if (name && !file) c->nomem = true;
    size_t n = file ? strlen(file) : 0;
    if (n >= 8 && strcmp(file + n - 8, " [input]") == 0) file[n - 8] = 0;
    if (file && c->cat && c->cat->has && c->cat->has(c->cat->user, SDW_FOLDER_INPUT, file)) {
        *out = (sdw_comfy_value){.present = true, .str = file};
        return;
    }
    free(file);
    sdw_pystr details = {0};
    sdw_pystr_catf(&details, "%s - Invalid image file: ", in->name);
    sdw_py_str(&details, f->image);
    cJSON *extra = cJSON_CreateObject();
    cgraph_take(c, extra, "input_name", cJSON_CreateString(in->name));
    cgraph_add_error(c, f, cgraph_make_error(c, "custom_validation_failed", "Custom validation failed for node", &details, extra));
}
