/* bench_host.c: the host a benchmark ran on, in one line, so that every
 * figure a bench prints carries it: the CPU's model name, family and model
 * (Linux /proc/cpuinfo), the logical CPUs this process may use, and which of
 * the project's fast paths the CPU offers (AMX tiles, AVX-512-BF16 dot
 * products, AVX2 f32). Elsewhere than Linux the name is "unknown". */
#include "bench/bench.h"
#include <sched.h>
#include <stdio.h>
#include <string.h>

/* The value of "key : value" on line, trimmed, into out. */
static bool field(const char *line, const char *key, char *out, size_t n)
{
    size_t k = strlen(key);
    if (strncmp(line, key, k)) return false;
    const char *v = line + k;
    while (*v == ' ' || *v == '\t') v++;
    if (*v++ != ':') return false;   /* "model" must not match "model name" */
    while (*v == ' ' || *v == '\t') v++;
    snprintf(out, n, "%s", v);
    out[strcspn(out, "\n")] = 0;
    return true;
}

static bool has_flag(const char *flags, const char *flag)
{
    size_t k = strlen(flag);
    for (const char *p = flags; (p = strstr(p, flag)); p += k)
        if ((p == flags || p[-1] == ' ') && (p[k] == ' ' || p[k] == 0)) return true;
    return false;
}

void sdw_bench_host(char *out, size_t n)
{
    char name[96] = "unknown", family[16] = "?", model[16] = "?", flags[4096] = "", line[4096];
    FILE *f = fopen("/proc/cpuinfo", "r");
    /* The first processor's lines describe them all (one socket kind per host). */
    while (f && fgets(line, sizeof line, f) && !(line[0] == '\n' && flags[0])) {
        field(line, "model name", name, sizeof name);
        field(line, "cpu family", family, sizeof family);
        field(line, "model", model, sizeof model);
        field(line, "flags", flags, sizeof flags);
    }
    if (f) fclose(f);
    cpu_set_t set;
    int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    snprintf(out, n, "%s (family %s, model %s), %d CPUs; amx %s, avx512_bf16 %s, avx2 %s", name, family, model, cpus,
             has_flag(flags, "amx_tile") ? "yes" : "no", has_flag(flags, "avx512_bf16") ? "yes" : "no",
             has_flag(flags, "avx2") ? "yes" : "no");
}
