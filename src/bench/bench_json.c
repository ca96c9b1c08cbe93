/* bench_json.c: a bench result (bench.h) as JSON, for `sd-worker bench --json`:
 * the same figures as the table, per stage (keyed by sdw_bench_stage_name
 * whatever the denoiser: "unet_eval" is the evaluation of FLUX's transformer
 * too, "denoiser" says which), plus the shapes when tracked. "controlnet_eval"
 * and "controlnet_share_of_step" are there only when a ControlNet ran. */
#include "bench/bench.h"

static cJSON *peak_json(const sdw_bench_peak *p)
{
    if (!p->available) return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "tflops", p->tflops);
    cJSON_AddNumberToObject(o, "conv3x3_320_64x64_b2_tflops", p->conv_tflops);
    cJSON_AddNumberToObject(o, "matmul_8192x1280x1280_tflops", p->matmul_tflops);
    return o;
}

static cJSON *image_json(const sdw_bench_image *im)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "steps", im->steps);
    cJSON_AddNumberToObject(o, "seconds", im->seconds);
    cJSON_AddNumberToObject(o, "gflop", im->flops * 1e-9);
    cJSON_AddNumberToObject(o, "seconds_at_peak", im->seconds_at_peak);
    cJSON_AddNumberToObject(o, "x_peak", im->x_peak);
    if (im->x_host > 0) {
        cJSON_AddNumberToObject(o, "seconds_at_host", im->seconds_at_host);
        cJSON_AddNumberToObject(o, "x_host", im->x_host);
    }
    return o;
}

static const char *op_kind_name(sdw_op_kind k)
{
    static const char *const names[SDW_OPK_COUNT] = { "conv", "matmul", "attention" };
    return k >= 0 && k < SDW_OPK_COUNT ? names[k] : "?";
}

static cJSON *shapes_json(const sdw_bench_stage_result *s)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < s->n_shapes && i < SDW_BENCH_MAX_SHAPES; i++) {
        const sdw_op_shape *e = &s->shapes[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", op_kind_name(e->kind));
        cJSON_AddItemToObject(o, "dims", cJSON_CreateIntArray(e->dims, SDW_OP_DIMS));
        cJSON_AddStringToObject(o, "kernel", e->path ? e->path : "?");
        cJSON_AddNumberToObject(o, "calls", (double)e->calls);
        cJSON_AddNumberToObject(o, "seconds", e->seconds);
        cJSON_AddNumberToObject(o, "gflop", e->flops * 1e-9);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

cJSON *sdw_bench_result_json(const sdw_bench_result *r)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "precision", sdw_precision_name(r->precision));
    cJSON_AddStringToObject(o, "isa", r->isa ? r->isa : "");
    cJSON_AddStringToObject(o, "host", r->host);
    cJSON_AddNumberToObject(o, "threads", r->threads);
    cJSON_AddNumberToObject(o, "width", r->width);
    cJSON_AddNumberToObject(o, "height", r->height);
    cJSON_AddNumberToObject(o, "steps", r->steps);
    cJSON_AddNumberToObject(o, "cfg_scale", r->cfg_scale);
    cJSON_AddNumberToObject(o, "repeat", r->repeat);
    cJSON_AddStringToObject(o, "denoiser", r->denoiser ? r->denoiser : "");
    cJSON_AddNumberToObject(o, "denoiser_batch", r->denoiser_batch);
    cJSON *pk = cJSON_AddObjectToObject(o, "peak");
    cJSON_AddItemToObject(pk, "bf16", peak_json(&r->peak_bf16));
    cJSON_AddItemToObject(pk, "f32", peak_json(&r->peak_f32));
    cJSON_AddNumberToObject(o, "peak_tflops", r->peak_tflops);
    cJSON_AddNumberToObject(o, "sustained_tflops", r->sustained_tflops);
    cJSON *st = cJSON_AddObjectToObject(o, "stages");
    for (int i = 0; i < SDW_BENCH_STAGES; i++) {
        const sdw_bench_stage_result *s = &r->stage[i];
        if (i == SDW_BENCH_CONTROL && !s->ran) continue;
        if (!s->ran) {
            cJSON_AddNullToObject(st, sdw_bench_stage_name((sdw_bench_stage)i));
            continue;
        }
        cJSON *so = cJSON_AddObjectToObject(st, sdw_bench_stage_name((sdw_bench_stage)i));
        cJSON_AddNumberToObject(so, "seconds", s->seconds);
        cJSON_AddNumberToObject(so, "min_seconds", s->min_seconds);
        cJSON_AddNumberToObject(so, "samples", s->samples);
        cJSON_AddNumberToObject(so, "gflop", s->flops * 1e-9);
        cJSON_AddNumberToObject(so, "tflops", s->tflops);
        cJSON_AddNumberToObject(so, "pct_peak", s->pct_peak);
        cJSON_AddNumberToObject(so, "pct_sustained", s->pct_sustained);
        if (s->host_tflops > 0) {
            cJSON_AddNumberToObject(so, "pct_paired", s->pct_paired);
            cJSON_AddNumberToObject(so, "host_tflops", s->host_tflops);
        }
        if (s->n_shapes) cJSON_AddItemToObject(so, "shapes", shapes_json(s));
    }
    cJSON_AddNumberToObject(o, "denoiser_analytic_gflop", r->denoiser_flops_analytic * 1e-9);
    if (r->stage[SDW_BENCH_CONTROL].ran) cJSON_AddNumberToObject(o, "controlnet_share_of_step", r->control_share);
    cJSON_AddNumberToObject(o, "pipeline_run_seconds", r->pipeline_seconds);
    cJSON_AddItemToObject(o, "image_estimate", image_json(&r->image));
    cJSON_AddItemToObject(o, "image20_estimate", image_json(&r->image20));
    cJSON_AddNumberToObject(o, "weight_bytes", (double)r->weight_bytes);
    cJSON_AddNumberToObject(o, "weight_bytes_after_runs", (double)r->weight_bytes_after);
    cJSON_AddNumberToObject(o, "peak_rss_bytes", (double)r->peak_rss_bytes);
    return o;
}
