/* header_watchdog.h: cuts connections whose request headers do not arrive
 * within --request-timeout. libmicrohttpd's own timeout only measures idle
 * time, so a client sending a header byte a second would hold its
 * connection (and, here, its thread) for ever; the body is timed in
 * on_access, which runs only once the headers are complete. */
#ifndef SDW_SERVER_HEADER_WATCHDOG_H
#define SDW_SERVER_HEADER_WATCHDOG_H
#include <microhttpd.h>

typedef struct sdw_header_watchdog sdw_header_watchdog;

/* NULL when timeout_s <= 0 (no watchdog) or on failure. */
sdw_header_watchdog *sdw_header_watchdog_start(double timeout_s);
void sdw_header_watchdog_stop(sdw_header_watchdog *w);
/* MHD_OPTION_NOTIFY_CONNECTION's callback, with w as its closure. */
void sdw_header_watchdog_notify(void *w, struct MHD_Connection *c, void **socket_context,
                                enum MHD_ConnectionNotificationCode code);
/* A request's headers are in (first on_access call): no longer timed here. */
void sdw_header_watchdog_headers_done(struct MHD_Connection *c);
/* A request finished on a kept-alive connection: the next headers are timed. */
void sdw_header_watchdog_request_done(struct MHD_Connection *c);
#endif
