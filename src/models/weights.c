/* weights.c: see weights.h. */
#include "models/weights.h"
#include "core/error.h"
#include "core/half.h"
#include "core/log.h"
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
    wl->weight_type = be ? sdw_backend_weight_type(be) : SDW_WT_KEEP;
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
    const sdw_wl_part part = { w, 0, outf, 0 };
    sdw_status s = sdw_wl_linear_parts(wl, out, in, outf, &part, 1, bias);
    free(bias);
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
    sdw_wl_part *p = calloc((size_t)parts, sizeof *p);
    float *b = with_bias ? malloc((size_t)parts * each * sizeof *b) : NULL;
    sdw_status s = (p && (b || !with_bias)) ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory");
    for (int i = 0; i < parts && s == SDW_OK; i++) {
        const sdw_st_tensor *t;
        float *bias = NULL;
        s = sdw_wl_find(wl, &t, -1, "%s%s.weight", prefix, names[i]);
        bool shape_ok = s == SDW_OK && t->shape[0] == each && t->shape[1] == in &&
                        (t->ndim == 2 || (t->ndim == 4 && t->shape[2] == 1 && t->shape[3] == 1));
        if (s == SDW_OK && !shape_ok)
            s = sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s is not [%d, %d]", wl->st->path, t->name, each, in);
        if (s == SDW_OK) p[i] = (sdw_wl_part){ t, 0, each, i * each };
        if (s == SDW_OK && with_bias) s = sdw_wl_floats(wl, &bias, each, "%s%s.bias", prefix, names[i]);
        if (s == SDW_OK && with_bias) {
            memcpy(b + (size_t)i * each, bias, (size_t)each * sizeof *b);
            wl->bytes_held -= (size_t)each * sizeof(float);
        }
        free(bias);
    }
    if (s == SDW_OK) s = sdw_wl_linear_parts(wl, out, in, parts * each, p, parts, b);
    for (int i = 0; i < parts && s == SDW_OK; i++) {
        char name[512];
        snprintf(name, sizeof name, "%s%s", prefix, names[i]);
        s = record(wl, name, *out, NULL, i * each, each);
    }
    free(p);
    free(b);
    return s;
}

/* ---------------------------------------------------------------- compact linear weights */

static const char *const wt_names[SDW_WT_COUNT] = { "keep", "f32", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0" };
static const sdw_qtype wt_qtype[SDW_WT_COUNT] = {
    [SDW_WT_BF16] = SDW_QT_BF16, [SDW_WT_Q8_0] = SDW_QT_Q8_0, [SDW_WT_Q5_1] = SDW_QT_Q5_1,
    [SDW_WT_Q5_0] = SDW_QT_Q5_0, [SDW_WT_Q4_1] = SDW_QT_Q4_1, [SDW_WT_Q4_0] = SDW_QT_Q4_0,
};

sdw_status sdw_weight_type_parse(const char *name, sdw_weight_type *out)
{
    for (int i = 0; i < SDW_WT_COUNT; i++)
        if (!strcasecmp(name, wt_names[i])) {
            *out = (sdw_weight_type)i;
            return SDW_OK;
        }
    return sdw_fail(SDW_ERR_INVALID_ARG, "weight type \"%s\": expected keep, f32, bf16, q8_0, q5_1, q5_0, q4_1 or q4_0",
                    name);
}

const char *sdw_weight_type_name(sdw_weight_type t) { return (unsigned)t < SDW_WT_COUNT ? wt_names[t] : "?"; }

/* The backend's format for a file dtype whose rows it decodes: GGUF's
 * blocks, float8 and bf16. */
static bool row_format(sdw_st_dtype d, sdw_qtype *q)
{
    static const struct {
        sdw_st_dtype st;
        sdw_qtype qt;
    } map[] = {
        { SDW_ST_Q4_0, SDW_QT_Q4_0 },       { SDW_ST_Q4_1, SDW_QT_Q4_1 },       { SDW_ST_Q5_0, SDW_QT_Q5_0 },
        { SDW_ST_Q5_1, SDW_QT_Q5_1 },       { SDW_ST_Q8_0, SDW_QT_Q8_0 },       { SDW_ST_Q2_K, SDW_QT_Q2_K },
        { SDW_ST_Q3_K, SDW_QT_Q3_K },       { SDW_ST_Q4_K, SDW_QT_Q4_K },       { SDW_ST_Q5_K, SDW_QT_Q5_K },
        { SDW_ST_Q6_K, SDW_QT_Q6_K },       { SDW_ST_F8_E4M3, SDW_QT_F8_E4M3 }, { SDW_ST_F8_E5M2, SDW_QT_F8_E5M2 },
        { SDW_ST_BF16, SDW_QT_BF16 },
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (map[i].st == d) {
            *q = map[i].qt;
            return true;
        }
    return false;
}

static double file_bits(sdw_st_dtype d)
{
    size_t bytes = 0, per = sdw_st_dtype_block(d, &bytes);
    return per > 1 ? 8.0 * (double)bytes / (double)per : 8.0 * (double)sdw_st_dtype_size(d);
}

static double format_bits(sdw_qtype q)
{
    size_t bytes = 0;
    int per = sdw_qtype_block(q, &bytes);
    return 8.0 * (double)bytes / per;
}

/* Whether read_row reads t's rows straight from the mapping. */
static bool rows_readable(const sdw_st_tensor *t)
{
    sdw_qtype q;
    return t->dtype == SDW_ST_F32 || t->dtype == SDW_ST_F16 || row_format(t->dtype, &q);
}

/* Row r of t (in elements a row) as f32. */
static void read_row(const sdw_st_tensor *t, int64_t r, int in, float *dst)
{
    const uint8_t *base = t->data;
    sdw_qtype q;
    if (t->dtype == SDW_ST_F32) {
        memcpy(dst, base + (size_t)r * in * sizeof(float), (size_t)in * sizeof(float));
    } else if (t->dtype == SDW_ST_F16) {
        const uint8_t *p = base + (size_t)r * in * 2;
        for (int i = 0; i < in; i++) dst[i] = sdw_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    } else if (row_format(t->dtype, &q)) {
        sdw_qtype_dequantize_row(q, base + (size_t)r * sdw_qtype_row_bytes(q, in), dst, in);
    }
}

/* The format a layer [outf, in] takes part tensor t in: a compact one, or
 * -1 for dense. */
static int part_format(const sdw_wloader *wl, const sdw_st_tensor *t, int in, int outf)
{
    sdw_qtype own;
    /* bf16 stays compact in f32 precision only: in BF16 the dense layer is bf16. */
    const bool compact = row_format(t->dtype, &own) &&
                         (t->dtype != SDW_ST_BF16 || (sdw_backend_precision(wl->be) == SDW_PRECISION_F32 &&
                                                      (int64_t)in * outf >= SDW_WL_COMPACT_MIN));
    if (wl->weight_type == SDW_WT_F32) return -1;
    if (wl->weight_type != SDW_WT_KEEP && (unsigned)wl->weight_type < SDW_WT_COUNT) {
        const sdw_qtype q = wt_qtype[wl->weight_type];
        const bool large = (int64_t)in * outf >= SDW_WL_COMPACT_MIN && sdw_qtype_row_bytes(q, in) > 0;
        if (large && rows_readable(t) && file_bits(t->dtype) >= format_bits(q))
            return q == SDW_QT_BF16 && sdw_backend_precision(wl->be) == SDW_PRECISION_BF16 ? -1 : (int)q;
    }
    return compact ? (int)own : -1;
}

/* Rows of part p encoded as q into dst (p->rows rows of rb bytes), the
 * threads taking rows. */
static sdw_status encode_rows(const sdw_st_tensor *t, const sdw_wl_part *p, int in, sdw_qtype q, uint8_t *dst,
                              size_t rb)
{
    const int nt = omp_get_max_threads();
    float *buf = malloc(sizeof(float) * (size_t)in * (size_t)nt);
    if (!buf) return sdw_fail(SDW_ERR_NOMEM, "out of memory converting %s", t->name);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int r = 0; r < p->rows; r++) {
        float *row = buf + (size_t)in * (size_t)omp_get_thread_num();
        read_row(t, p->src_row0 + r, in, row);
        sdw_qtype_quantize_row(q, row, dst + (size_t)r * rb, in);
    }
    free(buf);
    return SDW_OK;
}

static sdw_status compact_linear(sdw_wloader *wl, sdw_linear **out, int in, int outf, const sdw_wl_part *parts,
                                 int n, sdw_qtype q, const float *bias)
{
    const size_t rb = sdw_qtype_row_bytes(q, in);
    /* One whole tensor already in the format, in a file its owner keeps
     * mapped: the layer reads it there, and the system pages it. */
    sdw_qtype own0;
    if (wl->st->keep_mapped && n == 1 && parts[0].src_row0 == 0 && parts[0].dst_row0 == 0 && parts[0].rows == outf &&
        parts[0].t->shape[0] == outf && row_format(parts[0].t->dtype, &own0) && own0 == q &&
        (uintptr_t)parts[0].t->data % 4 == 0)
        return sdw_linear_create_quant_borrowed(wl->be, in, outf, q, parts[0].t->data, bias, out);
    /* Zero bytes are zero weights in every format, should parts leave a gap. */
    uint8_t *rows = calloc((size_t)outf, rb);
    if (!rows) return sdw_fail(SDW_ERR_NOMEM, "out of memory loading %s", parts[0].t->name);
    sdw_status s = SDW_OK;
    for (int i = 0; i < n && s == SDW_OK; i++) {
        const sdw_wl_part *p = &parts[i];
        uint8_t *dst = rows + (size_t)p->dst_row0 * rb;
        sdw_qtype own;
        if (row_format(p->t->dtype, &own) && own == q) /* rows are independent: copy them as they are */
            memcpy(dst, (const uint8_t *)p->t->data + (size_t)p->src_row0 * rb, (size_t)p->rows * rb);
        else
            s = encode_rows(p->t, p, in, q, dst, rb);
        sdw_st_release(wl->st, p->t);
    }
    if (s == SDW_OK) s = sdw_linear_create_quant(wl->be, in, outf, q, rows, bias, out);
    free(rows);
    return s;
}

static sdw_status dense_linear(sdw_wloader *wl, sdw_linear **out, int in, int outf, const sdw_wl_part *parts, int n,
                               const float *bias)
{
    float *w = calloc((size_t)outf * in, sizeof *w);
    sdw_status s = w ? SDW_OK : sdw_fail(SDW_ERR_NOMEM, "out of memory loading %s", parts[0].t->name);
    for (int i = 0; i < n && s == SDW_OK; i++) {
        float *d;
        s = sdw_wl_stage(wl, parts[i].t, &d);
        if (s == SDW_OK)
            memcpy(w + (size_t)parts[i].dst_row0 * in, d + (size_t)parts[i].src_row0 * in,
                   (size_t)parts[i].rows * in * sizeof *w);
    }
    if (s == SDW_OK) s = sdw_linear_create(wl->be, in, outf, w, bias, out);
    free(w);
    return s;
}

sdw_status sdw_wl_linear_parts(sdw_wloader *wl, sdw_linear **out, int in, int outf, const sdw_wl_part *parts,
                               int n, const float *bias)
{
    *out = NULL;
    int fmt = n > 0 ? part_format(wl, parts[0].t, in, outf) : -1;
    bool mixed = false;
    for (int i = 0; i < n; i++) {
        const sdw_wl_part *p = &parts[i];
        const sdw_st_tensor *t = p->t;
        const bool shape_ok = (t->ndim == 2 || (t->ndim == 4 && t->shape[2] == 1 && t->shape[3] == 1)) &&
                              t->shape[1] == in;
        if (!shape_ok || p->src_row0 < 0 || p->rows < 0 || p->src_row0 + (int64_t)p->rows > t->shape[0] ||
            p->dst_row0 < 0 || p->dst_row0 + p->rows > outf)
            return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s cannot give rows [%d, %d) of a [%d, %d] linear",
                            wl->st->path, t->name, p->src_row0, p->src_row0 + p->rows, outf, in);
        if (part_format(wl, t, in, outf) != fmt) mixed = true;
    }
    if (mixed)
        SDW_WARN("%s: the parts of the layer with %s are stored in different formats: it loads dense", wl->st->path,
                 parts[0].t->name);
    sdw_status s = fmt >= 0 && !mixed ? compact_linear(wl, out, in, outf, parts, n, (sdw_qtype)fmt, bias)
                                      : dense_linear(wl, out, in, outf, parts, n, bias);
    if (s == SDW_OK) wl->bytes_held += sdw_linear_bytes(*out);
    return s;
}
