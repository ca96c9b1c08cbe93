/* bench.h: what `sd-worker bench` measures, as library code so that tests can
 * run it on the tiny models (any family: the stages go through the family's
 * denoiser, pipeline/denoiser.h): the machine's peak (the better of a 3x3
 * convolution 320->320 at 64x64 batch 2 and an 8192x1280x1280 matmul, each
 * through this backend with weights in the primitive's layout and random data,
 * in bf16 and in f32; measured before and after the stages, the better
 * kept), and the stages of a txt2img run on a loaded model, each
 * the median over repeated runs, with the FLOPs the backend counted during it
 * (convolutions, matmuls and attention actually run), the TFLOP/s achieved and
 * that as a percentage of the peak of the model's precision. With a
 * ControlNet (opts.control) the pipeline runs and the denoiser evaluations
 * carry one unit of it, and one more stage times the net alone. */
#ifndef SDW_BENCH_BENCH_H
#define SDW_BENCH_BENCH_H
#include "models/controlnet.h"
#include "models/flux.h"
#include "models/mmdit.h"
#include "models/model.h"
#include <cjson/cJSON.h>

typedef enum {
    SDW_BENCH_TEXT,     /* prompt + negative prompt (with cfg > 1) through the text encoder(s): the
                         * denoiser's prepare (CLIP; FLUX: T5-XXL + CLIP-L; SD3: CLIP-L + CLIP-G + T5-XXL) */
    SDW_BENCH_DENOISE,  /* one guided evaluation of the denoiser (its predict): the UNet at batch 2 with
                         * cfg > 1 (cond + uncond), FLUX's transformer once (twice with true CFG), SD3's
                         * MMDiT twice with cfg > 1 (once without) */
    SDW_BENCH_STEP,     /* one sampling step of sdw_pipeline_run: the evaluation + the sampler update */
    SDW_BENCH_DECODE,   /* VAE decode of one image */
    SDW_BENCH_ENCODE,   /* VAE encode of one image (only when the encoder is loaded) */
    SDW_BENCH_CONTROL,  /* opts.control: one evaluation of the ControlNet alone at the denoiser's batch
                         * (random latents, text and control image; the rows share the image, as the
                         * pipeline's do); the two above then include it */
    SDW_BENCH_STAGES
} sdw_bench_stage;
/* "text_encode", "unet_eval" (for every denoiser), "sampling_step", "vae_decode", "vae_encode",
 * "controlnet_eval". */
const char *sdw_bench_stage_name(sdw_bench_stage s);

typedef struct {
    bool available;          /* false: this CPU cannot run the precision */
    double conv_tflops;      /* bf16/f32 3x3 conv 320->320, 64x64, batch 2: best run */
    double matmul_tflops;    /* 8192x1280 @ 1280x1280: best run */
    double tflops;           /* the better of the two */
} sdw_bench_peak;

/* Measures the peak of precision p (BF16 or F32) on a fresh backend, keeping
 * the best of runs (0 = 5) runs per kernel after one warm-up. A precision
 * this CPU cannot run gives available = false and SDW_OK. */
sdw_status sdw_bench_measure_peak(sdw_precision p, int runs, sdw_bench_peak *out);

typedef struct {
    const char *prompt;            /* NULL = a stock prompt */
    const char *negative_prompt;   /* NULL = a stock negative prompt */
    int width, height;             /* 0 = the model's default */
    int steps;                     /* sampling steps of each timed pipeline run */
    float cfg_scale;
    int repeat;                    /* runs per stage; the median is reported */
    int peak_runs;                 /* runs per peak kernel, the best is kept; 0 = 5 */
    double sustained_seconds;      /* sdw_bench_measure_sustained after the stages; 0 = skip */
    /* Peaks measured already (sdw_bench_measure_peak), both or neither;
     * NULL = measure them in this run. */
    const sdw_bench_peak *peak_bf16, *peak_f32;
    uint64_t seed;
    bool no_winograd;              /* f32: every conv direct (an A/B switch; sdw_backend_set_winograd) */
    bool shapes;                   /* track the denoiser's and the VAE decode's ops by shape (last run) */
    /* After each timed run of a stage (and each sampling step), the peak
     * convolution back to back for as long as the run took: the host's speed
     * next to the run, on a host whose speed drifts from one second to the
     * next (pct_paired). */
    bool paired;
    /* A ControlNet for the model's UNet (checked with sdw_controlnet_check_base,
     * the message naming control_name, else "the ControlNet"), or NULL. With
     * it every timed pipeline run and denoiser evaluation carries one unit (a
     * random control image at the generation size, scale 1, start 0, end 1,
     * balanced: the net runs on the whole batch at every step), and
     * SDW_BENCH_CONTROL times the net alone. Not owned. */
    const sdw_controlnet *control;
    const char *control_name;
    /* Progress notes ("measuring the peak", ...); may be NULL. */
    void (*note)(void *user, const char *msg);
    void *note_user;
} sdw_bench_opts;
void sdw_bench_opts_init(sdw_bench_opts *o);

#define SDW_BENCH_MAX_SHAPES 48
typedef struct {
    bool ran;
    int samples;          /* timed runs behind the median */
    double seconds;       /* median */
    double min_seconds;
    double flops;         /* counted by the backend during one run */
    double tflops;        /* flops / seconds / 1e12 */
    double pct_peak;      /* tflops as % of the peak of the model's precision */
    double pct_sustained; /* tflops as % of sustained_tflops (0 when not measured) */
    /* opts.paired: median over the runs of each run's TFLOP/s as % of the
     * peak convolution's right after it, and the median of the latter (0
     * when not measured; for the sampling step, every step but a run's
     * first, the probe's time left out of the pipeline's). */
    double pct_paired;
    double host_tflops;
    sdw_op_stats ops;     /* convolutions, matmuls and attention during the last run */
    /* With opts.shapes, the same by shape and kernel, slowest first (the
     * denoiser evaluation, the ControlNet's and the VAE decode only). */
    sdw_op_shape shapes[SDW_BENCH_MAX_SHAPES];
    int n_shapes;         /* shapes tracked; only the first SDW_BENCH_MAX_SHAPES are kept */
} sdw_bench_stage_result;

typedef struct {
    int steps;
    double seconds;          /* text + steps x step + decode */
    double flops;
    double seconds_at_peak;  /* flops / peak */
    double x_peak;           /* seconds / seconds_at_peak */
    /* With opts.paired: each stage's FLOPs at the host's speed next to its
     * runs (host_tflops), summed, and seconds over that (0 when not
     * measured): the same ratio on a host whose speed drifts. */
    double seconds_at_host;
    double x_host;
} sdw_bench_image;

typedef struct {
    sdw_precision precision;      /* the model's compute precision */
    const char *isa;
    char host[256];               /* sdw_bench_host */
    int threads;
    int width, height, steps, repeat;
    const char *denoiser;         /* sdw_model_info.denoiser: "unet", "flux transformer" or "mmdit" */
    /* Latents per denoiser evaluation: the UNet's batch, FLUX's and SD3's
     * transformer passes (one each); 2 with cfg > 1. */
    int denoiser_batch;
    float cfg_scale;
    sdw_bench_peak peak_bf16, peak_f32;
    double peak_tflops;           /* of the model's precision */
    double sustained_tflops;      /* sdw_bench_measure_sustained after the stages; 0 when not measured */
    sdw_bench_stage_result stage[SDW_BENCH_STAGES];
    double denoiser_flops_analytic;   /* sdw_bench_unet_flops / _flux_flops / _sd3_flops for one evaluation */
    double pipeline_seconds;      /* median sdw_pipeline_run of `steps` steps, end to end */
    sdw_bench_image image;        /* estimated image time at `steps` steps */
    sdw_bench_image image20;      /* the same at 20 steps */
    /* opts.control: the ControlNet evaluation's share of a sampling step
     * (stage[SDW_BENCH_CONTROL].seconds / stage[SDW_BENCH_STEP].seconds);
     * 0 without one. */
    double control_share;
    size_t weight_bytes;          /* held after loading */
    size_t weight_bytes_after;    /* held after the runs: first-use copies (Winograd) included */
    size_t peak_rss_bytes;        /* getrusage ru_maxrss at the end */
} sdw_bench_result;

/* How a table labels stage s for r's denoiser: "text encode", "unet eval"
 * or "transformer eval", "sampling step", ..., "controlnet eval". */
const char *sdw_bench_stage_label(const sdw_bench_result *r, sdw_bench_stage s);

/* The peak convolution of precision p run back to back for `seconds`: total
 * FLOPs over total time (0 when p cannot run here). Against the peak's best
 * single call it shows, on a host whose speed drifts, whether that call
 * came from a short fast spell. */
sdw_status sdw_bench_measure_sustained(sdw_precision p, double seconds, double *tflops);

/* Measures the peaks, then times every stage on m (see sdw_bench_stage). */
sdw_status sdw_bench_run(sdw_model *m, const sdw_bench_opts *o, sdw_bench_result *r);

/* The FLOPs (2 x multiply-adds) of the convolutions, matmuls and attention of
 * one UNet evaluation of N latents h x w with n_ctx context tokens, counted
 * from the architecture, as a sampling step runs it: the cross-attention
 * keys and values of the context are projected once per image, at the
 * first step (sdw_unet_ctx_cache), and counted apart: */
double sdw_bench_unet_flops(const sdw_unet_config *c, int N, int h, int w, int n_ctx);
double sdw_bench_unet_context_flops(const sdw_unet_config *c, int N, int n_ctx);
/* The same for one FLUX transformer pass over n_img image and n_txt text
 * tokens: every linear (the M = 1 embedders and modulations too) and the
 * joint attention (4 L^2 hidden at L = n_img + n_txt tokens). */
double sdw_bench_flux_flops(const sdw_flux_config *c, int n_img, int n_txt);
/* The same for one SD3 / SD3.5 MMDiT pass over n_img image tokens (patches)
 * and n_ctx text tokens: every linear (the M = 1 embedders and modulations
 * too), the joint attention of every block (the last block's context gives
 * only k and v: n_img queries), MMDiT-X's image-only attn2 and the
 * patch embedding as the linear it runs as. */
double sdw_bench_sd3_flops(const sdw_mmdit_config *c, int n_img, int n_ctx);
/* SD3's text tokens for a prompt of one CLIP chunk (up to 75 tokens, as the
 * bench's): CLIP's 77 + T5's t5_len, or 77 zeros without T5 (t5_len 0). */
int sdw_bench_sd3_context(int t5_len);

/* The result as a JSON object (the caller deletes it). */
cJSON *sdw_bench_result_json(const sdw_bench_result *r);
/* One line naming the host: CPU model, family / model, CPUs, and whether it has AMX, AVX-512-BF16, AVX2. */
void sdw_bench_host(char *out, size_t n);
#endif
