/* timestep_embed.c: see timestep_embed.h. */
#include "models/timestep_embed.h"
#include <math.h>

/* exp as torch's CPU kernels compute it (SLEEF's expf_u10, with FMA):
 * within 1 ulp like expf, but where the two round apart, t = 1000 (or a
 * guidance of 3500) times the frequency turns the ulp into 1e-5 of the embedding. */
static float torch_expf(float d)
{
    float q = rintf(d * 1.442695040888963407359924681001892137426645954152985934135449406931f);
    float s = fmaf(q, -0.693145751953125f, d);
    s = fmaf(q, -1.428606765330187045e-06f, s);
    float u = 0.000198527617612853646278381f;
    u = fmaf(u, s, 0.00139304355252534151077271f);
    u = fmaf(u, s, 0.00833336077630519866943359f);
    u = fmaf(u, s, 0.0416664853692054748535156f);
    u = fmaf(u, s, 0.166666671633720397949219f);
    u = fmaf(u, s, 0.5f);
    return ldexpf(1.0f + fmaf(s * s, u, s), (int)q);
}

void sdw_time_sinusoid(float t, int dim, float *out)
{
    const int half = dim / 2;
    const float neg_log = -logf(10000.0f);
    for (int i = 0; i < half; i++) {
        float a = t * torch_expf(neg_log * (float)i / (float)half);
        out[i] = cosf(a);
        out[half + i] = sinf(a);
    }
    if (dim % 2) out[dim - 1] = 0;
}
