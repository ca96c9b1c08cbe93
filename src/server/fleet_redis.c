/* fleet_redis.c: the link to Redis: connections that come back by
 * themselves, the scripts run on them, and the pool HTTP threads draw from.
 * It carries no job state: a job's moves (queued -> claimed -> running ->
 * completed | failed | cancelled) are the scripts' (fleet_scripts.c), and
 * each connection belongs to one thread at a time (a pooled one to the HTTP
 * thread that drew it, a worker's two to its generation and keeper threads).
 *
 * A connection is made when first used and after every failure, no sooner
 * than its backoff allows (0.1 s doubling up to --claim-after / 4, at most
 * 5 s): callers retry in their own loops, so a Redis that restarts, or a
 * network that is cut for a while, costs only the wait. Each new connection
 * checks it is talking to a Redis it can use (AUTH, SELECT, version >= 6.2,
 * streams from Lua), so that a wrong URL or a server without streams is a
 * clear line in the log, retried, instead of jobs failing one by one. The
 * link (shared by a process's connections) says in the log once when Redis
 * goes away, every 30 s while it stays away, and once when it is back. */
#include "server/fleet_internal.h"
#include "server/server_log.h"
#include "core/error.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds a command may take before the connection is given up. */
#define COMMAND_TIMEOUT_S 10
#define CONNECT_TIMEOUT_S 2

long long fleet_ms(double s) { return (long long)llround(s * 1000.0); }

/* ---------------------------------------------------------------- the link */

void fleet_link_init(fleet_link *l, const fleet_url *u, const char *prefix, double backoff_max)
{
    memset(l, 0, sizeof *l);
    l->url = *u;
    fleet_url_describe(u, l->where, sizeof l->where);
    snprintf(l->prefix, sizeof l->prefix, "%s", prefix);
    l->backoff_max = backoff_max;
    snprintf(l->error, sizeof l->error, "not connected yet");
    pthread_mutex_init(&l->mu, NULL);
}

void fleet_link_destroy(fleet_link *l) { pthread_mutex_destroy(&l->mu); }

static void link_down(fleet_link *l, const char *msg)
{
    pthread_mutex_lock(&l->mu);
    double now = sdw_now();
    snprintf(l->error, sizeof l->error, "%s", msg);
    if (l->up || l->last_log == 0) {
        sdw_srv_log("redis %s: %s; retrying with backoff (0.1 s up to %.1f s)", l->where, msg, l->backoff_max);
        l->down_since = now;
        l->last_log = now;
    } else if (now - l->last_log >= 30) {
        sdw_srv_log("redis %s: still unreachable after %.0f s: %s", l->where, now - l->down_since, msg);
        l->last_log = now;
    }
    l->up = false;
    pthread_mutex_unlock(&l->mu);
}

static void link_up(fleet_link *l)
{
    pthread_mutex_lock(&l->mu);
    if (!l->up) {
        double now = sdw_now();
        if (l->down_since > 0) sdw_srv_log("redis %s: connected again after %.1f s", l->where, now - l->down_since);
        else sdw_srv_log("redis %s: connected", l->where);
        l->up = true;
        l->up_since = now;
        l->last_log = now;
    }
    pthread_mutex_unlock(&l->mu);
}

double fleet_link_up_for(fleet_link *l)
{
    pthread_mutex_lock(&l->mu);
    double t = l->up ? sdw_now() - l->up_since : 0;
    pthread_mutex_unlock(&l->mu);
    return t;
}

bool fleet_redis_ok(sdw_fleet *f, char *err, size_t n)
{
    fleet_link *l = &f->link;
    pthread_mutex_lock(&l->mu);
    bool up = l->up;
    if (err && n) snprintf(err, n, "redis %s: %s", l->where, l->error);
    pthread_mutex_unlock(&l->mu);
    return up;
}

/* ---------------------------------------------------------------- arguments */

void fleet_args_init(fleet_args *a) { memset(a, 0, sizeof *a); }

void fleet_args_free(fleet_args *a)
{
    free(a->v);
    free(a->len);
    free(a->nums);
    memset(a, 0, sizeof *a);
}

/* Appends an argument: s with n bytes, or (s NULL) the number nums[n]. */
static void push(fleet_args *a, const void *s, size_t n)
{
    if (a->oom) return;
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 16;
        const char **v = realloc(a->v, (size_t)cap * sizeof *v);
        if (v) a->v = v;
        size_t *len = realloc(a->len, (size_t)cap * sizeof *len);
        if (len) a->len = len;
        if (!v || !len) {
            a->oom = true;
            return;
        }
        a->cap = cap;
    }
    a->v[a->n] = s;
    a->len[a->n++] = n;
}

void fleet_args_addn(fleet_args *a, const void *s, size_t n) { push(a, s ? s : "", s ? n : 0); }

void fleet_args_add(fleet_args *a, const char *s) { fleet_args_addn(a, s, s ? strlen(s) : 0); }

/* Numbers are kept in a's own buffer, which may move as it grows: an
 * argument holds the number's index until argv_of makes the command. */
static void add_num(fleet_args *a, const char *text)
{
    if (a->oom) return;
    if (a->n_nums == a->cap_nums) {
        int cap = a->cap_nums ? a->cap_nums * 2 : 8;
        char(*nums)[24] = realloc(a->nums, (size_t)cap * sizeof *nums);
        if (!nums) {
            a->oom = true;
            return;
        }
        a->nums = nums;
        a->cap_nums = cap;
    }
    snprintf(a->nums[a->n_nums], sizeof a->nums[0], "%s", text);
    push(a, NULL, (size_t)a->n_nums++);
}

void fleet_args_addi(fleet_args *a, long long v)
{
    char b[24];
    snprintf(b, sizeof b, "%lld", v);
    add_num(a, b);
}

void fleet_args_addf(fleet_args *a, double v)
{
    char b[24];
    snprintf(b, sizeof b, "%.6g", isfinite(v) ? v : 0.0);
    add_num(a, b);
}

/* The argv of a command: a's strings with its numbers in place, after
 * `head` leading arguments. */
static bool argv_of(const fleet_args *a, const char **head, const size_t *head_len, int n_head, const char ***v,
                    size_t **len)
{
    int n = n_head + a->n;
    *v = malloc((size_t)(n ? n : 1) * sizeof **v);
    *len = malloc((size_t)(n ? n : 1) * sizeof **len);
    if (!*v || !*len || a->oom) {
        free(*v);
        free(*len);
        return false;
    }
    for (int i = 0; i < n_head; i++) {
        (*v)[i] = head[i];
        (*len)[i] = head_len[i];
    }
    for (int i = 0; i < a->n; i++) {
        if (a->v[i]) {
            (*v)[n_head + i] = a->v[i];
            (*len)[n_head + i] = a->len[i];
        } else {
            (*v)[n_head + i] = a->nums[a->len[i]];
            (*len)[n_head + i] = strlen(a->nums[a->len[i]]);
        }
    }
    return true;
}

/* ---------------------------------------------------------------- connections */

fleet_conn *fleet_conn_new(fleet_link *l)
{
    fleet_conn *c = calloc(1, sizeof *c);
    if (c) c->link = l;
    return c;
}

static void drop(fleet_conn *c)
{
    if (c->c) redisFree(c->c);
    c->c = NULL;
}

void fleet_conn_free(fleet_conn *c)
{
    if (!c) return;
    drop(c);
    free(c);
}

static void backoff(fleet_conn *c)
{
    double max = c->link->backoff_max;
    c->backoff = c->backoff <= 0 ? 0.1 : fmin(c->backoff * 2, max);
    c->next_try = sdw_now() + c->backoff;
}

/* A connection-level failure: the link is down, this connection waits. */
static redisReply *failed(fleet_conn *c, const char *msg)
{
    drop(c);
    backoff(c);
    link_down(c->link, msg);
    sdw_fail(SDW_ERR_IO, "redis %s: %s", c->link->where, msg);
    return NULL;
}

void fleet_conn_pause(fleet_conn *c, double max_s)
{
    double wait = c->next_try - sdw_now();
    if (wait <= 0) wait = 0.05;
    if (wait > max_s) wait = max_s;
    struct timespec ts = { (time_t)wait, (long)((wait - floor(wait)) * 1e9) };
    nanosleep(&ts, NULL);
}

static void set_timeout(redisContext *ctx, double s)
{
    struct timeval tv = { (time_t)s, (suseconds_t)((s - floor(s)) * 1e6) };
    redisSetTimeout(ctx, tv);
}

static redisReply *raw(redisContext *ctx, int argc, const char **argv, const size_t *len)
{
    return redisCommandArgv(ctx, argc, argv, len);
}

/* The checks of a new connection; false with *why filled. */
static bool usable(fleet_conn *c, char *why, size_t n)
{
    const fleet_url *u = &c->link->url;
    redisReply *r;
    if (u->pass[0]) {
        /* AUTH user pass (Redis 6 ACLs), or AUTH pass for the default user. */
        const char *v[3] = { "AUTH", u->user[0] ? u->user : u->pass, u->pass };
        size_t len[3] = { 4, strlen(v[1]), strlen(v[2]) };
        r = raw(c->c, u->user[0] ? 3 : 2, v, len);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, n, "AUTH failed: %s", r ? r->str : c->c->errstr);
            if (r) freeReplyObject(r);
            return false;
        }
        freeReplyObject(r);
    }
    if (u->db) {
        r = redisCommand(c->c, "SELECT %d", u->db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, n, "SELECT %d failed: %s", u->db, r ? r->str : c->c->errstr);
            if (r) freeReplyObject(r);
            return false;
        }
        freeReplyObject(r);
    }
    r = redisCommand(c->c, "INFO server");
    if (!r || r->type != REDIS_REPLY_STRING) {
        snprintf(why, n, "not a Redis server that sd-worker can use (INFO answered %s)",
                 r && r->type == REDIS_REPLY_ERROR ? r->str : r ? "something else" : c->c->errstr);
        if (r) freeReplyObject(r);
        return false;
    }
    const char *ver = strstr(r->str, "redis_version:");
    int major = 0, minor = 0;
    if (!ver || sscanf(ver + 14, "%d.%d", &major, &minor) != 2 || major < 6 || (major == 6 && minor < 2)) {
        snprintf(why, n, "Redis %d.%d is too old: sd-worker needs 6.2 or later (streams with XPENDING IDLE and XAUTOCLAIM)",
                 major, minor);
        freeReplyObject(r);
        return false;
    }
    freeReplyObject(r);
    /* Streams from Lua: the scripts' whole basis. */
    r = redisCommand(c->c, "EVAL %s 1 %swake", "return redis.call('XLEN', KEYS[1])", c->link->prefix);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        snprintf(why, n, "cannot run sd-worker's scripts (Lua with streams): %s", r ? r->str : c->c->errstr);
        if (r) freeReplyObject(r);
        return false;
    }
    freeReplyObject(r);
    return true;
}

static bool connect_now(fleet_conn *c)
{
    if (c->c) return true;
    if (sdw_now() < c->next_try) {
        char err[600];
        pthread_mutex_lock(&c->link->mu);
        snprintf(err, sizeof err, "%s", c->link->error);
        pthread_mutex_unlock(&c->link->mu);
        sdw_fail(SDW_ERR_IO, "redis %s: %s", c->link->where, err);
        return false;
    }
    const fleet_url *u = &c->link->url;
    struct timeval tv = { CONNECT_TIMEOUT_S, 0 };
    c->c = redisConnectWithTimeout(u->host, u->port, tv);
    char why[600];
    if (!c->c || c->c->err) {
        snprintf(why, sizeof why, "cannot connect: %s", c->c ? c->c->errstr : "out of memory");
        failed(c, why);
        return false;
    }
    set_timeout(c->c, COMMAND_TIMEOUT_S);
    redisEnableKeepAlive(c->c);
    if (!usable(c, why, sizeof why)) {
        failed(c, why);
        return false;
    }
    c->backoff = 0;
    link_up(c->link);
    return true;
}

/* Sends argv; returns the reply, error replies included, or NULL when the
 * connection failed (it is dropped). */
static redisReply *send_argv(fleet_conn *c, int argc, const char **argv, const size_t *len, int block_ms)
{
    if (!connect_now(c)) return NULL;
    if (block_ms > 0) set_timeout(c->c, COMMAND_TIMEOUT_S + block_ms / 1000.0);
    redisReply *r = raw(c->c, argc, argv, len);
    if (!r) {
        char why[600];
        snprintf(why, sizeof why, "connection lost: %s", c->c->errstr[0] ? c->c->errstr : "no answer");
        return failed(c, why);
    }
    if (block_ms > 0) set_timeout(c->c, COMMAND_TIMEOUT_S);
    link_up(c->link);
    return r;
}

static redisReply *checked(fleet_conn *c, redisReply *r, const char *what)
{
    if (r && r->type == REDIS_REPLY_ERROR) {
        sdw_fail(SDW_ERR_FORMAT, "redis %s answered %s with an error: %s", c->link->where, what, r->str);
        freeReplyObject(r);
        backoff(c);
        return NULL;
    }
    if (r) c->backoff = 0;
    return r;
}

redisReply *fleet_command(fleet_conn *c, const fleet_args *a, int block_ms)
{
    const char **v;
    size_t *len;
    if (!argv_of(a, NULL, NULL, 0, &v, &len) || a->n == 0) {
        sdw_fail(SDW_ERR_NOMEM, "out of memory");
        return NULL;
    }
    char what[32];
    snprintf(what, sizeof what, "%.*s", (int)(len[0] < 20 ? len[0] : 20), v[0]);
    redisReply *r = checked(c, send_argv(c, a->n, v, len, block_ms), what);
    free(v);
    free(len);
    return r;
}

redisReply *fleet_script(fleet_conn *c, fleet_script_id id, const fleet_args *a)
{
    const char *head[4] = { "EVALSHA", fleet_script_sha(id), "0", c->link->prefix };
    size_t head_len[4] = { 7, strlen(head[1]), 1, strlen(head[3]) };
    const char **v;
    size_t *len;
    if (!argv_of(a, head, head_len, 4, &v, &len)) {
        sdw_fail(SDW_ERR_NOMEM, "out of memory");
        return NULL;
    }
    redisReply *r = send_argv(c, a->n + 4, v, len, 0);
    /* A restarted Redis has forgotten the scripts: send this one whole
     * (EVAL also caches it for the next EVALSHA). */
    if (r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOSCRIPT", 8)) {
        freeReplyObject(r);
        v[0] = "EVAL";
        len[0] = 4;
        v[1] = fleet_script_source(id);
        len[1] = strlen(v[1]);
        r = send_argv(c, a->n + 4, v, len, 0);
    }
    free(v);
    free(len);
    return checked(c, r, fleet_script_name(id));
}

/* ---------------------------------------------------------------- replies */

const char *fleet_reply_str(const redisReply *r, size_t i, size_t *len)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements) return NULL;
    const redisReply *x = r->element[i];
    if (x->type != REDIS_REPLY_STRING && x->type != REDIS_REPLY_STATUS) return NULL;
    if (len) *len = x->len;
    return x->str;
}

long long fleet_reply_int(const redisReply *r, size_t i, long long dflt)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements) return dflt;
    const redisReply *x = r->element[i];
    if (x->type == REDIS_REPLY_INTEGER) return x->integer;
    if (x->type == REDIS_REPLY_STRING) {
        char *end;
        long long v = strtoll(x->str, &end, 10);
        return end != x->str ? v : dflt;
    }
    return dflt;
}

/* ---------------------------------------------------------------- the pool */

fleet_conn *fleet_pool_get(sdw_fleet *f)
{
    pthread_mutex_lock(&f->pool_mu);
    fleet_conn *c = f->n_pool ? f->pool[--f->n_pool] : NULL;
    pthread_mutex_unlock(&f->pool_mu);
    return c ? c : fleet_conn_new(&f->link);
}

void fleet_pool_put(sdw_fleet *f, fleet_conn *c)
{
    if (!c) return;
    pthread_mutex_lock(&f->pool_mu);
    /* A broken connection is kept too: its backoff tells the next user to
     * wait, instead of every request trying a dead Redis at once. */
    if (f->n_pool < FLEET_POOL_MAX) {
        f->pool[f->n_pool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&f->pool_mu);
    fleet_conn_free(c);
}
