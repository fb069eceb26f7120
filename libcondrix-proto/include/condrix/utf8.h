/* Strict UTF-8 validation (RFC 3629) for WebSocket text and anything else a peer
 * claims is text: no overlong forms, no surrogates, nothing above U+10FFFF. */
#ifndef CONDRIX_UTF8_H
#define CONDRIX_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True if the n bytes at s are well-formed UTF-8 (n == 0 is valid; s may then be
 * NULL). A sequence cut off at the end is invalid. */
bool cx_utf8_valid(const uint8_t *s, size_t n);

#endif
