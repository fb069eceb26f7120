/* Capped, growable byte buffers. Every size a peer chooses goes through one,
 * so no peer can make us allocate past the cap we set. */
#ifndef CONDRIX_BUF_H
#define CONDRIX_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct cx_buf {
    uint8_t *data; /* heap storage, NULL until first append */
    size_t len;    /* bytes in use, from data[0] */
    size_t cap;    /* bytes allocated */
    size_t max;    /* hard cap on len; appends beyond fail with CX_E_TOOBIG */
} cx_buf;

/* Initialise an empty buffer that may hold at most max bytes. Allocates nothing. */
void cx_buf_init(cx_buf *b, size_t max);
/* Append n bytes. Returns CX_OK, CX_E_TOOBIG (nothing appended) or CX_E_NOMEM. */
int cx_buf_append(cx_buf *b, const void *p, size_t n);
/* Append a NUL-terminated string (without the NUL). */
int cx_buf_append_str(cx_buf *b, const char *s);
/* printf-style append; CX_E_TOOBIG if the result would pass the cap. */
int cx_buf_appendf(cx_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes (n <= len). Frees storage when the buffer becomes empty. */
void cx_buf_consume(cx_buf *b, size_t n);
/* Release storage (wiped first, since buffers may have held secrets); keep max. */
void cx_buf_free(cx_buf *b);

#endif
