/* http_internal.h: what the route files (routes_*.c) share with the HTTP
 * glue (http.c): the request being answered and the response helpers. Every
 * helper queues exactly one response and records its status for the log. */
#ifndef SDW_SERVER_HTTP_INTERNAL_H
#define SDW_SERVER_HTTP_INTERNAL_H
#include "server/server.h"
#include "server/header_watchdog.h"
#include "server/model_catalog.h"
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdatomic.h>

struct sdw_server {
    sdw_server_config cfg;     /* strings owned (copied) */
    struct MHD_Daemon *d;
    sdw_engine *engine;
    sdw_header_watchdog *watchdog;   /* NULL without --request-timeout */
    int port;
    bool stopped;
    atomic_int active;         /* requests between their first call and their completion */
};

typedef struct {
    sdw_server *srv;
    struct MHD_Connection *conn;
    const char *method, *url;
    char *body;
    size_t body_len, body_cap;
    bool too_large, responded, no_timeout;
    unsigned reject;           /* 401 or 413 decided from the headers, answered once the body is dropped */
    unsigned long long discarded;
    double t0;
    unsigned status;
    char client[64];
} sdw_http_req;

/* Answers: JSON (json taken), a cJSON tree (taken), an error
 * {"error":{"message","code"}}, and raw bytes (copied). */
enum MHD_Result http_json(sdw_http_req *r, unsigned status, char *json);
enum MHD_Result http_cjson(sdw_http_req *r, unsigned status, cJSON *o);
enum MHD_Result http_error(sdw_http_req *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
enum MHD_Result http_bytes(sdw_http_req *r, unsigned status, const char *content_type, const void *data, size_t n);
/* Queues a response built by the caller (adds the CORS headers). */
enum MHD_Result http_queue(sdw_http_req *r, unsigned status, struct MHD_Response *resp);
/* A parser's failure (sdw_last_error): 413 for SDW_ERR_NOMEM, else 400. */
enum MHD_Result http_bad_request(sdw_http_req *r, sdw_status s);
/* An engine refusal with its status: 400, 429 (with Retry-After) or 503. */
enum MHD_Result http_submit_error(sdw_http_req *r, sdw_submit_result res, const char *err);
/* sdw_engine_submit with this request as received (its route, content type
 * and body), which a fleet queues as the job's record. */
sdw_submit_result http_submit(sdw_http_req *r, sdw_job_request *req, sdw_job **j, char *err, size_t n);
/* The request is answered slowly on purpose (a synchronous job, a stream):
 * its connection is not timed out meanwhile. */
void http_no_timeout(sdw_http_req *r);
const char *http_header(sdw_http_req *r, const char *name);
const char *http_query(sdw_http_req *r, const char *name);

/* A float as the short decimal a client sent ("0.6", not 0.60000002). */
double http_float(float f);

/* Route tables: each returns true when it answered the request in *ret. */
bool routes_native(sdw_http_req *r, enum MHD_Result *ret);
bool routes_a1111(sdw_http_req *r, enum MHD_Result *ret);
bool routes_controlnet(sdw_http_req *r, enum MHD_Result *ret);   /* the /controlnet/ routes, reached through routes_a1111 */
bool routes_openai(sdw_http_req *r, enum MHD_Result *ret);
bool routes_comfy(sdw_http_req *r, enum MHD_Result *ret);     /* ComfyUI's API and /ws (routes_comfy.c) */

/* Calls add for the loaded model, then for --models-dir's other checkpoints
 * (routes_a1111.c; GET /v1/models lists the same). */
void sdw_list_models(sdw_http_req *r, void (*add)(void *user, const sdw_catalog_entry *c), void *user);

/* The page at GET / and its files (web_page.c): whether url is one of them
 * (they need no API key), and the route that serves them. */
bool sdw_web_is_file(const char *url);
bool routes_web(sdw_http_req *r, enum MHD_Result *ret);
#endif
