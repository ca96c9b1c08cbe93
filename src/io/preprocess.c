/* preprocess.c: the model-free ControlNet preprocessors (none, canny, invert,
 * threshold, scribble) and the fitting of a control image to the generation
 * size, both as AUTOMATIC1111's sd-webui-controlnet computes them
 * (scripts/processor.py for the preprocessors, detectmap_proc in
 * scripts/controlnet.py for the resize modes), so that a request the server
 * takes in A1111's dialect gives the control image A1111 would have used.
 * The Canny itself is in canny.c. Everything works on 8-bit images and first
 * brings them to RGB the way sd-webui-controlnet's HWC3 does: gray
 * replicated, RGBA composited over white. */
#include "io/preprocess.h"
#include "core/error.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Names ---- */

/* Our names first, then sd-webui-controlnet's module names that mean the same
 * (its "invert" UI label, and scribble_thr, the processor function behind the
 * ControlNet 1.0 "scribble" module). Matched case-insensitively. */
static const struct {
    const char *name;
    sdw_preprocessor_kind kind;
} NAMES[] = {
    {"none", SDW_PRE_NONE},
    {"canny", SDW_PRE_CANNY},
    {"invert", SDW_PRE_INVERT},
    {"threshold", SDW_PRE_THRESHOLD},
    {"scribble", SDW_PRE_SCRIBBLE},
    {"invert (from white bg & black line)", SDW_PRE_INVERT},
    {"scribble_thr", SDW_PRE_SCRIBBLE},
};

#define PRE_LIST \
    "none, canny[:LOW:HIGH], invert, threshold[:T], scribble; A1111's \"invert (from white bg & black line)\" " \
    "and \"scribble_thr\" are accepted too"

const char *sdw_preprocessor_name(sdw_preprocessor_kind k)
{
    switch (k) {
    case SDW_PRE_NONE: return "none";
    case SDW_PRE_CANNY: return "canny";
    case SDW_PRE_INVERT: return "invert";
    case SDW_PRE_THRESHOLD: return "threshold";
    case SDW_PRE_SCRIBBLE: return "scribble";
    }
    return "unknown";
}

/* One ":"-separated number in 0..255; *s advances past it. */
static bool parse_arg(const char **s, double *v)
{
    if (**s != ':') return false;
    const char *p = *s + 1;
    char *end;
    *v = strtod(p, &end);
    if (end == p || (*end != ':' && *end != '\0') || !isfinite(*v) || *v < 0 || *v > 255) return false;
    *s = end;
    return true;
}

sdw_status sdw_preprocessor_parse(const char *spec, sdw_preprocessor *out)
{
    *out = (sdw_preprocessor){SDW_PRE_NONE, 0, 0};
    if (!spec) return sdw_fail(SDW_ERR_INVALID_ARG, "no preprocessor given (valid: " PRE_LIST ")");
    size_t n = strcspn(spec, ":");
    const char *args = spec + n;
    int kind = -1;
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (strlen(NAMES[i].name) == n && !strncasecmp(spec, NAMES[i].name, n)) kind = (int)NAMES[i].kind;
    if (kind < 0) return sdw_fail(SDW_ERR_INVALID_ARG, "unknown preprocessor '%s' (valid: " PRE_LIST ")", spec);
    out->kind = (sdw_preprocessor_kind)kind;
    bool ok = true;
    if (kind == SDW_PRE_CANNY) {
        out->a = 100, out->b = 200;
        if (*args) {
            double lo = 0, hi = 0;
            ok = parse_arg(&args, &lo) && parse_arg(&args, &hi) && !*args;
            out->a = (float)lo, out->b = (float)hi;
        }
    } else if (kind == SDW_PRE_THRESHOLD) {
        out->a = 127;
        if (*args) {
            double t = 0;
            ok = parse_arg(&args, &t) && !*args;
            out->a = (float)t;
        }
    } else ok = !*args;
    if (!ok)
        return sdw_fail(SDW_ERR_INVALID_ARG,
                        "bad preprocessor '%s': canny takes :LOW:HIGH, threshold :T (numbers in 0..255), the others "
                        "nothing (valid: " PRE_LIST ")", spec);
    return SDW_OK;
}

/* ---- The preprocessors ---- */

/* sd-webui-controlnet's HWC3: gray replicated, RGB kept, RGBA composited over
 * white in float32 (color * a + 255 * (1 - a), a = alpha / 255) and truncated,
 * as numpy's astype(uint8) does. */
static sdw_status to_rgb(const sdw_image *in, sdw_image *out)
{
    if (!in || !in->data || in->w <= 0 || in->h <= 0)
        return sdw_fail(SDW_ERR_INVALID_ARG, "control image: empty image");
    if (in->channels != 1 && in->channels != 3 && in->channels != 4)
        return sdw_fail(SDW_ERR_INVALID_ARG, "control image: %d channels (1, 3 or 4 expected)", in->channels);
    SDW_TRY(sdw_image_alloc(out, in->w, in->h, 3));
    size_t np = (size_t)in->w * (size_t)in->h;
    for (size_t i = 0; i < np; i++) {
        const uint8_t *s = in->data + i * (size_t)in->channels;
        uint8_t *d = out->data + i * 3;
        if (in->channels == 1) d[0] = d[1] = d[2] = s[0];
        else if (in->channels == 3) memcpy(d, s, 3);
        else {
            float a = (float)s[3] / 255.0f, bg = 255.0f * (1.0f - a);
            for (int c = 0; c < 3; c++) {
                float v = (float)s[c] * a;
                v = v + bg;
                d[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    return SDW_OK;
}

static uint8_t min3(const uint8_t *p)
{
    uint8_t m = p[0] < p[1] ? p[0] : p[1];
    return m < p[2] ? m : p[2];
}

static sdw_status canny_rgb(const sdw_preprocessor *p, const sdw_image *in, sdw_image *out)
{
    sdw_image rgb = {0};
    const sdw_image *src = in;
    /* Canny of a gray image equals that of its three-channel copy (equal
     * magnitudes, the first channel wins), so gray runs as one channel. */
    if (in->channels == 4) {
        SDW_TRY(to_rgb(in, &rgb));
        src = &rgb;
    }
    size_t np = (size_t)in->w * (size_t)in->h;
    sdw_status s = sdw_image_alloc(out, in->w, in->h, 3);
    uint8_t *edges = s == SDW_OK ? malloc(np) : NULL;
    if (s == SDW_OK && !edges) s = sdw_fail(SDW_ERR_NOMEM, "canny: out of memory");
    if (s == SDW_OK) s = sdw_canny(src->data, src->w, src->h, src->channels, p->a, p->b, edges);
    if (s == SDW_OK)
        for (size_t i = 0; i < np; i++) out->data[3 * i] = out->data[3 * i + 1] = out->data[3 * i + 2] = edges[i];
    free(edges);
    sdw_image_free(&rgb);
    if (s != SDW_OK) sdw_image_free(out);
    return s;
}

sdw_status sdw_preprocess(const sdw_preprocessor *p, const sdw_image *in, sdw_image *out)
{
    *out = (sdw_image){0};
    if (!in || !in->data || in->w <= 0 || in->h <= 0)
        return sdw_fail(SDW_ERR_INVALID_ARG, "preprocess %s: empty image", sdw_preprocessor_name(p->kind));
    if (p->kind == SDW_PRE_CANNY) return canny_rgb(p, in, out);
    SDW_TRY(to_rgb(in, out));
    size_t np = (size_t)in->w * (size_t)in->h;
    uint8_t *d = out->data;
    switch (p->kind) {
    case SDW_PRE_NONE:
    case SDW_PRE_CANNY: break;
    case SDW_PRE_INVERT:
        for (size_t i = 0; i < 3 * np; i++) d[i] = (uint8_t)(255 - d[i]);
        break;
    case SDW_PRE_THRESHOLD: /* processor.py threshold(): min over R, G, B > thr_a */
        for (size_t i = 0; i < np; i++) d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = (double)min3(d + 3 * i) > p->a ? 255 : 0;
        break;
    case SDW_PRE_SCRIBBLE: /* processor.py scribble_thr(): min over R, G, B < 127 */
        for (size_t i = 0; i < np; i++) d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = min3(d + 3 * i) < 127 ? 255 : 0;
        break;
    default:
        sdw_image_free(out);
        return sdw_fail(SDW_ERR_INVALID_ARG, "preprocess: unknown preprocessor %d", (int)p->kind);
    }
    return SDW_OK;
}

/* ---- Fit modes ---- */

sdw_status sdw_fit_mode_parse(const char *s, sdw_fit_mode *out)
{
    static const struct {
        const char *name;
        sdw_fit_mode mode;
    } modes[] = {
        {"Just Resize", SDW_FIT_JUST_RESIZE}, {"Crop and Resize", SDW_FIT_CROP_AND_RESIZE},
        {"Resize and Fill", SDW_FIT_RESIZE_AND_FILL}, {"0", SDW_FIT_JUST_RESIZE}, {"1", SDW_FIT_CROP_AND_RESIZE},
        {"2", SDW_FIT_RESIZE_AND_FILL},
        /* A1111's 3, "Just Resize (Latent upscale)", is a plain resize for ControlNet too. */
        {"3", SDW_FIT_JUST_RESIZE}, {"just_resize", SDW_FIT_JUST_RESIZE}, {"just", SDW_FIT_JUST_RESIZE},
        {"crop", SDW_FIT_CROP_AND_RESIZE}, {"fill", SDW_FIT_RESIZE_AND_FILL},
        /* sd-webui-controlnet's older names, still accepted by its API */
        {"Inner Fit (Scale to Fit)", SDW_FIT_CROP_AND_RESIZE}, {"Scale to Fit (Inner Fit)", SDW_FIT_CROP_AND_RESIZE},
        {"Outer Fit (Shrink to Fit)", SDW_FIT_RESIZE_AND_FILL}, {"Envelope (Outer Fit)", SDW_FIT_RESIZE_AND_FILL},
    };
    *out = SDW_FIT_CROP_AND_RESIZE;
    for (size_t i = 0; s && i < sizeof modes / sizeof modes[0]; i++)
        if (!strcasecmp(s, modes[i].name)) {
            *out = modes[i].mode;
            return SDW_OK;
        }
    return sdw_fail(SDW_ERR_INVALID_ARG,
                    "unknown resize mode '%s' (valid: \"Just Resize\", \"Crop and Resize\", \"Resize and Fill\", "
                    "0, 1, 2, just_resize, crop, fill)", s ? s : "(null)");
}

/* Distinct RGB colours of img, counted up to cap (an open-addressing set). */
static int count_colors(const sdw_image *img, int cap)
{
    enum { SLOTS = 1024 }; /* > 2 * cap for the cap used here */
    uint32_t set[SLOTS] = {0};
    int n = 0;
    size_t np = (size_t)img->w * (size_t)img->h;
    for (size_t i = 0; i < np && n < cap; i++) {
        const uint8_t *p = img->data + 3 * i;
        uint32_t key = ((uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]) + 1; /* 0 marks an empty slot */
        uint32_t h = (key * 2654435761u) % SLOTS;
        while (set[h] && set[h] != key) h = (h + 1) % SLOTS;
        if (!set[h]) set[h] = key, n++;
    }
    return n;
}

/* OpenCV's INTER_NEAREST: source index floor(x * src / dst), no half-pixel
 * offset (PIL's NEAREST samples pixel centres and picks other pixels). */
static sdw_status nearest_cv(const sdw_image *in, int w, int h, sdw_image *out)
{
    SDW_TRY(sdw_image_alloc(out, w, h, 3));
    double ifx = 1.0 / ((double)w / in->w), ify = 1.0 / ((double)h / in->h);
    for (int y = 0; y < h; y++) {
        int sy = (int)floor(y * ify);
        sy = sy < in->h - 1 ? sy : in->h - 1;
        for (int x = 0; x < w; x++) {
            int sx = (int)floor(x * ifx);
            sx = sx < in->w - 1 ? sx : in->w - 1;
            memcpy(out->data + ((size_t)y * w + x) * 3, in->data + ((size_t)sy * in->w + sx) * 3, 3);
        }
    }
    return SDW_OK;
}

/* OpenCV's THRESH_OTSU threshold of a gray plane (getThreshVal_Otsu_8u). */
static int otsu(const uint8_t *g, size_t n)
{
    double hist[256] = {0};
    for (size_t i = 0; i < n; i++) hist[g[i]]++;
    double scale = 1.0 / (double)n, mu = 0;
    for (int i = 0; i < 256; i++) mu += i * hist[i];
    mu *= scale;
    double mu1 = 0, q1 = 0, max_sigma = 0;
    int max_val = 0;
    for (int i = 0; i < 256; i++) {
        double p_i = hist[i] * scale;
        mu1 *= q1;
        q1 += p_i;
        double q2 = 1.0 - q1;
        if ((q1 < q2 ? q1 : q2) < FLT_EPSILON || (q1 > q2 ? q1 : q2) > 1.0 - FLT_EPSILON) continue;
        mu1 = (mu1 + i * p_i) / q1;
        double mu2 = (mu - q1 * mu1) / q2;
        double sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
        if (sigma > max_sigma) max_sigma = sigma, max_val = i;
    }
    return max_val;
}

/* A 3x3 erosion (want_max false) or dilation of an RGB map, per channel;
 * pixels outside the image never count, as with OpenCV's default border. */
static void morph3(const uint8_t *src, int w, int h, bool want_max, uint8_t *dst)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                int v = want_max ? 0 : 255;
                for (int yy = y - 1; yy <= y + 1; yy++)
                    for (int xx = x - 1; xx <= x + 1; xx++) {
                        if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                        int s = src[((size_t)yy * w + xx) * 3 + c];
                        v = want_max ? (s > v ? s : v) : (s < v ? s : v);
                    }
                dst[((size_t)y * w + x) * 3 + c] = (uint8_t)v;
            }
}

/* Whether a binary map is mostly one-pixel lines: a 3x3 opening (erode, then
 * dilate) lowers more than half as many values as there are bright ones. */
static sdw_status one_pixel_edges(const sdw_image *x, bool *yes)
{
    size_t n = (size_t)x->w * (size_t)x->h * 3;
    uint8_t *e = malloc(n), *o = malloc(n);
    if (!e || !o) {
        free(e), free(o);
        return sdw_fail(SDW_ERR_NOMEM, "control image: out of memory");
    }
    morph3(x->data, x->w, x->h, false, e);
    morph3(e, x->w, x->h, true, o);
    size_t thin = 0, bright = 0;
    for (size_t i = 0; i < n; i++) thin += o[i] < x->data[i], bright += x->data[i] > 127;
    free(e), free(o);
    *yes = thin * 2 > bright;
    return SDW_OK;
}

/* nake_nms: keep a value only where it is the maximum of its 3-pixel line
 * along at least one of the four directions; zero elsewhere. */
static void nake_nms(const uint8_t *x, int w, int h, uint8_t *y)
{
    static const int dirs[4][2] = {{1, 0}, {0, 1}, {1, 1}, {-1, 1}};
    for (int r = 0; r < h; r++)
        for (int c = 0; c < w; c++) {
            int v = x[(size_t)r * w + c];
            y[(size_t)r * w + c] = 0;
            for (int d = 0; d < 4; d++) {
                int m = v;
                for (int s = -1; s <= 1; s += 2) {
                    int rr = r + s * dirs[d][1], cc = c + s * dirs[d][0];
                    if (rr >= 0 && rr < h && cc >= 0 && cc < w && x[(size_t)rr * w + cc] > m) m = x[(size_t)rr * w + cc];
                }
                if (m == v) y[(size_t)r * w + c] = (uint8_t)v;
            }
        }
}

/* lvmin_thin's hit-or-miss kernels (1 = set, -1 = clear, 0 = either), each
 * followed by its 90, 180 and 270 degree turns as np.rot90 gives them. */
static const int8_t THIN_RAW[2][3][3] = {{{-1, -1, -1}, {0, 1, 0}, {1, 1, 1}}, {{0, -1, -1}, {1, 1, -1}, {0, 1, 0}}};
static const int8_t PRUNE_RAW[2][3][3] = {{{-1, -1, -1}, {-1, 1, -1}, {0, 0, -1}}, {{-1, -1, -1}, {-1, 1, -1}, {-1, 0, 0}}};

/* np.rot90(k, turns): one turn maps out[i][j] = in[j][2 - i]. */
static void rot90(const int8_t in[3][3], int turns, int8_t out[3][3])
{
    int8_t a[3][3];
    memcpy(a, in, 9);
    for (int t = 0; t < turns; t++) {
        int8_t b[3][3];
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) b[i][j] = a[j][2 - i];
        memcpy(a, b, 9);
    }
    memcpy(out, a, 9);
}

/* One cv2.MORPH_HITMISS on the whole binary plane, then its hits cleared.
 * Out-of-image pixels satisfy both set and clear cells (erosion's border). */
static bool remove_pattern(uint8_t *x, int w, int h, const int8_t k[3][3], uint8_t *hits)
{
    bool any = false;
    for (int r = 0; r < h; r++)
        for (int c = 0; c < w; c++) {
            bool hit = true;
            for (int i = 0; i < 3 && hit; i++)
                for (int j = 0; j < 3 && hit; j++) {
                    int rr = r + i - 1, cc = c + j - 1;
                    if (!k[i][j] || rr < 0 || rr >= h || cc < 0 || cc >= w) continue;
                    bool set = x[(size_t)rr * w + cc] != 0;
                    hit = k[i][j] > 0 ? set : !set;
                }
            hits[(size_t)r * w + c] = hit;
            any |= hit;
        }
    if (any)
        for (size_t i = 0; i < (size_t)w * h; i++)
            if (hits[i]) x[i] = 0;
    return any;
}

static bool thin_one_time(uint8_t *x, int w, int h, const int8_t raw[2][3][3], uint8_t *hits)
{
    bool done = true;
    for (int turn = 0; turn < 4; turn++)
        for (int r = 0; r < 2; r++) {
            int8_t k[3][3];
            rot90(raw[r], turn, k);
            if (remove_pattern(x, w, h, k, hits)) done = false;
        }
    return done;
}

/* high_quality_resize's clean-up of a resized black-and-white map: channel
 * mean, then (for one-pixel line art) nake_nms, Otsu binarisation, then (for
 * line art) lvmin_thin: at most 32 thinning rounds, then pruning when the map
 * grew. The result is written back as three equal channels. */
static sdw_status rebinarize(sdw_image *y, bool line_art, bool bigger)
{
    size_t np = (size_t)y->w * (size_t)y->h;
    uint8_t *g = malloc(np), *t = malloc(np);
    if (!g || !t) {
        free(g), free(t);
        return sdw_fail(SDW_ERR_NOMEM, "control image: out of memory");
    }
    for (size_t i = 0; i < np; i++) g[i] = (uint8_t)((y->data[3 * i] + y->data[3 * i + 1] + y->data[3 * i + 2]) / 3);
    if (line_art) {
        nake_nms(g, y->w, y->h, t);
        memcpy(g, t, np);
    }
    int thr = otsu(g, np);
    for (size_t i = 0; i < np; i++) g[i] = g[i] > thr ? 255 : 0;
    if (line_art) {
        for (int i = 0; i < 32; i++)
            if (thin_one_time(g, y->w, y->h, THIN_RAW, t)) break;
        if (bigger) thin_one_time(g, y->w, y->h, PRUNE_RAW, t);
    }
    for (size_t i = 0; i < np; i++) y->data[3 * i] = y->data[3 * i + 1] = y->data[3 * i + 2] = g[i];
    free(g), free(t);
    return SDW_OK;
}

/* detectmap_proc's high_quality_resize of an RGB map to w x h: nearest for
 * maps of 3..199 colours (segmentation), else INTER_AREA when shrinking and
 * INTER_CUBIC when growing; black-and-white maps are binarised again after.
 * OpenCV's AREA and CUBIC are approximated by our PIL resizer: antialiased
 * BILINEAR (a triangle where AREA averages a box) and BICUBIC (a = -0.5
 * where OpenCV uses -0.75). */
static sdw_status hq_resize(const sdw_image *x, int w, int h, sdw_image *out)
{
    if (x->w == w && x->h == h) {
        SDW_TRY(sdw_image_alloc(out, w, h, 3));
        memcpy(out->data, x->data, (size_t)w * (size_t)h * 3);
        return SDW_OK;
    }
    int64_t new_area = (int64_t)w * h, old_area = (int64_t)x->w * x->h;
    int colors = count_colors(x, 200);
    if (colors > 2 && colors < 200) return nearest_cv(x, w, h, out);
    bool binary = false, line_art = false;
    if (colors == 2) {
        uint8_t lo = 255, hi = 0;
        for (size_t i = 0; i < (size_t)old_area * 3; i++) {
            lo = x->data[i] < lo ? x->data[i] : lo;
            hi = x->data[i] > hi ? x->data[i] : hi;
        }
        binary = lo < 16 && hi > 240;
        if (binary) SDW_TRY(one_pixel_edges(x, &line_art));
    }
    SDW_TRY(sdw_image_resize(x, w, h, new_area < old_area ? SDW_RESIZE_BILINEAR : SDW_RESIZE_BICUBIC, out));
    sdw_status s = binary ? rebinarize(out, line_art, new_area > old_area) : SDW_OK;
    if (s != SDW_OK) sdw_image_free(out);
    return s;
}

/* np.round: half to even. */
static int round_even(double v) { return (int)nearbyint(v); }

/* The median of the border pixels per channel (both corners counted twice,
 * as numpy concatenates the four edges): the even count makes it the mean of
 * the two middle values, truncated. */
static void border_median(const sdw_image *x, uint8_t rgb[3])
{
    int w = x->w, h = x->h;
    size_t n = 2 * (size_t)w + 2 * (size_t)h;
    for (int c = 0; c < 3; c++) {
        size_t hist[256] = {0};
        for (int i = 0; i < w; i++) {
            hist[x->data[(size_t)i * 3 + c]]++;
            hist[x->data[((size_t)(h - 1) * w + i) * 3 + c]]++;
        }
        for (int j = 0; j < h; j++) {
            hist[x->data[(size_t)j * w * 3 + c]]++;
            hist[x->data[((size_t)j * w + w - 1) * 3 + c]]++;
        }
        int mid[2] = {-1, -1};
        size_t seen = 0;
        for (int v = 0; v < 256; v++) {
            seen += hist[v];
            if (mid[0] < 0 && seen >= n / 2) mid[0] = v;     /* sorted index n/2 - 1 */
            if (mid[1] < 0 && seen >= n / 2 + 1) mid[1] = v; /* sorted index n/2 */
        }
        rgb[c] = (uint8_t)((mid[0] + mid[1]) / 2);
    }
}

/* Copies the rows and columns [y0, y0 + h) x [x0, x0 + w) of src into dst at (dx, dy). */
static void blit(const sdw_image *src, int x0, int y0, int w, int h, sdw_image *dst, int dx, int dy)
{
    for (int r = 0; r < h; r++)
        memcpy(dst->data + ((size_t)(dy + r) * dst->w + dx) * 3, src->data + ((size_t)(y0 + r) * src->w + x0) * 3,
               (size_t)w * 3);
}

sdw_status sdw_control_image_fit(const sdw_image *in, int w, int h, sdw_fit_mode mode, sdw_image *out)
{
    *out = (sdw_image){0};
    if (w <= 0 || h <= 0 || (int64_t)w * h > SDW_IMAGE_DEFAULT_MAX_PIXELS)
        return sdw_fail(SDW_ERR_INVALID_ARG, "control image: bad target size %d x %d", w, h);
    if (mode != SDW_FIT_JUST_RESIZE && mode != SDW_FIT_CROP_AND_RESIZE && mode != SDW_FIT_RESIZE_AND_FILL)
        return sdw_fail(SDW_ERR_INVALID_ARG, "control image: unknown resize mode %d", (int)mode);
    sdw_image x;
    SDW_TRY(to_rgb(in, &x));
    sdw_status s;
    if (mode == SDW_FIT_JUST_RESIZE) {
        s = hq_resize(&x, w, h, out);
        sdw_image_free(&x);
        return s;
    }
    /* Scale by the larger (crop) or smaller (fill) of the two ratios, rounded
     * half to even; at least one pixel, and crop never short of the target. */
    double k0 = (double)h / x.h, k1 = (double)w / x.w;
    double k = mode == SDW_FIT_CROP_AND_RESIZE ? (k0 > k1 ? k0 : k1) : (k0 < k1 ? k0 : k1);
    int nw = round_even(x.w * k), nh = round_even(x.h * k);
    if (mode == SDW_FIT_CROP_AND_RESIZE) nw = nw > w ? nw : w, nh = nh > h ? nh : h;
    else nw = nw < 1 ? 1 : nw > w ? w : nw, nh = nh < 1 ? 1 : nh > h ? h : nh;
    if ((int64_t)nw * nh > SDW_IMAGE_DEFAULT_MAX_PIXELS) {
        sdw_image_free(&x);
        return sdw_fail(SDW_ERR_INVALID_ARG, "control image: %d x %d cropped to %d x %d needs a %d x %d step, too large",
                        in->w, in->h, w, h, nw, nh);
    }
    uint8_t bg[3];
    if (mode == SDW_FIT_RESIZE_AND_FILL) border_median(&x, bg);
    sdw_image r;
    s = hq_resize(&x, nw, nh, &r);
    sdw_image_free(&x);
    if (s == SDW_OK) s = sdw_image_alloc(out, w, h, 3);
    if (s == SDW_OK && mode == SDW_FIT_CROP_AND_RESIZE) {
        blit(&r, (nw - w) / 2, (nh - h) / 2, w, h, out, 0, 0); /* centred, the odd pixel off the right / bottom */
    } else if (s == SDW_OK) {
        for (size_t i = 0; i < (size_t)w * h; i++) memcpy(out->data + 3 * i, bg, 3);
        blit(&r, 0, 0, nw, nh, out, (w - nw) / 2, (h - nh) / 2);
    }
    sdw_image_free(&r);
    if (s != SDW_OK) sdw_image_free(out);
    return s;
}
