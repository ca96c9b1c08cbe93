/* commands.h: one entry point per sd-worker subcommand (argv[0] = its name). */
#ifndef SDW_CLI_COMMANDS_H
#define SDW_CLI_COMMANDS_H
#include "sdw.h"
int cmd_tokenize(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_preprocess(int argc, char **argv);
#endif
