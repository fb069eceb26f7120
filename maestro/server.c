/* Maestro's WebSocket service: who may connect (rate limits, trusted proxies, the
 * loopback exception when client auth is disabled), telling Cores from clients by their
 * first message, dispatch with the session re-checked on every request, and start/stop.
 * Sign-in and admin actions live in clients.c, Core links in cores.c, relaying in relay.c. */
#include "maestro.h"
#include "web.h"

#include "condrix/clock.h"
#include "condrix/db.h"
#include "condrix/dbwatch.h"
#include "condrix/error.h"
#include "condrix/limits.h"
#include "condrix/log.h"
#include "condrix/password.h"
#include "condrix/token.h"
#include "condrix/version.h"
#include "condrix/ws.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */


void mx_iso(int64_t ms, char out[32])
{
    char ts[25];
    cx_msg_timestamp(ms, ts);
    memcpy(out, ts, sizeof ts);
}

const char *mx_role_name(int role)
{
    return role == MX_ROLE_ADMIN ? "admin" : "user";
}


struct close_user_arg {
    const char *user_id;
    const char *session_id;
    const char *keep_session;
    cx_conn *except;
    uint16_t code;
    const char *reason;
};

static void close_user_conn(cx_conn *c, void *arg)
{
    struct close_user_arg *a = arg;
    mx_peer *p = cx_conn_data(c);
    if (c == a->except || !p || !p->client || strcmp(p->client->user_id, a->user_id) != 0)
        return;
    if (a->session_id && strcmp(p->client->session_id, a->session_id) != 0)
        return;
    if (a->keep_session && strcmp(p->client->session_id, a->keep_session) == 0)
        return;
    cx_conn_close(c, a->code, a->reason);
}

void mx_close_user_conns(mx_server *m, const char *user_id, const char *session_id,
                         const char *keep_session, cx_conn *except, uint16_t code,
                         const char *reason)
{
    struct close_user_arg a = {user_id, session_id, keep_session, except, code, reason};
    cx_server_foreach(m->srv, close_user_conn, &a);
}

bool mx_peer_may_see(mx_server *m, const mx_peer *p, const char *core_id)
{
    if (p->client)
        return p->client->role == MX_ROLE_ADMIN || mx_granted(m->store, p->client->user_id, core_id);
    return p->local;
}

/* ---- dispatch ---- */

static bool is_action(const cx_msg *req, const char *ns, const char *action)
{
    return strcmp(req->ns, ns) == 0 && strcmp(req->action, action) == 0;
}

static bool budget_ok(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_peer *p = cx_conn_data(c);
    if (cx_ratelimit_message(m->rl, &p->budget, cx_clock_now_ms()) == CX_OK)
        return true;
    cx_reply_limited(c, req, 1, NULL);
    return false;
}

static void auth_required(cx_conn *c, const cx_msg *req, const char *message)
{
    mx_peer *p = cx_conn_data(c);
    p->strikes++;
    cx_reply_err(c, req, "AUTH_REQUIRED", message);
    if (p->strikes >= CX_AUTH_REQUIRED_STRIKES)
        cx_conn_close(c, CX_WS_CLOSE_POLICY, "authentication required");
}

static void unknown_action(cx_conn *c, const cx_msg *req)
{
    char msg[320];
    if (strcmp(req->ns, "maestro") != 0)
        snprintf(msg, sizeof msg,
                 "unknown action %.128s/%.128s (set targetCoreId to reach a Core)", req->ns,
                 req->action);
    else
        snprintf(msg, sizeof msg, "unknown action %.128s/%.128s", req->ns, req->action);
    cx_reply_err(c, req, "UNKNOWN_ACTION", msg);
}

static void dispatch(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_peer *p = cx_conn_data(c);
    bool maestro = strcmp(req->ns, "maestro") == 0;
    bool signin = maestro && (strcmp(req->action, "login") == 0 || strcmp(req->action, "auth") == 0);
    if (p->kind == MX_PEER_NEW) {
        if (is_action(req, "core", "auth") && json_is_string(json_object_get(req->payload, "coreId"))) {
            mx_core_auth(m, c, req);
            return;
        }
        if (signin) {
            mx_client_request(m, c, req);
            return;
        }
        if (p->local && maestro && strcmp(req->action, "cores.list") == 0) {
            if (budget_ok(m, c, req))
                mx_act_cores_list(m, c, req);
            return;
        }
        if (p->local && !maestro && req->target_core_id) {
            if (budget_ok(m, c, req))
                mx_relay_request(m, c, req, true);
            return;
        }
        auth_required(c, req, is_action(req, "core", "auth")
                                  ? "Cores send coreId with core/auth; clients sign in with "
                                    "maestro/login"
                                  : "sign in first with maestro/login or maestro/auth");
        return;
    }
    /* A signed-in client. */
    if (signin) {
        mx_client_request(m, c, req);
        return;
    }
    if (!mx_client_session_ok(m, c, req))
        return;
    if (!budget_ok(m, c, req))
        return;
    if (maestro) {
        mx_client_request(m, c, req);
        return;
    }
    if (req->target_core_id) {
        mx_relay_request(m, c, req, p->client->role == MX_ROLE_ADMIN);
        return;
    }
    unknown_action(c, req);
}

/* ---- connection callbacks ---- */

static int on_upgrade(cx_server *srv, cx_conn *c, const cx_http_req *req)
{
    mx_server *m = cx_server_data(srv);
    if (m->stopping)
        return 503;
    /* A page of another site must not drive a signed-in browser's WebSocket. Answered
     * here so the 403 carries the security headers; net.c then sends nothing more. */
    if (!mx_web_origin_allowed(req, getenv("CONDRIX_MAESTRO_ALLOWED_ORIGINS"),
                               cx_server_is_tls(srv))) {
        static const char msg[] = "403 Forbidden: this Origin may not connect "
                                  "(see CONDRIX_MAESTRO_ALLOWED_ORIGINS)\n";
        cx_log_info("WebSocket from %s refused: Origin %.100s not allowed", cx_conn_peer(c),
                    cx_http_req_header(req, "Origin"));
        cx_conn_http_reply(c, 403, "text/plain; charset=utf-8", mx_web_security_headers(), msg,
                           sizeof msg - 1);
        return 403;
    }
    mx_peer *p = calloc(1, sizeof *p);
    if (!p)
        return 503;
    p->ip = cx_conn_client_addr(c);
    const char *ua = cx_http_req_header(req, "User-Agent");
    if (ua && *ua)
        p->user_agent = strndup(ua, MX_UA_MAX_CHARS); /* NULL on ENOMEM: simply unknown */
    if (!m->client_auth && cx_addr_is_loopback(cx_conn_peer(c)) && !cx_http_req_forwarded(req))
        p->local = 1;
    cx_conn_set_data(c, p);
    return 0;
}

/* ---- messages, in order ---- */

/* A client's message that arrived while a password check or a delayed sign-in answer
 * was pending on its connection: handled after that answer, so answers keep the order
 * of the requests (a login pipelined with cores.list gets both, the list signed in). */
struct mx_held {
    struct mx_held *next;
    size_t len;
    char text[];
};

static void handle_text(mx_server *m, cx_conn *c, mx_peer *p, const char *text, size_t len)
{
    cx_msg msg;
    cx_msg_error err;
    if (cx_msg_decode(text, len, &msg, &err) != CX_OK) {
        cx_reply_invalid(c, "maestro", &err, &p->invalid);
        return;
    }
    p->invalid = 0;
    if (p->kind == MX_PEER_CORE)
        mx_core_message(m, c, &msg);
    else if (msg.type == CX_MSG_REQUEST)
        dispatch(m, c, &msg);
    /* Responses and events from clients need no answer: Maestro asks clients nothing. */
    cx_msg_free(&msg);
}

static void held_free(mx_peer *p)
{
    while (p->held) {
        struct mx_held *h = p->held;
        p->held = h->next;
        sodium_memzero(h->text, h->len); /* logins carry passwords */
        free(h);
    }
    p->held_tail = NULL;
    p->nheld = 0;
    p->held_bytes = 0;
}

static void hold(cx_conn *c, mx_peer *p, const char *text, size_t len)
{
    struct mx_held *h = NULL;
    if (p->nheld < MX_HELD_MAX && len <= MX_HELD_BYTES - p->held_bytes)
        h = malloc(sizeof *h + len);
    if (!h) {
        cx_log_info("connection from %s: too many requests while a password check runs",
                    p->ip);
        cx_conn_close(c, CX_WS_CLOSE_POLICY, "too many requests in flight");
        return;
    }
    h->next = NULL;
    h->len = len;
    memcpy(h->text, text, len);
    if (p->held_tail)
        p->held_tail->next = h;
    else
        p->held = h;
    p->held_tail = h;
    p->nheld++;
    p->held_bytes += (uint32_t)len;
}

void mx_peer_resume(mx_server *m, cx_conn *c)
{
    mx_peer *p = cx_conn_data(c);
    if (!p || p->draining)
        return;
    p->draining = 1;
    while (p->held && !p->job && !p->failing && !cx_conn_closing(c)) {
        struct mx_held *h = p->held;
        p->held = h->next;
        if (!p->held)
            p->held_tail = NULL;
        p->nheld--;
        p->held_bytes -= (uint32_t)h->len;
        handle_text(m, c, p, h->text, h->len);
        sodium_memzero(h->text, h->len);
        free(h);
        if (!(p = cx_conn_data(c))) /* closed meanwhile: on_close freed the peer */
            return;
    }
    p->draining = 0;
}

static void on_message(cx_server *srv, cx_conn *c, const char *text, size_t len)
{
    mx_server *m = cx_server_data(srv);
    mx_peer *p = cx_conn_data(c);
    if (!p)
        return;
    if (p->kind != MX_PEER_CORE && (p->job || p->failing || p->held)) {
        hold(c, p, text, len);
        return;
    }
    handle_text(m, c, p, text, len);
}

static void on_close(cx_server *srv, cx_conn *c, uint16_t code)
{
    mx_server *m = cx_server_data(srv);
    mx_peer *p = cx_conn_data(c);
    if (!p)
        return;
    mx_jobs_detach(m, p);
    held_free(p);
    if (p->link)
        mx_core_closed(m, c, p);
    if (p->nrelay)
        mx_relay_client_gone(m, c);
    if (p->client) {
        mx_push_client_gone(m, c);
        cx_log_debug("client %s (%s) closed (%u)", p->client->username, p->ip, code);
        sodium_memzero(p->client, sizeof *p->client);
        free(p->client);
    }
    free(p->user_agent);
    free(p);
    cx_conn_set_data(c, NULL);
}

static void on_http(cx_server *srv, cx_conn *c, const cx_http_req *req)
{
    mx_server *m = cx_server_data(srv);
    const char *path = cx_http_req_path(req);
    const char *method = cx_http_req_method(req);
    char extra[1024];
    if (strcmp(path, "/healthz") == 0 || strncmp(path, "/healthz?", 9) == 0) {
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
            snprintf(extra, sizeof extra, "Allow: GET, HEAD\r\n%s", mx_web_security_headers());
            cx_conn_http_reply(c, 405, "text/plain; charset=utf-8", extra,
                               "method not allowed\n", 19);
            return;
        }
        snprintf(extra, sizeof extra, "Cache-Control: no-store\r\n%s",
                 mx_web_security_headers());
        cx_conn_http_reply(c, 200, "text/plain; charset=utf-8", extra, "ok", 2);
        return;
    }
    if (mx_web_serve(c, req, m->web_dir))
        return;
    static const char msg[] = "not found: this is a Condrix Maestro; open / in a browser or "
                              "connect with a WebSocket\n";
    cx_conn_http_reply(c, 404, "text/plain; charset=utf-8", mx_web_security_headers(), msg,
                       sizeof msg - 1);
}

static const cx_server_callbacks callbacks = {
    .on_http = on_http,
    .on_upgrade = on_upgrade,
    .on_message = on_message,
    .on_close = on_close,
};

static void on_db_changed(void *ud)
{
    mx_cores_recheck(ud);
}

static void on_tick(uv_timer_t *t)
{
    mx_server *m = t->data;
    uint64_t now = uv_now(m->loop);
    cx_db_watch_poll(m->dbwatch); /* in case the directory watch is not available */
    mx_relay_sweep(m, now);
    mx_push_sweep(m, now);
    if (++m->ticks % 60 == 0) {
        int64_t wall = cx_clock_now_ms();
        cx_ratelimit_sweep(m->rl, wall);
        cx_ratelimit_sweep(m->rl_user, wall);
        (void)mx_session_sweep(m->store, wall, NULL);
        (void)mx_pairing_sweep(m->store, wall);
    }
}

/* ---- start and stop ---- */

/* First start: the user default-admin with a generated password, shown once. */
static int first_start_admin(mx_server *m)
{
    if (mx_user_count(m->store) != 0)
        return CX_OK;
    char password[MX_PASSWORD_GEN_CHARS + 1];
    char hash[CX_PASSWORD_HASH_MAX];
    cx_password_generate(password, MX_PASSWORD_GEN_CHARS);
    int rc = cx_password_hash(password, hash);
    if (rc != CX_OK) {
        sodium_memzero(password, sizeof password);
        return rc;
    }
    int64_t now = cx_clock_now_ms();
    mx_user u;
    rc = mx_user_create(m->store, "default-admin", hash, MX_ROLE_ADMIN, now, &u);
    sodium_memzero(hash, sizeof hash);
    if (rc == CX_OK) {
        printf("condrix-maestro: first start: created the user \"default-admin\" (role admin).\n"
               "condrix-maestro: its password is shown only this once; sign in and change it:\n"
               "%s\n",
               password);
        fflush(stdout);
        (void)mx_audit(m->store, now, NULL, "user.create", "default-admin", NULL, "first start");
        cx_log_info("first start: made user default-admin (password printed on stdout)");
    }
    sodium_memzero(password, sizeof password);
    return rc == CX_E_EXISTS ? CX_OK : rc;
}

static int load_core_secret(mx_server *m)
{
    const char *v = getenv("CONDRIX_MAESTRO_CORE_SECRET");
    if (!v || !*v)
        return CX_OK;
    crypto_hash_sha256(m->secret_hash, (const unsigned char *)v, strlen(v));
    m->have_secret = true;
    /* The value must not linger in the environment of children or /proc. */
    sodium_memzero((char *)v, strlen(v));
    unsetenv("CONDRIX_MAESTRO_CORE_SECRET");
    cx_log_info("CONDRIX_MAESTRO_CORE_SECRET is set: Cores may also connect with the shared "
                "secret (legacy; prefer pairing codes)");
    return CX_OK;
}

static int load_client_auth(mx_server *m)
{
    const char *v = cx_env_str("CONDRIX_MAESTRO_CLIENT_AUTH", "enabled");
    bool on;
    if (strcasecmp(v, "disabled") == 0) {
        on = false;
    } else if (strcasecmp(v, "enabled") == 0 || strcasecmp(v, "required") == 0) {
        on = true;
    } else if (cx_parse_bool(v, &on) != CX_OK) {
        cx_log_error("CONDRIX_MAESTRO_CLIENT_AUTH must be \"enabled\" or \"disabled\"");
        return CX_E_INVAL;
    }
    m->client_auth = on;
    if (!on)
        cx_log_warn("CONDRIX_MAESTRO_CLIENT_AUTH=disabled: local clients (loopback, no "
                    "forwarding header) may list Cores and relay to them WITHOUT signing in");
    return CX_OK;
}

int mx_server_start(mx_server *m, uv_loop_t *loop, const mx_options *opt)
{
    int rc;
    char *err = NULL;
    memset(m, 0, sizeof *m);
    m->loop = loop;
    m->web_dir = opt->web_dir;
    if (sodium_init() < 0)
        return CX_E_CRYPTO;
    if (cx_mkdir_private(opt->home) != CX_OK) {
        cx_log_error("cannot create the data directory %s: check its parent's permissions",
                     opt->home);
        return CX_E_IO;
    }
    if ((rc = mx_store_open(opt->home, &m->store, &err)) != CX_OK) {
        cx_log_error("cannot open %s/maestro.db: %s", opt->home, err ? err : cx_strerror(rc));
        free(err);
        return rc;
    }
    snprintf(m->maestro_id, sizeof m->maestro_id, "%s", mx_store_maestro_id(m->store));
    if ((rc = load_client_auth(m)) != CX_OK || (rc = load_core_secret(m)) != CX_OK)
        return rc;
    cx_ratelimit_config rcfg;
    if ((rc = cx_server_from_env(loop, &callbacks, m, opt->tls_cert, opt->tls_key,
                                 "CONDRIX_MAESTRO", &rcfg, &m->srv)) != CX_OK)
        return rc;
    cx_server_set_error_headers(m->srv, mx_web_security_headers()); /* a static string */
    m->rl = cx_server_ratelimit(m->srv);
    /* Failed sign-ins are also counted per username, with the same settings. */
    if (!(m->rl_user = cx_ratelimit_new(&rcfg)))
        return CX_E_NOMEM;
    /* Only once the configuration is known to be good: the password is shown once. */
    if ((rc = first_start_admin(m)) != CX_OK) {
        cx_log_error("cannot create the first-start user: %s", cx_strerror(rc));
        return rc;
    }
    /* Unknown users are verified against this, so they cost the same time. */
    char dummy[MX_PASSWORD_GEN_CHARS + 1];
    cx_password_generate(dummy, MX_PASSWORD_GEN_CHARS);
    rc = cx_password_hash(dummy, m->dummy_hash);
    sodium_memzero(dummy, sizeof dummy);
    if (rc != CX_OK) {
        cx_log_error("cannot hash a password: %s", cx_strerror(rc));
        return rc;
    }

    if ((rc = cx_server_listen(m->srv, opt->host, opt->port, &err)) != CX_OK) {
        cx_log_error("cannot listen on %s:%d: %s", opt->host, opt->port,
                     err ? err : cx_strerror(rc));
        free(err);
        return rc;
    }
    uv_timer_init(loop, &m->tick);
    m->tick.data = m;
    m->tick_started = true;
    /* Admin verbs in another process change maestro.db: notice it at once. */
    if ((rc = cx_db_watch_start(loop, opt->home, "maestro.db", mx_store_db(m->store),
                                on_db_changed, m, &m->dbwatch)) != CX_OK)
        return rc;
    m->run_tag = randombytes_random();
    uv_timer_start(&m->tick, on_tick, MX_TICK_MS, MX_TICK_MS);
    cx_log_info("Maestro %s listening on %s://%s:%d", m->maestro_id,
                cx_server_is_tls(m->srv) ? "wss" : "ws", opt->host, cx_server_port(m->srv));
    return CX_OK;
}

static void on_server_down(cx_server *srv)
{
    mx_server *m = cx_server_data(srv);
    if (m->tick_started) {
        uv_timer_stop(&m->tick);
        uv_close((uv_handle_t *)&m->tick, NULL);
        m->tick_started = false;
    }
    cx_db_watch_stop(m->dbwatch);
    m->dbwatch = NULL;
    mx_store_close(m->store);
    m->store = NULL;
    cx_log_info("all connections closed; database checkpointed");
}

void mx_server_stop(mx_server *m)
{
    if (m->stopping)
        return;
    m->stopping = true;
    cx_log_info("shutting down: closing %zu connection(s)", cx_server_conn_count(m->srv));
    cx_server_shutdown(m->srv, CX_WS_CLOSE_GOING_AWAY, "server shutting down", on_server_down);
}

void mx_server_free(mx_server *m)
{
    cx_server_free(m->srv);
    if (m->store)
        mx_store_close(m->store);
    cx_ratelimit_free(m->rl_user);
    sodium_memzero(m->secret_hash, sizeof m->secret_hash);
}
