/* fleet_front.c: a front's side of the fleet (fleet.h draws how a job
 * moves: queued -> claimed -> running -> completed | failed | cancelled):
 * what the HTTP routes ask the engine for, answered from Redis.
 *
 * A front owns no job. It checks a request as far as it can (the dialect's
 * parser ran already; here the model name, the LoRA and ControlNet names
 * when it has the folders, the size for the model), picks the seed of a
 * random-seed request so that a rerun draws the same image, and queues the
 * request as received (submit). Afterwards it only reads: a job's status,
 * its result (the images beside the record), A1111's current job. The one
 * change it makes is cancel, through the same script as every change. */
#include "server/fleet_internal.h"
#include "server/server_log.h"
#include "server/model_catalog.h"
#include "core/error.h"
#include "io/base64.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a front tries to queue a job while Redis is away, before it
 * answers 503. */
#define SUBMIT_RETRY_S 3.0

static redisReply *script(sdw_fleet *f, fleet_script_id id, const fleet_args *a)
{
    fleet_conn *c = fleet_pool_get(f);
    redisReply *r = c ? fleet_script(c, id, a) : NULL;
    if (!c) sdw_fail(SDW_ERR_NOMEM, "out of memory");
    fleet_pool_put(f, c);
    return r;
}

/* ---------------------------------------------------------------- submitting */

/* The catalog name a job is routed by: the model's name as the worker that
 * has it loaded publishes it, else as this front's --models-dir knows it.
 * "" = the job names none (or one this front cannot place, which is
 * ignored as a single worker ignores it without --models-dir). */
static sdw_submit_result model_key(sdw_fleet *f, const sdw_job_request *r, char *key, size_t cap, char *err, size_t n)
{
    key[0] = 0;
    if (!r->model) return SDW_SUBMIT_OK;
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_addi(&a, fleet_ms(f->claim_after_s));
    redisReply *rep = script(f, FLEET_MODELS, &a);
    fleet_args_free(&a);
    if (!rep) return snprintf(err, n, "%s", sdw_last_error()), SDW_SUBMIT_UNAVAILABLE;
    sdw_engine_model *m = malloc(sizeof *m);
    for (size_t i = 0; m && !key[0] && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        size_t len;
        const char *json = fleet_reply_str(rep, i, &len);
        if (json && fleet_model_parse(json, len, m) == SDW_OK && engine_names_model(m, r->model))
            snprintf(key, cap, "%s", m->name);
    }
    free(m);
    freeReplyObject(rep);
    const char *dir = f->e->cfg.models_dir;
    if (!key[0] && dir) {
        sdw_catalog_entry ce;
        if (sdw_catalog_resolve(dir, r->model, &ce) != SDW_OK)
            return snprintf(err, n, "model: %s", sdw_last_error()), SDW_SUBMIT_INVALID;
        snprintf(key, cap, "%s", ce.name);
    }
    if (!key[0] && r->kind == SDW_JOB_LOAD_MODEL)
        return snprintf(err, n, "model: no live worker has %s loaded, and this front has no --models-dir to find it in",
                        r->model), SDW_SUBMIT_INVALID;
    return SDW_SUBMIT_OK;
}

/* What this front can check with its own folders; workers check again. */
static sdw_submit_result check(sdw_fleet *f, sdw_job *j, bool named, char *err, size_t n)
{
    sdw_engine *e = f->e;
    sdw_job_request *r = &j->req;
    for (int i = 0; e->cfg.lora_dir && i < r->n_loras; i++) {
        char path[4096];
        if (sdw_lora_resolve(e->cfg.lora_dir, r->loras[i].name, path, sizeof path) != SDW_OK)
            return snprintf(err, n, "loras: %s", sdw_last_error()), SDW_SUBMIT_INVALID;
    }
    sdw_engine_model cur;
    bool have = sdw_engine_model_get(e, &cur);
    if (e->cfg.controlnet_dir) {
        sdw_submit_result cr = engine_resolve_controls(e, j, have && !named ? &cur : NULL, err, n);
        if (cr != SDW_SUBMIT_OK) return cr;
    }
    if (have && !named && r->kind != SDW_JOB_LOAD_MODEL) {
        int m = cur.size_multiple;
        if ((r->width && r->width % m) || (r->height && r->height % m))
            return snprintf(err, n, "width, height: %s needs multiples of %d (got %dx%d)", cur.name, m, r->width,
                            r->height), SDW_SUBMIT_INVALID;
    }
    return SDW_SUBMIT_OK;
}

static sdw_submit_result queue_job(sdw_fleet *f, sdw_job *j, const sdw_job_source *src, char *err, size_t n)
{
    fleet_route route;
    if (!src || !fleet_route_of_path(src->path, &route))
        return snprintf(err, n, "%s cannot queue jobs on a fleet", src ? src->path : "this route"), SDW_SUBMIT_INVALID;
    char key[512];
    sdw_submit_result res = model_key(f, &j->req, key, sizeof key, err, n);
    if (res == SDW_SUBMIT_OK) res = check(f, j, key[0] != 0, err, n);
    if (res != SDW_SUBMIT_OK) return res;
    engine_new_id(j->id);
    long long seed = j->req.seed >= 0 ? j->req.seed : (long long)sdw_random_seed();
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, j->id);
    fleet_args_add(&a, fleet_route_name(route));
    fleet_args_add(&a, sdw_job_kind_name(j->req.kind));
    fleet_args_add(&a, src->content_type ? src->content_type : "");
    fleet_args_addn(&a, src->body ? src->body : "", src->body ? src->len : 0);
    fleet_args_addi(&a, seed);
    fleet_args_add(&a, key);
    fleet_args_addi(&a, f->e->cfg.queue_max);
    /* A connection lost while the script ran may have lost only its answer:
     * the same id again is then refused as "exists", which is the job
     * queued once, not twice. */
    fleet_conn *c = fleet_pool_get(f);
    redisReply *r = NULL;
    bool retried = false;
    for (double until = sdw_now() + SUBMIT_RETRY_S; c && !(r = fleet_script(c, FLEET_SUBMIT, &a));) {
        if (c->c || sdw_now() >= until || f->front_stopping) break;   /* an error answer, or too long */
        retried = true;
        fleet_conn_pause(c, 0.5);
    }
    fleet_pool_put(f, c);
    fleet_args_free(&a);
    if (!r) return snprintf(err, n, "%s", c ? sdw_last_error() : "out of memory"), SDW_SUBMIT_UNAVAILABLE;
    const char *what = fleet_reply_str(r, 0, NULL);
    long long depth = fleet_reply_int(r, 1, 0);
    if (retried && what && !strcmp(what, "exists")) what = "ok";
    if (!what || strcmp(what, "ok")) {
        bool full = what && !strcmp(what, "full");
        snprintf(err, n, full ? "the queue is full (%lld jobs waiting)" : "the job id is taken (%lld)", depth);
        freeReplyObject(r);
        return full ? SDW_SUBMIT_FULL : SDW_SUBMIT_INVALID;
    }
    freeReplyObject(r);
    j->state = SDW_JOB_QUEUED;
    j->t_created = sdw_now();
    sdw_srv_log("job %s queued on the fleet (%s, %s%s%s, %lld in the queue)", j->id, fleet_route_name(route),
                sdw_job_kind_name(j->req.kind), key[0] ? ", model " : "", key, depth);
    return SDW_SUBMIT_OK;
}

sdw_submit_result fleet_submit(sdw_fleet *f, sdw_job_request *req, const sdw_job_source *src, sdw_job **out,
                               char *err, size_t n)
{
    sdw_engine *e = f->e;
    if (out) *out = NULL;
    snprintf(err, n, "%s", "");
    sdw_job *j = calloc(1, sizeof *j);
    struct fleet_job *fj = calloc(1, sizeof *fj);
    if (!j || !fj) {
        free(j);
        free(fj);
        sdw_job_request_free(req);
        snprintf(err, n, "out of memory");
        return SDW_SUBMIT_INVALID;
    }
    j->fleet = fj;
    j->refs = 1;
    j->req = *req;
    sdw_job_request_init(req);
    sdw_engine_state st = sdw_engine_get_state(e, NULL, 0);
    sdw_submit_result res = st == SDW_ENGINE_STOPPING ? SDW_SUBMIT_STOPPING
                            : st == SDW_ENGINE_LOADING ? SDW_SUBMIT_LOADING
                                                       : queue_job(f, j, src, err, n);
    if (res == SDW_SUBMIT_STOPPING) snprintf(err, n, "the server is shutting down");
    if (res == SDW_SUBMIT_LOADING) snprintf(err, n, "the model is not loaded yet");
    if (res != SDW_SUBMIT_OK) {
        sdw_metrics_job_rejected(e->metrics, res == SDW_SUBMIT_FULL      ? SDW_REJECT_QUEUE_FULL
                                             : res == SDW_SUBMIT_INVALID ? SDW_REJECT_INVALID
                                                                         : SDW_REJECT_UNAVAILABLE);
        job_free(j);
        return res;
    }
    sdw_metrics_job_accepted(e->metrics);
    if (out) *out = j;
    else sdw_job_release(e, j);
    return SDW_SUBMIT_OK;
}

/* ---------------------------------------------------------------- status */

static sdw_job_state state_of(const char *s)
{
    if (!s) return SDW_JOB_FAILED;
    for (int i = SDW_JOB_QUEUED; i <= SDW_JOB_CANCELLED; i++)
        if (!strcmp(s, sdw_job_state_name((sdw_job_state)i))) return (sdw_job_state)i;
    return SDW_JOB_FAILED;
}

/* The status script's answer: state, kind, step, total, error, code,
 * result, worker, attempt, position, image... */
static redisReply *status(sdw_fleet *f, const char *id, bool images)
{
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, id);
    fleet_args_add(&a, images ? "1" : "0");
    redisReply *r = script(f, FLEET_STATUS, &a);
    fleet_args_free(&a);
    return r;
}

/* j's state and result from a status answer (images included). */
static void fill(sdw_job *j, const redisReply *r)
{
    j->state = state_of(fleet_reply_str(r, 0, NULL));
    j->step = (int)fleet_reply_int(r, 2, 0);
    j->total = (int)fleet_reply_int(r, 3, 0);
    sdw_job_result *res = &j->result;
    if (j->state == SDW_JOB_COMPLETED) {
        size_t n;
        const char *json = fleet_reply_str(r, 6, &n);
        int k = r->elements > 10 ? (int)(r->elements - 10) : 0;
        fleet_field *img = calloc((size_t)(k ? k : 1), sizeof *img);
        for (int i = 0; img && i < k; i++) img[i].value = fleet_reply_str(r, (size_t)(10 + i), &img[i].len);
        if (!json || !img || fleet_result_parse(json, n, img, k, res) != SDW_OK) {
            fleet_result_free(res);
            j->state = SDW_JOB_FAILED;
            snprintf(j->fleet->code, sizeof j->fleet->code, "bad_result");
            free(j->error);
            j->error = strdup(sdw_last_error());
        }
        free(img);
    } else if (j->state == SDW_JOB_FAILED || j->state == SDW_JOB_CANCELLED) {
        const char *code = fleet_reply_str(r, 5, NULL), *msg = fleet_reply_str(r, 4, NULL);
        snprintf(j->fleet->code, sizeof j->fleet->code, "%s", code ? code : "generation_failed");
        free(j->error);
        j->error = strdup(msg ? msg : "");
    }
    res->error = j->error;
    res->error_code = j->state == SDW_JOB_COMPLETED ? NULL : j->fleet->code;
}

/* A front's view of a job from a status answer: a record no other thread
 * sees, released with sdw_job_release. */
static sdw_job *view(const char *id, const redisReply *r)
{
    sdw_job *j = calloc(1, sizeof *j);
    if (j && !(j->fleet = calloc(1, sizeof *j->fleet))) {
        free(j);
        j = NULL;
    }
    if (!j) return NULL;
    snprintf(j->id, sizeof j->id, "%s", id);
    sdw_job_request_init(&j->req);
    j->refs = 1;
    fill(j, r);
    return j;
}

sdw_job *fleet_find(sdw_fleet *f, const char *id)
{
    redisReply *r = status(f, id, true);
    sdw_job *j = r && r->type == REDIS_REPLY_ARRAY ? view(id, r) : NULL;
    if (r) freeReplyObject(r);
    return j;
}

char *fleet_job_json(sdw_fleet *f, const char *id)
{
    redisReply *r = status(f, id, true);
    sdw_job *j = r && r->type == REDIS_REPLY_ARRAY ? view(id, r) : NULL;
    if (!j) {
        if (r) freeReplyObject(r);
        return NULL;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job_id", id);
    cJSON_AddStringToObject(o, "status", sdw_job_state_name(j->state));
    const char *kind = fleet_reply_str(r, 1, NULL);
    cJSON_AddStringToObject(o, "operation", kind ? kind : "");
    if (j->state == SDW_JOB_QUEUED) cJSON_AddNumberToObject(o, "queue_position", (double)fleet_reply_int(r, 9, 0));
    cJSON *p = cJSON_AddObjectToObject(o, "progress");
    cJSON_AddNumberToObject(p, "step", j->step);
    cJSON_AddNumberToObject(p, "total", j->total);
    cJSON_AddNumberToObject(p, "percent", j->total ? round(1000.0 * j->step / j->total) / 10 : 0);
    const char *worker = fleet_reply_str(r, 7, NULL);
    if (worker && worker[0]) cJSON_AddStringToObject(o, "worker", worker);
    cJSON_AddNumberToObject(o, "attempt", (double)fleet_reply_int(r, 8, 0));
    const sdw_job_result *res = &j->result;
    if (j->state == SDW_JOB_COMPLETED) {
        cJSON *ro = cJSON_AddObjectToObject(o, "result"), *images = cJSON_AddArrayToObject(ro, "images");
        for (int i = 0; i < res->n_images; i++) {
            char *b64;
            if (sdw_base64_encode(res->bytes[i], res->len[i], &b64, NULL) != SDW_OK) continue;
            if (i == 0) cJSON_AddStringToObject(ro, "image", b64);
            cJSON_AddItemToArray(images, cJSON_CreateString(b64));
            free(b64);
        }
        cJSON_AddStringToObject(ro, "format", sdw_image_format_name(res->format));
        if (res->n_images) {
            cJSON_AddNumberToObject(ro, "seed", (double)res->seeds[0]);
            cJSON_AddStringToObject(ro, "info", res->infotexts[0]);
        }
    }
    if (j->state == SDW_JOB_FAILED || j->state == SDW_JOB_CANCELLED) {
        cJSON *err = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(err, "message", res->error ? res->error : "");
        cJSON_AddStringToObject(err, "code", res->error_code ? res->error_code : "");
    }
    if (r) freeReplyObject(r);
    sdw_job_release(f->e, j);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ---------------------------------------------------------------- waiting */

static bool has_done(const redisReply *r)
{
    /* [[key, [[id, [field, value, ...]], ...]]] */
    if (!r || r->type != REDIS_REPLY_ARRAY || !r->elements) return false;
    const redisReply *entries = r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2
                                    ? r->element[0]->element[1] : NULL;
    for (size_t i = 0; entries && i < entries->elements; i++) {
        const redisReply *fv = entries->element[i]->elements == 2 ? entries->element[i]->element[1] : NULL;
        for (size_t k = 0; fv && fv->type == REDIS_REPLY_ARRAY && k + 1 < fv->elements; k += 2)
            if (fv->element[k]->type == REDIS_REPLY_STRING && !strcmp(fv->element[k]->str, "event") &&
                fv->element[k + 1]->type == REDIS_REPLY_STRING && !strcmp(fv->element[k + 1]->str, "done"))
                return true;
    }
    return false;
}

/* The id of the last entry of an XREAD answer, into last. */
static void last_id(const redisReply *r, char *last, size_t n)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || !r->elements || r->element[0]->elements != 2) return;
    const redisReply *entries = r->element[0]->element[1];
    if (entries->type == REDIS_REPLY_ARRAY && entries->elements) {
        const redisReply *e = entries->element[entries->elements - 1];
        if (e->type == REDIS_REPLY_ARRAY && e->elements && e->element[0]->type == REDIS_REPLY_STRING)
            snprintf(last, n, "%s", e->element[0]->str);
    }
}

static void stopped(sdw_job *j)
{
    j->state = SDW_JOB_CANCELLED;
    snprintf(j->fleet->code, sizeof j->fleet->code, "shutting_down");
    free(j->error);
    char msg[200];
    snprintf(msg, sizeof msg, "this front is shutting down; the job goes on in the fleet (GET /v1/jobs/%s)", j->id);
    j->error = strdup(msg);
    j->result.error = j->error;
    j->result.error_code = j->fleet->code;
}

sdw_job_state fleet_wait(sdw_fleet *f, sdw_job *j)
{
    fleet_conn *c = fleet_pool_get(f);
    if (!c) {
        stopped(j);
        return j->state;
    }
    f->waiting++;
    char key[128], last[64] = "0-0";
    snprintf(key, sizeof key, "%sevents:%s", f->link.prefix, j->id);
    double checked = sdw_now();
    for (;;) {
        if (f->front_stopping) {
            stopped(j);
            break;
        }
        fleet_args a;
        fleet_args_init(&a);
        const char *v[] = { "XREAD", "COUNT", "64", "BLOCK", "1000", "STREAMS", key, last };
        for (size_t i = 0; i < sizeof v / sizeof *v; i++) fleet_args_add(&a, v[i]);
        redisReply *r = fleet_command(c, &a, 1000);
        fleet_args_free(&a);
        if (!r) {
            fleet_conn_pause(c, 1.0);
            continue;
        }
        bool done = has_done(r);
        last_id(r, last, sizeof last);
        freeReplyObject(r);
        /* Every few seconds without `done`: is the record still there? */
        if (done || sdw_now() - checked > 5) {
            checked = sdw_now();
            redisReply *st = status(f, j->id, done);
            if (st && st->type == REDIS_REPLY_ARRAY && (done || state_of(fleet_reply_str(st, 0, NULL)) >= SDW_JOB_COMPLETED)) {
                if (!done) {
                    freeReplyObject(st);
                    st = status(f, j->id, true);
                }
                if (st && st->type == REDIS_REPLY_ARRAY) {
                    fill(j, st);
                    freeReplyObject(st);
                    break;
                }
            }
            if (st && st->type != REDIS_REPLY_ARRAY) {   /* nil: the record is gone */
                freeReplyObject(st);
                j->state = SDW_JOB_FAILED;
                snprintf(j->fleet->code, sizeof j->fleet->code, "lost");
                free(j->error);
                j->error = strdup("the job's record is gone from Redis (expired, or Redis lost its data)");
                j->result.error = j->error;
                j->result.error_code = j->fleet->code;
                break;
            }
            if (st) freeReplyObject(st);
        }
    }
    fleet_pool_put(f, c);
    f->waiting--;
    return j->state;
}

void fleet_forget(sdw_fleet *f, sdw_job *j)
{
    if (j->state < SDW_JOB_COMPLETED) return;
    char job[128], events[128];
    snprintf(job, sizeof job, "%sjob:%s", f->link.prefix, j->id);
    snprintf(events, sizeof events, "%sevents:%s", f->link.prefix, j->id);
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, "DEL");
    fleet_args_add(&a, job);
    fleet_args_add(&a, events);
    fleet_conn *c = fleet_pool_get(f);
    redisReply *r = c ? fleet_command(c, &a, 0) : NULL;
    fleet_pool_put(f, c);
    if (r) freeReplyObject(r);
    fleet_args_free(&a);
}

/* ---------------------------------------------------------------- cancelling, A1111 */

bool fleet_cancel(sdw_fleet *f, const char *id, const char *reason, sdw_job_state *before)
{
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, id);
    fleet_args_add(&a, reason);
    fleet_args_addi(&a, fleet_ms(f->ttl_s));
    redisReply *r = script(f, FLEET_CANCEL, &a);
    fleet_args_free(&a);
    bool found = r && r->type == REDIS_REPLY_STRING;
    if (found) {
        *before = state_of(r->str);
        if (*before == SDW_JOB_QUEUED) {
            sdw_metrics_job_final(f->e->metrics, SDW_FINAL_CANCELLED);
            sdw_srv_log("job %s cancelled: %s", id, reason);
        } else if (*before == SDW_JOB_RUNNING) {
            sdw_srv_log("job %s cancelling: %s", id, reason);
        }
    }
    if (r) freeReplyObject(r);
    return found;
}

static redisReply *progress(sdw_fleet *f)
{
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_addi(&a, fleet_ms(f->claim_after_s));
    redisReply *r = script(f, FLEET_PROGRESS, &a);
    fleet_args_free(&a);
    return r;
}

bool fleet_interrupt(sdw_fleet *f)
{
    redisReply *r = progress(f);
    const char *id = fleet_reply_str(r, 0, NULL);
    sdw_job_state before;
    bool any = id && id[0] && fleet_cancel(f, id, "interrupted", &before);
    if (r) freeReplyObject(r);
    return any;
}

char *fleet_a1111_progress(sdw_fleet *f)
{
    redisReply *r = progress(f);
    const char *id = fleet_reply_str(r, 0, NULL);
    bool running = id && id[0];
    double step = running ? (double)fleet_reply_int(r, 2, 0) : 0, total = running ? (double)fleet_reply_int(r, 3, 0) : 0;
    const char *eta = running ? fleet_reply_str(r, 4, NULL) : NULL, *cancel = running ? fleet_reply_str(r, 5, NULL) : NULL;
    const char *preview = running ? fleet_reply_str(r, 6, NULL) : NULL;
    cJSON *o = cJSON_CreateObject(), *st = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "progress", total > 0 ? step / total : 0);
    cJSON_AddNumberToObject(o, "eta_relative", eta ? strtod(eta, NULL) : 0);
    cJSON_AddBoolToObject(st, "skipped", false);
    cJSON_AddBoolToObject(st, "interrupted", cancel && !strcmp(cancel, "1"));
    cJSON_AddStringToObject(st, "job", running ? id : "");
    cJSON_AddNumberToObject(st, "job_count", (double)fleet_reply_int(r, 1, 0));
    cJSON_AddStringToObject(st, "job_timestamp", "0");
    cJSON_AddNumberToObject(st, "job_no", 0);
    cJSON_AddNumberToObject(st, "sampling_step", step);
    cJSON_AddNumberToObject(st, "sampling_steps", total);
    cJSON_AddItemToObject(o, "state", st);
    if (preview && preview[0]) cJSON_AddStringToObject(o, "current_image", preview);
    else cJSON_AddNullToObject(o, "current_image");
    cJSON_AddNullToObject(o, "textinfo");
    if (r) freeReplyObject(r);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
