/* dump.c: see dump.h. Per-step tensors become "<name>.<step>". */
#include "cli/dump.h"
#include "core/error.h"
#include "io/safetensors_write.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[4];
    float *data;
} item;

struct sdw_dump {
    char path[4096];
    item *items;
    int n, cap;
    bool oom;
};

sdw_dump *sdw_dump_begin(const char *dir, int run)
{
    sdw_dump *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    mkdir(dir, 0755);
    snprintf(d->path, sizeof d->path, "%s/run-%d.safetensors", dir, run);
    return d;
}

void sdw_dump_observe(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape)
{
    sdw_dump *d = user;
    if (!d || d->oom || ndim > 4) return;
    if (d->n == d->cap) {
        int cap = d->cap ? 2 * d->cap : 32;
        item *p = realloc(d->items, (size_t)cap * sizeof *p);
        if (!p) { d->oom = true; return; }
        d->items = p;
        d->cap = cap;
    }
    item *it = &d->items[d->n];
    if (step >= 0) snprintf(it->name, sizeof it->name, "%s.%d", name, step);
    else snprintf(it->name, sizeof it->name, "%s", name);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)(it->shape[i] = shape[i]);
    it->ndim = ndim;
    if (!(it->data = malloc(n * sizeof(float)))) { d->oom = true; return; }
    memcpy(it->data, x, n * sizeof(float));
    d->n++;
}

sdw_status sdw_dump_end(sdw_dump *d, bool write)
{
    if (!d) return sdw_fail(SDW_ERR_NOMEM, "out of memory for the dump");
    sdw_status s = SDW_OK;
    if (write && d->oom) s = sdw_fail(SDW_ERR_NOMEM, "out of memory collecting the dump");
    if (write && s == SDW_OK) {
        sdw_st_out *t = calloc((size_t)d->n + 1, sizeof *t);
        if (!t) s = sdw_fail(SDW_ERR_NOMEM, "out of memory");
        for (int i = 0; t && i < d->n; i++) t[i] = (sdw_st_out){ d->items[i].name, d->items[i].ndim, d->items[i].shape, d->items[i].data };
        if (t) s = sdw_st_write_f32(d->path, t, d->n);
        free(t);
    }
    for (int i = 0; i < d->n; i++) free(d->items[i].data);
    free(d->items);
    free(d);
    return s;
}
