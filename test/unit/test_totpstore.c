/* Unit tests for TOTP state in a row: loading, enabling a pending secret, accepting each
 * step once, a setup racing an enable, and a stored secret of an impossible size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "condrix/error.h"
#include "condrix/limits.h"
#include "condrix/totp.h"
#include "condrix/totpstore.h"

#define T0 1700000000 /* a step boundary plus 20 s */

typedef struct fixture {
    sqlite3 *db;
    sqlite3_stmt *get, *enable, *accept, *set_pending;
    cx_totp_stmts st;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || sqlite3_open(":memory:", &f->db) != SQLITE_OK)
        return -1;
    const char *schema = "CREATE TABLE r (k TEXT PRIMARY KEY, secret BLOB, pending BLOB,"
                         " enabled INTEGER NOT NULL DEFAULT 0, last_step INTEGER NOT NULL DEFAULT -1);"
                         "INSERT INTO r (k) VALUES ('a');";
    if (sqlite3_exec(f->db, schema, NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    const char *sql[] = {
        "SELECT secret, pending, enabled, last_step FROM r WHERE k = ?1",
        "UPDATE r SET secret = pending, pending = NULL, enabled = 1, last_step = ?2"
        " WHERE k = ?1 AND pending = ?3",
        "UPDATE r SET last_step = ?2 WHERE k = ?1 AND enabled = 1 AND last_step < ?2"
        " AND secret = ?3",
        "UPDATE r SET pending = ?2 WHERE k = ?1",
    };
    sqlite3_stmt **out[] = {&f->get, &f->enable, &f->accept, &f->set_pending};
    for (size_t i = 0; i < 4; i++)
        if (sqlite3_prepare_v2(f->db, sql[i], -1, out[i], NULL) != SQLITE_OK)
            return -1;
    f->st = (cx_totp_stmts){f->get, f->enable, f->accept};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sqlite3_finalize(f->get);
    sqlite3_finalize(f->enable);
    sqlite3_finalize(f->accept);
    sqlite3_finalize(f->set_pending);
    sqlite3_close(f->db);
    free(f);
    return 0;
}

static void set_pending(fixture *f, const uint8_t *key, int n)
{
    sqlite3_bind_text(f->set_pending, 1, "a", -1, SQLITE_STATIC);
    sqlite3_bind_blob(f->set_pending, 2, key, n, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(f->set_pending), SQLITE_DONE);
    sqlite3_reset(f->set_pending);
    sqlite3_clear_bindings(f->set_pending);
}

static void test_flow(void **state)
{
    fixture *f = *state;
    cx_totp_row row;
    assert_int_equal(cx_totp_store_load(&f->st, "nobody", &row), CX_E_NOTFOUND);
    assert_int_equal(cx_totp_store_load(&f->st, "a", &row), CX_OK);
    assert_int_equal(row.active_len + row.pending_len, 0);
    assert_false(row.enabled);

    uint8_t key[CX_TOTP_SECRET_BYTES];
    memset(key, 7, sizeof key);
    char code[7], next[7];
    cx_totp_code(key, sizeof key, T0, code);
    cx_totp_code(key, sizeof key, T0 + 30, next);
    /* Nothing pending, nothing active: no secret to check against. */
    assert_int_equal(cx_totp_store_check(&f->st, "a", code, T0, true), CX_E_INVAL);
    assert_int_equal(cx_totp_store_check(&f->st, "a", code, T0, false), CX_E_INVAL);

    set_pending(f, key, sizeof key);
    assert_int_equal(cx_totp_store_check(&f->st, "a", code, T0, false), CX_E_INVAL); /* not on yet */
    char wrong[7];
    memcpy(wrong, code, sizeof wrong);
    wrong[0] = wrong[0] == '9' ? '0' : (char)(wrong[0] + 1);
    assert_int_not_equal(cx_totp_store_check(&f->st, "a", wrong, T0, true), CX_OK);
    assert_int_equal(cx_totp_store_check(&f->st, "a", code, T0, true), CX_OK);
    assert_int_equal(cx_totp_store_load(&f->st, "a", &row), CX_OK);
    assert_true(row.enabled);
    assert_int_equal(row.active_len, sizeof key);
    assert_int_equal(row.pending_len, 0);

    /* The enabling step is spent; the next one is accepted once. */
    assert_int_equal(cx_totp_store_check(&f->st, "a", code, T0, false), CX_E_REPLAY);
    assert_int_equal(cx_totp_store_check(&f->st, "a", next, T0 + 30, false), CX_OK);
    assert_int_equal(cx_totp_store_check(&f->st, "a", next, T0 + 30, false), CX_E_REPLAY);
}

static void test_setup_races_enable(void **state)
{
    fixture *f = *state;
    uint8_t k1[CX_TOTP_SECRET_BYTES], k2[CX_TOTP_SECRET_BYTES];
    memset(k1, 1, sizeof k1);
    memset(k2, 2, sizeof k2);
    set_pending(f, k1, sizeof k1);
    char code[7];
    cx_totp_code(k1, sizeof k1, T0, code);
    /* The enable statement names the pending secret it checked: once another setup has
     * replaced it, the UPDATE changes nothing and the enable is refused. */
    cx_totp_row row;
    assert_int_equal(cx_totp_store_load(&f->st, "a", &row), CX_OK);
    set_pending(f, k2, sizeof k2);
    sqlite3_bind_text(f->enable, 1, "a", -1, SQLITE_STATIC);
    sqlite3_bind_int64(f->enable, 2, T0 / 30);
    sqlite3_bind_blob(f->enable, 3, k1, sizeof k1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(f->enable), SQLITE_DONE);
    assert_int_equal(sqlite3_changes(f->db), 0);
    sqlite3_reset(f->enable);
    sqlite3_clear_bindings(f->enable);
    /* Through the store: the code of the replaced secret is simply wrong now. */
    assert_int_not_equal(cx_totp_store_check(&f->st, "a", code, T0, true), CX_OK);
}

static void test_impossible_secret(void **state)
{
    fixture *f = *state;
    uint8_t big[CX_TOTP_STORE_SECRET_MAX + 1];
    memset(big, 3, sizeof big);
    set_pending(f, big, sizeof big);
    cx_totp_row row;
    assert_int_equal(cx_totp_store_load(&f->st, "a", &row), CX_E_DB);
    assert_int_equal(cx_totp_store_check(&f->st, "a", "123456", T0, true), CX_E_DB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setup_races_enable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_impossible_secret, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
