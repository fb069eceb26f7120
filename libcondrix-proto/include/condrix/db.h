/* SQLite helpers: open a database file 0600 in WAL mode with a busy timeout and
 * foreign keys on, and run schema migrations by PRAGMA user_version, in one
 * transaction, so a crash mid-migration leaves the old schema intact. */
#ifndef CONDRIX_DB_H
#define CONDRIX_DB_H

#include <sqlite3.h>

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
/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. */
int cx_db_begin(sqlite3 *db);
int cx_db_commit(sqlite3 *db);
void cx_db_rollback(sqlite3 *db);

#endif
