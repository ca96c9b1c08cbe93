/* fleet.c: a process's place in the fleet (fleet.h): its settings, its
 * worker id, the keeper thread, the drain on SIGTERM, and what the whole
 * fleet looks like from here (/metrics' gauges, GET /v1/workers, the model
 * a front describes). A job moves queued -> claimed -> running ->
 * completed | failed | cancelled in Redis; this process owns one only
 * between its claim and its end (the generation thread, fleet_worker.c).
 *
 * The keeper thread is the process's pulse: on a worker it publishes the
 * running job's new events as soon as the generation thread adds them to
 * the job's local log, and heartbeats (the registry entry P worker:ID and
 * the time in P workers, which is what other workers read before they
 * claim a job from this one); on a front it pings, so that /ready knows
 * whether Redis answers even when no request came. */
#include "server/fleet_internal.h"
#include "server/server_log.h"
#include "core/error.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static double clamp(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

const char *fleet_worker_id(const sdw_fleet *f) { return f->id; }

/* ---------------------------------------------------------------- the keeper */

static bool events_waiting_locked(sdw_fleet *f)
{
    sdw_job *j = f->e->running;
    return j && j->fleet && !j->fleet->closed && j->fleet->published < j->n_events;
}

static void ping(fleet_conn *c)
{
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, "PING");
    redisReply *r = fleet_command(c, &a, 0);
    if (r) freeReplyObject(r);
    fleet_args_free(&a);
}

static void wait_until_locked(sdw_engine *e, double deadline)
{
    struct timespec ts;
    double secs = floor(deadline);
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((deadline - secs) * 1e9);
    pthread_cond_timedwait(&e->changed, &e->mu, &ts);
}

static void *keeper_main(void *arg)
{
    sdw_fleet *f = arg;
    sdw_engine *e = f->e;
    fleet_conn *pinger = f->worker ? NULL : fleet_conn_new(&f->link);
    double next_beat = 0, retry_at = 0;
    while (!f->quit) {
        double now = sdw_now();
        if (f->worker && now >= retry_at) {
            bool failed = false;
            pthread_mutex_lock(&f->pub_mu);
            fleet_publish_locked(f, &failed);
            if (now >= next_beat) {
                fleet_heartbeat_locked(f);
                next_beat = now + f->beat_every_s;
            }
            pthread_mutex_unlock(&f->pub_mu);
            /* Redis away: the events wait in the job's log for the next try. */
            retry_at = failed ? now + clamp(f->pub->backoff, 0.05, 1.0) : 0;
        } else if (pinger && now >= next_beat) {
            ping(pinger);
            next_beat = now + 1.0;
        }
        pthread_mutex_lock(&e->mu);
        double until = fmin(next_beat, sdw_now() + 1.0);
        if (retry_at > 0) until = fmin(until, retry_at);
        if (!f->quit && (!events_waiting_locked(f) || retry_at > 0)) wait_until_locked(e, until);
        pthread_mutex_unlock(&e->mu);
    }
    fleet_conn_free(pinger);
    return NULL;
}

/* ---------------------------------------------------------------- lifecycle */

static void make_id(sdw_fleet *f)
{
    if (f->cfg.worker_id && f->cfg.worker_id[0]) {
        snprintf(f->id, sizeof f->id, "%s", f->cfg.worker_id);
        return;
    }
    uint16_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) r = (uint16_t)(sdw_now() * 1e6);
    snprintf(f->id, sizeof f->id, "%.80s-%d-%04x", f->host, (int)getpid(), r);
}

sdw_status fleet_start(sdw_engine *e, const sdw_fleet_config *cfg, sdw_fleet **out)
{
    *out = NULL;
    fleet_url url;
    SDW_TRY(fleet_url_parse(cfg->redis_url, &url));
    const char *prefix = cfg->prefix && cfg->prefix[0] ? cfg->prefix : "sdw:";
    if (strlen(prefix) >= 48) return sdw_fail(SDW_ERR_INVALID_ARG, "--redis-prefix: at most 47 bytes");
    sdw_fleet *f = calloc(1, sizeof *f);
    if (!f) return sdw_fail(SDW_ERR_NOMEM, "fleet: out of memory");
    f->e = e;
    f->cfg = *cfg;
    f->cfg.redis_url = dup_or_null(cfg->redis_url);
    f->cfg.prefix = dup_or_null(prefix);
    f->cfg.worker_id = dup_or_null(cfg->worker_id);
    f->claim_after_s = cfg->claim_after_s > 0 ? cfg->claim_after_s : 30;
    if (f->cfg.max_attempts < 1) f->cfg.max_attempts = 2;
    /* Several heartbeats within --claim-after, so that one lost packet or
     * a slow step never makes a live worker look dead. */
    f->beat_every_s = clamp(f->claim_after_s / 5, 0.1, 5);
    /* A reader must find a result it waited for: never less than 10 s. */
    f->ttl_s = fmax(e->cfg.result_ttl_s, 10);
    f->worker = cfg->role != SDW_ROLE_FRONT;
    if (gethostname(f->host, sizeof f->host - 1)) snprintf(f->host, sizeof f->host, "localhost");
    make_id(f);
    /* Reconnecting must take well under --claim-after, or a worker that
     * only lost Redis for a moment would look dead to the others. */
    fleet_link_init(&f->link, &url, prefix, clamp(f->claim_after_s / 4, 0.2, 5));
    pthread_mutex_init(&f->pool_mu, NULL);
    pthread_mutex_init(&f->pub_mu, NULL);
    pthread_mutex_init(&f->cache_mu, NULL);
    if (f->worker && (!(f->gen = fleet_conn_new(&f->link)) || !(f->pub = fleet_conn_new(&f->link)))) {
        fleet_free(f);
        return sdw_fail(SDW_ERR_NOMEM, "fleet: out of memory");
    }
    if (pthread_create(&f->keeper, NULL, keeper_main, f)) {
        fleet_free(f);
        return sdw_fail(SDW_ERR_NOMEM, "fleet: cannot start the keeper thread");
    }
    f->keeper_started = true;
    sdw_srv_log("fleet: %s %s on redis %s (prefix %s, claim after %.1f s, %d attempts)",
                cfg->role == SDW_ROLE_FRONT ? "front" : cfg->role == SDW_ROLE_WORKER ? "worker" : "front and worker",
                f->id, f->link.where, prefix, f->claim_after_s, f->cfg.max_attempts);
    *out = f;
    return SDW_OK;
}

/* A stopped worker leaves the registry at once (its pending entries, if it
 * left any, are claimed as a dead worker's). */
static void deregister(sdw_fleet *f)
{
    char key[256];
    snprintf(key, sizeof key, "%sworker:%s", f->link.prefix, f->id);
    char zset[128];
    snprintf(zset, sizeof zset, "%sworkers", f->link.prefix);
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, "ZREM");
    fleet_args_add(&a, zset);
    fleet_args_add(&a, f->id);
    redisReply *r = fleet_command(f->pub, &a, 0);
    if (r) freeReplyObject(r);
    fleet_args_free(&a);
    fleet_args_init(&a);
    fleet_args_add(&a, "DEL");
    fleet_args_add(&a, key);
    if ((r = fleet_command(f->pub, &a, 0))) freeReplyObject(r);
    fleet_args_free(&a);
}

void fleet_free(sdw_fleet *f)
{
    if (!f) return;
    if (f->keeper_started) {
        pthread_mutex_lock(&f->e->mu);
        f->quit = true;
        pthread_cond_broadcast(&f->e->changed);
        pthread_mutex_unlock(&f->e->mu);
        pthread_join(f->keeper, NULL);
    }
    if (f->worker && f->pub) deregister(f);
    fleet_conn_free(f->gen);
    fleet_conn_free(f->pub);
    for (int i = 0; i < f->n_pool; i++) fleet_conn_free(f->pool[i]);
    pthread_mutex_destroy(&f->pool_mu);
    pthread_mutex_destroy(&f->pub_mu);
    pthread_mutex_destroy(&f->cache_mu);
    fleet_link_destroy(&f->link);
    free((char *)f->cfg.redis_url);
    free((char *)f->cfg.prefix);
    free((char *)f->cfg.worker_id);
    free(f);
}

void fleet_front_stop(sdw_fleet *f) { f->front_stopping = true; }

/* ---------------------------------------------------------------- the fleet as seen from here */

/* Runs a read-only script on a pooled connection. */
static redisReply *read_script(sdw_fleet *f, fleet_script_id id, const fleet_args *a)
{
    fleet_conn *c = fleet_pool_get(f);
    redisReply *r = c ? fleet_script(c, id, a) : NULL;
    fleet_pool_put(f, c);
    return r;
}

bool fleet_gauges(sdw_fleet *f, sdw_metrics_gauges *g)
{
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_addi(&a, fleet_ms(f->claim_after_s));
    redisReply *r = read_script(f, FLEET_GAUGES, &a);
    fleet_args_free(&a);
    g->fleet = true;
    g->redis_up = r != NULL;
    if (!r) return false;
    g->fleet_queue_depth = (int)fleet_reply_int(r, 0, 0);
    g->fleet_workers_live = (int)fleet_reply_int(r, 1, 0);
    g->fleet_workers_busy = (int)fleet_reply_int(r, 2, 0);
    for (int i = 0; i < 4; i++) g->fleet_jobs[i] = (unsigned long long)fleet_reply_int(r, (size_t)(3 + i), 0);
    freeReplyObject(r);
    return true;
}

static const char *elem(const redisReply *x, size_t i)
{
    const char *s = fleet_reply_str(x, i, NULL);
    return s ? s : "";
}

char *fleet_workers_json(sdw_fleet *f)
{
    fleet_args a;
    fleet_args_init(&a);
    redisReply *r = read_script(f, FLEET_WORKERS, &a);
    fleet_args_free(&a);
    if (!r) return NULL;
    long long now = fleet_reply_int(r, 0, 0);
    cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "workers");
    for (size_t i = 1; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *w = r->element[i];
        if (w->type != REDIS_REPLY_ARRAY || w->elements < 8) continue;
        long long beat = fleet_reply_int(w, 1, 0);
        double ago = (double)(now - beat) / 1000.0;
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "id", elem(w, 0));
        cJSON_AddStringToObject(x, "host", elem(w, 2));
        cJSON_AddNumberToObject(x, "pid", (double)fleet_reply_int(w, 3, 0));
        cJSON_AddStringToObject(x, "role", elem(w, 4));
        cJSON_AddStringToObject(x, "state", ago > f->claim_after_s ? "lost" : elem(w, 5));
        const char *job = elem(w, 6);
        if (job[0]) cJSON_AddStringToObject(x, "job", job);
        else cJSON_AddNullToObject(x, "job");
        cJSON_AddStringToObject(x, "model", elem(w, 7));
        cJSON_AddNumberToObject(x, "last_heartbeat", (double)beat / 1000.0);
        cJSON_AddNumberToObject(x, "last_heartbeat_ago_s", round(ago * 1000) / 1000);
        cJSON_AddBoolToObject(x, "alive", ago <= f->claim_after_s);
        cJSON_AddItemToArray(list, x);
    }
    freeReplyObject(r);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* GET /v1/workers: the fleet's, or without one this process alone. */
char *sdw_engine_workers_json(sdw_engine *e)
{
    if (e->fleet) return fleet_workers_json(e->fleet);
    /* One process: itself, the only worker there is. */
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    pthread_mutex_lock(&e->mu);
    cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "workers"), *w = cJSON_CreateObject();
    cJSON_AddStringToObject(w, "id", "local");
    cJSON_AddStringToObject(w, "host", host);
    cJSON_AddNumberToObject(w, "pid", getpid());
    cJSON_AddStringToObject(w, "role", "both");
    bool busy = e->running && e->running->state == SDW_JOB_RUNNING;
    cJSON_AddStringToObject(w, "state", e->state == SDW_ENGINE_LOADING ? "loading"
                                        : e->state != SDW_ENGINE_READY ? "stopping"
                                        : busy                          ? "busy"
                                                                        : "idle");
    if (busy) cJSON_AddStringToObject(w, "job", e->running->id);
    else cJSON_AddNullToObject(w, "job");
    cJSON_AddStringToObject(w, "model", e->has_model ? e->current.title : "");
    cJSON_AddNumberToObject(w, "last_heartbeat", (double)time(NULL));
    cJSON_AddNumberToObject(w, "last_heartbeat_ago_s", 0);
    cJSON_AddBoolToObject(w, "alive", true);
    pthread_mutex_unlock(&e->mu);
    cJSON_AddItemToArray(list, w);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

bool fleet_model_get(sdw_fleet *f, sdw_engine_model *out)
{
    double now = sdw_now();
    pthread_mutex_lock(&f->cache_mu);
    bool fresh = f->model_at > 0 && now - f->model_at < 1.0;
    if (fresh && f->have_model) *out = f->model;
    bool have = f->have_model;
    pthread_mutex_unlock(&f->cache_mu);
    if (fresh) return have;
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_addi(&a, fleet_ms(f->claim_after_s));
    redisReply *r = read_script(f, FLEET_MODELS, &a);
    fleet_args_free(&a);
    size_t n;
    const char *json = fleet_reply_str(r, 0, &n);
    sdw_engine_model *m = malloc(sizeof *m);
    have = m && json && fleet_model_parse(json, n, m) == SDW_OK;
    if (r) freeReplyObject(r);
    pthread_mutex_lock(&f->cache_mu);
    f->model_at = now;
    f->have_model = have;
    if (have) f->model = *m, *out = *m;
    pthread_mutex_unlock(&f->cache_mu);
    free(m);
    return have;
}

/* ---------------------------------------------------------------- stopping */

void fleet_drain(sdw_fleet *f, double timeout_s)
{
    sdw_engine *e = f->e;
    pthread_mutex_lock(&e->mu);
    if (e->state != SDW_ENGINE_FAILED) e->state = SDW_ENGINE_STOPPING;
    pthread_cond_broadcast(&e->changed);
    pthread_mutex_unlock(&e->mu);
    /* The queued jobs are the fleet's: they stay for the other workers. */
    fleet_worker_stop_taking(f);
    double deadline = sdw_now() + timeout_s;
    pthread_mutex_lock(&e->mu);
    while ((e->running || f->waiting > 0) && sdw_now() < deadline)
        wait_until_locked(e, fmin(deadline, sdw_now() + 0.05));
    if (e->running) {
        sdw_srv_log("drain timeout (%g s): handing job %s back to the queue", timeout_s, e->running->id);
        pthread_mutex_unlock(&e->mu);
        fleet_worker_hand_back(f);
        pthread_mutex_lock(&e->mu);
        /* It stops at its next step; a Redis that is away gets 10 s more. */
        double give_up = sdw_now() + 10;
        while (e->running && sdw_now() < give_up) wait_until_locked(e, give_up);
        if (e->running) fleet_worker_abandon(f);
        while (e->running) pthread_cond_wait(&e->changed, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    fleet_front_stop(f);
}
