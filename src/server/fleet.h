/* fleet.h: a fleet of sd-workers on one Redis (`sd-worker serve --redis`).
 * Without --redis none of this runs: engine.c keeps its own queue.
 *
 * How a job moves: queued -> claimed -> running -> completed | failed |
 * cancelled, where claimed is one idle worker taking it from the queue (the
 * stream's consumer group delivers it to that worker alone), in the same
 * atomic step that marks it running. Who owns it at each step:
 *
 *   front: submit ─▶ queued ─ take (an idle worker) ─▶ running ─ finish ─▶ completed | failed | cancelled
 *                    │  ▲                                │  │
 *                    │  └──── requeue (a stopping worker) ┘  └─ worker lost: an idle worker claims it
 *                    └─ cancel ─▶ cancelled                      after --claim-after and reruns it from
 *                                                                the start (same seed), or it fails
 *                                                                after --max-attempts lost runs
 *
 * - queued: the record PREFIXjob:ID (a hash) holds the request as a front
 *   received it (fleet_record.h); an entry on a queue stream points at it:
 *   PREFIXqueue for a job that names no model, PREFIXqueue:MODEL for one
 *   that does; PREFIXqueued (a sorted set) counts the fleet's queue for
 *   --queue-max. No process owns a queued job: any front may cancel it.
 * - running: one worker owns it, named in the record with the attempt
 *   number it started; the queue entry sits in that worker's pending list
 *   of the consumer group `workers`. Only the owner adds events or ends it,
 *   and only while the record still names it and that attempt, so a worker
 *   given up for dead that comes back finds it changed and drops its run.
 * - final: set only by the finish step of the Lua scripts, which refuses a
 *   job that already is: each job ends in exactly one final state, fleet-
 *   wide. Its record and event stream then expire after --result-ttl.
 *
 * Each transition is one Lua script (fleet_scripts.c), atomic in Redis and
 * in its append-only file. A job's events (progress, preview, requeued,
 * complete, error, done) are the entries 0-1, 0-2, ... of PREFIXevents:ID,
 * so every front streams the same SSE ids and replays from Last-Event-ID.
 *
 * Threads of a process: HTTP threads (a front) use pooled connections; the
 * generation thread (a worker) takes, claims and ends jobs on its own; the
 * keeper thread heartbeats and publishes the running job's events, so that
 * generation never waits on Redis, and a Redis that goes away only delays
 * what the clients see. */
#ifndef SDW_SERVER_FLEET_H
#define SDW_SERVER_FLEET_H
#include "server/engine.h"

typedef struct sdw_fleet sdw_fleet;
struct fleet_stream;

/* Connects lazily (Redis may come later: every call retries with backoff)
 * and starts the keeper thread. */
sdw_status fleet_start(sdw_engine *e, const sdw_fleet_config *cfg, sdw_fleet **out);
/* After the generation thread has ended. */
void fleet_free(sdw_fleet *f);
const char *fleet_worker_id(const sdw_fleet *f);
/* false (with the last error in err) while Redis is unreachable. */
bool fleet_redis_ok(sdw_fleet *f, char *err, size_t n);

/* ---- a front (fleet_front.c) ---- */
/* sdw_engine_submit_from on a fleet: queues the request as received
 * (req, its parsed form, is taken); *out (if not NULL) gets the front's
 * view of the job. */
sdw_submit_result fleet_submit(sdw_fleet *f, sdw_job_request *req, const sdw_job_source *src, sdw_job **out,
                               char *err, size_t n);
/* The front's view of a job with its result, or NULL (unknown, or Redis
 * down). */
sdw_job *fleet_find(sdw_fleet *f, const char *id);
/* Blocks until the job is final (or this front stops): fills j's state and
 * result. */
sdw_job_state fleet_wait(sdw_fleet *f, sdw_job *j);
/* Deletes a final job's record and events: its result was handed over. */
void fleet_forget(sdw_fleet *f, sdw_job *j);
bool fleet_cancel(sdw_fleet *f, const char *id, const char *reason, sdw_job_state *before);
bool fleet_interrupt(sdw_fleet *f);
char *fleet_job_json(sdw_fleet *f, const char *id);
char *fleet_a1111_progress(sdw_fleet *f);
char *fleet_workers_json(sdw_fleet *f);
/* The fleet's gauges for /metrics (false while Redis is unreachable). */
bool fleet_gauges(sdw_fleet *f, sdw_metrics_gauges *g);
/* A live worker's model, for a front that loads none (cached a second). */
bool fleet_model_get(sdw_fleet *f, sdw_engine_model *out);
/* sdw_engine_drain on a fleet: stops taking jobs; lets the running one end
 * for up to timeout_s, then hands it back to the queue; lets synchronous
 * requests get their answers meanwhile; then ends every wait and stream
 * of this front (their jobs go on in the fleet). */
void fleet_drain(sdw_fleet *f, double timeout_s);
/* Wakes every wait and stream of this front: it is stopping. */
void fleet_front_stop(sdw_fleet *f);

/* ---- SSE over a job's event stream (fleet_stream.c) ---- */
/* NULL for an unknown job. */
struct fleet_stream *fleet_stream_open(sdw_fleet *f, const char *id, long long last_event_id, int keepalive_s);
ssize_t fleet_stream_read(struct fleet_stream *s, char *buf, size_t max);
void fleet_stream_close(struct fleet_stream *s);

/* ---- a worker (fleet_worker.c) ---- */
/* The generation thread's loop once its model is loaded: takes jobs while
 * idle, runs them, ends them; returns once the worker stops. */
void fleet_worker_run(sdw_fleet *f);
/* Stops taking jobs (the one running goes on). */
void fleet_worker_stop_taking(sdw_fleet *f);
/* Hands the running job back to the queue instead of finishing it. */
void fleet_worker_hand_back(sdw_fleet *f);
/* Gives up on Redis for the job being ended (the worker exits; another
 * will claim the job). */
void fleet_worker_abandon(sdw_fleet *f);
#endif
