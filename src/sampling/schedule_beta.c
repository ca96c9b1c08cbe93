/* schedule_beta.c: ComfyUI's beta scheduler (arXiv 2407.12173): the steps
 * sit at the beta(0.6, 0.6) quantiles 1 - i/steps of the model's sigma
 * table, so they crowd both ends. ComfyUI takes the quantiles from
 * scipy.stats.beta.ppf; here the regularized incomplete beta function is a
 * continued fraction and its inverse a bisection, accurate to ~1e-15, far
 * finer than the rounding to a table index needs. Used by the discrete
 * (schedule.c) and the flow (schedule_flow.c) tables alike. */
#include "sampling/sampler_internal.h"
#include <math.h>

#define BETA_ALPHA 0.6
#define BETA_BETA 0.6

/* The continued fraction of I_x(a, b) (modified Lentz), converging fast
 * for x < (a + 1) / (a + b + 2). */
static double beta_cf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double c = 1, d = 1 - (a + b) * x / (a + 1);
    d = 1 / (fabs(d) < tiny ? tiny : d);
    double h = d;
    for (int m = 1; m <= 10000; m++) {
        const double m2 = 2.0 * m;
        /* even step, then odd step of the fraction */
        double aa = m * (b - m) * x / ((a - 1 + m2) * (a + m2));
        d = 1 + aa * d;
        c = 1 + aa / c;
        d = 1 / (fabs(d) < tiny ? tiny : d);
        c = fabs(c) < tiny ? tiny : c;
        h *= d * c;
        aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + 1 + m2));
        d = 1 + aa * d;
        c = 1 + aa / c;
        d = 1 / (fabs(d) < tiny ? tiny : d);
        c = fabs(c) < tiny ? tiny : c;
        const double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-16) break;
    }
    return h;
}

/* The regularized incomplete beta function I_x(a, b) (the beta CDF). */
static double beta_cdf(double x, double a, double b)
{
    if (x <= 0) return 0;
    if (x >= 1) return 1;
    const double log_front = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1) / (a + b + 2)) return exp(log_front) * beta_cf(a, b, x) / a;
    return 1 - exp(log_front) * beta_cf(b, a, 1 - x) / b;
}

double sdw_beta_ppf(double p, double a, double b)
{
    if (!(p > 0)) return 0;
    if (p >= 1) return 1;
    /* symmetric: solve on the lower half, so the median is exactly 0.5 (as
     * scipy's boost ibeta_inv returns it: a tie rint must round alike) */
    if (a == b) {
        if (p == 0.5) return 0.5;
        if (p > 0.5) return 1 - sdw_beta_ppf(1 - p, a, b);
    }
    double lo = 0, hi = a == b ? 0.5 : 1;
    for (int i = 0; i < 200; i++) {
        const double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi) break;
        if (beta_cdf(mid, a, b) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

int sdw_beta_indices(int steps, int total, int *idx)
{
    /* 1 - numpy.linspace(0, 1, steps, endpoint=False), rint to the table,
     * repeats dropped */
    const double step = 1.0 / steps;
    double last = -1;
    int n = 0;
    for (int i = 0; i < steps; i++) {
        const double t = rint(sdw_beta_ppf(1.0 - i * step, BETA_ALPHA, BETA_BETA) * total);
        if (t != last) idx[n++] = (int)t;
        last = t;
    }
    return n;
}
