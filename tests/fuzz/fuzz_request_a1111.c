/* fuzz_request_a1111.c: libFuzzer target for the AUTOMATIC1111 bodies
 * (sdw_parse_a1111_request as txt2img and as img2img, and the options body).
 * Seeds: corpus/fuzz_request_a1111/. */
#include "fuzz_request_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdw_request_limits l = fuzz_limits();
    for (int img2img = 0; img2img < 2; img2img++) {
        sdw_job_request r;
        sdw_clear_error();
        sdw_status s = sdw_parse_a1111_request((const char *)data, size, img2img, &l, &r);
        fuzz_check_request(s, &r, &l);
    }
    char *name = NULL;
    sdw_clear_error();
    if (sdw_parse_a1111_options((const char *)data, size, &name) != SDW_OK && (name || !sdw_last_error()[0])) abort();
    free(name);
    return 0;
}
