/* weights.c: see weights.h. */
#include "models/weights.h"
#include "core/error.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sdw_status sdw_layer_list_add(sdw_layer_list *l, const char *name, sdw_linear *linear, sdw_conv2d *conv, int row0,
                              int rows)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        sdw_named_layer *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
        l->v = v;
        l->cap = cap;
    }
    char *nm = strdup(name);
    if (!nm) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    l->v[l->n++] = (sdw_named_layer){ nm, linear, conv, row0, rows };
    return SDW_OK;
}

void sdw_layer_list_free(sdw_layer_list *l)
{
    for (int i = 0; i < l->n; i++) free(l->v[i].name);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static sdw_status record(sdw_wloader *wl, const char *name, sdw_linear *linear, sdw_conv2d *conv, int row0, int rows)
{
    return wl->layers ? sdw_layer_list_add(wl->layers, name, linear, conv, row0, rows) : SDW_OK;
}

void sdw_wl_init(sdw_wloader *wl, sdw_backend *be, const sdw_safetensors *st)
{
    memset(wl, 0, sizeof *wl);
    wl->be = be;
    wl->st = st;
}

void sdw_wl_done(sdw_wloader *wl)
{
    free(wl->scratch);
    wl->scratch = NULL;
    wl->scratch_n = 0;
}

static void vname(char *buf, size_t n, const char *fmt, va_list ap) { vsnprintf(buf, n, fmt, ap); }

static const sdw_st_tensor *lookup(const sdw_wloader *wl, const char *name)
{
    char buf[512];
    return sdw_st_find(wl->st, wl->map ? wl->map(wl->map_ctx, name, buf, sizeof buf) : name);
}

bool sdw_wl_has(const sdw_wloader *wl, const char *fmt, ...)
{
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vname(name, sizeof name, fmt, ap);
    va_end(ap);
    return lookup(wl, name) != NULL;
}

static sdw_status find(sdw_wloader *wl, const sdw_st_tensor **t, int ndim, const char *name)
{
    *t = lookup(wl, name);
    if (!*t && wl->map) {
        char buf[512];
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s (%s) not found", wl->st->path,
                        wl->map(wl->map_ctx, name, buf, sizeof buf), name);
    }
    if (!*t) return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s not found", wl->st->path, name);
    if (ndim >= 0 && (*t)->ndim != ndim)
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s has %d dimensions, expected %d", wl->st->path, (*t)->name,
                        (*t)->ndim, ndim);
    return SDW_OK;
}

sdw_status sdw_wl_find(sdw_wloader *wl, const sdw_st_tensor **t, int ndim, const char *fmt, ...)
{
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vname(name, sizeof name, fmt, ap);
    va_end(ap);
    return find(wl, t, ndim, name);
}

sdw_status sdw_wl_stage(sdw_wloader *wl, const sdw_st_tensor *t, float **data)
{
    if ((size_t)t->numel > wl->scratch_n) {
        float *p = realloc(wl->scratch, (size_t)t->numel * sizeof *p);
        if (!p) return sdw_fail(SDW_ERR_NOMEM, "out of memory staging tensor %s", t->name);
        wl->scratch = p;
        wl->scratch_n = (size_t)t->numel;
    }
    SDW_TRY(sdw_st_read_f32(wl->st, t, wl->scratch));
    sdw_st_release(wl->st, t);
    *data = wl->scratch;
    return SDW_OK;
}

sdw_status sdw_wl_floats(sdw_wloader *wl, float **out, int64_t n, const char *fmt, ...)
{
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vname(name, sizeof name, fmt, ap);
    va_end(ap);
    const sdw_st_tensor *t;
    SDW_TRY(find(wl, &t, -1, name));
    if (t->numel != n)
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s has %lld elements, expected %lld", wl->st->path, t->name,
                        (long long)t->numel, (long long)n);
    *out = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!*out) return sdw_fail(SDW_ERR_NOMEM, "out of memory loading %s", name);
    sdw_status s = sdw_st_read_f32(wl->st, t, *out);
    sdw_st_release(wl->st, t);
    if (s != SDW_OK) {
        free(*out);
        *out = NULL;
        return s;
    }
    wl->bytes_held += (size_t)n * sizeof(float);
    return SDW_OK;
}

sdw_status sdw_wl_linear(sdw_wloader *wl, sdw_linear **out, int in, int outf, bool with_bias, const char *fmt, ...)
{
    char base[480], name[512];
    va_list ap;
    va_start(ap, fmt);
    vname(base, sizeof base, fmt, ap);
    va_end(ap);
    const sdw_st_tensor *w;
    snprintf(name, sizeof name, "%s.weight", base);
    SDW_TRY(find(wl, &w, -1, name));
    bool is_1x1 = w->ndim == 4 && w->shape[2] == 1 && w->shape[3] == 1;
    if ((w->ndim != 2 && !is_1x1) || w->shape[0] != outf || w->shape[1] != in)
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld], expected [%d, %d]", wl->st->path,
                        w->name, (long long)w->shape[0], (long long)w->shape[1], outf, in);
    float *bias = NULL;
    if (with_bias) {
        snprintf(name, sizeof name, "%s.bias", base);
        SDW_TRY(sdw_wl_floats(wl, &bias, outf, "%s", name));
        wl->bytes_held -= (size_t)outf * sizeof(float);
    }
    float *wd;
    sdw_status s = sdw_wl_stage(wl, w, &wd);
    if (s == SDW_OK) s = sdw_linear_create(wl->be, in, outf, wd, bias, out);
    free(bias);
    if (s == SDW_OK) wl->bytes_held += sdw_linear_bytes(*out);
    if (s == SDW_OK) s = record(wl, base, *out, NULL, 0, outf);
    return s;
}

sdw_status sdw_wl_conv2d(sdw_wloader *wl, sdw_conv2d **out, int cin, int cout, int k, int stride, int pad,
                         const char *fmt, ...)
{
    char base[480], name[512];
    va_list ap;
    va_start(ap, fmt);
    vname(base, sizeof base, fmt, ap);
    va_end(ap);
    const sdw_st_tensor *w;
    snprintf(name, sizeof name, "%s.weight", base);
    SDW_TRY(find(wl, &w, 4, name));
    if (w->shape[0] != cout || w->shape[1] != cin || w->shape[2] != k || w->shape[3] != k)
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld, %lld, %lld], expected [%d, %d, %d, %d]",
                        wl->st->path, w->name, (long long)w->shape[0], (long long)w->shape[1], (long long)w->shape[2],
                        (long long)w->shape[3], cout, cin, k, k);
    float *bias = NULL;
    snprintf(name, sizeof name, "%s.bias", base);
    SDW_TRY(sdw_wl_floats(wl, &bias, cout, "%s", name));
    wl->bytes_held -= (size_t)cout * sizeof(float);
    float *wd;
    sdw_status s = sdw_wl_stage(wl, w, &wd);
    if (s == SDW_OK) s = sdw_conv2d_create(wl->be, cin, cout, k, k, stride, pad, wd, bias, out);
    free(bias);
    if (s == SDW_OK) wl->bytes_held += sdw_conv2d_bytes(*out);
    if (s == SDW_OK) s = record(wl, base, NULL, *out, 0, cout);
    return s;
}

sdw_status sdw_wl_linear_stack(sdw_wloader *wl, sdw_linear **out, int in, int each, int parts, bool with_bias,
                               const char *prefix, const char *const *names)
{
    size_t per = (size_t)each * in;
    float *w = calloc((size_t)parts * per, sizeof *w), *b = with_bias ? malloc((size_t)parts * each * sizeof *b) : NULL;
    sdw_status s = (w && (b || !with_bias)) ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory");
    for (int i = 0; i < parts && s == SDW_OK; i++) {
        const sdw_st_tensor *t;
        float *d, *bias = NULL;
        s = sdw_wl_find(wl, &t, -1, "%s%s.weight", prefix, names[i]);
        bool shape_ok = s == SDW_OK && t->shape[0] == each && t->shape[1] == in &&
                        (t->ndim == 2 || (t->ndim == 4 && t->shape[2] == 1 && t->shape[3] == 1));
        if (s == SDW_OK && !shape_ok)
            s = sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s is not [%d, %d]", wl->st->path, t->name, each, in);
        if (s == SDW_OK) s = sdw_wl_stage(wl, t, &d);
        if (s == SDW_OK) memcpy(w + i * per, d, per * sizeof *w);
        if (s == SDW_OK && with_bias) s = sdw_wl_floats(wl, &bias, each, "%s%s.bias", prefix, names[i]);
        if (s == SDW_OK && with_bias) {
            memcpy(b + (size_t)i * each, bias, (size_t)each * sizeof *b);
            wl->bytes_held -= (size_t)each * sizeof(float);
        }
        free(bias);
    }
    if (s == SDW_OK) s = sdw_linear_create(wl->be, in, parts * each, w, b, out);
    if (s == SDW_OK) wl->bytes_held += sdw_linear_bytes(*out);
    for (int i = 0; i < parts && s == SDW_OK; i++) {
        char name[512];
        snprintf(name, sizeof name, "%s%s", prefix, names[i]);
        s = record(wl, name, *out, NULL, i * each, each);
    }
    free(w);
    free(b);
    return s;
}
