/* job_request.h: one image job as the server's three API dialects describe it,
 * after parsing and checking, before the engine runs it.
 *
 * The parsers (request_native.c, request_a1111.c, request_openai.c) are pure
 * functions from a request body to this struct: no HTTP, no model, no file
 * system, so they can be fuzzed on their own. They check every field against
 * the limits the HTTP edge enforces (the pipeline never sees a value outside
 * them) and decode the images they carry; what depends on the loaded model
 * (its default size, steps, guidance, sampler) is left at "default" (0, NAN,
 * false) and filled in by the generation thread; so is whether a width or
 * height is a multiple of what the model needs (16 for FLUX, 64 for SD1).
 *
 * Failures go through sdw_fail with a message that starts with the field's
 * name ("steps: must be an integer in 1..150 (got 0)"), read back with
 * sdw_last_error(). The status tells the edge what to answer: SDW_ERR_NOMEM
 * means something was too large (413), anything else is a bad request (400). */
#ifndef SDW_SERVER_JOB_REQUEST_H
#define SDW_SERVER_JOB_REQUEST_H
#include "sdw.h"
#include "io/image.h"
#include "io/preprocess.h"
#include "pipeline/pipeline.h"
#include "sampling/sampler.h"
#include "comfy/comfy.h"

/* Limits of the HTTP edge (the CLI's options set the configurable ones). */
#define SDW_REQ_MIN_SIZE 64
#define SDW_REQ_MAX_SIZE 2048
#define SDW_REQ_MAX_STEPS 150
#define SDW_REQ_MAX_GUIDANCE 30.0
#define SDW_REQ_MAX_BATCH 8
#define SDW_REQ_MAX_LORAS 16
#define SDW_REQ_MAX_NAME 256            /* model, LoRA and ControlNet names */
#define SDW_REQ_MAX_CONTROLS SDW_MAX_CONTROLS
#define SDW_REQ_MAX_CONTROL_WEIGHT 2.0  /* sd-webui-controlnet's range for a unit's weight: 0..2 */
#define SDW_REQ_MIN_PROCESSOR_RES 64
#define SDW_REQ_MAX_PROCESSOR_RES 2048
#define SDW_REQ_A1111_PROCESSOR_RES 512 /* sd-webui-controlnet's default preprocessor resolution */
#define SDW_REQ_MAX_SEED 9007199254740991LL  /* 2^53 - 1: exact in a JSON number */
#define SDW_REQ_DEFAULT_MAX_PROMPT 10000 /* bytes, prompt and negative prompt each */
#define SDW_REQ_DEFAULT_MAX_PIXELS ((int64_t)2048 * 2048)

typedef struct {
    int64_t max_pixels;       /* output width * height, and each decoded input image */
    size_t max_prompt;        /* bytes */
    size_t max_image_bytes;   /* an input image once base64-decoded */
} sdw_request_limits;
sdw_request_limits sdw_request_limits_default(void);

typedef enum {
    SDW_JOB_TXT2IMG,
    SDW_JOB_IMG2IMG,
    SDW_JOB_INPAINT,
    SDW_JOB_LOAD_MODEL,       /* A1111's POST /sdapi/v1/options with sd_model_checkpoint */
    SDW_JOB_COMFY,            /* a ComfyUI workflow (POST /prompt): req.comfy; the engine runs it in engine_comfy.c */
} sdw_job_kind;
/* "image_generation", "image_transform", "image_inpaint", "load_model", "comfy_prompt". */
const char *sdw_job_kind_name(sdw_job_kind k);

typedef enum { SDW_DIALECT_NATIVE, SDW_DIALECT_A1111, SDW_DIALECT_OPENAI, SDW_DIALECT_COMFY } sdw_dialect;

/* A ComfyUI prompt as POST /prompt queued it (routes_comfy.c): the checked
 * graph and what ComfyUI's queue and history show of it. The job's id is
 * the prompt_id. */
typedef struct {
    sdw_comfy_graph *graph;   /* parsed and validated (comfy.h) */
    cJSON *prompt;            /* the "prompt" object as received */
    cJSON *extra_data;        /* "extra_data" with "client_id" put in, as ComfyUI keeps it */
    char client_id[128];      /* whose WebSocket gets the prompt's messages; "" = nobody's */
    double number;            /* ComfyUI's queue number (negative with "front") */
} sdw_job_comfy;

typedef struct {
    char *name;               /* as the request wrote it; resolved inside --lora-dir later */
    float te_strength, unet_strength;
} sdw_job_lora;

/* One ControlNet unit as a request describes it (request_common.c checks
 * it): which file, the control image and how it becomes the map the net
 * sees (preprocessor, its resolution, the fit to the generation size), and
 * how strongly and when the net steers. */
typedef struct {
    char *model;              /* as the request wrote it (A1111's " [hash]" suffix allowed); a name inside --controlnet-dir */
    sdw_preprocessor pre;     /* thresholds filled in (the module's defaults when not given) */
    int processor_res;        /* the image's shorter side is scaled to this before the preprocessor; 0 = as it is */
    bool pixel_perfect;       /* processor_res from the generation size instead (A1111's "Pixel Perfect") */
    sdw_fit_mode resize_mode; /* the map to the generation size (default Crop and Resize) */
    float scale, start, end;  /* weight in 0..2; the active part of the steps, 0 <= start <= end <= 1 */
    sdw_control_mode mode;
    sdw_image image;          /* decoded; w == 0: the job's init image (img2img and inpaint only) */
    char field[48];           /* the unit as the request named it ("controlnets[0]"), for messages */
    /* Filled by the engine when the job is submitted: */
    char *path;               /* the file or diffusers folder the name resolved to */
    char *title;              /* sd-webui-controlnet's "stem [hash]" (the stem alone for a folder) */
    char *stem;               /* the file's name without extension */
    char hash[16];            /* A1111's short model hash, "" for a folder */
} sdw_job_control;

typedef struct {
    sdw_job_kind kind;
    sdw_dialect dialect;
    char *prompt;             /* never NULL once parsed */
    char *negative_prompt;    /* NULL = none */
    int width, height;        /* 0 = default: the init image's size, else the model's */
    int steps;                /* 0 = the model's default */
    float cfg;                /* NAN = the model's default */
    float guidance;           /* FLUX dev's distilled guidance, apart from cfg; NAN = the model's default */
    /* SD3.5 skip-layer guidance (pipeline.h): the blocks left out, n_slg 0 = off; scale, start and end
     * default to diffusers' SD3.5-medium example (2.8, 0.01, 0.2). */
    int slg_layers[SDW_MAX_SLG_LAYERS];
    int n_slg;
    float slg_scale, slg_start, slg_end;
    int64_t seed;             /* -1 = random */
    bool has_sampler, has_schedule;
    sdw_sampler_kind sampler;
    sdw_schedule_kind schedule;
    sdw_rng_kind rng;
    float strength;           /* img2img / inpaint, in (0, 1] */
    int clip_skip;            /* 0 = the family's default */
    int batch_size, n_iter;   /* images per run, runs (seed + i each) */
    int preview_every;        /* steps between previews; 0 = none */
    sdw_image init;           /* decoded, any channel count; w == 0 when absent */
    sdw_image mask;           /* same size as init; w == 0 when absent */
    sdw_mask_source mask_source;
    bool mask_invert;
    sdw_job_lora *loras;      /* from the request's fields and then its prompt's <lora:...> tags */
    int n_loras;
    char *model;              /* a checkpoint name (--models-dir), NULL = the current one */
    sdw_job_control *controls;   /* ControlNet units, in order (A1111's "ControlNet 0", "ControlNet 1", ...) */
    int n_controls;
    bool control_guess;       /* diffusers' guess mode for every unit (pipeline.h) */
    sdw_image_format output_format;   /* PNG unless OpenAI's output_format says otherwise */
    bool response_url;        /* OpenAI response_format "url" */
    sdw_job_comfy comfy;      /* SDW_JOB_COMFY only */
} sdw_job_request;

void sdw_job_request_init(sdw_job_request *r);
void sdw_job_request_free(sdw_job_request *r);

/* The parsers. Each fills *out (initialised by the call; free it with
 * sdw_job_request_free on success and on failure). body need not be
 * NUL-terminated. */
sdw_status sdw_parse_native_request(const char *body, size_t n, const sdw_request_limits *lim,
                                    sdw_job_request *out);
/* img2img = false for /sdapi/v1/txt2img, true for /sdapi/v1/img2img. */
sdw_status sdw_parse_a1111_request(const char *body, size_t n, bool img2img, const sdw_request_limits *lim,
                                   sdw_job_request *out);
/* The checkpoint named by POST /sdapi/v1/options ({"sd_model_checkpoint": ...});
 * *name is malloc'd, NULL when the body sets no checkpoint. */
sdw_status sdw_parse_a1111_options(const char *body, size_t n, char **name);
sdw_status sdw_parse_openai_generation(const char *body, size_t n, const sdw_request_limits *lim,
                                       sdw_job_request *out);
/* POST /controlnet/detect (sd-webui-controlnet): a preprocessor run on
 * images. processor_res 0 = each image's own size. */
typedef struct {
    sdw_preprocessor pre;
    int processor_res;
    sdw_image *images;
    int n_images;
} sdw_detect_request;
#define SDW_REQ_MAX_DETECT_IMAGES 16
sdw_status sdw_parse_a1111_detect(const char *body, size_t n, const sdw_request_limits *lim, sdw_detect_request *out);
void sdw_detect_request_free(sdw_detect_request *d);
struct sdw_multipart;
sdw_status sdw_parse_openai_edit(const struct sdw_multipart *form, const sdw_request_limits *lim,
                                 sdw_job_request *out);
#endif
