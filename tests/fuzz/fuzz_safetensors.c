/* fuzz_safetensors.c: libFuzzer target for the safetensors reader. Parses the
 * input as a safetensors image, then exercises every accessor on what it
 * accepted: find by name, metadata lookups, and reading each small tensor as
 * f32 (float dtypes) or int64 (integer dtypes). Not part of the ctest suite;
 * build and run with `make fuzz-smoke`. */
#include "io/safetensors.h"
#include "io/quant.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

#define MAX_READ_ELEMS 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdw_safetensors *st = NULL;
    if (sdw_st_parse(data, size, "fuzz.safetensors", &st) != SDW_OK) {
        if (st) abort();                       /* a failed parse returns nothing */
        if (!sdw_last_error()[0]) abort();     /* and always says why */
        return 0;
    }
    static float buf[MAX_READ_ELEMS];
    for (int i = 0; i < st->n_tensors; i++) {
        const sdw_st_tensor *t = &st->tensors[i];
        if (sdw_st_find(st, t->name) != t) abort();
        const uint8_t *p = t->data;
        if (p < data || p + t->nbytes > data + size) abort();   /* stays inside the input */
        size_t bb, blk = sdw_st_dtype_block(t->dtype, &bb);   /* GGUF input has block types */
        if (t->numel < 0 || !blk || t->numel % blk || (uint64_t)t->numel / blk * bb != t->nbytes) abort();
        if (t->numel > MAX_READ_ELEMS) continue;
        if (sdw_st_read_f32(st, t, buf) != SDW_OK) {
            if (t->dtype == SDW_ST_F32 || t->dtype == SDW_ST_F16 || t->dtype == SDW_ST_BF16 ||
                sdw_is_quantized(t->dtype))
                abort();
        }
        int64_t *iv = NULL;
        if (sdw_st_read_i64(st, t, &iv) == SDW_OK) free(iv);
    }
    /* the reader's promise: no two non-empty ranges overlap */
    if (st->n_tensors <= 256)
        for (int i = 0; i < st->n_tensors; i++)
            for (int j = i + 1; j < st->n_tensors; j++) {
                const sdw_st_tensor *a = &st->tensors[i], *b = &st->tensors[j];
                const uint8_t *pa = a->data, *pb = b->data;
                if (a->nbytes && b->nbytes && pa < pb + b->nbytes && pb < pa + a->nbytes) abort();
            }
    for (int i = 0; i < st->n_meta; i++)
        if (!sdw_st_meta_get(st, st->meta[i].key)) abort();
    sdw_st_find(st, "");
    sdw_st_meta_get(st, "format");
    sdw_st_close(st);
    return 0;
}
