/* Pairing codes: six characters a person can read aloud and type without confusing
 * look-alikes. Servers store only an HMAC-SHA256 of a code under a server key, since
 * ~35 bits is small enough to brute-force any unkeyed hash. */
#include "condrix/pairing.h"
#include "condrix/limits.h"

#include <sodium.h>
#include <string.h>

#define ALPHABET_LEN (sizeof CX_PAIRING_ALPHABET - 1)

void cx_pairing_generate(char out[7])
{
    static const char alphabet[] = CX_PAIRING_ALPHABET;

    /* randombytes_uniform rejects out-of-range samples, so there is no modulo bias. */
    for (int i = 0; i < CX_PAIRING_CODE_CHARS; i++)
        out[i] = alphabet[randombytes_uniform((uint32_t)ALPHABET_LEN)];
    out[CX_PAIRING_CODE_CHARS] = '\0';
}

bool cx_pairing_well_formed(const char *s)
{
    if (!s)
        return false;
    for (int i = 0; i < CX_PAIRING_CODE_CHARS; i++) {
        /* strchr would match the NUL terminator itself, hence the explicit test. */
        if (s[i] == '\0' || !strchr(CX_PAIRING_ALPHABET, s[i]))
            return false;
    }
    return s[CX_PAIRING_CODE_CHARS] == '\0';
}

void cx_pairing_mac(const uint8_t key[CX_PAIRING_KEY_BYTES], const char *code,
                    uint8_t out[CX_PAIRING_MAC_BYTES])
{
    /* libsodium's HMAC cannot fail; should it ever, random bytes match no stored MAC. */
    if (crypto_auth_hmacsha256(out, (const unsigned char *)code, strlen(code), key) != 0)
        randombytes_buf(out, CX_PAIRING_MAC_BYTES);
}
