/* Capped byte buffers: the one place peer-sized data is stored, so every
 * allocation a peer can drive is bounded by a cap the caller chose. */
#include "condrix/buf.h"
#include "condrix/error.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cx_buf_init(cx_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

static int reserve(cx_buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra)
        return CX_E_TOOBIG;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return CX_OK;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    if (ncap > b->max)
        ncap = b->max;
    uint8_t *p = realloc(b->data, ncap);
    if (!p)
        return CX_E_NOMEM;
    b->data = p;
    b->cap = ncap;
    return CX_OK;
}

int cx_buf_append(cx_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return CX_OK;
    int rc = reserve(b, n);
    if (rc)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return CX_OK;
}

int cx_buf_append_str(cx_buf *b, const char *s)
{
    return cx_buf_append(b, s, strlen(s));
}

int cx_buf_appendf(cx_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return CX_E_INVAL;
    /* one extra byte for vsnprintf's NUL, which we then drop from len */
    int rc = reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return CX_OK;
}

void cx_buf_consume(cx_buf *b, size_t n)
{
    if (n >= b->len) {
        cx_buf_free(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void cx_buf_free(cx_buf *b)
{
    if (b->data) {
        sodium_memzero(b->data, b->cap);
        free(b->data);
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}
