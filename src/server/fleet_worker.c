/* fleet_worker.c: a worker's side of the fleet (fleet.h draws how a job
 * moves: queued -> claimed -> running -> completed | failed | cancelled).
 * The generation thread runs fleet_worker_run once its model is loaded:
 *
 *   idle:    claim a dead worker's job, else take the next job of the queue
 *            of the model it has loaded, else of the queue of jobs that
 *            name no model, else of another model's queue it can load from
 *            its --models-dir (unless an idle worker has that model
 *            loaded); one job at a time, so no busy worker holds a job;
 *            nothing there: sleep on P wake until a front queues one
 *   running: the job becomes a local record (its request parsed again from
 *            the record) run by engine_run_job, exactly as without a fleet;
 *            the keeper thread publishes its events as they come, and
 *            learns from the answer whether it was cancelled or lost
 *   ending:  the rest of its events, then finish (or requeue when the
 *            worker stops before the job ends); both refuse a run the
 *            record no longer names, whose result is then dropped
 *
 * Ownership: the local record of the running job (e->running) is the
 * generation thread's as without a fleet; what Redis has of it is written
 * under pub_mu only (keeper and generation thread both), in order. */
#include "server/fleet_internal.h"
#include "server/server_log.h"
#include "core/error.h"
#include "server/model_catalog.h"
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long a catalog lookup ("can I load this model?") is trusted. */
#define CAN_LOAD_TTL_S 30.0
#define CAN_LOAD_SLOTS 16

typedef struct {
    char key[512];
    bool ok;
    double at;
} can_load_entry;

typedef struct {
    sdw_fleet *f;
    double next_claim;
    bool claimed_once;
    can_load_entry can_load[CAN_LOAD_SLOTS];
    double last_error_log;
} loop_state;

static double clamp(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* An error that is not a lost connection (those the link logs): at most
 * one line every 10 s. */
static void log_error(loop_state *st, const char *what)
{
    if (sdw_now() - st->last_error_log < 10) return;
    st->last_error_log = sdw_now();
    sdw_srv_log("fleet: %s: %s", what, sdw_last_error());
}

void fleet_worker_stop_taking(sdw_fleet *f) { f->stop_taking = true; }
void fleet_worker_abandon(sdw_fleet *f) { f->abandon = true; }

void fleet_worker_hand_back(sdw_fleet *f)
{
    sdw_engine *e = f->e;
    pthread_mutex_lock(&e->mu);
    sdw_job *j = e->running;
    if (j && j->fleet && !j->fleet->closed) {
        j->fleet->hand_back = true;
        j->cancel = true;
        snprintf(j->cancel_reason, sizeof j->cancel_reason, "the worker is stopping");
        sdw_srv_log("job %s: handing it back to the queue (the worker is stopping)", j->id);
    }
    pthread_mutex_unlock(&e->mu);
}

/* ---------------------------------------------------------------- the keeper's part */

static bool is_final_event(const char *name)
{
    return !strcmp(name, "complete") || !strcmp(name, "error") || !strcmp(name, "done");
}

static void on_publish_answer(sdw_fleet *f, sdw_job *j, redisReply *r, int upto)
{
    sdw_engine *e = f->e;
    const char *what = fleet_reply_str(r, 0, NULL);
    const char *a = fleet_reply_str(r, 1, NULL), *b = fleet_reply_str(r, 2, NULL);
    pthread_mutex_lock(&e->mu);
    if (what && !strcmp(what, "lost")) {
        /* Given up for dead and claimed by another worker, or ended
         * meanwhile: this run's events and result must go nowhere. */
        j->fleet->lost = true;
        j->cancel = true;
        snprintf(j->cancel_reason, sizeof j->cancel_reason, "the job is %s on %s now", a && a[0] ? a : "gone",
                 b && b[0] ? b : "no worker");
        sdw_srv_log("job %s: attempt %s lost: %s; stopping this run", j->id, j->fleet->attempt, j->cancel_reason);
    } else {
        j->fleet->published = upto;
        if (what && !strcmp(what, "cancel") && !j->cancel) {
            j->cancel = true;
            snprintf(j->cancel_reason, sizeof j->cancel_reason, "%s", a ? a : "cancelled by request");
            sdw_srv_log("job %s cancelling: %s", j->id, j->cancel_reason);
        }
    }
    pthread_mutex_unlock(&e->mu);
}

void fleet_publish_locked(sdw_fleet *f, bool *failed)
{
    sdw_engine *e = f->e;
    pthread_mutex_lock(&e->mu);
    sdw_job *j = e->running;
    if (!j || !j->fleet || j->fleet->closed || j->fleet->lost || j->fleet->published >= j->n_events) {
        pthread_mutex_unlock(&e->mu);
        return;
    }
    /* Copies under the lock: the log's array moves as it grows, the
     * preview is replaced; event texts stay while the job is held. */
    j->refs++;
    int from = j->fleet->published, to = j->n_events;
    char (*names)[24] = malloc((size_t)(to - from) * sizeof *names);
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, j->id);
    fleet_args_add(&a, f->id);
    fleet_args_add(&a, j->fleet->attempt);
    fleet_args_addi(&a, j->step);
    fleet_args_addi(&a, j->total);
    fleet_args_addf(&a, j->eta_s);
    bool preview = false;
    for (int i = from; i < to; i++) preview |= !strcmp(j->events[i].name, "preview");
    char *image = preview && j->preview_b64 ? strdup(j->preview_b64) : NULL;
    fleet_args_add(&a, image ? image : "");
    fleet_args_addi(&a, to);
    for (int i = from; names && i < to; i++) {
        const sdw_event *ev = &j->events[i];
        if (is_final_event(ev->name)) continue;
        memcpy(names[i - from], ev->name, sizeof names[0]);
        fleet_args_addi(&a, i);
        fleet_args_add(&a, names[i - from]);
        fleet_args_addn(&a, ev->text + ev->data_off, ev->data_len);
    }
    pthread_mutex_unlock(&e->mu);
    redisReply *r = names && !a.oom ? fleet_script(f->pub, FLEET_PUBLISH, &a) : NULL;
    if (r) on_publish_answer(f, j, r, to);
    else *failed = true;
    if (r) freeReplyObject(r);
    fleet_args_free(&a);
    free(names);
    free(image);
    sdw_job_release(e, j);
}

void fleet_heartbeat_locked(sdw_fleet *f)
{
    static const char *const roles[] = { "both", "front", "worker" };
    sdw_engine *e = f->e;
    pthread_mutex_lock(&e->mu);
    const char *state = e->state == SDW_ENGINE_LOADING                    ? "loading"
                        : e->state != SDW_ENGINE_READY || f->stop_taking ? "stopping"
                        : e->running                                      ? "busy"
                                                                          : "idle";
    bool have = e->has_model;
    sdw_engine_model *m = malloc(sizeof *m);
    if (m && have) *m = e->current;
    pthread_mutex_unlock(&e->mu);
    char *info = m && have ? fleet_model_json(m) : NULL;
    static _Thread_local bool first = true;
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, f->id);
    fleet_args_addi(&a, fleet_ms(fmax(f->claim_after_s * 10, 60)));
    fleet_args_add(&a, state);
    fleet_args_add(&a, "host");
    fleet_args_add(&a, f->host);
    fleet_args_add(&a, "pid");
    fleet_args_addi(&a, getpid());
    fleet_args_add(&a, "role");
    fleet_args_add(&a, roles[f->cfg.role]);
    fleet_args_add(&a, "model");
    fleet_args_add(&a, m && have ? m->title : "");
    fleet_args_add(&a, "model_key");
    fleet_args_add(&a, m && have ? m->name : "");
    fleet_args_add(&a, "model_info");
    fleet_args_add(&a, info ? info : "");
    if (first) {
        /* A worker that reuses an id starts with no job. */
        fleet_args_add(&a, "job");
        fleet_args_add(&a, "");
    }
    redisReply *r = fleet_script(f->pub, FLEET_HEARTBEAT, &a);
    if (r) first = false;
    if (r) freeReplyObject(r);
    fleet_args_free(&a);
    free(info);
    free(m);
}

/* ---------------------------------------------------------------- ending a run */

/* Runs a script that ends a run, retrying while Redis is away (the result
 * is in memory: it is not given up unless the worker is told to). NULL
 * only when abandoned. */
static redisReply *end_script(sdw_fleet *f, fleet_script_id id, const fleet_args *a, const char *job)
{
    double logged = 0;
    for (;;) {
        redisReply *r = fleet_script(f->pub, id, a);
        if (r) return r;
        if (f->abandon) {
            sdw_srv_log("job %s: giving up on Redis (%s); another worker will claim the job", job, sdw_last_error());
            return NULL;
        }
        /* An error answer (not a lost connection, which the link logs):
         * say so, and try again, slowly. */
        if (f->pub->c && sdw_now() - logged > 10) {
            sdw_srv_log("job %s: %s; retrying", job, sdw_last_error());
            logged = sdw_now();
        }
        pthread_mutex_unlock(&f->pub_mu);
        fleet_conn_pause(f->pub, 1.0);
        pthread_mutex_lock(&f->pub_mu);
    }
}

/* Ends a job in Redis for a run that never became a local record (a bad
 * record, a request that no longer parses). */
static void fail_taken(sdw_fleet *f, const char *id, const char *attempt, const char *code, const char *message)
{
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, id);
    fleet_args_add(&a, f->id);
    fleet_args_add(&a, attempt);
    fleet_args_add(&a, "failed");
    fleet_args_add(&a, code);
    fleet_args_add(&a, message);
    fleet_args_addi(&a, fleet_ms(f->ttl_s));
    fleet_args_add(&a, "");
    fleet_args_add(&a, "");
    pthread_mutex_lock(&f->pub_mu);
    redisReply *r = end_script(f, FLEET_FINISH, &a, id);
    pthread_mutex_unlock(&f->pub_mu);
    if (r) sdw_srv_log("job %s failed: %s", id, message);
    if (r) freeReplyObject(r);
    fleet_args_free(&a);
}

/* The `complete` event's JSON in the local log, or "". */
static const sdw_event *complete_event(const sdw_job *j)
{
    for (int i = j->n_events - 1; i >= 0; i--)
        if (!strcmp(j->events[i].name, "complete")) return &j->events[i];
    return NULL;
}

/* A "lost" answer to an end that had in fact been made: the answer to it
 * was lost with a connection, and this is the same end sent again. */
static bool own_end(sdw_fleet *f, sdw_job *j, const redisReply *r, bool requeue)
{
    const char *st = fleet_reply_str(r, 1, NULL), *w = fleet_reply_str(r, 2, NULL), *a = fleet_reply_str(r, 3, NULL);
    if (!st || !w || !a) return false;
    if (requeue) return !strcmp(st, "queued") || (!strcmp(st, "cancelled") && !strcmp(w, f->id));
    return !strcmp(st, sdw_job_state_name(j->state)) && !strcmp(w, f->id) && !strcmp(a, j->fleet->attempt);
}

static void log_end(sdw_fleet *f, sdw_job *j, redisReply *r, bool requeue)
{
    const char *what = fleet_reply_str(r, 0, NULL);
    if (what && !strcmp(what, "lost") && own_end(f, j, r, requeue)) what = "ok";
    if (what && !strcmp(what, "lost")) {
        sdw_srv_log("job %s: attempt %s's result dropped: the job is %s on %s now", j->id, j->fleet->attempt,
                    fleet_reply_str(r, 1, NULL) ? fleet_reply_str(r, 1, NULL) : "gone",
                    fleet_reply_str(r, 2, NULL) && fleet_reply_str(r, 2, NULL)[0] ? fleet_reply_str(r, 2, NULL) : "no worker");
        return;
    }
    if (requeue) {
        sdw_srv_log("job %s %s", j->id, what && !strcmp(what, "cancelled") ? "cancelled while handed back" : "handed back to the queue");
        return;
    }
    sdw_metrics_job_final(f->e->metrics, j->state == SDW_JOB_COMPLETED ? SDW_FINAL_COMPLETED
                                         : j->state == SDW_JOB_FAILED  ? SDW_FINAL_FAILED
                                                                       : SDW_FINAL_CANCELLED);
    if (j->state == SDW_JOB_COMPLETED)
        sdw_srv_log("job %s completed (attempt %s) in %.2f s", j->id, j->fleet->attempt, sdw_now() - j->t_started);
    else
        sdw_srv_log("job %s %s (attempt %s): %s", j->id, sdw_job_state_name(j->state), j->fleet->attempt,
                    j->error ? j->error : "");
}

/* After engine_run_job: the events the keeper has not sent, then the end. */
static void conclude(sdw_fleet *f, sdw_job *j)
{
    sdw_engine *e = f->e;
    pthread_mutex_lock(&f->pub_mu);
    for (;;) {
        bool failed = false;
        fleet_publish_locked(f, &failed);
        if (!failed || f->abandon) break;
        pthread_mutex_unlock(&f->pub_mu);
        fleet_conn_pause(f->pub, 1.0);
        pthread_mutex_lock(&f->pub_mu);
    }
    redisReply *r = NULL;
    bool requeue = j->fleet->hand_back && j->state == SDW_JOB_CANCELLED;
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, j->id);
    fleet_args_add(&a, f->id);
    fleet_args_add(&a, j->fleet->attempt);
    char *result = NULL;
    if (j->fleet->lost) {
        sdw_srv_log("job %s: attempt %s's run dropped (%s)", j->id, j->fleet->attempt, j->cancel_reason);
    } else if (requeue) {
        fleet_args_add(&a, j->cancel_reason);
        fleet_args_addi(&a, fleet_ms(f->ttl_s));
        r = end_script(f, FLEET_REQUEUE, &a, j->id);
    } else {
        const sdw_job_result *res = &j->result;
        bool done = j->state == SDW_JOB_COMPLETED;
        const sdw_event *ce = done ? complete_event(j) : NULL;
        result = done ? fleet_result_json(res) : NULL;
        fleet_args_add(&a, sdw_job_state_name(j->state));
        fleet_args_add(&a, done ? "" : res->error_code ? res->error_code : "generation_failed");
        fleet_args_add(&a, done ? "" : res->error ? res->error : "");
        fleet_args_addi(&a, fleet_ms(f->ttl_s));
        if (ce) fleet_args_addn(&a, ce->text + ce->data_off, ce->data_len);
        else fleet_args_add(&a, "");
        fleet_args_add(&a, result ? result : "");
        for (int i = 0; done && i < res->n_images; i++) fleet_args_addn(&a, res->bytes[i], res->len[i]);
        r = end_script(f, FLEET_FINISH, &a, j->id);
    }
    if (r) log_end(f, j, r, requeue);
    if (r) freeReplyObject(r);
    fleet_args_free(&a);
    free(result);
    pthread_mutex_lock(&e->mu);
    j->fleet->closed = true;
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_unlock(&f->pub_mu);
}

/* ---------------------------------------------------------------- running what was taken */

/* The record's fields in a take or claim answer:
 * {'run', id, entry, attempt, id, dialect, content_type, body, seed, model
 * [, 'resumed']}: 'resumed' when Redis said this worker already held the
 * job, whose take or claim it never heard the answer to. */
static int record_fields(const redisReply *r, fleet_field *f)
{
    static const char *const names[] = { "id", "dialect", "content_type", "body", "seed", "model" };
    int n = 0;
    for (int i = 0; i < 6; i++) {
        size_t len;
        const char *v = fleet_reply_str(r, (size_t)(4 + i), &len);
        if (!v) continue;
        f[n++] = (fleet_field){ names[i], strlen(names[i]), v, len };
    }
    return n;
}

static bool resumed(const redisReply *r)
{
    const char *v = fleet_reply_str(r, 10, NULL);
    return v && !strcmp(v, "resumed");
}

static void run_taken(sdw_fleet *f, const redisReply *r, bool *ran)
{
    sdw_engine *e = f->e;
    const char *id = fleet_reply_str(r, 1, NULL), *entry = fleet_reply_str(r, 2, NULL);
    char attempt[24];
    snprintf(attempt, sizeof attempt, "%lld", fleet_reply_int(r, 3, 0));
    if (!id || !entry) return;
    fleet_field fields[6];
    fleet_record rec;
    if (fleet_record_parse(fields, record_fields(r, fields), &rec) != SDW_OK || strcmp(rec.id, id)) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", rec.id[0] && strcmp(rec.id, id) ? "job record: its id is not the job's" : sdw_last_error());
        sdw_srv_log("job %s: corrupted record: %s", id, msg);
        fail_taken(f, id, attempt, "bad_record", msg);
        return;
    }
    sdw_job *j = calloc(1, sizeof *j);
    struct fleet_job *fj = calloc(1, sizeof *fj);
    if (!j || !fj) {
        free(j);
        free(fj);
        fail_taken(f, id, attempt, "internal", "out of memory");
        return;
    }
    j->fleet = fj;
    snprintf(j->id, sizeof j->id, "%s", id);
    snprintf(fj->entry, sizeof fj->entry, "%s", entry);
    snprintf(fj->attempt, sizeof fj->attempt, "%s", attempt);
    j->refs = 1;
    j->next_event_id = 1;
    j->t_created = j->t_started = sdw_now();
    char err[1024];
    sdw_status s = fleet_record_request(&rec, &e->cfg.limits, &j->req);
    if (s != SDW_OK) snprintf(err, sizeof err, "%s", sdw_last_error());
    else if (engine_resolve_job(e, j, err, sizeof err) != SDW_SUBMIT_OK) s = SDW_ERR_INVALID_ARG;
    if (s != SDW_OK) {
        sdw_srv_log("job %s: %s", id, err);
        fail_taken(f, id, attempt, "invalid_request", err);
        job_free(j);
        return;
    }
    j->state = SDW_JOB_RUNNING;
    pthread_mutex_lock(&e->mu);
    e->running = j;
    pthread_cond_broadcast(&e->changed);
    pthread_mutex_unlock(&e->mu);
    if (resumed(r))
        sdw_srv_log("job %s resumed: Redis had given it to this worker, whose connection lost the answer", id);
    sdw_srv_log("job %s running (attempt %s, %s, %s)", id, attempt, fleet_route_name(rec.route),
                sdw_job_kind_name(j->req.kind));
    /* The worker began stopping while it took this one: hand it back. */
    if (f->stop_taking) fleet_worker_hand_back(f);
    if (!j->cancel) engine_run_job(e, j);
    else {
        pthread_mutex_lock(&e->mu);
        job_finish_locked(e, j, SDW_JOB_CANCELLED, "cancelled", j->cancel_reason);
        pthread_mutex_unlock(&e->mu);
    }
    conclude(f, j);
    *ran = true;
    pthread_mutex_lock(&e->mu);
    e->running = NULL;
    pthread_cond_broadcast(&e->changed);
    pthread_mutex_unlock(&e->mu);
    sdw_job_release(e, j);
}

/* ---------------------------------------------------------------- taking */

static redisReply *command(sdw_fleet *f, const char *a0, const char *a1, const char *a2, const char *a3)
{
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, a0);
    if (a1) fleet_args_add(&a, a1);
    if (a2) fleet_args_add(&a, a2);
    if (a3) fleet_args_add(&a, a3);
    redisReply *r = fleet_command(f->gen, &a, 0);
    fleet_args_free(&a);
    return r;
}

/* Whether this worker's --models-dir has the model a queue is for. */
static bool can_load(loop_state *st, const char *model)
{
    const char *dir = st->f->e->cfg.models_dir;
    if (!dir) return false;
    double now = sdw_now();
    can_load_entry *slot = &st->can_load[0];
    for (int i = 0; i < CAN_LOAD_SLOTS; i++) {
        can_load_entry *c = &st->can_load[i];
        if (!strcmp(c->key, model) && now - c->at < CAN_LOAD_TTL_S) return c->ok;
        if (c->at < slot->at) slot = c;
    }
    sdw_catalog_entry ce;
    snprintf(slot->key, sizeof slot->key, "%s", model);
    slot->ok = sdw_catalog_resolve(dir, model, &ce) == SDW_OK;
    slot->at = now;
    sdw_clear_error();
    return slot->ok;
}

/* 1: *out is a job to run; 0: none; -1: Redis failed. */
static int try_take(loop_state *st, const char *queue, const char *defer, redisReply **out)
{
    sdw_fleet *f = st->f;
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, f->id);
    fleet_args_add(&a, queue);
    fleet_args_add(&a, defer);
    fleet_args_addi(&a, fleet_ms(f->claim_after_s));
    redisReply *r = fleet_script(f->gen, FLEET_TAKE, &a);
    fleet_args_free(&a);
    if (!r) return -1;
    const char *what = fleet_reply_str(r, 0, NULL);
    if (what && !strcmp(what, "run")) return *out = r, 1;
    if (what && !strcmp(what, "bad"))
        sdw_srv_log("fleet: queue %s: entry %s names no job record (id '%s'): dropped", queue,
                    fleet_reply_str(r, 1, NULL), fleet_reply_str(r, 2, NULL) ? fleet_reply_str(r, 2, NULL) : "");
    freeReplyObject(r);
    return 0;
}

static int try_claim(loop_state *st, const redisReply *queues, redisReply **out)
{
    sdw_fleet *f = st->f;
    double now = sdw_now();
    /* Right after Redis came back every heartbeat is old: give the other
     * workers a --claim-after to be heard of again before judging them. */
    if (now < st->next_claim || fleet_link_up_for(&f->link) < f->claim_after_s) return 0;
    st->next_claim = now + clamp(f->claim_after_s / 4, 0.25, 5);
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, f->id);
    fleet_args_addi(&a, fleet_ms(f->claim_after_s));
    fleet_args_addi(&a, f->cfg.max_attempts);
    fleet_args_addi(&a, fleet_ms(f->ttl_s));
    fleet_args_add(&a, st->claimed_once ? "0" : "1");
    for (size_t i = 0; i < queues->elements; i++) {
        size_t n;
        const char *q = fleet_reply_str(queues, i, &n);
        if (q) fleet_args_addn(&a, q, n);
    }
    redisReply *r = a.n > 5 ? fleet_script(f->gen, FLEET_CLAIM, &a) : NULL;
    bool failed = a.n > 5 && !r;
    fleet_args_free(&a);
    if (failed) return -1;
    st->claimed_once = true;
    const char *what = fleet_reply_str(r, 0, NULL);
    if (what && !strcmp(what, "run")) {
        if (!resumed(r))
            sdw_srv_log("job %s claimed from a lost worker (attempt %lld)", fleet_reply_str(r, 1, NULL),
                        fleet_reply_int(r, 3, 0));
        return *out = r, 1;
    }
    if (r) freeReplyObject(r);
    return 0;
}

static int take_next(loop_state *st, redisReply **out)
{
    sdw_fleet *f = st->f;
    const char *prefix = f->link.prefix;
    char dflt[128], mine[700];
    snprintf(dflt, sizeof dflt, "%squeue", prefix);
    /* Only this thread loads models: e->current needs no lock here. */
    snprintf(mine, sizeof mine, "%squeue:%s", prefix, f->e->has_model ? f->e->current.name : "");
    char key[128];
    snprintf(key, sizeof key, "%squeues", prefix);
    redisReply *qs = command(f, "SMEMBERS", key, NULL, NULL);
    if (!qs) return -1;
    int got = qs->type == REDIS_REPLY_ARRAY ? try_claim(st, qs, out) : 0;
    bool have_mine = false;
    for (size_t i = 0; got == 0 && qs->type == REDIS_REPLY_ARRAY && i < qs->elements; i++) {
        const char *q = fleet_reply_str(qs, i, NULL);
        have_mine |= q && !strcmp(q, mine);
    }
    if (got == 0 && have_mine) got = try_take(st, mine, "", out);
    if (got == 0) got = try_take(st, dflt, "", out);
    size_t plen = strlen(dflt) + 1;
    for (size_t i = 0; got == 0 && qs->type == REDIS_REPLY_ARRAY && i < qs->elements; i++) {
        const char *q = fleet_reply_str(qs, i, NULL);
        if (!q || strncmp(q, dflt, plen - 1) || q[plen - 1] != ':' || !strcmp(q, mine)) continue;
        if (can_load(st, q + plen)) got = try_take(st, q, q + plen, out);
    }
    freeReplyObject(qs);
    return got;
}

/* The id of the newest entry of P wake ("0-0" when none), read before
 * looking at the queues, so that a job queued meanwhile still wakes us. */
static bool wake_mark(sdw_fleet *f, char *out, size_t n)
{
    char key[128];
    snprintf(key, sizeof key, "%swake", f->link.prefix);
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, "XREVRANGE");
    fleet_args_add(&a, key);
    fleet_args_add(&a, "+");
    fleet_args_add(&a, "-");
    fleet_args_add(&a, "COUNT");
    fleet_args_add(&a, "1");
    redisReply *r = fleet_command(f->gen, &a, 0);
    fleet_args_free(&a);
    if (!r) return false;
    snprintf(out, n, "0-0");
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements >= 1 && r->element[0]->element[0]->type == REDIS_REPLY_STRING)
        snprintf(out, n, "%s", r->element[0]->element[0]->str);
    freeReplyObject(r);
    return true;
}

static void wait_wake(sdw_fleet *f, const char *mark)
{
    char key[128], ms[24];
    snprintf(key, sizeof key, "%swake", f->link.prefix);
    /* Short enough to claim in time and to notice a stop. */
    int block = (int)clamp(fleet_ms(f->claim_after_s) / 4, 100, 1000);
    snprintf(ms, sizeof ms, "%d", block);
    fleet_args a;
    fleet_args_init(&a);
    const char *v[] = { "XREAD", "COUNT", "1", "BLOCK", ms, "STREAMS", key, mark };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) fleet_args_add(&a, v[i]);
    redisReply *r = fleet_command(f->gen, &a, block);
    fleet_args_free(&a);
    if (r) freeReplyObject(r);
    else fleet_conn_pause(f->gen, 1.0);
}

void fleet_worker_run(sdw_fleet *f)
{
    loop_state st = { .f = f };
    bool ran = false;
    while (!f->stop_taking) {
        char mark[64];
        redisReply *job = NULL;
        int got = wake_mark(f, mark, sizeof mark) ? take_next(&st, &job) : -1;
        if (got < 0) {
            if (f->gen->c) log_error(&st, "taking a job");
            fleet_conn_pause(f->gen, 1.0);
        } else if (got == 0) {
            /* Idle: give back what the last jobs' many threads freed. */
            if (ran) malloc_trim(0);
            ran = false;
            wait_wake(f, mark);
        } else {
            run_taken(f, job, &ran);
            freeReplyObject(job);
        }
    }
}
