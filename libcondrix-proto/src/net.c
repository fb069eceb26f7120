/* The connection layer both servers share: libuv TCP, optional TLS through mbedTLS,
 * the HTTP upgrade and the WebSocket session, with a deadline for every stage, a cap on
 * every buffer, and one loop-wide timer that enforces deadlines and keep-alive. */
#include "condrix/net.h"

#include "condrix/buf.h"
#include "condrix/clock.h"
#include "condrix/config.h"
#include "condrix/error.h"
#include "condrix/limits.h"
#include "condrix/log.h"
#include "condrix/ws.h"
#include "tls.h"
#include "wqueue.h"

#include <errno.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

/* Deadlines are checked this often; timeouts are accurate to this much. */
#define CX_NET_TICK_MS 100
/* Reads land here, one buffer for the whole loop: nothing stays per connection. */
#define CX_NET_READ_BUF 65536
/* How long a failing or closing connection may take to flush before it is dropped. */
#define CX_NET_FLUSH_MS 2000
/* How long shutdown waits for peers to answer their close frames. */
#define CX_NET_SHUTDOWN_GRACE_MS 3000

enum conn_state {
    ST_HTTP,     /* reading the request head */
    ST_WS,       /* WebSocket session open */
    ST_CLOSING,  /* our close frame sent: wait for the peer's until the deadline */
    ST_DRAIN,    /* answer queued: close once output is flushed */
    ST_CLOSED,   /* handle closing; waiting for libuv's close callback */
};

struct cx_conn {
    uv_tcp_t tcp;           /* must stay first: the handle's address is the conn's */
    cx_server *srv;         /* owner */
    cx_conn *prev, *next;   /* the server's list of connections */
    cx_http_req *http;      /* request parser, only until the upgrade */
    cx_ws *ws;              /* WebSocket session after the upgrade */
    cx_tls *tls;            /* TLS session, NULL on plain TCP */
    void *data;             /* the application's */
    cx_buf out;             /* output gathered while corked, flushed after the read */
    size_t outq;            /* bytes handed to uv_write and not yet written */
    uint64_t deadline;      /* upgrade / auth / drain deadline (loop ms), 0 none */
    uint64_t next_ping;     /* when to ping next (loop ms) */
    uint64_t last_seen;     /* last pong or message from the peer (loop ms) */
    uint32_t refs;          /* deferred calls holding the struct alive */
    uint16_t close_code;    /* code reported to on_close */
    uint8_t state;          /* enum conn_state */
    uint8_t corked : 1;     /* inside read processing: gather output */
    uint8_t opened : 1;     /* on_open was called: on_close is owed */
    uint8_t authed : 1;     /* auth deadline no longer applies */
    uint8_t heard : 1;      /* a message arrived: the sign-in window replaced auth_ms */
    uint8_t reading : 1;    /* uv_read_start is active */
    char peer[46];          /* peer address text */
    char client[64];        /* client address: the peer, or what a trusted proxy forwarded */
};

struct cx_server {
    uv_loop_t *loop;              /* not owned */
    uv_tcp_t *listener;           /* the listening socket: its own allocation, so a failed
                                   * listen can close it after srv is gone */
    uv_timer_t tick;              /* deadlines and keep-alive */
    uv_timer_t grace;             /* shutdown's last resort */
    cx_server_callbacks cb;       /* copied from the caller */
    void *ud;                     /* the application's */
    cx_server_limits lim;         /* bounds in force */
    cx_tls_server *tls;           /* shared TLS config, NULL for plain */
    cx_ratelimit *rl;             /* new-connection limit, NULL for none; not owned */
    const cx_cidr_list *trusted;  /* proxies whose forwarding headers count; not owned */
    cx_ratelimit *own_rl;         /* made by cx_server_from_env: freed with the server */
    cx_cidr_list *own_trusted;    /* likewise */
    cx_conn *conns;               /* list of live connections */
    size_t nconns;                /* its length */
    int port;                     /* bound port */
    uint8_t listening : 1;
    uint8_t shutting_down : 1;
    uint8_t closing_handles : 1;  /* shutdown is closing tick and grace */
    uint8_t handles_open;         /* listener, tick, grace still to close */
    void (*on_shutdown)(cx_server *srv); /* shutdown's done callback */
    const char *error_headers;    /* added to the server's own HTTP errors; not owned */
    uint8_t readbuf[CX_NET_READ_BUF]; /* shared read buffer */
};


static void conn_destroy(cx_conn *c, uint16_t code);
static void conn_flush(cx_conn *c);
static void maybe_shutdown_done(cx_server *srv);

void cx_server_limits_default(cx_server_limits *lim)
{
    lim->head_bytes = CX_HTTP_MAX_HEAD_BYTES;
    lim->message_bytes = CX_WS_MAX_MESSAGE_BYTES;
    lim->outq_bytes = CX_NET_MAX_OUTQ_BYTES;
    lim->upgrade_ms = CX_NET_UPGRADE_TIMEOUT_MS;
    lim->auth_ms = CX_NET_AUTH_TIMEOUT_MS;
    lim->signin_ms = CX_NET_SIGNIN_TIMEOUT_MS;
    lim->ping_ms = CX_WS_PING_INTERVAL_MS;
    lim->pong_ms = CX_WS_PONG_TIMEOUT_MS;
}

int cx_server_limits_from_env(cx_server_limits *lim, const char **bad)
{
    static const struct {
        const char *name;
        long min, max;
        int field;
    } vars[] = {
        {"CONDRIX_LIMIT_HEAD_BYTES", 1024, 1L << 20, 0},
        {"CONDRIX_LIMIT_MESSAGE_BYTES", 1024, 64L << 20, 1},
        {"CONDRIX_LIMIT_OUTQ_BYTES", 4096, 1L << 30, 2},
        {"CONDRIX_LIMIT_UPGRADE_MS", 50, 3600000, 3},
        {"CONDRIX_LIMIT_AUTH_MS", 50, 3600000, 4},
        {"CONDRIX_LIMIT_PING_MS", 50, 3600000, 5},
        {"CONDRIX_LIMIT_PONG_MS", 50, 3600000, 6},
        {"CONDRIX_LIMIT_SIGNIN_MS", 50, 86400000, 7},
    };
    cx_server_limits_default(lim);
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        long v;
        long def = 0;
        switch (vars[i].field) {
        case 0: def = (long)lim->head_bytes; break;
        case 1: def = (long)lim->message_bytes; break;
        case 2: def = (long)lim->outq_bytes; break;
        case 3: def = lim->upgrade_ms; break;
        case 4: def = lim->auth_ms; break;
        case 5: def = lim->ping_ms; break;
        case 6: def = lim->pong_ms; break;
        default: def = lim->signin_ms; break;
        }
        if (cx_env_int(vars[i].name, def, vars[i].min, vars[i].max, &v) != CX_OK) {
            if (bad)
                *bad = vars[i].name;
            return CX_E_INVAL;
        }
        switch (vars[i].field) {
        case 0: lim->head_bytes = (size_t)v; break;
        case 1: lim->message_bytes = (size_t)v; break;
        case 2: lim->outq_bytes = (size_t)v; break;
        case 3: lim->upgrade_ms = (uint32_t)v; break;
        case 4: lim->auth_ms = (uint32_t)v; break;
        case 5: lim->ping_ms = (uint32_t)v; break;
        case 6: lim->pong_ms = (uint32_t)v; break;
        default: lim->signin_ms = (uint32_t)v; break;
        }
    }
    return CX_OK;
}

/* ---- output ---- */

static void on_write_done(void *owner, size_t len, int status)
{
    cx_conn *c = owner;
    c->outq -= len;
    if (c->state == ST_CLOSED)
        return;
    if (status < 0) {
        conn_destroy(c, CX_WS_CLOSE_ABNORMAL);
        return;
    }
    if (c->state == ST_DRAIN && c->outq == 0 && c->out.len == 0)
        conn_destroy(c, c->close_code);
}

/* Put bytes on the socket: try a direct write first, queue what is left. */
static int raw_write(cx_conn *c, const uint8_t *p, size_t n)
{
    if (c->state == ST_CLOSED)
        return CX_E_CLOSED;
    return cx__wq_send((uv_stream_t *)&c->tcp, p, n, true, &c->outq,
                       c->srv->lim.outq_bytes + 4096, c, on_write_done);
}

/* Bytes from the TLS layer (ciphertext) or the plain connection. */
static int tls_out(void *ud, const uint8_t *p, size_t n)
{
    return raw_write(ud, p, n);
}

/* Plaintext out: through TLS when there is TLS. */
static int plain_write(cx_conn *c, const uint8_t *p, size_t n)
{
    if (c->tls)
        return cx_tls_write(c->tls, p, n);
    return raw_write(c, p, n);
}

static int ws_on_send(void *ud, const uint8_t *data, size_t len)
{
    cx_conn *c = ud;
    if (c->state == ST_CLOSED)
        return CX_E_CLOSED;
    if (c->corked) {
        int rc = cx_buf_append(&c->out, data, len);
        if (rc == CX_OK)
            return CX_OK;
        /* Fall through to a direct write when the gather buffer is full. */
        conn_flush(c);
        if (c->state == ST_CLOSED)
            return CX_E_CLOSED;
    }
    int rc = plain_write(c, data, len);
    if (rc == CX_E_TOOBIG) {
        /* The peer does not read: its queue is past the cap. Drop it. */
        cx_log_warn("connection from %s: output queue over %zu bytes, closing (slow consumer)",
                    c->peer, c->srv->lim.outq_bytes);
        c->close_code = CX_WS_CLOSE_POLICY;
        conn_destroy(c, CX_WS_CLOSE_POLICY);
        return CX_E_CLOSED;
    }
    return rc;
}

/* The last bytes of a plain connection that closes right after them (the echo of the
 * peer's close frame): sent with MSG_MORE so the kernel holds the segment and close()
 * tacks the FIN onto it, one packet instead of two. Only after the peer's close: with
 * unread input, close() resets the link and drops held bytes, and a peer we are failing
 * may still be sending. Returns the bytes sent; 0 means "use the normal path". */
static size_t last_write(cx_conn *c, const uint8_t *p, size_t n)
{
    uv_os_fd_t fd;
    if (c->tls || c->outq != 0 || !c->ws || !cx_ws_close_received(c->ws) ||
        uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
        return 0;
    ssize_t w;
    do
        w = send(fd, p, n, MSG_MORE | MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w < 0 && errno == EINTR);
    return w > 0 ? (size_t)w : 0;
}

static void conn_flush(cx_conn *c)
{
    if (c->out.len == 0 || c->state == ST_CLOSED)
        return;
    if (c->state == ST_DRAIN) {
        size_t w = last_write(c, c->out.data, c->out.len);
        if (w > 0)
            cx_buf_consume(&c->out, w);
        if (c->out.len == 0) {
            conn_destroy(c, c->close_code);
            return;
        }
    }
    cx_buf pending = c->out;
    cx_buf_init(&c->out, c->out.max);
    int rc = plain_write(c, pending.data, pending.len);
    cx_buf_free(&pending);
    if (rc == CX_E_TOOBIG) {
        cx_log_warn("connection from %s: output queue over %zu bytes, closing (slow consumer)",
                    c->peer, c->srv->lim.outq_bytes);
        conn_destroy(c, CX_WS_CLOSE_POLICY);
    } else if (rc != CX_OK) {
        conn_destroy(c, CX_WS_CLOSE_ABNORMAL);
    }
}

/* ---- WebSocket callbacks ---- */

static void ws_on_message(void *ud, const char *msg, size_t len)
{
    cx_conn *c = ud;
    if (c->state != ST_WS)
        return;
    c->last_seen = uv_now(c->srv->loop);
    if (!c->heard) {
        /* PROTOCOL section 1 times only the first message; after it a connection still
         * signing in (a second auth after TOTP_REQUIRED, a browser retrying a password)
         * gets the longer sign-in window, like OpenSSH's LoginGraceTime. */
        c->heard = 1;
        if (!c->authed)
            c->deadline = c->last_seen + c->srv->lim.signin_ms;
    }
    c->srv->cb.on_message(c->srv, c, msg, len);
}

static void ws_on_pong(void *ud)
{
    cx_conn *c = ud;
    c->last_seen = uv_now(c->srv->loop);
}

static void ws_on_closed(void *ud, uint16_t code, const char *reason)
{
    (void)reason;
    cx_conn *c = ud;
    if (c->state == ST_CLOSED)
        return;
    c->close_code = code;
    /* Our close frame is queued; drop the link once it is flushed. */
    c->state = ST_DRAIN;
    c->deadline = uv_now(c->srv->loop) + CX_NET_FLUSH_MS;
    if (c->outq == 0 && c->out.len == 0 && !c->corked)
        conn_destroy(c, code);
}

static const cx_ws_callbacks ws_callbacks = {
    .on_message = ws_on_message,
    .on_send = ws_on_send,
    .on_pong = ws_on_pong,
    .on_closed = ws_on_closed,
};

/* ---- HTTP stage ---- */

void cx_conn_http_reply(cx_conn *c, int status, const char *content_type,
                        const char *extra_headers, const void *body, size_t len)
{
    if (c->state != ST_HTTP)
        return;
    cx_buf out;
    cx_buf_init(&out, len + 4096);
    /* HEAD gets GET's head, Content-Length included, and no body (RFC 9110 9.3.2). */
    bool head = c->http && strcmp(cx_http_req_method(c->http), "HEAD") == 0;
    if (cx_http_write_response(&out, status, content_type, extra_headers, body, len) == CX_OK)
        (void)plain_write(c, out.data, head ? out.len - len : out.len);
    cx_buf_free(&out);
    if (c->state == ST_CLOSED)
        return;
    cx_http_req_free(c->http);
    c->http = NULL;
    c->state = ST_DRAIN;
    c->deadline = uv_now(c->srv->loop) + CX_NET_FLUSH_MS;
    if (c->outq == 0)
        conn_destroy(c, 0);
}

static void http_error(cx_conn *c, int status)
{
    char body[64], extra[1024];
    int n = snprintf(body, sizeof body, "%d %s\n", status, cx_http_reason(status));
    snprintf(extra, sizeof extra, "%s%s", status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "",
             c->srv->error_headers ? c->srv->error_headers : "");
    cx_conn_http_reply(c, status, "text/plain; charset=utf-8", extra[0] ? extra : NULL, body,
                       (size_t)n);
}

static void deliver(cx_conn *c, const uint8_t *p, size_t n);

static void http_complete(cx_conn *c, const uint8_t *rest, size_t nrest)
{
    cx_server *srv = c->srv;
    if (!cx_http_req_wants_upgrade(c->http)) {
        if (srv->cb.on_http)
            srv->cb.on_http(srv, c, c->http);
        if (c->state == ST_HTTP)
            http_error(c, 404);
        return;
    }
    char accept[29];
    int status = cx_http_req_check_upgrade(c->http, accept);
    int retry = 0;
    bool refused = false;
    if (status == 0) {
        cx_client_addr(srv->trusted, c->peer, cx_http_req_header(c->http, "CF-Connecting-IP"),
                       cx_http_req_header(c->http, "X-Forwarded-For"), c->client);
        if (!c->client[0])
            snprintf(c->client, sizeof c->client, "%s", c->peer);
        int64_t now = cx_clock_now_ms();
        refused = srv->rl && cx_ratelimit_auth_allowed(srv->rl, c->client, now, &retry) == CX_OK &&
                  cx_ratelimit_connection(srv->rl, c->client, now, &retry) != CX_OK;
    }
    if (status == 0 && !refused && srv->cb.on_upgrade)
        status = srv->cb.on_upgrade(srv, c, c->http);
    if (status != 0) {
        http_error(c, status);
        return;
    }
    c->ws = cx_ws_new(CX_WS_SERVER, &ws_callbacks, c, srv->lim.message_bytes);
    if (!c->ws) {
        http_error(c, 503);
        return;
    }
    cx_buf resp;
    cx_buf_init(&resp, 512);
    int rc = cx_http_write_upgrade_response(&resp, accept);
    if (rc == CX_OK)
        rc = cx_buf_append(&c->out, resp.data, resp.len);
    cx_buf_free(&resp);
    if (rc != CX_OK) {
        conn_destroy(c, CX_WS_CLOSE_INTERNAL);
        return;
    }
    cx_http_req_free(c->http);
    c->http = NULL;
    uint64_t now = uv_now(srv->loop);
    c->state = ST_WS;
    c->deadline = c->authed ? 0 : now + srv->lim.auth_ms;
    c->next_ping = now + srv->lim.ping_ms;
    c->last_seen = now;
    if (refused) {
        /* Over the new-connection limit: the client hears why in the close frame. */
        char reason[64];
        snprintf(reason, sizeof reason, "rate limited; retry in %d s", retry);
        cx_log_info("connection from %s refused: too many connections", c->client);
        cx_conn_close(c, CX_WS_CLOSE_POLICY, reason);
        return;
    }
    c->opened = 1;
    if (srv->cb.on_open)
        srv->cb.on_open(srv, c);
    if (nrest && c->state == ST_WS)
        deliver(c, rest, nrest);
}

/* Plaintext bytes from the peer. */
static void deliver(cx_conn *c, const uint8_t *p, size_t n)
{
    if (c->state == ST_HTTP) {
        size_t used = 0;
        int rc = cx_http_req_feed(c->http, p, n, &used);
        if (rc == CX_E_AGAIN)
            return;
        if (rc == CX_E_TOOBIG) {
            http_error(c, 431);
            return;
        }
        if (rc != CX_OK) {
            http_error(c, 400);
            return;
        }
        http_complete(c, p + used, n - used);
        return;
    }
    if (c->state == ST_WS || c->state == ST_CLOSING || c->state == ST_DRAIN) {
        if (c->ws && cx_ws_feed(c->ws, p, n) == CX_E_NOMEM)
            conn_destroy(c, CX_WS_CLOSE_INTERNAL);
    }
}

static void tls_in(void *ud, const uint8_t *p, size_t n)
{
    deliver(ud, p, n);
}

/* ---- libuv plumbing ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    cx_conn *c = (cx_conn *)h;
    *buf = uv_buf_init((char *)c->srv->readbuf, sizeof c->srv->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cx_conn *c = (cx_conn *)s;
    if (nread == 0)
        return;
    if (nread < 0) {
        /* EOF or error: the link is gone. */
        conn_destroy(c, c->close_code ? c->close_code : CX_WS_CLOSE_ABNORMAL);
        return;
    }
    if (c->state == ST_CLOSED)
        return;
    c->corked = 1;
    if (c->tls) {
        int rc = cx_tls_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread);
        if (rc != CX_OK && c->state != ST_CLOSED) {
            /* A failed handshake is worth an operator's look (a plain-HTTP client, an
             * old TLS version, a proxy speaking the wrong scheme); a session ending is not. */
            if (rc == CX_E_TLS && !cx_tls_handshake_done(c->tls))
                cx_log_info("connection from %s: TLS handshake failed: %s", c->peer,
                            cx_tls_last_error(c->tls));
            else
                cx_log_debug("connection from %s: TLS session ended: %s", c->peer,
                             rc == CX_E_TLS ? cx_tls_last_error(c->tls) : cx_strerror(rc));
            conn_destroy(c, CX_WS_CLOSE_ABNORMAL);
        }
    } else {
        deliver(c, (const uint8_t *)buf->base, (size_t)nread);
    }
    c->corked = 0;
    conn_flush(c);
    if (c->state == ST_DRAIN && c->outq == 0 && c->out.len == 0)
        conn_destroy(c, c->close_code);
}

/* The parsers and the TLS session are freed here, never in conn_destroy: destroy can
 * run from inside their own callbacks. */
static void conn_free(cx_conn *c)
{
    cx_http_req_free(c->http);
    cx_ws_free(c->ws);
    cx_tls_free(c->tls);
    cx_buf_free(&c->out);
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    cx_conn *c = (cx_conn *)h;
    c->tcp.data = NULL; /* marks "libuv is done with the handle" */
    if (c->refs == 0)
        conn_free(c);
}

static void conn_release(cx_conn *c)
{
    if (--c->refs == 0 && c->state == ST_CLOSED && c->tcp.data == NULL)
        conn_free(c);
}

/* Tear the connection down now; on_close goes to the app once. The struct stays valid
 * until libuv's close callback, so callers up the stack may still look at it. */
static void conn_destroy(cx_conn *c, uint16_t code)
{
    if (c->state == ST_CLOSED)
        return;
    cx_server *srv = c->srv;
    if (c->tls && code != CX_WS_CLOSE_ABNORMAL)
        cx_tls_close_notify(c->tls); /* written while the connection still takes bytes */
    c->state = ST_CLOSED;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    if (c->opened && srv->cb.on_close)
        srv->cb.on_close(srv, c, code ? code : CX_WS_CLOSE_ABNORMAL);
    c->data = NULL;
    c->tcp.data = c; /* non-NULL until the close callback */
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    if (srv->shutting_down)
        maybe_shutdown_done(srv);
}

static void on_connection(uv_stream_t *ls, int status)
{
    cx_server *srv = ls->data;
    if (status < 0) {
        cx_log_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    cx_conn *c = calloc(1, sizeof *c);
    if (!c) {
        cx_log_error("out of memory accepting a connection");
        return;
    }
    c->srv = srv;
    cx_buf_init(&c->out, 256 * 1024);
    if (uv_tcp_init(srv->loop, &c->tcp) < 0) {
        free(c);
        return;
    }
    c->tcp.data = c;
    c->state = ST_CLOSED; /* until fully set up, destroy must not unlink */
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0)
        goto fail;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
        else
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
    }
    if (strncmp(c->peer, "::ffff:", 7) == 0 && strchr(c->peer + 7, '.'))
        memmove(c->peer, c->peer + 7, strlen(c->peer + 7) + 1);
    /* TCP_NODELAY comes from the listener: Linux copies it to accepted sockets. */
    c->http = cx_http_req_new(srv->lim.head_bytes);
    if (!c->http)
        goto fail;
    if (srv->tls) {
        c->tls = cx_tls_new_server(srv->tls, tls_out, tls_in, c);
        if (!c->tls)
            goto fail;
    }
    /* Linked in: from here conn_destroy does the cleanup. */
    c->state = ST_HTTP;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    c->deadline = uv_now(srv->loop) + srv->lim.upgrade_ms;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_destroy(c, 0);
        return;
    }
    c->reading = 1;
    return;
fail:
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* One pass over every connection: stage deadlines, keep-alive, drain timeouts. */
static void on_tick(uv_timer_t *t)
{
    cx_server *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    cx_conn *next;
    for (cx_conn *c = srv->conns; c; c = next) {
        next = c->next;
        switch (c->state) {
        case ST_HTTP:
            if (c->deadline && now >= c->deadline) {
                cx_log_debug("connection from %s: no upgrade in time", c->peer);
                conn_destroy(c, 0);
            }
            break;
        case ST_WS:
            if (c->deadline && now >= c->deadline) {
                c->deadline = 0;
                cx_log_info("connection from %s: not authenticated in time, closing", c->peer);
                cx_conn_close(c, CX_WS_CLOSE_POLICY, "auth timeout");
                break;
            }
            if (now - c->last_seen >= srv->lim.pong_ms) {
                cx_log_info("connection from %s: no pong for %u ms, closing", c->peer,
                            srv->lim.pong_ms);
                cx_conn_close(c, CX_WS_CLOSE_POLICY, "keep-alive timeout");
                break;
            }
            if (now >= c->next_ping) {
                c->next_ping = now + srv->lim.ping_ms;
                c->corked = 1;
                (void)cx_ws_send_ping(c->ws);
                c->corked = 0;
                conn_flush(c);
            }
            break;
        case ST_CLOSING:
        case ST_DRAIN:
            if (c->deadline && now >= c->deadline)
                conn_destroy(c, c->close_code);
            break;
        default:
            break;
        }
    }
}

int cx_server_new(uv_loop_t *loop, const cx_server_callbacks *cb, void *ud,
                  const cx_server_limits *lim, cx_server **out)
{
    cx_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return CX_E_NOMEM;
    srv->loop = loop;
    srv->cb = *cb;
    srv->ud = ud;
    if (lim)
        srv->lim = *lim;
    else
        cx_server_limits_default(&srv->lim);
    *out = srv;
    return CX_OK;
}

void cx_server_set_error_headers(cx_server *srv, const char *headers)
{
    srv->error_headers = headers;
}

void cx_server_set_admission(cx_server *srv, cx_ratelimit *rl, const cx_cidr_list *trusted)
{
    srv->rl = rl;
    srv->trusted = trusted;
}

cx_ratelimit *cx_server_ratelimit(const cx_server *srv)
{
    return srv->rl;
}

int cx_server_from_env(uv_loop_t *loop, const cx_server_callbacks *cb, void *ud,
                       const char *tls_cert, const char *tls_key, const char *env_prefix,
                       cx_ratelimit_config *rcfg_out, cx_server **out)
{
    cx_ratelimit_config rcfg;
    cx_server_limits lim;
    const char *bad = NULL;
    cx_server *srv = NULL;
    char *err = NULL;
    int rc;
    if (cx_ratelimit_config_from_env(&rcfg, &bad) != CX_OK) {
        cx_log_error("%s must be a whole number >= 0", bad ? bad : "a CONDRIX_RATE_* variable");
        return CX_E_INVAL;
    }
    if (cx_server_limits_from_env(&lim, &bad) != CX_OK) {
        cx_log_error("%s is out of range", bad);
        return CX_E_INVAL;
    }
    if ((rc = cx_server_new(loop, cb, ud, &lim, &srv)) != CX_OK)
        return rc;
    if (!(srv->own_rl = cx_ratelimit_new(&rcfg))) {
        rc = CX_E_NOMEM;
        goto fail;
    }
    if (cx_cidr_list_parse(getenv("CONDRIX_TRUSTED_PROXIES"), &srv->own_trusted) != CX_OK) {
        cx_log_error("CONDRIX_TRUSTED_PROXIES must list addresses or CIDR ranges, "
                     "e.g. \"127.0.0.1, ::1, 10.0.0.0/8\"");
        rc = CX_E_INVAL;
        goto fail;
    }
    cx_server_set_admission(srv, srv->own_rl, srv->own_trusted);
    if (tls_cert || tls_key) {
        if (!tls_cert || !tls_key) {
            cx_log_error("TLS needs both %s_TLS_CERT and %s_TLS_KEY", env_prefix, env_prefix);
            rc = CX_E_INVAL;
            goto fail;
        }
        if ((rc = cx_server_set_tls(srv, tls_cert, tls_key, &err)) != CX_OK) {
            cx_log_error("%s", err ? err : "cannot set up TLS");
            free(err);
            goto fail;
        }
    }
    if (rcfg_out)
        *rcfg_out = rcfg;
    *out = srv;
    return CX_OK;
fail:
    cx_server_free(srv);
    return rc;
}

int cx_server_set_tls(cx_server *srv, const char *cert_path, const char *key_path, char **err)
{
    return cx_tls_server_new(cert_path, key_path, &srv->tls, err);
}

static char *errdup(const char *what, int rc)
{
    size_t n = strlen(what) + 64;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s: %s", what, uv_strerror(rc));
    return s;
}

static void on_listener_failed(uv_handle_t *h)
{
    free(h);
}

int cx_server_listen(cx_server *srv, const char *host, int port, char **err)
{
    struct sockaddr_storage ss;
    int rc;
    if (strchr(host, ':'))
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
    else
        rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    if (rc < 0) {
        if (err)
            *err = errdup("bad listen address", rc);
        return CX_E_INVAL;
    }
    if (!(srv->listener = malloc(sizeof *srv->listener))) {
        rc = UV_ENOMEM;
        goto fail;
    }
    if ((rc = uv_tcp_init(srv->loop, srv->listener)) < 0) {
        free(srv->listener);
        srv->listener = NULL;
        goto fail;
    }
    srv->listener->data = srv;
    srv->handles_open++;
    if ((rc = uv_tcp_bind(srv->listener, (struct sockaddr *)&ss, 0)) < 0)
        goto fail;
    if ((rc = uv_listen((uv_stream_t *)srv->listener, 1024, on_connection)) < 0)
        goto fail;
    /* Small replies go out at once; set here once, accepted sockets inherit it (one
     * system call per server instead of one per connection). */
    (void)uv_tcp_nodelay(srv->listener, 1);
    struct sockaddr_storage bound;
    int len = sizeof bound;
    if (uv_tcp_getsockname(srv->listener, (struct sockaddr *)&bound, &len) == 0)
        srv->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    if ((rc = uv_timer_init(srv->loop, &srv->tick)) < 0)
        goto fail;
    srv->tick.data = srv;
    srv->handles_open++;
    uv_timer_start(&srv->tick, on_tick, CX_NET_TICK_MS, CX_NET_TICK_MS);
    uv_unref((uv_handle_t *)&srv->tick);
    srv->listening = 1;
    return CX_OK;
fail:
    if (err)
        *err = errdup("cannot listen", rc);
    if (srv->listener) {
        uv_close((uv_handle_t *)srv->listener, on_listener_failed);
        srv->listener = NULL;
        srv->handles_open = 0;
    }
    return CX_E_IO;
}

int cx_server_port(const cx_server *srv) { return srv->port; }
bool cx_server_is_tls(const cx_server *srv) { return srv->tls != NULL; }
void *cx_server_data(const cx_server *srv) { return srv->ud; }
uv_loop_t *cx_server_loop(const cx_server *srv) { return srv->loop; }
size_t cx_server_conn_count(const cx_server *srv) { return srv->nconns; }

void cx_server_foreach(cx_server *srv, void (*fn)(cx_conn *c, void *arg), void *arg)
{
    cx_conn *next;
    for (cx_conn *c = srv->conns; c; c = next) {
        next = c->next;
        if (c->state == ST_WS)
            fn(c, arg);
    }
}

static void on_server_handle_closed(uv_handle_t *h)
{
    cx_server *srv = h->data;
    if (h == (uv_handle_t *)srv->listener) {
        free(srv->listener);
        srv->listener = NULL;
    }
    srv->handles_open--;
    maybe_shutdown_done(srv);
}

static void maybe_shutdown_done(cx_server *srv)
{
    if (!srv->shutting_down || srv->nconns > 0)
        return;
    if (!srv->closing_handles) {
        /* Every connection is gone: close our own handles, then report. */
        srv->closing_handles = 1;
        uv_timer_stop(&srv->tick);
        uv_close((uv_handle_t *)&srv->tick, on_server_handle_closed);
        uv_timer_stop(&srv->grace);
        uv_close((uv_handle_t *)&srv->grace, on_server_handle_closed);
        return;
    }
    if (srv->handles_open == 0 && srv->on_shutdown) {
        void (*done)(cx_server *) = srv->on_shutdown;
        srv->on_shutdown = NULL;
        done(srv);
    }
}

static void on_grace(uv_timer_t *t)
{
    cx_server *srv = t->data;
    cx_conn *next;
    for (cx_conn *c = srv->conns; c; c = next) {
        next = c->next;
        conn_destroy(c, CX_WS_CLOSE_GOING_AWAY);
    }
    maybe_shutdown_done(srv);
}

void cx_server_shutdown(cx_server *srv, uint16_t code, const char *reason,
                        void (*done)(cx_server *srv))
{
    if (srv->shutting_down)
        return;
    srv->shutting_down = 1;
    srv->on_shutdown = done;
    if (!srv->listening) {
        if (done)
            done(srv);
        return;
    }
    uv_close((uv_handle_t *)srv->listener, on_server_handle_closed);
    uv_ref((uv_handle_t *)&srv->tick);
    uv_timer_init(srv->loop, &srv->grace);
    srv->grace.data = srv;
    srv->handles_open++;
    uv_timer_start(&srv->grace, on_grace, CX_NET_SHUTDOWN_GRACE_MS, 0);
    cx_conn *next;
    for (cx_conn *c = srv->conns; c; c = next) {
        next = c->next;
        if (c->state == ST_WS)
            cx_conn_close(c, code, reason);
        else if (c->state == ST_HTTP)
            conn_destroy(c, 0);
    }
    maybe_shutdown_done(srv);
}

void cx_server_free(cx_server *srv)
{
    if (!srv)
        return;
    cx_tls_server_free(srv->tls);
    cx_ratelimit_free(srv->own_rl);
    cx_cidr_list_free(srv->own_trusted);
    free(srv);
}

/* ---- connection API ---- */

const char *cx_conn_peer(const cx_conn *c) { return c->peer; }
const char *cx_conn_client_addr(const cx_conn *c) { return c->client[0] ? c->client : c->peer; }
void cx_conn_set_data(cx_conn *c, void *data) { c->data = data; }
void *cx_conn_data(const cx_conn *c) { return c->data; }
cx_server *cx_conn_server(const cx_conn *c) { return c->srv; }
bool cx_conn_closing(const cx_conn *c) { return c->state != ST_WS || cx_ws_close_sent(c->ws); }

void cx_conn_set_authenticated(cx_conn *c)
{
    c->authed = 1;
    if (c->state == ST_WS)
        c->deadline = 0;
}

int cx_conn_send_text(cx_conn *c, const char *msg, size_t len)
{
    if (c->state != ST_WS)
        return CX_E_CLOSED;
    int rc = cx_ws_send_text(c->ws, msg, len);
    if (c->state == ST_CLOSED)
        return CX_E_CLOSED;
    return rc;
}

void cx_conn_close(cx_conn *c, uint16_t code, const char *reason)
{
    if (c->state != ST_WS)
        return;
    c->close_code = code;
    bool corked = c->corked;
    c->corked = 1;
    int rc = cx_ws_close(c->ws, code, reason);
    c->corked = corked;
    if (c->state == ST_CLOSED)
        return;
    if (!corked)
        conn_flush(c);
    if (c->state == ST_CLOSED)
        return;
    if (rc != CX_OK) {
        conn_destroy(c, code);
        return;
    }
    /* Wait a little for the peer's close frame, then drop the link. */
    if (c->state == ST_WS) {
        c->deadline = uv_now(c->srv->loop) + CX_NET_CLOSE_LINGER_MS;
        c->state = ST_CLOSING;
    }
}

struct defer {
    uv_timer_t timer;
    cx_conn *c;
    void (*fn)(cx_conn *c, void *arg);
    void *arg;
};

static void on_defer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_defer(uv_timer_t *t)
{
    struct defer *d = t->data;
    cx_conn *c = d->c;
    bool alive = c->state == ST_WS || c->state == ST_CLOSING || c->state == ST_DRAIN;
    if (alive) {
        c->corked = 1;
        d->fn(c, d->arg);
        c->corked = 0;
        conn_flush(c);
        if (c->state == ST_DRAIN && c->outq == 0 && c->out.len == 0)
            conn_destroy(c, c->close_code);
    } else {
        d->fn(NULL, d->arg);
    }
    conn_release(c);
    uv_close((uv_handle_t *)&d->timer, on_defer_closed);
}

int cx_conn_defer(cx_conn *c, uint32_t ms, void (*fn)(cx_conn *c, void *arg), void *arg)
{
    struct defer *d = malloc(sizeof *d);
    if (!d)
        return CX_E_NOMEM;
    if (uv_timer_init(c->srv->loop, &d->timer) < 0) {
        free(d);
        return CX_E_NOMEM;
    }
    d->timer.data = d;
    d->c = c;
    d->fn = fn;
    d->arg = arg;
    c->refs++;
    uv_timer_start(&d->timer, on_defer, ms, 0);
    return CX_OK;
}
