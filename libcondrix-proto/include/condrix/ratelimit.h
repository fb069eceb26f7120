/* Rate limiting keyed by client address: a sliding budget of new connections, failed
 * authentications with growing delay and a block after too many, and a per-connection
 * message budget. Pure state: the clock (ms) is passed in; no timers. */
#ifndef CONDRIX_RATELIMIT_H
#define CONDRIX_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct cx_ratelimit_config {
    int conn_max;        /* new connections per address per conn_window_s */
    int conn_window_s;
    int auth_max;        /* failed auths per address per auth_window_s, then block */
    int auth_window_s;
    int msg_max;         /* messages per connection per msg_window_s */
    int msg_window_s;
    int block_s;         /* block length after auth_max failures */
} cx_ratelimit_config;

/* Defaults from limits.h, then CONDRIX_RATE_CONN_MAX, CONDRIX_RATE_AUTH_MAX,
 * CONDRIX_RATE_MSG_MAX, CONDRIX_RATE_BLOCK_SECONDS (and *_WINDOW_SECONDS) from the
 * environment. Returns CX_E_INVAL (and leaves defaults) for a malformed value; name
 * of the bad variable in *bad if not NULL. */
int cx_ratelimit_config_from_env(cx_ratelimit_config *cfg, const char **bad);
void cx_ratelimit_config_default(cx_ratelimit_config *cfg);

typedef struct cx_ratelimit cx_ratelimit; /* opaque: a table of addresses */

cx_ratelimit *cx_ratelimit_new(const cx_ratelimit_config *cfg);
void cx_ratelimit_free(cx_ratelimit *rl);

/* A new connection from addr at now_ms. CX_OK, or CX_E_LIMITED with *retry_after_s
 * set (also when the address is blocked). */
int cx_ratelimit_connection(cx_ratelimit *rl, const char *addr, int64_t now_ms, int *retry_after_s);
/* Before checking credentials: CX_OK, or CX_E_LIMITED when the address is blocked,
 * with *retry_after_s. */
int cx_ratelimit_auth_allowed(cx_ratelimit *rl, const char *addr, int64_t now_ms, int *retry_after_s);
/* Record a failed authentication. Returns the delay in ms to wait before answering
 * (exponential: 0 for the first, then 250, 500, 1000 ... capped at 4000), and blocks
 * the address for block_s once auth_max failures fall in the window (*blocked true). */
int cx_ratelimit_auth_failed(cx_ratelimit *rl, const char *addr, int64_t now_ms, bool *blocked);
/* Successes do not count, and clear the failure streak of the address. */
void cx_ratelimit_auth_succeeded(cx_ratelimit *rl, const char *addr);
/* Drop entries idle for longer than every window (call now and then). */
void cx_ratelimit_sweep(cx_ratelimit *rl, int64_t now_ms);

/* Per-connection message budget: a fixed window, kept in the connection (8 bytes). */
typedef struct cx_msg_budget {
    int64_t window_start_ms;
    int32_t count;
} cx_msg_budget;
/* CX_OK or CX_E_LIMITED. */
int cx_ratelimit_message(const cx_ratelimit *rl, cx_msg_budget *b, int64_t now_ms);

#endif
