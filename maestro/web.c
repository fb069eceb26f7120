/* Maestro's web client over plain HTTP. The files are embedded at build time (see
 * web/embed.c) or, for development, read from a directory on every request; both ways
 * they are answered with their content type, a strong ETag and Cache-Control: no-cache,
 * so a browser revalidates cheaply and never runs a stale client after an upgrade. Every
 * answer carries the security headers, and the WebSocket upgrade is refused to pages of
 * other origins, which a browser would otherwise let reach Maestro with its user's IP. */
#include "web.h"

#include "web/webfile.h"

#include "condrix/error.h"
#include "condrix/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MX_WEB_MAX_FILE_BYTES (4L * 1024 * 1024) /* a file read from --web-dir */
#define MX_WEB_ORIGIN_MAX_CHARS 255              /* an Origin longer never matches */
#define MX_WEB_EXTRA_HEADERS 1024                /* room for our header lines */

/* No inline script or style: the client is made only of files from this origin, and
 * the QR code of TOTP enrolment is shown as a blob: image. form-action 'none' keeps a
 * form from ever submitting its fields into a URL, even if the script failed to load. */
static const char security_headers[] =
    "Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "X-Frame-Options: DENY\r\n"
    "Cross-Origin-Opener-Policy: same-origin\r\n"
    "Cross-Origin-Resource-Policy: same-origin\r\n";

const char *mx_web_security_headers(void)
{
    return security_headers;
}

/* ---- static files ---- */

/* A file to answer with: embedded bytes, or bytes read from the directory (owned). */
typedef struct web_file {
    const char *type;                /* Content-Type */
    char etag[MX_WEB_ETAG_CHARS];    /* quoted strong ETag */
    const unsigned char *data;       /* the bytes */
    size_t len;                      /* their count */
    unsigned char *owned;            /* malloc'd copy when read from a directory */
} web_file;

static bool find_embedded(const char *name, web_file *f)
{
    for (size_t i = 0; i < mx_web_asset_count; i++) {
        const mx_web_asset *a = &mx_web_assets[i];
        if (strcmp(a->name, name) == 0) {
            f->type = a->type;
            snprintf(f->etag, sizeof f->etag, "%s", a->etag);
            f->data = a->data;
            f->len = a->len;
            return true;
        }
    }
    return false;
}

/* CX_OK with the bytes in f; CX_E_NOTFOUND when there is no such regular file;
 * CX_E_TOOBIG, CX_E_NOMEM or CX_E_IO (errno kept) on failures answered with 500. */
static int read_from_dir(const char *dir, const char *name, web_file *f)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return CX_E_NOTFOUND;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR || errno == EISDIR ? CX_E_NOTFOUND : CX_E_IO;
    int rc = CX_OK;
    struct stat st;
    unsigned char *buf = NULL;
    if (fstat(fd, &st) != 0) {
        rc = CX_E_IO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = CX_E_NOTFOUND;
        goto out;
    }
    if (st.st_size > MX_WEB_MAX_FILE_BYTES) {
        rc = CX_E_TOOBIG;
        goto out;
    }
    size_t want = (size_t)st.st_size;
    buf = malloc(want + 1);
    if (!buf) {
        rc = CX_E_NOMEM;
        goto out;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = read(fd, buf + got, want - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = CX_E_IO;
            goto out;
        }
        if (n == 0)
            break; /* shrank meanwhile: serve what is there */
        got += (size_t)n;
    }
    f->owned = buf;
    f->data = buf;
    f->len = got;
    mx_web_etag(buf, got, f->etag);
    buf = NULL;
out:
    free(buf);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Does If-None-Match name this ETag? Weak comparison (RFC 9110 13.1.2): W/ is ignored. */
static bool etag_matches(const char *inm, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = inm;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        const char *start = p;
        if (*p == '"') {
            const char *q = strchr(p + 1, '"');
            p = q ? q + 1 : p + strlen(p);
        } else {
            while (*p && *p != ',')
                p++;
        }
        if ((size_t)(p - start) == elen && strncmp(start, etag, elen) == 0)
            return true;
        while (*p && *p != ',')
            p++;
    }
    return false;
}

static void reply(cx_conn *c, int status, const char *type, const char *extra, const void *body,
                  size_t len)
{
    char headers[MX_WEB_EXTRA_HEADERS];
    snprintf(headers, sizeof headers, "%s%s", extra ? extra : "", security_headers);
    cx_conn_http_reply(c, status, type, headers, body, len);
}

bool mx_web_serve(cx_conn *c, const cx_http_req *req, const char *dir_or_null)
{
    const char *target = cx_http_req_path(req);
    const char *method = cx_http_req_method(req);
    if (!target || target[0] != '/' || !method)
        return false;
    size_t plen = strcspn(target, "?#");
    char name[129];
    if (plen == 1) {
        snprintf(name, sizeof name, "index.html");
    } else {
        if (!mx_web_name_ok(target + 1, plen - 1))
            return false;
        memcpy(name, target + 1, plen - 1);
        name[plen - 1] = '\0';
    }
    const char *type = mx_web_type_of(name);
    if (!type)
        return false;

    web_file f = {.type = type};
    if (dir_or_null) {
        int rc = read_from_dir(dir_or_null, name, &f);
        if (rc == CX_E_NOTFOUND)
            return false;
        if (rc != CX_OK) {
            cx_log_error("web: cannot read %s/%s: %s", dir_or_null, name,
                         rc == CX_E_IO ? strerror(errno) : cx_strerror(rc));
            static const char msg[] = "cannot read this file\n";
            reply(c, 500, "text/plain; charset=utf-8", "Cache-Control: no-store\r\n", msg,
                  sizeof msg - 1);
            return true;
        }
    } else if (!find_embedded(name, &f)) {
        return false;
    }

    bool head = strcmp(method, "HEAD") == 0;
    if (!head && strcmp(method, "GET") != 0) {
        static const char msg[] = "method not allowed\n";
        reply(c, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n", msg, sizeof msg - 1);
        goto out;
    }
    char extra[160];
    snprintf(extra, sizeof extra, "ETag: %s\r\nCache-Control: no-cache\r\n", f.etag);
    const char *inm = cx_http_req_header(req, "If-None-Match");
    if (inm && etag_matches(inm, f.etag)) {
        reply(c, 304, NULL, extra, NULL, 0);
        goto out;
    }
    /* HEAD: net.c sends the head alone, with GET's Content-Length. */
    reply(c, 200, f.type, extra, f.data, f.len);
out:
    free(f.owned);
    return true;
}

/* ---- the Origin check ---- */

/* Lower-cased origin without surrounding blanks, a trailing '/', or the scheme's default
 * port, into out; false when it does not fit (and so never matches). */
static bool origin_norm(const char *s, size_t len, char out[MX_WEB_ORIGIN_MAX_CHARS + 1])
{
    while (len && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    if (len && s[len - 1] == '/')
        len--;
    if (len == 0 || len > MX_WEB_ORIGIN_MAX_CHARS)
        return false;
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[len] = '\0';
    static const struct {
        const char *scheme;
        const char *port;
    } defaults[] = {{"http://", ":80"}, {"https://", ":443"}};
    for (size_t i = 0; i < 2; i++) {
        size_t sl = strlen(defaults[i].scheme), pl = strlen(defaults[i].port);
        if (strncmp(out, defaults[i].scheme, sl) == 0 && len > sl + pl &&
            strcmp(out + len - pl, defaults[i].port) == 0)
            out[len - pl] = '\0';
    }
    return true;
}

bool mx_web_origin_allowed(const cx_http_req *req, const char *allowed_list_or_null, bool tls)
{
    const char *origin = cx_http_req_header(req, "Origin");
    if (!origin)
        return true;
    char want[MX_WEB_ORIGIN_MAX_CHARS + 1];
    /* "null" is what sandboxed frames and file: pages send: never ours. */
    if (!origin_norm(origin, strlen(origin), want) || strcmp(want, "null") == 0)
        return false;
    char have[MX_WEB_ORIGIN_MAX_CHARS + 1];
    const char *host = cx_http_req_header(req, "Host");
    /* The page's own host, by either scheme: behind a TLS-terminating proxy or tunnel the
     * browser is on https:// while Maestro itself speaks plain HTTP. What stops cross-site
     * WebSocket hijacking is the host, which the proxy passes through in Host. */
    for (int i = 0; host && *host && !strchr(host, ',') && i < 2; i++) {
        const char *scheme = (i == 0) == tls ? "https" : "http";
        char own[MX_WEB_ORIGIN_MAX_CHARS + 16];
        int n = snprintf(own, sizeof own, "%s://%s", scheme, host);
        if (n > 0 && (size_t)n < sizeof own && origin_norm(own, (size_t)n, have) &&
            strcmp(have, want) == 0)
            return true;
    }
    const char *p = allowed_list_or_null;
    while (p && *p) {
        size_t len = strcspn(p, ",");
        if (origin_norm(p, len, have) && strcmp(have, want) == 0)
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}
