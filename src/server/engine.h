/* engine.h: the job engine behind every HTTP dialect: a bounded FIFO queue
 * of jobs, the one generation thread that owns the model and runs them, the
 * job records with their event logs (what SSE streams replay), and the
 * metrics. engine.c says who owns what. With a fleet (cfg.fleet.redis_url)
 * the queue, the events and the results live in Redis instead, shared by
 * every process on it (fleet.h); the calls below stay the same. */
#ifndef SDW_SERVER_ENGINE_H
#define SDW_SERVER_ENGINE_H
#include "models/lora.h"
#include "server/job_request.h"
#include "server/metrics.h"
#include <sys/types.h>

typedef struct sdw_engine sdw_engine;
typedef struct sdw_job sdw_job;

/* What a process does in a fleet: both (answers HTTP and generates), a
 * front (answers HTTP, loads no model) or a worker (generates, no HTTP). */
typedef enum { SDW_ROLE_BOTH, SDW_ROLE_FRONT, SDW_ROLE_WORKER } sdw_fleet_role;
typedef struct {
    const char *redis_url;    /* redis://[user:pass@]host:port[/db]; NULL = no fleet: one process, one queue */
    const char *prefix;       /* of every key; default "sdw:" */
    sdw_fleet_role role;
    double claim_after_s;     /* a running job whose worker has not heartbeaten this long is claimed by another */
    int max_attempts;         /* runs lost to dead workers before a job fails */
    const char *worker_id;    /* NULL = host-pid-random */
} sdw_fleet_config;

typedef struct {
    const char *model_path;   /* loaded when the engine starts */
    const char *models_dir;   /* checkpoints jobs may switch to; NULL = no switching */
    const char *lora_dir;     /* LoRA names resolve inside it; NULL = LoRA refused */
    const char *controlnet_dir;   /* ControlNet names resolve inside it; NULL = ControlNets refused */
    size_t cn_cache_bytes;    /* ControlNet weights kept across jobs (controlnet_cache.h); 0 = the default */
    /* ComfyUI's folders (engine_comfy.c): SaveImage's files, uploads, PreviewImage's files;
     * NULL = "output", "input", "temp" in the working directory, as ComfyUI has them. */
    const char *output_dir, *input_dir, *temp_dir;
    int queue_max;            /* queued jobs (the running one not counted) */
    double result_ttl_s;      /* finished jobs are kept this long, or until read */
    int step_delay_ms;        /* testing: a pause after every step */
    int threads;              /* OpenMP threads of the generation thread; 0 = all cores */
    sdw_load_params load;
    sdw_request_limits limits;   /* a fleet worker parses each job's request again within them */
    sdw_fleet_config fleet;
} sdw_engine_config;

typedef enum { SDW_ENGINE_LOADING, SDW_ENGINE_READY, SDW_ENGINE_FAILED, SDW_ENGINE_STOPPING } sdw_engine_state;
typedef enum { SDW_JOB_QUEUED, SDW_JOB_RUNNING, SDW_JOB_COMPLETED, SDW_JOB_FAILED, SDW_JOB_CANCELLED } sdw_job_state;
const char *sdw_job_state_name(sdw_job_state s);

/* Starts the generation thread, which loads cfg->model_path first. */
sdw_status sdw_engine_start(const sdw_engine_config *cfg, sdw_engine **out);
/* Stops taking jobs and cancels the queued ones ("shutting down"); the
 * running job goes on. */
void sdw_engine_begin_drain(sdw_engine *e);
/* Waits up to timeout_s for the running job to end; then cancels it and
 * waits for it to stop at its next step. */
void sdw_engine_drain(sdw_engine *e, double timeout_s);
/* Joins the generation thread and frees everything: call once no HTTP
 * thread can reach the engine any more. */
void sdw_engine_free(sdw_engine *e);

/* err (may be NULL) receives the load error in SDW_ENGINE_FAILED. */
sdw_engine_state sdw_engine_get_state(sdw_engine *e, char *err, size_t n);
sdw_metrics *sdw_engine_metrics(sdw_engine *e);
const sdw_engine_config *sdw_engine_get_config(const sdw_engine *e);

/* What HTTP threads may know about the loaded model (a copy). */
typedef struct {
    sdw_model_info info;
    char path[4096];
    char title[512];          /* A1111's "name [hash10]" */
    char name[256];           /* the file or folder name (relative to --models-dir when inside it) */
    char model_name[256];     /* A1111's: name without extension, '/' -> '_' */
    char hash10[16];          /* "" for a folder */
    int size_multiple;        /* width and height must be multiples of it */
} sdw_engine_model;
/* false while no model is loaded. */
bool sdw_engine_model_get(sdw_engine *e, sdw_engine_model *out);

typedef enum {
    SDW_SUBMIT_OK,
    SDW_SUBMIT_INVALID,       /* 400: *err says why (a model or LoRA name, a size for this model) */
    SDW_SUBMIT_FULL,          /* 429 */
    SDW_SUBMIT_LOADING,       /* 503 */
    SDW_SUBMIT_STOPPING,      /* 503 */
    SDW_SUBMIT_UNAVAILABLE,   /* 503: the fleet's Redis is unreachable */
} sdw_submit_result;
/* Queues a job. req is taken in every case (emptied). On success *job (if
 * not NULL) holds a reference: sdw_job_release it. */
sdw_submit_result sdw_engine_submit(sdw_engine *e, sdw_job_request *req, sdw_job **job, char *err, size_t n);
/* The request as received, which a fleet queues (a worker parses it again). */
typedef struct {
    const char *path;         /* the route: "/v1/jobs", "/sdapi/v1/txt2img", ... */
    const char *content_type; /* NULL = none */
    const char *body;
    size_t len;
} sdw_job_source;
/* sdw_engine_submit with the request as received: what every route uses. */
sdw_submit_result sdw_engine_submit_from(sdw_engine *e, sdw_job_request *req, const sdw_job_source *src, sdw_job **job,
                                         char *err, size_t n);

/* A reference to a known job, or NULL. */
sdw_job *sdw_engine_find(sdw_engine *e, const char *id);
void sdw_job_release(sdw_engine *e, sdw_job *j);
const char *sdw_job_id(const sdw_job *j);
const sdw_job_request *sdw_job_get_request(const sdw_job *j);
sdw_job_state sdw_engine_job_state(sdw_engine *e, sdw_job *j);
/* Blocks until the job reaches a final state; returns it. */
sdw_job_state sdw_engine_wait(sdw_engine *e, sdw_job *j);
/* Drops the job from the table now (its result was handed over); the memory
 * goes with the last reference. */
void sdw_engine_forget(sdw_engine *e, sdw_job *j);

/* Cancels a queued job at once, a running one at its next step. Returns
 * false for an unknown id; *state gets the state before the call. */
bool sdw_engine_cancel(sdw_engine *e, const char *id, sdw_job_state *state);
/* A1111's interrupt: cancels the running job, if any. */
bool sdw_engine_interrupt(sdw_engine *e);

/* A finished job's results, valid while a reference is held and the job is
 * final (nothing changes it any more). */
typedef struct {
    int n_images;
    uint8_t **bytes;          /* encoded in format */
    size_t *len;
    uint64_t *seeds;
    char **infotexts;
    sdw_image_format format;
    int width, height, steps; /* as run, defaults filled in */
    float cfg, strength;
    float guidance;           /* FLUX dev's distilled guidance as run; 0 = none */
    const char *sampler, *schedule;  /* A1111 names */
    const char *error;        /* failed or cancelled: the message */
    const char *error_code;
    double seconds;           /* generation time */
    int n_loras;              /* the LoRAs merged for the job, with keys applied / in file */
    sdw_lora_report loras[SDW_REQ_MAX_LORAS];
} sdw_job_result;
const sdw_job_result *sdw_job_get_result(const sdw_job *j);

/* GET /v1/jobs/{id}: status, progress, and the result once completed
 * (marking it read). Returns malloc'd JSON, NULL for an unknown id. */
char *sdw_engine_job_json(sdw_engine *e, const char *id);

/* A1111's GET /sdapi/v1/progress, as malloc'd JSON. */
char *sdw_engine_a1111_progress(sdw_engine *e);
/* GET /metrics: the counters with the engine's gauges, malloc'd text. */
char *sdw_engine_metrics_text(sdw_engine *e);
/* GET /v1/workers: the fleet's workers (this process alone without one). */
char *sdw_engine_workers_json(sdw_engine *e);
/* false while the fleet's Redis is unreachable (err says why); true
 * without a fleet. */
bool sdw_engine_queue_ok(sdw_engine *e, char *err, size_t n);
/* This process's worker id in the fleet; NULL without one. */
const char *sdw_engine_worker_id(const sdw_engine *e);

/* ---- SSE: one cursor per client over a job's event log ---- */
typedef struct sdw_stream sdw_stream;
/* NULL for an unknown id. Events with an id <= last_event_id are skipped
 * (a client reconnecting with Last-Event-ID). */
sdw_stream *sdw_engine_stream_open(sdw_engine *e, const char *id, long long last_event_id, int keepalive_s);
/* Blocks until there is something to send: event bytes, or a keep-alive
 * comment after keepalive_s of silence. Returns the bytes written to buf (at
 * most max), or -1 once the final `done` event was sent or the engine is
 * gone. */
ssize_t sdw_stream_read(sdw_stream *s, char *buf, size_t max);
void sdw_stream_close(sdw_stream *s);
#endif
