/* controlnet_cache.c: see controlnet_cache.h. The entries form one list in
 * recency order (head = most recently used); eviction walks it from the
 * tail. A cache holds a handful of nets, so lookups are linear. */
#include "server/controlnet_cache.h"
#include "server/server_log.h"
#include "core/error.h"
#include "models/controlnet.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct entry {
    char *path;
    void *net;
    size_t bytes;
    int pins;
    bool refused;              /* did not fit the model: dropped when unpinned (sdw_cn_cache_refuse) */
    off_t size;                /* the file as it was loaded */
    struct timespec mtime;
    struct entry *prev, *next;
} entry;

struct sdw_cn_cache {
    size_t budget, bytes;
    sdw_cn_load_fn load;
    sdw_cn_free_fn free_net;
    void *user;
    entry *head, *tail;
    int entries;
    long long hits, loads, evictions;
};

sdw_cn_cache *sdw_cn_cache_new(size_t budget, sdw_cn_load_fn load, sdw_cn_free_fn free_net, void *user)
{
    sdw_cn_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->budget = budget ? budget : SDW_CN_CACHE_DEFAULT_BYTES;
    c->load = load;
    c->free_net = free_net;
    c->user = user;
    return c;
}

static void unlink_entry(sdw_cn_cache *c, entry *e)
{
    if (e->prev) e->prev->next = e->next;
    else c->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(sdw_cn_cache *c, entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e;
    else c->tail = e;
    c->head = e;
}

static void drop(sdw_cn_cache *c, entry *e)
{
    unlink_entry(c, e);
    c->bytes -= e->bytes;
    c->entries--;
    c->free_net(c->user, e->net);
    free(e->path);
    free(e);
}

static void evict(sdw_cn_cache *c, entry *e, const char *why)
{
    sdw_srv_log("controlnet cache: dropping %s (%.1f MB, %s)", e->path, e->bytes / 1e6, why);
    drop(c, e);
    c->evictions++;
}

/* Unpinned nets go until `need` more bytes fit: first any net larger than
 * the whole budget (never worth keeping), then the least recently used. */
static void make_room(sdw_cn_cache *c, size_t need)
{
    for (entry *e = c->tail, *prev; e && c->bytes + need > c->budget; e = prev) {
        prev = e->prev;
        if (!e->pins && e->bytes > c->budget) evict(c, e, "larger than --cache-bytes");
    }
    for (entry *e = c->tail, *prev; e && c->bytes + need > c->budget; e = prev) {
        prev = e->prev;
        if (!e->pins) evict(c, e, "least recently used");
    }
}

void sdw_cn_cache_free(sdw_cn_cache *c)
{
    if (!c) return;
    while (c->head) drop(c, c->head);
    free(c);
}

/* What a net of path will take, roughly, before it is loaded: its weights
 * file's size (a diffusers folder's weights file). */
static size_t size_hint(const char *path, const struct stat *st)
{
    if (S_ISREG(st->st_mode)) return (size_t)st->st_size;
    char w[PATH_MAX + 64];
    struct stat ws;
    snprintf(w, sizeof w, "%s/diffusion_pytorch_model.safetensors", path);
    return stat(w, &ws) == 0 ? (size_t)ws.st_size : 0;
}

static bool same_file(const entry *e, const struct stat *st)
{
    return e->size == st->st_size && e->mtime.tv_sec == st->st_mtim.tv_sec && e->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

sdw_status sdw_cn_cache_get(sdw_cn_cache *c, const char *path, void **net, bool *hit)
{
    *net = NULL;
    *hit = false;
    struct stat st;
    if (stat(path, &st)) return sdw_fail(SDW_ERR_IO, "ControlNet %s: cannot read it", path);
    entry *e = c->head;
    while (e && strcmp(e->path, path)) e = e->next;
    if (e && !e->pins && !same_file(e, &st)) {
        sdw_srv_log("controlnet cache: %s changed on disk, loading it again", path);
        drop(c, e);
        e = NULL;
    }
    if (e) {
        unlink_entry(c, e);
        push_front(c, e);
        e->pins++;
        c->hits++;
        *net = e->net;
        *hit = true;
        return SDW_OK;
    }
    make_room(c, size_hint(path, &st));
    e = calloc(1, sizeof *e);
    if (!e || !(e->path = strdup(path))) {
        free(e);
        return sdw_fail(SDW_ERR_NOMEM, "ControlNet %s: out of memory", path);
    }
    sdw_status s = c->load(c->user, path, &e->net, &e->bytes);
    if (s != SDW_OK) {
        free(e->path);
        free(e);
        return s;
    }
    e->size = st.st_size;
    e->mtime = st.st_mtim;
    e->pins = 1;
    push_front(c, e);
    c->entries++;
    c->bytes += e->bytes;
    c->loads++;
    make_room(c, 0);
    *net = e->net;
    return SDW_OK;
}

void sdw_cn_cache_unpin_all(sdw_cn_cache *c)
{
    for (entry *e = c->head, *next; e; e = next) {
        next = e->next;
        e->pins = 0;
        if (e->refused) drop(c, e);
    }
    make_room(c, 0);
}

void sdw_cn_cache_refuse(sdw_cn_cache *c, const char *path)
{
    for (entry *e = c->head; e; e = e->next)
        if (!strcmp(e->path, path)) e->refused = true;
}

void sdw_cn_cache_clear(sdw_cn_cache *c)
{
    entry *e = c->head;
    while (e) {
        entry *next = e->next;
        if (!e->pins) drop(c, e);
        e = next;
    }
}

sdw_cn_cache_stats sdw_cn_cache_get_stats(const sdw_cn_cache *c)
{
    sdw_cn_cache_stats s = { 0 };
    s.entries = c->entries;
    for (const entry *e = c->head; e; e = e->next) s.pinned += e->pins > 0;
    s.bytes = c->bytes;
    s.budget = c->budget;
    s.hits = c->hits;
    s.loads = c->loads;
    s.evictions = c->evictions;
    return s;
}

/* ---------------------------------------------------------------- real ControlNets */

static sdw_status load_controlnet(void *user, const char *path, void **net, size_t *bytes)
{
    sdw_controlnet *cn;
    SDW_TRY(sdw_controlnet_load(user, path, &cn));
    *net = cn;
    *bytes = sdw_controlnet_get_info(cn)->weight_bytes;
    return SDW_OK;
}

static void free_controlnet(void *user, void *net)
{
    (void)user;
    sdw_controlnet_free(net);
}

sdw_cn_cache *sdw_cn_cache_new_controlnets(size_t budget, struct sdw_backend *be)
{
    return sdw_cn_cache_new(budget, load_controlnet, free_controlnet, be);
}
