/* Strict UTF-8 validation. Protocol text is almost all ASCII, so the scan checks
 * eight bytes per step until it meets a byte with the high bit set, then checks
 * that one sequence against the RFC 3629 table of well-formed byte ranges. */
#include "condrix/utf8.h"

#include <string.h>

#define HIGH_BITS 0x8080808080808080ull

static bool is_cont(uint8_t c)
{
    return (c & 0xC0) == 0x80;
}

/* Length of the well-formed sequence starting at s[0] (a non-ASCII byte), or 0.
 * The second byte's range depends on the lead byte: that is where overlongs
 * (E0, F0), surrogates (ED) and code points past U+10FFFF (F4) are ruled out. */
static size_t seq_len(const uint8_t *s, size_t left)
{
    uint8_t c = s[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;

    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0; /* 80..C1 (continuation or overlong lead) and F5..FF */
    }
    if (left < need || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < need; k++)
        if (!is_cont(s[k]))
            return 0;
    return need;
}

bool cx_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        if (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, sizeof w);
            w &= HIGH_BITS;
            if (w == 0) {
                i += 8;
                continue;
            }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            /* Jump straight to the first non-ASCII byte of the word. */
            i += (size_t)__builtin_ctzll(w) / 8;
#endif
        }
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = seq_len(s + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}
