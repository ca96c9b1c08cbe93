/* fleet_stream.c: a job's SSE stream on a front of the fleet: a cursor over
 * the job's event stream in Redis (PREFIXevents:ID, entries 0-1, 0-2, ...),
 * which only the job's owner of the moment adds to (the worker that claimed
 * it, while running; the script that ends it, with the final events); the
 * cursor only reads.
 *
 * Whichever process added an event (the worker that ran the job, the one
 * that claimed it after that one was lost, the front that cancelled it),
 * every front reads the same entries, so a client sees the same ids on any
 * front, and one that comes back with Last-Event-ID N (to this front or
 * another, after a front died) goes on from entry 0-N. The cursor holds a
 * pooled connection for its blocking reads (XREAD BLOCK at most a second,
 * so a stopping front ends its streams soon); while Redis is away it sends
 * keep-alive comments and reads on when it is back. */
#include "server/fleet_internal.h"
#include "core/error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How often a quiet stream checks that its job still exists. */
#define EXISTS_CHECK_S 5.0

struct fleet_stream {
    sdw_fleet *f;
    fleet_conn *c;
    char key[128], job_key[128];
    char last[64];            /* the last entry read: "0-N" */
    char *pending;            /* frames read but not yet sent */
    size_t len, off;
    bool hello_sent, done, ended;
    int keepalive_s;
    double last_sent, last_check;
};

static bool job_exists(struct fleet_stream *s, bool *known)
{
    fleet_args a;
    fleet_args_init(&a);
    fleet_args_add(&a, "EXISTS");
    fleet_args_add(&a, s->job_key);
    redisReply *r = fleet_command(s->c, &a, 0);
    fleet_args_free(&a);
    *known = r != NULL;
    bool yes = !r || (r->type == REDIS_REPLY_INTEGER && r->integer > 0);
    if (r) freeReplyObject(r);
    return yes;
}

struct fleet_stream *fleet_stream_open(sdw_fleet *f, const char *id, long long last_event_id, int keepalive_s)
{
    struct fleet_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->f = f;
    s->c = fleet_pool_get(f);
    snprintf(s->key, sizeof s->key, "%sevents:%s", f->link.prefix, id);
    snprintf(s->job_key, sizeof s->job_key, "%sjob:%s", f->link.prefix, id);
    snprintf(s->last, sizeof s->last, "0-%lld", last_event_id > 0 ? last_event_id : 0);
    s->keepalive_s = keepalive_s > 0 ? keepalive_s : 15;
    s->last_sent = s->last_check = sdw_now();
    /* Unknown job: 404. Redis away: the stream opens and waits for it. */
    bool known;
    if (!s->c || !job_exists(s, &known)) {
        fleet_stream_close(s);
        return NULL;
    }
    return s;
}

/* Appends the frames of an XREAD answer to pending. */
static void add_frames(struct fleet_stream *s, const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || !r->elements || r->element[0]->elements != 2) return;
    const redisReply *entries = r->element[0]->element[1];
    for (size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements && !s->done; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING) continue;
        snprintf(s->last, sizeof s->last, "%s", e->element[0]->str);
        const redisReply *fv = e->element[1];
        fleet_field fields[8];
        int n = 0;
        for (size_t k = 0; fv->type == REDIS_REPLY_ARRAY && k + 1 < fv->elements && n < 8; k += 2) {
            const redisReply *name = fv->element[k], *value = fv->element[k + 1];
            if (name->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING) continue;
            fields[n++] = (fleet_field){ name->str, name->len, value->str, value->len };
        }
        char *frame;
        size_t len;
        long long seq;
        bool done;
        /* An entry that is not one of ours is skipped, not sent. */
        if (fleet_event_frame(e->element[0]->str, e->element[0]->len, fields, n, &frame, &len, &seq, &done) != SDW_OK)
            continue;
        char *p = realloc(s->pending, s->len + len);
        if (p) {
            memcpy(p + s->len, frame, len);
            s->pending = p;
            s->len += len;
            s->done = done;
        }
        free(frame);
    }
}

static ssize_t send_pending(struct fleet_stream *s, char *buf, size_t max)
{
    size_t k = s->len - s->off;
    if (k > max) k = max;
    memcpy(buf, s->pending + s->off, k);
    s->off += k;
    if (s->off == s->len) {
        free(s->pending);
        s->pending = NULL;
        s->len = s->off = 0;
    }
    s->last_sent = sdw_now();
    return (ssize_t)k;
}

static ssize_t put_text(struct fleet_stream *s, char *buf, size_t max, const char *text)
{
    size_t n = strlen(text);
    if (n > max) n = max;
    memcpy(buf, text, n);
    s->last_sent = sdw_now();
    return (ssize_t)n;
}

ssize_t fleet_stream_read(struct fleet_stream *s, char *buf, size_t max)
{
    if (s->ended || max == 0) return -1;
    if (!s->hello_sent) {
        s->hello_sent = true;
        return put_text(s, buf, max, ": sd-worker fleet job stream\nretry: 2000\n\n");
    }
    for (;;) {
        if (s->len > s->off) return send_pending(s, buf, max);
        if (s->done || s->f->front_stopping) {
            s->ended = true;
            return -1;
        }
        double quiet = sdw_now() - s->last_sent;
        if (quiet >= s->keepalive_s) return put_text(s, buf, max, ": keep-alive\n\n");
        int block = (int)((s->keepalive_s - quiet) * 1000);
        if (block > 1000) block = 1000;
        if (block < 1) block = 1;
        char ms[16];
        snprintf(ms, sizeof ms, "%d", block);
        fleet_args a;
        fleet_args_init(&a);
        const char *v[] = { "XREAD", "COUNT", "32", "BLOCK", ms, "STREAMS", s->key, s->last };
        for (size_t i = 0; i < sizeof v / sizeof *v; i++) fleet_args_add(&a, v[i]);
        redisReply *r = fleet_command(s->c, &a, block);
        fleet_args_free(&a);
        if (!r) {
            fleet_conn_pause(s->c, 1.0);
            continue;
        }
        add_frames(s, r);
        freeReplyObject(r);
        /* A job that expired while a client waited on it: end the stream. */
        if (s->len == s->off && sdw_now() - s->last_check > EXISTS_CHECK_S) {
            bool known;
            s->last_check = sdw_now();
            if (!job_exists(s, &known) && known) {
                s->ended = true;
                return -1;
            }
        }
    }
}

void fleet_stream_close(struct fleet_stream *s)
{
    if (!s) return;
    fleet_pool_put(s->f, s->c);
    free(s->pending);
    free(s);
}
