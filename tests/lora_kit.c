/* lora_kit.c: see lora_kit.h. */
#include "lora_kit.h"
#include "backend/backend.h"
#include "models/lora.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

int lora_tmpdir_make(const char *prefix)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/%s-XXXXXX", prefix);
    return mkdtemp(tmpdir) ? 0 : -1;
}

int lora_tmpdir_remove(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

const char *lora_tmpdir(void) { return tmpdir; }

float *lora_file_add(lora_file *f, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                     uint32_t seed)
{
    assert_true(f->n < LORA_FILE_MAX);
    int i = f->n++;
    int64_t *s = f->shapes[i];
    s[0] = d0; s[1] = d1; s[2] = d2; s[3] = d3;
    size_t n = 1;
    for (int k = 0; k < ndim; k++) n *= (size_t)s[k];
    f->data[i] = malloc(n * sizeof(float));
    test_fill(f->data[i], n, seed);
    f->t[i] = (sdw_st_out){ strdup(name), ndim, s, f->data[i] };
    return f->data[i];
}

const char *lora_file_write(lora_file *f, const char *stem)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", tmpdir, stem);
    assert_int_equal(sdw_st_write_f32(path, f->t, f->n), SDW_OK);
    return path;
}

void lora_file_free(lora_file *f)
{
    for (int i = 0; i < f->n; i++) {
        free((char *)f->t[i].name);
        free(f->data[i]);
    }
    f->n = 0;
}

const char *lora_file_with_meta(const char *module, int rows, int cols, const char *base)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/meta_%s.safetensors", tmpdir, base);
    char header[1024];   /* down [2, cols], then up [rows, 2], zeros */
    int n = snprintf(header, sizeof header,
                     "{\"__metadata__\":{\"ss_base_model_version\":\"%s\"},"
                     "\"%s.lora_down.weight\":{\"dtype\":\"F32\",\"shape\":[2,%d],\"data_offsets\":[0,%zu]},"
                     "\"%s.lora_up.weight\":{\"dtype\":\"F32\",\"shape\":[%d,2],\"data_offsets\":[%zu,%zu]}}",
                     base, module, cols, (size_t)2 * cols * 4, module, rows, (size_t)2 * cols * 4,
                     (size_t)2 * cols * 4 + (size_t)rows * 2 * 4);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t len = (uint64_t)n;
    fwrite(&len, 8, 1, f);
    fwrite(header, 1, (size_t)n, f);
    size_t nf = (size_t)2 * cols + (size_t)rows * 2;
    float *z = calloc(nf, sizeof *z);
    fwrite(z, sizeof *z, nf, f);
    free(z);
    fclose(f);
    return path;
}

const sdw_named_layer *lora_find_layer(const sdw_layer_list *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].name, name)) return &l->v[i];
    fail_msg("no layer %s", name);
    return NULL;
}

float *lora_layer_weights(const sdw_model *m, const sdw_named_layer *l)
{
    int out, in, kh = 1, kw = 1;
    if (l->linear) {
        out = sdw_linear_out(l->linear);
        in = sdw_linear_in(l->linear);
    } else {
        sdw_conv2d_shape(l->conv, &in, &out, &kh, &kw);
    }
    float *w = malloc((size_t)out * in * kh * kw * sizeof *w);
    sdw_status s = l->linear ? sdw_linear_get_weights(m->be, l->linear, w) : sdw_conv2d_get_weights(m->be, l->conv, w);
    assert_int_equal(s, SDW_OK);
    return w;
}

const void *lora_layer_stored(const sdw_named_layer *l, size_t *bytes)
{
    return l->linear ? sdw_linear_stored(l->linear, bytes) : sdw_conv2d_stored(l->conv, bytes);
}

void *lora_layer_stored_copy(const sdw_named_layer *l, size_t *bytes)
{
    const void *p = lora_layer_stored(l, bytes);
    void *c = malloc(*bytes);
    memcpy(c, p, *bytes);
    return c;
}

sdw_status lora_load_flux_tiny(const char *file, sdw_precision prec, sdw_weight_type wt, sdw_model **m)
{
    char path[1024], vae[1024], clip[1024], t5[1024];
    snprintf(path, sizeof path, "%s", test_data_path(file));
    snprintf(vae, sizeof vae, "%s", test_data_path("flux/models/flux-tiny-common/ae.safetensors"));
    snprintf(clip, sizeof clip, "%s", test_data_path("flux/models/flux-tiny-common/clip_l.safetensors"));
    snprintf(t5, sizeof t5, "%s", test_data_path("flux/models/flux-tiny-common/t5xxl.safetensors"));
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = prec;
    lp.vae_path = vae;
    lp.clip_l_path = clip;
    lp.t5_path = t5;
    lp.weight_type = wt;
    return sdw_model_load(path, &lp, m);
}

sdw_model *lora_load_sd1_tiny(void)
{
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    sdw_model *m;
    if (sdw_model_load(test_data_path("models/sd1-tiny/sd1-tiny.safetensors"), &lp, &m) != SDW_OK)
        fail_msg("%s", sdw_last_error());
    return m;
}

void lora_expect_refusal(sdw_model *m, const char *path, const char *must_say1, const char *must_say2)
{
    sdw_lora_spec spec = { path, 1.0f, 1.0f };
    assert_int_not_equal(sdw_model_set_loras(m, &spec, 1, NULL), SDW_OK);
    printf("  %s\n", sdw_last_error());
    if (!strstr(sdw_last_error(), must_say1) || !strstr(sdw_last_error(), must_say2))
        fail_msg("the refusal should say \"%s\" and \"%s\"", must_say1, must_say2);
}
