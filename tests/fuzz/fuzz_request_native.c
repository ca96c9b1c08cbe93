/* fuzz_request_native.c: libFuzzer target for POST /v1/jobs bodies
 * (sdw_parse_native_request): any input ends in a request within the limits
 * or an error with a message; nothing leaks. Seeds: corpus/fuzz_request_native/. */
#include "fuzz_request_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdw_request_limits l = fuzz_limits();
    sdw_job_request r;
    sdw_clear_error();
    sdw_status s = sdw_parse_native_request((const char *)data, size, &l, &r);
    fuzz_check_request(s, &r, &l);
    return 0;
}
