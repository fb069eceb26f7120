/* Pairing codes: 6 characters from letters and digits without look-alikes
 * (no 0 O o 1 l I), stored only as HMAC-SHA256 under a server key, because ~35 bits
 * are too few for a plain hash to protect. */
#ifndef CONDRIX_PAIRING_H
#define CONDRIX_PAIRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CX_PAIRING_ALPHABET "ABCDEFGHJKMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"
#define CX_PAIRING_KEY_BYTES 32
#define CX_PAIRING_MAC_BYTES 32

/* A fresh code (6 chars + NUL), uniform over the alphabet (no modulo bias). */
void cx_pairing_generate(char out[7]);
/* True when s is exactly 6 characters of the alphabet (case-sensitive). */
bool cx_pairing_well_formed(const char *s);
/* HMAC-SHA256(key, code). */
void cx_pairing_mac(const uint8_t key[CX_PAIRING_KEY_BYTES], const char *code,
                    uint8_t out[CX_PAIRING_MAC_BYTES]);

#endif
