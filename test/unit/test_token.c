/* Unit tests for tokens and the hex codec: format, randomness, SHA-256 and prefixes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <string.h>

#include "condrix/error.h"
#include "condrix/token.h"

static void test_generate_format_and_distinct(void **state)
{
    (void)state;
    char a[65], b[65];

    for (int i = 0; i < 100; i++) {
        cx_token_generate(a);
        cx_token_generate(b);
        assert_int_equal(strlen(a), 64);
        assert_true(cx_token_well_formed(a));
        assert_true(cx_token_well_formed(b));
        for (int j = 0; j < 64; j++)
            assert_non_null(strchr("0123456789abcdef", a[j]));
        assert_string_not_equal(a, b);
    }
}

static void test_well_formed_edges(void **state)
{
    (void)state;
    char s[80];

    memset(s, 'a', 64);
    s[64] = '\0';
    assert_true(cx_token_well_formed(s));
    s[63] = '\0';
    assert_false(cx_token_well_formed(s)); /* 63 chars */
    s[63] = '0';
    s[64] = '1';
    s[65] = '\0';
    assert_false(cx_token_well_formed(s)); /* 65 chars */
    s[64] = '\0';
    s[10] = 'A';
    assert_false(cx_token_well_formed(s)); /* uppercase */
    s[10] = 'g';
    assert_false(cx_token_well_formed(s)); /* non-hex */
    s[10] = ' ';
    assert_false(cx_token_well_formed(s));
    s[10] = 'f';
    assert_true(cx_token_well_formed(s));
    assert_false(cx_token_well_formed(""));
    assert_false(cx_token_well_formed(NULL));
}

static void test_hash_vector(void **state)
{
    (void)state;
    uint8_t h[CX_TOKEN_HASH_BYTES], h2[CX_TOKEN_HASH_BYTES];
    char hex[65];

    cx_token_hash("abc", h);
    cx_hex_encode(h, sizeof h, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cx_token_hash("", h);
    cx_hex_encode(h, sizeof h, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    cx_token_hash("abc", h);
    cx_token_hash("abc", h2);
    assert_true(cx_token_hash_equal(h, h2));
    h2[31] ^= 1;
    assert_false(cx_token_hash_equal(h, h2));
    h2[31] ^= 1;
    h2[0] ^= 0x80;
    assert_false(cx_token_hash_equal(h, h2));
}

static void test_prefix(void **state)
{
    (void)state;
    char tok[65], p[9];

    cx_token_generate(tok);
    cx_token_prefix(tok, p);
    assert_int_equal(strlen(p), 8);
    assert_memory_equal(p, tok, 8);
    cx_token_prefix("abc", p); /* shorter than a prefix: no overread */
    assert_string_equal(p, "abc");
}

static void test_hex_codec(void **state)
{
    (void)state;
    uint8_t in[4] = {0x00, 0xab, 0xCD, 0xff}, out[4];
    char hex[9];

    cx_hex_encode(in, 4, hex);
    assert_string_equal(hex, "00abcdff");
    assert_int_equal(cx_hex_decode("00abcdff", out, 4), CX_OK);
    assert_memory_equal(in, out, 4);
    assert_int_equal(cx_hex_decode("00ABCDFF", out, 4), CX_OK);
    assert_memory_equal(in, out, 4);
    assert_int_equal(cx_hex_decode("00aBcDfF", out, 4), CX_OK);
    assert_memory_equal(in, out, 4);
    assert_int_equal(cx_hex_decode("00abcdf", out, 4), CX_E_FORMAT);   /* short */
    assert_int_equal(cx_hex_decode("00abcdff0", out, 4), CX_E_FORMAT); /* long */
    assert_int_equal(cx_hex_decode("00abcdfg", out, 4), CX_E_FORMAT);  /* non-hex */
    assert_int_equal(cx_hex_decode("00ab cdf", out, 4), CX_E_FORMAT);
    assert_int_equal(cx_hex_decode("0:abcdff", out, 4), CX_E_FORMAT);  /* '9'+1 */
    assert_int_equal(cx_hex_decode("0/abcdff", out, 4), CX_E_FORMAT);  /* '0'-1 */
    assert_int_equal(cx_hex_decode("0`abcdff", out, 4), CX_E_FORMAT);  /* 'a'-1 */
    assert_int_equal(cx_hex_decode("0@abcdff", out, 4), CX_E_FORMAT);  /* 'A'-1 */
    assert_int_equal(cx_hex_decode("0Gabcdff", out, 4), CX_E_FORMAT);
    assert_int_equal(cx_hex_decode("", out, 0), CX_OK);

    /* Every byte value round-trips. */
    uint8_t all[256], back[256];
    char allhex[513];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    cx_hex_encode(all, 256, allhex);
    assert_int_equal(cx_hex_decode(allhex, back, 256), CX_OK);
    assert_memory_equal(all, back, 256);

    /* Every non-hex character is refused in either position. */
    for (int c = 1; c < 256; c++) {
        char s[3] = {'0', (char)c, '\0'};
        uint8_t b;
        int expect = strchr("0123456789abcdefABCDEF", c) ? CX_OK : CX_E_FORMAT;
        assert_int_equal(cx_hex_decode(s, &b, 1), expect);
        s[0] = (char)c;
        s[1] = '0';
        assert_int_equal(cx_hex_decode(s, &b, 1), expect);
    }
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_format_and_distinct),
        cmocka_unit_test(test_well_formed_edges),
        cmocka_unit_test(test_hash_vector),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_hex_codec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
