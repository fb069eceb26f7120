/* Loopback tests for the connection layer and the outbound client together: a real
 * cx_server and real cx_wsc clients (plus raw libuv sockets for what a client must not
 * do) share one uv loop on 127.0.0.1, every wait bounded so a bug fails instead of hanging. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "condrix/error.h"
#include "condrix/http.h"
#include "condrix/net.h"
#include "condrix/ws.h"
#include "condrix/wsclient.h"

#define MAX_CLIS 8
#define MAX_SRVS 4
#define MAX_RAWS 4
#define WAIT_MS 5000
#define BIG_LEN (200 * 1024)

/* ---- fixture ---- */

struct world;

/* One outbound client as its callbacks saw it. */
struct cli {
    struct world *w;
    cx_wsc *c;           /* NULL once on_close ran */
    int opens, msgs, closes;
    uint16_t code;
    char reason[400];
    char *msg;           /* last message, NUL-terminated copy */
    size_t msg_len;
    uint64_t started_ns, closed_ns;
};

/* A raw TCP peer for things a WebSocket client does not do. */
struct raw {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_write_t wreq2;      /* a second, later write */
    char *out;             /* bytes to send once connected */
    size_t out_len;
    char in[65536];        /* everything received */
    size_t in_len;
    int connected, eof, inited, closing, closed;
};

/* A listener that accepts and never says a word. */
struct silent {
    uv_tcp_t lis;
    uv_tcp_t peers[4];
    int npeers, inited;
};

struct world {
    uv_loop_t loop;
    uv_timer_t pacer;      /* keeps UV_RUN_ONCE from blocking long */
    cx_server *srvs[MAX_SRVS];
    int srv_done[MAX_SRVS];
    int nsrvs;
    struct cli clis[MAX_CLIS];
    int nclis;
    struct raw *raws[MAX_RAWS];
    int nraws;
    struct silent *silent;
    uv_tcp_t blocker;      /* bound, never listening: a port that refuses */
    int blocker_inited;
    /* what the servers saw */
    int upgrades, opens, msgs, closes, https, done_calls;
    uint16_t close_code;
    char peer[64];
    char upgrade_path[256];
    char *msg;
    size_t msg_len;
    cx_conn *conn;         /* the last opened connection, NULL once closed */
    /* how the servers behave */
    int refuse;            /* on_upgrade returns this */
    int auth;              /* authenticate in on_open */
    int echo;              /* answer every message */
    int close_on_msg;      /* cx_conn_close(4001) from on_message */
};

static char tls_dir[64];
static char ca_pem[128], srv_pem[128], srv_key[128], other_pem[128];

static uint64_t ms_ns(uint64_t ms) { return ms * 1000000u; }

/* Run the loop until cond holds or ms pass; the condition is re-read every turn. */
#define WAIT(w, cond, ms)                                                   \
    do {                                                                    \
        uint64_t dl_ = uv_hrtime() + ms_ns(ms);                             \
        while (!(cond) && uv_hrtime() < dl_)                                \
            uv_run(&(w)->loop, UV_RUN_ONCE);                                \
    } while (0)

static void spin(struct world *w, uint64_t ms)
{
    uint64_t dl = uv_hrtime() + ms_ns(ms);
    while (uv_hrtime() < dl)
        uv_run(&w->loop, UV_RUN_ONCE);
}

static void on_pacer(uv_timer_t *t) { (void)t; }

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof *w);
    if (!w || uv_loop_init(&w->loop) != 0)
        return -1;
    uv_timer_init(&w->loop, &w->pacer);
    uv_timer_start(&w->pacer, on_pacer, 10, 10);
    w->auth = 1;
    w->echo = 1;
    *state = w;
    return 0;
}

/* ---- server side ---- */

static struct world *srv_world(cx_server *s) { return cx_server_data(s); }

static void srv_on_http(cx_server *s, cx_conn *c, const cx_http_req *req)
{
    struct world *w = srv_world(s);
    w->https++;
    if (strcmp(cx_http_req_path(req), "/healthz") == 0)
        cx_conn_http_reply(c, 200, "text/plain", NULL, "ok", 2);
}

static int srv_on_upgrade(cx_server *s, cx_conn *c, const cx_http_req *req)
{
    (void)c;
    struct world *w = srv_world(s);
    w->upgrades++;
    snprintf(w->upgrade_path, sizeof w->upgrade_path, "%s", cx_http_req_path(req));
    return w->refuse;
}

static void srv_on_open(cx_server *s, cx_conn *c)
{
    struct world *w = srv_world(s);
    w->opens++;
    w->conn = c;
    snprintf(w->peer, sizeof w->peer, "%s", cx_conn_peer(c));
    if (w->auth)
        cx_conn_set_authenticated(c);
}

static void srv_on_message(cx_server *s, cx_conn *c, const char *msg, size_t len)
{
    struct world *w = srv_world(s);
    w->msgs++;
    free(w->msg);
    w->msg = malloc(len + 1);
    assert_non_null(w->msg);
    memcpy(w->msg, msg, len);
    w->msg[len] = '\0';
    w->msg_len = len;
    if (w->close_on_msg) {
        cx_conn_close(c, CX_WS_CLOSE_ROTATED, "rotated");
        return;
    }
    if (!w->echo)
        return;
    if (len < 256) {
        char re[300];
        int n = snprintf(re, sizeof re, "re:%.*s", (int)len, msg);
        assert_int_equal(cx_conn_send_text(c, re, (size_t)n), CX_OK);
    } else {
        assert_int_equal(cx_conn_send_text(c, msg, len), CX_OK);
    }
}

static void srv_on_close(cx_server *s, cx_conn *c, uint16_t code)
{
    struct world *w = srv_world(s);
    w->closes++;
    w->close_code = code;
    if (w->conn == c)
        w->conn = NULL;
}

static const cx_server_callbacks srv_cb = {
    .on_http = srv_on_http,
    .on_upgrade = srv_on_upgrade,
    .on_open = srv_on_open,
    .on_message = srv_on_message,
    .on_close = srv_on_close,
};

static cx_server *start_server_at(struct world *w, const cx_server_limits *lim,
                                  const char *cert, const char *key, const char *host)
{
    assert_true(w->nsrvs < MAX_SRVS);
    cx_server *s = NULL;
    assert_int_equal(cx_server_new(&w->loop, &srv_cb, w, lim, &s), CX_OK);
    w->srvs[w->nsrvs++] = s;
    char *err = NULL;
    if (cert) {
        int rc = cx_server_set_tls(s, cert, key, &err);
        if (rc != CX_OK)
            fail_msg("cx_server_set_tls: %s", err ? err : "?");
        assert_true(cx_server_is_tls(s));
    }
    int rc = cx_server_listen(s, host, 0, &err);
    if (rc != CX_OK)
        fail_msg("cx_server_listen: %s", err ? err : "?");
    assert_true(cx_server_port(s) > 0);
    return s;
}

static cx_server *start_server(struct world *w, const cx_server_limits *lim, const char *cert,
                               const char *key)
{
    return start_server_at(w, lim, cert, key, "127.0.0.1");
}

static void on_srv_done(cx_server *s)
{
    struct world *w = srv_world(s);
    w->done_calls++;
    for (int i = 0; i < w->nsrvs; i++)
        if (w->srvs[i] == s)
            w->srv_done[i] = 1;
}

/* ---- client side ---- */

static void cli_on_open(cx_wsc *c, void *ud)
{
    (void)c;
    struct cli *k = ud;
    k->opens++;
}

static void cli_on_message(cx_wsc *c, void *ud, const char *msg, size_t len)
{
    (void)c;
    struct cli *k = ud;
    k->msgs++;
    free(k->msg);
    k->msg = malloc(len + 1);
    assert_non_null(k->msg);
    memcpy(k->msg, msg, len);
    k->msg[len] = '\0';
    k->msg_len = len;
}

static void cli_on_close(cx_wsc *c, void *ud, uint16_t code, const char *reason)
{
    struct cli *k = ud;
    assert_ptr_equal(c, k->c);
    k->closes++;
    k->code = code;
    snprintf(k->reason, sizeof k->reason, "%s", reason ? reason : "(null)");
    k->closed_ns = uv_hrtime();
    k->c = NULL;
}

static const cx_wsc_callbacks cli_cb = {
    .on_open = cli_on_open,
    .on_message = cli_on_message,
    .on_close = cli_on_close,
};

static struct cli *connect_opt(struct world *w, cx_wsc_options *opt)
{
    assert_true(w->nclis < MAX_CLIS);
    struct cli *k = &w->clis[w->nclis++];
    k->w = w;
    k->started_ns = uv_hrtime();
    char *err = NULL;
    int rc = cx_wsc_connect(&w->loop, opt, &cli_cb, k, &k->c, &err);
    if (rc != CX_OK)
        fail_msg("cx_wsc_connect(%s): %d %s", opt->url, rc, err ? err : "?");
    assert_non_null(k->c);
    return k;
}

static struct cli *connect_url(struct world *w, const char *url, const char *ca)
{
    cx_wsc_options opt = {.url = url, .ca_file = ca};
    return connect_opt(w, &opt);
}

static void url_of(char *buf, size_t n, const char *scheme, const char *host, cx_server *s,
                   const char *path)
{
    snprintf(buf, n, "%s://%s:%d%s", scheme, host, cx_server_port(s), path);
}

static struct cli *open_client(struct world *w, cx_server *s)
{
    char url[128];
    url_of(url, sizeof url, "ws", "127.0.0.1", s, "/ws");
    struct cli *k = connect_url(w, url, NULL);
    WAIT(w, k->opens || k->closes, WAIT_MS);
    if (!k->opens)
        fail_msg("client did not open: closes=%d code=%u reason=%s", k->closes, k->code,
                 k->reason);
    assert_true(cx_wsc_is_open(k->c));
    return k;
}

/* ---- raw TCP peers ---- */

static void raw_on_closed(uv_handle_t *h)
{
    struct raw *r = h->data;
    r->closed = 1;
}

static void raw_close(struct raw *r)
{
    if (r->inited && !r->closing) {
        r->closing = 1;
        uv_close((uv_handle_t *)&r->tcp, raw_on_closed);
    }
}

static void raw_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)sz;
    struct raw *r = h->data;
    size_t room = sizeof r->in - 1 - r->in_len; /* one byte kept for a NUL */
    *b = uv_buf_init(r->in + r->in_len, (unsigned)(room ? room : 1));
}

static void raw_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct raw *r = s->data;
    if (n > 0 && r->in_len + (size_t)n < sizeof r->in) {
        r->in_len += (size_t)n;
    } else if (n < 0) {
        r->eof = 1; /* EOF or reset: either way the server hung up */
        raw_close(r);
    }
}

static void raw_on_written(uv_write_t *req, int status) { (void)req; (void)status; }

static void raw_on_connect(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    if (status < 0) {
        r->eof = 1;
        raw_close(r);
        return;
    }
    r->connected = 1;
    uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_on_read);
    uv_buf_t b = uv_buf_init(r->out, (unsigned)r->out_len);
    assert_int_equal(uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, raw_on_written), 0);
}

static void raw_send_more(struct raw *r, const void *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    assert_int_equal(uv_write(&r->wreq2, (uv_stream_t *)&r->tcp, &b, 1, raw_on_written), 0);
}

/* Connect to 127.0.0.1:port, send data, collect the answer until the server hangs up. */
static struct raw *raw_send(struct world *w, int port, const char *data, size_t len)
{
    assert_true(w->nraws < MAX_RAWS);
    struct raw *r = calloc(1, sizeof *r);
    assert_non_null(r);
    w->raws[w->nraws++] = r;
    r->out = malloc(len);
    assert_non_null(r->out);
    memcpy(r->out, data, len);
    r->out_len = len;
    assert_int_equal(uv_tcp_init(&w->loop, &r->tcp), 0);
    r->inited = 1;
    r->tcp.data = r;
    r->creq.data = r;
    struct sockaddr_in sa;
    assert_int_equal(uv_ip4_addr("127.0.0.1", port, &sa), 0);
    assert_int_equal(uv_tcp_connect(&r->creq, &r->tcp, (struct sockaddr *)&sa, raw_on_connect), 0);
    return r;
}

static void silent_on_closed(uv_handle_t *h) { (void)h; }

static void silent_on_conn(uv_stream_t *ls, int status)
{
    struct silent *s = ls->data;
    if (status < 0 || s->npeers >= 4)
        return;
    uv_tcp_t *p = &s->peers[s->npeers];
    uv_tcp_init(ls->loop, p);
    s->npeers++;
    (void)uv_accept(ls, (uv_stream_t *)p);
}

static int local_port(uv_tcp_t *t)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    assert_int_equal(uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* ---- teardown: everything closed, the loop empty ---- */

static void count_handle(uv_handle_t *h, void *arg)
{
    int *n = arg;
    (*n)++;
    fprintf(stderr, "  leaked handle: %s%s\n", uv_handle_type_name(h->type),
            uv_is_closing(h) ? " (closing)" : "");
}

static int loop_dry(struct world *w)
{
    uint64_t dl = uv_hrtime() + ms_ns(WAIT_MS);
    int alive = 1;
    while (alive && uv_hrtime() < dl)
        alive = uv_run(&w->loop, UV_RUN_NOWAIT) || uv_loop_alive(&w->loop);
    return !alive;
}

static bool all_closed(struct world *w)
{
    for (int i = 0; i < w->nclis; i++)
        if (w->clis[i].c)
            return false;
    for (int i = 0; i < w->nsrvs; i++)
        if (!w->srv_done[i])
            return false;
    for (int i = 0; i < w->nraws; i++)
        if (w->raws[i]->inited && !w->raws[i]->closed)
            return false;
    return true;
}

static int teardown(void **state)
{
    struct world *w = *state;
    for (int i = 0; i < w->nclis; i++)
        if (w->clis[i].c)
            cx_wsc_close(w->clis[i].c, CX_WS_CLOSE_NORMAL, "teardown");
    for (int i = 0; i < w->nsrvs; i++)
        if (!w->srv_done[i])
            cx_server_shutdown(w->srvs[i], CX_WS_CLOSE_GOING_AWAY, "teardown", on_srv_done);
    for (int i = 0; i < w->nraws; i++)
        raw_close(w->raws[i]);
    if (w->silent && w->silent->inited) {
        uv_close((uv_handle_t *)&w->silent->lis, silent_on_closed);
        for (int i = 0; i < w->silent->npeers; i++)
            uv_close((uv_handle_t *)&w->silent->peers[i], silent_on_closed);
    }
    if (w->blocker_inited)
        uv_close((uv_handle_t *)&w->blocker, silent_on_closed);
    WAIT(w, all_closed(w), WAIT_MS);
    int ok = all_closed(w);
    for (int i = 0; i < w->nsrvs; i++)
        if (w->srv_done[i])
            cx_server_free(w->srvs[i]);
    uv_close((uv_handle_t *)&w->pacer, NULL);
    ok = loop_dry(w) && ok;
    int rc = uv_loop_close(&w->loop);
    if (rc != 0) {
        int n = 0;
        uv_walk(&w->loop, count_handle, &n);
        fprintf(stderr, "teardown: uv_loop_close: %s (%d handles)\n", uv_strerror(rc), n);
    }
    for (int i = 0; i < w->nclis; i++)
        free(w->clis[i].msg);
    for (int i = 0; i < w->nraws; i++) {
        free(w->raws[i]->out);
        free(w->raws[i]);
    }
    free(w->silent);
    free(w->msg);
    free(w);
    if (!ok)
        fprintf(stderr, "teardown: something did not close in time\n");
    return ok && rc == 0 ? 0 : -1;
}

/* ---- cx_wsc_parse_url ---- */

struct url_case {
    const char *url;
    bool tls;
    const char *host;
    int port;
    const char *path;
};

static void test_parse_url_good(void **state)
{
    (void)state;
    static const struct url_case cases[] = {
        {"ws://example.com", false, "example.com", 80, "/"},
        {"wss://example.com", true, "example.com", 443, "/"},
        {"ws://example.com/", false, "example.com", 80, "/"},
        {"wss://example.com:8443/a/b", true, "example.com", 8443, "/a/b"},
        {"ws://h:8080/ws?token=abc&x=1", false, "h", 8080, "/ws?token=abc&x=1"},
        {"ws://h?x=1", false, "h", 80, "/?x=1"},
        {"ws://h/p#frag", false, "h", 80, "/p"},
        {"ws://h#frag", false, "h", 80, "/"},
        {"wss://[::1]:9200", true, "::1", 9200, "/"},
        {"wss://[::1]:9200/ws?a=b", true, "::1", 9200, "/ws?a=b"},
        {"ws://[fe80::1]", false, "fe80::1", 80, "/"},
        {"ws://127.0.0.1:1/", false, "127.0.0.1", 1, "/"},
        {"ws://127.0.0.1:65535/", false, "127.0.0.1", 65535, "/"},
        {"ws://h:080/", false, "h", 80, "/"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool tls = !cases[i].tls;
        char host[64] = "x", path[64] = "x";
        int port = -1;
        int rc = cx_wsc_parse_url(cases[i].url, &tls, host, sizeof host, &port, path, sizeof path);
        if (rc != CX_OK)
            fail_msg("%s: rc %d", cases[i].url, rc);
        assert_int_equal(tls, cases[i].tls);
        assert_string_equal(host, cases[i].host);
        assert_int_equal(port, cases[i].port);
        assert_string_equal(path, cases[i].path);
    }
}

static void test_parse_url_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "http://h/", "https://h/", "ftp://h/", "ws:/h/", "ws:h", "h:80", "//h/",
        "wss//h/",
        /* ports */
        "ws://h:0/", "ws://h:65536/", "ws://h:99999999999999999999/", "ws://h:-1/",
        "ws://h:/", "ws://h:", "ws://h:abc/", "ws://h:80x/", "ws://h:0x50/", "ws://h:8 0/",
        "ws://h: 80/", "ws://h:+80/",
        /* hosts */
        "ws://", "wss://", "ws:///p", "ws://:80/", "ws://[]/", "ws://[]:80/", "ws://[::1/",
        "ws://[::1]x/", "ws://[::1]80/", "ws://h h/", "ws://h\r\nX-Evil: 1/",
        /* control characters and spaces in the path */
        "ws://h/a b", "ws://h/a\tb", "ws://h/a\r\nX-Evil: 1", "ws://h/\x7f", "ws://h/\x01",
        "ws://h/?q=a b", "ws://h?\n",
    };
    int accepted = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool tls;
        char host[64], path[64];
        int port;
        int rc = cx_wsc_parse_url(bad[i], &tls, host, sizeof host, &port, path, sizeof path);
        if (rc != CX_E_INVAL) {
            print_error("\"%s\" was accepted (rc %d, host \"%s\", port %d)\n", bad[i], rc,
                        rc == CX_OK ? host : "", rc == CX_OK ? port : 0);
            accepted++;
        }
    }
    assert_int_equal(accepted, 0);
}

static void test_parse_url_small_buffers(void **state)
{
    (void)state;
    bool tls;
    char host[8], path[8];
    int port;
    assert_int_equal(cx_wsc_parse_url("ws://1234567/", &tls, host, sizeof host, &port, path,
                                      sizeof path), CX_OK);
    assert_string_equal(host, "1234567");
    assert_int_equal(cx_wsc_parse_url("ws://12345678/", &tls, host, sizeof host, &port, path,
                                      sizeof path), CX_E_INVAL);
    assert_int_equal(cx_wsc_parse_url("ws://h/23456", &tls, host, sizeof host, &port, path,
                                      sizeof path), CX_OK);
    assert_string_equal(path, "/23456");
    assert_int_equal(cx_wsc_parse_url("ws://h/2345678", &tls, host, sizeof host, &port, path,
                                      sizeof path), CX_E_INVAL);
    assert_int_equal(cx_wsc_parse_url("ws://h?345678", &tls, host, sizeof host, &port, path,
                                      sizeof path), CX_E_INVAL);
    assert_int_equal(cx_wsc_parse_url("ws://h?34567", &tls, host, sizeof host, &port, path,
                                      sizeof path), CX_OK);
    assert_string_equal(path, "/?34567");
}

/* ---- plain ws ---- */

static void test_connect_bad_arguments(void **state)
{
    struct world *w = *state;
    struct cli k = {0};
    cx_wsc *c = NULL;
    char *err = NULL;
    cx_wsc_options opt = {.url = "http://127.0.0.1/"};
    assert_int_equal(cx_wsc_connect(&w->loop, &opt, &cli_cb, &k, &c, &err), CX_E_INVAL);
    assert_non_null(err);
    free(err);
    err = NULL;
    opt.url = "wss://127.0.0.1:1/";
    opt.ca_file = "/nonexistent/ca.pem";
    assert_int_equal(cx_wsc_connect(&w->loop, &opt, &cli_cb, &k, &c, &err), CX_E_TLS);
    assert_non_null(err);
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    free(err);
    spin(w, 20);
    assert_int_equal(k.closes, 0); /* a failed start reports nothing */
}

static void test_round_trip(void **state)
{
    struct world *w = *state;
    cx_server *s = start_server(w, NULL, NULL, NULL);
    struct cli *k = open_client(w, s);
    WAIT(w, w->opens == 1, WAIT_MS);
    assert_int_equal(w->opens, 1);
    assert_string_equal(w->peer, "127.0.0.1");
    assert_string_equal(w->upgrade_path, "/ws");
    assert_int_equal(cx_server_conn_count(s), 1);

    assert_int_equal(cx_wsc_send_text(k->c, "hello", 5), CX_OK);
    WAIT(w, k->msgs == 1, WAIT_MS);
    assert_int_equal(w->msgs, 1);
    assert_string_equal(w->msg, "hello");
    assert_int_equal(k->msgs, 1);
    assert_string_equal(k->msg, "re:hello");

    /* The server speaks first, outside any callback. */
    assert_non_null(w->conn);
    assert_int_equal(cx_conn_send_text(w->conn, "push", 4), CX_OK);
    WAIT(w, k->msgs == 2, WAIT_MS);
    assert_string_equal(k->msg, "push");

    cx_wsc_close(k->c, CX_WS_CLOSE_NORMAL, "done");
    assert_false(k->c && cx_wsc_is_open(k->c));
    assert_int_equal(cx_wsc_send_text(k->c, "late", 4), CX_E_CLOSED);
    WAIT(w, k->closes && w->closes, WAIT_MS);
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->code, CX_WS_CLOSE_NORMAL);
    assert_int_equal(w->closes, 1);
    assert_int_equal(w->close_code, CX_WS_CLOSE_NORMAL);
    spin(w, 50);
    assert_int_equal(k->closes, 1);
    assert_int_equal(cx_server_conn_count(s), 0);
}

static void fill_pattern(char *p, size_t n, char seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (i * 7 + (size_t)seed) % 26);
}

static void test_big_messages(void **state)
{
    struct world *w = *state;
    cx_server *s = start_server(w, NULL, NULL, NULL);
    struct cli *k = open_client(w, s);
    char *big = malloc(BIG_LEN);
    assert_non_null(big);
    fill_pattern(big, BIG_LEN, 3);
    /* Client to server; the server echoes it back whole. */
    assert_int_equal(cx_wsc_send_text(k->c, big, BIG_LEN), CX_OK);
    WAIT(w, k->msgs == 1 || k->closes, WAIT_MS);
    assert_int_equal(w->msgs, 1);
    assert_int_equal(w->msg_len, BIG_LEN);
    assert_memory_equal(w->msg, big, BIG_LEN);
    assert_int_equal(k->msgs, 1);
    assert_int_equal(k->msg_len, BIG_LEN);
    assert_memory_equal(k->msg, big, BIG_LEN);
    /* Server to client, outside a callback. */
    fill_pattern(big, BIG_LEN, 11);
    assert_non_null(w->conn);
    assert_int_equal(cx_conn_send_text(w->conn, big, BIG_LEN), CX_OK);
    WAIT(w, k->msgs == 2 || k->closes, WAIT_MS);
    assert_int_equal(k->msgs, 2);
    assert_int_equal(k->msg_len, BIG_LEN);
    assert_memory_equal(k->msg, big, BIG_LEN);
    free(big);
    assert_int_equal(k->closes, 0);
}

static void test_server_closes(void **state)
{
    struct world *w = *state;
    cx_server *s = start_server(w, NULL, NULL, NULL);
    struct cli *k = open_client(w, s);
    WAIT(w, w->conn != NULL, WAIT_MS);
    assert_non_null(w->conn);
    cx_conn_close(w->conn, CX_WS_CLOSE_ROTATED, "rotated");
    assert_true(w->conn == NULL || cx_conn_closing(w->conn));
    assert_true(w->conn == NULL || cx_conn_send_text(w->conn, "x", 1) == CX_E_CLOSED);
    WAIT(w, k->closes && w->closes, WAIT_MS);
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->code, CX_WS_CLOSE_ROTATED);
    assert_string_equal(k->reason, "rotated");
    assert_int_equal(w->closes, 1);
    assert_int_equal(w->close_code, CX_WS_CLOSE_ROTATED);
}

/* The same close, started from inside on_message. */
static void test_server_closes_from_callback(void **state)
{
    struct world *w = *state;
    cx_server *s = start_server(w, NULL, NULL, NULL);
    struct cli *k = open_client(w, s);
    w->close_on_msg = 1;
    assert_int_equal(cx_wsc_send_text(k->c, "bye?", 4), CX_OK);
    WAIT(w, k->closes && w->closes, WAIT_MS);
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->code, CX_WS_CLOSE_ROTATED);
    assert_string_equal(k->reason, "rotated");
    assert_int_equal(w->close_code, CX_WS_CLOSE_ROTATED);
}

/* Closing from inside a callback must still wait for the peer's close frame (net.h:
 * cx_conn_close lingers), not drop the link the moment the close frame is flushed. */
static void test_server_close_waits_for_peer(void **state)
{
    struct world *w = *state;
    cx_server *s = start_server(w, NULL, NULL, NULL);
    w->close_on_msg = 1;
    /* A hand-made client: upgrade plus one masked text frame "hi" (zero mask). */
    static const char req[] = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n\x81\x82\0\0\0\0hi";
    struct raw *r = raw_send(w, cx_server_port(s), req, sizeof req - 1);
    const char *frame = NULL;
    uint64_t dl = uv_hrtime() + ms_ns(WAIT_MS);
    while (!frame && !r->eof && uv_hrtime() < dl) {
        uv_run(&w->loop, UV_RUN_ONCE);
        r->in[r->in_len] = '\0';
        const char *end = strstr(r->in, "\r\n\r\n");
        if (end && r->in + r->in_len >= end + 4 + 4)
            frame = end + 4;
    }
    assert_non_null(frame);
    assert_memory_equal(r->in, "HTTP/1.1 101 ", 13);
    assert_int_equal((uint8_t)frame[0], 0x88);                        /* close */
    assert_int_equal(((uint8_t)frame[2] << 8) | (uint8_t)frame[3], 4001);
    spin(w, 300);
    if (r->eof)
        fail_msg("the server dropped the link without waiting for our close frame");
    static const char close_frame[] = "\x88\x82\0\0\0\0\x0f\xa1"; /* 4001, masked with 0 */
    raw_send_more(r, close_frame, sizeof close_frame - 1);
    WAIT(w, r->eof && w->closes, WAIT_MS);
    assert_true(r->eof);
    assert_int_equal(w->close_code, CX_WS_CLOSE_ROTATED);
}

static void test_ipv6_loopback(void **state)
{
    struct world *w = *state;
    cx_server *s = start_server_at(w, NULL, NULL, NULL, "::1");
    char url[128];
    url_of(url, sizeof url, "ws", "[::1]", s, "/v6?x=1");
    struct cli *k = connect_url(w, url, NULL);
    WAIT(w, k->opens || k->closes, WAIT_MS);
    if (!k->opens)
        fail_msg("no open over ::1: %s", k->reason);
    WAIT(w, w->opens == 1, WAIT_MS);
    assert_string_equal(w->peer, "::1");
    assert_string_equal(w->upgrade_path, "/v6?x=1");
    assert_int_equal(cx_wsc_send_text(k->c, "six", 3), CX_OK);
    WAIT(w, k->msgs == 1, WAIT_MS);
    assert_string_equal(k->msg, "re:six");
}

/* ---- refusals ---- */

static void test_upgrade_refused(void **state)
{
    struct world *w = *state;
    cx_server *s = start_server(w, NULL, NULL, NULL);
    w->refuse = 403;
    char url[128];
    url_of(url, sizeof url, "ws", "127.0.0.1", s, "/");
    struct cli *k = connect_url(w, url, NULL);
    WAIT(w, k->closes, WAIT_MS);
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->opens, 0);
    assert_int_equal(k->code, CX_WS_CLOSE_ABNORMAL);
    assert_non_null(strstr(k->reason, "HTTP 403"));
    assert_int_equal(w->upgrades, 1);
    assert_int_equal(w->opens, 0);
    assert_int_equal(w->closes, 0); /* never opened: no on_close owed */
}

static void test_connection_refused(void **state)
{
    struct world *w = *state;
    /* A bound socket that never listens: its port refuses and nobody can take it. */
    assert_int_equal(uv_tcp_init(&w->loop, &w->blocker), 0);
    w->blocker_inited = 1;
    struct sockaddr_in sa;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    assert_int_equal(uv_tcp_bind(&w->blocker, (struct sockaddr *)&sa, 0), 0);
    char url[128];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", local_port(&w->blocker));
    struct cli *k = connect_url(w, url, NULL);
    WAIT(w, k->closes, WAIT_MS);
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->opens, 0);
    assert_int_equal(k->code, CX_WS_CLOSE_ABNORMAL);
    assert_non_null(strstr(k->reason, "connect"));
    assert_non_null(strstr(k->reason, "refused"));
}

static void test_silent_server_times_out(void **state)
{
    struct world *w = *state;
    w->silent = calloc(1, sizeof *w->silent);
    assert_non_null(w->silent);
    struct silent *sl = w->silent;
    assert_int_equal(uv_tcp_init(&w->loop, &sl->lis), 0);
    sl->inited = 1;
    sl->lis.data = sl;
    struct sockaddr_in sa;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    assert_int_equal(uv_tcp_bind(&sl->lis, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&sl->lis, 8, silent_on_conn), 0);
    char url[128];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/", local_port(&sl->lis));
    cx_wsc_options opt = {.url = url, .timeout_ms = 300};
    struct cli *k = connect_opt(w, &opt);
    WAIT(w, k->closes, WAIT_MS);
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->opens, 0);
    assert_int_equal(sl->npeers, 1);
    assert_int_equal(k->code, CX_WS_CLOSE_ABNORMAL);
    assert_non_null(strstr(k->reason, "timed out"));
    uint64_t took = (k->closed_ns - k->started_ns) / 1000000u;
    assert_true(took >= 290);
    assert_true(took < 2000);
}

/* Abandoning an attempt before it opens still ends in one on_close. */
static void test_close_before_open(void **state)
{
    struct world *w = *state;
    cx_server *s = start_server(w, NULL, NULL, NULL);
    char url[128];
    url_of(url, sizeof url, "ws", "127.0.0.1", s, "/");
    struct cli *k = connect_url(w, url, NULL);
    assert_false(cx_wsc_is_open(k->c));
    assert_int_equal(cx_wsc_send_text(k->c, "early", 5), CX_E_CLOSED);
    cx_wsc_close(k->c, CX_WS_CLOSE_NORMAL, "changed my mind");
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->code, CX_WS_CLOSE_ABNORMAL);
    spin(w, 100);
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->opens, 0);
}

/* ---- plain HTTP ---- */

static bool ends_with(const char *s, size_t n, const char *tail)
{
    size_t t = strlen(tail);
    return n >= t && memcmp(s + n - t, tail, t) == 0;
}

static void test_http_get(void **state)
{
    struct world *w = *state;
    cx_server *s = start_server(w, NULL, NULL, NULL);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    struct raw *r = raw_send(w, cx_server_port(s), req, sizeof req - 1);
    static const char req404[] = "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n";
    struct raw *r2 = raw_send(w, cx_server_port(s), req404, sizeof req404 - 1);
    WAIT(w, r->eof && r2->eof, WAIT_MS);
    assert_true(r->eof); /* the server closes after answering */
    r->in[r->in_len] = '\0';
    assert_true(r->in_len > 12);
    assert_memory_equal(r->in, "HTTP/1.1 200 ", 13);
    assert_non_null(strcasestr(r->in, "\r\ncontent-length: 2\r\n"));
    assert_non_null(strcasestr(r->in, "\r\ncontent-type: text/plain"));
    assert_true(ends_with(r->in, r->in_len, "\r\n\r\nok"));
    assert_true(r2->eof);
    assert_true(r2->in_len > 12);
    assert_memory_equal(r2->in, "HTTP/1.1 404 ", 13);
    assert_int_equal(w->https, 2);
    assert_int_equal(w->opens, 0);
    assert_int_equal(cx_server_conn_count(s), 0);
}

static void test_http_head_too_big(void **state)
{
    struct world *w = *state;
    cx_server_limits lim;
    cx_server_limits_default(&lim);
    lim.head_bytes = 2048;
    cx_server *s = start_server(w, &lim, NULL, NULL);
    char req[4096];
    int n = snprintf(req, sizeof req, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: %03000d\r\n\r\n", 0);
    assert_true(n > 3000 && (size_t)n < sizeof req);
    struct raw *r = raw_send(w, cx_server_port(s), req, (size_t)n);
    WAIT(w, r->eof, WAIT_MS);
    assert_true(r->eof);
    assert_true(r->in_len > 12);
    assert_memory_equal(r->in, "HTTP/1.1 431 ", 13);
    assert_int_equal(w->https, 0);
}

/* ---- TLS ---- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof cmd)
        return -1;
    return system(cmd);
}

static int write_text(const char *dir, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static const char *const tls_files[] = {
    "req.cnf", "ca.key", "ca.pem", "ca.srl", "srv.key", "srv.csr", "srv.pem",
    "srv.ext", "other.ext", "other.pem",
};

static int group_setup(void **state)
{
    (void)state;
    snprintf(tls_dir, sizeof tls_dir, "/tmp/cx-wsclient-XXXXXX");
    if (!mkdtemp(tls_dir))
        return -1;
    snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", tls_dir);
    snprintf(srv_pem, sizeof srv_pem, "%s/srv.pem", tls_dir);
    snprintf(srv_key, sizeof srv_key, "%s/srv.key", tls_dir);
    snprintf(other_pem, sizeof other_pem, "%s/other.pem", tls_dir);
    /* A config of our own so the machine's openssl.cnf cannot change the result. */
    if (write_text(tls_dir, "req.cnf",
                   "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = condrix test CA\n"
                   "[ca_ext]\nbasicConstraints = critical,CA:TRUE\n"
                   "keyUsage = critical,keyCertSign,cRLSign\n"
                   "subjectKeyIdentifier = hash\n") ||
        write_text(tls_dir, "srv.ext",
                   "subjectAltName = IP:127.0.0.1,DNS:localhost\nbasicConstraints = CA:FALSE\n"
                   "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n") ||
        write_text(tls_dir, "other.ext",
                   "subjectAltName = DNS:other.example\nbasicConstraints = CA:FALSE\n"
                   "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"))
        return -1;
    const char *d = tls_dir;
    if (sh("cd %s && openssl req -x509 -config req.cnf -extensions ca_ext -newkey ec "
           "-pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 "
           ">/dev/null 2>&1", d) != 0 ||
        sh("cd %s && openssl req -new -config req.cnf -subj /CN=condrix-test-server -newkey ec "
           "-pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr "
           ">/dev/null 2>&1", d) != 0 ||
        sh("cd %s && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
           "-days 2 -extfile srv.ext -out srv.pem >/dev/null 2>&1", d) != 0 ||
        sh("cd %s && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
           "-days 2 -extfile other.ext -out other.pem >/dev/null 2>&1", d) != 0) {
        fprintf(stderr, "openssl could not make the test certificates in %s\n", d);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char path[256];
    for (size_t i = 0; i < sizeof tls_files / sizeof tls_files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tls_dir, tls_files[i]);
        (void)unlink(path);
    }
    return rmdir(tls_dir) == 0 ? 0 : -1;
}

static struct cli *tls_client(struct world *w, cx_server *s, const char *host, const char *ca)
{
    char url[128];
    url_of(url, sizeof url, "wss", host, s, "/tls");
    return connect_url(w, url, ca);
}

static void expect_tls_round_trip(struct world *w, struct cli *k, const char *text)
{
    WAIT(w, k->opens || k->closes, WAIT_MS);
    if (!k->opens)
        fail_msg("TLS client did not open: %u %s", k->code, k->reason);
    int before = k->msgs;
    assert_int_equal(cx_wsc_send_text(k->c, text, strlen(text)), CX_OK);
    WAIT(w, k->msgs > before || k->closes, WAIT_MS);
    assert_int_equal(k->msgs, before + 1);
    char want[300];
    snprintf(want, sizeof want, "re:%s", text);
    assert_string_equal(k->msg, want);
}

static void test_tls_ok_ip(void **state)
{
    struct world *w = *state;
    cx_server *s = start_server(w, NULL, srv_pem, srv_key);
    struct cli *k = tls_client(w, s, "127.0.0.1", ca_pem);
    expect_tls_round_trip(w, k, "over tls");
    assert_string_equal(w->upgrade_path, "/tls");
    cx_wsc_close(k->c, CX_WS_CLOSE_NORMAL, "done");
    WAIT(w, k->closes && w->closes, WAIT_MS);
    assert_int_equal(k->code, CX_WS_CLOSE_NORMAL);
    assert_int_equal(w->close_code, CX_WS_CLOSE_NORMAL);
}

static void test_tls_ok_name(void **state)
{
    struct world *w = *state;
    cx_server *s = start_server(w, NULL, srv_pem, srv_key);
    struct cli *k = tls_client(w, s, "localhost", ca_pem);
    expect_tls_round_trip(w, k, "by name");
    /* Big messages cross many TLS records both ways. */
    char *big = malloc(BIG_LEN);
    assert_non_null(big);
    fill_pattern(big, BIG_LEN, 5);
    assert_int_equal(cx_wsc_send_text(k->c, big, BIG_LEN), CX_OK);
    WAIT(w, k->msgs == 2 || k->closes, WAIT_MS);
    assert_int_equal(k->msgs, 2);
    assert_int_equal(k->msg_len, BIG_LEN);
    assert_memory_equal(k->msg, big, BIG_LEN);
    free(big);
}

/* Refused at verification, and the reason says which check failed (why). */
static void expect_tls_refused(struct world *w, struct cli *k, const char *why)
{
    WAIT(w, k->closes, WAIT_MS);
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->opens, 0);
    assert_int_equal(k->code, CX_WS_CLOSE_ABNORMAL);
    if (!strstr(k->reason, "TLS") || !strcasestr(k->reason, "verif"))
        fail_msg("reason does not name TLS verification: %s", k->reason);
    if (!strstr(k->reason, why))
        fail_msg("reason does not say \"%s\": %s", why, k->reason);
    assert_int_equal(w->opens, 0);
}

static void test_tls_untrusted_ca(void **state)
{
    struct world *w = *state;
    cx_server *s = start_server(w, NULL, srv_pem, srv_key);
    expect_tls_refused(w, tls_client(w, s, "localhost", NULL), "not signed by a trusted CA");
}

/* A key that is not the certificate's is refused at setup, not at every handshake. */
static void test_tls_key_mismatch(void **state)
{
    struct world *w = *state;
    char ca_key[160];
    snprintf(ca_key, sizeof ca_key, "%.140s/ca.key", tls_dir);
    cx_server *s = NULL;
    assert_int_equal(cx_server_new(&w->loop, &srv_cb, w, NULL, &s), CX_OK);
    char *err = NULL;
    assert_int_not_equal(cx_server_set_tls(s, srv_pem, ca_key, &err), CX_OK);
    assert_non_null(err);
    if (!strstr(err, "do not fit together"))
        fail_msg("unexpected error: %s", err);
    free(err);
    assert_false(cx_server_is_tls(s));
    cx_server_free(s);
}

static void test_tls_wrong_name(void **state)
{
    struct world *w = *state;
    /* Trusted CA, valid chain: only the name (DNS:other.example) is wrong. */
    cx_server *s = start_server(w, NULL, other_pem, srv_key);
    expect_tls_refused(w, tls_client(w, s, "localhost", ca_pem), "another name");
    expect_tls_refused(w, tls_client(w, s, "127.0.0.1", ca_pem), "another name");
}

static void test_tls_plain_client(void **state)
{
    struct world *w = *state;
    cx_server *s = start_server(w, NULL, srv_pem, srv_key);
    char url[128];
    url_of(url, sizeof url, "ws", "127.0.0.1", s, "/");
    cx_wsc_options opt = {.url = url, .timeout_ms = 3000};
    struct cli *k = connect_opt(w, &opt);
    WAIT(w, k->closes, WAIT_MS);
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->opens, 0);
    assert_int_equal(k->code, CX_WS_CLOSE_ABNORMAL);
    assert_null(strstr(k->reason, "timed out")); /* refused at once, not left hanging */
    /* A plain HTTP request gets nothing useful either, and the server survives both. */
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    struct raw *r = raw_send(w, cx_server_port(s), req, sizeof req - 1);
    WAIT(w, r->eof, WAIT_MS);
    assert_true(r->eof);
    assert_int_equal(w->https, 0);
    struct cli *good = tls_client(w, s, "localhost", ca_pem);
    expect_tls_round_trip(w, good, "still serving");
    assert_int_equal(cx_server_conn_count(s), 1);
}

/* ---- server limits ---- */

static void test_message_too_big(void **state)
{
    struct world *w = *state;
    cx_server_limits lim;
    cx_server_limits_default(&lim);
    lim.message_bytes = 4096;
    cx_server *s = start_server(w, &lim, NULL, NULL);
    struct cli *k = open_client(w, s);
    char buf[5000];
    fill_pattern(buf, sizeof buf, 1);
    assert_int_equal(cx_wsc_send_text(k->c, buf, 4096), CX_OK); /* at the cap: fine */
    WAIT(w, k->msgs == 1 || k->closes, WAIT_MS);
    assert_int_equal(k->msgs, 1);
    assert_int_equal(cx_wsc_send_text(k->c, buf, sizeof buf), CX_OK);
    WAIT(w, k->closes && w->closes, WAIT_MS);
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->code, CX_WS_CLOSE_TOO_BIG);
    assert_int_equal(w->msgs, 1);
    assert_int_equal(w->close_code, CX_WS_CLOSE_TOO_BIG);
}

static void test_auth_timeout(void **state)
{
    struct world *w = *state;
    cx_server_limits lim;
    cx_server_limits_default(&lim);
    lim.auth_ms = 200;
    lim.signin_ms = 600;
    w->auth = 0;
    cx_server *s = start_server(w, &lim, NULL, NULL);
    /* Silence: closed at the first-message deadline. */
    struct cli *k = open_client(w, s);
    uint64_t opened = uv_hrtime();
    WAIT(w, k->closes, WAIT_MS);
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->code, CX_WS_CLOSE_POLICY);
    assert_string_equal(k->reason, "auth timeout");
    uint64_t took = (k->closed_ns - opened) / 1000000u;
    assert_true(took >= 150);
    assert_true(took < 550);
    WAIT(w, w->closes, WAIT_MS);
    /* A message ends that deadline, but messages are not authentication: the sign-in
     * window closes the connection. */
    k = open_client(w, s);
    opened = uv_hrtime();
    assert_int_equal(cx_wsc_send_text(k->c, "let me in", 9), CX_OK);
    WAIT(w, k->closes, WAIT_MS);
    assert_int_equal(k->closes, 1);
    assert_int_equal(k->code, CX_WS_CLOSE_POLICY);
    assert_string_equal(k->reason, "auth timeout");
    took = (k->closed_ns - opened) / 1000000u;
    assert_true(took >= 550);
    assert_true(took < 3000);
    WAIT(w, w->closes, WAIT_MS);
    assert_int_equal(w->close_code, CX_WS_CLOSE_POLICY);
}

/* An authenticated session is not subject to the auth deadline. */
static void test_auth_in_time(void **state)
{
    struct world *w = *state;
    cx_server_limits lim;
    cx_server_limits_default(&lim);
    lim.auth_ms = 200;
    cx_server *s = start_server(w, &lim, NULL, NULL);
    struct cli *k = open_client(w, s);
    spin(w, 500);
    assert_int_equal(k->closes, 0);
    assert_int_equal(cx_wsc_send_text(k->c, "still", 5), CX_OK);
    WAIT(w, k->msgs == 1, WAIT_MS);
    assert_string_equal(k->msg, "re:still");
}

static void keepalive(struct world *w, uint32_t pong_ms, uint64_t stay_ms)
{
    cx_server_limits lim;
    cx_server_limits_default(&lim);
    lim.ping_ms = 100;
    lim.pong_ms = pong_ms;
    cx_server *s = start_server(w, &lim, NULL, NULL);
    char url[128];
    url_of(url, sizeof url, "ws", "127.0.0.1", s, "/");
    /* The client keeps its own watch too: it hears the server's pings. */
    cx_wsc_options opt = {.url = url, .ping_ms = 100, .pong_ms = 600};
    struct cli *k = connect_opt(w, &opt);
    WAIT(w, k->opens || k->closes, WAIT_MS);
    assert_int_equal(k->opens, 1);
    spin(w, stay_ms);
    if (k->closes)
        fail_msg("dropped despite answering pings: %u %s", k->code, k->reason);
    assert_int_equal(w->closes, 0);
    assert_int_equal(cx_wsc_send_text(k->c, "alive", 5), CX_OK);
    WAIT(w, k->msgs == 1, WAIT_MS);
    assert_string_equal(k->msg, "re:alive");
}

static void test_keepalive(void **state) { keepalive(*state, 10000, 500); }

/* A pong window far shorter than the wait: only answered pings keep the link. */
static void test_keepalive_tight(void **state) { keepalive(*state, 300, 1000); }

/* ---- shutdown ---- */

static void test_shutdown(void **state)
{
    struct world *w = *state;
    cx_server *s = start_server(w, NULL, NULL, NULL);
    struct cli *a = open_client(w, s);
    struct cli *b = open_client(w, s);
    WAIT(w, w->opens == 2, WAIT_MS);
    assert_int_equal(cx_server_conn_count(s), 2);
    /* A half-done HTTP request is dropped too. */
    struct raw *r = raw_send(w, cx_server_port(s), "GET / HT", 8);
    WAIT(w, r->connected && cx_server_conn_count(s) == 3, WAIT_MS);
    assert_int_equal(cx_server_conn_count(s), 3);
    uint64_t t0 = uv_hrtime();
    cx_server_shutdown(s, CX_WS_CLOSE_GOING_AWAY, "bye", on_srv_done);
    WAIT(w, w->srv_done[0] && !a->c && !b->c && r->eof, WAIT_MS);
    assert_int_equal(w->done_calls, 1);
    assert_true((uv_hrtime() - t0) / 1000000u < 2500); /* peers answered: no grace wait */
    assert_int_equal(a->closes, 1);
    assert_int_equal(a->code, CX_WS_CLOSE_GOING_AWAY);
    assert_string_equal(a->reason, "bye");
    assert_int_equal(b->closes, 1);
    assert_int_equal(b->code, CX_WS_CLOSE_GOING_AWAY);
    assert_string_equal(b->reason, "bye");
    assert_int_equal(w->closes, 2);
    assert_true(r->eof);
    assert_int_equal(cx_server_conn_count(s), 0);
    /* Free the server now and show the loop holds nothing of it or the clients. */
    cx_server_free(s);
    w->nsrvs = 0;
    raw_close(r);
    uv_close((uv_handle_t *)&w->pacer, NULL);
    assert_true(loop_dry(w));
    assert_int_equal(uv_loop_close(&w->loop), 0);
    /* Teardown expects a live loop. */
    assert_int_equal(uv_loop_init(&w->loop), 0);
    uv_timer_init(&w->loop, &w->pacer);
    w->nclis = 0;
    for (int i = 0; i < w->nraws; i++) {
        free(w->raws[i]->out);
        free(w->raws[i]);
    }
    w->nraws = 0;
    free(a->msg);
    free(b->msg);
    a->msg = b->msg = NULL;
}

/* A listen that fails must leave nothing behind in the loop. */
struct leak_scan {
    const void *owner;   /* handles whose data is this belong to the failed server */
    int n;
    int close;           /* close them as they are found */
};

static void scan_handle(uv_handle_t *h, void *arg)
{
    struct leak_scan *ls = arg;
    if (h->data != ls->owner || uv_is_closing(h))
        return;
    ls->n++;
    if (ls->close)
        uv_close(h, NULL);
}

static void test_listen_failure_leaks_nothing(void **state)
{
    struct world *w = *state;
    cx_server *busy = start_server(w, NULL, NULL, NULL);
    cx_server *s = NULL;
    assert_int_equal(cx_server_new(&w->loop, &srv_cb, w, NULL, &s), CX_OK);
    char *err = NULL;
    assert_int_not_equal(cx_server_listen(s, "127.0.0.1", cx_server_port(busy), &err), CX_OK);
    assert_non_null(err);
    free(err);
    /* Its handles carry the server as data; count them before freeing it. */
    struct leak_scan ls = {.owner = s};
    uv_walk(&w->loop, scan_handle, &ls);
    int leaked = ls.n;
    if (leaked) {
        /* Close them ourselves so freeing s is safe and the suite goes on. */
        ls.close = 1;
        uv_walk(&w->loop, scan_handle, &ls);
        spin(w, 20);
    }
    cx_server_shutdown(s, CX_WS_CLOSE_GOING_AWAY, "", NULL);
    cx_server_free(s);
    if (leaked)
        fail_msg("a failed cx_server_listen left %d libuv handle(s) of the freed server in the loop",
                 leaked);
}

int main(void)
{
    /* Peers hang up mid-write here on purpose; the daemons ignore SIGPIPE the same way. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_url_good),
        cmocka_unit_test(test_parse_url_bad),
        cmocka_unit_test(test_parse_url_small_buffers),
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_connect_bad_arguments),
        T(test_round_trip),
        T(test_big_messages),
        T(test_server_closes),
        T(test_server_closes_from_callback),
        T(test_server_close_waits_for_peer),
        T(test_ipv6_loopback),
        T(test_upgrade_refused),
        T(test_connection_refused),
        T(test_silent_server_times_out),
        T(test_close_before_open),
        T(test_http_get),
        T(test_http_head_too_big),
        T(test_tls_ok_ip),
        T(test_tls_ok_name),
        T(test_tls_untrusted_ca),
        T(test_tls_wrong_name),
        T(test_tls_key_mismatch),
        T(test_tls_plain_client),
        T(test_message_too_big),
        T(test_auth_timeout),
        T(test_auth_in_time),
        T(test_keepalive),
        T(test_keepalive_tight),
        T(test_shutdown),
        T(test_listen_failure_leaks_nothing),
#undef T
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
