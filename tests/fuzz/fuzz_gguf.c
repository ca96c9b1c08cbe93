/* fuzz_gguf.c: libFuzzer target for the GGUF reader (io/gguf.c) and the
 * dequantizers (io/quant.c). Parses the input as a GGUF image, checks the
 * reader's promises on what it accepted (data inside the input and sized by
 * its dtype's blocks, torch shape multiplying to numel, the last dimension a
 * whole number of blocks, names found, no overlaps), decodes every small
 * tensor to f32, and checks that sdw_st_parse (detection by the magic) gives
 * the same answer. Seeds: tests/fuzz/corpus/fuzz_gguf/ (tiny valid files
 * with every KV type and every block type). Not part of the ctest suite;
 * build and run with `make fuzz-smoke`. */
#include "io/gguf.h"
#include "io/quant.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

#define MAX_READ_ELEMS 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_tensor(const sdw_safetensors *st, const sdw_st_tensor *t, const uint8_t *data, size_t size)
{
    static float buf[MAX_READ_ELEMS];
    if (sdw_st_find(st, t->name) != t) abort();
    const uint8_t *p = t->data;
    if (p < data || t->nbytes > size || p - data > (ptrdiff_t)(size - t->nbytes)) abort();   /* inside the input */
    size_t bytes, block = sdw_st_dtype_block(t->dtype, &bytes);
    if (!block || t->numel < 0 || t->ndim < 0 || t->ndim > SDW_ST_MAX_DIMS) abort();
    int64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
    if (numel != t->numel || t->numel % (int64_t)block) abort();
    if (block > 1 && (t->ndim == 0 || t->shape[t->ndim - 1] % (int64_t)block)) abort();
    if ((uint64_t)t->numel / block * bytes != t->nbytes) abort();
    if (t->numel > MAX_READ_ELEMS) return;
    if (sdw_st_read_f32(st, t, buf) != SDW_OK) abort();   /* every type GGUF gives us decodes */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdw_safetensors *st = NULL, *st2 = NULL;
    sdw_status s = sdw_gguf_parse(data, size, "fuzz.gguf", &st);
    if (size >= 4 && !memcmp(data, SDW_GGUF_MAGIC, 4)) {
        if (sdw_st_parse(data, size, "fuzz.gguf", &st2) != s) abort();
        sdw_st_close(st2);
    }
    if (s != SDW_OK) {
        if (st) abort();                       /* a failed parse returns nothing */
        if (!sdw_last_error()[0]) abort();     /* and always says why */
        return 0;
    }
    for (int i = 0; i < st->n_tensors; i++) check_tensor(st, &st->tensors[i], data, size);
    /* no two non-empty ranges overlap */
    if (st->n_tensors <= 256)
        for (int i = 0; i < st->n_tensors; i++)
            for (int j = i + 1; j < st->n_tensors; j++) {
                const sdw_st_tensor *a = &st->tensors[i], *b = &st->tensors[j];
                const uint8_t *pa = a->data, *pb = b->data;
                if (a->nbytes && b->nbytes && pa < pb + b->nbytes && pb < pa + a->nbytes) abort();
            }
    for (int i = 0; i < st->n_meta; i++)
        if (!sdw_st_meta_get(st, st->meta[i].key)) abort();
    sdw_st_meta_get(st, "general.architecture");
    sdw_st_close(st);
    return 0;
}
