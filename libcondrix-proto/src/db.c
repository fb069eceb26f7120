/* SQLite helpers shared by Core and Maestro: open a database file that only its owner can
 * read (0600, WAL side files too), tune it for durability (WAL, synchronous=FULL, because
 * tokens must survive kill -9 and power loss), and bring its schema up to date with
 * numbered migrations that run in one transaction, so a crash mid-way keeps the old schema. */
#include "condrix/db.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "condrix/error.h"

#define DB_BUSY_TIMEOUT_MS 5000


static bool is_memory_path(const char *path)
{
    return path[0] == '\0' || strcmp(path, ":memory:") == 0;
}

/* Create the file ourselves so its first mode is 0600 whatever the umask, and tighten a
 * file that already exists: SQLite would otherwise create it 0644 under a usual umask. */
static int prepare_file(const char *path, char **errmsg)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        cx_set_errmsg(errmsg, "cannot open %s: %s", path, strerror(errno));
        return CX_E_IO;
    }
    int rc = CX_OK;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        cx_set_errmsg(errmsg, "cannot stat %s: %s", path, strerror(errno));
        rc = CX_E_IO;
    } else if (!S_ISREG(st.st_mode)) {
        cx_set_errmsg(errmsg, "%s is not a regular file", path);
        rc = CX_E_IO;
    } else if ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) != 0) {
        cx_set_errmsg(errmsg, "cannot make %s private (chmod 0600): %s", path, strerror(errno));
        rc = CX_E_IO;
    }
    close(fd);
    return rc;
}

/* SQLite gives -wal and -shm the database's mode already; this is a second line of
 * defence for files left behind by an older run with a looser mode. */
static int tighten_side_file(const char *path, const char *suffix, char **errmsg)
{
    size_t n = strlen(path) + strlen(suffix) + 1;
    char *p = malloc(n);
    if (p == NULL)
        return CX_E_NOMEM;
    snprintf(p, n, "%s%s", path, suffix);
    int rc = CX_OK;
    struct stat st;
    if (stat(p, &st) == 0 && (st.st_mode & 07777) != 0600 && chmod(p, 0600) != 0) {
        cx_set_errmsg(errmsg, "cannot make %s private (chmod 0600): %s", p, strerror(errno));
        rc = CX_E_IO;
    }
    free(p);
    return rc;
}

static int get_user_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return CX_E_DB;
    int rc = CX_E_DB;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = CX_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* journal_mode answers with the mode actually in force, which is not WAL on a read-only
 * medium or for an in-memory database: check rather than assume. */
static int set_wal(sqlite3 *db, bool memory, char **errmsg)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK) {
        cx_set_errmsg(errmsg, "cannot set WAL mode: %s", sqlite3_errmsg(db));
        return CX_E_DB;
    }
    int rc = CX_E_DB;
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        if (mode != NULL && (strcmp(mode, "wal") == 0 || (memory && strcmp(mode, "memory") == 0)))
            rc = CX_OK;
        else
            cx_set_errmsg(errmsg, "database refused WAL mode (journal_mode is %s)", mode ? mode : "?");
    } else {
        cx_set_errmsg(errmsg, "cannot set WAL mode: %s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    return rc;
}

static int migrate(sqlite3 *db, const char *path, const cx_db_migration *migrations, int n,
                   char **errmsg)
{
    int version = 0;
    if (get_user_version(db, &version) != CX_OK) {
        cx_set_errmsg(errmsg, "cannot read schema version of %s: %s", path, sqlite3_errmsg(db));
        return CX_E_DB;
    }
    if (version == n)
        return CX_OK; /* the common case: no write lock taken */

    /* Another process may be migrating at this moment: take the write lock, then look
     * again, so each migration runs exactly once. */
    if (cx_db_begin(db) != CX_OK) {
        cx_set_errmsg(errmsg, "cannot lock %s for migration: %s", path, sqlite3_errmsg(db));
        return CX_E_DB;
    }
    if (get_user_version(db, &version) != CX_OK) {
        cx_set_errmsg(errmsg, "cannot read schema version of %s: %s", path, sqlite3_errmsg(db));
        goto fail;
    }
    if (version > n) {
        cx_set_errmsg(errmsg,
                "%s has schema version %d but this program knows only up to %d: it was "
                "written by a newer Condrix; upgrade this binary (or use another CONDRIX_HOME)",
                path, version, n);
        goto fail;
    }
    if (version < 0) {
        cx_set_errmsg(errmsg, "%s has an invalid schema version %d", path, version);
        goto fail;
    }
    for (int i = version; i < n; i++) {
        char *e = NULL;
        if (migrations[i].sql == NULL ||
            sqlite3_exec(db, migrations[i].sql, NULL, NULL, &e) != SQLITE_OK) {
            cx_set_errmsg(errmsg, "schema migration %d -> %d of %s failed: %s", i, i + 1, path,
                    e ? e : "no SQL");
            sqlite3_free(e);
            goto fail;
        }
    }
    char sql[48];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", n);
    if (cx_db_exec(db, sql) != CX_OK || cx_db_commit(db) != CX_OK) {
        cx_set_errmsg(errmsg, "cannot commit schema migration of %s: %s", path, sqlite3_errmsg(db));
        goto fail;
    }
    return CX_OK;
fail:
    cx_db_rollback(db);
    return CX_E_DB;
}

int cx_db_open(const char *path, const cx_db_migration *migrations, int n, sqlite3 **out,
               char **errmsg)
{
    if (errmsg != NULL)
        *errmsg = NULL;
    if (out == NULL || path == NULL || n < 0 || (n > 0 && migrations == NULL)) {
        cx_set_errmsg(errmsg, "invalid arguments to cx_db_open");
        return CX_E_INVAL;
    }
    *out = NULL;
    bool memory = is_memory_path(path);
    int rc;
    if (!memory && (rc = prepare_file(path, errmsg)) != CX_OK)
        return rc;

    /* Any file SQLite creates while we set up (WAL, shm, journals) is private from birth.
     * umask is process-wide, which is acceptable here: databases open at start-up, before
     * any other thread creates files. */
    mode_t old_mask = umask(077);
    sqlite3 *db = NULL;
    int src = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                             SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        cx_set_errmsg(errmsg, "cannot open database %s: %s", path,
                db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
        rc = src == SQLITE_NOMEM ? CX_E_NOMEM : CX_E_DB;
        goto fail;
    }
    sqlite3_extended_result_codes(db, 0);
    if (sqlite3_busy_timeout(db, DB_BUSY_TIMEOUT_MS) != SQLITE_OK) {
        cx_set_errmsg(errmsg, "cannot set busy timeout: %s", sqlite3_errmsg(db));
        rc = CX_E_DB;
        goto fail;
    }
    if ((rc = set_wal(db, memory, errmsg)) != CX_OK)
        goto fail;
    if (cx_db_exec(db, "PRAGMA synchronous=FULL") != CX_OK ||
        cx_db_exec(db, "PRAGMA foreign_keys=ON") != CX_OK) {
        cx_set_errmsg(errmsg, "cannot configure database %s: %s", path, sqlite3_errmsg(db));
        rc = CX_E_DB;
        goto fail;
    }
    if ((rc = migrate(db, path, migrations, n, errmsg)) != CX_OK)
        goto fail;
    if (!memory && ((rc = tighten_side_file(path, "-wal", errmsg)) != CX_OK ||
                    (rc = tighten_side_file(path, "-shm", errmsg)) != CX_OK))
        goto fail;
    umask(old_mask);
    *out = db;
    return CX_OK;
fail:
    umask(old_mask);
    if (db != NULL)
        sqlite3_close_v2(db);
    return rc;
}

void cx_db_close(sqlite3 *db)
{
    if (db == NULL)
        return;
    /* Folding the WAL back leaves a self-contained file; another process still reading
     * makes this return BUSY, which is harmless: it checkpoints when it closes. */
    sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    /* _v2 so a statement the caller forgot to finalise cannot make the close fail. */
    sqlite3_close_v2(db);
}

int cx_db_exec(sqlite3 *db, const char *sql)
{
    if (db == NULL || sql == NULL)
        return CX_E_INVAL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        return CX_OK;
    return rc == SQLITE_NOMEM ? CX_E_NOMEM : CX_E_DB;
}

int cx_db_begin(sqlite3 *db)
{
    return cx_db_exec(db, "BEGIN IMMEDIATE");
}

int cx_db_commit(sqlite3 *db)
{
    return cx_db_exec(db, "COMMIT");
}

void cx_db_rollback(sqlite3 *db)
{
    /* After some errors SQLite has already rolled back; a second ROLLBACK would fail. */
    if (db != NULL && !sqlite3_get_autocommit(db))
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

int cx_db_err(int rc)
{
    switch (rc) {
    case SQLITE_CONSTRAINT: return CX_E_EXISTS;
    case SQLITE_NOMEM: return CX_E_NOMEM;
    default: return CX_E_DB;
    }
}

void cx_db_finish(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

int cx_db_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    int rc = s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
    return rc == SQLITE_OK ? CX_OK : cx_db_err(rc);
}

int cx_db_bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n)
{
    int rc = sqlite3_bind_blob(st, i, p, (int)n, SQLITE_STATIC);
    return rc == SQLITE_OK ? CX_OK : cx_db_err(rc);
}

int cx_db_bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
    int rc = sqlite3_bind_int64(st, i, v);
    return rc == SQLITE_OK ? CX_OK : cx_db_err(rc);
}

int cx_db_run(sqlite3_stmt *st, int *changes)
{
    int rc = sqlite3_step(st);
    int out = rc == SQLITE_DONE ? CX_OK : cx_db_err(rc);
    if (out == CX_OK && changes != NULL)
        *changes = sqlite3_changes(sqlite3_db_handle(st));
    cx_db_finish(st);
    return out;
}

int cx_db_first_row(sqlite3_stmt *st)
{
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW)
        return CX_OK;
    cx_db_finish(st);
    return step == SQLITE_DONE ? CX_E_NOTFOUND : cx_db_err(step);
}

int cx_db_collect(sqlite3_stmt *st, size_t elem, void (*read)(sqlite3_stmt *st, void *elem),
                  void **arr, size_t *n)
{
    *arr = NULL;
    *n = 0;
    char *v = NULL;
    size_t len = 0, cap = 0;
    int rc = CX_OK, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char *nv = realloc(v, ncap * elem);
            if (nv == NULL) {
                rc = CX_E_NOMEM;
                goto fail;
            }
            v = nv;
            cap = ncap;
        }
        read(st, v + len * elem);
        len++;
    }
    if (step != SQLITE_DONE) {
        rc = cx_db_err(step);
        goto fail;
    }
    cx_db_finish(st);
    *arr = v;
    *n = len;
    return CX_OK;
fail:
    cx_db_finish(st);
    free(v);
    return rc;
}

int cx_db_data_version(sqlite3 *db, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA data_version", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return cx_db_err(rc);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = CX_OK;
    } else {
        rc = cx_db_err(rc);
    }
    sqlite3_finalize(st);
    return rc;
}

int cx_db_trim_after_insert(sqlite3 *db, sqlite3_stmt *trim, int64_t max_rows)
{
    sqlite3_int64 id = sqlite3_last_insert_rowid(db);
    if (id % 1024 != 0 || id <= max_rows)
        return CX_OK;
    int rc = cx_db_bind_i64(trim, 1, id - max_rows);
    if (rc != CX_OK) {
        cx_db_finish(trim);
        return rc;
    }
    return cx_db_run(trim, NULL);
}

int cx_db_prepare_all(sqlite3 *db, const char *const *sql, int n, sqlite3_stmt **out)
{
    for (int i = 0; i < n; i++) {
        int rc = sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &out[i], NULL);
        if (rc != SQLITE_OK) {
            cx_db_finalize_all(out, i + 1);
            return cx_db_err(rc);
        }
    }
    return CX_OK;
}

void cx_db_finalize_all(sqlite3_stmt **st, int n)
{
    for (int i = 0; i < n; i++) {
        sqlite3_finalize(st[i]);
        st[i] = NULL;
    }
}
