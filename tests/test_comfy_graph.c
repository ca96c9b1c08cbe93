/* test_comfy_graph.c: ComfyUI workflows parsed and validated into graphs
 * (src/comfy/comfy_graph.c) and the node table described as /object_info
 * (comfy_nodes.c, comfy_object_info.c). ComfyUI's default txt2img workflow
 * (its API-format export) orders as ComfyUI runs it; every validation error
 * has ComfyUI's JSON shape (execution.py's validate_prompt / validate_inputs);
 * /object_info lists the catalog's files in the combos. */
#include "testkit.h"
#include "comfy/comfy.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ComfyUI's default graph, "Export (API)". */
static const char *const default_workflow =
    "{\"3\": {\"inputs\": {\"seed\": 156680208700286, \"steps\": 20, \"cfg\": 8, \"sampler_name\": \"euler\","
    " \"scheduler\": \"normal\", \"denoise\": 1, \"model\": [\"4\", 0], \"positive\": [\"6\", 0],"
    " \"negative\": [\"7\", 0], \"latent_image\": [\"5\", 0]}, \"class_type\": \"KSampler\","
    " \"_meta\": {\"title\": \"KSampler\"}},"
    " \"4\": {\"inputs\": {\"ckpt_name\": \"v1-5-pruned-emaonly.safetensors\"},"
    " \"class_type\": \"CheckpointLoaderSimple\", \"_meta\": {\"title\": \"Load Checkpoint\"}},"
    " \"5\": {\"inputs\": {\"width\": 512, \"height\": 512, \"batch_size\": 1}, \"class_type\": \"EmptyLatentImage\","
    " \"_meta\": {\"title\": \"Empty Latent Image\"}},"
    " \"6\": {\"inputs\": {\"text\": \"beautiful scenery nature glass bottle landscape, , purple galaxy bottle,\","
    " \"clip\": [\"4\", 1]}, \"class_type\": \"CLIPTextEncode\", \"_meta\": {\"title\": \"CLIP Text Encode (Prompt)\"}},"
    " \"7\": {\"inputs\": {\"text\": \"text, watermark\", \"clip\": [\"4\", 1]}, \"class_type\": \"CLIPTextEncode\","
    " \"_meta\": {\"title\": \"CLIP Text Encode (Prompt)\"}},"
    " \"8\": {\"inputs\": {\"samples\": [\"3\", 0], \"vae\": [\"4\", 2]}, \"class_type\": \"VAEDecode\","
    " \"_meta\": {\"title\": \"VAE Decode\"}},"
    " \"9\": {\"inputs\": {\"filename_prefix\": \"ComfyUI\", \"images\": [\"8\", 0]}, \"class_type\": \"SaveImage\","
    " \"_meta\": {\"title\": \"Save Image\"}}}";

/* ---------------------------------------------------------------- a catalog */

static const char *const ckpts[] = {"sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors", NULL};
static const char *const loras[] = {"detail.safetensors", NULL};
static const char *const inputs[] = {"example.png", NULL};
static const char *const controlnets[] = {"canny.safetensors", NULL};

static const char *const *folder_files(sdw_comfy_folder f)
{
    static const char *const none[] = {NULL};
    switch (f) {
    case SDW_FOLDER_CHECKPOINTS: return ckpts;
    case SDW_FOLDER_LORAS: return loras;
    case SDW_FOLDER_INPUT: return inputs;
    case SDW_FOLDER_CONTROLNET: return controlnets;
    default: return none;
    }
}

static void cat_list(void *user, sdw_comfy_folder f, void (*add)(void *ctx, const char *name), void *ctx)
{
    (void)user;
    for (const char *const *p = folder_files(f); *p; p++) add(ctx, *p);
}

static bool cat_has(void *user, sdw_comfy_folder f, const char *name)
{
    (void)user;
    for (const char *const *p = folder_files(f); *p; p++)
        if (strcmp(*p, name) == 0) return true;
    return false;
}

static const sdw_comfy_catalog catalog = {.list = cat_list, .has = cat_has};

/* ---------------------------------------------------------------- helpers */

static cJSON *json(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    if (!j) fail_msg("bad JSON in the test: %s", text);
    return j;
}

static cJSON *default_prompt(void) { return json(default_workflow); }

/* Replaces (or adds) prompt[node].inputs[name] with the JSON text value. */
static void set_input(cJSON *prompt, const char *node, const char *name, const char *value)
{
    cJSON *in = cJSON_GetObjectItem(cJSON_GetObjectItem(prompt, node), "inputs");
    assert_non_null(in);
    cJSON_DeleteItemFromObjectCaseSensitive(in, name);
    if (value) cJSON_AddItemToObject(in, name, json(value));
}

/* Parses prompt (taken); the graph, or NULL with the error body in *err. */
static sdw_comfy_graph *parse(cJSON *prompt, sdw_status *st, cJSON **err)
{
    sdw_comfy_graph *g = NULL;
    *st = sdw_comfy_graph_parse(prompt, &catalog, &g, err);
    /* Nothing in the graph may point into the prompt. */
    cJSON_Delete(prompt);
    return g;
}

static void expect_json(const cJSON *got, const char *want_text)
{
    cJSON *want = json(want_text);
    if (!cJSON_Compare(got, want, true)) {
        char *g = cJSON_Print(got), *w = cJSON_Print(want);
        print_error("got:\n%s\nwant:\n%s\n", g, w);
        free(g);
        free(w);
        cJSON_Delete(want);
        fail();
    }
    cJSON_Delete(want);
}

/* Parse fails; the body's "error" and "node_errors" are as given (JSON text). */
static cJSON *expect_failure(cJSON *prompt, const char *error, const char *node_errors)
{
    sdw_status st;
    cJSON *err = NULL;
    sdw_comfy_graph *g = parse(prompt, &st, &err);
    assert_null(g);
    assert_int_equal(st, SDW_ERR_INVALID_ARG);
    assert_non_null(err);
    assert_true(strstr(sdw_last_error(), "workflow") != NULL);
    if (error) expect_json(cJSON_GetObjectItem(err, "error"), error);
    if (node_errors) expect_json(cJSON_GetObjectItem(err, "node_errors"), node_errors);
    return err;
}

/* The one error of node `node` in a failed body. */
static const cJSON *node_error(const cJSON *body, const char *node)
{
    const cJSON *errs = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "node_errors"), node), "errors");
    assert_int_equal(cJSON_GetArraySize(errs), 1);
    return cJSON_GetArrayItem(errs, 0);
}

static int node_index(const sdw_comfy_graph *g, const char *id)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].id, id) == 0) return i;
    fail_msg("no node %s", id);
    return -1;
}

static const sdw_comfy_value *value(const sdw_comfy_graph *g, const char *id, const char *input)
{
    const sdw_comfy_node *n = &g->nodes[node_index(g, id)];
    for (int i = 0; i < sdw_comfy_spec_n_inputs(n->spec); i++)
        if (strcmp(n->spec->inputs[i].name, input) == 0) return &n->in[i];
    fail_msg("%s has no input %s", id, input);
    return NULL;
}

/* ---------------------------------------------------------------- the default workflow */

static void default_workflow_orders(void **state)
{
    (void)state;
    sdw_status st;
    cJSON *err = NULL;
    sdw_comfy_graph *g = parse(default_prompt(), &st, &err);
    if (!g) fail_msg("%s", sdw_last_error());
    assert_null(err);
    assert_int_equal(g->n_nodes, 7);
    /* Depth first from SaveImage, inputs in KSampler's order. */
    const char *want[] = {"4", "6", "7", "5", "3", "8", "9"};
    assert_int_equal(g->n_order, 7);
    for (int i = 0; i < 7; i++) assert_string_equal(g->nodes[g->order[i]].id, want[i]);
    /* Every node after the nodes it links to. */
    for (int i = 0; i < g->n_order; i++) {
        const sdw_comfy_node *n = &g->nodes[g->order[i]];
        for (int k = 0; k < sdw_comfy_spec_n_inputs(n->spec); k++) {
            if (!n->in[k].is_link) continue;
            bool before = false;
            for (int j = 0; j < i; j++) before |= g->order[j] == n->in[k].link_node;
            assert_true(before);
        }
    }
    assert_int_equal(g->n_outputs, 1);
    assert_string_equal(g->nodes[g->outputs[0]].id, "9");
    assert_non_null(g->node_errors);
    assert_null(g->node_errors->child);

    assert_string_equal(g->nodes[node_index(g, "3")].spec->class_type, "KSampler");
    assert_true(value(g, "3", "seed")->num == 156680208700286.0);
    assert_true(value(g, "3", "cfg")->num == 8.0);
    assert_string_equal(value(g, "3", "sampler_name")->str, "euler");
    assert_string_equal(value(g, "3", "scheduler")->str, "normal");
    const sdw_comfy_value *m = value(g, "3", "model");
    assert_true(m->present && m->is_link);
    assert_string_equal(g->nodes[m->link_node].id, "4");
    assert_int_equal(m->link_slot, 0);
    assert_int_equal(value(g, "8", "vae")->link_slot, 2);
    assert_string_equal(value(g, "6", "text")->str,
                        "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,");
    assert_string_equal(value(g, "9", "filename_prefix")->str, "ComfyUI");
    assert_string_equal(value(g, "4", "ckpt_name")->str, "v1-5-pruned-emaonly.safetensors");
    sdw_comfy_graph_free(g);
}

/* ComfyUI's int() / float() / str() and the __value__ wrapper; extra inputs
 * ignored; optional inputs defaulted. */
static void lenient_values(void **state)
{
    (void)state;
    cJSON *p = default_prompt();
    set_input(p, "3", "steps", "\" 25 \"");
    set_input(p, "3", "cfg", "\"7.5\"");
    set_input(p, "3", "seed", "3.9");
    set_input(p, "3", "denoise", "true");
    set_input(p, "3", "not_an_input", "[\"nowhere\", 7]");
    set_input(p, "6", "text", "42");
    set_input(p, "5", "width", "{\"__value__\": 640}");
    set_input(p, "5", "height", "\"1_024\"");
    cJSON_AddItemToObject(p, "10", json("{\"class_type\": \"CLIPLoader\", \"inputs\": {\"clip_name\": \"x\"}}"));
    sdw_status st;
    cJSON *err = NULL;
    sdw_comfy_graph *g = parse(p, &st, &err);
    if (!g) fail_msg("%s", sdw_last_error());
    assert_true(value(g, "3", "steps")->num == 25);
    assert_true(value(g, "3", "cfg")->num == 7.5);
    assert_true(value(g, "3", "seed")->num == 3);
    assert_true(value(g, "3", "denoise")->num == 1);
    assert_string_equal(value(g, "6", "text")->str, "42");
    assert_true(value(g, "5", "width")->num == 640);
    assert_true(value(g, "5", "height")->num == 1024);
    /* Not an ancestor of an output: in the graph, never validated or run. */
    assert_int_equal(g->n_nodes, 8);
    assert_int_equal(g->n_order, 7);
    sdw_comfy_graph_free(g);

    /* A ControlNet between the prompts and the sampler; its optional vae
     * left out (present false), its two outputs linked. */
    p = default_prompt();
    cJSON_AddItemToObject(p, "10", json("{\"class_type\": \"ControlNetApplyAdvanced\", \"inputs\": {\"positive\": "
                                        "[\"6\", 0], \"negative\": [\"7\", 0], \"control_net\": [\"11\", 0], "
                                        "\"image\": [\"12\", 0], \"strength\": 0.8, \"start_percent\": 0, "
                                        "\"end_percent\": 1}}"));
    cJSON_AddItemToObject(p, "11", json("{\"class_type\": \"ControlNetLoader\", \"inputs\": {\"control_net_name\": "
                                        "\"canny.safetensors\"}}"));
    cJSON_AddItemToObject(p, "12", json("{\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"example.png\"}}"));
    set_input(p, "3", "positive", "[\"10\", 0]");
    set_input(p, "3", "negative", "[\"10\", 1]");
    g = parse(p, &st, &err);
    if (!g) fail_msg("%s", sdw_last_error());
    const char *want[] = {"4", "6", "7", "11", "12", "10", "5", "3", "8", "9"};
    assert_int_equal(g->n_order, 10);
    for (int i = 0; i < 10; i++) assert_string_equal(g->nodes[g->order[i]].id, want[i]);
    assert_int_equal(value(g, "3", "negative")->link_slot, 1);
    assert_false(value(g, "10", "vae")->present);
    assert_false(value(g, "10", "vae")->is_link);
    assert_true(value(g, "10", "strength")->num == 0.8);
    sdw_comfy_graph_free(g);
}

/* ---------------------------------------------------------------- ComfyUI's errors */

static void unknown_class_and_no_outputs(void **state)
{
    (void)state;
    cJSON *p = default_prompt();
    cJSON_AddItemToObject(p, "10", json("{\"class_type\": \"UpscaleModelLoader\", \"inputs\": {}}"));
    cJSON_Delete(expect_failure(p,
                                "{\"type\": \"invalid_prompt\", \"message\": \"Cannot execute because node "
                                "UpscaleModelLoader does not exist.\", \"details\": \"Node ID '#10'\", \"extra_info\": {}}",
                                "{}"));
    p = default_prompt();
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(p, "5"), "class_type");
    cJSON_Delete(expect_failure(p,
                                "{\"type\": \"invalid_prompt\", \"message\": \"Cannot execute because a node is missing "
                                "the class_type property.\", \"details\": \"Node ID '#5'\", \"extra_info\": {}}",
                                "{}"));
    p = default_prompt();
    cJSON_DeleteItemFromObject(p, "9");
    cJSON_Delete(expect_failure(
        p, "{\"type\": \"prompt_no_outputs\", \"message\": \"Prompt has no outputs\", \"details\": \"\", \"extra_info\": {}}",
        "{}"));
    cJSON_Delete(expect_failure(json("[]"), NULL, "{}"));
    cJSON_Delete(expect_failure(json("{}"), NULL, "{}"));
}

static void input_errors(void **state)
{
    (void)state;
    static const char failed[] = "{\"type\": \"prompt_outputs_failed_validation\", \"message\": \"Prompt outputs failed "
                                 "validation\", \"details\": \"\", \"extra_info\": {}}";
    cJSON *p = default_prompt();
    set_input(p, "3", "steps", NULL);
    cJSON_Delete(expect_failure(p, failed,
                                "{\"3\": {\"errors\": [{\"type\": \"required_input_missing\", \"message\": \"Required "
                                "input is missing\", \"details\": \"steps\", \"extra_info\": {\"input_name\": \"steps\"}}],"
                                " \"dependent_outputs\": [\"9\"], \"class_type\": \"KSampler\"}}"));

    p = default_prompt();
    set_input(p, "3", "model", "[\"4\"]");
    cJSON *body = expect_failure(p, failed, NULL);
    expect_json(node_error(body, "3"),
                "{\"type\": \"bad_linked_input\", \"message\": \"Bad linked input, must be a length-2 list of [node_id, "
                "slot_index]\", \"details\": \"model\", \"extra_info\": {\"input_name\": \"model\", \"input_config\": "
                "[\"MODEL\", {}], \"received_value\": [\"4\"]}}");
    cJSON_Delete(body);

    p = default_prompt();
    set_input(p, "3", "model", "[\"4\", 1]");
    body = expect_failure(p, failed, NULL);
    expect_json(node_error(body, "3"),
                "{\"type\": \"return_type_mismatch\", \"message\": \"Return type mismatch between linked nodes\", "
                "\"details\": \"model, received_type(CLIP) mismatch input_type(MODEL)\", \"extra_info\": {\"input_name\": "
                "\"model\", \"input_config\": [\"MODEL\", {}], \"received_type\": \"CLIP\", \"linked_node\": [\"4\", 1]}}");
    cJSON_Delete(body);

    p = default_prompt();
    set_input(p, "3", "steps", "\"abc\"");
    body = expect_failure(p, failed, NULL);
    expect_json(node_error(body, "3"),
                "{\"type\": \"invalid_input_type\", \"message\": \"Failed to convert an input value to a INT value\", "
                "\"details\": \"steps, abc, invalid literal for int() with base 10: 'abc'\", \"extra_info\": {\"input_name\": "
                "\"steps\", \"input_config\": [\"INT\", {\"default\": 20, \"min\": 1, \"max\": 10000}], \"received_value\": "
                "\"abc\", \"exception_message\": \"invalid literal for int() with base 10: 'abc'\"}}");
    cJSON_Delete(body);

    p = default_prompt();
    set_input(p, "3", "steps", "0");
    body = expect_failure(p, failed, NULL);
    expect_json(node_error(body, "3"),
                "{\"type\": \"value_smaller_than_min\", \"message\": \"Value 0 smaller than min of 1\", \"details\": "
                "\"steps\", \"extra_info\": {\"input_name\": \"steps\", \"input_config\": [\"INT\", {\"default\": 20, "
                "\"min\": 1, \"max\": 10000}], \"received_value\": 0}}");
    cJSON_Delete(body);

    p = default_prompt();
    set_input(p, "3", "cfg", "150");
    body = expect_failure(p, failed, NULL);
    expect_json(node_error(body, "3"),
                "{\"type\": \"value_bigger_than_max\", \"message\": \"Value 150.0 bigger than max of 100.0\", \"details\": "
                "\"cfg\", \"extra_info\": {\"input_name\": \"cfg\", \"input_config\": [\"FLOAT\", {\"default\": 8.0, "
                "\"min\": 0.0, \"max\": 100.0, \"step\": 0.1, \"round\": 0.01}], \"received_value\": 150.0}}");
    cJSON_Delete(body);

    p = default_prompt();
    set_input(p, "3", "sampler_name", "\"euler_a\"");
    body = expect_failure(p, failed, NULL);
    const cJSON *e = node_error(body, "3");
    assert_string_equal(cJSON_GetObjectItem(e, "type")->valuestring, "value_not_in_list");
    assert_string_equal(cJSON_GetObjectItem(e, "message")->valuestring, "Value not in list");
    assert_string_equal(cJSON_GetObjectItem(e, "details")->valuestring,
                        "sampler_name: 'euler_a' not in ['euler', 'euler_ancestral', 'heun', 'dpm_2', 'lms', "
                        "'dpmpp_2s_ancestral', 'dpmpp_2m', 'dpmpp_2m_sde', 'lcm', 'ipndm', 'ddim']");
    cJSON_Delete(body);

    /* Python's number formats in the messages. */
    p = default_prompt();
    set_input(p, "3", "denoise", "-0.5");
    body = expect_failure(p, failed, NULL);
    assert_string_equal(cJSON_GetObjectItem(node_error(body, "3"), "message")->valuestring,
                        "Value -0.5 smaller than min of 0.0");
    cJSON_Delete(body);
    p = default_prompt();
    set_input(p, "3", "seed", "1e20");
    body = expect_failure(p, failed, NULL);
    assert_string_equal(cJSON_GetObjectItem(node_error(body, "3"), "message")->valuestring,
                        "Value 100000000000000000000 bigger than max of 18446744073709551615");
    cJSON_Delete(body);

    /* LoadImage checks its file with its own VALIDATE_INPUTS. */
    p = json("{\"1\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"nope.png\"}},"
             " \"2\": {\"class_type\": \"PreviewImage\", \"inputs\": {\"images\": [\"1\", 0]}}}");
    cJSON_Delete(expect_failure(p, NULL,
                                "{\"1\": {\"errors\": [{\"type\": \"custom_validation_failed\", \"message\": \"Custom "
                                "validation failed for node\", \"details\": \"image - Invalid image file: nope.png\", "
                                "\"extra_info\": {\"input_name\": \"image\"}}], \"dependent_outputs\": [\"2\"], "
                                "\"class_type\": \"LoadImage\"}}"));
    p = json("{\"1\": {\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"example.png [input]\"}},"
             " \"2\": {\"class_type\": \"PreviewImage\", \"inputs\": {\"images\": [\"1\", 0]}}}");
    sdw_status st;
    cJSON *err = NULL;
    sdw_comfy_graph *g = parse(p, &st, &err);
    if (!g) fail_msg("%s", sdw_last_error());
    assert_string_equal(value(g, "1", "image")->str, "example.png");
    sdw_comfy_graph_free(g);

    /* A checkpoint the catalog does not hold, and both CLIPTextEncodes
     * depending on it are invalid without errors of their own. */
    p = default_prompt();
    set_input(p, "4", "ckpt_name", "\"missing.safetensors\"");
    body = expect_failure(p, failed, NULL);
    expect_json(node_error(body, "4"),
                "{\"type\": \"value_not_in_list\", \"message\": \"Value not in list\", \"details\": \"ckpt_name: "
                "'missing.safetensors' not in ['sd_xl_base_1.0.safetensors', 'v1-5-pruned-emaonly.safetensors']\", "
                "\"extra_info\": {\"input_name\": \"ckpt_name\", \"input_config\": [[\"sd_xl_base_1.0.safetensors\", "
                "\"v1-5-pruned-emaonly.safetensors\"], {}], \"received_value\": \"missing.safetensors\"}}");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(body, "node_errors")), 1);
    cJSON_Delete(body);
}

static void link_exceptions_and_cycles(void **state)
{
    (void)state;
    /* A link to a missing node: reported on the linking node by its parent. */
    cJSON *p = default_prompt();
    set_input(p, "6", "clip", "[\"42\", 1]");
    cJSON *body = expect_failure(p, NULL, NULL);
    expect_json(node_error(body, "6"),
                "{\"type\": \"exception_during_inner_validation\", \"message\": \"Exception when validating inner node\", "
                "\"details\": \"'42'\", \"extra_info\": {\"input_name\": \"positive\", \"input_config\": "
                "[\"CONDITIONING\", {}], \"exception_message\": \"'42'\", \"exception_type\": \"KeyError\", "
                "\"traceback\": [], \"linked_node\": [\"6\", 0]}}");
    expect_json(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "node_errors"), "6"),
                                    "dependent_outputs"),
                "[\"9\"]");
    cJSON_Delete(body);

    /* ... on the output node itself; slots out of range, not integers. */
    p = default_prompt();
    set_input(p, "9", "images", "[\"8\", 3]");
    body = expect_failure(p,
                          "{\"type\": \"prompt_outputs_failed_validation\", \"message\": \"Prompt outputs failed "
                          "validation\", \"details\": \"Exception when validating node: tuple index out of range\", "
                          "\"extra_info\": {}}",
                          NULL);
    expect_json(node_error(body, "9"),
                "{\"type\": \"exception_during_validation\", \"message\": \"Exception when validating node\", \"details\": "
                "\"tuple index out of range\", \"extra_info\": {\"exception_type\": \"IndexError\", \"traceback\": []}}");
    cJSON_Delete(body);
    p = default_prompt();
    set_input(p, "9", "images", "[\"8\", \"0\"]");
    body = expect_failure(p, NULL, NULL);
    assert_string_equal(cJSON_GetObjectItem(node_error(body, "9"), "details")->valuestring,
                        "tuple indices must be integers or slices, not str");
    cJSON_Delete(body);
    /* Python's negative indices. */
    p = default_prompt();
    set_input(p, "8", "vae", "[\"4\", -1]");
    sdw_status st;
    cJSON *err = NULL;
    sdw_comfy_graph *g = parse(p, &st, &err);
    assert_non_null(g);
    assert_int_equal(value(g, "8", "vae")->link_slot, 2);
    sdw_comfy_graph_free(g);

    /* A cycle: every node on it gets dependency_cycle. */
    p = default_prompt();
    cJSON_ReplaceItemInObject(p, "6", json("{\"class_type\": \"ConditioningCombine\", \"inputs\": {\"conditioning_1\": "
                                           "[\"7\", 0], \"conditioning_2\": [\"7\", 0]}}"));
    cJSON_ReplaceItemInObject(p, "7", json("{\"class_type\": \"ConditioningCombine\", \"inputs\": {\"conditioning_1\": "
                                           "[\"6\", 0], \"conditioning_2\": [\"6\", 0]}}"));
    body = expect_failure(p, NULL, NULL);
    expect_json(node_error(body, "6"),
                "{\"type\": \"dependency_cycle\", \"message\": \"Dependency cycle detected\", \"details\": \"6 "
                "(ConditioningCombine) -> 7 (ConditioningCombine) -> 6 (ConditioningCombine)\", \"extra_info\": "
                "{\"node_id\": \"6\", \"cycle_nodes\": [\"6\", \"7\"]}}");
    assert_string_equal(cJSON_GetObjectItem(node_error(body, "7"), "type")->valuestring, "dependency_cycle");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(body, "node_errors")), 2);
    cJSON_Delete(body);
    p = default_prompt();
    set_input(p, "3", "latent_image", "[\"3\", 0]");
    body = expect_failure(p, NULL, NULL);
    assert_string_equal(cJSON_GetObjectItem(node_error(body, "3"), "details")->valuestring,
                        "3 (KSampler) -> 3 (KSampler)");
    cJSON_Delete(body);
}

/* One output passes, another fails: the graph runs the good one and keeps
 * the other's node_errors. */
static void partial_outputs(void **state)
{
    (void)state;
    cJSON *p = default_prompt();
    cJSON_AddItemToObject(p, "10", json("{\"class_type\": \"PreviewImage\", \"inputs\": {}}"));
    sdw_status st;
    cJSON *err = NULL;
    sdw_comfy_graph *g = parse(p, &st, &err);
    if (!g) fail_msg("%s", sdw_last_error());
    assert_int_equal(g->n_outputs, 1);
    assert_string_equal(g->nodes[g->outputs[0]].id, "9");
    expect_json(g->node_errors,
                "{\"10\": {\"errors\": [{\"type\": \"required_input_missing\", \"message\": \"Required input is "
                "missing\", \"details\": \"images\", \"extra_info\": {\"input_name\": \"images\"}}], "
                "\"dependent_outputs\": [\"10\"], \"class_type\": \"PreviewImage\"}}");
    sdw_comfy_graph_free(g);
}

static void size_limits(void **state)
{
    (void)state;
    cJSON *p = cJSON_CreateObject();
    char id[16];
    for (int i = 0; i <= 10000; i++) {
        snprintf(id, sizeof id, "%d", i);
        cJSON_AddItemToObject(p, id, json("{\"class_type\": \"PreviewImage\", \"inputs\": {}}"));
    }
    cJSON *body = expect_failure(p, NULL, "{}");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "error"), "type")->valuestring, "invalid_prompt");
    cJSON_Delete(body);
    /* A chain of 10000 nodes validated from its far end (no recursion to
     * run out of stack on). */
    p = cJSON_CreateObject();
    for (int i = 0; i < 9999; i++) {
        char node[128];
        snprintf(id, sizeof id, "%d", i);
        snprintf(node, sizeof node, "{\"class_type\": \"PreviewImage\", \"inputs\": {\"images\": [\"%d\", 0]}}", i + 1);
        cJSON_AddItemToObject(p, id, json(node));
    }
    cJSON_AddItemToObject(p, "9999", json("{\"class_type\": \"LoadImage\", \"inputs\": {\"image\": \"example.png\"}}"));
    sdw_status st;
    cJSON *err = NULL;
    sdw_comfy_graph *g = parse(cJSON_Duplicate(p, true), &st, &err);
    if (!g) fail_msg("%s", sdw_last_error());
    assert_int_equal(g->n_order, 10000);
    assert_int_equal(g->n_outputs, 9999);
    assert_string_equal(g->nodes[g->order[0]].id, "9999");
    assert_string_equal(g->nodes[g->order[9999]].id, "0");
    sdw_comfy_graph_free(g);
    /* ... and with every other one failing: dependent_outputs bounded. */
    for (int i = 1; i < 9999; i += 2) {
        char node[128];
        snprintf(id, sizeof id, "%d", i);
        snprintf(node, sizeof node, "{\"class_type\": \"SaveImage\", \"inputs\": {\"images\": [\"%d\", 0]}}", i + 1);
        cJSON_ReplaceItemInObject(p, id, json(node));
    }
    set_input(p, "9999", "image", "\"nope.png\"");
    body = expect_failure(p, NULL, NULL);
    const cJSON *ne = cJSON_GetObjectItem(body, "node_errors");
    assert_int_equal(cJSON_GetArraySize(ne), 5000);
    int deps = 0;
    for (const cJSON *e = ne->child; e; e = e->next) deps += cJSON_GetArraySize(cJSON_GetObjectItem(e, "dependent_outputs"));
    assert_int_equal(deps, 100000);
    cJSON_Delete(body);
}

/* The fuzz target's seeds (tests/fuzz/corpus/fuzz_comfy_workflow): the
 * workflows of every family pass, the broken ones fail with a body. */
static bool has_any(void *user, sdw_comfy_folder f, const char *name)
{
    (void)user;
    (void)f;
    (void)name;
    return true;
}

static void fuzz_seeds(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        bool valid;
    } seeds[] = {
        {"default_txt2img.json", true}, {"post_prompt_body.json", true}, {"inpaint_lora.json", true},
        {"flux_split_files.json", true}, {"sd3_controlnet.json", true}, {"errors.json", false},
        {"cycle.json", false}, {"unknown_class.json", false},
    };
    const sdw_comfy_catalog any = {.list = cat_list, .has = has_any};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/../fuzz/corpus/fuzz_comfy_workflow/%s", SDW_TEST_DATA, seeds[i].file);
        FILE *fp = fopen(path, "rb");
        if (!fp) fail_msg("cannot open %s", path);
        char text[16384];
        size_t n = fread(text, 1, sizeof text - 1, fp);
        fclose(fp);
        text[n] = 0;
        cJSON *doc = json(text), *prompt = cJSON_GetObjectItem(doc, "prompt");
        sdw_comfy_graph *g = NULL;
        cJSON *err = NULL;
        sdw_status st = sdw_comfy_graph_parse(prompt ? prompt : doc, &any, &g, &err);
        cJSON_Delete(doc);
        if (seeds[i].valid && st != SDW_OK) fail_msg("%s: %s", seeds[i].file, sdw_last_error());
        assert_int_equal(st, seeds[i].valid ? SDW_OK : SDW_ERR_INVALID_ARG);
        assert_true(seeds[i].valid ? g && !err : !g && err);
        if (g) assert_true(g->n_order >= 7);
        sdw_comfy_graph_free(g);
        cJSON_Delete(err);
    }
}

/* ---------------------------------------------------------------- /object_info */

static void object_info(void **state)
{
    (void)state;
    cJSON *all = sdw_comfy_object_info(&catalog, NULL);
    assert_non_null(all);
    assert_int_equal(cJSON_GetArraySize(all), sdw_comfy_n_nodes);
    assert_true(sdw_comfy_n_nodes >= 31);
    cJSON_Delete(all);

    cJSON *ks = sdw_comfy_object_info(&catalog, "KSampler");
    const cJSON *info = cJSON_GetObjectItem(ks, "KSampler");
    assert_non_null(info);
    const cJSON *req = cJSON_GetObjectItem(cJSON_GetObjectItem(info, "input"), "required");
    char *seed = cJSON_PrintUnformatted(cJSON_GetObjectItem(req, "seed"));
    assert_string_equal(seed, "[\"INT\",{\"default\":0,\"min\":0,\"max\":18446744073709551615,\"control_after_generate\":true}]");
    free(seed);
    expect_json(cJSON_GetObjectItem(req, "model"), "[\"MODEL\"]");
    expect_json(cJSON_GetObjectItem(req, "denoise"), "[\"FLOAT\", {\"default\": 1.0, \"min\": 0.0, \"max\": 1.0, \"step\": 0.01}]");
    const cJSON *samplers = cJSON_GetArrayItem(cJSON_GetObjectItem(req, "sampler_name"), 0);
    assert_int_equal(cJSON_GetArraySize(samplers), 11);
    assert_string_equal(cJSON_GetArrayItem(samplers, 0)->valuestring, "euler");
    expect_json(cJSON_GetObjectItem(info, "input_order"),
                "{\"required\": [\"model\", \"seed\", \"steps\", \"cfg\", \"sampler_name\", \"scheduler\", \"positive\", "
                "\"negative\", \"latent_image\", \"denoise\"]}");
    expect_json(cJSON_GetObjectItem(info, "output"), "[\"LATENT\"]");
    expect_json(cJSON_GetObjectItem(info, "output_is_list"), "[false]");
    expect_json(cJSON_GetObjectItem(info, "output_name"), "[\"LATENT\"]");
    assert_string_equal(cJSON_GetObjectItem(info, "name")->valuestring, "KSampler");
    assert_string_equal(cJSON_GetObjectItem(info, "python_module")->valuestring, "nodes");
    assert_string_equal(cJSON_GetObjectItem(info, "category")->valuestring, "model/sampling");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(info, "output_node")));
    cJSON_Delete(ks);

    cJSON *ck = sdw_comfy_object_info(&catalog, "CheckpointLoaderSimple");
    expect_json(cJSON_GetObjectItem(ck, "CheckpointLoaderSimple"),
                "{\"input\": {\"required\": {\"ckpt_name\": [[\"sd_xl_base_1.0.safetensors\", "
                "\"v1-5-pruned-emaonly.safetensors\"]]}}, \"input_order\": {\"required\": [\"ckpt_name\"]}, "
                "\"output\": [\"MODEL\", \"CLIP\", \"VAE\"], \"output_is_list\": [false, false, false], \"output_name\": "
                "[\"MODEL\", \"CLIP\", \"VAE\"], \"name\": \"CheckpointLoaderSimple\", \"display_name\": \"Load "
                "Checkpoint\", \"description\": \"Loads a diffusion model checkpoint, diffusion models are used to "
                "denoise latents.\", \"python_module\": \"nodes\", \"category\": \"model/loaders\", \"output_node\": false}");
    cJSON_Delete(ck);

    cJSON *save = sdw_comfy_object_info(NULL, "SaveImage");
    info = cJSON_GetObjectItem(save, "SaveImage");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(info, "output_node")));
    expect_json(cJSON_GetObjectItem(info, "input"),
                "{\"required\": {\"images\": [\"IMAGE\"], \"filename_prefix\": [\"STRING\", {\"default\": \"ComfyUI\"}]}, "
                "\"hidden\": {\"prompt\": \"PROMPT\", \"extra_pnginfo\": \"EXTRA_PNGINFO\"}}");
    cJSON_Delete(save);

    cJSON *load = sdw_comfy_object_info(&catalog, "LoadImage");
    expect_json(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(load, "LoadImage"), "input"), "required"),
                "{\"image\": [[\"example.png\"], {\"image_upload\": true}]}");
    cJSON_Delete(load);

    cJSON *none = sdw_comfy_object_info(&catalog, "NoSuchNode");
    assert_non_null(none);
    assert_null(none->child);
    cJSON_Delete(none);

    /* Every class of the list is there. */
    static const char *const classes[] = {
        "CheckpointLoaderSimple", "UNETLoader", "CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader", "VAELoader",
        "LoraLoader", "LoraLoaderModelOnly", "CLIPTextEncode", "CLIPSetLastLayer", "EmptyLatentImage",
        "EmptySD3LatentImage", "KSampler", "KSamplerAdvanced", "VAEDecode", "VAEEncode", "VAEEncodeForInpaint",
        "SetLatentNoiseMask", "LoadImage", "LoadImageMask", "SaveImage", "PreviewImage", "ImageScale",
        "LatentUpscale", "ControlNetLoader", "ControlNetApplyAdvanced", "Canny", "FluxGuidance",
        "ConditioningCombine", "ConditioningSetArea", "ConditioningZeroOut"};
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        const sdw_comfy_node_spec *s = sdw_comfy_node_find(classes[i]);
        if (!s) fail_msg("no spec for %s", classes[i]);
        assert_true(s->n_outputs >= 1 && s->n_outputs <= SDW_COMFY_MAX_OUTPUTS);
        assert_true(sdw_comfy_spec_n_inputs(s) >= 1);
    }
    assert_null(sdw_comfy_node_find("UpscaleModelLoader"));
    assert_string_equal(sdw_comfy_folder_name(SDW_FOLDER_UNET), "diffusion_models");
    assert_string_equal(sdw_comfy_type_name(SDW_CT_CONTROL_NET), "CONTROL_NET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_workflow_orders),
        cmocka_unit_test(lenient_values),
        cmocka_unit_test(unknown_class_and_no_outputs),
        cmocka_unit_test(input_errors),
        cmocka_unit_test(link_exceptions_and_cycles),
        cmocka_unit_test(partial_outputs),
        cmocka_unit_test(size_limits),
        cmocka_unit_test(fuzz_seeds),
        cmocka_unit_test(object_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
