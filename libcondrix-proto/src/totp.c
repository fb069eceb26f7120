/* HOTP (RFC 4226) and TOTP (RFC 6238) with HMAC-SHA1 from mbedTLS, since libsodium has
 * no SHA-1; plus the base32 codec and otpauth:// URI that authenticator apps expect.
 * Everything is a pure function of its inputs: the caller passes the clock in. */
#include "condrix/totp.h"
#include "condrix/buf.h"
#include "condrix/error.h"
#include "condrix/limits.h"

#include <limits.h>
#include <mbedtls/md.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHA1_BYTES 20

static const uint32_t pow10_table[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                       100000000};

/* HOTP into *value. Fails only when mbedTLS cannot allocate its HMAC context. */
static int hotp_value(const uint8_t *key, size_t key_len, uint64_t counter, int digits,
                      uint32_t *value)
{
    uint8_t msg[8];
    uint8_t mac[SHA1_BYTES];
    const mbedtls_md_info_t *info = mbedtls_md_info_from_type(MBEDTLS_MD_SHA1);
    int rc = CX_E_CRYPTO;

    if (digits < 6 || digits > 8)
        return CX_E_INVAL;
    if (!info)
        return CX_E_CRYPTO;
    for (int i = 7; i >= 0; i--) {
        msg[i] = (uint8_t)(counter & 0xff);
        counter >>= 8;
    }
    /* mbedTLS reads key only when key_len > 0, but never hand it NULL anyway. */
    static const uint8_t empty;
    if (mbedtls_md_hmac(info, key ? key : &empty, key_len, msg, sizeof msg, mac) != 0)
        goto out;

    /* Dynamic truncation, RFC 4226 section 5.3. */
    unsigned off = mac[SHA1_BYTES - 1] & 0x0f;
    uint32_t bin = ((uint32_t)(mac[off] & 0x7f) << 24) | ((uint32_t)mac[off + 1] << 16) |
                   ((uint32_t)mac[off + 2] << 8) | (uint32_t)mac[off + 3];
    *value = bin % pow10_table[digits];
    rc = CX_OK;
out:
    sodium_memzero(mac, sizeof mac);
    return rc;
}

/* Returns UINT32_MAX, which no 6..8-digit code can equal, when digits is out of range
 * or mbedTLS fails. */
uint32_t cx_hotp(const uint8_t *key, size_t key_len, uint64_t counter, int digits)
{
    uint32_t v;

    if (hotp_value(key, key_len, counter, digits, &v) != CX_OK)
        return UINT32_MAX;
    return v;
}

/* floor(unix_s / period), also for times before 1970. */
static int64_t time_step(int64_t unix_s)
{
    int64_t q = unix_s / CX_TOTP_PERIOD_S;

    if (unix_s % CX_TOTP_PERIOD_S < 0)
        q--;
    return q;
}

static int code_text(const uint8_t *key, size_t key_len, int64_t step, char out[7])
{
    uint32_t v;
    int rc = hotp_value(key, key_len, (uint64_t)step, CX_TOTP_DIGITS, &v);

    if (rc != CX_OK)
        return rc;
    /* Fixed-width digits without snprintf keep the code off any formatting path. */
    for (int i = CX_TOTP_DIGITS - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
    out[CX_TOTP_DIGITS] = '\0';
    return CX_OK;
}

/* On failure out is the empty string, which cx_totp_verify refuses as malformed. */
void cx_totp_code(const uint8_t *key, size_t key_len, int64_t unix_s, char out[7])
{
    if (code_text(key, key_len, time_step(unix_s), out) != CX_OK)
        out[0] = '\0';
}

static bool six_digits(const char *code)
{
    for (int i = 0; i < CX_TOTP_DIGITS; i++) {
        if (code[i] < '0' || code[i] > '9')
            return false;
    }
    return code[CX_TOTP_DIGITS] == '\0';
}

int cx_totp_verify(const uint8_t *key, size_t key_len, const char *code, int64_t unix_s,
                   int64_t *last_step)
{
    enum { N = 2 * CX_TOTP_DRIFT_STEPS + 1 };
    char cand[N][7];
    int64_t now, step;
    int64_t found = -1;    /* first fresh matching step, -1 if none */
    int64_t replayed = 0;  /* all ones if some match was at or before *last_step */
    int rc;

    if (!code || !last_step)
        return CX_E_INVAL;
    if (!six_digits(code))
        return CX_E_FORMAT;

    now = time_step(unix_s);
    /* Every candidate is computed and compared before any decision, so the time taken
     * does not tell which step (if any) matched. */
    for (int i = 0; i < N; i++) {
        step = now - CX_TOTP_DRIFT_STEPS + i;
        if (step < 0) {
            /* No code exists before the epoch; a value that can never match. */
            memset(cand[i], 'x', CX_TOTP_DIGITS);
            cand[i][CX_TOTP_DIGITS] = '\0';
            continue;
        }
        rc = code_text(key, key_len, step, cand[i]);
        if (rc != CX_OK)
            goto out;
    }
    for (int i = 0; i < N; i++) {
        step = now - CX_TOTP_DRIFT_STEPS + i;
        int64_t match = -(int64_t)(sodium_memcmp(cand[i], code, CX_TOTP_DIGITS) == 0);
        int64_t fresh = -(int64_t)(step > *last_step);
        int64_t none_yet = -(int64_t)(found < 0);
        int64_t take = match & fresh & none_yet;
        found = (step & take) | (found & ~take);
        replayed |= match & ~fresh;
    }
    if (found >= 0) {
        *last_step = found;
        rc = CX_OK;
    } else {
        rc = replayed ? CX_E_REPLAY : CX_E_DENIED;
    }
out:
    sodium_memzero(cand, sizeof cand);
    return rc;
}

void cx_totp_new_secret(uint8_t out[20])
{
    randombytes_buf(out, CX_TOTP_SECRET_BYTES);
}

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* When out_size is too small nothing is encoded: out becomes "" and 0 is returned. */
size_t cx_base32_encode(const uint8_t *in, size_t n, char *out, size_t out_size)
{
    if (!out || out_size == 0)
        return 0;
    if (n > (SIZE_MAX - 5) / 8 || out_size < (n * 8 + 4) / 5 + 1) {
        out[0] = '\0';
        return 0;
    }

    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = b32_alphabet[(acc >> bits) & 0x1f];
        }
    }
    if (bits > 0)
        out[o++] = b32_alphabet[(acc << (5 - bits)) & 0x1f];
    out[o] = '\0';
    return o;
}

static int b32_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

/* '=' is accepted only as trailing padding (spaces may follow it). A final group of 5
 * or more leftover bits means a character that completes no byte, which no encoder
 * emits, so it is refused. */
int cx_base32_decode(const char *in, uint8_t *out, size_t out_size)
{
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    bool padding = false;
    int rc = CX_E_FORMAT;

    if (!in || (!out && out_size > 0))
        return CX_E_INVAL;
    for (const char *p = in; *p; p++) {
        if (*p == ' ')
            continue;
        if (*p == '=') {
            padding = true;
            continue;
        }
        int v = b32_value(*p);
        if (v < 0 || padding)
            goto fail;
        acc = (acc << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            if (o >= out_size || o >= (size_t)INT_MAX) {
                rc = CX_E_TOOBIG;
                goto fail;
            }
            out[o++] = (uint8_t)(acc >> bits);
        }
        acc &= (1u << bits) - 1;
    }
    if (bits >= 5)
        goto fail;
    return (int)o;
fail:
    /* The input is usually a TOTP secret: leave no half of it behind. */
    if (out_size > 0)
        sodium_memzero(out, o);
    return rc;
}

/* Append s with every byte outside RFC 3986's unreserved set percent-encoded. */
static int append_pct(cx_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = CX_OK;

    for (const unsigned char *p = (const unsigned char *)s; *p && rc == CX_OK; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            rc = cx_buf_append(b, &c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 0xf]};
            rc = cx_buf_append(b, e, sizeof e);
        }
    }
    return rc;
}

char *cx_totp_uri(const char *issuer, const char *account, const char *secret_b32)
{
    cx_buf b;
    char *s = NULL;

    if (!issuer || !account || !secret_b32)
        return NULL;
    cx_buf_init(&b, CX_TOTP_URI_MAX_BYTES);
    if (cx_buf_append_str(&b, "otpauth://totp/") || append_pct(&b, issuer) ||
        cx_buf_append_str(&b, ":") || append_pct(&b, account) ||
        cx_buf_append_str(&b, "?secret=") || append_pct(&b, secret_b32) ||
        cx_buf_append_str(&b, "&issuer=") || append_pct(&b, issuer) ||
        cx_buf_appendf(&b, "&algorithm=SHA1&digits=%d&period=%d", CX_TOTP_DIGITS,
                       CX_TOTP_PERIOD_S))
        goto out;
    s = malloc(b.len + 1);
    if (!s)
        goto out;
    memcpy(s, b.data, b.len);
    s[b.len] = '\0';
out:
    /* cx_buf_free wipes: the URI carries the secret. */
    cx_buf_free(&b);
    return s;
}
