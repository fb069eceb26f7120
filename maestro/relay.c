/* Relaying clients to Cores (PROTOCOL.md section 5, "Relay"): a client request with
 * targetCoreId goes to that Core under a fresh id, with an envelope field `relay` naming
 * the user and role so the Core applies that role's scopes; the answer comes back with
 * the client's own id as correlationId and the Core's id as sourceCoreId. Unanswered
 * requests time out; a client that goes drops its entries; a Core that goes fails them. */
#include "maestro.h"

#include "condrix/error.h"
#include "condrix/limits.h"
#include "condrix/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One relayed request awaiting the Core's answer. */
typedef struct mx_pending {
    struct mx_pending *next;  /* the link's list */
    cx_conn *client;          /* who asked */
    uint64_t deadline;        /* loop time */
    char rid[24];             /* the id the Core saw */
    char *orig_id;            /* the client's id; ns and action follow in the same block */
    char *ns;
    char *action;
} mx_pending;

static const char *const read_suffixes[] = {"list", "status", "tree", "read", "diff", "log"};

bool mx_relay_is_read(const char *ns, const char *action)
{
    if (strcmp(ns, "core") == 0 && (strcmp(action, "info") == 0 || strcmp(action, "health") == 0))
        return true;
    /* "*.list" read either as an action ending in ".list" or as namespace.action with
     * the action "list": both spellings exist among the original's actions. */
    size_t n = strlen(action);
    for (size_t i = 0; i < sizeof read_suffixes / sizeof read_suffixes[0]; i++) {
        size_t k = strlen(read_suffixes[i]);
        if (strcmp(action, read_suffixes[i]) == 0)
            return true;
        if (n > k + 1 && action[n - k - 1] == '.' && strcmp(action + n - k, read_suffixes[i]) == 0)
            return true;
    }
    return false;
}

static void fail_to(cx_conn *c, const mx_pending *pd, const char *core_id, const char *message)
{
    json_t *m = cx_msg_fail(pd->ns, pd->action, pd->orig_id, "CORE_OFFLINE", message, NULL, NULL);
    if (m)
        json_object_set_new(m, "sourceCoreId", json_string(core_id));
    cx_reply_json(c, m);
}

static void pending_free(mx_pending *pd)
{
    free(pd->orig_id);
    free(pd);
}

static void client_done(cx_conn *c)
{
    mx_peer *p = c ? cx_conn_data(c) : NULL;
    if (p && p->nrelay)
        p->nrelay--;
}

static void reply_fail(cx_conn *c, const cx_msg *req, const char *code, const char *message)
{
    json_t *m = cx_msg_fail(req->ns, req->action, req->id, code, message, NULL, NULL);
    if (m && req->target_core_id)
        json_object_set_new(m, "sourceCoreId", json_string(req->target_core_id));
    cx_reply_json(c, m);
}

void mx_relay_request(mx_server *m, cx_conn *c, const cx_msg *req, bool as_admin)
{
    mx_peer *p = cx_conn_data(c);
    const char *target = req->target_core_id;
    if (!as_admin) {
        if (!mx_peer_may_see(m, p, target)) {
            reply_fail(c, req, "FORBIDDEN", "you may not use this Core");
            return;
        }
        if (!mx_relay_is_read(req->ns, req->action)) {
            reply_fail(c, req, "FORBIDDEN", "your role may only use read actions on Cores");
            return;
        }
    }
    mx_link *l = mx_link_find(m, target);
    if (!l || cx_conn_closing(l->conn)) {
        reply_fail(c, req, "CORE_OFFLINE", "the Core is not connected");
        return;
    }
    if (p->nrelay >= MX_RELAY_MAX_PER_CLIENT) {
        cx_reply_limited(c, req, 1, NULL);
        return;
    }
    mx_pending *pd = calloc(1, sizeof *pd);
    size_t a = strlen(req->id) + 1, b = strlen(req->ns) + 1, k = strlen(req->action) + 1;
    char *block = pd ? malloc(a + b + k) : NULL;
    json_t *fwd = block ? json_copy(req->root) : NULL;
    json_t *relay = NULL;
    if (fwd) {
        if (p->client)
            relay = json_pack("{s:s, s:s, s:s}", "userId", p->client->user_id, "username",
                              p->client->username, "role", mx_role_name(p->client->role));
        else
            relay = json_pack("{s:n, s:s, s:s}", "userId", "username", "(local)", "role",
                              "admin");
    }
    if (!relay) {
        json_decref(fwd);
        free(block);
        free(pd);
        reply_fail(c, req, "INTERNAL", "out of memory");
        return;
    }
    pd->orig_id = block;
    pd->ns = block + a;
    pd->action = block + a + b;
    memcpy(pd->orig_id, req->id, a);
    memcpy(pd->ns, req->ns, b);
    memcpy(pd->action, req->action, k);
    /* Unique per sender, as PROTOCOL section 2 asks: a tag of this run, then a counter
     * shared by every link, so a Core never sees an id twice across reconnects. */
    snprintf(pd->rid, sizeof pd->rid, "mx-%08x-%llu", (unsigned)m->run_tag,
             (unsigned long long)(++m->relay_seq % 100000000000ULL));
    json_object_set_new(fwd, "id", json_string(pd->rid));
    json_object_del(fwd, "targetCoreId");
    json_object_set_new(fwd, "relay", relay);
    size_t len;
    char *text = cx_msg_encode(fwd, &len);
    json_decref(fwd);
    if (text && len > CX_RELAY_MAX_MESSAGE_BYTES) {
        /* Re-encoding can grow a message (numbers written out in full, `relay` added);
         * past what a Core's link takes it would cost the Core its link. */
        free(text);
        pending_free(pd);
        reply_fail(c, req, "INVALID_ARGUMENT",
                   "the request is too large to relay once re-encoded; send less");
        return;
    }
    int rc = text ? cx_conn_send_text(l->conn, text, len) : CX_E_NOMEM;
    free(text);
    if (rc != CX_OK) {
        pending_free(pd);
        reply_fail(c, req, "CORE_OFFLINE", "the Core is not connected");
        return;
    }
    pd->client = c;
    pd->deadline = uv_now(m->loop) + MX_RELAY_TIMEOUT_MS;
    pd->next = l->pending;
    l->pending = pd;
    p->nrelay++;
}

bool mx_relay_response(mx_server *m, mx_link *l, cx_msg *msg)
{
    (void)m;
    if (!msg->correlation_id)
        return false;
    for (mx_pending **pp = &l->pending; *pp; pp = &(*pp)->next) {
        mx_pending *pd = *pp;
        if (strcmp(pd->rid, msg->correlation_id) != 0)
            continue;
        *pp = pd->next;
        json_object_set_new(msg->root, "correlationId", json_string(pd->orig_id));
        json_object_set_new(msg->root, "sourceCoreId", json_string(l->id));
        json_object_del(msg->root, "relay");
        size_t len;
        char *text = cx_msg_encode(msg->root, &len);
        if (text) {
            (void)cx_conn_send_text(pd->client, text, len);
            free(text);
        } else {
            fail_to(pd->client, pd, l->id, "the Core's answer could not be forwarded");
        }
        client_done(pd->client);
        pending_free(pd);
        return true;
    }
    return false;
}


void mx_relay_event(mx_server *m, mx_link *l, cx_msg *msg)
{
    json_object_set_new(msg->root, "sourceCoreId", json_string(l->id));
    size_t len;
    char *text = cx_msg_encode(msg->root, &len);
    if (!text)
        return;
    mx_send_to_viewers(m, l->id, text, len);
    free(text);
}

void mx_relay_client_gone(mx_server *m, cx_conn *c)
{
    for (mx_link *l = m->links; l; l = l->next) {
        for (mx_pending **pp = &l->pending; *pp;) {
            mx_pending *pd = *pp;
            if (pd->client == c) {
                *pp = pd->next;
                pending_free(pd);
            } else {
                pp = &pd->next;
            }
        }
    }
}

/* Answer and free a detached list. Sending may close a client (slow consumer) and so
 * edit the links' lists, which is why entries are detached before anyone is answered. */
static void fail_all(mx_pending *list, const char *core_id, const char *message)
{
    while (list) {
        mx_pending *pd = list;
        list = pd->next;
        fail_to(pd->client, pd, core_id, message);
        client_done(pd->client);
        pending_free(pd);
    }
}

void mx_relay_link_gone(mx_server *m, mx_link *l)
{
    (void)m;
    mx_pending *list = l->pending;
    l->pending = NULL;
    fail_all(list, l->id, "the Core disconnected before answering");
}

void mx_relay_sweep(mx_server *m, uint64_t now)
{
    for (mx_link *l = m->links; l; l = l->next) {
        mx_pending *expired = NULL;
        for (mx_pending **pp = &l->pending; *pp;) {
            mx_pending *pd = *pp;
            if (pd->deadline > now) {
                pp = &pd->next;
                continue;
            }
            *pp = pd->next;
            pd->next = expired;
            expired = pd;
        }
        fail_all(expired, l->id, "the Core did not answer in time");
    }
}
