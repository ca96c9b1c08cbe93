/* engine_internal.h: the engine's and the jobs' records, shared by the files
 * that make up the engine: engine.c (queue, thread, lifetimes), job_events.c
 * (event logs and SSE cursors) and engine_run.c (running one job). Nothing
 * outside them includes this. Ownership is described at the top of engine.c. */
#ifndef SDW_SERVER_ENGINE_INTERNAL_H
#define SDW_SERVER_ENGINE_INTERNAL_H
#include "server/engine.h"
#include "server/model_catalog.h"
#include <pthread.h>

typedef struct {
    long long id;
    char *text;               /* the whole SSE frame: "id: ..\nevent: ..\ndata: ..\n\n" */
    size_t len;
    char name[24];            /* the event's name, and where its JSON is in text (a fleet republishes them) */
    size_t data_off, data_len;
} sdw_event;

struct sdw_job {
    char id[40];
    int refs;                 /* the table's one plus each holder's */
    bool in_table;
    sdw_job_request req;      /* written before queuing, then read only by the generation thread */
    char *model_path;         /* a --models-dir checkpoint to switch to first, or NULL */
    char **lora_paths;        /* req.loras resolved inside --lora-dir */
    int n_lora_paths;
    sdw_job_state state;
    bool cancel;              /* asked to stop at the next step */
    char cancel_reason[96];
    int step, total;          /* over the whole job (n_iter runs) */
    double eta_s;
    sdw_event *events;
    int n_events, cap_events;
    long long next_event_id;
    char *preview_b64;        /* the latest preview PNG (A1111's current_image) */
    sdw_job_result result;    /* filled by the generation thread, read once final */
    char *error;
    double t_created, t_started, t_finished, expires;
    sdw_job *prev, *next;     /* the table, in submission order */
    sdw_job *qnext;           /* the queue */
    struct fleet_job *fleet;  /* a fleet's job: a worker's run of it, or a front's view (fleet.h); NULL in one process */
};

struct sdw_engine {
    sdw_engine_config cfg;    /* strings owned (copied) */
    pthread_mutex_t mu;       /* guards everything below but `model` */
    pthread_cond_t work;      /* the generation thread waits on it for jobs */
    pthread_cond_t changed;   /* broadcast on every job event and state change */
    pthread_t thread;
    bool thread_started;
    sdw_engine_state state;
    char load_error[512];
    bool quit;                /* the generation thread exits when idle */
    bool drain_cancel;        /* drain timed out: stop the running job */
    sdw_job *head, *tail;     /* every job record kept */
    int n_jobs;
    sdw_job *q_head, *q_tail; /* the FIFO queue */
    int q_len;
    sdw_job *running;
    bool has_model;
    sdw_engine_model current; /* what HTTP threads may read about the model */
    sdw_metrics *metrics;
    sdw_model *model;         /* the generation thread's alone */
    struct sdw_fleet *fleet;  /* the fleet on Redis, NULL without --redis (fleet.h) */
    struct sdw_cn_cache *cn_cache;   /* ControlNets on the model's backend: the generation thread's alone */
    struct engine_comfy *comfy;      /* ComfyUI's WebSocket clients, history and loaded parts (engine_comfy.c) */
};

double sdw_now(void);         /* monotonic seconds */

/* Called with e->mu held. */
void job_emit_locked(sdw_engine *e, sdw_job *j, const char *event, char *json /* taken */);
void job_finish_locked(sdw_engine *e, sdw_job *j, sdw_job_state state, const char *code, const char *message);
void job_free(sdw_job *j);

/* Called without the lock. */
void job_emit(sdw_engine *e, sdw_job *j, const char *event, char *json /* taken */);

/* engine.c, for the fleet's files: a new job id (a UUID); whether a name
 * (title, file name, model name, hash) is the model's; the file-system part
 * of a submission (model and LoRA names to paths, checked against the
 * loaded model), run on a fleet worker when it takes the job. */
void engine_new_id(char out[40]);
bool engine_names_model(const sdw_engine_model *m, const char *name);
sdw_submit_result engine_resolve_job(sdw_engine *e, sdw_job *j, char *err, size_t n);

/* The generation thread: loads the model at start (with e->cfg.load, or
 * with lp: a ComfyUI workflow's own VAE and text encoder files), and runs
 * one job. */
sdw_status engine_load_model(sdw_engine *e, const char *path);
sdw_status engine_load_model_with(sdw_engine *e, const char *path, const sdw_load_params *lp);
void engine_run_job(sdw_engine *e, sdw_job *j);
/* engine_run.c, ControlNets: at submission (an HTTP thread), the units'
 * names to files in --controlnet-dir, checked against the loaded model
 * (cur, NULL when none); and the cache's end with the generation thread. */
sdw_submit_result engine_resolve_controls(sdw_engine *e, sdw_job *j, const sdw_engine_model *cur, char *err, size_t n);
void engine_controls_free(sdw_engine *e);
/* engine.c: cancels j only while it waits in the queue (ComfyUI's POST
 * /queue delete leaves a running prompt alone); e->mu held. */
bool engine_cancel_if_queued_locked(sdw_engine *e, sdw_job *j);
/* engine_comfy.c: its state, made with the engine, and a ComfyUI prompt's run. */
sdw_status engine_comfy_new(sdw_engine *e);
void engine_comfy_free(sdw_engine *e);
void engine_comfy_run(sdw_engine *e, sdw_job *j);
#endif
