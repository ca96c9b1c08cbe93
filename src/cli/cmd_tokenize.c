/* cmd_tokenize.c: `sd-worker tokenize [--pad eos|zero] PROMPT`: prints the 77
 * CLIP token ids of PROMPT as a JSON array. */
#include "cli/commands.h"
#include <stdio.h>
#include <string.h>

int cmd_tokenize(int argc, char **argv)
{
    sdw_pad pad = SDW_PAD_EOS;
    const char *prompt = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pad") && i + 1 < argc) {
            const char *p = argv[++i];
            if (!strcmp(p, "eos")) pad = SDW_PAD_EOS;
            else if (!strcmp(p, "zero")) pad = SDW_PAD_ZERO;
            else {
                fprintf(stderr, "sd-worker tokenize: --pad must be eos or zero, not '%s'\n", p);
                return 2;
            }
        } else if (!prompt) {
            prompt = argv[i];
        } else {
            fprintf(stderr, "sd-worker tokenize: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!prompt) {
        fprintf(stderr, "usage: sd-worker tokenize [--pad eos|zero] PROMPT\n");
        return 2;
    }
    int32_t ids[SDW_CLIP_CONTEXT];
    if (sdw_tokenize(prompt, pad, ids, NULL) != SDW_OK) {
        fprintf(stderr, "sd-worker tokenize: %s\n", sdw_last_error());
        return 1;
    }
    putchar('[');
    for (int i = 0; i < SDW_CLIP_CONTEXT; i++) printf("%s%d", i ? ", " : "", ids[i]);
    puts("]");
    return 0;
}
