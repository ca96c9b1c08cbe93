/* bench_peak.c: the machine's peak for `sd-worker bench` (bench.h): the
 * better of a 3x3 convolution 320->320 at 64x64 batch 2 and an
 * 8192x1280x1280 matmul, on a backend of their own with random data, oneDNN's
 * direct convolution (Winograd does fewer multiplies than the FLOPs counted);
 * the same convolution back to back as the sustained speed, and kept open as
 * the probe that bench.c runs next to each timed stage (--paired). */
#include "bench/bench_internal.h"
#include <math.h>
#include <string.h>

#define PEAK_C 320
#define PEAK_HW 64
#define PEAK_N 2
#define PEAK_M 8192
#define PEAK_K 1280

/* Best seconds of runs calls (after one warm-up) and the FLOPs of one. */
static sdw_status time_best_conv(sdw_backend *be, const sdw_conv2d *c, const float *x, float *y, int runs,
                                 double *best, double *flops)
{
    SDW_TRY(sdw_conv2d_forward(be, c, x, PEAK_N, PEAK_HW, PEAK_HW, y, NULL, NULL));
    *best = INFINITY;
    for (int i = 0; i < runs; i++) {
        sdw_backend_reset_flops(be);
        double t0 = bench_now();
        SDW_TRY(sdw_conv2d_forward(be, c, x, PEAK_N, PEAK_HW, PEAK_HW, y, NULL, NULL));
        double t = bench_now() - t0;
        if (t < *best) *best = t;
    }
    *flops = sdw_backend_flops(be);
    return SDW_OK;
}

static sdw_status time_best_linear(sdw_backend *be, const sdw_linear *l, const float *x, float *y, int runs,
                                   double *best, double *flops)
{
    SDW_TRY(sdw_linear_forward(be, l, x, PEAK_M, y));
    *best = INFINITY;
    for (int i = 0; i < runs; i++) {
        sdw_backend_reset_flops(be);
        double t0 = bench_now();
        SDW_TRY(sdw_linear_forward(be, l, x, PEAK_M, y));
        double t = bench_now() - t0;
        if (t < *best) *best = t;
    }
    *flops = sdw_backend_flops(be);
    return SDW_OK;
}

void bench_keep_better(sdw_bench_peak *p, const sdw_bench_peak *q)
{
    if (!q->available) return;
    p->available = true;
    if (q->conv_tflops > p->conv_tflops) p->conv_tflops = q->conv_tflops;
    if (q->matmul_tflops > p->matmul_tflops) p->matmul_tflops = q->matmul_tflops;
    p->tflops = p->conv_tflops > p->matmul_tflops ? p->conv_tflops : p->matmul_tflops;
}

/* A backend of precision p, or NULL (status OK) when this CPU cannot run it. */
static sdw_backend *peak_backend(sdw_precision p, sdw_status *s)
{
    sdw_backend *be = NULL;
    *s = sdw_backend_create(p, &be);
    if (*s == SDW_ERR_UNSUPPORTED) {
        sdw_clear_error();
        *s = SDW_OK;
        return NULL;
    }
    if (*s == SDW_OK && sdw_backend_precision(be) != sdw_precision_resolve(p)) {
        sdw_backend_free(be);
        return NULL;
    }
    /* The peak is oneDNN's direct convolution, as the issue defines it:
     * Winograd does fewer multiplies than the FLOPs counted. */
    if (be) sdw_backend_set_winograd(be, false);
    return be;
}

/* The peak convolution (3x3, 320 -> 320) with random weights. */
static sdw_status peak_conv(sdw_backend *be, sdw_conv2d **conv)
{
    float wscale = 1.0f / sqrtf((float)PEAK_C * 9);
    float *cw = bench_random_floats((size_t)PEAK_C * PEAK_C * 9, 1, -wscale, wscale);
    float *cb = bench_random_floats(PEAK_C, 2, -0.1f, 0.1f);
    sdw_status s = (cw && cb) ? sdw_conv2d_create(be, PEAK_C, PEAK_C, 3, 3, 1, 1, cw, cb, conv) : bench_nomem();
    free(cw);
    free(cb);
    return s;
}

void bench_probe_close(bench_probe *p)
{
    sdw_conv2d_free(p->conv);
    sdw_backend_free(p->be);
    free(p->x);
    free(p->y);
    memset(p, 0, sizeof *p);
}

sdw_status bench_probe_open(bench_probe *p, sdw_precision prec)
{
    memset(p, 0, sizeof *p);
    sdw_status s;
    if (!(p->be = peak_backend(prec, &s))) return s;
    size_t n = (size_t)PEAK_N * PEAK_HW * PEAK_HW * PEAK_C;
    p->x = bench_random_floats(n, 4, -1.0f, 1.0f);
    p->y = malloc(n * sizeof *p->y);
    s = (p->x && p->y) ? peak_conv(p->be, &p->conv) : bench_nomem();
    if (s == SDW_OK) s = sdw_conv2d_forward(p->be, p->conv, p->x, PEAK_N, PEAK_HW, PEAK_HW, p->y, NULL, NULL);
    if (s != SDW_OK) bench_probe_close(p);
    return s;
}

sdw_status bench_probe_run(bench_probe *p, double seconds, double *tflops)
{
    sdw_backend_reset_flops(p->be);
    double t0 = bench_now(), t;
    do {
        SDW_TRY(sdw_conv2d_forward(p->be, p->conv, p->x, PEAK_N, PEAK_HW, PEAK_HW, p->y, NULL, NULL));
        t = bench_now() - t0;
    } while (t < seconds);
    *tflops = sdw_backend_flops(p->be) / t * 1e-12;
    return SDW_OK;
}

sdw_status sdw_bench_measure_sustained(sdw_precision p, double seconds, double *tflops)
{
    *tflops = 0;
    bench_probe probe;
    SDW_TRY(bench_probe_open(&probe, p));
    sdw_status s = probe.be ? bench_probe_run(&probe, seconds, tflops) : SDW_OK;
    bench_probe_close(&probe);
    return s;
}

sdw_status sdw_bench_measure_peak(sdw_precision p, int runs, sdw_bench_peak *out)
{
    memset(out, 0, sizeof *out);
    if (runs <= 0) runs = 5;
    sdw_status s;
    sdw_backend *be = peak_backend(p, &s);
    if (!be) return s;
    size_t conv_x = (size_t)PEAK_N * PEAK_HW * PEAK_HW * PEAK_C;
    size_t mm_w = (size_t)PEAK_K * PEAK_K, mm_x = (size_t)PEAK_M * PEAK_K;
    float *mw = bench_random_floats(mm_w, 3, -0.03f, 0.03f);
    float *x = bench_random_floats(mm_x > conv_x ? mm_x : conv_x, 4, -1.0f, 1.0f);
    float *y = malloc((mm_x > conv_x ? mm_x : conv_x) * sizeof *y);
    sdw_conv2d *conv = NULL;
    sdw_linear *lin = NULL;
    s = (mw && x && y) ? peak_conv(be, &conv) : bench_nomem();
    if (s == SDW_OK) s = sdw_linear_create(be, PEAK_K, PEAK_K, mw, NULL, &lin);
    free(mw);
    double t, f;
    if (s == SDW_OK) s = time_best_conv(be, conv, x, y, runs, &t, &f);
    if (s == SDW_OK) out->conv_tflops = f / t * 1e-12;
    if (s == SDW_OK) s = time_best_linear(be, lin, x, y, runs, &t, &f);
    if (s == SDW_OK) out->matmul_tflops = f / t * 1e-12;
    if (s == SDW_OK) {
        out->available = true;
        out->tflops = out->conv_tflops > out->matmul_tflops ? out->conv_tflops : out->matmul_tflops;
    }
    sdw_conv2d_free(conv);
    sdw_linear_free(lin);
    free(x);
    free(y);
    sdw_backend_free(be);
    return s;
}
