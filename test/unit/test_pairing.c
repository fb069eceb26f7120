/* Unit tests for pairing codes: alphabet, uniformity, format checks, and the keyed MAC
 * checked against openssl as an independent HMAC-SHA256. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "condrix/pairing.h"
#include "condrix/token.h"

static void test_alphabet(void **state)
{
    (void)state;
    const char *a = CX_PAIRING_ALPHABET;
    assert_int_equal(strlen(a), 55);
    for (const char *p = "0Oo1lI"; *p; p++)
        assert_null(strchr(a, *p));
    for (size_t i = 0; i < strlen(a); i++)
        assert_null(strchr(a + i + 1, a[i])); /* no duplicates */
}

static void test_generate_uniform(void **state)
{
    (void)state;
    enum { CODES = 10000, CHARS = 6 };
    const char *a = CX_PAIRING_ALPHABET;
    size_t k = strlen(a);
    unsigned counts[55] = {0};
    char code[7], prev[7] = "";

    for (int i = 0; i < CODES; i++) {
        cx_pairing_generate(code);
        assert_int_equal(strlen(code), CHARS);
        assert_true(cx_pairing_well_formed(code));
        assert_null(strpbrk(code, "0Oo1lI"));
        assert_string_not_equal(code, prev);
        for (int j = 0; j < CHARS; j++)
            counts[strchr(a, code[j]) - a]++;
        memcpy(prev, code, sizeof code);
    }
    /* Chi-square over 54 degrees of freedom has mean 54 and standard deviation ~10.4;
     * 130 is beyond p = 1e-7, while a dropped or doubled character scores far higher. */
    double expect = (double)CODES * CHARS / (double)k, chi = 0;
    for (size_t i = 0; i < k; i++) {
        assert_true(counts[i] > 0);
        double d = counts[i] - expect;
        chi += d * d / expect;
    }
    assert_true(chi < 130.0);
}

static void test_well_formed(void **state)
{
    (void)state;
    assert_true(cx_pairing_well_formed("ABCdef"));
    assert_true(cx_pairing_well_formed("234567"));
    assert_true(cx_pairing_well_formed("zzzzzz"));
    assert_false(cx_pairing_well_formed("ABCde"));   /* 5 */
    assert_false(cx_pairing_well_formed("ABCdefg")); /* 7 */
    assert_false(cx_pairing_well_formed(""));
    assert_false(cx_pairing_well_formed(NULL));
    assert_false(cx_pairing_well_formed("ABC0ef")); /* look-alikes */
    assert_false(cx_pairing_well_formed("ABCOef"));
    assert_false(cx_pairing_well_formed("ABCoef"));
    assert_false(cx_pairing_well_formed("ABC1ef"));
    assert_false(cx_pairing_well_formed("ABClef"));
    assert_false(cx_pairing_well_formed("ABCIef"));
    assert_false(cx_pairing_well_formed("ABC ef"));
    assert_false(cx_pairing_well_formed("ABC-ef"));
    assert_false(cx_pairing_well_formed("ABC\xc3\xa9"));
    assert_false(cx_pairing_well_formed("ABCde\n"));
}

static void test_mac_varies(void **state)
{
    (void)state;
    uint8_t k1[CX_PAIRING_KEY_BYTES], k2[CX_PAIRING_KEY_BYTES];
    uint8_t m1[CX_PAIRING_MAC_BYTES], m2[CX_PAIRING_MAC_BYTES], m3[CX_PAIRING_MAC_BYTES];

    randombytes_buf(k1, sizeof k1);
    memcpy(k2, k1, sizeof k1);
    k2[31] ^= 1;
    cx_pairing_mac(k1, "ABCdef", m1);
    cx_pairing_mac(k1, "ABCdef", m2);
    assert_memory_equal(m1, m2, sizeof m1);
    cx_pairing_mac(k2, "ABCdef", m2);
    assert_memory_not_equal(m1, m2, sizeof m1);
    cx_pairing_mac(k1, "ABCdeg", m3);
    assert_memory_not_equal(m1, m3, sizeof m1);
}

static void test_mac_matches_openssl(void **state)
{
    (void)state;
    if (system("openssl version >/dev/null 2>&1") != 0)
        fail_msg("openssl is required for this test");
    for (int round = 0; round < 5; round++) {
        uint8_t key[CX_PAIRING_KEY_BYTES], mac[CX_PAIRING_MAC_BYTES];
        char keyhex[65], machex[65], code[7], cmd[256], line[256] = {0};

        randombytes_buf(key, sizeof key);
        cx_hex_encode(key, sizeof key, keyhex);
        cx_pairing_generate(code);
        cx_pairing_mac(key, code, mac);
        cx_hex_encode(mac, sizeof mac, machex);

        snprintf(cmd, sizeof cmd,
                 "printf '%%s' '%s' | openssl dgst -sha256 -mac HMAC -macopt hexkey:%s", code,
                 keyhex);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        assert_non_null(fgets(line, sizeof line, p));
        assert_int_equal(pclose(p), 0);
        char *eq = strstr(line, "= ");
        assert_non_null(eq);
        eq += 2;
        eq[strcspn(eq, "\r\n")] = '\0';
        assert_string_equal(eq, machex);
    }
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alphabet),
        cmocka_unit_test(test_generate_uniform),
        cmocka_unit_test(test_well_formed),
        cmocka_unit_test(test_mac_varies),
        cmocka_unit_test(test_mac_matches_openssl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
