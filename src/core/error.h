/* error.h: how library code reports failure. A function that fails calls
 * sdw_fail(status, fmt, ...) and returns what it returns; the message stays in
 * a thread-local buffer for sdw_last_error(). */
#ifndef SDW_CORE_ERROR_H
#define SDW_CORE_ERROR_H
#include "sdw.h"

sdw_status sdw_fail(sdw_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with more context ("loading X: <old message>"). */
sdw_status sdw_fail_context(sdw_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sdw_clear_error(void);

#define SDW_TRY(expr) do { sdw_status st_ = (expr); if (st_ != SDW_OK) return st_; } while (0)
#endif
