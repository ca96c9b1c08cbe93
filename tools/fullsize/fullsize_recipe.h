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

typedef struct {
    char *name;
    int ndim; /* 0 for a scalar */
    uint64_t shape[FS_MAX_DIMS];
    uint64_t numel;
    fs_init init;
    double param; /* fan_in for FS_WEIGHT, the value for FS_CONST, 0 otherwise */
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
/* Elements [start, start + count) of t as f16 bits (host order). */
void fs_fill(const fs_tensor *t, uint64_t seed, uint64_t start, size_t count, uint16_t *out);
/* Converts f16 bits in place to little-endian byte order (no-op on LE hosts). */
void fs_to_le16(uint16_t *p, size_t n);
const char *fs_init_name(fs_init init);

/* --- tensor lists (<family>.tensors.txt) --- */
/* Parses and validates a list (F16 only, names strictly ascending and safe to
 * put in JSON unescaped). Returns 0, or -1 with a message in err. */
int fs_list_load(const char *path, fs_list *out, char *err, size_t errlen);
void fs_list_free(fs_list *l);

/* The padded compact-JSON header (malloc'd, *len bytes, a multiple of 8, not
 * NUL-terminated) and the data size in bytes; NULL on allocation failure. */
char *fs_header(const fs_list *l, size_t *len, uint64_t *data_bytes);

/* Prints the README's test vectors to out (may be NULL) and returns the
 * number of mismatches against the README's values. */
int fs_selftest(FILE *out);
#endif
