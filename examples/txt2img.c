/* txt2img.c: the smallest program that embeds libsdw: load a model, make one
 * image with a progress line, write it as a PNG that carries its generation
 * parameters (as AUTOMATIC1111 writes them). Against an installed library:
 *   cc txt2img.c -o txt2img $(pkg-config --cflags --libs sdw)
 *   ./txt2img model.safetensors "a lighthouse at dusk" out.png [WIDTH HEIGHT STEPS] */
#include <sdw.h>
#include <stdio.h>
#include <stdlib.h>

static int on_progress(void *user, const sdw_gen_progress *p)
{
    (void)user;
    fprintf(stderr, "\rstep %d/%d, %.0f s left ", p->step, p->total, p->eta_s);
    if (p->step == p->total) fputc('\n', stderr);
    return 0;   /* non-zero cancels the run */
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 7) {
        fprintf(stderr, "usage: %s MODEL PROMPT OUT.png [WIDTH HEIGHT STEPS]\n", argv[0]);
        return 2;
    }
    sdw_load_params lp = sdw_load_params_default();
    sdw_model *model;
    if (sdw_model_load(argv[1], &lp, &model) != SDW_OK) {
        fprintf(stderr, "%s\n", sdw_last_error());
        return 1;
    }
    sdw_gen_params p = sdw_gen_params_default();   /* 0 / NULL / -1: the model's defaults */
    p.prompt = argv[2];
    p.seed = 42;
    if (argc == 7) {
        p.width = atoi(argv[4]);
        p.height = atoi(argv[5]);
        p.steps = atoi(argv[6]);
    }
    p.progress = on_progress;
    sdw_gen_result r = sdw_gen_result_init();
    sdw_status s = sdw_generate(model, &p, &r);
    if (s == SDW_OK) s = sdw_image_rgb8_write(argv[3], &r.images[0]->image, r.images[0]->parameters);
    if (s == SDW_OK) printf("%s (seed %llu)\n", argv[3], (unsigned long long)r.images[0]->seed);
    else fprintf(stderr, "%s: %s\n", sdw_status_name(s), sdw_last_error());
    sdw_gen_result_free(&r);
    sdw_model_free(model);
    return s == SDW_OK ? 0 : 1;
}
