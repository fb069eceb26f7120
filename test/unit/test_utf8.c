/* Unit tests for cx_utf8_valid: RFC 3629 boundaries, overlongs, surrogates,
 * truncation, and the eight-bytes-at-a-time ASCII path at every alignment. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "condrix/utf8.h"

static bool valid_str(const char *s)
{
    return cx_utf8_valid((const uint8_t *)s, strlen(s));
}

static void test_valid_vectors(void **state)
{
    (void)state;
    assert_true(cx_utf8_valid(NULL, 0));
    assert_true(valid_str(""));
    assert_true(valid_str("hello, world"));
    assert_true(valid_str("\x7f"));
    assert_true(valid_str("\xc2\x80"));             /* U+0080, smallest 2-byte */
    assert_true(valid_str("caf\xc3\xa9"));          /* é */
    assert_true(valid_str("\xdf\xbf"));             /* U+07FF */
    assert_true(valid_str("\xe0\xa0\x80"));         /* U+0800, smallest 3-byte */
    assert_true(valid_str("\xe2\x82\xac"));         /* € */
    assert_true(valid_str("\xed\x9f\xbf"));         /* U+D7FF, just below surrogates */
    assert_true(valid_str("\xee\x80\x80"));         /* U+E000, just above */
    assert_true(valid_str("\xef\xbf\xbf"));         /* U+FFFF */
    assert_true(valid_str("\xf0\x90\x80\x80"));     /* U+10000, smallest 4-byte */
    assert_true(valid_str("\xf0\x9f\x98\x80"));     /* 😀 */
    assert_true(valid_str("\xf4\x8f\xbf\xbf"));     /* U+10FFFF, the last */
    assert_true(valid_str("a\xf0\x9f\x98\x80z \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"));
    const uint8_t nul[3] = {'a', 0, 'b'}; /* NUL is a valid code point */
    assert_true(cx_utf8_valid(nul, sizeof nul));
}

static void test_invalid_vectors(void **state)
{
    (void)state;
    assert_false(valid_str("\x80"));                 /* lone continuation */
    assert_false(valid_str("\xbf"));
    assert_false(valid_str("\xc0\x80"));             /* overlong NUL */
    assert_false(valid_str("\xc1\xbf"));             /* overlong 2-byte */
    assert_false(valid_str("\xe0\x80\x80"));         /* overlong 3-byte */
    assert_false(valid_str("\xe0\x9f\xbf"));         /* overlong U+07FF */
    assert_false(valid_str("\xf0\x80\x80\x80"));     /* overlong 4-byte */
    assert_false(valid_str("\xf0\x8f\xbf\xbf"));     /* overlong U+FFFF */
    assert_false(valid_str("\xed\xa0\x80"));         /* U+D800 surrogate */
    assert_false(valid_str("\xed\xbf\xbf"));         /* U+DFFF surrogate */
    assert_false(valid_str("\xed\xa0\xbd\xed\xb8\x80")); /* CESU-8 pair */
    assert_false(valid_str("\xf4\x90\x80\x80"));     /* U+110000 */
    assert_false(valid_str("\xf5\x80\x80\x80"));
    assert_false(valid_str("\xf7\xbf\xbf\xbf"));
    assert_false(valid_str("\xf8\x88\x80\x80\x80")); /* 5-byte form */
    assert_false(valid_str("\xfe"));
    assert_false(valid_str("\xff"));
    assert_false(valid_str("\xc3"));                 /* truncated 2-byte */
    assert_false(valid_str("\xe2\x82"));             /* truncated 3-byte */
    assert_false(valid_str("\xf0\x9f\x98"));         /* truncated emoji */
    assert_false(valid_str("abc\xf0\x9f"));
    assert_false(valid_str("\xc3\x28"));             /* bad continuation */
    assert_false(valid_str("\xe2\x28\xa1"));
    assert_false(valid_str("\xe2\x82\x28"));
    assert_false(valid_str("\xf0\x9f\x28\x80"));
    assert_false(valid_str("\xf0\x9f\x98\x28"));
    assert_false(valid_str("\xc3\xa9\xa9"));         /* extra continuation */
}

/* The word-at-a-time path must not skip a bad byte at any position, nor read
 * past the end: put one bad or good sequence at every offset of an ASCII run,
 * in an exactly sized heap block so ASan sees any overread. */
static void test_every_offset(void **state)
{
    (void)state;
    static const struct {
        const char *seq;
        bool ok;
    } seqs[] = {
        {"\xc3\xa9", true}, {"\xf0\x9f\x98\x80", true}, {"\xed\xa0\x80", false},
        {"\xc0\xaf", false}, {"\x80", false},         {"\xf0\x9f\x98", false},
    };
    for (size_t s = 0; s < sizeof seqs / sizeof seqs[0]; s++) {
        size_t sl = strlen(seqs[s].seq);
        for (size_t total = sl; total < 40; total++) {
            for (size_t pos = 0; pos + sl <= total; pos++) {
                uint8_t *buf = malloc(total);
                assert_non_null(buf);
                memset(buf, 'x', total);
                memcpy(buf + pos, seqs[s].seq, sl);
                assert_int_equal(cx_utf8_valid(buf, total), seqs[s].ok);
                free(buf);
            }
        }
    }
}

static void test_long_inputs(void **state)
{
    (void)state;
    size_t n = 1 << 20;
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    memset(buf, 'a', n);
    assert_true(cx_utf8_valid(buf, n));
    buf[n - 1] = 0xff;
    assert_false(cx_utf8_valid(buf, n));
    buf[n - 1] = 'a';
    /* Mostly multi-byte text: 2-byte letters all the way. */
    for (size_t i = 0; i + 1 < n; i += 2) {
        buf[i] = 0xd0;
        buf[i + 1] = 0xb6;
    }
    assert_true(cx_utf8_valid(buf, n));
    buf[n / 2] = 0xb6; /* a continuation where a lead byte belongs */
    assert_false(cx_utf8_valid(buf, n));
    free(buf);
}

/* Cross-check against a plain decoder over every 1- and 2-byte input and a
 * sample of 3- and 4-byte ones. */
static bool reference_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i], cp;
        size_t k;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 2, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 3, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 4, cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < k)
            return false;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k;
    }
    return true;
}

static void test_against_reference(void **state)
{
    (void)state;
    uint8_t b[4];
    for (unsigned x = 0; x < 0x10000; x++) {
        b[0] = (uint8_t)(x >> 8);
        b[1] = (uint8_t)x;
        assert_int_equal(cx_utf8_valid(b, 1), reference_valid(b, 1));
        assert_int_equal(cx_utf8_valid(b, 2), reference_valid(b, 2));
    }
    for (unsigned lead = 0xe0; lead <= 0xff; lead++) {
        for (unsigned x = 0; x < 0x10000; x += 7) {
            b[0] = (uint8_t)lead;
            b[1] = (uint8_t)(x >> 8);
            b[2] = (uint8_t)x;
            b[3] = (uint8_t)(0x80 | (x & 0x3f));
            assert_int_equal(cx_utf8_valid(b, 3), reference_valid(b, 3));
            assert_int_equal(cx_utf8_valid(b, 4), reference_valid(b, 4));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_vectors),
        cmocka_unit_test(test_invalid_vectors),
        cmocka_unit_test(test_every_offset),
        cmocka_unit_test(test_long_inputs),
        cmocka_unit_test(test_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
