/* server_log.h: the server's own log lines on stderr (one per request, one
 * per job state change), each with a UTC timestamp. Whole lines are written
 * with one call, so threads do not interleave within a line. */
#ifndef SDW_SERVER_SERVER_LOG_H
#define SDW_SERVER_SERVER_LOG_H
#include <stdbool.h>

void sdw_srv_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Turns the lines off (tests that start the server in-process). */
void sdw_srv_log_enable(bool on);
#endif
