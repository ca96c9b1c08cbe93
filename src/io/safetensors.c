/* safetensors.c: see safetensors.h. The file is mapped read-only; the header
 * is parsed with cJSON and every entry checked before the reader is returned.
 * Content that opens with the GGUF magic goes to io/gguf.c instead. */
#include "io/safetensors.h"
#include "io/gguf.h"
#include "io/quant.h"
#include "core/error.h"
#include "core/half.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every dtype: its name (safetensors' spelling; GGUF's for the block types),
 * elements per block (1 for the plain types, which alone may appear in a
 * safetensors header) and bytes per block. */
static const struct { const char *name; sdw_st_dtype t; size_t block, bytes; } dtypes[] = {
    { "F64", SDW_ST_F64, 1, 8 },   { "F32", SDW_ST_F32, 1, 4 },   { "F16", SDW_ST_F16, 1, 2 },
    { "BF16", SDW_ST_BF16, 1, 2 }, { "I64", SDW_ST_I64, 1, 8 },   { "I32", SDW_ST_I32, 1, 4 },
    { "I16", SDW_ST_I16, 1, 2 },   { "I8", SDW_ST_I8, 1, 1 },     { "U8", SDW_ST_U8, 1, 1 },
    { "BOOL", SDW_ST_BOOL, 1, 1 }, { "F8_E4M3", SDW_ST_F8_E4M3, 1, 1 }, { "F8_E5M2", SDW_ST_F8_E5M2, 1, 1 },
    { "U16", SDW_ST_U16, 1, 2 },   { "U32", SDW_ST_U32, 1, 4 },   { "U64", SDW_ST_U64, 1, 8 },
    { "Q4_0", SDW_ST_Q4_0, 32, 18 },  { "Q4_1", SDW_ST_Q4_1, 32, 20 },  { "Q5_0", SDW_ST_Q5_0, 32, 22 },
    { "Q5_1", SDW_ST_Q5_1, 32, 24 },  { "Q8_0", SDW_ST_Q8_0, 32, 34 },  { "Q2_K", SDW_ST_Q2_K, 256, 84 },
    { "Q3_K", SDW_ST_Q3_K, 256, 110 }, { "Q4_K", SDW_ST_Q4_K, 256, 144 }, { "Q5_K", SDW_ST_Q5_K, 256, 176 },
    { "Q6_K", SDW_ST_Q6_K, 256, 210 },
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

const char *sdw_st_dtype_name(sdw_st_dtype t)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].t == t) return dtypes[i].name;
    return "?";
}

size_t sdw_st_dtype_size(sdw_st_dtype t)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].t == t) return dtypes[i].block == 1 ? dtypes[i].bytes : 0;
    return 0;
}

size_t sdw_st_dtype_block(sdw_st_dtype t, size_t *block_bytes)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].t == t) {
            if (block_bytes) *block_bytes = dtypes[i].bytes;
            return dtypes[i].block;
        }
    if (block_bytes) *block_bytes = 0;
    return 0;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const sdw_st_tensor *)a)->name, ((const sdw_st_tensor *)b)->name);
}

static int cmp_range(const void *a, const void *b)
{
    const sdw_st_tensor *x = *(const sdw_st_tensor *const *)a, *y = *(const sdw_st_tensor *const *)b;
    const char *px = x->data, *py = y->data;
    return px < py ? -1 : px > py;
}

/* Reads a JSON number that must be a non-negative integer exactly representable. */
static bool json_u64(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

static sdw_status parse_entry(const char *file, const cJSON *e, sdw_st_tensor *t, const uint8_t *data,
                              uint64_t data_size)
{
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: entry is not an object", file, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd))
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: dtype missing or not a string", file, name);
    if (!cJSON_IsArray(js))
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: shape missing or not an array", file, name);
    if (!cJSON_IsArray(jo))
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: data_offsets missing or not an array", file, name);
    size_t esize = 0;
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].block == 1 && !strcmp(jd->valuestring, dtypes[i].name)) {
            t->dtype = dtypes[i].t;
            esize = dtypes[i].bytes;
        }
    if (!esize)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: unsupported dtype %.32s in tensor %s", file, jd->valuestring,
                        name);
    int nd = cJSON_GetArraySize(js);
    if (nd > SDW_ST_MAX_DIMS)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: tensor %s has %d dimensions (at most %d)", file, name, nd,
                        SDW_ST_MAX_DIMS);
    t->ndim = nd;
    /* The non-zero dimensions' product is bounded even for an empty tensor. */
    uint64_t numel = 1, nonzero = 1;
    int d = 0;
    for (const cJSON *j = js->child; j; j = j->next, d++) {
        uint64_t v;
        if (!json_u64(j, &v)) return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: bad shape entry", file, name);
        if (v && nonzero > UINT64_MAX / v) return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: shape overflows", file, name);
        numel *= v;
        nonzero *= v ? v : 1;
        t->shape[d] = (int64_t)v;
    }
    if (nonzero > (uint64_t)INT64_MAX / 8 || numel * esize / esize != numel)
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: shape overflows", file, name);
    uint64_t begin, end;
    if (cJSON_GetArraySize(jo) != 2 || !json_u64(jo->child, &begin) || !json_u64(jo->child->next, &end))
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: data_offsets must be two non-negative integers", file, name);
    if (begin > end)
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu] begin after they end", file, name,
                        (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return sdw_fail(SDW_ERR_FORMAT,
                        "%s: tensor %s: data_offsets [%llu, %llu] outside the data section (%llu bytes)", file,
                        name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_size);
    if (end - begin != numel * esize)
        return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s: %llu bytes for a %s tensor of %llu elements (need %llu)",
                        file, name, (unsigned long long)(end - begin), jd->valuestring,
                        (unsigned long long)numel, (unsigned long long)(numel * esize));
    t->numel = (int64_t)numel;
    t->nbytes = end - begin;
    t->data = data + begin;
    return SDW_OK;
}

sdw_status sdw_st_finish(sdw_safetensors *st, const char *file)
{
    qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, cmp_tensor_name);
    for (int i = 1; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i - 1].name, st->tensors[i].name))
            return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s appears twice", file, st->tensors[i].name);
    /* Overlap check: sort pointers by start; each non-empty range must begin at or
     * after the furthest end seen so far (comparing only neighbours would miss an
     * overlap with an empty tensor sorted in between, or a range containing two). */
    const sdw_st_tensor **byofs = malloc(((size_t)st->n_tensors + 1) * sizeof *byofs);
    if (!byofs) return sdw_fail(SDW_ERR_NOMEM, "%s: out of memory", file);
    for (int i = 0; i < st->n_tensors; i++) byofs[i] = &st->tensors[i];
    qsort(byofs, (size_t)st->n_tensors, sizeof *byofs, cmp_range);
    sdw_status s = SDW_OK;
    const sdw_st_tensor *furthest = NULL;   /* the non-empty tensor ending last so far */
    for (int i = 0; i < st->n_tensors; i++) {
        const sdw_st_tensor *b = byofs[i];
        if (!b->nbytes) continue;
        if (furthest && (const uint8_t *)furthest->data + furthest->nbytes > (const uint8_t *)b->data) {
            s = sdw_fail(SDW_ERR_FORMAT, "%s: tensors %s and %s overlap in the data section", file,
                         furthest->name, b->name);
            break;
        }
        if (!furthest || (const uint8_t *)b->data + b->nbytes > (const uint8_t *)furthest->data + furthest->nbytes)
            furthest = b;
    }
    free(byofs);
    return s;
}

static sdw_status parse_header(sdw_safetensors *st, const uint8_t *buf, size_t size, const char *file)
{
    if (size < 8) return sdw_fail(SDW_ERR_FORMAT, "%s: not a safetensors file (%zu bytes, too short)", file, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > SDW_ST_MAX_HEADER)
        return sdw_fail(SDW_ERR_FORMAT, "%s: header length %llu exceeds the 100 MB limit", file,
                        (unsigned long long)hlen);
    if (hlen > size - 8)
        return sdw_fail(SDW_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)", file,
                        (unsigned long long)hlen, size);
    cJSON *root = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
    if (!root) return sdw_fail(SDW_ERR_FORMAT, "%s: header is not valid JSON", file);
    sdw_status s = SDW_OK;
    if (!cJSON_IsObject(root)) { s = sdw_fail(SDW_ERR_FORMAT, "%s: header is not a JSON object", file); goto out; }

    const uint8_t *data = buf + 8 + hlen;
    uint64_t data_size = size - 8 - hlen;
    int n = 0, n_meta = 0;
    size_t strbytes = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) { s = sdw_fail(SDW_ERR_FORMAT, "%s: __metadata__ is not an object", file); goto out; }
            for (const cJSON *m = e->child; m; m = m->next) {
                if (!cJSON_IsString(m)) continue;   /* the format says string values; skip others */
                n_meta++;
                strbytes += strlen(m->string) + strlen(m->valuestring) + 2;
            }
        } else {
            n++;
            strbytes += strlen(e->string) + 1;
        }
    }
    st->tensors = calloc((size_t)n + 1, sizeof *st->tensors);
    st->meta = calloc((size_t)n_meta + 1, sizeof *st->meta);
    st->strings = malloc(strbytes + 1);
    if (!st->tensors || !st->meta || !st->strings) { s = sdw_fail(SDW_ERR_NOMEM, "%s: out of memory", file); goto out; }
    char *sp = st->strings;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            for (const cJSON *m = e->child; m; m = m->next) {
                if (!cJSON_IsString(m)) continue;
                sdw_st_meta *md = &st->meta[st->n_meta++];
                md->key = strcpy(sp, m->string); sp += strlen(sp) + 1;
                md->value = strcpy(sp, m->valuestring); sp += strlen(sp) + 1;
            }
            continue;
        }
        sdw_st_tensor *t = &st->tensors[st->n_tensors];
        if ((s = parse_entry(file, e, t, data, data_size)) != SDW_OK) goto out;
        t->name = strcpy(sp, e->string);
        sp += strlen(sp) + 1;
        st->n_tensors++;
    }
    s = sdw_st_finish(st, file);
out:
    cJSON_Delete(root);
    return s;
}

/* PyTorch's own formats: a pickle (protocol 2-5 opens with PROTO, 0x80 n) or,
 * since torch 1.6, a zip of pickles. Only asked of what failed to parse as
 * safetensors (a header length can begin 0x80 0x02), to name the real trouble
 * whatever the file is called. */
static bool is_pytorch_pickle(const uint8_t *b, size_t size)
{
    return (size >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5) || (size >= 4 && !memcmp(b, "PK\3\4", 4));
}

sdw_status sdw_st_parse(const void *buf, size_t size, const char *name, sdw_safetensors **out)
{
    *out = NULL;
    /* Never a safetensors file: those 4 bytes as a header length would be
     * about 1.2 GB, over the 100 MB limit. */
    if (size >= 4 && !memcmp(buf, SDW_GGUF_MAGIC, 4)) return sdw_gguf_parse(buf, size, name, out);
    sdw_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(name ? name : "<memory>"))) {
        free(st);
        return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    }
    sdw_status s = parse_header(st, buf, size, st->path);
    if (s != SDW_OK && is_pytorch_pickle(buf, size))
        s = sdw_fail(SDW_ERR_UNSUPPORTED, "%s: a PyTorch pickle checkpoint, not safetensors; pickle files are "
                     "not loaded (they can run code): convert it to .safetensors", st->path);
    if (s != SDW_OK) { sdw_st_close(st); return s; }
    *out = st;
    return SDW_OK;
}

sdw_status sdw_st_open(const char *path, sdw_safetensors **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sdw_fail(SDW_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return sdw_fail(SDW_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (size && map == MAP_FAILED) return sdw_fail(SDW_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    sdw_status s = sdw_st_parse(map, size, path, out);
    if (s != SDW_OK) {
        if (map) munmap(map, size);
        return s;
    }
    (*out)->map = map;
    (*out)->map_size = size;
    return SDW_OK;
}

void sdw_st_close(sdw_safetensors *st)
{
    if (!st) return;
    if (st->map) munmap(st->map, st->map_size);
    free(st->tensors);
    free(st->meta);
    free(st->strings);
    free(st->path);
    free(st);
}

const sdw_st_tensor *sdw_st_find(const sdw_safetensors *st, const char *name)
{
    sdw_st_tensor key = { .name = name };
    return bsearch(&key, st->tensors, (size_t)st->n_tensors, sizeof key, cmp_tensor_name);
}

const char *sdw_st_meta_get(const sdw_safetensors *st, const char *key)
{
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta[i].key, key)) return st->meta[i].value;
    return NULL;
}

/* Nothing in the format aligns the data section (it starts right after a header
 * of any length), so a 16-bit tensor may sit at an odd address: convert it one
 * memcpy'd element at a time instead of through a misaligned uint16_t pointer. */
static void convert_unaligned_16(float *dst, const void *src, sdw_st_dtype t, size_t n)
{
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = t == SDW_ST_F16 ? sdw_f16_to_f32(h) : sdw_bf16_to_f32(h);
    }
}

sdw_status sdw_st_read_f32(const sdw_safetensors *st, const sdw_st_tensor *t, float *dst)
{
    bool aligned2 = ((uintptr_t)t->data & 1) == 0;
    switch (t->dtype) {
    case SDW_ST_F32: sdw_convert_to_f32(dst, t->data, SDW_DTYPE_F32, (size_t)t->numel); return SDW_OK;
    case SDW_ST_F16:
        if (aligned2) sdw_convert_to_f32(dst, t->data, SDW_DTYPE_F16, (size_t)t->numel);
        else convert_unaligned_16(dst, t->data, t->dtype, (size_t)t->numel);
        return SDW_OK;
    case SDW_ST_BF16:
        if (aligned2) sdw_convert_to_f32(dst, t->data, SDW_DTYPE_BF16, (size_t)t->numel);
        else convert_unaligned_16(dst, t->data, t->dtype, (size_t)t->numel);
        return SDW_OK;
    default:
        if (sdw_dequantize(t->dtype, t->data, dst, (size_t)t->numel)) return SDW_OK;
        return sdw_fail(SDW_ERR_UNSUPPORTED,
                        "%s: unsupported dtype %s in tensor %s (need a float: F32, F16, BF16, F8_E4M3, F8_E5M2 "
                        "or a GGUF quantization)", st->path, sdw_st_dtype_name(t->dtype), t->name);
    }
}

sdw_status sdw_st_load_f32(const sdw_safetensors *st, const char *name, sdw_tensor *out)
{
    const sdw_st_tensor *t = sdw_st_find(st, name);
    if (!t) return sdw_fail(SDW_ERR_FORMAT, "%s: tensor %s not found", st->path, name);
    if (t->ndim > SDW_MAX_DIMS)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: tensor %s has %d dimensions", st->path, name, t->ndim);
    SDW_TRY(sdw_tensor_new(out, SDW_DTYPE_F32, t->ndim, t->shape));
    sdw_status s = sdw_st_read_f32(st, t, out->data);
    if (s != SDW_OK) sdw_tensor_free(out);
    return s;
}

void sdw_st_release(const sdw_safetensors *st, const sdw_st_tensor *t)
{
    if (!st->map || !t->nbytes) return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t begin = ((uintptr_t)t->data + page - 1) & ~(page - 1);   /* whole pages inside the tensor only */
    uintptr_t end = ((uintptr_t)t->data + t->nbytes) & ~(page - 1);
    if (end > begin) madvise((void *)begin, end - begin, MADV_DONTNEED);
}

void sdw_st_page_out(const sdw_safetensors *st)
{
    if (st && st->map && st->map_size) madvise(st->map, st->map_size, MADV_DONTNEED);
}

sdw_status sdw_st_read_i64(const sdw_safetensors *st, const sdw_st_tensor *t, int64_t **out)
{
    if (t->dtype != SDW_ST_I64 && t->dtype != SDW_ST_I32)
        return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: tensor %s is %s, not an integer tensor", st->path, t->name,
                        sdw_st_dtype_name(t->dtype));
    int64_t *v = malloc(((size_t)t->numel + 1) * sizeof *v);
    if (!v) return sdw_fail(SDW_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < t->numel; i++) {
        if (t->dtype == SDW_ST_I64) memcpy(&v[i], (const char *)t->data + 8 * i, 8);
        else { int32_t x; memcpy(&x, (const char *)t->data + 4 * i, 4); v[i] = x; }
    }
    *out = v;
    return SDW_OK;
}
