/* Unit tests for cx_ws: a server and a client session talk through in-memory
 * pipes; hand-built frames probe splits, fragmentation, every way to fail the
 * session (1002, 1003, 1007, 1009), both closing handshakes, and the promise
 * that an idle session holds no wslay context and no buffer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "condrix/error.h"
#include "condrix/ws.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#ifdef HAVE_ASAN
/* From ASan's allocator interface; declared here since gcc may lack the header. */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#define MAX_KEPT 16

/* One side of a connection: what it was sent, what it put on the wire. */
struct peer {
    cx_ws *ws;
    uint8_t *out;           /* bytes from on_send not yet delivered */
    size_t out_len, out_cap;
    char *msgs[MAX_KEPT];   /* first messages received, NUL-terminated copies */
    size_t msg_lens[MAX_KEPT];
    int n_msgs;
    int pongs;
    int closed;             /* on_closed calls */
    uint16_t close_code;
    char close_reason[128];
    int fail_send;          /* on_send returns an error */
    int echo;               /* answer each message with the same text */
    int close_on_msg;       /* call cx_ws_close from on_message */
};

static void on_message(void *ud, const char *msg, size_t len)
{
    struct peer *p = ud;
    if (p->n_msgs < MAX_KEPT) {
        char *c = malloc(len + 1);
        assert_non_null(c);
        memcpy(c, msg, len);
        c[len] = '\0';
        p->msgs[p->n_msgs] = c;
        p->msg_lens[p->n_msgs] = len;
    }
    p->n_msgs++;
    if (p->echo)
        assert_int_equal(cx_ws_send_text(p->ws, msg, len), CX_OK);
    if (p->close_on_msg)
        assert_int_equal(cx_ws_close(p->ws, 4002, "session over"), CX_OK);
}

static int on_send(void *ud, const uint8_t *data, size_t len)
{
    struct peer *p = ud;
    if (p->fail_send)
        return CX_E_IO;
    if (p->out_len + len > p->out_cap) {
        size_t cap = p->out_cap ? p->out_cap : 256;
        while (cap < p->out_len + len)
            cap *= 2;
        p->out = realloc(p->out, cap);
        assert_non_null(p->out);
        p->out_cap = cap;
    }
    memcpy(p->out + p->out_len, data, len);
    p->out_len += len;
    return 0;
}

static void on_pong(void *ud)
{
    ((struct peer *)ud)->pongs++;
}

static void on_closed(void *ud, uint16_t code, const char *reason)
{
    struct peer *p = ud;
    p->closed++;
    p->close_code = code;
    snprintf(p->close_reason, sizeof p->close_reason, "%s", reason);
}

static const cx_ws_callbacks cbs = {on_message, on_send, on_pong, on_closed};

static void peer_init(struct peer *p, enum cx_ws_role role, size_t max)
{
    memset(p, 0, sizeof *p);
    p->ws = cx_ws_new(role, &cbs, p, max);
    assert_non_null(p->ws);
}

static void peer_clear(struct peer *p)
{
    for (int i = 0; i < p->n_msgs && i < MAX_KEPT; i++)
        free(p->msgs[i]);
    p->n_msgs = 0;
    p->out_len = 0;
}

static void peer_fini(struct peer *p)
{
    peer_clear(p);
    cx_ws_free(p->ws);
    free(p->out);
}

/* Deliver everything each side sent to the other until both are quiet. */
static void pump(struct peer *a, struct peer *b)
{
    while (a->out_len || b->out_len) {
        struct peer *from = a->out_len ? a : b, *to = from == a ? b : a;
        size_t n = from->out_len;
        uint8_t *tmp = malloc(n);
        assert_non_null(tmp);
        memcpy(tmp, from->out, n);
        from->out_len = 0;
        int rc = cx_ws_feed(to->ws, tmp, n);
        assert_true(rc == CX_OK || rc == CX_E_CLOSED);
        free(tmp);
    }
}

/* Append one frame to buf; returns its size. A NULL key means unmasked. */
static size_t put_frame(uint8_t *buf, int fin, int rsv, int opcode, const void *payload,
                        uint64_t len, const uint8_t *key)
{
    size_t h = 0;
    buf[h++] = (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | opcode);
    uint8_t mbit = key ? 0x80 : 0;
    if (len < 126) {
        buf[h++] = (uint8_t)(mbit | len);
    } else if (len <= 0xffff) {
        buf[h++] = mbit | 126;
        buf[h++] = (uint8_t)(len >> 8);
        buf[h++] = (uint8_t)len;
    } else {
        buf[h++] = mbit | 127;
        for (int i = 7; i >= 0; i--)
            buf[h++] = (uint8_t)(len >> (8 * i));
    }
    if (key) {
        memcpy(buf + h, key, 4);
        h += 4;
    }
    if (payload) {
        const uint8_t *p = payload;
        for (uint64_t i = 0; i < len; i++)
            buf[h + i] = key ? p[i] ^ key[i % 4] : p[i];
        return h + (size_t)len;
    }
    return h; /* header only */
}

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* A masked client frame. */
static size_t cframe(uint8_t *buf, int fin, int opcode, const char *s)
{
    return put_frame(buf, fin, 0, opcode, s, strlen(s), KEY);
}

/* The status code of the first close frame in an unmasked (server) stream, 0 if
 * none; also checks that nothing follows the close frame. */
static uint16_t close_code_in(const uint8_t *b, size_t n, char *reason, size_t rcap)
{
    size_t off = 0;
    while (off + 2 <= n) {
        uint8_t op = b[off] & 0x0f;
        uint64_t len = b[off + 1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            len = (uint64_t)b[off + 2] << 8 | b[off + 3];
            h = 4;
        } else if (len == 127) {
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | b[off + 2 + i];
            h = 10;
        }
        if (op == 0x8) {
            assert_int_equal(off + h + len, n); /* close is the last frame */
            if (len < 2)
                return 1005;
            if (reason) {
                size_t r = (size_t)len - 2 < rcap - 1 ? (size_t)len - 2 : rcap - 1;
                memcpy(reason, b + off + h + 2, r);
                reason[r] = '\0';
            }
            return (uint16_t)(b[off + h] << 8 | b[off + h + 1]);
        }
        off += h + (size_t)len;
    }
    return 0;
}

/* Feed raw bytes to a fresh server and expect it to fail with code. */
static void expect_server_fails(const uint8_t *frames, size_t n, uint16_t code, size_t max)
{
    struct peer s;
    peer_init(&s, CX_WS_SERVER, max);
    assert_int_equal(cx_ws_feed(s.ws, frames, n), CX_OK);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.close_code, code);
    assert_true(cx_ws_close_sent(s.ws));
    assert_int_equal(close_code_in(s.out, s.out_len, NULL, 0), code);
    assert_false(cx_ws_holds_state(s.ws));
    assert_int_equal(cx_ws_feed(s.ws, frames, n), CX_E_CLOSED);
    assert_int_equal(cx_ws_send_text(s.ws, "x", 1), CX_E_CLOSED);
    assert_int_equal(s.closed, 1);
    peer_fini(&s);
}

/* ---- tests -------------------------------------------------------------- */

static void test_exchange(void **state)
{
    (void)state;
    struct peer s, c;
    peer_init(&s, CX_WS_SERVER, 0);
    peer_init(&c, CX_WS_CLIENT, 0);
    assert_false(cx_ws_holds_state(s.ws));
    assert_false(cx_ws_holds_state(c.ws));

    assert_int_equal(cx_ws_send_text(c.ws, "hello", 5), CX_OK);
    assert_false(cx_ws_holds_state(c.ws));
    assert_true(c.out_len == 6 + 5 && (c.out[1] & 0x80)); /* client frames masked */
    pump(&c, &s);
    assert_int_equal(s.n_msgs, 1);
    assert_string_equal(s.msgs[0], "hello");

    assert_int_equal(cx_ws_send_text(s.ws, "w\xc3\xb6rld", 6), CX_OK);
    assert_true(s.out_len == 2 + 6 && !(s.out[1] & 0x80)); /* server frames not */
    pump(&c, &s);
    assert_int_equal(c.n_msgs, 1);
    assert_string_equal(c.msgs[0], "w\xc3\xb6rld");

    assert_int_equal(cx_ws_send_text(c.ws, "", 0), CX_OK); /* empty message */
    pump(&c, &s);
    assert_int_equal(s.n_msgs, 2);
    assert_int_equal(s.msg_lens[1], 0);

    /* The server answers from inside on_message. */
    s.echo = 1;
    for (int i = 0; i < 3; i++)
        assert_int_equal(cx_ws_send_text(c.ws, "again", 5), CX_OK);
    pump(&c, &s);
    assert_int_equal(s.n_msgs, 5);
    assert_int_equal(c.n_msgs, 4);
    assert_string_equal(c.msgs[3], "again");

    assert_false(cx_ws_holds_state(s.ws));
    assert_false(cx_ws_holds_state(c.ws));
    assert_int_equal(s.closed + c.closed, 0);
    peer_fini(&s);
    peer_fini(&c);
}

/* A stream with a text frame, a ping, a fragmented message with a ping inside,
 * and a second text frame, fed at every split point and byte by byte. */
static void test_every_split(void **state)
{
    (void)state;
    uint8_t st[512];
    size_t n = 0, ends[7];
    int frag_open[7] = {0, 0, 1, 1, 1, 0, 0}; /* after each frame */
    n += cframe(st + n, 1, 1, "first message");
    ends[0] = n;
    n += cframe(st + n, 1, 9, "ping!");
    ends[1] = n;
    n += cframe(st + n, 0, 1, "frag");
    ends[2] = n;
    n += cframe(st + n, 1, 9, "");
    ends[3] = n;
    n += cframe(st + n, 0, 0, "mented ");
    ends[4] = n;
    n += cframe(st + n, 1, 0, "\xf0\x9f\x98\x80");
    ends[5] = n;
    n += cframe(st + n, 1, 1, "last");
    ends[6] = n;

    for (size_t cut = 0; cut <= n; cut++) {
        struct peer s;
        peer_init(&s, CX_WS_SERVER, 0);
        assert_int_equal(cx_ws_feed(s.ws, st, cut), CX_OK);
        assert_int_equal(cx_ws_feed(s.ws, st + cut, n - cut), CX_OK);
        assert_int_equal(s.n_msgs, 3);
        assert_string_equal(s.msgs[0], "first message");
        assert_string_equal(s.msgs[1], "fragmented \xf0\x9f\x98\x80");
        assert_string_equal(s.msgs[2], "last");
        /* two pongs: 0x8a 0x05 "ping!" and 0x8a 0x00 */
        assert_int_equal(s.out_len, 7 + 2);
        assert_memory_equal(s.out, "\x8a\x05ping!\x8a\x00", 9);
        assert_false(cx_ws_holds_state(s.ws));
        assert_int_equal(s.closed, 0);
        peer_fini(&s);
    }

    struct peer s;
    peer_init(&s, CX_WS_SERVER, 0);
    for (size_t i = 0, fr = 0; i < n; i++) {
        assert_int_equal(cx_ws_feed(s.ws, st + i, 1), CX_OK);
        if (i + 1 == ends[fr]) {
            /* between frames: state only while the fragmented message is open */
            assert_int_equal(cx_ws_holds_state(s.ws), frag_open[fr]);
            fr++;
        } else {
            assert_true(cx_ws_holds_state(s.ws)); /* a partial frame is pending */
        }
    }
    assert_int_equal(s.n_msgs, 3);
    assert_string_equal(s.msgs[1], "fragmented \xf0\x9f\x98\x80");
    assert_false(cx_ws_holds_state(s.ws));
    peer_fini(&s);
}

static void test_fragmented(void **state)
{
    (void)state;
    struct peer s;
    uint8_t f[64];
    size_t k;
    peer_init(&s, CX_WS_SERVER, 0);

    k = cframe(f, 0, 1, "Hel");
    assert_int_equal(cx_ws_feed(s.ws, f, k), CX_OK);
    assert_int_equal(s.n_msgs, 0);
    assert_true(cx_ws_holds_state(s.ws)); /* wslay holds the first fragment */
    k = cframe(f, 0, 0, "lo ");
    assert_int_equal(cx_ws_feed(s.ws, f, k), CX_OK);
    k = cframe(f, 1, 9, "p");
    assert_int_equal(cx_ws_feed(s.ws, f, k), CX_OK);
    assert_int_equal(s.out_len, 3); /* pong while the message is open */
    k = cframe(f, 1, 0, "world");
    assert_int_equal(cx_ws_feed(s.ws, f, k), CX_OK);
    assert_int_equal(s.n_msgs, 1);
    assert_string_equal(s.msgs[0], "Hello world");
    assert_false(cx_ws_holds_state(s.ws));

    /* A UTF-8 sequence split across fragments is fine. */
    k = cframe(f, 0, 1, "\xc3");
    k += cframe(f + k, 1, 0, "\xa9");
    assert_int_equal(cx_ws_feed(s.ws, f, k), CX_OK);
    assert_int_equal(s.n_msgs, 2);
    assert_string_equal(s.msgs[1], "\xc3\xa9");
    assert_int_equal(s.closed, 0);
    peer_fini(&s);
}

static void test_ping_pong(void **state)
{
    (void)state;
    struct peer s, c;
    peer_init(&s, CX_WS_SERVER, 0);
    peer_init(&c, CX_WS_CLIENT, 0);
    assert_int_equal(cx_ws_send_ping(s.ws), CX_OK);
    assert_memory_equal(s.out, "\x89\x00", 2);
    pump(&s, &c);
    assert_int_equal(s.pongs, 1);
    assert_int_equal(cx_ws_send_ping(c.ws), CX_OK);
    pump(&s, &c);
    assert_int_equal(c.pongs, 1);
    assert_false(cx_ws_holds_state(s.ws));
    assert_false(cx_ws_holds_state(c.ws));
    peer_fini(&s);
    peer_fini(&c);
}

static void test_close_from_client(void **state)
{
    (void)state;
    struct peer s, c;
    peer_init(&s, CX_WS_SERVER, 0);
    peer_init(&c, CX_WS_CLIENT, 0);
    assert_int_equal(cx_ws_close(c.ws, 1000, "bye"), CX_OK);
    assert_true(cx_ws_close_sent(c.ws));
    assert_int_equal(cx_ws_close(c.ws, 1001, "again"), CX_OK); /* idempotent */
    assert_int_equal(cx_ws_send_text(c.ws, "late", 4), CX_E_CLOSED);
    assert_int_equal(cx_ws_send_ping(c.ws), CX_E_CLOSED);
    assert_int_equal(c.closed, 0); /* waits for the server's answer */
    assert_false(cx_ws_holds_state(c.ws)); /* waiting costs no wslay context */

    /* Deliver the close one byte at a time. */
    uint8_t close[64];
    size_t n = c.out_len;
    memcpy(close, c.out, n);
    c.out_len = 0;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(cx_ws_feed(s.ws, close + i, 1), CX_OK);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.close_code, 1000);
    assert_string_equal(s.close_reason, "bye");
    assert_true(cx_ws_close_sent(s.ws));
    char reason[64];
    assert_int_equal(close_code_in(s.out, s.out_len, reason, sizeof reason), 1000);

    pump(&s, &c);
    assert_int_equal(c.closed, 1);
    assert_int_equal(c.close_code, 1000);
    assert_string_equal(c.close_reason, "bye");

    assert_int_equal(cx_ws_feed(s.ws, close, n), CX_E_CLOSED);
    assert_int_equal(cx_ws_send_text(s.ws, "x", 1), CX_E_CLOSED);
    assert_false(cx_ws_holds_state(s.ws));
    assert_false(cx_ws_holds_state(c.ws));
    assert_int_equal(s.closed + c.closed, 2);
    peer_fini(&s);
    peer_fini(&c);
}

static void test_close_from_server(void **state)
{
    (void)state;
    struct peer s, c;
    peer_init(&s, CX_WS_SERVER, 0);
    peer_init(&c, CX_WS_CLIENT, 0);
    assert_int_equal(cx_ws_close(s.ws, 300, "bad"), CX_E_INVAL);
    assert_int_equal(cx_ws_close(s.ws, 1005, NULL), CX_E_INVAL);
    char longr[130];
    memset(longr, 'r', sizeof longr - 1);
    longr[sizeof longr - 1] = '\0';
    assert_int_equal(cx_ws_close(s.ws, 1000, longr), CX_E_INVAL);
    assert_int_equal(cx_ws_close(s.ws, 1000, "\xc0\xaf"), CX_E_INVAL); /* not UTF-8 */
    assert_false(cx_ws_close_sent(s.ws));

    assert_int_equal(cx_ws_close(s.ws, CX_WS_CLOSE_ROTATED, "credential rotated"), CX_OK);
    assert_int_equal(close_code_in(s.out, s.out_len, NULL, 0), 4001);

    /* The client still has a message in flight before it sees our close. */
    assert_int_equal(cx_ws_send_text(c.ws, "crossing", 8), CX_OK);
    pump(&s, &c);
    assert_int_equal(c.closed, 1);
    assert_int_equal(c.close_code, 4001);
    assert_string_equal(c.close_reason, "credential rotated");
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.close_code, 4001); /* the client's echo */
    assert_int_equal(s.n_msgs, 0);        /* ignored while closing */
    peer_fini(&s);
    peer_fini(&c);
}

/* The peer's close arrives split while we wait, with junk frames before it. */
static void test_closing_waits_for_peer(void **state)
{
    (void)state;
    struct peer s;
    uint8_t f[256];
    size_t n = 0;
    peer_init(&s, CX_WS_SERVER, 0);
    assert_int_equal(cx_ws_close(s.ws, 1001, "shutdown"), CX_OK);
    n += cframe(f + n, 1, 1, "ignored");
    n += cframe(f + n, 1, 9, "ignored ping");
    uint8_t body[] = {0x0f, 0xa1, 'o', 'k'}; /* 4001 "ok" */
    n += put_frame(f + n, 1, 0, 8, body, sizeof body, KEY);
    s.out_len = 0;
    assert_int_equal(cx_ws_feed(s.ws, f, n - 3), CX_OK);
    assert_int_equal(s.closed, 0);
    assert_true(cx_ws_holds_state(s.ws)); /* part of the close frame */
    assert_int_equal(cx_ws_feed(s.ws, f + n - 3, 3), CX_OK);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.close_code, 4001);
    assert_string_equal(s.close_reason, "ok");
    assert_int_equal(s.n_msgs, 0);
    assert_int_equal(s.out_len, 0); /* no pong, no second close */
    assert_false(cx_ws_holds_state(s.ws));
    peer_fini(&s);

    /* A bare close (no status) is reported as 1005. */
    peer_init(&s, CX_WS_SERVER, 0);
    assert_int_equal(cx_ws_close(s.ws, 1000, ""), CX_OK);
    n = put_frame(f, 1, 0, 8, "", 0, KEY);
    assert_int_equal(cx_ws_feed(s.ws, f, n), CX_OK);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.close_code, 1005);
    peer_fini(&s);
}

static void test_peer_close_variants(void **state)
{
    (void)state;
    uint8_t f[256];
    size_t n;

    /* No status code: echoed bare, reported as 1005. */
    struct peer s;
    peer_init(&s, CX_WS_SERVER, 0);
    n = put_frame(f, 1, 0, 8, "", 0, KEY);
    n += cframe(f + n, 1, 1, "after close"); /* must be ignored */
    assert_int_equal(cx_ws_feed(s.ws, f, n), CX_OK);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.close_code, 1005);
    assert_int_equal(s.n_msgs, 0);
    assert_memory_equal(s.out, "\x88\x00", 2);
    assert_int_equal(s.out_len, 2);
    peer_fini(&s);

    /* Invalid status codes and a 1-byte body fail with 1002. */
    static const uint8_t bad[][2] = {{0x03, 0xed}, {0x03, 0xe7}, {0x03, 0xee}, {0x0b, 0xb7}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = put_frame(f, 1, 0, 8, bad[i], 2, KEY); /* 1005, 999, 1006, 2999 */
        expect_server_fails(f, n, 1002, 0);
    }
    n = put_frame(f, 1, 0, 8, "\x03", 1, KEY);
    expect_server_fails(f, n, 1002, 0);
    /* A reason that is not UTF-8. */
    n = put_frame(f, 1, 0, 8, "\x03\xe8\xc0\xaf", 4, KEY);
    expect_server_fails(f, n, 1007, 0);

    /* The app closes from inside on_message; a later message in the same read is
     * not delivered, and the peer's close in that read completes the handshake. */
    peer_init(&s, CX_WS_SERVER, 0);
    s.close_on_msg = 1;
    n = cframe(f, 1, 1, "logout");
    n += cframe(f + n, 1, 1, "dropped");
    n += put_frame(f + n, 1, 0, 8, "\x03\xe8", 2, KEY);
    assert_int_equal(cx_ws_feed(s.ws, f, n), CX_OK);
    assert_int_equal(s.n_msgs, 1);
    assert_int_equal(close_code_in(s.out, s.out_len, NULL, 0), 4002);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.close_code, 1000);
    assert_false(cx_ws_holds_state(s.ws));
    peer_fini(&s);

    /* The app closes, then a bad frame makes wslay stop reading before the
     * peer's close in the same read: the close still completes the handshake
     * and the junk after it is neither buffered nor an error. */
    peer_init(&s, CX_WS_SERVER, 125);
    s.close_on_msg = 1;
    n = cframe(f, 1, 1, "logout");
    n += cframe(f + n, 1, 1, "bad \xc0\xaf");
    n += put_frame(f + n, 1, 0, 8, "\x0f\xa3", 2, KEY);
    memset(f + n, 0xff, 150);
    n += 150;
    assert_int_equal(cx_ws_feed(s.ws, f, n), CX_OK);
    assert_int_equal(s.n_msgs, 1);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.close_code, 4003);
    assert_false(cx_ws_holds_state(s.ws));
    peer_fini(&s);

    /* Same, but the peer's close comes in a later read. */
    peer_init(&s, CX_WS_SERVER, 0);
    s.close_on_msg = 1;
    n = cframe(f, 1, 1, "logout");
    assert_int_equal(cx_ws_feed(s.ws, f, n), CX_OK);
    assert_true(cx_ws_close_sent(s.ws));
    assert_int_equal(s.closed, 0);
    assert_false(cx_ws_holds_state(s.ws));
    n = put_frame(f, 1, 0, 8, "\x0f\xa2", 2, KEY);
    assert_int_equal(cx_ws_feed(s.ws, f, n), CX_OK);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.close_code, 4002);
    peer_fini(&s);
}

static void test_binary_1003(void **state)
{
    (void)state;
    uint8_t f[64];
    size_t n = cframe(f, 1, 1, "before");
    n += put_frame(f + n, 1, 0, 2, "\x01\x02\x03", 3, KEY);
    n += cframe(f + n, 1, 1, "after");

    struct peer s;
    peer_init(&s, CX_WS_SERVER, 0);
    assert_int_equal(cx_ws_feed(s.ws, f, n), CX_OK);
    assert_int_equal(s.n_msgs, 1); /* frames before the bad one still count */
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.close_code, 1003);
    /* 0x88, length, then 0x03 0xEB = 1003 */
    assert_int_equal(s.out[0], 0x88);
    assert_int_equal(s.out[2], 0x03);
    assert_int_equal(s.out[3], 0xeb);
    peer_fini(&s);

    /* Fails on the header alone: a huge binary frame's payload is never buffered. */
    n = put_frame(f, 1, 0, 2, NULL, 50u << 20, KEY);
    expect_server_fails(f, n, 1003, 0);
}

static void test_bad_utf8_1007(void **state)
{
    (void)state;
    uint8_t f[64];
    size_t n;
    static const char *bad[] = {"\xc3\x28", "ok\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf",
                                "trunc\xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = cframe(f, 1, 1, bad[i]);
        expect_server_fails(f, n, 1007, 0);
    }
    /* Invalid across fragments. */
    n = cframe(f, 0, 1, "\xe2\x82");
    n += cframe(f + n, 1, 0, "x");
    expect_server_fails(f, n, 1007, 0);
}

static void test_too_big_1009(void **state)
{
    (void)state;
    uint8_t f[512];
    char big[200];
    memset(big, 'b', sizeof big);
    big[sizeof big - 1] = '\0';
    size_t n;

    /* Exactly the limit is fine. */
    struct peer s;
    peer_init(&s, CX_WS_SERVER, 100);
    n = put_frame(f, 1, 0, 1, big, 100, KEY);
    assert_int_equal(cx_ws_feed(s.ws, f, n), CX_OK);
    assert_int_equal(s.n_msgs, 1);
    assert_int_equal(s.msg_lens[0], 100);
    n = put_frame(f, 0, 0, 1, big, 50, KEY);
    n += put_frame(f + n, 1, 0, 0, big, 50, KEY);
    assert_int_equal(cx_ws_feed(s.ws, f, n), CX_OK);
    assert_int_equal(s.n_msgs, 2);
    assert_int_equal(s.closed, 0);
    peer_fini(&s);

    /* One byte over, single frame; only the header is needed to refuse it. */
    n = put_frame(f, 1, 0, 1, NULL, 101, KEY);
    expect_server_fails(f, n, 1009, 100);
    n = put_frame(f, 1, 0, 1, NULL, (uint64_t)1 << 40, KEY);
    expect_server_fails(f, n, 1009, 100);

    /* Fragments that each fit but together do not. */
    n = put_frame(f, 0, 0, 1, big, 60, KEY);
    n += put_frame(f + n, 0, 0, 0, big, 40, KEY);
    n += put_frame(f + n, 1, 0, 0, big, 1, KEY);
    expect_server_fails(f, n, 1009, 100);
}

static void test_framing_1002(void **state)
{
    (void)state;
    uint8_t f[512];
    size_t n;
    char pl[130];
    memset(pl, 'p', sizeof pl);

    n = put_frame(f, 1, 0, 1, "plain", 5, NULL); /* unmasked from a client */
    expect_server_fails(f, n, 1002, 0);
    n = put_frame(f, 1, 4, 1, "rsv1", 4, KEY);
    expect_server_fails(f, n, 1002, 0);
    n = put_frame(f, 1, 1, 1, "rsv3", 4, KEY);
    expect_server_fails(f, n, 1002, 0);
    n = put_frame(f, 1, 0, 3, "op3", 3, KEY); /* reserved data opcode */
    expect_server_fails(f, n, 1002, 0);
    n = put_frame(f, 1, 0, 0xb, "opb", 3, KEY); /* reserved control opcode */
    expect_server_fails(f, n, 1002, 0);
    n = put_frame(f, 1, 0, 9, pl, 126, KEY); /* control frame over 125 */
    expect_server_fails(f, n, 1002, 0);
    n = put_frame(f, 0, 0, 9, "x", 1, KEY); /* fragmented control frame */
    expect_server_fails(f, n, 1002, 0);
    n = put_frame(f, 1, 0, 0, "cont", 4, KEY); /* continuation with nothing open */
    expect_server_fails(f, n, 1002, 0);
    n = put_frame(f, 0, 0, 1, "a", 1, KEY); /* new text inside a fragmented one */
    n += put_frame(f + n, 1, 0, 1, "b", 1, KEY);
    expect_server_fails(f, n, 1002, 0);

    /* 64-bit length with the top bit set. */
    uint8_t top[14] = {0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    expect_server_fails(top, sizeof top, 1002, 0);
    /* Lengths not in their shortest form. */
    uint8_t l16[8] = {0x81, 0xfe, 0x00, 0x05, 1, 2, 3, 4};
    expect_server_fails(l16, sizeof l16, 1002, 0);
    uint8_t l64[14] = {0x81, 0xff, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 1, 2, 3, 4};
    expect_server_fails(l64, sizeof l64, 1002, 0);

    /* A client refuses masked frames from the server. */
    struct peer c;
    peer_init(&c, CX_WS_CLIENT, 0);
    n = put_frame(f, 1, 0, 1, "masked", 6, KEY);
    assert_int_equal(cx_ws_feed(c.ws, f, n), CX_OK);
    assert_int_equal(c.closed, 1);
    assert_int_equal(c.close_code, 1002);
    assert_int_equal(c.n_msgs, 0);
    assert_true(c.out_len > 6 && (c.out[1] & 0x80)); /* its close is masked */
    peer_fini(&c);
}

static void test_large_messages(void **state)
{
    (void)state;
    static const size_t sizes[] = {125, 126, 65535, 65536, 70000, 300000};
    struct peer s, c;
    peer_init(&s, CX_WS_SERVER, 1 << 20);
    peer_init(&c, CX_WS_CLIENT, 1 << 20);
    char *m = malloc(300001);
    assert_non_null(m);
    for (size_t i = 0; i < 300000; i++)
        m[i] = (char)('a' + i % 26);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t len = sizes[k];
        peer_clear(&s);
        peer_clear(&c);
        assert_int_equal(cx_ws_send_text(c.ws, m, len), CX_OK);
        /* header form: 7-bit, 16-bit (126) or 64-bit (127) */
        uint8_t l7 = c.out[1] & 0x7f;
        assert_int_equal(l7, len < 126 ? len : len <= 0xffff ? 126 : 127);
        /* deliver in odd-sized pieces */
        size_t total = c.out_len, off = 0, step = 1;
        uint8_t *wire = malloc(total);
        assert_non_null(wire);
        memcpy(wire, c.out, total);
        c.out_len = 0;
        while (off < total) {
            size_t piece = step < total - off ? step : total - off;
            assert_int_equal(cx_ws_feed(s.ws, wire + off, piece), CX_OK);
            off += piece;
            step = step * 3 + 7;
        }
        free(wire);
        assert_int_equal(s.n_msgs, 1);
        assert_int_equal(s.msg_lens[0], len);
        assert_memory_equal(s.msgs[0], m, len);

        assert_int_equal(cx_ws_send_text(s.ws, m, len), CX_OK);
        pump(&s, &c);
        assert_int_equal(c.n_msgs, 1);
        assert_int_equal(c.msg_lens[0], len);
        assert_memory_equal(c.msgs[0], m, len);
        assert_false(cx_ws_holds_state(s.ws));
        assert_false(cx_ws_holds_state(c.ws));
    }
    free(m);
    peer_fini(&s);
    peer_fini(&c);
}

static void test_send_failure(void **state)
{
    (void)state;
    struct peer s;
    peer_init(&s, CX_WS_SERVER, 0);
    s.fail_send = 1;
    assert_int_equal(cx_ws_send_text(s.ws, "x", 1), CX_E_CLOSED);
    assert_int_equal(cx_ws_send_text(s.ws, "x", 1), CX_E_CLOSED);
    assert_int_equal(cx_ws_send_ping(s.ws), CX_E_CLOSED);
    uint8_t f[16];
    size_t n = cframe(f, 1, 1, "hi");
    assert_int_equal(cx_ws_feed(s.ws, f, n), CX_E_CLOSED);
    assert_false(cx_ws_holds_state(s.ws));
    peer_fini(&s);

    /* on_send failing while answering a ping inside a feed. */
    peer_init(&s, CX_WS_SERVER, 0);
    s.fail_send = 1;
    n = cframe(f, 1, 9, "p");
    assert_int_equal(cx_ws_feed(s.ws, f, n), CX_E_CLOSED);
    assert_int_equal(cx_ws_feed(s.ws, f, n), CX_E_CLOSED);
    assert_false(cx_ws_holds_state(s.ws));
    assert_int_equal(s.closed, 0);
    peer_fini(&s);
}

static size_t heap_in_use(void)
{
#ifdef HAVE_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    return mallinfo2().uordblks;
#endif
}

/* 2000 server sessions that each received and answered a message, then went
 * idle, must cost well under 1 KB each. */
static void test_idle_memory(void **state)
{
    (void)state;
    enum { N = 2000 };
    struct peer *ps = calloc(N, sizeof *ps);
    assert_non_null(ps);
    uint8_t f[64], partial[3];
    size_t n = cframe(f, 1, 1, "{\"type\":\"auth\"}");
    memcpy(partial, f, 3);

    size_t before = heap_in_use();
    for (int i = 0; i < N; i++) {
        ps[i].ws = cx_ws_new(CX_WS_SERVER, &cbs, &ps[i], 0);
        assert_non_null(ps[i].ws);
        ps[i].echo = 1;
        assert_int_equal(cx_ws_feed(ps[i].ws, f, n), CX_OK);
        assert_int_equal(cx_ws_send_ping(ps[i].ws), CX_OK);
        assert_int_equal(ps[i].n_msgs, 1);
        assert_false(cx_ws_holds_state(ps[i].ws));
        /* Drop captured output and messages: they are the test's, not the session's. */
        peer_clear(&ps[i]);
        free(ps[i].out);
        ps[i].out = NULL;
        ps[i].out_cap = 0;
    }
    size_t after = heap_in_use();
    size_t per = (after - before) / N;
    print_message("idle server session: about %zu bytes\n", per);
    assert_true(after >= before);
    assert_true(per < 512);

    /* A partial frame costs a small buffer, not a wslay context. */
    before = heap_in_use();
    for (int i = 0; i < N; i++) {
        assert_int_equal(cx_ws_feed(ps[i].ws, partial, sizeof partial), CX_OK);
        assert_true(cx_ws_holds_state(ps[i].ws));
    }
    after = heap_in_use();
    per = (after - before) / N;
    print_message("session with a partial frame: about %zu more bytes\n", per);
    assert_true(per < 1024);

    for (int i = 0; i < N; i++)
        peer_fini(&ps[i]);
    free(ps);
}

/* A reply and a close sent from on_message reach the peer in that order: wslay puts
 * control frames first, and an auth failure answer must not be lost behind its close. */
static void test_reply_then_close_order(void **state)
{
    (void)state;
    struct peer s, c;
    peer_init(&s, CX_WS_SERVER, 0);
    peer_init(&c, CX_WS_CLIENT, 0);
    s.echo = 1;
    s.close_on_msg = 1;
    assert_int_equal(cx_ws_send_text(c.ws, "auth", 4), CX_OK);
    pump(&c, &s);
    assert_int_equal(c.n_msgs, 1);
    assert_string_equal(c.msgs[0], "auth");
    assert_int_equal(c.closed, 1);
    assert_int_equal(c.close_code, 4002);
    assert_int_equal(s.closed, 1);
    peer_fini(&s);
    peer_fini(&c);
}

/* Whole text messages skip wslay; these are the edges of that path. */
static void test_fast_path_edges(void **state)
{
    (void)state;
    struct peer s, c;

    /* A client answering inside the feed of a server message: its reply is sent. */
    peer_init(&s, CX_WS_SERVER, 0);
    peer_init(&c, CX_WS_CLIENT, 0);
    c.echo = 1;
    assert_int_equal(cx_ws_send_text(s.ws, "hello", 5), CX_OK);
    uint8_t wire[64];
    size_t n = s.out_len;
    assert_int_equal(n, 7); /* 2-byte header, unmasked, then the text */
    assert_int_equal(s.out[0], 0x81);
    assert_int_equal(s.out[1], 5);
    memcpy(wire, s.out, n);
    s.out_len = 0;
    assert_int_equal(cx_ws_feed(c.ws, wire, n), CX_OK);
    assert_int_equal(c.n_msgs, 1);
    assert_true(c.out_len > 0); /* the echo left in the same call */
    pump(&c, &s);
    assert_int_equal(s.n_msgs, 1);
    assert_string_equal(s.msgs[0], "hello");
    assert_false(cx_ws_close_received(s.ws));
    peer_fini(&s);
    peer_fini(&c);

    /* Good, bad UTF-8, good in one read: the first is delivered, then 1007, no more. */
    peer_init(&s, CX_WS_SERVER, 0);
    uint8_t in[64];
    n = cframe(in, 1, 1, "one");
    n += cframe(in + n, 1, 1, "\xc3\x28");
    n += cframe(in + n, 1, 1, "three");
    assert_int_equal(cx_ws_feed(s.ws, in, n), CX_OK);
    assert_int_equal(s.n_msgs, 1);
    assert_string_equal(s.msgs[0], "one");
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.close_code, 1007);
    assert_int_equal(close_code_in(s.out, s.out_len, NULL, 0), 1007);
    assert_false(cx_ws_close_received(s.ws)); /* we failed it; the peer never closed */
    peer_fini(&s);

    /* Replies to several messages of one read go out in order, then the app's close;
     * the messages after the one that closed are not delivered. */
    peer_init(&s, CX_WS_SERVER, 0);
    s.echo = 1;
    n = cframe(in, 1, 1, "a");
    n += cframe(in + n, 1, 1, "b");
    assert_int_equal(cx_ws_feed(s.ws, in, n), CX_OK);
    assert_int_equal(s.n_msgs, 2);
    assert_int_equal(s.out_len, 6);
    assert_memory_equal(s.out, "\x81\x01" "a" "\x81\x01" "b", 6);
    s.out_len = 0;
    s.close_on_msg = 1;
    n = cframe(in, 1, 1, "c");
    n += cframe(in + n, 1, 1, "d");
    assert_int_equal(cx_ws_feed(s.ws, in, n), CX_OK);
    assert_int_equal(s.n_msgs, 3);
    assert_memory_equal(s.out, "\x81\x01" "c", 3);
    assert_int_equal(close_code_in(s.out, s.out_len, NULL, 0), 4002);
    assert_int_equal(s.closed, 0); /* waits for the peer's close */
    assert_false(cx_ws_close_received(s.ws));
    n = cframe(in, 1, 8, "\x0f\xa2"); /* 4002 back */
    assert_int_equal(cx_ws_feed(s.ws, in, n), CX_OK);
    assert_int_equal(s.closed, 1);
    assert_true(cx_ws_close_received(s.ws));
    peer_fini(&s);

    /* A ping, a message and the peer's close in one read: pong, delivery, echo (code
     * and reason), on_closed; no wslay context was needed. */
    peer_init(&s, CX_WS_SERVER, 0);
    n = cframe(in, 1, 9, "pp");
    n += cframe(in + n, 1, 1, "msg");
    n += cframe(in + n, 1, 8, "\x03\xe8" "bye");
    assert_int_equal(cx_ws_feed(s.ws, in, n), CX_OK);
    assert_int_equal(s.n_msgs, 1);
    assert_string_equal(s.msgs[0], "msg");
    assert_int_equal(s.out_len, 4 + 7);
    assert_memory_equal(s.out, "\x8a\x02" "pp" "\x88\x05\x03\xe8" "bye", 11);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.close_code, 1000);
    assert_string_equal(s.close_reason, "bye");
    assert_true(cx_ws_close_sent(s.ws));
    assert_false(cx_ws_holds_state(s.ws));
    assert_int_equal(cx_ws_feed(s.ws, in, n), CX_E_CLOSED);
    peer_fini(&s);

    /* The peer closing: received is set by the time on_closed runs. */
    peer_init(&s, CX_WS_SERVER, 0);
    n = cframe(in, 1, 8, "\x03\xe8");
    assert_int_equal(cx_ws_feed(s.ws, in, n), CX_OK);
    assert_int_equal(s.closed, 1);
    assert_true(cx_ws_close_received(s.ws));
    peer_fini(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exchange),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_fragmented),
        cmocka_unit_test(test_ping_pong),
        cmocka_unit_test(test_close_from_client),
        cmocka_unit_test(test_close_from_server),
        cmocka_unit_test(test_reply_then_close_order),
        cmocka_unit_test(test_closing_waits_for_peer),
        cmocka_unit_test(test_peer_close_variants),
        cmocka_unit_test(test_binary_1003),
        cmocka_unit_test(test_bad_utf8_1007),
        cmocka_unit_test(test_too_big_1009),
        cmocka_unit_test(test_framing_1002),
        cmocka_unit_test(test_large_messages),
        cmocka_unit_test(test_send_failure),
        cmocka_unit_test(test_idle_memory),
        cmocka_unit_test(test_fast_path_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
