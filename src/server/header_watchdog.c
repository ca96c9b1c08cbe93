/* header_watchdog.c: see header_watchdog.h. Every connection has a record
 * (its socket context) in one list under one mutex; a thread looks at the
 * list twice a second and shuts down the socket of a connection still
 * waiting for headers past the timeout. shutdown() leaves the descriptor to
 * libmicrohttpd, whose connection thread then sees the read fail and closes
 * it as usual. */
#include "server/header_watchdog.h"
#include "server/server_log.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

typedef struct conn_rec {
    struct conn_rec *prev, *next;
    MHD_socket fd;
    atomic_bool waiting;           /* for a request's headers */
    _Atomic double since;          /* when that wait began */
    bool cut;
} conn_rec;

struct sdw_header_watchdog {
    double timeout_s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    conn_rec head;                 /* circular list sentinel */
    bool stop;
    pthread_t thread;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *watch(void *arg)
{
    sdw_header_watchdog *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        double now = now_s();
        for (conn_rec *r = w->head.next; r != &w->head; r = r->next) {
            if (r->cut || !atomic_load(&r->waiting) || now - atomic_load(&r->since) <= w->timeout_s) continue;
            r->cut = true;
            shutdown(r->fd, SHUT_RDWR);
            sdw_srv_log("connection: request headers not received within --request-timeout %.0f s, closing",
                        w->timeout_s);
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 500 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &until);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

sdw_header_watchdog *sdw_header_watchdog_start(double timeout_s)
{
    if (timeout_s <= 0) return NULL;
    sdw_header_watchdog *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->timeout_s = timeout_s;
    w->head.next = w->head.prev = &w->head;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, watch, w)) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return NULL;
    }
    return w;
}

void sdw_header_watchdog_stop(sdw_header_watchdog *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    /* The daemon is stopped first, so every connection has been closed. */
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

void sdw_header_watchdog_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                                enum MHD_ConnectionNotificationCode code)
{
    sdw_header_watchdog *w = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_rec *r = ci ? calloc(1, sizeof *r) : NULL;
        if (!r) return;   /* that connection goes untimed rather than refused */
        r->fd = ci->connect_fd;
        atomic_store(&r->waiting, true);
        atomic_store(&r->since, now_s());
        pthread_mutex_lock(&w->mu);
        r->next = w->head.next;
        r->prev = &w->head;
        w->head.next->prev = r;
        w->head.next = r;
        pthread_mutex_unlock(&w->mu);
        *socket_context = r;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        conn_rec *r = *socket_context;
        pthread_mutex_lock(&w->mu);
        r->prev->next = r->next;
        r->next->prev = r->prev;
        pthread_mutex_unlock(&w->mu);
        free(r);
        *socket_context = NULL;
    }
}

static conn_rec *rec_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void sdw_header_watchdog_headers_done(struct MHD_Connection *c)
{
    conn_rec *r = rec_of(c);
    if (r) atomic_store(&r->waiting, false);
}

void sdw_header_watchdog_request_done(struct MHD_Connection *c)
{
    conn_rec *r = rec_of(c);
    if (!r) return;
    atomic_store(&r->since, now_s());
    atomic_store(&r->waiting, true);
}
