/* bench_model.c: see bench_model.h. */
#include "cli/bench_model.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const bench_family families[] = {
    { "sd15", "sd15", SDW_PREDICTION_EPS },
    { "sd15-inpaint", "sd15-inpaint", SDW_PREDICTION_EPS },
    { "sd2", "sd21-v", SDW_PREDICTION_V },
    { "sdxl", "sdxl", SDW_PREDICTION_EPS },
};

const bench_family *bench_family_find(const char *name)
{
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (!strcmp(families[i].name, name)) return &families[i];
    return NULL;
}

const char *bench_family_names(void) { return "sd15|sd15-inpaint|sd2|sdxl"; }

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

bool bench_model_path(const char *who, const bench_family *f, char *path, size_t n)
{
    char exe[4096] = "", dir[4096], tool[4096];
    bool have_exe = exe_dir(exe, sizeof exe);
    const char *env_dir = getenv("SDW_FULLSIZE_DIR"), *env_tool = getenv("SDW_MAKE_FULLSIZE");
    if (env_dir && *env_dir) snprintf(dir, sizeof dir, "%s", env_dir);
    else if (have_exe) snprintf(dir, sizeof dir, "%s/fullsize", exe);
    else snprintf(dir, sizeof dir, "fullsize");
    if (env_tool && *env_tool) snprintf(tool, sizeof tool, "%s", env_tool);
    else snprintf(tool, sizeof tool, "%s/tools/fullsize/sdw-make-fullsize", have_exe ? exe : ".");

    snprintf(path, n, "%s/%s-seed1.safetensors", dir, f->recipe);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) return true;

    if (access(tool, X_OK) != 0) {
        fprintf(stderr,
                "%s: no %s model at %s, and the random-checkpoint tool that writes it is not at %s "
                "(build it with make, set SDW_MAKE_FULLSIZE to it, or pass -m MODEL)\n",
                who, f->name, path, tool);
        return false;
    }
    if (!mkdirs(dir)) {
        fprintf(stderr, "%s: cannot create %s: %s\n", who, dir, strerror(errno));
        return false;
    }
    char partial[4200];
    snprintf(partial, sizeof partial, "%s.partial", path);
    fprintf(stderr, "%s: writing the full-size %s checkpoint (random weights, seed 1) to %s with %s ...\n", who,
            f->name, path, tool);
    fflush(stderr);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: cannot start %s: %s\n", who, tool, strerror(errno));
        return false;
    }
    if (pid == 0) {
        /* The tool's stdout is its summary: keep ours (maybe JSON) clean. */
        dup2(STDERR_FILENO, STDOUT_FILENO);
        char *args[] = { tool, (char *)f->recipe, "--seed", "1", "-o", partial, NULL };
        execv(tool, args);
        fprintf(stderr, "%s: cannot run %s: %s\n", who, tool, strerror(errno));
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
        fprintf(stderr, "%s: %s %s failed (status %d): no %s model\n", who, tool, f->recipe, status, f->name);
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
