/* cmd_encode.c: `sd-worker encode -m MODEL -p PROMPT`: loads a checkpoint's
 * text encoders (single file or diffusers folder) and encodes a prompt, printing
 * the conditioning's shape, statistics and timing. The demo until the image
 * pipelines land, and a quick check that a checkpoint's text side loads. */
#include "cli/commands.h"
#include "cli/cli_args.h"
#include "backend/backend.h"
#include "core/error.h"
#include "io/sidecar_yaml.h"
#include "models/text_conditioner.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static sdw_status load(sdw_backend *be, const char *model, sdw_text_conditioner *tc)
{
    struct stat sb;
    if (stat(model, &sb) == 0 && S_ISDIR(sb.st_mode)) return sdw_text_conditioner_load_diffusers(be, model, tc);
    sdw_safetensors *st;
    SDW_TRY(sdw_st_open(model, &st));
    char yp[4096];
    sdw_yaml_map yaml = { 0 };
    sdw_status s = SDW_OK;
    if (sdw_yaml_sidecar_path(model, yp, sizeof yp)) s = sdw_yaml_load(yp, &yaml);
    if (s == SDW_OK) s = sdw_text_conditioner_load_single(be, st, &yaml, tc);
    sdw_yaml_free(&yaml);
    sdw_st_close(st);
    return s;
}

static void summarize(const char *label, const float *x, size_t n)
{
    double sum = 0, sq = 0;
    for (size_t i = 0; i < n; i++) {
        sum += x[i];
        sq += (double)x[i] * x[i];
    }
    double mean = sum / (double)n;
    printf("  %-8s mean %+.6f  std %.6f  first [%.5f %.5f %.5f %.5f]\n", label, mean, sqrt(sq / (double)n - mean * mean),
           x[0], x[1], x[2], x[3]);
}

int cmd_encode(int argc, char **argv)
{
    const char *model = NULL, *prompt = NULL, *negative = "";
    sdw_precision prec = SDW_PRECISION_AUTO;
    int clip_skip = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) model = argv[++i];
        else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && v) prompt = argv[++i];
        else if ((!strcmp(a, "-n") || !strcmp(a, "--negative-prompt")) && v) negative = argv[++i];
        else if (!strcmp(a, "--clip-skip") && v) clip_skip = atoi(argv[++i]);
        else if (!strcmp(a, "--precision") && v) {
            if (!cli_parse_precision(argv[++i], &prec)) {
                fprintf(stderr, "sd-worker encode: --precision must be auto, f32 or bf16\n");
                return 2;
            }
        } else {
            fprintf(stderr, "sd-worker encode: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!model || !prompt) {
        fprintf(stderr, "usage: sd-worker encode -m MODEL -p PROMPT [-n NEGATIVE] [--clip-skip N] "
                        "[--precision auto|f32|bf16]\n");
        return 2;
    }
    if (clip_skip < 0 || clip_skip > 12) {
        fprintf(stderr, "sd-worker encode: --clip-skip must be in 1..12\n");
        return 2;
    }
    sdw_backend *be;
    if (sdw_backend_create(prec, &be) != SDW_OK) {
        fprintf(stderr, "sd-worker encode: %s\n", sdw_last_error());
        return 1;
    }
    double t0 = now();
    sdw_text_conditioner tc;
    if (load(be, model, &tc) != SDW_OK) {
        fprintf(stderr, "sd-worker encode: %s\n", sdw_last_error());
        sdw_backend_free(be);
        return 1;
    }
    double t1 = now();
    sdw_text_embedding e[2];
    const char *prompts[2] = { prompt, negative };
    sdw_status s = sdw_text_encode_prompts(be, &tc, prompts, 2, 1, clip_skip, e);
    sdw_text_embedding pos = e[0], neg = e[1];
    if (s != SDW_OK) {
        fprintf(stderr, "sd-worker encode: %s\n", sdw_last_error());
        sdw_text_conditioner_free(&tc);
        sdw_backend_free(be);
        return 1;
    }
    double t2 = now();
    printf("model      %s\nfamily     %s\nprecision  %s (cpu isa %s)\n", model, sdw_family_name(tc.family),
           sdw_precision_name(sdw_backend_precision(be)), sdw_cpu_isa_name());
    printf("encoders   %d layers x %d wide", tc.te1->cfg.layers, tc.te1->cfg.width);
    if (tc.te2) printf(" + %d layers x %d wide", tc.te2->cfg.layers, tc.te2->cfg.width);
    printf("\ncontext    [%d, %d] (%d chunk%s)", pos.n_tokens, tc.context_dim, pos.n_tokens / SDW_CLIP_CONTEXT,
           pos.n_tokens > SDW_CLIP_CONTEXT ? "s" : "");
    if (pos.pooled) printf(", pooled [%d]", tc.pooled_dim);
    printf("\ntime       load %.3f s, encode %.3f s\n", t1 - t0, t2 - t1);
    summarize("prompt", pos.context, (size_t)pos.n_tokens * tc.context_dim);
    summarize("negative", neg.context, (size_t)neg.n_tokens * tc.context_dim);
    sdw_text_embedding_free(&pos);
    sdw_text_embedding_free(&neg);
    sdw_text_conditioner_free(&tc);
    sdw_backend_free(be);
    return 0;
}
