/* A synchronous face on the asynchronous WebSocket client: the CLI asks one question at
 * a time, so each call runs a private libuv loop until the answer with the matching
 * correlationId arrives, the link ends, or a timer fires. Events and stray messages are
 * dropped; the caller only ever sees the response it waits for. */
#include "cli.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "condrix/error.h"
#include "condrix/wsclient.h"

struct cli_conn {
    uv_loop_t loop;         /* private to this connection */
    uv_timer_t timer;       /* the deadline of the current wait */
    cx_wsc *ws;             /* NULL once on_close ran (the client frees itself) */
    uint32_t timeout_ms;    /* per wait */
    bool opened;            /* on_open ran */
    bool closed;            /* on_close ran */
    bool timed_out;         /* the timer fired during the current wait */
    uint16_t close_code;    /* from on_close */
    char close_reason[400]; /* from on_close */
    char want_id[37];       /* the request id awaited, "" when none */
    bool have_resp;         /* resp holds the answer */
    cx_msg resp;            /* the answer, owned until handed to the caller */
};

static void on_open(cx_wsc *ws, void *ud)
{
    (void)ws;
    cli_conn *c = ud;
    c->opened = true;
}

static void on_message(cx_wsc *ws, void *ud, const char *msg, size_t len)
{
    (void)ws;
    cli_conn *c = ud;
    cx_msg m;
    cx_msg_error err;
    if (c->have_resp || !c->want_id[0] || cx_msg_decode(msg, len, &m, &err) != CX_OK)
        return;
    if (m.type == CX_MSG_RESPONSE && m.correlation_id &&
        strcmp(m.correlation_id, c->want_id) == 0) {
        c->resp = m;
        c->have_resp = true;
        return;
    }
    cx_msg_free(&m);
}

static void on_close(cx_wsc *ws, void *ud, uint16_t code, const char *reason)
{
    (void)ws;
    cli_conn *c = ud;
    c->closed = true;
    c->ws = NULL;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason ? reason : "");
}

static void on_timer(uv_timer_t *t)
{
    cli_conn *c = t->data;
    c->timed_out = true;
}

/* Run the loop until done(c) holds, the link ends or timeout_ms passes. */
static void run_until(cli_conn *c, bool (*done)(const cli_conn *))
{
    c->timed_out = false;
    uv_update_time(&c->loop);
    uv_timer_start(&c->timer, on_timer, c->timeout_ms, 0);
    while (!done(c) && !c->closed && !c->timed_out)
        uv_run(&c->loop, UV_RUN_ONCE);
    uv_timer_stop(&c->timer);
}

static bool is_open(const cli_conn *c)
{
    return c->opened;
}

static bool has_resp(const cli_conn *c)
{
    return c->have_resp;
}

/* Which CLI code a failed connection attempt gets, from the client's reason text. */
static const char *net_code(const char *reason)
{
    if (strncmp(reason, "TLS", 3) == 0)
        return "TLS_ERROR";
    if (strstr(reason, "timed out"))
        return "TIMEOUT";
    return "CONNECT_FAILED";
}

/* The link ended before the answer came: say why in the user's terms. A server that
 * refuses a connection for its rate limit closes 1008 "rate limited; retry in N s". */
static void closed_error(const cli_conn *c, cli_err *e)
{
    const char *r = c->close_reason;
    const char *retry = strstr(r, "retry in ");
    if (c->close_code == 1008 && strstr(r, "rate limit")) {
        long n = retry ? strtol(retry + 9, NULL, 10) : 0;
        /* This is the new-connection limit (10 a minute by default), not failed sign-ins:
         * every command is one connection, so a busy script can meet it. */
        if (n > 0)
            cli_err_set(e, CLI_EXIT_REFUSED, "RATE_LIMITED",
                        "too many new connections from this address: try again in %ld s "
                        "(the server's CONDRIX_RATE_CONN_MAX)", n);
        else
            cli_err_set(e, CLI_EXIT_REFUSED, "RATE_LIMITED",
                        "too many new connections from this address: wait a while and try "
                        "again (the server's CONDRIX_RATE_CONN_MAX)");
    } else if (c->close_code == 4001 || c->close_code == 4002) {
        cli_err_set(e, CLI_EXIT_SESSION, "SESSION_EXPIRED", "the server ended the session (%u %s)",
                    c->close_code, r);
    } else {
        cli_err_set(e, CLI_EXIT_NET, "CONNECTION_CLOSED",
                    "the server closed the connection before answering (%u%s%s)", c->close_code,
                    r[0] ? " " : "", r);
    }
}

static void free_conn(cli_conn *c)
{
    /* Every handle must be closed before the loop can be. */
    if (c->ws)
        cx_wsc_close(c->ws, 1000, "bye");
    uv_update_time(&c->loop);
    while (!c->closed)
        uv_run(&c->loop, UV_RUN_ONCE);
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, NULL);
    while (uv_run(&c->loop, UV_RUN_DEFAULT) != 0)
        ;
    (void)uv_loop_close(&c->loop);
    if (c->have_resp)
        cx_msg_free(&c->resp);
    free(c);
}

int cli_conn_open(const char *url, const char *ca_file, uint32_t timeout_ms, cli_conn **out,
                  cli_err *e)
{
    *out = NULL;
    cli_conn *c = calloc(1, sizeof *c);
    if (!c) {
        cli_err_set(e, CLI_EXIT_NET, "INTERNAL", "out of memory");
        return CX_E_NOMEM;
    }
    if (uv_loop_init(&c->loop) != 0) {
        free(c);
        cli_err_set(e, CLI_EXIT_NET, "INTERNAL", "cannot start the event loop");
        return CX_E_IO;
    }
    uv_timer_init(&c->loop, &c->timer);
    c->timer.data = c;
    c->timeout_ms = timeout_ms ? timeout_ms : CLI_DEFAULT_TIMEOUT_MS;

    cx_wsc_options opt = {
        .url = url,
        .ca_file = ca_file,
        .extra_headers = "User-Agent: condrix-cli\r\n",
        .timeout_ms = c->timeout_ms,
    };
    cx_wsc_callbacks cb = {.on_open = on_open, .on_message = on_message, .on_close = on_close};
    char *why = NULL;
    int rc = cx_wsc_connect(&c->loop, &opt, &cb, c, &c->ws, &why);
    if (rc != CX_OK) {
        c->ws = NULL;
        c->closed = true;
        if (rc == CX_E_INVAL)
            cli_err_set(e, CLI_EXIT_USAGE, "USAGE", "%s: %s", url,
                        why ? why : "not a ws:// or wss:// URL");
        else
            cli_err_set(e, CLI_EXIT_NET, rc == CX_E_TLS ? "TLS_ERROR" : "CONNECT_FAILED", "%s: %s",
                        url, why ? why : cx_strerror(rc));
        free(why);
        free_conn(c);
        return rc;
    }
    /* The client has its own deadline for the attempt; ours is a second guard. */
    c->timeout_ms += 1000;
    run_until(c, is_open);
    c->timeout_ms -= 1000;
    if (!c->opened) {
        if (c->closed && strncmp(c->close_reason, "cannot ", 7) == 0)
            cli_err_set(e, CLI_EXIT_NET, net_code(c->close_reason), "%s", c->close_reason);
        else if (c->closed)
            cli_err_set(e, CLI_EXIT_NET, net_code(c->close_reason), "cannot connect to %s: %s", url,
                        c->close_reason[0] ? c->close_reason : "connection failed");
        else
            cli_err_set(e, CLI_EXIT_NET, "TIMEOUT", "cannot connect to %s: timed out", url);
        free_conn(c);
        return CX_E_IO;
    }
    *out = c;
    return CX_OK;
}

int cli_conn_request(cli_conn *c, const char *ns, const char *action, json_t *payload, cx_msg *resp,
                     cli_err *e)
{
    if (c->closed || !c->ws) {
        if (payload)
            json_decref(payload);
        closed_error(c, e);
        return CX_E_CLOSED;
    }
    json_t *req = cx_msg_make(CX_MSG_REQUEST, ns, action, payload);
    if (!req) {
        cli_err_set(e, CLI_EXIT_NET, "INTERNAL", "out of memory");
        return CX_E_NOMEM;
    }
    snprintf(c->want_id, sizeof c->want_id, "%s", json_string_value(json_object_get(req, "id")));
    size_t len = 0;
    char *text = cx_msg_encode(req, &len);
    json_decref(req);
    if (!text) {
        cli_err_set(e, CLI_EXIT_NET, "INTERNAL", "out of memory");
        return CX_E_NOMEM;
    }
    int rc = cx_wsc_send_text(c->ws, text, len);
    sodium_memzero(text, len);
    free(text);
    if (rc != CX_OK) {
        c->want_id[0] = '\0';
        cli_err_set(e, CLI_EXIT_NET, "CONNECTION_CLOSED", "cannot send the request: %s",
                    cx_strerror(rc));
        return rc;
    }
    run_until(c, has_resp);
    c->want_id[0] = '\0';
    if (c->have_resp) {
        *resp = c->resp;
        c->have_resp = false;
        return CX_OK;
    }
    if (c->timed_out) {
        cli_err_set(e, CLI_EXIT_NET, "TIMEOUT", "no answer to %s/%s within %u s", ns, action,
                    (unsigned)((c->timeout_ms + 999) / 1000));
        return CX_E_IO;
    }
    closed_error(c, e);
    return CX_E_CLOSED;
}

bool cli_conn_is_open(const cli_conn *c)
{
    return c && !c->closed && c->ws && cx_wsc_is_open(c->ws);
}

void cli_conn_close(cli_conn *c)
{
    if (c)
        free_conn(c);
}
