/* libFuzzer driver for the HTTP head parsers: the input goes to a request parser and a
 * response parser, once whole and once in chunks whose size the first bytes choose, and the
 * two runs must agree; complete heads are then checked and looked up. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "condrix/buf.h"
#include "condrix/error.h"
#include "condrix/http.h"
#include "condrix/limits.h"

#define FUZZ_MAX_INPUT (64 * 1024)
#define FUZZ_KEY "dGhlIHNhbXBsZSBub25jZQ=="

/* An invariant broke: crash so libFuzzer keeps the input. */
#define CHECK(cond)                \
    do {                           \
        if (!(cond))               \
            __builtin_trap();      \
    } while (0)

typedef int (*feed_fn)(void *parser, const uint8_t *data, size_t len, size_t *consumed);

static int req_feed(void *p, const uint8_t *d, size_t n, size_t *c)
{
    return cx_http_req_feed(p, d, n, c);
}

static int resp_feed(void *p, const uint8_t *d, size_t n, size_t *c)
{
    return cx_http_resp_feed(p, d, n, c);
}

/* Feed in chunks of `chunk` bytes (0: all at once); returns the final code and the total
 * number of bytes the parser took. */
static int run(void *parser, feed_fn feed, const uint8_t *data, size_t size, size_t chunk,
               size_t max_head, size_t *total)
{
    int rc = CX_E_AGAIN;
    size_t off = 0;
    *total = 0;
    if (chunk == 0)
        chunk = size;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        size_t used = 0;
        rc = feed(parser, data + off, n, &used);
        CHECK(used <= n);
        *total += used;
        if (rc == CX_E_AGAIN) {
            CHECK(used == n);
            off += n;
            continue;
        }
        break;
    }
    CHECK(rc == CX_OK || rc == CX_E_AGAIN || rc == CX_E_TOOBIG || rc == CX_E_PROTO ||
          rc == CX_E_NOMEM);
    if (rc == CX_OK)
        CHECK(*total <= max_head && *total <= size);
    return rc;
}

static void poke_request(const cx_http_req *req)
{
    static const char *const names[] = {"Host", "upgrade", "CONNECTION", "Sec-WebSocket-Key",
                                        "sec-websocket-version", "Origin", "Content-Length", ""};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = cx_http_req_header(req, names[i]);
        if (v)
            CHECK(strlen(v) <= CX_HTTP_MAX_HEAD_BYTES);
    }
    CHECK(cx_http_req_method(req) != NULL);
    CHECK(cx_http_req_path(req) != NULL);
    (void)cx_http_req_wants_upgrade(req);

    char accept[29];
    int st = cx_http_req_check_upgrade(req, accept);
    CHECK(st == 0 || st == 400 || st == 426 || st == 500);
    if (st != 0)
        return;
    CHECK(strlen(accept) == 28);

    /* what we would answer must satisfy a client that sent this key */
    cx_buf out;
    cx_buf_init(&out, 1024);
    if (cx_http_write_upgrade_response(&out, accept) == CX_OK) {
        cx_http_resp *resp = cx_http_resp_new(CX_HTTP_MAX_HEAD_BYTES);
        if (resp) {
            size_t used = 0;
            CHECK(cx_http_resp_feed(resp, out.data, out.len, &used) == CX_OK);
            CHECK(used == out.len);
            CHECK(cx_http_resp_check_upgrade(resp, cx_http_req_header(req, "Sec-WebSocket-Key")) ==
                  CX_OK);
            cx_http_resp_free(resp);
        }
    }
    cx_buf_free(&out);
}

static void poke_response(const cx_http_resp *resp)
{
    int st = cx_http_resp_status(resp);
    CHECK(st >= 0 && st <= 999);
    (void)cx_http_resp_header(resp, "Sec-WebSocket-Accept");
    (void)cx_http_resp_header(resp, "content-length");
    int rc = cx_http_resp_check_upgrade(resp, FUZZ_KEY);
    CHECK(rc == CX_OK || rc == CX_E_PROTO);
    if (rc == CX_OK)
        CHECK(st == 101);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > FUZZ_MAX_INPUT)
        return 0;
    /* byte 0: chunk size (0 = whole); byte 1: head cap, small ones to reach TOOBIG */
    size_t chunk = data[0];
    size_t max_head = data[1] == 0xff ? CX_HTTP_MAX_HEAD_BYTES : 16 + (size_t)data[1] * 4;
    data += 2;
    size -= 2;

    size_t whole_used = 0, split_used = 0;
    cx_http_req *a = cx_http_req_new(max_head);
    cx_http_req *b = cx_http_req_new(max_head);
    if (a && b) {
        int ra = run(a, req_feed, data, size, 0, max_head, &whole_used);
        int rb = run(b, req_feed, data, size, chunk, max_head, &split_used);
        if (ra != CX_E_NOMEM && rb != CX_E_NOMEM) {
            CHECK(ra == rb);
            if (ra == CX_OK) {
                CHECK(whole_used == split_used);
                CHECK(strcmp(cx_http_req_path(a), cx_http_req_path(b)) == 0);
            }
        }
        if (rb == CX_OK)
            poke_request(b);
    }
    cx_http_req_free(a);
    cx_http_req_free(b);

    cx_http_resp *resp_a = cx_http_resp_new(max_head);
    cx_http_resp *resp_b = cx_http_resp_new(max_head);
    if (resp_a && resp_b) {
        int ra = run(resp_a, resp_feed, data, size, 0, max_head, &whole_used);
        int rb = run(resp_b, resp_feed, data, size, chunk, max_head, &split_used);
        if (ra != CX_E_NOMEM && rb != CX_E_NOMEM) {
            CHECK(ra == rb);
            if (ra == CX_OK) {
                CHECK(whole_used == split_used);
                CHECK(cx_http_resp_status(resp_a) == cx_http_resp_status(resp_b));
            }
        }
        if (rb == CX_OK)
            poke_response(resp_b);
    }
    cx_http_resp_free(resp_a);
    cx_http_resp_free(resp_b);
    return 0;
}
