/* log.h: library logging, routed to the callback set with sdw_set_log(). */
#ifndef SDW_CORE_LOG_H
#define SDW_CORE_LOG_H
#include "sdw.h"
void sdw_log(sdw_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define SDW_DEBUG(...) sdw_log(SDW_LOG_DEBUG, __VA_ARGS__)
#define SDW_INFO(...) sdw_log(SDW_LOG_INFO, __VA_ARGS__)
#define SDW_WARN(...) sdw_log(SDW_LOG_WARN, __VA_ARGS__)
#endif
