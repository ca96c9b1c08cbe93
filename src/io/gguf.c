/* gguf.c: see gguf.h. The layout (all little-endian):
 *
 *   "GGUF"  u32 version  u64 n_tensors  u64 n_kv
 *   n_kv x      { string key, u32 type, value }
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
 *   padding to general.alignment (default 32), then the data section;
 *   each offset is relative to the data section and aligned.
 *
 * A string is a u64 length and that many bytes (no NUL); an array is a u32
 * element type, a u64 count and the elements. Everything is read through a
 * bounds-checked cursor, so a malformed file fails with a message instead of
 * reading past the buffer; counts are checked against the bytes left before
 * anything is allocated for them. */
#include "io/gguf.h"
#include "core/error.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {   /* gguf_type: the KV value types */
    GT_U8, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STRING, GT_ARRAY, GT_U64, GT_I64, GT_F64,
    GT_COUNT
};
static const size_t gt_size[GT_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };

/* The ggml types we read, by their number in the file. */
static const struct { uint32_t ggml; sdw_st_dtype t; } ggml_types[] = {
    { 0, SDW_ST_F32 },   { 1, SDW_ST_F16 },   { 2, SDW_ST_Q4_0 },  { 3, SDW_ST_Q4_1 },  { 6, SDW_ST_Q5_0 },
    { 7, SDW_ST_Q5_1 },  { 8, SDW_ST_Q8_0 },  { 10, SDW_ST_Q2_K }, { 11, SDW_ST_Q3_K }, { 12, SDW_ST_Q4_K },
    { 13, SDW_ST_Q5_K }, { 14, SDW_ST_Q6_K }, { 30, SDW_ST_BF16 },
};
/* Names of the other ggml types, only for the error message. */
static const char *const other_ggml_names[] = {
    [4] = "Q4_2 (removed)", [5] = "Q4_3 (removed)", [9] = "Q8_1", [15] = "Q8_K", [16] = "IQ2_XXS",
    [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S", [22] = "IQ2_S",
    [23] = "IQ4_XS", [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64", [28] = "F64", [29] = "IQ1_M",
    [34] = "TQ1_0", [35] = "TQ2_0", [39] = "MXFP4",
};

/* ---- a bounds-checked cursor over the file ---- */

typedef struct {
    const uint8_t *buf;
    size_t size, pos;
    const char *file;
} cursor;

static sdw_status truncated(const cursor *c, const char *what)
{
    return sdw_fail(SDW_ERR_FORMAT, "%s: GGUF file truncated: %s at byte %zu runs past the end of the file "
                    "(%zu bytes)", c->file, what, c->pos, c->size);
}

static size_t left(const cursor *c) { return c->size - c->pos; }

static sdw_status rd_bytes(cursor *c, size_t n, const uint8_t **p, const char *what)
{
    if (n > left(c)) return truncated(c, what);
    *p = c->buf + c->pos;
    c->pos += n;
    return SDW_OK;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static sdw_status rd_u32(cursor *c, uint32_t *v, const char *what)
{
    const uint8_t *p = NULL;
    SDW_TRY(rd_bytes(c, 4, &p, what));
    *v = (uint32_t)le(p, 4);
    return SDW_OK;
}

static sdw_status rd_u64(cursor *c, uint64_t *v, const char *what)
{
    const uint8_t *p = NULL;
    SDW_TRY(rd_bytes(c, 8, &p, what));
    *v = le(p, 8);
    return SDW_OK;
}

static sdw_status rd_str(cursor *c, const char **s, size_t *len, const char *what)
{
    uint64_t n;
    SDW_TRY(rd_u64(c, &n, what));
    if (n > left(c))
        return sdw_fail(SDW_ERR_FORMAT, "%s: GGUF file truncated: %s of %" PRIu64 " bytes at byte %zu runs past "
                        "the end of the file (%zu bytes)", c->file, what, n, c->pos, c->size);
    const uint8_t *p = NULL;
    SDW_TRY(rd_bytes(c, (size_t)n, &p, what));
    *s = (const char *)p;
    *len = (size_t)n;
    return SDW_OK;
}

/* ---- growable storage for names and meta strings ---- */

/* Strings are kept as offsets until parsing ends, as the storage moves when
 * it grows. */
typedef struct {
    char *p;
    size_t len, cap;
} strbuf;

static sdw_status sb_add(strbuf *b, const char *s, size_t n, size_t *off, const char *file)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return sdw_fail(SDW_ERR_NOMEM, "%s: out of memory", file);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->p[b->len + n] = 0;
    *off = b->len;
    b->len += n + 1;
    return SDW_OK;
}

/* Grows *arr (of *cap elements of size elem) to hold n + 1. */
static sdw_status grow(void **arr, size_t *cap, size_t n, size_t elem, const char *file)
{
    if (n < *cap) return SDW_OK;
    size_t c = *cap ? *cap * 2 : 64;
    void *p = realloc(*arr, c * elem);
    if (!p) return sdw_fail(SDW_ERR_NOMEM, "%s: out of memory", file);
    *arr = p;
    *cap = c;
    return SDW_OK;
}

/* ---- the parse ---- */

typedef struct {
    size_t name_off;   /* into the string storage */
    uint64_t offset;   /* into the data section */
} tensor_info;

typedef struct {
    cursor c;
    sdw_safetensors *st;
    strbuf sb;
    struct { size_t key, value; } *pairs;   /* st->n_meta stored meta pairs, as offsets */
    size_t pairs_cap;
    size_t *keys, n_keys, keys_cap;         /* every key, arrays' too, for the duplicate check */
    tensor_info *info;                      /* st->n_tensors of them */
    size_t info_cap, tensors_cap;
    uint64_t alignment;
} parser;

/* Prints a number or bool value as its meta string. */
static void format_scalar(uint32_t type, const uint8_t *p, char *out, size_t n)
{
    uint64_t u = le(p, (int)gt_size[type]);
    switch (type) {
    case GT_I8: snprintf(out, n, "%d", (int8_t)u); break;
    case GT_I16: snprintf(out, n, "%d", (int16_t)u); break;
    case GT_I32: snprintf(out, n, "%" PRId32, (int32_t)(uint32_t)u); break;
    case GT_I64: snprintf(out, n, "%" PRId64, (int64_t)u); break;
    case GT_BOOL: snprintf(out, n, "%s", u ? "true" : "false"); break;
    case GT_F32: { uint32_t b = (uint32_t)u; float f; memcpy(&f, &b, 4); snprintf(out, n, "%.9g", f); break; }
    case GT_F64: { double d; memcpy(&d, &u, 8); snprintf(out, n, "%.17g", d); break; }
    default: snprintf(out, n, "%" PRIu64, u); break;   /* the unsigned types */
    }
}

/* Skips an array's elements after checking them against the bytes left. */
static sdw_status skip_array(parser *ps, const char *key)
{
    cursor *c = &ps->c;
    uint32_t et;
    uint64_t count;
    SDW_TRY(rd_u32(c, &et, "an array's element type"));
    SDW_TRY(rd_u64(c, &count, "an array's length"));
    if (et >= GT_COUNT || et == GT_ARRAY)
        return sdw_fail(SDW_ERR_FORMAT, "%s: GGUF key %s: array of %s type %u", c->file, key,
                        et == GT_ARRAY ? "nested array" : "unknown", et);
    size_t min = et == GT_STRING ? 8 : gt_size[et];
    if (count > left(c) / min)
        return sdw_fail(SDW_ERR_FORMAT, "%s: GGUF key %s: array of %" PRIu64 " elements, more than the %zu bytes "
                        "left in the file can hold", c->file, key, count, left(c));
    if (et != GT_STRING) {
        c->pos += (size_t)count * min;
        return SDW_OK;
    }
    for (uint64_t i = 0; i < count; i++) {
        const char *s;
        size_t n;
        SDW_TRY(rd_str(c, &s, &n, "a string in an array"));
    }
    return SDW_OK;
}

static sdw_status parse_kv(parser *ps)
{
    cursor *c = &ps->c;
    const char *kp, *vp;
    size_t kn, vn, koff, voff;
    uint32_t type;
    SDW_TRY(rd_str(c, &kp, &kn, "a metadata key"));
    if (memchr(kp, 0, kn)) return sdw_fail(SDW_ERR_FORMAT, "%s: GGUF metadata key with a NUL byte", c->file);
    SDW_TRY(sb_add(&ps->sb, kp, kn, &koff, c->file));
    SDW_TRY(grow((void **)&ps->keys, &ps->keys_cap, ps->n_keys, sizeof *ps->keys, c->file));
    ps->keys[ps->n_keys++] = koff;
    const char *key = ps->sb.p + koff;   /* valid until the next sb_add */
    SDW_TRY(rd_u32(c, &type, "a metadata value type"));
    if (type >= GT_COUNT)
        return sdw_fail(SDW_ERR_FORMAT, "%s: GGUF key %s has unknown value type %u", c->file, key, type);
    if (!strcmp(key, "general.alignment") && type != GT_U32)
        return sdw_fail(SDW_ERR_FORMAT, "%s: GGUF general.alignment must be a u32 power of two (it has type %u)",
                        c->file, type);
    if (type == GT_ARRAY) return skip_array(ps, key);
    char num[64];
    if (type == GT_STRING) {
        SDW_TRY(rd_str(c, &vp, &vn, "a metadata string"));
    } else {
        const uint8_t *p = NULL;
        SDW_TRY(rd_bytes(c, gt_size[type], &p, "a metadata value"));
        format_scalar(type, p, num, sizeof num);
        vp = num;
        vn = strlen(num);
        if (!strcmp(key, "general.alignment")) {
            uint64_t a = le(p, (int)gt_size[type]);
            if (a == 0 || (a & (a - 1)))
                return sdw_fail(SDW_ERR_FORMAT, "%s: GGUF general.alignment must be a u32 power of two, not %s",
                                c->file, num);
            ps->alignment = a;
        }
    }
    /* A string with a NUL in it ends there, as every C string reader would read it. */
    SDW_TRY(sb_add(&ps->sb, vp, vn, &voff, c->file));
    size_t n = (size_t)ps->st->n_meta;
    SDW_TRY(grow((void **)&ps->pairs, &ps->pairs_cap, n, sizeof *ps->pairs, c->file));
    ps->pairs[n].key = koff;
    ps->pairs[n].value = voff;
    ps->st->n_meta++;
    return SDW_OK;
}

static sdw_status map_type(const cursor *c, const char *name, uint32_t g, sdw_st_dtype *t)
{
    for (size_t i = 0; i < sizeof ggml_types / sizeof ggml_types[0]; i++)
        if (ggml_types[i].ggml == g) {
            *t = ggml_types[i].t;
            return SDW_OK;
        }
    const size_t n_other = sizeof other_ggml_names / sizeof other_ggml_names[0];
    const char *known = g < n_other && other_ggml_names[g] ? other_ggml_names[g] : "unknown";
    return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: tensor %s has ggml type %u (%s), which is not supported (F32, F16, "
                    "BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K are)", c->file, name, g, known);
}

/* Reads one tensor info; its name and data pointer are set later (the name
 * storage may still move; the data section's start is not known yet). */
static sdw_status parse_tensor_info(parser *ps, sdw_st_tensor *t, tensor_info *ti)
{
    cursor *c = &ps->c;
    const char *np;
    size_t nn;
    uint32_t nd, g;
    SDW_TRY(rd_str(c, &np, &nn, "a tensor name"));
    if (memchr(np, 0, nn)) return sdw_fail(SDW_ERR_FORMAT, "%s: GGUF tensor name with a NUL byte", c->file);
    SDW_TRY(sb_add(&ps->sb, np, nn, &ti->name_off, c->file));
    const char *name = ps->sb.p + ti->name_off;
    SDW_TRY(rd_u32(c, &nd, "a tensor's dimension count"));
    if (nd > SDW_ST_MAX_DIMS)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: tensor %s has %u dimensions (at most %d)", c->file, name, nd,
                        SDW_ST_MAX_DIMS);
    t->ndim = (int)nd;
    /* The product of the non-zero dimensions is bounded too: an empty tensor
     * must not carry dimensions whose products overflow where they are used. */
    uint64_t numel = 1, nonzero = 1, ne0 = 1;
    for (uint32_t j = 0; j < nd; j++) {
        uint64_t v;
        SDW_TRY(rd_u64(c, &v, "a tensor dimension"));
        if (v > (uint64_t)INT64_MAX || (v && nonzero > UINT64_MAX / v))
            return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: shape overflows", c->file, name);
        numel *= v;
        nonzero *= v ? v : 1;
        if (j == 0) ne0 = v;
        t->shape[nd - 1 - j] = (int64_t)v;   /* ne[0] is the innermost: torch's last dimension */
    }
    if (nonzero > (uint64_t)INT64_MAX / 8)
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: shape overflows", c->file, name);
    SDW_TRY(rd_u32(c, &g, "a tensor type"));
    SDW_TRY(map_type(c, name, g, &t->dtype));
    SDW_TRY(rd_u64(c, &ti->offset, "a tensor offset"));
    size_t bytes, block = sdw_st_dtype_block(t->dtype, &bytes);
    if (ne0 % block)
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: %s needs the first GGUF dimension (the last torch one) a "
                        "multiple of %zu, not %" PRIu64, c->file, name, sdw_st_dtype_name(t->dtype), block, ne0);
    if (ti->offset % ps->alignment)
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: offset %" PRIu64 " is not a multiple of the alignment %"
                        PRIu64, c->file, name, ti->offset, ps->alignment);
    t->numel = (int64_t)numel;
    t->nbytes = numel / block * bytes;   /* numel < 2^60 and bytes / block <= 4: no overflow */
    return SDW_OK;
}

static sdw_status parse_header(parser *ps, uint64_t *n_tensors)
{
    cursor *c = &ps->c;
    const uint8_t *magic = NULL;
    uint32_t version;
    uint64_t n_kv;
    SDW_TRY(rd_bytes(c, 4, &magic, "the magic"));
    if (memcmp(magic, SDW_GGUF_MAGIC, 4))
        return sdw_fail(SDW_ERR_FORMAT, "%s: not a GGUF file (no GGUF magic)", c->file);
    SDW_TRY(rd_u32(c, &version, "the version"));
    if (version == 1)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: GGUF version 1 (32-bit counts) is not supported; convert it to "
                        "version 3 with a current gguf-py", c->file);
    if (version != 2 && version != 3 && !(version & 0xffff))
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: a big-endian GGUF file (version %u byte-swapped), not supported",
                        c->file, version >> 24);
    if (version != 2 && version != 3)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (2 and 3 are)", c->file, version);
    SDW_TRY(rd_u64(c, n_tensors, "the tensor count"));
    SDW_TRY(rd_u64(c, &n_kv, "the metadata count"));
    /* A KV takes at least 13 bytes (key length, type, a 1-byte value), a
     * tensor info 24 (name length, dims, type, offset). */
    if (n_kv > left(c) / 13 || n_kv > (uint64_t)INT32_MAX)
        return sdw_fail(SDW_ERR_FORMAT, "%s: GGUF header claims %" PRIu64 " metadata entries, more than the %zu "
                        "bytes left can hold", c->file, n_kv, left(c));
    if (*n_tensors > left(c) / 24 || *n_tensors > (uint64_t)INT32_MAX)
        return sdw_fail(SDW_ERR_FORMAT, "%s: GGUF header claims %" PRIu64 " tensors, more than the %zu bytes left "
                        "can hold", c->file, *n_tensors, left(c));
    for (uint64_t i = 0; i < n_kv; i++) SDW_TRY(parse_kv(ps));
    return SDW_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static sdw_status check_duplicate_keys(parser *ps)
{
    const char **k = malloc((ps->n_keys + 1) * sizeof *k);
    if (!k) return sdw_fail(SDW_ERR_NOMEM, "%s: out of memory", ps->c.file);
    for (size_t i = 0; i < ps->n_keys; i++) k[i] = ps->sb.p + ps->keys[i];
    qsort(k, ps->n_keys, sizeof *k, cmp_str);
    sdw_status s = SDW_OK;
    for (size_t i = 1; i < ps->n_keys && s == SDW_OK; i++)
        if (!strcmp(k[i - 1], k[i])) s = sdw_fail(SDW_ERR_FORMAT, "%s: GGUF key %s appears twice", ps->c.file, k[i]);
    free(k);
    return s;
}

/* Points every tensor into the data section, checking it lies in the file. */
static sdw_status place_tensors(parser *ps)
{
    cursor *c = &ps->c;
    sdw_safetensors *st = ps->st;
    uint64_t start = (c->pos + ps->alignment - 1) / ps->alignment * ps->alignment;   /* pos < 2^63: no overflow */
    uint64_t avail = start <= c->size ? c->size - start : 0;
    for (int i = 0; i < st->n_tensors; i++) {
        sdw_st_tensor *t = &st->tensors[i];
        uint64_t ofs = ps->info[i].offset;
        if (ofs > avail || t->nbytes > avail - ofs)
            return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: data [%" PRIu64 ", +%" PRIu64 ") lies outside the data "
                            "section (%" PRIu64 " bytes from byte %" PRIu64 ")", c->file, t->name, ofs, t->nbytes,
                            avail, start);
        t->data = c->buf + (start <= c->size ? start : c->size) + ofs;
    }
    return SDW_OK;
}

static sdw_status parse(parser *ps)
{
    sdw_safetensors *st = ps->st;
    uint64_t n_tensors;
    SDW_TRY(parse_header(ps, &n_tensors));
    SDW_TRY(check_duplicate_keys(ps));
    /* Grown as tensors are read, not sized from the count: a lying count in a
     * large file must not allocate gigabytes before the truncation shows. */
    for (uint64_t i = 0; i < n_tensors; i++) {
        size_t n = (size_t)st->n_tensors;
        SDW_TRY(grow((void **)&st->tensors, &ps->tensors_cap, n, sizeof *st->tensors, ps->c.file));
        SDW_TRY(grow((void **)&ps->info, &ps->info_cap, n, sizeof *ps->info, ps->c.file));
        memset(&st->tensors[n], 0, sizeof st->tensors[n]);
        SDW_TRY(parse_tensor_info(ps, &st->tensors[n], &ps->info[n]));
        st->n_tensors++;
    }
    for (int i = 0; i < st->n_tensors; i++) st->tensors[i].name = ps->sb.p + ps->info[i].name_off;
    return place_tensors(ps);
}

sdw_status sdw_gguf_parse(const void *buf, size_t size, const char *name, sdw_safetensors **out)
{
    *out = NULL;
    sdw_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(name ? name : "<memory>"))) {
        free(st);
        return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    }
    parser ps = { .c = { .buf = buf, .size = buf ? size : 0, .file = st->path }, .st = st,
                  .alignment = SDW_GGUF_DEFAULT_ALIGNMENT };
    sdw_status s = parse(&ps);
    if (s == SDW_OK) {
        /* The names now stay where they are: hand the storage and the pairs over. */
        st->strings = ps.sb.p;
        ps.sb.p = NULL;
        st->meta = calloc((size_t)st->n_meta + 1, sizeof *st->meta);
        if (!st->meta) s = sdw_fail(SDW_ERR_NOMEM, "%s: out of memory", st->path);
        for (int i = 0; s == SDW_OK && i < st->n_meta; i++) {
            st->meta[i].key = st->strings + ps.pairs[i].key;
            st->meta[i].value = st->strings + ps.pairs[i].value;
        }
        if (s == SDW_OK && !st->tensors && !(st->tensors = calloc(1, sizeof *st->tensors)))
            s = sdw_fail(SDW_ERR_NOMEM, "%s: out of memory", st->path);
        if (s == SDW_OK) s = sdw_st_finish(st, st->path);
    } else {
        st->n_meta = 0;   /* no meta array was made */
    }
    free(ps.sb.p);
    free(ps.pairs);
    free(ps.keys);
    free(ps.info);
    if (s != SDW_OK) {
        sdw_st_close(st);
        return s;
    }
    *out = st;
    return SDW_OK;
}
