/* Maestro's storage: users, sessions, pairing codes, the Core registry, grants and the
 * audit trail, in maestro.db (SQLite, WAL, 0600), plus the server key (maestro.key, 0600)
 * under which pairing codes are MACed. Every secret is stored hashed: session tokens and
 * Core tokens as SHA-256, pairing codes as HMAC-SHA256 under the key, passwords as
 * Argon2id strings made by the caller (hashing is slow and runs off the loop).
 * Functions return CX_OK or a negative code from condrix/error.h; CX_E_DB and
 * CX_E_NOMEM are possible from all that touch the database. Times are Unix ms. */
#ifndef CONDRIX_MAESTRO_STORE_H
#define CONDRIX_MAESTRO_STORE_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condrix/token.h"

#define MX_USERNAME_MAX 64
#define MX_DISPLAY_NAME_MAX 128
#define MX_CORE_ID_MAX 128
#define MX_ID_CHARS 36 /* UUID text */
#define MX_SESSION_TTL_MS (7LL * 24 * 3600 * 1000)
#define MX_TOTP_SECRET_MAX 20              /* bytes; == CX_TOTP_SECRET_BYTES */
#define MX_PAIRING_MAX_USES 1000
#define MX_PAIRING_MAX_TTL_MS (30LL * 24 * 3600 * 1000)
#define MX_AUDIT_MAX_ROWS 100000           /* maestro.db audit rows kept (newest) */

typedef struct mx_store mx_store; /* opaque */

enum mx_role { MX_ROLE_USER = 0, MX_ROLE_ADMIN = 1 };

typedef struct mx_user {
    char id[MX_ID_CHARS + 1];              /* UUID */
    char username[MX_USERNAME_MAX + 1];    /* as created; unique case-insensitively */
    int role;                              /* enum mx_role */
    int64_t created_at;
    bool totp_enabled;
} mx_user;

typedef struct mx_session {
    char id[MX_ID_CHARS + 1];      /* public id (sessions.list / revoke), not the token */
    char user_id[MX_ID_CHARS + 1];
    int64_t created_at, expires_at, last_seen_at;
    char ip[64];
    char user_agent[256];
} mx_session;

typedef struct mx_core {
    char id[MX_ID_CHARS + 1];                  /* Maestro's id for the Core (targetCoreId) */
    char core_id[MX_CORE_ID_MAX + 1];          /* the Core's own stable id */
    char display_name[MX_DISPLAY_NAME_MAX + 1];
    char token_prefix[9];                      /* of the permanent token, "" before pairing */
    int64_t paired_at, last_seen_at;           /* 0 = never */
} mx_core;

typedef struct mx_pairing {
    char id[MX_ID_CHARS + 1];
    char created_by[MX_USERNAME_MAX + 1];      /* username of the admin */
    int64_t created_at, expires_at;
    int uses, max_uses;
} mx_pairing;

/* Open (create, migrate) dir/maestro.db and load or create dir/maestro.key (32 random
 * bytes, 0600). *errmsg (may be NULL) gets a malloc'd explanation on failure. */
int mx_store_open(const char *dir, mx_store **out, char **errmsg);
void mx_store_close(mx_store *s);
sqlite3 *mx_store_db(mx_store *s);
/* This Maestro's stable id (settings "maestro.id", a UUID made at first open). Owned by s. */
const char *mx_store_maestro_id(mx_store *s);
/* Settings. get: *value is a malloc'd copy (caller frees) or NULL when unset (still
 * CX_OK). set: insert or replace. CX_E_INVAL for a NULL key or value. */
int mx_setting_get(mx_store *s, const char *key, char **value);
int mx_setting_set(mx_store *s, const char *key, const char *value);
/* True when name is a valid username (see mx_user_create). */
bool mx_username_valid(const char *name);

/* ---- users ---- */
/* CX_E_EXISTS (username taken, case-insensitive), CX_E_INVAL (username not 1..64 of
 * [A-Za-z0-9._@-] starting alphanumeric). password_hash is an Argon2id string. */
int mx_user_create(mx_store *s, const char *username, const char *password_hash, int role,
                   int64_t now, mx_user *out);
/* Lookup by username (case-insensitive) or id. CX_E_NOTFOUND. hash_out (may be NULL)
 * receives the password hash (size CX_PASSWORD_HASH_MAX). */
int mx_user_by_name(mx_store *s, const char *username, mx_user *out, char *hash_out);
int mx_user_by_id(mx_store *s, const char *id, mx_user *out, char *hash_out);
/* All users ordered by username; *arr malloc'd (caller frees). */
int mx_user_list(mx_store *s, mx_user **arr, size_t *n);
/* Deleting or demoting the last admin: CX_E_DENIED. Delete removes sessions and grants. */
int mx_user_delete(mx_store *s, const char *id);
int mx_user_set_role(mx_store *s, const char *id, int role);
/* Replace the hash; also revokes every session of the user except keep_session_id
 * (may be NULL: revoke all). */
int mx_user_set_password(mx_store *s, const char *id, const char *password_hash,
                         const char *keep_session_id);
size_t mx_user_admin_count(mx_store *s);
size_t mx_user_count(mx_store *s);

/* ---- user TOTP ---- */
/* Pending secret (raw bytes) set by setup; enable moves it to active after the caller
 * verified a code; disable clears both. */
int mx_user_totp_set_pending(mx_store *s, const char *user_id, const uint8_t *secret, size_t n);
/* Buffers (may be NULL) hold MX_TOTP_SECRET_MAX bytes; *_n get the lengths (0: none). */
int mx_user_totp_get(mx_store *s, const char *user_id, uint8_t *active, size_t *active_n,
                     uint8_t *pending, size_t *pending_n, bool *enabled);
/* Verify a code against the active secret (enabled) or the pending one (!enabled ->
 * activates on success), with replay refusal persisted atomically (conditional UPDATE of
 * the last accepted step). CX_E_FORMAT, CX_E_DENIED, CX_E_REPLAY, CX_E_INVAL (nothing
 * to check against). */
int mx_user_totp_check(mx_store *s, const char *user_id, const char *code, int64_t now_s,
                       bool activate_pending);
int mx_user_totp_disable(mx_store *s, const char *user_id);

/* ---- sessions ---- */
/* Make a session: a fresh 64-hex token (token_out, shown once) whose SHA-256 is stored. */
int mx_session_create(mx_store *s, const char *user_id, const char *ip, const char *user_agent,
                      int64_t now, char token_out[65], mx_session *out);
/* Check a session token: CX_E_FORMAT, CX_E_NOTFOUND (unknown or revoked), CX_E_EXPIRED. */
int mx_session_check(mx_store *s, const char *token, int64_t now, mx_session *out);
/* Revoke by token (logout) or by public id (must belong to user_id unless NULL). */
int mx_session_revoke_token(mx_store *s, const char *token);
/* The same by the token's SHA-256, for callers that keep only the hash. check_hash also
 * fills user_out (may be NULL) with the owner's id, username and current role, in the
 * same query. */
int mx_session_check_hash(mx_store *s, const uint8_t hash[CX_TOKEN_HASH_BYTES], int64_t now,
                          mx_session *out, mx_user *user_out);
int mx_session_revoke_hash(mx_store *s, const uint8_t hash[CX_TOKEN_HASH_BYTES]);
int mx_session_revoke_id(mx_store *s, const char *user_id, const char *session_id);
int mx_session_list(mx_store *s, const char *user_id, mx_session **arr, size_t *n);
/* last_seen_at; cheap (callers batch). */
int mx_session_touch(mx_store *s, const char *session_id, int64_t now);
/* Delete sessions with expires_at <= now (mx_session_check keeps answering CX_E_EXPIRED
 * for them until then). *n (may be NULL) gets how many went. */
int mx_session_sweep(mx_store *s, int64_t now, size_t *n);

/* ---- pairing codes ---- */
/* A fresh code (code_out, 6 chars, shown once); stored as HMAC under the server key. */
int mx_pairing_create(mx_store *s, const char *created_by, int max_uses, int64_t ttl_ms,
                      int64_t now, char code_out[7], mx_pairing *out);
int mx_pairing_list(mx_store *s, mx_pairing **arr, size_t *n);
int mx_pairing_revoke(mx_store *s, const char *id);
/* A Core presents a code: CX_E_NOTFOUND (unknown/revoked/malformed), CX_E_EXPIRED,
 * CX_E_REPLAY (all uses consumed). On CX_OK *pairing_id names the code. A code whose
 * pending redemption belongs to another coreId and is not yet acknowledged counts as
 * a use in flight: for max_uses 1 that is CX_E_REPLAY. */
int mx_pairing_redeem(mx_store *s, const char *code, const char *core_id, int64_t now,
                      char pairing_id[MX_ID_CHARS + 1]);
/* The Core acknowledged its permanent token: the code's use is consumed. Idempotent:
 * CX_OK with nothing to consume; CX_E_NOTFOUND only for an unknown pairing_id. */
int mx_pairing_consume(mx_store *s, const char *pairing_id, const char *core_id);
/* The Core authenticated with the token a redemption issued (it stored it, then died
 * before its ack): consume every redemption still pending for core_id. */
int mx_pairing_consume_core(mx_store *s, const char *core_id);
/* One code by id, revoked ones included (CX_E_NOTFOUND). */
int mx_pairing_get(mx_store *s, const char *id, mx_pairing *out);
/* Forget codes that expired more than a day ago (until then a late redeem still gets
 * CX_E_EXPIRED rather than CX_E_NOTFOUND). */
int mx_pairing_sweep(mx_store *s, int64_t now);

/* ---- Cores ---- */
/* Register or re-key a Core after pairing: upsert by core_id, store the token hash and
 * prefix as PENDING (not yet valid) until mx_core_ack_token. token_out gets a fresh
 * 64-hex token. A known Core keeps its id, grants and permanent token (until the ack);
 * a new pending token voids an earlier one. display_name NULL, empty or unshowable
 * (not UTF-8, control characters, over MX_DISPLAY_NAME_MAX bytes): the core_id stands in
 * for a new Core, the old name stays for a known one. CX_E_INVAL: core_id is not 1..128
 * visible ASCII characters. */
int mx_core_issue_token(mx_store *s, const char *core_id, const char *display_name,
                        int64_t now, char token_out[65], mx_core *out);
/* Make the pending token the permanent one (the Core stored it). CX_OK also when nothing
 * is pending (a repeated ack); CX_E_NOTFOUND for an unknown core_id. */
int mx_core_ack_token(mx_store *s, const char *core_id);
/* A Core authenticates with its permanent token: CX_E_NOTFOUND / CX_E_DENIED. A still
 * pending token is also accepted (the Core may have stored it and crashed before
 * acking); success with the pending one promotes it. */
int mx_core_check_token(mx_store *s, const char *core_id, const char *token, mx_core *out);
int mx_core_by_id(mx_store *s, const char *id, mx_core *out);
int mx_core_by_core_id(mx_store *s, const char *core_id, mx_core *out);
int mx_core_list(mx_store *s, mx_core **arr, size_t *n);
int mx_core_rename(mx_store *s, const char *id, const char *display_name);
int mx_core_remove(mx_store *s, const char *id);
int mx_core_seen(mx_store *s, const char *id, int64_t now);
/* Rotation: a new token kept as pending until the Core acks (push) or, when the Core is
 * offline, made current at once (token shown to the admin). */
int mx_core_rotate(mx_store *s, const char *id, bool immediate, char token_out[65]);

/* ---- grants ---- */
/* core_id here is Maestro's id of the Core (mx_core.id). mx_grant is idempotent;
 * CX_E_NOTFOUND when the user or Core does not exist (revoke: no such grant). */
int mx_grant(mx_store *s, const char *user_id, const char *core_id);
int mx_revoke_grant(mx_store *s, const char *user_id, const char *core_id);
bool mx_granted(mx_store *s, const char *user_id, const char *core_id);
/* Every grant, ordered by user id, then Core id; free *arr. */
typedef struct mx_grant_row {
    char user_id[MX_ID_CHARS + 1];
    char core_id[MX_ID_CHARS + 1]; /* Maestro's id of the Core */
} mx_grant_row;
int mx_grant_list(mx_store *s, mx_grant_row **arr, size_t *n);

/* ---- audit ---- */
int mx_audit(mx_store *s, int64_t now, const char *actor, const char *action,
             const char *target, const char *addr, const char *result);
/* Newest first, at most limit rows, as a JSON array of objects. */
json_t *mx_audit_list(mx_store *s, int limit);

#endif
