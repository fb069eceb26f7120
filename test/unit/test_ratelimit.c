/* Unit tests for the rate limiter, driven by a fake clock: connection budgets, the
 * authentication backoff and block, per-connection message budgets, the bounded
 * address table and the CONDRIX_RATE_* variables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "condrix/error.h"
#include "condrix/limits.h"
#include "condrix/ratelimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exposed by ratelimit.c for tests only. */
size_t cx__ratelimit_count(const cx_ratelimit *rl);

#define T0 INT64_C(1795600000000) /* an arbitrary start of the fake clock */

static cx_ratelimit *make(int conn_max, int conn_win, int auth_max, int auth_win, int block)
{
    cx_ratelimit_config c;
    cx_ratelimit_config_default(&c);
    c.conn_max = conn_max;
    c.conn_window_s = conn_win;
    c.auth_max = auth_max;
    c.auth_window_s = auth_win;
    c.block_s = block;
    cx_ratelimit *rl = cx_ratelimit_new(&c);
    assert_non_null(rl);
    return rl;
}

static void test_defaults(void **state)
{
    cx_ratelimit_config c;
    cx_ratelimit_config_default(&c);
    assert_int_equal(c.conn_max, 10);
    assert_int_equal(c.conn_window_s, 60);
    assert_int_equal(c.auth_max, 5);
    assert_int_equal(c.auth_window_s, 300);
    assert_int_equal(c.msg_max, 100);
    assert_int_equal(c.msg_window_s, 1);
    assert_int_equal(c.block_s, 300);
}

static void test_connection_budget(void **state)
{
    cx_ratelimit *rl = make(10, 60, 5, 300, 300);
    int retry = -1;
    for (int i = 0; i < 10; i++)
        assert_int_equal(cx_ratelimit_connection(rl, "1.2.3.4", T0 + i * 100, &retry), CX_OK);
    assert_int_equal(cx_ratelimit_connection(rl, "1.2.3.4", T0 + 1000, &retry), CX_E_LIMITED);
    assert_true(retry >= 1 && retry <= 120);
    /* Still refused late in the same window; refusals do not count. */
    assert_int_equal(cx_ratelimit_connection(rl, "1.2.3.4", T0 + 59000, &retry), CX_E_LIMITED);
    /* Another address is untouched. */
    assert_int_equal(cx_ratelimit_connection(rl, "5.6.7.8", T0 + 59000, &retry), CX_OK);

    /* Right at the next window the previous burst still weighs fully ... */
    assert_int_equal(cx_ratelimit_connection(rl, "1.2.3.4", T0 + 60000, &retry), CX_E_LIMITED);
    /* ... a tenth of the way in, one slot has come back (10 * 0.9 + 1 <= 10) ... */
    assert_int_equal(cx_ratelimit_connection(rl, "1.2.3.4", T0 + 66000, &retry), CX_OK);
    assert_int_equal(cx_ratelimit_connection(rl, "1.2.3.4", T0 + 66000, &retry), CX_E_LIMITED);
    cx_ratelimit_free(rl);

    /* ... and two windows after the burst the whole budget is back. */
    rl = make(10, 60, 5, 300, 300);
    for (int i = 0; i < 10; i++)
        assert_int_equal(cx_ratelimit_connection(rl, "1.2.3.4", T0, &retry), CX_OK);
    assert_int_equal(cx_ratelimit_connection(rl, "1.2.3.4", T0, &retry), CX_E_LIMITED);
    /* The advertised retry time is honest: waiting that long lets one in. */
    int64_t later = T0 + (int64_t)retry * 1000;
    assert_int_equal(cx_ratelimit_connection(rl, "1.2.3.4", later - 1000, NULL), CX_E_LIMITED);
    assert_int_equal(cx_ratelimit_connection(rl, "1.2.3.4", later, NULL), CX_OK);
    cx_ratelimit_free(rl);

    rl = make(10, 60, 5, 300, 300);
    for (int i = 0; i < 10; i++)
        assert_int_equal(cx_ratelimit_connection(rl, "1.2.3.4", T0, &retry), CX_OK);
    for (int i = 0; i < 10; i++)
        assert_int_equal(cx_ratelimit_connection(rl, "1.2.3.4", T0 + 120000, &retry), CX_OK);
    assert_int_equal(cx_ratelimit_connection(rl, "1.2.3.4", T0 + 120000, &retry), CX_E_LIMITED);
    cx_ratelimit_free(rl);
}

static void test_connection_budget_spread(void **state)
{
    /* An even trickle just under the allowed rate is never refused. (Exactly at the
     * rate, the interpolation may refuse one now and then: it weighs the previous
     * window fully at the boundary.) */
    cx_ratelimit *rl = make(10, 60, 5, 300, 300);
    for (int i = 0; i < 100; i++)
        assert_int_equal(cx_ratelimit_connection(rl, "9.9.9.9", T0 + i * 6700, NULL), CX_OK);
    /* Twice that rate is refused about half of the time, and no 60 s span ever
     * holds more than 10 admitted connections. */
    int64_t admitted[200];
    int ok = 0;
    for (int i = 0; i < 200; i++)
        if (cx_ratelimit_connection(rl, "9.9.9.8", T0 + i * 3000, NULL) == CX_OK)
            admitted[ok++] = T0 + i * 3000;
    assert_true(ok >= 85 && ok <= 105);
    for (int i = 0; i < ok; i++) {
        int in_span = 0;
        for (int j = 0; j <= i; j++)
            in_span += admitted[i] - admitted[j] < 60000;
        assert_true(in_span <= 10);
    }
    cx_ratelimit_free(rl);
}

static void test_auth_backoff_and_block(void **state)
{
    cx_ratelimit *rl = make(10, 60, 5, 300, 300);
    bool blocked = true;
    int retry = -1;
    static const int delays[] = {0, 250, 500, 1000};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(cx_ratelimit_auth_allowed(rl, "6.6.6.6", T0 + i * 1000, &retry), CX_OK);
        assert_int_equal(cx_ratelimit_auth_failed(rl, "6.6.6.6", T0 + i * 1000, &blocked), delays[i]);
        assert_false(blocked);
    }
    /* The fifth failure in the window blocks. */
    assert_int_equal(cx_ratelimit_auth_failed(rl, "6.6.6.6", T0 + 4000, &blocked), 2000);
    assert_true(blocked);
    assert_int_equal(cx_ratelimit_auth_allowed(rl, "6.6.6.6", T0 + 4000, &retry), CX_E_LIMITED);
    assert_int_equal(retry, 300);
    assert_int_equal(cx_ratelimit_auth_allowed(rl, "6.6.6.6", T0 + 4000 + 100500, &retry),
                     CX_E_LIMITED);
    assert_int_equal(retry, 200); /* ceil(199.5) */
    /* New connections are refused while blocked, even with budget left. */
    assert_int_equal(cx_ratelimit_connection(rl, "6.6.6.6", T0 + 5000, &retry), CX_E_LIMITED);
    assert_int_equal(retry, 299);
    /* Others are not affected. */
    assert_int_equal(cx_ratelimit_auth_allowed(rl, "6.6.6.7", T0 + 5000, &retry), CX_OK);
    assert_int_equal(retry, 0);
    /* The block ends. */
    assert_int_equal(cx_ratelimit_auth_allowed(rl, "6.6.6.6", T0 + 304000, &retry), CX_OK);
    assert_int_equal(cx_ratelimit_connection(rl, "6.6.6.6", T0 + 304000, &retry), CX_OK);
    cx_ratelimit_free(rl);
}

static void test_backoff_cap(void **state)
{
    cx_ratelimit *rl = make(10, 60, 1000, 300, 300);
    static const int delays[] = {0, 250, 500, 1000, 2000, 4000, 4000, 4000};
    bool blocked;
    for (int i = 0; i < 8; i++)
        assert_int_equal(cx_ratelimit_auth_failed(rl, "a", T0 + i, &blocked), delays[i]);
    for (int i = 0; i < 100; i++)
        assert_int_equal(cx_ratelimit_auth_failed(rl, "a", T0 + 10 + i, &blocked), 4000);
    assert_false(blocked);
    cx_ratelimit_free(rl);
}

static void test_success_resets_streak_not_count(void **state)
{
    cx_ratelimit *rl = make(10, 60, 5, 300, 300);
    bool blocked;
    assert_int_equal(cx_ratelimit_auth_failed(rl, "7.7.7.7", T0, &blocked), 0);
    assert_int_equal(cx_ratelimit_auth_failed(rl, "7.7.7.7", T0 + 1, &blocked), 250);
    assert_int_equal(cx_ratelimit_auth_failed(rl, "7.7.7.7", T0 + 2, &blocked), 500);
    cx_ratelimit_auth_succeeded(rl, "7.7.7.7");
    cx_ratelimit_auth_succeeded(rl, "never.seen"); /* harmless */
    /* The streak starts over ... */
    assert_int_equal(cx_ratelimit_auth_failed(rl, "7.7.7.7", T0 + 3, &blocked), 0);
    assert_false(blocked);
    /* ... but the failures in the window still count: this is the fifth. */
    assert_int_equal(cx_ratelimit_auth_failed(rl, "7.7.7.7", T0 + 4, &blocked), 250);
    assert_true(blocked);
    cx_ratelimit_free(rl);
}

static void test_auth_window_expires(void **state)
{
    cx_ratelimit *rl = make(10, 60, 3, 10, 60);
    bool blocked;
    assert_int_equal(cx_ratelimit_auth_failed(rl, "b", T0, &blocked), 0);
    assert_int_equal(cx_ratelimit_auth_failed(rl, "b", T0 + 5000, &blocked), 250);
    /* The window (10 s from the first failure) has passed: count and streak restart. */
    assert_int_equal(cx_ratelimit_auth_failed(rl, "b", T0 + 10000, &blocked), 0);
    assert_false(blocked);
    assert_int_equal(cx_ratelimit_auth_failed(rl, "b", T0 + 11000, &blocked), 250);
    assert_false(blocked);
    assert_int_equal(cx_ratelimit_auth_failed(rl, "b", T0 + 12000, &blocked), 500);
    assert_true(blocked);
    int retry;
    assert_int_equal(cx_ratelimit_auth_allowed(rl, "b", T0 + 12000, &retry), CX_E_LIMITED);
    assert_int_equal(retry, 60);
    cx_ratelimit_free(rl);
}

static void test_unlimited(void **state)
{
    cx_ratelimit *rl = make(0, 60, 0, 300, 300);
    bool blocked = true;
    int retry = -1;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(cx_ratelimit_connection(rl, "1.1.1.1", T0, &retry), CX_OK);
        assert_int_equal(cx_ratelimit_auth_failed(rl, "1.1.1.1", T0, &blocked), 0);
        assert_false(blocked);
    }
    assert_int_equal(cx_ratelimit_auth_allowed(rl, "1.1.1.1", T0, &retry), CX_OK);
    cx_msg_budget b = {0};
    cx_ratelimit_config c;
    cx_ratelimit_config_default(&c);
    c.msg_max = 0;
    cx_ratelimit *rl2 = cx_ratelimit_new(&c);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(cx_ratelimit_message(rl2, &b, T0), CX_OK);
    cx_ratelimit_free(rl2);
    cx_ratelimit_free(rl);
}

static void test_message_budget(void **state)
{
    cx_ratelimit *rl = make(10, 60, 5, 300, 300); /* msg: 100 per 1 s */
    cx_msg_budget a = {0}, b = {0};
    for (int i = 0; i < 100; i++)
        assert_int_equal(cx_ratelimit_message(rl, &a, T0 + i * 5), CX_OK);
    assert_int_equal(cx_ratelimit_message(rl, &a, T0 + 999), CX_E_LIMITED);
    assert_int_equal(cx_ratelimit_message(rl, &b, T0 + 999), CX_OK); /* per connection */
    assert_int_equal(cx_ratelimit_message(rl, &a, T0 + 1000), CX_OK); /* new window */
    for (int i = 0; i < 99; i++)
        assert_int_equal(cx_ratelimit_message(rl, &a, T0 + 1500), CX_OK);
    assert_int_equal(cx_ratelimit_message(rl, &a, T0 + 1500), CX_E_LIMITED);
    assert_int_equal(sizeof(cx_msg_budget) <= 16, 1);
    cx_ratelimit_free(rl);
}

static void test_table_bound(void **state)
{
    cx_ratelimit *rl = make(10, 60, 5, 300, 300);
    bool blocked;
    /* Block one address, then flood the table with 200k others. */
    for (int i = 0; i < 5; i++)
        cx_ratelimit_auth_failed(rl, "victim", T0, &blocked);
    assert_true(blocked);
    char addr[64];
    for (int i = 0; i < 200000; i++) {
        snprintf(addr, sizeof addr, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        assert_int_equal(cx_ratelimit_connection(rl, addr, T0 + i, NULL), CX_OK);
        assert_true(cx__ratelimit_count(rl) <= 65536);
    }
    assert_int_equal(cx__ratelimit_count(rl), 65536);
    /* The most recent addresses are remembered ... */
    for (int i = 0; i < 9; i++)
        assert_int_equal(cx_ratelimit_connection(rl, addr, T0 + 200000, NULL), CX_OK);
    assert_int_equal(cx_ratelimit_connection(rl, addr, T0 + 200000, NULL), CX_E_LIMITED);
    /* ... the oldest were forgotten. */
    int retry;
    assert_int_equal(cx_ratelimit_auth_allowed(rl, "victim", T0 + 200000, &retry), CX_OK);

    /* Sweeping after every window has passed empties the table. */
    cx_ratelimit_sweep(rl, T0 + 200000 + 299999);
    assert_true(cx__ratelimit_count(rl) > 0);
    cx_ratelimit_sweep(rl, T0 + 200000 + 300000);
    assert_int_equal(cx__ratelimit_count(rl), 0);
    cx_ratelimit_free(rl);
}

static void test_sweep_keeps_blocked(void **state)
{
    cx_ratelimit *rl = make(10, 1, 1, 1, 600);
    bool blocked;
    cx_ratelimit_auth_failed(rl, "x", T0, &blocked);
    assert_true(blocked);
    cx_ratelimit_connection(rl, "y", T0, NULL);
    assert_int_equal(cx__ratelimit_count(rl), 2);
    cx_ratelimit_sweep(rl, T0 + 10000);
    assert_int_equal(cx__ratelimit_count(rl), 1);
    int retry;
    assert_int_equal(cx_ratelimit_auth_allowed(rl, "x", T0 + 10000, &retry), CX_E_LIMITED);
    assert_int_equal(retry, 590);
    cx_ratelimit_sweep(rl, T0 + 600000);
    assert_int_equal(cx__ratelimit_count(rl), 0);
    cx_ratelimit_free(rl);
}

static void test_long_address_truncated(void **state)
{
    cx_ratelimit *rl = make(1, 60, 5, 300, 300);
    char a[200], b[200];
    memset(a, 'a', 199);
    a[199] = '\0';
    memcpy(b, a, sizeof b);
    b[150] = 'b'; /* differs only past the 63-char key */
    assert_int_equal(cx_ratelimit_connection(rl, a, T0, NULL), CX_OK);
    assert_int_equal(cx_ratelimit_connection(rl, b, T0, NULL), CX_E_LIMITED);
    assert_int_equal(cx_ratelimit_connection(rl, "aaa", T0, NULL), CX_OK);
    cx_ratelimit_free(rl);
}

static const char *const env_names[] = {
    "CONDRIX_RATE_CONN_MAX",        "CONDRIX_RATE_CONN_WINDOW_SECONDS",
    "CONDRIX_RATE_AUTH_MAX",        "CONDRIX_RATE_AUTH_WINDOW_SECONDS",
    "CONDRIX_RATE_MSG_MAX",         "CONDRIX_RATE_MSG_WINDOW_SECONDS",
    "CONDRIX_RATE_BLOCK_SECONDS",
};

static int clear_env(void **state)
{
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
        unsetenv(env_names[i]);
    return 0;
}

static void test_env(void **state)
{
    cx_ratelimit_config c;
    const char *bad = "x";
    assert_int_equal(cx_ratelimit_config_from_env(&c, &bad), CX_OK);
    assert_null(bad);
    assert_int_equal(c.conn_max, CX_RATE_CONN_MAX);
    assert_int_equal(c.block_s, CX_RATE_BLOCK_S);

    setenv("CONDRIX_RATE_CONN_MAX", "0", 1);
    setenv("CONDRIX_RATE_CONN_WINDOW_SECONDS", "30", 1);
    setenv("CONDRIX_RATE_AUTH_MAX", "7", 1);
    setenv("CONDRIX_RATE_AUTH_WINDOW_SECONDS", "600", 1);
    setenv("CONDRIX_RATE_MSG_MAX", "1000", 1);
    setenv("CONDRIX_RATE_MSG_WINDOW_SECONDS", "2", 1);
    setenv("CONDRIX_RATE_BLOCK_SECONDS", "60", 1);
    assert_int_equal(cx_ratelimit_config_from_env(&c, &bad), CX_OK);
    assert_int_equal(c.conn_max, 0);
    assert_int_equal(c.conn_window_s, 30);
    assert_int_equal(c.auth_max, 7);
    assert_int_equal(c.auth_window_s, 600);
    assert_int_equal(c.msg_max, 1000);
    assert_int_equal(c.msg_window_s, 2);
    assert_int_equal(c.block_s, 60);

    /* Empty means unset. */
    setenv("CONDRIX_RATE_AUTH_MAX", "", 1);
    assert_int_equal(cx_ratelimit_config_from_env(&c, NULL), CX_OK);
    assert_int_equal(c.auth_max, CX_RATE_AUTH_MAX);

    static const struct {
        const char *name;
        const char *value;
    } bads[] = {
        {"CONDRIX_RATE_CONN_MAX", "ten"},
        {"CONDRIX_RATE_CONN_MAX", "-1"},
        {"CONDRIX_RATE_CONN_MAX", "10x"},
        {"CONDRIX_RATE_CONN_MAX", " 10"},
        {"CONDRIX_RATE_CONN_MAX", "99999999999999999999"},
        {"CONDRIX_RATE_MSG_WINDOW_SECONDS", "0"},
        {"CONDRIX_RATE_AUTH_WINDOW_SECONDS", "1.5"},
        {"CONDRIX_RATE_BLOCK_SECONDS", "-5"},
    };
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        clear_env(NULL);
        setenv("CONDRIX_RATE_MSG_MAX", "5", 1);
        setenv(bads[i].name, bads[i].value, 1);
        bad = NULL;
        c.conn_max = 12345;
        assert_int_equal(cx_ratelimit_config_from_env(&c, &bad), CX_E_INVAL);
        assert_non_null(bad);
        assert_string_equal(bad, bads[i].name);
        /* Defaults, not half-applied values. */
        assert_int_equal(c.conn_max, CX_RATE_CONN_MAX);
        assert_int_equal(c.msg_max, CX_RATE_MSG_MAX);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_connection_budget),
        cmocka_unit_test(test_connection_budget_spread),
        cmocka_unit_test(test_auth_backoff_and_block),
        cmocka_unit_test(test_backoff_cap),
        cmocka_unit_test(test_success_resets_streak_not_count),
        cmocka_unit_test(test_auth_window_expires),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_message_budget),
        cmocka_unit_test(test_table_bound),
        cmocka_unit_test(test_sweep_keeps_blocked),
        cmocka_unit_test(test_long_address_truncated),
        cmocka_unit_test_setup_teardown(test_env, clear_env, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
