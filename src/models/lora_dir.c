/* lora_dir.c: LoRA names from requests and prompts resolved safely inside the
 * operator's --lora-dir, and the directory's listing with kohya metadata. */
#include "models/lora.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "text/prompt_parse.h"
#include <math.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Relative, no "..", no empty or hidden components, printable. */
static bool safe_name(const char *name)
{
    if (!*name || name[0] == '/' || strlen(name) > 255) return false;
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '\\' || *p == ':') return false;
    const char *c = name;
    while (*c) {
        const char *e = strchr(c, '/');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == 0 || c[0] == '.') return false;
        c += len + (e ? 1 : 0);
    }
    return true;
}

sdw_status sdw_lora_resolve(const char *dir, const char *name, char *path, size_t n)
{
    if (!dir || !*dir) return sdw_fail(SDW_ERR_INVALID_ARG, "LoRA %s: no LoRA directory configured (--lora-dir)", name);
    if (!safe_name(name))
        return sdw_fail(SDW_ERR_INVALID_ARG, "LoRA name \"%s\" is not allowed: give a name relative to the LoRA "
                        "directory, without \"..\" or a leading \"/\"", name);
    char want[PATH_MAX], real_dir[PATH_MAX], real[PATH_MAX];
    if (!realpath(dir, real_dir)) return sdw_fail(SDW_ERR_IO, "LoRA directory %s does not exist", dir);
    snprintf(want, sizeof want, "%s/%s%s", real_dir, name, has_suffix(name, ".safetensors") ? "" : ".safetensors");
    if (!realpath(want, real)) {
        if (has_suffix(name, ".ckpt") || has_suffix(name, ".pt") || has_suffix(name, ".bin"))
            return sdw_fail(SDW_ERR_UNSUPPORTED, "LoRA %s: pickle files are not loaded; convert it to .safetensors",
                            name);
        return sdw_fail(SDW_ERR_IO, "LoRA %s not found in %s", name, dir);
    }
    size_t dl = strlen(real_dir);
    struct stat sb;
    if (strncmp(real, real_dir, dl) || real[dl] != '/' || stat(real, &sb) || !S_ISREG(sb.st_mode))
        return sdw_fail(SDW_ERR_INVALID_ARG, "LoRA %s resolves outside %s", name, dir);
    if ((size_t)snprintf(path, n, "%s", real) >= n) return sdw_fail(SDW_ERR_INVALID_ARG, "LoRA path too long");
    return SDW_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Collects relative paths of *.safetensors under dir/rel, depth-limited. */
static sdw_status collect(const char *root, const char *rel, int depth, char ***v, int *n, int *cap)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) return depth == 0 ? sdw_fail(SDW_ERR_IO, "cannot read LoRA directory %s", root) : SDW_OK;
    struct dirent *e;
    sdw_status st = SDW_OK;
    while (st == SDW_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char sub[PATH_MAX], full[PATH_MAX];
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat sb;
        if (stat(full, &sb)) continue;
        if (S_ISDIR(sb.st_mode) && depth < 8) st = collect(root, sub, depth + 1, v, n, cap);
        else if (S_ISREG(sb.st_mode) && has_suffix(e->d_name, ".safetensors")) {
            if (*n == *cap) {
                int c = *cap ? 2 * *cap : 64;
                char **p = realloc(*v, (size_t)c * sizeof *p);
                if (!p) { st = sdw_fail(SDW_ERR_NOMEM, "out of memory"); break; }
                *v = p;
                *cap = c;
            }
            if (!((*v)[*n] = strdup(sub))) st = sdw_fail(SDW_ERR_NOMEM, "out of memory");
            else (*n)++;
        }
    }
    closedir(d);
    return st;
}

sdw_status sdw_lora_list(const char *dir, sdw_lora_entry_fn fn, void *user)
{
    char **v = NULL;
    int n = 0, cap = 0;
    sdw_status st = collect(dir, "", 0, &v, &n, &cap);
    if (st == SDW_OK) qsort(v, (size_t)n, sizeof *v, cmp_str);
    for (int i = 0; i < n && st == SDW_OK; i++) {
        char path[PATH_MAX], name[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, v[i]);
        snprintf(name, sizeof name, "%s", v[i]);
        name[strlen(name) - 12] = 0;   /* ".safetensors" */
        sdw_safetensors *sf = NULL;
        sdw_lora_entry e = { name, path, NULL, NULL };
        if (sdw_st_open(path, &sf) == SDW_OK) {
            e.base_model = sdw_st_meta_get(sf, "ss_base_model_version");
            e.output_name = sdw_st_meta_get(sf, "ss_output_name");
        }
        fn(user, &e);
        sdw_st_close(sf);
    }
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
    return st;
}

sdw_status sdw_lora_set_add(sdw_lora_set *s, const char *path, float te, float unet)
{
    if (s->n >= SDW_MAX_LORAS) return sdw_fail(SDW_ERR_INVALID_ARG, "at most %d LoRAs per job", SDW_MAX_LORAS);
    if (!isfinite(te) || !isfinite(unet) || fabsf(te) > 100 || fabsf(unet) > 100)
        return sdw_fail(SDW_ERR_INVALID_ARG, "LoRA %s: strength must be a number in -100..100", path);
    if ((size_t)snprintf(s->path[s->n], sizeof s->path[0], "%s", path) >= sizeof s->path[0])
        return sdw_fail(SDW_ERR_INVALID_ARG, "LoRA path too long");
    s->spec[s->n] = (sdw_lora_spec){ s->path[s->n], te, unet };
    s->n++;
    return SDW_OK;
}

sdw_status sdw_lora_set_add_named(sdw_lora_set *s, const char *dir, const char *name, float te, float unet)
{
    char path[PATH_MAX];
    SDW_TRY(sdw_lora_resolve(dir, name, path, sizeof path));
    return sdw_lora_set_add(s, path, te, unet);
}

sdw_status sdw_lora_set_add_prompt(sdw_lora_set *s, const char *dir, const char *prompt)
{
    if (!prompt) return SDW_OK;
    sdw_parsed_prompt pp;
    SDW_TRY(sdw_prompt_parse(prompt, &pp));
    sdw_status st = SDW_OK;
    for (int i = 0; i < pp.n_loras && st == SDW_OK; i++)
        st = sdw_lora_set_add_named(s, dir, pp.loras[i].name, pp.loras[i].te_weight, pp.loras[i].unet_weight);
    sdw_parsed_prompt_free(&pp);
    return st;
}
