/* WebSocket sessions (RFC 6455) over wslay, in server or client role. Sans-I/O:
 * the caller feeds received bytes in, and gets whole text messages and bytes to
 * send out through callbacks. Text only; messages capped; UTF-8 checked.
 *
 * Memory: while a session is idle (no partial frame buffered, no fragmented
 * message in progress, nothing queued) it holds no wslay context and no buffers,
 * only the small cx_ws struct. The wslay context is made on demand. */
#ifndef CONDRIX_WS_H
#define CONDRIX_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Close codes (PROTOCOL.md section 7). */
enum cx_ws_close_code {
    CX_WS_CLOSE_NORMAL = 1000,
    CX_WS_CLOSE_GOING_AWAY = 1001,
    CX_WS_CLOSE_PROTOCOL = 1002,
    CX_WS_CLOSE_UNSUPPORTED = 1003, /* binary frame */
    CX_WS_CLOSE_NO_STATUS = 1005,   /* never sent; reported when a close had no code */
    CX_WS_CLOSE_ABNORMAL = 1006,    /* never sent; reported when the TCP link died */
    CX_WS_CLOSE_BAD_DATA = 1007,    /* invalid UTF-8 */
    CX_WS_CLOSE_POLICY = 1008,
    CX_WS_CLOSE_TOO_BIG = 1009,
    CX_WS_CLOSE_INTERNAL = 1011,
    CX_WS_CLOSE_ROTATED = 4001,
    CX_WS_CLOSE_SESSION = 4002,
    CX_WS_CLOSE_REPLACED = 4003,
};

enum cx_ws_role { CX_WS_SERVER, CX_WS_CLIENT };

typedef struct cx_ws cx_ws; /* opaque */

typedef struct cx_ws_callbacks {
    /* A complete, valid UTF-8 text message. msg is valid only during the call. */
    void (*on_message)(void *ud, const char *msg, size_t len);
    /* Bytes to put on the wire, in order. Return 0, or a negative code to fail the
     * session (cx_ws_feed / cx_ws_send_* then return CX_E_CLOSED). Must take all bytes. */
    int (*on_send)(void *ud, const uint8_t *data, size_t len);
    /* A pong arrived (keep-alive). May be NULL. */
    void (*on_pong)(void *ud);
    /* The closing handshake is done from our side's point of view: we have sent a close
     * frame (ours or the echo of the peer's) and the peer sent one or we gave up waiting.
     * code/reason: the peer's close if it sent one, else the one we sent. The caller
     * should flush pending output and close the transport. Called once. */
    void (*on_closed)(void *ud, uint16_t code, const char *reason);
} cx_ws_callbacks;

/* A new session. max_message caps a reassembled message (close 1009 beyond).
 * cb must outlive the session (a static table). Returns NULL on ENOMEM. */
cx_ws *cx_ws_new(enum cx_ws_role role, const cx_ws_callbacks *cb, void *ud, size_t max_message);
/* Free the session and anything it holds. Calls no callback. */
void cx_ws_free(cx_ws *ws);

/* Feed received bytes, any split. Calls on_message for each complete message, and
 * on_send for replies (pong, close). Protocol failures do not return an error: they
 * queue the right close frame (1002 bad framing, 1003 binary, 1007 bad UTF-8,
 * 1009 too big) and later call on_closed.
 * Returns CX_OK, CX_E_CLOSED if the session is closing/closed and takes no more input,
 * CX_E_NOMEM. */
int cx_ws_feed(cx_ws *ws, const uint8_t *data, size_t len);

/* Send one text message (len bytes of UTF-8, not checked). CX_E_CLOSED after close. */
int cx_ws_send_text(cx_ws *ws, const char *msg, size_t len);
/* Send a ping with an empty payload. */
int cx_ws_send_ping(cx_ws *ws);
/* Start the closing handshake with this code and reason (<= 123 bytes). Further
 * input is read only for the peer's close. Idempotent. */
int cx_ws_close(cx_ws *ws, uint16_t code, const char *reason);

/* True once we sent a close frame. */
bool cx_ws_close_sent(const cx_ws *ws);
/* True once the peer's close frame arrived: a well-behaved peer sends nothing after it. */
bool cx_ws_close_received(const cx_ws *ws);
/* True while the session holds a wslay context or buffered bytes (for tests). */
bool cx_ws_holds_state(const cx_ws *ws);

#endif
