/* fuzz_comfy_workflow.c: libFuzzer target for ComfyUI workflows (the
 * "prompt" of POST /prompt) through sdw_comfy_graph_parse: whatever the JSON,
 * either a graph whose order runs every node after the nodes it links to,
 * or ComfyUI's error body ({"error": {"type", ...}, "node_errors": {...}})
 * that prints; never both, never neither. The catalog holds a few names so
 * that folder combos can pass. */
#include "comfy/comfy.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const files[] = {"model.safetensors", "example.png", "lora.safetensors", NULL};

static void cat_list(void *user, sdw_comfy_folder f, void (*add)(void *ctx, const char *name), void *ctx)
{
    (void)user;
    (void)f;
    for (int i = 0; files[i]; i++) add(ctx, files[i]);
}

static bool cat_has(void *user, sdw_comfy_folder f, const char *name)
{
    (void)user;
    (void)f;
    for (int i = 0; files[i]; i++)
        if (strcmp(files[i], name) == 0) return true;
    return false;
}

static void check_graph(const sdw_comfy_graph *g)
{
    if (g->n_outputs < 1 || g->n_order < g->n_outputs || g->n_order > g->n_nodes || !g->node_errors) abort();
    char *placed = calloc((size_t)g->n_nodes + 1, 1);
    if (!placed) abort();
    for (int i = 0; i < g->n_order; i++) {
        int k = g->order[i];
        if (k < 0 || k >= g->n_nodes || placed[k]) abort();
        const sdw_comfy_node *n = &g->nodes[k];
        for (int j = 0; j < sdw_comfy_spec_n_inputs(n->spec); j++) {
            const sdw_comfy_value *v = &n->in[j];
            const sdw_comfy_input *in = &n->spec->inputs[j];
            if (!v->present && !in->optional) abort();
            if (v->is_link) {
                if (v->link_node < 0 || v->link_node >= g->n_nodes || !placed[v->link_node]) abort();
                const sdw_comfy_node_spec *from = g->nodes[v->link_node].spec;
                if (v->link_slot < 0 || v->link_slot >= from->n_outputs || from->outputs[v->link_slot] != in->type)
                    abort();
            } else if (v->present && (in->type == SDW_CT_COMBO || in->type == SDW_CT_STRING) && !v->str) {
                abort();
            } else if (v->present && (in->type == SDW_CT_INT || in->type == SDW_CT_FLOAT) &&
                       (v->num < in->min || v->num > in->max)) {
                abort();
            }
        }
        placed[k] = 1;
    }
    for (int i = 0; i < g->n_outputs; i++)
        if (!placed[g->outputs[i]] || !g->nodes[g->outputs[i]].spec->output_node) abort();
    free(placed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const sdw_comfy_catalog cat = {.list = cat_list, .has = cat_has};
    cJSON *prompt = cJSON_ParseWithLength((const char *)data, size);
    if (!prompt) return 0;
    /* A whole POST /prompt body: its "prompt". */
    cJSON *inner = cJSON_IsObject(prompt) ? cJSON_GetObjectItemCaseSensitive(prompt, "prompt") : NULL;
    sdw_comfy_graph *g = (sdw_comfy_graph *)1;
    cJSON *err = (cJSON *)1;
    sdw_clear_error();
    sdw_status st = sdw_comfy_graph_parse(inner ? inner : prompt, &cat, &g, &err);
    cJSON_Delete(prompt);
    if (st == SDW_OK) {
        if (!g || err) abort();
        check_graph(g);
        char *ne = cJSON_PrintUnformatted(g->node_errors);
        if (!ne) abort();
        free(ne);
        sdw_comfy_graph_free(g);
        return 0;
    }
    if (g || !sdw_last_error()[0]) abort();
    if (st == SDW_ERR_INVALID_ARG) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(err, "error");
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "type")) ||
            !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(err, "node_errors")))
            abort();
        char *text = cJSON_PrintUnformatted(err);
        if (!text) abort();
        free(text);
    } else if (st != SDW_ERR_NOMEM || err) {
        abort();
    }
    cJSON_Delete(err);
    return 0;
}
