/* The Core's token store: named access tokens with scopes, expiry and optional TOTP, kept
 * in core.db (SQLite, WAL) as SHA-256 hashes, plus the Core's settings and audit trail.
 * The server and the `condrix-core auth` CLI open the same file at once; the database is
 * the truth, so every authentication looks the token up afresh. Times are Unix ms unless
 * a name says _s. Functions return CX_OK or a negative code from condrix/error.h;
 * CX_E_DB (SQLite failed) and CX_E_NOMEM are possible from all that touch the database. */
#ifndef CONDRIX_CORE_TOKENS_H
#define CONDRIX_CORE_TOKENS_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condrix/limits.h"

/* What a token may do (PROTOCOL.md section 3). Bits, in the order of cx_scope_name. */
enum cx_scope {
    CX_SCOPE_READ_FILES = 1u << 0,      /* "read:files" */
    CX_SCOPE_WRITE_FILES = 1u << 1,     /* "write:files" */
    CX_SCOPE_EXEC_TERMINAL = 1u << 2,   /* "exec:terminal" */
    CX_SCOPE_ADMIN_WORKSPACE = 1u << 3, /* "admin:workspace" */
    CX_SCOPE_ADMIN_PROJECT = 1u << 4,   /* "admin:project" */
    CX_SCOPE_ADMIN_CORE = 1u << 5,      /* "admin:core" */
    CX_SCOPE_CHAT_AGENT = 1u << 6,      /* "chat:agent" */
    CX_SCOPE_CHAT_MAESTRO = 1u << 7,    /* "chat:maestro" */
    CX_SCOPE_ALL = (1u << 8) - 1,
};

/* Size of the buffer cx_tokens_totp_setup fills (32 base32 chars + NUL, with room). */
#define CX_TOKENS_TOTP_B32_SIZE 40

/* The wire name of one scope bit ("read:files"), or NULL when bit is not exactly one
 * known scope. Static storage. */
const char *cx_scope_name(unsigned bit);
/* Scopes from a JSON array of names. An empty array is no scopes. CX_E_INVAL when arr is
 * not an array or holds a non-string or an unknown name. *out is untouched on error. */
int cx_scopes_from_json(const json_t *arr, unsigned *out);
/* A new JSON array of the names of the bits set in scopes (unknown bits ignored), in
 * cx_scope_name order. Caller owns the reference; NULL when out of memory. */
json_t *cx_scopes_to_json(unsigned scopes);
/* Scopes from a comma-separated list ("read:files, chat:agent"); "all" or "*" is every
 * scope, "none" is no scope. CX_E_INVAL for an empty list, an empty item or an unknown
 * name. */
int cx_scopes_parse(const char *comma_list, unsigned *out);
/* "read:files,chat:agent", or "all" / "none", into out (size n, truncated, always
 * NUL-terminated). Returns out. */
char *cx_scopes_format(unsigned scopes, char *out, size_t n);

/* True when name is 1..CX_TOKEN_NAME_MAX_CHARS of [A-Za-z0-9._-] starting alphanumeric. */
bool cx_tokens_name_valid(const char *name);

/* Everything about a token except its value and its secrets. */
typedef struct cx_token_info {
    char name[CX_TOKEN_NAME_MAX_CHARS + 1]; /* unique name */
    char prefix[CX_TOKEN_PREFIX_CHARS + 1]; /* first 8 hex chars, for display */
    unsigned scopes;                        /* enum cx_scope bits */
    int64_t created_at;                     /* Unix ms */
    int64_t expires_at;                     /* Unix ms, 0 = never */
    int64_t last_used_at;                   /* Unix ms, 0 = never */
    bool totp_enabled;                      /* a code is required to authenticate */
    bool totp_configured;                   /* a TOTP secret exists, pending or active */
} cx_token_info;

/* The protocol's view of a token (PROTOCOL.md `auth.tokens`): {name, prefix, scopes,
 * createdAt, expiresAt, lastUsedAt, totpEnabled}, times as ISO 8601 UTC strings and
 * null for "never". Caller owns the reference; NULL when out of memory. */
json_t *cx_tokens_info_to_json(const cx_token_info *info);
/* ms as "2026-11-22T10:00:00.000Z" into out. Returns out. */
char *cx_tokens_iso8601(int64_t ms, char out[32]);

typedef struct cx_tokens cx_tokens; /* opaque: the connection and prepared statements */

/* Open (creating and migrating) the database at db_path, mode 0600. On success *out is a
 * handle the caller closes with cx_tokens_close. On failure *out is NULL and *errmsg (if
 * errmsg is not NULL) a malloc'd explanation for the operator, or NULL. Codes: CX_E_IO
 * (file), CX_E_DB (SQLite, or a database from a newer Condrix), CX_E_NOMEM, CX_E_CRYPTO.
 * A handle belongs to one thread at a time (the connection is opened without a mutex);
 * other processes and other handles may use the same file concurrently. */
int cx_tokens_open(const char *db_path, cx_tokens **out, char **errmsg);
/* Finalise statements, checkpoint and close. NULL is fine. */
void cx_tokens_close(cx_tokens *t);
/* The underlying connection, for other Core modules that keep tables in core.db.
 * Owned by t; valid until cx_tokens_close. */
sqlite3 *cx_tokens_db(cx_tokens *t);

/* Make a token: a fresh random value (written to token_out, 64 hex + NUL, which the
 * caller shows once and then wipes) whose hash is stored under name. expires_at 0 is
 * never. CX_E_INVAL for a bad name or scopes outside CX_SCOPE_ALL, CX_E_EXISTS if the
 * name is taken. token_out is wiped on failure. */
int cx_tokens_create(cx_tokens *t, const char *name, unsigned scopes, int64_t expires_at,
                     int64_t now, char token_out[65]);
/* Make sure a token with this name and value exists (CONDRIX_CORE_TOKEN at start):
 * nothing happens when it already does; a missing name is created with scopes and no
 * expiry; an existing name with another value gets this value and these scopes (the
 * environment wins) and keeps its TOTP. CX_E_FORMAT if token is not 64 lowercase hex,
 * CX_E_INVAL for a bad name, CX_E_EXISTS if another name already holds this value. */
int cx_tokens_seed(cx_tokens *t, const char *name, const char *token, unsigned scopes,
                   int64_t now);
/* Check a presented token: hash it and look the hash up. CX_OK fills *info (may be NULL).
 * CX_E_FORMAT: not 64 lowercase hex. CX_E_NOTFOUND: unknown or revoked.
 * CX_E_EXPIRED: expires_at <= now (info is filled too, so the caller can log the name).
 * TOTP is not checked here: when info->totp_enabled, follow with cx_tokens_totp_check. */
int cx_tokens_authenticate(cx_tokens *t, const char *token, int64_t now, cx_token_info *info);
/* One token by name. CX_E_NOTFOUND. info may be NULL (an existence check). */
int cx_tokens_get(cx_tokens *t, const char *name, cx_token_info *info);
/* Every token, ordered by name (byte order). *arr is malloc'd, the caller frees it; with
 * no tokens *arr is NULL and *n 0. On error *arr is NULL and *n 0. */
int cx_tokens_list(cx_tokens *t, cx_token_info **arr, size_t *n);
/* Give name a new value (token_out, shown once) and kill the old one at once; scopes,
 * expiry, creation time and TOTP stay. CX_E_NOTFOUND. token_out is wiped on failure. */
int cx_tokens_rotate(cx_tokens *t, const char *name, int64_t now, char token_out[65]);
/* Delete the token; its name becomes free. CX_E_NOTFOUND. */
int cx_tokens_revoke(cx_tokens *t, const char *name);
/* Number of tokens. */
int cx_tokens_count(cx_tokens *t, size_t *n);

/* Start TOTP setup: a new random secret becomes the token's pending secret (replacing any
 * pending one; an enabled secret stays in force until cx_tokens_totp_enable). Its base32
 * form goes to secret_b32_out, which the caller shows once and then wipes. CX_E_NOTFOUND. */
int cx_tokens_totp_setup(cx_tokens *t, const char *name,
                         char secret_b32_out[CX_TOKENS_TOTP_B32_SIZE]);
/* Finish setup: verify code (at now_s, Unix seconds) against the pending secret; on
 * success the pending secret becomes the active one, TOTP is required from now on, and the
 * code's step counts as used. CX_E_NOTFOUND, CX_E_INVAL (no setup pending), CX_E_FORMAT
 * (not 6 digits), CX_E_DENIED (wrong code, or the pending secret changed meanwhile). */
int cx_tokens_totp_enable(cx_tokens *t, const char *name, const char *code, int64_t now_s);
/* Forget every TOTP secret of the token, pending and active. CX_E_NOTFOUND. */
int cx_tokens_totp_disable(cx_tokens *t, const char *name);
/* configured: a secret exists (pending or active); enabled: codes are required.
 * Either pointer may be NULL. CX_E_NOTFOUND. */
int cx_tokens_totp_status(cx_tokens *t, const char *name, bool *configured, bool *enabled);
/* Verify a code against the active secret at now_s. A step is accepted at most once, by
 * any process: the acceptance is one conditional UPDATE of the stored last step.
 * CX_E_NOTFOUND, CX_E_INVAL (TOTP not enabled), CX_E_FORMAT (not 6 digits), CX_E_DENIED
 * (wrong or stale), CX_E_REPLAY (this or a later step was already accepted). */
int cx_tokens_totp_check(cx_tokens *t, const char *name, const char *code, int64_t now_s);

/* Record a use: last_used_at = now. One small UPDATE; CX_E_NOTFOUND if gone. */
int cx_tokens_touch(cx_tokens *t, const char *name, int64_t now);

/* Settings ("core.id", "maestro.token", ...). get: *value is a malloc'd copy the caller
 * frees, or NULL when the key is unset (still CX_OK). set: insert or replace. CX_E_INVAL
 * for a NULL key or value. */
int cx_tokens_setting_get(cx_tokens *t, const char *key, char **value);
int cx_tokens_setting_set(cx_tokens *t, const char *key, const char *value);

/* Append an audit row. event ("token.create", "auth.fail", ...) and result ("ok",
 * "denied", ...) are required; token_name and addr may be NULL. Never pass a secret. */
int cx_tokens_audit(cx_tokens *t, int64_t now, const char *event, const char *token_name,
                    const char *addr, const char *result);

#endif
