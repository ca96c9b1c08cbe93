/* test_fullsize_e2e.c: the full-size end-to-end references (2 Euler steps,
 * cfg 7, "a photo of a cat", seed 42, at each family's native size; the
 * 9-channel inpaint pipeline for sd15-inpaint) through sdw_pipeline_run:
 * initial latents, the noise and masked-image latents for inpainting, and the
 * latents after each step, in f32 against tests/data/fullsize/<family>.
 * Usage: test_fullsize_e2e FAMILY (checkpoint in $SDW_FULLSIZE_DIR). */
#include "testkit.h"
#include "io/image.h"
#include "pipeline/pipeline.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#define GATE 1e-4

static const char *family;

typedef struct {
    const sdw_safetensors *ref;
    int steps_seen;
} obs;

static void on_tensor(void *user, const char *name, int step, const float *x, int ndim, const int64_t *shape)
{
    obs *o = user;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    char what[128];
    if (!strcmp(name, "initial_latents") || !strcmp(name, "initial_noise")) {
        char key[64];
        snprintf(key, sizeof key, "e2e.%s", name);
        if (!sdw_st_find(o->ref, key)) return;
        float *r = test_load_f32(o->ref, key, NULL);
        snprintf(what, sizeof what, "%s %s", family, name);
        test_check_close(what, x, r, n, GATE);
        free(r);
    } else if (!strcmp(name, "step_latents")) {
        float *r = test_load_f32(o->ref, "e2e.step_latents", NULL);
        snprintf(what, sizeof what, "%s step %d latents", family, step);
        test_check_close(what, x, r + (size_t)o->steps_seen * n, n, GATE);
        o->steps_seen++;
        free(r);
    }
    (void)step;
}

/* The recipe's pattern image, in [0, 1]: R = 255x/(S-1), G = 255y/(S-1), B checkerboard of 64. */
static void pattern(int S, float *img)
{
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            float *p = img + ((size_t)y * S + x) * 3;
            p[0] = (float)((255 * x) / (S - 1)) / 255.0f;
            p[1] = (float)((255 * y) / (S - 1)) / 255.0f;
            p[2] = (((x / 64) + (y / 64)) % 2 == 0) ? 1.0f : 0.0f;
        }
}

static void e2e(void **state)
{
    (void)state;
    const char *dir = getenv("SDW_FULLSIZE_DIR");
    char ckpt[4096], refp[256];
    snprintf(ckpt, sizeof ckpt, "%s/%s-seed1.safetensors", dir && dir[0] ? dir : SDW_FULLSIZE_DEFAULT_DIR, family);
    struct stat sb;
    if (stat(ckpt, &sb) != 0) {
        printf("SKIP %s: %s is absent (tests/fullsize/make_checkpoints.sh writes it)\n", family, ckpt);
        skip();
    }
    snprintf(refp, sizeof refp, "fullsize/%s.safetensors", family);
    sdw_safetensors *ref = test_open_st(refp);
    bool inpaint = !strcmp(family, "sd15-inpaint");
    int S = !strcmp(family, "sdxl") ? 1024 : !strcmp(family, "sd21-v") ? 768 : 512;
    sdw_load_params lp = sdw_load_params_default();
    lp.precision = SDW_PRECISION_F32;
    lp.with_vae_encoder = inpaint;
    if (!strcmp(family, "sd21-v")) lp.prediction = SDW_PREDICTION_V;  /* the recipe file carries no v signal */
    sdw_model *m;
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    if (sdw_model_load(ckpt, &lp, &m) != SDW_OK) fail_msg("%s", sdw_last_error());
    sdw_pipeline_params p;
    sdw_pipeline_params_init(&p);
    p.prompt = "a photo of a cat";
    p.width = p.height = S;
    p.steps = 2;
    p.cfg_scale = 7.0f;
    p.seed = 42;
    p.sampler = SDW_SAMPLER_EULER;
    p.schedule = SDW_SCHEDULE_NORMAL;
    float *img = malloc((size_t)S * S * 3 * sizeof *img), *mask = NULL, *init = NULL;
    if (inpaint) {
        init = malloc((size_t)S * S * 3 * sizeof *init);
        mask = calloc((size_t)S * S, sizeof *mask);
        pattern(S, init);
        for (int y = 128; y < 384; y++)
            for (int x = 160; x < 352; x++) mask[(size_t)y * S + x] = 1.0f;
        p.init_image = init;
        p.mask = mask;
        p.strength = 1.0f;
    }
    obs o = { ref, 0 };
    p.observe = on_tensor;
    p.observe_user = &o;
    if (sdw_pipeline_run(m, &p, img) != SDW_OK) fail_msg("%s", sdw_last_error());
    assert_int_equal(o.steps_seen, 2);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%s: e2e at %dx%d, cpu %.0f s, peak RSS %.2f GB\n", family, S, S, (double)clock() / CLOCKS_PER_SEC - t0,
           (double)ru.ru_maxrss / 1048576.0);
    free(img);
    free(init);
    free(mask);
    sdw_model_free(m);
    sdw_st_close(ref);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_fullsize_e2e sd15|sd15-inpaint|sd21-v|sdxl\n");
        return 2;
    }
    family = argv[1];
    const struct CMUnitTest tests[] = { cmocka_unit_test(e2e) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
