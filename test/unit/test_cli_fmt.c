/* Unit tests for the condrix CLI's pure helpers (cli/fmt.c): exit statuses and advice
 * for protocol error codes, wire times, human time spans, and finding a Core or user
 * by what the user typed. The unit-test rule links only the core and library archives,
 * so the source under test is compiled in here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../cli/fmt.c"

static void test_exit_codes(void **state)
{
    (void)state;
    assert_int_equal(cli_exit_for_code("INVALID_SESSION"), CLI_EXIT_SESSION);
    assert_int_equal(cli_exit_for_code("SESSION_EXPIRED"), CLI_EXIT_SESSION);
    assert_int_equal(cli_exit_for_code("NOT_SIGNED_IN"), CLI_EXIT_SESSION);
    assert_int_equal(cli_exit_for_code("INVALID_TOKEN"), CLI_EXIT_REFUSED);
    assert_int_equal(cli_exit_for_code("RATE_LIMITED"), CLI_EXIT_REFUSED);
    assert_int_equal(cli_exit_for_code(NULL), CLI_EXIT_REFUSED);
}

static void test_explain(void **state)
{
    (void)state;
    char out[256];
    cli_explain("SESSION_EXPIRED", "x", -1, "wss://m.example", out, sizeof out);
    assert_string_equal(out, "session expired: run `condrix login wss://m.example`");
    cli_explain("INVALID_SESSION", NULL, -1, NULL, out, sizeof out);
    assert_non_null(strstr(out, "condrix login URL"));
    cli_explain("INVALID_CREDENTIALS", "the old password is wrong", -1, NULL, out, sizeof out);
    assert_string_equal(out, "the old password is wrong"); /* the server says which */
    cli_explain("INVALID_CREDENTIALS", NULL, -1, NULL, out, sizeof out);
    assert_string_equal(out, "wrong username or password");
    cli_explain("FORBIDDEN", "only admins may do this", -1, NULL, out, sizeof out);
    assert_string_equal(out, "not allowed: only admins may do this");
    cli_explain("RATE_LIMITED", NULL, 42, NULL, out, sizeof out);
    assert_string_equal(out, "too many attempts: try again in 42 s");
    cli_explain("RATE_LIMITED", NULL, -1, NULL, out, sizeof out);
    assert_null(strstr(out, "-1"));
    cli_explain("NAME_TAKEN", "that name is taken", -1, NULL, out, sizeof out);
    assert_string_equal(out, "that name is taken (NAME_TAKEN)");
    cli_explain("WHATEVER", NULL, -1, NULL, out, sizeof out);
    assert_non_null(strstr(out, "WHATEVER"));
    /* A tiny buffer is cut, never overrun. */
    char small[8];
    cli_explain("INVALID_CREDENTIALS", NULL, -1, NULL, small, sizeof small);
    assert_int_equal(strlen(small), 7);
}

static void test_time_ms(void **state)
{
    (void)state;
    json_t *s = json_string("2026-11-22T10:00:00.000Z");
    json_t *n = json_integer(1700000000123);
    json_t *bad = json_string("yesterday");
    assert_int_equal(cli_time_ms(s), 1795341600000LL);
    assert_int_equal(cli_time_ms(n), 1700000000123LL);
    assert_int_equal(cli_time_ms(bad), 0);
    assert_int_equal(cli_time_ms(NULL), 0);
    assert_int_equal(cli_time_ms(json_null()), 0);
    json_decref(s);
    json_decref(n);
    json_decref(bad);
}

static void test_ago_and_span(void **state)
{
    (void)state;
    char out[32];
    int64_t now = 1795341600000LL;
    cli_ago(now, 0, out, sizeof out);
    assert_string_equal(out, "never");
    cli_ago(now, now - 500, out, sizeof out);
    assert_string_equal(out, "just now");
    cli_ago(now, now - 45 * 1000, out, sizeof out);
    assert_string_equal(out, "45s ago");
    cli_ago(now, now - 3 * 60 * 1000, out, sizeof out);
    assert_string_equal(out, "3m ago");
    cli_ago(now, now - 5 * 3600 * 1000LL, out, sizeof out);
    assert_string_equal(out, "5h ago");
    cli_ago(now, now - 2 * 86400 * 1000LL, out, sizeof out);
    assert_string_equal(out, "2d ago");
    cli_ago(now, now + 15 * 60 * 1000LL, out, sizeof out);
    assert_string_equal(out, "in 15m");
    cli_ago(now, now - 30 * 86400 * 1000LL, out, sizeof out);
    assert_string_equal(out, "2026-10-23");

    cli_span(900, out, sizeof out);
    assert_string_equal(out, "15 minutes");
    cli_span(3600, out, sizeof out);
    assert_string_equal(out, "1 hour");
    cli_span(2 * 86400, out, sizeof out);
    assert_string_equal(out, "2 days");
    cli_span(90, out, sizeof out);
    assert_string_equal(out, "90 seconds");
    cli_span(1, out, sizeof out);
    assert_string_equal(out, "1 second");
}

static void test_find_core(void **state)
{
    (void)state;
    json_error_t err;
    json_t *cores = json_loads("["
                               "{\"id\":\"m-1\",\"coreId\":\"c-1\",\"displayName\":\"laptop\"},"
                               "{\"id\":\"m-2\",\"coreId\":\"c-2\",\"displayName\":\"Desk\"},"
                               "{\"id\":\"m-3\",\"coreId\":\"c-3\",\"displayName\":\"twin\"},"
                               "{\"id\":\"m-4\",\"coreId\":\"c-4\",\"displayName\":\"twin\"},"
                               "{\"id\":\"m-5\",\"coreId\":\"m-1\",\"displayName\":\"c-2\"}"
                               "]",
                               0, &err);
    assert_non_null(cores);
    assert_int_equal(cli_find_core(cores, "m-2"), 1);
    assert_int_equal(cli_find_core(cores, "c-3"), 2);
    /* An id wins over another Core's coreId or display name. */
    assert_int_equal(cli_find_core(cores, "m-1"), 0);
    assert_int_equal(cli_find_core(cores, "c-2"), 1);
    assert_int_equal(cli_find_core(cores, "laptop"), 0);
    assert_int_equal(cli_find_core(cores, "desk"), 1);  /* case-insensitive fallback */
    assert_int_equal(cli_find_core(cores, "twin"), -2); /* ambiguous */
    assert_int_equal(cli_find_core(cores, "nope"), -1);
    assert_int_equal(cli_find_core(cores, ""), -1);
    assert_int_equal(cli_find_core(NULL, "m-1"), -1);
    json_decref(cores);
}

static void test_find_user_and_array(void **state)
{
    (void)state;
    json_error_t err;
    json_t *p = json_loads("{\"users\":[{\"id\":\"u-1\",\"username\":\"Alice\"},"
                           "{\"id\":\"u-2\",\"username\":\"bob\"}]}",
                           0, &err);
    assert_non_null(p);
    json_t *users = cli_payload_array(p, "users");
    assert_non_null(users);
    assert_int_equal(cli_find_user(users, "alice"), 0);
    assert_int_equal(cli_find_user(users, "u-2"), 1);
    assert_int_equal(cli_find_user(users, "carol"), -1);
    assert_null(cli_payload_array(p, "cores"));
    assert_ptr_equal(cli_payload_array(users, "anything"), users);
    json_decref(p);
}

static void test_wipe(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:s, s:i}", "sessionToken", "secret-value", "n", 1);
    assert_non_null(o);
    const char *v = json_string_value(json_object_get(o, "sessionToken"));
    cli_json_wipe(o, "sessionToken");
    for (size_t i = 0; i < strlen("secret-value"); i++)
        assert_int_equal(v[i], 0);
    cli_json_wipe(o, "n");       /* not a string: left alone */
    cli_json_wipe(o, "missing"); /* absent: fine */
    assert_int_equal(json_integer_value(json_object_get(o, "n")), 1);
    json_decref(o);
}

static void test_err_set(void **state)
{
    (void)state;
    cli_err e;
    cli_err_set(&e, CLI_EXIT_NET, "TIMEOUT", "no answer within %d s", 10);
    assert_int_equal(e.exit, CLI_EXIT_NET);
    assert_string_equal(e.code, "TIMEOUT");
    assert_string_equal(e.message, "no answer within 10 s");
    cli_err_set(NULL, 1, "X", "ignored");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_codes),   cmocka_unit_test(test_explain),
        cmocka_unit_test(test_time_ms),      cmocka_unit_test(test_ago_and_span),
        cmocka_unit_test(test_find_core),    cmocka_unit_test(test_find_user_and_array),
        cmocka_unit_test(test_wipe),         cmocka_unit_test(test_err_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
