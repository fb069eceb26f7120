/* Unit tests for the configuration helpers: strict numbers, booleans and durations,
 * environment defaults, the private data directory, CIDR lists and the choice of
 * client address behind trusted and untrusted proxies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "condrix/config.h"
#include "condrix/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_parse_int(void **state)
{
    long v = 0;
    assert_int_equal(cx_parse_int("42", 0, 100, &v), CX_OK);
    assert_int_equal(v, 42);
    assert_int_equal(cx_parse_int("-7", -10, 10, &v), CX_OK);
    assert_int_equal(v, -7);
    assert_int_equal(cx_parse_int("0", 0, 0, &v), CX_OK);
    assert_int_equal(v, 0);
    v = 99;
    static const char *const bad[] = {"", " 1", "1 ", "+1", "1x", "0x10", "--1", "-", "1.0",
                                      "99999999999999999999999", "101", "-11"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (cx_parse_int(bad[i], -10, 100, &v) != CX_E_INVAL)
            fail_msg("accepted '%s'", bad[i]);
    }
    assert_int_equal(v, 99); /* untouched on error */
    assert_int_equal(cx_parse_int(NULL, 0, 1, &v), CX_E_INVAL);
}

static void test_env(void **state)
{
    unsetenv("CX_TEST_VAR");
    assert_string_equal(cx_env_str("CX_TEST_VAR", "def"), "def");
    assert_null(cx_env_str("CX_TEST_VAR", NULL));
    setenv("CX_TEST_VAR", "", 1);
    assert_string_equal(cx_env_str("CX_TEST_VAR", "def"), "def");
    setenv("CX_TEST_VAR", "val", 1);
    assert_string_equal(cx_env_str("CX_TEST_VAR", "def"), "val");

    long v = 0;
    unsetenv("CX_TEST_VAR");
    assert_int_equal(cx_env_int("CX_TEST_VAR", 9100, 1, 65535, &v), CX_OK);
    assert_int_equal(v, 9100);
    setenv("CX_TEST_VAR", "8080", 1);
    assert_int_equal(cx_env_int("CX_TEST_VAR", 9100, 1, 65535, &v), CX_OK);
    assert_int_equal(v, 8080);
    setenv("CX_TEST_VAR", "70000", 1);
    assert_int_equal(cx_env_int("CX_TEST_VAR", 9100, 1, 65535, &v), CX_E_INVAL);
    setenv("CX_TEST_VAR", "http", 1);
    assert_int_equal(cx_env_int("CX_TEST_VAR", 9100, 1, 65535, &v), CX_E_INVAL);
    unsetenv("CX_TEST_VAR");
}

static void test_parse_bool(void **state)
{
    static const char *const yes[] = {"1", "true", "TRUE", "Yes", "on", "ON"};
    static const char *const no[] = {"", "0", "false", "False", "no", "OFF"};
    static const char *const bad[] = {"2", "y", "n", "truee", " true", "enabled", "-1"};
    bool b;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        b = false;
        assert_int_equal(cx_parse_bool(yes[i], &b), CX_OK);
        assert_true(b);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        b = true;
        assert_int_equal(cx_parse_bool(no[i], &b), CX_OK);
        assert_false(b);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (cx_parse_bool(bad[i], &b) != CX_E_INVAL)
            fail_msg("accepted '%s'", bad[i]);
    }
}

static void test_parse_duration(void **state)
{
    static const struct {
        const char *s;
        int64_t secs;
    } good[] = {
        {"90", 90},     {"90s", 90},      {"15m", 900},     {"2h", 7200},
        {"7d", 604800}, {"1w", 604800},   {"0", 0},         {"0s", 0},
        {"9223372036854775807", INT64_MAX},
    };
    int64_t v;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        v = -1;
        assert_int_equal(cx_parse_duration(good[i].s, &v), CX_OK);
        assert_int_equal(v, good[i].secs);
    }
    static const char *const bad[] = {"",   "-5",   "-5s", "5x",  "s",   "5ss", "5 s", " 5",
                                      "5m3", "1.5h", "+5",  "5M",  "9223372036854775808",
                                      "9223372036854775807w", "999999999999999999h", NULL};
    v = 77;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (cx_parse_duration(bad[i], &v) != CX_E_INVAL)
            fail_msg("accepted '%s'", bad[i] ? bad[i] : "(null)");
    }
    assert_int_equal(v, 77);
}

static void test_default_home(void **state)
{
    setenv("CONDRIX_HOME", "/srv/condrix", 1);
    char *h = cx_default_home();
    assert_string_equal(h, "/srv/condrix");
    free(h);
    setenv("CONDRIX_HOME", "", 1);
    setenv("HOME", "/home/someone", 1);
    h = cx_default_home();
    assert_string_equal(h, "/home/someone/.condrix");
    free(h);
    unsetenv("CONDRIX_HOME");
}

static void test_mkdir_private(void **state)
{
    char base[] = "/tmp/cx_test_config_XXXXXX";
    assert_non_null(mkdtemp(base));
    assert_int_equal(chmod(base, 0755), 0);
    char deep[256], mid[256], file[256];
    snprintf(mid, sizeof mid, "%s/a", base);
    snprintf(deep, sizeof deep, "%s/a/b/c/", base);
    struct stat st;

    assert_int_equal(cx_mkdir_private(deep), CX_OK);
    assert_int_equal(stat(deep, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(stat(mid, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700); /* new parents are private too */
    assert_int_equal(stat(base, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755); /* existing parents are left alone */

    /* An existing directory is tightened; calling again is fine. */
    assert_int_equal(chmod(mid, 0777), 0);
    assert_int_equal(cx_mkdir_private(mid), CX_OK);
    assert_int_equal(stat(mid, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(cx_mkdir_private(deep), CX_OK);

    /* A file in the way is an error. */
    snprintf(file, sizeof file, "%s/f", base);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(cx_mkdir_private(file), CX_E_IO);
    char under[300];
    snprintf(under, sizeof under, "%s/x", file);
    assert_int_equal(cx_mkdir_private(under), CX_E_IO);
    assert_int_equal(cx_mkdir_private(""), CX_E_INVAL);

    unlink(file);
    snprintf(deep, sizeof deep, "%s/a/b/c", base);
    rmdir(deep);
    snprintf(deep, sizeof deep, "%s/a/b", base);
    rmdir(deep);
    rmdir(mid);
    rmdir(base);
}

static void test_cidr_lists(void **state)
{
    cx_cidr_list *l = NULL;
    assert_int_equal(cx_cidr_list_parse("10.0.0.0/8, 192.168.1.7,2001:db8::/32  fd00::1/128", &l),
                     CX_OK);
    assert_true(cx_cidr_list_contains(l, "10.1.2.3"));
    assert_true(cx_cidr_list_contains(l, "10.255.255.255"));
    assert_false(cx_cidr_list_contains(l, "11.0.0.0"));
    assert_false(cx_cidr_list_contains(l, "9.255.255.255"));
    assert_true(cx_cidr_list_contains(l, "192.168.1.7"));
    assert_false(cx_cidr_list_contains(l, "192.168.1.8"));
    assert_true(cx_cidr_list_contains(l, "2001:db8:ffff::1"));
    assert_false(cx_cidr_list_contains(l, "2001:db9::1"));
    assert_true(cx_cidr_list_contains(l, "fd00::1"));
    assert_false(cx_cidr_list_contains(l, "fd00::2"));
    /* v4-mapped v6 matches v4 entries. */
    assert_true(cx_cidr_list_contains(l, "::ffff:10.9.8.7"));
    assert_true(cx_cidr_list_contains(l, "::FFFF:192.168.1.7"));
    assert_false(cx_cidr_list_contains(l, "::ffff:11.9.8.7"));
    /* Not addresses. */
    assert_false(cx_cidr_list_contains(l, ""));
    assert_false(cx_cidr_list_contains(l, "10.1.2.3:80"));
    assert_false(cx_cidr_list_contains(l, "[fd00::1]"));
    assert_false(cx_cidr_list_contains(l, "example.com"));
    assert_false(cx_cidr_list_contains(l, NULL));
    cx_cidr_list_free(l);

    /* Host bits in an entry are ignored; /32 is one host, /0 is every v4 address. */
    assert_int_equal(cx_cidr_list_parse("172.16.5.9/12", &l), CX_OK);
    assert_true(cx_cidr_list_contains(l, "172.31.0.1"));
    assert_false(cx_cidr_list_contains(l, "172.32.0.1"));
    cx_cidr_list_free(l);
    assert_int_equal(cx_cidr_list_parse("1.2.3.4/32", &l), CX_OK);
    assert_true(cx_cidr_list_contains(l, "1.2.3.4"));
    assert_false(cx_cidr_list_contains(l, "1.2.3.5"));
    cx_cidr_list_free(l);
    assert_int_equal(cx_cidr_list_parse("0.0.0.0/0", &l), CX_OK);
    assert_true(cx_cidr_list_contains(l, "8.8.8.8"));
    assert_true(cx_cidr_list_contains(l, "::ffff:8.8.8.8"));
    assert_false(cx_cidr_list_contains(l, "::1"));
    cx_cidr_list_free(l);
    assert_int_equal(cx_cidr_list_parse("::/0", &l), CX_OK);
    assert_true(cx_cidr_list_contains(l, "2001:db8::1"));
    assert_true(cx_cidr_list_contains(l, "8.8.8.8"));
    cx_cidr_list_free(l);
    assert_int_equal(cx_cidr_list_parse("10.0.0.0/9", &l), CX_OK);
    assert_true(cx_cidr_list_contains(l, "10.127.0.1"));
    assert_false(cx_cidr_list_contains(l, "10.128.0.1"));
    cx_cidr_list_free(l);

    /* Empty lists trust nobody; NULL gives loopback. */
    assert_int_equal(cx_cidr_list_parse("", &l), CX_OK);
    assert_false(cx_cidr_list_contains(l, "127.0.0.1"));
    cx_cidr_list_free(l);
    assert_int_equal(cx_cidr_list_parse(" , ,", &l), CX_OK);
    assert_false(cx_cidr_list_contains(l, "127.0.0.1"));
    cx_cidr_list_free(l);
    assert_int_equal(cx_cidr_list_parse(NULL, &l), CX_OK);
    assert_true(cx_cidr_list_contains(l, "127.0.0.1"));
    assert_true(cx_cidr_list_contains(l, "127.200.0.1"));
    assert_true(cx_cidr_list_contains(l, "::1"));
    assert_true(cx_cidr_list_contains(l, "::ffff:127.0.0.1"));
    assert_false(cx_cidr_list_contains(l, "10.0.0.1"));
    assert_false(cx_cidr_list_contains(l, "::2"));
    cx_cidr_list_free(l);
    assert_false(cx_cidr_list_contains(NULL, "127.0.0.1"));

    static const char *const bad[] = {
        "10.0.0.0/33", "::/129",   "10.0.0.0/",  "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/8x",
        "10.0.0",      "300.1.1.1", "localhost", "10.0.0.0/8, nope", "fe80::1%eth0",
        "[::1]",       "/8",       "1.2.3.4/8/8", "10.0.0.0/ 8",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        l = (cx_cidr_list *)1;
        if (cx_cidr_list_parse(bad[i], &l) != CX_E_INVAL)
            fail_msg("accepted '%s'", bad[i]);
        assert_null(l);
    }
}

static void test_loopback(void **state)
{
    assert_true(cx_addr_is_loopback("127.0.0.1"));
    assert_true(cx_addr_is_loopback("127.1.2.3"));
    assert_true(cx_addr_is_loopback("::1"));
    assert_true(cx_addr_is_loopback("0:0:0:0:0:0:0:1"));
    assert_true(cx_addr_is_loopback("::ffff:127.0.0.1"));
    assert_false(cx_addr_is_loopback("128.0.0.1"));
    assert_false(cx_addr_is_loopback("::"));
    assert_false(cx_addr_is_loopback("::ffff:10.0.0.1"));
    assert_false(cx_addr_is_loopback("localhost"));
    assert_false(cx_addr_is_loopback(""));
    assert_false(cx_addr_is_loopback(NULL));
}

static void test_client_addr(void **state)
{
    cx_cidr_list *trusted;
    assert_int_equal(cx_cidr_list_parse(NULL, &trusted), CX_OK);
    char out[64];

    /* Behind a trusted proxy: CF-Connecting-IP first. */
    cx_client_addr(trusted, "127.0.0.1", "203.0.113.9", "198.51.100.1", out);
    assert_string_equal(out, "203.0.113.9");
    cx_client_addr(trusted, "127.0.0.1", " 2001:db8::7 ", NULL, out);
    assert_string_equal(out, "2001:db8::7");
    /* Then the last hop of X-Forwarded-For, which the proxy wrote. */
    cx_client_addr(trusted, "127.0.0.1", NULL, "1.1.1.1, 2.2.2.2, 3.3.3.3", out);
    assert_string_equal(out, "3.3.3.3");
    cx_client_addr(trusted, "::1", NULL, "1.1.1.1,2.2.2.2 ,  ", out);
    assert_string_equal(out, "2.2.2.2");
    cx_client_addr(trusted, "127.0.0.1", NULL, "  4.4.4.4  ", out);
    assert_string_equal(out, "4.4.4.4");
    /* Garbage CF header: fall through to X-Forwarded-For. */
    cx_client_addr(trusted, "127.0.0.1", "evil", "5.5.5.5", out);
    assert_string_equal(out, "5.5.5.5");
    /* Garbage last hop: the peer, never an earlier (spoofable) hop. */
    cx_client_addr(trusted, "127.0.0.1", NULL, "6.6.6.6, not-an-ip", out);
    assert_string_equal(out, "127.0.0.1");
    cx_client_addr(trusted, "127.0.0.1", NULL, "6.6.6.6, 7.7.7.7:8080", out);
    assert_string_equal(out, "127.0.0.1");
    cx_client_addr(trusted, "127.0.0.1", "", ", ,", out);
    assert_string_equal(out, "127.0.0.1");
    cx_client_addr(trusted, "127.0.0.1", "1.2.3.4\r\nX-Evil: 1", NULL, out);
    assert_string_equal(out, "127.0.0.1");
    cx_client_addr(trusted, "127.0.0.1", NULL, NULL, out);
    assert_string_equal(out, "127.0.0.1");
    /* Spellings are made canonical. */
    cx_client_addr(trusted, "127.0.0.1", "::FFFF:8.8.4.4", NULL, out);
    assert_string_equal(out, "8.8.4.4");
    cx_client_addr(trusted, "127.0.0.1", "2001:0db8:0000:0000:0000:0000:0000:0001", NULL, out);
    assert_string_equal(out, "2001:db8::1");
    /* A v4-mapped loopback peer is trusted too. */
    cx_client_addr(trusted, "::ffff:127.0.0.1", "9.9.9.9", NULL, out);
    assert_string_equal(out, "9.9.9.9");

    /* An untrusted peer's headers are ignored. */
    cx_client_addr(trusted, "203.0.113.50", "1.2.3.4", "5.6.7.8", out);
    assert_string_equal(out, "203.0.113.50");
    cx_client_addr(trusted, "::ffff:203.0.113.50", "1.2.3.4", NULL, out);
    assert_string_equal(out, "203.0.113.50");
    cx_client_addr(NULL, "127.0.0.1", "1.2.3.4", "5.6.7.8", out);
    assert_string_equal(out, "127.0.0.1");

    /* An empty trust list trusts not even loopback. */
    cx_cidr_list *none;
    assert_int_equal(cx_cidr_list_parse("", &none), CX_OK);
    cx_client_addr(none, "127.0.0.1", "1.2.3.4", "5.6.7.8", out);
    assert_string_equal(out, "127.0.0.1");
    cx_cidr_list_free(none);

    /* A long XFF full of junk. */
    char big[8192];
    size_t n = 0;
    while (n + 9 + 8 <= sizeof big) {
        memcpy(big + n, "1.2.3.4, ", 9);
        n += 9;
    }
    memcpy(big + n, "9.8.7.6", 8);
    cx_client_addr(trusted, "127.0.0.1", NULL, big, out);
    assert_string_equal(out, "9.8.7.6");

    /* A peer that is no address is copied, capped. */
    char longpeer[100];
    memset(longpeer, 'p', 99);
    longpeer[99] = '\0';
    cx_client_addr(trusted, longpeer, NULL, NULL, out);
    assert_int_equal(strlen(out), 46);
    cx_client_addr(trusted, NULL, "1.2.3.4", NULL, out);
    assert_string_equal(out, "");
    cx_cidr_list_free(trusted);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_int),     cmocka_unit_test(test_env),
        cmocka_unit_test(test_parse_bool),    cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_default_home),  cmocka_unit_test(test_mkdir_private),
        cmocka_unit_test(test_cidr_lists),    cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_client_addr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
