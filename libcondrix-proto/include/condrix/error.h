/* Error codes shared by every libcondrix-proto module.
 * Library functions return 0 (CX_OK) or one of these negative codes. */
#ifndef CONDRIX_ERROR_H
#define CONDRIX_ERROR_H

enum cx_error {
    CX_OK = 0,
    /* resources */
    CX_E_NOMEM = -1,     /* allocation failed */
    CX_E_TOOBIG = -2,    /* input or buffer over its cap */
    /* input */
    CX_E_AGAIN = -10,    /* need more input; not an error by itself */
    CX_E_PROTO = -11,    /* malformed protocol input */
    CX_E_INVAL = -12,    /* bad argument or value */
    CX_E_UTF8 = -13,     /* invalid UTF-8 */
    CX_E_FORMAT = -14,   /* well-formed, wrong shape (e.g. a token that is not 64 hex) */
    /* lookup */
    CX_E_NOTFOUND = -20,
    CX_E_EXISTS = -21,
    CX_E_EXPIRED = -22,
    CX_E_REPLAY = -23,   /* a one-time value presented again */
    CX_E_DENIED = -24,   /* a check failed (wrong secret, wrong code) */
    CX_E_LIMITED = -25,  /* rate limited */
    /* environment */
    CX_E_IO = -30,       /* system call failed; errno tells more */
    CX_E_DB = -31,       /* SQLite failed */
    CX_E_CRYPTO = -32,   /* crypto library failed */
    CX_E_TLS = -33,      /* TLS failure */
    CX_E_CLOSED = -34,   /* the connection is closing or closed */
};

/* A static, human-readable description of an error code. */
const char *cx_strerror(int err);

/* Replace *errmsg (when errmsg is not NULL) with a malloc'd printf-style message for the
 * operator; on ENOMEM *errmsg is left NULL and the caller's error code still tells. */
void cx_set_errmsg(char **errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
