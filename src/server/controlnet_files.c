/* controlnet_files.c: see controlnet_files.h. Listing without a probe only
 * walks the folder (each request resolves its names this way: cheap even
 * with many large files); the probe reads headers, and the hash 64 KiB of
 * each file. */
#include "server/controlnet_files.h"
#include "server/model_catalog.h"
#include "core/error.h"
#include "models/controlnet.h"
#include "pipeline/infotext.h"
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
    sdw_cn_entry *v;
    int n, cap;
    char root[PATH_MAX];
} list;

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

static bool inside(const char *root, const char *real)
{
    size_t n = strlen(root);
    return !strncmp(real, root, n) && real[n] == '/';
}

static void names(sdw_cn_entry *e)
{
    const char *base = strrchr(e->name, '/');
    snprintf(e->stem, sizeof e->stem, "%s", base ? base + 1 : e->name);
    char *dot = strrchr(e->stem, '.');
    if (!e->diffusers && dot && dot != e->stem) *dot = 0;
    if (e->hash[0]) snprintf(e->title, sizeof e->title, "%s [%s]", e->stem, e->hash);
    else snprintf(e->title, sizeof e->title, "%s", e->stem);
}

/* Fills the family and hash; false when the entry is no ControlNet. */
static bool probe(sdw_cn_entry *e)
{
    sdw_controlnet_info info;
    if (sdw_controlnet_probe(e->path, &info) != SDW_OK) return false;
    e->family = info.family;
    if (!e->diffusers) sdw_infotext_short_hash(e->path, e->hash);
    names(e);
    return true;
}

static void add(list *l, const char *rel, const char *real, bool diffusers, bool with_probe)
{
    if (l->n >= MAX_ENTRIES) return;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        sdw_cn_entry *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return;
        l->v = v;
        l->cap = cap;
    }
    sdw_cn_entry *e = &l->v[l->n];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", rel);
    snprintf(e->path, sizeof e->path, "%s", real);
    e->diffusers = diffusers;
    names(e);
    if (with_probe && !probe(e)) return;
    l->n++;
}

static void walk(list *l, const char *dir, const char *rel, int depth, bool with_probe)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[PATH_MAX], sub[512], real[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path ||
            snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name) >= (int)sizeof sub)
            continue;
        struct stat st;
        if (stat(path, &st) || !realpath(path, real) || !inside(l->root, real)) continue;
        if (S_ISDIR(st.st_mode)) {
            char config[PATH_MAX + 16];
            snprintf(config, sizeof config, "%s/config.json", real);
            if (access(config, R_OK) == 0) add(l, sub, real, true, with_probe);
            else if (depth + 1 < MAX_DEPTH) walk(l, path, sub, depth + 1, with_probe);
        } else if (S_ISREG(st.st_mode) && ends_with(de->d_name, ".safetensors")) {
            add(l, sub, real, false, with_probe);
        }
    }
    closedir(d);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const sdw_cn_entry *)a)->name, ((const sdw_cn_entry *)b)->name);
}

sdw_status sdw_cn_list(const char *dir, bool with_probe, sdw_cn_entry **out, int *n)
{
    *out = NULL;
    *n = 0;
    list l = { 0 };
    if (!realpath(dir, l.root)) return sdw_fail(SDW_ERR_IO, "--controlnet-dir %s: not found", dir);
    walk(&l, l.root, "", 0, with_probe);
    if (l.n) qsort(l.v, (size_t)l.n, sizeof *l.v, by_name);
    *out = l.v;
    *n = l.n;
    return SDW_OK;
}

static bool matches(const sdw_cn_entry *e, const char *name)
{
    size_t nl = strlen(e->name);
    return !strcmp(name, e->name) || !strcmp(name, e->title) || !strcasecmp(name, e->stem) ||
           (ends_with(e->name, ".safetensors") && strlen(name) + 12 == nl && !strncmp(name, e->name, nl - 12));
}

sdw_status sdw_cn_resolve(const char *dir, const char *name, sdw_cn_entry *out)
{
    char base[512];
    snprintf(base, sizeof base, "%s", name);
    /* sd-webui-controlnet's "name [hash]". */
    char *bracket = strrchr(base, '[');
    size_t n = strlen(base);
    if (bracket && bracket > base && bracket[-1] == ' ' && n && base[n - 1] == ']') bracket[-1] = 0;
    if (!base[0]) return sdw_fail(SDW_ERR_INVALID_ARG, "ControlNet '%s': an empty name", name);
    if (sdw_catalog_is_pickle(base))
        return sdw_fail(SDW_ERR_UNSUPPORTED, "ControlNet '%s' is a pickle file, which sd-worker never loads: convert it "
                        "to .safetensors", name);
    if (base[0] == '/' || strstr(base, "..") || strchr(base, '\\'))
        return sdw_fail(SDW_ERR_INVALID_ARG, "ControlNet '%s' must be a name inside --controlnet-dir (no absolute "
                        "path, no '..')", name);
    sdw_cn_entry *v;
    int k;
    SDW_TRY(sdw_cn_list(dir, false, &v, &k));
    int found = -1;
    for (int i = 0; i < k && found < 0; i++)
        if (matches(&v[i], base)) found = i;
    sdw_status s = SDW_OK;
    if (found < 0) {
        s = sdw_fail(SDW_ERR_INVALID_ARG, "unknown ControlNet '%s' (not in --controlnet-dir; GET "
                     "/controlnet/model_list lists them)", name);
    } else {
        *out = v[found];
        if (!probe(out))
            s = sdw_fail_context(SDW_ERR_INVALID_ARG, "ControlNet '%s' (%s) is not a ControlNet this worker loads", name,
                                 out->name);
    }
    free(v);
    return s;
}
