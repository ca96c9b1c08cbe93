/* bench_model.c: see bench_model.h. */
#include "cli/bench_model.h"
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const bench_family families[] = {
    /* The SD1.5 ControlNet serves the inpainting UNet too: it sees the 4 latent channels. */
    { "sd15", "sd15", SDW_PREDICTION_EPS, BENCH_KIND_SD, NULL, "sd15-controlnet" },
    { "sd15-inpaint", "sd15-inpaint", SDW_PREDICTION_EPS, BENCH_KIND_SD, NULL, "sd15-controlnet" },
    { "sd2", "sd21-v", SDW_PREDICTION_V, BENCH_KIND_SD, NULL, NULL },
    { "sdxl", "sdxl", SDW_PREDICTION_EPS, BENCH_KIND_SD, NULL, "sdxl-controlnet" },
    { "flux-schnell", "flux-schnell", SDW_PREDICTION_AUTO, BENCH_KIND_FLUX, "bf16", NULL },
    { "flux-dev", "flux-dev", SDW_PREDICTION_AUTO, BENCH_KIND_FLUX, "bf16", NULL },
    { "sd3-medium", "sd3-medium", SDW_PREDICTION_AUTO, BENCH_KIND_SD3, "f16", NULL },
    { "sd35-medium", "sd35-medium", SDW_PREDICTION_AUTO, BENCH_KIND_SD3, "bf16", NULL },
    { "sd35-large", "sd35-large", SDW_PREDICTION_AUTO, BENCH_KIND_SD3, "bf16", NULL },
};

const bench_family *bench_family_find(const char *name)
{
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (!strcmp(families[i].name, name)) return &families[i];
    return NULL;
}

const char *bench_family_names(void)
{
    return "sd15|sd15-inpaint|sd2|sdxl|flux-schnell|flux-dev|sd3-medium|sd35-medium|sd35-large";
}

/* The folder holding the running executable, without a trailing slash. */
static bool exe_dir(char *dir, size_t n)
{
    ssize_t len = readlink("/proc/self/exe", dir, n - 1);
    if (len <= 0) return false;
    dir[len] = 0;
    char *slash = strrchr(dir, '/');
    if (!slash) return false;
    *slash = 0;
    return true;
}

static bool mkdirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        int r = mkdir(path, 0755);
        *p = '/';
        if (r != 0 && errno != EEXIST) return false;
    }
    return mkdir(path, 0755) == 0 || errno == EEXIST;
}

/* Where the files live and the tool that writes them. */
typedef struct {
    char dir[4096], tool[4096];
} places;

static void find_places(places *pl)
{
    char exe[4096] = "";
    bool have_exe = exe_dir(exe, sizeof exe);
    const char *env_dir = getenv("SDW_FULLSIZE_DIR"), *env_tool = getenv("SDW_MAKE_FULLSIZE");
    if (env_dir && *env_dir) snprintf(pl->dir, sizeof pl->dir, "%s", env_dir);
    else if (have_exe) snprintf(pl->dir, sizeof pl->dir, "%s/fullsize", exe);
    else snprintf(pl->dir, sizeof pl->dir, "fullsize");
    if (env_tool && *env_tool) snprintf(pl->tool, sizeof pl->tool, "%s", env_tool);
    else snprintf(pl->tool, sizeof pl->tool, "%s/tools/fullsize/sdw-make-fullsize", have_exe ? exe : ".");
}

/* path = <dir>/<file>; written by `tool recipe --format format` (through
 * <path>.partial, so a killed run leaves no truncated file) if missing. */
static bool ensure_file(const char *who, const places *pl, const char *what, const char *recipe, const char *format,
                        const char *file, char *path, size_t n)
{
    snprintf(path, n, "%s/%s", pl->dir, file);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) return true;

    if (access(pl->tool, X_OK) != 0) {
        fprintf(stderr,
                "%s: no %s model at %s, and the random-checkpoint tool that writes it is not at %s "
                "(build it with make, set SDW_MAKE_FULLSIZE to it, or pass -m MODEL)\n",
                who, what, path, pl->tool);
        return false;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", pl->dir);
    if (!mkdirs(dir)) {
        fprintf(stderr, "%s: cannot create %s: %s\n", who, pl->dir, strerror(errno));
        return false;
    }
    char partial[4200];
    snprintf(partial, sizeof partial, "%s.partial", path);
    fprintf(stderr, "%s: writing the full-size %s file (random weights, seed 1) to %s with %s ...\n", who, what, path,
            pl->tool);
    fflush(stderr);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: cannot start %s: %s\n", who, pl->tool, strerror(errno));
        return false;
    }
    if (pid == 0) {
        /* The tool's stdout is its summary: keep ours (maybe JSON) clean. */
        dup2(STDERR_FILENO, STDOUT_FILENO);
        char *args[] = { (char *)pl->tool, (char *)recipe, "--seed", "1", "--format", (char *)format, "-o", partial,
                         NULL };
        execv(pl->tool, args);
        fprintf(stderr, "%s: cannot run %s: %s\n", who, pl->tool, strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            status = -1;
            break;
        }
    if (status != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        unlink(partial);
        fprintf(stderr, "%s: %s %s failed (status %d): no %s model\n", who, pl->tool, recipe, status, what);
        return false;
    }
    if (rename(partial, path) != 0) {
        fprintf(stderr, "%s: cannot rename %s to %s: %s\n", who, partial, path, strerror(errno));
        unlink(partial);
        return false;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "%s: wrote %s in %.0f s\n", who, path,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    return true;
}

/* The T5-XXL both FLUX and SD3 read: the fp8 file users run. */
static bool t5_file(const char *who, const places *pl, bench_files *files)
{
    return ensure_file(who, pl, "T5-XXL (fp8)", "flux-t5xxl", "fp8", "flux-t5xxl-seed1-fp8_e4m3fn.safetensors",
                       files->t5xxl, sizeof files->t5xxl);
}

static bool flux_files(const char *who, const places *pl, const bench_family *f, bench_weights w, bench_files *files)
{
    const bool q8 = w == BENCH_WEIGHTS_Q8_0;
    char file[512], what[128];
    snprintf(file, sizeof file, "%s-seed1-%s", f->recipe, q8 ? "Q8_0.gguf" : "bf16.safetensors");
    snprintf(what, sizeof what, "%s transformer (%s)", f->name, q8 ? "Q8_0" : "BF16");
    /* The small parts first: a missing tool or a full disk shows in seconds. */
    return ensure_file(who, pl, "FLUX autoencoder", "flux-ae", "safetensors", "flux-ae-seed1.safetensors", files->vae,
                       sizeof files->vae) &&
           ensure_file(who, pl, "FLUX CLIP-L", "flux-clip_l", "safetensors", "flux-clip_l-seed1.safetensors",
                       files->clip_l, sizeof files->clip_l) &&
           t5_file(who, pl, files) &&
           ensure_file(who, pl, what, f->recipe, q8 ? "gguf-q8_0" : "safetensors", file, files->model,
                       sizeof files->model);
}

/* The GGUF holds the MMDiT alone (list <recipe>-mmdit), so the VAE comes as
 * its own file; the single file carries its VAE. */
static bool sd3_files(const char *who, const places *pl, const bench_family *f, bench_weights w, bench_files *files)
{
    const bool q8 = w == BENCH_WEIGHTS_Q8_0;
    char file[512], what[128], recipe[128], dtype[8];
    snprintf(dtype, sizeof dtype, "%s", f->dtype16);
    for (char *c = dtype; *c; c++) *c = (char)toupper((unsigned char)*c);
    if (q8) {
        snprintf(recipe, sizeof recipe, "%s-mmdit", f->recipe);
        snprintf(file, sizeof file, "%s-seed1-Q8_0.gguf", f->recipe);
        snprintf(what, sizeof what, "%s MMDiT (Q8_0)", f->name);
    } else {
        snprintf(recipe, sizeof recipe, "%s", f->recipe);
        snprintf(file, sizeof file, "%s-seed1-%s.safetensors", f->recipe, f->dtype16);
        snprintf(what, sizeof what, "%s single file (%s MMDiT + VAE)", f->name, dtype);
    }
    return (!q8 || ensure_file(who, pl, "SD3 autoencoder", "sd3-vae", "safetensors", "sd3-vae-seed1.safetensors",
                               files->vae, sizeof files->vae)) &&
           ensure_file(who, pl, "SD3 CLIP-L", "sd3-clip_l", "safetensors", "sd3-clip_l-seed1.safetensors",
                       files->clip_l, sizeof files->clip_l) &&
           ensure_file(who, pl, "SD3 CLIP-G", "sd3-clip_g", "safetensors", "sd3-clip_g-seed1.safetensors",
                       files->clip_g, sizeof files->clip_g) &&
           t5_file(who, pl, files) &&
           ensure_file(who, pl, what, recipe, q8 ? "gguf-q8_0" : "safetensors", file, files->model,
                       sizeof files->model);
}

bool bench_model_files(const char *who, const bench_family *f, bench_weights w, bench_files *files)
{
    memset(files, 0, sizeof *files);
    places pl;
    find_places(&pl);
    if (f->kind == BENCH_KIND_FLUX) return flux_files(who, &pl, f, w, files);
    if (f->kind == BENCH_KIND_SD3) return sd3_files(who, &pl, f, w, files);
    char file[512];
    snprintf(file, sizeof file, "%s-seed1.safetensors", f->recipe);
    return ensure_file(who, &pl, f->name, f->recipe, "safetensors", file, files->model, sizeof files->model);
}

bool bench_control_file(const char *who, const bench_family *f, char *path, size_t n)
{
    if (!f->control) {
        fprintf(stderr, "%s: --control auto has a full-size ControlNet for sd15, sd15-inpaint and sdxl, not %s "
                        "(give a ControlNet file)\n", who, f->name);
        return false;
    }
    places pl;
    find_places(&pl);
    char file[512], what[128];
    snprintf(file, sizeof file, "%s-seed1.safetensors", f->control);
    snprintf(what, sizeof what, "%s ControlNet", f->name);
    return ensure_file(who, &pl, what, f->control, "safetensors", file, path, n);
}
