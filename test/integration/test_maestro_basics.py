"""condrix-maestro: start (first-start password), HTTP, envelope errors, sign-in gate,
graceful shutdown, CONDRIX_MAESTRO_CLIENT_AUTH=disabled. PROTOCOL sections 1, 2, 5, 7 and
the Maestro notes."""
import asyncio
import json
import os
import re
import signal

import websockets

import helpers as h
from helpers import async_test, expect_error, expect_ok
import maestro_helpers as mh
from maestro_helpers import mx, mx_factory, mx_connect, mx_login  # noqa: F401 (fixtures)


@async_test
async def test_first_start_password_printed_once(mx_factory):
    srv = mx_factory()
    out = srv.stdout()
    lines = out.splitlines()
    assert lines == [
        'condrix-maestro: first start: created the user "default-admin" (role admin).',
        "condrix-maestro: its password is shown only this once; sign in and change it:",
        srv.password], out
    assert srv.password not in srv.all_stderr(), "the password reached the log"
    c = await mx_login(srv)
    assert c.session["user"]["username"] == "default-admin" and c.session["user"]["role"] == "admin"
    await c.close()
    srv.restart()
    assert srv.stdout() == "", "a later start printed something: %r" % srv.stdout()
    c = await mx_login(srv, password=srv.password)  # same password after the restart
    await c.close()
    mode = os.stat(os.path.join(srv.home, "maestro.db")).st_mode & 0o777
    assert mode == 0o600, oct(mode)
    assert os.stat(os.path.join(srv.home, "maestro.key")).st_mode & 0o777 == 0o600


def test_healthz_and_404(mx):
    status, _, body = h.http_get(mx.port, "/healthz")
    assert status == 200 and body == b"ok"
    status, _, _ = h.http_get(mx.port, "/no-such-page-xyz")
    assert status == 404


def test_server_errors_carry_the_security_headers(mx):
    # 400 (bad upgrade), 426 (wrong version) and 431 (huge head) come from the shared
    # server layer; Maestro's answers carry its security headers all the same.
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    cases = (
        ("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 12\r\n\r\n" % key, 426),
        ("GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n" % ("a" * 20000), 431),
    )
    for req, want in cases:
        data, _ = h.raw_http(mx.port, req.encode())
        st, hd, _ = h.parse_http_head(data)
        assert st == want, (want, data[:200])
        assert hd.get("x-content-type-options") == "nosniff", (want, hd)
        assert "frame-ancestors 'none'" in hd.get("content-security-policy", ""), (want, hd)


def test_head_is_get_without_the_body(mx, core):
    # RFC 9110 9.3.2: the same head as GET, Content-Length included, and no body.
    for port, path in ((mx.port, "/"), (mx.port, "/healthz"), (mx.port, "/no-such-page-xyz"),
                       (core.port, "/healthz"), (core.port, "/no-such-page-xyz")):
        gst, gh, gbody = h.http_get(port, path)
        st, hd, body = h.http_get(port, path, method="HEAD")
        assert st == gst, (path, st, gst)
        assert hd["content-length"] == str(len(gbody)) == gh["content-length"], (path, hd, gh)
        assert body == b"", (path, body)


@async_test
async def test_ws_alias_path(mx):
    w = await websockets.connect("ws://127.0.0.1:%d/ws" % mx.port, open_timeout=h.t(5))
    c = mh.MxClient(w)
    m = await c.login("default-admin", mx.password)
    expect_ok(m)
    await c.close()


@async_test
async def test_invalid_messages(mx):
    c = await mx_connect(mx)
    # not JSON, no id: INVALID_MESSAGE without correlationId
    await c.send_raw("this is not json")
    m = await c.recv_json()
    assert m["type"] == "response" and m["success"] is False, m
    assert h.err_code(m) == "INVALID_MESSAGE" and m.get("id"), m
    assert "correlationId" not in m or m["correlationId"] in (None, ""), m
    # an id can be read, the rest is missing: correlated
    await c.send_raw(json.dumps({"id": "bad-1", "type": "request"}))
    m = await c.recv_json()
    h.check_response(m, "bad-1")
    expect_error(m, "INVALID_MESSAGE")
    # NUL in an envelope string
    await c.send_raw(json.dumps({"id": "bad-2", "type": "request", "namespace": "maes\u0000tro",
                                 "action": "login", "payload": {}, "timestamp": h.now_ts()}))
    expect_error(await c.recv_json(), "INVALID_MESSAGE")
    # a valid message resets the streak: login with a missing password -> INVALID_ARGUMENT
    m = await c.mx("login", {"username": "x"})
    expect_error(m, "INVALID_ARGUMENT")
    assert m["payload"].get("authenticated") is False, m
    for i in range(4):
        await c.send_raw("[1, 2, %d]" % i)
        expect_error(await c.recv_json(), "INVALID_MESSAGE")
    assert await c.is_open_mx(), "closed after 4 invalid messages (the limit is 5 in a row)"
    for i in range(5):
        await c.send_raw("{nope")
    code, _ = await c.expect_close()
    assert code == 1008, code
    invalid = [s for s in c.stray if isinstance(s, dict) and h.err_code(s) == "INVALID_MESSAGE"]
    assert len(invalid) >= 4, c.stray


@async_test
async def test_auth_required_strikes(mx):
    c = await mx_connect(mx)
    m = await c.mx("cores.list")
    expect_error(m, "AUTH_REQUIRED")
    m = await c.mx("logout")
    expect_error(m, "AUTH_REQUIRED")
    m = await c.mx("no.such.action")
    expect_error(m, "AUTH_REQUIRED")
    code, _ = await c.expect_close()
    assert code == 1008, code
    # core/auth without coreId is AUTH_REQUIRED (a strike), not a Core sign-in
    c = await mx_connect(mx)
    m = await c.request("auth", {"token": "x" * 64})
    expect_error(m, "AUTH_REQUIRED")
    m = await c.request("info", {})
    expect_error(m, "AUTH_REQUIRED")
    # still open after 2 strikes: a sign-in works
    expect_ok(await c.login("default-admin", mx.password))
    expect_ok(await c.mx("cores.list"))
    await c.close()


@async_test
async def test_unknown_actions(mx):
    c = await mx_login(mx)
    m = await c.mx("no.such.action")
    expect_error(m, "UNKNOWN_ACTION")
    # a non-maestro request without targetCoreId has nowhere to go
    m = await c.request("info", {}, namespace="core")
    expect_error(m, "UNKNOWN_ACTION")
    m = await c.request("tree", {}, namespace="file")
    expect_error(m, "UNKNOWN_ACTION")
    # still signed in and open
    expect_ok(await c.mx("cores.list"))
    await c.close()


@async_test
async def test_responses_echo_id_and_correlation(mx):
    c = await mx_connect(mx)
    for action, payload in (("login", {"username": "nobody", "password": "wrong-password"}),
                            ("auth", {"sessionToken": "0" * 64}),
                            ("cores.list", {})):
        rid = h.new_id("corr")
        m = await c.mx(action, payload, rid=rid)
        h.check_response(m, rid)
        assert m["namespace"] == "maestro" and m["action"] == action, m
    await c.close()


@async_test
async def test_graceful_shutdown_closes_1001(mx_factory):
    srv = mx_factory()
    admin = await mx_login(srv)
    anon = await mx_connect(srv)
    code = await mh.new_code(admin)
    core, _, _ = await mh.raw_pair(srv, "shutdown-core", code["code"])
    await asyncio.sleep(0.05)
    srv.expected_dead = True
    srv.proc.send_signal(signal.SIGTERM)
    for cl in (admin, anon, core):
        got, reason = await cl.expect_close(timeout=h.t(5))
        assert got == 1001, (got, reason)
    rc = srv.proc.wait(h.t(10))
    assert rc == 0, "exit code %s\n%s" % (rc, srv.stderr()[-2000:])


def test_sigint_exits_zero(mx):
    rc = mx.stop(signal.SIGINT)
    assert rc == 0


def test_version_and_bad_flags(mx_factory, tmp_path):
    import subprocess
    r = subprocess.run([mh.MX_BIN, "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.strip() == "condrix-maestro 0.1.0 (protocol v1)", r
    r = subprocess.run([mh.MX_BIN, "--no-such-flag"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r
    r = subprocess.run([mh.MX_BIN, "--port", "99999"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r
    env = dict(os.environ, CONDRIX_HOME=str(tmp_path / "bad"), CONDRIX_MAESTRO_CLIENT_AUTH="maybe")
    r = subprocess.run([mh.MX_BIN, "--port", "0"], capture_output=True, text=True, timeout=10, env=env)
    assert r.returncode == 1 and r.stdout == "", r


# --------------------------------------------------------------------------- client auth disabled

@async_test
async def test_client_auth_disabled_loopback(mx_factory):
    srv = mx_factory(env={"CONDRIX_MAESTRO_CLIENT_AUTH": "disabled"})
    assert "CLIENT_AUTH=disabled" in srv.stderr(), "no WARN line at start:\n" + srv.stderr()[-2000:]
    admin = await mx_login(srv)
    code = await mh.new_code(admin)
    core, _, core_mx_id = await mh.raw_pair(srv, "local-core-1", code["code"])
    await admin.close()

    anon = await mx_connect(srv)
    p = expect_ok(await anon.mx("cores.list"))
    assert [c["coreId"] for c in p["cores"]] == ["local-core-1"], p
    assert p["cores"][0]["status"] == "online"
    # everything else still needs a sign-in
    expect_error(await anon.mx("users.list"), "AUTH_REQUIRED")
    expect_error(await anon.mx("pairing.list"), "AUTH_REQUIRED")
    # relay unsigned, as admin: the Core sees relay {userId:null, username:"(local)", role:"admin"}
    rid = h.new_id("local")
    env = h.envelope("auth.tokens", {}, "core", rid)
    env["targetCoreId"] = core_mx_id
    await anon.send_env(env)
    fwd = await core.next_request()
    assert fwd["action"] == "auth.tokens" and fwd["namespace"] == "core", fwd
    assert fwd["relay"] == {"userId": None, "username": "(local)", "role": "admin"}, fwd
    assert "targetCoreId" not in fwd and fwd["id"] != rid, fwd
    await core.answer(fwd, {"tokens": []})
    m = await anon.wait_response(rid)
    expect_ok(m)
    assert m["sourceCoreId"] == core_mx_id and "relay" not in m, m
    # an unsigned local client gets core.offline events too
    await core.close()
    ev = await anon.wait_event("core.offline")
    assert ev["payload"] == {"id": core_mx_id, "coreId": "local-core-1", "displayName": "local-core-1"}, ev
    await anon.close()

    # with a forwarding header the client is tunneled: AUTH_REQUIRED
    for hdr in ({"X-Forwarded-For": "127.0.0.1"}, {"CF-Connecting-IP": "127.0.0.1"},
                {"X-Real-IP": "127.0.0.1"}, {"CF-Ray": "abc"}, {"Forwarded": "for=127.0.0.1"}):
        t = await mx_connect(srv, headers=hdr)
        expect_error(await t.mx("cores.list"), "AUTH_REQUIRED")
        await t.close()


@async_test
async def test_client_auth_enabled_by_default(mx):
    anon = await mx_connect(mx)
    expect_error(await anon.mx("cores.list"), "AUTH_REQUIRED")
    await anon.close()


# --------------------------------------------------------------------------- transport and limits (section 1, 7)

def test_transport_close_codes(mx_factory):
    srv = mx_factory(env={"CONDRIX_LIMIT_MESSAGE_BYTES": "4096", "CONDRIX_LIMIT_AUTH_MS": "400"})
    cases = (
        ("binary frame", lambda w: w.send_frame(h.OP_BIN, b"\x00\x01"), 1003),
        ("invalid UTF-8", lambda w: w.send_frame(h.OP_TEXT, b"\xff\xfe{}"), 1007),
        ("unmasked frame", lambda w: w.send_raw(h.encode_frame(h.OP_TEXT, "{}", mask=False)), 1002),
        ("too big", lambda w: w.send_frame(h.OP_TEXT, "x" * 5000), 1009),
        ("client close", lambda w: w.send_frame(h.OP_CLOSE, b"\x03\xe8"), 1000),
        ("silence after upgrade", lambda w: None, 1008),
    )
    for name, act, want in cases:
        with h.upgraded(srv.port) as w:
            act(w)
            got = w.expect_close(timeout=h.t(5))
            assert got == want, "%s: close %r, want %d" % (name, got, want)
            if name == "silence after upgrade":
                assert "auth timeout" in w.close_frame[1], w.close_frame
    status, _, body = h.http_get(srv.port, "/healthz")
    assert status == 200 and body == b"ok"


@async_test
async def test_connection_rate_limit(mx_factory):
    srv = mx_factory(env={"CONDRIX_RATE_CONN_MAX": "3"})
    hdr = {"X-Forwarded-For": "10.9.0.1"}
    conns = [await mx_connect(srv, headers=hdr) for _ in range(3)]
    extra = await mx_connect(srv, headers=hdr)  # the upgrade completes, then 1008
    code, reason = await extra.expect_close()
    assert code == 1008 and re.match(r"rate limited; retry in \d+ s", reason), (code, reason)
    other = await mx_connect(srv, headers={"X-Forwarded-For": "10.9.0.2"})
    expect_ok(await other.login("default-admin", srv.password))
    for c in conns + [other]:
        await c.close()


@async_test
async def test_message_rate_limit_clients_not_cores(mx_factory):
    srv = mx_factory(env={"CONDRIX_RATE_MSG_MAX": "5"})
    admin = await mx_login(srv)
    ids = []
    for _ in range(12):
        env = h.envelope("cores.list", {}, "maestro")
        ids.append(env["id"])
        await admin.send_env(env)
    answers = [await admin.wait_response(i) for i in ids]
    limited = [m for m in answers if not m["success"]]
    assert limited and all(h.err_code(m) == "RATE_LIMITED" and m["error"]["details"]["retryAfter"] >= 1
                           for m in limited), answers
    assert sum(1 for m in answers if m["success"]) >= 5, answers
    # a Core's dense event stream is not limited
    await asyncio.sleep(1.05)  # a new second: the client's budget is back
    code = await mh.new_code(admin)
    core, _, cid = await mh.raw_pair(srv, "chatty-core", code["code"])
    for i in range(30):
        await core.send_env(h.envelope("output", {"n": i}, "terminal", type_="event"))
    got = [(await admin.wait_event("output", timeout=h.t(5)))["payload"]["n"] for _ in range(30)]
    assert got == list(range(30)), got
    expect_ok(await admin.mx("cores.list"))
    await core.close()
    await admin.close()


@async_test
async def test_hash_queue_full_is_rate_limited(mx):
    conns = [await mx_connect(mx) for _ in range(100)]
    envs = [h.envelope("login", {"username": "default-admin", "password": mx.password}, "maestro") for _ in conns]
    await asyncio.gather(*(c.send_env(e) for c, e in zip(conns, envs)))
    answers = await asyncio.gather(*(c.wait_response(e["id"], timeout=h.t(60)) for c, e in zip(conns, envs)))
    busy = [m for m in answers if not m["success"]]
    assert all(h.err_code(m) == "RATE_LIMITED" and m["error"]["details"]["retryAfter"] == 1 for m in busy), busy
    assert busy, "100 logins at once never hit the queue bound (2 running + 64 waiting)"
    assert sum(1 for m in answers if m["success"]) >= 66, len(busy)
    for c in conns:
        await c.close()
