/* fuzz_request_openai.c: libFuzzer target for the OpenAI Images bodies: the
 * input is a POST /v1/images/generations JSON body, and also a
 * POST /v1/images/edits multipart body (boundary "B") parsed into a form
 * and then into an edit request. Seeds: corpus/fuzz_request_openai/. */
#include "fuzz_request_check.h"
#include "server/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdw_request_limits l = fuzz_limits();
    sdw_job_request r;
    sdw_clear_error();
    sdw_status s = sdw_parse_openai_generation((const char *)data, size, &l, &r);
    fuzz_check_request(s, &r, &l);

    sdw_multipart form;
    sdw_clear_error();
    if (sdw_multipart_parse("multipart/form-data; boundary=B", data, size, &form) != SDW_OK) {
        if (!sdw_last_error()[0] || form.n || form.parts) abort();
        return 0;
    }
    sdw_clear_error();
    s = sdw_parse_openai_edit(&form, &l, &r);
    if (s == SDW_OK && (r.kind != SDW_JOB_INPAINT || !r.mask.w)) abort();
    fuzz_check_request(s, &r, &l);
    sdw_multipart_free(&form);
    return 0;
}
