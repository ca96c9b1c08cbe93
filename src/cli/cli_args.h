/* cli_args.h: what every subcommand parses the same way: numbers with
 * ranges, --precision, --prediction, and the stderr log sink. */
#ifndef SDW_CLI_ARGS_H
#define SDW_CLI_ARGS_H
#include "sdw.h"

/* Whole string must be a number within [lo, hi]. */
bool cli_parse_int(const char *s, long long lo, long long hi, long long *out);
bool cli_parse_float(const char *s, float lo, float hi, float *out);
/* auto | f32 | bf16 */
bool cli_parse_precision(const char *s, sdw_precision *out);
/* auto | eps | v */
bool cli_parse_prediction(const char *s, sdw_prediction *out);
/* Library log messages as "[level] message" on stderr. */
void cli_log_to_stderr(sdw_log_level level, const char *msg, void *user);
#endif
