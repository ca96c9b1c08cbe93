/* cmd_encode.c: placeholder until the text encoder lands. */
#include "cli/commands.h"
#include <stdio.h>
int cmd_encode(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "not yet\n"); return 1; }
