/* model_flux.c: loading FLUX.1 dev / schnell as users have it. The
 * transformer comes from BFL's single file (flux1-dev.safetensors, ComfyUI's
 * all-in-one checkpoints with their "model.diffusion_model." prefix, or a
 * GGUF of city96's layout) or a diffusers folder; the autoencoder, CLIP-L and
 * T5-XXL come from the same all-in-one file or folder, or from the files the
 * user names (--vae ae.safetensors, --clip-l, --t5xxl). Dev and schnell differ
 * only by the guidance embedding, which the transformer file tells. */
#include "models/model.h"
#include "models/flux.h"
#include "models/t5.h"
#include "core/error.h"
#include "io/json_file.h"
#include "core/log.h"
#include <libgen.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define AIO_CLIP "text_encoders.clip_l.transformer."
#define AIO_T5 "text_encoders.t5xxl.transformer."
#define AIO_VAE "vae."

/* ---------------------------------------------------------------- the parts */

static sdw_status load_clip(sdw_model *m, const sdw_safetensors *st, const char *prefix, const char *file,
                            const char *what)
{
    sdw_clip_layout layout;
    if (!sdw_clip_text_present(st, prefix, &layout) || layout != SDW_CLIP_LAYOUT_HF)
        return sdw_fail(SDW_ERR_FORMAT, "%s is not a CLIP-L text encoder (no %stext_model.* tensors)", what, prefix);
    char name[256];
    snprintf(name, sizeof name, "%stext_model.embeddings.token_embedding.weight", prefix);
    const sdw_st_tensor *t = sdw_st_find(st, name);
    int width = t && t->ndim == 2 ? (int)t->shape[1] : 0;
    sdw_clip_load_opts o = { SDW_CLIP_LAYOUT_HF, prefix, sdw_clip_text_heads(file, width), 0, SDW_CLIP_QUICK_GELU,
                             false };
    SDW_TRY(sdw_fail_context(sdw_clip_text_load(m->be, st, &o, &m->text.te1), "%s", what));
    m->text.family = m->info.family;
    m->text.pooled_dim = m->text.te1->cfg.width;
    return SDW_OK;
}

static sdw_status load_vae(sdw_model *m, const sdw_safetensors *st, const char *prefix, const char *what,
                           bool with_encoder)
{
    if (!sdw_vae_ldm_present(st, prefix))
        return sdw_fail(SDW_ERR_FORMAT, "%s is not a FLUX autoencoder (no %sdecoder.conv_in)", what, prefix);
    sdw_vae_config c;
    SDW_TRY(sdw_fail_context(sdw_vae_config_from_ldm(st, prefix, &c), "%s", what));
    if (c.latent_channels != 16)
        return sdw_fail(SDW_ERR_FORMAT, "%s has %d latent channels; FLUX's autoencoder has 16 (an SD VAE?)", what,
                        c.latent_channels);
    return sdw_fail_context(sdw_vae_load(m->be, st, prefix, &c, with_encoder, &m->vae), "%s", what);
}

/* A separate part file, opened, checked and loaded by fn. */
typedef sdw_status (*part_loader)(sdw_model *m, const sdw_safetensors *st, const char *path, const sdw_load_params *p);

/* role: 0 closes the file after fn; else the model keeps it mapped under that role. */
static sdw_status load_part(sdw_model *m, sdw_safetensors *st, const char *path, const sdw_load_params *p,
                            part_loader fn, int64_t *params, char role)
{
    sdw_model_count_part(&m->info, st, params);
    st->keep_mapped = role && m->be;
    return sdw_model_keep_or_close(m, st, m->be ? fn(m, st, path, p) : SDW_OK, role, "");
}

static sdw_status part_file(sdw_model *m, const char *path, const sdw_load_params *p, part_loader fn, int64_t *params,
                            char role)
{
    sdw_safetensors *st;
    SDW_TRY(sdw_st_open(path, &st));
    return load_part(m, st, path, p, fn, params, role);
}

static sdw_status clip_part(sdw_model *m, const sdw_safetensors *st, const char *path, const sdw_load_params *p)
{
    (void)p;
    char what[4200];
    snprintf(what, sizeof what, "--clip-l %s", path);
    return load_clip(m, st, "", path, what);
}

static sdw_status t5_part(sdw_model *m, const sdw_safetensors *st, const char *path, const sdw_load_params *p)
{
    (void)p;
    return sdw_fail_context(sdw_t5_load(m->be, st, "", &m->t5), "--t5xxl %s", path);
}

static sdw_status vae_part(sdw_model *m, const sdw_safetensors *st, const char *path, const sdw_load_params *p)
{
    char what[4200];
    snprintf(what, sizeof what, "--vae %s", path);
    return load_vae(m, st, "", what, p->with_vae_encoder);
}

static bool has_prefix(const sdw_safetensors *st, const char *prefix)
{
    size_t l = strlen(prefix);
    for (int i = 0; i < st->n_tensors; i++)
        if (!strncmp(st->tensors[i].name, prefix, l)) return true;
    return false;
}

static void set_family(sdw_model *m, const sdw_flux_config *c)
{
    m->info.family = c->guidance_embed ? SDW_FAMILY_FLUX_DEV : SDW_FAMILY_FLUX_SCHNELL;
    m->info.prediction = SDW_PREDICTION_FLOW;
    snprintf(m->info.prediction_source, sizeof m->info.prediction_source, "family (rectified flow)");
    sdw_model_set_defaults(&m->info);
}

static sdw_status check_flux_params(const sdw_load_params *p, const char *path)
{
    if (p->prediction != SDW_PREDICTION_AUTO && p->prediction != SDW_PREDICTION_FLOW)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s: FLUX predicts the flow velocity; --prediction %s does not apply",
                        path, sdw_prediction_name(p->prediction));
    return SDW_OK;
}

/* ---------------------------------------------------------------- memory */

/* Bytes of a layer list's weights read from a mapping (a layer listed under
 * several names comes in a row: counted once). */
static size_t mapped_bytes(const sdw_layer_list *l)
{
    size_t b = 0;
    for (int i = 0; i < l->n; i++)
        if (l->v[i].linear && (i == 0 || l->v[i].linear != l->v[i - 1].linear))
            b += sdw_linear_bytes(l->v[i].linear) - sdw_linear_held_bytes(l->v[i].linear);
    return b;
}

/* Whether the transformer's and the T5's mapped pages take turns in memory:
 * when all the weights would take more than 60% of the RAM (or as asked),
 * said on stderr either way it goes when it matters. */
static void choose_page_out(sdw_model *m, const sdw_load_params *p)
{
    const double gb = 1e9, ram = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    const double total = (double)sdw_model_held_bytes(m);
    const double tr = (double)mapped_bytes(sdw_flux_layers(m->flux)), t5 = (double)mapped_bytes(sdw_t5_layers(m->t5));
    m->page_out = p->page_out > 0 || (p->page_out < 0 && total > 0.6 * ram);
    if (m->page_out)
        SDW_WARN("memory: %.1f GB of FLUX weights, %.1f GB of RAM: the T5 encoder's mapped weights (%.1f GB) are "
                 "paged out after each prompt is encoded, the transformer's (%.1f GB) before it%s",
                 total / gb, ram / gb, t5 / gb, tr / gb,
                 tr + t5 < 0.25 * total ? " (most weights are copies here: --weight-type q8_0 maps fewer)" : "");
    else if (total > 0.6 * ram)
        SDW_WARN("memory: %.1f GB of FLUX weights, %.1f GB of RAM, and paging out is off", total / gb, ram / gb);
}

/* ---------------------------------------------------------------- single file */

static sdw_status load_single(sdw_model *m, const char *path, const sdw_safetensors *st, const char *prefix,
                              const sdw_load_params *p)
{
    sdw_model_info *in = &m->info;
    in->layout = "single-file";
    SDW_TRY(check_flux_params(p, path));
    sdw_flux_config fc;
    SDW_TRY(sdw_fail_context(sdw_flux_config_from_tensors(st, prefix, SDW_NAMES_LDM, NULL, &fc), "%s", path));
    set_family(m, &fc);
    sdw_model_note_dtypes(in, st);
    const char *const tp[] = { prefix }, *const vp[] = { AIO_VAE }, *const cp[] = { AIO_CLIP }, *const t5p[] = { AIO_T5 };
    in->params_unet = *prefix ? sdw_model_params_under(st, tp, 1) : 0;
    if (!*prefix)
        for (int i = 0; i < st->n_tensors; i++) in->params_unet += st->tensors[i].numel;
    bool aio_vae = *prefix && has_prefix(st, AIO_VAE), aio_clip = *prefix && has_prefix(st, AIO_CLIP),
         aio_t5 = *prefix && has_prefix(st, AIO_T5);
    if (aio_vae && !p->vae_path) in->params_vae = sdw_model_params_under(st, vp, 1);
    if (aio_clip && !p->clip_l_path) in->params_text = sdw_model_params_under(st, cp, 1);
    if (aio_t5 && !p->t5_path) in->params_t5 = sdw_model_params_under(st, t5p, 1);

    /* Say exactly which part is missing before loading gigabytes. */
    if (m->be && !p->vae_path && !aio_vae)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s holds the FLUX transformer only: give the autoencoder with --vae "
                        "ae.safetensors", path);
    if (m->be && !p->clip_l_path && !aio_clip)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s holds no CLIP-L text encoder: give it with --clip-l "
                        "clip_l.safetensors", path);
    if (m->be && !p->t5_path && !aio_t5)
        return sdw_fail(SDW_ERR_INVALID_ARG, "%s holds no T5-XXL text encoder: give it with --t5xxl "
                        "t5xxl_fp16.safetensors (or t5xxl_fp8_e4m3fn.safetensors)", path);

    if (p->vae_path) SDW_TRY(part_file(m, p->vae_path, p, vae_part, &in->params_vae, 0));
    if (p->clip_l_path) SDW_TRY(part_file(m, p->clip_l_path, p, clip_part, &in->params_text, 0));
    if (p->t5_path) SDW_TRY(part_file(m, p->t5_path, p, t5_part, &in->params_t5, '5'));
    if (!m->be) return SDW_OK;
    char what[4200];
    snprintf(what, sizeof what, "%s (%s*)", path, AIO_VAE);
    if (!p->vae_path) SDW_TRY(load_vae(m, st, AIO_VAE, what, p->with_vae_encoder));
    snprintf(what, sizeof what, "%s (%s*)", path, AIO_CLIP);
    if (!p->clip_l_path) SDW_TRY(load_clip(m, st, AIO_CLIP, NULL, what));
    if (!p->t5_path) SDW_TRY(sdw_fail_context(sdw_t5_load(m->be, st, AIO_T5, &m->t5), "%s (%s*)", path, AIO_T5));
    SDW_TRY(sdw_fail_context(sdw_flux_load(m->be, st, prefix, SDW_NAMES_LDM, &fc, &m->flux), "%s", path));
    m->text.context_dim = sdw_t5_d_model(m->t5);
    if (m->text.context_dim != fc.context_dim)
        return sdw_fail(SDW_ERR_FORMAT, "the T5 encoder is %d wide but the FLUX transformer expects %d",
                        m->text.context_dim, fc.context_dim);
    if (m->text.pooled_dim != fc.vec_dim)
        return sdw_fail(SDW_ERR_FORMAT, "the CLIP-L pooled output is %d wide but the FLUX transformer expects %d",
                        m->text.pooled_dim, fc.vec_dim);
    return SDW_OK;
}

sdw_status sdw_flux_model_load_single(sdw_model *m, const char *path, sdw_safetensors *st, const char *prefix,
                                      const sdw_load_params *p)
{
    st->keep_mapped = m->be != NULL;
    sdw_status s = load_single(m, path, st, prefix, p);
    if (s == SDW_OK && st->keep_mapped) {
        sdw_model_keep_mapped(m, st, 't', prefix);
        if (!p->t5_path) sdw_model_keep_mapped(m, st, '5', AIO_T5);
        choose_page_out(m, p);
    } else {
        sdw_st_close(st);
    }
    return s;
}

/* ---------------------------------------------------------------- diffusers folder */

static sdw_status folder_part(sdw_model *m, const char *dir, const char *sub, const char *stem, const char *override,
                              const sdw_load_params *p, part_loader fn, int64_t *params, char role)
{
    if (override) return part_file(m, override, p, fn, params, role);
    sdw_safetensors *st;
    SDW_TRY(sdw_model_open_diffusers(dir, sub, stem, &st));
    char path[4200];
    snprintf(path, sizeof path, "%s/%s/%s.safetensors", dir, sub, stem);
    return load_part(m, st, path, p, fn, params, role);
}

static sdw_status diffusers_vae_part(sdw_model *m, const sdw_safetensors *st, const char *path,
                                     const sdw_load_params *p)
{
    char cfg[4200], buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    snprintf(cfg, sizeof cfg, "%s/config.json", dirname(buf));
    cJSON *j;
    SDW_TRY(sdw_json_load_file(cfg, &j));
    sdw_vae_config c;
    sdw_status s = sdw_vae_config_from_diffusers(j, &c);
    cJSON_Delete(j);
    SDW_TRY(sdw_fail_context(s, "%s", cfg));
    if (c.latent_channels != 16)
        return sdw_fail(SDW_ERR_FORMAT, "%s: %d latent channels; FLUX's autoencoder has 16", cfg, c.latent_channels);
    return sdw_fail_context(sdw_vae_load(m->be, st, NULL, &c, p->with_vae_encoder, &m->vae), "%s", path);
}

static sdw_status transformer_config(const sdw_safetensors *st, const cJSON *cfg, void *c)
{
    return sdw_flux_config_from_tensors(st, "", SDW_NAMES_DIFFUSERS, cfg, c);
}

static sdw_status transformer_load(sdw_model *m, const sdw_safetensors *st, const void *c)
{
    return sdw_flux_load(m->be, st, "", SDW_NAMES_DIFFUSERS, c, &m->flux);
}

sdw_status sdw_flux_model_load_diffusers(sdw_model *m, const char *dir, const sdw_load_params *p)
{
    sdw_model_info *in = &m->info;
    in->layout = "diffusers";
    SDW_TRY(check_flux_params(p, dir));
    sdw_flux_config fc;
    SDW_TRY(sdw_model_load_transformer(m, dir, transformer_config, transformer_load, &fc));
    set_family(m, &fc);
    SDW_TRY(folder_part(m, dir, "vae", "diffusion_pytorch_model", p->vae_path, p,
                        p->vae_path ? vae_part : diffusers_vae_part, &in->params_vae, 0));
    SDW_TRY(folder_part(m, dir, "text_encoder", "model", p->clip_l_path, p, clip_part, &in->params_text, 0));
    SDW_TRY(folder_part(m, dir, "text_encoder_2", "model", p->t5_path, p, t5_part, &in->params_t5, '5'));
    if (!m->be) return SDW_OK;
    m->text.context_dim = sdw_t5_d_model(m->t5);
    if (m->text.context_dim != fc.context_dim || m->text.pooled_dim != fc.vec_dim)
        return sdw_fail(SDW_ERR_FORMAT, "%s: the text encoders (%d, %d wide) do not fit the transformer (%d, %d)", dir,
                        m->text.context_dim, m->text.pooled_dim, fc.context_dim, fc.vec_dim);
    choose_page_out(m, p);
    return SDW_OK;
}
