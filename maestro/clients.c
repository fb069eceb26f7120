/* The client side of Maestro (PROTOCOL.md section 5): sign-in by password (+TOTP) or
 * session token, the session re-check on every request, own sessions and TOTP, and the
 * admin actions on users and pairing codes. Argon2id never runs on the loop: password
 * work goes to the libuv thread pool through a small queue with a fixed concurrency. */
#include "maestro.h"

#include "condrix/clock.h"
#include "condrix/error.h"
#include "condrix/limits.h"
#include "condrix/log.h"
#include "condrix/password.h"
#include "condrix/totp.h"
#include "condrix/ws.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum job_kind { JOB_LOGIN, JOB_CHANGE_PW, JOB_TOTP_DISABLE, JOB_USER_CREATE, JOB_RESET_PW };

/* One password operation: inputs copied out of the request (which is gone by the time
 * the thread pool is done), outputs filled by the worker. */
typedef struct mx_job {
    uv_work_t work;                        /* libuv's request; data unused */
    struct mx_job *next;                   /* the waiting queue */
    mx_server *m;
    cx_conn *conn;                         /* NULL once the connection closed */
    int kind;                              /* enum job_kind */
    bool queued;                           /* in the waiting queue (not yet running) */
    const char *action;                    /* static action name, for the answer */
    char req_id[CX_MSG_MAX_ID_CHARS + 1];  /* the request's id */
    char *password;                        /* verified, or hashed when make_hash alone */
    char *new_password;                    /* hashed after a successful verify */
    char hash[CX_PASSWORD_HASH_MAX];       /* stored hash to verify against */
    char new_hash[CX_PASSWORD_HASH_MAX];   /* output of make_hash */
    bool verify, make_hash;                /* what the worker does */
    int verify_rc, hash_rc;                /* worker results */
    bool generated;                        /* the password was generated: show it once */
    bool found;                            /* login: the user exists */
    bool totp_given;                       /* login: a totpCode was sent */
    char totp[8];                          /* login: the code, as sent (capped) */
    char name_key[64];                     /* login: lowercased username, rate limit key */
    mx_user user;                          /* the user concerned */
    int role;                              /* users.create */
} mx_job;

typedef void (*action_fn)(mx_server *m, cx_conn *c, const cx_msg *req);

/* ---- small helpers ---- */

static mx_peer *peer_of(cx_conn *c)
{
    return cx_conn_data(c);
}

static json_t *user_json(const mx_user *u)
{
    char at[32];
    mx_iso(u->created_at, at);
    return json_pack("{s:s, s:s, s:s, s:s, s:b}", "id", u->id, "username", u->username, "role",
                     mx_role_name(u->role), "createdAt", at, "totpEnabled", u->totp_enabled);
}

static json_t *user_brief(const mx_user *u)
{
    return json_pack("{s:s, s:s, s:s}", "id", u->id, "username", u->username, "role",
                     mx_role_name(u->role));
}

static const char *actor(cx_conn *c)
{
    mx_peer *p = peer_of(c);
    return p && p->client ? p->client->username : NULL;
}

static void audit(mx_server *m, cx_conn *c, const char *action, const char *target,
                  const char *result)
{
    mx_peer *p = c ? peer_of(c) : NULL;
    (void)mx_audit(m->store, cx_clock_now_ms(), c ? actor(c) : NULL, action, target,
                   p ? p->ip : NULL, result);
}

static int parse_role(const cx_msg *req, int def, int *out)
{
    json_t *v = json_object_get(req->payload, "role");
    if (!v || json_is_null(v)) {
        *out = def;
        return CX_OK;
    }
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    if (strcmp(s, "admin") == 0)
        *out = MX_ROLE_ADMIN;
    else if (strcmp(s, "user") == 0)
        *out = MX_ROLE_USER;
    else
        return CX_E_INVAL;
    return CX_OK;
}

static bool password_ok(const char *pw)
{
    size_t n = strlen(pw);
    return n >= CX_PASSWORD_MIN_CHARS && n <= CX_PASSWORD_MAX_CHARS;
}

static void reply_bad_password(cx_conn *c, const cx_msg *req)
{
    char msg[96];
    snprintf(msg, sizeof msg, "passwords have %d to %d characters", CX_PASSWORD_MIN_CHARS,
             CX_PASSWORD_MAX_CHARS);
    cx_reply_err(c, req, "INVALID_ARGUMENT", msg);
}

static void wipe_free(char *s)
{
    if (s) {
        sodium_memzero(s, strlen(s));
        free(s);
    }
}

/* ---- the password job queue ---- */

static void job_free(mx_job *j)
{
    wipe_free(j->password);
    wipe_free(j->new_password);
    sodium_memzero(j, sizeof *j);
    free(j);
}

static void job_work(uv_work_t *w)
{
    mx_job *j = (mx_job *)w;
    j->verify_rc = CX_OK;
    j->hash_rc = CX_OK;
    if (j->verify)
        j->verify_rc = cx_password_verify(j->hash, j->password);
    if (j->make_hash && j->verify_rc == CX_OK)
        j->hash_rc = cx_password_hash(j->new_password ? j->new_password : j->password,
                                      j->new_hash);
}

static void job_done(mx_job *j);
static void job_after(uv_work_t *w, int status);

static void job_start(mx_server *m, mx_job *j)
{
    m->hashing++;
    if (uv_queue_work(m->loop, &j->work, job_work, job_after) != 0) {
        m->hashing--;
        j->verify_rc = j->hash_rc = CX_E_NOMEM;
        job_done(j);
    }
}

static void pump(mx_server *m)
{
    while (m->hashing < CX_MAESTRO_HASH_CONCURRENCY && m->queue_head) {
        mx_job *j = m->queue_head;
        m->queue_head = j->next;
        if (!m->queue_head)
            m->queue_tail = NULL;
        m->queued--;
        j->queued = false;
        j->next = NULL;
        job_start(m, j);
    }
}

static void job_after(uv_work_t *w, int status)
{
    mx_job *j = (mx_job *)w;
    mx_server *m = j->m;
    m->hashing--;
    if (status != 0)
        j->verify_rc = j->hash_rc = CX_E_NOMEM;
    job_done(j);
    if (!m->stopping)
        pump(m);
}

/* Room for one more job? Otherwise answer RATE_LIMITED. */
static bool job_room(mx_server *m, cx_conn *c, const cx_msg *req, json_t *fail_payload)
{
    mx_peer *p = peer_of(c);
    if (p->job || p->failing) {
        cx_reply_json(c, cx_msg_fail(req->ns, req->action, req->id, "RATE_LIMITED",
                                    "another password check is in progress on this connection",
                                    json_pack("{s:i}", "retryAfter", 1), fail_payload));
        return false;
    }
    if (m->hashing >= CX_MAESTRO_HASH_CONCURRENCY && m->queued >= CX_MAESTRO_HASH_QUEUE) {
        cx_reply_json(c, cx_msg_fail(req->ns, req->action, req->id, "RATE_LIMITED",
                                    "the server is busy checking passwords; try again shortly",
                                    json_pack("{s:i}", "retryAfter", 1), fail_payload));
        return false;
    }
    json_decref(fail_payload);
    return true;
}

static mx_job *job_new(mx_server *m, cx_conn *c, const cx_msg *req, int kind,
                       const char *action)
{
    mx_job *j = calloc(1, sizeof *j);
    if (!j) {
        cx_reply_err(c, req, "INTERNAL", "out of memory");
        return NULL;
    }
    j->m = m;
    j->conn = c;
    j->kind = kind;
    j->action = action;
    snprintf(j->req_id, sizeof j->req_id, "%s", req->id);
    return j;
}

static void job_submit(mx_server *m, mx_job *j)
{
    peer_of(j->conn)->job = j;
    if (m->hashing < CX_MAESTRO_HASH_CONCURRENCY) {
        job_start(m, j);
        return;
    }
    j->queued = true;
    if (m->queue_tail)
        m->queue_tail->next = j;
    else
        m->queue_head = j;
    m->queue_tail = j;
    m->queued++;
}

void mx_jobs_detach(mx_server *m, mx_peer *p)
{
    mx_job *j = p->job;
    if (!j)
        return;
    p->job = NULL;
    j->conn = NULL;
    if (!j->queued)
        return; /* running: job_after frees it */
    mx_job **pp = &m->queue_head;
    mx_job *prev = NULL;
    while (*pp && *pp != j) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = j->next;
        if (m->queue_tail == j)
            m->queue_tail = prev;
        m->queued--;
    }
    job_free(j);
}

static void job_ok(mx_job *j, json_t *payload)
{
    cx_reply_json(j->conn, cx_msg_ok("maestro", j->action, j->req_id, payload));
}

static void job_err(mx_job *j, const char *code, const char *message)
{
    cx_reply_json(j->conn, cx_msg_fail("maestro", j->action, j->req_id, code, message, NULL, NULL));
}

/* ---- failed sign-ins: answered after the rate limiter's growing delay ---- */

struct delayed {
    json_t *resp; /* the answer, sent after the delay */
};

static void send_delayed(cx_conn *c, void *arg)
{
    struct delayed *d = arg;
    if (c) {
        mx_peer *p = peer_of(c);
        if (p)
            p->failing = 0;
        cx_reply_json(c, d->resp);
        mx_peer_resume(cx_server_data(cx_conn_server(c)), c);
    } else {
        json_decref(d->resp);
    }
    free(d);
}

/* A failed sign-in or password check. Counted per address and, for logins, per
 * username; the connection stays open (a browser retries on it). */
static void signin_fail(mx_server *m, cx_conn *c, const char *action, const char *req_id,
                        const char *code, const char *message, const char *name_key,
                        json_t *payload)
{
    mx_peer *p = peer_of(c);
    int64_t now = cx_clock_now_ms();
    bool blocked = false, ublocked = false;
    int delay = cx_ratelimit_auth_failed(m->rl, p->ip, now, &blocked);
    if (name_key) {
        int d2 = cx_ratelimit_auth_failed(m->rl_user, name_key, now, &ublocked);
        if (d2 > delay)
            delay = d2;
    }
    cx_log_info("%s failed from %s: %s%s%s", action, p->ip, code,
                blocked ? " (address now blocked)" : "",
                ublocked ? " (username now blocked)" : "");
    json_t *resp = cx_msg_fail("maestro", action, req_id, code, message, NULL, payload);
    if (delay > 0 && resp) {
        struct delayed *d = malloc(sizeof *d);
        if (d) {
            d->resp = resp;
            p->failing = 1;
            if (cx_conn_defer(c, (uint32_t)delay, send_delayed, d) == CX_OK)
                return;
            p->failing = 0;
            free(d);
        }
    }
    cx_reply_json(c, resp);
}

static json_t *unauth_payload(void)
{
    return json_pack("{s:b}", "authenticated", 0);
}

/* Both limiters must allow: the address, and (for logins) the username. */
static bool signin_allowed(mx_server *m, cx_conn *c, const cx_msg *req, const char *name_key)
{
    mx_peer *p = peer_of(c);
    int64_t now = cx_clock_now_ms();
    int r1 = 0, r2 = 0;
    bool ok1 = cx_ratelimit_auth_allowed(m->rl, p->ip, now, &r1) == CX_OK;
    bool ok2 = !name_key || cx_ratelimit_auth_allowed(m->rl_user, name_key, now, &r2) == CX_OK;
    if (ok1 && ok2)
        return true;
    cx_reply_limited(c, req, r1 > r2 ? r1 : r2, unauth_payload());
    return false;
}

/* ---- becoming a signed-in client ---- */

static void sign_in(mx_server *m, cx_conn *c, const mx_user *u, const mx_session *s,
                    const char *token, const char *name_key)
{
    mx_peer *p = peer_of(c);
    if (!p->client) {
        p->client = calloc(1, sizeof *p->client);
        if (!p->client)
            return;
    }
    mx_client *cl = p->client;
    memcpy(cl->user_id, u->id, sizeof cl->user_id);
    memcpy(cl->username, u->username, sizeof cl->username);
    memcpy(cl->session_id, s->id, sizeof cl->session_id);
    cx_token_hash(token, cl->token_hash);
    cl->role = u->role;
    cl->touched_at = cx_clock_now_ms();
    p->kind = MX_PEER_CLIENT;
    p->strikes = 0;
    cx_conn_set_authenticated(c);
    cx_ratelimit_auth_succeeded(m->rl, p->ip);
    if (name_key)
        cx_ratelimit_auth_succeeded(m->rl_user, name_key);
}

/* ---- login ---- */

static void login_done(mx_job *j)
{
    mx_server *m = j->m;
    cx_conn *c = j->conn;
    mx_peer *p = peer_of(c);
    if (j->verify_rc != CX_OK || !j->found) {
        if (j->verify_rc != CX_E_DENIED && j->verify_rc != CX_OK)
            cx_log_error("password verification failed: %s", cx_strerror(j->verify_rc));
        (void)mx_audit(m->store, cx_clock_now_ms(), j->found ? j->user.username : NULL, "login",
                       NULL, p->ip, j->found ? "fail:password" : "fail:unknown-user");
        signin_fail(m, c, "login", j->req_id, "INVALID_CREDENTIALS",
                    "wrong username or password", j->name_key, unauth_payload());
        return;
    }
    int64_t now = cx_clock_now_ms();
    if (j->user.totp_enabled) {
        if (!j->totp_given) {
            (void)mx_audit(m->store, now, j->user.username, "login", NULL, p->ip,
                           "totp-required");
            cx_reply_json(c, cx_msg_fail("maestro", "login", j->req_id, "TOTP_REQUIRED",
                                        "this account needs a TOTP code",
                                        NULL,
                                        json_pack("{s:b, s:b}", "authenticated", 0,
                                                  "requiresTotp", 1)));
            return;
        }
        int rc = mx_user_totp_check(m->store, j->user.id, j->totp, now / 1000, false);
        if (rc != CX_OK) {
            (void)mx_audit(m->store, now, j->user.username, "login", NULL, p->ip,
                           rc == CX_E_REPLAY ? "fail:totp-replay" : "fail:totp");
            signin_fail(m, c, "login", j->req_id, "INVALID_TOTP",
                        rc == CX_E_REPLAY ? "this code was already used; wait for the next one"
                                          : "wrong TOTP code",
                        j->name_key, json_pack("{s:b, s:b}", "authenticated", 0,
                                               "requiresTotp", 1));
            return;
        }
    }
    char token[65];
    mx_session s;
    int rc = mx_session_create(m->store, j->user.id, p->ip, p->user_agent ? p->user_agent : "",
                               now, token, &s);
    if (rc != CX_OK) {
        cx_log_error("cannot create a session: %s", cx_strerror(rc));
        job_err(j, "INTERNAL", "could not create a session");
        return;
    }
    sign_in(m, c, &j->user, &s, token, j->name_key);
    if (!p->client) {
        sodium_memzero(token, sizeof token);
        job_err(j, "INTERNAL", "out of memory");
        return;
    }
    (void)mx_audit(m->store, now, j->user.username, "login", s.id, p->ip, "ok");
    cx_log_info("user %s signed in from %s (session %s)", j->user.username, p->ip, s.id);
    char exp[32];
    mx_iso(s.expires_at, exp);
    json_t *payload = json_pack("{s:b, s:s, s:s, s:o}", "authenticated", 1, "sessionToken", token,
                                "expiresAt", exp, "user", user_brief(&j->user));
    sodium_memzero(token, sizeof token);
    job_ok(j, payload);
}

static void handle_login(mx_server *m, cx_conn *c, const cx_msg *req)
{
    const char *username = cx_msg_payload_str(req, "username");
    const char *password = cx_msg_payload_str(req, "password");
    if (!username || !*username || !password) {
        cx_reply_json(c, cx_msg_fail(req->ns, req->action, req->id, "INVALID_ARGUMENT",
                                    "username and password are required", NULL,
                                    unauth_payload()));
        return;
    }
    char key[64];
    size_t k = 0;
    for (; username[k] && k < sizeof key - 1; k++)
        key[k] = (char)tolower((unsigned char)username[k]);
    key[k] = '\0';
    if (!signin_allowed(m, c, req, key))
        return;
    if (!job_room(m, c, req, unauth_payload()))
        return;
    mx_job *j = job_new(m, c, req, JOB_LOGIN, "login");
    if (!j)
        return;
    memcpy(j->name_key, key, sizeof key);
    json_t *code = json_object_get(req->payload, "totpCode");
    if (code && !json_is_null(code) && !(json_is_string(code) && json_string_length(code) == 0)) {
        j->totp_given = true;
        /* Anything but a short string is kept as a value the check will refuse. */
        if (json_is_string(code) && json_string_length(code) < sizeof j->totp)
            snprintf(j->totp, sizeof j->totp, "%s", json_string_value(code));
        else
            snprintf(j->totp, sizeof j->totp, "x");
    }
    int rc = strlen(username) <= MX_USERNAME_MAX
                 ? mx_user_by_name(m->store, username, &j->user, j->hash)
                 : CX_E_NOTFOUND;
    if (rc == CX_OK) {
        j->found = true;
    } else {
        if (rc != CX_E_NOTFOUND)
            cx_log_error("user lookup failed: %s", cx_strerror(rc));
        memcpy(j->hash, m->dummy_hash, sizeof j->hash);
    }
    /* Over-long passwords are verified as the empty string: same cost, certain refusal. */
    j->password = strdup(strlen(password) <= CX_PASSWORD_MAX_CHARS ? password : "");
    if (!j->password) {
        job_free(j);
        cx_reply_err(c, req, "INTERNAL", "out of memory");
        return;
    }
    if (strlen(password) > CX_PASSWORD_MAX_CHARS)
        j->found = false;
    j->verify = true;
    job_submit(m, j);
}

/* ---- auth by session token ---- */

static void handle_session_auth(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_peer *p = peer_of(c);
    if (p->failing || p->job) {
        cx_reply_limited(c, req, 1, unauth_payload());
        return;
    }
    if (!signin_allowed(m, c, req, NULL))
        return;
    const char *token = cx_msg_payload_str(req, "sessionToken");
    if (!token || !*token) {
        signin_fail(m, c, "auth", req->id, "INVALID_SESSION", "sessionToken is required", NULL,
                    unauth_payload());
        return;
    }
    int64_t now = cx_clock_now_ms();
    mx_session s;
    mx_user u;
    int rc = mx_session_check(m->store, token, now, &s);
    if (rc == CX_OK)
        rc = mx_user_by_id(m->store, s.user_id, &u, NULL) == CX_OK ? CX_OK : CX_E_NOTFOUND;
    if (rc == CX_E_EXPIRED) {
        signin_fail(m, c, "auth", req->id, "SESSION_EXPIRED",
                    "this session has expired; sign in again", NULL, unauth_payload());
        return;
    }
    if (rc == CX_E_DB || rc == CX_E_NOMEM) {
        cx_reply_err(c, req, "INTERNAL", "could not check the session");
        return;
    }
    if (rc != CX_OK) {
        signin_fail(m, c, "auth", req->id, "INVALID_SESSION", "unknown or revoked session", NULL,
                    unauth_payload());
        return;
    }
    sign_in(m, c, &u, &s, token, NULL);
    if (!p->client) {
        cx_reply_err(c, req, "INTERNAL", "out of memory");
        return;
    }
    (void)mx_session_touch(m->store, s.id, now);
    cx_log_info("user %s resumed session %s from %s", u.username, s.id, p->ip);
    char exp[32];
    mx_iso(s.expires_at, exp);
    cx_reply_ok(c, req, json_pack("{s:b, s:s, s:o}", "authenticated", 1, "expiresAt", exp, "user",
                                  user_brief(&u)));
}

bool mx_client_session_ok(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_peer *p = peer_of(c);
    mx_client *cl = p->client;
    int64_t now = cx_clock_now_ms();
    mx_session s;
    mx_user u;
    int rc = mx_session_check_hash(m->store, cl->token_hash, now, &s, &u);
    if (rc == CX_E_DB || rc == CX_E_NOMEM) {
        cx_reply_err(c, req, "INTERNAL", "could not check the session");
        return false;
    }
    if (rc != CX_OK) {
        bool expired = rc == CX_E_EXPIRED;
        cx_reply_err(c, req, expired ? "SESSION_EXPIRED" : "INVALID_SESSION",
                     expired ? "this session has expired; sign in again"
                             : "this session was revoked; sign in again");
        cx_conn_close(c, CX_WS_CLOSE_SESSION, expired ? "session expired" : "session revoked");
        return false;
    }
    cl->role = u.role;
    memcpy(cl->username, u.username, sizeof cl->username);
    if (now - cl->touched_at >= MX_SESSION_TOUCH_MS) {
        cl->touched_at = now;
        (void)mx_session_touch(m->store, s.id, now);
    }
    return true;
}

/* ---- own session and password ---- */

static void act_logout(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_peer *p = peer_of(c);
    mx_client *cl = p->client;
    if (mx_session_revoke_hash(m->store, cl->token_hash) != CX_OK) {
        cx_reply_err(c, req, "INTERNAL", "could not end the session");
        return;
    }
    audit(m, c, "logout", cl->session_id, "ok");
    cx_log_info("user %s signed out (session %s)", cl->username, cl->session_id);
    mx_close_user_conns(m, cl->user_id, cl->session_id, NULL, c, CX_WS_CLOSE_SESSION,
                        "logged out");
    mx_push_client_gone(m, c);
    /* This connection stays open, signed out, so the page can sign in again. */
    sodium_memzero(cl, sizeof *cl);
    free(cl);
    p->client = NULL;
    p->kind = MX_PEER_NEW;
    cx_reply_ok(c, req, json_pack("{s:b}", "loggedOut", 1));
}

static void act_change_password(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_peer *p = peer_of(c);
    const char *oldpw = cx_msg_payload_str(req, "oldPassword");
    const char *newpw = cx_msg_payload_str(req, "newPassword");
    if (!oldpw || !newpw) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "oldPassword and newPassword are required");
        return;
    }
    if (!password_ok(newpw)) {
        reply_bad_password(c, req);
        return;
    }
    if (!signin_allowed(m, c, req, NULL) || !job_room(m, c, req, NULL))
        return;
    mx_job *j = job_new(m, c, req, JOB_CHANGE_PW, "auth.changePassword");
    if (!j)
        return;
    if (mx_user_by_id(m->store, p->client->user_id, &j->user, j->hash) != CX_OK) {
        job_free(j);
        cx_reply_err(c, req, "INTERNAL", "could not read the user");
        return;
    }
    j->password = strdup(strlen(oldpw) <= CX_PASSWORD_MAX_CHARS ? oldpw : "");
    j->new_password = strdup(newpw);
    if (!j->password || !j->new_password) {
        job_free(j);
        cx_reply_err(c, req, "INTERNAL", "out of memory");
        return;
    }
    j->verify = j->make_hash = true;
    job_submit(m, j);
}

/* A job that checked the signed-in user's own password: the client, or NULL once the
 * request is answered (signed out meanwhile, or a wrong password, audited as event). */
static mx_client *own_password_checked(mx_job *j, const char *event, const char *wrong)
{
    mx_client *cl = peer_of(j->conn)->client;
    if (!cl) {
        job_err(j, "AUTH_REQUIRED", "signed out meanwhile");
        return NULL;
    }
    if (j->verify_rc != CX_OK) {
        audit(j->m, j->conn, event, cl->username, "fail");
        signin_fail(j->m, j->conn, j->action, j->req_id, "INVALID_CREDENTIALS", wrong, NULL, NULL);
        return NULL;
    }
    return cl;
}

static void change_password_done(mx_job *j)
{
    mx_server *m = j->m;
    cx_conn *c = j->conn;
    mx_client *cl = own_password_checked(j, "password.change", "the old password is wrong");
    if (!cl)
        return;
    if (j->hash_rc != CX_OK ||
        mx_user_set_password(m->store, cl->user_id, j->new_hash, cl->session_id) != CX_OK) {
        job_err(j, "INTERNAL", "could not change the password");
        return;
    }
    audit(m, c, "password.change", cl->username, "ok");
    cx_log_info("user %s changed their password; other sessions revoked", cl->username);
    /* The store kept this session alive; every other one is dead. */
    mx_close_user_conns(m, cl->user_id, NULL, cl->session_id, c, CX_WS_CLOSE_SESSION,
                        "password changed");
    job_ok(j, json_pack("{s:b}", "changed", 1));
}

/* ---- own TOTP ---- */

static void act_totp_status(mx_server *m, cx_conn *c, const cx_msg *req)
{
    uint8_t a[64], pend[64];
    size_t an = sizeof a, pn = sizeof pend;
    bool enabled = false;
    int rc = mx_user_totp_get(m->store, peer_of(c)->client->user_id, a, &an, pend, &pn, &enabled);
    sodium_memzero(a, sizeof a);
    sodium_memzero(pend, sizeof pend);
    if (rc != CX_OK) {
        cx_reply_err(c, req, "INTERNAL", "could not read the TOTP state");
        return;
    }
    cx_reply_ok(c, req, json_pack("{s:b, s:b}", "enabled", enabled, "pending", !enabled && pn > 0));
}

static void act_totp_setup(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_client *cl = peer_of(c)->client;
    uint8_t a[64], pend[64];
    size_t an = sizeof a, pn = sizeof pend;
    bool enabled = false;
    int rc = mx_user_totp_get(m->store, cl->user_id, a, &an, pend, &pn, &enabled);
    sodium_memzero(a, sizeof a);
    sodium_memzero(pend, sizeof pend);
    if (rc != CX_OK) {
        cx_reply_err(c, req, "INTERNAL", "could not read the TOTP state");
        return;
    }
    if (enabled) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "TOTP is already enabled; disable it first");
        return;
    }
    uint8_t secret[CX_TOTP_SECRET_BYTES];
    char b32[64];
    cx_totp_new_secret(secret);
    cx_base32_encode(secret, sizeof secret, b32, sizeof b32);
    rc = mx_user_totp_set_pending(m->store, cl->user_id, secret, sizeof secret);
    sodium_memzero(secret, sizeof secret);
    char *uri = rc == CX_OK ? cx_totp_uri("Condrix Maestro", cl->username, b32) : NULL;
    char *svg = uri ? cx_qr_svg(uri) : NULL;
    if (!uri || !svg) {
        sodium_memzero(b32, sizeof b32);
        wipe_free(uri);
        wipe_free(svg);
        cx_reply_err(c, req, "INTERNAL", "could not set up TOTP");
        return;
    }
    json_t *payload = json_pack("{s:s, s:s, s:s}", "secret", b32, "otpauthUri", uri, "qrSvg", svg);
    sodium_memzero(b32, sizeof b32);
    wipe_free(uri);
    wipe_free(svg);
    audit(m, c, "totp.setup", cl->username, "ok");
    cx_reply_ok(c, req, payload);
}

static void act_totp_enable(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_client *cl = peer_of(c)->client;
    const char *code = cx_msg_payload_str(req, "code");
    if (!code) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "code is required");
        return;
    }
    uint8_t a[64], pend[64];
    size_t an = sizeof a, pn = sizeof pend;
    bool enabled = false;
    int rc = mx_user_totp_get(m->store, cl->user_id, a, &an, pend, &pn, &enabled);
    sodium_memzero(a, sizeof a);
    sodium_memzero(pend, sizeof pend);
    if (rc == CX_OK && enabled) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "TOTP is already enabled");
        return;
    }
    if (rc == CX_OK)
        rc = mx_user_totp_check(m->store, cl->user_id, code, cx_clock_now_ms() / 1000, true);
    if (rc == CX_E_INVAL) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "run auth.totp.setup first");
    } else if (rc == CX_E_FORMAT || rc == CX_E_DENIED || rc == CX_E_REPLAY) {
        audit(m, c, "totp.enable", cl->username, "denied");
        cx_reply_err(c, req, "INVALID_TOTP", "wrong TOTP code");
    } else if (rc != CX_OK) {
        cx_reply_err(c, req, "INTERNAL", "could not enable TOTP");
    } else {
        audit(m, c, "totp.enable", cl->username, "ok");
        cx_reply_ok(c, req, json_pack("{s:b}", "enabled", 1));
    }
}

static void act_totp_disable(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_peer *p = peer_of(c);
    const char *pw = cx_msg_payload_str(req, "password");
    if (!pw) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "password is required");
        return;
    }
    if (!signin_allowed(m, c, req, NULL) || !job_room(m, c, req, NULL))
        return;
    mx_job *j = job_new(m, c, req, JOB_TOTP_DISABLE, "auth.totp.disable");
    if (!j)
        return;
    if (mx_user_by_id(m->store, p->client->user_id, &j->user, j->hash) != CX_OK ||
        !(j->password = strdup(strlen(pw) <= CX_PASSWORD_MAX_CHARS ? pw : ""))) {
        job_free(j);
        cx_reply_err(c, req, "INTERNAL", "could not read the user");
        return;
    }
    j->verify = true;
    job_submit(m, j);
}

static void totp_disable_done(mx_job *j)
{
    mx_server *m = j->m;
    cx_conn *c = j->conn;
    mx_client *cl = own_password_checked(j, "totp.disable", "wrong password");
    if (!cl)
        return;
    if (mx_user_totp_disable(m->store, cl->user_id) != CX_OK) {
        job_err(j, "INTERNAL", "could not disable TOTP");
        return;
    }
    audit(m, c, "totp.disable", cl->username, "ok");
    job_ok(j, json_pack("{s:b}", "enabled", 0));
}

/* ---- own sessions ---- */

static void act_sessions_list(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_client *cl = peer_of(c)->client;
    mx_session *arr = NULL;
    size_t n = 0;
    if (mx_session_list(m->store, cl->user_id, &arr, &n) != CX_OK) {
        cx_reply_err(c, req, "INTERNAL", "could not list sessions");
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
        char cr[32], ex[32], ls[32];
        mx_iso(arr[i].created_at, cr);
        mx_iso(arr[i].expires_at, ex);
        mx_iso(arr[i].last_seen_at ? arr[i].last_seen_at : arr[i].created_at, ls);
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "id", arr[i].id, "createdAt",
                            cr, "expiresAt", ex, "lastSeenAt", ls, "ip", arr[i].ip, "userAgent",
                            arr[i].user_agent, "current",
                            strcmp(arr[i].id, cl->session_id) == 0));
    }
    free(arr);
    cx_reply_ok(c, req, json_pack("{s:o}", "sessions", list));
}

static void act_sessions_revoke(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_client *cl = peer_of(c)->client;
    const char *id = cx_msg_payload_str(req, "id");
    if (!id) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "id is required");
        return;
    }
    int rc = mx_session_revoke_id(m->store, cl->user_id, id);
    if (rc == CX_E_NOTFOUND) {
        cx_reply_err(c, req, "NOT_FOUND", "no session of yours with this id");
        return;
    }
    if (rc != CX_OK) {
        cx_reply_err(c, req, "INTERNAL", "could not revoke the session");
        return;
    }
    audit(m, c, "session.revoke", id, "ok");
    bool own = strcmp(id, cl->session_id) == 0;
    char uid[MX_ID_CHARS + 1];
    memcpy(uid, cl->user_id, sizeof uid);
    cx_reply_ok(c, req, json_pack("{s:s, s:b}", "id", id, "revoked", 1));
    mx_close_user_conns(m, uid, id, NULL, own ? NULL : c, CX_WS_CLOSE_SESSION, "session revoked");
}

/* ---- users (admin) ---- */

static void act_users_list(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_user *arr = NULL;
    mx_grant_row *grants = NULL;
    size_t n = 0, ng = 0;
    if (mx_user_list(m->store, &arr, &n) != CX_OK || mx_grant_list(m->store, &grants, &ng) != CX_OK) {
        free(arr);
        cx_reply_err(c, req, "INTERNAL", "could not list users");
        return;
    }
    /* Each user with the Cores granted to it (Maestro ids); grants come sorted by user. */
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
        json_t *u = user_json(&arr[i]), *cores = json_array();
        size_t lo = 0, hi = ng; /* the first grant of this user */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (strcmp(grants[mid].user_id, arr[i].id) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t k = lo; cores && k < ng && strcmp(grants[k].user_id, arr[i].id) == 0; k++)
            json_array_append_new(cores, json_string(grants[k].core_id));
        json_object_set_new(u, "cores", cores);
        json_array_append_new(list, u);
    }
    free(arr);
    free(grants);
    cx_reply_ok(c, req, json_pack("{s:o}", "users", list));
}

/* The new password: the one given as `password` (or `newPassword`, the spelling of
 * auth.changePassword), checked, or else a generated one shown once. */
static bool job_take_password(mx_job *j, cx_conn *c, const cx_msg *req)
{
    const char *field = "password";
    json_t *v = json_object_get(req->payload, field);
    if (!v || json_is_null(v))
        v = json_object_get(req->payload, field = "newPassword");
    if (v && !json_is_null(v)) {
        const char *pw = cx_msg_payload_str(req, field);
        if (!pw || !password_ok(pw)) {
            reply_bad_password(c, req);
            return false;
        }
        j->password = strdup(pw);
    } else {
        j->password = malloc(MX_PASSWORD_GEN_CHARS + 1);
        if (j->password)
            cx_password_generate(j->password, MX_PASSWORD_GEN_CHARS);
        j->generated = true;
    }
    if (!j->password) {
        cx_reply_err(c, req, "INTERNAL", "out of memory");
        return false;
    }
    j->make_hash = true;
    return true;
}

static void act_users_create(mx_server *m, cx_conn *c, const cx_msg *req)
{
    const char *username = cx_msg_payload_str(req, "username");
    int role;
    if (!username || !*username || strlen(username) > MX_USERNAME_MAX) {
        cx_reply_err(c, req, "INVALID_ARGUMENT",
                     "username must be 1-64 characters of letters, digits, '.', '_', '@' or '-'");
        return;
    }
    if (parse_role(req, MX_ROLE_USER, &role) != CX_OK) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "role must be \"admin\" or \"user\"");
        return;
    }
    mx_user existing;
    if (mx_user_by_name(m->store, username, &existing, NULL) == CX_OK) {
        cx_reply_err(c, req, "NAME_TAKEN", "a user with this name exists");
        return;
    }
    if (!job_room(m, c, req, NULL))
        return;
    mx_job *j = job_new(m, c, req, JOB_USER_CREATE, "users.create");
    if (!j)
        return;
    snprintf(j->user.username, sizeof j->user.username, "%s", username);
    j->role = role;
    if (!job_take_password(j, c, req)) {
        job_free(j);
        return;
    }
    job_submit(m, j);
}

static void users_create_done(mx_job *j)
{
    mx_server *m = j->m;
    cx_conn *c = j->conn;
    if (j->hash_rc != CX_OK) {
        job_err(j, "INTERNAL", "could not hash the password");
        return;
    }
    mx_user u;
    int rc = mx_user_create(m->store, j->user.username, j->new_hash, j->role, cx_clock_now_ms(),
                            &u);
    if (rc == CX_E_EXISTS) {
        job_err(j, "NAME_TAKEN", "a user with this name exists");
        return;
    }
    if (rc == CX_E_INVAL) {
        job_err(j, "INVALID_ARGUMENT",
                "username must be 1-64 characters of letters, digits, '.', '_', '@' or '-', "
                "starting with a letter or digit");
        return;
    }
    if (rc != CX_OK) {
        job_err(j, "INTERNAL", "could not create the user");
        return;
    }
    audit(m, c, "user.create", u.username, mx_role_name(u.role));
    cx_log_info("user %s (%s) created by %s", u.username, mx_role_name(u.role), actor(c));
    json_t *payload = json_pack("{s:o}", "user", user_json(&u));
    if (payload && j->generated)
        json_object_set_new(payload, "password", json_string(j->password));
    job_ok(j, payload);
}

/* The user a request names by `field`; `id` and `userId` stand for each other, since
 * users.grantCore spells it one way and the other users.* actions the other. */
static bool need_user(mx_server *m, cx_conn *c, const cx_msg *req, const char *field, mx_user *u)
{
    const char *id = cx_msg_payload_str(req, field);
    if (!id)
        id = cx_msg_payload_str(req, strcmp(field, "id") == 0 ? "userId" : "id");
    if (!id) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s is required", field);
        cx_reply_err(c, req, "INVALID_ARGUMENT", msg);
        return false;
    }
    int rc = strlen(id) <= MX_ID_CHARS ? mx_user_by_id(m->store, id, u, NULL) : CX_E_NOTFOUND;
    if (rc == CX_E_NOTFOUND) {
        cx_reply_err(c, req, "NOT_FOUND", "no user with this id");
        return false;
    }
    if (rc != CX_OK) {
        cx_reply_err(c, req, "INTERNAL", "could not read the user");
        return false;
    }
    return true;
}

static void act_users_delete(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_user u;
    if (!need_user(m, c, req, "id", &u))
        return;
    int rc = mx_user_delete(m->store, u.id);
    if (rc == CX_E_DENIED) {
        cx_reply_err(c, req, "FORBIDDEN", "the last admin cannot be deleted");
        return;
    }
    if (rc != CX_OK) {
        cx_reply_err(c, req, rc == CX_E_NOTFOUND ? "NOT_FOUND" : "INTERNAL",
                     rc == CX_E_NOTFOUND ? "no user with this id" : "could not delete the user");
        return;
    }
    audit(m, c, "user.delete", u.username, "ok");
    cx_log_info("user %s deleted by %s", u.username, actor(c));
    cx_reply_ok(c, req, json_pack("{s:s, s:b}", "id", u.id, "deleted", 1));
    mx_close_user_conns(m, u.id, NULL, NULL, NULL, CX_WS_CLOSE_SESSION, "user deleted");
}

struct role_arg {
    const char *user_id;
    int role;
};

static void set_role_conn(cx_conn *c, void *arg)
{
    struct role_arg *a = arg;
    mx_peer *p = cx_conn_data(c);
    if (p && p->client && strcmp(p->client->user_id, a->user_id) == 0)
        p->client->role = a->role;
}

static void act_users_set_role(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_user u;
    int role;
    if (!need_user(m, c, req, "id", &u))
        return;
    if (!json_object_get(req->payload, "role") || parse_role(req, 0, &role) != CX_OK) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "role must be \"admin\" or \"user\"");
        return;
    }
    int rc = mx_user_set_role(m->store, u.id, role);
    if (rc == CX_E_DENIED) {
        cx_reply_err(c, req, "FORBIDDEN", "the last admin cannot be demoted");
        return;
    }
    if (rc != CX_OK) {
        cx_reply_err(c, req, "INTERNAL", "could not change the role");
        return;
    }
    struct role_arg a = {u.id, role};
    cx_server_foreach(m->srv, set_role_conn, &a);
    audit(m, c, "user.setRole", u.username, mx_role_name(role));
    cx_log_info("user %s is now %s (by %s)", u.username, mx_role_name(role), actor(c));
    cx_reply_ok(c, req, json_pack("{s:s, s:s}", "id", u.id, "role", mx_role_name(role)));
}

static void act_users_reset_password(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_user u;
    if (!need_user(m, c, req, "id", &u))
        return;
    if (!job_room(m, c, req, NULL))
        return;
    mx_job *j = job_new(m, c, req, JOB_RESET_PW, "users.resetPassword");
    if (!j)
        return;
    j->user = u;
    if (!job_take_password(j, c, req)) {
        job_free(j);
        return;
    }
    job_submit(m, j);
}

static void reset_password_done(mx_job *j)
{
    mx_server *m = j->m;
    cx_conn *c = j->conn;
    mx_client *cl = peer_of(c)->client;
    if (j->hash_rc != CX_OK) {
        job_err(j, "INTERNAL", "could not hash the password");
        return;
    }
    bool self = cl && strcmp(cl->user_id, j->user.id) == 0;
    int rc = mx_user_set_password(m->store, j->user.id, j->new_hash, self ? cl->session_id : NULL);
    if (rc != CX_OK) {
        job_err(j, rc == CX_E_NOTFOUND ? "NOT_FOUND" : "INTERNAL",
                rc == CX_E_NOTFOUND ? "no user with this id" : "could not set the password");
        return;
    }
    audit(m, c, "user.resetPassword", j->user.username, "ok");
    cx_log_info("password of %s reset by %s; their sessions revoked", j->user.username, actor(c));
    mx_close_user_conns(m, j->user.id, NULL, self ? cl->session_id : NULL, c,
                        CX_WS_CLOSE_SESSION, "password reset");
    json_t *payload = json_pack("{s:s, s:b}", "id", j->user.id, "reset", 1);
    if (payload && j->generated)
        json_object_set_new(payload, "password", json_string(j->password));
    job_ok(j, payload);
}

/* The Core of a grant: by Maestro id, or by the Core's own coreId. */
static bool need_core(mx_server *m, cx_conn *c, const cx_msg *req, mx_core *core)
{
    const char *id = cx_msg_payload_str(req, "coreId");
    if (!id) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "coreId is required");
        return false;
    }
    if (strlen(id) <= MX_CORE_ID_MAX && (mx_core_by_id(m->store, id, core) == CX_OK ||
                                         mx_core_by_core_id(m->store, id, core) == CX_OK))
        return true;
    cx_reply_err(c, req, "NOT_FOUND", "no Core with this id");
    return false;
}

static void act_users_grant(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_user u;
    mx_core core;
    if (!need_user(m, c, req, "userId", &u) || !need_core(m, c, req, &core))
        return;
    bool grant = strcmp(req->action, "users.grantCore") == 0;
    int rc = grant ? mx_grant(m->store, u.id, core.id) : mx_revoke_grant(m->store, u.id, core.id);
    if (rc != CX_OK && !(rc == CX_E_EXISTS && grant) && !(rc == CX_E_NOTFOUND && !grant)) {
        cx_reply_err(c, req, "INTERNAL", "could not change the grant");
        return;
    }
    char target[MX_USERNAME_MAX + MX_ID_CHARS + 8];
    snprintf(target, sizeof target, "%s -> %s", u.username, core.id);
    audit(m, c, grant ? "user.grantCore" : "user.revokeCore", target, "ok");
    cx_reply_ok(c, req, json_pack("{s:s, s:s, s:b}", "userId", u.id, "coreId", core.id,
                                  grant ? "granted" : "revoked", 1));
}

/* ---- pairing codes (admin) ---- */

static int int_field(const cx_msg *req, const char *key, long def, long min, long max, long *out)
{
    json_t *v = json_object_get(req->payload, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return CX_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return CX_E_INVAL;
    *out = (long)json_integer_value(v);
    return CX_OK;
}

static void act_pairing_create(mx_server *m, cx_conn *c, const cx_msg *req)
{
    long uses, ttl;
    if (int_field(req, "maxUses", 1, 1, 1000, &uses) != CX_OK) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "maxUses must be a whole number from 1 to 1000");
        return;
    }
    if (int_field(req, "ttlSeconds", CX_PAIRING_DEFAULT_TTL_S, 1, 30L * 24 * 3600, &ttl) !=
        CX_OK) {
        cx_reply_err(c, req, "INVALID_ARGUMENT",
                     "ttlSeconds must be a whole number from 1 to 2592000 (30 days)");
        return;
    }
    char code[7];
    mx_pairing pr;
    int rc = mx_pairing_create(m->store, actor(c), (int)uses, (int64_t)ttl * 1000,
                               cx_clock_now_ms(), code, &pr);
    if (rc != CX_OK) {
        cx_reply_err(c, req, "INTERNAL", "could not create a pairing code");
        return;
    }
    audit(m, c, "pairing.create", pr.id, "ok");
    cx_log_info("pairing code %s created by %s (%ld use(s), %ld s)", pr.id, actor(c), uses, ttl);
    char exp[32];
    mx_iso(pr.expires_at, exp);
    json_t *payload = json_pack("{s:s, s:s, s:s, s:i}", "id", pr.id, "code", code, "expiresAt",
                                exp, "maxUses", pr.max_uses);
    sodium_memzero(code, sizeof code);
    cx_reply_ok(c, req, payload);
}

static void act_pairing_list(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_pairing *arr = NULL;
    size_t n = 0;
    if (mx_pairing_list(m->store, &arr, &n) != CX_OK) {
        cx_reply_err(c, req, "INTERNAL", "could not list pairing codes");
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
        char cr[32], ex[32];
        mx_iso(arr[i].created_at, cr);
        mx_iso(arr[i].expires_at, ex);
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s, s:i, s:i}", "id", arr[i].id,
                                              "createdBy", arr[i].created_by, "createdAt", cr,
                                              "expiresAt", ex, "uses", arr[i].uses, "maxUses",
                                              arr[i].max_uses));
    }
    free(arr);
    cx_reply_ok(c, req, json_pack("{s:o}", "codes", list));
}

static void act_pairing_revoke(mx_server *m, cx_conn *c, const cx_msg *req)
{
    const char *id = cx_msg_payload_str(req, "id");
    if (!id) {
        cx_reply_err(c, req, "INVALID_ARGUMENT", "id is required");
        return;
    }
    int rc = mx_pairing_revoke(m->store, id);
    if (rc != CX_OK) {
        cx_reply_err(c, req, rc == CX_E_NOTFOUND ? "NOT_FOUND" : "INTERNAL",
                     rc == CX_E_NOTFOUND ? "no pairing code with this id"
                                         : "could not revoke the pairing code");
        return;
    }
    audit(m, c, "pairing.revoke", id, "ok");
    cx_reply_ok(c, req, json_pack("{s:s, s:b}", "id", id, "revoked", 1));
}

/* ---- job completion and the action table ---- */

static void job_done(mx_job *j)
{
    mx_server *m = j->m;
    cx_conn *c = j->conn;
    if (j->conn) {
        peer_of(j->conn)->job = NULL;
        switch (j->kind) {
        case JOB_LOGIN:
            login_done(j);
            break;
        case JOB_CHANGE_PW:
            change_password_done(j);
            break;
        case JOB_TOTP_DISABLE:
            totp_disable_done(j);
            break;
        case JOB_USER_CREATE:
            users_create_done(j);
            break;
        case JOB_RESET_PW:
            reset_password_done(j);
            break;
        }
    }
    job_free(j);
    if (c)
        mx_peer_resume(m, c);
}

enum who { WHO_SIGNED_IN, WHO_ADMIN };

static const struct action {
    const char *name; /* maestro/<name> */
    uint8_t who;      /* enum who */
    action_fn fn;
} actions[] = {
    {"logout", WHO_SIGNED_IN, act_logout},
    {"auth.changePassword", WHO_SIGNED_IN, act_change_password},
    {"auth.totp.status", WHO_SIGNED_IN, act_totp_status},
    {"auth.totp.setup", WHO_SIGNED_IN, act_totp_setup},
    {"auth.totp.enable", WHO_SIGNED_IN, act_totp_enable},
    {"auth.totp.disable", WHO_SIGNED_IN, act_totp_disable},
    {"sessions.list", WHO_SIGNED_IN, act_sessions_list},
    {"sessions.revoke", WHO_SIGNED_IN, act_sessions_revoke},
    {"users.list", WHO_ADMIN, act_users_list},
    {"users.create", WHO_ADMIN, act_users_create},
    {"users.delete", WHO_ADMIN, act_users_delete},
    {"users.setRole", WHO_ADMIN, act_users_set_role},
    {"users.resetPassword", WHO_ADMIN, act_users_reset_password},
    {"users.grantCore", WHO_ADMIN, act_users_grant},
    {"users.revokeCore", WHO_ADMIN, act_users_grant},
    {"pairing.create", WHO_ADMIN, act_pairing_create},
    {"pairing.list", WHO_ADMIN, act_pairing_list},
    {"pairing.revoke", WHO_ADMIN, act_pairing_revoke},
    {"cores.list", WHO_SIGNED_IN, mx_act_cores_list},
    {"cores.rename", WHO_ADMIN, mx_act_cores_rename},
    {"cores.remove", WHO_ADMIN, mx_act_cores_remove},
    {"cores.rotateToken", WHO_ADMIN, mx_act_cores_rotate},
};

void mx_client_request(mx_server *m, cx_conn *c, const cx_msg *req)
{
    mx_peer *p = peer_of(c);
    if (strcmp(req->action, "login") == 0) {
        handle_login(m, c, req);
        return;
    }
    if (strcmp(req->action, "auth") == 0) {
        handle_session_auth(m, c, req);
        return;
    }
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++) {
        if (strcmp(actions[i].name, req->action) != 0)
            continue;
        if (actions[i].who == WHO_ADMIN && p->client->role != MX_ROLE_ADMIN) {
            cx_reply_err(c, req, "FORBIDDEN", "only admins may do this");
            return;
        }
        actions[i].fn(m, c, req);
        return;
    }
    char msg[200];
    snprintf(msg, sizeof msg, "unknown action maestro/%.128s", req->action);
    cx_reply_err(c, req, "UNKNOWN_ACTION", msg);
}
