/* fullsize_kit.c: see fullsize_kit.h. */
#include "fullsize_kit.h"
#include "core/half.h"
#include "io/quant.h"
#include "pipeline/pipeline.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *list_path(const char *name)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/../../tools/fullsize/%s.tensors.txt", SDW_TEST_DATA, name);
    return buf;
}

void fs_kit_load_list(const char *name, fs_list *l)
{
    char err[512];
    if (fs_list_load(list_path(name), l, err, sizeof err)) fail_msg("%s", err);
}

const fs_tensor *fs_kit_find(const fs_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->t[i].name, name)) return &l->t[i];
    return NULL;
}

int fs_kit_put(void *user, const void *p, size_t n)
{
    return fwrite(p, 1, n, ((fs_kit_file_sink *)user)->f) == n ? 0 : -1;
}

void fs_kit_write_one(const char *dir, const char *list, fs_format f, const char *file, char *path, size_t n)
{
    fs_list l;
    fs_kit_load_list(list, &l);
    snprintf(path, n, "%s/%s", dir, file);
    fs_kit_file_sink fsk = {fopen(path, "wb")};
    assert_non_null(fsk.f);
    fs_sink s = {fs_kit_put, NULL, NULL, &fsk};
    uint64_t total = 0;
    char err[256];
    if (fs_write(&l, f, 1, &s, &total, err, sizeof err)) fail_msg("%s: %s", file, err);
    assert_int_equal(fclose(fsk.f), 0);
    fs_list_free(&l);
}

void fs_kit_check_file(const char *list, fs_format f, const char *path, const char *arch, int seen[5])
{
    fs_list l;
    fs_kit_load_list(list, &l);
    sdw_safetensors *st;
    if (sdw_st_open(path, &st) != SDW_OK) fail_msg("%s", sdw_last_error());
    assert_int_equal(st->n_tensors, l.n);
    if (f == FS_FORMAT_GGUF_Q8_0) assert_string_equal(sdw_st_meta_get(st, "general.architecture"), arch);
    memset(seen, 0, 5 * sizeof *seen);
    for (size_t i = 0; i < l.n; i++) {
        const fs_tensor *t = &l.t[i];
        const sdw_st_tensor *g = sdw_st_find(st, t->name);
        assert_non_null(g);
        assert_int_equal(g->ndim, t->ndim);
        for (int d = 0; d < t->ndim; d++) assert_true((uint64_t)g->shape[d] == t->shape[d]);
        fs_dtype want = fs_stored_type(&l, t, f);
        static const sdw_st_dtype as_st[] = {SDW_ST_F16, SDW_ST_BF16, SDW_ST_F32, SDW_ST_F8_E4M3, SDW_ST_Q8_0};
        assert_int_equal(g->dtype, as_st[want]);
        seen[want]++;
        size_t n = (size_t)t->numel;
        float *v = malloc(n * sizeof *v), *got = malloc(n * sizeof *got);
        assert_true(v && got);
        fs_fill_f32(t, 1, 0, n, v);
        for (size_t k = 0; k < n; k++) {
            if (t->dtype == FS_BF16) v[k] = fs_bf16_to_f32(fs_f32_to_bf16(v[k]));
            if (t->dtype == FS_F16) v[k] = fs_f16_to_f32(fs_f32_to_f16(v[k]));
            if (want == FS_F8_E4M3) v[k] = sdw_f8_e4m3_to_f32(fs_f32_to_f8e4m3(v[k]));
        }
        if (want == FS_Q8_0)
            for (size_t k = 0; k < n; k += 32) {
                uint8_t b[34];
                fs_q8_0_block(v + k, b);
                assert_true(sdw_dequantize(SDW_ST_Q8_0, b, v + k, 32));
            }
        assert_int_equal(sdw_st_read_f32(st, g, got), SDW_OK);
        if (memcmp(v, got, n * sizeof *v)) fail_msg("%s: %s differs from the recipe", path, t->name);
        free(v);
        free(got);
    }
    sdw_st_close(st);
    fs_list_free(&l);
}

void fs_kit_on_tap(void *user, const char *name, const float *x, int rows, int cols)
{
    fs_kit_act_stats *a = user;
    double ss = 0;
    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        if (!isfinite(x[i])) {
            if (!a->bad++) printf("  not finite: %s[%zu]\n", name, i);
            continue;
        }
        ss += (double)x[i] * x[i];
        if (fabs(x[i]) > a->max_abs) a->max_abs = fabs(x[i]);
    }
    if (rows && cols) a->last_rms = sqrt(ss / ((double)rows * cols));
    if (!strcmp(name, a->show[0]) || !strcmp(name, a->show[1])) printf("  %-22s rms %.4f\n", name, a->last_rms);
    a->taps++;
}

double fs_kit_one_step(sdw_model *m, const char *what, float cfg)
{
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = "a photo of a cat";
    p.width = p.height = 64;
    p.steps = 1;
    p.cfg_scale = cfg;
    p.sampler = SDW_SAMPLER_EULER;
    sdw_schedule_parse(m->info.default_scheduler, &p.schedule);
    float img[64 * 64 * 3];
    if (sdw_pipeline_run(m, &p, img) != SDW_OK) fail_msg("%s: %s", what, sdw_last_error());
    double mean = 0;
    for (int i = 0; i < 64 * 64 * 3; i++) {
        assert_true(isfinite(img[i]));
        mean += img[i];
    }
    return mean / (64 * 64 * 3);
}
