/* job_events.c: a job's event log and the SSE cursors over it.
 *
 * Every event a job produces (progress, preview, complete, error, done) is
 * appended, as a finished SSE frame, to the job's log under the engine's
 * mutex, and `changed` is broadcast. A client's stream is a cursor (event
 * index, byte offset) into that log: a late client starts at the beginning
 * and so replays the job's state so far before the live events, any number
 * of clients read one job independently, and a client that goes away only
 * drops its cursor (and its reference on the job), never touching the job.
 * In a fleet the log is the job's stream in Redis, and the cursor is
 * fleet_stream.c's. */
#include "server/engine_internal.h"
#include "server/fleet.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* After the result was streamed, the job stays this long for other readers. */
#define READ_GRACE_S 10.0

struct sdw_stream {
    sdw_engine *e;
    sdw_job *j;
    struct fleet_stream *fleet;   /* in a fleet, instead of j */
    int idx;                  /* next event to send */
    size_t off;               /* bytes of it already sent */
    bool hello_sent, ended;
    int keepalive_s;
};

void job_emit_locked(sdw_engine *e, sdw_job *j, const char *event, char *json)
{
    if (!json) return;
    if (j->n_events == j->cap_events) {
        int cap = j->cap_events ? j->cap_events * 2 : 32;
        sdw_event *v = realloc(j->events, (size_t)cap * sizeof *v);
        if (!v) {
            free(json);
            return;
        }
        j->events = v;
        j->cap_events = cap;
    }
    long long id = j->next_event_id++;
    size_t len = strlen(json) + strlen(event) + 64;
    char *text = malloc(len);
    if (!text) {
        free(json);
        return;
    }
    int head = snprintf(text, len, "id: %lld\nevent: %s\ndata: ", id, event);
    int k = head + snprintf(text + head, len - (size_t)head, "%s\n\n", json);
    free(json);
    sdw_event *ev = &j->events[j->n_events++];
    *ev = (sdw_event){ .id = id, .text = text, .len = (size_t)k, .data_off = (size_t)head, .data_len = (size_t)(k - head - 2) };
    snprintf(ev->name, sizeof ev->name, "%s", event);
    pthread_cond_broadcast(&e->changed);
}

void job_emit(sdw_engine *e, sdw_job *j, const char *event, char *json)
{
    pthread_mutex_lock(&e->mu);
    job_emit_locked(e, j, event, json);
    pthread_mutex_unlock(&e->mu);
}

sdw_stream *sdw_engine_stream_open(sdw_engine *e, const char *id, long long last_event_id, int keepalive_s)
{
    sdw_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    if (e->fleet) {
        s->e = e;
        if (!(s->fleet = fleet_stream_open(e->fleet, id, last_event_id, keepalive_s))) {
            free(s);
            return NULL;
        }
        return s;
    }
    pthread_mutex_lock(&e->mu);
    sdw_job *j = NULL;
    for (sdw_job *x = e->head; x; x = x->next)
        if (!strcmp(x->id, id)) j = x;
    if (j) {
        j->refs++;
        while (s->idx < j->n_events && j->events[s->idx].id <= last_event_id) s->idx++;
    }
    pthread_mutex_unlock(&e->mu);
    if (!j) {
        free(s);
        return NULL;
    }
    s->e = e;
    s->j = j;
    s->keepalive_s = keepalive_s > 0 ? keepalive_s : 15;
    return s;
}

static size_t put_text(char *buf, size_t max, const char *text)
{
    size_t n = strlen(text);
    if (n > max) n = max;
    memcpy(buf, text, n);
    return n;
}

ssize_t sdw_stream_read(sdw_stream *s, char *buf, size_t max)
{
    if (s->fleet) return fleet_stream_read(s->fleet, buf, max);
    if (s->ended || max == 0) return -1;
    sdw_engine *e = s->e;
    sdw_job *j = s->j;
    if (!s->hello_sent) {
        /* Something at once, so the response headers go out now. */
        char hello[80];
        snprintf(hello, sizeof hello, ": sd-worker job %s\nretry: 2000\n\n", j->id);
        s->hello_sent = true;
        return (ssize_t)put_text(buf, max, hello);
    }
    pthread_mutex_lock(&e->mu);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += s->keepalive_s;
    ssize_t n = 0;
    for (;;) {
        if (s->idx < j->n_events) {
            const sdw_event *ev = &j->events[s->idx];
            size_t k = ev->len - s->off;
            if (k > max) k = max;
            memcpy(buf, ev->text + s->off, k);
            s->off += k;
            if (s->off == ev->len) {
                s->idx++;
                s->off = 0;
            }
            n = (ssize_t)k;
            break;
        }
        bool final = j->state == SDW_JOB_COMPLETED || j->state == SDW_JOB_FAILED || j->state == SDW_JOB_CANCELLED;
        if (final) {
            /* The log ends with `done`: the whole result has been sent. */
            if (j->state == SDW_JOB_COMPLETED && j->expires > sdw_now() + READ_GRACE_S)
                j->expires = sdw_now() + READ_GRACE_S;
            s->ended = true;
            n = -1;
            break;
        }
        if (pthread_cond_timedwait(&e->changed, &e->mu, &deadline)) {
            n = (ssize_t)put_text(buf, max, ": keep-alive\n\n");
            break;
        }
    }
    pthread_mutex_unlock(&e->mu);
    return n;
}

void sdw_stream_close(sdw_stream *s)
{
    if (!s) return;
    if (s->fleet) fleet_stream_close(s->fleet);
    else sdw_job_release(s->e, s->j);
    free(s);
}
