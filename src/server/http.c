/* http.c: the HTTP glue: the libmicrohttpd daemon, reading request bodies
 * within the limits, auth, CORS, one log line per request, dispatch to the
 * route tables, and the graceful stop.
 *
 * A request goes through on_access several times: first with only its
 * headers (auth and Content-Length are checked there, so an unauthorised or
 * oversized upload is refused before it is read), then once per chunk of
 * body, then a last time with no data, when it is routed. The limits are
 * checked here, at the edge; the parsers and the engine check the rest. */
#include "server/http_internal.h"
#include "server/engine_comfy.h"
#include "server/server_log.h"
#include "core/error.h"
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

sdw_server_config sdw_server_config_default(void)
{
    sdw_server_config c;
    memset(&c, 0, sizeof c);
    c.host = "127.0.0.1";
    c.port = 7860;
    c.engine.queue_max = 64;
    c.engine.result_ttl_s = 600;
    c.engine.load = sdw_load_params_default();
    c.engine.fleet.prefix = "sdw:";
    c.engine.fleet.claim_after_s = 30;
    c.engine.fleet.max_attempts = 2;
    c.limits = sdw_request_limits_default();
    c.max_body = (size_t)50 << 20;
    c.request_timeout_s = 30;
    c.max_connections = 256;
    c.keepalive_s = 15;
    return c;
}

/* ---------------------------------------------------------------- responses */

const char *http_header(sdw_http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_query(sdw_http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* Whether origin is one of the comma-separated list. */
static bool origin_listed(const char *list, const char *origin)
{
    size_t n = strlen(origin);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ') e++;
        if ((size_t)(e - p) == n && n && !strncmp(p, origin, n)) return true;
        p = e;
    }
    return false;
}

static void add_cors(sdw_http_req *r, struct MHD_Response *resp)
{
    const char *allowed = r->srv->cfg.cors_origin;
    if (!allowed) return;
    const char *origin = http_header(r, "Origin");
    if (!strcmp(allowed, "*")) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    } else if (origin && origin_listed(allowed, origin)) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(resp, "Vary", "Origin");
    }
}

enum MHD_Result http_queue(sdw_http_req *r, unsigned status, struct MHD_Response *resp)
{
    if (!resp) return MHD_NO;
    add_cors(r, resp);
    r->status = status;
    r->responded = true;
    sdw_metrics_http_response(sdw_engine_metrics(r->srv->engine), status);
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result http_bytes(sdw_http_req *r, unsigned status, const char *content_type, const void *data, size_t n)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", content_type);
    return http_queue(r, status, resp);
}

enum MHD_Result http_json(sdw_http_req *r, unsigned status, char *json)
{
    if (!json) return http_error(r, 500, "internal", "out of memory");
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(json);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    return http_queue(r, status, resp);
}

enum MHD_Result http_cjson(sdw_http_req *r, unsigned status, cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return http_json(r, status, s);
}

enum MHD_Result http_error(sdw_http_req *r, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "code", code);
    return http_cjson(r, status, o);
}

enum MHD_Result http_bad_request(sdw_http_req *r, sdw_status s)
{
    if (s == SDW_ERR_NOMEM) return http_error(r, 413, "too_large", "%s", sdw_last_error());
    return http_error(r, 400, "invalid_request", "%s", sdw_last_error());
}

enum MHD_Result http_submit_error(sdw_http_req *r, sdw_submit_result res, const char *err)
{
    if (res == SDW_SUBMIT_FULL) {
        char *body = NULL;
        cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "message", err);
        cJSON_AddStringToObject(e, "code", "queue_full");
        body = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!body) return MHD_NO;
        struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
            free(body);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "application/json");
        MHD_add_response_header(resp, "Retry-After", "2");
        return http_queue(r, 429, resp);
    }
    if (res == SDW_SUBMIT_LOADING) return http_error(r, 503, "loading", "%s", err);
    if (res == SDW_SUBMIT_STOPPING) return http_error(r, 503, "shutting_down", "%s", err);
    if (res == SDW_SUBMIT_UNAVAILABLE) return http_error(r, 503, "redis_unavailable", "%s", err);
    return http_error(r, 400, "invalid_request", "%s", err);
}

sdw_submit_result http_submit(sdw_http_req *r, sdw_job_request *req, sdw_job **j, char *err, size_t n)
{
    sdw_job_source src = { r->url, http_header(r, "Content-Type"), r->body, r->body_len };
    return sdw_engine_submit_from(r->srv->engine, req, &src, j, err, n);
}

double http_float(float f)
{
    char b[32];
    snprintf(b, sizeof b, "%g", f);
    return strtod(b, NULL);
}

void http_no_timeout(sdw_http_req *r)
{
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    r->no_timeout = true;
}

/* ---------------------------------------------------------------- auth */

/* Compares in time that depends only on the key's length. */
static bool same_secret(const char *given, const char *key)
{
    size_t gn = strlen(given), kn = strlen(key);
    unsigned char d = gn != kn;
    for (size_t i = 0; i < kn; i++) d |= (unsigned char)((i < gn ? given[i] : 0) ^ key[i]);
    return d == 0;
}

static bool needs_auth(const char *method, const char *url)
{
    if (!strcmp(method, "OPTIONS")) return false;             /* CORS preflights carry no credentials */
    if (!strcmp(url, "/health")) return false;
    if (!strcmp(method, "GET") && sdw_web_is_file(url)) return false; /* the page's files; its calls send the key */
    /* Result files are capability URLs (unguessable ids), as OpenAI's are. */
    if (!strncmp(url, "/v1/files/", 10) && !strcmp(method, "GET")) return false;
    return true;
}

static bool authorised(sdw_http_req *r)
{
    const char *key = r->srv->cfg.api_key;
    if (!key || !needs_auth(r->method, r->url)) return true;
    const char *h = http_header(r, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return false;
    h += 7;
    while (*h == ' ') h++;
    return same_secret(h, key);
}

/* ---------------------------------------------------------------- dispatch */

/* How long a stop waits for answers still being sent. */
#define SHUTDOWN_GRACE_S 5.0

/* The most of a refused request's body read (and dropped) before closing. */
#define DISCARD_MAX ((unsigned long long)64 << 20)

static bool job_route(const char *url)
{
    return !strncmp(url, "/v1/jobs", 8) || !strcmp(url, "/sdapi/v1/txt2img") || !strcmp(url, "/sdapi/v1/img2img") ||
           !strncmp(url, "/v1/images/", 11);
}

static enum MHD_Result preflight(sdw_http_req *r)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Allow", "GET, POST, DELETE, OPTIONS");
    if (r->srv->cfg.cors_origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
    return http_queue(r, 204, resp);
}

static enum MHD_Result dispatch(sdw_http_req *r)
{
    if (!strcmp(r->method, "OPTIONS")) return preflight(r);
    if (r->too_large)
        return http_error(r, 413, "too_large", "body: larger than --max-body %zu bytes", r->srv->cfg.max_body);
    if (job_route(r->url) && sdw_engine_get_state(r->srv->engine, NULL, 0) == SDW_ENGINE_LOADING)
        return http_error(r, 503, "loading", "the model is still loading; GET /ready says when it is in");
    enum MHD_Result ret;
    if (routes_native(r, &ret) || routes_a1111(r, &ret) || routes_openai(r, &ret) || routes_comfy(r, &ret)) return ret;
    return http_error(r, 404, "not_found", "no route %s %s", r->method, r->url);
}

static enum MHD_Result reject_now(sdw_http_req *r, unsigned status)
{
    if (status == 401) return http_error(r, 401, "unauthorized", "missing or wrong API key (Authorization: Bearer KEY)");
    return http_error(r, 413, "too_large", "body: larger than --max-body %zu bytes", r->srv->cfg.max_body);
}

static void client_address(struct MHD_Connection *c, char *out, size_t n)
{
    snprintf(out, n, "-");
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out, (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out, (socklen_t)n);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    (void)version;
    sdw_server *srv = cls;
    sdw_http_req *r = *con_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        *con_cls = r;
        atomic_fetch_add(&srv->active, 1);
        r->srv = srv;
        r->conn = conn;
        r->method = method;
        r->url = url;
        r->t0 = now_s();
        sdw_header_watchdog_headers_done(conn);
        client_address(conn, r->client, sizeof r->client);
        unsigned reject = authorised(r) ? 0 : 401;
        const char *cl = http_header(r, "Content-Length");
        unsigned long long length = 0;
        if (cl) {
            char *end;
            errno = 0;
            length = strtoull(cl, &end, 10);
            if (errno || *end) length = ULLONG_MAX;
        }
        if (!reject && length > srv->cfg.max_body) reject = 413;
        if (!reject) return MHD_YES;
        /* A client that waits for "100 Continue", or announces more than we
         * would read, is answered now. Others are already sending: their
         * body is read and dropped (up to DISCARD_MAX, within
         * --request-timeout), so that they see the answer instead of a
         * connection reset. */
        const char *expect = http_header(r, "Expect");
        if ((expect && !strcasecmp(expect, "100-continue")) || length > DISCARD_MAX) return reject_now(r, reject);
        r->reject = reject;
        return MHD_YES;
    }
    if (r->responded) {            /* answered early: discard what still comes */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (srv->cfg.request_timeout_s > 0 && now_s() - r->t0 > srv->cfg.request_timeout_s) {
            sdw_srv_log("%s %s %s: request not received within --request-timeout %d s, closing", r->client, method,
                        url, srv->cfg.request_timeout_s);
            return MHD_NO;
        }
        if (r->reject || r->too_large || r->body_len + n > srv->cfg.max_body) {
            r->too_large = !r->reject;
            r->discarded += n;
            return r->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
        }
        if (r->body_len + n + 1 > r->body_cap) {
            size_t cap = r->body_cap ? r->body_cap : 4096;
            while (cap < r->body_len + n + 1) cap *= 2;
            char *b = realloc(r->body, cap);
            if (!b) return MHD_NO;
            r->body = b;
            r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, upload_data, n);
        r->body_len += n;
        r->body[r->body_len] = 0;
        return MHD_YES;
    }
    if (r->reject) return reject_now(r, r->reject);
    return dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    sdw_http_req *r = *con_cls;
    if (!r) return;
    static const char *const why[] = { "", " (error)", " (timed out)", " (daemon stopped)", " (read error)",
                                       " (client aborted)" };
    sdw_srv_log("%s %s %s %u %.1f ms%s", r->client, r->method, r->url, r->status, (now_s() - r->t0) * 1000,
                (unsigned)toe < sizeof why / sizeof *why ? why[toe] : "");
    /* The connection may carry more requests: time it out again. */
    if (r->no_timeout && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && r->srv->cfg.request_timeout_s > 0)
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)r->srv->cfg.request_timeout_s);
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) sdw_header_watchdog_request_done(conn);
    atomic_fetch_sub(&r->srv->active, 1);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

/* ---------------------------------------------------------------- lifecycle */

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = 0;
    sdw_srv_log("http: %s", msg);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static sdw_status bind_address(const char *host, int port, struct sockaddr_storage *ss, unsigned *flags)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        return SDW_OK;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *flags |= MHD_USE_IPv6;
        return SDW_OK;
    }
    if (!strcmp(host, "localhost")) return bind_address("127.0.0.1", port, ss, flags);
    return sdw_fail(SDW_ERR_INVALID_ARG, "--host %s: not an IPv4 or IPv6 address", host);
}

sdw_status sdw_server_start(const sdw_server_config *cfg, sdw_server **out)
{
    *out = NULL;
    if (cfg->port < 0 || cfg->port > 65535) return sdw_fail(SDW_ERR_INVALID_ARG, "--port %d out of range", cfg->port);
    /* MHD_ALLOW_UPGRADE: ComfyUI's /ws is a WebSocket on this same daemon and port (routes_comfy.c). */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                     MHD_ALLOW_UPGRADE;
    struct sockaddr_storage ss;
    SDW_TRY(bind_address(cfg->host ? cfg->host : "127.0.0.1", cfg->port, &ss, &flags));
    sdw_server *s = calloc(1, sizeof *s);
    if (!s) return sdw_fail(SDW_ERR_NOMEM, "server: out of memory");
    s->cfg = *cfg;
    s->cfg.host = dup_or_null(cfg->host ? cfg->host : "127.0.0.1");
    s->cfg.api_key = dup_or_null(cfg->api_key && cfg->api_key[0] ? cfg->api_key : NULL);
    s->cfg.cors_origin = dup_or_null(cfg->cors_origin);
    if (s->cfg.keepalive_s <= 0) s->cfg.keepalive_s = 15;
    sdw_engine_config ec = cfg->engine;
    ec.limits = cfg->limits;
    sdw_status st = sdw_engine_start(&ec, &s->engine);
    if (st != SDW_OK) {
        sdw_server_free(s);
        return st;
    }
    /* A fleet's worker role generates without listening. */
    if (cfg->engine.fleet.redis_url && cfg->engine.fleet.role == SDW_ROLE_WORKER) {
        *out = s;
        return SDW_OK;
    }
    s->watchdog = sdw_header_watchdog_start(cfg->request_timeout_s);
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,   /* first, or MHD warns */
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_NOTIFY_CONNECTION, s->watchdog ? sdw_header_watchdog_notify : NULL, s->watchdog,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(cfg->request_timeout_s > 0 ? cfg->request_timeout_s : 0),
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)(cfg->max_connections > 0 ? cfg->max_connections : 256),
                            MHD_OPTION_LISTEN_BACKLOG_SIZE, 128u,
                            MHD_OPTION_END);
    if (!s->d) {
        int err = errno;
        sdw_server_free(s);
        return sdw_fail(SDW_ERR_IO, "cannot listen on %s:%d: %s", cfg->host ? cfg->host : "127.0.0.1", cfg->port,
                        strerror(err));
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    *out = s;
    return SDW_OK;
}

int sdw_server_port(const sdw_server *s) { return s->port; }
sdw_engine *sdw_server_engine(sdw_server *s) { return s->engine; }

void sdw_server_shutdown(sdw_server *s, double drain_timeout_s)
{
    if (s->stopped) return;
    s->stopped = true;
    if (s->d) {
        MHD_socket fd = MHD_quiesce_daemon(s->d);
        /* shutdown first: the polling thread may still hold the socket for a
         * moment after close, and a listening socket keeps completing
         * handshakes until its last reference goes; shutdown stops it now. */
        if (fd != MHD_INVALID_SOCKET) {
            shutdown(fd, SHUT_RDWR);
            close(fd);
        }
    }
    sdw_srv_log("stopping: no new connections; draining (up to %.0f s)", drain_timeout_s);
    if (s->engine) sdw_engine_drain(s->engine, drain_timeout_s);
    /* ComfyUI's WebSockets get their last messages and a close frame. */
    if (s->engine) sdw_comfy_close_all(s->engine, SHUTDOWN_GRACE_S);
    /* Every job is final now: streams send their last events and end, and
     * waiting requests answer; give them SHUTDOWN_GRACE_S to be sent. */
    double until = now_s() + SHUTDOWN_GRACE_S;
    while (atomic_load(&s->active) > 0 && now_s() < until) {
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (s->d) MHD_stop_daemon(s->d);
    s->d = NULL;
    sdw_header_watchdog_stop(s->watchdog);
    s->watchdog = NULL;
    sdw_srv_log("stopped");
}

void sdw_server_free(sdw_server *s)
{
    if (!s) return;
    sdw_server_shutdown(s, 0);
    sdw_engine_free(s->engine);
    free((char *)s->cfg.host);
    free((char *)s->cfg.api_key);
    free((char *)s->cfg.cors_origin);
    free(s);
}
