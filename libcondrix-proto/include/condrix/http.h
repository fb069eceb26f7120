/* HTTP/1.1 request and response heads for the WebSocket upgrade (RFC 6455 4),
 * parsed with llhttp. Sans-I/O: bytes in, parsed heads out; no sockets. */
#ifndef CONDRIX_HTTP_H
#define CONDRIX_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "condrix/buf.h"

/* ---- server side: parse a request head ---- */

typedef struct cx_http_req cx_http_req; /* opaque; freed after the upgrade */

/* A parser for one request head of at most max_head bytes (request line and headers).
 * Returns NULL on allocation failure. */
cx_http_req *cx_http_req_new(size_t max_head);
void cx_http_req_free(cx_http_req *req);

/* Feed bytes. Returns:
 *   CX_OK        head complete; *consumed bytes were used; any bytes after them
 *                (data + *consumed ..) belong to the next layer (e.g. the first WS frame)
 *   CX_E_AGAIN   all bytes used, head not complete yet
 *   CX_E_TOOBIG  head larger than max_head (answer 431)
 *   CX_E_PROTO   malformed HTTP (answer 400)
 * Safe to call with any split of the input, down to one byte at a time. */
int cx_http_req_feed(cx_http_req *req, const uint8_t *data, size_t len, size_t *consumed);

const char *cx_http_req_method(const cx_http_req *req); /* "GET" */
const char *cx_http_req_path(const cx_http_req *req);   /* request target, e.g. "/ws?x=1" */
/* Value of the first header with this name (case-insensitive), or NULL.
 * Repeated headers of the same name are joined with ", " as RFC 9110 allows. */
const char *cx_http_req_header(const cx_http_req *req, const char *name);
/* True when the request asks for a WebSocket upgrade (an Upgrade header with the
 * "websocket" token, case-insensitive); cx_http_req_check_upgrade then judges it, and
 * refuses one without "Connection: upgrade" with 400. */
bool cx_http_req_wants_upgrade(const cx_http_req *req);
/* True when the request carries any forwarding header (X-Forwarded-For, Forwarded,
 * CF-Connecting-IP, CF-Ray, X-Real-IP): it came through a proxy or tunnel. */
bool cx_http_req_forwarded(const cx_http_req *req);
/* True when the request carries no Origin (not a browser page) or an Origin whose host
 * is this machine (localhost, 127.0.0.0/8, [::1]): a page on another site is false. */
bool cx_http_req_origin_local(const cx_http_req *req);

/* Check the upgrade request per RFC 6455 4.2.1: method GET, HTTP/1.1 or later, Host
 * present, Sec-WebSocket-Version 13, Sec-WebSocket-Key a base64 of 16 bytes.
 * On success writes the Sec-WebSocket-Accept value (28 chars + NUL) and returns 0.
 * Otherwise returns the HTTP status to answer: 400, or 426 for a wrong version
 * (the 426 answer must carry "Sec-WebSocket-Version: 13"). */
int cx_http_req_check_upgrade(const cx_http_req *req, char accept_out[29]);

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)). accept_out gets 28 chars + NUL. */
void cx_http_ws_accept(const char *key, char accept_out[29]);

/* ---- building heads ---- */

/* "HTTP/1.1 101 Switching Protocols" with Upgrade, Connection, Sec-WebSocket-Accept. */
int cx_http_write_upgrade_response(cx_buf *out, const char *accept);

/* A complete non-upgrade response with Content-Length, Connection: close and the
 * given content type. extra_headers (may be NULL) is inserted verbatim; each line
 * must end in "\r\n". Reason phrases come from the status code. */
int cx_http_write_response(cx_buf *out, int status, const char *content_type,
                           const char *extra_headers, const void *body, size_t body_len);

/* The reason phrase for a status code ("Bad Request"), "Unknown" if none. */
const char *cx_http_reason(int status);

/* ---- client side ---- */

/* Fill key_out with a fresh random Sec-WebSocket-Key (24 chars + NUL). */
void cx_http_ws_new_key(char key_out[25]);
/* A GET upgrade request for host (with :port if not default) and path. extra_headers
 * as above, may be NULL. */
int cx_http_write_upgrade_request(cx_buf *out, const char *host, const char *path,
                                  const char *key, const char *extra_headers);

typedef struct cx_http_resp cx_http_resp; /* opaque */
cx_http_resp *cx_http_resp_new(size_t max_head);
void cx_http_resp_free(cx_http_resp *resp);
/* Same contract as cx_http_req_feed, for a response head. */
int cx_http_resp_feed(cx_http_resp *resp, const uint8_t *data, size_t len, size_t *consumed);
int cx_http_resp_status(const cx_http_resp *resp);
const char *cx_http_resp_header(const cx_http_resp *resp, const char *name);
/* 0 when the response is a valid 101 for the key we sent (Upgrade, Connection and
 * Sec-WebSocket-Accept all right), CX_E_PROTO otherwise. */
int cx_http_resp_check_upgrade(const cx_http_resp *resp, const char *key);

#endif
