/* server.h: sd-worker's HTTP server (libmicrohttpd): the native job API with
 * SSE progress, the AUTOMATIC1111 and OpenAI dialects, health, metrics and a
 * small web page, in front of the job engine (engine.h). `sd-worker serve`
 * is a thin command line over this; tests may start it in-process.
 *
 * Threads: libmicrohttpd runs one thread per connection, so a synchronous
 * A1111 txt2img or a long SSE stream on one connection never holds up
 * another; those threads touch only the engine's queue and job records. The
 * engine's generation thread alone owns the model. */
#ifndef SDW_SERVER_SERVER_H
#define SDW_SERVER_SERVER_H
#include "server/engine.h"

typedef struct {
    const char *host;          /* address to bind, default "127.0.0.1" */
    int port;                  /* 0 = any free port (sdw_server_port says which) */
    sdw_engine_config engine;
    sdw_request_limits limits;
    size_t max_body;           /* bytes; larger bodies get 413 */
    const char *api_key;       /* NULL = no auth */
    const char *cors_origin;   /* NULL = no CORS headers; "*" or a comma-separated list of origins */
    int request_timeout_s;     /* a client that takes longer to send its request is cut; 0 = never */
    int max_connections;
    int keepalive_s;           /* SSE comment after this long without events */
} sdw_server_config;
sdw_server_config sdw_server_config_default(void);

typedef struct sdw_server sdw_server;
/* Binds, starts the engine (which loads the model in the background: /ready
 * answers 503 until it is in) and answers. */
sdw_status sdw_server_start(const sdw_server_config *cfg, sdw_server **out);
int sdw_server_port(const sdw_server *s);
sdw_engine *sdw_server_engine(sdw_server *s);
/* The graceful stop: stops accepting connections and jobs, cancels the
 * queued jobs, lets the running one finish for up to drain_timeout_s (then
 * cancels it), lets every stream send its final events, and closes. */
void sdw_server_shutdown(sdw_server *s, double drain_timeout_s);
/* Shuts down (at once, if sdw_server_shutdown was not called) and frees. */
void sdw_server_free(sdw_server *s);
#endif
