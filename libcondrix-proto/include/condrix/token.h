/* Access and session tokens: 32 random bytes shown as 64 lowercase hex. Servers keep
 * only the SHA-256 of a token and an 8-character display prefix. */
#ifndef CONDRIX_TOKEN_H
#define CONDRIX_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CX_TOKEN_HASH_BYTES 32

/* Fill out with a fresh token (64 hex + NUL) from libsodium's CSPRNG. */
void cx_token_generate(char out[65]);
/* True when s is exactly 64 lowercase hex characters (uppercase is refused). */
bool cx_token_well_formed(const char *s);
/* SHA-256 of the token text. */
void cx_token_hash(const char *token, uint8_t out[CX_TOKEN_HASH_BYTES]);
/* The first 8 characters, NUL-terminated. */
void cx_token_prefix(const char *token, char out[9]);
/* Constant-time equality of two hashes. */
bool cx_token_hash_equal(const uint8_t a[CX_TOKEN_HASH_BYTES], const uint8_t b[CX_TOKEN_HASH_BYTES]);
/* Hex encode n bytes (out has 2n+1 bytes) / decode exactly 2n hex chars (CX_E_FORMAT). */
void cx_hex_encode(const uint8_t *in, size_t n, char *out);
int cx_hex_decode(const char *in, uint8_t *out, size_t n);

#endif
