/* The Core's outbound link to Maestro (PROTOCOL.md section 6): register with a stored
 * permanent token or a pairing code, store the token Maestro issues before
 * acknowledging it, take pushed rotations, serve relayed requests with the scopes of the
 * relaying user's role, and reconnect with jittered exponential backoff. */
#include "core.h"

#include "condrix/clock.h"
#include "condrix/error.h"
#include "condrix/limits.h"
#include "condrix/log.h"
#include "condrix/msg.h"
#include "condrix/token.h"
#include "condrix/version.h"
#include "condrix/wsclient.h"
#include "condrix/ws.h"

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINK_BACKOFF_FIRST_MS 1000
#define LINK_BACKOFF_MAX_MS 60000
#define LINK_CREDENTIAL_WAIT_MS (5 * 60 * 1000)
#define LINK_PING_MS 30000
#define LINK_PONG_MS 90000

struct cx_core_link {
    cx_core *core;
    cx_wsc *wsc;              /* the connection, NULL between attempts */
    uv_timer_t retry;         /* next attempt */
    char *url;                /* CONDRIX_MAESTRO_URL */
    char *ca;                 /* CONDRIX_MAESTRO_CA, may be NULL */
    char *env_token;          /* CONDRIX_MAESTRO_TOKEN (a pairing code or a token), wiped on free */
    char auth_id[37];         /* id of our pending core/auth */
    char maestro_id[64];      /* from Maestro's answer */
    char id[64];              /* our id at Maestro */
    uint32_t credential_wait_ms; /* wait after Maestro refused our credential */
    int attempt;              /* backoff exponent */
    bool authed;              /* Maestro accepted us on this connection */
    bool stopping;            /* shutdown: no more attempts */
    bool sent_env;            /* the credential on this connection came from the environment */
    bool prefer_env;          /* next attempt: use the environment's credential first */
    bool credential_failed;   /* the last refusal was about our credential */
    bool stored_refused;      /* Maestro refused the stored token (until one is accepted) */
    int replaced;             /* 4003 closes in a row: each doubles the wait before the next */
    const char *crash_at;     /* CONDRIX_TEST_CRASH_AT, tests only */
};

static void schedule(cx_core_link *l, uint64_t ms);

static char *stored_token(cx_core_link *l)
{
    char *v = NULL;
    if (cx_tokens_setting_get(l->core->tokens, "maestro.token", &v) != CX_OK)
        return NULL;
    return v;
}

static void wipe_free(char *s)
{
    if (s) {
        sodium_memzero(s, strlen(s));
        free(s);
    }
}

static void send_env(cx_core_link *l, json_t *m)
{
    if (!l->wsc || !m) {
        json_decref(m);
        return;
    }
    size_t len;
    char *text = cx_msg_encode(m, &len);
    json_decref(m);
    if (!text)
        return;
    (void)cx_wsc_send_text(l->wsc, text, len);
    sodium_memzero(text, len); /* it may have carried a credential */
    free(text);
}

/* ---- callbacks ---- */

static void on_open(cx_wsc *c, void *ud)
{
    cx_core_link *l = ud;
    (void)c;
    char *db = stored_token(l);
    const char *cred = NULL;
    l->sent_env = false;
    if (db && !(l->prefer_env && l->env_token)) {
        cred = db;
    } else if (l->env_token) {
        cred = l->env_token;
        l->sent_env = true;
    }
    l->prefer_env = false;
    if (!cred) {
        cx_log_error("maestro: no credential to present. Ask the Maestro admin for a pairing "
                     "code (condrix-maestro pair) and restart with CONDRIX_MAESTRO_TOKEN=<code>");
        l->credential_failed = true;
        cx_wsc_close(l->wsc, CX_WS_CLOSE_NORMAL, "no credential");
        wipe_free(db);
        return;
    }
    json_t *req = cx_msg_make(CX_MSG_REQUEST, "core", "auth",
                              json_pack("{s:s, s:s, s:s, s:s}", "coreId", l->core->core_id,
                                        "displayName", l->core->display_name, "version",
                                        CX_VERSION, "accessToken", cred));
    wipe_free(db);
    if (!req) {
        cx_wsc_close(l->wsc, CX_WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    snprintf(l->auth_id, sizeof l->auth_id, "%s", json_string_value(json_object_get(req, "id")));
    send_env(l, req);
}

/* Tests prove that a Core killed mid-pairing is never locked out; they need to kill it
 * at exactly these points. CONDRIX_TEST_CRASH_AT=before-store|before-ack: SIGKILL
 * ourselves there. Read once at start; unset in production. */
static void crash_point(const cx_core_link *l, const char *where)
{
    if (l->crash_at && strcmp(l->crash_at, where) == 0) {
        cx_log_warn("maestro: CONDRIX_TEST_CRASH_AT=%s: killing this process now", where);
        raise(SIGKILL);
    }
}

static bool is_credential_error(const char *code)
{
    return code && (strcmp(code, "INVALID_CREDENTIALS") == 0 ||
                    strcmp(code, "PAIRING_CODE_EXPIRED") == 0 ||
                    strcmp(code, "PAIRING_CODE_USED") == 0);
}

static void on_auth_answer(cx_core_link *l, const cx_msg *m)
{
    l->auth_id[0] = '\0';
    if (m->success != 1) {
        json_t *code = m->error ? json_object_get(m->error, "code") : NULL;
        const char *cs = json_is_string(code) ? json_string_value(code) : "unknown";
        if (is_credential_error(cs) && !l->sent_env)
            l->stored_refused = true;
        if (is_credential_error(cs) && !l->sent_env && l->env_token) {
            /* The stored token is dead (the Core was removed?): the environment may hold
             * a fresh pairing code. Try it at once. */
            cx_log_warn("maestro: refused the stored token (%s); trying CONDRIX_MAESTRO_TOKEN", cs);
            l->prefer_env = true;
            l->attempt = 0;
        } else if (is_credential_error(cs)) {
            l->credential_failed = true;
            cx_log_error("maestro: refused this Core's credential (%s). Get a new pairing code "
                         "from the Maestro admin (condrix-maestro pair) and restart this Core with "
                         "CONDRIX_MAESTRO_TOKEN=<code>; retrying in %u s",
                         cs, l->credential_wait_ms / 1000);
        } else {
            cx_log_warn("maestro: registration failed: %s", cs);
        }
        return; /* Maestro closes the connection; on_close schedules the next attempt. */
    }
    l->authed = true;
    l->attempt = 0;
    l->credential_failed = false;
    l->stored_refused = false;
    json_t *p = m->payload;
    json_t *v = json_object_get(p, "maestroId");
    snprintf(l->maestro_id, sizeof l->maestro_id, "%s", json_is_string(v) ? json_string_value(v) : "");
    v = json_object_get(p, "id");
    snprintf(l->id, sizeof l->id, "%s", json_is_string(v) ? json_string_value(v) : "");
    v = json_object_get(p, "permanentToken");
    if (!json_is_string(v) && l->sent_env && l->env_token && cx_token_well_formed(l->env_token)) {
        /* An admin handed this token over by hand (rotation while we were offline) and
         * Maestro accepted it: keep it, so the stale stored token stops being tried. */
        char *db = stored_token(l);
        bool same = db && sodium_memcmp(db, l->env_token, CX_TOKEN_HEX_CHARS) == 0;
        wipe_free(db);
        if (!same) {
            if (cx_tokens_setting_set(l->core->tokens, "maestro.token", l->env_token) == CX_OK)
                cx_log_info("maestro: accepted CONDRIX_MAESTRO_TOKEN; stored it as this Core's token");
            else
                cx_log_error("maestro: cannot store the token from CONDRIX_MAESTRO_TOKEN");
        }
    }
    if (json_is_string(v)) {
        const char *tok = json_string_value(v);
        if (!cx_token_well_formed(tok)) {
            cx_log_error("maestro: sent a malformed permanent token; not storing it");
            return;
        }
        /* Durable first, then the ack: a crash between the two leaves a token Maestro
         * still accepts, never a Core locked out. */
        crash_point(l, "before-store");
        if (cx_tokens_setting_set(l->core->tokens, "maestro.token", tok) != CX_OK) {
            cx_log_error("maestro: cannot store the permanent token; not acknowledging it");
            return;
        }
        char prefix[9];
        cx_token_prefix(tok, prefix);
        (void)cx_tokens_audit(l->core->tokens, cx_clock_now_ms(), "maestro.paired", NULL,
                              l->url, "ok");
        cx_log_info("maestro: paired; permanent token %s... stored", prefix);
        crash_point(l, "before-ack");
        send_env(l, cx_msg_make(CX_MSG_REQUEST, "maestro", "token.ack",
                                json_pack("{s:s}", "prefix", prefix)));
    }
    cx_log_info("maestro: connected to %s as %s", l->url, l->id);
}

static void on_set_token(cx_core_link *l, const cx_msg *m)
{
    json_t *v = json_object_get(m->payload, "token");
    const char *tok = json_is_string(v) ? json_string_value(v) : NULL;
    if (!tok || !cx_token_well_formed(tok)) {
        send_env(l, cx_msg_fail(m->ns, m->action, m->id, "INVALID_ARGUMENT",
                                "token must be 64 lowercase hex characters", NULL, NULL));
        return;
    }
    if (cx_tokens_setting_set(l->core->tokens, "maestro.token", tok) != CX_OK) {
        send_env(l, cx_msg_fail(m->ns, m->action, m->id, "INTERNAL",
                                "could not store the token", NULL, NULL));
        return;
    }
    char prefix[9];
    cx_token_prefix(tok, prefix);
    (void)cx_tokens_audit(l->core->tokens, cx_clock_now_ms(), "maestro.rotated", NULL, l->url, "ok");
    cx_log_info("maestro: rotated our token; new token %s... stored", prefix);
    send_env(l, cx_msg_ok(m->ns, m->action, m->id, json_pack("{s:b}", "stored", 1)));
}

/* Scopes for a request Maestro relays: by the relaying user's role; least privilege
 * when Maestro does not say. */
static unsigned relay_scopes(const cx_msg *m)
{
    json_t *relay = json_object_get(m->root, "relay");
    json_t *role = json_is_object(relay) ? json_object_get(relay, "role") : NULL;
    if (json_is_string(role) && strcmp(json_string_value(role), "admin") == 0)
        return CX_SCOPE_ALL;
    return CX_SCOPE_READ_FILES;
}

static void on_message(cx_wsc *c, void *ud, const char *text, size_t len)
{
    cx_core_link *l = ud;
    (void)c;
    cx_msg m;
    cx_msg_error err;
    if (cx_msg_decode(text, len, &m, &err) != CX_OK) {
        cx_log_warn("maestro: sent an invalid message: %s", err.message);
        return;
    }
    if (m.type == CX_MSG_RESPONSE) {
        if (l->auth_id[0] && m.correlation_id && strcmp(m.correlation_id, l->auth_id) == 0)
            on_auth_answer(l, &m);
        else if (m.success == 0 && strcmp(m.action, "token.ack") == 0)
            cx_log_warn("maestro: did not accept our token acknowledgement");
    } else if (m.type == CX_MSG_REQUEST && l->authed) {
        /* A push from Maestro itself; the same action relayed from a client (it carries
         * `relay`) is not one, and goes where clients' requests go (UNKNOWN_ACTION). */
        if (strcmp(m.ns, "core") == 0 && strcmp(m.action, "maestro.setToken") == 0 &&
            !json_object_get(m.root, "relay"))
            on_set_token(l, &m);
        else
            cx_core_dispatch_relayed(l->core, &m, relay_scopes(&m));
    }
    cx_msg_free(&m);
}

static void on_close(cx_wsc *c, void *ud, uint16_t code, const char *reason)
{
    cx_core_link *l = ud;
    (void)c;
    bool was_authed = l->authed;
    l->wsc = NULL;
    l->authed = false;
    l->auth_id[0] = '\0';
    if (l->stopping)
        return;
    if (code == CX_WS_CLOSE_REPLACED) {
        /* Two Cores with one id (a copied data directory) would replace each other as
         * fast as they can reconnect: each 4003 in a row doubles the wait, to the cap. */
        if (l->replaced < 16)
            l->replaced++;
        uint64_t cap = LINK_BACKOFF_FIRST_MS << (l->replaced < 7 ? l->replaced : 7);
        if (cap > LINK_BACKOFF_MAX_MS)
            cap = LINK_BACKOFF_MAX_MS;
        cx_log_warn("maestro: another connection with this Core's id replaced ours (4003); "
                    "is a copy of this Core's data directory running elsewhere? Retrying "
                    "within %llu s", (unsigned long long)(cap / 1000));
        schedule(l, randombytes_uniform((uint32_t)cap) + 1);
        return;
    }
    l->replaced = 0;
    if (was_authed)
        cx_log_warn("maestro: link closed (%u %s)", code, reason);
    else if (!l->credential_failed && !l->prefer_env)
        cx_log_warn("maestro: cannot reach %s: %s%s", l->url, reason && *reason ? reason : "closed",
                    reason && strstr(reason, "trusted CA") && !l->ca
                        ? " (set CONDRIX_MAESTRO_CA to the CA certificate that signed Maestro's)"
                        : "");
    if (l->credential_failed) {
        schedule(l, l->credential_wait_ms);
        return;
    }
    if (l->prefer_env) {
        schedule(l, 0);
        return;
    }
    /* Full jitter: a random wait up to the doubling cap. */
    uint64_t cap = LINK_BACKOFF_FIRST_MS;
    for (int i = 0; i < l->attempt && cap < LINK_BACKOFF_MAX_MS; i++)
        cap *= 2;
    if (cap > LINK_BACKOFF_MAX_MS)
        cap = LINK_BACKOFF_MAX_MS;
    if (l->attempt < 16)
        l->attempt++;
    schedule(l, randombytes_uniform((uint32_t)cap) + 1);
}

static const cx_wsc_callbacks link_cb = {
    .on_open = on_open,
    .on_message = on_message,
    .on_close = on_close,
};

static void dial(cx_core_link *l)
{
    if (l->stopping || l->wsc)
        return;
    l->credential_failed = false;
    cx_wsc_options opt = {
        .url = l->url,
        .ca_file = l->ca,
        .max_message = CX_RELAY_MAX_MESSAGE_BYTES,
        .ping_ms = LINK_PING_MS,
        .pong_ms = LINK_PONG_MS,
    };
    char *err = NULL;
    if (cx_wsc_connect(l->core->loop, &opt, &link_cb, l, &l->wsc, &err) != CX_OK) {
        cx_log_error("maestro: cannot dial %s: %s", l->url, err ? err : "unknown error");
        free(err);
        l->wsc = NULL;
        schedule(l, LINK_BACKOFF_MAX_MS);
    }
}

static void on_retry(uv_timer_t *t)
{
    dial(t->data);
}

static void schedule(cx_core_link *l, uint64_t ms)
{
    if (!l->stopping)
        uv_timer_start(&l->retry, on_retry, ms, 0);
}

/* ---- public ---- */

int cx_core_link_start(cx_core *core)
{
    const char *url = getenv("CONDRIX_MAESTRO_URL");
    if (!url || !*url)
        return CX_OK;
    bool tls;
    char host[256], path[1024];
    int port;
    if (cx_wsc_parse_url(url, &tls, host, sizeof host, &port, path, sizeof path) != CX_OK) {
        cx_log_error("CONDRIX_MAESTRO_URL must look like wss://maestro.example.com/ or "
                     "ws://127.0.0.1:9200/");
        return CX_E_INVAL;
    }
    cx_core_link *l = calloc(1, sizeof *l);
    if (!l)
        return CX_E_NOMEM;
    l->core = core;
    l->url = strdup(url);
    const char *ca = getenv("CONDRIX_MAESTRO_CA");
    if (ca && *ca)
        l->ca = strdup(ca);
    char *tok = getenv("CONDRIX_MAESTRO_TOKEN");
    if (tok && *tok) {
        l->env_token = strdup(tok);
        /* Out of the environment, so children and /proc/PID/environ do not see it. */
        sodium_memzero(tok, strlen(tok));
        unsetenv("CONDRIX_MAESTRO_TOKEN");
    }
    long wait_ms;
    if (cx_env_int("CONDRIX_MAESTRO_CREDENTIAL_RETRY_MS", LINK_CREDENTIAL_WAIT_MS, 100,
                   24L * 3600 * 1000, &wait_ms) != CX_OK) {
        cx_log_error("CONDRIX_MAESTRO_CREDENTIAL_RETRY_MS must be a number of milliseconds");
        free(l->url);
        free(l->ca);
        wipe_free(l->env_token);
        free(l);
        return CX_E_INVAL;
    }
    l->credential_wait_ms = (uint32_t)wait_ms;
    l->crash_at = getenv("CONDRIX_TEST_CRASH_AT");
    if (!l->url || (ca && *ca && !l->ca) || (tok && *tok && !l->env_token)) {
        free(l->url);
        free(l->ca);
        wipe_free(l->env_token);
        free(l);
        return CX_E_NOMEM;
    }
    uv_timer_init(core->loop, &l->retry);
    l->retry.data = l;
    core->link = l;
    if (tls && !l->ca)
        cx_log_info("maestro: verifying %s against the system CA bundle", host);
    dial(l);
    return CX_OK;
}

void cx_core_link_stop(cx_core *core)
{
    cx_core_link *l = core->link;
    if (!l || l->stopping)
        return;
    l->stopping = true;
    uv_timer_stop(&l->retry);
    uv_close((uv_handle_t *)&l->retry, NULL);
    if (l->wsc)
        cx_wsc_close(l->wsc, CX_WS_CLOSE_GOING_AWAY, "core shutting down");
}

void cx_core_link_free(cx_core *core)
{
    cx_core_link *l = core->link;
    if (!l)
        return;
    free(l->url);
    free(l->ca);
    wipe_free(l->env_token);
    free(l);
    core->link = NULL;
}

void cx_core_link_send(cx_core *core, json_t *msg)
{
    if (!core->link) {
        json_decref(msg);
        return;
    }
    send_env(core->link, msg);
}

bool cx_core_link_connected(const cx_core *core)
{
    return core->link && core->link->authed;
}

bool cx_core_link_token_refused(const cx_core *core)
{
    return core->link && core->link->stored_refused;
}
