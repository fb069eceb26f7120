/* Argon2id password hashing through libsodium at or above OWASP's minimum cost. The
 * calls are slow on purpose, so servers run them off the event loop. */
#include "condrix/password.h"
#include "condrix/error.h"

#include <sodium.h>
#include <string.h>

/* The same look-alike-free alphabet as pairing codes: passwords get read off screens. */
static const char gen_alphabet[] = "ABCDEFGHJKMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";

_Static_assert(CX_PASSWORD_HASH_MAX >= crypto_pwhash_STRBYTES, "hash buffer too small");

/* Length in UTF-8 characters (bytes that do not continue a sequence), counting at
 * most limit + 1 so an enormous input costs nothing to refuse. */
static size_t char_count(const char *s, size_t limit)
{
    size_t n = 0;

    for (; *s && n <= limit; s++) {
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    }
    return n;
}

static int library_ready(void)
{
    /* Idempotent and thread-safe; selects libsodium's fastest Argon2 code. */
    return sodium_init() < 0 ? CX_E_CRYPTO : CX_OK;
}

int cx_password_hash(const char *password, char out[CX_PASSWORD_HASH_MAX])
{
    int rc;

    if (!password || !out)
        return CX_E_INVAL;
    size_t chars = char_count(password, CX_PASSWORD_MAX_CHARS);
    if (chars < CX_PASSWORD_MIN_CHARS || chars > CX_PASSWORD_MAX_CHARS)
        return CX_E_INVAL;
    rc = library_ready();
    if (rc != CX_OK)
        return rc;
    /* crypto_pwhash_str fails only when it cannot get its memory. */
    if (crypto_pwhash_str(out, password, strlen(password), CX_PASSWORD_OPSLIMIT,
                          CX_PASSWORD_MEMLIMIT) != 0)
        return CX_E_NOMEM;
    return CX_OK;
}

/* A hash string libsodium can parse: NUL-terminated within the buffer size, with an
 * Argon2 prefix and parameters (crypto_pwhash_str_needs_rehash returns -1 otherwise). */
static bool hash_parses(const char *hash)
{
    if (strnlen(hash, crypto_pwhash_STRBYTES) >= crypto_pwhash_STRBYTES)
        return false;
    return crypto_pwhash_str_needs_rehash(hash, CX_PASSWORD_OPSLIMIT, CX_PASSWORD_MEMLIMIT) >= 0;
}

int cx_password_verify(const char *hash, const char *password)
{
    int rc;

    if (!hash || !password)
        return CX_E_INVAL;
    rc = library_ready();
    if (rc != CX_OK)
        return rc;
    if (!hash_parses(hash))
        return CX_E_FORMAT;
    /* No minimum here: a stored hash proves the password was once acceptable. An
     * over-long one can never have been hashed, so it is refused without the work. */
    if (char_count(password, CX_PASSWORD_MAX_CHARS) > CX_PASSWORD_MAX_CHARS)
        return CX_E_DENIED;
    if (crypto_pwhash_str_verify(hash, password, strlen(password)) != 0)
        return CX_E_DENIED;
    return CX_OK;
}

bool cx_password_needs_rehash(const char *hash)
{
    if (!hash || library_ready() != CX_OK || !hash_parses(hash))
        return true;
    return crypto_pwhash_str_needs_rehash(hash, CX_PASSWORD_OPSLIMIT, CX_PASSWORD_MEMLIMIT) != 0;
}

void cx_password_generate(char *out, size_t n)
{
    if (!out)
        return;
    for (size_t i = 0; i < n; i++)
        out[i] = gen_alphabet[randombytes_uniform((uint32_t)(sizeof gen_alphabet - 1))];
    out[n] = '\0';
}
