/* HTTP/1.1 heads for the WebSocket opening handshake (RFC 6455 4): llhttp parses request
 * and response heads fed in any split, we keep a capped copy of the headers and build the
 * few heads the servers and the client send. No sockets here; bytes in, heads out. */
#include "condrix/http.h"
#include "condrix/config.h"
#include "condrix/error.h"
#include "condrix/limits.h"

#include <llhttp.h>
#include <mbedtls/sha1.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_RAW_BYTES 16
#define WS_KEY_CHARS 24    /* base64 of 16 bytes, with "==" */
#define WS_ACCEPT_CHARS 28 /* base64 of a 20-byte SHA-1 */

/* One header name with its value; repeats of the name are folded into it. */
struct hdr {
    char *name;     /* as received, NUL-terminated */
    char *value;    /* OWS-trimmed, NUL-terminated; repeats joined with ", " */
    size_t vlen;    /* strlen(value) */
    unsigned count; /* header lines with this name */
};

enum head_state { HEAD_PARSING, HEAD_DONE, HEAD_FAILED };

/* What request and response parsers share: llhttp plus the capped copy of the head. */
struct head {
    llhttp_t hd_parser;     /* llhttp state; hd_parser.data points back here */
    size_t hd_max;          /* cap on head bytes, request/status line included */
    size_t hd_fed;          /* head bytes handed to llhttp so far */
    enum head_state hd_state; /* parsing, done (head complete) or failed (sticky) */
    int hd_err;             /* CX_E_* set by a callback that failed, then sticky */
    bool hd_complete;       /* on_headers_complete ran and paused llhttp */
    cx_buf hd_url;          /* request target being received, then NUL-terminated */
    cx_buf hd_field;        /* header name being received */
    cx_buf hd_value;        /* header value being received */
    size_t hd_lines;        /* header lines seen, capped by CX_HTTP_MAX_HEADERS */
    size_t hd_nhdr;         /* entries used in hd_hdr */
    size_t hd_stored;       /* bytes held by hd_hdr strings, capped by hd_max */
    struct hdr hd_hdr[CX_HTTP_MAX_HEADERS]; /* distinct header names, in arrival order */
    const char *hd_method;  /* static method name from llhttp, "" until complete */
    uint8_t hd_major;       /* HTTP version, valid once complete */
    uint8_t hd_minor;       /* with hd_major */
    int hd_status;          /* response status, 0 until complete */
};

struct cx_http_req {
    struct head h;
};

struct cx_http_resp {
    struct head h;
};

/* ---- small string helpers ---- */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* True when list (a comma-separated header value) holds token, case-insensitively. */
static bool list_has_token(const char *list, const char *token)
{
    if (!list)
        return false;
    size_t tlen = strlen(token);
    const char *p = list;
    for (;;) {
        while (is_ows(*p))
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && is_ows(end[-1]))
            end--;
        if ((size_t)(end - start) == tlen && strncasecmp(start, token, tlen) == 0)
            return true;
        if (!*p)
            return false;
        p++;
    }
}

/* RFC 9110 5.6.2 tchar. llhttp 8 without strict mode lets spaces into field names;
 * "Bad Name: x" is the kind of line that smuggles requests past proxies, so we refuse it. */
static bool is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (!strchr("!#$%&'*+-.^_`|~", c) || c == '\0')
            return false;
    }
    return true;
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding; out must hold 4 * ceil(n / 3) + 1 bytes. */
static void b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = b64_alphabet[v >> 6 & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = b64_alphabet[v >> 6 & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
}

static bool is_b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

/* A base64 string decodes to exactly 16 bytes only as 22 symbols and "==". The unused low
 * bits of the last symbol are not checked: lenient decoders accept them, so do we. */
static bool ws_key_valid(const char *key)
{
    if (strlen(key) != WS_KEY_CHARS)
        return false;
    for (size_t i = 0; i < WS_KEY_CHARS - 2; i++)
        if (!is_b64_char(key[i]))
            return false;
    return key[22] == '=' && key[23] == '=';
}

/* Text we put into a head line must not smuggle in CR, LF or other controls. */
static bool safe_field_text(const char *s, bool allow_space)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            if (!(allow_space && c == '\t'))
                return false;
        if (c == ' ' && !allow_space)
            return false;
    }
    return true;
}

/* ---- head storage ---- */

/* Append to a buffer and keep it NUL-terminated past len, so data can be read as a string. */
static int buf_put(cx_buf *b, const char *p, size_t n)
{
    int rc = cx_buf_append(b, p, n);
    if (rc)
        return rc;
    rc = cx_buf_append(b, "", 1);
    if (rc)
        return rc;
    b->len--;
    return CX_OK;
}

/* Index of the entry for name (case-insensitive), or hd_nhdr when there is none. */
static size_t head_find_idx(const struct head *h, const char *name)
{
    size_t i = 0;
    if (!name)
        return h->hd_nhdr;
    for (; i < h->hd_nhdr; i++)
        if (strcasecmp(h->hd_hdr[i].name, name) == 0)
            break;
    return i;
}

static const struct hdr *head_find(const struct head *h, const char *name)
{
    size_t i = head_find_idx(h, name);
    return i < h->hd_nhdr ? &h->hd_hdr[i] : NULL;
}

static const char *head_header(const struct head *h, const char *name)
{
    const struct hdr *e = head_find(h, name);
    return e ? e->value : NULL;
}

static unsigned head_header_count(const struct head *h, const char *name)
{
    const struct hdr *e = head_find(h, name);
    return e ? e->count : 0;
}

/* Move the header line held in hd_field/hd_value into the table. */
static int head_commit(struct head *h)
{
    int rc = CX_OK;
    const char *name = h->hd_field.data ? (const char *)h->hd_field.data : "";
    const char *v = h->hd_value.data ? (const char *)h->hd_value.data : "";
    size_t vlen = h->hd_value.len;
    while (vlen > 0 && is_ows(*v)) {
        v++;
        vlen--;
    }
    while (vlen > 0 && is_ows(v[vlen - 1]))
        vlen--;

    if (!is_token(name, h->hd_field.len)) {
        rc = CX_E_PROTO;
        goto out;
    }
    if (++h->hd_lines > CX_HTTP_MAX_HEADERS) {
        rc = CX_E_TOOBIG;
        goto out;
    }
    size_t idx = head_find_idx(h, name);
    struct hdr *e = NULL;
    if (idx < h->hd_nhdr) {
        e = &h->hd_hdr[idx];
        /* name and its NUL are not stored again, so ", " fits in what the line cost */
        size_t add = 2 + vlen;
        if (add > h->hd_max - h->hd_stored) {
            rc = CX_E_TOOBIG;
            goto out;
        }
        char *nv = realloc(e->value, e->vlen + add + 1);
        if (!nv) {
            rc = CX_E_NOMEM;
            goto out;
        }
        e->value = nv;
        memcpy(nv + e->vlen, ", ", 2);
        memcpy(nv + e->vlen + 2, v, vlen);
        e->vlen += add;
        nv[e->vlen] = '\0';
        e->count++;
        h->hd_stored += add;
        goto out;
    }
    size_t nlen = h->hd_field.len;
    size_t cost = nlen + 1 + vlen + 1;
    if (cost > h->hd_max - h->hd_stored) {
        rc = CX_E_TOOBIG;
        goto out;
    }
    char *nm = malloc(nlen + 1);
    char *val = malloc(vlen + 1);
    if (!nm || !val) {
        free(nm);
        free(val);
        rc = CX_E_NOMEM;
        goto out;
    }
    memcpy(nm, name, nlen);
    nm[nlen] = '\0';
    memcpy(val, v, vlen);
    val[vlen] = '\0';
    e = &h->hd_hdr[h->hd_nhdr++];
    e->name = nm;
    e->value = val;
    e->vlen = vlen;
    e->count = 1;
    h->hd_stored += cost;
out:
    h->hd_field.len = 0;
    h->hd_value.len = 0;
    return rc;
}

/* ---- llhttp callbacks ---- */

/* Record why a callback stops llhttp; feed reports hd_err instead of llhttp's code. */
static int cb_fail(llhttp_t *p, int err)
{
    struct head *h = p->data;
    h->hd_err = err;
    llhttp_set_error_reason(p, cx_strerror(err));
    return -1;
}

static int cb_url(llhttp_t *p, const char *at, size_t n)
{
    struct head *h = p->data;
    int rc = buf_put(&h->hd_url, at, n);
    return rc ? cb_fail(p, rc) : 0;
}

static int cb_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct head *h = p->data;
    int rc = buf_put(&h->hd_field, at, n);
    return rc ? cb_fail(p, rc) : 0;
}

static int cb_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct head *h = p->data;
    int rc = buf_put(&h->hd_value, at, n);
    return rc ? cb_fail(p, rc) : 0;
}

/* Commit here rather than when the next name starts: llhttp hands span data over lazily
 * (at the end of each read), but calls this at the same byte whatever the split, so the
 * verdict on a head (e.g. TOOBIG vs PROTO) does not depend on how it was read. */
static int cb_header_value_complete(llhttp_t *p)
{
    struct head *h = p->data;
    int rc = head_commit(h);
    return rc ? cb_fail(p, rc) : 0;
}

static bool head_wants_upgrade(const struct head *h)
{
    return list_has_token(head_header(h, "Upgrade"), "websocket") &&
           list_has_token(head_header(h, "Connection"), "upgrade");
}

/* The head ends here for every message: nothing we accept has a body worth reading, and
 * pausing keeps llhttp from eating bytes that belong to the WebSocket layer. */
static int cb_headers_complete(llhttp_t *p)
{
    struct head *h = p->data;
    if (h->hd_url.data == NULL) {
        int rc = buf_put(&h->hd_url, "", 0);
        if (rc)
            return cb_fail(p, rc);
    }
    cx_buf_free(&h->hd_field);
    cx_buf_free(&h->hd_value);
    h->hd_major = llhttp_get_http_major(p);
    h->hd_minor = llhttp_get_http_minor(p);
    if (llhttp_get_type(p) == HTTP_REQUEST) {
        h->hd_method = llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
        bool body = (p->flags & (F_CHUNKED | F_TRANSFER_ENCODING)) ||
                    ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
        /* a body would sit between the head and the first frame; refuse to guess */
        if (body && head_wants_upgrade(h))
            return cb_fail(p, CX_E_PROTO);
    } else {
        h->hd_status = llhttp_get_status_code(p);
    }
    h->hd_complete = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t req_settings = {
    .on_url = cb_url,
    .on_header_field = cb_header_field,
    .on_header_value = cb_header_value,
    .on_header_value_complete = cb_header_value_complete,
    .on_headers_complete = cb_headers_complete,
};

static const llhttp_settings_t resp_settings = {
    .on_header_field = cb_header_field,
    .on_header_value = cb_header_value,
    .on_header_value_complete = cb_header_value_complete,
    .on_headers_complete = cb_headers_complete,
};

/* ---- shared parser life cycle ---- */

static void head_init(struct head *h, llhttp_type_t type, const llhttp_settings_t *settings,
                      size_t max_head)
{
    /* one extra byte so a head of exactly max_head still fits its NUL */
    size_t bufmax = max_head < SIZE_MAX ? max_head + 1 : SIZE_MAX;
    llhttp_init(&h->hd_parser, type, settings);
    h->hd_parser.data = h;
    h->hd_max = max_head;
    h->hd_state = HEAD_PARSING;
    h->hd_method = "";
    cx_buf_init(&h->hd_url, bufmax);
    cx_buf_init(&h->hd_field, bufmax);
    cx_buf_init(&h->hd_value, bufmax);
}

static void head_free(struct head *h)
{
    for (size_t i = 0; i < h->hd_nhdr; i++) {
        free(h->hd_hdr[i].name);
        free(h->hd_hdr[i].value);
    }
    cx_buf_free(&h->hd_url);
    cx_buf_free(&h->hd_field);
    cx_buf_free(&h->hd_value);
}

static int head_fail(struct head *h, int err)
{
    h->hd_state = HEAD_FAILED;
    h->hd_err = err;
    cx_buf_free(&h->hd_field);
    cx_buf_free(&h->hd_value);
    return err;
}

static int head_feed(struct head *h, const uint8_t *data, size_t len, size_t *consumed)
{
    size_t used_dummy;
    if (!consumed)
        consumed = &used_dummy;
    *consumed = 0;
    if (h->hd_state == HEAD_DONE)
        return CX_OK;
    if (h->hd_state == HEAD_FAILED)
        return h->hd_err;
    if (len == 0)
        return CX_E_AGAIN;
    if (!data)
        return CX_E_INVAL;

    /* never show llhttp more than the cap allows, so the verdict is split-independent */
    size_t room = h->hd_max - h->hd_fed;
    size_t n = len < room ? len : room;
    if (n == 0)
        return head_fail(h, CX_E_TOOBIG);

    llhttp_errno_t e = llhttp_execute(&h->hd_parser, (const char *)data, n);
    if (e == HPE_OK) {
        h->hd_fed += n;
        if (n < len)
            return head_fail(h, CX_E_TOOBIG);
        *consumed = n;
        return CX_E_AGAIN;
    }
    if ((e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) && h->hd_complete) {
        const char *pos = llhttp_get_error_pos(&h->hd_parser);
        size_t used = (size_t)(pos - (const char *)data);
        h->hd_fed += used;
        h->hd_state = HEAD_DONE;
        *consumed = used;
        return CX_OK;
    }
    return head_fail(h, h->hd_err ? h->hd_err : CX_E_PROTO);
}

/* ---- server side ---- */

cx_http_req *cx_http_req_new(size_t max_head)
{
    cx_http_req *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    head_init(&req->h, HTTP_REQUEST, &req_settings, max_head);
    return req;
}

void cx_http_req_free(cx_http_req *req)
{
    if (!req)
        return;
    head_free(&req->h);
    free(req);
}

int cx_http_req_feed(cx_http_req *req, const uint8_t *data, size_t len, size_t *consumed)
{
    if (!req) {
        if (consumed)
            *consumed = 0;
        return CX_E_INVAL;
    }
    return head_feed(&req->h, data, len, consumed);
}

const char *cx_http_req_method(const cx_http_req *req)
{
    return req && req->h.hd_state == HEAD_DONE ? req->h.hd_method : "";
}

const char *cx_http_req_path(const cx_http_req *req)
{
    if (!req || req->h.hd_state != HEAD_DONE || !req->h.hd_url.data)
        return "";
    const char *u = (const char *)req->h.hd_url.data;
    /* The absolute form (RFC 9112 3.2.2, "GET http://host/path"), which a server must
     * accept: its path is what follows the authority. */
    if (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0) {
        const char *slash = strchr(strstr(u, "://") + 3, '/');
        return slash ? slash : "/";
    }
    return u;
}

const char *cx_http_req_header(const cx_http_req *req, const char *name)
{
    return req ? head_header(&req->h, name) : NULL;
}

bool cx_http_req_wants_upgrade(const cx_http_req *req)
{
    /* Upgrade: websocket alone already asks for a WebSocket: without Connection: Upgrade
     * it is a malformed handshake (400 from the check), not a plain GET. */
    return req && list_has_token(head_header(&req->h, "Upgrade"), "websocket");
}

int cx_http_req_check_upgrade(const cx_http_req *req, char accept_out[29])
{
    accept_out[0] = '\0';
    if (!req || req->h.hd_state != HEAD_DONE)
        return 400;
    const struct head *h = &req->h;
    if (strcmp(h->hd_method, "GET") != 0)
        return 400;
    if (h->hd_major < 1 || (h->hd_major == 1 && h->hd_minor < 1))
        return 400;
    /* RFC 9112 3.2: exactly one Host */
    const char *host = head_header(h, "Host");
    if (!host || !*host || head_header_count(h, "Host") != 1)
        return 400;
    if (!head_wants_upgrade(h))
        return 400;
    const char *version = head_header(h, "Sec-WebSocket-Version");
    if (!version || strcmp(version, "13") != 0)
        return 426;
    const char *key = head_header(h, "Sec-WebSocket-Key");
    if (!key || head_header_count(h, "Sec-WebSocket-Key") != 1 || !ws_key_valid(key))
        return 400;
    cx_http_ws_accept(key, accept_out);
    /* only a failing SHA-1 leaves it empty: our fault, not the client's */
    return accept_out[0] ? 0 : 500;
}

void cx_http_ws_accept(const char *key, char accept_out[29])
{
    mbedtls_sha1_context ctx;
    uint8_t digest[20];
    accept_out[0] = '\0';
    mbedtls_sha1_init(&ctx);
    if (mbedtls_sha1_starts_ret(&ctx) != 0)
        goto out;
    if (mbedtls_sha1_update_ret(&ctx, (const unsigned char *)key, strlen(key)) != 0)
        goto out;
    if (mbedtls_sha1_update_ret(&ctx, (const unsigned char *)WS_GUID, strlen(WS_GUID)) != 0)
        goto out;
    if (mbedtls_sha1_finish_ret(&ctx, digest) != 0)
        goto out;
    b64_encode(digest, sizeof(digest), accept_out);
out:
    mbedtls_sha1_free(&ctx);
}

/* ---- building heads ---- */

const char *cx_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

int cx_http_write_upgrade_response(cx_buf *out, const char *accept)
{
    if (!out || !accept || strlen(accept) != WS_ACCEPT_CHARS || !safe_field_text(accept, false))
        return CX_E_INVAL;
    size_t mark = out->len;
    int rc = cx_buf_appendf(out,
                            "HTTP/1.1 101 Switching Protocols\r\n"
                            "Upgrade: websocket\r\n"
                            "Connection: Upgrade\r\n"
                            "Sec-WebSocket-Accept: %s\r\n"
                            "\r\n",
                            accept);
    if (rc)
        out->len = mark;
    return rc;
}

int cx_http_write_response(cx_buf *out, int status, const char *content_type,
                           const char *extra_headers, const void *body, size_t body_len)
{
    if (!out || status < 100 || status > 999 || (body_len > 0 && !body))
        return CX_E_INVAL;
    if (content_type && !safe_field_text(content_type, true))
        return CX_E_INVAL;
    /* RFC 9110 8.6 and 6.4.1: these carry no content and 1xx/204 no Content-Length */
    bool bodiless = status < 200 || status == 204 || status == 304;
    if (bodiless && body_len > 0)
        return CX_E_INVAL;

    size_t mark = out->len;
    int rc = cx_buf_appendf(out, "HTTP/1.1 %d %s\r\n", status, cx_http_reason(status));
    if (rc)
        goto fail;
    if (content_type) {
        rc = cx_buf_appendf(out, "Content-Type: %s\r\n", content_type);
        if (rc)
            goto fail;
    }
    if (!bodiless) {
        rc = cx_buf_appendf(out, "Content-Length: %zu\r\n", body_len);
        if (rc)
            goto fail;
    }
    rc = cx_buf_append_str(out, "Connection: close\r\n");
    if (rc)
        goto fail;
    if (extra_headers) {
        rc = cx_buf_append_str(out, extra_headers);
        if (rc)
            goto fail;
    }
    rc = cx_buf_append_str(out, "\r\n");
    if (rc)
        goto fail;
    rc = cx_buf_append(out, body, body_len);
    if (rc)
        goto fail;
    return CX_OK;
fail:
    out->len = mark;
    return rc;
}

/* ---- client side ---- */

void cx_http_ws_new_key(char key_out[25])
{
    uint8_t raw[WS_KEY_RAW_BYTES];
    randombytes_buf(raw, sizeof(raw));
    b64_encode(raw, sizeof(raw), key_out);
}

int cx_http_write_upgrade_request(cx_buf *out, const char *host, const char *path,
                                  const char *key, const char *extra_headers)
{
    if (!out || !host || !path || !key)
        return CX_E_INVAL;
    if (!*host || !safe_field_text(host, false) || !*path || !safe_field_text(path, false) ||
        !ws_key_valid(key))
        return CX_E_INVAL;
    size_t mark = out->len;
    int rc = cx_buf_appendf(out,
                            "GET %s HTTP/1.1\r\n"
                            "Host: %s\r\n"
                            "Upgrade: websocket\r\n"
                            "Connection: Upgrade\r\n"
                            "Sec-WebSocket-Key: %s\r\n"
                            "Sec-WebSocket-Version: 13\r\n",
                            path, host, key);
    if (rc)
        goto fail;
    if (extra_headers) {
        rc = cx_buf_append_str(out, extra_headers);
        if (rc)
            goto fail;
    }
    rc = cx_buf_append_str(out, "\r\n");
    if (rc)
        goto fail;
    return CX_OK;
fail:
    out->len = mark;
    return rc;
}

cx_http_resp *cx_http_resp_new(size_t max_head)
{
    cx_http_resp *resp = calloc(1, sizeof(*resp));
    if (!resp)
        return NULL;
    head_init(&resp->h, HTTP_RESPONSE, &resp_settings, max_head);
    return resp;
}

void cx_http_resp_free(cx_http_resp *resp)
{
    if (!resp)
        return;
    head_free(&resp->h);
    free(resp);
}

int cx_http_resp_feed(cx_http_resp *resp, const uint8_t *data, size_t len, size_t *consumed)
{
    if (!resp) {
        if (consumed)
            *consumed = 0;
        return CX_E_INVAL;
    }
    return head_feed(&resp->h, data, len, consumed);
}

int cx_http_resp_status(const cx_http_resp *resp)
{
    return resp && resp->h.hd_state == HEAD_DONE ? resp->h.hd_status : 0;
}

const char *cx_http_resp_header(const cx_http_resp *resp, const char *name)
{
    return resp ? head_header(&resp->h, name) : NULL;
}

int cx_http_resp_check_upgrade(const cx_http_resp *resp, const char *key)
{
    char want[WS_ACCEPT_CHARS + 1];
    if (!resp || !key || resp->h.hd_state != HEAD_DONE)
        return CX_E_PROTO;
    const struct head *h = &resp->h;
    if (h->hd_status != 101 || !head_wants_upgrade(h))
        return CX_E_PROTO;
    const char *got = head_header(h, "Sec-WebSocket-Accept");
    if (!got || head_header_count(h, "Sec-WebSocket-Accept") != 1)
        return CX_E_PROTO;
    cx_http_ws_accept(key, want);
    if (!want[0] || strcmp(got, want) != 0)
        return CX_E_PROTO;
    return CX_OK;
}

bool cx_http_req_origin_local(const cx_http_req *req)
{
    const char *o = cx_http_req_header(req, "Origin");
    if (!o)
        return true;
    const char *host = strstr(o, "://");
    if (!host)
        return false; /* "null" (a sandboxed page, a file) and anything odd */
    host += 3;
    char h[64];
    size_t n;
    if (*host == '[') { /* [v6]:port */
        const char *end = strchr(host, ']');
        if (!end)
            return false;
        n = (size_t)(end - host - 1);
        host++;
    } else {
        n = strcspn(host, ":/");
    }
    if (n == 0 || n >= sizeof h)
        return false;
    memcpy(h, host, n);
    h[n] = '\0';
    return strcasecmp(h, "localhost") == 0 || cx_addr_is_loopback(h);
}

bool cx_http_req_forwarded(const cx_http_req *req)
{
    static const char *const names[] = {"X-Forwarded-For", "Forwarded", "CF-Connecting-IP",
                                        "CF-Ray", "X-Real-IP"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (cx_http_req_header(req, names[i]))
            return true;
    return false;
}
