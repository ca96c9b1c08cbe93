/* gen_params.c: the versioned structs of the public generation API read into
 * this library's full structs (fields an older caller lacks take their
 * defaults), and what sdw_gen_params_check can say about them without a
 * model: names, ranges, LoRA files and tags, ControlNet options. */
#include "api/api_internal.h"
#include "core/error.h"
#include "io/preprocess.h"
#include "sampling/rng.h"
#include "sampling/sampler.h"
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* The smallest struct_size each struct ever had: its first release's
 * fields through the last one a caller cannot do without. */
#define PARAMS_MIN offsetof(sdw_gen_params, negative_prompt)
#define LORA_MIN (offsetof(sdw_lora_ref, unet_strength) + sizeof(float))
#define CONTROL_MIN (offsetof(sdw_gen_control, end) + sizeof(float))

sdw_status sdw_api_versioned_copy(void *full, size_t known, const void *in, size_t given, size_t min,
                                  const char *what)
{
    if (given < min)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s.struct_size is %zu, less than any version of it (%zu): "
                        "set it to sizeof(%s)", what, given, min, what);
    const unsigned char *b = in;
    for (size_t i = known; i < given; i++)
        if (b[i])
            return sdw_fail(SDW_ERR_UNSUPPORTED, "%s is from a newer sdw.h (struct_size %zu, this library "
                            "knows %zu) and sets fields this library does not have", what, given, known);
    memcpy(full, in, given < known ? given : known);
    return SDW_OK;
}

const void *sdw_api_entry(const void *array, size_t stride, int i)
{
    return (const unsigned char *)array + (size_t)i * stride;
}

/* Entry i of a caller's array of versioned structs (struct_size first, every
 * entry as large as the first) over this library's defaults in out. */
static sdw_status read_entry(const void *array, int i, void *out, size_t size, size_t min, const char *name)
{
    const size_t stride = *(const size_t *)array;
    const void *e = sdw_api_entry(array, stride, i);
    const size_t given = *(const size_t *)e;
    if (given != stride)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s[%d].struct_size %zu differs from %s[0]'s %zu", name, i, given, name,
                        stride);
    char what[32];
    snprintf(what, sizeof what, "%s[%d]", name, i);
    SDW_TRY(sdw_api_versioned_copy(out, size, e, given, min, what));
    *(size_t *)out = size;
    return SDW_OK;
}

sdw_status sdw_api_lora_read(const sdw_gen_params *p, int i, sdw_lora_ref *out)
{
    *out = sdw_lora_ref_make(NULL, 1.0f, 1.0f);
    SDW_TRY(read_entry(p->loras, i, out, sizeof *out, LORA_MIN, "loras"));
    if (!out->path) return sdw_fail(SDW_ERR_INVALID_ARG, "loras[%d].path is NULL", i);
    return SDW_OK;
}

sdw_status sdw_api_control_read(const sdw_gen_params *p, int i, sdw_gen_control *out)
{
    *out = sdw_gen_control_default();
    SDW_TRY(read_entry(p->controls, i, out, sizeof *out, CONTROL_MIN, "controls"));
    if (!out->path) return sdw_fail(SDW_ERR_INVALID_ARG, "controls[%d].path is NULL", i);
    return SDW_OK;
}

/* ---------------------------------------------------------------- checks */

static sdw_status range_i(const char *field, long long v, long long lo, long long hi, const char *note)
{
    if (v >= lo && v <= hi) return SDW_OK;
    return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_gen_params.%s is %lld; it must be in %lld..%lld%s", field, v, lo, hi,
                    note);
}

static sdw_status check_finite(const char *field, float v)
{
    return isfinite(v) ? SDW_OK : sdw_fail(SDW_ERR_INVALID_ARG, "sdw_gen_params.%s is not a number", field);
}

static sdw_status check_control(const sdw_gen_control *c, int i)
{
    sdw_image view;
    char what[48];
    snprintf(what, sizeof what, "controls[%d].image", i);
    SDW_TRY(sdw_api_image_view(&c->image, what, &view));
    if (!(c->scale >= 0 && c->scale <= 2))
        return sdw_fail(SDW_ERR_INVALID_ARG, "controls[%d].scale is %g; it must be in 0..2", i, c->scale);
    /* start == end is allowed: a unit that acts on no step (the server takes it from requests). */
    if (!(c->start >= 0 && c->start <= c->end && c->end <= 1))
        return sdw_fail(SDW_ERR_INVALID_ARG, "controls[%d]: start %g and end %g must satisfy 0 <= start <= end <= 1",
                        i, c->start, c->end);
    sdw_preprocessor pre;
    sdw_fit_mode fit;
    if (c->preprocessor && sdw_preprocessor_parse(c->preprocessor, &pre) != SDW_OK)
        return sdw_fail_context(SDW_ERR_INVALID_ARG, "controls[%d].preprocessor", i);
    if (c->resize_mode && sdw_fit_mode_parse(c->resize_mode, &fit) != SDW_OK)
        return sdw_fail_context(SDW_ERR_INVALID_ARG, "controls[%d].resize_mode", i);
    const char *m = c->control_mode;
    if (m && strcmp(m, "balanced") && strcmp(m, "prompt") && strcmp(m, "controlnet"))
        return sdw_fail(SDW_ERR_INVALID_ARG, "controls[%d].control_mode '%s': must be balanced, prompt or controlnet",
                        i, m);
    return SDW_OK;
}

static sdw_status check_lists(const sdw_gen_params *p)
{
    SDW_TRY(range_i("n_loras", p->n_loras, 0, SDW_MAX_LORAS, ""));
    if (p->n_loras && !p->loras) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_gen_params.loras is NULL with n_loras %d",
                                                 p->n_loras);
    sdw_lora_set set;
    SDW_TRY(sdw_api_lora_set(p, &set));
    SDW_TRY(range_i("n_controls", p->n_controls, 0, SDW_MAX_CONTROLS, ""));
    if (p->n_controls && !p->controls)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_gen_params.controls is NULL with n_controls %d", p->n_controls);
    bool other_mode = false;
    for (int i = 0; i < p->n_controls; i++) {
        sdw_gen_control c;
        SDW_TRY(sdw_api_control_read(p, i, &c));
        SDW_TRY(check_control(&c, i));
        other_mode |= c.control_mode && strcmp(c.control_mode, "balanced");
    }
    if (p->control_guess && other_mode)
        return sdw_fail(SDW_ERR_INVALID_ARG, "control_guess and a control_mode prompt / controlnet are two rules "
                        "for the same thing; give one");
    SDW_TRY(range_i("n_slg_layers", p->n_slg_layers, 0, SDW_MAX_SLG_LAYERS, ""));
    if (p->n_slg_layers && !p->slg_layers)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_gen_params.slg_layers is NULL with n_slg_layers %d",
                        p->n_slg_layers);
    return SDW_OK;
}

/* The checks of a full struct. */
static sdw_status check_full(const sdw_gen_params *p)
{
    SDW_TRY(range_i("width", p->width, 0, 16384, " (0 = the model's default)"));
    SDW_TRY(range_i("height", p->height, 0, 16384, " (0 = the model's default)"));
    SDW_TRY(range_i("steps", p->steps, 0, 10000, " (0 = the model's default)"));
    SDW_TRY(check_finite("cfg_scale", p->cfg_scale));
    SDW_TRY(check_finite("guidance", p->guidance));
    SDW_TRY(range_i("seed", p->seed, -1, INT64_MAX, " (-1 = random)"));
    sdw_sampler_kind sk;
    sdw_schedule_kind ck;
    sdw_rng_kind rk;
    if (p->sampler) SDW_TRY(sdw_sampler_parse(p->sampler, &sk));
    if (p->scheduler) SDW_TRY(sdw_schedule_parse(p->scheduler, &ck));
    if (p->rng && !sdw_rng_kind_parse(p->rng, &rk))
        return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_gen_params.rng must be cpu or cuda, not '%s'", p->rng);
    SDW_TRY(range_i("clip_skip", p->clip_skip, 0, 12, " (0 = the family's default)"));
    SDW_TRY(range_i("batch_size", p->batch_size, 1, 64, ""));
    SDW_TRY(range_i("batch_count", p->batch_count, 1, 100000, ""));
    if (p->mask && !p->init_image)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_gen_params.mask needs an init image (init_image) to inpaint");
    sdw_image view;
    if (p->init_image) {
        SDW_TRY(sdw_api_image_view(p->init_image, "init_image", &view));
        if (!(p->strength > 0 && p->strength <= 1))
            return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_gen_params.strength is %g; it must be in (0, 1]", p->strength);
    }
    if (p->mask) SDW_TRY(sdw_api_image_view(p->mask, "mask", &view));
    if (p->mask_source != SDW_GEN_MASK_LUMA && p->mask_source != SDW_GEN_MASK_ALPHA)
        return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_gen_params.mask_source is %d; it must be SDW_GEN_MASK_LUMA or "
                        "SDW_GEN_MASK_ALPHA", (int)p->mask_source);
    SDW_TRY(range_i("t5_max_length", p->t5_max_length, 0, 512, " (0 = the model's)"));
    SDW_TRY(range_i("vae_tiling", p->vae_tiling, -1, 1, " (-1 = by size)"));
    SDW_TRY(range_i("preview_every", p->preview_every, 0, INT32_MAX, " (0 = none)"));
    return check_lists(p);
}

sdw_status sdw_api_params_read(const sdw_gen_params *p, sdw_gen_params *out)
{
    *out = sdw_gen_params_default();
    if (!p) return sdw_fail(SDW_ERR_INVALID_ARG, "sdw_gen_params is NULL");
    SDW_TRY(sdw_api_versioned_copy(out, sizeof *out, p, p->struct_size, PARAMS_MIN, "sdw_gen_params"));
    out->struct_size = sizeof *out;
    if (!out->prompt) out->prompt = "";
    return check_full(out);
}

sdw_status sdw_gen_params_check(const sdw_gen_params *p)
{
    sdw_gen_params full;
    return sdw_api_params_read(p, &full);
}

/* ---------------------------------------------------------------- names */

static char sampler_list[1024], scheduler_list[1024];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void make_names(void)
{
    size_t n = 0;
    for (int k = 0; k < SDW_SAMPLER_COUNT; k++)
        n += (size_t)snprintf(sampler_list + n, n < sizeof sampler_list ? sizeof sampler_list - n : 0, "%s%s",
                              k ? ", " : "", sdw_sampler_name((sdw_sampler_kind)k));
    n = 0;
    for (int k = 0; k < SDW_SCHEDULE_COUNT; k++)
        n += (size_t)snprintf(scheduler_list + n, n < sizeof scheduler_list ? sizeof scheduler_list - n : 0,
                              "%s%s", k ? ", " : "", sdw_schedule_name((sdw_schedule_kind)k));
}

const char *sdw_sampler_names(void)
{
    pthread_once(&names_once, make_names);
    return sampler_list;
}

const char *sdw_scheduler_names(void)
{
    pthread_once(&names_once, make_names);
    return scheduler_list;
}
