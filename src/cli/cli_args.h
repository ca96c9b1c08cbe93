/* cli_args.h: what every subcommand parses the same way: numbers with
 * ranges, --precision, --prediction, ControlNet options, and the stderr log
 * sink. */
#ifndef SDW_CLI_ARGS_H
#define SDW_CLI_ARGS_H
#include "sdw.h"
#include "io/preprocess.h"
#include "pipeline/pipeline.h"

/* Whole string must be a number within [lo, hi]. */
bool cli_parse_int(const char *s, long long lo, long long hi, long long *out);
bool cli_parse_float(const char *s, float lo, float hi, float *out);
/* auto | f32 | bf16 */
bool cli_parse_precision(const char *s, sdw_precision *out);
/* auto | eps | v */
bool cli_parse_prediction(const char *s, sdw_prediction *out);
/* --control FILE:IMAGE[:SCALE[:START:END]] (no ':' inside the paths). */
typedef struct {
    char file[1024], image[1024];
    float scale, start, end;     /* 1, 0, 1 when not given */
} cli_control_spec;
/* NULL when v parses (scale in 0..2, 0 <= start < end <= 1), else what is wrong. */
const char *cli_parse_control(const char *v, cli_control_spec *out);
/* balanced | prompt | controlnet */
bool cli_parse_control_mode(const char *s, sdw_control_mode *out);
/* just | crop | fill (and what sdw_fit_mode_parse takes) */
bool cli_parse_control_resize(const char *s, sdw_fit_mode *out);
/* Library log messages as "[level] message" on stderr. */
void cli_log_to_stderr(sdw_log_level level, const char *msg, void *user);
#endif
