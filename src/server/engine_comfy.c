/* engine_comfy.c: ComfyUI's side of the engine (engine_comfy.h): the hub of
 * WebSocket clients with their outboxes, the queue and history as ComfyUI
 * shows them, and the run of one prompt on the generation thread with the
 * environment the executor (comfy.h) loads models and saves images through.
 *
 * Who owns what: the hub (clients, outboxes, history, the queue number, the
 * node running now) is guarded by its own mutex h->mu, never held together
 * with the engine's e->mu. The parts a workflow loaded the current model
 * with (its VAE and text encoder files) belong to the generation thread
 * alone, as the model does. A prompt's messages go to the sockets of its
 * client_id; "status" (the queue's length) goes to every socket whenever a
 * prompt is queued, deleted or finished. */
#include "server/engine_comfy.h"
#include "server/engine_internal.h"
#include "server/controlnet_cache.h"
#include "server/server_log.h"
#include "core/error.h"
#include "models/controlnet.h"
#include "models/lora.h"
#include "models/model.h"
#include "pipeline/frontend.h"
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct msg {
    struct msg *next;
    uint8_t *data;
    size_t n;
    bool binary;
} msg;

struct sdw_comfy_client {
    char id[128];
    int efd;
    msg *head, *tail;
    size_t bytes;             /* in the outbox */
    bool stop;                /* the session ends once the outbox is sent */
    struct engine_comfy *hub;
    sdw_comfy_client *next;
};

typedef struct hist {
    struct hist *next;
    char id[40];
    cJSON *entry;             /* {"prompt", "outputs", "status", "meta"} */
} hist;

struct engine_comfy {
    pthread_mutex_t mu;
    pthread_cond_t gone;      /* a client left */
    sdw_comfy_client *clients;
    int n_clients;
    bool closing;
    double number;            /* the next queue number */
    hist *h_head, *h_tail;
    int n_hist;
    char run_client[128], run_prompt[40], run_node[64];   /* what runs now, for a client that reconnects */
    /* The generation thread's: the files the current model was loaded with
     * by a workflow (parts_for = its path), or cfg.load's when parts_for is
     * not the current model. */
    char parts_for[PATH_MAX];
    char vae[PATH_MAX], clip_l[PATH_MAX], clip_g[PATH_MAX], t5[PATH_MAX];
    sdw_weight_type weight_type;
};

sdw_status engine_comfy_new(sdw_engine *e)
{
    struct engine_comfy *h = calloc(1, sizeof *h);
    if (!h) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&h->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->gone, &ca);
    pthread_condattr_destroy(&ca);
    e->comfy = h;
    return SDW_OK;
}

static void free_msgs(sdw_comfy_client *c)
{
    for (msg *m = c->head, *next; m; m = next) {
        next = m->next;
        free(m->data);
        free(m);
    }
    c->head = c->tail = NULL;
    c->bytes = 0;
}

void engine_comfy_free(sdw_engine *e)
{
    struct engine_comfy *h = e->comfy;
    if (!h) return;
    /* Sessions are gone by now (sdw_comfy_close_all ran at shutdown). */
    sdw_comfy_history_delete(e, NULL);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->gone);
    free(h);
    e->comfy = NULL;
}

static double timestamp_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return floor((double)ts.tv_sec * 1000 + ts.tv_nsec / 1e6);
}

/* ---------------------------------------------------------------- the hub */

static void wake(sdw_comfy_client *c)
{
    uint64_t one = 1;
    if (write(c->efd, &one, sizeof one) < 0) {
        /* The counter is full or the fd broke: the session is awake anyway. */
    }
}

/* Queues data (taken) for c; previews are dropped while the client is
 * behind, and a client far behind is dropped. */
static void push_locked(sdw_comfy_client *c, uint8_t *data, size_t n, bool binary)
{
    msg *m = NULL;
    if (c->stop || (binary && c->bytes > SDW_COMFY_OUTBOX_BYTES) || !(m = malloc(sizeof *m))) {
        free(data);
        return;
    }
    if (c->bytes > 4 * SDW_COMFY_OUTBOX_BYTES) {
        sdw_srv_log("ComfyUI client %s: dropped, %zu bytes unread", c->id, c->bytes);
        free(data);
        free(m);
        c->stop = true;
        wake(c);
        return;
    }
    *m = (msg){ NULL, data, n, binary };
    if (c->tail) c->tail->next = m;
    else c->head = m;
    c->tail = m;
    c->bytes += n;
    wake(c);
}

static char *message_text(const char *type, cJSON *data /* taken */)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    cJSON_AddItemToObject(o, "data", data ? data : cJSON_CreateObject());
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* A JSON message to client_id's sockets (NULL: every socket). */
static void send_text(struct engine_comfy *h, const char *client_id, const char *text)
{
    if (!text) return;
    size_t n = strlen(text);
    pthread_mutex_lock(&h->mu);
    for (sdw_comfy_client *c = h->clients; c; c = c->next) {
        if (client_id && strcmp(c->id, client_id)) continue;
        uint8_t *copy = malloc(n ? n : 1);
        if (copy) memcpy(copy, text, n);
        if (copy) push_locked(c, copy, n, false);
    }
    pthread_mutex_unlock(&h->mu);
}

static bool has_client(struct engine_comfy *h, const char *client_id)
{
    pthread_mutex_lock(&h->mu);
    bool any = false;
    for (sdw_comfy_client *c = h->clients; c && !any; c = c->next) any = !strcmp(c->id, client_id);
    pthread_mutex_unlock(&h->mu);
    return any;
}

cJSON *sdw_comfy_queue_info(sdw_engine *e)
{
    pthread_mutex_lock(&e->mu);
    int n = e->q_len + (e->running && e->running->state == SDW_JOB_RUNNING ? 1 : 0);
    pthread_mutex_unlock(&e->mu);
    cJSON *o = cJSON_CreateObject(), *x = cJSON_AddObjectToObject(o, "exec_info");
    cJSON_AddNumberToObject(x, "queue_remaining", n);
    return o;
}

void sdw_comfy_broadcast_status(sdw_engine *e)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddItemToObject(d, "status", sdw_comfy_queue_info(e));
    char *s = message_text("status", d);
    send_text(e->comfy, NULL, s);
    free(s);
}

sdw_comfy_client *sdw_comfy_connect(sdw_engine *e, const char *client_id)
{
    struct engine_comfy *h = e->comfy;
    sdw_comfy_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if ((c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        free(c);
        return NULL;
    }
    c->hub = h;
    if (client_id && client_id[0] && strlen(client_id) < sizeof c->id) {
        snprintf(c->id, sizeof c->id, "%s", client_id);
    } else {
        /* ComfyUI's sid: uuid4().hex */
        char uuid[40];
        engine_new_id(uuid);
        size_t k = 0;
        for (const char *p = uuid; *p; p++)
            if (*p != '-') c->id[k++] = *p;
        c->id[k] = 0;
    }
    cJSON *d = cJSON_CreateObject();
    cJSON_AddItemToObject(d, "status", sdw_comfy_queue_info(e));
    cJSON_AddStringToObject(d, "sid", c->id);
    char *status = message_text("status", d);
    pthread_mutex_lock(&h->mu);
    if (h->closing || !status) {
        pthread_mutex_unlock(&h->mu);
        free(status);
        close(c->efd);
        free(c);
        return NULL;
    }
    push_locked(c, (uint8_t *)status, strlen(status), false);
    /* A client that comes back while its prompt runs learns which node. */
    if (h->run_node[0] && !strcmp(h->run_client, c->id)) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "node", h->run_node);
        cJSON_AddStringToObject(x, "display_node", h->run_node);
        cJSON_AddStringToObject(x, "prompt_id", h->run_prompt);
        char *s = message_text("executing", x);
        if (s) push_locked(c, (uint8_t *)s, strlen(s), false);
    }
    c->next = h->clients;
    h->clients = c;
    h->n_clients++;
    pthread_mutex_unlock(&h->mu);
    return c;
}

const char *sdw_comfy_client_id(const sdw_comfy_client *c) { return c->id; }
int sdw_comfy_client_wake_fd(const sdw_comfy_client *c) { return c->efd; }

int sdw_comfy_client_next(void *client, uint8_t **data, size_t *n, bool *binary)
{
    sdw_comfy_client *c = client;
    struct engine_comfy *h = c->hub;
    pthread_mutex_lock(&h->mu);
    msg *m = c->head;
    int r = m ? 1 : c->stop ? -1 : 0;
    if (m) {
        c->head = m->next;
        if (!c->head) c->tail = NULL;
        c->bytes -= m->n;
        *data = m->data;
        *n = m->n;
        *binary = m->binary;
        free(m);
    }
    pthread_mutex_unlock(&h->mu);
    return r;
}

void sdw_comfy_disconnect(sdw_engine *e, sdw_comfy_client *c)
{
    if (!c) return;
    struct engine_comfy *h = e->comfy;
    pthread_mutex_lock(&h->mu);
    for (sdw_comfy_client **pp = &h->clients; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            h->n_clients--;
            break;
        }
    free_msgs(c);
    pthread_cond_broadcast(&h->gone);
    pthread_mutex_unlock(&h->mu);
    close(c->efd);
    free(c);
}

void sdw_comfy_close_all(sdw_engine *e, double wait_s)
{
    struct engine_comfy *h = e->comfy;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double secs = floor(wait_s);
    ts.tv_sec += (time_t)secs;
    ts.tv_nsec += (long)((wait_s - secs) * 1e9);
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&h->mu);
    h->closing = true;
    for (sdw_comfy_client *c = h->clients; c; c = c->next) {
        c->stop = true;
        wake(c);
    }
    while (h->n_clients > 0 && pthread_cond_timedwait(&h->gone, &h->mu, &ts) == 0) {
    }
    if (h->n_clients > 0) sdw_srv_log("ComfyUI: %d WebSocket sessions still open at shutdown", h->n_clients);
    pthread_mutex_unlock(&h->mu);
}

/* ---------------------------------------------------------------- queue */

double sdw_comfy_take_number(sdw_engine *e, const cJSON *body)
{
    struct engine_comfy *h = e->comfy;
    const cJSON *num = cJSON_GetObjectItemCaseSensitive(body, "number");
    if (cJSON_IsNumber(num)) return num->valuedouble;
    pthread_mutex_lock(&h->mu);
    double n = h->number++;
    pthread_mutex_unlock(&h->mu);
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "front")) ? -n : n;
}

/* [number, prompt_id, prompt, extra_data, outputs_to_execute] */
static cJSON *queue_item(const sdw_job *j)
{
    const sdw_job_comfy *c = &j->req.comfy;
    bool comfy = j->req.kind == SDW_JOB_COMFY;
    cJSON *a = cJSON_CreateArray(), *outs = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateNumber(comfy ? c->number : 0));
    cJSON_AddItemToArray(a, cJSON_CreateString(j->id));
    cJSON_AddItemToArray(a, comfy && c->prompt ? cJSON_Duplicate(c->prompt, true) : cJSON_CreateObject());
    cJSON *extra = comfy && c->extra_data ? cJSON_Duplicate(c->extra_data, true) : cJSON_CreateObject();
    if (!comfy) cJSON_AddStringToObject(extra, "sdw_operation", sdw_job_kind_name(j->req.kind));
    cJSON_AddItemToArray(a, extra);
    if (comfy && c->graph)
        for (int i = 0; i < c->graph->n_outputs; i++)
            cJSON_AddItemToArray(outs, cJSON_CreateString(c->graph->nodes[c->graph->outputs[i]].id));
    cJSON_AddItemToArray(a, outs);
    return a;
}

cJSON *sdw_comfy_queue(sdw_engine *e)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *running = cJSON_AddArrayToObject(o, "queue_running"), *pending = cJSON_AddArrayToObject(o, "queue_pending");
    pthread_mutex_lock(&e->mu);
    if (e->running && e->running->state == SDW_JOB_RUNNING) cJSON_AddItemToArray(running, queue_item(e->running));
    for (sdw_job *j = e->q_head; j; j = j->qnext) cJSON_AddItemToArray(pending, queue_item(j));
    pthread_mutex_unlock(&e->mu);
    return o;
}

void sdw_comfy_queue_delete(sdw_engine *e, const char *id)
{
    pthread_mutex_lock(&e->mu);
    for (sdw_job *j = e->q_head, *next; j; j = next) {
        next = j->qnext;
        if (j->req.kind == SDW_JOB_COMFY && (!id || !strcmp(j->id, id))) engine_cancel_if_queued_locked(e, j);
    }
    pthread_mutex_unlock(&e->mu);
}

/* ---------------------------------------------------------------- history */

static void history_add(struct engine_comfy *h, const char *id, cJSON *entry)
{
    hist *x = calloc(1, sizeof *x);
    if (!x) {
        cJSON_Delete(entry);
        return;
    }
    snprintf(x->id, sizeof x->id, "%s", id);
    x->entry = entry;
    pthread_mutex_lock(&h->mu);
    if (h->h_tail) h->h_tail->next = x;
    else h->h_head = x;
    h->h_tail = x;
    if (++h->n_hist > SDW_COMFY_HISTORY_MAX) {
        hist *old = h->h_head;
        h->h_head = old->next;
        h->n_hist--;
        cJSON_Delete(old->entry);
        free(old);
    }
    pthread_mutex_unlock(&h->mu);
}

cJSON *sdw_comfy_history(sdw_engine *e, const char *id, int max_items)
{
    struct engine_comfy *h = e->comfy;
    cJSON *o = cJSON_CreateObject();
    pthread_mutex_lock(&h->mu);
    int skip = max_items >= 0 && h->n_hist > max_items ? h->n_hist - max_items : 0;
    for (hist *x = h->h_head; x; x = x->next) {
        if (id ? strcmp(x->id, id) : skip-- > 0) continue;
        cJSON_AddItemToObject(o, x->id, cJSON_Duplicate(x->entry, true));
    }
    pthread_mutex_unlock(&h->mu);
    return o;
}

void sdw_comfy_history_delete(sdw_engine *e, const char *id)
{
    struct engine_comfy *h = e->comfy;
    pthread_mutex_lock(&h->mu);
    hist **pp = &h->h_head, *prev = NULL;
    while (*pp) {
        hist *x = *pp;
        if (id && strcmp(x->id, id)) {
            prev = x;
            pp = &x->next;
            continue;
        }
        *pp = x->next;
        if (h->h_tail == x) h->h_tail = prev;
        h->n_hist--;
        cJSON_Delete(x->entry);
        free(x);
    }
    pthread_mutex_unlock(&h->mu);
}

/* ---------------------------------------------------------------- a prompt's run */

typedef struct {
    sdw_engine *e;
    sdw_job *j;
    const sdw_job_comfy *c;
    cJSON *outputs;           /* node id -> its output */
    cJSON *messages;          /* [[type, data], ...] for the history's status */
    cJSON *executed;          /* the nodes that finished */
    char node[64];            /* the node running now */
    double t_last;
} run_ctx;

/* A message of the prompt to its client (kept for the history too with keep). */
static void emit(run_ctx *x, const char *type, cJSON *data, bool keep)
{
    cJSON_AddStringToObject(data, "prompt_id", x->j->id);
    if (keep) {
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(type));
        cJSON_AddItemToArray(pair, cJSON_Duplicate(data, true));
        cJSON_AddItemToArray(x->messages, pair);
    }
    if (!x->c->client_id[0]) {
        cJSON_Delete(data);
        return;
    }
    char *s = message_text(type, data);
    send_text(x->e->comfy, x->c->client_id, s);
    free(s);
}

static cJSON *stamped(void)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "timestamp", timestamp_ms());
    return d;
}

static sdw_status check_cancel(run_ctx *x)
{
    sdw_engine *e = x->e;
    char reason[96];
    pthread_mutex_lock(&e->mu);
    bool cancel = x->j->cancel;
    snprintf(reason, sizeof reason, "%s", x->j->cancel_reason);
    pthread_mutex_unlock(&e->mu);
    return cancel ? sdw_fail(SDW_ERR_CANCELLED, "%s", reason) : SDW_OK;
}

static bool same_file(const char *a, const char *b)
{
    if (!strcmp(a, b)) return true;
    char ra[PATH_MAX], rb[PATH_MAX];
    return a[0] && b[0] && realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
}

static const char *or_empty(const char *s) { return s ? s : ""; }

static sdw_status env_model(void *user, const sdw_comfy_model_spec *spec, sdw_model **out)
{
    run_ctx *x = user;
    sdw_engine *e = x->e;
    struct engine_comfy *h = e->comfy;
    const sdw_load_params *d = &e->cfg.load;
    sdw_load_params lp = *d;
    lp.vae_path = spec->vae[0] ? spec->vae : d->vae_path;
    lp.clip_l_path = spec->clip_l[0] ? spec->clip_l : d->clip_l_path;
    lp.clip_g_path = spec->clip_g[0] ? spec->clip_g : d->clip_g_path;
    lp.t5_path = spec->t5[0] ? spec->t5 : d->t5_path;
    if (spec->weight_type != SDW_WT_KEEP) lp.weight_type = spec->weight_type;
    /* What the current model was loaded with. */
    bool custom = h->parts_for[0] && !strcmp(h->parts_for, e->current.path);
    bool same = e->model && same_file(spec->path, e->current.path) &&
                same_file(or_empty(lp.vae_path), custom ? h->vae : or_empty(d->vae_path)) &&
                same_file(or_empty(lp.clip_l_path), custom ? h->clip_l : or_empty(d->clip_l_path)) &&
                same_file(or_empty(lp.clip_g_path), custom ? h->clip_g : or_empty(d->clip_g_path)) &&
                same_file(or_empty(lp.t5_path), custom ? h->t5 : or_empty(d->t5_path)) &&
                lp.weight_type == (custom ? h->weight_type : d->weight_type);
    if (!same) {
        SDW_TRY(engine_load_model_with(e, spec->path, &lp));
        snprintf(h->parts_for, sizeof h->parts_for, "%s", e->current.path);
        snprintf(h->vae, sizeof h->vae, "%s", or_empty(lp.vae_path));
        snprintf(h->clip_l, sizeof h->clip_l, "%s", or_empty(lp.clip_l_path));
        snprintf(h->clip_g, sizeof h->clip_g, "%s", or_empty(lp.clip_g_path));
        snprintf(h->t5, sizeof h->t5, "%s", or_empty(lp.t5_path));
        h->weight_type = lp.weight_type;
    }
    sdw_lora_report reports[SDW_MAX_LORAS];
    int k = spec->n_loras;
    SDW_TRY(sdw_model_set_loras(e->model, spec->loras, k, k ? reports : NULL));
    for (int i = 0; i < k; i++)
        sdw_srv_log("job %s LoRA %s: applied %d of %d keys (te %g, unet %g)", x->j->id, reports[i].name,
                    reports[i].keys_applied, reports[i].keys_total, spec->loras[i].te_strength,
                    spec->loras[i].unet_strength);
    *out = e->model;
    return SDW_OK;
}

static sdw_status env_resolve(void *user, sdw_comfy_folder f, const char *name, char *path, size_t n)
{
    run_ctx *x = user;
    return sdw_comfy_resolve(x->e, f, name, path, n);
}

static sdw_status env_controlnet(void *user, const char *path, sdw_model *m, const struct sdw_controlnet **out)
{
    run_ctx *x = user;
    sdw_engine *e = x->e;
    if (!m->unet)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s models take no ControlNet (SD1, SD2 and SDXL do)",
                        sdw_family_name(m->info.family));
    if (!e->cn_cache && !(e->cn_cache = sdw_cn_cache_new_controlnets(e->cfg.cn_cache_bytes, m->be)))
        return sdw_fail(SDW_ERR_NOMEM, "ControlNets: out of memory");
    void *net;
    bool hit;
    double t0 = sdw_now();
    SDW_TRY(sdw_cn_cache_get(e->cn_cache, path, &net, &hit));
    if (!hit) sdw_srv_log("job %s ControlNet %s loaded in %.2f s", x->j->id, path, sdw_now() - t0);
    if (sdw_controlnet_check_base(net, sdw_unet_get_config(m->unet), path) != SDW_OK) {
        sdw_cn_cache_refuse(e->cn_cache, path);
        return sdw_fail_context(SDW_ERR_INVALID_ARG, "ControlNet");
    }
    *out = net;
    return SDW_OK;
}

static void set_running(run_ctx *x, const char *node)
{
    struct engine_comfy *h = x->e->comfy;
    pthread_mutex_lock(&h->mu);
    snprintf(h->run_client, sizeof h->run_client, "%s", x->c->client_id);
    snprintf(h->run_prompt, sizeof h->run_prompt, "%s", x->j->id);
    snprintf(h->run_node, sizeof h->run_node, "%s", node ? node : "");
    pthread_mutex_unlock(&h->mu);
}

static sdw_status env_executing(void *user, const char *node_id)
{
    run_ctx *x = user;
    if (x->node[0]) cJSON_AddItemToArray(x->executed, cJSON_CreateString(x->node));
    snprintf(x->node, sizeof x->node, "%s", node_id);
    set_running(x, node_id);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "node", node_id);
    cJSON_AddStringToObject(d, "display_node", node_id);
    emit(x, "executing", d, false);
    return check_cancel(x);
}

/* ComfyUI's binary preview frame: event 1 (PREVIEW_IMAGE), image type 2 (PNG), the PNG. */
static void send_preview(run_ctx *x, const float *rgb, int w, int h)
{
    sdw_image img;
    uint8_t *png = NULL;
    size_t n = 0;
    if (sdw_rgb01_to_image(rgb, w, h, &img) != SDW_OK) return;
    sdw_status s = sdw_image_encode_png(&img, NULL, 0, &png, &n);
    sdw_image_free(&img);
    uint8_t *frame = s == SDW_OK ? malloc(n + 8) : NULL;
    if (frame) {
        static const uint8_t head[8] = { 0, 0, 0, 1, 0, 0, 0, 2 };
        memcpy(frame, head, 8);
        memcpy(frame + 8, png, n);
        struct engine_comfy *hub = x->e->comfy;
        pthread_mutex_lock(&hub->mu);
        for (sdw_comfy_client *c = hub->clients; c; c = c->next) {
            if (strcmp(c->id, x->c->client_id)) continue;
            uint8_t *copy = malloc(n + 8);
            if (copy) {
                memcpy(copy, frame, n + 8);
                push_locked(c, copy, n + 8, true);
            }
        }
        pthread_mutex_unlock(&hub->mu);
    }
    free(frame);
    free(png);
}

static sdw_status env_progress(void *user, const char *node_id, int step, int total, const float *preview, int pw,
                               int ph)
{
    run_ctx *x = user;
    sdw_engine *e = x->e;
    double now = sdw_now();
    sdw_metrics_step_seconds(e->metrics, now - x->t_last);
    if (e->cfg.step_delay_ms > 0) {
        struct timespec ts = { e->cfg.step_delay_ms / 1000, (long)(e->cfg.step_delay_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    x->t_last = sdw_now();
    pthread_mutex_lock(&e->mu);
    x->j->step = step;
    x->j->total = total;
    pthread_mutex_unlock(&e->mu);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "value", step);
    cJSON_AddNumberToObject(d, "max", total);
    cJSON_AddStringToObject(d, "node", node_id);
    emit(x, "progress", d, false);
    if (preview && x->c->client_id[0] && has_client(e->comfy, x->c->client_id)) send_preview(x, preview, pw, ph);
    return check_cancel(x);
}

static sdw_status env_save_image(void *user, const sdw_image *img, const char *prefix, bool temp, sdw_comfy_file *out)
{
    run_ctx *x = user;
    const char *dir = temp ? x->e->cfg.temp_dir : x->e->cfg.output_dir;
    char path[PATH_MAX];
    SDW_TRY(sdw_comfy_save_path(dir, prefix, img->w, img->h, path, sizeof path, out));
    snprintf(out->type, sizeof out->type, "%s", temp ? "temp" : "output");
    /* ComfyUI's metadata: "prompt", then each key of extra_pnginfo ("workflow"), as JSON. */
    enum { MAX_TEXTS = 16 };
    sdw_png_text texts[MAX_TEXTS];
    char *owned[MAX_TEXTS];
    int nt = 0;
    if (x->c->prompt && (owned[nt] = cJSON_PrintUnformatted(x->c->prompt))) {
        texts[nt] = (sdw_png_text){ "prompt", owned[nt] };
        nt++;
    }
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(x->c->extra_data, "extra_pnginfo"), *it;
    if (!cJSON_IsObject(info)) info = NULL;
    cJSON_ArrayForEach(it, info) {
        if (nt == MAX_TEXTS || !it->string || !it->string[0] || strlen(it->string) > 79) continue;
        if (!(owned[nt] = cJSON_PrintUnformatted(it))) continue;
        texts[nt] = (sdw_png_text){ it->string, owned[nt] };
        nt++;
    }
    sdw_status s = sdw_image_save(path, img, texts, nt);
    for (int i = 0; i < nt; i++) free(owned[i]);
    return s;
}

static void env_executed(void *user, const char *node_id, cJSON *output)
{
    run_ctx *x = user;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "node", node_id);
    cJSON_AddStringToObject(d, "display_node", node_id);
    cJSON_AddItemToObject(d, "output", cJSON_Duplicate(output, true));
    cJSON_DeleteItemFromObjectCaseSensitive(x->outputs, node_id);
    cJSON_AddItemToObject(x->outputs, node_id, output);
    emit(x, "executed", d, false);
}

/* A Python exception class for a failure, as ComfyUI's execution_error names it. */
static const char *exception_type(sdw_status s)
{
    switch (s) {
    case SDW_ERR_INVALID_ARG: case SDW_ERR_FORMAT: return "ValueError";
    case SDW_ERR_IO: return "FileNotFoundError";
    case SDW_ERR_NOMEM: return "MemoryError";
    case SDW_ERR_UNSUPPORTED: return "NotImplementedError";
    default: return "RuntimeError";
    }
}

/* The history entry: ComfyUI's {"prompt", "outputs", "status", "meta"}. */
static cJSON *history_entry(run_ctx *x, bool ok)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "prompt", queue_item(x->j));
    cJSON_AddItemToObject(o, "outputs", cJSON_Duplicate(x->outputs, true));
    cJSON *st = cJSON_AddObjectToObject(o, "status");
    cJSON_AddStringToObject(st, "status_str", ok ? "success" : "error");
    cJSON_AddBoolToObject(st, "completed", ok);
    cJSON_AddItemToObject(st, "messages", cJSON_Duplicate(x->messages, true));
    cJSON *meta = cJSON_AddObjectToObject(o, "meta"), *it;
    cJSON_ArrayForEach(it, x->outputs) {
        cJSON *m = cJSON_AddObjectToObject(meta, it->string);
        cJSON_AddStringToObject(m, "node_id", it->string);
        cJSON_AddStringToObject(m, "display_node", it->string);
        cJSON_AddNullToObject(m, "parent_node");
        cJSON_AddStringToObject(m, "real_node_id", it->string);
    }
    return o;
}

/* The last message (success, error or interrupted): kept, then the history
 * written, then sent, so that a client that asks /history on it finds it. */
static void finish_run(run_ctx *x, const char *type, cJSON *data, bool ok)
{
    cJSON_AddStringToObject(data, "prompt_id", x->j->id);
    cJSON *pair = cJSON_CreateArray();
    cJSON_AddItemToArray(pair, cJSON_CreateString(type));
    cJSON_AddItemToArray(pair, cJSON_Duplicate(data, true));
    cJSON_AddItemToArray(x->messages, pair);
    history_add(x->e->comfy, x->j->id, history_entry(x, ok));
    if (x->c->client_id[0]) {
        char *s = message_text(type, data);
        send_text(x->e->comfy, x->c->client_id, s);
        free(s);
    } else {
        cJSON_Delete(data);
    }
}

void engine_comfy_run(sdw_engine *e, sdw_job *j)
{
    run_ctx x = { .e = e, .j = j, .c = &j->req.comfy, .outputs = cJSON_CreateObject(),
                  .messages = cJSON_CreateArray(), .executed = cJSON_CreateArray(), .t_last = sdw_now() };
    double t0 = sdw_now();
    emit(&x, "execution_start", stamped(), true);
    cJSON *cached = stamped();
    cJSON_AddArrayToObject(cached, "nodes");
    emit(&x, "execution_cached", cached, true);
    sdw_comfy_env env = { .user = &x, .model = env_model, .resolve = env_resolve, .controlnet = env_controlnet,
                          .executing = env_executing, .progress = env_progress, .save_image = env_save_image,
                          .executed = env_executed };
    int failed = -1;
    sdw_status s = x.c->graph ? sdw_comfy_run(x.c->graph, &env, &failed)
                              : sdw_fail(SDW_ERR_INVALID_ARG, "the prompt has no graph");
    char message[1024];
    snprintf(message, sizeof message, "%s", s == SDW_OK ? "" : sdw_last_error());
    if (e->cn_cache) sdw_cn_cache_unpin_all(e->cn_cache);
    const sdw_comfy_graph *g = x.c->graph;
    const char *node_id = failed >= 0 && g ? g->nodes[failed].id : x.node;
    const char *node_type = "";
    for (int i = 0; g && i < g->n_nodes; i++)
        if (!strcmp(g->nodes[i].id, node_id)) node_type = g->nodes[i].spec->class_type;
    if (s == SDW_OK && x.node[0]) cJSON_AddItemToArray(x.executed, cJSON_CreateString(x.node));
    cJSON *d = stamped();
    if (s != SDW_OK) {
        cJSON_AddStringToObject(d, "node_id", node_id);
        cJSON_AddStringToObject(d, "node_type", node_type);
        cJSON_AddItemToObject(d, "executed", cJSON_Duplicate(x.executed, true));
    }
    if (s == SDW_OK) {
        finish_run(&x, "execution_success", d, true);
    } else if (s == SDW_ERR_CANCELLED) {
        finish_run(&x, "execution_interrupted", d, false);
    } else {
        cJSON_AddStringToObject(d, "exception_message", message);
        cJSON_AddStringToObject(d, "exception_type", exception_type(s));
        cJSON_AddArrayToObject(d, "traceback");
        cJSON_AddObjectToObject(d, "current_inputs");
        cJSON_AddObjectToObject(d, "current_outputs");
        finish_run(&x, "execution_error", d, false);
    }
    set_running(&x, NULL);
    j->result.seconds = sdw_now() - t0;
    pthread_mutex_lock(&e->mu);
    if (s == SDW_OK) job_finish_locked(e, j, SDW_JOB_COMPLETED, NULL, NULL);
    else if (s == SDW_ERR_CANCELLED)
        job_finish_locked(e, j, SDW_JOB_CANCELLED, e->drain_cancel ? "shutting_down" : "cancelled", message);
    else
        job_finish_locked(e, j, SDW_JOB_FAILED, s == SDW_ERR_INVALID_ARG ? "invalid_request" : "generation_failed",
                          message);
    pthread_mutex_unlock(&e->mu);
    /* ComfyUI's end of a prompt: "executing" with no node, then the queue's status. */
    cJSON *end = cJSON_CreateObject();
    cJSON_AddNullToObject(end, "node");
    emit(&x, "executing", end, false);
    sdw_comfy_broadcast_status(e);
    cJSON_Delete(x.outputs);
    cJSON_Delete(x.messages);
    cJSON_Delete(x.executed);
}
