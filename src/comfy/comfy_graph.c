/* comfy_graph.c: a ComfyUI API-format prompt ({"3": {"class_type":
 * "KSampler", "inputs": {"seed": 5, "model": ["4", 0], ...}}, ...}) parsed,
 * validated and ordered into an sdw_comfy_graph, with ComfyUI's answers
 * when it is not valid.
 *
 * The checks follow ComfyUI's execution.py step by step, so that a client
 * gets the same 400 from us as from ComfyUI: validate_prompt checks every
 * node's class, collects the output nodes, and validates each output's
 * ancestors depth first (validate_inputs): required inputs present, links
 * [id, slot] to existing nodes and outputs of the input's type, widget
 * values converted as Python's int() / float() / str() / bool() would, then
 * min / max and combo lists. A node is validated once (the result cached);
 * a node whose ancestor failed is invalid without errors of its own; an
 * exception inside a node's validation (a link to a missing node, a bad
 * slot) is reported on that node, by its parent; a cycle marks every node on
 * it. Outputs that pass are run even when others fail (their errors then
 * come back as node_errors beside the graph).
 *
 * The walk is iterative (an explicit stack), and what a hostile prompt can
 * make us build is bounded: at most SDW_COMFY_MAX_NODES nodes, error lists
 * and dependent_outputs capped, long lists summarised. */
#include "comfy/comfy.h"
#include "comfy/comfy_graph_internal.h"
#include "core/error.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SDW_COMFY_MAX_NODES 10000
/* Beyond this a failed node's dependent_outputs are not all listed. */
#define MAX_DEPENDENTS 100000
/* A cycle longer than this is shown by its ends. */
#define CYCLE_SHOWN 8
/* Cycle errors written, in nodes: past it the nodes on further cycles are
 * invalid without an error each (a prompt of back links to every ancestor
 * would otherwise cost nodes^2). */
#define MAX_CYCLE_MARKS 100000

/* ---------------------------------------------------------------- the node index */

static unsigned hash_id(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

int cgraph_find_node(const vctx *c, const char *id)
{
    for (unsigned i = hash_id(id) & c->mask;; i = (i + 1) & c->mask) {
        int k = c->slots[i];
        if (k < 0) return -1;
        if (strcmp(c->v[k].id, id) == 0) return k;
    }
}

/* Node ids as ComfyUI keys them; a repeated key keeps its first place and
 * its last value, as Python's json does. */
static bool index_nodes(vctx *c, const cJSON *prompt, int count)
{
    unsigned cap = 16;
    while (cap < 2u * (unsigned)count) cap *= 2;
    c->mask = cap - 1;
    c->slots = malloc(cap * sizeof *c->slots);
    c->v = calloc((size_t)count + 1, sizeof *c->v);
    if (!c->slots || !c->v) return false;
    memset(c->slots, 0xff, cap * sizeof *c->slots);
    for (const cJSON *x = prompt->child; x; x = x->next) {
        const char *id = x->string ? x->string : "";
        int k = cgraph_find_node(c, id);
        if (k >= 0) {
            c->v[k].json = x;
            continue;
        }
        unsigned i = hash_id(id) & c->mask;
        while (c->slots[i] >= 0) i = (i + 1) & c->mask;
        c->slots[i] = c->n;
        c->v[c->n++] = (vnode){.id = id, .json = x, .stack_pos = -1};
    }
    return true;
}

/* ---------------------------------------------------------------- the validated cache */

static void set_validated(vctx *c, int k, bool valid, cJSON *reasons)
{
    vnode *n = &c->v[k];
    if (!n->validated) c->seq[c->n_seq++] = k;
    if (n->reasons != reasons) cJSON_Delete(n->reasons);
    n->validated = true;
    n->valid = valid;
    n->reasons = reasons ? reasons : cJSON_CreateArray();
    if (!n->reasons) c->nomem = true;
}

/* Every node on the cycle that leads back to k (on the stack from k's
 * frame up) gets ComfyUI's dependency_cycle error. */
static void mark_cycle(vctx *c, int k)
{
    int from = c->v[k].stack_pos, len = c->depth - from;
    if (c->n_cycle_marks > MAX_CYCLE_MARKS) return;
    c->n_cycle_marks += len;
    sdw_pystr path = {0};
    for (int i = 0; i <= len; i++) {
        if (len > 2 * CYCLE_SHOWN && i == CYCLE_SHOWN) {
            sdw_pystr_cat(&path, " -> ...");
            i = len - CYCLE_SHOWN;
        }
        const vnode *n = &c->v[i < len ? c->stack[from + i].node : k];
        if (i) sdw_pystr_cat(&path, " -> ");
        sdw_pystr_cat(&path, n->id);
        sdw_pystr_cat(&path, " (");
        sdw_pystr_cat(&path, n->spec->class_type);
        sdw_pystr_cat(&path, ")");
    }
    for (int i = 0; i < len; i++) {
        int node = c->stack[from + i].node;
        cJSON *extra = cJSON_CreateObject(), *nodes = cJSON_CreateArray();
        cgraph_take(c, extra, "node_id", cJSON_CreateString(c->v[node].id));
        for (int j = 0; j < len; j++) {
            if (len > 2 * CYCLE_SHOWN && j == CYCLE_SHOWN) j = len - CYCLE_SHOWN;
            cgraph_push_item(c, nodes, cJSON_CreateString(c->v[c->stack[from + j].node].id));
        }
        cgraph_take(c, extra, "cycle_nodes", nodes);
        sdw_pystr details = {0};
        sdw_pystr_cat(&details, sdw_pystr_get(&path));
        cJSON *reasons = cJSON_CreateArray();
        cgraph_push_item(c, reasons, cgraph_make_error(c, "dependency_cycle", "Dependency cycle detected", &details, extra));
        set_validated(c, node, false, reasons);
    }
    sdw_pystr_free(&path);
}

/* ---------------------------------------------------------------- the walk */

typedef enum { STEP_DONE, STEP_PUSH, STEP_RAISE } step_result;

/* Goes on through the top frame's inputs: until they are done, a linked
 * node must be validated first (its index in *child), or Python would have
 * raised (ex). */
static step_result step(vctx *c, frame *f, int *child, pyexc *ex)
{
    const vnode *n = &c->v[f->node];
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(n->json, "inputs");
    if (!inputs) {
        ex->type = "KeyError";
        sdw_pystr_cat(&ex->msg, "'inputs'");
        return STEP_RAISE;
    }
    if (!cJSON_IsObject(inputs) && !cJSON_IsArray(inputs) && !cJSON_IsString(inputs)) {
        ex->type = "TypeError";
        sdw_pystr_catf(&ex->msg, "argument of type '%s' is not iterable", sdw_py_type_name(inputs));
        return STEP_RAISE;
    }
    const sdw_comfy_node_spec *s = n->spec;
    for (int ni = sdw_comfy_spec_n_inputs(s); f->input < ni; f->input++) {
        const sdw_comfy_input *in = &s->inputs[f->input];
        sdw_comfy_value *out = &c->g->nodes[f->node].in[f->input];
        const cJSON *val = cJSON_IsObject(inputs) ? cJSON_GetObjectItemCaseSensitive(inputs, in->name) : NULL;
        sdw_pystr details = {0};
        if (!val) {
            if (in->optional) continue;
            sdw_pystr_cat(&details, in->name);
            cJSON *extra = cJSON_CreateObject();
            cgraph_take(c, extra, "input_name", cJSON_CreateString(in->name));
            cgraph_add_error(c, f, cgraph_make_error(c, "required_input_missing", "Required input is missing", &details, extra));
            continue;
        }
        if (!cJSON_IsArray(val)) {
            cgraph_check_widget(c, f, in, val, out);
            continue;
        }
        if (cJSON_GetArraySize(val) != 2) {
            cgraph_bad_link(c, f, in, val);
            continue;
        }
        int k, slot;
        if (!cgraph_resolve_link(c, val, &k, &slot, ex)) return STEP_RAISE;
        sdw_comfy_type got = c->v[k].spec->outputs[slot];
        if (in->type == SDW_CT_COMBO || got != in->type) {
            sdw_pystr_catf(&details, "%s, received_type(%s) mismatch input_type(", in->name, sdw_comfy_type_name(got));
            cgraph_type_str(c, &details, in);
            sdw_pystr_cat(&details, ")");
            cJSON *extra = cgraph_input_extra(c, s, in);
            cgraph_take(c, extra, "received_type", cJSON_CreateString(sdw_comfy_type_name(got)));
            cgraph_take(c, extra, "linked_node", cJSON_Duplicate(val, true));
            cgraph_add_error(c, f, cgraph_make_error(c, "return_type_mismatch", "Return type mismatch between linked nodes",
                                       &details, extra));
            continue;
        }
        *out = (sdw_comfy_value){.present = true, .is_link = true, .link_node = k, .link_slot = slot};
        const vnode *linked = &c->v[k];
        if (linked->validated) {
            if (!linked->valid) f->valid = false;
            continue;
        }
        if (linked->stack_pos >= 0) {
            mark_cycle(c, k);
            f->valid = false;
            continue;
        }
        *child = k;
        return STEP_PUSH;
    }
    if (f->image_input >= 0) {
        cgraph_check_image(c, f);
        f->image_input = -1;
    }
    return STEP_DONE;
}

static void push_frame(vctx *c, int k)
{
    c->v[k].stack_pos = c->depth;
    frame *f = &c->stack[c->depth++];
    *f = (frame){.node = k, .valid = true, .errors = cJSON_CreateArray(), .image_input = -1};
    if (!f->errors) c->nomem = true;
}

/* The top node is done: its result joins what a cycle may have put there. */
static void finish(vctx *c)
{
    frame *f = &c->stack[--c->depth];
    vnode *n = &c->v[f->node];
    n->stack_pos = -1;
    bool valid = (!n->validated || n->valid) && f->valid && !(f->errors && f->errors->child);
    cJSON *reasons = n->validated ? n->reasons : cJSON_CreateArray();
    while (f->errors && f->errors->child) {
        cJSON *e = cJSON_DetachItemViaPointer(f->errors, f->errors->child);
        bool seen = false;
        for (const cJSON *r = reasons ? reasons->child : NULL; r && !seen; r = r->next) seen = cJSON_Compare(r, e, true);
        if (seen) cJSON_Delete(e);
        else cgraph_push_item(c, reasons, e);
    }
    cJSON_Delete(f->errors);
    set_validated(c, f->node, valid, reasons);
    if (c->depth > 0) {
        frame *p = &c->stack[c->depth - 1];
        if (!valid) p->valid = false;
        p->input++;
    }
}

/* The top node raised: its parent reports it on it (or, for an output node,
 * validate_prompt does). */
static void raise_exc(vctx *c, pyexc *ex)
{
    frame *f = &c->stack[--c->depth];
    int k = f->node;
    c->v[k].stack_pos = -1;
    cJSON_Delete(f->errors);
    cJSON *extra = cJSON_CreateObject(), *e;
    sdw_pystr details = {0};
    sdw_pystr_cat(&details, sdw_pystr_get(&ex->msg));
    if (c->depth > 0) {
        frame *p = &c->stack[c->depth - 1];
        const sdw_comfy_node_spec *ps = c->v[p->node].spec;
        const sdw_comfy_input *in = &ps->inputs[p->input];
        const cJSON *link = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(c->v[p->node].json, "inputs"), in->name);
        cgraph_take(c, extra, "input_name", cJSON_CreateString(in->name));
        cgraph_take(c, extra, "input_config", cgraph_input_config(c, ps, in));
        cgraph_take(c, extra, "exception_message", cJSON_CreateString(sdw_pystr_get(&ex->msg)));
        cgraph_take(c, extra, "exception_type", cJSON_CreateString(ex->type));
        cgraph_take(c, extra, "traceback", cJSON_CreateArray());
        cgraph_take(c, extra, "linked_node", cJSON_Duplicate(link, true));
        e = cgraph_make_error(c, "exception_during_inner_validation", "Exception when validating inner node", &details, extra);
        p->valid = false;
        p->input++;
    } else {
        cgraph_take(c, extra, "exception_type", cJSON_CreateString(ex->type));
        cgraph_take(c, extra, "traceback", cJSON_CreateArray());
        e = cgraph_make_error(c, "exception_during_validation", "Exception when validating node", &details, extra);
    }
    if (ex->msg.failed) c->nomem = true;
    sdw_pystr_free(&ex->msg);
    cJSON *reasons = cJSON_CreateArray();
    cgraph_push_item(c, reasons, e);
    set_validated(c, k, false, reasons);
}

/* validate_inputs(root), depth first. */
static void validate_from(vctx *c, int root)
{
    if (c->v[root].validated) return;
    push_frame(c, root);
    while (c->depth > 0 && !c->nomem) {
        pyexc ex = {0};
        int child = -1;
        step_result r = step(c, &c->stack[c->depth - 1], &child, &ex);
        if (r == STEP_PUSH) push_frame(c, child);
        else if (r == STEP_DONE) finish(c);
        else raise_exc(c, &ex);
    }
}

/* ---------------------------------------------------------------- validate_prompt */

/* ComfyUI keys nodes by strings of digits: "10" after "9". */
static int id_cmp(const char *a, const char *b)
{
    bool da = a[0] && strspn(a, "0123456789") == strlen(a), db = b[0] && strspn(b, "0123456789") == strlen(b);
    if (da != db) return da ? -1 : 1;
    if (da) {
        while (a[0] == '0' && a[1]) a++;
        while (b[0] == '0' && b[1]) b++;
        size_t la = strlen(a), lb = strlen(b);
        if (la != lb) return la < lb ? -1 : 1;
    }
    return strcmp(a, b);
}

typedef struct {
    const char *id;
    int node;
} id_ref;

static int id_ref_cmp(const void *x, const void *y)
{
    return id_cmp(((const id_ref *)x)->id, ((const id_ref *)y)->id);
}

/* The output nodes in id order. */
static bool sort_outputs(const vctx *c, int *outputs, int n)
{
    id_ref *r = malloc((size_t)n * sizeof *r);
    if (!r) return false;
    for (int i = 0; i < n; i++) r[i] = (id_ref){c->v[outputs[i]].id, outputs[i]};
    qsort(r, (size_t)n, sizeof *r, id_ref_cmp);
    for (int i = 0; i < n; i++) outputs[i] = r[i].node;
    free(r);
    return true;
}

/* Output o failed: every failed node validated so far with errors of its
 * own lists o among its dependent_outputs (ComfyUI walks all of
 * "validated", not only o's ancestors). */
static void note_failed_output(vctx *c, int o)
{
    for (int i = 0; i < c->n_seq; i++) {
        vnode *n = &c->v[c->seq[i]];
        if (n->valid || !n->reasons || !n->reasons->child) continue;
        if (!n->in_node_errors) {
            n->in_node_errors = true;
            c->ne[c->n_ne++] = c->seq[i];
        }
        if (c->n_dependents >= MAX_DEPENDENTS) continue;
        if (n->n_deps == n->cap_deps) {
            int cap = n->cap_deps ? 2 * n->cap_deps : 4;
            int *d = realloc(n->deps, (size_t)cap * sizeof *d);
            if (!d) {
                c->nomem = true;
                return;
            }
            n->deps = d;
            n->cap_deps = cap;
        }
        n->deps[n->n_deps++] = o;
        c->n_dependents++;
    }
}

/* {id: {"errors", "dependent_outputs", "class_type"}}, taking the nodes'
 * reasons. */
static cJSON *node_errors_json(vctx *c)
{
    cJSON *all = cJSON_CreateObject();
    for (int i = 0; i < c->n_ne; i++) {
        vnode *n = &c->v[c->ne[i]];
        cJSON *entry = cgraph_take(c, all, n->id, cJSON_CreateObject());
        cgraph_take(c, entry, "errors", n->reasons);
        n->reasons = NULL;
        cJSON *deps = cgraph_take(c, entry, "dependent_outputs", cJSON_CreateArray());
        for (int j = 0; j < n->n_deps; j++) cgraph_push_item(c, deps, cJSON_CreateString(c->v[n->deps[j]].id));
        cgraph_take(c, entry, "class_type", cJSON_CreateString(n->spec->class_type));
    }
    if (!all) c->nomem = true;
    return all;
}

/* ComfyUI's 400 body: {"error": {...}, "node_errors": node_errors}
 * (taken; NULL: {}). NULL when out of memory. */
static cJSON *error_body_json(const char *type, const char *message, const char *details, cJSON *node_errors)
{
    cJSON *body = cJSON_CreateObject();
    cJSON *err = body ? cJSON_AddObjectToObject(body, "error") : NULL;
    bool ok = err && cJSON_AddStringToObject(err, "type", type) && cJSON_AddStringToObject(err, "message", message) &&
              cJSON_AddStringToObject(err, "details", details) && cJSON_AddObjectToObject(err, "extra_info");
    if (!node_errors) node_errors = cJSON_CreateObject();
    if (ok && node_errors && cJSON_AddItemToObject(body, "node_errors", node_errors)) return body;
    cJSON_Delete(node_errors);
    cJSON_Delete(body);
    return NULL;
}

/* A failure before any node is validated (ComfyUI's invalid_prompt,
 * prompt_no_outputs). */
static sdw_status prompt_error(cJSON **body, const char *type, const char *message, const char *details)
{
    if (body && !(*body = error_body_json(type, message, details, NULL)))
        return sdw_fail(SDW_ERR_NOMEM, "workflow: out of memory");
    return sdw_fail(SDW_ERR_INVALID_ARG, "workflow: %s%s%s", message, details[0] ? " " : "", details);
}

/* Every class known, at least one output node (validate_prompt's first
 * loop). */
static sdw_status check_classes(vctx *c, cJSON **body, int *outputs, int *n_out)
{
    *n_out = 0;
    for (int k = 0; k < c->n; k++) {
        vnode *n = &c->v[k];
        sdw_pystr details = {0}, message = {0};
        sdw_pystr_catf(&details, "Node ID '#%s'", n->id);
        const cJSON *ct = cJSON_IsObject(n->json) ? cJSON_GetObjectItemCaseSensitive(n->json, "class_type") : NULL;
        n->spec = cJSON_IsString(ct) ? sdw_comfy_node_find(ct->valuestring) : NULL;
        sdw_status st = SDW_OK;
        if (!ct)
            st = prompt_error(body, "invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                              sdw_pystr_get(&details));
        else if (!n->spec) {
            sdw_pystr_cat(&message, "Cannot execute because node ");
            sdw_py_str(&message, ct);
            sdw_pystr_cat(&message, " does not exist.");
            st = prompt_error(body, "invalid_prompt", sdw_pystr_get(&message), sdw_pystr_get(&details));
        }
        sdw_pystr_free(&details);
        sdw_pystr_free(&message);
        if (st != SDW_OK) return st;
        if (n->spec->output_node) outputs[(*n_out)++] = k;
    }
    if (*n_out == 0) return prompt_error(body, "prompt_no_outputs", "Prompt has no outputs", "");
    if (!sort_outputs(c, outputs, *n_out)) return sdw_fail(SDW_ERR_NOMEM, "workflow: out of memory");
    return SDW_OK;
}

/* ---------------------------------------------------------------- the graph */

/* Post-order from each output: a node after everything it links to. */
static bool order_nodes(vctx *c, const int *good, int n_good)
{
    sdw_comfy_graph *g = c->g;
    g->order = malloc((size_t)c->n * sizeof *g->order);
    char *state = calloc((size_t)c->n, 1);   /* 0 new, 1 on the stack, 2 placed */
    if (!g->order || !state) {
        free(state);
        return false;
    }
    for (int i = 0; i < n_good; i++) {
        if (state[good[i]]) continue;
        c->depth = 0;
        c->stack[c->depth++] = (frame){.node = good[i]};
        state[good[i]] = 1;
        while (c->depth > 0) {
            frame *f = &c->stack[c->depth - 1];
            const sdw_comfy_node *n = &g->nodes[f->node];
            int ni = sdw_comfy_spec_n_inputs(n->spec), next = -1;
            for (; f->input < ni && next < 0; f->input++)
                if (n->in[f->input].is_link && state[n->in[f->input].link_node] == 0) next = n->in[f->input].link_node;
            if (next >= 0) {
                state[next] = 1;
                c->stack[c->depth++] = (frame){.node = next};
                continue;
            }
            state[f->node] = 2;
            g->order[g->n_order++] = f->node;
            c->depth--;
        }
    }
    free(state);
    return true;
}

/* Optional inputs left out get their defaults (present stays false). */
static bool fill_defaults(sdw_comfy_graph *g)
{
    for (int i = 0; i < g->n_order; i++) {
        sdw_comfy_node *n = &g->nodes[g->order[i]];
        for (int k = 0; k < sdw_comfy_spec_n_inputs(n->spec); k++) {
            const sdw_comfy_input *in = &n->spec->inputs[k];
            if (n->in[k].present || in->type < SDW_CT_INT) continue;
            n->in[k].num = in->def;
            const char *s = in->def_str ? in->def_str : in->choices ? in->choices[0] : NULL;
            if (s && !(n->in[k].str = strdup(s))) return false;
        }
    }
    return true;
}

static sdw_comfy_graph *graph_new(const vctx *c)
{
    sdw_comfy_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->nodes = calloc((size_t)c->n + 1, sizeof *g->nodes);
    if (!g->nodes) {
        free(g);
        return NULL;
    }
    g->n_nodes = c->n;
    for (int k = 0; k < c->n; k++) {
        g->nodes[k].spec = c->v[k].spec;
        if (!(g->nodes[k].id = strdup(c->v[k].id))) {
            sdw_comfy_graph_free(g);
            return NULL;
        }
    }
    return g;
}

void sdw_comfy_graph_free(sdw_comfy_graph *g)
{
    if (!g) return;
    for (int k = 0; k < g->n_nodes; k++) {
        free(g->nodes[k].id);
        for (int i = 0; i < SDW_COMFY_MAX_INPUTS; i++) free(g->nodes[k].in[i].str);
    }
    free(g->nodes);
    free(g->order);
    free(g->outputs);
    cJSON_Delete(g->node_errors);
    free(g);
}

static void ctx_free(vctx *c)
{
    for (int k = 0; k < c->n; k++) {
        cJSON_Delete(c->v[k].reasons);
        free(c->v[k].deps);
    }
    for (int i = 0; c->stack && i < c->depth; i++) cJSON_Delete(c->stack[i].errors);
    free(c->v);
    free(c->slots);
    free(c->stack);
    free(c->seq);
    free(c->ne);
    sdw_comfy_graph_free(c->g);
}

/* ---------------------------------------------------------------- the entry point */

/* No output passed: ComfyUI's prompt_outputs_failed_validation, its details
 * the failed outputs' own errors, one per line. */
static sdw_status outputs_failed(vctx *c, cJSON **body, const int *failed, int n_failed)
{
    sdw_pystr details = {0};
    for (int i = 0; i < n_failed; i++)
        for (const cJSON *r = c->v[failed[i]].reasons ? c->v[failed[i]].reasons->child : NULL; r; r = r->next) {
            if (details.len) sdw_pystr_cat(&details, "\n");
            sdw_pystr_catf(&details, "%s: ", cJSON_GetStringValue(cJSON_GetObjectItem(r, "message")));
            sdw_pystr_cat(&details, cJSON_GetStringValue(cJSON_GetObjectItem(r, "details")));
        }
    /* The summary names the first node with errors of its own. */
    sdw_pystr summary = {0};
    if (c->n_ne > 0) {
        const vnode *n = &c->v[c->ne[0]];
        const cJSON *r = n->reasons->child;
        sdw_pystr_catf(&summary, "node %s (%s): %s: ", n->id, n->spec->class_type,
                       cJSON_GetStringValue(cJSON_GetObjectItem(r, "message")));
        sdw_pystr_cat(&summary, cJSON_GetStringValue(cJSON_GetObjectItem(r, "details")));
    }
    cJSON *ne = node_errors_json(c);
    sdw_status st = SDW_ERR_INVALID_ARG;
    if (details.failed || summary.failed || c->nomem) {
        cJSON_Delete(ne);
        st = SDW_ERR_NOMEM;
    } else if (body) {
        if (!(*body = error_body_json("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                                      sdw_pystr_get(&details), ne)))
            st = SDW_ERR_NOMEM;
    } else
        cJSON_Delete(ne);
    if (st == SDW_ERR_INVALID_ARG)
        sdw_fail(st, "workflow: Prompt outputs failed validation: %s", sdw_pystr_get(&summary));
    sdw_pystr_free(&details);
    sdw_pystr_free(&summary);
    return st;
}

sdw_status sdw_comfy_graph_parse(const cJSON *prompt, const sdw_comfy_catalog *cat, sdw_comfy_graph **out,
                                 cJSON **error_body)
{
    *out = NULL;
    if (error_body) *error_body = NULL;
    if (!cJSON_IsObject(prompt))
        return prompt_error(error_body, "invalid_prompt", "Cannot execute because the prompt is not a JSON object.", "");
    int count = cJSON_GetArraySize(prompt);
    if (count > SDW_COMFY_MAX_NODES) {
        char msg[160];
        snprintf(msg, sizeof msg, "Cannot execute because the prompt has %d nodes, more than the %d this server takes.",
                 count, SDW_COMFY_MAX_NODES);
        return prompt_error(error_body, "invalid_prompt", msg, "");
    }
    vctx c = {.cat = cat};
    size_t n1 = (size_t)count + 1;
    int *outputs = malloc(n1 * sizeof *outputs), *good = malloc(n1 * sizeof *good),
        *failed = malloc(n1 * sizeof *failed);
    c.stack = malloc(n1 * sizeof *c.stack);
    c.seq = malloc(n1 * sizeof *c.seq);
    c.ne = malloc(n1 * sizeof *c.ne);
    sdw_status st = SDW_ERR_NOMEM;
    int n_out = 0, n_good = 0, n_failed = 0;
    if (!outputs || !good || !failed || !c.stack || !c.seq || !c.ne || !index_nodes(&c, prompt, count)) goto done;
    if ((st = check_classes(&c, error_body, outputs, &n_out)) != SDW_OK) goto done;
    st = SDW_ERR_NOMEM;
    if (!(c.g = graph_new(&c))) goto done;
    for (int i = 0; i < n_out && !c.nomem; i++) {
        int o = outputs[i];
        validate_from(&c, o);
        if (c.v[o].valid) good[n_good++] = o;
        else {
            failed[n_failed++] = o;
            note_failed_output(&c, o);
        }
    }
    if (c.nomem) goto done;
    if (n_good == 0) {
        st = outputs_failed(&c, error_body, failed, n_failed);
        goto done;
    }
    sdw_comfy_graph *g = c.g;
    g->outputs = malloc((size_t)n_good * sizeof *g->outputs);
    if (!g->outputs || !(g->node_errors = node_errors_json(&c)) || c.nomem || !order_nodes(&c, good, n_good) ||
        !fill_defaults(g))
        goto done;
    memcpy(g->outputs, good, (size_t)n_good * sizeof *good);
    g->n_outputs = n_good;
    *out = g;
    c.g = NULL;
    st = SDW_OK;
done:
    if (st == SDW_ERR_NOMEM) {
        if (error_body) {
            cJSON_Delete(*error_body);
            *error_body = NULL;
        }
        sdw_fail(st, "workflow: out of memory while validating %d nodes", count);
    }
    ctx_free(&c);
    free(outputs);
    free(good);
    free(failed);
    return st;
}
