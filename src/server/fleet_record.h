/* fleet_record.h: the fleet's records in Redis as plain data, with no Redis
 * client in sight, so that each can be fuzzed on its own (fuzz_request_fleet):
 *
 * - the --redis URL;
 * - a job record, the hash PREFIXjob:ID: the request as a front received it
 *   (its route, content type and body, bytes for bytes) with what the fleet
 *   adds (id, seed, attempt); a worker parses the body again with the same
 *   dialect parser the front used, so whatever fields the request carries
 *   reach the pipeline without this file knowing them;
 * - a finished job's result: JSON beside the encoded images;
 * - a loaded model as a worker publishes it, for fronts that load none;
 * - one entry of a job's event stream as the SSE frame clients get.
 *
 * How a job moves through these (queued -> claimed -> running ->
 * completed | failed | cancelled) is in fleet.h. */
#ifndef SDW_SERVER_FLEET_RECORD_H
#define SDW_SERVER_FLEET_RECORD_H
#include "server/engine.h"

/* ---- redis://[user:pass@]host[:port][/db] ---- */
typedef struct {
    char host[256];           /* a name, an IPv4 address, or an IPv6 one without its brackets */
    int port;                 /* 6379 unless given */
    char user[128];           /* "" = the default user (AUTH with the password alone) */
    char pass[256];           /* "" = no AUTH */
    int db;                   /* SELECTed after connecting */
} fleet_url;
/* Fails with a message naming what is wrong ("--redis: ..."). */
sdw_status fleet_url_parse(const char *text, fleet_url *out);
/* "host:port/db", without credentials, for log lines and errors. */
void fleet_url_describe(const fleet_url *u, char *out, size_t n);

/* ---- where a job came from: its route, the record's "dialect" ---- */
typedef enum {
    FLEET_ROUTE_NATIVE,              /* POST /v1/jobs */
    FLEET_ROUTE_A1111_TXT2IMG,       /* POST /sdapi/v1/txt2img */
    FLEET_ROUTE_A1111_IMG2IMG,       /* POST /sdapi/v1/img2img */
    FLEET_ROUTE_A1111_OPTIONS,       /* POST /sdapi/v1/options with sd_model_checkpoint */
    FLEET_ROUTE_OPENAI_GENERATIONS,  /* POST /v1/images/generations */
    FLEET_ROUTE_OPENAI_EDITS,        /* POST /v1/images/edits (multipart) */
    FLEET_ROUTE_COUNT
} fleet_route;
/* false for a path no job comes from. */
bool fleet_route_of_path(const char *path, fleet_route *out);
const char *fleet_route_name(fleet_route r);
bool fleet_route_parse(const char *name, size_t n, fleet_route *out);

/* A field of a hash or a stream entry as Redis holds it: bytes, not
 * NUL-terminated. */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t len;
} fleet_field;

/* A job record as a worker takes it; body points into the fields given. */
typedef struct {
    char id[40];
    fleet_route route;
    char content_type[256];
    const char *body;
    size_t body_len;
    int64_t seed;             /* the front's choice when the request asked for a random one */
    char model[512];          /* the catalog name the front routed it by; "" = whatever is loaded */
} fleet_record;
/* Fields: id, dialect, body, seed (required), content_type, model. */
sdw_status fleet_record_parse(const fleet_field *f, int n, fleet_record *out);
/* The request the record carries, parsed again by its dialect's parser
 * within the worker's limits, with the record's seed and model. *out is
 * initialised by the call; free it on success and on failure. */
sdw_status fleet_record_request(const fleet_record *rec, const sdw_request_limits *lim, sdw_job_request *out);
/* A job id as fronts make them: a version-4 UUID in lower-case hex. */
bool fleet_id_valid(const char *s, size_t n);

/* ---- a finished job's result ---- */
/* Everything of r but the images (which go beside it), malloc'd. */
char *fleet_result_json(const sdw_job_result *r);
/* r from the JSON and the images (copied); r must be zeroed; free its
 * arrays with fleet_result_free on success and on failure. sampler and
 * schedule point at the library's own names. */
sdw_status fleet_result_parse(const char *json, size_t n, const fleet_field *images, int n_images, sdw_job_result *r);
void fleet_result_free(sdw_job_result *r);

/* ---- a loaded model, as a worker publishes it ---- */
char *fleet_model_json(const sdw_engine_model *m);
sdw_status fleet_model_parse(const char *json, size_t n, sdw_engine_model *out);

/* ---- one entry of a job's event stream ---- */
/* The SSE frame of an entry (id "0-N"; fields event and data):
 * "id: N\nevent: E\ndata: D\n\n", malloc'd, its length in *len; *seq gets
 * N and *done whether it is the final `done`. Fails for an entry that is
 * not one of ours. */
sdw_status fleet_event_frame(const char *entry_id, size_t id_len, const fleet_field *f, int n, char **frame,
                             size_t *len, long long *seq, bool *done);
#endif
