/* weights_parts.c: loading a transformer by its native module names from a
 * file in either of its layouts (see weights.h, "split modules"): the model
 * asks for "double_blocks.0.img_attn.qkv"; a diffusers file answers with
 * to_q, to_k and to_v, whose rows are stacked into one layer. Shared by
 * flux.c and mmdit.c, whose *_names.c hold the maps (built with the
 * sdw_wl_split_* helpers at the end). */
#include "models/weights.h"
#include "core/error.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sdw_status sdw_sl_load(sdw_split_loader *sl, sdw_backend *be, const sdw_safetensors *st,
                       sdw_status (*load)(sdw_split_loader *sl, void *model), void (*drop)(void *model))
{
    if (!sl->prefix) sl->prefix = "";
    sdw_wl_init(&sl->wl, be, st);
    sdw_status s = load(sl, sl->model);
    sdw_wl_done(&sl->wl);
    if (s != SDW_OK) drop(sl->model);
    return s;
}

static sdw_status nomem_loading(const char *what) { return sdw_fail(SDW_ERR_NOMEM, "out of memory loading %s", what); }

sdw_status sdw_sl_parts(sdw_split_loader *sl, const char *native, int out_rows, sdw_wl_split *p, int *n)
{
    if (sl->split) {
        *n = sl->splits(sl->model, native, out_rows, p);
        if (!*n)
            return sdw_fail(SDW_ERR_INVALID_ARG, "no tensor for %s module %s in this file's layout", sl->what, native);
    } else {
        *n = sdw_wl_split_whole(p, "", native, out_rows);
    }
    return SDW_OK;
}

/* "<prefix><name><suffix>", checked to be [tensor_rows, cols] (cols 0: a vector [tensor_rows]). */
static sdw_status find_part(sdw_split_loader *sl, const sdw_wl_split *p, const char *suffix, int cols,
                            const sdw_st_tensor **t)
{
    SDW_TRY(sdw_wl_find(&sl->wl, t, -1, "%s%s%s", sl->prefix, p->name, suffix));
    const sdw_st_tensor *x = *t;
    if (cols && (x->ndim != 2 || x->shape[0] != p->tensor_rows || x->shape[1] != cols))
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s is not [%d, %d]", sl->wl.st->path, x->name, p->tensor_rows,
                        cols);
    if (!cols && (x->ndim != 1 || x->shape[0] != p->tensor_rows))
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s is not [%d]", sl->wl.st->path, x->name, p->tensor_rows);
    return SDW_OK;
}

sdw_status sdw_sl_rows(sdw_split_loader *sl, const char *native, const sdw_wl_split *p, int n, const char *suffix,
                       int rows, float **out)
{
    if (!(*out = malloc((size_t)rows * sizeof **out))) return nomem_loading(native);
    for (int i = 0; i < n; i++) {
        const sdw_st_tensor *t;
        float *d;
        SDW_TRY(find_part(sl, &p[i], suffix, 0, &t));
        SDW_TRY(sdw_wl_stage(&sl->wl, t, &d));
        memcpy(*out + p[i].dst_row0, d + p[i].src_row0, (size_t)p[i].rows * sizeof **out);
    }
    return SDW_OK;
}

sdw_status sdw_sl_record(sdw_split_loader *sl, const char *native, sdw_linear *l, int out_rows)
{
    SDW_TRY(sdw_layer_list_add(sl->layers, native, l, NULL, 0, out_rows));
    sdw_wl_split p[SDW_WL_MAX_SPLITS];
    int n = sl->splits(sl->model, native, out_rows, p);
    for (int i = 0; i < n; i++)
        if (p[i].src_row0 == 0 && p[i].rows == p[i].tensor_rows && strcmp(p[i].name, native))
            SDW_TRY(sdw_layer_list_add(sl->layers, p[i].name, l, NULL, p[i].dst_row0, p[i].rows));
    return SDW_OK;
}

static sdw_status linear(sdw_split_loader *sl, sdw_linear **out, int in, int outf, bool bias, const char *native)
{
    sdw_wl_split p[SDW_WL_MAX_SPLITS];
    sdw_wl_part wp[SDW_WL_MAX_SPLITS];
    float *b = NULL;
    int n;
    SDW_TRY(sdw_sl_parts(sl, native, outf, p, &n));
    sdw_status s = bias ? sdw_sl_rows(sl, native, p, n, ".bias", outf, &b) : SDW_OK;
    /* The weight rows straight from the file's tensors: compact (GGUF,
     * float8) blocks stay blocks, whatever the layout splits them into. */
    for (int i = 0; i < n && s == SDW_OK; i++) {
        s = find_part(sl, &p[i], ".weight", in, &wp[i].t);
        wp[i].src_row0 = p[i].src_row0;
        wp[i].rows = p[i].rows;
        wp[i].dst_row0 = p[i].dst_row0;
    }
    if (s == SDW_OK) s = sdw_wl_linear_parts(&sl->wl, out, in, outf, wp, n, b);
    free(b);
    if (s == SDW_OK) *sl->bytes += sdw_linear_bytes(*out);
    if (s == SDW_OK) s = sdw_sl_record(sl, native, *out, outf);
    return s;
}

sdw_status sdw_sl_linear(sdw_split_loader *sl, sdw_linear **out, int in, int outf, bool bias, const char *fmt, ...)
{
    char native[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(native, sizeof native, fmt, ap);
    va_end(ap);
    return linear(sl, out, in, outf, bias, native);
}

static sdw_status vector(sdw_split_loader *sl, float **out, int n, const char *native)
{
    sdw_wl_split p[SDW_WL_MAX_SPLITS];
    int np;
    SDW_TRY(sdw_sl_parts(sl, native, n, p, &np));
    *sl->bytes += (size_t)n * sizeof **out;
    return sdw_sl_rows(sl, native, p, np, sl->vector_suffix, n, out);
}

sdw_status sdw_sl_vector(sdw_split_loader *sl, float **out, int n, const char *fmt, ...)
{
    char native[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(native, sizeof native, fmt, ap);
    va_end(ap);
    return vector(sl, out, n, native);
}

/* ---------------------------------------------------------------- building split maps */

const sdw_st_tensor *sdw_wl_tensor_at(const sdw_safetensors *st, const char *prefix, const char *fmt, int i)
{
    char name[256], full[512];
    snprintf(name, sizeof name, fmt, i);
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return sdw_st_find(st, full);
}

int sdw_wl_split_whole(sdw_wl_split *p, const char *block, const char *name, int rows)
{
    snprintf(p->name, sizeof p->name, "%s%s", block, name);
    p->src_row0 = p->dst_row0 = 0;
    p->rows = p->tensor_rows = rows;
    return 1;
}

int sdw_wl_split_stacked(sdw_wl_split *p, const char *block, const char *const *names, const int *rows, int n)
{
    int row0 = 0;
    for (int i = 0; i < n; i++) {
        sdw_wl_split_whole(&p[i], block, names[i], rows[i]);
        p[i].dst_row0 = row0;
        row0 += rows[i];
    }
    return n;
}

int sdw_wl_split_swapped(sdw_wl_split *p, const char *block, const char *name, int half)
{
    sdw_wl_split_whole(&p[0], block, name, half);
    sdw_wl_split_whole(&p[1], block, name, half);
    p[0].src_row0 = half;
    p[1].dst_row0 = half;
    p[0].tensor_rows = p[1].tensor_rows = 2 * half;
    return 2;
}

int sdw_wl_split_renamed(const sdw_wl_rename *r, size_t n, const char *native, sdw_wl_split *p, const char *block,
                         int rows)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(r[i].native, native)) return sdw_wl_split_whole(p, block, r[i].other, rows);
    return 0;
}
