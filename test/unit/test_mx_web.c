/* Unit tests of Maestro's web module: the embedded table agrees with webfile.h, the
 * Origin check of the upgrade, and mx_web_serve answering real HTTP requests (types,
 * ETags, 304, 405, HEAD, the security headers, paths it must refuse) from the embedded
 * copy and from a directory, through a cx_server on a loop in a second thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "web.h"
#include "web/webfile.h"

#include "condrix/error.h"
#include "condrix/http.h"
#include "condrix/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- a parsed request from text ---- */

static cx_http_req *parse(const char *text)
{
    cx_http_req *req = cx_http_req_new(16384);
    assert_non_null(req);
    size_t used = 0;
    assert_int_equal(cx_http_req_feed(req, (const uint8_t *)text, strlen(text), &used), CX_OK);
    return req;
}

static bool origin_ok(const char *host, const char *origin, const char *list, bool tls)
{
    char text[1024];
    snprintf(text, sizeof text, "GET /ws HTTP/1.1\r\n%s%s%s%s%s%s\r\n", host ? "Host: " : "",
             host ? host : "", host ? "\r\n" : "", origin ? "Origin: " : "",
             origin ? origin : "", origin ? "\r\n" : "");
    cx_http_req *req = parse(text);
    bool ok = mx_web_origin_allowed(req, list, tls);
    cx_http_req_free(req);
    return ok;
}

static void test_origin(void **state)
{
    (void)state;
    /* Cores and the CLI send no Origin. */
    assert_true(origin_ok("m.example:9200", NULL, NULL, false));
    /* The page's own host, by either scheme: a TLS proxy or tunnel in front of plain-HTTP
     * Maestro serves the page as https:// while Maestro sees http. */
    assert_true(origin_ok("m.example:9200", "http://m.example:9200", NULL, false));
    assert_true(origin_ok("M.Example:9200", "http://m.example:9200/", NULL, false));
    assert_true(origin_ok("m.example:9200", "https://m.example:9200", NULL, false));
    assert_true(origin_ok("m.example", "https://m.example", NULL, true));
    assert_true(origin_ok("m.example", "https://m.example", NULL, false));
    assert_true(origin_ok("m.example", "http://m.example", NULL, true));
    /* Another host, or the same host on another port, is not the page's own. */
    assert_false(origin_ok("m.example", "https://evil.example", NULL, false));
    assert_false(origin_ok("m.example:9200", "https://m.example:9201", NULL, false));
    /* Default ports are the same origin written two ways. */
    assert_true(origin_ok("m.example:443", "https://m.example", NULL, true));
    assert_true(origin_ok("m.example", "http://m.example:80", NULL, false));
    /* Other sites, look-alikes and opaque origins. */
    assert_false(origin_ok("m.example:9200", "http://evil.example", NULL, false));
    assert_false(origin_ok("m.example:9200", "http://m.example:9201", NULL, false));
    assert_false(origin_ok("m.example:9200", "http://m.example:9200.evil.example", NULL, false));
    assert_false(origin_ok("m.example", "null", "null", false));
    assert_false(origin_ok(NULL, "http://m.example", NULL, false));
    /* The allowed list: comma-separated, blanks and case ignored, exact otherwise. */
    const char *list = " https://app.example ,http://localhost:5173/";
    assert_true(origin_ok("m.example", "https://APP.example", list, false));
    assert_true(origin_ok("m.example", "http://localhost:5173", list, false));
    assert_false(origin_ok("m.example", "http://localhost:5174", list, false));
    assert_false(origin_ok("m.example", "https://app.example.evil", list, false));
    assert_false(origin_ok("m.example", "https://app.example", "", false));
    /* Longer than any origin: never matches, never overflows. */
    char big[600];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "http://", 7);
    assert_false(origin_ok("m.example", big, big, false));
}

static void test_security_headers(void **state)
{
    (void)state;
    const char *h = mx_web_security_headers();
    assert_non_null(strstr(h, "Content-Security-Policy: default-src 'self';"));
    assert_non_null(strstr(h, "frame-ancestors 'none'"));
    assert_null(strstr(h, "unsafe-inline"));
    assert_non_null(strstr(h, "X-Content-Type-Options: nosniff\r\n"));
    assert_non_null(strstr(h, "Referrer-Policy: no-referrer\r\n"));
    /* Every line ends in CRLF so callers can append it to theirs. */
    size_t n = strlen(h);
    assert_true(n > 2 && h[n - 2] == '\r' && h[n - 1] == '\n');
}

static void test_embedded_table(void **state)
{
    (void)state;
    bool have_index = false, have_app = false;
    assert_true(mx_web_asset_count > 0);
    for (size_t i = 0; i < mx_web_asset_count; i++) {
        const mx_web_asset *a = &mx_web_assets[i];
        char etag[MX_WEB_ETAG_CHARS];
        mx_web_etag(a->data, a->len, etag);
        assert_string_equal(a->etag, etag);
        assert_string_equal(a->type, mx_web_type_of(a->name));
        assert_true(mx_web_name_ok(a->name, strlen(a->name)));
        have_index |= strcmp(a->name, "index.html") == 0;
        have_app |= strcmp(a->name, "app.js") == 0;
    }
    assert_true(have_index);
    assert_true(have_app);
    assert_null(mx_web_assets[mx_web_asset_count].name);
    /* ETags tell contents apart, lengths included. */
    char e1[MX_WEB_ETAG_CHARS], e2[MX_WEB_ETAG_CHARS];
    mx_web_etag((const unsigned char *)"a", 1, e1);
    mx_web_etag((const unsigned char *)"b", 1, e2);
    assert_string_not_equal(e1, e2);
    mx_web_etag((const unsigned char *)"", 0, e2);
    assert_string_not_equal(e1, e2);
    assert_string_equal(mx_web_type_of("x.css"), "text/css; charset=utf-8");
    assert_null(mx_web_type_of("embed.c"));
    assert_null(mx_web_type_of("webfile.h"));
    assert_false(mx_web_name_ok("../etc", 6));
    assert_false(mx_web_name_ok(".hidden.js", 10));
    assert_false(mx_web_name_ok("a/b.js", 6));
    assert_false(mx_web_name_ok("a%2fb.js", 8));
}

/* ---- a real server in a second thread ---- */

typedef struct fixture {
    uv_loop_t loop;
    uv_async_t stop;
    cx_server *srv;
    pthread_t thread;
    const char *dir;   /* --web-dir for mx_web_serve, or NULL */
    int unserved;      /* requests mx_web_serve declined (answered 404 here) */
    int port;
    char tmpdir[64];
} fixture;

static fixture *fx;

static void on_http(cx_server *srv, cx_conn *c, const cx_http_req *req)
{
    fixture *f = cx_server_data(srv);
    if (mx_web_serve(c, req, f->dir))
        return;
    f->unserved++;
    cx_conn_http_reply(c, 404, "text/plain; charset=utf-8", mx_web_security_headers(), "nf", 2);
}

static void on_down(cx_server *srv)
{
    (void)srv;
}

static void on_stop(uv_async_t *a)
{
    fixture *f = a->data;
    cx_server_shutdown(f->srv, 1001, "bye", on_down);
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg)
{
    fixture *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static int setup(void **state, bool with_dir)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    if (with_dir) {
        snprintf(f->tmpdir, sizeof f->tmpdir, "/tmp/test_mx_web.XXXXXX");
        assert_non_null(mkdtemp(f->tmpdir));
        write_file(f->tmpdir, "index.html", "<!doctype html><p>dev</p>\n");
        write_file(f->tmpdir, "extra.js", "export const x = 1;\n");
        write_file(f->tmpdir, "notes.c", "int main(void) { return 0; }\n");
        f->dir = f->tmpdir;
    }
    assert_int_equal(uv_loop_init(&f->loop), 0);
    static const cx_server_callbacks cb = {.on_http = on_http};
    cx_server_limits lim;
    cx_server_limits_default(&lim);
    assert_int_equal(cx_server_new(&f->loop, &cb, f, &lim, &f->srv), CX_OK);
    char *err = NULL;
    assert_int_equal(cx_server_listen(f->srv, "127.0.0.1", 0, &err), CX_OK);
    f->port = cx_server_port(f->srv);
    assert_int_equal(uv_async_init(&f->loop, &f->stop, on_stop), 0);
    f->stop.data = f;
    assert_int_equal(pthread_create(&f->thread, NULL, loop_main, f), 0);
    fx = f;
    *state = f;
    return 0;
}

static int setup_embedded(void **state)
{
    return setup(state, false);
}

static int setup_dir(void **state)
{
    return setup(state, true);
}

static int teardown(void **state)
{
    fixture *f = *state;
    uv_async_send(&f->stop);
    pthread_join(f->thread, NULL);
    cx_server_free(f->srv);
    uv_loop_close(&f->loop);
    if (f->dir) {
        const char *names[] = {"index.html", "extra.js", "notes.c"};
        char path[256];
        for (size_t i = 0; i < 3; i++) {
            snprintf(path, sizeof path, "%s/%s", f->tmpdir, names[i]);
            unlink(path);
        }
        rmdir(f->tmpdir);
    }
    free(f);
    fx = NULL;
    return 0;
}

/* One request over a fresh connection; the whole answer (the server closes after it). */
typedef struct response {
    int status;
    char head[4096];
    char *body;
    size_t body_len;
    char raw[1 << 17];
} response;

static void fetch(const char *request, response *r)
{
    memset(r, 0, sizeof *r);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(write(fd, request, strlen(request)), (ssize_t)strlen(request));
    size_t n = 0;
    for (;;) {
        ssize_t got = read(fd, r->raw + n, sizeof r->raw - 1 - n);
        assert_true(got >= 0);
        if (got == 0)
            break;
        n += (size_t)got;
        assert_true(n < sizeof r->raw - 1);
    }
    close(fd);
    r->raw[n] = '\0';
    char *end = strstr(r->raw, "\r\n\r\n");
    assert_non_null(end);
    size_t hl = (size_t)(end - r->raw) + 2;
    assert_true(hl < sizeof r->head);
    memcpy(r->head, r->raw, hl);
    r->body = end + 4;
    r->body_len = n - (hl + 2);
    assert_int_equal(sscanf(r->raw, "HTTP/1.1 %d", &r->status), 1);
}

/* The value of a header in the response head, copied into out ("" when absent). */
static const char *header(const response *r, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    char pat[64];
    snprintf(pat, sizeof pat, "\r\n%s: ", name);
    const char *p = strcasestr(r->head, pat);
    if (!p)
        return out;
    p += strlen(pat);
    size_t len = strcspn(p, "\r");
    snprintf(out, cap, "%.*s", (int)(len < cap ? len : cap - 1), p);
    return out;
}

static void assert_secure(const response *r)
{
    char v[512];
    assert_non_null(strstr(header(r, "Content-Security-Policy", v, sizeof v), "default-src 'self'"));
    assert_non_null(strstr(v, "frame-ancestors 'none'"));
    assert_string_equal(header(r, "X-Content-Type-Options", v, sizeof v), "nosniff");
    assert_string_equal(header(r, "Referrer-Policy", v, sizeof v), "no-referrer");
}

static const mx_web_asset *asset(const char *name)
{
    for (size_t i = 0; i < mx_web_asset_count; i++)
        if (strcmp(mx_web_assets[i].name, name) == 0)
            return &mx_web_assets[i];
    fail_msg("no embedded %s", name);
    return NULL;
}

static void test_serve_embedded(void **state)
{
    (void)state;
    response *r = malloc(sizeof *r);
    assert_non_null(r);
    char v[256], req[512];

    fetch("GET / HTTP/1.1\r\nHost: x\r\n\r\n", r);
    const mx_web_asset *idx = asset("index.html");
    assert_int_equal(r->status, 200);
    assert_string_equal(header(r, "Content-Type", v, sizeof v), "text/html; charset=utf-8");
    assert_string_equal(header(r, "ETag", v, sizeof v), idx->etag);
    assert_string_equal(header(r, "Cache-Control", v, sizeof v), "no-cache");
    assert_int_equal(r->body_len, idx->len);
    assert_memory_equal(r->body, idx->data, idx->len);
    assert_secure(r);

    const mx_web_asset *app = asset("app.js");
    fetch("GET /app.js?v=3 HTTP/1.1\r\nHost: x\r\n\r\n", r);
    assert_int_equal(r->status, 200);
    assert_string_equal(header(r, "Content-Type", v, sizeof v), "text/javascript; charset=utf-8");
    assert_int_equal(r->body_len, app->len);

    /* Revalidation: the ETag alone, in a list, weak-prefixed, or another one. */
    snprintf(req, sizeof req, "GET /app.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n",
             app->etag);
    fetch(req, r);
    assert_int_equal(r->status, 304);
    assert_int_equal(r->body_len, 0);
    assert_string_equal(header(r, "ETag", v, sizeof v), app->etag);
    assert_secure(r);
    snprintf(req, sizeof req,
             "GET /app.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"zz\", W/%s\r\n\r\n", app->etag);
    fetch(req, r);
    assert_int_equal(r->status, 304);
    fetch("GET /app.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"0000\"\r\n\r\n", r);
    assert_int_equal(r->status, 200);

    /* HEAD: the head only. */
    fetch("HEAD /style.css HTTP/1.1\r\nHost: x\r\n\r\n", r);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, 0);
    assert_string_equal(header(r, "Content-Type", v, sizeof v), "text/css; charset=utf-8");

    /* Other methods on a web file: 405 with Allow and the security headers. */
    fetch("POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", r);
    assert_int_equal(r->status, 405);
    assert_string_equal(header(r, "Allow", v, sizeof v), "GET, HEAD");
    assert_secure(r);

    /* Not web files: left to the caller. */
    int before = fx->unserved;
    static const char *const paths[] = {"/nope.js",  "/../etc/passwd", "/web/app.js",
                                        "/.hidden",  "/embed.c",       "/webfile.h",
                                        "/healthz",  "/%2e%2e/x.js",   "/ws"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", paths[i]);
        fetch(req, r);
        assert_int_equal(r->status, 404);
        assert_secure(r);
    }
    assert_int_equal(fx->unserved - before, (int)(sizeof paths / sizeof paths[0]));
    free(r);
}

static void test_serve_dir(void **state)
{
    (void)state;
    response *r = malloc(sizeof *r);
    assert_non_null(r);
    char v[256], etag[MX_WEB_ETAG_CHARS];

    fetch("GET / HTTP/1.1\r\nHost: x\r\n\r\n", r);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, strlen("<!doctype html><p>dev</p>\n"));
    mx_web_etag((const unsigned char *)r->body, r->body_len, etag);
    assert_string_equal(header(r, "ETag", v, sizeof v), etag);
    assert_secure(r);

    fetch("GET /extra.js HTTP/1.1\r\nHost: x\r\n\r\n", r);
    assert_int_equal(r->status, 200);
    assert_string_equal(header(r, "Content-Type", v, sizeof v), "text/javascript; charset=utf-8");

    /* Edits show at once: the directory is read on every request. */
    write_file(fx->tmpdir, "extra.js", "export const x = 2;\n");
    fetch("GET /extra.js HTTP/1.1\r\nHost: x\r\n\r\n", r);
    assert_memory_equal(r->body, "export const x = 2;\n", r->body_len);
    assert_string_not_equal(header(r, "ETag", v, sizeof v), etag);

    /* Only web files, and only what exists: the embedded copy is not consulted. */
    int before = fx->unserved;
    fetch("GET /notes.c HTTP/1.1\r\nHost: x\r\n\r\n", r);
    assert_int_equal(r->status, 404);
    fetch("GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n", r);
    assert_int_equal(r->status, 404);
    assert_int_equal(fx->unserved - before, 2);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_origin),
        cmocka_unit_test(test_security_headers),
        cmocka_unit_test(test_embedded_table),
        cmocka_unit_test_setup_teardown(test_serve_embedded, setup_embedded, teardown),
        cmocka_unit_test_setup_teardown(test_serve_dir, setup_dir, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
