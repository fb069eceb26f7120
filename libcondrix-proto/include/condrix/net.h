/* Server connections over libuv TCP, optionally TLS (mbedTLS), each one a state machine:
 * TCP -> (TLS) -> HTTP head -> WebSocket -> closing. Every stage has a deadline and every
 * buffer a cap; output is queued with a cap and a peer that does not read is dropped.
 * An idle WebSocket connection holds only its small struct and the libuv handle: reads
 * land in one buffer shared by the whole loop. */
#ifndef CONDRIX_NET_H
#define CONDRIX_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "condrix/config.h"
#include "condrix/http.h"
#include "condrix/ratelimit.h"

typedef struct cx_server cx_server; /* opaque: a listener and its connections */
typedef struct cx_conn cx_conn;     /* opaque: one accepted connection */

/* Size and time bounds of a server (PROTOCOL.md section 1), each configurable. */
typedef struct cx_server_limits {
    size_t head_bytes;    /* HTTP request head (431 beyond) */
    size_t message_bytes; /* WebSocket message (close 1009 beyond) */
    size_t outq_bytes;    /* queued output per connection (slow consumer beyond) */
    uint32_t upgrade_ms;  /* accept to upgrade done */
    uint32_t auth_ms;     /* upgrade to first message (close 1008 "auth timeout") */
    uint32_t signin_ms;   /* first message to authenticated (close 1008 "auth timeout"):
                           * bounds a connection that keeps talking but never signs in */
    uint32_t ping_ms;     /* ping interval */
    uint32_t pong_ms;     /* no pong this long: close */
} cx_server_limits;

/* Defaults from limits.h. */
void cx_server_limits_default(cx_server_limits *lim);
/* Defaults overridden by CONDRIX_LIMIT_HEAD_BYTES, _MESSAGE_BYTES, _OUTQ_BYTES,
 * _UPGRADE_MS, _AUTH_MS, _PING_MS, _PONG_MS. CX_E_INVAL with *bad naming the variable. */
int cx_server_limits_from_env(cx_server_limits *lim, const char **bad);

typedef struct cx_server_callbacks {
    /* A plain HTTP request (no upgrade). Answer with cx_conn_http_reply; unanswered
     * requests get a 404. */
    void (*on_http)(cx_server *srv, cx_conn *c, const cx_http_req *req);
    /* A valid WebSocket upgrade request. Return 0 to accept or an HTTP status to refuse.
     * The request is valid only during the call. */
    int (*on_upgrade)(cx_server *srv, cx_conn *c, const cx_http_req *req);
    /* The session is open (101 sent). */
    void (*on_open)(cx_server *srv, cx_conn *c);
    /* One complete, valid UTF-8 text message; valid only during the call. */
    void (*on_message)(cx_server *srv, cx_conn *c, const char *msg, size_t len);
    /* The connection is gone (code: the close code, 1006 when the link died). Called
     * once for every connection that reached on_open; the app frees its data here. */
    void (*on_close)(cx_server *srv, cx_conn *c, uint16_t code);
} cx_server_callbacks;

/* A server on loop. cb is copied; ud is returned by cx_server_data. */
int cx_server_new(uv_loop_t *loop, const cx_server_callbacks *cb, void *ud,
                  const cx_server_limits *lim, cx_server **out);
/* Serve TLS with a PEM certificate chain and key. *err (malloc'd) explains a failure. */
int cx_server_set_tls(cx_server *srv, const char *cert_path, const char *key_path, char **err);
/* Header lines ("Name: value\r\n"...) added to the answers the server itself gives to bad
 * HTTP (400, 426, 431, 503): a web-serving app's security headers. Must outlive srv. */
void cx_server_set_error_headers(cx_server *srv, const char *headers);
/* Who may connect. From now on every upgrade request learns its client address (the
 * peer, or what a proxy in `trusted` forwarded: see cx_client_addr) and is held to rl's
 * new-connection limit. An over-limit connection that is not blocked for failed
 * authentications completes the upgrade and is closed at once with 1008 "rate limited;
 * retry in N s"; the application never hears of it. A blocked address is let in, so its
 * first request can hear RATE_LIMITED from the application. rl and trusted must outlive
 * the server; either may be NULL (no limit; the peer is the client). */
void cx_server_set_admission(cx_server *srv, cx_ratelimit *rl, const cx_cidr_list *trusted);
/* A server set up the way the Condrix binaries are configured: limits from
 * CONDRIX_LIMIT_*, rate limits from CONDRIX_RATE_*, trusted proxies from
 * CONDRIX_TRUSTED_PROXIES (admission as cx_server_set_admission; the server owns and frees
 * these), and TLS when tls_cert or tls_key is given (both are needed; env_prefix, such as
 * "CONDRIX_CORE", names their variables in messages). What is wrong is logged for the
 * operator. rcfg_out (may be NULL) gets the rate-limit settings, for the caller's own
 * limiters. CX_OK, CX_E_INVAL, CX_E_TLS or CX_E_NOMEM (nothing made). */
int cx_server_from_env(uv_loop_t *loop, const cx_server_callbacks *cb, void *ud,
                       const char *tls_cert, const char *tls_key, const char *env_prefix,
                       cx_ratelimit_config *rcfg_out, cx_server **out);
/* The server's rate limiter (cx_server_from_env or cx_server_set_admission), or NULL. */
cx_ratelimit *cx_server_ratelimit(const cx_server *srv);
/* Bind and listen. port 0 picks a free port (see cx_server_port). */
int cx_server_listen(cx_server *srv, const char *host, int port, char **err);
int cx_server_port(const cx_server *srv);
bool cx_server_is_tls(const cx_server *srv);
void *cx_server_data(const cx_server *srv);
uv_loop_t *cx_server_loop(const cx_server *srv);
size_t cx_server_conn_count(const cx_server *srv);
/* Call fn for every open WebSocket connection. fn may close connections. */
void cx_server_foreach(cx_server *srv, void (*fn)(cx_conn *c, void *arg), void *arg);
/* Stop accepting, close every connection with code/reason, and call done once all are
 * gone (or after a short grace period). */
void cx_server_shutdown(cx_server *srv, uint16_t code, const char *reason,
                        void (*done)(cx_server *srv));
/* Free after shutdown's done callback ran (or if it never listened). */
void cx_server_free(cx_server *srv);

/* The socket peer's address as text ("127.0.0.1", "::1"). */
const char *cx_conn_peer(const cx_conn *c);
/* The client's address for limits and logs: the peer, or the address a trusted proxy
 * forwarded (cx_server_set_admission). Set from the upgrade on; valid as long as c. */
const char *cx_conn_client_addr(const cx_conn *c);
void cx_conn_set_data(cx_conn *c, void *data);
void *cx_conn_data(const cx_conn *c);
cx_server *cx_conn_server(const cx_conn *c);
/* Send one text message. CX_E_CLOSED once closing; output past the cap closes the
 * connection 1008 "slow consumer" and returns CX_E_CLOSED. */
int cx_conn_send_text(cx_conn *c, const char *msg, size_t len);
/* Start closing with a WebSocket close code and reason (<= 123 bytes). Idempotent. */
void cx_conn_close(cx_conn *c, uint16_t code, const char *reason);
bool cx_conn_closing(const cx_conn *c);
/* The app authenticated the session: the auth deadline no longer applies. */
void cx_conn_set_authenticated(cx_conn *c);
/* Answer a plain HTTP request; the connection closes after the answer is sent. To a
 * HEAD request only the head goes out, its Content-Length still len. */
void cx_conn_http_reply(cx_conn *c, int status, const char *content_type,
                        const char *extra_headers, const void *body, size_t len);
/* Call fn(c, arg) after ms; fn gets c == NULL when the connection closed meanwhile
 * (fn must still free arg). CX_E_NOMEM if no timer could be made (fn not called). */
int cx_conn_defer(cx_conn *c, uint32_t ms, void (*fn)(cx_conn *c, void *arg), void *arg);

#endif
