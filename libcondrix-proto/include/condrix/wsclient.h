/* Outbound WebSocket connections on libuv: ws:// or wss:// (certificate and host name
 * verified against the system CA bundle plus an extra CA file), the HTTP upgrade, then
 * a client-role session. Used by the Core's link to Maestro, the CLI and the tests. */
#ifndef CONDRIX_WSCLIENT_H
#define CONDRIX_WSCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct cx_wsc cx_wsc; /* opaque: one outbound connection */

typedef struct cx_wsc_callbacks {
    /* The upgrade succeeded; messages may be sent. */
    void (*on_open)(cx_wsc *c, void *ud);
    /* One complete text message, valid only during the call. */
    void (*on_message)(cx_wsc *c, void *ud, const char *msg, size_t len);
    /* The connection ended or could not be made: code is the close code (1006 when the
     * link died or never opened) and reason the peer's reason or what went wrong
     * ("connection refused", "TLS: certificate verification failed ...", "HTTP 403").
     * Called exactly once; the client is freed after it returns. */
    void (*on_close)(cx_wsc *c, void *ud, uint16_t code, const char *reason);
} cx_wsc_callbacks;

typedef struct cx_wsc_options {
    const char *url;           /* ws://host[:port][/path] or wss://... */
    const char *ca_file;       /* extra trusted CA (PEM) for wss, may be NULL */
    const char *extra_headers; /* added to the upgrade request, lines end in \r\n; may be NULL */
    size_t max_message;        /* 0: CX_WS_MAX_MESSAGE_BYTES */
    uint32_t timeout_ms;       /* connect + TLS + upgrade; 0: 10000 */
    uint32_t ping_ms;          /* ping this often; 0: never */
    uint32_t pong_ms;          /* close when nothing was heard this long; 0: never */
} cx_wsc_options;

/* Split a ws:// or wss:// URL. host gets the name without brackets; port defaults to 80
 * or 443; path to "/". CX_E_INVAL for anything else. */
int cx_wsc_parse_url(const char *url, bool *tls, char *host, size_t host_size, int *port,
                     char *path, size_t path_size);

/* Start connecting. On CX_OK *out is the client and exactly one on_close will follow.
 * On failure nothing is called and *err (may be NULL) gets a malloc'd explanation. */
int cx_wsc_connect(uv_loop_t *loop, const cx_wsc_options *opt, const cx_wsc_callbacks *cb,
                   void *ud, cx_wsc **out, char **err);
/* Send a text message once open. CX_E_CLOSED otherwise. */
int cx_wsc_send_text(cx_wsc *c, const char *msg, size_t len);
/* Close with a code and reason (or abort the attempt before the upgrade). on_close follows. */
void cx_wsc_close(cx_wsc *c, uint16_t code, const char *reason);
bool cx_wsc_is_open(const cx_wsc *c);

#endif
