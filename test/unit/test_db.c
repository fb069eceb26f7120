/* Unit tests for the SQLite helpers: file modes, WAL and pragmas, and migrations that run
 * once, roll back whole on failure, and refuse a database from a newer binary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "condrix/db.h"
#include "condrix/error.h"

typedef struct fixture {
    char dir[64];
    char path[128];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/cx_test_db_XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/t.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static const cx_db_migration two[] = {
    {"CREATE TABLE a(x INTEGER); INSERT INTO a VALUES (1);"},
    {"CREATE TABLE b(y TEXT); INSERT INTO a VALUES (2);"},
};

static int mode_of(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    return (int)(st.st_mode & 07777);
}

static long long query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void query_text(sqlite3 *db, const char *sql, char *out, size_t n)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/* Open without our helper, to look at what a failed open left behind. */
static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    return db;
}

static void test_fresh_file_private_and_wal(void **state)
{
    fixture *f = *state;
    mode_t old = umask(022); /* a typical, looser umask */
    sqlite3 *db = NULL;
    char *err = NULL;
    assert_int_equal(cx_db_open(f->path, two, 2, &db, &err), CX_OK);
    assert_null(err);
    assert_int_equal(mode_of(f->path), 0600);

    /* A write makes SQLite create the side files; they must be private too. */
    assert_int_equal(cx_db_exec(db, "INSERT INTO b VALUES ('x')"), CX_OK);
    assert_int_equal(mode_of(f->path), 0600);
    char p[160];
    snprintf(p, sizeof p, "%s-wal", f->path);
    assert_int_equal(mode_of(p), 0600);
    snprintf(p, sizeof p, "%s-shm", f->path);
    assert_int_equal(mode_of(p), 0600);
    assert_int_equal(umask(old), 022); /* cx_db_open restored the caller's umask */

    char mode[16];
    query_text(db, "PRAGMA journal_mode", mode, sizeof mode);
    assert_string_equal(mode, "wal");
    assert_int_equal(query_int(db, "PRAGMA synchronous"), 2); /* FULL */
    assert_int_equal(query_int(db, "PRAGMA foreign_keys"), 1);
    assert_int_equal(query_int(db, "PRAGMA busy_timeout"), 5000);
    assert_int_equal(query_int(db, "PRAGMA user_version"), 2);
    cx_db_close(db);
}

static void test_existing_file_tightened(void **state)
{
    fixture *f = *state;
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(chmod(f->path, 0644), 0);
    sqlite3 *db = NULL;
    assert_int_equal(cx_db_open(f->path, two, 2, &db, NULL), CX_OK);
    assert_int_equal(mode_of(f->path), 0600);
    cx_db_close(db);
}

static void test_migrations_run_once(void **state)
{
    fixture *f = *state;
    sqlite3 *db = NULL;
    /* First only migration 1, then both: the second open must run only migration 2. */
    assert_int_equal(cx_db_open(f->path, two, 1, &db, NULL), CX_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), 1);
    assert_int_equal(query_int(db, "SELECT count(*) FROM a"), 1);
    cx_db_close(db);

    assert_int_equal(cx_db_open(f->path, two, 2, &db, NULL), CX_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), 2);
    assert_int_equal(query_int(db, "SELECT count(*) FROM a"), 2);
    cx_db_close(db);

    /* Reopening changes nothing. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cx_db_open(f->path, two, 2, &db, NULL), CX_OK);
        assert_int_equal(query_int(db, "SELECT count(*) FROM a"), 2);
        assert_int_equal(query_int(db, "SELECT count(*) FROM b"), 0);
        cx_db_close(db);
    }
}

static void test_failing_migration_rolls_back(void **state)
{
    fixture *f = *state;
    static const cx_db_migration bad[] = {
        {"CREATE TABLE a(x INTEGER); INSERT INTO a VALUES (1);"},
        {"CREATE TABLE b(y TEXT); INSERT INTO no_such_table VALUES (1);"},
    };
    sqlite3 *db = NULL;
    char *err = NULL;
    assert_int_equal(cx_db_open(f->path, bad, 2, &db, &err), CX_E_DB);
    assert_null(db);
    assert_non_null(err);
    assert_non_null(strstr(err, "no_such_table"));
    free(err);

    /* Nothing of either migration survived, not even the first one that worked. */
    sqlite3 *raw = raw_open(f->path);
    assert_int_equal(query_int(raw, "PRAGMA user_version"), 0);
    assert_int_equal(query_int(raw, "SELECT count(*) FROM sqlite_master WHERE type='table'"), 0);
    sqlite3_close(raw);

    /* Past a successful version, a failing later one keeps that version. */
    assert_int_equal(cx_db_open(f->path, bad, 1, &db, NULL), CX_OK);
    cx_db_close(db);
    assert_int_equal(cx_db_open(f->path, bad, 2, &db, NULL), CX_E_DB);
    raw = raw_open(f->path);
    assert_int_equal(query_int(raw, "PRAGMA user_version"), 1);
    assert_int_equal(query_int(raw, "SELECT count(*) FROM sqlite_master WHERE name='b'"), 0);
    assert_int_equal(query_int(raw, "SELECT count(*) FROM a"), 1);
    sqlite3_close(raw);
}

static void test_newer_database_refused(void **state)
{
    fixture *f = *state;
    sqlite3 *db = NULL;
    assert_int_equal(cx_db_open(f->path, two, 2, &db, NULL), CX_OK);
    cx_db_close(db);

    char *err = NULL;
    db = (sqlite3 *)1; /* must be reset on failure */
    assert_int_equal(cx_db_open(f->path, two, 1, &db, &err), CX_E_DB);
    assert_null(db);
    assert_non_null(err);
    assert_non_null(strstr(err, "newer"));
    free(err);

    /* And it was not touched. */
    sqlite3 *raw = raw_open(f->path);
    assert_int_equal(query_int(raw, "PRAGMA user_version"), 2);
    sqlite3_close(raw);
}

static void test_transactions(void **state)
{
    fixture *f = *state;
    sqlite3 *db = NULL;
    assert_int_equal(cx_db_open(f->path, two, 2, &db, NULL), CX_OK);
    assert_int_equal(cx_db_begin(db), CX_OK);
    assert_int_equal(cx_db_exec(db, "INSERT INTO a VALUES (10)"), CX_OK);
    cx_db_rollback(db);
    assert_int_equal(query_int(db, "SELECT count(*) FROM a WHERE x=10"), 0);
    cx_db_rollback(db); /* harmless outside a transaction */

    assert_int_equal(cx_db_begin(db), CX_OK);
    assert_int_equal(cx_db_exec(db, "INSERT INTO a VALUES (11)"), CX_OK);
    assert_int_equal(cx_db_commit(db), CX_OK);
    assert_int_equal(query_int(db, "SELECT count(*) FROM a WHERE x=11"), 1);

    assert_int_equal(cx_db_exec(db, "SELEC nonsense"), CX_E_DB);
    assert_int_equal(cx_db_commit(db), CX_E_DB); /* no transaction open */
    cx_db_close(db);
    cx_db_close(NULL);
}

static void test_bad_paths(void **state)
{
    fixture *f = *state;
    sqlite3 *db = NULL;
    char *err = NULL;
    char p[200];
    snprintf(p, sizeof p, "%s/missing-dir/t.db", f->dir);
    assert_int_equal(cx_db_open(p, two, 2, &db, &err), CX_E_IO);
    assert_null(db);
    assert_non_null(err);
    assert_non_null(strstr(err, "missing-dir"));
    free(err);

    /* A directory is not a database. */
    err = NULL;
    assert_int_not_equal(cx_db_open(f->dir, two, 2, &db, &err), CX_OK);
    assert_non_null(err);
    free(err);

    assert_int_equal(cx_db_open(f->path, NULL, 1, &db, NULL), CX_E_INVAL);
}

static void test_memory_database(void **state)
{
    (void)state;
    sqlite3 *db = NULL;
    assert_int_equal(cx_db_open(":memory:", two, 2, &db, NULL), CX_OK);
    assert_int_equal(query_int(db, "SELECT count(*) FROM a"), 2);
    cx_db_close(db);
}

struct pair_row {
    int64_t n;
    char word[16];
};

static void read_pair(sqlite3_stmt *st, void *elem)
{
    struct pair_row *r = elem;
    r->n = sqlite3_column_int64(st, 0);
    snprintf(r->word, sizeof r->word, "%s", (const char *)sqlite3_column_text(st, 1));
}

/* Rows into an array, past the first growth; an empty result is an empty array; the
 * statement is reusable afterwards (it was finished). */
static void test_collect(void **state)
{
    (void)state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(cx_db_exec(db, "CREATE TABLE t (n INTEGER, w TEXT)"), CX_OK);
    for (int i = 0; i < 40; i++) {
        char sql[96];
        snprintf(sql, sizeof sql, "INSERT INTO t VALUES (%d, 'w%d')", i, i);
        assert_int_equal(cx_db_exec(db, sql), CX_OK);
    }
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT n, w FROM t WHERE n >= ?1 ORDER BY n", -1,
                                        &st, NULL),
                     SQLITE_OK);
    for (int round = 0; round < 2; round++) {
        struct pair_row *rows = NULL;
        size_t n = 0;
        assert_int_equal(cx_db_bind_i64(st, 1, 3), CX_OK);
        assert_int_equal(cx_db_collect(st, sizeof *rows, read_pair, (void **)&rows, &n), CX_OK);
        assert_int_equal(n, 37);
        assert_int_equal(rows[0].n, 3);
        assert_string_equal(rows[36].word, "w39");
        free(rows);
    }
    struct pair_row *none = NULL;
    size_t n = 1;
    assert_int_equal(cx_db_bind_i64(st, 1, 100), CX_OK);
    assert_int_equal(cx_db_collect(st, sizeof *none, read_pair, (void **)&none, &n), CX_OK);
    assert_int_equal(n, 0);
    assert_null(none);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_file_private_and_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_existing_file_tightened, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrations_run_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_migration_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_database_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
        cmocka_unit_test(test_memory_database),
        cmocka_unit_test(test_collect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
