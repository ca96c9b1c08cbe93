/* fullsize_recipe.h: the deterministic random-weight recipe of
 * tests/data/fullsize/README.md section 1 (tensor lists, values, safetensors
 * header), shared by sdw-make-fullsize and tests/test_fullsize_recipe.c.
 * Compile fullsize_recipe.c with -ffp-contract=off: the recipe forbids FMA. */
#ifndef SDW_FULLSIZE_RECIPE_H
#define SDW_FULLSIZE_RECIPE_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FS_GOLDEN 0x9E3779B97F4A7C15ULL
#define FS_MAX_DIMS 8

typedef enum { FS_WEIGHT, FS_NORM, FS_BIAS, FS_EMB, FS_CONST } fs_init;

/* Element types: a list's dtype column is F16, BF16 or F32 (the value is
 * rounded to it); the writers (fullsize_write.h) also store F8_E4M3 and
 * GGUF's Q8_0 blocks. */
typedef enum { FS_F16, FS_BF16, FS_F32, FS_F8_E4M3, FS_Q8_0 } fs_dtype;

typedef struct {
    char *name;
    int ndim; /* 0 for a scalar */
    uint64_t shape[FS_MAX_DIMS];
    uint64_t numel;
    fs_init init;
    double param; /* fan_in for FS_WEIGHT, the value for FS_CONST, 0 otherwise */
    fs_dtype dtype; /* the list's dtype column: FS_F16, FS_BF16 or FS_F32 */
} fs_tensor;

typedef struct {
    fs_tensor *t;
    size_t n;
    uint64_t params; /* total elements */
} fs_list;

/* --- values --- */
uint64_t fs_fnv1a64(const void *data, size_t len);
uint64_t fs_key(uint64_t seed, const char *name);
/* Top 24 bits of the splitmix64 finaliser of key + (i + 1) * G. */
uint32_t fs_k(uint64_t key, uint64_t i);
/* The double of one element (not used for FS_CONST). */
double fs_value(fs_init init, double param, uint32_t k);
/* float32 -> float16 bits, round to nearest even, subnormals kept. */
uint16_t fs_f32_to_f16(float f);
/* float32 -> bfloat16 bits, round to nearest even (NaN stays NaN). */
uint16_t fs_f32_to_bf16(float f);
float fs_f16_to_f32(uint16_t h);
float fs_bf16_to_f32(uint16_t h);
/* float32 -> float8 e4m3fn bits exactly as torch's .to(torch.float8_e4m3fn)
 * (c10's fp8e4m3fn_from_fp32_value): round to nearest even, subnormals
 * kept, |x| >= 480 (and NaN) -> NaN (0x7F with the sign), no saturation. */
uint8_t fs_f32_to_f8e4m3(float f);
/* Elements [start, start + count) of t as f16 bits (host order). */
void fs_fill(const fs_tensor *t, uint64_t seed, uint64_t start, size_t count, uint16_t *out);
/* The same elements as float32: the recipe's double rounded once (the
 * value every dtype is rounded from; fs_fill = f16 of these). */
void fs_fill_f32(const fs_tensor *t, uint64_t seed, uint64_t start, size_t count, float *out);
/* Converts f16 bits in place to little-endian byte order (no-op on LE hosts). */
void fs_to_le16(uint16_t *p, size_t n);
const char *fs_init_name(fs_init init);

/* --- tensor lists (<family>.tensors.txt) --- */
/* Parses and validates a list (dtypes F16, BF16 or F32, names strictly
 * ascending and safe to put in JSON unescaped). Returns 0, or -1 with a
 * message in err. */
int fs_list_load(const char *path, fs_list *out, char *err, size_t errlen);
void fs_list_free(fs_list *l);

/* "F16", "BF16", "F32", "F8_E4M3" (safetensors' names), "Q8_0". */
const char *fs_dtype_name(fs_dtype t);
/* Bytes of numel elements of t (Q8_0: numel a multiple of 32). */
uint64_t fs_dtype_bytes(fs_dtype t, uint64_t numel);

/* The padded compact-JSON safetensors header (malloc'd, *len bytes, a
 * multiple of 8, not NUL-terminated) and the data size in bytes; NULL on
 * allocation failure. Tensors are stored as types[i], or (types NULL) as
 * their list dtype; Q8_0 has no safetensors name and must not be given. */
char *fs_header_typed(const fs_list *l, const fs_dtype *types, size_t *len, uint64_t *data_bytes);
char *fs_header(const fs_list *l, size_t *len, uint64_t *data_bytes);

/* Prints the README's test vectors to out (may be NULL) and returns the
 * number of mismatches against the README's values. */
int fs_selftest(FILE *out);
#endif
