/* The Core's WebSocket service: who may connect (rate limits, trusted proxies, dev mode),
 * the core/auth handshake with tokens and TOTP, and every core action of PROTOCOL.md
 * section 4 with its scope checks. Storage is the token store; this file owns sessions. */
#include "core.h"

#include "condrix/clock.h"
#include "condrix/db.h"
#include "condrix/dbwatch.h"
#include "condrix/error.h"
#include "condrix/limits.h"
#include "condrix/log.h"
#include "condrix/msg.h"
#include "condrix/reply.h"
#include "condrix/token.h"
#include "condrix/totp.h"
#include "condrix/version.h"
#include "condrix/ws.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SUBSCRIPTIONS 32
#define MAX_PATTERN_CHARS 128

static const char *const client_types[] = {NULL, "desktop", "web", "mobile", "cli"};

/* One WebSocket connection's state. Kept small: thousands of these sit idle. */
typedef struct session {
    const char *ip;           /* client address for limits, logs and listings */
    char id[37];              /* sessionId */
    char prefix[9];           /* display prefix of the token in use */
    char *token_name;         /* malloc'd once authenticated by a token; NULL otherwise */
    char **subs;              /* subscription patterns, malloc'd on first subscribe */
    int64_t connected_at;     /* Unix ms */
    cx_msg_budget budget;     /* per-connection message rate */
    unsigned scopes;          /* granted scopes once authenticated */
    uint8_t nsubs;            /* entries in subs */
    uint8_t strikes;          /* requests before auth */
    uint8_t invalid;          /* invalid messages in a row */
    uint8_t client_type;      /* index into client_types */
    uint8_t authed : 1;       /* may use actions */
    uint8_t dev : 1;          /* authenticated by dev mode */
    uint8_t totp_asked : 1;   /* TOTP_REQUIRED was answered once */
    uint8_t failing : 1;      /* a failed auth is waiting for its delayed answer */
    uint8_t blocked : 1;      /* address blocked at connect: every request is refused */
} session;

/* ---- sending ---- */

/* Where a request came from: a direct connection, or Maestro relaying for a user. */
typedef struct caller {
    session *s;        /* who asks: scopes, token, address */
    cx_conn *conn;     /* the direct connection, NULL when relayed */
    cx_core *core;
} caller;

static void send_json(caller *k, json_t *m)
{
    if (k->conn)
        cx_reply_json(k->conn, m);
    else
        cx_core_link_send(k->core, m);
}

/* Direct replies are written as text in one step; relayed ones go to the link as trees. */
static void reply_ok(caller *k, const cx_msg *req, json_t *payload)
{
    if (k->conn)
        cx_reply_ok(k->conn, req, payload);
    else
        send_json(k, cx_msg_ok(req->ns, req->action, req->id, payload));
}

static void reply_err(caller *k, const cx_msg *req, const char *code, const char *message)
{
    if (k->conn)
        cx_reply_err(k->conn, req, code, message);
    else
        send_json(k, cx_msg_fail(req->ns, req->action, req->id, code, message, NULL, NULL));
}

static json_t *auth_failed_payload(void)
{
    return json_pack("{s:b, s:[]}", "authenticated", 0, "scopes");
}

/* ---- helpers ---- */


/* Token name from `tokenName` (the original client's spelling) or `name`. */
static const char *payload_token_name(const cx_msg *m)
{
    const char *n = cx_msg_payload_str(m, "tokenName");
    return n ? n : cx_msg_payload_str(m, "name");
}


static void iso(int64_t ms, char out[32])
{
    cx_tokens_iso8601(ms, out);
}

/* ---- touches: last-used times are written in batches, not per auth ---- */

static void flush_touches(cx_core *core)
{
    if (core->ntouches == 0)
        return;
    sqlite3 *db = cx_tokens_db(core->tokens);
    bool tx = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    for (int i = 0; i < core->ntouches; i++)
        (void)cx_tokens_touch(core->tokens, core->touches[i].name, core->touches[i].at);
    if (tx && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    core->ntouches = 0;
}

static void note_touch(cx_core *core, const char *name, int64_t now)
{
    for (int i = 0; i < core->ntouches; i++) {
        if (strcmp(core->touches[i].name, name) == 0) {
            core->touches[i].at = now;
            return;
        }
    }
    if (core->ntouches == CX_CORE_TOUCH_BATCH)
        flush_touches(core);
    snprintf(core->touches[core->ntouches].name, sizeof core->touches[0].name, "%s", name);
    core->touches[core->ntouches].at = now;
    core->ntouches++;
}

/* A token revoked or rotated by another process (`condrix-core auth revoke|rotate`)
 * ends the connections that used it, as the same change over the wire does. */
static void recheck_session(cx_conn *c, void *arg)
{
    cx_core *core = arg;
    session *s = cx_conn_data(c);
    if (!s || !s->authed || !s->token_name || cx_conn_closing(c))
        return;
    cx_token_info info;
    int rc = cx_tokens_get(core->tokens, s->token_name, &info);
    if (rc == CX_E_NOTFOUND) {
        cx_log_info("session %s: token %s was revoked elsewhere; closing", s->id, s->token_name);
        cx_conn_close(c, CX_WS_CLOSE_ROTATED, "token revoked");
    } else if (rc == CX_OK && strcmp(info.prefix, s->prefix) != 0) {
        cx_log_info("session %s: token %s was rotated elsewhere; closing", s->id, s->token_name);
        cx_conn_close(c, CX_WS_CLOSE_ROTATED, "token rotated");
    }
}

static void on_db_changed(void *ud)
{
    cx_core *core = ud;
    cx_server_foreach(core->srv, recheck_session, core);
}

static void on_housekeeping(uv_timer_t *t)
{
    cx_core *core = t->data;
    cx_db_watch_poll(core->dbwatch); /* in case the directory watch is not available */
    if (++core->ticks % (CX_CORE_TOUCH_FLUSH_MS / CX_CORE_HOUSEKEEPING_MS) == 0) {
        flush_touches(core);
        cx_ratelimit_sweep(core->rl, cx_clock_now_ms());
    }
}

/* ---- closing other connections of a token ---- */

struct close_token_arg {
    const char *name;
    cx_conn *except;
    const char *reason;
};

static void close_token_conn(cx_conn *c, void *arg)
{
    struct close_token_arg *a = arg;
    session *s = cx_conn_data(c);
    if (c == a->except || !s || !s->token_name || strcmp(s->token_name, a->name) != 0)
        return;
    cx_conn_close(c, CX_WS_CLOSE_ROTATED, a->reason);
}

static void close_token_conns(cx_core *core, const char *name, cx_conn *except, const char *reason)
{
    struct close_token_arg a = {name, except, reason};
    cx_server_foreach(core->srv, close_token_conn, &a);
}

/* ---- authentication ---- */

struct delayed_fail {
    json_t *resp;       /* the answer, sent after the delay */
    char reason[48];    /* close reason */
};

static void send_delayed_fail(cx_conn *c, void *arg)
{
    struct delayed_fail *d = arg;
    if (c) {
        session *s = cx_conn_data(c);
        if (s)
            s->failing = 0;
        caller k = {s, c, cx_server_data(cx_conn_server(c))};
        send_json(&k, d->resp);
        cx_conn_close(c, CX_WS_CLOSE_POLICY, d->reason);
    } else {
        json_decref(d->resp);
    }
    free(d);
}

/* Answer an auth failure and close 1008. Counted failures are answered after the
 * growing delay the rate limiter chooses. */
static void auth_fail(cx_core *core, caller *k, const cx_msg *req, const char *code,
                      const char *message, bool count)
{
    session *s = k->s;
    int delay = 0;
    if (count) {
        bool blocked = false;
        delay = cx_ratelimit_auth_failed(core->rl, s->ip, cx_clock_now_ms(), &blocked);
        cx_log_info("auth failed from %s: %s%s", s->ip, code,
                    blocked ? " (address now blocked)" : "");
        (void)cx_tokens_audit(core->tokens, cx_clock_now_ms(), "auth.fail", NULL, s->ip, code);
    }
    json_t *resp = cx_msg_fail(req->ns, req->action, req->id, code, message, NULL,
                               auth_failed_payload());
    if (delay > 0) {
        struct delayed_fail *d = malloc(sizeof *d);
        if (d) {
            d->resp = resp;
            snprintf(d->reason, sizeof d->reason, "authentication failed");
            s->failing = 1;
            if (cx_conn_defer(k->conn, (uint32_t)delay, send_delayed_fail, d) == CX_OK)
                return;
            s->failing = 0;
            free(d);
        }
    }
    send_json(k, resp);
    cx_conn_close(k->conn, CX_WS_CLOSE_POLICY, "authentication failed");
}

static void rate_limited(caller *k, const cx_msg *req, int retry_after, bool close)
{
    json_t *details = json_pack("{s:i}", "retryAfter", retry_after);
    char msg[96];
    snprintf(msg, sizeof msg, "too many attempts; try again in %d seconds", retry_after);
    send_json(k, cx_msg_fail(req->ns, req->action, req->id, "RATE_LIMITED", msg, details,
                             close ? auth_failed_payload() : NULL));
    if (close && k->conn)
        cx_conn_close(k->conn, CX_WS_CLOSE_POLICY, "rate limited");
}

static void auth_success(cx_core *core, caller *k, const cx_msg *req, const char *name)
{
    session *s = k->s;
    s->authed = 1;
    s->totp_asked = 0;
    if (k->conn)
        cx_conn_set_authenticated(k->conn);
    cx_ratelimit_auth_succeeded(core->rl, s->ip);
    json_t *p = json_pack("{s:b, s:o, s:s, s:s}", "authenticated", 1, "scopes",
                          cx_scopes_to_json(s->scopes), "sessionId", s->id, "tokenName", name);
    reply_ok(k, req, p);
}

static void handle_auth(cx_core *core, caller *k, const cx_msg *req)
{
    session *s = k->s;
    int64_t now = cx_clock_now_ms();
    if (s->dev) {
        auth_success(core, k, req, "dev");
        return;
    }
    int retry = 0;
    if (cx_ratelimit_auth_allowed(core->rl, s->ip, now, &retry) != CX_OK) {
        rate_limited(k, req, retry, true);
        return;
    }
    json_t *ct = json_object_get(req->payload, "clientType");
    if (json_is_string(ct)) {
        for (uint8_t i = 1; i < sizeof client_types / sizeof client_types[0]; i++)
            if (strcmp(json_string_value(ct), client_types[i]) == 0)
                s->client_type = i;
    }
    json_t *tv = json_is_object(req->payload) ? json_object_get(req->payload, "token") : NULL;
    if (!tv || json_is_null(tv) || (json_is_string(tv) && json_string_length(tv) == 0)) {
        auth_fail(core, k, req, "TOKEN_REQUIRED", "an access token is required", true);
        return;
    }
    /* Given, but not a usable string (a number, an array, a string with NUL): malformed. */
    const char *token = cx_msg_payload_str(req, "token");
    if (!token) {
        auth_fail(core, k, req, "INVALID_TOKEN", "invalid token", true);
        return;
    }
    cx_token_info info;
    int rc = cx_tokens_authenticate(core->tokens, token, now, &info);
    if (rc == CX_E_EXPIRED) {
        auth_fail(core, k, req, "TOKEN_EXPIRED", "this token has expired; ask for a new one", true);
        return;
    }
    if (rc != CX_OK) {
        if (rc == CX_E_DB)
            cx_log_error("token lookup failed: database error");
        auth_fail(core, k, req, "INVALID_TOKEN", "invalid token", true);
        return;
    }
    if (info.totp_enabled) {
        json_t *code = json_object_get(req->payload, "totpCode");
        if (code && !json_is_null(code) && !json_is_string(code)) {
            auth_fail(core, k, req, "INVALID_TOTP", "totpCode must be a string of 6 digits", true);
            return;
        }
        if (!json_is_string(code) || json_string_length(code) == 0) {
            if (s->totp_asked) {
                auth_fail(core, k, req, "TOTP_REQUIRED", "a TOTP code is required", false);
                return;
            }
            s->totp_asked = 1;
            json_t *p = json_pack("{s:b, s:[], s:b}", "authenticated", 0, "scopes",
                                  "totpRequired", 1);
            send_json(k, cx_msg_fail(req->ns, req->action, req->id, "TOTP_REQUIRED",
                                     "this token needs a TOTP code", NULL, p));
            return;
        }
        rc = cx_tokens_totp_check(core->tokens, info.name, json_string_value(code), now / 1000);
        if (rc != CX_OK) {
            auth_fail(core, k, req, "INVALID_TOTP",
                      rc == CX_E_REPLAY ? "this code was already used; wait for the next one"
                                        : "wrong TOTP code",
                      true);
            return;
        }
    }
    free(s->token_name);
    s->token_name = strdup(info.name);
    if (!s->token_name) {
        reply_err(k, req, "INTERNAL", "out of memory");
        return;
    }
    memcpy(s->prefix, info.prefix, sizeof s->prefix);
    s->scopes = info.scopes;
    note_touch(core, info.name, now);
    cx_log_info("session %s authenticated from %s with token %s (%s...)", s->id, s->ip,
                info.name, info.prefix);
    auth_success(core, k, req, info.name);
}

/* ---- actions ---- */

typedef void (*action_fn)(cx_core *core, caller *k, const cx_msg *req);

static void act_info(cx_core *core, caller *k, const cx_msg *req)
{
    char *mtoken = NULL;
    (void)cx_tokens_setting_get(core->tokens, "maestro.token", &mtoken);
    /* Paired: a stored token Maestro has not refused since it last accepted one. */
    bool paired = mtoken != NULL && !cx_core_link_token_refused(core);
    if (mtoken) {
        sodium_memzero(mtoken, strlen(mtoken));
        free(mtoken);
    }
    json_t *p = json_pack("{s:s, s:s, s:s, s:b, s:{s:o, s:b, s:b}}", "coreId", core->core_id,
                          "displayName", core->display_name, "version", CX_VERSION, "devMode",
                          core->dev, "maestro", "url",
                          core->maestro_url ? json_string(core->maestro_url) : json_null(),
                          "connected", cx_core_link_connected(core), "paired", paired);
    reply_ok(k, req, p);
}

static void act_health(cx_core *core, caller *k, const cx_msg *req)
{
    uint64_t up = (uv_now(core->loop) - core->started_ms) / 1000;
    json_t *p = json_pack("{s:s, s:I, s:I}", "status", "ok", "uptimeSeconds", (json_int_t)up,
                          "connections", (json_int_t)cx_server_conn_count(core->srv));
    reply_ok(k, req, p);
}

static void act_tokens(cx_core *core, caller *k, const cx_msg *req)
{
    cx_token_info *arr = NULL;
    size_t n = 0;
    flush_touches(core); /* lastUsedAt is exact here, whatever the batching */
    if (cx_tokens_list(core->tokens, &arr, &n) != CX_OK) {
        reply_err(k, req, "INTERNAL", "could not read the token store");
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++)
        json_array_append_new(list, cx_tokens_info_to_json(&arr[i]));
    free(arr);
    reply_ok(k, req, json_pack("{s:o}", "tokens", list));
}

/* expiresAt: an ISO 8601 string, Unix ms as a number (a fraction, as JavaScript's
 * Date.now() arithmetic or Python's time.time() * 1000 may give, is dropped), or
 * null/absent for never. */
static int parse_expiry(json_t *v, int64_t *out)
{
    *out = 0;
    if (!v || json_is_null(v))
        return CX_OK;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= 1.0 && d <= (double)CX_TIME_MAX_MS)) /* also refuses NaN */
            return CX_E_INVAL;
        *out = (int64_t)d;
    } else if (!json_is_string(v) ||
               cx_clock_parse_iso8601(json_string_value(v), out) != CX_OK) {
        return CX_E_INVAL;
    }
    return *out > 0 && *out <= CX_TIME_MAX_MS ? CX_OK : CX_E_INVAL;
}

static void act_generate(cx_core *core, caller *k, const cx_msg *req)
{
    session *s = k->s;
    const char *name = payload_token_name(req);
    if (!name || !cx_tokens_name_valid(name)) {
        reply_err(k, req, "INVALID_ARGUMENT",
                  "name must be 1-64 characters of letters, digits, '.', '_' or '-'");
        return;
    }
    unsigned scopes = CX_SCOPE_ALL;
    json_t *sv = json_object_get(req->payload, "scopes");
    if (sv && !json_is_null(sv) && cx_scopes_from_json(sv, &scopes) != CX_OK) {
        reply_err(k, req, "INVALID_ARGUMENT", "scopes must be an array of known scope names");
        return;
    }
    int64_t now = cx_clock_now_ms(), expires;
    if (parse_expiry(json_object_get(req->payload, "expiresAt"), &expires) != CX_OK) {
        reply_err(k, req, "INVALID_ARGUMENT", "expiresAt must be an ISO 8601 time or null");
        return;
    }
    if (expires && expires <= now) {
        reply_err(k, req, "INVALID_ARGUMENT", "expiresAt is in the past");
        return;
    }
    char token[65];
    int rc = cx_tokens_create(core->tokens, name, scopes, expires, now, token);
    if (rc == CX_E_EXISTS) {
        reply_err(k, req, "NAME_TAKEN", "a token with this name exists");
        return;
    }
    if (rc != CX_OK) {
        reply_err(k, req, "INTERNAL", "could not create the token");
        return;
    }
    (void)cx_tokens_audit(core->tokens, now, "token.create", name, s->ip, "ok");
    cx_log_info("token %s created by session %s", name, s->id);
    char exp[32];
    if (expires)
        iso(expires, exp);
    json_t *p = json_pack("{s:s, s:s, s:o, s:o}", "name", name, "token", token, "scopes",
                          cx_scopes_to_json(scopes), "expiresAt",
                          expires ? json_string(exp) : json_null());
    sodium_memzero(token, sizeof token);
    reply_ok(k, req, p);
}

static void act_rotate(cx_core *core, caller *k, const cx_msg *req)
{
    session *s = k->s;
    const char *name = payload_token_name(req);
    if (!name) {
        reply_err(k, req, "INVALID_ARGUMENT", "name is required");
        return;
    }
    bool own = s->token_name && strcmp(s->token_name, name) == 0;
    if (!own && !(s->scopes & CX_SCOPE_ADMIN_CORE)) {
        reply_err(k, req, "FORBIDDEN", "needs scope admin:core (or rotate your own token)");
        return;
    }
    char token[65];
    int64_t now = cx_clock_now_ms();
    int rc = cx_tokens_rotate(core->tokens, name, now, token);
    if (rc == CX_E_NOTFOUND) {
        reply_err(k, req, "NOT_FOUND", "no token with this name");
        return;
    }
    if (rc != CX_OK) {
        reply_err(k, req, "INTERNAL", "could not rotate the token");
        return;
    }
    (void)cx_tokens_audit(core->tokens, now, "token.rotate", name, s->ip, "ok");
    cx_log_info("token %s rotated by session %s", name, s->id);
    if (own)
        cx_token_prefix(token, s->prefix);
    close_token_conns(core, name, k->conn, "token rotated");
    json_t *p = json_pack("{s:s, s:s}", "name", name, "token", token);
    sodium_memzero(token, sizeof token);
    reply_ok(k, req, p);
}

static void act_revoke(cx_core *core, caller *k, const cx_msg *req)
{
    session *s = k->s;
    const char *name = payload_token_name(req);
    if (!name) {
        reply_err(k, req, "INVALID_ARGUMENT", "name is required");
        return;
    }
    int rc = cx_tokens_revoke(core->tokens, name);
    if (rc == CX_E_NOTFOUND) {
        reply_err(k, req, "NOT_FOUND", "no token with this name");
        return;
    }
    if (rc != CX_OK) {
        reply_err(k, req, "INTERNAL", "could not revoke the token");
        return;
    }
    (void)cx_tokens_audit(core->tokens, cx_clock_now_ms(), "token.revoke", name, s->ip, "ok");
    cx_log_info("token %s revoked by session %s", name, s->id);
    close_token_conns(core, name, k->conn, "token revoked");
    reply_ok(k, req, json_pack("{s:s, s:b}", "name", name, "revoked", 1));
}

static bool need_token_name(caller *k, const cx_msg *req, const char **name)
{
    *name = payload_token_name(req);
    if (!*name) {
        reply_err(k, req, "INVALID_ARGUMENT", "tokenName is required");
        return false;
    }
    return true;
}

static void act_totp_setup(cx_core *core, caller *k, const cx_msg *req)
{
    const char *name;
    if (!need_token_name(k, req, &name))
        return;
    char secret[CX_TOKENS_TOTP_B32_SIZE];
    int rc = cx_tokens_totp_setup(core->tokens, name, secret);
    if (rc != CX_OK) {
        reply_err(k, req, rc == CX_E_NOTFOUND ? "NOT_FOUND" : "INTERNAL",
                  rc == CX_E_NOTFOUND ? "no token with this name" : "could not set up TOTP");
        return;
    }
    char account[CX_TOKEN_NAME_MAX_CHARS + 130];
    snprintf(account, sizeof account, "%s@%s", name, core->display_name);
    char *uri = cx_totp_uri("Condrix", account, secret);
    json_t *p = json_pack("{s:s, s:s?}", "secret", secret, "otpauthUri", uri);
    sodium_memzero(secret, sizeof secret);
    if (uri) {
        sodium_memzero(uri, strlen(uri));
        free(uri);
    }
    session *s = k->s;
    (void)cx_tokens_audit(core->tokens, cx_clock_now_ms(), "totp.setup", name, s->ip, "ok");
    reply_ok(k, req, p);
}

static void act_totp_enable(cx_core *core, caller *k, const cx_msg *req)
{
    const char *name;
    if (!need_token_name(k, req, &name))
        return;
    const char *code = cx_msg_payload_str(req, "code");
    json_t *cv = json_object_get(req->payload, "code");
    char digits[8] = "";
    if (!code && json_is_integer(cv) && json_integer_value(cv) >= 0 &&
        json_integer_value(cv) <= 999999) {
        /* A code sent as a JSON number lost its leading zeros: put them back. */
        snprintf(digits, sizeof digits, "%06d", (int)json_integer_value(cv));
        code = digits;
    }
    if (!cv || json_is_null(cv)) {
        reply_err(k, req, "INVALID_ARGUMENT", "code is required");
        return;
    }
    int rc = code ? cx_tokens_totp_enable(core->tokens, name, code, cx_clock_now_ms() / 1000)
                  : CX_E_FORMAT; /* present but no code: wrong, like a wrong code */
    session *s = k->s;
    if (rc == CX_E_NOTFOUND) {
        reply_err(k, req, "NOT_FOUND", "no token with this name");
    } else if (rc == CX_E_INVAL) {
        reply_err(k, req, "INVALID_ARGUMENT", "run totp.setup first");
    } else if (rc == CX_E_FORMAT || rc == CX_E_DENIED || rc == CX_E_REPLAY) {
        (void)cx_tokens_audit(core->tokens, cx_clock_now_ms(), "totp.enable", name, s->ip,
                              "denied");
        reply_err(k, req, "INVALID_TOTP", "wrong TOTP code");
    } else if (rc != CX_OK) {
        reply_err(k, req, "INTERNAL", "could not enable TOTP");
    } else {
        (void)cx_tokens_audit(core->tokens, cx_clock_now_ms(), "totp.enable", name, s->ip, "ok");
        reply_ok(k, req, json_pack("{s:b}", "enabled", 1));
    }
}

static void act_totp_disable(cx_core *core, caller *k, const cx_msg *req)
{
    const char *name;
    if (!need_token_name(k, req, &name))
        return;
    int rc = cx_tokens_totp_disable(core->tokens, name);
    if (rc != CX_OK) {
        reply_err(k, req, rc == CX_E_NOTFOUND ? "NOT_FOUND" : "INTERNAL",
                  rc == CX_E_NOTFOUND ? "no token with this name" : "could not disable TOTP");
        return;
    }
    session *s = k->s;
    (void)cx_tokens_audit(core->tokens, cx_clock_now_ms(), "totp.disable", name, s->ip, "ok");
    reply_ok(k, req, json_pack("{s:b}", "disabled", 1));
}

static void act_totp_status(cx_core *core, caller *k, const cx_msg *req)
{
    const char *name;
    if (!need_token_name(k, req, &name))
        return;
    bool configured = false, enabled = false;
    int rc = cx_tokens_totp_status(core->tokens, name, &configured, &enabled);
    if (rc != CX_OK) {
        reply_err(k, req, rc == CX_E_NOTFOUND ? "NOT_FOUND" : "INTERNAL",
                  rc == CX_E_NOTFOUND ? "no token with this name" : "could not read TOTP status");
        return;
    }
    reply_ok(k, req, json_pack("{s:b, s:b}", "configured", configured, "enabled", enabled));
}

static void list_conn(cx_conn *c, void *arg)
{
    json_t *list = arg;
    session *s = cx_conn_data(c);
    if (!s)
        return;
    char at[32];
    iso(s->connected_at, at);
    const char *tn = s->dev ? "dev" : s->token_name;
    json_array_append_new(
        list, json_pack("{s:s, s:o, s:s, s:o, s:s, s:b}", "sessionId", s->id, "tokenName",
                        tn ? json_string(tn) : json_null(), "ip", s->ip, "clientType",
                        s->client_type ? json_string(client_types[s->client_type]) : json_null(),
                        "connectedAt", at, "authenticated", s->authed));
}

static void act_conn_list(cx_core *core, caller *k, const cx_msg *req)
{
    json_t *list = json_array();
    if (list)
        cx_server_foreach(core->srv, list_conn, list);
    reply_ok(k, req, json_pack("{s:o}", "connections", list));
}

struct find_session {
    const char *id;
    cx_conn *found;
};

static void find_conn(cx_conn *c, void *arg)
{
    struct find_session *f = arg;
    session *s = cx_conn_data(c);
    if (s && strcmp(s->id, f->id) == 0)
        f->found = c;
}

static void act_conn_close(cx_core *core, caller *k, const cx_msg *req)
{
    const char *sid = cx_msg_payload_str(req, "sessionId");
    if (!sid) {
        reply_err(k, req, "INVALID_ARGUMENT", "sessionId is required");
        return;
    }
    struct find_session f = {sid, NULL};
    cx_server_foreach(core->srv, find_conn, &f);
    if (!f.found) {
        reply_err(k, req, "NOT_FOUND", "no open connection with this sessionId");
        return;
    }
    session *s = k->s;
    cx_log_info("session %s closed by session %s", sid, s->id);
    reply_ok(k, req, json_pack("{s:b}", "closed", 1));
    cx_conn_close(f.found, CX_WS_CLOSE_NORMAL, "closed by admin");
}

/* "*", "ns:*" or "ns:action" with non-empty parts. */
static bool pattern_valid(const char *p)
{
    if (strcmp(p, "*") == 0)
        return true;
    size_t n = strlen(p);
    const char *colon = strchr(p, ':');
    return n <= MAX_PATTERN_CHARS && colon && colon != p && colon[1] != '\0' &&
           !strchr(colon + 1, ':');
}

static void act_subscribe(cx_core *core, caller *k, const cx_msg *req)
{
    (void)core;
    session *s = k->s;
    json_t *add = json_object_get(req->payload, "subscribe");
    json_t *del = json_object_get(req->payload, "unsubscribe");
    size_t i;
    json_t *v;
    if (json_is_null(add)) /* null is absent, as for every optional field */
        add = NULL;
    if (json_is_null(del))
        del = NULL;
    if ((add && !json_is_array(add)) || (del && !json_is_array(del))) {
        reply_err(k, req, "INVALID_ARGUMENT", "subscribe and unsubscribe must be arrays");
        return;
    }
    json_array_foreach(add, i, v) {
        if (!json_is_string(v) || !pattern_valid(json_string_value(v))) {
            reply_err(k, req, "INVALID_ARGUMENT", "patterns are '*', 'ns:*' or 'ns:action'");
            return;
        }
    }
    json_array_foreach(del, i, v) {
        if (!json_is_string(v))
            continue;
        for (int j = 0; j < s->nsubs; j++) {
            if (strcmp(s->subs[j], json_string_value(v)) == 0) {
                free(s->subs[j]);
                s->subs[j] = s->subs[--s->nsubs];
                break;
            }
        }
    }
    json_array_foreach(add, i, v) {
        const char *p = json_string_value(v);
        bool dup = false;
        for (int j = 0; j < s->nsubs && !dup; j++)
            dup = strcmp(s->subs[j], p) == 0;
        if (dup)
            continue;
        if (s->nsubs >= MAX_SUBSCRIPTIONS) {
            reply_err(k, req, "INVALID_ARGUMENT", "too many subscriptions (32 at most)");
            return;
        }
        if (!s->subs && !(s->subs = calloc(MAX_SUBSCRIPTIONS, sizeof *s->subs))) {
            reply_err(k, req, "INTERNAL", "out of memory");
            return;
        }
        if (!(s->subs[s->nsubs] = strdup(p))) {
            reply_err(k, req, "INTERNAL", "out of memory");
            return;
        }
        s->nsubs++;
    }
    json_t *list = json_array();
    for (int j = 0; list && j < s->nsubs; j++)
        json_array_append_new(list, json_string(s->subs[j]));
    reply_ok(k, req, json_pack("{s:o}", "subscribed", list));
}

static const struct action {
    const char *name;  /* core/<name> */
    unsigned scope;    /* needed scope; 0 = any authenticated session */
    action_fn fn;
} actions[] = {
    {"info", 0, act_info},
    {"health", 0, act_health},
    {"auth.tokens", CX_SCOPE_ADMIN_CORE, act_tokens},
    {"auth.generateToken", CX_SCOPE_ADMIN_CORE, act_generate},
    {"auth.rotateToken", 0, act_rotate}, /* admin:core or own token: checked inside */
    {"auth.revokeToken", CX_SCOPE_ADMIN_CORE, act_revoke},
    {"totp.setup", CX_SCOPE_ADMIN_CORE, act_totp_setup},
    {"totp.enable", CX_SCOPE_ADMIN_CORE, act_totp_enable},
    {"totp.disable", CX_SCOPE_ADMIN_CORE, act_totp_disable},
    {"totp.status", CX_SCOPE_ADMIN_CORE, act_totp_status},
    {"connections.list", CX_SCOPE_ADMIN_CORE, act_conn_list},
    {"connections.close", CX_SCOPE_ADMIN_CORE, act_conn_close},
    {"subscribe", 0, act_subscribe},
};

static void dispatch(cx_core *core, caller *k, const cx_msg *req)
{
    session *s = k->s;
    if (s->blocked) {
        int retry = 1;
        if (cx_ratelimit_auth_allowed(core->rl, s->ip, cx_clock_now_ms(), &retry) != CX_OK) {
            rate_limited(k, req, retry, true);
            return;
        }
        s->blocked = 0; /* the block ran out while the connection was open */
    }
    bool is_auth = strcmp(req->ns, "core") == 0 && strcmp(req->action, "auth") == 0;
    if (is_auth && !k->conn) {
        /* Maestro already authenticated its user: say so, with the relay's scopes. */
        auth_success(core, k, req, "maestro");
        return;
    }
    if (is_auth) {
        if (s->failing) {
            reply_err(k, req, "AUTH_REQUIRED", "an authentication attempt is in progress");
            return;
        }
        handle_auth(core, k, req);
        return;
    }
    if (!s->authed) {
        s->strikes++;
        reply_err(k, req, "AUTH_REQUIRED", "authenticate first with core/auth");
        if (s->strikes >= CX_AUTH_REQUIRED_STRIKES && k->conn)
            cx_conn_close(k->conn, CX_WS_CLOSE_POLICY, "authentication required");
        return;
    }
    int64_t now = cx_clock_now_ms();
    if (cx_ratelimit_message(core->rl, &s->budget, now) != CX_OK) {
        rate_limited(k, req, 1, false);
        return;
    }
    if (strcmp(req->ns, "core") == 0) {
        for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++) {
            if (strcmp(actions[i].name, req->action) != 0)
                continue;
            if (actions[i].scope && !(s->scopes & actions[i].scope)) {
                char msg[64];
                snprintf(msg, sizeof msg, "needs scope %s", cx_scope_name(actions[i].scope));
                reply_err(k, req, "FORBIDDEN", msg);
                return;
            }
            actions[i].fn(core, k, req);
            return;
        }
    }
    char msg[300];
    snprintf(msg, sizeof msg, "unknown action %.128s/%.128s", req->ns, req->action);
    reply_err(k, req, "UNKNOWN_ACTION", msg);
}

/* What a session owns besides itself. */
static void session_release(session *s)
{
    for (int k = 0; k < s->nsubs; k++)
        free(s->subs[k]);
    free(s->subs);
    free(s->token_name);
    s->subs = NULL;
    s->nsubs = 0;
    s->token_name = NULL;
}

void cx_core_dispatch_relayed(cx_core *core, const cx_msg *req, unsigned scopes)
{
    session s = {0};
    s.ip = "maestro";
    snprintf(s.id, sizeof s.id, "maestro-relay");
    s.authed = 1;
    s.scopes = scopes;
    caller k = {&s, NULL, core};
    dispatch(core, &k, req);
    /* The session lives for this one request: a relayed subscribe has no one to deliver
     * to after it, and what it allocated goes here. */
    session_release(&s);
}

/* ---- connection callbacks ---- */

static int on_upgrade(cx_server *srv, cx_conn *c, const cx_http_req *req)
{
    cx_core *core = cx_server_data(srv);
    if (core->stopping)
        return 503;
    session *s = calloc(1, sizeof *s);
    if (!s)
        return 503;
    s->ip = cx_conn_client_addr(c);
    cx_msg_new_id(s->id);
    s->connected_at = cx_clock_now_ms();
    int retry = 0;
    if (cx_ratelimit_auth_allowed(core->rl, s->ip, s->connected_at, &retry) != CX_OK) {
        /* Blocked after failed attempts: the first request hears why, with retryAfter. */
        s->blocked = 1;
    } else if (core->dev && cx_addr_is_loopback(cx_conn_peer(c)) && !cx_http_req_forwarded(req) &&
               cx_http_req_origin_local(req)) {
        /* A page of another site in the developer's browser reaches loopback too: only
         * clients that are not such a page (no Origin, or a local one) skip the token. */
        s->dev = 1;
        s->authed = 1;
        s->scopes = CX_SCOPE_ALL;
        cx_conn_set_authenticated(c);
    }
    cx_conn_set_data(c, s);
    return 0;
}

static void on_message(cx_server *srv, cx_conn *c, const char *text, size_t len)
{
    cx_core *core = cx_server_data(srv);
    session *s = cx_conn_data(c);
    if (!s)
        return;
    caller k = {s, c, core};
    cx_msg msg;
    cx_msg_error err;
    if (cx_msg_decode_lean(text, len, &msg, &err) != CX_OK) {
        cx_reply_invalid(c, "core", &err, &s->invalid);
        return;
    }
    s->invalid = 0;
    /* Responses and events from clients need no answer; the Core asks nothing yet. */
    if (msg.type == CX_MSG_REQUEST)
        dispatch(core, &k, &msg);
    cx_msg_free(&msg);
}

static void on_close(cx_server *srv, cx_conn *c, uint16_t code)
{
    (void)srv;
    session *s = cx_conn_data(c);
    if (!s)
        return;
    if (s->authed)
        cx_log_debug("session %s closed (%u)", s->id, code);
    session_release(s);
    free(s);
    cx_conn_set_data(c, NULL);
}

static void on_http(cx_server *srv, cx_conn *c, const cx_http_req *req)
{
    (void)srv;
    const char *path = cx_http_req_path(req);
    const char *method = cx_http_req_method(req);
    if (strcmp(path, "/healthz") == 0 || strncmp(path, "/healthz?", 9) == 0) {
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
            cx_conn_http_reply(c, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n",
                               "method not allowed\n", 19);
            return;
        }
        cx_conn_http_reply(c, 200, "text/plain; charset=utf-8", "Cache-Control: no-store\r\n",
                           "ok", 2);
        return;
    }
    static const char msg[] = "not found: this is a Condrix Core; connect with a WebSocket\n";
    cx_conn_http_reply(c, 404, "text/plain; charset=utf-8", NULL, msg, sizeof msg - 1);
}

static const cx_server_callbacks callbacks = {
    .on_http = on_http,
    .on_upgrade = on_upgrade,
    .on_message = on_message,
    .on_close = on_close,
};

/* ---- start and stop ---- */

static int ensure_core_id(cx_core *core)
{
    char *id = NULL;
    if (cx_tokens_setting_get(core->tokens, "core.id", &id) != CX_OK)
        return CX_E_DB;
    if (!id) {
        char fresh[37];
        cx_msg_new_id(fresh);
        if (cx_tokens_setting_set(core->tokens, "core.id", fresh) != CX_OK)
            return CX_E_DB;
        snprintf(core->core_id, sizeof core->core_id, "%s", fresh);
        return CX_OK;
    }
    snprintf(core->core_id, sizeof core->core_id, "%s", id);
    free(id);
    return CX_OK;
}

/* First start in production mode: one admin token, shown once on stdout. */
static int first_start_token(cx_core *core)
{
    char *done = NULL;
    if (cx_tokens_setting_get(core->tokens, "bootstrap.default_admin", &done) != CX_OK)
        return CX_E_DB;
    if (done) {
        free(done);
        return CX_OK;
    }
    char token[65];
    int64_t now = cx_clock_now_ms();
    int rc = cx_tokens_create(core->tokens, "default-admin", CX_SCOPE_ALL, 0, now, token);
    if (rc == CX_OK) {
        printf("condrix-core: first start: created the access token \"default-admin\" with "
               "every scope.\n"
               "condrix-core: it is shown only this once; store it somewhere safe:\n"
               "%s\n",
               token);
        fflush(stdout);
        sodium_memzero(token, sizeof token);
        (void)cx_tokens_audit(core->tokens, now, "token.create", "default-admin", NULL, "ok");
        cx_log_info("first start: made token default-admin (printed on stdout)");
    } else if (rc != CX_E_EXISTS) {
        return rc;
    }
    return cx_tokens_setting_set(core->tokens, "bootstrap.default_admin", "1");
}

static int seed_env_token(cx_core *core)
{
    const char *v = getenv("CONDRIX_CORE_TOKEN");
    if (!v || !*v)
        return CX_OK;
    char token[65] = {0};
    snprintf(token, sizeof token, "%s", v);
    bool ok = strlen(v) == 64;
    /* The value must not linger in the environment of children or /proc. */
    sodium_memzero((char *)v, strlen(v));
    unsetenv("CONDRIX_CORE_TOKEN");
    if (!ok || !cx_token_well_formed(token)) {
        cx_log_error("CONDRIX_CORE_TOKEN must be 64 lowercase hex characters "
                     "(make one with: openssl rand -hex 32)");
        sodium_memzero(token, sizeof token);
        return CX_E_FORMAT;
    }
    int rc = cx_tokens_seed(core->tokens, "env-token", token, CX_SCOPE_ALL, cx_clock_now_ms());
    char prefix[9];
    cx_token_prefix(token, prefix);
    sodium_memzero(token, sizeof token);
    if (rc == CX_E_EXISTS) {
        cx_log_error("CONDRIX_CORE_TOKEN is already the value of another token; not seeding");
        return rc;
    }
    if (rc != CX_OK)
        return rc;
    cx_log_info("CONDRIX_CORE_TOKEN: token env-token (%s...) is in place", prefix);
    return CX_OK;
}

int cx_core_start(cx_core *core, uv_loop_t *loop, const cx_core_options *opt)
{
    int rc;
    char *err = NULL;
    char path[4096];
    memset(core, 0, sizeof *core);
    core->loop = loop;
    core->dev = opt->dev;
    if (cx_mkdir_private(opt->home) != CX_OK) {
        cx_log_error("cannot create the data directory %s: check its parent's permissions",
                     opt->home);
        return CX_E_IO;
    }
    snprintf(path, sizeof path, "%s/core.db", opt->home);
    if ((rc = cx_tokens_open(path, &core->tokens, &err)) != CX_OK) {
        cx_log_error("cannot open %s: %s", path, err ? err : cx_strerror(rc));
        free(err);
        return rc;
    }
    if ((rc = ensure_core_id(core)) != CX_OK) {
        cx_log_error("cannot read or store the Core id in %s", path);
        return rc;
    }
    if ((rc = seed_env_token(core)) != CX_OK)
        return rc;
    if (opt->display_name && *opt->display_name) {
        snprintf(core->display_name, sizeof core->display_name, "%s", opt->display_name);
    } else if (gethostname(core->display_name, sizeof core->display_name - 1) != 0) {
        snprintf(core->display_name, sizeof core->display_name, "condrix-core");
    }
    const char *murl = getenv("CONDRIX_MAESTRO_URL");
    if (murl && *murl)
        core->maestro_url = strdup(murl);

    if ((rc = cx_server_from_env(loop, &callbacks, core, opt->tls_cert, opt->tls_key,
                                 "CONDRIX_CORE", NULL, &core->srv)) != CX_OK)
        return rc;
    core->rl = cx_server_ratelimit(core->srv);
    if ((rc = cx_server_listen(core->srv, opt->host, opt->port, &err)) != CX_OK) {
        cx_log_error("cannot listen on %s:%d: %s", opt->host, opt->port,
                     err ? err : cx_strerror(rc));
        free(err);
        return rc;
    }
    /* Only once TLS and the port are known good: the token is printed this once, and a
     * start that fails right after must not have spent it. */
    if (!core->dev && (rc = first_start_token(core)) != CX_OK) {
        cx_log_error("cannot create the first-start token: %s", cx_strerror(rc));
        return rc;
    }
    core->started_ms = uv_now(loop);
    if ((rc = cx_core_link_start(core)) != CX_OK)
        return rc;
    /* Admin verbs in another process change core.db: notice it at once. */
    if ((rc = cx_db_watch_start(loop, opt->home, "core.db", cx_tokens_db(core->tokens),
                                on_db_changed, core, &core->dbwatch)) != CX_OK)
        return rc;
    uv_timer_init(loop, &core->housekeeping);
    core->housekeeping.data = core;
    uv_timer_start(&core->housekeeping, on_housekeeping, CX_CORE_HOUSEKEEPING_MS,
                   CX_CORE_HOUSEKEEPING_MS);
    cx_log_info("Core %s (%s) listening on %s://%s:%d%s", core->core_id, core->display_name,
                cx_server_is_tls(core->srv) ? "wss" : "ws", opt->host,
                cx_server_port(core->srv),
                core->dev ? " in DEV MODE: local connections need no token" : "");
    if (core->dev && !cx_addr_is_loopback(opt->host))
        cx_log_warn("dev mode on a non-loopback address: only loopback peers skip auth, "
                    "but never expose a dev-mode Core");
    return CX_OK;
}

static void on_server_down(cx_server *srv)
{
    cx_core *core = cx_server_data(srv);
    flush_touches(core);
    uv_timer_stop(&core->housekeeping);
    uv_close((uv_handle_t *)&core->housekeeping, NULL);
    cx_db_watch_stop(core->dbwatch);
    core->dbwatch = NULL;
    cx_log_info("all connections closed; database checkpointed");
    cx_tokens_close(core->tokens);
    core->tokens = NULL;
}

void cx_core_stop(cx_core *core)
{
    if (core->stopping)
        return;
    core->stopping = true;
    cx_core_link_stop(core);
    cx_log_info("shutting down: closing %zu connection(s)", cx_server_conn_count(core->srv));
    cx_server_shutdown(core->srv, CX_WS_CLOSE_GOING_AWAY, "server shutting down", on_server_down);
}

void cx_core_free(cx_core *core)
{
    cx_core_link_free(core);
    cx_server_free(core->srv);
    cx_tokens_close(core->tokens);
    free(core->maestro_url);
}
