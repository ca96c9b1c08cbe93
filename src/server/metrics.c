/* metrics.c: see metrics.h. Histograms have fixed buckets chosen for the
 * range a step, an image and a model load take on a CPU (milliseconds for
 * the tiny test models, seconds to minutes for SDXL). */
#include "server/metrics.h"
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BUCKETS 12

typedef struct {
    const double *le;
    int n;
    unsigned long long counts[MAX_BUCKETS];  /* per bucket, not cumulative */
    unsigned long long count;
    double sum;
} histogram;

static const double step_le[] = { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30 };
static const double image_le[] = { 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300 };
static const double load_le[] = { 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300 };

struct sdw_metrics {
    pthread_mutex_t mu;
    unsigned long long accepted, final[SDW_FINAL_COUNT], rejected[SDW_REJECT_COUNT];
    unsigned long long http[600];
    histogram step, image, load;
};

static void hist_init(histogram *h, const double *le, int n)
{
    h->le = le;
    h->n = n;
}

sdw_metrics *sdw_metrics_new(void)
{
    sdw_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    hist_init(&m->step, step_le, sizeof step_le / sizeof *step_le);
    hist_init(&m->image, image_le, sizeof image_le / sizeof *image_le);
    hist_init(&m->load, load_le, sizeof load_le / sizeof *load_le);
    return m;
}

void sdw_metrics_free(sdw_metrics *m)
{
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static void observe(sdw_metrics *m, histogram *h, double v)
{
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < h->n && v > h->le[i]) i++;
    if (i < h->n) h->counts[i]++;
    h->count++;
    h->sum += v;
    pthread_mutex_unlock(&m->mu);
}

void sdw_metrics_step_seconds(sdw_metrics *m, double s) { observe(m, &m->step, s); }
void sdw_metrics_image_seconds(sdw_metrics *m, double s) { observe(m, &m->image, s); }
void sdw_metrics_model_load_seconds(sdw_metrics *m, double s) { observe(m, &m->load, s); }

#define COUNT(expr)                  \
    do {                             \
        pthread_mutex_lock(&m->mu);  \
        expr;                        \
        pthread_mutex_unlock(&m->mu); \
    } while (0)

void sdw_metrics_job_accepted(sdw_metrics *m) { COUNT(m->accepted++); }
void sdw_metrics_job_final(sdw_metrics *m, sdw_final_state s) { COUNT(m->final[s]++); }
void sdw_metrics_job_rejected(sdw_metrics *m, sdw_reject_reason r) { COUNT(m->rejected[r]++); }
void sdw_metrics_http_response(sdw_metrics *m, unsigned status)
{
    if (status < 600) COUNT(m->http[status]++);
}

/* ---------------------------------------------------------------- render */

typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0 || t->oom) { t->oom = true; return; }
        if (t->s && t->n + (size_t)k < t->cap) { t->n += (size_t)k; return; }
        size_t cap = t->cap * 2 + (size_t)k + 1024;
        char *p = realloc(t->s, cap);
        if (!p) { t->oom = true; return; }
        t->s = p;
        t->cap = cap;
    }
}

static void put_hist(text *t, const char *name, const char *help, const histogram *h)
{
    put(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long long cum = 0;
    for (int i = 0; i < h->n; i++) {
        cum += h->counts[i];
        put(t, "%s_bucket{le=\"%g\"} %llu\n", name, h->le[i], cum);
    }
    put(t, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, h->count, name, h->sum, name, h->count);
}

/* A fleet's gauges: Redis's view, the same from every process. */
static void put_fleet(text *t, const sdw_metrics_gauges *g)
{
    static const char *const states[4] = { "completed", "failed", "cancelled", "requeued" };
    put(t, "# HELP sdw_fleet_redis_up Whether the fleet's Redis answered this scrape.\n"
           "# TYPE sdw_fleet_redis_up gauge\nsdw_fleet_redis_up %d\n", g->redis_up ? 1 : 0);
    put(t, "# HELP sdw_fleet_queue_depth Jobs waiting in the fleet's queue.\n"
           "# TYPE sdw_fleet_queue_depth gauge\nsdw_fleet_queue_depth %d\n", g->fleet_queue_depth);
    put(t, "# HELP sdw_fleet_workers Workers heard from within --claim-after, and those of them running a job.\n"
           "# TYPE sdw_fleet_workers gauge\nsdw_fleet_workers{state=\"live\"} %d\nsdw_fleet_workers{state=\"busy\"} %d\n",
        g->fleet_workers_live, g->fleet_workers_busy);
    put(t, "# HELP sdw_fleet_jobs_total Jobs of the whole fleet by final state, and reruns after a lost worker or a stop.\n"
           "# TYPE sdw_fleet_jobs_total counter\n");
    for (int i = 0; i < 4; i++) put(t, "sdw_fleet_jobs_total{state=\"%s\"} %llu\n", states[i], g->fleet_jobs[i]);
}

char *sdw_metrics_render(sdw_metrics *m, const sdw_metrics_gauges *g)
{
    static const char *const finals[SDW_FINAL_COUNT] = { "completed", "failed", "cancelled" };
    static const char *const rejects[SDW_REJECT_COUNT] = { "queue_full", "invalid", "unavailable" };
    text t = { 0 };
    pthread_mutex_lock(&m->mu);
    put(&t, "# HELP sdw_up Whether the model is loaded and jobs are taken.\n# TYPE sdw_up gauge\nsdw_up %d\n",
        g->ready ? 1 : 0);
    put(&t, "# HELP sdw_jobs_accepted_total Jobs accepted into the queue.\n# TYPE sdw_jobs_accepted_total counter\n"
            "sdw_jobs_accepted_total %llu\n", m->accepted);
    put(&t, "# HELP sdw_jobs_total Jobs that reached a final state, by state.\n# TYPE sdw_jobs_total counter\n");
    for (int i = 0; i < SDW_FINAL_COUNT; i++) put(&t, "sdw_jobs_total{state=\"%s\"} %llu\n", finals[i], m->final[i]);
    put(&t, "# HELP sdw_jobs_rejected_total Job requests refused, by reason.\n# TYPE sdw_jobs_rejected_total counter\n");
    for (int i = 0; i < SDW_REJECT_COUNT; i++)
        put(&t, "sdw_jobs_rejected_total{reason=\"%s\"} %llu\n", rejects[i], m->rejected[i]);
    put(&t, "# HELP sdw_queue_depth Jobs waiting in the queue.\n# TYPE sdw_queue_depth gauge\nsdw_queue_depth %d\n",
        g->queue_depth);
    put(&t, "# HELP sdw_jobs_in_flight Jobs being generated.\n# TYPE sdw_jobs_in_flight gauge\nsdw_jobs_in_flight %d\n",
        g->in_flight);
    put(&t, "# HELP sdw_jobs_kept Job records held (queued, running, or finished within the result TTL).\n"
            "# TYPE sdw_jobs_kept gauge\nsdw_jobs_kept %d\n", g->jobs_kept);
    if (g->fleet) put_fleet(&t, g);
    put_hist(&t, "sdw_step_seconds", "Seconds per sampling step.", &m->step);
    put_hist(&t, "sdw_image_generation_seconds", "Seconds per job, from start to encoded images.", &m->image);
    put_hist(&t, "sdw_model_load_seconds", "Seconds per model load.", &m->load);
    put(&t, "# HELP sdw_http_responses_total HTTP responses, by status code.\n"
            "# TYPE sdw_http_responses_total counter\n");
    for (unsigned c = 100; c < 600; c++)
        if (m->http[c]) put(&t, "sdw_http_responses_total{code=\"%u\"} %llu\n", c, m->http[c]);
    pthread_mutex_unlock(&m->mu);
    if (t.oom) {
        free(t.s);
        return NULL;
    }
    return t.s;
}
