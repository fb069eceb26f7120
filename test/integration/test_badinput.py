"""Malformed HTTP, malformed WebSocket frames, malformed envelopes and slow readers
(PROTOCOL sections 1, 2 and 7). Nothing here may crash the server."""
import json
import os
import select
import socket
import time

import pytest

import helpers as h
from helpers import (OP_BIN, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWS, async_test,
                     connect, connect_auth, expect_error, expect_ok)

MSG_LIMIT = 65536
HEAD_LIMIT = 4096


@pytest.fixture(scope="module")
def limited(module_factory):
    """Small limits so the tests stay fast."""
    return module_factory(env={
        "CONDRIX_LIMIT_HEAD_BYTES": str(HEAD_LIMIT),
        "CONDRIX_LIMIT_MESSAGE_BYTES": str(MSG_LIMIT),
        "CONDRIX_LIMIT_UPGRADE_MS": "600",
        "CONDRIX_RATE_MSG_MAX": "0",
    })


def answer(port, data, timeout=None):
    """Send raw bytes; -> (status, headers, closed_by_server)."""
    raw, closed = h.raw_http(port, data, timeout or h.t(5))
    assert raw, "no answer at all (closed=%s)" % closed
    status, headers, _ = h.parse_http_head(raw)
    return status, headers, closed


def authed_raw(srv, **kw):
    r = RawWS(srv.port, tls_ctx=srv.client_ssl, **kw)
    r.upgrade()
    m = r.request("auth", {"token": srv.admin_token})
    assert m["success"], m
    return r


# --------------------------------------------------------------------------- HTTP upgrade

UPGRADE_VARIANTS = {
    # Firefox sends "keep-alive, Upgrade"
    "keep-alive-upgrade": "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n",
    "mixed-case-values": "Upgrade: WebSocket\r\nConnection: upgrade\r\n",
    "lowercase-names": "upgrade: websocket\r\nconnection: Upgrade\r\n",
    "extra-spaces": "Upgrade:   websocket  \r\nConnection:Upgrade\r\n",
}


@pytest.mark.parametrize("variant", sorted(UPGRADE_VARIANTS))
def test_upgrade_header_variants(shared_core, variant):
    key = h.ws_key()
    req = ("GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%ssec-websocket-key: %s\r\nSec-WebSocket-Version: 13\r\n"
           "Origin: http://localhost\r\nUser-Agent: itest\r\n\r\n" % (shared_core.port, UPGRADE_VARIANTS[variant], key))
    s = h.open_sock(shared_core.port)
    try:
        s.sendall(req.encode())
        data = b""
        deadline = time.monotonic() + h.t(5)
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    status, hdrs, _ = h.parse_http_head(data)
    assert status == 101, data
    assert hdrs["sec-websocket-accept"] == h.ws_accept(key)


def test_healthz(shared_core):
    status, headers, body = h.http_get(shared_core.port, "/healthz")
    assert status == 200 and body.strip() == b"ok"


def test_missing_key_400(shared_core):
    status, _, closed = answer(shared_core.port, h.upgrade_request(shared_core.port, omit=("Sec-WebSocket-Key",)))
    assert status == 400
    assert closed, "socket not closed after the 400"


def test_upgrade_without_connection_upgrade_is_400(shared_core):
    # Upgrade: websocket without Connection: Upgrade is a malformed handshake (RFC 6455
    # 4.2.1), not a plain GET
    status, _, closed = answer(shared_core.port, h.upgrade_request(shared_core.port, omit=("Connection",)))
    assert status == 400
    assert closed


def test_version_8_is_426(shared_core):
    status, headers, closed = answer(shared_core.port, h.upgrade_request(shared_core.port, version="8"))
    assert status == 426
    assert headers.get("sec-websocket-version") == "13", headers
    assert closed


def test_head_too_large_default_limit(shared_core):
    req = h.upgrade_request(shared_core.port, extra_headers=[("X-Filler", "a" * 20000)])
    status, _, closed = answer(shared_core.port, req)
    assert status == 431
    assert closed


def test_head_too_large_configured_limit(limited):
    req = h.upgrade_request(limited.port, extra_headers=[("X-Filler", "a" * (HEAD_LIMIT + 100))])
    status, _, closed = answer(limited.port, req)
    assert status == 431
    assert closed
    # many small headers adding up past the limit
    req = h.upgrade_request(limited.port, extra_headers=[("X-H%d" % i, "b" * 40) for i in range(200)])
    status, _, closed = answer(limited.port, req)
    assert status == 431
    # just under the limit is fine
    filler = HEAD_LIMIT - len(h.upgrade_request(limited.port)) - 200
    with RawWS(limited.port) as r:
        r.upgrade(extra_headers=[("X-Filler", "c" * filler)])


def test_endless_header_line_without_crlf(limited):
    s = h.open_sock(limited.port, timeout=h.t(5))
    try:
        s.sendall(b"GET / HTTP/1.1\r\nX-Long: " + b"z" * (HEAD_LIMIT * 3))
        data, closed = h.recv_all(s, h.t(5))
    except (ConnectionResetError, BrokenPipeError):
        data, closed = b"", True
    finally:
        s.close()
    assert closed
    if data:
        assert h.parse_http_head(data)[0] == 431


@pytest.mark.parametrize("garbage", [b"HELLO WORLD\r\n\r\n", b"GET\r\n\r\n", b"\x00\xff\xfe\x01garbage\r\n\r\n",
                                     b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n"],
                         ids=["words", "method-only", "binary", "bad-version", "bad-header"])
def test_garbage_request_400(shared_core, garbage):
    raw, closed = h.raw_http(shared_core.port, garbage, h.t(5))
    assert closed, "socket not closed"
    assert raw, "no answer"
    assert h.parse_http_head(raw)[0] == 400


def test_unknown_path_404(shared_core):
    status, _, body = h.http_get(shared_core.port, "/no/such/thing")
    assert status == 404
    raw, closed = h.raw_http(shared_core.port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", h.t(5))
    assert h.parse_http_head(raw)[0] == 404
    assert closed


def test_rfc_accept_key(shared_core):
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    s = h.open_sock(shared_core.port)
    try:
        s.sendall(h.upgrade_request(shared_core.port, key=key))
        data = b""
        deadline = time.monotonic() + h.t(5)
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    status, headers, _ = h.parse_http_head(data)
    assert status == 101
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert "sec-websocket-extensions" not in headers


def test_upgrade_deadline_silent_client(limited):
    s = h.open_sock(limited.port)
    t0 = time.monotonic()
    data, closed = h.recv_all(s, h.t(5))
    s.close()
    assert closed, "silent client not dropped"
    assert time.monotonic() - t0 >= 0.4
    if data:
        assert h.parse_http_head(data)[0] == 408


def test_upgrade_deadline_half_head(limited):
    s = h.open_sock(limited.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
    data, closed = h.recv_all(s, h.t(5))
    s.close()
    assert closed, "half-head client not dropped"
    if data:
        assert h.parse_http_head(data)[0] == 408


def test_upgrade_deadline_slowloris(limited):
    # one byte every 100 ms: the deadline is for the whole head, not per read
    s = h.open_sock(limited.port)
    t0 = time.monotonic()
    closed = False
    head = h.upgrade_request(limited.port) + b"X" * 1000
    for b in head:
        if time.monotonic() - t0 > h.t(4):
            break
        try:
            s.sendall(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        r, _, _ = select.select([s], [], [], 0.1)
        if r:
            try:
                if not s.recv(4096):
                    closed = True
                    break
            except ConnectionResetError:
                closed = True
                break
    s.close()
    assert closed, "slowloris client kept for %.1fs with a 0.6s upgrade limit" % (time.monotonic() - t0)
    assert time.monotonic() - t0 < h.t(3)


def test_head_one_byte_at_a_time(shared_core):
    s = h.open_sock(shared_core.port)
    key = h.ws_key()
    for i, b in enumerate(h.upgrade_request(shared_core.port, key=key)):
        s.sendall(bytes([b]))
        if i % 8 == 0:
            time.sleep(0.001)
    data = b""
    deadline = time.monotonic() + h.t(5)
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    status, headers, _ = h.parse_http_head(data)
    assert status == 101
    assert headers["sec-websocket-accept"] == h.ws_accept(key)


def test_first_frame_in_same_packet_as_head(shared_core):
    env = h.envelope("auth", {"token": shared_core.admin_token})
    with RawWS(shared_core.port) as r:
        r.upgrade(first_bytes=h.encode_frame(OP_TEXT, json.dumps(env)))
        m = r.recv_json()
        h.check_response(m, env["id"])
        assert m["success"] is True


def test_frame_bytes_one_at_a_time(shared_core):
    env = h.envelope("auth", {"token": shared_core.admin_token})
    frame = h.encode_frame(OP_TEXT, json.dumps(env))
    with RawWS(shared_core.port) as r:
        r.upgrade()
        for i in range(len(frame)):
            r.send_raw(frame[i:i + 1])
            if i % 16 == 0:
                time.sleep(0.001)
        m = r.recv_json()
        h.check_response(m, env["id"])
        assert m["success"] is True


# --------------------------------------------------------------------------- frames

def fresh(srv):
    r = RawWS(srv.port)
    r.upgrade()
    return r


def test_binary_frame_1003(shared_core):
    with fresh(shared_core) as r:
        r.send_frame(OP_BIN, b'{"id":"x"}')
        assert r.expect_close() == 1003


def test_binary_frame_after_auth_1003(shared_core):
    with authed_raw(shared_core) as r:
        r.send_frame(OP_BIN, b"\x00\x01\x02")
        assert r.expect_close() == 1003


@pytest.mark.parametrize("bad", [b'{"id":"\xff\xfe"}', b"\xc0\xaf", b'"\xed\xa0\x80"', b"abc\xf5\x80\x80\x80",
                                 b"\xe2\x82"],
                         ids=["ff", "overlong", "surrogate", "above-max", "truncated"])
def test_invalid_utf8_1007(shared_core, bad):
    with fresh(shared_core) as r:
        r.send_frame(OP_TEXT, bad)
        assert r.expect_close() == 1007


def test_invalid_utf8_in_fragments_1007(shared_core):
    with authed_raw(shared_core) as r:
        r.send_frame(OP_TEXT, b'{"id":"a', fin=False)
        r.send_frame(OP_CONT, b"\xff", fin=False)
        r.send_frame(OP_CONT, b'"}', fin=True)
        assert r.expect_close() == 1007


def test_utf8_char_split_across_fragments_ok(shared_core):
    with authed_raw(shared_core) as r:
        env = h.envelope("health", rid="id-\u00fc\u2713-\U0001F600")
        data = json.dumps(env, ensure_ascii=False).encode()
        i = data.index("\u2713".encode()) + 1  # split inside the 3-byte character
        r.send_frame(OP_TEXT, data[:i], fin=False)
        r.send_frame(OP_CONT, data[i:i + 1], fin=False)
        r.send_frame(OP_CONT, data[i + 1:], fin=True)
        m = r.recv_json()
        h.check_response(m, env["id"])
        assert m["success"] is True


def test_unmasked_frame_1002(shared_core):
    with fresh(shared_core) as r:
        r.send_frame(OP_TEXT, json.dumps(h.envelope("health")), mask=False)
        assert r.expect_close() == 1002


@pytest.mark.parametrize("rsv", [4, 2, 1], ids=["rsv1", "rsv2", "rsv3"])
def test_rsv_bit_1002(shared_core, rsv):
    with fresh(shared_core) as r:
        r.send_frame(OP_TEXT, json.dumps(h.envelope("health")), rsv=rsv)
        assert r.expect_close() == 1002


@pytest.mark.parametrize("opcode", [3, 7, 0xB, 0xF])
def test_reserved_opcode_1002(shared_core, opcode):
    with fresh(shared_core) as r:
        r.send_frame(opcode, b"x")
        assert r.expect_close() == 1002


def test_fragmented_control_frame_1002(shared_core):
    with fresh(shared_core) as r:
        r.send_frame(OP_PING, b"abc", fin=False)
        assert r.expect_close() == 1002


def test_oversized_control_frame_1002(shared_core):
    with fresh(shared_core) as r:
        r.send_frame(OP_PING, b"p" * 126)
        assert r.expect_close() == 1002


def test_continuation_without_start_1002(shared_core):
    with fresh(shared_core) as r:
        r.send_frame(OP_CONT, b"{}", fin=True)
        assert r.expect_close() == 1002


def test_new_message_inside_fragmented_message_1002(shared_core):
    with fresh(shared_core) as r:
        r.send_frame(OP_TEXT, b'{"id":', fin=False)
        r.send_frame(OP_TEXT, b'"x"}', fin=True)
        assert r.expect_close() == 1002


def test_ping_gets_pong(shared_core):
    with authed_raw(shared_core) as r:
        r.send_frame(OP_PING, b"hello-ping")
        deadline = time.monotonic() + h.t(5)
        while True:
            fin, op, payload = r.recv_frame(max(0.01, deadline - time.monotonic()))
            if op == OP_PONG:
                assert payload == b"hello-ping"
                break
            assert op in (OP_PING, OP_TEXT), op


def test_client_close_is_echoed(shared_core):
    with authed_raw(shared_core) as r:
        r.send_frame(OP_CLOSE, b"\x03\xe8bye")
        assert r.expect_close() == 1000
        data, closed = h.recv_all(r.sock, h.t(3))
        assert closed, "TCP not closed after the close handshake"


def test_fragmented_message_is_reassembled(shared_core):
    with fresh(shared_core) as r:
        env = h.envelope("auth", {"token": shared_core.admin_token})
        data = json.dumps(env).encode()
        parts = [data[:5], data[5:20], data[20:21], data[21:]]
        r.send_frame(OP_TEXT, parts[0], fin=False)
        r.send_frame(OP_CONT, parts[1], fin=False)
        r.send_frame(OP_PING, b"in-between")  # control frames may be interleaved
        r.send_frame(OP_CONT, parts[2], fin=False)
        r.send_frame(OP_CONT, parts[3], fin=True)
        m = r.recv_json()
        h.check_response(m, env["id"])
        assert m["success"] is True
        m = r.request("health")
        assert m["success"] is True


def test_message_too_big_1009(limited):
    with authed_raw(limited) as r:
        env = h.envelope("health", {"pad": "x" * (MSG_LIMIT + 1000)})
        r.send_watching(h.encode_frame(OP_TEXT, json.dumps(env)))
        assert r.expect_close() == 1009


def test_fragmented_message_too_big_1009(limited):
    with authed_raw(limited) as r:
        chunk = b"x" * 20000
        data = h.encode_frame(OP_TEXT, b'{"pad":"' + chunk, fin=False)
        for _ in range(4):
            data += h.encode_frame(OP_CONT, chunk, fin=False)
        data += h.encode_frame(OP_CONT, b'"}', fin=True)
        r.send_watching(data, chunk=8192)
        assert r.expect_close() == 1009


def test_declared_huge_frame_1009_without_payload(limited):
    with authed_raw(limited) as r:
        r.send_raw(h.encode_frame(OP_TEXT, b"", length_override=1 << 30)[:14])
        assert r.expect_close(h.t(3)) == 1009


def test_declared_63bit_length_rejected(limited):
    with authed_raw(limited) as r:
        r.send_raw(bytes([0x81, 0xFF]) + b"\x80" + b"\x00" * 7 + os.urandom(4))
        code = r.expect_close(h.t(3))
        assert code in (1002, 1009)


def test_default_message_limit_is_1mib(shared_core):
    with authed_raw(shared_core) as r:
        env = h.envelope("health", rid="big-ok")
        base = json.dumps(env)
        text = base[:-1] + " " * (1048576 - len(base)) + "}"
        r.send_text(text)
        m = r.recv_json()
        h.check_response(m, "big-ok")
        r.send_watching(h.encode_frame(OP_TEXT, text + " "))
        assert r.expect_close() == 1009


def test_message_at_limit_is_accepted(limited):
    with authed_raw(limited) as r:
        env = h.envelope("health", rid="at-limit")
        base = json.dumps(env)
        pad = MSG_LIMIT - len(base)
        text = base[:-1] + " " * pad + "}"
        assert len(text.encode()) == MSG_LIMIT
        r.send_text(text)
        m = r.recv_json()
        h.check_response(m, "at-limit")
        assert m["success"] is True


def test_server_alive_after_frame_abuse(shared_core):
    shared_core.assert_alive()
    status, _, body = h.http_get(shared_core.port, "/healthz")
    assert status == 200


# --------------------------------------------------------------------------- envelope

INVALID = [
    ("not-json", "this is not json", None),
    ("truncated-json", '{"id":"x1","type":"request"', None),
    ("array", "[1,2,3]", None),
    ("string", '"hello"', None),
    ("number", "42", None),
    ("null", "null", None),
    ("empty-object", "{}", None),
    ("missing-id", {"type": "request", "namespace": "core", "action": "health", "payload": {}}, None),
    ("missing-type", {"id": "mt-1", "namespace": "core", "action": "health", "payload": {}}, "mt-1"),
    ("missing-namespace", {"id": "mn-1", "type": "request", "action": "health", "payload": {}}, "mn-1"),
    ("missing-action", {"id": "ma-1", "type": "request", "namespace": "core", "payload": {}}, "ma-1"),
    ("id-number", {"id": 17, "type": "request", "namespace": "core", "action": "health", "payload": {}}, None),
    ("id-empty", {"id": "", "type": "request", "namespace": "core", "action": "health", "payload": {}}, None),
    ("id-129", {"id": "i" * 129, "type": "request", "namespace": "core", "action": "health", "payload": {}},
     None),
    ("type-number", {"id": "tn-1", "type": 1, "namespace": "core", "action": "health", "payload": {}}, "tn-1"),
    ("type-unknown", {"id": "tu-1", "type": "banana", "namespace": "core", "action": "health", "payload": {}},
     "tu-1"),
    ("namespace-null", {"id": "nn-1", "type": "request", "namespace": None, "action": "health", "payload": {}},
     "nn-1"),
    ("action-array", {"id": "aa-1", "type": "request", "namespace": "core", "action": ["health"], "payload": {}},
     "aa-1"),
    ("duplicate-key", '{"id":"dk-1","type":"request","namespace":"core","action":"health",'
     '"action":"info","payload":{}}', "dk-1"),
    ("deep-nesting", "[" * 50000 + "]" * 50000, None),
    ("deep-object", '{"id":"dn-1","type":"request","namespace":"core","action":"health","payload":'
     + '{"a":' * 5000 + "1" + "}" * 5000 + "}", "any"),
]


@async_test
async def test_integer_beyond_64_bits_is_valid_json(shared_core):
    # Valid JSON with a huge integer is read (as a double) and answered normally.
    c = await connect_auth(shared_core)
    await c.send_raw('{"id":"huge-1","type":"request","namespace":"core","action":"health",'
                     '"payload":{"x":123456789012345678901234567890123}}')
    m = await c.recv_json()
    h.check_response(m, "huge-1")
    assert m["success"] is True, m
    await c.close()


@pytest.mark.parametrize("name,msg,cid", INVALID, ids=[i[0] for i in INVALID])
@async_test
async def test_invalid_message(shared_core, name, msg, cid):
    c = await connect_auth(shared_core)
    await c.send_raw(msg if isinstance(msg, str) else json.dumps(msg))
    m = await c.recv_json()
    h.check_response(m)
    if cid == "any" and m.get("correlationId") == "dn-1":
        pass  # deeply nested but valid JSON: the server may parse it and answer normally
    elif cid == "any":
        expect_error(m, "INVALID_MESSAGE")
    else:
        expect_error(m, "INVALID_MESSAGE")
        if cid is not None:
            assert m.get("correlationId") == cid, m
        else:
            assert m.get("correlationId") in (None, "") or name == "id-129", m
    # the connection is still usable
    assert await c.is_open()
    await c.close()


@async_test
async def test_id_of_128_chars_is_valid(shared_core):
    c = await connect_auth(shared_core)
    rid = "j" * 128
    m = await c.request("health", rid=rid)
    assert m["success"] is True
    # 128 characters of two, three and four bytes: valid, and echoed on an error too
    for ch in ("\u00e9", "\u20ac", "\U0001f600"):
        rid = ch * 128
        m = await c.request("health", rid=rid)
        assert m["success"] is True and m["correlationId"] == rid
        await c.send_env({"id": rid, "type": "zz", "namespace": "core", "action": "health", "payload": {}})
        m = await c.recv_json()
        expect_error(m, "INVALID_MESSAGE")
        assert m.get("correlationId") == rid, m
    await c.close()


@async_test
async def test_five_invalid_in_a_row_close_1008(shared_core):
    c = await connect_auth(shared_core)
    for i in range(4):
        await c.send_raw("nope %d" % i)
        expect_error(await c.recv_json(), "INVALID_MESSAGE")
    await c.send_raw("nope 5")
    code, _ = await c.expect_close()
    assert code == 1008


@async_test
async def test_invalid_streak_is_reset_by_a_valid_message(shared_core):
    c = await connect_auth(shared_core)
    for round_ in range(3):
        for i in range(4):
            await c.send_raw("{bad %d" % i)
            expect_error(await c.recv_json(), "INVALID_MESSAGE")
        expect_ok(await c.request("health"))
    assert await c.is_open()
    await c.close()


@async_test
async def test_five_invalid_before_auth_close_1008(shared_core):
    c = await connect(shared_core)
    for i in range(5):
        await c.send_raw("[%d]" % i)
    code, _ = await c.expect_close()
    assert code == 1008


@async_test
async def test_invalid_message_before_auth(shared_core):
    c = await connect(shared_core)
    await c.send_raw("not json at all")
    m = await c.recv_json()
    h.check_response(m)
    assert m["success"] is False and h.err_code(m) in ("INVALID_MESSAGE", "AUTH_REQUIRED"), m
    expect_ok(await c.auth(shared_core.admin_token))
    await c.close()


@async_test
async def test_nul_and_odd_strings(shared_core):
    # "\u0000" is valid JSON; a server may refuse it (INVALID_MESSAGE) but must answer once
    c = await connect_auth(shared_core)
    for env in (h.envelope("health\u0000evil"), h.envelope("health", namespace="co\u0000re"),
                h.envelope("auth.generateToken", {"name": "a\u0000b"})):
        await c.send_env(env)
        m = await c.recv_json()
        h.check_response(m)
        assert m["success"] is False, m
        if m.get("correlationId") is not None:
            assert m["correlationId"] == env["id"]
            assert h.err_code(m) in ("UNKNOWN_ACTION", "INVALID_MESSAGE", "INVALID_ARGUMENT"), m
        else:
            assert h.err_code(m) == "INVALID_MESSAGE", m
    expect_ok(await c.request("health"))  # resets the invalid streak
    m = await c.request("health", {"x": "\U0001F600" * 1000, "y": [None, True, 1.5e308, -0.0]})
    assert m["success"] is True
    toks = expect_ok(await c.request("auth.tokens"))["tokens"]
    assert not [t for t in toks if "\u0000" in t["name"]]
    await c.close()


# --------------------------------------------------------------------------- slow consumer

def test_slow_reader_is_bounded(core_factory):
    srv = core_factory(env=dict(h.small_quarantine_env(), CONDRIX_LIMIT_OUTQ_BYTES="65536",
                                       CONDRIX_RATE_MSG_MAX="0"))
    sent, dropped = h.check_slow_reader(srv)
    print("slow reader: sent %d bytes, dropped=%s" % (sent, dropped))


# --------------------------------------------------------------------------- close frames, fragments, pipelining

@pytest.mark.parametrize("payload", [b"\x03", b"\x03\xe7", b"\x03\xed", b"\x03\xee", b"\x03\xe8\xff\xfe"],
                         ids=["one-byte", "code-999", "code-1005", "code-1006", "bad-utf8-reason"])
def test_invalid_close_frame(shared_core, payload):
    with fresh(shared_core) as r:
        r.send_frame(OP_CLOSE, payload)
        code = r.expect_close()
        want = 1007 if payload.endswith(b"\xff\xfe") else 1002
        assert code in (want, 1002), code


def test_many_tiny_fragments(shared_core):
    with authed_raw(shared_core) as r:
        env = h.envelope("health", rid="tiny-frags")
        data = json.dumps(env).encode() + b" " * 1500
        frames = [h.encode_frame(OP_TEXT, data[:1], fin=False)]
        frames += [h.encode_frame(OP_CONT, data[i:i + 1], fin=False) for i in range(1, len(data) - 1)]
        frames.append(h.encode_frame(OP_CONT, data[-1:], fin=True))
        r.send_raw(b"".join(frames))
        m = r.recv_json()
        h.check_response(m, "tiny-frags")
        assert m["success"] is True


def test_pipelined_burst(shared_core):
    with authed_raw(shared_core) as r:
        envs = [h.envelope("health" if i % 3 else "info") for i in range(1000)]
        r.send_raw(b"".join(h.encode_frame(OP_TEXT, json.dumps(e)) for e in envs))
        got = []
        while len(got) < len(envs):
            m = r.recv_json()
            h.check_response(m)
            got.append(m["correlationId"])
        assert got == [e["id"] for e in envs], "responses out of order or missing"


def test_reset_while_server_writes(shared_core):
    for _ in range(5):
        r = authed_raw(shared_core)
        r.send_raw(b"".join(h.encode_frame(OP_TEXT, json.dumps(h.envelope("auth.tokens"))) for _ in range(300)))
        r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        r.close()
    time.sleep(0.1)
    shared_core.assert_alive()
    status, _, _ = h.http_get(shared_core.port, "/healthz")
    assert status == 200
