/* fuzz_multipart.c: libFuzzer target for the multipart/form-data parser.
 * The input's first line is the Content-Type header value, the rest the
 * body. Every part must lie inside the body, in order, with NUL-terminated
 * names; a failure leaves no parts. Seeds: corpus/fuzz_multipart/. */
#include "server/multipart.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t hn = nl ? (size_t)(nl - data) : size;
    char *ct = malloc(hn + 1);
    if (!ct) return 0;
    memcpy(ct, data, hn);
    ct[hn] = 0;
    const uint8_t *body = nl ? nl + 1 : data + size;
    size_t n = (size_t)(data + size - body);
    sdw_multipart m;
    sdw_clear_error();
    if (sdw_multipart_parse(ct, body, n, &m) != SDW_OK) {
        if (m.n || m.parts || !sdw_last_error()[0]) abort();
    } else {
        const uint8_t *prev = body;
        for (int i = 0; i < m.n; i++) {
            const sdw_multipart_part *p = &m.parts[i];
            if (p->data < prev || p->data + p->len > body + n) abort();
            if (!memchr(p->name, 0, sizeof p->name) || !memchr(p->filename, 0, sizeof p->filename) ||
                !memchr(p->content_type, 0, sizeof p->content_type))
                abort();
            if (sdw_multipart_get(&m, p->name) == NULL) abort();
            prev = p->data + p->len;
        }
        if (m.n > SDW_MULTIPART_MAX_PARTS) abort();
        sdw_multipart_free(&m);
    }
    free(ct);
    return 0;
}
