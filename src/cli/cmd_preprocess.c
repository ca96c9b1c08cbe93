/* cmd_preprocess.c: `sd-worker preprocess SPEC IN.png -o OUT.png [--resize WxH
 * [--fit just|crop|fill]]`: runs a ControlNet preprocessor (io/preprocess.h)
 * on an image and writes the control image a generation would use, so a user
 * can look at the edge map before spending a generation on it. Like
 * sd-webui-controlnet, the preprocessor runs first and the result is then
 * fitted to the size (crop by default). */
#include "cli/commands.h"
#include "core/error.h"
#include "io/image.h"
#include "io/preprocess.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE                                                                                                    \
    "usage: sd-worker preprocess SPEC IN.png -o OUT.png [--resize WxH [--fit just|crop|fill]]\n"               \
    "  SPEC: none, canny[:LOW:HIGH] (default 100:200), invert, threshold[:T] (default 127), scribble\n"          \
    "  --resize WxH   fit the result to W x H as A1111's ControlNet resize modes: just (stretch),\n"            \
    "                 crop (scale to cover, centre crop; the default), fill (scale to fit, pad with the\n"       \
    "                 border colour)\n"

static int __attribute__((format(printf, 1, 2))) bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sd-worker preprocess: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

/* "WxH" with both in 1..16384. */
static bool parse_size(const char *s, int *w, int *h)
{
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || (*end != 'x' && *end != 'X')) return false;
    const char *p = end + 1;
    long b = strtol(p, &end, 10);
    if (end == p || *end || a < 1 || b < 1 || a > 16384 || b > 16384) return false;
    *w = (int)a, *h = (int)b;
    return true;
}

int cmd_preprocess(int argc, char **argv)
{
    const char *spec = NULL, *in_path = NULL, *out_path = NULL, *fit_s = NULL;
    int w = 0, h = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        }
        if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) out_path = argv[++i];
        else if (!strcmp(a, "--resize") && v) {
            if (!parse_size(argv[++i], &w, &h)) return bad("--resize must be WxH with sides in 1..16384, not '%s'", v);
        } else if (!strcmp(a, "--fit") && v) fit_s = argv[++i];
        else if (a[0] == '-' && a[1]) return bad("unexpected option '%s' (try --help)", a);
        else if (!spec) spec = a;
        else if (!in_path) in_path = a;
        else return bad("unexpected argument '%s' (try --help)", a);
    }
    if (!spec || !in_path || !out_path) {
        fputs(USAGE, stderr);
        return 2;
    }
    sdw_preprocessor p;
    if (sdw_preprocessor_parse(spec, &p) != SDW_OK) return bad("%s", sdw_last_error());
    sdw_fit_mode mode = SDW_FIT_CROP_AND_RESIZE;
    if (fit_s && !w) return bad("--fit %s needs --resize WxH", fit_s);
    if (fit_s && sdw_fit_mode_parse(fit_s, &mode) != SDW_OK) return bad("%s", sdw_last_error());

    sdw_image in = {0}, pre = {0}, fitted = {0};
    sdw_status s = sdw_image_load(in_path, SDW_IMAGE_DEFAULT_MAX_PIXELS, &in);
    if (s == SDW_OK) s = sdw_preprocess(&p, &in, &pre);
    if (s == SDW_OK && w) s = sdw_control_image_fit(&pre, w, h, mode, &fitted);
    if (s == SDW_OK) s = sdw_image_save(out_path, w ? &fitted : &pre, NULL, 0);
    if (s != SDW_OK) fprintf(stderr, "sd-worker preprocess: %s\n", sdw_last_error());
    else fprintf(stderr, "%s: %s %dx%d -> %s %dx%d\n", out_path, sdw_preprocessor_name(p.kind), in.w, in.h,
                 w ? "fitted" : "same size", w ? w : in.w, w ? h : in.h);
    sdw_image_free(&in);
    sdw_image_free(&pre);
    sdw_image_free(&fitted);
    return s == SDW_OK ? 0 : 1;
}
