/* fleet_internal.h: what the fleet's files share (fleet.h says how a job
 * moves, queued -> claimed -> running -> completed | failed | cancelled,
 * and who owns it): the process's fleet (struct sdw_fleet), the link to
 * Redis with its connections (fleet_redis.c), the Lua scripts
 * (fleet_scripts.c) and a job's fleet side (struct fleet_job). Nothing
 * outside fleet*.c and the engine includes this. */
#ifndef SDW_SERVER_FLEET_INTERNAL_H
#define SDW_SERVER_FLEET_INTERNAL_H
#include "server/engine_internal.h"
#include "server/fleet.h"
#include "server/fleet_record.h"
#include <hiredis/hiredis.h>
#include <stdatomic.h>

/* ---------------------------------------------------------------- the link to Redis */

/* Shared by every connection of the process: whether Redis answers, and
 * since when, so that the log says once when it goes away and once when it
 * comes back, and /ready can answer without asking. */
typedef struct {
    fleet_url url;
    char where[300];          /* "host:port/db" */
    char prefix[64];
    double backoff_max;       /* seconds between tries at most */
    pthread_mutex_t mu;
    bool up;
    double up_since, down_since, last_log;
    char error[512];
} fleet_link;

/* One connection: used by one thread at a time. After a failure it waits
 * (doubling from 0.1 s to the link's backoff_max) before connecting again. */
typedef struct {
    fleet_link *link;
    redisContext *c;
    double backoff, next_try;
} fleet_conn;

void fleet_link_init(fleet_link *l, const fleet_url *u, const char *prefix, double backoff_max);
void fleet_link_destroy(fleet_link *l);
/* Seconds Redis has answered without a break (0 while down). */
double fleet_link_up_for(fleet_link *l);

fleet_conn *fleet_conn_new(fleet_link *l);
void fleet_conn_free(fleet_conn *c);
/* Sleeps until the connection may try again (at most max_s). */
void fleet_conn_pause(fleet_conn *c, double max_s);

/* A command's arguments: strings (kept by the caller) and numbers. */
typedef struct {
    const char **v;
    size_t *len;
    int n, cap;
    char (*nums)[24];         /* the text of added numbers */
    int n_nums, cap_nums;
    bool oom;
} fleet_args;
void fleet_args_init(fleet_args *a);
void fleet_args_free(fleet_args *a);
void fleet_args_add(fleet_args *a, const char *s);
void fleet_args_addn(fleet_args *a, const void *s, size_t n);
void fleet_args_addi(fleet_args *a, long long v);
void fleet_args_addf(fleet_args *a, double v);

/* One attempt: connects first when needed (unless waiting out a backoff).
 * NULL with sdw_fail when Redis could not be reached or answered an error
 * (the message says which); else the reply, for the caller to free. A
 * block_ms > 0 allows a blocking command that long. */
redisReply *fleet_command(fleet_conn *c, const fleet_args *a, int block_ms);

typedef enum {
    FLEET_SUBMIT, FLEET_TAKE, FLEET_CLAIM, FLEET_PUBLISH, FLEET_FINISH, FLEET_REQUEUE, FLEET_CANCEL, FLEET_STATUS,
    FLEET_PROGRESS, FLEET_GAUGES, FLEET_WORKERS, FLEET_MODELS, FLEET_HEARTBEAT, FLEET_SCRIPT_COUNT
} fleet_script_id;
/* Runs a script (EVALSHA, loading it again after a Redis restart) with the
 * prefix as its first argument and then a's; as fleet_command. */
redisReply *fleet_script(fleet_conn *c, fleet_script_id id, const fleet_args *a);
/* The Lua source of a script, and its SHA-1 (fleet_scripts.c). */
const char *fleet_script_source(fleet_script_id id);
const char *fleet_script_sha(fleet_script_id id);
const char *fleet_script_name(fleet_script_id id);

/* Reply helpers: the text of an array element (NULL when not a string). */
const char *fleet_reply_str(const redisReply *r, size_t i, size_t *len);
long long fleet_reply_int(const redisReply *r, size_t i, long long dflt);

/* ---------------------------------------------------------------- the process's fleet */

#define FLEET_POOL_MAX 32
#define FLEET_QUEUE_GROUP "workers"

struct sdw_fleet {
    sdw_engine *e;
    sdw_fleet_config cfg;     /* strings owned */
    char id[128];             /* this worker's consumer name */
    char host[256];
    bool worker;              /* generates (role both or worker) */
    double claim_after_s, beat_every_s;
    double ttl_s;             /* of a finished job's record and events */
    fleet_link link;

    /* Connections for HTTP threads (a front). */
    pthread_mutex_t pool_mu;
    fleet_conn *pool[FLEET_POOL_MAX];
    int n_pool;

    /* A worker's: the generation thread's connection; the publishing one
     * (events, ends of jobs, heartbeats) under pub_mu, so that a job's
     * events reach Redis in order and before its end. */
    fleet_conn *gen;
    fleet_conn *pub;
    pthread_mutex_t pub_mu;
    atomic_bool stop_taking, hand_back, abandon;

    /* The keeper thread: heartbeats, the running job's events, pings. */
    pthread_t keeper;
    bool keeper_started;
    atomic_bool quit, front_stopping;
    atomic_int waiting;       /* synchronous requests waiting for their job (fleet_wait) */

    /* A front's cache of the fleet's model. */
    pthread_mutex_t cache_mu;
    double model_at;
    bool have_model;
    sdw_engine_model model;
};

/* A job's fleet side. A worker's run: the queue entry it holds, the attempt
 * it started (its fencing token), how much of the local event log Redis
 * has. A front's view: its error code. */
struct fleet_job {
    char queue[600];
    char entry[64];
    char attempt[24];
    int published;            /* events of j->events already in Redis (under pub_mu) */
    bool lost;                /* the record no longer names this run: drop it */
    bool hand_back;           /* requeue instead of finishing */
    bool closed;              /* ended in Redis: publish nothing more */
    char code[48];            /* the front's copy of the error code */
};

fleet_conn *fleet_pool_get(sdw_fleet *f);
void fleet_pool_put(sdw_fleet *f, fleet_conn *c);

/* Milliseconds, the unit of the scripts' times. */
long long fleet_ms(double s);
/* The worker's side of the keeper (fleet_worker.c): the running job's
 * events not yet in Redis; under pub_mu. */
void fleet_publish_locked(sdw_fleet *f, bool *failed);
/* The registry entry of this worker (fleet_worker.c); under pub_mu. */
void fleet_heartbeat_locked(sdw_fleet *f);
#endif
