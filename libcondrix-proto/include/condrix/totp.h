/* TOTP (RFC 6238) over HOTP (RFC 4226): HMAC-SHA1, 6 digits, 30-second steps, one
 * step of drift either way, and replay refusal by remembering the last accepted step.
 * Also base32 (RFC 4648) and otpauth:// URIs. Pure functions: the clock is passed in. */
#ifndef CONDRIX_TOTP_H
#define CONDRIX_TOTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* HOTP value for a counter, truncated to `digits` digits (6..8). */
uint32_t cx_hotp(const uint8_t *key, size_t key_len, uint64_t counter, int digits);
/* The 6-digit code for a Unix time as text (6 chars + NUL), zero-padded. */
void cx_totp_code(const uint8_t *key, size_t key_len, int64_t unix_s, char out[7]);

/* Verify a code presented at unix_s. code must be exactly 6 ASCII digits (anything
 * else, spaces included: CX_E_FORMAT). Steps now-1, now, now+1 are tried. A match at a
 * step <= *last_step is CX_E_REPLAY; on success *last_step is set to the matched step
 * and CX_OK returned; no match: CX_E_DENIED. last_step starts at -1 (never used).
 * Comparisons are constant-time. */
int cx_totp_verify(const uint8_t *key, size_t key_len, const char *code, int64_t unix_s,
                   int64_t *last_step);

/* Fresh random secret of CX_TOTP_SECRET_BYTES. */
void cx_totp_new_secret(uint8_t out[20]);

/* Base32, RFC 4648 alphabet, no padding on encode. out needs ((n*8+4)/5)+1 bytes.
 * Returns chars written (without NUL). */
size_t cx_base32_encode(const uint8_t *in, size_t n, char *out, size_t out_size);
/* Decode, ignoring case, spaces and '=' padding. Returns bytes written, or CX_E_FORMAT
 * on a bad character, CX_E_TOOBIG if out is too small. */
int cx_base32_decode(const char *in, uint8_t *out, size_t out_size);

/* otpauth://totp/ISSUER:ACCOUNT?secret=B32&issuer=ISSUER&algorithm=SHA1&digits=6&period=30
 * with issuer and account percent-encoded. Returns a malloc'd string or NULL. */
char *cx_totp_uri(const char *issuer, const char *account, const char *secret_b32);

/* The QR code of text as ANSI/UTF-8 half-block art for a terminal (libqrencode), or an
 * SVG document. Both malloc'd, NULL on failure. */
char *cx_qr_terminal(const char *text);
char *cx_qr_svg(const char *text);

#endif
