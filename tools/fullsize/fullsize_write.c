/* fullsize_write.c: see fullsize_write.h. A tensor is produced CHUNK
 * elements at a time (a multiple of the 32-element Q8_0 block, so blocks
 * never straddle chunks), rounded to its list dtype, encoded to its stored
 * type and handed to the sink. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include "fullsize_write.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (1u << 20) /* elements per step: 4 MB of float32 */
#define GGUF_ALIGN 32
#define GGML_F32 0
#define GGML_F16 1
#define GGML_Q8_0 8
#define GGML_BF16 30
#define GGUF_T_U32 4
#define GGUF_T_STRING 8
#define FTYPE_MOSTLY_Q8_0 7

static int werr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int fs_format_parse(const char *s, fs_format *out)
{
    static const char *const names[] = {"safetensors", "fp8", "gguf-q8_0"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (fs_format)i;
            return 0;
        }
    return -1;
}

const char *fs_format_name(fs_format f)
{
    static const char *const names[] = {"safetensors", "fp8", "gguf-q8_0"};
    return (unsigned)f < 3 ? names[f] : "?";
}

/* The input and output layers city96's quantizer (ComfyUI-GGUF's lcpp.patch /
 * lcpp_sd3.patch) leaves unquantized, per architecture. */
static const char *const flux_keep[] = {"txt_in.", "img_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer.",
                                        NULL};
static const char *const sd3_keep[] = {"final_layer.", "t_embedder.", "y_embedder.", "x_embedder.",
                                       "context_embedder.", "pos_embed", NULL};

/* An SD3 MMDiT has joint blocks (city96's convert.py tells the two apart the same way). */
static int is_sd3(const fs_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (strncmp(l->t[i].name, "joint_blocks.", 13) == 0) return 1;
    return 0;
}

const char *fs_gguf_arch(const fs_list *l) { return is_sd3(l) ? "sd3" : "flux"; }

static int gguf_keep(const char *const *keep, const char *name)
{
    for (size_t i = 0; keep[i]; i++)
        if (strstr(name, keep[i])) return 1;
    return 0;
}

fs_dtype fs_stored_type(const fs_list *l, const fs_tensor *t, fs_format f)
{
    switch (f) {
    case FS_FORMAT_SAFETENSORS: return t->dtype;
    case FS_FORMAT_FP8: return t->ndim >= 2 ? FS_F8_E4M3 : t->dtype;
    case FS_FORMAT_GGUF_Q8_0:
        if (t->ndim <= 1 || t->numel <= 1024) return FS_F32;
        if (is_sd3(l)) /* lcpp_sd3.patch quantizes 2-D tensors only: pos_embed and the patch conv stay */
            return t->ndim != 2 || gguf_keep(sd3_keep, t->name) ? t->dtype : FS_Q8_0;
        return gguf_keep(flux_keep, t->name) ? t->dtype : FS_Q8_0;
    }
    return t->dtype;
}

void fs_q8_0_block(const float *x, uint8_t out[34])
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t dh = fs_f32_to_f16(d);
    out[0] = (uint8_t)(dh & 0xFF);
    out[1] = (uint8_t)(dh >> 8);
    for (int j = 0; j < 32; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

/* ---------------------------------------------------------------- values */

/* The list dtype's rounding, in place: what a file of that dtype holds. */
static void round_to(fs_dtype dt, float *v, size_t n)
{
    if (dt == FS_F16)
        for (size_t i = 0; i < n; i++) v[i] = fs_f16_to_f32(fs_f32_to_f16(v[i]));
    else if (dt == FS_BF16)
        for (size_t i = 0; i < n; i++) v[i] = fs_bf16_to_f32(fs_f32_to_bf16(v[i]));
}

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFF);
    p[1] = (uint8_t)(v >> 8);
}

/* n values (already rounded to the list dtype) as stored type st into out;
 * returns the byte count. */
static size_t encode(fs_dtype st, const float *v, size_t n, uint8_t *out)
{
    switch (st) {
    case FS_F16:
        for (size_t i = 0; i < n; i++) put_le16(out + 2 * i, fs_f32_to_f16(v[i]));
        return 2 * n;
    case FS_BF16:
        for (size_t i = 0; i < n; i++) put_le16(out + 2 * i, fs_f32_to_bf16(v[i]));
        return 2 * n;
    case FS_F32:
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            for (int b = 0; b < 4; b++) out[4 * i + (size_t)b] = (uint8_t)(u >> (8 * b));
        }
        return 4 * n;
    case FS_F8_E4M3:
        for (size_t i = 0; i < n; i++) out[i] = fs_f32_to_f8e4m3(v[i]);
        return n;
    case FS_Q8_0:
        for (size_t i = 0; i < n / 32; i++) fs_q8_0_block(v + 32 * i, out + 34 * i);
        return n / 32 * 34;
    }
    return 0;
}

typedef struct {
    float *v;
    uint8_t *bytes;
    uint16_t *h;
} buffers;

/* One tensor's data, chunk by chunk. */
static int write_tensor(const fs_tensor *t, fs_dtype st, uint64_t seed, const fs_sink *s, buffers *b)
{
    for (uint64_t a = 0; a < t->numel; a += CHUNK) {
        size_t n = t->numel - a < CHUNK ? (size_t)(t->numel - a) : CHUNK;
        if (st == FS_F16 && t->dtype == FS_F16) {
            /* The SD recipe's own path (README section 1), bit for bit. */
            fs_fill(t, seed, a, n, b->h);
            fs_to_le16(b->h, n);
            if (s->put(s->user, b->h, 2 * n)) return -1;
            continue;
        }
        fs_fill_f32(t, seed, a, n, b->v);
        round_to(t->dtype, b->v, n);
        size_t nb = encode(st, b->v, n, b->bytes);
        if (s->put(s->user, b->bytes, nb)) return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- GGUF header */

typedef struct {
    uint8_t *p;
    size_t len, cap;
    int oom;
} bytebuf;

static void bb_put(bytebuf *b, const void *p, size_t n)
{
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n) cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void bb_u32(bytebuf *b, uint32_t v)
{
    uint8_t x[4];
    for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> (8 * i));
    bb_put(b, x, 4);
}

static void bb_u64(bytebuf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    bb_put(b, x, 8);
}

static void bb_str(bytebuf *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}

static uint32_t ggml_type(fs_dtype t)
{
    switch (t) {
    case FS_F16: return GGML_F16;
    case FS_BF16: return GGML_BF16;
    case FS_Q8_0: return GGML_Q8_0;
    default: return GGML_F32;
    }
}

static uint64_t align_up(uint64_t x) { return (x + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN; }

/* Magic, version 3, the KVs city96's files carry, the tensor infos (ne =
 * the torch shape reversed, offsets aligned), padded to the alignment. */
static int gguf_header(const fs_list *l, const fs_dtype *types, bytebuf *b, uint64_t *data_bytes)
{
    bb_put(b, "GGUF", 4);
    bb_u32(b, 3);
    bb_u64(b, l->n);
    bb_u64(b, 3);
    bb_str(b, "general.architecture");
    bb_u32(b, GGUF_T_STRING);
    bb_str(b, fs_gguf_arch(l));
    bb_str(b, "general.quantization_version");
    bb_u32(b, GGUF_T_U32);
    bb_u32(b, 2);
    bb_str(b, "general.file_type");
    bb_u32(b, GGUF_T_U32);
    bb_u32(b, FTYPE_MOSTLY_Q8_0);
    uint64_t off = 0;
    for (size_t i = 0; i < l->n; i++) {
        const fs_tensor *t = &l->t[i];
        bb_str(b, t->name);
        bb_u32(b, (uint32_t)(t->ndim ? t->ndim : 1));
        if (t->ndim == 0) bb_u64(b, 1);
        for (int d = t->ndim - 1; d >= 0; d--) bb_u64(b, t->shape[d]);
        bb_u32(b, ggml_type(types[i]));
        bb_u64(b, off);
        off = align_up(off + fs_dtype_bytes(types[i], t->numel));
    }
    static const uint8_t zeros[GGUF_ALIGN] = {0};
    bb_put(b, zeros, (size_t)(align_up(b->len) - b->len));
    *data_bytes = off;
    return b->oom ? -1 : 0;
}

/* ---------------------------------------------------------------- the file */

static int check_types(const fs_list *l, const fs_dtype *types, fs_format f, char *err, size_t errlen)
{
    for (size_t i = 0; i < l->n; i++) {
        const fs_tensor *t = &l->t[i];
        if (types[i] == FS_Q8_0 && (t->ndim == 0 || t->shape[t->ndim - 1] % 32))
            return werr(err, errlen, "%s: rows of %llu elements cannot be Q8_0 (blocks of 32)", t->name,
                        (unsigned long long)(t->ndim ? t->shape[t->ndim - 1] : 1));
        if (f == FS_FORMAT_GGUF_Q8_0 && t->ndim == 0)
            return werr(err, errlen, "%s: a scalar has no place in a %s GGUF", t->name, fs_gguf_arch(l));
        /* city96's quantizer refuses a checkpoint's prefixed names: a GGUF holds the bare transformer. */
        if (f == FS_FORMAT_GGUF_Q8_0 &&
            (strstr(t->name, "model.diffusion_model.") || strstr(t->name, "first_stage_model.")))
            return werr(err, errlen, "%s: a GGUF holds the transformer under bare names (give the *-mmdit list)",
                        t->name);
    }
    return 0;
}

int fs_write(const fs_list *l, fs_format f, uint64_t seed, const fs_sink *s, uint64_t *total, char *err,
             size_t errlen)
{
    fs_dtype *types = malloc((l->n ? l->n : 1) * sizeof *types);
    buffers b = {malloc(CHUNK * sizeof(float)), malloc(CHUNK * 4), malloc(CHUNK * sizeof(uint16_t))};
    bytebuf hdr = {0};
    char *st_hdr = NULL;
    int rc = -1;
    if (errlen) err[0] = 0;
    if (!types || !b.v || !b.bytes || !b.h) {
        werr(err, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < l->n; i++) types[i] = fs_stored_type(l, &l->t[i], f);
    if (check_types(l, types, f, err, errlen)) goto done;
    uint64_t data_bytes = 0, written = 0;
    if (f == FS_FORMAT_GGUF_Q8_0) {
        if (gguf_header(l, types, &hdr, &data_bytes)) {
            werr(err, errlen, "out of memory");
            goto done;
        }
        if (s->put(s->user, hdr.p, hdr.len)) goto io;
        written = hdr.len;
    } else {
        size_t hlen;
        if (!(st_hdr = fs_header_typed(l, types, &hlen, &data_bytes))) {
            werr(err, errlen, "out of memory");
            goto done;
        }
        uint8_t n8[8];
        for (int i = 0; i < 8; i++) n8[i] = (uint8_t)((uint64_t)hlen >> (8 * i)); /* u64 little-endian */
        if (s->put(s->user, n8, 8) || s->put(s->user, st_hdr, hlen)) goto io;
        written = 8 + hlen;
    }
    static const uint8_t zeros[GGUF_ALIGN] = {0};
    uint64_t off = 0;
    for (size_t i = 0; i < l->n; i++) {
        const fs_tensor *t = &l->t[i];
        uint64_t nb = fs_dtype_bytes(types[i], t->numel);
        if (s->tensor_begin && s->tensor_begin(s->user, i)) goto io;
        if (write_tensor(t, types[i], seed, s, &b)) goto io;
        if (s->tensor_end && s->tensor_end(s->user, i, nb)) goto io;
        off += nb;
        if (f == FS_FORMAT_GGUF_Q8_0 && align_up(off) != off) {
            if (s->put(s->user, zeros, (size_t)(align_up(off) - off))) goto io;
            off = align_up(off);
        }
    }
    *total = written + off;
    rc = 0;
    goto done;
io:
    if (!err[0]) werr(err, errlen, "write failed");
done:
    free(types);
    free(b.v);
    free(b.bytes);
    free(b.h);
    free(hdr.p);
    free(st_hdr);
    return rc;
}
