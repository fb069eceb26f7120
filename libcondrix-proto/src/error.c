/* Human-readable text for the library's error codes. */
#include "condrix/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *cx_strerror(int err)
{
    switch (err) {
    case CX_OK: return "success";
    case CX_E_NOMEM: return "out of memory";
    case CX_E_TOOBIG: return "too big";
    case CX_E_AGAIN: return "need more input";
    case CX_E_PROTO: return "protocol error";
    case CX_E_INVAL: return "invalid argument";
    case CX_E_UTF8: return "invalid UTF-8";
    case CX_E_FORMAT: return "malformed value";
    case CX_E_NOTFOUND: return "not found";
    case CX_E_EXISTS: return "already exists";
    case CX_E_EXPIRED: return "expired";
    case CX_E_REPLAY: return "already used";
    case CX_E_DENIED: return "denied";
    case CX_E_LIMITED: return "rate limited";
    case CX_E_IO: return "I/O error";
    case CX_E_DB: return "database error";
    case CX_E_CRYPTO: return "crypto error";
    case CX_E_TLS: return "TLS error";
    case CX_E_CLOSED: return "connection closed";
    default: return "unknown error";
    }
}

void cx_set_errmsg(char **errmsg, const char *fmt, ...)
{
    if (errmsg == NULL)
        return;
    free(*errmsg);
    *errmsg = NULL;
    va_list ap;
    va_start(ap, fmt);
    char *m = NULL;
    if (vasprintf(&m, fmt, ap) < 0)
        m = NULL;
    va_end(ap);
    *errmsg = m;
}
