/* engine_comfy_files.c: ComfyUI's folders on this server. The output,
 * input and temp folders (--output-dir, --input-dir, --temp-dir) hold what
 * SaveImage / PreviewImage write and what /upload takes; the model folders
 * that workflows name files from are the engine's: checkpoints from
 * --models-dir (and the loaded model), loras from --lora-dir, controlnet
 * from --controlnet-dir, and vae / clip / unet from --models-dir too.
 *
 * A name from a request never becomes a path by itself: it may not be
 * absolute or hold a ".." component, and once it names an existing file its
 * real path (symlinks resolved) must lie inside the folder's. Checkpoints,
 * LoRAs and ControlNets go through their own resolvers (model_catalog.h,
 * lora.h, controlnet_files.h), which hold to the same rules. */
#include "server/engine_comfy.h"
#include "server/engine_internal.h"
#include "server/controlnet_files.h"
#include "server/model_catalog.h"
#include "core/error.h"
#include "models/lora.h"
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

/* How deep the model folders are walked (as model_catalog.c does). */
#define WALK_DEPTH 3

const char *sdw_comfy_type_dir(sdw_engine *e, const char *type)
{
    const sdw_engine_config *c = sdw_engine_get_config(e);
    if (!type || !type[0] || !strcmp(type, "output")) return c->output_dir;
    if (!strcmp(type, "input")) return c->input_dir;
    if (!strcmp(type, "temp")) return c->temp_dir;
    return NULL;
}

/* No absolute path, no ".." component, no NUL-less junk: what a relative
 * name inside a folder may be. */
static bool relative_ok(const char *s)
{
    if (!s || s[0] == '/' || strchr(s, '\\')) return false;
    for (const char *p = s; *p;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') return false;
        p += n;
        if (*p == '/') p++;
    }
    return true;
}

/* Whether real path p is dir or lies under it (both resolved). */
static bool inside(const char *rdir, const char *p)
{
    size_t n = strlen(rdir);
    if (n == 1 && rdir[0] == '/') return true;
    return !strncmp(p, rdir, n) && (p[n] == '/' || p[n] == 0);
}

sdw_status sdw_comfy_path(const char *dir, const char *sub, const char *name, bool must_exist, char *out, size_t n)
{
    if (!name || !name[0] || !relative_ok(name) || (sub && !relative_ok(sub)))
        return sdw_fail(SDW_ERR_INVALID_ARG, "'%s': not a file name inside the folder", name ? name : "");
    int k = sub && sub[0] ? snprintf(out, n, "%s/%s/%s", dir, sub, name) : snprintf(out, n, "%s/%s", dir, name);
    if (k < 0 || (size_t)k >= n) return sdw_fail(SDW_ERR_INVALID_ARG, "'%s': path too long", name);
    char rdir[PATH_MAX], rp[PATH_MAX];
    struct stat st;
    if (stat(out, &st) != 0) {
        if (must_exist) return sdw_fail(SDW_ERR_IO, "'%s': no such file", name);
        return SDW_OK;
    }
    if (!realpath(dir, rdir) || !realpath(out, rp) || !inside(rdir, rp))
        return sdw_fail(SDW_ERR_INVALID_ARG, "'%s': outside the folder", name);
    if (must_exist && !S_ISREG(st.st_mode)) return sdw_fail(SDW_ERR_IO, "'%s': not a file", name);
    snprintf(out, n, "%s", rp);
    return SDW_OK;
}

sdw_status sdw_comfy_mkdirs(const char *dir, const char *sub)
{
    if (sub && !relative_ok(sub)) return sdw_fail(SDW_ERR_INVALID_ARG, "subfolder '%s': not inside the folder", sub);
    char path[PATH_MAX];
    int k = sub && sub[0] ? snprintf(path, sizeof path, "%s/%s", dir, sub) : snprintf(path, sizeof path, "%s", dir);
    if (k < 0 || (size_t)k >= sizeof path) return sdw_fail(SDW_ERR_INVALID_ARG, "subfolder: path too long");
    /* mkdir -p, one component at a time. */
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            int err = errno;
            *p = c;
            return sdw_fail(SDW_ERR_IO, "cannot create %s: %s", path, strerror(err));
        }
        *p = c;
        if (!c) break;
    }
    char rdir[PATH_MAX], rp[PATH_MAX];
    if (!realpath(dir, rdir) || !realpath(path, rp) || !inside(rdir, rp))
        return sdw_fail(SDW_ERR_INVALID_ARG, "subfolder '%s': not inside the folder", sub ? sub : "");
    return SDW_OK;
}

/* ---------------------------------------------------------------- listing */

typedef struct {
    char **v;
    int n, cap;
} names;

static void names_add(names *s, const char *name)
{
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 32;
        char **v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return;
        s->v = v;
        s->cap = cap;
    }
    if ((s->v[s->n] = strdup(name))) s->n++;
}


static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted, without duplicates, each handed to add; then freed. */
static void names_emit(names *s, void (*add)(void *ctx, const char *name), void *ctx)
{
    if (s->n) qsort(s->v, (size_t)s->n, sizeof *s->v, cmp_str);
    for (int i = 0; i < s->n; i++) {
        if (!i || strcmp(s->v[i], s->v[i - 1])) add(ctx, s->v[i]);
    }
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    *s = (names){ 0 };
}

static bool has_ext(const char *name, const char *const *exts)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return false;
    for (int i = 0; exts[i]; i++)
        if (!strcasecmp(dot + 1, exts[i])) return true;
    return false;
}

static const char *const model_exts[] = { "safetensors", "sft", "gguf", NULL };
static const char *const image_exts[] = { "png", "jpg", "jpeg", "webp", NULL };

/* Files under dir/rel with one of exts, depth levels deep, relative names. */
static void walk(const char *dir, const char *rel, int depth, const char *const *exts, names *out)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s%s%s", dir, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char child[PATH_MAX], full[PATH_MAX];
        snprintf(child, sizeof child, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name);
        snprintf(full, sizeof full, "%s/%s", dir, child);
        struct stat st;
        if (stat(full, &st) != 0) continue;
        if (S_ISDIR(st.st_mode) && depth > 1) walk(dir, child, depth - 1, exts, out);
        else if (S_ISREG(st.st_mode) && has_ext(de->d_name, exts)) names_add(out, child);
    }
    closedir(d);
}

static void add_lora(void *user, const sdw_lora_entry *le)
{
    char name[PATH_MAX];
    snprintf(name, sizeof name, "%s.safetensors", le->name);
    names_add(user, name);
}

/* The -m model's checkpoint name, which stays in the list after a workflow
 * switched away from it: relative to --models-dir when inside it, else its
 * file name (sdw_catalog_describe's rule, without hashing the file). */
static bool startup_name(const sdw_engine_config *c, char *name, size_t n, char *path, size_t pn)
{
    char root[PATH_MAX];
    if (!c->model_path || !realpath(c->model_path, path) || strlen(path) >= pn) return false;
    const char *base = strrchr(path, '/');
    if (c->models_dir && realpath(c->models_dir, root) && inside(root, path) && strlen(path) > strlen(root))
        snprintf(name, n, "%s", path + strlen(root) + 1);
    else snprintf(name, n, "%s", base && base[1] ? base + 1 : path);
    return true;
}

static void list_folder(void *user, sdw_comfy_folder f, void (*add)(void *ctx, const char *name), void *ctx)
{
    sdw_engine *e = user;
    const sdw_engine_config *c = sdw_engine_get_config(e);
    names s = { 0 };
    if (f == SDW_FOLDER_CHECKPOINTS) {
        sdw_engine_model m;
        char name[PATH_MAX], path[PATH_MAX];
        if (sdw_engine_model_get(e, &m)) names_add(&s, m.name);
        if (startup_name(c, name, sizeof name, path, sizeof path)) names_add(&s, name);
        sdw_catalog_entry *v = NULL;
        int n = 0;
        if (c->models_dir && sdw_catalog_list(c->models_dir, &v, &n) == SDW_OK)
            for (int i = 0; i < n; i++) names_add(&s, v[i].name);
        free(v);
    } else if (f == SDW_FOLDER_LORAS) {
        if (c->lora_dir) sdw_lora_list(c->lora_dir, add_lora, &s);
    } else if (f == SDW_FOLDER_CONTROLNET) {
        sdw_cn_entry *v = NULL;
        int n = 0;
        if (c->controlnet_dir && sdw_cn_list(c->controlnet_dir, false, &v, &n) == SDW_OK)
            for (int i = 0; i < n; i++) names_add(&s, v[i].name);
        free(v);
    } else if (f == SDW_FOLDER_VAE || f == SDW_FOLDER_CLIP || f == SDW_FOLDER_UNET) {
        if (c->models_dir) walk(c->models_dir, "", WALK_DEPTH, model_exts, &s);
    } else if (f == SDW_FOLDER_INPUT) {
        /* ComfyUI's LoadImage lists the folder's own images, not its subfolders'. */
        walk(c->input_dir, "", 1, image_exts, &s);
    }
    sdw_clear_error();
    names_emit(&s, add, ctx);
}

/* " [output]" and friends at the end of an input name: the folder it names. */
static const char *annotated(sdw_engine *e, const char *name, char *plain, size_t n)
{
    static const char *const types[] = { "output", "input", "temp" };
    size_t len = strlen(name);
    for (int i = 0; i < 3; i++) {
        size_t t = strlen(types[i]) + 3;
        if (len > t && name[len - t] == ' ' && name[len - t + 1] == '[' && name[len - 1] == ']' &&
            !strncmp(name + len - t + 2, types[i], t - 3)) {
            snprintf(plain, n, "%.*s", (int)(len - t), name);
            return sdw_comfy_type_dir(e, types[i]);
        }
    }
    snprintf(plain, n, "%s", name);
    return sdw_engine_get_config(e)->input_dir;
}

sdw_status sdw_comfy_resolve(sdw_engine *e, sdw_comfy_folder f, const char *name, char *path, size_t n)
{
    const sdw_engine_config *c = sdw_engine_get_config(e);
    const char *dir = NULL;
    switch (f) {
    case SDW_FOLDER_CHECKPOINTS: {
        sdw_engine_model m;
        char first[PATH_MAX], first_path[PATH_MAX];
        if (sdw_engine_model_get(e, &m) && engine_names_model(&m, name)) {
            snprintf(path, n, "%s", m.path);
            return SDW_OK;
        }
        if (startup_name(c, first, sizeof first, first_path, sizeof first_path) && !strcmp(name, first)) {
            snprintf(path, n, "%s", first_path);
            return SDW_OK;
        }
        if (!c->models_dir) return sdw_fail(SDW_ERR_INVALID_ARG, "checkpoint '%s': not the loaded model, and there is no --models-dir", name);
        sdw_catalog_entry ce;
        SDW_TRY(sdw_catalog_resolve(c->models_dir, name, &ce));
        snprintf(path, n, "%s", ce.path);
        return SDW_OK;
    }
    case SDW_FOLDER_LORAS:
        if (!c->lora_dir) return sdw_fail(SDW_ERR_INVALID_ARG, "LoRA '%s': this server has no --lora-dir", name);
        return sdw_lora_resolve(c->lora_dir, name, path, n);
    case SDW_FOLDER_CONTROLNET: {
        if (!c->controlnet_dir) return sdw_fail(SDW_ERR_INVALID_ARG, "ControlNet '%s': this server has no --controlnet-dir", name);
        sdw_cn_entry ce;
        SDW_TRY(sdw_cn_resolve(c->controlnet_dir, name, &ce));
        snprintf(path, n, "%s", ce.path);
        return SDW_OK;
    }
    case SDW_FOLDER_VAE: case SDW_FOLDER_CLIP: case SDW_FOLDER_UNET:
        if (!c->models_dir) return sdw_fail(SDW_ERR_INVALID_ARG, "'%s': this server has no --models-dir", name);
        dir = c->models_dir;
        break;
    case SDW_FOLDER_INPUT: {
        char plain[PATH_MAX];
        dir = annotated(e, name, plain, sizeof plain);
        return sdw_comfy_path(dir, NULL, plain, true, path, n);
    }
    default:
        return sdw_fail(SDW_ERR_INVALID_ARG, "'%s': no such folder", name);
    }
    return sdw_comfy_path(dir, NULL, name, true, path, n);
}

static bool has_name(void *user, sdw_comfy_folder f, const char *name)
{
    char path[PATH_MAX];
    bool ok = sdw_comfy_resolve(user, f, name, path, sizeof path) == SDW_OK;
    sdw_clear_error();
    return ok;
}

sdw_comfy_catalog sdw_comfy_engine_catalog(sdw_engine *e)
{
    return (sdw_comfy_catalog){ .user = e, .list = list_folder, .has = has_name };
}

bool sdw_comfy_folder_by_name(const char *name, sdw_comfy_folder *f)
{
    static const struct { const char *name; sdw_comfy_folder f; } map[] = {
        { "checkpoints", SDW_FOLDER_CHECKPOINTS }, { "loras", SDW_FOLDER_LORAS },
        { "controlnet", SDW_FOLDER_CONTROLNET }, { "vae", SDW_FOLDER_VAE }, { "clip", SDW_FOLDER_CLIP },
        { "text_encoders", SDW_FOLDER_CLIP }, { "unet", SDW_FOLDER_UNET }, { "diffusion_models", SDW_FOLDER_UNET },
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (!strcmp(name, map[i].name)) return *f = map[i].f, true;
    return false;
}

/* ---------------------------------------------------------------- SaveImage's names */

/* ComfyUI's compute_vars: %width%, %height% and the date and time. */
static void fill_vars(const char *in, int w, int h, char *out, size_t n)
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    size_t k = 0;
    out[0] = 0;
    for (const char *p = in; *p && k + 1 < n;) {
        char val[32] = "";
        size_t skip = 0;
        static const char *const vars[] = { "%width%", "%height%", "%year%", "%month%", "%day%", "%hour%",
                                            "%minute%", "%second%" };
        int vals[] = { w, h, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec };
        for (int i = 0; i < 8 && !skip; i++)
            if (!strncmp(p, vars[i], strlen(vars[i]))) {
                snprintf(val, sizeof val, i < 3 ? "%d" : "%02d", vals[i]);
                skip = strlen(vars[i]);
            }
        if (skip) {
            k += (size_t)snprintf(out + k, n - k, "%s", val);
            if (k >= n) k = n - 1;
            p += skip;
        } else {
            out[k++] = *p++;
            out[k] = 0;
        }
    }
}

/* os.path.normpath for a relative path: "a//./b/" -> "a/b". A ".." that
 * would climb out of the folder (or an absolute path) fails. */
static sdw_status norm_relative(const char *in, char *out, size_t n)
{
    if (in[0] == '/') return sdw_fail(SDW_ERR_INVALID_ARG, "filename_prefix '%s': saving outside the output folder is not allowed", in);
    char *parts[128];
    int np = 0;
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", in);
    for (char *save = NULL, *t = strtok_r(buf, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (!strcmp(t, ".")) continue;
        if (!strcmp(t, "..")) {
            if (!np) return sdw_fail(SDW_ERR_INVALID_ARG, "filename_prefix '%s': saving outside the output folder is not allowed", in);
            np--;
            continue;
        }
        if (np == 128) return sdw_fail(SDW_ERR_INVALID_ARG, "filename_prefix '%s': too deep", in);
        parts[np++] = t;
    }
    if (!np) return sdw_fail(SDW_ERR_INVALID_ARG, "filename_prefix '%s': no file name", in);
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; i < np; i++) {
        int w = snprintf(out + k, n - k, "%s%s", i ? "/" : "", parts[i]);
        if (w < 0 || (size_t)w >= n - k) return sdw_fail(SDW_ERR_INVALID_ARG, "filename_prefix: too long");
        k += (size_t)w;
    }
    return SDW_OK;
}

/* The number in "<name>_NNNNN_..." after "<name>_" (Python's int() of the
 * part before the next '_'); 0 when it is not one. */
static long counter_of(const char *file, const char *name)
{
    size_t n = strlen(name);
    if (strncasecmp(file, name, n) || file[n] != '_') return -1;
    const char *p = file + n + 1, *end = strchr(p, '_');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (!len || len > 18) return 0;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

sdw_status sdw_comfy_save_path(const char *dir, const char *prefix, int w, int h, char *path, size_t n,
                               sdw_comfy_file *out)
{
    char filled[PATH_MAX], norm[PATH_MAX];
    fill_vars(prefix && prefix[0] ? prefix : "ComfyUI", w, h, filled, sizeof filled);
    SDW_TRY(norm_relative(filled, norm, sizeof norm));
    char *slash = strrchr(norm, '/');
    const char *name = slash ? slash + 1 : norm;
    if (slash) *slash = 0;
    const char *sub = slash ? norm : "";
    if (strlen(sub) >= sizeof out->subfolder || strlen(name) + 16 >= sizeof out->filename)
        return sdw_fail(SDW_ERR_INVALID_ARG, "filename_prefix '%s': too long", prefix);
    SDW_TRY(sdw_comfy_mkdirs(dir, sub));
    char folder[PATH_MAX];
    snprintf(folder, sizeof folder, "%s%s%s", dir, sub[0] ? "/" : "", sub);
    long counter = 0;
    DIR *d = opendir(folder);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            long c = counter_of(de->d_name, name);
            if (c > counter) counter = c;
        }
        closedir(d);
    }
    snprintf(out->filename, sizeof out->filename, "%s_%05ld_.png", name, counter + 1);
    snprintf(out->subfolder, sizeof out->subfolder, "%s", sub);
    int k = snprintf(path, n, "%s/%s", folder, out->filename);
    if (k < 0 || (size_t)k >= n) return sdw_fail(SDW_ERR_INVALID_ARG, "filename_prefix '%s': path too long", prefix);
    return SDW_OK;
}
