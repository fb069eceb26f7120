/* Unit tests for Argon2id password hashing: parameters, verification outcomes, length
 * limits, rehash detection and generated passwords. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "condrix/error.h"
#include "condrix/password.h"

static void test_hash_and_verify(void **state)
{
    (void)state;
    char h[CX_PASSWORD_HASH_MAX], h2[CX_PASSWORD_HASH_MAX];

    assert_int_equal(cx_password_hash("correct horse battery", h), CX_OK);
    assert_true(strncmp(h, "$argon2id$", 10) == 0);
    assert_non_null(strstr(h, "$m=19456,t=2,"));
    assert_int_equal(cx_password_verify(h, "correct horse battery"), CX_OK);
    assert_int_equal(cx_password_verify(h, "correct horse batterY"), CX_E_DENIED);
    assert_int_equal(cx_password_verify(h, "correct horse battery "), CX_E_DENIED);
    assert_int_equal(cx_password_verify(h, ""), CX_E_DENIED);
    assert_false(cx_password_needs_rehash(h));

    /* Salted: the same password hashes differently each time, and both verify. */
    assert_int_equal(cx_password_hash("correct horse battery", h2), CX_OK);
    assert_string_not_equal(h, h2);
    assert_int_equal(cx_password_verify(h2, "correct horse battery"), CX_OK);
}

static void test_bad_hash(void **state)
{
    (void)state;
    char h[CX_PASSWORD_HASH_MAX];

    assert_int_equal(cx_password_verify("", "password1"), CX_E_FORMAT);
    assert_int_equal(cx_password_verify("garbage", "password1"), CX_E_FORMAT);
    assert_int_equal(cx_password_verify("$argon2id$", "password1"), CX_E_FORMAT);
    assert_int_equal(cx_password_verify("$2b$12$abcdefghijklmnopqrstuv", "password1"),
                     CX_E_FORMAT);
    assert_int_equal(cx_password_hash("password1", h), CX_OK);
    h[strlen(h) - 30] = '!'; /* corrupt the base64 salt/hash */
    assert_int_equal(cx_password_verify(h, "password1"), CX_E_FORMAT);
    /* Unterminated within the buffer size. */
    char longs[300];
    memset(longs, '$', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    assert_int_equal(cx_password_verify(longs, "password1"), CX_E_FORMAT);
    assert_true(cx_password_needs_rehash("garbage"));
}

static void test_lengths(void **state)
{
    (void)state;
    char h[CX_PASSWORD_HASH_MAX];
    char *big = malloc(CX_PASSWORD_MAX_CHARS * 2 + 2);
    assert_non_null(big);

    assert_int_equal(cx_password_hash("", h), CX_E_INVAL);
    assert_int_equal(cx_password_hash("1234567", h), CX_E_INVAL);
    assert_int_equal(cx_password_hash(NULL, h), CX_E_INVAL);
    assert_int_equal(cx_password_hash("12345678", h), CX_OK);
    /* Characters, not bytes: seven two-byte characters are still too short. */
    assert_int_equal(cx_password_hash("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", h),
                     CX_E_INVAL);
    assert_int_equal(
        cx_password_hash("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", h),
        CX_OK);

    memset(big, 'x', CX_PASSWORD_MAX_CHARS);
    big[CX_PASSWORD_MAX_CHARS] = '\0';
    assert_int_equal(cx_password_hash(big, h), CX_OK);
    assert_int_equal(cx_password_verify(h, big), CX_OK);
    big[CX_PASSWORD_MAX_CHARS] = 'x';
    big[CX_PASSWORD_MAX_CHARS + 1] = '\0';
    assert_int_equal(cx_password_hash(big, h), CX_E_INVAL);
    assert_int_equal(cx_password_verify(h, big), CX_E_DENIED);
    free(big);
}

static void test_needs_rehash(void **state)
{
    (void)state;
    char weak[crypto_pwhash_STRBYTES];

    /* A hash made below our cost must be flagged, and still verify. */
    assert_int_equal(crypto_pwhash_str(weak, "password1", 9, 1, 8 * 1024 * 1024), 0);
    assert_true(cx_password_needs_rehash(weak));
    assert_int_equal(cx_password_verify(weak, "password1"), CX_OK);
    assert_true(CX_PASSWORD_OPSLIMIT >= crypto_pwhash_OPSLIMIT_INTERACTIVE);
    assert_true(CX_PASSWORD_MEMLIMIT >= 19u * 1024 * 1024);
}

static void test_generate(void **state)
{
    (void)state;
    char a[33], b[33], e[1];

    cx_password_generate(a, 32);
    cx_password_generate(b, 32);
    assert_int_equal(strlen(a), 32);
    assert_string_not_equal(a, b);
    for (int i = 0; i < 32; i++) {
        assert_true((a[i] >= 'A' && a[i] <= 'Z') || (a[i] >= 'a' && a[i] <= 'z') ||
                    (a[i] >= '2' && a[i] <= '9'));
        assert_null(strchr("0Oo1lI", a[i]));
    }
    cx_password_generate(e, 0);
    assert_string_equal(e, "");

    /* Over many draws every alphabet character appears and no look-alike does. */
    char big[5501];
    int seen[256] = {0};
    cx_password_generate(big, 5500);
    for (int i = 0; i < 5500; i++)
        seen[(unsigned char)big[i]]++;
    int distinct = 0;
    for (int c = 0; c < 256; c++)
        distinct += seen[c] > 0;
    assert_int_equal(distinct, 55);
    for (const char *p = "0Oo1lI"; *p; p++)
        assert_int_equal(seen[(unsigned char)*p], 0);

    char h[CX_PASSWORD_HASH_MAX];
    assert_int_equal(cx_password_hash(a, h), CX_OK);
    assert_int_equal(cx_password_verify(h, a), CX_OK);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_and_verify),
        cmocka_unit_test(test_bad_hash),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_needs_rehash),
        cmocka_unit_test(test_generate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
