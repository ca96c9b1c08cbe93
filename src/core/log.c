/* log.c: one process-wide log sink; library code never prints by itself. */
#include "core/log.h"
#include <stdarg.h>
#include <stdio.h>

static sdw_log_fn log_fn;
static void *log_user;
static sdw_log_level log_min = SDW_LOG_INFO;

void sdw_set_log(sdw_log_fn fn, void *user, sdw_log_level min_level)
{
    log_fn = fn;
    log_user = user;
    log_min = min_level;
}

void sdw_log(sdw_log_level level, const char *fmt, ...)
{
    if (!log_fn || level < log_min) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_fn(level, msg, log_user);
}
