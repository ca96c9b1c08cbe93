/* engine.c: the job engine: who owns what, the queue, the generation thread
 * and the lifetime of job records.
 *
 * Ownership:
 * - The generation thread (gen_thread below, and engine_run.c) is the only
 *   owner of the model: it loads it, switches it, applies LoRAs to it, runs
 *   the pipeline on it and frees it. No other thread ever touches e->model.
 * - HTTP threads touch only the queue and the job records, always under the
 *   one mutex e->mu. They wait on two condition variables: `work` (the
 *   generation thread sleeps on it until a job is queued) and `changed`
 *   (broadcast on every job event and state change: SSE streams, synchronous
 *   A1111 / OpenAI calls and the drain wait on it).
 * - What HTTP threads need to know about the model (defaults, size multiple,
 *   names) is a copy, e->current, updated under the mutex after each load.
 * - A job's request is written once before it is queued and then read only by
 *   the generation thread; its result is written by the generation thread
 *   before the job turns final, and only read after that.
 * - Job records are reference counted (under the mutex): the table holds one
 *   reference, every SSE client and waiting request one more. A record leaves
 *   the table when its result TTL ends, or soon after its result was read;
 *   the memory goes with the last reference.
 *
 * A job's life: queued -> running -> completed | failed | cancelled, or
 * queued -> cancelled. Every accepted job reaches exactly one final state:
 * job_finish_locked is the only place a state turns final, and it refuses a
 * job that already is.
 *
 * With a fleet (e->fleet, fleet.h) the queue, the records and the events
 * live in Redis: the calls below hand over to fleet_*.c, the generation
 * thread takes its jobs from Redis (fleet_worker_run) and runs each as a
 * local record no other thread sees, and a front (role front) has no
 * generation thread at all. */
#include "server/engine_internal.h"
#include "server/fleet.h"
#include "server/server_log.h"
#include "core/error.h"
#include "io/base64.h"
#include "models/lora.h"
#include <cjson/cJSON.h>
#include <malloc.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* After its result was read, a job stays this long for other readers. */
#define READ_GRACE_S 10.0

double sdw_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

const char *sdw_job_state_name(sdw_job_state s)
{
    switch (s) {
    case SDW_JOB_QUEUED: return "queued";
    case SDW_JOB_RUNNING: return "running";
    case SDW_JOB_COMPLETED: return "completed";
    case SDW_JOB_FAILED: return "failed";
    case SDW_JOB_CANCELLED: return "cancelled";
    }
    return "unknown";
}

static bool is_final(sdw_job_state s)
{
    return s == SDW_JOB_COMPLETED || s == SDW_JOB_FAILED || s == SDW_JOB_CANCELLED;
}

/* A random version-4 UUID. */
void engine_new_id(char out[40])
{
    uint8_t b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        uint64_t t = (uint64_t)(sdw_now() * 1e9) ^ (uint64_t)(uintptr_t)out;
        for (int i = 0; i < 16; i++) b[i] = (uint8_t)(t >> (i % 8 * 8)) ^ (uint8_t)(i * 37);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
             b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* ---------------------------------------------------------------- records */

void job_free(sdw_job *j)
{
    sdw_job_request_free(&j->req);
    free(j->model_path);
    for (int i = 0; i < j->n_lora_paths; i++) free(j->lora_paths[i]);
    free(j->lora_paths);
    for (int i = 0; i < j->n_events; i++) free(j->events[i].text);
    free(j->events);
    free(j->preview_b64);
    sdw_job_result *r = &j->result;
    for (int i = 0; i < r->n_images; i++) {
        free(r->bytes[i]);
        free(r->infotexts[i]);
    }
    free(r->bytes);
    free(r->len);
    free(r->seeds);
    free(r->infotexts);
    free(j->error);
    free(j->fleet);
    free(j);
}

static void release_locked(sdw_job *j)
{
    if (--j->refs == 0) job_free(j);
}

static void unlink_locked(sdw_engine *e, sdw_job *j)
{
    if (!j->in_table) return;
    if (j->prev) j->prev->next = j->next;
    else e->head = j->next;
    if (j->next) j->next->prev = j->prev;
    else e->tail = j->prev;
    j->prev = j->next = NULL;
    j->in_table = false;
    e->n_jobs--;
    release_locked(j);
}

/* Drops the finished jobs whose time is up. */
/* Drops expired records; returns how many. */
static int sweep_locked(sdw_engine *e)
{
    double now = sdw_now();
    int n = 0;
    for (sdw_job *j = e->head, *next; j; j = next) {
        next = j->next;
        if (is_final(j->state) && j->expires <= now) {
            unlink_locked(e, j);
            n++;
        }
    }
    return n;
}

/* Gives freed memory back to the system while the worker is idle: results
 * and request bodies are freed by many threads (one per connection), and
 * glibc keeps what each thread's arena held, so RSS would ratchet up with
 * load. Called without the mutex. */
static void trim_idle(void) { malloc_trim(0); }

static sdw_job *find_locked(sdw_engine *e, const char *id)
{
    for (sdw_job *j = e->head; j; j = j->next)
        if (!strcmp(j->id, id)) return j;
    return NULL;
}

static void queue_remove_locked(sdw_engine *e, sdw_job *j)
{
    sdw_job **pp = &e->q_head, *prev = NULL;
    while (*pp && *pp != j) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (!*pp) return;
    *pp = j->qnext;
    if (e->q_tail == j) e->q_tail = prev;
    j->qnext = NULL;
    e->q_len--;
}

static char *error_json(const char *code, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "error");
    cJSON_AddStringToObject(o, "message", message);
    cJSON_AddStringToObject(o, "code", code);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

void job_finish_locked(sdw_engine *e, sdw_job *j, sdw_job_state state, const char *code, const char *message)
{
    if (is_final(j->state)) return;
    double now = sdw_now();
    j->state = state;
    j->t_finished = now;
    j->expires = now + e->cfg.result_ttl_s;
    if (state != SDW_JOB_COMPLETED) {
        free(j->error);
        j->error = strdup(message ? message : "");
        j->result.error = j->error;
        j->result.error_code = code;
        job_emit_locked(e, j, "error", error_json(code, message ? message : ""));
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "done");
    cJSON_AddStringToObject(o, "status", sdw_job_state_name(state));
    job_emit_locked(e, j, "done", cJSON_PrintUnformatted(o));
    cJSON_Delete(o);
    /* A fleet's job is final once Redis says so (fleet_worker.c logs it). */
    if (j->fleet) {
        pthread_cond_broadcast(&e->changed);
        return;
    }
    sdw_metrics_job_final(e->metrics, state == SDW_JOB_COMPLETED ? SDW_FINAL_COMPLETED
                                      : state == SDW_JOB_FAILED  ? SDW_FINAL_FAILED
                                                                 : SDW_FINAL_CANCELLED);
    if (state == SDW_JOB_COMPLETED)
        sdw_srv_log("job %s completed in %.2f s", j->id, now - j->t_started);
    else
        sdw_srv_log("job %s %s: %s", j->id, sdw_job_state_name(state), message ? message : "");
    pthread_cond_broadcast(&e->changed);
}

/* ---------------------------------------------------------------- the generation thread */

static void *gen_thread(void *arg)
{
    sdw_engine *e = arg;
    /* OpenMP's thread count is per thread: set it where the pipeline runs. */
    if (e->cfg.threads > 0) omp_set_num_threads(e->cfg.threads);
    sdw_status s = engine_load_model(e, e->cfg.model_path);
    pthread_mutex_lock(&e->mu);
    if (s != SDW_OK) {
        e->state = SDW_ENGINE_FAILED;
        snprintf(e->load_error, sizeof e->load_error, "%s", sdw_last_error());
        sdw_srv_log("model load failed: %s", e->load_error);
    } else if (e->state == SDW_ENGINE_LOADING) {
        e->state = SDW_ENGINE_READY;
        sdw_srv_log("ready: %s (%s)", e->current.title, sdw_family_name(e->current.info.family));
    }
    pthread_cond_broadcast(&e->changed);
    if (e->fleet && e->state == SDW_ENGINE_READY) {
        pthread_mutex_unlock(&e->mu);
        fleet_worker_run(e->fleet);
        pthread_mutex_lock(&e->mu);
    }
    /* Without a fleet, the queue; with one, it stays empty until quit. */
    for (;;) {
        while (!e->q_head && !e->quit) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&e->work, &e->mu, &ts);
            if (sweep_locked(e) > 0 && !e->q_head) {
                pthread_mutex_unlock(&e->mu);
                trim_idle();
                pthread_mutex_lock(&e->mu);
            }
        }
        if (!e->q_head) break;
        sdw_job *j = e->q_head;
        e->q_head = j->qnext;
        if (!e->q_head) e->q_tail = NULL;
        j->qnext = NULL;
        e->q_len--;
        j->state = SDW_JOB_RUNNING;
        j->t_started = sdw_now();
        j->refs++;
        e->running = j;
        sdw_srv_log("job %s running (%s, waited %.2f s)", j->id, sdw_job_kind_name(j->req.kind),
                    j->t_started - j->t_created);
        pthread_cond_broadcast(&e->changed);
        pthread_mutex_unlock(&e->mu);
        engine_run_job(e, j);
        pthread_mutex_lock(&e->mu);
        /* engine_run_job always finishes the job; this is the safety net. */
        job_finish_locked(e, j, SDW_JOB_FAILED, "internal", "the job ended without a result");
        e->running = NULL;
        release_locked(j);
        sweep_locked(e);
        pthread_cond_broadcast(&e->changed);
        if (!e->q_head) {
            pthread_mutex_unlock(&e->mu);
            trim_idle();
            pthread_mutex_lock(&e->mu);
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (e->model) sdw_model_set_loras(e->model, NULL, 0, NULL);
    engine_controls_free(e);
    sdw_model_free(e->model);
    e->model = NULL;
    return NULL;
}

/* ---------------------------------------------------------------- lifecycle */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

sdw_status sdw_engine_start(const sdw_engine_config *cfg, sdw_engine **out)
{
    *out = NULL;
    sdw_engine *e = calloc(1, sizeof *e);
    if (!e) return sdw_fail(SDW_ERR_NOMEM, "engine: out of memory");
    e->cfg = *cfg;
    e->cfg.model_path = dup_or_null(cfg->model_path);
    e->cfg.models_dir = dup_or_null(cfg->models_dir);
    e->cfg.lora_dir = dup_or_null(cfg->lora_dir);
    e->cfg.controlnet_dir = dup_or_null(cfg->controlnet_dir);
    e->cfg.output_dir = strdup(cfg->output_dir ? cfg->output_dir : "output");
    e->cfg.input_dir = strdup(cfg->input_dir ? cfg->input_dir : "input");
    e->cfg.temp_dir = strdup(cfg->temp_dir ? cfg->temp_dir : "temp");
    e->cfg.load.vae_path = dup_or_null(cfg->load.vae_path);
    e->cfg.load.clip_l_path = dup_or_null(cfg->load.clip_l_path);
    e->cfg.load.clip_g_path = dup_or_null(cfg->load.clip_g_path);
    e->cfg.load.t5_path = dup_or_null(cfg->load.t5_path);
    e->cfg.load.with_vae_encoder = true;
    e->metrics = sdw_metrics_new();
    pthread_mutex_init(&e->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->work, &ca);
    pthread_cond_init(&e->changed, &ca);
    pthread_condattr_destroy(&ca);
    e->state = SDW_ENGINE_LOADING;
    if (!e->cfg.output_dir || !e->cfg.input_dir || !e->cfg.temp_dir || engine_comfy_new(e) != SDW_OK) {
        sdw_engine_free(e);
        return sdw_fail(SDW_ERR_NOMEM, "engine: out of memory");
    }
    bool front = cfg->fleet.redis_url && cfg->fleet.role == SDW_ROLE_FRONT;
    if (cfg->fleet.redis_url) {
        sdw_status st = e->metrics ? fleet_start(e, &cfg->fleet, &e->fleet) : sdw_fail(SDW_ERR_NOMEM, "engine: out of memory");
        /* The fleet keeps its own copies of these strings. */
        e->cfg.fleet.redis_url = e->cfg.fleet.prefix = e->cfg.fleet.worker_id = NULL;
        if (st != SDW_OK) {
            sdw_engine_free(e);
            return st;
        }
    }
    /* A front loads no model: it is ready once it can take requests. */
    if (front) e->state = SDW_ENGINE_READY;
    else if (!e->metrics || !e->cfg.model_path || pthread_create(&e->thread, NULL, gen_thread, e)) {
        sdw_engine_free(e);
        return sdw_fail(SDW_ERR_NOMEM, "engine: cannot start the generation thread");
    }
    e->thread_started = !front;
    *out = e;
    return SDW_OK;
}

void sdw_engine_begin_drain(sdw_engine *e)
{
    /* A fleet's queued jobs stay in Redis for the other workers. */
    if (e->fleet) fleet_worker_stop_taking(e->fleet);
    pthread_mutex_lock(&e->mu);
    if (e->state != SDW_ENGINE_FAILED) e->state = SDW_ENGINE_STOPPING;
    while (e->q_head) {
        sdw_job *j = e->q_head;
        queue_remove_locked(e, j);
        job_finish_locked(e, j, SDW_JOB_CANCELLED, "shutting_down", "the server is shutting down");
    }
    pthread_cond_broadcast(&e->changed);
    pthread_mutex_unlock(&e->mu);
}

static void wait_until_locked(sdw_engine *e, double deadline)
{
    struct timespec ts;
    double secs = floor(deadline);
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((deadline - secs) * 1e9);
    pthread_cond_timedwait(&e->changed, &e->mu, &ts);
}

void sdw_engine_drain(sdw_engine *e, double timeout_s)
{
    if (e->fleet) {
        fleet_drain(e->fleet, timeout_s);
        return;
    }
    sdw_engine_begin_drain(e);
    pthread_mutex_lock(&e->mu);
    double deadline = sdw_now() + timeout_s;
    while (e->running && sdw_now() < deadline) wait_until_locked(e, deadline);
    if (e->running) {
        sdw_srv_log("drain timeout (%.0f s): cancelling job %s", timeout_s, e->running->id);
        snprintf(e->running->cancel_reason, sizeof e->running->cancel_reason, "the server is shutting down");
        e->running->cancel = true;
        e->drain_cancel = true;
        while (e->running) pthread_cond_wait(&e->changed, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
}

void sdw_engine_free(sdw_engine *e)
{
    if (!e) return;
    if (e->thread_started) {
        sdw_engine_begin_drain(e);
        if (e->fleet) {
            /* Not drained: the running job goes back to the fleet. */
            fleet_worker_hand_back(e->fleet);
            fleet_worker_abandon(e->fleet);
        }
        pthread_mutex_lock(&e->mu);
        e->quit = true;
        if (e->running) e->running->cancel = true;
        pthread_cond_signal(&e->work);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    fleet_free(e->fleet);
    e->fleet = NULL;
    while (e->head) unlink_locked(e, e->head);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->work);
    pthread_cond_destroy(&e->changed);
    sdw_metrics_free(e->metrics);
    free((char *)e->cfg.model_path);
    free((char *)e->cfg.models_dir);
    free((char *)e->cfg.lora_dir);
    free((char *)e->cfg.controlnet_dir);
    free((char *)e->cfg.output_dir);
    free((char *)e->cfg.input_dir);
    free((char *)e->cfg.temp_dir);
    engine_comfy_free(e);
    free((char *)e->cfg.load.vae_path);
    free((char *)e->cfg.load.clip_l_path);
    free((char *)e->cfg.load.clip_g_path);
    free((char *)e->cfg.load.t5_path);
    free(e);
}

sdw_engine_state sdw_engine_get_state(sdw_engine *e, char *err, size_t n)
{
    pthread_mutex_lock(&e->mu);
    sdw_engine_state s = e->state;
    if (err && n) snprintf(err, n, "%s", e->load_error);
    pthread_mutex_unlock(&e->mu);
    return s;
}

sdw_metrics *sdw_engine_metrics(sdw_engine *e) { return e->metrics; }
const sdw_engine_config *sdw_engine_get_config(const sdw_engine *e) { return &e->cfg; }

bool sdw_engine_model_get(sdw_engine *e, sdw_engine_model *out)
{
    pthread_mutex_lock(&e->mu);
    bool ok = e->has_model;
    if (ok) *out = e->current;
    pthread_mutex_unlock(&e->mu);
    /* A front describes a live worker's model. */
    if (!ok && e->fleet && e->cfg.fleet.role == SDW_ROLE_FRONT) ok = fleet_model_get(e->fleet, out);
    return ok;
}

const char *sdw_engine_worker_id(const sdw_engine *e) { return e->fleet ? fleet_worker_id(e->fleet) : NULL; }

bool sdw_engine_queue_ok(sdw_engine *e, char *err, size_t n)
{
    if (err && n) err[0] = 0;
    return !e->fleet || fleet_redis_ok(e->fleet, err, n);
}

/* ---------------------------------------------------------------- submitting */

/* Whether a request's model name is the loaded model's. */
bool engine_names_model(const sdw_engine_model *m, const char *name)
{
    size_t n = strlen(m->name);
    return !strcmp(name, m->title) || !strcmp(name, m->name) || !strcmp(name, m->model_name) ||
           (m->hash10[0] && !strcmp(name, m->hash10)) ||
           (!strncmp(name, m->name, n) && name[n] == ' ' && name[n + 1] == '[');
}

/* The file-system part of a submission (no lock held): model and LoRA names
 * to paths inside their folders. */
sdw_submit_result engine_resolve_job(sdw_engine *e, sdw_job *j, char *err, size_t n)
{
    sdw_job_request *r = &j->req;
    sdw_engine_model cur;
    bool have = sdw_engine_model_get(e, &cur);
    if (r->model && (e->cfg.models_dir || r->kind == SDW_JOB_LOAD_MODEL)) {
        if (have && engine_names_model(&cur, r->model)) {
            j->model_path = strdup(cur.path);
        } else if (!e->cfg.models_dir) {
            snprintf(err, n, "model: switching models needs --models-dir (loaded: %s)", have ? cur.title : "none");
            return SDW_SUBMIT_INVALID;
        } else {
            sdw_catalog_entry ce;
            if (sdw_catalog_resolve(e->cfg.models_dir, r->model, &ce) != SDW_OK) {
                snprintf(err, n, "model: %s", sdw_last_error());
                return SDW_SUBMIT_INVALID;
            }
            j->model_path = strdup(ce.path);
        }
        if (!j->model_path) return snprintf(err, n, "out of memory"), SDW_SUBMIT_INVALID;
    }
    if (r->n_loras && !e->cfg.lora_dir) {
        snprintf(err, n, "loras: this server has no --lora-dir");
        return SDW_SUBMIT_INVALID;
    }
    if (r->n_loras && !(j->lora_paths = calloc((size_t)r->n_loras, sizeof *j->lora_paths)))
        return snprintf(err, n, "out of memory"), SDW_SUBMIT_INVALID;
    for (int i = 0; i < r->n_loras; i++) {
        char path[4096];
        if (sdw_lora_resolve(e->cfg.lora_dir, r->loras[i].name, path, sizeof path) != SDW_OK) {
            snprintf(err, n, "loras: %s", sdw_last_error());
            return SDW_SUBMIT_INVALID;
        }
        if (!(j->lora_paths[i] = strdup(path))) return snprintf(err, n, "out of memory"), SDW_SUBMIT_INVALID;
        j->n_lora_paths = i + 1;
    }
    sdw_submit_result cr = engine_resolve_controls(e, j, have ? &cur : NULL, err, n);
    if (cr != SDW_SUBMIT_OK) return cr;
    if (have && !j->model_path && r->kind != SDW_JOB_LOAD_MODEL) {
        int m = cur.size_multiple;
        if ((r->width && r->width % m) || (r->height && r->height % m)) {
            snprintf(err, n, "width, height: %s needs multiples of %d (got %dx%d)", cur.name, m, r->width, r->height);
            return SDW_SUBMIT_INVALID;
        }
    }
    return SDW_SUBMIT_OK;
}

sdw_submit_result sdw_engine_submit(sdw_engine *e, sdw_job_request *req, sdw_job **out, char *err, size_t n)
{
    return sdw_engine_submit_from(e, req, NULL, out, err, n);
}

sdw_submit_result sdw_engine_submit_from(sdw_engine *e, sdw_job_request *req, const sdw_job_source *src, sdw_job **out,
                                         char *err, size_t n)
{
    if (e->fleet) return fleet_submit(e->fleet, req, src, out, err, n);
    if (out) *out = NULL;
    snprintf(err, n, "%s", "");
    sdw_job *j = calloc(1, sizeof *j);
    if (!j) {
        sdw_job_request_free(req);
        snprintf(err, n, "out of memory");
        return SDW_SUBMIT_INVALID;
    }
    j->req = *req;
    sdw_job_request_init(req);
    sdw_submit_result res = engine_resolve_job(e, j, err, n);
    pthread_mutex_lock(&e->mu);
    if (res == SDW_SUBMIT_OK) {
        if (e->state == SDW_ENGINE_STOPPING) res = SDW_SUBMIT_STOPPING, snprintf(err, n, "the server is shutting down");
        else if (e->state != SDW_ENGINE_READY) res = SDW_SUBMIT_LOADING, snprintf(err, n, "the model is not loaded yet");
        else if (e->q_len >= e->cfg.queue_max)
            res = SDW_SUBMIT_FULL, snprintf(err, n, "the queue is full (%d jobs waiting)", e->q_len);
    }
    if (res != SDW_SUBMIT_OK) {
        sdw_metrics_job_rejected(e->metrics, res == SDW_SUBMIT_FULL      ? SDW_REJECT_QUEUE_FULL
                                             : res == SDW_SUBMIT_INVALID ? SDW_REJECT_INVALID
                                                                         : SDW_REJECT_UNAVAILABLE);
        pthread_mutex_unlock(&e->mu);
        job_free(j);
        return res;
    }
    sweep_locked(e);
    engine_new_id(j->id);
    j->state = SDW_JOB_QUEUED;
    j->t_created = sdw_now();
    j->next_event_id = 1;
    j->refs = 1;
    j->in_table = true;
    j->prev = e->tail;
    if (e->tail) e->tail->next = j;
    else e->head = j;
    e->tail = j;
    e->n_jobs++;
    if (e->q_tail) e->q_tail->qnext = j;
    else e->q_head = j;
    e->q_tail = j;
    e->q_len++;
    if (out) {
        j->refs++;
        *out = j;
    }
    sdw_metrics_job_accepted(e->metrics);
    const sdw_job_request *r = &j->req;
    sdw_srv_log("job %s queued (%s%s%s, %d in queue)", j->id, sdw_job_kind_name(r->kind), r->model ? ", model " : "",
                r->model ? r->model : "", e->q_len);
    pthread_cond_signal(&e->work);
    pthread_cond_broadcast(&e->changed);
    pthread_mutex_unlock(&e->mu);
    return SDW_SUBMIT_OK;
}

/* ---------------------------------------------------------------- jobs */

sdw_job *sdw_engine_find(sdw_engine *e, const char *id)
{
    if (e->fleet) return fleet_find(e->fleet, id);
    pthread_mutex_lock(&e->mu);
    sdw_job *j = find_locked(e, id);
    if (j) j->refs++;
    pthread_mutex_unlock(&e->mu);
    return j;
}

void sdw_job_release(sdw_engine *e, sdw_job *j)
{
    if (!j) return;
    pthread_mutex_lock(&e->mu);
    release_locked(j);
    pthread_mutex_unlock(&e->mu);
}

const char *sdw_job_id(const sdw_job *j) { return j->id; }
const sdw_job_request *sdw_job_get_request(const sdw_job *j) { return &j->req; }
const sdw_job_result *sdw_job_get_result(const sdw_job *j) { return &j->result; }

sdw_job_state sdw_engine_job_state(sdw_engine *e, sdw_job *j)
{
    pthread_mutex_lock(&e->mu);
    sdw_job_state s = j->state;
    pthread_mutex_unlock(&e->mu);
    return s;
}

sdw_job_state sdw_engine_wait(sdw_engine *e, sdw_job *j)
{
    if (e->fleet) return fleet_wait(e->fleet, j);
    pthread_mutex_lock(&e->mu);
    while (!is_final(j->state)) pthread_cond_wait(&e->changed, &e->mu);
    sdw_job_state s = j->state;
    pthread_mutex_unlock(&e->mu);
    return s;
}

void sdw_engine_forget(sdw_engine *e, sdw_job *j)
{
    if (e->fleet) {
        fleet_forget(e->fleet, j);
        return;
    }
    pthread_mutex_lock(&e->mu);
    if (is_final(j->state)) unlink_locked(e, j);
    pthread_mutex_unlock(&e->mu);
}

static void cancel_locked(sdw_engine *e, sdw_job *j, const char *reason)
{
    if (j->state == SDW_JOB_QUEUED) {
        queue_remove_locked(e, j);
        job_finish_locked(e, j, SDW_JOB_CANCELLED, "cancelled", reason);
    } else if (j->state == SDW_JOB_RUNNING && !j->cancel) {
        snprintf(j->cancel_reason, sizeof j->cancel_reason, "%s", reason);
        j->cancel = true;
        sdw_srv_log("job %s cancelling: %s", j->id, reason);
    }
}

bool engine_cancel_if_queued_locked(sdw_engine *e, sdw_job *j)
{
    if (j->state != SDW_JOB_QUEUED) return false;
    cancel_locked(e, j, "deleted from the queue");
    return true;
}

bool sdw_engine_cancel(sdw_engine *e, const char *id, sdw_job_state *state)
{
    if (e->fleet) return fleet_cancel(e->fleet, id, "cancelled by request", state);
    pthread_mutex_lock(&e->mu);
    sdw_job *j = find_locked(e, id);
    if (j) {
        *state = j->state;
        cancel_locked(e, j, "cancelled by request");
    }
    pthread_mutex_unlock(&e->mu);
    return j != NULL;
}

bool sdw_engine_interrupt(sdw_engine *e)
{
    if (e->fleet) return fleet_interrupt(e->fleet);
    pthread_mutex_lock(&e->mu);
    bool any = e->running != NULL;
    if (any) cancel_locked(e, e->running, "interrupted");
    pthread_mutex_unlock(&e->mu);
    return any;
}

/* ---------------------------------------------------------------- status */

static void add_result(cJSON *o, const sdw_job_result *r)
{
    cJSON *images = cJSON_AddArrayToObject(o, "images");
    for (int i = 0; i < r->n_images; i++) {
        char *b64;
        if (sdw_base64_encode(r->bytes[i], r->len[i], &b64, NULL) != SDW_OK) continue;
        if (i == 0) cJSON_AddStringToObject(o, "image", b64);
        cJSON_AddItemToArray(images, cJSON_CreateString(b64));
        free(b64);
    }
    cJSON_AddStringToObject(o, "format", sdw_image_format_name(r->format));
    if (r->n_images) {
        cJSON_AddNumberToObject(o, "seed", (double)r->seeds[0]);
        cJSON_AddStringToObject(o, "info", r->infotexts[0]);
    }
}

char *sdw_engine_job_json(sdw_engine *e, const char *id)
{
    if (e->fleet) return fleet_job_json(e->fleet, id);
    pthread_mutex_lock(&e->mu);
    sdw_job *j = find_locked(e, id);
    if (!j) {
        pthread_mutex_unlock(&e->mu);
        return NULL;
    }
    j->refs++;
    sdw_job_state state = j->state;
    int step = j->step, total = j->total;
    int position = 0;
    for (sdw_job *q = e->q_head; q && q != j; q = q->qnext) position++;
    if (state == SDW_JOB_COMPLETED && j->expires > sdw_now() + READ_GRACE_S) j->expires = sdw_now() + READ_GRACE_S;
    pthread_mutex_unlock(&e->mu);

    /* The result does not change once final: encode it without the lock. */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job_id", j->id);
    cJSON_AddStringToObject(o, "status", sdw_job_state_name(state));
    cJSON_AddStringToObject(o, "operation", sdw_job_kind_name(j->req.kind));
    if (state == SDW_JOB_QUEUED) cJSON_AddNumberToObject(o, "queue_position", position);
    cJSON *p = cJSON_AddObjectToObject(o, "progress");
    cJSON_AddNumberToObject(p, "step", step);
    cJSON_AddNumberToObject(p, "total", total);
    cJSON_AddNumberToObject(p, "percent", total ? round(1000.0 * step / total) / 10 : 0);
    if (state == SDW_JOB_COMPLETED) add_result(cJSON_AddObjectToObject(o, "result"), &j->result);
    if (state == SDW_JOB_FAILED || state == SDW_JOB_CANCELLED) {
        cJSON *err = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(err, "message", j->result.error ? j->result.error : "");
        cJSON_AddStringToObject(err, "code", j->result.error_code ? j->result.error_code : "");
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    sdw_job_release(e, j);
    return s;
}

char *sdw_engine_a1111_progress(sdw_engine *e)
{
    if (e->fleet) return fleet_a1111_progress(e->fleet);
    cJSON *o = cJSON_CreateObject(), *st = cJSON_CreateObject();
    pthread_mutex_lock(&e->mu);
    sdw_job *j = e->running && e->running->state == SDW_JOB_RUNNING ? e->running : NULL;
    double progress = j && j->total ? (double)j->step / j->total : 0;
    cJSON_AddNumberToObject(o, "progress", progress);
    cJSON_AddNumberToObject(o, "eta_relative", j ? j->eta_s : 0);
    cJSON_AddBoolToObject(st, "skipped", false);
    cJSON_AddBoolToObject(st, "interrupted", j && j->cancel);
    cJSON_AddStringToObject(st, "job", j ? j->id : "");
    cJSON_AddNumberToObject(st, "job_count", e->q_len + (j ? 1 : 0));
    cJSON_AddStringToObject(st, "job_timestamp", "0");
    cJSON_AddNumberToObject(st, "job_no", 0);
    cJSON_AddNumberToObject(st, "sampling_step", j ? j->step : 0);
    cJSON_AddNumberToObject(st, "sampling_steps", j ? j->total : 0);
    cJSON_AddItemToObject(o, "state", st);
    if (j && j->preview_b64) cJSON_AddStringToObject(o, "current_image", j->preview_b64);
    else cJSON_AddNullToObject(o, "current_image");
    pthread_mutex_unlock(&e->mu);
    cJSON_AddNullToObject(o, "textinfo");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* The gauges of a /metrics scrape. */
char *sdw_engine_metrics_text(sdw_engine *e)
{
    pthread_mutex_lock(&e->mu);
    bool busy = e->running && e->running->state == SDW_JOB_RUNNING;
    sdw_metrics_gauges g = { .queue_depth = e->q_len, .in_flight = busy ? 1 : 0, .jobs_kept = e->n_jobs,
                             .ready = e->state == SDW_ENGINE_READY };
    pthread_mutex_unlock(&e->mu);
    /* In a fleet the queue is the fleet's, and so is this process's readiness. */
    if (e->fleet) {
        g.ready = fleet_gauges(e->fleet, &g) && g.ready;
        g.queue_depth = g.fleet_queue_depth;
    }
    return sdw_metrics_render(e->metrics, &g);
}
