/* WebSocket sessions over wslay, built so an idle session costs only its small
 * struct: a wslay context (about 9 KB) exists only while there is work in flight.
 * Our own frame-header scanner sees every byte first: it rejects bad framing,
 * binary frames and oversized messages before any payload is buffered, keeps a
 * partial frame in a capped buffer, and hands wslay only complete frames, so
 * wslay never holds half a frame between calls and its context can be dropped
 * as soon as no fragmented message or closing handshake needs it. */
#include "condrix/ws.h"
#include "condrix/buf.h"
#include "condrix/error.h"
#include "condrix/limits.h"
#include "condrix/utf8.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#define FRAME_MAX_HEADER 14 /* 2 + 8 (64-bit length) + 4 (mask key) */
#define CLOSE_REASON_MAX 123
#define MAX_MESSAGE_CAP ((size_t)1 << 40) /* keeps frame sizes far from overflow */

enum ws_state {
    ST_OPEN,    /* messages flow both ways */
    ST_CLOSING, /* we sent a close; only the peer's close is awaited */
    ST_DONE,    /* on_closed was called, or the transport failed */
};

/* A parsed frame header (RFC 6455 5.2). */
struct frame {
    uint8_t fin;     /* final fragment */
    uint8_t rsv;     /* RSV1..3, must be 0: we negotiate no extension */
    uint8_t opcode;  /* 4-bit opcode */
    bool masked;     /* MASK bit */
    bool minimal;    /* the length used its shortest encoding */
    uint8_t key[4];  /* masking key when masked */
    uint64_t len;    /* payload length */
    size_t hlen;     /* header length in bytes */
};

/* Input of one cx_ws_feed call: the buffered partial frame followed by the
 * caller's bytes, read as one stream without joining them. Lives on the stack. */
struct rx {
    const uint8_t *a;    /* ws->in bytes (start of a frame) */
    size_t alen;         /* length of a */
    const uint8_t *b;    /* the caller's bytes */
    size_t blen;         /* length of b */
    size_t rd;           /* next byte for wslay */
    size_t frame_end;    /* end of the frame rd is in */
    size_t end;          /* end of the complete frames wslay may read */
    bool peer_close;     /* wslay received the peer's close */
    bool nomem;          /* an allocation failed inside a wslay callback */
    uint16_t peer_code;  /* its status code, 1005 when it had none */
    uint16_t fail_code;  /* the close code we queued to fail the session */
    const char *fail_reason;                /* and its reason */
    char peer_reason[CLOSE_REASON_MAX + 1]; /* the peer's close reason */
};

/* on_closed to call as the very last step of a public call. */
struct closed_note {
    bool call;          /* call it */
    uint16_t code;      /* code to report */
    const char *reason; /* reason to report, valid until the public call returns */
};

struct cx_ws {
    const cx_ws_callbacks *cb;   /* the caller's callbacks */
    void *ud;                    /* their user data */
    wslay_event_context_ptr ctx; /* NULL while idle */
    struct rx *rx;               /* the current feed, only inside cx_ws_feed */
    cx_buf in;                   /* leftover bytes of a partial frame */
    size_t max_message;          /* cap on a reassembled message */
    uint64_t frag_total;         /* payload so far of the fragmented message */
    uint16_t code_sent;          /* status code of the close we sent */
    uint8_t role;                /* enum cx_ws_role */
    uint8_t state;               /* enum ws_state */
    bool in_frag;                /* a fragmented message is in progress */
    bool app_closed;             /* cx_ws_close was called */
    bool close_sent;             /* our close frame is on the wire */
    bool close_received;         /* the peer's close frame arrived */
    bool send_failed;            /* on_send refused bytes */
    uint16_t pending_code;       /* close asked for inside a feed, sent after its replies */
    char *pending_reason;        /* its reason, malloc'd */
};

/* ---- frame scanning ---------------------------------------------------- */

/* Copy up to n bytes at stream offset off; returns how many were available. */
static size_t rx_peek(const struct rx *rx, size_t off, uint8_t *out, size_t n)
{
    size_t total = rx->alen + rx->blen, got = 0;
    if (off >= total)
        return 0;
    if (n > total - off)
        n = total - off;
    if (off < rx->alen) {
        size_t k = rx->alen - off < n ? rx->alen - off : n;
        memcpy(out, rx->a + off, k);
        got = k;
        off += k;
    }
    if (got < n)
        memcpy(out + got, rx->b + (off - rx->alen), n - got);
    return n;
}

/* Parse a header from avail bytes. Returns false if more bytes are needed. */
static bool parse_header(const uint8_t *p, size_t avail, struct frame *f)
{
    if (avail < 2)
        return false;
    f->fin = p[0] >> 7;
    f->rsv = (p[0] >> 4) & 7;
    f->opcode = p[0] & 0x0F;
    f->masked = (p[1] & 0x80) != 0;
    uint8_t len7 = p[1] & 0x7F;
    size_t h = 2;
    if (len7 == 126) {
        if (avail < 4)
            return false;
        f->len = (uint64_t)p[2] << 8 | p[3];
        f->minimal = f->len >= 126;
        h = 4;
    } else if (len7 == 127) {
        if (avail < 10)
            return false;
        f->len = 0;
        for (int i = 0; i < 8; i++)
            f->len = f->len << 8 | p[2 + i];
        f->minimal = f->len > 0xFFFF;
        h = 10;
    } else {
        f->len = len7;
        f->minimal = true;
    }
    if (f->masked) {
        if (avail < h + 4)
            return false;
        memcpy(f->key, p + h, 4);
        h += 4;
    }
    f->hlen = h;
    return true;
}

static bool is_control(uint8_t opcode)
{
    return (opcode & 0x08) != 0;
}

/* The close code this frame header earns, or 0 if it is acceptable here. */
static uint16_t check_header(const cx_ws *ws, const struct frame *f)
{
    uint8_t op = f->opcode;

    if (f->rsv || !f->minimal || (f->len >> 63))
        return CX_WS_CLOSE_PROTOCOL;
    if (f->masked != (ws->role == CX_WS_SERVER))
        return CX_WS_CLOSE_PROTOCOL;
    if (is_control(op)) {
        if (op > WSLAY_PONG || !f->fin || f->len > CX_WS_MAX_CONTROL_BYTES)
            return CX_WS_CLOSE_PROTOCOL;
        if (op == WSLAY_CONNECTION_CLOSE && f->len == 1)
            return CX_WS_CLOSE_PROTOCOL;
        return 0;
    }
    switch (op) {
    case WSLAY_CONTINUATION_FRAME:
        if (!ws->in_frag)
            return CX_WS_CLOSE_PROTOCOL;
        if (f->len > ws->max_message - ws->frag_total)
            return CX_WS_CLOSE_TOO_BIG;
        return 0;
    case WSLAY_TEXT_FRAME:
        if (ws->in_frag)
            return CX_WS_CLOSE_PROTOCOL;
        if (f->len > ws->max_message)
            return CX_WS_CLOSE_TOO_BIG;
        return 0;
    case WSLAY_BINARY_FRAME:
        return ws->in_frag ? CX_WS_CLOSE_PROTOCOL : CX_WS_CLOSE_UNSUPPORTED;
    default:
        return CX_WS_CLOSE_PROTOCOL; /* reserved data opcodes 3..7 */
    }
}

/* Walk the stream from its start over every complete, acceptable frame, updating
 * the fragmentation state as if they were consumed. Stops after a close frame
 * (nothing may follow it), at a partial frame, or at a frame that fails the
 * session, whose close code is returned (0 if none). */
static uint16_t scan(cx_ws *ws, const struct rx *rx, size_t *end, size_t *close_off,
                     bool *simple)
{
    size_t total = rx->alen + rx->blen, off = 0;
    uint16_t fail = 0;

    *close_off = SIZE_MAX;
    *simple = true;
    for (;;) {
        uint8_t h[FRAME_MAX_HEADER];
        struct frame f;
        size_t got = rx_peek(rx, off, h, sizeof h);
        if (!parse_header(h, got, &f))
            break;
        fail = check_header(ws, &f);
        if (fail)
            break;
        if (f.len > total - off - f.hlen)
            break;
        /* Simple: what the fast path handles (whole text messages, pongs; and for a
         * server, whose replies need no mask, pings and the close). */
        if (!f.fin || !(f.opcode == WSLAY_TEXT_FRAME || f.opcode == WSLAY_PONG ||
                        (ws->role == CX_WS_SERVER &&
                         (f.opcode == WSLAY_PING || f.opcode == WSLAY_CONNECTION_CLOSE))))
            *simple = false;
        if (!is_control(f.opcode)) {
            if (f.fin) {
                ws->in_frag = false;
                ws->frag_total = 0;
            } else {
                ws->in_frag = true;
                ws->frag_total += f.len;
            }
        }
        if (f.opcode == WSLAY_CONNECTION_CLOSE)
            *close_off = off;
        off += f.hlen + (size_t)f.len;
        if (f.opcode == WSLAY_CONNECTION_CLOSE)
            break;
    }
    *end = off;
    return fail;
}

static bool valid_close_code(uint16_t c)
{
    return (c >= 1000 && c <= 1011 && c != 1004 && c != 1005 && c != 1006) ||
           (c >= 3000 && c <= 4999);
}

/* XOR the masking key over p, eight bytes at a time where it can. */
static void unmask(uint8_t *p, size_t n, const uint8_t key[4])
{
    uint8_t k8[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
    uint64_t k;
    size_t i = 0;
    memcpy(&k, k8, sizeof k);
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, sizeof v);
        v ^= k;
        memcpy(p + i, &v, sizeof v);
    }
    for (; i < n; i++)
        p[i] ^= key[i % 4];
}

/* Read the peer's close frame at off ourselves: no wslay context exists while
 * we wait for it. */
static void read_close(const struct rx *rx, size_t off, struct rx *out)
{
    uint8_t h[FRAME_MAX_HEADER], p[CX_WS_MAX_CONTROL_BYTES];
    struct frame f;
    size_t got = rx_peek(rx, off, h, sizeof h);

    parse_header(h, got, &f); /* scan() already parsed it */
    size_t n = (size_t)f.len;
    rx_peek(rx, off + f.hlen, p, n);
    if (f.masked)
        unmask(p, n, f.key);
    out->peer_close = true;
    out->peer_reason[0] = '\0';
    if (n < 2) {
        out->peer_code = CX_WS_CLOSE_NO_STATUS;
        return;
    }
    out->peer_code = (uint16_t)(p[0] << 8 | p[1]);
    if (!valid_close_code(out->peer_code) || !cx_utf8_valid(p + 2, n - 2)) {
        out->peer_code = CX_WS_CLOSE_PROTOCOL;
        return;
    }
    memcpy(out->peer_reason, p + 2, n - 2);
    out->peer_reason[n - 2] = '\0';
}

/* ---- wslay glue ----------------------------------------------------------- */

/* Hands wslay the complete frames, one frame per call at most, so that a close
 * frame always starts at the front of wslay's input buffer and arrives whole. */
static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user_data)
{
    cx_ws *ws = user_data;
    struct rx *rx = ws->rx;
    (void)flags;

    if (!rx || rx->rd >= rx->end) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (rx->rd == rx->frame_end) {
        uint8_t h[FRAME_MAX_HEADER];
        struct frame f;
        size_t got = rx_peek(rx, rx->rd, h, sizeof h);
        parse_header(h, got, &f); /* scan() already accepted it */
        rx->frame_end = rx->rd + f.hlen + (size_t)f.len;
    }
    size_t n = rx->frame_end - rx->rd;
    if (n > len)
        n = len;
    rx_peek(rx, rx->rd, buf, n);
    rx->rd += n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user_data)
{
    cx_ws *ws = user_data;
    (void)flags;

    if (ws->cb->on_send(ws->ud, data, len) < 0) {
        ws->send_failed = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user_data)
{
    (void)ctx;
    (void)user_data;
    randombytes_buf(buf, len);
    return 0;
}

/* Fail the session from inside wslay_event_recv: queue our close, read no more. */
static void fail_in_recv(cx_ws *ws, uint16_t code, const char *reason)
{
    struct rx *rx = ws->rx;
    int r = wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, strlen(reason));

    if (r == 0) {
        rx->fail_code = code;
        rx->fail_reason = reason;
    } else if (r == WSLAY_ERR_NOMEM) {
        rx->nomem = true;
    }
    wslay_event_shutdown_read(ws->ctx);
}

static void on_msg_recv_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                           void *user_data)
{
    cx_ws *ws = user_data;
    struct rx *rx = ws->rx;
    (void)ctx;

    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
        if (ws->app_closed || rx->fail_code)
            return;
        if (!cx_utf8_valid(arg->msg, arg->msg_length)) {
            fail_in_recv(ws, CX_WS_CLOSE_BAD_DATA, "invalid UTF-8");
            return;
        }
        ws->cb->on_message(ws->ud, arg->msg ? (const char *)arg->msg : "", arg->msg_length);
        break;
    case WSLAY_BINARY_FRAME: /* scan() refuses these first; kept as a backstop */
        fail_in_recv(ws, CX_WS_CLOSE_UNSUPPORTED, "binary frames are not supported");
        break;
    case WSLAY_PONG:
        if (!ws->app_closed && ws->cb->on_pong)
            ws->cb->on_pong(ws->ud);
        break;
    case WSLAY_CONNECTION_CLOSE: {
        /* wslay checked the code and queued the echo; keep what on_closed reports. */
        size_t n = arg->msg_length > 2 ? arg->msg_length - 2 : 0;
        if (n > CLOSE_REASON_MAX)
            n = CLOSE_REASON_MAX;
        rx->peer_close = true;
        rx->peer_code = arg->status_code ? arg->status_code : CX_WS_CLOSE_NO_STATUS;
        if (n)
            memcpy(rx->peer_reason, arg->msg + 2, n);
        rx->peer_reason[n] = '\0';
        break;
    }
    default:
        break;
    }
}

static const struct wslay_event_callbacks wslay_cbs = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .genmask_callback = genmask_cb,
    .on_msg_recv_callback = on_msg_recv_cb,
};

static int ensure_ctx(cx_ws *ws)
{
    if (ws->ctx)
        return CX_OK;
    int r = ws->role == CX_WS_SERVER
                ? wslay_event_context_server_init(&ws->ctx, &wslay_cbs, ws)
                : wslay_event_context_client_init(&ws->ctx, &wslay_cbs, ws);
    if (r != 0) {
        ws->ctx = NULL;
        return CX_E_NOMEM;
    }
    wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->max_message);
    return CX_OK;
}

/* Drop the wslay context when nothing needs it: no fragmented message being
 * reassembled and nothing queued. Never inside a feed, whose callbacks use it. */
static void release_if_idle(cx_ws *ws)
{
    if (!ws->ctx || ws->rx)
        return;
    if (ws->state == ST_OPEN && (ws->in_frag || wslay_event_want_write(ws->ctx)))
        return;
    wslay_event_context_free(ws->ctx);
    ws->ctx = NULL;
}

/* The session is over (closed, or the transport failed): hold nothing. */
static void drop_all(cx_ws *ws)
{
    ws->state = ST_DONE;
    if (ws->ctx) {
        wslay_event_context_free(ws->ctx);
        ws->ctx = NULL;
    }
    cx_buf_free(&ws->in);
}

/* Send everything wslay has queued. on_send takes all bytes, so afterwards the
 * queue is empty unless on_send failed. */
static int flush(cx_ws *ws)
{
    int r = wslay_event_send(ws->ctx);
    if (r != 0) {
        int rc = ws->send_failed ? CX_E_CLOSED : CX_E_NOMEM;
        drop_all(ws);
        return rc;
    }
    if (!ws->close_sent && wslay_event_get_close_sent(ws->ctx)) {
        ws->close_sent = true;
        ws->code_sent = wslay_event_get_status_code_sent(ws->ctx);
    }
    return CX_OK;
}

/* ---- public API ------------------------------------------------------------ */

cx_ws *cx_ws_new(enum cx_ws_role role, const cx_ws_callbacks *cb, void *ud, size_t max_message)
{
    if (!cb || !cb->on_message || !cb->on_send || !cb->on_closed)
        return NULL;
    /* Client frames are masked with randombytes_buf, which needs libsodium ready. */
    if (role == CX_WS_CLIENT && sodium_init() < 0)
        return NULL;
    cx_ws *ws = calloc(1, sizeof *ws);
    if (!ws)
        return NULL;
    if (max_message == 0)
        max_message = CX_WS_MAX_MESSAGE_BYTES;
    if (max_message > MAX_MESSAGE_CAP)
        max_message = MAX_MESSAGE_CAP;
    ws->cb = cb;
    ws->ud = ud;
    ws->role = (uint8_t)role;
    ws->state = ST_OPEN;
    ws->max_message = max_message;
    /* Only ever one partial frame: its header and at most max_message payload. */
    cx_buf_init(&ws->in, max_message + FRAME_MAX_HEADER);
    return ws;
}

void cx_ws_free(cx_ws *ws)
{
    if (!ws)
        return;
    if (ws->ctx)
        wslay_event_context_free(ws->ctx);
    cx_buf_free(&ws->in);
    free(ws->pending_reason);
    free(ws);
}

/* ---- fast path -------------------------------------------------------------- */

/* Whole single-frame text messages are by far the common traffic, and going through
 * wslay would set up and tear down a context (about 13 KB) for every read. So when no
 * context is alive and the complete frames of a feed are all such messages, they are
 * unmasked and delivered here, and a server's messages are framed here; everything
 * else (control frames, fragments, closing) still goes through wslay. */
#define FAST_SCRATCH 4096

/* Deliver the frames [0, end), which scan() found to be whole text messages. Stops
 * early when the app closes the session or a send fails. Returns 0, or the close code
 * that fails the session (1007: not UTF-8); *nomem on an allocation failure. */
static int direct_send(cx_ws *ws, uint8_t opcode, const uint8_t *p, size_t n);

/* The peer's close frame (payload p, n bytes): echo its code as wslay would, and note
 * the handshake done. Returns 0, or the close code that fails the session instead. */
static uint16_t fast_close(cx_ws *ws, struct rx *rx, const uint8_t *p, size_t n)
{
    uint16_t code = CX_WS_CLOSE_NO_STATUS;
    if (n >= 2) {
        code = (uint16_t)(p[0] << 8 | p[1]);
        if (!valid_close_code(code))
            return CX_WS_CLOSE_PROTOCOL;
        if (!cx_utf8_valid(p + 2, n - 2))
            return CX_WS_CLOSE_BAD_DATA;
    }
    /* The echo carries the peer's code and reason (nothing for a bare close), as
     * wslay's does. */
    if (direct_send(ws, WSLAY_CONNECTION_CLOSE, p, n) != CX_OK)
        return 0; /* send_failed is set: the feed drops the session */
    ws->close_sent = true;
    ws->code_sent = code;
    rx->peer_close = true;
    rx->peer_code = code;
    memcpy(rx->peer_reason, p + 2, n >= 2 ? n - 2 : 0);
    rx->peer_reason[n >= 2 ? n - 2 : 0] = '\0';
    return 0;
}

/* Handle the frames [0, end), which scan() found simple. Stops early when the app
 * closes the session, a send fails or the peer closes. Returns 0, or the close code
 * that fails the session (1007: not UTF-8); *nomem on an allocation failure. */
static uint16_t fast_deliver(cx_ws *ws, struct rx *rx, size_t end, bool *nomem)
{
    uint8_t stack[FAST_SCRATCH];
    size_t off = 0;
    uint16_t fail = 0;

    while (off < end && !fail && !ws->app_closed && !ws->send_failed && !rx->peer_close) {
        uint8_t h[FRAME_MAX_HEADER];
        struct frame f;
        parse_header(h, rx_peek(rx, off, h, sizeof h), &f);
        size_t n = (size_t)f.len;
        uint8_t *p = n <= sizeof stack ? stack : malloc(n);
        if (!p) {
            *nomem = true;
            return 0;
        }
        rx_peek(rx, off + f.hlen, p, n);
        if (f.masked)
            unmask(p, n, f.key);
        off += f.hlen + n;
        switch (f.opcode) {
        case WSLAY_TEXT_FRAME:
            if (!cx_utf8_valid(p, n))
                fail = CX_WS_CLOSE_BAD_DATA;
            else
                ws->cb->on_message(ws->ud, (const char *)p, n);
            break;
        case WSLAY_PING:
            (void)direct_send(ws, WSLAY_PONG, p, n); /* a failure sets send_failed */
            break;
        case WSLAY_PONG:
            if (ws->cb->on_pong)
                ws->cb->on_pong(ws->ud);
            break;
        default: /* WSLAY_CONNECTION_CLOSE, the last frame scan() let through */
            fail = fast_close(ws, rx, p, n);
            break;
        }
        sodium_memzero(p, n); /* messages carry tokens and codes */
        if (p != stack)
            free(p);
    }
    return fail;
}

/* A server's frame, unmasked, header and payload in one on_send. Only while no wslay
 * context exists, so nothing queued there can be overtaken. */
static int direct_send(cx_ws *ws, uint8_t opcode, const uint8_t *p, size_t n)
{
    uint8_t stack[FAST_SCRATCH];
    size_t h = n < 126 ? 2 : n <= 0xFFFF ? 4 : 10;
    uint8_t *out = h + n <= sizeof stack ? stack : malloc(h + n);
    if (!out)
        return CX_E_NOMEM;
    out[0] = (uint8_t)(0x80 | opcode);
    if (h == 2) {
        out[1] = (uint8_t)n;
    } else if (h == 4) {
        out[1] = 126;
        out[2] = (uint8_t)(n >> 8);
        out[3] = (uint8_t)n;
    } else {
        out[1] = 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    }
    if (n)
        memcpy(out + h, p, n);
    int r = ws->cb->on_send(ws->ud, out, h + n);
    sodium_memzero(out, h + n);
    if (out != stack)
        free(out);
    if (r < 0) {
        ws->send_failed = true;
        if (!ws->rx) /* inside a feed, cx_ws_feed drops the session on its way out */
            drop_all(ws);
        return CX_E_CLOSED;
    }
    return CX_OK;
}

/* Let wslay read the complete frames [0, end), fail the session if scan() found
 * a bad frame after them, send what is queued, and work out what happened. */
static int run_wslay(cx_ws *ws, struct rx *rx, size_t end, uint16_t fail, struct closed_note *note)
{
    int rc = ensure_ctx(ws);
    if (rc)
        return rc;
    rx->end = end;
    ws->rx = rx;
    if (end > 0) {
        int r = wslay_event_recv(ws->ctx);
        if (r == WSLAY_ERR_NOMEM || rx->nomem) {
            ws->rx = NULL;
            return CX_E_NOMEM;
        }
        /* Any other error: wslay queued a bare close; it is handled as a failure below. */
    }
    ws->rx = NULL;
    if (ws->pending_code) {
        /* wslay sends control frames before queued data: flush the replies the app
         * queued in on_message first, or its close would overtake them. */
        rc = flush(ws);
        if (rc)
            return rc;
        const char *pr = ws->pending_reason ? ws->pending_reason : "";
        int r = wslay_event_queue_close(ws->ctx, ws->pending_code, (const uint8_t *)pr,
                                        strlen(pr));
        ws->pending_code = 0;
        free(ws->pending_reason);
        ws->pending_reason = NULL;
        if (r != 0 && r != WSLAY_ERR_NO_MORE_MSG)
            return CX_E_NOMEM;
    }
    if (fail) {
        const char *reason = fail == CX_WS_CLOSE_UNSUPPORTED ? "binary frames are not supported"
                             : fail == CX_WS_CLOSE_TOO_BIG   ? "message too big"
                             : fail == CX_WS_CLOSE_BAD_DATA  ? "invalid UTF-8"
                                                             : "protocol error";
        int r = wslay_event_queue_close(ws->ctx, fail, (const uint8_t *)reason, strlen(reason));
        if (r == 0) {
            rx->fail_code = fail;
            rx->fail_reason = reason;
        } else if (r != WSLAY_ERR_NO_MORE_MSG) {
            return CX_E_NOMEM;
        }
    }
    rc = flush(ws);
    if (rc)
        return rc;
    if (!ws->close_sent)
        return CX_OK;
    if (rx->peer_close) {
        /* The peer closed first (we echoed it) or answered our close. */
        note->call = true;
        note->code = rx->peer_code;
        note->reason = rx->peer_reason;
        ws->state = ST_DONE;
    } else if (ws->app_closed && !fail && !rx->fail_code) {
        ws->state = ST_CLOSING;
    } else {
        /* We failed the session: do not wait for the peer. */
        note->call = true;
        note->code = ws->code_sent == CX_WS_CLOSE_NO_STATUS ? CX_WS_CLOSE_PROTOCOL : ws->code_sent;
        note->reason = rx->fail_code == ws->code_sent ? rx->fail_reason : "";
        ws->state = ST_DONE;
    }
    return CX_OK;
}

int cx_ws_feed(cx_ws *ws, const uint8_t *data, size_t len)
{
    if (ws->state == ST_DONE)
        return CX_E_CLOSED;
    if (ws->rx)
        return CX_E_INVAL; /* not from inside our own callbacks */
    if (len == 0)
        return CX_OK;

    struct rx rx = {.a = ws->in.data, .alen = ws->in.len, .b = data, .blen = len};
    struct closed_note note = {0};
    size_t end, close_off;
    bool simple;
    uint16_t fail = scan(ws, &rx, &end, &close_off, &simple);
    int rc = CX_OK;

    if (ws->state == ST_CLOSING) {
        /* Only the peer's close matters now; a bad frame ends the wait. */
        if (close_off != SIZE_MAX) {
            read_close(&rx, close_off, &rx);
            note = (struct closed_note){true, rx.peer_code, rx.peer_reason};
            ws->state = ST_DONE;
        } else if (fail) {
            note = (struct closed_note){true, ws->code_sent, ""};
            ws->state = ST_DONE;
        }
    } else if (end > 0 && simple && !fail && !ws->ctx && !ws->app_closed) {
        bool nomem = false;
        ws->rx = &rx;
        uint16_t bad = fast_deliver(ws, &rx, end, &nomem);
        ws->rx = NULL;
        if (nomem) {
            rc = CX_E_NOMEM;
        } else if (ws->send_failed) {
            rc = CX_E_CLOSED;
        } else if (rx.peer_close) {
            note = (struct closed_note){true, rx.peer_code, rx.peer_reason};
            ws->state = ST_DONE;
        } else if (bad || ws->pending_code || ws->ctx) {
            /* Send what the app queued (a client's replies, a close) and report it. */
            rc = run_wslay(ws, &rx, 0, bad, &note);
        }
    } else if (end > 0 || fail) {
        rc = run_wslay(ws, &rx, end, fail, &note);
    }
    if (rc == CX_OK && ws->state == ST_CLOSING && close_off != SIZE_MAX) {
        /* We closed from on_message, and stopped reading (a bad frame, or the
         * close itself) before the peer's close in this same input: the handshake
         * is complete all the same, and nothing after that close counts. */
        read_close(&rx, close_off, &rx);
        note = (struct closed_note){true, rx.peer_code, rx.peer_reason};
        ws->state = ST_DONE;
    }

    if (rc == CX_OK && ws->state != ST_DONE) {
        /* Keep the partial frame after the complete ones. ws->in holds only the
         * start of one frame, so end is either 0 or past all of it. */
        size_t skip = 0;
        if (end >= rx.alen) {
            skip = end - rx.alen;
            cx_buf_free(&ws->in);
        }
        rc = cx_buf_append(&ws->in, data + skip, len - skip);
        if (rc == CX_E_TOOBIG)
            rc = CX_E_PROTO; /* cannot happen: scan() bounded the frame */
    }
    if (rc != CX_OK) {
        drop_all(ws);
        return rc;
    }
    if (rx.peer_close)
        ws->close_received = true;
    if (ws->state == ST_DONE)
        drop_all(ws);
    else
        release_if_idle(ws);
    if (note.call)
        ws->cb->on_closed(ws->ud, note.code, note.reason); /* last: it may free ws */
    return CX_OK;
}

/* Queue one message and, outside a feed, send it at once. Inside a feed (the
 * caller answering from on_message) cx_ws_feed sends it when wslay is done. */
static int send_msg(cx_ws *ws, uint8_t opcode, const uint8_t *p, size_t n)
{
    if (ws->state != ST_OPEN || ws->app_closed || ws->send_failed)
        return CX_E_CLOSED;
    if (!ws->ctx && ws->role == CX_WS_SERVER)
        return direct_send(ws, opcode, p, n);
    int rc = ensure_ctx(ws);
    if (rc)
        return rc;
    struct wslay_event_msg m = {.opcode = opcode, .msg = p, .msg_length = n};
    int r = wslay_event_queue_msg(ws->ctx, &m);
    if (r == WSLAY_ERR_NO_MORE_MSG)
        rc = CX_E_CLOSED;
    else if (r == WSLAY_ERR_NOMEM)
        rc = CX_E_NOMEM;
    else if (r != 0)
        rc = CX_E_INVAL;
    if (rc == CX_OK && !ws->rx)
        rc = flush(ws);
    release_if_idle(ws);
    return rc;
}

int cx_ws_send_text(cx_ws *ws, const char *msg, size_t len)
{
    if (!msg && len)
        return CX_E_INVAL;
    return send_msg(ws, WSLAY_TEXT_FRAME, (const uint8_t *)msg, len);
}

int cx_ws_send_ping(cx_ws *ws)
{
    return send_msg(ws, WSLAY_PING, NULL, 0);
}

int cx_ws_close(cx_ws *ws, uint16_t code, const char *reason)
{
    if (ws->state != ST_OPEN || ws->app_closed)
        return CX_OK;
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > CLOSE_REASON_MAX || !valid_close_code(code) ||
        !cx_utf8_valid((const uint8_t *)reason, rlen))
        return CX_E_INVAL;
    if (ws->rx) {
        /* Inside a feed: cx_ws_feed sends it after the replies queued so far. */
        ws->pending_reason = rlen ? strndup(reason, rlen) : NULL;
        if (rlen && !ws->pending_reason)
            return CX_E_NOMEM;
        ws->pending_code = code;
        ws->app_closed = true;
        /* Read nothing more in this feed: a peer close later in the same input is
         * handled after ours is queued, so ours carries the app's code. */
        if (ws->ctx)
            wslay_event_shutdown_read(ws->ctx);
        return CX_OK;
    }
    int rc = ensure_ctx(ws);
    if (rc)
        return rc;
    int r = wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, rlen);
    if (r == WSLAY_ERR_NO_MORE_MSG)
        return CX_OK;
    if (r != 0) {
        release_if_idle(ws);
        return CX_E_NOMEM;
    }
    ws->app_closed = true;
    rc = flush(ws);
    if (rc)
        return rc;
    ws->state = ST_CLOSING;
    release_if_idle(ws);
    return CX_OK;
}

bool cx_ws_close_sent(const cx_ws *ws)
{
    return ws->close_sent;
}

bool cx_ws_close_received(const cx_ws *ws)
{
    return ws->close_received;
}

bool cx_ws_holds_state(const cx_ws *ws)
{
    return ws->ctx != NULL || ws->in.cap > 0;
}
