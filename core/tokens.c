/* The Core's token store over core.db. Tokens are kept as SHA-256 hashes with a display
 * prefix; a presented token is hashed and looked up by its hash, every time, so rotations
 * and revocations made by another process (the CLI) take effect at the next check. The
 * statements are prepared once at open and reset after each use, because lookups run for
 * every authentication and a statement left open would pin an old WAL snapshot. */
#include "tokens.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "condrix/db.h"
#include "condrix/error.h"
#include "condrix/msg.h"
#include "condrix/token.h"
#include "condrix/totp.h"
#include "condrix/totpstore.h"

/* The largest TOTP secret we accept from the database (we write CX_TOTP_SECRET_BYTES). */

/* core.db's schema history; append, never edit a released entry. */
static const cx_db_migration core_migrations[] = {
    {"CREATE TABLE auth_tokens ("
     "  id INTEGER PRIMARY KEY,"
     "  name TEXT NOT NULL UNIQUE,"
     "  token_hash BLOB NOT NULL,"
     "  prefix TEXT NOT NULL,"
     "  scopes TEXT NOT NULL DEFAULT '[]',"
     "  created_at INTEGER NOT NULL,"
     "  expires_at INTEGER NOT NULL DEFAULT 0,"
     "  last_used_at INTEGER NOT NULL DEFAULT 0,"
     "  totp_secret BLOB,"
     "  totp_pending BLOB,"
     "  totp_enabled INTEGER NOT NULL DEFAULT 0,"
     "  totp_last_step INTEGER NOT NULL DEFAULT -1,"
     "  enabled INTEGER NOT NULL DEFAULT 1);"
     "CREATE UNIQUE INDEX auth_tokens_by_hash ON auth_tokens(token_hash);"
     "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
     "CREATE TABLE audit ("
     "  id INTEGER PRIMARY KEY,"
     "  time INTEGER NOT NULL,"
     "  event TEXT NOT NULL,"
     "  token_name TEXT,"
     "  address TEXT,"
     "  result TEXT NOT NULL);"
     "CREATE INDEX audit_by_time ON audit(time);"},
};

#define INFO_COLS                                                                          \
    "name, prefix, scopes, created_at, expires_at, last_used_at, totp_enabled,"           \
    " (totp_secret IS NOT NULL OR totp_pending IS NOT NULL), token_hash"

enum stmt {
    S_BY_HASH,
    S_BY_NAME,
    S_LIST,
    S_INSERT,
    S_SET_HASH,
    S_SEED_UPDATE,
    S_DELETE,
    S_COUNT,
    S_TOTP_GET,
    S_TOTP_SET_PENDING,
    S_TOTP_ENABLE,
    S_TOTP_DISABLE,
    S_TOTP_ACCEPT,
    S_TOUCH,
    S_SETTING_GET,
    S_SETTING_SET,
    S_AUDIT,
    S_AUDIT_TRIM,
    S_N_
};

static const char *const stmt_sql[S_N_] = {
    [S_BY_HASH] = "SELECT " INFO_COLS " FROM auth_tokens WHERE token_hash = ?1 AND enabled = 1",
    [S_BY_NAME] = "SELECT " INFO_COLS " FROM auth_tokens WHERE name = ?1",
    [S_LIST] = "SELECT " INFO_COLS " FROM auth_tokens ORDER BY name COLLATE BINARY",
    [S_INSERT] = "INSERT INTO auth_tokens (name, token_hash, prefix, scopes, created_at,"
                 " expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_SET_HASH] = "UPDATE auth_tokens SET token_hash = ?2, prefix = ?3 WHERE name = ?1",
    [S_SEED_UPDATE] = "UPDATE auth_tokens SET token_hash = ?2, prefix = ?3, scopes = ?4,"
                      " enabled = 1 WHERE name = ?1",
    [S_DELETE] = "DELETE FROM auth_tokens WHERE name = ?1",
    [S_COUNT] = "SELECT count(*) FROM auth_tokens",
    [S_TOTP_GET] = "SELECT totp_secret, totp_pending, totp_enabled, totp_last_step"
                   " FROM auth_tokens WHERE name = ?1",
    [S_TOTP_SET_PENDING] = "UPDATE auth_tokens SET totp_pending = ?2 WHERE name = ?1",
    /* The enabling code's step counts as accepted (ARCHITECTURE: a step once accepted is
     * never accepted again), so it cannot sign in afterwards. */
    [S_TOTP_ENABLE] = "UPDATE auth_tokens SET totp_secret = totp_pending, totp_pending = NULL,"
                      " totp_enabled = 1, totp_last_step = ?2"
                      " WHERE name = ?1 AND totp_pending = ?3",
    [S_TOTP_DISABLE] = "UPDATE auth_tokens SET totp_secret = NULL, totp_pending = NULL,"
                       " totp_enabled = 0, totp_last_step = -1 WHERE name = ?1",
    /* The WHERE clause is the replay guard: of two processes accepting the same step, only
     * one UPDATE changes a row. */
    [S_TOTP_ACCEPT] = "UPDATE auth_tokens SET totp_last_step = ?2 WHERE name = ?1"
                      " AND totp_enabled = 1 AND totp_last_step < ?2 AND totp_secret = ?3",
    [S_TOUCH] = "UPDATE auth_tokens SET last_used_at = ?2 WHERE name = ?1",
    [S_SETTING_GET] = "SELECT value FROM settings WHERE key = ?1",
    [S_SETTING_SET] = "INSERT INTO settings (key, value) VALUES (?1, ?2)"
                      " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [S_AUDIT] = "INSERT INTO audit (time, event, token_name, address, result)"
                " VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_AUDIT_TRIM] = "DELETE FROM audit WHERE id <= ?1",
};

struct cx_tokens {
    sqlite3 *tk_db;              /* connection to core.db, WAL mode */
    sqlite3_stmt *tk_st[S_N_];   /* prepared at open; reset after every use */
};

/* ---- scopes ---- */

static const char *const scope_names[] = {
    "read:files",    "write:files", "exec:terminal", "admin:workspace",
    "admin:project", "admin:core",  "chat:agent",    "chat:maestro",
};
#define N_SCOPES (sizeof scope_names / sizeof *scope_names)

const char *cx_scope_name(unsigned bit)
{
    for (size_t i = 0; i < N_SCOPES; i++)
        if (bit == 1u << i)
            return scope_names[i];
    return NULL;
}

static unsigned scope_bit(const char *s, size_t len)
{
    for (size_t i = 0; i < N_SCOPES; i++)
        if (strlen(scope_names[i]) == len && memcmp(scope_names[i], s, len) == 0)
            return 1u << i;
    return 0;
}

int cx_scopes_from_json(const json_t *arr, unsigned *out)
{
    if (!json_is_array(arr) || out == NULL)
        return CX_E_INVAL;
    unsigned scopes = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *v = json_array_get(arr, i);
        if (!json_is_string(v))
            return CX_E_INVAL;
        unsigned bit = scope_bit(json_string_value(v), json_string_length(v));
        if (bit == 0)
            return CX_E_INVAL;
        scopes |= bit;
    }
    *out = scopes;
    return CX_OK;
}

json_t *cx_scopes_to_json(unsigned scopes)
{
    json_t *arr = json_array();
    if (arr == NULL)
        return NULL;
    for (size_t i = 0; i < N_SCOPES; i++) {
        if ((scopes & (1u << i)) && json_array_append_new(arr, json_string(scope_names[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

int cx_scopes_parse(const char *list, unsigned *out)
{
    if (list == NULL || out == NULL)
        return CX_E_INVAL;
    unsigned scopes = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        size_t len = (size_t)(b - a);
        if (len == 0)
            return CX_E_INVAL;
        if ((len == 3 && memcmp(a, "all", 3) == 0) || (len == 1 && *a == '*')) {
            scopes |= CX_SCOPE_ALL;
        } else if (len == 4 && memcmp(a, "none", 4) == 0) {
            /* valid, adds nothing */
        } else {
            unsigned bit = scope_bit(a, len);
            if (bit == 0)
                return CX_E_INVAL;
            scopes |= bit;
        }
        if (*end == '\0')
            break;
        p = end + 1;
    }
    *out = scopes;
    return CX_OK;
}

char *cx_scopes_format(unsigned scopes, char *out, size_t n)
{
    if (n == 0)
        return out;
    out[0] = '\0';
    if ((scopes & CX_SCOPE_ALL) == CX_SCOPE_ALL) {
        snprintf(out, n, "all");
        return out;
    }
    if ((scopes & CX_SCOPE_ALL) == 0) {
        snprintf(out, n, "none");
        return out;
    }
    size_t used = 0;
    for (size_t i = 0; i < N_SCOPES && used < n; i++) {
        if (scopes & (1u << i)) {
            int w = snprintf(out + used, n - used, "%s%s", used ? "," : "", scope_names[i]);
            if (w < 0)
                break;
            used += (size_t)w;
        }
    }
    return out;
}

/* Scopes as stored: a JSON array. Names this version does not know (written by a newer
 * one) are skipped rather than failing the token. */
static unsigned scopes_from_text(const char *text)
{
    if (text == NULL)
        return 0;
    if (strchr(text, '\\') == NULL && text[0] == '[') {
        /* What we write ourselves: ["a:b","c:d"] with plain names. A scan is enough and
         * keeps a JSON parse off every authentication. */
        unsigned scopes = 0;
        for (const char *p = strchr(text, '"'); p != NULL;) {
            const char *end = strchr(p + 1, '"');
            if (end == NULL)
                break;
            scopes |= scope_bit(p + 1, (size_t)(end - p - 1));
            p = strchr(end + 1, '"');
        }
        return scopes;
    }
    json_t *arr = json_loads(text, 0, NULL);
    unsigned scopes = 0;
    for (size_t i = 0; json_is_array(arr) && i < json_array_size(arr); i++) {
        const json_t *v = json_array_get(arr, i);
        if (json_is_string(v))
            scopes |= scope_bit(json_string_value(v), json_string_length(v));
    }
    json_decref(arr);
    return scopes;
}

/* malloc'd JSON text of scopes, or NULL when out of memory. */
static char *scopes_to_text(unsigned scopes)
{
    json_t *arr = cx_scopes_to_json(scopes);
    if (arr == NULL)
        return NULL;
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return s;
}

bool cx_tokens_name_valid(const char *name)
{
    if (name == NULL)
        return false;
    size_t i = 0;
    for (; name[i] != '\0'; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (i == 0 && !alnum)
            return false;
        if (!alnum && c != '.' && c != '_' && c != '-')
            return false;
        if (i >= CX_TOKEN_NAME_MAX_CHARS)
            return false;
    }
    return i > 0;
}

char *cx_tokens_iso8601(int64_t ms, char out[32])
{
    cx_msg_timestamp(ms, out); /* clamped to the fixed shape, years 1970..9999 */
    return out;
}

static json_t *time_or_null(int64_t ms)
{
    if (ms == 0)
        return json_null();
    char buf[32];
    return json_string(cx_tokens_iso8601(ms, buf));
}

json_t *cx_tokens_info_to_json(const cx_token_info *info)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    /* json_object_set_new consumes its value even when it fails, so no leak on error. */
    if (json_object_set_new(o, "name", json_string(info->name)) != 0 ||
        json_object_set_new(o, "prefix", json_string(info->prefix)) != 0 ||
        json_object_set_new(o, "scopes", cx_scopes_to_json(info->scopes)) != 0 ||
        json_object_set_new(o, "createdAt", time_or_null(info->created_at)) != 0 ||
        json_object_set_new(o, "expiresAt", time_or_null(info->expires_at)) != 0 ||
        json_object_set_new(o, "lastUsedAt", time_or_null(info->last_used_at)) != 0 ||
        json_object_set_new(o, "totpEnabled", json_boolean(info->totp_enabled)) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- statement plumbing (the shared part is in condrix/db.h) ---- */

static void read_info(sqlite3_stmt *st, cx_token_info *info)
{
    memset(info, 0, sizeof *info);
    const char *name = (const char *)sqlite3_column_text(st, 0);
    const char *prefix = (const char *)sqlite3_column_text(st, 1);
    snprintf(info->name, sizeof info->name, "%s", name ? name : "");
    snprintf(info->prefix, sizeof info->prefix, "%s", prefix ? prefix : "");
    info->scopes = scopes_from_text((const char *)sqlite3_column_text(st, 2));
    info->created_at = sqlite3_column_int64(st, 3);
    info->expires_at = sqlite3_column_int64(st, 4);
    info->last_used_at = sqlite3_column_int64(st, 5);
    info->totp_enabled = sqlite3_column_int(st, 6) != 0;
    info->totp_configured = sqlite3_column_int(st, 7) != 0;
}

/* ---- open / close ---- */

int cx_tokens_open(const char *db_path, cx_tokens **out, char **errmsg)
{
    if (errmsg != NULL)
        *errmsg = NULL;
    if (out == NULL)
        return CX_E_INVAL;
    *out = NULL;
    if (sodium_init() < 0) /* idempotent; token generation needs the CSPRNG ready */
        return CX_E_CRYPTO;
    cx_tokens *t = calloc(1, sizeof *t);
    if (t == NULL)
        return CX_E_NOMEM;
    int rc = cx_db_open(db_path, core_migrations,
                        (int)(sizeof core_migrations / sizeof *core_migrations), &t->tk_db,
                        errmsg);
    if (rc != CX_OK)
        goto fail;
    /* Deleted rows (revoked tokens, dropped TOTP secrets) are overwritten on disk. */
    if ((rc = cx_db_exec(t->tk_db, "PRAGMA secure_delete=ON")) != CX_OK)
        goto fail_msg;
    if ((rc = cx_db_prepare_all(t->tk_db, stmt_sql, S_N_, t->tk_st)) != CX_OK)
        goto fail_msg;
    *out = t;
    return CX_OK;
fail_msg:
    if (errmsg != NULL && *errmsg == NULL)
        cx_set_errmsg(errmsg, "cannot prepare %s: %s", db_path, sqlite3_errmsg(t->tk_db));
fail:
    cx_tokens_close(t);
    return rc;
}

void cx_tokens_close(cx_tokens *t)
{
    if (t == NULL)
        return;
    cx_db_finalize_all(t->tk_st, S_N_);
    cx_db_close(t->tk_db);
    free(t);
}

sqlite3 *cx_tokens_db(cx_tokens *t)
{
    return t ? t->tk_db : NULL;
}

/* ---- tokens ---- */

int cx_tokens_create(cx_tokens *t, const char *name, unsigned scopes, int64_t expires_at,
                     int64_t now, char token_out[65])
{
    if (t == NULL || token_out == NULL)
        return CX_E_INVAL;
    token_out[0] = '\0';
    if (!cx_tokens_name_valid(name) || (scopes & ~(unsigned)CX_SCOPE_ALL) != 0 || expires_at < 0)
        return CX_E_INVAL;
    char *scopes_text = scopes_to_text(scopes);
    if (scopes_text == NULL)
        return CX_E_NOMEM;
    uint8_t hash[CX_TOKEN_HASH_BYTES];
    char prefix[CX_TOKEN_PREFIX_CHARS + 1];
    cx_token_generate(token_out);
    cx_token_hash(token_out, hash);
    cx_token_prefix(token_out, prefix);

    sqlite3_stmt *st = t->tk_st[S_INSERT];
    int rc;
    if ((rc = cx_db_bind_text(st, 1, name)) != CX_OK || (rc = cx_db_bind_blob(st, 2, hash, sizeof hash)) ||
        (rc = cx_db_bind_text(st, 3, prefix)) || (rc = cx_db_bind_text(st, 4, scopes_text)) ||
        (rc = cx_db_bind_i64(st, 5, now)) || (rc = cx_db_bind_i64(st, 6, expires_at))) {
        cx_db_finish(st);
        goto out;
    }
    rc = cx_db_run(st, NULL);
out:
    sodium_memzero(hash, sizeof hash);
    free(scopes_text);
    if (rc != CX_OK)
        sodium_memzero(token_out, 65);
    return rc;
}

int cx_tokens_seed(cx_tokens *t, const char *name, const char *token, unsigned scopes,
                   int64_t now)
{
    if (t == NULL || token == NULL)
        return CX_E_INVAL;
    if (!cx_token_well_formed(token))
        return CX_E_FORMAT;
    if (!cx_tokens_name_valid(name) || (scopes & ~(unsigned)CX_SCOPE_ALL) != 0)
        return CX_E_INVAL;
    char *scopes_text = scopes_to_text(scopes);
    if (scopes_text == NULL)
        return CX_E_NOMEM;
    uint8_t hash[CX_TOKEN_HASH_BYTES];
    char prefix[CX_TOKEN_PREFIX_CHARS + 1];
    cx_token_hash(token, hash);
    cx_token_prefix(token, prefix);

    /* Read and write under one write lock, so two starting processes cannot both insert. */
    int rc = cx_db_begin(t->tk_db);
    if (rc != CX_OK)
        goto out;
    sqlite3_stmt *st = t->tk_st[S_BY_NAME];
    if ((rc = cx_db_bind_text(st, 1, name)) != CX_OK) {
        cx_db_finish(st);
        goto fail;
    }
    int step = sqlite3_step(st);
    bool exists = step == SQLITE_ROW;
    bool same = false;
    if (exists) {
        const void *h = sqlite3_column_blob(st, 8);
        same = h != NULL && sqlite3_column_bytes(st, 8) == CX_TOKEN_HASH_BYTES &&
               sodium_memcmp(h, hash, CX_TOKEN_HASH_BYTES) == 0;
    } else if (step != SQLITE_DONE) {
        rc = cx_db_err(step);
        cx_db_finish(st);
        goto fail;
    }
    cx_db_finish(st);
    if (same) {
        cx_db_rollback(t->tk_db);
        rc = CX_OK;
        goto out;
    }
    if (exists) {
        st = t->tk_st[S_SEED_UPDATE];
        if ((rc = cx_db_bind_text(st, 1, name)) || (rc = cx_db_bind_blob(st, 2, hash, sizeof hash)) ||
            (rc = cx_db_bind_text(st, 3, prefix)) || (rc = cx_db_bind_text(st, 4, scopes_text))) {
            cx_db_finish(st);
            goto fail;
        }
    } else {
        st = t->tk_st[S_INSERT];
        if ((rc = cx_db_bind_text(st, 1, name)) || (rc = cx_db_bind_blob(st, 2, hash, sizeof hash)) ||
            (rc = cx_db_bind_text(st, 3, prefix)) || (rc = cx_db_bind_text(st, 4, scopes_text)) ||
            (rc = cx_db_bind_i64(st, 5, now)) || (rc = cx_db_bind_i64(st, 6, 0))) {
            cx_db_finish(st);
            goto fail;
        }
    }
    if ((rc = cx_db_run(st, NULL)) != CX_OK)
        goto fail;
    if ((rc = cx_db_commit(t->tk_db)) != CX_OK)
        goto fail;
    goto out;
fail:
    cx_db_rollback(t->tk_db);
out:
    sodium_memzero(hash, sizeof hash);
    free(scopes_text);
    return rc;
}

int cx_tokens_authenticate(cx_tokens *t, const char *token, int64_t now, cx_token_info *info)
{
    if (t == NULL || token == NULL)
        return CX_E_INVAL;
    if (!cx_token_well_formed(token))
        return CX_E_FORMAT;
    uint8_t hash[CX_TOKEN_HASH_BYTES];
    cx_token_hash(token, hash);
    sqlite3_stmt *st = t->tk_st[S_BY_HASH];
    int rc = cx_db_bind_blob(st, 1, hash, sizeof hash);
    if (rc != CX_OK)
        goto out;
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE) {
        rc = CX_E_NOTFOUND;
        goto out;
    }
    if (step != SQLITE_ROW) {
        rc = cx_db_err(step);
        goto out;
    }
    /* The index found the row; confirming in constant time costs nothing and keeps the
     * decision independent of how SQLite compares blobs. */
    const void *h = sqlite3_column_blob(st, 8);
    if (h == NULL || sqlite3_column_bytes(st, 8) != CX_TOKEN_HASH_BYTES ||
        sodium_memcmp(h, hash, CX_TOKEN_HASH_BYTES) != 0) {
        rc = CX_E_NOTFOUND;
        goto out;
    }
    cx_token_info tmp;
    read_info(st, &tmp);
    if (info != NULL)
        *info = tmp;
    rc = tmp.expires_at != 0 && tmp.expires_at <= now ? CX_E_EXPIRED : CX_OK;
out:
    cx_db_finish(st);
    sodium_memzero(hash, sizeof hash);
    return rc;
}

int cx_tokens_get(cx_tokens *t, const char *name, cx_token_info *info)
{
    if (t == NULL || name == NULL)
        return CX_E_INVAL;
    sqlite3_stmt *st = t->tk_st[S_BY_NAME];
    int rc = cx_db_bind_text(st, 1, name);
    if (rc == CX_OK) {
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            if (info != NULL)
                read_info(st, info);
        } else {
            rc = step == SQLITE_DONE ? CX_E_NOTFOUND : cx_db_err(step);
        }
    }
    cx_db_finish(st);
    return rc;
}

static void read_info_elem(sqlite3_stmt *st, void *elem)
{
    read_info(st, elem);
}

int cx_tokens_list(cx_tokens *t, cx_token_info **arr, size_t *n)
{
    if (t == NULL || arr == NULL || n == NULL)
        return CX_E_INVAL;
    return cx_db_collect(t->tk_st[S_LIST], sizeof **arr, read_info_elem, (void **)arr, n);
}

int cx_tokens_rotate(cx_tokens *t, const char *name, int64_t now, char token_out[65])
{
    (void)now; /* rotation keeps created_at; the time is taken for symmetry and audit */
    if (t == NULL || name == NULL || token_out == NULL)
        return CX_E_INVAL;
    uint8_t hash[CX_TOKEN_HASH_BYTES];
    char prefix[CX_TOKEN_PREFIX_CHARS + 1];
    cx_token_generate(token_out);
    cx_token_hash(token_out, hash);
    cx_token_prefix(token_out, prefix);
    sqlite3_stmt *st = t->tk_st[S_SET_HASH];
    int rc, changes = 0;
    if ((rc = cx_db_bind_text(st, 1, name)) || (rc = cx_db_bind_blob(st, 2, hash, sizeof hash)) ||
        (rc = cx_db_bind_text(st, 3, prefix)))
        cx_db_finish(st);
    else if ((rc = cx_db_run(st, &changes)) == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    sodium_memzero(hash, sizeof hash);
    if (rc != CX_OK)
        sodium_memzero(token_out, 65);
    return rc;
}

/* Run a one-name UPDATE/DELETE; CX_E_NOTFOUND when no row had that name. */
static int by_name(cx_tokens *t, enum stmt which, const char *name)
{
    if (t == NULL || name == NULL)
        return CX_E_INVAL;
    sqlite3_stmt *st = t->tk_st[which];
    int rc, changes = 0;
    if ((rc = cx_db_bind_text(st, 1, name)) != CX_OK) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_run(st, &changes)) == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    return rc;
}

int cx_tokens_revoke(cx_tokens *t, const char *name)
{
    return by_name(t, S_DELETE, name);
}

int cx_tokens_count(cx_tokens *t, size_t *n)
{
    if (t == NULL || n == NULL)
        return CX_E_INVAL;
    sqlite3_stmt *st = t->tk_st[S_COUNT];
    int step = sqlite3_step(st);
    int rc = step == SQLITE_ROW ? CX_OK : cx_db_err(step);
    if (rc == CX_OK)
        *n = (size_t)sqlite3_column_int64(st, 0);
    cx_db_finish(st);
    return rc;
}

int cx_tokens_touch(cx_tokens *t, const char *name, int64_t now)
{
    if (t == NULL || name == NULL)
        return CX_E_INVAL;
    sqlite3_stmt *st = t->tk_st[S_TOUCH];
    int rc, changes = 0;
    if ((rc = cx_db_bind_text(st, 1, name)) || (rc = cx_db_bind_i64(st, 2, now))) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_run(st, &changes)) == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    return rc;
}

/* ---- TOTP ---- */

/* The TOTP statements of auth_tokens, keyed by token name. */
static cx_totp_stmts totp_stmts(const cx_tokens *t)
{
    return (cx_totp_stmts){t->tk_st[S_TOTP_GET], t->tk_st[S_TOTP_ENABLE], t->tk_st[S_TOTP_ACCEPT]};
}

int cx_tokens_totp_setup(cx_tokens *t, const char *name,
                         char secret_b32_out[CX_TOKENS_TOTP_B32_SIZE])
{
    if (t == NULL || name == NULL || secret_b32_out == NULL)
        return CX_E_INVAL;
    secret_b32_out[0] = '\0';
    uint8_t key[CX_TOTP_SECRET_BYTES];
    cx_totp_new_secret(key);
    sqlite3_stmt *st = t->tk_st[S_TOTP_SET_PENDING];
    int rc, changes = 0;
    if ((rc = cx_db_bind_text(st, 1, name)) || (rc = cx_db_bind_blob(st, 2, key, sizeof key)))
        cx_db_finish(st);
    else if ((rc = cx_db_run(st, &changes)) == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    if (rc == CX_OK)
        cx_base32_encode(key, sizeof key, secret_b32_out, CX_TOKENS_TOTP_B32_SIZE);
    sodium_memzero(key, sizeof key);
    return rc;
}

int cx_tokens_totp_enable(cx_tokens *t, const char *name, const char *code, int64_t now_s)
{
    if (t == NULL)
        return CX_E_INVAL;
    cx_totp_stmts st = totp_stmts(t);
    return cx_totp_store_check(&st, name, code, now_s, true);
}

int cx_tokens_totp_disable(cx_tokens *t, const char *name)
{
    return by_name(t, S_TOTP_DISABLE, name);
}

int cx_tokens_totp_status(cx_tokens *t, const char *name, bool *configured, bool *enabled)
{
    cx_token_info info;
    int rc = cx_tokens_get(t, name, &info);
    if (rc != CX_OK)
        return rc;
    if (configured != NULL)
        *configured = info.totp_configured;
    if (enabled != NULL)
        *enabled = info.totp_enabled;
    return CX_OK;
}

int cx_tokens_totp_check(cx_tokens *t, const char *name, const char *code, int64_t now_s)
{
    if (t == NULL)
        return CX_E_INVAL;
    cx_totp_stmts st = totp_stmts(t);
    return cx_totp_store_check(&st, name, code, now_s, false);
}

/* ---- settings and audit ---- */

int cx_tokens_setting_get(cx_tokens *t, const char *key, char **value)
{
    if (t == NULL || key == NULL || value == NULL)
        return CX_E_INVAL;
    *value = NULL;
    sqlite3_stmt *st = t->tk_st[S_SETTING_GET];
    int rc = cx_db_bind_text(st, 1, key);
    if (rc == CX_OK) {
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            const char *v = (const char *)sqlite3_column_text(st, 0);
            if (v != NULL && (*value = strdup(v)) == NULL)
                rc = CX_E_NOMEM;
        } else if (step != SQLITE_DONE) {
            rc = cx_db_err(step);
        }
    }
    cx_db_finish(st);
    return rc;
}

int cx_tokens_setting_set(cx_tokens *t, const char *key, const char *value)
{
    if (t == NULL || key == NULL || value == NULL)
        return CX_E_INVAL;
    sqlite3_stmt *st = t->tk_st[S_SETTING_SET];
    int rc;
    if ((rc = cx_db_bind_text(st, 1, key)) || (rc = cx_db_bind_text(st, 2, value))) {
        cx_db_finish(st);
        return rc;
    }
    return cx_db_run(st, NULL);
}

int cx_tokens_audit(cx_tokens *t, int64_t now, const char *event, const char *token_name,
                    const char *addr, const char *result)
{
    if (t == NULL || event == NULL || result == NULL)
        return CX_E_INVAL;
    sqlite3_stmt *st = t->tk_st[S_AUDIT];
    int rc;
    if ((rc = cx_db_bind_i64(st, 1, now)) || (rc = cx_db_bind_text(st, 2, event)) ||
        (rc = cx_db_bind_text(st, 3, token_name)) || (rc = cx_db_bind_text(st, 4, addr)) ||
        (rc = cx_db_bind_text(st, 5, result))) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_run(st, NULL)) != CX_OK)
        return rc;
    /* Trimmed so failed attempts from the network cannot grow the file without bound. */
    return cx_db_trim_after_insert(t->tk_db, t->tk_st[S_AUDIT_TRIM], CX_CORE_AUDIT_MAX_ROWS);
}
