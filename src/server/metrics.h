/* metrics.h: the counters and histograms behind GET /metrics, rendered in
 * the Prometheus text format (version 0.0.4). Thread-safe: HTTP threads and
 * the generation thread update them under the struct's own lock. */
#ifndef SDW_SERVER_METRICS_H
#define SDW_SERVER_METRICS_H
#include <stdbool.h>

typedef struct sdw_metrics sdw_metrics;

typedef enum { SDW_FINAL_COMPLETED, SDW_FINAL_FAILED, SDW_FINAL_CANCELLED, SDW_FINAL_COUNT } sdw_final_state;
typedef enum { SDW_REJECT_QUEUE_FULL, SDW_REJECT_INVALID, SDW_REJECT_UNAVAILABLE, SDW_REJECT_COUNT } sdw_reject_reason;

sdw_metrics *sdw_metrics_new(void);
void sdw_metrics_free(sdw_metrics *m);

void sdw_metrics_job_accepted(sdw_metrics *m);
void sdw_metrics_job_final(sdw_metrics *m, sdw_final_state s);
void sdw_metrics_job_rejected(sdw_metrics *m, sdw_reject_reason r);
void sdw_metrics_step_seconds(sdw_metrics *m, double s);
void sdw_metrics_image_seconds(sdw_metrics *m, double s);
void sdw_metrics_model_load_seconds(sdw_metrics *m, double s);
void sdw_metrics_http_response(sdw_metrics *m, unsigned status);

/* The gauges the engine knows at the time of the scrape; with a fleet also
 * the fleet's, from Redis (fleet_* zero when Redis did not answer). */
typedef struct {
    int queue_depth, in_flight, jobs_kept;
    bool ready;
    bool fleet;               /* the fleet_* fields below are set */
    bool redis_up;
    int fleet_queue_depth, fleet_workers_live, fleet_workers_busy;
    unsigned long long fleet_jobs[4];   /* completed, failed, cancelled, requeued: fleet-wide, from Redis */
} sdw_metrics_gauges;
/* malloc'd text, NULL when out of memory. */
char *sdw_metrics_render(sdw_metrics *m, const sdw_metrics_gauges *g);
#endif
