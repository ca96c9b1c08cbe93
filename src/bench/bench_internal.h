/* bench_internal.h: what the bench's files share (bench.c times the stages,
 * bench_peak.c measures the peaks and keeps the host probe): a clock, random
 * inputs (every timed input is random: AMX runs 2-4x faster on zeros) and
 * the probe. Nothing outside src/bench/ includes it. */
#ifndef SDW_BENCH_INTERNAL_H
#define SDW_BENCH_INTERNAL_H
#include "bench/bench.h"
#include "core/error.h"
#include <stdlib.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline sdw_status bench_nomem(void) { return sdw_fail(SDW_ERR_NOMEM, "bench: out of memory"); }

/* Uniform in [lo, hi): never zeros. */
static inline void bench_fill_random(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
    for (size_t i = 0; i < n; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t v = s * 0x2545F4914F6CDD1DULL;
        x[i] = lo + (hi - lo) * (float)((double)(v >> 40) * 0x1p-24);
    }
}

static inline float *bench_random_floats(size_t n, uint64_t seed, float lo, float hi)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (x) bench_fill_random(x, n, seed, lo, hi);
    return x;
}

/* p's conv and matmul rates, each the better of p's and q's. */
void bench_keep_better(sdw_bench_peak *p, const sdw_bench_peak *q);

/* The peak convolution on its own backend, kept open to sample how fast
 * the host runs it now. */
typedef struct {
    sdw_backend *be;
    sdw_conv2d *conv;
    float *x, *y;
} bench_probe;

/* Opens the probe of precision prec, warmed up; p->be stays NULL (status
 * OK) when this CPU cannot run prec. */
sdw_status bench_probe_open(bench_probe *p, sdw_precision prec);
/* The probe's convolution back to back for about `seconds` (one call at
 * least): total FLOPs over total time. */
sdw_status bench_probe_run(bench_probe *p, double seconds, double *tflops);
void bench_probe_close(bench_probe *p);
#endif
