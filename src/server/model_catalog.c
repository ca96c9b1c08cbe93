/* model_catalog.c: see model_catalog.h. Listing probes each candidate
 * (headers only) and hashes each file through the SHA-256 cache, so the
 * first listing of a folder of large checkpoints takes a while; later ones
 * hit the cache. */
#include "server/model_catalog.h"
#include "core/error.h"
#include "io/file_hash.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DEPTH 3
#define MAX_ENTRIES 1024

typedef struct {
    sdw_catalog_entry *v;
    int n, cap;
    char root[PATH_MAX];     /* real path of the folder */
} list;

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

bool sdw_catalog_is_pickle(const char *name)
{
    return ends_with(name, ".ckpt") || ends_with(name, ".pt") || ends_with(name, ".pth") || ends_with(name, ".bin");
}

static bool inside(const char *root, const char *real)
{
    size_t n = strlen(root);
    return !strncmp(real, root, n) && real[n] == '/';
}

static void a1111_names(sdw_catalog_entry *e)
{
    snprintf(e->model_name, sizeof e->model_name, "%s", e->name);
    for (char *c = e->model_name; *c; c++)
        if (*c == '/') *c = '_';
    char *dot = strrchr(e->model_name, '.');
    if (dot && !e->diffusers && dot != e->model_name) *dot = 0;
    if (e->hash10[0]) snprintf(e->title, sizeof e->title, "%s [%s]", e->name, e->hash10);
    else snprintf(e->title, sizeof e->title, "%s", e->name);
}

static void add(list *l, const char *rel, const char *real, bool diffusers)
{
    if (l->n >= MAX_ENTRIES) return;
    sdw_load_params lp = sdw_load_params_default();
    sdw_model_info info;
    if (sdw_model_probe(real, &lp, &info) != SDW_OK) return;   /* a LoRA, a VAE, not a model */
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        sdw_catalog_entry *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return;
        l->v = v;
        l->cap = cap;
    }
    sdw_catalog_entry *e = &l->v[l->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", rel);
    snprintf(e->path, sizeof e->path, "%s", real);
    e->family = info.family;
    e->diffusers = diffusers;
    if (!diffusers && sdw_file_sha256(real, e->sha256) == SDW_OK) snprintf(e->hash10, sizeof e->hash10, "%.10s", e->sha256);
    a1111_names(e);
}

static void walk(list *l, const char *dir, const char *rel, int depth)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[PATH_MAX], sub[512], real[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
        struct stat st;
        if (stat(path, &st) || !realpath(path, real) || !inside(l->root, real)) continue;
        if (S_ISDIR(st.st_mode)) {
            char index[PATH_MAX + 32];
            snprintf(index, sizeof index, "%s/model_index.json", real);
            if (access(index, R_OK) == 0) add(l, sub, real, true);
            else if (depth + 1 < MAX_DEPTH) walk(l, path, sub, depth + 1);
        } else if (S_ISREG(st.st_mode) && ends_with(de->d_name, ".safetensors")) {
            add(l, sub, real, false);
        }
    }
    closedir(d);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const sdw_catalog_entry *)a)->name, ((const sdw_catalog_entry *)b)->name);
}

sdw_status sdw_catalog_list(const char *dir, sdw_catalog_entry **out, int *n)
{
    *out = NULL;
    *n = 0;
    list l = { 0 };
    if (!realpath(dir, l.root)) return sdw_fail(SDW_ERR_IO, "models dir %s: not found", dir);
    walk(&l, l.root, "", 0);
    if (l.n) qsort(l.v, (size_t)l.n, sizeof *l.v, by_name);
    *out = l.v;
    *n = l.n;
    return SDW_OK;
}

static bool matches(const sdw_catalog_entry *e, const char *name)
{
    const char *base = strrchr(e->name, '/');
    base = base ? base + 1 : e->name;
    size_t nl = strlen(e->name);
    return !strcmp(name, e->name) || !strcmp(name, e->title) || !strcmp(name, e->model_name) ||
           (e->hash10[0] && (!strcmp(name, e->hash10) || !strcmp(name, e->sha256))) ||
           (!strncmp(name, e->name, nl) && name[nl] == ' ' && name[nl + 1] == '[') ||  /* an older hash */
           (!e->diffusers && !strcmp(name, base));
}

sdw_status sdw_catalog_resolve(const char *dir, const char *name, sdw_catalog_entry *out)
{
    if (sdw_catalog_is_pickle(name))
        return sdw_fail(SDW_ERR_UNSUPPORTED,
                        "model '%s' is a pickle checkpoint, which sd-worker never loads: convert it to .safetensors",
                        name);
    if (name[0] == '/' || strstr(name, ".."))
        return sdw_fail(SDW_ERR_INVALID_ARG, "model '%s' must be a name inside --models-dir (no absolute path, no '..')",
                        name);
    sdw_catalog_entry *v;
    int n;
    SDW_TRY(sdw_catalog_list(dir, &v, &n));
    sdw_status s = sdw_fail(SDW_ERR_INVALID_ARG, "unknown model '%s' (GET /sdapi/v1/sd-models lists them)", name);
    for (int i = 0; i < n; i++)
        if (matches(&v[i], name)) {
            *out = v[i];
            s = SDW_OK;
            sdw_clear_error();
            break;
        }
    free(v);
    return s;
}

void sdw_catalog_describe(const char *dir, const char *path, sdw_catalog_entry *out)
{
    memset(out, 0, sizeof *out);
    char real[PATH_MAX], root[PATH_MAX];
    snprintf(out->path, sizeof out->path, "%s", realpath(path, real) ? real : path);
    struct stat st;
    out->diffusers = stat(out->path, &st) == 0 && S_ISDIR(st.st_mode);
    const char *base = strrchr(out->path, '/');
    if (dir && realpath(dir, root) && inside(root, out->path)) snprintf(out->name, sizeof out->name, "%s", out->path + strlen(root) + 1);
    else snprintf(out->name, sizeof out->name, "%s", base && base[1] ? base + 1 : out->path);
    if (!out->diffusers && sdw_file_sha256(out->path, out->sha256) == SDW_OK)
        snprintf(out->hash10, sizeof out->hash10, "%.10s", out->sha256);
    a1111_names(out);
}
