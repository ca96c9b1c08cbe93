/* cmd_tokenize.c: `sd-worker tokenize [--pad eos|zero] PROMPT` prints the 77
 * CLIP token ids of PROMPT as a JSON array; `sd-worker tokenize --t5
 * [--max-length N] PROMPT` the N (default 512) T5 ids of FLUX / SD3. */
#include "cli/commands.h"
#include "text/t5_tokenizer.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE "usage: sd-worker tokenize [--pad eos|zero] PROMPT\n" \
              "       sd-worker tokenize --t5 [--max-length N] PROMPT\n"
/* Far above any T5 context in use (512); keeps the buffer small. */
#define T5_MAX_LENGTH_LIMIT 65536

static void print_ids(const int32_t *ids, int n)
{
    putchar('[');
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
    puts("]");
}

static int tokenize_t5(const char *prompt, int max_length)
{
    int32_t *ids = malloc((size_t)max_length * sizeof *ids);
    if (!ids) {
        fprintf(stderr, "sd-worker tokenize: out of memory\n");
        return 1;
    }
    if (sdw_t5_tokenize(prompt, max_length, ids, NULL) != SDW_OK) {
        fprintf(stderr, "sd-worker tokenize: %s\n", sdw_last_error());
        free(ids);
        return 1;
    }
    print_ids(ids, max_length);
    free(ids);
    return 0;
}

static int tokenize_clip(const char *prompt, sdw_pad pad)
{
    int32_t ids[SDW_CLIP_CONTEXT];
    if (sdw_tokenize(prompt, pad, ids, NULL) != SDW_OK) {
        fprintf(stderr, "sd-worker tokenize: %s\n", sdw_last_error());
        return 1;
    }
    print_ids(ids, SDW_CLIP_CONTEXT);
    return 0;
}

int cmd_tokenize(int argc, char **argv)
{
    sdw_pad pad = SDW_PAD_EOS;
    bool t5 = false, pad_given = false, length_given = false;
    long max_length = SDW_T5_MAX_LENGTH_DEV;
    const char *prompt = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pad") && i + 1 < argc) {
            const char *p = argv[++i];
            pad_given = true;
            if (!strcmp(p, "eos")) pad = SDW_PAD_EOS;
            else if (!strcmp(p, "zero")) pad = SDW_PAD_ZERO;
            else {
                fprintf(stderr, "sd-worker tokenize: --pad must be eos or zero, not '%s'\n", p);
                return 2;
            }
        } else if (!strcmp(argv[i], "--t5")) {
            t5 = true;
        } else if (!strcmp(argv[i], "--max-length") && i + 1 < argc) {
            const char *v = argv[++i];
            char *end;
            errno = 0;
            max_length = strtol(v, &end, 10);
            length_given = true;
            if (errno || end == v || *end || max_length < 1 || max_length > T5_MAX_LENGTH_LIMIT) {
                fprintf(stderr, "sd-worker tokenize: --max-length must be 1 to %d, not '%s'\n",
                        T5_MAX_LENGTH_LIMIT, v);
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
        fputs(USAGE, stderr);
        return 2;
    }
    if (t5 ? pad_given : length_given) {
        fprintf(stderr, "sd-worker tokenize: %s\n" USAGE,
                t5 ? "--pad is for the CLIP tokenizer" : "--max-length needs --t5");
        return 2;
    }
    return t5 ? tokenize_t5(prompt, (int)max_length) : tokenize_clip(prompt, pad);
}
