/* Unit tests for the HTTP upgrade module: request and response heads fed whole, byte by
 * byte and at every split, the RFC 6455 accept vector, limits, and the heads we build. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "condrix/buf.h"
#include "condrix/error.h"
#include "condrix/http.h"
#include "condrix/limits.h"

#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
/* RFC 6455 1.3 */
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static const char sample_req[] =
    "GET /ws?x=1 HTTP/1.1\r\n"
    "Host: example.com:8443\r\n"
    "User-Agent: test\r\n"
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: " RFC_KEY "\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Origin: https://example.com\r\n"
    "\r\n";

/* A masked text frame "Hello" (RFC 6455 5.7), as a client would send right after the head. */
static const uint8_t ws_frame[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                   0x7f, 0x9f, 0x4d, 0x51, 0x58};

/* Feed a whole buffer at once; returns the feed result and stores consumed. */
static int feed_all(cx_http_req *req, const char *s, size_t len, size_t *consumed)
{
    return cx_http_req_feed(req, (const uint8_t *)s, len, consumed);
}

/* Feed one byte at a time until the head completes or fails. */
static int feed_bytewise(cx_http_req *req, const char *s, size_t len, size_t *fed_out)
{
    int rc = CX_E_AGAIN;
    size_t i = 0;
    for (; i < len; i++) {
        size_t used = 99;
        rc = cx_http_req_feed(req, (const uint8_t *)s + i, 1, &used);
        if (rc == CX_E_AGAIN) {
            assert_int_equal(used, 1);
            continue;
        }
        if (rc == CX_OK)
            assert_int_equal(used, 1);
        break;
    }
    if (fed_out)
        *fed_out = i;
    return rc;
}

/* Parse a whole request with the default cap and return check_upgrade's verdict. */
static int check_request(const char *s, char accept[29])
{
    cx_http_req *req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    size_t used = 0;
    assert_int_equal(feed_all(req, s, strlen(s), &used), CX_OK);
    assert_int_equal(used, strlen(s));
    int st = cx_http_req_check_upgrade(req, accept);
    cx_http_req_free(req);
    return st;
}

static void assert_valid_sample(cx_http_req *req)
{
    char accept[29];
    assert_string_equal(cx_http_req_method(req), "GET");
    assert_string_equal(cx_http_req_path(req), "/ws?x=1");
    assert_string_equal(cx_http_req_header(req, "Host"), "example.com:8443");
    assert_true(cx_http_req_wants_upgrade(req));
    assert_int_equal(cx_http_req_check_upgrade(req, accept), 0);
    assert_string_equal(accept, RFC_ACCEPT);
}

static void test_upgrade_whole(void **state)
{
    (void)state;
    cx_http_req *req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    size_t used = 0;
    assert_int_equal(feed_all(req, sample_req, strlen(sample_req), &used), CX_OK);
    assert_int_equal(used, strlen(sample_req));
    assert_valid_sample(req);
    /* once complete, further bytes are not ours */
    assert_int_equal(feed_all(req, "xyz", 3, &used), CX_OK);
    assert_int_equal(used, 0);
    cx_http_req_free(req);
}

static void test_upgrade_bytewise(void **state)
{
    (void)state;
    cx_http_req *req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    size_t fed = 0;
    assert_int_equal(feed_bytewise(req, sample_req, strlen(sample_req), &fed), CX_OK);
    assert_int_equal(fed, strlen(sample_req) - 1);
    assert_valid_sample(req);
    cx_http_req_free(req);
}

static void test_upgrade_every_split(void **state)
{
    (void)state;
    size_t len = strlen(sample_req);
    for (size_t cut = 0; cut < len; cut++) {
        cx_http_req *req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
        assert_non_null(req);
        size_t used = 99;
        assert_int_equal(feed_all(req, sample_req, cut, &used), CX_E_AGAIN);
        assert_int_equal(used, cut);
        assert_int_equal(feed_all(req, sample_req + cut, len - cut, &used), CX_OK);
        assert_int_equal(used, len - cut);
        assert_valid_sample(req);
        cx_http_req_free(req);
    }
}

static void test_leftover_after_head(void **state)
{
    (void)state;
    size_t hlen = strlen(sample_req);
    uint8_t buf[sizeof(sample_req) + sizeof(ws_frame)];
    memcpy(buf, sample_req, hlen);
    memcpy(buf + hlen, ws_frame, sizeof(ws_frame));
    size_t total = hlen + sizeof(ws_frame);

    cx_http_req *req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    size_t used = 0;
    assert_int_equal(cx_http_req_feed(req, buf, total, &used), CX_OK);
    assert_int_equal(used, hlen);
    assert_memory_equal(buf + used, ws_frame, sizeof(ws_frame));
    assert_valid_sample(req);
    cx_http_req_free(req);

    /* the same when the head straddles two reads */
    for (size_t cut = 1; cut < hlen; cut += 7) {
        req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
        assert_non_null(req);
        assert_int_equal(cx_http_req_feed(req, buf, cut, &used), CX_E_AGAIN);
        assert_int_equal(cx_http_req_feed(req, buf + cut, total - cut, &used), CX_OK);
        assert_int_equal(used, hlen - cut);
        cx_http_req_free(req);
    }
}

static void test_key_checks(void **state)
{
    (void)state;
    char accept[29];
    const char *base = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
    const char *bad_keys[] = {
        "",                                      /* empty */
        "Sec-WebSocket-Key: abc\r\n",            /* short */
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n",   /* no padding */
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ*==\r\n", /* bad symbol */
        "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n", /* 17 bytes */
        "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n", /* 21 bytes */
        "Sec-WebSocket-Key: " RFC_KEY "\r\nSec-WebSocket-Key: " RFC_KEY "\r\n", /* twice */
    };
    char req[512];
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        snprintf(req, sizeof(req), "%s%s\r\n", base, bad_keys[i]);
        strcpy(accept, "junk");
        assert_int_equal(check_request(req, accept), 400);
        assert_string_equal(accept, "");
    }
    snprintf(req, sizeof(req), "%sSec-WebSocket-Key: " RFC_KEY "\r\n\r\n", base);
    assert_int_equal(check_request(req, accept), 0);
    assert_string_equal(accept, RFC_ACCEPT);
}

static void test_version_426(void **state)
{
    (void)state;
    char accept[29];
    const char *versions[] = {"Sec-WebSocket-Version: 8\r\n", "Sec-WebSocket-Version: 13x\r\n",
                              "", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8\r\n"};
    char req[512];
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        snprintf(req, sizeof(req),
                 "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: " RFC_KEY "\r\n%s\r\n",
                 versions[i]);
        assert_int_equal(check_request(req, accept), 426);
    }
}

static void test_request_shape_400(void **state)
{
    (void)state;
    char accept[29];
    /* POST */
    assert_int_equal(check_request("POST /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                                   "Connection: Upgrade\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"
                                   "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
                                   accept),
                     400);
    /* no Host */
    assert_int_equal(check_request("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n"
                                   "Connection: Upgrade\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"
                                   "Sec-WebSocket-Version: 13\r\n\r\n",
                                   accept),
                     400);
    /* two Hosts */
    assert_int_equal(check_request("GET /ws HTTP/1.1\r\nHost: a\r\nHost: b\r\nUpgrade: websocket\r\n"
                                   "Connection: Upgrade\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"
                                   "Sec-WebSocket-Version: 13\r\n\r\n",
                                   accept),
                     400);
    /* HTTP/1.0 */
    assert_int_equal(check_request("GET /ws HTTP/1.0\r\nHost: h\r\nUpgrade: websocket\r\n"
                                   "Connection: Upgrade\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"
                                   "Sec-WebSocket-Version: 13\r\n\r\n",
                                   accept),
                     400);
    /* Upgrade to something else */
    assert_int_equal(check_request("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n"
                                   "Connection: Upgrade\r\nSec-WebSocket-Key: " RFC_KEY "\r\n"
                                   "Sec-WebSocket-Version: 13\r\n\r\n",
                                   accept),
                     400);
    /* Connection without the upgrade token ("upgraded" is not "upgrade") */
    assert_int_equal(check_request("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                                   "Connection: keep-alive, upgraded\r\n"
                                   "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                                   "Sec-WebSocket-Version: 13\r\n\r\n",
                                   accept),
                     400);
    /* token lists and case are fine */
    assert_int_equal(check_request("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: foo, WebSocket \r\n"
                                   "Connection: keep-alive ,  UPGRADE\r\n"
                                   "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                                   "Sec-WebSocket-Version: 13\r\n\r\n",
                                   accept),
                     0);
    assert_string_equal(accept, RFC_ACCEPT);
}

static void test_upgrade_with_body_proto(void **state)
{
    (void)state;
    const char *reqs[] = {
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Content-Length: 5\r\n\r\nhello",
        "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < 2; i++) {
        cx_http_req *req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
        assert_non_null(req);
        size_t used;
        assert_int_equal(feed_all(req, reqs[i], strlen(reqs[i]), &used), CX_E_PROTO);
        cx_http_req_free(req);
    }
    /* an explicit zero length is no body */
    const char *zero = "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Content-Length: 0\r\n\r\n";
    cx_http_req *req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    size_t used;
    assert_int_equal(feed_all(req, zero, strlen(zero), &used), CX_OK);
    assert_int_equal(used, strlen(zero));
    cx_http_req_free(req);
}

static void test_oversized_head(void **state)
{
    (void)state;
    size_t len = strlen(sample_req);
    size_t used;

    /* exactly at the cap is fine, one byte over is not, whole or byte by byte */
    cx_http_req *req = cx_http_req_new(len);
    assert_non_null(req);
    assert_int_equal(feed_all(req, sample_req, len, &used), CX_OK);
    assert_int_equal(used, len);
    cx_http_req_free(req);

    req = cx_http_req_new(len - 1);
    assert_non_null(req);
    assert_int_equal(feed_all(req, sample_req, len, &used), CX_E_TOOBIG);
    /* sticky */
    assert_int_equal(feed_all(req, "\r\n", 2, &used), CX_E_TOOBIG);
    cx_http_req_free(req);

    req = cx_http_req_new(len - 1);
    assert_non_null(req);
    size_t fed = 0;
    assert_int_equal(feed_bytewise(req, sample_req, len, &fed), CX_E_TOOBIG);
    assert_int_equal(fed, len - 1);
    cx_http_req_free(req);

    /* a huge header against the default cap */
    size_t big = CX_HTTP_MAX_HEAD_BYTES + 100;
    char *s = malloc(big + 64);
    assert_non_null(s);
    int n = snprintf(s, 64, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    memset(s + n, 'a', big);
    memcpy(s + n + big, "\r\n\r\n", 5);
    req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    assert_int_equal(feed_all(req, s, strlen(s), &used), CX_E_TOOBIG);
    cx_http_req_free(req);
    req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    assert_int_equal(feed_bytewise(req, s, strlen(s), &fed), CX_E_TOOBIG);
    assert_int_equal(fed, CX_HTTP_MAX_HEAD_BYTES);
    cx_http_req_free(req);
    free(s);

    /* a long request line counts too */
    req = cx_http_req_new(32);
    assert_non_null(req);
    const char *longurl = "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n";
    assert_int_equal(feed_all(req, longurl, strlen(longurl), &used), CX_E_TOOBIG);
    cx_http_req_free(req);
}

/* A request with nlines header lines in total (Host included). */
static char *many_headers(int nlines)
{
    size_t cap = 64 + (size_t)nlines * 32;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t o = (size_t)snprintf(s, cap, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 1; i < nlines; i++)
        o += (size_t)snprintf(s + o, cap - o, "X-H%d: %d\r\n", i, i);
    snprintf(s + o, cap - o, "\r\n");
    return s;
}

static void test_too_many_headers(void **state)
{
    (void)state;
    size_t used;
    char *ok = many_headers(CX_HTTP_MAX_HEADERS);
    cx_http_req *req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    assert_int_equal(feed_all(req, ok, strlen(ok), &used), CX_OK);
    assert_string_equal(cx_http_req_header(req, "x-h63"), "63");
    cx_http_req_free(req);
    free(ok);

    char *bad = many_headers(CX_HTTP_MAX_HEADERS + 1);
    req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    assert_int_equal(feed_all(req, bad, strlen(bad), &used), CX_E_TOOBIG);
    cx_http_req_free(req);
    req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    assert_int_equal(feed_bytewise(req, bad, strlen(bad), NULL), CX_E_TOOBIG);
    cx_http_req_free(req);
    free(bad);

    /* repeats of one name count as lines too */
    char rep[4096];
    size_t o = (size_t)snprintf(rep, sizeof(rep), "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= CX_HTTP_MAX_HEADERS; i++)
        o += (size_t)snprintf(rep + o, sizeof(rep) - o, "X: %d\r\n", i);
    snprintf(rep + o, sizeof(rep) - o, "\r\n");
    req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    assert_int_equal(feed_all(req, rep, strlen(rep), &used), CX_E_TOOBIG);
    cx_http_req_free(req);
}

static void test_malformed(void **state)
{
    (void)state;
    const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /ws HTTP/1.1 extra\r\nHost: h\r\n\r\n",
        "GET /ws HTTX/1.1\r\nHost: h\r\n\r\n",
        "GET /ws HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET /ws HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
        "\x01\x02\x03",
        "HTTP/1.1 200 OK\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cx_http_req *req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
        assert_non_null(req);
        size_t used;
        assert_int_equal(feed_all(req, bad[i], strlen(bad[i]), &used), CX_E_PROTO);
        assert_int_equal(feed_all(req, "\r\n", 2, &used), CX_E_PROTO);
        char accept[29];
        assert_int_equal(cx_http_req_check_upgrade(req, accept), 400);
        cx_http_req_free(req);

        req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
        assert_non_null(req);
        assert_int_equal(feed_bytewise(req, bad[i], strlen(bad[i]), NULL), CX_E_PROTO);
        cx_http_req_free(req);
    }
}

static void test_repeated_and_case(void **state)
{
    (void)state;
    const char *s = "GET /x HTTP/1.1\r\nHost:   h.example  \r\nX-Tag: one\r\nAccept: */*\r\n"
                    "x-tag: two\r\nX-Empty:\r\nX-Blank: \t \r\nX-TAG:three\r\n\r\n";
    cx_http_req *req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    assert_int_equal(feed_bytewise(req, s, strlen(s), NULL), CX_OK);
    assert_string_equal(cx_http_req_header(req, "x-tag"), "one, two, three");
    assert_string_equal(cx_http_req_header(req, "X-Tag"), "one, two, three");
    assert_string_equal(cx_http_req_header(req, "HOST"), "h.example");
    assert_string_equal(cx_http_req_header(req, "accept"), "*/*");
    assert_string_equal(cx_http_req_header(req, "X-Empty"), "");
    assert_string_equal(cx_http_req_header(req, "x-blank"), "");
    assert_null(cx_http_req_header(req, "X-Missing"));
    assert_null(cx_http_req_header(req, "X-Ta"));
    assert_false(cx_http_req_wants_upgrade(req));
    cx_http_req_free(req);
}

static void test_healthz(void **state)
{
    (void)state;
    const char *first = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    const char *second = "GET /other HTTP/1.1\r\nHost: localhost\r\n\r\n";
    char buf[256];
    snprintf(buf, sizeof(buf), "%s%s", first, second);
    cx_http_req *req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    size_t used = 0;
    assert_int_equal(feed_all(req, buf, strlen(buf), &used), CX_OK);
    assert_int_equal(used, strlen(first));
    assert_string_equal(cx_http_req_method(req), "GET");
    assert_string_equal(cx_http_req_path(req), "/healthz");
    assert_false(cx_http_req_wants_upgrade(req));
    char accept[29];
    assert_int_equal(cx_http_req_check_upgrade(req, accept), 400);
    cx_http_req_free(req);

    /* byte by byte too; HTTP/1.0 without headers as well */
    req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    assert_int_equal(feed_bytewise(req, first, strlen(first), NULL), CX_OK);
    assert_string_equal(cx_http_req_path(req), "/healthz");
    cx_http_req_free(req);
    /* the absolute form (RFC 9112 3.2.2): the path after the authority */
    static const char *const absolute[][2] = {
        {"GET http://127.0.0.1:9100/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "/healthz"},
        {"GET HTTPS://m.example/app.js?v=1 HTTP/1.1\r\nHost: m.example\r\n\r\n", "/app.js?v=1"},
        {"GET http://m.example HTTP/1.1\r\nHost: m.example\r\n\r\n", "/"},
    };
    for (size_t i = 0; i < sizeof absolute / sizeof absolute[0]; i++) {
        req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
        assert_non_null(req);
        assert_int_equal(feed_all(req, absolute[i][0], strlen(absolute[i][0]), &used), CX_OK);
        assert_string_equal(cx_http_req_path(req), absolute[i][1]);
        cx_http_req_free(req);
    }
    req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    const char *old = "HEAD /healthz HTTP/1.0\r\n\r\n";
    assert_int_equal(feed_all(req, old, strlen(old), &used), CX_OK);
    assert_int_equal(used, strlen(old));
    assert_string_equal(cx_http_req_method(req), "HEAD");
    cx_http_req_free(req);
}

static void test_accept_vector(void **state)
{
    (void)state;
    char accept[29];
    cx_http_ws_accept(RFC_KEY, accept);
    assert_string_equal(accept, RFC_ACCEPT);
    assert_int_equal(strlen(accept), 28);
    cx_http_ws_accept("x3JJHMbDL1EzLkh9GBhXDw==", accept);
    assert_string_equal(accept, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

static void test_build_responses(void **state)
{
    (void)state;
    cx_buf out;
    cx_buf_init(&out, 4096);
    assert_int_equal(cx_http_write_response(&out, 404, "text/plain", NULL, "nope", 4), CX_OK);
    const char *want404 = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                          "Content-Length: 4\r\nConnection: close\r\n\r\nnope";
    assert_int_equal(out.len, strlen(want404));
    assert_memory_equal(out.data, want404, out.len);
    cx_buf_free(&out);

    assert_int_equal(cx_http_write_response(&out, 426, NULL, "Sec-WebSocket-Version: 13\r\n",
                                            NULL, 0),
                     CX_OK);
    const char *want426 = "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n"
                          "Connection: close\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_int_equal(out.len, strlen(want426));
    assert_memory_equal(out.data, want426, out.len);
    cx_buf_free(&out);

    assert_int_equal(cx_http_write_response(&out, 204, NULL, NULL, NULL, 0), CX_OK);
    const char *want204 = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
    assert_int_equal(out.len, strlen(want204));
    assert_memory_equal(out.data, want204, out.len);
    cx_buf_free(&out);
    assert_int_equal(cx_http_write_response(&out, 204, NULL, NULL, "x", 1), CX_E_INVAL);
    assert_int_equal(cx_http_write_response(&out, 200, "a\r\nb: c", NULL, NULL, 0), CX_E_INVAL);
    assert_int_equal(cx_http_write_response(&out, 42, NULL, NULL, NULL, 0), CX_E_INVAL);
    assert_int_equal(out.len, 0);

    assert_int_equal(cx_http_write_upgrade_response(&out, RFC_ACCEPT), CX_OK);
    const char *want101 = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n";
    assert_int_equal(out.len, strlen(want101));
    assert_memory_equal(out.data, want101, out.len);
    cx_buf_free(&out);
    assert_int_equal(cx_http_write_upgrade_response(&out, "short"), CX_E_INVAL);

    /* over the cap: TOOBIG and the buffer keeps what it had */
    cx_buf small;
    cx_buf_init(&small, 64);
    assert_int_equal(cx_buf_append_str(&small, "keep"), CX_OK);
    assert_int_equal(cx_http_write_response(&small, 200, "text/plain", NULL, "0123456789", 10),
                     CX_E_TOOBIG);
    assert_int_equal(small.len, 4);
    assert_memory_equal(small.data, "keep", 4);
    cx_buf_free(&small);

    const int codes[] = {101, 200, 204, 304, 400, 401, 403, 404,
                         405, 408, 413, 426, 429, 431, 500, 503};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        assert_string_not_equal(cx_http_reason(codes[i]), "Unknown");
    assert_string_equal(cx_http_reason(400), "Bad Request");
    assert_string_equal(cx_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(cx_http_reason(799), "Unknown");
}

static void test_client_round_trip(void **state)
{
    (void)state;
    char key[25], key2[25];
    cx_http_ws_new_key(key);
    cx_http_ws_new_key(key2);
    assert_int_equal(strlen(key), 24);
    assert_string_equal(key + 22, "==");
    assert_string_not_equal(key, key2);

    cx_buf out;
    cx_buf_init(&out, 4096);
    assert_int_equal(cx_http_write_upgrade_request(&out, "example.com:8443", "/ws", key,
                                                   "Origin: https://example.com\r\n"),
                     CX_OK);
    char want[512];
    snprintf(want, sizeof(want),
             "GET /ws HTTP/1.1\r\nHost: example.com:8443\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
             "Origin: https://example.com\r\n\r\n",
             key);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);

    /* the server side accepts what the client wrote */
    cx_http_req *req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    size_t used;
    assert_int_equal(cx_http_req_feed(req, out.data, out.len, &used), CX_OK);
    assert_int_equal(used, out.len);
    char accept[29];
    assert_int_equal(cx_http_req_check_upgrade(req, accept), 0);
    assert_string_equal(cx_http_req_header(req, "origin"), "https://example.com");
    cx_http_req_free(req);
    cx_buf_free(&out);

    assert_int_equal(cx_http_write_upgrade_request(&out, "bad host", "/", key, NULL), CX_E_INVAL);
    assert_int_equal(cx_http_write_upgrade_request(&out, "h", "/\r\nX: y", key, NULL), CX_E_INVAL);
    assert_int_equal(cx_http_write_upgrade_request(&out, "h", "/", "short", NULL), CX_E_INVAL);

    /* the server's 101, with the first frame in the same read, parsed byte by byte */
    assert_int_equal(cx_http_write_upgrade_response(&out, accept), CX_OK);
    size_t hlen = out.len;
    assert_int_equal(cx_buf_append(&out, ws_frame, sizeof(ws_frame)), CX_OK);
    cx_http_resp *resp = cx_http_resp_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(resp);
    assert_int_equal(cx_http_resp_status(resp), 0);
    int rc = CX_E_AGAIN;
    size_t i = 0;
    for (; i < out.len && rc == CX_E_AGAIN; i++)
        rc = cx_http_resp_feed(resp, out.data + i, 1, &used);
    assert_int_equal(rc, CX_OK);
    assert_int_equal(i, hlen);
    assert_int_equal(cx_http_resp_status(resp), 101);
    assert_int_equal(cx_http_resp_check_upgrade(resp, key), CX_OK);
    assert_int_equal(cx_http_resp_check_upgrade(resp, key2), CX_E_PROTO);
    cx_http_resp_free(resp);

    /* whole, leftover reported */
    resp = cx_http_resp_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(resp);
    assert_int_equal(cx_http_resp_feed(resp, out.data, out.len, &used), CX_OK);
    assert_int_equal(used, hlen);
    assert_string_equal(cx_http_resp_header(resp, "sec-websocket-accept"), accept);
    cx_http_resp_free(resp);
    cx_buf_free(&out);

    /* a wrong accept */
    const char *wrong = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n";
    resp = cx_http_resp_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(resp);
    assert_int_equal(cx_http_resp_feed(resp, (const uint8_t *)wrong, strlen(wrong), &used), CX_OK);
    assert_int_equal(cx_http_resp_check_upgrade(resp, key), CX_E_PROTO);
    assert_int_equal(cx_http_resp_check_upgrade(resp, RFC_KEY), CX_OK);
    cx_http_resp_free(resp);

    /* 101 without Upgrade */
    const char *noup = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n";
    resp = cx_http_resp_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(resp);
    assert_int_equal(cx_http_resp_feed(resp, (const uint8_t *)noup, strlen(noup), &used), CX_OK);
    assert_int_equal(cx_http_resp_check_upgrade(resp, RFC_KEY), CX_E_PROTO);
    cx_http_resp_free(resp);

    /* a 403 completes at the end of its head; the body is left alone */
    cx_buf_init(&out, 4096);
    assert_int_equal(cx_http_write_response(&out, 403, "text/plain", NULL, "forbidden", 9), CX_OK);
    resp = cx_http_resp_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(resp);
    assert_int_equal(cx_http_resp_feed(resp, out.data, out.len, &used), CX_OK);
    assert_int_equal(used, out.len - 9);
    assert_int_equal(cx_http_resp_status(resp), 403);
    assert_string_equal(cx_http_resp_header(resp, "Content-Length"), "9");
    assert_int_equal(cx_http_resp_check_upgrade(resp, key), CX_E_PROTO);
    cx_http_resp_free(resp);
    cx_buf_free(&out);

    /* garbage and oversized responses */
    resp = cx_http_resp_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(resp);
    assert_int_equal(cx_http_resp_feed(resp, (const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18, &used),
                     CX_E_PROTO);
    cx_http_resp_free(resp);
    resp = cx_http_resp_new(16);
    assert_non_null(resp);
    assert_int_equal(cx_http_resp_feed(resp, (const uint8_t *)wrong, strlen(wrong), &used),
                     CX_E_TOOBIG);
    cx_http_resp_free(resp);
}

/* Origin of a GET with that Origin header (NULL: none): local to this machine? */
static bool origin_local(const char *origin)
{
    char buf[512];
    snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s\r\n",
             origin ? "Origin: " : "", origin ? origin : "", origin ? "\r\n" : "");
    cx_http_req *req = cx_http_req_new(CX_HTTP_MAX_HEAD_BYTES);
    assert_non_null(req);
    size_t used;
    assert_int_equal(feed_all(req, buf, strlen(buf), &used), CX_OK);
    bool local = cx_http_req_origin_local(req);
    cx_http_req_free(req);
    return local;
}

static void test_origin_local(void **state)
{
    (void)state;
    assert_true(origin_local(NULL)); /* not a browser page */
    assert_true(origin_local("http://localhost:5173"));
    assert_true(origin_local("http://LOCALHOST"));
    assert_true(origin_local("https://127.0.0.1:9100"));
    assert_true(origin_local("http://127.8.9.10"));
    assert_true(origin_local("http://[::1]:3000"));
    assert_false(origin_local("https://evil.example"));
    assert_false(origin_local("http://localhost.evil.example"));
    assert_false(origin_local("http://127.0.0.1.evil.example"));
    assert_false(origin_local("http://[::2]"));
    assert_false(origin_local("null"));
    assert_false(origin_local(""));
    assert_false(origin_local("http://"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upgrade_whole),
        cmocka_unit_test(test_upgrade_bytewise),
        cmocka_unit_test(test_upgrade_every_split),
        cmocka_unit_test(test_leftover_after_head),
        cmocka_unit_test(test_key_checks),
        cmocka_unit_test(test_version_426),
        cmocka_unit_test(test_request_shape_400),
        cmocka_unit_test(test_upgrade_with_body_proto),
        cmocka_unit_test(test_oversized_head),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_repeated_and_case),
        cmocka_unit_test(test_healthz),
        cmocka_unit_test(test_accept_vector),
        cmocka_unit_test(test_build_responses),
        cmocka_unit_test(test_client_round_trip),
        cmocka_unit_test(test_origin_local),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
