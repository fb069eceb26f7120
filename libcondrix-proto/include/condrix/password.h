/* Password hashing with Argon2id (libsodium crypto_pwhash_str) at or above OWASP's floor
 * (19 MiB, 2 passes). These calls take tens of milliseconds: servers run them in the
 * libuv thread pool, never on the loop. */
#ifndef CONDRIX_PASSWORD_H
#define CONDRIX_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#define CX_PASSWORD_HASH_MAX 128 /* crypto_pwhash_STRBYTES */
#define CX_PASSWORD_MIN_CHARS 8
#define CX_PASSWORD_MAX_CHARS 1024
/* Argon2id cost: crypto_pwhash_OPSLIMIT_INTERACTIVE passes and OWASP's 19 MiB floor. */
#define CX_PASSWORD_OPSLIMIT 2ULL
#define CX_PASSWORD_MEMLIMIT ((size_t)19 * 1024 * 1024)

/* Hash password into out (NUL-terminated). CX_OK, CX_E_NOMEM, CX_E_INVAL (length). */
int cx_password_hash(const char *password, char out[CX_PASSWORD_HASH_MAX]);
/* CX_OK when it matches, CX_E_DENIED when not, CX_E_FORMAT for a bad hash string. */
int cx_password_verify(const char *hash, const char *password);
/* A random password of n readable characters (n+1 bytes in out). */
void cx_password_generate(char *out, size_t n);
/* True when hash was made with other (e.g. older, cheaper) parameters than the
 * current ones, or does not parse: rehash the password at the next successful login. */
bool cx_password_needs_rehash(const char *hash);

#endif
