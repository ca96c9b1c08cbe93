/* cond_list.h: ComfyUI's conditioning lists (sdw_pipeline_params.positive /
 * negative, the workflow executor's CONDITIONING) in the denoisers. A plan,
 * made once per run, says which model evaluations each step makes and how
 * their outputs combine; the denoisers (denoise_unet.c, denoise_flux.c,
 * denoise_sd3.c) encode the conditionings, run the evaluations and feed the
 * outputs back here. As ComfyUI's comfy/samplers.py:
 *
 *   process_conds      every entry with an area gets an entry of the same area
 *                      on the other side (create_cond_with_same_area_if_none):
 *                      its area and strength, the conditioning of the other
 *                      side's smallest entry whose area holds it (else of its
 *                      first entry without an area); positive first
 *   get_area_and_mult  an evaluation sees its area's crop of the latents;
 *                      mult = strength over the crop, each crop edge that is
 *                      not on the latent's border feathered over
 *                      rr = min(8, size / 4) rows: row t from the edge
 *                      * (t + 1) / rr
 *   calc_cond_batch    per side, out = sum(out_i * mult_i) / (1e-37 +
 *                      sum(mult_i)) per latent pixel
 *   cfg_function       uncond + (cond - uncond) * cfg (sdw_cfg_combine).
 *
 *   timestep ranges    an entry with a range (ConditioningSetTimestepRange)
 *                      takes part in an evaluation only while the
 *                      evaluation's sigma lies within [sigma(end), sigma(start)]
 *                      (percent_to_sigma of the model sampling, compared in
 *                      float32 as torch compares a tensor with a Python
 *                      float); an area copy on the other side keeps the range
 *                      of the entry it copies (process_conds copies the whole
 *                      cond after calculate_start_end_timesteps).
 *
 * ComfyUI combines the denoised x0 where we combine the raw outputs (eps, v
 * or the flow velocity): the same affine map of either, so the same result
 * wherever an entry covers the pixel. A pixel no entry of a side covers (in
 * area or in timestep range) is 0 there (raw output 0), where ComfyUI's
 * denoised would be 0. */
#ifndef SDW_PIPELINE_COND_LIST_H
#define SDW_PIPELINE_COND_LIST_H
#include "pipeline/pipeline.h"

enum { SDW_COND_POS = 0, SDW_COND_NEG = 1 };

/* One model evaluation of a step. */
typedef struct {
    int side;          /* SDW_COND_POS / SDW_COND_NEG: the output it adds to */
    int src;           /* its conditioning: i < n_positive = positive[i], else negative[i - n_positive] */
    float strength;
    bool area;         /* false: the whole latent */
    int x, y, w, h;    /* the crop, latent pixels (clamped to the latent as ComfyUI clamps) */
    float *mult;       /* [h, w] */
    bool ranged;       /* a timestep range: active only while sigma_lo <= sigma <= sigma_hi */
    float start_percent, end_percent, sigma_hi, sigma_lo;
    bool active;       /* takes part in the evaluation in progress (sdw_cond_select) */
} sdw_cond_eval;

typedef struct {
    sdw_cond_eval *evals;
    int n;             /* the positive side's evaluations, then (cfg only) the negative side's */
    int n_src;         /* n_positive + n_negative */
    bool *used;        /* [n_src]: the conditionings some evaluation uses (the others need no encoding) */
    bool any_area;
    int B, C, h, w;    /* batch items, channels, latent size of the accumulators */
    float *cnt[2];     /* [h, w] per side: 1e-37 + sum of the side's mults */
    float *sum[2];     /* [B, C, h, w] per side */
    bool any_range, have_sigmas;   /* some evaluation has a timestep range; its sigmas are known */
} sdw_cond_plan;

/* Checks the lists (strength, areas, a negative list when cfg) and lays out
 * the evaluations for latents [B, C, h, w]. Fails with a message naming the
 * entry. */
sdw_status sdw_cond_plan_make(const sdw_pipeline_params *p, bool cfg, int B, int C, int h, int w, sdw_cond_plan *pl);
void sdw_cond_plan_free(sdw_cond_plan *pl);
/* The entry conditioning src is made from. */
const sdw_cond_entry *sdw_cond_source(const sdw_pipeline_params *p, int src);
/* Fails unless every area's crop is a multiple of mult latent pixels each way
 * (the model runs on the crop): what names the model in the message. */
sdw_status sdw_cond_check_crops(const sdw_cond_plan *pl, int mult, const char *what);

/* Before a model evaluation (comfy mode): the evaluations whose timestep
 * range holds the evaluation's sigma r->comfy_sigma become the active ones,
 * and each side's counts are summed over them. Without ranges every
 * evaluation stays active. Inactive evaluations need not run (sdw_cond_add
 * leaves them out). */
struct sdw_run;
void sdw_cond_select(sdw_cond_plan *pl, const struct sdw_run *r);

/* x [C, h, w] (one batch item) -> evaluation k's crop [C, e.h, e.w] (a copy even without an area). */
void sdw_cond_crop(const sdw_cond_plan *pl, int k, const float *x, int C, float *crop);
/* A step: sums to zero; each evaluation's output for item b ([C, e.h, e.w],
 * the crop's) added with its mult; then a side's combination for item b
 * ([C, h, w]). */
void sdw_cond_reset(sdw_cond_plan *pl);
void sdw_cond_add(sdw_cond_plan *pl, int k, int b, const float *out);
void sdw_cond_result(const sdw_cond_plan *pl, int side, int b, float *out);
#endif
