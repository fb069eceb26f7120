/* Access and session tokens: 32 CSPRNG bytes shown as 64 lowercase hex. Only the
 * SHA-256 of a token is ever stored, so this file also holds the hex codec and the
 * constant-time hash comparison the token stores rely on. */
#include "condrix/token.h"
#include "condrix/error.h"
#include "condrix/limits.h"

#include <sodium.h>
#include <string.h>

void cx_token_generate(char out[65])
{
    uint8_t raw[CX_TOKEN_BYTES];

    randombytes_buf(raw, sizeof raw);
    cx_hex_encode(raw, sizeof raw, out);
    sodium_memzero(raw, sizeof raw);
}

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool cx_token_well_formed(const char *s)
{
    if (!s)
        return false;
    for (size_t i = 0; i < CX_TOKEN_HEX_CHARS; i++) {
        /* A NUL before 64 characters fails here too, so we never read past it. */
        if (!is_lower_hex(s[i]))
            return false;
    }
    return s[CX_TOKEN_HEX_CHARS] == '\0';
}

void cx_token_hash(const char *token, uint8_t out[CX_TOKEN_HASH_BYTES])
{
    /* crypto_hash_sha256 cannot fail in libsodium; its int is part of a uniform API. */
    (void)crypto_hash_sha256(out, (const unsigned char *)token, strlen(token));
}

void cx_token_prefix(const char *token, char out[9])
{
    size_t n = strnlen(token, CX_TOKEN_PREFIX_CHARS);

    memcpy(out, token, n);
    out[n] = '\0';
}

bool cx_token_hash_equal(const uint8_t a[CX_TOKEN_HASH_BYTES], const uint8_t b[CX_TOKEN_HASH_BYTES])
{
    return sodium_memcmp(a, b, CX_TOKEN_HASH_BYTES) == 0;
}

void cx_hex_encode(const uint8_t *in, size_t n, char *out)
{
    /* sodium_bin2hex is lowercase and free of data-dependent branches or lookups,
     * which matters because the input is usually a secret. */
    (void)sodium_bin2hex(out, 2 * n + 1, in, n);
}

/* Value of one hex digit, or -1, without a branch on the (secret) character. */
static int hex_nibble(unsigned char c)
{
    int digit = (int)c - '0';
    int lower = (int)(c | 0x20) - 'a' + 10;
    /* Masks are all ones when the character lies in the range, else zero. */
    int is_digit = ((digit >= 0) & (digit <= 9)) * -1;
    int is_alpha = ((lower >= 10) & (lower <= 15)) * -1;

    return (digit & is_digit) | (lower & is_alpha) | (~(is_digit | is_alpha) & -1);
}

int cx_hex_decode(const char *in, uint8_t *out, size_t n)
{
    if (!in || !out || n > (SIZE_MAX - 1) / 2)
        return CX_E_INVAL;
    if (strnlen(in, 2 * n + 1) != 2 * n)
        return CX_E_FORMAT;

    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_nibble((unsigned char)in[2 * i]);
        int lo = hex_nibble((unsigned char)in[2 * i + 1]);
        bad |= (hi | lo) < 0;
        out[i] = (uint8_t)(((hi & 0xf) << 4) | (lo & 0xf));
    }
    if (bad) {
        /* A partial decode of a secret is still a secret. */
        sodium_memzero(out, n);
        return CX_E_FORMAT;
    }
    return CX_OK;
}
