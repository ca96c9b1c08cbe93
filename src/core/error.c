/* error.c: thread-local last-error message behind sdw_last_error(). */
#include "core/error.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *sdw_last_error(void) { return last_error; }
void sdw_clear_error(void) { last_error[0] = 0; }

sdw_status sdw_fail(sdw_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

sdw_status sdw_fail_context(sdw_status s, const char *fmt, ...)
{
    char prefix[512], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    snprintf(last_error, sizeof last_error, "%s: %s", prefix, old);
    return s;
}

const char *sdw_status_name(sdw_status s)
{
    switch (s) {
    case SDW_OK: return "ok";
    case SDW_ERR_INVALID_ARG: return "invalid argument";
    case SDW_ERR_IO: return "i/o error";
    case SDW_ERR_FORMAT: return "malformed input";
    case SDW_ERR_UNSUPPORTED: return "unsupported";
    case SDW_ERR_NOMEM: return "out of memory";
    case SDW_ERR_BACKEND: return "backend error";
    case SDW_ERR_CANCELLED: return "cancelled";
    }
    return "unknown status";
}
