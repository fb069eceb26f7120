/* SQLite helpers: open a database file 0600 in WAL mode with a busy timeout and
 * foreign keys on, and run schema migrations by PRAGMA user_version, in one
 * transaction, so a crash mid-migration leaves the old schema intact. */
#ifndef CONDRIX_DB_H
#define CONDRIX_DB_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* Migration i (0-based) takes the schema from version i to i+1. */
typedef struct cx_db_migration {
    const char *sql; /* one or more statements */
} cx_db_migration;

/* Open (creating if needed) path with mode 0600 (an existing file is tightened to 0600),
 * WAL, synchronous=NORMAL... FULL for durability of tokens, busy_timeout 5000 ms,
 * foreign_keys on; then apply migrations[user_version .. n-1] in one transaction.
 * A database newer than n migrations is refused (CX_E_DB, message in *errmsg).
 * errmsg (may be NULL) gets a malloc'd explanation on failure. */
int cx_db_open(const char *path, const cx_db_migration *migrations, int n, sqlite3 **out,
               char **errmsg);
/* Checkpoint (TRUNCATE) and close. */
void cx_db_close(sqlite3 *db);
/* Run SQL with no results; CX_OK or CX_E_DB. */
int cx_db_exec(sqlite3 *db, const char *sql);
/* ---- statement plumbing shared by the stores ---- */
/* Prepare n statements for the life of the connection (SQLITE_PREPARE_PERSISTENT) into
 * out[0..n-1]. On failure the ones made are finalized and cleared; CX_OK or cx_db_err. */
int cx_db_prepare_all(sqlite3 *db, const char *const *sql, int n, sqlite3_stmt **out);
/* Finalize n statements (NULL entries are fine) and clear them. */
void cx_db_finalize_all(sqlite3_stmt **st, int n);
/* An SQLite result code as ours: CX_E_EXISTS for a constraint, CX_E_NOMEM, else CX_E_DB. */
int cx_db_err(int sqlite_rc);
/* Reset and unbind: frees the read snapshot and drops pointers to caller buffers bound
 * SQLITE_STATIC (some of them secrets about to be wiped). */
void cx_db_finish(sqlite3_stmt *st);
/* Bind without copying (SQLITE_STATIC: the value must outlive the step); NULL text binds
 * SQL NULL. CX_OK or cx_db_err. */
int cx_db_bind_text(sqlite3_stmt *st, int i, const char *s);
int cx_db_bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n);
int cx_db_bind_i64(sqlite3_stmt *st, int i, int64_t v);
/* Step a statement that returns no rows, then finish it; *changes (may be NULL) gets the
 * rows changed. */
int cx_db_run(sqlite3_stmt *st, int *changes);
/* Step a bound query for its first row: CX_OK (row ready; the caller reads, then
 * finishes), CX_E_NOTFOUND or an error (the statement is already finished then). */
int cx_db_first_row(sqlite3_stmt *st);
/* Every row of a bound query into a malloc'd array of elem-sized records, each filled by
 * read (the caller frees *arr). The statement is finished either way. */
int cx_db_collect(sqlite3_stmt *st, size_t elem, void (*read)(sqlite3_stmt *st, void *elem),
                  void **arr, size_t *n);
/* SQLite's data_version: it changes when another connection (another process, such as
 * an admin verb) commits, so a server can tell when to re-read what it caches. */
int cx_db_data_version(sqlite3 *db, int64_t *out);

/* Keep an append-only table (an audit trail) at about max_rows rows. Call after each
 * insert: now and then (every 1024th id) trim runs `trim`, a DELETE whose ?1 is the
 * lowest id to keep. Ids only grow, so one range delete does it. */
int cx_db_trim_after_insert(sqlite3 *db, sqlite3_stmt *trim, int64_t max_rows);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. */
int cx_db_begin(sqlite3 *db);
int cx_db_commit(sqlite3 *db);
void cx_db_rollback(sqlite3 *db);

#endif
