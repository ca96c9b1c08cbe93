/* controlnet_cache.h: ControlNet weights kept across jobs. A ControlNet is
 * loaded the first time a job names its file, then held, so that the next
 * job with it starts at once; what is held stays under a byte budget
 * (--cache-bytes) by dropping the least recently used nets first, never one
 * the running job holds (pinned). A net larger than the whole budget is
 * still loaded for the job that needs it and dropped after.
 *
 * Only the generation thread uses a cache (it owns the model, and the nets
 * are loaded on the model's backend), so there is no lock. The loader is a
 * parameter so that the policy can be tested with fake nets; the engine's
 * loads real ControlNets (sdw_cn_cache_new_controlnets). An entry is keyed
 * by path, and dropped when the file changed on disk (size or mtime). */
#ifndef SDW_SERVER_CONTROLNET_CACHE_H
#define SDW_SERVER_CONTROLNET_CACHE_H
#include "sdw.h"

#define SDW_CN_CACHE_DEFAULT_BYTES ((size_t)4 << 30)

typedef struct sdw_cn_cache sdw_cn_cache;

/* Loads path into *net; *bytes is what it holds in memory. */
typedef sdw_status (*sdw_cn_load_fn)(void *user, const char *path, void **net, size_t *bytes);
typedef void (*sdw_cn_free_fn)(void *user, void *net);

/* budget 0 = SDW_CN_CACHE_DEFAULT_BYTES. NULL when out of memory. */
sdw_cn_cache *sdw_cn_cache_new(size_t budget, sdw_cn_load_fn load, sdw_cn_free_fn free_net, void *user);
/* The cache of real ControlNets (sdw_controlnet_load on be). */
struct sdw_backend;
sdw_cn_cache *sdw_cn_cache_new_controlnets(size_t budget, struct sdw_backend *be);
/* Frees every net: pinned ones too (no job may run any more). NULL is fine. */
void sdw_cn_cache_free(sdw_cn_cache *c);

/* The net of path, loaded now or held from before, and pinned until
 * sdw_cn_cache_unpin_all. *hit says which. Least recently used unpinned nets
 * are dropped first to make room (by the file's size, before loading). */
sdw_status sdw_cn_cache_get(sdw_cn_cache *c, const char *path, void **net, bool *hit);
/* path's net did not fit the model: it goes when the job is over, so the
 * next job loads it again (a config put beside it since is read then). */
void sdw_cn_cache_refuse(sdw_cn_cache *c, const char *path);
/* The job is over: nothing is pinned, and the budget holds again. */
void sdw_cn_cache_unpin_all(sdw_cn_cache *c);
/* Drops every unpinned net (the model, and so the backend, changes). */
void sdw_cn_cache_clear(sdw_cn_cache *c);

typedef struct {
    int entries, pinned;
    size_t bytes, budget;
    long long hits, loads, evictions;
} sdw_cn_cache_stats;
sdw_cn_cache_stats sdw_cn_cache_get_stats(const sdw_cn_cache *c);
#endif
