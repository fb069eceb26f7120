/* Unit tests for HOTP/TOTP (RFC 4226 and RFC 6238 vectors, drift, replay, format),
 * base32 (RFC 4648 vectors), otpauth:// URIs, QR output, and interoperability with
 * oathtool, an independent implementation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "condrix/error.h"
#include "condrix/totp.h"

static const uint8_t rfc_key[] = "12345678901234567890";
#define RFC_KEY_LEN 20

static void test_hotp_rfc4226(void **state)
{
    (void)state;
    static const uint32_t expect[10] = {755224, 287082, 359152, 969429, 338314,
                                        254676, 287922, 162583, 399871, 520489};
    for (uint64_t c = 0; c < 10; c++)
        assert_int_equal(cx_hotp(rfc_key, RFC_KEY_LEN, c, 6), expect[c]);
    /* Out-of-range digit counts give a value no code can equal. */
    assert_int_equal(cx_hotp(rfc_key, RFC_KEY_LEN, 0, 5), UINT32_MAX);
    assert_int_equal(cx_hotp(rfc_key, RFC_KEY_LEN, 0, 9), UINT32_MAX);
}

static void test_totp_rfc6238(void **state)
{
    (void)state;
    static const struct {
        int64_t t;
        uint32_t code8;
    } v[] = {
        {59, 94287082},         {1111111109, 7081804},  {1111111111, 14050471},
        {1234567890, 89005924}, {2000000000, 69279037}, {20000000000, 65353130},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        assert_int_equal(cx_hotp(rfc_key, RFC_KEY_LEN, (uint64_t)(v[i].t / 30), 8), v[i].code8);
        /* The 6-digit code is the same HOTP value mod 10^6, zero-padded. */
        char code[7], want[7];
        cx_totp_code(rfc_key, RFC_KEY_LEN, v[i].t, code);
        snprintf(want, sizeof want, "%06" PRIu32, v[i].code8 % 1000000);
        assert_string_equal(code, want);
    }
    char code[7];
    cx_totp_code(rfc_key, RFC_KEY_LEN, 1111111109, code);
    assert_string_equal(code, "081804"); /* leading zero kept */
}

static void test_verify_drift(void **state)
{
    (void)state;
    const int64_t t = 1700000015; /* mid-step */
    char code[7];

    for (int d = -1; d <= 1; d++) {
        int64_t last = -1;
        cx_totp_code(rfc_key, RFC_KEY_LEN, t + d * 30, code);
        assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, code, t, &last), CX_OK);
        assert_int_equal(last, t / 30 + d);
    }
    for (int d = -3; d <= 3; d += 6) {
        int64_t last = -1;
        cx_totp_code(rfc_key, RFC_KEY_LEN, t + d * 30, code);
        assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, code, t, &last), CX_E_DENIED);
        assert_int_equal(last, -1);
    }
    for (int d = -2; d <= 2; d += 4) {
        int64_t last = -1;
        cx_totp_code(rfc_key, RFC_KEY_LEN, t + d * 30, code);
        assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, code, t, &last), CX_E_DENIED);
        assert_int_equal(last, -1);
    }
    /* Wrong key. */
    int64_t last = -1;
    cx_totp_code((const uint8_t *)"another key 12345678", 20, t, code);
    assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, code, t, &last), CX_E_DENIED);
    /* Step boundaries: the last second of a step and the first of the next. */
    cx_totp_code(rfc_key, RFC_KEY_LEN, 1700000009, code);
    last = -1;
    assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, code, 1700000010, &last), CX_OK);
    assert_int_equal(last, 1700000009 / 30);
}

static void test_verify_replay(void **state)
{
    (void)state;
    const int64_t t = 1700000015;
    int64_t last = -1;
    char now[7], prev[7], next[7];

    cx_totp_code(rfc_key, RFC_KEY_LEN, t, now);
    cx_totp_code(rfc_key, RFC_KEY_LEN, t - 30, prev);
    cx_totp_code(rfc_key, RFC_KEY_LEN, t + 30, next);

    assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, now, t, &last), CX_OK);
    assert_int_equal(last, t / 30);
    /* Same code, same step. */
    assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, now, t, &last), CX_E_REPLAY);
    /* Same code a few seconds later, still within the window. */
    assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, now, t + 20, &last), CX_E_REPLAY);
    /* An earlier step after a later one. */
    assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, prev, t, &last), CX_E_REPLAY);
    assert_int_equal(last, t / 30);
    /* A later step is still fine, and then the current one is not. */
    assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, next, t, &last), CX_OK);
    assert_int_equal(last, t / 30 + 1);
    last = t / 30 - 1;
    assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, now, t, &last), CX_OK);
    last = t / 30 + 1;
    assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, now, t, &last), CX_E_REPLAY);
    /* A wrong code is denied, not reported as a replay. */
    char wrong[7];
    strcpy(wrong, now);
    wrong[5] = wrong[5] == '9' ? '0' : (char)(wrong[5] + 1);
    if (strcmp(wrong, prev) != 0 && strcmp(wrong, next) != 0) {
        last = -1;
        assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, wrong, t, &last), CX_E_DENIED);
    }
}

static void test_verify_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {"12345 ", " 123456", "12a456", "1234567", "12345", "",
                                "123456\n", "-12345", "+12345", "12345\xff"};
    int64_t last = -1;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, bad[i], 59, &last), CX_E_FORMAT);
    assert_int_equal(last, -1);
    assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, NULL, 59, &last), CX_E_INVAL);
    /* Near the epoch there is no step -1; step 0 still works. */
    char code[7];
    cx_totp_code(rfc_key, RFC_KEY_LEN, 0, code);
    assert_int_equal(cx_totp_verify(rfc_key, RFC_KEY_LEN, code, 5, &last), CX_OK);
    assert_int_equal(last, 0);
}

static void test_base32_rfc4648(void **state)
{
    (void)state;
    static const struct {
        const char *plain, *b32;
    } v[] = {{"", ""},          {"f", "MY"},          {"fo", "MZXQ"},
             {"foo", "MZXW6"},  {"foob", "MZXW6YQ"}, {"fooba", "MZXW6YTB"},
             {"foobar", "MZXW6YTBOI"}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[32];
        uint8_t back[32];
        size_t n = strlen(v[i].plain);
        assert_int_equal(cx_base32_encode((const uint8_t *)v[i].plain, n, out, sizeof out),
                         strlen(v[i].b32));
        assert_string_equal(out, v[i].b32);
        assert_int_equal(cx_base32_decode(v[i].b32, back, sizeof back), (int)n);
        assert_memory_equal(back, v[i].plain, n);
    }
    /* Exact output size is enough; one less is refused. */
    char small[11];
    assert_int_equal(cx_base32_encode((const uint8_t *)"foobar", 6, small, 11), 10);
    assert_int_equal(cx_base32_encode((const uint8_t *)"foobar", 6, small, 10), 0);
    assert_string_equal(small, "");
}

static void test_base32_decode_lenient_and_strict(void **state)
{
    (void)state;
    uint8_t out[16];

    assert_int_equal(cx_base32_decode("mzxw6ytboi", out, sizeof out), 6);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(cx_base32_decode("MZXW 6YTB OI", out, sizeof out), 6);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(cx_base32_decode("MZXW6YTBOI======", out, sizeof out), 6);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(cx_base32_decode("mZxW6===  ", out, sizeof out), 3);
    assert_memory_equal(out, "foo", 3);
    assert_int_equal(cx_base32_decode("MY======", out, sizeof out), 1);

    assert_int_equal(cx_base32_decode("MZXW1", out, sizeof out), CX_E_FORMAT); /* '1' */
    assert_int_equal(cx_base32_decode("MZXW0", out, sizeof out), CX_E_FORMAT);
    assert_int_equal(cx_base32_decode("MZXW8", out, sizeof out), CX_E_FORMAT);
    assert_int_equal(cx_base32_decode("MZ-XW", out, sizeof out), CX_E_FORMAT);
    assert_int_equal(cx_base32_decode("MZ\tXW", out, sizeof out), CX_E_FORMAT);
    assert_int_equal(cx_base32_decode("MZ=XW", out, sizeof out), CX_E_FORMAT); /* inner pad */
    assert_int_equal(cx_base32_decode("M", out, sizeof out), CX_E_FORMAT);     /* 5 bits */
    assert_int_equal(cx_base32_decode("MZX", out, sizeof out), CX_E_FORMAT);   /* 15 bits */
    assert_int_equal(cx_base32_decode("MZXW6YTBOIX", out, sizeof out), CX_E_FORMAT);
    assert_int_equal(cx_base32_decode("MZXW6YTBOI", out, 5), CX_E_TOOBIG);
    assert_int_equal(cx_base32_decode("MZXW6YTBOI", out, 6), 6);
}

static void test_base32_round_trip(void **state)
{
    (void)state;
    for (size_t n = 0; n <= 64; n++) {
        uint8_t in[64], back[64];
        char enc[128];
        randombytes_buf(in, n);
        size_t m = cx_base32_encode(in, n, enc, sizeof enc);
        assert_int_equal(m, (n * 8 + 4) / 5);
        assert_int_equal(strlen(enc), m);
        assert_int_equal(cx_base32_decode(enc, back, sizeof back), (int)n);
        assert_memory_equal(in, back, n);
    }
}

static void test_uri(void **state)
{
    (void)state;
    char *u = cx_totp_uri("Condrix", "alice", "JBSWY3DPEHPK3PXP");
    assert_non_null(u);
    assert_string_equal(u, "otpauth://totp/Condrix:alice?secret=JBSWY3DPEHPK3PXP&issuer=Condrix"
                           "&algorithm=SHA1&digits=6&period=30");
    free(u);
    u = cx_totp_uri("Acme Co/Lab", "bob@example.com:x&y=z~._-", "MZXW6");
    assert_non_null(u);
    assert_string_equal(u, "otpauth://totp/Acme%20Co%2FLab:bob%40example.com%3Ax%26y%3Dz~._-"
                           "?secret=MZXW6&issuer=Acme%20Co%2FLab&algorithm=SHA1&digits=6&period=30");
    free(u);
    u = cx_totp_uri("\xc3\xa9", "a", "MY");
    assert_non_null(u);
    assert_non_null(strstr(u, "totp/%C3%A9:a?"));
    free(u);
    assert_null(cx_totp_uri(NULL, "a", "MY"));
    /* Over the cap: refused, not truncated. */
    char *big = malloc(5000);
    assert_non_null(big);
    memset(big, 'a', 4999);
    big[4999] = '\0';
    assert_null(cx_totp_uri(big, "a", "MY"));
    free(big);
}

static void test_new_secret(void **state)
{
    (void)state;
    uint8_t a[20], b[20];
    cx_totp_new_secret(a);
    cx_totp_new_secret(b);
    assert_memory_not_equal(a, b, 20);
}

static size_t count_substr(const char *s, const char *sub)
{
    size_t n = 0;
    for (const char *p = strstr(s, sub); p; p = strstr(p + 1, sub))
        n++;
    return n;
}

static void test_qr_terminal(void **state)
{
    (void)state;
    char *q = cx_qr_terminal("otpauth://totp/Condrix:alice?secret=JBSWY3DPEHPK3PXP");
    assert_non_null(q);
    assert_true(strlen(q) > 100);
    assert_non_null(strstr(q, "\xe2\x96\x88"));
    assert_true(count_substr(q, "\xe2\x96\x80") + count_substr(q, "\xe2\x96\x84") > 0);
    /* Square: every row has the same number of cells, rows = ceil(cells / 2). The first
     * row is all quiet zone (light on both halves), so it is all full blocks. */
    size_t rows = count_substr(q, "\n");
    const char *nl = strchr(q, '\n');
    size_t first_len = (size_t)(nl - q);
    assert_int_equal(first_len % 3, 0);
    size_t cells = first_len / 3;
    assert_int_equal(count_substr(q, "\xe2\x96\x88") >= cells, 1);
    assert_int_equal(rows, (cells + 1) / 2);
    assert_int_equal((cells - 4 - 21) % 4, 0); /* QR width 21+4v, 2-module quiet zone */
    free(q);
    assert_null(cx_qr_terminal(NULL));
    assert_null(cx_qr_terminal(""));
}

static void test_qr_svg(void **state)
{
    (void)state;
    char *s = cx_qr_svg("otpauth://totp/Condrix:alice?secret=JBSWY3DPEHPK3PXP");
    assert_non_null(s);
    assert_true(strncmp(s, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 ", 53) == 0);
    assert_int_equal(count_substr(s, "<path"), 1);
    assert_non_null(strstr(s, "shape-rendering=\"crispEdges\""));
    assert_non_null(strstr(s, "<rect"));
    assert_non_null(strstr(s, "</svg>"));
    /* The top-left finder pattern: a 7-module dark run at the quiet zone's corner. */
    assert_non_null(strstr(s, "M4 4h7v1h-7z"));
    free(s);
    assert_null(cx_qr_svg(NULL));
}

/* oathtool reads the base32 secret we encode and computes the code independently. */
static void test_oathtool_interop(void **state)
{
    (void)state;
    static const int64_t times[] = {0, 59, 1111111109, 1700000000, 1767225600, 2000000000,
                                    4102444799};
    if (system("oathtool --version >/dev/null 2>&1") != 0)
        fail_msg("oathtool is required for this test");

    for (int round = 0; round < 4; round++) {
        uint8_t key[20];
        char b32[40];
        cx_totp_new_secret(key);
        cx_base32_encode(key, sizeof key, b32, sizeof b32);
        for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
            int64_t t = times[i] + round * 7;
            char cmd[200], got[32] = {0}, ours[7];
            snprintf(cmd, sizeof cmd, "oathtool --totp -b -N '@%" PRId64 "' %s", t, b32);
            FILE *p = popen(cmd, "r");
            assert_non_null(p);
            assert_non_null(fgets(got, sizeof got, p));
            assert_int_equal(pclose(p), 0);
            got[strcspn(got, "\n")] = '\0';
            cx_totp_code(key, sizeof key, t, ours);
            assert_string_equal(got, ours);
            int64_t last = -1;
            assert_int_equal(cx_totp_verify(key, sizeof key, got, t, &last), CX_OK);
            assert_int_equal(last, t / 30);
        }
    }
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hotp_rfc4226),
        cmocka_unit_test(test_totp_rfc6238),
        cmocka_unit_test(test_verify_drift),
        cmocka_unit_test(test_verify_replay),
        cmocka_unit_test(test_verify_malformed),
        cmocka_unit_test(test_base32_rfc4648),
        cmocka_unit_test(test_base32_decode_lenient_and_strict),
        cmocka_unit_test(test_base32_round_trip),
        cmocka_unit_test(test_uri),
        cmocka_unit_test(test_new_secret),
        cmocka_unit_test(test_qr_terminal),
        cmocka_unit_test(test_qr_svg),
        cmocka_unit_test(test_oathtool_interop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
