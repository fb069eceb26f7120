/* Cores on Maestro (PROTOCOL.md section 6): core/auth by permanent token, pairing code
 * or the legacy shared secret; the token acknowledgement that consumes a code; one live
 * link per Core (a newer one replaces the older, 4003); online/offline events; and the
 * admin's Core actions, including token rotation pushed to an online Core. */
#include "maestro.h"

#include "condrix/clock.h"
#include "condrix/error.h"
#include "condrix/limits.h"
#include "condrix/log.h"
#include "condrix/pairing.h"
#include "condrix/token.h"
#include "condrix/ws.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A core/maestro.setToken request in flight. */
typedef struct mx_push {
    char rid[32];                          /* id of the request sent to the Core */
    cx_conn *admin;                        /* who asked; NULL once gone */
    char admin_req_id[CX_MSG_MAX_ID_CHARS + 1];
    uint64_t deadline;                     /* loop time */
} mx_push;

static uint64_t push_counter;

mx_link *mx_link_find(mx_server *m, const char *id)
{
    for (mx_link *l = m->links; l; l = l->next)
        if (strcmp(l->id, id) == 0)
            return l;
    return NULL;
}

static bool unregister(mx_server *m, mx_link *l)
{
    for (mx_link **pp = &m->links; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            l->next = NULL;
            return true;
        }
    }
    return false;
}

/* ---- events to clients ---- */

struct event_arg {
    mx_server *m;
    const char *core_id; /* Maestro id of the Core */
    const char *text;
    size_t len;
};

static void event_to_conn(cx_conn *c, void *arg)
{
    struct event_arg *a = arg;
    mx_peer *p = cx_conn_data(c);
    if (!p || p->kind == MX_PEER_CORE || (!p->client && !p->local))
        return;
    if (mx_peer_may_see(a->m, p, a->core_id))
        (void)cx_conn_send_text(c, a->text, a->len);
}

void mx_send_to_viewers(mx_server *m, const char *core_id, const char *text, size_t len)
{
    struct event_arg a = {m, core_id, text, len};
    cx_server_foreach(m->srv, event_to_conn, &a);
}

static void broadcast_state(mx_server *m, const mx_link *l, const char *action)
{
    json_t *ev = cx_msg_make(CX_MSG_EVENT, "maestro", action,
                             json_pack("{s:s, s:s, s:s}", "id", l->id, "coreId", l->core_id,
                                       "displayName", l->display_name));
    size_t len;
    char *text = ev ? cx_msg_encode(ev, &len) : NULL;
    json_decref(ev);
    if (!text)
        return;
    mx_send_to_viewers(m, l->id, text, len);
    free(text);
}

/* ---- authentication ---- */

struct delayed_fail {
    json_t *resp; /* the answer, sent after the delay, then close 1008 */
};

static void send_delayed_fail(cx_conn *c, void *arg)
{
    struct delayed_fail *d = arg;
    if (c) {
        mx_peer *p = cx_conn_data(c);
        if (p)
            p->failing = 0;
        cx_reply_json(c, d->resp);
        cx_conn_close(c, CX_WS_CLOSE_POLICY, "authentication failed");
    } else {
        json_decref(d->resp);
    }
    free(d);
}

static void core_fail(mx_server *m, cx_conn *c, const cx_msg *req, const char *core_id,
                      const char *code, const char *message)
{
    mx_peer *p = cx_conn_data(c);
    int64_t now = cx_clock_now_ms();
    bool blocked = false;
    int delay = cx_ratelimit_auth_failed(m->rl, p->ip, now, &blocked);
    cx_log_info("Core auth failed from %s (coreId %.128s): %s%s", p->ip,
                core_id ? core_id : "invalid", code, blocked ? " (address now blocked)" : "");
    (void)mx_audit(m->store, now, NULL, "core.auth", core_id, p->ip, code);
    json_t *resp = cx_msg_fail(req->ns, req->action, req->id, code, message, NULL,
                               json_pack("{s:b}", "authenticated", 0));
    if (delay > 0 && resp) {
        struct delayed_fail *d = malloc(sizeof *d);
        if (d) {
            d->resp = resp;
            p->failing = 1;
            if (cx_conn_defer(c, (uint32_t)delay, send_delayed_fail, d) == CX_OK)
                return;
            p->failing = 0;
            free(d);
        }
    }
    cx_reply_json(c, resp);
    cx_conn_close(c, CX_WS_CLOSE_POLICY, "authentication failed");
}

static bool secret_matches(mx_server *m, const char *presented)
{
    if (!m->have_secret)
        return false;
    /* Hashing both sides gives equal lengths for a constant-time compare. */
    uint8_t h[32];
    crypto_hash_sha256(h, (const unsigned char *)presented, strlen(presented));
    bool eq = sodium_memcmp(h, m->secret_hash, sizeof h) == 0;
    sodium_memzero(h, sizeof h);
    return eq;
}

static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MX_CORE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || s[i] == 0x7f)
            return false;
    return true;
}

void mx_core_auth(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_peer *p = cx_conn_data(c);
    int64_t now = cx_clock_now_ms();
    if (p->failing) {
        cx_reply_err(c, req, "AUTH_REQUIRED", "an authentication attempt is in progress");
        return;
    }
    int retry = 0;
    if (cx_ratelimit_auth_allowed(m->rl, p->ip, now, &retry) != CX_OK) {
        cx_reply_limited(c, req, retry, json_pack("{s:b}", "authenticated", 0));
        cx_conn_close(c, CX_WS_CLOSE_POLICY, "rate limited");
        return;
    }
    const char *core_id = cx_msg_payload_str(req, "coreId");
    const char *name = cx_msg_payload_str(req, "displayName");
    const char *token = cx_msg_payload_str(req, "accessToken");
    if (!core_id || !id_ok(core_id)) {
        core_fail(m, c, req, NULL, "INVALID_CREDENTIALS",
                  "coreId must be 1-128 printable characters");
        return;
    }
    if (!token || !*token) {
        core_fail(m, c, req, core_id, "INVALID_CREDENTIALS", "accessToken is required");
        return;
    }
    if (!name || !*name)
        name = core_id;
    mx_core core;
    char permanent[65] = "";
    char pairing_id[MX_ID_CHARS + 1] = "";
    const char *how = "token";
    int rc = mx_core_check_token(m->store, core_id, token, &core);
    if (rc == CX_OK && mx_pairing_consume_core(m->store, core_id) != CX_OK)
        cx_log_warn("core %s: could not mark its pairing code used", core.core_id);
    if (rc != CX_OK && cx_pairing_well_formed(token)) {
        rc = mx_pairing_redeem(m->store, token, core_id, now, pairing_id);
        if (rc == CX_E_EXPIRED) {
            core_fail(m, c, req, core_id, "PAIRING_CODE_EXPIRED",
                      "this pairing code has expired; ask an admin for a new one");
            return;
        }
        if (rc == CX_E_REPLAY) {
            core_fail(m, c, req, core_id, "PAIRING_CODE_USED",
                      "this pairing code was already used; ask an admin for a new one");
            return;
        }
        if (rc == CX_OK) {
            rc = mx_core_issue_token(m->store, core_id, name, now, permanent, &core);
            how = "pairing";
            if (rc != CX_OK) {
                cx_log_error("cannot issue a Core token: %s", cx_strerror(rc));
                cx_reply_err(c, req, "INTERNAL", "could not register the Core");
                cx_conn_close(c, CX_WS_CLOSE_INTERNAL, "internal error");
                return;
            }
        }
    }
    if (rc != CX_OK && secret_matches(m, token)) {
        how = "secret";
        rc = mx_core_by_core_id(m->store, core_id, &core);
        if (rc == CX_E_NOTFOUND) {
            /* First contact by shared secret: register the Core and hand it its own token,
             * so it can leave the shared secret behind. */
            rc = mx_core_issue_token(m->store, core_id, name, now, permanent, &core);
        }
    }
    if (rc != CX_OK) {
        if (rc == CX_E_DB || rc == CX_E_NOMEM)
            cx_log_error("Core lookup failed: %s", cx_strerror(rc));
        sodium_memzero(permanent, sizeof permanent);
        core_fail(m, c, req, core_id, "INVALID_CREDENTIALS", "invalid credentials");
        return;
    }
    mx_link *l = calloc(1, sizeof *l);
    if (!l) {
        sodium_memzero(permanent, sizeof permanent);
        cx_reply_err(c, req, "INTERNAL", "out of memory");
        return;
    }
    l->conn = c;
    memcpy(l->id, core.id, sizeof l->id);
    memcpy(l->core_id, core.core_id, sizeof l->core_id);
    snprintf(l->display_name, sizeof l->display_name, "%s",
             core.display_name[0] ? core.display_name : name);
    memcpy(l->pairing_id, pairing_id, sizeof l->pairing_id);
    if (permanent[0])
        cx_token_prefix(permanent, l->issued_prefix);

    mx_link *old = mx_link_find(m, l->id);
    if (old) {
        unregister(m, old);
        /* A push in flight moves along, so its requester stays tracked; unanswered on
         * the new link, it falls back to a manual rotation at its deadline. */
        l->push = old->push;
        old->push = NULL;
        mx_relay_link_gone(m, old);
        cx_log_info("Core %s reconnected from %s: closing its older connection", l->core_id,
                    p->ip);
        cx_conn_close(old->conn, CX_WS_CLOSE_REPLACED, "replaced by a newer connection");
    }
    mx_core now_core;
    if (mx_core_by_id(m->store, l->id, &now_core) == CX_OK)
        memcpy(l->token_prefix, now_core.token_prefix, sizeof l->token_prefix);
    p->link = l;
    p->kind = MX_PEER_CORE;
    p->strikes = 0;
    l->next = m->links;
    m->links = l;
    cx_conn_set_authenticated(c);
    cx_ratelimit_auth_succeeded(m->rl, p->ip);
    (void)mx_core_seen(m->store, l->id, now);
    char result[32];
    snprintf(result, sizeof result, "ok:%s", how);
    (void)mx_audit(m->store, now, NULL, permanent[0] ? "core.pair" : "core.auth", l->core_id,
                   p->ip, result);
    cx_log_info("Core %s (%s, %s) online from %s by %s%s", l->core_id, l->display_name, l->id,
                p->ip, how, permanent[0] ? "; permanent token issued" : "");
    json_t *payload = json_pack("{s:b, s:s, s:s}", "authenticated", 1, "maestroId",
                                m->maestro_id, "id", l->id);
    if (payload && permanent[0])
        json_object_set_new(payload, "permanentToken", json_string(permanent));
    sodium_memzero(permanent, sizeof permanent);
    cx_reply_ok(c, req, payload);
    broadcast_state(m, l, "core.online");
}

/* ---- messages from an authenticated Core ---- */

static void push_finish(mx_server *m, mx_link *l, bool acked);

/* After a token change made here: what the registry now holds is what this link knows. */
static void refresh_prefix(mx_server *m, mx_link *l)
{
    mx_core core;
    if (mx_core_by_id(m->store, l->id, &core) == CX_OK)
        memcpy(l->token_prefix, core.token_prefix, sizeof l->token_prefix);
}

void mx_cores_recheck(mx_server *m)
{
    for (mx_link *l = m->links; l; l = l->next) {
        if (l->push || cx_conn_closing(l->conn))
            continue; /* a push in flight changes the token on purpose */
        mx_core core;
        int rc = mx_core_by_id(m->store, l->id, &core);
        if (rc == CX_E_NOTFOUND) {
            cx_log_info("Core %s was removed (by an admin verb): closing its link", l->core_id);
            cx_conn_close(l->conn, CX_WS_CLOSE_ROTATED, "Core removed from Maestro");
        } else if (rc == CX_OK && strcmp(core.token_prefix, l->token_prefix) != 0) {
            cx_log_info("Core %s's token was rotated (by an admin verb): closing its link",
                        l->core_id);
            cx_conn_close(l->conn, CX_WS_CLOSE_ROTATED, "token rotated");
        }
    }
}

static void token_ack(mx_server *m, cx_conn *c, mx_link *l, const cx_msg *req)
{
    mx_peer *p = cx_conn_data(c);
    const char *prefix = cx_msg_payload_str(req, "prefix");
    if (l->issued_prefix[0] && (!prefix || strcmp(prefix, l->issued_prefix) != 0)) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "prefix does not match the token issued");
        return;
    }
    int64_t now = cx_clock_now_ms();
    int rc = mx_core_ack_token(m->store, l->core_id);
    if (rc == CX_OK && l->pairing_id[0])
        rc = mx_pairing_consume(m->store, l->pairing_id, l->core_id);
    if (rc != CX_OK && rc != CX_E_NOTFOUND) {
        cx_reply_err(c, req, "INTERNAL", "could not record the acknowledgement");
        return;
    }
    if (l->pairing_id[0])
        (void)mx_audit(m->store, now, NULL, "pairing.consume", l->core_id, p->ip, l->pairing_id);
    (void)mx_audit(m->store, now, NULL, "core.token.ack", l->core_id, p->ip,
                   l->issued_prefix[0] ? l->issued_prefix : "ok");
    l->pairing_id[0] = '\0';
    l->issued_prefix[0] = '\0';
    refresh_prefix(m, l);
    cx_reply_ok(c, req, json_pack("{s:b}", "acknowledged", 1));
}

void mx_core_message(mx_server *m, cx_conn *c, cx_msg *msg)
{
    mx_peer *p = cx_conn_data(c);
    mx_link *l = p->link;
    switch (msg->type) {
    case CX_MSG_RESPONSE:
        if (l->push && msg->correlation_id && strcmp(msg->correlation_id, l->push->rid) == 0) {
            push_finish(m, l, msg->success == 1);
            return;
        }
        (void)mx_relay_response(m, l, msg);
        return;
    case CX_MSG_EVENT:
    case CX_MSG_STREAM:
        mx_relay_event(m, l, msg);
        return;
    case CX_MSG_REQUEST:
        break;
    }
    if (strcmp(msg->ns, "maestro") == 0 && strcmp(msg->action, "token.ack") == 0) {
        token_ack(m, c, l, msg);
    } else if (strcmp(msg->ns, "core") == 0 && strcmp(msg->action, "auth") == 0) {
        /* Again on a link already signed in: fine with this Core's own credential, and
         * the end of the link with anything else (no switching identities mid-link). */
        const char *cid = cx_msg_payload_str(msg, "coreId");
        const char *tok = cx_msg_payload_str(msg, "accessToken");
        mx_core k;
        if (cid && tok && strcmp(cid, l->core_id) == 0 &&
            mx_core_check_token(m->store, cid, tok, &k) == CX_OK && strcmp(k.id, l->id) == 0) {
            cx_reply_ok(c, msg, json_pack("{s:b, s:s, s:s}", "authenticated", 1, "maestroId",
                                          m->maestro_id, "id", l->id));
        } else {
            cx_reply_json(c, cx_msg_fail(msg->ns, msg->action, msg->id, "INVALID_CREDENTIALS",
                                        "not this Core's credential", NULL,
                                        json_pack("{s:b}", "authenticated", 0)));
            cx_conn_close(c, CX_WS_CLOSE_POLICY, "invalid credentials");
        }
    } else {
        char text[300];
        snprintf(text, sizeof text, "unknown action %.128s/%.128s", msg->ns, msg->action);
        cx_reply_err(c, msg, "UNKNOWN_ACTION", text);
    }
}

void mx_core_closed(mx_server *m, cx_conn *c, mx_peer *p)
{
    (void)c;
    mx_link *l = p->link;
    p->link = NULL;
    mx_relay_link_gone(m, l);
    if (l->push)
        push_finish(m, l, false);
    if (unregister(m, l)) {
        (void)mx_core_seen(m->store, l->id, cx_clock_now_ms());
        cx_log_info("Core %s (%s) offline", l->core_id, l->display_name);
        broadcast_state(m, l, "core.offline");
    }
    free(l);
}

/* ---- admin actions ---- */

static json_t *iso_or_null(int64_t ms)
{
    if (!ms)
        return json_null();
    char at[32];
    mx_iso(ms, at);
    return json_string(at);
}

void mx_act_cores_list(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_peer *p = cx_conn_data(c);
    mx_core *arr = NULL;
    size_t n = 0;
    if (mx_core_list(m->store, &arr, &n) != CX_OK) {
        cx_reply_err(c, req, "INTERNAL", "could not list Cores");
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
        if (!mx_peer_may_see(m, p, arr[i].id))
            continue;
        mx_link *l = mx_link_find(m, arr[i].id);
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:s}", "id", arr[i].id, "coreId",
                            arr[i].core_id, "displayName", arr[i].display_name, "status",
                            l ? "online" : "offline", "lastSeenAt",
                            iso_or_null(arr[i].last_seen_at), "pairedAt",
                            iso_or_null(arr[i].paired_at), "tokenPrefix", arr[i].token_prefix));
    }
    free(arr);
    cx_reply_ok(c, req, json_pack("{s:o}", "cores", list));
}

static bool need_core(mx_server *m, cx_conn *c, const cx_msg *req, mx_core *core)
{
    const char *id = cx_msg_payload_str(req, "id");
    if (!id) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "id is required");
        return false;
    }
    int rc = strlen(id) <= MX_ID_CHARS ? mx_core_by_id(m->store, id, core) : CX_E_NOTFOUND;
    if (rc != CX_OK) {
        cx_reply_err(c, req, rc == CX_E_NOTFOUND ? "NOT_FOUND" : "INTERNAL",
                     rc == CX_E_NOTFOUND ? "no Core with this id" : "could not read the Core");
        return false;
    }
    return true;
}

static const char *actor_of(cx_conn *c)
{
    mx_peer *p = cx_conn_data(c);
    return p && p->client ? p->client->username : NULL;
}

void mx_act_cores_rename(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_core core;
    if (!need_core(m, c, req, &core))
        return;
    const char *name = cx_msg_payload_str(req, "displayName");
    if (!name || !*name || strlen(name) > MX_DISPLAY_NAME_MAX) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "displayName must have 1 to 128 characters");
        return;
    }
    if (mx_core_rename(m->store, core.id, name) != CX_OK) {
        cx_reply_err(c, req, "INTERNAL", "could not rename the Core");
        return;
    }
    mx_link *l = mx_link_find(m, core.id);
    if (l)
        snprintf(l->display_name, sizeof l->display_name, "%s", name);
    mx_peer *p = cx_conn_data(c);
    (void)mx_audit(m->store, cx_clock_now_ms(), actor_of(c), "core.rename", core.core_id, p->ip,
                   "ok");
    cx_reply_ok(c, req, json_pack("{s:s, s:s}", "id", core.id, "displayName", name));
}

void mx_act_cores_remove(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_core core;
    if (!need_core(m, c, req, &core))
        return;
    if (mx_core_remove(m->store, core.id) != CX_OK) {
        cx_reply_err(c, req, "INTERNAL", "could not remove the Core");
        return;
    }
    mx_peer *p = cx_conn_data(c);
    (void)mx_audit(m->store, cx_clock_now_ms(), actor_of(c), "core.remove", core.core_id, p->ip,
                   "ok");
    cx_log_info("Core %s (%s) removed by %s", core.core_id, core.id, actor_of(c));
    cx_reply_ok(c, req, json_pack("{s:s, s:b}", "id", core.id, "removed", 1));
    mx_link *l = mx_link_find(m, core.id);
    if (l)
        cx_conn_close(l->conn, CX_WS_CLOSE_ROTATED, "Core removed from Maestro");
}

static void rotate_reply(mx_server *m, cx_conn *admin, const char *req_id, const char *id,
                         bool pushed, const char *token)
{
    (void)m;
    if (!admin)
        return;
    json_t *payload = json_pack("{s:s, s:b}", "id", id, "pushed", pushed);
    if (payload && token)
        json_object_set_new(payload, "token", json_string(token));
    cx_reply_json(admin, cx_msg_ok("maestro", "cores.rotateToken", req_id, payload));
}

static void rotate_now(mx_server *m, cx_conn *admin, const char *req_id, const char *id,
                       const char *core_id, const char *addr, const char *who)
{
    char token[65];
    int rc = mx_core_rotate(m->store, id, true, token);
    if (rc != CX_OK) {
        if (admin)
            cx_reply_json(admin, cx_msg_fail("maestro", "cores.rotateToken", req_id,
                                            rc == CX_E_NOTFOUND ? "NOT_FOUND" : "INTERNAL",
                                            rc == CX_E_NOTFOUND ? "no Core with this id"
                                                                : "could not rotate the token",
                                            NULL, NULL));
        return;
    }
    (void)mx_audit(m->store, cx_clock_now_ms(), who, "core.rotate", core_id, addr, "ok:manual");
    cx_log_info("token of Core %s rotated; the new one must be handed over by hand", core_id);
    rotate_reply(m, admin, req_id, id, false, token);
    sodium_memzero(token, sizeof token);
}

void mx_act_cores_rotate(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_core core;
    if (!need_core(m, c, req, &core))
        return;
    mx_peer *p = cx_conn_data(c);
    mx_link *l = mx_link_find(m, core.id);
    if (!l) {
        rotate_now(m, c, req->id, core.id, core.core_id, p->ip, actor_of(c));
        return;
    }
    if (l->push) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "a rotation of this Core's token is in progress");
        return;
    }
    mx_push *push = calloc(1, sizeof *push);
    if (!push) {
        cx_reply_err(c, req, "INTERNAL", "out of memory");
        return;
    }
    char token[65];
    if (mx_core_rotate(m->store, core.id, false, token) != CX_OK) {
        free(push);
        cx_reply_err(c, req, "INTERNAL", "could not rotate the token");
        return;
    }
    snprintf(push->rid, sizeof push->rid, "mx-push-%llu", (unsigned long long)++push_counter);
    json_t *msg = cx_msg_make(CX_MSG_REQUEST, "core", "maestro.setToken",
                              json_pack("{s:s}", "token", token));
    sodium_memzero(token, sizeof token);
    if (msg)
        json_object_set_new(msg, "id", json_string(push->rid));
    size_t len = 0;
    char *text = msg ? cx_msg_encode(msg, &len) : NULL;
    json_decref(msg);
    int rc = text ? cx_conn_send_text(l->conn, text, len) : CX_E_NOMEM;
    if (text) {
        sodium_memzero(text, len);
        free(text);
    }
    push->admin = c;
    snprintf(push->admin_req_id, sizeof push->admin_req_id, "%s", req->id);
    push->deadline = uv_now(m->loop) + MX_PUSH_TIMEOUT_MS;
    l->push = push;
    (void)mx_audit(m->store, cx_clock_now_ms(), actor_of(c), "core.rotate", core.core_id, p->ip,
                   "pushing");
    if (rc != CX_OK)
        push_finish(m, l, false);
}

/* The Core answered the push (acked true), or did not in time, or went away. */
static void push_finish(mx_server *m, mx_link *l, bool acked)
{
    mx_push *push = l->push;
    l->push = NULL;
    if (acked && mx_core_ack_token(m->store, l->core_id) == CX_OK) {
        refresh_prefix(m, l);
        (void)mx_audit(m->store, cx_clock_now_ms(), NULL, "core.rotate", l->core_id, NULL,
                       "ok:pushed");
        cx_log_info("Core %s stored its new token", l->core_id);
        rotate_reply(m, push->admin, push->admin_req_id, l->id, true, NULL);
        free(push);
        return;
    }
    mx_peer *ap = push->admin ? cx_conn_data(push->admin) : NULL;
    rotate_now(m, push->admin, push->admin_req_id, l->id, l->core_id, ap ? ap->ip : NULL,
               ap && ap->client ? ap->client->username : NULL);
    free(push);
    /* Its old token is dead now: a Core still connected with it must go. */
    if (!cx_conn_closing(l->conn))
        cx_conn_close(l->conn, CX_WS_CLOSE_ROTATED, "token rotated");
}

void mx_push_client_gone(mx_server *m, cx_conn *c)
{
    for (mx_link *l = m->links; l; l = l->next)
        if (l->push && l->push->admin == c)
            l->push->admin = NULL;
}

void mx_push_sweep(mx_server *m, uint64_t now)
{
    mx_link *next;
    for (mx_link *l = m->links; l; l = next) {
        next = l->next;
        if (l->push && l->push->deadline <= now) {
            cx_log_warn("Core %s did not confirm its new token in time", l->core_id);
            push_finish(m, l, false);
        }
    }
}
