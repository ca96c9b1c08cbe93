/* model_sd3.c: loading SD3 / SD3.5 (medium, large, large turbo) as users
 * have it: Stability's single file (the MMDiT under "model.diffusion_model."
 * and the 16-channel VAE under "first_stage_model."), with the text encoders
 * in the same file (sd3_medium_incl_clips*: "text_encoders.clip_l / clip_g /
 * t5xxl.transformer.") or named beside it (--clip-l, --clip-g, --t5xxl); a
 * GGUF or fp8 transformer file (then --vae too); or a diffusers folder. T5 is
 * optional: without it the context's T5 part is zeros, as the reference
 * pipeline allows. The family comes from the shapes: MMDiT-X blocks make
 * SD3.5-medium, q/k norms without them SD3.5-large, neither SD3-medium. */
#include "models/model.h"
#include "models/mmdit.h"
#include "models/sd3_text.h"
#include "core/error.h"
#include "core/log.h"
#include "io/json_file.h"
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VAE_PREFIX "first_stage_model."

static sdw_family family_of(const sdw_mmdit_config *c)
{
    bool dual = false;
    for (int i = 0; i < c->depth; i++) dual = dual || c->dual[i];
    return dual ? SDW_FAMILY_SD35_MEDIUM : c->qk_norm ? SDW_FAMILY_SD35_LARGE : SDW_FAMILY_SD3;
}

static sdw_status check_params(const sdw_load_params *p, const char *path)
{
    if (p->prediction != SDW_PREDICTION_AUTO && p->prediction != SDW_PREDICTION_FLOW)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: SD3 predicts the flow velocity; --prediction %s does not apply", path,
                        sdw_prediction_name(p->prediction));
    return SDW_OK;
}

static void set_family(sdw_model *m, const sdw_mmdit_config *c, const sdw_load_params *p, const char *path,
                       const sdw_safetensors *st, float shift)
{
    sdw_model_info *in = &m->info;
    in->family = family_of(c);
    in->prediction = SDW_PREDICTION_FLOW;
    snprintf(in->prediction_source, sizeof in->prediction_source, "family (rectified flow)");
    in->flow_shift = shift;
    sdw_model_detect_turbo(in, p, path, st);
    sdw_model_set_defaults(in);
}

/* The VAE: an LDM-named file (bare or under first_stage_model.) or a diffusers one. */
static sdw_status load_vae_file(sdw_model *m, const char *path, bool with_encoder)
{
    sdw_safetensors *st;
    SDW_TRY(sdw_model_open_part(path, &m->info, &m->info.params_vae, &st));
    if (!m->be) {
        sdw_st_close(st);
        return SDW_OK;
    }
    const char *prefix = sdw_vae_ldm_present(st, VAE_PREFIX) ? VAE_PREFIX : sdw_vae_ldm_present(st, "") ? "" : NULL;
    sdw_vae_config c;
    sdw_status s = prefix ? sdw_vae_config_from_ldm(st, prefix, &c)
                          : sdw_fail(SDW_ERR_FORMAT, "%s is not an LDM-named autoencoder", path);
    if (s == SDW_OK && c.latent_channels != 16)
        s = sdw_fail(SDW_ERR_FORMAT, "%s has %d latent channels; SD3's autoencoder has 16", path, c.latent_channels);
    if (s == SDW_OK) s = sdw_vae_load(m->be, st, prefix, &c, with_encoder, &m->vae);
    sdw_st_close(st);
    return sdw_fail_context(s, "--vae %s", path);
}

/* CLIP-L, CLIP-G and T5, each from its own file or the checkpoint itself. */
static sdw_status load_text(sdw_model *m, const sdw_safetensors *st, const char *path, const sdw_load_params *p,
                            const sdw_mmdit_config *c)
{
    sdw_model_info *in = &m->info;
    bool aio_t5 = false, aio = st && sdw_sd3_text_aio_present(st, &aio_t5);
    /* A probe (info) reports what is there; a load says which part is missing. */
    if (m->be && !p->clip_l_path && !aio)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s holds no CLIP-L text encoder: give it with --clip-l "
                        "clip_l.safetensors", path);
    if (m->be && !p->clip_g_path && !aio)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s holds no CLIP-G text encoder: give it with --clip-g "
                        "clip_g.safetensors", path);
    if (aio) {
        static const char *const l[] = { SDW_SD3_AIO_CLIP_L }, *const g[] = { SDW_SD3_AIO_CLIP_G },
                                 *const t[] = { SDW_SD3_AIO_T5 };
        if (!p->clip_l_path) in->params_text += sdw_model_params_under(st, l, 1);
        if (!p->clip_g_path) in->params_text += sdw_model_params_under(st, g, 1);
        if (aio_t5 && !p->t5_path && !p->no_t5) in->params_t5 = sdw_model_params_under(st, t, 1);
    }
    const bool t5 = !p->no_t5 && (p->t5_path || aio_t5);
    in->t5_max_length = t5 ? in->t5_max_length : 0;
    if (!m->be) {
        const char *files[3] = { p->clip_l_path, p->clip_g_path, t5 ? p->t5_path : NULL };
        for (int k = 0; k < 3; k++) {
            sdw_safetensors *own;
            if (!files[k]) continue;
            SDW_TRY(sdw_model_open_part(files[k], in, k == 2 ? &in->params_t5 : &in->params_text, &own));
            sdw_st_close(own);
        }
        return SDW_OK;
    }
    if (!(m->sd3_text = calloc(1, sizeof *m->sd3_text))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    sdw_sd3_text *tx = m->sd3_text;
    const char *files[3] = { p->clip_l_path, p->clip_g_path, t5 ? p->t5_path : NULL };
    const char *aio_prefix[3] = { SDW_SD3_AIO_CLIP_L, SDW_SD3_AIO_CLIP_G, SDW_SD3_AIO_T5 };
    for (int k = 0; k < 3; k++) {
        if (k == 2 && !t5) break;
        char what[4200];
        sdw_safetensors *own = NULL;
        const sdw_safetensors *src = st;
        const char *prefix = aio_prefix[k];
        if (files[k]) {
            static const char *const flag[3] = { "--clip-l", "--clip-g", "--t5xxl" };
            SDW_TRY(sdw_model_open_part(files[k], in, k == 2 ? &in->params_t5 : &in->params_text, &own));
            snprintf(what, sizeof what, "%s %s", flag[k], files[k]);
            src = own;
            prefix = "";
        } else {
            snprintf(what, sizeof what, "%s (%s*)", path, prefix);
        }
        sdw_status s = k < 2 ? sdw_sd3_text_load_clip(m->be, tx, k ? SDW_SD3_CLIP_G : SDW_SD3_CLIP_L, src, prefix,
                                                       files[k], what)
                             : sdw_sd3_text_load_t5(m->be, tx, src, prefix, what);
        sdw_st_close(own);
        SDW_TRY(s);
    }
    if (!t5)
        SDW_WARN("no T5 encoder%s: the prompt reaches SD3 through CLIP-L and CLIP-G only (the T5 part of the "
                 "context is zeros); give --t5xxl t5xxl_fp16.safetensors for the full conditioning",
                 p->no_t5 ? " (--no-t5)" : "");
    return sdw_sd3_text_check(tx, c->joint_dim, c->pooled_dim);
}

sdw_status sdw_sd3_model_load_single(sdw_model *m, const char *path, sdw_safetensors *st, const char *prefix,
                                     const sdw_load_params *p)
{
    sdw_model_info *in = &m->info;
    in->layout = "single-file";
    sdw_mmdit_config c;
    sdw_status s = check_params(p, path);
    if (s == SDW_OK) s = sdw_fail_context(sdw_mmdit_config_from_tensors(st, prefix, SDW_NAMES_LDM, NULL, &c), "%s", path);
    if (s != SDW_OK) {
        sdw_st_close(st);
        return s;
    }
    set_family(m, &c, p, path, st, 3.0f);
    sdw_model_note_dtypes(in, st);
    static const char *const vp[] = { VAE_PREFIX };
    const char *const tp[] = { prefix };
    in->params_unet = sdw_model_params_under(st, tp, 1);
    bool own_vae = sdw_vae_ldm_present(st, VAE_PREFIX);
    if (own_vae && !p->vae_path) in->params_vae = sdw_model_params_under(st, vp, 1);
    if (m->be && !own_vae && !p->vae_path)
        s = sdw_fail(SDW_ERR_INVALID_ARG, "%s holds the SD3 transformer only: give the autoencoder with --vae", path);
    if (s == SDW_OK) s = load_text(m, st, path, p, &c);
    if (s == SDW_OK && p->vae_path) s = load_vae_file(m, p->vae_path, p->with_vae_encoder);
    st->keep_mapped = m->be != NULL;
    if (s == SDW_OK && m->be && !p->vae_path) {
        sdw_vae_config vc;
        s = sdw_vae_config_from_ldm(st, VAE_PREFIX, &vc);
        if (s == SDW_OK) s = sdw_vae_load(m->be, st, VAE_PREFIX, &vc, p->with_vae_encoder, &m->vae);
        s = sdw_fail_context(s, "%s (%s*)", path, VAE_PREFIX);
    }
    if (s == SDW_OK && m->be)
        s = sdw_fail_context(sdw_mmdit_load(m->be, st, prefix, SDW_NAMES_LDM, &c, &m->mmdit), "%s", path);
    return sdw_model_keep_or_close(m, st, s, 't', prefix);
}

/* ---------------------------------------------------------------- diffusers folder */

/* kind: SDW_SD3_CLIP_L, SDW_SD3_CLIP_G, or FOLDER_T5. */
#define FOLDER_T5 2
static sdw_status folder_clip(sdw_model *m, const char *dir, const char *sub, int kind, const char *override,
                              int64_t *params)
{
    char path[4200], what[4300];
    sdw_safetensors *st;
    if (override) {
        snprintf(path, sizeof path, "%s", override);
        SDW_TRY(sdw_model_open_part(path, &m->info, params, &st));
    } else {
        SDW_TRY(sdw_model_open_diffusers(dir, sub, "model", &st));
        snprintf(path, sizeof path, "%s/%s/model.safetensors", dir, sub);
        sdw_model_count_part(&m->info, st, params);
    }
    snprintf(what, sizeof what, "%s", path);
    sdw_status s = SDW_OK;
    if (m->be)
        s = kind == FOLDER_T5 ? sdw_sd3_text_load_t5(m->be, m->sd3_text, st, "", what)
                              : sdw_sd3_text_load_clip(m->be, m->sd3_text, (sdw_sd3_clip_kind)kind, st, "", path, what);
    sdw_st_close(st);
    return s;
}

static sdw_status transformer_config(const sdw_safetensors *st, const cJSON *cfg, void *c)
{
    return sdw_mmdit_config_from_tensors(st, "", SDW_NAMES_DIFFUSERS, cfg, c);
}

static sdw_status transformer_load(sdw_model *m, const sdw_safetensors *st, const void *c)
{
    return sdw_mmdit_load(m->be, st, "", SDW_NAMES_DIFFUSERS, c, &m->mmdit);
}

/* The scheduler's shift (3.0 in every released SD3 / SD3.5). */
static float scheduler_shift(const char *dir)
{
    float shift = 3.0f;
    char path[4200];
    snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir);
    cJSON *sc;
    if (sdw_json_load_file(path, &sc) == SDW_OK) {
        const cJSON *v = cJSON_GetObjectItem(sc, "shift");
        if (cJSON_IsNumber(v) && v->valuedouble > 0 && v->valuedouble < 100) shift = (float)v->valuedouble;
        cJSON_Delete(sc);
    }
    return shift;
}

sdw_status sdw_sd3_model_load_diffusers(sdw_model *m, const char *dir, const sdw_load_params *p)
{
    sdw_model_info *in = &m->info;
    in->layout = "diffusers";
    SDW_TRY(check_params(p, dir));
    sdw_mmdit_config c;
    SDW_TRY(sdw_model_load_transformer(m, dir, transformer_config, transformer_load, &c));
    set_family(m, &c, p, dir, NULL, scheduler_shift(dir));
    char path[4200];
    sdw_safetensors *st;
    sdw_status s;
    /* VAE: the folder's own (diffusers names) or --vae. */
    if (p->vae_path) {
        SDW_TRY(load_vae_file(m, p->vae_path, p->with_vae_encoder));
    } else {
        snprintf(path, sizeof path, "%s/vae/config.json", dir);
        cJSON *vj;
        SDW_TRY(sdw_json_load_file(path, &vj));
        sdw_vae_config vc;
        s = sdw_vae_config_from_diffusers(vj, &vc);
        cJSON_Delete(vj);
        SDW_TRY(sdw_fail_context(s, "%s", path));
        SDW_TRY(sdw_model_open_diffusers(dir, "vae", "diffusion_pytorch_model", &st));
        sdw_model_count_part(in, st, &in->params_vae);
        if (m->be) s = sdw_vae_load(m->be, st, NULL, &vc, p->with_vae_encoder, &m->vae);
        sdw_st_close(st);
        SDW_TRY(sdw_fail_context(s, "%s/vae", dir));
    }
    snprintf(path, sizeof path, "%s/text_encoder_3", dir);
    FILE *f = NULL;
    char probe[4300];
    snprintf(probe, sizeof probe, "%s/config.json", path);
    bool folder_t5 = (f = fopen(probe, "r")) != NULL;
    if (f) fclose(f);
    const bool t5 = !p->no_t5 && (p->t5_path || folder_t5);
    in->t5_max_length = t5 ? in->t5_max_length : 0;
    if (m->be && !(m->sd3_text = calloc(1, sizeof *m->sd3_text))) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    SDW_TRY(folder_clip(m, dir, "text_encoder", SDW_SD3_CLIP_L, p->clip_l_path, &in->params_text));
    SDW_TRY(folder_clip(m, dir, "text_encoder_2", SDW_SD3_CLIP_G, p->clip_g_path, &in->params_text));
    if (t5) SDW_TRY(folder_clip(m, dir, "text_encoder_3", FOLDER_T5, p->t5_path, &in->params_t5));
    if (!m->be) return SDW_OK;
    if (!t5) SDW_WARN("no T5 encoder: the prompt reaches SD3 through CLIP-L and CLIP-G only (zeros in its place)");
    return sdw_sd3_text_check(m->sd3_text, c.joint_dim, c.pooled_dim);
}
