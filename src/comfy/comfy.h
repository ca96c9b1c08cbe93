/* comfy.h: ComfyUI's API-format workflows: the nodes we run (their inputs
 * and outputs as /object_info describes them), a workflow parsed and checked
 * into a graph (with ComfyUI's error answers), and the executor that runs a
 * graph's nodes in dependency order over the pipeline.
 *
 * Three parts, three sets of files:
 *   comfy_nodes.c       the node table: one sdw_comfy_node_spec per class
 *   comfy_graph.c       JSON -> sdw_comfy_graph, validation, order; comfy_object_info.c
 *   comfy_exec.c + comfy_node_*.c   the executor and one small function per node
 * The server (routes_comfy.c, engine_comfy.c) supplies the catalog of file
 * names and the environment the executor loads models and saves images
 * through; nothing here knows HTTP. */
#ifndef SDW_COMFY_COMFY_H
#define SDW_COMFY_COMFY_H
#include "sdw.h"
#include "io/image.h"
#include "models/lora.h"
#include <cjson/cJSON.h>

struct sdw_controlnet;   /* models/controlnet.h */

/* ---------------------------------------------------------------- the node table */

typedef enum {
    SDW_CT_MODEL, SDW_CT_CLIP, SDW_CT_VAE, SDW_CT_CONDITIONING, SDW_CT_LATENT, SDW_CT_IMAGE, SDW_CT_MASK,
    SDW_CT_CONTROL_NET,
    SDW_CT_NOISE, SDW_CT_GUIDER, SDW_CT_SAMPLER, SDW_CT_SIGMAS,   /* the custom sampler's (SamplerCustomAdvanced) */
    SDW_CT_INT, SDW_CT_FLOAT, SDW_CT_STRING, SDW_CT_BOOLEAN,
    SDW_CT_COMBO,             /* a string from a list (fixed, or from a catalog folder) */
} sdw_comfy_type;
/* "MODEL", "CLIP", ..., "INT", "FLOAT", "STRING", "BOOLEAN", "COMBO". */
const char *sdw_comfy_type_name(sdw_comfy_type t);

/* Where a COMBO's choices come from. The folders are ComfyUI's names
 * (/models/{folder}). */
typedef enum {
    SDW_FOLDER_NONE,          /* a fixed list (the spec's choices) */
    SDW_FOLDER_CHECKPOINTS, SDW_FOLDER_LORAS, SDW_FOLDER_CONTROLNET, SDW_FOLDER_VAE, SDW_FOLDER_CLIP,
    SDW_FOLDER_UNET,          /* ComfyUI's "diffusion_models" (alias "unet") */
    SDW_FOLDER_INPUT,         /* uploaded images (LoadImage, LoadImageMask) */
    SDW_FOLDER_COUNT
} sdw_comfy_folder;
const char *sdw_comfy_folder_name(sdw_comfy_folder f);

#define SDW_COMFY_MAX_INPUTS 16
#define SDW_COMFY_MAX_OUTPUTS 4
typedef struct {
    const char *name;
    sdw_comfy_type type;
    bool optional;
    double def, min, max, step;   /* INT / FLOAT; BOOLEAN def 0/1 */
    const char *def_str;      /* STRING / COMBO default (NULL = the first choice) */
    bool multiline;           /* STRING: a text area (prompts) */
    sdw_comfy_folder folder;  /* COMBO from a folder */
    const char *const *choices;   /* COMBO, fixed: NULL-terminated */
    bool image_upload;        /* LoadImage / LoadImageMask: ComfyUI's "image_upload": true */
} sdw_comfy_input;

typedef struct {
    const char *class_type;   /* "KSampler" */
    const char *display_name; /* "KSampler" */
    const char *category;     /* "sampling" */
    const char *description;
    sdw_comfy_input inputs[SDW_COMFY_MAX_INPUTS];   /* ends at the first with name == NULL */
    sdw_comfy_type outputs[SDW_COMFY_MAX_OUTPUTS];
    const char *output_names[SDW_COMFY_MAX_OUTPUTS];
    int n_outputs;
    bool output_node;         /* SaveImage, PreviewImage: what a prompt must reach */
} sdw_comfy_node_spec;

extern const sdw_comfy_node_spec sdw_comfy_nodes[];
extern const int sdw_comfy_n_nodes;
/* NULL for a class we do not run. */
const sdw_comfy_node_spec *sdw_comfy_node_find(const char *class_type);
int sdw_comfy_spec_n_inputs(const sdw_comfy_node_spec *s);

/* Choice lists the server knows: the files in each folder, and the sampler
 * and scheduler names we run (ComfyUI's spelling: "euler", "euler_ancestral",
 * "dpmpp_2m", ...; "normal", "karras", ...). */
extern const char *const sdw_comfy_sampler_names[];    /* NULL-terminated */
extern const char *const sdw_comfy_scheduler_names[];  /* NULL-terminated */

typedef struct {
    void *user;
    /* Calls add(ctx, name) for every name in the folder, sorted. NULL = empty. */
    void (*list)(void *user, sdw_comfy_folder f, void (*add)(void *ctx, const char *name), void *ctx);
    /* Whether name is in the folder (without listing it all). */
    bool (*has)(void *user, sdw_comfy_folder f, const char *name);
} sdw_comfy_catalog;

/* GET /object_info (node NULL: every node) or /object_info/{node} (an
 * unknown node: an empty object, as ComfyUI answers). */
cJSON *sdw_comfy_object_info(const sdw_comfy_catalog *cat, const char *node);

/* ---------------------------------------------------------------- graphs */

typedef struct {
    bool present;
    bool is_link;
    int link_node;            /* index into graph.nodes */
    int link_slot;            /* the output index */
    double num;               /* INT, FLOAT, BOOLEAN (0 / 1) */
    char *str;                /* STRING, COMBO */
} sdw_comfy_value;

typedef struct {
    char *id;                 /* the node's key in the prompt ("3") */
    const sdw_comfy_node_spec *spec;
    sdw_comfy_value in[SDW_COMFY_MAX_INPUTS];   /* by the spec's input index; defaults filled in */
} sdw_comfy_node;

typedef struct {
    sdw_comfy_node *nodes;
    int n_nodes;
    int *order;               /* the nodes to run, every one after its inputs (outputs' ancestors only) */
    int n_order;
    int *outputs;             /* the output nodes, in id order */
    int n_outputs;
    /* ComfyUI's "node_errors" for output nodes that failed validation while
     * others passed (they are left out of outputs, as ComfyUI runs only the
     * good ones); an empty object when none. Owned by the graph. */
    cJSON *node_errors;
} sdw_comfy_graph;

/* Parses and validates a prompt (the "prompt" object of POST /prompt) as
 * ComfyUI's validate_prompt does: every class known, required inputs given,
 * links to existing nodes and outputs of the right type, numbers within
 * min / max, combo values in their lists (folders through cat), no cycles,
 * at least one output node. On failure returns SDW_ERR_INVALID_ARG (or
 * SDW_ERR_NOMEM) with *error_body (when error_body is not NULL) ComfyUI's 400
 * answer: {"error": {"type", "message", "details", "extra_info"},
 * "node_errors": {id: {"errors": [...], "dependent_outputs": [...],
 * "class_type"}}}; and sdw_last_error() a one-line summary naming the node. */
sdw_status sdw_comfy_graph_parse(const cJSON *prompt, const sdw_comfy_catalog *cat, sdw_comfy_graph **out,
                                 cJSON **error_body);
void sdw_comfy_graph_free(sdw_comfy_graph *g);

/* ---------------------------------------------------------------- the executor */

/* The model a sampler or a VAE node needs: a checkpoint, or ComfyUI's split
 * files (UNETLoader + CLIPLoader / DualCLIPLoader / TripleCLIPLoader +
 * VAELoader), as paths ("" = from the checkpoint / the diffusion model
 * file), with the LoRA set the MODEL and CLIP chains carry. */
typedef struct {
    char path[4096];          /* the checkpoint or diffusion model file */
    char clip_l[4096], clip_g[4096], t5[4096], vae[4096];
    sdw_weight_type weight_type;   /* UNETLoader's weight_dtype (fp8 -> keep) */
    sdw_lora_spec loras[SDW_MAX_LORAS];
    int n_loras;
    /* ModelSamplingSD3 (shift) / ModelSamplingFlux (the shift mu it computes) on
     * the MODEL chain: the sampler's model sampling (pipeline.h comfy_sampling_*);
     * not part of which model to load */
    bool sampling_sd3, sampling_flux;
    double sampling_shift;
} sdw_comfy_model_spec;

/* One image written by SaveImage / PreviewImage, as /view finds it again. */
typedef struct {
    char filename[256];
    char subfolder[256];
    char type[16];            /* "output" or "temp" */
} sdw_comfy_file;

typedef struct {
    void *user;
    /* Makes the model spec names current (loading, switching, applying its
     * LoRA set) and returns it; valid until the next call. */
    sdw_status (*model)(void *user, const sdw_comfy_model_spec *spec, sdw_model **out);
    /* A name from a folder (a validated COMBO value) to its path. */
    sdw_status (*resolve)(void *user, sdw_comfy_folder f, const char *name, char *path, size_t n);
    /* A ControlNet by path, loaded for the base model m (kept for the run). */
    sdw_status (*controlnet)(void *user, const char *path, sdw_model *m, const struct sdw_controlnet **out);
    /* Before each node runs; non-OK stops the run (interrupted). */
    sdw_status (*executing)(void *user, const char *node_id);
    /* During a sampler node: step of total; preview (may be NULL) RGB [ph, pw, 3] in [0, 1].
     * Non-OK stops the run (interrupted). */
    sdw_status (*progress)(void *user, const char *node_id, int step, int total, const float *preview, int pw,
                           int ph);
    /* Writes an 8-bit image (PNG with the workflow in its text chunks, as
     * ComfyUI does: "prompt" and, if given, "workflow") under prefix
     * ("ComfyUI", "sub/name"), to output (temp false) or temp. */
    sdw_status (*save_image)(void *user, const sdw_image *img, const char *prefix, bool temp, sdw_comfy_file *out);
    /* An output node finished: output is ComfyUI's {"images": [{"filename",
     * "subfolder", "type"}, ...]} (taken). */
    void (*executed)(void *user, const char *node_id, cJSON *output);
} sdw_comfy_env;

/* Runs the graph: every node in g->order, once. SDW_ERR_CANCELLED when a
 * callback stopped it. On failure, *failed_node (if not NULL) is the index
 * of the node that failed (-1 when none), and sdw_last_error() says why. */
sdw_status sdw_comfy_run(const sdw_comfy_graph *g, const sdw_comfy_env *env, int *failed_node);
#endif
