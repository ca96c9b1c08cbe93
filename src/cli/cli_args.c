/* cli_args.c: see cli_args.h. */
#include "cli/cli_args.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cli_parse_int(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_float(const char *s, float lo, float hi, float *out)
{
    char *end;
    float v = strtof(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

bool cli_parse_precision(const char *s, sdw_precision *out)
{
    if (!strcmp(s, "auto")) *out = SDW_PRECISION_AUTO;
    else if (!strcmp(s, "f32")) *out = SDW_PRECISION_F32;
    else if (!strcmp(s, "bf16")) *out = SDW_PRECISION_BF16;
    else return false;
    return true;
}

bool cli_parse_prediction(const char *s, sdw_prediction *out)
{
    if (!strcmp(s, "auto")) *out = SDW_PREDICTION_AUTO;
    else if (!strcmp(s, "eps")) *out = SDW_PREDICTION_EPS;
    else if (!strcmp(s, "v")) *out = SDW_PREDICTION_V;
    else return false;
    return true;
}

void cli_log_to_stderr(sdw_log_level level, const char *msg, void *user)
{
    (void)user;
    static const char *const names[] = { "debug", "info", "warn", "error" };
    fprintf(stderr, "[%s] %s\n", names[level], msg);
}
