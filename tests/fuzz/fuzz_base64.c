/* fuzz_base64.c: libFuzzer target for the base64 codec. The input is decoded
 * as text (a failure must leave no output and say why); what decodes must
 * re-encode to a string that decodes to the same bytes, and must respect the
 * size limit. The input is also encoded as bytes and must decode back to
 * itself. Not part of the ctest suite; `make fuzz-smoke` builds it. */
#include "io/base64.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

#define LIMIT 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(const uint8_t *bytes, size_t n)
{
    char *enc;
    size_t elen;
    if (sdw_base64_encode(bytes, n, &enc, &elen) != SDW_OK) abort();
    if (elen != sdw_base64_encoded_len(n) || strlen(enc) != elen) abort();
    uint8_t *back;
    size_t bn;
    if (sdw_base64_decode(enc, elen, n, &back, &bn) != SDW_OK) abort();
    if (bn != n || memcmp(back, bytes, n)) abort();
    free(back);
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *out = (uint8_t *)1;
    size_t n = 1;
    sdw_clear_error();
    if (sdw_base64_decode((const char *)data, size, LIMIT, &out, &n) != SDW_OK) {
        if (out || n) abort();
        if (!sdw_last_error()[0]) abort();
    } else {
        if (!out || n > LIMIT || n > size) abort();
        roundtrip(out, n);
        free(out);
    }
    roundtrip(data, size);
    return 0;
}
