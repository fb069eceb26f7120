/* Every size and time bound of the protocol in one place, with units.
 * Servers may lower or raise the configurable ones at run time. */
#ifndef CONDRIX_LIMITS_H
#define CONDRIX_LIMITS_H

#define CX_HTTP_MAX_HEAD_BYTES        (16 * 1024)   /* request head cap (431 beyond) */
#define CX_HTTP_MAX_HEADERS           64            /* header lines per request */
#define CX_WS_MAX_MESSAGE_BYTES       (1024 * 1024) /* close 1009 beyond */
/* A request Maestro relays to a Core: a client's message re-encoded plus `relay`. The
 * Core's link takes this much; Maestro answers larger ones itself. */
#define CX_RELAY_MAX_MESSAGE_BYTES    (CX_WS_MAX_MESSAGE_BYTES + 64 * 1024)
#define CX_WS_MAX_CONTROL_BYTES       125           /* RFC 6455 5.5 */
#define CX_NET_MAX_OUTQ_BYTES         (8 * 1024 * 1024) /* slow consumer beyond */
#define CX_NET_UPGRADE_TIMEOUT_MS     10000         /* TCP accept to upgrade done */
#define CX_NET_AUTH_TIMEOUT_MS        10000         /* upgrade to first message */
#define CX_NET_SIGNIN_TIMEOUT_MS      120000        /* first message to authenticated */
#define CX_WS_PING_INTERVAL_MS        30000         /* server pings this often */
#define CX_WS_PONG_TIMEOUT_MS         90000         /* no pong this long: close */
#define CX_NET_CLOSE_LINGER_MS        2000          /* wait for the peer's close frame */
/* The last instant an ISO 8601 timestamp with a four-digit year can name. */
#define CX_TIME_MAX_MS                INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z */
#define CX_MSG_MAX_ID_CHARS           128           /* envelope id length */
#define CX_MSG_MAX_INVALID_IN_ROW     5             /* then close 1008 */
#define CX_AUTH_REQUIRED_STRIKES      3             /* non-auth requests before auth */

#define CX_TOKEN_BYTES                32            /* random bytes per token */
#define CX_TOKEN_HEX_CHARS            64
#define CX_TOKEN_PREFIX_CHARS         8             /* shown for display */
#define CX_TOKEN_NAME_MAX_CHARS       64

#define CX_TOTP_SECRET_BYTES          20            /* 160-bit, RFC 4226 recommendation */
#define CX_TOTP_DIGITS                6
#define CX_TOTP_PERIOD_S              30
#define CX_TOTP_DRIFT_STEPS           1
#define CX_TOTP_URI_MAX_BYTES         4096          /* otpauth:// URI, issuer and account included */

#define CX_PAIRING_CODE_CHARS         6
#define CX_PAIRING_DEFAULT_TTL_S      900

/* Rate limit defaults (ARCHITECTURE.md); each has a CONDRIX_RATE_* variable. */
#define CX_RATE_CONN_MAX              10            /* new connections per address */
#define CX_RATE_CONN_WINDOW_S         60
#define CX_RATE_AUTH_MAX              5             /* failed auths per address */
#define CX_RATE_AUTH_WINDOW_S         300
#define CX_RATE_MSG_MAX               100           /* messages per connection */
#define CX_RATE_MSG_WINDOW_S          1
#define CX_RATE_BLOCK_S               300

#define CX_CORE_AUDIT_MAX_ROWS        100000        /* core.db audit rows kept (newest) */

#endif
