/* Maestro's web client over plain HTTP: the static files (built into the binary, or read
 * from a directory for development), the security headers every response carries, and
 * the Origin check of the WebSocket upgrade that keeps other sites' pages out. */
#ifndef CONDRIX_MAESTRO_WEB_H
#define CONDRIX_MAESTRO_WEB_H

#include <stdbool.h>

#include "condrix/http.h"
#include "condrix/net.h"

/* Answer a request for the web client when req names one of its files ("/" is
 * index.html; the query string is ignored): 200 with Content-Type, a strong ETag of the
 * content and Cache-Control: no-cache; 304 when If-None-Match names that ETag; 405 for
 * methods other than GET and HEAD. Every answer carries mx_web_security_headers().
 * dir_or_null: serve from that directory instead of the embedded copy (read on every
 * request, so edits show on reload). Returns false, answering nothing, when the path is
 * not a web file, so the caller can answer it (/healthz, its own 404). */
bool mx_web_serve(cx_conn *c, const cx_http_req *req, const char *dir_or_null);

/* The security header lines ("Name: value\r\n" each) for any HTTP response: a
 * Content-Security-Policy without inline script and with frame-ancestors 'none',
 * nosniff and no-referrer. A static string. */
const char *mx_web_security_headers(void);

/* May a WebSocket upgrade with this request's Origin go ahead? True when there is no
 * Origin header (Cores, the CLI and other non-browser clients), when Origin is the
 * request's own scheme://Host (https when tls), or when it is listed in allowed_list,
 * a comma-separated list of origins such as CONDRIX_MAESTRO_ALLOWED_ORIGINS (may be
 * NULL). Comparisons ignore case, a trailing '/' and the scheme's default port. */
bool mx_web_origin_allowed(const cx_http_req *req, const char *allowed_list_or_null, bool tls);

#endif
