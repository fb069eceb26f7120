/* Maestro's store over maestro.db and maestro.key: users, sessions, pairing codes, the Core
 * registry, grants, settings and audit. No secret is kept in the clear except TOTP secrets,
 * which must be usable: tokens are SHA-256 hashed, pairing codes HMACed under the key in
 * maestro.key (outside the database, so a stolen database reveals no live code). The
 * server and the admin CLI open the same file at once; every decision that must hold
 * against the other process (last admin, TOTP replay, pairing uses) is one conditional
 * statement or one write transaction. Statements are prepared once and reset after use,
 * so no read snapshot outlives a call. */
#include "store.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "condrix/clock.h"
#include "condrix/config.h"
#include "condrix/db.h"
#include "condrix/error.h"
#include "condrix/limits.h"
#include "condrix/msg.h"
#include "condrix/pairing.h"
#include "condrix/password.h"
#include "condrix/token.h"
#include "condrix/totp.h"
#include "condrix/totpstore.h"
#include "condrix/utf8.h"

#define KEY_FILE "maestro.key"
#define DB_FILE "maestro.db"
/* Expired codes stay this long, so a late Core hears "expired" rather than "unknown". */
#define PAIRING_KEEP_EXPIRED_MS (24LL * 3600 * 1000)
#define AUDIT_LIST_DEFAULT 100
#define AUDIT_LIST_MAX 10000
/* Attempts at a fresh pairing code whose MAC is not already stored (35 bits; a clash is
 * improbable, not impossible). */
#define PAIRING_CREATE_TRIES 4

/* maestro.db's schema history; append, never edit a released entry. */
static const cx_db_migration mx_migrations[] = {
    {"CREATE TABLE users ("
     "  id TEXT PRIMARY KEY,"
     "  username TEXT NOT NULL UNIQUE COLLATE NOCASE,"
     "  password_hash TEXT NOT NULL,"
     "  role INTEGER NOT NULL DEFAULT 0,"
     "  created_at INTEGER NOT NULL,"
     "  totp_secret BLOB,"
     "  totp_pending BLOB,"
     "  totp_enabled INTEGER NOT NULL DEFAULT 0,"
     "  totp_last_step INTEGER NOT NULL DEFAULT -1);"
     "CREATE INDEX users_by_role ON users(role);"
     "CREATE TABLE sessions ("
     "  id TEXT PRIMARY KEY,"
     "  token_hash BLOB NOT NULL UNIQUE,"
     "  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
     "  created_at INTEGER NOT NULL,"
     "  expires_at INTEGER NOT NULL,"
     "  last_seen_at INTEGER NOT NULL DEFAULT 0,"
     "  ip TEXT NOT NULL DEFAULT '',"
     "  user_agent TEXT NOT NULL DEFAULT '');"
     "CREATE INDEX sessions_by_user ON sessions(user_id);"
     "CREATE INDEX sessions_by_expiry ON sessions(expires_at);"
     "CREATE TABLE cores ("
     "  id TEXT PRIMARY KEY,"
     "  core_id TEXT NOT NULL UNIQUE,"
     "  display_name TEXT NOT NULL DEFAULT '',"
     "  token_hash BLOB,"
     "  token_prefix TEXT NOT NULL DEFAULT '',"
     "  pending_hash BLOB,"
     "  pending_prefix TEXT,"
     "  paired_at INTEGER NOT NULL DEFAULT 0,"
     "  last_seen_at INTEGER NOT NULL DEFAULT 0);"
     "CREATE TABLE pairing_codes ("
     "  id TEXT PRIMARY KEY,"
     "  code_mac BLOB NOT NULL UNIQUE,"
     "  created_by TEXT NOT NULL,"
     "  created_at INTEGER NOT NULL,"
     "  expires_at INTEGER NOT NULL,"
     "  uses INTEGER NOT NULL DEFAULT 0,"
     "  max_uses INTEGER NOT NULL DEFAULT 1,"
     "  revoked INTEGER NOT NULL DEFAULT 0);"
     "CREATE INDEX pairing_codes_by_expiry ON pairing_codes(expires_at);"
     /* Redemptions handed a token but not yet acknowledged: each holds one use in flight. */
     "CREATE TABLE pairing_pending ("
     "  pairing_id TEXT NOT NULL REFERENCES pairing_codes(id) ON DELETE CASCADE,"
     "  core_id TEXT NOT NULL,"
     "  created_at INTEGER NOT NULL,"
     "  PRIMARY KEY (pairing_id, core_id));"
     "CREATE TABLE user_cores ("
     "  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
     "  core_id TEXT NOT NULL REFERENCES cores(id) ON DELETE CASCADE,"
     "  PRIMARY KEY (user_id, core_id));"
     "CREATE INDEX user_cores_by_core ON user_cores(core_id);"
     "CREATE TABLE audit ("
     "  id INTEGER PRIMARY KEY,"
     "  time INTEGER NOT NULL,"
     "  actor TEXT,"
     "  action TEXT NOT NULL,"
     "  target TEXT,"
     "  address TEXT,"
     "  result TEXT NOT NULL);"
     "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);"},
};

#define USER_COLS "id, username, role, created_at, totp_enabled, password_hash"
#define SESSION_COLS "id, user_id, created_at, expires_at, last_seen_at, ip, user_agent, token_hash"
#define PAIR_COLS "id, created_by, created_at, expires_at, uses, max_uses, revoked"
#define CORE_COLS                                                                          \
    "id, core_id, display_name, token_prefix, paired_at, last_seen_at, token_hash, pending_hash"

enum stmt {
    S_SETTING_GET,
    S_SETTING_SET,
    S_USER_INSERT,
    S_USER_BY_NAME,
    S_USER_BY_ID,
    S_USER_LIST,
    S_USER_DELETE,
    S_USER_SET_ROLE,
    S_USER_SET_HASH,
    S_USER_ADMIN_COUNT,
    S_USER_COUNT,
    S_TOTP_GET,
    S_TOTP_SET_PENDING,
    S_TOTP_ENABLE,
    S_TOTP_ACCEPT,
    S_TOTP_DISABLE,
    S_SESSION_INSERT,
    S_SESSION_BY_HASH,
    S_SESSION_DEL_HASH,
    S_SESSION_DEL_ID,
    S_SESSION_DEL_USER,
    S_SESSION_LIST,
    S_SESSION_TOUCH,
    S_SESSION_SWEEP,
    S_PAIR_INSERT,
    S_PAIR_BY_MAC,
    S_PAIR_BY_ID,
    S_PAIR_LIST,
    S_PAIR_REVOKE,
    S_PAIR_PENDING_HAS,
    S_PAIR_PENDING_COUNT,
    S_PAIR_PENDING_ADD,
    S_PAIR_PENDING_DEL,
    S_PAIR_USE_CORE,
    S_PAIR_PENDING_DEL_CORE,
    S_PAIR_USE,
    S_PAIR_SWEEP,
    S_CORE_UPSERT,
    S_CORE_BY_ID,
    S_CORE_BY_CORE_ID,
    S_CORE_LIST,
    S_CORE_PROMOTE,
    S_CORE_SET_PENDING,
    S_CORE_SET_TOKEN,
    S_CORE_RENAME,
    S_CORE_DELETE,
    S_CORE_SEEN,
    S_GRANT,
    S_GRANT_HAS,
    S_GRANT_DEL,
    S_GRANT_LIST,
    S_EXISTS_USER_CORE,
    S_AUDIT,
    S_AUDIT_TRIM,
    S_AUDIT_LIST,
    S_N_
};

static const char *const stmt_sql[S_N_] = {
    [S_SETTING_GET] = "SELECT value FROM settings WHERE key = ?1",
    [S_SETTING_SET] = "INSERT INTO settings (key, value) VALUES (?1, ?2)"
                      " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [S_USER_INSERT] = "INSERT INTO users (id, username, password_hash, role, created_at)"
                      " VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_USER_BY_NAME] = "SELECT " USER_COLS " FROM users WHERE username = ?1",
    [S_USER_BY_ID] = "SELECT " USER_COLS " FROM users WHERE id = ?1",
    [S_USER_LIST] = "SELECT " USER_COLS " FROM users ORDER BY username COLLATE NOCASE, id",
    /* The guard is in the statement, so two processes cannot each remove one of the last
     * two admins after both counted two. */
    [S_USER_DELETE] = "DELETE FROM users WHERE id = ?1 AND (role != 1 OR"
                      " (SELECT count(*) FROM users WHERE role = 1) > 1)",
    [S_USER_SET_ROLE] = "UPDATE users SET role = ?2 WHERE id = ?1 AND (?2 = 1 OR role != 1 OR"
                        " (SELECT count(*) FROM users WHERE role = 1) > 1)",
    [S_USER_SET_HASH] = "UPDATE users SET password_hash = ?2 WHERE id = ?1",
    [S_USER_ADMIN_COUNT] = "SELECT count(*) FROM users WHERE role = 1",
    [S_USER_COUNT] = "SELECT count(*) FROM users",
    [S_TOTP_GET] = "SELECT totp_secret, totp_pending, totp_enabled, totp_last_step"
                   " FROM users WHERE id = ?1",
    [S_TOTP_SET_PENDING] = "UPDATE users SET totp_pending = ?2 WHERE id = ?1",
    /* The enabling code's step counts as accepted (ARCHITECTURE: a step once accepted is
     * never accepted again), so it cannot sign in afterwards. */
    [S_TOTP_ENABLE] = "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL,"
                      " totp_enabled = 1, totp_last_step = ?2"
                      " WHERE id = ?1 AND totp_pending = ?3",
    /* The WHERE clause is the replay guard: of two processes accepting the same step, only
     * one UPDATE changes a row. */
    [S_TOTP_ACCEPT] = "UPDATE users SET totp_last_step = ?2 WHERE id = ?1"
                      " AND totp_enabled = 1 AND totp_last_step < ?2 AND totp_secret = ?3",
    [S_TOTP_DISABLE] = "UPDATE users SET totp_secret = NULL, totp_pending = NULL,"
                       " totp_enabled = 0, totp_last_step = -1 WHERE id = ?1",
    /* Selecting from users makes an unknown user a zero-row insert, not an FK error. */
    [S_SESSION_INSERT] = "INSERT INTO sessions (id, token_hash, user_id, created_at, expires_at,"
                         " last_seen_at, ip, user_agent)"
                         " SELECT ?1, ?2, id, ?4, ?5, ?4, ?6, ?7 FROM users WHERE id = ?3",
    /* One query per signed-in request: the session and, joined, who it belongs to now. */
    [S_SESSION_BY_HASH] = "SELECT s.id, s.user_id, s.created_at, s.expires_at, s.last_seen_at, "
                          "s.ip, s.user_agent, s.token_hash, u.username, u.role "
                          "FROM sessions s JOIN users u ON u.id = s.user_id "
                          "WHERE s.token_hash = ?1",
    [S_SESSION_DEL_HASH] = "DELETE FROM sessions WHERE token_hash = ?1",
    [S_SESSION_DEL_ID] = "DELETE FROM sessions WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)",
    [S_SESSION_DEL_USER] = "DELETE FROM sessions WHERE user_id = ?1 AND (?2 IS NULL OR id != ?2)",
    [S_SESSION_LIST] = "SELECT " SESSION_COLS " FROM sessions WHERE ?1 IS NULL OR user_id = ?1"
                       " ORDER BY created_at DESC, id",
    [S_SESSION_TOUCH] = "UPDATE sessions SET last_seen_at = ?2 WHERE id = ?1",
    [S_SESSION_SWEEP] = "DELETE FROM sessions WHERE expires_at <= ?1",
    [S_PAIR_INSERT] = "INSERT INTO pairing_codes (id, code_mac, created_by, created_at,"
                      " expires_at, max_uses) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_PAIR_BY_MAC] = "SELECT " PAIR_COLS ", code_mac FROM pairing_codes WHERE code_mac = ?1",
    [S_PAIR_BY_ID] = "SELECT " PAIR_COLS " FROM pairing_codes WHERE id = ?1",
    [S_PAIR_LIST] = "SELECT " PAIR_COLS " FROM pairing_codes WHERE revoked = 0"
                    " ORDER BY created_at DESC, id",
    [S_PAIR_REVOKE] = "UPDATE pairing_codes SET revoked = 1 WHERE id = ?1 AND revoked = 0",
    [S_PAIR_PENDING_HAS] = "SELECT 1 FROM pairing_pending WHERE pairing_id = ?1 AND core_id = ?2",
    [S_PAIR_PENDING_COUNT] = "SELECT count(*) FROM pairing_pending WHERE pairing_id = ?1",
    [S_PAIR_PENDING_ADD] = "INSERT INTO pairing_pending (pairing_id, core_id, created_at)"
                           " VALUES (?1, ?2, ?3)",
    [S_PAIR_PENDING_DEL] = "DELETE FROM pairing_pending WHERE pairing_id = ?1 AND core_id = ?2",
    [S_PAIR_USE] = "UPDATE pairing_codes SET uses = uses + 1 WHERE id = ?1",
    [S_PAIR_USE_CORE] = "UPDATE pairing_codes SET uses = uses + 1 WHERE id IN "
                        "(SELECT pairing_id FROM pairing_pending WHERE core_id = ?1)",
    [S_PAIR_PENDING_DEL_CORE] = "DELETE FROM pairing_pending WHERE core_id = ?1",
    [S_PAIR_SWEEP] = "DELETE FROM pairing_codes WHERE expires_at <= ?1",
    /* A Core paired again keeps its id (grants stay) and its permanent token until it acks
     * the new one; a new pending token replaces an earlier pending one. */
    [S_CORE_UPSERT] = "INSERT INTO cores (id, core_id, display_name, pending_hash, pending_prefix)"
                      " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(core_id) DO UPDATE SET"
                      " pending_hash = excluded.pending_hash,"
                      " pending_prefix = excluded.pending_prefix,"
                      " display_name = CASE WHEN ?6 THEN excluded.display_name"
                      " ELSE cores.display_name END",
    [S_CORE_BY_ID] = "SELECT " CORE_COLS " FROM cores WHERE id = ?1",
    [S_CORE_BY_CORE_ID] = "SELECT " CORE_COLS " FROM cores WHERE core_id = ?1",
    [S_CORE_LIST] = "SELECT " CORE_COLS " FROM cores ORDER BY display_name COLLATE NOCASE, id",
    /* ?3 (may be NULL) pins the pending hash we matched, in case it changed meanwhile. */
    [S_CORE_PROMOTE] = "UPDATE cores SET token_hash = pending_hash, token_prefix = pending_prefix,"
                       " pending_hash = NULL, pending_prefix = NULL,"
                       " paired_at = CASE WHEN paired_at = 0 THEN ?2 ELSE paired_at END"
                       " WHERE core_id = ?1 AND pending_hash IS NOT NULL"
                       " AND (?3 IS NULL OR pending_hash = ?3)",
    [S_CORE_SET_PENDING] = "UPDATE cores SET pending_hash = ?2, pending_prefix = ?3 WHERE id = ?1",
    [S_CORE_SET_TOKEN] = "UPDATE cores SET token_hash = ?2, token_prefix = ?3,"
                         " pending_hash = NULL, pending_prefix = NULL,"
                         " paired_at = CASE WHEN paired_at = 0 THEN ?4 ELSE paired_at END"
                         " WHERE id = ?1",
    [S_CORE_RENAME] = "UPDATE cores SET display_name = ?2 WHERE id = ?1",
    [S_CORE_DELETE] = "DELETE FROM cores WHERE id = ?1",
    [S_CORE_SEEN] = "UPDATE cores SET last_seen_at = ?2 WHERE id = ?1",
    [S_GRANT] = "INSERT OR IGNORE INTO user_cores (user_id, core_id)"
                " SELECT u.id, c.id FROM users u, cores c WHERE u.id = ?1 AND c.id = ?2",
    [S_GRANT_HAS] = "SELECT 1 FROM user_cores WHERE user_id = ?1 AND core_id = ?2",
    [S_GRANT_DEL] = "DELETE FROM user_cores WHERE user_id = ?1 AND core_id = ?2",
    [S_GRANT_LIST] = "SELECT user_id, core_id FROM user_cores ORDER BY user_id, core_id",
    [S_EXISTS_USER_CORE] = "SELECT (SELECT count(*) FROM users WHERE id = ?1),"
                           " (SELECT count(*) FROM cores WHERE id = ?2)",
    [S_AUDIT] = "INSERT INTO audit (time, actor, action, target, address, result)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_AUDIT_TRIM] = "DELETE FROM audit WHERE id <= ?1",
    [S_AUDIT_LIST] = "SELECT time, actor, action, target, address, result FROM audit"
                     " ORDER BY id DESC LIMIT ?1",
};

struct mx_store {
    sqlite3 *ms_db;                          /* maestro.db, WAL */
    sqlite3_stmt *ms_st[S_N_];               /* prepared at open; reset after every use */
    uint8_t ms_key[CX_PAIRING_KEY_BYTES];    /* from maestro.key; wiped at close */
    char ms_maestro_id[MX_ID_CHARS + 1];     /* settings "maestro.id" */
};

/* ---- statement plumbing (the shared part is in condrix/db.h) ---- */

/* Run a statement with text parameter ?1, and ?2 (NULL binds SQL NULL) if it has one. */
static int run_text2(mx_store *s, enum stmt which, const char *a, const char *b, int *changes)
{
    sqlite3_stmt *st = s->ms_st[which];
    int rc;
    if ((rc = cx_db_bind_text(st, 1, a)) != CX_OK ||
        (sqlite3_bind_parameter_count(st) >= 2 && (rc = cx_db_bind_text(st, 2, b)) != CX_OK)) {
        cx_db_finish(st);
        return rc;
    }
    return cx_db_run(st, changes);
}

static int count_query(mx_store *s, enum stmt which, const char *arg, int64_t *out)
{
    sqlite3_stmt *st = s->ms_st[which];
    int rc = CX_OK;
    if (arg != NULL && (rc = cx_db_bind_text(st, 1, arg)) != CX_OK) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_first_row(st)) != CX_OK)
        return rc == CX_E_NOTFOUND ? CX_E_DB : rc;
    *out = sqlite3_column_int64(st, 0);
    cx_db_finish(st);
    return CX_OK;
}

static void col_text(sqlite3_stmt *st, int col, char *out, size_t n)
{
    const char *v = (const char *)sqlite3_column_text(st, col);
    snprintf(out, n, "%s", v ? v : "");
}

/* A transaction of our own, or a savepoint inside the caller's (the CLI wraps a change
 * and its audit row in one transaction; the store's own multi-statement writes nest). */
static int tx_begin(mx_store *s, bool *nested)
{
    *nested = !sqlite3_get_autocommit(s->ms_db);
    return *nested ? cx_db_exec(s->ms_db, "SAVEPOINT mx_store") : cx_db_begin(s->ms_db);
}

static int tx_commit(mx_store *s, bool nested)
{
    return nested ? cx_db_exec(s->ms_db, "RELEASE mx_store") : cx_db_commit(s->ms_db);
}

static void tx_rollback(mx_store *s, bool nested)
{
    if (nested) {
        if (!sqlite3_get_autocommit(s->ms_db))
            (void)cx_db_exec(s->ms_db, "ROLLBACK TO mx_store; RELEASE mx_store");
    } else {
        cx_db_rollback(s->ms_db);
    }
}

/* ---- validation ---- */

static bool is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool mx_username_valid(const char *name)
{
    if (name == NULL || !is_alnum(name[0]))
        return false;
    size_t n = 0;
    for (const char *p = name; *p; p++, n++) {
        if (n >= MX_USERNAME_MAX)
            return false;
        if (!is_alnum(*p) && *p != '.' && *p != '_' && *p != '@' && *p != '-')
            return false;
    }
    return true;
}

/* A Core's own id: 1..MX_CORE_ID_MAX visible ASCII characters (it is a UUID in practice). */
static bool core_id_valid(const char *id)
{
    if (id == NULL || id[0] == '\0')
        return false;
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++, n++)
        if (n >= MX_CORE_ID_MAX || *p < 0x21 || *p > 0x7e)
            return false;
    return true;
}

/* A display name: UTF-8 of at most MX_DISPLAY_NAME_MAX bytes without control characters. */
static bool display_name_valid(const char *name)
{
    if (name == NULL)
        return false;
    size_t n = strlen(name);
    if (n == 0 || n > MX_DISPLAY_NAME_MAX || !cx_utf8_valid((const uint8_t *)name, n))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return false;
    return true;
}

/* Peer-chosen text (address, User-Agent) as printable ASCII within n bytes, so a listing
 * or a JSON answer never meets a control character or broken UTF-8. */
static void sanitize(const char *in, char *out, size_t n)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p && o + 1 < n; p++)
        out[o++] = *p >= 0x20 && *p < 0x7f ? (char)*p : '?';
    out[o] = '\0';
}

static bool id_arg_ok(const char *id)
{
    return id != NULL && id[0] != '\0' && strlen(id) <= MX_ID_CHARS;
}

/* ---- key file ---- */


static int read_key(const char *path, uint8_t key[CX_PAIRING_KEY_BYTES], char **errmsg)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        cx_set_errmsg(errmsg, "cannot open %s: %s", path, strerror(errno));
        return CX_E_IO;
    }
    int rc = CX_E_IO;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        cx_set_errmsg(errmsg, "cannot stat %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size != CX_PAIRING_KEY_BYTES) {
        cx_set_errmsg(errmsg,
                "%s is not a Maestro key (%lld bytes, expected %d): restore it from a backup, "
                "or delete it to make a new one (live pairing codes then stop working)",
                path, (long long)st.st_size, CX_PAIRING_KEY_BYTES);
        goto out;
    }
    if ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) != 0) {
        cx_set_errmsg(errmsg, "cannot make %s private (chmod 0600): %s", path, strerror(errno));
        goto out;
    }
    size_t got = 0;
    while (got < CX_PAIRING_KEY_BYTES) {
        ssize_t r = read(fd, key + got, CX_PAIRING_KEY_BYTES - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            cx_set_errmsg(errmsg, "cannot read %s: %s", path, r < 0 ? strerror(errno) : "short file");
            sodium_memzero(key, CX_PAIRING_KEY_BYTES);
            goto out;
        }
        got += (size_t)r;
    }
    rc = CX_OK;
out:
    close(fd);
    return rc;
}

/* Make the key in a private temporary file, then link it into place: link() fails if the
 * name exists, so of two processes starting at once exactly one key wins, and nobody can
 * ever read a half-written key. */
static int create_key(const char *dir, const char *path, char **errmsg)
{
    size_t n = strlen(dir) + sizeof "/" KEY_FILE ".tmp.XXXXXX";
    char *tmp = malloc(n);
    if (tmp == NULL)
        return CX_E_NOMEM;
    snprintf(tmp, n, "%s/" KEY_FILE ".tmp.XXXXXX", dir);
    uint8_t key[CX_PAIRING_KEY_BYTES];
    randombytes_buf(key, sizeof key);
    int rc = CX_E_IO;
    int fd = mkostemp(tmp, O_CLOEXEC); /* 0600 */
    if (fd < 0) {
        cx_set_errmsg(errmsg, "cannot create a key file in %s: %s", dir, strerror(errno));
        goto out;
    }
    size_t put = 0;
    while (put < sizeof key) {
        ssize_t w = write(fd, key + put, sizeof key - put);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        put += (size_t)w;
    }
    if (put != sizeof key || fsync(fd) != 0) {
        cx_set_errmsg(errmsg, "cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (link(tmp, path) != 0 && errno != EEXIST) {
        cx_set_errmsg(errmsg, "cannot create %s: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    unlink(tmp);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { /* the new name survives a power cut; best effort */
        (void)fsync(dfd);
        close(dfd);
    }
    rc = CX_OK;
out:
    sodium_memzero(key, sizeof key);
    free(tmp);
    return rc;
}

static int load_key(const char *dir, uint8_t key[CX_PAIRING_KEY_BYTES], char **errmsg)
{
    size_t n = strlen(dir) + sizeof "/" KEY_FILE;
    char *path = malloc(n);
    if (path == NULL)
        return CX_E_NOMEM;
    snprintf(path, n, "%s/" KEY_FILE, dir);
    int rc = CX_OK;
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT) {
            cx_set_errmsg(errmsg, "cannot stat %s: %s", path, strerror(errno));
            rc = CX_E_IO;
            goto out;
        }
        if ((rc = create_key(dir, path, errmsg)) != CX_OK)
            goto out;
    }
    /* Read back what is on disk, ours or the key another process linked first. */
    rc = read_key(path, key, errmsg);
out:
    free(path);
    return rc;
}

/* ---- open / close ---- */

static int ensure_maestro_id(mx_store *s)
{
    char *v = NULL;
    int rc = mx_setting_get(s, "maestro.id", &v);
    if (rc != CX_OK)
        return rc;
    if (v == NULL) {
        char fresh[MX_ID_CHARS + 1];
        cx_msg_new_id(fresh);
        /* Two first starts at once: the insert that loses keeps the winner's id. */
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->ms_db,
                               "INSERT OR IGNORE INTO settings (key, value)"
                               " VALUES ('maestro.id', ?1)",
                               -1, &st, NULL) != SQLITE_OK)
            return CX_E_DB;
        rc = cx_db_bind_text(st, 1, fresh);
        if (rc == CX_OK && sqlite3_step(st) != SQLITE_DONE)
            rc = CX_E_DB;
        sqlite3_finalize(st);
        if (rc != CX_OK || (rc = mx_setting_get(s, "maestro.id", &v)) != CX_OK)
            return rc;
        if (v == NULL)
            return CX_E_DB;
    }
    snprintf(s->ms_maestro_id, sizeof s->ms_maestro_id, "%s", v);
    free(v);
    return CX_OK;
}

int mx_store_open(const char *dir, mx_store **out, char **errmsg)
{
    if (errmsg != NULL)
        *errmsg = NULL;
    if (out == NULL || dir == NULL || dir[0] == '\0') {
        cx_set_errmsg(errmsg, "no Maestro home directory given");
        return CX_E_INVAL;
    }
    *out = NULL;
    if (sodium_init() < 0)
        return CX_E_CRYPTO;
    int rc = cx_mkdir_private(dir);
    if (rc != CX_OK) {
        cx_set_errmsg(errmsg, "cannot create the private directory %s: %s", dir,
                rc == CX_E_IO ? strerror(errno) : cx_strerror(rc));
        return rc;
    }
    mx_store *s = calloc(1, sizeof *s);
    if (s == NULL)
        return CX_E_NOMEM;
    if ((rc = load_key(dir, s->ms_key, errmsg)) != CX_OK)
        goto fail;
    size_t n = strlen(dir) + sizeof "/" DB_FILE;
    char *path = malloc(n);
    if (path == NULL) {
        rc = CX_E_NOMEM;
        goto fail;
    }
    snprintf(path, n, "%s/" DB_FILE, dir);
    rc = cx_db_open(path, mx_migrations, (int)(sizeof mx_migrations / sizeof *mx_migrations),
                    &s->ms_db, errmsg);
    if (rc != CX_OK) {
        free(path);
        goto fail;
    }
    /* Deleted rows (sessions, dropped TOTP secrets, old hashes) are overwritten on disk. */
    if ((rc = cx_db_exec(s->ms_db, "PRAGMA secure_delete=ON")) != CX_OK)
        goto fail_msg;
    /* Maestro commits on its event loop for every sign-in (session and audit rows); an
     * fsync per commit stalls every other client during a burst. In WAL mode NORMAL is
     * still safe against a killed process; only an OS crash can undo the last commits, and
     * every Core-token state that could roll back to is still accepted (pending tokens
     * are honoured), so no Core is locked out. The Core's own store keeps FULL. */
    if ((rc = cx_db_exec(s->ms_db, "PRAGMA synchronous=NORMAL")) != CX_OK)
        goto fail_msg;
    if ((rc = cx_db_prepare_all(s->ms_db, stmt_sql, S_N_, s->ms_st)) != CX_OK)
        goto fail_msg;
    if ((rc = ensure_maestro_id(s)) != CX_OK)
        goto fail_msg;
    free(path);
    *out = s;
    return CX_OK;
fail_msg:
    if (errmsg != NULL && *errmsg == NULL)
        cx_set_errmsg(errmsg, "cannot prepare %s: %s", path, sqlite3_errmsg(s->ms_db));
    free(path);
fail:
    mx_store_close(s);
    return rc;
}

void mx_store_close(mx_store *s)
{
    if (s == NULL)
        return;
    cx_db_finalize_all(s->ms_st, S_N_);
    cx_db_close(s->ms_db);
    sodium_memzero(s->ms_key, sizeof s->ms_key);
    free(s);
}

sqlite3 *mx_store_db(mx_store *s)
{
    return s ? s->ms_db : NULL;
}

const char *mx_store_maestro_id(mx_store *s)
{
    return s ? s->ms_maestro_id : NULL;
}

/* ---- settings ---- */

int mx_setting_get(mx_store *s, const char *key, char **value)
{
    if (s == NULL || key == NULL || value == NULL)
        return CX_E_INVAL;
    *value = NULL;
    sqlite3_stmt *st = s->ms_st[S_SETTING_GET];
    int rc = cx_db_bind_text(st, 1, key);
    if (rc != CX_OK) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_first_row(st)) != CX_OK)
        return rc == CX_E_NOTFOUND ? CX_OK : rc;
    const char *v = (const char *)sqlite3_column_text(st, 0);
    if (v != NULL && (*value = strdup(v)) == NULL)
        rc = CX_E_NOMEM;
    cx_db_finish(st);
    return rc;
}

int mx_setting_set(mx_store *s, const char *key, const char *value)
{
    if (s == NULL || key == NULL || value == NULL)
        return CX_E_INVAL;
    return run_text2(s, S_SETTING_SET, key, value, NULL);
}

/* ---- users ---- */

static void read_user(sqlite3_stmt *st, mx_user *u, char *hash_out)
{
    memset(u, 0, sizeof *u);
    col_text(st, 0, u->id, sizeof u->id);
    col_text(st, 1, u->username, sizeof u->username);
    u->role = sqlite3_column_int(st, 2) == MX_ROLE_ADMIN ? MX_ROLE_ADMIN : MX_ROLE_USER;
    u->created_at = sqlite3_column_int64(st, 3);
    u->totp_enabled = sqlite3_column_int(st, 4) != 0;
    if (hash_out != NULL)
        col_text(st, 5, hash_out, CX_PASSWORD_HASH_MAX);
}

static bool role_valid(int role)
{
    return role == MX_ROLE_USER || role == MX_ROLE_ADMIN;
}

static bool hash_arg_ok(const char *h)
{
    return h != NULL && h[0] != '\0' && strlen(h) < CX_PASSWORD_HASH_MAX;
}

int mx_user_create(mx_store *s, const char *username, const char *password_hash, int role,
                   int64_t now, mx_user *out)
{
    if (s == NULL || !mx_username_valid(username) || !hash_arg_ok(password_hash) ||
        !role_valid(role))
        return CX_E_INVAL;
    char id[MX_ID_CHARS + 1];
    cx_msg_new_id(id);
    sqlite3_stmt *st = s->ms_st[S_USER_INSERT];
    int rc;
    if ((rc = cx_db_bind_text(st, 1, id)) || (rc = cx_db_bind_text(st, 2, username)) ||
        (rc = cx_db_bind_text(st, 3, password_hash)) || (rc = cx_db_bind_i64(st, 4, role)) ||
        (rc = cx_db_bind_i64(st, 5, now))) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_run(st, NULL)) != CX_OK)
        return rc; /* CX_E_EXISTS: the NOCASE unique index said the name is taken */
    if (out != NULL) {
        memset(out, 0, sizeof *out);
        snprintf(out->id, sizeof out->id, "%s", id);
        snprintf(out->username, sizeof out->username, "%s", username);
        out->role = role;
        out->created_at = now;
    }
    return CX_OK;
}

static int user_lookup(mx_store *s, enum stmt which, const char *key, mx_user *out,
                       char *hash_out)
{
    if (s == NULL || key == NULL)
        return CX_E_INVAL;
    sqlite3_stmt *st = s->ms_st[which];
    int rc = cx_db_bind_text(st, 1, key);
    if (rc != CX_OK) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_first_row(st)) != CX_OK)
        return rc;
    mx_user tmp;
    read_user(st, &tmp, hash_out);
    cx_db_finish(st);
    if (out != NULL)
        *out = tmp;
    return CX_OK;
}

int mx_user_by_name(mx_store *s, const char *username, mx_user *out, char *hash_out)
{
    return user_lookup(s, S_USER_BY_NAME, username, out, hash_out);
}

int mx_user_by_id(mx_store *s, const char *id, mx_user *out, char *hash_out)
{
    return user_lookup(s, S_USER_BY_ID, id, out, hash_out);
}


static void read_user_elem(sqlite3_stmt *st, void *elem)
{
    read_user(st, elem, NULL);
}

int mx_user_list(mx_store *s, mx_user **arr, size_t *n)
{
    if (s == NULL || arr == NULL || n == NULL)
        return CX_E_INVAL;
    return cx_db_collect(s->ms_st[S_USER_LIST], sizeof **arr, read_user_elem, (void **)arr, n);
}

/* After a guarded statement changed nothing: was the row missing, or was it the guard? */
static int guard_reason(mx_store *s, const char *id)
{
    int rc = mx_user_by_id(s, id, NULL, NULL);
    return rc == CX_OK ? CX_E_DENIED : rc;
}

int mx_user_delete(mx_store *s, const char *id)
{
    if (s == NULL || !id_arg_ok(id))
        return CX_E_INVAL;
    int changes = 0;
    int rc = run_text2(s, S_USER_DELETE, id, NULL, &changes);
    if (rc == CX_OK && changes == 0)
        rc = guard_reason(s, id);
    return rc;
}

int mx_user_set_role(mx_store *s, const char *id, int role)
{
    if (s == NULL || !id_arg_ok(id) || !role_valid(role))
        return CX_E_INVAL;
    sqlite3_stmt *st = s->ms_st[S_USER_SET_ROLE];
    int rc, changes = 0;
    if ((rc = cx_db_bind_text(st, 1, id)) || (rc = cx_db_bind_i64(st, 2, role))) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_run(st, &changes)) == CX_OK && changes == 0)
        rc = guard_reason(s, id);
    return rc;
}

int mx_user_set_password(mx_store *s, const char *id, const char *password_hash,
                         const char *keep_session_id)
{
    if (s == NULL || !id_arg_ok(id) || !hash_arg_ok(password_hash))
        return CX_E_INVAL;
    bool nested;
    int rc = tx_begin(s, &nested);
    if (rc != CX_OK)
        return rc;
    int changes = 0;
    if ((rc = run_text2(s, S_USER_SET_HASH, id, password_hash, &changes)) != CX_OK)
        goto fail;
    if (changes == 0) {
        rc = CX_E_NOTFOUND;
        goto fail;
    }
    if ((rc = run_text2(s, S_SESSION_DEL_USER, id, keep_session_id, NULL)) != CX_OK)
        goto fail;
    if ((rc = tx_commit(s, nested)) != CX_OK)
        goto fail;
    return CX_OK;
fail:
    tx_rollback(s, nested);
    return rc;
}

size_t mx_user_admin_count(mx_store *s)
{
    int64_t n = 0;
    return s != NULL && count_query(s, S_USER_ADMIN_COUNT, NULL, &n) == CX_OK ? (size_t)n : 0;
}

size_t mx_user_count(mx_store *s)
{
    int64_t n = 0;
    return s != NULL && count_query(s, S_USER_COUNT, NULL, &n) == CX_OK ? (size_t)n : 0;
}

/* ---- user TOTP ---- */

/* The TOTP statements of users, keyed by user id. */
static cx_totp_stmts totp_stmts(const mx_store *s)
{
    return (cx_totp_stmts){s->ms_st[S_TOTP_GET], s->ms_st[S_TOTP_ENABLE], s->ms_st[S_TOTP_ACCEPT]};
}

int mx_user_totp_set_pending(mx_store *s, const char *user_id, const uint8_t *secret, size_t n)
{
    if (s == NULL || !id_arg_ok(user_id) || secret == NULL || n == 0 || n > MX_TOTP_SECRET_MAX)
        return CX_E_INVAL;
    sqlite3_stmt *st = s->ms_st[S_TOTP_SET_PENDING];
    int rc, changes = 0;
    if ((rc = cx_db_bind_text(st, 1, user_id)) || (rc = cx_db_bind_blob(st, 2, secret, n))) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_run(st, &changes)) == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    return rc;
}

int mx_user_totp_get(mx_store *s, const char *user_id, uint8_t *active, size_t *active_n,
                     uint8_t *pending, size_t *pending_n, bool *enabled)
{
    if (s == NULL || user_id == NULL)
        return CX_E_INVAL;
    cx_totp_row row;
    cx_totp_stmts st = totp_stmts(s);
    int rc = cx_totp_store_load(&st, user_id, &row);
    if (rc == CX_OK && (row.active_len > MX_TOTP_SECRET_MAX || row.pending_len > MX_TOTP_SECRET_MAX))
        rc = CX_E_DB; /* the caller's buffers hold MX_TOTP_SECRET_MAX */
    if (rc == CX_OK) {
        if (active != NULL)
            memcpy(active, row.active, row.active_len);
        if (active_n != NULL)
            *active_n = active != NULL ? row.active_len : 0;
        if (pending != NULL)
            memcpy(pending, row.pending, row.pending_len);
        if (pending_n != NULL)
            *pending_n = pending != NULL ? row.pending_len : 0;
        if (enabled != NULL)
            *enabled = row.enabled;
    }
    sodium_memzero(&row, sizeof row);
    return rc;
}

int mx_user_totp_check(mx_store *s, const char *user_id, const char *code, int64_t now_s,
                       bool activate_pending)
{
    if (s == NULL)
        return CX_E_INVAL;
    cx_totp_stmts st = totp_stmts(s);
    return cx_totp_store_check(&st, user_id, code, now_s, activate_pending);
}

int mx_user_totp_disable(mx_store *s, const char *user_id)
{
    if (s == NULL || !id_arg_ok(user_id))
        return CX_E_INVAL;
    int changes = 0;
    int rc = run_text2(s, S_TOTP_DISABLE, user_id, NULL, &changes);
    if (rc == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    return rc;
}

/* ---- sessions ---- */

static void read_session(sqlite3_stmt *st, mx_session *x)
{
    memset(x, 0, sizeof *x);
    col_text(st, 0, x->id, sizeof x->id);
    col_text(st, 1, x->user_id, sizeof x->user_id);
    x->created_at = sqlite3_column_int64(st, 2);
    x->expires_at = sqlite3_column_int64(st, 3);
    x->last_seen_at = sqlite3_column_int64(st, 4);
    col_text(st, 5, x->ip, sizeof x->ip);
    col_text(st, 6, x->user_agent, sizeof x->user_agent);
}

static void read_session_elem(sqlite3_stmt *st, void *elem)
{
    read_session(st, elem);
}

int mx_session_create(mx_store *s, const char *user_id, const char *ip, const char *user_agent,
                      int64_t now, char token_out[65], mx_session *out)
{
    if (token_out != NULL)
        token_out[0] = '\0';
    if (s == NULL || !id_arg_ok(user_id) || token_out == NULL)
        return CX_E_INVAL;
    mx_session x;
    memset(&x, 0, sizeof x);
    cx_msg_new_id(x.id);
    snprintf(x.user_id, sizeof x.user_id, "%s", user_id);
    x.created_at = now;
    x.expires_at = now + MX_SESSION_TTL_MS;
    x.last_seen_at = now;
    sanitize(ip, x.ip, sizeof x.ip);
    sanitize(user_agent, x.user_agent, sizeof x.user_agent);
    uint8_t hash[CX_TOKEN_HASH_BYTES];
    cx_token_generate(token_out);
    cx_token_hash(token_out, hash);
    sqlite3_stmt *st = s->ms_st[S_SESSION_INSERT];
    int rc, changes = 0;
    if ((rc = cx_db_bind_text(st, 1, x.id)) || (rc = cx_db_bind_blob(st, 2, hash, sizeof hash)) ||
        (rc = cx_db_bind_text(st, 3, x.user_id)) || (rc = cx_db_bind_i64(st, 4, now)) ||
        (rc = cx_db_bind_i64(st, 5, x.expires_at)) || (rc = cx_db_bind_text(st, 6, x.ip)) ||
        (rc = cx_db_bind_text(st, 7, x.user_agent)))
        cx_db_finish(st);
    else if ((rc = cx_db_run(st, &changes)) == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    sodium_memzero(hash, sizeof hash);
    if (rc != CX_OK)
        sodium_memzero(token_out, 65);
    else if (out != NULL)
        *out = x;
    return rc;
}

int mx_session_check_hash(mx_store *s, const uint8_t hash[CX_TOKEN_HASH_BYTES], int64_t now,
                          mx_session *out, mx_user *user_out)
{
    if (s == NULL || hash == NULL)
        return CX_E_INVAL;
    sqlite3_stmt *st = s->ms_st[S_SESSION_BY_HASH];
    int rc = cx_db_bind_blob(st, 1, hash, CX_TOKEN_HASH_BYTES);
    if (rc != CX_OK) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_first_row(st)) != CX_OK)
        return rc;
    /* The index found the row; confirming in constant time keeps the decision independent
     * of how SQLite compares blobs. */
    const void *h = sqlite3_column_blob(st, 7);
    if (h == NULL || sqlite3_column_bytes(st, 7) != CX_TOKEN_HASH_BYTES ||
        sodium_memcmp(h, hash, CX_TOKEN_HASH_BYTES) != 0) {
        cx_db_finish(st);
        return CX_E_NOTFOUND;
    }
    mx_session x;
    read_session(st, &x);
    if (user_out != NULL) {
        memset(user_out, 0, sizeof *user_out);
        memcpy(user_out->id, x.user_id, sizeof user_out->id);
        col_text(st, 8, user_out->username, sizeof user_out->username);
        user_out->role = sqlite3_column_int(st, 9) == MX_ROLE_ADMIN ? MX_ROLE_ADMIN : MX_ROLE_USER;
    }
    cx_db_finish(st);
    if (out != NULL)
        *out = x;
    return x.expires_at <= now ? CX_E_EXPIRED : CX_OK;
}

int mx_session_check(mx_store *s, const char *token, int64_t now, mx_session *out)
{
    if (s == NULL || token == NULL)
        return CX_E_INVAL;
    if (!cx_token_well_formed(token))
        return CX_E_FORMAT;
    uint8_t hash[CX_TOKEN_HASH_BYTES];
    cx_token_hash(token, hash);
    int rc = mx_session_check_hash(s, hash, now, out, NULL);
    sodium_memzero(hash, sizeof hash);
    return rc;
}

int mx_session_revoke_hash(mx_store *s, const uint8_t hash[CX_TOKEN_HASH_BYTES])
{
    if (s == NULL || hash == NULL)
        return CX_E_INVAL;
    sqlite3_stmt *st = s->ms_st[S_SESSION_DEL_HASH];
    int rc, changes = 0;
    if ((rc = cx_db_bind_blob(st, 1, hash, CX_TOKEN_HASH_BYTES)) != CX_OK)
        cx_db_finish(st);
    else if ((rc = cx_db_run(st, &changes)) == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    return rc;
}

int mx_session_revoke_token(mx_store *s, const char *token)
{
    if (s == NULL || token == NULL)
        return CX_E_INVAL;
    if (!cx_token_well_formed(token))
        return CX_E_FORMAT;
    uint8_t hash[CX_TOKEN_HASH_BYTES];
    cx_token_hash(token, hash);
    int rc = mx_session_revoke_hash(s, hash);
    sodium_memzero(hash, sizeof hash);
    return rc;
}

int mx_session_revoke_id(mx_store *s, const char *user_id, const char *session_id)
{
    if (s == NULL || !id_arg_ok(session_id))
        return CX_E_INVAL;
    int changes = 0;
    int rc = run_text2(s, S_SESSION_DEL_ID, session_id, user_id, &changes);
    if (rc == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    return rc;
}

int mx_session_list(mx_store *s, const char *user_id, mx_session **arr, size_t *n)
{
    if (s == NULL || arr == NULL || n == NULL)
        return CX_E_INVAL;
    *arr = NULL;
    *n = 0;
    sqlite3_stmt *st = s->ms_st[S_SESSION_LIST];
    int rc = cx_db_bind_text(st, 1, user_id);
    if (rc != CX_OK) {
        cx_db_finish(st);
        return rc;
    }
    return cx_db_collect(st, sizeof **arr, read_session_elem, (void **)arr, n);
}

int mx_session_touch(mx_store *s, const char *session_id, int64_t now)
{
    if (s == NULL || !id_arg_ok(session_id))
        return CX_E_INVAL;
    sqlite3_stmt *st = s->ms_st[S_SESSION_TOUCH];
    int rc, changes = 0;
    if ((rc = cx_db_bind_text(st, 1, session_id)) || (rc = cx_db_bind_i64(st, 2, now))) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_run(st, &changes)) == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    return rc;
}

int mx_session_sweep(mx_store *s, int64_t now, size_t *n)
{
    if (n != NULL)
        *n = 0;
    if (s == NULL)
        return CX_E_INVAL;
    sqlite3_stmt *st = s->ms_st[S_SESSION_SWEEP];
    int rc, changes = 0;
    if ((rc = cx_db_bind_i64(st, 1, now)) != CX_OK) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_run(st, &changes)) == CX_OK && n != NULL)
        *n = (size_t)changes;
    return rc;
}

/* ---- pairing codes ---- */

static void read_pairing(sqlite3_stmt *st, mx_pairing *p)
{
    memset(p, 0, sizeof *p);
    col_text(st, 0, p->id, sizeof p->id);
    col_text(st, 1, p->created_by, sizeof p->created_by);
    p->created_at = sqlite3_column_int64(st, 2);
    p->expires_at = sqlite3_column_int64(st, 3);
    p->uses = sqlite3_column_int(st, 4);
    p->max_uses = sqlite3_column_int(st, 5);
}

static void read_pairing_elem(sqlite3_stmt *st, void *elem)
{
    read_pairing(st, elem);
}

int mx_pairing_create(mx_store *s, const char *created_by, int max_uses, int64_t ttl_ms,
                      int64_t now, char code_out[7], mx_pairing *out)
{
    if (code_out != NULL)
        code_out[0] = '\0';
    if (s == NULL || code_out == NULL || created_by == NULL || created_by[0] == '\0' ||
        strlen(created_by) > MX_USERNAME_MAX || max_uses < 1 || max_uses > MX_PAIRING_MAX_USES ||
        ttl_ms < 1000 || ttl_ms > MX_PAIRING_MAX_TTL_MS)
        return CX_E_INVAL;
    mx_pairing p;
    memset(&p, 0, sizeof p);
    cx_msg_new_id(p.id);
    snprintf(p.created_by, sizeof p.created_by, "%s", created_by);
    p.created_at = now;
    p.expires_at = now + ttl_ms;
    p.max_uses = max_uses;
    uint8_t mac[CX_PAIRING_MAC_BYTES];
    int rc = CX_E_EXISTS;
    for (int tries = 0; tries < PAIRING_CREATE_TRIES && rc == CX_E_EXISTS; tries++) {
        cx_pairing_generate(code_out);
        cx_pairing_mac(s->ms_key, code_out, mac);
        sqlite3_stmt *st = s->ms_st[S_PAIR_INSERT];
        if ((rc = cx_db_bind_text(st, 1, p.id)) || (rc = cx_db_bind_blob(st, 2, mac, sizeof mac)) ||
            (rc = cx_db_bind_text(st, 3, p.created_by)) || (rc = cx_db_bind_i64(st, 4, now)) ||
            (rc = cx_db_bind_i64(st, 5, p.expires_at)) || (rc = cx_db_bind_i64(st, 6, max_uses))) {
            cx_db_finish(st);
            break;
        }
        rc = cx_db_run(st, NULL);
    }
    sodium_memzero(mac, sizeof mac);
    if (rc != CX_OK)
        sodium_memzero(code_out, 7);
    else if (out != NULL)
        *out = p;
    return rc;
}

int mx_pairing_get(mx_store *s, const char *id, mx_pairing *out)
{
    if (s == NULL || id == NULL)
        return CX_E_INVAL;
    sqlite3_stmt *st = s->ms_st[S_PAIR_BY_ID];
    int rc = cx_db_bind_text(st, 1, id);
    if (rc != CX_OK) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_first_row(st)) != CX_OK)
        return rc;
    mx_pairing p;
    read_pairing(st, &p);
    cx_db_finish(st);
    if (out != NULL)
        *out = p;
    return CX_OK;
}

int mx_pairing_list(mx_store *s, mx_pairing **arr, size_t *n)
{
    if (s == NULL || arr == NULL || n == NULL)
        return CX_E_INVAL;
    return cx_db_collect(s->ms_st[S_PAIR_LIST], sizeof **arr, read_pairing_elem, (void **)arr, n);
}

int mx_pairing_revoke(mx_store *s, const char *id)
{
    if (s == NULL || !id_arg_ok(id))
        return CX_E_INVAL;
    int changes = 0;
    int rc = run_text2(s, S_PAIR_REVOKE, id, NULL, &changes);
    if (rc == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    return rc;
}

/* A query with text ?1 and ?2 that answers one row or none. */
static int exists2(mx_store *s, enum stmt which, const char *a, const char *b, bool *yes)
{
    sqlite3_stmt *st = s->ms_st[which];
    int rc;
    if ((rc = cx_db_bind_text(st, 1, a)) || (rc = cx_db_bind_text(st, 2, b))) {
        cx_db_finish(st);
        return rc;
    }
    rc = cx_db_first_row(st);
    *yes = rc == CX_OK;
    if (rc == CX_OK)
        cx_db_finish(st);
    return rc == CX_E_NOTFOUND ? CX_OK : rc;
}

int mx_pairing_redeem(mx_store *s, const char *code, const char *core_id, int64_t now,
                      char pairing_id[MX_ID_CHARS + 1])
{
    if (pairing_id != NULL)
        pairing_id[0] = '\0';
    if (s == NULL || code == NULL || pairing_id == NULL || !core_id_valid(core_id))
        return CX_E_INVAL;
    if (!cx_pairing_well_formed(code))
        return CX_E_NOTFOUND;
    uint8_t mac[CX_PAIRING_MAC_BYTES];
    cx_pairing_mac(s->ms_key, code, mac);
    /* The uses are counted and the redemption recorded under one write lock, so two Cores
     * racing for the last use cannot both get it. */
    bool nested;
    int rc = tx_begin(s, &nested);
    if (rc != CX_OK)
        goto out;
    sqlite3_stmt *st = s->ms_st[S_PAIR_BY_MAC];
    if ((rc = cx_db_bind_blob(st, 1, mac, sizeof mac)) != CX_OK) {
        cx_db_finish(st);
        goto fail;
    }
    if ((rc = cx_db_first_row(st)) != CX_OK)
        goto fail;
    const void *m = sqlite3_column_blob(st, 7);
    bool match = m != NULL && sqlite3_column_bytes(st, 7) == CX_PAIRING_MAC_BYTES &&
                 sodium_memcmp(m, mac, CX_PAIRING_MAC_BYTES) == 0;
    mx_pairing p;
    read_pairing(st, &p);
    bool revoked = sqlite3_column_int(st, 6) != 0;
    cx_db_finish(st);
    if (!match || revoked) {
        rc = CX_E_NOTFOUND;
        goto fail;
    }
    if (p.expires_at <= now) {
        rc = CX_E_EXPIRED;
        goto fail;
    }
    if (p.uses >= p.max_uses) {
        rc = CX_E_REPLAY;
        goto fail;
    }
    bool mine = false;
    if ((rc = exists2(s, S_PAIR_PENDING_HAS, p.id, core_id, &mine)) != CX_OK)
        goto fail;
    if (!mine) {
        /* Each unacknowledged redemption by another Core holds a use in flight. */
        int64_t in_flight = 0;
        if ((rc = count_query(s, S_PAIR_PENDING_COUNT, p.id, &in_flight)) != CX_OK)
            goto fail;
        if (p.uses + in_flight >= p.max_uses) {
            rc = CX_E_REPLAY;
            goto fail;
        }
        st = s->ms_st[S_PAIR_PENDING_ADD];
        if ((rc = cx_db_bind_text(st, 1, p.id)) || (rc = cx_db_bind_text(st, 2, core_id)) ||
            (rc = cx_db_bind_i64(st, 3, now))) {
            cx_db_finish(st);
            goto fail;
        }
        if ((rc = cx_db_run(st, NULL)) != CX_OK)
            goto fail;
    }
    if ((rc = tx_commit(s, nested)) != CX_OK)
        goto fail;
    snprintf(pairing_id, MX_ID_CHARS + 1, "%s", p.id);
    goto out;
fail:
    tx_rollback(s, nested);
out:
    sodium_memzero(mac, sizeof mac);
    return rc;
}

int mx_pairing_consume(mx_store *s, const char *pairing_id, const char *core_id)
{
    if (s == NULL || !id_arg_ok(pairing_id) || core_id == NULL)
        return CX_E_INVAL;
    bool nested;
    int rc = tx_begin(s, &nested);
    if (rc != CX_OK)
        return rc;
    int changes = 0;
    if ((rc = run_text2(s, S_PAIR_PENDING_DEL, pairing_id, core_id, &changes)) != CX_OK)
        goto fail;
    if (changes == 1) {
        /* Only a redemption still pending counts, so a repeated ack uses nothing. */
        if ((rc = run_text2(s, S_PAIR_USE, pairing_id, NULL, &changes)) != CX_OK)
            goto fail;
    } else if ((rc = mx_pairing_get(s, pairing_id, NULL)) != CX_OK) {
        goto fail;
    }
    if ((rc = tx_commit(s, nested)) != CX_OK)
        goto fail;
    return CX_OK;
fail:
    tx_rollback(s, nested);
    return rc;
}

int mx_pairing_consume_core(mx_store *s, const char *core_id)
{
    if (s == NULL || core_id == NULL)
        return CX_E_INVAL;
    bool nested;
    int rc = tx_begin(s, &nested);
    if (rc != CX_OK)
        return rc;
    if ((rc = run_text2(s, S_PAIR_USE_CORE, core_id, NULL, NULL)) != CX_OK ||
        (rc = run_text2(s, S_PAIR_PENDING_DEL_CORE, core_id, NULL, NULL)) != CX_OK)
        goto fail;
    if ((rc = tx_commit(s, nested)) != CX_OK)
        goto fail;
    return CX_OK;
fail:
    tx_rollback(s, nested);
    return rc;
}

int mx_pairing_sweep(mx_store *s, int64_t now)
{
    if (s == NULL)
        return CX_E_INVAL;
    sqlite3_stmt *st = s->ms_st[S_PAIR_SWEEP];
    int rc = cx_db_bind_i64(st, 1, now - PAIRING_KEEP_EXPIRED_MS);
    if (rc != CX_OK) {
        cx_db_finish(st);
        return rc;
    }
    return cx_db_run(st, NULL);
}

/* ---- Cores ---- */

typedef struct core_row {
    mx_core core;                           /* the public view */
    uint8_t token_hash[CX_TOKEN_HASH_BYTES]; /* valid when has_token */
    uint8_t pending_hash[CX_TOKEN_HASH_BYTES]; /* valid when has_pending */
    bool has_token, has_pending;
} core_row;

static bool copy_hash(sqlite3_stmt *st, int col, uint8_t out[CX_TOKEN_HASH_BYTES])
{
    const void *p = sqlite3_column_blob(st, col);
    if (p == NULL || sqlite3_column_bytes(st, col) != CX_TOKEN_HASH_BYTES)
        return false;
    memcpy(out, p, CX_TOKEN_HASH_BYTES);
    return true;
}

static void read_core(sqlite3_stmt *st, mx_core *c)
{
    memset(c, 0, sizeof *c);
    col_text(st, 0, c->id, sizeof c->id);
    col_text(st, 1, c->core_id, sizeof c->core_id);
    col_text(st, 2, c->display_name, sizeof c->display_name);
    col_text(st, 3, c->token_prefix, sizeof c->token_prefix);
    c->paired_at = sqlite3_column_int64(st, 4);
    c->last_seen_at = sqlite3_column_int64(st, 5);
}

static void read_core_elem(sqlite3_stmt *st, void *elem)
{
    read_core(st, elem);
}

/* Load a Core with its hashes (the caller wipes *row). CX_E_NOTFOUND. */
static int core_load(mx_store *s, enum stmt which, const char *key, core_row *row)
{
    memset(row, 0, sizeof *row);
    sqlite3_stmt *st = s->ms_st[which];
    int rc = cx_db_bind_text(st, 1, key);
    if (rc != CX_OK) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_first_row(st)) != CX_OK)
        return rc;
    read_core(st, &row->core);
    row->has_token = copy_hash(st, 6, row->token_hash);
    row->has_pending = copy_hash(st, 7, row->pending_hash);
    cx_db_finish(st);
    return CX_OK;
}

int mx_core_by_id(mx_store *s, const char *id, mx_core *out)
{
    if (s == NULL || id == NULL)
        return CX_E_INVAL;
    core_row row;
    int rc = core_load(s, S_CORE_BY_ID, id, &row);
    if (rc == CX_OK && out != NULL)
        *out = row.core;
    sodium_memzero(&row, sizeof row);
    return rc;
}

int mx_core_by_core_id(mx_store *s, const char *core_id, mx_core *out)
{
    if (s == NULL || core_id == NULL)
        return CX_E_INVAL;
    core_row row;
    int rc = core_load(s, S_CORE_BY_CORE_ID, core_id, &row);
    if (rc == CX_OK && out != NULL)
        *out = row.core;
    sodium_memzero(&row, sizeof row);
    return rc;
}

int mx_core_list(mx_store *s, mx_core **arr, size_t *n)
{
    if (s == NULL || arr == NULL || n == NULL)
        return CX_E_INVAL;
    return cx_db_collect(s->ms_st[S_CORE_LIST], sizeof **arr, read_core_elem, (void **)arr, n);
}

int mx_core_issue_token(mx_store *s, const char *core_id, const char *display_name,
                        int64_t now, char token_out[65], mx_core *out)
{
    (void)now; /* the Core counts as paired when it acks, not when the token is issued */
    if (token_out != NULL)
        token_out[0] = '\0';
    /* The name comes from the Core; one we cannot show is not worth failing a pairing
     * over: the Core's id stands in (new Core) or the old name stays. */
    bool named = display_name_valid(display_name);
    if (s == NULL || token_out == NULL || !core_id_valid(core_id))
        return CX_E_INVAL;
    char id[MX_ID_CHARS + 1];
    char prefix[CX_TOKEN_PREFIX_CHARS + 1];
    uint8_t hash[CX_TOKEN_HASH_BYTES];
    cx_msg_new_id(id);
    cx_token_generate(token_out);
    cx_token_hash(token_out, hash);
    cx_token_prefix(token_out, prefix);
    sqlite3_stmt *st = s->ms_st[S_CORE_UPSERT];
    int rc;
    if ((rc = cx_db_bind_text(st, 1, id)) || (rc = cx_db_bind_text(st, 2, core_id)) ||
        (rc = cx_db_bind_text(st, 3, named ? display_name : core_id)) ||
        (rc = cx_db_bind_blob(st, 4, hash, sizeof hash)) || (rc = cx_db_bind_text(st, 5, prefix)) ||
        (rc = cx_db_bind_i64(st, 6, named))) {
        cx_db_finish(st);
        goto out;
    }
    if ((rc = cx_db_run(st, NULL)) != CX_OK)
        goto out;
    if (out != NULL)
        rc = mx_core_by_core_id(s, core_id, out);
out:
    sodium_memzero(hash, sizeof hash);
    if (rc != CX_OK)
        sodium_memzero(token_out, 65);
    return rc;
}

/* Promote the pending token of core_id; pinned (may be NULL) must still be the pending hash. */
static int core_promote(mx_store *s, const char *core_id, const uint8_t *pinned, int *changes)
{
    sqlite3_stmt *st = s->ms_st[S_CORE_PROMOTE];
    int rc;
    if ((rc = cx_db_bind_text(st, 1, core_id)) || (rc = cx_db_bind_i64(st, 2, cx_clock_now_ms())) ||
        (rc = cx_db_bind_blob(st, 3, pinned, CX_TOKEN_HASH_BYTES))) {
        cx_db_finish(st);
        return rc;
    }
    return cx_db_run(st, changes);
}

int mx_core_ack_token(mx_store *s, const char *core_id)
{
    if (s == NULL || core_id == NULL)
        return CX_E_INVAL;
    int changes = 0;
    int rc = core_promote(s, core_id, NULL, &changes);
    if (rc == CX_OK && changes == 0)
        rc = mx_core_by_core_id(s, core_id, NULL); /* nothing pending: a repeated ack is fine */
    return rc;
}

int mx_core_check_token(mx_store *s, const char *core_id, const char *token, mx_core *out)
{
    if (s == NULL || core_id == NULL || token == NULL)
        return CX_E_INVAL;
    core_row row;
    uint8_t hash[CX_TOKEN_HASH_BYTES];
    bool well_formed = cx_token_well_formed(token);
    if (well_formed)
        cx_token_hash(token, hash);
    else
        memset(hash, 0, sizeof hash);
    int rc = core_load(s, S_CORE_BY_CORE_ID, core_id, &row);
    if (rc != CX_OK)
        goto out;
    /* Both comparisons always run, so timing says nothing about which one matched. */
    bool cur = row.has_token && sodium_memcmp(row.token_hash, hash, sizeof hash) == 0;
    bool pend = row.has_pending && sodium_memcmp(row.pending_hash, hash, sizeof hash) == 0;
    if (!well_formed || (!cur && !pend)) {
        rc = CX_E_DENIED;
        goto out;
    }
    if (!cur) {
        /* The Core stored the pending token and lost the ack (crash, dropped link): it
         * has proved it holds the token, so it becomes the permanent one. */
        int changes = 0;
        if ((rc = core_promote(s, core_id, hash, &changes)) != CX_OK)
            goto out;
        if (changes == 0) {
            rc = CX_E_DENIED; /* voided meanwhile by a newer pending token */
            goto out;
        }
        if ((rc = core_load(s, S_CORE_BY_CORE_ID, core_id, &row)) != CX_OK)
            goto out;
    }
    if (out != NULL)
        *out = row.core;
out:
    sodium_memzero(&row, sizeof row);
    sodium_memzero(hash, sizeof hash);
    return rc;
}

int mx_core_rename(mx_store *s, const char *id, const char *display_name)
{
    if (s == NULL || !id_arg_ok(id) || !display_name_valid(display_name))
        return CX_E_INVAL;
    int changes = 0;
    int rc = run_text2(s, S_CORE_RENAME, id, display_name, &changes);
    if (rc == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    return rc;
}

int mx_core_remove(mx_store *s, const char *id)
{
    if (s == NULL || !id_arg_ok(id))
        return CX_E_INVAL;
    int changes = 0;
    int rc = run_text2(s, S_CORE_DELETE, id, NULL, &changes);
    if (rc == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    return rc;
}

int mx_core_seen(mx_store *s, const char *id, int64_t now)
{
    if (s == NULL || !id_arg_ok(id))
        return CX_E_INVAL;
    sqlite3_stmt *st = s->ms_st[S_CORE_SEEN];
    int rc, changes = 0;
    if ((rc = cx_db_bind_text(st, 1, id)) || (rc = cx_db_bind_i64(st, 2, now))) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_run(st, &changes)) == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    return rc;
}

int mx_core_rotate(mx_store *s, const char *id, bool immediate, char token_out[65])
{
    if (token_out != NULL)
        token_out[0] = '\0';
    if (s == NULL || !id_arg_ok(id) || token_out == NULL)
        return CX_E_INVAL;
    char prefix[CX_TOKEN_PREFIX_CHARS + 1];
    uint8_t hash[CX_TOKEN_HASH_BYTES];
    cx_token_generate(token_out);
    cx_token_hash(token_out, hash);
    cx_token_prefix(token_out, prefix);
    sqlite3_stmt *st = s->ms_st[immediate ? S_CORE_SET_TOKEN : S_CORE_SET_PENDING];
    int rc, changes = 0;
    if ((rc = cx_db_bind_text(st, 1, id)) || (rc = cx_db_bind_blob(st, 2, hash, sizeof hash)) ||
        (rc = cx_db_bind_text(st, 3, prefix)) ||
        (immediate && (rc = cx_db_bind_i64(st, 4, cx_clock_now_ms())) != CX_OK))
        cx_db_finish(st);
    else if ((rc = cx_db_run(st, &changes)) == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    sodium_memzero(hash, sizeof hash);
    if (rc != CX_OK)
        sodium_memzero(token_out, 65);
    return rc;
}

/* ---- grants ---- */

int mx_grant(mx_store *s, const char *user_id, const char *core_id)
{
    if (s == NULL || !id_arg_ok(user_id) || !id_arg_ok(core_id))
        return CX_E_INVAL;
    int changes = 0;
    int rc = run_text2(s, S_GRANT, user_id, core_id, &changes);
    if (rc != CX_OK || changes == 1)
        return rc;
    bool has = false;
    if ((rc = exists2(s, S_GRANT_HAS, user_id, core_id, &has)) != CX_OK)
        return rc;
    return has ? CX_OK : CX_E_NOTFOUND; /* already granted, or no such user or Core */
}

int mx_revoke_grant(mx_store *s, const char *user_id, const char *core_id)
{
    if (s == NULL || !id_arg_ok(user_id) || !id_arg_ok(core_id))
        return CX_E_INVAL;
    int changes = 0;
    int rc = run_text2(s, S_GRANT_DEL, user_id, core_id, &changes);
    if (rc == CX_OK && changes == 0)
        rc = CX_E_NOTFOUND;
    return rc;
}

static void read_grant_elem(sqlite3_stmt *st, void *out)
{
    mx_grant_row *g = out;
    col_text(st, 0, g->user_id, sizeof g->user_id);
    col_text(st, 1, g->core_id, sizeof g->core_id);
}

int mx_grant_list(mx_store *s, mx_grant_row **arr, size_t *n)
{
    if (s == NULL || arr == NULL || n == NULL)
        return CX_E_INVAL;
    return cx_db_collect(s->ms_st[S_GRANT_LIST], sizeof **arr, read_grant_elem, (void **)arr, n);
}

bool mx_granted(mx_store *s, const char *user_id, const char *core_id)
{
    bool has = false;
    if (s == NULL || user_id == NULL || core_id == NULL ||
        exists2(s, S_GRANT_HAS, user_id, core_id, &has) != CX_OK)
        return false;
    return has;
}

/* ---- audit ---- */

int mx_audit(mx_store *s, int64_t now, const char *actor, const char *action,
             const char *target, const char *addr, const char *result)
{
    if (s == NULL || action == NULL || result == NULL)
        return CX_E_INVAL;
    sqlite3_stmt *st = s->ms_st[S_AUDIT];
    int rc;
    if ((rc = cx_db_bind_i64(st, 1, now)) || (rc = cx_db_bind_text(st, 2, actor)) ||
        (rc = cx_db_bind_text(st, 3, action)) || (rc = cx_db_bind_text(st, 4, target)) ||
        (rc = cx_db_bind_text(st, 5, addr)) || (rc = cx_db_bind_text(st, 6, result))) {
        cx_db_finish(st);
        return rc;
    }
    if ((rc = cx_db_run(st, NULL)) != CX_OK)
        return rc;
    /* Trimmed so failed attempts from the network cannot grow the file without bound. */
    return cx_db_trim_after_insert(s->ms_db, s->ms_st[S_AUDIT_TRIM], MX_AUDIT_MAX_ROWS);
}

static json_t *text_or_null(sqlite3_stmt *st, int col)
{
    const char *v = (const char *)sqlite3_column_text(st, col);
    if (v == NULL)
        return json_null();
    /* Audit text is ours or sanitized, but a row that is not UTF-8 must not sink the list. */
    json_t *j = json_string(v);
    return j ? j : json_string("?");
}

json_t *mx_audit_list(mx_store *s, int limit)
{
    if (s == NULL)
        return NULL;
    if (limit <= 0)
        limit = AUDIT_LIST_DEFAULT;
    if (limit > AUDIT_LIST_MAX)
        limit = AUDIT_LIST_MAX;
    json_t *arr = json_array();
    if (arr == NULL)
        return NULL;
    sqlite3_stmt *st = s->ms_st[S_AUDIT_LIST];
    if (cx_db_bind_i64(st, 1, limit) != CX_OK)
        goto fail;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        char ts[25];
        cx_msg_timestamp(sqlite3_column_int64(st, 0), ts);
        json_t *o = json_object();
        if (o == NULL || json_array_append_new(arr, o) != 0 ||
            json_object_set_new(o, "time", json_string(ts)) != 0 ||
            json_object_set_new(o, "actor", text_or_null(st, 1)) != 0 ||
            json_object_set_new(o, "action", text_or_null(st, 2)) != 0 ||
            json_object_set_new(o, "target", text_or_null(st, 3)) != 0 ||
            json_object_set_new(o, "address", text_or_null(st, 4)) != 0 ||
            json_object_set_new(o, "result", text_or_null(st, 5)) != 0)
            goto fail;
    }
    if (step != SQLITE_DONE)
        goto fail;
    cx_db_finish(st);
    return arr;
fail:
    cx_db_finish(st);
    json_decref(arr);
    return NULL;
}
