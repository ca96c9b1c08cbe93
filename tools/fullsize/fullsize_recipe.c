/* fullsize_recipe.c: the full-size random-weight recipe (see the header and
 * tests/data/fullsize/README.md section 1). Every number here must match the
 * numpy reference bit for bit, so the arithmetic follows the README literally:
 * doubles, each operation rounded, no FMA (built with -ffp-contract=off). */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* getline, strdup, strtok_r, fileno, clock_gettime */
#endif
#include "fullsize_recipe.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MIX1 0xBF58476D1CE4E5B9ULL
#define MIX2 0x94D049BB133111EBULL
/* fl(0.02 * fl(sqrt(3))) = bits 0x3FA1BC779EF0D4E8, spelled exactly. */
#define EMB_SCALE 0x1.1bc779ef0d4e8p-5

/* ------------------------------------------------------------------ values */

uint64_t fs_fnv1a64(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 0xCBF29CE484222325ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001B3ULL;
    return h;
}

uint64_t fs_key(uint64_t seed, const char *name)
{
    return fs_fnv1a64(name, strlen(name)) ^ (seed * FS_GOLDEN);
}

uint32_t fs_k(uint64_t key, uint64_t i)
{
    uint64_t x = key + (i + 1) * FS_GOLDEN;
    x = (x ^ (x >> 30)) * MIX1;
    x = (x ^ (x >> 27)) * MIX2;
    x = x ^ (x >> 31);
    return (uint32_t)(x >> 40);
}

/* (k - 2^23) / 2^23: exact in double. */
static inline double k_to_v(uint32_t k) { return (double)((int32_t)k - (1 << 23)) * 0x1p-23; }

double fs_value(fs_init init, double param, uint32_t k)
{
    double v = k_to_v(k);
    switch (init) {
    case FS_WEIGHT: return v / sqrt(param);
    case FS_NORM: return 1.0 + 0.1 * v;
    case FS_BIAS: return 0.02 * v;
    case FS_EMB: return EMB_SCALE * v;
    case FS_CONST: return param;
    }
    return 0.0;
}

uint16_t fs_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) /* inf, or a quiet NaN keeping its top payload bits */
        return (uint16_t)(sign | 0x7C00u | (ax > 0x7F800000u ? 0x200u | ((ax >> 13) & 0x3FFu) : 0u));
    if (ax >= 0x47800000u) return (uint16_t)(sign | 0x7C00u); /* >= 65536: inf */
    if (ax >= 0x38800000u) {
        /* Normal half (>= 2^-14): rebias the exponent, round the 13 dropped
         * bits to nearest even; a carry may reach the next binade or inf. */
        uint32_t r = ax - 0x38000000u;
        r += 0xFFFu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    if (ax < 0x33000000u) return sign; /* < 2^-25 rounds to (signed) zero */
    /* Subnormal half: the value in units of 2^-24 is m >> (126 - e), rounded
     * to nearest even (2^-25 itself ties to 0); rounding up to 0x400 yields
     * the smallest normal. */
    uint32_t e = ax >> 23, m = (ax & 0x7FFFFFu) | 0x800000u, s = 126 - e;
    uint32_t q = m >> s, rem = m & ((1u << s) - 1u), half = 1u << (s - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

/* One loop per init so the switch is not inside the hot loop. */
void fs_fill(const fs_tensor *t, uint64_t seed, uint64_t start, size_t count, uint16_t *out)
{
    if (t->init == FS_CONST) {
        uint16_t h = fs_f32_to_f16((float)t->param);
        for (size_t j = 0; j < count; j++) out[j] = h;
        return;
    }
    uint64_t key = fs_key(seed, t->name);
    switch (t->init) {
    case FS_WEIGHT: {
        double s = sqrt(t->param);
        for (size_t j = 0; j < count; j++) out[j] = fs_f32_to_f16((float)(k_to_v(fs_k(key, start + j)) / s));
        break;
    }
    case FS_NORM:
        for (size_t j = 0; j < count; j++) {
            double p = 0.1 * k_to_v(fs_k(key, start + j));
            out[j] = fs_f32_to_f16((float)(1.0 + p));
        }
        break;
    case FS_BIAS:
        for (size_t j = 0; j < count; j++) out[j] = fs_f32_to_f16((float)(0.02 * k_to_v(fs_k(key, start + j))));
        break;
    case FS_EMB:
        for (size_t j = 0; j < count; j++)
            out[j] = fs_f32_to_f16((float)(EMB_SCALE * k_to_v(fs_k(key, start + j))));
        break;
    case FS_CONST: break;
    }
}

/* The same arithmetic as fs_fill, kept in float32. */
void fs_fill_f32(const fs_tensor *t, uint64_t seed, uint64_t start, size_t count, float *out)
{
    if (t->init == FS_CONST) {
        for (size_t j = 0; j < count; j++) out[j] = (float)t->param;
        return;
    }
    uint64_t key = fs_key(seed, t->name);
    switch (t->init) {
    case FS_WEIGHT: {
        double s = sqrt(t->param);
        for (size_t j = 0; j < count; j++) out[j] = (float)(k_to_v(fs_k(key, start + j)) / s);
        break;
    }
    case FS_NORM:
        for (size_t j = 0; j < count; j++) {
            double p = 0.1 * k_to_v(fs_k(key, start + j));
            out[j] = (float)(1.0 + p);
        }
        break;
    case FS_BIAS:
        for (size_t j = 0; j < count; j++) out[j] = (float)(0.02 * k_to_v(fs_k(key, start + j)));
        break;
    case FS_EMB:
        for (size_t j = 0; j < count; j++) out[j] = (float)(EMB_SCALE * k_to_v(fs_k(key, start + j)));
        break;
    case FS_CONST: break;
    }
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t fs_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float fs_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

float fs_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1F) return bits_f32(sign | 0x7F800000u | (m << 13));
    if (e) return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
    /* zero or subnormal: m * 2^-24, exact in float */
    float v = (float)m * 0x1p-24f;
    return sign ? -v : v;
}

uint8_t fs_f32_to_f8e4m3(float f)
{
    /* c10/util/Float8_e4m3fn.h, line for line: 480 and above (where
     * rounding would pass 448) and NaN become NaN; below 2^-6 the float
     * addition of 2^14 rounds to the subnormal grid (2^-9) to nearest even. */
    const uint32_t fp8_max = UINT32_C(1087) << 20, denorm_mask = UINT32_C(141) << 23;
    uint32_t fb = f32_bits(f);
    const uint32_t sign = fb & 0x80000000u;
    uint8_t r;
    fb ^= sign;
    if (fb >= fp8_max) {
        r = 0x7F;
    } else if (fb < (UINT32_C(121) << 23)) {
        fb = f32_bits(bits_f32(fb) + bits_f32(denorm_mask));
        r = (uint8_t)(fb - denorm_mask);
    } else {
        uint32_t odd = (fb >> 20) & 1u;
        fb += (uint32_t)(7 - 127) * (UINT32_C(1) << 23) + 0x7FFFFu; /* rebias (wraps), rounding bias 1 */
        fb += odd;                                                 /* rounding bias 2: ties to even */
        r = (uint8_t)(fb >> 20);
    }
    return (uint8_t)(r | (uint8_t)(sign >> 24));
}

void fs_to_le16(uint16_t *p, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++) p[i] = (uint16_t)((p[i] >> 8) | (p[i] << 8));
#else
    (void)p;
    (void)n;
#endif
}

const char *fs_dtype_name(fs_dtype t)
{
    static const char *const names[] = {"F16", "BF16", "F32", "F8_E4M3", "Q8_0"};
    return (unsigned)t < 5 ? names[t] : "?";
}

uint64_t fs_dtype_bytes(fs_dtype t, uint64_t numel)
{
    switch (t) {
    case FS_F16:
    case FS_BF16: return 2 * numel;
    case FS_F32: return 4 * numel;
    case FS_F8_E4M3: return numel;
    case FS_Q8_0: return numel / 32 * 34; /* f16 scale + 32 int8 per block */
    }
    return 0;
}

const char *fs_init_name(fs_init init)
{
    static const char *const names[] = {"weight", "norm", "bias", "emb", "const"};
    return (unsigned)init < 5 ? names[init] : "?";
}

/* ------------------------------------------------------------ tensor lists */

static int list_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* A full-string unsigned decimal >= 1 (no sign, no spaces). */
static int parse_pos_u64(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v == 0) return -1;
    *out = v;
    return 0;
}

static int parse_shape(char *s, fs_tensor *t)
{
    t->ndim = 0;
    t->numel = 1;
    if (strcmp(s, "scalar") == 0) return 0;
    char *save = NULL;
    for (char *d = strtok_r(s, ",", &save); d; d = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (t->ndim == FS_MAX_DIMS || parse_pos_u64(d, &v)) return -1;
        if (v > (UINT64_C(1) << 40) || t->numel > (UINT64_C(1) << 40) / v) return -1; /* keep 2*numel sane */
        t->shape[t->ndim++] = v;
        t->numel *= v;
    }
    return t->ndim ? 0 : -1;
}

/* Names go into the JSON header verbatim, so reject anything JSON escapes. */
static int name_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7E || *s == '"' || *s == '\\') return 0;
    return 1;
}

static int parse_line(char *line, fs_tensor *t, char *err, size_t errlen, const char *path, size_t lineno)
{
    char *f[6], *save = NULL;
    int n = 0;
    for (char *tok = strtok_r(line, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == 6) break;
        f[n++] = tok;
    }
    if (n != 5) return list_err(err, errlen, "%s:%zu: expected 5 fields", path, lineno);
    if (!name_ok(f[0])) return list_err(err, errlen, "%s:%zu: bad tensor name", path, lineno);
    if (strcmp(f[1], "F16") == 0) t->dtype = FS_F16;
    else if (strcmp(f[1], "BF16") == 0) t->dtype = FS_BF16;
    else if (strcmp(f[1], "F32") == 0) t->dtype = FS_F32;
    else return list_err(err, errlen, "%s:%zu: dtype %s is not F16, BF16 or F32", path, lineno, f[1]);
    if (parse_shape(f[2], t)) return list_err(err, errlen, "%s:%zu: bad shape", path, lineno);
    static const char *const inits[] = {"weight", "norm", "bias", "emb", "const"};
    int init = -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(f[3], inits[i]) == 0) init = i;
    if (init < 0) return list_err(err, errlen, "%s:%zu: unknown init %s", path, lineno, f[3]);
    t->init = (fs_init)init;
    t->param = 0.0;
    if (t->init == FS_WEIGHT) {
        uint64_t fan_in;
        if (parse_pos_u64(f[4], &fan_in) || fan_in > (UINT64_C(1) << 53))
            return list_err(err, errlen, "%s:%zu: bad fan_in %s", path, lineno, f[4]);
        t->param = (double)fan_in;
    } else if (t->init == FS_CONST) {
        char *end;
        errno = 0;
        t->param = strtod(f[4], &end); /* glibc strtod is correctly rounded, like Python's float() */
        if (errno || *end || end == f[4] || !isfinite(t->param))
            return list_err(err, errlen, "%s:%zu: bad const value %s", path, lineno, f[4]);
    } else if (strcmp(f[4], "-") != 0) {
        return list_err(err, errlen, "%s:%zu: param must be '-' for %s", path, lineno, f[3]);
    }
    t->name = strdup(f[0]);
    if (!t->name) return list_err(err, errlen, "out of memory");
    return 0;
}

int fs_list_load(const char *path, fs_list *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) return list_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, alloc = 0, lineno = 0;
    ssize_t got;
    int rc = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (line[0] == '#' || strspn(line, " \t\r\n") == (size_t)got) continue;
        if (out->n == alloc) {
            alloc = alloc ? 2 * alloc : 1024;
            fs_tensor *nt = realloc(out->t, alloc * sizeof *nt);
            if (!nt) {
                rc = list_err(err, errlen, "out of memory");
                break;
            }
            out->t = nt;
        }
        fs_tensor *t = &out->t[out->n];
        if ((rc = parse_line(line, t, err, errlen, path, lineno)) != 0) break;
        out->n++;
        /* File order is strcmp order; a list out of order was edited by hand. */
        if (out->n > 1 && strcmp(out->t[out->n - 2].name, t->name) >= 0) {
            rc = list_err(err, errlen, "%s:%zu: %s is not after %s (names must be ascending and unique)", path,
                          lineno, t->name, out->t[out->n - 2].name);
            break;
        }
        out->params += t->numel;
    }
    if (rc == 0 && ferror(f)) rc = list_err(err, errlen, "read error on %s", path);
    if (rc == 0 && out->n == 0) rc = list_err(err, errlen, "%s: no tensors", path);
    free(line);
    fclose(f);
    if (rc) fs_list_free(out);
    return rc;
}

void fs_list_free(fs_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->t[i].name);
    free(l->t);
    memset(l, 0, sizeof *l);
}

/* ------------------------------------------------------------------ header */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = 2 * b->cap + (size_t)n + 64;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

char *fs_header(const fs_list *l, size_t *len, uint64_t *data_bytes) { return fs_header_typed(l, NULL, len, data_bytes); }

char *fs_header_typed(const fs_list *l, const fs_dtype *types, size_t *len, uint64_t *data_bytes)
{
    strbuf b = {malloc(4096), 0, 4096, 0};
    if (!b.p) return NULL;
    uint64_t off = 0;
    sb_printf(&b, "{");
    for (size_t i = 0; i < l->n; i++) {
        const fs_tensor *t = &l->t[i];
        fs_dtype dt = types ? types[i] : t->dtype;
        uint64_t nb = fs_dtype_bytes(dt, t->numel);
        sb_printf(&b, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", t->name, fs_dtype_name(dt));
        for (int d = 0; d < t->ndim; d++) sb_printf(&b, "%s%llu", d ? "," : "", (unsigned long long)t->shape[d]);
        sb_printf(&b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + nb));
        off += nb;
    }
    sb_printf(&b, "}");
    while (!b.oom && b.len % 8) sb_printf(&b, " "); /* the README pads N to a multiple of 8 */
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    *data_bytes = off;
    return b.p;
}

/* --------------------------------------------------------------- selftest */

/* The README's test vectors (seed 1), as printed by make_fullsize.py. */
static const struct {
    const char *name;
    fs_init init;
    double param;
    uint64_t fnv, key;
    uint32_t k[3];
    const char *f64[3], *f32[3];
    uint16_t f16[3];
} VEC[] = {
    {"model.diffusion_model.input_blocks.0.0.weight", FS_WEIGHT, 36, 0x8c8ab0aac9d49768ULL, 0x12bdc913b69eeb7dULL,
     {7332845, 12631507, 8037625},
     {"-0.020976126194000244", "0.08429882923762004", "-0.0069734056790669756"},
     {"-0.0209761262", "0.0842988268", "-0.00697340583"},
     {0xa55f, 0x2d65, 0x9f24}},
    {"first_stage_model.decoder.norm_out.weight", FS_NORM, 0, 0x979cbfa2276d8463ULL, 0x09abc61b5827f876ULL,
     {5687598, 1013918, 12931823},
     {"0.96780145168304443", "0.9120868444442749", "1.0541593432426453"},
     {"0.967801452", "0.912086844", "1.0541594"},
     {0x3bbe, 0x3b4c, 0x3c37}},
    {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", FS_EMB, 0, 0x85a2a43fe8544e1fULL,
     0x1b95dd86971e320aULL, {8469155, 11240257, 15148772},
     {"0.00033262132739365186", "0.011775972731955008", "0.027916306294198161"},
     {"0.000332621334", "0.0117759723", "0.0279163066"},
     {0x0d73, 0x2208, 0x2726}},
    {"model.diffusion_model.input_blocks.1.0.in_layers.0.bias", FS_BIAS, 0, 0x89a2ca533a1d73baULL,
     0x1795b3ea45570fafULL, {8856683, 310003, 649814},
     {"0.0011159777641296387", "-0.019260895252227784", "-0.018450722694396973"},
     {"0.00111597776", "-0.0192608945", "-0.0184507221"},
     {0x1492, 0xa4ee, 0xa4b9}},
};

static int check(FILE *out, int ok, const char *what)
{
    if (!ok && out) fprintf(out, "MISMATCH: %s\n", what);
    return !ok;
}

int fs_selftest(FILE *out)
{
    int bad = 0;
    uint64_t e = fs_fnv1a64("", 0), a = fs_fnv1a64("a", 1);
    if (out) fprintf(out, "fnv1a64('') = 0x%016llx, fnv1a64('a') = 0x%016llx\n", (unsigned long long)e,
                     (unsigned long long)a);
    bad += check(out, e == 0xcbf29ce484222325ULL && a == 0xaf63dc4c8601ec8cULL, "fnv1a64 of '' / 'a'");
    double emb = 0.02 * sqrt(3.0);
    uint64_t eb;
    memcpy(&eb, &emb, sizeof eb);
    if (out) fprintf(out, "EMB_SCALE = %.17g (bits 0x%016llx)\n", emb, (unsigned long long)eb);
    bad += check(out, emb == EMB_SCALE && eb == 0x3fa1bc779ef0d4e8ULL, "EMB_SCALE");
    for (size_t v = 0; v < sizeof VEC / sizeof VEC[0]; v++) {
        const char *name = VEC[v].name;
        uint64_t fnv = fs_fnv1a64(name, strlen(name)), key = fs_key(1, name);
        if (out)
            fprintf(out, "seed 1, %s %s: fnv1a64(name) = 0x%016llx, key = 0x%016llx\n", fs_init_name(VEC[v].init),
                    name, (unsigned long long)fnv, (unsigned long long)key);
        bad += check(out, fnv == VEC[v].fnv && key == VEC[v].key, name);
        /* fs_fill is what the files are written with: check it, not only fs_value. */
        fs_tensor t = {.name = (char *)name, .ndim = 1, .shape = {3}, .numel = 3, .init = VEC[v].init,
                       .param = VEC[v].param};
        uint16_t h[3];
        fs_fill(&t, 1, 0, 3, h);
        for (int i = 0; i < 3; i++) {
            uint32_t k = fs_k(key, (uint64_t)i);
            double d = fs_value(VEC[v].init, VEC[v].param, k);
            float f = (float)d;
            char ds[40], fs[40], what[160];
            snprintf(ds, sizeof ds, "%.17g", d);
            snprintf(fs, sizeof fs, "%.9g", (double)f);
            if (out)
                fprintf(out, "   i=%d  k=%-8u double %-24s float32 %-14s float16 bits 0x%04x\n", i, k, ds, fs,
                        h[i]);
            snprintf(what, sizeof what, "%s element %d", name, i);
            bad += check(out,
                         k == VEC[v].k[i] && strcmp(ds, VEC[v].f64[i]) == 0 && strcmp(fs, VEC[v].f32[i]) == 0 &&
                             h[i] == VEC[v].f16[i] && fs_f32_to_f16(f) == h[i],
                         what);
        }
    }
    return bad;
}
