/* cmd_serve.c: `sd-worker serve`: the HTTP server (src/server) on the command
 * line, with its signals: SIGTERM (or a first SIGINT) stops gracefully
 * (no new connections or jobs, the running job finishes or is cancelled
 * after --drain-timeout, streams get their final events, exit 0); a second
 * SIGINT exits at once. */
#include "cli/commands.h"
#include "cli/cli_args.h"
#include "server/server.h"
#include "server/fleet_record.h"
#include "server/model_catalog.h"
#include "server/server_log.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sd-worker serve -m MODEL [--host 127.0.0.1] [--port 7860] [--models-dir DIR]\n"
            "    [--lora-dir DIR] [--controlnet-dir DIR] [--cache-bytes 4G] [--queue-max 64] [--result-ttl 600] [--api-key KEY] [--cors-origin ORIGIN]\n"
            "    [--max-pixels 4194304] [--max-body 50M] [--max-prompt 10000] [--request-timeout 30]\n"
            "    [--drain-timeout 30] [--max-connections 256] [--keepalive 15] [--precision auto|f32|bf16]\n"
            "    [--prediction auto|eps|v] [--vae FILE] [--clip-l FILE] [--clip-g FILE] [--t5xxl FILE] [--no-t5]\n"
            "    [--threads N] [--output-dir output] [--input-dir input] [--temp-dir temp]\n"
            "    [--weight-type keep|f32|bf16|q8_0|q5_1|q5_0|q4_1|q4_0]\n"
            "    [--preset auto|turbo|none] [-v]\n"
            "  --clip-l, --clip-g and --t5xxl give FLUX's and SD3's text encoders as separate files (as\n"
            "  --vae the VAE); they are used for every such model loaded, the one at start and those jobs\n"
            "  switch to. --no-t5 leaves SD3's T5 out.\n"
            "  --controlnet-dir holds the ControlNets requests may name; --cache-bytes bounds the ControlNet\n"
            "  weights kept loaded between jobs (least recently used dropped first).\n"
            "  ComfyUI's API (/prompt, /ws, ...): SaveImage writes into --output-dir, uploads go to\n"
            "  --input-dir, PreviewImage writes into --temp-dir (each created when first needed); workflows\n"
            "  name checkpoints, VAEs, CLIP and UNet files from --models-dir, LoRAs from --lora-dir and\n"
            "  ControlNets from --controlnet-dir.\n"
            "  A fleet on one Redis: [--redis redis://[user:pass@]host:port[/db]] [--redis-prefix sdw:]\n"
            "    [--role both|front|worker] [--claim-after 30] [--max-attempts 2] (README: Deployment).\n"
            "  With --redis (or SDW_REDIS_URL) jobs go to the fleet's queue on Redis; --role front loads no\n"
            "  model (leave out -m) and only answers HTTP; --role worker generates without listening.\n"
            "  --port 0 picks a free port; the first line on stdout is \"listening on http://HOST:PORT\".\n"
            "  The API key may also come from the environment (SDW_API_KEY).\n");
}

static int bad(const char *fmt, const char *v)
{
    fprintf(stderr, "sd-worker serve: ");
    fprintf(stderr, fmt, v);
    fputc('\n', stderr);
    return 2;
}

/* A byte count with an optional K, M or G suffix (powers of 1024). */
static bool parse_bytes(const char *s, size_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s) return false;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k') shift = 10, end++;
    else if (*end == 'M' || *end == 'm') shift = 20, end++;
    else if (*end == 'G' || *end == 'g') shift = 30, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end || v == 0 || v > (1ULL << 40) >> shift) return false;
    *out = (size_t)(v << shift);
    return true;
}

typedef struct {
    sdw_server_config c;
    const char *model;
    double drain_timeout;
    int turbo;
    bool verbose;
} options;

static int parse(int argc, char **argv, options *o)
{
    /* Every field starts defined: a stack options struct must not leak
     * garbage into -v or -m when they are absent. */
    *o = (options){ .c = sdw_server_config_default(), .drain_timeout = 30, .turbo = -1 };
    o->c.api_key = getenv("SDW_API_KEY");
    const char *redis_env = getenv("SDW_REDIS_URL");
    if (redis_env && redis_env[0]) o->c.engine.fleet.redis_url = redis_env;
    bool role_given = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        float f;
#define IS(s) (!strcmp(a, s))
        if (IS("-v") || IS("--verbose")) { o->verbose = true; continue; }
        if (IS("--no-t5")) { o->c.engine.load.no_t5 = true; continue; }
        if (IS("-h") || IS("--help")) { usage(stdout); exit(0); }
        if (!v) return bad("option %s needs a value", a);
        i++;
        if (IS("-m") || IS("--model")) o->model = v;
        else if (IS("--host")) o->c.host = v;
        else if (IS("--port")) { if (!cli_parse_int(v, 0, 65535, &n)) return bad("--port must be in 0..65535, not '%s'", v); o->c.port = (int)n; }
        else if (IS("--models-dir")) o->c.engine.models_dir = v;
        else if (IS("--lora-dir")) o->c.engine.lora_dir = v;
        else if (IS("--controlnet-dir")) o->c.engine.controlnet_dir = v;
        else if (IS("--output-dir")) o->c.engine.output_dir = v;
        else if (IS("--input-dir")) o->c.engine.input_dir = v;
        else if (IS("--temp-dir")) o->c.engine.temp_dir = v;
        else if (IS("--cache-bytes")) { if (!parse_bytes(v, &o->c.engine.cn_cache_bytes)) return bad("--cache-bytes must be a size such as 4G, not '%s'", v); }
        else if (IS("--redis")) o->c.engine.fleet.redis_url = v;
        else if (IS("--redis-prefix")) { if (!v[0] || strlen(v) > 47) return bad("--redis-prefix must be 1..47 bytes, not '%s'", v); o->c.engine.fleet.prefix = v; }
        else if (IS("--role")) {
            sdw_fleet_role *r = &o->c.engine.fleet.role;
            if (!strcmp(v, "both")) *r = SDW_ROLE_BOTH;
            else if (!strcmp(v, "front")) *r = SDW_ROLE_FRONT;
            else if (!strcmp(v, "worker")) *r = SDW_ROLE_WORKER;
            else return bad("--role must be both, front or worker, not '%s'", v);
            role_given = true;
        }
        else if (IS("--claim-after")) { if (!cli_parse_float(v, 0.5f, 86400, &f)) return bad("--claim-after must be seconds in 0.5..86400, not '%s'", v); o->c.engine.fleet.claim_after_s = f; }
        else if (IS("--max-attempts")) { if (!cli_parse_int(v, 1, 100, &n)) return bad("--max-attempts must be in 1..100, not '%s'", v); o->c.engine.fleet.max_attempts = (int)n; }
        else if (IS("--queue-max")) { if (!cli_parse_int(v, 1, 100000, &n)) return bad("--queue-max must be in 1..100000, not '%s'", v); o->c.engine.queue_max = (int)n; }
        else if (IS("--result-ttl")) { if (!cli_parse_float(v, 0, 86400 * 7, &f)) return bad("--result-ttl must be seconds in 0..604800, not '%s'", v); o->c.engine.result_ttl_s = f; }
        else if (IS("--api-key")) o->c.api_key = v;
        else if (IS("--cors-origin")) o->c.cors_origin = v;
        else if (IS("--max-pixels")) { if (!cli_parse_int(v, 64 * 64, (long long)16384 * 16384, &n)) return bad("--max-pixels must be in 4096..268435456, not '%s'", v); o->c.limits.max_pixels = n; }
        else if (IS("--max-body")) { if (!parse_bytes(v, &o->c.max_body)) return bad("--max-body must be a size such as 50M, not '%s'", v); o->c.limits.max_image_bytes = o->c.max_body; }
        else if (IS("--max-prompt")) { if (!cli_parse_int(v, 1, 1 << 20, &n)) return bad("--max-prompt must be in 1..1048576 bytes, not '%s'", v); o->c.limits.max_prompt = (size_t)n; }
        else if (IS("--request-timeout")) { if (!cli_parse_int(v, 0, 86400, &n)) return bad("--request-timeout must be seconds in 0..86400, not '%s'", v); o->c.request_timeout_s = (int)n; }
        else if (IS("--drain-timeout")) { if (!cli_parse_float(v, 0, 86400, &f)) return bad("--drain-timeout must be seconds in 0..86400, not '%s'", v); o->drain_timeout = f; }
        else if (IS("--max-connections")) { if (!cli_parse_int(v, 1, 65536, &n)) return bad("--max-connections must be in 1..65536, not '%s'", v); o->c.max_connections = (int)n; }
        else if (IS("--keepalive")) { if (!cli_parse_int(v, 1, 3600, &n)) return bad("--keepalive must be seconds in 1..3600, not '%s'", v); o->c.keepalive_s = (int)n; }
        else if (IS("--step-delay-ms")) { if (!cli_parse_int(v, 0, 60000, &n)) return bad("--step-delay-ms must be in 0..60000, not '%s'", v); o->c.engine.step_delay_ms = (int)n; }
        else if (IS("--threads")) { if (!cli_parse_int(v, 1, 1024, &n)) return bad("bad --threads '%s'", v); o->c.engine.threads = (int)n; }
        else if (IS("--vae")) o->c.engine.load.vae_path = v;
        else if (IS("--clip-l")) o->c.engine.load.clip_l_path = v;
        else if (IS("--clip-g")) o->c.engine.load.clip_g_path = v;
        else if (IS("--t5xxl") || IS("--t5")) o->c.engine.load.t5_path = v;
        else if (IS("--weight-type")) {
            if (sdw_weight_type_parse(v, &o->c.engine.load.weight_type) != SDW_OK) return bad("%s", sdw_last_error());
        }
        else if (IS("--precision")) { if (!cli_parse_precision(v, &o->c.engine.load.precision)) return bad("--precision must be auto, f32 or bf16, not '%s'", v); }
        else if (IS("--prediction")) { if (!cli_parse_prediction(v, &o->c.engine.load.prediction)) return bad("--prediction must be auto, eps or v, not '%s'", v); }
        else if (IS("--preset")) {
            if (!strcmp(v, "turbo")) o->turbo = 1;
            else if (!strcmp(v, "none")) o->turbo = 0;
            else if (!strcmp(v, "auto")) o->turbo = -1;
            else return bad("--preset must be turbo, none or auto, not '%s'", v);
        } else {
            return bad("unknown option '%s' (see sd-worker serve --help)", a);
        }
#undef IS
    }
    const sdw_fleet_config *fc = &o->c.engine.fleet;
    if (role_given && !fc->redis_url) return bad("%s needs --redis (or SDW_REDIS_URL)", "--role");
    if (fc->redis_url) {
        fleet_url u;
        if (fleet_url_parse(fc->redis_url, &u) != SDW_OK) return bad("%s", sdw_last_error());
    }
    bool front = fc->redis_url && fc->role == SDW_ROLE_FRONT;
    if (front && o->model) return bad("--role front loads no model: leave out %s", "-m");
    if (!o->model && !front) {
        usage(stderr);
        return 2;
    }
    if (front) {
        if (o->c.engine.models_dir && access(o->c.engine.models_dir, R_OK | X_OK))
            return bad("cannot read --models-dir %s", o->c.engine.models_dir);
        return 0;
    }
    if (sdw_catalog_is_pickle(o->model))
        return bad("%s is a pickle checkpoint, which sd-worker never loads: convert it to .safetensors", o->model);
    if (access(o->model, R_OK)) return bad("cannot read model %s", o->model);
    if (o->c.engine.models_dir && access(o->c.engine.models_dir, R_OK | X_OK))
        return bad("cannot read --models-dir %s", o->c.engine.models_dir);
    if (o->c.engine.controlnet_dir && access(o->c.engine.controlnet_dir, R_OK | X_OK))
        return bad("cannot read --controlnet-dir %s", o->c.engine.controlnet_dir);
    const sdw_load_params *lp = &o->c.engine.load;
    if (lp->vae_path && access(lp->vae_path, R_OK)) return bad("cannot read --vae %s", lp->vae_path);
    if (lp->clip_l_path && access(lp->clip_l_path, R_OK)) return bad("cannot read --clip-l %s", lp->clip_l_path);
    if (lp->clip_g_path && access(lp->clip_g_path, R_OK)) return bad("cannot read --clip-g %s", lp->clip_g_path);
    if (lp->t5_path && access(lp->t5_path, R_OK)) return bad("cannot read --t5xxl %s", lp->t5_path);
    o->c.engine.model_path = o->model;
    o->c.engine.load.turbo = o->turbo;
    return 0;
}

/* ---------------------------------------------------------------- stopping */

typedef struct {
    sdw_server *s;
    double drain_timeout;
    atomic_bool done;
} stopper;

static void *stop_thread(void *arg)
{
    stopper *st = arg;
    sdw_server_shutdown(st->s, st->drain_timeout);
    st->done = true;
    return NULL;
}

int cmd_serve(int argc, char **argv)
{
    options o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    sdw_set_log(cli_log_to_stderr, NULL, o.verbose ? SDW_LOG_DEBUG : SDW_LOG_WARN);

    /* Every thread started from here on inherits the blocked signals; this
     * one takes them with sigtimedwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    sdw_server *s;
    if (sdw_server_start(&o.c, &s) != SDW_OK) {
        fprintf(stderr, "sd-worker serve: %s\n", sdw_last_error());
        return 1;
    }
    if (o.c.engine.fleet.redis_url && o.c.engine.fleet.role == SDW_ROLE_WORKER)
        printf("fleet worker %s (no HTTP)\n", sdw_engine_worker_id(sdw_server_engine(s)));
    else if (strchr(o.c.host, ':')) printf("listening on http://[%s]:%d\n", o.c.host, sdw_server_port(s));
    else printf("listening on http://%s:%d\n", o.c.host, sdw_server_port(s));
    if (o.c.engine.fleet.redis_url && o.c.engine.fleet.role == SDW_ROLE_BOTH)
        printf("fleet worker %s\n", sdw_engine_worker_id(sdw_server_engine(s)));
    fflush(stdout);

    stopper st = { s, o.drain_timeout, false };
    pthread_t stop_tid;
    bool stopping = false;
    struct timespec tick = { 0, 200 * 1000000L };
    for (;;) {
        siginfo_t si;
        int sig = sigtimedwait(&set, &si, &tick);
        if (sig == SIGINT && stopping) {
            fprintf(stderr, "sd-worker serve: second SIGINT, exiting at once\n");
            _exit(130);
        }
        if ((sig == SIGINT || sig == SIGTERM) && !stopping) {
            sdw_srv_log("%s: stopping gracefully (SIGINT again to exit at once)", sig == SIGINT ? "SIGINT" : "SIGTERM");
            stopping = pthread_create(&stop_tid, NULL, stop_thread, &st) == 0;
            if (!stopping) sdw_server_shutdown(s, o.drain_timeout);
            if (!stopping) break;
        }
        if (stopping && st.done) {
            pthread_join(stop_tid, NULL);
            break;
        }
        char err[512];
        if (!stopping && sdw_engine_get_state(sdw_server_engine(s), err, sizeof err) == SDW_ENGINE_FAILED) {
            fprintf(stderr, "sd-worker serve: %s\n", err);
            rc = 1;
            break;
        }
    }
    sdw_server_free(s);
    return rc;
}
