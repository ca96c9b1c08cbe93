/* sampler_internal.h: what the files of sampling/ share: the discrete noise
 * table of the training schedule, the flow-matching sigma function, the
 * schedule builders, the sampler struct and the run context the step loops
 * use. */
#ifndef SDW_SAMPLING_SAMPLER_INTERNAL_H
#define SDW_SAMPLING_SAMPLER_INTERNAL_H
#include "sampling/sampler.h"

#define SDW_TRAIN_STEPS 1000
#define SDW_SAMPLER_MAX_STEPS 1000

/* diffusers' scaled-linear schedule (beta 0.00085..0.012), float32 as torch
 * computes it; index = training timestep. */
typedef struct {
    float alphas_cumprod[SDW_TRAIN_STEPS];
    float sigmas[SDW_TRAIN_STEPS];      /* sqrt((1 - ac) / ac), ascending */
    float log_sigmas[SDW_TRAIN_STEPS];
} sdw_noise_table;

void sdw_noise_table_init(sdw_noise_table *tab);
/* torch.linspace(start, end, steps) in float32 on the CPU, bit for bit. */
void sdw_torch_linspace_f32(float start, float end, int steps, float *out);
/* np.interp(t, arange(1000), sigmas): linear in sigma (diffusers). */
double sdw_sigma_at(const sdw_noise_table *tab, double t);
/* Linear in log sigma (ComfyUI / k-diffusion t_to_sigma). */
double sdw_sigma_at_log(const sdw_noise_table *tab, double t);
/* diffusers' _sigma_to_t: the (fractional) timestep of a sigma, log-linear. */
double sdw_sigma_to_t(const sdw_noise_table *tab, double sigma);

/* How a diffusers scheduler lays out its own "linspace" / "leading" steps:
 * EulerDiscrete & co. (float timesteps), DPMSolverMultistep (steps + 1 points,
 * the last dropped, rounded), DDIM / PNDM (integer), LCM (its 50-step origin
 * schedule). */
typedef enum { SDW_STYLE_K, SDW_STYLE_DPM, SDW_STYLE_DDIM, SDW_STYLE_LCM } sdw_timestep_style;

/* Fills timesteps[n], sigmas[n + 1] (ending in 0) and acp[n] (alphas_cumprod
 * of each level: the table's where the level is a table entry, 1 / (1 +
 * sigma^2) otherwise) for steps levels; *n = steps but for the beta schedule
 * (repeated levels dropped). */
sdw_status sdw_schedule_build(const sdw_noise_table *tab, sdw_schedule_kind kind, sdw_timestep_style style,
                              int steps, float *timesteps, float *sigmas, float *acp, int *n);

/* ComfyUI's beta scheduler: the table indices (of total + 1 ascending
 * entries) of beta(0.6, 0.6) quantiles 1 - i/steps, rounded, repeats
 * dropped: fills idx (descending) and returns how many. */
int sdw_beta_indices(int steps, int total, int *idx);
/* The quantile function of the beta(a, b) distribution (scipy.stats.beta.ppf). */
double sdw_beta_ppf(double p, double a, double b);

/* A flow model's sigmas: mu (the shift) and the size of ComfyUI's table. */
typedef struct {
    double mu;
    int size;           /* 1000 (ModelSamplingDiscreteFlow) or 10000 (ModelSamplingFlux) */
    bool static_shift;  /* the flow schedule's spacing: SD3's (true) or FLUX's */
} sdw_flow_shift;

/* sigma(t) for t in (0, 1] in float32 as ComfyUI computes its table. */
float sdw_flow_sigma(const sdw_flow_shift *f, float t);
/* Fills timesteps[n] (sigma * 1000), sigmas[n + 1] (ending in 0) for a flow
 * model; *n as sdw_schedule_build. */
sdw_status sdw_flow_schedule_build(const sdw_flow_shift *f, sdw_schedule_kind kind, int steps, float *timesteps,
                                   float *sigmas, int *n);

/* ComfyUI's eps / v model sampling (schedule_comfy.c): its table (float64
 * betas and cumprod), its model timestep of a sigma (the nearest table
 * entry in log sigma, an integer), and its schedules over that table
 * (timesteps[] the model timesteps; leading = ddim_uniform, which may give
 * more than steps levels: room for SDW_TRAIN_STEPS + 1 sigmas). */
void sdw_noise_table_init_comfy(sdw_noise_table *tab);
float sdw_comfy_timestep(const sdw_noise_table *tab, float sigma);
sdw_status sdw_comfy_schedule_build(const sdw_noise_table *tab, sdw_schedule_kind kind, int steps, float *timesteps,
                                    float *sigmas, float *acp, int *n);

struct sdw_sampler {
    sdw_sampler_params p;
    sdw_noise_table tab;
    bool flow;          /* p.param == SDW_PARAM_FLOW */
    sdw_flow_shift shift;
    int levels;         /* noise levels of the schedule (p.steps but for beta's repeats) */
    int n;              /* timesteps (= levels; pndm: levels + 1) */
    float *timesteps;   /* [n] */
    float *sigmas;      /* [n + 1], sigmas[n] = 0 */
    float *acp;         /* [n + 1], acp[n]: where the last step lands (ddim / pndm: alphas_cumprod[0]) */
    bool vp;
    float init_noise_sigma;
    sdw_noise_fn noise_fn;
    void *noise_user;
    sdw_denoise_hook hook;
    void *hook_user;
};

/* One sdw_sampler_run in progress. */
typedef struct {
    sdw_sampler *s;
    float *x;
    size_t n;
    sdw_model_fn model;
    void *model_user;
    sdw_step_fn on_step;
    void *step_user;
    sdw_rng *rng;
    float *xin;         /* [n] scaled model input */
    float *out;         /* [n] raw model output */
    float *xb;          /* [n] the hook's copy of x (NULL without a hook) */
} sdw_run_ctx;

/* Evaluates the model on x at (sigma, t) and writes the denoised estimate
 * (x0, in the sigma space: x = x0 + sigma eps; flow: x = (1 - sigma) x0 +
 * sigma noise) to x0; out keeps the raw output. */
sdw_status sdw_run_denoise_ve(sdw_run_ctx *c, const float *x, float sigma, float t, float *x0);
/* The model timestep of a sigma off the schedule (dpm2's and dpm++2s_a's
 * midpoints): the table's fractional timestep, or sigma * 1000 (flow). */
float sdw_run_timestep(const sdw_sampler *s, double sigma);
/* Raw model output (eps or v) on the unscaled x (variance-preserving samplers) into c->out. */
sdw_status sdw_run_model_vp(sdw_run_ctx *c, const float *x, float t);
/* One noise draw of n floats. */
void sdw_run_noise(sdw_run_ctx *c, float *buf);
sdw_status sdw_run_step_done(sdw_run_ctx *c, int step);

sdw_status sdw_run_dpmpp_2m(sdw_run_ctx *c, int start, bool sde);
sdw_status sdw_run_pndm(sdw_run_ctx *c, int start);
sdw_status sdw_run_lms(sdw_run_ctx *c, int start);
sdw_status sdw_run_ipndm(sdw_run_ctx *c, int start);
/* Name tables: our names, A1111's labels and extra aliases, looked up
 * case-insensitively; on failure the message lists "ours (A1111)" pairs. */
typedef struct {
    const char *alias;
    int kind;
} sdw_name_alias;
sdw_status sdw_lookup_name(const char *what, const char *s, const char *const *names, const char *const *a1111,
                           int count, const sdw_name_alias *aliases, size_t n_aliases, int *out);
#endif
