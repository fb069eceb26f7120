/* Logging for operators: one line per event on stderr, with time, level and component.
 * Never pass a secret; log a token's prefix (cx_token_prefix) instead. */
#ifndef CONDRIX_LOG_H
#define CONDRIX_LOG_H

enum cx_log_level { CX_LOG_DEBUG, CX_LOG_INFO, CX_LOG_WARN, CX_LOG_ERROR };

/* Level from CONDRIX_LOG_LEVEL ("debug", "info", "warn", "error"); default info. */
void cx_log_init(const char *component);
void cx_log_set_level(enum cx_log_level lvl);
void cx_log(enum cx_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define cx_log_debug(...) cx_log(CX_LOG_DEBUG, __VA_ARGS__)
#define cx_log_info(...) cx_log(CX_LOG_INFO, __VA_ARGS__)
#define cx_log_warn(...) cx_log(CX_LOG_WARN, __VA_ARGS__)
#define cx_log_error(...) cx_log(CX_LOG_ERROR, __VA_ARGS__)

#endif
