/* Outbound WebSocket connections: resolve, connect, optional TLS with verification, the
 * upgrade request and its checked answer, then a client-role cx_ws session, with one
 * timer for the attempt deadline and keep-alive. Every path ends in exactly one on_close. */
#include "condrix/wsclient.h"

#include "condrix/buf.h"
#include "condrix/error.h"
#include "condrix/http.h"
#include "condrix/limits.h"
#include "condrix/ws.h"
#include "tls.h"
#include "wqueue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WSC_DEFAULT_TIMEOUT_MS 10000
#define WSC_MAX_RESPONSE_HEAD 16384
#define WSC_MAX_OUTQ (16 * 1024 * 1024)
#define WSC_TICK_MS 250

enum wsc_state { W_RESOLVE, W_CONNECT, W_UPGRADE, W_OPEN, W_CLOSING, W_DONE };

struct cx_wsc {
    uv_loop_t *loop;
    uv_getaddrinfo_t gai;        /* name lookup */
    uv_connect_t connect;        /* TCP connect request */
    uv_tcp_t tcp;                /* the socket */
    uv_timer_t timer;            /* deadline and keep-alive */
    cx_wsc_callbacks cb;         /* copied */
    void *ud;
    cx_tls_config *tls_cfg;      /* client TLS config, NULL for ws:// */
    cx_tls *tls;                 /* the TLS session */
    cx_http_resp *resp;          /* upgrade answer parser */
    cx_ws *ws;                   /* session once open */
    char key[25];                /* Sec-WebSocket-Key sent */
    char host[256];
    char path[1024];
    char *extra_headers;
    int port;
    size_t max_message;
    size_t outq;                 /* bytes queued in uv_write */
    uint64_t deadline;           /* attempt deadline (loop ms), 0 once open */
    uint64_t last_heard;         /* last bytes from the peer (loop ms) */
    uint64_t next_ping;
    uint32_t ping_ms, pong_ms;
    uint8_t state;               /* enum wsc_state */
    uint8_t handles;             /* libuv handles still open (tcp, timer) */
    uint8_t tcp_inited : 1;
    uint8_t gai_pending : 1;     /* getaddrinfo still running: free waits for it */
    uint16_t close_code;         /* reported to on_close */
    char reason[400];            /* reported to on_close */
};


static void finish(cx_wsc *c, uint16_t code, const char *reason);

int cx_wsc_parse_url(const char *url, bool *tls, char *host, size_t host_size, int *port,
                     char *path, size_t path_size)
{
    const char *p;
    if (strncmp(url, "ws://", 5) == 0) {
        *tls = false;
        *port = 80;
        p = url + 5;
    } else if (strncmp(url, "wss://", 6) == 0) {
        *tls = true;
        *port = 443;
        p = url + 6;
    } else {
        return CX_E_INVAL;
    }
    const char *hs = p, *he;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he)
            return CX_E_INVAL;
        p = he + 1;
    } else {
        he = p + strcspn(p, ":/?#");
        p = he;
    }
    size_t hn = (size_t)(he - hs);
    if (hn == 0 || hn >= host_size)
        return CX_E_INVAL;
    for (size_t i = 0; i < hn; i++)
        if ((unsigned char)hs[i] <= 0x20 || hs[i] == 0x7f)
            return CX_E_INVAL;
    memcpy(host, hs, hn);
    host[hn] = '\0';
    if (*p == ':') {
        char *end;
        long v = strtol(p + 1, &end, 10);
        if (p[1] < '0' || p[1] > '9' || v < 1 || v > 65535)
            return CX_E_INVAL;
        *port = (int)v;
        p = end;
    }
    if (*p == '\0' || *p == '#') {
        if (path_size < 2)
            return CX_E_INVAL;
        strcpy(path, "/");
        return CX_OK;
    }
    if (*p != '/' && *p != '?')
        return CX_E_INVAL;
    size_t pn = strcspn(p, "#");
    if (pn + 2 > path_size)
        return CX_E_INVAL;
    if (*p == '?') {
        path[0] = '/';
        memcpy(path + 1, p, pn);
        path[pn + 1] = '\0';
    } else {
        memcpy(path, p, pn);
        path[pn] = '\0';
    }
    for (const char *q = path; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return CX_E_INVAL;
    return CX_OK;
}

/* ---- teardown ---- */

static void free_client(cx_wsc *c)
{
    cx_tls_free(c->tls);
    cx_tls_config_free(c->tls_cfg);
    cx_http_resp_free(c->resp);
    cx_ws_free(c->ws);
    free(c->extra_headers);
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    cx_wsc *c = h->data;
    if (--c->handles == 0 && !c->gai_pending)
        free_client(c);
}

/* End the attempt or session: report once, then release the handles. */
static void finish(cx_wsc *c, uint16_t code, const char *reason)
{
    if (c->state == W_DONE)
        return;
    c->state = W_DONE;
    c->close_code = code;
    if (reason != c->reason)
        snprintf(c->reason, sizeof c->reason, "%s", reason ? reason : "");
    if (c->cb.on_close)
        c->cb.on_close(c, c->ud, c->close_code, c->reason);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (c->tcp_inited)
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    else
        c->handles--; /* the tcp handle never existed */
    if (c->handles == 0 && !c->gai_pending)
        free_client(c);
}

/* ---- output ---- */

static void on_write_done(void *owner, size_t len, int status)
{
    cx_wsc *c = owner;
    c->outq -= len;
    if (status < 0 && c->state != W_DONE)
        finish(c, CX_WS_CLOSE_ABNORMAL, "connection lost while sending");
}

static int raw_write(cx_wsc *c, const uint8_t *p, size_t n)
{
    if (c->state == W_DONE)
        return CX_E_CLOSED;
    /* Always queued: the echo of a close written to a server that already left fails
     * later, through on_write_done, after that close has been reported, instead of
     * turning the server's close code into 1006 now. The link is not a hot path. */
    return cx__wq_send((uv_stream_t *)&c->tcp, p, n, false, &c->outq, WSC_MAX_OUTQ, c,
                       on_write_done);
}

static int tls_out(void *ud, const uint8_t *p, size_t n)
{
    return raw_write(ud, p, n);
}

static int plain_write(cx_wsc *c, const uint8_t *p, size_t n)
{
    return c->tls ? cx_tls_write(c->tls, p, n) : raw_write(c, p, n);
}

/* ---- session callbacks ---- */

static void ws_on_message(void *ud, const char *msg, size_t len)
{
    cx_wsc *c = ud;
    if (c->state == W_OPEN && c->cb.on_message)
        c->cb.on_message(c, c->ud, msg, len);
}

static int ws_on_send(void *ud, const uint8_t *data, size_t len)
{
    return plain_write(ud, data, len);
}

static void ws_on_pong(void *ud)
{
    (void)ud;
}

static void ws_on_closed(void *ud, uint16_t code, const char *reason)
{
    finish(ud, code, reason);
}

static const cx_ws_callbacks ws_cb = {
    .on_message = ws_on_message,
    .on_send = ws_on_send,
    .on_pong = ws_on_pong,
    .on_closed = ws_on_closed,
};

/* ---- input ---- */

static void deliver(cx_wsc *c, const uint8_t *p, size_t n)
{
    if (c->state == W_UPGRADE) {
        size_t used = 0;
        int rc = cx_http_resp_feed(c->resp, p, n, &used);
        if (rc == CX_E_AGAIN)
            return;
        if (rc != CX_OK) {
            finish(c, CX_WS_CLOSE_ABNORMAL, "the server's answer to the upgrade is not HTTP");
            return;
        }
        int status = cx_http_resp_status(c->resp);
        if (status != 101) {
            char why[64];
            snprintf(why, sizeof why, "the server answered HTTP %d to the upgrade", status);
            finish(c, CX_WS_CLOSE_ABNORMAL, why);
            return;
        }
        if (cx_http_resp_check_upgrade(c->resp, c->key) != CX_OK) {
            finish(c, CX_WS_CLOSE_ABNORMAL, "the server's upgrade answer is not valid");
            return;
        }
        cx_http_resp_free(c->resp);
        c->resp = NULL;
        c->ws = cx_ws_new(CX_WS_CLIENT, &ws_cb, c, c->max_message);
        if (!c->ws) {
            finish(c, CX_WS_CLOSE_ABNORMAL, "out of memory");
            return;
        }
        c->state = W_OPEN;
        c->deadline = 0;
        if (c->cb.on_open)
            c->cb.on_open(c, c->ud);
        if (c->state == W_OPEN && n > used)
            deliver(c, p + used, n - used);
        return;
    }
    if ((c->state == W_OPEN || c->state == W_CLOSING) && c->ws) {
        if (cx_ws_feed(c->ws, p, n) == CX_E_NOMEM)
            finish(c, CX_WS_CLOSE_ABNORMAL, "out of memory");
    }
}

static void tls_in(void *ud, const uint8_t *p, size_t n)
{
    deliver(ud, p, n);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    /* Clients are few; one buffer for all of them on this thread. */
    static char readbuf[65536];
    *buf = uv_buf_init(readbuf, sizeof readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cx_wsc *c = s->data;
    if (nread == 0 || c->state == W_DONE)
        return;
    if (nread < 0) {
        finish(c, CX_WS_CLOSE_ABNORMAL,
               c->state == W_UPGRADE ? "the server closed the connection during the upgrade"
                                     : "connection lost");
        return;
    }
    c->last_heard = uv_now(c->loop);
    if (c->tls) {
        int rc = cx_tls_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread);
        if (rc != CX_OK && c->state != W_DONE) {
            char why[192];
            snprintf(why, sizeof why, "TLS: %s", rc == CX_E_CLOSED ? "the server closed the session"
                                                                   : cx_tls_last_error(c->tls));
            finish(c, CX_WS_CLOSE_ABNORMAL, why);
        }
    } else {
        deliver(c, (const uint8_t *)buf->base, (size_t)nread);
    }
}

/* ---- connect ---- */

static void on_connected(uv_connect_t *req, int status)
{
    cx_wsc *c = req->data;
    if (c->state == W_DONE)
        return;
    if (status < 0) {
        char why[400];
        snprintf(why, sizeof why, "cannot connect to %s:%d: %s", c->host, c->port,
                 uv_strerror(status));
        finish(c, CX_WS_CLOSE_ABNORMAL, why);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (c->tls_cfg) {
        c->tls = cx_tls_new_client(c->tls_cfg, c->host, tls_out, tls_in, c);
        if (!c->tls) {
            finish(c, CX_WS_CLOSE_ABNORMAL, "TLS: cannot start the handshake");
            return;
        }
    }
    c->resp = cx_http_resp_new(WSC_MAX_RESPONSE_HEAD);
    if (!c->resp) {
        finish(c, CX_WS_CLOSE_ABNORMAL, "out of memory");
        return;
    }
    cx_buf out;
    cx_buf_init(&out, 8192);
    char hostport[300];
    bool v6 = strchr(c->host, ':') != NULL;
    bool default_port = c->port == (c->tls_cfg ? 443 : 80);
    if (default_port)
        snprintf(hostport, sizeof hostport, v6 ? "[%s]" : "%s", c->host);
    else
        snprintf(hostport, sizeof hostport, v6 ? "[%s]:%d" : "%s:%d", c->host, c->port);
    cx_http_ws_new_key(c->key);
    int rc = cx_http_write_upgrade_request(&out, hostport, c->path, c->key, c->extra_headers);
    if (rc == CX_OK)
        rc = plain_write(c, out.data, out.len);
    cx_buf_free(&out);
    if (rc != CX_OK) {
        finish(c, CX_WS_CLOSE_ABNORMAL, "cannot send the upgrade request");
        return;
    }
    c->state = W_UPGRADE;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        finish(c, CX_WS_CLOSE_ABNORMAL, "cannot read from the connection");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    cx_wsc *c = req->data;
    c->gai_pending = 0;
    if (c->state == W_DONE) {
        uv_freeaddrinfo(res);
        if (c->handles == 0)
            free_client(c);
        return;
    }
    if (status < 0 || !res) {
        char why[320];
        snprintf(why, sizeof why, "cannot resolve %s: %s", c->host, uv_strerror(status));
        uv_freeaddrinfo(res);
        finish(c, CX_WS_CLOSE_ABNORMAL, why);
        return;
    }
    int rc = uv_tcp_init(c->loop, &c->tcp);
    if (rc == 0) {
        c->tcp.data = c;
        c->tcp_inited = 1;
        c->connect.data = c;
        c->state = W_CONNECT;
        rc = uv_tcp_connect(&c->connect, &c->tcp, res->ai_addr, on_connected);
    }
    uv_freeaddrinfo(res);
    if (rc < 0) {
        char why[400];
        snprintf(why, sizeof why, "cannot connect to %s:%d: %s", c->host, c->port, uv_strerror(rc));
        finish(c, CX_WS_CLOSE_ABNORMAL, why);
    }
}

static void on_timer(uv_timer_t *t)
{
    cx_wsc *c = t->data;
    uint64_t now = uv_now(c->loop);
    if (c->state == W_DONE)
        return;
    if (c->deadline && now >= c->deadline) {
        finish(c, CX_WS_CLOSE_ABNORMAL,
               c->state == W_CLOSING ? "the server did not answer our close"
                                     : "timed out connecting");
        return;
    }
    if (c->state != W_OPEN)
        return;
    if (c->pong_ms && now - c->last_heard >= c->pong_ms) {
        cx_wsc_close(c, CX_WS_CLOSE_POLICY, "keep-alive timeout");
        return;
    }
    if (c->ping_ms && now >= c->next_ping) {
        c->next_ping = now + c->ping_ms;
        (void)cx_ws_send_ping(c->ws);
    }
}

int cx_wsc_connect(uv_loop_t *loop, const cx_wsc_options *opt, const cx_wsc_callbacks *cb,
                   void *ud, cx_wsc **out, char **err)
{
    cx_wsc *c = calloc(1, sizeof *c);
    if (!c)
        return CX_E_NOMEM;
    bool tls;
    if (cx_wsc_parse_url(opt->url, &tls, c->host, sizeof c->host, &c->port, c->path,
                         sizeof c->path) != CX_OK) {
        if (err)
            *err = strdup("the URL must look like ws://host:port/ or wss://host/");
        free(c);
        return CX_E_INVAL;
    }
    if (tls && cx_tls_client_config_new(opt->ca_file, &c->tls_cfg, err) != CX_OK) {
        free(c);
        return CX_E_TLS;
    }
    if (opt->extra_headers && !(c->extra_headers = strdup(opt->extra_headers))) {
        free_client(c);
        return CX_E_NOMEM;
    }
    c->loop = loop;
    c->cb = *cb;
    c->ud = ud;
    c->max_message = opt->max_message ? opt->max_message : CX_WS_MAX_MESSAGE_BYTES;
    c->ping_ms = opt->ping_ms;
    c->pong_ms = opt->pong_ms;
    uint64_t now = uv_now(loop);
    c->deadline = now + (opt->timeout_ms ? opt->timeout_ms : WSC_DEFAULT_TIMEOUT_MS);
    c->last_heard = now;
    c->next_ping = now + c->ping_ms;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->handles = 2; /* timer, tcp (tcp made after the lookup) */
    uv_timer_start(&c->timer, on_timer, WSC_TICK_MS, WSC_TICK_MS);
    c->gai.data = c;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char port[8];
    snprintf(port, sizeof port, "%d", c->port);
    c->state = W_RESOLVE;
    c->gai_pending = 1;
    int rc = uv_getaddrinfo(loop, &c->gai, on_resolved, c->host, port, &hints);
    if (rc < 0) {
        c->gai_pending = 0;
        if (err) {
            size_t n = strlen(c->host) + 64;
            if ((*err = malloc(n)))
                snprintf(*err, n, "cannot resolve %s: %s", c->host, uv_strerror(rc));
        }
        c->cb.on_close = NULL; /* nothing is reported for a failed start */
        finish(c, CX_WS_CLOSE_ABNORMAL, "");
        return CX_E_IO;
    }
    *out = c;
    return CX_OK;
}

int cx_wsc_send_text(cx_wsc *c, const char *msg, size_t len)
{
    if (c->state != W_OPEN)
        return CX_E_CLOSED;
    return cx_ws_send_text(c->ws, msg, len);
}

void cx_wsc_close(cx_wsc *c, uint16_t code, const char *reason)
{
    if (c->state == W_DONE || c->state == W_CLOSING)
        return;
    if (c->state != W_OPEN) {
        finish(c, CX_WS_CLOSE_ABNORMAL, reason ? reason : "closed before the upgrade");
        return;
    }
    c->state = W_CLOSING;
    c->deadline = uv_now(c->loop) + CX_NET_CLOSE_LINGER_MS;
    if (cx_ws_close(c->ws, code, reason) != CX_OK && c->state != W_DONE)
        finish(c, code, reason);
}

bool cx_wsc_is_open(const cx_wsc *c)
{
    return c->state == W_OPEN;
}
