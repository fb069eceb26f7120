/* Configuration helpers: environment variables with defaults, numbers and durations,
 * booleans, and the trusted-proxy list that decides whose forwarding headers count. */
#ifndef CONDRIX_CONFIG_H
#define CONDRIX_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

/* getenv with a default for unset or empty. */
const char *cx_env_str(const char *name, const char *def);
/* Parse a decimal integer in [min, max]. CX_OK or CX_E_INVAL. */
int cx_parse_int(const char *s, long min, long max, long *out);
/* The variable as an int in [min,max], def when unset; CX_E_INVAL when malformed. */
int cx_env_int(const char *name, long def, long min, long max, long *out);
/* "1", "true", "yes", "on" => true; "0", "false", "no", "off", "" => false
 * (case-insensitive); anything else CX_E_INVAL. */
int cx_parse_bool(const char *s, bool *out);
/* Durations: "90" (seconds), "90s", "15m", "2h", "7d", "1w". CX_OK or CX_E_INVAL. */
int cx_parse_duration(const char *s, int64_t *seconds);
/* Home directory for data: CONDRIX_HOME, else $HOME/.condrix. malloc'd. */
char *cx_default_home(void);
/* Create dir (and parents) with mode 0700; tighten an existing one to 0700. */
int cx_mkdir_private(const char *path);

/* A list of addresses and CIDR ranges, IPv4 and IPv6 ("127.0.0.0/8, ::1, 10.1.2.3"). */
typedef struct cx_cidr_list cx_cidr_list; /* opaque */
/* Parse a comma/space separated list; "" gives an empty list. NULL spec means the
 * default: loopback (127.0.0.0/8 and ::1). CX_E_INVAL for a bad entry. */
int cx_cidr_list_parse(const char *spec, cx_cidr_list **out);
void cx_cidr_list_free(cx_cidr_list *l);
/* True when the textual address (v4, v6, or v4-mapped v6) is in the list. */
bool cx_cidr_list_contains(const cx_cidr_list *l, const char *addr);
/* True for 127.0.0.0/8, ::1 and ::ffff:127.x.y.z. */
bool cx_addr_is_loopback(const char *addr);

/* Which address a request comes from. peer: the socket's address. When the peer is in
 * trusted, CF-Connecting-IP if present and a valid address, else the last entry of
 * X-Forwarded-For if valid; otherwise the peer. out gets at most 46 chars + NUL. */
void cx_client_addr(const cx_cidr_list *trusted, const char *peer, const char *cf_connecting_ip,
                    const char *x_forwarded_for, char out[64]);

#endif
