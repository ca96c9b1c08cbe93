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

const char *cli_parse_control(const char *v, cli_control_spec *out)
{
    char buf[2100], *part[6];
    int n = 0;
    if (strlen(v) >= sizeof buf) return "is too long";
    snprintf(buf, sizeof buf, "%s", v);
    for (char *p = buf; n < 6;) {
        part[n++] = p;
        char *colon = strchr(p, ':');
        if (!colon) break;
        *colon = 0;
        p = colon + 1;
    }
    if (n != 2 && n != 3 && n != 5) return "must be FILE:IMAGE[:SCALE[:START:END]]";
    if (!part[0][0] || !part[1][0]) return "needs a ControlNet file and an image";
    if (strlen(part[0]) >= sizeof out->file || strlen(part[1]) >= sizeof out->image) return "has a path too long";
    snprintf(out->file, sizeof out->file, "%s", part[0]);
    snprintf(out->image, sizeof out->image, "%s", part[1]);
    out->scale = 1.0f;
    out->start = 0.0f;
    out->end = 1.0f;
    if (n >= 3 && !cli_parse_float(part[2], 0, 2, &out->scale)) return "SCALE must be in 0..2";
    if (n == 5 && (!cli_parse_float(part[3], 0, 1, &out->start) || !cli_parse_float(part[4], 0, 1, &out->end) ||
                   !(out->start < out->end)))
        return "START and END must satisfy 0 <= START < END <= 1";
    return NULL;
}

bool cli_parse_control_mode(const char *s, sdw_control_mode *out)
{
    if (!strcmp(s, "balanced")) *out = SDW_CONTROL_BALANCED;
    else if (!strcmp(s, "prompt")) *out = SDW_CONTROL_PROMPT;
    else if (!strcmp(s, "controlnet")) *out = SDW_CONTROL_CONTROLNET;
    else return false;
    return true;
}

bool cli_parse_control_resize(const char *s, sdw_fit_mode *out)
{
    if (!strcmp(s, "just")) {
        *out = SDW_FIT_JUST_RESIZE;
        return true;
    }
    return sdw_fit_mode_parse(s, out) == SDW_OK;
}

void cli_log_to_stderr(sdw_log_level level, const char *msg, void *user)
{
    (void)user;
    static const char *const names[] = { "debug", "info", "warn", "error" };
    fprintf(stderr, "[%s] %s\n", names[level], msg);
}
