/* comfy_graph_internal.h: what comfy_graph.c (the walk over a prompt's
 * nodes, validate_prompt) and comfy_graph_inputs.c (one input checked: a
 * link resolved, a widget value converted and range-checked, ComfyUI's error
 * objects built) share. Private to src/comfy. */
#ifndef SDW_COMFY_GRAPH_INTERNAL_H
#define SDW_COMFY_GRAPH_INTERNAL_H
#include "comfy/comfy.h"
#include "comfy/comfy_pyval.h"

/* Beyond this many errors a node is still invalid but its errors are not
 * all listed. */
#define MAX_ERRORS 10000

/* A node of the prompt and its entry in ComfyUI's "validated" cache. */
typedef struct {
    const char *id;
    const cJSON *json;        /* the node's object in the prompt */
    const sdw_comfy_node_spec *spec;
    int stack_pos;            /* its frame while being validated, else -1 */
    bool validated, valid;
    cJSON *reasons;           /* its errors once validated */
    bool in_node_errors;
    int *deps, n_deps, cap_deps;   /* dependent_outputs (output node indices) */
} vnode;

/* A node being validated: the walk's stack holds one per node whose inputs
 * are being looked at (Python's recursion). */
typedef struct {
    int node;
    int input;                /* the input being looked at */
    bool valid;
    cJSON *errors;
    int image_input;          /* LoadImage's "image", checked last (-1: none) */
    const cJSON *image;
} frame;

/* What Python would have raised inside a node's validation. */
typedef struct {
    const char *type;         /* Python's exception class */
    sdw_pystr msg;
} pyexc;

/* One validation of a prompt. */
typedef struct {
    const sdw_comfy_catalog *cat;
    vnode *v;
    int n;
    int *slots;               /* id hash: node index or -1 */
    unsigned mask;
    frame *stack;
    int depth;
    int *seq, n_seq;          /* nodes in the order they entered "validated" */
    int *ne, n_ne;            /* nodes of node_errors, in order */
    sdw_comfy_graph *g;
    int n_errors, n_dependents, n_cycle_marks;
    bool nomem;
} vctx;

/* ---- comfy_graph.c */
/* The node keyed id, or -1. */
int cgraph_find_node(const vctx *c, const char *id);

/* ---- comfy_graph_inputs.c */
/* Adds item to object o under key (or to array arr), or deletes it and
 * notes c->nomem. */
cJSON *cgraph_take(vctx *c, cJSON *o, const char *key, cJSON *item);
void cgraph_push_item(vctx *c, cJSON *arr, cJSON *item);
/* {"type", "message", "details", "extra_info"}, taking details and extra
 * (NULL: {}). */
cJSON *cgraph_make_error(vctx *c, const char *type, const char *message, sdw_pystr *details, cJSON *extra);
/* Frame f's node fails with error e (taken). */
void cgraph_add_error(vctx *c, frame *f, cJSON *e);
/* The input as ComfyUI's input_config repeats it ([type, {options}]). */
cJSON *cgraph_input_config(vctx *c, const sdw_comfy_node_spec *s, const sdw_comfy_input *in);
/* {"input_name", "input_config"} of input in of class s. */
cJSON *cgraph_input_extra(vctx *c, const sdw_comfy_node_spec *s, const sdw_comfy_input *in);
/* The input's type as ComfyUI prints it: "INT", or a combo's list. */
void cgraph_type_str(vctx *c, sdw_pystr *b, const sdw_comfy_input *in);
/* ["id", slot] to a node and output index, or the exception Python raises. */
bool cgraph_resolve_link(vctx *c, const cJSON *val, int *node, int *slot, pyexc *ex);
/* A widget value converted, checked and stored in out (or an error on f). */
void cgraph_check_widget(vctx *c, frame *f, const sdw_comfy_input *in, const cJSON *val, sdw_comfy_value *out);
/* ComfyUI's "bad_linked_input" for input in of f's node, given val. */
void cgraph_bad_link(vctx *c, frame *f, const sdw_comfy_input *in, const cJSON *val);
/* LoadImage's own check of its file, once the other inputs are done. */
void cgraph_check_image(vctx *c, frame *f);
#endif
