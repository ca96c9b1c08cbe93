/* main.c: the sd-worker command line: dispatches to one subcommand. */
#include "cli/commands.h"
#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "sd-worker %s: Stable Diffusion inference worker\n"
            "usage:\n"
            "  sd-worker generate -m MODEL -p PROMPT [-o OUT.png] ...   txt2img, img2img (-i), inpaint (--mask)\n"
            "                                              (sd-worker generate --help lists every option)\n"
            "  sd-worker serve -m MODEL [--host 127.0.0.1] [--port 7860] ...   the HTTP server: job API with SSE,\n"
            "                                              A1111 and OpenAI dialects (sd-worker serve --help)\n"
            "  sd-worker tokenize [--pad eos|zero] PROMPT   CLIP token ids as a JSON array\n"
            "  sd-worker tokenize --t5 [--max-length 512] PROMPT   T5 token ids (FLUX, SD3) as a JSON array\n"
            "  sd-worker encode -m MODEL -p PROMPT [--precision auto|f32|bf16] [--clip-skip N]\n"
            "                                              run the text encoder(s), print a summary\n"
            "  sd-worker info [--json] [--prediction auto|eps|v] MODEL\n"
            "                                              family, prediction, components, parameters\n"
            "  sd-worker bench [--family sd15|sd15-inpaint|sd2|sdxl | -m MODEL] [-W 512 -H 512] [--steps 20]\n"
            "      [--cfg-scale 7] [--precision auto|f32|bf16] [--repeat 3] [--threads N] [--json]\n"
            "                                              stage timings and TFLOP/s against the measured peak\n"
            "  sd-worker preprocess SPEC IN.png -o OUT.png [--resize WxH --fit just|crop|fill]\n"
            "                                              a ControlNet control image: SPEC none, canny[:LOW:HIGH],\n"
            "                                              invert, threshold[:T], scribble\n"
            "  sd-worker version\n",
            SDW_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "encode")) return cmd_encode(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "preprocess")) return cmd_preprocess(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("sd-worker %s (cpu isa %s)\n", SDW_VERSION, sdw_cpu_isa_name());
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "sd-worker: unknown command '%s' (try sd-worker help)\n", cmd);
    return 2;
}
